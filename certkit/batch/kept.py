"""Which bundle ``issue-batch --resume`` keeps for a line: one in the line's folder that is complete, of a
valid certificate of this CA issued for exactly this line (:func:`bundle_mismatch` says why not, in words)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from certkit.batch.manifest import BatchLine
from certkit.errors import CertkitError

if TYPE_CHECKING:
    from certkit.ca import CA
    from certkit.issuing import Request


def complete_bundle(ca: "CA", line: BatchLine, request: "Request") -> bool:
    """Whether ``line.out`` already holds what ``--resume`` keeps for this line (:func:`bundle_mismatch`)."""
    return bundle_mismatch(ca, line, request) is None


def bundle_mismatch(ca: "CA", line: BatchLine, request: "Request") -> str | None:
    """Why ``line.out`` holds no bundle ``--resume`` keeps for this line (in words), or None if it holds one:
    complete, of a valid certificate of this CA issued for exactly this line (kind, names, key type, lifetime)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from certkit.batch.resumed import kept_differs
    from certkit.constants import MAX_CERT_FILE_BYTES
    from certkit.files import read_limited
    from certkit.inventory.reconcile import bundle_holds
    from certkit.vocabulary import serial_hex

    cert_file = line.out / "cert.pem"
    if not cert_file.is_file() or ca.inventory is None:
        return "it has no cert.pem"
    try:
        cert = x509.load_pem_x509_certificate(read_limited(cert_file, MAX_CERT_FILE_BYTES))
        row = ca.inventory.get(serial_hex(cert.serial_number))
    except (CertkitError, ValueError):
        return "its cert.pem cannot be read"
    if row is None or ca.inventory.certificate(row["serial"]) != cert:
        return "its certificate is not one this CA issued"
    if row["status"] != "valid":
        return f"its certificate is {row['status']}"
    wanted = sorted(str(i) for i in request.identities)
    have = sorted(n for n in row.get("names", []) if not n.startswith("DirName:"))
    if row["kind"] != line.kind or have != wanted:
        theirs = ", ".join(have) or row.get("subject") or "no names"  # a client's without SANs: its subject's CN
        asked = ", ".join(wanted) or f"CN={request.common_name}"
        return f"its certificate is a {row['kind']} certificate for {theirs}; the line asks for a {line.kind} " \
               f"certificate for {asked}"
    theirs = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    if line.kind == "client" and theirs != [request.common_name]:  # Müller's in M_ller, the folder Möller's gets too
        return (f"its certificate is for CN={', CN='.join(map(str, theirs)) or '(none)'}; the line asks for "
                f"CN={request.common_name}")
    try:
        if not bundle_holds(line.out, cert.public_bytes(Encoding.DER), keyed=True):
            return "it is incomplete (a file is missing, or privkey.pem is not its key)"
    except CertkitError as exc:  # a file the file system would not read: said, not taken for one missing
        return f"its files cannot be read ({exc})"
    return kept_differs(ca, cert, request)  # expired since, another key type or lifetime
