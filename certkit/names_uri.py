"""URI names of client certificates (RFC 3986 syntax, SPIFFE IDs), parsed for :func:`certkit.names.parse_uri`."""

from __future__ import annotations

import re

from certkit.errors import InvalidName
from certkit.names import _URI_SCHEME, MAX_URI, Identity, _show, _try_ip, hide_user_info
from certkit.names_dns import parse_dns_name
from certkit.names_notation import is_a_uri, refuse_a_typed_entry
from certkit.text import unseen

_URI_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&'()*+,;=%")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def parse_uri(text: str) -> Identity:
    """Parse a URI for a uniformResourceIdentifier entry: absolute, ASCII, RFC 3986's syntax, and
    with an authority, a host that is a DNS name or an IP address (RFC 5280 4.2.1.6)."""
    text = text.strip()
    refuse_a_typed_entry(text, is_a_uri)  # URI:spiffe://..., as certkit and openssl print an entry
    if not text.isascii() and (bad := unseen(text, invisible_too=True)):  # where the URI looks right
        raise InvalidName(f"'{_show(text)}' is not a valid URI: it contains {bad}.")
    if not text.isascii() or any(ch.isspace() or ord(ch) < 33 for ch in text):
        raise InvalidName(f"'{_show(text)}' is not a valid URI: it must be ASCII without spaces "
                          "(percent-encode other characters).")
    if len(text) > MAX_URI:
        raise InvalidName(f"'{_show(hide_user_info(text)[:40])}...' is not a valid URI: it is {len(text)} characters "
                          f"long, the limit is {MAX_URI}.")
    if not _URI_SCHEME.match(text) or len(text.split(":", 1)[1]) == 0:
        raise InvalidName(f"'{_show(text)}' is not a valid URI: it needs a scheme and a body, as in "
                          "spiffe://example.org/service or urn:example:device:42.")
    _check_uri_syntax(text)
    if text.lower().startswith("spiffe:"):
        _check_spiffe(text)
    if reason := go_unreadable(text):
        raise InvalidName(f"'{_show(text)}' is not a valid URI for a certificate: {reason}.")
    return Identity("uri", text)


def _check_uri_syntax(text: str) -> None:
    """RFC 3986's syntax, as far as it decides what a certificate may carry: characters,
    percent-encodings, one fragment, brackets only around an IPv6 host, a port, a host."""
    from urllib.parse import urlsplit

    bad = next((ch for ch in text if ch not in _URI_CHARACTERS), None)
    if bad is not None:
        raise InvalidName(f"'{_show(text)}' is not a valid URI: {bad!r} may not appear in one; percent-encode it "
                          f"(%{ord(bad):02X}).")
    if _BAD_PERCENT.search(text):
        raise InvalidName(f"'{_show(text)}' is not a valid URI: '%' must start a percent-encoding, as in %20.")
    if text.count("#") > 1:
        raise InvalidName(f"'{_show(text)}' is not a valid URI: it has more than one '#'.")
    try:
        parts = urlsplit(text)
    except ValueError:  # an unclosed or invalid [IPv6 address]
        raise InvalidName(f"'{_show(text)}' is not a valid URI: '[' and ']' must enclose an IPv6 address "
                          "in the host.") from None
    if any(ch in part for ch in "[]" for part in (parts.path, parts.query, parts.fragment)):
        raise InvalidName(f"'{_show(text)}' is not a valid URI: '[' and ']' may only enclose an IPv6 address "
                          "in the host.")
    try:
        _ = parts.port  # a number from 0 to 65535, or none
    except ValueError:
        port = parts.netloc.rpartition(":")[2]
        raise InvalidName(f"'{_show(text)}' is not a valid URI: its port '{_show(port)}' is not a number from 0 "
                          "to 65535.") from None
    if "@" in parts.netloc:  # user information: OpenSSL's name constraints read such a host otherwise
        raise InvalidName(f"'{_show(text)}' is not a valid URI for a certificate: leave out its 'user@' part.")
    if text[len(parts.scheme) + 1:].startswith("//") and parts.scheme.lower() != "spiffe":
        _check_uri_host(text, parts.netloc)


def _check_uri_host(text: str, hostport: str) -> None:
    """An authority's host: RFC 5280 asks for a fully qualified domain name or an IP address."""
    if hostport.startswith("["):
        host, _, after = hostport[1:].partition("]")
        if after[:1] not in ("", ":"):
            raise InvalidName(f"'{_show(text)}' is not a valid URI: only ':port' may follow its [IPv6 address].")
    else:
        host = hostport.rpartition(":")[0] if ":" in hostport else hostport
    if not host:
        raise InvalidName(f"'{_show(text)}' is not a valid URI for a certificate: it has an authority ('//') "
                          "but no host.")
    try:
        if _try_ip(host) is None:
            if hostport.startswith("["):
                raise InvalidName(f"'{_show(host)}' is not an IPv6 address.")
            parse_dns_name(host, allow_wildcard=False)
    except InvalidName as exc:
        raise InvalidName(f"'{_show(text)}' is not a valid URI: its host {exc}") from None


def _check_spiffe(text: str) -> None:
    # SPIFFE ID rules (SPIFFE-ID spec section 2): lowercase trust domain, a path, no query.
    match = re.fullmatch(r"spiffe://([a-z0-9._-]+)(/[A-Za-z0-9._/-]*)?", text)
    if not match or "//" in (match.group(2) or "") or (match.group(2) or "").endswith("/"):
        raise InvalidName(f"'{_show(text)}' is not a valid SPIFFE ID: it must look like "
                          "spiffe://trust-domain/path with a lowercase trust domain and no query.")
    if any(segment in (".", "..") for segment in (match.group(2) or "").split("/")):
        raise InvalidName(f"'{_show(text)}' is not a valid SPIFFE ID: a path segment may not be '.' or '..' "
                          "(SPIFFE-ID section 2.2; go-spiffe refuses it, and a service that resolves the path would "
                          "read another ID).")


def go_unreadable(text: str) -> str | None:
    """Why Go's crypto/x509 cannot read a certificate naming the URI ``text``, or None: a host with an empty label
    (a final dot, as in https://example.internal./x, or two dots in a row, which SPIFFE trust domains allow; a
    leading dot in newer Go releases). Go refuses the whole certificate when it parses it ('x509: cannot parse URI
    ...: invalid domain'), so every Go program (etcd, Kubernetes, SPIRE) fails the handshake. OpenSSL and Java take
    it, but it matches no name constraint. A host with a port is left alone: Go reads it, final dot and all."""
    from urllib.parse import urlsplit

    try:
        host = urlsplit(text).netloc.rpartition("@")[2]
    except ValueError:
        return None
    if not host or host.startswith("[") or ":" in host or "" not in (labels := host.split(".")):
        return None
    if labels.count("") == 1 and labels[0] == "":
        where, who = "starts with a dot", "newer Go releases refuse"
    else:
        where = "ends with a dot" if labels.count("") == 1 and labels[-1] == "" else "has an empty label ('..')"
        who = "Go refuses"
    fixed = text.replace(host, ".".join(label for label in labels if label), 1)
    return (f"its host '{_show(host)}' {where}, and {who} a certificate naming it ('x509: cannot parse URI "
            f"{_show(text)}: invalid domain'): etcd, Kubernetes, SPIRE and other Go programs would refuse it; give "
            f"'{_show(fixed)}'")
