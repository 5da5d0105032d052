"""What a CA's inventory records against a chain it vouches for: the leaf or an intermediate revoked,
or never delivered (``certkit verify``, ``serve`` at each connection, ``probe``).

A root's CA directory vouches for what its intermediates issued too; the leaf's record is then in the
inventory of the intermediate that issued it, which the root's inventory finds: it records the folder of
every intermediate it created (``init-ca --parent-ca-dir``). That inventory is read as well, so a leaf the
intermediate revoked is not called valid through the root; one whose recorded folder cannot be read is
said to be unchecked (verify and serve then refuse it: fail closed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.constants import UNSEEN_SINKS
from certkit.errors import CertkitError
from certkit.verify_names import cn_text

if TYPE_CHECKING:
    from cryptography import x509

THIS_CA = "this CA's inventory"


def inventory_problems(ca_dir: str | Path | None, chain: Sequence["x509.Certificate"], *,
                       unread: list[str] | None = None, leaf_found: list[bool] | None = None,
                       whose: str = THIS_CA, by_server: bool = False) -> list[str]:
    """What the CA's own inventory says against the certificates of ``chain`` (the leaf first) that it
    holds: revoked, or never delivered. The chain may verify, but the CA has withdrawn the leaf, or an
    intermediate CA above it (a CRL says so to peers). Why a certificate's record could not be read
    (a missing or damaged inventory) goes into ``unread``; ``leaf_found`` gets True when an inventory
    read (this one, or an intermediate's below it) holds the leaf. ``by_server``: the leaf is judged as
    a server presents it, so its clients, not servers, are those a CRL tells to refuse it."""
    from certkit.store import CADirectory
    from certkit.store_binding import check_binding
    from certkit.store_inventory import check_inventory_file

    store = CADirectory(ca_dir)
    inventory = store.inventory
    problems: list[str] = []
    try:  # an older schema (round one's) is migrated, as by any other command but check
        # a FIFO or folder there is said as such, not "missing"; a moved SQLite file is a backup of the day it moved
        check_inventory_file(inventory)
        # another CA's (a wrong $CERTKIT_INVENTORY_URL) knows none of this CA's revocations: never "none revoked"
        check_binding(inventory, store.load_certificates()[0])
        inventory.check(settle=False)
    except (CertkitError, OSError) as exc:
        if unread is not None:
            unread.append(str(exc).rstrip("."))
        return problems
    here = False
    for cert in chain:
        row = _row_of(inventory, cert, unread)
        if row is None:
            continue
        if cert is chain[0]:
            here = True
            if leaf_found is not None:
                leaf_found.append(True)
        problems += _row_problems(row, cert, cert is chain[0], whose, by_server)
    if not here and len(chain) > 1:
        problems += _issuers_inventory(inventory, chain, unread, leaf_found, by_server)
    if whose == THIS_CA:
        problems += _parent_problems(inventory, store, chain)
    return problems


def _parent_problems(inventory, store, chain: Sequence["x509.Certificate"]) -> list[str]:
    """What the inventory of the parent CA directory an intermediate recorded (init-ca --parent-ca-dir) says of
    the CAs of ``chain`` above the leaf: revoked (every certificate below is refused by whoever loads its CRL).
    A parent directory that is gone (an offline root), holds another CA or cannot be read tells nothing."""
    from certkit.parent_record import parent_store, recorded_parent_dir

    parents = store.load_certificates()[1]
    folder = recorded_parent_dir(inventory) if parents else None
    if (parent := parent_store(folder, parents[0] if parents else None)) is None:
        return []
    whose = f"the inventory of its parent CA {cn_text(parents[0].subject)} (at {folder})"
    rows = [(_row_of(parent.inventory, cert, None), cert) for cert in chain[1:]]
    return [problem for row, cert in rows if row is not None for problem in _row_problems(row, cert, False, whose)]


def _row_of(inventory, cert, unread: list[str] | None) -> dict | None:
    """The inventory's row for ``cert`` (None when it holds another certificate of that serial, or none)."""
    from certkit.vocabulary import serial_hex

    serial = serial_hex(cert.serial_number)
    try:
        row = inventory.get(serial)
        if row is None or inventory.certificate(serial) != cert:
            return None
    except CertkitError as exc:  # an unreadable inventory or row: the chain's verdict stands, and says so
        if unread is not None:
            unread.append(str(exc).rstrip("."))
        return None
    return row


# Who refuses a revoked leaf, by the side that presents it (a peer's verdict says both: certkit.verify_peer).
CLIENTS_REFUSE = "clients refuse it once they load the next CRL (certkit crl)"
SERVERS_REFUSE = "servers refuse it once they load the next CRL"


def _row_problems(row: dict, cert, leaf: bool, whose: str, by_server: bool = False) -> list[str]:
    from certkit.inventory.rows import parse_iso

    if row["status"] not in ("revoked", "abandoned"):
        return []
    if leaf:
        if row["status"] == "revoked":
            return [f"revoked on {parse_iso(row['revoked_at']):%Y-%m-%d %H:%M:%S} UTC (reason: "
                    f"{row['revocation_reason']}), as {whose} records; "
                    + (CLIENTS_REFUSE if by_server else SERVERS_REFUSE)]
        if row.get("sink") in UNSEEN_SINKS:
            return [f"never marked delivered: {whose} records it as abandoned, but its writer sent it to standard "
                    "output (or a program's memory) and stopped before marking it; if it reached anyone, revoke "
                    "it (certkit revoke SERIAL)"]
        return [f"never delivered: {whose} records it as abandoned (its key was never stored)"]
    if row["status"] == "revoked":
        return [f"the issuing CA {cn_text(cert.subject)} was revoked on "
                f"{parse_iso(row['revoked_at']):%Y-%m-%d %H:%M:%S} UTC (reason: {row['revocation_reason']}), as "
                f"{whose} records; peers that load the next CRL refuse every certificate it issued"]
    return [f"the issuing CA {cn_text(cert.subject)} was never delivered: {whose} records it as abandoned"]


def issuer_withdrawn(row: dict, cert, whose: str) -> str | None:
    """What ``whose`` inventory's ``row`` of the CA certificate ``cert`` (above a leaf) says against every
    certificate below it, in verify's words: revoked, or never delivered; None when neither."""
    return next(iter(_row_problems(row, cert, False, whose)), None)


def _issuers_inventory(inventory, chain: Sequence, unread: list[str] | None, leaf_found,
                       by_server: bool) -> list[str]:
    """The problems the inventory of the lowest intermediate of ``chain`` that ``inventory`` records (with its
    CA directory's folder) finds against what is below it; an unreadable one goes into ``unread``."""
    from certkit.store import CADirectory

    for depth, cert in enumerate(chain[1:], 1):
        row = _row_of(inventory, cert, None)
        if row is None or row.get("kind") != "ca" or not row.get("folder"):
            continue
        folder, name = Path(row["folder"]), cn_text(cert.subject)
        try:
            own, _parents = CADirectory(folder).load_certificates()
        except CertkitError as exc:
            own, why = None, (f"{folder}, where it was created, is gone (moved or removed: verify with --ca-dir of "
                              "its new place)" if not folder.exists() else str(exc).rstrip("."))
        else:
            why = None if own == cert else f"its folder {folder} now holds another CA ({cn_text(own.subject)})"
        if why is not None:
            if unread is not None:
                unread.append(f"the inventory of {name}, which issued it, cannot be read: {why}")
            return []
        return inventory_problems(folder, chain[:depth], unread=unread, leaf_found=leaf_found, by_server=by_server,
                                  whose=f"the inventory of its issuing CA {name} (at {folder})")
    return []


def out_of_dates_advice(leaf, ca_dir: Path | None) -> str:
    """What to do about a server certificate (serve --cert) right but for its dates: renew an expired one (with
    the command, when the CA directory's inventory holds it, or that of an intermediate it records below it, or of
    the parent it records above it), wait for one not valid yet."""
    import datetime as dt

    from certkit.folder_record import ca_option
    from certkit.store import CADirectory
    from certkit.text import shown
    from certkit.vocabulary import serial_hex

    if leaf.not_valid_before_utc > dt.datetime.now(dt.UTC):
        return ("Wait until then (or set this machine's clock right if it is behind), give a server certificate "
                "valid now (certkit issue-server)")
    if (holder := _holder_of(CADirectory(ca_dir), leaf)) is not None:
        return f"Renew it (certkit renew {serial_hex(leaf.serial_number)}{ca_option(holder.path)})"
    return f"Renew it with the CA that issued it ({shown(cn_text(leaf.issuer))}), give a current server certificate"


def _holds(store, cert) -> bool:
    """Whether the CA directory ``store``'s inventory holds ``cert`` (False when it cannot be read)."""
    from certkit.vocabulary import serial_hex

    try:
        return store.exists() and store.inventory.certificate(serial_hex(cert.serial_number)) == cert
    except Exception:  # noqa: BLE001 (an inventory that cannot be read: the advice without the command)
        return False


def _holder_of(store, cert, depth: int = 0):
    """The CA directory whose inventory holds ``cert``: ``store``, an intermediate's whose folder it records (and so
    on below, as far as intermediates go), or, at the top, the parent it records (init-ca --parent-ca-dir) or an
    intermediate recorded there (a sibling); else None."""
    from certkit.parent_record import parent_store, recorded_parent_dir
    from certkit.store import CADirectory

    if _holds(store, cert):
        return store
    if depth > 8:  # pathlen: no chain of certkit's is that deep (a loop of recorded folders ends here)
        return None
    try:
        rows = store.inventory.rows("WHERE kind = 'ca' AND status = 'valid' AND folder IS NOT NULL")
    except Exception:  # noqa: BLE001 (unreadable: nothing found below)
        rows = []
    for row in rows:  # each intermediate's folder, while it still holds that CA (not moved, not replaced)
        below = CADirectory(row["folder"])
        found = _holder_of(below, cert, depth + 1) if _own_ca(below) == _recorded(store, row["serial"]) else None
        if found is not None:
            return found
    if depth == 0:
        parents = _parents(store)
        parent = parent_store(recorded_parent_dir(store) if parents else None, parents[0] if parents else None)
        return _holder_of(parent, cert, 1) if parent is not None else None  # it, or a sibling intermediate
    return None


def _parents(store) -> list:
    try:
        return store.load_certificates()[1] if store.exists() else []
    except Exception:  # noqa: BLE001 (an unreadable CA directory: no parent to look in)
        return []


def _recorded(store, serial: str):
    try:
        return store.inventory.certificate(serial)
    except Exception:  # noqa: BLE001 (a damaged row: no folder to trust)
        return False


def _own_ca(store):
    try:
        return store.load_certificates()[0] if store.exists() else None
    except Exception:  # noqa: BLE001 (gone, or unreadable: nothing to look in)
        return None
