"""What a server's refusal of a client (certificate) looks like, for :mod:`certkit.probe_report`: the TLS alerts
servers send and what they mean, the HTTP answers that are refusals (nginx's and certkit serve's pages), and an
answer that tells nothing (a timeout, a closed connection, not HTTP)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from certkit.probe import Attempt


# What the TLS alerts a server sends about a client certificate mean, in words.
_ALERTS = {
    "certificate required": "the server requires a client certificate and got none",
    "unsupported certificate": "the server does not accept this kind of certificate: for a client it "
                               "needs clientAuth in the extendedKeyUsage, and digitalSignature or keyAgreement in "
                               "the keyUsage if it has one",
    "unknown ca": "the server does not know the CA that issued it",
    "certificate expired": "the certificate has expired (or is not yet valid)",
    "bad certificate": "the server could not verify it",
    "certificate unknown": "the server did not accept it (Java and NSS servers say any refusal of a client "
                           "certificate so, and OpenSSL servers a verify error they have no other alert for, such "
                           "as a name-constraint violation or an unhandled critical extension)",
    "certificate revoked": "the certificate is revoked",
    "handshake failure": "the server ended the handshake (no acceptable certificate?)",
    "decrypt error": "the server could not verify the certificate's signature",
}


# With no certificate sent, an alert about "it" cannot be about a certificate: Go servers before Go 1.21
# (etcd 3.4, as Debian ships it) and Java's JSSE send "bad certificate" when a required client certificate
# is missing.
_ALERTS_WITHOUT = {
    "bad certificate": "the server requires a client certificate and got none; Java servers, and Go servers "
                       "before Go 1.21 (etcd 3.4 among them), send this alert for a missing one",
}


def with_alert_words(reason: str, *, sent: bool = True) -> str:
    """OpenSSL's reason for an alert received, with what the alert means; ``sent``: whether a client
    certificate was sent on that connection (without one, an alert cannot be about it)."""
    for alert, words in (_ALERTS if sent else {**_ALERTS, **_ALERTS_WITHOUT}).items():
        if reason.endswith("alert " + alert):
            return f"{reason}: {words}"
    return reason


def refusal(attempt: "Attempt") -> str | None:
    """Why the server refused this connection's client (certificate), in words; None if it did not, or if
    its answer does not say (:func:`unclear`). A refusal is a failed handshake, a TLS alert on the first
    read, an HTTP 401, 403, 495 or 496, or nginx's or certkit serve's certificate page: what servers send.
    A timeout, an end of the connection or an answer that is not HTTP, after a completed handshake, is
    none of these: an SMTP server or a silent ``openssl s_server`` accepted the certificate and then did
    not speak HTTP."""
    sent = attempt.presented is not None
    if attempt.handshake != "ok":
        return f"the handshake failed: {with_alert_words(attempt.handshake, sent=sent)}"
    if attempt.read_alert:
        return with_alert_words(attempt.http_error, sent=sent)
    if attempt.http_status is None:
        return None
    body = attempt.body_start
    # nginx ends a failed client-certificate check with a 400 page of its own, not a TLS alert.
    for marker in ("No required SSL certificate was sent", "The SSL certificate error",
                   "Refused client certificate", "No client certificate was sent"):
        if marker in body:
            why = _serve_reasons(body) if marker == "Refused client certificate" else []
            return f"HTTP {attempt.http_status}: {marker}" + (f" ({'; '.join(why)})" if why else "")
    if attempt.http_status in (401, 403, 495, 496):
        return f"HTTP {attempt.http_status} {attempt.http_reason}".rstrip()
    return None


CLOSED = "the server closed the connection without an answer"  # after a handshake that took the certificate


def unclear(attempt: "Attempt") -> str | None:
    """Why a completed handshake gave no HTTP answer to judge by (a timeout, the connection closed, an
    answer that is not HTTP), in words; None when there is an HTTP answer or a refusal."""
    if attempt.handshake != "ok" or attempt.read_alert or attempt.http_status is not None:
        return None
    return attempt.http_error or CLOSED


def _serve_reasons(body: str) -> list[str]:
    """The reasons certkit serve --optional gives in its text answer (``  refused      REASON`` lines)."""
    return [line.strip()[len("refused"):].strip() for line in body.splitlines()
            if line.startswith("  refused ") and line.strip() != "refused"]
