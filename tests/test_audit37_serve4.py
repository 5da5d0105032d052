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


BAD_REQUESTS = [  # what a client sends after the handshake; the status; why, as the log line ends
    (b"\x16\x03\x01garbage\r\n\r\n", 400, "bad request syntax"),
    (b"GET / HTTP/9.9\r\n\r\n", 505, "invalid http version"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 120 + b"\r\n", 431, "too many headers"),
    (b"GET /" + b"A" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414,
     "request-uri too long: its request line is over 65536 bytes"),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi", 501, "unsupported method"),
]


@pytest.mark.parametrize("mode", MODES)
def test_a_request_http_cannot_take_gets_one_log_line_and_a_status_line(
        ca_dir: Path, ca_env: dict, alice: Path, mode: tuple):
    """Before: each got two log lines, Python's 'code 400, message Bad request syntax (...)' and then the request's;
    a request line over 64 KiB was logged as '""' (nothing of what came); and a request whose version Python could not
    read (garbage, HTTP/9.9) was answered with an HTML body and no status line at all (HTTP/0.9's answer)."""
    with serving("--host", "127.0.0.1", *mode, env=ca_env) as srv:
        for n, (sent, status, _why) in enumerate(BAD_REQUESTS, 1):
            sock = _client(ca_dir, alice, srv.port)
            sock.sendall(sent)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            sock.close()
            assert answer.startswith(f"HTTP/1.0 {status} ".encode()), answer[:200]
            srv.wait_for_log(f" {status} client=alice; ", count=1)
            assert len(srv.wait_for_log("accepted ", count=n)) == n
    lines = [line for line in srv.stderr.splitlines() if "accepted " not in line and " listening " not in line
             and "stopped" not in line and "revoked " not in line]
    assert len(lines) == len(BAD_REQUESTS), srv.stderr  # one a request
    for line, (_sent, status, why) in zip(lines, BAD_REQUESTS, strict=True):
        assert line.endswith(f" {status} client=alice; {why}"), line
    assert f'"GET /{"A" * 95}..." 414' in lines[3], lines[3]  # its start, and that more followed
    assert "code " not in srv.stderr and '""' not in srv.stderr, srv.stderr


@pytest.mark.parametrize("mode", MODES)
def test_a_client_that_stops_sending_its_request_is_cut_off_in_certkits_words(
        ca_dir: Path, ca_env: dict, alice: Path, mode: tuple):
    """Before: a client that finished its handshake and sent a request line but never its blank line was cut off
    30 s later with Python's words: '127.0.0.1:N Request timed out: TimeoutError('The read operation timed out')'."""
    with serving("--host", "127.0.0.1", *mode, env=ca_env) as srv:
        sock = _client(ca_dir, alice, srv.port)
        sock.sendall(b"GET / HTTP/1.1\r\n")
        sock.settimeout(60)
        assert sock.recv(100) == b""  # the server closed the connection
        sock.close()
        line = srv.wait_for_log("closed 127.0.0.1:")[0]
    assert line.endswith(": nothing of its request for 30 s"), srv.stderr
    assert "Request timed out" not in srv.stderr and "TimeoutError" not in srv.stderr, srv.stderr


def test_the_page_for_another_cas_clients_says_to_issue_with_that_ca(tmp_path: Path) -> None:
    """Before: serve --optional --client-ca other-ca.pem showed a browser without a certificate 'Make it with certkit
    issue-client NAME --p12', which issues from the CA directory's CA, whose certificates this server refuses. The page
    now names the CA it takes and the command with --ca-dir ITS_FOLDER; run with that CA's folder, the bundle it
    writes is taken (curl --cert-type P12), and the first command's bundle is not."""
    import html
    import re
    import subprocess

    from conftest import PASSPHRASE, certkit_env, new_ca

    env = new_ca(tmp_path, "Lab CA")
    new_ca(tmp_path / "other", "Partner CA")
    env = certkit_env(**{**env, "HOME": str(tmp_path), "CERTKIT_P12_PASSWORD": "page p12 password"})
    other = tmp_path / "other" / "ca"

    def fetch(url: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", str(tmp_path / "ca" / "ca.pem"), *args,
                               url], capture_output=True, text=True, timeout=30)

    with serving("--host", "127.0.0.1", "--optional", "--client-ca", other / "ca.pem", env=env, cwd=tmp_path) as srv:
        page = html.unescape(fetch(srv.url + "?format=html").stdout)
        made = re.findall(r"<code>(certkit issue-client [^<]*)</code>", page)
        assert made == ["certkit issue-client NAME --p12 --ca-dir ITS_FOLDER"], made
        assert "client certificates of CN=Partner CA alone" in " ".join(re.sub("<[^>]+>", "", page).split()), page
        for name, folder in (("bob", other), ("eve", tmp_path / "ca")):  # the page's folder, and the CA dir's
            command = made[0].replace("NAME", name).replace("ITS_FOLDER", str(folder))
            run_certkit(*command.split()[1:], env={**env, "CERTKIT_CA_PASSPHRASE": PASSPHRASE}, cwd=tmp_path,
                        check=True)
        for name, code in (("bob", "200"), ("eve", "403")):
            got = fetch(srv.url + "?format=json", "--cert-type", "P12", "-w", "%{http_code}",
                        "--cert", f"{tmp_path / name / 'bundle.p12'}:page p12 password")
            assert got.stdout.endswith(code), (name, got.stdout, got.stderr)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sent", [b"", b"\x16\x03\x01\x00"])
def test_a_client_that_leaves_in_the_handshake_is_said_without_the_librarys_words(
        ca_env: dict, ca_dir: Path, mode: tuple, sent: bytes):
    """Before: 'rejected 127.0.0.1:N: the client closed the connection during the handshake (unexpected eof while
    reading)', and with --optional '... (unexpected eof (Unexpected EOF))': OpenSSL's and pyOpenSSL's words after
    certkit's. The line now ends with certkit's."""
    with serving("--host", "127.0.0.1", *mode, env=ca_env) as srv:
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        sock.sendall(sent)
        time.sleep(0.3)
        sock.close()
        line = srv.wait_for_log("rejected 127.0.0.1:")[0]
    assert line.endswith(": the client closed the connection during the handshake"), srv.stderr
    assert "eof" not in srv.stderr.lower(), srv.stderr
