"""Scratch files outside the CA directory: the temporary folder where issue-batch spools its checked
manifest and where SQLite writes its own temporary files (statement journals, sorts, a temporary
database), and failures there in words that name that folder, not the inventory or the output.

A small temporary folder (a tmpfs ``/tmp``, a container's ``emptyDir``) fills up long before the disk
that holds the CA or the bundles: "the disk is full" alone sends the user to the wrong disk.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from certkit.errors import CertkitError
from certkit.text import shown


def python_temp_dir() -> str:
    """The folder Python's ``tempfile`` writes in ($TMPDIR, else /tmp...)."""
    import tempfile

    return tempfile.gettempdir()


def sqlite_temp_dir() -> str:
    """The folder SQLite writes its temporary files in: the first writable folder of $SQLITE_TMPDIR,
    $TMPDIR, /var/tmp, /usr/tmp and /tmp (SQLite's own order on Unix), else the current folder."""
    candidates = [os.environ.get("SQLITE_TMPDIR"), os.environ.get("TMPDIR"), "/var/tmp", "/usr/tmp", "/tmp"]
    for folder in candidates:
        if folder and os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK):
            return folder
    return "."


def free_bytes(folder: str) -> int | None:
    try:
        info = os.statvfs(folder)
    except OSError:
        return None
    return info.f_bavail * info.f_frsize


def scratch_error(exc: OSError, what: str, outcome: str = "") -> CertkitError:
    """``exc``, met writing ``what`` in Python's temporary folder, in words naming that folder."""
    from certkit.bundle import os_reason

    folder = python_temp_dir()
    # Past the file size limit (ulimit -f), room elsewhere does not help: the reason says what does.
    advice = "" if exc.errno == errno.EFBIG else " Free space there, or point $TMPDIR at a folder with room."
    return CertkitError(f"Cannot write {what} in the temporary folder {shown(folder)}: {os_reason(exc)}"
                        f"{'; ' + outcome if outcome else '.'}{advice}")


def to_scratch(step, *args, what: str = "the checked manifest") -> None:
    """``step(*args)``, a write to one of issue-batch's spools of its manifest (before anything is issued);
    a failure (a full temporary folder, not the output's disk) in words naming that folder."""
    try:
        step(*args)
    except OSError as exc:
        raise scratch_error(exc, what, "nothing was issued.") from None


def elsewhere_full(inventory: Path, where: str) -> str | None:
    """The words for SQLite's "disk is full" when the inventory's own file system has room and its
    temporary folder is on another one: most likely its temporary files (a statement journal for a
    large change) filled that folder. None when it cannot be told apart from the inventory's disk."""
    folder = sqlite_temp_dir()
    room = free_bytes(str(inventory.parent))
    try:
        apart = os.stat(folder).st_dev != os.stat(inventory.parent).st_dev
    except OSError:
        return None
    if not apart or room is None or room < 1 << 20:
        return None
    return (f"The inventory {where} cannot be written: SQLite ran out of room, not on the inventory's disk "
            f"({room >> 20} MiB free there) but most likely in its temporary folder {shown(folder)}. Free "
            "space there, or point $SQLITE_TMPDIR at a folder with room.")
