"""Whether a certificate is valid for a name and a purpose, as the peers that check it decide: a server's DNS
names and IP addresses as TLS clients match them (RFC 6125; IDN as A-labels), a client's CN and
subjectAltName entries as the servers that map them do (nginx, PostgreSQL, SPIFFE); its dates, and each CA's
above it, that CA named (its purpose: :mod:`certkit.verify_purpose`). For :mod:`certkit.verify`, which states each
problem as a plain sentence."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import unicodedata

from certkit.errors import CertkitError
from certkit.names_notation import host_in_notation, refuse_surrounding_space
from certkit.san_identities import python_idna_note
from certkit.text import shown
from certkit.time_words import dated


def cn_text(name) -> str:
    from certkit.vocabulary import common_name

    cn = common_name(name)
    return f"CN={cn}" if cn is not None else (name.rfc4514_string() or "(empty name)")


def common_names(name) -> list[str]:
    """Every common name of a subject or issuer, in the certificate's order (:func:`common_name` is the first)."""
    from cryptography.x509.oid import NameOID

    return [str(attr.value) for attr in name.get_attributes_for_oid(NameOID.COMMON_NAME)]


def san_list(cert) -> list:
    from cryptography import x509

    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def _dns_matches(pattern: str, host: str) -> bool:
    """Whether the SAN ``pattern`` names ``host``. A final dot on the host is dropped, as curl, browsers, Node
    and GnuTLS drop it (:func:`final_dot_note` says who does not); one on the pattern is kept: OpenSSL and
    Python's ssl match such a name only to the same name with its dot."""
    pattern, host = pattern.lower(), host.lower()
    if pattern.startswith("*.") and pattern.endswith("."):  # OpenSSL and Python take it for no wildcard at all
        return False
    host = host if pattern.endswith(".") else host.rstrip(".")
    if pattern.startswith("*."):  # as OpenSSL (Python's ssl) matches one: never over a single label (*.com)
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:] and "." in rest
    return pattern == host


def dns_names(cert) -> set[str]:
    """The certificate's SAN DNS names, in lower case, as written (a final dot kept)."""
    from cryptography import x509

    return {san.value.lower() for san in san_list(cert) if isinstance(san, x509.DNSName)}


def identities_as_written(leaf) -> list:
    """The leaf's names as its subjectAltName writes them (a wildcard, '_svc', a long label, a final dot kept), for
    the name constraints; a name certkit would not issue is no reason here, as OpenSSL and GnuTLS take it."""
    from cryptography import x509

    from certkit.names import Identity

    kinds = {x509.DNSName: "dns", x509.IPAddress: "ip", x509.RFC822Name: "email", x509.UniformResourceIdentifier: "uri"}
    return [Identity(kinds[type(san)], san.value.lower() if isinstance(san, x509.DNSName) else
                     str(san.value)) for san in san_list(leaf) if type(san) in kinds]


def dotted_san(leaf, name: str | None) -> str | None:
    """Why the verifier refused a certificate whose SAN ``name`` ends with a dot, as asked; None otherwise."""
    dotted = next((n for n in dns_names(leaf) if n == (name or "").lower() and n.endswith(".")), None)
    return None if dotted is None else (
        f"its subjectAltName {dotted} ends with a dot: OpenSSL and Python's ssl match it to {dotted} only, and "
        "cryptography's verifier (certkit verify's) refuses a name with a final dot; certificates name hosts "
        f"without it: reissue it for {dotted.rstrip('.')}")


def server_name(name: str):
    """``name`` as the GeneralName the server verifier checks (IDN U-labels become A-labels)."""
    from cryptography import x509

    from certkit.names import parse_host

    ident = parse_host(name)
    if ident.kind == "ip":
        return ident.value, x509.IPAddress(ipaddress.ip_address(ident.value))
    return ident.value, x509.DNSName(ident.value)


def _names_of(cert) -> list[str]:
    """SAN values, leaving out a directoryName that only repeats the subject."""
    from cryptography import x509

    from certkit.inspect import general_names

    sans = [s for s in san_list(cert) if not (isinstance(s, x509.DirectoryName) and s.value == cert.subject)]
    return [e["value"] for e in general_names(sans)]


def _client_san_matches(san, name: str) -> bool:
    """Whether ``name`` is the client identity ``san``, compared as the servers that map it do: a
    DNS name and an IP address as names of hosts, an e-mail address with its domain in any case
    (the mailbox exactly), a URI with its scheme and host in any case (the rest exactly: a SPIFFE
    ID's path is case-sensitive); a CN (above) exactly, as PostgreSQL maps it to a role."""
    import ipaddress
    from urllib.parse import urlsplit

    from cryptography import x509

    if isinstance(san, x509.DNSName):  # as written (a wildcard too), in any case, IDN as U- or A-label
        have = san.value.lower().rstrip(".")
        if have == name.lower().rstrip("."):
            return True
        try:
            canonical, _gn = server_name(name)
        except CertkitError:
            return False
        return have == canonical.lower().rstrip(".")
    if isinstance(san, x509.IPAddress):
        try:
            return ipaddress.ip_address(name) == san.value
        except ValueError:
            return False
    if isinstance(san, x509.RFC822Name):
        mailbox, _, domain = san.value.rpartition("@")
        given_mailbox, _, given_domain = name.rpartition("@")
        return mailbox == given_mailbox and domain.lower() == given_domain.lower() and "@" in name
    if isinstance(san, x509.UniformResourceIdentifier):
        try:
            have, want = urlsplit(san.value), urlsplit(name)
        except ValueError:
            return False
        return (have.scheme.lower(), have.netloc.lower(), have.path, have.query, have.fragment) == \
               (want.scheme.lower(), want.netloc.lower(), want.path, want.query, want.fragment)
    return False


def final_dot_note(name: str) -> str:
    """What to say of a host name given with its final dot (``localhost.``) that the certificate matches."""
    return (f"{name} ends with a dot: curl, browsers, Node and GnuTLS drop it and match, but Python and OpenSSL "
            "clients connecting to that name refuse the certificate (hostname mismatch); connect to "
            f"{name.rstrip('.')}")


def name_notes(cert, purpose: str, name: str) -> list[str]:
    """Notes on a name the certificate matches that some clients connecting to it still refuse, or that some
    servers map otherwise."""
    if purpose != "server":
        cns = common_names(cert.subject)
        return [f"it has {len(cns)} common names ({', '.join(shown(c) for c in cns)}): PostgreSQL, Mosquitto and "
                f"Apache map the first to a user, Go-based servers the last"] if len(cns) > 1 else []
    notes = [final_dot_note(name)] if name.endswith(".") and name.lower() not in dns_names(cert) else []
    idna_note = python_idna_note(name, server_name(name)[0]) if "*" not in name else None
    return notes + ([idna_note] if idna_note else [])


def name_problem(cert, purpose: str, name: str) -> str | None:
    from cryptography import x509

    from certkit.vocabulary import common_name

    names = _names_of(cert)
    listed = ", ".join(names) or "no host at all"
    if purpose == "server":
        canonical, gn = server_name(name)
        host = canonical + ("." if name.endswith(".") else "")  # a final dot kept: _dns_matches says what it does
        for san in san_list(cert):
            if isinstance(gn, x509.IPAddress) and isinstance(san, x509.IPAddress) and san.value == gn.value:
                return None
            if isinstance(gn, x509.DNSName) and isinstance(san, x509.DNSName) and _dns_matches(san.value, host):
                return None
        cn, sans = common_name(cert.subject), san_list(cert)
        # OpenSSL (so Python's ssl) and Node fall back to the CN while the subjectAltName holds no DNS name; curl
        # and GnuTLS only while it holds no DNS name and no IP address either
        ips = [str(s.value) for s in sans if isinstance(s, x509.IPAddress)]
        if isinstance(gn, x509.DNSName) and cn is not None and _dns_matches(cn.rstrip("."), canonical) \
                and not any(isinstance(s, x509.DNSName) for s in sans):
            cn_said = "" if cn.lower().rstrip(".") == canonical.lower() else f" ({shown(cn)})"
            if ips:
                return (f"not valid for name {name}: it names {name} only in its subject CN{cn_said}, without a DNS "
                        f"name in its subjectAltName (only {listed}): Python's ssl, OpenSSL and Node fall back to the "
                        "CN and accept it, curl, GnuTLS, browsers and Go refuse it; reissue it with the name as a "
                        f"subjectAltName (certkit issue-server {canonical} {' '.join(ips)})")
            return (f"not valid for name {name}: it names {name} only in its subject CN{cn_said}, without a "
                    + ("DNS name in its subjectAltName" if sans else "subjectAltName") + ": "
                    "curl, Python's ssl, OpenSSL, GnuTLS, Node and Java fall back to the CN and accept it, browsers "
                    "and Go refuse it; reissue it with the name as a subjectAltName (certkit issue-server)")
        if isinstance(gn, x509.IPAddress) and any(isinstance(s, x509.DNSName) and s.value == canonical for s in sans):
            return (f"not valid for name {name}: its subjectAltName holds {canonical} as a DNS name "
                    f"(DNS:{canonical}), not as an IP address (IP:{canonical}); clients connecting to an address "
                    "match it against IP entries only (curl, OpenSSL, Python's ssl, Node, browsers): reissue it with "
                    f"the address as one (certkit issue-server NAME {canonical})")
        return f"not valid for name {name}: it names {listed}"
    # A client is known by its SAN entries or its subject CN (what nginx and PostgreSQL map); the CN
    # may be given as its value (alice) or as it is shown (CN=alice).
    cn = common_name(cert.subject)
    if cn is not None and (name == cn or (name[:3].lower() == "cn=" and name[3:] == cn)):
        return None
    if any(_client_san_matches(san, name) for san in san_list(cert)):
        return None
    later = name[3:] if name[:3].lower() == "cn=" and name[3:] in common_names(cert.subject) else name
    if cn is not None and later in common_names(cert.subject)[1:]:
        return (f"not valid for name {name}: {later} is not its first common name but a later one; servers that map "
                f"a CN to a user (PostgreSQL, Mosquitto, Apache) take the first, {cn} (Go-based ones the last)")
    if cn is not None and cn != name and unicodedata.normalize("NFC", cn) == unicodedata.normalize("NFC", name):
        return (f"not valid for name {name}: its CN is the same text in another Unicode form (the CN in {_form(cn)}, "
                f"the name given in {_form(name)}), and servers that map a CN to a user compare the bytes")
    looks_like_dn = re.match(r"/?[A-Za-z][A-Za-z0-9.]*=", name) is not None  # CN=zed,O=Lab or /CN=zed
    hint = (f" (--name takes a name's value, such as the CN {cn}, not a distinguished name)"
            if looks_like_dn and cn is not None else "")
    if (noted := host_in_notation(name)) and any(_client_san_matches(s, noted[0]) for s in san_list(cert)):
        hint = f": {noted[1]}"  # a peer's URL or host:port, whose host it names
    return (f"not valid for name {name}: it names {cn_text(cert.subject)}" + (f" and {listed}" if names else "")
            + hint)


def _form(text: str) -> str:
    """``NFC``, ``NFD`` or ``a mixed form``: which Unicode normalization form ``text`` is in."""
    for form in ("NFC", "NFD"):
        if unicodedata.is_normalized(form, text):
            return form
    return "a mixed form"


def cn_problem(path: list, purpose: str) -> str | None:
    """A certificate without a DNS name whose common name reads as a host name outside a CA's DNS name
    constraints: OpenSSL (error 47) refuses it when the name has a dot, Java when it has no IP address either
    and the CA is below the trusted root (Java ignores a root's constraints), and certkit does not issue it
    (:func:`certkit.constraints.check_client_common_name`); None otherwise."""
    from cryptography import x509

    from certkit.constraints import client_cn_outside, common_name_readers, of_chain, on_trust_anchor
    from certkit.names import Identity
    from certkit.text import shown
    from certkit.vocabulary import common_name

    identities = [Identity("dns" if isinstance(san, x509.DNSName) else "ip", str(san.value))
                  for san in san_list(path[0]) if isinstance(san, (x509.DNSName, x509.IPAddress))]
    cn = common_name(path[0].subject)
    for ca in path[1:]:
        for nc in client_cn_outside(of_chain([ca]), cn, identities):
            who = common_name_readers(cn, identities, on_anchor=on_trust_anchor(nc))
            names = [*(["Java (JSSE)"] if "Java (JSSE)" in who else []),
                     *(["OpenSSL (permitted subtree violation)", "Python's ssl"] if "OpenSSL" in who else [])]
            readers = f"{', '.join(names[:-1])} and {names[-1]}" if len(names) > 1 else names[0]
            return (f"its common name '{shown(cn)}' reads as a host name (it has no DNS name"
                    f"{'' if identities else ' or IP address'}), and it is outside the name constraints of "
                    f"{cn_text(ca.subject)}: {readers} {'clients' if purpose == 'server' else 'servers'} refuse it")
    return None


def plain_verifier_error(text: str) -> str:
    """cryptography's verifier message without Python reprs: ``<Certificate(subject=<Name(CN=x)>, ...)>``
    becomes ``CN=x``; a refusal of certkit's own extension check is said in its own words."""
    text = re.sub(r"<Certificate\(subject=<Name\((.*?)\)>.*?\)>", r"\1", text)
    text = text.replace("Python extension validator failed: ValueError: ", "")
    text = re.sub(r"AlgorithmIdentifier \{.*\}", _algorithm_named, text)  # a Rust debug dump: its name alone
    text = re.sub(r"<Name\((.*?)\)>", r"\1", text)
    return _in_words(text)


# cryptography's words for an extension, by OID, and for what is wrong with it: said in words, OID beside
_EXTENSIONS = {"2.5.29.15": "keyUsage", "2.5.29.19": "basicConstraints", "2.5.29.35": "authorityKeyIdentifier",
               "2.5.29.14": "subjectKeyIdentifier", "2.5.29.17": "subjectAltName", "2.5.29.37": "extendedKeyUsage",
               "2.5.29.30": "nameConstraints", "2.5.29.31": "cRLDistributionPoints", "2.5.29.32": "certificatePolicies",
               "1.3.6.1.5.5.7.1.1": "authorityInformationAccess", "2.5.29.36": "policyConstraints",
               "2.5.29.33": "policyMappings", "2.5.29.54": "inhibitAnyPolicy", "1.3.6.1.5.5.7.48.1.5": "ocspNoCheck"}
# The extensions OpenSSL handles when critical (X509_supported_extension); any other critical one it refuses, in any
# certificate of the chain, the trust anchor's too: "unhandled critical extension" (and Java refuses them as well).
_OPENSSL_CRITICAL = {"2.16.840.1.113730.1.1", "2.5.29.15", "2.5.29.17", "2.5.29.19", "2.5.29.32", "2.5.29.31",
                     "2.5.29.37", "1.3.6.1.5.5.7.1.7", "1.3.6.1.5.5.7.1.8", "1.3.6.1.5.5.7.48.1.5", "2.5.29.36",
                     "1.3.6.1.5.5.7.1.14", "2.5.29.30", "2.5.29.33", "2.5.29.54"}
_CRITICALITY = {
    "2.5.29.19": "does not mark its basicConstraints critical, as a CA's must be: Python 3.13's default context and "
                 "openssl verify -x509_strict refuse the chain; OpenSSL's default, GnuTLS, Java, Node and Go accept it",
    "2.5.29.37": "marks its extendedKeyUsage critical, which the web PKI's rules forbid: cryptography-based verifiers "
                 "refuse it; OpenSSL (-x509_strict too), Python, GnuTLS, Java, Node and Go accept it"}


def unhandled_critical(path: list) -> str | None:
    """A critical extension OpenSSL does not handle, in any certificate of the chain: OpenSSL (so Python's ssl,
    curl, nginx, Node) and Java refuse it, whatever cryptography's verifier says; None when there is none."""
    for cert in path:
        for ext in cert.extensions:
            oid = ext.oid.dotted_string
            if ext.critical and oid not in _OPENSSL_CRITICAL:
                who = "it marks" if cert is path[0] else f"the CA {cn_text(cert.subject)} marks"
                java = " and Java" if cert is not path[-1] or len(path) == 1 else ""  # Java checks no trust anchor's
                what = f"{_EXTENSIONS[oid]} ({oid}) extension" if oid in _EXTENSIONS else f"extension {oid}"
                return (f"{who} its {what} critical, which OpenSSL does "
                        f"not handle: OpenSSL (so Python's ssl, curl, nginx and Node){java} refuse it (\"unhandled "
                        "critical extension\"); GnuTLS and Go accept it")
    return None


def _in_words(text: str) -> str:
    """The verifier's reasons with OIDs named and its phrases said plainly (its own text stays on the verifier
    line): which certificate, which extension, what is wrong, and who else refuses it."""
    def extension(match: re.Match) -> str:
        oid, wrong = match[1], match[2]
        name = f"{_EXTENSIONS.get(oid, 'unnamed')} ({oid})"
        if wrong == "Certificate is missing required extension":
            return (f"a certificate lacks the {name} extension, which cryptography's verifier requires (the web "
                    "PKI's rules; OpenSSL's default and GnuTLS do not)")
        if wrong == "Certificate extension has incorrect criticality":
            return "a certificate " + _CRITICALITY.get(oid, f"gives its {name} extension a criticality cryptography's "
                                                            "verifier (the web PKI's rules) refuses")
        if "unaccounted-for critical extensions" in wrong:  # one OpenSSL handles (an unhandled one is said before)
            from certkit.verify_critical import refusal_words

            return refusal_words(oid, name)
        return f"a certificate's {name} extension: {wrong}"

    text = re.sub(r"invalid extension: ([0-9.]+): ([^(]+?)(?= \(|$)", extension, text)
    text = text.replace("no permitted name constraints matched SAN", "one of its names is outside a CA's name "
                        "constraints (OpenSSL: permitted subtree violation)")
    text = text.replace("candidates exhausted: ", "no chain to a trusted CA passes: ")
    return re.sub(r"\(encountered processing (.*?)\)", r"(in \1)", text)


def _algorithm_named(dump: re.Match) -> str:
    """The algorithm a Rust ``AlgorithmIdentifier { ... }`` dump names: ``EcDsaWithSha224``, or an OID."""
    found = re.search(r"ObjectIdentifier \{ oid: ([0-9.]+) \}", dump[0]) or re.search(r"params: (\w+)", dump[0])
    return found[1] if found else "a signature algorithm it does not allow"


def check_verify_arguments(cert_path, name, now, **paths) -> None:
    """The caller's mistakes said as such, before a parse error could be taken for damage in a certificate."""
    from certkit.files import STDIN
    from certkit.paths import check_path_argument

    if str(cert_path) != STDIN:
        check_path_argument(cert_path, "cert_path")
    for what, value in paths.items():
        if value is not None:
            check_path_argument(value, what)
    _check_name_and_now(name, now)


def _check_name_and_now(name, now) -> None:
    from certkit.profiles import aware
    from certkit.vocabulary import wrong_type

    if name is not None and not isinstance(name, str):
        raise wrong_type("name", "a str (a host name, an IP address, a client's name)", name)
    if name is not None:
        refuse_surrounding_space(name, f"name '{shown(name)}'")
    if now is not None:
        aware(now, "now")


def verify_arguments(leaf, purpose, roots, intermediates, name, now) -> tuple:
    """``verify_certificate``'s arguments, the caller's mistakes said as such: a certificate where one is asked
    (an x509.Certificate, an IssuedCert or a CA: :func:`certkit.issued.certificate_argument`; ``roots`` and
    ``intermediates`` a list of them, or one), a purpose of PURPOSES, a str ``name``, an aware ``now``. Returns
    (leaf, roots, intermediates), each a certificate."""
    from certkit.issued import certificate_argument
    from certkit.verify import PURPOSES

    if purpose not in PURPOSES:
        raise CertkitError(f"Unknown purpose '{purpose}'; choose one of: {', '.join(PURPOSES)}, peer.")
    _check_name_and_now(name, now)

    def each(given, what: str) -> list:
        many = hasattr(given, "__iter__") and not isinstance(given, (str, bytes))  # a PEM is one, wrong, value
        return [certificate_argument(one, what) for one in (given if many else [given])]

    return certificate_argument(leaf, "leaf"), each(roots, "roots"), each(intermediates, "intermediates")


def date_problems(path: list, now: dt.datetime) -> list[str]:
    """The certificates of ``path`` (the leaf first, then the CAs above it) outside their validity period, in
    words; a CA's words name it, and say where it stands (:func:`ca_date_problem`)."""
    return [p for p in (_date_problem(path[0], "", now),) if p] + _above(path, now)


def ca_date_problem(ca, depth: int, now: dt.datetime) -> str | None:
    """What keeps the CA ``ca``, ``depth`` places above a certificate (1: the CA that issued it), from being valid
    at ``now``, in words: an expired CA is not an expired certificate below it. None when it is in its dates."""
    name = cn_text(ca.subject)
    return _date_problem(ca, f"the issuing CA {name} " if depth == 1 else f"the CA {name} above the issuing CA ", now)


def dates_above(leaf, cas: list, now: dt.datetime | None = None) -> list[str]:
    """The CAs of ``cas`` above ``leaf`` (its issuer among them, then that one's, as a verifier would choose:
    :func:`certkit.signatures.issuer_among`) outside their validity period at ``now``, in words."""
    from certkit.signatures import issuer_among

    now = now or dt.datetime.now(dt.UTC)
    path, pool = [leaf], list(cas)
    while len(path) < 9 and (issuer := issuer_among(path[-1], pool, now)) is not None:
        pool.remove(issuer)
        path.append(issuer)
    return _above(path, now)


def _above(path: list, now: dt.datetime) -> list[str]:
    return [p for depth, ca in enumerate(path[1:], start=1) if (p := ca_date_problem(ca, depth, now))]


def _date_problem(cert, who: str, now: dt.datetime) -> str | None:
    # the moment to the second, as inspect, probe and serve say it (certkit.time_words.dated): "expired on 2026-11-24
    # 10:00:00 UTC (10 days ago)", "not valid before 2026-12-09 10:00:00 UTC (in 5 days)"
    rows = dict(dated(cert.not_valid_before_utc, cert.not_valid_after_utc, now))
    if "expired" in rows:
        return f"{who}expired on {rows['expired']}"
    if "valid from" in rows:
        return f"{who}not valid before {rows['valid from']}"
    return None
