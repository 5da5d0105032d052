"""The one adapter between the ACME state and the CA's inventory database.

The inventory's database (:mod:`certkit.db`: SQLite by default, PostgreSQL for
teams) runs every statement; the ACME tables are written in the SQL that both
understand (``?`` placeholders, ``ON CONFLICT DO NOTHING``, TEXT timestamps,
INTEGER booleans, BLOB bytes, no rowid). :mod:`certkit.acme.state` holds every
statement.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from certkit.errors import InventoryError
from certkit.inventory.home import check
from certkit.text import shown

# How long a write waits for another certkit process's lock on an SQLite inventory before the
# request is answered 503 (serverInternal, Retry-After): clients give up after 30 to 45 s
# (certbot: 45), while the inventory's own wait (certkit.db.BUSY_TIMEOUT_S) is 60 s, suited to a
# command run by hand. A write of certkit holds the lock for milliseconds; 5 s is a lock that
# will not be let go soon.
BUSY_TIMEOUT_S = 5.0


class Database:
    """Transactions on the inventory of one CA directory."""

    def __init__(self, inventory) -> None:
        self.inventory = inventory
        self._held = ExitStack()

    def hold_open(self) -> None:
        """Keep one idle connection open while the server runs. SQLite checkpoints the WAL and
        deletes it whenever its last connection closes, with fsyncs; a server that opens a
        connection per statement would pay that on every request (it was most of its time)."""
        if self.inventory.db.dialect == "sqlite":
            self._held.enter_context(self.inventory.db.transaction())

    def close(self) -> None:
        self._held.close()

    @contextmanager
    def write(self, *, durable: bool = True) -> Iterator[Any]:
        """A connection inside a write transaction, committed when the block ends without an error.

        ``durable=False`` is for records whose loss in an operating-system crash or power cut
        (not a process crash or restart: the data is in the OS's cache by then) costs nothing but
        a client's retry: nonces. SQLite in WAL mode then commits without waiting for fsync
        (``synchronous = NORMAL``, this connection only); every request mints a nonce, and the
        fsync of each was most of the server's time under load.
        """
        check(self.inventory)  # the directory made again for another CA since the server started: not its inventory
        db = self.inventory.db
        if db.dialect != "sqlite":
            with db.transaction(write=True, durable=durable) as tx:
                yield tx
            return
        # The write lock taken here, with this server's shorter wait: certkit.db would take it with
        # its own (60 s), and every request writes (a nonce at least).
        with db.transaction(durable=durable) as tx:
            tx.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            try:
                tx.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc).lower() and "busy" not in str(exc).lower():
                    raise
                raise InventoryError(f"The inventory {shown(db.path)} stayed locked by another certkit process "
                                     f"for {BUSY_TIMEOUT_S:g} s; try again.") from None
            yield tx
            tx.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[Any]:
        """A connection for reading (each statement sees committed data)."""
        check(self.inventory)
        with self.inventory.db.transaction() as tx:
            yield tx

    def __repr__(self) -> str:
        return f"Database({self.inventory.path})"
