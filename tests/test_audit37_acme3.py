"""The ACME server, audit round thirty-seven (acme3):

1. a failed validation's problem repeated the library's words: OpenSSL's reason code (``WRONG_VERSION_NUMBER``
   for a plain HTTP server on the tls-alpn-01 port, ``SSLV3_ALERT_HANDSHAKE_FAILURE``, ``[SSL] tlsv1 alert no
   application protocol (_ssl.c:1006)`` where Python has no name for the reason) and ``http.client``'s text, which
   is what the other side sent: an SSH server's banner with its CR LF, a TLS alert's raw bytes (a TLS server on
   the http-01 port), "Remote end closed connection without response", "got more than 100 headers". Each is now
   said in certkit's words (certkit/acme/failures.py), what the other side sent quoted short and escaped.
2. a tls-alpn-01 certificate, or an ``x5c`` header certificate, that holds an extension twice was said in
   cryptography's words ("cannot be parsed: Duplicate 1.3.6.1.5.5.7.1.31 extension found"): now "it holds the
   extension 1.3.6.1.5.5.7.1.31 more than once, which X.509 forbids (RFC 5280 4.2)".
3. a ``b64`` header parameter (RFC 7797's unencoded payload option, which RFC 8555 6.2 says MUST NOT be used, and
   which without ``crit`` is not even that option's) was taken: a new-order with ``"b64": false`` got 201, as did
   a key change's inner JWS and an external account binding with it. Each is now refused, ``malformed``.
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


# --- 2. an extension given twice, in certkit's words, not cryptography's ------------------------------------------
def _twice_certificate(name: str, key_auth: str) -> tuple[bytes, bytes]:
    """A tls-alpn-01 certificate that holds acmeIdentifier twice (a second extension's OID patched to it, so its
    signature no longer holds, which neither side checks): OpenSSL loads and serves it, cryptography refuses it with
    DuplicateExtension."""
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    from acme_client import validation_certificate

    cert_pem, key_pem = validation_certificate(name, key_auth)
    cert, key = x509.load_pem_x509_certificate(cert_pem), serialization.load_pem_private_key(key_pem, None)
    builder = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer).serial_number(5)
               .public_key(key.public_key()).not_valid_before(cert.not_valid_before_utc)
               .not_valid_after(cert.not_valid_after_utc))
    for ext in cert.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    other = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.99"), b"\x04\x20" + b"\1" * 32)
    der = builder.add_extension(other, True).sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    patched = der.replace(bytes.fromhex("06082b06010505070163"), bytes.fromhex("06082b0601050507011f"))
    assert patched != der
    return (b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(patched) + b"-----END CERTIFICATE-----\n", key_pem)


TWICE = "holds the extension 1.3.6.1.5.5.7.1.31 more than once, which X.509 forbids (RFC 5280 4.2)"


def test_a_validation_certificate_with_an_extension_twice_is_said_in_words(setup) -> None:
    import pathlib
    import ssl

    from acme_client import TLSALPN01Responder

    class TwiceResponder(TLSALPN01Responder):
        def add(self, name: str, token: str, key_auth: str) -> None:
            folder = pathlib.Path(self.tmp.name)
            for path, pem in zip(("c.pem", "k.pem"), _twice_certificate(name, key_auth), strict=True):
                (folder / path).write_bytes(pem)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(folder / "c.pem", folder / "k.pem")
            context.set_alpn_protocols(["acme-tls/1"])
            self.contexts[name] = self.default = context

    c = _account(setup.server.directory, setup.root)
    url, order = c.new_order(NAMES[11])
    with TwiceResponder(setup.tls_port) as responder:
        c.authorize(order, responder, "tls-alpn-01")
        authz = c.wait(order["authorizations"][0], ("valid", "invalid"))
    assert authz["status"] == "invalid", authz
    error = next(ch for ch in authz["challenges"] if ch["type"] == "tls-alpn-01")["error"]
    assert f"cannot be parsed: it {TWICE}" in error["detail"], error
    assert "Duplicate" not in error["detail"], error


def test_an_x5c_certificate_with_an_extension_twice_is_said_in_words(setup) -> None:
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    pem, _key = _twice_certificate("x.acme.test", "t.k")
    entry = base64.b64encode(x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)).decode()
    c = _account(setup.server.directory, setup.root)
    order = {"identifiers": [{"type": "dns", "value": NAMES[12]}]}
    response = c.post(c.directory["newOrder"], order, check=False, extra={"x5c": [entry]})
    doc = response.json()
    assert (response.status_code, doc["type"]) == (400, "urn:ietf:params:acme:error:malformed"), doc
    assert f"its entry 1 is no certificate: it {TWICE}" in doc["detail"] and "Duplicate" not in doc["detail"], doc


# --- 3. the unencoded payload option (b64), which RFC 8555 6.2 forbids ----------------------------------------------
UNENCODED = ("'b64' header parameter: the JWS unencoded payload option (RFC 7797) must not be used in ACME "
             "(RFC 8555 6.2)")


@pytest.mark.parametrize("b64_value", [False, True])
def test_a_b64_header_parameter_is_refused_in_every_jws(setup, b64_value: bool) -> None:
    import josepy as jose

    from acme_client import account_key, sign

    c = _account(setup.server.directory, setup.root)
    order = {"identifiers": [{"type": "dns", "value": NAMES[13]}]}
    response = c.post(c.directory["newOrder"], order, check=False, extra={"b64": b64_value})
    doc = response.json()
    assert (response.status_code, doc["type"]) == (400, "urn:ietf:params:acme:error:malformed"), doc
    assert doc["detail"].startswith("The JWS's protected header has a " + UNENCODED), doc
    # the inner JWS of a key change: refused, and the account keeps its key
    url, new = c.directory["keyChange"], account_key("ES256")[0]
    inner = sign({"account": c.kid, "oldKey": c.key.public_key().to_json()}, new, jose.ES256, url=url, nonce=None,
                 extra={"jwk": new.public_key().to_json(), "b64": b64_value})
    response = c.post(url, inner, check=False)
    doc = response.json()
    assert response.status_code == 400 and doc["detail"].startswith(
        "The inner JWS of the key change's protected header has a " + UNENCODED), doc
    assert c.post(c.kid, check=False).status_code == 200  # the old key still signs for the account


def test_a_b64_header_parameter_is_refused_in_an_external_account_binding(setup, tmp_path) -> None:
    import contextlib
    import hashlib
    import hmac
    import json

    from acme_client import Client, b64
    from acme_helpers import AcmeServer

    (tmp_path / "eab.key").write_text(b64(b"e" * 32) + "\n")
    (tmp_path / "eab.key").chmod(0o600)
    with contextlib.ExitStack() as stack:
        server = AcmeServer("--eab-kid", "kid-37", "--eab-hmac-file", tmp_path / "eab.key", env=setup.env)
        stack.callback(server.stop)
        c = Client(server.directory, setup.root)
        url = c.directory["newAccount"]
        signed = [b64(json.dumps(part).encode()) for part in
                  ({"alg": "HS256", "kid": "kid-37", "url": url, "b64": False}, c.key.public_key().to_json())]
        mac = hmac.new(b"e" * 32, ".".join(signed).encode(), hashlib.sha256).digest()
        binding = dict(zip(("protected", "payload", "signature"), [*signed, b64(mac)], strict=True))
        response = c.post(url, {"termsOfServiceAgreed": True, "externalAccountBinding": binding}, use_jwk=True,
                          check=False)
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith("The externalAccountBinding's protected header has a " + UNENCODED)
