"""The OCSP response a server staples to its handshake (RFC 6066 status_request), judged as Firefox judges it.

A certificate whose TLS Feature extension (RFC 7633) names status_request (OCSP Must-Staple) makes Firefox
refuse a server that staples no OCSP response, or one that is not a current "good" answer for that certificate
signed by its issuer (or by a responder the issuer delegated to): MOZILLA_PKIX_ERROR_REQUIRED_TLS_FEATURE_MISSING,
SEC_ERROR_OCSP_OLD_RESPONSE, SEC_ERROR_REVOKED_CERTIFICATE... curl, OpenSSL, Python's ssl and Chrome ask for no
staple and take the server all the same. probe asks for one as Firefox does, and says what came.
"""

from __future__ import annotations

import datetime as dt

from certkit.handshake_keys import tls_features, unprocessed_features
from certkit.text import shown

REVOKED = "the certificate's status is revoked"
# What Firefox forgives in a stapled response of a certificate without Must-Staple (NSSCertDBTrustDomain:
# ERROR_OCSP_OLD_RESPONSE, ERROR_OCSP_TRY_SERVER_LATER; it asks the certificate's responder then, if it names one)
_SOFT = ("it is out of date", "the responder answered TRY_LATER")
_SLOP, _LONGEST, _NEVER = dt.timedelta(days=1), dt.timedelta(days=10), dt.datetime.max.replace(tzinfo=dt.UTC)
# Who takes a Must-Staple certificate served without a good staple, and who does not.
_OTHERS = "curl, OpenSSL, Python's ssl and Chrome ask for no staple and take it"


def staple_verdict(chain: list, known: list, stapled: bytes | None,
                   now: dt.datetime | None = None) -> tuple[str | None, str | None]:
    """(what the server stapled, in words; why Firefox refuses the server for it) for the server's ``chain``
    (cryptography certificates, as sent; ``known``: other CAs that may be the leaf's issuer), ``stapled`` as the
    handshake gave it (b"": nothing; None: the handshake never got that far). Either part is None when there is
    nothing to say: a certificate without Must-Staple served without a staple gets (None, None)."""
    if stapled is None or not chain:
        return None, None
    features = tls_features(chain[0])
    must = "status_request" in (features or [])
    if unprocessed_features(features):  # Firefox refuses it whatever the server staples
        named = ", ".join(features or []) or "nothing"
        words = "none" if not stapled else _judged(chain[0], [*chain[1:], *known], stapled,
                                                     now or dt.datetime.now(dt.UTC))[0]
        return words, (f"its certificate's TLS Feature extension names {named}: Firefox refuses it whatever the "
                       "server staples (MOZILLA_PKIX_ERROR_REQUIRED_TLS_FEATURE_MISSING: mozilla::pkix processes "
                       f"status_request alone); {_OTHERS}")
    if not stapled:
        if not must:
            return None, None
        return ("none", "the server staples no OCSP response to its handshake, and its certificate demands one "
                "(TLS Feature status_request, OCSP Must-Staple): Firefox refuses it "
                f"(MOZILLA_PKIX_ERROR_REQUIRED_TLS_FEATURE_MISSING); {_OTHERS}")
    words, problem = _judged(chain[0], [*chain[1:], *known], stapled, now or dt.datetime.now(dt.UTC))
    if problem is None:
        return words, None
    if must:
        return f"{words}: {problem}", (f"the OCSP response the server staples is no good ({problem}), and its "
                                       "certificate demands one (TLS Feature status_request, OCSP Must-Staple): "
                                       f"Firefox refuses it; {_OTHERS}")
    if problem == REVOKED:  # signed by its issuer, when known: Firefox believes it, Must-Staple or not
        return f"{words}: {problem}", ("the OCSP response the server staples says its certificate is revoked: "
                                       "Firefox refuses it (SEC_ERROR_REVOKED_CERTIFICATE), "
                                       "as curl --cert-status does; curl, OpenSSL and Python's ssl without asking "
                                       "for a staple take it")
    if not problem.startswith(_SOFT):  # Firefox refuses at once a stapled response it cannot take, but for these
        return f"{words}: {problem}", (f"the OCSP response the server staples is no good ({problem}): Firefox "
                                       "refuses the server for it, Must-Staple or not, as curl --cert-status does; "
                                       "curl, OpenSSL and Python's ssl without asking for a staple take it")
    return f"{words}: {problem}", None


def _judged(leaf, issuers: list, stapled: bytes, now: dt.datetime) -> tuple[str, str | None]:
    """(the stapled response in words, what is wrong with it for ``leaf`` or None)."""
    from cryptography.x509 import ocsp

    try:
        response = ocsp.load_der_ocsp_response(stapled)
    except ValueError:
        return f"{len(stapled)} bytes", "they are no OCSP response"
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return "an OCSP response", f"the responder answered {response.response_status.name} (no status)"
    single = next((r for r in response.responses if r.serial_number == leaf.serial_number), None)
    if single is None:
        return "an OCSP response", "it is about another certificate (no answer for this one's serial number)"
    status = single.certificate_status.name.lower()
    words = (f"an OCSP response: {status}, produced {single.this_update_utc:%Y-%m-%d %H:%M:%S} UTC"
             + (f", next update {single.next_update_utc:%Y-%m-%d %H:%M:%S} UTC" if single.next_update_utc else ""))
    issuer = next((c for c in issuers if c.subject == leaf.issuer and _signed(c, leaf)), None)
    signed = None if issuer is None else _signed_response(response, issuer)
    if signed is False:
        return words, f"neither its issuer {shown(issuer.subject.rfc4514_string())} nor a responder it delegated " \
                      "to signed it"
    if signed is None:  # never said as if it were good: anyone can write an unsigned "good"
        words += (" (its signature not checked: the server does not send the certificate's issuer, and none was "
                  "given: --ca-file or --ca-dir)" if issuer is None else
                  " (its signature not checked: cryptography cannot check its signature algorithm)")
    if single.certificate_status != ocsp.OCSPCertStatus.GOOD:
        return words, REVOKED if status == "revoked" else f"the certificate's status is {status}"
    # mozilla::pkix's rules: a day of leeway for clocks either way (SLOP), and a response lasts 10 days at most
    # after its thisUpdate (Firefox's maxOCSPLifetimeInDays), whatever its nextUpdate says
    if single.this_update_utc > now + _SLOP:
        return words, "it is dated in the future"
    ends = min(single.next_update_utc or _NEVER, single.this_update_utc + _LONGEST)
    if now - _SLOP > ends:
        return words, f"it is out of date (it lasted until {ends:%Y-%m-%d %H:%M:%S} UTC)"
    return words, None


def _signed_response(response, issuer) -> bool | None:
    """Whether ``issuer``, or a responder certificate in ``response`` that it signed for OCSPSigning, signed it;
    None when its signature algorithm is one cryptography cannot check (never taken for a forgery)."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID

    signers = [issuer.public_key()]
    for cert in response.certificates:
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            continue
        if ExtendedKeyUsageOID.OCSP_SIGNING in eku and _signed(issuer, cert):
            signers.append(cert.public_key())
    if response.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS:  # its parameters are not exposed:
        ways = [(padding.PSS(padding.MGF1(h), padding.PSS.AUTO), h)  # the hashes PSS is used with
                for h in (hashes.SHA256(), hashes.SHA384(), hashes.SHA512())]
    else:
        try:
            ways = [(None, response.signature_hash_algorithm)]
        except UnsupportedAlgorithm:
            return None
    return any(_verifies(key, response.signature, response.tbs_response_bytes, algorithm, rsa_padding)
               for key in signers for rsa_padding, algorithm in ways)


def _signed(issuer, cert) -> bool:
    """Whether ``issuer`` signed ``cert`` (any algorithm cryptography checks, RSA-PSS too)."""
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, UnsupportedAlgorithm, TypeError, ValueError):
        return False
    return True


def _verifies(key, signature: bytes, data: bytes, algorithm, rsa_padding=None) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, rsa_padding or padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(algorithm))
        else:  # Ed25519, Ed448: no hash of their own
            key.verify(signature, data)
    except (InvalidSignature, TypeError, ValueError):
        return False
    return True
