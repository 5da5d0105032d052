"""Issuing a checked manifest, chunk by chunk, in one process or several.

Each chunk goes through the issuing pipeline in one piece
(:func:`certkit.issuing.deliver_many`): signed, recorded pending with its
folders in one transaction, written, made durable with one sync, marked valid
in one transaction. Several worker processes (``--jobs``) each take the next
chunk nobody has taken whenever they are free (into one output, they relay each chunk to the parent, which
writes them in the manifest's order: :mod:`certkit.batch.in_turn`); they die with the parent
(Linux's parent-death signal), and on Ctrl-C or SIGTERM stop once the chunk
being written is complete (a chunk is recorded, written and marked as one
step), so a batch that is interrupted or killed leaves the inventory matching
the disk. Rerun with ``resume=True`` to
finish the job.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.batch.checking import BatchSpec, check_manifest, target
from certkit.batch.in_turn import InTurn, arrived, collect
from certkit.batch.kept import complete_bundle
from certkit.batch.manifest import BatchLine
from certkit.batch.spool import Spool
from certkit.batch.stops import delivered, in_words, unmarked
from certkit.batch.workers import can_fork, chunk_counter, claimer, die_with_parent, let_signals_in
from certkit.batch.written import written_lines
from certkit.errors import (
    CertkitError,
    Terminated,
    handle_stop_signals,
    raise_terminated,
    restore_signals,
    without_advice,
)
from certkit.folder_target import REMOVED_NOTE, confirmed
from certkit.inventory.succession import FOREIGN_NOTE

if TYPE_CHECKING:
    from certkit.ca import CA
    from certkit.formats import Output

# Big enough that one inventory commit and one sync serve many certificates,
# small enough that a chunk's certificates and keys are a few hundred kilobytes.
CHUNK_SIZE = 500
# How a batch makes its files durable: "chunk" syncs once per chunk (the default:
# per-file fsyncs would cost more than signing), "file" fsyncs every file and folder
# as issue-server does, "none" leaves it to the operating system.
SYNC_MODES = ("chunk", "file", "none")


@dataclass
class BatchResult:
    issued: int = 0
    kept: int = 0  # lines whose bundle was already complete (resume)
    by_kind: dict[str, int] = field(default_factory=dict)
    capped: int = 0  # certificates whose default lifetime was cut at the CA's expiry
    foreign: list[str] = field(default_factory=list)  # --force over bundles of another CA's certificates
    removed: list[str] = field(default_factory=list)  # files of the old bundles --force removed (a bundle.p12)
    seconds: float = 0.0
    unmarked: int = 0  # of ``issued``: written whole, not yet marked (the inventory went away)
    # what befell certificates while they were written (revoked meanwhile: delivered revoked), as marking said it
    marked: list[str] = field(default_factory=list)
    advised: dict[str, int] = field(default_factory=dict)  # the notes single issuance prints, each with its count
    chunks: list[list[int]] = field(default_factory=list)  # each chunk written: [first line, last line, issued]

    def add(self, stats: dict) -> None:
        self.issued += stats.get("issued", 0)
        self.unmarked += stats.get("unmarked", 0)
        self.kept += stats.get("kept", 0)
        self.capped += stats.get("capped", 0)
        self.foreign += stats.get("foreign", [])
        self.removed += stats.get("removed", [])
        self.marked += stats.get("marked", [])
        self.chunks += stats.get("chunks", [])
        for kind, n in stats.get("by_kind", {}).items():
            self.by_kind[kind] = self.by_kind.get(kind, 0) + n
        for note, n in stats.get("advised", {}).items():
            self.advised[note] = self.advised.get(note, 0) + n

    @property
    def server(self) -> int:
        return self.by_kind.get("server", 0)

    @property
    def client(self) -> int:
        return self.by_kind.get("client", 0)

    @property
    def per_second(self) -> float:
        return self.issued / self.seconds if self.seconds else 0.0


class BatchStopped(CertkitError):
    """A batch that stopped part-way: ``result`` says what was written and recorded; ``signal``
    is the signal that stopped it (SIGINT, SIGTERM), or None for an error."""

    def __init__(self, message: str, result: BatchResult, signum: int | None = None) -> None:
        super().__init__(message)
        self.result, self.signal = result, signum


def issue_batch(ca: "CA", manifest: str | Path, *, out_dir: str | Path = ".", key_type: str = "ecdsa-p256",
                days: int | None = None, force: bool = False, resume: bool = False, sync: str = "chunk",
                jobs: int = 1, chunk_size: int = CHUNK_SIZE, progress: Callable[[int], None] | None = None,
                output: "Output | None" = None, spool: "Spool | None" = None) -> BatchResult:
    """Issue every certificate of ``manifest`` (see the package docstring).

    ``spool``: the lines :func:`check_manifest` has just checked into it, for a caller that ran
    the check itself (:class:`~certkit.batch.spool.Spool`); without it the manifest is checked
    here first. Issuing reads the lines from the spool, never the manifest again.
    ``jobs`` > 1 forks that many worker processes, each taking the next chunk
    when it is free (signing and file writing both want a core; threads would fight
    over the GIL). ``progress`` is called with the number of certificates finished.
    ``output`` (:class:`certkit.formats.Output`, opened here) puts every
    certificate into one file or stream instead of a folder each; a file is
    put in place, and its certificates marked valid, once the whole batch is in it.
    Raises :class:`BatchStopped` if the batch stops part-way.
    """
    if sync not in SYNC_MODES:
        raise CertkitError(f"Unknown sync mode '{sync}'; choose one of: {', '.join(SYNC_MODES)}.")
    if spool is None:
        with Spool() as spool:
            check_manifest(ca, manifest, out_dir=out_dir, key_type=key_type, days=days, force=force, resume=resume,
                           output=output, jobs=jobs, chunk_size=chunk_size, spool=spool)
            return issue_batch(ca, manifest, out_dir=out_dir, key_type=key_type, days=days, force=force,
                               resume=resume, sync=sync, jobs=jobs, chunk_size=chunk_size, progress=progress,
                               output=output, spool=spool)
    if output is None:
        from certkit.atomic import sweep_stale

        sweep_stale(Path(out_dir))  # once here, not once per certificate (a scan of the folder)
    else:
        output.shared = True  # many certificates, perhaps from several processes, into one output
        output.open()  # before any worker is forked: they all write into it
    job = _Job(ca, Path(manifest), Path(out_dir), key_type, days, force, resume, output, chunk_size, spool, sync)
    started = time.perf_counter()
    result = BatchResult()
    try:
        if jobs > 1 and can_fork():
            _run_parallel(job, jobs, result, progress)
        else:
            _run_here(job, result, progress)
        if output is not None:
            result.marked += output.commit(ca.inventory)  # the file in place, then its certificates valid
    except (KeyboardInterrupt, Terminated) as exc:
        if output is None or not output.complete:
            _give_up(output, ca, result)
            raise
        # held off while the file was put in place and marked: it came once the batch was complete
        signum = signal.SIGINT if isinstance(exc, KeyboardInterrupt) else exc.signum
        raise BatchStopped(f"The batch was interrupted once it was complete: {_were(result.issued, 'certificate')}"
                           f" written to {output.describe()} and recorded.", result, signum) from None
    except BaseException as exc:
        if output is not None and output.placed and not output.complete:  # in place: nothing to give up
            count = f"{result.issued:,} certificate{'s' if result.issued != 1 else ''}"
            raise BatchStopped(f"{without_advice(exc) if isinstance(exc, CertkitError) else in_words(exc)} "
                               f"{output.describe()} was written whole ({count}); they stay pending "
                               "until the next certkit command reaches the inventory and records them as issued, so "
                               "do not issue them again.", result) from None
        _give_up(output, ca, result)
        raise
    finally:
        result.seconds = time.perf_counter() - started
    return result


def _give_up(output: "Output | None", ca: "CA", result: BatchResult) -> None:
    if output is not None:
        output.abort(ca.inventory)  # a file never put in place: its certificates are abandoned
        if output.deferred:
            result.issued = 0


def _run_here(job: "_Job", result: BatchResult, progress) -> None:
    def report(stats: dict) -> None:
        result.add(stats)
        if progress is not None:
            progress(stats.get("issued", 0) + stats.get("kept", 0))

    try:
        job.run(report)
    except (KeyboardInterrupt, Terminated) as exc:
        result.issued += delivered(exc)
        result.unmarked += unmarked(exc)
        signum = signal.SIGINT if isinstance(exc, KeyboardInterrupt) else exc.signum
        raise BatchStopped(_stopped(result, "was interrupted", job.output), result, signum) from None
    except (CertkitError, OSError) as exc:  # OSError: a file-system failure the library did not anticipate
        result.issued += delivered(exc)
        result.unmarked += unmarked(exc)
        raise BatchStopped(f"{_so_far(in_words(exc), result, job)} {_stopped(result, 'stopped', job.output)}",
                           result) from None


def _so_far(error: str, result: BatchResult, job: "_Job") -> str:
    """The failure that stopped the batch, as the sentence before :func:`_stopped`'s: without its "nothing was
    changed" or "nothing was issued or written" (and "try again") once bundles were written (true of the step that
    failed, not of the batch, whose count follows); as it is while nothing was (or the file it was for is not put
    in place)."""
    deferred = job.output is not None and job.output.deferred
    return without_advice(error) if (result.issued or result.kept) and not deferred else error


def _stopped(result: BatchResult, how: str, output: "Output | None" = None) -> str:
    if output is not None and output.deferred:
        return (f"The batch {how} before {output.describe()} was complete, so that file was not written and no "
                "certificate meant for it can be used (those recorded are marked abandoned, now or by the next "
                "command that reaches the inventory). Run the same command again.")
    if output is not None:
        lines = written_lines(result.chunks, result.issued)
        which = f": those of manifest lines {lines}. Rerun its other lines." if lines else \
            ". Rerun the manifest's remaining lines."
        return f"The batch {how} after {_were(result.issued, 'certificate')} written to {output.describe()} and " \
            f"recorded{which}"
    kept = f"; {result.kept:,} already complete were kept" if result.kept else ""
    recorded = "recorded" if not result.unmarked else (
        f"recorded ({result.unmarked:,} of them as pending only, until the next command reaches the inventory)")
    return (f"The batch {how} after {_were(result.issued, 'bundle')} written and "
            f"{recorded}{kept}. Rerun the same command with --resume to finish it.")


def _were(count: int, noun: str) -> str:
    return f"1 {noun} was" if count == 1 else f"{count:,} {noun}s were"  # grouped, as the summary and list write it


@dataclass
class _Job(BatchSpec):
    spool: Spool  # the lines as the check read them
    sync: str = "chunk"
    cache: dict = field(default_factory=dict)  # the folders above the outputs, resolved and checked once
    position: int = 0  # of the chunk being issued, among the manifest's

    def __post_init__(self) -> None:  # the --out-dir, and where it led as the lines were checked: none leaves it
        self._inside = (self.out_dir, self.spool.out_dir_real or os.path.realpath(self.out_dir), self.spool.out_dir_id)

    def run(self, report: Callable[[dict], None], claim: Callable[[], int] | None = None) -> None:
        """Issue the spool's chunks, or with ``claim`` (several workers) those this worker claims as
        it goes; ``report`` each chunk's counts before a stop held off meanwhile can land, so that
        what was written is always counted, once."""
        take = claim or itertools.count().__next__

        def claim_one() -> int:
            self.position = take()  # the chunk's place in the manifest: a relayed chunk is written in that order
            return self.position

        for chunk in self.spool.chunks(claim_one):
            self._issue_chunk(chunk, report)

    def _issue_chunk(self, chunk: list[BatchLine], report: Callable[[dict], None]) -> None:
        from certkit.issuing import deliver_many, uninterrupted

        items, kept, recheck, inside = [], 0, {}, confirmed(self._inside)  # (recheck, inside: see target)
        for line in chunk:
            request = line.request()
            if self.resume and complete_bundle(self.ca, line, request):
                kept += 1
                continue
            items.append((request, target(line, force=self.force, sync=self.sync == "file", cache=self.cache,
                                          ca=self.ca, recheck=recheck, inside=inside)
                          if self.output is None
                          else self.output.target(line.name())))
        def done(deliveries: list) -> None:  # with Ctrl-C and SIGTERM held off (deliver_many's then)
            relay = None
            if self.output is not None and self.output.relayed:  # to the parent, who writes it in turn (InTurn)
                relay = dict(self.output.take(), position=self.position)
            elif self.output is not None:
                self.output.flush()  # the chunk's records into the shared file, in one piece
            by_kind: dict[str, int] = {}
            advised: dict[str, int] = {}  # what issue-peer and the others print beneath a certificate (a wildcard)
            for delivery in deliveries:
                by_kind[delivery.issued.kind] = by_kind.get(delivery.issued.kind, 0) + 1
                for note in delivery.issued.notes:
                    if "capped" not in note:  # (counted as such)
                        advised[note] = advised.get(note, 0) + 1
            report({"issued": len(deliveries), "kept": kept, "by_kind": by_kind,
                    "capped": sum(any("capped" in n for n in d.notes) for d in deliveries),
                    "foreign": [n for d in deliveries for n in d.notes if n.startswith(FOREIGN_NOTE)],
                    "removed": [n for d in deliveries for n in d.notes if f" {REMOVED_NOTE} " in n],
                    "marked": [n for d in deliveries for n in d.marked], "advised": advised,
                    "chunks": [[chunk[0].line, chunk[-1].line, len(deliveries)]],
                    **({"relay": relay} if relay is not None else {})})

        if items:
            # a single output is made durable once, when it is complete (Output.commit)
            deliver_many(self.ca, items, sync=self.sync == "chunk" and self.output is None, then=done)
        else:
            with uninterrupted():
                done([])


def _run_parallel(job: _Job, jobs: int, result: BatchResult, progress) -> None:
    import multiprocessing
    import queue as queues

    # fork: the workers inherit the opened CA (its decrypted key never crosses a pipe).
    ctx = multiprocessing.get_context("fork")
    messages = ctx.Queue()
    parent = os.getpid()
    taken = chunk_counter(ctx)  # the chunks of the spool, shared out as the workers become free
    # one output: its chunks relayed to this process, written in the manifest's order, at most ``jobs`` waiting
    written = chunk_counter(ctx) if job.output is not None else None
    turn = InTurn(job.output, job.ca.inventory, written, result, progress) if job.output is not None else None
    workers = [ctx.Process(target=_worker, args=(job, messages, parent, taken, written and (written, jobs)),
                           daemon=True) for _ in range(jobs)]
    previous = handle_stop_signals(raise_terminated)
    stopped_by: int | None = None
    error = None
    from certkit.issuing import uninterrupted

    try:
        with uninterrupted():  # each worker lets the stops in once its handlers are set
            for proc in workers:
                proc.start()
        running = jobs
        while running:
            try:
                message = messages.get(timeout=0.5)
            except queues.Empty:
                if any(proc.exitcode not in (None, 0) for proc in workers) and messages.empty():
                    error = error or "a worker process died unexpectedly"
                    _signal_all(workers, signal.SIGTERM)  # (the others may wait for its chunk's turn)
                    break
                continue
            kind, payload = message
            if kind == "chunk":
                try:
                    arrived(payload, turn, result, progress)
                except (CertkitError, OSError) as exc:  # writing into the output: the stream closed, the disk full
                    error = error or in_words(exc)
                    _signal_all(workers, signal.SIGTERM)
            else:
                running -= 1
                result.add(payload.get("stats", {}))
                if kind == "error":
                    error = error or payload["error"]
                    _signal_all(workers, signal.SIGTERM)
    except (KeyboardInterrupt, Terminated) as exc:
        stopped_by = signal.SIGINT if isinstance(exc, KeyboardInterrupt) else exc.signum
        _signal_all(workers, signal.SIGTERM)  # Ctrl-C or a hangup reached them too; SIGTERM to the parent did not
    finally:
        collect(workers, messages, result, turn)
        if turn is not None:
            turn.give_up()
        restore_signals(previous)
    if stopped_by is not None:
        raise BatchStopped(_stopped(result, "was interrupted", job.output), result, stopped_by)
    if error is not None:
        raise BatchStopped(f"{_so_far(error, result, job)} {_stopped(result, 'stopped', job.output)}", result)


def _signal_all(workers, signum: int) -> None:
    for proc in workers:
        if proc.is_alive():
            try:
                os.kill(proc.pid, signum)
            except ProcessLookupError:
                pass


def _worker(job: _Job, messages, parent: int, taken, written=None) -> None:
    """One worker: ``written`` (the parent's count of the chunks it wrote, and how many may wait) when the chunks
    are relayed to it (one output), so that this worker claims none too far ahead of it."""
    die_with_parent(parent)
    if getattr(job, "output", None) is not None:
        job.output.relayed = True
    # One stop signal per worker: Ctrl-C reaches the whole process group, and the parent passes
    # it on as SIGTERM; a second signal would interrupt the worker while it settles and reports.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    handle_stop_signals(raise_terminated)  # a hangup reaches the whole process group too
    try:
        try:
            let_signals_in()  # held since the fork (uninterrupted): a stop sent meanwhile arrives here
            job.run(lambda stats: messages.put(("chunk", stats)), claimer(taken, *(written or ())))
        finally:
            # From here on the worker only reports and exits: the SIGTERM the parent sends every
            # worker when one fails must not interrupt a worker that is reporting.
            handle_stop_signals(signal.SIG_IGN)
        messages.put(("done", {}))
    except (KeyboardInterrupt, Terminated) as exc:
        messages.put(("stopped", {"stats": {"issued": delivered(exc), "unmarked": unmarked(exc)}}))
    except BaseException as exc:  # reported by the parent as one line, not a traceback
        # with what the chunk it stopped had delivered, whatever the failure: those are recorded valid
        messages.put(("error", {"error": in_words(exc), "stats": {"issued": delivered(exc),
                                                                  "unmarked": unmarked(exc)}}))
    finally:
        from certkit.db import release_held

        release_held()  # the worker ends with os._exit: its inventory log is checkpointed now
        messages.close()
        messages.join_thread()
