"""The TLS handshake of a serve connection: run within its deadline in the worker thread, and its failure in
the log's words (this server "rejected" the client, or the client's TLS alert refused this server)."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import socket
import ssl
import threading
from typing import TYPE_CHECKING

from certkit.tlscheck import reason_of

if TYPE_CHECKING:
    from certkit.serve_page import ServerFacts

# A client that connects and sends nothing would otherwise hold a thread forever.
HANDSHAKE_TIMEOUT = 10.0


def _handshake(request, seconds: float) -> None:
    """The TLS handshake within ``seconds`` in all, not per read (a client sending a byte now and then would hold
    it, and its thread, at will): at the deadline the socket is shut, which ends a read, and it times out."""
    late = threading.Event()
    def cut() -> None:
        late.set()
        with contextlib.suppress(OSError):
            socket.socket.shutdown(getattr(request, "raw_socket", request), socket.SHUT_RDWR)

    timer = threading.Timer(seconds, cut)
    timer.daemon = True  # a stop of serve does not wait for it
    request.settimeout(seconds)  # a silent client: no read waits longer than the whole
    timer.start()
    try:
        request.do_handshake()
    except (ssl.SSLError, OSError) as exc:
        raise (TimeoutError("timed out") if late.is_set() else exc) from None
    finally:
        timer.cancel()


def _handshake_failure(exc: BaseException, peer: str, facts: "ServerFacts") -> str:
    """The log line of a failed handshake: this server "rejected" the client, or, when the client sent the TLS
    alert (curl about an expired server certificate: "certificate expired"), the client refused this server."""
    reason = reason_of(exc)
    if (alert := re.search(r"\b(?:sslv3|tlsv1|tlsv13|tls) alert (.+)$", reason)) is not None:
        return f"refused by the client {peer}: {reason}: {client_refusal(alert[1], facts)}"
    if reason == "peer did not return a certificate":
        reason = "no client certificate (peer did not return a certificate)"
    elif reason.endswith("unable to get local issuer certificate"):
        reason += f": {_no_issuer(facts)}"
    elif reason == "http request":
        reason = "plain HTTP sent to the HTTPS port (use https://)"
    elif isinstance(exc, TimeoutError | socket.timeout):
        reason = f"no TLS handshake within {HANDSHAKE_TIMEOUT:g} s"
    elif "eof" in reason.lower() or isinstance(exc, ConnectionResetError):
        reason = "the client closed the connection during the handshake"  # not OpenSSL's "unexpected eof while ..."
    return f"rejected {peer}: {reason}"


# What a TLS alert from the client in the handshake says: it refuses this server (its certificate, mostly).
_CLIENT_ALERTS = {
    "certificate expired": "it finds this server's certificate expired or not yet valid",
    "unknown ca": "it does not trust the CA that issued this server's certificate (curl: --cacert ca.pem; "
                  "a browser: certkit trust install)",
    "bad certificate": "it does not accept this server's certificate",
    "certificate unknown": "it does not accept this server's certificate",
    "unsupported certificate": "it does not take this server's certificate for a TLS server",
    "certificate revoked": "it finds this server's certificate revoked",
}


def client_refusal(alert: str, server: "ServerFacts", now: dt.datetime | None = None) -> str:
    """The log's words for a TLS ``alert`` the client sent in the handshake: the client refusing this
    server, not this server refusing the client; for an expiry, what this server's certificate says."""
    from certkit.serve_json import text_time, time_problem

    words, cert = _CLIENT_ALERTS.get(alert, "it ended the handshake"), server.certificate
    if alert == "certificate expired" and cert is not None:
        problem, above = time_problem(cert, now), server.chain_dates()
        until = text_time(cert.not_after)
        words += (f": this server's certificate {problem}" if problem else
                  f": this server's certificate is valid until {until}, but {above[0]}, and this server sends that "
                  "CA's certificate in its chain: give it a current chain (--cert: the fullchain.pem of a bundle "
                  "issued or renewed since)" if above else
                  f", but by this server's clock it is valid until {until}: check the client's clock")
    elif alert in ("bad certificate", "certificate unknown") and cert is not None and (
            problem := time_problem(cert, now)):  # Java, GnuTLS and Go say an expiry in these words
        words += f": this server's certificate {problem}, which is likely why"
    return words


def _no_issuer(facts: "ServerFacts") -> str:
    """The likely cause of OpenSSL's error 20 for a client: its certificate's issuer is in no certificate this server
    trusts (the handshake's error names none, and Python's ssl gives no certificate it refused)."""
    also = f" nor an intermediate CA of it this server trusts too ({', '.join(facts.trusted)})" if facts.trusted else ""
    return (f"no CA this server holds signed the client certificate (not {facts.client_ca}{also}): most likely it "
            "comes from an intermediate CA, sent without that CA's certificate (curl --cert fullchain.pem, or the "
            "bundle.p12 that holds it), or from another CA, of the same name or not; certkit serve --optional says "
            "which")


def connection_failure(exc: BaseException | None, peer: str) -> str:
    """The log line of a connection that failed after its handshake. A client that went away before its answer was
    written (curl cut off, a request cut short and the connection closed) is said in these words, not the library's
    (Python's ``EOF occurred in violation of protocol (_ssl.c:2427)``, pyOpenSSL's empty ``[]``)."""
    if isinstance(exc, ConnectionError | ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return f"left {peer}: the client closed the connection before this server's answer was sent"
    return f"error {peer}: {reason_of(exc) if exc else 'unknown error'}"
