"""Real loopback TLS handshakes: the proof of what a certificate can and cannot do.

:func:`handshake` runs one TLS connection between a server and a client in
this process (the server on a thread, on 127.0.0.1 and a free port) using
Python's ``ssl`` module, i.e. OpenSSL, and reports what each side saw. Used by
``certkit demo`` and by the tests.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
KEY_LOG_IGNORED = ("$SSLKEYLOGFILE is set, and ignored: certkit writes no TLS key log (it would hold every "
                   "session's secrets, which decrypt the traffic); capture with a client of your own instead.")


def without_key_log(ctx: ssl.SSLContext) -> ssl.SSLContext:
    """``ctx``, writing no TLS key log. Python's ``ssl.create_default_context`` (and an OpenSSL built with
    enable-sslkeylog, for every context) writes each session's secrets to the file $SSLKEYLOGFILE names:
    certkit's contexts ignore it, with a warning (:data:`KEY_LOG_IGNORED`)."""
    warn_of_key_log()
    ctx.keylog_filename = None  # also drops the callback such an OpenSSL sets
    return ctx


def warn_of_key_log(stacklevel: int = 4) -> None:
    """The warning :data:`KEY_LOG_IGNORED`, when $SSLKEYLOGFILE is set."""
    if os.environ.get("SSLKEYLOGFILE"):
        warnings.warn(KEY_LOG_IGNORED, stacklevel=stacklevel)


def new_context(protocol: ssl._SSLMethod) -> ssl.SSLContext:
    """``ssl.SSLContext(protocol)`` :func:`without_key_log`."""
    return without_key_log(ssl.SSLContext(protocol))


@dataclass(frozen=True)
class Endpoint:
    """A certificate chain and key to present, as files (fullchain.pem, privkey.pem)."""

    chain: Path
    key: Path


@dataclass
class HandshakeResult:
    accepted: bool
    server_error: str | None = None  # what the server reported, e.g. a client-cert failure
    client_error: str | None = None  # what the client reported, e.g. a server-cert failure
    peer_subject: str | None = None  # the client certificate's subject as the server saw it
    version: str | None = None
    client_cert: bytes | None = None  # the client's certificate (DER) as the server received it
    server_cert: bytes | None = None  # the server's certificate (DER) as the client received it

    @property
    def reason(self) -> str:
        """Why the connection failed, as said by the side that refused, or 'ok'.

        The refusing side reports its own check ("certificate verify failed:
        ..."); the other side only reports the alert it received.
        """
        errors = [e for e in (self.server_error, self.client_error) if e]
        own = [e for e in errors if "alert" not in e]
        return (own or errors or ["ok"])[0]


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason.replace("_", " ").lower()
    args = getattr(exc, "args", ())
    if len(args) == 2 and isinstance(args[0], int) and args[0] in _PEER_GONE:  # pyOpenSSL's SysCallError
        return _PEER_GONE[args[0]]
    return str(exc) or type(exc).__name__


# What pyOpenSSL's SysCallError(errno, name) means when the peer went away mid-connection.
_PEER_GONE = {-1: "the peer closed the connection (unexpected end of file)",
              errno.ECONNRESET: "the peer closed the connection before the answer was sent (connection reset)",
              errno.EPIPE: "the peer closed the connection before the answer was sent (broken pipe)"}


def server_context(server: Endpoint, client_ca: Path | None, *, require_client_cert: bool = True,
                   version: str | None = None) -> ssl.SSLContext:
    ctx = new_context(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(server.chain, server.key)
    if client_ca is not None:
        ctx.load_verify_locations(cafile=str(client_ca))
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    if version:
        ctx.minimum_version = ctx.maximum_version = TLS_VERSIONS[version]
    return ctx


def client_context(server_ca: Path, client: Endpoint | None = None, *,
                   version: str | None = None) -> ssl.SSLContext:
    ctx = new_context(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and hostname checking on
    ctx.load_verify_locations(cafile=str(server_ca))
    if client is not None:
        ctx.load_cert_chain(client.chain, client.key)
    if version:
        ctx.minimum_version = ctx.maximum_version = TLS_VERSIONS[version]
    return ctx


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, *,
              server_hostname: str = "localhost", timeout: float = 10.0) -> HandshakeResult:
    """Connect ``client_ctx`` to ``server_ctx`` over 127.0.0.1 and report the outcome.

    The connection counts as accepted only if both handshakes complete and the
    client reads the server's greeting: in TLS 1.3 the server checks the client
    certificate after the client's handshake has returned, so a refusal
    arrives as an alert on that first read.
    """
    result = HandshakeResult(accepted=False)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(timeout)
    port = listener.getsockname()[1]

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError as exc:
            result.server_error = reason_of(exc)
            return
        conn.settimeout(timeout)
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                cert = tls.getpeercert()
                result.client_cert = tls.getpeercert(binary_form=True)
                if cert:
                    result.peer_subject = ", ".join(
                        f"{k}={v}" for rdn in cert.get("subject", ()) for k, v in rdn)
                tls.sendall(b"hello\n")
                try:
                    tls.unwrap()
                except (ssl.SSLError, OSError):
                    pass
        except (ssl.SSLError, OSError) as exc:
            result.server_error = reason_of(exc)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
                result.version = tls.version()
                result.server_cert = tls.getpeercert(binary_form=True)
                greeting = tls.recv(16)
                result.accepted = greeting == b"hello\n"
                if not result.accepted and not result.client_error:
                    result.client_error = "connection closed by the server"
    except (ssl.SSLError, OSError) as exc:
        result.client_error = reason_of(exc)
    except BaseException:  # Ctrl-C: stop now, not after the server thread (a daemon) times out
        listener.close()
        raise
    thread.join(timeout)
    listener.close()
    if result.server_error:
        result.accepted = False
    return result
