"""ACME state in the CA's inventory database: accounts, orders, authorizations, challenges, nonces.

Every SQL statement of the ACME server is in this module, behind methods of
:class:`AcmeState` (those of finalization and delivered certificates in
:mod:`certkit.acme.state_finalize`, which it inherits; the tables, and their creation, are in
:mod:`certkit.acme.schema`); each method is one transaction (through
:mod:`certkit.acme.db`), so a restart loses nothing that a client was told.

The rules that keep concurrent clients safe are conditional updates whose
row count is checked, inside the database's own transaction:

- a nonce is taken by inserting it into the used ones (:mod:`certkit.acme.nonces`:
  giving one out writes nothing): one request gets row count 1, a replay
  gets 0 (``badNonce``);
- a challenge starts by ``pending -> processing`` and finishes by
  ``processing -> valid|invalid``, so it is validated once and recorded once;
- an order is finalized by ``ready -> processing`` (only one of two
  simultaneous finalizes gets row count 1 and issues), then
  ``processing -> valid`` with its certificate or ``-> invalid``; the order
  names the process finalizing it (``finalizer``), so a server that starts
  settles only the orders of dead processes, never those another live server
  is issuing for; a challenge names the process validating it (``validator``)
  for the same reason.

A transition that reads other rows before it writes (the order becomes ready
when *every* authorization is valid; a challenge starts when *no other* of its
authorization is being validated) first locks the row it decides on, with
``SELECT ... FOR UPDATE`` (order, then authorization, then challenge: always in
that order, so two transactions never wait for each other in a circle).
SQLite's ``BEGIN IMMEDIATE`` serialises whole transactions anyway
(:mod:`certkit.db` drops the ``FOR UPDATE`` there); PostgreSQL's READ COMMITTED
does not, and without the lock two validations finishing at once each missed
the other's.

The SQL is the common subset of SQLite and PostgreSQL: ``?`` placeholders,
``ON CONFLICT DO NOTHING``, random text ids, TEXT ISO 8601 UTC timestamps
(which sort as text), INTEGER 0/1 booleans, no engine-specific functions.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Sequence

from certkit.acme.db import Database
from certkit.acme.nonces import Nonces
from certkit.acme.records import Account, Authorization, Challenge, Order, gone, new_id, now_iso
from certkit.acme.schema import SCHEMA, create_tables  # noqa: F401 (SCHEMA: importable from here, as it was)
from certkit.acme.state_finalize import FinalizingState
from certkit.vocabulary import iso

# How long a client has to complete an order (Boulder: 7 days); a nonce's: certkit.acme.nonces.
ORDER_LIFETIME = dt.timedelta(days=7)


def _loads(text: str | None):
    return json.loads(text) if text else None


class AcmeState(FinalizingState):
    """The ACME server's records, one transaction per method."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._me: str | None = None
        self.nonces = Nonces(db)

    def create_schema(self) -> None:
        """Create the tables, or add what an older version's lack; one server at a time."""
        with self.db.write() as conn:
            create_tables(conn)

    @property
    def me(self) -> str:
        """This process, as the inventory names a writer (host, boot, pid, start time)."""
        from certkit.inventory.reconcile import writer_id

        if self._me is None:
            self._me = writer_id()
        return self._me

    # --- the servers' own certificates ------------------------------------------------------
    # A row 'listener SERIAL' in acme_keys names the process that holds that certificate's key (in memory
    # alone); its server drops the row once it revoked the certificate at stop. A row left names a server
    # killed outright, whose certificate the next server on this host revokes (:meth:`orphaned_listeners`).
    # ``renews``: the server renews it in place (acme serve's), a row 'renewing SERIAL' beside it says so
    # (list --expiring leaves it out: :func:`certkit.inventory.query.server_renewed`); serve renews none.
    def hold_listener(self, serial: str, *, renews: bool = False) -> None:
        with self.db.write() as conn:
            for name in [f"listener {serial}", *([f"renewing {serial}"] if renews else [])]:
                conn.execute("INSERT INTO acme_keys (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                             (name, self.me))

    def drop_listener(self, serial: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM acme_keys WHERE name IN (?, ?)", (f"listener {serial}", f"renewing {serial}"))

    def orphaned_listeners(self) -> list[str]:
        """The serials of the certificates of servers certainly dead (:func:`gone`: of this host), whose
        keys died with them; those of servers on other hosts are left to them."""
        with self.db.read() as conn:
            rows = conn.execute("SELECT name, value FROM acme_keys WHERE name LIKE 'listener %'").fetchall()
        return [name.split(" ", 1)[1] for name, process in rows if process and gone(process)]

    # --- nonces ------------------------------------------------------------------------
    def new_nonce(self) -> str:
        return self.nonces.new()

    def swap_nonce(self, nonce: str) -> tuple[bool, str]:
        """Use ``nonce`` up and give the next one: (was it usable, the new nonce)."""
        return self.nonces.take(nonce), self.nonces.new()

    def purge(self) -> None:
        """Drop expired nonces, and mark expired what a client left unfinished."""
        from certkit.inventory.reconcile import FOREIGN_LEASE

        now = now_iso()
        # An expired order still processing long after its last change: its finalizer died on a host
        # that never started a server again (a finalize takes seconds; complete_order would find the
        # order settled and discard its certificate, so this is safe even if it lived).
        stale = iso(dt.datetime.now(dt.UTC) - FOREIGN_LEASE)
        with self.db.write() as conn:
            conn.execute("DELETE FROM acme_used_nonces WHERE expires <= ?", (now,))
            conn.execute("DELETE FROM acme_nonces WHERE expires <= ?", (now,))
            conn.execute("UPDATE acme_orders SET status = 'invalid', updated_at = ?, finalizer = NULL"
                         " WHERE (status IN ('pending', 'ready') OR (status = 'processing' AND updated_at <= ?))"
                         " AND expires <= ?", (now, stale, now))
            conn.execute("UPDATE acme_authorizations SET status = 'expired' WHERE status IN ('pending', 'valid')"
                         " AND expires <= ?", (now,))

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
                       deactivate: bool = False, eab_kid: str | None = None) -> Account:
        with self.db.write() as conn:
            if eab_kid is not None:
                conn.execute("UPDATE acme_accounts SET eab_kid = ? WHERE id = ?", (eab_kid, account_id))
            if contact is not None:
                conn.execute("UPDATE acme_accounts SET contact = ? WHERE id = ? AND status = 'valid'",
                             (json.dumps(list(contact)), account_id))
            if deactivate:
                conn.execute("UPDATE acme_accounts SET status = 'deactivated' WHERE id = ?", (account_id,))
                # RFC 8555 7.3.6: pending work of a deactivated account is abandoned: its open orders
                # (those being issued finish), then their authorizations (orders first, the lock order).
                conn.execute("UPDATE acme_orders SET status = 'invalid', updated_at = ? WHERE account_id = ?"
                             " AND status IN ('pending', 'ready')", (now_iso(), account_id))
                conn.execute("UPDATE acme_authorizations SET status = 'deactivated' WHERE account_id = ?"
                             " AND status IN ('pending', 'valid')", (account_id,))
            row = conn.execute(f"SELECT {self._ACCOUNT_COLUMNS} FROM acme_accounts WHERE id = ?",
                               (account_id,)).fetchone()
        return self._account(row)

    def change_key(self, account_id: str, old_thumbprint: str, thumbprint: str, jwk: str) -> tuple[str, str | None]:
        """Give the account a new key: ("changed", None); or nothing changes and it says why:
        ("current", account_id) when the new key is the account's key already, ("taken", other)
        when another account has it, ("stale", account_id) when the account's key changed since the
        request was checked, ("deactivated", account_id) when the account was deactivated since."""
        from certkit.errors import InventoryError

        try:
            with self.db.write() as conn:
                row = conn.execute("SELECT thumbprint, status FROM acme_accounts WHERE id = ? FOR UPDATE",
                                   (account_id,)).fetchone()
                if row is not None and row[1] != "valid":
                    return "deactivated", account_id
                if row is not None and row[0] == thumbprint:
                    return "current", account_id
                other = conn.execute("SELECT id FROM acme_accounts WHERE thumbprint = ?", (thumbprint,)).fetchone()
                if other is not None:
                    return "taken", other[0]
                changed = conn.execute("UPDATE acme_accounts SET thumbprint = ?, jwk = ? WHERE id = ?"
                                       " AND thumbprint = ? AND status = 'valid'",
                                       (thumbprint, jwk, account_id, old_thumbprint)).rowcount
        except InventoryError:  # PostgreSQL: another account took the key after the look above (its UNIQUE refused)
            holder = self.account_by_thumbprint(thumbprint)
            if holder is None or holder.id == account_id:
                raise
            return "taken", holder.id
        return ("changed", None) if changed == 1 else ("stale", account_id)

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
        status, error = row[2], _loads(row[5])
        if status in ("pending", "ready") and row[4] <= now_iso():  # RFC 8555 7.1.6; purge() records it later
            status = "invalid"
        if error == _EXPIRED_BEFORE:  # recorded by an older version: the client sent nothing malformed
            error = None
        return Order(row[0], row[1], status, json.loads(row[3]), row[4], error, row[6], authz, row[7])

    # RFC 8555 7.1.2.1: the orders list holds pending (unexpired), ready, processing and valid
    # orders; invalid ones (expired included: a pending or ready order past its expiry reads invalid)
    # are left out.
    _LISTED = ("status IN ('processing', 'valid') OR (status IN ('pending', 'ready') AND expires > ?)")

    def order_page(self, account_id: str, after: str | None, limit: int) -> tuple[list[str], bool] | None:
        """The account's listed orders, newest first, ``limit`` of them from just after the order
        ``after`` (the last of the previous page); and whether more follow. None if ``after`` is not
        an order of the account."""
        now = now_iso()
        with self.db.read() as conn:
            where, args = f"account_id = ? AND ({self._LISTED})", [account_id, now]
            if after is not None:
                row = conn.execute("SELECT created_at FROM acme_orders WHERE id = ? AND account_id = ?",
                                   (after, account_id)).fetchone()
                if row is None:
                    return None
                where += " AND (created_at < ? OR (created_at = ? AND id > ?))"
                args += [row[0], row[0], after]
            ids = [r[0] for r in conn.execute(f"SELECT id FROM acme_orders WHERE {where}"
                                              " ORDER BY created_at DESC, id LIMIT ?", (*args, limit + 1))]
        return ids[:limit], len(ids) > limit

    def authorization(self, authz_id: str) -> Authorization | None:
        with self.db.read() as conn:
            row = conn.execute("SELECT id, order_id, account_id, identifier_type, identifier_value, status,"
                               " expires FROM acme_authorizations WHERE id = ?", (authz_id,)).fetchone()
            if row is None:
                return None
            challenges = [Challenge(c[0], authz_id, c[1], c[2], c[3], c[4], _loads(c[5])) for c in conn.execute(
                "SELECT id, type, token, status, validated, error FROM acme_challenges WHERE authz_id = ?"
                " ORDER BY position", (authz_id,))]
        status = row[5]
        if status in ("pending", "valid") and row[6] <= now_iso():  # RFC 8555 7.1.6; purge() records it later
            status = "expired"
        return Authorization(row[0], row[1], row[2], {"type": row[3], "value": row[4]}, status, row[6], challenges)

    def challenge(self, challenge_id: str) -> tuple[Challenge, Authorization] | None:
        with self.db.read() as conn:
            row = conn.execute("SELECT authz_id FROM acme_challenges WHERE id = ?", (challenge_id,)).fetchone()
        if row is None:
            return None
        authz = self.authorization(row[0])
        return next(c for c in authz.challenges if c.id == challenge_id), authz

    def deactivate_authorization(self, authz_id: str) -> None:
        with self.db.write() as conn:
            conn.execute("SELECT id FROM acme_orders WHERE id = (SELECT order_id FROM acme_authorizations"
                         " WHERE id = ?) FOR UPDATE", (authz_id,))
            if conn.execute("UPDATE acme_authorizations SET status = 'deactivated' WHERE id = ?"
                            " AND status IN ('pending', 'valid') AND expires > ?", (authz_id, now_iso())).rowcount != 1:
                return  # invalid, expired or deactivated already: refused (or answered) with nothing changed
            conn.execute("UPDATE acme_orders SET status = 'invalid', updated_at = ? WHERE id ="
                         " (SELECT order_id FROM acme_authorizations WHERE id = ?)"
                         " AND status IN ('pending', 'ready')", (now_iso(), authz_id))

    def start_challenge(self, challenge_id: str) -> bool:
        """pending -> processing, if its authorization is still pending and unexpired and no other
        challenge of it is being validated. True if this call started it; this process then
        validates it (``validator``)."""
        with self.db.write() as conn:
            # The authorization's row lock first: two challenges of it started at once are decided
            # one after the other, the second seeing the first processing.
            conn.execute("SELECT id FROM acme_authorizations WHERE id = (SELECT authz_id FROM acme_challenges"
                         " WHERE id = ?) FOR UPDATE", (challenge_id,))
            return conn.execute(
                "UPDATE acme_challenges SET status = 'processing', validator = ? WHERE id = ? AND status = 'pending'"
                " AND EXISTS (SELECT 1 FROM acme_authorizations AS a WHERE a.id = acme_challenges.authz_id"
                " AND a.status = 'pending' AND a.expires > ?)"
                " AND NOT EXISTS (SELECT 1 FROM acme_challenges AS o WHERE o.authz_id = acme_challenges.authz_id"
                " AND o.status = 'processing')",
                (self.me, challenge_id, now_iso())).rowcount == 1

    def finish_challenge(self, challenge_id: str, error: dict | None) -> bool:
        """Record a validation's outcome (``error`` None means valid) on the challenge, its
        authorization and its order, in one transaction. False if it was recorded already."""
        now = now_iso()
        with self.db.write() as conn:
            found = conn.execute(
                "SELECT a.id, a.order_id FROM acme_challenges AS c JOIN acme_authorizations AS a"
                " ON a.id = c.authz_id WHERE c.id = ?", (challenge_id,)).fetchone()
            if found is None:
                return False
            authz_id, order_id = found
            # The order's row lock first: of two validations of one order finishing at once, the
            # second waits here and then sees the first one's authorization valid (READ COMMITTED
            # reads what is committed when each statement starts).
            conn.execute("SELECT id FROM acme_orders WHERE id = ? FOR UPDATE", (order_id,))
            conn.execute("SELECT id FROM acme_authorizations WHERE id = ? FOR UPDATE", (authz_id,))
            done = conn.execute(
                "UPDATE acme_challenges SET status = ?, validated = ?, error = ?, validator = NULL WHERE id = ?"
                " AND status = 'processing'",
                ("invalid" if error else "valid", None if error else now, json.dumps(error) if error else None,
                 challenge_id)).rowcount
            if done != 1:
                return False
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

    def claim_interrupted_challenges(self) -> list[str]:
        """Challenges whose validating process died (a server stopped or killed): this process takes
        them over, to validate them again. Those another live server is validating stay its own."""
        with self.db.write() as conn:
            rows = conn.execute("SELECT id, validator FROM acme_challenges WHERE status = 'processing'"
                                " FOR UPDATE SKIP LOCKED").fetchall()
            claimed = [challenge_id for challenge_id, validator in rows if gone(validator)]
            for challenge_id in claimed:
                conn.execute("UPDATE acme_challenges SET validator = ? WHERE id = ? AND status = 'processing'",
                             (self.me, challenge_id))
        return claimed

    def validating(self) -> list[tuple[str, str]]:
        """(challenge id, account id) of every challenge this process is validating (processing,
        naming it the validator)."""
        with self.db.read() as conn:
            return [(r[0], r[1]) for r in conn.execute(
                "SELECT c.id, a.account_id FROM acme_challenges AS c JOIN acme_authorizations AS a"
                " ON a.id = c.authz_id WHERE c.status = 'processing' AND c.validator = ?", (self.me,))]


# An expired order is invalid with no error: its status and expires say what happened, and no
# problem type fits (malformed, which older versions recorded, blamed a request that was fine).
_EXPIRED_BEFORE = {"type": "urn:ietf:params:acme:error:malformed",
                   "detail": "The order expired before it was finalized.", "status": 400}
