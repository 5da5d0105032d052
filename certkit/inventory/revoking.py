"""Revocations in the inventory: a certificate revoked (for keyCompromise, with every certificate that holds
its key), and what a CRL lists: every revoked row, with the next CRL number, taken in the transaction that
reads them (the methods of :class:`certkit.inventory.Inventory` of the same names call these)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from certkit.constants import UNSEEN_SINKS
from certkit.errors import AlreadyRevoked, CABroken, CertkitError, UnknownCertificate
from certkit.inventory import schema
from certkit.inventory.rows import SELECT_ROW, iso, parse_iso, row_dict
from certkit.text import shown
from certkit.vocabulary import moment_text

if TYPE_CHECKING:
    from certkit.inventory import Inventory

KEY_COMPROMISE = "keyCompromise"  # the reason that revokes every certificate holding the key


def revoke(inventory: Inventory, serial: str, reason: str, when: dt.datetime | None) -> dict:
    """The row of ``serial``, revoked for ``reason`` at ``when`` (see :meth:`Inventory.revoke`)."""
    from certkit.revocation import parse_reason, revocation_time

    reason, when = parse_reason(reason), revocation_time(when)
    with inventory.transaction(write=True) as tx:
        if reason == KEY_COMPROMISE:  # every mark under way ends first, every later one sees it
            from certkit.inventory.compromise import hold_compromise_lock

            hold_compromise_lock(tx, shared=False)
        found = tx.execute("SELECT status, revoked_at, revocation_reason, kind, sink FROM certificates"
                           " WHERE serial = ? FOR UPDATE", (serial,)).fetchone()
        if found is None:
            raise UnknownCertificate(f"No certificate with serial {serial} was issued by this CA "
                                     f"(inventory {shown(inventory.location)}).")
        upgrade = found[0] == "revoked" and reason == KEY_COMPROMISE and found[2] != KEY_COMPROMISE
        if found[0] == "revoked" and not upgrade:
            raise AlreadyRevoked(f"The certificate {serial} was already revoked on {moment_text(found[1])} "
                                 f"(reason: {found[2]}).")
        if found[0] == "abandoned" and found[3] != "ca" and found[4] not in UNSEEN_SINKS:  # else: may be out
            raise UnknownCertificate(f"The certificate {serial} was never delivered (abandoned: its key was "
                                     "never stored), so there is nothing to revoke.")
        if reason == "cACompromise" and found[3] != "ca":
            raise CertkitError(f"cACompromise says a CA's key was compromised: it revokes a CA certificate "
                               f"(an intermediate, at its parent), not this {found[3]} certificate {serial}. "
                               "For a leaf whose key leaked, use keyCompromise.")
        tx.execute("UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ?"
                   " WHERE serial = ?", (found[1] if upgrade else iso(when), reason, serial))
        # A compromised key is compromised in every certificate that holds it (the one renewed
        # with its key kept, the renewal of it, a CSR signed twice): all go on the CRL, at once.
        from certkit.inventory.compromise import same_key

        sharers, unchecked = same_key(tx, serial) if reason == KEY_COMPROMISE else ([], [])
        for other in sharers:  # dated when the key was compromised, or, for one issued later, its notBefore
            tx.execute("UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ?"
                       " WHERE serial = ?", (iso(max(when, _born(tx, other, when))), reason, other))
    row = inventory.get(serial)
    # In the words of `certkit revoke --json`: the serials alone; unchecked_rows also says why each is
    row["also_revoked"], row["unchecked"], row["unchecked_rows"] = sharers, [s for s, _ in unchecked], unchecked
    row["reason_was"] = found[2] if upgrade else None
    return row


def _born(tx, serial: str, when: dt.datetime) -> dt.datetime:
    """The notBefore the row of ``serial`` records, if it has come (``when`` if it cannot be read): a certificate of a
    compromised key issued after ``when`` is revoked from its start, as no certificate is revoked before it existed
    (nor in the future: one not valid yet is revoked now)."""
    try:
        born = parse_iso(tx.execute("SELECT not_before FROM certificates WHERE serial = ?", (serial,)).fetchone()[0])
    except (ValueError, TypeError):
        return when
    return min(born, dt.datetime.now(dt.UTC))


def revoked(inventory: Inventory) -> list[tuple[str, dt.datetime, str]]:
    """Every revoked row, for the CRL (see :meth:`Inventory.revoked`)."""
    rows = inventory.rows("WHERE status = 'revoked' OR status NOT IN ('pending', 'valid', 'abandoned')"
                          " ORDER BY revoked_at, serial")
    return _revocations(inventory, rows)


def _revocations(inventory: Inventory, rows: list[dict]) -> list[tuple[str, dt.datetime, str]]:
    """(serial, revoked_at, reason) of revoked rows; a reason no CRL can state refuses them all."""
    from certkit.revocation import stored_reason

    return [(r["serial"], parse_iso(r["revoked_at"]), stored_reason(r["serial"], r["revocation_reason"],
                                                                    inventory.location)) for r in rows]


def next_crl_number(inventory: Inventory) -> int:
    """Take the next CRL number (see :meth:`Inventory.next_crl_number`)."""
    with inventory.transaction(write=True) as tx:
        return _take_crl_number(inventory, tx)


def _take_crl_number(inventory: Inventory, tx, above: int = 0) -> int:
    # The row exists before it is locked, so two first CRLs cannot both take number 1.
    tx.execute("INSERT INTO meta (key, value) VALUES ('crl_number', '0') ON CONFLICT (key) DO NOTHING")
    found = tx.execute("SELECT value FROM meta WHERE key = 'crl_number' FOR UPDATE").fetchone()
    problem = schema.crl_number_problem(found[0])
    if problem:
        raise CABroken(f"The inventory {shown(inventory.location)} {problem}: a CRL numbered from it could repeat "
                       "one already published; restore the inventory from a backup. No CRL was signed.")
    number = max(int(found[0]), above) + 1
    tx.execute("UPDATE meta SET value = ? WHERE key = 'crl_number'", (str(number),))
    return number


def crl_contents(inventory: Inventory, above: int = 0) -> tuple[int, list[tuple[str, dt.datetime, str]]]:
    """The next CRL number and every revocation, in one transaction (see :meth:`Inventory.crl_contents`)."""
    with inventory.transaction(write=True) as tx:
        number = _take_crl_number(inventory, tx, above)  # the number's row lock orders the CRLs
        fetched = tx.execute(f"{SELECT_ROW} WHERE status = 'revoked' OR status NOT IN ('pending', 'valid',"
                             " 'abandoned') ORDER BY revoked_at, serial").fetchall()
        # Inside the transaction: a row no CRL can list refuses the CRL, and the number is not taken.
        return number, _revocations(inventory, [row_dict(values) for values in fetched])
