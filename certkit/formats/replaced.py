"""What ``--force`` replaces with a one-output file (``--format jsonl|k8s|tar --out FILE``): an earlier output of
these formats, or an empty file, never a file of something else (notes.txt, a config); and what the replaced file
held, said once it has gone, as a bundle folder's removed files are."""

from __future__ import annotations

import os
from pathlib import Path

from certkit.errors import UnsafeOutputPath
from certkit.text import shown

_BLANK = 4096  # a file of at most this many bytes, all white space, holds nothing
SHOWN = 5  # certificates named in the note; the rest are counted


def is_blank(path: Path) -> bool:
    """Whether the regular file ``path`` holds nothing: no byte, or white space alone."""
    if os.stat(path).st_size > _BLANK:
        return False
    with open(path, "rb") as f:
        return not f.read(_BLANK + 1).strip()


def refuse_a_foreign_file(path: Path, text: str, fmt: str | None = None) -> None:
    """Refuse an existing ``path`` that holds something but no certificate certkit could have written there, even
    with --force: --force replaces an earlier output of ``fmt`` (its certificates recorded as replaced or
    released), not a file of the user's that was named by mistake, nor an output of another format (fleet.tar
    made JSON lines: whatever unpacks it with tar would fail)."""
    from certkit.errors import CertkitError
    from certkit.formats.reading import output_format

    try:
        if not path.is_file() or is_blank(path):
            return
        found = output_format(path)
        size = os.stat(path).st_size
    except (OSError, CertkitError):
        return  # said by refuse_a_key_file: a file that cannot be read is refused there
    if found is not None:
        _refuse_another_format(found, fmt, f"{shown(text)} is", "write over it, even with --force",
                               "Choose another file, or remove it first if you no longer need it.")
        return
    raise UnsafeOutputPath(f"{shown(text)} holds {size} bytes and is no jsonl, k8s or tar output certkit wrote (no "
                           "certificate in it); certkit will not write over it, even with --force. Choose another "
                           "file, or remove it first if you no longer need it.")


def refuse_a_bad_append(stream, fmt: str) -> None:
    """Refuse a jsonl or k8s output that standard output appends to a file it would break: one holding an output
    of another format (``--format jsonl >> secrets.yaml``), or one whose last line has no line break (``printf
    '%s'``, ``jq -j``, an editor), to which the first new record would be joined. Either way the file would be one
    that jq or kubectl no longer reads whole, while the inventory says its certificates were delivered."""
    import fcntl

    from certkit.errors import CertkitError
    from certkit.formats.reading import output_format
    from certkit.formats.recorded import appended_to

    fd = appended_to(stream)
    if fd is None:
        return
    try:  # opened anew for reading: standard output is open for writing only
        at_end = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND
        end = os.fstat(fd).st_size if at_end else os.lseek(fd, 0, os.SEEK_CUR)
        with open(f"/proc/self/fd/{fd}", "rb") as f:
            last = os.pread(f.fileno(), 1, end - 1) if end > 0 else b"\n"
        found = output_format(f"/proc/self/fd/{fd}")
    except (OSError, CertkitError):
        return
    _refuse_another_format(found, fmt, "Standard output is a file that already holds data (>>?); it is",
                           "append to it", "Write this output to a new file (--out FILE, or > FILE).")
    if last not in (b"\n", b""):
        record = "JSON line" if fmt == "jsonl" else "Secret"
        raise UnsafeOutputPath(f"Standard output is a file whose last line has no line break (>>?): the {record} "
                               f"would be joined to that line, and {_READERS[fmt]} would read neither whole. Add "
                               "the line break first (echo >> FILE), or write to a new file (--out FILE, or > FILE).")


_READERS = {"jsonl": "a JSON-lines reader (jq)", "k8s": "kubectl", "tar": "tar"}


def _refuse_another_format(found: str | None, fmt: str | None, subject: str, act: str, advice: str) -> None:
    if found is None or fmt is None or found == fmt:
        return
    raise UnsafeOutputPath(f"{subject} a {found} output, and this command writes {fmt}: certkit will not {act}, "
                           f"or {_READERS[found]} would no longer read it. {advice}")


def replaced_notes(path: Path | None, text: str) -> list[str]:
    """Read before ``--force`` replaces the existing file ``path``: a note saying what it held (an earlier output,
    of which certificates; or nothing), for once it has gone. None if there is no file there."""
    from certkit.formats.reading import output_file_certificates
    from certkit.vocabulary import serial_hex

    if path is None or not path.is_file():
        return []
    try:
        if is_blank(path):
            return [f"{shown(text)} was replaced: it was empty"]
        found = output_file_certificates(path)
    except Exception:  # noqa: BLE001 - a note only: what cannot be read is said as such
        found = None
    if found is None:
        return [f"{shown(text)} was replaced: what it held could not be read"]
    kind, certs = found
    named = ", ".join(f"{_name(cert)} {serial_hex(cert.serial_number)}" for cert in certs[:SHOWN])
    more = f" and {len(certs) - SHOWN} more" if len(certs) > SHOWN else ""
    count = "1 certificate" if len(certs) == 1 else f"{len(certs)} certificates"
    return [f"{shown(text)} was replaced: it was a {kind} output of {count} ({named}{more})"]


def _name(cert) -> str:
    from cryptography.x509.oid import NameOID

    common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return shown(str(common[0].value)) if common else shown(cert.subject.rfc4514_string())
