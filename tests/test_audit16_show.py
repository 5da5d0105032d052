"""serve and probe, audit round sixteen (helper "show"), against real peers on 127.0.0.1.

- show16 #1: a server that asks for a client certificate only after the handshake, once it has read the
  request (TLS 1.3 post-handshake authentication: Apache httpd's ``SSLVerifyClient require`` in a
  ``<Location>``), was reported as "asked for: no, the server does not request one", and a good client
  certificate as "never sent: the server does not ask for client certificates, so it neither checks nor uses
  one" with exit 1, while curl given the same certificate got in. probe did not allow post-handshake
  authentication, so the server could never ask it. Now probe allows it, as curl does, and says when the
  request came.
- show16 #2: ``--timeout`` bounded each read, not each wait as docs/probe.md says: a server that sends its
  handshake, or its HTTP answer, a byte now and then held probe as long as it liked (``--timeout 2`` took 36 s
  against a handshake sent a byte every half second, then blamed "the server closed the connection"). Now the
  handshake and the answer each end by the deadline.
- show16 #3: the certificate ``openssl req -x509`` makes (basicConstraints CA:TRUE, no extendedKeyUsage) served
  and probed against the system store ended with ``Error: ...: the server's certificate is not for TLS servers
  (its extendedKeyUsage lacks serverAuth)``: it has no extendedKeyUsage. Now the error names the CA bit, and that
  the chain is not trusted.
- show16 #4: serve closed a plain HTTP request (``http://localhost:8443/`` in a browser's address bar) without a
  word: curl said "Empty reply from server", a browser shows only its own error page; only serve's log said
  to use https://. Now the visitor gets HTTP 400 in plain HTTP that says so, in both modes, as nginx does.
- show16 #5: against a server that speaks only TLS 1.0 or 1.1, probe ended with OpenSSL's bare words,
  ``did not complete a TLS handshake: tlsv1 alert protocol version.``; now it says what they mean.
- show16 #6: ``serve --host 0.0.0.0`` (or ``::``) printed ``Listening on https://0.0.0.0:8443/``, a URL its own
  certificate does not name: curl given it refused the server ("no alternative certificate subject name matches
  target host name '0.0.0.0'"). Now the URL printed (and --json's url) names localhost, or the first name of
  a --cert that does not name it, and the line adds the address listened on.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_probe import openssl_server

from certkit.serve_json import url_to_visit

from conftest import PASSPHRASE, certkit_env, free_port, new_ca, openssl, require, run_certkit
from nginx_helper import nginx
from serve_process import ServeProcess


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


class Loopback:
    """A TCP server on 127.0.0.1 that runs ``handle(socket, stop)`` for each connection, in a thread; stopped (and
    every handler told to stop) when the block ends."""

    def __init__(self, handle) -> None:
        self.handle, self.port, self.stop = handle, free_port(), threading.Event()
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> "Loopback":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
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
            threading.Thread(target=self._run, args=(raw,), daemon=True).start()

    def _run(self, raw: socket.socket) -> None:
        raw.settimeout(60)
        with raw:
            try:
                self.handle(raw, self.stop)
            except OSError:
                pass


# --- show16 #1: a certificate asked for after the handshake -----------------------------------------
class PostHandshakeServer(Loopback):
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
        self.context, self.seen = ctx, []
        super().__init__(self._answer)

    def _answer(self, raw: socket.socket, stop: threading.Event) -> None:
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
                body = f"hello {self._certificate(tls)}\n".encode()
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


# --- show16 #2: --timeout bounds each wait, however slowly the server sends ---------------------------
def _trickle(sock, data: bytes, stop: threading.Event) -> None:
    """Send ``data`` a byte every quarter second (64 bytes: 16 s), then close."""
    for byte in data:
        if stop.wait(0.25):
            return
        sock.sendall(bytes([byte]))


def test_a_handshake_sent_a_byte_at_a_time_ends_by_the_timeout(pki: Path):
    def handshake(raw, stop) -> None:
        raw.recv(65536)  # the ClientHello; then the start of a handshake record that never completes
        _trickle(raw, b"\x16\x03\x03\x00\x40" + bytes(59), stop)

    with Loopback(handshake) as server:
        run = probe(pki, f"https://localhost:{server.port}/", "--timeout", "1")
    assert run.returncode == 1 and run.stdout == "", run.stdout + run.stderr
    assert run.stderr == (f"Error: localhost:{server.port} did not complete a TLS handshake: no answer within "
                          "1 s.\n"), run.stderr


def test_an_answer_sent_a_byte_at_a_time_ends_by_the_timeout(pki: Path):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "localhost" / "fullchain.pem", pki / "localhost" / "privkey.pem")
    ctx.load_verify_locations(pki / "ca" / "ca.pem")
    ctx.verify_mode = ssl.CERT_OPTIONAL

    def answer(raw, stop) -> None:
        with ctx.wrap_socket(raw, server_side=True) as tls:
            tls.recv(4096)
            _trickle(tls, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Pad: " + bytes(b"x" * 17) + b"\r\n\r\n", stop)

    with Loopback(answer) as server:
        url = f"https://localhost:{server.port}/"
        run = probe(pki, url, "--ca-dir", pki / "ca", "--bundle", pki / "alice", "--timeout", "1")
        data = json.loads(probe(pki, url, "--ca-dir", pki / "ca", "--timeout", "1", "--json").stdout)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "with it     not known: the handshake took it, but no answer to the HTTP request in time" in run.stdout
    assert run.stderr == (f"Error: localhost:{server.port}: the server gave no HTTP answer (no answer to the HTTP "
                          "request in time), so whether it accepts the client certificate is not known.\n")
    without = data["client_certificate"]["without_one"]
    assert without["read_error"] == "no answer to the HTTP request in time" and without["http_status"] is None


# --- show16 #3: a CA certificate as the server's own, not trusted either -------------------------------
def test_a_self_signed_ca_certificate_served_is_said_to_be_a_ca_not_to_lack_serverauth(pki: Path, tmp_path: Path):
    cert, key = tmp_path / "self.pem", tmp_path / "self.key"
    made = openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                   "-out", cert, "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-days", "30")
    assert made.returncode == 0, made.stderr
    shown = openssl("x509", "-in", cert, "-noout", "-ext", "basicConstraints,extendedKeyUsage").stdout.decode()
    assert "CA:TRUE" in shown and "Extended Key Usage" not in shown, shown  # OpenSSL's defaults: a CA, no EKU
    with openssl_server("-cert", cert, "-key", key) as port:
        run = probe(pki, f"https://localhost:{port}/")
        trusted = probe(pki, f"https://localhost:{port}/", "--ca-file", cert)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stderr == (f"Error: localhost:{port}: the server's certificate is a CA certificate (basicConstraints "
                          "CA:TRUE), not a TLS server certificate, and it is not trusted by the system trust store "
                          "(self-signed certificate).\n"), run.stderr
    assert "extendedKeyUsage" not in run.stderr
    # Trusted, it is the case docs/probe.md describes: OpenSSL clients take it, Firefox does not.
    assert trusted.returncode == 1 and "NO, not for every client" in trusted.stdout, trusted.stdout
    assert trusted.stderr == (f"Error: localhost:{port}: the server's certificate is a CA certificate, which Firefox "
                              "refuses (OpenSSL clients accept it).\n"), trusted.stderr


# --- show16 #4: plain HTTP to serve's HTTPS port gets an answer --------------------------------------------
def _plain_get(port: int) -> subprocess.CompletedProcess:
    return subprocess.run([require("curl"), "-sS", "-i", "--max-time", "30", f"http://127.0.0.1:{port}/a/page"],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("mode", [[], ["--optional"]])
def test_plain_http_to_serve_gets_an_answer_that_says_to_use_https(pki: Path, mode: list):
    env = certkit_env(CERTKIT_CA_DIR=str(pki / "ca"), HOME=str(pki))
    with ServeProcess("--cert", pki / "localhost" / "fullchain.pem", "--key", pki / "localhost" / "privkey.pem",
                      *mode, env=env, cwd=pki) as server:
        got = _plain_get(server.port)
        server.wait_for_log("plain HTTP sent to the HTTPS port (use https://)")
        # The same port still speaks TLS to the next client.
        ok = subprocess.run([require("curl"), "-sS", "--cacert", pki / "ca" / "ca.pem", "--cert",
                             pki / "alice" / "cert.pem", "--key", pki / "alice" / "privkey.pem", server.url],
                            capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stderr
    head, _, body = got.stdout.partition("\n\n")  # (text mode: curl's CRLF read as LF)
    assert head.splitlines()[0] == "HTTP/1.0 400 Bad Request", got.stdout
    assert "Content-Type: text/plain; charset=utf-8" in head.splitlines()
    assert body == ("This is an HTTPS server (certkit serve), and it got a plain HTTP request: use https:// instead "
                    "of http://, with the same host and port.\n"), body
    assert ok.returncode == 0 and "common name  alice" in ok.stdout, ok.stdout + ok.stderr


def test_docs_claim_nginx_answers_plain_http_with_400(pki: Path, tmp_path: Path):
    """docs/serve.md: as nginx answers 400 The plain HTTP request was sent to HTTPS port."""
    tls = (f"ssl_certificate {pki / 'localhost' / 'fullchain.pem'}; ssl_certificate_key "
           f"{pki / 'localhost' / 'privkey.pem'};")
    with nginx(tmp_path, tls) as (port, _log):
        got = _plain_get(port)
    assert got.stdout.startswith("HTTP/1.1 400 Bad Request"), got.stdout
    assert "400 The plain HTTP request was sent to HTTPS port" in got.stdout
    docs = " ".join((Path(__file__).resolve().parent.parent / "docs" / "serve.md").read_text().split())
    assert "as nginx answers `400 The plain HTTP request was sent to HTTPS port`" in docs


# --- show16 #5: a server of an older TLS version ---------------------------------------------------------
@pytest.mark.parametrize("version", ["-tls1", "-tls1_1"])
def test_a_server_of_an_older_tls_version_is_said_to_be_one(pki: Path, version: str):
    with openssl_server(version, "-cipher", "DEFAULT@SECLEVEL=0", "-cert", pki / "localhost" / "cert.pem",
                        "-key", pki / "localhost" / "privkey.pem") as port:
        run = probe(pki, f"https://localhost:{port}/")
        ctx = ssl.create_default_context(cafile=pki / "ca" / "ca.pem")  # docs/probe.md: Python's ssl refuses it
        with socket.create_connection(("127.0.0.1", port), timeout=60) as raw, pytest.raises(ssl.SSLError) as python:
            ctx.wrap_socket(raw, server_hostname="localhost")
    assert run.returncode == 1 and run.stdout == "", run.stdout + run.stderr
    assert run.stderr == (f"Error: localhost:{port} did not complete a TLS handshake: tlsv1 alert protocol version: "
                          "the server speaks neither TLS 1.2 nor TLS 1.3, which probe offers, only an older version "
                          "(TLS 1.0 or 1.1, deprecated by RFC 8996), which Python's ssl refuses too at its defaults: "
                          "enable TLS 1.2 or 1.3 on the server.\n"), run.stderr
    assert python.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", python.value
    docs = " ".join((Path(__file__).resolve().parent.parent / "docs" / "probe.md").read_text().split())
    said = run.stderr.strip().replace(f"localhost:{port}", "HOST:PORT")
    assert f"`{said}`" in docs, "docs/probe.md no longer quotes the error"


# --- show16 #6: the URL serve prints when it listens on every interface ----------------------------------
@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_serve_on_every_interface_prints_a_url_its_certificate_names(pki: Path, host: str):
    env = certkit_env(CERTKIT_CA_DIR=str(pki / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(pki))
    with ServeProcess("--host", host, env=env, cwd=pki) as server:  # the certificate serve issues itself
        url = server.info["url"]
        got = subprocess.run([require("curl"), "-sS", "--cacert", pki / "ca" / "ca.pem", "--cert",
                              pki / "alice" / "cert.pem", "--key", pki / "alice" / "privkey.pem", url],
                             capture_output=True, text=True, timeout=60)
    assert url == f"https://localhost:{server.info['port']}/" and server.info["host"] == host, server.info
    assert got.returncode == 0 and "common name  alice" in got.stdout, got.stderr
    port, bound = free_port(), "0.0.0.0" if host == "0.0.0.0" else "[::]"
    with subprocess.Popen([sys.executable, "-m", "certkit", "serve", "--host", host, "--port", str(port), "--cert",
                           pki / "localhost" / "fullchain.pem", "--key", pki / "localhost" / "privkey.pem"],
                          env=env, cwd=pki, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:
        try:
            first = proc.stdout.readline()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
    assert first == f"Listening on https://localhost:{port}/ (every interface: https://{bound}:{port}/)\n", first
    assert url_to_visit(f"https://{bound}:{port}/", host, ["DNS:api.example", "IP:10.0.0.1"]) == \
        f"https://api.example:{port}/"  # a --cert that does not name localhost: its first name
