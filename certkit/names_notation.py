"""A host written in another notation than a host's, refused in words that give the host to write instead.

What people paste when they mean a host name or an address: a URL, a host with its port, an email address,
a subjectAltName entry as certkit itself, openssl and keytool print one (``DNS:web.example``, ``IP:10.0.0.1``,
``IP Address:10.0.0.1``, ``DNSName: web.example``, ``IPAddress: 10.0.0.1``), several names in one argument
(``a.example,b.example``, as etcd's ``--initial-advertise-peer-urls`` and openssl's ``-addext subjectAltName=``
write lists), a Redis cluster node as CLUSTER NODES writes it (``10.0.0.21:6379@16379,redis-0.internal``), a
``NAME=VALUE`` pair (an etcd ``--initial-cluster`` member, ``etcd-1=https://10.0.0.1:2380``; a
subject attribute, ``CN=web``), and an IPv4 address in a form other than four decimal numbers (``127.1``,
``0x7f000001``, ``2130706433``: curl and browsers read each as 127.0.0.1, so they match only a certificate that
names 127.0.0.1).
Read as a host, each would be refused for a reason beside the point ("not a valid IPv6 address", "it has 7
parts"), or read as one host of several (the first URL of a list).
"""

from __future__ import annotations

import re

from certkit.errors import CertkitError, InvalidName, cli_worded
from certkit.names import _URI_SCHEME, _show
from certkit.text import is_digits

# A subjectAltName entry's type as certkit (list, inspect, issue-*), openssl (-text, -addext: DNS, IP Address) and
# Java's keytool (-printcert: DNSName, IPAddress) and browsers' viewers (DNS Name) write it.
_SAN_PREFIX = re.compile(r"^(dns|dns[ _]?name|ip|ip[ _]?address|email|rfc822[ _]?name|uri|dirname|othername|"
                         r"registeredid)\s*:\s*", re.IGNORECASE)
_SEPARATORS = re.compile(r"[,;\s]+")


def refuse_what_is_not_a_host(text: str) -> None:
    """Refuse ``text`` (stripped) when it is written in a notation that is not a host's (see the module)."""
    refuse_a_redis_node(text)
    rest = text[prefix.end():] if (prefix := _SAN_PREFIX.match(text)) else ""
    if rest and not _SEPARATORS.search(rest) and not is_digits(rest):  # dns:53 is a host named dns, a port
        _refuse_a_typed(text, rest, _refused_too(rest))
    _refuse_a_list(text)
    _refuse_a_setting(text)
    scheme = _URI_SCHEME.match(text)
    if scheme and "//" in text:
        raise InvalidName(f"'{_show(text)}' is a URL; a certificate names the host alone{_host_hint(text)}. "
                          f"The scheme, port and path are not part of it.{_refused_too(_url_host(text)[0])}")
    if "@" in text:  # the fix in the library's words; the command line says its own (cli_message)
        fix = f"ca.issue_client(NAME, emails=['{_show(text)}'])"
        raise cli_worded(InvalidName(f"'{_show(text)}' is an email address, not a host name. A certificate for a "
                                     f"person or a mailbox is a client certificate: {fix}."), fix,
                         f"'certkit issue-client NAME --email {_show(text)}'",
                         "which an ACME server does not issue (it issues server certificates for DNS names and IP "
                         "addresses)")
    _refuse_a_network_or_port(text)


def host_in_notation(text: str) -> tuple[str, str] | None:
    """The host ``text`` holds when it is written in a URL's, a port's or a URL's brackets' notation (a peer URL,
    ``etcd-1:2380``, ``[2001:db8::11]``: what etcd and Redis settings write), or the IPv4 address it is in another
    notation (``::ffff:10.0.0.5``, as dual-stack sockets log a peer; ``127.1``), with what parsing it as a host says
    of it (the host to give instead); None for a host alone, an email address, or anything else."""
    from urllib.parse import urlsplit

    from certkit.names import parse_host

    try:
        host = urlsplit(text if "//" in text else "//" + text).hostname
    except ValueError:
        return None
    if not host or host == text.lower():  # no notation around it ('::ffff:10.0.0.5' has no host to urlsplit)
        host = _ipv4_meant(text)
    if ("@" in text and "//" not in text) or not host:
        return None
    try:
        parse_host(text)
    except CertkitError as exc:
        return host, str(exc)
    return None


def _ipv4_meant(text: str) -> str | None:
    """The IPv4 address ``text`` is in IPv6's IPv4-mapped form or as curl and browsers read a number (``127.1``)."""
    import ipaddress

    try:
        mapped = getattr(ipaddress.ip_address(text), "ipv4_mapped", None)
    except ValueError:
        mapped = url_ipv4(_as_browsers_map(text))
    return str(mapped) if mapped is not None else None


# A node of a Redis cluster as CLUSTER NODES and nodes.conf write it: ADDRESS:PORT@BUS-PORT, then ',HOSTNAME' when
# the node announces one (Redis 7); the address is an IPv6 one without brackets (::1:6379@16379), or empty if unknown.
_REDIS_NODE = re.compile(r"(?P<address>[^@,\s]*):(?P<port>[0-9]+)@(?P<bus>[0-9]+)(?:,(?P<hostname>[^,@\s]*))?\Z")


def refuse_a_redis_node(text: str) -> None:
    """Refuse ``text`` when it is a Redis cluster node's address as CLUSTER NODES writes it
    (``127.0.0.1:6379@16379,redis-0.redis.internal``), naming the hosts it holds: read as a host, it was an
    email address (for its '@') or a list (for its ',')."""
    if not (node := _REDIS_NODE.match(text)):
        return
    hosts = [host for host in (node["address"], node["hostname"]) if host]
    give = " and ".join(f"'{_show(host)}'" for host in hosts)
    alone = f"the host{'s' if len(hosts) > 1 else ''} alone ({give}), and is valid on every port"
    raise InvalidName(f"'{_show(text)}' is a Redis cluster node as CLUSTER NODES writes it (address:port@cluster-bus-"
                      f"port{',hostname' if node['hostname'] is not None else ''}), not a host; a certificate names "
                      + (f"{alone}." if hosts else "the node's host name or address, which this one does not say (the "
                         "node knows no address).") + _refused_too(*hosts))


def refuse_a_typed_entry(text: str, fits) -> None:
    """Refuse ``text``, an email address or a URI to certify, when it is a subjectAltName entry with its type
    (``URI:spiffe://example.org/a``, ``email:alice@example.com``) whose value ``fits``: certified as it is,
    ``URI:spiffe://...`` would be a URI of the scheme 'URI', no SPIFFE ID."""
    if rest := typed_value(text, fits):
        _refuse_a_typed(text, rest)


def typed_value(text: str, fits) -> str | None:
    """The value of ``text`` when it is a subjectAltName entry with its type whose value ``fits``, else None."""
    prefix = _SAN_PREFIX.match(text)
    return rest if prefix and fits(rest := text[prefix.end():]) else None


def is_a_uri(text: str) -> bool:
    return _URI_SCHEME.match(text) is not None


def _refuse_a_typed(text: str, rest: str, refused: str = "") -> None:
    raise InvalidName(f"'{_show(text)}' is a subjectAltName entry as certkit, openssl and keytool print one; a name "
                      f"is given without its type ('{_show(rest)}'), which certkit finds out itself.{refused}")


def _refuse_a_list(text: str) -> None:
    parts = [part for part in _SEPARATORS.split(text) if part]
    # Commas and semicolons separate a list; spaces alone only names that each look like a host (dots, colons),
    # not a typo in one name ('exa mple.com', refused for its label).
    if len(parts) < 2 or (not re.search(r"[,;]", text) and not all(set(part) & {".", ":"} for part in parts)):
        return
    shown = ", ".join(f"'{_show(part)}'" for part in parts)
    library = f"each as an item of a list ([{shown}])"
    raise cli_worded(InvalidName(f"'{_show(text)}' holds {len(parts)} names ({shown}); a name is one host: give "
                                 f"{library}."), library, "each on its own (as arguments of their own; in a "
                     "manifest's names, separated by spaces)",
                     "each as an identifier (or subjectAltName entry) of its own")


def _refuse_a_setting(text: str) -> None:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        return
    url = _URI_SCHEME.match(value) and "//" in value
    host = _host_hint(value) if url else f" (here '{_show(value)}')"
    raise InvalidName(f"'{_show(text)}' is a NAME=VALUE pair (an etcd --initial-cluster member, a subject "
                      f"attribute such as CN=...), not a host; a certificate names the host alone{host}."
                      + _refused_too(_url_host(value)[0] if url else value))


def refuse_a_url_for(text: str, what: str) -> None:
    """Refuse a URL given for ``what`` (a domain or an IP range to permit), naming its host."""
    if is_a_uri(text.strip()) and "//" in text:
        raise InvalidName(f"'{_show(text)}' is a URL; {what} is given alone{_host_hint(text.strip())}, without the "
                          "scheme, port and path.")


def _host_hint(url: str) -> str:
    read, why = _url_host(url)
    return f" (the host is '{_show(read)}'{why})" if read else ""


def _url_host(url: str) -> tuple[str, str]:
    """The host of ``url`` as clients read it (see :func:`_as_clients_read`) and why it differs, or ``("", "")``."""
    from urllib.parse import urlsplit

    try:
        host = urlsplit(url).hostname
    except ValueError:  # an unclosed [IPv6 address]
        host = None
    return _as_clients_read(host) if host else ("", "")


def _refused_too(*hosts: str) -> str:
    """What certkit says of a host that a notation holds, when that host, given alone, is refused too (0.0.0.0 of
    etcd's --listen-peer-urls, ::ffff:10.0.0.1 as dual-stack sockets log a peer): said with the notation's refusal,
    so that the host it names is not the next error's subject."""
    from certkit.names import parse_host

    said = ""
    for host in filter(None, hosts):
        try:
            parse_host(host)
        except CertkitError as exc:
            said += f" Given alone, that host is refused too: {exc}"
    return said


def _as_clients_read(host: str) -> tuple[str, str]:
    """A URL's ``host`` as clients connect to it and match it, where certkit would refuse it as written but certify
    what they connect to, and why: an IPv4 address in another notation (0x7f000001, 127.1: 127.0.0.1, for curl and
    browsers), an IPv6 address with its zone (fe80::1%25eth0, which curl takes: the zone picks the interface, the
    address is what it matches)."""
    from certkit.names import _try_ip

    if ":" in host and "%" in host:
        zone = _show(host.partition("%")[2])
        read, why = host.partition("%")[0], f", without its zone (%{zone}), which only picks the interface"
    elif (address := url_ipv4(host)) is not None and not address.is_unspecified and not address.is_multicast:
        read, why = str(address), f", as curl and browsers read '{_show(host)}'"
    else:
        return host, ""
    try:
        _try_ip(read)
    except InvalidName:
        return host, ""
    return read, "" if read == host else why


def _refuse_a_network_or_port(text: str) -> None:
    from certkit.names import _network

    if "/" in text and (net := _network(text)):  # not a DNS name with a bad label, as it would be read
        raise InvalidName(f"'{_show(text)}' is a range of IP addresses (CIDR), not an address: a certificate names "
                          f"single addresses, each as it is (such as {next(iter(net.hosts()), net.network_address)}).")
    head, sep, port = text.rpartition(":")
    if sep and is_digits(port) and head and not head.endswith(":") and (":" not in head or head.endswith("]")):
        host = head.strip("[]")
        raise InvalidName(f"'{_show(text)}' has a port (:{port}); a certificate names the host alone "
                          f"('{_show(host)}'), and is valid on every port.{_refused_too(host)}")
    if sep and is_digits(port) and int(port) < 65536 and "/" not in head and _network(head) and not _network(text):
        raise InvalidName(f"'{_show(text)}' is not a valid IPv6 address: it is {_show(head)} with the port {port}, "
                          f"{_without_brackets(head, port)}; give '{_show(head)}' (a certificate is valid on every "
                          "port).")


def refuse_a_colon(text: str) -> None:
    """Refuse a value with a colon that is no IPv6 address: one of an address's characters only (or in brackets) is a
    mistyped address; anything else (``db:primary``, ``www.example.test:https``) is a name with a colon, which no DNS
    name holds, and is not called a bad IPv6 address."""
    if text.startswith("[") or "::" in text or not set(text) - set("0123456789abcdefABCDEF:.]/"):
        raise InvalidName(f"'{_show(text)}' is not a valid IPv6 address.")
    raise InvalidName(f"'{_show(text)}' is neither a DNS name nor an IP address: a DNS name cannot hold ':' (its "
                      "labels are letters, digits and '-'), and a port, named or numbered, is no part of a "
                      "certificate's names; give the host alone.")


def _without_brackets(address: str, port: str) -> str:
    return (f"written without the brackets of [{_show(address)}]:{port} (as Redis's CLUSTER NODES writes an address "
            "and its port)")


# One part of an IPv4 address as the WHATWG URL standard (browsers, curl) and inet_aton read it: 0x and hexadecimal,
# 0 and octal, or decimal.
_IPV4_PART = re.compile(r"0[xX]([0-9a-fA-F]*)|0([0-7]+)|([1-9][0-9]*|0)")


def url_ipv4(text: str):
    """The IPv4 address curl and browsers connect to for the host ``text`` (one to four parts, each decimal,
    octal or hexadecimal, the last filling the bytes left), or None when they do not agree on one (browsers
    read ``127.0.0.1.`` as an address, curl as a name to look up)."""
    import ipaddress

    numbers = []
    for part in text.split("."):
        if not (found := _IPV4_PART.fullmatch(part)):
            return None
        hexadecimal, octal, decimal = found.groups()
        numbers.append(int(hexadecimal or "0", 16) if hexadecimal is not None
                       else int(octal, 8) if octal is not None else int(decimal))
    if len(numbers) > 4 or any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        return None
    return ipaddress.IPv4Address(sum(n << 8 * (3 - i) for i, n in enumerate(numbers[:-1])) + numbers[-1])


def refuse_an_ipv4_notation(text: str) -> None:
    """Refuse ``text``, a host whose last label is a number, which ``ipaddress`` did not read as four decimal
    numbers: say why, and which address curl and browsers connect to for it, the one a certificate must name."""
    mapped = _as_browsers_map(text)
    read = url_ipv4(mapped)
    then = f"; curl and browsers read it as {read}" if read else ""
    if read and not (read.is_unspecified or read.is_multicast or read.packed == b"\xff" * 4):
        then += f", so a certificate names that address ('{read}')"
    reason = f"it is {mapped} written in other characters than ASCII digits and dots" if mapped != text and read \
        else _ipv4_reason(mapped)
    raise InvalidName(f"'{_show(text)}' is not a valid IPv4 address: {reason}{then}.")


def _as_browsers_map(text: str) -> str:
    """``text`` with the fullwidth digits and letters and the other full stops (U+3002, U+FF0E, U+FF61) written in
    ASCII, as UTS 46 maps a host before browsers read it as an address (１２７.0.0.1 is 127.0.0.1); else as it is."""
    import unicodedata

    if text.isascii():
        return text
    mapped = unicodedata.normalize("NFKC", text).translate({0x3002: ".", 0xFF0E: ".", 0xFF61: "."})
    return mapped if mapped.isascii() else text


def _ipv4_reason(text: str) -> str:
    parts = text.split(".")
    if len(parts) > 1 and not parts[-1]:
        return "an address has no final dot"
    if hexadecimal := next((part for part in parts if _IPV4_PART.fullmatch(part) and part[1:2] in ("x", "X")), None):
        return f"'{_show(hexadecimal)}' is hexadecimal, and an address is written in decimal"
    if len(parts) != 4:
        return f"it has {len(parts)} part{'s' if len(parts) != 1 else ''}, an IPv4 address has 4"
    for part in parts:
        if not is_digits(part):
            return f"'{_show(part)}' is not a number"
        if len(part) > 1 and part.startswith("0"):
            return f"'{_show(part)}' has a leading zero, which some software reads as octal"
        if int(part) > 255:
            return f"{part} is larger than 255"
    return "it does not parse"


def refuse_ipv4_compatible(text: str, address) -> None:
    """Refuse ``text``, the IPv6 ``address``, when it lies in RFC 4291's deprecated IPv4-compatible range ::/96 (other
    than :: and ::1), which no host has: an IPv4 address written in that form (``::10.1.1.1``, the IPv6 address
    ``::a01:101``, however it is written), which clients connecting to 10.1.1.1 never match, or a smaller one, most
    often an address and port written without brackets (``::1:2380``, meant as [::1]:2380)."""
    import ipaddress

    from certkit.names import _network

    if address.version != 6 or int(address) >> 32 or int(address) <= 1:
        return
    if (ipv4 := ipv4_compatible(address)) is not None and "." in text:
        raise InvalidName(f"'{_show(text)}' is the IPv4 address {ipv4} written as IPv6 in the deprecated "
                          f"IPv4-compatible form (RFC 4291), the IPv6 address {address}, which no host has: clients "
                          f"that connect to {ipv4} do not match it in a certificate; give the IPv4 address itself "
                          f"({ipv4}).")
    if ipv4 is not None:
        raise InvalidName(f"'{_show(text)}' is in the deprecated IPv4-compatible range ::/96 (RFC 4291), which no host "
                          f"has: it is how the IPv4 address {ipv4} is written in that form, and clients that connect "
                          f"to {ipv4} do not match it in a certificate; give the IPv4 address itself ({ipv4}), or the "
                          "host's own IPv6 address.")
    head, _, port = text.rpartition(":")  # ::1:2380: ::1 and the port 2380, without the brackets of [::1]:2380
    meant = "::1" if is_digits(port) and int(port) < 65536 and _network(head) == ipaddress.ip_network("::1/128") \
        else None
    hint = (f": if it is {_show(meant)} with the port {port}, {_without_brackets(meant, port)}, give '{_show(meant)}' "
            "(a certificate is valid on every port)." if meant else "; name the host's own address.")
    raise InvalidName(f"'{_show(text)}' is the IPv6 address {address}, in the deprecated IPv4-compatible range ::/96 "
                      f"(RFC 4291), which no host has{hint}")


def refuse_an_ipv4_range_as_ipv6(text: str, network) -> None:
    """Refuse ``text``, the IPv6 range ``network`` to permit, when every address of it is an IPv4 address written as
    IPv6, IPv4-mapped (::ffff:10.0.0.0/104) or in the deprecated IPv4-compatible form (::10.0.0.0/104, but for :: and
    ::1), which certkit refuses to certify: the CA could sign no address of its range, and none of the IPv4 range
    meant (a constraint of 16 octets never matches an address of 4: OpenSSL, Go and Java compare their lengths)."""
    import ipaddress

    if network.version != 6 or network.prefixlen < 96:
        return
    if network.subnet_of(ipaddress.ip_network("::ffff:0:0/96")):
        v4 = ipaddress.ip_network(f"{network.network_address.ipv4_mapped}/{network.prefixlen - 96}")
        raise InvalidName(f"'{_show(text)}' is IPv4 written as IPv6 (IPv4-mapped), which no certificate names (an "
                          f"address of it is refused); permit the IPv4 range itself ({v4}).")
    # a range holding :: or ::1 starts there: ::/128 is refused as the unspecified address, ::1 is loopback
    if network.subnet_of(ipaddress.ip_network("::/96")) and int(network.network_address) > 1:
        v4 = ipaddress.ip_network(f"{ipaddress.IPv4Address(int(network.network_address))}/{network.prefixlen - 96}")
        ipv4 = int(network.network_address) >= 1 << 24
        what = "IPv4 written as IPv6 in the deprecated IPv4-compatible form" if ipv4 else \
            "in the deprecated IPv4-compatible range ::/96"
        give = f"the IPv4 range itself ({v4})" if ipv4 else "the range of the hosts' own addresses"
        raise InvalidName(f"'{_show(text)}' is {what} (RFC 4291), which no host has and no certificate names (an "
                          f"address of it is refused); permit {give}.")


def ipv4_compatible(address):
    """The IPv4 address whose deprecated IPv4-compatible form (RFC 4291: 96 zero bits, then the IPv4 address) the IPv6
    ``address`` is, or None (an IPv4 address; ::, ::1 and the others below ::1.0.0.0, which are not written so)."""
    import ipaddress

    if address.version != 6 or int(address) >> 32 or int(address) < 1 << 24:
        return None
    return ipaddress.IPv4Address(int(address))


def refuse_other_digits(text: str) -> None:
    """Refuse ``text`` when it is an IP address written in the digits of another script than ASCII's that UTS 46 does
    not map to ASCII (Arabic-Indic ١٢٧.0.0.1, Devanagari १२७.0.0.1): curl and browsers do not read it as an address
    (curl looks it up as the name xn--9hbcp.0.0.1, browsers refuse it), so no client connects to the address by it.
    A name whose labels hold such digits (example.१२३) is left to the name's rules: curl and browsers read it as one."""
    import ipaddress

    if (read := in_ascii_digits(text)) is None:
        return
    written, scripts = read
    try:
        address = ipaddress.ip_address(written)
    except ValueError:
        address = url_ipv4(written) if ":" not in written else None
    if address is None:
        return
    raise InvalidName(f"'{_show(text)}' is not a valid IP address: it is {written} written in {scripts} digits, which "
                      "curl and browsers do not read as an address (they look the host up as a name, or refuse it); "
                      f"give the address in ASCII digits ('{address}').")


def in_ascii_digits(text: str) -> tuple[str, str] | None:
    """``text`` with the digits of other scripts than ASCII's that UTS 46 leaves as they are written in ASCII digits
    (and as :func:`_as_browsers_map` maps it), and the names of those scripts ('Arabic-Indic'); None if it has none."""
    import unicodedata

    digits = {ch for ch in text if not ch.isascii() and unicodedata.decimal(ch, None) is not None
              and not unicodedata.normalize("NFKC", ch).isascii()}
    if not digits:
        return None
    written = _as_browsers_map("".join(str(unicodedata.decimal(ch)) if ch in digits else ch for ch in text))
    return written, " and ".join(sorted({unicodedata.name(ch, "other").partition(" DIGIT")[0].title()
                                         for ch in digits}))


def refuse_surrounding_space(text: str, what: str) -> None:
    """Refuse a name to check (``what``: "--name 'localhost '") with whitespace before or after it: no host
    name, and no name certkit puts in a certificate, holds any, so it matches none; read without it, a name
    mistyped or pasted with a space would be reported as the one the certificate holds."""
    bare = text.strip()
    if not bare or bare == text:
        return
    where = "around it" if text[0] != bare[0] and text[-1] != bare[-1] else \
        ("before it" if text[0] != bare[0] else "after it")
    raise InvalidName(f"{what} has whitespace {where}, which no host name or name in a certificate holds, so "
                      f"it matches none; give '{_show(bare)}' if that is the name meant.")
