"""The public half of a key in a token, read from the token's objects: its public key object (the one
with the private key's CKA_ID when several match), else an RSA private object's modulus and exponent, else
the key of a certificate object under the same name; and a ``cryptography`` public key from such an object."""

from __future__ import annotations

from certkit.pkcs11.errors import TokenError, TokenPublicMissing
from certkit.pkcs11.session import binding, find_objects
from certkit.pkcs11.uri import KeyURI


def public_key_of(session, uri: KeyURI, private):
    """The public half of a key in a token: its public key object (when several match the URI, the
    one whose CKA_ID is the private key's), else (RSA) the private object's modulus and exponent,
    else a certificate object with the same label or id."""
    pkcs11 = binding()

    publics = find_objects(session, uri, pkcs11.ObjectClass.PUBLIC_KEY)
    if len(publics) > 1:  # e.g. a public half left behind by an earlier pair under the same label
        key_id = _id_of(private)
        paired = [public for public in publics if key_id and _id_of(public) == key_id]
        if len(paired) == 1:
            return public_from_object(paired[0])
        if private.key_type != pkcs11.KeyType.RSA:
            ids = ", ".join(sorted(_id_of(public).hex() or "none" for public in publics))
            which = "none" if not paired else f"{len(paired)}"
            raise TokenError(f"The token holds several public keys for the private {uri.describe()} (ids {ids}), "
                             f"{which} with the private key's id ({key_id.hex() or 'none'}); remove the ones that "
                             "do not belong to it (pkcs11-tool --list-objects --login shows them, "
                             "pkcs11-tool --delete-object --type pubkey --id ID removes one).")
    if len(publics) == 1:
        return public_from_object(publics[0])
    if private.key_type == pkcs11.KeyType.RSA:
        return public_from_object(private)
    keys = _certificate_keys(find_objects(session, uri, pkcs11.ObjectClass.CERTIFICATE), _id_of(private))
    if len(keys) == 1:  # one certificate, or several of the one key (a CA made again on it: init-ca --reuse-key)
        return keys[0]
    if keys:  # a CA whose certificate is known still takes its own key (TokenKey._public_half)
        raise TokenPublicMissing(f"The token holds the private {uri.describe()} but no public key object for it, "
                                 f"and certificates of {len(keys)} different keys under that URI: which one is its "
                                 "public half cannot be told. Name the key by its id= too, or remove the "
                                 "certificates that are not its (pkcs11-tool --list-objects --login shows them).")
    raise TokenPublicMissing(f"The token holds the private {uri.describe()} but no public key object for it (nor "
                             "a certificate); certkit needs its public half to build the CA certificate.")


def _certificate_keys(certificates: list, key_id: bytes) -> list:
    """The distinct public keys of ``certificates`` (token objects), those with the private key's id
    ``key_id`` only when any has it."""
    pkcs11 = binding()
    from cryptography import x509

    from certkit.keys import public_key_der

    mine = [c for c in certificates if key_id and _id_of(c) == key_id] or certificates
    keys: dict[bytes, object] = {}
    for obj in mine:
        try:
            key = x509.load_der_x509_certificate(bytes(obj[pkcs11.Attribute.VALUE])).public_key()
        except (ValueError, TypeError, pkcs11.PKCS11Error):  # not X.509, or a key cryptography does not read
            continue
        keys.setdefault(public_key_der(key), key)
    return list(keys.values())


def _public_der(session, uri: KeyURI, private, key_id: bytes) -> bytes | None:
    """The DER public half of the private key of id ``key_id`` under ``uri`` (None if unknown)."""
    from certkit.keys import public_key_der

    try:
        return public_key_der(public_key_of(session, KeyURI.parse(uri.with_id(key_id)), private))
    except (TokenError, binding().PKCS11Error, ValueError, TypeError):
        return None


def _id_of(obj) -> bytes:
    """An object's CKA_ID (empty when it has none)."""
    pkcs11 = binding()
    try:
        return bytes(obj[pkcs11.Attribute.ID] or b"")
    except pkcs11.PKCS11Error:
        return b""


def public_from_object(obj):
    """A ``cryptography`` public key from a token's public (or RSA private) key object."""
    pkcs11 = binding()
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    if obj.key_type == pkcs11.KeyType.RSA:
        n = int.from_bytes(obj[pkcs11.Attribute.MODULUS], "big")
        e = int.from_bytes(obj[pkcs11.Attribute.PUBLIC_EXPONENT], "big")
        return rsa.RSAPublicNumbers(e, n).public_key()
    if obj.key_type == pkcs11.KeyType.EC:
        from pkcs11.util.ec import encode_ec_public_key

        return load_der_public_key(encode_ec_public_key(obj))
    raise TokenError(f"The token key is of type {obj.key_type.name}; certkit signs with EC and RSA keys.")
