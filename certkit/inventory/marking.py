"""Marking delivered certificates valid, in the writer's transaction, whatever happened to their rows meanwhile.

A writer marks its rows once their bundles are complete on disk (or in the hands of whoever asked
for them). By then a row may no longer be pending:

- **revoked**, by ``certkit revoke`` of the pending certificate, or for keyCompromise of its key
  (:mod:`certkit.inventory.compromise`): it stays revoked, and the writer is told;
- **abandoned**, by a command that judged the writer dead when it was not (one that cannot see the
  writer's process: another PID namespace, a container sharing the CA volume): the bundle is
  there, so the row is made valid again, and the writer is told. Never left abandoned, which
  would claim that its key was never stored and refuse to revoke a certificate in use.
"""

from __future__ import annotations

from collections.abc import Sequence

# The most parameters one statement takes: well under SQLite's oldest limit of 999.
PARAMS_PER_STATEMENT = 500


def mark_issued(tx, serials: Sequence[str], still_pending: str) -> dict[str, list[str]]:
    """Mark the rows of ``serials`` valid (see the module docstring); return notes by serial."""
    from certkit.inventory.compromise import (
        compromised_keys,
        hold_compromise_lock,
        revoke_compromised,
        revoke_compromised_successors,
    )

    notes: dict[str, list[str]] = {}
    hold_compromise_lock(tx, shared=True)  # a keyCompromise revocation waits, or is seen below
    keys = compromised_keys(tx)
    for start in range(0, len(serials), PARAMS_PER_STATEMENT):
        part = list(serials[start:start + PARAMS_PER_STATEMENT])
        marks = ",".join("?" * len(part))
        abandoned, renewals, revoked = _rows_to_look_at(tx, part, marks)
        for serial in _unabandon(tx, abandoned, _marks(abandoned)) if abandoned else ():
            notes.setdefault(serial, []).append(
                f"another certkit command, which could not see this one still writing it (another PID namespace "
                f"or host), had recorded {serial} as abandoned; its bundle is complete, so it is recorded as "
                "valid again")
        for serial, note in [
                *(revoke_compromised_successors(tx, renewals, _marks(renewals), still_pending) if renewals else ()),
                *revoke_compromised(tx, part, marks, keys, still_pending),
                *(_revoked_meanwhile(tx, revoked, _marks(revoked)) if revoked else ())]:
            notes.setdefault(serial, []).append(note)
        # The writer stays on the valid row: the host it names wrote the bundle folder, and a bulk renewal on
        # another host sharing the inventory knows the folder is that host's, not moved (certkit.fleet.plan).
        tx.execute(f"UPDATE certificates SET status = 'valid' WHERE serial IN ({marks}) AND {still_pending}", part)
    return notes


def _rows_to_look_at(tx, part: list[str], marks: str) -> tuple[list[str], list[str], list[str]]:
    """Of the rows of ``part``: those abandoned, the renewals, those revoked; read in one look-up per row
    (each of the checks above then reads only its own rows, instead of looking every serial up again),
    and locked (PostgreSQL) until the marking commits, so that what they were read as still holds."""
    abandoned, renewals, revoked = [], [], []
    for serial, status, renewed_from in tx.execute(
            f"SELECT serial, status, renewed_from FROM certificates WHERE serial IN ({marks}) FOR UPDATE",
            part).fetchall():
        if status == "abandoned":
            abandoned.append(serial)
        elif status == "revoked":
            revoked.append(serial)
        if renewed_from is not None:
            renewals.append(serial)
    return abandoned, renewals, revoked


def _marks(part: list[str]) -> str:
    return ",".join("?" * len(part))


def _revoked_meanwhile(tx, part: list[str], marks: str) -> list[tuple[str, str]]:
    """The rows of ``part`` someone revoked (certkit revoke SERIAL) while they were being written: they
    stay revoked, and the writer says so (its bundle is delivered revoked), with the CRL to publish."""
    from certkit.vocabulary import moment_text

    found = tx.execute(f"SELECT serial, revocation_reason, revoked_at FROM certificates WHERE serial IN ({marks})"
                       " AND status || '' = 'revoked' AND writer IS NOT NULL FOR UPDATE", part).fetchall()
    if found:
        tx.execute(f"UPDATE certificates SET writer = NULL WHERE serial IN ({','.join('?' * len(found))})",
                   [serial for serial, _reason, _at in found])
    return [(serial, f"{serial} was revoked ({reason}, {moment_text(at)}) while it was being written: it is "
                     "delivered revoked, and peers that read the CRL refuse it; issue a new one (with a new key "
                     "for keyCompromise), and publish a new CRL: certkit crl --out crl.pem")
            for serial, reason, at in found]


def _unabandon(tx, part: list[str], marks: str) -> list[str]:
    """Make pending again the rows of ``part`` that were settled as abandoned while their writer
    lived (it is marking them now: their bundles are complete), so that they are marked as the
    others are, the compromise checks included; return their serials."""
    found = [serial for (serial,) in tx.execute(
        f"SELECT serial FROM certificates WHERE serial IN ({marks}) AND status || '' = 'abandoned' FOR UPDATE",
        part).fetchall()]
    if found:
        tx.execute(f"UPDATE certificates SET status = 'pending' WHERE serial IN ({','.join('?' * len(found))})",
                   found)
    return found


def refuse_lost(inventory, groups) -> None:
    """Refuse rows recorded with ``durable=False`` that the inventory no longer holds once it is synced.

    Such a commit waits for no disk: a database server that crashes (or fails over to a standby) before
    writing it loses it, and its next connection knows nothing of that. A batch's output file was put in
    place after a sync on that new connection, with certificates (and their keys) no row records: not
    listed, not revocable, never on a CRL, while the batch said they were issued. (An SQLite file loses such
    a commit only in an operating-system crash, which this process does not outlive.)"""
    from certkit.errors import InventoryError
    from certkit.text import shown

    if inventory.db.dialect != "postgresql":  # SQLite's commits are this process's own: lost only with it
        return
    total, lost = 0, []
    for group in groups:
        total += len(group)
        with inventory.transaction() as tx:  # (one array parameter: PostgreSQL only)
            if tx.execute("SELECT count(*) FROM certificates WHERE serial = ANY(?)", (list(group),)).fetchone()[0] \
                    < len(set(group)):
                lost += sorted(set(group) - inventory._existing(tx, list(group)))
    if lost:
        raise InventoryError(
            f"The inventory {shown(inventory.location)} lost {len(lost)} of the {total} certificates recorded for this "
            f"output (serial {lost[0]}{' and others' if len(lost) > 1 else ''}): they were recorded without waiting "
            "for the database server's disk, and the server restarted (a crash, a failover) before it wrote them. "
            "Nothing was put in place and no certificate of it is valid; run the command again.")
