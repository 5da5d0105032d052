"""Which key a new certificate gets: ``key=`` and ``key_type=`` checked together (never one of them
silently left unused), and the key type a renewal with a new key generates (the old key's own)."""

from __future__ import annotations

from certkit.constants import DEFAULT_KEY_TYPE, KEY_TYPES
from certkit.errors import CannotRenew, InvalidArgument, cli_worded
from certkit.text import is_digits

# Key types certkit generates only to renew a key of that type (not offered for new keys).
RENEWAL_ONLY_TYPES = ("ecdsa-p521",)


def check_key_choice(key, key_type: str | None) -> str:
    """The key type of a new certificate: ``key``'s, held to the key policy CSRs get, when it is given
    (a ``key_type`` beside it must name the same type), else ``key_type`` (by default
    :data:`DEFAULT_KEY_TYPE`), checked. Refused here, before anything is signed."""
    from certkit.keys import check_key_type, check_private_key, key_type_of

    if key_type is not None:
        check_key_type(key_type)
    if key is None:
        return key_type if key_type is not None else DEFAULT_KEY_TYPE
    check_private_key(key)
    given = key_type_of(key)
    if key_type is not None and given != key_type:
        raise InvalidArgument(f"The key given is {given}, but key_type asks for {key_type}; give one or the other "
                              "(key_type applies only to a key certkit generates).")
    return given


def ca_key_type(key, key_type: str | None) -> str:
    """``CA.create``'s key type: ``key``'s (held to the key policy; a ``key_type`` beside it must name
    the same), else ``key_type`` checked, by default :data:`certkit.constants.DEFAULT_KEY_TYPE`."""
    from certkit.keys import check_key_type, check_private_key, key_type_of

    if key_type is not None:
        check_key_type(key_type)
    if key is None:
        return key_type or DEFAULT_KEY_TYPE
    check_private_key(key, token=True)
    given = key_type_of(key.public_key())
    if key_type is not None and given != key_type:
        raise InvalidArgument(f"The key given is {given}, but key_type asks for {key_type}; give one or the other "
                              "(key_type applies only to a key certkit generates).")
    return given


def renewal_key_type(public_key) -> tuple[str, list[str]]:
    """The key type a renewal with a new key generates when none is asked for: the old key's
    (``public_key``) own type; for an RSA size certkit does not generate, the nearest larger one,
    said in a note. A type with no such choice is refused, naming what to give."""
    from certkit.keys import key_type_of

    kind = key_type_of(public_key)
    if kind in KEY_TYPES or kind in RENEWAL_ONLY_TYPES:
        return kind, []
    sizes = sorted(int(t[4:]) for t in KEY_TYPES if t.startswith("rsa-"))
    if kind.startswith("rsa-") and is_digits(kind[4:]):
        larger = [bits for bits in sizes if bits >= int(kind[4:])]
        if larger:
            chosen = f"rsa-{larger[0]}"
            return chosen, [f"the old key is {kind}, a size certkit does not generate: the new key is {chosen}, the "
                            "nearest larger size"]
    choices = ", ".join(KEY_TYPES)
    said = f"give the new key's type: key_type= one of {choices}"
    return _refuse(f"The old key is {kind}, of a type or size certkit does not generate; {said}.", said,
                   f"give the new key's type: --key-type one of {choices}")


def _refuse(message: str, library: str, cli: str):
    raise cli_worded(CannotRenew(message), library, cli)


def generate_any(key_type: str):
    """A new key of ``key_type``: one of :data:`KEY_TYPES`, or of :data:`RENEWAL_ONLY_TYPES`."""
    from certkit.keys import generate_key

    if key_type == "ecdsa-p521":
        from cryptography.hazmat.primitives.asymmetric import ec

        return ec.generate_private_key(ec.SECP521R1())
    return generate_key(key_type)


def ed25519_note(public_key, chain) -> str | None:
    """What an Ed25519 key in a new certificate, or in the CA ``chain`` above it, means to peers: cryptography's
    verifier takes an Ed25519 leaf under an RSA or ECDSA CA, never a chain through an Ed25519 CA (a new CA's
    ``chain`` holds itself: init-ca says it of an Ed25519 root, and of any CA under one)."""
    return ed25519_note_of(public_key, has_ed25519(chain))


def has_ed25519(chain) -> bool:
    from cryptography.x509.oid import PublicKeyAlgorithmOID

    return any(ca.public_key_algorithm_oid == PublicKeyAlgorithmOID.ED25519 for ca in chain)


# What the cluster software that reads a peer certificate does with its key, as run on loopback with both sides
# presenting it (etcd 3.4 and etcdctl, Go; Redis 7, OpenSSL; JDK 17's JSSE, as Kafka and Elasticsearch use it):
# browsers, of which the other notes speak, never read one.
PEERS_TESTED = "etcd and etcdctl (Go), Redis (OpenSSL) and Java 17's JSSE (Kafka, Elasticsearch)"
P521_PEER_NOTE = (f"a P-521 key in a peer certificate: {PEERS_TESTED} accept it on both sides of a connection "
                  "(of browsers, Chrome would not, but no browser reads a peer certificate)")


# The services that read a client certificate, as run on loopback demanding one (etcd 3.4's client listener, Go;
# Redis 7, OpenSSL; a JDK 17 JSSE server): a browser only ever presents one, and verifies no client's chain.
SERVICES_TESTED = "etcd (Go), Redis (OpenSSL) and Java 17's JSSE"


def ed25519_note_of(public_key, chain_ed25519: bool, kind: str | None = None) -> str | None:
    """:func:`ed25519_note`, with whether the chain holds an Ed25519 key known (a CA knows it of its own); of a
    ``kind`` "peer" certificate, what cluster software does with it; of a "client" one, what services do."""
    if kind == "client":
        return _client_ed25519_note(public_key, chain_ed25519)
    if kind == "peer" and not chain_ed25519 and _is_ed25519(public_key):
        return (f"an Ed25519 key in a peer certificate: {PEERS_TESTED} accept it on both sides of a connection; "
                "a member on another TLS stack must support Ed25519 signatures in TLS too")
    if chain_ed25519 and kind == "peer":
        return (f"this CA (or a CA above it) has an Ed25519 key: {PEERS_TESTED} accept a peer certificate it signs "
                "on both sides of a connection; web-PKI verifiers (cryptography's) refuse every certificate under it")
    if chain_ed25519:
        return ("this CA (or a CA above it) has an Ed25519 key: OpenSSL-based peers accept what it signs, but "
                "browsers and web-PKI verifiers (Chrome, cryptography's) refuse every certificate under it")
    if _is_ed25519(public_key):
        return ("an Ed25519 key works with OpenSSL-based peers, and cryptography's verifier accepts it under this "
                "CA, but browsers (Chrome, Firefox) do not take Ed25519 in a TLS handshake: give browsers an RSA "
                "or ECDSA certificate")
    return None


def _client_ed25519_note(public_key, chain_ed25519: bool) -> str | None:
    if chain_ed25519:
        return (f"this CA (or a CA above it) has an Ed25519 key: {SERVICES_TESTED} accept a client certificate it "
                "signs, but web-PKI verifiers (cryptography's) refuse every certificate under it")
    if _is_ed25519(public_key):
        return (f"an Ed25519 key in a client certificate: {SERVICES_TESTED} accept it from a client, and "
                "cryptography's verifier under this CA, but browsers (Chrome, Firefox) cannot present it: they do not "
                "take Ed25519 in a TLS handshake, so give a person's browser an RSA or ECDSA certificate")
    return None


def _is_ed25519(key) -> bool:
    """``key_type_of(key) == "ed25519"``, with one isinstance check (a batch asks twice per certificate)."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey))
