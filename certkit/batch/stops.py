"""How a stopped batch counts and says what stopped it: the failure in words, and what the chunk it stopped had
delivered (:func:`delivered`) and left unmarked (:func:`unmarked`)."""

from __future__ import annotations

from certkit.errors import CertkitError


def in_words(exc: BaseException) -> str:
    """A failure that stops a batch, as the sentence its message starts with: a CertkitError's own
    message, an OSError in words ("The disk is full (PATH)." rather than "[Errno 28]"), anything else
    (a bug) with its class name."""
    if isinstance(exc, CertkitError):
        return str(exc)
    if isinstance(exc, OSError):
        from certkit.bundle import os_reason
        from certkit.text import shown

        reason = os_reason(exc)
        where = f" ({shown(exc.filename)})" if exc.filename else ""
        return f"{reason[:1].upper()}{reason[1:]}{where}."
    return f"{type(exc).__name__}: {exc}".rstrip(".") + "."


def delivered(exc: BaseException) -> int:
    """How many bundles the chunk that ``exc`` stopped had delivered and not yet reported: also
    when a stop held off during a failed write landed on top of the failure (its context)."""
    for one in (exc, exc.__context__):
        if one is not None and hasattr(one, "certkit_delivered"):
            return one.certkit_delivered
    return 0


def unmarked(exc: BaseException) -> int:
    """How many of :func:`delivered`'s bundles are written whole but not marked (the inventory went
    away): also when a stop (the parent's SIGTERM to every worker after another's error) landed on top."""
    for one in (exc, exc.__context__):
        if one is not None and hasattr(one, "certkit_unmarked"):
            return one.certkit_unmarked
    return 0
