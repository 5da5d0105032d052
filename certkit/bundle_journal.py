"""The journal of a bundle replaced file by file (:func:`certkit.bundle.replace_bundle` for a folder that
holds more than its bundle): all or nothing, whatever fails and whenever the writer dies.

The new files are staged in a hidden subfolder of the bundle folder, ``.certkit-swap.PID-RANDOM.certkit-tmp``,
which commits when its ``COMMIT`` (the plan: the names to write and remove, the folder, the certificate's
serial and inventory) appears whole. Rolling it forward first keeps every file it replaces in the journal's
``old`` subfolder (a hard link, else a copy; ``NAME.absent`` for a name the folder did not have), then
renames the new files in; a name to remove goes into ``old`` only if it is a regular file (a folder or a
symbolic link there is the user's: refused before anything is signed, left alone if it appears later). A
roll-forward that fails part-way (a file that cannot be replaced: a mount point, a folder in its place, a
file system turned read-only) is undone: ``COMMIT`` becomes ``UNDO``
and the old files go back, so the folder holds the old bundle whole, and the command says so. Only if
undoing fails too does the folder stay half replaced: the error says which files are which, the journal
stays committed and the certificate pending, and the next certkit command finishes the bundle.

Every step goes through a file descriptor of the folder, opened once: a folder moved or replaced by a
symbolic link meanwhile is noticed (its path no longer leads to that descriptor), the replacement undone
and the command fails, as the swap path does; nothing is written where the folder went.

A dead writer's journal is settled by the next command (:func:`settle_journal`): rolled forward if it is
committed for this very folder and its certificate was not settled as abandoned meanwhile (its inventory
says so), else rolled back; an uncommitted one is removed (nothing in the folder changed yet).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from certkit.atomic import SECRET_MODE, close_quietly, hold, let_go, temporary_name, write_new_file
from certkit.constants import BUNDLE_FILES
from certkit.errors import CertkitError, UnsafeOutputPath, loads_json
from certkit.paths import absolute
from certkit.testhooks import pause_at
from certkit.text import shown
from certkit.vocabulary import absent_text

JOURNAL = "certkit-swap"  # the hidden staging subfolder of a journaled replacement
_COMMIT = "COMMIT"
_UNDO = "UNDO"  # COMMIT renamed: the roll-forward is being undone
_OLD = "old"  # the files replaced, kept until the roll-forward is complete
_ABSENT = ".absent"
_PLAN_KEYS = {"write", "remove", "folder", "inventory", "serial"}


class HalfWritten(CertkitError):
    """A roll-forward that failed part-way and could not be undone: ``folder`` holds part of the new
    bundle, and the journal that finishes it. Its certificate is left pending, never abandoned."""

    def __init__(self, message: str, folder: Path) -> None:
        super().__init__(message)
        self.folder = Path(absolute(folder))


class _Moved(Exception):
    pass


def real_folder(folder: Path) -> str:
    """The folder's path with the folders above it resolved (the folder itself is no link)."""
    head, name = os.path.split(absolute(folder))
    return os.path.join(os.path.realpath(head), name)


def _open_folder(folder: Path) -> int:
    return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def _same_folder(folder: Path, fd: int) -> bool:
    """Whether the path ``folder`` still leads to the folder open as ``fd`` (not moved, not replaced)."""
    try:
        now, held = os.stat(folder, follow_symlinks=False), os.fstat(fd)
    except OSError:
        return False
    return stat.S_ISDIR(now.st_mode) and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def _exists(fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _regular(fd: int, name: str) -> bool:
    """Whether the folder's ``name`` is a regular file (not followed if it is a symbolic link)."""
    try:
        return stat.S_ISREG(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _remove(fd: int, name: str) -> None:
    """Remove the journal ``name`` (certkit's own hidden subfolder): what it holds is certkit's staged
    files and the regular files it replaced, never a folder or link of the user's (:func:`roll_forward`)."""
    import shutil

    shutil.rmtree(name, dir_fd=fd, ignore_errors=True)


def refuse_irregular(folder: Path, names: Iterable[str]) -> None:
    """Refuse to remove the leftovers ``names`` of ``folder`` unless each is a regular file: a folder
    there holds someone's files (removing it would take them all), a symbolic link points elsewhere, a
    FIFO or device is nobody's bundle file. The same rule as for the names a bundle writes."""
    for name in names:
        path = folder / name
        if path.is_symlink() or not path.is_file():
            raise UnsafeOutputPath(f"{shown(path)} {absent_text(path)}; certkit will not remove it (the new bundle "
                                   f"has no {name}). Move it out of {shown(folder)} or choose another folder.")


def refuse_unsettled(folder: Path) -> None:
    """Refuse to write into ``folder`` while it holds a journal that the settling before (:func:`settle_journal`)
    left alone: another command is replacing its bundle now, or one was killed so lately that its pid cannot yet be
    told from a live one's. A new bundle written now would be undone or overwritten when that journal is settled."""
    from certkit.atomic import UNHELD_LEASE, parse_temporary

    def journals() -> list[str]:
        try:
            return [e.name for e in os.scandir(folder) if (found := parse_temporary(e.name)) and found[0] == JOURNAL]
        except OSError:
            return []

    if journals():  # (a batch does not settle each folder first)
        from certkit.bundle import settle_folder

        settle_folder(folder)
    if names := journals():
        from certkit.atomic import writer_gone

        stuck = [n for n in names if writer_gone(folder / n, parse_temporary(n)[1])]
        if stuck:  # its writer is gone, and settling it failed: no one is replacing the bundle, no wait helps
            raise CertkitError(f"The bundle in {shown(folder)} holds the journal {shown(stuck[0])} of a certkit "
                               "command that stopped, and certkit could not finish or undo it: it cannot rename or "
                               "remove files there (is the folder or a file in it immutable or append-only? lsattr -a "
                               f"{shown(folder)}; or its mode?); nothing was written. Fix that and run again: certkit "
                               "then finishes or undoes it.")
        raise CertkitError(f"Another certkit command is replacing the bundle in {shown(folder)} (its journal "
                           f"{shown(names[0])} is there), or was stopped less than {UNHELD_LEASE / 60:.0f} minutes "
                           "ago; nothing was written. Run again once it is done: certkit then finishes or undoes it.")


def journaled(folder: Path, files: Mapping[str, bytes], remove: Sequence[str], sync: bool,
              owner: tuple[str, str] | None = None) -> None:
    """Replace ``files`` and remove ``remove`` in ``folder`` through a journal (see the module docstring).
    ``owner``: (inventory file, serial) of the certificate written, so that a journal left behind is never
    rolled forward once its certificate was settled as abandoned."""
    from certkit.file_modes import mode_for, write_kept

    fd = _open_folder(folder)
    journal: str | None = None
    try:
        if not _same_folder(folder, fd):
            raise _moved(folder)
        irregular = [n for n in remove if _exists(fd, n) and not _regular(fd, n)]
        if irregular:  # a folder of the user's files, a link: never carried into the journal and deleted
            raise CertkitError(f"{shown(folder / irregular[0])} {absent_text(folder / irregular[0])}; certkit will "
                               "not remove it "
                               f"(the new bundle has no {irregular[0]}). Move it out of {shown(folder)}; nothing "
                               "was replaced.")
        journal = temporary_name(JOURNAL)
        os.mkdir(journal, 0o700, dir_fd=fd)
        hold(journal, dir_fd=fd)  # a live writer's, to every other certkit, whatever its pid says
        try:
            for name, data in files.items():
                write_kept(folder / journal / name, data, folder / name, mode_for(name, data), sync=sync)
            plan = {"write": list(files), "remove": list(remove), "folder": real_folder(folder),
                    "inventory": owner[0] if owner else None, "serial": owner[1] if owner else None}
            # The journal commits when COMMIT appears, whole: written aside, then renamed.
            write_new_file(folder / journal / f".{_COMMIT}", json.dumps(plan).encode(), SECRET_MODE, sync=True)
            if not _same_folder(folder, fd):
                raise _moved(folder)
            os.rename(f"{journal}/.{_COMMIT}", f"{journal}/{_COMMIT}", src_dir_fd=fd, dst_dir_fd=fd)
            _fsync_at(fd, journal)
        except BaseException:
            _remove(fd, journal)
            raise
        pause_at("staged")
        _carry_out(folder, fd, journal, plan)
        pause_at("swapped")
    finally:
        if journal is not None:
            let_go(journal, dir_fd=fd)
        close_quietly(fd)  # (the bundle may be in place: a failed close says nothing of it)


def _moved(folder: Path) -> CertkitError:
    return CertkitError(f"Cannot write the bundle in {shown(folder)}: the folder was moved or replaced while the "
                        "bundle was being written; nothing was replaced.")


def _carry_out(folder: Path, fd: int, journal: str, plan: dict) -> None:
    """Roll the committed ``journal`` forward in the folder open as ``fd``; undo it if that fails."""
    from certkit.bundle import os_reason

    try:
        if not _same_folder(folder, fd):
            raise _Moved
        roll_forward(fd, journal, plan)
        if not _same_folder(folder, fd):
            raise _Moved
    except (OSError, _Moved) as exc:
        reason = "the folder was moved or replaced while the bundle was being written" \
            if isinstance(exc, _Moved) else os_reason(exc)
        moved_in = [n for n in plan["write"] if not _exists(fd, f"{journal}/{n}")]
        try:
            os.rename(f"{journal}/{_COMMIT}", f"{journal}/{_UNDO}", src_dir_fd=fd, dst_dir_fd=fd)
            roll_back(fd, journal, plan)
        except OSError as second:
            raise HalfWritten(_half_message(folder, journal, plan, moved_in, reason, os_reason(second)),
                              folder) from None
        _remove(fd, journal)
        raise CertkitError(f"Cannot write the bundle in {shown(folder)}: {reason}; nothing was replaced (the "
                           "bundle was left as it was).") from None
    _remove(fd, journal)


def _half_message(folder: Path, journal: str, plan: dict, moved_in: list[str], reason: str, second: str) -> str:
    serial = plan.get("serial")
    new = f"the new certificate{' ' + serial if serial else ''}'s"
    rest = [n for n in plan["write"] if n not in moved_in]
    return (f"Cannot write the bundle in {shown(folder)}: {reason}, and putting the old files back failed too "
            f"({second}). It is half replaced: {', '.join(moved_in)} {'is' if len(moved_in) == 1 else 'are'} {new}"
            + (f", {', '.join(rest)} still the old one's" if rest else "")
            + f"; the old files are kept in {shown(folder / journal / _OLD)}. The next certkit command that can "
            f"write {shown(folder)} completes the new bundle from {shown(folder / journal)}"
            + (f" (certificate {serial} stays pending until then)" if serial else "") + ".")


def _fsync_at(fd: int, name: str) -> None:
    try:
        sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    except OSError:
        return
    try:
        os.fsync(sub)
    except OSError:
        pass
    finally:
        os.close(sub)


def _keep(fd: int, name: str, kept: str) -> None:
    """Keep the folder's ``name`` as ``kept``: a hard link (the very file), else a copy (a mounted file,
    a file system without links), written aside and renamed, so a kept file is always whole."""
    try:
        os.link(name, kept, src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
        return
    except OSError:
        pass
    aside = f"{kept}.part"
    source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    try:
        info = os.fstat(source)
        target = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=fd)
        try:
            while chunk := os.read(source, 1 << 16):
                os.write(target, chunk)
            if os.geteuid() == 0:
                os.fchown(target, info.st_uid, info.st_gid)
            os.fchmod(target, stat.S_IMODE(info.st_mode))
            os.fsync(target)
        finally:
            os.close(target)
    finally:
        os.close(source)
    os.rename(aside, kept, src_dir_fd=fd, dst_dir_fd=fd)


def roll_forward(fd: int, journal: str, plan: dict) -> None:
    """Carry out a committed journal (again, after a writer died part-way): keep what it replaces, then
    move each new file over the old one and the stale ones into ``old``."""
    old = f"{journal}/{_OLD}"
    try:
        os.mkdir(old, 0o700, dir_fd=fd)
    except FileExistsError:
        pass
    for name in plan["write"]:
        if _exists(fd, f"{journal}/{name}") and not _exists(fd, f"{old}/{name}") \
                and not _exists(fd, f"{old}/{name}{_ABSENT}"):
            if _exists(fd, name):
                _keep(fd, name, f"{old}/{name}")
            else:
                os.close(os.open(f"{old}/{name}{_ABSENT}", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600,
                                 dir_fd=fd))
    _fsync_at(fd, old)
    for name in plan["write"]:
        if _exists(fd, f"{journal}/{name}"):
            os.rename(f"{journal}/{name}", name, src_dir_fd=fd, dst_dir_fd=fd)
    for name in plan["remove"]:
        if _regular(fd, name):  # a folder or link put there since is left alone: the journal is deleted whole
            os.rename(name, f"{old}/{name}", src_dir_fd=fd, dst_dir_fd=fd)
    os.fsync(fd)


def roll_back(fd: int, journal: str, plan: dict) -> None:
    """Undo what a roll-forward did (again, after a writer died undoing): each file it replaced or
    removed goes back, each file it added goes. A name already put back has nothing left in ``old``."""
    old = f"{journal}/{_OLD}"
    for name in plan["write"]:
        if _exists(fd, f"{journal}/{name}"):
            continue  # never moved in
        if _exists(fd, f"{old}/{name}"):
            os.rename(f"{old}/{name}", name, src_dir_fd=fd, dst_dir_fd=fd)
        elif _exists(fd, f"{old}/{name}{_ABSENT}"):
            try:
                os.unlink(name, dir_fd=fd)
            except FileNotFoundError:
                pass
            os.unlink(f"{old}/{name}{_ABSENT}", dir_fd=fd)
    for name in plan["remove"]:
        if _exists(fd, f"{old}/{name}") and not _exists(fd, name):
            os.rename(f"{old}/{name}", name, src_dir_fd=fd, dst_dir_fd=fd)
    os.fsync(fd)


def journal_plan(fd: int, journal: str) -> tuple[str, dict] | None:
    """(COMMIT or UNDO, the plan) of a journal certkit could have written: this user's, naming bundle
    files only, each new or kept one a regular file of this user's; else None (a planted journal naming
    ``../x`` or ``/etc/x``, a symlink: removed unread, nothing outside the bundle is touched)."""
    def ours(name: str) -> bool:
        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        return stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid()

    try:
        if os.stat(journal, dir_fd=fd, follow_symlinks=False).st_uid != os.geteuid():
            return None
        state = next((s for s in (_COMMIT, _UNDO) if _exists(fd, f"{journal}/{s}")), None)
        if state is None or not ours(f"{journal}/{state}"):
            return None
        plan = loads_json(_read_at(fd, f"{journal}/{state}", 4096))
        if not (isinstance(plan, dict) and {"write", "remove"} <= set(plan) <= _PLAN_KEYS):
            return None
        names = [*plan["write"], *plan["remove"]]
        if not all(isinstance(n, str) and n in BUNDLE_FILES for n in names):
            return None
        if not all(ours(n) for n in (f"{journal}/{w}" for w in plan["write"]) if _exists(fd, n)):
            return None
        kept = [f"{journal}/{_OLD}/{n}" for n in names]  # a copy kept by root has the old file's owner
        if not all(stat.S_ISREG(os.stat(n, dir_fd=fd, follow_symlinks=False).st_mode) for n in kept
                   if _exists(fd, n)):
            return None
    except (OSError, ValueError, TypeError):
        return None
    return state, plan


def _read_at(fd: int, name: str, limit: int) -> bytes:
    source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    try:
        data = os.read(source, limit + 1)
    finally:
        os.close(source)
    if len(data) > limit:
        raise ValueError("the journal is too large")
    return data


def settle_journal(folder: Path, fd: int, journal: str) -> None:
    """Finish or undo the journal a dead writer left in ``folder`` (open as ``fd``), then remove it; a
    journal that cannot be settled now (a read-only folder) stays for a later command."""
    found = journal_plan(fd, journal)
    try:
        if found is not None and found[0] == _COMMIT and _wanted(folder, found[1]):
            try:
                roll_forward(fd, journal, found[1])
            except OSError:
                os.rename(f"{journal}/{_COMMIT}", f"{journal}/{_UNDO}", src_dir_fd=fd, dst_dir_fd=fd)
                roll_back(fd, journal, found[1])
        elif found is not None:
            if found[0] == _COMMIT:  # never to be rolled forward now: undone for good
                os.rename(f"{journal}/{_COMMIT}", f"{journal}/{_UNDO}", src_dir_fd=fd, dst_dir_fd=fd)
            roll_back(fd, journal, found[1])
    except OSError:
        return
    _remove(fd, journal)


def _wanted(folder: Path, plan: dict) -> bool:
    """Whether a committed journal is to be rolled forward: written for this very folder (not one moved
    here since: its certificate is recorded elsewhere), its certificate not settled as abandoned."""
    where = plan.get("folder")
    if where is not None and where != real_folder(folder):
        return False
    return not _abandoned(plan.get("inventory"), plan.get("serial"))


def _abandoned(inventory: str | None, serial: str | None) -> bool:
    """Whether the SQLite ``inventory`` records ``serial`` as abandoned (False where it cannot say)."""
    if not isinstance(inventory, str) or not isinstance(serial, str) or not os.path.isfile(inventory):
        return False
    import sqlite3
    from urllib.parse import quote

    try:
        from certkit.db import sqlite_name

        db = sqlite3.connect(f"file:{quote(sqlite_name(inventory))}?mode=ro", uri=True, timeout=5)
        try:
            row = db.execute("SELECT status FROM certificates WHERE serial = ?", (serial,)).fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return False
    return row is not None and row[0] == "abandoned"
