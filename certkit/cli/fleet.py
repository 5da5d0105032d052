"""``certkit renew``'s bulk mode (``--expiring``, ``--all``), its hooks, and ``--install-timer`` /
``--remove-timer``: take what :mod:`certkit.cli.renew` hands over, call :mod:`certkit.fleet`, print.

A bulk renewal is quiet when there is nothing to do (exit 0, no output, no
passphrase asked for), so cron can run it every hour; it prints one line per
renewed, refused or failed certificate otherwise, and exits 1 if anything
failed (a renewal, a hook). On a terminal it says what it is checking and
shows ``n/total`` and the rate while it renews.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from certkit.cli.common import EXIT_INTERRUPTED, Failed, emit, progress, unlock, warn
from certkit.cli.fleet_argv import _ca_arguments
from certkit.cli.fleet_idle import say_nothing_renewed, skipped_lines
from certkit.cli.fleet_notes import install_warnings
from certkit.paths import absolute
from certkit.text import shown, terminal_safe


# --- bulk renewal -----------------------------------------------------------------------
def renew_in_bulk(selection, *, rekey: bool, key_type: str | None, days: int | None, p12_password: bytes | None,
                  exec_each: str | None, exec_once: str | None, exec_timeout: int, ca_dir: Path | None,
                  passphrase_file: Path | None, as_json: bool, said: list[str] = ()) -> None:
    from certkit.fleet import FleetLock, plan_fleet, renew_fleet
    from certkit.store import CADirectory

    ca = CADirectory(ca_dir).open()
    interactive = sys.stderr.isatty() and not as_json
    with FleetLock(ca.store.path):
        if interactive:
            click.echo(f"Checking {terminal_safe(selection.describe())} before anything is renewed...", err=True)
        plan = plan_fleet(ca, selection, rekey=rekey, key_type=key_type, days=days, p12_password=p12_password)
        _warn_of_peers(plan)  # first, as issue-peer says it: before a passphrase prompt, hooks' output, the report
        if plan.todo:
            unlock(ca, passphrase_file)  # only when there is something to sign: cron needs no passphrase
        run = dict(exec_each=exec_each, exec_once=exec_once, hook_timeout=exec_timeout, on_hook=show_hook_output)
        if interactive and plan.todo:
            with progress(len(plan.todo), "Renewing", decimals=1) as advance:
                result = renew_fleet(ca, plan, progress=advance, **run)
        else:
            result = renew_fleet(ca, plan, **run)
    _report(result, ca, as_json, rekey, interactive=interactive, said=said)


def _warn_of_peers(plan) -> None:
    """The peer warning issue-peer and a batch's peer lines print every time they run, said once the plan knows
    how many of the certificates to renew are peer certificates, before any of them is renewed."""
    if peers := sum(plan.planned[serial].kind == "peer" for serial in plan.todo):
        warn(_peers_note(peers, "of the certificates to renew"))


def _peers_note(peers: int, among: str) -> str:
    """The peer warning for ``peers`` certificates ``among`` those of a bulk renewal."""
    from certkit.cli.issue import PEER_WARNING

    return (f"{peers} {among} {'is a peer' if peers == 1 else 'are peer'} certificate{'s' if peers != 1 else ''}; "
            + PEER_WARNING)


def _report(result, ca, as_json: bool, rekey: bool, *, interactive: bool = False, said: list[str] = ()) -> None:
    from certkit.fleet.hooks import folders_fit

    undone = result.undone  # planned, but a stop or a halt came first: listed, so a script knows they are due
    data = {
        "ca_dir": str(ca.store.path), "selection": result.plan.selection.describe(), "ok": result.ok,
        "renewed": len(result.renewed), "failed": len(result.failed), "skipped": len(result.skipped),
        "not_done": len(undone), "hook_failures": len(result.hook_failures), "rekeyed": rekey,
        "needs_attention": sum(o.needs_attention for o in result.skipped), "interrupted": result.stopped is not None,
        "halted": result.halted,
        "certificates": [o.as_dict() for o in result.outcomes + undone],
        "exec_once": result.exec_once.as_dict() if result.exec_once else None,
    }
    data["notes"] = notes = list(said)  # the warnings of the run as a whole, as a single renewal's notes (both: "ok")
    if peers := sum(o.kind == "peer" for o in result.renewed):  # warned of before the run (_warn_of_peers)
        notes.append(_peers_note(peers, "of the renewed certificates"))  # and here for a script reading the report
    late = []  # what only the end of the run knows
    if result.exec_once is not None and not folders_fit([o.folder for o in result.renewed]):
        late.append(f"the folders of the {len(result.renewed):,} renewed bundles are longer together than an "
                    "environment variable may be (128 KiB), so --exec-once ran without CERTKIT_FOLDERS: the file "
                    "$CERTKIT_FOLDERS_FILE names lists them, one per line")
    notes += late
    for note in late:
        warn(note)
    if as_json:
        emit(True, data, "")
    elif result.renewed or result.failed or result.stopped is not None or result.halted or \
            any(o.stage == "damaged" for o in result.skipped):
        click.echo(terminal_safe("\n".join(_lines(result, rekey))))
    elif interactive:  # a person watching: the "Checking ..." line gets its answer (cron's runs stay quiet)
        say_nothing_renewed(result)
    if any(o.needs_attention for o in result.skipped):  # even under cron, and beside --json's own count
        _warn_skipped([o for o in result.skipped if o.needs_attention])
    # nothing renewed, failed or skipped: quiet, as cron wants it
    if result.stopped is not None:
        sys.stderr.flush()
        left = len(result.untried)
        rest = (f"; {left} planned renewal{'s were' if left != 1 else ' was'} not done: run the same command again "
                "to renew the rest" if left else "; every planned renewal was done")
        click.echo(f"Error: interrupted after {len(result.renewed)} renewal"
                   f"{'s' if len(result.renewed) != 1 else ''}{rest}.", err=True)
        sys.exit(EXIT_INTERRUPTED if result.stopped == 2 else 128 + result.stopped)
    if result.halted:
        raise Failed(f"{result.halted.rstrip('.')}. The run stopped after {len(result.renewed)} renewal"
                     f"{'s' if len(result.renewed) != 1 else ''} (listed above); run the same command again once "
                     "the inventory can be reached, to renew the rest.")
    if not result.ok:
        problems = []
        if result.failed:
            problems.append(f"{len(result.failed)} of {len(result.renewed) + len(result.failed)} renewals failed")
        if damaged := sum(o.stage == "damaged" for o in result.skipped):
            problems.append(f"{damaged} due certificate{'s were' if damaged != 1 else ' was'} not renewed, "
                            f"{'their bundles' if damaged != 1 else 'its bundle'} damaged (the warnings above say how)")
        if result.hook_failures:
            problems.append(f"{len(result.hook_failures)} --exec hook{'s' if len(result.hook_failures) != 1 else ''} "
                            "failed (the renewed bundles stay in place)")
        if result.exec_once is not None and not result.exec_once.ok:
            problems.append("the --exec-once hook failed")
        raise Failed("; ".join(problems) + ".")


def _lines(result, rekey: bool) -> list[str]:
    renewed, failed = result.renewed, result.failed
    # of all that were due: a run stopped early (a signal, the inventory gone) says how many it did not reach
    due = len(result.plan.todo) + sum(o.outcome == "failed" or o.stage == "damaged" for o in result.plan.outcomes)
    of = max(due, len(renewed) + len(failed))
    lines = [f"Renewed {len(renewed)} of {of} {result.plan.selection.describe(every=False, one=of == 1)}"
             + (_new_keys(renewed) if rekey else "")]
    for o in renewed:
        lines.append(f"  renewed  {o.serial} -> {o.new_serial}  {shown(o.folder)}  (expires {o.not_after[:10]})")
        if o.hook is not None:
            lines.append(f"           --exec: {shown(o.hook.describe())}")
        lines += [f"           note: {shown(n)}" for n in o.notes]
    for o in failed:
        lines.append(f"  failed   {o.serial}  {shown(o.folder or '(no folder)')}: {shown(o.error)}")
    meanwhile = [o for o in result.skipped if o.stage in ("meanwhile", "damaged")]  # each said: in a known folder
    lines += [f"  skipped  {o.serial}  {shown(o.folder or '(no folder)')}: {shown(o.error)}" for o in meanwhile]
    lines += skipped_lines(result.skipped)  # the others, counted apart by why: moved, late, other host, elsewhere
    if result.exec_once is not None:
        lines.append(f"  --exec-once: {shown(result.exec_once.describe())}")
    return lines


# Where a certificate delivered into no bundle folder went that no bulk renewal, nor anything else, renews: an output
# file (--format jsonl, k8s, tar) or standard output. (An ACME client, a program or another host renews its own.)
def _warn_skipped(skipped) -> None:
    """The selected bundles that are no longer where they were written (moved, deleted), one warning
    each (at most 10 named): without a word they would expire under a quiet cron job. (A certificate
    delivered into an output file is skipped by design, quietly: bulk renewal never renews those.)"""
    from certkit.cli.common import warn
    from certkit.fleet.folders import DAMAGED_ADVICE, MOVED_ADVICE

    for o in skipped[:10]:
        if o.stage == "late":  # the warning says it all, the client's command with it
            warn(f"{o.error}.")
            continue
        advice = DAMAGED_ADVICE if o.stage == "damaged" else MOVED_ADVICE
        warn(f"{o.serial} ({', '.join(o.names) or o.kind}) was not renewed: {o.error}; {advice}.")
    if len(skipped) > 10:
        warn(f"{len(skipped) - 10} more were not renewed for the same reasons (--json lists them).")


def show_hook_output(run, outcome=None, renewed: int = 1) -> None:
    """What a hook printed, on standard error as it finishes (escaped: it is another program's text), under a
    heading that says whose it is and how it ended, its lines indented (certbot heads a hook's output "Output from
    deploy-hook command ...:"; in a bulk renewal's cron mail 500 outputs must be told apart):
    ``--exec for /srv/web (serial 1A2B...): exit 0``, or ``--exec-once (after 2 renewed bundles): exit 0``. A hook
    that printed nothing shows nothing. A standard error that cannot take it (its reader left: ``2>&1 | head``; a
    full disk) loses it, not the run: the renewals and hooks after it, ``--exec-once`` among them, go on
    (``--json`` keeps what each hook printed)."""
    if run.output:
        import sys

        # on a terminal, the progress bar's line is cleared first: the output starts a line of its own
        clear = "\r\x1b[K" if sys.stderr.isatty() else ""
        if outcome is not None:
            whose = f"--exec for {shown(outcome.folder)} (serial {outcome.new_serial})"
        else:
            whose = f"--exec-once (after {renewed} renewed bundle{'s' if renewed != 1 else ''})"
        body = "\n".join("  " + line for line in terminal_safe(run.output.rstrip("\n")).split("\n"))
        try:
            click.echo(f"{clear}{whose}: {shown(run.describe())}\n{body}", err=True)
        except OSError:
            pass


# --- the schedule -----------------------------------------------------------------------
def timer(install: bool, *, cron: bool, unit_dir: Path | None, name: str, renew_argv: list[str],
          ca_dir: Path | None, passphrase_file: Path | None, as_json: bool, force: bool = False,
          said: list[str] = ()) -> None:
    from certkit import fleet

    if unit_dir is not None:  # an output like any other: never a CA directory, nor a folder others control
        from certkit.bundle import check_folder_owner
        from certkit.paths import check_output, refuse_controlled_above
        from certkit.store import resolve_ca_dir

        check_output(unit_dir, [resolve_ca_dir(ca_dir, strict=False)], what="--unit-dir folder")
        refuse_controlled_above(unit_dir, "--unit-dir folder")  # a new one too: its owner could swap it whole
        if unit_dir.is_dir():
            check_folder_owner(unit_dir)
    if not install:  # with a CA directory (--ca-dir, $CERTKIT_CA_DIR): only the timer that renews it
        change = fleet.remove_timer(directory=unit_dir, name=name, ca_dir=ca_dir or None)
        data = {"removed": [str(p) for p in change.files], "ran": change.ran, "failed": change.failed,
                "todo": change.todo}
        if not change.files:  # the same keys as a removal: a script reads "ok" either way
            cron = "" if unit_dir is not None or fleet.systemd_running() else " (a crontab line: crontab -e)"
            data["ok"], data["notes"] = True, change.notes
            emit(as_json, data, f"No {name} timer to remove in {shown(unit_dir or fleet.unit_dir())}{cron}.")
            return
        lines = [f"Removed the {name} timer:"] + [f"  removed  {shown(p)}" for p in change.files]
        _timer_tail(change, lines)
        _emit_timer(as_json, data, lines, change, "systemd did not reload its units")
        return
    no_systemd = not cron and unit_dir is None and not fleet.systemd_running()  # a crontab line instead
    problem = fleet.schedule_problem(renew_argv, cron=cron or no_systemd)
    if problem:  # before the CA is opened: a certificate could expire between two runs
        raise click.UsageError(problem)
    selection = _selection_words(renew_argv)
    renew_argv = renew_argv + _ca_arguments(ca_dir, passphrase_file)
    delivered: list[dict] = []
    rows = _timer_rows(ca_dir, renew_argv, delivered)
    warned = [*said, *install_warnings(renew_argv, rows, delivered)]  # said now, and in --json's "notes"
    description = f"certkit: renew certificates ({selection})"
    if cron or no_systemd:
        line = fleet.crontab_line(renew_argv)
        if as_json:
            emit(True, {"crontab": line, "systemd": False, "ok": True, "notes": warned}, "")
            return
        why = "systemd does not run this machine, so no timer was written. " if no_systemd else ""
        again = shlex.join(["certkit", *renew_argv, "--install-timer", "--cron"])  # this command's own options
        click.echo(f"{why}Add this line to your crontab (crontab -e), or pipe it: "
                   f"(crontab -l; {terminal_safe(again)}) | crontab -", err=True)
        click.echo(line)
        return
    change = fleet.install_timer(renew_argv, description=description, directory=unit_dir, name=name, force=force)
    data = {"files": [str(p) for p in change.files], "system": change.system, "ran": change.ran,
            "failed": change.failed, "todo": change.todo, "command": renew_argv,
            "randomized_delay_seconds": fleet.RANDOM_DELAY, "changed": change.changed != "unchanged",
            "change": change.changed}
    lines = [_installed(change, name),
             f"  service  {shown(change.files[0])}",
             f"           runs: certkit {shown(shlex.join(renew_argv))}",
             f"  timer    {shown(change.files[1])}",
             f"           daily, at a random time within {fleet.RANDOM_DELAY // 3600} hours after midnight"]
    _timer_tail(change, lines)
    _emit_timer(as_json, data, lines, change, "the units were written, but systemd did not enable the timer, so it "
                                              "does not run", warned)


def _installed(change, name: str) -> str:
    """The first line of what installing the timer says: how it changed what was there (nothing, if the same)."""
    units = f"({'system' if change.system else 'user'} units)"
    return {"written": f"Wrote the daily renewal timer {name} {units}:",
            "unchanged": f"The daily renewal timer {name} is installed already, the same: nothing changed {units}:",
            "updated": f"Updated the daily renewal timer {name} {units}: the same renewal and schedule; only its "
                       "environment lines (PATH, HOME) changed:",
            "replaced": f"Replaced the daily renewal timer {name} {units}, which ran another renewal or schedule "
                        "(--force):"}[change.changed]


def _emit_timer(as_json: bool, data: dict, lines: list[str], change, problem: str, warned=()) -> None:
    """Say what installing or removing the timer did; a systemctl command that failed is a failure (an
    ``Error:`` line, ``"ok": false``, exit 1), never a success a script would believe."""
    data["ok"], data["notes"] = not change.failed, [*warned, *change.notes]
    emit(as_json, data, "\n".join(lines))
    if change.failed:
        if not as_json:
            click.echo(f"Error: {problem}: {shown(change.failed[0])}; run the commands above under 'To finish, run' "
                       "(for a user without a session, 'loginctl enable-linger' first).", err=True)
        raise SystemExit(1)


def _new_keys(renewed) -> str:
    """--rekey's words: new keys, but for the bundles of CSRs, whose requesters hold their keys."""
    kept = sum(o.new_key is False for o in renewed)
    if kept and kept == len(renewed):  # no key was made
        return " (--rekey: no new key, each held by the CSR's requester)" if kept > 1 else \
            " (--rekey: no new key, held by the CSR's requester)"
    return " (new keys)" if not kept else f" (new keys; {kept} kept their key, held by the CSR's requester)"


def refuse_crontab_removal(ca_dir: Path | None) -> None:
    """``--remove-timer --cron``: certkit never edits a crontab; say which line to delete, and how."""
    from certkit import fleet
    from certkit.store import resolve_ca_dir

    argv, _env = fleet.program()
    ca = absolute(resolve_ca_dir(ca_dir, strict=False))
    raise click.ClickException(
        f"certkit does not edit crontabs, so nothing was removed: delete the line with 'crontab -e' (the one "
        f"--install-timer --cron printed: 'M H * * * PATH=... {shown(shlex.join([*argv, 'renew']))} ... --ca-dir "
        f"{shown(shlex.quote(ca))} ...').")


def _selection_words(renew_argv: list[str]) -> str:
    """What the timer renews, as its description says it: the selection's options and their values
    (``--expiring 30d --kind client --name 'db*'``), up to the first option that is not one."""
    chosen = {"--expiring": 1, "--all": 0, "--include-expired": 0, "--kind": 1, "--name": 1}
    words, rest = [], renew_argv[1:]
    while rest and rest[0] in chosen:
        count = chosen[rest[0]]
        words += rest[:1 + count]
        rest = rest[1 + count:]
    return shlex.join(words)


def _timer_tail(change, lines: list[str]) -> None:
    lines += [f"  ran      {shown(c)}" for c in change.ran]
    lines += [f"  failed   {shown(c)}" for c in change.failed] + [f"  note     {n}" for n in change.notes]
    if change.todo:  # units written as they were: their commands may have been run already
        lines.append("If not done yet, run:" if getattr(change, "changed", "") == "unchanged" else "To finish, run:")
        lines += [f"  {shown(c)}" for c in change.todo]


def _timer_rows(ca_dir: Path | None, renew_argv: list[str], delivered: list[dict] | None = None) -> list[dict]:
    """The certificates a run of the timer may renew, as far as installing can tell: valid, not renewed yet, not
    delivered into an output file, of its --kind and --name (due or not). Those of its selection delivered into an
    output file or to standard output (--format jsonl, k8s, tar), which no run renews, go to ``delivered``."""
    import json

    from certkit.constants import LEAF_KINDS
    from certkit.inventory.rows import name_match, name_patterns
    from certkit.store import CADirectory

    kind = renew_argv[renew_argv.index("--kind") + 1] if "--kind" in renew_argv else None
    name = name_patterns(renew_argv[renew_argv.index("--name") + 1]) if "--name" in renew_argv else None
    rows = CADirectory(ca_dir).open().require_inventory().rows(  # valid, not renewed yet: what a run may renew
        "WHERE status = 'valid' AND NOT EXISTS (SELECT 1 FROM certificates AS r WHERE r.renewed_from = "
        "certificates.serial AND r.status IN ('valid', 'revoked', 'pending'))" + (" AND kind = ?" if kind else ""),
        [kind] if kind else [], damaged=[])  # a damaged row fails its own renewal each night, not this install
    chosen = [row for row in rows if row["kind"] in LEAF_KINDS
              and (name is None or name_match(name, row["subject"], json.dumps(row["names"])))]
    if delivered is not None:
        # (not one that --force released from its file: it is in no file, and that command named it)
        delivered += [row for row in chosen if row.get("sink") == "stream" or (row.get("sink") == "file"
                                                                               and row.get("folder"))]
    return [row for row in chosen if row.get("sink") in (None, "folder")]
