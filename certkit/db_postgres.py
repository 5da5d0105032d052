"""The inventory on PostgreSQL (psycopg 3): the same transactions and SQL as on SQLite, for teams.

A CA directory whose inventory URL is ``postgresql://...`` (``init-ca --inventory``, or
``CERTKIT_INVENTORY_URL``) keeps its record in one shared database. What SQLite gets from its
whole-file write lock, PostgreSQL gets from the database: a serial is the primary key (no two rows
hold one serial, whichever host recorded them); ``SELECT ... FOR UPDATE`` locks the rows a write
decides on (a revocation, the CRL number, a renewal's predecessor); ``FOR UPDATE SKIP LOCKED`` lets
two hosts settle pending rows at once, each row by one (:meth:`certkit.inventory.Inventory.reconcile`).

No secret is ever in the URL (nor in argv): libpq finds the password in its usual places
(``PGPASSWORD``, ``PGPASSFILE`` or ``~/.pgpass``, a service file), and the command line asks on a
terminal (:data:`password_prompt`); :func:`check_url` refuses every secret parameter
(:data:`SECRET_PARAMETERS`), and :func:`shown_url` is how a message shows a URL.

Connections are kept open between the transactions of one process, one at a time per thread, and
never used by a forked child (:mod:`certkit.db_postgres_pool`); one the server closed meanwhile is
replaced (:meth:`PostgresDatabase._begin`).
Moving an SQLite inventory here is :mod:`certkit.db_copy` (``copy_inventory`` is importable from here).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from functools import lru_cache
from typing import Any

from certkit.db_copy import Copied, copy_inventory  # noqa: F401 (their names, kept importable from here)
from certkit.db_postgres_pool import _close, _lost, checkin, checkout
from certkit.db_url import (  # noqa: F401 (an inventory URL's rules, certkit.db_url's: importable from here)
    SCHEMES,
    SECRET_PARAMETERS,
    check_url,
    hide_secrets,
    is_postgres_url,
    secrets_in,
    shown_url,
)
from certkit.errors import InventoryError

LOCK_TIMEOUT_S = 60.0  # as long as SQLite's busy timeout (certkit.db.BUSY_TIMEOUT_S)
CONNECT_TIMEOUT_S = 10
CREATE_LOCK = 0x636B696E76  # the advisory lock held while an inventory's tables are created ("ckinv")
# Text is UTF-8 whatever libpq was told ($PGCLIENTENCODING, the URL, the role; LATIN1 was a UnicodeEncodeError, and
# SQL_ASCII gave bytes): the server converts; a new inventory goes only in a database of ENCODINGS_KEPT.
CLIENT_ENCODING = "UTF8"
# A shorter statement_timeout or idle_in_transaction_session_timeout of the role or database is raised to this for
# certkit's sessions (a longer one, or none, is kept): the one cancelled a batch's mark of 8,000 rows after its file
# was written, then every command's settling of them; the other ended a keyCompromise revocation while it read each
# valid certificate's key (client-side, in its transaction), on a large inventory every time. Locks: LOCK_TIMEOUT_S.
SESSION_TIMEOUT_MIN_S = 600
# A role's or database's synchronous_commit = off made certkit's durable commits return before the server's disk had
# them: a crash lost rows of certificates already delivered (unlisted, unrevocable); Inventory.sync synced nothing.
ENCODINGS_KEPT = ("UTF8", "SQL_ASCII")  # database encodings that hold every name a certificate may carry
# A host gone mid-transaction (suspended, powered off, cut off: no FIN) kept its locks until the OS gave up on it
# (hours), failing every other host's writes after LOCK_TIMEOUT_S: both ends now give up within 20 s (keepalives, and
# TCP_USER_TIMEOUT for what is not acknowledged). libpq's names; the server's are the same with "tcp_" before them.
TCP_TIMEOUTS = {"keepalives_idle": 5, "keepalives_interval": 5, "keepalives_count": 3, "user_timeout": 20000}

# Asked for the password when the server wants one and libpq found none; the command line
# sets it on a terminal (certkit.cli.common). Takes the prompt text, returns the password or None.
password_prompt: Callable[[str], str | None] | None = None


class PostgresDatabase:
    """An inventory in a PostgreSQL database, named by a URL that holds no password."""

    dialect = "postgresql"
    busy_timeout = LOCK_TIMEOUT_S  # how long a statement waits for another process's lock (as SQLite's)

    def __init__(self, url: str) -> None:
        self.url = check_url(url)
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise InventoryError(f"The inventory {shown_url(url)} is on PostgreSQL, which needs psycopg 3: "
                                 "pip install 'certkit[team]'.") from None
        _quiet_psycopg_log()

    # --- transactions ------------------------------------------------------------------
    @contextmanager
    def transaction(self, *, write: bool = False, readonly: bool = False, durable: bool = True
                    ) -> Iterator[_PostgresTx]:
        """A transaction, as :meth:`certkit.db.SQLiteDatabase.transaction`: ``write`` transactions
        run their statements as one (their row locks and constraints do what SQLite's write lock
        does); reads run each statement on its own, like SQLite's; ``readonly`` refuses every
        write; ``durable=False`` commits without waiting for the server's disk
        (``synchronous_commit = off``: a server crash may lose the last commits, never corrupt).
        A kept connection the server closed (a restart, ``idle_session_timeout``) is replaced, and
        what failed on it run again, when nothing of this transaction can have reached the server."""
        import psycopg

        tx: _PostgresTx | None = None
        try:
            with ExitStack() as stack:
                tx = self._begin(stack, write or readonly or not durable, readonly, durable)
                yield tx
        except psycopg.Error as exc:
            if tx is not None:
                checkin(self.url, tx.conn)
            raise self.error(exc) from None
        except Exception:
            if tx is not None:
                checkin(self.url, tx.conn)
            raise
        except BaseException:  # Ctrl-C or SIGTERM mid-statement: the connection's state is unknown
            if tx is not None:
                _close(tx.conn)
            raise
        checkin(self.url, tx.conn)

    def _begin(self, stack: ExitStack, explicit: bool, readonly: bool, durable: bool) -> _PostgresTx:
        """A connection, its transaction begun (``explicit``): a kept one the server closed under
        its BEGIN is replaced by a new one once (nothing was sent on it that could have run)."""
        import psycopg

        conn, kept = checkout(self)
        if not explicit:  # its first statement is the one to run again (:meth:`_PostgresTx.execute`)
            return _PostgresTx(conn, self if kept else None)
        try:
            stack.enter_context(conn.transaction())
        except psycopg.OperationalError:
            if not (kept and _lost(conn)):
                _close(conn)
                raise
            _close(conn)
            conn = self._connect()
            stack.enter_context(conn.transaction())
        tx = _PostgresTx(conn)
        if readonly:
            conn.execute("SET TRANSACTION READ ONLY")
        if not durable:
            conn.execute("SET LOCAL synchronous_commit = off")
        return tx

    def sync(self) -> None:
        """Make durable what was committed with ``durable=False``: a durable commit waits until the
        server's log is on disk up to it, and every earlier commit is before it in that log. The
        server waits only for a transaction that wrote to its log (one that took a transaction id
        and wrote nothing commits as ``synchronous_commit = off`` does): a meta row made and
        removed in it writes there, and no other transaction ever sees that row."""
        import uuid

        key = f"sync {uuid.uuid4()}"
        with self.transaction(write=True) as tx:
            tx.execute("INSERT INTO meta (key, value) VALUES (?, '')", (key,))
            tx.execute("DELETE FROM meta WHERE key = ?", (key,))

    missing = ("holds no certkit inventory (its tables are missing); check the URL and libpq's settings ($PGOPTIONS, "
               "$PGDATABASE, $PGSERVICE), or restore it from a backup.")

    def exists(self) -> bool:
        """Whether the database holds an inventory (raises if unreachable, or hidden: db_postgres_errors)."""
        from certkit.db_postgres_errors import hidden_inventory
        with self.transaction() as tx:
            return tx.execute("SELECT to_regclass('certificates') IS NOT NULL").fetchone()[0] or hidden_inventory(
                self.url, tx)

    def create(self, statements: Sequence[str]) -> None:
        """Create the inventory's tables in an empty database, in one transaction: one init-ca at a time
        (:meth:`_refuse_inventory`'s lock), so that the others racing for the database are told that another
        CA took it, not the clash of two CREATE TABLEs in PostgreSQL's catalog."""
        with self._first_to_create(), self.transaction(write=True) as tx:
            self._refuse_inventory(tx)
            for statement in statements:
                tx.execute(statement)

    def check_create(self, statements: Sequence[str], then: Sequence[tuple[str, Sequence[Any]]] = ()) -> None:
        """Do what :meth:`create` would, and the statements ``then`` after it, in one transaction that
        is rolled back: whether the database can be reached, holds no inventory, and lets this user
        create the tables and write to them, known before anything that cannot be undone (a key
        generated in a token); nothing stays in the database."""
        try:
            with self._first_to_create(), self.transaction(write=True) as tx:
                self._refuse_inventory(tx)
                for statement in statements:
                    tx.execute(statement)
                for statement, params in then:
                    tx.execute(statement, params)
                raise _RolledBack
        except _RolledBack:
            pass

    @contextmanager
    def _first_to_create(self) -> Iterator[None]:
        """Another process that created the same tables at the same moment without the lock (an older
        certkit) makes PostgreSQL's catalog refuse a duplicate: that CA took the database, said so."""
        try:
            yield
        except InventoryError as exc:
            if "refused to create the same table" in str(exc):
                raise InventoryError(self.taken) from None
            raise

    def _refuse_inventory(self, tx: _PostgresTx) -> None:
        """Refuse a database that holds an inventory, with the lock of its creation held until the
        transaction ends: a second init-ca waits for the first's commit, then sees its tables."""
        self.refuse_encoding(tx)
        tx.execute(f"SELECT pg_advisory_xact_lock({CREATE_LOCK})")
        if tx.execute("SELECT to_regclass('certificates') IS NOT NULL").fetchone()[0]:
            raise InventoryError(self.taken)

    def refuse_encoding(self, tx: _PostgresTx) -> None:
        """Refuse to put a new inventory in a database whose encoding cannot hold every name (LATIN1, WIN1252,
        EUC_JP...): it would take the CA's first certificates and refuse the first name outside it for good."""
        encoding = tx.execute("SHOW server_encoding").fetchone()[0]
        if encoding.upper() not in ENCODINGS_KEPT:
            raise InventoryError(f"The database {shown_url(self.url)} is encoded in {encoding}, which cannot hold "
                                 "every name a certificate may carry; create the database with ENCODING 'UTF8' "
                                 "(CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0) and give its URL; "
                                 "nothing was changed.")

    def encoding(self) -> str:
        """The database's encoding (``server_encoding``): UTF8 for one certkit made or moved an inventory into."""
        with self.transaction() as tx:
            return tx.execute("SHOW server_encoding").fetchone()[0]

    @property
    def taken(self) -> str:
        return (f"The database {shown_url(self.url)} already holds a certkit inventory; give each CA a database of "
                "its own (CREATE DATABASE ...), or remove that inventory yourself.")

    def server_version(self) -> str:
        with self.transaction() as tx:
            return tx.execute("SHOW server_version").fetchone()[0]

    def unwritable(self) -> str | None:
        """Why this role cannot write the inventory here, in words (the end of a sentence), or None: a standby
        (a failover left the URL naming it), transactions read-only by default, or privileges it lacks."""
        from certkit.text import shown

        with self.transaction() as tx:
            role, standby, read_only = tx.execute(
                "SELECT current_user, pg_is_in_recovery(), current_setting('default_transaction_read_only')"
            ).fetchone()
            lacking = [f"{privilege} on {table}" for table, privilege in tx.execute(
                "SELECT t, p FROM unnest(ARRAY['certificates', 'meta']) AS t, unnest(ARRAY['SELECT', 'INSERT', "
                "'UPDATE']) AS p WHERE NOT has_table_privilege(t, p) ORDER BY 1, 2").fetchall()]
        if standby:
            return "is a standby server (read-only: a failover made another server the primary?)"
        if read_only == "on":
            return f"makes every transaction of the role {shown(role)} read-only (default_transaction_read_only)"
        if lacking:
            return f"does not let the role {shown(role)} write the inventory (it lacks {', '.join(lacking)})"
        return None

    def _connect(self):
        import psycopg

        from certkit.db_postgres_errors import unsafe_passfile, wants_password
        from certkit.db_postgres_locks import session_name, set_up

        password = _PASSWORDS.get(self.url)
        for _attempt in range(2):
            extra = {"password": password} if password is not None else {}
            # A password file others can read: libpq would ignore it with a WARNING line of its own; told
            # another (absent) file instead, and the ignored one named if a password is then missing.
            self.ignored_passfile = unsafe_passfile(self.url, password is not None)
            if self.ignored_passfile is not None:
                extra["passfile"] = os.path.join(os.devnull, "none")
            try:
                conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                                       application_name=session_name(), **_keepalives(self.url), **extra)
            except UnicodeError as exc:  # a host name with an empty or long label (db..example.com): the resolver's
                raise InventoryError(f"The inventory {shown_url(self.url)} cannot be reached: its host name is not "
                                     f"valid ({_first_line(exc)}).") from None
            except psycopg.Error as exc:
                if password is None and wants_password(exc) and password_prompt is not None:
                    ignored = f" ({self.ignored_passfile} is ignored: chmod 600 it)" if self.ignored_passfile else ""
                    password = password_prompt(f"Password for the inventory {shown_url(self.url)}{ignored}")
                    if password:
                        continue
                # a password certkit holds was typed at its prompt (now, or earlier in this process)
                raise self.error(exc, typed=password is not None) from None
            if password is not None:
                _PASSWORDS[self.url] = password  # asked once per process
            try:
                # A lock held longer than this fails the statement, naming who holds it (db_postgres_locks).
                # The isolation certkit's transactions are written for (row locks, ON CONFLICT, SKIP LOCKED), whatever
                # the database's or the role's default: under repeatable read or serializable, a row another host
                # changed while this one waited for its lock fails the transaction instead of being read again.
                # The server's side of TCP_TIMEOUTS (a host gone does not keep its locks); UTF-8 (CLIENT_ENCODING).
                set_up(conn, f"{_SESSION_TIMEOUTS}; SET lock_timeout = '{int(self.busy_timeout * 1000)}ms'; "
                        f"SET default_transaction_isolation = 'read committed'; SET client_encoding = "
                        f"'{CLIENT_ENCODING}'; "
                        + "; ".join(f"SET tcp_{name} = {value}" for name, value in TCP_TIMEOUTS.items()
                                    if name != "user_timeout" or conn.info.server_version >= 120000))
            except psycopg.Error as exc:
                _close(conn)
                raise self.error(exc) from None
            return conn
        raise self.error(None)

    # --- errors ------------------------------------------------------------------------
    def error(self, exc: Exception | None, *, typed: bool = False) -> InventoryError:
        """``exc`` in words, naming the database (:func:`certkit.db_postgres_errors.describe`)."""
        from certkit.db_postgres_errors import describe

        return describe(self, exc, typed=typed)


_SESSION_TIMEOUTS = "; ".join(  # SESSION_TIMEOUT_MIN_S where shorter, not 0: sent first (each statement is timed)
    f"SELECT set_config('{name}', CASE WHEN current_setting('{name}')::interval BETWEEN interval '1ms' AND interval "
    f"'{SESSION_TIMEOUT_MIN_S * 1000 - 1}ms' THEN '{SESSION_TIMEOUT_MIN_S}s' ELSE current_setting('{name}') END, false)"
    for name in ("statement_timeout", "idle_in_transaction_session_timeout")) + (
    "; SELECT set_config('synchronous_commit', CASE current_setting('synchronous_commit') WHEN 'off' THEN 'local' ELSE "
    "current_setting('synchronous_commit') END, false)")  # durable commits wait for this server's disk


class _RolledBack(Exception):
    """Ends :meth:`PostgresDatabase.check_create`'s transaction: rolled back, as it was meant to be."""


def _quiet_psycopg_log() -> None:
    """psycopg logs what it ignores while it fails ("error ignored terminating <psycopg.Pipeline [BAD]
    at 0x...>" when a connection is lost in a pipeline); with no handler of the program's, Python printed
    that on standard error, above certkit's one Error: line, which says what happened. A program that
    sets up logging still gets those records (they propagate to its handlers)."""
    import logging

    log = logging.getLogger("psycopg")
    if not log.handlers:
        log.addHandler(logging.NullHandler())


class _PostgresTx:
    dialect = "postgresql"

    def __init__(self, conn, again: PostgresDatabase | None = None) -> None:
        self.conn = conn
        self._again = again  # a kept connection's first statement: run again on a new one if it was lost

    def execute(self, sql: str, params: Sequence[Any] = ()):
        import psycopg

        again, self._again = self._again, None
        try:
            return self._execute(sql, params)
        except psycopg.OperationalError:
            # Only a read (each statement on its own here): a write lost with its connection may have run.
            if again is None or not _lost(self.conn) or not re.match(r"\s*(SELECT|SHOW)\b", sql, re.I):
                raise
            _close(self.conn)
            self.conn = again._connect()
            return self._execute(sql, params)

    def _execute(self, sql: str, params: Sequence[Any]):
        cursor = self.conn.cursor()
        if params:
            cursor.execute(_placeholders(sql), tuple(params))
        else:
            cursor.execute(sql)  # no parameters: the text goes as it is (a % stays a %)
        return cursor

    def executemany(self, sql: str, rows):
        cursor = self.conn.cursor()
        rows = [tuple(row) for row in rows]
        if rows:
            cursor.executemany(_placeholders(sql), rows)
        return cursor


@lru_cache(maxsize=256)
def _placeholders(sql: str) -> str:
    """SQLite's ``?`` as psycopg's ``%s`` (outside string literals), and every ``%`` doubled
    (psycopg reads ``%`` as a placeholder everywhere once parameters are given)."""
    out, quoted = [], False
    for ch in sql:
        if ch == "'":
            quoted = not quoted
        if ch == "%":
            out.append("%%")
        elif ch == "?" and not quoted:
            out.append("%s")
        else:
            out.append(ch)
    return "".join(out)


# the passwords typed at the prompt, one per URL (certkit.db_postgres_pool holds the connections)
_PASSWORDS: dict[str, str] = {}

def _keepalives(url: str) -> dict[str, int]:
    """libpq's side of :data:`TCP_TIMEOUTS`, for what the URL does not set itself."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        given = conninfo_to_dict(url)
    except Exception:  # libpq says what is wrong with it
        return {}
    wanted = {"keepalives": 1, **{name if name.startswith("keep") else f"tcp_{name}": value
                                    for name, value in TCP_TIMEOUTS.items()}}
    return {name: value for name, value in wanted.items() if name not in given}


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__).rstrip(".")
