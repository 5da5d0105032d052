"""What the commands share: the lazy command group, common options, secrets, the CA, output.

Imports only click, the standard library and certkit's cheap modules at start-up. The rules every command follows:

- a library error (:class:`~certkit.errors.CertkitError`) or an unexpected file-system error is one ``Error: ...``
  line on stderr and exit status 1; with ``--json`` one JSON object ``{"error": ..., "exit": N}`` on stdout;
- a usage mistake is click's, exit status 2 (also as JSON with ``--json``);
- Ctrl-C (SIGINT) exits 130 without a traceback or click's ``Aborted!``;
- every text printed for people passes :func:`certkit.text.terminal_safe`.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import click

# The secrets' rules live in certkit.cli.secrets_input; the commands take them from here.
from certkit.cli.path_types import _OUT_AS_TYPED, CheckedPath, ExistingPath, OutPath, WrittenPath  # noqa: F401
from certkit.cli.secrets_input import prompt_secret, read_secret, read_secret_file  # noqa: F401
from certkit.constants import ENV_PASSPHRASE, MAX_DAYS
from certkit.errors import CertkitError
from certkit.text import shown, terminal_safe

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class CertkitGroup(click.Group):
    """A group whose commands are imported on demand from a ``name -> "module:function"`` table,
    and which turns every failure into one clear line (or one JSON object) and an exit status."""

    def __init__(self, *args, lazy_commands: dict[str, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            import importlib

            module, _, attr = self.lazy_commands[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        from certkit import db_postgres_locks  # each database session says which command it serves

        name, command, rest = super().resolve_command(ctx, args)
        sub = rest[:1] if isinstance(command, click.Group) and rest and not rest[0].startswith("-") else []
        db_postgres_locks.command = " ".join([name or "", *sub])
        return name, command, rest

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from certkit.cli.arguments import refuse_odd_arguments
        from certkit.files import forget_inputs

        forget_inputs()  # a run's own (a test's runs share one process)
        refuse_odd_arguments(self, ctx, args)
        try:
            return super().parse_args(ctx, args)
        except OSError as exc:  # --help to a full disk or a closed pipe (click would exit 1 without a word)
            from certkit.cli.failures import describe_os_error

            raise click.ClickException(describe_os_error(exc)) from None

    def invoke(self, ctx: click.Context):
        if sys.stdin is not None and sys.stdin.isatty():
            import certkit.db_postgres  # (imports no driver) a shared inventory's password, asked on a terminal

            certkit.db_postgres.password_prompt = prompt_secret
        try:
            return super().invoke(ctx)
        except CertkitError as exc:
            from certkit.cli.failures import cli_message

            raise click.ClickException(cli_message(exc)) from None
        except OSError as exc:  # a file-system failure the library did not anticipate
            from certkit.cli.failures import _printing_help, describe_os_error
            from certkit.text import STDOUT_FAILURES

            said = describe_os_error(exc)
            if any(exc is failed for failed in STDOUT_FAILURES) and not _printing_help(exc):  # after its work
                said = (f"{said.rstrip('.')}. What the command did before this is done; it stopped there, its report "
                        "cut short.")
            raise click.ClickException(said) from None
        finally:
            from certkit.files import forget_inputs

            forget_inputs()  # the command's own: nothing of it is guarded in this process's later calls

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)

        from certkit.errors import Terminated, handle_stop_signals, raise_terminated, restore_signals

        argv = list(sys.argv[1:] if args is None else args)
        from certkit.cli.arguments import asks_for_json, forget_on_stop

        as_json = asks_for_json(self, argv)
        forget_on_stop()  # what a command run before in this process (a test's) set is not this one's
        previous = handle_stop_signals(raise_terminated) if threading_main() else None
        try:
            rv = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except Terminated as exc:  # what was being written is settled; exit as a shell expects
            from certkit.cli.failures import say_interrupted

            say_interrupted(exc, 128 + exc.signum, as_json)  # 143 for SIGTERM, 129 for SIGHUP
            sys.exit(128 + exc.signum)
        except click.exceptions.Abort as exc:
            # Ctrl-C (click turns KeyboardInterrupt into Abort): the exit status that shells
            # expect, and what the issuing pipeline delivered before the interruption.
            from certkit.cli.failures import say_interrupted

            say_interrupted(exc.__cause__ or exc.__context__, EXIT_INTERRUPTED, as_json)
            sys.exit(EXIT_INTERRUPTED)
        except click.ClickException as exc:
            from certkit.cli.failures import report_error

            if type(exc).__name__ == "NoArgsIsHelpError":
                # click 8.2+: a group given no command says its help, which is click's own text (not
                # escaped to one line as a message holding a user's input is), and exits 2.
                click.echo(exc.format_message(), err=True)
                sys.exit(exc.exit_code)
            report_error(exc.format_message(), exc.exit_code, as_json=as_json and not isinstance(exc, Failed),
                         usage=exc if isinstance(exc, click.UsageError) else None)
            sys.exit(exc.exit_code)
        except OSError as exc:  # outside a command (its --help to a full disk or a closed pipe)
            from certkit.cli.failures import describe_os_error, report_error

            report_error(describe_os_error(exc), 1)
            sys.exit(1)
        finally:
            forget_on_stop()  # nor kept after it: what it holds (an open inventory) goes with the command
            if previous is not None:  # in-process callers (tests, click's runner) get theirs back
                restore_signals(previous)
        sys.exit(rv if isinstance(rv, int) else 0)


class Failed(click.ClickException):
    """A command that printed its full report (``check``, ``verify``) and now fails: one ``Error:``
    line on stderr sums it up, even with --json, whose one object on stdout is the report itself."""




_WARNED: set[str] = set()


def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` for the command line: ``Warning: ...``, once per message."""
    if str(message) not in _WARNED:  # the same news once, wherever the library raised it
        _WARNED.add(str(message))
        warn(str(message))


def warn(message: str) -> None:
    click.echo(f"Warning: {terminal_safe(message)}", err=True)


# --- shared options ---------------------------------------------------------------
def ca_dir_option(f=None, *, written: bool = False):
    """``--ca-dir``; ``written``: a CA directory the command makes (init-ca), refused as a place to write."""
    option = click.option(
        "--ca-dir", type=(WrittenPath if written else CheckedPath)(path_type=Path, file_okay=False),
        envvar="CERTKIT_CA_DIR", help="CA directory [default: $CERTKIT_CA_DIR, else the per-user data dir].")
    return option if f is None else option(f)


def passphrase_file_option(f):
    return click.option(
        "--passphrase-file", type=ExistingPath(path_type=Path, dir_okay=False, allow_dash=True),
        help=f"Read the CA key passphrase from this file (else ${ENV_PASSPHRASE}, else a prompt); for a key in "
             "a PKCS#11 token, its PIN (else $CERTKIT_PKCS11_PIN).",
    )(f)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True,
                        help='Print one JSON object on stdout. An error is one too, {"error": ..., "exit": N}, '
                             "and stderr stays empty; but a report printed before a failure (check, verify, "
                             "probe, renew, trust, demo) stays on stdout, and an Error: line on stderr says why.")(f)


def out_as_typed() -> str | None:
    """The ``--out`` value as the user typed it (see :class:`OutPath`), if one was given."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(_OUT_AS_TYPED) if ctx is not None else None


def typed_out(fmt: str, out: Path | None) -> Path | None:
    """``--out`` as the user meant it: ``-`` is standard output (None; refused for a folder), and
    a trailing slash, which names a folder, is refused for a format that writes one file."""
    if fmt != "folder":
        return file_out(out, f"--format {fmt} writes one file", f"certs.{'yaml' if fmt == 'k8s' else fmt}")
    if out is not None and out_as_typed() == "-":
        raise click.UsageError("--out - means standard output, where a bundle folder cannot go; choose a "
                               "folder, or --format jsonl, k8s or tar.")
    from certkit.cli.arguments import refuse_inputs_in_folder

    refuse_inputs_in_folder(out)  # its password or passphrase file kept in the folder
    return out


def file_out(out: Path | None, writes: str, example: str) -> Path | None:
    """``--out`` of a command that writes one file (see :class:`OutPath`): ``-`` is standard output
    (None), and a path ending with a slash, which names a folder, is refused."""
    typed = out_as_typed() if out is not None else None
    if typed == "-":
        return None
    if typed is not None and typed.endswith((os.sep, "/")):
        raise click.UsageError(f"--out '{shown(typed)}' ends with a slash, so it names a folder; {writes}: name "
                               f"it (for example {shown(typed.rstrip('/' + os.sep) or '.')}/{example}).")
    from certkit.cli.arguments import refuse_inputs_as_output

    refuse_inputs_as_output(out)  # the passphrase file, the manifest, the CSR
    return out


def format_option(f):
    """--format for the issuing commands (certkit.formats; certkit.cli.output issues into a file or a stream)."""
    from certkit.constants import OUTPUT_FORMATS

    return click.option("--format", "fmt", type=click.Choice(OUTPUT_FORMATS), default="folder", show_default=True,
                        help="folder (a bundle folder), jsonl (one JSON object per certificate: names, serial, "
                             "PEMs), k8s (a kubernetes.io/tls Secret manifest) or tar (an archive of the bundle "
                             "folder); jsonl, k8s and tar go to --out FILE, else to standard output.")(f)


class Whole(click.IntRange):
    """A whole number in a range, written in the digits 0 to 9: Python's int() also reads other
    scripts' digits ('٣٠' is 30) and digits grouped with underscores ('1_0' is 10), which no one means
    in a lifetime, a count or a port."""

    def convert(self, value, param, ctx):
        from certkit.text import is_whole_number

        if isinstance(value, str) and not is_whole_number(value):
            self.fail(f"'{shown(value)}' is not a whole number in the digits 0 to 9.", param, ctx)
        return super().convert(value, param, ctx)


def days_option(help_text: str):
    """--days with its range: at least 1, at most :data:`~certkit.constants.MAX_DAYS`."""
    return click.option("--days", type=Whole(1, MAX_DAYS), help=help_text)


def parse_period(ctx, param, value):
    """--expiring's PERIOD (``30d``, ``30``, ``2w``, ``12h``) as a timedelta, at most the longest lifetime."""
    if value is None:
        return None
    import datetime as dt
    import re

    match = re.fullmatch(r"[ \t]*([0-9]+)[ \t]*([dwh]?)[ \t]*", value.lower())
    if not match:
        raise click.BadParameter(f"'{shown(value)}' is not a period: use days such as 30d or 30 (also 2w, 12h).")
    digits = match.group(1).lstrip("0")[:12] or "0"  # 12 digits are past any lifetime already
    if digits == "0":
        raise click.BadParameter(f"'{shown(value)}' is an empty period: give at least 1 (1d, 1h).")
    unit = {"": "days", "d": "days", "w": "weeks", "h": "hours"}[match.group(2)]
    try:
        period = dt.timedelta(**{unit: int(digits)})
    except OverflowError:  # 999999999999w: past anything a timedelta (or a certificate) holds
        period = dt.timedelta.max
    if period > dt.timedelta(days=MAX_DAYS):
        raise click.BadParameter(f"'{shown(value)}' is longer than {MAX_DAYS} days, the longest lifetime certkit "
                                 "knows; no certificate expires later than that.")
    return period


def load_ca(ca_dir: Path | None, passphrase_file: Path | None):
    """The CA in ``ca_dir``, its key decrypted (asked for on a terminal up to three times)."""
    from certkit.store import CADirectory

    return unlock(CADirectory(ca_dir).open(), passphrase_file)


def key_secret(store) -> tuple[str, str]:
    """The environment variable and prompt for the secret of a CA directory's key: the passphrase
    of ca-key.pem, or the PIN of the PKCS#11 token that holds the key (``--passphrase-file`` gives
    either)."""
    from certkit.constants import ENV_PKCS11_PIN

    if store is not None and store.key_uri is not None:
        return ENV_PKCS11_PIN, "PIN of the token holding the CA key"
    return ENV_PASSPHRASE, "CA key passphrase"


def unlock(ca, passphrase_file: Path | None):
    """Decrypt the key of ``ca`` (a CA opened without its key): the last step before signing."""
    from certkit.errors import PassphraseRequired, WrongPassphrase
    from certkit.pkcs11.errors import TokenPinIncorrect

    env, prompt = key_secret(ca.store)
    interactive = passphrase_file is None and env not in os.environ and sys.stdin is not None and sys.stdin.isatty()
    for attempt in range(3 if interactive else 1):
        try:
            ca.unlock(lambda: read_secret(passphrase_file, env, prompt))
            break
        except TokenPinIncorrect as exc:  # said with where the PIN came from (a stale $CERTKIT_PKCS11_PIN?)
            from certkit.cli.secrets_input import refused_pin_hint

            raise TokenPinIncorrect(f"{exc}{refused_pin_hint(exc, passphrase_file, env)}") from None
        except PassphraseRequired as exc:
            raise click.ClickException(f"{exc} Set ${env}, pass --passphrase-file, or run on a terminal to be asked.") \
                from None
        except WrongPassphrase as exc:
            if not interactive or attempt == 2:
                from certkit.cli.secrets_input import wrong_secret_hint

                hint = wrong_secret_hint(passphrase_file)
                if hint:
                    raise WrongPassphrase(f"{exc}{hint}") from None
                raise
            click.echo("Wrong passphrase; try again.", err=True)
    for warning in ca.warnings:
        warn(warning)
    return ca


# --- output -----------------------------------------------------------------------
def emit(as_json: bool, data: dict, human: str) -> None:
    """Print ``data`` as one JSON object with --json, else ``human`` (escaped for the terminal). Standard
    output closed (``>&-``: click would print nothing and the command exit 0) is said, exit 1: a script
    must not take an answer that went nowhere for one that was empty."""
    if as_json:
        import json  # only for --json: certkit --help should not load it

        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(terminal_safe(human))


@contextmanager
def progress(length: int, label: str, *, decimals: int = 0):
    """A progress bar on standard error (``n/total``, the percentage and the rate per second,
    with ``decimals``); yields the function a long task calls with the count of each step done."""
    import time

    started = time.monotonic()

    def rate(item) -> str | None:  # asked once per line drawn, and once more to fit the bar: no side effect
        if item is None:
            return None
        elapsed = time.monotonic() - started
        return f"{bar.pos / elapsed:,.{decimals}f}/s" if elapsed > 0 else None

    # width=0: the bar takes what the terminal leaves of its line, so n/total and the rate always fit (a fixed
    # bar made lines of 85 characters at 10,000 certificates, each update a new line on an 80-column terminal);
    # the time left (00:01:05) only where it fits too: "Renewing  []  30/40   75%  00:00:00  29.7/s" is 44 wide
    import shutil

    with _measured_on_stderr():
        needed = len(f"{label}  []  {length}/{length}  100%  00:00:00  {length * 100:,.{decimals}f}/s")
        with click.progressbar(length=length, label=label, file=sys.stderr, show_pos=True, show_percent=True,
                               show_eta=shutil.get_terminal_size().columns >= needed, item_show_func=rate,
                               width=0) as bar:
            yield lambda n: bar.update(n, n)


@contextmanager
def _measured_on_stderr():
    """While a progress bar is drawn: the terminal's width as standard error's, where the bar is. click fits it to
    shutil.get_terminal_size(), which measures standard output, else says 80 columns: with standard output the data
    (``issue-batch --format jsonl | jq``, ``renew ... | tee log``), every line of the bar was 80 wide, and on a
    narrower terminal each redraw wrapped onto a new line. $COLUMNS, when set, still decides."""
    import shutil

    measured = shutil.get_terminal_size

    def on_stderr(fallback=(80, 24)):
        if "COLUMNS" not in os.environ:
            try:
                size = os.get_terminal_size(sys.stderr.fileno())
                if size.columns > 0:
                    return size
            except (OSError, ValueError, AttributeError):  # no terminal, or no descriptor (a test's stream)
                pass
        return measured(fallback)

    shutil.get_terminal_size = on_stderr
    try:
        yield
    finally:
        shutil.get_terminal_size = measured


def when(value) -> str:
    """A moment as every command prints it: ``2026-11-30 08:56:07 UTC``."""
    return f"{value:%Y-%m-%d %H:%M:%S} UTC"
