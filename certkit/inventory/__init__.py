"""The inventory: the record of every certificate a CA has signed, and where each one stands.

One row per certificate, holding the certificate itself (DER), so a row never
exists without its certificate. Rows move through the issuing pipeline
(:mod:`certkit.issuing`): recorded ``pending`` (with the folder its bundle goes
to) before any file is written, ``valid`` once the bundle is complete, or
``abandoned`` if it never was; later perhaps ``revoked``. Every command that
opens the inventory first settles pending rows whose writer died
(:mod:`certkit.inventory.reconcile`): never valid if it exists nowhere.

The database is SQLite (default) or PostgreSQL (:mod:`certkit.db`); the serial
is the primary key, so a duplicate can never be recorded: :meth:`record_pending`
reports it and the CA re-signs with a fresh serial. Renewal links, revocation checks
and the "renewed" status are decided in the transaction that records or settles the successor.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from certkit.constants import KINDS
from certkit.db import Database, open_database
from certkit.errors import CABroken, CertkitError, DamagedRow, UnknownCertificate
from certkit.inventory import schema
from certkit.inventory.rows import SELECT_ROW, Facts, facts_of, load_der, name_match, parse_iso, row_dict
from certkit.paths import absolute
from certkit.text import is_utf8, shown
from certkit.vocabulary import normalize_serial, serial_hex, wrong_type

if TYPE_CHECKING:
    from cryptography import x509

__all__ = ["Inventory", "Pending", "normalize_serial", "serial_hex"]
SCHEMA_VERSION = schema.SCHEMA_VERSION
_PARAMS_PER_STATEMENT = 500  # well under SQLite's oldest limit of 999 parameters
# "status = 'pending'" for statements that find their rows by serial, written so that no index on
# status can serve it: SQLite's planner, without statistics, takes an equality on an indexed column
# for more selective than a list of serials, so with the index on pending rows it read every pending
# row once per statement (marking a 100,000-certificate batch valid read 100,000 rows 200 times).
# PostgreSQL plans by statistics and is unaffected; the spelling means the same to both.
_STILL_PENDING = "status || '' = 'pending'"


@dataclass(frozen=True)
class Pending:
    """A signed certificate about to be delivered: recorded ``pending`` before its files exist."""

    cert: "x509.Certificate"
    kind: str
    folder: str | None = None  # absolute path of the bundle folder (or file) it goes to
    sink: str = "folder"  # folder | file | memory | acme | stream | ca-dir (an intermediate CA's directory)
    renewed_from: str | None = None
    keyed: bool = True  # whether the bundle will hold the private key
    facts: Facts | None = None  # what the issuing pipeline took from ``cert`` already (else taken here)
    # Whether it replaces ``renewed_from`` where that one's bundle is (a renewal in place, --force over
    # its folder or file): then only another successor going there refuses it (see record_pending).
    in_place: bool = True


class Inventory:
    """The inventory of one CA: an SQLite file (default) or a PostgreSQL database URL."""

    current = False  # a CA object's SQLite inventory (CADirectory.open): read only while not moved (current_read)
    home: tuple | None = None  # (CA certificate, its ca.pem) a CA object bound it to: certkit.inventory.home

    def __init__(self, location: str | Path) -> None:
        if not isinstance(location, (str, Path)) or not is_utf8(str(location)) or not str(location).strip():
            raise wrong_type("location", "an SQLite file (a str or a Path, UTF-8) or a postgresql:// URL", location)
        self.db: Database = open_database(location)
        self.path = getattr(self.db, "path", None)  # the SQLite file, for messages and backups
        # What messages name: never a secret, whatever was taken for the location (a libpq
        # "dbname=... password=..." string, a URL written in capitals, are taken for SQLite paths).
        self.location = str(self.path) if self.path is not None else self.db.url
        if self.path is not None and ("=" in self.location or "@" in self.location):
            from certkit.db_postgres import hide_secrets

            self.location = hide_secrets(self.location)

    def transaction(self, *, write: bool = False, durable: bool = True):
        from certkit.inventory.query import current_read  # refuses a CA directory made again since (home.check)
        return current_read(self, write=write, durable=durable)  # and a moved SQLite file: a backup of that day

    # --- creation, checking, migration ---------------------------------------------
    def create(self) -> None:
        self.db.create(schema.create_statements(self.db.dialect))

    def check(self, *, settle: bool = True) -> None:
        """Refuse an inventory that is missing, damaged or newer; migrate an older one; settle
        the pending rows of dead writers (``settle``)."""
        if not self.db.exists():  # a database reached that holds no tables is not a missing file
            raise CABroken(f"The inventory {shown(self.location)} {self.db.missing}")
        version = self.version()
        if version > SCHEMA_VERSION:
            raise CABroken(f"The inventory {shown(self.location)} was written by a newer certkit (schema "
                           f"{version}, this one knows {SCHEMA_VERSION}); upgrade certkit.")
        if version < SCHEMA_VERSION:
            with self._read() as tx:  # a table that is not of its version: a migration would fail half-way
                problem = schema.shape_problem(tx, version)
            if problem:
                raise CABroken(f"The inventory {shown(self.location)} {problem}; restore it from a backup.")
            self._migrate()
        if settle:
            from certkit.inventory.reconcile import settle_or_warn

            settle_or_warn(self)

    def version(self, *, readonly: bool = False) -> int:
        from certkit.errors import UnknownSchema

        with self._read(readonly) as tx:
            try:
                version = schema.read_version(tx)
            except UnknownSchema as exc:
                raise CABroken(f"The inventory {shown(self.location)} has {exc}, so certkit cannot tell how to "
                               "read it (a partial restore?); restore it from a backup.") from None
            tx.execute("SELECT serial FROM certificates LIMIT 1").fetchall()
        return version

    def _read(self, readonly: bool = False):
        from certkit.inventory.home import check
        check(self)  # a CA object's directory made again for another CA since: that CA's inventory
        if readonly and self.db.dialect == "sqlite":
            return self.db.transaction(readonly=True)
        return self.db.transaction()

    def _migrate(self) -> None:
        with self.transaction(write=True) as tx:
            # Re-read inside the write lock: another process may have migrated meanwhile.
            version = schema.read_version(tx, lock=True)
            while version < SCHEMA_VERSION:
                for statement in schema.MIGRATIONS[version]:
                    tx.execute(statement)
                version += 1
                tx.execute(schema.version_statement(tx.dialect, version))

    # --- the issuing pipeline -------------------------------------------------------
    def record_pending(self, entries: Sequence[Pending], *, durable: bool = True) -> list[int]:
        """Record ``entries`` as pending in one transaction; return the indexes not recorded
        because their serial is taken (the caller re-signs those and tries again).

        A renewal is refused here, in the same transaction, if the certificate it
        renews is revoked or no longer valid, or already renewed (a successor pending
        or valid: :func:`certkit.inventory.succession.check_renewable`): a revocation
        or another renewal that lands while a renewal is being prepared stops it,
        and its row is never recorded. ``durable=False`` commits without waiting for the disk:
        for certificates that go into a file put in place later, which calls :meth:`sync` first.
        """
        from certkit.inventory.recording import record_pending

        return record_pending(self, entries, durable=durable)

    def _existing(self, tx, serials: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(serials), _PARAMS_PER_STATEMENT):
            part = serials[start:start + _PARAMS_PER_STATEMENT]
            found.update(s for (s,) in tx.execute(
                f"SELECT serial FROM certificates WHERE serial IN ({','.join('?' * len(part))})", part))
        return found

    def mark_issued(self, serials: Sequence[str], *, durable: bool = True) -> dict[str, list[str]]:
        """Settle the rows of delivered certificates (their bundles complete) as valid; return notes by
        serial: a renewal whose predecessor was revoked while it was being written with the same key
        (that renewal is revoked too), a row another command had settled as abandoned meanwhile
        (valid again: :mod:`certkit.inventory.marking`).

        ``durable=False`` commits without waiting for the disk: right for certificates whose bundle
        (a folder, a file) is on disk already, since a mark lost in a power cut leaves the row pending
        and the next command finds the bundle and marks it again (reconciliation)."""
        with self.transaction(write=True, durable=durable) as tx:
            return self._mark_issued(tx, serials)

    def sync(self, serials: Iterable[Sequence[str]] = ()) -> None:
        """Make durable every row this process recorded with ``durable=False``; ``serials`` (in groups): rows so
        recorded that must still be there (:func:`certkit.inventory.marking.refuse_lost`: a server crash took them)."""
        from certkit.inventory.marking import refuse_lost

        self.db.sync()
        refuse_lost(self, serials)

    def _mark_issued(self, tx, serials: Sequence[str]) -> dict[str, list[str]]:
        from certkit.inventory.marking import mark_issued

        return mark_issued(tx, serials, _STILL_PENDING)

    def mark_abandoned(self, serials: Iterable[str]) -> None:
        """Settle pending rows as never delivered (the bundle could not be written)."""
        with self.transaction(write=True) as tx:
            self._mark_abandoned(tx, list(serials))

    def _mark_abandoned(self, tx, serials: list[str]) -> None:
        for start in range(0, len(serials), _PARAMS_PER_STATEMENT):
            part = serials[start:start + _PARAMS_PER_STATEMENT]
            tx.execute("UPDATE certificates SET status = 'abandoned', writer = NULL"
                       f" WHERE serial IN ({','.join('?' * len(part))}) AND {_STILL_PENDING}", part)

    def reconcile(self) -> tuple[int, int]:
        """Settle the pending rows whose writer is gone; return (issued, abandoned).

        Each row is judged and settled inside one write transaction that holds its row lock
        (``FOR UPDATE SKIP LOCKED``: a row another process is settling right now is left to it),
        so two commands, on one host or two, never judge the same row at once. A row of a writer
        on another host is settled here only when its bundle is visible here (a shared folder);
        otherwise it stays pending, revocable, until its own host settles it: this host cannot
        look at that host's disk, and "abandoned" would claim its key was never stored.
        """
        from certkit.acme.state_finalize import delivered_serials
        from certkit.inventory.reconcile import holding, is_local, release_replaced, warn_unjudged, writer_alive

        with self.transaction() as tx:
            pending = tx.execute("SELECT serial, writer, issued_at FROM certificates"
                                 " WHERE status = 'pending'").fetchall()
        orphans = [p[0] for p in pending if not writer_alive(p[1], _when(p[2]))]
        if not orphans:
            return 0, 0
        delivered, lost, unjudged = [], [], {}
        with self.transaction(write=True) as tx:
            for start in range(0, len(orphans), _PARAMS_PER_STATEMENT):
                part = orphans[start:start + _PARAMS_PER_STATEMENT]
                rows = tx.execute(
                    "SELECT serial, der, folder, sink, writer, keyed FROM certificates WHERE serial IN"
                    f" ({','.join('?' * len(part))}) AND {_STILL_PENDING} FOR UPDATE SKIP LOCKED",
                    part).fetchall()
                # Folders and output files, each file read once for all its rows; one unread: no verdict, pending
                found, unknown = holding([(s, bytes(d), f, k, bool(y)) for s, d, f, k, _w, y in rows])
                found |= delivered_serials(tx, [s for s, _d, _f, k, _w, _y in rows if k == "acme"])  # an order holds it
                for serial, _der, _folder, _sink, writer, _keyed in rows:
                    if serial in found:
                        delivered.append(serial)
                    elif is_local(writer) and serial not in unknown:
                        lost.append(serial)
                unjudged.update(unknown)
            if delivered:
                self._mark_issued(tx, delivered)
                release_replaced(tx, delivered)  # in the files a dead writer put in place: what they no more hold
            if lost:
                self._mark_abandoned(tx, lost)
        warn_unjudged(unjudged)
        return len(delivered), len(lost)

    def add(self, cert: "x509.Certificate", kind: str, *, issuer: "x509.Certificate | None" = None,
            ca_dir: str | Path | None = None) -> bool:
        """Record a certificate that needs no bundle (an intermediate CA, kept in its own CA
        directory) as valid at once; False if its serial is taken. Refused: a ``kind`` that is not
        what the certificate is, and a certificate this inventory's CA did not issue (its certificate
        ``issuer``, else the ca.pem of the CA directory an SQLite inventory sits in). With ``ca_dir``
        (the CA directory it is about to be written to), pending instead, as a bundle is: marked
        once the directory is in place, or by :meth:`reconcile`, which reads that ca.pem."""
        from certkit.inventory.audit import Issuer
        from certkit.vocabulary import leaf_kind

        serial = serial_hex(cert.serial_number)
        if kind not in KINDS or leaf_kind(cert) != kind:
            raise CertkitError(f"The certificate {serial} is a {leaf_kind(cert)} certificate, not '{shown(str(kind))}'"
                               f" (one of: {', '.join(KINDS)}); nothing was recorded.")
        issuer = issuer if issuer is not None else self._ca_certificate()
        problem = issuer is not None and Issuer(issuer).problem(cert, facts_of(cert).der, verify=True)
        if problem:
            raise CertkitError(f"The certificate {serial} was not issued by this inventory's CA: {problem}; "
                               "nothing was recorded.")
        if ca_dir is not None:
            return not self.record_pending([Pending(cert, kind, absolute(ca_dir), sink="ca-dir")])
        if self.record_pending([Pending(cert, kind, sink="memory")]):
            return False
        self.mark_issued([serial])
        return True

    def _ca_certificate(self) -> "x509.Certificate | None":
        """The certificate of the CA whose directory holds this (SQLite) inventory, if it does."""
        from cryptography import x509

        from certkit.paths import is_ca_directory

        here = Path(self.path).parent if self.path is not None else None
        found = here is not None and is_ca_directory(here)
        return x509.load_pem_x509_certificate((here / "ca.pem").read_bytes()) if found else None

    def set_folder(self, serial: str, folder: str | Path) -> None:
        """Record the (existing) ``folder`` that holds the bundle of ``serial``."""
        if not Path(folder).is_dir():
            raise CertkitError(f"{shown(folder)} is not a folder; give the folder that holds the bundle of {serial}.")
        from certkit.inventory.reconcile import writer_id

        with self.transaction(write=True) as tx:  # on this host: a bulk renewal here renews it (writer's host)
            if not tx.execute("UPDATE certificates SET folder = ?, sink = 'folder', writer = CASE WHEN status = "
                              "'pending' THEN writer ELSE ? END WHERE serial = ?",
                              (absolute(folder), writer_id(), serial)).rowcount:
                raise UnknownCertificate(f"No certificate {serial} in the inventory {shown(self.location)}.")

    # --- reading --------------------------------------------------------------------
    def rows(self, where: str = "", params: Sequence = (), *, damaged: list | None = None) -> list[dict]:
        """Rows matching an SQL ``where`` clause; a damaged row raises, or is collected in ``damaged``."""
        with self.transaction() as tx:
            fetched = tx.execute(f"{SELECT_ROW} {where}", tuple(params)).fetchall()
        out = []
        for values in fetched:
            try:
                out.append(row_dict(values))
            except DamagedRow as exc:
                if damaged is None:
                    raise
                damaged.append(exc)
        return out

    def get(self, serial: str | int) -> dict | None:
        """The row of ``serial`` (hex in either case, or the int ``cert.serial_number``), or None (get_row)."""
        from certkit.inventory.query import get_row
        return get_row(self, serial)

    def certificate(self, serial: str) -> "x509.Certificate":
        with self.transaction() as tx:
            found = tx.execute("SELECT der FROM certificates WHERE serial = ?", (serial,)).fetchone()
        if found is None:
            raise UnknownCertificate(f"No certificate with serial {serial} in the inventory {shown(self.location)}.")
        return load_der(serial, found[0])

    def count(self) -> int:
        with self.transaction() as tx:
            return tx.execute("SELECT count(*) FROM certificates").fetchone()[0]

    def serials_starting(self, prefix: str, limit: int = 10) -> list[str]:
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)  # a range the primary key index serves
        with self.transaction() as tx:
            return [r[0] for r in tx.execute("SELECT serial FROM certificates WHERE serial >= ? AND serial < ?"
                                              " ORDER BY serial LIMIT ?", (prefix, upper, limit))]

    def successors(self, serial: str) -> list[str]:
        """Serials of the delivered certificates that renewed ``serial``, oldest first."""
        with self.transaction() as tx:
            return [r[0] for r in tx.execute(
                "SELECT serial FROM certificates WHERE renewed_from = ? AND status IN ('valid', 'revoked')"
                " ORDER BY issued_at, serial", (serial,))]

    def pending_count(self) -> int:
        with self._read(readonly=True) as tx:
            return tx.execute("SELECT count(*) FROM certificates WHERE status = 'pending'").fetchone()[0]

    def query(self, *, kind: str | None = None, status: str | None = None,
              expiring_within: dt.timedelta | None = None, name: str | None = None,
              now: dt.datetime | None = None, limit: int | None = None,
              damaged: list | None = None) -> list[dict]:
        """Rows matching every filter given, soonest expiry first, each with a derived ``status``
        and ``renewed_by`` (the serial of its latest delivered renewal, or None).

        ``status`` is valid, expired, revoked, pending or abandoned; without it,
        every certificate but the abandoned ones. ``expiring_within`` keeps
        valid certificates that expire within that time and were not renewed
        yet. ``name`` is a case-insensitive glob over the subject and SAN values.
        """
        from certkit.inventory.query import query

        return query(self, kind=kind, status=status, expiring_within=expiring_within, name=name,
                     now=now or dt.datetime.now(dt.UTC), limit=limit, damaged=damaged)

    # --- revocation -------------------------------------------------------------------
    def revoke(self, serial: str, reason: str = "unspecified", when: dt.datetime | None = None) -> dict:
        """Mark ``serial`` revoked for ``reason`` (RFC 5280's, as :func:`certkit.revocation.parse_reason` reads
        it) at ``when`` (now, or a time before); the next CRL lists it. Refuses unknown, undelivered and
        revoked serials, except a keyCompromise of one revoked for another reason (a renewal that kept its
        key, say, then superseded): its reason becomes keyCompromise, its date stays, and every other
        certificate of the key is revoked with it (the row's ``reason_was`` says what it was)."""
        from certkit.inventory.revoking import revoke

        return revoke(self, serial, reason, when)

    def revoked(self) -> list[tuple[str, dt.datetime, str]]:
        """(serial, revoked_at, reason) of every revoked certificate, for the CRL; a damaged
        revoked row refuses the CRL (it would be incomplete)."""
        from certkit.inventory.revoking import revoked

        return revoked(self)

    def next_crl_number(self) -> int:
        """Take the next CRL number (1, 2, ...); atomic across processes and hosts."""
        from certkit.inventory.revoking import next_crl_number

        return next_crl_number(self)

    def crl_contents(self, above: int = 0) -> tuple[int, list[tuple[str, dt.datetime, str]]]:
        """The next CRL number (higher than ``above``: a CRL already published, which an inventory
        restored from a backup may not know) and every revocation (as :meth:`revoked`), read in one
        transaction after the number is taken: a CRL with a higher number lists every revocation that
        one with a lower number lists, and every revocation committed before its number was taken, on
        any host. A damaged revoked row refuses the CRL and takes no number."""
        from certkit.inventory.revoking import crl_contents

        return crl_contents(self, above)


def _when(text: Any) -> dt.datetime:
    try:
        return parse_iso(text)
    except (TypeError, ValueError):
        return dt.datetime.now(dt.UTC)


# The SQLite name-match function: kept importable for tests written against it.
_name_match = name_match
