"""Whether a certificate's issuer signed it, as OpenSSL decides it: the issuer's name compared as OpenSSL
compares names, the authority key identifier fitting the issuer, and the signature checked under any digest
(cryptography's X.509 API refuses SHA-1 and MD5), with what OpenSSL refuses to check (a long RSA exponent) named.

Every module that asks which certificate signed another (verify, check, anchors, pkcs12, serve, the ACME server)
asks here, so they never disagree.
"""

from __future__ import annotations


def long_rsa_exponent(key) -> str | None:
    """Why OpenSSL ("bad e value", and cryptography) and Java check no signature of RSA ``key``; else None."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    if not isinstance(key, rsa.RSAPublicKey) or key.key_size <= 3072 or key.public_numbers().e.bit_length() <= 64:
        return None
    return (f"a {key.public_numbers().e.bit_length()}-bit public exponent beside a {key.key_size}-bit modulus (OpenSSL "
            "and Java take one of 64 bits at most beside a modulus over 3072 bits)")


def signature_by(cert, issuer) -> bool | None:
    """Whether ``issuer``'s key made ``cert``'s signature (its names fit, the signature verifies), under
    any digest: cryptography's X.509 API refuses to check SHA-1 and MD5 (a ValueError, not a verdict),
    and is asked again through the key, since OpenSSL and Python still take such a certificate as this
    issuer's (and refuse its digest: :func:`certkit.verify.weak_chain` says so). None when it cannot be
    told here: a key or signature algorithm cryptography lacks (sect283k1, SM2, DSA), an RSA key it refuses."""
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if not names_match(cert.issuer, issuer.subject) or not _key_ids_fit(cert, issuer):
        return False
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except InvalidSignature:  # a verdict, unless OpenSSL refused the key (long_rsa_exponent)
        refused = True
    except (ValueError, TypeError, UnsupportedAlgorithm):
        refused = False  # a digest the X.509 API refuses, or a key it cannot load or use: asked through the key
    try:
        key, digest = issuer.public_key(), cert.signature_hash_algorithm
    except Exception:  # noqa: BLE001 (a key or algorithm cryptography does not have)
        return False if refused else None
    if refused:
        return None if long_rsa_exponent(key) else False
    oid = cert.signature_algorithm_oid.dotted_string
    family = _SIGNATURE_FAMILIES.get(oid) or _SIGNATURE_FAMILIES.get(oid.rsplit(".", 1)[0])
    kinds = {"rsa": rsa.RSAPublicKey, "ec": ec.EllipticCurvePublicKey, "ed25519": ed25519.Ed25519PublicKey,
             "ed448": ed448.Ed448PublicKey}
    if family is not None and not isinstance(key, kinds[family]):
        return False  # a signature of another key type: never this key's
    try:
        if isinstance(key, rsa.RSAPublicKey) and cert.signature_algorithm_parameters is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, cert.signature_algorithm_parameters, digest)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(digest))
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            return None
    except InvalidSignature:
        return False
    except Exception:  # noqa: BLE001 (a key, curve or algorithm cryptography does not have)
        return None
    return True


# The key type a signature algorithm's OID (or its arc) is made with: RSA (PKCS #1 v1.5 and PSS), ECDSA, EdDSA.
_SIGNATURE_FAMILIES = {"1.2.840.113549.1.1": "rsa", "1.2.840.10045.4.3": "ec", "1.2.840.10045.4.1": "ec",
                       "1.3.101.112": "ed25519", "1.3.101.113": "ed448"}


def names_match(one, other) -> bool:
    """Whether two distinguished names are the same as OpenSSL compares them (an issuer with the subject of its
    CA): byte for byte, or RDN by RDN with each value's ASCII letters in lower case and its runs of ASCII white
    space made one space, whatever its string type (PrintableString, UTF8String). Only ASCII, as OpenSSL: CAFÉ
    is not café, and a no-break space is no space."""
    if one == other:
        return True

    def canonical(name) -> list:
        return [sorted((a.oid.dotted_string, _ascii_canonical(str(a.value))) for a in rdn) for rdn in name.rdns]

    return canonical(one) == canonical(other)


def _ascii_canonical(value: str) -> str:
    import re

    folded = "".join(ch.lower() if "A" <= ch <= "Z" else ch for ch in value)
    return re.sub(r"[ \t\n\r\f\v]+", " ", folded).strip(" ")


def _key_ids_fit(cert, issuer) -> bool:
    """Whether ``cert``'s authority key identifier, if it has one, names ``issuer`` as OpenSSL's issuer check
    (X509_check_issued) requires: its keyIdentifier the issuer's subject key identifier, and its issuer name
    and serial, when given, the issuer's own. A certificate that names another key is not this issuer's."""
    from cryptography import x509

    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except (x509.ExtensionNotFound, ValueError):
        return True
    if aki.key_identifier is not None:
        try:
            ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        except (x509.ExtensionNotFound, ValueError):
            ski = None
        if ski is not None and ski != aki.key_identifier:
            return False
    if aki.authority_cert_serial_number is not None and aki.authority_cert_serial_number != issuer.serial_number:
        return False
    names = [n.value for n in aki.authority_cert_issuer or [] if isinstance(n, x509.DirectoryName)]
    return not names or any(names_match(issuer.issuer, name) for name in names)


def signed_by(cert, issuer) -> bool:
    """Whether ``issuer``'s key made ``cert``'s signature, as far as it can be told (:func:`signature_by`;
    a signature no one here can check is not taken as this issuer's)."""
    return signature_by(cert, issuer) is True


def issuer_among(cert, candidates, now=None):
    """The certificate of ``candidates`` whose key signed ``cert``, or None: one valid at ``now`` when several
    did (a CA renewed with its key, beside its expired self), as OpenSSL and cryptography's verifier choose."""
    import datetime as dt

    signers = [c for c in candidates if signed_by(cert, c)]
    now = now or dt.datetime.now(dt.UTC)
    valid = [c for c in signers if c.not_valid_before_utc <= now <= c.not_valid_after_utc]
    return (valid or signers or [None])[0]


def self_signed(cert) -> bool:
    """Whether ``cert`` signed itself (a root): its issuer is its subject and its own key verifies its
    signature. Equal names alone are not enough: an intermediate may carry its parent's name. When the
    signature cannot be checked here (a key on a curve cryptography lacks), the key identifiers decide, as
    OpenSSL's own test of a self-signed certificate does: no authority key identifier, or its own."""
    from cryptography import x509

    found = signature_by(cert, cert)
    if found is not None:
        return found
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return True
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return aki is None
    return aki is None or aki == ski
