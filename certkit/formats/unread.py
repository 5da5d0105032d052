"""What the reader of standard output never read. A reader that closes a pipe early (``issue-batch ... | head``)
leaves in it what certkit had written and it had not read yet: up to the pipe's size (64 KiB on Linux), many
records, which reached nobody. :class:`RecordLog` keeps the size and name of each record written to a pipe, in the
order written (one log for the forked writers of a batch, who write under one lock); when the pipe breaks, the
bytes still in it (``FIONREAD``, which Linux answers on the writing end too) say which records were never read
whole."""

from __future__ import annotations

import json
import os
import stat
from typing import BinaryIO

from certkit.errors import loads_json

SHOWN = 5  # names said of the records never read; the rest are counted


class RecordLog:
    """The records written to a pipe (standard output), shared by the processes forked after it is made."""

    def __init__(self, stream: BinaryIO) -> None:
        import tempfile

        self.fd: int | None = None
        self.partial = 0  # bytes of the record being written that went into the pipe before it broke
        try:
            if not stat.S_ISFIFO(os.fstat(stream.fileno()).st_mode) or _same_pipe(stream.fileno(), 2):
                return  # a file is read whole later; a pipe shared with standard error holds its lines too
        except (OSError, ValueError, AttributeError):
            return
        with tempfile.TemporaryFile(prefix="certkit-records-") as log:  # gone with the process
            self.fd = os.dup(log.fileno())

    def send(self, stream: BinaryIO, data: bytes, name: str) -> None:
        """Write the record ``data`` (of ``name``) to ``stream``'s descriptor, counting what went in; then log it."""
        stream.flush()
        fd, view, self.partial = stream.fileno(), memoryview(data), 0
        while view:
            sent = os.write(fd, view)
            view, self.partial = view[sent:], self.partial + sent
        self.partial = 0
        if self.fd is not None:
            os.write(self.fd, f"{len(data)} {json.dumps(name)}\n".encode("ascii"))

    def never_read(self, stream: BinaryIO) -> str:
        """Once the pipe broke: a sentence naming the records the reader never read whole, or ``""``."""
        import fcntl
        import struct
        import termios

        if self.fd is None:
            return ""
        try:
            left = struct.unpack("i", fcntl.ioctl(stream.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0] - self.partial
            os.lseek(self.fd, 0, os.SEEK_SET)
            with os.fdopen(os.dup(self.fd), "rb") as log:
                written = [line.split(b" ", 1) for line in log]
        except (OSError, ValueError, AttributeError):
            return ""
        names: list[str] = []
        for size, name in reversed(written):  # the last records written are the ones still in the pipe
            if left <= 0:
                break
            names.append(loads_json(name))
            left -= int(size)
        if not names:
            return ""
        names.reverse()
        shown = ", ".join(names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")
        count = "1 record" if len(names) == 1 else f"{len(names)} records"
        return (f" It never read whole the last {count} written to it ({shown}): those certificates are recorded "
                "valid, but nobody received them or their keys; issue them again too.")


def record_log(stream: BinaryIO) -> RecordLog | None:
    """A :class:`RecordLog` for ``stream`` when it is a pipe of its own (not standard error's too), else None."""
    log = RecordLog(stream)
    return log if log.fd is not None else None


def _same_pipe(fd: int, other: int) -> bool:
    try:
        one, two = os.fstat(fd), os.fstat(other)
    except OSError:
        return False
    return (one.st_dev, one.st_ino) == (two.st_dev, two.st_ino)
