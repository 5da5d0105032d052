"""Reading what users point certkit at: bounded, and refusing secrets that others can read.

Every file argument is read through :func:`read_limited`, so ``/dev/zero`` or a
mistaken multi-gigabyte path is refused with a sentence instead of growing
memory until the kernel kills the process. ``-`` means standard input
wherever a command reads a file.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import sys
import time
from pathlib import Path

from certkit.errors import CertkitError, InputTooLarge, UnreadableFile, UnsafeSecretFile
from certkit.text import shown

STDIN = "-"


# Within :func:`reading_once`: what standard input and pipes (<(cat cert.pem)) gave, by path, for a second reader
# (verify --purpose peer reads its certificate once per purpose; a pipe gives its bytes once).
_ONCE: dict | None = None


class reading_once:  # noqa: N801 (a context manager, used as a function)
    """While active, a second :func:`read_limited` of standard input or of a pipe gets the bytes the first got."""

    def __enter__(self) -> None:
        global _ONCE
        self.outer, _ONCE = _ONCE, {} if _ONCE is None else _ONCE

    def __exit__(self, *exc) -> None:
        global _ONCE
        _ONCE = self.outer


def read_limited(path: str | Path, limit: int, *, what: str = "file") -> bytes:
    """The bytes of ``path`` (``-``: standard input), refusing anything larger than ``limit``.

    The read stops at ``limit + 1`` bytes whatever the file claims to be, so
    endless devices and growing files are refused too.
    """
    once = _ONCE
    if once is not None and str(path) in once:
        return once[str(path)]
    data = _read_limited(path, limit, what=what)
    if once is not None and (str(path) == STDIN or not os.path.isfile(path)):
        once[str(path)] = data
    return data


def _read_limited(path: str | Path, limit: int, *, what: str) -> bytes:
    if str(path) == STDIN:
        stream = sys.stdin.buffer
        data = stream.read(limit + 1)
        name = "standard input"
    else:
        name = shown(path)
        try:
            with open_to_read(path, f"{what} {name}") as f:
                data = f.read(limit + 1)
        except IsADirectoryError:
            raise CertkitError(f"The {what} {name} is a folder, not a file.") from None
        except OSError as exc:
            raise UnreadableFile(f"Cannot read the {what} {name}: {exc.strerror or exc}.", exc.errno) from None
    if len(data) > limit:
        subject = f"The {what} on standard input" if name == "standard input" else f"The {what} {name}"
        raise InputTooLarge(f"{subject} is larger than {_size(limit)}; "
                            f"a {what} is much smaller, so this is not the file you meant.")
    return data


def open_to_read(path: str | Path, the: str):
    """``path`` opened for reading (binary, buffered); ``the``: what messages call it after "The" ("certificate
    file cert.pem"). A named pipe (FIFO) is opened without waiting for a writer, as open() would forever: one that
    no program writes to is refused at once; one a program writes to (``<(pass show ca)``, ``producer > fifo &``)
    is then read as a file is, however long its program takes to write."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            first = _first_byte(fd)
            if first is None:  # no writer: nothing will ever come
                raise CertkitError(f"The {the} is a named pipe (FIFO) that no program is writing to; give a file, "
                                   "or start the program that writes to it first.")
            os.set_blocking(fd, True)
            return io.BufferedReader(_Prefixed(fd, first))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _first_byte(fd: int) -> bytes | None:
    """The first byte of the pipe ``fd`` (opened without blocking), b"" when a writer is there but has written
    nothing yet (or wrote nothing and left an unnamed pipe), None when a named pipe has no writer. A writer
    waiting in open() for a reader (``producer > fifo &``) joins as this one opened it: it is given a second."""
    for _ in range(20):
        try:
            first = os.read(fd, 1)
        except BlockingIOError:  # a writer is there, with nothing written yet: the read waits for it, as a file's
            return b""
        if first or _is_anonymous_pipe(fd):
            return first
        time.sleep(0.05)
    return None


def _is_anonymous_pipe(fd: int) -> bool:
    """Whether ``fd`` is a pipe that has no name in a file system (``<(...)``, /dev/fd/N): its writer, started
    with it, wrote nothing and left (an empty input, said as such), where a named one may have no writer yet."""
    read, write = os.pipe()
    try:
        return os.fstat(fd).st_dev == os.fstat(read).st_dev
    finally:
        os.close(read)
        os.close(write)


class _Prefixed(io.RawIOBase):
    """The pipe ``fd``, whose first bytes were read already (to learn whether it has a writer)."""

    def __init__(self, fd: int, first: bytes) -> None:
        super().__init__()
        self._fd, self._first = fd, first

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def readinto(self, buffer) -> int:
        data = self._first or os.read(self._fd, len(buffer))
        self._first = self._first[len(data):]
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


# The files this process's command was given to read (its passphrase or password file, manifest, CSR), by
# (device, inode) -> how it was given: no bundle written or replaced removes or writes over one (bundle.check_writable).
_GIVEN_INPUTS: dict[tuple[int, int], str] = {}


def keep_input(path: str | os.PathLike, given: str) -> None:
    """Record the regular file ``path`` as one the command reads, given as ``given`` (an option's name): writing a
    bundle never replaces nor removes it, even with --force (its only copy of a passphrase would be gone)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return
    if stat.S_ISREG(st.st_mode):
        _GIVEN_INPUTS.setdefault((st.st_dev, st.st_ino), given)


def forget_inputs() -> None:
    """A new command starts: no file given to it yet."""
    _GIVEN_INPUTS.clear()


def given_input(path: str | os.PathLike) -> str | None:
    """How ``path`` was given to this command to read (:func:`keep_input`), if it is such a file."""
    try:
        st = os.lstat(path)
    except (OSError, ValueError):
        return None
    return _GIVEN_INPUTS.get((st.st_dev, st.st_ino)) if stat.S_ISREG(st.st_mode) else None


def _size(n: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def is_link_loop(path: str | bytes | os.PathLike) -> bool:
    """Whether following ``path``'s symbolic links never ends (ELOOP): ``a -> b -> a``, or one of the
    folders on its way such a loop. Nothing can be read or written there."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    except ValueError:  # a NUL byte: no such path, and said where paths are checked
        return False
    return False


def broken_link(path: str | bytes | os.PathLike) -> str | None:
    """Why ``path`` leads to nothing although a link of that name is there, as a sentence ("a is a loop
    of symbolic links.", "a is a symbolic link to b, which does not exist."); None when it is no such
    link. The one wording for every file argument, read or written."""
    text = os.fsdecode(path)
    if is_link_loop(text):
        return f"{shown(text)} is a loop of symbolic links."
    if os.path.islink(text) and not os.path.exists(text):
        return f"{shown(text)} is a symbolic link to {shown(os.readlink(text))}, which does not exist."
    return None


def not_there(path: str | Path, what: str = "file") -> str:
    """Why a file named by the user cannot be found, as a sentence (see :func:`broken_link`,
    :func:`cannot_reach`)."""
    return broken_link(path) or cannot_reach(path, what) or f"{shown(path)} does not exist."


def cannot_reach(path: str | Path, what: str = "file") -> str | None:
    """Why ``path`` cannot even be looked at (under a folder the user may not search), as :func:`read_limited`
    says a file it cannot open: "Cannot read the file a/b: Permission denied."; None if it can be, or is not there."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    except OSError as exc:  # a loop of links on the way: said by broken_link
        if exc.errno in (errno.EACCES, errno.EPERM):
            return f"Cannot read the {what} {shown(path)}: {exc.strerror or exc}."
    return None


def refused_act(exc: OSError) -> str | None:
    """What ``exc``, a refusal (EACCES, EPERM), refused, as far as the path tells: "write" for a rename or the
    making of what is not there yet (a read of what is not there says "does not exist"), "read" for what this
    user may not read or even look at; None when it cannot be told (a file one may read, refused a write, a
    run or a change of its mode alike)."""
    if exc.filename2 is not None:
        return "write"
    try:
        os.lstat(exc.filename)
    except (FileNotFoundError, NotADirectoryError):
        return "write"
    except (OSError, TypeError, ValueError):
        return "read"
    return None if os.access(exc.filename, os.R_OK) else "read"


def cannot_reach_to_write(path: str | Path, what: str = "file") -> str | None:
    """Why ``path``, a place to write, cannot even be looked at, naming the folder above it the user may not
    search: "Cannot write the folder a/b: permission denied (a)."; None if it can be, or is not there."""
    if cannot_reach(path, what) is None:
        return None
    blocker = unsearchable_above(path)
    return f"Cannot write the {what} {shown(path)}: permission denied{f' ({shown(blocker)})' if blocker else ''}."


def unsearchable_above(path: str | Path) -> Path | None:
    """The first folder above ``path`` that this user may not search (so ``path`` cannot be reached), or None."""
    for above in reversed(Path(path).absolute().parents):
        if not os.access(above, os.X_OK):  # the first folder not searched: one that exists, not one yet to make
            return above if os.path.isdir(above) else None
    return None


def refuse_readable_by_others(path: str | Path, what: str = "secret file") -> None:
    """Refuse a secret file that other users can read or replace (ssh's rule for private keys)."""
    if str(path) == STDIN:
        return
    try:
        info = os.stat(path)
    except OSError as exc:
        raise CertkitError(f"Cannot read the {what} {shown(path)}: {exc.strerror or exc}.") from None
    if not stat.S_ISREG(info.st_mode):
        return  # a pipe or process substitution (<(pass show ca)) has no mode to speak of
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:  # said as the mode is: read, changed, or only a right a secret file gives no one else
        can = [word for bits, word in ((0o044, "read"), (0o022, "change")) if mode & bits]
        why = (f"other users can {' and '.join(can)} it" if can
               else "other users have a right on it (execute), which a secret file gives no one but its owner")
        raise UnsafeSecretFile(f"The {what} {shown(path)} has mode {mode:04o}: {why}. Run: chmod 600 {shown(path)}")
    if info.st_uid not in (os.geteuid(), 0):
        raise UnsafeSecretFile(
            f"The {what} {shown(path)} belongs to another user (uid {info.st_uid}), who can read and replace it; "
            "use a file of your own."
        )


def private_stream(stream, *, change: bool) -> int | None:
    """The mode of a regular file that ``stream`` writes to (``> fleet.jsonl`` under umask 022) if others
    can read it (None when nothing needs changing); with ``change``, the file is made readable by its owner
    only, as ``--out`` creates its file, before private keys go into it. Refused (before anything is
    signed, without ``change``) when certkit could not change it: the file is someone else's."""
    from certkit.errors import CertkitError

    try:
        fd = stream.fileno()
        info = os.fstat(fd)
    except (OSError, ValueError, AttributeError):  # not a real file (a test's capture), or closed
        return None
    if not stat.S_ISREG(info.st_mode) or not info.st_mode & 0o077:
        return None
    mode = stat.S_IMODE(info.st_mode)
    try:
        if not change and info.st_uid != os.geteuid() and os.geteuid() != 0:
            raise PermissionError
        if change:
            os.fchmod(fd, mode & 0o700)
    except OSError:
        raise CertkitError(f"Standard output is a file others can read (mode {mode:04o}) that certkit cannot make "
                           "private; private keys do not go there. Write them with --out FILE, which is created "
                           "0600.") from None
    return mode


def home_folder(env=None) -> Path:
    """``$HOME`` (of ``env``, default the process's) as certkit puts its default CA and finds trust stores
    under it; refused when set but empty (Python reads that as '/'), relative (the place would move with the
    current folder) or not an existing folder (certkit never creates a home). Unset: the account's home."""
    from certkit.text import is_utf8

    value = (os.environ if env is None else env).get("HOME")
    if value is None:
        return Path.home()
    if not is_utf8(value):
        return Path(value)  # the caller's UTF-8 check says so (certkit.store.utf8_path)
    if not value.strip():
        raise CertkitError("$HOME is set but empty (an unset variable?); certkit keeps its default CA and finds "
                           "the browsers' trust stores under it: set it to your home folder.")
    if not os.path.isabs(value):
        raise CertkitError(f"$HOME is '{shown(value)}', not an absolute path: the default CA and the trust stores "
                           "under it would move with the current folder; set it to your home folder.")
    if not os.path.isdir(value):
        raise CertkitError(f"$HOME ({shown(value)}) is not an existing folder; certkit does not create a home "
                           "folder: set $HOME to yours.")
    return Path(value)


def is_regular_file(path: Path, what: str = "certificate file") -> bool:
    """Whether ``path`` is a regular file (through links), as pathlib's is_file(), but for a path the file system
    will not reach (a loop of links, no permission, an I/O error): :class:`UnreadableFile` says that, never taken
    for a file that is not there."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise UnreadableFile(f"Cannot read the {what} {shown(path)}: {exc.strerror or exc}.", exc.errno) from None
