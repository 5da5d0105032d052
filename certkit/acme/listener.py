"""The ACME server's own TLS certificate: :class:`Listener` issues it from the CA and renews it in
place; :func:`maintain` is the background round that renews it and tidies the ACME state."""

from __future__ import annotations

import datetime as dt
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from certkit.acme.issue import issue_listener_certificate
from certkit.errors import CertkitError
from certkit.text import shown

if TYPE_CHECKING:
    from certkit.acme.server import AcmeService
    from certkit.ca import CA

MAINTENANCE_INTERVAL = 60.0
# How long a stop waits for a renewal of the server's own certificate under way to end (a few writes and
# a signature: seconds, unless the inventory is locked) before it retires what is served anyway.
RENEWAL_WAIT_S = 30.0
# The server's own TLS certificate: short-lived and renewed in place when a third is left.
LISTENER_DAYS = 30


class Listener:
    """The server's TLS context and its certificate, issued from the CA and renewed while it serves.

    Each certificate gets a TLS context of its own, made whole (chain and key) before it replaces
    the one in :attr:`context`, which new connections take: a context is never changed while
    handshakes use it. OpenSSL's contexts are not safe to change under a handshake: loading the
    next certificate into the served context left, for a moment, the new certificate without its
    key (a client connecting then failed, 'handshake failure'), and could free an object under a
    handshake copying it. A context of its own also ends the TLS sessions of the certificate it
    replaces: no client resumes one (a TLS 1.3 ticket) and so goes on under a certificate revoked
    and replaced."""

    def __init__(self, ca: "CA", names: list[str], days: int = LISTENER_DAYS, *, issue: bool = True,
                 hold: Callable[[str], None] | None = None) -> None:
        """The TLS context, with its certificate issued now unless ``issue`` is false (then
        :meth:`renew` issues it, once nothing else can fail first). ``hold`` (the ACME state's
        ``hold_listener``) records which process holds each certificate's key before its row is
        valid, so that no moment leaves a valid certificate a kill would orphan unnoticed."""
        self.ca, self.names, self.days, self.hold = ca, names, days, hold
        # Held by a renewal in the maintenance round from its start to the retirement of the certificate it
        # replaced, and by a stop while it retires the one served: neither sees the other half done.
        self.lock = threading.Lock()
        self.context = _server_context()  # no certificate until renew() loads one
        self.issued = None
        self.unmarked: str | None = None  # the serial served whose row the inventory could not mark valid yet
        self.unserved: set[str] = set()  # serials never served whose rows may still be pending
        if issue:
            self.renew()

    def renew(self) -> None:
        from certkit.sslcontext import in_memory

        def load(issued) -> None:
            begun.append(issued.serial_hex)
            if self.hold is not None:  # while its row is pending: killed from here on, the next server revokes it
                self.hold(issued.serial_hex)
            # The key never touches a disk (a memory file OpenSSL reads by path): a kill leaves none behind.
            context = _server_context()
            with in_memory(issued.fullchain_pem, issued.private_key_pem) as (chain, key):
                context.load_cert_chain(chain, key)
            self.context = context  # new connections get the new certificate; those begun keep theirs
            loaded.append(issued)

        loaded: list = []
        begun: list[str] = []
        try:
            self.issued = issue_listener_certificate(self.ca, self.names, self.days, load)
        except CertkitError:
            if not loaded:  # nothing served changed; a row the pipeline could not abandon: the next round does
                self.unserved.update(begun)
                raise
            # Served already, only its row's marking failed (the inventory full or locked): it is the one
            # served (retired at a stop, replaced when due), its row marked valid by the next round (:meth:`mark`).
            self.issued, self.unmarked = loaded[0], loaded[0].serial_hex

    def mark(self) -> None:
        """Settle what the inventory refused when a certificate was issued: the row of the one served marked
        valid, those of certificates never served (a renewal failed before they were) abandoned."""
        if self.unmarked is not None:
            self.ca.inventory.mark_issued([self.unmarked])
            self.unmarked = None
        if self.unserved:
            done = sorted(self.unserved)
            self.ca.inventory.mark_abandoned(done)  # pending rows only: one abandoned already stays so
            self.unserved.difference_update(done)

    def due(self) -> bool:
        cert = self.issued.cert
        left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
        return left < (cert.not_valid_after_utc - cert.not_valid_before_utc) / 3

    def revoked(self) -> str | None:
        """The reason the certificate served now was revoked with (``certkit revoke SERIAL``), or None: a
        revoked one is replaced at once, not served on until it is due."""
        row = self.ca.inventory.get(self.issued.serial_hex)
        return (row.get("revocation_reason") or "unspecified") if row and row["status"] == "revoked" else None


def _server_context() -> ssl.SSLContext:
    from certkit.tlscheck import new_context

    context = new_context(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def maintain(service: AcmeService, listener: Listener, stop: threading.Event, log: Callable[[str], None],
             interval: float = MAINTENANCE_INTERVAL) -> None:
    """Every ``interval``: drop expired nonces, expire stale orders, write what a busy database
    refused when a finalize or a validation ended (and validate again a challenge left processing
    without an outcome), renew the server certificate when it is due or was revoked."""
    while not stop.wait(interval):
        try:
            service.state.purge()
            service.settle()
            with listener.lock:  # a stop waits for a renewal under way, and none starts once it is stopping
                if stop.is_set():
                    return
                listener.mark()
                _renew_if_due(service, listener, log)
        except Exception as exc:
            log(f"maintenance failed (retried in {interval:g} s): {type(exc).__name__}: {shown(exc)}")


def _renew_if_due(service: AcmeService, listener: Listener, log: Callable[[str], None]) -> None:
    """Renew the server's own certificate if it is due or was revoked, and retire the one it replaces."""
    revoked = listener.revoked()
    if revoked or listener.due():
        old = listener.issued
        listener.renew()
        log(f"server certificate renewed: serial {listener.issued.serial_hex}" + (
            f" (serial {old.serial_hex} was revoked, {revoked}: it is served no more)" if revoked else ""))
        retire(listener.ca, service.state, old.serial_hex, "superseded", log)
        service.state.hold_listener(listener.issued.serial_hex, renews=True)


def retire_served(ca: "CA", state, listener: Listener, log: Callable[[str], None] | None,
                  wait: float = RENEWAL_WAIT_S) -> bool:
    """At a stop (the maintenance round's ``stop`` set): revoke the certificate served, cessationOfOperation,
    once a renewal under way has ended (up to ``wait`` seconds). Retired at once, a stop that landed inside a
    renewal revoked the certificate being replaced, and the renewal then went on to make its successor valid,
    its key gone with this process: a valid certificate nobody holds the key of, until the next server
    started on this host."""
    taken = listener.lock.acquire(blocking=False)
    if not taken:
        if log is not None:
            log(f"stopping: waiting for the renewal of the server's own certificate under way (up to {wait:g} s)")
        taken = listener.lock.acquire(timeout=wait)
    try:
        return retire(ca, state, listener.issued.serial_hex, "cessationOfOperation", log)
    finally:
        if taken:
            listener.lock.release()



def retire(ca: "CA", state, serial: str, reason: str, log: Callable[[str], None] | None) -> bool:
    """Revoke the server's own certificate ``serial`` (its key, in one process's memory, is gone or dropped)
    and forget which process held it; False, said to ``log``, when the inventory refused: its row then
    stays, and the next server to start on this host revokes it."""
    from certkit.errors import AlreadyRevoked

    try:
        ca.revoke(serial, reason)
    except AlreadyRevoked:
        pass
    except Exception as exc:  # noqa: BLE001 - the server goes on (or stops); the row stays valid meanwhile
        if log is not None:
            log(f"the server's own certificate (serial {serial}) could not be revoked, and stays valid in the "
                f"inventory until it expires or the next server starts here: {type(exc).__name__}: {shown(exc)}")
        return False
    try:
        state.drop_listener(serial)
    except Exception:  # noqa: BLE001 - revoked already: a row left only makes the next server try again
        pass
    return True


def retire_orphans(ca: "CA", state, log: Callable[[str], None]) -> None:
    """Revoke (cessationOfOperation) the certificates of this host's servers that were killed outright
    (SIGKILL, a power cut) and so could not revoke their own."""
    for serial in state.orphaned_listeners():
        if retire(ca, state, serial, "cessationOfOperation", log):
            log(f"revoked the certificate of a server killed earlier here (serial {serial}): its key died with it")
