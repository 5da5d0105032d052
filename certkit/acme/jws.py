"""JWS and JWK for ACME (RFC 8555 section 6.2, RFC 7515/7517/7518/7638, RFC 8037 for EdDSA).

Parsing, signature checks and thumbprints are josepy's (the JOSE library
certbot uses); this module adds what josepy lacks and what ACME demands:

- EdDSA account keys (RFC 8037: ``kty`` OKP, Ed25519 and Ed448), registered
  into josepy as one more key type and algorithm;
- the ACME rules: flattened JSON serialization only, a protected header with
  ``alg``, ``nonce`` and ``url``, exactly one of ``jwk`` and ``kid``, an
  algorithm from :data:`ALGORITHMS` that fits the key (ES256 with P-256 and
  so on; no MAC algorithms except in an external account binding), RSA keys
  of at least 2048 bits;
- the two nested JWS of ACME: the inner JWS of a key change (7.3.5) and the
  external account binding (7.3.4), checked in :mod:`certkit.acme.jws_nested`.

Every failure is a :class:`~certkit.acme.problems.Problem` of the type the
RFC names (``malformed``, ``badSignatureAlgorithm``, ``badPublicKey``...).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

import josepy as jose
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from certkit.acme.headers import check_header
from certkit.acme.problems import Problem
from certkit.text import shown

# What decoding a request's JSON can raise: not JSON, not UTF-8, or nested deeper than the decoder
# recurses (18 KB of "[" is enough; json.loads raises RecursionError, no ValueError).
UNREADABLE = (ValueError, UnicodeDecodeError, RecursionError)
# Python converts no integer of more digits than this (sys.get_int_max_str_digits' default), a ValueError that
# json.loads raises as for text that is no JSON at all: such a number is JSON, and no ACME field takes one near it.
MAX_INT_DIGITS = 4300

# Signature algorithms accepted for account keys (RFC 8555 6.2: "MUST NOT be none or a MAC").
ALGORITHMS = ("ES256", "ES384", "ES512", "RS256", "EdDSA")
# The curve each ECDSA algorithm signs with (RFC 7518 3.4).
_EC_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
MIN_RSA_BITS = 2048
# MAC algorithms allowed for the external account binding only (RFC 8555 7.3.4).
EAB_ALGORITHMS = {"HS256": hashes.SHA256, "HS384": hashes.SHA384, "HS512": hashes.SHA512}
# A JWS body larger than this is no ACME request (a CSR with 100 names is a few KiB).
MAX_BODY_BYTES = 1 << 16


_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64decode(value: Any, what: str) -> bytes:
    """``value`` decoded as base64url exactly as RFC 7515 section 2 defines it (the URL-safe
    alphabet, no padding, no other characters, nothing left in the last character's spare bits);
    a ``malformed`` Problem naming ``what`` otherwise. A loose decoder let one JWS be sent in many
    spellings that all verified."""
    if not isinstance(value, str):
        raise Problem("malformed", f"{what} must be a base64url string, not {_json_type(value)}.")
    if not _BASE64URL.fullmatch(value) or len(value) % 4 == 1:
        raise Problem("malformed", f"{what} is not base64url (RFC 7515: the characters A-Z a-z 0-9 - _ "
                                   "and no '=' padding).")
    try:
        data = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (ValueError, binascii.Error):
        raise Problem("malformed", f"{what} is not base64url.") from None
    if base64.urlsafe_b64encode(data).decode().rstrip("=") != value:
        raise Problem("malformed", f"{what} is not base64url in its one canonical spelling (its last "
                                   "character has bits set that encode nothing).")
    return data


def _json_type(value: Any) -> str:
    """What JSON type ``value`` is, in words, for an error message."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__)


# --- a JWK, read strictly before josepy sees it ------------------------------------------------
# The members of each accepted key type (RFC 7518 6.2.1, 6.3.1; RFC 8037 2), the size of an EC
# coordinate and of an OKP key, and the members that would make it a private key.
_JWK_MEMBERS = {"EC": ("crv", "x", "y"), "RSA": ("n", "e"), "OKP": ("crv", "x")}
_JWK_SIZES = {"P-256": 32, "P-384": 48, "P-521": 66, "Ed25519": 32, "Ed448": 57}
_JWK_CURVES = {"EC": ("P-256", "P-384", "P-521"), "OKP": ("Ed25519", "Ed448")}
_JWK_PRIVATE = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_ACCEPTED_KEYS = "EC (P-256, P-384, P-521), RSA (2048 bits or more) or OKP (Ed25519, Ed448)"


def read_jwk(value: Any, what: str = "The JWK") -> jose.JWK:
    """``value`` (a JWK as JSON) as a public key, checked member by member first: the key types
    and curves accounts may have (``badPublicKey`` otherwise, RFC 8555 6.7), every member base64url
    in its one spelling (josepy's decoder takes padding and the other alphabet: one key in many
    spellings, whose RFC 7638 thumbprints the client and the server would compute differently),
    EC coordinates of their curve's full size and RSA integers without leading zero octets
    (RFC 7518 2, 6.2.1.2), no private member. Each refusal names the member."""
    if not isinstance(value, dict):
        raise Problem("malformed", f"{what} must be a JSON object, not {_json_type(value)}.")
    kty = value.get("kty")
    if not isinstance(kty, str):
        raise Problem("malformed", f"{what} has no 'kty' string (it is {_json_type(kty)}).")
    if kty not in _JWK_MEMBERS:
        raise Problem("badPublicKey", f"{what} is a key of type {shown(kty)!r}; account keys are {_ACCEPTED_KEYS}.")
    if private := [name for name in _JWK_PRIVATE if name in value]:
        raise Problem("malformed", f"{what} holds private key members ({', '.join(private)}); send only the public "
                                   "key.")
    for name in _JWK_MEMBERS[kty]:
        if name not in value:
            raise Problem("malformed", f"{what} has no {name!r}; a {kty} key has {', '.join(_JWK_MEMBERS[kty])}.")
    crv = value.get("crv")
    if kty in _JWK_CURVES and crv not in _JWK_CURVES[kty]:
        shown_crv = repr(shown(crv)) if isinstance(crv, str) else _json_type(crv)
        raise Problem("badPublicKey", f"{what}'s curve {shown_crv} is not accepted; account keys are "
                                      f"{_ACCEPTED_KEYS}.")
    for name in _JWK_MEMBERS[kty]:
        if name == "crv":
            continue
        data = b64decode(value[name], f"{what}'s {name!r}")
        if kty != "RSA" and len(data) != _JWK_SIZES[crv]:
            raise Problem("malformed", f"{what}'s {name!r} is {len(data)} octets; a {crv} key's is "
                                       f"{_JWK_SIZES[crv]} (RFC 7518 6.2.1.2, RFC 8037 2).")
        if kty == "RSA" and (not data or (data[0] == 0 and len(data) > 1)):
            raise Problem("malformed", f"{what}'s {name!r} is not in the minimum number of octets (RFC 7518 2: "
                                       "no leading zero octet).")
    try:
        return jose.JWK.from_json(value)
    except (jose.DeserializationError, ValueError, TypeError, KeyError, AttributeError):
        fault = {"EC": f"its point (x, y) is not on the curve {crv}", "RSA": "its modulus 'n' and exponent 'e' do "
                 "not make an RSA key (e must be odd, at least 3 and below n)"}.get(kty, "its 'x' is no point")
        raise Problem("malformed", f"{what} is not a valid {kty} public key: {fault}.") from None


# --- EdDSA for josepy (RFC 8037) -------------------------------------------------------
@jose.JWK.register
class JWKOKP(jose.JWK):
    """An Octet Key Pair JWK: Ed25519 or Ed448 (RFC 8037 section 2). Public keys only."""

    typ = "OKP"
    __slots__ = ("key",)
    cryptography_key_types = (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)
    required = ("crv", jose.JWK.type_field_name, "x")
    key: Any

    _CURVES = {"Ed25519": (ed25519.Ed25519PublicKey, 32), "Ed448": (ed448.Ed448PublicKey, 57)}

    def fields_to_partial_json(self) -> dict[str, str]:
        crv = "Ed25519" if isinstance(self.key, ed25519.Ed25519PublicKey) else "Ed448"
        raw = self.key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {"crv": crv, "x": jose.encode_b64jose(raw)}

    @classmethod
    def fields_from_json(cls, jobj) -> "JWKOKP":
        if "d" in jobj:
            raise jose.DeserializationError("an account key JWK must not hold the private key (d)")
        found = cls._CURVES.get(jobj.get("crv"))
        if found is None:
            raise jose.DeserializationError(f"OKP curve {jobj.get('crv')!r} is not Ed25519 or Ed448")
        key_class, size = found
        raw = jose.decode_b64jose(jobj.get("x", ""))
        if len(raw) != size:
            raise jose.DeserializationError(f"an {jobj['crv']} key is {size} bytes, not {len(raw)}")
        return cls(key=key_class.from_public_bytes(raw))

    def public_key(self) -> "JWKOKP":
        return self


class _JWAEdDSA(jose.JWASignature):
    kty = JWKOKP

    def sign(self, key, msg: bytes) -> bytes:
        return key.sign(msg)

    def verify(self, key, msg: bytes, sig: bytes) -> bool:
        try:
            key.verify(sig, msg)
        except InvalidSignature:
            return False
        return True


EdDSA = jose.JWASignature.register(_JWAEdDSA("EdDSA"))


# --- the ACME protected header -------------------------------------------------------
class AcmeHeader(jose.Header):
    """josepy's header plus ACME's ``nonce`` and ``url`` (RFC 8555 6.4, 6.5)."""

    nonce: str | None = jose.field("nonce", omitempty=True)
    url: str | None = jose.field("url", omitempty=True)


class AcmeSignature(jose.Signature):
    __slots__ = jose.Signature._orig_slots
    header_cls = AcmeHeader
    header: AcmeHeader = jose.field("header", omitempty=True, default=AcmeHeader(), decoder=AcmeHeader.from_json)


class AcmeJWS(jose.JWS):
    __slots__ = jose.JWS._orig_slots
    signature_cls = AcmeSignature


@dataclass
class SignedRequest:
    """A parsed, not yet verified, ACME request body."""

    jws: AcmeJWS
    protected: dict  # the protected header as sent
    alg: str
    nonce: str | None
    url: str | None
    kid: str | None
    jwk: jose.JWK | None
    payload: bytes

    @property
    def is_post_as_get(self) -> bool:
        return self.payload == b""

    def json_payload(self) -> dict:
        """The payload as a JSON object; POST-as-GET (empty payload) reads as ``{}`` (only a resource
        that may be fetched takes one: :meth:`AcmeService._route <certkit.acme.server.AcmeService._route>`
        refuses it elsewhere)."""
        if self.payload == b"":
            return {}
        value = loads(self.payload, "The JWS payload", "The JWS payload is not JSON.")
        if not isinstance(value, dict):
            raise Problem("malformed", "The JWS payload must be a JSON object.")
        return value


def parse(body: bytes, *, allowed: tuple[str, ...] = ALGORITHMS) -> SignedRequest:
    """Parse a flattened JSON JWS and check the shape of its protected header (not the signature)."""
    if len(body) > MAX_BODY_BYTES:
        raise Problem("malformed", f"The request body is larger than {MAX_BODY_BYTES} bytes.")
    outer = loads(body, "The request body", "The request body is not JSON; ACME requests are JWS objects.")
    return parse_object(outer, allowed=allowed)


class _LongInteger(Exception):
    def __init__(self, digits: int) -> None:
        super().__init__(digits)
        self.digits = digits


def _integer(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _LongInteger(digits)
    return int(text)


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def loads(data: str | bytes, what: str, not_json: str):
    """``data`` (``what``: the request body, a payload, a protected header) read as JSON, or a ``malformed`` Problem:
    ``not_json`` for what is no JSON, and for an integer of more than :data:`MAX_INT_DIGITS` digits, which is JSON
    but which no field takes, its length (never "not JSON", as Python's own limit would have it said)."""
    try:
        return json.loads(data, parse_int=_integer, parse_constant=_no_constant)  # NaN, Infinity: not JSON (RFC 8259 6)
    except _LongInteger as exc:
        raise Problem("malformed", f"{what} holds an integer of {exc.digits} digits; no ACME field takes one of more "
                                   f"than {MAX_INT_DIGITS}.") from None
    except UNREADABLE:
        raise Problem("malformed", not_json) from None


def parse_object(outer: Any, *, allowed: tuple[str, ...] = ALGORITHMS, what: str = "The JWS") -> SignedRequest:
    if not isinstance(outer, dict) or set(outer) != {"protected", "payload", "signature"}:
        raise Problem("malformed", f"{what} must use the flattened JSON serialization with exactly "
                                   "'protected', 'payload' and 'signature' (and no unprotected header).")
    if not all(isinstance(outer[k], str) for k in outer):
        raise Problem("malformed", f"{what} has a member that is not a string.")
    for name in ("protected", "payload", "signature"):
        b64decode(outer[name], f"{what}'s '{name}'")
    not_json = f"{what}'s protected header is not base64url-encoded JSON."
    try:
        header = jose.decode_b64jose(outer["protected"])
    except jose.DeserializationError:
        raise Problem("malformed", not_json) from None
    protected = loads(header, f"{what}'s protected header", not_json)
    if not isinstance(protected, dict):
        raise Problem("malformed", f"{what}'s protected header is not a JSON object.")
    alg = protected.get("alg")
    if alg not in allowed:
        raise Problem("badSignatureAlgorithm",
                      f"{what} is signed with {alg!r}; this server accepts {', '.join(allowed)}.",
                      extra={"algorithms": list(allowed)})
    if "crit" in protected:
        raise Problem("malformed", f"{what} has a 'crit' header parameter; no extension is understood here.")
    if ("jwk" in protected) == ("kid" in protected):
        raise Problem("malformed", f"{what}'s protected header must hold exactly one of 'jwk' and 'kid'.")
    for name in ("nonce", "url", "kid"):
        if name in protected and not isinstance(protected[name], str):
            raise Problem("malformed", f"{what}'s '{name}' header parameter must be a string.")
    if "jwk" in protected:
        read_jwk(protected["jwk"], "The JWK" if what == "The JWS" else f"The JWK of {what[:1].lower()}{what[1:]}")
    check_header(protected, what, _json_type)
    try:
        jws = AcmeJWS.from_json(outer)
    except (jose.DeserializationError, TypeError, KeyError, AttributeError, *UNREADABLE):  # not in josepy's words
        raise Problem("malformed", f"{what} cannot be read as a JWS (RFC 7515) with a JSON protected header.") from None
    header = jws.signature.combined
    jwk = header.jwk
    if jwk is not None:
        check_account_key(jwk)
    return SignedRequest(jws, protected, alg, protected.get("nonce"), protected.get("url"),
                         protected.get("kid"), jwk, jws.payload)


def check_account_key(jwk: jose.JWK) -> None:
    """Refuse keys no account may have: symmetric, small RSA, curves outside the ES algorithms."""
    key = jwk.key
    key = getattr(key, "_wrapped", key)  # josepy's Comparable*Key wrappers
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise Problem("badPublicKey", f"The account key is RSA with {key.key_size} bits; "
                                          f"use at least {MIN_RSA_BITS}.")
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _EC_CURVES.values():
            raise Problem("badPublicKey", f"The account key's curve {key.curve.name} is not P-256, P-384 or P-521.")
        return
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return
    if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise Problem("malformed", "The JWK holds a private key; send only the public key.")
    raise Problem("badPublicKey", f"An account key of type {jwk.typ!r} is not accepted; use EC, RSA or OKP.")


def verify(request: SignedRequest, jwk: jose.JWK) -> None:
    """Check ``request``'s signature with ``jwk`` (the header's own key or the account's)."""
    if not key_fits(request.alg, jwk):
        raise Problem("badSignatureAlgorithm",
                      f"The algorithm {request.alg} does not fit the account's {describe_key(jwk)} key.",
                      extra={"algorithms": algorithms_for(jwk)})
    try:
        ok = request.jws.verify(jwk)
    except Exception:  # a signature of the wrong shape for the key; josepy lets crypto errors through
        ok = False
    if not ok:
        raise Problem("malformed", "The JWS signature does not verify with the "
                                   f"{'account' if request.kid else 'given'} key.")


def key_fits(alg: str, jwk: jose.JWK) -> bool:
    return alg in algorithms_for(jwk)


def algorithms_for(jwk: jose.JWK) -> list[str]:
    key = getattr(jwk.key, "_wrapped", jwk.key)
    if isinstance(key, rsa.RSAPublicKey):
        return ["RS256"]
    if isinstance(key, ec.EllipticCurvePublicKey):
        return [alg for alg, curve in _EC_CURVES.items() if curve == key.curve.name]
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return ["EdDSA"]
    return []


def describe_key(jwk: jose.JWK) -> str:
    key = getattr(jwk.key, "_wrapped", jwk.key)
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(key.curve.name, key.curve.name)
    return "Ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else "Ed448"


def thumbprint(jwk: jose.JWK) -> str:
    """The RFC 7638 SHA-256 thumbprint, base64url: an account's identity and half of every key authorization."""
    return jose.encode_b64jose(jwk.thumbprint(hashes.SHA256))


def jwk_json(jwk: jose.JWK) -> str:
    """The public JWK as canonical JSON text, for storage."""
    return json.dumps(jwk.public_key().to_json(), sort_keys=True, separators=(",", ":"))


def jwk_from_json(text: str) -> jose.JWK:
    return jose.JWK.from_json(json.loads(text))


def public_key_der(jwk: jose.JWK) -> bytes:
    key = getattr(jwk.key, "_wrapped", jwk.key)
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def jwk_for_public_key(key) -> jose.JWK:
    """A JWK for a ``cryptography`` public key (a certificate's, for revocation by certificate key)."""
    if isinstance(key, rsa.RSAPublicKey):
        return jose.JWKRSA(key=key)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return jose.JWKEC(key=key)
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return JWKOKP(key=key)
    raise Problem("badPublicKey", "The certificate's key type cannot sign a JWS.")
