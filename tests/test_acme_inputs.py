"""What a client sends that the server must refuse, and how: every JSON field it reads, given the
wrong type, is a 4xx problem (never a 500 with a traceback in the log); base64url is strict; the
CSR may not reuse an account key, be PEM, or ask for more than the order; account fields are
exact; http.server's own refusals are problem documents; an expired order says it expired."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from acme_client import AcmeError, Client, HTTP01Responder, b64, make_csr, sign
from acme_helpers import AcmeServer, module_server

NAMES = ("a.acme.test", "b.acme.test", "c.acme.test", "d.acme.test", "e.acme.test")
WRONG = (["x"], {"a": 1}, 5, 1.5, True, None, "x")
HMAC_KEY = b"k" * 32
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("acme")
    key_file = tmp / "eab.key"
    key_file.write_text(b64(HMAC_KEY) + "\n")
    key_file.chmod(0o600)
    setup = module_server(tmp, NAMES)
    eab = AcmeServer("--eab-kid", "team-1", "--eab-hmac-file", key_file, env=setup.env)
    setup.eab = eab
    try:
        yield setup
    finally:
        eab.stop()
        setup.server.stop()
    for server in (setup.server, eab):
        assert "Traceback" not in server.stderr and "serverInternal" not in server.stderr, server.stderr


def client(acme, register: bool = True) -> Client:
    c = Client(acme.server.directory, acme.root)
    if register:
        c.register(contact=["mailto:ops@acme.test"])
    return c


def refused(call, *args, **kwargs) -> AcmeError:
    """The AcmeError ``call(*args, **kwargs)`` raises: a 4xx problem document."""
    with pytest.raises(AcmeError) as exc:
        call(*args, **kwargs)
    error = exc.value
    assert 400 <= error.status < 500, (error.status, error.problem)
    assert error.response.headers["Content-Type"] == "application/problem+json"
    return error


def ready_order(acme, c: Client, name: str) -> tuple[str, dict]:
    url, order = c.new_order(name)
    with HTTP01Responder(acme.http_port) as responder:
        c.authorize(order, responder)
        order = c.wait(url)
    assert order["status"] == "ready", order
    return url, order


def new_key():
    return ec.generate_private_key(ec.SECP256R1())


# --- finding 3: every field, every wrong type ----------------------------------------------------
def test_every_field_of_the_wrong_type_is_a_4xx_problem(acme) -> None:
    c = client(acme)
    fresh = client(acme, register=False)
    d = c.directory
    _url, order = c.new_order("a.acme.test")
    authz = order["authorizations"][0]
    for wrong in WRONG:
        for field in ("contact", "termsOfServiceAgreed", "onlyReturnExisting"):
            if not isinstance(wrong, bool):
                refused(fresh.post, d["newAccount"], {field: wrong}, use_jwk=True)
        if wrong is not None:
            refused(c.post, c.kid, {"contact": wrong})
            refused(c.post, c.kid, {"contact": [wrong]})
            if not isinstance(wrong, str):  # a status string but "deactivated" is ignored (RFC 8555 7.3.2)
                refused(c.post, c.kid, {"status": wrong})
            refused(c.post, authz, {"status": wrong})
        refused(c.post, d["newOrder"], {"identifiers": wrong})
        refused(c.post, d["newOrder"], {"identifiers": [wrong]})
        refused(c.post, d["newOrder"], {"identifiers": [{"type": wrong, "value": "a.acme.test"}]})
        refused(c.post, d["newOrder"], {"identifiers": [{"type": "dns", "value": wrong}]})
        refused(c.post, order["finalize"], {"csr": wrong})
        refused(c.post, d["revokeCert"], {"certificate": wrong})
        refused(c.post, d["keyChange"], {"protected": wrong, "payload": "", "signature": ""})
        for header in ("alg", "nonce", "url", "kid", "crit", "jwk"):
            refused(c.post, d["newOrder"], {"identifiers": []}, extra={header: wrong})
        refused(fresh.post, d["newAccount"], {}, use_jwk=True, extra={"jwk": wrong})
    assert refused(c.post, d["revokeCert"], {"certificate": ["x"]}).type == "malformed"
    assert c.get(c.kid)["status"] == "valid"


def _binding(c: Client, alg="HS256", **over) -> dict:
    protected = b64(json.dumps({"alg": alg, "kid": "team-1", "url": c.directory["newAccount"]}).encode())
    payload = b64(json.dumps(c.key.public_key().to_json()).encode())
    mac = hmac.new(HMAC_KEY, f"{protected}.{payload}".encode(), hashlib.sha256).digest()
    return {"protected": protected, "payload": payload, "signature": b64(mac)} | over


def test_external_account_bindings_of_the_wrong_shape(acme) -> None:
    c = Client(acme.eab.directory, acme.root)
    new_account = c.directory["newAccount"]

    def register(binding) -> AcmeError:
        return refused(c.post, new_account, {"termsOfServiceAgreed": True, "externalAccountBinding": binding},
                       use_jwk=True)

    for alg in (["HS256"], {"a": 1}, 5, None):
        error = register(_binding(c, alg=alg))
        assert error.type == "badSignatureAlgorithm" and error.problem["algorithms"], error.problem
    for wrong in WRONG[:-1]:
        for member in ("protected", "payload", "signature"):
            assert register(_binding(c, **{member: wrong})).type == "malformed"
        if wrong is not None:  # None: no binding, externalAccountRequired
            assert register(wrong).type == "malformed"
    assert register(_binding(c, payload=b64(b"[1, 2]"))).type == "malformed"
    kid_list = b64(json.dumps({"alg": "HS256", "kid": ["team-1"], "url": new_account}).encode())
    assert register(_binding(c, protected=kid_list)).type == "malformed"
    created = c.post(new_account, {"termsOfServiceAgreed": True, "externalAccountBinding": _binding(c)}, use_jwk=True)
    assert created.status_code == 201


# --- finding 5: base64url, exactly ---------------------------------------------------------------
@pytest.mark.parametrize("part, change", [
    ("protected", lambda v: v + "=="), ("payload", lambda v: v[:5] + "!!" + v[5:]),
    ("signature", lambda v: v.replace("-", "+").replace("_", "/") + "+/"), ("payload", lambda v: v + " "),
    ("signature", lambda v: v[:-1] + B64[B64.index(v[-1]) ^ 1]),  # only the last character's spare bits differ
])
def test_jws_parts_must_be_strict_base64url(acme, part: str, change) -> None:
    c = client(acme)
    url = c.directory["newOrder"]
    body = sign({"identifiers": [{"type": "dns", "value": "a.acme.test"}]}, c.key, c.alg, url=url,
                nonce=c.nonce(), kid=c.kid)
    body[part] = change(body[part])
    error = refused(c.send, url, body)
    assert error.type == "malformed", error.problem


def test_csr_and_certificate_must_be_strict_base64url_der(acme) -> None:
    c = client(acme)
    _url, order = ready_order(acme, c, "b.acme.test")
    der = make_csr(new_key(), ["b.acme.test"])
    for text in (b64(der) + "==", b64(der).replace("-", "+").replace("_", "/") + "+", b64(der) + "*"):
        error = refused(c.post, order["finalize"], {"csr": text})
        assert error.type == "malformed" and "base64url" in error.problem["detail"], error.problem
    pem = x509.load_der_x509_csr(der).public_bytes(Encoding.PEM)
    error = refused(c.post, order["finalize"], {"csr": b64(pem)})
    assert error.type == "badCSR" and "PEM" in error.problem["detail"], error.problem
    done = c.finalize(order, der).json()
    cert = x509.load_pem_x509_certificate(c.certificate(done["certificate"]).encode())
    cert_der = cert.public_bytes(Encoding.DER)
    error = refused(c.post, c.directory["revokeCert"], {"certificate": b64(cert_der) + "="})
    assert error.type == "malformed", error.problem
    assert c.post(c.directory["revokeCert"], {"certificate": b64(cert_der)}).status_code == 200


# --- findings 2 and 6: what a CSR may not do ------------------------------------------------------
def test_a_csr_with_an_account_key_is_refused(acme) -> None:
    c, other = client(acme), client(acme)
    _url, order = ready_order(acme, c, "c.acme.test")
    for key in (c.key.key._wrapped, other.key.key._wrapped):  # the requesting account's key, and any other account's
        error = refused(c.finalize, order, make_csr(key, ["c.acme.test"]))
        assert error.type == "badCSR" and "account key" in error.problem["detail"], error.problem
    assert c.finalize(order, make_csr(new_key(), ["c.acme.test"])).json()["status"] == "valid"


def _csr_asking_for_more(key, name: str, *, sans=(), ca: bool = False) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, name)]))
    builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name), *sans]), critical=False)
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def test_a_csr_asking_for_more_than_the_order_is_refused(acme) -> None:
    c = client(acme)
    _url, order = ready_order(acme, c, "d.acme.test")
    key = new_key()
    cases = [({"sans": [x509.RFC822Name("evil@other.test")]}, "subjectAltName email:evil@other.test"),
             ({"sans": [x509.UniformResourceIdentifier("https://other.test/")]},
              "subjectAltName URI:https://other.test/"),
             ({"ca": True}, "basicConstraints CA:TRUE")]
    for kwargs, named in cases:
        error = refused(c.finalize, order, _csr_asking_for_more(key, "d.acme.test", **kwargs))
        assert error.type == "badCSR" and named in error.problem["detail"], error.problem
        assert "not allowed" in error.problem["detail"]
    assert c.finalize(order, _csr_asking_for_more(key, "d.acme.test")).json()["status"] == "valid"


# --- finding 10: account fields ---------------------------------------------------------------
def test_account_fields_are_exact(acme) -> None:
    c = client(acme)
    for contact in ("mailto:ops@acme.test\n", "mailto: ops@acme.test", " mailto:ops@acme.test", "mailto:o\tps@a.test"):
        error = refused(c.post, c.kid, {"contact": [contact]})
        assert error.type == "invalidContact", error.problem
    kept = c.post(c.kid, {"contact": ["mailto:a@acme.test", "mailto:a@acme.test", "mailto:b@acme.test"]}).json()
    assert kept["contact"] == ["mailto:a@acme.test", "mailto:b@acme.test"]
    stranger = client(acme, register=False)
    for value in ("true", 1, None):
        error = refused(stranger.post, stranger.directory["newAccount"], {"onlyReturnExisting": value},
                                              use_jwk=True)
        assert error.type == "malformed" and "onlyReturnExisting must be true or false" in error.problem["detail"]
    error = refused(stranger.post, stranger.directory["newAccount"], {"onlyReturnExisting": True},
                                          use_jwk=True)
    assert error.type == "accountDoesNotExist"


# --- finding 8: an expired order ------------------------------------------------------------------
def test_finalizing_an_expired_order_says_it_expired(acme) -> None:
    from certkit.inventory import Inventory

    c = client(acme)
    url, order = ready_order(acme, c, "e.acme.test")
    with Inventory(acme.issuing / "inventory.sqlite3").db.transaction(write=True) as tx:
        tx.execute("UPDATE acme_orders SET expires = '2020-01-01T00:00:00Z' WHERE id = ?", (url.rsplit("/", 1)[1],))
    error = refused(c.finalize, order, make_csr(new_key(), ["e.acme.test"]))
    assert error.status == 403 and error.type == "orderNotReady", error.problem
    assert "The order expired at 2020-01-01T00:00:00Z before it was finalized; place a new order." \
        == error.problem["detail"]
    shown = c.get(url)
    assert shown["status"] == "invalid" and "error" not in shown, shown  # its expires says why (acme8 #5)


# --- finding 7: http.server's own refusals ------------------------------------------------------------
def _raw(acme, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send ``request`` over TLS as it is; (status line, headers, body) of the answer."""
    context = ssl.create_default_context(cafile=str(acme.root))
    host, port = acme.server.directory.split("/")[2].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock, \
            context.wrap_socket(sock, server_hostname=host) as tls:
        tls.sendall(request)
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            lengths = [line.split(b":", 1)[1] for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length")]
            if sep and lengths and len(body) >= int(lengths[0]):
                break
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    return status, {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}, body


@pytest.mark.parametrize("request_bytes, status, allow", [
    (b"OPTIONS /directory HTTP/1.1\r\nHost: x\r\n\r\n", 405, "GET, HEAD, POST"),
    (b"PATCH /acme/new-order HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 405, "POST"),
    (b"FROB /acme/new-order HTTP/1.1\r\nHost: x\r\n\r\n", 405, "POST"),
    (b"GARBAGE\r\n\r\n", 400, None),
    (b"GET /directory HTTP/1.1\r\nHost: " + b"x" * 70000 + b"\r\n\r\n", 431, None),
    (b"GET /" + b"x" * 70000 + b" HTTP/1.1\r\n\r\n", 414, None),
], ids=["options", "patch", "unknown-method", "bad-request-line", "long-header", "long-request-line"])
def test_http_level_refusals_are_problem_documents(acme, request_bytes: bytes, status: int, allow) -> None:
    line, headers, body = _raw(acme, request_bytes)
    assert line.startswith(f"HTTP/1.1 {status} "), line
    assert headers["content-type"] == "application/problem+json", headers
    problem = json.loads(body)
    assert problem["type"] == "urn:ietf:params:acme:error:malformed" and problem["status"] == status, problem
    assert headers["replay-nonce"] and 'rel="index"' in headers["link"], headers
    if allow:
        assert headers["allow"] == allow, headers
    assert b"<html" not in body.lower()
