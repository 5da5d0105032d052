"""The lifecycle of issued certificates: ``list``, ``renew``, ``revoke`` and ``crl``."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import click

from certkit.cli.common import ca_dir_option, emit, json_option, load_ca, passphrase_file_option, when
from certkit.constants import KEY_TYPES, REVOCATION_REASONS

REASON_HELP = ", ".join(REVOCATION_REASONS)


def _inventory(ca_dir: Path | None):
    """The inventory of the CA in ``ca_dir``, checked (and migrated), without touching the key."""
    from certkit.store import CADirectory

    store = CADirectory(ca_dir)
    store.load_certificates()  # a clear error when there is no CA at all
    inventory = store.inventory
    inventory.check()
    return store, inventory


# --- list -------------------------------------------------------------------------
def _parse_period(ctx, param, value):
    if value is None:
        return None
    import datetime as dt

    match = re.fullmatch(r"\s*(\d+)\s*([dwh]?)\s*", value.lower())
    if not match or int(match.group(1)) == 0:
        raise click.BadParameter(f"'{value}' is not a period: use days such as 30d or 30 (also 2w, 12h).")
    unit = {"": "days", "d": "days", "w": "weeks", "h": "hours"}[match.group(2)]
    return dt.timedelta(**{unit: int(match.group(1))})


def _names_summary(row: dict, limit: int = 3) -> str:
    values = [e.split(":", 1)[1] for e in row["names"] if not e.startswith("DirName:")]
    if not values:
        return "-"
    shown = ", ".join(values[:limit])
    return shown + (f" (+{len(values) - limit})" if len(values) > limit else "")


@click.command("list")
@click.option("--kind", type=click.Choice(["ca", "server", "client"]), help="Only this kind of certificate.")
@click.option("--status", type=click.Choice(["valid", "expired", "revoked"]), help="Only certificates in this state.")
@click.option("--expiring", metavar="PERIOD", callback=_parse_period,
              help="Only valid certificates expiring within PERIOD: 30d, 30 (days), 2w, 12h.")
@click.option("--name", "pattern", metavar="PATTERN",
              help="Only certificates whose subject or a SAN entry matches this glob (case-insensitive).")
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many.")
@ca_dir_option
@json_option
def list_certificates(kind, status, expiring, pattern, limit, ca_dir, as_json):
    """List the certificates this CA issued, soonest expiry first.

    Status is valid, expired or revoked; "(renewed)" marks a certificate that
    has a successor, and --expiring leaves those out since they need no
    action. No passphrase is needed.

    \b
    Examples:
      certkit list
      certkit list --expiring 30d
      certkit list --kind client --status revoked
      certkit list --name '*.example.com' --json
    """
    import datetime as dt

    store, inventory = _inventory(ca_dir)
    now = dt.datetime.now(dt.UTC)
    rows = inventory.query(kind=kind, status=status, expiring_within=expiring, name=pattern, now=now, limit=limit)
    if as_json:
        click.echo(json.dumps({"ca_dir": str(store.path), "count": len(rows), "certificates": rows}, indent=2))
        return
    if not rows:
        click.echo("No certificates match." if any((kind, status, expiring, pattern)) else
                   f"No certificates issued yet by the CA in {store.path}.")
        return
    header = ("SERIAL", "KIND", "STATUS", "NOT AFTER", "SUBJECT", "NAMES")
    table = [header] + [(r["serial"][:16] + ("…" if len(r["serial"]) > 16 else ""), r["kind"],
                         r["status"] + (" (renewed)" if r["renewed_by"] else ""),
                         r["not_after"][:10], r["subject"], _names_summary(r)) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
             for row in table]
    lines.append(f"{len(rows)} certificate{'s' if len(rows) != 1 else ''}"
                 + (" (serials shortened: any unique 8+ digit prefix works in renew and revoke)"
                    if any(len(r["serial"]) > 16 for r in rows) else ""))
    click.echo("\n".join(lines))


# --- renew ------------------------------------------------------------------------
@click.command("renew")
@click.argument("certificate", metavar="SERIAL|NAME|FOLDER")
@click.option("--rekey", is_flag=True, help="Generate a new private key (default: keep the existing key).")
@click.option("--key-type", type=click.Choice(KEY_TYPES), help="Key type with --rekey [default: the old key's].")
@click.option("--days", type=int, help="Lifetime in days [default: the old certificate's, capped at the CA's].")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Write the renewed bundle to this new folder instead of replacing the old one.")
@click.option("--force", is_flag=True, help="With --out: replace existing files there.")
@ca_dir_option
@passphrase_file_option
@json_option
def renew(certificate, rekey, key_type, days, out, force, ca_dir, passphrase_file, as_json):
    """Renew a certificate: same subject, names and purpose; a new serial and lifetime.

    The certificate is found by its serial (or a unique prefix of 8+ hex
    digits), the name it was issued for, or its bundle folder. The bundle
    folder is replaced as one step, so servers never see a certificate
    without its matching key; the key is kept (hard-linked) unless --rekey.
    The inventory records which certificate the new one renews. Revoked
    certificates are not renewed.

    \b
    Examples:
      certkit renew ./localhost
      certkit renew db.internal --rekey
      certkit renew 5F3A9C01D2 --days 90
      certkit renew alice --out ./alice-2027 --json
    """
    from certkit.lifecycle import find_certificate, renew_bundle

    if key_type and not rekey:
        raise click.UsageError("--key-type applies to a new key: add --rekey.")
    _store, inventory = _inventory(ca_dir)
    find_certificate(inventory, certificate)  # a clear error before asking for a passphrase
    ca = load_ca(ca_dir, passphrase_file)
    result = renew_bundle(ca, certificate, rekey=rekey, key_type=key_type, days=days, out=out, force=force)
    issued = result.issued
    data = {
        "renewed": result.old_serial, "serial": issued.serial_hex, "kind": issued.kind,
        "subject": issued.cert.subject.rfc4514_string(), "names": [str(i) for i in issued.identities],
        "not_after": issued.not_after.isoformat(), "rekeyed": rekey, "folder": str(result.folder),
        "files": {p.name: str(p) for p in result.files}, "notes": result.notes,
    }
    lines = [
        f"Renewed {issued.kind} certificate {result.old_serial}",
        f"  new serial  {issued.serial_hex}",
        f"  subject     {data['subject']}",
        f"  names       {', '.join(i.value for i in issued.identities) or '(subject DN)'}",
        f"  expires     {when(issued.not_after)}",
        f"  key         {'new (' + (key_type or 'same type') + ')' if rekey else 'kept'}",
        f"  folder      {result.folder}  ({', '.join(p.name for p in result.files)})",
    ]
    lines += [f"  note        {n}" for n in result.notes]
    emit(as_json, data, "\n".join(lines))


# --- revoke -----------------------------------------------------------------------
@click.command("revoke")
@click.argument("certificate", metavar="SERIAL|FOLDER")
@click.option("--reason", default="unspecified", show_default=True, metavar="REASON",
              help=f"RFC 5280 reason: {REASON_HELP} (key-compromise style works too).")
@ca_dir_option
@json_option
def revoke(certificate, reason, ca_dir, as_json):
    """Revoke a certificate; the next 'certkit crl' lists it.

    The certificate is given by serial (or a unique prefix of 8+ hex digits),
    its bundle folder, or its cert.pem. Revocation is final. No passphrase is
    needed to record it; signing the CRL needs the CA key.

    \b
    Examples:
      certkit revoke ./alice --reason keyCompromise
      certkit revoke 5F3A9C01D2B4 --reason superseded
      certkit revoke ./old-laptop --reason cessation-of-operation && certkit crl --out crl.pem
    """
    from certkit.ca import parse_reason
    from certkit.errors import CertkitError
    from certkit.lifecycle import find_certificate

    try:
        reason = parse_reason(reason)
    except CertkitError as exc:
        raise click.BadParameter(str(exc), param_hint="'--reason'") from None
    _store, inventory = _inventory(ca_dir)
    found = find_certificate(inventory, certificate, allow_names=False)
    row = inventory.revoke(found.serial, reason)
    data = {"serial": row["serial"], "kind": row["kind"], "subject": row["subject"],
            "revoked_at": row["revoked_at"], "reason": row["revocation_reason"]}
    human = "\n".join([
        f"Revoked {row['kind']} certificate {row['serial']}",
        f"  subject   {row['subject']}",
        f"  reason    {row['revocation_reason']}",
        f"  at        {row['revoked_at']}",
        "Publish a new CRL so servers refuse it: certkit crl --out crl.pem",
    ])
    emit(as_json, data, human)


# --- crl --------------------------------------------------------------------------
@click.command("crl")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the CRL here [default: PEM on stdout]. An older CRL of this CA is replaced.")
@click.option("--der", is_flag=True, help="DER instead of PEM.")
@click.option("--days", type=click.IntRange(min=1), default=30, show_default=True,
              help="Days until nextUpdate: publish a new CRL before then.")
@click.option("--force", is_flag=True, help="Replace --out even if it is not a CRL of this CA.")
@ca_dir_option
@passphrase_file_option
@json_option
def crl(out, der, days, force, ca_dir, passphrase_file, as_json):
    """Sign a certificate revocation list of every certificate this CA revoked.

    Each CRL gets the next CRL number; thisUpdate is now (less five minutes
    for slow clocks) and nextUpdate --days later. Point nginx's ssl_crl,
    HAProxy's crl-file or openssl's -CRLfile at it, and publish a new one
    before nextUpdate: an expired CRL makes those servers refuse everyone.

    \b
    Examples:
      certkit crl --out crl.pem
      certkit crl --der --out crl.der --days 7
      certkit crl > crl.pem
    """
    from cryptography import x509

    from certkit.lifecycle import check_crl_target, crl_bytes, write_crl

    if out is None and der and sys.stdout.isatty():
        raise click.UsageError("A DER CRL is binary: give --out FILE or redirect stdout.")
    if out is None and der and as_json:
        raise click.UsageError("--json without --out prints the PEM CRL in the JSON; drop --der or add --out.")
    ca = load_ca(ca_dir, passphrase_file)
    if out is not None:
        check_crl_target(out, ca.cert.subject, force=force)  # before taking a CRL number
    revocation_list = ca.crl(days=days)
    data_bytes = crl_bytes(revocation_list, der=der)
    number = revocation_list.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    info = {
        "crl_number": number, "issuer": ca.cert.subject.rfc4514_string(),
        "this_update": revocation_list.last_update_utc.isoformat(),
        "next_update": revocation_list.next_update_utc.isoformat(),
        "revoked": len(revocation_list), "format": "DER" if der else "PEM",
        "sha256": _sha256(data_bytes),
    }
    if out is not None:
        write_crl(out, data_bytes, ca.cert.subject, force=force)
        info["file"] = str(out)
        emit(as_json, info, "\n".join([
            f"Wrote CRL number {number} of \"{ca.common_name}\" to {out} ({info['format']})",
            f"  revoked      {len(revocation_list)} certificate{'s' if len(revocation_list) != 1 else ''}",
            f"  this update  {when(revocation_list.last_update_utc)}",
            f"  next update  {when(revocation_list.next_update_utc)}  (publish a new CRL before then)",
        ]))
    elif as_json:
        click.echo(json.dumps(info | {"pem": data_bytes.decode()}, indent=2))
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(data_bytes)
        sys.stdout.buffer.flush()


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()
