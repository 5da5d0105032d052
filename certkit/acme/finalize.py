"""Finalizing an order (RFC 8555 7.4): :class:`Finalizer` checks the CSR, takes the order
``ready -> processing``, issues through :func:`certkit.acme.issue.issue_for_order`, and takes the
order out of ``processing`` by what happened:

- the certificate is in the order: ``valid`` (done by ``store``), even if its inventory row could
  not be marked valid yet (a locked inventory): the row is marked by :meth:`Finalizer.settle`;
- refused or failed before anything was recorded or delivered (a busy inventory, a key refused
  meanwhile: :class:`~certkit.acme.issue.NothingIssued`): ``ready`` again, so the client may
  finalize again;
- any other failure: ``invalid``, with the problem.

When the database refuses that last write too (still locked), the order is remembered and
settled by :meth:`Finalizer.settle`, which the server's maintenance round runs, and which a
request for that order runs first: never an order left ``processing`` by a live server whose
finalize has ended. So is the inventory row of a certificate signed and recorded but never
delivered (its order could not take it): the pipeline abandons it, and when the database refuses
that too (full, locked) it is settled later the same way, never left ``pending`` ("being written
by a certkit command that still runs") for as long as the server lives.
:meth:`Finalizer.running` says which finalizes are in flight, for a stop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from certkit.acme import jws
from certkit.acme.issue import IssuedChain, NothingIssued, check_csr, issue_for_order
from certkit.acme.problems import Problem
from certkit.acme.records import now_iso
from certkit.acme.state import AcmeState, Order
from certkit.errors import CertkitError
from certkit.text import shown

if TYPE_CHECKING:
    from certkit.acme.server import AcmeConfig
    from certkit.ca import CA


class Finalizer:
    """The finalizes of this server process, and what their ends left to write."""

    def __init__(self, ca: "CA", state: AcmeState, config: "AcmeConfig", log: Callable[[str], None]) -> None:
        self.ca, self.state, self.config, self.log = ca, state, config, log
        self._lock = threading.Lock()
        self._running: set[str] = set()  # order ids being finalized by a thread of this process
        self._stalled: dict[str, dict | None] = {}  # order id -> its error (None: ready again), not yet written
        self._unmarked: dict[str, str] = {}  # serial delivered whose inventory row is still pending -> its order
        self._undelivered: dict[str, str] = {}  # serial never delivered -> its order: its row not abandoned yet

    def finalize(self, order: Order, payload: dict, base: str = "") -> IssuedChain:
        """Issue the certificate of the ready ``order`` for the CSR in ``payload``; a Problem otherwise
        (``base``: the server's URL, for the certificate's URL in an orderNotReady)."""
        csr_text = payload.get("csr")
        if not isinstance(csr_text, str):
            raise Problem("malformed", "A finalize request carries the CSR as base64url DER in 'csr'.")
        # check_csr refuses, among the keys the pipeline never certifies, any ACME account's key (RFC 8555 11.1).
        csr = check_csr(self.ca, self.config.policy, jws.b64decode(csr_text, "The 'csr' value"), order.identifiers)
        renews = self._renews(order, csr.public_key)
        if not self.state.begin_finalize(order.id):  # changed since it was read: say how, as it reads now
            refuse_not_ready(self.state, self.state.order(order.id), base)
            raise Problem("orderNotReady", "The order changed while its CSR was checked; fetch it and finalize "
                                           "it again if it is ready.")
        with self._lock:
            self._running.add(order.id)
        try:
            return self._issue(order.id, csr, renews)
        finally:
            with self._lock:
                self._running.discard(order.id)

    def _renews(self, order: Order, public_key) -> str | None:
        """The certificate the order renews, recorded as its predecessor as ``certkit renew`` records
        one (``list`` marks it renewed, ``--expiring`` leaves it out): the account's newest one for
        exactly the order's identifiers, with a key of the same algorithm (:func:`key_algorithm`: an RSA
        and an ECDSA certificate for one name are two, served side by side, not one renewing the other;
        an RSA key of another size or an ECDSA key on another curve is a renewal that changed its key,
        as ``certkit renew --key-type`` makes one), still valid and not renewed yet."""
        from certkit.errors import DamagedRow

        wanted = key_algorithm(public_key)
        for serial in renewable(self.state, order.account_id, order.identifiers):
            try:
                if key_algorithm(self.ca.inventory.certificate(serial).public_key()) == wanted:
                    return serial
            except DamagedRow:
                continue  # certkit check names it; an unreachable database is a 503, the order still ready
        return None

    def _issue(self, order_id: str, csr, renews: str | None = None) -> IssuedChain:
        undelivered: list[str] = []  # recorded, never delivered: abandoned, or settled later
        try:
            issued = self._run_issue(order_id, csr, renews, undelivered)
        finally:
            self._left_pending(order_id, undelivered)
        return self._issued(order_id, issued)

    def _issued(self, order_id: str, issued: IssuedChain) -> IssuedChain:
        if issued.unmarked:
            with self._lock:
                self._unmarked[issued.serial] = order_id
            self.log(f"order {order_id}: certificate {issued.serial} delivered; its inventory row could not be "
                     "marked valid yet (the inventory is busy), retried at the next request for the order or its "
                     "certificate, and by the next maintenance round")
        return issued

    def _left_pending(self, order_id: str, serials: list[str]) -> None:
        """Settle the rows of certificates recorded for the order but never delivered (the pipeline abandoned
        them, unless the database refused: then later, by :meth:`settle`)."""
        if not serials:
            return
        with self._lock:
            self._undelivered.update(dict.fromkeys(serials, order_id))
        try:
            self._settle_undelivered()
        except CertkitError as exc:
            self.log(f"order {order_id}: the inventory row of certificate {', '.join(serials)}, never delivered, "
                     f"cannot be marked abandoned now ({shown(exc)}); retried")

    def _settle_undelivered(self) -> None:
        """Abandon the pending rows of certificates never delivered: those no order holds (an order that does
        hold one, its write having succeeded after all, makes it valid)."""
        from certkit.acme.state_finalize import delivered_serials

        with self._lock:
            serials = sorted(self._undelivered)
        if not serials:
            return
        with self.state.db.read() as conn:
            held = delivered_serials(conn, serials)
        if held:
            self.ca.inventory.mark_issued(sorted(held))
        self.ca.inventory.mark_abandoned([serial for serial in serials if serial not in held])
        with self._lock:
            for serial in serials:
                self._undelivered.pop(serial, None)

    def _run_issue(self, order_id: str, csr, renews: str | None, undelivered: list[str]) -> IssuedChain:
        try:
            return issue_for_order(self.ca, csr, self.config.days, order_id=order_id, renews=renews,
                                   store=lambda chain: self._complete(order_id, chain), undelivered=undelivered)
        except NothingIssued as problem:
            self._end(order_id, None)
            self.log(f"order {order_id}: nothing issued, the order is ready again: {problem.logged or problem.detail}")
            raise
        except Problem as problem:
            self._end(order_id, problem.to_json())
            self.log(f"order {order_id}: issuing failed: {problem.logged or problem.detail}")
            raise
        except BaseException:
            self._end(order_id, Problem("serverInternal", "Issuing failed.").to_json())
            raise

    def _complete(self, order_id: str, chain: IssuedChain) -> None:
        """Put the certificate into its order (its inventory row still pending). If the order was
        settled meanwhile (a server that took this one for dead, an expiry), nobody can fetch it:
        raising here makes the issuing abandon the row, and the client is told what happened."""
        if self.state.complete_order(order_id, chain.serial, chain.chain_pem):
            return
        current = self.state.order(order_id)
        status = current.status if current else "gone"
        raise Problem("serverInternal", f"The order became {status} while its certificate was being issued (it "
                                        f"was settled by another server or expired), so the certificate "
                                        f"{chain.serial} was discarded before anyone received it (the CA records "
                                        "it as abandoned); place a new order.")

    # --- what could not be written when it happened -----------------------------------------
    def _end(self, order_id: str, error: dict | None) -> None:
        """Take the order out of processing: ready again (``error`` None) or invalid. A database that
        refuses now (still locked) does not lose it: :meth:`settle` writes it later."""
        try:
            self._write_end(order_id, error)
        except CertkitError as exc:
            with self._lock:
                self._stalled[order_id] = error
            self.log(f"order {order_id}: cannot be taken out of processing now ({shown(exc)}); retried")

    def _write_end(self, order_id: str, error: dict | None) -> None:
        if error is None:
            self.state.release_order(order_id)
        else:
            self.state.fail_order(order_id, error)

    def unsettled(self, order_id: str | None = None, serial: str | None = None) -> bool:
        """Whether a finalize of the order (or of the certificate ``serial``) left what the database refused to
        write: the order still processing, or the row of its certificate still pending, delivered or never
        delivered (:meth:`settle` writes them)."""
        with self._lock:
            return (order_id in self._stalled or order_id in self._undelivered.values()
                    or order_id in self._unmarked.values() or serial in self._unmarked)

    def settle(self) -> None:
        """Write what the database refused when a finalize ended: orders out of processing, rows of
        delivered certificates marked valid, rows of certificates never delivered marked abandoned.
        What it refuses again stays for the next call."""
        try:
            self._settle_undelivered()
        except CertkitError:
            pass  # still refused: the next call
        with self._lock:
            stalled, unmarked = dict(self._stalled), sorted(self._unmarked)
        for order_id, error in stalled.items():
            try:
                self._write_end(order_id, error)
            except CertkitError:
                continue
            with self._lock:
                self._stalled.pop(order_id, None)
        if unmarked:
            try:
                self.ca.inventory.mark_issued(unmarked)
            except CertkitError:
                return
            with self._lock:
                for serial in unmarked:
                    self._unmarked.pop(serial, None)

    def running(self) -> set[str]:
        """The orders a thread of this process is finalizing now."""
        with self._lock:
            return set(self._running)

    def release_running(self) -> None:
        """At a stop that could not wait for them: the orders still being finalized go back to
        ready (their certificates, if they get that far, find the order no longer processing and are
        abandoned). Those the database refuses stay processing, for the next server to settle."""
        for order_id in self.running():
            try:
                self.state.release_order(order_id)
            except CertkitError:
                continue


def refuse_certificate_key(state: AcmeState, jwk, ca=None) -> None:
    """RFC 8555 11.1, the reverse of :func:`certkit.acme.account_keys.account_holding` (which the
    pipeline asks for every key it certifies): a ``badPublicKey`` Problem for a new account key
    (newAccount, keyChange) that is the key of a certificate this CA issued, valid, being issued or
    revoked (whoever reads that certificate's privkey.pem would control the account, and its
    key-keeping renewals would be refused as an account's key), or the key of a CA of ``ca``'s
    chain (the CA's own key signing requests as an account). Only abandoned rows (never delivered)
    do not count."""
    if ca is not None:
        from certkit.keys import refuse_chain_key

        try:
            refuse_chain_key(getattr(jwk.key, "_wrapped", jwk.key), [ca.cert, *ca.parents, *ca.signed_cas])
        except CertkitError:
            raise Problem("badPublicKey", "This key is the key of a CA of this server's chain; an account key is "
                                          "never a CA's or a certificate's key (RFC 8555 11.1): generate a new "
                                          "account key.") from None
    found = state.certificate_of_key(jws.public_key_der(jwk))
    if found is not None:
        serial, kind, status = found
        what = "an intermediate CA" if kind == "ca" else f"the {kind} certificate {serial}"
        raise Problem("badPublicKey", f"This key is the key of {what} this CA issued ({status}); an account key "
                                      "is never a certificate's key (RFC 8555 11.1): generate a new account key.")


def refuse_not_ready(state: AcmeState, order: Order | None, base: str) -> None:
    """orderNotReady (RFC 8555 7.4) saying why ``order``, as it reads now, cannot be finalized; nothing if it is
    ready. One wording for a finalize refused at once and for one that lost a race (another finalize, an expiry,
    the deactivation of its account or of one of its authorizations while its CSR was checked)."""
    if order is None:
        raise Problem("orderNotReady", "The order is gone (expired and purged); place a new order.")
    refuse_expired(order)
    if order.status == "ready":
        return
    why = {"pending": "its authorizations are not all valid yet; complete their challenges first",
           "processing": "it is being finalized already",
           "valid": f"it was finalized already; its certificate is at {base}/acme/cert/{order.certificate_serial}",
           "invalid": why_invalid(state, order)}.get(order.status, order.status)
    raise Problem("orderNotReady", f"The order is {order.status}: {why}.")


def why_invalid(state: AcmeState, order: Order) -> str:
    """Why an invalid order cannot be finalized: the error it recorded, else what made it invalid without one
    (its account deactivated, one of its authorizations deactivated, failed or expired)."""
    detail = (order.error or {}).get("detail") if isinstance(order.error, dict) else None
    if isinstance(detail, str) and detail:
        return f"it failed ({detail.rstrip('.')}); place a new order"
    account = state.account(order.account_id)
    if account is not None and account.status != "valid":
        return f"its account was {account.status}; place a new order with a valid account"
    for authz_id in order.authz_ids:
        authz = state.authorization(authz_id)
        if authz is not None and authz.status in ("deactivated", "invalid", "revoked", "expired"):
            said = {"invalid": "failed its validation"}.get(authz.status, f"was {authz.status}")
            return f"its authorization for '{shown(authz.identifier['value'])}' {said}; place a new order"
    return "it can no longer be finalized; place a new order"


def refuse_expired(order: Order | None) -> None:
    """orderNotReady (RFC 8555 7.4) saying the order expired, if it did before it was finalized."""
    if order is not None and order.status in ("pending", "ready", "invalid") and order.expires <= now_iso():
        raise Problem("orderNotReady", f"The order expired at {order.expires} before it was finalized; "
                                       "place a new order.")


def key_algorithm(public_key) -> str:
    """The signature algorithm a TLS server uses ``public_key``'s certificate for: ``rsa`` (any size), ``ecdsa``
    (any curve), ``ed25519``, ``ed448``. A server holds one certificate of each (OpenSSL's certificate slots, so
    nginx, HAProxy, Apache; Go's and Caddy's choice by signature algorithm): two of one algorithm for the same
    names are never served side by side, the newer replaces the older (certbot renew --rsa-key-size 3072, lego
    renew --key-type ec384), while an RSA and an ECDSA one are (a dual-certificate server)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from certkit.keys import key_type_of

    if isinstance(public_key, rsa.RSAPublicKey):
        return "rsa"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "ecdsa"
    return key_type_of(public_key)


def renewable(state: AcmeState, account_id: str, identifiers: list[dict]) -> list[str]:
    """Serials of the account's certificates for exactly ``identifiers`` that are valid (not revoked,
    not expired) and not renewed yet, newest first: those a new one for them renews."""
    from certkit.errors import loads_json

    wanted = {(i["type"], i["value"]) for i in identifiers}
    with state.db.read() as conn:
        rows = conn.execute(
            "SELECT o.identifiers, c.serial FROM acme_orders AS o JOIN certificates AS c ON c.serial ="
            " o.certificate_serial WHERE o.account_id = ? AND o.status = 'valid' AND c.status = 'valid' AND"
            " c.not_after > ? AND NOT EXISTS (SELECT 1 FROM certificates AS n WHERE n.renewed_from = c.serial"
            " AND n.status IN ('pending', 'valid', 'revoked')) ORDER BY c.issued_at DESC, c.serial DESC",
            (account_id, now_iso())).fetchall()
    return [serial for text, serial in rows if {(i["type"], i["value"]) for i in loads_json(text)} == wanted]
