"""Round sixteen's serve fixes, in their sibling: ``certkit acme serve`` (its own HTTPS listener).

- A plain HTTP request to acme serve's HTTPS port (``curl http://host:port/directory``, a browser's address bar)
  got a closed connection ("Empty reply from server"); serve answered it with a 400 since round sixteen, acme
  serve did not. Now both answer HTTP 400 in plain HTTP saying to use https://, as nginx does.
- Guard (it passes on the code before too): round sixteen's show helper reported that a client sending its
  ClientHello a byte at a time could hold acme serve's handshake past its 10 s, one read at a time, as it
  could probe's (pyOpenSSL). It cannot: Python's ``ssl`` bounds the whole ``do_handshake()`` by the socket's
  timeout. docs/acme.md says so; this test holds it.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from pathlib import Path

from acme_helpers import AcmeServer, make_two_tier
from conftest import require


def test_plain_http_to_acme_serve_gets_an_answer_that_says_to_use_https(tmp_path: Path) -> None:
    root, _issuing, env = make_two_tier(tmp_path)
    with AcmeServer(env=env) as server:
        got = subprocess.run([require("curl"), "-sS", "-i", "--max-time", "30",
                              f"http://127.0.0.1:{server.port}/directory"], capture_output=True, text=True, timeout=60)
        server.wait_for_log("failed: SSLError: HTTP_REQUEST")  # the log line docs/acme.md quotes
        # The same port still speaks TLS (and ACME) to the next client.
        ok = subprocess.run([require("curl"), "-sS", "--cacert", root / "ca.pem", server.directory],
                            capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stderr  # before: "curl: (52) Empty reply from server"
    head, _, body = got.stdout.partition("\n\n")
    assert head.splitlines()[0] == "HTTP/1.0 400 Bad Request", got.stdout
    assert body == ("This is an HTTPS server (certkit acme serve), and it got a plain HTTP request: use https:// "
                    "instead of http://, with the same host and port.\n"), body
    assert ok.returncode == 0 and '"newOrder"' in ok.stdout, ok.stdout + ok.stderr


def _client_hello() -> bytes:
    """A real ClientHello, as Python's ssl would send it first."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def test_a_handshake_sent_a_byte_at_a_time_ends_at_acme_serves_handshake_timeout(tmp_path: Path) -> None:
    """The ClientHello, one byte every 0.3 s, would take minutes; the server's 10 s end it well before."""
    _root, _issuing, env = make_two_tier(tmp_path)
    hello = _client_hello()
    assert len(hello) > 200  # at 0.3 s a byte: over 60 s, the bound below
    with AcmeServer(env=env) as server:
        started, closed_after = time.monotonic(), None
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            for byte in hello:
                try:
                    sock.sendall(bytes([byte]))
                    sock.settimeout(0.3)
                    if sock.recv(1) == b"":  # the server shut the connection
                        closed_after = time.monotonic() - started
                        break
                except TimeoutError:
                    continue  # nothing from the server yet: the next byte
                except OSError:  # reset: shut too
                    closed_after = time.monotonic() - started
                    break
                if time.monotonic() - started > 60:
                    break
        server.wait_for_log("TLS handshake with")
    assert closed_after is not None and closed_after < 60, closed_after  # before: open past 60 s, a byte a 0.3 s
    assert "timed out" in server.stderr, server.stderr
