"""Reading an ``issue-batch`` manifest: CSV with a header row, or JSON lines.

The manifest is streamed, never held in memory; each line is read with a size
limit (so ``/dev/zero`` is refused, not slurped). Each line is parsed into a
:class:`BatchLine` or a reason it is bad; :mod:`certkit.batch.checking` checks
the whole manifest against the CA before anything is signed.
"""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from certkit.batch.manifest_formats import _csv_records, _first_content, _jsonl_records
from certkit.constants import KEY_TYPES, LEAF_KINDS, MAX_DAYS, MAX_MANIFEST_LINE_BYTES
from certkit.errors import CertkitError, InputTooLarge
from certkit.files import open_to_read
from certkit.text import shown

if TYPE_CHECKING:
    from certkit.issuing import Request

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
