"""Writing files safely: private keys 0600 from creation, nothing half-written, nothing replaced
without ``force``, nothing written through a symbolic link.

Every file is written to a temporary name beside its target (created with
``O_EXCL | O_NOFOLLOW`` and its final mode, so a key is never readable by
others, whatever the umask), flushed to disk, then renamed into place. A new
folder is assembled under a temporary name and renamed into place whole, so
readers see all of the bundle or none of it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from certkit.errors import CertkitError, OutputExists, UnsafeOutputPath
from certkit.testhooks import pause_at

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
FOLDER_MODE = 0o755


def bundle_names(*, chain: bool, p12: bool = False) -> list[str]:
    """The files of an issued certificate's folder (certbot's names): ``chain.pem`` under an
    intermediate CA, ``bundle.p12`` when asked for."""
    return ["cert.pem", "privkey.pem", "fullchain.pem", "ca.pem"] + (["chain.pem"] if chain else []) + (
        ["bundle.p12"] if p12 else [])


def is_secret(name: str) -> bool:
    return name.endswith(("key.pem", ".p12"))


def _mode_for(name: str) -> int:
    return SECRET_MODE if is_secret(name) else PUBLIC_MODE


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
        _unlink_quietly(path)
        raise
    os.close(fd)


def _random_suffix() -> str:
    # The pid lets a later run tell a dead writer's leftovers from a live one's (see
    # sweep_stale); os.urandom rather than secrets/tempfile, which pull in hashlib and random
    # and cost a few milliseconds of start-up on every one-shot command.
    return f"{os.getpid()}-{os.urandom(8).hex()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_stale(directory: Path, name: str | None = None) -> None:
    """Remove what a killed certkit left while writing ``directory / name`` (any name if
    None): hidden ``.NAME.PID-RANDOM.certkit-tmp`` files and folders whose process is gone
    (they may hold a private key, mode 0600). An ``.old`` folder, the previous bundle set
    aside during a fallback swap, is put back if the bundle itself is missing."""
    prefix = f".{name}." if name is not None else "."
    try:
        entries = [e for e in os.scandir(directory)
                   if e.name.endswith(".certkit-tmp") and e.name.startswith(prefix)]
    except OSError:
        return
    for entry in entries:
        match = _temporary_name().fullmatch(entry.name)
        if not match or (name is not None and match.group(1) != name) or _alive(int(match.group(2))):
            continue
        path, original = Path(entry.path), Path(directory) / match.group(1)
        if match.group(3) and not os.path.lexists(original):
            os.rename(path, original)
        elif entry.is_dir(follow_symlinks=False):
            remove_tree(path)
        else:
            _unlink_quietly(path)


_TEMPORARY_NAME: list = []


def _temporary_name():
    """``.NAME.PID-RANDOM[.old].certkit-tmp``, compiled once (only when a leftover exists)."""
    if not _TEMPORARY_NAME:
        import re

        _TEMPORARY_NAME.append(re.compile(r"\.(.+)\.(\d+)-[0-9a-f]+(\.old)?\.certkit-tmp"))
    return _TEMPORARY_NAME[0]


def make_staging_dir(parent: Path, name: str) -> Path:
    """Create a new, empty, private (0700) folder beside ``parent / name`` to assemble it in."""
    for _attempt in range(100):
        staging = parent / f".{name}.{_random_suffix()}.certkit-tmp"
        try:
            os.mkdir(staging, 0o700)
        except FileExistsError:
            continue
        return staging
    raise FileExistsError(f"Could not create a temporary folder in {parent}.")


def remove_tree(path: Path) -> None:
    import shutil  # only on failure paths

    shutil.rmtree(path, ignore_errors=True)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _fsync_dir(path: Path) -> None:
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


def check_writable(folder: Path, names: list[str], *, force: bool) -> None:
    """Raise if writing ``names`` into ``folder`` would replace files without ``force``,
    or go through a symbolic link."""
    if folder.is_symlink():
        raise UnsafeOutputPath(
            f"The output folder {folder} is a symbolic link; certkit does not write through "
            "links. Give the real path with --out."
        )
    if folder.exists() and not folder.is_dir():
        raise OutputExists(f"{folder} exists and is not a folder.")
    if not folder.exists():
        return
    _check_folder_owner(folder)
    existing = [n for n in names if os.path.lexists(folder / n)]
    links = [n for n in existing if (folder / n).is_symlink() or not (folder / n).is_file()]
    if links:
        raise UnsafeOutputPath(
            f"{folder / links[0]} is a symbolic link or not a regular file; certkit will not "
            "replace it. Remove it or choose another folder."
        )
    if existing and not force:
        raise OutputExists(
            f"{folder} already holds {', '.join(existing)}; pass --force to replace "
            f"{'it' if len(existing) == 1 else 'them'}."
        )


def replace_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` atomically (temporary file beside it, then rename), replacing what is there."""
    path = Path(path)
    sweep_stale(path.absolute().parent, path.name)
    tmp = path.with_name(f".{path.name}.{_random_suffix()}.certkit-tmp")
    try:
        write_new_file(tmp, data, mode)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(path.absolute().parent)


def _check_folder_owner(folder: Path) -> None:
    """Refuse a folder that someone else controls: its owner (or anyone, if it is
    writable by all without the sticky bit) could swap the files after certkit wrote them."""
    info = folder.stat()
    me = os.geteuid()
    if info.st_uid not in (me, 0):
        raise UnsafeOutputPath(
            f"The output folder {folder} belongs to another user (uid {info.st_uid}), who could replace "
            "the files certkit writes there; choose a folder of your own with --out."
        )
    if info.st_mode & 0o002 and not info.st_mode & 0o1000:
        raise UnsafeOutputPath(
            f"The output folder {folder} is writable by every user, who could replace the files certkit "
            "writes there; choose a private folder with --out."
        )


def write_bundle(folder: Path, files: Mapping[str, bytes], *, force: bool = False,
                 sync: bool = True, sweep: bool = True) -> list[Path]:
    """Write ``files`` (name -> content) into ``folder``; return the paths written.

    Secrets (``*key.pem``, ``*.p12``) get mode 0600, others 0644. With ``sync``
    False nothing is fsynced: the files are complete and atomically in place for
    readers, but durable only after the caller syncs (``issue-batch`` does it per chunk).
    """
    folder = Path(folder)
    if sweep:  # a batch sweeps its output folder once instead (see sweep_stale)
        sweep_stale(folder.parent, folder.name)
        if folder.is_dir() and not folder.is_symlink():
            sweep_stale(folder)
    check_writable(folder, list(files), force=force)
    try:
        if not folder.exists():
            _write_new_folder(folder, files, sync)
        else:
            _replace_in_folder(folder, files, sync)
    except OSError as exc:
        raise CertkitError(f"Cannot write the bundle in {folder}: {exc.strerror or exc}.") from None
    return [folder / name for name in files]


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
            _fsync_dir(staging)
        pause_at("staged")
        try:
            os.rename(staging, folder)  # replaces nothing but an empty folder
        except OSError:
            if folder.exists():
                raise OutputExists(
                    f"{folder} appeared while it was being written; nothing was replaced."
                ) from None
            raise
        if sync:
            _fsync_dir(parent)
    except BaseException:
        remove_tree(staging)
        raise


def _write_new_folder(folder: Path, files: Mapping[str, bytes], sync: bool = True) -> None:
    with new_folder(folder, sync=sync) as staging:
        for name, data in files.items():
            write_new_file(staging / name, data, _mode_for(name), sync=sync)


def _replace_in_folder(folder: Path, files: Mapping[str, bytes], sync: bool = True) -> None:
    temps: dict[str, Path] = {}
    try:
        for name in files:
            temps[name] = folder / f".{name}.{_random_suffix()}.certkit-tmp"
            write_new_file(temps[name], files[name], _mode_for(name), sync=sync)
        # Each rename is atomic, the set is not: everything is written and flushed
        # first so the renames run back to back in microseconds.
        pause_at("staged")
        for name in list(temps):
            os.rename(temps.pop(name), folder / name)
        if sync:
            _fsync_dir(folder)
    finally:
        for tmp in temps.values():
            _unlink_quietly(tmp)


def replace_folder(folder: Path, files: Mapping[str, bytes], *, drop: tuple[str, ...] = ()) -> list[Path]:
    """Replace the bundle in the existing ``folder`` in one step; return the paths of ``files``.

    A complete new folder is assembled beside the old one: ``files`` written,
    every other entry of the old folder carried across (hard-linked, so a kept
    private key stays the very same file) except the names in ``drop``. Then
    the two folders are exchanged atomically with Linux's ``renameat2(...,
    RENAME_EXCHANGE)``, so a reader opening ``cert.pem`` and ``privkey.pem`` sees
    the old pair or the new pair, never one of each. Where that call is missing
    (other systems, some file systems) the old folder is renamed aside and the
    new one renamed into place: for an instant the folder is absent, but still
    never mismatched. A process killed at any point leaves the old or the new
    bundle in place, plus at most a hidden ``*.certkit-tmp`` folder.
    """
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        raise UnsafeOutputPath(f"{folder} is not a folder (or is a symbolic link); certkit will not replace it.")
    parent = folder.absolute().parent
    sweep_stale(parent, folder.name)
    try:
        staging = make_staging_dir(parent, folder.name)
    except OSError as exc:
        raise CertkitError(f"Cannot write the bundle in {folder}: {exc.strerror or exc}.") from None
    try:
        for name, data in files.items():
            write_new_file(staging / name, data, _mode_for(name))
        for entry in os.scandir(folder):
            if entry.name in files or entry.name in drop or entry.name.endswith(".certkit-tmp"):
                continue
            _carry_over(Path(entry.path), staging / entry.name)
        info = os.stat(folder)
        os.chmod(staging, info.st_mode & 0o7777)
        if hasattr(os, "chown") and os.geteuid() == 0:
            os.chown(staging, info.st_uid, info.st_gid)
        _fsync_dir(staging)
        pause_at("staged")
        if not _exchange(staging, folder):
            _swap_by_renames(staging, folder)
        _fsync_dir(parent)
        pause_at("swapped")
    except OSError as exc:
        remove_tree(staging)
        raise CertkitError(f"Cannot write the bundle in {folder}: {exc.strerror or exc}.") from None
    except BaseException:
        remove_tree(staging)
        raise
    remove_tree(staging)  # after the exchange it holds the old bundle
    return [folder / name for name in files]


def _carry_over(source: Path, target: Path) -> None:
    import shutil  # renewal only

    if source.is_symlink():
        os.symlink(os.readlink(source), target)
    elif source.is_dir():
        shutil.copytree(source, target, symlinks=True)
    else:
        try:
            os.link(source, target)
        except OSError:  # file systems without hard links
            shutil.copy2(source, target)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
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


def _swap_by_renames(new: Path, folder: Path) -> None:
    """The portable fallback: old folder aside, new folder in; ``new`` ends up holding the old bundle."""
    aside = new.with_name(new.name.replace(".certkit-tmp", ".old.certkit-tmp"))
    os.rename(folder, aside)
    try:
        os.rename(new, folder)
    except BaseException:
        os.rename(aside, folder)
        raise
    os.rename(aside, new)
