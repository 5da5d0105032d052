"""Bundle folders: the files of an issued certificate, written whole, replaced exactly.

A bundle is the set of files named in :data:`certkit.constants.BUNDLE_FILES`
(certbot's names). Writing one never leaves half of it: a new folder is
assembled under a temporary name and renamed into place (:mod:`certkit.atomic`).
Replacing one (``--force``, ``renew``) touches the bundle's files and nothing
else in the folder: files of the old bundle that the new one does not have (a
``bundle.p12`` or ``chain.pem`` of another key or CA) are removed, everything
else (a log, a subfolder, a mount) is left exactly as it is (a folder or link
under a bundle file's name is refused). Private keys are 0600 from the moment
they exist; nothing is written through a symbolic link.

Two ways to replace, both crash-safe:
- a folder that holds nothing but bundle files is swapped whole with Linux's
  ``renameat2(RENAME_EXCHANGE)``: the folder holds the old pair or the new pair
  at every instant, never one of each (a reader opening ``cert.pem`` before the
  exchange and ``privkey.pem`` after it by path gets one of each all the same);
- any other folder (a user's files beside the bundle, a mount point, a file
  mounted in it) gets a journal (:mod:`certkit.bundle_journal`): the new files
  are staged in a hidden subfolder with a ``COMMIT`` list, then renamed over the
  old ones, which the journal keeps until all are in; one that cannot be
  replaced undoes the others. A writer killed after ``COMMIT`` is rolled
  forward by the next certkit command (:func:`settle_folder`), one killed
  before it is rolled back, so the folder holds one whole bundle.

A bundle file that is itself a mount point is refused (:func:`check_writable`): no rename can replace it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from certkit.atomic import (
    FOLDER_MODE,
    PUBLIC_MODE,
    SECRET_MODE,
    TEMP_SUFFIX,
    fsync_dir,
    hold,
    let_go,
    make_staging_dir,
    new_folder,
    parse_temporary,
    remove_tree,
    remove_tree_said,
    sweep_dead_files,
    sweep_stale,
    write_new_file,
    writer_gone,
)
from certkit.bundle_contents import (  # noqa: F401
    bundle_mismatch,
    certified_names,
    leftovers,
    of_another_kind,
    refuse_unreadable_cert,
)
from certkit.bundle_journal import refuse_irregular, refuse_unsettled
from certkit.constants import BUNDLE_FILES, CERT_FILE, CHAIN_FILE, KEY_FILE, P12_FILE
from certkit.errors import CertkitError, OutputExists, UnsafeOutputPath
from certkit.file_modes import is_secret, keep_folder_access, kept_mode, mode_for, replace_kept, write_kept  # noqa: F401
from certkit.folder_swap import exchange, swap_by_renames
from certkit.testhooks import pause_at
from certkit.text import is_utf8, shown
from certkit.vocabulary import file_kind_text

__all__ = ["FOLDER_MODE", "PUBLIC_MODE", "SECRET_MODE", "bundle_names", "check_extra", "check_writable",
           "new_folder", "replace_bundle", "settle_folder", "write_bundle", "write_new_file"]


def bundle_names(*, chain: bool, key: bool = True, p12: bool = False) -> list[str]:
    """An issued certificate's folder's files: chain.pem under an intermediate, privkey.pem unless from a CSR."""
    return [n for n in BUNDLE_FILES if (n != CHAIN_FILE or chain) and (n != KEY_FILE or key) and (n != P12_FILE or p12)]


def check_extra(extra: Mapping[str, bytes] | None, own: Mapping[str, bytes]) -> dict[str, bytes]:
    """``extra`` files to write beside the bundle ``own`` (name -> content), checked: each a plain file
    name (no folder, no ``..``), none of certkit's bundle names but ``bundle.p12``, none of ``own``."""
    from certkit.paths import _has_control
    from certkit.vocabulary import wrong_type

    if extra is not None and not isinstance(extra, Mapping):
        raise wrong_type("extra's result", "a mapping of {file name: bytes}", extra, secret=True)
    checked: dict[str, bytes] = {}
    for name, data in (extra or {}).items():
        plain = isinstance(name, str) and name not in ("", ".", "..") and is_utf8(name) and not _has_control(
            name) and not any(sep and sep in name for sep in (os.sep, os.altsep, "/"))
        if not plain or name.endswith(TEMP_SUFFIX):
            raise UnsafeOutputPath(f"The extra file name '{shown(str(name))}' is not a plain file name; give a UTF-8 "
                                   "name without folders, '..' or control characters (it goes into the bundle folder).")
        if name in own or (name in BUNDLE_FILES and name != P12_FILE):
            raise CertkitError(f"The extra file {name} would replace the bundle's own {name}; certkit writes "
                               f"that file itself. Give another name.")
        if not isinstance(data, (bytes, bytearray)):
            raise wrong_type(f"the content of the extra file {name}", "bytes", data, secret=True)  # a key, maybe
        checked[name] = bytes(data)
    return checked


# --- checks, before anything is signed -----------------------------------------------
def check_writable(folder: Path, names: Sequence[str], *, force: bool, replaces: Sequence[str] = (),
                   public_key=None, cache: dict | None = None) -> None:
    """Raise if writing ``names`` into ``folder`` would replace files without ``force`` (or remove
    what of ``replaces`` it would leave out, :func:`leftovers`), or go through a symbolic link, or
    into a folder someone else controls (``cache``: :func:`certkit.paths.check_new_folder`'s)."""
    if folder.is_symlink():
        raise UnsafeOutputPath(f"The output folder {shown(folder)} is a symbolic link; certkit does not write "
                               "through links. Give the real path.")
    if folder.exists() and not folder.is_dir():
        raise OutputExists(f"{shown(folder)} exists and is not a folder.", replaceable=False)
    from certkit.paths import check_can_write, check_new_folder, refuse_controlled_above

    if not folder.exists():
        check_new_folder(folder, cache)
        return
    refuse_controlled_above(folder)
    check_folder_owner(folder)
    check_can_write(folder, listed=True)  # an existing folder: what it holds is read, so it must be listed too
    refuse_unsettled(folder)
    existing = [n for n in names if os.path.lexists(folder / n)]
    links = [n for n in existing if (folder / n).is_symlink() or not (folder / n).is_file()]
    if links:
        raise UnsafeOutputPath(f"{shown(folder / links[0])} is {file_kind_text(folder / links[0])}; certkit will not "
                               "replace it. Remove it or choose another folder.")
    stale = leftovers(folder, names, replaces, public_key=public_key)  # removed: checked as the written are
    refuse_irregular(folder, stale)
    _refuse_given_inputs(folder, existing + stale)
    mounted = [n for n in existing + stale if is_mount_point(folder / n)]
    if mounted:  # a rename over it fails (busy); swapping the folder whole would carry the mount away
        raise UnsafeOutputPath(f"{shown(folder / mounted[0])} is a mount point (a file mounted there); certkit "
                               f"cannot replace or remove it. Unmount it (umount {shown(folder / mounted[0])}) "
                               "and mount the file certkit writes instead, or choose another folder.")
    if not force:  # the files in the way, and those of the old bundle that --force would remove, all named
        _refuse_leftovers(folder, stale, existing)
    elif CERT_FILE in names:  # a whole bundle replaced: the one there must be known (its key goes)
        refuse_unreadable_cert(folder)


def _refuse_given_inputs(folder: Path, names: Sequence[str]) -> None:
    """A file of the bundle that writing it replaces or removes, which is a file the command reads (its passphrase or
    password file kept in the folder, ``files.keep_input``): refused, even with --force, as for --out files."""
    from certkit.files import given_input

    for name in names:
        if (given := given_input(folder / name)) is not None:
            raise UnsafeOutputPath(f"{shown(folder / name)} is the file given as {given}, which this command reads; "
                                   "certkit will not write over it or remove it with the bundle, even with --force. "
                                   "Move it out of the bundle folder.")


def _refuse_leftovers(folder: Path, names: Sequence[str], existing: Sequence[str] = ()) -> None:
    removed = f"{', '.join(names)}, which writing this bundle there would remove" if names else ""
    held = f"{', '.join(existing)} (and {removed})" if existing and names else ", ".join(existing) or removed
    if held:
        raise OutputExists(f"{shown(folder)} already holds {held}.", count=len(existing) + len(names))


def check_folder_owner(folder: Path) -> None:
    """Refuse a folder that someone else controls: its owner (or anyone, if it is writable by
    all without the sticky bit) could swap the files after certkit wrote them."""
    info = folder.stat()
    if info.st_uid not in (os.geteuid(), 0):
        raise UnsafeOutputPath(f"The output folder {shown(folder)} belongs to another user (uid {info.st_uid}), "
                               "who could replace the files certkit writes there; choose a folder of your own.")
    if info.st_mode & 0o002 and not info.st_mode & 0o1000:
        raise UnsafeOutputPath(f"The output folder {shown(folder)} is writable by every user, who could replace "
                               "the files certkit writes there; choose a private folder.")


# --- writing ---------------------------------------------------------------------------
def write_bundle(folder: Path, files: Mapping[str, bytes], *, force: bool = False, sync: bool = True,
                 sweep: bool = True, replaces: Sequence[str] = (), owner: tuple[str, str] | None = None,
                 cache: dict | None = None) -> list[Path]:
    """Write the bundle ``files`` (name -> content) into ``folder``; return the paths written.

    A new folder appears whole. An existing one (with ``force``) gets ``files``,
    and loses the names in ``replaces`` that ``files`` lacks (the rest of an old
    bundle: a whole new bundle passes :data:`BUNDLE_FILES`); nothing else in it
    is touched. Secrets get mode 0600, others 0644 (:mod:`certkit.file_modes`), and
    no file replaced becomes more readable than it was.
    With ``sync`` False nothing is fsynced (a batch syncs once per chunk).
    """
    folder = Path(folder)
    if sweep:  # a batch sweeps its output folder once instead
        settle_folder(folder)
        sweep_dead_files(folder.absolute().parent)  # a killed --out FILE's temporary file beside it (its keys)
    check_writable(folder, list(files), force=force, cache=cache)
    from certkit.constants import CERT_FILE

    kept = "nothing was written"  # what a failure leaves, said in its error
    try:
        if not folder.exists():
            with new_folder(folder, sync=sync) as staging:
                for name, data in files.items():
                    write_new_file(staging / name, data, mode_for(name, data), sync=sync)
        else:
            stale = leftovers(folder, files, replaces, cert_pem=files.get(CERT_FILE))
            if not force:  # (the pipeline's check refused them before signing; a file put there since)
                _refuse_leftovers(folder, stale)
            # Files beside the bundle (IssuedCert.write's extra) are no part of its journal, which
            # carries out bundle names only: each is replaced on its own, after the bundle.
            own = {n: d for n, d in files.items() if n in BUNDLE_FILES}
            kept = "nothing was replaced (the bundle was left as it was)"
            if own or stale:
                replace_bundle(folder, own, remove=stale, sync=sync, owner=owner)
            for name in files.keys() - own.keys():
                kept = f"the new bundle is in place, but {name} was not written"
                replace_kept(folder / name, files[name], mode_for(name, files[name]))
    except OSError as exc:
        raise bundle_error(folder, exc, kept) from None
    return [folder / name for name in files]


def bundle_error(folder: Path, exc: OSError, kept: str | None = None) -> CertkitError:
    """The error of a bundle write that failed, saying ``kept``: what it leaves ("nothing was written")."""
    if isinstance(exc, _Swapped):
        return CertkitError(f"The bundle in {shown(folder)} was replaced (the new files are in place), but tidying up "
                            f"after it failed: {os_reason(exc)}. Anything left beside it goes at certkit's next write "
                            "there.")
    return CertkitError(f"Cannot write the bundle in {shown(folder)}: {os_reason(exc)}{'; ' + kept if kept else ''}.")


class _Swapped(OSError):
    """An I/O error once a folder's new bundle was swapped into place (putting back what was created in it
    meanwhile): the bundle is replaced, and the words say so."""


def os_reason(exc: OSError) -> str:
    """Why a write failed, in words: "the disk is full" rather than "No space left on device"."""
    from certkit.text import os_error_words

    return os_error_words(exc) or exc.strerror or str(exc)


def replace_bundle(folder: Path, files: Mapping[str, bytes], *, remove: Sequence[str] = (),
                   sync: bool = True, owner: tuple[str, str] | None = None) -> None:
    """Replace bundle files in the existing ``folder``: write ``files``, delete ``remove``, keep the rest.
    ``owner``: the inventory file and serial of the certificate written (:mod:`certkit.bundle_journal`)."""
    from certkit.bundle_journal import journaled

    refuse_irregular(folder, remove)  # a folder or link put there since the checks: never removed
    entries = [e for e in os.listdir(folder) if not e.endswith(TEMP_SUFFIX)]
    # A file mounted there (a shared ca.pem) would move with a folder swapped whole, into the old one.
    only_bundle = all(e in BUNDLE_FILES and (folder / e).is_file() and not (folder / e).is_symlink()
                      and not is_mount_point(folder / e) for e in entries)
    if only_bundle and not is_mount_point(folder):
        try:
            _swap_folder(folder, files, remove, sync)
            return
        except _CannotSwap:
            pass  # a bind mount, a file system without exchange: the journal works everywhere
    journaled(folder, files, remove, sync, owner)


def is_mount_point(folder: Path) -> bool:
    """Whether ``folder`` is a mount point, a bind mount of a folder of the same file system included
    (which ``os.path.ismount`` misses: same device as its parent): it cannot be renamed, nor can a
    file in it be linked from beside it."""
    return os.path.ismount(folder) or os.fsencode(os.path.realpath(folder)) in _mount_points()


_MOUNTS_READ: list = [0.0, frozenset()]  # when /proc/self/mountinfo was last read, and its mount points


def _mount_points() -> frozenset[bytes]:
    """The mount points of /proc/self/mountinfo (none where it cannot be read), read again after a
    second: a batch replacing thousands of bundles reads it once a second, not once a bundle."""
    import re
    import time

    if time.monotonic() - _MOUNTS_READ[0] > 1.0:
        try:
            with open("/proc/self/mountinfo", "rb") as f:
                # the 5th field, with space, tab, newline and backslash written as octal escapes
                points = [line.split(b" ")[4] for line in f if line.count(b" ") >= 5]
        except OSError:
            points = []
        _MOUNTS_READ[:] = [time.monotonic(), frozenset(
            re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), p) for p in points)]
    return _MOUNTS_READ[1]


class _CannotSwap(Exception):
    pass


# What says that ``folder`` cannot be swapped whole, though its files can be replaced one by one:
# it is a mount point (EBUSY), its files or it lie across a mount (EXDEV), the file system or a
# security module refuses the exchange (EPERM, EACCES).
_NO_SWAP = (errno.EBUSY, errno.EXDEV, errno.EPERM, errno.EACCES)


def _swap_folder(folder: Path, files: Mapping[str, bytes], remove: Sequence[str], sync: bool) -> None:
    parent = folder.absolute().parent
    sweep_stale(parent, folder.name)
    # A folder of one's own in a folder one cannot write (/etc/ssl/web of a service account, /etc/ssl
    # root's): no new folder beside it, so its files are replaced in it, through the journal.
    staging = _cannot_swap_on(_NO_SWAP + (errno.EROFS,), make_staging_dir, parent, folder.name)
    old = staging  # where the old bundle goes (after the exchange; the renames' fallback may leave it aside)
    try:
        for name, data in files.items():
            write_kept(staging / name, data, folder / name, mode_for(name, data), sync=sync)
        for entry in os.listdir(folder):  # the kept files of the bundle: the very same files
            if entry in BUNDLE_FILES and entry not in files and entry not in remove:
                _cannot_swap_on(_NO_SWAP, os.link, folder / entry, staging / entry)
        keep_folder_access(folder, staging)  # its mode, owner or group, and ACLs: who reads it still does
        if sync:
            fsync_dir(staging, strict=True)
        pause_at("staged")
        hold(folder)  # the old bundle, which the exchange puts under the temporary name: a live writer's too
        if not _cannot_swap_on(_NO_SWAP, exchange, staging, folder):
            old = _cannot_swap_on(_NO_SWAP, swap_by_renames, staging, folder)  # undoes itself when it fails
        if sync:
            fsync_dir(parent)
        pause_at("swapped")
        try:  # anything created in the old folder meanwhile goes back, but for the old bundle's (regular) files
            for entry in os.listdir(old):
                if (entry not in BUNDLE_FILES or (old / entry).is_symlink() or not (old / entry).is_file()) \
                        and not os.path.lexists(folder / entry):
                    os.rename(old / entry, folder / entry)
        except OSError as exc:  # the new bundle is in place all the same: never said as not written
            raise _Swapped(exc.errno, exc.strerror, exc.filename) from None
    except BaseException:
        remove_tree(old)
        _let_go(staging, folder)
        raise
    remove_tree_said(old, "which holds the bundle this renewal replaced")  # after the exchange it holds the old bundle
    _let_go(staging, folder)


def _let_go(*held: Path) -> None:
    for path in held:
        let_go(path)


def _cannot_swap_on(errors: tuple[int, ...], step, *args):
    """``step(*args)``; one of ``errors`` from it is :class:`_CannotSwap` (nothing in the folder changed:
    the journal replaces its files instead)."""
    try:
        return step(*args)
    except OSError as exc:
        if exc.errno in errors:
            raise _CannotSwap from None
        raise


def settle_folder(folder: Path) -> None:
    """Finish or undo what a dead writer left in or beside ``folder``: a committed journal is
    rolled forward (or back: :func:`certkit.bundle_journal.settle_journal`), an uncommitted one and
    any temporary file or folder are removed (they may hold a private key), a set-aside old bundle
    is put back if the bundle is missing."""
    from certkit.bundle_journal import JOURNAL, settle_journal

    folder = Path(folder)
    sweep_stale(folder.absolute().parent, folder.name)
    if not folder.is_dir() or folder.is_symlink():
        return
    try:
        entries = [e for e in os.scandir(folder) if e.name.endswith(TEMP_SUFFIX)]
    except OSError:
        return
    journals = [e.name for e in entries if (parsed := parse_temporary(e.name)) and parsed[0] == JOURNAL
                and e.is_dir(follow_symlinks=False) and writer_gone(Path(e.path), parsed[1])]
    if journals:
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return
        try:
            for name in journals:
                settle_journal(folder, fd, name)
        finally:
            os.close(fd)
    sweep_stale(folder)

