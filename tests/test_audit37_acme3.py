"""The ACME server, audit round thirty-seven (acme3):

1. a failed validation's problem repeated the library's words: OpenSSL's reason code (``WRONG_VERSION_NUMBER``
   for a plain HTTP server on the tls-alpn-01 port, ``SSLV3_ALERT_HANDSHAKE_FAILURE``, ``[SSL] tlsv1 alert no
   application protocol (_ssl.c:1006)`` where Python has no name for the reason) and ``http.client``'s text, which
   is what the other side sent: an SSH server's banner with its CR LF, a TLS alert's raw bytes (a TLS server on
   the http-01 port), "Remote end closed connection without response", "got more than 100 headers". Each is now
   said in certkit's words (certkit/acme/failures.py), what the other side sent quoted short and escaped.
"""

from __future__ import annotations

import socket
import threading

import pytest
from test_audit5_acme import _account

from acme_helpers import serving

NAMES = tuple(f"t{i}.acme.test" for i in range(1, 16))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    yield from serving(tmp_path_factory.mktemp("acme37"), NAMES)


class RawResponder:
    """A listener on 127.0.0.1:port that reads what comes, answers ``reply`` (raw bytes) and closes."""

    def __init__(self, port: int, reply: bytes) -> None:
        self.reply = reply
        self.sock = socket.create_server(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def add(self, name: str, token: str, key_auth: str) -> None:
        pass

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.settimeout(2)
                    conn.recv(65536)
                    conn.sendall(self.reply)
                except OSError:
                    pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def _alert(code: int) -> bytes:
    return bytes([0x15, 3, 3, 0, 2, 2, code])  # a fatal TLS alert record


FAILURES = {  # kind, what the responder sends, words the problem must hold
    "plain-http-on-tls": ("tls-alpn-01", b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
                          "the other side does not speak TLS there"),
    "handshake-failure": ("tls-alpn-01", _alert(40), "the TLS alert 'handshake failure'"),
    "no-alpn-alert": ("tls-alpn-01", _alert(120), "'no application protocol': it does not offer the ALPN protocol "
                                                  "acme-tls/1"),
    "unrecognized-name": ("tls-alpn-01", _alert(112), "'unrecognized name': it has no certificate for the SNI name"),
    "closed-in-tls": ("tls-alpn-01", b"", "closed the connection during the TLS handshake"),
    "tls-on-http": ("http-01", _alert(40), "the answer is TLS, not plain HTTP"),
    "ssh-banner": ("http-01", b"SSH-2.0-OpenSSH_9.6\r\n", "the answer is not HTTP/1.x (it begins "
                                                          "'SSH-2.0-OpenSSH_9.6\\x0d\\x0a')"),
    "closed-in-http": ("http-01", b"", "the other side closed the connection without an answer"),
    "many-headers": ("http-01", b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 200 + b"\r\n",
                     "the answer has more than 100 header lines"),
    "long-line": ("http-01", b"A" * 70000, "a line of the answer is longer than 65536 bytes"),
}
LIBRARY_WORDS = ("WRONG_VERSION", "ALERT_", "_ssl.c", "[SSL]", "Remote end closed", "got more than", "\r", "\n",
                 "\x15", "UNEXPECTED_EOF", "TLSV1_")


@pytest.mark.parametrize("case", list(FAILURES))
def test_a_failed_validation_is_said_in_certkits_words_not_the_librarys(setup, case: str) -> None:
    kind, reply, words = FAILURES[case]
    name = NAMES[list(FAILURES).index(case)]
    c = _account(setup.server.directory, setup.root)
    url, order = c.new_order(name)
    with RawResponder(setup.tls_port if kind == "tls-alpn-01" else setup.http_port, reply) as responder:
        c.authorize(order, responder, kind)
        authz = c.wait(order["authorizations"][0], ("valid", "invalid"))
    assert authz["status"] == "invalid", authz
    error = next(ch for ch in authz["challenges"] if ch["type"] == kind)["error"]
    assert words in error["detail"], error
    assert not [w for w in LIBRARY_WORDS if w in error["detail"]], error
    assert error["type"] == f"urn:ietf:params:acme:error:{'tls' if kind == 'tls-alpn-01' else 'connection'}", error
