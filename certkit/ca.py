"""The certificate authority: create a CA, issue server and client certificates.

This is certkit's public library API (trustme's shape): a :class:`CA` issues
:class:`IssuedCert` objects; where they are written is a separate call. A CA
may be purely in memory (for tests and fixtures) or loaded from a CA directory
(:mod:`certkit.store`), in which case every certificate it signs is recorded in
that directory's inventory before it is handed out.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from certkit import names as _names
from certkit.constants import LEAF_KINDS
from certkit.errors import (
    AlreadyRevoked,
    CannotRenew,
    CertkitError,
    InvalidLifetime,
    InvalidName,
    NameNotPermitted,
    UnknownCertificate,
)
from certkit.keys import DEFAULT_KEY_TYPE, generate_key, key_type_of, private_key_pem, public_key_der
from certkit.names import Identity
from certkit.profiles import BACKDATE, PROFILES, Profile, build_certificate, leaf_subject, validity
from certkit.testhooks import pause_at

if TYPE_CHECKING:
    from cryptography import x509

    from certkit.csr import CSRRequest
    from certkit.inventory import Inventory
    from certkit.store import CADirectory


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
    identities: list[Identity]
    notes: list[str] = field(default_factory=list)
    # For a CSR: the extensions it requested that the certificate carries as asked, and what it
    # asked for but did not get (extensions, subject attributes, SAN entries), in words.
    granted: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    # The issuing CA's inventory, so write() can record where the bundle went (renew by serial).
    inventory: "Inventory | None" = field(default=None, repr=False)

    @property
    def serial_hex(self) -> str:
        return format(self.cert.serial_number, "X")

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
        """Write the bundle, plus ``extra`` files (bundle.p12), into ``folder`` atomically;
        see :func:`certkit.bundle.write_bundle`. The folder is recorded in the inventory."""
        from certkit.bundle import write_bundle

        written = write_bundle(Path(folder), self.bundle_files() | (extra or {}), force=force)
        if self.inventory is not None:
            self.inventory.set_folder(self.serial_hex, Path(folder).absolute())
        return written


class CA:
    """A certificate authority: its certificate, its key, and the certificates above it."""

    def __init__(self, cert: "x509.Certificate", key, parents: Sequence["x509.Certificate"] = (),
                 inventory: "Inventory | None" = None, store: "CADirectory | None" = None) -> None:
        self.cert = cert
        self.key = key  # None until unlock() for a CA opened from a directory
        self.store = store
        # Issuers above this CA, nearest first; the last one is the root. Empty for a root.
        self.parents = list(parents)
        self.inventory = inventory
        self.warnings: list[str] = []  # problems found on loading that do not stop issuing

    # --- creation -----------------------------------------------------------------
    @classmethod
    def create(
        cls,
        common_name: str | None = None,
        *,
        organization: str | None = None,
        organizational_unit: str | None = None,
        country: str | None = None,
        key_type: str = DEFAULT_KEY_TYPE,
        days: int | None = None,
        permitted_dns: Iterable[str] = (),
        permitted_ips: Iterable[str] = (),
        parent: "CA | None" = None,
        not_before: dt.datetime | None = None,
    ) -> "CA":
        """Create a root CA, or an intermediate signed by ``parent``.

        ``not_before`` backdates the CA (for demos and tests that need a leaf
        which has already expired: a leaf never starts before its issuer).
        """
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        from certkit.profiles import name_constraints

        profile = PROFILES["intermediate-ca" if parent else "root-ca"]
        cn = _names.parse_common_name(common_name or default_ca_name())
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        for oid, value in ((NameOID.ORGANIZATION_NAME, organization),
                           (NameOID.ORGANIZATIONAL_UNIT_NAME, organizational_unit)):
            if value:
                attrs.append(x509.NameAttribute(oid, _names.parse_common_name(value)))
        if country:
            if len(country) != 2 or not country.isalpha():
                raise InvalidName(f"'{country}' is not a country code: use two letters, as in DE or US.")
            attrs.append(x509.NameAttribute(NameOID.COUNTRY_NAME, country.upper()))
        subject = x509.Name(attrs)
        dns = [_names.parse_dns_name(d, allow_wildcard=False).value for d in permitted_dns]
        ips = [_parse_network(n) for n in permitted_ips]
        key = generate_key(key_type)
        days = days if days is not None else profile.default_days
        _check_days(days)
        not_before, not_after = validity(days, start=not_before)
        path_length = None
        if parent is not None:
            parent._check_can_sign_ca()
            latest = parent.cert.not_valid_after_utc
            if latest <= dt.datetime.now(dt.UTC):
                raise InvalidLifetime(
                    f"The parent CA '{parent.common_name}' expired on {latest:%Y-%m-%d %H:%M:%S} UTC; "
                    "it can sign no intermediate. Create a new root first."
                )
            if not_after > latest:
                raise InvalidLifetime(_past_issuer_message(days, latest, not_before, what="intermediate CA",
                                                           issuer=f"parent CA '{parent.common_name}'"))
            constraints = _narrowed_constraints(parent, dns, ips)
            path_length = 0
        else:
            constraints = name_constraints(dns, [str(n) for n in ips])
        issuer_key = parent.key if parent else key
        cert = build_certificate(
            profile,
            subject=subject,
            public_key=key.public_key(),
            issuer_name=parent.cert.subject if parent else subject,
            issuer_key=issuer_key,
            issuer_ski=_ski(parent.cert) if parent else None,
            serial=_random_serial(),
            not_before=not_before,
            not_after=not_after,
            constraints=constraints,
            path_length=path_length,
        )
        parents = [parent.cert, *parent.parents] if parent else []
        ca = cls(cert, key, parents)
        pause_at("signed")
        if parent is not None and parent.inventory is not None:
            parent.inventory.add(cert, "ca")
        return ca

    def _check_can_sign_ca(self) -> None:
        from cryptography import x509

        bc = self.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if bc.path_length is not None and bc.path_length < 1:
            raise CertkitError(
                f"The CA '{self.common_name}' has path length {bc.path_length}: it may "
                "issue only end-entity certificates, not another CA."
            )

    def unlock(self, passphrase=None) -> None:
        """Decrypt the key of a CA opened with :meth:`CADirectory.open`; ``passphrase`` may be a
        callable, asked only if the key is encrypted. Nothing happens if the key is loaded."""
        if self.key is not None:
            return
        if self.store is None:
            raise CertkitError(f"The CA '{self.common_name}' has no private key to sign with.")
        self.key, warnings = self.store.load_key(self.cert, passphrase)
        self.warnings += warnings

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
        from cryptography.x509.oid import NameOID

        attrs = self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(attrs[0].value) if attrs else self.cert.subject.rfc4514_string()

    @property
    def cert_pem(self) -> bytes:
        return certificate_pem(self.cert)

    @property
    def root_pem(self) -> bytes:
        return certificate_pem(self.root)

    # --- issuing ------------------------------------------------------------------
    def issue_server(self, names: Iterable[str], *, key_type: str = DEFAULT_KEY_TYPE,
                     days: int | None = None, key=None,
                     not_before: dt.datetime | None = None) -> IssuedCert:
        """Issue a serverAuth-only certificate for DNS names and IP addresses.

        The first name is the subject CN and every name is in the SAN.
        """
        identities = _names.parse_hosts(names)
        self.check_permitted(identities)
        first = identities[0].value
        return self._issue(PROFILES["server"], leaf_subject(first), identities,
                           key_type=key_type, days=days, key=key, start=not_before)

    def issue_peer(self, names: Iterable[str], *, key_type: str = DEFAULT_KEY_TYPE,
                   days: int | None = None, key=None, not_before: dt.datetime | None = None) -> IssuedCert:
        """Issue a certificate with both serverAuth and clientAuth for cluster peers that cannot
        take two certificates; the names as for :meth:`issue_server`. Prefer a server and a client
        certificate wherever the system allows (docs/peers.md)."""
        identities = _names.parse_hosts(names)
        self.check_permitted(identities)
        return self._issue(PROFILES["peer"], leaf_subject(identities[0].value), identities,
                           key_type=key_type, days=days, key=key, start=not_before)

    def issue_client(self, name: str, *, emails: Iterable[str] = (), uris: Iterable[str] = (),
                     dns_names: Iterable[str] = (), key_type: str = DEFAULT_KEY_TYPE,
                     days: int | None = None, key=None,
                     not_before: dt.datetime | None = None) -> IssuedCert:
        """Issue a clientAuth-only certificate whose subject CN is ``name``.

        Emails, URIs (SPIFFE IDs) and DNS names go in the SAN; a ``name`` that
        is an email address goes there too. With no such identity the SAN holds
        the subject DN as a directoryName, because verifiers such as
        cryptography's require a SAN and the DN is the identity servers map.
        """
        cn = _names.parse_common_name(name)
        identities = _names.client_identities(cn, emails, uris, dns_names)
        self.check_permitted(identities)
        return self._issue(PROFILES["client"], leaf_subject(cn), identities,
                           key_type=key_type, days=days, key=key, start=not_before)

    def _issue(self, profile: Profile, subject, identities: list[Identity], *, key_type: str,
               days: int | None, key, start: dt.datetime | None, public_key=None,
               renewed_from: str | None = None, default_days: int | None = None) -> IssuedCert:
        notes: list[str] = []
        not_before, not_after = self._leaf_validity(profile, days, start, notes, default_days)
        if public_key is None:
            key = key if key is not None else generate_key(key_type)
            public_key = key.public_key()
        if "ed25519" in (key_type_of(public_key), key_type_of(self.key)):
            notes.append("Ed25519 works with OpenSSL-based peers, but browsers and WebPKI verifiers "
                         "(Chrome, cryptography) accept only RSA and ECDSA certificates")
        for _attempt in range(5):
            cert = build_certificate(
                profile, subject=subject, public_key=public_key, issuer_name=self.cert.subject,
                issuer_key=self.key, issuer_ski=_ski(self.cert), serial=_random_serial(),
                not_before=not_before, not_after=not_after, identities=identities,
            )
            pause_at("signed")
            if self.inventory is None or self.inventory.add(cert, profile.name,
                                                            renewed_from=renewed_from):
                break
        else:  # five 159-bit collisions in a row means the random source is broken
            raise CertkitError("Could not find an unused serial number; check the system's random source.")
        pause_at("recorded")
        return IssuedCert(profile.name, cert, key, self.intermediates, self.root, identities, notes,
                          inventory=self.inventory)

    def check_usable(self) -> None:
        """Refuse to sign with a CA (or under a parent) that has expired."""
        now = dt.datetime.now(dt.UTC)
        for cert in [self.cert, *self.parents]:
            if cert.not_valid_after_utc <= now:
                name = cert.subject.rfc4514_string()
                raise CertkitError(
                    f"The CA '{name}' expired on {cert.not_valid_after_utc:%Y-%m-%d}; nothing it signs "
                    "would be valid. Create a new CA with 'certkit init-ca'."
                )

    def _leaf_validity(self, profile: Profile, days: int | None, start, notes: list[str],
                       default_days: int | None = None):
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
                raise InvalidLifetime(
                    f"A {profile.name} certificate may live at most {profile.max_days} days "
                    f"(Apple's limit for locally trusted roots); {days} were asked for."
                )
            not_before, not_after = validity(days, start=start)
            if not_after > latest:
                raise InvalidLifetime(_past_issuer_message(days, latest, not_before))
        ca_start = self.cert.not_valid_before_utc
        if not_before < ca_start:
            not_before = ca_start  # a leaf never claims validity before its issuer's
        if not_after <= not_before:  # check_usable() has ruled out an expired CA
            raise InvalidLifetime(
                f"The requested validity ends on {not_after:%Y-%m-%d %H:%M:%S} UTC, before the CA "
                f"'{self.common_name}' became valid ({ca_start:%Y-%m-%d %H:%M:%S} UTC); a certificate "
                "cannot be valid before its issuer."
            )
        return not_before, not_after

    # --- CSRs, renewal, revocation -------------------------------------------------
    def sign_csr(self, request: "CSRRequest | bytes", kind: str, *, extra_names: Iterable[str] = (),
                 days: int | None = None) -> IssuedCert:
        """Issue a ``kind`` ("server" or "client") certificate for the key in a CSR.

        Only the public key and the names are taken from the request, each name
        checked as issue_server / issue_client check it; every extension comes
        from the profile. ``granted`` and ``dropped`` on the result say which
        requested extensions the certificate carries as asked and what was left out.
        """
        from certkit.csr import CSRRequest, compare_extensions, load_csr, plan

        if not isinstance(request, CSRRequest):
            request = load_csr(request)
        identities, cn, dropped = plan(request, kind, list(extra_names))
        self.check_permitted(identities)
        issued = self._issue(PROFILES[kind], leaf_subject(cn), identities, key_type=DEFAULT_KEY_TYPE,
                             days=days, key=None, start=None, public_key=request.public_key)
        granted, dropped_ext = compare_extensions(request, issued.cert)
        issued.granted, issued.dropped = granted, dropped_ext + dropped
        return issued

    def renew(self, old: "x509.Certificate", *, key=None, rekey: bool = False, key_type: str | None = None,
              days: int | None = None) -> IssuedCert:
        """Issue the successor of ``old``: same subject, names and purpose, recorded as renewing it.

        The public key is kept unless ``rekey`` (then a new key of ``key_type``,
        by default the old key's type). ``key``, the old private key, is put in
        the result's bundle when given. Without ``days`` the new certificate
        lives as long as the old one did, capped at the CA's expiry.
        """
        from cryptography import x509

        from certkit.keys import key_type_of

        serial = format(old.serial_number, "X")
        kind = _leaf_kind(old)
        try:
            old.verify_directly_issued_by(self.cert)
        except Exception:  # wrong issuer name (ValueError), bad signature, other key type
            raise UnknownCertificate(
                f"The certificate {serial} ({old.subject.rfc4514_string()}) was not issued by the CA "
                f"'{self.common_name}'."
            ) from None
        if self.inventory is not None:
            row = self.inventory.get(serial)
            if row is None:
                raise UnknownCertificate(f"The certificate {serial} is not in the inventory of CA "
                                         f"'{self.common_name}'.")
            if row["status"] == "revoked":
                raise AlreadyRevoked(
                    f"The certificate {serial} was revoked on {row['revoked_at']} "
                    f"(reason: {row['revocation_reason']}); a revoked certificate is not renewed. "
                    "Issue a new one (with a new key) instead."
                )
            kind = row["kind"]
        if kind not in LEAF_KINDS:
            raise CannotRenew(f"The certificate {serial} is a CA certificate; renew CAs with 'init-ca'.")
        identities = _identities_of(old, kind)
        self.check_permitted(identities)
        if rekey:
            key = generate_key(key_type or key_type_of(old.public_key()))
            public_key = None
        else:
            public_key = old.public_key()
            if key is not None and public_key_der(key.public_key()) != public_key_der(public_key):
                raise CannotRenew(f"The private key given does not belong to the certificate {serial}.")
        lifetime = old.not_valid_after_utc - old.not_valid_before_utc + dt.timedelta(seconds=1)
        issued = self._issue(PROFILES[kind], old.subject, identities, key_type=DEFAULT_KEY_TYPE, days=days,
                             key=key, start=None, public_key=public_key, renewed_from=serial,
                             default_days=max(1, round(lifetime / dt.timedelta(days=1))))
        if x509.SubjectAlternativeName not in {type(e.value) for e in old.extensions}:
            issued.notes.append("the old certificate had no subjectAltName; the new one has")
        return issued

    def revoke(self, serial: str, reason: str = "unspecified", *, when: dt.datetime | None = None) -> dict:
        """Record ``serial`` as revoked for ``reason`` (see :data:`REVOCATION_REASONS`)."""
        reason = parse_reason(reason)
        return self._require_inventory().revoke(serial, reason, when)

    def crl(self, *, days: int = 30) -> "x509.CertificateRevocationList":
        """Sign a CRL of every revoked certificate, with the next CRL number, valid ``days`` days."""
        from cryptography import x509

        from certkit.keys import signature_hash

        _check_days(days)
        inventory = self._require_inventory()
        revoked = inventory.revoked()
        number = inventory.next_crl_number()
        # thisUpdate is backdated like notBefore: a verifier whose clock runs a little slow
        # would otherwise find a "not yet valid" CRL and refuse every certificate.
        this_update = (dt.datetime.now(dt.UTC) - BACKDATE).replace(microsecond=0)
        ski = _ski(self.cert)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(this_update)
            .next_update(this_update + dt.timedelta(days=days))
            .add_extension(x509.CRLNumber(number), critical=False)
        )
        if ski is not None:
            builder = builder.add_extension(x509.AuthorityKeyIdentifier(ski, None, None), critical=False)
        for serial, revoked_at, reason in revoked:
            entry = (x509.RevokedCertificateBuilder().serial_number(int(serial, 16))
                     .revocation_date(dt.datetime.strptime(revoked_at, "%Y-%m-%dT%H:%M:%SZ")
                                      .replace(tzinfo=dt.UTC)))
            if reason != "unspecified":  # RFC 5280 5.3.1: omit the code rather than say unspecified
                entry = entry.add_extension(x509.CRLReason(x509.ReasonFlags(reason)), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        return builder.sign(self.key, signature_hash(self.key))

    def _require_inventory(self) -> "Inventory":
        if self.inventory is None:
            raise CertkitError(f"The CA '{self.common_name}' has no inventory (it was not loaded from a "
                               "CA directory), so it records no revocations.")
        return self.inventory

    # --- name constraints ---------------------------------------------------------
    def _constraints(self) -> list:
        from cryptography import x509

        found = []
        for cert in [self.cert, *self.parents]:
            try:
                found.append(cert.extensions.get_extension_for_class(x509.NameConstraints).value)
            except x509.ExtensionNotFound:
                pass
        return found

    def check_permitted(self, identities: Sequence[Identity]) -> None:
        """Refuse names that this CA's (or a parent's) name constraints exclude.

        Verifiers would reject such a certificate anyway; refusing it here gives
        the user the reason instead of an unusable file.
        """
        for nc in self._constraints():
            for ident in identities:
                if not _permitted(nc, ident):
                    raise NameNotPermitted(
                        f"'{ident.value}' is outside the name constraints of CA "
                        f"'{self.common_name}' ({_describe_constraints(nc)})."
                    )


# RFC 5280 5.3.1 CRLReason names. certificateHold (reversible) and removeFromCRL (delta
# CRLs only) are left out: certkit's revocations are final.
REVOCATION_REASONS = ("unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
                      "cessationOfOperation", "privilegeWithdrawn", "aACompromise")


def parse_reason(text: str) -> str:
    """The RFC 5280 reason named by ``text`` (any case; ``key-compromise`` works too)."""
    wanted = text.replace("-", "").replace("_", "").lower()
    for reason in REVOCATION_REASONS:
        if reason.lower() == wanted:
            return reason
    raise CertkitError(f"'{text}' is not a revocation reason; choose one of: {', '.join(REVOCATION_REASONS)}.")


def _leaf_kind(cert) -> str:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return "ca"
        ekus = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return "unknown"
    if set(ekus) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} and len(ekus) == 2:
        return "peer"
    return {ExtendedKeyUsageOID.SERVER_AUTH: "server", ExtendedKeyUsageOID.CLIENT_AUTH: "client"}.get(
        ekus[0], "unknown") if len(ekus) == 1 else "unknown"


def _identities_of(cert, kind: str) -> list[Identity]:
    """The SAN of a certificate this CA issued, checked again by today's rules."""
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    out = []
    for gn in san:
        if isinstance(gn, x509.DNSName):
            out.append(_names.parse_host(gn.value) if kind in ("server", "peer")
                       else _names.parse_dns_name(gn.value, allow_wildcard=False))
        elif isinstance(gn, x509.IPAddress):
            out.append(Identity("ip", str(gn.value)))
        elif isinstance(gn, x509.RFC822Name):
            out.append(_names.parse_email(gn.value))
        elif isinstance(gn, x509.UniformResourceIdentifier):
            out.append(_names.parse_uri(gn.value))
        # a DirectoryName SAN is the subject DN, which build_certificate puts back itself
    return out



def _narrowed_constraints(parent: CA, dns: list[str], ips: list):
    """An intermediate's name constraints: the parent's, or narrower; never wider.

    A kind of name the user does not constrain (DNS or IP) inherits the
    parent's subtrees of that kind; a kind the user does constrain must lie
    inside what the parent permits.
    """
    from cryptography import x509

    from certkit.profiles import name_constraints

    inherited = parent._constraints()
    for d in dns:
        try:
            parent.check_permitted([Identity("dns", d)])
        except NameNotPermitted as exc:
            raise NameNotPermitted(f"An intermediate cannot be wider than its parent: {exc}") from None
    for net in ips:
        for nc in inherited:
            permitted = [c.value for c in nc.permitted_subtrees or [] if isinstance(c, x509.IPAddress)]
            excluded = [c.value for c in nc.excluded_subtrees or [] if isinstance(c, x509.IPAddress)]
            if (permitted and not any(p.version == net.version and net.subnet_of(p) for p in permitted)) or any(
                    e.version == net.version and net.overlaps(e) for e in excluded):
                raise NameNotPermitted(
                    f"An intermediate cannot be wider than its parent: '{net}' is outside the name constraints "
                    f"of CA '{parent.common_name}' ({_describe_constraints(nc)})."
                )
    if not dns and not ips:
        return inherited[0] if inherited else None
    if not inherited:
        return name_constraints(dns, [str(n) for n in ips])
    nearest = inherited[0]
    permitted = [x509.DNSName(d) for d in dns] or [
        c for c in nearest.permitted_subtrees or [] if isinstance(c, x509.DNSName)]
    permitted += [x509.IPAddress(n) for n in ips] or [
        c for c in nearest.permitted_subtrees or [] if isinstance(c, x509.IPAddress)]
    excluded = [c for c in nearest.excluded_subtrees or [] if not (ips and isinstance(c, x509.IPAddress))]
    if not any(isinstance(c, x509.IPAddress) for c in permitted + excluded):
        # as for a root: constraining DNS names alone must not leave every IP address open
        excluded += [x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")), x509.IPAddress(ipaddress.ip_network("::/0"))]
    return x509.NameConstraints(permitted_subtrees=permitted or None, excluded_subtrees=excluded or None)


def _permitted(nc, ident: Identity) -> bool:
    from cryptography import x509

    if ident.kind == "dns":
        gn_type, match = x509.DNSName, lambda c: _dns_within(ident.value, c.value)
    elif ident.kind == "ip":
        addr = ipaddress.ip_address(ident.value)
        gn_type, match = x509.IPAddress, lambda c: c.value.version == addr.version and addr in c.value
    else:
        return True  # certkit constrains only DNS names and IP addresses
    excluded = [c for c in (nc.excluded_subtrees or []) if isinstance(c, gn_type)]
    if any(match(c) for c in excluded):
        return False
    permitted = [c for c in (nc.permitted_subtrees or []) if isinstance(c, gn_type)]
    return not permitted or any(match(c) for c in permitted)


def _dns_within(name: str, domain: str) -> bool:
    name, domain = name.lower(), domain.lower().lstrip(".")
    if name.startswith("*."):
        name = name[2:] if name[2:] != domain else name  # *.example.com is inside example.com
    return name == domain or name.endswith("." + domain)


def _describe_constraints(nc) -> str:
    permitted = [str(getattr(c, "value", c)) for c in (nc.permitted_subtrees or [])]
    return "permitted: " + (", ".join(permitted) if permitted else "none")


def _parse_network(text: str):
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise InvalidName(f"'{text}' is not an IP range in CIDR form (as in 10.0.0.0/8): {exc}.") from None


def _check_days(days: int) -> None:
    if not isinstance(days, int) or days < 1:
        raise InvalidLifetime(f"A lifetime of {days} days is not possible; give at least 1 day.")


def _past_issuer_message(days: int, latest: dt.datetime, not_before: dt.datetime, *,
                         what: str = "certificate", issuer: str = "the CA") -> str:
    most = (latest - not_before).days
    return (
        f"A lifetime of {days} days would end after {issuer} expires on "
        f"{latest:%Y-%m-%d %H:%M:%S} UTC; a {what} issued now can live at most "
        f"{max(most, 0)} days (until {latest:%Y-%m-%d})."
    )


def _random_serial() -> int:
    """A positive serial of 159 random bits: 20 octets in DER at most, >= 64 bits of entropy."""
    import os

    serial = int.from_bytes(os.urandom(20), "big") >> 1
    return serial or 1
