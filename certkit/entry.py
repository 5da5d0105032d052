"""The ``certkit`` console script: answers ``--help`` and ``--version`` without click.

Importing click costs several times Python's own start-up, and these two are
the commands people run most often to find their way; so the top-level help is
kept, as click renders it at 80 columns, in ``_help.txt`` beside this module
(``python -m certkit.entry --regenerate`` rewrites it; a test fails if it
drifts from click's output). Everything else goes to :mod:`certkit.cli`.
"""

from __future__ import annotations

import os
import sys

from certkit import __version__

HELP_FILE = os.path.join(os.path.dirname(__file__), "_help.txt")
HELP_WIDTH = 80


def _columns() -> int:
    # The width click would wrap to: $COLUMNS, else the terminal, else 80.
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return HELP_WIDTH


def _reopen_closed_streams() -> None:
    """Standard input, output or error closed when certkit starts (``>&-``): put /dev/null on that
    descriptor, so that no file certkit opens later (a private key) takes its number and a hook's
    output never lands in it. Commands whose data goes to standard output then refuse
    (:func:`certkit.text.stdout_closed`); the others' reports go nowhere, as asked."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        opened = os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: this one
        if opened != fd:
            os.close(opened)
            continue
        from certkit import text  # only then: nothing added to every command's start-up

        text.CLOSED_STREAMS.add(name)
        mode = "r" if fd == 0 else "w"
        setattr(sys, name, open(fd, mode, encoding="utf-8", errors="backslashreplace", closefd=False))  # noqa: SIM115


def _say(text: str) -> int:
    """Print ``text`` (the version, the help); standard output that cannot take it (a full disk, a
    reader that left) is one ``Error:`` line and exit status 1, as for every command, not a traceback."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    except OSError as exc:
        from certkit.text import unnamed_os_error

        sys.stderr.write(f"Error: {unnamed_os_error(exc) or exc.strerror or exc}\n")
        return 1


def main(argv: list[str] | None = None) -> int | None:
    if argv is None:
        _reopen_closed_streams()
        from certkit.text import watch_stdout

        watch_stdout()
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:
        return _say(f"certkit, version {__version__}\n")
    if args in (["--help"], ["-h"]) and _columns() >= HELP_WIDTH:
        try:
            with open(HELP_FILE, encoding="utf-8") as f:
                return _say(f.read())
        except OSError:
            pass  # not installed with the package: let click render it
    try:
        from certkit.cli import main as cli_main  # a Ctrl-C while it loads: said as the commands say it
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        return 130

    try:
        return cli_main(args=args, prog_name="certkit")
    finally:
        if argv is None:  # the command has ended, however: a Ctrl-C now would only interrupt the
            import signal  # interpreter's clean-up (closing the inventory) with a traceback

            signal.signal(signal.SIGINT, signal.SIG_IGN)


def render_help() -> str:
    """The top-level help exactly as click renders it at 80 columns."""
    from click.testing import CliRunner

    from certkit.cli import main as cli_main

    result = CliRunner().invoke(cli_main, ["--help"], prog_name="certkit", terminal_width=HELP_WIDTH)
    return result.output


if __name__ == "__main__" and sys.argv[1:] == ["--regenerate"]:
    with open(HELP_FILE, "w", encoding="utf-8") as f:
        f.write(render_help())
