"""What :class:`certkit.ca.CA` checks of what it is given: its parts (``CA(cert, key, parents)``), and
a serial to revoke as ``certkit revoke`` reads one (a unique prefix of 8 or more hex digits too)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from certkit.errors import CertkitError, InvalidArgument, UnknownCertificate
from certkit.text import shown
from certkit.vocabulary import wrong_type

if TYPE_CHECKING:
    from cryptography import x509

    from certkit.inventory import Inventory

# A serial prefix shorter than this is too likely to be a typo that matches something (certkit revoke's rule).
MIN_SERIAL_PREFIX = 8


def check_parts(cert, key, parents, inventory=None, store=None) -> None:
    """What ``CA(cert, key, parents)`` is given: a CA certificate, its own key (or None: locked), the CA
    certificates above it, each signing the one before, up to a root; else certificates it signs would
    not verify, or a leaf would act as a CA."""
    from cryptography import x509

    from certkit.keys import public_key_der
    from certkit.vocabulary import is_ca

    if not isinstance(cert, x509.Certificate):
        raise wrong_type("cert", "an x509.Certificate", cert)
    if isinstance(parents, (str, bytes)) or not all(isinstance(p, x509.Certificate) for p in parents):
        raise wrong_type("parents", "a list of x509.Certificate", parents)
    _check_companions(inventory, store)
    for each in (cert, *parents):
        if not is_ca(each):
            raise CertkitError(f"{shown(each.subject.rfc4514_string())} is not a CA certificate (its basicConstraints "
                               "does not say CA:TRUE): it cannot issue certificates.")
    check_chain(cert, list(parents))
    if key is not None:
        if not callable(getattr(key, "public_key", None)):
            raise wrong_type("key", "the CA's private key", key)
        if public_key_der(key.public_key()) != public_key_der(cert.public_key()):
            raise CertkitError(f"The key given is not the key of the CA certificate "
                               f"{shown(cert.subject.rfc4514_string())}: certificates signed with it would not verify.")


def _check_companions(inventory, store) -> None:
    from certkit.inventory import Inventory
    from certkit.store import CADirectory

    if inventory is not None and not isinstance(inventory, Inventory):
        raise wrong_type("inventory", "a certkit.inventory.Inventory (CADirectory(path).inventory) or None",
                         inventory)
    if store is not None and not isinstance(store, CADirectory):
        raise wrong_type("store", "a certkit.store.CADirectory or None", store)


def _name(cert) -> str:
    return shown(cert.subject.rfc4514_string())


def signed_by(child, issuer) -> bool:
    try:
        child.verify_directly_issued_by(issuer)
    except Exception:  # InvalidSignature, a name mismatch (ValueError), an unusable key type
        return False
    return True


def chain_fault(cert: "x509.Certificate", parents: list) -> tuple[str, object, object] | None:
    """Where ``[cert, *parents]`` fails to chain to a root, if it does: ``("past-root", root, None)``
    (certificates after a root), ``("unsigned", child, issuer)`` (a link that does not sign the one
    before), ``("no-root", top, None)`` (the last is no root). The CA directory's check and the
    library's :func:`check_chain` word it each in their terms."""
    chain = [cert, *parents]
    for child, issuer in zip(chain, chain[1:], strict=False):
        if signed_by(child, child):
            return "past-root", child, None
        if not signed_by(child, issuer):
            return "unsigned", child, issuer
    return None if signed_by(chain[-1], chain[-1]) else ("no-root", chain[-1], None)


def check_chain(cert: "x509.Certificate", parents: list) -> None:
    """``parents`` chain ``cert`` to a root: each signs the one before, and the last (or ``cert``
    itself, with no parents) is self-signed. Otherwise every bundle would carry a chain no peer can
    follow, and a TLS context of this CA would verify nothing (an intermediate taken for a root)."""
    fault = chain_fault(cert, parents)
    if fault is None:
        return
    kind, child, issuer = fault
    if kind == "past-root":
        raise InvalidArgument(f"parents go on after the root {_name(child)}: a root ends the chain; pass the "
                              "CA certificates above this CA only, nearest first.")
    if kind == "unsigned":
        raise InvalidArgument(f"parents do not chain to cert: {_name(child)} is not signed by {_name(issuer)}; "
                              "pass the CA certificates above this CA, nearest first, up to the root.")
    above = shown(child.issuer.rfc4514_string())  # "no-root": the top of the chain is no root
    if not parents:
        raise InvalidArgument(f"{_name(child)} is an intermediate CA (issued by {above}), but no parents were "
                              "given: pass the certificates above it, nearest first, up to the root "
                              "(CA(cert, key, [issuer_cert, ..., root_cert])).")
    raise InvalidArgument(f"parents end with {_name(child)}, which is not a root (it is issued by {above}): "
                          "the certificates above it are missing; pass the chain up to the root.")


def resolve_serial(inventory: "Inventory", serial: str, typed) -> str:
    """The serial of this inventory that ``typed`` names (``serial``: as
    :func:`certkit.vocabulary.serial_argument` read it): itself, or, for text, the one serial starting
    with the hex digits typed (8 or more), as ``certkit revoke`` reads a prefix."""
    from certkit.vocabulary import serial_digits

    if not isinstance(typed, str) or inventory.get(serial) is not None:
        return serial
    return _by_prefix(inventory, serial, serial_digits(typed) or serial)


def _by_prefix(inventory: "Inventory", serial: str, prefix: str) -> str:
    if len(prefix) < MIN_SERIAL_PREFIX:
        if inventory.serials_starting(prefix, limit=1):
            raise UnknownCertificate(f"'{prefix}' is too short a serial prefix: give at least {MIN_SERIAL_PREFIX} hex "
                                     "digits (or the whole serial), so that a typo cannot pick another certificate.")
        return serial
    matches = inventory.serials_starting(prefix, limit=5)
    # Round one printed serials without their leading zero; they are stored padded to whole octets.
    matches += [m for m in inventory.serials_starting("0" + prefix, limit=5) if m not in matches]
    if len(matches) > 1:
        raise UnknownCertificate(f"The serial prefix {prefix} matches several certificates ({', '.join(matches)}); "
                                 "give more digits.")
    return matches[0] if matches else serial


def check_saved(ca, passphrase) -> bytes | None:
    """``save_new``'s arguments, checked before anything is written (or a parent's pending row abandoned):
    an unlocked :class:`~certkit.ca.CA`, and the passphrase as bytes (a str is taken as UTF-8)."""
    from certkit.ca import CA
    from certkit.store import _secret_bytes

    if not isinstance(ca, CA):
        raise wrong_type("ca", "a CA (CA.create())", ca)
    if ca.key is None:
        raise CertkitError(f"The CA '{shown(ca.common_name)}' is locked (its key is not loaded): unlock() it before "
                           "saving it as a new CA directory.")
    if callable(passphrase):
        raise wrong_type("passphrase", "bytes, a str or None", passphrase)
    return _secret_bytes(passphrase)
