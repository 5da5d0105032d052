"""The ACME state's finalization of orders, and the certificates it delivered.

:class:`FinalizingState` holds the SQL of an order's last steps, behind methods that
:class:`certkit.acme.state.AcmeState` inherits (one transaction each, as all of its methods):
``ready -> processing`` naming this process the order's ``finalizer`` (only one of two
simultaneous finalizes issues), then ``processing -> valid`` with its certificate, ``-> invalid``,
or back to ``ready``; the orders of finalizers that died; and the look-ups of what ACME delivered
(a certificate's chain and account, the certificate of a key, the identifiers an account holds
valid authorizations for). :func:`delivered_serials` answers the inventory, in its own transaction,
which pending rows an order holds as its certificate.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from certkit.acme.records import gone, now_iso


class FinalizingState:
    """The finalization and certificate methods of :class:`certkit.acme.state.AcmeState`, which gives
    them ``db`` (its :class:`certkit.acme.db.Database`) and ``me`` (this process, as a finalizer)."""

    def begin_finalize(self, order_id: str) -> bool:
        """ready -> processing, naming this process its finalizer; True for exactly one caller, who
        then issues."""
        now = now_iso()
        with self.db.write() as conn:
            return conn.execute("UPDATE acme_orders SET status = 'processing', finalizer = ?, updated_at = ?"
                                " WHERE id = ? AND status = 'ready' AND expires > ?",
                                (self.me, now, order_id, now)).rowcount == 1

    def complete_order(self, order_id: str, serial: str, chain_pem: str) -> bool:
        """processing -> valid with its certificate; False (nothing changed) if the order is no
        longer processing by this process: it was settled meanwhile, and the certificate must not
        be handed out."""
        with self.db.write() as conn:
            return conn.execute(
                "UPDATE acme_orders SET status = 'valid', certificate_serial = ?, certificate_chain = ?,"
                " updated_at = ?, finalizer = NULL WHERE id = ? AND status = 'processing' AND finalizer = ?",
                (serial, chain_pem, now_iso(), order_id, self.me)).rowcount == 1

    def fail_order(self, order_id: str, error: dict) -> None:
        with self.db.write() as conn:
            conn.execute("UPDATE acme_orders SET status = 'invalid', error = ?, updated_at = ?, finalizer = NULL"
                         " WHERE id = ? AND status = 'processing' AND finalizer = ?",
                         (json.dumps(error), now_iso(), order_id, self.me))

    def release_order(self, order_id: str) -> None:
        """processing -> ready again: this process's finalize of it failed before anything was
        recorded or delivered (a busy inventory, a refused key), so the client may finalize again."""
        with self.db.write() as conn:
            conn.execute("UPDATE acme_orders SET status = 'ready', error = NULL, updated_at = ?, finalizer = NULL"
                         " WHERE id = ? AND status = 'processing' AND finalizer = ?", (now_iso(), order_id, self.me))

    def abandon_interrupted(self) -> int:
        """Orders whose finalizing process died (a server stopped or killed while issuing): invalid,
        so their clients order again. Orders another live server is issuing for are left to it, as
        are those of a server on another host (only that host can tell whether it lives; ``purge``
        settles them once they have expired)."""
        error = {"type": "urn:ietf:params:acme:error:serverInternal",
                 "detail": "The server stopped while issuing this order's certificate; place a new order.",
                 "status": 500}
        with self.db.write() as conn:
            rows = conn.execute("SELECT id, finalizer FROM acme_orders WHERE status = 'processing'"
                                " FOR UPDATE SKIP LOCKED").fetchall()
            dead = [order_id for order_id, finalizer in rows if gone(finalizer)]
            for order_id in dead:
                conn.execute("UPDATE acme_orders SET status = 'invalid', error = ?, updated_at = ?, finalizer = NULL"
                             " WHERE id = ? AND status = 'processing'", (json.dumps(error), now_iso(), order_id))
        return len(dead)

    def certificate(self, serial: str) -> tuple[str, str] | None:
        """(chain PEM, owning account id) of a certificate issued through ACME."""
        with self.db.read() as conn:
            row = conn.execute("SELECT certificate_chain, account_id FROM acme_orders WHERE certificate_serial = ?"
                               " AND status = 'valid'", (serial,)).fetchone()
        return (row[0], row[1]) if row else None

    def certificate_of_key(self, key_der: bytes) -> tuple[str, str, str] | None:
        """(serial, kind, status) of a certificate of the CA's inventory (valid, pending or
        revoked: every one whose key may be in someone's hands) whose public key is ``key_der``
        (SubjectPublicKeyInfo DER); None if there is none."""
        from certkit.errors import CertkitError
        from certkit.inventory.rows import load_der
        from certkit.keys import public_key_der

        # The key's DER is in the certificate's DER as it is: the database finds the rows holding it
        # (a byte search in C, not a parse of every certificate), and only those are read and checked.
        holds = "instr(der, ?) > 0" if self.db.inventory.db.dialect == "sqlite" else "position(? in der) > 0"
        with self.db.read() as conn:
            rows = conn.execute("SELECT serial, der, kind, status FROM certificates"
                                f" WHERE status IN ('valid', 'pending', 'revoked') AND {holds}", (key_der,)).fetchall()
        for serial, der, kind, status in rows:
            try:
                if public_key_der(load_der(serial, der).public_key()) == key_der:
                    return serial, kind, status
            except CertkitError:
                continue  # a damaged row: certkit check names it
        return None

    def authorized(self, account_id: str, identifiers: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of ``identifiers`` ((type, value) pairs) the account holds a valid, unexpired
        authorization for (RFC 8555 7.6: such an account may revoke a certificate for them)."""
        values = sorted({value for _kind, value in identifiers})
        if not values:
            return set()
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT identifier_type, identifier_value FROM acme_authorizations WHERE account_id = ?"
                f" AND identifier_value IN ({','.join('?' * len(values))}) AND status = 'valid' AND expires > ?",
                (account_id, *values, now_iso())).fetchall()
        return {(kind, value) for kind, value in rows} & set(identifiers)


def delivered_serials(tx, serials: Sequence[str]) -> set[str]:
    """Which of ``serials`` (inventory rows of sink ``acme``) an order holds as its certificate, in
    the inventory transaction ``tx``: delivered, since the client can fetch them. The inventory
    settles a dead server's pending row by this (valid, not abandoned) when it was killed after the
    order took the certificate but before the row was marked."""
    from certkit.acme.schema import _columns

    if not serials or "certificate_serial" not in _columns(tx, "acme_orders"):
        return set()
    marks = ",".join("?" * len(serials))
    return {row[0] for row in tx.execute("SELECT certificate_serial FROM acme_orders WHERE status = 'valid'"
                                         f" AND certificate_serial IN ({marks})", list(serials)).fetchall()}
