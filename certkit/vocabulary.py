"""The one way certkit names X.509 facts in words: serials, common names, SAN entries, key usages and extended key
usages (and what stands where a file should be).

Every module that shows or stores such a fact (the inventory, inspect, verify, serve, sign-csr, list) takes it from
here, so they never disagree: a SAN entry is ``DNS:``, ``IP:``, ``email:``, ``URI:`` or ``DirName:`` (OpenSSL's
labels), a key usage has its RFC 5280 name, a serial is printed as OpenSSL prints it. Values are returned raw; escape
them with :func:`certkit.text.shown` before they reach a terminal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datetime as dt

    from cryptography import x509

# RFC 5280 names of the extendedKeyUsage purposes people meet.
EKU_NAMES = {
    "1.3.6.1.5.5.7.3.1": "serverAuth",
    "1.3.6.1.5.5.7.3.2": "clientAuth",
    "1.3.6.1.5.5.7.3.3": "codeSigning",
    "1.3.6.1.5.5.7.3.4": "emailProtection",
    "1.3.6.1.5.5.7.3.8": "timeStamping",
    "1.3.6.1.5.5.7.3.9": "OCSPSigning",
    "2.5.29.37.0": "anyExtendedKeyUsage",
}
SERVER_AUTH, CLIENT_AUTH = "serverAuth", "clientAuth"

# RFC 5280 4.2.1.3 names, in the order of the bit string; cryptography's attribute for each.
KEY_USAGE_NAMES = (
    ("digitalSignature", "digital_signature"), ("nonRepudiation", "content_commitment"),
    ("keyEncipherment", "key_encipherment"), ("dataEncipherment", "data_encipherment"),
    ("keyAgreement", "key_agreement"), ("keyCertSign", "key_cert_sign"), ("cRLSign", "crl_sign"),
)


def iso(when: "dt.datetime") -> str:
    """A moment as certkit writes it everywhere (the inventory, every --json): ISO 8601 UTC to the
    second with a Z, sortable as text (spelled out: twice as fast as strftime, and a batch writes two
    per certificate)."""
    import datetime as dt

    when = when.astimezone(dt.UTC)
    # %-formatting: half the time of an f-string with format specs here
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (  # noqa: UP031
        when.year, when.month, when.day, when.hour, when.minute, when.second)


def moment_text(stored: str) -> str:
    """A moment as stored (:func:`iso`) as certkit says it to people: ``2026-12-01 16:04:53 UTC``."""
    text = str(stored)
    if len(text) == 20 and text[10] == "T" and text.endswith("Z"):
        return f"{text[:10]} {text[11:19]} UTC"
    return text  # not certkit's form (a damaged row): shown as it is


def colons(hex_text: str) -> str:
    """A fingerprint as people compare it (``AB:CD:...``, as openssl prints it); --json keeps plain
    lowercase hex, as the inventory does."""
    return ":".join(hex_text[i:i + 2] for i in range(0, len(hex_text), 2)).upper()


def serial_hex(serial: int) -> str:
    """A serial as OpenSSL prints it: uppercase hex, whole octets (a negative one, made elsewhere: ``-05``)."""
    text = format(abs(serial), "X")
    return ("-" if serial < 0 else "") + ("0" + text if len(text) % 2 else text)


def normalize_serial(text: str) -> str | None:
    """``text`` as :func:`serial_hex` writes it, or None if it is not hex.

    Accepts what people copy: ``serial=0A1B...``, colon-separated octets, octets
    separated by spaces (as Windows' certificate dialog and macOS Keychain show a
    serial), a ``0x`` prefix, lower case, missing or extra leading zeros.
    """
    text = serial_digits(text)
    return serial_hex(int(text, 16)) if text is not None else None


def serial_digits(text: str) -> str | None:
    """The hex digits of ``text`` as typed (upper case, without ``serial=``, ``0x``, colons or spaces): a
    prefix of a serial as ``certkit list`` shows it, which :func:`normalize_serial` would pad to
    whole octets; None if it is not hex."""
    text = text.strip()
    for prefix in ("serial=", "0x", "0X"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    text = "".join(text.replace(":", " ").split())  # 5b:c8:46, or 5b c8 46 as Windows and Keychain show it
    if not text or len(text) > 80 or any(ch not in "0123456789abcdefABCDEF" for ch in text):
        return None
    return text.upper()


def wrong_type(what: str, expected: str, value, *, secret: bool = False) -> TypeError:
    """The TypeError (:class:`certkit.errors.WrongType`, a CertkitError too) for a library argument of
    the wrong type, naming what was given: ``names must be str, got bytes b'localhost'`` (not a failure
    deep inside, or a false message); only its type if it may be ``secret`` (tracebacks reach CI logs)."""
    from certkit.errors import WrongType

    given = "None" if value is None else f"{type(value).__name__} {_short_repr(value, secret)}"
    return WrongType(f"{what} must be {expected}, got {given}")


def check_bool(what: str, value) -> bool:
    """``value`` if it is a bool; anything else (``force="no"``, which Python would take as true) is
    :func:`wrong_type`, naming ``what``."""
    if not isinstance(value, bool):
        raise wrong_type(what, "a bool (True or False)", value)
    return value


def _short_repr(value, secret: bool = False) -> str:
    try:
        text = "(not shown: it may be a secret)" if secret else repr(value)
    except Exception:  # a broken __repr__ must not hide the real mistake
        text = "<unprintable>"
    return text if len(text) <= 60 else text[:57] + "..."


def serial_argument(serial) -> str:
    """A serial given to the library (:meth:`certkit.ca.CA.revoke`) as :func:`serial_hex` writes it: text
    as :func:`normalize_serial` reads it, or the int ``cert.serial_number``."""
    from certkit.errors import UnknownCertificate
    from certkit.text import shown

    if isinstance(serial, int) and not isinstance(serial, bool):
        if serial < 1:
            raise UnknownCertificate(f"{serial} is not a serial number: certkit's serials are positive.")
        return serial_hex(serial)
    if not isinstance(serial, str):
        raise wrong_type("serial", "a str of hex digits or an int", serial)
    text = normalize_serial(serial)
    if text is None:
        raise UnknownCertificate(f"'{shown(serial)}' is not a serial number: give its hex digits, as 'certkit "
                                 "list' or 'openssl x509 -serial' shows them.")
    return text


def common_name(name: "x509.Name") -> str | None:
    """A subject's or issuer's common name, or None; of several, the first, as PostgreSQL and Mosquitto map it."""
    from cryptography.x509.oid import NameOID

    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def dn_text(name: "x509.Name") -> str:
    """A distinguished name as RFC 4514 text (``CN=alice,O=Example``); "" if it has none. The attributes
    cryptography leaves as bare OIDs (1.2.840.113549.1.9.1=...) get OpenSSL's names (emailAddress=...)."""
    from cryptography.x509 import ObjectIdentifier

    return name.rfc4514_string({ObjectIdentifier(oid): label for oid, label in _ATTRIBUTE_NAMES.items()})


def attribute_text(attr: "x509.NameAttribute") -> str:
    """One attribute of a distinguished name as :func:`dn_text` writes it (``emailAddress=a@example.com``)."""
    from cryptography.x509 import ObjectIdentifier

    return attr.rfc4514_string({ObjectIdentifier(oid): label for oid, label in _ATTRIBUTE_NAMES.items()})


def name_text(name: "x509.Name") -> str:
    """A distinguished name as :func:`dn_text` writes it; ``(empty)`` if it has none."""
    return dn_text(name) or "(empty)"


# Subject attributes RFC 4514 gives no short name, so cryptography writes their OID: the names OpenSSL
# (and RFC 4519) give them (OpenSSL's long ones where its short one is unclear: surname, not SN).
_ATTRIBUTE_NAMES = {
    "1.2.840.113549.1.9.1": "emailAddress", "2.5.4.5": "serialNumber", "2.5.4.4": "surname",
    "2.5.4.12": "title", "2.5.4.13": "description", "2.5.4.15": "businessCategory", "2.5.4.16": "postalAddress",
    "2.5.4.17": "postalCode", "2.5.4.18": "postOfficeBox", "2.5.4.20": "telephoneNumber", "2.5.4.41": "name",
    "2.5.4.42": "givenName", "2.5.4.43": "initials", "2.5.4.44": "generationQualifier",
    "2.5.4.45": "x500UniqueIdentifier", "2.5.4.46": "dnQualifier", "2.5.4.65": "pseudonym", "2.5.4.72": "role",
    "2.5.4.97": "organizationIdentifier", "1.2.840.113549.1.9.2": "unstructuredName",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionLocalityName",
    "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionStateOrProvinceName",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionCountryName",
}
# Extensions cryptography has no name for, as OpenSSL's configuration and x509 -text name them, and
# the two Microsoft ones every Windows certreq CSR asks for (a template by name, v1, or by OID, v2).
_EXTENSION_NAMES = {
    "2.16.840.1.113730.1.1": "nsCertType", "2.16.840.1.113730.1.13": "nsComment",
    "1.2.840.113549.1.9.15": "smimeCapabilities", "1.3.6.1.4.1.311.20.2": "msCertificateTemplateName",
    "1.3.6.1.4.1.311.21.7": "msCertificateTemplate", "1.3.6.1.4.1.311.21.10": "msApplicationPolicies",
}
NS_CERT_TYPE_OID = "2.16.840.1.113730.1.1"
# The Netscape certificate types (nsCertType), bit 0 first, as OpenSSL's configuration names them.
# OpenSSL's purpose check still honours it: a leaf with the extension is refused for a TLS server
# without "server", for a TLS client without "client" ("unsuitable certificate purpose").
NS_CERT_TYPES = ("client", "server", "email", "objsign", "reserved", "sslCA", "emailCA", "objCA")


def oid_name(oid) -> str:
    """The name of an extension or attribute OID (``nsCertType``, ``emailAddress``, ``keyUsage``); the
    dotted OID when neither certkit nor cryptography has one."""
    dotted = oid.dotted_string
    name = _EXTENSION_NAMES.get(dotted) or _ATTRIBUTE_NAMES.get(dotted) or getattr(oid, "_name", None)
    return name if name and name != "Unknown OID" else dotted


def ns_cert_type(cert) -> list[str] | None:
    """The Netscape certificate types ``cert`` asserts (nsCertType), by :data:`NS_CERT_TYPES` name; None
    without the extension. As OpenSSL, only the first octet counts; an empty or unreadable value asserts
    no type (OpenSSL then refuses every purpose)."""
    ext = next((e for e in cert.extensions if e.oid.dotted_string == NS_CERT_TYPE_OID), None)
    if ext is None:
        return None
    der = getattr(ext.value, "value", b"")  # an UnrecognizedExtension: the DER of a BIT STRING
    if len(der) < 4 or der[0] != 0x03 or der[1] != len(der) - 2:
        return []
    return [name for bit, name in enumerate(NS_CERT_TYPES) if der[3] & (0x80 >> bit)]


def file_kind_text(path) -> str:
    """What ``path``, there but no regular file of its own, is: "a folder, not a file", "a symbolic link to X, which
    does not exist", "a loop of symbolic links", "a device or other special file", "a symbolic link to X" (a file)."""
    import errno
    import os

    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a loop of symbolic links"
        try:
            return f"a symbolic link to {os.readlink(path)}, which does not exist"
        except OSError:
            return "a symbolic link that leads nowhere"
    if os.path.isdir(path):
        return "a folder, not a file"
    if os.path.isfile(path) and os.path.islink(path):
        return f"a symbolic link to {os.readlink(path)}, not a file of its own"
    link = f" (a symbolic link to {os.readlink(path)})" if os.path.islink(path) else ""
    return f"a device or other special file{link}, not a file"


def absent_text(path) -> str:
    """Why ``path`` is no regular file to read, in words: "is missing", or "is a folder, not a file"..."""
    import os

    return f"is {file_kind_text(path)}" if os.path.lexists(path) else "is missing"


# OpenSSL's label for each kind of SAN entry certkit issues (the kinds of csr.CSRRequest.san).
SAN_LABELS = {"dns": "DNS", "ip": "IP", "email": "email", "uri": "URI"}


def san_kind(gn: "x509.GeneralName") -> str | None:
    """The kind of a SAN entry certkit issues (``dns``, ``ip``, ``email``, ``uri``), else None."""
    from cryptography import x509

    return {x509.DNSName: "dns", x509.IPAddress: "ip", x509.RFC822Name: "email",
            x509.UniformResourceIdentifier: "uri"}.get(type(gn))


def general_name_text(gn: "x509.GeneralName") -> str:
    """One SAN entry: ``DNS:host``, ``IP:addr``, ``email:a@b``, ``URI:u``, ``DirName:CN=x``, and as
    OpenSSL prints the rarer ones: ``Registered ID:1.2.3``, ``othername:UPN:a@b``."""
    from cryptography import x509

    kind = san_kind(gn)
    if kind is not None:
        return f"{SAN_LABELS[kind]}:{gn.value}"
    if isinstance(gn, x509.DirectoryName):
        return f"DirName:{gn.value.rfc4514_string()}"
    if isinstance(gn, x509.RegisteredID):
        return f"Registered ID:{gn.value.dotted_string}"
    if isinstance(gn, x509.OtherName):
        return f"othername:{OTHER_NAMES.get(gn.type_id.dotted_string, gn.type_id.dotted_string)}:{_der_text(gn.value)}"
    return f"{type(gn).__name__}:{gn.value!r}"


def _der_text(der: bytes) -> str:
    """An otherName's value: the text of a DER string (UTF8String, IA5String, ...), else ``#`` and its
    DER in hex (RFC 4514's way of writing a value that is not a string)."""
    tag, length, start = der[:1], der[1:2], 2
    if length and length[0] & 0x80:  # long form: the next (length & 0x7F) octets hold the length
        count = length[0] & 0x7F
        length, start = der[2:2 + count], 2 + count
    if tag in _DER_STRINGS and length and int.from_bytes(length, "big") == len(der) - start:
        try:
            return der[start:].decode(_DER_STRINGS[tag])
        except UnicodeDecodeError:
            pass
    return "#" + der.hex()


# The otherName forms OpenSSL names (x509v3 "othername: UPN::a@b"); any other is shown by its OID.
OTHER_NAMES = {
    "1.3.6.1.4.1.311.20.2.3": "UPN", "1.3.6.1.5.5.7.8.9": "SmtpUTF8Mailbox", "1.3.6.1.5.5.7.8.5": "XmppAddr",
    "1.3.6.1.5.5.7.8.7": "SRVName", "1.3.6.1.5.5.7.8.8": "NAIRealm",
}
# DER string types and how their octets read: UTF8String, PrintableString, IA5String, VisibleString, BMPString.
_DER_STRINGS = {b"\x0c": "utf-8", b"\x13": "ascii", b"\x16": "ascii", b"\x1a": "ascii", b"\x1e": "utf-16-be"}


def san_entries(cert_or_csr) -> list[str]:
    """Every subjectAltName entry of a certificate or CSR, as :func:`general_name_text` writes it."""
    from cryptography import x509

    try:
        san = cert_or_csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [general_name_text(gn) for gn in san]


def key_usage_names(ku: "x509.KeyUsage") -> list[str]:
    """The RFC 5280 names of the bits set in a keyUsage value."""
    names = [name for name, attr in KEY_USAGE_NAMES if getattr(ku, attr)]
    if ku.key_agreement:  # encipherOnly/decipherOnly are defined only with keyAgreement
        names += [name for name, attr in (("encipherOnly", "encipher_only"), ("decipherOnly", "decipher_only"))
                  if getattr(ku, attr)]
    return names


def eku_name(oid) -> str:
    """``serverAuth`` for 1.3.6.1.5.5.7.3.1; the dotted OID for purposes without a name here."""
    return EKU_NAMES.get(oid.dotted_string, oid.dotted_string)


def eku_names(cert) -> list[str] | None:
    """The extendedKeyUsage purposes of ``cert`` by name; None if it has no such extension."""
    from cryptography import x509

    try:
        return [eku_name(o) for o in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value]
    except x509.ExtensionNotFound:
        return None


def leaf_kind(cert) -> str:
    """What certkit calls a certificate: ``ca``, ``server``, ``client``, ``peer`` or ``unknown``."""
    from cryptography import x509

    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return "ca"
    except x509.ExtensionNotFound:
        pass
    ekus = eku_names(cert)
    if ekus is None:
        return "unknown"
    return {(SERVER_AUTH,): "server", (CLIENT_AUTH,): "client"}.get(tuple(ekus)) or (
        "peer" if sorted(ekus) == [CLIENT_AUTH, SERVER_AUTH] else "unknown")


def is_ca(cert) -> bool:
    """Whether ``cert`` says it is a CA (basicConstraints CA:TRUE); no basicConstraints is not one."""
    from cryptography import x509

    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False
