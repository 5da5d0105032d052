"""Which ACME account of a CA holds a public key, read without josepy (RFC 8555 11.1).

An account key is never a certificate's key, either way. The ACME server
refuses a certificate's key as an account key (:func:`certkit.acme.finalize.refuse_certificate_key`);
this is the other way, for every path that certifies a key it did not generate
(``sign-csr``, ``issue-batch`` with CSRs, a renewal keeping its key, the
library, an ACME finalize): :func:`certkit.inventory.query.key_reuse` asks it.
It needs only ``cryptography``: the ACME extra (josepy) may not be installed
where an operator signs a CSR, and the accounts are found by their RFC 7638
thumbprint, which the server stores.
"""

from __future__ import annotations

import base64
import hashlib
import json

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# RFC 7518 6.2.1.1: the curve names of a JWK.
_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _uint(value: int) -> str:
    """RFC 7518 2 Base64urlUInt: the minimum number of octets (one zero octet for 0)."""
    return _b64(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def jwk_members(public_key) -> dict[str, str] | None:
    """The members RFC 7638 hashes for ``public_key``; None for a key no account can have."""
    if isinstance(public_key, rsa.RSAPublicKey):
        numbers = public_key.public_numbers()
        return {"e": _uint(numbers.e), "kty": "RSA", "n": _uint(numbers.n)}
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        crv = _CURVES.get(public_key.curve.name)
        if crv is None:
            return None
        size = (public_key.curve.key_size + 7) // 8
        numbers = public_key.public_numbers()
        return {"crv": crv, "kty": "EC", "x": _b64(numbers.x.to_bytes(size, "big")),
                "y": _b64(numbers.y.to_bytes(size, "big"))}
    if isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        crv = "Ed25519" if isinstance(public_key, ed25519.Ed25519PublicKey) else "Ed448"
        return {"crv": crv, "kty": "OKP", "x": _b64(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw))}
    return None


def thumbprint_of(public_key) -> str | None:
    """The RFC 7638 SHA-256 thumbprint of ``public_key`` as a JWK, base64url; None if no JWK."""
    members = jwk_members(public_key)
    if members is None:
        return None
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode("ascii")
    return _b64(hashlib.sha256(canonical).digest())


def account_holding(tx, public_key) -> str | None:
    """The id of the ACME account (valid or deactivated) whose key is ``public_key``, in the
    inventory transaction ``tx``; None if there is none, or if no ACME server ever used it."""
    from certkit.acme.schema import _columns

    thumb = thumbprint_of(public_key)
    if thumb is None or "thumbprint" not in _columns(tx, "acme_accounts"):
        return None
    row = tx.execute("SELECT id FROM acme_accounts WHERE thumbprint = ?", (thumb,)).fetchone()
    return row[0] if row else None
