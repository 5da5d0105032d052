"""What a certificate for a CSR gets: the requested names checked by the rules of issue-server and issue-client
(a refusal names where the name came from: the CN, which subjectAltName entry, an extra name), the subject CN,
and in words what the certificate will not carry. :mod:`certkit.csr` reads and checks the CSR itself.
"""

from __future__ import annotations

from certkit.csr import CSRRequest, san_text
from certkit.errors import InvalidCSR, cli_worded
from certkit.text import shown


def plan(request: CSRRequest, kind: str, extra_names=()) -> tuple[list, str | None, list[str]]:
    """The identities and subject CN a certificate for ``request`` gets, and what is left out.

    Every requested name is checked by the rules of issue-server / issue-client;
    a name that would be refused there refuses the whole CSR, and the refusal
    names where the name came from (the CN, which subjectAltName entry, an
    extra name). Returns ``(identities, common_name, dropped)``; ``dropped``
    lists in words the requested subject attributes and SAN entries the
    certificate will not carry.
    """
    from certkit.vocabulary import attribute_text

    dropped = [f"subject attribute {_cut(attribute_text(attr))}" for attr in request.csr.subject
               if attr.oid != _CN_OID()]
    if kind in ("server", "peer"):
        identities, cn = _plan_hosts(request, kind, extra_names, dropped)
        return identities, cn, dropped
    if kind != "client":
        from certkit.errors import InvalidArgument

        raise InvalidArgument(f"kind must be 'server', 'peer' or 'client', not {kind!r}.")
    identities, cn = _plan_client(request, extra_names, dropped)
    return identities, cn, dropped


def _checked(parse, value: str, where: str):
    """``parse(value)``; its refusal as the CSR's, saying ``where`` the value is."""
    from certkit.errors import InvalidName

    try:
        return parse(value)
    except InvalidName as exc:
        error = InvalidCSR(f"{where} is refused: {exc}")
        error.cli_words = getattr(exc, "cli_words", None)  # its advice, in the command line's words there
        error.acme_words = getattr(exc, "acme_words", None)  # and in an ACME client's (certkit.errors.acme_text)
        raise error from None


def _plan_hosts(request: CSRRequest, kind: str, extra_names, dropped: list[str]) -> tuple[list, str]:
    """A server or peer certificate's names: the CN, the DNS and IP subjectAltNames, the extra names.
    The subject CN is the CSR's; without one, issue-server's: the first DNS name, else the first
    address (:func:`certkit.issuing.server_request`)."""
    from certkit import names as _names
    from certkit.errors import InvalidName
    from certkit.issuing import server_cn  # issue-server's rule, defined once

    hosts = []
    if request.common_name is not None:
        if _names.looks_like_email(request.common_name) and "/" not in request.common_name:
            said = "sign it as one: sign_csr(csr, 'client')"
            cn = shown(request.common_name)
            raise cli_worded(InvalidCSR(f"The CSR's common name '{cn}' is an email address, not a host name: a "
                                        f"certificate for a person or a mailbox is a client certificate ({said})."),
                             said, "sign it with --client", "an ACME server issues server certificates only: make "
                             "a CSR naming the order's DNS names and IP addresses")
        hosts.append(_checked(_names.parse_host, request.common_name, "The CSR's common name"))
    for san_kind, value in request.san:
        if san_kind in ("dns", "ip"):
            hosts.append(_checked(_names.parse_host, value, f"The CSR's subjectAltName {_entry(san_kind, value)}"))
        else:
            dropped.append(f"subjectAltName {san_text(san_kind, value)} "
                           f"(a {kind} certificate names DNS names and IP addresses only)")
    for value in extra_names:
        hosts.append(_checked(_names.parse_host, value, f"The name '{shown(value)}' given after the CSR"))
    try:
        identities = _names.assemble(hosts)
    except InvalidName as exc:
        whose = "The names (the CSR's and those given after it)" if extra_names else "The CSR's names"
        raise InvalidCSR(f"{whose} are refused: {exc}") from None
    if not identities:
        said = "give the names as extra_names=[...]"
        raise cli_worded(InvalidCSR("The CSR names no host: it has no common name and no DNS or IP subjectAltName; "
                                    f"{said}."), said, "give the names as arguments after the CSR file",
                         "make a CSR naming the order's identifiers in its subjectAltName")
    return identities, hosts[0].value if request.common_name is not None else server_cn(identities)


def _plan_client(request: CSRRequest, extra_names, dropped: list[str]) -> tuple[list, str]:
    """A client certificate's identity: the CN (an email address as CN is also an email identity),
    with the CSR's email, URI and DNS subjectAltNames."""
    from certkit import names as _names
    from certkit.errors import InvalidName

    if extra_names:
        raise InvalidCSR("Extra names are for server certificates; a client certificate's identity comes "
                         "from the CSR's common name and subjectAltName.")
    if request.common_name is None:
        raise InvalidCSR("The CSR has no common name: a client certificate is identified by its CN "
                         "(what nginx, PostgreSQL and Mosquitto map to a user).")
    cn = _checked(_names.parse_common_name, request.common_name, "The CSR's common name")
    _refuse_host_as_client_cn(cn)
    if _names.looks_like_email(cn):  # it becomes an email identity: refused as the CN it is, if it is bad
        _checked(_names.parse_email, cn, "The CSR's common name")
    # Each entry checked alone, as issue-client's --email, --uri and --dns are, so a refusal names it.
    parsers = {"email": _names.parse_email, "uri": _names.parse_uri, "dns": _client_dns}
    by_kind: dict[str, list[str]] = {kind: [] for kind in parsers}
    for san_kind, value in request.san:
        if san_kind in parsers:
            _checked(parsers[san_kind], value, f"The CSR's subjectAltName {_entry(san_kind, value)}")
            by_kind[san_kind].append(value)
        else:
            dropped.append(f"subjectAltName {san_text(san_kind, value)} "
                           "(a client certificate names emails, URIs and DNS names only)")
    try:  # each name is good: what is left to refuse is the lot (too many names)
        identities = _names.client_identities(cn, by_kind["email"], by_kind["uri"], by_kind["dns"])
    except InvalidName as exc:
        raise InvalidCSR(f"The CSR's names are refused: {exc}") from None
    return identities, cn


def _refuse_host_as_client_cn(cn: str) -> None:
    """issue-client's rule for NAME (:func:`certkit.names.parse_client_name`), in a CSR's words: a client
    CN is who the client is, not an address or a URL."""
    from certkit.errors import InvalidName
    from certkit.names import parse_client_name

    try:
        parse_client_name(cn)
    except InvalidName:
        what = "a URL" if "//" in cn else "an IP address"
        said = "an address is a server's name: sign it as one, sign_csr(csr, 'server')"
        fix = ("a URI identity (a SPIFFE ID) goes in the CSR's subjectAltName, under a plain CN" if "//" in cn
               else said)
        raise cli_worded(InvalidCSR(f"The CSR's common name '{shown(cn)}' is {what}; a client certificate's CN is the "
                                    f"identity a server maps to a user or service (alice, billing-api): {fix}."),
                         said, "an address is a server's name: sign it with --server") from None


def _entry(kind: str, value: str) -> str:
    """A SAN entry as a refusal names it: escaped, and cut short (the reason after it quotes the value)."""
    text = shown(san_text(kind, value))
    return text if len(text) <= 80 else f"{text[:60]}..."


def _client_dns(value: str):
    """A client certificate's DNS name: no wildcard (:func:`certkit.names.client_identities`)."""
    from certkit.names_dns import parse_dns_name

    return parse_dns_name(value, allow_wildcard=False)


def _CN_OID():  # noqa: N802 - a constant that needs cryptography, imported late
    from cryptography.x509.oid import NameOID

    return NameOID.COMMON_NAME


def _cut(text: str, most: int = 100) -> str:
    """``text`` cut to ``most`` characters (a requester's value may be thousands long), its end marked."""
    return text if len(text) <= most else f"{text[:most]}... ({len(text)} characters)"
