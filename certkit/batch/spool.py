"""The lines an ``issue-batch`` check accepted, kept for issuing to read back instead of the manifest
(:class:`Spool`): parsed, with the request the check worked out, in unnamed temporary files."""

from __future__ import annotations

import heapq
import itertools
import os
import pickle
import struct
from collections.abc import Callable, Iterator
from typing import IO

from certkit.batch.manifest import BatchLine
from certkit.errors import CertkitError
from certkit.scratch import to_scratch


class Spool:
    """The lines a check accepted, as issuing reads them back instead of the manifest: parsed, with
    the request the check worked out, so nothing is parsed twice and what is issued
    is exactly what was checked (a manifest edited meanwhile changes nothing).

    One unnamed temporary file (0600, gone when closed) per checking process, each a sequence of
    chunks in manifest order: a header (chunk number, size) and the chunk's lines, pickled. Issuing
    processes read the chunks they issue with ``pread`` (forked processes share file offsets), so
    memory stays one chunk whatever the manifest's size.
    """

    _HEAD = struct.Struct("<QQ")

    def __init__(self) -> None:
        self.files: list[IO[bytes]] = []
        # Where the --out-dir led as the lines were checked (their folders'), and that folder's device and inode.
        self.out_dir_real: str | None = None
        self.out_dir_id: tuple[int, int] | None = None

    def new_file(self) -> IO[bytes]:
        import tempfile

        handle = tempfile.TemporaryFile("w+b")
        self.files.append(handle)
        return handle

    @classmethod
    def write(cls, handle: IO[bytes], chunk: int, lines: list[BatchLine]) -> None:
        if lines:
            blob = pickle.dumps(lines, protocol=pickle.HIGHEST_PROTOCOL)
            to_scratch(handle.write, cls._HEAD.pack(chunk, len(blob)) + blob)

    def chunks(self, claim: Callable[[], int] | None = None) -> Iterator[list[BatchLine]]:
        """The lines of every chunk, a chunk at a time, in manifest order; with ``claim`` (several
        issuing processes), only the chunks this process claims: ``claim()`` returns the position of
        the next chunk no process has taken yet (shared by them all), so a process that gets less of
        the CPU takes fewer chunks and they all finish together."""
        head = self._HEAD

        def index(fd: int) -> Iterator[tuple[int, int, int, int]]:
            offset = 0
            while len(found := os.pread(fd, head.size, offset)) == head.size:
                chunk, size = head.unpack(found)
                yield chunk, fd, offset + head.size, size
                offset += head.size + size

        # a few numbers per chunk of 500 lines: small for any manifest
        where = list(heapq.merge(*(index(f.fileno()) for f in self.files)))
        claim = claim or itertools.count().__next__
        while (position := claim()) < len(where):
            _chunk, fd, start, size = where[position]
            blob = b""
            while len(blob) < size:
                part = os.pread(fd, size - len(blob), start + len(blob))
                if not part:
                    raise CertkitError("The checked manifest's spool file was cut short; nothing more was issued.")
                blob += part
            yield pickle.loads(blob)

    def close(self) -> None:
        for handle in self.files:
            handle.close()
        self.files = []

    def __enter__(self) -> "Spool":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
