"""``certkit probe`` in words: what the server presented, what it asked of clients, and why it refused.

The probing itself is :mod:`certkit.probe`; this module turns its
:class:`~certkit.probe.ProbeResult` into verdicts and the text a person
reads. Everything taken from the server (names, subjects, HTTP answers) is
escaped with :func:`certkit.text.shown`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from certkit.text import shown

if TYPE_CHECKING:
    from certkit.probe import Attempt, ProbeResult


# What the TLS alerts a server sends about a client certificate mean, in words.
_ALERTS = {
    "certificate required": "the server requires a client certificate and got none",
    "unsupported certificate": "the server does not accept this kind of certificate: for a client it "
                               "needs clientAuth in the extendedKeyUsage",
    "unknown ca": "the server does not know the CA that issued it",
    "certificate expired": "the certificate has expired (or is not yet valid)",
    "bad certificate": "the server could not verify it",
    "certificate revoked": "the certificate is revoked",
    "handshake failure": "the server ended the handshake (no acceptable certificate?)",
    "decrypt error": "the server could not verify the certificate's signature",
}


def with_alert_words(reason: str) -> str:
    for alert, words in _ALERTS.items():
        if reason.endswith("alert " + alert):
            return f"{reason}: {words}"
    return reason


def refusal(attempt: "Attempt") -> str | None:
    """Why the server refused this connection's client (certificate), in words; None if it did not."""
    if attempt.handshake != "ok":
        return f"the handshake failed: {with_alert_words(attempt.handshake)}"
    if attempt.http_error:
        return with_alert_words(attempt.http_error)
    if attempt.http_status is None:
        return "no answer"
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


def _serve_reasons(body: str) -> list[str]:
    """The reasons certkit serve --optional gives in its text answer (``  refused      REASON`` lines)."""
    return [line.strip()[len("refused"):].strip() for line in body.splitlines()
            if line.startswith("  refused ") and line.strip() != "refused"]


def without_verdict(result: "ProbeResult") -> str:
    attempt = result.without_cert
    refused = refusal(attempt)
    if not result.requests_client_cert:
        return "not asked for: the server does not request a client certificate" + (
            "" if refused is None else f" (but it refused: {refused})")
    if refused is None:
        return (f"optional: the server asks for one but answered without it (HTTP {attempt.http_status} "
                f"{attempt.http_reason})").rstrip()
    return f"required: without one the server refused ({refused})"


def with_verdict(result: "ProbeResult") -> str:
    attempt = result.with_cert
    if not result.requests_client_cert:
        return ("never sent: the server does not ask for client certificates, so it neither checks nor uses one"
                + (f" (it answered HTTP {attempt.http_status})" if attempt.http_status else ""))
    refused = refusal(attempt)
    if refused is not None:
        return f"refused: {refused}"
    status = f"HTTP {attempt.http_status} {attempt.http_reason}".rstrip()
    if attempt.http_status >= 400:
        return (f"not known: the handshake took it, but the server answered {status}, an error that does not "
                "say whether it accepts the certificate (probe a URL that answers 200)")
    verdict = f"accepted: the server answered {status}"
    # A server that lets in what it should not is worth a word (openssl s_server without
    # -verify_return_error only logs verification errors, for one).
    if result.client_eku is not None and "clientAuth" not in result.client_eku:
        verdict += ("; beware: this is not a client certificate (extendedKeyUsage "
                    f"{', '.join(result.client_eku)}), so this server does not check a client certificate's purpose")
    issuers = result.client_chain_issuers or [result.client_issuer]
    # A server that lists a root takes a client whose chain (sent along) leads to it: only a chain none of
    # whose issuers is listed got in against the server's own list.
    if result.client_ca_names and not set(issuers) & set(result.client_ca_names):
        verdict += (f"; beware: its issuer {issuers[0]} is not among the CA names the server listed, yet it got in"
                    if len(issuers) == 1 else
                    f"; beware: none of its chain's issuers ({', '.join(issuers)}) is among the CA names the "
                    "server listed, yet it got in")
    return verdict


def client_problem(result: "ProbeResult") -> str | None:
    """What keeps the given client certificate from being known as accepted, for the exit status; None if
    it was accepted (or none was given)."""
    if result.with_cert is None or result.client_accepted:
        return None
    if not result.requests_client_cert:
        return "the server never asked for the client certificate, so it was not sent"
    if result.client_accepted is False:
        return "the client certificate is refused"
    return (f"the server answered HTTP {result.with_cert.http_status}, so whether it accepts the client "
            "certificate is not known")


# --- reading the server's certificate -------------------------------------------------


def render(result: "ProbeResult") -> str:
    t = result.target
    lines = [f"{shown(result.url)}: {shown(t.label)}, {result.tls_version or 'no TLS'}"
             + (f", {result.cipher}" if result.cipher else "")]
    lines.append("")
    lines.append(f"The server presents {len(result.chain)} certificate{'s' if len(result.chain) != 1 else ''}:")
    for i, cert in enumerate(result.chain):
        role = "its own" if i == 0 else "intermediate" if not cert["self_signed"] else "root (sent along)"
        names = ", ".join(e["value"] for e in cert["subject_alt_names"]) or "(none)"
        lines += [f"  [{i}] {shown(cert['subject']) or '(empty subject)'}  ({role})",
                  f"      issued by  {shown(cert['issuer'])}"]
        if i == 0:
            lines.append(f"      names      {shown(names)}")
        lines += [f"      usable for {shown(cert['usable_for'])}",
                  f"      expires    {cert['not_after'][:16].replace('T', ' ')} UTC ({cert['validity']})"]
    verdict = "yes" if result.server_ok else "NO"
    lines += ["", f"Is it a valid TLS server certificate for {shown(t.host)}? {verdict}"]
    lines.append("  serverAuth  " + ("yes" if result.server_auth else "NO: " + shown(result.chain[0]["usable_for"])))
    lines.append(f"  names       {'yes' if result.name_matches else 'NO'}: {shown(t.host)} "
                 f"{'is' if result.name_matches else 'is not'} among its names")
    trust_line = f"verified against {result.trust}" if result.verified else \
        f"NOT verified against {result.trust}: {'; '.join(result.verify_errors)}"
    lines.append(f"  chain       {shown(trust_line)}")
    lines += [f"  reason      {shown(r)}" for r in result.reasons]

    lines += ["", "Client certificate:"]
    if result.requests_client_cert:
        names = "; ".join(shown(n) for n in result.client_ca_names)
        lines.append("  asked for   yes, the server sends a CertificateRequest")
        lines.append(f"  CA names    {names}" if names else
                     "  CA names    none: the request names no CA, so a client may offer any certificate")
    else:
        lines.append("  asked for   no, the server does not request one")
    if result.without_cert is not None:
        lines.append(f"  without     {shown(without_verdict(result))}")
    if result.with_cert is not None:
        lines.append(f"  given       {shown(result.client_subject)}: {shown(result.client_usage)}")
        lines.append(f"  with it     {shown(with_verdict(result))}")
    return "\n".join(lines)
