"""Commands for the CA itself: ``init-ca`` creates one, ``check`` reports its health."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import click

from certkit.cli.arguments import on_stop
from certkit.cli.ca_keys import _load_parent, _new_passphrase, _token_key
from certkit.cli.common import (
    CheckedPath,
    ExistingPath,
    Failed,
    Whole,
    ca_dir_option,
    emit,
    json_option,
    passphrase_file_option,
    read_secret,
    warn,
    when,
)
from certkit.constants import ENV_INVENTORY_URL, ENV_PASSPHRASE, KEY_TYPES, MAX_DAYS
from certkit.errors import CertkitError
from certkit.text import shown
from certkit.vocabulary import colons, iso, serial_hex


# --- init-ca ----------------------------------------------------------------------
@click.command("init-ca")
@click.option("--name", "common_name", metavar="CN",
              help="CA common name [default: certkit CA user@host; an intermediate: "
                   "certkit intermediate CA user@host].")
@click.option("--org", help="Organization (O) of the CA's subject.")
@click.option("--org-unit", help="Organizational unit (OU).")
@click.option("--country", metavar="CC", help="Two-letter country code (C).")
@click.option("--key-type", type=click.Choice(KEY_TYPES), default="ecdsa-p256", show_default=True)
@click.option("--days", type=Whole(1, MAX_DAYS),
              help="Lifetime in days [default: 3650 for a root, 1825 for an intermediate].")
@click.option("--permit-dns", multiple=True, metavar="DOMAIN",
              help="Name constraint: only this DNS domain and its subdomains (repeatable). "
                   "IP addresses are then excluded unless --permit-ip is given.")
@click.option("--permit-ip", multiple=True, metavar="CIDR", help="Name constraint: only this IP range (repeatable).")
@click.option("--parent-ca-dir", type=CheckedPath(path_type=Path, file_okay=False),
              help="Create an intermediate CA signed by the CA in this directory.")
@click.option("--parent-passphrase-file", type=ExistingPath(path_type=Path, dir_okay=False),
              help="Passphrase file for the parent CA's key, or its token's PIN (else $CERTKIT_PARENT_CA_PASSPHRASE; "
                   "for a token, else $CERTKIT_PKCS11_PIN unless this CA's key is in another token; else a "
                   "prompt).")
@click.option("--no-passphrase", is_flag=True, help="Store the CA key unencrypted (not recommended).")
@click.option("--inventory", "inventory_url", metavar="URL", envvar="CERTKIT_INVENTORY_URL",
              help="Keep the inventory in this empty PostgreSQL database (postgresql://USER@HOST/DB, no password: "
                   "libpq's ~/.pgpass, $PGPASSWORD, a service file, or a prompt) instead of inventory.sqlite3, so "
                   "several hosts "
                   "can issue from this CA [default: $CERTKIT_INVENTORY_URL].")
@click.option("--key-uri", metavar="URI",
              help="Keep the CA key in a PKCS#11 token (RFC 7512: 'pkcs11:token=LABEL;object=LABEL'): generated "
                   "there, non-extractable, unless the token holds that key already.")
@click.option("--reuse-key", is_flag=True,
              help="Use the token key --key-uri names even though it already signs a CA (its certificate is in "
                   "the token): a new certificate for the same key, with an inventory of its own that starts "
                   "empty (that CA's revocations and CRL numbers do not carry over).")
@click.option("--pkcs11-module", type=ExistingPath(path_type=Path, dir_okay=False), metavar="PATH",
              help="The PKCS#11 module of the token (else the URI's module-path).")
@click.option("--pin-file", type=ExistingPath(path_type=Path, dir_okay=False, allow_dash=True),
              help="Read the token's PIN from this file (else $CERTKIT_PKCS11_PIN, else a prompt).")
@ca_dir_option(written=True)
@passphrase_file_option
@json_option
@click.pass_context
def init_ca(ctx, common_name, org, org_unit, country, key_type, days, permit_dns, permit_ip,
            parent_ca_dir, parent_passphrase_file, no_passphrase, inventory_url, key_uri, reuse_key, pkcs11_module,
            pin_file, ca_dir, passphrase_file, as_json):
    """Create a CA: a root, or with --parent-ca-dir an intermediate.

    The CA key is encrypted (PKCS#8, scrypt + AES-256) with a passphrase from
    --passphrase-file, $CERTKIT_CA_PASSPHRASE or a prompt; or, with --key-uri,
    it stays in a PKCS#11 token (an HSM). The inventory is an SQLite file in
    the CA directory, or with --inventory a PostgreSQL database that several
    hosts share (docs/team.md). An existing CA is never overwritten.

    \b
    Examples:
      certkit init-ca --name "Home Lab CA"
      CERTKIT_CA_PASSPHRASE=... certkit init-ca --ca-dir ./ca --key-type ecdsa-p384
      certkit init-ca --ca-dir ./ca --permit-dns example.internal --permit-ip 10.0.0.0/8
      certkit init-ca --ca-dir ./issuing --parent-ca-dir ./root --name "Issuing CA 1"
      certkit init-ca --ca-dir ./team-ca --inventory postgresql://certkit@db.internal/ca \\
        --key-uri 'pkcs11:token=ca;object=root' --pkcs11-module /usr/lib/softhsm/libsofthsm2.so
    """
    from certkit.ca import CA
    from certkit.store import CADirectory

    _check_subject(common_name, org, org_unit, country)
    if parent_passphrase_file is not None and parent_ca_dir is None:  # else a root, not the intermediate meant
        raise click.UsageError("--parent-passphrase-file goes with --parent-ca-dir (the CA that signs this one); "
                               "without it init-ca makes a root CA.")
    from certkit.constraints_parsing import parse_permitted

    parse_permitted(permit_dns, permit_ip)  # refused before any warning, passphrase or key
    store = CADirectory(ca_dir)
    from certkit.files import cannot_reach_to_write

    if ca_dir is None and (said := cannot_reach_to_write(store.path, "CA directory")):  # the per-user one
        raise click.ClickException(said)  # a place init-ca writes, as --ca-dir's is said (WrittenPath)
    if store.exists():  # before asking for any passphrase
        from certkit.errors import CAExists
        from certkit.paths import refuse_bundle_as_ca

        refuse_bundle_as_ca(store.path, "--ca-dir")
        raise CAExists(f"A CA already exists in {store.path}{_existing(store, parent_ca_dir)}")
    store.check_new()  # a folder that is not empty, or lies in a CA directory
    if inventory_url is None and os.environ.get(ENV_INVENTORY_URL, "x").strip() == "":
        from certkit.store_inventory import inventory_from_environment

        inventory_from_environment()  # click takes an empty variable as unset: refused, as every command does
    if inventory_url is not None:
        _check_inventory_database(inventory_url)
    _check_against_parent(parent_ca_dir, days, permit_dns, permit_ip)  # before any passphrase, PIN or key
    if key_uri is not None or pkcs11_module is not None or pin_file is not None or reuse_key:
        from click.core import ParameterSource

        explicit_type = ctx.get_parameter_source("key_type") != ParameterSource.DEFAULT
        key, parent = _token_key(key_uri, pkcs11_module, pin_file, key_type if explicit_type else None,
                                 no_passphrase, passphrase_file, parent_ca_dir, parent_passphrase_file, reuse_key)
        try:
            _create_and_report(store, CA, key, None, parent, key.key_type, common_name, org, org_unit, country,
                               days, permit_dns, permit_ip, inventory_url, as_json)
        except (CertkitError, OSError) as exc:
            if not key.generated or store.exists():  # a CA made with the key: it is that CA's now
                raise
            from certkit.cli.failures import cli_message, describe_os_error
            from certkit.pkcs11.provision import left_in_token

            said = cli_message(exc) if isinstance(exc, CertkitError) else describe_os_error(exc)
            raise click.ClickException(f"{said} {left_in_token(key)}") from None
        return
    passphrase = _new_passphrase(store, no_passphrase, passphrase_file)
    parent = _load_parent(parent_ca_dir, parent_passphrase_file, (common_name, org, org_unit, country))
    _create_and_report(store, CA, None, passphrase, parent, key_type, common_name, org, org_unit, country, days,
                       permit_dns, permit_ip, inventory_url, as_json)


def _check_against_parent(parent_ca_dir: Path | None, days: int | None, permit_dns, permit_ip) -> None:
    """An intermediate's lifetime and name constraints against its parent's certificate (no key needed)."""
    if parent_ca_dir is None:
        return
    from certkit.ca import CA
    from certkit.ca_checks import intermediate_limits
    from certkit.store import CADirectory

    try:
        parent_cert, grandparents = CADirectory(parent_ca_dir).load_certificates()
        parent = CA(parent_cert, None, grandparents)
        parent.check_can_sign_ca()
    except CertkitError:
        return  # said, in its words, where the parent is loaded
    intermediate_limits(parent, days, permit_dns, permit_ip)


def _check_inventory_database(url: str) -> None:
    """The PostgreSQL database init-ca puts the inventory in, tried before any passphrase or PIN is
    asked for and before a key is generated (one generated in a token stays there): no secret in
    the URL, the database reached, holding no inventory, and this user allowed to create the
    inventory's tables and tie them to the CA (done, then rolled back: nothing stays)."""
    from certkit.db_postgres import PostgresDatabase
    from certkit.db_url import check_stored_url
    from certkit.inventory import schema
    from certkit.store_inventory import BINDING

    database = PostgresDatabase(check_stored_url(url))
    database.check_create(schema.create_statements(database.dialect),
                          [("INSERT INTO meta (key, value) VALUES (?, ?)", (BINDING, "0" * 64))])


def _check_subject(common_name: str | None, org: str | None, org_unit: str | None, country: str | None) -> None:
    """The values given for the CA's subject, each refused in the words of its option, before any
    passphrase is asked for."""
    from certkit.ca_names import parse_country
    from certkit.names import parse_attribute

    for value, field, option in ((common_name, "common name", "--name"), (org, "organization", "--org"),
                                 (org_unit, "organizational unit", "--org-unit")):
        if value is not None:
            parse_attribute(value, field, option)
    if country is not None:
        parse_country(country)


def _warn_of_public_suffixes(domains) -> None:
    """--permit-dns com limits the CA to everyone's .com websites: said, as trust install asks about it."""
    from certkit.names_dns import public_suffix_scope
    from certkit.text import shown

    suffixes = [d for d in domains if public_suffix_scope(d)]
    if suffixes:
        warn(f"--permit-dns {', '.join(shown(d) for d in suffixes)} is a public suffix: the websites under it "
             "belong to others, so this limit protects none of them (certkit trust install will ask before "
             "trusting the CA). Permit your own domains, e.g. --permit-dns example.com or home.arpa.")


def _create_and_report(store, CA, key, passphrase, parent, key_type, common_name, org, org_unit, country, days,
                       permit_dns, permit_ip, inventory_url, as_json) -> None:
    ca = CA.create(common_name, organization=org, organizational_unit=org_unit, country=country,
                   key_type=key_type, days=days, permitted_dns=permit_dns, permitted_ips=permit_ip,
                   parent=parent, key=key, directory=store.path)
    _warn_of_public_suffixes(permit_dns)
    with _recorded_in_token(key, ca, store):  # a token key's record that it signs this CA, made before the CA is
        files = store.save_new(ca, passphrase, inventory_url=inventory_url, parent=parent)
    if key is None and passphrase is None:  # said once it is so: a warning of a key never written is noise
        warn(f"the CA key is stored unencrypted; anyone who can read {shown(store.key_path)} can issue certificates "
             "your machines trust.")
    from cryptography.hazmat.primitives import hashes

    kind = "intermediate" if parent else "root"
    data = {
        "ca_dir": str(store.path), "kind": kind, "subject": ca.cert.subject.rfc4514_string(),
        "serial": serial_hex(ca.cert.serial_number), "key_type": key_type,
        "not_after": iso(ca.cert.not_valid_after_utc), "encrypted": passphrase is not None,
        "fingerprint_sha256": ca.cert.fingerprint(hashes.SHA256()).hex(),
        "files": [str(f) for f in files],
    }
    if key is not None:
        from certkit.pkcs11.provision import exposures

        attributes = key.attributes()
        data |= {"encrypted": None, "key_uri": key.uri.text, "pkcs11_module": key.module,
                 "key_generated": key.generated, "key_sensitive": attributes["sensitive"],
                 "key_extractable": attributes["extractable"]}
        kept = ", ".join(["generated in the token" if key.generated else "already in the token",
                          *exposures(attributes)])
        key_line = f"  private key  {key.uri.text}  ({kept})"
    else:
        key_line = f"  private key  {store.key_path}  ({'encrypted' if passphrase else 'UNENCRYPTED'}, mode 0600)"
    if inventory_url:
        from certkit.db_postgres import shown_url

        data["inventory"] = shown_url(inventory_url)  # the URL as stored, a secret never in it (check_url)
    from certkit.constraints import of_chain
    from certkit.key_choice import ed25519_note
    from certkit.trust.anchor import describe_scope

    constrained = of_chain([ca.cert])  # the names it may vouch for, as written (an intermediate's, inherited too)
    data["may_sign"] = describe_scope(constrained[0] if constrained else None)
    data["notes"] = [n for n in (ed25519_note(ca.cert.public_key(), [ca.cert, *ca.parents]),) if n]
    human = "\n".join([
        f"Created {kind} CA \"{ca.common_name}\" in {store.path}",
        f"  certificate  {store.cert_path}  (the file peers must trust{' via the root' if parent else ''})",
        key_line,
        f"  key type     {key_type}",
        *([f"  may sign     {data['may_sign']}"] if constrained else []),
        *([f"  inventory    {data['inventory']}  (PostgreSQL)"] if inventory_url else []),
        f"  expires      {when(ca.cert.not_valid_after_utc)}",
        f"  SHA-256      {colons(data['fingerprint_sha256'])}",
        *(f"  note         {n}" for n in data["notes"]),
    ])
    if key is not None and (attributes["extractable"] or not attributes["sensitive"]):
        faults = [word for word, fault in (("not sensitive", not attributes["sensitive"]),
                                           ("extractable", attributes["extractable"])) if fault]
        warn(f"the token's key {key.uri.text} is {' and '.join(faults)}: it can leave the token. Generate a new "
             "one (name another object) to keep it there.")
    emit(as_json, data, human)


def _recorded_in_token(key, ca, store):
    """The new CA's certificate kept in the token next to its key (:func:`certificates_for` finds it); and, for
    any key, a stop signal once the CA directory is in place says that the CA exists (:func:`on_stop`)."""
    from certkit.ca_saving import stopped_creating

    on_stop(lambda: stopped_creating(store, ca))
    if key is None:
        return contextlib.nullcontext()
    from certkit.pkcs11.provision import recorded_in_token

    placed = lambda: store.cert_path.is_file() and store.cert_path.read_bytes() == ca.cert_pem  # noqa: E731
    return recorded_in_token(key, ca.cert, placed, warn)


@click.command("check")
@ca_dir_option
@passphrase_file_option
@json_option
def check(ca_dir, passphrase_file, as_json):
    """Check a CA directory: files, modes, expiry, key, chain and inventory.

    For a team's CA also the PostgreSQL database (reached, schema current,
    this CA's) and the PKCS#11 token (present; with its PIN, the key found,
    kept in the token and matching ca.pem). Exit status 0 when nothing is
    wrong (warnings allowed), 1 when any check fails. Changes nothing.

    \b
    Examples:
      certkit check
      certkit check --ca-dir ./ca --json
    """
    from certkit.check import check_ca_directory
    from certkit.cli.common import key_secret
    from certkit.store import CADirectory

    try:
        env, prompt = key_secret(CADirectory(ca_dir))
    except CertkitError:  # an unreadable certkit-ca.json: check_ca_directory reports it
        env, prompt = ENV_PASSPHRASE, "CA key passphrase"
    from certkit.cli.secrets_input import wrong_secret_hint

    findings = check_ca_directory(ca_dir, lambda: read_secret(passphrase_file, env, prompt),
                                  wrong_hint=wrong_secret_hint(passphrase_file, env))
    errors = [f for f in findings if f.level == "error"]
    data = {"ok": not errors, "findings": [f.__dict__ for f in findings]}
    width = max(len(f.check) for f in findings)
    human = "\n".join(f"{f.level.upper():7} {f.check:{width}}  {f.message}" for f in findings)
    emit(as_json, data, human)
    if errors:
        counts: dict[str, int] = {}
        for e in errors:
            counts[e.check] = counts.get(e.check, 0) + 1
        raise Failed(f"{len(errors)} check{'s' if len(errors) > 1 else ''} failed: "
                     + "; ".join(f"{check} ({n})" if n > 1 else check for check, n in counts.items()) + ".")


def _existing(store, parent_ca_dir: Path | None) -> str:
    """What to say of the CA already in ``store``: which it is, that an interrupted init-ca may have made
    it (it is whole: use it), and, to start over, that the parent records its certificate as valid."""
    from certkit.errors import CertkitError
    from certkit.store import CADirectory
    from certkit.text import shown
    from certkit.vocabulary import name_text

    try:
        cert, _parents = store.load_certificates()
    except CertkitError:
        return "; certkit will not overwrite a CA. Choose another --ca-dir or remove it yourself."
    import datetime as dt

    recent = dt.datetime.now(dt.UTC) - cert.not_valid_before_utc < dt.timedelta(hours=1)
    said = (f" ({name_text(cert.subject)}, valid from {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC); certkit will "
            "not overwrite a CA" + (" (if an init-ca was stopped just after it made this one, the CA is whole and can "
                                    "be used as it is)" if recent else "") + ". Choose another --ca-dir")
    if parent_ca_dir is None or cert.issuer == cert.subject:
        return said + ", or remove it yourself."
    try:
        row = CADirectory(parent_ca_dir).inventory.get(serial_hex(cert.serial_number))
    except CertkitError:
        row = None
    if row is None or row["status"] != "valid":
        return said + ", or remove it yourself."
    import shlex

    try:
        valid = store.inventory.rows("WHERE status = 'valid' LIMIT 1001")
    except CertkitError:
        valid = []
    issued = (f"; it has issued {len(valid) if len(valid) <= 1000 else 'over 1000'} valid certificate"
              f"{'s' if len(valid) != 1 else ''}, which revoking it invalidates" if valid else "")
    return (said + f". To start over, revoke its certificate at its parent first (it records it as valid{issued}), "
            f"then remove it: certkit revoke {row['serial']} --ca-dir {shown(shlex.quote(str(parent_ca_dir)))} "
            "--reason cessationOfOperation")
