"""Why a validation connection failed, in certkit's words (:func:`failure_words`): what reaches a challenge's
problem document is never OpenSSL's reason code (``WRONG_VERSION_NUMBER``, ``[SSL] tlsv1 alert ... (_ssl.c:1006)``)
nor ``http.client``'s text, which repeats what the other side sent (its first line, control characters and all)."""

from __future__ import annotations

import http.client
import re
import socket
import ssl

from certkit.text import shown

# OpenSSL reasons that mean the other side's first bytes are no TLS record: a plain HTTP server, SSH, ...
_NOT_TLS = {"wrong version number", "http request", "https proxy request", "record layer failure",
            "packet length too long", "unknown protocol", "record length mismatch", "bad record type"}
_CLOSED = {"unexpected eof while reading", "eof occurred in violation of protocol", "zero return"}
_ALERT = re.compile(r"^(?:sslv3|tlsv1|tlsv13) (?:alert )?(.+)$")
# What the alerts a TLS server sends to a validation client most often mean.
_ALERT_MEANING = {
    "handshake failure": "it accepts none of the TLS versions, cipher suites or names offered",
    "unrecognized name": "it has no certificate for the SNI name",
    "no application protocol": "it does not offer the ALPN protocol acme-tls/1",
    "protocol version": "it speaks no TLS version certkit validates with (TLS 1.2 or 1.3)",
    "internal error": "it failed on its side",
}


def _openssl_reason(exc: ssl.SSLError) -> str:
    """OpenSSL's reason, in lower case and spaces: from ``exc.reason`` or, where Python knows no name for
    it (``no application protocol``), from the text ``[SSL] REASON (_ssl.c:NNN)``."""
    reason = exc.reason or re.sub(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$", "", str(exc.args[1] if len(exc.args) > 1
                                                                                else exc))
    return reason.replace("_", " ").lower().strip()


def tls_words(exc: ssl.SSLError) -> str:
    reason = _openssl_reason(exc)
    if reason in _NOT_TLS:
        return "the other side does not speak TLS there (its answer is no TLS record: a plain HTTP server?)"
    if reason in _CLOSED or isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return "the other side closed the connection during the TLS handshake"
    alert = _ALERT.match(reason)
    if alert:
        name = alert.group(1)
        meaning = _ALERT_MEANING.get(name)
        return f"the other side ended the handshake with the TLS alert '{name}'" + (f": {meaning}" if meaning else "")
    return f"the TLS handshake failed (OpenSSL's reason: {shown(reason)[:100] or 'none given'})"


def http_words(exc: http.client.HTTPException) -> str:
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the other side closed the connection without an answer"
    if isinstance(exc, http.client.BadStatusLine | http.client.UnknownProtocol):
        line = str(getattr(exc, "line", None) or getattr(exc, "version", "") or "")
        if line.startswith(("\x15\x03", "\x16\x03")):  # a TLS record: an alert or a handshake
            return "the answer is TLS, not plain HTTP (a TLS server on that port?)"
        begins = f" (it begins '{shown(line[:40])}'{'...' if len(line) > 40 else ''})" if line.strip("'\"") else ""
        return f"the answer is not HTTP/1.x{begins}"
    if isinstance(exc, http.client.LineTooLong):
        return f"a line of the answer is longer than {http.client._MAXLINE} bytes"
    if isinstance(exc, http.client.IncompleteRead):
        return "the answer ended before the length its Content-Length header gives"
    if "headers" in str(exc):
        return f"the answer has more than {http.client._MAXHEADERS} header lines"
    return "the answer is not valid HTTP/1.1"


def failure_words(exc: BaseException, timeout: float) -> str:
    """Why a connection, TLS handshake or HTTP exchange failed, in words; ``timeout``: the attempt's limit."""
    from certkit.acme.fetch import DeadlinePassed

    if isinstance(exc, DeadlinePassed):
        return str(exc)
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no complete answer within {timeout:g} s"
    if isinstance(exc, ssl.SSLError):
        return tls_words(exc)
    if isinstance(exc, http.client.HTTPException):
        return http_words(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return shown(exc)[:200] or type(exc).__name__


def certificate_words(exc: Exception) -> str:
    """Why cryptography could not read a certificate a client or a validated server sent, in words
    (:func:`certkit.errors.describe_parse_error`), and an extension given twice, which it says in its own
    ("Duplicate 1.3.6.1.5.5.7.1.31 extension found"), named as certkit names it."""
    from cryptography import x509

    from certkit.errors import describe_parse_error
    from certkit.vocabulary import oid_name

    if isinstance(exc, x509.DuplicateExtension):
        name, dotted = oid_name(exc.oid), exc.oid.dotted_string
        return (f"it holds the extension {name}{'' if name == dotted else f' ({dotted})'} more than once, "
                "which X.509 forbids (RFC 5280 4.2)")
    return describe_parse_error(exc)
