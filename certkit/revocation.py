"""Revocation: RFC 5280 reasons, and the CRL a CA signs of every certificate it revoked and writes to a file
(never over a newer CRL of its own)."""

from __future__ import annotations

import datetime as dt
import errno
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.constants import MAX_CRL_DAYS, MIN_CRL_DAYS, REVOCATION_REASONS
from certkit.errors import CertkitError, InvalidArgument, InvalidLifetime, WrongType
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
    :func:`check_published`), valid ``days`` days (at most until ``ca`` expires: :func:`crl_deadline`).
    ``checked``: the caller ran :func:`check_can_sign_crl` already (``certkit crl`` does, before it
    asks for the passphrase). ``carried``: revocations of certificates the inventory does not hold, listed
    by the CRL it replaces (:func:`check_published`)."""
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


# --- writing a CRL --------------------------------------------------------------------
def crl_bytes(crl, *, der: bool = False) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return crl.public_bytes(Encoding.DER if der else Encoding.PEM)


def write_crl(path: Path, data: bytes, issuer: "x509.Name", *, force: bool = False,
              ca_dirs: tuple = (), inventory=None) -> None:
    """Write the CRL ``data`` (PEM or DER) to ``path`` atomically.

    An existing file is replaced only if it is an older CRL of the same CA (the usual refresh, e.g.
    from cron) or, with ``force``, not a CRL of this CA; anything else is refused, and nothing is
    ever written into a CA directory. A CRL of this CA numbered as high as ``data`` or higher is
    never replaced, ``force`` or not: another ``certkit crl`` took a later number and wrote it
    meanwhile, and putting this one over it would take its revocations off the published CRL.
    Writers of one file take turns (a lock on its folder), so the number read is the one replaced.

    ``inventory``: the one that gave ``data`` its number (:func:`sign_crl`). A CRL that does not reach
    ``path`` (a full disk, a refusal) gives its number back, unless a later one was taken meanwhile:
    no one saw a CRL of that number, and a cron job writing to a full disk would otherwise use up a
    number on every try. A number is given back only while the file is certainly not in place, so no
    published CRL's number is ever given to another; a failure once it is in place says that it is.
    """
    from certkit.atomic import PUBLIC_MODE, replace_file

    path = Path(path)
    ours = _read_crl(data)
    renaming = False
    try:
        with _folder_held(path.parent):
            check_crl_target(path, issuer, force=force, ca_dirs=ca_dirs, key_id=_key_id(ours) if ours else None)
            theirs = _crl_file(path)
            if ours is not None and theirs is not None and _same_ca(ours, theirs):
                _refuse_older(path, _crl_number(ours), _crl_number(theirs))
            renaming = True  # from here on the CRL may be in place (a failure after its rename)
            try:
                replace_file(path, data, PUBLIC_MODE)  # a temporary file beside it, fsynced, then renamed
            except OSError as exc:
                from certkit.bundle import bundle_error

                if (placed := placed_crl(path, data) if ours is not None else False):  # in place: said so below
                    raise
                kept = f"whether {shown(path)} holds the new CRL cannot be told" if placed is None else \
                    f"{shown(path)} is as it was" if os.path.lexists(path) else "nothing was written"
                raise CertkitError(str(bundle_error(path, exc, kept)).replace("the bundle in", "the CRL to")) from None
    except Exception as exc:
        placed = placed_crl(path, data) if ours is not None and renaming else False
        if placed:  # published: its number stays taken, and the words say it is there
            reason = str(exc) if isinstance(exc, CertkitError) else getattr(exc, "strerror", None) or str(exc)
            raise CertkitError(f"CRL number {_crl_number(ours)} was written to {shown(path)} (it is in place), but "
                               f"what followed failed: {reason.rstrip('.')}.") from None
        if inventory is not None and ours is not None and placed is False:  # (None: perhaps there, kept taken)
            _give_back_number(inventory, _crl_number(ours))
        raise


def placed_crl(path: Path, data: bytes) -> bool | None:
    """Whether the file at ``path`` holds ``data`` (the CRL just written); None when it cannot be told. A number
    is given back only when its CRL is certainly not there: two CRLs of one number would be published else."""
    try:
        with open(path, "rb") as f:
            return f.read(len(data) + 1) == data
    except FileNotFoundError:
        return False
    except OSError:
        return None


def _give_back_number(inventory, number: int) -> None:
    """Make ``number`` the next CRL number again, if it is still the last one taken (a CRL signed with it
    was written nowhere); a later one taken meanwhile leaves a gap, which numbers may have."""
    try:
        with inventory.transaction(write=True) as tx:
            tx.execute("UPDATE meta SET value = ? WHERE key = 'crl_number' AND value = ?",
                       (str(number - 1), str(number)))
    except Exception:  # the inventory cannot be written either: the number stays taken (a gap)
        pass


def _refuse_older(path: Path, ours: int, theirs: int) -> None:
    if theirs >= ours:
        than = "newer than" if theirs > ours else "the same number as"
        raise CertkitError(f"{shown(path)} already holds CRL number {theirs} of this CA, {than} this one ({ours}: "
                           "another 'certkit crl' wrote it meanwhile); a CRL is never replaced by an older one, so "
                           "it was kept and nothing was written.")


def check_crl_target(path: Path, issuer: "x509.Name", *, force: bool = False, ca_dirs: tuple = (),
                     key_id: bytes | None = None) -> None:
    """Refuse to write a CRL into a CA directory, through a link, or over a file that is not a
    CRL of ``issuer`` (unless ``force``): its name and, where both are known, its key identifier
    (``key_id``: two CAs may share a name, as two made by one user on one host do by default)."""
    from certkit.errors import OutputExists, UnsafeOutputPath
    from certkit.paths import check_can_write, check_folders_above, check_output, refuse_controlled_above

    path = Path(path)
    check_output(path, ca_dirs, what="CRL file")
    check_folders_above(path, "CRL file")  # a file where a folder must be: said so, not "does not exist"
    if not path.parent.is_dir():  # refused before a passphrase is asked for, a number taken
        raise CertkitError(f"Cannot write the CRL to {shown(path)}: the folder {shown(path.parent)} does not exist.")
    refuse_controlled_above(path, "CRL file")  # its temporary file beside it is renamed by name
    check_can_write(path, "CRL file")  # (and /proc, /sys, where no file can be made: tried)
    if path.is_symlink():
        raise UnsafeOutputPath(f"{shown(path)} is a symbolic link; certkit does not write through links.")
    if path.exists() and not path.is_file():
        raise OutputExists(f"{shown(path)} exists and is not a file.", replaceable=False)
    if path.exists() and not force:
        theirs = _crl_file(path)
        other_key = theirs is not None and key_id is not None and _key_id(theirs) not in (None, key_id)
        if theirs is None or theirs.issuer != issuer or other_key:
            raise OutputExists(f"{shown(path)} exists and is not a CRL of this CA.")


def check_published(path: Path, ca: "CA") -> tuple[int, list[tuple[str, dt.datetime, str]]]:
    """The number of the CRL of ``ca`` (its name, signed with its key) already at ``path`` (0 if there is
    none), and the revocations it lists of certificates the inventory does not hold at all, which the
    next CRL carries over (an inventory restored from a backup older than them cannot record them
    again). Refused if it lists a certificate the inventory holds but does not record as revoked: the
    next CRL would take that revocation off it (a compromised key trusted again); revoke it again."""
    from certkit.vocabulary import serial_hex

    path = Path(path)
    theirs = _crl_file(path) if path.is_file() else None
    if theirs is None or theirs.issuer != ca.cert.subject:
        return 0, []
    try:
        if not theirs.is_signature_valid(ca.cert.public_key()):
            return 0, []
    except (TypeError, ValueError):
        return 0, []
    inventory = ca.require_inventory()
    recorded = {serial for serial, _, _ in inventory.revoked()}
    missing = [entry for entry in theirs if serial_hex(entry.serial_number) not in recorded]
    unknown = [entry for entry in missing if inventory.get(serial_hex(entry.serial_number)) is None]
    lost = [entry for entry in missing if entry not in unknown]
    if lost:
        shown_ones = ", ".join(f"{serial_hex(e.serial_number)} ({_entry_reason(e)})" for e in lost[:3])
        more = f" and {len(lost) - 3} more" if len(lost) > 3 else ""
        raise CertkitError(
            f"{shown(path)} (CRL number {_crl_number(theirs)} of this CA) lists {len(lost)} revoked "
            f"certificate{'s' if len(lost) != 1 else ''} that the inventory holds but does not record as revoked: "
            f"{shown_ones}{more}. The inventory is older than that CRL (restored from a backup?), and a new CRL "
            f"would take {'them' if len(lost) != 1 else 'it'} off it; nothing was signed. Record each again with "
            "'certkit revoke SERIAL --reason REASON', or restore a newer inventory.")
    return _crl_number(theirs), [(serial_hex(e.serial_number), e.revocation_date_utc, _entry_reason(e))
                                 for e in unknown]


def _entry_reason(entry) -> str:
    from cryptography import x509

    try:
        return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
    except x509.ExtensionNotFound:
        return "unspecified"


def _crl_file(path: Path) -> "x509.CertificateRevocationList | None":
    """The CRL at ``path``; None when there is none (or it is no CRL). A file the file system will not read
    (an I/O error, no permission) is :class:`UnreadableFile`: its revocations, its number, are not known, and
    a CRL written over it could drop them (or be older), so nothing is written, even with --force."""
    import errno

    from certkit.errors import UnreadableFile
    from certkit.files import read_limited

    try:
        return _read_crl(read_limited(path, 64 << 20, what="CRL"))
    except UnreadableFile as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise UnreadableFile(f"{exc} certkit will not write a CRL over a file it cannot read, even with --force: "
                             "what it lists would be lost.", exc.errno) from None
    except (CertkitError, OSError):
        return None


def _read_crl(data: bytes) -> "x509.CertificateRevocationList | None":
    from cryptography import x509

    try:
        return x509.load_pem_x509_crl(data) if data.lstrip().startswith(b"-----") else x509.load_der_x509_crl(data)
    except ValueError:
        return None


def _same_ca(a: "x509.CertificateRevocationList", b: "x509.CertificateRevocationList") -> bool:
    """Whether two CRLs are of one CA: the same issuer name and, where both say, the same key
    identifier (a CA made again under the same name numbers its CRLs from 1 again)."""
    ours, theirs = _key_id(a), _key_id(b)
    return a.issuer == b.issuer and (ours is None or theirs is None or ours == theirs)


def _key_id(crl: "x509.CertificateRevocationList") -> bytes | None:
    """The key identifier of a CRL's issuer (its authorityKeyIdentifier), if it says."""
    from cryptography import x509

    try:
        return crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except (x509.ExtensionNotFound, ValueError):
        return None


def _crl_number(crl: "x509.CertificateRevocationList") -> int:
    from cryptography import x509

    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except (x509.ExtensionNotFound, ValueError):
        return 0  # a CRL without a number is older than every numbered one


@contextmanager
def _folder_held(folder: Path, *, wait: float = 120.0) -> Iterator[None]:
    """An exclusive ``flock`` on ``folder`` for the length of the block: the CRL writers of one folder
    take turns (for milliseconds; one that holds it ``wait`` seconds is stuck, and refused). A folder
    that cannot be opened or locked (no locks on its file system) holds nothing."""
    import fcntl
    import time

    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        yield
        return
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise CertkitError(f"Another certkit command has been writing a CRL in {shown(folder)} for over "
                                       f"{wait:.0f} seconds; nothing was written. Try again once it is done.") from None
                time.sleep(0.02)
            except OSError as exc:
                if exc.errno != errno.ENOLCK:
                    raise
                break
        yield
    finally:
        os.close(fd)
