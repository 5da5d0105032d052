"""A long table through the user's pager ($PAGER, else less, else more), as click's echo_via_pager does, but
never lost: click ignores how the pager ended, so PAGER=false (or a pager command that fails) swallowed the whole
table and the command still exited 0. A pager that cannot be found or fails leaves a warning naming it, and the
table printed as it is."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

import click

from certkit.cli.common import warn
from certkit.text import shown

_STOPPED_BY_THE_USER = (130, -2)  # Ctrl-C in the pager (its exit status, or the signal): nothing to print again


def page(text: str) -> None:
    """Show ``text`` through the pager, or print it when the pager cannot show it."""
    given = os.environ.get("PAGER", "").strip()
    command = given or next((name for name in ("less", "more") if shutil.which(name)), "")
    try:
        argv = shlex.split(command)
    except ValueError:  # unbalanced quotes: no command to run
        argv = []
    if not argv or not shutil.which(argv[0]):
        if given:
            warn(f"the pager '{shown(given)}' ($PAGER) was not found; the list is printed without it.")
        click.echo(text)
        return
    status = _run(argv, text)
    if status != 0 and status not in _STOPPED_BY_THE_USER:
        warn(f"the pager '{shown(command)}'{' ($PAGER)' if given else ''} failed (exit status {status}); the list "
             "is printed without it.")
        click.echo(text)


def _run(argv: list[str], text: str) -> int:
    env = dict(os.environ)
    if os.path.basename(argv[0]) == "less" and len(argv) == 1 and not env.get("LESS"):
        env["LESS"] = "-R"  # as click sets it
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, env=env)
    try:
        process.stdin.write((text + "\n").encode(sys.stdout.encoding or "utf-8", "replace"))
        process.stdin.close()
    except BrokenPipeError:  # the pager quit before reading it all ('q' in less): the user has seen enough
        pass
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:  # Ctrl-C is the pager's to handle (less stays on), as click has it
            pass
