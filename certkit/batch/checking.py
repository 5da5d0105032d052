"""Checking a whole ``issue-batch`` manifest before anything is signed.

Each line is checked as issuing it would check it: names, the CA's name
constraints, lifetimes, and every output folder resolved (it must stay inside
``--out-dir``, symbolic links followed; nothing may land in a CA directory).
No two lines may reach one output (a folder, by any path; a Secret's or an
archive folder's name): that is found with an SQLite scratch table on disk, so
memory stays flat for any manifest size.

A large manifest is checked by one forked process per core, each checking the
chunks it will issue, as :mod:`certkit.batch.runner` splits them; each writes
its lines' outputs to a scratch file, and the parent then looks for outputs
shared across the shares, in line order, so the report is the one a single
process would give.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from certkit.batch.kept import bundle_mismatch
from certkit.batch.manifest import MAX_REPORTED, BatchLine, ManifestError, manifest_name, parse, records, the_manifest
from certkit.batch.spool import Spool
from certkit.errors import CertkitError, OutputExists
from certkit.formats.encoding import folded
from certkit.scratch import to_scratch
from certkit.text import shown

if TYPE_CHECKING:
    from certkit.ca import CA
    from certkit.formats import Output
    from certkit.issuing import FolderTarget

# Below this size a manifest is checked in the calling process: forking would cost more than it saves.
PARALLEL_FROM_BYTES = 32 * 1024


def check_line(ca: "CA", line: BatchLine, out_dir: Path, *, force: bool, resume: bool,
               output: "Output | None" = None, cache: dict | None = None) -> bool:
    """Check one line as issuing it would; return False if ``resume`` and its bundle is already
    complete (the line is kept, not issued again). With ``output`` (one file or stream for the
    whole batch), no folder is written: only what that format needs is checked. ``cache`` holds
    what a batch resolves once for thousands of lines (the folders above their outputs)."""
    from certkit.paths import within
    from certkit.san_identities import anothers_bundle

    request = line.request()
    if output is not None:
        ca.check_request(request)
        output.target(line.name()).check(ca, request)
        return True
    if not within(out_dir, line.out, cache=cache):
        raise CertkitError(f"its output folder {shown(line.out)} leads outside the batch's output folder "
                           f"{shown(out_dir)} (through a symbolic link).")
    if line.kind == "client" and (other := anothers_bundle(line.out, line.names[0], line.folder)) is not None:
        raise CertkitError(f"its output folder {shown(line.out)} holds the certificate of '{shown(other)}', another "
                           "name that gives the same folder; give the line its own 'out'.")
    why = bundle_mismatch(ca, line, request) if resume else None
    if resume and why is None:
        return False
    ca.check_request(request)
    try:
        target(line, force=force, cache=cache).check(ca, request)
    except OutputExists as exc:
        if words := getattr(exc, "cli_words", None):  # a bundle of another kind: the line's own folder is its 'out'
            exc.cli_words = (words[0], f"{words[0]} (the line's 'out')")
        if not (resume and exc.replaceable):
            raise
        # --resume was given: say why this folder's bundle is not kept, and offer only --force.
        raise OutputExists(f"{shown(line.out)} holds a bundle that --resume does not keep: {why}; pass --force to "
                           "replace it.", replaceable=False) from None
    return True


def target(line: BatchLine, *, force: bool, sync: bool = True, cache: dict | None = None, ca: "CA | None" = None,
           recheck: dict | None = None, inside: tuple | None = None) -> "FolderTarget":
    """The line's bundle folder; with ``ca``, a target to issue to (not only to check), whose folder is checked
    again against ``ca``'s directories as it is written, with the chunk's ``recheck`` cache, as every issuing
    command's is: a link put in its path since the plan never sends a bundle into a CA directory; nor, with
    ``inside`` (the --out-dir, where it led at the plan and that folder's identity), out of the batch's output
    folder."""
    from certkit.issuing import FolderTarget

    folder = FolderTarget(line.out, force=force, sync=sync, sweep=False, cache=cache)
    if ca is not None:
        folder.ca_directories, folder.recheck_cache, folder.inside = tuple(ca.directories), recheck, inside
    return folder


def check_manifest(ca: "CA", manifest: str | Path, *, out_dir: str | Path = ".", key_type: str = "ecdsa-p256",
                   days: int | None = None, force: bool = False, resume: bool = False,
                   output: "Output | None" = None, jobs: int = 1, chunk_size: int | None = None,
                   spool: "Spool | None" = None, name: str | None = None) -> int:
    """Check every line as issuing it would; return the number of certificates to issue
    (with ``resume``, lines whose bundle is already complete are not counted).

    Raises :class:`ManifestError` naming the bad lines (the first
    :data:`MAX_REPORTED`, in line order, and how many there are). ``jobs`` > 1
    checks a large manifest in that many forked processes. The lines go to ``spool``, if
    given, for issuing to read back (:class:`Spool`). ``name`` is what messages call the
    manifest, if not its path (:data:`~certkit.batch.manifest.STDIN` for a copy of standard input).
    """
    from certkit.batch.workers import can_fork
    from certkit.testhooks import pause_at

    pause_at("checking")

    if chunk_size is None:
        from certkit.batch.runner import CHUNK_SIZE as chunk_size
    if spool is not None and output is None:  # the folders are written there, and nowhere else
        from certkit.folder_target import folder_identity

        spool.out_dir_real, spool.out_dir_id = os.path.realpath(out_dir), folder_identity(out_dir)
    check = _Check(ca, Path(manifest), Path(out_dir), key_type, days, force, resume, output, chunk_size,
                   manifest_name(Path(manifest), name))
    if jobs > 1 and can_fork() and _size(check.manifest) >= PARALLEL_FROM_BYTES:
        total = _check_in_workers(check, jobs, spool)
    else:
        total, seen = _Share(), _Seen(output is None, _nests(output))
        try:
            for number, reason, todo, key, shown_out in check.lines(itertools.count().__next__, total,
                                                                    spool and spool.new_file()):
                shared = seen.add(key, number, shown_out) if key is not None else None
                total.tally(number, reason or shared, todo)
        finally:
            seen.close()
    if total.bad:
        raise ManifestError(check.manifest, total.problems, total.bad, replaceable=total.replaceable, name=check.name)
    if total.count == 0 and total.kept == 0:
        raise CertkitError(f"The {the_manifest(check.name)} lists no certificates.")
    return total.count


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


@dataclass
class _Share:
    """What checking some of the lines found."""

    count: int = 0  # lines to issue
    kept: int = 0  # lines whose bundle is complete already (resume)
    bad: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)  # the first MAX_REPORTED, in line order
    replaceable: bool = False  # some line was refused only because its folder holds a bundle already

    def tally(self, number: int, reason: str | None, todo: bool) -> None:
        if reason is not None:
            self.bad += 1
            if len(self.problems) < MAX_REPORTED:
                self.problems.append((number, reason))
        elif todo:
            self.count += 1
        else:
            self.kept += 1

    def merge(self, other: "_Share") -> None:
        self.count, self.kept, self.bad = self.count + other.count, self.kept + other.kept, self.bad + other.bad
        self.problems = sorted(self.problems + other.problems)[:MAX_REPORTED]
        self.replaceable = self.replaceable or other.replaceable


class _Seen:
    """The outputs of the lines checked so far, on disk (a private SQLite database)."""

    def __init__(self, folders: bool, nests: bool | None = None) -> None:
        self.folders, self.nests = folders, folders if nests is None else nests  # folders, or a tar's
        self.db = sqlite3.connect("")  # "": a private temporary database that spills to disk
        self.db.execute("CREATE TABLE outs (folder TEXT PRIMARY KEY, line INTEGER, shown TEXT)")
        self.through_files: dict[str, tuple[int, str]] = {}  # folder -> a line whose out runs through its file

    def add(self, key: str, number: int, shown_out: str) -> str | None:
        """Record line ``number``'s output ``key``; the reason it is refused if an earlier line has it."""
        try:
            self.db.execute("INSERT INTO outs VALUES (?, ?, ?)", (key, number, shown_out))
            return self._nested(key, number, shown_out) if self.nests else None
        except sqlite3.IntegrityError:
            first, theirs = self.db.execute("SELECT line, shown FROM outs WHERE folder = ?", (key,)).fetchone()
        if self.folders:
            return (f"its output folder {shown_out} is also line {first}'s (the same folder, perhaps through a "
                    "symbolic link); give one of them another 'out'.")
        same = f"is also line {first}'s" if theirs == shown_out else (  # an archive's A_B and a_b (folded)
            f"is line {first}'s {theirs} to tar -x on macOS and Windows (names there ignore case and Unicode form)")
        return f"its name in the output, {shown_out}, {same}; give one of them another 'out'."

    def _nested(self, key: str, number: int, shown_out: str) -> str | None:
        """Why a bundle folder ``key`` cannot be written beside the earlier lines' (``a`` and ``a/cert.pem``:
        one bundle's file would be the other's folder), if so. Bundle file names in a path are rare, so
        a line costs a dictionary lookup unless its path holds one."""
        from certkit.constants import BUNDLE_FILES

        if key in self.through_files:
            first, name = self.through_files[key]
            return (f"line {first}'s output folder lies inside this line's bundle {shown_out}, where {name} is a "
                    "file; give one of them another 'out'.")
        parts = key.split("/")
        for i in range(1, len(parts)):
            if parts[i] in BUNDLE_FILES:
                holder = "/".join(parts[:i])
                row = self.db.execute("SELECT line FROM outs WHERE folder = ?", (holder,)).fetchone()
                if row is not None:
                    return (f"its output folder {shown_out} lies inside line {row[0]}'s bundle, where {parts[i]} is "
                            "a file; give one of them another 'out'.")
                self.through_files.setdefault(holder, (number, parts[i]))
        return None

    def close(self) -> None:
        self.db.close()


@dataclass
class BatchSpec:
    """What a batch is asked to do: its CA, its manifest, and the options every line is read,
    checked (here) and issued (:mod:`certkit.batch.runner`) with."""

    ca: "CA"
    manifest: Path
    out_dir: Path
    key_type: str
    days: int | None
    force: bool
    resume: bool
    output: "Output | None"
    chunk_size: int


@dataclass
class _Check(BatchSpec):
    name: str = ""  # what messages call the manifest (manifest_name)

    def lines(self, claim: Callable[[], int], share: _Share, spool: IO[bytes] | None = None) -> Iterator[tuple]:
        """Check the lines of the chunks ``claim()`` hands this process (positions in increasing order;
        see :func:`certkit.batch.workers.claimer`): yield, for each line, its number, the reason it is
        refused (or None), whether it is to be issued, its output's key (None for a line that could
        not be parsed) and that output as a message shows it. Lines it accepts go to ``spool`` (see
        :class:`Spool`), a chunk at a time."""
        cache: dict = {}  # the folders above thousands of outputs, resolved and checked once
        chunk: list[BatchLine] = []
        at = -1
        mine = claim()
        for index, (number, record) in enumerate(records(self.manifest, self.name)):
            position = index // self.chunk_size
            if position > mine:  # past this process's chunk: take the next one nobody has taken
                mine = claim()
            if position != mine:
                continue  # another process's chunk: read, not parsed
            if spool is not None and position != at:
                Spool.write(spool, at, chunk)
                chunk, at = [], position
            item = parse(number, record, self.out_dir, self.key_type, self.days)
            if not isinstance(item, BatchLine):
                yield number, item[1], False, None, ""
                continue
            reason, todo = None, False
            try:
                # the request, worked out once: checked here, issued from the spool
                item = item.with_plan(item.request())
                todo = check_line(self.ca, item, self.out_dir, force=self.force, resume=self.resume,
                                  output=self.output, cache=cache)
            except CertkitError as exc:
                from certkit.errors import OutputExists, cli_text

                reason = cli_text(exc)  # the batch is the command line's: its advice in its words
                share.replaceable = share.replaceable or (isinstance(exc, OutputExists) and exc.replaceable)
            else:
                if spool is not None:
                    chunk.append(item)
            yield number, reason, todo, *self._key(item, cache)
        if spool is not None:
            Spool.write(spool, at, chunk)
            spool.flush()

    def _key(self, line: BatchLine, cache: dict) -> tuple[str, str]:
        """What two lines may not share (a folder, resolved; a Secret's name or an archive folder), shown."""
        if self.output is None:
            from certkit.paths import resolved

            return os.fspath(resolved(line.out, cache)), shown(line.out)
        try:
            key = self.output.key(line.name(), line.names[0] if line.names else None)
        except CertkitError:
            return f"\0line {line.line}", ""  # refused already, by check_line
        return (folded(key) if self.output.format == "tar" else key), shown(key)


# --- in several processes ------------------------------------------------------------------
def _check_in_workers(check: _Check, jobs: int, spool: Spool | None) -> _Share:
    import multiprocessing
    import tempfile

    from certkit.batch.workers import chunk_counter
    from certkit.issuing import uninterrupted

    ctx = multiprocessing.get_context("fork")
    parent = os.getpid()
    scratch = [tempfile.TemporaryFile("w+", encoding="utf-8") for _ in range(jobs)]
    pipes = [ctx.Pipe(duplex=False) for _ in range(jobs)]
    spools = [spool.new_file() if spool is not None else None for _ in range(jobs)]
    taken = chunk_counter(ctx)  # the chunks, shared out as the workers become free
    workers = [ctx.Process(target=_worker, args=(check, taken, scratch[k], pipes[k][1], parent, spools[k]),
                           daemon=True) for k in range(jobs)]
    try:
        with uninterrupted():  # each worker lets the stops in once its handlers are set
            for proc in workers:
                proc.start()
        for _reader, writer in pipes:
            writer.close()  # the workers' ends: if one dies, recv() below sees the end of its pipe
        total = _Share()
        for reader, _writer in pipes:
            try:
                kind, payload = reader.recv()
            except EOFError:
                raise CertkitError("A process checking the manifest died unexpectedly; nothing was issued.") from None
            if kind == "error":
                raise payload
            total.merge(payload)
        _cross_check(total, scratch, check.output is None, _nests(check.output))
        return total
    finally:
        for proc in workers:
            if proc.is_alive():
                proc.terminate()
            proc.join()
        for handle in scratch:
            handle.close()


def _worker(check: _Check, taken, scratch: IO[str], pipe, parent: int, spool: IO[bytes] | None) -> None:
    import signal

    from certkit.batch.workers import claimer, die_with_parent, let_signals_in
    from certkit.errors import handle_stop_signals

    die_with_parent(parent)
    # Ctrl-C reaches the parent, which ends the workers with SIGTERM: that just ends a worker, which
    # has written nothing but its scratch file (the parent's inherited handler would print a traceback).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    handle_stop_signals(signal.SIG_DFL)
    let_signals_in()
    share = _Share()
    try:
        for number, reason, todo, key, shown_out in check.lines(claimer(taken), share, spool):
            share.tally(number, reason, todo)
            if key is not None:
                to_scratch(scratch.write, json.dumps([number, reason is None, todo, key, shown_out]) + "\n")
        to_scratch(scratch.flush)
        message = ("done", share)
    except CertkitError as exc:  # an unreadable manifest: every worker finds the same
        message = ("error", exc)
    except Exception as exc:  # reported by the parent as one line, not a traceback
        message = ("error", CertkitError(f"{type(exc).__name__}: {exc}"))
    from certkit.db import release_held

    release_held()  # the worker ends with os._exit (--resume reads the inventory)
    try:
        pipe.send(message)
    except Exception:  # an error that does not pickle: its words
        pipe.send(("error", CertkitError(str(message[1]))))
    pipe.close()


def _nests(output: "Output | None") -> bool:
    """Whether the lines' outputs are folders, one of which could lie inside another's bundle."""
    return output is None or output.format == "tar"


def _cross_check(total: _Share, scratch: list[IO[str]], folders: bool, nests: bool) -> None:
    """Refuse the lines whose output an earlier line (of any share) has, in line order."""
    def entries(handle: IO[str]) -> Iterator[list]:
        handle.seek(0)
        return (json.loads(text) for text in handle)

    seen = _Seen(folders, nests)
    try:
        for number, ok, todo, key, shown_out in heapq.merge(*map(entries, scratch), key=lambda e: e[0]):
            reason = seen.add(key, number, shown_out)
            if reason is not None and ok:  # a line refused already counts once
                if todo:
                    total.count -= 1
                else:
                    total.kept -= 1
                total.bad += 1
                total.problems = sorted([*total.problems, (number, reason)])[:MAX_REPORTED]
    finally:
        seen.close()
