"""The inventory: an SQLite record of every certificate a CA has issued.

One row per certificate, holding the certificate itself (DER), so a row never
exists without its certificate. Writers take SQLite's write lock up front
(``BEGIN IMMEDIATE``) and wait for it (busy timeout), so several processes can
issue into one CA at once; the serial is the primary key, so a duplicate can
never be recorded: :meth:`Inventory.add` reports it and the CA re-signs with a
fresh serial.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.errors import AlreadyRevoked, CABroken, UnknownCertificate

if TYPE_CHECKING:
    from cryptography import x509

# 2: folder column, meta table (CRL number), indexes for list/renew; see _MIGRATIONS.
SCHEMA_VERSION = 2
BUSY_TIMEOUT_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY,          -- uppercase hex, as openssl prints it
    kind TEXT NOT NULL,               -- ca | server | client
    subject TEXT NOT NULL,            -- RFC 4514 string
    names TEXT NOT NULL,              -- JSON list of SAN entries, "DNS:x", "IP:y", ...
    not_before TEXT NOT NULL,         -- ISO 8601 UTC, sortable
    not_after TEXT NOT NULL,
    fingerprint_sha256 TEXT NOT NULL,
    der BLOB NOT NULL,
    status TEXT NOT NULL DEFAULT 'valid',   -- valid | revoked (expired is derived)
    revoked_at TEXT,
    revocation_reason TEXT,
    renewed_from TEXT,
    issued_at TEXT NOT NULL,
    folder TEXT                       -- where the bundle was last written (absolute), if known
);
CREATE INDEX IF NOT EXISTS certificates_not_after ON certificates(not_after);
""" + "".join(f"{statement};\n" for statement in (
    # Both created by version 1 -> 2 and by create(); keep them in step with _MIGRATIONS.
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # list --status/--expiring: a range over not_after within one status.
    "CREATE INDEX IF NOT EXISTS certificates_status_not_after ON certificates(status, not_after)",
    # renew: "was this certificate already renewed?" without a table scan.
    "CREATE INDEX IF NOT EXISTS certificates_renewed_from ON certificates(renewed_from)"
    " WHERE renewed_from IS NOT NULL",
))

# user_version N -> N+1. Each runs in one write transaction with the version bump.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "ALTER TABLE certificates ADD COLUMN folder TEXT",
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS certificates_status_not_after ON certificates(status, not_after)",
        "CREATE INDEX IF NOT EXISTS certificates_renewed_from ON certificates(renewed_from)"
        " WHERE renewed_from IS NOT NULL",
    ),
}


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def san_strings(cert: "x509.Certificate") -> list[str]:
    """The SAN entries of ``cert`` as ``TYPE:value`` strings."""
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out = []
    prefixes = {x509.DNSName: "DNS", x509.IPAddress: "IP", x509.RFC822Name: "email",
                x509.UniformResourceIdentifier: "URI", x509.DirectoryName: "DirName"}
    for gn in san:
        prefix = prefixes.get(type(gn), "other")
        value = gn.value.rfc4514_string() if isinstance(gn, x509.DirectoryName) else str(gn.value)
        out.append(f"{prefix}:{value}")
    return out


class Inventory:
    """The SQLite inventory of one CA directory."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @contextmanager
    def connect(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise CABroken(f"The inventory {self.path} cannot be opened: {exc}.") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.create_function("certkit_name_match", 3, _name_match, deterministic=True)
            if write:
                conn.execute("BEGIN IMMEDIATE")
            yield conn
            if write:
                conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise CABroken(f"The inventory {self.path} is damaged or unreadable: {exc}.") from None
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def create(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            # WAL lets readers (list) run while a writer issues.
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        finally:
            conn.close()

    def check(self) -> None:
        """Refuse an inventory that is missing, damaged, or from a newer certkit."""
        if not self.path.is_file():
            raise CABroken(f"The inventory {self.path} is missing; the CA directory is incomplete.")
        with self.connect() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise CABroken(
                    f"The inventory {self.path} was written by a newer certkit (schema "
                    f"{version}, this one knows {SCHEMA_VERSION}); upgrade certkit."
                )
            conn.execute("SELECT serial FROM certificates LIMIT 1").fetchall()
        if version < SCHEMA_VERSION:
            self._migrate()

    def add(self, cert: "x509.Certificate", kind: str, *, renewed_from: str | None = None) -> bool:
        """Record ``cert``; False (and nothing written) if its serial is already taken."""
        return not self.add_many([(cert, kind)], renewed_from=renewed_from)

    def add_many(self, certs: Sequence[tuple["x509.Certificate", str]], *,
                 renewed_from: str | None = None) -> list[int]:
        """Record ``(cert, kind)`` pairs in one transaction; return the indexes not recorded.

        A certificate is left out when its serial is already taken (by an earlier
        row or by another one in ``certs``); the caller re-signs those with fresh
        serials and adds them again. One transaction, so one commit and one lock,
        for the whole sequence: that is what makes ``issue-batch`` fast.
        """
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.serialization import Encoding

        now = _iso(dt.datetime.now(dt.UTC))
        sha256 = hashes.SHA256()
        rows = [
            (format(cert.serial_number, "X"), kind, cert.subject.rfc4514_string(),
             json.dumps(san_strings(cert)), _iso(cert.not_valid_before_utc),
             _iso(cert.not_valid_after_utc), cert.fingerprint(sha256).hex(),
             cert.public_bytes(Encoding.DER), renewed_from, now)
            for cert, kind in certs
        ]
        taken: list[int] = []
        with self.connect(write=True) as conn:
            # The write lock is held from here to COMMIT, so serials free now stay free.
            existing: set[str] = set()
            serials = [row[0] for row in rows]
            for start in range(0, len(serials), 500):  # SQLite's limit on parameters is 999 on old builds
                part = serials[start:start + 500]
                existing.update(s for (s,) in conn.execute(
                    f"SELECT serial FROM certificates WHERE serial IN ({','.join('?' * len(part))})", part))
            fresh = []
            for index, row in enumerate(rows):
                if row[0] in existing:
                    taken.append(index)
                else:
                    existing.add(row[0])  # a duplicate within ``certs`` is taken too
                    fresh.append(row)
            conn.executemany(
                "INSERT INTO certificates (serial, kind, subject, names, not_before, not_after,"
                " fingerprint_sha256, der, renewed_from, issued_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                fresh,
            )
        return taken

    def rows(self, where: str = "", params: tuple = ()) -> list[dict]:
        with self.connect() as conn:
            conn.row_factory = sqlite3.Row
            cur = conn.execute(
                "SELECT serial, kind, subject, names, not_before, not_after, fingerprint_sha256,"
                f" status, revoked_at, revocation_reason, renewed_from, issued_at, folder FROM certificates {where}",
                params,
            )
            return [dict(r) | {"names": json.loads(r["names"])} for r in cur]

    def count(self) -> int:
        with self.connect() as conn:
            return conn.execute("SELECT count(*) FROM certificates").fetchone()[0]

    # --- lifecycle: schema migration, queries, folders, revocation, CRL numbers -------
    # (kept together; issue 4)
    def _migrate(self) -> None:
        with self.connect(write=True) as conn:
            # Re-read inside the write lock: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            while version < SCHEMA_VERSION:
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
                version += 1
                conn.execute(f"PRAGMA user_version = {version}")

    def get(self, serial: str) -> dict | None:
        """The row of ``serial`` (uppercase hex, as :func:`normalize_serial` gives), or None."""
        rows = self.rows("WHERE serial = ?", (serial,))
        return rows[0] if rows else None

    def certificate(self, serial: str) -> "x509.Certificate":
        from cryptography import x509

        with self.connect() as conn:
            found = conn.execute("SELECT der FROM certificates WHERE serial = ?", (serial,)).fetchone()
        if found is None:
            raise UnknownCertificate(f"No certificate with serial {serial} in the inventory {self.path}.")
        return x509.load_der_x509_certificate(found[0])

    def serials_starting(self, prefix: str, limit: int = 10) -> list[str]:
        # The primary key index serves the range; GLOB would too but LIKE is case-insensitive.
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        with self.connect() as conn:
            return [r[0] for r in conn.execute(
                "SELECT serial FROM certificates WHERE serial >= ? AND serial < ? LIMIT ?",
                (prefix, upper, limit))]

    def successors(self, serial: str) -> list[str]:
        """Serials of the certificates that renewed ``serial``, oldest first."""
        with self.connect() as conn:
            return [r[0] for r in conn.execute(
                "SELECT serial FROM certificates WHERE renewed_from = ? ORDER BY issued_at", (serial,))]

    def set_folder(self, serial: str, folder: str | Path) -> None:
        with self.connect(write=True) as conn:
            conn.execute("UPDATE certificates SET folder = ? WHERE serial = ?", (str(folder), serial))

    def query(self, *, kind: str | None = None, status: str | None = None,
              expiring_within: dt.timedelta | None = None, name: str | None = None,
              now: dt.datetime | None = None, limit: int | None = None) -> list[dict]:
        """Rows matching every filter given, soonest expiry first, each with a derived ``status``
        and ``renewed_by`` (the serial of its latest renewal, or None).

        ``status`` is valid, expired or revoked (a revoked certificate is revoked
        whatever its dates). ``expiring_within`` keeps unrevoked certificates
        still valid now that expire within that time and were not renewed yet.
        ``name`` is a case-insensitive glob over the subject and the SAN values.
        """
        now = now or dt.datetime.now(dt.UTC)
        where, params = [], []
        if kind:
            where.append("kind = ?")
            params.append(kind)
        if status == "revoked":
            where.append("status = 'revoked'")
        elif status == "valid":
            where.append("status = 'valid' AND not_after >= ?")
            params.append(_iso(now))
        elif status == "expired":
            where.append("status = 'valid' AND not_after < ?")
            params.append(_iso(now))
        elif status is not None:
            raise ValueError(f"unknown status {status!r}")
        if expiring_within is not None:
            # A certificate already renewed needs no action, so it is not "expiring".
            where.append("status = 'valid' AND not_after >= ? AND not_after <= ? AND NOT EXISTS"
                         " (SELECT 1 FROM certificates AS r WHERE r.renewed_from = certificates.serial)")
            params += [_iso(now), _iso(now + expiring_within)]
        if name:
            where.append("certkit_name_match(?, subject, names)")
            params.append(name.lower())
        sql = (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY not_after, serial"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        stamp = _iso(now)
        rows = self.rows(sql, tuple(params))
        with self.connect() as conn:
            renewed_by = dict(conn.execute("SELECT renewed_from, serial FROM certificates"
                                           " WHERE renewed_from IS NOT NULL ORDER BY issued_at"))
        for row in rows:
            if row["status"] == "valid" and row["not_after"] < stamp:
                row["status"] = "expired"
            row["renewed_by"] = renewed_by.get(row["serial"])
        return rows

    def revoke(self, serial: str, reason: str = "unspecified", when: dt.datetime | None = None) -> dict:
        """Mark ``serial`` revoked; the next CRL lists it. Refuses unknown and revoked serials."""
        when = when or dt.datetime.now(dt.UTC)
        with self.connect(write=True) as conn:
            found = conn.execute("SELECT status, revoked_at, revocation_reason FROM certificates"
                                 " WHERE serial = ?", (serial,)).fetchone()
            if found is None:
                raise UnknownCertificate(
                    f"No certificate with serial {serial} was issued by this CA (inventory {self.path})."
                )
            if found[0] == "revoked":
                raise AlreadyRevoked(
                    f"The certificate {serial} was already revoked on {found[1]} (reason: {found[2]})."
                )
            conn.execute("UPDATE certificates SET status = 'revoked', revoked_at = ?, revocation_reason = ?"
                         " WHERE serial = ?", (_iso(when), reason, serial))
        return self.get(serial)

    def revoked(self) -> list[tuple[str, str, str]]:
        """(serial, revoked_at, reason) of every revoked certificate, for the CRL."""
        with self.connect() as conn:
            return list(conn.execute("SELECT serial, revoked_at, revocation_reason FROM certificates"
                                     " WHERE status = 'revoked' ORDER BY revoked_at, serial"))

    def next_crl_number(self) -> int:
        """Take the next CRL number (1, 2, ...); atomic across processes."""
        with self.connect(write=True) as conn:
            found = conn.execute("SELECT value FROM meta WHERE key = 'crl_number'").fetchone()
            number = int(found[0]) + 1 if found else 1
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('crl_number', ?)", (str(number),))
        return number


def normalize_serial(text: str) -> str | None:
    """``text`` as an inventory serial (uppercase hex, no leading zeros), or None if it is not hex.

    Accepts what openssl prints: ``serial=0A1B...``, colon-separated octets, ``0x`` prefix.
    """
    text = text.strip()
    for prefix in ("serial=", "0x", "0X"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    text = text.replace(":", "")
    if not text or any(ch not in "0123456789abcdefABCDEF" for ch in text):
        return None
    return text.upper().lstrip("0") or "0"


def _name_match(pattern: str, subject: str, names: str) -> bool:
    import fnmatch

    candidates = [subject.lower()]
    # RFC 4514 attribute values (CN=x, O=y); a naive split is enough for matching.
    candidates += [part.split("=", 1)[1] for part in subject.lower().split(",") if "=" in part]
    candidates += [entry.split(":", 1)[1].lower() for entry in json.loads(names)]
    return any(fnmatch.fnmatchcase(c, pattern) for c in candidates)
