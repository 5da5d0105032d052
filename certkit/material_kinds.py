"""What a file of another kind holds, where a PEM certificate or key is read (a bundle.p12 given for its
cert.pem, a .p7b, a DER certificate or key, a Java keystore), in words, with what to give instead: every reader
of a file of the wrong kind says what it is, never "it may be truncated". For :mod:`certkit.material` and every
other reader of a file argument.
"""

from __future__ import annotations

from pathlib import Path

from certkit.errors import parse_errors
from certkit.text import shown

DER_KEY = "a private key in DER form"
PKCS12 = "a PKCS#12 bundle (a .p12 or .pfx file: certificates and a key, encrypted)"
PKCS7 = "a PKCS#7 bundle (a .p7b or .p7c file: certificates in a signed-data envelope, which certkit does not read)"
PKCS7_DER = PKCS7.replace("bundle", "bundle in DER form", 1)
PKCS12_TRUST = ("a PKCS#12 truststore (a .p12 or .pfx file of certificates and no private key, as keytool "
                "-importcert and openssl pkcs12 -export -nokeys write it)")
JAVA_KEYSTORE = "a Java keystore (JKS or JCEKS, which certkit does not read)"
# A PKCS#12 file's key bags (keyBag, pkcs8ShroudedKeyBag; RFC 7292) are in its unencrypted part, as openssl,
# keytool and Windows write them, where their OID is seen; a truststore's certificates are in the encrypted one.
_KEY_BAGS = tuple(b"\x06\x0b\x2a\x86\x48\x86\xf7\x0d\x01\x0c\x0a\x01" + bag for bag in (b"\x01", b"\x02"))


def binary_kind(data: bytes) -> str | None:
    """What a binary file that is no DER certificate, CSR or CRL holds, when certkit can tell (a bundle.p12 given
    where its cert.pem was meant, a DER key, a Java keystore), in words: every reader of a file of the wrong kind
    says what it is, not "it may be truncated"; None when it cannot tell."""
    from certkit.formats.file_kinds import is_a_der_key, is_keystore, is_pkcs7, is_pkcs12

    if is_pkcs12(data[:64]):
        return PKCS12 if any(bag in data for bag in _KEY_BAGS) else PKCS12_TRUST
    if is_pkcs7(data[:64]):
        return PKCS7_DER if data[:1] == b"\x30" else PKCS7
    if is_keystore(data[:64]):
        return JAVA_KEYSTORE if data[:4] in (b"\xfe\xed\xfe\xed", b"\xce\xce\xce\xce") else "an OpenPGP secret key"
    return DER_KEY if len(data) <= 64 * 1024 and is_a_der_key(data) else None


def not_pem(path: Path | str, data: bytes, wanted: str) -> str | None:
    """Why ``data`` (the file ``path``, with no PEM block of the ``wanted`` kind: "certificate" or "private key")
    cannot be used where PEM is read (OpenSSL's load_cert_chain), when it holds what certkit can name: that
    thing in DER form, a bundle.p12; None otherwise. One sentence without its subject or final stop."""
    from cryptography import x509

    name = shown(path)
    kind = binary_kind(data)
    if kind is None:
        try:
            x509.load_der_x509_certificate(data)
            kind = "a certificate in DER form"
        except parse_errors():
            return None
    if kind == DER_KEY and wanted == "private key":
        return f"holds a private key in DER form, not PEM; give it as PEM (openssl pkey -in {name} -out key.pem)"
    if kind.endswith("certificate in DER form") and wanted == "certificate":
        return f"holds a DER certificate, not PEM; give it as PEM (openssl x509 -in {name} -out cert.pem)"
    return f"is {kind}, not a PEM {wanted}{advice_for(kind, path, key=wanted == 'private key')}"


def advice_for(kind: str, path: Path | str, *, key: bool = False) -> str:
    """What to give instead of a file of ``kind`` (:func:`binary_kind`) where a certificate (or a ``key``) is
    read, as the end of a sentence."""
    if kind in (PKCS7, PKCS7_DER):
        der = " -inform DER" if kind == PKCS7_DER else ""
        return (f"; take the certificates out with 'openssl pkcs7{der} -in {shown(path)} -print_certs -out "
                "certs.pem' and give that file")
    if kind == JAVA_KEYSTORE and not key:  # keytool prints every entry's certificates (its chain) in PEM
        return (f"; take the certificates out with 'keytool -list -rfc -keystore {shown(path)} > certs.pem' (it asks "
                "for the store password) and give that file")
    if kind == JAVA_KEYSTORE:  # openssl reads no JKS: keytool converts it to PKCS#12 first
        return (f"; take the key out with 'keytool -importkeystore -srckeystore {shown(path)} -destkeystore key.p12 "
                "-deststoretype PKCS12', then 'openssl pkcs12 -in key.p12 -nocerts -noenc -out privkey.pem'")
    if kind == PKCS12_TRUST:
        return ("; it holds no key: give the PEM private key (privkey.pem)" if key else
                f"; take its certificates out with 'openssl pkcs12 -in {shown(path)} -nokeys -out ca.pem' (it asks "
                "for the store password) and give that file")
    if kind != PKCS12:
        return ""
    if key:
        return (f"; give the PEM key beside it (privkey.pem), or take the key out with 'openssl pkcs12 -in "
                f"{shown(path)} -nocerts -noenc -out privkey.pem'")
    return (f"; give the PEM file beside it (cert.pem, fullchain.pem), or take the certificates out with "
            f"'openssl pkcs12 -in {shown(path)} -nokeys -out cert.pem'")


def held_instead_of_certificate(data: bytes) -> str | None:
    """What a file that should hold a PEM certificate holds instead, in words with what to do (a private
    key, a CSR, a DER certificate or key), when it can be told; None otherwise."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_der_private_key

    if b"PRIVATE KEY-----" in data:
        return ("it holds a private key, not a certificate (were a key and a certificate copied over each other?); "
                "put the CA's certificate back (a root's is the ca.pem of every bundle it issued)")
    if b"CERTIFICATE REQUEST-----" in data:
        return "it holds a certificate signing request, not a certificate; put the CA's certificate back"
    if b"-----BEGIN" in data:
        return None
    if (kind := binary_kind(data)) not in (None, DER_KEY):  # a .p12, a keystore, a .p7b copied over it
        return (f"it is {kind}, not a PEM certificate; put the CA's certificate back (a root's is the ca.pem of "
                "every bundle it issued)")
    try:
        x509.load_der_x509_certificate(data)
        return ("it is a DER (binary) certificate; certkit keeps it in PEM: openssl x509 -inform DER -in FILE "
                "-out FILE.pem, then put FILE.pem in its place")
    except ValueError:
        pass
    try:
        load_der_private_key(data, None)
    except TypeError:  # encrypted: a key all the same
        pass
    except Exception:  # not a key either
        return None
    return "it holds a private key (DER), not a certificate; put the CA's certificate back"


def der_elements(data: bytes, *, sequences: bool = True) -> list[bytes] | None:
    """``data`` cut into the DER elements that follow one another in it (with ``sequences``, SEQUENCEs only: a
    DER chain, ``cat cert.der ca.der``, as Java's CertificateFactory and Go read it); None when it is not whole
    elements and nothing else (text, or bytes after the last one that are no whole element)."""
    elements, at = [], 0
    while at < len(data):
        if (sequences and data[at] != 0x30) or at + 2 > len(data):
            return None
        size, start = data[at + 1], at + 2
        if size & 0x80:
            count = size & 0x7F
            if not 0 < count <= 4 or start + count > len(data):
                return None
            size, start = int.from_bytes(data[start:start + count], "big"), start + count
        if start + size > len(data):
            return None
        elements.append(data[at:start + size])
        at = start + size
    return elements


def trusted_certificate(der: bytes) -> tuple[bytes, bool] | None:
    """The certificate of an OpenSSL ``TRUSTED CERTIFICATE`` (``openssl x509 -trustout``, Fedora's
    ca-bundle.trust.crt: the certificate, then its X509_CERT_AUX), and whether that states trust settings (the
    uses it is trusted for, or rejected for: OpenSSL applies them, certkit does not); None when it is not one."""
    parts = der_elements(der)
    if not parts or len(parts) > 2:
        return None
    aux = der_elements(parts[1][2:] if parts[1][1] < 0x80 else parts[1][2 + (parts[1][1] & 0x7F):],
                       sequences=False) if len(parts) == 2 else []
    if aux is None:
        return None
    return parts[0], any(element[0] in (0x30, 0xA0) for element in aux)  # trust list, reject list


def der_chain(data: bytes) -> list | None:
    """The certificates of a DER chain (:func:`der_elements`), first to last; None when ``data`` is not
    several DER certificates and nothing else."""
    from cryptography import x509

    try:
        elements = der_elements(data) or ()
        return [x509.load_der_x509_certificate(der) for der in elements] if len(elements) > 1 else None
    except parse_errors():
        return None
