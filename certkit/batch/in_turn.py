"""A parallel batch's one output (``--format jsonl|k8s|tar``), written in the manifest's order whatever ``--jobs`` is.

Workers issue chunks as they become free and finish them in any order; each relays its chunk's records to the
parent (:meth:`certkit.formats.Output.take`), which writes them in turn (:class:`InTurn`): a chunk that arrives early
waits, at most ``--jobs`` of them (a worker claims a chunk only that near the next one to write:
:func:`certkit.batch.workers.claimer`), so the same manifest gives the same file with ``--jobs 1`` and ``--jobs 2``
(a GitOps repository's diff does not churn) and a stopped batch has written a run of whole chunks from the top.
Into standard output a chunk's certificates are marked valid once the parent has written them, as a worker marks
its own: recorded pending, written, marked valid; a chunk never written is abandoned. Into a file, its
certificates' serials are noted as they arrive, so that a file given up abandons every one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from certkit.errors import CertkitError

if TYPE_CHECKING:
    from certkit.batch.runner import BatchResult
    from certkit.formats import Output
    from certkit.inventory import Inventory


class InTurn:
    """The chunks relayed by a batch's workers, written into ``output`` by position (the order of the manifest's
    chunks); ``written`` (shared with the workers) says how many are, ``result`` and ``progress`` count each as it
    is written."""

    def __init__(self, output: "Output", inventory: "Inventory | None", written, result: "BatchResult",
                 progress: Callable[[int], None] | None) -> None:
        self.output, self.inventory, self.written = output, inventory, written
        self.result, self.progress = result, progress
        self.next = 0
        self.waiting: dict[int, dict] = {}
        self.stopped = False  # after a failure: nothing more is written (what waits is given up)

    def arrive(self, stats: dict) -> None:
        """A worker's report of a chunk: counted at once if it relays nothing (no output), else kept until every
        chunk before it is written. Raises what writing raised (the stream closed, the disk full)."""
        relay = stats.pop("relay", None)
        if relay is None:
            self._count(stats)
            return
        self.output.note_serials(relay["serials"])
        self.waiting[relay["position"]] = dict(stats, relay=relay)
        from certkit.issuing import uninterrupted

        while not self.stopped and self.next in self.waiting:
            with uninterrupted():  # a chunk is written and marked as one step, as a worker writes and marks its own
                self._write(self.waiting.pop(self.next))
                self.next += 1
                with self.written.get_lock():
                    self.written.value = self.next

    def _write(self, stats: dict) -> None:
        relay = stats.pop("relay")
        stream = self.output.path is None
        try:
            self.output.write_relayed(relay)
        except BaseException as exc:
            self.stopped = True
            done = getattr(exc, "written", 0)
            if stream and self.inventory is not None:  # those written reached the stream: delivered
                self._settle(relay["serials"][:done], relay["serials"][done:])
            self._count({"issued": done})
            raise
        if stream and self.inventory is not None:
            try:
                notes = self.inventory.mark_issued(relay["serials"])
            except BaseException:  # written, so delivered: counted; their rows stay pending (every command warns)
                self.stopped = True
                self._count(dict(stats, unmarked=len(relay["serials"])))
                raise
            stats["marked"] = [note for serial in relay["serials"] for note in notes.get(serial, [])]
        self._count(stats)

    def _settle(self, delivered: list[str], lost: list[str]) -> None:
        if delivered:
            self.inventory.mark_issued(delivered)
        if lost:
            self.inventory.mark_abandoned(lost)

    def _count(self, stats: dict) -> None:
        self.result.add(stats)
        if self.progress is not None:
            self.progress(stats.get("issued", 0) + stats.get("kept", 0))

    def give_up(self) -> None:
        """Once the workers are gone: the chunks still waiting (one before them never came) are never written. Into
        standard output their certificates are abandoned (nobody received them); a file's go with the file."""
        from certkit.errors import InventoryError

        waiting, self.waiting = self.waiting, {}
        if self.output.path is not None or self.inventory is None:
            return
        try:
            for stats in waiting.values():
                self.inventory.mark_abandoned(stats["relay"]["serials"])
        except InventoryError:  # gone: the next command that reaches it finds them pending, and says so
            pass


def arrived(payload: dict, turn: "InTurn | None", result: "BatchResult", progress) -> None:
    """A worker's report of a chunk: into the output in turn (its count with it), or counted."""
    if turn is not None:
        turn.arrive(payload)
        return
    result.add(payload)
    if progress is not None:
        progress(payload.get("issued", 0) + payload.get("kept", 0))


def collect(workers, messages, result: "BatchResult", turn: "InTurn | None" = None) -> None:
    """Wait for every worker (they settle their chunk and report), then count what they report.

    A worker flushes its messages into the queue's pipe before it exits (``join_thread``), so once
    every worker is gone whatever is left is in the pipe already: read without waiting for more.
    """
    deadline = time.monotonic() + 60
    for proc in workers:
        while proc.is_alive() and time.monotonic() < deadline:
            proc.join(timeout=0.2)
            drain(messages, result, turn)
        if proc.is_alive():
            proc.kill()
            proc.join()
    drain(messages, result, turn)


def drain(messages, result: "BatchResult", turn: "InTurn | None" = None) -> None:
    import queue as queues

    while True:
        try:
            kind, payload = messages.get_nowait()
        except (queues.Empty, EOFError, OSError):
            return
        if kind != "chunk":
            result.add(payload.get("stats", {}))
            continue
        try:  # a chunk finished once the batch stopped is still written, if its turn comes
            arrived(payload, turn, result, None)
        except (CertkitError, OSError):  # (the batch stops already; the chunks after it are given up)
            pass
