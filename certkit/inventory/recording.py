"""Recording signed certificates ``pending`` before any file is written (step 4 of the issuing pipeline): in
one transaction, the renewals among them checked (:func:`certkit.inventory.succession.check_renewable`) and
the serials found taken, which the caller re-signs (:meth:`certkit.inventory.Inventory.record_pending`)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from certkit.inventory import _PARAMS_PER_STATEMENT
from certkit.inventory.rows import facts_of, iso
from certkit.inventory.succession import check_renewable

if TYPE_CHECKING:
    from certkit.inventory import Inventory, Pending


def record_pending(inventory: Inventory, entries: Sequence[Pending], *, durable: bool = True) -> list[int]:
    """The indexes of ``entries`` not recorded because their serial is taken (see :meth:`Inventory.record_pending`)."""
    from certkit.inventory.reconcile import writer_id

    now, writer = iso(dt.datetime.now(dt.UTC)), writer_id()
    rows = []
    for e in entries:
        f = e.facts or facts_of(e.cert)
        rows.append((f.serial, e.kind, f.subject, json.dumps(f.names), f.not_before, f.not_after, f.fingerprint,
                     f.der, "pending", e.renewed_from, now, e.folder, e.sink, writer, int(e.keyed)))
    taken: list[int] = []
    with inventory.transaction(write=True, durable=durable) as tx:
        for e in entries:
            if e.renewed_from:
                check_renewable(tx, e.renewed_from, folder=e.folder, in_place=e.in_place, location=inventory.location)
        existing = inventory._existing(tx, [row[0] for row in rows])
        fresh = []
        for index, row in enumerate(rows):
            if row[0] in existing:
                taken.append(index)
            else:
                existing.add(row[0])  # a duplicate within ``entries`` is taken too
                fresh.append(row)
        # ON CONFLICT: another host may record the same serial between the SELECT above and
        # this INSERT (PostgreSQL does not lock the whole table as SQLite does); the primary
        # key keeps one of them, and the other is told its serial is taken.
        inserted = tx.executemany(
            "INSERT INTO certificates (serial, kind, subject, names, not_before, not_after, fingerprint_sha256,"
            " der, status, renewed_from, issued_at, folder, sink, writer, keyed)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (serial) DO NOTHING", fresh).rowcount
        if fresh and inserted != len(fresh):
            theirs = _fingerprints(tx, [row[0] for row in fresh])
            lost = {row[0] for row in fresh if theirs.get(row[0]) != row[6]}
            taken = sorted(taken + [i for i, row in enumerate(rows) if row[0] in lost and i not in taken])
    return taken


def _fingerprints(tx, serials: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for start in range(0, len(serials), _PARAMS_PER_STATEMENT):
        part = serials[start:start + _PARAMS_PER_STATEMENT]
        found.update(tx.execute("SELECT serial, fingerprint_sha256 FROM certificates WHERE serial IN"
                                f" ({','.join('?' * len(part))})", part).fetchall())
    return found
