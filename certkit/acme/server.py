"""The ACME server: RFC 8555 resources over HTTPS (standard library ``http.server`` and ``ssl``).

:class:`AcmeService` holds the protocol (directory, nonces, accounts, orders,
authorizations, challenges, finalization, certificates, revocation) and knows
nothing of sockets: it maps a request (method, path, headers, body) to a
:class:`Response`. :class:`AcmeHTTPServer` carries it over TLS, one thread per
connection, with the TLS handshake in that thread (as ``certkit serve`` does),
and runs the challenge validations in worker threads.

URLs are built from the request's ``Host`` header, as Boulder and Pebble build
them, so a client that reaches the server as ``localhost`` or as
``127.0.0.1`` gets URLs it can use; every JWS ``url`` must match the URL it
was sent to.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import queue
import re
import socket
import ssl
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.acme import challenges, jws
from certkit.acme.challenges import Validator
from certkit.acme.issue import check_csr, issue_for_order, issue_listener_certificate
from certkit.acme.policy import Policy
from certkit.acme.problems import Problem
from certkit.acme.state import AcmeState, Authorization, Challenge, Order
from certkit.errors import AlreadyRevoked, UnknownCertificate
from certkit.text import shown
from certkit.vocabulary import serial_hex

if TYPE_CHECKING:
    from certkit.ca import CA

JOSE = "application/jose+json"
PROBLEM = "application/problem+json"
JSON = "application/json"
PEM_CHAIN = "application/pem-certificate-chain"
# Clients poll pending objects; they wait at least a second between polls whatever we say
# (lego reads whole seconds), so 1 keeps them quick without inviting a busy loop.
RETRY_AFTER = "1"
# How long a challenge POST waits for its validation before answering "processing": most
# validations take milliseconds, and a client told "valid" at once skips a polling round.
CHALLENGE_WAIT = 2.0
VALIDATION_WORKERS = 8
MAINTENANCE_INTERVAL = 60.0
# The server's own TLS certificate: short-lived and renewed in place when a third is left.
LISTENER_DAYS = 30
HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 30.0
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")
# RFC 5280 CRLReason codes a subscriber may give (7 is unused; certificateHold and
# removeFromCRL are not offered by certkit, whose revocations are final).
REVOCATION_CODES = {0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged",
                    4: "superseded", 5: "cessationOfOperation", 9: "privilegeWithdrawn", 10: "aACompromise"}


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, obj, **kw) -> "Response":
        return cls(status, json.dumps(obj, indent=2).encode() + b"\n", JSON, **kw)

    @classmethod
    def problem(cls, problem: Problem) -> "Response":
        return cls(problem.http_status, json.dumps(problem.to_json(), indent=2).encode() + b"\n", PROBLEM,
                   list(problem.headers.items()))


@dataclass
class AcmeConfig:
    policy: Policy = field(default_factory=Policy)
    validator: Validator = field(default_factory=Validator)
    days: int | None = None  # certificate lifetime; None: the server profile's default, capped
    eab: dict[str, bytes] = field(default_factory=dict)  # external account key id -> HMAC key


@dataclass
class _Request:
    """What a handler gets: the verified JWS and who signed it."""

    signed: jws.SignedRequest
    payload: dict
    account: object | None  # state.Account for kid requests
    jwk: object  # the key that verified the signature
    base: str


class AcmeService:
    """The ACME protocol over certkit's CA and the ACME state."""

    def __init__(self, ca: "CA", state: AcmeState, config: AcmeConfig,
                 log: Callable[[str], None] = lambda message: None) -> None:
        self.ca, self.state, self.config, self.log = ca, state, config, log
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._done: dict[str, threading.Event] = {}
        self._done_lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    # --- life cycle -------------------------------------------------------------------------
    def start(self, workers: int = VALIDATION_WORKERS) -> None:
        """Create the tables, recover what a stopped server left, start the validation workers."""
        self.state.db.hold_open()
        self.state.create_schema()
        abandoned = self.state.abandon_interrupted()
        if abandoned:
            self.log(f"{abandoned} order(s) interrupted while issuing are now invalid; their clients order again")
        for _ in range(workers):
            thread = threading.Thread(target=self._work, name="acme-validate", daemon=True)
            thread.start()
            self._workers.append(thread)
        for challenge_id in self.state.processing_challenges():
            self._queue.put(challenge_id)  # validations cut off by a stop are done again

    def stop(self) -> None:
        for _ in self._workers:
            self._queue.put(None)
        self.state.db.close()

    # --- HTTP entry point -------------------------------------------------------------------
    def handle(self, method: str, path: str, headers, body: bytes, base: str) -> Response:
        """Answer one request; every answer carries a fresh nonce and the index link."""
        nonce: list[str] = []
        try:
            response = self._route(method, path.split("?", 1)[0], headers, body, base, nonce)
        except Problem as problem:
            response = Response.problem(problem)
        except Exception as exc:  # a bug must not leave a client without an answer or a nonce
            self.log(f"error {method} {shown(path)}: {type(exc).__name__}: {shown(exc)}\n"
                     + "".join(traceback.format_exc(limit=8)))
            response = Response.problem(Problem("serverInternal", "The server failed to handle the request."))
        try:
            response.headers.append(("Replay-Nonce", nonce[0] if nonce else self.state.new_nonce()))
        except Exception as exc:  # the database is gone; say so rather than hang up
            self.log(f"error minting a nonce: {shown(exc)}")
        response.headers.append(("Link", f'<{base}/directory>;rel="index"'))
        return response

    def _route(self, method: str, path: str, headers, body: bytes, base: str, nonce: list[str]) -> Response:
        if path == "/directory":
            self._only(method, ("GET", "HEAD"))
            return Response.json(200, self._directory(base))
        if path == "/acme/new-nonce":
            self._only(method, ("GET", "HEAD"))
            return Response(200 if method == "HEAD" else 204, headers=[("Cache-Control", "no-store")])
        routes: list[tuple[str, str, Callable]] = [
            (r"/acme/new-account", "jwk", self.new_account),
            (r"/acme/new-order", "kid", self.new_order),
            (r"/acme/revoke-cert", "any", self.revoke_cert),
            (r"/acme/key-change", "kid", self.key_change),
            (r"/acme/acct/([\w-]+)", "kid", self.account),
            (r"/acme/acct/([\w-]+)/orders", "kid", self.account_orders),
            (r"/acme/order/([\w-]+)", "kid", self.order),
            (r"/acme/order/([\w-]+)/finalize", "kid", self.finalize),
            (r"/acme/authz/([\w-]+)", "kid", self.authorization),
            (r"/acme/chall/([\w-]+)", "kid", self.challenge),
            (r"/acme/cert/([0-9A-F]+)", "kid", self.certificate),
        ]
        for pattern, key_rule, handler in routes:
            match = re.fullmatch(pattern, path)
            if match:
                self._only(method, ("POST",))
                request = self._authenticate(headers, body, base + path, key_rule, base, nonce)
                return handler(request, *match.groups())
        raise Problem("malformed", f"There is no ACME resource at {shown(path)}; start at {base}/directory.",
                      status=404)

    @staticmethod
    def _only(method: str, allowed: tuple[str, ...]) -> None:
        if method not in allowed:
            hint = " (use POST-as-GET: a JWS with an empty payload)" if allowed == ("POST",) else ""
            raise Problem("malformed", f"{method} is not allowed here{hint}.", status=405,
                          headers={"Allow": ", ".join(allowed)})

    # --- authentication ---------------------------------------------------------------------
    def _authenticate(self, headers, body: bytes, url: str, key_rule: str, base: str,
                      nonce: list[str]) -> _Request:
        content_type = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type != JOSE:
            raise Problem("malformed", f"ACME requests are sent as {JOSE}, not '{shown(content_type)}'.", status=415)
        signed = jws.parse(body)
        if signed.url != url:
            raise Problem("unauthorized", f"The JWS url header '{shown(signed.url)}' is not the URL it was sent "
                                          f"to ({url}).")
        if signed.nonce is None:
            raise Problem("badNonce", "The JWS carries no nonce; get one from newNonce.")
        account = None
        if signed.kid is not None:
            if key_rule == "jwk":
                raise Problem("malformed", "newAccount requests are signed with the new key, given as 'jwk', "
                                           "not with 'kid'.")
            prefix = f"{base}/acme/acct/"
            account_id = signed.kid[len(prefix):] if signed.kid.startswith(prefix) else None
            account = self.state.account(account_id) if account_id else None
            if account is None:
                raise Problem("accountDoesNotExist", f"No account is known here as '{shown(signed.kid)}'.")
            if account.status != "valid":
                raise Problem("unauthorized", f"The account {signed.kid} is {account.status}.")
            key = jws.jwk_from_json(account.jwk)
        else:
            if key_rule == "kid":
                raise Problem("malformed", "This request must be signed by an account: give its URL as 'kid', "
                                           "not a 'jwk'.")
            key = signed.jwk
        jws.verify(signed, key)
        fresh_ok, fresh = self.state.swap_nonce(signed.nonce)
        nonce.append(fresh)
        if not fresh_ok:
            raise Problem("badNonce", "The JWS nonce was already used, has expired, or was never given by this "
                                      "server; retry with the nonce of this response.")
        return _Request(signed, signed.json_payload(), account, key, base)

    # --- URLs and JSON views ------------------------------------------------------------------
    @staticmethod
    def directory(base: str) -> dict:
        return {
            "newNonce": f"{base}/acme/new-nonce",
            "newAccount": f"{base}/acme/new-account",
            "newOrder": f"{base}/acme/new-order",
            "revokeCert": f"{base}/acme/revoke-cert",
            "keyChange": f"{base}/acme/key-change",
        }

    def _directory(self, base: str) -> dict:
        return self.directory(base) | {"meta": {"externalAccountRequired": bool(self.config.eab)}}

    def _account_json(self, account, base: str) -> dict:
        return {"status": account.status, "contact": account.contact,
                "termsOfServiceAgreed": account.tos_agreed,
                "orders": f"{base}/acme/acct/{account.id}/orders"}

    @staticmethod
    def _order_json(order: Order, base: str) -> dict:
        doc = {"status": order.status, "expires": order.expires, "identifiers": order.identifiers,
               "authorizations": [f"{base}/acme/authz/{a}" for a in order.authz_ids],
               "finalize": f"{base}/acme/order/{order.id}/finalize"}
        if order.status == "valid" and order.certificate_serial:
            doc["certificate"] = f"{base}/acme/cert/{order.certificate_serial}"
        if order.error:
            doc["error"] = order.error
        return doc

    @staticmethod
    def _challenge_json(challenge: Challenge, base: str) -> dict:
        doc = {"type": challenge.type, "url": f"{base}/acme/chall/{challenge.id}", "status": challenge.status,
               "token": challenge.token}
        if challenge.validated:
            doc["validated"] = challenge.validated
        if challenge.error:
            doc["error"] = challenge.error
        return doc

    def _authz_json(self, authz: Authorization, base: str) -> dict:
        return {"identifier": authz.identifier, "status": authz.status, "expires": authz.expires,
                "challenges": [self._challenge_json(c, base) for c in authz.challenges]}

    # --- accounts ---------------------------------------------------------------------------
    def new_account(self, request: _Request) -> Response:
        payload, jwk, base = request.payload, request.jwk, request.base
        thumb = jws.thumbprint(jwk)
        existing = self.state.account_by_thumbprint(thumb)
        if existing is not None:
            if existing.status != "valid":
                raise Problem("unauthorized", f"The account of this key is {existing.status}.")
            return Response.json(200, self._account_json(existing, base),
                                 headers=[("Location", f"{base}/acme/acct/{existing.id}")])
        if payload.get("onlyReturnExisting") is True:
            raise Problem("accountDoesNotExist", "No account exists for this key.")
        contact = self._contact(payload.get("contact", []))
        eab_kid = None
        if self.config.eab:
            binding = payload.get("externalAccountBinding")
            if binding is None:
                raise Problem("externalAccountRequired", "This server registers only enrolled clients: send an "
                                                         "externalAccountBinding (EAB key id and HMAC key).")
            try:
                eab_kid = json.loads(jws.jose.decode_b64jose(binding["protected"])).get("kid")
            except Exception:
                eab_kid = None
            key = self.config.eab.get(eab_kid) if isinstance(eab_kid, str) else None
            if key is None:
                raise Problem("unauthorized", "The externalAccountBinding names an unknown key identifier.")
            jws.verify_eab(binding, jwk, f"{base}/acme/new-account", eab_kid, key)
        tos = payload.get("termsOfServiceAgreed", False)
        if not isinstance(tos, bool):
            raise Problem("malformed", "termsOfServiceAgreed must be true or false.")
        account, created = self.state.create_account(thumb, jws.jwk_json(jwk), contact, tos, eab_kid)
        if created:
            self.log(f"account {account.id} created ({jws.describe_key(jwk)} key"
                     f"{', EAB ' + shown(eab_kid) if eab_kid else ''})")
        return Response.json(201 if created else 200, self._account_json(account, base),
                             headers=[("Location", f"{base}/acme/acct/{account.id}")])

    @staticmethod
    def _contact(contact) -> list[str]:
        from certkit import names

        if not isinstance(contact, list) or not all(isinstance(c, str) for c in contact):
            raise Problem("malformed", "contact must be a list of strings (mailto: URLs).")
        if len(contact) > 10:
            raise Problem("invalidContact", "An account may have at most 10 contacts.")
        for url in contact:
            if not url.startswith("mailto:"):
                raise Problem("unsupportedContact", f"Only mailto: contacts are accepted, not '{shown(url)}'.")
            try:
                names.parse_email(url[len("mailto:"):])
            except Exception as exc:
                raise Problem("invalidContact", f"'{shown(url)}' is not a usable email contact: {exc}") from None
        return contact

    def _own_account(self, request: _Request, account_id: str):
        if request.account.id != account_id:
            raise Problem("unauthorized", "An account may only read and change itself.")
        return request.account

    def account(self, request: _Request, account_id: str) -> Response:
        account = self._own_account(request, account_id)
        payload = request.payload
        status = payload.get("status")
        if status is not None and status != "deactivated":
            raise Problem("malformed", f"An account's status can only be changed to 'deactivated', not "
                                       f"'{shown(status)}'.")
        if "contact" in payload or status:
            contact = self._contact(payload["contact"]) if "contact" in payload else None
            account = self.state.update_account(account.id, contact=contact, deactivate=status == "deactivated")
            if status:
                self.log(f"account {account.id} deactivated")
        return Response.json(200, self._account_json(account, request.base),
                             headers=[("Location", f"{request.base}/acme/acct/{account.id}")])

    def account_orders(self, request: _Request, account_id: str) -> Response:
        account = self._own_account(request, account_id)
        ids = self.state.order_ids(account.id)
        return Response.json(200, {"orders": [f"{request.base}/acme/order/{i}" for i in ids]})

    def key_change(self, request: _Request) -> Response:
        account, base = request.account, request.base
        account_url = f"{base}/acme/acct/{account.id}"
        new_key = jws.verify_key_change(request.payload, request.signed, account_url, request.jwk)
        conflict = self.state.change_key(account.id, account.thumbprint, jws.thumbprint(new_key),
                                         jws.jwk_json(new_key))
        if conflict is not None:
            raise Problem("malformed", "The new key belongs to an account already." if conflict != account.id
                          else "The account's key changed meanwhile; retry.", status=409,
                          headers={"Location": f"{base}/acme/acct/{conflict}"})
        self.log(f"account {account.id} rolled over to a new {jws.describe_key(new_key)} key")
        return Response.json(200, self._account_json(self.state.account(account.id), base),
                             headers=[("Location", account_url)])

    # --- orders -----------------------------------------------------------------------------
    def new_order(self, request: _Request) -> Response:
        payload, base = request.payload, request.base
        if "notBefore" in payload or "notAfter" in payload:
            raise Problem("malformed", "This server sets certificate lifetimes itself (its --days); send no "
                                       "notBefore or notAfter.")
        identifiers = self.config.policy.check_identifiers(self.ca, payload.get("identifiers"))
        order = self.state.create_order(request.account.id, identifiers, challenges.TYPES)
        self.log(f"order {order.id} for {', '.join(i['value'] for i in identifiers)} "
                 f"(account {request.account.id})")
        return Response.json(201, self._order_json(order, base),
                             headers=[("Location", f"{base}/acme/order/{order.id}")])

    def _own_order(self, request: _Request, order_id: str) -> Order:
        order = self.state.order(order_id)
        if order is None:
            raise Problem("malformed", f"No order {shown(order_id)} exists.", status=404)
        if order.account_id != request.account.id:
            raise Problem("unauthorized", "This order belongs to another account.")
        return order

    def order(self, request: _Request, order_id: str) -> Response:
        order = self._own_order(request, order_id)
        headers = [("Location", f"{request.base}/acme/order/{order.id}")]
        if order.status in ("pending", "processing"):
            headers.append(("Retry-After", RETRY_AFTER))
        return Response.json(200, self._order_json(order, request.base), headers=headers)

    def finalize(self, request: _Request, order_id: str) -> Response:
        order = self._own_order(request, order_id)
        base = request.base
        if order.status != "ready":
            why = {"pending": "its authorizations are not all valid yet; complete their challenges first",
                   "processing": "it is being finalized already",
                   "valid": "it was finalized already; its certificate is at "
                            f"{base}/acme/cert/{order.certificate_serial}",
                   "invalid": "it is invalid; place a new order"}.get(order.status, order.status)
            raise Problem("orderNotReady", f"The order is {order.status}: {why}.")
        csr_text = request.payload.get("csr")
        if not isinstance(csr_text, str):
            raise Problem("malformed", "A finalize request carries the CSR as base64url DER in 'csr'.")
        try:
            csr_der = jws.jose.decode_b64jose(csr_text)
        except (ValueError, binascii.Error, jws.jose.DeserializationError):
            raise Problem("badCSR", "The 'csr' value is not base64url.") from None
        csr = check_csr(self.ca, self.config.policy, csr_der, order.identifiers)
        if not self.state.begin_finalize(order.id):
            current = self.state.order(order.id)
            raise Problem("orderNotReady", f"The order is {current.status}: another request finalized it.")
        try:
            issued = issue_for_order(self.ca, csr, self.config.days, order_id=order.id,
                                     store=lambda chain: self.state.complete_order(order.id, chain.serial,
                                                                                   chain.chain_pem))
        except Problem as problem:
            self.state.fail_order(order.id, problem.to_json())
            self.log(f"order {order.id}: issuing failed: {problem.detail}")
            raise
        except BaseException:
            self.state.fail_order(order.id, Problem("serverInternal", "Issuing failed.").to_json())
            raise
        names = ", ".join(i["value"] for i in order.identifiers)
        self.log(f"order {order.id}: issued serial {issued.serial} for {names}, "
                 f"expires {issued.cert.not_valid_after_utc:%Y-%m-%d}")
        return Response.json(200, self._order_json(self.state.order(order.id), base),
                             headers=[("Location", f"{base}/acme/order/{order.id}")])

    # --- authorizations and challenges --------------------------------------------------------
    def _own_authz(self, request: _Request, authz_id: str) -> Authorization:
        authz = self.state.authorization(authz_id)
        if authz is None:
            raise Problem("malformed", f"No authorization {shown(authz_id)} exists.", status=404)
        if authz.account_id != request.account.id:
            raise Problem("unauthorized", "This authorization belongs to another account.")
        return authz

    def authorization(self, request: _Request, authz_id: str) -> Response:
        authz = self._own_authz(request, authz_id)
        status = request.payload.get("status")
        if status is not None:
            if status != "deactivated":
                raise Problem("malformed", "An authorization's status can only be changed to 'deactivated'.")
            self.state.deactivate_authorization(authz.id)
            authz = self.state.authorization(authz.id)
        headers = [("Retry-After", RETRY_AFTER)] if authz.status == "pending" else []
        return Response.json(200, self._authz_json(authz, request.base), headers=headers)

    def challenge(self, request: _Request, challenge_id: str) -> Response:
        found = self.state.challenge(challenge_id)
        if found is None:
            raise Problem("malformed", f"No challenge {shown(challenge_id)} exists.", status=404)
        challenge, authz = found
        self._own_authz(request, authz.id)
        if not request.signed.is_post_as_get:  # a JSON object ({}): the client is ready to be checked
            if authz.status != "pending" and challenge.status == "pending":
                raise Problem("malformed", f"The authorization is {authz.status}; its challenges are closed.")
            if self.state.start_challenge(challenge.id):
                done = self._expect(challenge.id)
                self._queue.put(challenge.id)
                done.wait(CHALLENGE_WAIT)
                with self._done_lock:
                    self._done.pop(challenge.id, None)
            challenge, authz = self.state.challenge(challenge_id)
        headers = [("Link", f'<{request.base}/acme/authz/{authz.id}>;rel="up"')]
        if challenge.status in ("pending", "processing"):
            headers.append(("Retry-After", RETRY_AFTER))
        return Response.json(200, self._challenge_json(challenge, request.base), headers=headers)

    def _expect(self, challenge_id: str) -> threading.Event:
        event = threading.Event()
        with self._done_lock:
            self._done[challenge_id] = event
        return event

    def _work(self) -> None:
        while (challenge_id := self._queue.get()) is not None:
            try:
                self.validate(challenge_id)
            except Exception as exc:  # the database went away: the challenge stays processing, retried on restart
                self.log(f"error validating challenge {challenge_id}: {type(exc).__name__}: {shown(exc)}")
            finally:
                with self._done_lock:
                    event = self._done.get(challenge_id)
                if event is not None:
                    event.set()

    def validate(self, challenge_id: str) -> None:
        """Validate a processing challenge and record the outcome."""
        found = self.state.challenge(challenge_id)
        if found is None or found[0].status != "processing":
            return
        challenge, authz = found
        account = self.state.account(authz.account_id)
        key_auth = challenges.key_authorization(challenge.token, account.thumbprint)
        started = time.monotonic()
        try:
            self.config.validator.validate(challenge.type, authz.identifier, challenge.token, key_auth)
            error = None
        except Problem as problem:
            error = problem.to_json()
        except Exception as exc:
            error = Problem("serverInternal", f"Validation failed unexpectedly: {type(exc).__name__}.").to_json()
        self.state.finish_challenge(challenge.id, error)
        took = f"{(time.monotonic() - started) * 1000:.0f} ms"
        outcome = "valid" if error is None else f"invalid: {error['detail']}"
        self.log(f"{challenge.type} for {authz.identifier['value']}: {outcome} ({took})")

    # --- certificates -------------------------------------------------------------------------
    def certificate(self, request: _Request, serial: str) -> Response:
        found = self.state.certificate(serial)
        if found is None:
            raise Problem("malformed", f"No certificate {shown(serial)} was issued through ACME here.", status=404)
        chain, account_id = found
        if account_id != request.account.id:
            raise Problem("unauthorized", "This certificate was ordered by another account.")
        return Response(200, chain.encode("ascii"), PEM_CHAIN)

    def revoke_cert(self, request: _Request) -> Response:
        from cryptography import x509

        from certkit.errors import parse_errors

        payload = request.payload
        try:
            der = jws.jose.decode_b64jose(payload["certificate"])
            cert = x509.load_der_x509_certificate(der)
        except (KeyError, TypeError, ValueError, jws.jose.DeserializationError, *parse_errors()):
            raise Problem("malformed", "revokeCert needs the certificate as base64url DER in 'certificate'.") \
                from None
        code = payload.get("reason", 0)
        if not isinstance(code, int) or isinstance(code, bool) or code not in REVOCATION_CODES:
            raise Problem("badRevocationReason", f"Revocation reason {shown(code)} is not accepted; use one of "
                          + ", ".join(f"{c} ({n})" for c, n in REVOCATION_CODES.items()) + ".")
        serial = serial_hex(cert.serial_number)
        try:
            cert.verify_directly_issued_by(self.ca.cert)
            row = self.ca.inventory.get(serial)
        except Exception:
            row = None
        if row is None:
            raise Problem("malformed", f"The certificate {serial} was not issued by this CA.", status=404)
        if request.account is not None:
            owner = self.state.certificate(serial)
            if owner is None or owner[1] != request.account.id:
                raise Problem("unauthorized", f"The account did not order certificate {serial}; revoke it with "
                                              "the account that did, or sign with the certificate's own key.")
            how = f"account {request.account.id}"
        else:
            if jws.public_key_der(request.jwk) != jws.public_key_der(jws.jwk_for_public_key(cert.public_key())):
                raise Problem("unauthorized", "The request is signed neither by an account nor by the key of "
                                              f"certificate {serial}.")
            how = "the certificate's own key"
        try:
            self.ca.revoke(serial, REVOCATION_CODES[code])
        except AlreadyRevoked as exc:
            raise Problem("alreadyRevoked", str(exc)) from None
        except UnknownCertificate as exc:
            raise Problem("malformed", str(exc), status=404) from None
        self.log(f"revoked serial {serial} ({REVOCATION_CODES[code]}), signed by {how}")
        return Response(200)


# --- HTTP over TLS -------------------------------------------------------------------------------
class AcmeRequestHandler(BaseHTTPRequestHandler):
    server_version = "certkit-acme"
    sys_version = ""
    protocol_version = "HTTP/1.1"  # keep-alive: clients send a dozen requests per certificate
    timeout = IDLE_TIMEOUT
    server: "AcmeHTTPServer"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        base = self.server.base_url(self.headers.get("Host"))
        body = b""
        if method in ("POST", "PUT"):
            if self.headers.get("Transfer-Encoding"):
                self._send(Response.problem(Problem("malformed", "Send the request body with a Content-Length.",
                                                    status=411)), method, close=True)
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 <= length <= jws.MAX_BODY_BYTES:
                self._send(Response.problem(Problem("malformed", f"The request body must be 0 to "
                                                    f"{jws.MAX_BODY_BYTES} bytes.", status=413)), method, close=True)
                return
            body = self.rfile.read(length)
        response = self.server.service.handle(method, self.path, self.headers, body, base)
        self._send(response, method)

    def _send(self, response: Response, method: str, close: bool = False) -> None:
        self.send_response(response.status)
        if response.content_type:
            self.send_header("Content-Type", response.content_type)
        if response.status != 204:  # RFC 9110 8.6: a 204 carries no Content-Length
            self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        # Headers and body in one write, so one TLS record: written apart, the body waited for
        # the client's delayed ACK (Nagle), 40 ms on every response.
        self._headers_buffer.append(b"\r\n")
        if method != "HEAD" and response.body:
            self._headers_buffer.append(response.body)
        self.flush_headers()

    def log_request(self, code="-", size="-") -> None:
        self.server.log(f"{_peer(self.client_address)} \"{shown(self.requestline)}\" {code}")

    def log_message(self, format: str, *args) -> None:
        self.server.log(f"{_peer(self.client_address)} {shown(format % args)}")


class AcmeHTTPServer(ThreadingHTTPServer):
    """The ACME service over HTTPS; the handshake runs in the connection's worker thread."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], service: AcmeService, context: ssl.SSLContext, *,
                 log: Callable[[str], None], verbose: bool = False) -> None:
        self.service, self.context, self.log_line, self.verbose = service, context, log, verbose
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, AcmeRequestHandler)

    def log(self, message: str) -> None:
        if self.verbose:
            self.log_line(message)

    @property
    def default_host(self) -> str:
        host, port = self.server_address[0], self.server_address[1]
        if host in ("0.0.0.0", "::", ""):
            host = "localhost"
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def base_url(self, host_header: str | None) -> str:
        host = (host_header or "").strip()
        if not host or len(host) > 300 or not _HOST.match(host):
            host = self.default_host
        return f"https://{host}"

    @property
    def directory_url(self) -> str:
        return f"https://{self.default_host}/directory"

    def get_request(self):
        sock, address = self.socket.accept()
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def finish_request(self, request, client_address) -> None:
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            self.log_line(f"TLS handshake with {_peer(client_address)} failed: {exc.__class__.__name__}: "
                          f"{getattr(exc, 'reason', None) or exc}")
            return
        request.settimeout(IDLE_TIMEOUT)
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError | ssl.SSLError):
            return  # a client that went away
        self.log_line(f"error serving {_peer(client_address)}: {type(exc).__name__}: {shown(exc)}")


def _peer(address) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Listener:
    """The server's TLS context and its certificate, issued from the CA and renewed in place."""

    def __init__(self, ca: "CA", names: list[str], days: int = LISTENER_DAYS) -> None:
        self.ca, self.names, self.days = ca, names, days
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.issued = None
        self.renew()

    def renew(self) -> None:
        from certkit.atomic import SECRET_MODE, write_new_file

        def load(issued) -> None:
            # ssl loads keys from files only: the key exists on disk for the moment OpenSSL reads it.
            with tempfile.TemporaryDirectory(prefix="certkit-acme-") as tmp:
                chain, key = Path(tmp) / "fullchain.pem", Path(tmp) / "privkey.pem"
                write_new_file(chain, issued.fullchain_pem, SECRET_MODE, sync=False)
                write_new_file(key, issued.private_key_pem, SECRET_MODE, sync=False)
                self.context.load_cert_chain(chain, key)  # new handshakes get the new certificate

        self.issued = issue_listener_certificate(self.ca, self.names, self.days, load)

    def due(self) -> bool:
        cert = self.issued.cert
        left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
        return left < (cert.not_valid_after_utc - cert.not_valid_before_utc) / 3


def maintain(service: AcmeService, listener: Listener, stop: threading.Event, log: Callable[[str], None],
             interval: float = MAINTENANCE_INTERVAL) -> None:
    """Every ``interval``: drop expired nonces, expire stale orders, renew the server certificate."""
    while not stop.wait(interval):
        try:
            service.state.purge()
            if listener.due():
                listener.renew()
                log(f"server certificate renewed: serial {listener.issued.serial_hex}")
        except Exception as exc:
            log(f"maintenance failed (retried in {interval:g} s): {type(exc).__name__}: {shown(exc)}")


def decode_hmac_key(text: str) -> bytes:
    """An EAB HMAC key as ACME clients take it (base64url, padding optional)."""
    text = text.strip()
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, binascii.Error):
        key = b""
    if len(key) < 16 or not re.fullmatch(r"[A-Za-z0-9_-]+=*", text):
        raise ValueError("an EAB HMAC key is base64url text of at least 16 bytes (as 'openssl rand -base64 32 | "
                         "tr +/ -_' makes)")
    return key
