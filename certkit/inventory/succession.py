"""Whether a certificate may be renewed, decided inside the transaction that records its successor.

``renew`` and ``--force`` plan without the CA key and long before they record anything, so two of
them started together (the daily timer and an admin; two ``--force`` runs over one folder) would
both pass a check made only at plan time. The rows are checked again here, in the write transaction
that records the new certificate, with the predecessor's row locked (``FOR UPDATE``: PostgreSQL;
SQLite's writers take turns): a predecessor revoked meanwhile, or already renewed (a successor
pending or valid), refuses the new row, which is then never recorded. What ``--force`` replaces, and so
succeeds, is :func:`replaced_certificate`.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.errors import AlreadyRevoked, CannotRenew, CertkitError, UnknownCertificate, UnreadableFile
from certkit.paths import absolute
from certkit.text import shown
from certkit.vocabulary import moment_text

if TYPE_CHECKING:
    from cryptography import x509

    from certkit.ca import CA


def check_renewable(tx, serial: str, *, folder: str | None, in_place: bool, location: str) -> None:
    """Refuse to record a successor of ``serial`` going to ``folder``: ``serial`` is unknown, revoked or
    not valid, or it already has a successor that conflicts. A successor going to the same folder
    conflicts while it is pending or valid; with ``in_place`` False (the new bundle goes elsewhere than
    the folder that holds ``serial``) any successor that is not abandoned does, as at plan time."""
    found = tx.execute("SELECT status, revoked_at, revocation_reason, kind FROM certificates WHERE serial = ?"
                       " FOR UPDATE", (serial,)).fetchone()
    if found is None:
        raise UnknownCertificate(f"The certificate {serial} is not in the inventory {shown(location)}.")
    status, revoked_at, reason, kind = found
    if status == "revoked":
        raise AlreadyRevoked(f"The certificate {serial} was revoked on {moment_text(revoked_at)} (reason: {reason}); "
                             "a revoked certificate is not renewed. Issue a new one (with a new key) instead.")
    if status != "valid":
        raise CannotRenew(f"The certificate {serial} is {status}, not valid; it cannot be renewed.")
    # Read after the lock above: on PostgreSQL a successor recorded by a transaction that held it is
    # committed, and seen, by now.
    for other, other_status, other_folder, other_kind in tx.execute(
            "SELECT serial, status, folder, kind FROM certificates WHERE renewed_from = ? AND status IN"
            " ('pending', 'valid', 'revoked') ORDER BY issued_at, serial", (serial,)).fetchall():
        same_place = folder is not None and other_folder == folder
        if not ((same_place and other_status != "revoked") or not in_place):
            continue
        if other_status == "pending":
            raise CannotRenew(f"The certificate {serial} is being renewed right now, as {other}, by another certkit "
                              "command; this renewal was not recorded and wrote nothing.")
        if other_kind != kind:
            raise CannotRenew(f"The {kind} certificate {serial} was {succession_words(kind, other_kind, other)} "
                              "('certkit list' shows it); this renewal was not recorded and wrote nothing.")
        raise CannotRenew(f"The certificate {serial} was already renewed as {other} ('certkit list' shows it); this "
                          f"renewal was not recorded and wrote nothing. Renew {other} instead.")


def succession_words(kind: str, new_kind: str, new: str, it: str = "") -> str:
    """How a certificate of ``kind`` was succeeded by ``new``, of ``new_kind`` (``it``: " it" after the verb):
    renewed (a renewal keeps the kind), or replaced by one of another kind that ``--force`` wrote over its bundle,
    which renews nothing."""
    if new_kind != kind:
        return f"replaced{it} (--force over its bundle) by the {new_kind} certificate {new}, not renewed"
    return f"renewed{it} as {new}"


def replaced_certificate(ca: "CA", folder: str | Path) -> str | None:
    """The serial of the valid certificate of ``ca`` whose bundle is in ``folder`` (as its
    inventory records it), which ``--force`` replaces; None if there is none.

    Told by the folder's cert.pem; when that is no certificate certkit can read (damaged, cut short, unreadable,
    or gone while the rest of the bundle is there), by the inventory's record of the folder: the newest valid
    certificate recorded there and not renewed. A failed read is never taken for "no certificate there": the
    certificate would stay valid, and due, with its key deleted."""
    from certkit.vocabulary import serial_hex

    folder = Path(absolute(folder))
    if ca.inventory is None or not folder.is_dir():
        return None
    cert = _certificate_in(folder)
    if cert is None:
        return _recorded_in(ca, folder) if _holds_a_bundle(folder) else None
    row = ca.inventory.get(serial_hex(cert.serial_number))
    if row is None or row["status"] != "valid" or row.get("folder") != str(folder):
        return None
    if ca.inventory.successors(row["serial"]) or ca.inventory.certificate(row["serial"]) != cert:
        return None  # renewed already (a copy of an old bundle), or not this CA's certificate
    return row["serial"]


def _certificate_in(folder: Path) -> "x509.Certificate | None":
    """The certificate of ``folder``'s cert.pem; None when there is none certkit can read (a bounded read, as
    of every file certkit reads: the folder is the user's)."""
    from cryptography import x509

    from certkit.constants import CERT_FILE, MAX_CERT_FILE_BYTES
    from certkit.files import read_limited

    if not (folder / CERT_FILE).is_file():  # a FIFO or a folder there is not read (nor waited on)
        return None
    try:
        return x509.load_pem_x509_certificate(read_limited(folder / CERT_FILE, MAX_CERT_FILE_BYTES))
    except (ValueError, CertkitError):
        return None


def _holds_a_bundle(folder: Path) -> bool:
    from certkit.constants import BUNDLE_FILES

    return any(os.path.lexists(folder / name) for name in BUNDLE_FILES)


def _recorded_in(ca: "CA", folder: Path) -> str | None:
    """The newest certificate the inventory records valid, and not renewed, in the bundle folder ``folder``."""
    rows = ca.inventory.rows(
        "WHERE folder = ? AND (sink IS NULL OR sink = 'folder') AND status = 'valid' AND NOT EXISTS (SELECT 1 FROM "
        "certificates n WHERE n.renewed_from = certificates.serial AND n.status IN ('valid', 'revoked')) ORDER BY "
        "issued_at DESC, serial DESC LIMIT 1", (str(folder),))
    return rows[0]["serial"] if rows else None


OTHER_KIND_NOTE = "the bundle replaced held the"  # how the note begins (a batch counts them)


def other_kind_note(row: dict, kind: str) -> str:
    """The note for ``--force`` over the bundle of ``row``, this CA's certificate of another kind than
    ``kind`` (the new certificate's): replaced, not renewed, and still valid with its key gone."""
    from certkit.vocabulary import moment_text

    serial = row["serial"]
    return (f"{OTHER_KIND_NOTE} {row['kind']} certificate {serial}, not a {kind} certificate: the inventory records it"
            f" as replaced by this {kind} certificate, not renewed ('certkit list' shows it 'replaced'), and it stays"
            f" valid until {moment_text(row['not_after'])} with its key gone; if no copy of it is in use, revoke it:"
            f" certkit revoke {serial} --reason superseded")


def replaced_note(row: dict, kind: str, names: list[str]) -> str | None:
    """The note for ``--force`` over the bundle of ``row``, this CA's certificate, by a ``kind`` certificate for
    ``names``: one of another kind (:func:`other_kind_note`), or of this kind for other names, which the inventory
    records as renewed by the new one though it is for none of them, and which stays valid with its key gone; None
    for the same kind and names (a renewal in all but the command)."""
    if row["kind"] != kind:
        return other_kind_note(row, kind)
    if sorted(row["names"]) == sorted(names):
        return None
    serial = row["serial"]
    return (f"{OTHER_KIND_NOTE} {kind} certificate {serial} for {names_text(row['names'])}, not for "
            f"{names_text(names)}: the inventory records it as renewed by this certificate, and it stays valid until"
            f" {moment_text(row['not_after'])} with its key gone; if no copy of it is in use, revoke it: certkit revoke"
            f" {serial} --reason superseded")


def names_text(names: list[str]) -> str:
    """Up to three names, and how many more."""
    shown_names = ", ".join(names[:3]) or "no name"
    return shown_names + (f" and {len(names) - 3} more" if len(names) > 3 else "")


FOREIGN_NOTE = "the bundle replaced held certificate"  # how the note begins (a batch counts them)


def foreign_replaced(ca_cert: "x509.Certificate", folder: str | Path) -> str | None:
    """A note for ``--force`` over a bundle whose certificate another CA than ``ca_cert`` (the CA about to
    write there) issued (the root above an issuing CA, a sibling, a CA of the same name): this CA cannot
    record it as replaced, and its key goes with the folder. Names it and its CA, so that it can be revoked
    there; None when the folder holds no certificate, or one this CA's key signed."""
    from cryptography import x509

    from certkit.constants import CERT_FILE, MAX_CERT_FILE_BYTES
    from certkit.files import read_limited

    path = Path(absolute(folder)) / CERT_FILE
    try:
        cert = x509.load_pem_x509_certificate(read_limited(path, MAX_CERT_FILE_BYTES))
    except UnreadableFile as exc:  # made unreadable since the plan, which refuses it: never "nothing there"
        if exc.errno == errno.ENOENT:
            return None
        return (f"the bundle replaced held a {CERT_FILE} that could not be read ({os.strerror(exc.errno or 0)}): "
                "which certificate it was cannot be told, and its key went with the old files; if it was still "
                "valid, revoke it with the CA that issued it")
    except (OSError, ValueError, CertkitError):
        return None
    return None if of_this_ca(cert, ca_cert) else foreign_note(cert)


def of_this_ca(cert: "x509.Certificate", ca_cert: "x509.Certificate") -> bool:
    """Whether the CA of ``ca_cert`` issued ``cert``: its name, and its key's signature (every CA made
    without --name on one host for one user has the same name)."""
    from certkit.ca_checks import signed_by

    return cert.issuer == ca_cert.subject and signed_by(cert, ca_cert)


def foreign_note(cert: "x509.Certificate", replaced: str = "bundle") -> str:
    """The note for another CA's certificate whose ``replaced`` (bundle, file) ``--force`` overwrote."""
    from certkit.vocabulary import name_text, serial_hex

    serial = serial_hex(cert.serial_number)
    return (f"{FOREIGN_NOTE.replace('bundle', replaced)} {serial} of another CA ({name_text(cert.issuer)}), which this "
            f"CA cannot record as replaced: its key went with the old {'files' if replaced == 'bundle' else replaced}. "
            f"If it is still valid, revoke it with that CA: certkit revoke {serial} --ca-dir DIR-OF-THAT-CA, then "
            "publish its CRL")
