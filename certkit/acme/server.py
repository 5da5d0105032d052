"""The ACME server's front door: :class:`AcmeService` routes each request, verifies its JWS
(nonce, URL, signing key) and answers every request with a fresh nonce.

It knows nothing of sockets: it maps a request (method, path, headers, body)
to a :class:`~certkit.acme.response.Response`. What each resource does is in
:mod:`certkit.acme.resources`; validations run in :mod:`certkit.acme.validation`'s
worker threads; :mod:`certkit.acme.https` carries the service over TLS and
:mod:`certkit.acme.listener` keeps the server's own certificate.

URLs are built from the authority the request names (its ``Host`` header, as
Boulder and Pebble build them, or its request target's, given in absolute form:
RFC 9112 3.2.2), so a client that reaches the server as ``localhost`` or as
``127.0.0.1`` gets URLs it can use; every JWS ``url`` must be exactly the URL
it was sent to, its query string included (RFC 8555 6.4). Only the account's
orders list takes a query (its pages: ``?cursor=``); any other signed resource
refuses one (the directory and newNonce, fetched with GET, ignore one).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from certkit.acme import jws
from certkit.acme.challenges import Validator
from certkit.acme.policy import Policy
from certkit.acme.problems import RETRY_LATER, Problem
from certkit.acme.records import ID, is_id
from certkit.acme.resources import Request, Resources, refuse_unenrolled
from certkit.acme.response import JOSE, Response
from certkit.acme.state import AcmeState
from certkit.acme.urls import as_here, same_url
from certkit.acme.validation import VALIDATION_WORKERS, Validations
from certkit.errors import CABroken, CertkitError, InventoryError
from certkit.text import shown

if TYPE_CHECKING:
    from certkit.ca import CA


@dataclass
class AcmeConfig:
    policy: Policy = field(default_factory=Policy)
    validator: Validator = field(default_factory=Validator)
    days: int | None = None  # certificate lifetime; None: the server profile's default, capped
    eab: dict[str, bytes] = field(default_factory=dict)  # external account key id -> HMAC key


class AcmeService:
    """The ACME protocol over certkit's CA and the ACME state."""

    def __init__(self, ca: "CA", state: AcmeState, config: AcmeConfig,
                 log: Callable[[str], None] = lambda message: None) -> None:
        self.ca, self.state, self.config, self.log = ca, state, config, log
        permits = lambda host: _redirect_target(config.policy, ca, host)  # noqa: E731
        validator = dataclasses.replace(config.validator, permits=permits,
                                        issues_for=lambda identifier: config.policy.check(ca, identifier))
        self.validations = Validations(state, validator, log)
        self.resources = Resources(ca, state, config, self.validations, log)

    # --- life cycle -------------------------------------------------------------------------
    def start(self, workers: int = VALIDATION_WORKERS) -> None:
        """Create the tables, recover what a dead server left (not what a live one is doing: another
        server may share the database; :meth:`settle` does it again at each maintenance round), start the
        validation workers."""
        self.state.db.hold_open()
        try:
            self.state.create_schema()
            self.state.nonces.key()  # read once here: making a nonce never waits for the database after
            abandoned = self.state.abandon_interrupted()
        except BaseException:
            self.state.db.close()  # the held connection too: a start that failed leaves nothing open
            raise
        self._took_over(abandoned)
        self.validations.start(workers)

    def _took_over(self, abandoned: int) -> None:
        """Say how many orders of dead servers became invalid, and revoke the certificates those servers held
        (their keys died with them)."""
        if abandoned:
            self.log(f"{abandoned} order(s) interrupted while issuing (their server stopped) are now invalid; "
                     "their clients order again")
        from certkit.acme.listener import retire_orphans

        retire_orphans(self.ca, self.state, self.log)

    def stop(self) -> None:
        """Stop the validations and close the database, once the requests under way have been
        answered (the HTTPS server's drain): a finalize a stop could not wait for goes back to
        ready, and what a busy database refused earlier (a finalize's end, a validation's outcome)
        is written now if it can be. A validation outcome still refused leaves its challenge
        processing, validated again by the next server to start."""
        self.validations.stop()
        finalizer = self.resources.finalizer
        finalizer.release_running()
        finalizer.settle()
        try:
            self.validations.write_outcomes()
        except Exception as exc:  # noqa: BLE001 - the database is gone: the next server validates again
            self.log(f"error writing validation outcomes at stop: {type(exc).__name__}: {shown(exc)}")
        self.state.db.close()

    def settle(self) -> None:
        """The maintenance round's share: write what a busy database refused when a finalize or a
        validation ended, and validate again what this server left processing without an outcome;
        and take over, as a start does, what a server of this host that died meanwhile left (killed
        outright beside this one on the CA): its orders being issued become invalid, its validations
        are done again here, its own certificate is revoked. Left to the next start, its order read
        ``processing`` (``Retry-After: 1``) to its client for as long as no server restarted."""
        self.resources.finalizer.settle()
        self.validations.settle()
        self._took_over(self.state.abandon_interrupted())

    # --- HTTP entry point -------------------------------------------------------------------
    def handle(self, method: str, path: str, headers, body: bytes, base: str) -> Response:
        """Answer one request; every answer carries a fresh nonce and the index link."""
        nonce: list[str] = []
        try:
            response = self._route(method, _origin_form(path), headers, body, base, nonce)
        except Problem as problem:
            response = Response.problem(problem)
        except CABroken as exc:  # its directory made again for another CA since it started: it serves nothing more
            self.log(f"error {method} {shown(path)}: {shown(exc)}")
            response = Response.problem(Problem("serverInternal", "The server's CA directory now holds another CA "
                                                "than the one it started with; it answers nothing until restarted."))
        except InventoryError as exc:  # the database is unreachable, locked, full: said in one line, no bug
            self.log(f"error {method} {shown(path)}: {shown(exc)}")
            response = Response.problem(Problem("serverInternal", "The server's database is unavailable; try "
                                                "again later.", status=503, headers={"Retry-After": RETRY_LATER}))
        except RecursionError:  # JSON nested too deeply, met where no decoder said so: the client's, no bug
            self.log(f"refused {method} {shown(path)}: its JSON is nested too deeply")
            response = Response.problem(Problem("malformed", "The request's JSON is nested too deeply to be read."))
        except Exception as exc:  # a bug must not leave a client without an answer or a nonce
            trace = "" if isinstance(exc, CertkitError) else "\n" + "".join(traceback.format_exc(limit=8))
            self.log(f"error {method} {shown(path)}: {type(exc).__name__}: {shown(exc)}{trace}")
            response = Response.problem(Problem("serverInternal", "The server failed to handle the request."))
        if _origin_form(path).partition("?")[0] == "/acme/new-nonce" and not any(
                name == "Cache-Control" for name, _value in response.headers):
            response.headers.append(("Cache-Control", "no-store"))  # RFC 8555 7.2: every answer of it, refusals too
        return self.finish(response, base, nonce[0] if nonce else None)

    def finish(self, response: Response, base: str, nonce: str | None = None, *, mint: bool = True) -> Response:
        """Add what every answer carries: a fresh nonce (RFC 8555 6.5; making one needs no database,
        so a 503 for a database that failed carries one too) and the index link (7.1). ``mint=False``:
        the server is stopping."""
        try:
            if nonce or mint:
                response.headers.append(("Replay-Nonce", nonce or self.state.new_nonce()))
        except Exception as exc:  # the database is gone; say so rather than hang up
            self.log(f"error minting a nonce: {shown(exc)}")
        response.headers.append(("Link", f'<{base}/directory>;rel="index"'))
        return response

    def _route(self, method: str, target: str, headers, body: bytes, base: str, nonce: list[str]) -> Response:
        """Answer the request for ``target`` (the request's path and query, as sent)."""
        path, _sep, query = target.partition("?")
        if path in ("/directory", "/acme/new-nonce"):
            self._only(method, ("GET", "HEAD", "POST"))
            if method == "POST":  # RFC 8555 6.3: POST-as-GET too, signed by an account, its nonce used up
                self._fetched_signed(headers, body, base, target, nonce)
        if path == "/directory":
            return Response.json(200, self._directory(base))
        if path == "/acme/new-nonce":
            if method == "POST":  # the request's fresh nonce, as every signed request's (Boulder: 200)
                return Response(200, headers=[("Cache-Control", "no-store")])
            try:  # a success must carry the nonce (RFC 8555 7.2): made here, so a failure is an error
                nonce.append(self.state.new_nonce())
            except InventoryError:
                raise  # a 503 with Retry-After, as for every request that finds the database unavailable
            except CertkitError as exc:
                self.log(f"error minting a nonce: {shown(exc)}")
                raise Problem("serverInternal", "The server cannot make a nonce now (its database is "
                                                "unavailable); try again later.") from None
            return Response(200 if method == "HEAD" else 204, headers=[("Cache-Control", "no-store")])
        routes: list[tuple[str, str, Callable]] = [
            (r"/acme/new-account", "jwk", self.resources.new_account),
            (r"/acme/new-order", "kid", self.resources.new_order),
            (r"/acme/revoke-cert", "any", self.resources.revoke_cert),
            (r"/acme/key-change", "kid", self.resources.key_change),
            (rf"/acme/acct/({ID})", "kid", self.resources.account),
            (rf"/acme/acct/({ID})/orders", "kid", self.resources.account_orders),
            (rf"/acme/order/({ID})", "kid", self.resources.order),
            (rf"/acme/order/({ID})/finalize", "kid", self.resources.finalize),
            (rf"/acme/authz/({ID})", "kid", self.resources.authorization),
            (rf"/acme/chall/({ID})", "kid", self.resources.challenge),
            (r"/acme/cert/([0-9A-F]+)", "kid", self.resources.certificate),
        ]
        # RFC 8555 6.3: POST-as-GET (an empty payload) fetches a resource; the others act on a JSON object.
        fetched = (self.resources.account, self.resources.account_orders, self.resources.order,
                   self.resources.authorization, self.resources.challenge, self.resources.certificate)
        # The resources a payload cannot change, and what the client can do instead.
        fetch_only = {self.resources.account_orders: "orders are placed at newOrder",
                         self.resources.order: "an order ends when it is finalized or expires; deactivate an "
                                               "authorization to drop it",
                         self.resources.certificate: "a certificate is revoked at revokeCert"}
        for pattern, key_rule, handler in routes:
            match = re.fullmatch(pattern, path)
            if match:
                self._only(method, ("POST",), " (use POST-as-GET: a JWS with an empty payload)" if handler in fetched
                           else " (POST a JWS whose payload is this request's JSON object)")
                request = self._authenticate(headers, body, base + target, key_rule, base, nonce)
                if _sep and handler != self.resources.account_orders:
                    raise Problem("malformed", f"{base}{path} takes no query string ('?{shown(query)}').")
                if request.signed.is_post_as_get and handler not in fetched:
                    raise Problem("malformed", f"{base}{path} takes a JSON object as its payload; an empty payload "
                                               "(POST-as-GET) only fetches an account, an order, an authorization, "
                                               "a challenge, a certificate or an orders list.")
                if not request.signed.is_post_as_get and handler in fetch_only:
                    raise Problem("malformed", f"{base}{path} is fetched with POST-as-GET (an empty payload) and "
                                               f"cannot be changed: send no payload ({fetch_only[handler]}).")
                request.query = query
                return handler(request, *match.groups())
        raise Problem("malformed", f"There is no ACME resource at {shown(path)}; start at {base}/directory.",
                      status=404)

    def _fetched_signed(self, headers, body: bytes, base: str, target: str, nonce: list[str]) -> None:
        """Check a POST-as-GET of the directory or newNonce, which RFC 8555 6.3 allows beside GET: a JWS
        signed by an account, with an empty payload and no query string (as every signed request)."""
        request = self._authenticate(headers, body, base + target, "kid", base, nonce)
        path, sep, query = target.partition("?")
        if sep:
            raise Problem("malformed", f"{base}{path} takes no query string ('?{shown(query)}').")
        if not request.signed.is_post_as_get:
            raise Problem("malformed", f"{base}{path} is fetched with GET, HEAD or POST-as-GET (an empty payload); "
                                       "send no payload.")

    @staticmethod
    def _only(method: str, allowed: tuple[str, ...], hint: str = "") -> None:
        if method not in allowed:
            raise Problem("malformed", f"{method} is not allowed here{hint}.", status=405,
                          headers={"Allow": ", ".join(allowed)})

    # --- authentication ---------------------------------------------------------------------
    def _authenticate(self, headers, body: bytes, url: str, key_rule: str, base: str,
                      nonce: list[str]) -> Request:
        content_type = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type != JOSE:
            raise Problem("malformed", f"ACME requests are sent as {JOSE}, not '{shown(content_type)}'.", status=415)
        signed = jws.parse(body)
        if signed.url is None:  # said as such, not as a URL 'None' that differs
            raise Problem("unauthorized", f"The JWS carries no 'url' header parameter; it must be the URL it is sent "
                                          f"to ({url}), RFC 8555 6.4.")
        if not same_url(signed.url, url):  # HTTPS://HOST/... too: a scheme and a host are case-insensitive
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
            kid = as_here(signed.kid, base)  # its URL however its scheme and host are written (RFC 3986 6.2.2.1)
            account_id = kid[len(prefix):] if kid.startswith(prefix) else None
            account = self.state.account(account_id) if is_id(account_id) else None
            if account is None:
                _refuse_kid_elsewhere(self.state, kid, prefix)
                raise Problem("accountDoesNotExist", f"No account is known here as '{shown(signed.kid)}'.")
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
        if account is not None:  # after the signature and the nonce: only the account's holder learns why
            if account.status != "valid":
                raise Problem("unauthorized", f"The account {signed.kid} is {account.status}.")
            refuse_unenrolled(self.config.eab, account)
        return Request(signed, signed.json_payload(), account, key, base)

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


_HMAC_RECIPE = "openssl rand -base64 32 | tr +/ -_ | tr -d ="


def decode_hmac_key(text: str) -> bytes:
    """An EAB HMAC key as every ACME client takes it: base64url without '=' padding (lego and Caddy refuse a
    padded one, certbot takes both), of at least 16 bytes."""
    text = text.strip()
    if "=" in text:
        raise ValueError(f"it ends in '=' padding, which lego and Caddy refuse (\"illegal base64 data\"): remove "
                         f"the '=' (a key is made so by '{_HMAC_RECIPE}')")
    if re.search(r"[+/]", text):
        raise ValueError(f"it holds '+' or '/', which base64url spells '-' and '_' (a key is made so by "
                         f"'{_HMAC_RECIPE}')")
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)) if re.fullmatch(r"[A-Za-z0-9_-]+", text) \
            else b""
    except (ValueError, binascii.Error):
        key = b""
    if len(key) < 16:
        raise ValueError(f"an EAB HMAC key is base64url text of at least 16 bytes (as '{_HMAC_RECIPE}' makes)")
    return key


def _refuse_kid_elsewhere(state: AcmeState, kid: str, prefix: str) -> None:
    """A ``malformed`` Problem for a ``kid`` that names an account of this server by another address than
    the request was sent to (its URL as reached at another host name or port): the account exists, so
    ``accountDoesNotExist`` would be untrue; its URL here is said instead (RFC 8555 6.2, 6.4)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(kid)
    except ValueError:
        return
    match = re.fullmatch(rf"/acme/acct/({ID})", parts.path)
    if parts.scheme in ("http", "https") and match and not parts.query and state.account(match[1]) is not None:
        raise Problem("malformed", f"The kid '{shown(kid)}' is the URL of account {match[1]} at another address "
                                   f"than this request was sent to; sign with its URL here, '{prefix}{match[1]}'.")


def _origin_form(target: str) -> str:
    """The path and query of a request target (RFC 9112 3.2): given in absolute form
    (``https://host:port/directory``, as a proxy-minded client sends it), its scheme and authority are
    dropped here; the URLs this server builds come from that authority (RFC 9112 3.2.2), as
    :mod:`certkit.acme.https` gives them in ``base``."""
    lowered = target[:8].lower()
    if not (lowered.startswith("https://") or lowered.startswith("http://")):
        return target
    rest = target.split("://", 1)[1]
    ends = [i for i in (rest.find("/"), rest.find("?")) if i >= 0]
    return "/" if not ends else ("/" if rest[min(ends)] == "?" else "") + rest[min(ends):]


def _redirect_target(policy: Policy, ca, host: dict) -> None:
    """Whether an http-01 redirect may lead to ``host``, another host than the name validated: one this
    server could issue for. Without --allow-domain that is any name, localhost and the cloud's metadata
    host included, so then a redirect stays on the name validated (a Problem otherwise)."""
    if host["type"] == "dns" and not policy.allow_domains:
        raise Problem("rejectedIdentifier", f"'{host['value']}' is another host, and this server, started without "
                                            "--allow-domain, follows redirects only on the name it validates")
    policy.check(ca, host)
