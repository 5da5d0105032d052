"""The identities a certificate certkit issued names in its SAN, read back (a renewal keeps them; verify
checks a peer's), each checked again by today's rules."""

from __future__ import annotations

import ipaddress
import os

from certkit import names as _names
from certkit import names_dns as _names_dns
from certkit.names import Identity


def identities_of(cert, kind: str) -> list[Identity]:
    """The SAN of a certificate this CA issued, checked again by today's rules."""
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out = []
    for gn in san:
        if isinstance(gn, x509.DNSName) and _carried(gn.value):
            out.append(Identity("dns", gn.value))
        elif isinstance(gn, x509.DNSName):
            out.append(_names.parse_host(gn.value) if kind in ("server", "peer")
                       else _names_dns.parse_dns_name(gn.value, allow_wildcard=False))
        elif isinstance(gn, x509.IPAddress):
            out.append(Identity("ip", str(gn.value)))
        elif isinstance(gn, x509.RFC822Name):
            out.append(_names.parse_email(gn.value))
        elif isinstance(gn, x509.UniformResourceIdentifier):
            out.append(Identity("uri", gn.value) if _carried_uri(gn.value) else _names.parse_uri(gn.value))
        # a DirectoryName SAN is the subject DN, which the profile puts back itself
    return out


def _carried(name: str) -> bool:
    """Whether the DNS name ``name`` of a certificate being renewed is kept as certified though certkit refuses it
    today: a last label that is a number (0x7f000001, certified before certkit read it as an IPv4 address). A
    renewal never changes what a certificate names; its notes say what curl and browsers make of it."""
    return _names._ends_in_a_number(name) and _names_dns._LDH_LABEL.match(name.rpartition(".")[2].lower()) is not None


def _carried_uri(uri: str) -> bool:
    """Whether the URI ``uri`` of a certificate being renewed is kept as certified though certkit refuses it today
    (certified before it refused them): an entry with its type, 'URI:spiffe://...' (a URI of the scheme 'URI'), or a
    host Go cannot read (https://example.internal./x: :func:`certkit.names_uri.go_unreadable`)."""
    from certkit.names_notation import is_a_uri, typed_value
    from certkit.names_uri import go_unreadable

    return typed_value(uri, is_a_uri) is not None or go_unreadable(uri) is not None


def renewal_identities(old, kind: str) -> list[Identity]:
    """The identities a renewal of ``old`` as a ``kind`` certificate keeps; refused when ``kind`` is not the old
    certificate's (its extendedKeyUsage says which): a client renewed as a server would gain serverAuth."""
    from certkit.constants import LEAF_KINDS
    from certkit.errors import InvalidArgument
    from certkit.text import shown
    from certkit.vocabulary import leaf_kind, serial_hex

    was = leaf_kind(old)
    if was in LEAF_KINDS and kind != was:
        raise InvalidArgument(f"The certificate {serial_hex(old.serial_number)} is a {was} certificate, and its "
                              f"renewal is one too, not a {shown(str(kind))} certificate: a certificate for another "
                              "purpose is a new one (issue it).")
    return identities_of(old, kind)


def check_request_names(request) -> None:
    """A request's kind and names as the builders (server_request(), client_request(), csr_request(),
    renewal_request()) make them, for one built by hand: each identity as its kind's parser writes it (no
    ``*.com``, no ``bad..name``), only host names and addresses in a server's or peer's, and at least one."""
    from certkit.constants import LEAF_KINDS
    from certkit.errors import InvalidArgument, InvalidName
    from certkit.text import shown
    from certkit.vocabulary import wrong_type

    if request.kind not in LEAF_KINDS:
        raise InvalidArgument(f"Unknown certificate kind '{shown(str(request.kind))}'; choose one of: "
                              f"{', '.join(LEAF_KINDS)}.")
    if not isinstance(request.identities, (tuple, list)) or not all(isinstance(i, Identity)
                                                                     for i in request.identities):
        raise wrong_type("Request.identities", "a tuple of Identity (server_request() makes them)", request.identities)
    host = request.kind in ("server", "peer")
    for ident in request.identities:
        if ident.kind == "ip":  # as written (a renewal carries an IPv4-mapped address an older certkit wrote)
            try:
                again = Identity("ip", str(ipaddress.ip_address(ident.value)))
            except ValueError:
                raise InvalidName(f"'{shown(str(ident.value))}' is not an IP address.") from None
        elif ident.kind == "dns" and request.renewed_from and _carried(ident.value):
            again = ident  # as certified (identities_of)
        elif ident.kind == "dns":
            again = (_names.parse_host(ident.value) if host
                     else _names_dns.parse_dns_name(ident.value, allow_wildcard=False))
        elif ident.kind == "uri" and not host and request.renewed_from and _carried_uri(ident.value):
            again = ident  # as certified (identities_of)
        elif ident.kind in ("email", "uri") and not host:
            again = (_names.parse_email if ident.kind == "email" else _names.parse_uri)(ident.value)
        else:
            raise InvalidName(f"A {request.kind} certificate names no {ident.kind} ('{shown(str(ident.value))}').")
        if (again.kind, again.value) != (ident.kind, ident.value):
            raise InvalidName(f"'{shown(str(ident.value))}' is written '{shown(again.value)}' in a certificate; "
                              "build the request with server_request() or client_request().")
    if host and not any(i.kind in ("dns", "ip") for i in request.identities):
        raise InvalidName(f"A {request.kind} certificate names at least one DNS name or IP address.")


def python_idna_note(typed: str, a_label: str) -> str | None:
    """What to say of a host name typed in Unicode that Python's ssl module and Java convert otherwise: Python
    encodes a server_hostname with its 'idna' codec (IDNA2003), Java's JSSE the host name it checks with
    java.net.IDN (IDNA2003 too, the same mapping), which map ß, ς and the joiners to other letters, where certkit,
    curl and browsers follow IDNA2008 (faß.de: xn--fa-hia.de, but fass.de)."""
    if typed.isascii():
        return None
    try:
        theirs = typed.rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None
    if theirs == a_label.rstrip(".").lower():
        return None
    return (f"{typed} is {a_label} in IDNA2008, as curl and browsers convert it, but Python's ssl module (IDNA2003) "
            f"and Java's JSSE (java.net.IDN, IDNA2003 too) connect to {theirs} instead and refuse this certificate "
            f"(hostname mismatch): name {theirs} too if Python or Java clients connect by this name")


def long_first_name_note(name: str | None) -> str | None:
    """What to say of a peer certificate whose first name, ``name``, is too long for its subject's common name (64
    bytes), so that its subject is empty: peers that admit a member by its common name find none."""
    if name is None or len(name.encode("utf-8")) <= _names.MAX_COMMON_NAME:
        return None
    return (f"the subject is empty: the first name, {_names._show(name)}, is {len(name.encode('utf-8'))} bytes, more "
            f"than a common name holds ({_names.MAX_COMMON_NAME}), so a peer that admits members by their common "
            "name (etcd's --peer-cert-allowed-cn) finds none; etcd's --peer-cert-allowed-hostname checks a DNS name "
            "instead (docs/peers.md)")


def wildcard_peer_note(identities) -> str | None:
    """What to say of a peer certificate that names a wildcard: its key passes for every member the wildcard covers,
    on both sides of a connection, which docs/peers.md asks a cluster's CA never to issue."""
    wild = next((i.value for i in identities if i.kind == "dns" and i.value.startswith("*.")), None)
    if wild is None:
        return None
    return (f"{wild} is a wildcard: whoever holds this key can act as every member it covers "
            f"(anything.{wild[2:]}), as the server and as a client, and etcd's --peer-cert-allowed-hostname lets it "
            f"in for any of those names; give each member a peer certificate of its own names instead (docs/peers.md)")


def anothers_bundle(folder, name: str, given: str | None = None) -> str | None:
    """The other name whose certificate ``folder``, the default folder of ``name`` (:func:`certkit.names.
    safe_folder_name`), holds, or None: two names can give one folder (Müller and Möller: M_ller; 'Anna Ng' and
    Anna_Ng), and replacing that bundle would throw away the other one's key, which its 'already holds ...; pass
    --force' hid. None too when the folder holds no certificate certkit can read, or this name's own, or (``given``:
    the folder as a manifest line names it) when it is not the default folder of ``name``."""
    import contextlib
    from pathlib import Path

    from cryptography import x509

    from certkit.errors import UnsafeOutputPath
    from certkit.names import safe_folder_name
    from certkit.vocabulary import san_kind

    if given is not None and (given != safe_folder_name(name) or not os.path.lexists(Path(folder) / "cert.pem")):
        return None  # a batch line's: read only for a default folder that holds a certificate
    try:
        with open(Path(folder) / "cert.pem", "rb") as file:  # a regular file or not, the bundle's checks judge it
            cert = x509.load_pem_x509_certificate(file.read(1 << 20))
        theirs = [str(a.value) for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
        with contextlib.suppress(x509.ExtensionNotFound):
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            theirs += [str(gn.value) for gn in san if san_kind(gn) is not None]
    except (OSError, ValueError):
        return None
    if name in theirs:
        return None  # this name's own bundle: --force replaces it
    for other in theirs:
        with contextlib.suppress(UnsafeOutputPath):
            if safe_folder_name(other) == Path(folder).name:
                return other
    return None
