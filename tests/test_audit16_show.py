"""serve and probe, audit round sixteen (helper "show"), against real peers on 127.0.0.1.

- show16 #1: a server that asks for a client certificate only after the handshake, once it has read the
  request (TLS 1.3 post-handshake authentication: Apache httpd's ``SSLVerifyClient require`` in a
  ``<Location>``), was reported as "asked for: no, the server does not request one", and a good client
  certificate as "never sent: the server does not ask for client certificates, so it neither checks nor uses
  one" with exit 1, while curl given the same certificate got in. probe did not allow post-handshake
  authentication, so the server could never ask it. Now probe allows it, as curl does, and says when the
  request came.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import certkit_env, free_port, new_ca, require, run_certkit


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """ca/ (Lab CA) with localhost/ (server) and alice/ (client); other/ (Other CA) with mallory/ (client)."""
    top = tmp_path_factory.mktemp("audit16-show")
    env = new_ca(top, "Lab CA") | {"HOME": str(top)}
    run_certkit("issue-server", "localhost", "127.0.0.1", "--out", top / "localhost", env=env, check=True)
    run_certkit("issue-client", "alice", "--out", top / "alice", env=env, check=True)
    other = new_ca(top / "other", "Other CA") | {"HOME": str(top)}
    run_certkit("issue-client", "mallory", "--out", top / "mallory", env=other, check=True)
    return top


def probe(pki: Path, *args: object) -> subprocess.CompletedProcess:
    return run_certkit("probe", *args, env=certkit_env(HOME=str(pki)), cwd=pki)


# --- show16 #1: a certificate asked for after the handshake -----------------------------------------
class PostHandshakeServer:
    """A TLS 1.3 HTTP server (Python's ssl) that reads the request first and only then asks for a client
    certificate (``verify_client_post_handshake``), as Apache httpd does for a path that requires one; it
    answers 200 with the subject it verified, 403 to a client that does not allow post-handshake
    authentication, and (OpenSSL) a TLS alert to a client that sends no certificate or one it cannot verify."""

    def __init__(self, pki: Path) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(pki / "localhost" / "fullchain.pem", pki / "localhost" / "privkey.pem")
        ctx.load_verify_locations(pki / "ca" / "ca.pem")
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.post_handshake_auth = True  # the server's side: ask after the handshake, not in it
        self.context, self.port, self.seen = ctx, free_port(), []
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> "PostHandshakeServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept loop (a close alone does not)
        except OSError:
            pass
        self.listener.close()
        self.thread.join(30)
        assert not self.thread.is_alive()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(raw,), daemon=True).start()

    def _handle(self, raw: socket.socket) -> None:
        raw.settimeout(60)
        try:
            with self.context.wrap_socket(raw, server_side=True) as tls:
                tls.recv(4096)  # the request, read before the certificate is asked for
                try:
                    tls.verify_client_post_handshake()
                except ssl.SSLError as exc:  # the client's hello did not allow it: no request can be sent
                    self.seen.append(f"not asked: {exc.reason}")
                    tls.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return
                tls.do_handshake()  # writes the CertificateRequest
                subject = self._certificate(tls)
                body = f"hello {subject}\n".encode()
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                            % (len(body), body))
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError: the alert OpenSSL sent, said here
            self.seen.append(f"refused: {exc}")

    @staticmethod
    def _certificate(tls: ssl.SSLSocket) -> str:
        """Read until the client's certificate flight is in (the client sends nothing else), then its CN."""
        deadline = time.monotonic() + 30
        tls.settimeout(0.2)
        while True:
            try:
                peer = tls.getpeercert()
            except ValueError:  # "handshake not done yet": the client's answer has not been read
                peer = None
            if peer:
                return dict(x[0] for x in peer["subject"])["commonName"]
            if time.monotonic() > deadline:
                raise ValueError("no client certificate within 30 s")
            try:
                tls.recv(1)  # processes the client's Certificate, CertificateVerify, Finished
            except TimeoutError:
                pass


def test_probe_sees_a_certificate_asked_for_after_the_handshake(pki: Path):
    with PostHandshakeServer(pki) as server:
        url = f"https://localhost:{server.port}/secure"
        run = probe(pki, url, "--ca-dir", pki / "ca", "--bundle", pki / "alice")
        assert run.returncode == 0, run.stdout + run.stderr
        lines = {ln[:14].strip(): ln[14:] for ln in run.stdout.splitlines() if ln.startswith("  ")}
        assert lines["asked for"].startswith("yes, after the handshake: the server sent a CertificateRequest once "
                                             "it read the request for /secure (TLS 1.3 post-handshake "
                                             "authentication"), run.stdout
        assert lines["with it"] == "accepted: the server answered HTTP 200 OK", run.stdout
        assert lines["without"].startswith("required: without one the server refused (tlsv13 alert certificate "
                                           "required"), run.stdout
        data = json.loads(probe(pki, url, "--ca-dir", pki / "ca", "--bundle", pki / "alice", "--json").stdout)
        cc = data["client_certificate"]
        assert cc["requested"] is True and cc["requested_after_handshake"] is True and cc["accepted"] is True
        assert cc["with_it"]["presented"] == "CN=alice"

        other = probe(pki, url, "--ca-dir", pki / "ca", "--bundle", pki / "mallory")
        assert other.returncode == 1, other.stdout + other.stderr
        assert "with it     refused: tlsv1 alert unknown ca" in other.stdout, other.stdout
        assert "the client certificate is refused" in other.stderr


def test_docs_claims_about_clients_and_post_handshake_requests_hold(pki: Path):
    """docs/probe.md: curl allows the request after the handshake; Python's ssl only with post_handshake_auth."""
    curl = require("curl")
    with PostHandshakeServer(pki) as server:
        got = subprocess.run([curl, "-sS", "--cacert", pki / "ca" / "ca.pem", "--cert", pki / "alice" / "cert.pem",
                              "--key", pki / "alice" / "privkey.pem", f"https://localhost:{server.port}/secure"],
                             capture_output=True, text=True, timeout=60)
        assert got.returncode == 0 and got.stdout == "hello alice\n", got.stdout + got.stderr
        for allow, status in ((False, 403), (True, 200)):
            ctx = ssl.create_default_context(cafile=pki / "ca" / "ca.pem")
            ctx.load_cert_chain(pki / "alice" / "fullchain.pem", pki / "alice" / "privkey.pem")
            ctx.post_handshake_auth = allow
            with socket.create_connection(("127.0.0.1", server.port), timeout=60) as raw, \
                    ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET /secure HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                answer = http.client.HTTPResponse(tls)
                answer.begin()
                assert answer.status == status, (allow, answer.status, server.seen)
    assert sum(s.startswith("not asked") for s in server.seen) == 1, server.seen
    docs = (Path(__file__).resolve().parent.parent / "docs" / "probe.md").read_text()
    assert "curl does, a Python `ssl` client does\nwith `post_handshake_auth = True`" in docs
