"""An intermediate's record of its parent's CA directory, and what the parent's inventory says of it.

``init-ca --parent-ca-dir`` (``CA.create(parent=...)`` of a parent loaded from a directory) records that
directory in the new CA's inventory (a ``meta`` row). An intermediate its parent has since revoked is
refused by every verifier that loads the parent's CRL (``openssl verify -crl_check_all``, nginx's
``ssl_crl``), so every certificate it would issue is dead on arrival: it issues nothing (``CA.leaf_validity``).
A parent directory that is not there (an offline root, on its USB stick), holds another CA, or cannot be
read tells nothing, and issuing goes on: what it cannot see, certkit does not claim."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from certkit.errors import AlreadyRevoked, CertkitError
from certkit.text import shown

PARENT_DIR = "parent_ca_dir"  # the meta row of an intermediate's inventory
RECHECK_S = 60.0  # a long-running issuer (serve, the ACME server) looks again this often


def record_parent(tx, parent_dir: Path | str | None) -> None:
    """Record ``parent_dir`` (absolute) in the new inventory's meta table (inside ``tx``)."""
    if parent_dir is not None:
        tx.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                   (PARENT_DIR, str(parent_dir)))


def parent_dir_of(ca) -> Path | None:
    """The parent's CA directory ``ca`` knows of: set by CA.create, else recorded in its inventory."""
    found = ca._parent_dir
    return Path(found) if found is not None else recorded_parent_dir(ca.inventory)


def recorded_parent_dir(inventory) -> Path | None:
    """The parent's CA directory an intermediate's ``inventory`` (or CA directory's) records, or None (none, or
    unreadable)."""
    try:
        inventory = getattr(inventory, "inventory", inventory)  # a CADirectory's: its config may be unreadable
        if inventory is None:
            return None
        with inventory.transaction() as tx:
            row = tx.execute("SELECT value FROM meta WHERE key = ?", (PARENT_DIR,)).fetchone()
    except (CertkitError, OSError):
        return None
    return Path(row[0]) if row and row[0] else None


def parent_store(folder: Path | None, parent_cert):
    """The CA directory ``folder`` when it is there and still holds ``parent_cert`` with an inventory, else None:
    gone (an offline root), another CA there now, or unreadable, it tells nothing of the CA below it."""
    from certkit.store import CADirectory

    if folder is None or not folder.is_dir():
        return None
    try:
        store = CADirectory(folder)
        return store if store.load_certificates()[0] == parent_cert and store.inventory.db.exists() else None
    except (CertkitError, OSError):
        return None


def check_not_revoked(ca) -> None:
    """Refuse to issue from ``ca`` when its parent's inventory records it as revoked (looked at once a minute)."""
    if not ca.parents:
        return
    now = time.monotonic()
    checked = getattr(ca, "_parent_checked", None)
    if checked is None or now - checked[0] > RECHECK_S:
        checked = (now, _revocation(ca))
        ca._parent_checked = checked
    if checked[1] is not None:
        raise AlreadyRevoked(checked[1])


def _revocation(ca) -> str | None:
    """Why ``ca`` issues nothing (its parent revoked it), or None when the parent's inventory does not say so."""
    return revoked_by_parent(ca.cert, ca.parents[0], parent_dir_of(ca))


def revoked_by_parent(cert, parent_cert, folder: Path | None) -> str | None:
    """That the CA certificate ``cert`` was revoked, as the inventory of its parent (``parent_cert``, in the CA
    directory ``folder``) records, in words; None when it does not say so, or cannot be asked."""
    from certkit.inventory.rows import parse_iso
    from certkit.vocabulary import common_name, serial_hex

    if (store := parent_store(folder, parent_cert)) is None:
        return None
    try:
        serial = serial_hex(cert.serial_number)
        row = store.inventory.get(serial)
        if row is None or row["status"] != "revoked" or store.inventory.certificate(serial) != cert:
            return None
    except (CertkitError, OSError):
        return None
    name, parent = (common_name(c.subject) or c.subject.rfc4514_string() for c in (cert, parent_cert))
    command = f"certkit init-ca --ca-dir NEW-DIR --parent-ca-dir {shlex.quote(str(folder))}"
    return (f"The CA '{shown(name)}' was revoked by its parent '{shown(parent)}' on "
            f"{parse_iso(row['revoked_at']):%Y-%m-%d %H:%M:%S} UTC (reason: {row['revocation_reason']}), as the "
            f"parent's inventory in {shown(folder)} records: every verifier that loads the parent's CRL refuses what "
            f"it signs, so it issues nothing. Create a new intermediate ({shown(command)}) and issue from it.")
