"""What the inventory records in a bundle folder whose cert.pem cannot be read (emptied, damaged, gone):
``revoke FOLDER`` and ``renew FOLDER`` name the certificate recorded there, and how the command takes it by its
serial (:func:`certkit.lifecycle.find_certificate`). The file alone is never taken for that certificate: a
revocation is final, and the hint only says which serial to give. Also the ``--ca-dir`` a command that a message
suggests needs to act on the same CA (:func:`ca_option`). And what ``find_certificate`` says of a folder or file that
names no certificate of this CA: a CA directory, a folder whose cert.pem is no file, an output file of several
certificates, a certificate the inventory does not record."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.constants import CERT_FILE
from certkit.errors import CertkitError, UnknownCertificate
from certkit.paths import absolute
from certkit.signatures import signed_by
from certkit.text import shown
from certkit.vocabulary import serial_hex

if TYPE_CHECKING:
    from cryptography import x509

    from certkit.inventory import Inventory


def ca_option(ca) -> str:
    """`` --ca-dir DIR`` for a command a message suggests, when the CA that must act (``ca``: a CA object, or
    its directory) is not the one certkit finds without it ($CERTKIT_CA_DIR, else the per-user one); "" when
    it is, or its directory is not known."""
    import shlex

    from certkit.store import resolve_ca_dir

    ca_dir = ca if isinstance(ca, (str, Path)) else getattr(getattr(ca, "store", None), "path", None)
    if ca_dir is None:
        return ""
    try:
        found = resolve_ca_dir(None, strict=False)
    except CertkitError:
        found = None
    if found is not None and os.path.realpath(found) == os.path.realpath(ca_dir):
        return ""
    return f" --ca-dir {shown(shlex.quote(str(ca_dir)))}"


def recorded_hint(inventory: "Inventory", folder: Path, *, renewing: bool) -> str:
    """`` The inventory records certificate SERIAL (SUBJECT) in FOLDER: ...``, the newest valid certificate
    recorded in the bundle folder ``folder`` and not renewed; "" when there is none (or the inventory cannot
    tell: the refusal the caller makes stands on its own)."""
    try:
        rows = inventory.rows(
            "WHERE folder = ? AND (sink IS NULL OR sink = 'folder') AND status = 'valid' AND NOT EXISTS (SELECT 1 "
            "FROM certificates n WHERE n.renewed_from = certificates.serial AND n.status IN ('valid', 'revoked')) "
            "ORDER BY issued_at DESC, serial DESC LIMIT 1", (absolute(folder),))
    except (CertkitError, OSError):
        return ""
    if not rows:
        return ""
    serial, subject = rows[0]["serial"], shown(rows[0]["subject"]) or "an empty subject"
    recorded = f" The inventory records certificate {serial} ({subject}) in {shown(folder)}: "
    if renewing:  # renew SERIAL will not write into a folder it cannot read either (renewal._renewable)
        return recorded + ("put it back into cert.pem (fullchain.pem begins with it) and renew the folder, or give "
                           "that serial with --out FOLDER to renew it into a new folder.")
    return recorded + "give that serial instead of the folder (revoke works by serial, whatever the folder holds)."


def read_bundle_cert(inventory: "Inventory", cert_path: Path, renewing: bool) -> "x509.Certificate":
    """The certificate of ``cert_path``; a bundle's cert.pem that holds none certkit can read is refused with
    :func:`recorded_hint` added."""
    from certkit.lifecycle import _read_cert

    try:
        return _read_cert(cert_path)
    except UnknownCertificate as exc:
        hint = recorded_hint(inventory, cert_path.parent, renewing=renewing) if cert_path.name == CERT_FILE else ""
        if not hint:
            raise
        raise UnknownCertificate(f"{exc}{hint}") from None


def refuse_folder_without_cert(inventory: "Inventory", path: Path, what: str, allow_names: bool) -> None:
    """Refuse a folder whose cert.pem is no file: a CA directory, or a bundle folder without one (said as
    it is there: a pipe, a folder, a link to nothing; or not there at all)."""
    from certkit import store
    from certkit.vocabulary import file_kind_text

    cert_path = path / CERT_FILE
    if (path / store.CERT_FILE).is_file() and any(
            (path / n).exists() for n in (store.KEY_FILE, store.CONFIG_FILE, store.INVENTORY_FILE)):
        revoke = "" if allow_names else _revoking_a_ca_dir(inventory, path / store.CERT_FILE)
        raise UnknownCertificate(f"The folder {shown(path)} is a CA directory, not a certificate bundle; "
                                 f"give {what} of a certificate this CA issued.{revoke}")
    none = f"{shown(cert_path)} is {file_kind_text(cert_path)}" if os.path.lexists(cert_path) else \
        f"The folder {shown(path)} holds no cert.pem"
    raise UnknownCertificate(f"{none}; give {what}." + recorded_hint(inventory, path, renewing=allow_names))


def _revoking_a_ca_dir(inventory: "Inventory", ca_pem: Path) -> str:
    """How to revoke the CA whose directory was given to revoke: by its ca.pem, at this CA when this CA issued it
    (an intermediate given to its parent's revoke), else at the CA above it."""
    from cryptography import x509

    from certkit.errors import parse_errors

    try:
        cert = x509.load_pem_x509_certificate(ca_pem.read_bytes())
        ours = inventory.certificate(serial_hex(cert.serial_number)) == cert
    except (OSError, ValueError, UnknownCertificate, *parse_errors()):
        ours = False
    if ours:
        return (f" This CA issued that CA's certificate: to revoke it, give its certificate, {shown(ca_pem)} (or its "
                f"serial, {serial_hex(cert.serial_number)}), with this same CA.")
    return f" To revoke that CA, revoke its certificate {shown(ca_pem)} with --ca-dir naming the CA above it."


def many_in_a_file(path: Path, kind: str, certs: list["x509.Certificate"], *, renewing: bool) -> str:
    """What to give instead of an output file that holds several certificates."""
    listed = ", ".join(serial_hex(c.serial_number) for c in certs[:3]) + (", ..." if len(certs) > 3 else "")
    todo = ("renew one of them by its serial or name, and choose where the renewed bundle goes with --out FOLDER"
            if renewing else "revoke one of them by its serial")
    return (f"{shown(path)} is an output file of --format {kind} holding {len(certs)} certificates ({listed}), "
            f"not one certificate; {todo}.")


def not_in_inventory(cert_path: Path, cert: "x509.Certificate", serial: str,
                      ca_cert: "x509.Certificate | None", ca_parents: tuple, *, revoking: bool) -> str:
    """Why the certificate in ``cert_path`` is not one of this CA's, in words: it is the CA's own
    (and, when ``revoking``, how such a CA is withdrawn), it is signed by the CA but unrecorded, or
    it was issued by another CA."""
    from certkit.vocabulary import common_name

    which = f"The certificate in {shown(cert_path)} (serial {serial})"
    if ca_cert is None:
        return f"{which} was not issued by this CA."
    if cert == ca_cert:
        if not revoking:
            return f"{which} is this CA's own certificate, not one it issued."
        if not ca_parents:
            return (f"{which} is this CA's own certificate, not one it issued: a root CA is not revoked, it is "
                    "removed from trust stores (certkit trust uninstall).")
        above = common_name(ca_parents[0].subject) or ca_parents[0].subject.rfc4514_string()
        return (f"{which} is this CA's own certificate, not one it issued: an intermediate CA is revoked by the CA "
                f"above it ({shown(above)}): certkit revoke --ca-dir <that CA's directory> {shown(cert_path)}.")
    if signed_by(cert, ca_cert):
        return (f"{which} is signed by this CA, but this CA's inventory has no record of it (was the inventory "
                "restored from an older backup, or the CA key used outside certkit?).")
    if cert.issuer == ca_cert.subject:
        return (f"{which} names this CA as its issuer but is not signed by this CA's key: another CA of the "
                "same name issued it.")
    issuer = common_name(cert.issuer) or cert.issuer.rfc4514_string()
    return f"{which} was not issued by this CA: its issuer is {shown(issuer)}."


def held_instead(path: Path, data: bytes) -> str:
    """What ``path``, given to ``renew`` or ``revoke`` as a certificate's file, holds instead (a private key, a CSR,
    a CRL, a bundle.p12, in PEM or DER), with what to give, as '': it holds ...'; '' when certkit cannot tell (a
    damaged certificate)."""
    from certkit import keys
    from certkit.material_kinds import DER_KEY, binary_kind

    if not data.strip():
        return ": it is empty"
    if b"-----BEGIN" in data:
        held = "a private key" if b"PRIVATE KEY-----" in data else keys.held_instead(data, True)
    else:
        held = keys.held_instead(data, False) or (DER_KEY if binary_kind(data) == DER_KEY else None)
    if held in (None, "a certificate"):
        return ""
    folder = path.parent
    give = (f"give its bundle folder, {shown(folder)}, or its cert.pem" if path.name != CERT_FILE and
            (folder / CERT_FILE).is_file() else "give the certificate's own file, its serial or the name it was "
            "issued for ('certkit list' shows them)")
    return f": it holds {held}; {give}"
