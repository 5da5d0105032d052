"""A minimal ACME client for the protocol tests (josepy + requests), and challenge responders.

The real clients (certbot, lego, Caddy) prove that certkit's ACME server works; this
one exists to send what they never send: replayed nonces, JWS signed by the wrong key,
CSRs that differ from the order, EdDSA account keys, racing finalizes. The responders
answer http-01 and tls-alpn-01 challenges (rightly, or wrongly on purpose).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import json
import socket
import ssl
import tempfile
import threading
import time
from pathlib import Path

import josepy as jose
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

import certkit.acme.jws  # noqa: F401  (registers EdDSA / OKP with josepy)
from certkit.acme.jws import JWKOKP, EdDSA


class PrivateOKP(jose.JWK):
    """An Ed25519 private key for signing (certkit's JWKOKP holds public keys only)."""

    typ = "OKP-private"
    __slots__ = ("key",)
    key: object

    def fields_to_partial_json(self):
        return {}

    @classmethod
    def fields_from_json(cls, jobj):
        raise NotImplementedError

    def public_key(self):
        return JWKOKP(key=self.key.public_key())


def account_key(kind: str = "ES256"):
    """(josepy JWK with the private key, algorithm) for a new account key."""
    if kind == "ES256":
        return jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1())), jose.ES256
    if kind == "ES384":
        return jose.JWKEC(key=ec.generate_private_key(ec.SECP384R1())), jose.ES384
    if kind == "RS256":
        return jose.JWKRSA(key=rsa.generate_private_key(65537, 2048)), jose.RS256
    if kind == "EdDSA":
        return PrivateOKP(key=ed25519.Ed25519PrivateKey.generate()), EdDSA
    raise ValueError(kind)


def b64(data: bytes) -> str:
    return jose.encode_b64jose(data)


def sign(payload, key, alg, *, url: str, nonce: str | None, kid: str | None = None,
         extra: dict | None = None) -> dict:
    """A flattened JWS; ``payload`` None is POST-as-GET, a dict is JSON, bytes are sent as they are."""
    raw = b"" if payload is None else payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    protected = {"alg": alg.name, "url": url}
    if nonce is not None:
        protected["nonce"] = nonce
    if kid:
        protected["kid"] = kid
    else:
        protected["jwk"] = key.public_key().to_json()
    protected.update(extra or {})
    protected_b64 = b64(json.dumps(protected).encode())
    signing_input = f"{protected_b64}.{b64(raw)}".encode()
    if isinstance(key, PrivateOKP):
        signature = key.key.sign(signing_input)
    else:
        signature = alg.sign(key.key, signing_input)
    return {"protected": protected_b64, "payload": b64(raw), "signature": b64(signature)}


class AcmeError(Exception):
    def __init__(self, response: requests.Response) -> None:
        self.response = response
        self.status = response.status_code
        try:
            self.problem = response.json()
        except ValueError:
            self.problem = {}
        self.type = str(self.problem.get("type", "")).removeprefix("urn:ietf:params:acme:error:")
        super().__init__(f"{self.status} {self.type}: {self.problem.get('detail')}")


class Client:
    """One ACME account (once registered) talking to ``directory_url``, trusting ``ca_file``."""

    def __init__(self, directory_url: str, ca_file: Path, kind: str = "ES256") -> None:
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        self.session.verify = str(ca_file)
        self.directory = self.session.get(directory_url, timeout=30).json()
        self.key, self.alg = account_key(kind)
        self.kid: str | None = None
        self._nonce: str | None = None
        self.last: requests.Response | None = None

    @property
    def thumbprint(self) -> str:
        return b64(self.key.public_key().thumbprint(hashes.SHA256))

    def nonce(self) -> str:
        if self._nonce:
            nonce, self._nonce = self._nonce, None
            return nonce
        return self.session.head(self.directory["newNonce"], timeout=30).headers["Replay-Nonce"]

    def send(self, url: str, body: dict, *, check: bool = True) -> requests.Response:
        response = self.session.post(url, data=json.dumps(body), timeout=30,
                                     headers={"Content-Type": "application/jose+json"})
        self._nonce = response.headers.get("Replay-Nonce")
        self.last = response
        if check and response.status_code >= 400:
            raise AcmeError(response)
        return response

    def post(self, url: str, payload=None, *, check: bool = True, key=None, alg=None, use_jwk: bool = False,
             extra: dict | None = None) -> requests.Response:
        key, alg = key or self.key, alg or self.alg
        body = sign(payload, key, alg, url=url, nonce=self.nonce(), kid=None if use_jwk else self.kid, extra=extra)
        return self.send(url, body, check=check)

    # --- the flow -------------------------------------------------------------------------
    def register(self, **fields) -> requests.Response:
        response = self.post(self.directory["newAccount"], {"termsOfServiceAgreed": True, **fields}, use_jwk=True)
        self.kid = response.headers["Location"]
        return response

    def new_order(self, *names: str, kind: str = "dns") -> tuple[str, dict]:
        response = self.post(self.directory["newOrder"], {"identifiers": [{"type": kind, "value": n} for n in names]})
        return response.headers["Location"], response.json()

    def get(self, url: str) -> dict:
        return self.post(url).json()

    def key_authorization(self, token: str) -> str:
        return f"{token}.{self.thumbprint}"

    def authorize(self, order: dict, responder: "HTTP01Responder | TLSALPN01Responder",
                  kind: str = "http-01") -> list[dict]:
        """Answer every authorization of ``order`` with ``responder``; the challenges as answered."""
        answered = []
        for authz_url in order["authorizations"]:
            authz = self.get(authz_url)
            challenge = next(c for c in authz["challenges"] if c["type"] == kind)
            responder.add(authz["identifier"]["value"], challenge["token"], self.key_authorization(challenge["token"]))
            answered.append(self.post(challenge["url"], {}).json())
        return answered

    def wait(self, url: str, until: tuple[str, ...] = ("valid", "invalid", "ready"), timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            obj = self.get(url)
            if obj["status"] in until or time.monotonic() > deadline:
                return obj
            time.sleep(0.2)

    def finalize(self, order: dict, csr_der: bytes, *, check: bool = True) -> requests.Response:
        return self.post(order["finalize"], {"csr": b64(csr_der)}, check=check)

    def certificate(self, url: str) -> str:
        return self.post(url).text

    def obtain(self, names: list[str], responder, kind: str = "http-01") -> tuple[str, object, str]:
        """(chain PEM, certificate key, order URL) for ``names``, start to end."""
        import ipaddress

        try:
            ipaddress.ip_address(names[0])
            order_url, order = self.new_order(*names, kind="ip")
        except ValueError:
            order_url, order = self.new_order(*names)
        self.authorize(order, responder, kind)
        order = self.wait(order_url)
        assert order["status"] == "ready", order
        key = ec.generate_private_key(ec.SECP256R1())
        order = self.finalize(order, make_csr(key, names)).json()
        if order["status"] != "valid":
            order = self.wait(order_url, ("valid", "invalid"))
        return self.certificate(order["certificate"]), key, order_url


def make_csr(key, names: list[str], common_name: str | None = None) -> bytes:
    import ipaddress

    sans = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []))
    builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.DER)


# --- responders -------------------------------------------------------------------------------
class HTTP01Responder:
    """Answers GET /.well-known/acme-challenge/TOKEN on 127.0.0.1:port; ``wrong`` answers garbage.
    A subclass may act when the server fetches a known token (:meth:`fetched`), before the answer."""

    def __init__(self, port: int, *, wrong: bool = False, host: str = "127.0.0.1") -> None:
        self.tokens: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []  # (Host header, path)
        responder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                responder.requests.append((self.headers.get("Host", ""), self.path))
                token = self.path.rsplit("/", 1)[-1]
                if token in responder.tokens:
                    responder.fetched()
                body = ("not the key authorization" if wrong else responder.tokens.get(token, "")).encode()
                self.send_response(200 if token in responder.tokens else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        http.server.HTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def add(self, name: str, token: str, key_auth: str) -> None:
        self.tokens[token] = key_auth

    def fetched(self) -> None:
        """Called when the server fetches a known token, before it is answered."""

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def validation_certificate(name: str, key_auth: str, *, critical: bool = True, digest: bytes | None = None,
                           extra_names: tuple[str, ...] = ()) -> tuple[bytes, bytes]:
    """(cert PEM, key PEM) of a tls-alpn-01 certificate (RFC 8737), or a wrong one when asked."""
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    digest = digest if digest is not None else hashlib.sha256(key_auth.encode()).digest()
    try:
        names = [x509.IPAddress(ipaddress.ip_address(name))]
    except ValueError:
        names = [x509.DNSName(name)]
    names += [x509.DNSName(n) for n in extra_names]
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme validation")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31"),
                                                      b"\x04\x20" + digest), critical=critical)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


class TLSALPN01Responder:
    """A TLS server on 127.0.0.1:port that answers ALPN acme-tls/1 with a validation certificate.

    ``mode``: "right", or "not-critical", "wrong-digest", "two-names", "no-alpn" to fail on purpose.
    """

    def __init__(self, port: int, mode: str = "right") -> None:
        self.mode, self.port = mode, port
        self.contexts: dict[str, ssl.SSLContext] = {}
        self.sni_seen: list[str | None] = []
        self.tmp = tempfile.TemporaryDirectory()
        self.sock = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def add(self, name: str, token: str, key_auth: str) -> None:
        kwargs = {"not-critical": {"critical": False}, "wrong-digest": {"digest": b"\0" * 32},
                  "two-names": {"extra_names": ("extra.acme.test",)}}.get(self.mode, {})
        cert_pem, key_pem = validation_certificate(name, key_auth, **kwargs)
        folder = Path(self.tmp.name)
        (folder / "c.pem").write_bytes(cert_pem)
        (folder / "k.pem").write_bytes(key_pem)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(folder / "c.pem", folder / "k.pem")
        if self.mode != "no-alpn":
            ctx.set_alpn_protocols(["acme-tls/1"])
        self.contexts[name] = ctx
        self.default = ctx

        def pick(sslsock, server_name, _ctx):
            self.sni_seen.append(server_name)
            for known, context in self.contexts.items():
                import ipaddress

                try:
                    reverse = ipaddress.ip_address(known).reverse_pointer
                except ValueError:
                    reverse = known
                if server_name in (known, reverse):
                    sslsock.context = context
                    return None
            return None

        for context in self.contexts.values():
            context.sni_callback = pick

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._handshake, args=(conn,), daemon=True).start()

    def _handshake(self, conn) -> None:
        try:
            conn.settimeout(5)
            with self.default.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError, AttributeError):
            pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()
        self.tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
