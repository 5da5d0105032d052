"""What a chain file (leaf first, as a server or client sends it) holds that is not of its chain: someone
else's certificates, or a CA above intermediates it does not send (:func:`unchained_places`, in words
:func:`chain_strangers`), said by verify and probe; and the refusal of a server's certificate file that a real
server would send otherwise than serve does (:func:`refuse_server_chain`)."""

from __future__ import annotations

from pathlib import Path

from certkit.errors import CertkitError
from certkit.signatures import issuer_among, self_signed, signed_by
from certkit.text import shown


def chain_strangers(certs: list, known: list = ()) -> list[str]:
    """:func:`unchained_places`, in words only."""
    return [words for words, _ in unchained_places(certs, known).values()]


STRANGER, ABOVE, MAYBE_ABOVE = "stranger", "above a missing CA", "maybe above a missing CA"

# What probe says of the certificates a server sends that are not of its chain (verify says it of such a file)
STRANGERS_NOTE = ("the server also sends {}: it sends every client someone else's certificate as its chain; "
                  "configure it with one certificate followed by the intermediate CAs that issued it (a "
                  "fullchain.pem), not a concatenation of others")


# A CA the server sends above intermediates it does not send (a root with the leaf alone): not someone else's
GAP_NOTE = ("the server also sends {}: send the intermediate CAs between as well, which clients need and do not "
            "fetch: configure it with fullchain.pem (the certificate, then the intermediate CAs that issued it)")


def unchained_places(certs: list, known: list = ()) -> dict[int, tuple[str, str]]:
    """By their place in ``certs`` (0 the leaf), the certificates of a chain file (leaf first, as a server or
    client sends it) that are not CA certificates of its chain, each in words naming it and its place in the
    file, and its kind: :data:`STRANGER`, a leaf (a server, client or peer certificate) or a CA that issued
    none of the chain's certificates and is not above it; :data:`ABOVE`, a CA above the chain's top whose
    issuer is not sent (a root sent with the leaf, its intermediate left out), shown so by the CAs
    ``known`` (the trust's and a CA directory's); :data:`MAYBE_ABOVE`, a CA that may be so (nothing known
    tells). The chain is followed from the leaf through the file's CAs in any order (clients build it so):
    a fullchain.pem (leaf, intermediates, optionally the root), in order or not, has none."""
    from certkit.pkcs12 import validity_problem
    from certkit.verify_names import cn_text
    from certkit.vocabulary import is_ca

    used, top = set(), certs[0]
    while (above := issuer_among(top, [c for place, c in enumerate(certs[1:], 2)
                                       if place not in used and is_ca(c)])) is not None:  # a valid one first
        used.add(issuer := next(place for place, c in enumerate(certs[1:], 2) if c is above and place not in used))
        top = certs[issuer - 1]
    found = {}
    for place, cert in enumerate(certs[1:], 2):
        where = f"{shown(cn_text(cert.subject))} (certificate {place} of {len(certs)})"
        if place in used or cert == certs[0] or any(cert == certs[u - 1] for u in used):
            continue  # of the chain, or a copy of one of its certificates (clients take it so)
        if is_ca(cert) and (twin := next((u for u in used if _same_key(certs[u - 1], cert)), None)) is not None:
            if (old := validity_problem(cert)) is not None and place < twin:  # GnuTLS takes the first
                found[place - 1] = (f"{where}, a certificate of the CA {shown(cn_text(cert.subject))} that {old}, "
                                    f"before its valid one (certificate {twin}): GnuTLS clients take the first and "
                                    "refuse the chain (\"The certificate chain uses expired certificate\"); "
                                    "OpenSSL-based ones (Python's ssl, curl) take the valid one", STRANGER)
            continue  # the same CA renewed with its key, beside its old self: clients take the valid one
        if not is_ca(cert):
            found[place - 1] = (f"{where}, {_leaf_kind(cert)} certificate, not a CA certificate", STRANGER)
        else:
            found[place - 1] = _unchained_ca(where, cert, certs[0], top, known)
    return found


def _leaf_kind(cert) -> str:
    from cryptography import x509

    try:
        eku = {o.dotted_string for o in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value}
    except x509.ExtensionNotFound:
        eku = set()
    server, client = x509.OID_SERVER_AUTH.dotted_string in eku, x509.OID_CLIENT_AUTH.dotted_string in eku
    return "a peer" if server and client else "a server" if server else "a client" if client else "a leaf"


def _unchained_ca(where: str, cert, leaf, top, known: list) -> tuple[str, str]:
    """A CA certificate sent that issued none of the chain's: above the chain's top, across intermediate CAs
    not sent (followed through ``known``, by signature), or someone else's; or, when the chain's top names an
    issuer nothing here holds, maybe above it."""
    from certkit.verify_names import cn_text

    name = shown(cn_text(cert.subject))
    between, at = [], top
    while not self_signed(at) and len(between) <= len(known):
        up = issuer_among(at, [cert, *known])
        if up is None:
            issuer = shown(cn_text(at.issuer))
            return (f"{where}, a CA that issued none of the chain's certificates: the chain from "
                    f"{shown(cn_text(leaf.subject))} stops at {shown(cn_text(at.subject))}, whose issuer {issuer} "
                    f"is missing (if {issuer} is an intermediate CA under {name}, that intermediate is what the "
                    "chain lacks)", MAYBE_ABOVE)
        if up is cert or (up.subject == cert.subject and _same_key(up, cert)):
            missing = ", ".join(shown(cn_text(c.subject)) for c in between)
            what = "the intermediate CA that issued" if len(between) == 1 else "the intermediate CAs above"
            return (f"{where}, {'the root' if self_signed(cert) else 'a CA'} above {missing}, {what} "
                    f"{shown(cn_text(top.subject))}, which the chain lacks", ABOVE)
        between.append(at := up)
    return (f"{where}, a CA that issued none of the chain's certificates (the chain from "
            f"{shown(cn_text(leaf.subject))} ends at {shown(cn_text(top.subject))})", STRANGER)


def _same_key(one, other) -> bool:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return one.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) == \
        other.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def refuse_server_chain(cert_chain, store_pem: bytes) -> None:
    """Refuse a server's certificate file (``serve --cert``) that a real server would send otherwise than
    serve does: certificates after the first that are not the CAs of its chain (:func:`chain_strangers`:
    OpenSSL sends every one to every client), or a chain that stops below an intermediate CA of
    ``store_pem`` (the client CAs serve checks clients with), which OpenSSL would add to what it sends from
    that store, where nginx or openssl s_server given the same file send the certificate alone."""
    from cryptography import x509

    from certkit.der_input import pem_form
    from certkit.verify_names import cn_text

    try:
        certs = x509.load_pem_x509_certificates(pem_form(Path(cert_chain).read_bytes()))  # DER: as OpenSSL got it
        store = x509.load_pem_x509_certificates(store_pem)
    except (OSError, ValueError):
        return  # OpenSSL has just read it; nothing more to say of it here
    if strangers := chain_strangers(certs, store):
        raise CertkitError(f"{shown(cert_chain)} holds more than a certificate and its chain: {'; '.join(strangers)}; "
                           "a server sends every certificate of its file to its clients as the chain: give cert.pem "
                           "or fullchain.pem (the certificate, then the intermediate CAs that issued it).")
    top, seen = certs[0], [certs[0]]
    while (above := next((c for c in certs if c not in seen and signed_by(top, c)), None)) is not None:
        top = above
        seen.append(above)
    missing = next((c for c in store if not self_signed(c) and signed_by(top, c)), None)
    if missing is not None and not self_signed(top):
        raise CertkitError(f"{shown(cert_chain)} holds {shown(cn_text(top.subject))}'s certificate without "
                           f"{shown(cn_text(missing.subject))}, the intermediate CA that issued it: a server (nginx, "
                           "openssl s_server) given this file sends the certificate alone, and clients that hold only "
                           "the root refuse it (unable to get local issuer certificate); give fullchain.pem (the "
                           "certificate, then the intermediate CAs that issued it).")
