"""ACME state in the CA's inventory database: accounts, orders, authorizations, challenges, nonces.

Every SQL statement of the ACME server is in this module, behind methods of
:class:`AcmeState`; each method is one transaction (through
:mod:`certkit.acme.db`), so a restart loses nothing that a client was told.

The rules that keep concurrent clients safe are conditional updates whose
row count is checked, inside the database's own transaction:

- a nonce is taken by ``DELETE ... WHERE nonce = ?``: one request gets row
  count 1, a replay gets 0 (``badNonce``);
- a challenge starts by ``pending -> processing`` and finishes by
  ``processing -> valid|invalid``, so it is validated once and recorded once;
- an order is finalized by ``ready -> processing`` (only one of two
  simultaneous finalizes gets row count 1 and issues), then
  ``processing -> valid`` with its certificate or ``-> invalid``.

The SQL is the common subset of SQLite and PostgreSQL: ``?`` placeholders,
``ON CONFLICT DO NOTHING``, random text ids, TEXT ISO 8601 UTC timestamps
(which sort as text), INTEGER 0/1 booleans, no engine-specific functions.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from certkit.acme.db import Database

# How long a client has to complete an order, and a nonce to be used (Boulder: 7 days; nonces
# are short-lived everywhere: a client asks for a fresh one when it is refused).
ORDER_LIFETIME = dt.timedelta(days=7)
NONCE_LIFETIME = dt.timedelta(hours=1)

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
        updated_at TEXT NOT NULL
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
    """CREATE TABLE IF NOT EXISTS acme_challenges (
        id TEXT PRIMARY KEY,
        authz_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        type TEXT NOT NULL,                   -- http-01 | tls-alpn-01
        token TEXT NOT NULL,
        status TEXT NOT NULL,                 -- pending | processing | valid | invalid
        validated TEXT,
        error TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS acme_challenges_authz ON acme_challenges(authz_id)",
    "CREATE INDEX IF NOT EXISTS acme_challenges_status ON acme_challenges(status)",
    """CREATE TABLE IF NOT EXISTS acme_nonces (
        nonce TEXT PRIMARY KEY,
        expires TEXT NOT NULL
    )""",
)


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_iso() -> str:
    return iso(dt.datetime.now(dt.UTC))


def new_id() -> str:
    """A random identifier for URLs (128 bits, base64url)."""
    return secrets.token_urlsafe(16)


@dataclass
class Account:
    id: str
    thumbprint: str
    jwk: str
    status: str
    contact: list[str]
    tos_agreed: bool
    eab_kid: str | None
    created_at: str


@dataclass
class Challenge:
    id: str
    authz_id: str
    type: str
    token: str
    status: str
    validated: str | None = None
    error: dict | None = None


@dataclass
class Authorization:
    id: str
    order_id: str
    account_id: str
    identifier: dict
    status: str
    expires: str
    challenges: list[Challenge] = field(default_factory=list)

    @property
    def wildcard(self) -> bool:
        return self.identifier["value"].startswith("*.")


@dataclass
class Order:
    id: str
    account_id: str
    status: str
    identifiers: list[dict]
    expires: str
    error: dict | None
    certificate_serial: str | None
    authz_ids: list[str]
    created_at: str


def _loads(text: str | None):
    return json.loads(text) if text else None


class AcmeState:
    """The ACME server's records, one transaction per method."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create_schema(self) -> None:
        with self.db.write() as conn:
            for statement in SCHEMA:
                conn.execute(statement)

    # --- nonces ------------------------------------------------------------------------
    def new_nonce(self) -> str:
        nonce = secrets.token_urlsafe(16)
        with self.db.write(durable=False) as conn:
            conn.execute("INSERT INTO acme_nonces (nonce, expires) VALUES (?, ?)",
                         (nonce, iso(dt.datetime.now(dt.UTC) + NONCE_LIFETIME)))
        return nonce

    def take_nonce(self, nonce: str) -> bool:
        """Use ``nonce`` up; False if it was never given, was used already, or expired."""
        with self.db.write(durable=False) as conn:
            taken = conn.execute("DELETE FROM acme_nonces WHERE nonce = ? AND expires > ?",
                                 (nonce, now_iso())).rowcount
        return taken == 1

    def swap_nonce(self, nonce: str) -> tuple[bool, str]:
        """Use ``nonce`` up and give the next one, in one transaction: (was it usable, the new nonce)."""
        fresh = secrets.token_urlsafe(16)
        now = dt.datetime.now(dt.UTC)
        with self.db.write(durable=False) as conn:
            taken = conn.execute("DELETE FROM acme_nonces WHERE nonce = ? AND expires > ?",
                                 (nonce, iso(now))).rowcount
            conn.execute("INSERT INTO acme_nonces (nonce, expires) VALUES (?, ?)",
                         (fresh, iso(now + NONCE_LIFETIME)))
        return taken == 1, fresh

    def purge(self) -> None:
        """Drop expired nonces, and mark expired what a client left unfinished."""
        now = now_iso()
        with self.db.write() as conn:
            conn.execute("DELETE FROM acme_nonces WHERE expires <= ?", (now,))
            conn.execute("UPDATE acme_authorizations SET status = 'expired' WHERE status = 'pending'"
                         " AND expires <= ?", (now,))
            conn.execute("UPDATE acme_orders SET status = 'invalid', error = ?, updated_at = ?"
                         " WHERE status IN ('pending', 'ready') AND expires <= ?",
                         (json.dumps({"type": "urn:ietf:params:acme:error:malformed",
                                      "detail": "The order expired before it was finalized.", "status": 400}),
                          now, now))

    # --- accounts -----------------------------------------------------------------------
    @staticmethod
    def _account(row) -> Account:
        return Account(row[0], row[1], row[2], row[3], json.loads(row[4]), bool(row[5]), row[6], row[7])

    _ACCOUNT_COLUMNS = "id, thumbprint, jwk, status, contact, tos_agreed, eab_kid, created_at"

    def account(self, account_id: str) -> Account | None:
        with self.db.read() as conn:
            row = conn.execute(f"SELECT {self._ACCOUNT_COLUMNS} FROM acme_accounts WHERE id = ?",
                               (account_id,)).fetchone()
        return self._account(row) if row else None

    def account_by_thumbprint(self, thumbprint: str) -> Account | None:
        with self.db.read() as conn:
            row = conn.execute(f"SELECT {self._ACCOUNT_COLUMNS} FROM acme_accounts WHERE thumbprint = ?",
                               (thumbprint,)).fetchone()
        return self._account(row) if row else None

    def create_account(self, thumbprint: str, jwk: str, contact: Sequence[str], tos_agreed: bool,
                       eab_kid: str | None) -> tuple[Account, bool]:
        """The account of this key, created now unless it exists; and whether it was created."""
        account_id = new_id()
        with self.db.write() as conn:
            created = conn.execute(
                "INSERT INTO acme_accounts (id, thumbprint, jwk, status, contact, tos_agreed, eab_kid, created_at)"
                " VALUES (?, ?, ?, 'valid', ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (account_id, thumbprint, jwk, json.dumps(list(contact)), int(tos_agreed), eab_kid, now_iso()),
            ).rowcount == 1
            row = conn.execute(f"SELECT {self._ACCOUNT_COLUMNS} FROM acme_accounts WHERE thumbprint = ?",
                               (thumbprint,)).fetchone()
        return self._account(row), created

    def update_account(self, account_id: str, *, contact: Sequence[str] | None = None,
                       deactivate: bool = False) -> Account:
        with self.db.write() as conn:
            if contact is not None:
                conn.execute("UPDATE acme_accounts SET contact = ? WHERE id = ? AND status = 'valid'",
                             (json.dumps(list(contact)), account_id))
            if deactivate:
                conn.execute("UPDATE acme_accounts SET status = 'deactivated' WHERE id = ?", (account_id,))
                # RFC 8555 7.3.6: pending work of a deactivated account is abandoned.
                conn.execute("UPDATE acme_authorizations SET status = 'deactivated' WHERE account_id = ?"
                             " AND status IN ('pending', 'valid')", (account_id,))
            row = conn.execute(f"SELECT {self._ACCOUNT_COLUMNS} FROM acme_accounts WHERE id = ?",
                               (account_id,)).fetchone()
        return self._account(row)

    def change_key(self, account_id: str, old_thumbprint: str, thumbprint: str, jwk: str) -> str | None:
        """Give the account a new key; returns the id of another account that has it already
        (nothing changed then), else None. Fails quietly if the key changed meanwhile."""
        with self.db.write() as conn:
            other = conn.execute("SELECT id FROM acme_accounts WHERE thumbprint = ?", (thumbprint,)).fetchone()
            if other is not None:
                return other[0]
            changed = conn.execute("UPDATE acme_accounts SET thumbprint = ?, jwk = ? WHERE id = ?"
                                   " AND thumbprint = ? AND status = 'valid'",
                                   (thumbprint, jwk, account_id, old_thumbprint)).rowcount
        return None if changed == 1 else account_id

    # --- orders, authorizations, challenges ---------------------------------------------
    def create_order(self, account_id: str, identifiers: Sequence[dict], challenge_types: Sequence[str]) -> Order:
        """A pending order with one pending authorization per identifier, each offering ``challenge_types``."""
        now = dt.datetime.now(dt.UTC)
        expires, stamp = iso(now + ORDER_LIFETIME), iso(now)
        order_id = new_id()
        authz_rows, challenge_rows = [], []
        for position, ident in enumerate(identifiers):
            authz_id = new_id()
            authz_rows.append((authz_id, order_id, position, account_id, ident["type"], ident["value"], expires))
            for index, kind in enumerate(challenge_types):
                challenge_rows.append((new_id(), authz_id, index, kind, secrets.token_urlsafe(32)))
        with self.db.write() as conn:
            conn.execute("INSERT INTO acme_orders (id, account_id, status, identifiers, expires, created_at,"
                         " updated_at) VALUES (?, ?, 'pending', ?, ?, ?, ?)",
                         (order_id, account_id, json.dumps(list(identifiers)), expires, stamp, stamp))
            conn.executemany("INSERT INTO acme_authorizations (id, order_id, position, account_id,"
                             " identifier_type, identifier_value, status, expires)"
                             " VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)", authz_rows)
            conn.executemany("INSERT INTO acme_challenges (id, authz_id, position, type, token, status)"
                             " VALUES (?, ?, ?, ?, ?, 'pending')", challenge_rows)
        return Order(order_id, account_id, "pending", list(identifiers), expires, None, None,
                     [row[0] for row in authz_rows], stamp)

    _ORDER_COLUMNS = "id, account_id, status, identifiers, expires, error, certificate_serial, created_at"

    def order(self, order_id: str) -> Order | None:
        with self.db.read() as conn:
            row = conn.execute(f"SELECT {self._ORDER_COLUMNS} FROM acme_orders WHERE id = ?", (order_id,)).fetchone()
            if row is None:
                return None
            authz = [r[0] for r in conn.execute(
                "SELECT id FROM acme_authorizations WHERE order_id = ? ORDER BY position", (order_id,))]
        return Order(row[0], row[1], row[2], json.loads(row[3]), row[4], _loads(row[5]), row[6], authz, row[7])

    def order_ids(self, account_id: str, limit: int = 1000) -> list[str]:
        """The account's orders, newest first."""
        with self.db.read() as conn:
            return [r[0] for r in conn.execute(
                "SELECT id FROM acme_orders WHERE account_id = ? ORDER BY created_at DESC, id LIMIT ?",
                (account_id, limit))]

    def authorization(self, authz_id: str) -> Authorization | None:
        with self.db.read() as conn:
            row = conn.execute("SELECT id, order_id, account_id, identifier_type, identifier_value, status,"
                               " expires FROM acme_authorizations WHERE id = ?", (authz_id,)).fetchone()
            if row is None:
                return None
            challenges = [Challenge(c[0], authz_id, c[1], c[2], c[3], c[4], _loads(c[5])) for c in conn.execute(
                "SELECT id, type, token, status, validated, error FROM acme_challenges WHERE authz_id = ?"
                " ORDER BY position", (authz_id,))]
        return Authorization(row[0], row[1], row[2], {"type": row[3], "value": row[4]}, row[5], row[6], challenges)

    def challenge(self, challenge_id: str) -> tuple[Challenge, Authorization] | None:
        with self.db.read() as conn:
            row = conn.execute("SELECT authz_id FROM acme_challenges WHERE id = ?", (challenge_id,)).fetchone()
        if row is None:
            return None
        authz = self.authorization(row[0])
        return next(c for c in authz.challenges if c.id == challenge_id), authz

    def deactivate_authorization(self, authz_id: str) -> None:
        with self.db.write() as conn:
            conn.execute("UPDATE acme_authorizations SET status = 'deactivated' WHERE id = ?"
                         " AND status IN ('pending', 'valid')", (authz_id,))
            conn.execute("UPDATE acme_orders SET status = 'invalid', updated_at = ? WHERE id ="
                         " (SELECT order_id FROM acme_authorizations WHERE id = ?)"
                         " AND status IN ('pending', 'ready')", (now_iso(), authz_id))

    def start_challenge(self, challenge_id: str) -> bool:
        """pending -> processing, if its authorization is still pending and unexpired and no other
        challenge of it is being validated. True if this call started it."""
        with self.db.write() as conn:
            return conn.execute(
                "UPDATE acme_challenges SET status = 'processing' WHERE id = ? AND status = 'pending'"
                " AND EXISTS (SELECT 1 FROM acme_authorizations AS a WHERE a.id = acme_challenges.authz_id"
                " AND a.status = 'pending' AND a.expires > ?)"
                " AND NOT EXISTS (SELECT 1 FROM acme_challenges AS o WHERE o.authz_id = acme_challenges.authz_id"
                " AND o.status = 'processing')",
                (challenge_id, now_iso())).rowcount == 1

    def finish_challenge(self, challenge_id: str, error: dict | None) -> bool:
        """Record a validation's outcome (``error`` None means valid) on the challenge, its
        authorization and its order, in one transaction. False if it was recorded already."""
        now = now_iso()
        with self.db.write() as conn:
            done = conn.execute(
                "UPDATE acme_challenges SET status = ?, validated = ?, error = ? WHERE id = ?"
                " AND status = 'processing'",
                ("invalid" if error else "valid", None if error else now, json.dumps(error) if error else None,
                 challenge_id)).rowcount
            if done != 1:
                return False
            authz_id, order_id = conn.execute(
                "SELECT a.id, a.order_id FROM acme_challenges AS c JOIN acme_authorizations AS a"
                " ON a.id = c.authz_id WHERE c.id = ?", (challenge_id,)).fetchone()
            if error:
                conn.execute("UPDATE acme_authorizations SET status = 'invalid' WHERE id = ? AND status = 'pending'",
                             (authz_id,))
                conn.execute("UPDATE acme_orders SET status = 'invalid', error = ?, updated_at = ? WHERE id = ?"
                             " AND status = 'pending'", (json.dumps(error), now, order_id))
            else:
                conn.execute("UPDATE acme_authorizations SET status = 'valid' WHERE id = ? AND status = 'pending'",
                             (authz_id,))
                conn.execute("UPDATE acme_orders SET status = 'ready', updated_at = ? WHERE id = ?"
                             " AND status = 'pending' AND NOT EXISTS (SELECT 1 FROM acme_authorizations"
                             " WHERE order_id = ? AND status <> 'valid')", (now, order_id, order_id))
        return True

    def processing_challenges(self) -> list[str]:
        """Challenges a stopped server was validating: to be validated again after a restart."""
        with self.db.read() as conn:
            return [r[0] for r in conn.execute("SELECT id FROM acme_challenges WHERE status = 'processing'")]

    # --- finalization and certificates ---------------------------------------------------
    def begin_finalize(self, order_id: str) -> bool:
        """ready -> processing; True for exactly one caller, who then issues."""
        now = now_iso()
        with self.db.write() as conn:
            return conn.execute("UPDATE acme_orders SET status = 'processing', updated_at = ? WHERE id = ?"
                                " AND status = 'ready' AND expires > ?", (now, order_id, now)).rowcount == 1

    def complete_order(self, order_id: str, serial: str, chain_pem: str) -> None:
        with self.db.write() as conn:
            conn.execute("UPDATE acme_orders SET status = 'valid', certificate_serial = ?, certificate_chain = ?,"
                         " updated_at = ? WHERE id = ? AND status = 'processing'",
                         (serial, chain_pem, now_iso(), order_id))

    def fail_order(self, order_id: str, error: dict) -> None:
        with self.db.write() as conn:
            conn.execute("UPDATE acme_orders SET status = 'invalid', error = ?, updated_at = ? WHERE id = ?"
                         " AND status = 'processing'", (json.dumps(error), now_iso(), order_id))

    def abandon_interrupted(self) -> int:
        """Orders a stopped server was issuing for: invalid, so their clients order again."""
        error = {"type": "urn:ietf:params:acme:error:serverInternal",
                 "detail": "The server stopped while issuing this order's certificate; place a new order.",
                 "status": 500}
        with self.db.write() as conn:
            return conn.execute("UPDATE acme_orders SET status = 'invalid', error = ?, updated_at = ?"
                                " WHERE status = 'processing'", (json.dumps(error), now_iso())).rowcount

    def certificate(self, serial: str) -> tuple[str, str] | None:
        """(chain PEM, owning account id) of a certificate issued through ACME."""
        with self.db.read() as conn:
            row = conn.execute("SELECT certificate_chain, account_id FROM acme_orders WHERE certificate_serial = ?"
                               " AND status = 'valid'", (serial,)).fetchone()
        return (row[0], row[1]) if row else None
