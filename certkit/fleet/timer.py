"""Renewal that runs itself: bulk renewal, deploy hooks, and the daily timer (``certkit renew --expiring``).

:func:`plan_fleet` picks the certificates to renew (valid, issued by this CA,
not renewed yet, expiring within a period or all of them, by kind and name)
and plans each one with :func:`certkit.lifecycle.plan_renewal`, so every refusal
(a folder whose key does not match, a certificate revoked meanwhile) is known
before the CA key is unlocked; a certificate whose bundle folder is unknown
(never written to a folder, or moved) is skipped, not renewed elsewhere.
:func:`renew_fleet` then renews them one by one, in place, through the issuing
pipeline (:func:`certkit.lifecycle.renew`), and after each renewed bundle runs
the per-bundle hook (certbot's deploy-hook convention: see :data:`HOOK_ENV`),
and once at the end the ``exec_once`` hook if anything was renewed (reload
nginx once, not 500 times). A failed hook is reported and never undoes a
written bundle. A second run renews nothing (the first one's successors are
not expiring), so it is safe to run from cron every hour.

Hooks run through ``/bin/sh -c`` with the environment of certkit minus its
secrets (passphrases, passwords, PINs); what they print is kept (the last
64 KiB) and handed to the caller, which shows it on standard error, so that
``--json`` keeps standard output to itself.

The schedule: :func:`install_timer` writes a systemd timer and service (the
user's, or as root the system's) that run the bulk renewal daily at a random
time of day; :func:`crontab_line` is the same for machines without systemd.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.constants import LEAF_KINDS
from certkit.errors import CertkitError
from certkit.text import shown

if TYPE_CHECKING:
    from certkit.ca import CA
    from certkit.inventory import Inventory

# What a per-bundle hook finds in its environment. RENEWED_LINEAGE and RENEWED_DOMAINS are
# certbot's deploy-hook variables (so hooks written for certbot work unchanged); the rest are certkit's.
HOOK_ENV = {
    "RENEWED_LINEAGE": "the bundle folder (absolute), as certbot's deploy hooks get it",
    "RENEWED_DOMAINS": "the certificate's names, space-separated (DNS names, IP addresses, emails, URIs; a "
                       "client certificate without any: its common name)",
    "CERTKIT_FOLDER": "the bundle folder (absolute)",
    "CERTKIT_SERIAL": "the new certificate's serial",
    "CERTKIT_OLD_SERIAL": "the serial of the certificate it renews",
    "CERTKIT_KIND": "server, client or peer",
    "CERTKIT_NOT_AFTER": "the new certificate's expiry (ISO 8601, UTC)",
}
# What the once-at-the-end hook finds.
ONCE_ENV = {
    "CERTKIT_RENEWED": "how many bundles were renewed",
    "CERTKIT_FOLDERS": "their folders, one per line",
}
DEFAULT_HOOK_TIMEOUT = 600  # seconds: a reload takes a moment; a hung hook must not hold the timer forever
HOOK_OUTPUT = 64 << 10  # bytes of a hook's output kept: its last words, not a runaway log
_SECRET_ENV = re.compile(r"CERTKIT_\w*(PASSPHRASE|PASSWORD|PIN)\w*")
_PAGE = 500  # inventory rows read at a time: memory stays flat for any fleet


@dataclass(frozen=True)
class Selection:
    """Which certificates a bulk renewal takes: valid ones, not renewed yet, expiring within
    ``expiring`` (or all of them), optionally of one ``kind`` and matching the glob ``name``."""

    expiring: dt.timedelta | None = None
    kind: str | None = None
    name: str | None = None

    def describe(self, *, every: bool = True) -> str:
        """``certificates expiring within 30 days``, ``all valid client certificates`` (without
        ``every``: ``valid client certificates``)."""
        what = f"{self.kind} certificates" if self.kind else "certificates"
        if self.name:
            what += f" matching '{shown(self.name)}'"
        if self.expiring is None:
            return f"{'all ' if every else ''}valid {what}"
        return f"{what} expiring within {_period(self.expiring)}"


def _period(period: dt.timedelta) -> str:
    days = period / dt.timedelta(days=1)
    if days >= 1 and abs(days - round(days)) < 0.01:  # a lifetime counted inclusively ends a second early
        return f"{round(days)} day{'s' if round(days) != 1 else ''}"
    hours = round(period / dt.timedelta(hours=1))
    return f"{hours} hour{'s' if hours != 1 else ''}"


@dataclass
class HookRun:
    """One run of a hook: the command, its exit status (None if it could not run or timed out),
    and what it printed (standard output and error together, the last :data:`HOOK_OUTPUT` bytes)."""

    command: str
    exit: int | None
    error: str | None = None
    output: str = ""

    @property
    def ok(self) -> bool:
        return self.exit == 0

    def as_dict(self) -> dict:
        return {"command": self.command, "exit": self.exit, "ok": self.ok, "error": self.error,
                "output": self.output}

    def describe(self) -> str:
        return "exit 0" if self.ok else self.error or f"exit {self.exit}"


@dataclass
class Outcome:
    """What became of one selected certificate: renewed, failed (and at which stage) or skipped."""

    serial: str
    outcome: str  # renewed | failed | skipped
    folder: str | None = None
    kind: str | None = None
    names: list[str] = field(default_factory=list)
    new_serial: str | None = None
    not_after: str | None = None
    stage: str | None = None  # plan | renew: where a failure happened
    error: str | None = None
    hook: HookRun | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome != "failed" and (self.hook is None or self.hook.ok)

    def as_dict(self) -> dict:
        data = {"serial": self.serial, "outcome": self.outcome, "folder": self.folder, "kind": self.kind,
                "names": self.names}
        if self.outcome == "renewed":
            data |= {"new_serial": self.new_serial, "not_after": self.not_after, "notes": self.notes,
                     "hook": self.hook.as_dict() if self.hook else None}
        elif self.outcome == "failed":
            data |= {"stage": self.stage, "error": self.error}
        else:
            data["reason"] = self.error
        return data


@dataclass
class FleetPlan:
    """The certificates a bulk renewal will renew (serials, in expiry order), and what it will not."""

    selection: Selection
    todo: list[str] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)  # refused or skipped while planning
    options: dict = field(default_factory=dict)  # rekey, key_type, days, p12_password for plan_renewal


@dataclass
class FleetResult:
    plan: FleetPlan
    outcomes: list[Outcome] = field(default_factory=list)
    exec_once: HookRun | None = None
    stopped: int | None = None  # the signal that stopped the run before every planned renewal was tried

    @property
    def renewed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.outcome == "renewed"]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.outcome == "failed"]

    @property
    def skipped(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.outcome == "skipped"]

    @property
    def hook_failures(self) -> list[Outcome]:
        return [o for o in self.renewed if o.hook is not None and not o.hook.ok]

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes) and (self.exec_once is None or self.exec_once.ok) \
            and self.stopped is None


# --- choosing -----------------------------------------------------------------------------
def selected(inventory: "Inventory", selection: Selection, *, now: dt.datetime | None = None) -> Iterator[dict]:
    """The rows a bulk renewal considers, soonest expiry first, read a page at a time: valid
    leaves not renewed yet (nor being renewed), expiring by ``now + selection.expiring`` (expired
    ones included: they need it most). A run reads them all before it renews any, so it never
    meets its own successors."""
    from certkit.inventory.rows import iso, name_match

    now = now or dt.datetime.now(dt.UTC)
    where = [f"status = 'valid' AND kind IN ({', '.join(repr(k) for k in LEAF_KINDS)})",
             "NOT EXISTS (SELECT 1 FROM certificates AS r WHERE r.renewed_from = certificates.serial"
             " AND r.status IN ('valid', 'revoked', 'pending'))"]
    params: list = []
    if selection.kind:
        where.append("kind = ?")
        params.append(selection.kind)
    if selection.expiring is not None:
        where.append("not_after <= ?")
        params.append(iso(now + selection.expiring))
    pattern = selection.name.lower() if selection.name else None
    last: tuple[str, str] | None = None
    while True:
        page_where = list(where)
        page_params = list(params)
        if last is not None:
            page_where.append("(not_after > ? OR (not_after = ? AND serial > ?))")
            page_params += [last[0], last[0], last[1]]
        rows = inventory.rows(f"WHERE {' AND '.join(page_where)} ORDER BY not_after, serial LIMIT {_PAGE}",
                              page_params)
        for row in rows:
            if pattern is None or name_match(pattern, row["subject"], _names_json(row["names"])):
                yield row
        if len(rows) < _PAGE:
            return
        last = (rows[-1]["not_after"], rows[-1]["serial"])


def _names_json(names: list[str]) -> str:
    import json

    return json.dumps(names)


def plan_fleet(ca: "CA", selection: Selection, *, rekey: bool = False, key_type: str | None = None,
               days: int | None = None, p12_password: bytes | None = None,
               now: dt.datetime | None = None) -> FleetPlan:
    """Choose and plan every renewal, without the CA key: the certificates that will be renewed,
    those refused (with the reason) and those skipped (no bundle folder holds them)."""
    from certkit.lifecycle import holds, plan_renewal

    inventory = ca.require_inventory()
    now = now or dt.datetime.now(dt.UTC)
    plan = FleetPlan(selection, options=dict(rekey=rekey, key_type=key_type, days=days, p12_password=p12_password))
    for row in selected(inventory, selection, now=now):
        serial, folder = row["serial"], row.get("folder")
        names = _values(row)
        if row.get("sink") not in (None, "folder") or not folder or not holds(Path(folder), serial):
            reason = (f"it was delivered to {shown(folder or 'standard output')} ({row['sink']}), not into a "
                      "bundle folder, so it has no folder to renew in" if row.get("sink") not in (None, "folder")
                      else "no bundle folder is known to hold it (it was never written to one, or was moved)")
            plan.outcomes.append(Outcome(serial, "skipped", folder, row["kind"], names, error=reason))
            continue
        try:
            plan_renewal(ca, serial, **plan.options)
        except CertkitError as exc:
            plan.outcomes.append(Outcome(serial, "failed", folder, row["kind"], names, stage="plan", error=str(exc)))
            continue
        plan.todo.append(serial)
    return plan


def _values(row: dict) -> list[str]:
    values = [entry.split(":", 1)[1] for entry in row["names"] if ":" in entry and not entry.startswith("DirName:")]
    if not values:
        values = [part[3:] for part in row["subject"].split(",") if part.startswith("CN=")]
    return values


# --- renewing ---------------------------------------------------------------------------
def renew_fleet(ca: "CA", plan: FleetPlan, *, exec_each: str | None = None, exec_once: str | None = None,
                hook_timeout: float = DEFAULT_HOOK_TIMEOUT, progress: Callable[[int], None] | None = None,
                on_hook: Callable[[HookRun], None] | None = None) -> FleetResult:
    """Renew every planned certificate (the CA unlocked), each through the issuing pipeline, then
    its hook; ``exec_once`` at the end if anything was renewed, even when the run stops early
    (Ctrl-C, SIGTERM: ``stopped`` then holds the signal), so servers always pick up what was written.
    ``on_hook`` is called after each hook has run (to show what it printed)."""
    from certkit.errors import Terminated


    result = FleetResult(plan, outcomes=list(plan.outcomes))
    folders: list[str] = []
    try:
        for serial in plan.todo:
            try:
                outcome = renew_one(ca, serial, plan.options, window=plan.selection.expiring)
            except (KeyboardInterrupt, Terminated) as exc:  # the bundle being written was finished first
                if getattr(exc, "certkit_outcome", None) is not None:
                    result.outcomes.append(exc.certkit_outcome)
                    folders.append(exc.certkit_outcome.folder)
                raise
            result.outcomes.append(outcome)
            if outcome.outcome == "renewed":
                folders.append(outcome.folder)
                if exec_each:
                    outcome.hook = HookRun(exec_each, None, "interrupted")  # until it has run
                    outcome.hook = run_hook(exec_each, hook_environment(outcome), timeout=hook_timeout)
                    if on_hook is not None:
                        on_hook(outcome.hook)
            if progress is not None:
                progress(1)
    except KeyboardInterrupt:
        result.stopped = 2  # SIGINT: what was renewed is reported, then the exit status says so
    except Terminated:
        result.stopped = 15
    if exec_once and folders:
        result.exec_once = run_hook(exec_once, {"CERTKIT_RENEWED": str(len(folders)),
                                                "CERTKIT_FOLDERS": "\n".join(folders)}, timeout=hook_timeout)
        if on_hook is not None:
            on_hook(result.exec_once)
    return result


def renew_one(ca: "CA", serial: str, options: dict, *, window: dt.timedelta | None = None) -> Outcome:
    """Plan again (things may have changed since the fleet was planned) and renew in place.
    ``window``: the bulk renewal's ``expiring`` period, to warn when the successor is due at once.
    Interrupted right after the renewal was delivered, the exception carries its outcome
    (``certkit_outcome``)."""
    from certkit.errors import Terminated
    from certkit.lifecycle import plan_renewal, renew

    try:
        planned = plan_renewal(ca, serial, **options)
    except CertkitError as exc:
        row = ca.inventory.get(serial) or {}
        return Outcome(serial, "failed", row.get("folder"), row.get("kind"), stage="plan", error=str(exc))
    found = planned.found
    outcome = Outcome(serial, "failed", str(planned.target.folder), found.row["kind"], _values(found.row))
    try:
        renewal = renew(ca, planned)
    except CertkitError as exc:
        outcome.stage, outcome.error = "renew", str(exc)
        return outcome
    except (KeyboardInterrupt, Terminated) as exc:
        # A signal held off while the bundle was written lands right after it: say what was done.
        successors = ca.inventory.successors(serial)
        if successors:
            row = ca.inventory.get(successors[-1])
            outcome.outcome, outcome.new_serial, outcome.not_after = "renewed", row["serial"], row["not_after"]
            exc.certkit_outcome = outcome
        raise
    issued = renewal.issued
    outcome.outcome, outcome.new_serial = "renewed", issued.serial_hex
    outcome.not_after = issued.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    outcome.notes = list(renewal.notes)
    lifetime = issued.not_after - issued.cert.not_valid_before_utc
    if window is not None and lifetime <= window:
        outcome.notes.append(f"the new certificate lives {_period(lifetime)}, no longer than the {_period(window)} "
                             "renewal window, so every run will renew it again: renew it with a longer lifetime, or "
                             "choose a shorter window")
    return outcome


def hook_environment(outcome: Outcome) -> dict[str, str]:
    """The variables of :data:`HOOK_ENV` for one renewed bundle."""
    return {"RENEWED_LINEAGE": outcome.folder, "RENEWED_DOMAINS": " ".join(outcome.names),
            "CERTKIT_FOLDER": outcome.folder, "CERTKIT_SERIAL": outcome.new_serial,
            "CERTKIT_OLD_SERIAL": outcome.serial, "CERTKIT_KIND": outcome.kind or "",
            "CERTKIT_NOT_AFTER": outcome.not_after or ""}


def run_hook(command: str, extra_env: dict[str, str], *, timeout: float = DEFAULT_HOOK_TIMEOUT) -> HookRun:
    """Run ``command`` with ``/bin/sh -c``: certkit's environment without its secrets, plus
    ``extra_env``; what it prints is kept in the result. A hook still running after ``timeout``
    seconds is killed (with anything it started)."""
    import signal

    env = {k: v for k, v in os.environ.items() if not _SECRET_ENV.fullmatch(k)} | extra_env
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", command], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        return HookRun(command, None, f"could not run it: {exc.strerror or exc}")
    kept = bytearray()

    def read() -> None:  # in a thread: a hook that prints a lot never blocks on a full pipe
        while chunk := proc.stdout.read1(65536):
            kept.extend(chunk)
            del kept[:-HOOK_OUTPUT]

    import threading

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid, signal.SIGKILL)
        proc.wait()
        code = None
    except BaseException:  # Ctrl-C: the hook runs in its own session, so stop it too
        _kill_group(proc.pid, signal.SIGTERM)
        proc.wait()
        raise
    finally:
        reader.join(timeout=5)
        proc.stdout.close()
    output = kept.decode("utf-8", "replace")
    if code is None:
        return HookRun(command, None, f"still running after {timeout:g} s, so it was stopped", output)
    if code < 0:
        return HookRun(command, code, f"killed by signal {-code}", output)
    return HookRun(command, code, None if code == 0 else f"exit {code}", output)


def _kill_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class FleetLock:
    """One bulk renewal per CA directory at a time (an hourly cron job whose previous run is still
    going must not renew the same certificates twice): an exclusive ``flock`` on the directory,
    released when the process ends, however it ends."""

    path: Path
    fd: int | None = None

    def __enter__(self) -> "FleetLock":
        import fcntl

        self.fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise CertkitError(f"Another bulk renewal of the CA in {shown(self.path)} is running; this one did "
                               "nothing (the other renews what is due).") from None
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None


# --- the schedule -------------------------------------------------------------------------
UNIT_NAME = "certkit-renew"
_MARK = "# Written by certkit renew --install-timer; certkit renew --remove-timer removes it."
# The system unit folder, overridable so that tests (and image builders) never touch the real one.
ENV_SYSTEM_UNIT_DIR = "CERTKIT_SYSTEMD_SYSTEM_DIR"
# A random moment within this many seconds after midnight, chosen anew every day: a fleet of
# machines does not renew (nor reload its servers) all at the same second.
RANDOM_DELAY = 6 * 3600


def program() -> tuple[list[str], dict[str, str]]:
    """How a timer or cron runs this certkit: this interpreter with ``-m certkit``, and the
    PYTHONPATH that finds this copy when it is not installed where the interpreter looks."""
    import certkit

    argv = [sys.executable, "-m", "certkit"]
    home = str(Path(certkit.__file__).resolve().parent.parent)
    probe = subprocess.run([sys.executable, "-I", "-c", "import certkit, os; print(os.path.dirname("
                            "os.path.dirname(os.path.realpath(certkit.__file__))))"],
                           capture_output=True, text=True, env={"PATH": os.environ.get("PATH", "")})
    env = {} if probe.returncode == 0 and probe.stdout.strip() == home else {"PYTHONPATH": home}
    return argv, env


def systemd_running() -> bool:
    """Whether systemd manages this machine (sd_booted(3): /run/systemd/system exists)."""
    return os.path.isdir("/run/systemd/system")


def unit_dir(*, system: bool | None = None) -> Path:
    """Where the units go: the user's systemd folder, or as root (``system``) the system's."""
    if system is None:
        system = os.geteuid() == 0
    if system:
        return Path(os.environ.get(ENV_SYSTEM_UNIT_DIR) or "/etc/systemd/system")
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


def _check_args(argv: Sequence[str]) -> None:
    for arg in argv:
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in arg):
            raise CertkitError(f"'{shown(arg)}' holds a control character (a line break?); a timer or crontab "
                               "line cannot carry it. Put the command in a script and give its path.")


def systemd_quote(arg: str) -> str:
    """One ExecStart= argument: double-quoted, with systemd's specifiers (%) and variable
    expansion ($) escaped, so it reaches certkit exactly as given."""
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$") + '"'


def service_text(argv: Sequence[str], env: dict[str, str], description: str) -> str:
    _check_args([*argv, *env.values(), description])
    lines = [_MARK, "[Unit]", f"Description={description.replace('%', '%%')}", "", "[Service]", "Type=oneshot"]
    lines += [f"Environment={systemd_quote(f'{k}={v}')}" for k, v in env.items()]
    lines.append("ExecStart=" + " ".join(systemd_quote(a) for a in argv))
    return "\n".join(lines) + "\n"


def timer_text(description: str) -> str:
    _check_args([description])
    return "\n".join([
        _MARK, "[Unit]", f"Description={description.replace('%', '%%')}", "", "[Timer]",
        "OnCalendar=daily",
        f"RandomizedDelaySec={RANDOM_DELAY}",
        "Persistent=true",  # a machine that was off at the time renews when it comes back
        "", "[Install]", "WantedBy=timers.target",
    ]) + "\n"


@dataclass
class TimerChange:
    """What installing or removing the timer did: files written or removed, systemctl commands run
    (with their failures), and the commands still to run by hand."""

    files: list[Path] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    todo: list[str] = field(default_factory=list)
    system: bool = False


def _systemctl(system: bool) -> list[str]:
    return ["systemctl"] if system else ["systemctl", "--user"]


def install_timer(renew_argv: Sequence[str], *, description: str, directory: Path | None = None,
                  name: str = UNIT_NAME, manage: bool | None = None) -> TimerChange:
    """Write ``NAME.service`` (running ``renew_argv``, the arguments after ``certkit``) and
    ``NAME.timer`` into ``directory`` (default: :func:`unit_dir`), replacing only units certkit
    wrote; then, when systemd runs this machine and the default folder was used (``manage``),
    reload systemd and enable the timer."""
    from certkit.atomic import PUBLIC_MODE, replace_file

    _check_name(name)
    system = os.geteuid() == 0
    folder = directory or unit_dir(system=system)
    manage = (directory is None and systemd_running()) if manage is None else manage
    argv, env = program()
    service = service_text([*argv, *renew_argv], env, description)
    timer = timer_text(description)
    paths = [folder / f"{name}.service", folder / f"{name}.timer"]
    for path in paths:
        _check_ours(path)
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in zip(paths, (service, timer), strict=True):
        replace_file(path, text.encode(), PUBLIC_MODE)
    change = TimerChange(paths, system=system)
    commands = [[*_systemctl(system), "daemon-reload"], [*_systemctl(system), "enable", "--now", f"{name}.timer"]]
    _run_or_list(commands, manage, change)
    if not system:
        change.todo.append(f"loginctl enable-linger {_user()}  # so that it runs while you are logged out")
    return change


def remove_timer(*, directory: Path | None = None, name: str = UNIT_NAME, manage: bool | None = None) -> TimerChange:
    """Disable the timer (when systemd runs this machine and the default folder is used) and remove
    both units, if certkit wrote them. Removing what is not there changes nothing."""
    _check_name(name)
    system = os.geteuid() == 0
    folder = directory or unit_dir(system=system)
    manage = (directory is None and systemd_running()) if manage is None else manage
    paths = [p for p in (folder / f"{name}.timer", folder / f"{name}.service") if os.path.lexists(p)]
    for path in paths:
        _check_ours(path)
    change = TimerChange(system=system)
    if not paths:
        return change
    _run_or_list([[*_systemctl(system), "disable", "--now", f"{name}.timer"]], manage, change)
    for path in paths:
        os.unlink(path)
        change.files.append(path)
    _run_or_list([[*_systemctl(system), "daemon-reload"]], manage, change)
    return change


def _run_or_list(commands: list[list[str]], manage: bool, change: TimerChange) -> None:
    for command in commands:
        text = " ".join(shlex.quote(c) for c in command)
        if not manage:
            change.todo.append(text)
            continue
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            change.failed.append(f"{text}: {exc}")
            continue
        if proc.returncode == 0:
            change.ran.append(text)
        else:
            change.failed.append(f"{text}: {(proc.stderr or proc.stdout).strip().splitlines()[-1:] or ['failed']}")


def _check_name(name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,200}", name) or name.endswith((".timer", ".service")):
        raise CertkitError(f"'{shown(name)}' cannot name a systemd unit: use letters, digits, '-', '_' and '.', "
                           "without .timer or .service.")


def _check_ours(path: Path) -> None:
    """Replace or remove only a unit certkit wrote, never someone else's of the same name."""
    if not os.path.lexists(path):
        return
    if path.is_symlink() or not path.is_file():
        raise CertkitError(f"{shown(path)} is not a regular file (a link?); certkit leaves it alone.")
    with open(path, "rb") as f:
        head = f.read(len(_MARK) + 1)
    if not head.startswith(_MARK.encode()):
        raise CertkitError(f"{shown(path)} exists and was not written by certkit; it is left alone. Choose "
                           "another unit name.")


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        return "$USER"


def crontab_line(renew_argv: Sequence[str], *, minute: int | None = None, hour: int | None = None) -> str:
    """The crontab line that runs ``renew_argv`` daily at a random minute of a random night hour
    (chosen here: cron has no randomized delay). ``%`` is escaped: cron would end the command there."""
    import random

    argv, env = program()
    _check_args([*argv, *renew_argv, *env.values()])
    minute = random.randrange(60) if minute is None else minute
    hour = random.randrange(6) if hour is None else hour
    words = [f"{k}={shlex.quote(v)}" for k, v in env.items()] + [shlex.quote(a) for a in [*argv, *renew_argv]]
    return f"{minute} {hour} * * * " + " ".join(words).replace("%", "\\%")
