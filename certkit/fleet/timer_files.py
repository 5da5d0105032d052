"""The timer's unit files as a pair (for :mod:`certkit.fleet.timer`): written whole or not at all, removed with
an account of what went and what is left."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from certkit.text import shown


@contextlib.contextmanager
def whole_pair(paths: list[Path]):
    """Both units written, or neither changed: a write that fails part-way (a full disk) puts back what it replaced
    (kept meanwhile under a temporary name, see :func:`_kept_aside`) and removes what it created, never leaving a
    new .service beside no .timer, nor beside the old one. Yields the list to add each unit placed to."""
    from certkit.atomic import unlink_quietly

    kept: dict[Path, Path] = {}
    try:
        for path in paths:
            if os.path.isfile(path) and not os.path.islink(path):
                kept[path] = _kept_aside(path)
        placed: list[Path] = []
        try:
            yield placed
        except BaseException:
            for path in placed:
                if path in kept:
                    with contextlib.suppress(OSError):
                        os.replace(kept.pop(path), path)
                else:
                    unlink_quietly(path)
            raise
    finally:
        for aside in kept.values():
            unlink_quietly(aside)


def _kept_aside(path: Path) -> Path:
    """A second name for ``path``'s content, to put it back with a rename: a hard link (no room taken), else (vfat
    has none) a copy, with its mode; a copy that does not fit raises, before anything is replaced."""
    from certkit.atomic import temporary_name, write_new_file
    aside = path.with_name(temporary_name(path.name))
    try:
        os.link(path, aside)
    except OSError:
        write_new_file(aside, path.read_bytes(), os.stat(path).st_mode & 0o777)
    return aside


def remove_units(paths: list[Path], removed: list[Path]) -> str | None:
    """Remove ``paths`` in order, adding each one removed (or gone meanwhile) to ``removed``; at the first that cannot
    be removed, stop and return what happened, in words: what could not be removed and why, what was removed, what
    is left (None once all are gone)."""
    from certkit.bundle import os_reason

    for index, path in enumerate(paths):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            gone = ", ".join(shown(p) for p in removed) if removed else None
            left = ", ".join(shown(p) for p in paths[index:])
            return (f"Cannot remove {shown(path)}: {os_reason(exc)}; " + (f"removed {gone}, " if gone else
                    "nothing was removed, ") + f"left {left}: remove what is left yourself, or fix the cause and run "
                    "this again")
        removed.append(path)
    return None


def how_changed(olds: list[str | None], news: list[str], same) -> str:
    """What installing the units ``news`` over ``olds`` (None: none there) changes: ``written`` (new units),
    ``unchanged`` (the very same text), ``updated`` (the same but for the lines ``same`` leaves out: PATH, HOME) or
    ``replaced`` (another renewal or schedule, with --force)."""
    if all(old is None for old in olds):
        return "written"
    if olds == news:
        return "unchanged"
    return "updated" if [same(old) for old in olds] == [same(new) for new in news] else "replaced"
