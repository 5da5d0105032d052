"""Swapping a new folder for an old one in one step: Linux's ``renameat2(RENAME_EXCHANGE)``
(:func:`exchange`), or, where that is not available, two renames that undo themselves when the second
fails (:func:`swap_by_renames`)."""

from __future__ import annotations

import os
from pathlib import Path

from certkit.atomic import TEMP_SUFFIX

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux >= 3.15); False where that is not available."""
    return renameat2(a, b, _RENAME_EXCHANGE)


def renameat2(source: Path, target: Path, flags: int) -> bool:
    """Linux's ``renameat2(2)`` of ``source`` to ``target`` with ``flags`` (``RENAME_EXCHANGE``, ``RENAME_NOREPLACE``:
    FileExistsError if ``target`` exists); False where the system or the file system cannot do it (then nothing was
    renamed)."""
    import sys

    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    import errno

    try:
        call = ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28, musl >= 1.2.5
    except (OSError, AttributeError):
        return False
    call.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    call.restype = ctypes.c_int
    if call(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
        return False
    raise OSError(err, os.strerror(err), str(target))


def swap_by_renames(new: Path, folder: Path) -> Path:
    """The portable fallback: old folder aside, new folder in; returns where the old one is: ``new``, or the name
    it was set aside under if it cannot be renamed there (the new folder is in place all the same)."""
    aside = new.with_name(new.name.replace(TEMP_SUFFIX, ".old" + TEMP_SUFFIX))
    os.rename(folder, aside)
    try:
        os.rename(new, folder)
    except BaseException:
        os.rename(aside, folder)
        raise
    try:
        os.rename(aside, new)
    except OSError:
        return aside
    return new
