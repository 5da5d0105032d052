"""Revocation: RFC 5280 reasons and the CRL a CA signs of every certificate it revoked."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from certkit.constants import MAX_CRL_DAYS, MIN_CRL_DAYS, REVOCATION_REASONS
from certkit.errors import CertkitError
from certkit.text import shown

if TYPE_CHECKING:
    from cryptography import x509

    from certkit.ca import CA



def parse_reason(text: str) -> str:
    """The RFC 5280 reason named by ``text`` (any case; ``key-compromise`` works too)."""
    wanted = text.replace("-", "").replace("_", "").lower()
    for reason in REVOCATION_REASONS:
        if reason.lower() == wanted:
            return reason
    raise CertkitError(f"'{shown(text)}' is not a revocation reason; choose one of: {', '.join(REVOCATION_REASONS)}.")


def sign_crl(ca: "CA", *, days: int = 30) -> "x509.CertificateRevocationList":
    """A CRL of every certificate ``ca`` revoked, with the next CRL number, valid ``days`` days."""
    from cryptography import x509

    from certkit.keys import sign_builder
    from certkit.profiles import BACKDATE

    if not isinstance(days, int) or not MIN_CRL_DAYS <= days <= MAX_CRL_DAYS:
        raise CertkitError(f"A CRL valid for {days} days is not possible; give {MIN_CRL_DAYS} to {MAX_CRL_DAYS}.")
    inventory = ca.require_inventory()
    key = ca.signing_key()
    # The number and the revocations in one transaction: a later number never lists fewer, on any
    # host; a damaged revoked row refuses the CRL before a number is taken.
    number, revoked = inventory.crl_contents()
    # thisUpdate is backdated like notBefore: a verifier whose clock runs a little slow
    # would otherwise find a "not yet valid" CRL and refuse every certificate.
    this_update = (dt.datetime.now(dt.UTC) - BACKDATE).replace(microsecond=0)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(this_update)
        .next_update(this_update + dt.timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    ski = ca.ski
    if ski is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier(ski, None, None), critical=False)
    for serial, revoked_at, reason in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(int(serial, 16)).revocation_date(revoked_at)
        if reason != "unspecified":  # RFC 5280 5.3.1: omit the code rather than say unspecified
            entry = entry.add_extension(x509.CRLReason(x509.ReasonFlags(reason)), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return sign_builder(key, builder)  # a key file, or a PKCS#11 token (certkit.pkcs11)
