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
from contextlib import contextmanager
from typing import Any


class Database:
    """Transactions on the inventory of one CA directory."""

    def __init__(self, inventory) -> None:
        self.inventory = inventory

    @contextmanager
    def write(self) -> Iterator[Any]:
        """A connection inside a write transaction, committed when the block ends without an error."""
        with self.inventory.connect(write=True) as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Any]:
        """A connection for reading (each statement sees committed data)."""
        with self.inventory.connect() as conn:
            yield conn

    def __repr__(self) -> str:
        return f"Database({self.inventory.path})"
