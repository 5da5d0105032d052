"""``certkit probe``'s judgement of the server's certificate, from what its first connection saw: OpenSSL's
verdict (and, when the chain is out of its dates, which certificate is), its purpose and names, the OCSP response it
stapled; with the CA known, certkit verify's reasons, and with a CA directory its inventory's (a revocation).

The connections are :mod:`certkit.probe`'s; the words of the verdict, :mod:`certkit.probe_report`'s."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from certkit.anchors import recorded_cas, withdrawn
from certkit.probe_report import server_side
from certkit.probe_staple import staple_verdict
from certkit.pyossl import x509_error
from certkit.verify_names import name_problem

if TYPE_CHECKING:
    from pathlib import Path

    from certkit.probe import ProbeResult, _Seen



def _judge_server(result: ProbeResult, seen: _Seen, roots: list, ca_dir: Path | None, now: dt.datetime | None,
                  known: list) -> None:
    """The server's certificate judged: OpenSSL's verdict, its purpose and names; with the CA known, certkit
    verify's reasons, and with a CA directory its inventory's verdict (a revocation) too. ``known``: the
    CA directory's intermediates (not trusted: the server must send them)."""
    leaf, target = seen.chain[0], result.target
    result.verify_errors = list(dict.fromkeys(x509_error(code, depth) for code, depth in seen.errors))
    result.verified = not seen.errors
    result.out_of_date = _out_of_date(result, seen)
    own = result.chain[0]
    is_ca = bool(own["basic_constraints"] and own["basic_constraints"]["ca"])
    eku = own["extended_key_usage"]  # None: no extension, which TLS reads as "any purpose"
    # anyExtendedKeyUsage alone does not do: OpenSSL and certkit verify refuse it for TLS, as browsers do
    result.server_auth = not is_ca and (eku is None or "serverAuth" in eku)
    result.ca_as_server = is_ca and result.verified and (eku is None or "serverAuth" in eku)
    result.name_matches = name_problem(leaf, "server", target.host) is None
    result.staple, result.staple_problem = staple_verdict(seen.chain, roots + known, seen.errors.stapled, now)
    if result.pinned:  # no chain to judge: the certificate itself, as OpenSSL took it
        from certkit.verify import pinned_problems

        result.reasons = pinned_problems(leaf, purpose="server", name=target.host, now=now)
    elif roots:
        from certkit.verify import verify_certificate
        from certkit.vocabulary import is_ca

        # The CAs of a --ca-file (a leaf in it only pins, and pins only the server's own certificate)
        verdict = verify_certificate(leaf, purpose="server", roots=[r for r in roots if is_ca(r)],
                                     intermediates=seen.chain[1:],
                                     name=target.host, now=now, sender="server",
                                     recorded=recorded_cas(ca_dir) if ca_dir is not None else None)
        result.reasons = [server_side(r, leaf, known) for r in verdict.reasons]
        if ca_dir is not None:
            result.withdrawn = [server_side(r, leaf) for r in withdrawn(ca_dir, seen.chain, fail_closed=True,
                                                                    by_server=True)]
            result.reasons += [r for r in result.withdrawn if r not in result.reasons]
    else:
        if not result.name_matches:
            result.reasons.append(f"not valid for name {target.host}")
        if not result.server_auth:
            result.reasons.append(f"not for a TLS server: {result.chain[0]['usable_for']}")


def _out_of_date(result: ProbeResult, seen: _Seen) -> str | None:
    """Why OpenSSL found the chain out of its dates, for the error: the server's own certificate, or, that one in
    its dates, the CA above it that is not (an expired intermediate, or root), named, and where it came from."""
    import datetime as dt

    from certkit.verify_names import ca_date_problem

    dated = sorted((depth, code) for code, depth in seen.errors if code in (9, 10))  # not yet valid, expired
    if not dated:
        return None
    depth, code = dated[0]
    ca = seen.errors.at.get(depth)
    words = ca_date_problem(ca, depth, dt.datetime.now(dt.UTC)) if depth and ca is not None else None
    if words is None:
        return f"the server's certificate is not valid now ({x509_error(code, depth)})"
    whence = "the server sends it" if ca in seen.chain else f"not sent: taken from {result.trust}"
    return (f"the server's certificate is in its dates, but {words} ({whence}; OpenSSL: {x509_error(code, depth)}), "
            "and clients refuse a chain through it")
