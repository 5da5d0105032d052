"""What ``certkit check`` finds of inventory rows deleted by hand: a row that renews a serial no row holds, and a
bundle folder (a folder the inventory records, or one beside it) whose cert.pem this CA signed but the inventory
does not record. Such a certificate stays valid, and neither ``list``, ``revoke`` nor any CRL knows of it."""

from __future__ import annotations

import os
from pathlib import Path

from certkit.check import Finding
from certkit.check_inventory import _RESTORE, ROWS_LISTED
from certkit.constants import CERT_FILE
from certkit.vocabulary import serial_hex

FOLDERS_LOOKED_AT = 2000  # bundle folders read at most: check stays quick beside a folder of thousands


def unrecorded(inventory, ca_cert, version: int, ca_dir: Path) -> list[Finding]:
    """The findings of rows deleted from ``inventory`` (this CA's, whose certificate is ``ca_cert``; of schema
    ``version``: folder came in version 2, sink in 3). Bundle folders are looked for where the inventory records
    them and beside them, and beside ``ca_dir`` (``./ca`` and ``./localhost``: every row may be gone)."""
    from cryptography.hazmat.primitives import hashes

    columns = f"{'folder' if version >= 2 else 'NULL'}, {'sink' if version >= 3 else 'NULL'}, fingerprint_sha256"
    with inventory._read(readonly=True) as tx:
        rows = tx.execute(f"SELECT serial, renewed_from, {columns} FROM certificates").fetchall()
    serials = {serial for serial, *_ in rows}
    known = serials | {fingerprint for *_, fingerprint in rows}  # a row whose serial was edited is said as such
    found = [Finding("inventory-row", "error", f"serial {serial} renews serial {renewed}, which the inventory does "
                     "not record: that row was deleted outside certkit, so list, revoke and the CRL know nothing of "
                     f"the certificate it held.{_RESTORE}")
             for serial, renewed, *_ in rows if renewed and renewed not in serials]
    folders = {Path(folder) for _, _, folder, sink, _ in rows if folder and sink in (None, "folder")}
    for folder, cert in _bundles_beside(folders, ca_cert, Path(ca_dir).absolute().parent):
        if not {serial_hex(cert.serial_number), cert.fingerprint(hashes.SHA256()).hex()} & known:
            found.append(Finding("inventory-row", "error", _said(folder, cert)))
    return found[:ROWS_LISTED] + ([Finding("inventory-row", "error", f"{len(found) - ROWS_LISTED} more deleted rows "
                                           "(not listed).")] if len(found) > ROWS_LISTED else [])


def _said(folder: Path, cert) -> str:
    from certkit.text import shown
    from certkit.vocabulary import dn_text

    return (f"{shown(str(folder / CERT_FILE))} holds serial {serial_hex(cert.serial_number)} "
            f"({shown(dn_text(cert.subject))}), signed by this CA, which the inventory does not record: its row was "
            "deleted, or the inventory restored from a backup older than it. list does not show it, revoke refuses "
            f"it and no CRL can list it, and it stays valid until {cert.not_valid_after_utc:%Y-%m-%d}. Restore the "
            f"inventory from a backup made after {cert.not_valid_before_utc:%Y-%m-%d}, then run certkit check again.")


def _bundles_beside(folders: set[Path], ca_cert, also: Path):
    """(folder, its cert.pem's certificate) of each bundle folder in ``folders``, beside one, or in ``also``
    that ``ca_cert`` signed."""
    from cryptography import x509

    from certkit.constants import MAX_CERT_FILE_BYTES
    from certkit.signatures import signed_by

    looked = 0
    candidates = sorted(folders) + sorted({entry for parent in {f.parent for f in folders}
                                           for entry in _subfolders(parent)} - folders)
    seen = set(candidates)
    candidates += [entry for entry in _subfolders(also) if entry not in seen]
    for folder in candidates:
        path = folder / CERT_FILE
        if looked >= FOLDERS_LOOKED_AT:
            return
        try:
            if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_CERT_FILE_BYTES:
                continue
            looked += 1
            cert = x509.load_pem_x509_certificate(path.read_bytes())
        except (OSError, ValueError):  # unreadable, not a certificate: not a bundle of this CA's to judge here
            continue
        if cert != ca_cert and cert.issuer == ca_cert.subject and signed_by(cert, ca_cert):
            yield folder, cert


def _subfolders(parent: Path) -> list[Path]:
    try:
        with os.scandir(parent) as entries:
            return [Path(e.path) for _, e in zip(range(FOLDERS_LOOKED_AT), entries, strict=False)
                    if e.is_dir(follow_symlinks=False)]
    except OSError:
        return []
