"""Identity parsing: the one place that decides what may be named in a certificate.

DNS names (IDNA2008 A-labels, wildcard only as the whole left-most label and
never directly over a public suffix), IPv4/IPv6 addresses, email addresses,
URIs (SPIFFE IDs included) and client common names. Each bad value is refused
with an :class:`~certkit.errors.InvalidName` whose message names the value and
the reason. This module does not import ``cryptography``; turning identities
into X.509 GeneralNames happens in :mod:`certkit.profiles`. DNS names are
:mod:`certkit.names_dns`'s.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from certkit.errors import InvalidName, UnsafeOutputPath, cli_worded
from certkit.text import HIDDEN, is_digits, unseen
from certkit.vocabulary import wrong_type

Kind = Literal["dns", "ip", "email", "uri"]

_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_HEX_NUMBER = re.compile(r"0[xX][0-9a-fA-F]*\Z")
# RFC 5280's upper bound for a commonName, an organizationName and an organizationalUnitName
# (ub-common-name and its neighbours). cryptography counts it in UTF-8 bytes (a NameAttribute of
# 22 characters but 66 bytes raises ValueError), so certkit counts the same way.
MAX_ATTRIBUTE_BYTES = 64
MAX_COMMON_NAME = MAX_ATTRIBUTE_BYTES  # the name certkit.ca knows it by
# RFC 3986 section 2: the characters a URI may hold ('%' only to start a percent-encoding).
# The SPIFFE ID limit (SPIFFE-ID spec 2.3: 2048 bytes), for every URI: no identity needs more.
MAX_URI = 2048
# The most identities (subjectAltName entries) one certificate may carry. Public CAs allow 100 (Let's
# Encrypt, AWS, Google; certkit's ACME server too) to 250 (DigiCert's and Sectigo's multi-domain
# certificates). At 250 a certificate stays near 0.5 MiB even with every entry as long as it may be (a URI
# of MAX_URI characters), so certkit's own commands still read it (they stop at 1 MiB).
MAX_IDENTITIES = 250


@dataclass(frozen=True)
class Identity:
    """One subjectAltName entry: ``kind`` and its canonical ``value``.

    ``value`` is what goes into the certificate (A-labels, compressed IPs).
    ``display`` is what a person typed when it differs (the U-label form).
    """

    kind: Kind
    value: str
    display: str | None = None

    def __str__(self) -> str:
        prefix = {"dns": "DNS", "ip": "IP", "email": "email", "uri": "URI"}[self.kind]
        return f"{prefix}:{self.value}"

    @property
    def is_wildcard(self) -> bool:
        return self.kind == "dns" and self.value.startswith("*.")


# A URL's user information (user:password@, token@), up to the last '@' before its query or fragment (a password may
# hold a '/', and redis-cli, like libpq, reads it so): never repeated in a message.
_USER_INFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^?#\s]*@")


def hide_user_info(text: str) -> str:
    """``text`` with the user information of every URL in it (``rediss://default:PASSWORD@host``) written ``***``."""
    return _USER_INFO.sub(rf"\1{HIDDEN}@", text) if "@" in text and "://" in text else text


def _show(text: str) -> str:
    """``text`` for an error message: control characters escaped, so a hostile or mistyped value can neither break
    the one-line error nor drive the terminal; a URL's user information (a password, a token) left out."""
    text = hide_user_info(text)
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch) - 0xDC00:02x}" if 0xDC80 <= ord(ch) <= 0xDCFF
                   else repr(ch)[1:-1] for ch in text)  # a byte that was not UTF-8 as \xNN, as shown() has it


def check_utf8(text: str, label: str, error: type[Exception] = InvalidName) -> str:
    """``text`` if it is UTF-8 text; else ``error`` naming ``label`` (a lone surrogate, as ``os.environ`` and
    ``sys.argv`` give for bytes that were not UTF-8, cannot go in a certificate, a path or the inventory):
    the library's refusal of what the command line refuses as an argument."""
    from certkit.text import is_utf8, shown

    if not is_utf8(text):
        raise error(f"{label} is '{shown(text)}', which is not UTF-8 text; certkit takes names, paths and URLs "
                    "as UTF-8.")
    return text


def parse_host(text: str) -> Identity:
    """Parse a server name: an IP address or a DNS name (wildcards allowed)."""
    if not isinstance(text, str):
        raise wrong_type("names", "str", text)
    if not text.strip():
        raise InvalidName("An empty name cannot go in a certificate.")
    return _parse_host(text.strip())


@lru_cache(maxsize=1024)  # a batch line's names are parsed for its folder, then for its request
def _parse_host(text: str) -> Identity:
    _refuse_what_is_not_a_host(text)
    ip = _try_ip(text)
    if ip is not None:
        return ip
    from certkit.names_dns import parse_dns_name

    return parse_dns_name(text, allow_wildcard=True)


def _refuse_what_is_not_a_host(text: str) -> None:
    from certkit.names_notation import refuse_what_is_not_a_host

    refuse_what_is_not_a_host(text)


def _network(text: str):
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _try_ip(text: str) -> Identity | None:
    if not text.isascii():  # an address in other digits than ASCII (١٢٧.0.0.1), which no client reads as one
        from certkit.names_notation import refuse_other_digits

        refuse_other_digits(text)
    if "%" in text and ":" in text:  # also in a URL's brackets, [fe80::1%eth0]
        address, _, zone = (text[1:-1] if text[:1] + text[-1:] == "[]" else text).partition("%")
        raise InvalidName(f"'{_show(text)}' has an IPv6 zone (%{_show(zone)}): a zone only means something on one "
                          f"host and cannot go in a certificate; use the address without it ('{_show(address)}').")
    if ":" not in text and not _ends_in_a_number(text):
        return None  # a name: an IPv4 address ends in a number, an IPv6 one has colons (the common case, fast)
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        _refuse_no_peers_address(text, addr)
        if getattr(addr, "ipv4_mapped", None) is not None:
            # Clients connecting to the IPv4 address match only a 4-octet IP entry, never this 16-octet one.
            raise InvalidName(f"'{_show(text)}' is the IPv4 address {addr.ipv4_mapped} written as IPv6 "
                              f"(IPv4-mapped): clients that connect to {addr.ipv4_mapped} do not match it in a "
                              f"certificate; give the IPv4 address itself ({addr.ipv4_mapped}).")
        from certkit.names_notation import refuse_ipv4_compatible

        refuse_ipv4_compatible(text, addr)
        return Identity("ip", str(addr))
    if ":" in text:  # an address in a URL's brackets ([::1], as in https://[::1]:2380) is valid, but not as a name
        inner = text[1:-1] if text[:1] + text[-1:] == "[]" and _network(text[1:-1] + "/128") else None
        if inner is None:
            from certkit.names_notation import refuse_a_colon

            refuse_a_colon(text)
        raise InvalidName(f"'{_show(text)}' is the IPv6 address {inner} in the brackets of a URL: a certificate names "
                          f"the address alone ('{inner}').")
    from certkit.names_notation import refuse_an_ipv4_notation

    refuse_an_ipv4_notation(text)  # a host ending in a number is meant as an IPv4 address (RFC 1123 2.1)
    return None


def _ends_in_a_number(text: str) -> bool:
    """Whether a host's last label is a number (decimal, or 0x and hexadecimal): the WHATWG URL standard's "ends in a
    number", by which browsers and curl read the host as an IPv4 address (0x7f000001 is 127.0.0.1), never a name."""
    last = text.rstrip(".").rpartition(".")[2]
    if not last.isascii():  # fullwidth digits are ASCII ones to browsers (UTS 46); other scripts' digits make a name
        last = unicodedata.normalize("NFKC", last)
    return is_digits(last) or _HEX_NUMBER.match(last) is not None


def _refuse_no_peers_address(text: str, addr) -> None:
    """Refuse an address no TLS client connects to: unspecified (0.0.0.0, ::: what a server listens on
    to mean every address), broadcast, multicast."""
    addr = getattr(addr, "ipv4_mapped", None) or addr  # ::ffff:0.0.0.0 is 0.0.0.0
    if addr.is_unspecified:
        raise InvalidName(f"'{_show(text)}' is the unspecified address: a server listens on it to mean every "
                          "address, but no client connects to it; name the addresses clients use (127.0.0.1, the "
                          "host's own address, its DNS name).")
    if addr.is_multicast or (addr.version == 4 and addr == ipaddress.IPv4Address("255.255.255.255")):
        kind = "a multicast" if addr.is_multicast else "the broadcast"
        raise InvalidName(f"'{_show(text)}' is {kind} address, which no TLS connection goes to; name the "
                          "host's own address.")


def parse_email(text: str) -> Identity:
    """Parse an email address for an rfc822Name entry (ASCII local part, A-label domain)."""
    text = text.strip()
    local, sep, domain = text.rpartition("@")
    if not sep or not local or not domain:
        raise InvalidName(f"'{_show(text)}' is not a valid email address: it needs local@domain.")
    if ":" in local:  # email:alice@example.com, an entry as certkit and openssl print it
        from certkit.names_notation import refuse_a_typed_entry

        refuse_a_typed_entry(text, looks_like_email)
    if not _DOT_ATOM.match(local):  # RFC 5321's dot-atom: what every mail system and X.509 checker accepts
        raise InvalidName(f"'{_show(text)}' is not a valid email address: " + (f"it contains {bad}." if (bad := unseen(
            local, invisible_too=True)) else "the part before '@' must be letters, digits and !#$%&'*+-/=?^_`{|}~ in "
            "parts joined by single dots (no quoted local part)."))
    if len(local) > 64:
        raise InvalidName(f"'{_show(text)}' is not a valid email address: the local part exceeds 64 characters.")
    from certkit.names_dns import parse_dns_name

    try:
        host = parse_dns_name(domain, allow_wildcard=False)
    except InvalidName as exc:
        raise InvalidName(f"'{_show(text)}' is not a valid email address: {exc}") from None
    if "." not in host.value:  # a mailbox domain has two labels at least (pkilint: invalid syntax)
        raise InvalidName(f"'{_show(text)}' is not a valid email address: its domain needs two labels at least.")
    value = f"{local}@{host.value}"
    return Identity("email", value, text if text != value else None)


def parse_uri(text: str) -> Identity:
    """Parse a URI SAN (RFC 3986; SPIFFE IDs checked as such): see :mod:`certkit.names_uri`."""
    from certkit.names_uri import parse_uri as parse

    return parse(text)


def parse_common_name(text: str) -> str:
    """Check a client subject common name: see :func:`parse_attribute`."""
    if not isinstance(text, str):
        raise wrong_type("A client certificate's name", "a str", text)
    if not text.strip():
        raise InvalidName("A client certificate needs a non-empty name.")
    return parse_attribute(text)


def parse_attribute(text: str, field: str = "common name", option: str | None = None) -> str:
    """Check a value for a certificate's subject: 1 to 64 bytes in UTF-8 (what cryptography
    accepts), printable, without whitespace around it, kept as given (servers that map a CN to a user
    compare the bytes). ``field`` names the attribute ("common name", "organization") and ``option`` where
    the value came from ("--org"), for the message."""
    given = f"{option} " if option else ""
    article = "an" if field[0] in "aeiou" else "a"
    if not isinstance(text, str):
        raise wrong_type(f"{option or 'The ' + field}", "a str", text)
    check_utf8(text, option or f"The {field}")
    if not text.strip():
        raise InvalidName(f"{given}'{_show(text or '')}' is blank; {article} {field} needs at least one visible "
                          "character.")
    if text != text.strip():
        raise InvalidName(f"{given}'{_show(text)}' starts or ends with whitespace; remove it.")
    size = len(text.encode("utf-8"))
    if size > MAX_ATTRIBUTE_BYTES:
        shown = _show(text) if len(text) <= 20 else f"{_show(text[:20])}..."
        length, unit = (f"{size} characters long", "") if size == len(text) else \
            (f"{size} bytes in UTF-8 ({len(text)} characters)", " bytes")
        raise InvalidName(f"{given}'{shown}' is {length}; {article} {field} may hold at most "
                          f"{MAX_ATTRIBUTE_BYTES}{unit}.")
    if (bad := unseen(text)) is not None:
        raise InvalidName(f"{given}'{_show(text)}' contains {bad}; {article} {field} cannot.")
    return text


def parse_client_name(text: str) -> str:
    """A client certificate's NAME: a common name as :func:`parse_common_name` checks it, but not an
    IP address or a URL, which name hosts (a server certificate's business)."""
    cn = parse_common_name(text)
    try:
        ipaddress.ip_address(cn)
    except ValueError:
        pass
    else:
        fix = f"ca.issue_server('{_show(cn)}')"
        raise cli_worded(InvalidName(f"'{_show(cn)}' is an IP address. A client certificate's NAME is the identity a "
                                     "server maps to a user or service (alice, billing-api); to certify an address, "
                                     f"use {fix}."), fix, f"certkit issue-server {_show(cn)}")
    if _URI_SCHEME.match(cn) and "//" in cn:
        fix = f"pass uris=['{_show(cn)}']"
        raise cli_worded(InvalidName(f"'{_show(cn)}' is a URL. A client certificate's NAME is a plain name (alice, "
                                     f"billing-api); to put a URI such as a SPIFFE ID in it, {fix}."), fix,
                         f"add --uri {_show(cn)}")
    return cn


def looks_like_email(text: str) -> bool:
    return "@" in text and not text.startswith("@") and not text.endswith("@")


def assemble(identities: Iterable[Identity]) -> list[Identity]:
    """The subjectAltName of one certificate: ``identities`` in order, without duplicates, and no
    more than :data:`MAX_IDENTITIES` of them."""
    seen: set[tuple[str, str]] = set()
    out = []
    for ident in identities:
        key = (ident.kind, ident.value.lower() if ident.kind != "uri" else ident.value)
        if key not in seen:
            seen.add(key)
            out.append(ident)
    if len(out) > MAX_IDENTITIES:
        raise InvalidName(f"{len(out):,} names are too many for one certificate, which may carry at most "
                          f"{MAX_IDENTITIES} (DNS names, IP addresses, email addresses and URIs together): use a "
                          "wildcard such as *.example.com, or share the names out over several certificates.")
    return out


def name_list(names, what: str = "names") -> list[str]:
    """The one reading of every parameter that takes several names (DNS names, addresses, emails,
    URIs, networks): a list, tuple, set or generator of str, or one str taken as one name (as trustme's
    ``issue_cert("localhost")``: never one name per character). An ``ipaddress`` address or network
    stands for its text. bytes, None and anything else are a TypeError that names them."""
    if isinstance(names, (str, *_IP_TYPES)):
        names = [names]
    elif isinstance(names, (bytes, bytearray, memoryview)) or not hasattr(names, "__iter__"):
        raise wrong_type(what, "a str or a list of str", names)
    out = []
    for name in names:
        if not isinstance(name, (str, *_IP_TYPES)):
            raise wrong_type(what, "str", name)
        out.append(check_utf8(str(name), f"An entry of {what}"))
    return out


_IP_TYPES = (ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network, ipaddress.IPv6Network)


def parse_hosts(names: Iterable[str], kind: str = "server") -> list[Identity]:
    """Parse the names of a server (or peer) certificate (see :func:`name_list`), in order, without duplicates."""
    parsed = assemble(parse_host(name) for name in name_list(names))
    if not parsed:
        raise InvalidName(f"A {kind} certificate needs at least one DNS name or IP address.")
    return parsed


def client_identities(name: str, emails: Iterable[str] = (), uris: Iterable[str] = (),
                      dns_names: Iterable[str] = ()) -> list[Identity]:
    """The SAN identities of a client certificate named ``name`` (its CN): a name that is an email address is one."""
    cn = parse_common_name(name)
    own = [parse_email(cn)] if looks_like_email(cn) else []
    emails, uris, dns_names = name_list(emails, "emails"), name_list(uris, "uris"), name_list(dns_names, "dns_names")
    return assemble([*own, *map(parse_email, emails), *map(parse_uri, uris), *map(_client_dns_name, dns_names)])


def _client_dns_name(text: str) -> Identity:
    """A DNS name of a client certificate: the newcomer's URL or host:port refused in the words a
    server name gets, an email address sent where it belongs."""
    name = text.strip() if isinstance(text, str) else text
    if isinstance(name, str):  # ADDRESS:PORT@BUS-PORT, as Redis's CLUSTER NODES writes a node: no email address
        from certkit.names_notation import refuse_a_redis_node

        refuse_a_redis_node(name)
    if isinstance(name, str) and "@" in name and not (_URI_SCHEME.match(name) and "//" in name):
        raise cli_worded(InvalidName(f"'{_show(name)}' is an email address, not a DNS name: give it as an email "
                                     "(emails=[...])."), "emails=[...]", "--email")
    if isinstance(name, str):
        _refuse_what_is_not_a_host(name)
    from certkit.names_dns import parse_dns_name

    return parse_dns_name(text, allow_wildcard=False)


def safe_folder_name(name: str) -> str:
    """The default output folder for a certificate named ``name`` (mkcert's habit): ``*`` becomes
    ``_wildcard``, and every other character outside ``A-Z a-z 0-9 . _ @ + -`` (``:``, a space, any
    non-ASCII letter) becomes ``_``. A name that cannot be one visible folder in the current one is
    refused rather than rewritten, saying why."""
    why = _not_a_folder_name(name)
    if why:
        raise UnsafeOutputPath(f"'{_show(name)}' cannot name an output folder: {why}; choose the output folder "
                               "yourself.")
    return re.sub(r"[^A-Za-z0-9._@+-]", "_", name.replace("*", "_wildcard"))


def _not_a_folder_name(name: str) -> str | None:
    """Why ``name`` cannot be taken as it is for one folder in the current one, or None."""
    if "/" in name:
        climbs = name.startswith("/") or ".." in name.split("/")
        return "it would escape the current folder" if climbs else "it holds a '/', which would make a subfolder"
    if "\\" in name or "\0" in name:
        return ("it holds a '\\', which separates folders on Windows" if "\\" in name
                else "it holds a NUL character, which no file name can hold")
    if name in {"", ".", ".."}:
        return {"": "it is empty", ".": "'.' is the current folder itself", "..": "'..' is the folder above"}[name]
    return "it starts with '.', which would make a hidden folder" if name.startswith(".") else None
