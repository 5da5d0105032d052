"""The RFC 8555 resources: what each ACME request does once :class:`~certkit.acme.server.AcmeService`
has routed it and verified its JWS.

:class:`Resources` answers for accounts (new, read, update, deactivate, key
roll-over), orders (new, read, finalize), authorizations, challenges,
certificates and revocation (:mod:`certkit.acme.revoke`), and builds their JSON views. Each handler takes
the authenticated :class:`Request` and returns a
:class:`~certkit.acme.response.Response` or raises a
:class:`~certkit.acme.problems.Problem`. It knows nothing of sockets or JWS
parsing; issuing goes through :mod:`certkit.acme.issue`, storage through
:mod:`certkit.acme.state`, validation through :mod:`certkit.acme.validation`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from certkit.acme import challenges, jws, jws_nested
from certkit.acme.fields import account_deactivation, check_booleans, deactivation
from certkit.acme.finalize import Finalizer, refuse_certificate_key, refuse_not_ready
from certkit.acme.problems import Problem
from certkit.acme.records import is_id
from certkit.acme.response import PEM_CHAIN, Response
from certkit.acme.revoke import revoke_cert
from certkit.acme.state import AcmeState, Authorization, Challenge, Order
from certkit.acme.validation import Validations, refuse_not_started
from certkit.errors import acme_text
from certkit.text import shown

if TYPE_CHECKING:
    from certkit.acme.server import AcmeConfig
    from certkit.ca import CA

# Clients poll pending objects; they wait at least a second between polls whatever we say
# (lego reads whole seconds), so 1 keeps them quick without inviting a busy loop.
RETRY_AFTER = "1"
# How long a challenge POST waits for its validation before answering "processing": most
# validations take milliseconds, and a client told "valid" at once skips a polling round.
CHALLENGE_WAIT = 2.0
# The account's orders list is served this many orders a page (RFC 8555 7.1.2.1), each page
# linking to the next.
ORDERS_PAGE = 100


@dataclass
class Request:
    """What a handler gets: the verified JWS and who signed it."""

    signed: jws.SignedRequest
    payload: dict
    account: object | None  # state.Account for kid requests
    jwk: object  # the key that verified the signature
    base: str
    query: str = ""  # the request URL's query string, without its '?'


class Resources:
    """The ACME resources over certkit's CA and the ACME state."""

    def __init__(self, ca: "CA", state: AcmeState, config: "AcmeConfig", validations: Validations,
                 log: Callable[[str], None]) -> None:
        self.ca, self.state, self.config, self.validations, self.log = ca, state, config, validations, log
        self.finalizer = Finalizer(ca, state, config, log)

    # --- JSON views ---------------------------------------------------------------------------
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
        offered = authz.challenges
        if authz.status in ("valid", "invalid"):  # RFC 8555 7.1.4: the challenge validated, or attempted and failed
            offered = [c for c in offered if c.status != "pending"] or offered
        return {"identifier": authz.identifier, "status": authz.status, "expires": authz.expires,
                "challenges": [self._challenge_json(c, base) for c in offered]}

    # --- accounts ---------------------------------------------------------------------------
    def new_account(self, request: Request) -> Response:
        payload, jwk, base = request.payload, request.jwk, request.base
        check_booleans(payload, "onlyReturnExisting", "termsOfServiceAgreed")
        self._contact_shape(payload.get("contact", []))  # whatever the answer: a field of the wrong type is said
        if payload.get("externalAccountBinding") is not None:  # even where no binding is needed (RFC 8555 7.3.4)
            jws_nested.eab_kid(payload["externalAccountBinding"])
        thumb = jws.thumbprint(jwk)
        existing = self.state.account_by_thumbprint(thumb)
        only_existing = payload.get("onlyReturnExisting", False)
        if existing is not None:
            if existing.status != "valid":
                raise Problem("unauthorized", f"The account of this key is {existing.status}.")
            if only_existing or enrolled(self.config.eab, existing) \
                    or payload.get("externalAccountBinding") is None:
                refuse_unenrolled(self.config.eab, existing)
                return Response.json(200, self._account_json(existing, base),
                                     headers=[("Location", f"{base}/acme/acct/{existing.id}")])
            # Registered again with a binding: the account is enrolled from now on.
            account = self.state.update_account(existing.id, eab_kid=self._binding(payload, jwk, base))
            self.log(f"account {account.id} bound to EAB {shown(account.eab_kid)}")
            return Response.json(200, self._account_json(account, base),
                                 headers=[("Location", f"{base}/acme/acct/{account.id}")])
        if only_existing:
            raise Problem("accountDoesNotExist", "No account exists for this key.")
        contact = self._contact(payload.get("contact", []))
        eab_kid = self._binding(payload, jwk, base)
        refuse_certificate_key(self.state, jwk, self.ca)
        tos = payload.get("termsOfServiceAgreed", False)
        account, created = self.state.create_account(thumb, jws.jwk_json(jwk), contact, tos, eab_kid)
        if created:
            self.log(f"account {account.id} created ({jws.describe_key(jwk)} key"
                     f"{', EAB ' + shown(eab_kid) if eab_kid else ''})")
        return Response.json(201 if created else 200, self._account_json(account, base),
                             headers=[("Location", f"{base}/acme/acct/{account.id}")])

    def _binding(self, payload: dict, jwk, base: str) -> str | None:
        """The key identifier of the request's verified External Account Binding; None when this
        server registers every client."""
        if not self.config.eab:
            return None
        binding = payload.get("externalAccountBinding")
        if binding is None:
            raise Problem("externalAccountRequired", "This server registers only enrolled clients: send an "
                                                     "externalAccountBinding (EAB key id and HMAC key).")
        eab_kid = jws_nested.eab_kid(binding)
        key = self.config.eab.get(eab_kid) if eab_kid is not None else None
        if key is None:
            raise Problem("unauthorized", "The externalAccountBinding names an unknown key identifier.")
        jws_nested.verify_eab(binding, jwk, f"{base}/acme/new-account", eab_kid, key)
        return eab_kid

    @staticmethod
    def _contact_shape(contact) -> None:
        if not isinstance(contact, list) or not all(isinstance(c, str) for c in contact):
            raise Problem("malformed", "contact must be a list of strings (mailto: URLs).")

    @classmethod
    def _contact(cls, contact) -> list[str]:
        from certkit import names

        cls._contact_shape(contact)
        if len(contact) > 10:
            raise Problem("invalidContact", "An account may have at most 10 contacts.")
        kept = []
        for url in contact:
            # Stored and served as sent: only "mailto:" and the address itself, nothing around it.
            if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
                raise Problem("invalidContact", f"'{shown(url)}' holds spaces or control characters; a contact is "
                                                "exactly mailto: followed by the address.")
            scheme, colon, address = url.partition(":")
            if not colon or scheme.lower() != "mailto":  # a scheme is case-insensitive (RFC 3986 3.1): MAILTO: too
                raise Problem("unsupportedContact", f"Only mailto: contacts are accepted, not '{shown(url)}'.")
            address = cls._decoded(url, address)
            try:
                names.parse_email(address)
            except Exception as exc:
                decoded = f" (its %-escapes decoded: '{shown(address)}')" if "%" in url else ""
                raise Problem("invalidContact", f"'{shown(url)}' is not a usable email contact{decoded}: "
                                                f"{acme_text(exc)}") from None
            kept.append(f"mailto:{address}")  # the scheme as RFC 3986 writes it, so MAILTO:x and mailto:x are one
        return list(dict.fromkeys(kept))

    @staticmethod
    def _decoded(url: str, address: str) -> str:
        """The address of a mailto: URL as a mail server reads it: its %-escapes decoded (RFC 6068), so that
        ``a%40b@x.test``, which is ``a@b@x.test``, is judged as that address, not as one with a '%' in it."""
        import re
        from urllib.parse import unquote_to_bytes

        if "%" not in address:
            return address
        if re.search(r"%(?![0-9A-Fa-f]{2})", address):
            raise Problem("invalidContact", f"'{shown(url)}' holds a '%' that starts no %-escape (%XX); write the "
                                            "address as it is.")
        try:
            return unquote_to_bytes(address).decode("utf-8")
        except UnicodeDecodeError:
            raise Problem("invalidContact", f"'{shown(url)}' holds %-escapes that are not UTF-8.") from None

    def _own_account(self, request: Request, account_id: str):
        if request.account.id != account_id:
            raise Problem("unauthorized", "An account may only read and change itself.")
        return request.account

    def account(self, request: Request, account_id: str) -> Response:
        account = self._own_account(request, account_id)
        payload = request.payload
        # Read as strictly as at newAccount; an agreement already given is not taken back, and one
        # not given is not asked for (this server has no terms of service); a status but "deactivated"
        # and the orders URL are ignored (RFC 8555 7.3.2).
        check_booleans(payload, "onlyReturnExisting", "termsOfServiceAgreed")
        deactivate = account_deactivation(payload)
        if "contact" in payload or deactivate:
            contact = self._contact(payload["contact"]) if "contact" in payload else None
            account = self.state.update_account(account.id, contact=contact, deactivate=deactivate)
            if deactivate:
                self.log(f"account {account.id} deactivated, and its pending and ready orders with it")
        return Response.json(200, self._account_json(account, request.base),
                             headers=[("Location", f"{request.base}/acme/acct/{account.id}")])

    def account_orders(self, request: Request, account_id: str) -> Response:
        """RFC 8555 7.1.2.1: the account's pending, ready, processing and valid orders (not the
        invalid ones, expired included), newest first, :data:`ORDERS_PAGE` a page; a page with more
        after it links to the next with ``Link: <...?cursor=ORDER>;rel="next"``."""
        from urllib.parse import parse_qs

        account = self._own_account(request, account_id)
        listing = f"{request.base}/acme/acct/{account.id}/orders"
        try:
            query = parse_qs(request.query, keep_blank_values=True, strict_parsing=bool(request.query))
        except ValueError:
            query = {"": []}
        if set(query) - {"cursor"} or any(len(v) != 1 for v in query.values()):
            raise Problem("malformed", f"The orders list takes one query parameter, 'cursor' (from its Link "
                                       f"rel=\"next\"), not '?{shown(request.query)}'.")
        after = query["cursor"][0] if query else None
        page = self.state.order_page(account.id, after, ORDERS_PAGE) if after is None or is_id(after) else None
        if page is None:
            raise Problem("malformed", f"The cursor '{shown(after)}' names no order of this account; start at "
                                       f"{listing}.")
        ids, more = page
        headers = [("Link", f'<{listing}?cursor={ids[-1]}>;rel="next"')] if more else []
        return Response.json(200, {"orders": [f"{request.base}/acme/order/{i}" for i in ids]}, headers=headers)

    def key_change(self, request: Request) -> Response:
        account, base = request.account, request.base
        account_url = f"{base}/acme/acct/{account.id}"
        new_key = jws_nested.verify_key_change(request.payload, request.signed, account_url, request.jwk)
        refuse_certificate_key(self.state, new_key, self.ca)
        outcome, holder = self.state.change_key(account.id, account.thumbprint, jws.thumbprint(new_key),
                                                jws.jwk_json(new_key))
        if outcome == "deactivated":  # since the request was checked: said as for any request it signs
            raise Problem("unauthorized", f"The account {account_url} is deactivated; its key stays as it was.")
        if outcome != "changed":
            detail = {"current": "The new key is the account's current key already; nothing changed. Sign the "
                                 "inner JWS with the new key to roll over to.",
                      "taken": "The new key belongs to an account already.",
                      "stale": "The account's key changed meanwhile (another key change was accepted first); "
                               "sign with its current key."}[outcome]
            holder_url = f"{base}/acme/acct/{holder}"  # RFC 8555 7.3.5 names Content-Location; Boulder, Location
            raise Problem("malformed", detail, status=409, headers={"Location": holder_url,
                                                                    "Content-Location": holder_url})
        self.log(f"account {account.id} rolled over to a new {jws.describe_key(new_key)} key")
        return Response.json(200, self._account_json(self.state.account(account.id), base),
                             headers=[("Location", account_url)])

    # --- orders -----------------------------------------------------------------------------
    def new_order(self, request: Request) -> Response:
        payload, base = request.payload, request.base
        if "notBefore" in payload or "notAfter" in payload:
            raise Problem("malformed", "This server sets certificate lifetimes itself (its --days); send no "
                                       "notBefore or notAfter.")
        identifiers = self.config.policy.check_identifiers(self.ca, payload.get("identifiers"))
        order = self.state.create_order(request.account.id, identifiers, challenges.TYPES)
        self.log(f"order {order.id} for {', '.join(i['value'] for i in identifiers)} "
                 f"(account {request.account.id})")
        return self._order_response(201, order, base)

    def _own_order(self, request: Request, order_id: str) -> Order:
        return _owned(request, self.state.order(order_id), "order", order_id)

    def order(self, request: Request, order_id: str) -> Response:
        return self._order_response(200, self._settled(self._own_order(request, order_id)), request.base)

    def _order_response(self, status: int, order: Order, base: str) -> Response:
        """An order as every resource answers with it (new-order, the order, finalize): its Location, and
        ``Retry-After`` while it is pending or processing (RFC 8555 7.4, 8.2), whichever request it answers."""
        headers = [("Location", f"{base}/acme/order/{order.id}")]
        if order.status in ("pending", "processing"):
            headers.append(("Retry-After", RETRY_AFTER))
        return Response.json(status, self._order_json(order, base), headers=headers)

    def finalize(self, request: Request, order_id: str) -> Response:
        order = self._settled(self._own_order(request, order_id))
        base = request.base
        refuse_not_ready(self.state, order, base)
        issued = self.finalizer.finalize(order, request.payload, base)
        names = ", ".join(i["value"] for i in order.identifiers)
        self.log(f"order {order.id}: issued serial {issued.serial} for {names}, "
                 f"expires {issued.cert.not_valid_after_utc:%Y-%m-%d}")
        return self._order_response(200, self.state.order(order.id), base)

    def _settled(self, order: Order) -> Order:
        """``order`` as it reads once what this server could not write when its finalize or a
        validation ended (the database was locked) is written: never left processing behind a
        finalize that is over, never pending behind a validation that is, and no inventory row left
        pending by its finalize (for a certificate delivered or never delivered)."""
        if order.status == "pending" and self._validations_written():
            order = self.state.order(order.id)
        if self.finalizer.unsettled(order.id):  # its end, or a row it left pending for a certificate never delivered
            self.finalizer.settle()
            return self.state.order(order.id)
        return order

    # --- authorizations and challenges --------------------------------------------------------
    def _validations_written(self) -> bool:
        """Write the validation outcomes the database refused earlier, first thing in a request
        that reads them; True if there were any."""
        if not self.validations.unwritten():
            return False
        self.validations.write_outcomes()
        return True

    def _own_authz(self, request: Request, authz_id: str) -> Authorization:
        return _owned(request, self.state.authorization(authz_id), "authorization", authz_id)

    def authorization(self, request: Request, authz_id: str) -> Response:
        self._validations_written()
        authz = self._own_authz(request, authz_id)
        if not request.signed.is_post_as_get and "status" not in request.payload:
            raise Problem("malformed", "An authorization is fetched with an empty payload (POST-as-GET) or "
                                       'deactivated with {"status": "deactivated"}; nothing else in it can be changed.')
        if deactivation(request.payload, "An authorization"):
            self.state.deactivate_authorization(authz.id)
            authz = self.state.authorization(authz.id)
            if authz.status != "deactivated":  # invalid or expired (now or meanwhile): refused, not a 200 (7.5.2)
                raise Problem("malformed", f"The authorization is {authz.status}: only a pending or valid "
                                           "authorization can be deactivated (RFC 8555 7.5.2); nothing changed.")
        headers = [("Retry-After", RETRY_AFTER)] if authz.status == "pending" else []
        return Response.json(200, self._authz_json(authz, request.base), headers=headers)

    def challenge(self, request: Request, challenge_id: str) -> Response:
        found = self.state.challenge(challenge_id)
        if found is None:
            raise Problem("malformed", f"No challenge {shown(challenge_id)} exists.", status=404)
        challenge, authz = found
        self._own_authz(request, authz.id)
        if self._validations_written():
            challenge, authz = self.state.challenge(challenge_id)
        if not request.signed.is_post_as_get:  # a JSON object ({}): the client is ready to be checked
            if challenge.status == "pending":  # else answered as it is (processing, valid, invalid)
                if authz.status == "pending" and self.state.start_challenge(challenge.id):
                    self.validations.run(challenge.id, authz.account_id, CHALLENGE_WAIT)
                else:  # never left pending in silence, as if it were being validated
                    refuse_not_started(*self.state.challenge(challenge_id))
            challenge, authz = self.state.challenge(challenge_id)
        headers = [("Link", f'<{request.base}/acme/authz/{authz.id}>;rel="up"')]
        # Polling helps only while it can still change: being validated, or open to the client's answer. One left
        # pending in a closed authorization (valid by another challenge, invalid, deactivated, expired) never will.
        if challenge.status == "processing" or (challenge.status == "pending" and authz.status == "pending"):
            headers.append(("Retry-After", RETRY_AFTER))
        return Response.json(200, self._challenge_json(challenge, request.base), headers=headers)

    # --- certificates -------------------------------------------------------------------------
    def certificate(self, request: Request, serial: str) -> Response:
        if self.finalizer.unsettled(serial=serial):  # delivered, its row not marked valid yet: now, if it can be
            self.finalizer.settle()
        found = self.state.certificate(serial)
        if found is None:
            raise Problem("malformed", f"No certificate {shown(serial)} was issued through ACME here.", status=404)
        chain, account_id = found
        if account_id != request.account.id:
            raise Problem("unauthorized", "This certificate was ordered by another account.")
        return Response(200, chain.encode("ascii"), PEM_CHAIN)

    def revoke_cert(self, request: Request) -> Response:
        return revoke_cert(self, request)


def _owned(request: Request, found, what: str, ident: str):
    """``found`` (the order or authorization ``ident``), when it exists and the requesting account owns it."""
    if found is None:
        raise Problem("malformed", f"No {what} {shown(ident)} exists.", status=404)
    if found.account_id != request.account.id:
        raise Problem("unauthorized", f"This {what} belongs to another account.")
    return found


def enrolled(eab: dict, account) -> bool:
    """Whether ``account`` may use a server whose enrolled EAB keys are ``eab`` (none: open to all)."""
    return not eab or account.eab_kid in eab


def refuse_unenrolled(eab: dict, account) -> None:
    """On a server that registers only enrolled clients, refuse an account that is not bound to a
    key identifier it enrolls: one registered while this server, or another on the same CA, was
    open, or bound to a key identifier since withdrawn. Registration alone checks no binding:
    accounts outlive restarts and are shared by every server on the CA."""
    if enrolled(eab, account):
        return
    if account.eab_kid is None:
        raise Problem("externalAccountRequired", "This server serves only enrolled clients, and this account has "
                                                 "no External Account Binding; register its key again with an "
                                                 "externalAccountBinding.")
    raise Problem("unauthorized", f"This account is bound to the EAB key identifier '{shown(account.eab_kid)}', "
                                  "which this server does not enroll; register its key again with an "
                                  "externalAccountBinding.")


