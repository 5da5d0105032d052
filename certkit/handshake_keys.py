"""What a TLS handshake asks of a leaf's key, beyond what path validation (OpenSSL's purpose check,
cryptography's verifier) looks at: the key must sign the handshake (CertificateVerify), with a signature
scheme peers offer.

- An EC key on a curve other than P-256, P-384 or P-521 (brainpoolP256r1, secp256k1, ...): ``openssl verify``
  and cryptography's verifier accept the certificate, but no TLS 1.3 signature scheme names those curves and
  clients do not offer them in TLS 1.2, so every handshake fails (OpenSSL "no suitable signature algorithm",
  GnuTLS, Java, Node alike). certkit's own issuance refuses such keys (:data:`certkit.keys.CURVES`).
- A keyUsage without digitalSignature (keyEncipherment or keyAgreement alone): OpenSSL-based peers take it,
  but GnuTLS ("Key usage violation") and Java ("KeyUsage does not allow digital signatures") refuse it in
  every handshake where the key signs: all of TLS 1.3, and TLS 1.2 but for RSA key exchange.
"""

from __future__ import annotations

from certkit.keys import CURVES
from certkit.vocabulary import is_ca


def unusable_leaf_key(cert) -> str | None:
    """Why no TLS peer completes a handshake with ``cert``'s key, in words (a leaf's EC key on a curve TLS
    does not sign with); None for a CA certificate, or a key peers use."""
    from cryptography.hazmat.primitives.asymmetric import ec

    key = cert.public_key()
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
