"""Commands for the CA itself: ``init-ca`` creates one, ``check`` reports its health."""

from __future__ import annotations

from pathlib import Path

import click

from certkit.cli.common import (
    Failed,
    ca_dir_option,
    emit,
    json_option,
    passphrase_file_option,
    read_secret,
    warn,
    when,
)
from certkit.constants import ENV_PARENT_PASSPHRASE, ENV_PASSPHRASE, KEY_TYPES, MAX_DAYS
from certkit.errors import CertkitError
from certkit.vocabulary import serial_hex

# Below this, a stolen encrypted CA key falls to an offline guess too easily (scrypt or not).
MIN_PASSPHRASE = 12


# --- init-ca ----------------------------------------------------------------------
@click.command("init-ca")
@click.option("--name", "common_name", metavar="CN", help="CA common name [default: certkit CA user@host].")
@click.option("--org", help="Organization (O) of the CA's subject.")
@click.option("--org-unit", help="Organizational unit (OU).")
@click.option("--country", metavar="CC", help="Two-letter country code (C).")
@click.option("--key-type", type=click.Choice(KEY_TYPES), default="ecdsa-p256", show_default=True)
@click.option("--days", type=click.IntRange(1, MAX_DAYS),
              help="Lifetime in days [default: 3650 for a root, 1825 for an intermediate].")
@click.option("--permit-dns", multiple=True, metavar="DOMAIN",
              help="Name constraint: only this DNS domain and its subdomains (repeatable). "
                   "IP addresses are then excluded unless --permit-ip is given.")
@click.option("--permit-ip", multiple=True, metavar="CIDR", help="Name constraint: only this IP range (repeatable).")
@click.option("--parent-ca-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Create an intermediate CA signed by the CA in this directory.")
@click.option("--parent-passphrase-file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Passphrase file for the parent CA's key (else $CERTKIT_PARENT_CA_PASSPHRASE, else a prompt).")
@click.option("--no-passphrase", is_flag=True, help="Store the CA key unencrypted (not recommended).")
@ca_dir_option
@passphrase_file_option
@json_option
def init_ca(common_name, org, org_unit, country, key_type, days, permit_dns, permit_ip,
            parent_ca_dir, parent_passphrase_file, no_passphrase, ca_dir, passphrase_file, as_json):
    """Create a CA: a root, or with --parent-ca-dir an intermediate.

    The CA key is encrypted (PKCS#8, scrypt + AES-256) with a passphrase from
    --passphrase-file, $CERTKIT_CA_PASSPHRASE or a prompt. An existing CA is
    never overwritten.

    \b
    Examples:
      certkit init-ca --name "Home Lab CA"
      CERTKIT_CA_PASSPHRASE=... certkit init-ca --ca-dir ./ca --key-type ecdsa-p384
      certkit init-ca --ca-dir ./ca --permit-dns example.internal --permit-ip 10.0.0.0/8
      certkit init-ca --ca-dir ./issuing --parent-ca-dir ./root --name "Issuing CA 1"
    """
    from certkit.ca import CA
    from certkit.store import CADirectory

    store = CADirectory(ca_dir)
    if store.exists():  # before asking for any passphrase
        from certkit.errors import CAExists

        raise CAExists(f"A CA already exists in {store.path}; certkit will not overwrite a CA. "
                       "Choose another --ca-dir or remove it yourself.")
    if no_passphrase:
        if passphrase_file:
            raise click.UsageError("--no-passphrase and --passphrase-file contradict each other.")
        click.echo("Warning: the CA key will be stored unencrypted; anyone who can read "
                   f"{store.key_path} can issue certificates your machines trust.", err=True)
        passphrase = None
    else:
        passphrase = read_secret(passphrase_file, ENV_PASSPHRASE, "New CA key passphrase", confirm=True)
        if passphrase is None:
            raise click.ClickException(
                "The CA key needs a passphrase: set $CERTKIT_CA_PASSPHRASE, pass --passphrase-file, "
                "run on a terminal to be asked, or pass --no-passphrase."
            )
        if len(passphrase) < MIN_PASSPHRASE:
            warn(f"the passphrase has {len(passphrase)} characters; anyone who copies {store.key_path} can try "
                 f"passphrases offline, so use at least {MIN_PASSPHRASE} (a few random words).")
    parent = _load_parent(parent_ca_dir, parent_passphrase_file) if parent_ca_dir is not None else None
    ca = CA.create(common_name, organization=org, organizational_unit=org_unit, country=country,
                   key_type=key_type, days=days, permitted_dns=permit_dns, permitted_ips=permit_ip,
                   parent=parent)
    files = store.save_new(ca, passphrase)
    emit(as_json, *_created(store, ca, files, key_type, parent=parent is not None, encrypted=passphrase is not None))


def _load_parent(parent_ca_dir: Path, parent_passphrase_file: Path | None):
    """The parent CA of a new intermediate, unlocked; a CLI error naming the parent when it cannot sign."""
    from certkit.ca import CA
    from certkit.errors import PassphraseRequired
    from certkit.store import CADirectory

    try:
        parent_store = CADirectory(parent_ca_dir)
        # A parent that may not sign CAs is refused before its passphrase is asked for.
        parent_cert, grandparents = parent_store.load_certificates()
        CA(parent_cert, None, grandparents).check_can_sign_ca()
        return parent_store.load(
            lambda: read_secret(parent_passphrase_file, ENV_PARENT_PASSPHRASE,
                                "Parent CA key passphrase"))
    except PassphraseRequired as exc:
        raise click.ClickException(
            f"{exc} Set $CERTKIT_PARENT_CA_PASSPHRASE or pass --parent-passphrase-file.") from None
    except CertkitError as exc:
        raise click.ClickException(f"The parent CA in {parent_ca_dir} cannot be used: {exc}") from None


def _created(store, ca, files, key_type: str, *, parent: bool, encrypted: bool) -> tuple[dict, str]:
    """What init-ca prints about the CA it created: (the JSON object, the text)."""
    from cryptography.hazmat.primitives import hashes

    kind = "intermediate" if parent else "root"
    data = {
        "ca_dir": str(store.path), "kind": kind, "subject": ca.cert.subject.rfc4514_string(),
        "serial": serial_hex(ca.cert.serial_number), "key_type": key_type,
        "not_after": ca.cert.not_valid_after_utc.isoformat(), "encrypted": encrypted,
        "fingerprint_sha256": ca.cert.fingerprint(hashes.SHA256()).hex(),
        "files": [str(f) for f in files],
    }
    human = "\n".join([
        f"Created {kind} CA \"{ca.common_name}\" in {store.path}",
        f"  certificate  {store.cert_path}  (the file peers must trust{' via the root' if parent else ''})",
        f"  private key  {store.key_path}  ({'encrypted' if encrypted else 'UNENCRYPTED'}, mode 0600)",
        f"  key type     {key_type}",
        f"  expires      {when(ca.cert.not_valid_after_utc)}",
        f"  SHA-256      {data['fingerprint_sha256']}",
    ])
    return data, human


@click.command("check")
@ca_dir_option
@passphrase_file_option
@json_option
def check(ca_dir, passphrase_file, as_json):
    """Check a CA directory: files, modes, expiry, key, chain and inventory.

    Exit status 0 when nothing is wrong (warnings allowed), 1 when any check
    fails. Changes nothing.

    \b
    Examples:
      certkit check
      certkit check --ca-dir ./ca --json
    """
    from certkit.check import check_ca_directory

    findings = check_ca_directory(ca_dir, lambda: read_secret(passphrase_file, ENV_PASSPHRASE,
                                                              "CA key passphrase"))
    errors = [f for f in findings if f.level == "error"]
    data = {"ok": not errors, "findings": [f.__dict__ for f in findings]}
    width = max(len(f.check) for f in findings)
    human = "\n".join(f"{f.level.upper():7} {f.check:{width}}  {f.message}" for f in findings)
    emit(as_json, data, human)
    if errors:
        raise Failed(f"{len(errors)} check{'s' if len(errors) > 1 else ''} failed: "
                                   + "; ".join(e.check for e in errors) + ".")
