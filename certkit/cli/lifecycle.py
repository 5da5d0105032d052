"""The lifecycle of issued certificates: ``list`` and ``revoke`` (``renew`` is :mod:`certkit.cli.renew`, ``crl``
:mod:`certkit.cli.crl`)."""

from __future__ import annotations

import json
import shutil
import sys
from functools import partial
from pathlib import Path

import click

from certkit.cli.arguments import on_stop
from certkit.cli.common import (
    Whole,
    ca_dir_option,
    emit,
    json_option,
    parse_period,
    when,
)
from certkit.constants import (
    KINDS,
    LIST_STATUSES,
    REVOCATION_REASONS,
)
from certkit.text import terminal_safe, wrap_columns
from certkit.vocabulary import iso

REASON_HELP = ", ".join(REVOCATION_REASONS)


def _inventory(ca_dir: Path | None):
    """The inventory of the CA in ``ca_dir``, checked, migrated and settled, without touching the key."""
    from certkit.store import CADirectory

    store = CADirectory(ca_dir)
    ca = store.open()  # a clear error when there is no CA at all; pending rows of dead writers settled
    return store, ca.inventory


# --- list -------------------------------------------------------------------------
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
@click.option("--expiring", metavar="PERIOD", callback=parse_period,
              help="Only valid certificates expiring within PERIOD: 30d, 30 (days), 2w, 12h.")
@click.option("--name", "pattern", metavar="PATTERN",
              help="Only certificates with a subject value (such as the CN) or a SAN entry that matches this "
                   "glob (case-insensitive; a glob with '=' also matches the whole subject).")
@click.option("--limit", type=Whole(1, 10_000_000), help="Show at most this many.")
@ca_dir_option
@json_option
def list_certificates(kind, status, expiring, pattern, limit, ca_dir, as_json):
    """List the certificates this CA issued, soonest expiry first.

    Status is valid, not yet valid (before its start: listed, but not with
    --status valid), expired, revoked, pending (its bundle being written
    right now) or abandoned (signed but never delivered: shown only with
    --status abandoned); "(renewed)" marks a certificate that has a successor,
    "(replaced)" one whose bundle --force gave to a certificate of another kind,
    and --expiring leaves those out since they need no action, as it leaves out a
    running ACME server's own certificate, which that server renews. No
    passphrase is needed. On a terminal, long lists go through a pager.

    \b
    Examples:
      certkit list
      certkit list --expiring 30d
      certkit list --kind client --status revoked
      certkit list --name '*.example.com' --json
    """
    import datetime as dt

    from certkit.cli.common import warn
    from certkit.lifecycle import name_glob_hint
    from certkit.text import shown

    if expiring is not None and status not in (None, "valid"):  # it selects valid certificates
        raise click.UsageError(f"--expiring selects valid certificates that expire within the period; it cannot go "
                               f"with --status {status} (which lists {status} ones).")
    store, inventory = _inventory(ca_dir)
    now = dt.datetime.now(dt.UTC)
    damaged: list = []
    rows = inventory.query(kind=kind, status=status, expiring_within=expiring, name=pattern, now=now, limit=limit,
                           damaged=damaged)
    for problem in damaged:
        warn(str(problem))
    from certkit.fleet.plan import acme_late

    for late in filter(None, (acme_late(row, now) for row in rows) if expiring is not None else ()):
        warn(f"{late}.")  # due, and no certkit command renews it: its client must
    filtered = any((kind, status, expiring, pattern))
    if not rows and pattern is not None and (hint := name_glob_hint(inventory, pattern)) is not None:
        warn(f"--name '{shown(pattern)}' matches no certificate: {hint}")
    total = len(rows)
    if limit is not None and len(rows) + len(damaged) >= limit:  # perhaps more match: say how many
        from certkit.inventory.query import count as matching

        total = matching(inventory, kind=kind, status=status, expiring_within=expiring, name=pattern, now=now)
    if as_json:
        data = {"ca_dir": str(store.path), "count": len(rows), "total": max(total, len(rows)), "limit": limit,
                "certificates": rows, "damaged": [p.serial for p in damaged]}
        click.echo(json.dumps(data, indent=2))
        return
    if not rows:
        click.echo("No certificates match." if filtered else f"No certificates issued yet by the CA in "
                                                             f"{shown(store.path)}.")
        return
    width = shutil.get_terminal_size((120, 24)).columns if sys.stdout.isatty() else None
    text = _table(rows, width)
    count = f"{len(rows):,} certificate{'s' if len(rows) != 1 else ''}"
    if total > len(rows):
        count = f"{len(rows):,} of {total:,} {_described(kind, status, expiring, pattern)}"
    if any(len(r["serial"]) > 16 for r in rows):
        note = "serials shortened: any unique 8+ digit prefix works in renew and revoke"
        from certkit.text import columns

        if width is None or columns(count) + len(note) + 3 <= width:
            count += f" ({note})"
        else:  # a line of its own
            count = "Serials are shortened: any unique 8+ digit prefix works in renew and revoke.\n" + count
    if width is not None:  # wrapped, never cut: "8 of 10,000 ... expiring within 30 days" whole on a narrow terminal
        count = "\n".join(wrap_columns(line, width) for line in count.split("\n"))
    text = terminal_safe(text + "\n" + count)
    if sys.stdout.isatty() and text.count("\n") + 1 > shutil.get_terminal_size((80, 24)).lines - 1:
        from certkit.cli.paging import page

        page(text)
    else:
        click.echo(text)


def _described(kind: str | None, status: str | None, expiring, pattern: str | None) -> str:
    """The certificates the filters choose, as the count says them: ``certificates``, ``revoked client
    certificates matching '*.example.com'``, ``certificates expiring within 30 days``."""
    from certkit.fleet.plan import period_words
    from certkit.text import shown

    words = " ".join(w for w in (status, kind, "certificates") if w)
    if pattern:
        words += f" matching '{shown(pattern)}'"
    if expiring is not None:
        words += f" expiring within {period_words(expiring)}"
    return words


def _succeeded(row: dict) -> str:
    """What the STATUS column adds for a certificate with a successor: renewed, or replaced by one of
    another kind (--force over its bundle), which renewed nothing."""
    return " (renewed)" if row["renewed_by"] else " (replaced)" if row.get("replaced_by") else ""


def _table(rows: list[dict], width: int | None) -> str:
    from certkit.text import columns, pad_columns, shown

    header = ("SERIAL", "KIND", "STATUS", "NOT AFTER", "SUBJECT", "NAMES")
    table = [header] + [(r["serial"][:16] + ("…" if len(r["serial"]) > 16 else ""), r["kind"],
                         r["status"] + _succeeded(r),
                         r["not_after"][:10], shown(r["subject"]) or "(empty)", _names_summary(r)) for r in rows]
    widths = [max(columns(row[i]) for row in table) for i in range(len(header) - 1)]
    if width is not None:  # fit the terminal: the subject column gives way first, the names after it
        fixed = sum(widths[:4]) + 2 * 5
        if width - fixed < 12 + 2 + 16:  # too narrow for both: the names stay, else the subject
            table = [(*row[:4], "", row[5] if row[5] != "-" else row[4]) for row in table]
            widths[4] = -2  # no column, nor its gap
            if width - fixed < 16 and widths[0] > 9:  # still narrow: 8 digits of a serial are enough
                table = [(row[0] if i == 0 else row[0][:8] + "…", *row[1:]) for i, row in enumerate(table)]
                widths[0] = 9
            if width - sum(w + 2 for w in widths[:4]) < 6:  # the names cut to nothing: they say which certificate
                widths[3] = -2  # it is, the date does not (list --expiring still chooses by it)
        else:
            widths[4] = max(12, min(widths[4], (width - fixed) // 2))
    lines = []
    for row in table:
        cells = [_fit(cell, w) for cell, w in zip(row[:-1], widths, strict=True) if w >= 0]
        shown_widths = (w for w in widths if w >= 0)
        line = "  ".join(pad_columns(c, w) for c, w in zip(cells, shown_widths, strict=True)) + "  " + row[-1]
        lines.append(_fit(line, width) if width is not None else line)
    return "\n".join(lines)


def _fit(text: str, width: int | None) -> str:
    from certkit.text import fit_columns

    return text if width is None else fit_columns(text, width)


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
    from certkit.cli.common import warn
    from certkit.errors import AlreadyRevoked, CertkitError
    from certkit.inventory.rows import parse_iso
    from certkit.lifecycle import find_certificate
    from certkit.revocation import check_can_revoke, parse_reason
    from certkit.text import shown

    try:
        reason = parse_reason(reason)
    except CertkitError as exc:
        raise click.BadParameter(str(exc), param_hint="'--reason'") from None
    from certkit.bundle_locks import folders_held
    from certkit.files import broken_link

    if (broken := broken_link(certificate)) is not None:  # a link of that name: a path that leads nowhere
        raise CertkitError(f"{broken} Give the bundle folder, its cert.pem, or the serial.")
    store, inventory = _inventory(ca_dir)
    ca_cert, ca_parents = store.load_certificates()
    chosen: list[str] = []  # the serial, once found: what a stop signal asks the inventory about
    on_stop(partial(_stopped_revoking, inventory, chosen, _same_ca(ca_dir)))
    given = Path(certificate)
    # A folder being renewed is revoked once the renewal is done with it: what it then delivers. A serial
    # waits for the folder its row records, so that what is being written there is revoked with it.
    held = [given] if given.is_dir() else [given.parent] if given.is_file() else []
    held = held or _recorded_folder(inventory, certificate)
    with folders_held(store.path, held):
        found = find_certificate(inventory, certificate, allow_names=False, ca_cert=ca_cert,
                                 ca_parents=tuple(ca_parents))
        check_can_revoke(ca_cert, found.serial, found.cert, inventory.location)
        chosen.append(found.serial)
        try:
            row = inventory.revoke(found.serial, reason)
        except AlreadyRevoked as exc:  # a revoke killed after its commit: the CRL may not have been published
            raise AlreadyRevoked(f"{exc} If no CRL was published since, publish one now so "
                                 f"{_refusers(found.row['kind'])} refuse it: certkit crl{_same_ca(ca_dir)} "
                                 "--out crl.pem") from None
    revoked_at = parse_iso(row["revoked_at"])
    also = row.get("also_revoked", [])
    for other, why in row.get("unchecked_rows", []):  # the key's other certificates: one may be among them
        warn(f"The inventory row of certificate {other} is damaged ({why}), so whether it holds the same key cannot "
             "be told, and it was not revoked: restore the inventory from a backup and, if it holds this key, "
             f"revoke it too: certkit revoke {other} --reason keyCompromise{_same_ca(ca_dir)}")
    data = {"serial": row["serial"], "kind": row["kind"], "subject": row["subject"],
            "revoked_at": iso(revoked_at), "revocation_reason": row["revocation_reason"], "also_revoked": also,
            "unchecked": row.get("unchecked", []),
            "reason_was": row.get("reason_was")}
    was = row.get("reason_was")
    human = "\n".join([
        f"Revoked {'CA' if row['kind'] == 'ca' else row['kind']} certificate {row['serial']}",
        f"  subject   {shown(row['subject']) or '(empty)'}",
        f"  reason    {row['revocation_reason']}" + (f" (it was revoked as {was}; now its key is known to be "
                                                      "compromised)" if was else ""),
        f"  at        {when(revoked_at)}" + (" (when it was first revoked)" if was else ""),
        *[f"  also      {serial} (the same key)" for serial in also],
        f"Publish a new CRL so {_refusers('' if also else row['kind'])} refuse " + ("them" if also else "it") +
        f": certkit crl{_same_ca(ca_dir)} --out crl.pem",
    ])
    emit(as_json, data, human)


def _stopped_revoking(inventory, chosen: list[str], same_ca: str) -> str:
    """What a revoke stopped by a signal did, as the inventory says (it may have committed just before)."""
    if not chosen:
        return "Interrupted: nothing was revoked."
    row = inventory.get(chosen[0])
    if row is None or row.get("status") != "revoked":
        return f"Interrupted: certificate {chosen[0]} was not revoked."
    return (f"Interrupted, but certificate {chosen[0]} is revoked ({row.get('revocation_reason')}, as the inventory "
            f"records): publish a new CRL so {_refusers(row['kind'])} refuse it: certkit crl{same_ca} --out crl.pem")


def _refusers(kind: str) -> str:
    """Who a CRL tells to refuse a certificate of ``kind``: the other side of the connections it is presented on
    (a server's clients, a client's servers; both for a peer's, a CA's, or certificates of several kinds)."""
    return {"server": "clients", "client": "servers"}.get(kind, "servers and clients")


def _recorded_folder(inventory, ref: str) -> list[Path]:
    """The bundle folder the inventory records for the serial ``ref``, if any (none for a bad one: the
    refusal comes from find_certificate, in its words)."""
    from certkit.errors import CertkitError
    from certkit.lifecycle import find_certificate

    try:
        row = find_certificate(inventory, ref, allow_names=False).row
    except CertkitError:
        return []
    return [Path(row["folder"])] if row.get("folder") and row.get("sink") in (None, "folder") else []


def _same_ca(ca_dir: Path | None) -> str:
    """`` --ca-dir DIR`` when the command was told its CA on the command line: a command it suggests
    must sign with the same CA, not with $CERTKIT_CA_DIR's (docs/two-tier-pki.md revokes an
    intermediate with --ca-dir root while $CERTKIT_CA_DIR names the intermediate)."""
    import shlex

    from click.core import ParameterSource

    if click.get_current_context().get_parameter_source("ca_dir") != ParameterSource.COMMANDLINE:
        return ""
    return f" --ca-dir {shlex.quote(terminal_safe(str(ca_dir)))}"
