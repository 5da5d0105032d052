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
    if found is None and ca.inventory is not None:
        try:
            with ca.inventory.transaction() as tx:
                row = tx.execute("SELECT value FROM meta WHERE key = ?", (PARENT_DIR,)).fetchone()
        except (CertkitError, OSError):
            return None
        found = row[0] if row else None
    return Path(found) if found else None


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
    from certkit.inventory.rows import parse_iso
    from certkit.store import CADirectory
    from certkit.vocabulary import common_name, serial_hex

    folder = parent_dir_of(ca)
    if folder is None or not folder.is_dir():
        return None
    try:
        store = CADirectory(folder)
        if store.load_certificates()[0] != ca.parents[0] or not store.inventory.db.exists():
            return None  # another CA there now: it knows nothing of this one
        serial = serial_hex(ca.cert.serial_number)
        row = store.inventory.get(serial)
        if row is None or row["status"] != "revoked" or store.inventory.certificate(serial) != ca.cert:
            return None
    except (CertkitError, OSError):
        return None
    parent = common_name(ca.parents[0].subject) or ca.parents[0].subject.rfc4514_string()
    command = f"certkit init-ca --ca-dir NEW-DIR --parent-ca-dir {shlex.quote(str(folder))}"
    return (f"The CA '{shown(ca.common_name)}' was revoked by its parent '{shown(parent)}' on "
            f"{parse_iso(row['revoked_at']):%Y-%m-%d %H:%M:%S} UTC (reason: {row['revocation_reason']}), as the "
            f"parent's inventory in {shown(folder)} records: every verifier that loads the parent's CRL refuses what "
            f"it signs, so it issues nothing. Create a new intermediate ({shown(command)}) and issue from it.")
