"""serve's own server certificate, whose key lives in serve's memory alone: the inventory names the process
that holds it (the ACME server's record of its own certificates, :mod:`certkit.acme.listener`) while its row is
still pending, serve revokes it (cessationOfOperation) when it stops, and the next ``serve`` or ``acme serve``
to start on this host revokes the one a server killed outright left."""

from __future__ import annotations

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
