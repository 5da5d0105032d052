"""The mode of each file certkit writes into a bundle folder: 0600 for anything that may be secret.

A bundle's own files are known by name (``privkey.pem`` and ``bundle.p12`` are secret, the
certificates are not). Files written beside them (``IssuedCert.write(extra=...)``) are the user's
payload, named as the user likes (``tls.key``, ``bundle.pfx``, ``keystore.jks``): they are 0600 unless
their content is plainly public, PEM certificates, CRLs, CSRs or public keys and nothing else (or a DER
certificate). A file replaced never becomes more readable than it was (:func:`kept_mode`).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from certkit.atomic import PUBLIC_MODE, SECRET_MODE
from certkit.constants import BUNDLE_FILES, KEY_FILE, P12_FILE

# PEM labels that never carry a secret.
_PUBLIC_LABELS = {b"CERTIFICATE", b"TRUSTED CERTIFICATE", b"X509 CRL", b"PUBLIC KEY", b"RSA PUBLIC KEY",
                  b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST"}
_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
# A whole PEM block: what may stand between blocks is white space (and OpenSSL's "subject=" comments).
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----[A-Za-z0-9+/=\s:,-]*?-----END \1-----")
_COMMENT_LINE = re.compile(rb"^(?:subject|issuer)=.*$", re.MULTILINE)
# Names that say "a key or a key store", whatever the content.
_SECRET_SUFFIXES = ("key.pem", ".key", ".p12", ".pfx", ".jks", ".keystore", ".p8", ".pk8", ".der.key")


def is_secret(name: str, data: bytes | None = None) -> bool:
    """Whether the file ``name`` (holding ``data``, when known) may be secret."""
    if name in BUNDLE_FILES:
        return name in (KEY_FILE, P12_FILE)
    if name.lower().endswith(_SECRET_SUFFIXES):
        return True
    if data is None:
        return False
    return not _plainly_public(bytes(data))


def _plainly_public(data: bytes) -> bool:
    """PEM of certificates, CRLs, CSRs or public keys only; or one DER certificate."""
    if b"PRIVATE KEY" in data:
        return False
    labels = _PEM_BEGIN.findall(data)
    if labels:  # PEM blocks with public labels, and nothing else around them (a YAML with a key in base64)
        rest = _COMMENT_LINE.sub(b"", _PEM_BLOCK.sub(b"", data))
        return all(label in _PUBLIC_LABELS for label in labels) and not rest.strip()
    from cryptography import x509

    try:
        x509.load_der_x509_certificate(data)
    except ValueError:
        return False  # PKCS#12, a JKS store, a raw key, text: certkit cannot tell, so it is kept private
    return True


def mode_for(name: str, data: bytes | None = None) -> int:
    return SECRET_MODE if is_secret(name, data) else PUBLIC_MODE


def kept_mode(path: Path, mode: int) -> int:
    """``mode`` for a file about to replace ``path``, never more readable than what is there now (a
    user's 0600 made 0644 by a replacement would be a key given away); the owner keeps read and write."""
    try:
        info = os.lstat(path)
    except OSError:
        return mode
    if not stat.S_ISREG(info.st_mode):
        return mode
    return (mode & stat.S_IMODE(info.st_mode)) | (mode & 0o600)
