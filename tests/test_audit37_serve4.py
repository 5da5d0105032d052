"""Round thirty-seven, area serve4: what serve's log says of clients that misbehave after the handshake (a request
cut short, a client that leaves before its answer, a request HTTP cannot parse), with real TLS clients on 127.0.0.1.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from pathlib import Path

import pytest

from conftest import run_certkit
from serve_process import serving

MODES = [pytest.param((), id="required"), pytest.param(("--optional",), id="optional")]


@pytest.fixture
def alice(ca_dir: Path, ca_env: dict, tmp_path: Path) -> Path:
    run_certkit("issue-client", "alice", cwd=tmp_path, env=ca_env, check=True)
    return tmp_path / "alice"


def _client(ca_dir: Path, alice: Path, port: int) -> ssl.SSLSocket:
    """A TLS connection to serve as alice, the handshake done."""
    ctx = ssl.create_default_context(cafile=str(ca_dir / "ca.pem"))
    ctx.load_cert_chain(alice / "fullchain.pem", alice / "privkey.pem")
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname="localhost")


def _leave(sock: ssl.SSLSocket, how: str) -> None:
    """The client goes away: with a TCP reset, or closing its socket without TLS's close_notify."""
    if how == "reset":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sent", [b"GET / HT", b"GET / HTTP/1.1\r\nHost: localhost\r\n"])
@pytest.mark.parametrize("how", ["close", "reset"])
def test_a_client_that_leaves_before_its_answer_is_said_in_certkits_words(
        ca_dir: Path, ca_env: dict, alice: Path, mode: tuple, sent: bytes, how: str):
    """Before: a client that sent part of a request and closed its connection got 'error 127.0.0.1:N: EOF occurred
    in violation of protocol (_ssl.c:2427)' (Python's words), or with --optional 'error 127.0.0.1:N: []' (pyOpenSSL's
    empty error list), when serve wrote its answer."""
    with serving("--host", "127.0.0.1", *mode, env=ca_env) as srv:
        sock = _client(ca_dir, alice, srv.port)
        srv.wait_for_log("accepted ")
        sock.sendall(sent)
        time.sleep(0.3)
        _leave(sock, how)
        srv.wait_for_log("left 127.0.0.1:")
        healthy = _client(ca_dir, alice, srv.port)  # serve still answers others
        healthy.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert healthy.recv(100).startswith(b"HTTP/1.0 200 "), srv.stderr
        healthy.close()
    left = [line for line in srv.stderr.splitlines() if " left 127.0.0.1:" in line]
    assert len(left) == 1 and left[0].endswith(
        ": the client closed the connection before this server's answer was sent"), srv.stderr
    for words in ("error ", "_ssl.c", "[]", "violation of protocol"):
        assert words not in srv.stderr, srv.stderr

