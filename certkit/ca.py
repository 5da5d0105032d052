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
import ipaddress
from collections.abc import Iterable, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from certkit import ca_signing
from certkit import constraints as _constraints
from certkit import names as _names
from certkit.ca_checks import check_parts, check_still_home, decimal_hint, resolve_serial
from certkit.ca_names import default_ca_name
from certkit.errors import CertkitError, UnknownCertificate
from certkit.issued import IssuedCert, certificate_pem
from certkit.key_choice import has_ed25519
from certkit.keys import refusing_empty
from certkit.profiles import BACKDATE, Profile
from certkit.text import shown
from certkit.vocabulary import check_bool, common_name, serial_argument, serial_hex, wrong_type

if TYPE_CHECKING:
    import ssl

    from cryptography import x509

    from certkit.csr import CSRRequest
    from certkit.inventory import Inventory
    from certkit.issuing import Request
    from certkit.keys import PrivateKey
    from certkit.store import CADirectory, Passphrase

__all__ = ["CA", "IssuedCert", "certificate_pem", "default_ca_name"]

# A host as issue_server() and issue_peer() take it, and an IP range as CA.create's permitted_ips takes it: text,
Host = str | ipaddress.IPv4Address | ipaddress.IPv6Address  # or an ipaddress address (or network)
IPRange = Host | ipaddress.IPv4Network | ipaddress.IPv6Network


def subject_key_identifier(cert: "x509.Certificate") -> bytes | None:
    from cryptography import x509

    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


class CA:
    """A certificate authority: its certificate, its key, and the certificates above it."""

    def __init__(self, cert: "x509.Certificate", key, parents: Sequence["x509.Certificate"] = (),
                 inventory: "Inventory | None" = None, store: "CADirectory | None" = None) -> None:
        check_parts(cert, key, parents, inventory, store)
        self.cert = cert
        self.key = key  # None until unlock() for a CA opened from a directory
        self.parents = list(parents)  # issuers above this CA, nearest first, up to the root (none for a root)
        self.inventory = inventory
        self.store = store
        self.warnings: list[str] = []  # problems found on loading that do not stop issuing
        self.signed_cas: list[x509.Certificate] = []  # intermediates this object signed (CA.create)
        self._parent_dir: Path | None = None  # the parent's CA directory, once CA.create(parent=...) made it
        # What it signed while it had no inventory, (Pending, weak reference to the IssuedCert or CA): recorded
        self.unrecorded: list[tuple] = []  # by CADirectory.save_new (certkit.memory_delivery.record_issued_before)
        # leaf_validity's last answer for the second it was asked in, (asked, window, notes): replaced whole
        self._validity: tuple | None = None  # and read once, never read back (threads share a CA)

    # --- creation -----------------------------------------------------------------
    @classmethod
    def create(cls, common_name: str | None = None, *, organization: str | None = None,
               organizational_unit: str | None = None, country: str | None = None,
               key_type: str | None = None, days: int | None = None, permitted_dns: Iterable[str] = (),
               permitted_ips: IPRange | Iterable[IPRange] = (), parent: "CA | None" = None,
               not_before: dt.datetime | None = None, key=None, directory: str | Path | None = None) -> "CA":
        """Create a root CA, or an intermediate signed by ``parent``.

        ``not_before`` backdates the CA (for demos and tests that need a leaf
        which has already expired: a leaf never starts before its issuer).
        ``key`` is the CA's own key when it exists already (a key in a PKCS#11
        token, :mod:`certkit.pkcs11`), held to the key policy CSRs get (a ``key_type`` beside it must
        be its type); else one of ``key_type`` (by default ``ecdsa-p256``) is generated.
        ``permitted_dns`` and ``permitted_ips`` take one name or a list of them
        (:func:`certkit.names.name_list`). ``directory``: the CA directory an intermediate is about
        to be saved in (:meth:`CADirectory.save_new` with ``parent``): the parent records it pending
        until it is there, not valid at once.
        """
        return ca_signing.create_ca(cls, common_name, organization=organization,
                                    organizational_unit=organizational_unit, country=country, key_type=key_type,
                                    days=days, permitted_dns=permitted_dns, permitted_ips=permitted_ips,
                                    parent=parent, not_before=not_before, key=key, directory=directory)

    def check_can_sign_ca(self) -> None:
        from cryptography import x509

        bc = self.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        if bc.path_length is not None and bc.path_length < 1:
            raise CertkitError(f"The CA '{shown(self.common_name)}' has path length {bc.path_length}: it may "
                               "issue only end-entity certificates, not another CA.")

    def unlock(self, passphrase: "Passphrase" = None) -> None:
        """Decrypt the key of a CA opened with :meth:`CADirectory.open`; ``passphrase`` (bytes, a bytearray or
        memoryview, or a str taken as UTF-8) may be a callable, asked only if the key is encrypted. Nothing
        happens if the key is loaded."""
        if self.key is not None:
            return
        if self.store is None:
            raise CertkitError(f"The CA '{shown(self.common_name)}' has no private key to sign with.")
        store = self.store  # an empty secret is refused as a missing one, in the CLI's words
        empty = (f"The CA key is in a PKCS#11 token ({shown(store.key_uri)}) and the PIN given is empty."
                 if store.key_uri is not None else f"The CA key {store.key_path} is encrypted and the passphrase "
                 "given is empty.")
        self.key, warnings = store.load_key(self.cert, refusing_empty(passphrase, empty))
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

    @cached_property  # named in every check of a request (a batch checks thousands)
    def common_name(self) -> str:
        return common_name(self.cert.subject) or self.cert.subject.rfc4514_string()

    @property
    def cert_pem(self) -> bytes:
        return certificate_pem(self.cert)

    @property
    def root_pem(self) -> bytes:
        return certificate_pem(self.root)

    @cached_property
    def ski(self) -> bytes | None:
        return subject_key_identifier(self.cert)

    @property
    def directories(self) -> list[Path]:
        """The CA directory this CA was opened from (outputs may never land there)."""
        return [self.store.path] if self.store is not None else []

    def configure_trust(self, ctx: "ssl.SSLContext") -> None:
        """Make the ``ssl.SSLContext`` ``ctx`` trust what this CA issues."""
        import ssl

        from certkit.sslcontext import configure_trust

        if not isinstance(ctx, ssl.SSLContext):
            raise wrong_type("ctx", "an ssl.SSLContext", ctx)
        configure_trust(self, ctx)

    def server_context(self, cert: IssuedCert, *, client_certificates: str = "required") -> "ssl.SSLContext":
        """An ``ssl.SSLContext`` presenting ``cert`` that requires (or, ``"optional"``/``"none"``, does not)
        a client certificate issued by this CA: a mutual-TLS server in one line."""
        from certkit.sslcontext import server_context

        _check_issued(cert, "cert")
        return server_context(self, cert, client_certificates=client_certificates)

    def client_context(self, cert: IssuedCert | None = None) -> "ssl.SSLContext":
        """An ``ssl.SSLContext`` trusting this CA (host names checked), presenting ``cert`` if given."""
        from certkit.sslcontext import client_context

        if cert is not None:
            _check_issued(cert, "cert")
        return client_context(self, cert)

    def constraints(self) -> list:
        """The NameConstraints of this CA and every CA above it."""
        return list(self._chain_constraints)

    @cached_property  # read for every request checked (a batch checks thousands); the chain never changes
    def _chain_constraints(self) -> tuple:
        return tuple(_constraints.of_chain((self.cert, *self.parents)))

    @cached_property  # asked for every certificate signed (reading a key's algorithm parses it again)
    def _ed25519_chain(self) -> bool:
        return has_ed25519((self.cert, *self.parents))

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
        name constraints, a key given (``key=``, a CSR's, a renewal's) against the key policy and the
        CA keys of the chain, the lifetime against the profile and this CA's own. Returns notes."""
        return ca_signing.check_request(self, request)

    def sign(self, request: "Request") -> IssuedCert:
        """Sign ``request`` (checked by :meth:`check_request`) with a fresh serial. Nothing is recorded:
        :mod:`certkit.issuing` does that."""
        return ca_signing.sign(self, request)

    # --- library conveniences: issue in memory, recorded if the CA has an inventory ---
    def _in_memory(self, request: "Request", target=None) -> IssuedCert:
        from certkit.issuing import deliver

        issued = deliver(self, request, target).issued
        if self.inventory is not None:  # write() records where it goes (certkit.memory_delivery)
            from certkit.memory_delivery import WriteRecorder

            issued.recorder = WriteRecorder(self)
        return issued

    def issue_server(self, names: Host | Iterable[Host], *, key_type: str | None = None, days: int | None = None,
                     key: "PrivateKey | None" = None, not_before: dt.datetime | None = None) -> IssuedCert:
        """Issue a serverAuth-only certificate for DNS names and IP addresses, all in the SAN."""
        from certkit.issuing import server_request

        return self._in_memory(server_request(names, key_type=key_type, days=days, key=key, not_before=not_before))

    def issue_peer(self, names: Host | Iterable[Host], *, key_type: str | None = None, days: int | None = None,
                   key: "PrivateKey | None" = None, not_before: dt.datetime | None = None) -> IssuedCert:
        """Issue a certificate with both serverAuth and clientAuth for cluster peers that cannot take two
        certificates; the names as for :meth:`issue_server`. Prefer a server and a client certificate
        wherever the system allows (docs/peers.md)."""
        from certkit.issuing import server_request

        return self._in_memory(server_request(names, kind="peer", key_type=key_type, days=days, key=key,
                                              not_before=not_before))

    def issue_client(self, name: str, *, emails: Iterable[str] = (), uris: Iterable[str] = (),
                     dns_names: Iterable[str] = (), key_type: str | None = None, days: int | None = None,
                     key: "PrivateKey | None" = None, not_before: dt.datetime | None = None) -> IssuedCert:
        """Issue a clientAuth-only certificate whose subject CN is ``name``.

        Emails, URIs (SPIFFE IDs) and DNS names go in the SAN; a ``name`` that
        is an email address goes there too. With no such identity the SAN holds
        the subject DN as a directoryName, because verifiers such as
        cryptography's require a SAN and the DN is the identity servers map.
        """
        from certkit.issuing import client_request

        return self._in_memory(client_request(name, emails=emails, uris=uris, dns_names=dns_names,
                                              key_type=key_type, days=days, key=key, not_before=not_before))

    def sign_csr(self, request: "CSRRequest | bytes | str | x509.CertificateSigningRequest", kind: str, *,
                 extra_names: Host | Iterable[Host] = (), days: int | None = None) -> IssuedCert:
        """Issue a ``kind`` certificate for the key in a CSR: only its key and names are taken."""
        from certkit.issuing import csr_request

        return self._in_memory(csr_request(request, kind, extra_names=extra_names, days=days))

    def renew(self, old: "x509.Certificate | IssuedCert", *, key: "PrivateKey | None" = None, rekey: bool = False,
              key_type: str | None = None, days: int | None = None) -> IssuedCert:
        """Issue the successor of ``old`` (an ``x509.Certificate``, or an :class:`IssuedCert` whose key is then
        kept): same subject, names and purpose, recorded as renewing it. ``key`` is the old private key to keep;
        with ``rekey=True`` the new key (else one of ``key_type``, by default the old key's type, is made). Of
        a CA directory, a renewal of a bundle in a folder succeeds it once written there (`memory_delivery`)."""
        from certkit.issuing import renewal_request
        from certkit.memory_delivery import UndeployedRenewal, renewal_target, undeployed_note
        from certkit.names_carried import carried_name_notes

        check_bool("rekey", rekey)
        check_still_home(self)  # before its inventory is read: another CA's, were the directory made again
        if isinstance(old, IssuedCert):
            key = old.private_key if key is None and not rekey else key
            old = old.cert
        new_key, key = (key, None) if rekey else (None, key)
        request = renewal_request(old, self.kind_of(old), rekey=rekey, key_type=key_type, days=days, key=key,
                                  new_key=new_key, ca=self.cert)
        target = renewal_target(self, serial_hex(old.serial_number))
        issued = self._in_memory(request, target)
        issued.notes.extend(carried_name_notes(old))  # carried over as certified: said, as the command says it
        if isinstance(target, UndeployedRenewal):
            issued.notes.append(undeployed_note(target))
        return issued

    def kind_of(self, cert: "x509.Certificate") -> str:
        """The kind of a leaf this CA issued (from the inventory when there is one); refuses others, a CA
        certificate (this one's too) as renewed with init-ca (:func:`certkit.ca_checks.kind_of`)."""
        from certkit.ca_checks import kind_of

        return kind_of(self, cert)

    # --- revocation -----------------------------------------------------------------
    def revoke(self, serial: str | int, reason: str = "unspecified", *, when: dt.datetime | None = None) -> dict:
        """Record ``serial`` as revoked for ``reason`` (see :data:`certkit.constants.REVOCATION_REASONS`).

        ``serial`` is read as ``certkit revoke`` reads it (hex in either case, colon- or space-separated octets as
        openssl prints them, a 0x prefix, a unique prefix of 8 or more hex digits) or is the int
        ``cert.serial_number``. ``when`` is a time between the certificate's notBefore and now."""
        from certkit.revocation import check_can_revoke, parse_reason, revocation_time

        typed, serial = serial, serial_argument(serial)
        inventory = self.require_inventory()
        check_still_home(self, "nothing was revoked")
        reason = parse_reason(reason)
        serial = resolve_serial(inventory, serial, typed)
        try:
            cert = inventory.certificate(serial)
        except UnknownCertificate:
            if isinstance(typed, str) and (hint := decimal_hint(inventory, typed)):  # Python's serial_number, as str
                raise UnknownCertificate(f"No certificate with serial {serial} was issued by this CA. {hint}") from None
            cert = None  # inventory.revoke says so, in its words
        if cert is not None:
            check_can_revoke(self.cert, serial, cert, inventory.location)
            revocation_time(when, not_before=cert.not_valid_before_utc)
        return inventory.revoke(serial, reason, when)

    def crl(self, *, days: int = 30) -> "x509.CertificateRevocationList":
        """Sign a CRL of every revoked certificate, with the next CRL number, valid ``days`` days."""
        from certkit.revocation import sign_crl

        check_still_home(self)
        return sign_crl(self, days=days)

    # --- validity -------------------------------------------------------------------
    def check_usable(self) -> None:
        """Refuse to sign with a CA (or under a parent) that has expired."""
        from certkit.validity import check_usable

        check_usable([self.cert, *self.parents])

    def leaf_validity(self, profile: Profile, days: int | None, start, notes: list[str],
                      default_days: int | None = None) -> tuple[dt.datetime, dt.datetime]:
        """notBefore/notAfter of a leaf of this CA (see :func:`certkit.validity.leaf_validity`).

        Without ``start`` the answer depends on the clock to the second only (validity() drops the
        microseconds, and the CA's expiry is a whole second), and a batch asks thousands of times a
        second: so the last answer is kept for the second it was worked out in."""
        from certkit.parent_record import check_not_revoked
        from certkit.validity import check_started, leaf_validity

        check_not_revoked(self)  # its parent revoked it: every verifier that loads the parent's CRL refuses it
        if start is not None:
            return leaf_validity(self.cert, self.parents, profile, days, start, notes, default_days)
        now = dt.datetime.now(dt.UTC)
        asked = (now.replace(microsecond=0), profile, days, default_days)
        cached = self._validity  # read once: another thread may replace it at any moment
        if cached is not None and cached[0] == asked:
            _asked, window, found = cached
        else:
            found = []
            check_started([self.cert, *self.parents], now)  # one not valid yet: nothing it signs works now
            window = leaf_validity(self.cert, self.parents, profile, days, now - BACKDATE, found, default_days)
            self._validity = (asked, window, tuple(found))
        notes += found
        return window


def _check_issued(cert, what: str) -> None:
    if not isinstance(cert, IssuedCert):
        raise wrong_type(what, "an IssuedCert (what issue_server() and issue_client() return)", cert)


def _random_serial() -> int:
    """A positive serial of 159 random bits: 20 octets in DER at most, >= 64 bits of entropy."""
    import os

    serial = int.from_bytes(os.urandom(20), "big") >> 1
    return serial or 1
