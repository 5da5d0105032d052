"""The one reader of certificate material: PEM and DER files, bundle folders, standard input.

:func:`load_material` reads a file (PEM with any mix of certificates, CSRs and
keys, or a DER certificate or CSR; ``-`` is standard input) or a bundle folder
(certbot's names first, so the leaf comes first), each file with the size
limit of :data:`certkit.constants.MAX_CERT_FILE_BYTES`. A certkit JSON-lines
file (``--format jsonl``) or one of its objects alone is read by its PEM fields. Damaged input is one
:class:`UnreadableFile` sentence naming the file and the cause, never a
traceback. Keys are loaded only to be described (type, whether they match a
certificate); encrypted ones are never decrypted here.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from pathlib import Path

from certkit.constants import CA_FILE, CERT_FILE, CHAIN_FILE, FULLCHAIN_FILE, KEY_FILE, MAX_CERT_FILE_BYTES
from certkit.errors import CertkitError, loads_json, parse_errors
from certkit.files import STDIN, read_limited
from certkit.material_kinds import DER_KEY, PKCS7, advice_for, binary_kind, der_chain, trusted_certificate
from certkit.text import shown


class UnreadableFile(CertkitError):
    """A file or folder that holds no certificate, CSR or key certkit can read."""


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)
_CERT_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE"}
_CSR_LABELS = {b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST"}
# Files looked at in a bundle folder: certbot's names first, so the leaf comes first.
_BUNDLE_ORDER = (CERT_FILE, FULLCHAIN_FILE, CHAIN_FILE, CA_FILE, KEY_FILE)
_BUNDLE_SUFFIXES = (".pem", ".crt", ".cer", ".der", ".csr", ".key", ".crl")



@dataclass
class Material:
    """What one file or folder holds, in the order found; duplicates removed."""

    source: Path
    other: list = field(default_factory=list)  # labels of PEM blocks not described (CRLs, public keys)
    certificates: list = field(default_factory=list)  # (x509.Certificate, file name)
    csrs: list = field(default_factory=list)  # (x509.CertificateSigningRequest, file name)
    keys: list = field(default_factory=list)  # (private key or None if encrypted, file name)
    crls: list = field(default_factory=list)  # (x509.CertificateRevocationList, file name)
    # Of a certkit JSON file: a description of each object read ("line 2 (web)"), and the first one's
    # certificate and chain, which its server sends (its ca is what a peer trusts, not a link of the chain).
    records: list[str] = field(default_factory=list)
    sent: list | None = None
    format: str | None = None  # of a certkit output file read by its records: "jsonl", "k8s" or "tar"

    def first_of_many(self) -> str:
        """The note of a verdict on the first of several records (a JSON line, a Secret), and how to have another."""
        import shlex

        if self.format == "k8s":
            return (f"{shown(self.source)} holds {len(self.records)} Secrets: this is the verdict on the first, "
                    f"{self.records[0]}; to verify another, decode its tls.crt (base64 -d) into a file and verify that")
        if self.format == "tar":
            return (f"{shown(self.source)} holds {len(self.records)} bundle folders: this is the verdict on the first, "
                    f"{self.records[0]}; to verify another: tar -xOf {shlex.quote(shown(self.source))} "
                    "FOLDER/fullchain.pem | certkit verify -")
        return (f"{shown(self.source)} holds {len(self.records)} certificates, one per line: this is the verdict on "
                f"the first, {self.records[0]}; to verify another: jq -r 'select(.name == \"NAME\") | .fullchain' "
                f"{shlex.quote(shown(self.source))} | certkit verify -")


# --- reading ------------------------------------------------------------------------
def load_material(path: str | Path, *, wanted: str = "certificate or CSR to describe",
                  crls: bool = False) -> Material:
    """Read a certificate/CSR/key file (PEM or DER) or a bundle folder; with ``crls``, a CRL is
    something to describe too (``certkit inspect``), else it is only named when nothing else is found.

    Raises :class:`UnreadableFile` with a sentence naming the file and the cause
    when nothing usable is found, or when a file is empty, damaged or truncated.
    """
    path = Path(path)
    material = Material(path)
    if str(path) == STDIN:
        _read_file(path, material)
        _require_something(path, material, wanted, crls)
        return material
    from certkit.files import cannot_reach

    if (said := cannot_reach(path, "file or folder")) is not None:  # is_dir() would raise PermissionError
        raise UnreadableFile(said)
    if path.is_dir():
        files = [path / n for n in _BUNDLE_ORDER if (path / n).is_file()]
        files += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _BUNDLE_SUFFIXES
                        and p not in files and not p.name.startswith("."))
        for f in files:
            _read_file(f, material)
        if not (material.certificates or material.csrs or (crls and material.crls)):
            raise UnreadableFile(f"The folder {shown(path)} holds no certificate or CSR "
                                 f"(looked for {', '.join(_BUNDLE_SUFFIXES)} files).")
        return material
    if not path.exists():
        from certkit.files import not_there

        raise UnreadableFile(not_there(path))
    _read_file(path, material)
    _require_something(path, material, wanted, crls)
    return material


def load_certificates(path: str | Path, role: str) -> list:
    """The certificates of ``path``, given as ``role`` (--untrusted: "intermediate CA certificates"):
    a file with none (a CSR, a key) is refused, naming what it holds instead; so is one holding a certificate
    certkit cannot read (damaged, or a name form cryptography lacks), naming which."""
    material = load_material(path, wanted=f"certificate; it is given as {role}")
    if not material.certificates:
        found = (["a CSR"] if material.csrs else []) + (["a private key"] if material.keys else [])
        raise UnreadableFile(f"{_name(Path(path))} holds {' and '.join(found)} but no certificate; it is given as "
                             f"{role}.")
    from certkit.errors import damage_said, unreadable_certificate

    for place, (cert, _) in enumerate(material.certificates, start=1):  # parsed when first read: said here, once
        if (exc := unreadable_certificate(cert)) is not None:
            raise UnreadableFile(f"{_name(Path(path))} holds, as certificate {place} of {len(material.certificates)}, "
                                 f"{damage_said(exc)}; it is given as {role}.")
    return [cert for cert, _ in material.certificates]


def _require_something(path: Path, material: Material, wanted: str, crls: bool) -> None:
    if not (material.certificates or material.csrs or (crls and material.crls)) and \
            {"PKCS7", "CMS"} & set(material.other):
        raise UnreadableFile(f"{_name(path)} is {PKCS7}, not a PEM certificate{advice_for(PKCS7, path)}.")
    if not (material.certificates or material.csrs or (crls and material.crls)):
        found = ["a private key"] if material.keys else []
        found += ["a CRL"] if material.crls else []
        found += [f"a {label.lower()}" for label in sorted(set(material.other))]
        raise UnreadableFile(f"{_name(path)} holds {' and '.join(found) or 'nothing'} but no {wanted}.")


def _name(path: Path) -> str:
    return "standard input" if str(path) == STDIN else shown(path)


def _label(path: Path) -> str:
    """What each certificate read from ``path`` is said to come from: its file name, or standard input."""
    return "standard input" if str(path) == STDIN else path.name


def _read_file(path: Path, material: Material) -> None:
    from certkit.formats.reading import looks_like_json

    data = read_limited(path, MAX_CERT_FILE_BYTES, what="file")
    if not data.strip():
        raise UnreadableFile(f"{_name(path)} is empty.")
    if len(data) >= 512 and data[257:262] == b"ustar":  # a --format tar archive: its bundle folders
        _read_tar(path, data, material)
        return
    if looks_like_json(data):
        _read_json(path, data, material)
        return
    if b"-----BEGIN" not in data and _SECRET_FIELD.search(data):
        _read_secrets(path, data, material)
        return
    if b"-----BEGIN" not in data:
        _read_der(path, data, material)
        return
    _read_pem(data, material, _name(path), path.name)


def _read_pem(data: bytes, material: Material, where: str, file_name: str) -> None:
    """The PEM blocks of ``data``, each kept under ``file_name``; ``where`` names it in an error."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    seen = {c.fingerprint(hashes.SHA256()) for c, _ in material.certificates}
    blocks = list(_PEM_BLOCK.finditer(data))
    begins = data.count(b"-----BEGIN ")
    if not begins:
        raise UnreadableFile(f"{where} is not PEM text: it has no -----BEGIN line.")
    if not blocks or len(blocks) < begins:
        raise UnreadableFile(f"{where} holds a PEM block without its END line: the file is truncated.")
    for block in blocks:
        label, body = block.group(1), block.group(2)
        der = _pem_body(where, label, body)
        try:
            if label in _CERT_LABELS:
                cert = x509.load_der_x509_certificate(_trusted(where, der) if label == b"TRUSTED CERTIFICATE" else der)
                fp = cert.fingerprint(hashes.SHA256())
                if fp not in seen:  # fullchain.pem repeats cert.pem
                    seen.add(fp)
                    material.certificates.append((cert, file_name))
            elif label in _CSR_LABELS:
                material.csrs.append((x509.load_der_x509_csr(der), file_name))
            elif label.endswith(b"PRIVATE KEY"):
                material.keys.append((_load_key(block.group(0), label), file_name))
            elif label == b"X509 CRL":
                material.crls.append((x509.load_der_x509_crl(der), file_name))
            else:
                material.other.append(label.decode())
        except parse_errors() as exc:
            from certkit.errors import damage_said

            what = "CRL" if label == b"X509 CRL" else label.decode().lower()
            raise UnreadableFile(f"{where} holds {damage_said(exc, what, [der])}.") from None


def _trusted(where: str, der: bytes) -> bytes:
    """The certificate of a TRUSTED CERTIFICATE block; one whose trust settings OpenSSL would apply (trusted only
    for some uses, or rejected for some) is refused: judged without them, it could pass where OpenSSL refuses it."""
    if (found := trusted_certificate(der)) is None:
        return der  # said damaged by the reader, as before
    if found[1]:
        raise UnreadableFile(f"{where} holds an OpenSSL trusted certificate with trust settings (the uses it is "
                             "trusted or rejected for: openssl x509 -addtrust or -addreject, or a system bundle "
                             "such as ca-bundle.trust.crt), which certkit does not apply; give the certificate "
                             f"without them (openssl x509 -in {'FILE' if ' ' in where else where} -out cert.pem).")
    return found[0]


def _read_json(path: Path, data: bytes, material: Material) -> None:
    """Read a certkit JSON-lines file (``--format jsonl``: one object per line), or one such object
    alone (``jq 'select(...)'`` prints it over several lines), by its PEM fields. Its PEMs hold
    ``\\n`` escapes: scanned as they are, they would look damaged."""
    from certkit.formats.reading import JSONL_PEM_FIELDS

    try:
        whole = loads_json(data)
        objects = [(0, whole)]
    except (ValueError, UnicodeDecodeError):
        objects = [(n, line) for n, line in enumerate(data.splitlines(), 1) if line.strip()]
        try:
            objects[0] = (objects[0][0], loads_json(objects[0][1]))
        except (ValueError, UnicodeDecodeError):
            raise UnreadableFile(f"{_name(path)} starts like JSON (a certkit JSON-lines file?), but its first line "
                                 "is not a JSON object: the file is cut off or damaged.") from None
    for n, text in objects:
        where = f"line {n} of {_name(path)}" if n else _name(path)
        try:
            record = loads_json(text) if isinstance(text, bytes) else text
        except (ValueError, UnicodeDecodeError):
            raise UnreadableFile(f"{where} is not a JSON object: the JSON-lines file is cut off or damaged.") from None
        if not isinstance(record, dict) or not isinstance(record.get("cert"), str):
            raise UnreadableFile(f"{where} is JSON, but not a certkit JSON-lines record: it has no \"cert\" field "
                                 "holding a PEM certificate (see docs/formats.md).")
        label = _label(path) + (f" line {n}" if n else "")
        before = len(material.certificates)
        for key in JSONL_PEM_FIELDS:
            value = record.get(key)
            if isinstance(value, str) and value.strip():
                _read_pem(value.encode(), material, f"the \"{key}\" of {where}", f"{label}: {key}")
            if key == "chain" and material.sent is None:  # the first record's cert and chain
                material.sent = [c for c, _ in material.certificates[before:]]
        name = f"({shown(record['name'])})" if isinstance(record.get("name"), str) else ""
        material.records.append(f"line {n} {name}".strip() if n else name or "the object")
    material.format = "jsonl"


def _read_tar(path: Path, data: bytes, material: Material) -> None:
    """Read a tar archive (``--format tar``) by its bundle folders: each one's bundle files, named as members."""
    import io
    import tarfile

    folders: list[str] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            for member in archive:
                folder, _, file_name = member.name.rpartition("/")
                if not member.isfile() or file_name not in _BUNDLE_ORDER:
                    continue
                if folder not in folders:
                    folders.append(folder)
                before = len(material.certificates)
                _read_pem(archive.extractfile(member).read(), material, f"{shown(member.name)} in {_name(path)}",
                          f"{_label(path)}: {member.name}")
                if len(folders) == 1 and file_name != CA_FILE:  # the first folder's certificate and chain
                    material.sent = (material.sent or []) + [c for c, _ in material.certificates[before:]]
    except (tarfile.TarError, OSError) as exc:
        raise UnreadableFile(f"{_name(path)} is a tar archive that is cut off or damaged ({exc}).") from None
    material.records += [shown(folder) for folder in folders]
    material.format = "tar"


# A Secret's data field as --format k8s and `kubectl get secret -o yaml` write it: its base64 on the key's line.
_SECRET_FIELD = re.compile(rb"^[ \t]*(tls\.crt|tls\.key|ca\.crt):[ \t]*([A-Za-z0-9+/=]+)[ \t]*$", re.M)
_SECRET_NAME = re.compile(rb"^  name:[ \t]*\"?([^\"\r\n]*)\"?[ \t]*$", re.M)


def _read_secrets(path: Path, data: bytes, material: Material) -> None:
    """Read a YAML stream of ``kubernetes.io/tls`` Secrets (``--format k8s``, or what ``kubectl get secret -o yaml``
    prints) by their data: ``tls.crt`` (the certificate and its chain, what a server sends), ``tls.key`` and
    ``ca.crt``, each PEM in base64 on its key's line."""
    secrets: list[tuple[bytes, dict[bytes, bytes]]] = []
    for document in re.split(rb"^---[ \t]*$", data, flags=re.M):
        fields: dict[bytes, bytes] = {}
        name = _SECRET_NAME.search(document)
        for found in _SECRET_FIELD.finditer(document):
            if found[1] in fields:  # a list of Secrets (kubectl get secret -o yaml of several): the next one
                secrets.append((b"", fields))
                fields = {}
            fields[found[1]] = found[2]
        if fields:
            secrets.append((name[1] if name else b"", fields))
    for n, (name, fields) in enumerate(secrets, 1):
        where = f"Secret {n} of {_name(path)}"
        before = len(material.certificates)
        for key in (b"tls.crt", b"ca.crt", b"tls.key"):
            if key not in fields:
                continue
            try:
                pem = base64.b64decode(fields[key], validate=True)
            except (binascii.Error, ValueError):
                raise UnreadableFile(f"The {key.decode()} of {where} is not base64: the manifest is cut off or "
                                     "damaged.") from None
            _read_pem(pem, material, f"the {key.decode()} of {where}", f"{_label(path)} Secret {n}: {key.decode()}")
            if key == b"tls.crt" and material.sent is None:  # the first Secret's certificate and chain
                material.sent = [c for c, _ in material.certificates[before:]]
        named = f" ({shown(name.decode('utf-8', 'replace'))})" if name else ""
        material.records.append(f"Secret {n}{named}")
    material.format = "k8s"


def _pem_body(where: str, label: bytes, body: bytes) -> bytes:
    lines = [ln.strip() for ln in body.strip().splitlines()]
    if any(b":" in ln for ln in lines):  # legacy encrypted PEM headers (Proc-Type, DEK-Info)
        lines = lines[lines.index(b"") + 1:] if b"" in lines else [ln for ln in lines if b":" not in ln]
    try:
        return base64.b64decode(b"".join(lines), validate=True)
    except (binascii.Error, ValueError):
        raise UnreadableFile(f"{where} holds a {label.decode().lower()} whose base64 text is damaged.") from None


def _load_key(pem: bytes, label: bytes):
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if label.startswith(b"ENCRYPTED") or b"Proc-Type: 4,ENCRYPTED" in pem:
        return None  # described as "encrypted", never decrypted here
    try:
        return load_pem_private_key(pem, None)
    except ValueError:
        raise
    except Exception as exc:  # UnsupportedAlgorithm, TypeError: a key type cryptography cannot load
        raise ValueError(str(exc) or type(exc).__name__) from None


def _read_der(path: Path, data: bytes, material: Material) -> None:
    from cryptography import x509

    for loader, bucket in ((x509.load_der_x509_certificate, material.certificates),
                           (x509.load_der_x509_csr, material.csrs),
                           (x509.load_der_x509_crl, material.crls)):
        try:
            bucket.append((loader(data), path.name))
            return
        except parse_errors():
            continue
    if (chain := der_chain(data)) is not None:  # DER certificates one after another: a chain, in its order
        material.certificates += [(cert, path.name) for cert in chain]
        return
    from certkit.name_strings import odd_name_string

    if (unread := odd_name_string(data)) is not None:  # valid X.509 that cryptography refuses: no damage
        raise UnreadableFile(f"{_name(path)} holds a certificate or CSR certkit cannot read: {unread}.")
    kind = binary_kind(data)
    if kind == DER_KEY:  # said as a PEM key is: "holds a private key but no certificate; it is given as ..."
        material.keys.append((None, path.name))
        return
    if kind is not None:
        raise UnreadableFile(f"{_name(path)} is {kind}, not a certificate, CSR or CRL{advice_for(kind, path)}.")
    raise UnreadableFile(
        f"{_name(path)} is neither a PEM file nor a DER certificate, CSR or CRL (it may be truncated or not "
        "a certificate at all)."
    )


def key_problem(chain: bytes, chain_path: Path | str, key, key_path: Path | str) -> str | None:
    """Why the private ``key`` (of ``key_path``) does not go with the PEM ``chain`` (of ``chain_path``), whose first
    certificate is the one OpenSSL presents and checks it against: the key of a later one (a chain file written CA
    first: said with the fix), or of none; a sentence without its final stop. None when it is the first one's, or
    when there is nothing to compare."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    try:
        certs = x509.load_pem_x509_certificates(chain)
        wanted = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    except (*parse_errors(), AttributeError):
        return None
    spki = [c.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) for c in certs]
    if not spki or spki[0] == wanted:
        return None
    if wanted not in spki:
        return f"{shown(key_path)} is not the key of that certificate (OpenSSL: key values mismatch)"
    at = spki.index(wanted)
    return (f"{shown(chain_path)} starts with {shown(certs[0].subject.rfc4514_string())}, not with the certificate of "
            f"this key ({shown(certs[at].subject.rfc4514_string())}, number {at + 1} in the file); a certificate file "
            "starts with its own certificate, then the CAs above it (as fullchain.pem): put that one first")


def one_leaf(path: Path, data: bytes) -> bytes:
    """``data``, the bytes of the certificate file ``path``, refused when it holds several end-entity
    certificates (``cat bob.pem a.pem``): it names no one certificate, and taking the first would revoke
    (for good) or renew the wrong one. CA certificates after a leaf (a fullchain.pem) are no others; a
    damaged later block (a truncated copy) leaves the first certificate the one meant, as before; nor is the
    same certificate again (``cat cert.pem fullchain.pem``)."""
    from cryptography import x509

    from certkit.errors import UnknownCertificate
    from certkit.vocabulary import serial_hex

    def is_ca(cert: "x509.Certificate") -> bool:
        try:
            return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            return False

    try:
        leaves = list({cert: None for cert in x509.load_pem_x509_certificates(data) if not is_ca(cert)})
        listed = "; ".join(f"{shown(c.subject.rfc4514_string()) or 'an empty subject'}, serial "
                           f"{serial_hex(c.serial_number)}" for c in leaves[:3]) + ("; ..." if len(leaves) > 3 else "")
    except parse_errors():  # DER, or a damaged block
        return data
    if len(leaves) > 1:
        raise UnknownCertificate(f"{_name(path)} holds {len(leaves)} end-entity certificates, not one ({listed}); "
                                 "certkit will not pick one of them: give that certificate's own file, or its serial.")
    return data
