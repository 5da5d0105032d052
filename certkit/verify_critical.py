"""What cryptography's verifier refuses without judging a chain, which OpenSSL accepts: features it lacks (the
:data:`BEYOND` table: Ed25519, RSA-PSS, URI name constraints, a negative serial, a date before 2050 written as
GeneralizedTime, ...), and critical extensions OpenSSL handles and it does not: who accepts a chain holding one.

cryptography's web-PKI verifier refuses a certificate with any critical extension its policy does not name
("unaccounted-for critical extensions"; and a critical extendedKeyUsage): certificatePolicies,
policyConstraints, inhibitAnyPolicy and policyMappings among them, though RFC 5280 says a CA MUST mark
policyConstraints and inhibitAnyPolicy critical. OpenSSL handles them (X509_supported_extension) and,
without -policy_check, does not process policies: OpenSSL, so Python's ssl, curl, nginx and Node, accept
such a chain (``openssl verify -x509_strict`` too). Where OpenSSL accepts it,
:func:`certkit.verify.verify_certificate` judges the chain itself, as for the keys the verifier lacks, and
the note says who else refuses it. The words of each were measured with ``openssl verify``, GnuTLS's
``certtool --verify`` and Java's PKIX validator (tests/test_audit20_show.py).
"""

from __future__ import annotations

_JAVA_AND_GNUTLS_REFUSE = "GnuTLS and Java refuse it (unknown critical extension)"
# OID: (its name, whether OpenSSL accepts a chain holding it critical, what GnuTLS and Java do with it); OpenSSL
# checks RFC 3779's ipAddrBlocks and autonomousSysIds along the chain, critical or not, as certkit does
# (certkit.verify_rfc3779), so its acceptance of them is that check's
CRITICAL_PEERS = {
    "2.5.29.32": ("certificatePolicies", True, "GnuTLS and Java accept it too"),
    "2.5.29.37": ("extendedKeyUsage", True, "GnuTLS and Java accept it too (the web PKI's rules forbid it, so "
                                            "cryptography-based verifiers refuse it)"),
    "2.5.29.31": ("cRLDistributionPoints", True, "GnuTLS accepts it; Java refuses it (\"unrecognized critical "
                                                 "extension\")"),
    "2.5.29.36": ("policyConstraints", True, "GnuTLS refuses it (\"unknown critical extension\"); Java processes "
                                             "certificate policies and refuses a chain without those it requires"),
    "2.5.29.33": ("policyMappings", True, "GnuTLS refuses it (\"unknown critical extension\"); Java applies it"),
    "2.5.29.54": ("inhibitAnyPolicy", True, "GnuTLS accepts it; Java applies it"),
    "2.16.840.1.113730.1.1": ("nsCertType", True, _JAVA_AND_GNUTLS_REFUSE),
    "1.3.6.1.5.5.7.48.1.5": ("ocspNoCheck", True, _JAVA_AND_GNUTLS_REFUSE),
    "1.3.6.1.5.5.7.1.8": ("autonomousSysIds", True, _JAVA_AND_GNUTLS_REFUSE),
    "1.3.6.1.5.5.7.1.7": ("ipAddrBlocks", True, _JAVA_AND_GNUTLS_REFUSE),
    "1.3.6.1.5.5.7.1.14": ("proxyCertInfo", False, "OpenSSL refuses a proxy certificate unless told to allow them "
                                                   "(\"proxy certificates not allowed\"), Java refuses it, GnuTLS "
                                                   "accepts it"),
}
OPENSSL_ACCEPTS = "OpenSSL accepts it (so Python's ssl, curl, nginx and Node; openssl verify -x509_strict too)"


def refusal_words(oid: str, name: str) -> str:
    """The verifier's refusal of the critical extension ``oid`` (``name``: its words for it), and who else
    refuses or accepts it."""
    if oid not in CRITICAL_PEERS:
        return (f"a certificate marks its {name} extension critical, which cryptography's verifier does not "
                "handle")
    named, accepted, others = CRITICAL_PEERS[oid]
    return (f"a certificate marks its {named} ({oid}) extension critical, which cryptography's verifier does not "
            "handle; " + (f"{OPENSSL_ACCEPTS}; {others}" if accepted else others))


def judged_by_certkit(path: list, error: str | None) -> str | None:
    """When the verifier refused ``path`` for a critical extension it does not handle and OpenSSL accepts
    every such extension in it: why the verifier could not judge it, naming each and who refuses it. None
    otherwise (another refusal, or an extension OpenSSL refuses too)."""
    from certkit.verify_names import cn_text

    if not error or ("which cryptography's verifier does not handle" not in error
                     and "marks its extendedKeyUsage critical" not in error):
        return None
    found = [(cert, ext.oid.dotted_string) for cert in path for ext in cert.extensions
             if ext.critical and ext.oid.dotted_string in CRITICAL_PEERS]
    if not found or not all(CRITICAL_PEERS[oid][1] for _, oid in found):
        return None
    which = " and ".join(f"the critical {CRITICAL_PEERS[oid][0]} ({oid}) extension of "
                         f"{'the leaf' if cert is path[0] else cn_text(cert.subject)}" for cert, oid in found)
    others = "; ".join(f"of {CRITICAL_PEERS[oid][0]}, {CRITICAL_PEERS[oid][2]}"
                       for oid in dict.fromkeys(o for _, o in found))
    return f"it does not handle {which}; {OPENSSL_ACCEPTS}; {others}"


# What cryptography's web-PKI verifier refuses without judging the certificate: (its words, ours).
BEYOND = (("unsupported name constraint", "it does not implement URI name constraints, which certkit puts on "
                                           "every constrained CA"),
           ("malformed DNS name constraint", "it refuses a DNS name constraint written with a leading dot (the "
                                             "subdomains only) or empty (every name), which OpenSSL, Python's ssl, Go "
                                             "and NSS read so"),
           ("malformed SAN", "it refuses, under name constraints, a DNS name with '_' ('_svc', 'foo_bar'), which "
                             "OpenSSL, Python's ssl and Go take"),
           ("invalid domain name", "it refuses a DNS name with '_' ('_svc', 'foo_bar'), which OpenSSL, Python's ssl "
                                   "and Go take"),
           ("serial number cannot be negative", "its web-PKI policy refuses a negative serial number (RFC 5280 "
                                                "forbids it), which OpenSSL (-x509_strict too), Python's ssl, GnuTLS "
                                                "and Java accept"),
           ("must be UtcTime", "its web-PKI policy refuses a date before 2050 written as GeneralizedTime (RFC 5280 "
                               "asks for UTCTime), which OpenSSL (-x509_strict too), Python's ssl, GnuTLS and Java "
                               "accept"),
           ("must be an X509v3 certificate", "its web-PKI policy refuses a version 1 certificate (no extensions, as "
                                             "openssl x509 -req makes it without -extfile), which OpenSSL "
                                             "(-x509_strict too), Python's ssl, GnuTLS and Java accept"),
           ("serial between 1 and 20 octets", "its web-PKI policy refuses a serial number longer than 20 octets "
                                              "(RFC 5280's limit), which OpenSSL (-x509_strict too), Python's ssl, "
                                              "GnuTLS and Java accept"),
           ("Ed25519", "it accepts only the RSA and ECDSA keys and signatures of the web PKI, not Ed25519"),
           ("Ed448", "it accepts only the RSA and ECDSA keys and signatures of the web PKI, not Ed448; OpenSSL and "
                     "Python's ssl accept it, Go's crypto/x509 (etcd, Consul) refuses it (bad certificate)"),
           ("Sha224", "its web-PKI policy forbids SHA-224 signatures, which OpenSSL and Python's ssl accept and Go's "
                      "crypto/x509 (etcd, Consul) refuses (algorithm unimplemented)"),
           ("algorithm: RsaPss", "its web-PKI policy forbids RSA-PSS CA keys, which OpenSSL and Python's ssl accept "
                                 "and Go's crypto/x509 (etcd, Consul) refuses (algorithm unimplemented)"),
           ("algorithm: Dsa", "its web-PKI policy forbids DSA keys, which OpenSSL and Python's ssl accept and Go's "
                              "crypto/x509 (etcd, Consul) refuses (algorithm unimplemented)"))


def beyond_the_verifier(error: str | None) -> str | None:
    """Why the verifier refused without judging (a feature it lacks), or None."""
    return next((ours for words, ours in BEYOND if error and words in error), None)


PROXY_CERT_INFO = "1.3.6.1.5.5.7.1.14"


def proxy_certificate(path: list) -> str | None:
    """A proxy certificate (RFC 3820: a proxyCertInfo extension) anywhere in ``path``, critical or not: OpenSSL
    refuses it unless told to allow proxy certificates (X509_V_FLAG_ALLOW_PROXY_CERTS, which no TLS peer sets), and
    calls one that is a CA or holds a subjectAltName an invalid certificate; cryptography's verifier ignores the
    extension when it is not critical. None when there is none."""
    from certkit.verify_names import cn_text

    for cert in path:
        if any(ext.oid.dotted_string == PROXY_CERT_INFO for ext in cert.extensions):
            who = "it is" if cert is path[0] else f"the CA {cn_text(cert.subject)} is"
            return (f"{who} a proxy certificate (RFC 3820: it holds a proxyCertInfo extension, {PROXY_CERT_INFO}), "
                    "which OpenSSL (so Python's ssl, curl, nginx and Node) refuses whether the extension is critical "
                    "or not (\"proxy certificates not allowed\", or \"invalid certificate\" for one that is a CA or "
                    "holds a subjectAltName); GnuTLS accepts it")
    return None


def openssl_refusal(path: list) -> str | None:
    """What OpenSSL refuses in the certificates of ``path`` themselves, whatever cryptography's verifier says: a
    critical extension it does not handle, a proxy certificate; None when there is nothing."""
    from certkit.verify_names import unhandled_critical

    return unhandled_critical(path) or proxy_certificate(path)
