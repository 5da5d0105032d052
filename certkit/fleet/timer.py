"""The schedule of bulk renewal: :func:`install_timer` writes a systemd timer and service (the
user's, or as root the system's) that run it daily at a random time of day, replacing only units
certkit wrote; :func:`remove_timer` takes them away (:mod:`certkit.fleet.crontab` is the same for machines without
systemd, :mod:`certkit.fleet.schedule` when they run). Every argument is quoted so that it reaches certkit
exactly as given."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from certkit.errors import CertkitError
from certkit.fleet.schedule import CALENDAR, RANDOM_DELAY, _check_window
from certkit.fleet.timer_env import (  # noqa: F401 (the environment a timer runs with: importable from here too)
    CARRIED_ENVIRONMENT,
    CARRIED_PATHS,
    _probe,
    check_environment,
    cron_path,
    program,
)
from certkit.fleet.timer_files import how_changed, remove_units, whole_pair
from certkit.paths import absolute
from certkit.text import is_utf8, shown

UNIT_NAME = "certkit-renew"
_MARK = "# Written by certkit renew --install-timer; certkit renew --remove-timer removes it."
# The system unit folder, overridable so that tests (and image builders) never touch the real one.
ENV_SYSTEM_UNIT_DIR = "CERTKIT_SYSTEMD_SYSTEM_DIR"


def systemd_running() -> bool:
    """Whether systemd manages this machine (sd_booted(3): /run/systemd/system exists)."""
    return os.path.isdir("/run/systemd/system")


def unit_dir(*, system: bool | None = None) -> Path:
    """Where the units go: the user's systemd folder, or as root (``system``) the system's."""
    if system is None:
        system = os.geteuid() == 0
    if system:
        return Path(os.environ.get(ENV_SYSTEM_UNIT_DIR) or "/etc/systemd/system")
    from certkit.files import home_folder

    xdg = os.environ.get("XDG_CONFIG_HOME", "")  # a relative one is ignored, as the XDG rules say
    config = xdg if os.path.isabs(xdg) else str(home_folder() / ".config")
    return Path(config) / "systemd" / "user"


# What to do about a value a timer cannot carry, by the option or variable that holds it (:func:`_check_args`).
_ADVICE = {"--exec": "put the command in a script and give its path", "--name": "give a glob without it ('?' "
           "matches any one character)", "$": "set it without one for this command", "": "give a path without it "
           "(rename the file or folder, or give a link to it from a path without one)"}


def _check_args(argv: Sequence[str], env: dict[str, str] | None = None) -> None:
    """Refuse what a unit or a crontab line cannot carry, naming the option (``--exec``, ``--passphrase-file``...) or
    the variable (``$PATH``) that holds it, and what to do."""
    held = [(argv[i - 1] if i and argv[i - 1].startswith("--") else "", v) for i, v in enumerate(argv)]
    for holder, value in held + [(f"${name}", value) for name, value in (env or {}).items()]:
        if not is_utf8(value) or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
            bad = "holds a control character (a line break?)" if is_utf8(value) else "is not UTF-8 text"
            advice = _ADVICE.get(holder.removesuffix("-once")) or _ADVICE[holder[:1] if holder[:1] == "$" else ""]
            raise CertkitError(f"{holder + ' ' if holder else ''}'{shown(value)}' {bad}; a timer or crontab line "
                               f"cannot carry it: {advice}.")


def systemd_quote(arg: str, *, command: bool = True) -> str:
    """One ExecStart= argument (``command``) or Environment= assignment: double-quoted, with
    systemd's specifiers (%) escaped, and in a command its variable expansion ($) too (in
    Environment= "$" has no special meaning: systemd.exec(5)), so it reaches certkit exactly as given."""
    quoted = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return '"' + (quoted.replace("$", "$$") if command else quoted) + '"'


# A system service starts once the network is up (systemd.special(7)): a run at boot (Persistent=true catches up a
# missed day then) would otherwise find a PostgreSQL inventory, or what a hook reaches, not there yet and fail that
# day. A user's systemd has no such target: a user unit goes without.
NETWORK = ("Wants=network-online.target", "After=network-online.target")


def service_text(argv: Sequence[str], env: dict[str, str], description: str, *, system: bool = False) -> str:
    _check_args(argv, env)
    _check_args([description])
    lines = [_MARK, "[Unit]", f"Description={description.replace('%', '%%')}", *(NETWORK if system else ()), "",
             "[Service]", "Type=oneshot"]
    lines += [f"Environment={systemd_quote(f'{k}={v}', command=False)}" for k, v in env.items()]
    lines.append("ExecStart=" + " ".join(systemd_quote(a) for a in argv))
    return "\n".join(lines) + "\n"


def timer_text(description: str) -> str:
    _check_args([description])
    return "\n".join([
        _MARK, "[Unit]", f"Description={description.replace('%', '%%')}", "", "[Timer]",
        f"OnCalendar={CALENDAR}",
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
    notes: list[str] = field(default_factory=list)  # drop-ins of other hands that systemd applies to the units
    changed: str = "written"  # installing: or unchanged, updated (its PATH, HOME), replaced (--force): how_changed


def _systemctl(system: bool) -> list[str]:
    return ["systemctl"] if system else ["systemctl", "--user"]


def install_timer(renew_argv: Sequence[str], *, description: str, directory: Path | None = None,
                  name: str = UNIT_NAME, manage: bool | None = None, force: bool = False) -> TimerChange:
    """Write ``NAME.service`` (running ``renew_argv``, the arguments after ``certkit``) and
    ``NAME.timer`` into ``directory`` (default: :func:`unit_dir`), replacing only units certkit
    wrote, and units that say something else only with ``force``; then, when systemd runs this
    machine and the default folder was used (``manage``), reload systemd and enable the timer."""
    from certkit.atomic import PUBLIC_MODE, folders_made, replace_file

    _check_window(renew_argv, cron=False)
    system, folder, manage = _where(directory, name, manage)
    argv, env = program()
    if system:  # systemd gives a system service no HOME (only with User=, systemd.exec(5)): hooks' ~ and $HOME need it
        import pwd

        env = {"HOME": pwd.getpwuid(os.geteuid()).pw_dir} | env
    check_environment(renew_argv, env)
    # this command's PATH, as the crontab line has it: systemd gives a service only its own default
    # (/usr/local/bin:/usr/bin:/bin and the sbin folders), where a hook's certkit or tools may not be
    service = service_text([*argv, *renew_argv], cron_path() | env, description, system=system)
    timer = timer_text(description)
    paths = [folder / f"{name}.service", folder / f"{name}.timer"]
    searched = _searched(folder, system)  # before anything is written: a $HOME it needs and lacks is refused now
    olds = [_check_ours(path) for path in paths]
    for path, text, old in zip(paths, (service, timer), olds, strict=True):
        if _but_path(old) not in (None, _but_path(text)) and not force:  # PATH: the newest
            raise TimerExists(f"The {name} timer is already installed ({shown(path)}), with another renewal or "
                              "schedule; pass --force to replace it, or --timer-name for a second timer.")
    try:
        with folders_made(folder), whole_pair(paths) as placed:
            for path, text in zip(paths, (service, timer), strict=True):
                replace_file(path, text.encode(), PUBLIC_MODE)
                placed.append(path)
    except OSError as exc:  # said of the folder given, not of a temporary file in it
        from certkit.bundle import os_reason

        raise CertkitError(f"Cannot write the timer units to {shown(folder)}: {os_reason(exc)}; nothing there was "
                           "changed.") from None
    change = TimerChange(paths, system=system, changed=how_changed(olds, [service, timer], _but_path))
    commands = [[*_systemctl(system), "daemon-reload"], [*_systemctl(system), "enable", "--now", f"{name}.timer"]]
    if not searched:  # systemd does not look there: linked into its unit path first
        commands.insert(0, [*_systemctl(system), "link", *(absolute(p) for p in paths)])  # absolute only
    _run_or_list(commands, manage, change)
    change.notes = [f"systemd also applies {shown(p)} to this timer (a drop-in certkit did not write, as 'systemctl "
                    "edit' makes one): what it sets wins over the unit (an ExecStart= there runs instead of the "
                    "renewal said here); remove it if it was made for an earlier timer."
                    for p in drop_ins(name, system)]
    if not system:
        change.todo.append(f"loginctl enable-linger {_user()}  # so that it runs while you are logged out")
    return change


def remove_timer(*, directory: Path | None = None, name: str = UNIT_NAME, manage: bool | None = None,
                 ca_dir: str | Path | None = None) -> TimerChange:
    """Disable the timer (when systemd runs this machine and the default folder is used) and remove
    both units, if certkit wrote them. Removing what is not there changes nothing. With ``ca_dir``,
    only a timer that renews that CA (its service runs ``--ca-dir`` that folder) is removed; another
    CA's is refused (:class:`TimerExists`), as installing over it is."""
    system, folder, manage = _where(directory, name, manage)
    _refuse_in_the_way(folder)
    paths = [p for p in (folder / f"{name}.timer", folder / f"{name}.service") if os.path.lexists(p)]
    said = {path: _check_ours(path) for path in paths}
    if ca_dir is not None and paths:
        _check_renews(folder / f"{name}.service", said.get(folder / f"{name}.service"), ca_dir, name)
    change = TimerChange(system=system)
    if not paths:
        return change
    units = [f"{name}.timer", f"{name}.service"]
    if manage:
        _run_or_list([[*_systemctl(system), "disable", "--now", units[0]]], manage, change)
        if change.failed:  # removed now, the files would leave systemd running the timer from its memory
            raise CertkitError(f"{change.failed[0]}; nothing was removed (systemd would go on running the timer, "
                               f"its enable link left dangling): run '{change.todo[0]}' yourself, then this again.")
    elif links := _links_to(paths, [folder, *_usual_dirs(system)]):
        # removed first, the files would leave these links dangling (and `disable` would fail on them)
        raise CertkitError(f"systemd still links to the units ({', '.join(shown(p) for p in links[:3])}); run "
                           f"'{' '.join(_systemctl(system))} disable --now {' '.join(units)}' first, then this again.")
    failure = remove_units(paths, change.files)  # the .timer first: a lone .service is never started
    _run_or_list([[*_systemctl(system), "daemon-reload"]] if change.files or not failure else [], manage, change)
    if failure:
        raise CertkitError(failure + (" (systemd no longer runs the timer: it was disabled)." if manage else "."))
    change.notes = [f"left {shown(p)}, a drop-in certkit did not write: a timer installed later under this name "
                    "takes it; remove it if it was for this one." for p in drop_ins(name, system)]
    return change


def drop_ins(name: str, system: bool) -> list[Path]:
    """The drop-ins systemd applies to ``NAME.service`` or ``NAME.timer`` from its unit folders (not certkit's: such
    as ``systemctl edit`` writes, ``NAME.service.d/override.conf``), also those of a prefix of the name up to a
    ``-`` (``certkit-.service.d`` applies to every ``certkit-...`` service). A drop-in is looked for in the unit
    folders systemd searches, wherever the unit itself is (a linked one too)."""
    prefixes = [name] + [name[:i + 1] for i, ch in enumerate(name) if ch == "-"]
    runtime = [Path("/run/systemd/system")] if system else [Path(os.environ.get("XDG_RUNTIME_DIR") or "/nonexistent",
                                                                 "systemd/user"), Path("/usr/lib/systemd/user")]
    found: list[Path] = []
    for folder in dict.fromkeys(Path(os.path.realpath(d)) for d in [*_usual_dirs(system), *runtime]):
        for prefix in prefixes:
            for unit in ("service", "timer"):
                with contextlib.suppress(OSError):
                    found += sorted(p for p in (folder / f"{prefix}.{unit}.d").iterdir() if p.suffix == ".conf")
    return found


def _where(directory: Path | None, name: str, manage: bool | None) -> tuple[bool, Path, bool]:
    """For installing or removing the units: whether they are the system's (as root), their folder,
    and whether systemctl is run (systemd runs this machine and the default folder is used)."""
    _check_name(name)
    system = os.geteuid() == 0
    folder = directory or unit_dir(system=system)
    manage = (directory is None and systemd_running()) if manage is None else manage
    return system, folder, manage


def _refuse_in_the_way(folder: Path) -> None:
    """Refuse a unit folder that cannot be one (a file, a FIFO, /dev/null, a dangling link, or one below a file),
    as installing into it is refused: a mistyped --unit-dir, not "no timer to remove"."""
    from certkit.atomic import not_a_folder

    path = Path(folder)
    while not os.path.isdir(path) and path.parent != path:
        if os.path.lexists(path):
            raise CertkitError(f"Cannot remove the timer units from {shown(folder)}: {not_a_folder(path)}; nothing "
                               "there was changed.")
        path = path.parent


def _usual_dirs(system: bool) -> list[Path]:
    """The folders systemd (the system's, or the user's) loads units from: its default one here first."""
    usual = [unit_dir(system=system)]
    return usual + ([Path("/etc/systemd/system"), Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")]
                    if system else [Path.home() / ".config/systemd/user", Path("/etc/systemd/user")])


def _searched(folder: Path, system: bool) -> bool:
    """Whether systemd loads units from ``folder``: its default folder here, or one of the usual
    unit folders. ``systemctl disable`` undoes a ``link`` too."""
    return any(os.path.realpath(folder) == os.path.realpath(d) for d in _usual_dirs(system))


def _links_to(paths: list[Path], folders: list[Path]) -> list[Path]:
    """The symbolic links in ``folders`` (and their ``*.wants``/``*.requires`` folders) that lead to
    one of ``paths``: what ``systemctl link`` and ``enable`` made of them."""
    targets = {os.path.realpath(p) for p in paths}
    found: list[Path] = []
    for folder in dict.fromkeys(Path(os.path.realpath(f)) for f in folders):
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink() and entry.suffix in (".wants", ".requires", ".upholds"):
                with contextlib.suppress(OSError):
                    entries += list(entry.iterdir())
            elif entry.is_symlink() and os.path.realpath(entry) in targets:
                found.append(entry)
    return found


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
            change.todo.append(text)
            continue
        if proc.returncode == 0:
            change.ran.append(text)
        else:  # said with systemctl's last line, and left to run by hand
            said = ((proc.stderr or proc.stdout).strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            change.failed.append(f"{text}: {said}")
            change.todo.append(text)


_NAME_LONGEST = 201  # characters of a --timer-name: with .service, well within systemd's 255


def _check_name(name: str) -> None:
    """A --timer-name systemd takes; the refusal says what is wrong with this one (a name of the allowed
    characters can still be too long, or begin with one a name cannot begin with)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        why = "use letters, digits, '-', '_' and '.'"
    elif name.endswith((".timer", ".service")):
        why = "give it without .timer or .service (certkit adds them)"
    elif not name[:1].isalnum():
        why = f"begin it with a letter or a digit, not '{name[:1]}'"
    elif len(name) > _NAME_LONGEST:
        why = f"it is {len(name)} characters long; give at most {_NAME_LONGEST}"
    else:
        return
    raise CertkitError(f"'{shown(name)}' cannot name a systemd unit: {why}.")


def _check_ours(path: Path) -> str | None:
    """Replace or remove only a unit certkit wrote, never another's of its name; return its text (None: none)."""
    if not os.path.lexists(path):
        return None
    if path.is_symlink() or not path.is_file():
        from certkit.vocabulary import file_kind_text

        raise CertkitError(f"{shown(path)} is {file_kind_text(path)}; certkit leaves it alone.")
    with open(path, "rb") as f:
        text = f.read(1 << 20)
    if not text.startswith(_MARK.encode()):
        raise CertkitError(f"{shown(path)} exists and was not written by certkit; it is left alone. Choose "
                           "another unit name.")
    return text.decode("utf-8", "replace")


def _but_path(text: str | None) -> str | None:
    """A unit's text without its PATH (and HOME, and :data:`NETWORK`) lines: PATH holds the installing shell's (a
    virtualenv, ~/bin...); installed again from another shell (or over an earlier certkit's, without HOME or the
    network's lines), the timer is the same."""
    if text is None:
        return None
    return "".join(line for line in text.splitlines(keepends=True)
                   if not line.startswith(('Environment="PATH=', 'Environment="HOME=', *NETWORK)))


def _check_renews(service: Path, text: str | None, ca_dir: str | Path, name: str) -> None:
    """Refuse to remove a timer whose service renews another CA than ``ca_dir`` (or none that can be told);
    a timer whose service is gone renews no CA, and goes."""
    if text is None and not os.path.lexists(service):
        return
    renews = service_ca_dir(text) if text is not None else None
    wanted = os.path.realpath(absolute(os.path.expanduser(os.fspath(ca_dir))))
    if renews is not None and os.path.realpath(renews) == wanted:
        return
    which = (f"renews the CA in {shown(renews)}" if renews is not None else
             f"has no service that says which CA it renews ({shown(service)})")
    raise TimerExists(f"The {name} timer {which}, not the one in {shown(wanted)}, so nothing was removed: give "
                      "--timer-name for that CA's timer, or the --ca-dir it renews.")


def service_ca_dir(text: str) -> str | None:
    """The CA directory a service :func:`service_text` wrote renews: the last ``--ca-dir`` of its ExecStart=."""
    args = next((_exec_args(line[len("ExecStart="):]) for line in text.splitlines()
                 if line.startswith("ExecStart=")), [])
    found = [args[i + 1] for i in range(len(args) - 1) if args[i] == "--ca-dir"]
    return found[-1] if found else None


def _exec_args(line: str) -> list[str]:
    """The arguments of an ExecStart= line as :func:`systemd_quote` wrote them (each double-quoted)."""
    args = []
    for quoted in re.findall(r'"((?:[^"\\]|\\.)*)"', line):
        arg = re.sub(r"\\(.)", r"\1", quoted)
        args.append(arg.replace("%%", "%").replace("$$", "$"))
    return args


class TimerExists(CertkitError):
    """A timer of this name is installed already, running something else."""


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        return "$USER"
