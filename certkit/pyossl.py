"""What certkit needs from pyOpenSSL, where Python's ``ssl`` falls short, in one place.

Python's ``ssl`` has no verify callback (so a handshake cannot complete with a
certificate that fails verification and then say why) and does not show a
client the CA names of the server's CertificateRequest. pyOpenSSL (pyca's
binding to the same OpenSSL) has both; ``serve --optional`` and ``probe`` use
it through these helpers. pyOpenSSL is imported only when they run. Here too:
the end of a connection refused before TLS began (serve's, acme serve's).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

# OpenSSL's verification errors (X509_V_ERR_*) that TLS peers meet, in OpenSSL's own words
# (X509_verify_cert_error_string, which pyOpenSSL's public API does not expose: asked through its binding
# when it has it, this table otherwise).
X509_ERRORS = {
    25: "path length constraint exceeded", 27: "certificate not trusted", 28: "certificate rejected",
    32: "key usage does not include certificate signing", 47: "permitted subtree violation",
    48: "excluded subtree violation", 49: "name constraints minimum and maximum not supported",
    51: "unsupported name constraint type", 53: "unsupported or invalid name syntax",
    65: "Certificate Transparency required, but no valid SCTs found",
    2: "unable to get issuer certificate", 4: "unable to decrypt certificate's signature",
    7: "certificate signature failure", 9: "certificate is not yet valid", 10: "certificate has expired",
    18: "self-signed certificate", 19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate", 21: "unable to verify the first certificate",
    23: "certificate revoked", 24: "invalid CA certificate", 26: "unsuitable certificate purpose",
    62: "hostname mismatch", 64: "IP address mismatch", 66: "EE certificate key too weak",
    67: "CA certificate key too weak", 68: "CA signature digest algorithm too weak",
}

# The state OpenSSL is in right after it read a CertificateRequest (TLS_ST_CR_CERT_REQ), TLS 1.2 and 1.3.
CERT_REQUEST_STATE = b"SSLv3/TLS read server certificate request"


def allow_post_handshake_auth(ctx) -> None:
    """Let the server ask a TLS 1.3 client for its certificate after the handshake (RFC 8446 4.6.2, the
    ``post_handshake_auth`` extension), as curl allows it: Apache asks there for a certificate that one
    path requires (``SSLVerifyClient require`` in a ``<Location>``), and refuses a client that does not allow it
    without ever sending a CertificateRequest. pyOpenSSL's API has no call for it; its binding has."""
    from OpenSSL._util import lib

    if getattr(lib, "Cryptography_HAS_SSL_VERIFY_CLIENT_POST_HANDSHAKE", 0):
        lib.SSL_CTX_set_post_handshake_auth(ctx._context, 1)


def without_key_log(ctx):
    """The pyOpenSSL context ``ctx``, writing no TLS key log, as :func:`certkit.tlscheck.without_key_log` makes
    Python's: an OpenSSL built with enable-sslkeylog sets a key log callback for $SSLKEYLOGFILE; it is dropped."""
    from OpenSSL._util import ffi, lib

    from certkit.tlscheck import warn_of_key_log

    warn_of_key_log(stacklevel=4)
    if hasattr(lib, "SSL_CTX_set_keylog_callback"):
        lib.SSL_CTX_set_keylog_callback(ctx._context, ffi.NULL)
    return ctx


def x509_error(code: int, depth: int = 0) -> str:
    words = X509_ERRORS.get(code) or _openssl_words(code) or f"X.509 verification error {code}"
    return words + (f" (at depth {depth})" if depth else "")


def _openssl_words(code: int) -> str | None:
    """OpenSSL's own words for a verification error, through pyOpenSSL's binding (None if it lacks them)."""
    try:
        from OpenSSL._util import ffi, lib

        words = ffi.string(lib.X509_verify_cert_error_string(code)).decode("ascii", "replace")
    except Exception:  # noqa: BLE001 (a pyOpenSSL without the binding: the table's words, or the number)
        return None
    return None if words.startswith("unknown certificate verification error") else words


class VerifyErrors(list):
    """OpenSSL's verification errors of one connection, ``(errnum, depth)``, and (``at``) the certificate it
    judged at each depth that had one: a CA's out of date, say, is then named, not taken for the leaf."""

    def __init__(self) -> None:
        super().__init__()
        self.at: dict[int, object] = {}
        self.stapled: bytes | None = None  # the OCSP response the server stapled (b"": none), once it has said


def record_staple(conn, stapled: bytes, data) -> bool:
    """An OCSP client callback (the client asked for a staple: ``Connection.request_ocsp``) that keeps what the
    server stapled, b"" for nothing, in the connection's :class:`VerifyErrors`, and lets the handshake go on."""
    errors = conn.get_app_data()
    if isinstance(errors, VerifyErrors):
        errors.stapled = bytes(stapled)
    return True


def record_verify_error(conn, cert, errnum: int, depth: int, ok: int) -> bool:
    """A verify callback that lets the handshake go on and keeps OpenSSL's errors in the
    connection's app data (a list of ``(errnum, depth)``; a :class:`VerifyErrors` keeps the certificates too)."""
    if not ok:
        errors = conn.get_app_data()
        errors.append((errnum, depth))
        if isinstance(errors, VerifyErrors):
            errors.at.setdefault(depth, cert.to_cryptography())
    return True


def set_kernel_timeout(sock: socket.socket, seconds: float | None) -> None:
    """Bound blocking reads and writes on ``sock`` (SO_RCVTIMEO/SO_SNDTIMEO; None or 0: no bound).

    pyOpenSSL needs a blocking socket: a Python socket timeout makes it
    non-blocking underneath, and OpenSSL then reports "want read" at once.
    With kernel timeouts a stalled peer shows up as "want read" after
    ``seconds`` instead.
    """
    sock.settimeout(None)
    whole = int(seconds or 0)
    value = struct.pack("@ll", whole, int(((seconds or 0) - whole) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


def openssl_reason(exc: Exception) -> str:
    """The last reason in a pyOpenSSL error (``[('SSL routines', '', 'tlsv13 alert certificate required')]``)."""
    try:
        return str(exc.args[0][-1][2]) or str(exc)
    except (IndexError, TypeError):
        return str(exc) or type(exc).__name__


def name_text(name) -> str:
    """An ``OpenSSL.crypto.X509Name`` as RFC 4514 text (``CN=Lab CA,O=Example``)."""
    parts = [f"{k.decode('ascii', 'replace')}={_escape_rdn(v.decode('utf-8', 'replace'))}"
             for k, v in name.get_components()]
    return ",".join(reversed(parts))


def _escape_rdn(value: str) -> str:
    out = "".join("\\" + ch if ch in ',+"\\<>;' else ch for ch in value)
    if out.startswith((" ", "#")):
        out = "\\" + out
    return out[:-1] + "\\ " if out.endswith(" ") and len(out) > 1 else out


@contextmanager
def deadline(sock: socket.socket, seconds: float) -> Iterator[threading.Event]:
    """Bound what is done on ``sock`` inside the block to ``seconds`` in all, not per read: a server that sends
    a byte now and then would hold a blocking call (OpenSSL's handshake, reading an answer) for as long as it
    likes, each read within the socket's timeout. At the deadline the socket is shut, which ends the read, and
    the event yielded is set: the caller says why the call failed."""
    late = threading.Event()

    def cut() -> None:
        late.set()
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(seconds, cut)
    timer.daemon = True
    timer.start()
    try:
        yield late
    finally:
        timer.cancel()


@contextmanager
def interrupt_after(sock: socket.socket | None = None) -> Iterator[None]:
    """Hold a Ctrl-C that comes during a blocking pyOpenSSL call (a handshake) until the call returns, then
    raise it, whatever the call raised: raised inside pyOpenSSL's callbacks (the info and verify callbacks run
    there), cffi would print it with a traceback and swallow it, and the handshake would end as a timeout.
    A Ctrl-C taken in a callback interrupts no system call: the call's next read would wait for the server
    until the socket's timeout, so ``sock`` (the call's socket) is shut down then and that read ends at once."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed: list[int] = []

    def held(*_) -> None:
        pressed.append(1)
        if sock is not None:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    previous = signal.signal(signal.SIGINT, held)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pressed:
            raise KeyboardInterrupt  # noqa: B012 (it replaces what the interrupted call raised, by design)


def drain_rejected(sock, timeout: float = 2.0, limit: int = 1 << 16) -> None:
    """Half-close a rejected connection and read what the client still sends, until it closes: in TLS 1.3 a
    client sends its certificate and its request at once, and closing with that request unread makes the kernel
    send a reset, which can overtake the rejection alert ("connection reset" instead of "certificate required").
    The raw socket methods are used: TLS is dead here (serve's, acme serve's)."""
    import time

    until = time.monotonic() + timeout
    sock = getattr(sock, "raw_socket", sock)  # --optional: the socket under pyOpenSSL's connection
    try:
        socket.socket.shutdown(sock, socket.SHUT_WR)
        while limit > 0 and (left := until - time.monotonic()) > 0:
            socket.socket.settimeout(sock, left)
            data = socket.socket.recv(sock, 4096)
            if not data:
                break
            limit -= len(data)
    except OSError:
        pass
