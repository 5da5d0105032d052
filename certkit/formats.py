"""Outputs that deployment tools read: a JSON line, a Kubernetes Secret or a tar archive per certificate.

``--format folder`` is the bundle folder of :mod:`certkit.bundle`. The other
formats put every certificate of a command into one output, a file or standard
output:

- ``jsonl``: one JSON object per line (names, serial, dates, and the PEMs
  ``cert``, ``key``, ``chain``, ``fullchain``, ``ca``); ``cert`` and ``key``
  are the fields cfssl prints, so ``cfssljson`` reads a line;
- ``k8s``: a ``kubernetes.io/tls`` Secret per certificate (``tls.crt`` the
  full chain, ``tls.key``, ``ca.crt``: the keys cert-manager writes), as a
  stream of YAML documents that ``kubectl apply -f`` takes;
- ``tar``: one archive holding a folder per certificate with the bundle's files
  and modes (keys 0600), as ``tar -x`` recreates the folders of ``--format folder``.

Each is an issuing-pipeline :class:`~certkit.issuing.Target`, so every
certificate is still planned, signed, recorded ``pending`` (sink ``file`` with
the output file as its folder, or ``stream`` for standard output), written,
and only then marked ``valid``. A file appears whole or not at all: it is
written under a temporary name beside its destination (mode 0600 when it holds
a key) and renamed into place once complete and flushed to disk. So when many
certificates go into one file (``issue-batch``), their rows stay pending until
the file is in place (:meth:`Output.commit`; the target is ``deferred``), and a
batch that fails marks them abandoned (:meth:`Output.abort`); a writer killed
outright leaves rows that the next command settles by reading the file at the
recorded path (:func:`holds_certificates`). Standard output cannot be made
durable: a certificate written to it is delivered once the write returns.

Keys in these outputs are as sensitive as ``privkey.pem``: a file holding one is
0600, and a key (or a binary archive) is never written to a terminal.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from certkit.constants import CA_FILE, CERT_FILE, CHAIN_FILE, FULLCHAIN_FILE, KEY_FILE, OUTPUT_FORMATS
from certkit.errors import CertkitError, OutputExists, UnsafeOutputPath
from certkit.issuing import Request, Target
from certkit.testhooks import pause_at
from certkit.text import shown

if TYPE_CHECKING:
    from certkit.ca import CA, IssuedCert
    from certkit.inventory import Inventory

FORMATS = OUTPUT_FORMATS
ONE_OUTPUT = FORMATS[1:]  # jsonl, k8s, tar: one output for every certificate of a command
SECRET_TYPE = "kubernetes.io/tls"
# Annotations on each Secret: which certificate it holds, without decoding tls.crt.
ANNOTATION_PREFIX = "certkit/"
_MARK_GROUP = 5000  # serials marked per inventory transaction when a batch's file is in place


class FormatRefused(CertkitError):
    """A certificate that this output format cannot hold (a Secret without its key)."""


# --- names ------------------------------------------------------------------------------
_LABEL_BAD = re.compile(r"[^a-z0-9-]+")


def secret_name(name: str) -> str:
    """A Kubernetes object name (an RFC 1123 subdomain: lower-case labels of letters, digits and
    hyphens, at most 253 characters) made from a bundle's name: ``_wildcard.example.com`` becomes
    ``wildcard.example.com``, ``web/a`` ``web-a``, ``Alice Smith`` ``alice-smith``."""
    labels = []
    for label in name.lower().replace("/", "-").split("."):
        label = _LABEL_BAD.sub("-", label).strip("-")
        if label:
            labels.append(label[:63].rstrip("-"))
    text = ".".join(labels)[:253].rstrip(".-")
    if not text:
        raise FormatRefused(f"'{shown(name)}' gives no usable Kubernetes name (ASCII letters or digits are needed).")
    return text


def member_name(name: str) -> str:
    """A bundle's folder inside a tar archive: a relative path, never absolute or climbing out."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts or name.startswith(("/", "~")):
        raise UnsafeOutputPath(f"'{shown(name)}' cannot name a folder in an archive: it must be a relative path "
                               "without '..'.")
    return "/".join(parts)


# --- encoding ---------------------------------------------------------------------------
class Encoder:
    """Turns issued certificates into the bytes of one format; the CA's PEMs are encoded once."""

    def __init__(self, fmt: str) -> None:
        if fmt not in ONE_OUTPUT:
            raise CertkitError(f"Unknown output format '{shown(fmt)}'; choose one of: {', '.join(FORMATS)}.")
        self.format = fmt
        self._ca_pems: dict[int, tuple[bytes, bytes]] = {}
        self.uid, self.gid = (os.getuid(), os.getgid()) if hasattr(os, "getuid") else (0, 0)

    def _chain(self, issued: "IssuedCert") -> tuple[bytes, bytes]:
        """(chain.pem, ca.pem) of the CA that issued ``issued``: the same for a whole batch."""
        key = id(issued.root)
        if key not in self._ca_pems:
            self._ca_pems[key] = (issued.chain_pem, issued.ca_pem)
        return self._ca_pems[key]

    def files(self, issued: "IssuedCert", extra: Mapping[str, bytes] | None = None) -> dict[str, bytes]:
        """The bundle files, as a folder would hold them (certbot's names)."""
        from cryptography.hazmat.primitives import serialization

        cert_pem = issued.cert_pem
        chain_pem, ca_pem = self._chain(issued)
        files = {CERT_FILE: cert_pem}
        if issued.private_key is not None:  # PKCS#8 PEM, as privkey.pem (certkit.keys.private_key_pem)
            files[KEY_FILE] = issued.private_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        files[FULLCHAIN_FILE] = cert_pem + chain_pem
        if chain_pem:
            files[CHAIN_FILE] = chain_pem
        files[CA_FILE] = ca_pem
        return files | dict(extra or {})

    def encode(self, issued: "IssuedCert", name: str, extra: Mapping[str, bytes] | None = None) -> bytes:
        files = self.files(issued, extra)
        if self.format == "jsonl":
            return jsonl_record(issued, name, files)
        if self.format == "k8s":
            return k8s_secret(issued, name, files)
        return tar_bundle(member_name(name), files, uid=self.uid, gid=self.gid)

    def end(self) -> bytes:
        """What closes the output: a tar archive's two zero blocks."""
        return tar_end() if self.format == "tar" else b""


def _facts(issued: "IssuedCert") -> dict:
    facts = issued.facts  # as the inventory row says
    return {"kind": issued.kind, "serial": facts.serial, "subject": facts.subject, "names": facts.names,
            "not_before": facts.not_before, "not_after": facts.not_after, "fingerprint_sha256": facts.fingerprint}


def jsonl_record(issued: "IssuedCert", name: str, files: Mapping[str, bytes]) -> bytes:
    """One line of JSON: what the certificate is, and its PEMs (``key`` only if the bundle has one).

    The bytes ``json.dumps(record, ensure_ascii=True)`` would give for the record with these keys in
    this order, put together from each value's JSON text, which takes a third of the time."""
    text = encode_basestring_ascii
    facts = issued.facts
    cert = text(files[CERT_FILE].decode("ascii"))
    chain = text(files.get(CHAIN_FILE, b"").decode("ascii"))
    parts = ['{"name": ', text(name), ', "kind": ', text(issued.kind), ', "serial": ', text(facts.serial),
             ', "subject": ', text(facts.subject), ', "names": ', json.dumps(facts.names),
             ', "not_before": ', text(facts.not_before), ', "not_after": ', text(facts.not_after),
             ', "fingerprint_sha256": ', text(facts.fingerprint), ', "cert": ', cert]
    if KEY_FILE in files:
        parts += [', "key": ', text(files[KEY_FILE].decode("ascii"))]
    parts += [', "chain": ', chain, ', "fullchain": ', text(files[FULLCHAIN_FILE].decode("ascii")), ', "ca": ',
              text(files[CA_FILE].decode("ascii")), "}\n"]
    return "".join(parts).encode("ascii")


def k8s_secret(issued: "IssuedCert", name: str, files: Mapping[str, bytes]) -> bytes:
    """A ``kubernetes.io/tls`` Secret as one YAML document: ``tls.crt`` (certificate and
    intermediates, as servers send them), ``tls.key`` and ``ca.crt`` (the root to trust)."""
    if KEY_FILE not in files:
        raise FormatRefused("A kubernetes.io/tls Secret holds the private key, and this certificate has none here "
                            "(a CSR's requester keeps it).")
    facts = _facts(issued)

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    lines = [
        "---",
        "apiVersion: v1",
        "kind: Secret",
        "metadata:",
        f"  name: {secret_name(name)}",
        "  labels:",
        "    app.kubernetes.io/managed-by: certkit",
        "  annotations:",
        f"    {ANNOTATION_PREFIX}serial: {yaml_string(facts['serial'])}",
        f"    {ANNOTATION_PREFIX}kind: {yaml_string(facts['kind'])}",
        f"    {ANNOTATION_PREFIX}not-after: {yaml_string(facts['not_after'])}",
        f"    {ANNOTATION_PREFIX}subject: {yaml_string(facts['subject'])}",
        f"    {ANNOTATION_PREFIX}names: {yaml_string(', '.join(facts['names']))}",
        f"type: {SECRET_TYPE}",
        "data:",
        f"  tls.crt: {b64(files[FULLCHAIN_FILE])}",
        f"  tls.key: {b64(files[KEY_FILE])}",
        f"  ca.crt: {b64(files[CA_FILE])}",
    ]
    return ("\n".join(lines) + "\n").encode("ascii")


def yaml_string(text: str) -> str:
    """``text`` as a YAML double-quoted scalar in plain ASCII: every character that is not printable
    ASCII is an escape, so no control character, bidi override or line break reaches the file."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def tar_bundle(folder: str, files: Mapping[str, bytes], *, uid: int = 0, gid: int = 0,
               mtime: float | None = None) -> bytes:
    """The members of one bundle folder: the folder (0755) and its files, keys 0600, others 0644
    (the modes of :mod:`certkit.bundle`). POSIX ustar headers; PAX headers where a name is too
    long or not ASCII, so any name survives."""
    from certkit.bundle import mode_for

    mtime = int(time.time() if mtime is None else mtime)
    parts = [_header(folder + "/", tarfile.DIRTYPE, 0o755, 0, mtime, uid, gid)]
    for file_name, data in files.items():
        parts.append(_header(f"{folder}/{file_name}", tarfile.REGTYPE, mode_for(file_name), len(data), mtime, uid,
                             gid))
        parts.append(data)
        parts.append(b"\0" * (-len(data) % tarfile.BLOCKSIZE))
    return b"".join(parts)


def _header(name: str, kind: bytes, mode: int, size: int, mtime: int, uid: int, gid: int) -> bytes:
    """One member's header block: built directly for a short ASCII name (most of them; tarfile's
    generic code costs more than signing the certificate), by tarfile otherwise."""
    if len(name) < 100 and name.isascii() and uid < 0o7777777 and gid < 0o7777777:
        raw = name.encode("ascii")
        fields, tail, rest = _header_fields(kind, mode, size, mtime, uid, gid)
        checksum = b"%06o\0 " % (sum(raw) + rest)  # the checksum counts its own field as spaces
        return b"".join((raw.ljust(100, b"\0"), fields, checksum, tail))
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime, info.uid, info.gid = kind, mode, size, mtime, uid, gid
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


@lru_cache(maxsize=256)
def _header_fields(kind: bytes, mode: int, size: int, mtime: int, uid: int, gid: int) -> tuple[bytes, bytes, int]:
    """A ustar header's fields after the name, before and after the checksum, and the sum of their
    bytes and the checksum field's spaces: the same for most members of a batch (one mtime per second,
    a few sizes), so only the name is added up per member."""
    fields = b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (mode, uid, gid, size, mtime)
    # type, no link name, magic and version, no user/group name, no device numbers, no prefix, padding
    tail = kind + b"\0" * 100 + b"ustar\x0000" + b"\0" * (32 + 32 + 8 + 8 + 155 + 12)
    return fields, tail, sum(fields) + sum(tail) + 8 * ord(" ")


def tar_end() -> bytes:
    return b"\0" * (2 * tarfile.BLOCKSIZE)


# --- where the bytes go -----------------------------------------------------------------
class Output:
    """One output file (``path``), or standard output (``path`` None), that the certificates of a
    command are written into in one format.

    ``shared``: many certificates go into it (``issue-batch``). A shared file is
    assembled under a temporary name and put in place by :meth:`commit`, which
    also marks its certificates valid; :meth:`abort` removes it and marks them
    abandoned. Several forked worker processes may append to one output: it is
    opened (:meth:`open`) before they start, and each record is written whole,
    under a lock they share.
    """

    def __init__(self, fmt: str, path: str | Path | None = None, *, force: bool = False, shared: bool = False,
                 sync: bool = True, stream: BinaryIO | None = None) -> None:
        self.encoder = Encoder(fmt)
        self.format = fmt
        self.given = Path(path) if path is not None else None
        self.path = Path(os.path.abspath(path)) if path is not None else None
        self.force, self.shared, self.sync = force, shared, sync
        # without a path: this binary stream (default: standard output's, as it is when written to)
        self._stream = stream
        self._tmp: Path | None = None
        self._made: list[Path] = []  # the folders above a shared file created for it: removed on abort
        self._out: int | None = None  # the file descriptor a shared file's records go to
        self._spool: int | None = None  # serials written to a shared file, to mark when it is in place
        self._lock = None
        self._pending: list[bytes] = []  # a deferred output's records not yet written (see flush)
        self._serials: list[bytes] = []
        self.count = 0

    # what the inventory records
    @property
    def sink(self) -> str:
        return "file" if self.path is not None else "stream"

    @property
    def deferred(self) -> bool:
        """Whether a certificate is valid only once the whole output is in place (a batch's file)."""
        return self.shared and self.path is not None

    def describe(self) -> str:
        return shown(self.given) if self.given is not None else "standard output"

    @property
    def stream(self) -> BinaryIO:
        return self._stream if self._stream is not None else sys.stdout.buffer

    # --- before anything is signed ------------------------------------------------------
    def check(self, ca_dirs: Iterable[str | Path] = (), *, keyed: bool = True) -> None:
        """Refuse what writing could not do: a path in a CA directory, through a link, over a
        folder, over an existing file (unless ``force``); a key or an archive for a terminal."""
        if self.path is None:
            if self.stream.isatty():
                if keyed:
                    raise CertkitError("Standard output is a terminal: certkit does not print private keys there "
                                       "(they would stay in the scrollback and the terminal's log); write them to "
                                       "a file or a pipe.")
                if self.format == "tar":
                    raise CertkitError("Standard output is a terminal, and a tar archive is binary; write it to a "
                                       "file or a pipe.")
            return
        from certkit.bundle import check_folder_owner
        from certkit.paths import check_folders_above, check_output

        check_output(self.given, ca_dirs, what="output file")
        if self.given.is_symlink():
            raise UnsafeOutputPath(f"{shown(self.given)} is a symbolic link; certkit does not write through links. "
                                   "Give the real path.")
        if self.given.exists() and not self.given.is_file():
            raise OutputExists(f"{shown(self.given)} exists and is not a file.", replaceable=False)
        if self.given.exists() and not self.force:
            raise OutputExists(f"{shown(self.given)} already exists.")
        check_folders_above(self.given, "output file")
        parent = self.path.parent
        if parent.is_dir():
            check_folder_owner(parent)

    def check_name(self, request: Request, name: str) -> None:
        """Refuse, per certificate, what this format cannot hold: a Secret without a key, a name that
        is no Kubernetes name or archive path, a name given twice."""
        if self.format == "k8s":
            if not request.keyed:
                raise FormatRefused("A kubernetes.io/tls Secret holds the private key, and a certificate signed "
                                    "from a CSR has none here (the requester keeps it); write jsonl, tar or a "
                                    "folder instead.")
            try:
                secret_name(name)
            except FormatRefused:
                typed = request.common_name or (request.identities[0].value if request.identities else name)
                if typed == name:
                    raise
                raise FormatRefused(f"'{shown(typed)}' gives no usable Kubernetes name: its bundle name, "
                                    f"'{shown(name)}', has no ASCII letters or digits.") from None
        elif self.format == "tar":
            member_name(name)

    def key(self, name: str) -> str:
        """What must differ between two certificates of one output: the Secret's name, the archive folder."""
        if self.format == "k8s":
            return secret_name(name)
        return member_name(name) if self.format == "tar" else name

    def target(self, name: str, *, extra: Callable[["IssuedCert"], Mapping[str, bytes]] | None = None
               ) -> "OutputTarget":
        return OutputTarget(self, name, extra=extra)

    # --- writing ------------------------------------------------------------------------
    def open(self) -> None:
        """Start the output: the temporary file beside a shared file's destination (and the list of
        its serials), and the lock its writers share."""
        if self._out is not None:
            return
        if self.path is None:
            self.stream.flush()  # nothing buffered before the workers are forked
            self._out = -1  # records go to the stream
        elif self.shared:
            self._tmp, self._out, self._made = _create_temporary(self.path)
            import tempfile

            spool = tempfile.TemporaryFile(prefix="certkit-serials-")  # gone with the process
            self._spool = os.dup(spool.fileno())
            spool.close()
        if self.shared:
            import multiprocessing

            if "fork" in multiprocessing.get_all_start_methods():
                self._lock = multiprocessing.get_context("fork").Lock()

    def write_one(self, data: bytes) -> None:
        """A single certificate's output, complete: a file written whole and renamed into place,
        or the bytes on standard output."""
        if self.path is None:
            self.stream.write(data + self.encoder.end())
            self.stream.flush()
            return
        from certkit.atomic import remove_made

        tmp, fd, made = _create_temporary(self.path)
        try:
            try:
                _write_all(fd, data + self.encoder.end())
                if self.sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            pause_at("staged")
            _place(tmp, self.path, force=self.force, sync=self.sync)
        except BaseException:
            _unlink(tmp)
            remove_made(made)
            raise
        pause_at("placed")

    def append(self, data: bytes, serial: str) -> None:
        """One certificate's record, written whole (several processes may be writing). A shared
        file's records wait in memory until :meth:`flush` (a batch calls it after each chunk):
        they are not valid before the whole file is in place anyway."""
        if self._out is None:
            raise CertkitError("The output was not opened before writing.")
        self.count += 1
        if self.deferred:
            self._pending.append(data)
            self._serials.append(serial.encode("ascii") + b"\n")
            return
        self._write(data, b"")

    def flush(self) -> None:
        """Write the records :meth:`append` kept back, in one piece."""
        if self._pending:
            data, serials = b"".join(self._pending), b"".join(self._serials)
            self._pending, self._serials = [], []
            self._write(data, serials)

    def _write(self, data: bytes, serials: bytes) -> None:
        if self._lock is not None:
            self._lock.acquire()
        try:
            # The serials first: if the records cannot be written (a full disk), abort() still
            # knows which certificates the given-up file was to hold, and marks them abandoned.
            if serials and self._spool is not None:
                _write_all(self._spool, serials)
            if self.path is None:
                self.stream.write(data)
                self.stream.flush()  # whole, before another process writes
            else:
                _write_all(self._out, data)
        finally:
            if self._lock is not None:
                self._lock.release()

    def commit(self, inventory: "Inventory | None" = None) -> None:
        """Finish the output: close an archive, put a shared file in place (flushed to disk first),
        then mark its certificates valid."""
        if self._out is None:
            return
        try:
            self.flush()
            end = self.encoder.end()
            if end:
                self._write(end, b"")
            if self._tmp is not None:
                if self.sync:
                    os.fsync(self._out)
                os.close(self._out)
                self._out = None
                if inventory is not None and self.deferred:
                    inventory.sync()  # its certificates' pending rows on disk before the file is in place
                pause_at("staged")
                _place(self._tmp, self.path, force=self.force, sync=self.sync)
                self._tmp, self._made = None, []
                pause_at("placed")
        except BaseException:
            self.abort(inventory)
            raise
        self._out = None
        if inventory is not None:
            for group in self._spooled():
                inventory.mark_issued(group)
        self._close_spool()

    def abort(self, inventory: "Inventory | None" = None) -> None:
        """Give up a shared file: remove it (it may hold keys) and the folders created for it, and
        mark its certificates abandoned."""
        from certkit.atomic import remove_made

        self._pending, self._serials = [], []
        if self._tmp is not None:
            if self._out is not None:
                os.close(self._out)
            _unlink(self._tmp)
            self._tmp = None
        remove_made(self._made)
        self._out = None
        if inventory is not None:
            for group in self._spooled():
                inventory.mark_abandoned(group)
        self._close_spool()

    def _spooled(self) -> Iterator[list[str]]:
        if self._spool is None:
            return
        os.lseek(self._spool, 0, os.SEEK_SET)
        with os.fdopen(os.dup(self._spool), "rb") as spool:
            group: list[str] = []
            for line in spool:
                group.append(line.strip().decode("ascii"))
                if len(group) == _MARK_GROUP:
                    yield group
                    group = []
            if group:
                yield group

    def _close_spool(self) -> None:
        if self._spool is not None:
            os.close(self._spool)
            self._spool = None


class OutputTarget(Target):
    """One certificate into an :class:`Output`, under ``name`` (its folder in an archive, its
    Secret's name, the ``name`` of its JSON line)."""

    def __init__(self, output: Output, name: str, *,
                 extra: Callable[["IssuedCert"], Mapping[str, bytes]] | None = None) -> None:
        self.output, self.name, self.extra = output, name, extra
        self.sink = output.sink
        self.folder = output.path
        self.deferred = output.deferred

    def check(self, ca: "CA", request: Request) -> None:
        self.output.check_name(request, self.name)

    def write(self, issued: "IssuedCert") -> list[Path]:
        data = self.output.encoder.encode(issued, self.name, self.extra(issued) if self.extra else None)
        if self.output.shared:
            self.output.append(data, issued.serial_hex)
        else:
            self.output.write_one(data)
        return [self.output.path] if self.output.path is not None else []


# --- file steps -------------------------------------------------------------------------
def _create_temporary(path: Path) -> tuple[Path, int, list[Path]]:
    """A new private (0600) file beside ``path``, named so that a later run can tell a dead
    writer's leftover (it may hold keys) and remove it; and the folders above ``path`` created
    for it (for :func:`certkit.atomic.remove_made` if the file is given up)."""
    from certkit.atomic import SECRET_MODE, folders_made, sweep_stale, temporary_name

    with folders_made(path.parent) as made:
        sweep_stale(path.parent, path.name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        for _attempt in range(100):
            tmp = path.with_name(temporary_name(path.name))
            try:
                fd = os.open(tmp, flags, SECRET_MODE)
            except FileExistsError:
                continue
            os.fchmod(fd, SECRET_MODE)  # whatever the umask
            return tmp, fd, made
        raise FileExistsError(f"Could not create a temporary file beside {path}.")


def _place(tmp: Path, path: Path, *, force: bool, sync: bool) -> None:
    """Rename the finished ``tmp`` to ``path``: replacing a file only with ``force``."""
    from certkit.atomic import fsync_dir

    if force:
        os.replace(tmp, path)
    else:
        try:
            os.link(tmp, path)  # fails if something appeared there meanwhile: nothing is replaced
        except FileExistsError:
            _unlink(tmp)
            raise OutputExists(f"{shown(path)} appeared while it was being written; nothing was replaced.",
                               replaceable=False) from None
        _unlink(tmp)
    if sync:
        fsync_dir(path.parent)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# --- reading an output back (reconciliation, --resume-like checks) ----------------------
def holds_certificates(path: str | Path, wanted: Mapping[bytes, bool]) -> set[bytes]:
    """Which of the certificates ``wanted`` (DER -> whether its key must be there too) the output
    file ``path`` holds, each whole: its certificate, and its private key if the value says so.
    Reads the file once, as a stream, whatever its size; a damaged or foreign file holds nothing."""
    from certkit.atomic import sweep_stale

    path = Path(path)
    sweep_stale(path.parent, path.name)  # a dead writer's temporary file: it may hold keys
    try:
        with open(path, "rb") as f:
            head = f.read(512)
            f.seek(0)
            if len(head) == 512 and head[257:262] == b"ustar":
                found = _tar_bundles(f)
            elif head.lstrip().startswith(b"{"):
                found = _jsonl_bundles(f)
            else:
                found = _secret_bundles(f)
            return {der for der, key in found if der in wanted and (not wanted[der] or key)}
    except (OSError, tarfile.TarError, ValueError, UnicodeDecodeError):
        return set()


def _pair(cert_pem: bytes, key_pem: bytes | None) -> tuple[bytes, bool] | None:
    """(the certificate's DER, whether ``key_pem`` is its key), or None if it is unreadable."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from certkit.errors import parse_errors
    from certkit.keys import load_private_key, public_key_der

    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        matches = False
        if key_pem:
            try:
                key = load_private_key(key_pem, None)
                matches = public_key_der(key.public_key()) == public_key_der(cert.public_key())
            except (CertkitError, *parse_errors()):
                matches = False
        return cert.public_bytes(Encoding.DER), matches
    except parse_errors():
        return None


_MAX_RECORD = 1 << 20  # one record of any format: a few kilobytes in practice


def _jsonl_bundles(f) -> Iterator[tuple[bytes, bool]]:
    while line := f.readline(_MAX_RECORD + 1):
        if len(line) > _MAX_RECORD or not line.endswith(b"\n"):
            return  # a line cut off by a dead writer, or not ours
        try:
            record = json.loads(line)
            found = _pair(record["cert"].encode(), record["key"].encode() if record.get("key") else None)
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        if found:
            yield found


def _secret_bundles(f) -> Iterator[tuple[bytes, bool]]:
    data: dict[str, str] = {}

    def done() -> Iterator[tuple[bytes, bool]]:
        if "tls.crt" in data and "ca.crt" in data:  # ca.crt comes last: the document is whole
            try:
                chain = base64.b64decode(data["tls.crt"], validate=True)
                key = base64.b64decode(data["tls.key"], validate=True) if "tls.key" in data else None
            except ValueError:
                return
            found = _pair(chain, key)
            if found:
                yield found

    while line := f.readline(_MAX_RECORD + 1):
        if not line.endswith(b"\n"):
            break  # cut off
        text = line.decode("ascii").rstrip("\n")
        if text == "---":
            yield from done()
            data = {}
        elif text.startswith("  ") and not text.startswith("   ") and ": " in text:
            field, value = text.strip().split(": ", 1)
            if field in ("tls.crt", "tls.key", "ca.crt"):
                data[field] = value
    yield from done()


def _tar_bundles(f) -> Iterator[tuple[bytes, bool]]:
    """Each bundle folder of an archive whose members are whole up to ca.pem (written last but for
    bundle.p12): a folder cut off before it does not count."""
    certs: dict[str, bytes] = {}
    keys: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=f, mode="r|") as archive:
            for member in archive:
                folder, _, file_name = member.name.rpartition("/")
                if member.isfile() and file_name in (CERT_FILE, KEY_FILE, CA_FILE) and member.size <= _MAX_RECORD:
                    data = archive.extractfile(member).read()  # a member cut off raises ReadError
                    if file_name == CERT_FILE:
                        certs[folder] = data
                    elif file_name == KEY_FILE:
                        keys[folder] = data
                    elif folder in certs:
                        found = _pair(certs.pop(folder), keys.pop(folder, None))
                        if found:
                            yield found
                archive.members.clear()  # a stream: nothing is looked up again, so memory stays flat
    except tarfile.ReadError:
        pass  # an archive cut off: what came before still counts
