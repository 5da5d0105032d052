"""The URLs a client writes in a JWS (its ``url`` header, its ``kid``, a key change's ``account``, an external
account binding's ``url``) compared as URLs, not as strings: the scheme and host of a URL are case-insensitive
and a default port may be written or left out (RFC 3986 6.2.2.1, 6.2.3), so ``HTTPS://LOCALHOST:443/acme/acct/X``
is ``https://localhost/acme/acct/X``. The path and query, case-sensitive, must be as the server wrote them.
"""

from __future__ import annotations

import re

_DEFAULT_PORTS = {"https": 443, "http": 80}


def _split(url: str) -> tuple[tuple[str, str, int | None], str] | None:
    """((scheme, host, port), the rest: path and query) of an absolute http(s) URL; None for anything else (a
    URL with user information, a port that is no number)."""
    from urllib.parse import urlsplit

    match = re.fullmatch(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(.*)", url, re.DOTALL)
    if match is None or "@" in match[2]:
        return None
    scheme = match[1].lower()
    try:
        parts = urlsplit(f"{scheme}://{match[2]}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or scheme not in _DEFAULT_PORTS:
        return None
    return (scheme, host, port or _DEFAULT_PORTS[scheme]), match[3]


def same_url(given: str, expected: str) -> bool:
    """Whether ``given`` is ``expected``, written as it is or with its scheme and host in another case, its default
    port written or left out."""
    if given == expected:
        return True
    split = _split(given)
    return split is not None and split == _split(expected)


def as_here(given: str, base: str) -> str:
    """``given`` written with this server's origin as ``base`` (``https://host:port``) writes it, when it names the
    same origin otherwise; else ``given`` as it is."""
    split, here = _split(given), _split(base)
    if split is None or here is None or split[0] != here[0]:
        return given
    return base + split[1]
