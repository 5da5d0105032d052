"""Who holds a lock of a PostgreSQL inventory: each certkit session names itself (its ``application_name``: the
command, this host and its pid), and a command that gave up waiting for a lock names the sessions that can hold it.

A lock wait ends after :data:`certkit.db_postgres.LOCK_TIMEOUT_S`; "another certkit process held it" said neither
which one nor whether it was certkit at all (a DBA's psql, a report left in a transaction), nor how to end a
session whose process is gone or stopped. Every session that holds a lock this command waited for had been in its
transaction at least as long as the wait, so those are the ones named (:func:`holders`).
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from certkit.db_postgres import PostgresDatabase

NAME_MAX = 63  # PostgreSQL keeps this many bytes of an application_name (NAMEDATALEN - 1)
SHOWN_MAX = 3  # sessions named in one message
command: str | None = None  # the command this process runs, as the command line resolved it ("crl", "acme serve")


def session_name() -> str:
    """This session's ``application_name``: ``certkit COMMAND on HOST pid N`` (ASCII: the server turns what is not
    into ``?``), cut to :data:`NAME_MAX` bytes in the host's name, never in the pid."""
    said = f" {command}" if command else ""
    tail = f" pid {os.getpid()}"
    head = f"certkit{said} on "
    host = socket.gethostname().encode("ascii", "replace").decode("ascii")
    return head + host[:max(NAME_MAX - len(head) - len(tail), 0)] + tail


def holders(db: PostgresDatabase) -> str:
    """The sessions of the inventory's database that have been in a transaction for at least the lock wait, as the
    end of a sentence ("held by ...; ..."), on a connection of its own; what cannot be seen or asked is said so."""
    from certkit.text import shown

    try:
        conn = db._connect()
    except Exception:  # the server that just answered is gone: only the wait is known
        return "by another session"
    try:
        rows = conn.execute(
            "SELECT pid, application_name, usename, host(client_addr), state, to_char(xact_start AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD HH24:MI:SS') FROM pg_stat_activity WHERE datname = current_database() AND pid <> "
            "pg_backend_pid() AND wait_event_type IS DISTINCT FROM 'Lock' AND xact_start <= now() - make_interval(secs "
            "=> %s) ORDER BY xact_start LIMIT %s",
            (db.busy_timeout, SHOWN_MAX + 1)).fetchall()
        hidden = [] if rows else conn.execute(  # another role's sessions that hold a write's or an advisory lock
            "SELECT pid, application_name, usename FROM pg_stat_activity WHERE datname = current_database() AND "
            "xact_start IS NULL AND pid IN (SELECT pid FROM pg_locks WHERE granted AND locktype IN ('transactionid', "
            "'advisory')) ORDER BY pid LIMIT %s", (SHOWN_MAX + 1,)).fetchall()
    except Exception:
        rows, hidden = None, []
    finally:
        try:
            conn.close()
        except Exception:
            pass
    if not rows and hidden:  # another role's sessions show no transaction start but to a superuser or pg_read_all_stats
        named = ", ".join(f"pid {pid} ({shown(name) or 'no application_name'}, role {shown(role)})"
                          for pid, name, role in hidden[:SHOWN_MAX])
        return (f"by another session: of another role, whose transactions this role may not see; of those, "
                f"{named}{' and others' if len(hidden) > SHOWN_MAX else ''} hold locks. Try again once it ends, or, if "
                "its process is gone or stopped, have a superuser end its session (SELECT pg_terminate_backend(PID))")
    if not rows:
        return "by another session (none is in a transaction that long now: it has just ended); try again"
    said = []
    for pid, name, role, address, state, since in rows[:SHOWN_MAX]:
        where = f" from {address}" if address else " on the server's socket" if state else ""
        said.append(f"pid {pid} ({shown(name) or 'no application_name'}, role {shown(role)}{where}, {state}, in a "
                    f"transaction since {since} UTC)")
    more = " and others" if len(rows) > SHOWN_MAX else ""
    first = rows[0][0]
    return (f"by {', '.join(said)}{more}; try again once it ends, or, if its process is gone or stopped, end its "
            f"session (SELECT pg_terminate_backend({first}), as its role or a superuser)")


def set_up(conn, statements: str) -> None:
    """Run a new session's set-up ``statements``. Their first raises a role's or database's statement_timeout, so it
    runs under that timeout: one shorter than it takes on a busy machine (1 ms) cancelled it, and the command failed
    as timed out before it could raise it. Tried again (a cancelled set-up changed nothing), up to 5 times."""
    import psycopg

    for attempt in range(5):
        try:
            conn.execute(statements)
            return
        except psycopg.errors.QueryCanceled:
            if attempt == 4:
                raise
