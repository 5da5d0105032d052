"""What the inventory records in a bundle folder whose cert.pem cannot be read (emptied, damaged, gone):
``revoke FOLDER`` and ``renew FOLDER`` name the certificate recorded there, and how the command takes it by its
serial (:func:`certkit.lifecycle.find_certificate`). The file alone is never taken for that certificate: a
revocation is final, and the hint only says which serial to give. Also the ``--ca-dir`` a command that a message
suggests needs to act on the same CA (:func:`ca_option`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.constants import CERT_FILE
from certkit.errors import CertkitError, UnknownCertificate
from certkit.paths import absolute
from certkit.text import shown

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
    if renewing:  # renew SERIAL will not write into a folder it cannot read either (lifecycle._renewable)
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
