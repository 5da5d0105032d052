"""What a batch's forked worker processes share: whether this system can fork, how a worker dies
with its parent, and how it takes the stop signals held while it was forked."""

from __future__ import annotations

import os
import signal


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
