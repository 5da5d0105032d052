"""The ACME server, audit round nineteen (acme), each as a class:

1. the server's own certificate was renewed *in place*: the next certificate and key were loaded into
   the very TLS context every connection's handshake was using (``load_cert_chain`` on the served
   context, from the maintenance thread). OpenSSL's contexts are not safe to change under a handshake:
   for a moment the context held the new certificate without its key, and a client connecting then
   failed ('no shared cipher'); an object freed under a handshake copying it aborted the process
   ('double free or corruption', measured with Python's ssl alone); and the TLS sessions of the
   replaced certificate stayed resumable, so a client holding a TLS 1.3 ticket (curl, a browser)
   kept being served under a certificate revoked for keyCompromise and 'served no more'. Each
   certificate now gets a TLS context of its own, whole before it replaces the served one;
2. a request refused with its body unread (larger than 64 KiB: 413; an unknown method's body; chunked;
   a request to a server that is stopping) was answered and its connection closed at once, with the
   body still arriving: the kernel answered it with a reset, and a client still sending its body never
   read the answer (requests, certbot's HTTP library: 'SSLError: EOF occurred in violation of protocol',
   for 5 to 50 % of such requests, all of them past 4 MiB). The connection is now half-closed after
   the answer and what the client still sends is read and dropped (up to 1 MiB, 2 s) before it closes.
"""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest
import requests
from cryptography import x509
from test_acme_concurrency import _two_tier

from acme_helpers import serving
from conftest import PASSPHRASE


# --- 1: a renewal never changes the TLS context handshakes use ------------------------------------------
class _InProcessServer:
    """The real HTTPS server of ``acme serve`` (AcmeHTTPServer over the service and its Listener, as
    cli/acme.py wires them), on a free loopback port, in this process so that a renewal can be made at a
    chosen moment (the maintenance round's ``listener.renew()``)."""

    def __init__(self, issuing: Path) -> None:
        from certkit.acme.db import Database
        from certkit.acme.https import AcmeHTTPServer
        from certkit.acme.listener import Listener
        from certkit.acme.server import AcmeConfig, AcmeService
        from certkit.acme.state import AcmeState
        from certkit.store import CADirectory

        ca = CADirectory(issuing).open()
        ca.unlock(PASSPHRASE.encode())
        self.service = AcmeService(ca, AcmeState(Database(ca.inventory)), AcmeConfig())
        self.service.start(workers=1)
        self.listener = Listener(ca, ["localhost"], hold=lambda serial: self.service.state.hold_listener(
            serial, renews=True))
        self.server = AcmeHTTPServer(("127.0.0.1", 0), self.service, lambda: self.listener.context,
                                     log=lambda line: None)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.service.stop()


def _directory(port: int, context: ssl.SSLContext, session=None) -> tuple[int, bool, ssl.SSLSession]:
    """GET /directory on a new TLS connection (resuming ``session`` if given): (the serial of the
    certificate the connection is authenticated by, whether the session was resumed, its session)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        with context.wrap_socket(sock, server_hostname="localhost", session=session) as tls:
            serial = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number
            tls.sendall(f"GET /directory HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n".encode())
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
            return serial, tls.session_reused, tls.session


def test_a_renewed_server_certificate_ends_the_sessions_of_the_one_it_replaced(tmp_path: Path) -> None:
    """A client that resumes its TLS 1.3 session after the server's certificate was replaced (revoked,
    say for keyCompromise) gets the new certificate, in a full handshake: not the replaced one, through a
    ticket of the context that served it."""
    root, issuing, _env = _two_tier(tmp_path, None)
    served = _InProcessServer(issuing)
    try:
        client = ssl.create_default_context(cafile=str(root))
        client.minimum_version = ssl.TLSVersion.TLSv1_3
        first = int(served.listener.issued.serial_hex, 16)
        serial, resumed, session = _directory(served.port, client)
        assert (serial, resumed) == (first, False)
        assert session is not None and session.has_ticket  # the server gave a ticket: resumption is possible
        again = _directory(served.port, client, session)
        assert again[:2] == (first, True)  # without a renewal, the session resumes, as it should
        served.listener.renew()  # the maintenance round's renewal (a revoked or due certificate)
        second = int(served.listener.issued.serial_hex, 16)
        assert second != first
        assert _directory(served.port, client, session)[:2] == (second, False)  # before: (first, True)
        assert _directory(served.port, client)[:2] == (second, False)
    finally:
        served.close()


def test_renewals_under_handshakes_leave_every_handshake_whole(tmp_path: Path) -> None:
    """Renewals made while connections are being accepted: every handshake finds a whole certificate and
    key (the context it took is never changed under it), and a context a connection took before a renewal
    still serves the certificate it was made with, with that certificate's key."""
    root, issuing, _env = _two_tier(tmp_path, None)
    served = _InProcessServer(issuing)
    client = ssl.create_default_context(cafile=str(root))
    failures: list[str] = []
    handshakes = [0]
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                _directory(served.port, client)
                handshakes[0] += 1
            except (OSError, AssertionError) as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=hammer) for _ in range(2)]
    try:
        taken = served.listener.context  # as a connection accepted now takes it
        before = served.listener.issued
        for worker in workers:
            worker.start()
        for _ in range(8):
            served.listener.renew()
        stop.set()
        for worker in workers:
            worker.join(60)
        assert not failures, failures[:3]
        assert handshakes[0] > 0
        # The context taken before the renewals serves what it was made with (before: the last certificate).
        listening = socket.create_server(("127.0.0.1", 0))
        port = listening.getsockname()[1]

        def accept_one() -> None:
            conn, _ = listening.accept()
            with taken.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)

        acceptor = threading.Thread(target=accept_one)
        acceptor.start()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            with client.wrap_socket(sock, server_hostname="localhost") as tls:
                got = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number
        acceptor.join(30)
        listening.close()
        assert got == int(before.serial_hex, 16)
    finally:
        stop.set()
        served.close()


# --- 2: a refused request's body is read, not reset --------------------------------------------------------
@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    yield from serving(tmp_path_factory.mktemp("acme19"), ())


def _address(acme) -> tuple[str, int]:
    host, port = acme.server.directory.split("/")[2].rsplit(":", 1)
    return host, int(port)


def test_a_client_still_sending_a_refused_body_reads_the_answer(acme) -> None:
    """requests, the HTTP library of certbot, sends a body the server refuses, each on a new connection:
    it reads the server's answer every time (before: an SSLError for some of them, the answer lost)."""
    session = requests.Session()
    session.trust_env, session.verify = False, str(acme.root)
    new_order = acme.server.directory.replace("/directory", "/acme/new-order")
    got = []
    for method, status in [("POST", 413)] * 30 + [("PATCH", 405)] * 5:
        try:
            answer = session.request(method, new_order, data=b"x" * 300_000, timeout=30,
                                     headers={"Content-Type": "application/jose+json"})
            got.append((method, answer.status_code, answer.headers["Content-Type"]))
        except requests.ConnectionError as exc:
            got.append((method, type(exc).__name__, str(exc)[-60:]))
        finally:
            session.close()  # each on a new connection: the server closes after a refusal
        assert got[-1][1] in (status, "SSLError", "ConnectionError"), got[-1]
    wrong = [entry for entry in got if entry[1] not in (413, 405)]
    assert not wrong, wrong[:3]
    assert all(kind == "application/problem+json" for _method, _status, kind in got), got[:3]


def test_the_rest_of_a_refused_request_is_read_and_the_connection_ends_cleanly(acme) -> None:
    """A body that arrives after the refusal was answered (a client that sends the headers first, as
    with Expect: 100-continue) is read by the server until the client closes: the connection ends with a
    FIN both ways, no reset (before: the server had closed, and the body's arrival was answered by a
    reset)."""
    host, port = _address(acme)
    context = ssl.create_default_context(cafile=str(acme.root))
    with socket.create_connection((host, port), timeout=30) as sock, \
            context.wrap_socket(sock, server_hostname=host) as tls:
        tls.sendall(f"POST /acme/new-order HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/jose+json"
                    f"\r\nContent-Length: 200000\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(65536):  # until the server's FIN: it answered and half-closed
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in answer, answer[:300]
        # The body the client was sending meanwhile: bytes on the wire (TLS is over; what they hold is no matter).
        socket.socket.sendall(tls, b"\x17" * 200_000)
        socket.socket.shutdown(tls, socket.SHUT_WR)
        assert socket.socket.recv(tls, 1) == b""  # read and closed; before: a reset (BrokenPipeError)
