"""Atomic file-system steps: a file or a folder appears whole or not at all.

Every file is written to a temporary name beside its target (created with
``O_EXCL | O_NOFOLLOW`` and its final mode, so a key is never readable by
others, whatever the umask), flushed to disk, then renamed into place. A new
folder is assembled under a temporary name and renamed into place whole.
Temporary names carry the writer's pid (``.NAME.PID-RANDOM.certkit-tmp``), so
a later run can tell a dead writer's leftovers (which may hold a private key)
from a live one's and remove them (:func:`sweep_stale`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from certkit.errors import OutputExists
from certkit.testhooks import pause_at

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
    return True


def write_new_file(path: Path, data: bytes, mode: int, *, sync: bool = True) -> None:
    """Create ``path`` (which must not exist) with exactly ``mode``, write it, and fsync it
    unless ``sync`` is False (a batch syncs many files at once instead)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have removed bits; make the mode exact
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


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def make_staging_dir(parent: Path, name: str) -> Path:
    """Create a new, empty, private (0700) folder beside ``parent / name`` to assemble it in."""
    for _attempt in range(100):
        staging = parent / temporary_name(name)
        try:
            os.mkdir(staging, 0o700)
        except FileExistsError:
            continue
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
        if not parsed or (name is not None and parsed[0] != name) or alive(parsed[1]):
            continue
        original, _pid, is_old = parsed
        path, target = Path(entry.path), Path(directory) / original
        if is_old and not os.path.lexists(target):
            os.rename(path, target)
        elif entry.is_dir(follow_symlinks=False):
            remove_tree(path)
        else:
            unlink_quietly(path)


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


@contextmanager
def new_folder(folder: Path, *, mode: int = FOLDER_MODE, sync: bool = True) -> Iterator[Path]:
    """Assemble a new ``folder`` under a temporary name and rename it into place whole.

    Yields the temporary folder to fill. On success it gets ``mode`` and replaces nothing
    (but an empty folder); on any failure it is removed, so a half-built folder is never seen.
    """
    parent = folder.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = make_staging_dir(parent, folder.name)
    try:
        yield staging
        os.chmod(staging, mode)
        if sync:
            fsync_dir(staging)
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


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux >= 3.15); False where that is not available."""
    import sys

    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import errno

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28, musl >= 1.2.5
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap_by_renames(new: Path, folder: Path) -> None:
    """The portable fallback: old folder aside, new folder in; ``new`` ends up holding the old one."""
    aside = new.with_name(new.name.replace(TEMP_SUFFIX, ".old" + TEMP_SUFFIX))
    os.rename(folder, aside)
    try:
        os.rename(new, folder)
    except BaseException:
        os.rename(aside, folder)
        raise
    os.rename(aside, new)
