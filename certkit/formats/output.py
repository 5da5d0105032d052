"""Where a one-output format's bytes go: one file (assembled under a temporary name, put in place
whole) or standard output, and the issuing-pipeline target that writes a certificate into it."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from certkit.errors import CertkitError
from certkit.formats.encoding import Encoder
from certkit.formats.output_checks import OutputChecks
from certkit.formats.placing import create_temporary, place, unlink_quiet, write_all
from certkit.issuing import Request, Target
from certkit.paths import absolute
from certkit.testhooks import pause_at
from certkit.text import discard_stdout, shown

if TYPE_CHECKING:
    from certkit.ca import CA, IssuedCert
    from certkit.inventory import Inventory

_MARK_GROUP = 5000  # serials marked per inventory transaction when a batch's file is in place


class OutputClosed(CertkitError):
    """Standard output (or the stream given) could not take the records: its reader closed it (a
    broken pipe: ``certkit issue-batch ... | head -c 100``), or writing to it failed otherwise.
    Raised where the stream is written, so that every command says it in words, and as a
    CertkitError the issuing pipeline and a batch count the certificates written before it (they
    are delivered, and recorded valid)."""


class Output(OutputChecks):
    """One output file (``path``), or standard output (``path`` None), that the certificates of a
    command are written into in one format.

    ``shared``: many certificates go into it (``issue-batch``). A shared file is
    assembled under a temporary name and put in place by :meth:`commit`, which
    also marks its certificates valid; :meth:`abort` removes it and marks them
    abandoned. Several forked worker processes may append to one output: it is
    opened (:meth:`open`) before they start, and each record is written whole,
    under a lock they share.
    """

    def __init__(self, fmt: str, path: str | Path | None = None, *, force: bool = False, shared: bool = False,
                 sync: bool = True, stream: BinaryIO | None = None) -> None:
        from certkit.vocabulary import check_bool

        self.encoder = Encoder(fmt)
        self.format = fmt
        for flag, value in (("force", force), ("shared", shared), ("sync", sync)):
            check_bool(flag, value)
        if path is not None:  # a str or a Path, not empty, UTF-8: as a bundle folder is taken
            from certkit.issued import check_folder

            check_folder(path, what="output file")
        self.given = Path(path) if path is not None else None
        # the real folder above it: one file has one record, whatever path (a link above it) spells it
        self.path = _real_parent(Path(absolute(path))) if path is not None else None
        self.force, self.shared, self.sync = force, shared, sync
        # without a path: this binary stream (default: standard output's, as it is when written to)
        self._stream = stream
        self._tmp: Path | None = None
        self.complete = False  # the shared file is in place and its certificates marked valid
        self.placed = False  # the shared file is in place (its certificates perhaps not yet marked)
        self._out: int | None = None  # the file descriptor a shared file's records go to
        self._spool: int | None = None  # serials written to a shared file, to mark when it is in place
        self._lock = None
        self._pending: list[bytes] = []  # a deferred output's records not yet written (see flush)
        self._serials: list[bytes] = []
        self._names: list[str] = []  # (relayed: each pending record's name)
        # in a batch's worker: records are kept for take(), which hands them to the parent, who writes them in the
        # manifest's order (write_relayed) and, into standard output, marks them valid once written
        self.relayed = False
        self.count = 0
        self.checked = False  # check() ran: a deliver() of its targets asks it once, as the commands do
        self._replaced: dict | None = None  # see replaced()
        self._before: list[str] = []  # see held_before()
        self._appended: set[str] | None = None  # see _refuse_appended_twice()
        self._log = None  # the records written to a pipe (standard output): formats.unread.RecordLog
        self.made_private: int | None = None  # the mode standard output's file had, if check() made it 0600

    # what the inventory records
    @property
    def sink(self) -> str:
        return "file" if self.path is not None else "stream"

    @property
    def deferred(self) -> bool:
        """Whether a certificate is valid only once the whole output is in place (a batch's file)."""
        return self.shared and self.path is not None

    @property
    def file_text(self) -> str | None:
        """The output file as given, for people and --json (``./-``, never ``-``, which means stdout)."""
        if self.given is None:
            return None
        text = str(self.given)
        return f".{os.sep}{text}" if text == "-" else text

    def describe(self) -> str:
        return shown(self.file_text) if self.given is not None else "standard output"

    @property
    def stream(self) -> BinaryIO:
        return self._stream if self._stream is not None else sys.stdout.buffer

    # --- before anything is signed: OutputChecks (certkit.formats.output_checks) ------------
    def target(self, name: str, *, extra: Callable[["IssuedCert"], Mapping[str, bytes]] | None = None
               ) -> "OutputTarget":
        return OutputTarget(self, name, extra=extra)

    # --- writing ------------------------------------------------------------------------
    def open(self) -> None:
        """Start the output: the temporary file beside a shared file's destination (and the list of
        its serials), and the lock its writers share."""
        if self._out is not None:
            return
        if self.path is None:
            from certkit.formats.unread import record_log

            self._to_stream(b"")  # nothing buffered before the workers are forked
            self._out, self._log = -1, record_log(self.stream)  # records go to the stream; which, in a log
        elif self.shared:
            self._tmp, self._out, _none = create_temporary(self.path)
            import tempfile

            spool = tempfile.TemporaryFile(prefix="certkit-serials-")  # gone with the process
            self._spool = os.dup(spool.fileno())
            spool.close()
        if self.shared:
            import multiprocessing

            if "fork" in multiprocessing.get_all_start_methods():
                self._lock = multiprocessing.get_context("fork").Lock()

    def write_one(self, data: bytes) -> None:
        """A single certificate's output, complete: a file written whole and renamed into place,
        or the bytes on standard output."""
        if self.path is None:
            self._to_stream(data + self.encoder.end())
            return
        tmp, fd, _none = create_temporary(self.path)
        try:
            try:
                write_all(fd, data + self.encoder.end())
                if self.sync:
                    os.fsync(fd)
            except OSError as exc:  # said of the output, not of a temporary name nobody gave
                raise self._unwritten(exc) from None
            finally:
                os.close(fd)
            pause_at("staged")
            place(tmp, self.path, force=self.force, sync=self.sync)
        except BaseException:
            unlink_quiet(tmp)
            raise
        pause_at("placed")

    def append(self, data: bytes, serial: str, name: str | None = None) -> None:
        """One certificate's record, written whole (several processes may be writing). A shared
        file's records wait in memory until :meth:`flush` (a batch calls it after each chunk):
        they are not valid before the whole file is in place anyway."""
        if self._out is None:
            raise CertkitError("The output was not opened before writing.")
        self.count += 1
        if self.deferred or self.relayed:
            self._pending.append(data)
            self._serials.append(serial.encode("ascii") + b"\n")
            self._names.append(name or "")
            return
        self._write(data, b"", name)

    def flush(self) -> None:
        """Write the records :meth:`append` kept back, in one piece."""
        if self._pending:
            data, serials = b"".join(self._pending), b"".join(self._serials)
            self._pending, self._serials, self._names = [], [], []
            self._write(data, serials)

    def take(self) -> dict:
        """The records :meth:`append` kept back (relayed), for the process that writes them: ``records``, ``names``
        and ``serials``, each in the order appended."""
        taken = {"records": self._pending, "names": self._names,
                 "serials": [s.strip().decode("ascii") for s in self._serials]}
        self._pending, self._serials, self._names = [], [], []
        return taken

    def note_serials(self, serials: list[str]) -> None:
        """A shared file's serials relayed by a worker, spooled as they arrive (before their records are written in
        turn): a file given up marks every one of them abandoned."""
        if serials and self.deferred:
            self._write(b"", "".join(f"{s}\n" for s in serials).encode("ascii"))

    def write_relayed(self, taken: dict) -> int:
        """Write what :meth:`take` gave (in a batch's parent, in the manifest's order): into a shared file in one
        piece, into standard output record by record (so that a reader that closes it early is told which it never
        read); how many were written. A failure part-way carries that count as ``written``."""
        if self.path is not None:
            self._write(b"".join(taken["records"]), b"")
            return len(taken["records"])
        written = 0
        try:
            for data, name in zip(taken["records"], taken["names"], strict=True):
                self._write(data, b"", name)
                written += 1
        except BaseException as exc:
            exc.written = written
            raise
        return written

    def _write(self, data: bytes, serials: bytes, name: str | None = None) -> None:
        if self._lock is not None:
            self._lock.acquire()
        try:
            # The serials first: if the records cannot be written (a full disk), abort() still
            # knows which certificates the given-up file was to hold, and marks them abandoned.
            if serials and self._spool is not None:
                try:
                    write_all(self._spool, serials)
                except OSError as exc:  # a full temporary folder, not the output's disk: say which
                    from certkit.scratch import scratch_error

                    raise scratch_error(exc, "the list of the output's serials") from None
            if self.path is None:
                self._to_stream(data, name)  # flushed: whole, before another process writes
            else:
                write_all(self._out, data)
        finally:
            if self._lock is not None:
                self._lock.release()

    def _to_stream(self, data: bytes, name: str | None = None) -> None:
        """Write ``data`` to the stream and flush it; a stream that cannot take it is an
        :class:`OutputClosed` in words (no "BrokenPipeError: [Errno 32]")."""
        stream = self.stream
        try:
            if data and name is not None and self._log is not None:
                self._log.send(stream, data, name)  # what went into the pipe counted: see never_read
            elif data:
                stream.write(data)
            stream.flush()
        except OSError as exc:
            lost = self._log.never_read(stream) if self._log is not None and isinstance(exc, BrokenPipeError) else ""
            if self._stream is None:
                discard_stdout()
            if isinstance(exc, BrokenPipeError):
                raise OutputClosed(f"The reader of {self.describe()} closed it (a broken pipe) before everything "
                                   f"was written.{lost}") from None
            from certkit.bundle import os_reason

            raise OutputClosed(f"Cannot write to {self.describe()}: {os_reason(exc)}.") from None

    def commit(self, inventory: "Inventory | None" = None) -> list[str]:
        """Finish the output: close an archive, put a shared file in place (flushed to disk first),
        then mark its certificates valid; return what marking said of them (one revoked while it was
        written: delivered revoked). From putting the file in place to the last mark, Ctrl-C,
        SIGTERM and SIGHUP are held off: a file in place holds keys, so its certificates must be
        recorded valid (revocable), never abandoned. A stop held off arrives once ``complete``."""
        from certkit.issuing import uninterrupted

        marked: list[str] = []
        if self._out is None:
            return marked
        with uninterrupted():
            try:
                self._finish(inventory)
            except BaseException:
                self.abort(inventory)
                raise
            self._out = None
            if inventory is not None:
                for group in self._spooled():
                    marked += [note for notes in inventory.mark_issued(group).values() for note in notes]
            self._close_spool()
            self.complete = True
        return marked

    def _finish(self, inventory: "Inventory | None") -> None:
        """Close the shared file and put it in place (what :meth:`commit` does before marking)."""
        self.flush()
        end = self.encoder.end()
        if end:
            self._write(end, b"")
        if self._tmp is not None:
            if self.sync:
                try:
                    os.fsync(self._out)
                except OSError as exc:
                    raise self._unwritten(exc) from None
            os.close(self._out)
            self._out = None
            if inventory is not None and self.deferred:
                inventory.sync(self._spooled())  # its certificates' rows on disk (all there) before it is placed
            pause_at("staged")
            place(self._tmp, self.path, force=self.force, sync=self.sync)
            self._tmp, self.placed = None, True
            pause_at("placed")

    def _unwritten(self, exc: OSError) -> CertkitError:
        from certkit.bundle import os_reason

        return CertkitError(f"Cannot write {shown(self.path)}: {os_reason(exc)}; nothing was put in place.")

    def abort(self, inventory: "Inventory | None" = None) -> None:
        """Give up a shared file: remove it (it may hold keys), and mark its certificates abandoned."""
        self._pending, self._serials, self._names = [], [], []
        if self._tmp is not None:
            if self._out is not None:
                os.close(self._out)
            unlink_quiet(self._tmp)
            self._tmp = None
        self._out = None
        if inventory is not None:
            from certkit.errors import InventoryError

            try:
                for group in self._spooled():
                    inventory.mark_abandoned(group)
            except InventoryError:  # gone: the next command that reaches it finds no file, and abandons them
                pass
        self._close_spool()

    def _spooled(self) -> Iterator[list[str]]:
        if self._spool is None:
            return
        os.lseek(self._spool, 0, os.SEEK_SET)
        with os.fdopen(os.dup(self._spool), "rb") as spool:
            group: list[str] = []
            for line in spool:
                group.append(line.strip().decode("ascii"))
                if len(group) == _MARK_GROUP:
                    yield group
                    group = []
            if group:
                yield group

    def _close_spool(self) -> None:
        if self._spool is not None:
            os.close(self._spool)
            self._spool = None


class OutputTarget(Target):
    """One certificate into an :class:`Output`, under ``name`` (its folder in an archive, its
    Secret's name, the ``name`` of its JSON line)."""

    def __init__(self, output: Output, name: str, *,
                 extra: Callable[["IssuedCert"], Mapping[str, bytes]] | None = None) -> None:
        if not isinstance(name, str):
            from certkit.vocabulary import wrong_type

            raise wrong_type("name", "a str (its folder in an archive, its Secret's name)", name)
        self.output, self.name, self.extra = output, name, extra
        self.sink = output.sink
        self.folder = output.path
        self.deferred = output.deferred
        self.relayed = output.relayed and not output.deferred  # standard output: the parent marks it once written

    def replaced(self, ca: "CA", request: Request) -> str | None:
        return self.output.replaced(ca, request)

    def check(self, ca: "CA", request: Request) -> None:
        if not self.output.checked:  # a library caller's Output: checked as the commands check theirs
            self.output.check(ca.directories, keyed=request.keyed, inventory=ca.inventory)
        self.output.check_name(request, self.name)

    def write(self, issued: "IssuedCert") -> list[Path]:
        data = self.output.encoder.encode(issued, self.name, self.extra(issued) if self.extra else None)
        if self.output.shared:
            self.output.append(data, issued.serial_hex, self.name)
        else:
            self.output.write_one(data)
        return [self.output.path] if self.output.path is not None else []


def _real_parent(path: Path) -> Path:
    """``path`` with the folder above it resolved (links followed); the file's own name kept."""
    return Path(os.path.realpath(path.parent)) / path.name
