"""Signing a ``cryptography`` builder with a key ``cryptography`` does not hold: the throw-away
stand-in key that lets it encode the to-be-signed bytes, and the DER splice that puts the
token's signature in place of the stand-in's (see :mod:`certkit.pkcs11`)."""

from __future__ import annotations

from functools import cache

from certkit.errors import CertkitError


@cache
def stand_in_key(algorithm: str):
    """A throw-away key of ``algorithm`` (ecdsa or rsa) whose only use is to let ``cryptography``
    encode a TBS; its signature is replaced (the curve or size does not appear in the TBS)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if algorithm == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


def replace_signature(der: bytes, tbs: bytes, signature: bytes) -> bytes:
    """``SEQUENCE { tbs, signatureAlgorithm, BIT STRING signature }`` with the token's signature
    in place of the stand-in's (X.509 certificates, CRLs and CSRs share this shape)."""
    outer_header = _header_length(der, 0)
    if der[outer_header:outer_header + len(tbs)] != tbs:
        raise CertkitError("internal error: the signed structure does not start with its TBS")
    start = outer_header + len(tbs)
    algorithm_end = start + _header_length(der, start) + _body_length(der, start)
    body = tbs + der[start:algorithm_end] + _tlv(0x03, b"\x00" + signature)
    return _tlv(0x30, body)


def _header_length(der: bytes, at: int) -> int:
    first = der[at + 1]
    return 2 + (first & 0x7F if first & 0x80 else 0)


def _body_length(der: bytes, at: int) -> int:
    first = der[at + 1]
    if not first & 0x80:
        return first
    count = first & 0x7F
    return int.from_bytes(der[at + 2:at + 2 + count], "big")


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + body
