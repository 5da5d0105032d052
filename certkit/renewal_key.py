"""The private key a renewal keeps: from the old bundle folder, or (a certificate delivered into a jsonl, k8s or
tar file with its key) from that file, so that the new bundle holds it whatever becomes of the file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from certkit.constants import CERT_FILE, KEY_FILE, MAX_CERT_FILE_BYTES
from certkit.errors import CannotRenew, CertkitError, UnreadableFile
from certkit.text import shown

if TYPE_CHECKING:
    from certkit.lifecycle import Found


def old_key_of(source: Path | None, found: "Found", *, check: bool, keyed: bool, notes: list[str]):
    """:func:`_old_key`, else, for a certificate delivered into an output file with its key (renewed elsewhere, the
    key kept), the key of it that file holds: the file the renewal was given (``renew FILE``: written with ``>
    FILE``, moved or copied since), else the one the inventory records; said in ``notes``."""
    key = _old_key(source, found, check=check, keyed=keyed)
    row = found.row
    recorded = row["folder"] if row.get("sink") == "file" and row.get("folder") else None
    if key is None and check and keyed:
        from certkit.formats.reading import key_in

        for file in dict.fromkeys(f for f in (found.file, recorded) if f is not None):
            if (key := key_in(file, found.cert)) is not None:
                notes.append(f"the key is taken from {shown(file)}, which holds it: the new bundle has it too, "
                             "whatever becomes of that file")
                break
    if key is None and check and keyed and source is None and row.get("sink") in (None, "folder"):
        if (key := _recorded_key(row, found)) is not None:  # its cert.pem damaged, its key still there
            notes.append(f"the key is taken from {shown(Path(row['folder']) / KEY_FILE)}, the folder the inventory "
                         "records it in, which still holds it")
            return key
        # its bundle folder moved, renamed or emptied since: a renewal elsewhere would deliver a bundle with no key
        raise CannotRenew(f"The certificate {found.serial} was written with its private key to "
                          f"{shown(row.get('folder') or '-')}, which no longer holds it (moved or renamed?), so the "
                          "renewed bundle would have no key; nothing was written. Give the folder that holds it now "
                          "(certkit renew FOLDER), or renew with --rekey for a new key.")
    return key


def _recorded_key(row: dict, found: "Found"):
    """The key of ``found`` in the bundle folder the inventory records it in, if that folder still holds it (its
    cert.pem damaged or gone: renewed by serial), else None."""
    from certkit.keys import public_key_der

    if not row.get("folder"):
        return None
    try:
        key = _old_key(Path(row["folder"]), found, check=False)
    except (OSError, CertkitError):
        return None
    matches = key is not None and public_key_der(key.public_key()) == public_key_der(found.cert.public_key())
    return key if matches else None


def _old_key(source: Path | None, found: "Found", *, check: bool, keyed: bool = True):
    """The private key in ``source`` that goes on with the renewed certificate (None if there is
    none to carry: the requester of a CSR holds it, or it is encrypted). With ``check``, a bundle
    that was written with its key must still hold it, readable and matching the certificate:
    otherwise the renewed bundle would be one no server can load."""
    import stat

    from certkit.files import read_limited
    from certkit.key_encryption import is_encrypted
    from certkit.keys import load_private_key, public_key_der

    if source is None:
        return None
    key_path = source / KEY_FILE
    expected = check and keyed

    def damaged(problem: str) -> CannotRenew:
        return CannotRenew(f"{shown(key_path)} {problem}: the bundle is damaged, and certkit will not renew it "
                           "with its key kept. Restore the key, or renew with --rekey for a new one.")

    try:
        mode = key_path.lstat().st_mode
    except FileNotFoundError:
        if expected:
            raise damaged("is missing") from None
        return None
    if not stat.S_ISREG(mode):
        if expected:
            from certkit.vocabulary import absent_text

            raise damaged(absent_text(key_path))
        return None
    try:
        data = read_limited(key_path, MAX_CERT_FILE_BYTES, what="private key")
    except UnreadableFile as exc:  # no permission (mode 000, another user's), an I/O error
        if not expected:
            return None  # --rekey: a new key replaces it, as it replaces a damaged one
        raise CannotRenew(f"{str(exc).rstrip('.')}, so certkit cannot renew the bundle with its key kept; nothing "
                          "was written. Renew as a user who may read it (or give it back that permission), or "
                          "renew with --rekey for a new key.") from None
    if is_encrypted(data):
        return None  # not ours to check; it stays as it is
    try:
        key = load_private_key(data, None, source=f"key {key_path}")
    except CertkitError:
        if expected:
            raise damaged("is empty" if not data.strip() else "does not hold a private key certkit can read") from None
        return None
    if check and public_key_der(key.public_key()) != public_key_der(found.cert.public_key()):
        raise CannotRenew(f"{shown(key_path)} does not belong to {shown(source / CERT_FILE)}; the folder is "
                          "already inconsistent, so certkit will not renew into it. Restore the pair first.")
    return key


def refuse_key_left_behind(folder: Path | None, target: Path) -> None:
    """A renewal from ``folder`` into ``target`` keeping a key certkit cannot read (encrypted, so not carried):
    refused, as the new folder would hold no key (the old one stays where it is)."""
    from certkit.files import read_limited
    from certkit.key_encryption import is_encrypted

    if folder is None:
        return
    key_path = folder / KEY_FILE
    try:
        data = read_limited(key_path, MAX_CERT_FILE_BYTES, what="private key")
    except (OSError, CertkitError):
        return
    if is_encrypted(data):
        raise CannotRenew(f"{shown(key_path)} is encrypted, so certkit cannot carry it into {shown(target)}: the "
                          "renewed bundle would have no key; nothing was written. Renew the folder in place "
                          f"(certkit renew {shown(key_path.parent)}), or renew with --rekey for a new key.")
