"""``serve --optional``'s TLS layer: pyOpenSSL, which can finish a handshake with a refused certificate.

Python's ``ssl`` has no verify callback, so a server built on it can only
require a client certificate or not ask for one. :class:`OptionalContext`
asks for one, lets OpenSSL verify it as the default mode would (against the
client CA, for the ``sslclient`` purpose), records OpenSSL's errors instead of
ending the handshake, and gives the server a socket that behaves like an
``ssl.SSLSocket`` for ``http.server`` (:class:`_OptionalTLSSocket`). Nobody is
authenticated by a certificate OpenSSL refused: the page says why instead.
"""

from __future__ import annotations

import io
import re
import socket

from certkit.errors import CertkitError
from certkit.pyossl import openssl_reason, record_verify_error, set_kernel_timeout, without_key_log, x509_error
from certkit.text import shown


class OptionalContext:
    """A server TLS context (pyOpenSSL) that asks for a client certificate without requiring
    one, and completes the handshake even when the certificate fails verification.

    OpenSSL still verifies what the client presents, against ``client_ca_pem``
    and for the purpose ``sslclient`` (as for the default mode); a verify
    callback records its errors instead of ending the handshake. The server
    then knows the certificate, OpenSSL's verdict, and, in words, why
    (:func:`certkit.verify.verify_certificate`). The CertificateRequest names
    the client CA, as nginx's does, so browsers offer only its certificates.
    """

    def __init__(self, chain_pem: bytes, key_pem: bytes, client_ca_pem: bytes) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
        from OpenSSL import SSL, crypto

        try:
            chain = x509.load_pem_x509_certificates(chain_pem)
            key = load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise CertkitError(f"The server certificate or key cannot be used: {exc}.") from None
        self.client_cas = x509.load_pem_x509_certificates(client_ca_pem)
        ctx = without_key_log(SSL.Context(SSL.TLS_SERVER_METHOD))
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        ctx.use_certificate(chain[0])
        for extra in chain[1:]:
            ctx.add_extra_chain_cert(extra)
        ctx.use_privatekey(key)
        try:
            ctx.check_privatekey()
        except SSL.Error:
            raise CertkitError("The server key does not match the server certificate (key values mismatch).") \
                from None
        store = ctx.get_cert_store()
        for ca in self.client_cas:
            store.add_cert(crypto.X509.from_cryptography(ca))  # the store takes only its own type
        # As the default mode: trust ends at the given CA even when it is an intermediate.
        store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)
        for ca in self.client_cas:
            ctx.add_client_ca(ca)
        ctx.set_verify(SSL.VERIFY_PEER, record_verify_error)  # not FAIL_IF_NO_PEER_CERT: optional
        # No session resumption, TLS 1.2 or 1.3: OpenSSL does not call the verify callback on a resumed
        # session, so a refused certificate would come back as if accepted. No tickets, no session cache
        # (TLS 1.3's stateful tickets live in it: OpenSSL still sends two, which pyOpenSSL cannot stop, naming
        # sessions nobody keeps); the session id context still lets OpenSSL answer a
        # client that offers a session (with a full handshake) instead of failing.
        ctx.set_options(SSL.OP_NO_TICKET)
        ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        ctx.set_session_id(b"certkit-serve")
        self._ctx = ctx
        self._judge = _client_store(self.client_cas)
        # The intermediates the client CA's inventory records it signed (anchors.recorded_cas), read at each
        # refusal; serve sets it when the client CA is the CA directory's own (its inventory is at hand).
        self.recorded = lambda: None
        # Why a chain that stops at an intermediate CA the client did not send is dead, when the client CA's
        # inventory records that CA as withdrawn (InventoryRevocations.withdrawn_issuer); set with ``recorded``.
        self.withdrawn_issuer = lambda chain: None

    def wrap_socket(self, sock: socket.socket, *, server_side: bool = True,
                    do_handshake_on_connect: bool = False) -> "_OptionalTLSSocket":
        return _OptionalTLSSocket(self, sock)

    def judge(self, leaf, sent: list) -> tuple[list[tuple[int, int]], list]:
        """OpenSSL's verdict on a client chain, made anew for this connection whatever the handshake did
        (a resumed session skips the verify callback): the errors ``(code, depth)``, none when it is
        accepted, and the verified chain (leaf to the client CA), empty when it is refused."""
        from OpenSSL import crypto

        as_x509 = crypto.X509.from_cryptography
        context = crypto.X509StoreContext(self._judge, as_x509(leaf), [as_x509(c) for c in sent])
        try:
            return [], [c.to_cryptography() for c in context.get_verified_chain()]
        except crypto.X509StoreContextError as exc:
            code, depth = exc.errors[0], exc.errors[1]
            return [(int(code), int(depth))], []

    def words_for(self, leaf_der: bytes, chain_der: list[bytes], errors: list[tuple[int, int]],
                  withdrawn: str | None = None) -> list[str]:
        """Why OpenSSL refused this client certificate, in words: certkit's reading of it
        (:mod:`certkit.verify`) followed by OpenSSL's own reason. ``withdrawn``: the words for a chain that
        stops at an intermediate CA of the client CA that it withdrew (it is not "not issued by this CA")."""
        from cryptography import x509

        from certkit.verify import verify_certificate

        openssl = "; ".join(dict.fromkeys(x509_error(code, depth) for code, depth in errors))
        try:
            leaf = x509.load_der_x509_certificate(leaf_der)
            chain = [x509.load_der_x509_certificate(d) for d in chain_der]
            verdict = verify_certificate(leaf, purpose="client", roots=self.client_cas, intermediates=chain,
                                         recorded=self.recorded(), sender="client")
            # certkit verify's advice on --untrusted is for its command line: a client sends the intermediate.
            words = [_client_advice(r, chain) for r in verdict.reasons]
            if withdrawn is not None:
                words = [withdrawn if w.startswith("not issued by this CA") else w for w in words]
            namesake = next((ca for ca in self.client_cas if ca.subject == leaf.issuer), None)
            if namesake is not None and any(w.startswith("not issued by this CA") for w in words):
                # "issued by X, and the trusted CA is X" would puzzle anyone: say what happened.
                who = shown(leaf.issuer.rfc4514_string())
                words = [f"it names {who} as its issuer, but that CA's key did not sign it: it comes from "
                         "another CA of the same name (was the CA created anew?)" if w.startswith(
                             "not issued by this CA") else w for w in words]
        except Exception:  # a certificate our reading cannot follow: OpenSSL's words alone
            words = []
        return [*words, f"OpenSSL: {openssl}"]


def _client_store(client_cas: list):
    """The store :meth:`OptionalContext.judge` verifies against: the client CAs, trust ending at them
    (as the handshake's), for OpenSSL's ``sslclient`` purpose (as a server's handshake checks)."""
    from OpenSSL import crypto
    from OpenSSL._util import lib

    store = crypto.X509Store()
    for ca in client_cas:
        store.add_cert(crypto.X509.from_cryptography(ca))
    store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)
    if not lib.X509_STORE_set_purpose(store._store, lib.X509_PURPOSE_SSL_CLIENT):
        raise CertkitError("OpenSSL cannot set the sslclient purpose on the client CA store.")
    return store


def _client_advice(reason: str, sent: list) -> str:
    """certkit verify's advice on --untrusted is for its command line: a client sends the intermediate.
    When it sent one already, its chain leads elsewhere, and that is what to say."""
    match = re.search(r" \(if (.*) is an intermediate CA under it, verify fullchain\.pem or pass its certificate "
                      r"with --untrusted\)$", reason)
    if match is None:
        return reason
    if sent:
        top = sent[-1]
        where = shown(top.issuer.rfc4514_string())
        return reason[:match.start()] + (f" (the client sent its chain, {len(sent)} CA certificate(s) up to "
                                         f"{shown(top.subject.rfc4514_string())}, which leads to {where}, "
                                         "another CA than the trusted one)")
    return reason[:match.start()] + (f" (if {match.group(1)} is an intermediate CA under it, the client must send "
                                     "its certificate too: curl --cert fullchain.pem, or the bundle.p12 that holds "
                                     "it)")


# OpenSSL's verification errors that mean "out of its validity period" and "not for TLS clients";
# any other error is the chain's (not signed by the trusted CA, or a CA above it unfit to sign).
_TIME_ERRORS, _PURPOSE_ERRORS = (9, 10), (26,)


def failed_rules(leaf, errors: list[tuple[int, int]]) -> frozenset[str]:
    """Which line of the page's rule a refused certificate breaks ("ca", "time", "purpose"), from
    facts: OpenSSL's error codes and the certificate's own dates and purpose (:func:`purpose_problem`:
    a CA, its extendedKeyUsage, nsCertType or keyUsage)."""
    import datetime as dt

    from certkit.verify_purpose import purpose_problem

    now = dt.datetime.now(dt.UTC)
    codes = {code for code, _ in errors}
    failed = set()
    if codes & set(_TIME_ERRORS) or not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        failed.add("time")
    if codes & set(_PURPOSE_ERRORS) or purpose_problem(leaf, "client") is not None:
        failed.add("purpose")
    if codes - set(_TIME_ERRORS) - set(_PURPOSE_ERRORS):
        failed.add("ca")
    return frozenset(failed)


def rule_causes(leaf, sent: list, client_cas: list, recorded) -> dict[str, str]:
    """How the "time", "purpose" and "ca" lines of the rule fail, in the words certkit verify uses for the same
    facts: a CA above the certificate out of its dates (itself in its dates), named; the certificate's purpose
    (:func:`purpose_problem`) or a CA's above it (:func:`ca_purpose_problem`), and a
    chain that stops at an intermediate CA the client CA's inventory records (``recorded``) but the client
    did not send. A line without a known cause has no entry (the page then says what it can)."""
    import datetime as dt

    from certkit.verify_names import cn_text, dates_above
    from certkit.verify_purpose import ca_purpose_problem, purpose_problem

    causes, now = {}, dt.datetime.now(dt.UTC)
    if leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc and (dated := dates_above(leaf, [*sent,
                                                                                                    *client_cas])):
        causes["time"] = dated[0]  # the certificate is in its dates: a CA above it is not
    if (purpose := purpose_problem(leaf, "client") or ca_purpose_problem([leaf, *sent, *client_cas], "client")):
        causes["purpose"] = purpose
    top = sent[-1] if sent else leaf
    if recorded is not None and any(ca.subject == top.issuer for ca in recorded.valid) \
            and not any(ca.subject == top.issuer for ca in client_cas):
        causes["ca"] = (f"its chain stops at {cn_text(top.issuer)}, an intermediate CA of that CA (its inventory "
                        "records it), whose certificate the client did not send")
    return causes


class _OptionalTLSSocket:
    """The part of ``ssl.SSLSocket`` that :class:`IdentityServer` and ``http.server`` use,
    over a pyOpenSSL connection on a blocking socket with kernel timeouts
    (:func:`certkit.pyossl.set_kernel_timeout`)."""

    def __init__(self, context: OptionalContext, sock: socket.socket) -> None:
        from OpenSSL import SSL

        self.raw_socket = sock
        self.context = context
        self.refused: list[str] = []
        self.failed: frozenset[str] = frozenset()  # the rule's lines the refused certificate breaks
        self.causes: dict[str, str] = {}  # how those lines fail, in words, where that is known (rule_causes)
        self.verified_chain: list = []  # leaf to the client CA, when accepted
        self._errors: list[tuple[int, int]] = []
        sock.settimeout(None)
        self._conn = SSL.Connection(context._ctx, sock)
        self._conn.set_app_data(self._errors)
        self._conn.set_accept_state()

    def settimeout(self, seconds: float | None) -> None:
        set_kernel_timeout(self.raw_socket, seconds)

    def do_handshake(self) -> None:
        from OpenSSL import SSL

        try:
            self._conn.do_handshake()
        except (SSL.WantReadError, SSL.WantWriteError):
            raise TimeoutError("timed out") from None
        except SSL.SysCallError as exc:
            raise ConnectionResetError(f"unexpected eof ({exc.args[-1]})") from None
        except SSL.Error as exc:
            raise OSError(openssl_reason(exc)) from None
        leaf = self._conn.get_peer_certificate(as_cryptography=True)
        if leaf is None:
            return
        from cryptography.hazmat.primitives.serialization import Encoding

        sent = [c for c in self._conn.get_peer_cert_chain(as_cryptography=True) or [] if c != leaf]
        # The verdict is made here, on every connection: the verify callback's errors count, but their
        # absence does not (it is not called on a resumed session), so the chain is judged anew.
        judged, self.verified_chain = self.context.judge(leaf, sent)
        errors = list(dict.fromkeys([*self._errors, *judged]))
        if errors:
            self.verified_chain = []
            self.failed = failed_rules(leaf, errors)
            self.causes = rule_causes(leaf, sent, self.context.client_cas, self.context.recorded())
            withdrawn = self.context.withdrawn_issuer([leaf, *sent]) if "ca" in self.failed else None
            if withdrawn is not None:
                self.causes["ca"] = withdrawn
            self.refused = self.context.words_for(
                leaf.public_bytes(Encoding.DER), [c.public_bytes(Encoding.DER) for c in sent], errors, withdrawn)

    def getpeercert(self, binary_form: bool = False):
        from cryptography.hazmat.primitives.serialization import Encoding

        cert = self._conn.get_peer_certificate(as_cryptography=True)
        return cert.public_bytes(Encoding.DER) if cert is not None else None

    def version(self) -> str | None:
        return self._conn.get_protocol_version_name()

    def makefile(self, mode: str = "rb", buffering: int = -1):
        import io

        return io.BufferedReader(_TLSReader(self._conn), io.DEFAULT_BUFFER_SIZE if buffering in (-1, 0, None)
                                 else buffering)

    def sendall(self, data) -> None:
        from OpenSSL import SSL

        try:
            self._conn.sendall(bytes(data))
        except (SSL.WantReadError, SSL.WantWriteError):
            raise TimeoutError("timed out") from None
        except SSL.Error as exc:  # no reason at all ([]): the client went away, as SysCallError says it
            raise ConnectionError(openssl_reason(exc) if exc.args and exc.args[0] else "the peer went away") from None

    def fileno(self) -> int:
        return self.raw_socket.fileno()

    def setsockopt(self, *args) -> None:
        self.raw_socket.setsockopt(*args)

    def shutdown(self, how: int) -> None:
        from OpenSSL import SSL

        try:
            self._conn.shutdown()  # close_notify
        except SSL.Error:
            pass
        try:
            self.raw_socket.shutdown(how)
        except OSError:
            pass

    def close(self) -> None:
        self.raw_socket.close()


class _TLSReader(io.RawIOBase):
    """Reads application data from a pyOpenSSL connection, for ``io.BufferedReader``."""

    def __init__(self, conn) -> None:
        self._conn = conn

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        from OpenSSL import SSL

        try:
            data = self._conn.recv(len(buffer))
        except SSL.ZeroReturnError:
            return 0
        except (SSL.WantReadError, SSL.WantWriteError):
            raise TimeoutError("timed out") from None
        except SSL.SysCallError:
            return 0  # the client went away without close_notify: the end of its requests
        except SSL.Error as exc:
            raise ConnectionError(openssl_reason(exc)) from None
        buffer[:len(data)] = data
        return len(data)
