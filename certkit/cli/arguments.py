"""Arguments every command refuses before click parses them: an empty value (an unset variable), and
one that is not UTF-8 text (see :func:`refuse_odd_arguments`); and, once parsed, an output file that is
one of the command's own inputs (:func:`refuse_inputs_as_output`); and what a command stopped by a signal
had changed (:func:`on_stop`)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import click

from certkit.text import is_utf8, shown

_OPTION = re.compile(r"--?[A-Za-z]")  # an option's name, not '-' (standard input) nor a negative number
# Commands that record no path made from the current folder's: they read, and say what they read in
# words that show a path's odd bytes (\xNN); the others refuse a current folder that is not UTF-8.
_RECORDS_NO_PATH = frozenset({"list", "inspect", "verify", "probe", "check", "trust status"})
_HELP = frozenset({"--help", "-h"})


def refuse_odd_arguments(group: click.Group, ctx: click.Context, args: list[str]) -> None:
    """Refuse an empty argument and one that is not UTF-8, for every command and option alike.

    An empty value is almost always an unset shell variable (``revoke "$SERIAL"``), and taken as a
    path it means the current folder: ``verify --ca-file ""`` would trust every certificate there,
    ``revoke ""`` would revoke the bundle in it, ``serve --host ""`` would listen on every
    interface. A value that is not UTF-8 cannot go into a certificate, the inventory or a message.
    """
    name = args[0] if args and not args[0].startswith("-") else None
    command = group.get_command(ctx, name) if name else None
    if name and command is None:
        _refuse_unknown(group, ctx, name)
        return
    where = click.Context(command, info_name=name, parent=ctx) if command else ctx
    if name:
        # $CERTKIT_CA_DIR, $HOME, $XDG_DATA_HOME and $CERTKIT_INVENTORY_URL are checked where they are used
        # (certkit.store.resolve_ca_dir, store_inventory): a command that needs no CA is not refused for them
        reads = name in _RECORDS_NO_PATH or " ".join(args[:2]) in _RECORDS_NO_PATH or _HELP.intersection(args)
        if not reads and not is_utf8(cwd := _cwd()):
            # not the command line's usage: one line, exit 1, as for a variable set but empty
            raise click.ClickException(f"the current folder's path is '{_bytes_shown(cwd)}', which is not UTF-8 "
                                       "text; certkit records paths and URLs as UTF-8.")
    sub_name = args[1] if command is not None and isinstance(command, click.Group) and len(args) > 1 else None
    leaf, start = command, 1
    if sub_name and (sub := command.get_command(where, sub_name)) is not None:  # trust status: its own usage
        where = click.Context(sub, info_name=sub_name, parent=where)
        leaf, start = sub, 2
    elif sub_name and not sub_name.startswith("-"):
        _refuse_unknown(command, where, sub_name)
    valued = _options_with_values(command or group)
    known = valued | _all_options(command or group)
    for i, arg in enumerate(args):
        option, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
        named = option or (args[i - 1] if i and _OPTION.match(args[i - 1]) else "")  # not '-' (stdin), not -1
        if named and named.split("=")[0] not in known:
            return  # an option the command does not have: click says so ("No such option")
        if not eq and i and args[i - 1] in valued:  # the value of the option before it, not an argument
            option = args[i - 1]
        what = f"{option} was given" if option else f"'certkit {name}' was given" if name else "certkit was given"
        if (eq or not arg.startswith("-")) and value.strip() == "":
            raise click.UsageError(f"{what} an empty value{' (an unset variable?)' if not value else ''}; "
                                   "give it a value or leave it out.", ctx=where)
        if not is_utf8(arg):
            raise click.UsageError(f"{what} '{_bytes_shown(arg)}', which is not UTF-8 text; certkit takes "
                                   "names, paths and URLs as UTF-8.", ctx=where)
    if leaf is not None and not isinstance(leaf, click.Group):
        _refuse_repeated(leaf, args[start:], where)
        _refuse_stdin_twice(leaf, args[start:], where)


def _refuse_unknown(group: click.Group, ctx: click.Context, name: str) -> None:
    """A command name the group does not have, with the one it most looks like (``isue-server``,
    ``trust instal``), as git says; click alone says only that there is no such command."""
    import difflib

    names = group.list_commands(ctx)
    like = ([n for n in names if n.startswith(name.lower())]
            or difflib.get_close_matches(name.lower(), names, n=1, cutoff=0.6))
    if like and is_utf8(name):
        listed = f"'{like[0]}'" if len(like) == 1 else "one of " + ", ".join(f"'{n}'" for n in like)
        raise click.UsageError(f"No such command {shown(name)!r}. Did you mean {listed}?", ctx=ctx)


def _refuse_repeated(command: click.Command, args: list[str], where: click.Context) -> None:
    """Refuse an option that takes one value given twice: click keeps the last one without a word, so
    ``verify --name evil --name good`` checked one name of two, and ``--passphrase-file a
    --passphrase-file b`` encrypted with the file not meant. Options that take several (``--dns``) may
    repeat; a flag given twice says the same thing twice."""
    singles = {name: param for param in command.params if isinstance(param, click.Option) and not param.multiple
               and not param.is_flag and not param.count for name in param.opts}
    valued = _options_with_values(command)
    seen: dict[str, str] = {}
    skip = False
    for arg in args:
        if arg == "--":
            return
        if skip:  # the value of the option before it, even one that looks like an option
            skip = False
            continue
        option = arg.split("=", 1)[0] if arg.startswith("--") else arg
        if option in singles:
            name = singles[option].name
            if name in seen:
                same = option if option == seen[name] else f"{seen[name]} and {option}"
                raise click.UsageError(f"{same} {'was' if option == seen[name] else 'were'} given twice; it takes one "
                                       "value: give it once.", ctx=where)
            seen[name] = option
        skip = option in valued and "=" not in arg


def _reads_stdin(param: click.Parameter) -> bool:
    """Whether ``param`` reads standard input when given ``-``: a file to read (a CSR, a manifest, a secret file,
    a certificate to check), not ``--out`` (standard output) nor a folder (refused)."""
    from certkit.cli.common import OutPath

    kind = param.type
    return (isinstance(kind, click.Path) and not isinstance(kind, OutPath) and kind.file_okay
            and (kind.allow_dash or not kind.exists))


def _refuse_stdin_twice(command: click.Command, args: list[str], where: click.Context) -> None:
    """Refuse ``-`` (standard input) given to two of the command's inputs: the first reads it all, and the second
    was refused for what it did not get ("The file - holds an empty secret"), or took the rest (a passphrase
    read as a manifest's line, and echoed in its error)."""
    options = {name: param for param in command.params if isinstance(param, click.Option) for name in param.opts}
    valued = _options_with_values(command)
    arguments = [param for param in command.params if isinstance(param, click.Argument)]
    readers: list[str] = []
    positional, value_of, ended = 0, None, False
    for arg in args:
        option, eq, value = arg.partition("=") if arg.startswith("--") and not ended else (arg, "", "")
        if value_of is not None:  # the value of the option before it
            if arg == "-" and _reads_stdin(options[value_of]):
                readers.append(value_of)
            value_of = None
        elif not ended and arg == "--":
            ended = True
        elif not ended and option in options:
            if option in valued and not eq:
                value_of = option
            elif eq and value == "-" and _reads_stdin(options[option]):
                readers.append(option)
        else:  # an argument: the next of the command's, the last taking the rest (NAMES...)
            param = arguments[min(positional, len(arguments) - 1)] if arguments else None
            positional += 1
            if arg == "-" and param is not None and _reads_stdin(param):
                readers.append(param.human_readable_name)
    if len(named := list(dict.fromkeys(readers))) > 1:
        every = "both" if len(named) == 2 else "all"
        raise click.UsageError(f"{' and '.join(named)} {every} name standard input ('-'), which can be read once; "
                               "give all but one of them a file.", ctx=where)


def _options_with_values(command: click.Command) -> set[str]:
    """The option names of ``command`` (and of its subcommands: ``acme serve``) that take a value
    (``--out``, not ``--force``)."""
    names = {name for param in command.params if isinstance(param, click.Option) and not param.is_flag
             and not param.count for name in param.opts}
    for sub in getattr(command, "commands", {}).values():
        names |= _options_with_values(sub)
    return names


def _all_options(command: click.Command) -> set[str]:
    """Every option name of ``command`` and of its subcommands, flags included."""
    names = {name for param in command.params if isinstance(param, click.Option) for name in
             (*param.opts, *param.secondary_opts)} | {"--help", "-h"}
    for sub in getattr(command, "commands", {}).values():
        names |= _all_options(sub)
    return names


def _bytes_shown(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:  # removed under us: the command says so when it needs it
        return ""


def refuse_inputs_as_output(out, what: str = "--out") -> None:
    """Refuse an output file that is one of the files the command reads (its passphrase or password file,
    the manifest, the CSR...), even with --force: replaced by the output, a passphrase file's only copy
    would be gone, and the CA key with it."""
    ctx = click.get_current_context(silent=True)
    if out is None or ctx is None or str(out) == "-" or not os.path.isfile(out):
        return
    for param in ctx.command.params:
        if param.name == "out" or not isinstance(param.type, (click.Path, click.File)):
            continue  # a name, a number: no file this command reads (issue-server NAMES may equal --out)
        values = ctx.params.get(param.name)
        for value in values if isinstance(values, (list, tuple)) else [values]:
            if not isinstance(value, (str, os.PathLike)) or str(value) == "-":
                continue
            try:
                same = os.path.isfile(value) and os.path.samefile(value, out)
            except (OSError, ValueError):
                continue
            if same:
                given = param.opts[0] if isinstance(param, click.Option) else param.human_readable_name
                raise click.ClickException(f"{what} {shown(out)} is the file given as {given}, which this command "
                                           f"reads; certkit will not write over it, even with --force. Choose "
                                           "another file.")


def refuse_inputs_in_folder(folder) -> None:
    """Refuse a bundle folder whose files (those writing a bundle there replaces or removes) include one the
    command reads: its passphrase or password file kept there would be gone, even with --force."""
    from certkit.constants import BUNDLE_FILES

    if folder is not None and os.path.isdir(folder):
        for name in BUNDLE_FILES:
            refuse_inputs_as_output(Path(folder) / name, what="The bundle file")


def asks_for_json(group: click.Group, argv: list[str]) -> bool:
    """Whether the command line asks for --json: the option itself, not the value of another option that takes
    one (``init-ca --name --json`` names a CA "--json"), before ``--``. Read before click parses it, so that an
    error click raises while parsing is JSON too."""
    args = argv[:argv.index("--")] if "--" in argv else argv
    if "--json" not in args:
        return False
    name = args[0] if args and not args[0].startswith("-") else None
    try:
        command = group.get_command(click.Context(group), name) if name else None
    except Exception:  # a command that cannot load: its error says so, in text
        command = None
    valued = _options_with_values(command or group)
    return any(arg == "--json" and not (i and args[i - 1] in valued) for i, arg in enumerate(args))


# --- what a command stopped by a signal had done -----------------------------------------------------
# Set by a command that changes something outside the issuing pipeline (revoke, crl, export-p12, init-ca),
# once it is about to: asked by say_interrupted when Ctrl-C, SIGTERM or SIGHUP ends the command.
_ON_STOP: list = []


def on_stop(state) -> None:
    """How to tell what this command changed if a stop signal ends it: ``state()``, called then, reads it
    from the inventory or the files (a signal may land just before or just after the change, which cannot be
    undone: a revocation committed, a CRL in place) and returns the words, "Interrupted, but ..." or
    "Interrupted: ... not ...", instead of a bare "Interrupted." that leaves the user to guess."""
    _ON_STOP[:] = [state]


def forget_on_stop() -> None:
    _ON_STOP.clear()


def stopped_state() -> str | None:
    """The words of the command's :func:`on_stop` (None if it set none, or they cannot be told), read with
    the stop signals held off: a second Ctrl-C does not cut them short with a traceback."""
    from certkit.issuing import uninterrupted

    if not _ON_STOP:
        return None
    with uninterrupted():
        try:
            return _ON_STOP[0]()
        except Exception:  # what cannot be read now is not said: the bare words stay
            return None
