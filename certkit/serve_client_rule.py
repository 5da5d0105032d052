"""The rule ``certkit serve``'s page says this server applied to the visitor's certificate: one line each for the
CA that signed it, its dates, its purpose, its revocation (whose inventory was read, and what it holds) and the
identity a server maps from it, each true of this certificate, a line it breaks saying how."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from certkit.serve_json import supplied_line, time_problem, unchecked_line
from certkit.serve_page import _e

if TYPE_CHECKING:
    from certkit.serve_json import PeerIdentity
    from certkit.serve_page import ServerFacts, Visit


def _client_rule(server: ServerFacts, visit: Visit) -> str:
    failed = frozenset() if visit.authenticated else visit.failed
    cert, causes = visit.client, visit.causes

    def item(key: str, text: str, why: str = "") -> str:
        """A line of the rule; one this certificate breaks says how, in words (not by its colour alone)."""
        if key not in failed:
            return f"<li>{text}</li>"
        return f'<li class="failed">{text}' + (f"; <strong>{why}</strong>" if why else "") + "</li>"

    if cert.eku or "purpose" in failed:  # OpenSSL's sslclient purpose: the EKU, and the keyUsage too
        purpose = ("its extendedKeyUsage includes <code>clientAuth</code>, and its keyUsage, if it has one, "
                   "<code>digitalSignature</code> or <code>keyAgreement</code>")
    else:  # OpenSSL takes a certificate without the extension for any purpose, as it took this one
        purpose = ("it has no extendedKeyUsage, which TLS reads as “any purpose”, so "
                   "<code>clientAuth</code> too (certkit issues client certificates with <code>clientAuth</code>)")
    return ('<h3>The rule this server applied</h3><ul class="rule">'
            + item("ca", _signed_by(server, visit), _e(causes.get("ca") or _not_chained(server, cert)))
            + item("time", "valid now, not expired",  # its own dates, or (named) those of a CA above it
                   _e(causes.get("time") or f"it {time_problem(cert) or 'is outside its dates'}"))
            + item("purpose", purpose, _e(causes["purpose"]) if "purpose" in causes else _client_purpose_failure(cert))
            + _revocation_rule(server, visit, item)
            + _identity_rule(cert) + "</ul>")


def _identity_rule(cert) -> str:
    if cert.common_name:
        return "<li>then your identity is its subject (the CN), as nginx, PostgreSQL or Mosquitto would map it</li>"
    return ("<li>then your identity would be its CN, which it has none of: PostgreSQL and Mosquitto map no user "
            f"from it; nginx's <code>$ssl_client_s_dn</code> holds its subject, <code>{_e(cert.subject)}</code></li>")


def _not_chained(server: ServerFacts, cert) -> str:
    if cert.issuer == server.client_ca:  # the name of the CA this server trusts, from another key
        return f"it names {cert.issuer} as its issuer, but another CA of that name signed it"
    return f"it is signed by {cert.issuer}, and does not chain to that CA"


def _signed_by(server: ServerFacts, visit: Visit) -> str:
    """The CA line of the rule, true of this certificate: the CA that signed it, and, when that is an intermediate
    CA, the chain that leads from it to the CA this server trusts (as the handshake verified it)."""
    trusts = "the CA this server trusts for clients"
    if len(visit.chain) < 2:
        return f"signed by <code>{_e(visit.chain[0] if visit.chain else server.client_ca)}</code>, {trusts}"
    through = "".join(f", under <code>{_e(ca)}</code>" for ca in visit.chain[1:-1])
    supplied = "" if (line := supplied_line(visit)) is None else f"; {_e(line)}"
    return (f"signed by <code>{_e(visit.chain[0])}</code>, an intermediate CA{through}, whose chain leads to "
            f"<code>{_e(visit.chain[-1])}</code>, {trusts}{supplied}")




def _revocation_rule(server: ServerFacts, visit: Visit, item) -> str:
    """The revocation line, true of this certificate: whose inventory was read, and what it holds of its chain."""
    if (unchecked := unchecked_line(server)) is not None:
        return f"<li>{html.escape(unchecked)}</li>"
    ca, inventory = _e(server.revocation_ca or server.client_ca), visit.inventory
    if inventory is None:  # refused for another reason before the inventory was read: nothing known of it
        return (f"<li>not checked for revocation: this server reads <code>{ca}</code>’s inventory, at each "
                "connection, only once the rest passes, and this certificate failed before that</li>")
    if visit.inventory.unrecorded:
        return item("unrecorded", f"recorded by <code>{ca}</code>: its inventory has no record of this certificate, "
                                  "so it was not issued through certkit (this is not a revocation)")
    if not inventory.under:
        return (f"<li>not checked for revocation: it is not under <code>{ca}</code>, the only CA whose inventory "
                "this server reads</li>")
    if inventory.problems:
        return item("revoked", "not revoked", _e(inventory.problems[0]))
    held = ", ".join(inventory.held)
    if inventory.leaf_held:
        whose = f"holds {_e(held)} (<code>certkit revoke</code> counts at once)"
    elif inventory.leaf_below:
        whose = (f"holds {_e(held) or 'none of its chain'}, and leads to the inventory of the intermediate CA that "
                 "issued your certificate, read too, which holds it (<code>certkit revoke</code> there counts at once)")
    else:
        whose = (f"holds {_e(held) or 'none of its chain'}; your certificate itself is recorded by its issuing CA, "
                 "whose inventory this server does not read (a revocation there reaches it only through a CRL)")
    return item("revoked", f"not revoked: <code>{ca}</code>’s inventory, read at each connection, {whose}")


def _client_purpose_failure(cert: "PeerIdentity") -> str:
    """Why a client certificate's purpose line fails, in words: the usages it has instead."""
    if cert.eku and "clientAuth" not in cert.eku:
        return f"its extendedKeyUsage is {_e(', '.join(cert.eku))}, without clientAuth"
    return "OpenSSL does not take it to prove a client (a CA certificate, or a purpose it refuses)"
