"""A key revoked for keyCompromise is compromised in every certificate that holds it, whenever that
certificate is marked delivered, on either backend.

``revoke(..., keyCompromise)`` revokes the delivered certificates that share the key
(:func:`same_key`); one still being written when that happens is revoked when it is marked
(:func:`revoke_compromised`), however it was issued (a renewal keeping its key, a CSR signed again,
``key=``). On SQLite, writers take turns (``BEGIN IMMEDIATE``). On PostgreSQL they do not, so the two
sides share an advisory lock (:func:`hold_compromise_lock`): marking takes it shared, a keyCompromise
revocation exclusive, and each then sees what the other committed.
"""

from __future__ import annotations

import datetime as dt

from certkit.errors import CertkitError
from certkit.inventory.rows import iso, load_der
from certkit.vocabulary import moment_text

# Any constant, the same on every host: "certkcmp".
COMPROMISE_LOCK = 0x636572746B636D70


def hold_compromise_lock(tx, *, shared: bool) -> None:
    """Hold the keyCompromise lock until ``tx`` ends (PostgreSQL; SQLite's writers take turns already)."""
    if tx.dialect == "postgresql":
        tx.execute(f"SELECT pg_advisory_xact_lock{'_shared' if shared else ''}({COMPROMISE_LOCK})")


def compromised_keys(tx) -> dict[bytes, tuple[str, str]]:
    """The public keys (DER) of the certificates revoked for keyCompromise: serial and revocation time."""
    from certkit.keys import public_key_der

    keys: dict[bytes, tuple[str, str]] = {}
    for serial, der, revoked_at in tx.execute("SELECT serial, der, revoked_at FROM certificates WHERE status = "
                                              "'revoked' AND revocation_reason = 'keyCompromise'").fetchall():
        try:
            keys.setdefault(public_key_der(load_der(serial, der).public_key()), (serial, revoked_at))
        except CertkitError:
            continue  # a damaged row: check names it
    return keys


def same_key(tx, serial: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The other delivered, unrevoked certificates whose public key is that of ``serial`` (a renewal still
    being written is revoked, and told so, when it is marked: mark_issued); and (serial, why) of each such row
    whose certificate cannot be read: whether it holds that key cannot be told, so it is named, never skipped."""
    from certkit.errors import DamagedRow
    from certkit.keys import public_key_der

    (der,) = tx.execute("SELECT der FROM certificates WHERE serial = ?", (serial,)).fetchone()
    wanted = public_key_der(load_der(serial, der).public_key())
    found, unchecked = [], []
    for other, other_der in tx.execute("SELECT serial, der FROM certificates WHERE status || '' = 'valid'"
                                       " AND kind <> 'ca' AND serial <> ?", (serial,)):
        try:
            if public_key_der(load_der(other, other_der).public_key()) == wanted:
                found.append(other)
        except DamagedRow as exc:
            unchecked.append((other, exc.reason))
    return sorted(found), sorted(unchecked)


def revoke_compromised(tx, serials: list[str], marks: str, keys: dict[bytes, tuple[str, str]],
                       still_pending: str) -> list[tuple[str, str]]:
    """Revoke, for keyCompromise, the pending rows of ``serials`` whose key is one of ``keys``;
    return (serial, note) for each."""
    from certkit.keys import public_key_der

    if not keys:
        return []
    notes = []
    for serial, der in tx.execute(f"SELECT serial, der FROM certificates WHERE serial IN ({marks})"
                                  f" AND {still_pending}", serials).fetchall():
        found = keys.get(public_key_der(load_der(serial, der).public_key()))
        if found is None:
            continue
        tx.execute("UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = 'keyCompromise',"
                   " writer = NULL WHERE serial = ?", (iso(dt.datetime.now(dt.UTC)), serial))
        notes.append((serial, f"its key was revoked for keyCompromise ({found[0]}, {moment_text(found[1])}) while "
                              f"{serial} was being issued, so {serial} is revoked too; issue a new certificate with "
                              "a new key"))
    return notes


def revoke_compromised_successors(tx, serials: list[str], marks: str, still_pending: str) -> list[tuple[str, str]]:
    """Revoke the pending renewals among ``serials`` that keep the key of a predecessor revoked
    (for any reason) while they were being written; return (serial, note) for each."""
    from certkit.keys import public_key_der

    notes = []
    # The predecessors locked (PostgreSQL): a revocation of one that is under way is waited for,
    # and its status read as it committed.
    for serial, der, old, old_der, status, revoked_at, reason in tx.execute(
            "SELECT n.serial, n.der, o.serial, o.der, o.status, o.revoked_at, o.revocation_reason"
            " FROM certificates n JOIN certificates o ON o.serial = n.renewed_from"
            f" WHERE n.serial IN ({marks}) AND n.{still_pending} FOR UPDATE OF o", serials).fetchall():
        if status != "revoked":
            continue
        new_key, old_key = load_der(serial, der).public_key(), load_der(old, old_der).public_key()
        if public_key_der(new_key) != public_key_der(old_key):
            continue  # a new key: the revocation of the old one does not touch it
        tx.execute("UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ?,"
                   " writer = NULL WHERE serial = ?", (iso(dt.datetime.now(dt.UTC)), reason, serial))
        notes.append((serial, f"{old} was revoked ({reason}, {moment_text(revoked_at)}) while its renewal {serial} was "
                              f"being written with the same key, so {serial} is revoked too; issue a new "
                              "certificate with a new key"))
    return notes
