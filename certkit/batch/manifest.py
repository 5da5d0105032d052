"""Reading an ``issue-batch`` manifest: CSV with a header row, or JSON lines.

The manifest is streamed, never held in memory; each line is read with a size
limit (so ``/dev/zero`` is refused, not slurped). Each line is parsed into a
:class:`BatchLine` or a reason it is bad; :mod:`certkit.batch.checking` checks
the whole manifest against the CA before anything is signed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from certkit.constants import KEY_TYPES, LEAF_KINDS, MAX_DAYS, MAX_MANIFEST_LINE_BYTES
from certkit.errors import CertkitError, InputTooLarge, loads_json
from certkit.files import open_to_read
from certkit.text import shown

if TYPE_CHECKING:
    from certkit.issuing import Request

COLUMNS = ("kind", "names", "out", "days", "key_type", "email", "uri", "dns")
MAX_REPORTED = 20
# What messages call a manifest read from standard input (the file it was copied to is no name for it).
STDIN = "standard input"


def manifest_name(path: Path, name: str | None = None) -> str:
    """How messages name the manifest at ``path``: ``name`` if given (:data:`STDIN`), else its path."""
    return name if name is not None else shown(path)


def the_manifest(name: str) -> str:
    """``manifest fleet.csv``, or ``manifest on standard input``: the words after "the" in a message."""
    return f"manifest on {name}" if name == STDIN else f"manifest {name}"


class ManifestError(CertkitError):
    """A manifest with bad lines; ``problems`` holds ``(line number, reason)`` pairs."""

    def __init__(self, path: Path, problems: list[tuple[int, str]], bad_lines: int, *,
                 replaceable: bool = False, name: str | None = None) -> None:
        # replaceable: some lines were refused only because their folder holds a bundle already
        # name: what messages call the manifest (manifest_name)
        self.path, self.problems, self.bad_lines, self.replaceable = path, problems, bad_lines, replaceable
        where = manifest_name(path, name)
        if bad_lines == 1:
            line, reason = problems[0]
            message = f"{where} line {line}: {reason} Nothing was issued."
        else:
            listed = "\n".join(f"  line {line}: {reason}" for line, reason in problems)
            more = f"\n  ... and {bad_lines - len(problems)} more" if bad_lines > len(problems) else ""
            message = f"{where} has {bad_lines} bad lines; nothing was issued.\n{listed}{more}"
        super().__init__(message)


@dataclass(frozen=True)
class BatchLine:
    """One manifest line, parsed but not yet checked against the CA."""

    line: int
    kind: str  # server | client | peer
    names: tuple[str, ...]  # a server's (or peer's) names; a client's common name alone
    out_dir: Path  # the batch's output folder
    folder: str  # the line's output folder below it, as the manifest gives it (checked by _relative_out)
    days: int | None
    key_type: str
    emails: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    # A line read back from a check's spool (certkit.batch.spool.Spool): its request as the check
    # worked it out, so that issuing does not parse the names again.
    planned: "Request | None" = field(default=None, compare=False, repr=False)

    def with_plan(self, request: "Request") -> "BatchLine":
        """This line with its request worked out (see ``planned``): a copy made directly, since a
        batch makes one per line and dataclasses.replace costs five times more."""
        planned = object.__new__(BatchLine)
        planned.__dict__.update(self.__dict__, planned=request)
        return planned

    @cached_property
    def out(self) -> Path:
        """The line's output folder."""
        return self.out_dir / self.folder

    def name(self) -> str:
        """The line's folder below the output folder, as a relative path: its name in a single output
        (a folder in a tar archive, a Secret's name, a JSON line's ``name``)."""
        if "/" not in self.folder and "\\" not in self.folder:
            return self.folder  # one plain folder name, the usual case
        return Path(self.folder).as_posix()

    def request(self) -> "Request":
        from certkit.issuing import client_request, server_request

        if self.planned is not None:
            return self.planned

        if self.kind == "client":
            return client_request(self.names[0], emails=self.emails, uris=self.uris, dns_names=self.dns,
                                  key_type=self.key_type, days=self.days)
        return server_request(self.names, kind=self.kind, key_type=self.key_type, days=self.days)


class _BadLine(Exception):
    pass


# --- reading -------------------------------------------------------------------------
def read_manifest(path: str | Path, *, out_dir: str | Path = ".", key_type: str = "ecdsa-p256",
                  days: int | None = None) -> Iterator[BatchLine | tuple[int, str]]:
    """Yield each line of the manifest as a :class:`BatchLine`, or ``(line, reason)`` if it is bad.

    ``key_type`` and ``days`` are the defaults for lines that leave them empty;
    ``out`` folders are taken relative to ``out_dir`` and must stay inside it.
    """
    for number, record in records(Path(path)):
        yield parse(number, record, Path(out_dir), key_type, days)


def parse(number: int, record: dict | str, out_dir: Path, key_type: str, days: int | None) -> BatchLine | tuple:
    if isinstance(record, str):
        return number, record
    try:
        return _batch_line(number, record, out_dir, key_type, days)
    except (_BadLine, CertkitError) as exc:  # CertkitError: a name that cannot name a folder
        from certkit.errors import cli_text

        return number, cli_text(exc)


def records(path: Path, name: str | None = None) -> Iterator[tuple[int, dict | str]]:
    """``(line number, record)`` for each certificate line; the record is a reason if unreadable.
    ``name``: what messages call the manifest, if not its path (:data:`STDIN`)."""
    the = the_manifest(manifest_name(path, name))
    try:
        # -sig: spreadsheets write a BOM; a named pipe nobody writes to is refused, not waited on
        handle = io.TextIOWrapper(open_to_read(path, the), encoding="utf-8-sig", newline="")
    except IsADirectoryError:
        raise CertkitError(f"The {the} is a folder, not a file.") from None
    except OSError as exc:
        raise CertkitError(f"Cannot read the {the}: {exc.strerror}.") from None
    with handle:
        lines = _bounded_lines(handle, the)
        try:
            first = _first_content(lines)
            yield from _jsonl_records(first, lines) if first[1].lstrip().startswith("{") else _csv_records(first, lines)
        except UnicodeDecodeError:
            raise CertkitError(f"The {the} is not UTF-8 text{_first_undecodable(path)}") from None


def _first_undecodable(path: Path) -> str:
    """Where the manifest at ``path`` first stops being UTF-8, said as ``": line N is '...'; ...hint."``: the
    text decoder reads ahead in blocks, so its error names no line. Lines are counted as reading counts them
    (a CR, LF or CRLF ends one: latin-1 maps every byte to one character and back)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a pipe, read once already: nothing to read again
            return "."
        with open(path, encoding="latin-1", newline="") as handle:
            for number, text in enumerate(iter(lambda: handle.readline(MAX_MANIFEST_LINE_BYTES + 1), ""), 1):
                if problem := _undecodable(text.encode("latin-1"), number):
                    return problem
    except OSError:
        pass
    return "."


def _undecodable(line: bytes, number: int) -> str:
    """``": line N is '...'; ..."`` if ``line`` (the manifest's line ``number``) is not UTF-8, else ``""``."""
    try:
        line.decode("utf-8")
        return ""
    except UnicodeDecodeError:
        # Control bytes no text holds (a tab, a line end and ESC, of a coloured line pasted, are text's): DER's tags
        # and lengths, as in a key's 30 77 02 01 01 04 20 <the private scalar>.
        if any(byte < 0x09 or 0x0E <= byte < 0x20 and byte != 0x1B for byte in line):
            return (f": line {number} holds control bytes, as no text does: a binary file (a DER key or certificate, a "
                    ".p12?), not a manifest; it is not shown here, as such a file may hold a private key.")
        value = line.rstrip(b"\r\n").decode("utf-8", "backslashreplace")
        value = shown(value if len(value) <= 120 else value[:117] + "...")  # a control byte escaped too
        return (f": line {number} is '{value}' (the bytes shown as \\xNN are not UTF-8; Latin-1 or Windows-1252, as "
                "a spreadsheet's plain \"CSV\" is saved?); save the manifest as UTF-8 (\"CSV UTF-8\").")


def _bounded_lines(handle, the: str) -> Iterator[str]:
    number = 0
    while True:
        try:
            text = handle.readline(MAX_MANIFEST_LINE_BYTES + 1)
        except OSError as exc:  # an I/O error midway (a failing disk, /proc/self/mem): said as opening's are
            raise CertkitError(f"Cannot read the {the}: {exc.strerror or exc}.") from None
        if not text:
            return
        number += 1
        _check_line(text, number, the)
        yield text


def _check_line(text: str | bytes, number: int, the: str) -> None:
    """Refuse a line no manifest has: longer than :data:`MAX_MANIFEST_LINE_BYTES`, or holding a NUL
    byte (a binary file, or UTF-16, whose every other byte is one)."""
    if len(text) > MAX_MANIFEST_LINE_BYTES:
        raise InputTooLarge(f"Line {number} of the {the} is longer than "
                            f"{MAX_MANIFEST_LINE_BYTES // 1024} KiB; a manifest line names one certificate, "
                            "so this is not the file you meant.")
    if ("\0" if isinstance(text, str) else b"\0") in text:
        raise CertkitError(f"The {the} is not text: line {number} holds a NUL byte (a binary file, or UTF-16?); "
                           "a manifest is UTF-8 text.")


def check_spooled_line(line: bytes, number: int, name: str) -> None:
    """What reading the manifest would refuse in ``line`` (its ``number``), refused as standard input
    is copied to a file (see certkit.cli.batch), in the same words: a line too long, a NUL byte, bytes
    that are not UTF-8. ``name``: what messages call the manifest (:data:`STDIN`)."""
    the = the_manifest(name)
    if len(line) <= MAX_MANIFEST_LINE_BYTES:
        try:
            line.decode("utf-8")  # a line ends at a newline byte, which no character's UTF-8 holds: never cut
        except UnicodeDecodeError:
            raise CertkitError(f"The {the} is not UTF-8 text{_undecodable(line, number)}") from None
    _check_line(line, number, the)


def byte_lines(stream, limit: int = MAX_MANIFEST_LINE_BYTES) -> Iterator[bytes]:
    """The lines of the binary ``stream`` (standard input) as reading the manifest counts them: a CR, an LF or a
    CRLF ends one, as Python's universal newlines do, so an old Mac's CR-only manifest is not one giant line; each
    line with its end. A line longer than ``limit`` comes as its first ``limit + 1`` bytes (``readline(limit + 1)``'s
    habit), and is the last: :func:`check_spooled_line` refuses it."""
    import re

    read = getattr(stream, "read1", stream.read)  # what has come: a terminal's line as it is typed
    pending = b""
    while chunk := read(1 << 16):
        pending, start = pending + chunk, 0
        for end in re.finditer(rb"\r\n|\r|\n", pending):
            if end.end() == len(pending) and end.group() == b"\r":  # perhaps a CRLF that the read cut in two
                break
            yield pending[start:end.end()]
            start = end.end()
        pending = pending[start:]
        if len(pending) > limit:
            yield pending[:limit + 1]
            return
    if pending:
        yield pending


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
    from certkit.names import parse_host, safe_folder_name

    kind = record.get("kind")
    kind = kind.strip().lower() if isinstance(kind, str) else kind
    if kind not in LEAF_KINDS:
        raise _BadLine(f"kind is {_as_given(record.get('kind'))}; it must be one of: {', '.join(LEAF_KINDS)}.")
    raw_names = record.get("names")
    if kind != "client":
        names = _words(raw_names, "names")
        if not names:
            raise _BadLine(f"a {kind} line needs at least one name in 'names'.")
        for column in ("email", "uri", "dns"):
            if _words(record.get(column), column):
                raise _BadLine(f"'{column}' applies to client lines only; put a {kind}'s names in 'names'.")
    else:
        if isinstance(raw_names, list) and len(raw_names) == 1:
            raw_names = raw_names[0]
        if not isinstance(raw_names, str) or not raw_names.strip():
            raise _BadLine("a client line needs its common name in 'names'.")
        names = (raw_names,)  # a common name may hold spaces ("Alice Smith")
    days = _days(record.get("days"), default_days)
    key_type = record.get("key_type")
    if key_type is not None and not isinstance(key_type, str):  # false, 0, [] are no "default" (as for out)
        raise _BadLine(f"key_type is {_as_given(key_type)}; it must be a string, one of: {', '.join(KEY_TYPES)}.")
    key_type = (key_type or "").strip() or default_key_type
    if key_type not in KEY_TYPES:
        raise _BadLine(f"key_type is {_as_given(key_type)}; choose one of: {', '.join(KEY_TYPES)}.")
    out = record.get("out")
    if out is not None and not isinstance(out, str):
        raise _BadLine("'out' must be a string.")
    out = (out or "").strip()
    if not out:
        # As the single commands do: the folder is named after the first name, made safe.
        first = parse_host(names[0]).value if kind != "client" else names[0]
        out = safe_folder_name(first)
    return BatchLine(number, kind, names, out_dir, _relative_out(out), days, key_type,
                     _words(record.get("email"), "email"), _words(record.get("uri"), "uri"),
                     _words(record.get("dns"), "dns"))


def _days(value: Any, default: int | None) -> int | None:
    if isinstance(value, str):
        value = value.strip(" \t") or None  # as --days: a no-break space or U+2028 is no blank around a number
        if value is not None:
            from certkit.text import is_whole_number

            if not is_whole_number(value):  # int() reads other scripts' digits ('٣٠' is 30) and '1_0' too
                raise _BadLine(f"days is {_as_given(value)}; it must be a whole number in the digits 0 to 9.")
            try:
                value = int(value)
            except ValueError:
                raise _BadLine(f"days is {_as_given(value)}; it must be a whole number.") from None
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DAYS:
        raise _BadLine(f"days is {_as_given(value)}; it must be a whole number from 1 to {MAX_DAYS}.")
    return value


def _as_given(value: Any) -> str:
    """A manifest's value as its line wrote it: a string quoted, a JSON value as JSON (true, null, 1e400
    is Infinity), not as Python would print it (True, None, inf)."""
    if isinstance(value, str):
        return shown(repr(value))
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return shown(repr(value))


def _relative_out(out: str) -> str:
    """An ``out`` folder must be a relative path below ``--out-dir``: no absolute path, no ``..``.
    (What the kernel would refuse in it is checked with the folder, when one is written: a name in a
    jsonl, k8s or tar output is no file's name.)"""
    if "\0" in out:
        from certkit.paths import check_name

        check_name(out, "output folder")
    if "/" not in out and "\\" not in out and out not in (".", "..") and not out.startswith("~"):
        return out  # one plain folder name (the usual case): nothing to climb out with
    parts = Path(out).parts
    if Path(out).is_absolute() or out.startswith(("~", "\\")) or ".." in parts:
        raise _BadLine(f"'out' is {shown(out)}; it must be a folder below the batch's output folder (a relative "
                       "path without "
                       "'..'), so a manifest cannot write anywhere else.")
    if not parts:  # '.', './', './.': the output folder itself, which would become one line's bundle folder
        raise _BadLine(f"'out' is {shown(out)}, the batch's output folder itself; it must be a folder below it "
                       "(leave 'out' empty for one named after the line's first name).")
    return out
