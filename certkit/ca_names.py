"""How a CA is named: the default common name (which tells the roots of different machines apart in a
trust store), the subject made of init-ca's --name, --org, --org-unit and --country, and the refusal of an
intermediate that would carry the name of a CA above it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from certkit import names as _names
from certkit.errors import InvalidName, cli_worded
from certkit.text import shown
from certkit.vocabulary import wrong_type

if TYPE_CHECKING:
    from cryptography import x509


def default_ca_name(*, intermediate: bool = False) -> str:
    """``certkit CA user@host``: tells apart the roots of different machines in a trust store; an
    intermediate's, ``certkit intermediate CA user@host``, is never its root's."""
    import getpass  # here, not at the top: only init-ca needs them, and issuing is timed
    import socket

    try:
        user = getpass.getuser()
    except Exception:  # no login name (containers): the host alone still identifies it
        user = "user"
    # cut to what a common name holds: 64 bytes in UTF-8 (a login name need not be ASCII)
    kind = "intermediate CA" if intermediate else "CA"
    # (a login name or host name that is not UTF-8, as $USER gives Latin-1 bytes, loses those bytes)
    name = f"certkit {kind} {user}@{socket.gethostname()}".encode("utf-8", "surrogateescape")
    name = name[:_names.MAX_ATTRIBUTE_BYTES].decode("utf-8", "ignore")
    # what a login or host name may hold that a common name cannot (a tab, an escape), and blanks at the end
    # of the cut: dropped, as a default is not the user's to fix (--name is)
    return "".join(ch for ch in name if ch.isprintable()).rstrip()


def refuse_namesake(subject: "x509.Name", above: list, *, library: bool = False) -> None:
    """An intermediate named as a CA above it would be self-issued (RFC 5280 6.1: its own name as issuer),
    which path-length checks count differently, and which no person, log or ``inspect`` tells apart.
    The fix is said as init-ca's --name, or with ``library`` as a ``CA.create`` call (which the command
    line still says as --name, :func:`certkit.cli.failures.cli_message`)."""
    for cert in above:
        if _compared(cert.subject) == _compared(subject):
            name = shown(subject.rfc4514_string())
            fix = "CA.create(another_name, parent=...)" if library else "--name"
            raise cli_worded(InvalidName(f"The intermediate would carry the name of the CA above it ({name}); give "
                                         f"it a name of its own ({fix})."), fix, "--name")


def _compared(name: "x509.Name") -> tuple:
    """A name as RFC 5280 (7.1) and OpenSSL's X509_NAME_cmp compare it: case and runs of spaces do
    not count ("Root CA" is "root  ca"); and in any order of its attributes, as people read it: a CA made
    before certkit wrote C, O, OU, CN in that order holds them the other way round, and an intermediate
    does not take such a root's very name by the order alone."""
    return tuple(sorted(tuple(sorted((attr.oid.dotted_string, " ".join(str(attr.value).casefold().split()))
                                     for attr in rdn)) for rdn in name.rdns))


def ca_subject(common_name_: str | None, organization, organizational_unit, country, *,
               intermediate: bool = False) -> "x509.Name":
    """A CA's subject: its common name (the default without one), organization, unit and country."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    # An explicit "" is refused as " " is; only None (no name given) takes the default.
    default = default_ca_name(intermediate=intermediate) if common_name_ is None else common_name_
    cn = _names.parse_attribute(default, "common name")
    attrs = []
    for oid, value, field in ((NameOID.ORGANIZATION_NAME, organization, "organization"),
                              (NameOID.ORGANIZATIONAL_UNIT_NAME, organizational_unit, "organizational unit")):
        if value is not None:
            attrs.append(x509.NameAttribute(oid, _names.parse_attribute(value, field)))
    if country is not None:
        attrs.insert(0, x509.NameAttribute(NameOID.COUNTRY_NAME, parse_country(country)))
    # In X.501 order, the most significant first: C, O, OU, then CN (as every public CA's, and as the CA/Browser
    # Forum's Baseline Requirements 7.1.4.2 require; pkilint: cabf.serverauth.invalid_rdn_order). CN first read
    # backwards: openssl printed 'CN = Home Lab CA, O = Home, C = DE', Java 'C=DE,O=Home,CN=Home Lab CA'.
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def parse_country(country: str) -> str:
    """A subject's country: two letters (ISO 3166), upper-cased."""
    if not isinstance(country, str):
        raise wrong_type("country", "a str of two letters", country)
    if len(country) != 2 or not country.isascii() or not country.isalpha():
        raise InvalidName(f"'{shown(country)}' is not a country code: use two letters, as in DE or US.")
    return country.upper()
