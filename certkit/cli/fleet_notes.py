"""What installing a renewal timer warns of before it writes anything: certificates its runs would renew again each
day, bundle.p12 files its renewals remove, and certificates of its selection delivered into output files, which no
run renews. Each warning is said on standard error and kept for --json's "notes"."""

from __future__ import annotations

import os
from pathlib import Path

from certkit.cli.common import warn
from certkit.text import shown


def install_warnings(renew_argv: list[str], rows: list[dict], delivered: list[dict]) -> list[str]:
    """The warnings of installing the timer that runs ``renew_argv`` over ``rows`` (``delivered``: those of its
    selection in output files), each said now; the list, for --json's "notes"."""
    warned = [w for w in (_uncarried_password(renew_argv, rows), _short_lives(renew_argv, rows),
                          _deliveries(delivered)) if w]
    for note in warned:
        warn(note)
    return warned


def _uncarried_password(renew_argv: list[str], rows: list[dict]) -> str | None:
    """Without --p12-password-file the timer's renewals remove the bundle.p12 files they cannot write again (a
    PKCS#12 file needs its password): say so now, naming one of the bundles the timer renews that holds one,
    whether or not $CERTKIT_P12_PASSWORD (a secret: never copied into a unit or crontab) is set here."""
    from certkit.constants import ENV_P12_PASSWORD, P12_FILE

    if "--p12-password-file" in renew_argv:
        return None
    held = [Path(row["folder"]) / P12_FILE for row in rows
            if row.get("folder") and os.path.lexists(Path(row["folder"]) / P12_FILE)]
    uncarried = f"${ENV_P12_PASSWORD} is not copied into the timer (it is a secret), so " \
        if os.environ.get(ENV_P12_PASSWORD) else ""
    if held:
        some = f"{len(held)} bundle{'s' if len(held) != 1 else ''} it renews hold{'s' if len(held) == 1 else ''}"
        return (f"{uncarried}{'the' if uncarried else 'The'} timer's renewals remove the bundle.p12 of each bundle "
                f"they renew, as a PKCS#12 file cannot be written again without its password ({some} one now, such as "
                f"{shown(held[0])}); give --p12-password-file FILE to keep them.")
    return f"{uncarried}the renewals it runs remove each bundle.p12 they cannot write again; give " \
        "--p12-password-file FILE to keep them." if uncarried else None


def _deliveries(delivered: list[dict]) -> str | None:
    """The certificates of the timer's selection that went into an output file or to standard output: its runs skip
    them quietly (they have no bundle folder to renew in place), so say it now, once, not never."""
    if not delivered:
        return None
    row = delivered[0]
    where = f"in {shown(row['folder'])}" if row.get("sink") == "file" else "written to standard output"
    many = len(delivered) != 1
    return (f"{len(delivered)} valid certificate{'s' if many else ''} of this selection {'were' if many else 'was'} "
            f"delivered with --format jsonl, k8s or tar (such as {row['serial']}, {where}), and no run of the timer "
            f"renews {'them' if many else 'it'}: it renews bundle folders. Before "
            f"{'they expire' if many else 'it expires'}, renew {'each' if many else 'it'} into a folder (certkit renew "
            f"SERIAL --out DIR), which later runs renew, or issue {'them' if many else 'it'} again.")


def _short_lives(renew_argv: list[str], rows: list[dict]) -> str | None:
    """Without --days a successor lives as long as the certificate it renews: warn now, not in tomorrow's
    cron mail, of the certificates that live no longer than the timer's window (each day's run would renew
    them again)."""
    import datetime as dt

    from certkit.fleet.plan import period_words
    from certkit.fleet.schedule import window_of
    from certkit.inventory.rows import parse_iso

    window = window_of(renew_argv)
    if "--days" in renew_argv or window is None:
        return None
    short = [row for row in rows  # each renewed with the life it had, and due again by the next day's run
             if parse_iso(row["not_after"]) - parse_iso(row["not_before"]) <= window + dt.timedelta(days=1)]
    return (f"{len(short)} valid certificate{'s live' if len(short) != 1 else ' lives'} no more than a day longer "
            f"than the renewal window of {period_words(window)} (such as {short[0]['serial']}), so (almost) each "
            f"day's run would renew {'them' if len(short) != 1 else 'it'} again: add --days with a longer lifetime, "
            "or give a shorter --expiring.") if short else None
