"""Inventory rows as Python values, each field checked: a damaged row is named, never a traceback.

A row read from the database becomes a plain dict (the shape ``certkit list
--json`` prints); anything that does not parse (a date, the names JSON, a
status, the certificate DER) raises :class:`~certkit.errors.DamagedRow` naming
its serial and what is wrong with it.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING, Any, NamedTuple

from certkit.constants import RECORDED_REASONS
from certkit.errors import DamagedRow, loads_json
from certkit.inventory.schema import STATUSES
from certkit.vocabulary import iso  # noqa: F401 (the inventory's form of a moment, imported from here too)

if TYPE_CHECKING:
    from cryptography import x509

# The columns of a row, in the order every SELECT of a whole row names them.
COLUMNS = ("serial", "kind", "subject", "names", "not_before", "not_after", "fingerprint_sha256", "status",
           "revoked_at", "revocation_reason", "renewed_from", "issued_at", "folder", "sink", "writer", "keyed")
SELECT_ROW = "SELECT " + ", ".join(COLUMNS) + " FROM certificates"
_DATES = ("not_before", "not_after", "issued_at")
ISO = "%Y-%m-%dT%H:%M:%SZ"


class Facts(NamedTuple):
    """What a row says about its certificate, taken from the certificate once: the issuing pipeline
    records these and a batch's JSON lines and Secrets print them (:func:`facts_of`)."""

    serial: str
    subject: str  # RFC 4514
    names: list[str]  # the SAN entries, as certkit.vocabulary.san_entries writes them
    not_before: str  # ISO, as iso() writes it
    not_after: str
    fingerprint: str  # SHA-256 of the DER, lowercase hex
    der: bytes


_PLAIN_VALUE = re.compile(r"[A-Za-z0-9._*-]+\Z")  # nothing RFC 4514 escapes, anywhere in a value


def subject_text(name: "x509.Name") -> str:
    """``name.rfc4514_string()``, with the usual leaf subject (one CN of a host name's characters)
    spelled out directly: cryptography's general code is a tenth of a batch certificate's time."""
    from cryptography.x509.oid import NameOID

    rdns = name.rdns
    if len(rdns) == 1 and len(rdns[0]) == 1:
        (attr,) = rdns[0]
        if attr.oid == NameOID.COMMON_NAME and isinstance(attr.value, str) and _PLAIN_VALUE.match(attr.value):
            return "CN=" + attr.value
    return name.rfc4514_string()


def facts_of(cert: "x509.Certificate", names: list[str] | None = None, subject: "x509.Name | None" = None) -> Facts:
    """The :class:`Facts` of ``cert``; ``names`` and ``subject`` (the x509.Name it was built with) when
    the caller knows them already (parsing the subject back out of the certificate costs more)."""
    import hashlib

    from cryptography.hazmat.primitives.serialization import Encoding

    from certkit.vocabulary import san_entries, serial_hex

    der = cert.public_bytes(Encoding.DER)
    return Facts(serial_hex(cert.serial_number), subject_text(subject if subject is not None else cert.subject),
                 names if names is not None else san_entries(cert), iso(cert.not_valid_before_utc),
                 iso(cert.not_valid_after_utc), hashlib.sha256(der).hexdigest(), der)


def parse_iso(text: str) -> dt.datetime:
    """A time as :func:`iso` writes it (``2026-11-30T20:43:09Z``); anything else is a ValueError.
    (strptime took a fifth of the time of reading a large inventory.)"""
    if not isinstance(text, str) or len(text) != 20 or text[10] != "T" or text[19] != "Z" or not text.isascii():
        raise ValueError(f"time data {text!r} does not match format {ISO!r}")
    return dt.datetime.fromisoformat(text[:19]).replace(tzinfo=dt.UTC)


def row_dict(values: tuple) -> dict[str, Any]:
    """One database row as a dict, every field checked."""
    row = dict(zip(COLUMNS, values, strict=True))
    serial = row["serial"]
    if not isinstance(serial, str) or not serial:
        raise DamagedRow(repr(serial), "the serial is not text")
    for column in _DATES + (("revoked_at",) if row["revoked_at"] is not None else ()):
        value = row[column]
        try:
            parse_iso(value)
        except (TypeError, ValueError):
            raise DamagedRow(serial, f"{column} is {_short(value)}, not a date") from None
    try:
        names = loads_json(row["names"])
    except (TypeError, ValueError):
        raise DamagedRow(serial, f"names is {_short(row['names'])}, not a JSON list") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DamagedRow(serial, "names is not a list of strings")
    row["names"] = names
    if row["status"] not in STATUSES:
        raise DamagedRow(serial, f"status is {_short(row['status'])}")
    if row["status"] == "revoked" and row["revoked_at"] is None:
        raise DamagedRow(serial, "it is revoked but has no revocation date")
    if row["status"] == "revoked" and row["revocation_reason"] not in (None, *RECORDED_REASONS):
        raise DamagedRow(serial, f"revocation_reason is {_short(row['revocation_reason'])}, which no CRL can state")
    row["keyed"] = bool(row["keyed"])
    return row


def load_der(serial: str, der) -> Any:
    """The certificate a row holds; :class:`DamagedRow` if its DER does not parse or is not ``serial``."""
    from cryptography import x509

    from certkit.errors import parse_errors
    from certkit.vocabulary import serial_hex

    try:
        cert = x509.load_der_x509_certificate(bytes(der))
        ok = serial_hex(cert.serial_number) == serial
    except (*parse_errors(), TypeError):
        raise DamagedRow(serial, "its certificate (DER) does not parse") from None
    if not ok:
        raise DamagedRow(serial, "its certificate (DER) has another serial")
    return cert


def _short(value: Any) -> str:
    from certkit.text import shown

    text = repr(value)
    return shown(text if len(text) <= 40 else text[:37] + "...")


def subject_attributes(subject: str) -> list[tuple[str, str]]:
    """The (type, value) pairs of an RFC 4514 subject as the inventory stores it (``CN=Smith\\,
    John,O=Lab``): types as written (``CN``, ``O``, a dotted OID), values with their escapes undone,
    so a comma or an ``=`` inside a value never splits it."""
    if not any(ch in subject for ch in '\\+"#'):  # nothing escaped or multi-valued: a plain split is exact
        return [(kind, value) for kind, _, value in (part.partition("=") for part in subject.split(",") if part)]
    from cryptography import x509

    try:
        name = x509.Name.from_rfc4514_string(subject)
    except ValueError:  # not RFC 4514 (a damaged row): its text as one value
        return [("", subject)]
    return [(attr.rfc4514_attribute_name, attr.value if isinstance(attr.value, str) else attr.value.hex())
            for attr in name]


def subject_common_names(subject: str) -> list[str]:
    """The common names of an RFC 4514 subject (see :func:`subject_attributes`)."""
    return [value for kind, value in subject_attributes(subject) if kind.upper() == "CN"]


def name_patterns(name: str) -> tuple[str, ...]:
    """The glob ``name`` (``list --name``, ``renew --name``, ``renew NAME``) in the forms issuing stores names in:
    lower case, NFC, without surrounding blanks or a final dot; an IP address as issuing writes it (IPv6
    compressed: 0:0:0:0:0:0:0:1 is stored as ::1); and, with non-ASCII DNS labels (an email's domain's too),
    with those labels as A-labels (café.example is stored as xn--caf-dma.example), beside the text itself (a
    client's CN, José, is stored as it is)."""
    import ipaddress
    import unicodedata

    text = unicodedata.normalize("NFC", name.strip()).lower()
    if text.endswith(".") and not text.endswith("..") and text[-2:-1] not in ("", "*", "?", "]"):
        text = text[:-1]  # a host name's final dot (not after a glob character: "*." names none)
    found = [text]
    try:
        found.append(str(ipaddress.ip_address(text)))
    except ValueError:
        pass  # not an address (a host name, a glob, a CN)
    if not text.isascii():  # cn=café.example too: the value after the attribute's name
        import idna

        attribute, equals, value = text.rpartition("=")
        local, at, domain = value.rpartition("@")
        labels = []
        for label in domain.split("."):
            if not label.isascii() and not any(ch in label for ch in "*?["):
                try:
                    label = idna.encode(label, uts46=True).decode("ascii")
                except (idna.IDNAError, UnicodeError):
                    pass
            labels.append(label)
        found.append(attribute + equals + local + at + ".".join(labels))
    return tuple(dict.fromkeys(found))


def name_match(pattern: str | tuple[str, ...], subject: str, names_json: str) -> bool:
    """Whether the glob ``pattern`` (lower case; or any of several: :func:`name_patterns`) matches one of the
    subject's attribute values or a SAN value (compared in NFC); used as an SQL function on SQLite and in
    Python elsewhere. A pattern equal to a name matches it, glob or not (``bob[1]`` is the name bob[1], and the glob
    that matches bob1). The subject as a whole (``cn=alice,o=lab``) is matched only by a pattern that names an
    attribute (holds ``=``): otherwise ``c*`` would match every ``CN=`` subject."""
    import fnmatch
    import unicodedata

    patterns = (pattern,) if isinstance(pattern, str) else pattern
    pattern = patterns[0]
    candidates = [value.lower() for _kind, value in subject_attributes(subject)]
    if "=" in pattern:
        candidates.append(subject.lower())
    try:
        names = loads_json(names_json)
    except (TypeError, ValueError):
        names = []
    for entry in names:
        if isinstance(entry, str) and ":" in entry:
            kind, value = entry.split(":", 1)
            if kind == "DirName":  # a name like the subject: its values, the whole only as above
                candidates += [v.lower() for _k, v in subject_attributes(value)]
                if "=" not in pattern:
                    continue
            candidates.append(value.lower())
    candidates = [c if c.isascii() else unicodedata.normalize("NFC", c) for c in candidates]
    if not all(p.isascii() for p in patterns):  # a glob in a label typed in Unicode ('bü*') meets U-labels
        candidates += [u for c in candidates if "xn--" in c and (u := _u_labels(c)) != c]
    # a name that holds a glob's brackets (CN=Device [lab]) matches itself too, not only what its [...] class matches
    return any(c == p or fnmatch.fnmatchcase(c, p) for c in candidates for p in patterns)


def _u_labels(value: str) -> str:
    """``value`` (a DNS name, an email, a CN, a whole subject) with its A-labels (``xn--bcher-kva``) as the U-labels
    they encode (``bücher``), in NFC, as a name typed in Unicode is written; one that is no valid A-label stays."""
    import re

    import idna

    def decoded(label: re.Match) -> str:
        try:
            return idna.decode(label.group(0))
        except (idna.IDNAError, UnicodeError):
            return label.group(0)

    return re.sub(r"(?<![a-z0-9-])xn--[a-z0-9-]+", decoded, value)
