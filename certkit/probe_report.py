"""``certkit probe`` in words: what the server presented, what it asked of clients, and why it refused.

The probing itself is :mod:`certkit.probe`; this module turns its
:class:`~certkit.probe.ProbeResult` into verdicts and the text a person
reads (the verdicts on a client certificate are :mod:`certkit.probe_client_verdict`'s).
Everything taken from the server (names, subjects, HTTP answers) is
escaped with :func:`certkit.text.shown`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from certkit.anchors import PARTIAL_ANCHOR_NOTE
from certkit.probe_client_verdict import with_verdict, without_verdict
from certkit.probe_http import AFTER_HANDSHAKE, POST_HANDSHAKE_AUTH, misdirected
from certkit.sent_chain import ABOVE, GAP_NOTE, STRANGERS_NOTE
from certkit.text import shown
from certkit.time_words import described_dates
from certkit.verify_names import final_dot_note

if TYPE_CHECKING:
    from certkit.probe import ProbeResult


def as_dict(result: "ProbeResult") -> dict:
    """The report as ``--json`` prints it: the same facts and verdicts as :func:`render`."""
    return {
        "url": result.url, "host": result.target.host, "port": result.target.port, "address": result.target.reached,
        "trust": result.trust,
        "tls_version": result.tls_version, "cipher": result.cipher,
        "server_certificate": {
            "verified": result.verified, "pinned": result.pinned, "verify_errors": result.verify_errors,
            "reasons": result.reasons,
            "withdrawn": result.withdrawn,
            "server_auth": result.server_auth, "ca_as_server": result.ca_as_server, "name_matches": result.name_matches,
            "ok": result.server_ok,
            "chain": result.chain,
            "not_of_its_chain": list(result.strangers.values()),
            "above_missing_intermediate": [words for words, _ in result.above_gap.values()],
            "final_dot_note": final_dot_note(result.target.host + ".") if result.final_dot else None,
            "partial_anchor_note": PARTIAL_ANCHOR_NOTE.format(result.partial_anchor) if result.partial_anchor else None,
            "ocsp_staple": result.staple, "ocsp_staple_problem": result.staple_problem,
        },
        "client_certificate": {
            "requested": result.requests_client_cert, "accepted_ca_names": result.client_ca_names,
            "requested_after_handshake": result.requested_after_handshake,
            "without_one": result.without_cert.to_dict() if result.without_cert else None,
            "without_one_verdict": without_verdict(result) if result.without_cert else None,
            "given": result.client_subject, "given_usage": result.client_usage, "given_issuer": result.client_issuer,
            "given_status": result.client_validity.get("status"),
            "given_purpose_problem": result.client_purpose,
            "given_chain_issuers": result.client_chain_issuers, "given_missing_issuer": result.client_missing_issuer,
            "given_withdrawn": result.client_withdrawn, "given_not_from_ca": result.client_foreign,
            "with_it": result.with_cert.to_dict() if result.with_cert else None,
            "accepted": result.client_accepted,
            "verdict": with_verdict(result) if result.with_cert else None,
        },
    }


# What real clients do with a CA certificate (basicConstraints CA:TRUE) as a server's own, such as the one
# `openssl req -x509` makes with OpenSSL's default configuration: OpenSSL checks the purpose of the
# certificate it verifies, not its CA bit, so the OpenSSL clients accept it; mozilla::pkix does not.
CA_AS_SERVER = ("OpenSSL accepts it (the chain line above is its verdict), and so do curl and Python's ssl; Firefox "
                "refuses a CA certificate as a server's own (MOZILLA_PKIX_ERROR_CA_CERT_USED_AS_END_ENTITY). A server "
                "certificate (CA:FALSE, serverAuth: certkit issue-server) works with every client")


# How probe names the trust of a --ca-file that pins the server's own certificate (ProbeResult.trust).
PINNED_IN = "the server's own certificate, pinned in "


def server_problem(result: "ProbeResult") -> str | None:
    """What is wrong with the server's certificate, for the exit status; None if it is valid for the host."""
    if result.server_ok:
        return None
    if result.withdrawn:  # the CA withdrew it (its key compromised, maybe): whatever else holds, that first
        first = result.withdrawn[0].rpartition("; ")[0] or result.withdrawn[0]  # the fact, not the advice
        return f"the server's certificate was {first}" if first.startswith(("revoked", "never")) else \
            f"the server's certificate is not valid: {first}"
    if result.ca_as_server and result.name_matches:
        return "the server's certificate is a CA certificate, which Firefox refuses (OpenSSL clients accept it)"
    if result.staple_problem and result.verified and result.server_auth and result.name_matches and \
            not result.reasons:
        return result.staple_problem
    # The purpose first: a client certificate served by mistake (etcd's --cert-file given the client bundle)
    # never names the host either, and fixing the bundle is what matters.
    if not result.server_auth and result.chain and "clientAuth" in (result.chain[0]["extended_key_usage"] or ()):
        return ("the server's certificate is a client certificate (clientAuth, no serverAuth): the server is "
                "configured with the wrong bundle")
    # A certificate naming hosts, but not this one: the name (nobody takes it). One naming no host at all (a CA's
    # own certificate and key given to the server): its purpose, the mistake to fix.
    if not result.name_matches and result.chain[0].get("subject_alt_names"):
        return f"the server's certificate is not valid for {result.target.host}: the name is not among its names"
    if not result.server_auth and (result.chain[0]["basic_constraints"] or {}).get("ca"):  # its EKU may be fine
        untrusted = "" if result.verified else f", and it is not trusted by {result.trust}{_first(result)}"
        return ("the server's certificate is a CA certificate (basicConstraints CA:TRUE), not a TLS server "
                f"certificate{untrusted}")
    if not result.server_auth:
        return "the server's certificate is not for TLS servers (its extendedKeyUsage lacks serverAuth)"
    if not result.name_matches:
        return f"the server's certificate is not valid for {result.target.host}: the name is not among its names"
    if result.verified and result.reasons:  # OpenSSL verified the chain; certkit verify refuses it (its key)
        return f"the server's certificate is not valid: {result.reasons[0]}"
    if result.out_of_date:  # it chains to the anchors, and it (or a CA above it, named) is out of its dates
        return result.out_of_date
    why = _first(result)
    # the cause the report gives: an intermediate the server does not send (known, or maybe: --ca-file of a root)
    sends = ("server does not send", "the server must send")
    if not result.verified and (unsent := next((r for r in result.reasons if any(s in r for s in sends)), None)):
        return f"the server's certificate is not trusted by {result.trust}{why}: {unsent}"
    if "subtree violation" in why:  # it chains to the anchor, and names what that CA may not vouch for
        return f"the server's certificate names what the name constraints of a CA above it forbid{why}"
    return f"the server's certificate is not trusted by {result.trust}{why}"


def _first(result: "ProbeResult") -> str:
    """OpenSSL's first verification error, in brackets (empty when there is none)."""
    return f" ({result.verify_errors[0]})" if result.verify_errors else ""


# --- reading the server's certificate -------------------------------------------------

_UNTRUSTED_HINT = re.compile(r" \(if (.+) is an intermediate CA under it, verify fullchain\.pem "
                             r"or pass its certificate with --untrusted\)$")


def server_side(reason: str, leaf, known: list = ()) -> str:
    """certkit verify's hint for a chain that stops at the leaf names verify's options; for a server the
    fix is on the server, which must send its intermediate (or, self-signed, has no CA at all)."""
    found = _UNTRUSTED_HINT.search(reason)
    if found is None:
        return reason
    if leaf.issuer == leaf.subject:
        hint = " (the server's certificate is self-signed: no CA issued it)"
    elif any(c.subject == leaf.issuer for c in known):  # the CA directory given is that intermediate
        return (f"issued by {found.group(1)}, the intermediate CA given, but the server does not send its "
                "certificate after its own, and clients trust only the root: configure the server with "
                "fullchain.pem, e.g. nginx ssl_certificate, not cert.pem alone")
    else:
        hint = (f" (if {found.group(1)} is an intermediate CA under it, the server must send its certificate "
                "after its own: configure the server with fullchain.pem, e.g. nginx ssl_certificate, "
                "not cert.pem alone)")
    return reason[:found.start()] + hint


def render(result: "ProbeResult") -> str:
    t = result.target
    reached = f" ({t.reached})" if t.reached and not t.is_ip else ""  # of a name's addresses, the one probed
    lines = [f"{shown(result.url)}: {shown(t.label)}{reached}, {result.tls_version or 'no TLS'}"
             + (f", {result.cipher}" if result.cipher else "")]
    lines.append("")
    lines.append(f"The server presents {len(result.chain)} certificate{'s' if len(result.chain) != 1 else ''}:")
    for i, cert in enumerate(result.chain):
        role = "its own" if i == 0 else "NOT of its chain" if i in result.strangers else \
            "intermediate" if not cert["self_signed"] else "root (sent along)"
        if i in result.above_gap:  # its own root, say, with the intermediate left out: not someone else's
            role = f"{role}, above a CA not sent" if result.above_gap[i][1] == ABOVE else "NOT linked to its chain"
        if (j := [c["fingerprint_sha256"] for c in result.chain].index(cert["fingerprint_sha256"])) < i:
            role = f"the same certificate as [{j}], sent again"  # cat cert.pem fullchain.pem: not an intermediate
        names = ", ".join(e["value"] for e in cert["subject_alt_names"]) or "(none)"
        lines += [f"  [{i}] {shown(cert['subject']) or '(empty subject)'}  ({role})",
                  f"      issued by  {shown(cert['issuer'])}"]
        if i == 0:
            lines.append(f"      names      {shown(names)}")
        lines += [f"      usable for {shown(cert['usable_for'])}",
                  *(f"      {label:<10} {words}" for label, words in described_dates(cert))]
        if cert.get("tls_feature"):  # OCSP Must-Staple: Firefox refuses it unless the server staples
            lines.append(f"      TLS feature {shown(cert['tls_feature'])}")
    some = result.ca_as_server and result.name_matches and not result.withdrawn  # OpenSSL clients take it
    not_firefox = some or bool(result.staple_problem and server_problem(result) == result.staple_problem)
    verdict = "yes" if result.server_ok else "NO, not for every client" if not_firefox else "NO"
    lines += ["", f"Is it a valid TLS server certificate for {shown(t.host)}? {verdict}"]
    auth = "yes" if result.server_auth else \
        ("NO for Firefox: " if result.ca_as_server else "NO: ") + shown(result.chain[0]["usable_for"])
    lines.append(f"  serverAuth  {auth}")
    lines.append(f"  names       {'yes' if result.name_matches else 'NO'}: {shown(t.host)} "
                 f"{'is' if result.name_matches else 'is not'} among its names")
    trust_line = f"verified against {result.trust}" if result.verified else \
        f"NOT verified against {result.trust}: {'; '.join(result.verify_errors)}"
    if result.pinned and result.verified:
        trust_line = (f"pinned: the server's own certificate is in {result.trust.removeprefix(PINNED_IN)}, "
                      "trusted as itself, as curl --cacert does: no CA vouches for it, and a renewed "
                      "certificate must be pinned again")
    lines.append(f"  chain       {shown(trust_line)}")
    lines += [f"  reason      {shown(r)}" for r in result.reasons]
    if result.staple:
        lines.append(f"  OCSP staple {shown(result.staple)}")
    if result.staple_problem:
        lines.append(f"  clients     {shown(result.staple_problem)}")
    if result.final_dot and result.name_matches:
        lines.append(f"  beware      {shown(final_dot_note(result.target.host + '.'))}")
    if result.partial_anchor and result.verified:
        lines.append(f"  beware      {shown(PARTIAL_ANCHOR_NOTE.format(result.partial_anchor))}")
    if result.strangers:
        lines.append(f"  beware      {shown(STRANGERS_NOTE.format('; '.join(result.strangers.values())))}")
    if result.above_gap:
        lines.append(f"  beware      {shown(GAP_NOTE.format('; '.join(w for w, _ in result.above_gap.values())))}")
    if some:
        lines.append(f"  clients     {CA_AS_SERVER}")
    return "\n".join(lines + _client_lines(result))


def _client_lines(result: "ProbeResult") -> list[str]:
    """The report's part on the client certificate: asked for, CA names, and what happened without and with one."""
    t, lines = result.target, ["", "Client certificate:"]
    if result.requests_client_cert:
        names = "; ".join(shown(n) for n in result.client_ca_names)
        how = POST_HANDSHAKE_AUTH if result.tls_version == "TLSv1.3" else "in a renegotiation"
        lines.append(f"  asked for   {AFTER_HANDSHAKE.format(shown(result.target.path), how)}" if
                     result.requested_after_handshake else "  asked for   yes, the server sends a CertificateRequest")
        lines.append(f"  CA names    {names}" if names else
                     "  CA names    none: the request names no CA, so a client may offer any certificate")
    else:
        lines.append("  asked for   no, " + ("not on this connection" if misdirected(result.without_cert, t) else
                                         "the server does not request one"))
    if result.without_cert is not None:
        lines.append(f"  without     {shown(without_verdict(result))}")
    if result.with_cert is not None:
        lines.append(f"  given       {shown(result.client_subject)}: {shown(result.client_usage)}")
        lines.append(f"  with it     {shown(with_verdict(result))}")
    return lines
