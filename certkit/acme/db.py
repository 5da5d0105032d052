"""The one adapter between the ACME state and the CA's inventory database.

The inventory's database (:mod:`certkit.db`: SQLite by default, PostgreSQL for
teams) runs every statement; the ACME tables are written in the SQL that both
understand (``?`` placeholders, ``ON CONFLICT DO NOTHING``, TEXT timestamps,
INTEGER booleans, BLOB bytes, no rowid). :mod:`certkit.acme.state` holds every
statement.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any


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
        with self.inventory.db.transaction(write=True, durable=durable) as tx:
            yield tx

    @contextmanager
    def read(self) -> Iterator[Any]:
        """A connection for reading (each statement sees committed data)."""
        with self.inventory.db.transaction() as tx:
            yield tx

    def __repr__(self) -> str:
        return f"Database({self.inventory.path})"
