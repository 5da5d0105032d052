"""The bytes of each one-output format: a JSON line, a Kubernetes Secret, a tar archive's members
(:class:`Encoder`), and the names each format needs (a Secret's, an archive folder's)."""

from __future__ import annotations

import base64
import json
import re
import tarfile
import time
from collections.abc import Mapping
from functools import lru_cache
from json.encoder import encode_basestring_ascii
from typing import TYPE_CHECKING

from certkit.constants import CA_FILE, CERT_FILE, CHAIN_FILE, FULLCHAIN_FILE, KEY_FILE, OUTPUT_FORMATS, P12_FILE
from certkit.errors import CertkitError, UnsafeOutputPath
from certkit.text import shown

if TYPE_CHECKING:
    from certkit.ca import IssuedCert

FORMATS = OUTPUT_FORMATS
ONE_OUTPUT = FORMATS[1:]  # jsonl, k8s, tar: one output for every certificate of a command
SECRET_TYPE = "kubernetes.io/tls"
# Annotations on each Secret: which certificate it holds, without decoding tls.crt.
ANNOTATION_PREFIX = "certkit/"
# The owner of every tar member: root (uid 0, gid 0), never the issuing user. An archive is unpacked
# on another machine, where the issuer's numeric uid is some other account: GNU tar run as root
# restores the owner recorded in the archive, so that account would own privkey.pem. Unpacked as
# root, root owns the files (chown them for a service user); unpacked as a user, that user does.
# The names are "root" rather than empty, as `git archive` and `tar --owner=root --group=root`
# write them: `tar -tv` then shows "root/root", and tar, which looks an owner up by name before
# its number, finds uid 0 under that name everywhere (where no group is called "root", as gid 0
# is "wheel" on macOS, it falls back to the number, 0 again).
TAR_UID, TAR_GID, TAR_UNAME, TAR_GNAME = 0, 0, "root", "root"


class FormatRefused(CertkitError):
    """A certificate that this output format cannot hold (a Secret without its key)."""


# --- names ------------------------------------------------------------------------------
_LABEL_BAD = re.compile(r"[^a-z0-9-]+")
SECRET_NAME_MAX = 253  # characters of a Kubernetes object name (IsDNS1123Subdomain); no limit on a label's


def secret_name(name: str, typed: str | None = None) -> str:
    """A Kubernetes object name (an RFC 1123 subdomain as the API server checks it: lower-case labels of
    letters, digits and hyphens, at most 253 characters in all; a label may be longer than DNS's 63)
    made from a bundle's name: ``_wildcard.example.com`` becomes ``wildcard.example.com``, ``web/a``
    ``web-a``, ``Alice Smith`` ``alice-smith``. When ``typed``, the name the certificate was made for,
    has non-ASCII characters the result lost (``José Ñ``, not an IDNA host name whose A-label it is,
    nor a name chosen apart from it), it ends with ``-`` and 8 hex digits of that name's SHA-256, so
    that two such names get two Secrets, the same each time; so does a name cut to 253 characters,
    with the digits of the whole name."""
    text = _secret_base(name)
    if typed is not None and not typed.isascii() and _a_label(typed) != text and _made_from(typed) == text:
        text = _suffixed(text, typed)
    return text


def _suffixed(text: str, whole: str) -> str:
    """``text`` (cut to leave room) ending with ``-`` and 8 hex digits of the SHA-256 of ``whole`` (NFC, UTF-8):
    a Secret name that tells apart two names ``text`` alone would give alike."""
    import hashlib
    import unicodedata

    suffix = hashlib.sha256(unicodedata.normalize("NFC", whole).encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return text[:SECRET_NAME_MAX - 9].rstrip(".-") + "-" + suffix


def _made_from(typed: str) -> str | None:
    """The Secret name the default bundle name of ``typed`` gives (its non-ASCII characters lost), or None:
    a name chosen otherwise (a manifest's ``out``) is kept as chosen."""
    try:
        return _secret_base(re.sub(r"[^\x00-\x7f]", "_", typed.replace("*", "_wildcard")))
    except FormatRefused:
        return None


def _a_label(name: str) -> str | None:
    """``name`` as IDNA A-labels in lower case, or None if it is no IDNA name."""
    try:
        return ("wildcard" + name[1:] if name.startswith("*.") else name).encode("idna").decode("ascii").lower()
    except (UnicodeError, ValueError):
        return None


def _secret_base(name: str) -> str:
    """:func:`secret_name` of the bundle's name alone."""
    labels = []
    for label in name.lower().replace("/", "-").split("."):
        label = _LABEL_BAD.sub("-", label).strip("-")
        if label:  # kept whole: the API server takes a label of any length in a name (DNS's 63 is not its rule)
            labels.append(label)
    text = ".".join(labels)
    if not text:
        raise FormatRefused(f"'{shown(name)}' gives no usable Kubernetes name (ASCII letters or digits are needed).")
    return _suffixed(text, name) if len(text) > SECRET_NAME_MAX else text


def typed_name(issued_or_request) -> str | None:
    """The name a certificate (or request) is for, as :func:`secret_name` reads it: its subject's
    common name, else its first identity."""
    from cryptography.x509.oid import NameOID

    common = getattr(issued_or_request, "common_name", None)
    subject = getattr(issued_or_request, "cert", None)
    subject = subject.subject if subject is not None else getattr(issued_or_request, "subject", None)
    if common is None and subject is not None:
        cns = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        common = cns[0].value if cns else None
    identities = getattr(issued_or_request, "identities", None) or ()
    value = common if common is not None else (identities[0].value if identities else None)
    return value if isinstance(value, str) else None


def check_record_name(name: str) -> None:
    """A jsonl record's or a Secret's name holds no control character, as a folder's may not."""
    from certkit.paths import _has_control

    if _has_control(name):
        raise FormatRefused(f"The name {shown(name)} contains a control character; certkit does not write names that "
                            "break tools reading them a line at a time (jq -r, a shell loop, cfssljson -bare). Choose "
                            "another name.")


def folded(member: str) -> str:
    """What two folders of one archive may not share: their names as macOS and Windows compare file names, where
    ``tar -x`` unpacks ``A_B`` and ``a_b`` (or ``é`` composed and decomposed) into one folder, the second
    bundle's files over the first's."""
    import unicodedata

    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", member).casefold())


def member_name(name: str) -> str:
    """A bundle's folder inside a tar archive: a relative path, never absolute or climbing out, that
    ``tar -x`` can make (:func:`_check_member`)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts or name.startswith(("/", "~")):
        raise UnsafeOutputPath(f"'{shown(name)}' cannot name a folder in an archive: it must be a relative path "
                               "without '..'.")
    folder = "/".join(parts)
    if len(folder) > 200 or not folder.isascii() or not folder.isprintable():  # else short and plain: fine
        _check_member(folder)
    return folder


# The longest name of a file in a bundle folder: a member's path is its folder's, '/' and this at most.
_LONGEST_FILE = max(len(n) for n in (CERT_FILE, KEY_FILE, FULLCHAIN_FILE, CHAIN_FILE, CA_FILE, P12_FILE))


def _check_member(folder: str) -> None:
    """Refuse, before anything is signed, an archive folder that the folder format refuses too and that
    ``tar -x`` could not make or would make into a trap: a control character (a line break, which breaks
    tools reading paths a line at a time, ``tar -t`` among them), a name over the file systems' 255
    bytes, or a member path over the 4,095 bytes GNU tar extracts (its ``mkdir``/``open`` fail with
    "File name too long")."""
    from certkit.paths import NAME_MAX, PATH_MAX, _has_control

    if _has_control(folder):
        raise UnsafeOutputPath(f"The archive folder {shown(folder)} contains a control character; certkit does not "
                               "create names that break tools reading paths a line at a time. Choose another name.")
    for part in folder.split("/"):
        size = len(part.encode("utf-8", "surrogatepass"))
        if size > NAME_MAX:
            raise UnsafeOutputPath(
                f"The archive folder {shown(folder[:60])}... has a name of {size} bytes ('{shown(part[:30])}...'); "
                f"file systems allow names of at most {NAME_MAX} bytes, so tar -x could not make it.")
    longest = len(folder.encode("utf-8", "surrogatepass")) + 1 + _LONGEST_FILE
    if longest >= PATH_MAX:
        raise UnsafeOutputPath(
            f"The archive folder {shown(folder[:60])}... makes member paths of up to {longest} bytes (with "
            f"'/{FULLCHAIN_FILE}'); tar -x extracts paths of at most {PATH_MAX - 1} bytes. Choose a shorter name.")


# --- encoding ---------------------------------------------------------------------------
class Encoder:
    """Turns issued certificates into the bytes of one format; the CA's PEMs are encoded once."""

    def __init__(self, fmt: str) -> None:
        if fmt not in ONE_OUTPUT:
            raise CertkitError(f"Unknown output format '{shown(fmt)}'; choose one of: {', '.join(FORMATS)}.")
        self.format = fmt
        self._ca_pems: dict[int, tuple[bytes, bytes]] = {}

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
        if issued.private_key is not None:  # PKCS#8 PEM, as privkey.pem (certkit.key_encryption.private_key_pem)
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
        return tar_bundle(member_name(name), files)

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
    cert_pem, chain_pem, full_pem = files[CERT_FILE], files.get(CHAIN_FILE, b""), files[FULLCHAIN_FILE]
    cert, chain = text(cert_pem.decode("ascii")), _json_text(chain_pem)
    # Escaping is character by character, so the fullchain's JSON text (certificate, then chain) is the two
    # texts joined: the chain's, like the CA's, is the same for every line of a batch, and escaped once.
    if len(full_pem) == len(cert_pem) + len(chain_pem) and full_pem.startswith(cert_pem) and full_pem.endswith(
            chain_pem):
        fullchain = cert[:-1] + chain[1:]
    else:
        fullchain = text(full_pem.decode("ascii"))
    parts = ['{"name": ', text(name), ', "kind": ', text(issued.kind), ', "serial": ', text(facts.serial),
             ', "subject": ', text(facts.subject), ', "names": ', json.dumps(facts.names),
             ', "not_before": ', text(facts.not_before), ', "not_after": ', text(facts.not_after),
             ', "fingerprint_sha256": ', text(facts.fingerprint), ', "cert": ', cert]
    if KEY_FILE in files:
        parts += [', "key": ', text(files[KEY_FILE].decode("ascii"))]
    parts += [', "chain": ', chain, ', "fullchain": ', fullchain, ', "ca": ', _json_text(files[CA_FILE]), "}\n"]
    return "".join(parts).encode("ascii")


@lru_cache(maxsize=16)
def _json_text(pem: bytes) -> str:
    """The JSON text of a CA's PEM (ca.pem, chain.pem): a batch writes the same ones on every line."""
    return encode_basestring_ascii(pem.decode("ascii"))


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
        f"  name: {yaml_string(secret_name(name, typed_name(issued)))}",  # "12345", "yes": strings, not YAML's
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


def tar_bundle(folder: str, files: Mapping[str, bytes], *, mtime: float | None = None) -> bytes:
    """The members of one bundle folder: the folder (0755) and its files, keys 0600, others 0644
    (the modes of :mod:`certkit.bundle`), all owned by root (see ``TAR_UID``). POSIX ustar headers;
    PAX headers where a name is too long or not ASCII, so any name survives."""
    from certkit.bundle import mode_for

    mtime = int(time.time() if mtime is None else mtime)
    owner = (TAR_UID, TAR_GID, TAR_UNAME, TAR_GNAME)
    parts = [_header(folder + "/", tarfile.DIRTYPE, 0o755, 0, mtime, *owner)]
    for file_name, data in files.items():
        parts.append(_header(f"{folder}/{file_name}", tarfile.REGTYPE, mode_for(file_name), len(data), mtime, *owner))
        parts.append(data)
        parts.append(b"\0" * (-len(data) % tarfile.BLOCKSIZE))
    return b"".join(parts)


def _header(name: str, kind: bytes, mode: int, size: int, mtime: int, uid: int, gid: int, uname: str = "",
            gname: str = "") -> bytes:
    """One member's header block: built directly for a short ASCII name (most of them; tarfile's
    generic code costs more than signing the certificate), by tarfile otherwise (a PAX header)."""
    if (len(name) < 100 and name.isascii() and uid < 0o7777777 and gid < 0o7777777
            and len(uname) < 32 and len(gname) < 32 and (uname + gname).isascii()):
        raw = name.encode("ascii")
        fields, tail, rest = _header_fields(kind, mode, size, mtime, uid, gid, uname, gname)
        checksum = b"%06o\0 " % (sum(raw) + rest)  # the checksum counts its own field as spaces
        return b"".join((raw.ljust(100, b"\0"), fields, checksum, tail))
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime, info.uid, info.gid = kind, mode, size, mtime, uid, gid
    info.uname, info.gname = uname, gname
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


@lru_cache(maxsize=256)
def _header_fields(kind: bytes, mode: int, size: int, mtime: int, uid: int, gid: int, uname: str = "",
                   gname: str = "") -> tuple[bytes, bytes, int]:
    """A ustar header's fields after the name, before and after the checksum, and the sum of their
    bytes and the checksum field's spaces: the same for most members of a batch (one mtime per second,
    a few sizes), so only the name is added up per member."""
    fields = b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (mode, uid, gid, size, mtime)
    # type, no link name, magic and version, user and group name, no device numbers, no prefix, padding
    tail = (kind + b"\0" * 100 + b"ustar\x0000" + uname.encode("ascii").ljust(32, b"\0")
            + gname.encode("ascii").ljust(32, b"\0") + b"\0" * (8 + 8 + 155 + 12))
    return fields, tail, sum(fields) + sum(tail) + 8 * ord(" ")


def tar_end() -> bytes:
    return b"\0" * (2 * tarfile.BLOCKSIZE)

