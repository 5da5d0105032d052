"""Name constraints: what a constrained CA may vouch for, built once and checked before signing.

A CA created with ``--permit-dns`` and/or ``--permit-ip`` constrains every kind
of name certkit issues, not only the kinds named:

- DNS names: the permitted domains; with ``--permit-ip`` alone, only
  ``invalid.invalid``, a name in the reserved ``invalid`` domain (RFC 6761),
  i.e. no DNS name: certkit issues none under it either, nor an email or URI
  (a placeholder, not a domain);
- email addresses and URIs (SPIFFE IDs): hosts in the permitted domains (both
  the domain itself and its subdomains, as RFC 5280 spells them);
- IP addresses: the permitted ranges; with ``--permit-dns`` alone, none
  (0.0.0.0/0 and ::/0 excluded).

Verifiers apply them anyway; certkit refuses a name outside them before
signing, with the reason, instead of handing out an unusable certificate. It
also refuses what real verifiers reject although RFC 5280 does not ask them to:
a client certificate without a DNS name whose common name reads as a host
name (Java's JSSE and OpenSSL check that name against the DNS constraints).

Which verifiers apply a CA's constraints depends on where the CA sits. RFC 5280
leaves the constraints of a trust anchor (the root a trust store holds) to the
verifier: OpenSSL, GnuTLS, NSS and Node apply them, Java (JSSE) ignores them and
applies only those of the CAs below it. :func:`of_chain` marks a root's
(:func:`on_trust_anchor`), and the common-name rule names Java only where Java
applies it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from certkit.errors import NameNotPermitted
from certkit.names import Identity
from certkit.text import shown

if TYPE_CHECKING:
    from cryptography import x509

# RFC 6761 reserves "invalid": no real name is in it, so permitting only a name in it permits no DNS
# name while keeping the extension readable by every verifier (an empty excluded DNS subtree, the
# standard way to exclude all, makes Java refuse to parse the CA certificate). Two labels, as RFC 5280's
# subtrees allow either: pkilint (the web rules of the `validators` package) refuses a one-label name
# in a DNS, email or URI subtree, and a CA made before this carries that one, OLD_NO_DNS ("invalid").
NO_DNS, OLD_NO_DNS = "invalid.invalid", "invalid"
ALL_IPV4, ALL_IPV6 = ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")
# Java's sun.security.x509.DNSName accepts this: a common name of this shape is checked as a DNS name by Java
# (when the certificate has no DNS name or IP address). It refuses a final dot ('DNSName may not begin or end with
# a .'), and a common name it cannot read is not checked: 'alice.' passes. OpenSSL's rule is :func:`_openssl_reads`.
_HOSTNAME_LIKE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]*)(\.[A-Za-z0-9][A-Za-z0-9-]*)*$")


def _openssl_reads(cn: str) -> bool:
    """Whether OpenSSL's NAME_CONSTRAINTS_check_CN (cn2dnsid) reads ``cn`` as a DNS name: ASCII letters, digits
    and '_', with '-' and '.' inside only, no '.' beside another '.' or a '-', and at least one '.' (so no final
    dot, and no single label)."""
    dotted = False
    for i, ch in enumerate(cn):
        if ch.isascii() and (ch.isalnum() or ch == "_"):
            continue
        if 0 < i < len(cn) - 1 and ch == "-":
            continue
        if 0 < i < len(cn) - 1 and ch == "." and cn[i + 1] not in ".-" and cn[i - 1] != "-":
            dotted = True
            continue
        return False
    return dotted


def common_name_readers(cn: str | None, identities: Sequence[Identity], *, on_anchor: bool = False) -> list[str]:
    """Who reads a certificate's common name as a DNS name and checks it against DNS name constraints: Java
    (JSSE) when the certificate has no DNS name or IP address and the name is of :data:`_HOSTNAME_LIKE`'s shape,
    OpenSSL (Python's ssl with it) when it has no DNS name and cn2dnsid takes the name (:func:`_openssl_reads`).
    Constraints ``on_anchor`` (a trusted root's) are OpenSSL's only: Java ignores a trust anchor's."""
    kinds = {i.kind for i in identities}
    if cn is None or "dns" in kinds:
        return []
    java = not on_anchor and "ip" not in kinds and _HOSTNAME_LIKE.match(cn) is not None
    return [who for who, reads in (("Java (JSSE)", java), ("OpenSSL", _openssl_reads(cn))) if reads]


def build(domains: Sequence[str], networks: Sequence) -> "x509.NameConstraints | None":
    """The critical NameConstraints of a CA permitting ``domains`` and ``networks``; None if neither."""
    from cryptography import x509

    if not domains and not networks:
        return None
    domains = list(domains) or [NO_DNS]
    permitted: list = [x509.DNSName(d) for d in domains]
    for d in domains:
        permitted += [x509.RFC822Name(d), x509.RFC822Name("." + d),
                      x509.UniformResourceIdentifier(d), x509.UniformResourceIdentifier("." + d)]
    permitted += [x509.IPAddress(n) for n in networks]
    excluded = None if networks else [x509.IPAddress(ALL_IPV4), x509.IPAddress(ALL_IPV6)]
    return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=excluded)


def of_chain(certs: Iterable["x509.Certificate"]) -> list["x509.NameConstraints"]:
    """The NameConstraints of each certificate in ``certs`` that has one, in order; a root's (self-signed: what
    a trust store holds, the trust anchor) a copy marked so (:func:`on_trust_anchor`)."""
    from cryptography import x509

    from certkit.signatures import self_signed

    found = []
    for cert in certs:
        try:
            nc = cert.extensions.get_extension_for_class(x509.NameConstraints).value
        except x509.ExtensionNotFound:
            continue
        if self_signed(cert):  # a copy: the certificate's own value is left as it is
            nc = x509.NameConstraints(nc.permitted_subtrees, nc.excluded_subtrees)
            setattr(nc, _ON_ANCHOR, True)
        found.append(nc)
    return found


_ON_ANCHOR = "certkit_on_trust_anchor"


def on_trust_anchor(nc: "x509.NameConstraints") -> bool:
    """Whether ``nc`` are a root's (:func:`of_chain`), which Java (JSSE) ignores: it takes a trust store's
    certificate as a trust anchor without constraints (RFC 5280 leaves them to the verifier), and applies only
    those of the CAs below it. OpenSSL, GnuTLS, NSS and Node apply a root's too."""
    return getattr(nc, _ON_ANCHOR, False)


def describe(nc: "x509.NameConstraints") -> str:
    """``permitted: example.com, 10.0.0.0/8`` (DNS and IP subtrees; emails and URIs follow the DNS ones)."""
    from cryptography import x509

    subtrees = [c for c in nc.permitted_subtrees or [] if isinstance(c, (x509.DNSName, x509.IPAddress))]
    permitted = [str(c.value) for c in subtrees if not _placeholder(c)]  # not a domain: it stands for none
    text = "permitted: " + (", ".join(permitted) if permitted else "none")
    text += "; no DNS names, emails or URIs" if any(_placeholder(c) for c in subtrees) else ""
    excluded = {str(c.value) for c in nc.excluded_subtrees or [] if isinstance(c, x509.IPAddress)}  # --permit-dns
    no_ip = {"0.0.0.0/0", "::/0"} <= excluded and not any(isinstance(c, x509.IPAddress) for c in subtrees)
    return text + ("; no IP addresses" if no_ip else "")  # every address excluded: said as 'no DNS names' is


def no_names(domain: str) -> bool:
    """Whether a constraint's domain is the placeholder that stands for no name of its kind at all:
    :data:`NO_DNS`, or :data:`OLD_NO_DNS` in a CA made before it; with or without a leading dot."""
    return domain.lower().strip(".") in (NO_DNS, OLD_NO_DNS)


def _placeholder(subtree) -> bool:
    """Whether a DNS, email or URI subtree is the placeholder (:func:`no_names`)."""
    from cryptography import x509

    kinds = (x509.DNSName, x509.RFC822Name, x509.UniformResourceIdentifier)
    return isinstance(subtree, kinds) and no_names(subtree.value)


def _renewed(nc: "x509.NameConstraints") -> "x509.NameConstraints":
    """``nc`` with an :data:`OLD_NO_DNS` placeholder written as :data:`NO_DNS` (what an intermediate
    inherits from a CA made before it): the same names, none, in the form pkilint accepts; never marked
    :func:`on_trust_anchor` (the intermediate is no root)."""
    subtrees = nc.permitted_subtrees or []
    old = [c for c in subtrees if _placeholder(c) and c.value.lower().strip(".") == OLD_NO_DNS]
    if not old:
        return type(nc)(nc.permitted_subtrees, nc.excluded_subtrees) if on_trust_anchor(nc) else nc
    renewed = [type(c)(("." if c.value.startswith(".") else "") + NO_DNS) if c in old else c for c in subtrees]
    return type(nc)(permitted_subtrees=list(dict.fromkeys(renewed)), excluded_subtrees=nc.excluded_subtrees)


def _dns_within(name: str, domain: str) -> bool:
    """As OpenSSL, Go and NSS read a DNS subtree: empty, every name; with a leading dot (as tools other than
    certkit write "the subdomains"), the names below it only; else the domain and the names below it. A
    name with a final dot is compared as written (OpenSSL: outside a subtree without one)."""
    name, domain = name.lower(), domain.lower()
    if not domain:
        return True
    if domain.startswith("."):
        return name.endswith(domain)
    if name.startswith("*."):
        name = name[2:] if name[2:] != domain else name  # *.example.com is inside example.com
    return name == domain or name.endswith("." + domain)


def _host_within(host: str, constraint: str) -> bool:
    """RFC 5280 for email and URI hosts: ``host`` exactly, or ``.domain`` for every subdomain."""
    host, constraint = host.lower(), constraint.lower()
    if constraint.startswith("."):
        return host.endswith(constraint)
    return host == constraint


def _matches(ident: Identity, constraint, *, every: bool = True) -> bool | None:
    """Whether ``ident`` is inside one subtree (a URI: for ``every`` verifier, else for one); None if the subtree is
    of another kind."""
    from cryptography import x509

    if ident.kind == "dns" and isinstance(constraint, x509.DNSName):
        return _dns_within(ident.value, constraint.value)
    if ident.kind == "ip" and isinstance(constraint, x509.IPAddress):
        addr = ipaddress.ip_address(ident.value)
        return constraint.value.version == addr.version and addr in constraint.value
    if ident.kind == "email" and isinstance(constraint, x509.RFC822Name):
        if "@" in constraint.value:
            return ident.value.lower() == constraint.value.lower()
        return _host_within(ident.value.rsplit("@", 1)[1], constraint.value)
    if ident.kind == "uri" and isinstance(constraint, x509.UniformResourceIdentifier):
        hosts = uri_hosts(ident.value)  # as every verifier reads it: a subtree holds the URI only if it holds both
        return (all if every else any)(_host_within(host, constraint.value) for host in hosts)
    return None


def uri_hosts(uri: str) -> tuple[str, str]:
    """The host of ``uri`` as the URI constraints of a CA are checked against it: as RFC 3986 reads it (Go's
    url.Parse, Java's java.net.URI), and as OpenSSL's nc_uri reads it (so nginx, curl, Node, Python's ssl, Redis):
    from '//' to the first ':' after it, wherever it is (a port's, a path's, a query's), else to the first '/', else
    to the end. The two differ for https://a.example.internal?x (OpenSSL: 'a.example.internal?x') and
    https://a.example.internal/x:y (OpenSSL: 'a.example.internal/x'); an empty host matches no constraint."""
    from urllib.parse import urlsplit  # only URIs need it: most one-shot commands never do

    try:
        rfc = urlsplit(uri).hostname or ""
    except ValueError:
        rfc = ""
    rest = uri.partition(":")[2]
    if not rest.startswith("//"):
        return rfc, ""
    rest = rest[2:]
    end = rest.find(":") if ":" in rest else rest.find("/")
    return rfc, rest if end < 0 else rest[:end]


def permitted(nc: "x509.NameConstraints", ident: Identity, *, issuing: bool = False) -> bool:
    """Whether one identity passes one NameConstraints value (RFC 5280 4.2.1.10) for every verifier (a URI whose
    host verifiers read otherwise: :func:`uri_hosts`). ``issuing`` (what certkit signs) also holds the CA to what it
    promises: a :data:`NO_DNS` subtree permits nothing, although a verifier accepts names under ``invalid``."""
    if any(_matches(ident, c, every=False) for c in nc.excluded_subtrees or []):
        return False
    relevant = [(c, m) for c in nc.permitted_subtrees or [] if (m := _matches(ident, c)) is not None]
    return not relevant or any(m and not (issuing and _placeholder(c)) for c, m in relevant)


def check(constraints: Sequence["x509.NameConstraints"], identities: Sequence[Identity], ca_name: str,
          notes: list[str] | None = None) -> None:
    """Refuse the first identity that one of ``constraints`` excludes. With ``notes`` (a renewal, which keeps
    what the certificate names), a URI that only OpenSSL reads outside them is kept, and a note says so."""
    for nc in constraints:
        for ident in identities:
            if permitted(nc, ident, issuing=True):
                continue
            why, advice, fixed = uri_outside(nc, ident, ca_name) or (None, None, None)
            if fixed and notes is not None:
                note = (f"it names the URI {shown(ident.value)}, which {why}; to change it, issue a new certificate "
                        f"naming '{shown(fixed)}'")
                notes += [note] if note not in notes else []  # once, below a constrained root and intermediate
                continue
            raise NameNotPermitted(f"'{shown(ident.value)}' " + (f"{why}; {advice}." if why else
                                   f"is outside the name constraints of CA '{shown(ca_name)}' ({describe(nc)})."))


def uri_outside(nc: "x509.NameConstraints", ident: Identity, ca_name: str) -> tuple[str, str, str | None] | None:
    """Why the URI ``ident`` is outside ``nc`` when its host is read otherwise than a DNS name's (none, an IP address,
    OpenSSL's reading), what to do, and when only OpenSSL's reading puts it outside, the URI to give; else None."""
    from urllib.parse import urlsplit

    from cryptography import x509

    if ident.kind != "uri":
        return None
    rfc, openssl = uri_hosts(ident.value)
    uri_subtrees = [c for c in nc.permitted_subtrees or [] if isinstance(c, x509.UniformResourceIdentifier)]
    domains = [c.value for c in uri_subtrees if not _placeholder(c) and not c.value.startswith(".")]
    ca = (f"the name constraints of CA '{shown(ca_name)}' (URI hosts: "
          f"{', '.join(domains) + ' and their subdomains' if domains else 'none'})")
    if not rfc:
        return (f"has no host, and verifiers check a URI against {ca} by its host: Go and OpenSSL refuse a URI "
                "without one", "give a URI with a host inside them (as in spiffe://DOMAIN/...)", None)
    if _ip_literal(rfc):
        return (f"has an IP address as its host, and verifiers check a URI's host against the domains of {ca}, "
                "never its IP ranges (Go: 'URI with IP ... cannot be matched against constraints')",
                "give a URI whose host is a DNS name inside them", None)
    if rfc != openssl.lower() and any(_host_within(rfc, c.value) for c in uri_subtrees) and \
            not any(_matches(ident, c, every=False) for c in nc.excluded_subtrees or []):
        netloc = urlsplit(ident.value).netloc
        head = ident.value[:ident.value.index(netloc) + len(netloc)]
        rest = ident.value[len(head):]
        fix = head + ("/" if rest[:1] in ("?", "#") else "") + rest.replace(":", "%3A")
        return (f"has the host '{shown(rfc)}', but OpenSSL (so nginx, curl, Node, Python's ssl, Redis) reads it as "
                f"'{shown(openssl)}' (it ends a URI's host at its first ':', else at its first '/'), outside {ca}, and "
                "refuses the certificate", f"give '{shown(fix)}'", fix)
    return None  # outside as every verifier reads it: the common words


def openssl_reading(identities: Sequence[Identity]) -> str:
    """For a verifier's reasons: how OpenSSL reads the host of each URI of ``identities`` it reads otherwise than
    RFC 3986 (:func:`uri_hosts`), or ''."""
    read = [(i.value, hosts) for i in identities if i.kind == "uri" and all(hosts := uri_hosts(i.value))
            and hosts[0] != hosts[1].lower()]
    return "".join(f" (OpenSSL, which refuses it, reads the host of {shown(uri)} as '{shown(openssl)}', not "
                   f"'{shown(rfc)}': it ends a URI's host at its first ':', else at its first '/')"
                   for uri, (rfc, openssl) in read)


def _ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def client_cn_outside(constraints: Sequence["x509.NameConstraints"], cn: str | None,
                      identities: Sequence[Identity]) -> list["x509.NameConstraints"]:
    """The constraints that a certificate's common name breaks, read as a host name as Java (JSSE) reads it
    when the certificate has no DNS name or IP address (but not against a root's constraints, which Java
    ignores), and OpenSSL when it has no DNS name and the common name a dot, whatever addresses it has
    (NAME_CONSTRAINTS_check_CN; see :func:`check_client_common_name`); empty when it breaks none, or is not
    read so."""
    if not common_name_readers(cn, identities):
        return []
    as_dns = Identity("dns", cn.rstrip(".").lower())
    return [nc for nc in constraints if not permitted(nc, as_dns)
            and common_name_readers(cn, identities, on_anchor=on_trust_anchor(nc))]


def check_client_common_name(constraints: Sequence["x509.NameConstraints"], cn: str | None,
                             identities: Sequence[Identity], ca_name: str, *, from_csr: bool = False,
                             kind: str = "client") -> None:
    """Refuse a certificate (a client's, mostly) that Java (JSSE) or OpenSSL would reject under DNS constraints.

    With no DNS name or IP address in the SAN, both read a common name that
    looks like a host name as a DNS name and check it against the constraints:
    ``alice`` from an intermediate CA permitting ``example.internal`` is
    rejected by every Java server (Tomcat, Jetty, Spring Boot, Kafka) that
    trusts the root above it, ``alice.example.org`` by OpenSSL too. Java
    ignores a trusted root's own constraints (:func:`on_trust_anchor`), so
    under a constrained root only what OpenSSL reads is refused: ``alice`` is
    issued, ``alice.example.org`` is not.
    """
    for nc in client_cn_outside(constraints, cn, identities):
        as_dns = Identity("dns", cn.rstrip(".").lower())
        domains = [str(c.value) for c in nc.permitted_subtrees or [] if _matches(as_dns, c) is not None]
        inside = [d for d in domains if not no_names(d)]
        example = f"{shown(cn.split('.')[0].lower())}.{inside[0]}" if inside else ""
        library_fix = cli_fix = ""
        if from_csr:  # sign-csr takes names from the request only: the requester must make a new one
            fix = (f"ask for a new CSR with a subjectAltName DNS entry inside them (DNS:{example}), or "
                   if inside else "ask for a new CSR ") + "with a common name that is not a host name"
        else:
            library_fix, cli_fix = f"dns_names=['{example}']", f"--dns {example}"
            fix = (f"give it a DNS name inside them ({library_fix}), or " if inside else "") + \
                "use a common name that is not a host name"
        readers = readers_of_common_name(cn, identities, on_anchor=on_trust_anchor(nc))
        one = " and " not in readers
        error = NameNotPermitted(
            f"{readers} read{'s' if one else ''} the common name '{shown(cn)}' of a {kind} "
            f"certificate without a DNS name as a host name and check{'s' if one else ''} it against the name "
            f"constraints of CA '{shown(ca_name)}' ({describe(nc)}), so {'it' if one else 'they'} would reject "
            f"this certificate; {fix}, such as 'Alice Smith' "
            "(docs/two-tier-pki.md)."
        )
        if inside and library_fix:  # the command line says its own option (certkit.cli.failures.cli_message)
            error.cli_words = (library_fix, cli_fix)
        raise error


def readers_of_common_name(cn: str, identities: Sequence[Identity] = (), *, on_anchor: bool = False) -> str:
    """:func:`common_name_readers` in words."""
    return " and ".join(common_name_readers(cn, identities, on_anchor=on_anchor))


def narrowed(parent_constraints: Sequence["x509.NameConstraints"], parent_name: str,
             domains: Sequence[str], networks: Sequence) -> "x509.NameConstraints | None":
    """An intermediate's constraints: the nearest parent's, or narrower; never wider.

    Without ``domains`` and ``networks`` it inherits the parent's. With either,
    they mean what they mean for a root (--permit-dns alone: no IP address;
    --permit-ip alone: no DNS name), and each must lie inside what the parent
    permits: the same flags give the same namespace under any parent.
    """
    from cryptography import x509

    for d in domains:
        try:
            check(parent_constraints, [Identity("dns", d)], parent_name)
        except NameNotPermitted as exc:
            raise NameNotPermitted(f"An intermediate cannot be wider than its parent: {exc}") from None
    for net in networks:
        for nc in parent_constraints:
            allowed = [c.value for c in nc.permitted_subtrees or [] if isinstance(c, x509.IPAddress)]
            denied = [c.value for c in nc.excluded_subtrees or [] if isinstance(c, x509.IPAddress)]
            if (allowed and not any(p.version == net.version and net.subnet_of(p) for p in allowed)) or any(
                    e.version == net.version and net.overlaps(e) for e in denied):
                raise NameNotPermitted(
                    f"An intermediate cannot be wider than its parent: '{net}' is outside the name constraints "
                    f"of CA '{shown(parent_name)}' ({describe(nc)})."
                )
    if not parent_constraints:
        return build(domains, networks)
    if not domains and not networks:
        return _renewed(parent_constraints[0])
    return build(domains, networks)
