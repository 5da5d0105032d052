"""What a file is, told by its bytes: one that holds a private key (:func:`holds_a_private_key`: PEM, a
Secret's tls.key, an OpenPGP, PuTTY or age key, a private JSON Web Key, a DER key), a PKCS#12 file, a PKCS#7
bundle, a Java keystore. No output is written over such a file, and the reader names it for what it is."""

from __future__ import annotations

import os
import stat
from pathlib import Path

# What a file holding a private key shows, in each form certkit writes or reads: PEM (a key file, a jsonl
# line's "key", a tar member), a Kubernetes Secret's tls.key.
# PEM and OpenSSH keys, a Secret's tls.key, an OpenPGP secret key's armor, a PuTTY key, an age identity, an
# SSH.com (RFC 4716 style) key of PuTTYgen's export.
_KEY_MARKS = (b"PRIVATE KEY-----", b"tls.key", b"PRIVATE KEY BLOCK-----", b"PuTTY-User-Key-File-", b"AGE-SECRET-KEY-1",
              b"PRIVATE KEY ----")
_SCAN_CHUNK = 1 << 20


def holds_a_private_key(path: Path) -> bool:
    """Whether the regular file ``path`` holds a private key: a PEM block or a Secret's tls.key anywhere in
    it (read a chunk at a time), or, for a small file, a DER key. OSError when the file system will not say
    (an I/O error, no permission): never "no key"."""

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the read
            return False
        with open(path, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                return False
            tail = b""
            while chunk := file.read(_SCAN_CHUNK):
                if any(mark in tail + chunk for mark in _KEY_MARKS):
                    return True
                tail = chunk[-32:]
            file.seek(0)
            head = file.read(64)
            if is_pkcs12(head) or is_keystore(head):  # a bundle.p12 of any name, a Java keystore, an
                return True  # OpenPGP secret key: its key is inside, encrypted or not
            size = os.fstat(file.fileno()).st_size
            if size > 64 * 1024:
                return False
            file.seek(0)
            data = file.read()
            return is_a_der_key(data) or _is_a_private_jwk(data)
    except (FileNotFoundError, NotADirectoryError):
        return False


def _is_a_private_jwk(data: bytes) -> bool:
    """Whether ``data`` is a JSON Web Key (or a set of them) holding a private or secret key (``d``, ``k``):
    certbot keeps its ACME account key so, in private_key.json."""
    from certkit.errors import loads_json

    if not data.lstrip()[:1] == b"{" or b'"kty"' not in data:
        return False
    try:
        value = loads_json(data)
    except ValueError:
        return False
    keys = value.get("keys") if isinstance(value.get("keys"), list) else [value]
    return any(isinstance(k, dict) and "kty" in k and ("d" in k or "k" in k) for k in keys)


# PKCS#12 (RFC 7292): a DER SEQUENCE, version 3, then the authSafe ContentInfo of type pkcs7-data.
_PKCS12_VERSION = b"\x02\x01\x03"
_PKCS7_DATA = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x01"


def is_pkcs12(head: bytes) -> bool:
    return head[:1] == b"\x30" and _PKCS12_VERSION in head[:8] and _PKCS7_DATA in head[:32]


# PKCS#7 / CMS signed-data (RFC 2315, 5652): a DER SEQUENCE whose first element is the OID signedData; a .p7b
# (.p7c) certificate bundle, as Windows, Java's keytool and many CAs hand them out; or its PEM form.
_PKCS7_SIGNED_DATA = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02"


def is_pkcs7(head: bytes) -> bool:
    if head.lstrip().startswith((b"-----BEGIN PKCS7-----", b"-----BEGIN CMS-----")):
        return True
    return head[:1] == b"\x30" and _PKCS7_SIGNED_DATA in head[2:17]


# Java's JKS and JCEKS keystores, by their magic numbers.
_KEYSTORE_MAGIC = (b"\xfe\xed\xfe\xed", b"\xce\xce\xce\xce")


def is_keystore(head: bytes) -> bool:
    """A Java keystore, or a binary OpenPGP secret key: its first packet a Secret-Key packet (tag 5, RFC 9580
    4.2, in the old or the new packet format) whose body starts with a key version of 3 to 6."""
    if head[:4] in _KEYSTORE_MAGIC:
        return True
    if len(head) < 6:
        return False
    first = head[0]
    if first == 0xC5:  # new format: a length of 1, 2 or 5 octets
        skip = 1 if head[1] < 192 else 2 if head[1] < 224 else 5 if head[1] == 255 else None
    elif first & 0xFC == 0x94:  # old format, tag 5: a length of 1, 2 or 4 octets
        skip = {0: 1, 1: 2, 2: 4}.get(first & 0x03)
    else:
        return False
    return skip is not None and head[1 + skip] in (3, 4, 5, 6)


def is_a_der_key(data: bytes) -> bool:
    from cryptography.hazmat.primitives.serialization import load_der_private_key

    try:
        load_der_private_key(data, None)
    except TypeError:  # encrypted: a key all the same
        return True
    except Exception:  # not a key (ValueError), or one of a type cryptography does not support: its shape says
        return _shaped_as_a_der_key(data)
    return True


def _shaped_as_a_der_key(data: bytes) -> bool:
    """Whether ``data`` is one DER SEQUENCE shaped as a private key, of any algorithm (a curve cryptography
    does not implement, SM2): PKCS#8 (a version 0 or 1, then the algorithm's SEQUENCE), SEC 1 (version 1, then
    the key's OCTET STRING) or PKCS#1 / DSA (version 0, then an INTEGER)."""
    if len(data) < 8 or data[0] != 0x30:
        return False
    if data[1] < 0x80:
        body, size = 2, data[1]
    elif 1 <= data[1] - 0x80 <= 4:
        body, size = 2 + data[1] - 0x80, int.from_bytes(data[2:2 + data[1] - 0x80], "big")
    else:
        return False
    if body + size != len(data) or data[body:body + 2] != b"\x02\x01" or len(data) < body + 4:
        return False
    version, after = data[body + 2], data[body + 3]
    if version in (0, 1) and after == 0x30:  # PKCS#8: an AlgorithmIdentifier (an OID first), then the key's OCTETs
        algorithm = _der_span(data, body + 3)
        return algorithm is not None and data[algorithm[0]:algorithm[0] + 1] == b"\x06" \
            and data[algorithm[1]:algorithm[1] + 1] == b"\x04"
    return (version == 1 and after == 0x04) or (version == 0 and after == 0x02)


def _der_span(data: bytes, at: int) -> tuple[int, int] | None:
    """(where the contents of the DER element at ``at`` start, where the element ends), or None."""
    if at + 2 > len(data):
        return None
    first = data[at + 1]
    if first < 0x80:
        start, size = at + 2, first
    elif 1 <= first - 0x80 <= 4 and at + 2 + first - 0x80 <= len(data):
        start, size = at + 2 + first - 0x80, int.from_bytes(data[at + 2:at + 2 + first - 0x80], "big")
    else:
        return None
    return (start, start + size) if start + size <= len(data) else None
