"""A new CA's record and its directory, around :meth:`certkit.store.CADirectory.save_new`: a new intermediate
recorded by its parent (valid, or pending until it is saved; kept by a parent in memory, under :data:`UNRECORDED`),
``save_new``'s checks of its arguments and that the CA is not stored already, and what a save that fails or is
stopped once the directory is in place says and settles (and what an init-ca stopped by a signal left)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from certkit.errors import CertkitError, InvalidArgument
from certkit.text import new_secret_problem, shown
from certkit.vocabulary import wrong_type

if TYPE_CHECKING:
    from pathlib import Path

    from certkit.inventory import Inventory


def check_saved(ca, passphrase, inventory_url=None) -> bytes | None:
    """``save_new``'s arguments, checked before anything is written (or a parent's pending row abandoned):
    an unlocked :class:`~certkit.ca.CA`, the passphrase as bytes (a str is taken as UTF-8; one init-ca
    refuses, refused), and an ``inventory_url`` that is a PostgreSQL URL, as init-ca --inventory takes."""
    from certkit.ca import CA
    from certkit.text import secret_bytes

    if inventory_url is not None:
        from certkit.db_url import check_stored_url

        if not isinstance(inventory_url, str):
            raise wrong_type("inventory_url", "a PostgreSQL URL (a str) or None", inventory_url)
        check_stored_url(inventory_url)  # as init-ca --inventory: it is written into certkit-ca.json

    if not isinstance(ca, CA):
        raise wrong_type("ca", "a CA (CA.create())", ca)
    if ca.key is None:
        raise CertkitError(f"The CA '{shown(ca.common_name)}' is locked (its key is not loaded): unlock() it before "
                           "saving it as a new CA directory.")
    secret = None if passphrase is None else secret_bytes(passphrase, "The passphrase", "bytes, a str or None")
    if secret and (problem := new_secret_problem(secret)):  # as init-ca refuses it (empty: said below, passphrase=None)
        raise InvalidArgument(f"The passphrase {problem}.")
    return secret


# Held while a CA found to have no inventory keeps what it signed, and while save_new gives it one
# (certkit.memory_delivery): a certificate signed by another thread meanwhile is recorded one way or the other.
UNRECORDED = threading.Lock()


def record_signed_ca(parent, ca, directory) -> None:
    """A new intermediate, recorded by its ``parent``'s inventory: valid at once, or with ``directory``
    pending there until :meth:`CADirectory.save_new` puts it in a CA directory (wherever that is:
    the row then names the real one, :func:`recorded_by`)."""
    if parent is None:
        return
    from weakref import ref

    from certkit.inventory import Pending
    from certkit.paths import absolute

    with UNRECORDED:
        if parent.inventory is None:  # a parent in memory: recorded if saved (memory_delivery.record_issued_before)
            parent.unrecorded.append((Pending(ca.cert, "ca", sink="memory"), ref(ca)))
            return
    parent.inventory.add(ca.cert, "ca", issuer=parent.cert, ca_dir=directory)
    ca._recorded_by = parent.inventory  # save_new records where it is saved, with or without directory
    if parent.store is not None:  # recorded in its inventory by save_new: whether the parent revoked it can be told
        ca._parent_dir = absolute(parent.store.path)


def recorded_by(ca, parent) -> "Inventory | None":
    """The inventory that records ``ca`` pending until it is saved: its parent's, as ``CA.create(...,
    parent=..., directory=...)`` recorded it (else ``parent``'s, given to save_new)."""
    found = getattr(ca, "_recorded_by", None)
    return found if found is not None else parent.inventory if parent is not None else None


def check_not_stored(ca, here, parent) -> None:
    """``save_new`` of a CA that is stored already (opened from a directory, saved once by this object, or
    in a directory its parent's inventory or the default CA directory holds) is refused: a second directory
    would start a new inventory, knowing none of its certificates and revocations, and number its CRLs
    from 1 again (RFC 5280 wants them to increase), so a revoked certificate would be called valid."""
    from pathlib import Path

    from certkit.ca import CA
    from certkit.errors import CAExists

    if parent is not None and not isinstance(parent, CA):
        raise wrong_type("parent", "the parent CA (a CA object) or None", parent)
    where = ca.store.path if ca.store is not None else getattr(ca, "_saved_in", None)
    where = where if where is not None else _directory_of(ca, parent, Path(here).absolute())
    if where is not None:
        raise CAExists(f"The CA '{shown(ca.common_name)}' is stored already, in {shown(where)}: a CA directory is "
                       f"copied with its inventory (cp -a {shown(where)} NEW-DIR), not re-created with save_new(), "
                       "which would start a new inventory that knows none of its certificates and revocations and "
                       "numbers its CRLs from 1 again.")


def _directory_of(ca, parent, here) -> "Path | None":
    """Another CA directory that holds ``ca``'s certificate: the one its parent's inventory records, or
    the default CA directory ($CERTKIT_CA_DIR, else the per-user one)."""
    from pathlib import Path

    from certkit.inventory.reconcile import ca_directory_holds
    from certkit.store import resolve_ca_dir
    from certkit.vocabulary import serial_hex

    der = ca.cert.public_bytes(_der())
    inventory = recorded_by(ca, parent)
    row = inventory.get(serial_hex(ca.cert.serial_number)) if inventory is not None else None
    try:
        default = resolve_ca_dir(None, strict=False).absolute()
    except CertkitError:
        default = None
    for folder in (row and row["folder"], default):
        try:
            if folder and Path(folder) != here and ca_directory_holds(folder, der):
                return Path(folder)
        except CertkitError:  # one it cannot read: it is not known to hold it
            continue
    return None


def _der():
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


def settle_unsaved(recorded, serial: str, path, cert) -> None:
    """After ``save_new`` of an intermediate failed (Ctrl-C, an error): if its directory ``path`` was put in
    place all the same (the failure came after the rename), the parent's row is settled valid there, as a
    saved one is; else abandoned (a pending row only: a valid one stays). A directory that cannot be read, or
    an inventory that cannot be written now, leaves the row pending: the next command settles it by looking."""

    from cryptography.hazmat.primitives.serialization import Encoding

    from certkit.errors import CertkitError
    from certkit.inventory.reconcile import ca_directory_holds
    from certkit.paths import absolute

    try:
        if ca_directory_holds(path, cert.public_bytes(Encoding.DER)):
            recorded.mark_issued([serial])
            with recorded.transaction(write=True) as tx:  # handed to a program, now here: as record_saved_ca
                tx.execute("UPDATE certificates SET folder = ?, sink = 'ca-dir' WHERE serial = ? AND sink = 'memory'"
                           " AND folder IS NULL AND status = 'valid'", (absolute(path), serial))
        else:
            recorded.mark_abandoned([serial])
    except CertkitError:
        pass


def created_words(path, ca, serial: str, by_parent: bool) -> str:
    """That the CA directory ``path`` of ``ca`` exists, whole: what a failure or a stop after it says."""
    kind = "intermediate" if ca.parents else "root"
    return (f"the CA directory {shown(path)} was created, whole ({kind} CA '{shown(ca.common_name)}', serial "
            f"{serial}): do not create it again; 'certkit check --ca-dir {shown(path)}' checks it"
            + (", and the next certkit command that opens its parent's inventory records it as issued there if "
               "this one could not" if by_parent else "") + ".")


def stopped_creating(store, ca) -> str:
    """What an init-ca stopped by a signal left in ``store``'s folder (:func:`certkit.cli.arguments.on_stop`):
    the new CA, whole (its ca.pem in place: renamed there with the rest), or nothing."""
    from certkit.vocabulary import serial_hex

    try:
        placed = store.cert_path.read_bytes() == ca.cert_pem
    except OSError:
        placed = False
    if placed:
        return "Interrupted, but " + created_words(store.path, ca, serial_hex(ca.cert.serial_number), bool(ca.parents))
    return f"Interrupted: no CA was created in {shown(store.path)}."


@contextmanager
def after_saving(path, ca, recorded, serial: str) -> Iterator[None]:
    """The steps of ``save_new`` once the new CA directory ``path`` is in place (its parent's row marked valid,
    the directory read back): one that fails, or a Ctrl-C, SIGTERM or SIGHUP that lands there, says that the
    CA was created (never only "Error: disk I/O error" or "Interrupted.", which send the user to create it
    again and find a CA there), and the parent's row (``recorded``) is settled by what is there."""
    from certkit.errors import Terminated

    try:
        yield
    except BaseException as exc:
        if recorded is not None:
            settle_unsaved(recorded, serial, path, ca.cert)
        created = created_words(path, ca, serial, recorded is not None)
        if isinstance(exc, (KeyboardInterrupt, Terminated)):
            exc.certkit_interrupted = f"Interrupted, but {created}"
            raise
        if not isinstance(exc, (CertkitError, OSError)):
            raise
        reason = str(exc) if isinstance(exc, CertkitError) else f"{exc.strerror or exc} ({shown(exc.filename)})."
        raise CertkitError(f"{reason.rstrip()} But {created}") from None
