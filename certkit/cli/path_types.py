"""The path types of certkit's options and arguments: a path that must exist, one a command writes, ``--out``."""

from __future__ import annotations

import os

import click

from certkit.text import shown


class CheckedPath(click.Path):
    """A path argument whose refusals (a file where a folder is wanted, or the reverse; with ``exists``,
    one that is not there) are mistakes in the input, not in the command's use: one line and exit
    status 1 (``Error: nope does not exist.``), as inspect and verify say it, rather than click's usage
    block and exit status 2."""

    written = False  # a place the command writes: one that cannot be looked at is said as a write refused

    def convert(self, value, param, ctx):
        if value == "-" and not self.file_okay:  # standard input or output elsewhere, never a folder
            raise click.ClickException("'-' names no folder here (elsewhere it means standard input or output); "
                                       "for a folder of that name, give ./-")
        from certkit.files import broken_link, is_link_loop, not_there

        if isinstance(value, (str, bytes, os.PathLike)) and is_link_loop(value):  # to read or to write: neither
            raise click.ClickException(broken_link(value))
        if self.written and isinstance(value, (str, os.PathLike)) and (said := self._unreachable(value)):
            raise click.ClickException(said)
        try:
            converted = super().convert(value, param, ctx)
        except click.BadParameter as exc:
            text = os.fsdecode(value) if isinstance(value, (str, bytes, os.PathLike)) else str(value)
            if (broken := broken_link(text)) is not None:
                raise click.ClickException(broken) from None
            if text == "-" and not self.allow_dash:  # standard input elsewhere (verify --ca-file -), not here
                raise click.ClickException("'-' names no file here (this option does not read standard input); for "
                                           "a file of that name, give ./-") from None
            if not os.path.lexists(text):  # or not to be looked at: a folder above it cannot be searched
                raise click.ClickException(not_there(text, self._what)) from None
            if os.path.isdir(text) and not self.dir_okay:
                raise click.ClickException(f"{shown(text)} is a folder; give a file.") from None
            if not os.path.isdir(text) and not self.file_okay:
                raise click.ClickException(f"{shown(text)} is a file; give a folder.") from None
            if self.readable and not os.access(text, os.R_OK):  # click's own words: "Path 'c/' is not readable."
                raise click.ClickException(self._unreadable(text)) from None
            raise click.ClickException(exc.format_message()) from None
        if param is not None and param.name != "out" and not isinstance(self, OutPath) and converted != "-":
            from certkit.files import keep_input  # read by the command: no bundle it writes replaces or removes it

            keep_input(converted, param.opts[0] if isinstance(param, click.Option) else param.human_readable_name)
        return converted

    @property
    def _what(self) -> str:
        return "file" if not self.dir_okay else "folder" if not self.file_okay else "file or folder"

    def _unreadable(self, text: str) -> str:
        """Why ``text``, there but not readable by this user, is refused, in certkit's words: a place to write is
        read first (what a folder holds, the file to replace), a place to read is read."""
        try:
            mode = f" (its mode {os.stat(text).st_mode & 0o7777:04o})"
        except OSError:
            mode = ""
        what = "folder" if os.path.isdir(text) else "file"
        if not self.written:
            return f"Cannot read the {what} {shown(text)}: permission denied{mode}; nothing was done."
        holds = "what a folder holds before it writes there" if what == "folder" else "a file before it replaces it"
        return (f"Cannot write the {what} {shown(text)}: permission denied to read it{mode}, and certkit reads "
                f"{holds}; nothing was written. Give it back the read permission, or choose another {what}.")

    def _unreachable(self, value) -> str | None:
        """Why the place to write ``value`` cannot even be looked at (a folder above it the user may not search)."""
        from certkit.files import cannot_reach_to_write

        return cannot_reach_to_write(value, self._what)


class WrittenPath(CheckedPath):
    """A folder the command writes (--out-dir, --unit-dir, init-ca's --ca-dir): see :class:`CheckedPath`."""

    written = True


class OutPath(WrittenPath):
    """``--out`` of the issuing commands: a path, remembering what ``click.Path`` forgets, the
    value as typed (``-`` means standard output; a trailing slash means a folder)."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and ctx is not None:
            ctx.meta[_OUT_AS_TYPED] = value
        if value == "-":  # standard output: the command says where that can go (typed_out, file_out)
            return self.coerce_path_result(value)
        return super().convert(value, param, ctx)


_OUT_AS_TYPED = "certkit.out_as_typed"


class ExistingPath(CheckedPath):
    """A file (or folder) argument that must exist (see :class:`CheckedPath`)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(exists=True, **kwargs)
