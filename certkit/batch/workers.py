"""What a batch's forked worker processes share: whether this system can fork, and how a worker
dies with its parent."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager


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


_STOPS = {signal.SIGINT, signal.SIGTERM}


@contextmanager
def starting_workers() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while worker processes are forked: each worker starts with them held
    and lets them in (:func:`let_signals_in`) once its own handlers are in place, so a stop that
    arrives as a worker starts is handled by the worker's handler, never by the parent's (a
    traceback) or half-way through setting them up. The parent gets them once all have started."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def let_signals_in() -> None:
    """In a worker, once its handlers are set: the stops held since it was forked arrive now."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)
