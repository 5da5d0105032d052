"""What :class:`certkit.ca.CA` checks of what it is given: its parts (``CA(cert, key, parents)``), and
a serial to revoke as ``certkit revoke`` reads one (a unique prefix of 8 or more hex digits too). What saving a
new CA checks and records: :mod:`certkit.ca_saving`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from certkit.errors import CertkitError, InvalidArgument, UnknownCertificate
from certkit.signatures import signed_by
from certkit.text import shown
from certkit.vocabulary import wrong_type

if TYPE_CHECKING:
    from pathlib import Path

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
    if isinstance(parents, (str, bytes)) or not hasattr(parents, "__iter__") \
            or not all(isinstance(p, x509.Certificate) for p in parents):
        raise wrong_type("parents", "a list of x509.Certificate", parents)
    _check_companions(inventory, store)
    if inventory is not None:
        check_binding_of(inventory, cert)
    for each in (cert, *parents):
        if not is_ca(each):
            raise CertkitError(f"{shown(each.subject.rfc4514_string())} is not a CA certificate (its basicConstraints "
                               "does not say CA:TRUE): it cannot issue certificates.")
    check_chain(cert, list(parents))
    if key is not None:
        if not callable(getattr(key, "public_key", None)):
            raise wrong_type("key", "the CA's private key", key, secret=True)
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


def check_directory_chain(path: "Path", cert, parents: list) -> None:
    """ca.pem must be signed by the first of parents.pem, each parent by the next, and the last
    must be a root (self-signed): otherwise every bundle would carry a chain no client can follow."""
    from certkit.errors import CABroken
    from certkit.store import CERT_FILE, PARENTS_FILE
    from certkit.vocabulary import is_ca, leaf_kind

    if not is_ca(cert):  # a leaf (a server certificate copied over ca.pem) is no CA, nor an intermediate
        what = {"server": "a TLS server", "client": "a TLS client", "peer": "a peer"}.get(leaf_kind(cert),
                                                                                           "an end-entity")
        raise CABroken(f"{shown(path / CERT_FILE)} is not a CA certificate (no basicConstraints CA:TRUE): it is "
                       f"{what} certificate ({shown(cert.subject.rfc4514_string())}); nothing can be trusted or "
                       f"issued from it. Restore the CA's own {CERT_FILE} from a backup.")
    fault = chain_fault(cert, parents)
    if fault is None:
        return
    kind, child, issuer = fault
    if kind == "past-root":
        where = CERT_FILE if child is cert else PARENTS_FILE
        root = shown(child.subject.rfc4514_string())
        raise CABroken(f"{shown(path / PARENTS_FILE)} goes on after the root {root} (in {where}): a root ends "
                       "the chain, and every bundle would carry the extra "
                       f"certificates. Restore {PARENTS_FILE} from a backup.")
    if kind == "unsigned":
        raise CABroken(f"The certificates in {shown(path)} do not form a chain: "
                       f"{shown(child.subject.rfc4514_string())} is not signed by "
                       f"{shown(issuer.subject.rfc4514_string())} ({PARENTS_FILE} does not fit {CERT_FILE}).")
    above = shown(child.issuer.rfc4514_string())  # "no-root": the top of the chain is no root
    if not parents:
        raise CABroken(f"{shown(path / CERT_FILE)} is an intermediate CA (issued by {above}), but {PARENTS_FILE} "
                       f"is missing, so its bundles would carry no chain to the root: copy {PARENTS_FILE} back "
                       "(the parent's ca.pem, and its own parents.pem if it has one).")
    raise CABroken(f"{shown(path / PARENTS_FILE)} ends with {shown(child.subject.rfc4514_string())}, which is not a "
                   f"root (it is issued by {above}): the chain to the root is incomplete.")


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


def check_binding_of(inventory, cert) -> None:
    """``CA(cert, key, inventory=...)``: an inventory of another CA is refused (a CA directory's, or a
    shared one bound to another certificate, :func:`certkit.store_inventory.bind`): what this CA
    records there would be certificates that CA did not issue, and that CA could sign no CRL again."""
    from certkit.errors import CABroken
    from certkit.store import check_binding

    try:
        check_binding(inventory, cert)
    except CABroken as exc:
        if " was moved to " in str(exc):  # this CA's own, maybe, but moved to PostgreSQL: said as every command says it
            raise
        reason = str(exc).split("; check ")[0]
        raise InvalidArgument(f"{reason}; it is not the inventory of {_name(cert)}: pass this CA's own inventory "
                              "(CADirectory(path).inventory of the directory it is saved in), or none.") from None


def check_directory(directory, parent) -> "Path | None":
    """``CA.create``'s ``directory``, checked before anything is signed: the CA directory an intermediate
    is about to be saved in (a str or a Path, not empty, UTF-8 text), for its ``parent`` to record it
    pending there. A root has no parent to record it (init-ca passes its directory either way): checked, unused."""
    import os
    from pathlib import Path

    from certkit.names import check_utf8

    if directory is None:
        return None
    if not isinstance(directory, (str, os.PathLike)) or not isinstance(os.fspath(directory), str):
        raise wrong_type("directory", "a str or a Path (the CA directory the intermediate will be saved in)",
                         directory)
    if not os.fspath(directory).strip():
        raise InvalidArgument("directory is empty (an unset variable?); give the CA directory the intermediate "
                              "will be saved in.")
    checked = Path(check_utf8(os.fspath(directory), "The CA directory", InvalidArgument)).absolute()
    return checked if parent is not None else None


def kind_of(ca, cert) -> str:
    """The kind of a leaf ``ca`` issued (from its inventory when it has one); refuses the others: a
    certificate of another CA, one the inventory does not hold, and a CA certificate (init-ca's)."""
    from cryptography import x509

    from certkit.constants import LEAF_KINDS
    from certkit.errors import CannotRenew
    from certkit.vocabulary import leaf_kind, serial_hex

    if not isinstance(cert, x509.Certificate):
        raise wrong_type("The certificate", "an x509.Certificate or an IssuedCert", cert)
    serial = serial_hex(cert.serial_number)
    if cert == ca.cert:  # as `certkit renew ca.pem` says
        raise CannotRenew(f"The certificate {serial} is this CA's own certificate, not one it issued: a CA "
                          "certificate is renewed with 'certkit init-ca' (a new CA certificate), not renew().")
    if not signed_by(cert, ca.cert):  # wrong issuer name, bad signature, other key type
        raise UnknownCertificate(f"The certificate {serial} ({shown(cert.subject.rfc4514_string())}) was not "
                                 f"issued by the CA '{shown(ca.common_name)}'.")
    kind = leaf_kind(cert)
    if kind == "ca":
        raise CannotRenew(f"The certificate {serial} is a CA certificate; only server, client and peer "
                          "certificates are renewed: a CA certificate is renewed with 'certkit init-ca'.")
    if ca.inventory is not None:
        row = ca.inventory.get(serial)
        if row is None:
            raise UnknownCertificate(f"The certificate {serial} is not in the inventory of CA "
                                     f"'{shown(ca.common_name)}'.")
        kind = row["kind"]
    if kind not in LEAF_KINDS:
        raise CannotRenew(f"The certificate {serial} is {'an' if kind[:1] in 'aeiou' else 'a'} {kind} certificate; "
                          "only server, client and peer certificates are renewed (CAs with 'init-ca').")
    return kind


def intermediate_limits(parent, days: int | None, permitted_dns, permitted_ips, not_before=None) -> tuple:
    """What an intermediate of ``parent`` may be, from the parent's certificates alone (its key is not needed,
    so init-ca refuses before any passphrase): its lifetime within the parent's (``days``, by default the
    profile's; refused past it), its name constraints no wider. Returns (not_before, not_after, the
    NameConstraints)."""
    import datetime as dt

    from certkit import constraints
    from certkit.constraints_parsing import parse_permitted
    from certkit.errors import InvalidLifetime
    from certkit.profiles import PROFILES, validity
    from certkit.validity import cap_at_parent, check_days, check_started, check_within_parent

    if not_before is None:  # to be valid now: under a parent not valid yet, it would be refused until then
        check_started([parent.cert, *parent.parents], dt.datetime.now(dt.UTC))
    dns, ips = parse_permitted(permitted_dns, permitted_ips)
    asked, days = days, days if days is not None else PROFILES["intermediate-ca"].default_days
    check_days(days)
    not_before, not_after = validity(days, start=not_before)
    # as a leaf: never before its issuer (backdated, for a test that needs an expired one, within the parent's life)
    not_before = max(not_before, parent.cert.not_valid_before_utc)
    if not_after <= not_before:
        raise InvalidLifetime(f"The requested validity ends on {not_after:%Y-%m-%d %H:%M:%S} UTC, before the parent CA "
                              f"'{parent.common_name}' became valid; a CA cannot be valid before its issuer.")
    parent.check_can_sign_ca()
    not_after = cap_at_parent(parent, asked, not_before, not_after)
    check_within_parent(parent.cert, parent.common_name, days, not_before, not_after)
    return not_before, not_after, constraints.narrowed(parent.constraints(), parent.common_name, dns, ips)


def check_still_home(ca, done: str = "nothing was signed") -> None:
    """A CA loaded from a directory records only while that directory still holds it: one deleted and made
    again for another CA (under a long-lived process's object) would get this CA's certificates in the other's
    inventory, which could then sign no CRL. Checked before anything is signed, revoked or recorded; ``done`` says
    what was not done."""
    from cryptography import x509

    from certkit.errors import CABroken
    from certkit.text import shown

    store = getattr(ca, "store", None)
    if store is None or ca.inventory is None:
        return
    try:
        held = x509.load_pem_x509_certificate(store.cert_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise CABroken(f"The CA directory {shown(store.path)} no longer holds this CA's certificate ("
                       f"{getattr(exc, 'strerror', None) or exc}); {done}. Load the CA again.") from None
    if held != ca.cert:
        other, this = (shown(c.subject.rfc4514_string()) for c in (held, ca.cert))
        raise CABroken(f"The CA directory {shown(store.path)} now holds another CA ({other}); this CA ({this}) was "
                       f"loaded from it before and records nothing there; {done}. Load the CA again "
                       "(CADirectory(path).load()).")
    _check_not_moved(ca, store, done)


def _check_not_moved(ca, store, done: str) -> None:
    """An object loaded before ``certkit inventory migrate`` still holds the old SQLite file, a backup of the
    day it moved: read as current, it would tell a certificate revoked since as valid."""
    from certkit.errors import CABroken
    from certkit.store_inventory import moved_to
    from certkit.text import shown

    if (url := moved_to(ca.inventory)) is not None:
        from certkit.db_url import shown_url

        raise CABroken(f"The inventory of {shown(store.path)} was moved to {shown_url(url)} (certkit inventory "
                       f"migrate) after this CA was loaded, and its old file {shown(ca.inventory.location)} is only "
                       f"a backup of that day; {done}. Load the CA again (CADirectory(path).open()).")


def decimal_hint(inventory: "Inventory", ref: str) -> str | None:
    """What ``ref`` is when it is a serial in decimal (Python's and Go's cert.serial_number, Java's
    getSerialNumber(), openssl x509 -text for a short one) of a certificate of this CA, read as hex: its hex."""
    from certkit.vocabulary import serial_hex

    digits = ref.strip()
    if not digits.isascii() or not digits.isdigit() or len(digits) > 60 or (serial := int(digits)) < 1:
        return None
    row = inventory.get(serial_hex(serial))
    if row is None:
        return None
    return (f"Read as a decimal number it is serial {row['serial']} ({shown(row['subject']) or 'an empty subject'}), "
            f"but certkit reads serials in hex, as 'certkit list' and 'openssl x509 -serial' show them: give "
            f"{row['serial']}.")
