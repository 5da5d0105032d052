"""The file steps of a one-output format (:mod:`certkit.formats.output`): a private temporary file beside the
output, written whole, then put in place (replacing a file only with force)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from certkit.errors import CertkitError, OutputExists
from certkit.text import shown


def refuse_missing_folder(path: Path, text: str | None = None) -> None:
    """Refuse an output file whose folder does not exist, naming the first missing folder as the user spelled it
    (``text``, else ``path``): certkit creates none for it (mkcert, cfssl and openssl do not either): a mistyped
    ``--out`` would put keys in a new folder nobody looks at."""
    given = Path(text if text is not None else path)
    missing = None
    for above in given.parents:
        if os.path.isdir(above):
            break
        missing = above
    if missing is not None:
        raise CertkitError(f"The folder {shown(missing)} does not exist (no such file or directory), so the output "
                           f"file {shown(given)} cannot be written: certkit creates no folder for an output file. "
                           f"Create it first (mkdir -p {shown(given.parent)}) or correct the path; nothing was issued.")


def create_temporary(path: Path) -> tuple[Path, int, list[Path]]:
    """A new private (0600) file beside ``path``, named so that a later run can tell a dead
    writer's leftover (it may hold keys) and remove it; and the folders created for it, always none now (an
    output file's folder must exist: :func:`refuse_missing_folder`), as callers from before that read it."""
    from certkit.atomic import SECRET_MODE, sweep_dead_files, sweep_stale, temporary_name

    sweep_stale(path.parent, path.name)
    sweep_dead_files(path.parent)  # what a killed writer of another output here left: nothing else removes it
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _attempt in range(100):
        tmp = path.with_name(temporary_name(path.name))
        try:
            fd = os.open(tmp, flags, SECRET_MODE)
        except FileExistsError:
            continue
        except OSError as exc:  # said of the output, not of a temporary name nobody gave (/proc/version)
            from certkit.bundle import os_reason

            raise CertkitError(f"Cannot write {shown(path)}: {os_reason(exc)} (in {shown(path.parent)}); "
                               "nothing was put in place.") from None
        _make_private(fd, tmp, path)
        _hold(fd)
        return tmp, fd, []
    raise FileExistsError(f"Could not create a temporary file beside {path}.")


def _make_private(fd: int, tmp: Path, path: Path) -> None:
    """Make the new temporary file ``tmp`` (open as ``fd``) exactly 0600, whatever the umask; where the file system
    cannot (a vfat or exFAT mount, whose modes are the mount's: chmod fails, or does nothing under its ``quiet``
    option), it is removed and the output refused: the file holds private keys."""
    from certkit.atomic import SECRET_MODE

    try:
        os.fchmod(fd, SECRET_MODE)
        mode = os.fstat(fd).st_mode & 0o777
    except OSError as exc:
        mode, reason = None, f"{exc.strerror or exc}"
    if mode == SECRET_MODE:
        return
    os.close(fd)
    unlink_quiet(tmp)
    said = f"its files get mode {mode:04o}" if mode is not None else f"chmod fails there: {reason}"
    raise CertkitError(f"Cannot write {shown(path)}: the file system in {shown(path.parent)} keeps no file modes of "
                       f"its own ({said}; a vfat or exFAT mount?), so the file could not be made private (mode "
                       "0600, as every --format output is written: most hold private keys); nothing was written. "
                       "Write it to a Linux file system and copy it over, or mount that one with fmask=0177 (its "
                       "files then 0600).")


def _hold(fd: int) -> None:
    """Hold the temporary file (open as ``fd``) while it is written (a batch may take hours): to every other
    certkit it is a live writer's, whatever its pid says (:func:`certkit.atomic.writer_gone`)."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pass


def place(tmp: Path, path: Path, *, force: bool, sync: bool) -> None:
    """Rename the finished ``tmp`` to ``path``: replacing a file only with ``force``."""
    from certkit.atomic import fsync_dir

    try:
        if force:
            os.replace(tmp, path)
        else:
            put_new(tmp, path)
    except FileExistsError:
        unlink_quiet(tmp)
        raise OutputExists(f"{shown(path)} appeared while it was being written; nothing was replaced.",
                           replaceable=False) from None
    except OSError as exc:  # said of the output, not of a temporary name nobody gave
        from certkit.bundle import os_reason

        unlink_quiet(tmp)
        left = (f"; its temporary file {shown(tmp)} holds private keys and could not be removed: remove it"
                if os.path.lexists(tmp) else "")
        raise CertkitError(f"Cannot put {shown(path)} in place: {os_reason(exc)}{left}.") from None
    if sync:
        fsync_dir(path.parent)


# What link(2) fails with where the file system has no hard links: vfat and exFAT (a USB stick) say EPERM, some
# FUSE and network file systems EOPNOTSUPP or ENOSYS. The new file is then renamed into place, never over a file.
_NO_LINKS = (errno.EPERM, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP), errno.ENOSYS, errno.EMLINK)
_RENAME_NOREPLACE = 1  # renameat2(2)'s flag: fail with EEXIST rather than replace


def put_new(tmp: Path, path: Path) -> None:
    """Put ``tmp`` in place as ``path``, which must not exist: a hard link (fails if something appeared there
    meanwhile) and ``tmp`` removed; on a file system without hard links, a rename that replaces nothing
    (``renameat2(RENAME_NOREPLACE)``), else the name taken with ``O_EXCL`` first and then renamed over."""
    try:
        os.link(tmp, path)
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
    else:
        unlink_quiet(tmp)
        return
    if _rename_noreplace(tmp, path):
        return
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    os.close(os.open(path, flags, 0o600))  # FileExistsError if something is there: nothing is replaced
    try:
        os.replace(tmp, path)
    except BaseException:
        unlink_quiet(path)
        raise


def _rename_noreplace(tmp: Path, path: Path) -> bool:
    """Rename ``tmp`` to ``path`` unless ``path`` exists (FileExistsError); False where the system or the file
    system cannot do that (then nothing was renamed)."""
    from certkit.folder_swap import renameat2

    return renameat2(tmp, path, _RENAME_NOREPLACE)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def unlink_quiet(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass

