"""certkit acme serve, RFC 8555 by the letter: every refusal with its problem type, the JWS rules,
nonces, key change, deactivation, revocation, EdDSA/ES384/RS256 accounts, racing finalizes, IP
identifiers, a restart that loses nothing. Driven by tests/acme_client.py against the real server
process; the real clients (certbot, lego, Caddy) are in test_acme_clients.py."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from certkit.vocabulary import serial_hex

from acme_client import AcmeError, Client, HTTP01Responder, TLSALPN01Responder, account_key, make_csr, sign
from acme_helpers import AcmeServer, listed_serials, make_two_tier, ports
from conftest import assert_clean_error, openssl, run_certkit

NAMES = ("app.acme.test", "www.acme.test", "api.acme.test", "race.acme.test", "ip.acme.test",
         "other.acme.test", "fail.acme.test", "tls.acme.test")


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    """One server for the module: a two-tier CA constrained to acme.test, example.org, localhost and
    127.0.0.0/8, the server allowing acme.test. (An --allow-domain outside the CA is refused at start;
    a name that only the CA refuses is ordered from a server without --allow-domain, in
    test_acme_audit3.)"""
    tmp = tmp_path_factory.mktemp("acme")
    # localhost is permitted for the server's own certificate (CN=localhost): a leaf whose CN is an IP
    # address fails OpenSSL's check under DNS name constraints (its CN-as-hostname fallback).
    root, issuing, env = make_two_tier(tmp, permit=("--permit-dns", "acme.test", "--permit-dns", "example.org",
                                                    "--permit-dns", "localhost", "--permit-ip", "127.0.0.0/8"))
    http_port, tls_port = ports(2)
    args = ["--allow-domain", "acme.test", "--allow-ip", "127.0.0.0/8",
            "--http01-port", http_port, "--tls-alpn01-port", tls_port, "--days", "30"]
    for name in NAMES:
        args += ["--resolve", f"{name}=127.0.0.1"]
    server = AcmeServer(*args, env=env)
    try:
        yield type("Acme", (), {"server": server, "root": root / "ca.pem", "env": env, "tmp": tmp, "args": args,
                                "http_port": http_port, "tls_port": tls_port, "issuing": issuing})
    finally:
        server.stop()


def client(acme, kind: str = "ES256", register: bool = True) -> Client:
    c = Client(acme.server.directory, acme.root, kind)
    if register:
        c.register(contact=["mailto:ops@acme.test"])
    return c


def problem_of(exc_info) -> str:
    return exc_info.value.type


# --- resources, headers, nonces -----------------------------------------------------------------
def test_directory_nonce_and_headers(acme) -> None:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(acme.root)
    directory = session.get(acme.server.directory, timeout=10)
    assert directory.status_code == 200 and directory.headers["Content-Type"] == "application/json"
    body = directory.json()
    assert set(body) >= {"newNonce", "newAccount", "newOrder", "revokeCert", "keyChange", "meta"}
    assert body["meta"]["externalAccountRequired"] is False
    assert directory.headers["Replay-Nonce"]
    assert directory.headers["Link"] == f'<{acme.server.directory}>;rel="index"'
    head = session.head(body["newNonce"], timeout=10)
    get = session.get(body["newNonce"], timeout=10)
    assert (head.status_code, get.status_code) == (200, 204)
    assert head.headers["Cache-Control"] == "no-store"
    assert head.headers["Replay-Nonce"] != get.headers["Replay-Nonce"]
    # Resources other than the directory and newNonce are POST only (POST-as-GET).
    refused = session.get(body["newOrder"], timeout=10)
    assert refused.status_code == 405 and refused.headers["Content-Type"] == "application/problem+json"
    assert refused.json()["type"] == "urn:ietf:params:acme:error:malformed"
    assert refused.headers["Replay-Nonce"]


def test_account_lifecycle_and_only_return_existing(acme) -> None:
    c = client(acme, register=False)
    with pytest.raises(AcmeError) as exc:
        c.post(c.directory["newAccount"], {"onlyReturnExisting": True}, use_jwk=True)
    assert problem_of(exc) == "accountDoesNotExist"
    created = c.register(contact=["mailto:a@acme.test"])
    assert created.status_code == 201 and created.json()["status"] == "valid"
    again = c.post(c.directory["newAccount"], {"onlyReturnExisting": True}, use_jwk=True)
    assert again.status_code == 200 and again.headers["Location"] == c.kid
    updated = c.post(c.kid, {"contact": ["mailto:b@acme.test"]}).json()
    assert updated["contact"] == ["mailto:b@acme.test"]
    with pytest.raises(AcmeError) as exc:
        c.post(c.kid, {"contact": ["tel:+1555"]})
    assert problem_of(exc) == "unsupportedContact"
    orders = c.post(updated["orders"]).json()
    assert orders == {"orders": []}
    deactivated = c.post(c.kid, {"status": "deactivated"}).json()
    assert deactivated["status"] == "deactivated"
    with pytest.raises(AcmeError) as exc:
        c.new_order("app.acme.test")
    assert problem_of(exc) == "unauthorized" and exc.value.status == 403


def test_replayed_nonce_is_refused(acme) -> None:
    c = client(acme)
    body = sign({"identifiers": [{"type": "dns", "value": "app.acme.test"}]}, c.key, c.alg,
                url=c.directory["newOrder"], nonce=c.nonce(), kid=c.kid)
    assert c.send(c.directory["newOrder"], body).status_code == 201
    with pytest.raises(AcmeError) as exc:
        c.send(c.directory["newOrder"], body)
    assert problem_of(exc) == "badNonce" and exc.value.status == 400
    assert exc.value.response.headers["Replay-Nonce"]  # a fresh one to retry with
    invented = sign({}, c.key, c.alg, url=c.kid, nonce="bm90LWEtbm9uY2U", kid=c.kid)
    with pytest.raises(AcmeError) as exc:
        c.send(c.kid, invented)
    assert problem_of(exc) == "badNonce"


def test_jws_signed_by_another_key_is_refused(acme) -> None:
    c = client(acme)
    other_key, other_alg = account_key("ES256")
    with pytest.raises(AcmeError) as exc:
        c.post(c.directory["newOrder"], {"identifiers": [{"type": "dns", "value": "app.acme.test"}]},
               key=other_key, alg=other_alg)
    assert problem_of(exc) == "malformed" and "signature does not verify" in exc.value.problem["detail"]


@pytest.mark.parametrize("case, expected", [
    ("alg-none", "badSignatureAlgorithm"), ("alg-hs256", "badSignatureAlgorithm"),
    ("alg-mismatch", "badSignatureAlgorithm"),
    ("url-mismatch", "unauthorized"), ("no-nonce", "badNonce"), ("jwk-and-kid", "malformed"),
    ("unknown-kid", "accountDoesNotExist"), ("kid-on-new-account", "malformed"), ("jwk-on-new-order", "malformed"),
    ("content-type", "malformed"), ("not-json", "malformed"), ("unprotected-header", "malformed"),
])
def test_jws_rules(acme, case: str, expected: str) -> None:
    c = client(acme)
    url = c.directory["newOrder"]
    payload = {"identifiers": [{"type": "dns", "value": "app.acme.test"}]}
    body = sign(payload, c.key, c.alg, url=url, nonce=c.nonce(), kid=c.kid)
    protected = json.loads(base64.urlsafe_b64decode(body["protected"] + "=="))
    headers = {"Content-Type": "application/jose+json"}

    def reprotect(changes: dict, drop: tuple = ()) -> None:
        new = {k: v for k, v in protected.items() if k not in drop} | changes
        again = sign(payload, c.key, c.alg, url=new.get("url", url), nonce=new.get("nonce"), kid=new.get("kid"),
                     extra={k: v for k, v in new.items() if k not in ("url", "nonce", "kid")})
        body.update(again)

    if case == "alg-none":
        reprotect({"alg": "none"})
    elif case == "alg-hs256":
        reprotect({"alg": "HS256"})
    elif case == "alg-mismatch":  # an ES384 label on a P-256 key
        reprotect({"alg": "ES384"})
    elif case == "url-mismatch":
        reprotect({"url": c.directory["newAccount"]})
    elif case == "no-nonce":
        reprotect({}, drop=("nonce",))
    elif case == "jwk-and-kid":
        reprotect({"jwk": c.key.public_key().to_json()})
    elif case == "unknown-kid":
        reprotect({"kid": c.kid.rsplit("/", 1)[0] + "/nosuchaccount"})
    elif case == "kid-on-new-account":
        url = c.directory["newAccount"]
        body = sign({}, c.key, c.alg, url=url, nonce=c.nonce(), kid=c.kid)
    elif case == "jwk-on-new-order":
        body = sign(payload, c.key, c.alg, url=url, nonce=c.nonce())
    elif case == "content-type":
        headers = {"Content-Type": "application/json"}
    elif case == "unprotected-header":
        body["header"] = {"kid": c.kid}
    data = "{not json" if case == "not-json" else json.dumps(body)
    response = c.session.post(url, data=data, headers=headers, timeout=10)
    assert response.headers["Content-Type"] == "application/problem+json", response.text
    problem = response.json()
    assert problem["type"] == f"urn:ietf:params:acme:error:{expected}", problem
    assert response.headers["Replay-Nonce"]
    if case == "content-type":
        assert response.status_code == 415
    if expected == "badSignatureAlgorithm":
        assert "ES256" in problem["algorithms"]


# --- orders and policy ------------------------------------------------------------------------------
@pytest.mark.parametrize("identifier, fragment", [
    ({"type": "dns", "value": "www.other.test"}, "outside the domains this ACME server issues for"),
    ({"type": "dns", "value": "*.acme.test"}, "wildcard"),
    ({"type": "dns", "value": "bad_name.acme.test"}, "not a valid DNS name"),
    ({"type": "ip", "value": "10.1.2.3"}, "outside the IP ranges"),
    ({"type": "dns", "value": "APP.acme.test."}, "canonical form"),
    ({"type": "ip", "value": "fe80::1%eth0"}, "has a zone (%eth0), which cannot go in a certificate"),
    ({"type": "ip", "value": "0:0:0:0:0:0:0:1"}, "not in canonical form; send '::1'"),
])
def test_refused_identifiers(acme, identifier: dict, fragment: str) -> None:
    c = client(acme)
    with pytest.raises(AcmeError) as exc:
        c.post(c.directory["newOrder"], {"identifiers": [identifier]})
    assert problem_of(exc) == "rejectedIdentifier", exc.value.problem
    assert fragment in exc.value.problem["detail"]
    sub = exc.value.problem["subproblems"][0]
    assert sub["identifier"] == identifier and sub["type"].endswith("rejectedIdentifier")


def test_unsupported_identifier_type_and_too_many_problems(acme) -> None:
    c = client(acme)
    with pytest.raises(AcmeError) as exc:
        c.post(c.directory["newOrder"], {"identifiers": [{"type": "email", "value": "a@acme.test"},
                                                         {"type": "dns", "value": "ok.other.test"}]})
    assert problem_of(exc) == "unsupportedIdentifier"
    assert [s["type"].rsplit(":", 1)[1] for s in exc.value.problem["subproblems"]] == \
        ["unsupportedIdentifier", "rejectedIdentifier"]


def test_finalize_before_authorizations_are_valid(acme) -> None:
    c = client(acme)
    order_url, order = c.new_order("app.acme.test")
    with pytest.raises(AcmeError) as exc:
        c.finalize(order, make_csr(ec.generate_private_key(ec.SECP256R1()), ["app.acme.test"]))
    assert problem_of(exc) == "orderNotReady" and exc.value.status == 403
    # Pending objects tell the client when to ask again.
    for url in (order_url, order["authorizations"][0]):
        response = c.post(url)
        assert response.json()["status"] == "pending" and response.headers["Retry-After"] == "1"


def test_failed_http01_challenge_invalidates_the_order(acme) -> None:
    c = client(acme)
    order_url, order = c.new_order("fail.acme.test")
    with HTTP01Responder(acme.http_port, wrong=True) as responder:
        challenge = c.authorize(order, responder)[0]
    if challenge["status"] == "processing":
        challenge = c.wait(challenge["url"], ("valid", "invalid"))
    assert challenge["status"] == "invalid"
    assert challenge["error"]["type"] == "urn:ietf:params:acme:error:incorrectResponse"
    assert "not the key authorization" in challenge["error"]["detail"]
    authz = c.get(order["authorizations"][0])
    assert authz["status"] == "invalid"
    order = c.get(order_url)
    assert order["status"] == "invalid" and order["error"]["type"].endswith("incorrectResponse")
    with pytest.raises(AcmeError) as exc:
        c.finalize(order, make_csr(ec.generate_private_key(ec.SECP256R1()), ["fail.acme.test"]))
    assert problem_of(exc) == "orderNotReady"


def test_failed_challenge_with_nobody_listening_is_a_connection_problem(acme) -> None:
    c = client(acme)
    _, order = c.new_order("fail.acme.test")
    authz = c.get(order["authorizations"][0])
    challenge = next(ch for ch in authz["challenges"] if ch["type"] == "http-01")
    answered = c.post(challenge["url"], {}).json()
    if answered["status"] == "processing":
        answered = c.wait(answered["url"], ("valid", "invalid"))
    assert answered["status"] == "invalid"
    assert answered["error"]["type"] == "urn:ietf:params:acme:error:connection", answered


@pytest.mark.parametrize("mode, fragment, kind", [
    ("not-critical", "not critical", "incorrectResponse"),
    ("wrong-digest", "not the SHA-256 digest", "incorrectResponse"),
    ("two-names", "must name exactly", "incorrectResponse"),
    ("no-alpn", "did not negotiate the ALPN protocol", "tls"),
])
def test_failed_tls_alpn01_challenges(acme, mode: str, fragment: str, kind: str) -> None:
    c = client(acme)
    _, order = c.new_order("tls.acme.test")
    with TLSALPN01Responder(acme.tls_port, mode) as responder:
        challenge = c.authorize(order, responder, "tls-alpn-01")[0]
        if challenge["status"] == "processing":
            challenge = c.wait(challenge["url"], ("valid", "invalid"))
    assert challenge["status"] == "invalid"
    assert challenge["error"]["type"] == f"urn:ietf:params:acme:error:{kind}", challenge
    assert fragment in challenge["error"]["detail"]


def test_csr_whose_names_differ_from_the_order(acme) -> None:
    c = client(acme)
    order_url, order = c.new_order("app.acme.test", "www.acme.test")
    with HTTP01Responder(acme.http_port) as responder:
        c.authorize(order, responder)
    order = c.wait(order_url)
    assert order["status"] == "ready"
    key = ec.generate_private_key(ec.SECP256R1())
    for names, cn in ((["app.acme.test"], None), (["app.acme.test", "www.acme.test", "api.acme.test"], None),
                      (["app.acme.test", "www.acme.test"], "api.acme.test")):
        with pytest.raises(AcmeError) as exc:
            c.finalize(order, make_csr(key, names, common_name=cn))
        assert problem_of(exc) == "badCSR", exc.value.problem
        assert "must be exactly the order's" in exc.value.problem["detail"]
    tampered = bytearray(make_csr(key, ["app.acme.test", "www.acme.test"]))
    tampered[-5] ^= 0x01  # damage the signature
    with pytest.raises(AcmeError) as exc:
        c.finalize(order, bytes(tampered))
    assert problem_of(exc) == "badCSR"
    # The order is still ready: a correct CSR is signed.
    assert c.get(order_url)["status"] == "ready"
    done = c.finalize(order, make_csr(key, ["www.acme.test", "app.acme.test"])).json()
    assert done["status"] == "valid" and done["certificate"]


# --- issuance: chains, key types, challenge kinds, IP identifiers ------------------------------------
def _check_chain(acme, chain_pem: str, names: list[str], tmp: Path) -> x509.Certificate:
    certs = x509.load_pem_x509_certificates(chain_pem.encode())
    assert len(certs) == 2, "leaf and intermediate, not the root"
    leaf, intermediate = certs
    root = x509.load_pem_x509_certificate(acme.root.read_bytes())
    assert intermediate.subject != root.subject
    (tmp / "leaf.pem").write_bytes(chain_pem.encode().split(b"-----END CERTIFICATE-----\n")[0]
                                   + b"-----END CERTIFICATE-----\n")
    (tmp / "chain.pem").write_text(chain_pem)
    proc = openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", acme.root, "-untrusted",
                   tmp / "chain.pem", tmp / "leaf.pem")
    assert proc.returncode == 0, proc.stderr
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(str(v) for v in san.get_values_for_type(x509.DNSName)) + \
        sorted(str(v) for v in san.get_values_for_type(x509.IPAddress)) == sorted(names)
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert 29 <= lifetime.days <= 30  # --days 30
    return leaf


@pytest.mark.parametrize("kind", ["ES256", "ES384", "RS256", "EdDSA"])
def test_account_key_types_obtain_certificates(acme, tmp_path: Path, kind: str) -> None:
    c = client(acme, kind)
    with HTTP01Responder(acme.http_port) as responder:
        chain, _, _ = c.obtain(["api.acme.test"], responder)
        assert responder.requests[0] == (f"api.acme.test:{acme.http_port}",
                                         responder.requests[0][1])
    leaf = _check_chain(acme, chain, ["api.acme.test"], tmp_path)
    assert listed_serials(acme.env)[serial_hex(leaf.serial_number)] == "valid"


def test_tls_alpn01(acme, tmp_path: Path) -> None:
    c = client(acme)
    with TLSALPN01Responder(acme.tls_port) as responder:
        chain, _, _ = c.obtain(["tls.acme.test"], responder, "tls-alpn-01")
        assert "tls.acme.test" in responder.sni_seen
    _check_chain(acme, chain, ["tls.acme.test"], tmp_path)


def test_two_simultaneous_finalizes_issue_once(acme) -> None:
    c = client(acme)
    order_url, order = c.new_order("race.acme.test")
    with HTTP01Responder(acme.http_port) as responder:
        c.authorize(order, responder)
    order = c.wait(order_url)
    assert order["status"] == "ready"
    key = ec.generate_private_key(ec.SECP256R1())
    csr = make_csr(key, ["race.acme.test"])
    bodies = [sign({"csr": base64.urlsafe_b64encode(csr).decode().rstrip("=")}, c.key, c.alg,
                   url=order["finalize"], nonce=c.nonce(), kid=c.kid) for _ in range(4)]
    before = set(listed_serials(acme.env))
    results: list[requests.Response] = []
    barrier = threading.Barrier(len(bodies))

    def go(body):
        session = requests.Session()
        session.trust_env = False
        session.verify = str(acme.root)
        barrier.wait()
        results.append(session.post(order["finalize"], data=json.dumps(body), timeout=30,
                                    headers={"Content-Type": "application/jose+json"}))

    threads = [threading.Thread(target=go, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 403, 403, 403], [r.text for r in results]
    assert all(r.json()["type"].endswith("orderNotReady") for r in results if r.status_code == 403)
    new = set(listed_serials(acme.env)) - before
    assert len(new) == 1, new
    assert c.get(order_url)["certificate"].endswith(new.pop())


# --- key change, revocation -------------------------------------------------------------------------
def test_key_change(acme) -> None:
    c = client(acme)
    old_key, old_alg = c.key, c.alg
    new_key, new_alg = account_key("ES256")
    url = c.directory["keyChange"]
    inner = sign({"account": c.kid, "oldKey": old_key.public_key().to_json()}, new_key, new_alg, url=url,
                 nonce=None)
    changed = c.post(url, inner)
    assert changed.status_code == 200
    c.key, c.alg = new_key, new_alg
    assert c.post(c.kid).json()["status"] == "valid"
    with pytest.raises(AcmeError) as exc:  # the old key is no longer the account's
        c.post(c.kid, key=old_key, alg=old_alg)
    assert problem_of(exc) == "malformed"
    found = c.post(c.directory["newAccount"], {"onlyReturnExisting": True}, use_jwk=True)
    assert found.headers["Location"] == c.kid
    # A key that belongs to another account: 409 with that account's URL.
    other = client(acme)
    inner = sign({"account": c.kid, "oldKey": new_key.public_key().to_json()}, other.key, other.alg, url=url,
                 nonce=None)
    with pytest.raises(AcmeError) as exc:
        c.post(url, inner)
    assert exc.value.status == 409 and exc.value.response.headers["Location"] == other.kid
    # An inner JWS naming another account is refused.
    third_key, third_alg = account_key("ES256")
    inner = sign({"account": other.kid, "oldKey": new_key.public_key().to_json()}, third_key, third_alg,
                 url=url, nonce=None)
    with pytest.raises(AcmeError) as exc:
        c.post(url, inner)
    assert problem_of(exc) == "malformed"


def test_revocation_by_account_and_by_certificate_key(acme, tmp_path: Path) -> None:
    owner, stranger = client(acme), client(acme)
    with HTTP01Responder(acme.http_port) as responder:
        chain_a, key_a, _ = owner.obtain(["app.acme.test"], responder)
        chain_b, key_b, _ = owner.obtain(["www.acme.test"], responder)
    der_a = x509.load_pem_x509_certificates(chain_a.encode())[0].public_bytes(Encoding.DER)
    cert_b = x509.load_pem_x509_certificates(chain_b.encode())[0]
    der_b = cert_b.public_bytes(Encoding.DER)
    revoke = owner.directory["revokeCert"]
    with pytest.raises(AcmeError) as exc:  # another account may not
        stranger.post(revoke, {"certificate": base64.urlsafe_b64encode(der_a).decode().rstrip("=")})
    assert problem_of(exc) == "unauthorized"
    with pytest.raises(AcmeError) as exc:
        owner.post(revoke, {"certificate": base64.urlsafe_b64encode(der_a).decode().rstrip("="), "reason": 6})
    assert problem_of(exc) == "badRevocationReason"
    with pytest.raises(AcmeError) as exc:  # "1", a string: said so, not "1 is not accepted; use 1"
        owner.post(revoke, {"certificate": base64.urlsafe_b64encode(der_a).decode().rstrip("="), "reason": "1"})
    assert problem_of(exc) == "malformed"  # the wrong JSON type, as everywhere (acme8 #2)
    assert 'must be an integer (RFC 8555 7.6), not "1"' in exc.value.problem["detail"]
    assert owner.post(revoke, {"certificate": base64.urlsafe_b64encode(der_a).decode().rstrip("="),
                               "reason": 1}).status_code == 200
    with pytest.raises(AcmeError) as exc:
        owner.post(revoke, {"certificate": base64.urlsafe_b64encode(der_a).decode().rstrip("=")})
    assert problem_of(exc) == "alreadyRevoked"
    # By the certificate's own key, in a jwk header, with no account at all.
    import josepy as jose

    anonymous = client(acme, register=False)
    cert_jwk = jose.JWKEC(key=key_b)
    assert anonymous.post(revoke, {"certificate": base64.urlsafe_b64encode(der_b).decode().rstrip("=")},
                          key=cert_jwk, alg=jose.ES256, use_jwk=True).status_code == 200
    serials = listed_serials(acme.env)
    serial_a = serial_hex(x509.load_der_x509_certificate(der_a).serial_number)
    serial_b = serial_hex(cert_b.serial_number)
    assert serials[serial_a] == serials[serial_b] == "revoked"
    crl = tmp_path / "crl.pem"
    run_certkit("crl", "--out", crl, env=acme.env, check=True)
    text = openssl("crl", "-in", crl, "-noout", "-text").stdout.decode()
    assert serial_a in text and serial_b in text and "Key Compromise" in text


# --- EAB, restart -------------------------------------------------------------------------------------
def test_external_account_binding(tmp_path: Path) -> None:
    import hashlib
    import hmac as hmac_mod

    _, _, env = make_two_tier(tmp_path)
    key_file = tmp_path / "eab.key"
    hmac_key = b"k" * 32
    key_file.write_text(base64.urlsafe_b64encode(hmac_key).decode().rstrip("=") + "\n")
    key_file.chmod(0o600)
    with AcmeServer("--eab-kid", "team-1", "--eab-hmac-file", key_file, env=env) as server:
        root = tmp_path / "root" / "ca.pem"
        c = Client(server.directory, root)
        assert c.directory["meta"]["externalAccountRequired"] is True
        with pytest.raises(AcmeError) as exc:
            c.register()
        assert problem_of(exc) == "externalAccountRequired"

        def binding(kid: str, mac_key: bytes) -> dict:
            protected = base64.urlsafe_b64encode(json.dumps(
                {"alg": "HS256", "kid": kid, "url": c.directory["newAccount"]}).encode()).decode().rstrip("=")
            payload = base64.urlsafe_b64encode(json.dumps(c.key.public_key().to_json()).encode()).decode().rstrip("=")
            mac = hmac_mod.new(mac_key, f"{protected}.{payload}".encode(), hashlib.sha256).digest()
            return {"protected": protected, "payload": payload,
                    "signature": base64.urlsafe_b64encode(mac).decode().rstrip("=")}

        for kid, mac_key in (("team-2", hmac_key), ("team-1", b"x" * 32)):
            with pytest.raises(AcmeError) as exc:
                c.register(externalAccountBinding=binding(kid, mac_key))
            assert problem_of(exc) == "unauthorized"
        assert c.register(externalAccountBinding=binding("team-1", hmac_key)).status_code == 201


def test_restart_loses_nothing(tmp_path: Path) -> None:
    """An account, a ready order and an unused nonce outlive the server process."""
    root, _, env = make_two_tier(tmp_path)
    (http_port,) = ports(1)
    args = ("--http01-port", str(http_port), "--resolve", "app.acme.test=127.0.0.1")
    with AcmeServer(*args, env=env) as server:
        c = Client(server.directory, root / "ca.pem")
        c.register()
        order_url, order = c.new_order("app.acme.test")
        with HTTP01Responder(http_port) as responder:
            c.authorize(order, responder)
        assert c.wait(order_url)["status"] == "ready"
        kept_nonce = c.nonce()
        port = server.port
    with AcmeServer(*args, "--port", str(port), env=env) as server:
        body = sign(None, c.key, c.alg, url=order_url, nonce=kept_nonce, kid=c.kid)
        assert c.send(order_url, body).json()["status"] == "ready"
        done = c.finalize(order, make_csr(ec.generate_private_key(ec.SECP256R1()), ["app.acme.test"])).json()
        assert done["status"] == "valid"
        assert c.certificate(done["certificate"]).count("BEGIN CERTIFICATE") == 2


def test_root_ca_and_ip_identifiers(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    """Under a root CA the chain is the leaf alone (never the root), with a warning about certbot;
    IP identifiers (RFC 8738) are validated by http-01 at the address and by tls-alpn-01 with the
    reverse-mapping name in SNI."""
    http_port, tls_port = ports(2)
    with AcmeServer("--http01-port", str(http_port), "--tls-alpn01-port", str(tls_port), "--allow-ip", "127.0.0.0/8",
                    env=ca_env) as server:
        c = Client(server.directory, ca_dir / "ca.pem")
        c.register()
        with HTTP01Responder(http_port) as responder:
            chain, _, _ = c.obtain(["127.0.0.1"], responder)
            assert responder.requests[0][0] == f"127.0.0.1:{http_port}"
        assert chain.count("BEGIN CERTIFICATE") == 1
        (tmp_path / "ip.pem").write_text(chain)
        proc = openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", ca_dir / "ca.pem",
                       tmp_path / "ip.pem")
        assert proc.returncode == 0, proc.stderr
        leaf = x509.load_pem_x509_certificate(chain.encode())
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
        with TLSALPN01Responder(tls_port) as responder:
            order_url, order = c.new_order("127.0.0.1", kind="ip")
            c.authorize(order, responder, "tls-alpn-01")
            assert c.wait(order_url)["status"] == "ready"
            assert "1.0.0.127.in-addr.arpa" in responder.sni_seen
        assert "is a root CA" in server.stderr


# --- the command line -------------------------------------------------------------------------------
@pytest.mark.parametrize("args, fragment, code", [
    (["--days", "900"], "900 is not in the range", 2),
    (["--eab-kid", "x"], "--eab-kid and --eab-hmac-file go together", 2),
    (["--resolve", "nonsense"], "is not NAME=ADDRESS", 2),
    (["--resolve", "a.test=999.1.1.1"], "is not NAME=ADDRESS", 2),
    (["--allow-ip", "10.0.0.0/33"], "is not an IP range", 1),
    (["--allow-ip", "10.0.0.1/8"], "'10.0.0.1/8' is not an IP range in CIDR form (as in 10.0.0.0/8): 10.0.0.1/8 has "
                                   "host bits set", 1),
    (["--allow-ip", "fd00::1/8"], "fd00::1/8 has host bits set", 1),
    (["--allow-domain", "*.example.com"], "not a wildcard", 1),
    (["--eab-kid", "x", "--eab-hmac-file", "/dev/null"], "holds an empty secret", 1),
])
def test_command_line_refusals(ca_dir: Path, ca_env: dict, args: list[str], fragment: str, code: int) -> None:
    proc = run_certkit("acme", "serve", "--port", "0", *args, env=ca_env)
    if code == 2:
        assert proc.returncode == 2 and fragment in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    else:
        assert_clean_error(proc, fragment, code)


@pytest.mark.parametrize("ips", [["10.0.0.1/8"], ["127.0.0.0/8", "fd00::1/8"], ["192.168.1.1/24"]])
def test_allow_ip_refuses_host_bits_as_permit_ip_does(ips: list[str]) -> None:
    """--allow-ip 10.0.0.1/8 was taken as 10.0.0.0/8, where init-ca --permit-ip refuses it."""
    from certkit.acme.policy import Policy
    from certkit.constraints_parsing import parse_network
    from certkit.errors import InvalidName

    with pytest.raises(InvalidName) as refused:
        Policy.build(ips=ips)
    with pytest.raises(InvalidName) as permit:
        [parse_network(text) for text in ips]
    assert str(refused.value) == str(permit.value) and "has host bits set" in str(refused.value)


@pytest.mark.parametrize("args, fragment", [  # refused for every command (test_arguments), and by the options too
    (["--host", ""], "--host was given an empty value"),
    (["--host", " ", "--json"], "--host was given an empty value"),
    (["--eab-kid", ""], "--eab-kid was given an empty value"),
    (["--eab-kid", "  ", "--json"], "--eab-kid was given an empty value"),
])
def test_empty_host_and_key_id_are_refused(ca_dir: Path, ca_env: dict, tmp_path: Path, args: list[str],
                                           fragment: str) -> None:
    """--host '' listened on every interface (and said localhost); --eab-kid '' required an empty key id.
    A real process, so that a server started by mistake is stopped by run_certkit's timeout."""
    if "--eab-kid" in args:
        key_file = tmp_path / "eab.key"
        key_file.write_text(base64.urlsafe_b64encode(b"k" * 32).decode().rstrip("=") + "\n")
        key_file.chmod(0o600)
        args = [*args, "--eab-hmac-file", str(key_file)]
    proc = run_certkit("acme", "serve", "--port", "0", *args, env=ca_env, subprocess=True)
    assert_clean_error(proc, fragment, 2)


def test_the_options_refuse_empty_values_themselves() -> None:
    """Called without the command line's own check (a program that invokes the command), the
    options still refuse what would listen on every interface or name no key."""
    from click.testing import CliRunner

    from certkit.cli.acme import acme

    for args in (["serve", "--host", ""], ["serve", "--eab-kid", " "]):
        result = CliRunner().invoke(acme, args)
        assert result.exit_code == 2 and "is empty" in result.output, result.output


def test_a_host_that_cannot_be_listened_on_issues_nothing(ca_dir: Path, ca_env: dict) -> None:
    """The server's own certificate is issued only once the address is known to be usable."""
    import socket

    from integrity_helpers import db_rows

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        for host, port, fragment in (("nosuch.invalid", "0", "Cannot listen on nosuch.invalid:0"),
                                     ("127.0.0.1", str(taken.getsockname()[1]), "Address already in use")):
            proc = run_certkit("acme", "serve", "--host", host, "--port", port, env=ca_env)
            assert_clean_error(proc, fragment, 1)
    assert db_rows(ca_dir) == []


def test_lifetime_past_the_ca_is_refused_at_start(tmp_path: Path) -> None:
    from conftest import PASSPHRASE, certkit_env

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--days", "100", env=env, check=True)
    proc = run_certkit("acme", "serve", "--port", "0", "--days", "200", env=env)
    assert_clean_error(proc, "would end after the CA expires", 1)


def test_a_nonce_is_given_without_the_database_and_taken_once_it_answers(tmp_path: Path) -> None:
    """Giving a nonce writes nothing (acme7 #3: each answer wrote a row into the CA's inventory, so any
    client could make it grow), so newNonce answers while the inventory refuses writes (here: moved away,
    as `certkit inventory migrate` leaves it). The signed request that uses the nonce up is what needs
    the database: it gets a serverInternal problem (503, try again later, as every request that finds
    the database unavailable) with a fresh nonce, and once the database answers it succeeds."""
    import sqlite3

    root, issuing, env = make_two_tier(tmp_path)
    server = AcmeServer("--allow-domain", "acme.test", env=env)
    try:
        url = server.directory.replace("/directory", "/acme/new-nonce")
        session = requests.Session()
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        session.verify = str(root / "ca.pem")
        assert session.head(url, timeout=30).headers.get("Replay-Nonce")
        with sqlite3.connect(issuing / "inventory.sqlite3") as db:
            db.execute("CREATE TRIGGER moved BEFORE INSERT ON acme_used_nonces BEGIN SELECT RAISE(ABORT, "
                       "'this inventory moved to postgresql://db.internal/ca'); END")
        db.close()
        for method in (session.head, session.get):
            response = method(url, timeout=30)
            assert response.status_code in (200, 204) and response.headers.get("Replay-Nonce"), response.headers
        client = Client(server.directory, root / "ca.pem")
        with pytest.raises(AcmeError) as refused:
            client.register()
        assert refused.value.status == 503 and refused.value.type == "serverInternal", refused.value
        assert refused.value.response.headers.get("Retry-After") == "5"
        assert "database is unavailable" in refused.value.problem["detail"]
        with sqlite3.connect(issuing / "inventory.sqlite3") as db:
            db.execute("DROP TRIGGER moved")
            assert db.execute("SELECT count(*) FROM acme_nonces").fetchone() == (0,)
        db.close()
        client.register()
        assert client.kid
    finally:
        server.stop()
