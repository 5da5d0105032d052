"""The ACME server's eleventh audit (acme11), each as a class:

1. a JWK is read as strictly as the JWS around it: its members base64url in their one spelling, EC
   coordinates of their curve's full size, RSA integers without a leading zero octet, wherever a JWK
   comes in (newAccount's header, a key change's inner header and ``oldKey``); an unaccepted key
   type or curve is ``badPublicKey`` and a malformed member is named, not Python's words;
2. an account key is never a certificate's key, either way (RFC 8555 11.1), on every path: sign-csr
   refuses an account's key as the finalize does, and newAccount/keyChange refuse the CA's own key
   and its root's as they refuse a certificate's;
3. a payload to a certificate is told how to revoke it, and ``{}`` sent to an authorization is
   ``malformed`` (only a fetch or a deactivation is asked of one).
"""

from __future__ import annotations

import base64
from pathlib import Path

import josepy as jose
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from test_audit5_acme import _account

from acme_client import Client, make_csr, sign
from acme_helpers import serving
from conftest import PASSPHRASE, assert_clean_error, run_certkit

NAMES = ("h.acme.test",)


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    yield from serving(tmp_path_factory.mktemp("acme11"), NAMES)


def _problem(response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body.get("type", "").rsplit(":", 1)[-1], body.get("detail", "")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _new_account_with_jwk(acme, key, alg, jwk: dict):
    """newAccount signed by ``key`` whose header carries ``jwk`` as given (a spelling of its key)."""
    c = Client(acme.server.directory, acme.root)
    url = c.directory["newAccount"]
    body = sign({"termsOfServiceAgreed": True}, key, alg, url=url, nonce=c.nonce(), extra={"jwk": jwk})
    return c.send(url, body, check=False)


# --- 1. a JWK read strictly --------------------------------------------------------------------------------
def _ec_spellings() -> list[tuple[str, object, dict]]:
    while True:  # a key whose x the two alphabets spell differently (most are)
        key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        good = key.public_key().to_json()
        x = base64.urlsafe_b64decode(good["x"] + "==")
        if "-" in good["x"] or "_" in good["x"]:
            break
    return [("x padded with =", key, {**good, "x": good["x"] + "="}),
            ("x in the standard alphabet", key, {**good, "x": base64.b64encode(x).decode().rstrip("=")}),
            ("x short of the coordinate size", key, {**good, "x": _b64(x.lstrip(b"\0")[:31])}),
            ("x a number", key, {**good, "x": 5}),
            ("crv missing", key, {k: v for k, v in good.items() if k != "crv"}),
            ("kty a list", key, {**good, "kty": ["EC"]}),
            ("a private member", key, {**good, "d": good["x"]})]


@pytest.mark.parametrize("case", range(7), ids=[c[0] for c in _ec_spellings()])
def test_a_jwk_spelled_loosely_is_malformed_naming_its_member(acme, case: int) -> None:
    what, key, jwk = _ec_spellings()[case]
    status, kind, detail = _problem(_new_account_with_jwk(acme, key, jose.ES256, jwk))
    assert (status, kind) == (400, "malformed"), (what, detail)
    assert "JWK" in detail and ("'x'" in detail or "'crv'" in detail or "'kty'" in detail or "private" in detail)
    assert "''s" not in detail, detail
    assert "Deserialization" not in detail and "object has no attribute" not in detail, detail


def test_an_rsa_integer_with_a_leading_zero_octet_is_malformed(acme) -> None:
    key = jose.JWKRSA(key=rsa.generate_private_key(65537, 2048))
    good = key.public_key().to_json()
    n = base64.urlsafe_b64decode(good["n"] + "==")
    status, kind, detail = _problem(_new_account_with_jwk(acme, key, jose.RS256, {**good, "n": _b64(b"\0" + n)}))
    assert (status, kind) == (400, "malformed") and "minimum number of octets" in detail, detail
    assert _new_account_with_jwk(acme, key, jose.RS256, good).status_code == 201  # its one spelling registers


@pytest.mark.parametrize("jwk", [{"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"},
                                 {"kty": "OKP", "crv": "X25519", "x": _b64(bytes(32))},
                                 {"kty": "oct", "k": "AA"}], ids=["secp256k1", "X25519", "oct"])
def test_a_key_type_or_curve_no_account_may_have_is_bad_public_key(acme, jwk: dict) -> None:
    key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    status, kind, detail = _problem(_new_account_with_jwk(acme, key, jose.ES256, jwk))
    assert (status, kind) == (400, "badPublicKey"), detail
    assert "P-256" in detail and "Ed25519" in detail, detail


def test_a_key_change_reads_its_jwks_strictly(acme) -> None:
    c = _account(acme.server.directory, acme.root)
    new = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    url = c.directory["keyChange"]
    old = c.key.public_key().to_json()
    for inner_jwk, old_key in (({**new.public_key().to_json(), "x": new.public_key().to_json()["x"] + "="}, old),
                               (new.public_key().to_json(), {**old, "y": old["y"] + "="})):
        inner = sign({"account": c.kid, "oldKey": old_key}, new, jose.ES256, url=url, nonce=None,
                     extra={"jwk": inner_jwk})
        status, kind, detail = _problem(c.post(url, inner, check=False))
        assert (status, kind) == (400, "malformed") and "base64url" in detail, detail
    assert c.get(c.kid)["status"] == "valid"


@pytest.mark.parametrize("make", [lambda: ec.generate_private_key(ec.SECP256R1()),
                                  lambda: ec.generate_private_key(ec.SECP384R1()),
                                  lambda: ec.generate_private_key(ec.SECP521R1()),
                                  lambda: rsa.generate_private_key(65537, 2048),
                                  ed25519.Ed25519PrivateKey.generate, ed448.Ed448PrivateKey.generate],
                         ids=["P-256", "P-384", "P-521", "RSA", "Ed25519", "Ed448"])
def test_the_thumbprint_without_josepy_is_josepys(make) -> None:
    """The pipeline finds an account by the RFC 7638 thumbprint it computes itself (josepy is an
    extra): it must be the one the server stored, which josepy computed."""
    from certkit.acme import jws
    from certkit.acme.account_keys import thumbprint_of

    for _ in range(8):  # EC coordinates and RSA moduli with leading zero octets come up among a few keys
        public = make().public_key()
        assert thumbprint_of(public) == jws.thumbprint(jws.jwk_for_public_key(public))


# --- 2. an account key is never a certificate's key, either way -----------------------------------------
def test_sign_csr_refuses_an_acme_accounts_key(acme, tmp_path: Path) -> None:
    c = _account(acme.server.directory, acme.root)
    csr = tmp_path / "acct.csr"
    csr.write_bytes(make_csr(c.key.key._wrapped, ["h.acme.test"], "h.acme.test"))
    for args in (["sign-csr", csr, "--server", "--out", tmp_path / "out"],
                 ["sign-csr", csr, "--client", "--out", tmp_path / "out"]):
        proc = run_certkit(*args, env=acme.env)
        assert_clean_error(proc, "ACME account")
        assert "11.1" in proc.stderr
        assert not (tmp_path / "out").exists()
    # and the library, which signs through the same pipeline
    from cryptography import x509

    from certkit import CADirectory
    from certkit.errors import CertkitError

    ca = CADirectory(acme.issuing).load(PASSPHRASE)
    with pytest.raises(CertkitError, match="ACME account"):
        ca.sign_csr(x509.load_der_x509_csr(csr.read_bytes()), kind="server")


def _ca_key(directory: Path):
    return serialization.load_pem_private_key((directory / "ca-key.pem").read_bytes(), PASSPHRASE.encode())


def test_new_account_and_key_change_refuse_the_cas_own_keys(acme) -> None:
    for directory in (acme.issuing, acme.root.parent):
        jwk = jose.JWKEC(key=_ca_key(directory))
        alg = {"secp256r1": jose.ES256, "secp384r1": jose.ES384}[jwk.key.curve.name]
        c = Client(acme.server.directory, acme.root)
        response = c.post(c.directory["newAccount"], {"termsOfServiceAgreed": True}, key=jwk, alg=alg, use_jwk=True,
                          check=False)
        status, kind, detail = _problem(response)
        assert (status, kind) == (400, "badPublicKey") and "11.1" in detail, detail
        other = _account(acme.server.directory, acme.root)
        url = other.directory["keyChange"]
        inner = sign({"account": other.kid, "oldKey": other.key.public_key().to_json()}, jwk, alg, url=url,
                     nonce=None)
        status, kind, detail = _problem(other.post(url, inner, check=False))
        assert (status, kind) == (400, "badPublicKey"), detail


# --- 3. what a payload to a fetched resource is told ------------------------------------------------------
def test_a_payload_to_an_authorization_must_ask_for_deactivation(acme) -> None:
    c = _account(acme.server.directory, acme.root)
    _url, order = c.new_order(*NAMES)
    authz = order["authorizations"][0]
    for payload in ({}, {"identifier": {"type": "dns", "value": "x.acme.test"}}):
        status, kind, detail = _problem(c.post(authz, payload, check=False))
        assert (status, kind) == (400, "malformed") and '"deactivated"' in detail, detail
    assert c.get(authz)["status"] == "pending"
    assert c.post(authz, {"status": "deactivated"}).json()["status"] == "deactivated"


@pytest.mark.parametrize(("key", "said"), [("{b64}=", "'=' padding"), ("{plus}", "'+' or '/'"),
                                           ("c2hvcnQ", "16 bytes")])
def test_an_eab_key_every_client_takes_or_one_line(key: str, said: str) -> None:
    """lego and Caddy refuse a padded HMAC key that certbot takes: the server refuses it too, naming the fix
    (audit acme12); a key in the standard alphabet is said as such, not as too short."""
    from certkit.acme.server import decode_hmac_key

    raw = bytes(range(200, 232))  # its base64 has '+' and '/', and its padded form an '='
    key = key.replace("{b64}", base64.urlsafe_b64encode(raw).decode().rstrip("=")).replace(
        "{plus}", base64.b64encode(raw).decode().rstrip("="))
    with pytest.raises(ValueError, match=said.replace("+", "\\+")):
        decode_hmac_key(key)
    assert decode_hmac_key(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == raw

