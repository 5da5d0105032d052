"""Certificate signing requests: reading them, checking their signature, and saying what they ask for.

A CSR is a wish list. certkit takes only the public key and the names from it
(each checked by :mod:`certkit.names`, exactly as for issue-server and
issue-client, by :mod:`certkit.csr_plan`); the extensions it requests are never
copied, because the CA's profile (:func:`certkit.profiles.build_certificate`)
decides them. This module describes what was requested so the CLI can say what
was dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from certkit.errors import InvalidCSR, describe_parse_error, parse_errors
from certkit.keys import KEYS_CERTIFIED, MIN_RSA_BITS, key_policy_problem, pem_damage  # noqa: F401 (MIN_RSA_BITS: once defined here)

if TYPE_CHECKING:
    from cryptography import x509


@dataclass
class CSRRequest:
    """What a CSR asks for, in words: its subject, its SAN entries and its other extensions."""

    csr: "x509.CertificateSigningRequest"
    common_name: str | None
    subject: str
    san: list[tuple[str, str]] = field(default_factory=list)  # (kind, value): dns, ip, email, uri, other
    extensions: list[str] = field(default_factory=list)  # every requested extension but the SAN, described

    @property
    def public_key(self):
        return self.csr.public_key()


def csr_of(request) -> CSRRequest:
    """A CSR given to the library: a :class:`CSRRequest`, PEM or DER bytes, PEM text (a str) or a
    cryptography CSR object (read again, so its signature and key are checked)."""
    from cryptography import x509

    if isinstance(request, CSRRequest):
        return request
    if isinstance(request, str):
        from certkit.text import is_utf8

        if not is_utf8(request):  # a PEM CSR is ASCII: a str with bytes that did not decode is no CSR
            raise InvalidCSR("The CSR text is not UTF-8 text (it holds a byte that did not decode); a PEM CSR is "
                             "ASCII: pass the file's bytes, open(path, 'rb').read().")
        request = request.encode("utf-8")
    elif isinstance(request, x509.CertificateSigningRequest):
        from cryptography.hazmat.primitives.serialization import Encoding

        request = request.public_bytes(Encoding.DER)
    elif not isinstance(request, (bytes, bytearray, memoryview)):
        from certkit.vocabulary import wrong_type

        raise wrong_type("The CSR", "PEM or DER bytes, PEM text or an x509.CertificateSigningRequest", request)
    return load_csr(bytes(request))


def load_csr(data: bytes, *, source: str = "the CSR") -> CSRRequest:
    """Read a PEM or DER CSR, check its key and self-signature, and describe the request."""
    from cryptography import x509

    csr = _parse(data, source)
    weak = weak_signature(csr)
    if weak:
        raise InvalidCSR(
            f"{_cap(source)} is signed with {weak}, a weak signature algorithm that certkit does not accept "
            "(a forged request could pass it). Ask for a CSR signed with SHA-256 (openssl req -sha256)."
        )
    _check_key(csr, source)  # first: under a broken key (e=1) a signature made with no private key verifies
    try:
        valid = csr.is_signature_valid
    except Exception:  # an unsupported or mangled signature algorithm
        valid = False
    if not valid:
        raise InvalidCSR(
            f"The signature of {source} does not verify: the request was altered after it was "
            "signed, or is damaged. Ask for a fresh CSR."
        )
    try:
        extensions = list(csr.extensions)
    except (ValueError, x509.DuplicateExtension) as exc:
        raise InvalidCSR(f"{_cap(source)} has malformed extensions: {exc}.") from None
    try:
        cns = csr.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    except parse_errors() as exc:  # parsed when first read: a name string OpenSSL reads and cryptography refuses
        _refuse_unread_name(exc, csr.public_bytes(_der_encoding()), source)
        raise InvalidCSR(f"{_cap(source)} holds a damaged subject name: {describe_parse_error(exc)}.") from None
    if len(cns) > 1:
        raise InvalidCSR(f"{_cap(source)} has {len(cns)} common names; a certificate takes one.")
    request = CSRRequest(csr, str(cns[0].value) if cns else None, csr.subject.rfc4514_string())
    for ext in extensions:
        if isinstance(ext.value, x509.SubjectAlternativeName):
            request.san = [_general_name(gn) for gn in ext.value]
        else:
            request.extensions.append(describe_extension(ext))
    return request


# PEM blocks as OpenSSL finds them: anywhere in the file, with text around them (openssl req -text).
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)
_CSR_BEGIN = re.compile(rb"-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----")


def _der_encoding():
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


def _der_of(block: bytes | None) -> bytes:
    """The DER inside a PEM CSR block (empty when it cannot be decoded)."""
    import base64
    import binascii

    body = b"".join(ln for ln in (block or b"").splitlines() if ln and not ln.startswith(b"-----"))
    try:
        return base64.b64decode(body)
    except (binascii.Error, ValueError):
        return b""


def _refuse_unread_name(exc: Exception, der: bytes, source: str) -> None:
    """Refuse a CSR whose name holds a string OpenSSL reads and cryptography refuses (a T61String of Latin-1
    bytes, a PrintableString with '*' or '@'), in those words and with what to ask for; nothing otherwise."""
    from certkit.name_strings import odd_name_string

    if (said := odd_name_string(der)) is not None:
        raise InvalidCSR(f"{_cap(source)} holds a certificate signing request certkit cannot read: {said}; ask "
                         "for a CSR whose names are UTF8String (openssl req -utf8 with string_mask = utf8only, "
                         "the default of OpenSSL's openssl.cnf).") from None


def _parse(data: bytes, source: str) -> "x509.CertificateSigningRequest":
    """The one CSR in ``data``: DER, or a PEM block (text around it is allowed, a second CSR is not)."""
    from cryptography import x509

    is_pem = _is_pem(data)
    block = _pem_block(data, source) if is_pem else None
    try:
        return x509.load_pem_x509_csr(block) if is_pem else x509.load_der_x509_csr(data)
    except parse_errors() as exc:
        _refuse_unread_name(exc, _der_of(block) if is_pem else data, source)
        if not is_pem:
            from certkit.material_kinds import binary_kind

            if (kind := binary_kind(data) or _der_kind(data)) is not None:
                raise InvalidCSR(f"{_cap(source)} is {kind}, not a certificate signing request.") from None
            raise InvalidCSR(f"{_cap(source)} is not a certificate signing request in PEM or DER form "
                             "(it may be truncated, or not a CSR at all).") from None
        raise InvalidCSR(f"{_cap(source)} holds a damaged certificate signing request: "
                         f"{describe_parse_error(exc)}.") from None


def _der_kind(data: bytes) -> str | None:
    """A DER certificate or CRL given as a CSR, in words."""
    from cryptography import x509

    for loader, kind in ((x509.load_der_x509_certificate, "a certificate in DER form"),
                         (x509.load_der_x509_crl, "a CRL in DER form")):
        try:
            loader(data)
            return kind
        except parse_errors():
            continue
    return None


def _is_pem(data: bytes) -> bool:
    # A DER CSR starts with a SEQUENCE whose length takes more than one octet (a CSR is over 127
    # bytes): 0x30 then a byte >= 0x80, which no text starts with.
    looks_der = data[:1] == b"\x30" and data[1:2] >= b"\x80"
    return data.lstrip().startswith(b"-----") or (b"-----BEGIN " in data and not looks_der)


def _pem_block(data: bytes, source: str) -> bytes:
    """The PEM CSR block of ``data``; refused if there are several, or none."""
    count = len(_CSR_BEGIN.findall(data))
    if count > 1:
        raise InvalidCSR(f"{_cap(source)} holds {count} certificate signing requests; give one per file.")
    blocks = list(_PEM_BLOCK.finditer(data))
    found = next((b.group(0) for b in blocks if _CSR_BEGIN.match(b.group(0))), None)
    if found is not None:
        return found
    if count:  # a BEGIN line without its END
        damage = pem_damage(data) or "its BEGIN line has no matching END line"
        raise InvalidCSR(f"{_cap(source)} holds a damaged certificate signing request: {damage}.")
    begin = re.search(rb"-----BEGIN [^\r\n]*", data) or re.search(rb"-----[^\r\n]*", data)
    label = begin.group(0).decode("ascii", "replace").strip() if begin else "(none)"
    raise InvalidCSR(f"{_cap(source)} is not a certificate signing request: it is PEM '{label}'.")


_WEAK_HASHES = {"md5": "MD5", "sha1": "SHA-1", "md2": "MD2", "md4": "MD4"}


def weak_signature(csr) -> str | None:
    """The name of a broken hash the CSR is signed with (MD5, SHA-1), else None."""
    try:
        algorithm = csr.signature_hash_algorithm
    except Exception:  # an algorithm cryptography does not know: is_signature_valid says the rest
        name = csr.signature_algorithm_oid._name.lower() if hasattr(csr.signature_algorithm_oid, "_name") else ""
        return next((label for key, label in _WEAK_HASHES.items() if name.startswith(key)), None)
    return _WEAK_HASHES.get(algorithm.name) if algorithm is not None else None


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def unchecked_key(csr) -> str | None:
    """Why no one here checks ``csr``'s signature, sound or not: its RSA key is one OpenSSL refuses
    (:func:`certkit.signatures.long_rsa_exponent`), in words; None otherwise (a key cryptography cannot read too)."""
    from certkit.signatures import long_rsa_exponent

    try:
        key = csr.public_key()
    except Exception:  # noqa: BLE001 (a key type cryptography cannot read: said where it is read)
        return None
    long = long_rsa_exponent(key)
    return f"its RSA key has {long}, so OpenSSL (and cryptography) checks no signature it makes" if long else None


def _check_key(csr, source: str) -> None:
    """certkit's key policy (:func:`certkit.keys.key_policy_problem`), which ``key=`` is held to too,
    and a key the certificate would carry unchanged: of the algorithm the CSR names."""
    try:
        public_key = csr.public_key()
    except ValueError as exc:  # numbers the library will not make a key of (cryptography 50: e=1, an even e)
        raise InvalidCSR(f"{_cap(source)} holds a public key that cannot be used ({str(exc).rstrip('.')}), "
                         "which certkit does not sign.") from None
    except Exception as exc:  # a key type or curve cryptography cannot read (SM2, a curve of its own)
        raise InvalidCSR(f"{_cap(source)} holds a public key that certkit cannot read ({str(exc).rstrip('.')}), "
                         f"which certkit does not sign: use {KEYS_CERTIFIED}.") from None
    problem = key_policy_problem(public_key) or _algorithm_change(csr, public_key)
    if problem:
        raise InvalidCSR(f"{_cap(source)} holds {problem}.")


def _algorithm_change(csr, public_key) -> str | None:
    """Why the certificate could not carry the CSR's key as it is, when cryptography reads it as a key
    of another algorithm (an RSA-PSS key as a plain RSA one: the certificate would say rsaEncryption,
    and the requester's RSA-PSS private key would no longer pair with it); None if it can. The same
    key in another encoding (an EC point compressed, a named curve spelled out) is the same key."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import PublicKeyAlgorithmOID as Algorithm

    asked = csr.public_key_algorithm_oid
    written = (Algorithm.RSAES_PKCS1_v1_5 if isinstance(public_key, rsa.RSAPublicKey)
               else Algorithm.EC_PUBLIC_KEY if isinstance(public_key, ec.EllipticCurvePublicKey) else Algorithm.ED25519)
    if asked == written:
        return None
    what, fix = f"a key of algorithm {_oid_name(asked)}", f"use {KEYS_CERTIFIED}"
    if asked == Algorithm.RSASSA_PSS:
        what = "an RSA-PSS key (id-RSASSA-PSS)"
        fix = "make a plain RSA key (openssl req -newkey rsa:2048), or an ECDSA or Ed25519 one"
    return (f"{what}, which certkit does not sign: it certifies rsaEncryption, EC and Ed25519 keys, and a "
            f"certificate naming this key {_oid_name(written)} would not pair with its private key (servers "
            f"refuse the pair); {fix}")


def san_text(kind: str, value: str) -> str:
    """A SAN entry of :attr:`CSRRequest.san` as certkit writes SAN entries everywhere (``DNS:x``, ``IP:y``)."""
    from certkit.vocabulary import SAN_LABELS

    return f"{SAN_LABELS[kind]}:{value}" if kind in SAN_LABELS else value


def _general_name(gn) -> tuple[str, str]:
    from certkit.vocabulary import general_name_text, san_kind

    kind = san_kind(gn)
    if kind is None:  # in OpenSSL's words (DirName:CN=x), as certkit names SAN entries everywhere
        return "other", general_name_text(gn)
    return kind, str(gn.value)


def describe_extension(ext) -> str:
    """One line naming a requested extension and its value, e.g. ``basicConstraints CA:TRUE``."""
    from cryptography import x509

    value = ext.value
    if isinstance(value, x509.BasicConstraints):
        text = "CA:TRUE" if value.ca else "CA:FALSE"
        if value.path_length is not None:
            text += f", pathlen:{value.path_length}"
        return f"basicConstraints {text}"
    if isinstance(value, x509.KeyUsage):
        from certkit.vocabulary import key_usage_names

        return "keyUsage " + ", ".join(key_usage_names(value))
    if isinstance(value, x509.ExtendedKeyUsage):
        return "extendedKeyUsage " + ", ".join(_oid_name(oid) for oid in value)
    if isinstance(value, x509.NameConstraints):
        parts = [f"permitted {gn.value}" for gn in value.permitted_subtrees or []]
        parts += [f"excluded {gn.value}" for gn in value.excluded_subtrees or []]
        return "nameConstraints " + ", ".join(parts)
    return _oid_name(ext.oid)


def _oid_name(oid) -> str:
    from certkit.vocabulary import oid_name

    return oid_name(oid)


def compare_extensions(request: CSRRequest, cert: "x509.Certificate") -> tuple[list[str], list[str]]:
    """(granted, dropped): the requested extensions the certificate carries exactly (value and
    criticality), and the others, each saying what the certificate has instead."""
    from cryptography import x509

    granted, dropped = [], []
    issued = {ext.oid: ext for ext in cert.extensions}
    for ext in request.csr.extensions:
        if ext.oid == _SAN_OID():
            continue
        described, given = describe_extension(ext), issued.get(ext.oid)
        if given is None:
            dropped.append(f"{described} (not in the certificate)")
        elif given.value != ext.value:
            has = describe_extension(x509.Extension(ext.oid, False, given.value))
            dropped.append(f"{described} (the certificate has {has.split(' ', 1)[-1]})")
        elif given.critical != ext.critical:  # the same value, but read differently by a verifier
            dropped.append(f"{described}, {_criticality(ext.critical)} (the certificate has it, "
                           f"{_criticality(given.critical)})")
        else:
            granted.append(described)
    return granted, dropped


def _criticality(critical: bool) -> str:
    return "critical" if critical else "not critical"


def _SAN_OID():  # noqa: N802
    from cryptography.x509.oid import ExtensionOID

    return ExtensionOID.SUBJECT_ALTERNATIVE_NAME
