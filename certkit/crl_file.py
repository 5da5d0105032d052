"""The CRL file: a CRL written to a path atomically, never over a newer CRL of its CA nor over a file that is not
one of its CA's (unless forced), never into a CA directory, its writers taking turns; and what a CRL already
published there lists that the next one must carry (or that the inventory lost). The CRL itself is signed by
:mod:`certkit.revocation`."""

from __future__ import annotations

import datetime as dt
import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.errors import CertkitError
from certkit.revocation import _give_back_number
from certkit.text import shown

if TYPE_CHECKING:
    from cryptography import x509

    from certkit.ca import CA


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

    ``inventory``: the one that gave ``data`` its number (:func:`certkit.revocation.sign_crl`). A CRL that
    does not reach ``path`` (a full disk, a refusal) gives its number back, unless a later one was taken meanwhile:
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
