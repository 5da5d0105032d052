"""Reading a one-output file back: which certificates (and their keys) it holds whole, for
reconciliation to settle a dead writer's pending rows."""

from __future__ import annotations

import base64
import contextlib
import re
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.constants import CA_FILE, CERT_FILE, KEY_FILE
from certkit.errors import CertkitError, loads_json

if TYPE_CHECKING:
    from cryptography import x509

# The PEM fields of a jsonl record (docs/formats.md), the certificate and its chain first; "fullchain"
# repeats "cert" and "chain". "csr" is not certkit's: cfssl's JSON, whose "cert" and "key" these are, has it.
JSONL_PEM_FIELDS = ("cert", "chain", "ca", "key", "csr")


def looks_like_json(head: bytes) -> bool:
    """Whether a file that starts with ``head`` is JSON (a jsonl output), not PEM, DER, tar or YAML."""
    return head.lstrip().startswith(b"{")


def looks_like_secret(head: bytes) -> bool:
    """Whether a file that starts with ``head`` is a YAML stream of Kubernetes objects (a k8s output, or a Secret
    kubectl wrote): its first line that is no comment, blank or ``---`` starts one, with LF or CRLF lines."""
    for line in head.splitlines():
        line = line.strip()
        if line and not line.startswith(b"#") and line != b"---":
            return line.startswith((b"apiVersion:", b"kind:"))
    return False


def holds_certificates(path: str | Path, wanted: Mapping[bytes, bool]) -> set[bytes]:
    """Which of the certificates ``wanted`` (DER -> whether its key must be there too) the output
    file ``path`` holds, each whole: its certificate, and its private key if the value says so.
    Reads the file once, as a stream, whatever its size; a damaged or foreign file holds nothing."""
    from certkit.atomic import sweep_stale

    path = Path(path)
    sweep_stale(path.parent, path.name)  # a dead writer's temporary file: it may hold keys
    return {der for der, key in _bundles_in(path) if der in wanted and (not wanted[der] or key)}


def certificates_in(path: str | Path) -> list[bytes]:
    """The certificates (DER) an output file holds whole, in order; none for a damaged or foreign file."""
    return [der for der, _key in _bundles_in(Path(path))]  # for --force over one file: a few thousand at most


def output_file_certificates(path: Path) -> tuple[str, list["x509.Certificate"]] | None:
    """The format of ``path`` (``jsonl``, ``k8s``, ``tar``) and the certificates it holds whole (by serial), if it
    is an output file of ``--format jsonl|k8s|tar`` that holds any; None if it is anything else (a PEM or DER
    certificate): what ``renew FILE`` and ``revoke FILE`` are given."""
    from cryptography import x509

    from certkit.atomic import sweep_stale

    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    refuse_compressed(path, head)
    head = head if head[257:262] == b"ustar" else head.removeprefix(_BOM)  # a text file saved with a byte-order mark
    if len(head) == 512 and head[257:262] == b"ustar":
        kind = "tar"
    elif looks_like_json(head):
        kind = "jsonl"  # or k8s: Secrets as kubectl get -o json writes them (said by what the file holds, below)
    elif looks_like_secret(head):
        kind = "k8s"
    else:
        return None
    sweep_stale(path.parent, path.name)  # a dead writer's temporary file: it may hold keys
    kinds: set[str] = set()
    found = dict.fromkeys(der for der, _key in _bundles_in(path, kinds))
    kind = "k8s" if "k8s" in kinds else kind
    return (kind, sorted((x509.load_der_x509_certificate(der) for der in found),
                         key=lambda c: c.serial_number)) if found else None


# What compressed files start with, and how to decompress one: certkit writes and reads its outputs uncompressed
# (docs/formats.md), so a compressed one is said as such, not as a file that holds no certificate.
_COMPRESSED = ((b"\x1f\x8b", "gzip", "gunzip -k"), (b"\xfd7zXZ\x00", "xz", "unxz -k"),
               (b"\x28\xb5\x2f\xfd", "zstd", "unzstd"), (b"\x04\x22\x4d\x18", "lz4", "unlz4"),
               (b"PK\x03\x04", "zip", "unzip"))


def refuse_compressed(path: Path, head: bytes) -> None:
    """Refuse ``path`` (starting with ``head``) if it is compressed (gzip, xz, zstd, bzip2, lz4, zip): what
    ``renew FILE`` and ``revoke FILE`` are given is read uncompressed, as certkit wrote it."""
    from certkit.errors import UnknownCertificate
    from certkit.text import shown

    found = [(name, tool) for magic, name, tool in _COMPRESSED if head.startswith(magic)]
    if head[:3] == b"BZh" and head[3:4] in b"123456789" and head[4:10] == b"1AY&SY":
        found.append(("bzip2", "bunzip2 -k"))
    if found:
        name, tool = found[0]
        raise UnknownCertificate(f"{shown(path)} is compressed ({name}), and certkit reads its output files and "
                                 f"certificates uncompressed: decompress it first ({tool} {shown(path)}), then give "
                                 "the decompressed file.")


def holds_a_whole_record(path: str | Path) -> bool:
    """Whether ``path`` is an output of these formats (jsonl, k8s, tar): it holds at least one whole
    certificate (read up to the first)."""
    return next(_bundles_in(Path(path)), None) is not None


def output_format(path: str | Path) -> str | None:
    """The format of the output ``path`` holds (``jsonl``, ``k8s``: also Secrets in JSON, as kubectl writes them;
    ``tar``), read up to its first whole certificate; None if it holds none (no output of these formats)."""
    kinds: set[str] = set()
    if next(_bundles_in(Path(path), kinds), None) is None:
        return None
    with open(path, "rb") as f:
        head = f.read(512)
    if len(head) == 512 and head[257:262] == b"ustar":
        return "tar"
    return "k8s" if "k8s" in kinds or not looks_like_json(head.removeprefix(_BOM)) else "jsonl"


def _bundles_in(path: Path, kinds: set[str] | None = None) -> Iterator[tuple[bytes, bool]]:
    """Each whole bundle of the output file ``path``, read as a stream (memory stays flat for any size):
    its certificate's DER, and whether its key is there. ``kinds`` receives ``k8s`` for Secrets in JSON."""
    for cert_pem, key_pem in _records_in(path, kinds):
        if found := _pair(cert_pem, key_pem):
            yield found


def key_in(path: str | Path, cert) -> object | None:
    """The private key of ``cert`` that the output file ``path`` holds beside it (a renewal that keeps the key
    takes it from there), or None."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from certkit.keys import load_private_key

    der = cert.public_bytes(Encoding.DER)
    for cert_pem, key_pem in _records_in(Path(path)):
        if key_pem and _pair(cert_pem, key_pem) == (der, True):
            return load_private_key(key_pem, None)
    return None


def _records_in(path: Path, kinds: set[str] | None = None) -> Iterator[tuple[bytes, bytes | None]]:
    """Each whole record of the output file ``path``: its certificate's PEM (first of its chain) and its key's.
    A file the file system will not read is :class:`certkit.errors.UnreadableFile`, not a file that holds none.
    ``kinds`` receives ``k8s`` when the records are Secrets in JSON (``kubectl get secret -o json``)."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
            f.seek(0)
            if len(head) == 512 and head[257:262] == b"ustar":
                yield from _tar_bundles(f)
                return
            if head.startswith(_BOM):  # a text file saved with a byte-order mark (PowerShell, Notepad): jq, kubectl
                f.seek(len(_BOM))  # and YAML readers skip it
                head = head[len(_BOM):]
            if head.lstrip().split(b"\n", 1)[0].strip() == b"{":  # a value over several lines: kubectl -o json,
                yield from _json_stream_bundles(f, set() if kinds is None else kinds)  # jq's own output
            elif looks_like_json(head):
                yield from _jsonl_bundles(f, set() if kinds is None else kinds)
            else:
                yield from _secret_bundles(f)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, tarfile.TarError, ValueError,
            UnicodeDecodeError):
        return
    except OSError as exc:  # an I/O error, no permission: what it holds is not known, so never "nothing"
        from certkit.errors import UnreadableFile
        from certkit.text import shown

        raise UnreadableFile(f"Cannot read {shown(path)}: {exc.strerror or exc}.", exc.errno) from None


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


_BOM = b"\xef\xbb\xbf"  # UTF-8's byte-order mark
_MAX_RECORD = 1 << 20  # one record of any format: a few kilobytes in practice


def _jsonl_bundles(f, kinds: set[str]) -> Iterator[tuple[bytes, bytes | None]]:
    """Each record of a jsonl file. A last line without its line break (printf '%s', jq -j, an editor) counts when
    it reads as a whole JSON object, as jq reads it: a line a dead writer cut off never does (its closing brace
    comes last)."""
    while line := f.readline(_MAX_RECORD + 1):
        if len(line) > _MAX_RECORD:
            return  # not ours
        try:
            record = loads_json(line)
        except ValueError:
            if not line.endswith(b"\n"):
                return  # a line cut off by a dead writer, or not ours
            continue
        yield from _json_value_bundles(record, kinds)


_MAX_DOCUMENT = 256 << 20  # one JSON value over several lines (a List of every Secret of a namespace)


def _json_stream_bundles(f, kinds: set[str]) -> Iterator[tuple[bytes, bytes | None]]:
    """Each record of JSON values written over several lines, one after the other: ``kubectl get secret -o json``
    (a Secret, or a List of them), ``jq . fleet.jsonl`` (certkit's records, pretty-printed). A value is whole once
    it parses (a file cut off by a dead writer ends in one that never does); the file is read a growing chunk at
    a time, so a value is parsed about twice, and a value larger than :data:`_MAX_DOCUMENT` is not ours."""
    import codecs
    import json
    import re

    decoder, text, at = codecs.getincrementaldecoder("utf-8")("replace"), "", 0
    read, blank, chunk, ended = json.JSONDecoder().raw_decode, re.compile(r"[ \t\r\n]*"), 1 << 16, False
    while True:
        at = blank.match(text, at).end()
        try:
            value, end = read(text, at) if at < len(text) else (None, at)
        except (ValueError, RecursionError):
            end = at
        if end > at:
            at, chunk = end, 1 << 16
            yield from _json_value_bundles(value, kinds)
            continue
        if ended or len(text) - at > _MAX_DOCUMENT:
            return  # cut off, or not ours
        data = f.read(chunk)
        chunk, ended = min(chunk * 2, _MAX_DOCUMENT), not data
        text, at = text[at:] + decoder.decode(data, final=not data), 0


def _json_value_bundles(value, kinds: set[str]) -> Iterator[tuple[bytes, bytes | None]]:
    """The bundles of one JSON value: a jsonl record of certkit's (``cert``, ``key``), a kubernetes.io/tls Secret as
    kubectl writes it in JSON (``data``: ``tls.crt``, ``tls.key`` in base64), or a List of such Secrets
    (``items``)."""
    if not isinstance(value, dict):
        return
    if isinstance(value.get("cert"), str):
        key = value.get("key")
        yield value["cert"].encode(), key.encode() if isinstance(key, str) and key else None
    elif value.get("kind") == "Secret" and isinstance(data := value.get("data"), dict) and \
            isinstance(data.get("tls.crt"), str):
        try:
            chain = base64.b64decode(data["tls.crt"], validate=True)
            key = data.get("tls.key")
            key = base64.b64decode(key, validate=True) if isinstance(key, str) and key else None
        except ValueError:
            return
        kinds.add("k8s")
        yield chain, key
    elif isinstance(items := value.get("items"), list):
        for item in items:
            yield from _json_value_bundles(item, kinds)


def _secret_bundles(f) -> Iterator[tuple[bytes, bytes | None]]:
    """Each Secret's tls.crt and tls.key: whole when its ca.crt came (--format k8s writes it last), or when a
    field of the Secret itself follows its data (kubectl's order: ``kubectl create secret tls``, which writes no
    ca.crt, and ``kubectl get secret -o yaml`` put data before kind, metadata and type). A list of Secrets
    (``kubectl get secrets -o yaml`` of several: ``items:``, each one a ``- `` entry) is read Secret by Secret."""
    data: dict[str, str] = {}
    closed = False
    indent: int | None = None  # of the data fields: 2 in a Secret, 4 in an item of a list

    def done() -> Iterator[tuple[bytes, bytes | None]]:
        if "tls.crt" in data and ("ca.crt" in data or closed):  # the document is whole
            try:
                chain = base64.b64decode(data["tls.crt"], validate=True)
                key = base64.b64decode(data["tls.key"], validate=True) if "tls.key" in data else None
            except ValueError:
                return
            yield chain, key

    while line := f.readline(_MAX_RECORD + 1):
        if not line.endswith(b"\n"):
            break  # cut off
        # kubectl writes UTF-8 (an annotation such as certkit/subject: CN=José, once the Secret went through the
        # API server), and an editor or a checkout may end lines with CRLF: read as YAML readers do
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        depth = len(text) - len(text.lstrip(" "))
        if text.rstrip() == "---" or text.startswith("- "):  # the next document, or the next item of a list
            yield from done()
            data, closed, indent = {}, False, None
        elif data and text.strip() and not text.lstrip().startswith("#") and depth < indent:
            closed = True  # a field of the Secret (or of the document) after its data: the data is whole
        elif (found := _SECRET_FIELD.fullmatch(text)) and (indent is None or depth == indent) and depth in (2, 4):
            indent = depth
            data[found[1]] = _yaml_scalar(found[2])
    yield from done()


def record_names(f, fmt: str) -> set[str]:
    """The names of the records in the output file ``f`` of ``fmt``: each Secret's ``metadata.name`` (k8s, as
    certkit and kubectl write YAML), each jsonl record's ``name``; what must differ between two of its records."""
    names: set[str] = set()
    metadata: int | None = None  # the depth of the metadata being read: 0 in a document, 2 in a list's item
    while line := f.readline(_MAX_RECORD + 1):
        if fmt == "jsonl":
            with contextlib.suppress(ValueError):
                if isinstance(record := loads_json(line), dict) and isinstance(record.get("name"), str):
                    names.add(record["name"])
            continue
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        depth = len(text) - len(text.lstrip(" -"))
        if found := _METADATA.fullmatch(text):  # a document's (depth 0), an item's of kubectl's List (2)
            metadata = len(found[1])
        elif metadata is not None and text.startswith(" " * (metadata + 2) + "name: ") and depth == metadata + 2:
            names.add(_yaml_scalar(text[metadata + 8:]))
        elif text.strip() and not text.lstrip().startswith("#") and depth <= (metadata or 0):
            metadata = None  # the metadata's end: another field, item or document
    return names


_METADATA = re.compile(r"((?:- |  )?)metadata: *")
_SECRET_FIELD = re.compile(r" +(tls\.crt|tls\.key|ca\.crt): (.*)")


def _yaml_scalar(value: str) -> str:
    """A data field's base64 as YAML gives it: plain, or quoted (as yq and some editors write it), with a comment
    after it or not."""
    value = value.split(" #", 1)[0].strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return value


def _tar_bundles(f) -> Iterator[tuple[bytes, bytes | None]]:
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
                        yield certs.pop(folder), keys.pop(folder, None)
                archive.members.clear()  # a stream: nothing is looked up again, so memory stays flat
    except tarfile.ReadError:
        pass  # an archive cut off: what came before still counts
