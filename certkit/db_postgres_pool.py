"""The connections of this process to its PostgreSQL inventories: kept open between transactions,
one at a time per thread and at most a few per database (:func:`checkout`, :func:`checkin`), one the
server closed meanwhile told cheaply and replaced, never used by a forked child (the parent's are
detached, not closed, at the fork), closed when a caller is done with a database (:func:`close_idle`)."""

from __future__ import annotations

import os
import threading
import time
from contextlib import suppress
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from certkit.db_postgres import PostgresDatabase

IDLE_CHECK_S = 10.0  # a connection idle longer than this is checked before use (the server may have closed it)
_IDLE_KEPT = 4  # open connections kept per database and process (the ACME server's threads share them)

_POOL_LOCK = threading.Lock()
_IDLE: dict[tuple[str, int], list] = {}


def checkout(db: "PostgresDatabase") -> tuple[Any, bool]:
    """A connection to ``db``, and whether it was kept from an earlier transaction. A kept one the server
    has written to since (its goodbye: a restart, an idle timeout), or idle for long, is tried first."""
    key = (db.url, os.getpid())
    while True:
        with _POOL_LOCK:
            idle = _IDLE.get(key)
            conn = idle.pop() if idle else None
        if conn is None:
            return db._connect(), False
        if conn.closed or conn.broken:
            continue
        if _readable(conn) or time.monotonic() - getattr(conn, "_certkit_idle_since", 0.0) > IDLE_CHECK_S:
            try:
                conn.execute("SELECT 1")
            except Exception:  # closed by the server (restart, idle timeout): take another
                _close(conn)
                continue
        return conn, True


def checkin(url: str, conn) -> None:
    """Keep ``conn`` for the next transaction on ``url`` (a few at most), else close it."""
    from psycopg import pq

    if conn.closed or conn.broken or conn.info.transaction_status != pq.TransactionStatus.IDLE:
        _close(conn)
        return
    conn._certkit_idle_since = time.monotonic()
    with _POOL_LOCK:
        idle = _IDLE.setdefault((url, os.getpid()), [])
        if len(idle) < _IDLE_KEPT:
            idle.append(conn)
            return
    _close(conn)


def close_idle(url: str | None = None) -> None:
    """Close this process's idle connections (to ``url``, or all): a long-running caller that
    has finished with a database (tests, a tool that visits many CAs)."""
    with _POOL_LOCK:
        keys = [k for k in _IDLE if k[1] == os.getpid() and (url is None or k[0] == url)]
        conns = [conn for k in keys for conn in _IDLE.pop(k)]
    for conn in conns:
        _close(conn)


def _close(conn) -> None:
    with suppress(Exception):
        conn.close()


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


def _lost(conn) -> bool:
    return bool(conn.closed or conn.broken)


def _readable(conn) -> bool:
    """Whether the server wrote to an idle connection: nothing is due on one but its goodbye (a
    FATAL message, or the end of the stream), so this says cheaply (no round trip) that it is gone."""
    import select

    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return True  # unknown: tried with a statement
