"""Private keys written as PKCS#8 PEM, and the CA key's encryption.

CA keys are stored as PKCS#8 encrypted with PBES2: scrypt (N=2^14, r=8, p=1,
OpenSSL's own ``-scrypt`` defaults, and within OpenSSL's default memory limit
so ``openssl pkey`` can still read the key) and AES-256-CBC. We build that
structure ourselves because ``cryptography``'s ``BestAvailableEncryption``
uses PBKDF2 with only 2,048 iterations for PKCS#8, which is cheap to brute
force. Leaf keys are written unencrypted: servers and clients load them as-is.
Whether a key file is encrypted (:func:`is_encrypted`) is told here too.
"""

from __future__ import annotations

import os

from certkit.errors import CertkitError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def private_key_pem(key, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM of ``key``; encrypted with scrypt + AES-256-CBC when a passphrase is given."""
    from cryptography.hazmat.primitives import serialization

    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    if passphrase is None:
        return _pem(der, "PRIVATE KEY")
    if not passphrase:
        from certkit.errors import cli_worded

        said = "pass passphrase=None for an unencrypted key"
        raise cli_worded(CertkitError(f"The passphrase is empty; choose a non-empty one or {said}."), said,
                         "use --no-passphrase")
    return _pem(_encrypt_pkcs8(der, passphrase), "ENCRYPTED PRIVATE KEY")


def is_encrypted(data: bytes) -> bool:
    head = data.lstrip()[:64]
    if head.startswith(b"-----"):
        return head.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY") or b"Proc-Type: 4,ENCRYPTED" in data[:200]
    return _der_is_encrypted_pkcs8(data)


def _der_is_encrypted_pkcs8(der: bytes) -> bool:
    """Whether DER ``der`` is an EncryptedPrivateKeyInfo (RFC 5208): SEQUENCE { AlgorithmIdentifier
    SEQUENCE { OID, ... }, OCTET STRING } and nothing else. A PrivateKeyInfo starts with an INTEGER; a
    certificate or a CSR also starts SEQUENCE { SEQUENCE ... }, but holds three parts, none an OCTET STRING."""
    try:
        _, body = _der_read(der, 0x30)
        end, algorithm = _der_read(body, 0x30)
        _der_read(algorithm, 0x06)
        rest, _ = _der_read(body[end:], 0x04)
    except ValueError:
        return False
    return end + rest == len(body)


# --- PBES2 (RFC 8018) with scrypt (RFC 7914) for PKCS#8 ----------------------------

_OID_PBES2 = "1.2.840.113549.1.5.13"
_OID_SCRYPT = "1.3.6.1.4.1.11591.4.11"
_OID_AES256_CBC = "2.16.840.1.101.3.4.1.42"


def _encrypt_pkcs8(der: bytes, passphrase: bytes) -> bytes:
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    salt, iv = os.urandom(16), os.urandom(16)
    key = Scrypt(salt=salt, length=32, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(passphrase)
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(der) + padder.finalize()) + encryptor.finalize()
    scrypt_params = _seq(_octets(salt) + _int(SCRYPT_N) + _int(SCRYPT_R) + _int(SCRYPT_P) + _int(32))
    kdf = _seq(_oid(_OID_SCRYPT) + scrypt_params)
    enc = _seq(_oid(_OID_AES256_CBC) + _octets(iv))
    algorithm = _seq(_oid(_OID_PBES2) + _seq(kdf + enc))
    return _seq(algorithm + _octets(ciphertext))


def _pem(der: bytes, label: str) -> bytes:
    import base64

    body = base64.encodebytes(der).replace(b"\n", b"")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return b"".join([f"-----BEGIN {label}-----\n".encode(), *(line + b"\n" for line in lines),
                     f"-----END {label}-----\n".encode()])


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _len(len(body)) + body


def _seq(body: bytes) -> bytes:
    return _tlv(0x30, body)


def _octets(body: bytes) -> bytes:
    return _tlv(0x04, body)


def _int(n: int) -> bytes:
    return _tlv(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big"))


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([parts[0] * 40 + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.append(0x80 | (part & 0x7F))
            part >>= 7
        out.extend(reversed(chunk))
    return _tlv(0x06, bytes(out))


def _der_read(data: bytes, tag: int) -> tuple[int, bytes]:
    if len(data) < 2 or data[0] != tag:
        raise ValueError("unexpected tag")
    length, offset = data[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(data) < 2 + count:
            raise ValueError("bad length")
        length, offset = int.from_bytes(data[2:2 + count], "big"), 2 + count
    if len(data) < offset + length:
        raise ValueError("truncated")
    return offset + length, data[offset:offset + length]
