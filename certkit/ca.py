"""The certificate authority: create a CA, check requests against it, sign certificates.

This is certkit's public library API (trustme's shape): a :class:`CA` issues
:class:`IssuedCert` objects; where they are written is a separate call. A CA
may be purely in memory (for tests and fixtures) or opened from a CA directory
(:mod:`certkit.store`), in which case every certificate it signs goes through
the issuing pipeline (:mod:`certkit.issuing`) and is recorded in that
directory's inventory. Name constraints live in :mod:`certkit.constraints`,
revocation and CRLs in :mod:`certkit.revocation`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from certkit import constraints as _constraints
from certkit import names as _names
from certkit.constants import DEFAULT_KEY_TYPE, LEAF_KINDS
from certkit.errors import CannotRenew, CertkitError, InvalidLifetime, InvalidName, UnknownCertificate
from certkit.keys import generate_key, key_type_of, private_key_pem
from certkit.profiles import PROFILES, Profile, build_certificate, leaf_subject, validity
from certkit.testhooks import pause_at
from certkit.text import shown
from certkit.vocabulary import common_name, leaf_kind, serial_hex

if TYPE_CHECKING:
    from cryptography import x509

    from certkit.csr import CSRRequest
    from certkit.inventory import Inventory
    from certkit.issuing import Request
    from certkit.store import CADirectory

__all__ = ["CA", "IssuedCert", "certificate_pem", "default_ca_name"]


def certificate_pem(cert: "x509.Certificate") -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.PEM)


def _ski(cert: "x509.Certificate") -> bytes | None:
    from cryptography import x509

    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def default_ca_name() -> str:
    """``certkit CA user@host``: tells apart the roots of different machines in a trust store."""
    import getpass  # here, not at the top: only init-ca needs them, and issuing is timed
    import socket

    try:
        user = getpass.getuser()
    except Exception:  # no login name (containers): the host alone still identifies it
        user = "user"
    return f"certkit CA {user}@{socket.gethostname()}"[:_names.MAX_COMMON_NAME]


@dataclass
class IssuedCert:
    """A certificate the CA issued, with its key (unless signed from a CSR) and chain."""

    kind: str  # "server" | "client" | "peer"
    cert: "x509.Certificate"
    private_key: object | None
    intermediates: list  # x509.Certificate, nearest issuer first; empty under a root
    root: "x509.Certificate"
    identities: list[_names.Identity]
    notes: list[str] = field(default_factory=list)
    # For a CSR: the extensions it requested that the certificate carries as asked, and what it
    # asked for but did not get (extensions, subject attributes, SAN entries), in words.
    granted: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @property
    def serial_hex(self) -> str:
        return serial_hex(self.cert.serial_number)

    @property
    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc

    @property
    def cert_pem(self) -> bytes:
        return certificate_pem(self.cert)

    @property
    def private_key_pem(self) -> bytes | None:
        return private_key_pem(self.private_key) if self.private_key is not None else None

    @property
    def chain_pem(self) -> bytes:
        return b"".join(certificate_pem(c) for c in self.intermediates)

    @property
    def fullchain_pem(self) -> bytes:
        return self.cert_pem + self.chain_pem

    @property
    def ca_pem(self) -> bytes:
        return certificate_pem(self.root)

    def bundle_files(self) -> dict[str, bytes]:
        """The files of an output folder, by name (certbot's names)."""
        cert_pem = self.cert_pem  # once: issue-batch writes thousands of these
        files = {"cert.pem": cert_pem}
        if self.private_key is not None:
            files["privkey.pem"] = self.private_key_pem
        files["fullchain.pem"] = cert_pem + self.chain_pem
        if self.intermediates:
            files["chain.pem"] = self.chain_pem
        files["ca.pem"] = self.ca_pem
        return files

    def write(self, folder: str | Path, *, force: bool = False, extra: dict[str, bytes] | None = None) -> list[Path]:
        """Write the bundle, plus ``extra`` files (bundle.p12), into ``folder`` atomically (see
        :func:`certkit.bundle.write_bundle`). For certificates of a CA directory, issue with
        :func:`certkit.issuing.deliver` and a FolderTarget instead: that records the folder."""
        from certkit.bundle import write_bundle

        return write_bundle(Path(folder), self.bundle_files() | (extra or {}), force=force)


class CA:
    """A certificate authority: its certificate, its key, and the certificates above it."""

    def __init__(self, cert: "x509.Certificate", key, parents: Sequence["x509.Certificate"] = (),
                 inventory: "Inventory | None" = None, store: "CADirectory | None" = None) -> None:
        self.cert = cert
        self.key = key  # None until unlock() for a CA opened from a directory
        # Issuers above this CA, nearest first; the last one is the root. Empty for a root.
        self.parents = list(parents)
        self.inventory = inventory
        self.store = store
        self.warnings: list[str] = []  # problems found on loading that do not stop issuing

    # --- creation -----------------------------------------------------------------
    @classmethod
    def create(cls, common_name: str | None = None, *, organization: str | None = None,
               organizational_unit: str | None = None, country: str | None = None,
               key_type: str = DEFAULT_KEY_TYPE, days: int | None = None, permitted_dns: Iterable[str] = (),
               permitted_ips: Iterable[str] = (), parent: "CA | None" = None,
               not_before: dt.datetime | None = None, key=None) -> "CA":
        """Create a root CA, or an intermediate signed by ``parent``.

        ``not_before`` backdates the CA (for demos and tests that need a leaf
        which has already expired: a leaf never starts before its issuer).
        ``key`` is the CA's own key when it exists already (a key in a PKCS#11
        token, :mod:`certkit.pkcs11`); else one of ``key_type`` is generated.
        """
        profile = PROFILES["intermediate-ca" if parent else "root-ca"]
        subject = _ca_subject(common_name, organization, organizational_unit, country)
        dns = [_names.parse_dns_name(d, allow_wildcard=False).value for d in permitted_dns]
        ips = [_constraints.parse_network(n) for n in permitted_ips]
        days = days if days is not None else profile.default_days
        _check_days(days)
        not_before, not_after = validity(days, start=not_before)
        if parent is not None:
            parent.check_can_sign_ca()
            _check_within_parent(parent, days, not_before, not_after)
            nc = _constraints.narrowed(parent.constraints(), parent.common_name, dns, ips)
        else:
            nc = _constraints.build(dns, ips)
        key = key if key is not None else generate_key(key_type)
        cert = build_certificate(
            profile, subject=subject, public_key=key.public_key(),
            issuer_name=parent.cert.subject if parent else subject,
            issuer_key=parent.signing_key() if parent else key, issuer_ski=parent.ski if parent else None,
            serial=_random_serial(), not_before=not_before, not_after=not_after, constraints=nc,
            path_length=0 if parent is not None else None,
        )
        ca = cls(cert, key, [parent.cert, *parent.parents] if parent else [])
        pause_at("signed")
        if parent is not None and parent.inventory is not None:
            parent.inventory.add(cert, "ca")
        return ca

    def check_can_sign_ca(self) -> None:
        from cryptography import x509

        bc = self.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if bc.path_length is not None and bc.path_length < 1:
            raise CertkitError(f"The CA '{shown(self.common_name)}' has path length {bc.path_length}: it may "
                               "issue only end-entity certificates, not another CA.")

    _check_can_sign_ca = check_can_sign_ca  # the name older callers used

    def unlock(self, passphrase=None) -> None:
        """Decrypt the key of a CA opened with :meth:`CADirectory.open`; ``passphrase`` may be a
        callable, asked only if the key is encrypted. Nothing happens if the key is loaded."""
        if self.key is not None:
            return
        if self.store is None:
            raise CertkitError(f"The CA '{shown(self.common_name)}' has no private key to sign with.")
        self.key, warnings = self.store.load_key(self.cert, passphrase)
        self.warnings += warnings

    def signing_key(self):
        if self.key is None:
            raise CertkitError(f"The CA '{shown(self.common_name)}' is locked: unlock() its key before signing.")
        return self.key

    # --- properties ---------------------------------------------------------------
    @property
    def root(self) -> "x509.Certificate":
        return self.parents[-1] if self.parents else self.cert

    @property
    def intermediates(self) -> list:
        """CA certificates a peer needs between a leaf of this CA and the root."""
        return [self.cert, *self.parents[:-1]] if self.parents else []

    @property
    def common_name(self) -> str:
        return common_name(self.cert.subject) or self.cert.subject.rfc4514_string()

    @property
    def cert_pem(self) -> bytes:
        return certificate_pem(self.cert)

    @property
    def root_pem(self) -> bytes:
        return certificate_pem(self.root)

    @property
    def ski(self) -> bytes | None:
        return _ski(self.cert)

    @property
    def directories(self) -> list[Path]:
        """The CA directory this CA was opened from (outputs may never land there)."""
        return [self.store.path] if self.store is not None else []

    def constraints(self) -> list:
        """The NameConstraints of this CA and every CA above it."""
        return _constraints.of_chain([self.cert, *self.parents])

    def require_inventory(self) -> "Inventory":
        if self.inventory is None:
            raise CertkitError(f"The CA '{shown(self.common_name)}' has no inventory (it was not loaded from a "
                               "CA directory), so it records no revocations.")
        return self.inventory

    # --- checking and signing requests ---------------------------------------------
    def check_permitted(self, identities: Sequence[_names.Identity]) -> None:
        """Refuse names that this CA's (or a parent's) name constraints exclude."""
        _constraints.check(self.constraints(), identities, self.common_name)

    def check_request(self, request: "Request") -> list[str]:
        """Everything about ``request`` that can be checked without the key: names against the
        name constraints, the lifetime against the profile and this CA's own. Returns notes."""
        if request.kind not in LEAF_KINDS:
            raise CertkitError(f"Unknown certificate kind '{shown(request.kind)}'; choose one of: "
                               f"{', '.join(LEAF_KINDS)}.")
        found = self.constraints()
        _constraints.check(found, request.identities, self.common_name)
        if request.kind == "client":
            cn = request.common_name if request.subject is None else common_name(request.subject)
            _constraints.check_client_common_name(found, cn, request.identities, self.common_name)
        notes: list[str] = []
        self.leaf_validity(PROFILES[request.kind], request.days, request.not_before, notes, request.default_days)
        return notes

    def sign(self, request: "Request") -> IssuedCert:
        """Sign ``request`` (checked by :meth:`check_request`) with a fresh serial. Nothing is recorded:
        :mod:`certkit.issuing` does that."""
        profile = PROFILES[request.kind]
        notes: list[str] = []
        not_before, not_after = self.leaf_validity(profile, request.days, request.not_before, notes,
                                                   request.default_days)
        key, public_key = request.key, request.public_key
        if public_key is None:
            key = key if key is not None else generate_key(request.key_type)
            public_key = key.public_key()
        if "ed25519" in (key_type_of(public_key), key_type_of(self.signing_key())):
            notes.append("Ed25519 works with OpenSSL-based peers, but browsers and WebPKI verifiers "
                         "(Chrome, cryptography) accept only RSA and ECDSA certificates")
        subject = request.subject if request.subject is not None else leaf_subject(self._leaf_cn(request))
        cert = build_certificate(
            profile, subject=subject, public_key=public_key, issuer_name=self.cert.subject,
            issuer_key=self.signing_key(), issuer_ski=self.ski, serial=_random_serial(),
            not_before=not_before, not_after=not_after, identities=request.identities,
        )
        issued = IssuedCert(profile.name, cert, key, self.intermediates, self.root, list(request.identities), notes)
        if request.csr is not None:
            from certkit.csr import compare_extensions

            granted, dropped = compare_extensions(request.csr, cert)
            issued.granted, issued.dropped = granted, dropped + list(request.dropped)
        return issued

    def _leaf_cn(self, request: "Request") -> str | None:
        """The subject CN: as asked, but never an IP address under DNS name constraints (OpenSSL would
        check it as a host name there and reject the certificate; the SAN carries the address)."""
        cn = request.common_name
        if cn is not None and request.kind != "client" and all(i.kind == "ip" for i in request.identities):
            from cryptography import x509

            if any(isinstance(c, x509.DNSName) for nc in self.constraints() for c in nc.permitted_subtrees or []):
                return None
        return cn

    # --- library conveniences: issue in memory, recorded if the CA has an inventory ---
    def _in_memory(self, request: "Request") -> IssuedCert:
        from certkit.issuing import deliver

        return deliver(self, request).issued

    def issue_server(self, names: Iterable[str], *, key_type: str = DEFAULT_KEY_TYPE, days: int | None = None,
                     key=None, not_before: dt.datetime | None = None) -> IssuedCert:
        """Issue a serverAuth-only certificate for DNS names and IP addresses, all in the SAN."""
        from certkit.issuing import server_request

        return self._in_memory(server_request(names, key_type=key_type, days=days, key=key, not_before=not_before))

    def issue_peer(self, names: Iterable[str], *, key_type: str = DEFAULT_KEY_TYPE, days: int | None = None,
                   key=None, not_before: dt.datetime | None = None) -> IssuedCert:
        """Issue a certificate with both serverAuth and clientAuth for cluster peers that cannot take two
        certificates; the names as for :meth:`issue_server`. Prefer a server and a client certificate
        wherever the system allows (docs/peers.md)."""
        from certkit.issuing import server_request

        return self._in_memory(server_request(names, kind="peer", key_type=key_type, days=days, key=key,
                                              not_before=not_before))

    def issue_client(self, name: str, *, emails: Iterable[str] = (), uris: Iterable[str] = (),
                     dns_names: Iterable[str] = (), key_type: str = DEFAULT_KEY_TYPE, days: int | None = None,
                     key=None, not_before: dt.datetime | None = None) -> IssuedCert:
        """Issue a clientAuth-only certificate whose subject CN is ``name``.

        Emails, URIs (SPIFFE IDs) and DNS names go in the SAN; a ``name`` that
        is an email address goes there too. With no such identity the SAN holds
        the subject DN as a directoryName, because verifiers such as
        cryptography's require a SAN and the DN is the identity servers map.
        """
        from certkit.issuing import client_request

        return self._in_memory(client_request(name, emails=emails, uris=uris, dns_names=dns_names,
                                              key_type=key_type, days=days, key=key, not_before=not_before))

    def sign_csr(self, request: "CSRRequest | bytes", kind: str, *, extra_names: Iterable[str] = (),
                 days: int | None = None) -> IssuedCert:
        """Issue a ``kind`` certificate for the key in a CSR: only its key and names are taken."""
        from certkit.issuing import csr_request

        return self._in_memory(csr_request(request, kind, extra_names=extra_names, days=days))

    def renew(self, old: "x509.Certificate", *, key=None, rekey: bool = False, key_type: str | None = None,
              days: int | None = None) -> IssuedCert:
        """Issue the successor of ``old``: same subject, names and purpose, recorded as renewing it."""
        from certkit.issuing import renewal_request

        return self._in_memory(renewal_request(old, self.kind_of(old), rekey=rekey, key_type=key_type, days=days,
                                               key=key))

    def kind_of(self, cert: "x509.Certificate") -> str:
        """The kind of a leaf this CA issued (from the inventory when there is one); refuses others."""
        serial = serial_hex(cert.serial_number)
        try:
            cert.verify_directly_issued_by(self.cert)
        except Exception:  # wrong issuer name (ValueError), bad signature, other key type
            raise UnknownCertificate(f"The certificate {serial} ({shown(cert.subject.rfc4514_string())}) was not "
                                     f"issued by the CA '{shown(self.common_name)}'.") from None
        kind = leaf_kind(cert)
        if self.inventory is not None:
            row = self.inventory.get(serial)
            if row is None:
                raise UnknownCertificate(f"The certificate {serial} is not in the inventory of CA "
                                         f"'{shown(self.common_name)}'.")
            kind = row["kind"]
        if kind not in LEAF_KINDS:
            raise CannotRenew(f"The certificate {serial} is a {kind} certificate; only server, client and peer "
                              "certificates are renewed (CAs with 'init-ca').")
        return kind

    # --- revocation -----------------------------------------------------------------
    def revoke(self, serial: str, reason: str = "unspecified", *, when: dt.datetime | None = None) -> dict:
        """Record ``serial`` as revoked for ``reason`` (see :data:`certkit.constants.REVOCATION_REASONS`)."""
        from certkit.revocation import parse_reason

        return self.require_inventory().revoke(serial, parse_reason(reason), when)

    def crl(self, *, days: int = 30) -> "x509.CertificateRevocationList":
        """Sign a CRL of every revoked certificate, with the next CRL number, valid ``days`` days."""
        from certkit.revocation import sign_crl

        return sign_crl(self, days=days)

    # --- validity -------------------------------------------------------------------
    def check_usable(self) -> None:
        """Refuse to sign with a CA (or under a parent) that has expired."""
        now = dt.datetime.now(dt.UTC)
        for cert in [self.cert, *self.parents]:
            if cert.not_valid_after_utc <= now:
                raise CertkitError(f"The CA '{shown(cert.subject.rfc4514_string())}' expired on "
                                   f"{cert.not_valid_after_utc:%Y-%m-%d}; nothing it signs would be valid. "
                                   "Create a new CA with 'certkit init-ca'.")

    def leaf_validity(self, profile: Profile, days: int | None, start, notes: list[str],
                      default_days: int | None = None) -> tuple[dt.datetime, dt.datetime]:
        """notBefore/notAfter of a leaf: ``days`` (checked against the profile and this CA's expiry),
        else the profile's default capped at this CA's expiry (with a note)."""
        self.check_usable()
        latest = self.cert.not_valid_after_utc
        if days is None:
            not_before, not_after = validity(default_days or profile.default_days, start=start)
            if not_after > latest:
                not_after = latest
                notes.append(f"lifetime capped at the CA's expiry ({latest:%Y-%m-%d %H:%M:%S} UTC)")
        else:
            _check_days(days)
            if profile.max_days is not None and days > profile.max_days:
                raise InvalidLifetime(f"A {profile.name} certificate may live at most {profile.max_days} days "
                                      f"(Apple's limit for locally trusted roots); {days} were asked for.")
            not_before, not_after = validity(days, start=start)
            if not_after > latest:
                raise InvalidLifetime(_past_issuer_message(days, latest, not_before))
        ca_start = self.cert.not_valid_before_utc
        if not_before < ca_start:
            not_before = ca_start  # a leaf never claims validity before its issuer's
        if not_after <= not_before:  # check_usable() has ruled out an expired CA
            raise InvalidLifetime(
                f"The requested validity ends on {not_after:%Y-%m-%d %H:%M:%S} UTC, before the CA "
                f"'{shown(self.common_name)}' became valid ({ca_start:%Y-%m-%d %H:%M:%S} UTC); a certificate "
                "cannot be valid before its issuer.")
        return not_before, not_after

    _leaf_validity = leaf_validity  # the name older callers used


def _ca_subject(common_name_: str | None, organization, organizational_unit, country) -> "x509.Name":
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cn = _names.parse_common_name(common_name_ or default_ca_name())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    for oid, value in ((NameOID.ORGANIZATION_NAME, organization), (NameOID.ORGANIZATIONAL_UNIT_NAME,
                                                                   organizational_unit)):
        if value:
            attrs.append(x509.NameAttribute(oid, _names.parse_common_name(value)))
    if country:
        if len(country) != 2 or not country.isascii() or not country.isalpha():
            raise InvalidName(f"'{shown(country)}' is not a country code: use two letters, as in DE or US.")
        attrs.append(x509.NameAttribute(NameOID.COUNTRY_NAME, country.upper()))
    return x509.Name(attrs)


def _check_within_parent(parent: CA, days: int, not_before: dt.datetime, not_after: dt.datetime) -> None:
    latest = parent.cert.not_valid_after_utc
    if latest <= dt.datetime.now(dt.UTC):
        raise InvalidLifetime(f"The parent CA '{shown(parent.common_name)}' expired on "
                              f"{latest:%Y-%m-%d %H:%M:%S} UTC; it can sign no intermediate. Create a new root first.")
    if not_after > latest:
        raise InvalidLifetime(_past_issuer_message(days, latest, not_before, what="intermediate CA",
                                                   issuer=f"parent CA '{shown(parent.common_name)}'"))


def _check_days(days: int) -> None:
    from certkit.constants import MAX_DAYS

    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise InvalidLifetime(f"A lifetime of {days} days is not possible; give 1 to {MAX_DAYS} days.")


def _past_issuer_message(days: int, latest: dt.datetime, not_before: dt.datetime, *,
                         what: str = "certificate", issuer: str = "the CA") -> str:
    most = (latest - not_before).days
    return (f"A lifetime of {days} days would end after {issuer} expires on {latest:%Y-%m-%d %H:%M:%S} UTC; "
            f"a{'n' if what[0] in 'aeiou' else ''} {what} issued now can live at most {max(most, 0)} days "
            f"(until {latest:%Y-%m-%d}).")


def _random_serial() -> int:
    """A positive serial of 159 random bits: 20 octets in DER at most, >= 64 bits of entropy."""
    import os

    serial = int.from_bytes(os.urandom(20), "big") >> 1
    return serial or 1
