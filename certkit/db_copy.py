"""Moving an SQLite inventory into an empty PostgreSQL database (``certkit inventory migrate``):
:func:`copy_inventory` copies every table inside one transaction of the target, compares every
row column by column, and commits only if all are equal (:class:`Copied` says what moved). The
caller holds the SQLite write lock meanwhile (:meth:`certkit.store.CADirectory.move_inventory`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from certkit.db_url import shown_url
from certkit.errors import InventoryError
from certkit.text import shown

if TYPE_CHECKING:
    from certkit.db_postgres import PostgresDatabase


@dataclass
class Copied:
    """What :func:`copy_inventory` moved: rows per table, each compared after the copy."""

    tables: dict[str, int]
    resumed: bool = False  # the target held this very copy already (a migration interrupted after its commit)

    @property
    def rows(self) -> int:
        return sum(self.tables.values())


def copy_inventory(source_tx, target: PostgresDatabase, binding: tuple[str, str],
                   extra_schema: Sequence[str] = ()) -> Copied:
    """Copy every table of an SQLite inventory (``source_tx``, a write transaction the caller holds,
    so nothing changes meanwhile) into the empty database ``target``, compare every row, and commit
    only if all are equal. ``binding`` is the meta row tying the inventory to its CA;
    ``extra_schema`` creates the other tables that live beside the certificates (the ACME server's).

    A target that holds exactly this inventory already (the same binding, every row equal) is
    accepted as it is (``resumed``): a migration interrupted after this commit can be run again.
    """
    from certkit.inventory import schema

    tables = [name for (name,) in source_tx.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    if "certificates" not in tables:
        raise InventoryError("The inventory to move has no certificates table; nothing was copied.")
    copied: dict[str, int] = {}
    with target.transaction(write=True) as tx:
        resumed = tx.execute("SELECT to_regclass('certificates') IS NOT NULL").fetchone()[0]
        if resumed:
            found = tx.execute("SELECT value FROM meta WHERE key = ?", (binding[0],)).fetchone()
            if found is None or found[0] != binding[1]:
                raise InventoryError(f"The database {shown_url(target.url)} already holds a certkit inventory "
                                     f"{'of another CA' if found else 'tied to no CA'}; move this one into an empty "
                                     "database; nothing was changed.")
        else:
            target.refuse_encoding(tx)
            others = [name for (name,) in tx.execute("SELECT table_name FROM information_schema.tables"
                                                     " WHERE table_schema = current_schema() ORDER BY 1")]
            if others:
                raise InventoryError(f"The database {shown_url(target.url)} is not empty (it holds "
                                     f"{', '.join(shown(n) for n in others[:5])}{', ...' if len(others) > 5 else ''});"
                                     " move the inventory into an empty database; nothing was changed.")
            for statement in [*schema.create_statements("postgresql"), *extra_schema]:
                tx.execute(statement)
        differences, used, lacking = [], [], 0
        for table in tables:
            columns, rows = _rows(source_tx, table)
            if table == "meta":  # the schema version is the target's own; the binding is added below
                rows = [r for r in rows if r[0] not in ("schema_version", binding[0])]
            if not resumed and rows:
                marks = ",".join("?" * len(columns))
                for start in range(0, len(rows), 1000):
                    tx.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                                   rows[start:start + 1000])
            copied[table] = len(rows)
            theirs = _target_rows(tx, table, columns)
            if (difference := _difference(theirs, rows, columns, table, target.url)) and not resumed:
                raise InventoryError(f"After copying, {difference}; nothing was changed.")
            differences += [difference] if difference else []
            used += [u] if resumed and (u := _used_since(theirs, rows, columns, table)) else []
            lacking += len([r for r in rows if r[0] not in theirs]) if table == "certificates" else 0
        _refuse_outgrown(target.url, differences, used, lacking)
        if not resumed:
            tx.execute("INSERT INTO meta (key, value) VALUES (?, ?)", binding)
    return Copied(copied, resumed)


def _refuse_outgrown(url: str, differences: list[str], used: list[str], lacking: int) -> None:
    """Refuse a target holding a copy of this inventory that no longer matches it: one used since (``used``:
    the live inventory another copy of this CA directory moved there), never to be dropped, whatever this
    file holds that it lacks (``lacking`` certificates); else an earlier copy a stopped move left
    (``differences``), which this inventory has outgrown."""
    if used:
        alone = (f" This file holds {lacking} certificate{'s' if lacking > 1 else ''} the database does not "
                 "(issued from this copy): they are in no shared record.") if lacking else ""
        raise InventoryError(f"The database {shown_url(url)} holds this CA's inventory, used since it was copied "
                             f"there ({used[0]}): another copy of this CA directory moved it there and goes on "
                             "with it, and this inventory file is an older copy. Do not drop the database; use it "
                             "here as that copy does (its certkit-ca.json names it); nothing was changed." + alone)
    if differences:
        raise InventoryError(f"The database {shown_url(url)} holds an earlier copy of this inventory, which it no "
                             f"longer matches ({differences[0]}): a move that stopped before it named the database, "
                             "and certificates issued since. Drop the database, create it empty again, and run "
                             "this again; nothing was changed.")


def _rows(tx, table: str) -> tuple[list[str], list[tuple]]:
    """Every row of ``table``, in the order of its first column (every inventory table's key)."""
    cursor = tx.execute(f"SELECT * FROM {table} ORDER BY 1")
    columns = [d[0] for d in cursor.description]
    return columns, [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in cursor.fetchall()]


def _target_rows(tx, table: str, columns: list[str]) -> dict:
    """The rows of ``table`` in the target, by their first column (the binding and schema version of meta left out)."""
    cursor = tx.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY 1")
    theirs = {row[0]: tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in cursor.fetchall()}
    if table == "meta":
        theirs = {k: v for k, v in theirs.items() if k != "schema_version" and not k.startswith("ca_certificate")}
    return theirs


def _difference(theirs: dict, rows: list[tuple], columns: list[str], table: str, url: str) -> str | None:
    """How ``table`` in the target (``theirs``) differs from its source rows (column by column, and no row
    more), in words; None if it does not."""
    ours = {row[0] for row in rows}
    missing = next((row[0] for row in rows if row[0] not in theirs), None)
    extra = next((key for key in theirs if key not in ours), None)
    if len(theirs) != len(rows) or missing is not None or extra is not None:
        which = [f"the row {shown(str(key))} {where}" for key, where in
                 ((missing, "is not there"), (extra, "is not in this file")) if key is not None]
        return f"{shown_url(url)} holds {len(theirs)} rows in {table}, not {len(rows)} ({'; '.join(which)})" \
            if len(theirs) != len(rows) else f"{shown_url(url)} holds other rows in {table} ({'; '.join(which)})"
    for row in rows:
        if theirs[row[0]] != row:
            differing = [c for c, a, b in zip(columns, row, theirs[row[0]], strict=True) if a != b]
            return f"the row {shown(str(row[0]))} of {table} differs in {shown_url(url)} ({', '.join(differing)})"
    return None


# The tables whose rows are never deleted (expired nonces and a listener's key are).
_NEVER_DELETED = ("certificates", "meta", "acme_accounts", "acme_orders", "acme_authorizations", "acme_challenges")
# How far a certificate's status has come: a copy taken from the source earlier is never further on.
_PROGRESS = {"pending": 0, "valid": 1, "abandoned": 1, "revoked": 2}


def _used_since(theirs: dict, rows: list[tuple], columns: list[str], table: str) -> str | None:
    """What in the target's ``table`` no earlier copy of the source rows can hold (a copy taken from this
    inventory, which has only gone on since): a row the source lacks, a certificate further on there (revoked,
    settled), a higher CRL number; in words, or None. Such a target is a live inventory, not a stale copy."""
    ours = {row[0]: row for row in rows}
    extra = [key for key in theirs if key not in ours] if table in _NEVER_DELETED else []
    if extra:
        return f"{len(extra)} row{'s' if len(extra) > 1 else ''} of {table} that this file lacks"
    if table == "certificates":
        at = columns.index("status")
        for key, row in theirs.items():
            if _PROGRESS.get(row[at], 0) > _PROGRESS.get(ours[key][at], 0):
                return f"the certificate {shown(str(key))} is {shown(str(row[at]))} there, {ours[key][at]} here"
    if table == "meta" and all(str(r.get("crl_number", ("", ""))[1]).isdigit() for r in (theirs, ours)):
        if int(theirs["crl_number"][1]) > int(ours["crl_number"][1]):
            return f"CRL number {theirs['crl_number'][1]} was signed there, {ours['crl_number'][1]} here"
    return None
