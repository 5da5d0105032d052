"""Key types, the keys certkit certifies, key generation, and loading private keys (PEM or DER, encrypted or not).

Writing a key, and the CA key's encryption, are :mod:`certkit.key_encryption`'s.
"""

from __future__ import annotations

import math
import re
from contextlib import suppress
from functools import cache
from typing import TYPE_CHECKING, Union

from certkit.errors import CertkitError, InvalidArgument, PassphraseRequired, WrongPassphrase
from certkit.key_encryption import is_encrypted
from certkit.vocabulary import wrong_type

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey]

from certkit.constants import DEFAULT_KEY_TYPE, KEY_TYPES  # noqa: F401 (part of this module's API)

# The keys certkit certifies, whoever made them (a CSR, ``key=``, a CA's own): what TLS stacks accept.
MIN_RSA_BITS = 2048
# Go's crypto/tls refuses a peer's certificate with a larger RSA key (CVE-2023-29409, since Go 1.19.12
# and 1.20.7): etcd, Kubernetes, Vault and Caddy would refuse what certkit signed.
MAX_RSA_BITS = 8192
# CA/Browser Forum Baseline Requirements 6.1.6: an RSA public exponent is odd, from 2^16+1 to 2^256-1.
# Below it, e=1 makes a signature the padded message itself (anyone can forge one) and e=3 is the
# exponent of the published padding attacks.
MIN_RSA_EXPONENT, MAX_RSA_EXPONENT = 65537, 2**256 - 1
# A modulus with a prime factor below this is factored by anyone (the same check as BR 6.1.6's
# "no small factors" and the Debian-era weak-key linters).
SMALL_PRIME_BOUND = 1000
CURVES = ("secp256r1", "secp384r1", "secp521r1")
# What certkit certifies, said in every refusal of another key (a CSR's, ``key=``): the end of a sentence.
KEYS_CERTIFIED = f"RSA of at least {MIN_RSA_BITS} bits, ECDSA P-256, P-384 or P-521, or Ed25519"
# Chrome (BoringSSL) offers no P-521 signature scheme: a server with a P-521 key cannot answer it (a CSR's key).
P521_NOTE = ("a P-521 key works with OpenSSL-based peers and GnuTLS, but Chrome (Chromium, Edge) offers no P-521 "
             "signature in a handshake and cannot connect to a server with it (ERR_SSL_VERSION_OR_CIPHER_MISMATCH): "
             "give browsers a P-256, P-384 or RSA key")


def check_key_type(key_type: str) -> str:
    """``key_type`` if it is one of :data:`KEY_TYPES`; a TypeError if it is not a str."""
    if not isinstance(key_type, str):
        raise wrong_type("key_type", f"a str, one of {', '.join(KEY_TYPES)}", key_type)
    if key_type not in KEY_TYPES:
        from certkit.text import shown

        raise InvalidArgument(f"Unknown key type '{shown(key_type)}'; choose one of: {', '.join(KEY_TYPES)}.")
    return key_type


def check_new_key(new_key, old_public_key, key_type: str | None, *, rekey: bool) -> None:
    """What a renewal is told of its new key: ``key_type`` and ``new_key`` apply only with ``rekey``;
    ``new_key`` meets the key policy, is of ``key_type`` if both are given, and is not the old key."""
    from certkit.errors import CannotRenew, cli_worded

    if key_type is not None:
        check_key_type(key_type)
        if not rekey:
            said = "applies to a new key"
            raise cli_worded(CannotRenew(f"key_type {said}: pass rekey=True."), f"key_type {said}: pass rekey=True",
                             f"--key-type {said}: add --rekey")
    if new_key is None:
        return
    if not rekey:
        raise CannotRenew("A new key is for a renewal with rekey=True; to keep the old key, pass it as key=.")
    check_private_key(new_key)
    if key_type is not None and key_type_of(new_key) != key_type:
        raise CannotRenew(f"The key given is {key_type_of(new_key)}, but key_type asks for {key_type}; give one "
                          "or the other.")
    if public_key_der(new_key.public_key()) == public_key_der(old_public_key):
        raise CannotRenew("The key given is the certificate's current key; rekey=True asks for a new one.")


def key_policy_problem(public_key) -> str | None:
    """Why certkit does not certify ``public_key`` (too weak, or a key that cannot sign), as the end of
    a sentence ("holds ..."); None if it does. CSRs and every ``key=`` of the library are held to it."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size > MAX_RSA_BITS:
        return (f"an {key_type_of(public_key)} key, larger than the {MAX_RSA_BITS} bits Go's TLS accepts (etcd, "
                "Kubernetes, Vault and Caddy refuse such a certificate in the handshake), which certkit does not "
                f"sign: use RSA of {MIN_RSA_BITS} to {MAX_RSA_BITS} bits, ECDSA P-256, P-384 or P-521, or Ed25519")
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size >= MIN_RSA_BITS:
        return rsa_key_problem(public_key)
    if isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name in CURVES:
        return None
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return None
    kind = key_type_of(public_key)
    article = "a" if kind[:1].lower() in "bcdgjkpqtuvwyz" else "an"  # read as letters: an rsa-1024, a dsa-1024
    return f"{article} {kind} key, which certkit does not sign: use {KEYS_CERTIFIED}"


def rsa_key_problem(public_key) -> str | None:
    """Why an RSA public key of a sufficient size is broken, as :func:`key_policy_problem` says it:
    an exponent outside BR 6.1.6 or one OpenSSL and Java refuse, or a modulus that anyone can factor (even, a
    prime factor below :data:`SMALL_PRIME_BOUND`, a perfect square or cube); None if it is sound."""
    numbers = public_key.public_numbers()
    e, n = numbers.e, numbers.n
    kind = key_type_of(public_key)
    if e % 2 == 0 or not MIN_RSA_EXPONENT <= e <= MAX_RSA_EXPONENT:
        shown_e = str(e) if e < 2**64 else f"a {e.bit_length()}-bit number"
        forge = "; with e=1 anyone can make signatures that verify under it, no private key needed" if e == 1 else ""
        return (f"an {kind} key whose public exponent is {shown_e}, which certkit does not sign: an RSA "
                f"exponent must be odd and from {MIN_RSA_EXPONENT} to 2^256-1 (CA/Browser Forum BR 6.1.6){forge}")
    from certkit.signatures import long_rsa_exponent

    if long := long_rsa_exponent(public_key):
        return (f"an {kind} key with {long}, which certkit does not sign: OpenSSL-based peers (\"bad e value\") and "
                "Java check no signature it makes; make the key with the exponent 65537")
    flaw = _modulus_flaw(n)
    if flaw is None:
        return None
    return (f"an {kind} key whose modulus {flaw}, which certkit does not sign: anyone can factor that modulus "
            "and so rebuild the private key; generate a new key pair")


def _modulus_flaw(n: int) -> str | None:
    """How an RSA modulus gives its factors away, in words ("is even"), or None."""
    common = math.gcd(n, math.prod(_small_primes()))
    if common != 1:
        factor = next(p for p in _small_primes() if common % p == 0)
        return "is even" if factor == 2 else f"is divisible by {factor}"
    if math.isqrt(n) ** 2 == n:
        return "is a perfect square"
    if _icbrt(n) ** 3 == n:
        return "is a perfect cube"
    return None


@cache
def _small_primes() -> tuple[int, ...]:
    sieve = bytearray([1]) * SMALL_PRIME_BOUND
    sieve[:2] = b"\0\0"
    for i in range(2, math.isqrt(SMALL_PRIME_BOUND) + 1):
        if sieve[i]:
            sieve[i * i::i] = bytes(len(range(i * i, SMALL_PRIME_BOUND, i)))
    return tuple(i for i, prime in enumerate(sieve) if prime)


def _icbrt(n: int) -> int:
    """The integer cube root of ``n`` >= 0, rounded down (Newton's method from above)."""
    x = 1 << -(-n.bit_length() // 3)
    while True:
        y = (2 * x + n // (x * x)) // 3
        if y >= x:
            return x
        x = y


def check_private_key(key, what: str = "key", *, token: bool = False):
    """``key`` if certkit may certify it: a ``cryptography`` private key (or, with ``token``, a key held
    by a PKCS#11 token) that :func:`key_policy_problem` accepts. Anything else that is not a private
    key is a TypeError; a weak key, or one that cannot sign (X25519, X448, DSA), a CertkitError."""
    import warnings

    from cryptography.hazmat.primitives.asymmetric import dh, dsa, ec, ed448, ed25519, rsa, x448, x25519

    with warnings.catch_warnings():  # cryptography 50 deprecates finite-field DH: even naming its class warns
        warnings.simplefilter("ignore")
        dh_key = dh.DHPrivateKey
    kinds = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey,
             dsa.DSAPrivateKey, dh_key, x25519.X25519PrivateKey, x448.X448PrivateKey)
    held = token and hasattr(key, "sign_builder") and callable(getattr(key, "public_key", None))
    if not isinstance(key, kinds) and not held:
        material = isinstance(key, (str, bytes, bytearray, memoryview))  # a PEM, DER or raw key: never shown
        raise wrong_type(what, "a private key (cryptography's rsa, ec or ed25519)", key, secret=material)
    problem = key_policy_problem(key.public_key())
    if problem:
        raise CertkitError(f"The {what} given is {problem}.")
    return key


def generate_key(key_type: str = DEFAULT_KEY_TYPE) -> PrivateKey:
    """Generate a private key of one of :data:`KEY_TYPES`."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    check_key_type(key_type)
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type.startswith("rsa-") and key_type in KEY_TYPES:
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    return ed25519.Ed25519PrivateKey.generate()  # check_key_type() leaves no other


def key_type_of(key) -> str:
    """Name the key type of a private or public key, e.g. ``ecdsa-p256``."""
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519

    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return f"rsa-{key.key_size}"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384", "secp521r1": "ecdsa-p521"}.get(
            key.curve.name, f"ecdsa-{key.curve.name}"
        )
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "ed25519"
    if isinstance(key, (ed448.Ed448PrivateKey, ed448.Ed448PublicKey)):
        return "ed448"
    if isinstance(key, (dsa.DSAPrivateKey, dsa.DSAPublicKey)):
        return f"dsa-{key.key_size}"
    kinds = {"x25519": (x25519.X25519PrivateKey, x25519.X25519PublicKey), "x448": (x448.X448PrivateKey,
                                                                                   x448.X448PublicKey)}
    found = next((name for name, types in kinds.items() if isinstance(key, types)), type(key).__name__)
    # cryptography's ML-DSA classes (MLDSA65PublicKey) by their FIPS 204 name, as openssl spells it
    return re.sub(r"^MLDSA(\d+)(?:Public|Private)Key$", r"ml-dsa-\1", found)


def public_key_der(public_key) -> bytes:
    """The SubjectPublicKeyInfo DER of a public key: what to compare to tell whether a key,
    a certificate and a CSR belong together."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def signature_hash(key):
    """The hash to sign with for ``key``: SHA-384 for P-384, none for EdDSA, else SHA-256."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519

    if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def sign_builder(key, builder):
    """Sign a certificate or CRL builder with ``key``: a private key, or an external signer (a
    PKCS#11 token) that signs the builder itself through a ``sign_builder`` method."""
    if hasattr(key, "sign_builder"):
        return key.sign_builder(builder)
    return builder.sign(key, signature_hash(key))


# A file's first line may start with a UTF-8 byte-order mark (Windows editors write one), as OpenSSL reads it.
_PEM_LINE = re.compile(rb"^(?:\xef\xbb\xbf)?-----(BEGIN|END) ([A-Z0-9 ]+)-----[ \t\r]*$", re.MULTILINE)


def pem_damage(data: bytes) -> str | None:
    """What is wrong with the PEM framing of ``data`` (a truncated file, mismatched markers), or None."""
    markers = _PEM_LINE.findall(data)
    if not markers:
        return "it holds no PEM data (no -----BEGIN line)"
    opened = None
    for kind, label in markers:
        name = label.decode()
        if kind == b"BEGIN":
            if opened is not None:
                return f"its BEGIN {opened} block has no END line"
            opened = name
        elif opened != name:
            return f"an END {name} line has no matching BEGIN line"
        else:
            opened = None
    if opened is not None:
        return f"it is truncated: its BEGIN {opened} line has no END line"
    return None


def key_damage(data: bytes) -> str | None:
    """What is wrong with the PEM framing of a key file's ``data``, or None (DER, or whole PEM)."""
    return pem_damage(data) if data.lstrip().startswith(b"-----") else None


def load_private_key(data: bytes, passphrase: bytes | None = None, *, source: str = "key",
                     trusted: bool = False) -> PrivateKey:
    """Load a PEM or DER private key, decrypting it with ``passphrase`` if needed.

    ``trusted`` skips RSA's expensive consistency check (about 40 ms for a
    3072-bit key); pass it only for keys certkit wrote itself and whose public
    half is then compared with a certificate.
    """
    from cryptography.hazmat.primitives import serialization

    is_pem = b"-----BEGIN" in data  # as OpenSSL reads PEM: text or a byte-order mark before it is skipped
    damage = key_damage(data)
    if damage is not None:  # before the passphrase: no passphrase opens a truncated file
        raise CertkitError(f"The {source} is damaged: {damage}.")
    if is_encrypted(data) and not passphrase:  # an empty passphrase is none: no key is encrypted with one
        given = "no passphrase was given" if passphrase is None else "the passphrase given is empty"
        raise PassphraseRequired(f"The {source} is encrypted and {given}.")
    loader = serialization.load_pem_private_key if is_pem else serialization.load_der_private_key
    try:
        return loader(data, passphrase if is_encrypted(data) else None,
                      unsafe_skip_rsa_key_validation=trusted)
    except Exception as exc:  # ValueError (not a key, or not this passphrase); TypeError, UnsupportedAlgorithm
        if isinstance(exc, ValueError) and is_encrypted(data):
            # A wrong passphrase shows up as bad padding after decryption; so does a
            # damaged ciphertext, which is why the message names both.
            raise WrongPassphrase(
                f"The passphrase does not decrypt the {source} (wrong passphrase, or the file is damaged)."
            ) from None
        held = held_instead(data, is_pem)
        if held is not None:
            raise CertkitError(f"The {source} holds {held}, not a private key.") from None
        if not data.strip():
            raise CertkitError(f"The {source} is empty.") from None
        if is_pem or not data.lstrip().startswith(b"0"):  # "0": a DER SEQUENCE's first byte
            if not any(b"PRIVATE KEY" in label for _, label in _PEM_LINE.findall(data)):
                raise CertkitError(f"The {source} holds no private key (PEM -----BEGIN PRIVATE KEY-----).") from None
        raise CertkitError(f"The {source} cannot be read: {str(exc).split('. ')[0].rstrip('.')}.") from None


def held_instead(data: bytes, is_pem: bool) -> str | None:
    """What a file given as a private key holds instead (a certificate, CSR or CRL in PEM or DER; a bundle.p12:
    :func:`certkit.material_kinds.binary_kind`), in words; None otherwise. Asked only once the key could not be read."""
    if is_pem:
        labels = {label for _, label in _PEM_LINE.findall(data)}
        held = [held for held, names in _PEM_HELD if labels & names]
        return held[0] if held and not any(b"PRIVATE KEY" in label for label in labels) else None
    from cryptography import x509

    from certkit.material_kinds import DER_KEY, binary_kind

    for (held, _), load in zip(_PEM_HELD, (x509.load_der_x509_csr, x509.load_der_x509_crl,
                                           x509.load_der_x509_certificate), strict=True):
        with suppress(Exception):  # not this one (ValueError), or damaged: the next
            load(data)
            return held
    return None if (kind := binary_kind(data)) == DER_KEY else kind  # a bundle.p12, a .p7b, a keystore


_PEM_HELD = (("a certificate signing request", {b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST"}),
             ("a certificate revocation list (CRL)", {b"X509 CRL"}),
             ("a certificate", {b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"}))


def refusing_empty(secret, message: str):
    """``secret`` (a passphrase or PIN, or a callable giving one) as a callable giving it, which
    raises :class:`PassphraseRequired` with ``message`` for an empty one: an empty secret is a missing
    one (the command line says so too), and it is asked for only when the key needs it."""
    def value():
        given = secret() if callable(secret) else secret
        if isinstance(given, (str, bytes, bytearray, memoryview)) and not len(given):
            raise PassphraseRequired(message)
        return given

    return value


def refuse_chain_key(public_key, chain) -> None:
    """Refuse to certify the key of a CA of ``chain`` (certificates: the issuer, those above it and
    those it signed) for another certificate: a leaf's privkey.pem would then hand out that CA's key."""
    from certkit.text import shown
    from certkit.vocabulary import common_name

    der = public_key_der(public_key)
    for cert in chain:
        if public_key_der(cert.public_key()) == der:
            raise CertkitError(f"The key to certify is the key of the CA '{shown(common_name(cert.subject) or '')}'; "
                               "a certificate needs a key of its own (a bundle holding it would hand out the CA's "
                               "key). Generate a new key pair.")


def refuse_reused_key(inventory, public_key, *, for_ca: bool) -> None:
    """Refuse a key that the CA of ``inventory`` certified before in a way that rules it out
    (:func:`certkit.inventory.query.key_reuse`)."""
    if inventory is not None:
        from certkit.inventory.query import key_reuse

        if why := key_reuse(inventory, public_key, for_ca=for_ca):
            raise CertkitError(f"The key to certify is {why}. Generate a new key pair.")
