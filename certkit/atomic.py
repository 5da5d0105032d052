"""Atomic file-system steps: a file or a folder appears whole or not at all.

Every file is written to a temporary name beside its target (created with
``O_EXCL | O_NOFOLLOW`` and its final mode, so a key is never readable by
others, whatever the umask), flushed to disk, then renamed into place. A new
folder is assembled under a temporary name and renamed into place whole.
Temporary names carry the writer's pid (``.NAME.PID-RANDOM.certkit-tmp``), and a
writer holds (``flock``) each temporary folder while it fills it, so a later run can
tell a dead writer's leftovers (which may hold a private key) from a live one's and
remove them (:func:`sweep_stale`, :func:`writer_gone`), even when its pid has been
given to another process since (a reboot; a container, where every command is pid 1).

The folders above an output that do not exist yet are created by
:func:`make_folders` (mode 0755 at most, whatever the umask: never a folder
that others can write to), which says which ones it created, so that a write
that fails removes them again (:func:`remove_made`, :func:`folders_made`): a failed
command leaves no empty folders behind, and never removes one it did not create.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from certkit.errors import ModesNotKept, OutputExists
from certkit.paths import absolute
from certkit.testhooks import pause_at
from certkit.text import shown

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
FOLDER_MODE = 0o755
TEMP_SUFFIX = ".certkit-tmp"
# .NAME.PID-RANDOM[.old].certkit-tmp
_TEMPORARY = re.compile(r"\.(.+)\.(\d+)-[0-9a-f]+(\.old)?\.certkit-tmp")


def random_suffix() -> str:
    # The pid lets a later run tell a dead writer's leftovers from a live one's; os.urandom
    # rather than secrets/tempfile, which cost start-up time on every one-shot command.
    return f"{os.getpid()}-{os.urandom(8).hex()}"


def temporary_name(name: str) -> str:
    return f".{name}.{random_suffix()}{TEMP_SUFFIX}"


def parse_temporary(name: str) -> tuple[str, int, bool] | None:
    """(original name, writer pid, is a set-aside old folder) of a temporary name, else None."""
    match = _TEMPORARY.fullmatch(name)
    return (match.group(1), int(match.group(2)), bool(match.group(3))) if match else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return not zombie(pid)


def zombie(pid: int) -> bool:
    """Whether ``pid`` is a zombie: a process that died (killed) and that its parent has not reaped, which in a
    container whose first process reaps no orphans it never is. Its pid answers signals; it writes nothing."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:][:1] in (b"Z", b"X")  # (the name, field 2, may hold ')': after the last)


# How long an entry that no one holds may be a live writer's though its pid names a live process: a writer holds
# (flock) every temporary folder, and an output file, for as long as it writes them; a temporary file of its own is
# renamed within milliseconds; only a certkit from before writers held them could take longer.
UNHELD_LEASE = 300.0
_HELD: dict[str, int] = {}  # the temporary folders this process holds: path -> the descriptor holding its flock


def hold(path: Path, *, dir_fd: int | None = None) -> None:
    """Hold the temporary folder ``path`` (just made, this process's) until :func:`let_go`: an ``flock`` on it tells
    every other certkit that its writer lives (:func:`writer_gone`), whatever its pid says."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return  # not held: its pid and age speak for it, as before writers held them
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pass
    close_quietly(_HELD.pop(_held_key(path, dir_fd), -1))
    _HELD[_held_key(path, dir_fd)] = fd


def let_go(path: Path, *, dir_fd: int | None = None) -> None:
    """Stop holding ``path`` (:func:`hold`): it is in place, or removed."""
    fd = _HELD.pop(_held_key(path, dir_fd), None)
    if fd is not None:
        close_quietly(fd)


def _held_key(path: Path, dir_fd: int | None) -> str:
    return f"{dir_fd}:{path}" if dir_fd is not None else absolute(path)


def writer_gone(path: Path, pid: int) -> bool:
    """Whether the temporary file or folder ``path``, named for the writer ``pid``, is a dead writer's. One a
    writer holds (:func:`hold`) is live. Else one whose pid is gone is dead; and so is one whose pid names a
    live process (a pid used again since its writer died: after a reboot, in a container where every
    command is pid 1, this very process) when no one holds it and nothing was written in it for
    :data:`UNHELD_LEASE`: a live
    writer holds what it takes long to write, and renames the rest within milliseconds."""
    import fcntl
    import time

    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return not alive(pid)  # not ours to open (another user's): its pid alone speaks for it
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False  # held: its writer lives
            return not alive(pid)  # no flock on this file system
        if not alive(pid):
            return True
        return time.time() - os.fstat(fd).st_mtime > UNHELD_LEASE
    finally:
        close_quietly(fd)


def write_new_file(path: Path, data: bytes, mode: int, *, sync: bool = True) -> None:
    """Create ``path`` (which must not exist) with exactly ``mode``, write it, and fsync it
    unless ``sync`` is False (a batch syncs many files at once instead)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have removed bits; make the mode exact
        except PermissionError:  # of a file it just made: a file system whose modes are the mount's (vfat)
            raise ModesNotKept(mode, None) from None
        if not mode & 0o077 and (got := os.fstat(fd).st_mode & 0o777) & 0o077:  # chmod ignored (CIFS, quiet vfat)
            raise ModesNotKept(mode, got)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        unlink_quietly(path)
        raise
    os.close(fd)


def unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def remove_tree(path: Path) -> None:
    import shutil  # only on failure and clean-up paths

    shutil.rmtree(path, ignore_errors=True)


def remove_tree_said(path: Path, what: str) -> None:
    """:func:`remove_tree`, and a warning when something of ``path`` stays (a file made immutable or
    append-only, ``chattr +i``): what it keeps (a private key, maybe) is said, never left hidden for good."""
    import shutil

    failures: list[OSError] = []
    shutil.rmtree(path, onerror=lambda _f, _p, info: failures.append(info[1]))
    if not os.path.lexists(path):
        return
    import warnings

    try:
        kept = ", ".join(sorted(os.listdir(path))[:4]) or "nothing"
    except OSError:
        kept = "files"
    reason = next((exc.strerror for exc in failures if isinstance(exc, OSError) and exc.strerror), "")
    warnings.warn(f"The folder {shown(path)}, {what}, could not be removed{f' ({reason})' if reason else ''}; "
                  f"it still holds {kept}. Remove it (lsattr -a {shown(path)} shows a file made immutable or "
                  "append-only: chattr -i or -a it first).", stacklevel=3)


# What fsync of a folder says on a file system that cannot sync folders: nothing failed to reach the disk.
_NO_FOLDER_SYNC = (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF, errno.EACCES, errno.EPERM)


def fsync_dir(path: Path, *, strict: bool = False) -> None:
    """Sync the folder ``path`` (its entries: files made, renamed or removed in it). With ``strict`` (a folder
    assembled before it is put in place), a failure to reach the disk (an I/O error, a full disk) is raised, as
    a file's failed sync is: what is renamed into place must be on disk; else (what was renamed into ``path`` is
    in place) it is a warning, never an error: a caller that took it for a write that failed would undo what is
    in place (a CRL's number given back, a file of keys marked abandoned). A file system that cannot sync folders
    is no failure."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno in _NO_FOLDER_SYNC:
            return
        if strict:
            raise
        import warnings  # in place already: said, never taken for a sync that worked

        warnings.warn(f"The folder {shown(absolute(path))} could not be synced to disk ({exc.strerror}): what "
                      "was just put in it is there now, but may be lost if the machine stops before that disk "
                      "recovers; check it.", stacklevel=2)
    finally:
        close_quietly(fd)


def close_quietly(fd: int) -> None:
    """Close a folder's descriptor whose work is done: an error from close() (the descriptor is released all
    the same) must not turn a write that is in place into one said to have failed."""
    try:
        os.close(fd)
    except OSError:
        pass


def make_staging_dir(parent: Path, name: str) -> Path:
    """Create a new, empty, private (0700) folder beside ``parent / name`` to assemble it in."""
    for _attempt in range(100):
        staging = parent / temporary_name(name)
        try:
            os.mkdir(staging, 0o700)
        except FileExistsError:
            continue
        except OSError as exc:  # named as the folder asked for: the temporary name means nothing to anyone
            raise OSError(exc.errno, exc.strerror, str(parent / name)) from None
        hold(staging)  # until it is in place or removed (let_go): a live writer's, whatever its pid says
        return staging
    raise FileExistsError(f"Could not create a temporary folder in {parent}.")


def sweep_stale(directory: Path, name: str | None = None) -> None:
    """Remove what a killed certkit left while writing ``directory / name`` (any name if None):
    temporary files and folders whose writer is gone. A set-aside ``.old`` folder (the previous
    bundle, during a fallback swap) is put back if the bundle itself is missing."""
    prefix = f".{name}." if name is not None else "."
    try:
        entries = [e for e in os.scandir(directory) if e.name.endswith(TEMP_SUFFIX) and e.name.startswith(prefix)]
    except OSError:
        return
    for entry in entries:
        parsed = parse_temporary(entry.name)
        if not parsed or (name is not None and parsed[0] != name) or not writer_gone(Path(entry.path), parsed[1]):
            continue
        original, _pid, is_old = parsed
        path, target = Path(entry.path), Path(directory) / original
        if is_old and not os.path.lexists(target):
            os.rename(path, target)
        elif entry.is_dir(follow_symlinks=False) and original == "certkit-swap":  # a journal: its refusal says it
            remove_tree(path)
        elif entry.is_dir(follow_symlinks=False):
            remove_tree_said(path, "left by a stopped certkit command")
        else:
            unlink_quietly(path)


def sweep_dead_files(directory: Path) -> None:
    """Remove the temporary files (never folders: a bundle's journal is settled by its own writer) that a dead
    certkit writer left in ``directory`` beside any name: a killed ``--out`` of another name leaves one (0600, with
    keys perhaps) that nothing else would ever remove. Only this user's, whose writer is gone (:func:`writer_gone`)."""
    try:
        entries = [e for e in os.scandir(directory) if e.name.startswith(".") and e.name.endswith(TEMP_SUFFIX)]
    except OSError:
        return
    for entry in entries:
        parsed = parse_temporary(entry.name)
        try:
            ours = entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_uid == os.geteuid()
        except OSError:
            continue
        if parsed and not parsed[2] and ours and writer_gone(Path(entry.path), parsed[1]):
            unlink_quietly(Path(entry.path))


def replace_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` atomically (temporary file beside it, then rename), replacing what is there."""
    path = Path(path)
    sweep_stale(path.absolute().parent, path.name)
    tmp = path.with_name(temporary_name(path.name))
    try:
        write_new_file(tmp, data, mode)
        os.replace(tmp, path)
    except BaseException:
        unlink_quietly(tmp)
        raise
    fsync_dir(path.absolute().parent)


def not_a_folder(path: Path) -> str:
    """``path`` (which exists, but is no folder) and what it is instead, in a few words: "web is a file,
    not a folder", "web is a symbolic link, not a folder", "sock is not a folder"."""
    if os.path.islink(path):
        kind = "a symbolic link to nothing" if not os.path.exists(path) else "a symbolic link"
    else:
        kind = "a file" if os.path.isfile(path) else None
    return f"{shown(path)} is {kind}, not a folder" if kind else f"{shown(path)} is not a folder"


def _in_the_way(path: Path) -> NotADirectoryError:
    return NotADirectoryError(errno.ENOTDIR, not_a_folder(path), str(path))


def make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and the folders above it that are missing (mode 0755 less the umask: unlike
    ``mkdir -p``, never writable by anyone but their owner, even under ``umask 000``, which would
    leave the keys below open to being renamed or replaced, and make certkit refuse the folder the
    next time); return the ones this call created, outermost first, for :func:`remove_made`.

    A file (or a dangling link) where a folder must be raises :class:`NotADirectoryError` whose
    text names it ("web is a file, not a folder"). A folder that another process creates meanwhile
    is not counted: it is not ours to remove.
    """
    missing: list[Path] = []
    path = Path(folder)
    while not os.path.isdir(path):
        if os.path.lexists(path) and not os.path.isdir(path):  # not a folder another writer made meanwhile
            raise _in_the_way(path)
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    made: list[Path] = []
    try:
        for path in reversed(missing):
            try:
                os.mkdir(path, FOLDER_MODE)  # the umask may remove more (umask 077: 0700), never add
            except FileExistsError:
                if not os.path.isdir(path):
                    raise _in_the_way(path) from None
                continue  # another writer's
            made.append(path)
    except BaseException:
        remove_made(made)
        raise
    return made


def remove_made(made: list[Path]) -> None:
    """Undo :func:`make_folders`: remove the folders it created, innermost first, each only if it
    is empty (another writer may have put something in it meanwhile: then it and those above stay)."""
    for path in reversed(made):
        try:
            os.rmdir(path)
        except FileNotFoundError:
            continue
        except OSError:
            return
    del made[:]


@contextmanager
def folders_made(folder: Path) -> Iterator[list[Path]]:
    """:func:`make_folders` for the length of a block: what it created is removed if the block fails."""
    made = make_folders(folder)
    try:
        yield made
    except BaseException:
        remove_made(made)
        raise


@contextmanager
def new_folder(folder: Path, *, mode: int = FOLDER_MODE, sync: bool = True) -> Iterator[Path]:
    """Assemble a new ``folder`` under a temporary name and rename it into place whole.

    Yields the temporary folder to fill. On success it gets ``mode`` and replaces nothing
    (but an empty folder); on any failure it is removed, so a half-built folder is never seen,
    and so are the missing folders above it that were created for it.
    """
    parent = folder.parent
    with folders_made(parent):
        staging = make_staging_dir(parent, folder.name)
        try:
            yield staging
            os.chmod(staging, mode | os.stat(staging).st_mode & 0o2000)  # the setgid bit mkdir gave it stays
            if sync:
                fsync_dir(staging, strict=True)
            pause_at("staged")
            try:
                os.rename(staging, folder)  # replaces nothing but an empty folder
            except OSError:
                if folder.exists():
                    raise OutputExists(f"{folder} appeared while it was being written; nothing was replaced.",
                                       replaceable=False) from None
                raise
            if sync:
                fsync_dir(parent)
        except BaseException:
            remove_tree(staging)
            raise
        finally:
            let_go(staging)
