"""Finding issued certificates by serial, name or bundle folder; writing CRLs.

``certkit renew`` and ``certkit revoke`` take what a user has at hand: the
serial openssl printed, the name the certificate was issued for, or the
folder its files are in. :func:`find_certificate` turns any of those into one
inventory entry (or a clear error when it names none, or several).
Renewing the certificate found is :mod:`certkit.renewal`'s.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.ca_checks import decimal_hint
from certkit.constants import CERT_FILE, MAX_CERT_FILE_BYTES
from certkit.crl_file import check_crl_target, crl_bytes, write_crl  # noqa: F401 (certkit crl imports them here)
from certkit.errors import CertkitError, UnknownCertificate, UnreadableFile
from certkit.files import is_regular_file
from certkit.folder_record import (
    many_in_a_file,
    not_in_inventory,
    read_bundle_cert,
    refuse_folder_without_cert,
)
from certkit.formats.reading import output_file_certificates
from certkit.names import _show  # a name's text as names' messages show it (no URL's password)
from certkit.text import shown
from certkit.vocabulary import normalize_serial, serial_digits, serial_hex

if TYPE_CHECKING:
    from cryptography import x509

    from certkit.inventory import Inventory

# A serial prefix shorter than this is too likely to be a typo that matches something.
MIN_SERIAL_PREFIX = 8


@dataclass
class Found:
    """One certificate of the inventory, and the folder that holds its bundle (if known)."""

    serial: str
    row: dict
    cert: "x509.Certificate"
    folder: Path | None
    successors: list[str] = field(default_factory=list)
    file: Path | None = None  # the --format jsonl, k8s or tar file it was named by, which may hold its key


def _read_cert(path: Path) -> "x509.Certificate":
    from cryptography import x509

    from certkit.errors import parse_errors
    from certkit.files import read_limited
    from certkit.material import one_leaf

    data = one_leaf(path, read_limited(path, MAX_CERT_FILE_BYTES, what="certificate"))  # a revocation is final
    try:
        return x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    except parse_errors():
        from certkit.folder_record import held_instead

        raise UnknownCertificate(f"{shown(path)} does not hold a readable certificate{held_instead(path, data)}.") \
            from None


def _refuse_mismatch(path: Path, cert) -> None:
    """A bundle folder whose files disagree (a cert.pem replaced by hand) names no one certificate:
    revoking or renewing what cert.pem says could hit another server's certificate."""
    from certkit.bundle import bundle_mismatch

    if path.is_dir() and (mismatch := bundle_mismatch(path, cert)) is not None:
        raise UnknownCertificate(f"The folder {shown(path)} names no one certificate: {mismatch} (a file replaced "
                                 "by hand?); give the serial of the certificate you mean.")


def holds(folder: Path | None, serial: str) -> bool:
    """Whether ``folder``'s cert.pem is the certificate ``serial``. A cert.pem the file system will not
    reach (a loop of links, no permission, an I/O error) is :class:`UnreadableFile`, not a folder emptied by
    hand: pathlib's is_file() takes those for "no file"."""
    if folder is None:
        return False
    if not is_regular_file(folder / CERT_FILE):
        return False
    try:
        return serial_hex(_read_cert(folder / CERT_FILE).serial_number) == serial
    except UnreadableFile as exc:  # the disk, not the folder: said, never taken for a bundle gone or replaced
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return False
        raise
    except CertkitError:
        return False


def find_certificate(inventory: "Inventory", ref: str, *, allow_names: bool = True,
                     ca_cert: "x509.Certificate | None" = None, ca_parents: tuple = ()) -> Found:
    """The certificate ``ref`` names: a bundle folder or certificate file, a serial (or a unique
    prefix of at least 8 hex digits), or, with ``allow_names``, a name it was issued for.
    ``ca_cert`` (with its ``ca_parents``) is the CA's own certificate: given, a certificate that
    is not in the inventory is said to be that one, or one signed by it, rather than another CA's."""
    what = "a bundle folder, a serial or a name" if allow_names else "a bundle folder or a serial"
    path = Path(ref)
    if path.is_dir() or path.name == CERT_FILE:  # a dead writer's half-replaced bundle: settled first
        from certkit.bundle import settle_folder

        settle_folder(path if path.is_dir() else path.parent)
    if path.exists():
        cert_path = path / CERT_FILE if path.is_dir() else path
        if path.is_dir() and not is_regular_file(cert_path):  # a loop of links is said as it is, as by serial
            refuse_folder_without_cert(inventory, path, what, allow_names)
        held = output_file_certificates(path) if path.is_file() else None
        if held is not None and len(held[1]) > 1:
            raise UnknownCertificate(many_in_a_file(path, *held, renewing=allow_names))
        cert = held[1][0] if held is not None else read_bundle_cert(inventory, cert_path, allow_names)  # one held: it
        serial = serial_hex(cert.serial_number)
        if not allow_names:  # revoke (renew says what is wrong with a folder in its own words)
            _refuse_mismatch(path, cert)
        row = inventory.get(serial)
        if row is None or inventory.certificate(serial) != cert:
            raise UnknownCertificate(not_in_inventory(cert_path, cert, serial, ca_cert, ca_parents,
                                                       revoking=not allow_names))
        # a bundle's cert.pem, or another file of it (fullchain.pem): the folder whose cert.pem it is; a
        # copy elsewhere names the certificate, as its serial does (its recorded folder, if that holds it)
        folder = cert_path.parent if cert_path.name == CERT_FILE or holds(cert_path.parent, serial) else None
        if folder is None:  # an output file's certificate: its key may be there (a renewal keeping it takes it)
            return replace(_found(inventory, row, strict=allow_names), file=path if held is not None else None)
        return Found(serial, row, cert, folder, inventory.successors(serial))
    serial = normalize_serial(ref)
    if serial is not None and (row := inventory.get(serial)) is not None:
        return _found(inventory, row, strict=allow_names)
    if allow_names:
        by_name = _by_name(inventory, ref)
        if by_name is not None:
            return by_name
    prefix = serial_digits(ref)  # as typed: an odd number of digits is a prefix too, not padded
    if prefix is not None and len(prefix) >= MIN_SERIAL_PREFIX:
        matches = inventory.serials_starting(prefix, limit=5)
        # Round one printed serials without their leading zero; they are stored padded to whole octets.
        matches += [m for m in inventory.serials_starting("0" + prefix, limit=5) if m not in matches]
        if len(matches) == 1:
            return _found(inventory, inventory.get(matches[0]), strict=allow_names)
        if len(matches) > 1:
            raise UnknownCertificate(f"The serial prefix {prefix} matches several certificates "
                                     f"({', '.join(matches)}); give more digits.")
    elif prefix is not None and inventory.serials_starting(prefix, limit=1):
        raise UnknownCertificate(f"'{shown(ref)}' is too short a serial prefix: give at least {MIN_SERIAL_PREFIX} "
                                 "hex digits ('certkit list' shows them), so that a typo cannot pick another "
                                 "certificate.")
    hint = (_host_form_hint(inventory, ref) if allow_names else None) or decimal_hint(inventory, ref)
    raise UnknownCertificate(f"No certificate of this CA matches '{_show(ref)}' (looked for {what})"
                             + (f". {hint}" if hint else "; 'certkit list' shows them."))


def _host_form_hint(inventory: "Inventory", ref: str) -> str | None:
    """What is wrong with ``ref`` when the host it holds in another notation than a host's (a peer URL, a host
    with its port, an IPv6 address in brackets) names a certificate, in names' words; else None."""
    from certkit.names_notation import host_in_notation

    if (noted := host_in_notation(ref)) is None:
        return None
    try:
        return noted[1] if _by_name(inventory, noted[0]) is not None else None
    except UnknownCertificate:  # the host names several: the notation is said all the same, the host given next
        return noted[1]


def name_glob_hint(inventory: "Inventory", pattern: str) -> str | None:
    """What is wrong with the ``--name`` glob ``pattern`` when it matches no certificate but holds, in a URL's, a
    port's or brackets' notation, a host that names one (list, renew in bulk and its timer), in names' words."""
    from certkit.names_notation import host_in_notation

    if inventory.query(name=pattern, limit=1, damaged=[]) or (noted := host_in_notation(pattern)) is None:
        return None
    return noted[1] if inventory.query(name=noted[0], limit=1, damaged=[]) else None


def _found(inventory: "Inventory", row: dict, *, strict: bool = True) -> Found:
    """The certificate of ``row``, with its recorded folder if that still holds it. A folder the disk cannot
    read is an error for a renewal (``strict``), and no folder for a revocation, which needs none."""
    folder = Path(row["folder"]) if row.get("folder") else None
    serial = row["serial"]
    try:
        here = holds(folder, serial)
    except UnreadableFile:
        if strict:
            raise
        here = False
    return Found(serial, row, inventory.certificate(serial), folder if here else None, inventory.successors(serial))


def _by_name(inventory: "Inventory", name: str) -> Found | None:
    import unicodedata

    from certkit.inventory.rows import name_patterns, subject_common_names

    literal = "".join(f"[{ch}]" if ch in "*?[" else ch for ch in name.lower())
    wanted = set(name_patterns(name))  # as typed when issued: café.example, r.example., José in any form
    rows = []
    for row in inventory.query(name=literal, damaged=[]):  # a damaged row elsewhere does not block this one
        if row["kind"] == "ca":
            continue
        values = {entry.split(":", 1)[1].lower() for entry in row["names"] if ":" in entry}
        values |= {value.lower() for value in subject_common_names(row["subject"])}
        if wanted & {unicodedata.normalize("NFC", value) for value in values}:
            rows.append(row)
    current = [r for r in rows if not inventory.successors(r["serial"])]
    live = [r for r in current if r["status"] != "revoked"] or current
    if not live:
        return None
    if len(live) > 1:
        listed = "; ".join(_where(inventory, live[:5])) + (f"; and {len(live) - 5} more" if len(live) > 5 else "")
        raise UnknownCertificate(f"'{shown(name)}' names {len(live)} current certificates ({shown(listed)}); "
                                 f"give a serial or a bundle folder instead (certkit list --name '{shown(name)}').")
    return _found(inventory, inventory.get(live[0]["serial"]) or live[0])  # the whole row: list's leaves out writer


def _where(inventory: "Inventory", rows: list[dict]) -> list[str]:
    """Each of several ``rows`` a name names, in words: its serial, kind and folder, and the host when two hosts
    sharing the inventory wrote them (the same path on two hosts is two folders)."""
    from certkit.fleet.folders import other_host

    hosts = [other_host(inventory.get(row["serial"]) or {}) for row in rows]  # list's rows leave out the writer
    said = []
    for row, host in zip(rows, hosts, strict=True):
        where = f" in {row['folder']}" if row.get("folder") else ""
        if where and any(hosts):
            where += f" on the host {host}" if host else ", on this host"
        said.append(f"{row['serial']} ({row['kind']}){where}")
    return said
