"""One writer of a bundle folder (or output file) at a time: :func:`folders_held`, with one ``fcntl`` byte-range
lock per folder in the CA directory's :data:`LOCK_FILE`, shared by the threads of a process and dropped by the
kernel when the process ends."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from certkit.atomic import SECRET_MODE
from certkit.errors import CertkitError
from certkit.paths import absolute
from certkit.text import shown

LOCK_FILE = ".certkit-bundles.lock"  # in the CA directory: one byte-range lock per bundle folder
LOCK_WAIT = 120.0  # seconds: writing a bundle takes milliseconds; longer means a writer is stuck


@contextmanager
def folders_held(ca_dir: Path | None, places: Iterable[Path], *, wait: float = LOCK_WAIT) -> Iterator[None]:
    """Hold the bundle folders (or output files) ``places`` for this process alone, waiting (at most
    ``wait`` seconds, Ctrl-C still works) while another certkit process holds one.

    The locks are ``fcntl`` byte ranges of :data:`LOCK_FILE` in the CA directory ``ca_dir``, one
    byte per folder (its resolved path, hashed), taken in order so that two writers never wait for
    each other; the kernel drops them when the process ends, however it ends. They are on the file,
    not the folder, which a renewal swaps for another. A CA directory where the lock file cannot be
    made (read-only media) holds nothing: the inventory's own checks still refuse a second renewal.
    """
    import fcntl
    import hashlib
    import time

    parents: dict[str, str] = {}  # resolved once for the thousands of folders of a batch's chunk

    def resolved(place: Path) -> str:  # the folder itself is no link: certkit does not write through one
        head, name = os.path.split(absolute(place))
        return os.path.join(parents.get(head) or parents.setdefault(head, os.path.realpath(head)), name)

    slots = {int.from_bytes(hashlib.sha256(os.fsencode(resolved(p))).digest()[:7], "big"): p for p in places}
    opened = _LockFile.of(ca_dir) if slots and ca_dir is not None else None
    taken: list[int] = []
    try:
        for slot in sorted(slots) if opened is not None else ():
            deadline = time.monotonic() + wait
            while not opened.hold(fcntl, slot):
                if time.monotonic() > deadline:
                    raise CertkitError(f"Another certkit command has been writing {shown(slots[slot])} for over "
                                       f"{wait:.0f} seconds; nothing was written. Try again once it is done.")
                time.sleep(0.02)
            taken.append(slot)
        yield
    finally:
        if opened is not None:
            opened.release(fcntl, taken)


class _LockFile:
    """The lock file of one CA directory, open once per process while any of its byte ranges is held:
    a holder may nest (a command holds its output file for its whole run; delivering into it holds it
    again), and closing any descriptor of a file drops every lock the process has on it, so it is
    closed only when the last is released. Threads share it: ``users`` counts the holders of the descriptor
    (under :data:`_GUARD`), so that one thread never closes it while another uses it, or closes the number
    of a file opened since."""

    _open: dict[str, "_LockFile"] = {}
    _pid = os.getpid()

    def __init__(self, fd: int) -> None:
        self.fd, self.counts, self.users = fd, {}, 0

    @classmethod
    def of(cls, ca_dir: Path) -> "_LockFile | None":
        with _GUARD:
            if cls._pid != os.getpid():  # a forked child holds none of its parent's locks
                cls._open, cls._pid = {}, os.getpid()
            key = os.path.realpath(Path(ca_dir) / LOCK_FILE)
            if key not in cls._open:
                fd = _lock_file(ca_dir)
                if fd is None:
                    return None
                cls._open[key] = cls(fd)
            cls._open[key].users += 1
            return cls._open[key]

    def hold(self, fcntl, slot: int) -> bool:
        """Take byte ``slot`` (already held here: nested); False while another process holds it."""
        with _GUARD:
            if not self.counts.get(slot) and not _try_lock(fcntl, self.fd, slot):
                return False
            self.counts[slot] = self.counts.get(slot, 0) + 1
            return True

    def release(self, fcntl, slots: list[int]) -> None:
        with _GUARD:
            self._release(fcntl, slots)

    def _release(self, fcntl, slots: list[int]) -> None:
        self.users -= 1
        for slot in slots:
            self.counts[slot] -= 1
            if not self.counts[slot]:
                del self.counts[slot]
                try:
                    fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, slot)
                except OSError:
                    pass
        if not self.users:
            for key, opened in list(self._open.items()):
                if opened is self:
                    del self._open[key]
            os.close(self.fd)  # releases every lock this process holds on the file


_GUARD = threading.Lock()  # the lock files' bookkeeping, for the threads of a process
os.register_at_fork(after_in_child=lambda: globals().update(_GUARD=threading.Lock()))  # held by a thread not forked


def _lock_file(ca_dir: Path) -> int | None:
    try:
        return os.open(Path(ca_dir) / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, SECRET_MODE)
    except OSError:
        return None


def _try_lock(fcntl, fd: int, slot: int) -> bool:
    """Lock byte ``slot`` of ``fd``: True once held, False while another process holds it."""
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, slot)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return False
        return True  # no locks on this file system (ENOLCK): as if there were no lock file
    return True
