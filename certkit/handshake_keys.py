"""What a TLS handshake asks of a leaf's key, beyond what path validation (OpenSSL's purpose check,
cryptography's verifier) looks at: the key must sign the handshake (CertificateVerify), with a signature
scheme peers offer.

- An EC key on a curve other than P-256, P-384 or P-521 (brainpoolP256r1, secp256k1, ...): ``openssl verify``
  and cryptography's verifier accept the certificate, but no TLS 1.3 signature scheme names those curves and
  clients do not offer them in TLS 1.2, so every handshake fails (OpenSSL "no suitable signature algorithm",
  GnuTLS, Java, Node alike). certkit's own issuance refuses such keys (:data:`certkit.keys.CURVES`).
- An RSA key over 3072 bits whose public exponent is longer than 64 bits: OpenSSL ("bad e value") and Java
  refuse it, in a handshake signature and in a CA's signatures alike; GnuTLS takes it. certkit does not sign one.
- A keyUsage without digitalSignature (keyEncipherment or keyAgreement alone): OpenSSL-based peers take it,
  but GnuTLS ("Key usage violation") and Java ("KeyUsage does not allow digital signatures") refuse it in
  every handshake where the key signs: all of TLS 1.3, and TLS 1.2 but for RSA key exchange.

And what it asks of the server beside the key: a TLS Feature extension (RFC 7633, 1.3.6.1.5.5.7.1.24) naming
status_request (OCSP Must-Staple) asks the server to staple an OCSP response to every handshake; Firefox
refuses the certificate without one (MOZILLA_PKIX_ERROR_REQUIRED_TLS_FEATURE_MISSING), and certkit runs no OCSP
responder: the server staples one only if something else signs it with the CA's key (openssl ocsp), which
``certkit probe`` then shows.
"""

from __future__ import annotations

from certkit.keys import CURVES
from certkit.signatures import long_rsa_exponent
from certkit.vocabulary import is_ca


def unusable_leaf_key(cert) -> str | None:
    """Why TLS peers do not complete a handshake with ``cert``'s key, in words (a leaf's EC key on a curve TLS
    does not sign with, an RSA key whose exponent OpenSSL and Java refuse); None for a CA certificate, or a key
    peers use."""
    from cryptography.hazmat.primitives.asymmetric import ec

    key = cert.public_key()
    if not is_ca(cert) and (long := long_rsa_exponent(key)):
        return (f"its RSA key has {long}: OpenSSL-based peers (Python's ssl, curl, nginx) refuse the handshake "
                "signature it makes (\"bad e value\"), and Java cannot read the certificate; GnuTLS takes it")
    if is_ca(cert) or not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name in CURVES:
        return None
    return (f"its key is on the curve {key.curve.name}, which TLS peers do not sign a handshake with: OpenSSL-based "
            "ones (Python's ssl, curl, nginx, Node) find \"no suitable signature algorithm\", GnuTLS and Java end "
            "the handshake; certkit certifies EC keys on P-256, P-384 and P-521 only")


def signing_usage_note(cert) -> str | None:
    """That ``cert``'s keyUsage lacks digitalSignature, which GnuTLS and Java ask of a leaf whose key signs the
    handshake; None for a CA certificate, a leaf without keyUsage, or one with digitalSignature."""
    from cryptography import x509

    from certkit.vocabulary import key_usage_names

    if is_ca(cert):
        return None
    try:
        usages = key_usage_names(cert.extensions.get_extension_for_class(x509.KeyUsage).value)
    except x509.ExtensionNotFound:
        return None
    if "digitalSignature" in usages:
        return None
    return (f"its keyUsage ({', '.join(usages) or 'empty'}) has no digitalSignature: GnuTLS (\"Key usage "
            "violation\") and Java (\"KeyUsage does not allow digital signatures\") refuse it in every handshake "
            "where its key signs (all of TLS 1.3); OpenSSL-based peers (Python's ssl, curl, nginx, Node) take it")


def refused_ca_key(ca, whose: str = "its") -> str | None:
    """That OpenSSL and Java check no signature by ``ca``'s key (:func:`certkit.signatures.long_rsa_exponent`),
    in words; None for a leaf, or a CA key they check."""
    try:
        long = is_ca(ca) and long_rsa_exponent(ca.public_key())
    except Exception:  # noqa: BLE001 (a key cryptography cannot read: not one it refuses to check)
        return None
    if long:
        return (f"{whose} RSA key has {long}: OpenSSL-based peers (Python's ssl, nginx, cryptography's verifier) "
                "and Java refuse every certificate it signs (\"bad e value\"); GnuTLS takes them")
    return None


def unchecked_signature(ca) -> str:
    """Why certkit cannot check a signature by ``ca`` (:func:`certkit.signatures.signature_by` said None)."""
    return refused_ca_key(ca, "that CA's") or ("that CA's key or signature algorithm is one cryptography does not "
                                               "implement (OpenSSL may accept it)")


def tls_features(cert) -> list[str] | None:
    """The TLS features (RFC 7633) ``cert`` asks of a server's handshake ("status_request" for OCSP Must-Staple,
    "status_request_v2"), or None when it has no TLS Feature extension."""
    from cryptography import x509

    try:
        features = cert.extensions.get_extension_for_class(x509.TLSFeature).value
    except x509.ExtensionNotFound:
        return None
    return [feature.name for feature in features]


def unprocessed_features(features: list[str] | None) -> bool:
    """Whether a TLS Feature extension naming ``features`` (:func:`tls_features`) makes Firefox refuse the
    certificate whatever the server staples: mozilla::pkix (TLSFeaturesSatisfiedInternal) takes a non-empty list
    of status_request (5) alone, and refuses status_request_v2 (17) or any other."""
    return features is not None and (not features or any(f != "status_request" for f in features))


def tls_feature_note(cert, lead: str = "its TLS Feature extension (1.3.6.1.5.5.7.1.24) names ") -> str | None:
    """What a TLS Feature extension on ``cert`` means for the servers that present it, in words, after ``lead``
    (inspect's line names the extension itself); None without one."""
    features = tls_features(cert)
    if features is None:
        return None
    named = ", ".join(f + (" (OCSP Must-Staple)" if f == "status_request" else "") for f in features) or "nothing"
    if unprocessed_features(features):
        return (f"{lead}{named}: Firefox refuses every server presenting this certificate, whatever it staples "
                "(MOZILLA_PKIX_ERROR_REQUIRED_TLS_FEATURE_MISSING: mozilla::pkix processes status_request alone, "
                "and refuses an empty list or any other feature); curl, OpenSSL, Python's ssl and Chrome ignore it")
    return (f"{lead}{named}: a server presenting this certificate must staple an OCSP response to every "
            "handshake, and Firefox refuses it without one (MOZILLA_PKIX_ERROR_REQUIRED_TLS_FEATURE_MISSING); "
            "certkit runs no OCSP responder, so none is stapled unless made with the CA's key by another tool "
            "(openssl ocsp; certkit probe shows what a server staples); curl, "
            "OpenSSL, Python's ssl and Chrome ignore it")
