"""The one adapter between the ACME state and the CA's inventory database.

Today the inventory is SQLite (:class:`certkit.inventory.Inventory`: a new
connection per use, ``BEGIN IMMEDIATE`` for writers). A PostgreSQL backend is
coming; the ACME tables are written in the SQL that both understand (``?``
placeholders, which that layer will translate, ``ON CONFLICT DO NOTHING``,
TEXT timestamps, INTEGER booleans, BLOB bytes, no rowid), so switching is a
matter of this module. :mod:`certkit.acme.state` holds every statement.
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
        self._held.enter_context(self.inventory.connect())

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
        if durable:
            with self.inventory.connect(write=True) as conn:
                yield conn
            return
        with self.inventory.connect() as conn:
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[Any]:
        """A connection for reading (each statement sees committed data)."""
        with self.inventory.connect() as conn:
            yield conn

    def __repr__(self) -> str:
        return f"Database({self.inventory.path})"
