"""What a batch's forked worker processes share: whether this system can fork, how a worker dies
with its parent, how it takes the stop signals held while it was forked, and how workers share out
the chunks of a manifest."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable


def can_fork() -> bool:
    import multiprocessing

    return "fork" in multiprocessing.get_all_start_methods()


def die_with_parent(parent: int) -> None:
    """SIGTERM this worker when its parent dies, even by SIGKILL (Linux's PR_SET_PDEATHSIG), so a
    killed batch leaves no process working."""
    import sys

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


def let_signals_in() -> None:
    """In a worker forked under :func:`certkit.issuing.uninterrupted` (so that a stop arriving as it
    starts meets the worker's own handlers, not the parent's inherited ones, which would print a
    traceback): once its handlers are set, the stops held since the fork arrive."""
    from certkit.issuing import HELD_SIGNALS

    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_SIGNALS)


def chunk_counter(ctx):
    """The position of the next chunk that no worker has taken, in shared memory: made before the
    workers are forked (``ctx``: the fork context), used by each through :func:`claimer`."""
    return ctx.Value("q", 0)


def claimer(counter, written=None, ahead: int = 0) -> Callable[[], int]:
    """Take the next chunk nobody has taken: each worker takes one whenever it is free, so a worker
    that gets less of the CPU (another process on the machine) does fewer chunks, instead of the
    others waiting for it at the end. Positions come out in increasing order, in every worker.
    With ``written`` (how many chunks the parent has written into the one output, in turn), a chunk at
    most ``ahead`` past the next one to write: at most ``ahead`` finished chunks wait in the parent."""
    import time

    def claim() -> int:
        while True:
            with counter.get_lock():
                position = counter.value
                if written is None or position <= written.value + ahead:
                    counter.value = position + 1
                    return position
            time.sleep(0.002)  # the chunk before is still being issued (by a worker the machine holds up)

    return claim
