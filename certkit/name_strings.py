"""Name strings OpenSSL reads and cryptography refuses: why a certificate or CSR certkit cannot read is not damaged.

Old CAs, Windows and ``openssl req`` with ``string_mask = default`` write subject attributes as a T61String of
Latin-1 bytes (``O=Müller``), an IA5String with 8-bit bytes, or a PrintableString holding characters outside its
alphabet (``CN=*.example.com``, an e-mail address with ``@``, ``_``). OpenSSL (so nginx, curl, Python's ssl) reads
them; cryptography's parser refuses the whole name ("a field holds an invalid value"). :func:`odd_name_string`
finds such a string in the DER of a certificate or CSR, walking it with a minimal DER reader (no cryptography:
it is what cannot be parsed there), so that the message says what it is instead of calling the file damaged.

A certificate's TLS Feature extension (RFC 7633) naming a feature other than status_request (5) and
status_request_v2 (17), or none, is the same: OpenSSL reads and serves it, cryptography raises (KeyError,
TypeError) on reading any of its extensions; :func:`odd_name_string` says that too.
"""

from __future__ import annotations

# PrintableString's alphabet (X.680 41.4): letters, digits, space and ' ( ) + , - . / : = ?
_PRINTABLE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?")
_TYPES = {0x13: "PrintableString", 0x14: "T61String", 0x16: "IA5String"}


def _element(der: bytes, at: int) -> tuple[int, int, int] | None:
    """(tag, start of content, end of content) of the DER element at ``at``; None when it does not fit."""
    if at + 2 > len(der):
        return None
    tag, first = der[at], der[at + 1]
    at += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if not 0 < count <= 4 or at + count > len(der):
            return None
        length = int.from_bytes(der[at:at + count], "big")
        at += count
    return (tag, at, at + length) if at + length <= len(der) else None


def _children(der: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    found, at = [], start
    while at < end:
        element = _element(der, at)
        if element is None or element[2] > end:
            return found
        found.append(element)
        at = element[2]
    return found


def _odd(tag: int, value: bytes) -> str | None:
    """Why cryptography refuses ``value`` of the string type ``tag`` that OpenSSL reads, or None."""
    if tag == 0x13 and not set(value) <= _PRINTABLE:
        odd = "".join(sorted({chr(b) for b in value if b not in _PRINTABLE}))
        return f"characters outside that type's alphabet ({odd!r})"
    if tag in (0x14, 0x16) and any(b >= 0x80 for b in value):
        return "8-bit bytes (Latin-1 text, as OpenSSL shows it)"
    return None


def odd_name_string(der: bytes) -> str | None:
    """Of a DER certificate or CSR: which name holds a string OpenSSL reads and cryptography refuses, in words
    (``its subject holds a T61String 'Müller' with 8-bit bytes ...``); None when none does."""
    from certkit.text import shown

    outer = _element(der, 0)
    if outer is None:
        return None
    body = _children(der, outer[1], outer[2])
    if not body:
        return None
    info = _children(der, body[0][1], body[0][2])  # TBSCertificate, or a CSR's CertificationRequestInfo
    if not info:
        return None
    shows = "openssl x509 -text"
    if info[0][0] == 0x02 and len(info) >= 2 and info[1][0] == 0x30 and len(info) <= 4:  # a CSR: version, subject
        names, shows = [("subject", info[1])], "openssl req -text"
    else:
        first = 1 if info[0][0] == 0xA0 else 0  # [0] version, serial, signature, issuer, validity, subject
        names = [(label, info[first + offset]) for label, offset in (("issuer", 2), ("subject", 4))
                 if first + offset < len(info)]
    if shows == "openssl x509 -text" and (said := _odd_tls_feature(der, info)) is not None:
        return said
    for label, (_tag, start, end) in names:
        for _set, set_start, set_end in _children(der, start, end):
            for _seq, seq_start, seq_end in _children(der, set_start, set_end):
                parts = _children(der, seq_start, seq_end)
                if len(parts) != 2 or parts[1][0] not in _TYPES:
                    continue
                value = der[parts[1][1]:parts[1][2]]
                if (why := _odd(parts[1][0], value)) is not None:
                    return (f"its {label} name holds a {_TYPES[parts[1][0]]} '{shown(value.decode('latin-1'))}' "
                            f"with {why}, which OpenSSL (and so nginx, curl, Python's ssl) reads but cryptography, "
                            f"which certkit reads certificates with, refuses ({shows} shows it)")
    return None


_TLS_FEATURE = bytes.fromhex("2b06010505070118")  # 1.3.6.1.5.5.7.1.24, TLS Feature (RFC 7633)
_FEATURES = {5: "status_request (5)", 17: "status_request_v2 (17)"}  # the two cryptography knows


def _odd_tls_feature(der: bytes, info: list[tuple[int, int, int]]) -> str | None:
    """Why cryptography refuses a certificate's TLS Feature extension that OpenSSL reads (a feature other than
    status_request and status_request_v2, or none at all: it raises on reading any extension), or None."""
    extensions = next((element for element in info if element[0] == 0xA3), None)
    outer = _children(der, extensions[1], extensions[2]) if extensions else []
    for _seq, start, end in _children(der, outer[0][1], outer[0][2]) if outer else []:
        parts = _children(der, start, end)
        if len(parts) < 2 or parts[0][0] != 0x06 or der[parts[0][1]:parts[0][2]] != _TLS_FEATURE:
            continue
        value = _children(der, parts[-1][1], parts[-1][2])
        items = _children(der, value[0][1], value[0][2]) if value and value[0][0] == 0x30 else []
        numbers = [int.from_bytes(der[a:b], "big", signed=True) for tag, a, b in items if tag == 0x02 and b > a]
        if len(numbers) != len(items) or (numbers and set(numbers) <= set(_FEATURES)):
            return None  # damaged, or what cryptography reads
        named = ", ".join(_FEATURES.get(n, str(n)) for n in numbers)
        return ("its TLS Feature extension (1.3.6.1.5.5.7.1.24) names "
                + (f"{named}: cryptography, which certkit reads certificates with, knows only status_request (5) "
                   "and status_request_v2 (17)" if numbers else "no feature (an empty list), which cryptography, "
                   "which certkit reads certificates with, refuses")
                + " (openssl x509 -text shows it); Firefox refuses every server presenting it whatever it staples "
                "(MOZILLA_PKIX_ERROR_REQUIRED_TLS_FEATURE_MISSING: mozilla::pkix processes status_request alone); "
                "curl, OpenSSL, Python's ssl and Chrome ignore the extension")
    return None
