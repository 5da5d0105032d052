"""Certificate profiles as data, and the one function that turns a profile into extensions.

A profile says what a certificate is for; :func:`build_certificate` is the only
code that decides extensions, so every certificate certkit signs (root,
intermediate, server, client; fresh key or CSR) gets them from one place:

- CA: basicConstraints critical CA:TRUE with a path length, keyUsage critical
  keyCertSign + cRLSign, SKI, AKI, optional critical nameConstraints.
- Leaf: basicConstraints critical CA:FALSE, keyUsage critical digitalSignature
  (+ keyEncipherment for RSA server keys, which TLS 1.2 RSA key transport
  uses), exactly one extendedKeyUsage (both for the one exception, a
  ``peer``), SKI, AKI = issuer's SKI, SAN.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from certkit.names import MAX_ATTRIBUTE_BYTES, Identity

if TYPE_CHECKING:
    from cryptography import x509

# Clocks on the machines that check a certificate may run slow; backdating
# notBefore by five minutes keeps a fresh certificate from being "not yet
# valid" on them without meaningfully lengthening its life.
BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Profile:
    name: str
    is_ca: bool
    ekus: tuple[str, ...]  # ("serverAuth",), ("clientAuth",), both for a peer; () for CAs
    default_days: int
    max_days: int | None
    path_length: int | None = None


PROFILES: dict[str, Profile] = {
    # Ten years: a local root is installed by hand, so replacing it is costly.
    "root-ca": Profile("root-ca", True, (), 3650, None, path_length=1),
    # Five years, and pathlen 0: an intermediate issues leaves only.
    "intermediate-ca": Profile("intermediate-ca", True, (), 1825, None, path_length=0),
    # 200 days: the CA/Browser Forum maximum since 2026-03-15 (counted inclusively);
    # 825 days is Apple's hard limit for certificates under user-installed roots.
    "server": Profile("server", False, ("serverAuth",), 200, 825),
    # One year: client keys live on laptops and devices; renew yearly. No cap but
    # the issuer's own expiry, since device fleets sometimes need longer.
    "client": Profile("client", False, ("clientAuth",), 365, None),
    # Both usages, for cluster members that cannot take a separate client certificate
    # (etcd 3.4 peers, for one). A server certificate in every other respect: its names,
    # its 200-day default and 825-day cap.
    "peer": Profile("peer", False, ("serverAuth", "clientAuth"), 200, 825),
}


def validity(days: int, *, start: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """notBefore/notAfter for a lifetime of ``days``, counted inclusively as RFC 5280 does.

    notBefore is backdated by :data:`BACKDATE`; the validity period (notAfter -
    notBefore + 1 second) is exactly ``days`` days.
    """
    from certkit.errors import InvalidLifetime

    start = dt.datetime.now(dt.UTC) - BACKDATE if start is None else aware(start)
    start = start.replace(microsecond=0)
    if start < _FIRST_DATE:
        raise InvalidLifetime(f"notBefore {start.isoformat(' ')} cannot be written in a certificate: X.509 dates "
                              "run from 1950 on (RFC 5280 4.1.2.5).")
    try:
        end = start + dt.timedelta(days=days) - dt.timedelta(seconds=1)
    except OverflowError:
        end = None
    if end is None or end > _LAST_DATE:
        raise InvalidLifetime(f"A validity of {days} days from {start.date()} ends after 9999-12-31, the last date "
                              "a certificate can hold (RFC 5280 4.1.2.5).")
    return start, end


_FIRST_DATE = dt.datetime(1950, 1, 1, tzinfo=dt.UTC)
_LAST_DATE = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)


def aware(moment, what: str = "not_before") -> dt.datetime:
    """``moment`` if it is a timezone-aware datetime. Anything but a datetime is a TypeError; a naive
    one is refused rather than guessed at (local time or UTC?), as comparing it would fail later."""
    if not isinstance(moment, dt.datetime):
        from certkit.vocabulary import wrong_type

        raise wrong_type(what, "a datetime", moment)
    if moment.utcoffset() is None:
        from certkit.errors import InvalidLifetime

        raise InvalidLifetime(f"{what} must be timezone-aware (datetime.now(datetime.UTC)), not the naive "
                              f"{moment.isoformat(' ')}: it could be local time or UTC.")
    return moment


def general_name(identity: Identity) -> "x509.GeneralName":
    from cryptography import x509

    if identity.kind == "dns":
        return x509.DNSName(identity.value)
    if identity.kind == "ip":
        return x509.IPAddress(ipaddress.ip_address(identity.value))
    if identity.kind == "email":
        return x509.RFC822Name(identity.value)
    return x509.UniformResourceIdentifier(identity.value)


def build_certificate(
    profile: Profile,
    *,
    subject: "x509.Name",
    public_key,
    issuer_name: "x509.Name",
    issuer_key,
    issuer_ski: bytes | None,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
    identities: Sequence[Identity] = (),
    constraints: "x509.NameConstraints | None" = None,
    path_length: int | None = None,
) -> "x509.Certificate":
    """Sign one certificate of ``profile``; every extension is decided here.

    The builder is made in one call with its extensions listed, the profile's constant ones made
    once (a batch signs thousands of certificates with the same three or four): the chained
    ``add_extension`` calls checked and copied the list again for each extension, a seventh of a
    batch certificate's time. tests/test_profiles_builder.py proves the two ways give the same
    bytes."""
    from cryptography import x509

    from certkit.keys import sign_builder

    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    extensions = [x509.Extension(ski.oid, False, ski),
                  _authority_key_id(issuer_ski if issuer_ski is not None else ski.digest)]
    if profile.is_ca:
        extensions += [_extension(x509.BasicConstraints(ca=True, path_length=path_length if path_length is not None
                                                        else profile.path_length), critical=True),
                       _key_usage(cert_sign=True)]
        if constraints is not None:
            # RFC 5280 4.2.1.10: conforming CAs MUST mark this extension critical.
            extensions.append(_extension(constraints, critical=True))
    else:
        from cryptography.hazmat.primitives.asymmetric import rsa

        is_rsa = isinstance(public_key, rsa.RSAPublicKey)
        names = [general_name(i) for i in identities] or [x509.DirectoryName(subject)]
        extensions += [_leaf_basic_constraints(),
                       _key_usage(key_encipherment=is_rsa and "serverAuth" in profile.ekus),
                       _extended_key_usage(profile.ekus),
                       # RFC 5280 4.2.1.6: with an empty subject the SAN must be critical.
                       _extension(x509.SubjectAlternativeName(names), critical=len(subject) == 0)]
    # The builder keeps naive UTC times, as its not_valid_before()/not_valid_after() leave them.
    builder = x509.CertificateBuilder(issuer_name=issuer_name, subject_name=subject, public_key=public_key,
                                      serial_number=serial, not_valid_before=_naive_utc(not_before),
                                      not_valid_after=_naive_utc(not_after), extensions=extensions)
    return sign_builder(issuer_key, builder)


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    if type(moment) is dt.datetime and moment.tzinfo is dt.UTC:  # as leaf_validity gives them: no conversion
        return moment.replace(tzinfo=None)
    return aware(moment).astimezone(dt.UTC).replace(tzinfo=None)


def _extension(value, *, critical: bool):
    from cryptography import x509

    return x509.Extension(value.oid, critical, value)


@cache
def _authority_key_id(key_id: bytes):
    from cryptography import x509

    return _extension(x509.AuthorityKeyIdentifier(key_id, None, None), critical=False)


@cache
def _leaf_basic_constraints():
    from cryptography import x509

    return _extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)


@cache
def _extended_key_usage(ekus: tuple[str, ...]):
    """The one extendedKeyUsage of a profile (made once: thousands of batch certificates share it)."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    oids = {"serverAuth": ExtendedKeyUsageOID.SERVER_AUTH, "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH}
    return _extension(x509.ExtendedKeyUsage([oids[name] for name in ekus]), critical=False)


@cache
def _key_usage(*, cert_sign: bool = False, key_encipherment: bool = False):
    from cryptography import x509

    return _extension(x509.KeyUsage(
        digital_signature=not cert_sign, content_commitment=False,
        key_encipherment=key_encipherment, data_encipherment=False, key_agreement=False,
        key_cert_sign=cert_sign, crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    ), critical=True)


def leaf_subject(common_name: str | None) -> "x509.Name":
    """A subject holding just the common name, or an empty subject if it cannot hold it (a server's
    name of more than 64 bytes, which the SAN carries alone)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    if common_name is None or len(common_name.encode("utf-8")) > MAX_ATTRIBUTE_BYTES:
        return x509.Name([])
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
