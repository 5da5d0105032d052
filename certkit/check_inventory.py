"""The inventory's part of ``certkit check``: the inventory read as it is (nothing migrated, settled or
written): there, of this CA, of a schema this certkit reads, SQLite's integrity check passed, every row
readable and true to its certificate and issued by this CA, and its pending rows and killed servers said;
for PostgreSQL, the server reached, its encoding and whether this host can write there
(:mod:`certkit.check` runs it with the other checks)."""

from __future__ import annotations

import sqlite3

from certkit.check import Finding
from certkit.errors import CertkitError
from certkit.store import CERT_FILE, CADirectory


def _missing(inventory) -> Finding:
    """Why an inventory that is not there is not there, in words."""
    if inventory.db.dialect != "sqlite":
        return Finding("inventory", "error", f"{inventory.location} holds no certkit inventory (its tables are "
                                             "missing); check the URL, or restore it from a backup.")
    import os

    if os.path.lexists(inventory.path) and not os.path.isfile(inventory.path):
        from certkit.vocabulary import file_kind_text

        return Finding("inventory", "error", f"{inventory.location} is {file_kind_text(inventory.path)}; the CA "
                                             "directory is damaged: restore the inventory from a backup.")
    return Finding("inventory", "error", f"{inventory.location} is missing; the CA directory is incomplete.")


def _schema(inventory, version: int) -> list[Finding]:
    """The schema version against this certkit's, the tables against the version, the CRL number."""
    from certkit.inventory import SCHEMA_VERSION, schema

    if version > SCHEMA_VERSION:
        return [Finding("inventory", "error", f"{inventory.location} was written by a newer certkit (schema "
                        f"{version}, this one knows {SCHEMA_VERSION}); upgrade certkit.")]
    with inventory._read(readonly=True) as tx:
        number = tx.execute("SELECT value FROM meta WHERE key = 'crl_number'").fetchone() \
            if version > 1 else None
        shape = schema.shape_problem(tx, version) or (schema.crl_number_problem(number[0]) if number else None)
    if shape:
        return [Finding("inventory", "error", f"{inventory.location} {shape}; restore it from a backup.")]
    if version < SCHEMA_VERSION:
        return [Finding("inventory", "warning", f"schema version {version}; the next command that opens it "
                        f"migrates it to version {SCHEMA_VERSION} (check changes nothing).")]
    return []


def _check_inventory(store: CADirectory, cert=None) -> list[Finding]:
    """The inventory read as it is: nothing migrated, settled or written (query_only)."""
    from certkit.inventory import SCHEMA_VERSION
    from certkit.inventory.audit import audit
    from certkit.serve_own import killed_servers

    try:
        inventory = store.inventory
        present = inventory.db.exists()
    except CertkitError as exc:  # a shared inventory that cannot be reached
        return [Finding("inventory", "error", str(exc))]
    if not present:
        return [_missing(inventory)]
    found: list[Finding] = []
    if moved := _moved(inventory):  # a backup of the day it moved: not read as the inventory
        return moved
    from certkit.store import check_binding

    try:  # another CA's inventory (a wrong $CERTKIT_INVENTORY_URL), SQLite too: as every other command refuses it
        if cert is not None:
            check_binding(inventory, cert)
        if inventory.db.dialect != "sqlite":
            found += _database(inventory)
    except CertkitError as exc:
        return [Finding("inventory", "error", str(exc))]
    try:
        version = inventory.version(readonly=True)
        schema_found = _schema(inventory, version)
        if any(f.level == "error" for f in schema_found):
            return schema_found
        found += schema_found
        integrity = _integrity(inventory)
        if integrity != "ok":
            return [Finding("inventory", "error", f"{inventory.location} failed SQLite's integrity check: "
                            f"{integrity}. Restore it from a backup.")]
        audited = audit(inventory, cert)
        deleted = _deleted(inventory, cert, version, store.path)
        pending, killed, left = inventory.pending_count(), killed_servers(inventory), _leftovers(inventory, version)
    except CertkitError as exc:
        return [Finding("inventory", "error", str(exc))]
    except sqlite3.Error as exc:  # in the inventory's words (never SQLite's raw bytes of a damaged row)
        return [Finding("inventory", "error", str(inventory.db.error(exc)))]
    for row in audited.damaged:
        found.append(Finding("inventory-row", "error", f"serial {row.serial}: {row.reason}.{_RESTORE}"))
    found.extend(_listed("inventory-row", audited.contradicted, "rows contradict their certificates") + deleted)
    readable = audited.count - len(audited.damaged)
    if audited.foreign and len(audited.foreign) == readable and readable > 1:
        found.append(Finding("issuer", "error", f"none of the {readable} certificates in {inventory.location} was "
                             f"issued by this CA ({cert.subject.rfc4514_string()}): the inventory, or ca.pem and "
                             "ca-key.pem, come from another CA. Restore the files that belong together."))
    found.extend(_listed("issuer", audited.foreign, "certificates were not issued by this CA"))
    if pending:
        found.extend(_pending(inventory))
    found += [Finding("serve", "warning", f"{text}.") for text in killed] + left
    if not (audited.damaged or audited.contradicted or audited.foreign or deleted):
        issued = "each issued by this CA" if cert is not None else f"issuers not checked ({CERT_FILE} cannot be used)"
        count = f"{audited.count} certificate{'s' if audited.count != 1 else ''}"
        found.append(Finding("inventory", "ok", f"{count} recorded, every row readable and true "
                                                f"to its certificate, {issued}, schema version "
                                                f"{min(version, SCHEMA_VERSION)}"
                                                + (" (current)" if version == SCHEMA_VERSION else "")))
    return found


def _deleted(inventory, cert, version: int, ca_dir) -> list[Finding]:
    """Rows deleted by hand (a renewal of an unknown serial, a bundle of this CA's unrecorded, beside another
    or beside ``ca_dir``); none judged without this CA's certificate."""
    from certkit.check_unrecorded import unrecorded

    return unrecorded(inventory, cert, version, ca_dir) if cert is not None else []


def _leftovers(inventory, version: int) -> list[Finding]:
    """A warning per temporary file or folder a killed writer left in or beside a place the inventory records
    (:func:`certkit.check_leftovers.dead_temporaries`), with the command that removes it. An inventory of a schema
    that records no sinks (check migrates nothing) has no rows of such writers."""
    import shlex

    from certkit.check_leftovers import dead_temporaries
    from certkit.inventory import schema

    if "sink" not in schema.COLUMNS.get(version, ()):
        return []
    found = dead_temporaries(inventory)
    said = [Finding("leftovers", "warning", f"{path} was left by a certkit command killed while writing it; it may "
                    f"hold a private key. Remove it: rm -r -- {shlex.quote(path)}") for path in found[:ROWS_LISTED]]
    if len(found) > ROWS_LISTED:
        said.append(Finding("leftovers", "warning", f"{len(found) - ROWS_LISTED} more such leftovers (not listed)."))
    return said


def _database(inventory) -> list[Finding]:
    """The PostgreSQL server reached, and a warning if this host cannot write the inventory there, or its
    encoding cannot hold every name."""
    from certkit.db_postgres import ENCODINGS_KEPT

    found = [Finding("database", "ok", f"PostgreSQL {inventory.db.server_version()} at {inventory.location}")]
    if (encoding := inventory.db.encoding()).upper() not in ENCODINGS_KEPT:
        found.append(Finding("database", "warning", f"{inventory.location} is encoded in {encoding}: a name outside "
                             "it cannot be recorded, and its certificate is refused; copy the inventory (pg_dump, "
                             "pg_restore) into a database created with ENCODING 'UTF8'"))
    if (why := inventory.db.unwritable()) is not None:  # list and check work; nothing else does
        found.append(Finding("database", "warning", f"{inventory.location} {why}: certkit list and check work, but "
                             "issuing, renewing, revoking and signing CRLs fail here"))
    return found


def _moved(inventory) -> list[Finding]:
    from certkit.store_inventory import check_not_moved

    try:
        check_not_moved(inventory)
    except CertkitError as exc:
        return [Finding("inventory", "error", str(exc))]
    return []


def _pending(inventory) -> list[Finding]:
    """The pending rows, by what holds them (:func:`certkit.inventory.reconcile.pending_words`)."""
    from certkit.inventory.reconcile import pending_words

    with inventory._read(readonly=True) as tx:
        rows = tx.execute("SELECT writer, issued_at, sink FROM certificates WHERE status = 'pending'").fetchall()
    return [Finding("inventory", "warning", f"{text}.") for text in pending_words(rows)]


ROWS_LISTED = 20  # per kind of problem: a foreign inventory of 100,000 rows is not 100,000 lines


# What to do about a row changed, or copied in, outside certkit: each finding says it (certkit repairs nothing).
_RESTORE = " Restore the inventory from a backup made before the change, then run certkit check again."


def _listed(check: str, rows: list, what: str) -> list[Finding]:
    found = [Finding(check, "error", f"serial {row.serial}: {row.reason}.{_RESTORE}") for row in rows[:ROWS_LISTED]]
    if len(rows) > ROWS_LISTED:
        found.append(Finding(check, "error", f"{len(rows) - ROWS_LISTED} more {what} (not listed)."))
    return found


def _integrity(inventory) -> str:
    if inventory.db.dialect != "sqlite":
        return "ok"
    with inventory.db.transaction(readonly=True) as tx:
        return tx.execute("PRAGMA quick_check").fetchone()[0]
