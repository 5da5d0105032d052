"""The JOSE header parameters of an ACME request's JWS that josepy reads besides ``alg``, ``jwk``, ``kid``, ``nonce``
and ``url`` (RFC 7515 4.1): an ACME request needs none of them, and one of the wrong type or content is refused here,
in certkit's words, before josepy reads it and fails in its own or Python's ("'int' object is not iterable",
"ParseError { kind: ShortData ... }").
"""

from __future__ import annotations

from certkit.acme.problems import Problem

# Each a string where given (RFC 7515 4.1.2 to 4.1.10; 4.1.8 for x5t#S256).
STRINGS = ("typ", "cty", "jku", "x5u", "x5t", "x5t#S256")
_NEEDED = "an ACME request needs none"


def refuse_unencoded(protected: dict, what: str) -> None:
    """Refuse (``malformed``) a ``b64`` header parameter: RFC 8555 6.2 forbids the unencoded payload option
    (RFC 7797), and one without ``crit``, which is refused apart, is not even that option's."""
    if "b64" in protected:
        raise Problem("malformed", f"{what}'s protected header has a 'b64' header parameter: the JWS unencoded payload "
                                   "option (RFC 7797) must not be used in ACME (RFC 8555 6.2); the payload is always "
                                   "base64url-encoded.")


def check_header(protected: dict, what: str, json_type) -> None:
    """Refuse (``malformed``) a ``b64`` (:func:`refuse_unencoded`), a ``typ``, ``cty``, ``jku``, ``x5u``, ``x5t`` or
    ``x5t#S256`` that is not a string, and an ``x5c`` that is not a list of base64 DER certificates (RFC 7515 4.1.6),
    naming the parameter and what it holds."""
    import base64
    import binascii

    from cryptography import x509

    from certkit.acme.failures import certificate_words
    from certkit.errors import parse_errors

    refuse_unencoded(protected, what)
    for name in STRINGS:
        if name in protected and not isinstance(protected[name], str):
            raise Problem("malformed", f"{what}'s '{name}' header parameter must be a string (RFC 7515 4.1), not "
                                       f"{json_type(protected[name])}; {_NEEDED}.")
    chain = protected.get("x5c", [])
    if not isinstance(chain, list) or not all(isinstance(entry, str) for entry in chain):
        raise Problem("malformed", f"{what}'s 'x5c' header parameter must be a list of base64 DER certificates "
                                   f"(RFC 7515 4.1.6), not {json_type(chain)}; {_NEEDED}.")
    for number, entry in enumerate(chain, 1):
        try:
            der = base64.b64decode(entry, validate=True)
        except (binascii.Error, ValueError):
            said = "is not base64 (RFC 7515 4.1.6 uses base64 with padding, not base64url)"
        else:
            try:
                x509.load_der_x509_certificate(der).extensions  # noqa: B018 - parsed when first read
                continue
            except parse_errors() as exc:
                said = f"is no certificate: {certificate_words(exc)}"
        raise Problem("malformed", f"{what}'s 'x5c' header parameter: its entry {number} {said}; {_NEEDED}.")
