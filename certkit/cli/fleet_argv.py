"""The ``certkit renew`` arguments ``--install-timer`` writes into its unit or crontab line: :func:`timer_argv`
(the bulk renewal's options) and :func:`_ca_arguments` (``--ca-dir``, ``--passphrase-file``), each checked when the
timer is installed (a relative hook, a password file others can read, a wrong passphrase), not every night.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from certkit.paths import absolute
from certkit.text import shown


def period_arg(period) -> str:
    """A period as ``--expiring`` reads it back: ``30d`` or ``12h``."""
    import datetime as dt

    if period % dt.timedelta(days=1):
        return f"{int(period / dt.timedelta(hours=1))}h"
    return f"{period.days}d"


def timer_argv(expiring, renew_all: bool, kind: str | None, pattern: str | None, rekey: bool, key_type: str | None,
               days: int | None, p12_password_file: Path | None, *, exec_each: str | None, exec_once: str | None,
               exec_timeout: int, include_expired: bool = False) -> list[str]:
    """The ``certkit renew ...`` arguments the timer runs: this bulk renewal's (--expiring 30d
    without a selection), with only the options that differ from their defaults."""
    import datetime as dt

    argv = ["renew", "--all"] if renew_all else ["renew", "--expiring", period_arg(expiring or dt.timedelta(days=30))]
    argv += ["--include-expired"] if include_expired else []
    argv += (["--kind", kind] if kind else []) + (["--name", pattern] if pattern else [])
    argv += (["--rekey"] if rekey else []) + (["--key-type", key_type] if key_type else [])
    argv += (["--days", str(days)] if days else [])
    from certkit.fleet.timer_env import refuse_hook_password

    for option, hook in (("--exec", exec_each), ("--exec-once", exec_once)):
        _refuse_relative_hook(option, hook)
        refuse_hook_password(option, hook)
    argv += (["--exec", exec_each] if exec_each else []) + (["--exec-once", exec_once] if exec_once else [])
    argv += (["--exec-timeout", str(exec_timeout)] if exec_timeout != 600 else [])
    if p12_password_file is not None:
        from certkit.files import refuse_readable_by_others

        if str(p12_password_file) == "-":
            raise click.UsageError("A timer cannot read the PKCS#12 password from standard input: give a file.")
        refuse_readable_by_others(p12_password_file, "PKCS#12 password file")
        from certkit.cli.common import read_secret_file
        from certkit.pkcs12 import check_password

        check_password(read_secret_file(p12_password_file, new=True))  # what each run reads: refused now, not daily
        argv += ["--p12-password-file", absolute(p12_password_file)]
    return argv


def _refuse_relative_hook(option: str, hook: str | None) -> None:
    """A timer's hook that starts with a relative path ('./reload.sh'), which runs by hand from this folder but
    is looked for, each night, in the folder the timer starts in: / (systemd) or the home folder (cron)."""
    try:
        first = shlex.split(hook or "")[0]
    except (ValueError, IndexError):
        return
    if "/" in first and not first.startswith(("/", "~", "$")):
        raise click.ClickException(f"{option} '{shown(hook)}' starts with a relative path, {shown(first)}, which the "
                                   "timer looks for in the folder it starts in (/ for systemd, the home folder for "
                                   f"cron), not here: give it in full ({shown(absolute(first))}).")


def _pin_checked(secret: bytes, path: Path, key_uri) -> bytes:
    """A token's PIN with a byte-order mark is refused before the token sees it (a try used up); a
    passphrase is taken as it is, as OpenSSL takes it (a wrong one says the mark is there)."""
    from certkit.cli.secrets_input import refuse_byte_order_mark

    if key_uri is not None:
        refuse_byte_order_mark(secret, f"The PIN file {shown(path)}")
    return secret


def _ca_arguments(ca_dir: Path | None, passphrase_file: Path | None) -> list[str]:
    """--ca-dir (absolute), and --passphrase-file when the CA key is encrypted: a timer cannot ask,
    and an environment variable holding the passphrase is never copied into a unit or crontab."""
    from certkit.cli.common import read_secret_file
    from certkit.constants import ENV_PASSPHRASE
    from certkit.files import read_limited, refuse_readable_by_others
    from certkit.key_encryption import is_encrypted
    from certkit.store import CADirectory

    store = CADirectory(ca_dir)
    ca = store.open()  # a missing or broken CA is refused now, not every night
    args = ["--ca-dir", absolute(store.path)]
    encrypted = store.key_path.is_file() and is_encrypted(read_limited(store.key_path, 1 << 20, what="CA key"))
    if passphrase_file is not None:
        if str(passphrase_file) == "-":
            raise click.UsageError("A timer cannot read the passphrase from standard input: give a file.")
        refuse_readable_by_others(passphrase_file, "passphrase file")
        from certkit.errors import WrongPassphrase

        try:  # a wrong passphrase now, not every night
            ca.unlock(lambda: _pin_checked(read_secret_file(passphrase_file), passphrase_file, store.key_uri))
        except WrongPassphrase as exc:
            from certkit.cli.secrets_input import wrong_secret_hint

            raise WrongPassphrase(f"{exc}{wrong_secret_hint(passphrase_file)}") from None
        args += ["--passphrase-file", absolute(passphrase_file)]
    elif store.key_uri is not None:
        from certkit.constants import ENV_PKCS11_PIN

        raise click.ClickException(
            f"The CA key is in a PKCS#11 token ({shown(store.key_uri)}), and a timer cannot type its PIN: give "
            f"--passphrase-file FILE holding the PIN (a file only you can read). ${ENV_PKCS11_PIN} is never copied "
            "into the timer.")
    elif encrypted:
        raise click.ClickException(
            f"The CA key {shown(store.key_path)} is encrypted, and a timer cannot type its passphrase: give "
            f"--passphrase-file FILE (a file only you can read). ${ENV_PASSPHRASE} is never copied into the timer."
        )
    return args
