"""Whether a certificate may serve a TLS purpose ("server" or "client"), as OpenSSL's purpose check (Python's
ssl, curl, nginx) judges it where cryptography's verifier does not look: the leaf's extendedKeyUsage, nsCertType
and keyUsage, and the extendedKeyUsage of every CA above it. For :mod:`certkit.verify`, in plain sentences."""

from __future__ import annotations

from certkit.verify_names import cn_text
from certkit.vocabulary import eku_names, is_ca

_EKU = {"server": "serverAuth", "client": "clientAuth"}
_OTHER = {"server": "client", "client": "server"}


def purpose_problem(cert, purpose: str) -> str | None:
    """Why ``cert`` is no TLS ``purpose`` ("server" or "client") certificate, in words: a CA, an extendedKeyUsage,
    an nsCertType or a keyUsage without it; None when nothing in it rules the purpose out."""
    if is_ca(cert):
        return f"this is a CA certificate: it signs certificates and is not a TLS {purpose} certificate"
    return openssl_purpose_problem(cert, purpose)


def openssl_purpose_problem(cert, purpose: str) -> str | None:
    """What OpenSSL's purpose check (Python's ssl, nginx) refuses in ``cert`` as the TLS ``purpose`` leaf of a
    chain, in words: its extendedKeyUsage, nsCertType or keyUsage. A CA certificate given as a leaf is judged
    by these alone: one whose keyUsage is only keyCertSign and cRLSign (certkit's) is refused, one without
    keyUsage taken."""
    wanted = _EKU[purpose]
    eku = eku_names(cert)
    if eku is not None and wanted not in eku:
        other = _EKU[_OTHER[purpose]]
        if other in eku:
            return f"this is a {_OTHER[purpose]} certificate: it has no {wanted} usage"
        return f"its extendedKeyUsage ({', '.join(eku)}) has no {wanted} usage"
    return _ns_cert_type_problem(cert, purpose) or _key_usage_problem(cert, purpose)


def _ns_cert_type_problem(cert, purpose: str) -> str | None:
    """A Netscape certificate type (nsCertType) without ``purpose``, in words: OpenSSL's purpose check, and so
    Python's ssl, refuses such a leaf; cryptography's verifier does not look. None without the extension."""
    from certkit.vocabulary import ns_cert_type

    types = ns_cert_type(cert)
    if types is None or purpose in types:
        return None
    return (f"its Netscape certificate type (nsCertType: {', '.join(types) or 'empty'}) has no {purpose}, so "
            f"OpenSSL-based peers (Python's ssl, curl, nginx) refuse it as a TLS {purpose} certificate "
            "(\"unsuitable certificate purpose\")")


# What OpenSSL's purpose check also takes as a server purpose in a CA's extendedKeyUsage (Netscape's and
# Microsoft's Server Gated Crypto); cryptography's verifier does not, and refuses such a chain itself.
_SGC = ("2.16.840.1.113730.4.1", "1.3.6.1.4.1.311.10.3.3")


def ca_purpose_problem(path: list, purpose: str) -> str | None:
    """A CA of ``path`` (the leaf first; the trust anchor too) whose extendedKeyUsage lacks the TLS
    ``purpose``, in words: OpenSSL's purpose check, and so Python's ssl, refuses every certificate under
    it for that purpose; anyExtendedKeyUsage does not stand in for it. A CA without the extension
    restricts nothing. cryptography's verifier refuses such a chain too, but takes anyExtendedKeyUsage."""
    wanted = _EKU[purpose]
    for ca in path[1:]:
        eku = eku_names(ca)
        if eku is None or wanted in eku or (purpose == "server" and any(o in eku for o in _SGC)):
            continue
        only_any = " (anyExtendedKeyUsage does not stand in for it)" if "anyExtendedKeyUsage" in eku else ""
        return (f"the issuing CA {cn_text(ca.subject)} has an extendedKeyUsage ({', '.join(eku)}) without {wanted}"
                f"{only_any}: OpenSSL-based peers (Python's ssl, curl, nginx) refuse every TLS {purpose} "
                "certificate under it (\"unsuitable certificate purpose\")")
    return None


def _key_usage_problem(cert, purpose: str) -> str | None:
    """A keyUsage without a bit a TLS ``purpose`` can use (OpenSSL's purpose check refuses it;
    cryptography's verifier does not look), in words; None when it has one, or has no keyUsage."""
    from cryptography import x509

    from certkit.inspect_purpose import CLIENT_KEY_USAGES, SERVER_KEY_USAGES
    from certkit.vocabulary import key_usage_names

    try:
        usages = key_usage_names(cert.extensions.get_extension_for_class(x509.KeyUsage).value)
    except x509.ExtensionNotFound:
        return None
    needed = SERVER_KEY_USAGES if purpose == "server" else CLIENT_KEY_USAGES
    if any(u in usages for u in needed):
        return None
    return (f"its keyUsage ({', '.join(usages) or 'empty'}) has none of {', '.join(needed[:-1])} or {needed[-1]}, "
            f"which a TLS {purpose} needs")
