"""Reading secrets: a CA passphrase, a PKCS#12 password or a token's PIN, from a file, an environment
variable or a prompt, by one set of rules (:mod:`certkit.cli.common` hands them to the commands).

A secret is the bytes given, less one trailing newline. A NEW one (a CA passphrase or a bundle.p12
password being set) must be one a prompt could give again: one line, not blank, UTF-8, and not
starting with a byte-order mark (U+FEFF, which Windows Notepad puts at the start of a "UTF-8" file).
OpenSSL's ``-passin file:`` keeps such a mark as part of the passphrase, so dropping it silently would
make a key that certkit opens with the file but OpenSSL, given the same file, does not; refusing it
keeps the three (the file, the typed text, OpenSSL) in agreement. A secret that opens something made
before (an existing CA passphrase) is taken as it is, as OpenSSL takes it; a PIN with the mark is
refused, because a token counts each wrong PIN against its few tries. A new secret from a file ending in a
Windows line end (CRLF) is taken without it, as a prompt gives it, with a warning: OpenSSL's ``-passin file:``
keeps the CR, and would not open the key or bundle with that file.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import click

from certkit.constants import MAX_SECRET_FILE_BYTES
from certkit.text import BOM_PROBLEM, line_breaks, shown
from certkit.text import BYTE_ORDER_MARK as BOM


def read_secret_file(path: Path, *, new: bool = False) -> bytes:
    """A secret from a file: private to its owner, small, not empty; one trailing newline dropped. A
    ``new`` one (a CA passphrase, a bundle.p12 password being set) must be one line that is not blank."""
    from certkit.files import read_limited, refuse_readable_by_others

    refuse_readable_by_others(path, "secret file")
    text = read_limited(path, MAX_SECRET_FILE_BYTES, what="secret file")
    secret = _without_newline(text)
    if not secret:
        raise click.ClickException(f"{_source(path)} holds an empty secret.")
    if not new:
        return secret
    secret = _one_line(secret, _source(path))
    if text.endswith(b"\r\n") and str(path) != "-":
        _warn_windows_line_end(path)
    return secret


def _warn_windows_line_end(path: Path) -> None:
    """A new secret from a file ending in CRLF is taken without it, as a prompt gives it; OpenSSL's ``-passin
    file:`` drops the LF alone and keeps the CR as part of the secret, so say so before the key is made."""
    from certkit.cli.common import warn

    warn(f"the file {shown(path)} ends in a Windows line end (CRLF); certkit takes the secret without it, as a "
         "prompt gives it, but OpenSSL's -passin file: keeps the carriage return as part of the secret and so will "
         "not open what it protects with this file: save the file with a Unix line end (dos2unix) to use it there.")


def _source(path: Path) -> str:
    """Where a secret file's secret came from, as messages name it: ``-`` is standard input, not a file."""
    return "Standard input" if str(path) == "-" else f"The file {shown(path)}"


def _without_newline(text: bytes) -> bytes:
    return text[:-2] if text.endswith(b"\r\n") else text[:-1] if text.endswith(b"\n") else text


def _one_line(secret: bytes, where: str) -> bytes:
    """Refuse a new secret no prompt could give again (:func:`certkit.text.new_secret_problem`: several lines,
    a byte-order mark, a NUL byte, white space alone, too long, not UTF-8). One that opens a key made before
    this rule is taken as it is."""
    from certkit.text import new_secret_problem

    if problem := new_secret_problem(secret):
        raise click.ClickException(f"{where} {problem}.")
    return secret


def refuse_byte_order_mark(secret: bytes, where: str) -> None:
    """Refuse a secret that starts with a UTF-8 byte-order mark (see the module's docstring for why it
    is refused rather than dropped)."""
    if secret.startswith(BOM):
        raise click.ClickException(f"{where} {BOM_PROBLEM}.")


def wrong_secret_hint(path: Path | None, env: str | None = None) -> str:
    """For a secret from the file ``path`` that did not open a key, what in the file may be why: a byte-order mark
    at its start, or several lines (taken whole, as a key made before the rule of a new secret may need; OpenSSL's
    -passin file: reads the first line alone), said as init-ca and export-p12 say them; else nothing. Every
    command that unlocks a key with --passphrase-file (or --parent-passphrase-file) says it through this. With
    ``env`` $CERTKIT_PKCS11_PIN (a token's CA: no such PIN file is taken), where the PIN came from instead
    (:func:`refused_pin_hint`)."""
    from certkit.constants import ENV_PKCS11_PIN

    if env == ENV_PKCS11_PIN:
        return _pin_source(path, env)
    if path is None or str(path) == "-":
        return ""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a pipe (<(pass show ca), a FIFO) is read once, by the command
            return ""
        with open(path, "rb") as f:
            head = f.read(MAX_SECRET_FILE_BYTES + 2)
    except OSError:
        return ""
    if head.startswith(BOM):
        return (f" The file {shown(path)} starts with a byte-order mark (U+FEFF), which is part of the passphrase as "
                "read (OpenSSL's -passin file: reads it so too); if the passphrase does not start with one, save the "
                "file without it.")
    if b"\n" in _without_newline(head) or b"\r" in _without_newline(head):
        return (f" The file {shown(path)} holds a secret of several lines, taken whole; a passphrase is one line (a "
                "file's one trailing newline is ignored): leave only the passphrase in it.")
    return ""


def refused_pin_hint(exc: BaseException, path: Path | None, env) -> str:
    """For a PIN the token refused (``exc``, a TokenPinIncorrect it was sent to), where that PIN came from, as
    :func:`read_secret` took it: the file ``path`` (or standard input), else ``$env``, else the prompt; a stale
    variable of a service's environment, or the wrong --pin-file, is what to look at. "" for any other error,
    or a PIN that was not sent (refused earlier in this process). ``env``: the variable's name, or a function
    giving it (asked only for a refused PIN)."""
    from certkit.pkcs11.errors import TokenPinIncorrect

    if not isinstance(exc, TokenPinIncorrect) or exc.remembered or "refused the PIN" not in str(exc):
        return ""
    return _pin_source(path, env() if callable(env) else env)


def _pin_source(path: Path | None, env: str | None) -> str:
    where = ("read from standard input" if str(path) == "-" else f"read from the file {shown(path)}") \
        if path is not None else f"${env}'s" if env and env in os.environ else "the one typed at the prompt"
    return f" The PIN it refused was {where}."


def _refuse_impossible_pin(secret: bytes, where: str) -> None:
    """Refuse, before the token sees it, a PIN no token holds: a byte-order mark, a line break (a blank line
    after it), white space alone, not UTF-8 (said naming where it came from); each wrong PIN uses up one of
    the token's few tries."""
    refuse_byte_order_mark(secret, where)
    if b"\n" in secret or b"\r" in secret or not secret.strip() or b"\0" in secret:
        shape = ("white space only" if not secret.strip() else "a NUL byte" if b"\0" in secret and b"\n" not in secret
                 and b"\r" not in secret else line_breaks(secret, "a PIN"))
        raise click.ClickException(f"{where} holds {shape}; a PIN is one line, and the token counts a wrong one "
                                   "against the few tries before it locks, so it was not tried.")
    try:
        secret.decode("utf-8")
    except UnicodeDecodeError:  # the token would refuse it, as wrong or as a bad argument
        raise click.ClickException(f"{where} holds a PIN that is not UTF-8 text (a byte that did not decode, as "
                                   "Latin-1 text has); PKCS#11 PINs are UTF-8, so it was not tried.") from None


def read_secret(path: Path | None, env: str, prompt: str, *, confirm: bool = False, pin: bool = False) -> bytes | None:
    """A secret from a file, else an environment variable, else a prompt on a terminal.

    Returns None when none of the three is available. ``pin``: it is a token's PIN (whatever the variable
    it comes from: a parent CA's is $CERTKIT_PARENT_CA_PASSPHRASE), refused before the token counts it if
    no token could hold it.
    """
    from certkit.constants import ENV_PKCS11_PIN

    pin = pin or env == ENV_PKCS11_PIN
    if path is not None:
        secret = read_secret_file(path, new=confirm)
        if pin:  # a wrong PIN uses up one of the token's tries
            _refuse_impossible_pin(secret, _source(path))
        return secret
    if env in os.environ:
        if not os.environ[env]:
            raise click.ClickException(f"${env} is set but empty.")
        secret = os.fsencode(os.environ[env])  # the bytes as set, even if they are not UTF-8
        if not _without_newline(secret):  # empty once its trailing newline is dropped, as a file's would be
            raise click.ClickException(f"${env} holds a line break alone: it is set, but to an empty secret.")
        if confirm:
            return _one_line(secret, f"${env}")
        # One trailing newline dropped, as from a file ($(cat pin.txt) keeps none; $'1234\n' or a
        # systemd EnvironmentFile may): a PIN sent with it would use up one of the token's tries.
        if pin:
            _refuse_impossible_pin(_without_newline(secret), f"${env}")
        return _without_newline(secret)
    if sys.stdin is not None and sys.stdin.isatty():
        return prompt_secret(prompt, confirm=confirm).encode()
    return None


def prompt_secret(prompt: str, *, confirm: bool = False) -> str:
    """A secret typed on the terminal; one that is not UTF-8 text (a Latin-1 terminal, a pasted byte) is
    refused in one line."""
    try:
        return click.prompt(prompt, hide_input=True, confirmation_prompt=confirm, err=True)
    except UnicodeDecodeError:
        raise click.ClickException(f"What was typed at '{prompt.rstrip(': ')}' is not UTF-8 text (is the terminal "
                                   "set to another encoding?); type it in a UTF-8 terminal, or give it in a "
                                   "file.") from None
