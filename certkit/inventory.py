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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.errors import CABroken

if TYPE_CHECKING:
    from cryptography import x509

SCHEMA_VERSION = 1
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
    issued_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS certificates_not_after ON certificates(not_after);
"""


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
    for gn in san:
        prefix = {x509.DNSName: "DNS", x509.IPAddress: "IP", x509.RFC822Name: "email",
                  x509.UniformResourceIdentifier: "URI", x509.DirectoryName: "DirName"}.get(type(gn), "other")
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

    def add(self, cert: "x509.Certificate", kind: str, *, renewed_from: str | None = None) -> bool:
        """Record ``cert``; False (and nothing written) if its serial is already taken."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.serialization import Encoding

        row = (
            format(cert.serial_number, "X"), kind, cert.subject.rfc4514_string(),
            json.dumps(san_strings(cert)), _iso(cert.not_valid_before_utc),
            _iso(cert.not_valid_after_utc), cert.fingerprint(hashes.SHA256()).hex(),
            cert.public_bytes(Encoding.DER), renewed_from, _iso(dt.datetime.now(dt.UTC)),
        )
        with self.connect(write=True) as conn:
            try:
                conn.execute(
                    "INSERT INTO certificates (serial, kind, subject, names, not_before, not_after,"
                    " fingerprint_sha256, der, renewed_from, issued_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    row,
                )
            except sqlite3.IntegrityError:
                return False
        return True

    def rows(self, where: str = "", params: tuple = ()) -> list[dict]:
        with self.connect() as conn:
            conn.row_factory = sqlite3.Row
            cur = conn.execute(
                "SELECT serial, kind, subject, names, not_before, not_after, fingerprint_sha256,"
                f" status, revoked_at, revocation_reason, renewed_from, issued_at FROM certificates {where}",
                params,
            )
            return [dict(r) | {"names": json.loads(r["names"])} for r in cur]

    def count(self) -> int:
        with self.connect() as conn:
            return conn.execute("SELECT count(*) FROM certificates").fetchone()[0]
