"""Which identifiers an ACME client may order: certkit's name rules, the CA's name constraints,
``--allow-domain`` and ``--allow-ip``.

DNS identifiers go through :func:`certkit.names.parse_host`, exactly as
``issue-server`` parses its names, and come back in their canonical form
(lowercase A-labels); IP identifiers (RFC 8738) are refused unless an
``--allow-ip`` range holds them. Wildcards are refused: only dns-01 may
validate them (RFC 8555 7.1.3), and this server offers http-01 and
tls-alpn-01. Each refusal is a ``rejectedIdentifier`` (or
``unsupportedIdentifier``) subproblem naming the identifier and the reason.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from certkit import names as _names
from certkit.acme.problems import Problem
from certkit.constraints_parsing import parse_domain, parse_network
from certkit.errors import InvalidName, NameNotPermitted, acme_text

# Let's Encrypt's limit; a certificate with more names is a configuration mistake more often than not.
MAX_IDENTIFIERS = 100
# An order's list of identifiers is read entry by entry (repeats are merged, then counted) up to
# this many entries; a longer one is refused unread.
MAX_ENTRIES = 10 * MAX_IDENTIFIERS


@dataclass(frozen=True)
class Policy:
    """What may be ordered. No ``allow_domains`` means any DNS name the CA may sign;
    no ``allow_ips`` means no IP address at all."""

    allow_domains: tuple[str, ...] = ()
    allow_ips: tuple = ()  # ipaddress networks

    @classmethod
    def build(cls, domains: Iterable[str] = (), ips: Iterable[str] = ()) -> "Policy":
        """Parse ``--allow-domain`` suffixes and ``--allow-ip`` CIDR ranges; InvalidName if one is bad."""
        parsed = []
        for suffix in domains:
            if suffix.strip().startswith("*."):
                raise InvalidName(f"'{_names._show(suffix)}': --allow-domain takes a domain suffix such as "
                                  "example.com (it covers its subdomains), not a wildcard.")
            parsed.append(parse_domain(suffix))
        networks = [parse_network(text) for text in ips]  # as init-ca --permit-ip: no host bits
        return cls(tuple(dict.fromkeys(parsed)), tuple(networks))

    def check_within(self, ca) -> None:
        """Refuse an ``--allow-domain`` or ``--allow-ip`` that reaches outside the CA's name
        constraints: the server would advertise names every order for which is refused."""
        from cryptography import x509

        from certkit.constraints import describe

        if _permits_no_dns(ca) and not self.allow_ips:  # every order would be refused
            raise NameNotPermitted(f"CA '{_names._show(ca.common_name)}' permits no DNS names, only IP ranges "
                                   f"({'; '.join(describe(nc) for nc in ca.constraints())}), and this server allows "
                                   "no IP address: every order would be refused. Give --allow-ip with a range inside "
                                   "the CA's.")
        for domain in self.allow_domains:
            try:
                ca.check_permitted([_names.Identity("dns", domain)])
            except NameNotPermitted as exc:
                raise NameNotPermitted(f"--allow-domain {domain}: {exc}") from None
        for net in self.allow_ips:
            for nc in ca.constraints():
                allowed = [c.value for c in nc.permitted_subtrees or [] if isinstance(c, x509.IPAddress)]
                denied = [c.value for c in nc.excluded_subtrees or [] if isinstance(c, x509.IPAddress)]
                if (allowed and not any(p.version == net.version and net.subnet_of(p) for p in allowed)) \
                        or any(d.version == net.version and net.overlaps(d) for d in denied):
                    raise NameNotPermitted(f"--allow-ip {net}: '{net}' is not within the name constraints of "
                                           f"CA '{_names._show(ca.common_name)}' ({describe(nc)}).")

    def describe(self, ca=None) -> str:
        domains = ", ".join(self.allow_domains) if self.allow_domains else \
            "none (the CA permits none)" if ca is not None and _permits_no_dns(ca) else "any DNS name the CA may sign"
        ips = ", ".join(map(str, self.allow_ips)) if self.allow_ips else "none"
        return f"DNS names: {domains}; IP addresses: {ips}"

    def check_identifiers(self, ca, identifiers) -> list[dict]:
        """The canonical identifiers of a new order, repeats merged (at most :data:`MAX_IDENTIFIERS`
        of them), or a Problem naming each refused one."""
        if not isinstance(identifiers, list) or not identifiers:
            raise Problem("malformed", "A new order needs a non-empty list of identifiers.")
        if len(identifiers) > MAX_ENTRIES:  # not worth reading one by one
            raise Problem("rejectedIdentifier", f"An order may name at most {MAX_IDENTIFIERS} identifiers; this "
                                                f"one sends {len(identifiers)} entries.")
        accepted: list[dict] = []
        refused: list[Problem] = []
        for ident in identifiers:
            try:
                canonical = self.check(ca, ident)
            except Problem as problem:
                refused.append(problem)
                continue
            if canonical not in accepted:
                accepted.append(canonical)
        if refused:
            first = refused[0]
            if len(refused) == 1:
                raise Problem(first.kind, first.detail, subproblems=refused)
            raise Problem(first.kind, f"{len(refused)} of the order's identifiers are refused; "
                                      f"the first: {first.detail}", subproblems=refused)
        if len(accepted) > MAX_IDENTIFIERS:  # counted once merged: repeats and case variants are one name
            raise Problem("rejectedIdentifier", f"An order may name at most {MAX_IDENTIFIERS} identifiers, not "
                                                f"{len(accepted)} (counted once repeats are merged).")
        return accepted

    def check(self, ca, ident) -> dict:
        if not isinstance(ident, dict) or not isinstance(ident.get("type"), str) \
                or not isinstance(ident.get("value"), str):
            raise Problem("malformed", "An identifier must be an object with string 'type' and 'value'.")
        kind, value = ident["type"], ident["value"]
        shown = {"type": kind, "value": value}
        if kind == "dns":
            identity = self._dns(value, shown)
        elif kind == "ip":
            identity = self._ip(value, shown)
        else:
            raise Problem("unsupportedIdentifier", f"Identifiers of type '{_names._show(kind)}' are not "
                                                   "issued here; use 'dns' or 'ip'.", identifier=shown)
        try:
            ca.check_permitted([identity])
        except NameNotPermitted as exc:
            raise Problem("rejectedIdentifier", acme_text(exc), identifier=shown) from None
        return {"type": kind, "value": identity.value}

    def _dns(self, value: str, shown: dict) -> _names.Identity:
        identity = _parse_host(value, shown)
        if identity.kind == "ip":
            raise Problem("malformed", f"'{identity.value}' is an IP address: order it as an identifier of type "
                                       "'ip' (RFC 8738), not 'dns'.", identifier=shown)
        if identity.is_wildcard:
            raise Problem("rejectedIdentifier", f"'{_names._show(value)}' is a wildcard, which only the dns-01 "
                                                "challenge can authorize; this server offers http-01 and "
                                                "tls-alpn-01.", identifier=shown)
        if value.lower() != identity.value:
            raise Problem("rejectedIdentifier", f"'{_names._show(value)}' is not in canonical form; order it as "
                                                f"'{identity.value}'.", identifier=shown)
        if self.allow_domains and not any(_within(identity.value, d) for d in self.allow_domains):
            raise Problem("rejectedIdentifier", f"'{identity.value}' is outside the domains this ACME server "
                                                f"issues for ({', '.join(self.allow_domains)}).", identifier=shown)
        return identity

    def _ip(self, value: str, shown: dict) -> _names.Identity:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise Problem("malformed", f"'{_names._show(value)}' is not an IP address.", identifier=shown) from None
        if getattr(address, "scope_id", None) is not None:  # fe80::1%eth0: means something on one host only
            raise Problem("rejectedIdentifier", f"'{_names._show(value)}' has a zone (%{address.scope_id}), which "
                                                "cannot go in a certificate: it names an address on one host only.",
                          identifier=shown)
        _parse_host(value, shown)  # the rules every command applies: no unspecified, multicast, IPv4-mapped address
        if str(address) != value:  # RFC 8738: the canonical text form
            raise Problem("rejectedIdentifier", f"'{_names._show(value)}' is not in canonical form; send "
                                                f"'{address}'.", identifier=shown)
        if not self.allow_ips:
            raise Problem("rejectedIdentifier", f"IP address identifiers ('{address}') are not issued by this "
                                                "server; it was started without --allow-ip.", identifier=shown)
        if not any(address.version == net.version and address in net for net in self.allow_ips):
            raise Problem("rejectedIdentifier", f"'{address}' is outside the IP ranges this ACME server issues "
                                                f"for ({', '.join(map(str, self.allow_ips))}).", identifier=shown)
        return _names.Identity("ip", str(address))


def _parse_host(value: str, shown: dict) -> _names.Identity:
    """The name rules of every command, an order's refusal when they refuse ``value``."""
    try:
        return _names.parse_host(value)
    except InvalidName as exc:
        raise Problem("rejectedIdentifier", acme_text(exc), identifier=shown) from None


def _within(name: str, suffix: str) -> bool:
    return name == suffix or name.endswith("." + suffix)


def same_names(csr_identities: Sequence[_names.Identity], identifiers: Sequence[dict]) -> bool:
    """Whether a CSR names exactly the order's identifiers (no more, no fewer; order and case aside)."""
    wanted = {(i["type"], i["value"].lower()) for i in identifiers}
    given = {(i.kind, i.value.lower()) for i in csr_identities}
    return wanted == given


def _permits_no_dns(ca) -> bool:
    """Whether ``ca``'s name constraints (or a CA's above it) permit no DNS name at all: an IP-only CA, whose
    permitted DNS subtree is the placeholder :func:`certkit.constraints.no_names` recognizes."""
    from cryptography import x509

    from certkit.constraints import no_names

    for nc in ca.constraints():
        dns = [c.value for c in nc.permitted_subtrees or [] if isinstance(c, x509.DNSName)]
        if dns and all(no_names(d) for d in dns):
            return True
    return False
