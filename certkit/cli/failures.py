"""How the command line says a failure (:class:`certkit.cli.common.CertkitGroup` calls these when one ends a
command): a library error with the fix in the command line's terms, an OSError the library did not anticipate
in words ("the disk is full"), one ``Error:`` line or one JSON object with --json, and what an interrupted
command (Ctrl-C, SIGTERM, SIGHUP) had done. The group imports it only once a command fails."""

from __future__ import annotations

import os

import click

from certkit.errors import CertkitError
from certkit.text import shown, terminal_safe


def say_interrupted(exc: BaseException | None, code: int, as_json: bool = False) -> None:
    """After Ctrl-C, SIGTERM or SIGHUP, say so (or what the command put in ``certkit_interrupted``);
    in the issuing pipeline, with how many bundles were written and recorded before it stopped
    (the signal is held off while a bundle is written, so it may have landed after one). With
    --json, as the one JSON object of an error."""
    from certkit.cli.arguments import stopped_state

    delivered = getattr(exc, "certkit_delivered", None)
    if getattr(exc, "certkit_interrupted", None) or (delivered is None and (said := stopped_state())):
        message = getattr(exc, "certkit_interrupted", None) or said  # what the command left, in its words
    elif delivered is None:
        message = "Interrupted."
    elif delivered == 0:
        message = "Interrupted: no bundle was written."
    else:
        message = f"Interrupted after {delivered} bundle{'s were' if delivered != 1 else ' was'} written and recorded."
    if as_json:
        import json

        data = {"error": message, "exit": code}
        if delivered is not None:
            data["written"] = delivered
        click.echo(json.dumps(data))
    else:
        click.echo(message, err=True)



def cli_message(exc: CertkitError) -> str:
    """A library error as the command line says it, with the fix in the command line's terms."""
    from certkit.errors import OutputExists, cli_text

    message = cli_text(exc)  # (the library's parameter, the command's option) the message names
    if isinstance(exc, OutputExists) and exc.replaceable:
        message = f"{message.rstrip('.')}; pass --force to replace {'it' if exc.count == 1 else 'them'}."
    elif getattr(exc, "replaceable", False):  # a manifest whose folders hold bundles already
        message += ("\n  Pass --force to replace the bundles already there, or --resume to keep those that are "
                    "complete and issue the rest.")
    from certkit.constants import ENV_INVENTORY_URL
    from certkit.errors import CABroken

    if isinstance(exc, CABroken) and os.environ.get(ENV_INVENTORY_URL) and "inventory" in message:
        message = (f"{message.rstrip('.')} (that inventory is the one ${ENV_INVENTORY_URL} names, not the CA "
                   "directory's own: check the variable, or unset it).")
    return message


def report_error(message: str, code: int, *, as_json: bool = False, usage: click.UsageError | None = None) -> None:
    """Print an error as the contract says: one ``Error:`` line, or one JSON object with --json."""
    from certkit.text import CLOSED_STREAMS, MESSAGE_LINE_LIMIT, STDOUT_FAILURES, cut_long_lines, discard_stdout

    message = cut_long_lines(message)  # a 100 kB value echoed would make no line anyone reads
    if as_json and "stdout" not in CLOSED_STREAMS and not STDOUT_FAILURES:  # else the Error: line instead
        import json

        try:
            click.echo(json.dumps({"error": message, "exit": code}))
            return
        except OSError:  # the standard output that just failed (a full disk): the Error: line instead
            discard_stdout()
    if usage is not None:
        # one line (a file name's newline cannot forge another), short enough for click to add the option's name
        usage.message = cut_long_lines(shown(usage.message), MESSAGE_LINE_LIMIT - 100)
        usage.show()
        return
    click.echo(f"Error: {terminal_safe(message)}", err=True)


def _printing_help(exc: OSError) -> bool:
    """Whether ``exc`` came from a command's ``--help`` (printed while its arguments are read, before it runs)."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "show_help":
            return True
        tb = tb.tb_next
    return False


def describe_os_error(exc: OSError) -> str:
    """An OSError in words: "the disk is full" rather than "[Errno 28]"."""
    import errno

    from certkit.files import cannot_reach, cannot_reach_to_write, refused_act
    from certkit.text import os_error_words, unnamed_os_error

    if said := unnamed_os_error(exc):
        return said  # standard output, the current folder
    written = os_error_words(exc)  # a full disk, a read-only file system, ulimit -f: only a write meets them
    plain = written or {errno.EACCES: "permission denied", errno.EPERM: "the operation is not permitted"}.get(exc.errno)
    act = ("write" if written else refused_act(exc)) if exc.filename and plain else None
    if act:  # said as the act was, when it can be told: "Cannot write X", "Cannot read X"
        named = exc.filename2 if act == "write" and exc.filename2 else exc.filename
        reach = {"write": cannot_reach_to_write, "read": cannot_reach}.get(act)
        if not written and reach and (said := reach(named, "file or folder")):
            return said  # under a folder one may not search (named, for a write)
        return f"Cannot {act} {shown(named)}: {plain}."
    where = f" ({shown(exc.filename)})" if exc.filename else ""
    return f"{plain or exc.strerror or exc}{where}."
