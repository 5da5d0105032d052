"""``certkit probe`` in words: what the server presented, what it asked of clients, and why it refused.

The probing itself is :mod:`certkit.probe`; this module turns its
:class:`~certkit.probe.ProbeResult` into verdicts and the text a person
reads. Everything taken from the server (names, subjects, HTTP answers) is
escaped with :func:`certkit.text.shown`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from certkit.anchors import PARTIAL_ANCHOR_NOTE
from certkit.probe_alerts import _ALERTS, CLOSED, refusal, unclear  # noqa: F401 (refusal: for probe)
from certkit.probe_http import AFTER_HANDSHAKE, MISDIRECTED_PROBLEM, POST_HANDSHAKE_AUTH, misdirected
from certkit.sent_chain import ABOVE, GAP_NOTE, STRANGERS_NOTE
from certkit.text import shown
from certkit.time_words import described_dates
from certkit.verify_names import final_dot_note
from certkit.vocabulary import moment_text

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


def without_verdict(result: "ProbeResult") -> str:
    attempt = result.without_cert
    refused = refusal(attempt)
    if not result.requests_client_cert and (wrong := misdirected(attempt, result.target)) is not None:
        return f"not known: no client certificate was asked for on this connection, but {wrong}"
    if not result.requests_client_cert:
        return "not asked for: the server does not request a client certificate" + (
            "" if refused is None else f" (but it refused: {refused})")
    if (why := unclear(attempt)) is not None:
        return (f"not known: the server asks for one and completed the handshake without it, but {why}, "
                "so whether it requires one is not known")
    if refused is None:
        return (f"optional: the server asks for one but answered without it (HTTP {attempt.http_status} "
                f"{attempt.http_reason})").rstrip()
    return f"required: without one the server refused ({refused})"


def with_verdict(result: "ProbeResult") -> str:
    attempt = result.with_cert
    if not result.requests_client_cert and (wrong := misdirected(attempt, result.target)) is not None:
        return f"never sent: no client certificate was asked for on this connection, and {wrong}"
    if not result.requests_client_cert:
        return ("never sent: the server does not ask for client certificates, so it neither checks nor uses one"
                + (f" (it answered HTTP {attempt.http_status})" if attempt.http_status else ""))
    if attempt.not_sent:
        return _not_sent(result)
    refused = refusal(attempt)
    if refused is not None:
        refused = _crl_cause(result, refused)
        missing = _missing_intermediate(result, refused)
        return f"refused: {refused}{_no_client_auth(result)}{missing}{_known_faults(result, not missing)}"
    if (why := unclear(attempt)) is not None:
        if (revoked := _revoked_facts(result)) and why == CLOSED:  # the URL may well answer HTTP: not the advice
            return (f"not known: the handshake took it, but {why}; {revoked[0]}, and a server that checks a CRL "
                    "once the handshake is done closes the connection so (etcd's --peer-crl-file and "
                    "--client-crl-file among them)")
        return (f"not known: the handshake took it, but {why}: no HTTP answer says whether the server accepts "
                "the certificate (probe a URL that answers HTTP)")
    status = f"HTTP {attempt.http_status} {attempt.http_reason}".rstrip()
    if attempt.http_status >= 400:
        why = misdirected(attempt, result.target) or "probe a URL that answers 200"
        return f"not known: the handshake took it, but the server answered {status}, an error that does not say " \
            f"whether it accepts the certificate ({why})"
    # A server that lets in what it should not is worth a word (openssl s_server without
    # -verify_return_error only logs verification errors, for one).
    verdict = f"accepted: the server answered {status}{_lax_purpose(result)}{_out_of_date(result)}"
    # The CA's inventory recorded it revoked (the clause before its advice about CRLs), and it got in anyway.
    verdict += "".join(f"; beware: {fact}, yet it got in: this server loads no CRL that lists it"
                       for fact in _revoked_facts(result))
    if (unlisted := _unlisted_issuer(result)) is not None:
        verdict += f"; beware: {unlisted}, yet it got in"
    if result.client_foreign is not None:  # the CA probe was given, checked by signature (eve: a same-named CA)
        verdict += (f"; beware: {result.client_foreign}, yet it got in: this server trusts that other CA too, or "
                    "does not verify client certificates (openssl s_server -verify without -verify_return_error, "
                    "nginx ssl_verify_client optional_no_ca)")
    return verdict


def _not_sent(result: "ProbeResult") -> str:
    """The verdict when OpenSSL sent an empty Certificate message for the certificate given: what the server
    then did is its answer to a client without one, not to that certificate."""
    attempt = result.with_cert
    then = refusal(attempt) or unclear(attempt)
    then = f"the server refused ({then})" if refusal(attempt) else f"the server gave no HTTP answer ({then})" \
        if then else f"the server answered HTTP {attempt.http_status} {attempt.http_reason}".rstrip()
    return (f"not sent: OpenSSL sent an empty certificate message, as it does when none of the signature "
            f"algorithms the server's certificate request allows can be made with the key of {result.client_subject} "
            f"({result.client_key_type}), so the server never saw the certificate; without it {then}: give a "
            "certificate with another kind of key (RSA or ECDSA), or have the server allow signatures of this "
            "kind (nginx ssl_conf_command ClientSignatureAlgorithms, openssl s_server -client_sigalgs)")


def _known_faults(result: "ProbeResult", issuer: bool = True) -> str:
    """For a refused client certificate, what probe knows is wrong with it, as the accepted branch's ``beware:``
    notes say it: out of its dates, revoked in the --ca-dir inventory, and (``issuer``: unless the note on a
    missing intermediate said it) an issuer the server did not list; empty when none is known."""
    facts = [_date_fact(result), *_revoked_facts(result), _unlisted_issuer(result) if issuer else None]
    return "".join(f"; {fact}" for fact in facts if fact)


def _revoked_facts(result: "ProbeResult") -> list[str]:
    """What the --ca-dir inventory records revoked of the client's chain: the clause before its advice on CRLs."""
    return [f"{'it was ' if p.startswith('revoked') else ''}{p.rpartition('; ')[0]}"
            for p in result.client_withdrawn if "revoked on" in p and "; " in p]


def _unlisted_issuer(result: "ProbeResult") -> str | None:
    """That none of the client chain's issuers is among the CA names the server listed; None when one is, or
    it listed none. A server that lists a root takes a client whose chain (sent along) leads to it."""
    issuers = result.client_chain_issuers or [result.client_issuer]
    if not result.client_ca_names or set(issuers) & set(result.client_ca_names):
        return None
    if len(issuers) == 1:
        return f"its issuer {issuers[0]} is not among the CA names the server listed"
    return f"none of its chain's issuers ({', '.join(issuers)}) is among the CA names the server listed"


def _lax_purpose(result: "ProbeResult") -> str:
    """The note for a client certificate that is not for a TLS client (:func:`purpose_problem`) and got in:
    anyExtendedKeyUsage, which Go's crypto/x509 takes for clientAuth; another extendedKeyUsage without
    clientAuth; or (its EKU right) a keyUsage or nsCertType OpenSSL refuses, which Go does not look at."""
    eku, problem = result.client_eku, result.client_purpose
    if eku is not None and "clientAuth" not in eku and "anyExtendedKeyUsage" in eku:
        return (f"; beware: its extendedKeyUsage is {', '.join(eku)}, without clientAuth, yet it got in: this server "
                "takes anyExtendedKeyUsage as clientAuth (Go's crypto/x509 does, and so etcd; OpenSSL-based servers "
                "refuse it), or does not check a client certificate's purpose")
    if eku is not None and "clientAuth" not in eku:
        return (f"; beware: this is not a client certificate (extendedKeyUsage {', '.join(eku)}), so this server "
                "does not check a client certificate's purpose")
    if problem is None:
        return ""
    if problem.startswith("this is a CA certificate") and result.client_openssl_purpose is None:  # OpenSSL takes it
        return (f"; beware: {problem}: OpenSSL-based servers (nginx, Python's ssl) take it as a client certificate, "
                "as this one did, but rustls-based ones and certkit verify (cryptography's verifier) refuse it")
    return (f"; beware: {problem}, yet it got in: this server does not check a client certificate's purpose as "
            "OpenSSL does (Go's crypto/x509, etcd's among them, looks at the extendedKeyUsage alone)")


def _no_client_auth(result: "ProbeResult") -> str:
    """For a refused client certificate that is not for a TLS client (:func:`certkit.verify_purpose.purpose_problem`):
    that it is not, why, and the fix. An extendedKeyUsage without clientAuth (a server certificate given as a
    client's, the classic cluster mistake) is said as such: Go servers (etcd, Consul) say only "bad
    certificate", OpenSSL's "unsupported certificate"; a keyUsage or nsCertType OpenSSL refuses, or a CA
    certificate, in certkit verify's words. Empty when nothing in it rules a TLS client out."""
    eku, problem = result.client_eku, result.client_purpose
    if eku is not None and "clientAuth" not in eku:
        kind = "it is a server certificate" if eku == ["serverAuth"] else \
            f"its extendedKeyUsage is {', '.join(eku)}"
        return ("; the certificate given has no clientAuth in its extendedKeyUsage, so a server that checks a "
                f"client certificate's purpose refuses it ({kind}): give a client certificate (certkit "
                "issue-client), or a peer certificate for a cluster member (certkit issue-peer)")
    if problem is None or (problem.startswith("this is a CA certificate") and result.client_openssl_purpose is None):
        return ""  # OpenSSL takes it: not why it failed
    if result.client_openssl_purpose and problem.startswith("this is a CA certificate"):
        problem = f"{problem}, and {result.client_openssl_purpose}"
    return (f"; the certificate given is not for a TLS client: {problem}, so a server that checks a client "
            "certificate's purpose as OpenSSL does refuses it: give a client certificate (certkit issue-client)")


def _crl_cause(result: "ProbeResult", refused: str) -> str:
    """``refused`` with an alert's fixed words replaced when what probe holds shows they are not about the
    certificate: "certificate expired" of one in its dates is about a CA above it, named, when one is out of its
    dates; else OpenSSL's server sends it for its own expired CRL, and "unknown ca" when
    it checks CRLs and holds none for a CA of the chain (an intermediate's), though it lists that chain's CA."""
    expired, unknown = (f"alert {a}: {_ALERTS[a]}" for a in ("certificate expired", "unknown ca"))
    if refused.endswith(expired) and _date_fact(result) is None and (dated := result.client_validity.get("ca_dates")):
        return (refused[:-len(_ALERTS["certificate expired"])] + "the certificate given is in date (until "
                f"{moment_text(result.client_validity['not_after'])}), but {dated[0]}: a chain through it is out of "
                "date; give the chain of the CA's current certificate (the fullchain.pem of a bundle issued or "
                "renewed since)")
    if refused.endswith(expired) and result.client_validity.get("chain_in_date") and _date_fact(result) is None:
        return (refused[:-len(_ALERTS["certificate expired"])] + "the certificate given is in date (until "
                f"{moment_text(result.client_validity['not_after'])}), and OpenSSL servers send this alert for an "
                "expired CRL too: the server's CRL (ssl_crl, -CRL) has most likely expired; publish a new one (certkit "
                "crl) and have the server load it")
    complete = result.client_missing_issuer is None or result.client_missing_issuer in result.client_ca_names
    if refused.endswith(unknown) and result.client_ca_names and _unlisted_issuer(result) is None and complete:
        return (refused[:-len(_ALERTS["unknown ca"])] + "the server lists a CA of the chain given by name; OpenSSL "
                "servers send this alert when the CAs they verify with are not the CAs they list (the names come "
                "from another file: openssl s_server -CAfile and -verifyCAfile, Apache SSLCADNRequestFile and "
                "SSLCACertificateFile), when the CA they hold of that name did not sign the chain (another CA of "
                "the same name), and when they check CRLs and hold none for a CA of the chain (an intermediate's): "
                "check which CAs the server verifies with, and give it the CRL of every CA in the chain (certkit crl)")
    return refused


def _date_fact(result: "ProbeResult") -> str | None:
    """That the client certificate is outside its validity period, in words; None when it is in date."""
    validity = result.client_validity
    if validity.get("status") == "expired":
        return f"it expired on {moment_text(validity['not_after'])}"
    if validity.get("status") == "not yet valid":
        return f"it is not valid before {moment_text(validity['not_before'])}"
    return None


def _out_of_date(result: "ProbeResult") -> str:
    """The note for a client certificate outside its validity period that got in anyway (openssl s_server
    without -verify_return_error only logs "certificate has expired"): empty when it is in date."""
    when = _date_fact(result)
    return "" if when is None else \
        f"; beware: {when}, yet it got in: this server does not check a client certificate's validity dates"


def _missing_intermediate(result: "ProbeResult", refused: str) -> str:
    """For a refusal of the certificate as unverifiable (OpenSSL's ``unknown ca`` or ``bad certificate`` alert,
    nginx's HTTP 400 "The SSL certificate error"), when the client's file lacks the certificate of the CA
    that issued the top of its chain and the server did not list that CA: that it is most likely an
    intermediate that must be sent (fullchain.pem), certain when its certificate is known (the CA given,
    the bundle's chain.pem)."""
    missing = result.client_missing_issuer
    unverified = refused.endswith((f"alert unknown ca: {_ALERTS['unknown ca']}",
                                   f"alert bad certificate: {_ALERTS['bad certificate']}")) \
        or refused.startswith("HTTP 400: The SSL certificate error")
    if not unverified or missing is None or missing in result.client_ca_names:
        return ""
    listed = f" (it lists {'; '.join(result.client_ca_names)})" if result.client_ca_names else ""
    send = "give fullchain.pem, which holds it (--cert fullchain.pem, or --bundle)"
    if result.client_missing_is_intermediate:
        return (f"; the client sent its certificate without its intermediate CA, {missing}, which the server "
                f"does not list{listed}: {send}")
    if result.client_missing_is_intermediate is False or not result.client_ca_names:  # its bundle ends there
        return ""
    return (f"; its issuer {missing} is not among the CA names the server listed{listed}, and the file given holds "
            f"no certificate of it: if {missing} is an intermediate CA, the client must send it too: {send}")


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


def client_problem(result: "ProbeResult") -> str | None:
    """What keeps the given client certificate from being known as accepted, for the exit status; None if
    it was accepted (or none was given)."""
    if result.with_cert is None or result.client_accepted:
        return None
    if not result.requests_client_cert:
        return MISDIRECTED_PROBLEM if misdirected(result.with_cert, result.target) else \
            "the server never asked for the client certificate, so it was not sent"
    if result.with_cert.not_sent:
        return ("the client certificate was not sent: no signature algorithm the server's certificate request "
                "allows fits its key")
    if result.client_accepted is False:
        return "the client certificate is refused"
    if (why := unclear(result.with_cert)) is not None:
        return f"the server gave no HTTP answer ({why}), so whether it accepts the client certificate is not known"
    return (f"the server answered HTTP {result.with_cert.http_status}, so whether it accepts the client "
            "certificate is not known")


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
