"""A CA's inventory tied to its CA: a shared (PostgreSQL) one by its ``meta`` row (:data:`BINDING`, written by
:func:`bind`), an SQLite one by the CA directory it lies in, or, outside any (a copy), by its binding or its first
certificate; another CA's is refused (:func:`check_binding`), naming the schema of this database that holds this
CA's when the search_path finds another's first."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from certkit.errors import CABroken
from certkit.text import shown

if TYPE_CHECKING:
    from cryptography import x509

    from certkit.inventory import Inventory

# The meta row that ties a shared inventory to its CA: a URL pointing at another CA's database is refused.
BINDING = "ca_certificate_sha256"


def bind(inventory: Inventory, cert: "x509.Certificate", parent_dir: Path | None = None) -> None:
    """Tie a shared (PostgreSQL) inventory to the CA whose certificate is ``cert``; an intermediate's records
    its parent's CA directory ``parent_dir`` too (:mod:`certkit.parent_record`)."""
    from cryptography.hazmat.primitives import hashes

    from certkit.parent_record import record_parent

    with inventory.transaction(write=True) as tx:
        tx.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                   (BINDING, cert.fingerprint(hashes.SHA256()).hex()))
        record_parent(tx, parent_dir)


def _check_sqlite_home(inventory: Inventory, cert: "x509.Certificate") -> None:
    from cryptography import x509

    from certkit.paths import is_ca_directory

    if inventory.path is None:
        return
    if not is_ca_directory(home := Path(inventory.path).parent):
        _check_sqlite_rows(inventory, cert)
        return
    try:
        theirs = x509.load_pem_x509_certificate((home / "ca.pem").read_bytes())
    except (OSError, ValueError):  # whose folder it is cannot be told from its ca.pem: its binding tells
        _check_sqlite_rows(inventory, cert)
        return
    if theirs != cert:
        raise CABroken(f"The inventory {shown(inventory.location)} belongs to another CA: it lies in the CA directory "
                       f"of {shown(theirs.subject.rfc4514_string())}; check $CERTKIT_INVENTORY_URL and the inventory "
                       "certkit-ca.json names.")
    from certkit.inventory.home import bind

    bind(inventory, cert)  # read and written from now on only while its directory holds this CA (made again since)


def _check_sqlite_rows(inventory: Inventory, cert: "x509.Certificate") -> None:
    """An SQLite inventory outside any CA directory (a backup copy named by $CERTKIT_INVENTORY_URL): its
    binding, if it has one, else its first certificate, must be this CA's (one row read: cheap)."""
    import sqlite3

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    from certkit.errors import InventoryError
    from certkit.inventory.audit import Issuer

    try:
        with inventory.db.transaction(readonly=True) as tx:
            bound = tx.execute("SELECT value FROM meta WHERE key = ?", (BINDING,)).fetchone()
            first = tx.execute("SELECT der FROM certificates ORDER BY rowid LIMIT 1").fetchone()
    except (InventoryError, sqlite3.Error):
        return  # a damaged or older inventory: said in its own words by whoever opens it
    problem = None
    if bound is not None and bound[0] != cert.fingerprint(hashes.SHA256()).hex():
        problem = "it is bound to another CA certificate"
    elif bound is None and first is not None:
        try:
            theirs = x509.load_der_x509_certificate(bytes(first[0]))
        except ValueError:
            return
        problem = Issuer(cert).problem(theirs, bytes(first[0]), verify=True)
    if problem:
        raise CABroken(f"The inventory {shown(inventory.location)} belongs to another CA ({problem}); it is not the "
                       "inventory of this CA: check $CERTKIT_INVENTORY_URL and the inventory certkit-ca.json names.")


def check_binding(inventory: Inventory, cert: "x509.Certificate") -> None:
    """Refuse an inventory that belongs to another CA (a wrong URL, a wrong $CERTKIT_INVENTORY_URL):
    its serials and revocations are not this CA's. An SQLite inventory lives in its CA's own folder: one in
    another CA's folder is that CA's; one outside any CA folder (a copy) must hold this CA's certificates.
    A moved SQLite inventory (:func:`move`) is refused whatever it holds."""
    if inventory.db.dialect == "sqlite":
        from certkit.store_inventory import check_not_moved

        check_not_moved(inventory)
        _check_sqlite_home(inventory, cert)
        return
    from cryptography.hazmat.primitives import hashes

    fingerprint = cert.fingerprint(hashes.SHA256()).hex()
    with inventory.transaction() as tx:
        found = tx.execute("SELECT value FROM meta WHERE key = ?", (BINDING,)).fetchone()
        elsewhere = _schema_of(tx, fingerprint) if found is None or found[0] != fingerprint else None
    if found is None or found[0] != fingerprint:
        said = (f"The inventory {shown(inventory.location)} belongs to {'no CA' if found is None else 'another CA'} "
                f"(its CA certificate fingerprint is {found[0][:16] + '...' if found else 'not recorded'})")
        if elsewhere:  # a schema named as the role, made for another CA, comes first in the default search_path
            raise CABroken(f"{said}: its tables are those of the schema {elsewhere[0]}, the first of the search_path "
                           f"that holds them; this CA's are in the schema {elsewhere[1]} of the same database: name "
                           f"that schema in the URL (options=-csearch_path%3D{elsewhere[1]}) in certkit-ca.json "
                           "and on every host, then try again.")
        raise CABroken(f"{said}; check the URL in certkit-ca.json and $CERTKIT_INVENTORY_URL.")


def _schema_of(tx, fingerprint: str) -> tuple[str, str] | None:
    """(the schema of the inventory the search_path finds, the schema of this database that holds this CA's
    inventory) when another schema than the one found holds it; else None."""
    import re

    from certkit.errors import InventoryError

    try:
        found = tx.execute("SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = to_regclass('meta')"
                           ).fetchone()
        schemas = [name for (name,) in tx.execute(
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = 'meta' "
            "AND c.relkind IN ('r', 'p') AND has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, "
            "'SELECT') ORDER BY 1")]
        for schema in schemas:
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", schema) or (found and schema == found[0]):
                continue
            bound = tx.execute(f"SELECT value FROM {schema}.meta WHERE key = ?", (BINDING,)).fetchone()
            if bound is not None and bound[0] == fingerprint:
                return (found[0] if found else "?"), schema
    except InventoryError:  # what cannot be read here is not said
        return None
    return None
