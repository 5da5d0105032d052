"""The lifecycle of issued certificates: ``list``, ``renew``, ``revoke`` and ``crl``."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import click

from certkit.cli.common import ca_dir_option, days_option, emit, json_option, passphrase_file_option, unlock, when
from certkit.constants import (
    KEY_TYPES,
    KINDS,
    LEAF_KINDS,
    LIST_STATUSES,
    MAX_CRL_DAYS,
    MIN_CRL_DAYS,
    REVOCATION_REASONS,
)
from certkit.text import terminal_safe

REASON_HELP = ", ".join(REVOCATION_REASONS)


def _inventory(ca_dir: Path | None):
    """The inventory of the CA in ``ca_dir``, checked, migrated and settled, without touching the key."""
    from certkit.store import CADirectory

    store = CADirectory(ca_dir)
    ca = store.open()  # a clear error when there is no CA at all; pending rows of dead writers settled
    return store, ca.inventory


# --- list -------------------------------------------------------------------------
def _parse_period(ctx, param, value):
    if value is None:
        return None
    import datetime as dt

    from certkit.constants import MAX_DAYS
    from certkit.text import shown

    match = re.fullmatch(r"\s*(\d{1,9})\s*([dwh]?)\s*", value.lower())
    if not match or int(match.group(1)) == 0:
        raise click.BadParameter(f"'{shown(value)}' is not a period: use days such as 30d or 30 (also 2w, 12h).")
    unit = {"": "days", "d": "days", "w": "weeks", "h": "hours"}[match.group(2)]
    try:
        period = dt.timedelta(**{unit: int(match.group(1))})
    except OverflowError:  # 999999999w: past anything a timedelta (or a certificate) holds
        period = dt.timedelta.max
    if period > dt.timedelta(days=MAX_DAYS):
        raise click.BadParameter(f"'{shown(value)}' is longer than {MAX_DAYS} days, the longest lifetime certkit "
                                 "knows; no certificate expires later than that.")
    return period


def _names_summary(row: dict, limit: int = 3) -> str:
    from certkit.text import shown

    values = [shown(e.split(":", 1)[1]) for e in row["names"] if not e.startswith("DirName:") and ":" in e]
    if not values:
        return "-"
    text = ", ".join(values[:limit])
    return text + (f" (+{len(values) - limit})" if len(values) > limit else "")


@click.command("list")
@click.option("--kind", type=click.Choice(KINDS), help="Only this kind of certificate.")
@click.option("--status", type=click.Choice(LIST_STATUSES),
              help="Only certificates in this state (abandoned ones, never delivered, only when asked for).")
@click.option("--expiring", metavar="PERIOD", callback=_parse_period,
              help="Only valid certificates expiring within PERIOD: 30d, 30 (days), 2w, 12h.")
@click.option("--name", "pattern", metavar="PATTERN",
              help="Only certificates whose subject or a SAN entry matches this glob (case-insensitive).")
@click.option("--limit", type=click.IntRange(1, 10_000_000), help="Show at most this many.")
@ca_dir_option
@json_option
def list_certificates(kind, status, expiring, pattern, limit, ca_dir, as_json):
    """List the certificates this CA issued, soonest expiry first.

    Status is valid, expired, revoked, pending (its bundle being written right
    now) or abandoned (signed but never delivered: shown only with --status
    abandoned); "(renewed)" marks a certificate that has a successor, and
    --expiring leaves those out since they need no action. No passphrase is
    needed. On a terminal, long lists go through a pager.

    \b
    Examples:
      certkit list
      certkit list --expiring 30d
      certkit list --kind client --status revoked
      certkit list --name '*.example.com' --json
    """
    import datetime as dt

    from certkit.cli.common import warn
    from certkit.text import shown

    store, inventory = _inventory(ca_dir)
    now = dt.datetime.now(dt.UTC)
    damaged: list = []
    rows = inventory.query(kind=kind, status=status, expiring_within=expiring, name=pattern, now=now, limit=limit,
                           damaged=damaged)
    for problem in damaged:
        warn(str(problem))
    filtered = any((kind, status, expiring, pattern))
    if limit is not None and len(rows) == limit:
        from certkit.inventory.query import listed_count

        total = listed_count(inventory)
    else:
        total = None
    if as_json:
        data = {"ca_dir": str(store.path), "count": len(rows), "certificates": rows,
                "damaged": [p.serial for p in damaged]}
        click.echo(json.dumps(data, indent=2))
        return
    if not rows:
        click.echo("No certificates match." if filtered else f"No certificates issued yet by the CA in "
                                                             f"{shown(store.path)}.")
        return
    width = shutil.get_terminal_size((120, 24)).columns if sys.stdout.isatty() else None
    text = _table(rows, width)
    count = f"{len(rows):,} certificate{'s' if len(rows) != 1 else ''}"
    if total is not None and total > len(rows):
        count = f"{len(rows):,} of {total:,} certificates" + (" (the first that match)" if filtered else "")
    if any(len(r["serial"]) > 16 for r in rows):
        note = "serials shortened: any unique 8+ digit prefix works in renew and revoke"
        if width is None or len(count) + len(note) + 3 <= width:
            count += f" ({note})"
        else:  # a line of its own, so that both fit the terminal
            count = "Serials are shortened: any unique 8+ digit prefix works in renew and revoke.\n" + count
    text = terminal_safe(text + "\n" + "\n".join(_fit(line, width) for line in count.split("\n")))
    if sys.stdout.isatty() and len(rows) > shutil.get_terminal_size((80, 24)).lines - 2:
        click.echo_via_pager(text)
    else:
        click.echo(text)


def _table(rows: list[dict], width: int | None) -> str:
    from certkit.text import shown

    header = ("SERIAL", "KIND", "STATUS", "NOT AFTER", "SUBJECT", "NAMES")
    table = [header] + [(r["serial"][:16] + ("…" if len(r["serial"]) > 16 else ""), r["kind"],
                         r["status"] + (" (renewed)" if r["renewed_by"] else ""),
                         r["not_after"][:10], shown(r["subject"]), _names_summary(r)) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    if width is not None:  # fit the terminal: the subject column gives way first, the names after it
        fixed = sum(widths[:4]) + 2 * 5
        widths[4] = max(12, min(widths[4], (width - fixed) // 2))
    lines = []
    for row in table:
        cells = [_fit(cell, w) for cell, w in zip(row[:-1], widths, strict=True)]
        line = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + "  " + row[-1]
        lines.append(_fit(line, width) if width is not None else line)
    return "\n".join(lines)


def _fit(text: str, width: int | None) -> str:
    return text if width is None or len(text) <= width else text[:max(width - 1, 1)] + "…"


# --- renew ------------------------------------------------------------------------
@click.command("renew")
@click.argument("certificate", metavar="[SERIAL|NAME|FOLDER]", required=False)
@click.option("--rekey", is_flag=True, help="Generate a new private key (default: keep the existing key).")
@click.option("--key-type", type=click.Choice(KEY_TYPES), help="Key type with --rekey [default: the old key's].")
@days_option("Lifetime in days [default: the old certificate's, capped at the CA's].")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False),
              help="Write the renewed bundle to this new folder instead of replacing the old one.")
@click.option("--force", is_flag=True, help="With --out: replace existing files there.")
@click.option("--p12-password-file", type=click.Path(path_type=Path, dir_okay=False, exists=True, allow_dash=True),
              help="Write a fresh bundle.p12 with this password (else $CERTKIT_P12_PASSWORD; without either, "
                   "a stale bundle.p12 is removed).")
@click.option("--expiring", metavar="PERIOD", callback=_parse_period,
              help="Bulk: renew every certificate expiring within PERIOD (30d, 2w, 12h), expired ones included.")
@click.option("--all", "renew_all", is_flag=True, help="Bulk: renew every valid certificate.")
@click.option("--kind", type=click.Choice(LEAF_KINDS), help="Bulk: only this kind of certificate.")
@click.option("--name", "pattern", metavar="GLOB",
              help="Bulk: only certificates whose subject or a SAN entry matches this glob.")
@click.option("--exec", "exec_each", metavar="CMD",
              help="Run CMD with /bin/sh after each renewed bundle; $RENEWED_LINEAGE (certbot's name) and "
                   "$CERTKIT_FOLDER hold its folder, $CERTKIT_SERIAL and $CERTKIT_OLD_SERIAL the serials.")
@click.option("--exec-once", metavar="CMD", help="Run CMD once at the end if anything was renewed (reload a "
                                                 "server once, not once per certificate).")
@click.option("--exec-timeout", type=click.IntRange(1, 86400), default=600, show_default=True, metavar="SECONDS",
              help="Stop a hook that runs longer than this.")
@click.option("--install-timer", is_flag=True,
              help="Write (and enable) a systemd timer that runs this renewal daily at a random time "
                   "[default selection: --expiring 30d]; without systemd, print the crontab line.")
@click.option("--remove-timer", is_flag=True, help="Disable and remove the timer --install-timer wrote.")
@click.option("--cron", is_flag=True, help="With --install-timer: print the crontab line instead.")
@click.option("--unit-dir", type=click.Path(path_type=Path, file_okay=False),
              help="With --install-timer/--remove-timer: write the units here, enable nothing [default: "
                   "~/.config/systemd/user, or /etc/systemd/system as root].")
@click.option("--timer-name", default="certkit-renew", show_default=True, metavar="NAME",
              help="The timer's unit name (one per CA, if you have several).")
@ca_dir_option
@passphrase_file_option
@json_option
def renew(certificate, rekey, key_type, days, out, force, p12_password_file, expiring, renew_all, kind, pattern,
          exec_each, exec_once, exec_timeout, install_timer, remove_timer, cron, unit_dir, timer_name, ca_dir,
          passphrase_file, as_json):
    """Renew a certificate, or all that are due: same subject, names and purpose; a new serial and
    lifetime.

    The certificate is found by its serial (or a unique prefix of 8+ hex
    digits), the name it was issued for, or its bundle folder. Only the
    bundle's files in the folder are replaced (as one step where the folder
    holds nothing else, so servers never see a certificate without its
    matching key); the key is kept unless --rekey; anything else in the
    folder is left alone. The inventory records which certificate the new
    one renews. Revoked certificates are not renewed.

    In bulk (--expiring PERIOD or --all, narrowed by --kind and --name),
    every valid certificate that is due and whose bundle folder is known is
    renewed in place, one after the other, each followed by its --exec hook;
    a failed hook never undoes a bundle. With nothing to do it prints nothing
    and exits 0, so cron can run it every hour; it exits 1 if anything
    failed. --install-timer runs it daily (docs/renew.md).

    \b
    Examples:
      certkit renew ./localhost
      certkit renew db.internal --rekey
      certkit renew 5F3A9C01D2 --days 90
      certkit renew alice --out ./alice-2027 --json
      certkit renew --expiring 30d --exec-once 'systemctl reload nginx'
      certkit renew --expiring 2w --kind server --exec 'echo "$CERTKIT_FOLDER renewed"'
      certkit renew --install-timer --expiring 30d --passphrase-file /etc/certkit/passphrase
    """
    from certkit.cli import fleet as cli_fleet

    bulk = expiring is not None or renew_all
    if install_timer and remove_timer:
        raise click.UsageError("--install-timer and --remove-timer: choose one.")
    if not (install_timer or remove_timer) and (cron or unit_dir is not None or timer_name != "certkit-renew"):
        raise click.UsageError("--cron, --unit-dir and --timer-name apply with --install-timer or --remove-timer.")
    if expiring is not None and renew_all:
        raise click.UsageError("--expiring and --all: choose one (--all renews every valid certificate).")
    if key_type and not rekey:
        raise click.UsageError("--key-type applies to a new key: add --rekey.")
    if (bulk or install_timer or remove_timer) and (certificate or out is not None or force):
        raise click.UsageError("A certificate, --out and --force belong to a single renewal; bulk renewal and the "
                               "timer renew every due certificate in its own folder.")
    if not (bulk or install_timer) and (kind or pattern):
        raise click.UsageError("--kind and --name choose certificates for bulk renewal: add --expiring PERIOD or "
                               "--all.")
    if remove_timer:
        return cli_fleet.timer(False, cron=cron, unit_dir=unit_dir, name=timer_name, renew_argv=[], ca_dir=ca_dir,
                               passphrase_file=passphrase_file, as_json=as_json)
    if install_timer:
        argv = ["renew", "--all"] if renew_all else ["renew", "--expiring",
                                                     cli_fleet.period_arg(expiring or _parse_period(None, None, "30d"))]
        argv += (["--kind", kind] if kind else []) + (["--name", pattern] if pattern else [])
        argv += (["--rekey"] if rekey else []) + (["--key-type", key_type] if key_type else [])
        argv += (["--days", str(days)] if days else [])
        argv += (["--exec", exec_each] if exec_each else []) + (["--exec-once", exec_once] if exec_once else [])
        argv += (["--exec-timeout", str(exec_timeout)] if exec_timeout != 600 else [])
        if p12_password_file is not None:
            argv += ["--p12-password-file", str(p12_password_file.absolute())]
        return cli_fleet.timer(True, cron=cron, unit_dir=unit_dir, name=timer_name, renew_argv=argv, ca_dir=ca_dir,
                               passphrase_file=passphrase_file, as_json=as_json)
    if bulk:
        from certkit.fleet import Selection

        return cli_fleet.renew_in_bulk(
            Selection(expiring, kind, pattern), rekey=rekey, key_type=key_type, days=days,
            p12_password=_p12_password_if_any(p12_password_file), exec_each=exec_each, exec_once=exec_once,
            exec_timeout=exec_timeout, ca_dir=ca_dir, passphrase_file=passphrase_file, as_json=as_json)
    if certificate is None:
        raise click.UsageError("Say which certificate to renew (a serial, a name or its folder), or renew every one "
                               "that is due with --expiring PERIOD or --all.")
    from certkit.errors import CannotRenew
    from certkit.lifecycle import plan_renewal
    from certkit.lifecycle import renew as renew_planned
    from certkit.store import CADirectory
    from certkit.text import shown

    ca = CADirectory(ca_dir).open()
    p12_password = _p12_password_if_any(p12_password_file)
    try:
        planned = plan_renewal(ca, certificate, rekey=rekey, key_type=key_type, days=days, out=out, force=force,
                               p12_password=p12_password)  # every refusal before the passphrase is asked for
    except CannotRenew as exc:
        if "No folder is known" in str(exc):  # the command line's way to choose one
            raise click.ClickException(f"{str(exc).rstrip('.')} with --out.") from None
        raise
    unlock(ca, passphrase_file)
    result = renew_planned(ca, planned)
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
        f"  subject     {shown(data['subject'])}",
        f"  names       {', '.join(shown(i.value) for i in issued.identities) or '(subject DN)'}",
        f"  expires     {when(issued.not_after)}",
        f"  key         {'new (' + (key_type or 'same type') + ')' if rekey else 'kept'}",
        f"  folder      {shown(result.folder)}  ({', '.join(p.name for p in result.files)})",
    ]
    lines += [f"  note        {shown(n)}" for n in result.notes]
    failures = cli_fleet.single_hooks(result, exec_each, exec_once, exec_timeout, data, lines) \
        if exec_each or exec_once else []
    emit(as_json, data, "\n".join(lines))
    if failures:
        from certkit.cli.common import Failed

        raise Failed("; ".join(failures) + ".")


def _p12_password_if_any(path: Path | None) -> bytes | None:
    """The PKCS#12 password, when one is at hand (a file or the environment): renew then writes a
    fresh bundle.p12 instead of removing the stale one. Never prompts."""
    import os

    from certkit.cli.common import read_secret_file
    from certkit.constants import ENV_P12_PASSWORD

    if path is not None:
        return read_secret_file(path)
    return os.environ[ENV_P12_PASSWORD].encode() if os.environ.get(ENV_P12_PASSWORD) else None


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
    from certkit.errors import CertkitError
    from certkit.inventory.rows import parse_iso
    from certkit.lifecycle import find_certificate
    from certkit.revocation import parse_reason
    from certkit.text import shown

    try:
        reason = parse_reason(reason)
    except CertkitError as exc:
        raise click.BadParameter(str(exc), param_hint="'--reason'") from None
    _store, inventory = _inventory(ca_dir)
    found = find_certificate(inventory, certificate, allow_names=False)
    row = inventory.revoke(found.serial, reason)
    revoked_at = parse_iso(row["revoked_at"])
    data = {"serial": row["serial"], "kind": row["kind"], "subject": row["subject"],
            "revoked_at": revoked_at.isoformat(), "reason": row["revocation_reason"]}
    human = "\n".join([
        f"Revoked {row['kind']} certificate {row['serial']}",
        f"  subject   {shown(row['subject'])}",
        f"  reason    {row['revocation_reason']}",
        f"  at        {when(revoked_at)}",
        "Publish a new CRL so servers refuse it: certkit crl --out crl.pem",
    ])
    emit(as_json, data, human)


# --- crl --------------------------------------------------------------------------
@click.command("crl")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the CRL here [default: PEM on stdout]. An older CRL of this CA is replaced.")
@click.option("--der", is_flag=True, help="DER instead of PEM.")
@click.option("--days", type=click.IntRange(MIN_CRL_DAYS, MAX_CRL_DAYS), default=30, show_default=True,
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
    from certkit.store import CADirectory

    ca = CADirectory(ca_dir).open()
    if out is not None:
        check_crl_target(out, ca.cert.subject, force=force, ca_dirs=ca.directories)  # before taking a number
    ca.inventory.revoked()  # a damaged revoked row refuses the CRL before the passphrase is asked for
    unlock(ca, passphrase_file)
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
        write_crl(out, data_bytes, ca.cert.subject, force=force, ca_dirs=ca.directories)
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
