"""``certkit probe``'s verdicts on a client certificate: what the server did without one, what it did with the
one given, and why it refused it (its purpose, its dates, a revocation, a missing intermediate, an issuer the
server does not list, the server's own CRL), in the words :mod:`certkit.probe_report` prints.

Everything taken from the server is escaped where the report prints it (:func:`certkit.text.shown`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from certkit.probe_alerts import _ALERTS, CLOSED, refusal, unclear
from certkit.probe_http import MISDIRECTED_PROBLEM, misdirected
from certkit.vocabulary import moment_text

if TYPE_CHECKING:
    from certkit.probe import ProbeResult


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
