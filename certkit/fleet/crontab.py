"""The crontab line of bulk renewal, for machines without systemd (:func:`crontab_line`): daily at a random
minute of a random night hour, with this command's PATH, every word quoted so that cron hands it to the shell
exactly as given, and no longer than cron takes."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from certkit.errors import CertkitError
from certkit.fleet.schedule import _check_window
from certkit.fleet.timer import _check_args
from certkit.fleet.timer_env import check_environment, cron_path, program


def crontab_line(renew_argv: Sequence[str], *, minute: int | None = None, hour: int | None = None) -> str:
    """The crontab line that runs ``renew_argv`` daily at a random minute of a random night hour
    (chosen here: cron has no randomized delay), with this command's ``PATH`` (:func:`cron_path`).
    ``%`` is escaped: cron would end the command there."""
    import random

    _check_window(renew_argv, cron=True)
    argv, env = program()
    env = cron_path() | env
    _check_args([*argv, *renew_argv], env)
    check_environment(renew_argv, {k: v for k, v in env.items() if k != "PATH"})
    minute = random.randrange(60) if minute is None else minute
    hour = random.randrange(6) if hour is None else hour
    words = [f"{k}={cron_quote(v)}" for k, v in env.items()] + [cron_quote(a) for a in [*argv, *renew_argv]]
    command = " ".join(words).replace("%", "\\%")
    _check_cron_length(command, env.get("PATH", ""))
    return f"{minute} {hour} * * * " + command


def cron_quote(arg: str) -> str:
    r"""``arg`` as one shell word that cron hands to /bin/sh unchanged once :func:`crontab_line` has escaped its
    ``%``: cron reads a backslash before a backslash or a ``%`` as its own escape (Debian's cron turns ``\\`` into
    ``\``; it and cronie end the command at the ``%`` of ``\\%``, as at a bare ``%``), so every backslash stands alone
    in single quotes, ``'\'``, followed by a quote that no cron reads."""
    return "'\\'".join(shlex.quote(run) if run else "" for run in arg.split("\\")) or "''"


# The longest command Vixie cron, the cron of Debian and Ubuntu, takes in a crontab line (its MAX_COMMAND: 1000 bytes
# with the end): its crontab(1) refuses a longer one ("command too long", "errors in crontab file, can't install"), and
# its daemon drops a whole crontab file that holds one (the user's other jobs with it).
CRON_COMMAND_MAX = 998


def _check_cron_length(command: str, path: str) -> None:
    """Refuse a crontab command longer than :data:`CRON_COMMAND_MAX` bytes, saying what takes the room."""
    size = len(command.encode("utf-8"))
    if size <= CRON_COMMAND_MAX:
        return
    most = (f"; PATH takes {len(path.encode('utf-8'))} of them: run this again with a shorter PATH, only the folders "
            "certkit and the hooks need (such as /usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin and certkit's own)"
            if len(path) > size // 3 else "")
    raise CertkitError(f"The crontab line's command would be {size} bytes long, and cron on Debian and Ubuntu "
                       f"(Vixie cron) takes at most {CRON_COMMAND_MAX}: its crontab refuses a longer line ('command "
                       f"too long') and installs nothing{most}. Put long --exec hooks in a script and give its path.")
