"""The database under an inventory: SQLite by default, PostgreSQL for teams, one interface.

Callers write SQL once, in the subset both engines share, with ``?``
placeholders, and run it inside :meth:`Database.transaction`. A write
transaction holds the lock that makes its checks and its writes one step: on
SQLite the whole-database write lock (``BEGIN IMMEDIATE``, waiting up to
:data:`BUSY_TIMEOUT_S`); on PostgreSQL the row locks the statements take
(``SELECT ... FOR UPDATE``, which SQLite does not need and :meth:`Tx.execute`
removes there) and the unique constraints.

Failures are translated into :class:`~certkit.errors.InventoryError` messages
that say what happened: the disk is full, the file is read-only, it is locked,
it is damaged.
"""

from __future__ import annotations

import os
import re
import sqlite3
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from certkit.errors import InventoryError
from certkit.text import shown


def sqlite_name(path: "str | os.PathLike[str]") -> str:
    """The name SQLite is given for the database file ``path``: its folder resolved as the kernel resolves it,
    the file's own name as it is. SQLite resolves '..' itself, lexically, and refuses one that climbs above '/',
    which the kernel takes as '/' itself: ``--ca-dir ../../../../../../tmp/ca`` from a folder three deep met
    "unable to open database file" (a traceback, at init-ca) for a path every other file was written through."""
    folder, name = os.path.split(os.fspath(path))
    return os.path.join(os.path.realpath(folder or "."), name)

BUSY_TIMEOUT_S = 60.0
_FOR_UPDATE = re.compile(r"\s+FOR UPDATE(\s+OF\s+\w+)?(\s+SKIP LOCKED)?", re.IGNORECASE)


class Tx(Protocol):
    """One transaction: ``execute`` returns a cursor (``fetchone``, ``fetchall``, iteration, ``rowcount``)."""

    dialect: str

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any: ...


class Database(Protocol):
    url: str
    dialect: str
    missing: str  # what an inventory that is not there is, in words (after its location)

    def transaction(self, *, write: bool = False) -> Any: ...

    def exists(self) -> bool: ...

    def sync(self) -> None: ...


class _SQLiteTx:
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()):
        return self.conn.execute(_FOR_UPDATE.sub("", sql), tuple(params))

    def executemany(self, sql: str, rows):
        return self.conn.executemany(sql, rows)


class SQLiteDatabase:
    """An SQLite file in write-ahead-log mode, so readers (``list``) never wait for a writer.

    Each transaction has a connection of its own. One more, idle, is held open
    for as long as this object lives (:meth:`_hold`): SQLite checkpoints the
    write-ahead log into the file, syncs it and deletes the log and its index
    whenever the *last* connection to a file closes, so without it every
    transaction (four in a one-shot ``issue-server``, one per chunk in a batch)
    paid for a checkpoint and for creating and deleting two files. With it, the
    log is checkpointed when it grows past SQLite's automatic limit and when
    the held connection closes (this object is collected, or the process
    exits). No connection is open across a fork: the held one is closed before
    and opened again after, when needed.
    """

    dialect = "sqlite"
    # How long a transaction waits for another process's write lock; a server answering clients
    # that give up sooner waits less (certkit.acme.db).
    busy_timeout = BUSY_TIMEOUT_S

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self._held: sqlite3.Connection | None = None
        self.read_only: bool | None = None  # known at the first transaction (see _connect)

    def _hold(self) -> None:
        if self._held is not None or self.read_only:
            return

        try:  # a read-only inventory is simply not held
            conn = self._connect()
        except sqlite3.Error:
            return
        try:
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()  # maps the log's index: the hold
        except sqlite3.Error:
            conn.close()
            return
        self._held = conn
        _HOLDERS.add(self)
        weakref.finalize(self, _close_if_ours, conn, os.getpid())

    def _connect(self) -> sqlite3.Connection:
        """A connection to the existing file (mode=rw never creates one: a missing inventory stays
        missing, and is said to be, instead of becoming an empty file every command calls damaged).

        An inventory that cannot be written (a read-only mount, such as an offline root's media, or a
        full disk, where SQLite cannot create the log's index beside it) is opened read-only, so
        that what only reads (``list``, ``check``, ``verify``'s revocation check) still works; a
        write then fails as read-only. Without a write-ahead log beside it every committed row is in
        the file, which SQLite may then read as unchanging (``immutable``); with one, it reads the
        log too, as it can when the log's index exists."""
        if self.read_only is None:
            conn = self._open("rw")
            try:
                conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
                self.read_only = False
                return conn
            except sqlite3.Error as exc:
                conn.close()
                if not self._unwritable(exc):
                    raise
                self.read_only = True
        if not self.read_only:
            return self._open("rw")
        log = self.path.with_name(self.path.name + "-wal")
        return self._open("ro" if log.exists() and log.stat().st_size else "ro&immutable=1")

    def _open(self, mode: str) -> sqlite3.Connection:
        import urllib.parse

        return sqlite3.connect(f"file:{urllib.parse.quote(sqlite_name(self.path))}?mode={mode}", uri=True,
                               timeout=self.busy_timeout, isolation_level=None)

    def _unwritable(self, exc: sqlite3.Error) -> bool:
        """Whether ``exc``, met on first reading, means the file cannot be written here (so it may
        still be read), rather than that it is missing, locked or damaged."""
        lowered = str(exc).lower()
        if "readonly" in lowered or "read-only" in lowered:
            return True
        if ("unable to open" in lowered or "disk i/o error" in lowered) and self.path.is_file():
            return (_file_system(self.path, "read-only") or _file_system(self.path, "full")
                    or not os.access(self.path.parent, os.W_OK))
        return False

    def release(self) -> None:
        """Close the held connection (the last one: the log is checkpointed); reopened when needed."""
        held, self._held = self._held, None
        if held is not None:
            _HOLDERS.discard(self)
            _close_quietly(held)

    missing = "is missing; the CA directory is incomplete."

    def exists(self) -> bool:
        return self.path.is_file()

    def sync(self) -> None:
        """Make durable what this process committed without waiting for the disk (``durable=False``),
        as the next durable commit would: sync the write-ahead log, where those commits are (a
        checkpoint that moved them into the file synced the log before and the file after).

        Never the database file itself: closing any descriptor of it releases every POSIX lock this
        process holds on it, its connections' included (SQLite's "How To Corrupt", 2.2). Another
        process's connection closing then took itself for the last one, checkpointed and reset the
        log under this process's feet, and the batch's marks left the indexes out of step with the
        rows (``PRAGMA integrity_check``: "row 1 missing from index certificates_pending")."""
        path = self.path.with_name(self.path.name + "-wal")  # holds no lock: SQLite locks the file and -shm
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return  # no log: the last connection's checkpoint synced the file and removed it
        except OSError as exc:
            raise InventoryError(f"The inventory {shown(path)} cannot be read: {exc.strerror}.") from None
        try:
            os.fsync(fd)
        except OSError as exc:
            raise InventoryError(f"The inventory {shown(path)} could not be written to disk: "
                                 f"{exc.strerror}.") from None
        finally:
            os.close(fd)

    @contextmanager
    def transaction(self, *, write: bool = False, readonly: bool = False, durable: bool = True
                    ) -> Iterator[_SQLiteTx]:
        """A transaction; ``readonly`` refuses every write (``certkit check`` changes nothing);
        ``durable=False`` commits without waiting for the disk (records whose loss in a power cut
        costs only a retry, such as ACME nonces; a process crash still keeps them)."""
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            raise self.error(exc) from None
        self._hold()
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            if readonly:
                conn.execute("PRAGMA query_only = ON")
            if not durable:
                conn.execute("PRAGMA synchronous = NORMAL")
            if write:
                conn.execute("BEGIN IMMEDIATE")
            yield _SQLiteTx(conn)
            if write:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            raise self.error(exc) from None
        except BaseException:
            _rollback(conn)
            raise
        finally:
            conn.close()

    def create(self, statements: Sequence[str]) -> None:
        conn = sqlite3.connect(sqlite_name(self.path), isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")  # readers (list) run while a writer issues
            for statement in statements:
                conn.execute(statement)
        except sqlite3.Error as exc:
            raise self.error(exc) from None
        finally:
            conn.close()

    def error(self, exc: sqlite3.Error) -> InventoryError:
        """``exc`` in words, naming the file: what failed, not just that something did."""
        text = str(exc)
        where = shown(self.path)
        undecodable = re.match(r"Could not decode to UTF-8 column '([^']*)'", text)
        if undecodable:  # SQLite's message carries the raw bytes (a certificate's DER) after this
            text = f"a row's {undecodable.group(1)} holds bytes that are not text (binary data where text belongs)"
        lowered = text.lower()
        # SQLite says "disk I/O error" when its shared-memory file cannot grow on a full disk, and
        # "unable to open" when a write-ahead-log database lies on a read-only mount: ask the file system.
        full = self.read_only and "readonly" in lowered and _file_system(self.path, "full")  # opened read-only
        from certkit.scratch import elsewhere_full  # room beside the inventory: SQLite's temporary folder

        elsewhere = "disk is full" in lowered and not full and elsewhere_full(self.path, where)
        if elsewhere:
            message = elsewhere
        elif full or "disk is full" in lowered or ("disk i/o error" in lowered and _file_system(self.path, "full")):
            message = f"The inventory {where} cannot be written: the disk is full."
        elif "disk i/o error" in lowered and _past_size_limit(self.path):  # SQLite says EFBIG so
            from certkit.text import too_large_words

            message = f"The inventory {where} cannot be used: {too_large_words()}."
        elif "readonly" in lowered or "read-only" in lowered or (
                "unable to open" in lowered and _file_system(self.path, "read-only")):
            message = f"The inventory {where} is read-only (a read-only file, folder or mount); nothing was changed."
        elif "locked" in lowered or "busy" in lowered:
            message = (f"The inventory {where} stayed locked for {self.busy_timeout:g} s by another process (a certkit "
                       f"command, or a program that opened it: fuser {where} names it); try again once it is done.")
        elif "unable to open" in lowered and not os.path.lexists(self.path):
            message = f"The inventory {where} is missing; the CA directory is incomplete."
        elif "unable to open" in lowered:
            message = f"The inventory {where} cannot be opened: {text}."
        elif "inventory moved to" in lowered:  # the triggers `certkit inventory migrate` leaves behind
            message = f"The inventory {where} refuses writes: {text}."
        elif "no such table" in lowered or "no such column" in lowered:
            message = f"The inventory {where} lacks part of its schema ({text}); restore it from a backup."
        elif isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
            message = f"The inventory {where} is damaged ({text}); restore it from a backup."
        else:
            message = f"The inventory {where} cannot be used: {text}."
        return InventoryError(message)


def _file_system(path: Path, state: str) -> bool:
    """Whether the file system holding ``path`` is ``"full"`` (less than a few pages free) or
    mounted ``"read-only"``."""

    try:
        info = os.statvfs(path.parent)
    except OSError:
        return False
    if state == "full":
        return info.f_bavail * info.f_frsize < 64 * 1024
    return bool(info.f_flag & os.ST_RDONLY)


def _past_size_limit(path: Path) -> bool:
    """Whether this process's file size limit (``ulimit -f``) is what stops the inventory at ``path`` from growing:
    SQLite writes its pages at the end of the file and of its log, and says "disk I/O error" when the kernel
    refuses them (EFBIG); a limit within a megabyte of what they hold now is the cause."""
    from certkit.text import file_size_limit

    limit = file_size_limit()
    if limit is None:
        return False
    held = 0
    for name in (path.name, path.name + "-wal", path.name + "-journal"):
        try:
            held = max(held, os.stat(path.with_name(name)).st_size)
        except OSError:
            continue
    return held + (1 << 20) > limit


_HOLDERS: "weakref.WeakSet[SQLiteDatabase]" = weakref.WeakSet()


def _close_quietly(conn: sqlite3.Connection) -> None:
    try:
        conn.close()
    except sqlite3.Error:
        pass


def _close_if_ours(conn: sqlite3.Connection, pid: int) -> None:
    if os.getpid() == pid:  # a forked child never closes its parent's connection
        _close_quietly(conn)


def release_held() -> None:
    """Close every held connection of this process: before a fork (SQLite must not have a
    connection open across one: the child would inherit its locks' bookkeeping but not the locks),
    and before a forked worker ends with ``os._exit`` (which runs no finalizer), so that the last
    connection to close checkpoints the log into the file. Each reopens when needed."""
    for database in list(_HOLDERS):
        database.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=release_held)


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass


def open_database(url_or_path: str | Path) -> Database:
    """The database a URL names: ``postgresql://...`` (psycopg 3), else an SQLite file path."""
    from certkit.db_url import is_postgres_url

    text = str(url_or_path)
    if is_postgres_url(text):
        from certkit.db_postgres import PostgresDatabase

        return PostgresDatabase(text)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///"):]
    return SQLiteDatabase(text)
