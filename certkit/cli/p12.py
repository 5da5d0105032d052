"""``export-p12``: the PKCS#12 form (bundle.p12) of an issued certificate's folder, written beside its bundle
(the issuing commands' --p12 writes it as they issue, :mod:`certkit.cli.issue`, whose password rules and
words it shares); a revoked certificate refused, a renewal of the folder waited for, and a bundle.p12 replaced
with the same key keeping its owner, group and mode."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import click

from certkit.cli.common import CheckedPath, ExistingPath, ca_dir_option, emit, json_option, warn
from certkit.cli.issue import describe_p12, read_p12_password
from certkit.constants import ENV_P12_PASSWORD


@click.command("export-p12")
@click.argument("folder", type=CheckedPath(path_type=Path, file_okay=False))
@click.option("--legacy", "--p12-legacy", "legacy", is_flag=True,
              help="Legacy encryption (3DES, SHA-1 MAC) for older macOS, Windows and Java imports.")
@click.option("--force", is_flag=True, help="Replace an existing bundle.p12.")
@click.option("--password-file", "--p12-password-file", "password_file",
              type=ExistingPath(path_type=Path, dir_okay=False, allow_dash=True),
              help=f"Read the password from this file (else ${ENV_P12_PASSWORD}, else a prompt).")
@ca_dir_option
@json_option
def export_p12(folder, legacy, force, password_file, ca_dir, as_json):
    """Write FOLDER/bundle.p12 (PKCS#12) from an issued certificate's folder.

    Reads cert.pem, privkey.pem and the CA certificates in chain.pem and
    ca.pem; the friendly name is the certificate's common name. Browsers,
    curl --cert-type P12, Java keystores and Windows import this file. The
    password comes from --password-file, $CERTKIT_P12_PASSWORD or a prompt.
    A certificate the CA directory (--ca-dir, else $CERTKIT_CA_DIR or the
    default one) issued and has revoked is refused (a CA directory given must
    hold a CA), and a renewal of the folder under way is waited for.

    \b
    Examples:
      certkit export-p12 ./alice
      CERTKIT_P12_PASSWORD=... certkit export-p12 ./alice --legacy --force
      certkit export-p12 ./alice --password-file ~/.config/p12-password
    """
    from certkit.bundle import check_writable, settle_folder
    from certkit.cli.arguments import refuse_inputs_as_output
    from certkit.constants import P12_FILE
    from certkit.paths import check_output
    from certkit.pkcs12 import export_folder, read_bundle_folder
    from certkit.pkcs12_issuer import issuing_store, refuse_revoked_export
    from certkit.text import shown
    from certkit.vocabulary import common_name

    check_output(folder / P12_FILE, what="PKCS#12 file")
    refuse_inputs_as_output(folder / P12_FILE, what="The PKCS#12 file")  # its password file, kept there
    settle_folder(folder)  # what a killed writer left beside it (a copy of the bundle, its key too) goes first
    check_writable(folder, [P12_FILE], force=force)
    bundle = read_bundle_folder(folder)  # a broken folder is reported before asking for a password
    store = issuing_store(bundle.cert, ca_dir, chain=bundle.chain)
    refuse_revoked_export(store, bundle.cert)
    password = read_p12_password(password_file)
    from certkit.bundle_locks import folders_held
    from certkit.cli.arguments import on_stop
    from certkit.file_modes import same_key

    on_stop(partial(_stopped_exporting, folder / P12_FILE, _file_identity(folder / P12_FILE)))

    with folders_held(store.path if store is not None else None, [folder]):  # a renewal of it ends first
        from certkit.folder_record import ca_option

        # what the folder holds now; an expired certificate's note names the renewal, with its CA's --ca-dir
        bundle = read_bundle_folder(folder, renew_with=None if store is None else ca_option(store.path))
        kept = (folder / P12_FILE,) if force and _holds_key(folder / P12_FILE, password, bundle.private_key) else ()
        with same_key(*kept):  # the same key again: its owner, group and mode stay (a service reading it)
            path = export_folder(folder, password, legacy=legacy, force=force, ca_dir=ca_dir)  # checked again there
    data = {"file": str(path), "friendly_name": common_name(bundle.cert.subject),
            "encryption": "legacy" if legacy else "modern", "certificates": 1 + len(bundle.chain)}
    human = (f"Wrote {shown(path)} (PKCS#12, mode {path.stat().st_mode & 0o777:04o}): key, certificate and "
             f"{len(bundle.chain)} CA "
             f"certificate{'s' if len(bundle.chain) != 1 else ''}\n"
             f"  friendly name  {shown(data['friendly_name'])}\n  encryption     {describe_p12(legacy)}")
    if not bundle.chain:
        warn(f"{shown(folder)} holds no ca.pem, so the file holds no CA certificate: whoever imports it gets "
             "the key and certificate, and must be given the CA's ca.pem to trust separately.")
    for note in bundle.notes:  # an expired certificate, a certificate left out of the file
        warn(note)
    emit(as_json, data, human)


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _stopped_exporting(p12: Path, before: tuple[int, int] | None) -> str:
    """What an export-p12 stopped by a signal left: a new bundle.p12 (a new file, renamed into place), or not."""
    from certkit.text import shown

    now = _file_identity(p12)
    if now is not None and now != before:
        return f"Interrupted, but {shown(p12)} was written (it is in place)."
    return f"Interrupted: {shown(p12)} was not written" + (" (the one there is unchanged)." if now else ".")


def _holds_key(p12: Path, password: bytes, key) -> bool:
    """Whether the bundle.p12 ``p12`` that --force replaces opens with ``password`` and holds ``key``: the file
    written over it then holds what it held, and keeps its owner, group and mode (a Java service reading it
    through its group, root:tomcat 0640, is not locked out); any other (another key, another password) does
    not pass its readers on to this key."""
    import stat

    from cryptography.hazmat.primitives.serialization import pkcs12

    from certkit.constants import MAX_CERT_FILE_BYTES
    from certkit.files import read_limited

    try:
        if not stat.S_ISREG(p12.lstat().st_mode):
            return False
        old_key, _, _ = pkcs12.load_key_and_certificates(read_limited(p12, MAX_CERT_FILE_BYTES, what="PKCS#12 file"),
                                                         password)
    except Exception:  # noqa: BLE001 - unreadable, another password, not PKCS#12: not the same key
        return False
    return old_key is not None and old_key.public_key() == key.public_key()
