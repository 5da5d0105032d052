"""What a renewal says of the names a certificate carries that certkit refuses today.

A renewal never changes what a certificate names (a peer may look for any of its names): it keeps a name certified
before certkit refused it, or by another tool, and says what peers make of it, and which name to certify instead.
"""

from __future__ import annotations

from certkit.names import _ends_in_a_number, _show


def carried_name_notes(cert) -> list[str]:
    """What to say of the names ``cert`` carries that certkit refuses today, which a renewal keeps: an IPv4-mapped
    IPv6 address, which clients connecting to the IPv4 address never match, an IPv6 address that is an IPv4 address
    in the IPv4-compatible form (::1.2.3.4: ::102:304), a DNS name curl and browsers read as an IPv4 address
    (0x7f000001: 127.0.0.1), a URI written with its type (URI:spiffe://..., certified as a URI of the scheme 'URI'),
    and a URI whose host Go cannot read."""
    from cryptography import x509

    from certkit.names_notation import is_a_uri, typed_value, url_ipv4
    from certkit.names_uri import go_unreadable

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    notes = [_address_note(address) for address in san.get_values_for_type(x509.IPAddress)]
    notes = [note for note in notes if note]
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if value := typed_value(uri, is_a_uri):
            notes.append(f"it names the URI {_show(uri)}, a subjectAltName entry with its type, not the URI "
                         f"{_show(value)} peers look for; to change it, issue a new certificate naming {_show(value)}")
        elif reason := go_unreadable(uri):
            notes.append(f"it names the URI {_show(uri)}: {reason} in a new certificate")
    for name in filter(_ends_in_a_number, san.get_values_for_type(x509.DNSName)):
        read = url_ipv4(name)
        notes.append(f"it names the DNS name {_show(name)}, which curl and browsers read as the IPv4 address "
                     f"{read or '(none: they refuse it)'} and never match in a DNS entry; to change it, issue a new "
                     f"certificate naming {read or 'the host'}")
    return notes


def _address_note(address) -> str | None:
    """What to say of the IP entry ``address``: an IPv4-mapped address (::ffff:10.1.1.1), or one that is an IPv4
    address in the deprecated IPv4-compatible form (::10.1.1.1 is the IPv6 address ::a01:101, which the certificate
    holds however it was typed: said as what it also is); else None."""
    from certkit.names_notation import ipv4_compatible

    if ipv4 := getattr(address, "ipv4_mapped", None):
        return (f"it names {address}, the IPv4 address {ipv4} written as IPv6, which clients connecting to {ipv4} "
                f"never match; to change it, issue a new certificate naming {ipv4}")
    if ipv4 := ipv4_compatible(address):
        return (f"it names the IPv6 address {address}, which is also how the IPv4 address {ipv4} is written in the "
                f"deprecated IPv4-compatible form (::{ipv4}): no host has it, and clients connecting to {ipv4} never "
                f"match it; if {ipv4} is meant, issue a new certificate naming {ipv4}")
    if address.version == 6 and not int(address) >> 32 and int(address) > 1:  # ::2 to ::ff:ffff
        port = f"{int(address) & 0xFFFF:x}" if int(address) >> 16 == 1 else ""  # ::1:2380: [::1]:2380, no brackets
        port = port if port.isdigit() else None  # the port as typed: the group's hexadecimal digits, all decimal ones
        return (f"it names the IPv6 address {address}, in the deprecated IPv4-compatible range ::/96, which no host "
                "has; to change it, issue a new certificate naming the host's own address" +
                (f" (::1 with the port {port}, written without brackets, is written so: then ::1)" if port else ""))
    return None
