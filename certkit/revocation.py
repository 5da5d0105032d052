"""Revocation: RFC 5280 reasons, and the CRL a CA signs of every certificate it revoked (written to a file, never
over a newer CRL of its own, by :mod:`certkit.crl_file`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

from certkit.constants import MAX_CRL_DAYS, MIN_CRL_DAYS, REVOCATION_REASONS
from certkit.errors import InvalidArgument, InvalidLifetime, WrongType
from certkit.text import shown

if TYPE_CHECKING:
    from cryptography import x509

    from certkit.ca import CA


def parse_reason(text: str) -> str:
    """The RFC 5280 reason named by ``text`` (any case; ``key-compromise`` works too)."""
    if not isinstance(text, str):
        raise WrongType(f"A revocation reason is a name such as keyCompromise, not {type(text).__name__}; "
                           f"choose one of: {', '.join(REVOCATION_REASONS)}.")
    wanted = text.replace("-", "").replace("_", "").lower()
    for reason in REVOCATION_REASONS:
        if reason.lower() == wanted:
            return reason
    raise InvalidArgument(f"'{shown(text)}' is not a revocation reason; choose one of: "
                          f"{', '.join(REVOCATION_REASONS)}.")


def revocation_time(when: dt.datetime | None, *, not_before: dt.datetime | None = None) -> dt.datetime:
    """When a revocation is recorded: now, or ``when`` if it is an aware time not after now (a CRL
    that lists a certificate as revoked from a date still to come would state what has not happened)
    nor before the certificate's ``not_before`` (revoked before it existed: as impossible)."""
    now = dt.datetime.now(dt.UTC)
    if when is None:
        return now
    from certkit.profiles import aware

    if aware(when, "when") > now:
        raise InvalidArgument(f"The revocation time {when.isoformat()} is in the future; a certificate is revoked "
                              "when the revocation is recorded, or earlier: give a time up to now.")
    if not_before is not None and when < not_before:
        raise InvalidArgument(f"The revocation time {when.isoformat()} is before the certificate's notBefore "
                              f"({not_before.isoformat()}): it cannot be revoked before it existed; give a time "
                              "from then up to now.")
    return when


def stored_reason(serial: str, reason: str | None, location: str) -> str:
    """The reason a revoked row of the inventory at ``location`` records, refused (naming the serial)
    when it is no RFC 5280 reason: no CRL could state it."""
    if reason is None:
        return "unspecified"
    from certkit.constants import RECORDED_REASONS

    if reason not in RECORDED_REASONS:
        from certkit.errors import InventoryError

        raise InventoryError(
            f"The inventory {shown(location)} records certificate {serial} as revoked for "
            f"'{shown(str(reason))}', which is not a revocation reason, so no CRL can list it; set its "
            f"revocation_reason to one of: {', '.join(REVOCATION_REASONS)} (or restore the inventory from a backup).")
    return reason


def sign_crl(ca: "CA", *, days: int = 30, checked: bool = False, above: int = 0,
             carried: Sequence[tuple[str, dt.datetime, str]] = ()) -> "x509.CertificateRevocationList":
    """A CRL of every certificate ``ca`` revoked, with the next CRL number (higher than ``above``:
    :func:`certkit.crl_file.check_published`), valid ``days`` days (at most until ``ca`` expires: :func:`crl_deadline`).
    ``checked``: the caller ran :func:`check_can_sign_crl` already (``certkit crl`` does, before it
    asks for the passphrase). ``carried``: revocations of certificates the inventory does not hold, listed
    by the CRL it replaces (:func:`certkit.crl_file.check_published`)."""
    from cryptography import x509

    from certkit.keys import sign_builder
    from certkit.profiles import BACKDATE

    if not isinstance(days, int) or isinstance(days, bool):
        from certkit.vocabulary import wrong_type

        raise wrong_type("days", f"an int, {MIN_CRL_DAYS} to {MAX_CRL_DAYS}", days)
    if not MIN_CRL_DAYS <= days <= MAX_CRL_DAYS:
        raise InvalidLifetime(f"A CRL valid for {days} days is not possible; give {MIN_CRL_DAYS} to {MAX_CRL_DAYS}.")
    inventory = ca.require_inventory()
    if not checked:
        check_can_sign_crl(ca)
    key = ca.signing_key()
    # The number and the revocations in one transaction: a later number never lists fewer, on any
    # host; a damaged revoked row refuses the CRL before a number is taken.
    number, revoked = inventory.crl_contents(above)
    # thisUpdate is backdated like notBefore: a verifier whose clock runs a little slow
    # would otherwise find a "not yet valid" CRL and refuse every certificate.
    this_update = (dt.datetime.now(dt.UTC) - BACKDATE).replace(microsecond=0)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(this_update)
        .next_update(min(this_update + dt.timedelta(days=days), crl_deadline(ca)))
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    ski = ca.ski
    if ski is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier(ski, None, None), critical=False)
    listed = {serial for serial, _, _ in revoked}
    for serial, revoked_at, reason in [*revoked, *(c for c in carried if c[0] not in listed)]:
        # A revocation of the last five minutes is dated thisUpdate: a CRL does not list what happened
        # after it was issued (a revocation dated a little early only covers more).
        entry = x509.RevokedCertificateBuilder().serial_number(int(serial, 16)).revocation_date(
            min(revoked_at, this_update))
        reason = stored_reason(serial, reason, inventory.location)
        if reason != "unspecified":  # RFC 5280 5.3.1: omit the code rather than say unspecified
            entry = entry.add_extension(x509.CRLReason(x509.ReasonFlags(reason)), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    try:
        return sign_builder(key, builder)  # a key file, or a PKCS#11 token (certkit.pkcs11)
    except BaseException:  # not signed (a token that refused, went away, was interrupted): nothing used it
        _give_back_number(inventory, number)
        raise


def crl_deadline(ca: "CA") -> dt.datetime:
    """The latest nextUpdate a CRL of ``ca`` can have: when ``ca`` (or a CA above it) expires. A CRL
    promising an update after that would be signed by a certificate nobody accepts any more; ``sign_crl``
    caps nextUpdate there rather than refusing, so that revocations can be published until the end."""
    return min(c.not_valid_after_utc for c in (ca.cert, *ca.parents))


# Rows whose signature ``check_can_sign_crl`` verifies besides the revoked ones: the latest issued. A
# foreign inventory is foreign throughout, so these find one even when its CA has this CA's name.
RECENT_ROWS_VERIFIED = 16


def check_can_revoke(ca_cert: "x509.Certificate", serial: str, cert: "x509.Certificate",
                     location: str) -> None:
    """Refuse to record the revocation of ``serial`` when this CA's ca.pem did not issue it (ca.pem
    and ca-key.pem of another CA beside this inventory): the next CRL, signed by that other CA, would
    list the serial as its own. The signature is verified, so another CA of the same name is told."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from certkit.errors import CABroken
    from certkit.inventory.audit import Issuer

    problem = Issuer(ca_cert).problem(cert, cert.public_bytes(Encoding.DER), verify=True)
    if problem:
        raise CABroken(f"The inventory {shown(location)} records serial {serial}, but {problem}: this CA "
                       "directory's ca.pem and inventory do not belong together, and nothing was revoked. "
                       "Run 'certkit check' to see every such row.")


def check_can_sign_crl(ca: "CA") -> None:
    """Refuse a CRL from an expired CA, or of an inventory holding certificates ``ca`` did not issue
    (ca.pem and ca-key.pem of another CA copied in: the CRL would list that CA's serials as this one's).

    Every row's issuer name is compared (cheap: about 5 us a row); the signature, a hundred us a row,
    is verified for the rows the CRL lists and the latest issued ones only: ``certkit check`` verifies
    them all, ``crl`` stays fast for an inventory of 100,000 certificates."""
    from cryptography import x509

    from certkit.errors import CABroken, parse_errors
    from certkit.inventory.audit import Issuer

    ca.check_usable()
    inventory = ca.require_inventory()
    issuer = Issuer(ca.cert)
    with inventory.transaction() as tx:
        recent = {serial for (serial,) in tx.execute(
            "SELECT serial FROM certificates ORDER BY issued_at DESC LIMIT ?", (RECENT_ROWS_VERIFIED,))}
        foreign, example = 0, None
        for serial, status, der in tx.execute("SELECT serial, status, der FROM certificates"):
            try:
                cert = x509.load_der_x509_certificate(bytes(der))
                problem = issuer.problem(cert, bytes(der), verify=status == "revoked" or serial in recent)
            except (*parse_errors(), TypeError):
                continue  # a damaged row: the CRL's own reading of the revoked rows refuses those
            if problem:
                foreign += 1
                example = example or f"serial {serial}: {problem}"
    if foreign:
        raise CABroken(f"The inventory {shown(inventory.location)} holds {foreign} certificate"
                       f"{'s' if foreign > 1 else ''} that {shown(ca.common_name)} did not issue ({example}); a CRL "
                       "signed now would list another CA's serials. Run 'certkit check' to see every such row.")


def _give_back_number(inventory, number: int) -> None:
    """Make ``number`` the next CRL number again, if it is still the last one taken (a CRL signed with it
    was written nowhere); a later one taken meanwhile leaves a gap, which numbers may have."""
    try:
        with inventory.transaction(write=True) as tx:
            tx.execute("UPDATE meta SET value = ? WHERE key = 'crl_number' AND value = ?",
                       (str(number - 1), str(number)))
    except Exception:  # the inventory cannot be written either: the number stays taken (a gap)
        pass
