"""The inventory's tables, the same on SQLite and PostgreSQL, and the migrations between versions.

A row's ``status`` is where the certificate stands in the issuing pipeline
(:mod:`certkit.issuing`):

- ``pending``: signed and recorded, its bundle being written by ``writer``;
- ``valid``: issued, its bundle complete where ``folder`` says (expired is derived from the dates), written
  by ``writer`` (kept: the host it names holds the folder; rows of older certkit versions have none);
- ``revoked``: issued, then revoked (the CRL lists it);
- ``abandoned``: signed but never delivered (its writer died or failed before the bundle was
  complete); its key was never stored, so it can never be used, and it never counts as valid.
"""

from __future__ import annotations

SCHEMA_VERSION = 3
STATUSES = ("pending", "valid", "revoked", "abandoned")

_TABLES = """
CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY,            -- uppercase hex, whole octets, as openssl prints it
    kind TEXT NOT NULL,                 -- ca | server | client | peer
    subject TEXT NOT NULL,              -- RFC 4514
    names TEXT NOT NULL,                -- JSON list of SAN entries: "DNS:x", "IP:y", "DirName:CN=z"
    not_before TEXT NOT NULL,           -- ISO 8601 UTC, sortable
    not_after TEXT NOT NULL,
    fingerprint_sha256 TEXT NOT NULL,
    der {blob} NOT NULL,
    status TEXT NOT NULL DEFAULT 'valid',   -- pending | valid | revoked | abandoned
    revoked_at TEXT,
    revocation_reason TEXT,
    renewed_from TEXT,                  -- the serial this one renews
    issued_at TEXT NOT NULL,
    folder TEXT,                        -- where the bundle is (absolute), if it is a folder or a file
    sink TEXT,                          -- folder | file | memory | acme | stream: what folder means
    writer TEXT,                        -- the process that holds a pending row (host, boot, pid, start)
    keyed INTEGER NOT NULL DEFAULT 1    -- 1 if the bundle holds the private key (0: signed from a CSR)
);
CREATE INDEX IF NOT EXISTS certificates_not_after ON certificates(not_after);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS certificates_status_not_after ON certificates(status, not_after);
CREATE INDEX IF NOT EXISTS certificates_renewed_from ON certificates(renewed_from) WHERE renewed_from IS NOT NULL;
CREATE INDEX IF NOT EXISTS certificates_pending ON certificates(status) WHERE status = 'pending'
"""

# version N -> N+1, each run in one write transaction with the version bump.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE certificates ADD COLUMN folder TEXT",
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS certificates_status_not_after ON certificates(status, not_after)",
        "CREATE INDEX IF NOT EXISTS certificates_renewed_from ON certificates(renewed_from)"
        " WHERE renewed_from IS NOT NULL",
    ),
    2: (
        "ALTER TABLE certificates ADD COLUMN sink TEXT",
        "ALTER TABLE certificates ADD COLUMN writer TEXT",
        "ALTER TABLE certificates ADD COLUMN keyed INTEGER NOT NULL DEFAULT 1",
        "UPDATE certificates SET sink = 'folder' WHERE folder IS NOT NULL",
        # Serials in whole octets, as openssl prints them (version 2 dropped a leading zero).
        "UPDATE certificates SET serial = '0' || serial WHERE length(serial) % 2 = 1",
        "UPDATE certificates SET renewed_from = '0' || renewed_from"
        " WHERE renewed_from IS NOT NULL AND length(renewed_from) % 2 = 1",
        "CREATE INDEX IF NOT EXISTS certificates_pending ON certificates(status) WHERE status = 'pending'",
    ),
}


def create_statements(dialect: str) -> list[str]:
    """The statements that create an empty inventory of the current version."""
    blob = "BYTEA" if dialect == "postgresql" else "BLOB"
    statements = [s.strip() for s in _TABLES.format(blob=blob).split(";") if s.strip()]
    return statements + [version_statement(dialect, SCHEMA_VERSION)]


def version_statement(dialect: str, version: int) -> str:
    """Record the schema version: SQLite's user_version (as every version before did), a meta row elsewhere."""
    if dialect == "sqlite":
        return f"PRAGMA user_version = {int(version)}"
    return (f"INSERT INTO meta (key, value) VALUES ('schema_version', '{int(version)}')"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value")


def read_version(tx, *, lock: bool = False) -> int:
    """The schema version; ``lock`` (in a write transaction) holds it until the transaction ends, so
    two hosts never run the same migration (SQLite's write lock does that already)."""
    if tx.dialect == "sqlite":
        value = tx.execute("PRAGMA user_version").fetchone()[0]
    else:
        found = tx.execute("SELECT value FROM meta WHERE key = 'schema_version'"
                           + (" FOR UPDATE" if lock else "")).fetchone()
        value = found[0] if found else None
    try:
        version = int(value)
    except (TypeError, ValueError):
        version = None
    if version is None or version < min(MIGRATIONS):  # every inventory certkit wrote has 1 or more
        from certkit.errors import UnknownSchema
        from certkit.text import shown

        raise UnknownSchema("no schema version" if value is None or version == 0
                            else f"an unreadable schema version ('{shown(str(value))}')")
    return version


# The columns of the certificates table at each version (what a migration adds, and nothing else).
_COLUMNS_V1 = ("serial", "kind", "subject", "names", "not_before", "not_after", "fingerprint_sha256", "der",
               "status", "revoked_at", "revocation_reason", "renewed_from", "issued_at")
COLUMNS = {1: _COLUMNS_V1, 2: _COLUMNS_V1 + ("folder",), 3: _COLUMNS_V1 + ("folder", "sink", "writer", "keyed")}


def shape_problem(tx, version: int) -> str | None:
    """What in the certificates table does not fit schema ``version``, as the end of a sentence: a
    column missing, a column of a later version (a version number lowered by hand), the serial no
    longer unique (its primary key dropped: duplicates, a CRL listing a serial twice); None if it fits."""
    if tx.dialect == "sqlite":
        info = tx.execute("PRAGMA table_info(certificates)").fetchall()
        have = {row[1] for row in info}
        unique = any(row[1] == "serial" and row[5] for row in info) or any(
            index[2] and [c[2] for c in tx.execute(f"PRAGMA index_info('{index[1]}')").fetchall()] == ["serial"]
            for index in tx.execute("PRAGMA index_list(certificates)").fetchall())
    else:
        have = {row[0] for row in tx.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = 'certificates'").fetchall()}
        unique = tx.execute(
            "SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
            " WHERE i.indrelid = 'certificates'::regclass AND i.indisunique AND i.indnatts = 1"
            " AND a.attname = 'serial'").fetchone() is not None
    wanted = COLUMNS.get(version, COLUMNS[SCHEMA_VERSION])
    missing = [c for c in wanted if c not in have]
    later = [c for c in COLUMNS[SCHEMA_VERSION] if c in have and c not in wanted]
    if missing:
        return f"lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)} of schema version {version}"
    if later:
        return (f"says schema version {version} but holds the column{'s' if len(later) > 1 else ''} "
                f"{', '.join(later)} of a later one (a version number changed by hand?)")
    if not unique:
        return "no longer keeps serials unique (the primary key on serial is gone)"
    return None


def crl_number_problem(value) -> str | None:
    """What is wrong with the stored CRL number (a whole number, 0 before the first CRL), in words."""
    from certkit.text import shown

    text = str(value).strip()
    if text.isdigit() and text.isascii():
        return None
    return f"holds a damaged CRL number ('{shown(str(value))}', not a whole number of 0 or more)"
