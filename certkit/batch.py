"""Issuing many certificates from one manifest in one process (``certkit issue-batch``).

A manifest is CSV with a header row, or JSON lines; one certificate per line
(see docs/issue-batch.md). The whole manifest is checked before anything is
issued: a bad line refuses the batch, naming every bad line (up to
:data:`MAX_REPORTED`) and why, and nothing is written. Then it is read again and
issued chunk by chunk: each chunk is signed, recorded in the inventory in one
transaction (:meth:`certkit.inventory.Inventory.add_many`), and written, each
certificate into its own folder with the same files as ``issue-server`` and
``issue-client``. The manifest is streamed, never held in memory, so memory
stays flat however long it is.

Certificates are built by the CA's own ``issue_server``/``issue_client``; this
module only decides what to issue, when to record it and how to write it.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from certkit.errors import CertkitError

if TYPE_CHECKING:
    from certkit.ca import CA, IssuedCert

COLUMNS = ("kind", "names", "out", "days", "key_type", "email", "uri", "dns")
KINDS = ("server", "client")
# Big enough that one inventory commit and one sync serve many certificates,
# small enough that a chunk's certificates and keys are a few hundred kilobytes.
CHUNK_SIZE = 500
MAX_REPORTED = 20
# How a batch makes its files durable: "chunk" syncs once per chunk (the default:
# per-file fsyncs would cost more than signing), "file" fsyncs every file and folder
# as issue-server does, "none" leaves it to the operating system.
SYNC_MODES = ("chunk", "file", "none")


class ManifestError(CertkitError):
    """A manifest with bad lines; ``problems`` holds ``(line number, reason)`` pairs."""

    def __init__(self, path: Path, problems: list[tuple[int, str]], bad_lines: int) -> None:
        self.path, self.problems, self.bad_lines = path, problems, bad_lines
        if bad_lines == 1:
            line, reason = problems[0]
            message = f"{path} line {line}: {reason} Nothing was issued."
        else:
            shown = "\n".join(f"  line {line}: {reason}" for line, reason in problems)
            more = f"\n  ... and {bad_lines - len(problems)} more" if bad_lines > len(problems) else ""
            message = f"{path} has {bad_lines} bad lines; nothing was issued.\n{shown}{more}"
        super().__init__(message)


@dataclass(frozen=True)
class BatchLine:
    """One manifest line, parsed but not yet checked against the CA."""

    line: int
    kind: str  # "server" | "client"
    names: tuple[str, ...]  # a server's names; a client's common name alone
    out: Path
    days: int | None
    key_type: str
    emails: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()


@dataclass
class BatchResult:
    issued: int = 0
    server: int = 0
    client: int = 0
    capped: int = 0  # certificates whose default lifetime was cut at the CA's expiry
    resigned: int = 0  # serial collisions in the inventory, re-signed with a fresh serial
    seconds: float = 0.0

    def add(self, stats: tuple[int, int, int, int, int]) -> None:
        issued, server, client, capped, resigned = stats
        self.issued += issued
        self.server += server
        self.client += client
        self.capped += capped
        self.resigned += resigned

    @property
    def per_second(self) -> float:
        return self.issued / self.seconds if self.seconds else 0.0


class _BadLine(Exception):
    pass


# --- reading -------------------------------------------------------------------------
def read_manifest(path: str | Path, *, out_dir: str | Path = ".", key_type: str = "ecdsa-p256",
                  days: int | None = None) -> Iterator[BatchLine | tuple[int, str]]:
    """Yield each line of the manifest as a :class:`BatchLine`, or ``(line, reason)`` if it is bad.

    ``key_type`` and ``days`` are the defaults for lines that leave them empty;
    relative ``out`` folders are taken relative to ``out_dir``.
    """
    for number, record in _records(Path(path)):
        yield _parse(number, record, Path(out_dir), key_type, days)


def _parse(number: int, record: dict | str, out_dir: Path, key_type: str,
           days: int | None) -> BatchLine | tuple[int, str]:
    if isinstance(record, str):
        return number, record
    try:
        return _batch_line(number, record, out_dir, key_type, days)
    except (_BadLine, CertkitError) as exc:  # CertkitError: a name that cannot name a folder
        return number, str(exc)


def _records(path: Path) -> Iterator[tuple[int, dict | str]]:
    """``(line number, record)`` for each certificate line; the record is a reason if unreadable."""
    try:
        handle = open(path, encoding="utf-8-sig", newline="")  # -sig: spreadsheets write a BOM
    except OSError as exc:
        raise CertkitError(f"Cannot read the manifest {path}: {exc.strerror}.") from None
    with handle:
        try:
            yield from _jsonl_records(handle) if _is_jsonl(handle) else _csv_records(handle)
        except UnicodeDecodeError:
            raise CertkitError(f"The manifest {path} is not UTF-8 text.") from None
        except csv.Error as exc:
            raise CertkitError(f"The manifest {path} is not valid CSV: {exc}.") from None


def _is_jsonl(handle) -> bool:
    for text in handle:
        stripped = text.strip()
        if stripped and not stripped.startswith("#"):
            handle.seek(0)
            return stripped.startswith("{")
    handle.seek(0)
    return False


def _csv_records(handle) -> Iterator[tuple[int, dict | str]]:
    # A line starting with '#' is a comment: it becomes an empty row, which the csv
    # reader skips while still counting it, so line numbers stay those of the file.
    reader = csv.reader("\n" if text.startswith("#") else text for text in handle)
    header: list[str] | None = None
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in row]
            unknown = [c for c in header if c not in COLUMNS]
            if unknown or "kind" not in header or "names" not in header or len(set(header)) != len(header):
                yield reader.line_num, (
                    f"the header must name the columns, each once: kind and names, and any of "
                    f"{', '.join(COLUMNS[2:])} (found: {', '.join(header)})."
                )
                return
            continue
        if len(row) > len(header):
            yield reader.line_num, (f"it has {len(row)} fields but the header names {len(header)}; "
                                    "quote a field that contains a comma.")
            continue
        yield reader.line_num, dict(zip(header, row, strict=False))


def _jsonl_records(handle) -> Iterator[tuple[int, dict | str]]:
    for number, text in enumerate(handle, 1):
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        try:
            record = json.loads(text)
        except ValueError as exc:
            yield number, f"it is not valid JSON ({exc.msg} at column {exc.colno})."
            continue
        if not isinstance(record, dict):
            yield number, "it is not a JSON object."
            continue
        unknown = [k for k in record if k not in COLUMNS]
        if unknown:
            yield number, f"unknown key {unknown[0]!r}; the keys are {', '.join(COLUMNS)}."
            continue
        yield number, record


def _words(value: Any, column: str) -> tuple[str, ...]:
    """A space-separated string (CSV) or a list of strings (JSON lines)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(v.strip() for v in value if v.strip())
    raise _BadLine(f"'{column}' must be a string or a list of strings.")


def _batch_line(number: int, record: dict, out_dir: Path, default_key_type: str,
                default_days: int | None) -> BatchLine:
    from certkit.keys import KEY_TYPES
    from certkit.names import parse_host, safe_folder_name

    kind = record.get("kind")
    kind = kind.strip().lower() if isinstance(kind, str) else kind
    if kind not in KINDS:
        raise _BadLine(f"kind is {record.get('kind')!r}; it must be server or client.")
    raw_names = record.get("names")
    if kind == "server":
        names = _words(raw_names, "names")
        if not names:
            raise _BadLine("a server line needs at least one name in 'names'.")
        for column in ("email", "uri", "dns"):
            if _words(record.get(column), column):
                raise _BadLine(f"'{column}' applies to client lines only; put a server's names in 'names'.")
    else:
        if isinstance(raw_names, list) and len(raw_names) == 1:
            raw_names = raw_names[0]
        if not isinstance(raw_names, str) or not raw_names.strip():
            raise _BadLine("a client line needs its common name in 'names'.")
        names = (raw_names,)  # a common name may hold spaces ("Alice Smith")
    days = record.get("days")
    if isinstance(days, str):
        days = days.strip() or None
        if days is not None:
            try:
                days = int(days)
            except ValueError:
                raise _BadLine(f"days is {days!r}; it must be a whole number.") from None
    if days is None:
        days = default_days
    elif isinstance(days, bool) or not isinstance(days, int):
        raise _BadLine(f"days is {days!r}; it must be a whole number.")
    key_type = record.get("key_type")
    key_type = (key_type.strip() if isinstance(key_type, str) else key_type) or default_key_type
    if key_type not in KEY_TYPES:
        raise _BadLine(f"key_type is {key_type!r}; choose one of: {', '.join(KEY_TYPES)}.")
    out = record.get("out")
    if out is not None and not isinstance(out, str):
        raise _BadLine("'out' must be a string.")
    out = (out or "").strip()
    if not out:
        # As the single commands do: the folder is named after the first name, made safe.
        first = parse_host(names[0]).value if kind == "server" else names[0]
        out = safe_folder_name(first)
    return BatchLine(
        number, kind, names, out_dir / out, days, key_type,
        _words(record.get("email"), "email"), _words(record.get("uri"), "uri"),
        _words(record.get("dns"), "dns"),
    )


# --- checking --------------------------------------------------------------------------
def _check_line(ca: CA, line: BatchLine, force: bool) -> None:
    from certkit.bundle import bundle_names, check_writable
    from certkit.names import client_identities, parse_hosts
    from certkit.profiles import PROFILES

    if line.kind == "server":
        identities = parse_hosts(line.names)
    else:
        identities = client_identities(line.names[0], line.emails, line.uris, line.dns)
    ca.check_permitted(identities)
    ca._leaf_validity(PROFILES[line.kind], line.days, None, [])
    check_writable(line.out, bundle_names(chain=bool(ca.parents)), force=force)


def check_manifest(ca: CA, manifest: str | Path, *, out_dir: str | Path = ".", key_type: str = "ecdsa-p256",
                   days: int | None = None, force: bool = False) -> int:
    """Check every line as issuing it would; return the number of certificates to issue.

    Raises :class:`ManifestError` naming the bad lines. Checks that two lines do
    not share an output folder with an SQLite scratch table on disk, so memory
    stays flat for any manifest size.
    """
    problems: list[tuple[int, str]] = []
    bad = count = 0
    seen = sqlite3.connect("")  # "": a private temporary database that spills to disk
    seen.execute("CREATE TABLE outs (folder TEXT PRIMARY KEY, line INTEGER)")
    try:
        for item in read_manifest(manifest, out_dir=out_dir, key_type=key_type, days=days):
            if isinstance(item, tuple):
                number, reason = item
            else:
                number, reason = item.line, None
                try:
                    _check_line(ca, item, force)
                except CertkitError as exc:
                    reason = str(exc)
                folder = os.path.normpath(os.path.abspath(item.out))
                try:
                    seen.execute("INSERT INTO outs VALUES (?, ?)", (folder, number))
                except sqlite3.IntegrityError:
                    first = seen.execute("SELECT line FROM outs WHERE folder = ?", (folder,)).fetchone()[0]
                    reason = reason or (f"its output folder {item.out} is also line {first}'s; "
                                        "give one of them another 'out'.")
            if reason is not None:
                bad += 1
                if len(problems) < MAX_REPORTED:
                    problems.append((number, reason))
            else:
                count += 1
    finally:
        seen.close()
    if bad:
        raise ManifestError(Path(manifest), problems, bad)
    if count == 0:
        raise CertkitError(f"The manifest {manifest} lists no certificates.")
    return count


# --- issuing ---------------------------------------------------------------------------
def _sign(signer: CA, line: BatchLine, key=None) -> IssuedCert:
    if line.kind == "server":
        return signer.issue_server(line.names, key_type=line.key_type, days=line.days, key=key)
    return signer.issue_client(line.names[0], emails=line.emails, uris=line.uris, dns_names=line.dns,
                               key_type=line.key_type, days=line.days, key=key)


def issue_batch(ca: CA, manifest: str | Path, *, out_dir: str | Path = ".", key_type: str = "ecdsa-p256",
                days: int | None = None, force: bool = False, sync: str = "chunk", jobs: int = 1,
                chunk_size: int = CHUNK_SIZE, checked: bool = False,
                progress: Callable[[int], None] | None = None) -> BatchResult:
    """Issue every certificate of ``manifest``; see the module docstring.

    ``checked`` skips :func:`check_manifest` when the caller has just run it.
    ``jobs`` > 1 forks that many worker processes, each issuing every jobs-th
    chunk (signing and file writing both want a core; threads would fight over
    the GIL). ``progress`` is called with the number of certificates finished.
    """
    if sync not in SYNC_MODES:
        raise CertkitError(f"Unknown sync mode {sync!r}; choose one of: {', '.join(SYNC_MODES)}.")
    if not checked:
        check_manifest(ca, manifest, out_dir=out_dir, key_type=key_type, days=days, force=force)
    job = _Job(ca, Path(manifest), Path(out_dir), key_type, days, force, sync, chunk_size)
    from certkit.bundle import sweep_stale

    sweep_stale(Path(out_dir))  # once here, not once per certificate (a scan of the folder)
    started = time.perf_counter()
    result = BatchResult()
    if jobs > 1 and _can_fork():
        _run_parallel(job, jobs, result, progress)
    else:
        for stats in job.run(0, 1):
            result.add(stats)
            if progress is not None:
                progress(stats[0])
    result.seconds = time.perf_counter() - started
    return result


@dataclass
class _Job:
    ca: CA
    manifest: Path
    out_dir: Path
    key_type: str
    days: int | None
    force: bool
    sync: str
    chunk_size: int

    def run(self, worker: int, workers: int) -> Iterator[tuple[int, int, int, int, int]]:
        """Issue chunks ``worker``, ``worker + workers``, ...; yield each chunk's counts."""
        from certkit.ca import CA

        # The signer is the same CA without an inventory: the batch records each chunk
        # in one transaction instead of one per certificate.
        signer = CA(self.ca.cert, self.ca.key, self.ca.parents)
        chunk: list[BatchLine] = []
        for index, (number, record) in enumerate(_records(self.manifest)):
            if (index // self.chunk_size) % workers != worker:
                continue  # another worker's chunk: not even parsed
            line = _parse(number, record, self.out_dir, self.key_type, self.days)
            if not isinstance(line, BatchLine):
                raise CertkitError(f"The manifest {self.manifest} changed while it was being issued "
                                   f"(line {number}: {line[1]}); check the output folders and the inventory.")
            chunk.append(line)
            if len(chunk) == self.chunk_size:
                yield self._issue_chunk(signer, chunk)
                chunk = []
        if chunk:
            yield self._issue_chunk(signer, chunk)

    def _issue_chunk(self, signer: CA, chunk: list[BatchLine]) -> tuple[int, int, int, int, int]:
        from certkit.bundle import write_bundle

        issued = [_sign(signer, line) for line in chunk]
        resigned = _record(self.ca, signer, chunk, issued) if self.ca.inventory is not None else 0
        for line, one in zip(chunk, issued, strict=True):
            write_bundle(line.out, one.bundle_files(), force=self.force, sync=self.sync == "file", sweep=False)
        if self.sync == "chunk":
            # One sync for the chunk instead of an fsync per file and folder (six per
            # certificate): a crash can lose at most the chunk being written.
            os.sync()
        servers = sum(one.kind == "server" for one in issued)
        capped = sum(bool(one.notes) for one in issued)
        return len(chunk), servers, len(chunk) - servers, capped, resigned


def _can_fork() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()


def _run_parallel(job: _Job, jobs: int, result: BatchResult, progress: Callable[[int], None] | None) -> None:
    import multiprocessing
    import queue as queues

    # fork: the workers inherit the loaded CA (its decrypted key never crosses a pipe).
    ctx = multiprocessing.get_context("fork")
    messages = ctx.Queue()
    stop = ctx.Event()
    workers = [ctx.Process(target=_worker, args=(job, k, jobs, messages, stop), daemon=True)
               for k in range(jobs)]
    for proc in workers:
        proc.start()
    error = None
    running = jobs
    try:
        while running:
            try:
                message = messages.get(timeout=0.5)
            except queues.Empty:
                if any(proc.exitcode not in (None, 0) for proc in workers) and messages.empty():
                    error = error or "a worker process died unexpectedly"
                    break
                continue
            if message[0] == "chunk":
                result.add(message[1])
                if progress is not None:
                    progress(message[1][0])
            else:
                running -= 1
                if message[0] == "error":
                    error = error or message[1]
                    stop.set()
    finally:
        stop.set()
        for proc in workers:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
    if error is not None:
        raise CertkitError(f"{error} ({result.issued} certificates were issued and written before "
                           "the batch stopped; they are in the inventory.)")


def _worker(job: _Job, worker: int, workers: int, messages, stop) -> None:
    try:
        for stats in job.run(worker, workers):
            messages.put(("chunk", stats))
            if stop.is_set():
                break
        messages.put(("done",))
    except CertkitError as exc:
        messages.put(("error", str(exc)))
    except BaseException as exc:  # reported by the parent as one line, not a traceback
        messages.put(("error", f"{type(exc).__name__}: {exc}"))


def _record(ca: CA, signer: CA, chunk: list[BatchLine], issued: list[IssuedCert]) -> int:
    """Record a chunk in one transaction; re-sign (same key, fresh serial) any serial already taken."""
    todo = list(range(len(issued)))
    resigned = 0
    for _attempt in range(5):
        taken = ca.inventory.add_many([(issued[i].cert, issued[i].kind) for i in todo])
        if not taken:
            return resigned
        todo = [todo[j] for j in taken]
        for i in todo:
            issued[i] = _sign(signer, chunk[i], key=issued[i].private_key)
            resigned += 1
    # five 159-bit collisions in a row for one certificate means the random source is broken
    raise CertkitError("Could not find an unused serial number; check the system's random source.")
