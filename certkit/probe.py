"""Reading a live TLS server: what it presents, what it asks of clients, and whether a given
client certificate would get in.

:func:`probe` makes real connections to ``https://HOST[:PORT]/PATH``:

1. without a client certificate: the server's chain as sent, verified by
   OpenSSL against the CA given (or the system trust store) and read by
   certkit (usage, names, expiry); whether the server sent a
   CertificateRequest, and the CA names in it; then one HTTP request, to see
   what the server does with a client that has no certificate;
2. with a client certificate (``client=``): the same handshake presenting it,
   then one HTTP request and its answer. In TLS 1.3 the client's certificate
   travels after the server has finished its part of the handshake, so a
   refusal arrives only as an alert on the client's first read: the verdict
   "accepted" is given only after a full application-data round trip.

Python's ``ssl`` cannot show a client the CertificateRequest's CA names, so the connections are pyOpenSSL's
(:mod:`certkit.pyossl`). Every string from a certificate or the server is escaped (:func:`certkit.text.shown`)."""

from __future__ import annotations

import datetime as dt
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from certkit.anchors import missing_issuer, pinned, recorded_cas, withdrawn
from certkit.probe_alerts import refusal
from certkit.probe_client import ClientFiles, client_description, client_key, foreign  # noqa: F401
from certkit.probe_http import ProbeError, Target, not_tls, parse_url, unreadable_chain  # noqa: F401
from certkit.probe_judge import _judge_server
from certkit.probe_report import PINNED_IN, render  # noqa: F401 (render: for cli/inspect)
from certkit.pyossl import (
    CERT_REQUEST_STATE,
    VerifyErrors,
    allow_post_handshake_auth,
    openssl_reason,
    record_staple,
    record_verify_error,
    set_kernel_timeout,
    without_key_log,
)
from certkit.sent_chain import STRANGER, unchained_places
from certkit.text import shown
from certkit.verify_names import dates_above

DEFAULT_TIMEOUT = 10.0
_WROTE_CERT, _WROTE_VERIFY = b"SSLv3/TLS write client certificate", b"SSLv3/TLS write certificate verify"
# OpenSSL's reason when the server speaks no version probe offers (TLS 1.2 and 1.3): its alert, or (an old server
# that answers with its own older version) the client's own error
_OLD_TLS_REASON = re.compile(r"alert protocol version$|^unsupported protocol$")
_OLD_TLS = (": the server speaks neither TLS 1.2 nor TLS 1.3, which probe offers, only an older version (TLS 1.0 or "
            "1.1, deprecated by RFC 8996), which Python's ssl refuses too at its defaults: enable TLS 1.2 or 1.3 on "
            "the server")
_NOT_TLS = "wrong version number"  # OpenSSL's reason when the answer to its ClientHello is no TLS record
_ALERT = re.compile(r"\balert\b")  # in OpenSSL's reason for an alert received: sslv3, tlsv1, tlsv13 alert ...


def _no_handshake(target: Target, why: str, timeout: float) -> ProbeError:
    """A handshake that ended before the server's certificate came, with what OpenSSL's words mean: a server of
    an older TLS version only; the alert ``unrecognized name`` (nginx ssl_reject_handshake, HAProxy strict-sni);
    an answer that is not TLS (plain HTTP, another protocol)."""
    meant = _OLD_TLS if _OLD_TLS_REASON.search(why) else not_tls(target, timeout) if why == _NOT_TLS else ""
    if why.endswith("unrecognized name"):
        sent = f"none, as for any address such as {target.host}: TLS carries host names only" if target.is_ip \
            else target.host
        meant = (f": the server serves no certificate for the server name the client sent (SNI; probe sent {sent}), "
                 "and refuses the handshake: probe it by a name it serves")
    return ProbeError(f"{shown(target.label)} did not complete a TLS handshake: {why}{meant}.")


@dataclass
class Attempt:
    """One connection: what happened in the handshake and to one HTTP request."""

    presented: str | None  # the client certificate's subject, or None (none given, or none sent)
    handshake: str  # "ok" or OpenSSL's reason
    tls_version: str | None = None
    http_status: int | None = None
    http_reason: str | None = None
    http_error: str | None = None  # the TLS alert or error on the first read, if any
    body_start: str = ""
    # A certificate given, but OpenSSL sent an empty Certificate message (no CertificateVerify followed): no
    # signature algorithm of the server's CertificateRequest fits its key (an ECDSA key, an RSA-only list)
    not_sent: bool = False

    @property
    def round_trip(self) -> bool:
        return self.handshake == "ok" and self.http_status is not None

    @property
    def read_alert(self) -> bool:
        """The server answered the request with a TLS alert (OpenSSL: ``tlsv13 alert certificate required``):
        a refusal, where a timeout or the connection's end after the handshake is none."""
        return self.http_error is not None and _ALERT.search(self.http_error) is not None

    def to_dict(self) -> dict:
        return {"presented": self.presented, "handshake": self.handshake, "tls_version": self.tls_version,
                "http_status": self.http_status, "http_reason": self.http_reason, "read_error": self.http_error,
                "not_sent": self.not_sent}


@dataclass
class ProbeResult:
    url: str
    target: Target
    trust: str  # where the trust anchors came from, in words
    chain: list[dict] = field(default_factory=list)  # certkit inspect's description of each certificate sent
    tls_version: str | None = None
    cipher: str | None = None
    verified: bool = False  # OpenSSL: the chain verifies against the trust anchors, for a TLS server
    verify_errors: list[str] = field(default_factory=list)  # OpenSSL's words
    out_of_date: str | None = None  # why the chain is out of its dates: the server's certificate, or a CA named
    reasons: list[str] = field(default_factory=list)  # certkit's words (when the anchors are known)
    server_auth: bool = False
    # A CA certificate as the server's own, which OpenSSL verified for a TLS server (it does not look at the
    # CA bit of the certificate it verifies; so curl and Python's ssl take it), but Firefox refuses.
    ca_as_server: bool = False
    # The OCSP response the server stapled, in words, and why Firefox refuses the server for it (probe_staple)
    staple: str | None = None
    staple_problem: str | None = None
    name_matches: bool = False
    # probe's --ca-file holds the server's own certificate (anchors.pinned): trusted as itself, no CA checked
    pinned: bool = False
    requests_client_cert: bool = False
    # ... only after the handshake, on reading the request (TLS 1.3 post-handshake authentication: Apache httpd's
    # SSLVerifyClient require in a <Location>); a client that does not allow it is never asked
    requested_after_handshake: bool = False
    client_ca_names: list[str] = field(default_factory=list)
    without_cert: Attempt | None = None
    with_cert: Attempt | None = None
    client_subject: str | None = None
    client_usage: str | None = None
    client_issuer: str | None = None
    client_eku: list[str] | None = None
    client_key_type: str | None = None  # certkit inspect's key_type of the given certificate (ecdsa-p256)
    # Why the given certificate is no TLS client certificate (certkit verify's purpose_problem), or None
    client_purpose: str | None = None
    client_openssl_purpose: str | None = None  # what OpenSSL's purpose check says of it (a CA certificate too)
    # "valid", "expired" or "not yet valid" when probed, and its dates (certkit inspect's words)
    client_validity: dict = field(default_factory=dict)
    client_chain_issuers: list[str] = field(default_factory=list)  # the issuer of each certificate in the client's file
    # The CA the client's file stops short of, and whether it is known to be an intermediate (anchors.missing_issuer)
    client_missing_issuer: str | None = None
    client_missing_is_intermediate: bool | None = None
    # That the client's chain leads to no CA of --ca-dir/--ca-file, by signature (probe_client.foreign), or None
    client_foreign: str | None = None
    # What the inventory of --ca-dir records against the server's chain and the client's (anchors.withdrawn)
    withdrawn: list[str] = field(default_factory=list)
    client_withdrawn: list[str] = field(default_factory=list)
    # The certificates the server sends that are not of its chain (sent_chain.unchained_places), by place: someone
    # else's, and CAs (a root) above intermediates it does not send (in words, and the kind: shown so, or maybe)
    strangers: dict[int, str] = field(default_factory=dict)
    above_gap: dict[int, tuple[str, str]] = field(default_factory=dict)
    final_dot: bool = False  # the URL's host ends with a dot, which Python and OpenSSL clients keep
    partial_anchor: str | None = None  # a --ca-file of CAs but no root: curl takes it, OpenSSL, Node do not

    @property
    def server_ok(self) -> bool:  # what OpenSSL verified, unless certkit verify knows more (a key no peer checks)
        return (self.verified and self.server_auth and self.name_matches and not self.withdrawn and not self.reasons
                and not self.staple_problem)

    @property
    def client_accepted(self) -> bool | None:
        """Would the given client certificate be accepted? None when none was given, when the server never
        asked for one, when it answered an HTTP error (4xx, 5xx) that is not a known refusal, and when it
        gave no HTTP answer after the handshake (a timeout, the end of the connection, another protocol):
        then nobody can say."""
        if self.with_cert is None or not self.requests_client_cert or self.with_cert.not_sent:
            return None
        if refusal(self.with_cert):
            return False
        if not self.with_cert.round_trip:  # the handshake took it, but no HTTP answer tells (see refusal)
            return None
        return None if self.with_cert.http_status >= 400 else True

    def to_dict(self) -> dict:
        from certkit.probe_report import as_dict

        return as_dict(self)


# --- the connections ----------------------------------------------------------------
def _context(trust_pem: bytes | None, client: ClientFiles | None):
    from cryptography import x509
    from OpenSSL import SSL, crypto

    ctx = without_key_log(SSL.Context(SSL.TLS_CLIENT_METHOD))
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    if trust_pem is None:
        ctx.set_default_verify_paths()
    else:
        store = ctx.get_cert_store()
        for cert in x509.load_pem_x509_certificates(trust_pem):
            store.add_cert(crypto.X509.from_cryptography(cert))
        store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)  # as curl --cacert: any CA of a --ca-file is an anchor
    ctx.set_verify(SSL.VERIFY_PEER, record_verify_error)  # read everything; judge afterwards
    ctx.set_ocsp_client_callback(record_staple)  # what the server staples, for a Must-Staple certificate
    allow_post_handshake_auth(ctx)  # a server may ask after the handshake, for the path requested (Apache)
    if client is not None:
        from certkit.der_input import pem_paths

        key = client_key(client.key)
        try:
            with pem_paths(client.cert) as (chain_file,):  # a DER certificate as PEM: OpenSSL reads PEM only
                ctx.use_certificate_chain_file(chain_file)
            ctx.use_privatekey(key)
            ctx.check_privatekey()
        except (SSL.Error, TypeError) as exc:  # TypeError: a key OpenSSL cannot sign a handshake with (X25519)
            reason = openssl_reason(exc)
            if "key values mismatch" in reason or "no certificate assigned" in reason:  # a key of another type
                from certkit.der_input import read_pem_form
                from certkit.material import key_problem

                chain = read_pem_form(client.cert, "certificate")
                reason = key_problem(chain, client.cert, key, client.key) or reason
            raise ProbeError(f"Cannot use {shown(client.cert)} with {shown(client.key)} as the client certificate: "
                             f"{reason}.") from None
    return ctx


@dataclass
class _Seen:
    attempt: Attempt
    chain: list = field(default_factory=list)  # cryptography certificates, as sent
    errors: VerifyErrors = field(default_factory=VerifyErrors)  # (code, depth), and the certificate at each depth
    requested: bool = False
    requested_after: bool = False  # asked for only after the handshake (TLS 1.3 post-handshake authentication)
    wrote: set = field(default_factory=set)  # the handshake messages the client wrote (OpenSSL's state strings)
    ca_names: list[str] = field(default_factory=list)
    cipher: str | None = None


def _connect(target: Target, ctx, timeout: float, presented: str | None) -> _Seen:
    from OpenSSL import SSL

    from certkit.pyossl import deadline, interrupt_after, name_text

    try:
        sock = target.connect(timeout)
    except (OSError, UnicodeError) as exc:  # UnicodeError: the resolver's codec, for an IPv6 zone like a..b
        why = "a part of its name is empty or over 63 bytes" if isinstance(exc, UnicodeError) else exc.strerror or exc
        raise ProbeError(f"Cannot connect to {shown(target.label)}: {why}.") from None
    seen = _Seen(Attempt(presented, "ok"))
    try:
        set_kernel_timeout(sock, timeout)
        conn = SSL.Connection(ctx, sock)
        conn.set_app_data(seen.errors)
        conn.request_ocsp()  # status_request, as Firefox sends it: a server that can staple does so then
        if not target.is_ip:
            conn.set_tlsext_host_name(target.host.encode("ascii"))

        done = []  # the handshake has ended: a CertificateRequest now is a post-handshake one

        def on_state(c, where, ret) -> None:
            state = c.get_state_string()
            if state == CERT_REQUEST_STATE:
                seen.requested, seen.requested_after = True, seen.requested_after or bool(done)
            elif state.startswith(b"SSLv3/TLS write "):
                seen.wrote.add(state)

        conn.set_info_callback(on_state)
        conn.set_connect_state()
        # A Ctrl-C inside OpenSSL's callbacks: "Interrupted.", not a timeout. The handshake ends by the deadline,
        # however slowly the server sends it.
        with interrupt_after(sock), deadline(sock, timeout) as late:
            try:
                conn.do_handshake()
            except (SSL.WantReadError, SSL.WantWriteError):
                seen.attempt.handshake = f"no answer within {timeout:g} s"
            except SSL.SysCallError as exc:
                seen.attempt.handshake = f"the server closed the connection ({exc.args[-1]})"
            except SSL.Error as exc:
                seen.attempt.handshake = openssl_reason(exc)
            if late.is_set():  # the socket was shut under OpenSSL: its error says nothing of the server
                seen.attempt.handshake = f"no answer within {timeout:g} s"
        done.append(True)
        seen.chain = conn.get_peer_cert_chain(as_cryptography=True) or []
        # Known once the ServerHello is in, even when the handshake fails later (TLS 1.2 refusals of a client
        # without a certificate): the version and the cipher suite the server chose.
        seen.attempt.tls_version = conn.get_protocol_version_name() if seen.chain else None
        seen.cipher = conn.get_cipher_name() if seen.chain else None
        if seen.attempt.handshake == "ok":
            _converse(conn, sock, target, seen, timeout)
        seen.ca_names = [name_text(n) for n in conn.get_client_ca_list()]  # a post-handshake request's too
        if presented is not None and _WROTE_CERT in seen.wrote and _WROTE_VERIFY not in seen.wrote:
            seen.attempt.presented, seen.attempt.not_sent = None, True  # an empty Certificate message
    finally:
        sock.close()
    return seen


def _converse(conn, sock: socket.socket, target: Target, seen: _Seen, timeout: float) -> None:
    """After the handshake: one HTTP request and the head of its answer, within ``timeout`` in all (a server
    that sends its answer a byte now and then is cut off then, as one that says nothing is)."""
    from certkit.probe_http import await_refusal, request
    from certkit.pyossl import deadline

    with deadline(sock, timeout) as late:
        first, refused = b"", None
        if seen.requested and seen.attempt.tls_version == "TLSv1.3":
            first, refused = await_refusal(conn, sock, timeout)
        request(conn, target, seen.attempt, first, refused)
    if late.is_set() and seen.attempt.http_status is None:  # the end of the connection was the deadline's
        seen.attempt.http_error = "no answer to the HTTP request in time"


def probe(url: str, *, ca_file: Path | None = None, ca_dir: Path | None = None,
          client: ClientFiles | None = None, timeout: float = DEFAULT_TIMEOUT,
          now: dt.datetime | None = None) -> ProbeResult:
    """Connect to ``url`` (and again with ``client``, if given) and report what was seen."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from certkit.inspect import describe_certificate
    from certkit.verify_purpose import openssl_purpose_problem, purpose_problem

    target = parse_url(url)
    roots, extra, trust_pem = [], [], None
    if ca_file is not None or ca_dir is not None:
        from certkit.anchors import probe_trust

        roots, extra, trust = probe_trust(ca_file, ca_dir)
        trust_pem = b"".join(c.public_bytes(Encoding.PEM) for c in roots)
    else:
        trust = "the system trust store"
    result = ProbeResult(url, target, trust, final_dot=(urlsplit(url.strip()).hostname or "").endswith("."))
    if client is not None:
        info, certs = client_description(client, now)
        result.client_chain_issuers = list(dict.fromkeys(c.issuer.rfc4514_string() for c in certs))
        result.client_missing_issuer, result.client_missing_is_intermediate = missing_issuer(
            certs, roots + extra, beside=client.cert.parent)
        at = now or dt.datetime.now(dt.UTC)  # the chain in date: an "expired" alert is then of no certificate
        result.client_validity = {k: info[k] for k in ("status", "not_before", "not_after")} | {
            "chain_in_date": all(c.not_valid_before_utc <= at <= c.not_valid_after_utc for c in certs),
            "ca_dates": dates_above(certs[0], [*certs[1:], *roots, *extra], at)}  # the CAs above it out of date
        result.client_subject, result.client_usage = info["subject"], info["usable_for"]
        result.client_issuer, result.client_eku = info["issuer"], info["extended_key_usage"]
        result.client_key_type = info["key_type"]
        result.client_purpose = purpose_problem(certs[0], "client")
        result.client_openssl_purpose = openssl_purpose_problem(certs[0], "client")
        result.client_withdrawn = withdrawn(ca_dir, certs, fail_closed=False) if ca_dir is not None else []
        where = f"--ca-dir {ca_dir}" if ca_dir is not None else f"--ca-file {ca_file}"
        result.client_foreign = foreign(certs, roots, extra, where) if roots else None

    # The client's files are read before any connection: a key certkit cannot use stops the probe at once.
    client_ctx = _context(trust_pem, client) if client is not None else None
    seen = _connect(target, _context(trust_pem, None), timeout, None)
    if not seen.chain:
        raise _no_handshake(target, seen.attempt.handshake, timeout)
    if ca_file is not None and pinned(ca_file, roots, seen.chain):
        result.pinned, result.trust = True, f"{PINNED_IN}--ca-file {ca_file}"
    elif ca_file is not None:
        from certkit.signatures import self_signed
        from certkit.vocabulary import is_ca
        result.partial_anchor = None if any(self_signed(r) for r in roots if is_ca(r)) else str(ca_file)
    result.without_cert = seen.attempt
    result.tls_version, result.cipher = seen.attempt.tls_version, seen.cipher
    result.chain = [describe_certificate(c, now=now) for c in unreadable_chain(target.label, seen.chain)]
    # The CAs known (the trust's, and the intermediates a CA directory's inventory records) show a CA sent to be
    # above an intermediate the server leaves out
    recorded = recorded_cas(ca_dir) if ca_dir is not None else None
    unchained = unchained_places(seen.chain, roots + extra + (recorded.valid if recorded is not None else []))
    result.strangers = {place: words for place, (words, kind) in unchained.items() if kind == STRANGER}
    result.above_gap = {place: found for place, found in unchained.items() if found[1] != STRANGER}
    _judge_server(result, seen, roots, ca_dir, now, extra)
    result.requests_client_cert, result.requested_after_handshake = seen.requested, seen.requested_after
    result.client_ca_names = seen.ca_names

    if client is not None:
        result.with_cert = _connect(target, client_ctx, timeout, result.client_subject).attempt
    return result
