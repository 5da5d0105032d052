"""The domains and IP ranges a constrained CA permits, as given (init-ca --permit-dns and --permit-ip, acme serve
--allow-domain and --allow-ip, ``CA.create(permitted_dns=..., permitted_ips=...)``): parsed, each once, with a
sentence for what stands where one should be (a URL, a list in one value, a domain where ranges go, a range in
another script's digits, addresses no certificate names). :mod:`certkit.constraints` builds and checks them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from certkit.constraints import no_names
from certkit.errors import InvalidName
from certkit.text import shown


def parse_network(text: str):
    _refuse_a_list(text, "IP ranges")
    address = str(text).strip().partition("/")[0]
    if "%" in address and ":" in address:  # Python keeps the zone, and a certificate would lose it
        raise InvalidName(f"'{shown(text)}' has an IPv6 zone (%{shown(address.partition('%')[2])}): a zone only means "
                          "something on one host and cannot go in a certificate; give the range without it.")
    try:
        network = ipaddress.ip_network(str(text).strip(), strict=True)
    except ValueError as exc:
        from certkit.names_dns import parse_dns_name

        try:
            domain = parse_dns_name(str(text), allow_wildcard=False).value if "/" not in str(text) else None
        except InvalidName:
            domain = None
        if domain:  # a domain given where IP ranges go: it has its own option
            raise InvalidName(f"'{shown(text)}' is a domain, not an IP range: domains are permitted apart from "
                              "IP ranges (init-ca --permit-dns, acme serve --allow-domain, CA.create(permitted_dns="
                              "...)).") from None
        _refuse_other_digits(str(text))
        whole = f" (the range that holds it is {_network_of(text)})" if "host bits set" in str(exc) else ""
        raise InvalidName(f"'{shown(text)}' is not an IP range in CIDR form (as in 10.0.0.0/8): {exc}{whole}.") \
            from None
    from certkit.names_notation import refuse_an_ipv4_range_as_ipv6

    refuse_an_ipv4_range_as_ipv6(str(text), network)  # ::ffff:10.0.0.0/104, ::10.0.0.0/104: no address certified
    for kind, whole in _NO_PEERS:
        if network.version == whole.version and network.subnet_of(whole):
            raise InvalidName(f"'{shown(text)}' holds only {kind}, which no TLS connection goes to and no certificate "
                              "names (an address of it is refused); give the range of the hosts' own addresses.")
    return network


# Ranges of addresses no certificate names (names.py refuses each of them): multicast, broadcast, unspecified.
_NO_PEERS = [(kind, ipaddress.ip_network(net)) for kind, net in (
    ("multicast addresses", "224.0.0.0/4"), ("multicast addresses", "ff00::/8"),
    ("the broadcast address", "255.255.255.255/32"), ("the unspecified address", "0.0.0.0/32"),
    ("the unspecified address", "::/128"))]


def parse_domain(text: str) -> str:
    """A domain covering itself and its subdomains (--permit-dns, acme serve --allow-domain), as an A-label name."""
    from certkit import names
    from certkit.names_dns import parse_dns_name

    _refuse_a_list(text, "domains")
    if (network := names._network(str(text).strip())) is not None:  # an address or a range: it has its own option
        raise InvalidName(f"'{shown(text)}' is {'an IP address' if '/' not in str(text) else 'a range of IP addresses'}"
                          f", not a domain: IP ranges are permitted apart from domains (init-ca --permit-ip {network}, "
                          f"acme serve --allow-ip {network}, CA.create(permitted_ips=...)).")
    if str(text).strip().startswith("."):  # how some tools write "the subdomains": refused with the form to give
        if not (bare := str(text).strip().lstrip(".")):  # "." alone: nothing is left to suggest
            raise InvalidName(f"'{shown(text)}' holds no domain, only dots; give a domain, as in example.com.")
        try:  # the form to give is offered only if it is one: never '*.example.com', '10.0.0.0/8' or '/x'
            parse_domain(bare)
        except InvalidName as exc:
            raise InvalidName(f"'{shown(text)}' starts with a dot, and is no domain without it either: {exc}") from None
        raise InvalidName(f"'{shown(text)}' starts with a dot: a domain covers itself and its subdomains, so give "
                          f"'{shown(bare)}' without it.")
    return parse_dns_name(text, allow_wildcard=False).value


def _refuse_other_digits(text: str) -> None:
    """Refuse an IP range written in another script's digits (١٠.0.0.0/8), naming it in ASCII digits."""
    from certkit.names_notation import in_ascii_digits

    try:
        network = ipaddress.ip_network(read[0].strip(), strict=False) if (read := in_ascii_digits(text)) else None
    except ValueError:
        return
    if network:
        raise InvalidName(f"'{shown(text)}' is {read[0]} written in {read[1]} digits; an IP range is written in ASCII "
                          f"digits: give '{network}'.")


def _network_of(text: str):
    return ipaddress.ip_network(str(text).strip(), strict=False)


def _refuse_a_list(text: str, what: str) -> None:
    """Refuse a URL (naming its host), or several domains or IP ranges in one value (``a.example,b.example``)."""
    from certkit.names_notation import refuse_a_url_for
    refuse_a_url_for(str(text), "a domain" if what == "domains" else "an IP range")
    parts = [part for part in re.split(r"[,;\s]+", str(text)) if part]
    if len(parts) > 1:
        raise InvalidName(f"'{shown(text)}' holds {len(parts)} {what} ({', '.join(map(repr, parts))}); give each on "
                          "its own (the option once for each, or each as an item of a list).")


def parse_permitted(domains: Iterable[str], networks: Iterable[str]) -> tuple[list[str], list]:
    """A CA's permitted DNS names (A-labels, no wildcard) and IP ranges, each once, in any case."""
    from certkit import names

    dns = list(dict.fromkeys(parse_domain(d) for d in names.name_list(domains, "permitted_dns")))
    for domain in filter(no_names, dns):  # it would read as "no DNS names", a CA permitting IP addresses alone
        raise InvalidName(f"'{domain}' cannot be a permitted domain: it is reserved (RFC 6761) and names no host; "
                          "to permit no DNS name at all, permit IP addresses alone.")
    return dns, list(dict.fromkeys(parse_network(n) for n in names.name_list(networks, "permitted_ips")))
