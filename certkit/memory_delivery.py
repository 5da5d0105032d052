"""Certificates a CA directory issues to memory (``ca.issue_server()``, ``ca.renew()``), and what
writing one to a folder later (:meth:`certkit.issued.IssuedCert.write`) records.

The inventory, the folders and ``certkit renew --expiring`` must never disagree. A renewal handed
to the caller in memory has reached no folder: were it recorded as the successor of a certificate
whose bundle is in a folder, that folder would be left to expire, skipped by every bulk renewal as
renewed already. So such a renewal is recorded as a certificate of its own (sink ``memory``), the old
one stays due where it is deployed, and the succession is recorded when the renewal is written over
that bundle (``new.write(folder, force=True)``), which also records the folder, so that later bulk
renewals renew it there. A renewal of a certificate that is in no folder is its successor at once:
nothing is stranded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from certkit.errors import CertkitError
from certkit.issuing import Target
from certkit.paths import absolute

if TYPE_CHECKING:
    from pathlib import Path

    from certkit.ca import CA
    from certkit.issued import IssuedCert


class UndeployedRenewal(Target):
    """Memory, for a renewal of the certificate ``old`` whose bundle is in ``folder``: recorded as a
    certificate of its own until it is written there."""

    succeeds = False

    def __init__(self, old: str, folder: str) -> None:
        self.old, self.deployed = old, folder


def renewal_target(ca: "CA", old: str) -> Target:
    """Where ``ca.renew()`` delivers the renewal of the certificate ``old``: memory; an
    :class:`UndeployedRenewal` when ``old`` is in a bundle folder, refused now (as recording a
    successor would be) if ``old`` is revoked, not valid, or renewed already."""
    if ca.inventory is None:
        return Target()
    row = ca.inventory.get(old)
    if row is None or not row.get("folder") or row.get("sink") not in (None, "folder"):
        return Target()
    from certkit.inventory.succession import check_renewable

    with ca.inventory.transaction(write=True) as tx:
        check_renewable(tx, old, folder=None, in_place=False, location=ca.inventory.location)
    return UndeployedRenewal(old, row["folder"])


def undeployed_note(target: UndeployedRenewal) -> str:
    return (f"{target.old} stays due for renewal in {target.deployed} ('certkit renew --expiring' renews it there) "
            f"until this certificate is written there: write({target.deployed!r}, force=True) records it as "
            f"renewing {target.old}")


class WriteRecorder:
    """What :meth:`IssuedCert.write` records of a certificate ``ca`` issued to memory: the folder it
    was first written to (so that bulk renewal finds it), and, when that folder held the bundle of
    another valid certificate of ``ca`` (the one it renews), that it succeeds that one."""

    def __init__(self, ca: "CA") -> None:
        self.ca = ca

    def before(self, issued: "IssuedCert", folder: "str | Path") -> tuple | None:
        """Before the bundle is placed, as the issuing pipeline records a delivery: the row is made pending
        with the folder it goes to (and the certificate whose bundle it replaces, if that one may still be
        renewed), in one write transaction, so that a failure once the bundle is in place (an inventory
        locked too long, Ctrl-C) leaves a row the next command settles by looking at the folder. Returns
        (folder, replaced, the row's renewed_from and sink before) for :meth:`after` / :meth:`undo`; None if nothing
        is to be recorded (the row has a folder already, or is not valid)."""
        from certkit.ca_checks import check_still_home
        from certkit.inventory.reconcile import writer_id
        from certkit.inventory.succession import check_renewable, replaced_certificate

        check_still_home(self.ca, "nothing was written")
        row = self.ca.inventory.get(issued.serial_hex)
        refuse_revoked(row, "written")
        newer = self.ca.inventory.rows("WHERE renewed_from = ? AND status IN ('valid', 'pending') "
                                       "ORDER BY issued_at", [issued.serial_hex]) if row is not None else []
        if newer:  # deployed now, it would expire where no renewal, list --expiring or check looks
            from certkit.errors import CannotRenew
            from certkit.inventory.succession import succession_words

            if newer[-1]["kind"] != issued.kind:  # no successor of its kind to write: a new one is
                raise CannotRenew(f"The {issued.kind} certificate {issued.serial_hex} was "
                                  f"{succession_words(issued.kind, newer[-1]['kind'], newer[-1]['serial'])}; a folder "
                                  f"holding it would be left to expire: issue a new {issued.kind} certificate instead.")
            raise CannotRenew(f"The certificate {issued.serial_hex} was renewed as {newer[-1]['serial']}; write that "
                              "one instead (this one is replaced, and a folder holding it would be left to expire).")
        if row is None or row.get("folder") or row["status"] != "valid":
            return None
        path = absolute(folder)
        replaced = replaced_certificate(self.ca, path)
        replaced = replaced if replaced != issued.serial_hex else None
        inventory = self.ca.inventory
        with inventory.transaction(write=True) as tx:
            if replaced is not None:
                try:
                    check_renewable(tx, replaced, folder=path, in_place=True, location=inventory.location)
                except CertkitError:
                    replaced = None  # revoked or renewed meanwhile: the folder is recorded, no succession
            changed = tx.execute(
                "UPDATE certificates SET status = 'pending', writer = ?, folder = ?, sink = 'folder',"
                " renewed_from = COALESCE(renewed_from, ?) WHERE serial = ? AND folder IS NULL AND status = 'valid'",
                (writer_id(), path, replaced, issued.serial_hex)).rowcount
        return (path, replaced, row.get("renewed_from"), row.get("sink")) if changed else None

    def after(self, issued: "IssuedCert", planned: tuple) -> list[str]:
        """Once the bundle is in place: settle the row valid (as the pipeline marks a delivery); notes.
        An inventory that cannot be written now is told truly: the bundle is in place, and the next certkit
        command that reaches the inventory records it (the row is pending with its folder)."""
        from contextlib import suppress

        from certkit.errors import InventoryError, Terminated, without_advice
        from certkit.text import shown

        try:
            notes = self.ca.inventory.mark_issued([issued.serial_hex]).get(issued.serial_hex, [])
            return notes + _other_kind(self.ca, issued, planned[1])
        except InventoryError as exc:
            raise InventoryError(f"{without_advice(exc)} {shown(planned[0])} was written whole; the next certkit "
                                 "command that reaches the inventory records it as issued in that folder ('certkit "
                                 "list' shows it), so do not write it again.") from None
        except (KeyboardInterrupt, Terminated):  # the bundle is in place: settled before the stop goes on
            with suppress(CertkitError):
                self.ca.inventory.mark_issued([issued.serial_hex])
            raise

    def undo(self, issued: "IssuedCert", planned: tuple, half: bool) -> None:
        """The bundle was not placed (or ``half`` placed: its journal finishes it, the row stays pending for
        the next command to settle): the row is again valid in memory, as before :meth:`before`; a bundle
        found complete in the folder after all is settled valid there. If the inventory cannot be written
        now, the row stays pending and the next command settles it by looking at the folder."""
        from certkit.inventory.reconcile import bundle_holds

        if half:
            return
        try:
            if bundle_holds(planned[0], issued.der, issued.private_key is not None):
                self.ca.inventory.mark_issued([issued.serial_hex])
                return
            with self.ca.inventory.transaction(write=True) as tx:
                tx.execute("UPDATE certificates SET status = 'valid', writer = NULL, folder = NULL, sink = ?,"
                           " renewed_from = ? WHERE serial = ? AND status || '' = 'pending'",
                           (planned[3], planned[2], issued.serial_hex))
        except (CertkitError, OSError):
            pass  # pending, with its folder: settled by the next command (valid if the folder holds it)


def refuse_revoked(row: dict | None, what: str) -> None:
    """As export-p12 refuses it: a certificate its CA's inventory ``row`` records as revoked is not
    ``what`` (written, packed into a PKCS#12 file): nobody may use its key."""
    if row is not None and row["status"] == "revoked":
        from certkit.errors import AlreadyRevoked
        from certkit.vocabulary import moment_text

        raise AlreadyRevoked(f"The certificate {row['serial']} was revoked on {moment_text(row['revoked_at'])} "
                             f"(reason: {row['revocation_reason']}); every verifier refuses it, so it is not {what}. "
                             "Issue a new one (with a new key) instead.")


def recorded_row(issued: "IssuedCert", what: str) -> dict | None:
    """The inventory row of ``issued`` in its CA's inventory (the recorder's, else the first CA directory it
    was issued from); None when it has neither (a CA made in memory). One that cannot be read refuses ``what``
    (written, packed), as export-p12 refuses: whether the certificate was revoked cannot be told."""
    from certkit.ca_checks import check_still_home
    from certkit.errors import CertkitError

    if issued.recorder is not None:  # its directory made again for another CA: that one's inventory knows nothing
        check_still_home(issued.recorder.ca, f"the certificate {issued.serial_hex} is not {what} (whether it was "
                                             "revoked cannot be told there)")
    try:
        if issued.recorder is not None:
            return issued.recorder.ca.inventory.get(issued.serial_hex)
        if issued.ca_directories:
            from certkit.store import CADirectory

            inventory = CADirectory(issued.ca_directories[0]).open().inventory
            return inventory.get(issued.serial_hex) if inventory is not None else None
    except (CertkitError, OSError) as exc:
        raise CertkitError(f"Whether the certificate {issued.serial_hex} was revoked cannot be told, so it is not "
                           f"{what}: {str(exc).rstrip('.')}.") from None
    return None



def remember_unrecorded(ca: "CA", items, issued: "list[IssuedCert]") -> bool:
    """What a CA with no inventory (made in memory) signed: kept with the CA object, so that
    :func:`record_issued_before` records it if the CA is saved (``CADirectory.save_new``). False if the CA
    has an inventory after all (saved by another thread meanwhile): then it is recorded there, as usual."""
    import weakref

    from certkit.ca_saving import UNRECORDED
    from certkit.inventory import Pending

    with UNRECORDED:
        if ca.inventory is not None:
            return False
        ca.unrecorded.extend(
            (Pending(one.cert, one.kind, str(target.folder) if target.folder else None, target.sink,
                     keyed=one.private_key is not None or getattr(target, "keeps_key", False)), weakref.ref(one))
            for (_request, target), one in zip(items, issued, strict=True))
    return True


def record_issued_before(ca: "CA", inventory, store) -> None:
    """Once ``ca``, made in memory, is saved: give it the ``inventory`` and ``store`` (CA directory) it records
    what it issues in from now on, as if loaded from there, and record in it, valid, what it signed before
    (certificates, intermediates), as certificates it issues from now on are, so that ``certkit list`` shows
    them and ``revoke`` and ``renew`` know them; a CRL could never list one otherwise. Those still held are
    told: a certificate written to a folder later records the folder (and is refused once revoked), an
    intermediate saved already is recorded in its directory, one saved later there."""
    from certkit.ca_saving import UNRECORDED
    from certkit.store_inventory import record_saved_ca
    from certkit.vocabulary import serial_hex

    with UNRECORDED:
        ca.inventory, ca.store = inventory, store
        waiting, ca.unrecorded = ca.unrecorded, []
    if not waiting:
        return
    inventory.record_pending([pending for pending, _held in waiting])
    inventory.mark_issued([serial_hex(pending.cert.serial_number) for pending, _held in waiting])
    for pending, held in waiting:
        one = held()
        if one is None:
            continue
        if pending.kind == "ca":
            if getattr(one, "_saved_in", None) is not None:
                record_saved_ca(inventory, serial_hex(pending.cert.serial_number), one._saved_in)
            else:
                one._recorded_by = inventory  # its save_new records where it is saved
            continue
        one.ca_directories = ca.directories
        if pending.sink == "memory":
            one.recorder = WriteRecorder(ca)


def record_pending(inventory, entries: list, *, durable: bool = True) -> list[int]:
    """``inventory.record_pending`` before anything is delivered (:func:`certkit.issuing.record`): an inventory that
    cannot be written (a full disk, a read-only file) is said with what it means, nothing issued (the certificates
    signed are recorded nowhere and written nowhere)."""
    from certkit.errors import InventoryError

    try:
        return inventory.record_pending(entries, durable=durable)
    except InventoryError as exc:
        if type(exc) is not InventoryError:  # a damaged row: its own words
            raise
        raise InventoryError(f"{str(exc).rstrip('.')}; nothing was issued or written.") from None


def _other_kind(ca: "CA", issued: "IssuedCert", replaced: str | None) -> list[str]:
    """The note for a bundle of another kind that this write replaced (as the issuing pipeline's)."""
    from certkit.inventory.succession import replaced_note

    row = ca.inventory.get(replaced) if replaced is not None else None
    note = replaced_note(row, issued.kind, issued.facts.names) if row is not None else None
    return [note] if note is not None else []
