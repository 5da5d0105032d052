"""The ACME server, audit round thirty-four (acme2):

1. docs/acme.md says a pending order carries ``Retry-After`` (RFC 8555 7.4, 8.2), but the 201 answer to
   new-order, an order that is pending, had none (only a POST-as-GET of the order had it), and finalize answered
   without going through the same rule. Every resource that answers with an order now gives Retry-After exactly
   while it is pending or processing; authorizations and challenges keep theirs (pending; being validated).
2. problem documents repeated a client's value whole, however long: a revocation reason of 400 digits, a 5,000
   character identifier (twice: in the detail and the subproblem's identifier), a cursor, a contact, a status.
   Each value of more than 256 characters (a DNS name is at most 253) is now cut to its start, its end and its
   length, once, in the problem itself (as the command line's errors cut theirs).
3. a JSON integer of more than 4,300 digits (Python's int conversion limit) in a payload, a protected header or
   the request body was refused as "The JWS payload is not JSON": it is JSON. It is now said as an integer of so
   many digits, more than any ACME field takes. Its converse: ``NaN``, ``Infinity`` and ``-Infinity``, which Python
   reads and RFC 8259 6 does not allow, were taken as numbers ("reason must be an integer, not NaN"); they are
   now "not JSON", as the request is.
4. a name IDNA2008 refuses was refused in the idna package's words (``xn--a.acme.test``: "Codepoint U+0080 at
   position 1 of '\\x80' not allowed"; ``xn--zz``: "Invalid A-label"), which name neither the label nor what
   is wrong: now in certkit's, at new-order and on the command line (the same name rules).
5. a ``kid`` written with its scheme or host in capitals (``HTTPS://127.0.0.1:PORT/acme/acct/ID``) was told it
   is the account's URL "at another address than this request was sent to", which it is not: a URL's scheme
   and host are case-insensitive (RFC 3986 6.2.2.1). Such a kid, url header, key change ``account`` and inner
   ``url`` are now taken as the URL they are; another host or port is still refused as before.
6. the server's log (``--verbose``, standard error) repeated a client's request target whole: a GET of 20,000
   characters made a log line of 20,000, and a request line http.server refuses the same. The one log function of
   ``acme serve`` and ``serve`` (``serve.stderr_log``) now cuts a value over 500 characters, as errors are cut.
7. the sibling of 4 in the JWS: a protected header whose ``typ``, ``cty`` or ``x5t`` is no string, or whose ``x5c``
   is no list of base64 DER certificates, was refused in josepy's or Python's words ("The JWS cannot be parsed:
   'int' object is not iterable", "argument of type 'int' is not iterable", "... ParseError { kind: UnexpectedTag
   ..."), and a ``jku`` or ``x5u`` that is no string was taken. Each is now ``malformed`` naming the parameter and
   what is wrong with it, and the last resort no longer repeats a library's message.
8. and in a failed tls-alpn-01 challenge: a validation certificate OpenSSL serves but cryptography cannot parse
   (its critical flag a BER boolean, 0x01 where DER has 0xFF) failed with "cannot be parsed (error parsing asn1
   value: ParseError { kind: InvalidValue, location: [...] })"; it is now said in words, as every command says a
   damaged certificate ("it is not valid DER: a field holds an invalid value (in the extensions)").
"""

from __future__ import annotations

import base64
import json
import subprocess

import josepy as jose
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from test_audit5_acme import _account

from acme_client import Client, HTTP01Responder, account_key, b64, make_csr, sign
from acme_helpers import serving

NAMES = tuple(f"s{i}.acme.test" for i in range(1, 12))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    yield from serving(tmp_path_factory.mktemp("acme34"), NAMES)


def _client(setup) -> Client:
    return _account(setup.server.directory, setup.root)


def _polled(response) -> bool:
    return response.headers.get("Retry-After") == "1"


# --- 1. Retry-After by state, on every resource ------------------------------------------------------------------
def test_every_order_and_authorization_answer_carries_retry_after_exactly_while_pending(setup) -> None:
    c = _client(setup)
    created = c.post(c.directory["newOrder"], {"identifiers": [{"type": "dns", "value": "s1.acme.test"}]})
    order_url, order = created.headers["Location"], created.json()
    assert created.status_code == 201 and order["status"] == "pending"
    assert _polled(created), dict(created.headers)  # the 201 of new-order, as docs/acme.md says
    assert _polled(c.post(order_url))
    authz_url = order["authorizations"][0]
    assert _polled(c.post(authz_url))
    with HTTP01Responder(setup.http_port) as responder:
        c.authorize(order, responder)
        assert c.wait(order_url)["status"] == "ready"
    for url in (order_url, authz_url):  # ready, valid: nothing to wait for
        fetched = c.post(url)
        assert fetched.json()["status"] in ("ready", "valid") and not _polled(fetched), dict(fetched.headers)
    done = c.finalize(order, make_csr(ec.generate_private_key(ec.SECP256R1()), ["s1.acme.test"]))
    assert done.json()["status"] == "valid" and not _polled(done), dict(done.headers)
    assert done.headers["Location"] == order_url
    assert not _polled(c.post(order_url))
    # invalid order and authorization (a failed challenge): never polled either
    url2, order2 = c.new_order("s2.acme.test")
    with HTTP01Responder(setup.http_port, wrong=True) as responder:
        c.authorize(order2, responder)
        assert c.wait(url2, ("invalid",))["status"] == "invalid"
    for url in (url2, order2["authorizations"][0]):
        fetched = c.post(url)
        assert fetched.json()["status"] == "invalid" and not _polled(fetched)
    # a deactivated authorization, answered and read
    _url3, order3 = c.new_order("s3.acme.test")
    answered = c.post(order3["authorizations"][0], {"status": "deactivated"})
    assert answered.json()["status"] == "deactivated" and not _polled(answered)


# --- 2. what a problem repeats of a client's value is bounded --------------------------------------------------------
def _problem(response) -> tuple[int, str, dict]:
    doc = response.json()
    return response.status_code, doc["type"].rsplit(":", 1)[1], doc


def test_a_long_value_is_repeated_cut_in_a_problem_document(setup) -> None:
    c = _client(setup)
    url, order = c.new_order("s4.acme.test")
    long_name = "a" * 5000 + ".acme.test"
    long_contact = "mailto:" + "x" * 3000
    cases = [
        (c.directory["newOrder"], {"identifiers": [{"type": "dns", "value": long_name}]}, len(long_name)),
        (c.directory["newOrder"], {"identifiers": [{"type": "foo" * 1000, "value": "s4.acme.test"}]}, 3000),
        (c.kid, {"contact": [long_contact]}, len(long_contact)),
        (order["authorizations"][0], {"status": "x" * 2000}, 2000),  # the JSON string, without its quotes
        (c.kid + "/orders?cursor=" + "A" * 3000, None, 3000),
    ]
    for target, payload, length in cases:
        status, kind, doc = _problem(c.post(target, payload, check=False))
        assert 400 <= status < 500, doc
        text = json.dumps(doc)
        assert len(text) < 2000, (kind, len(text), text[:300])
        assert f"({length} characters)" in text, (kind, doc["detail"][:400])


def test_a_long_revocation_reason_is_cut_whether_it_is_taken_or_not(setup) -> None:
    """The reason alone is judged: its echo is cut before the certificate is even read."""
    c = _client(setup)
    with HTTP01Responder(setup.http_port) as responder:
        chain, _key, _url = c.obtain(["s5.acme.test"], responder)
    der = x509.load_pem_x509_certificate(chain.encode()).public_bytes(Encoding.DER)
    for reason in (int("1" * 400), "9" * 400):
        status, kind, doc = _problem(c.post(c.directory["revokeCert"], {"certificate": b64(der), "reason": reason},
                                            check=False))
        assert kind in ("badRevocationReason", "malformed") and len(doc["detail"]) < 600, doc["detail"]
        assert "characters)" in doc["detail"]


# --- 3. an integer longer than Python converts is JSON ----------------------------------------------------------
def test_an_integer_of_more_than_4300_digits_is_said_so_not_not_json(setup) -> None:
    c = _client(setup)
    huge = "7" * 5000
    payload = ('{"certificate": "AA", "reason": ' + huge + "}").encode()
    status, kind, doc = _problem(c.post(c.directory["revokeCert"], payload, check=False))
    assert (status, kind) == (400, "malformed"), doc
    assert "integer of 5000 digits" in doc["detail"] and "not JSON" not in doc["detail"], doc["detail"]
    # in the protected header too (an extra member), and in the request body's own JSON
    body = sign({}, c.key, c.alg, url=c.directory["newOrder"], nonce=c.nonce(), kid=c.kid)
    header = json.loads(base64.urlsafe_b64decode(body["protected"] + "=="))
    text = json.dumps(header)[:-1] + ', "x": ' + huge + "}"
    body["protected"] = b64(text.encode())
    status, kind, doc = _problem(c.send(c.directory["newOrder"], body, check=False))
    assert kind == "malformed" and "integer of 5000 digits" in doc["detail"], doc["detail"]
    raw = c.session.post(c.directory["newOrder"], data='{"protected": ' + huge + "}", timeout=30,
                         headers={"Content-Type": "application/jose+json"})
    assert raw.status_code == 400 and "integer of 5000 digits" in raw.json()["detail"], raw.text
    # a number within the limit is read as before: a reason that is no reason, said as such
    status, kind, doc = _problem(c.post(c.directory["revokeCert"], ('{"certificate": "AA", "reason": ' + "7" * 4300
                                                                     + "}").encode(), check=False))
    assert "not JSON" not in doc["detail"] and "digits" not in doc["detail"].split("(")[0], doc["detail"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(setup, constant: str) -> None:
    c = _client(setup)
    payload = ('{"certificate": "AA", "reason": ' + constant + "}").encode()
    status, kind, doc = _problem(c.post(c.directory["revokeCert"], payload, check=False))
    assert (status, kind, doc["detail"]) == (400, "malformed", "The JWS payload is not JSON."), doc
    body = sign({}, c.key, c.alg, url=c.directory["newOrder"], nonce=c.nonce(), kid=c.kid)
    header = json.loads(base64.urlsafe_b64decode(body["protected"] + "=="))
    body["protected"] = b64((json.dumps(header)[:-1] + ', "x": ' + constant + "}").encode())
    status, kind, doc = _problem(c.send(c.directory["newOrder"], body, check=False))
    assert kind == "malformed" and "protected header is not base64url-encoded JSON" in doc["detail"], doc


# --- 4. IDNA refusals in certkit's words --------------------------------------------------------------------------
IDNA_CASES = {
    "xn--a.acme.test": "label 'xn--a' is the A-label of '\\x80', which holds U+0080 (a control character)",
    "XN--A.acme.test": "label 'xn--a' is the A-label of",
    "xn--zz.acme.test": "label 'xn--zz' is not the Punycode form (an A-label) of any label",
    "xn--abc-.acme.test": "label 'xn--abc-' decodes to 'abc', all ASCII",
    "xn--ls8h.acme.test": "holds U+1F4A9 (PILE OF POO)",
    "\U0001F4A9.acme.test": "label '\U0001F4A9' holds U+1F4A9 (PILE OF POO), a character IDNA2008 does not allow",
    "a\u05d0.acme.test": "mixes right-to-left and left-to-right characters",
}


@pytest.mark.parametrize("name", list(IDNA_CASES))
def test_a_name_idna2008_refuses_is_refused_in_certkits_words(setup, name: str, tmp_path) -> None:
    c = _client(setup)
    status, kind, doc = _problem(c.post(c.directory["newOrder"], {"identifiers": [{"type": "dns", "value": name}]},
                                        check=False))
    assert (status, kind) == (400, "rejectedIdentifier"), doc
    detail = doc["detail"]
    assert IDNA_CASES[name] in detail, detail
    for idna_words in ("Codepoint", "Invalid A-label", "position", "Invalid direction", "not allowed"):
        assert idna_words not in detail, detail
    # the command line applies the same rules, so says the same
    cli = subprocess.run(["certkit", "issue-server", name, "--out", str(tmp_path / "out")], env=setup.env,
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode != 0 and IDNA_CASES[name] in cli.stderr and "Codepoint" not in cli.stderr, cli.stderr
    assert not (tmp_path / "out").exists()


# --- 5. a URL written in capitals is the same URL -----------------------------------------------------------------
def _shouted(url: str) -> str:
    scheme, rest = url.split("://", 1)
    host, path = rest.split("/", 1)
    return f"{scheme.upper()}://{host.upper()}/{path}"


def test_a_kid_and_url_written_in_capitals_are_the_same_urls(setup) -> None:
    c = _client(setup)
    order_url = c.directory["newOrder"]
    for kid, url in ((_shouted(c.kid), order_url), (c.kid, _shouted(order_url)),
                     (c.kid.replace("https://", "HTTPS://"), order_url)):
        body = sign({"identifiers": [{"type": "dns", "value": "s6.acme.test"}]}, c.key, c.alg, url=url,
                    nonce=c.nonce(), kid=kid)
        response = c.send(order_url, body, check=False)
        assert response.status_code == 201, response.text
    # the key change: its inner url and its account in capitals
    url, new = c.directory["keyChange"], account_key("ES256")[0]
    inner = sign({"account": _shouted(c.kid), "oldKey": c.key.public_key().to_json()}, new, jose.ES256,
                 url=_shouted(url), nonce=None, extra={"jwk": new.public_key().to_json()})
    assert c.post(url, inner, check=False).status_code == 200, c.last.text
    c.key = new
    assert c.get(c.kid)["status"] == "valid"
    # another port is still another address, said so; another path is no account
    other_port = c.kid.replace(f":{c.kid.split(':')[2].split('/')[0]}/", ":1/")
    body = sign({"identifiers": [{"type": "dns", "value": "s6.acme.test"}]}, c.key, c.alg, url=order_url,
                nonce=c.nonce(), kid=other_port)
    status, kind, doc = _problem(c.send(order_url, body, check=False))
    assert kind == "malformed" and "at another address" in doc["detail"], doc
    body = sign({"identifiers": [{"type": "dns", "value": "s6.acme.test"}]}, c.key, c.alg, url=order_url,
                nonce=c.nonce(), kid=c.kid.upper())  # the path (the account id) is case-sensitive
    status, kind, doc = _problem(c.send(order_url, body, check=False))
    assert kind == "accountDoesNotExist", doc




def test_an_external_account_binding_whose_url_is_written_in_capitals_binds(setup, tmp_path) -> None:
    import hashlib
    import hmac

    from acme_helpers import AcmeServer

    key = b"k" * 32
    key_file = tmp_path / "eab.key"
    key_file.write_text(b64(key) + "\n")
    key_file.chmod(0o600)
    eab = AcmeServer("--eab-kid", "team-1", "--eab-hmac-file", key_file, env=setup.env)
    try:
        c = Client(eab.directory, setup.root)
        new_account = c.directory["newAccount"]
        for url, status in ((_shouted(new_account), 201), (new_account.replace("/new-account", "/NEW-ACCOUNT"), 400)):
            c = Client(eab.directory, setup.root)
            protected = b64(json.dumps({"alg": "HS256", "kid": "team-1", "url": url}).encode())
            payload = b64(json.dumps(c.key.public_key().to_json()).encode())
            mac = hmac.new(key, f"{protected}.{payload}".encode(), hashlib.sha256).digest()
            binding = {"protected": protected, "payload": payload, "signature": b64(mac)}
            response = c.post(new_account, {"termsOfServiceAgreed": True, "externalAccountBinding": binding},
                              use_jwk=True, check=False)
            assert response.status_code == status, (url, response.text)
    finally:
        eab.stop()


# --- 6. the log cuts a long request target ------------------------------------------------------------------------
def test_a_long_request_target_is_logged_cut(setup) -> None:
    import socket
    import ssl
    import time

    import requests

    session = requests.Session()
    session.trust_env, session.verify = False, str(setup.root)
    base = setup.server.directory.rsplit("/", 1)[0]
    assert session.get(base + "/" + "A" * 20000, timeout=30).status_code == 404
    assert session.get(base + "/directory?" + "q" * 20000, timeout=30).status_code == 200
    host, port = base.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(setup.root))
    with socket.create_connection((host, int(port)), timeout=30) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:  # a request line http.server refuses itself
        tls.sendall(b"GET /" + b"B" * 20000 + b" HTTP/1.1 extra\r\nHost: x\r\n\r\n")
        assert tls.recv(100).startswith(b"HTTP/1.")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and setup.server.stderr.count("characters)") < 3:
        time.sleep(0.1)
    lines = setup.server.stderr.splitlines()
    assert max(len(line) for line in lines) < 1000, [line[:200] for line in lines if len(line) >= 1000]
    assert "(20001 characters)" in setup.server.stderr and "(20011 characters)" in setup.server.stderr


# --- 7. a JOSE header parameter of the wrong type, in certkit's words ---------------------------------------------
HEADERS = {
    "typ": (5, "'typ' header parameter must be a string (RFC 7515 4.1), not a number"),
    "cty": ([1], "'cty' header parameter must be a string (RFC 7515 4.1), not a list"),
    "x5t": (5, "'x5t' header parameter must be a string"),
    "jku": ({"a": 1}, "'jku' header parameter must be a string (RFC 7515 4.1), not an object"),
    "x5u": (5, "'x5u' header parameter must be a string"),
    "x5c": (5, "'x5c' header parameter must be a list of base64 DER certificates (RFC 7515 4.1.6), not a number"),
    "x5c-entry": (["!!"], "'x5c' header parameter: its entry 1 is not base64"),
    "x5c-der": (["AAAA"], "'x5c' header parameter: its entry 1 is no certificate: it is not valid DER"),
}


@pytest.mark.parametrize("case", list(HEADERS))
def test_a_jose_header_parameter_of_the_wrong_type_is_refused_in_certkits_words(setup, case: str) -> None:
    c = _client(setup)
    value, said = HEADERS[case]
    order = {"identifiers": [{"type": "dns", "value": "s7.acme.test"}]}
    status, kind, doc = _problem(c.post(c.directory["newOrder"], order, check=False, extra={case.split("-")[0]: value}))
    assert (status, kind) == (400, "malformed"), doc
    assert said in doc["detail"], doc["detail"]
    for library_words in ("object is not iterable", "argument of type", "has no attribute", "ParseError",
                          "Deserialization error"):
        assert library_words not in doc["detail"], doc["detail"]
    # the same in the inner JWS of a key change
    url, new = c.directory["keyChange"], account_key("ES256")[0]
    inner = sign({"account": c.kid, "oldKey": c.key.public_key().to_json()}, new, jose.ES256, url=url, nonce=None,
                 extra={"jwk": new.public_key().to_json(), case.split("-")[0]: value})
    status, kind, doc = _problem(c.post(url, inner, check=False))
    assert kind == "malformed" and "The inner JWS of the key change's" in doc["detail"] and said in doc["detail"], doc


def test_jose_header_parameters_that_are_right_are_taken(setup) -> None:
    import base64 as b64std

    c = _client(setup)
    der = x509.load_pem_x509_certificate(setup.root.read_bytes()).public_bytes(Encoding.DER)
    extra = {"typ": "JOSE+JSON", "cty": "json", "x5u": "https://example.test/chain.pem", "jku": "https://example.test/jwks",
             "x5c": [b64std.b64encode(der).decode()]}
    response = c.post(c.directory["newOrder"], {"identifiers": [{"type": "dns", "value": "s7.acme.test"}]}, extra=extra)
    assert response.status_code == 201


# --- 8. a validation certificate cryptography cannot parse, in words ----------------------------------------------
def _der_length(n: int) -> bytes:
    if n < 128:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _ber_boolean_certificate(name: str, key_auth: str) -> tuple[bytes, bytes]:
    """A tls-alpn-01 certificate whose acmeIdentifier's critical flag is the BER boolean 0x01 (DER: 0xFF), re-signed:
    OpenSSL loads and serves it, cryptography refuses to parse it."""
    from cryptography.hazmat.primitives import hashes, serialization

    from acme_client import validation_certificate

    cert_pem, key_pem = validation_certificate(name, key_auth)
    tbs = x509.load_pem_x509_certificate(cert_pem).tbs_certificate_bytes
    key = serialization.load_pem_private_key(key_pem, None)
    oid = bytes.fromhex("06082b0601050507011f")  # 1.3.6.1.5.5.7.1.31, acmeIdentifier
    patched = tbs.replace(oid + b"\x01\x01\xff", oid + b"\x01\x01\x01")
    assert patched != tbs
    signature = key.sign(patched, ec.ECDSA(hashes.SHA256()))
    body = patched + bytes.fromhex("300a06082a8648ce3d040302") + b"\x03" + _der_length(len(signature) + 1) + b"\x00" \
        + signature
    der = b"\x30" + _der_length(len(body)) + body
    return (b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n", key_pem)


def test_a_validation_certificate_that_cannot_be_parsed_is_said_in_words(setup) -> None:
    import ssl

    from acme_client import TLSALPN01Responder

    class BERResponder(TLSALPN01Responder):
        def add(self, name: str, token: str, key_auth: str) -> None:
            cert_pem, key_pem = _ber_boolean_certificate(name, key_auth)
            folder = __import__("pathlib").Path(self.tmp.name)
            (folder / "c.pem").write_bytes(cert_pem)
            (folder / "k.pem").write_bytes(key_pem)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(folder / "c.pem", folder / "k.pem")
            context.set_alpn_protocols(["acme-tls/1"])
            self.contexts[name] = self.default = context

    c = _client(setup)
    url, order = c.new_order("s8.acme.test")
    with BERResponder(setup.tls_port) as responder:
        c.authorize(order, responder, "tls-alpn-01")
        authz = c.wait(order["authorizations"][0], ("valid", "invalid"))
    assert authz["status"] == "invalid", authz
    error = authz["challenges"][0]["error"]
    assert "it is not valid DER: a field holds an invalid value" in error["detail"], error
    assert "ParseError" not in error["detail"] and "asn1" not in error["detail"], error
