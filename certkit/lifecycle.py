"""Finding issued certificates by serial, name or bundle folder, and renewing a bundle in place.

``certkit renew`` and ``certkit revoke`` take what a user has at hand: the
serial openssl printed, the name the certificate was issued for, or the
folder its files are in. :func:`find_certificate` turns any of those into one
inventory entry (or a clear error when it names none, or several).
:func:`renew_bundle` issues the successor and swaps it into the folder as one
step (:func:`certkit.bundle.replace_folder`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.errors import CannotRenew, CertkitError, UnknownCertificate
from certkit.inventory import normalize_serial

if TYPE_CHECKING:
    from cryptography import x509

    from certkit.ca import CA, IssuedCert
    from certkit.inventory import Inventory

# A serial prefix shorter than this is too likely to be a typo that matches something.
MIN_SERIAL_PREFIX = 8
BUNDLE_FILES = ("cert.pem", "privkey.pem", "fullchain.pem", "chain.pem", "ca.pem")


@dataclass
class Found:
    """One certificate of the inventory, and the folder that holds its bundle (if known)."""

    serial: str
    row: dict
    cert: "x509.Certificate"
    folder: Path | None
    successors: list[str] = field(default_factory=list)


def _read_cert(path: Path) -> "x509.Certificate":
    from cryptography import x509

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnknownCertificate(f"Cannot read {path}: {exc.strerror or exc}.") from None
    try:
        return x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    except ValueError:
        raise UnknownCertificate(f"{path} does not hold a readable certificate.") from None


def holds(folder: Path | None, serial: str) -> bool:
    """Whether ``folder``'s cert.pem is the certificate ``serial``."""
    if folder is None or not (folder / "cert.pem").is_file():
        return False
    try:
        return format(_read_cert(folder / "cert.pem").serial_number, "X") == serial
    except UnknownCertificate:
        return False


def find_certificate(inventory: "Inventory", ref: str, *, allow_names: bool = True) -> Found:
    """The certificate ``ref`` names: a bundle folder or certificate file, a serial (or a unique
    prefix of at least 8 hex digits), or, with ``allow_names``, a name it was issued for."""
    path = Path(ref)
    if path.exists():
        cert_path = path / "cert.pem" if path.is_dir() else path
        if path.is_dir() and not cert_path.is_file():
            raise UnknownCertificate(f"The folder {path} holds no cert.pem; give a bundle folder, a serial or a name.")
        cert = _read_cert(cert_path)
        serial = format(cert.serial_number, "X")
        row = inventory.get(serial)
        if row is None or inventory.certificate(serial) != cert:
            raise UnknownCertificate(f"The certificate in {cert_path} (serial {serial}) was not issued by this CA.")
        folder = cert_path.parent if cert_path.name == "cert.pem" else None
        return Found(serial, row, cert, folder, inventory.successors(serial))
    serial = normalize_serial(ref)
    if serial is not None and (row := inventory.get(serial)) is not None:
        return _found(inventory, row)
    if allow_names:
        by_name = _by_name(inventory, ref)
        if by_name is not None:
            return by_name
    if serial is not None and len(serial) >= MIN_SERIAL_PREFIX:
        matches = inventory.serials_starting(serial, limit=5)
        if len(matches) == 1:
            return _found(inventory, inventory.get(matches[0]))
        if len(matches) > 1:
            raise UnknownCertificate(f"The serial prefix {serial} matches several certificates "
                                     f"({', '.join(matches)}); give more digits.")
    what = "a bundle folder, a serial or a name" if allow_names else "a bundle folder or a serial"
    raise UnknownCertificate(
        f"No certificate of this CA matches '{ref}' (looked for {what}); 'certkit list' shows them."
    )


def _found(inventory: "Inventory", row: dict) -> Found:
    folder = Path(row["folder"]) if row.get("folder") else None
    serial = row["serial"]
    return Found(serial, row, inventory.certificate(serial), folder if holds(folder, serial) else None,
                 inventory.successors(serial))


def _by_name(inventory: "Inventory", name: str) -> Found | None:
    literal = "".join(f"[{ch}]" if ch in "*?[" else ch for ch in name.lower())
    wanted = name.lower().rstrip(".")
    rows = []
    for row in inventory.query(name=literal):
        if row["kind"] == "ca":
            continue
        values = {entry.split(":", 1)[1].lower() for entry in row["names"]}
        cn = [part[3:].lower() for part in row["subject"].split(",") if part.startswith("CN=")]
        if wanted in values or wanted in cn:
            rows.append(row)
    current = [r for r in rows if not inventory.successors(r["serial"])]
    live = [r for r in current if r["status"] != "revoked"] or current
    if not live:
        return None
    if len(live) > 1:
        listed = "; ".join(f"{r['serial']}" + (f" in {r['folder']}" if r.get("folder") else "") for r in live[:5])
        raise UnknownCertificate(f"'{name}' names {len(live)} current certificates ({listed}); "
                                 "give a serial or a bundle folder instead.")
    return _found(inventory, live[0])


@dataclass
class Renewal:
    old_serial: str
    issued: "IssuedCert"
    folder: Path
    files: list[Path]
    notes: list[str] = field(default_factory=list)


def renew_bundle(ca: "CA", ref: str, *, rekey: bool = False, key_type: str | None = None,
                 days: int | None = None, out: Path | None = None, force: bool = False) -> Renewal:
    """Renew the certificate ``ref`` names and write its successor's bundle.

    Into the folder that holds the old bundle, replaced as one step (the
    private key kept, hard-linked, unless ``rekey``); or into ``out``, a new
    folder, when given.
    """
    from certkit.bundle import check_writable, replace_folder, write_bundle
    from certkit.keys import load_private_key

    if ca.inventory is None:
        raise CertkitError("Renewing needs a CA loaded from a CA directory (it records the renewal).")
    found = find_certificate(ca.inventory, ref)
    target = Path(out) if out is not None else found.folder
    in_place = target is not None and holds(target, found.serial)
    if found.successors and not in_place:
        raise CannotRenew(f"The certificate {found.serial} was already renewed as {found.successors[-1]}; "
                          "renew that one (or give the folder that still holds the old certificate).")
    if target is None:
        raise CannotRenew(
            f"No folder is known to hold the certificate {found.serial} (it was never written, or was moved); "
            "give its bundle folder instead of the serial, or choose where to write the renewed one with --out."
        )
    old_key = None
    source = target if in_place else found.folder  # where the old certificate's key may be
    key_path = source / "privkey.pem" if source is not None else None
    if key_path is not None and key_path.is_file():
        try:
            old_key = load_private_key(key_path.read_bytes(), None, source=f"key {key_path}")
        except CertkitError:
            old_key = None  # encrypted or exotic: not ours to check; it stays as it is
    if old_key is not None and not rekey:
        from certkit.keys import public_key_der

        if public_key_der(old_key.public_key()) != public_key_der(found.cert.public_key()):
            raise CannotRenew(f"{key_path} does not belong to {source / 'cert.pem'}; the folder is already "
                              "inconsistent, so certkit will not renew into it. Restore the pair first.")
    if not in_place:
        names = [n for n in BUNDLE_FILES if n != "chain.pem" or ca.parents]
        check_writable(target, names if rekey else [n for n in names if n != "privkey.pem"], force=force)
    issued = ca.renew(found.cert, rekey=rekey, key_type=key_type, days=days,
                      key=None if in_place else old_key)
    files = issued.bundle_files()
    notes = list(issued.notes)
    if in_place:
        drop = tuple(n for n in ("chain.pem",) if n not in files)
        written = replace_folder(target, files, drop=drop)
        if (target / "bundle.p12").exists():
            notes.append(f"{target / 'bundle.p12'} still holds the old certificate; export it again")
    else:
        written = write_bundle(target, files, force=force)
        if issued.private_key is None:
            notes.append("no private key written: the key stays with whoever holds the old one")
    ca.inventory.set_folder(issued.serial_hex, target.absolute())
    return Renewal(found.serial, issued, target, written, notes)


def crl_bytes(crl, *, der: bool = False) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return crl.public_bytes(Encoding.DER if der else Encoding.PEM)


def write_crl(path: Path, data: bytes, issuer: "x509.Name", *, force: bool = False) -> None:
    """Write a CRL to ``path`` atomically.

    An existing file is replaced only if it is a CRL from the same issuer (the
    usual refresh, e.g. from cron) or with ``force``; anything else is refused.
    """
    from certkit.bundle import PUBLIC_MODE, replace_file

    path = Path(path)
    check_crl_target(path, issuer, force=force)
    try:
        replace_file(path, data, PUBLIC_MODE)
    except OSError as exc:
        raise CertkitError(f"Cannot write the CRL to {path}: {exc.strerror or exc}.") from None


def check_crl_target(path: Path, issuer: "x509.Name", *, force: bool = False) -> None:
    """Refuse to write a CRL through a link, or over a file that is not a CRL of ``issuer`` (unless ``force``)."""
    from certkit.errors import OutputExists, UnsafeOutputPath

    path = Path(path)
    if path.is_symlink():
        raise UnsafeOutputPath(f"{path} is a symbolic link; certkit does not write through links.")
    if path.exists() and (not path.is_file() or (not force and _crl_issuer(path) != issuer)):
        raise OutputExists(f"{path} exists and is not a CRL of this CA; pass --force to replace it."
                           if path.is_file() else f"{path} exists and is not a file.")


def _crl_issuer(path: Path):
    from cryptography import x509

    try:
        data = path.read_bytes()
        crl = x509.load_pem_x509_crl(data) if data.lstrip().startswith(b"-----") else x509.load_der_x509_crl(data)
    except (OSError, ValueError):
        return None
    return crl.issuer
