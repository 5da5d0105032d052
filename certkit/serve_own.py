"""serve's own server certificate, whose key lives in serve's memory alone: the inventory names the process
that holds it (the ACME server's record of its own certificates, :mod:`certkit.acme.listener`) while its row is
still pending, serve revokes it (cessationOfOperation) when it stops, and the next ``serve`` or ``acme serve``
to start on this host revokes the one a server killed outright left."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from certkit.ca import CA


class OwnCertificate:
    """The record of which process holds serve's certificate key; made once the CA is open (its
    inventory's ACME tables created if need be), revoking first what servers killed here left."""

    def __init__(self, ca: "CA", log: Callable[[str], None]) -> None:
        from certkit.acme.db import Database
        from certkit.acme.listener import retire_orphans
        from certkit.acme.state import AcmeState

        self.ca, self.log, self.serial = ca, log, None
        self.state = AcmeState(Database(ca.inventory))
        self.state.create_schema()
        retire_orphans(ca, self.state, log)

    def hold(self, serial: str) -> None:
        """Name this process as the holder of ``serial``'s key (its row still pending: killed from here on,
        the next server revokes it)."""
        self.state.hold_listener(serial)
        self.serial = serial

    def retire(self) -> None:
        """Revoke the certificate (cessationOfOperation): its key dies with this process."""
        from certkit.acme.listener import retire

        if self.serial is not None and retire(self.ca, self.state, self.serial, "cessationOfOperation", self.log):
            self.log(f"revoked this server's certificate (serial {self.serial}, cessationOfOperation): its key "
                     "dies with this process")
            self.serial = None


def stopped(previous, own: OwnCertificate | None) -> None:
    """serve has stopped, or failed once it listened: the signal handlers ``previous`` back, and its own
    certificate (``own``; None for one given with --cert) revoked, since its key dies with this process."""
    from certkit.errors import restore_signals

    restore_signals(previous)
    if own is not None:
        own.retire()


def killed_servers(inventory) -> list[str]:
    """Read only (``certkit check``): a sentence for each certificate that a server of this host (serve, acme serve)
    killed outright left valid and unexpired, its key gone with it; an acme serve running here, or the next server
    to start here, revokes it."""
    from certkit.acme.records import gone
    from certkit.vocabulary import iso

    with inventory._read(readonly=True) as tx:
        tables = ("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'acme_keys'"
                  if tx.dialect == "sqlite" else "SELECT count(*) FROM information_schema.tables WHERE "
                  "table_schema = current_schema() AND table_name = 'acme_keys'")
        if not tx.execute(tables).fetchone()[0]:  # no server ever ran on this inventory
            return []
        rows = tx.execute("SELECT c.serial, c.not_after, k.value FROM acme_keys k JOIN certificates c "
                          "ON k.name = 'listener ' || c.serial WHERE c.status = 'valid'").fetchall()
    now = iso(dt.datetime.now(dt.UTC))  # as the inventory writes times
    return [f"certificate {serial} (valid until {not_after[:10]} {not_after[11:19]} UTC) is the own certificate of "
            "a server (certkit serve or acme serve) killed outright on this host: its key died with it, yet it "
            "stays valid, and off the CRL, until an acme serve running here (within a minute) or the next "
            "certkit serve or acme serve started here revokes it; to "
            f"revoke it now: certkit revoke {serial} --reason cessationOfOperation"
            for serial, not_after, process in rows if process and gone(process) and str(not_after) > now]
