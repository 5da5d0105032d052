"""The two forms of an ``issue-batch`` manifest, each line read into a record (a dict of :data:`COLUMNS`) or
the reason it is bad: CSV with a header row (a quoted field never runs on past its line), or JSON lines (one
object per line, each key given once)."""

from __future__ import annotations

import csv
from collections.abc import Iterator

from certkit.errors import loads_json
from certkit.text import shown

COLUMNS = ("kind", "names", "out", "days", "key_type", "email", "uri", "dns")


def _first_content(lines: Iterator[str]) -> tuple[list[str], str]:
    """The lines before the first one with content (blank or comments), and that line."""
    before = []
    for text in lines:
        stripped = text.strip()
        if stripped and not stripped.startswith("#"):
            return before, text
        before.append(text)
    return before, ""


def _found(header: list[str]) -> str:
    """The header found, quoted when it tries to be one (it names kind or names, or is a JSON array); else the line
    is not repeated: a file given for the manifest by mistake (a passphrase file, ~/.pgpass, a key) is a secret."""
    import re

    if header[0].startswith("[") or {"kind", "names"} & set(re.findall(r"[a-z_]+", " ".join(header))):
        return f"found: {', '.join(shown(h) for h in header)}"
    return "its first line names neither kind nor names, so it is not repeated here, as a file given by mistake may " \
           "hold a secret: is this file a manifest?"


def _csv_records(first: tuple[list[str], str], lines: Iterator[str]) -> Iterator[tuple[int, dict | str]]:
    import itertools

    header: list[str] | None = None
    for number, row in _csv_rows(itertools.chain(first[0], [first[1]], lines)):
        if isinstance(row, str):
            yield number, row
            if header is None:
                return  # without a header, no line can be read
            continue
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in row]
            unknown = [c for c in header if c not in COLUMNS]
            if unknown or "kind" not in header or "names" not in header or len(set(header)) != len(header):
                yield number, (
                    f"the header must name the columns, each once: kind and names, and any of "
                    f"{', '.join(COLUMNS[2:])} ({_found(header)})."
                    + (" A JSON manifest is one object per line (JSON lines), not one JSON array."
                       if header[0].startswith("[") else _separator_hint(header))
                )
                return
            continue
        if len(row) > len(header):
            yield number, (f"it has {len(row)} fields but the header names {len(header)}; "
                           "quote a field that contains a comma.")
            continue
        yield number, dict(zip(header, row, strict=False))


class _RunsOn(Exception):
    """The csv reader asked for the next line before the last one made a row: a quoted field runs on."""


def _separator_hint(header: list[str]) -> str:
    """For a header of one cell that holds the columns separated by ``;`` (a spreadsheet's "CSV" where the
    decimal mark is a comma), a tab or ``|``: that a manifest's columns are separated by commas."""
    for mark, called in ((";", "semicolons"), ("\t", "tabs"), ("|", "'|'")):
        if len(header) == 1 and {"kind", "names"} <= {c.strip() for c in header[0].split(mark)}:
            return (f" Its columns are separated by {called}; a manifest's are separated by commas (save it as "
                    "\"CSV UTF-8 (comma delimited)\", or replace them).")
    return ""


def _csv_rows(lines: Iterator[str]) -> Iterator[tuple[int, list[str] | str]]:
    """``(line number, fields)`` for each line of the file, or ``(line number, reason)`` for a line
    that is not a row of CSV on its own.

    No certkit field may hold a line break, so every line is one row: a quoted field that runs on
    past the end of its line (an unclosed quote) makes that line bad, numbered as the file numbers it,
    and the next line is read afresh instead of as the rest of that field.
    """
    number = 0
    waiting = False  # a line was handed to the reader and its row has not come out yet

    def feed() -> Iterator[str]:
        nonlocal number, waiting
        for text in lines:
            number += 1
            waiting = True
            # A line starting with '#' is a comment: an empty row, skipped like a blank line.
            yield "\n" if text.startswith("#") else text
            if waiting:  # asked for more (the next line, or the end of the file) in the middle of a row
                raise _RunsOn

    while True:
        try:
            for row in csv.reader(feed()):
                waiting = False
                yield number, row
            return
        except _RunsOn:
            reason = "a quoted field runs on past the end of the line (an unclosed quote?)."
        except csv.Error as exc:
            reason = f"it is not valid CSV ({exc})."
        waiting = False
        yield number, reason


class _Twice(Exception):
    """A JSON object names one key twice (json.loads would keep the last: a line that says "server",
    then "client", would be issued as a client)."""


def _one_of_each(pairs: list[tuple]) -> dict:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set = set()
        raise _Twice(next(k for k, _v in pairs if k in seen or seen.add(k)))
    return found


def _jsonl_records(first: tuple[list[str], str], lines: Iterator[str]) -> Iterator[tuple[int, dict | str]]:
    import itertools

    for number, text in enumerate(itertools.chain(first[0], [first[1]], lines), 1):
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        try:
            record = loads_json(text, object_pairs_hook=_one_of_each)
        except _Twice as exc:
            yield number, f"the key '{shown(str(exc))}' is given twice; give each key once."
            continue
        except ValueError as exc:
            where = f" at column {exc.colno}" if hasattr(exc, "colno") else ""
            yield number, f"it is not valid JSON ({getattr(exc, 'msg', exc)}{where})."
            continue
        if not isinstance(record, dict):
            yield number, "it is not a JSON object."
            continue
        unknown = [k for k in record if k not in COLUMNS]
        if unknown:
            yield number, f"unknown key '{shown(unknown[0])}'; the keys are {', '.join(COLUMNS)}."
            continue
        yield number, record
