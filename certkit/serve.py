"""A small HTTPS server that requires a client certificate and says whom it authenticated.

It exists so a user can try a client certificate with curl, Python or a
browser and see what the server saw: subject CN, SAN entries, serial, issuer
and extended key usage; browsers get a page that puts the server's and the
client's certificate side by side (:mod:`certkit.serve_page`). By default the
standard library serves (``http.server`` + ``ssl``, client certificates
required); one thread per connection.

With ``optional=True`` (``serve --optional``) the TLS layer is pyOpenSSL's
instead (:mod:`certkit.serve_optional`), because Python's ``ssl`` cannot
complete a handshake with a client certificate that fails verification: it
has no verify callback. There, as nginx does, the handshake completes whatever
the client presents, OpenSSL's verdict is kept, and the page says why a
certificate was refused (or that none was sent). Nobody is authenticated by a
certificate OpenSSL refused.

The TLS handshake runs in the connection's worker thread, not in the accept
loop, so a slow or silent client cannot stall other connections, and every
handshake, accepted or rejected, is logged with OpenSSL's reason."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import ssl
import sys
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from certkit.der_input import pem_form, pem_paths
from certkit.errors import CertkitError, damage_said
from certkit.probe_http import unescaped_zone, zone_index
from certkit.pyossl import drain_rejected
from certkit.sent_chain import refuse_server_chain
from certkit.serve_handshake import HANDSHAKE_TIMEOUT, _handshake, _handshake_failure, connection_failure
from certkit.serve_json import (  # noqa: F401 (serve's public names)
    PeerIdentity,
    answer_format,
    peer_identity,
    plain_http_answer,
)
from certkit.serve_optional import OptionalContext  # noqa: F401 (serve's public names)
from certkit.serve_revocations import InventoryRevocations, InventoryVerdict  # noqa: F401 (serve's public names)
from certkit.text import cut_long_words, quoted, received, shown
from certkit.tlscheck import new_context, reason_of
from certkit.verify_names import dates_above

if TYPE_CHECKING:
    from certkit.ca import CA, IssuedCert
    from certkit.serve_page import ServerFacts, Visit

# A client that connects and sends nothing would otherwise hold a thread forever.
IDLE_TIMEOUT = 30.0
# The names a self-issued server certificate covers: what a user types to reach a local server.
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")


def _load_problem(cert_chain: str | Path, key: str | Path) -> str | None:
    """What OpenSSL's "PEM lib" means here, when it is simple to say: a file without the block it needs."""
    try:
        chain, key_pem = pem_form(Path(cert_chain).read_bytes()), pem_form(Path(key).read_bytes(), key=True)
    except OSError:
        return None
    from certkit.material_kinds import not_pem

    if b"-----BEGIN CERTIFICATE-----" not in chain:
        said = not_pem(cert_chain, chain, "certificate") or "holds no certificate (PEM -----BEGIN CERTIFICATE-----)"
        return f"{cert_chain} {said}"
    if b"PRIVATE KEY-----" not in key_pem:
        said = not_pem(key, key_pem, "private key") or "holds no private key (PEM -----BEGIN PRIVATE KEY-----)"
        return f"{key} {said}"
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(chain)
    except ValueError:
        return f"{cert_chain} holds a certificate block that cannot be read (a damaged or truncated PEM file)"
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    from certkit.material import key_problem

    try:
        return key_problem(chain, cert_chain, load_pem_private_key(key_pem, None), key)
    except (ValueError, TypeError):  # an encrypted key is said apart; another: OpenSSL's words
        return None


def tls_context(cert_chain: str | Path, key: str | Path, client_ca_pem: bytes) -> ssl.SSLContext:
    """A server context presenting ``cert_chain``/``key`` that requires a client certificate
    issued by (a certificate in) ``client_ca_pem``."""
    ctx = new_context(ssl.PROTOCOL_TLS_SERVER)
    try:  # a callable password keeps OpenSSL from prompting on the terminal for an encrypted key; DER as PEM
        with pem_paths(cert_chain, key) as (chain_file, key_file):
            ctx.load_cert_chain(chain_file, key_file, password=_no_password)
    except _EncryptedKey:
        raise CertkitError(f"The server key {key} is encrypted; give an unencrypted key (mode 0600).") from None
    except (ssl.SSLError, OSError) as exc:
        raise CertkitError(f"Cannot use {cert_chain} with {key} as the server certificate: "
                           f"{_load_problem(cert_chain, key) or reason_of(exc)}.") from None
    refuse_server_chain(cert_chain, client_ca_pem)  # what OpenSSL would send, and what it would add
    try:
        ctx.load_verify_locations(cadata=client_ca_pem.decode("ascii"))
    except (ssl.SSLError, ValueError, UnicodeDecodeError) as exc:
        raise CertkitError(f"The client CA certificate cannot be loaded: {exc}.") from None
    ctx.verify_mode = ssl.CERT_REQUIRED
    # Trust ends at the given CA even when it is an intermediate: a client certificate
    # from a sibling intermediate under the same root is not "signed by the CA".
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    # No tickets (TLS 1.2 or 1.3): each connection's chain is verified by its own handshake, and the
    # inventory's verdict (serve.InventoryRevocations) is made on the chain OpenSSL verified.
    ctx.options |= ssl.OP_NO_TICKET
    ctx.num_tickets = 0
    return ctx


class _EncryptedKey(Exception):
    pass


def _no_password() -> bytes:
    raise _EncryptedKey


def self_issued_context(ca: "CA", client_ca_pem: bytes, names: Iterable[str] = LOCAL_NAMES,
                        days: int = 1) -> tuple[ssl.SSLContext, "IssuedCert"]:
    """Issue a short-lived server certificate for ``names`` from ``ca`` (through the issuing
    pipeline: recorded pending, valid once the context holds it) and build the context."""
    from certkit.issuing import begin, server_request

    with begin(ca, server_request(list(names), days=days)) as issued:
        context = issued_context(issued, client_ca_pem)
    return context, issued


def issued_context(issued: "IssuedCert", client_ca_pem: bytes) -> ssl.SSLContext:
    """The server context for a certificate held in memory: its key never touches a disk
    (:func:`certkit.sslcontext.in_memory`), so a kill leaves none behind."""
    from certkit.sslcontext import in_memory

    with in_memory(issued.fullchain_pem, issued.private_key_pem) as (chain, key):
        return tls_context(chain, key, client_ca_pem)


def peer_chain(request, der: bytes) -> list:
    """The client's chain, leaf first: as OpenSSL verified it on this connection, else (a resumed
    session keeps no verified chain) as the client sent it."""
    from cryptography import x509

    chain = list(getattr(request, "verified_chain", None) or [])
    if not chain and (sslobj := getattr(request, "_sslobj", None)) is not None:
        found = sslobj.get_verified_chain() or sslobj.get_unverified_chain() or []
        chain = [x509.load_der_x509_certificate(c.public_bytes(ssl._ssl.ENCODING_DER)) for c in found]
    leaf = x509.load_der_x509_certificate(der)
    return chain if chain and chain[0] == leaf else [leaf, *[c for c in chain if c != leaf]]


def _not_sent(request, chain: list) -> tuple[str, ...]:
    """The intermediate CAs of the verified ``chain`` the client did not send (serve trusts the ones its root's
    inventory records, so that a browser's leaf alone gets in): a real server given only the root refuses it."""
    from cryptography import x509

    from certkit.verify_names import cn_text

    sslobj = getattr(request, "_sslobj", None)
    try:
        sent = {x509.load_der_x509_certificate(c.public_bytes(ssl._ssl.ENCODING_DER))
                for c in (sslobj.get_unverified_chain() or [])} if sslobj is not None else None
    except (AttributeError, ValueError):
        return ()
    if sent is None:
        return ()
    return tuple(cn_text(c.subject) for c in chain[1:] if c not in sent)


def peer_label(address) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def stderr_log(message: str) -> None:
    """One log line: what a client sent (its names, its request line) escaped, a value over 500 characters cut."""
    sys.stderr.write(f"{dt.datetime.now():%H:%M:%S} {cut_long_words(shown(message))}\n")
    sys.stderr.flush()


class IdentityHandler(BaseHTTPRequestHandler):
    """Answers every GET with what the server saw of the client: text, JSON or the page, as asked.

    An authenticated client gets 200; in --optional mode a client without an
    accepted certificate gets 403 with the explanation.
    """

    server_version = "certkit-serve"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    server: "IdentityServer"

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, send_body: bool) -> None:
        from certkit import serve_page

        visit = self.server.visit_of(self.connection).through(self.headers)  # a proxy's request: said so
        kind = self._wanted_format()
        if kind == "json":
            body = json.dumps(serve_page.as_json(visit, self.server.facts), indent=2) + "\n"
            ctype = "application/json"
        elif kind == "html":
            body = serve_page.render_page(visit, self.server.facts, self.server.name_connected_to(self.connection))
            ctype = "text/html; charset=utf-8"
        else:
            body, ctype = serve_page.as_text(visit, self.server.facts), "text/plain; charset=utf-8"
        data = body.encode()
        self.send_response(200 if visit.authenticated else 403)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(data)

    def _wanted_format(self) -> str:
        asked = parse_qs(urlsplit(self.path).query).get("format", [""])[0].lower()
        return asked if asked in ("json", "html", "text") else answer_format(self.headers.get("Accept", ""))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """A request HTTP cannot take: one log line says why (:meth:`log_request`); its answer has a status line."""
        self.refusal = (message or HTTPStatus(code).phrase).split(" (")[0].lower()
        if code == HTTPStatus.REQUEST_URI_TOO_LONG:  # what came of it: its start, and that more followed
            self.requestline, self.refusal = f"{self.raw_requestline[:100].decode('latin-1')}...", (
                f"{self.refusal}: its request line is over {len(self.raw_requestline) - 1} bytes")
        self.request_version = "HTTP/1.0" if self.request_version == "HTTP/0.9" else self.request_version
        super().send_error(code, message, explain)

    def log_request(self, code="-", size="-") -> None:
        visit, cn = self.server.visit_of(self.connection), "-"
        if visit.client is not None:
            cn = shown(visit.client.common_name or "-") + ("" if visit.authenticated else " (refused)")
        why = f"; {self.refusal}" if getattr(self, "refusal", None) else ""
        self.server.log(f"{peer_label(self.client_address)} {received(self.requestline)} {code} client={cn}{why}")

    def log_error(self, format: str, *args) -> None:
        if format.startswith("Request timed out"):  # http.server's, with Python's words for a read that timed out
            self.server.log(f"closed {peer_label(self.client_address)}: nothing of its request for {IDLE_TIMEOUT:g} s")
        elif not format.startswith("code %d"):  # send_error's: its request's line says it (log_request)
            self.log_message(format, *args)

    def log_message(self, format: str, *args) -> None:
        self.server.log(f"{peer_label(self.client_address)} {received(format % args, quote=False)}")


class IdentityServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` over TLS with client certificates required (or, with an
    :class:`OptionalContext`, requested).

    Each accepted socket is wrapped without handshaking; the handshake runs in
    the worker thread (:meth:`finish_request`), where its failure becomes one
    log line instead of a traceback: "rejected" (by this server), or "refused
    by the client" when the client ended it with an alert.
    """

    daemon_threads = True  # a stuck client must not delay shutdown

    def __init__(self, address: tuple[str, int], context: "ssl.SSLContext | OptionalContext", *,
                 log: Callable[[str], None] = stderr_log,
                 handler: type[BaseHTTPRequestHandler] = IdentityHandler,
                 facts: "ServerFacts | None" = None) -> None:
        from certkit.serve_page import ServerFacts

        self.context = context
        self.log = log
        self.optional = isinstance(context, OptionalContext)
        self.facts = facts or ServerFacts(certificate=None, client_ca="the CA this server trusts")
        self.revocations: InventoryRevocations | None = None  # set by serve when the client CA has an inventory
        if ":" in address[0]:
            self.address_family, address = socket.AF_INET6, _scoped(address)
        super().__init__(address, handler)

    @property
    def url(self) -> str:
        host, port, *scope = self.server_address  # a link-local address's zone: as RFC 6874 writes it in a URL
        zone = f"%25{socket.if_indextoname(scope[1])}" if scope[1:] and scope[1] else ""
        return f"https://[{host}{zone}]:{port}/" if ":" in host else f"https://{host}:{port}/"

    def get_request(self):
        sock, address = self.socket.accept()
        if isinstance(self.context, ssl.SSLContext) and self.context.sni_callback is None:
            self.context.sni_callback = _record_sni  # ssl's server side keeps no server_hostname
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def visit_of(self, request) -> "Visit":
        """What :meth:`finish_request` concluded about this connection's client certificate."""
        from certkit.serve_page import Visit

        return getattr(request, "certkit_visit", None) or Visit(None, [], self.optional)

    @staticmethod
    def name_connected_to(request) -> str | None:
        """The name the client connected to, which it checked this server's certificate against: the
        TLS SNI name of the connection, else (RFC 6066 sends none for an IP address) the address it
        reached. Never the Host header, which a client sets to anything."""
        name = getattr(request, "certkit_sni", None)
        if name is None and (conn := getattr(request, "_conn", None)) is not None:  # --optional: pyOpenSSL's
            name = (conn.get_servername() or b"").decode("ascii", "replace") or None
        if name is None:
            try:
                name = getattr(request, "raw_socket", request).getsockname()[0]
            except OSError:
                return None
            name = name.removeprefix("::ffff:") if "." in name else name  # IPv4 on a dual-stack socket
        return name

    def finish_request(self, request, client_address) -> None:
        from certkit.serve_page import Visit
        from certkit.verify_names import cn_text

        peer = peer_label(client_address)
        try:
            _handshake(request, HANDSHAKE_TIMEOUT)
        except (ssl.SSLError, OSError) as exc:
            self.log(_handshake_failure(exc, peer, self.facts))
            if reason_of(exc) == "http request":  # sent to http://: an answer a browser shows, as nginx answers
                with contextlib.suppress(OSError):  # in plain HTTP: no TLS began
                    socket.socket.sendall(getattr(request, "raw_socket", request), plain_http_answer("certkit serve"))
            drain_rejected(request)
            return
        der = request.getpeercert(binary_form=True)
        identity, refused, failed, inventory, above, supplied = None, [], set(), None, (), ()
        if der is not None:
            try:
                identity = peer_identity(der, request.version())
            except Exception as exc:  # OpenSSL parsed it, so this is not expected; never a traceback
                self.log(f"rejected {peer}: it presented {damage_said(exc, 'client certificate', [der])}")
                return
            refused = list(getattr(request, "refused", []))
            failed = set(getattr(request, "failed", ()))
            if not refused:  # the CAs above it, as verified: the rule names the one that signed it, and its chain
                chain = peer_chain(request, der)
                above = tuple(cn_text(c.subject) for c in chain[1:])
                if self.revocations is not None and chain[-1] in self.revocations.trusted:  # trust stopped there
                    above += (cn_text(self.revocations.ca_cert.subject),)
                    supplied = _not_sent(request, chain)
            if not refused and self.revocations is not None:
                inventory = self.revocations.check(chain)
                refused += inventory.problems
                failed |= {"unrecorded"} if inventory.unrecorded else {"revoked"} if inventory.problems else set()
        request.certkit_visit = Visit(identity, refused, self.optional, frozenset(failed), inventory,
                                      dict(getattr(request, "causes", {})) if refused else {}, above, supplied)
        if identity is None:  # only possible with --optional
            self.log(f"no certificate {peer}: the client sent none; a request gets the page that says so "
                     f"({request.version()})")  # at the handshake: the request line, if one comes, follows
        elif refused:
            self.log(f"refused {peer}: client {quoted(identity.common_name or identity.subject)} serial "
                     f"{identity.serial}: {shown('; '.join(refused))}; a request gets the page that says why")
        else:
            self.log(f"accepted {peer}: client {quoted(identity.common_name or identity.subject)} "
                     f"serial {identity.serial} ({', '.join(identity.eku) or 'no EKU'}, {identity.tls_version})"
                     + (f"; it did not send {', '.join(supplied)}, which this server supplied" if supplied else ""))
        request.settimeout(IDLE_TIMEOUT)
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        self.log(connection_failure(sys.exc_info()[1], peer_label(client_address)))


def _scoped(address: tuple[str, int]) -> tuple:
    """``(fe80::1%eth0, port)`` (or a URL's ``%25eth0``) as bind() takes it, the zone as an interface index (the
    resolver takes zones for link-local addresses only); OSError: no such interface. Unchanged without a zone."""
    host, _, written = address[0].partition("%")
    return address if not written else (host, address[1], 0, zone_index(unescaped_zone(written)))


def _record_sni(sock, server_name: str | None, context) -> None:
    """``sni_callback``: keep on the connection the name the client asked for (None without SNI)."""
    sock.certkit_sni = server_name


def chain_dates(chain_pem: bytes):
    """For :class:`ServerFacts`: the CAs above this server's certificate, in the chain it sends (``--cert``), that
    are out of their dates, named (:func:`certkit.verify_names.dates_above`), read anew at each call."""
    from cryptography import x509

    leaf, *cas = x509.load_pem_x509_certificates(chain_pem)
    return lambda: dates_above(leaf, cas)


def serve_until_stopped(server: IdentityServer, stop_signals: Iterable[int] | None = None,
                        received: list[int] | None = None) -> int | None:
    """Run ``server`` until SIGINT/SIGTERM/SIGHUP (main thread only), then close it; return the
    number of the signal that stopped it (None if it stopped otherwise), for the exit status.
    ``received``: the caller's record of stop signals, which its own handler (in place until these are
    installed) writes too, so that a signal landing in between is known by its number.

    The signal handler raises KeyboardInterrupt in the main thread, which
    leaves ``serve_forever``; calling ``shutdown()`` from the handler would
    deadlock, since it waits for the very loop the handler interrupted.
    """
    import signal

    received = [] if received is None else received

    def stop(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    installed = {}
    from certkit.errors import stop_signals as terminating

    try:  # a signal landing while the handlers are installed is one of this stop's (received) too
        for sig in stop_signals if stop_signals is not None else (signal.SIGINT, *terminating()):
            installed[sig] = signal.signal(sig, stop)
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        return received[0] if received else signal.SIGINT  # (Python's own SIGINT handler: Ctrl-C)
    finally:
        for sig, previous in installed.items():
            signal.signal(sig, previous)
        server.server_close()
    return None
