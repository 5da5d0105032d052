"""``renew``: its options and their checks, then one of three ways. One certificate is renewed
here (planned with every refusal before the passphrase is asked for, renewed in place or into
--out, summed up, followed by its hooks); many (``--expiring``, ``--all``) and the daily timer
(``--install-timer``, ``--remove-timer``) are :mod:`certkit.cli.fleet`'s."""

from __future__ import annotations

from pathlib import Path

import click

from certkit.cli.common import (
    ExistingPath,
    Failed,
    OutPath,
    Whole,
    WrittenPath,
    ca_dir_option,
    days_option,
    emit,
    json_option,
    out_as_typed,
    parse_period,
    passphrase_file_option,
    unlock,
    when,
)
from certkit.cli.failures import cli_message
from certkit.constants import KEY_TYPES, LEAF_KINDS
from certkit.paths import absolute
from certkit.vocabulary import iso, san_entries


@click.command("renew")
@click.argument("certificate", metavar="[SERIAL|NAME|FOLDER]", required=False)
@click.option("--rekey", is_flag=True, help="Generate a new private key (default: keep the existing key).")
@click.option("--key-type", type=click.Choice(KEY_TYPES), help="Key type with --rekey [default: the old key's].")
@days_option("Lifetime in days [default: the old certificate's, capped at the CA's].")
@click.option("--out", type=OutPath(path_type=Path, file_okay=False),
              help="Write the renewed bundle to this new folder instead of replacing the old one.")
@click.option("--force", is_flag=True, help="With --out: replace existing files there; with --install-timer: "
                                                 "replace a timer of that name that runs another renewal.")
@click.option("--p12-password-file", type=ExistingPath(path_type=Path, dir_okay=False, allow_dash=True),
              help="Write a fresh bundle.p12 with this password where the bundle had one (else "
                   "$CERTKIT_P12_PASSWORD; without either, a stale bundle.p12 is removed).")
@click.option("--expiring", metavar="PERIOD", callback=parse_period,
              help="Bulk: renew every certificate expiring within PERIOD (30d, 2w, 12h).")
@click.option("--all", "renew_all", is_flag=True, help="Bulk: renew every valid certificate.")
@click.option("--include-expired", is_flag=True,
              help="Bulk: renew expired certificates too (left alone by default: one may have been let go on "
                   "purpose).")
@click.option("--kind", type=click.Choice(LEAF_KINDS), help="Bulk: only this kind of certificate.")
@click.option("--name", "pattern", metavar="GLOB",
              help="Bulk: only certificates with a subject value (such as the CN) or a SAN entry that "
                   "matches this glob (as certkit list --name).")
@click.option("--exec", "exec_each", metavar="CMD",
              help="Run CMD with /bin/sh after each renewed bundle; $RENEWED_LINEAGE (certbot's name) and "
                   "$CERTKIT_FOLDER hold its folder, $CERTKIT_SERIAL and $CERTKIT_OLD_SERIAL the serials.")
@click.option("--exec-once", metavar="CMD", help="Run CMD once at the end if anything was renewed (reload a "
                                                 "server once, not once per certificate).")
@click.option("--exec-timeout", type=Whole(1, 86400), default=600, show_default=True, metavar="SECONDS",
              help="Stop a hook (and what it started) that runs longer than this.")
@click.option("--install-timer", is_flag=True,
              help="Write (and enable) a systemd timer that runs this renewal daily at a random time "
                   "[default selection: --expiring 30d]; without systemd, print the crontab line.")
@click.option("--remove-timer", is_flag=True, help="Disable and remove the timer --install-timer wrote.")
@click.option("--cron", is_flag=True, help="With --install-timer: print the crontab line instead.")
@click.option("--unit-dir", type=WrittenPath(path_type=Path, file_okay=False),
              help="With --install-timer/--remove-timer: write the units here, enable nothing [default: "
                   "~/.config/systemd/user, or /etc/systemd/system as root].")
@click.option("--timer-name", default="certkit-renew", show_default=True, metavar="NAME",
              help="The timer's unit name (one per CA, if you have several).")
@ca_dir_option
@passphrase_file_option
@json_option
def renew(certificate, rekey, key_type, days, out, force, p12_password_file, expiring, renew_all, include_expired,
          kind, pattern, exec_each, exec_once, exec_timeout, install_timer, remove_timer, cron, unit_dir, timer_name,
          ca_dir, passphrase_file, as_json):
    """Renew a certificate, or all that are due: same subject, names and purpose; a new serial and
    lifetime.

    The certificate is found by its serial (or a unique prefix of 8+ hex
    digits), the name it was issued for, or its bundle folder (or its
    cert.pem). Only the
    bundle's files in the folder are replaced (as one step where the folder
    holds nothing else, so servers never see a certificate without its
    matching key); the key is kept unless --rekey; anything else in the
    folder is left alone. The inventory records which certificate the new
    one renews. Revoked certificates are not renewed.

    In bulk (--expiring PERIOD or --all, narrowed by --kind and --name),
    every valid certificate that is due and whose bundle folder is known is
    renewed in place, one after the other, each followed by its --exec hook;
    a failed hook never undoes a bundle. With nothing to do it prints nothing
    (on a terminal: that nothing was due) and exits 0, so cron can run it
    every hour; it exits 1 if anything
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
    from certkit.cli.fleet_argv import timer_argv

    _refuse_mixed_options(certificate, out, force, rekey, key_type, expiring, renew_all, kind, pattern, install_timer,
                          remove_timer, cron, unit_dir, timer_name, include_expired)
    if remove_timer:
        _refuse_with_remove_timer(exec_each=exec_each, exec_once=exec_once, days=days, passphrase_file=passphrase_file,
                                  p12_password_file=p12_password_file, cron=cron)
    elif exec_each is None and exec_once is None and _given("exec_timeout"):
        raise click.UsageError("--exec-timeout limits a hook: add --exec or --exec-once, or leave it out.")
    schedule = dict(cron=cron, unit_dir=unit_dir, name=timer_name, ca_dir=ca_dir, passphrase_file=passphrase_file,
                    as_json=as_json, force=force)
    hooks = dict(exec_each=exec_each, exec_once=exec_once, exec_timeout=exec_timeout)
    if remove_timer and cron:
        return cli_fleet.refuse_crontab_removal(ca_dir)
    if remove_timer:
        return cli_fleet.timer(False, renew_argv=[], **schedule)
    said = _say_a_host_in_notation(pattern, ca_dir, kind) if pattern is not None else []  # and in --json's "notes"
    if install_timer:
        _refuse_a_timer_that_renews_everything(renew_all, expiring, days, kind)
        argv = timer_argv(expiring, renew_all, kind, pattern, rekey, key_type, days, p12_password_file,
                          include_expired=include_expired, **hooks)
        _refuse_days_none_may_have(days, kind, ca_dir, "nothing was installed")
        return cli_fleet.timer(True, renew_argv=argv, said=said, **schedule)
    if expiring is not None or renew_all:
        _refuse_days_none_may_have(days, kind, ca_dir, "nothing was renewed")
        if kind is None:  # (--kind server or peer: no certificate fits, said above)
            _refuse_longer_than_servers(days, kind, "this run", "to renew client certificates only; nothing was "
                                                                "renewed.")
        from certkit.fleet import Selection

        return cli_fleet.renew_in_bulk(
            Selection(expiring, kind, pattern, include_expired), rekey=rekey, key_type=key_type, days=days,
            p12_password=_p12_password_if_any(p12_password_file, bulk=True), ca_dir=ca_dir,
            passphrase_file=passphrase_file, said=said, as_json=as_json, **hooks)
    if certificate is None:
        raise click.UsageError("Say which certificate to renew (a serial, a name or its folder), or renew every one "
                               "that is due with --expiring PERIOD or --all.")
    if out is not None and out_as_typed() == "-":
        raise click.UsageError("--out - means standard output, where a bundle folder cannot go; choose a folder.")
    _renew_one(certificate, rekey=rekey, key_type=key_type, days=days, out=out, force=force,
               p12_password_file=p12_password_file, ca_dir=ca_dir, passphrase_file=passphrase_file, as_json=as_json,
               **hooks)


def _say_a_host_in_notation(pattern: str, ca_dir: Path | None, kind: str | None = None) -> list[str]:
    """A --name that matches no certificate (a typo; or holding a host that does in a URL's, a port's or brackets'
    notation: etcd-1.cluster.internal:2380): said, where a timer that renews nothing would say nothing, every day."""
    from certkit.cli.common import warn
    from certkit.lifecycle import name_glob_hint
    from certkit.store import CADirectory
    from certkit.text import shown

    inventory = CADirectory(ca_dir).open().inventory
    said = []  # what is warned of, for --json's "notes" too
    if (hint := name_glob_hint(inventory, pattern)) is not None:
        said.append(f"--name '{shown(pattern)}' matches no certificate: {hint}")
    elif not inventory.query(name=pattern, limit=1, damaged=[]):  # a typo: a timer would renew nothing, silently
        said.append(f"--name '{shown(pattern)}' matches no certificate of this CA yet ('certkit list' shows them; a "
                    "glob such as '*.example.com' matches several), so nothing is renewed by it.")
    elif kind and not inventory.query(name=pattern, kind=kind, limit=1, damaged=[]):  # --kind client --name 'web*'
        other = sorted({row["kind"] for row in inventory.query(name=pattern, damaged=[])} & set(LEAF_KINDS))
        only = f", only {' and '.join(other)} certificates ('certkit list --name' shows them)" if other else ""
        said.append(f"--name '{shown(pattern)}' matches no {kind} certificate of this CA yet{only}, so nothing is "
                    f"renewed by --kind {kind} with it.")
    for note in said:
        warn(note)
    return said


def _refuse_mixed_options(certificate, out, force, rekey, key_type, expiring, renew_all, kind, pattern, install_timer,
                          remove_timer, cron, unit_dir, timer_name, include_expired) -> None:
    """The usage mistakes: options of one way (one certificate, bulk, the timer) given with another."""
    bulk = expiring is not None or renew_all
    if install_timer and remove_timer:
        raise click.UsageError("--install-timer and --remove-timer: choose one.")
    if not (install_timer or remove_timer) and (cron or unit_dir is not None or timer_name != "certkit-renew"):
        raise click.UsageError("--cron, --unit-dir and --timer-name apply with --install-timer or --remove-timer.")
    if cron and (unit_dir is not None or timer_name != "certkit-renew" or force):
        raise click.UsageError("--cron is about a crontab line, not systemd units: leave out --unit-dir, --timer-name "
                               "and --force (or leave out --cron, for systemd units).")
    if expiring is not None and renew_all:
        raise click.UsageError("--expiring and --all: choose one (--all renews every valid certificate).")
    if key_type and not rekey:
        raise click.UsageError("--key-type applies to a new key: add --rekey.")
    if (bulk or install_timer or remove_timer) and (certificate or out is not None or (force and not install_timer)):
        raise click.UsageError("A certificate, --out and --force belong to a single renewal; bulk renewal and the "
                               "timer renew every due certificate in its own folder.")
    if remove_timer and (bulk or kind or pattern or rekey):
        raise click.UsageError("--remove-timer removes the timer, whatever it renews: leave out --expiring, --all, "
                               "--kind, --name and --rekey.")
    if remove_timer and include_expired:
        raise click.UsageError("--remove-timer removes the timer, whatever it renews: leave out --include-expired.")
    if not (bulk or install_timer) and (kind or pattern or include_expired):
        raise click.UsageError("--kind, --name and --include-expired choose certificates for bulk renewal: add "
                               "--expiring PERIOD or --all.")


def _given(name: str) -> bool:
    """Whether the option ``name`` was given (on the command line or in the environment), not defaulted."""
    from click.core import ParameterSource

    return click.get_current_context().get_parameter_source(name) not in (None, ParameterSource.DEFAULT)


def _refuse_a_timer_that_renews_everything(renew_all: bool, expiring, days: int | None, kind) -> None:
    """A daily timer renews what is due: ``--all`` (or successors that live no longer than the window) would
    renew every selected certificate every day, forever: new certificates, hooks and reloads each night. Nor
    a --days no server may have: every run would fail each due server and peer."""
    import datetime as dt

    from certkit.fleet.plan import period_words

    _refuse_longer_than_servers(days, kind, "every run", "for a timer of client certificates only.")
    if renew_all:
        raise click.UsageError("A timer runs every day, and --all would renew every certificate every day: give "
                               "--expiring PERIOD (the default, 30d, renews each one 30 days before it expires).")
    window = expiring or dt.timedelta(days=30)
    if days is not None and dt.timedelta(days=days) <= window + dt.timedelta(days=1):  # due again by the next run
        raise click.UsageError(f"--days {days} gives the renewed certificates a life no more than a day longer than "
                               f"the renewal window of {period_words(window)}, so (almost) every day's run would "
                               "renew them again: give a longer --days or a shorter --expiring.")


def _refuse_longer_than_servers(days: int | None, kind: str | None, runs: str, end: str) -> None:
    """A --days longer than a server or peer may live, for a timer or a bulk renewal not of --kind client: the
    same command line gets the same answer whatever is due today (each due server would fail)."""
    from certkit.profiles import PROFILES

    if days is not None and days > (most := PROFILES["server"].max_days) and kind != "client":
        raise click.UsageError(f"--days {days} is longer than a server or peer certificate may live ({most} days), "
                               f"so {runs} would fail each due one: give --days {most} or less, or --kind client {end}")


def _refuse_days_none_may_have(days: int | None, kind: str | None, ca_dir: Path | None, done: str) -> None:
    """A bulk renewal's or a timer's --days that no certificate it selects may have (longer than a server may live,
    with --kind server; past the CA's expiry): one usage error before anything, not a failure per certificate."""
    if days is None:
        return
    from certkit.errors import InvalidLifetime
    from certkit.store import CADirectory
    from certkit.validity import check_days_for_kinds

    try:
        check_days_for_kinds(days, [kind] if kind else LEAF_KINDS, CADirectory(ca_dir).open().cert)
    except InvalidLifetime as exc:
        raise click.UsageError(f"--days {days} fits no certificate this renewal selects, so each would fail: "
                               f"{str(exc)[:1].lower()}{str(exc)[1:]}; "
                               f"{done}.") from None


def _refuse_with_remove_timer(**given) -> None:
    """--remove-timer takes only where the units are (--unit-dir, --timer-name, --ca-dir): options of
    what a timer runs would be silently ignored."""

    names = {"exec_each": "--exec", "exec_once": "--exec-once", "days": "--days", "passphrase_file":
             "--passphrase-file", "p12_password_file": "--p12-password-file"}
    ignored = [names[k] for k, v in given.items() if k in names and v is not None]
    if _given("exec_timeout"):
        ignored.append("--exec-timeout")
    if ignored:
        raise click.UsageError(f"--remove-timer removes the timer, whatever it runs: it takes only --unit-dir, "
                               f"--timer-name and --ca-dir (or --cron); leave out {', '.join(ignored)}.")


# --- one certificate ----------------------------------------------------------------------
def _renew_one(certificate: str, *, rekey: bool, key_type: str | None, days: int | None, out: Path | None,
               force: bool, p12_password_file: Path | None, exec_each: str | None, exec_once: str | None,
               exec_timeout: int, ca_dir: Path | None, passphrase_file: Path | None, as_json: bool) -> None:
    """Renew ``certificate`` (every refusal before the passphrase is asked for), say what was done,
    then run its hooks; exit 1 if a hook failed (the renewed bundle stays)."""
    from certkit.errors import CannotRenew, CertkitError
    from certkit.files import broken_link
    from certkit.renewal import plan_renewal
    from certkit.renewal import renew as renew_planned
    from certkit.store import CADirectory

    if (broken := broken_link(certificate)) is not None:  # a link of that name: a path that leads nowhere
        raise CertkitError(f"{broken} Give the bundle folder, its cert.pem, the serial or the name.")
    ca = CADirectory(ca_dir).open()
    p12_password = _p12_password_if_any(p12_password_file)
    try:
        planned = plan_renewal(ca, certificate, rekey=rekey, key_type=key_type, days=days, out=out, force=force,
                               p12_password=p12_password)  # every refusal before the passphrase is asked for
    except CannotRenew as exc:
        if "cannot be renewed in place" in str(exc):  # the command line's way to choose one
            raise click.ClickException(f"{str(exc).rstrip('.')} with --out FOLDER.") from None
        raise
    from certkit.cli.arguments import refuse_inputs_in_folder
    from certkit.cli.issue import warn_of_purpose

    refuse_inputs_in_folder(planned.target.given)  # its password or passphrase file kept in the folder
    # a renewed peer certificate is a new one with both purposes
    asked = warn_of_purpose(planned.request, ca=ca, passphrase_file=passphrase_file)
    if p12_password_file is not None and not planned.target.p12:  # asked for, but there was none to refresh
        from certkit.text import shown

        planned.notes.append(f"no bundle.p12 written: the bundle had none to refresh; certkit export-p12 "
                             f"{shown(planned.target.given)} makes one")
    unlock(ca, passphrase_file)
    unmarked = None
    try:
        result = renew_planned(ca, planned)
    except CertkitError as exc:  # the bundle in place, the inventory gone since: said, and its hooks run first
        if (result := getattr(exc, "certkit_renewal", None)) is None:
            raise
        unmarked = exc
    warn_of_purpose(planned.request, told=asked)
    data, lines = _summary(result, rekey, key_type)
    failures, stopped = _single_hooks(ca, result, exec_each, exec_once, exec_timeout, data, lines) \
        if exec_each or exec_once else ([], None)
    data["ok"] = not failures and stopped is None and unmarked is None  # what the exit status says, as bulk has it
    emit(as_json, data, "\n".join(lines))
    if stopped is not None:  # the renewal was reported above; the exit status says a stop came
        import sys

        click.echo("Error: interrupted while a hook ran; the renewed bundle stays in place.", err=True)
        sys.exit(128 + stopped)  # 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP
    if unmarked is not None:  # the report above is the one JSON object: the error is its Error: line
        raise Failed(cli_message(unmarked))
    if failures:
        raise Failed("; ".join(failures) + ".")


def _summary(result, rekey: bool, key_type: str | None) -> tuple[dict, list[str]]:
    """What a single renewal did: the JSON object and the lines for people."""
    from cryptography.hazmat.primitives import hashes

    from certkit.cli.issue import PEER_WARNING
    from certkit.keys import key_type_of
    from certkit.text import shown

    issued = result.issued
    data = {
        "renewed_from": result.old_serial, "serial": issued.serial_hex, "old_serial": result.old_serial,
        "new_serial": issued.serial_hex, "kind": issued.kind, "subject": issued.cert.subject.rfc4514_string(),
        "names": san_entries(issued.cert), "not_before": iso(issued.cert.not_valid_before_utc),
        "not_after": iso(issued.not_after), "issuer": issued.cert.issuer.rfc4514_string(),
        "fingerprint_sha256": issued.cert.fingerprint(hashes.SHA256()).hex(), "rekeyed": rekey,
        "folder": str(result.folder),
        "files": {p.name: str(p) for p in result.files},
        "notes": [PEER_WARNING] * (issued.kind == "peer") + result.notes,  # warned of, as bulk's "notes" have it
    }
    lines = [
        f"Renewed {issued.kind} certificate {result.old_serial}",
        f"  new serial  {issued.serial_hex}",
        f"  subject     {shown(data['subject']) or '(empty)'}",
        f"  names       {', '.join(shown(n) for n in data['names']) or '(none)'}",
        f"  expires     {when(issued.not_after)}",
        f"  key         {'new (' + key_type_of(issued.cert.public_key()) + ')' if rekey else 'kept'}",
        f"  folder      {shown(result.folder)}  ({', '.join(p.name for p in result.files)})",
    ]
    lines += [f"  note        {shown(n)}" for n in result.notes]
    return data, lines


def _single_hooks(ca, result, exec_each: str | None, exec_once: str | None, timeout: int, data: dict,
                  lines: list[str]) -> tuple[list[str], int | None]:
    """Run the hooks of a single renewal; add what they did to ``data`` and ``lines``; return the
    failures, and the stop signal (2, 15) that interrupted a hook (the hooks after it do not run)."""
    import contextlib

    from certkit.cli.fleet import show_hook_output
    from certkit.fleet import Outcome, ca_environment, hook_environment
    from certkit.fleet.hooks import once_environment, run_hook_until_stopped
    from certkit.inventory.rows import subject_common_names
    from certkit.text import shown

    issued = result.issued
    outcome = Outcome(result.old_serial, "renewed", absolute(result.folder), issued.kind,
                      [i.value for i in issued.identities] or subject_common_names(data["subject"]),
                      new_serial=issued.serial_hex, san=data["names"],
                      not_after=issued.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"))
    failures = []
    ca_env = ca_environment(ca)
    for option, command, env in (("--exec", exec_each, ca_env | hook_environment(outcome)),
                                 ("--exec-once", exec_once, ca_env)):
        if not command:
            continue
        with once_environment([outcome.folder]) if option == "--exec-once" else contextlib.nullcontext({}) as once:
            run, stopped = run_hook_until_stopped(command, env | once, timeout=timeout)
        show_hook_output(run, outcome if option == "--exec" else None)
        data[option.strip("-").replace("-", "_")] = run.as_dict()
        lines.append(f"  {option:<11} {shown(run.describe())}")
        if stopped is not None:
            return failures, stopped
        if not run.ok:
            failures.append(f"the {option} hook failed ({run.describe()}); the renewed bundle stays in place")
    return failures, None


def _p12_password_if_any(path: Path | None, *, bulk: bool = False):
    """The PKCS#12 password, when one is at hand (a file or the environment): renew then writes a
    fresh bundle.p12 instead of removing the stale one. Never prompts. In a ``bulk`` renewal (what a timer
    runs), a file the rule of a new secret refuses fails only the bundles that hold a bundle.p12
    (:class:`certkit.pkcs12.RefusedPassword`): a timer installed before the rule renews the others."""
    import os

    from certkit.cli.common import read_secret, read_secret_file
    from certkit.constants import ENV_P12_PASSWORD
    from certkit.pkcs12 import RefusedPassword, check_password

    if path is not None:
        from certkit.errors import CertkitError

        try:
            return check_password(read_secret_file(path, new=True))
        except (click.ClickException, CertkitError) as exc:
            if not bulk:
                raise
            read_secret_file(path)  # unreadable, empty, readable by others: refused, as before the rule
            return RefusedPassword(exc.message if isinstance(exc, click.ClickException) else str(exc))
    if ENV_P12_PASSWORD not in os.environ:
        return None
    # the rules of a new password, as issue-* and export-p12 read it: set but empty, several lines, blank
    return check_password(read_secret(None, ENV_P12_PASSWORD, "", confirm=True))
