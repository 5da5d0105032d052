"""The file steps of a one-output format (:mod:`certkit.formats.output`): a private temporary file beside the
output, written whole, then put in place (replacing a file only with force)."""

from __future__ import annotations

import os
from pathlib import Path

from certkit.errors import CertkitError, OutputExists
from certkit.text import shown


def create_temporary(path: Path) -> tuple[Path, int, list[Path]]:
    """A new private (0600) file beside ``path``, named so that a later run can tell a dead
    writer's leftover (it may hold keys) and remove it; and the folders above ``path`` created
    for it (for :func:`certkit.atomic.remove_made` if the file is given up)."""
    from certkit.atomic import SECRET_MODE, folders_made, sweep_stale, temporary_name

    with folders_made(path.parent) as made:
        sweep_stale(path.parent, path.name)
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
            os.fchmod(fd, SECRET_MODE)  # whatever the umask
            _hold(fd)
            return tmp, fd, made
        raise FileExistsError(f"Could not create a temporary file beside {path}.")


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
            os.link(tmp, path)  # fails if something appeared there meanwhile: nothing is replaced
            unlink_quiet(tmp)
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


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def unlink_quiet(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass

