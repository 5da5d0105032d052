"""Making what a batch wrote durable at once: ``syncfs(2)`` of each file system written to, so that a
write-back error is raised, in words (:func:`flushed_together`), or added to the words of a write that
failed part-way (:func:`flush_after_failure`); ``sync()`` where there is no ``syncfs``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from certkit.atomic import close_quietly
from certkit.errors import CertkitError
from certkit.text import shown


@contextmanager
def flushed_together(places: list[Path]) -> Iterator[Callable[[], None]]:
    """Make what is written under ``places`` durable at once (a batch's chunk): yields ``flush``, which syncs each
    file system they are on with ``syncfs(2)``, through a folder opened here, before the writes, so that a write-back
    error of any of them is raised (Linux 5.8 and later report it there; ``sync()`` reports nothing). Where there is no
    ``syncfs``, ``flush`` is ``sync()``."""
    syncfs = _syncfs() if places else None
    opened: dict[int, tuple[int, Path]] = {}  # st_dev: (a folder's descriptor, that folder)
    seen: set[Path] = set()
    try:
        for place in places if syncfs is not None else ():
            here = Path(place)
            while not os.path.isdir(here) and here != here.parent:  # the folder, else the nearest one above it
                here = here.parent
            if here in seen:
                continue
            seen.add(here)
            with suppress(OSError):  # not there now: its writes fail, and say so, themselves
                fd = os.open(here, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
                if os.fstat(fd).st_dev in opened:
                    close_quietly(fd)
                else:
                    opened[os.fstat(fd).st_dev] = (fd, here)

        def flush() -> None:
            if not opened:
                os.sync()
            for fd, folder in opened.values():
                if syncfs(fd) != 0:
                    import ctypes

                    err = ctypes.get_errno()
                    raise CertkitError(
                        f"The disk under {shown(folder)} failed to store what was just written to it "
                        f"({os.strerror(err).lower()}, as the file system said when it was flushed): the bundles "
                        "are in place and recorded, but may be damaged or lost if the machine stops before that "
                        "disk recovers; check it (and then the bundles).")
        yield flush
    finally:
        for fd, _folder in opened.values():
            close_quietly(fd)


def flush_after_failure(places: list[Path], failure: BaseException | None) -> None:
    """Make what was written under ``places`` durable once a write part-way failed (``failure``, on its way up), as a
    chunk's :func:`flushed_together` does: a write-back error it reports is added to ``failure``'s words (an error
    certkit says), not raised over it (``sync()``, which did this before, reports none)."""
    try:
        with flushed_together(places) as flush:
            flush()
    except CertkitError as exc:
        if isinstance(failure, CertkitError) and failure.args and isinstance(failure.args[0], str):
            failure.args = (f"{failure.args[0].rstrip()} {exc}", *failure.args[1:])


def _syncfs():
    """libc's ``syncfs``, or None (not Linux, or too old a C library)."""
    import ctypes

    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs  # glibc >= 2.14, musl
    except (OSError, AttributeError):
        return None
    syncfs.argtypes, syncfs.restype = [ctypes.c_int], ctypes.c_int
    return syncfs
