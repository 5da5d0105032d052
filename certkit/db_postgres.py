"""The inventory on PostgreSQL (psycopg 3): the same transactions and SQL as on SQLite, for teams.

A CA directory whose inventory URL is ``postgresql://...`` (``init-ca --inventory``,
or ``CERTKIT_INVENTORY_URL``) keeps its record of certificates in one shared
database, so several operators and hosts can issue from one CA. What SQLite
gets from its whole-file write lock, PostgreSQL gets from the database itself:

- a serial is the primary key: no two rows can ever hold the same serial,
  whichever host recorded them;
- ``SELECT ... FOR UPDATE`` locks the rows a write transaction decides on (a
  revocation, the CRL number, a renewal's predecessor), so two hosts never
  take the same CRL number nor decide on the same row at once;
- ``FOR UPDATE SKIP LOCKED`` lets two hosts settle pending rows at the same
  time, each row by one of them (:meth:`certkit.inventory.Inventory.reconcile`).

The password is never in the URL (nor in argv): libpq finds it in its usual
places (``PGPASSWORD``, ``PGPASSFILE`` or ``~/.pgpass``, a service file), and
the command line asks on a terminal when the server wants one and none was
found (:data:`password_prompt`). Nor is any other secret libpq takes
(``sslpassword``...: :data:`SECRET_PARAMETERS`): :func:`check_url` refuses
them, and :func:`shown_url` is how a message shows a URL.

Connections are kept open between transactions of one process (a command takes
several), one at a time per thread, and are never used by a forked child.

Moving an SQLite inventory here, verified row by row, is :mod:`certkit.db_copy`
(``copy_inventory`` and ``Copied`` stay importable from this module).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from certkit.db_copy import Copied, copy_inventory  # noqa: F401 (their names, kept importable from here)
from certkit.errors import InventoryError
from certkit.text import shown

LOCK_TIMEOUT_S = 60.0  # as long as SQLite's busy timeout (certkit.db.BUSY_TIMEOUT_S)
CONNECT_TIMEOUT_S = 10
IDLE_CHECK_S = 10.0  # a connection idle longer than this is checked before use (the server may have closed it)
_IDLE_KEPT = 4  # open connections kept per database and process (the ACME server's threads share them)
SCHEMES = ("postgresql://", "postgres://")

# Asked for the password when the server wants one and libpq found none; the command line
# sets it on a terminal (certkit.cli.common). Takes the prompt text, returns the password or None.
password_prompt: Callable[[str], str | None] | None = None


def is_postgres_url(text: str) -> bool:
    return str(text).startswith(SCHEMES)


# libpq's connection parameters that hold a secret: those PQconndefaults() marks "*" (shown as
# stars: password, sslpassword, oauth_client_secret) and the SCRAM keys it hides as debug options
# (a ClientKey logs in as well as the password it was derived from). A path to a secret (passfile,
# sslkey, a service file) is not one: the file is where the secret belongs, and libpq checks its mode.
SECRET_PARAMETERS = ("password", "sslpassword", "oauth_client_secret", "scram_client_key", "scram_server_key")
_HIDDEN = "***"


def secrets_in(url: str) -> list[str]:
    """The secret connection parameters ``url`` sets (:data:`SECRET_PARAMETERS`, in that order),
    wherever libpq (or a generic URL parser) would find them: a password in the user part, or a
    query parameter, whatever its case and %-escapes (libpq decodes the names), given once or twice."""
    found = {name for name, _value in _secret_spans(url)}
    return [name for name in SECRET_PARAMETERS if name in found]


def shown_url(url: object) -> str:
    """``url`` fit to print in a message: :func:`certkit.text.shown`, with the value of every
    secret parameter (a password in the user part, ``sslpassword=``...) replaced by ``***``;
    every message that names an inventory URL goes through this, wherever the URL came from."""
    return shown(hide_secrets(str(url)))


def hide_secrets(text: str) -> str:
    """``text`` with the value of every secret parameter replaced by ``***`` (not escaped for printing:
    an inventory's location, kept to be printed, whatever was taken for it)."""
    values = sorted((span for _name, span in _secret_spans(text) if span is not None), reverse=True)
    for start, end in values:  # from the end: the earlier spans stay where they are
        text = text[:start] + _HIDDEN + text[end:]
    return text


def _secret_spans(url: str) -> list[tuple[str, tuple[int, int] | None]]:
    """Each secret parameter in ``url``: its name and where its value is ((start, end), or None for
    a name without a value). Read more widely than libpq reads a URI, never more narrowly: libpq
    takes the user part up to the first '@' before any '/' (a '?' or '#' there is part of it), a
    generic parser up to the last '@' before a '/', '?' or '#'; libpq splits the query after a '?'
    on '&' and has no fragment (a '#' is part of a value). So the user part here runs to the last
    '@' before the query (a password may hold a '/'), and the query is split on '&' and '?' from the
    first '?' on. A string without a scheme is read as libpq's keyword/value form (password=...)."""
    from urllib.parse import unquote

    scheme = re.match(r"\s*[A-Za-z][A-Za-z0-9+.-]*:/+", url)  # (a path keeps one '/' of "postgresql://")
    start = scheme.end() if scheme else 0
    found: list[tuple[str, tuple[int, int] | None]] = []
    if not scheme:  # a libpq keyword/value string ("dbname=ca password=..."), taken for a path or refused
        for match in re.finditer(r"(?:^|\s)([A-Za-z_]+)\s*=\s*('(?:[^'\\]|\\.)*'?|\S*)", url):
            if match.group(1).lower() in SECRET_PARAMETERS:
                found.append((match.group(1).lower(), match.span(2)))
        return found
    question, slash = url.find("?", start), url.find("/", start)
    # The user part: up to the last '@' before the first '/' (libpq: a '?' may be part of it), or before
    # the first '?' (a password may hold a '/'), whichever reaches further: masked whole either way.
    at = url.rfind("@", start, max(len(url) if question < 0 else question, len(url) if slash < 0 else slash))
    if at >= 0:
        colon = url.find(":", start, at)
        if colon >= 0:
            found.append(("password", (colon + 1, at)))
    if question >= 0:
        for match in re.finditer(r"[?&]([^=&?]*)(?:=([^&?]*))?", url[question:]):
            name = unquote(match.group(1), errors="replace").strip().lower()
            if name in SECRET_PARAMETERS:
                value = match.span(2) if match.group(2) is not None else None
                found.append((name, (question + value[0], question + value[1]) if value else None))
    return found


def check_url(url: str) -> str:
    """``url`` if it can name an inventory: a PostgreSQL URL without a secret in it (a password,
    the client key's passphrase...: :data:`SECRET_PARAMETERS`)."""
    if not is_postgres_url(url):
        raise InventoryError(f"'{shown_url(url)}' is not a PostgreSQL URL; write postgresql://USER@HOST[:PORT]/DATABASE.")
    found = secrets_in(url)  # before anything else: an error message never repeats a secret
    if found:
        raise InventoryError(_refusal(found))
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InventoryError(f"The inventory URL cannot be read: {exc}.") from None
    if "," not in parts.netloc:  # libpq's host1:port1,host2:port2 is not urlsplit's to judge
        try:
            parts.port  # noqa: B018 (parses it: a bad port raises ValueError)
        except ValueError as exc:
            raise InventoryError(f"The inventory URL '{shown_url(url)}' cannot be read: {exc}.") from None
    return url


def _refusal(found: list[str]) -> str:
    """Why a URL holding the secret parameters ``found`` is refused, and where each secret goes
    instead (their names only: never a value)."""
    if found == ["password"]:
        return ("The inventory URL holds a password; certkit never stores one (nor takes it from the command "
                "line). Remove it from the URL and put it in ~/.pgpass (or $PGPASSFILE), $PGPASSWORD or a "
                "service file, or let certkit ask for it on a terminal.")
    what = {"password": "a password", "sslpassword": "sslpassword (the passphrase of the client key)"}
    advice = {
        "password": "put the password in ~/.pgpass (or $PGPASSFILE), $PGPASSWORD or a service file, or let "
                    "certkit ask for it on a terminal",
        "sslpassword": "keep the client key unencrypted and readable by its owner only (chmod 600: libpq refuses "
                       "a key others can read) at ~/.postgresql/postgresql.key, $PGSSLKEY or sslkey=PATH, or put "
                       "sslpassword in a service file (~/.pg_service.conf, mode 600) and name it with "
                       "?service=NAME",
    }
    others = [name for name in found if name not in advice]
    names = [what.get(name, name) for name in found]
    steps = [advice[name] for name in found if name in advice]
    if others:
        steps.append(f"put {' and '.join(others)} in a service file (~/.pg_service.conf, mode 600) and name it "
                     "with ?service=NAME")
    return (f"The inventory URL holds {' and '.join(names)}; certkit never stores a secret (nor takes one from "
            f"the command line). Remove {'it' if len(found) == 1 else 'them'} from the URL: "
            + "; ".join(steps) + ".")


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
        (``synchronous_commit = off``: a server crash may lose the last commits, never corrupt)."""
        import psycopg

        conn = self._checkout()
        try:
            if write or readonly or not durable:
                with conn.transaction():
                    if readonly:
                        conn.execute("SET TRANSACTION READ ONLY")
                    if not durable:
                        conn.execute("SET LOCAL synchronous_commit = off")
                    yield _PostgresTx(conn)
            else:
                yield _PostgresTx(conn)
        except psycopg.Error as exc:
            self._checkin(conn)
            raise self.error(exc) from None
        except Exception:
            self._checkin(conn)
            raise
        except BaseException:  # Ctrl-C or SIGTERM mid-statement: the connection's state is unknown
            _close(conn)
            raise
        self._checkin(conn)

    def sync(self) -> None:
        """Make durable what was committed with ``durable=False``: a durable commit waits until the
        server's log is on disk up to it, and every earlier commit is before it in that log."""
        with self.transaction(write=True) as tx:
            tx.execute("SELECT txid_current()")  # a transaction id: the commit is logged, and waited for

    def exists(self) -> bool:
        """Whether the database holds an inventory (raises if it cannot be reached)."""
        with self.transaction() as tx:
            return tx.execute("SELECT to_regclass('certificates') IS NOT NULL").fetchone()[0]

    def create(self, statements: Sequence[str]) -> None:
        """Create the inventory's tables in an empty database, in one transaction."""
        with self.transaction(write=True) as tx:
            self._refuse_inventory(tx)
            for statement in statements:
                tx.execute(statement)

    def check_create(self, statements: Sequence[str], then: Sequence[tuple[str, Sequence[Any]]] = ()) -> None:
        """Do what :meth:`create` would, and the statements ``then`` after it, in one transaction that
        is rolled back: whether the database can be reached, holds no inventory, and lets this user
        create the tables and write to them, known before anything that cannot be undone (a key
        generated in a token); nothing stays in the database."""
        try:
            with self.transaction(write=True) as tx:
                self._refuse_inventory(tx)
                for statement in statements:
                    tx.execute(statement)
                for statement, params in then:
                    tx.execute(statement, params)
                raise _RolledBack
        except _RolledBack:
            pass

    def _refuse_inventory(self, tx: _PostgresTx) -> None:
        if tx.execute("SELECT to_regclass('certificates') IS NOT NULL").fetchone()[0]:
            raise InventoryError(
                f"The database {shown_url(self.url)} already holds a certkit inventory; give each CA a "
                "database of its own (CREATE DATABASE ...), or remove that inventory yourself.")

    def server_version(self) -> str:
        with self.transaction() as tx:
            return tx.execute("SHOW server_version").fetchone()[0]

    # --- connections -------------------------------------------------------------------
    def _checkout(self):
        key = (self.url, os.getpid())
        while True:
            with _POOL_LOCK:
                idle = _IDLE.get(key)
                conn = idle.pop() if idle else None
            if conn is None:
                return self._connect()
            if conn.closed or conn.broken:
                continue
            if time.monotonic() - getattr(conn, "_certkit_idle_since", 0.0) > IDLE_CHECK_S:
                try:
                    conn.execute("SELECT 1")
                except Exception:  # closed by the server (restart, idle timeout): take another
                    _close(conn)
                    continue
            return conn

    def _checkin(self, conn) -> None:
        from psycopg import pq

        if conn.closed or conn.broken or conn.info.transaction_status != pq.TransactionStatus.IDLE:
            _close(conn)
            return
        conn._certkit_idle_since = time.monotonic()
        with _POOL_LOCK:
            idle = _IDLE.setdefault((self.url, os.getpid()), [])
            if len(idle) < _IDLE_KEPT:
                idle.append(conn)
                return
        _close(conn)

    def _connect(self):
        import psycopg

        password = _PASSWORDS.get(self.url)
        for _attempt in range(2):
            extra = {"password": password} if password is not None else {}
            try:
                conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                                       application_name="certkit", **extra)
            except psycopg.Error as exc:
                if password is None and _wants_password(exc) and password_prompt is not None:
                    password = password_prompt(f"Password for the inventory {shown_url(self.url)}")
                    if password:
                        continue
                raise self.error(exc) from None
            if password is not None:
                _PASSWORDS[self.url] = password  # asked once per process
            try:
                # A lock held longer than this fails the statement with words, as SQLite's busy timeout does.
                conn.execute(f"SET lock_timeout = '{int(self.busy_timeout * 1000)}ms'")
            except psycopg.Error as exc:
                _close(conn)
                raise self.error(exc) from None
            return conn
        raise self.error(None)

    # --- errors ------------------------------------------------------------------------
    def error(self, exc: Exception | None) -> InventoryError:
        """``exc`` in words, naming the database: what failed, not just that something did."""
        where = shown_url(self.url)
        text = _first_line(exc) if exc is not None else "no password was given"
        lowered = text.lower()
        state = getattr(exc, "sqlstate", None) or ""
        if exc is None or _wants_password(exc):
            message = (f"The inventory {where} needs a password and none was found: put it in ~/.pgpass (or "
                       "$PGPASSFILE), $PGPASSWORD or a service file, or run on a terminal to be asked.")
        elif "password authentication failed" in lowered or state == "28P01":
            message = (f"The inventory {where} refused the password ({text}); check ~/.pgpass, $PGPASSFILE "
                       "or $PGPASSWORD.")
        elif state.startswith("28") or "authentication" in lowered:
            message = f"The inventory {where} refused the connection: {text}."
        elif "does not exist" in lowered and "database" in lowered:
            message = f"The inventory {where} cannot be opened: {text}; create it first (CREATE DATABASE)."
        elif state in ("42P01", "42703"):
            message = f"The inventory {where} lacks part of its schema ({text}); restore it from a backup."
        elif state == "23505":
            message = (f"The inventory {where} refused a duplicate ({text}): another certkit process recorded "
                       "the same key at the same moment. Nothing was changed; try again.")
        elif state in ("40001", "40P01"):
            message = (f"The inventory {where} stopped a transaction that conflicted with another certkit "
                       f"process ({text}). Nothing was changed; try again.")
        elif state == "55P03" or "lock timeout" in lowered:
            message = (f"The inventory {where} stayed locked by another certkit process for "
                       f"{self.busy_timeout:g} s; try again.")
        elif state == "25006":
            message = f"The inventory {where} is read-only (a read-only transaction or standby); nothing was changed."
        elif state == "53100":
            message = f"The inventory {where} cannot be written: the database server's disk is full."
        elif state == "42501":
            message = f"The inventory {where} may not be used by this database user: {text}."
        elif state.startswith(("08", "57")) or _is_connection_error(exc):
            message = f"The inventory {where} cannot be reached: {text}."
        else:
            message = f"The inventory {where} cannot be used: {text}."
        return InventoryError(message)


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

    def __init__(self, conn) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()):
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


# --- the connections of this process ---------------------------------------------------
_POOL_LOCK = threading.Lock()
_IDLE: dict[tuple[str, int], list] = {}
_PASSWORDS: dict[str, str] = {}


def close_idle(url: str | None = None) -> None:
    """Close this process's idle connections (to ``url``, or all): a long-running caller that
    has finished with a database (tests, a tool that visits many CAs)."""
    with _POOL_LOCK:
        keys = [k for k in _IDLE if k[1] == os.getpid() and (url is None or k[0] == url)]
        conns = [conn for k in keys for conn in _IDLE.pop(k)]
    for conn in conns:
        _close(conn)


def _close(conn) -> None:
    try:
        conn.close()
    except Exception:
        pass


def _forget_inherited() -> None:
    """In a forked child: the parent's connections are the parent's. Closing them here would
    send the server a goodbye on the parent's socket, so each socket is pointed at /dev/null
    first (the parent's own copy stays open) and the objects are dropped."""
    global _POOL_LOCK
    _POOL_LOCK = threading.Lock()  # the parent may have held it at the fork
    inherited = [conn for conns in _IDLE.values() for conn in conns]
    _IDLE.clear()
    if not inherited:
        return
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for conn in inherited:
            try:
                os.dup2(devnull, conn.fileno())
            except Exception:
                pass
    finally:
        os.close(devnull)
    _DETACHED.extend(inherited)  # never finalized while the process runs; their sockets go nowhere


_DETACHED: list = []
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_inherited)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__).rstrip(".")


def _wants_password(exc: Exception | None) -> bool:
    text = str(exc).lower()
    return "no password supplied" in text or "fe_sendauth" in text


def _is_connection_error(exc: Exception | None) -> bool:
    try:
        import psycopg
    except ImportError:
        return False
    return isinstance(exc, psycopg.OperationalError)
