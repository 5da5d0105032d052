"""The ACME server's tables in the CA's inventory database, and their creation.

:data:`SCHEMA` creates them (``certkit inventory migrate`` also creates them in
PostgreSQL before it copies their rows); :func:`create_tables` creates them when
a server starts, adds the columns an older version's lack, and on PostgreSQL
holds an advisory lock meanwhile, so that two servers starting at once on a
fresh database do not collide.
"""

from __future__ import annotations

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS acme_accounts (
        id TEXT PRIMARY KEY,
        thumbprint TEXT NOT NULL UNIQUE,      -- RFC 7638 SHA-256 of the account key, base64url
        jwk TEXT NOT NULL,                    -- the public key as canonical JSON
        status TEXT NOT NULL,                 -- valid | deactivated
        contact TEXT NOT NULL,                -- JSON list of URLs (mailto:)
        tos_agreed INTEGER NOT NULL,
        eab_kid TEXT,                         -- the external account key identifier it was bound with
        created_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS acme_orders (
        id TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        status TEXT NOT NULL,                 -- pending | ready | processing | valid | invalid
        identifiers TEXT NOT NULL,            -- JSON list of {"type", "value"}
        expires TEXT NOT NULL,
        error TEXT,                           -- JSON problem document when invalid
        certificate_serial TEXT,              -- the inventory serial when valid
        certificate_chain TEXT,               -- PEM: leaf and intermediates, as served
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        finalizer TEXT                        -- while processing: the process issuing (host, boot, pid, start)
    )""",
    "CREATE INDEX IF NOT EXISTS acme_orders_account ON acme_orders(account_id, created_at)",
    "CREATE INDEX IF NOT EXISTS acme_orders_serial ON acme_orders(certificate_serial)",
    """CREATE TABLE IF NOT EXISTS acme_authorizations (
        id TEXT PRIMARY KEY,
        order_id TEXT NOT NULL,
        position INTEGER NOT NULL,            -- the identifier's place in the order
        account_id TEXT NOT NULL,
        identifier_type TEXT NOT NULL,        -- dns | ip
        identifier_value TEXT NOT NULL,
        status TEXT NOT NULL,                 -- pending | valid | invalid | deactivated | expired
        expires TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS acme_authorizations_order ON acme_authorizations(order_id)",
    "CREATE INDEX IF NOT EXISTS acme_authorizations_account ON acme_authorizations(account_id, identifier_value)",
    """CREATE TABLE IF NOT EXISTS acme_challenges (
        id TEXT PRIMARY KEY,
        authz_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        type TEXT NOT NULL,                   -- http-01 | tls-alpn-01
        token TEXT NOT NULL,
        status TEXT NOT NULL,                 -- pending | processing | valid | invalid
        validated TEXT,
        error TEXT,
        validator TEXT                        -- while processing: the process validating (host, boot, pid, start)
    )""",
    "CREATE INDEX IF NOT EXISTS acme_challenges_authz ON acme_challenges(authz_id)",
    "CREATE INDEX IF NOT EXISTS acme_challenges_status ON acme_challenges(status)",
    """CREATE TABLE IF NOT EXISTS acme_nonces (
        nonce TEXT PRIMARY KEY,
        expires TEXT NOT NULL
    )""",  # an older version's nonces, each given out: kept for such a server beside this one
    # This version's (certkit.acme.nonces): the key that signs them, and those used up, until they expire.
    """CREATE TABLE IF NOT EXISTS acme_keys (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS acme_used_nonces (
        nonce TEXT PRIMARY KEY,
        expires TEXT NOT NULL
    )""",
)


# Columns added since the tables were first created: added to an older database when a server starts
# (nullable, so a server of the older version, which never names them, goes on working beside it).
ADDED_COLUMNS = (("acme_orders", "finalizer", "TEXT"), ("acme_challenges", "validator", "TEXT"))
# The PostgreSQL advisory lock (any constant: "certacme") held while the tables are created: CREATE
# TABLE IF NOT EXISTS is not atomic there, and two servers starting at once on a fresh database
# collided in its catalog ("duplicate key value violates unique constraint pg_type_typname_nsp_index").
SCHEMA_LOCK = 0x6365727461636D65


def create_tables(conn) -> None:
    """Create the tables, or add what an older version's lack, in the write transaction ``conn``;
    on PostgreSQL one process at a time, and only when something is missing: a role that may use the
    tables but not create them (a database whose owner made them; PostgreSQL 15 gives no one else CREATE
    in the public schema) starts a server as well."""
    if conn.dialect == "postgresql":
        if _complete(conn):
            return
        if not conn.execute("SELECT has_schema_privilege(current_schema(), 'CREATE')").fetchone()[0]:
            from certkit.errors import InventoryError

            raise InventoryError("The ACME server's tables are not all in the inventory's database yet (a first "
                                 "start, or columns of a newer certkit), and this database user may not create them "
                                 "(it has no CREATE privilege in its schema): start certkit acme serve once as the "
                                 "database's owner, and this user's servers start after it.")
        conn.execute(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK})")  # held until the transaction ends
    for statement in SCHEMA:
        conn.execute(statement)
    for table, column, kind in ADDED_COLUMNS:
        if column not in _columns(conn, table):
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def _columns(conn, table: str) -> set[str]:
    """The columns ``table`` has, in either engine."""
    if conn.dialect == "postgresql":
        return {r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns"
                                           " WHERE table_schema = current_schema() AND table_name = ?", (table,))}
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def _complete(conn) -> bool:
    """Whether every table and index of :data:`SCHEMA`, and every column of :data:`ADDED_COLUMNS`, is there
    (PostgreSQL)."""
    import re

    names = [re.search(r"IF NOT EXISTS (\w+)", statement).group(1) for statement in SCHEMA]
    if any(conn.execute("SELECT to_regclass(?) IS NULL", (name,)).fetchone()[0] for name in names):
        return False
    return all(column in _columns(conn, table) for table, column, _kind in ADDED_COLUMNS)
