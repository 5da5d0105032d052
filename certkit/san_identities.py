"""The identities a certificate certkit issued names in its SAN, read back (a renewal keeps them; verify
checks a peer's), each checked again by today's rules."""

from __future__ import annotations

from certkit import names as _names
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
        if isinstance(gn, x509.DNSName):
            out.append(_names.parse_host(gn.value) if kind in ("server", "peer")
                       else _names.parse_dns_name(gn.value, allow_wildcard=False))
        elif isinstance(gn, x509.IPAddress):
            out.append(Identity("ip", str(gn.value)))
        elif isinstance(gn, x509.RFC822Name):
            out.append(_names.parse_email(gn.value))
        elif isinstance(gn, x509.UniformResourceIdentifier):
            out.append(_names.parse_uri(gn.value))
        # a DirectoryName SAN is the subject DN, which the profile puts back itself
    return out
