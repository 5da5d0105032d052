"""The ``check`` command: report the health of a CA directory.

Loaded by :mod:`certkit.cli` when the command runs (LAZY_COMMANDS); it registers on ``main``.
"""

from __future__ import annotations

import click

from certkit.cli import ENV_PASSPHRASE, ca_dir_option, emit, json_option, main, passphrase_file_option, read_secret


@main.command("check")
@ca_dir_option
@passphrase_file_option
@json_option
def check(ca_dir, passphrase_file, as_json):
    """Check a CA directory: files, modes, expiry, key, chain and inventory.

    Exit status 0 when nothing is wrong (warnings allowed), 1 when any check
    fails. Changes nothing.

    \b
    Examples:
      certkit check
      certkit check --ca-dir ./ca --json
    """
    from certkit.check import check_ca_directory

    findings = check_ca_directory(ca_dir, lambda: read_secret(passphrase_file, ENV_PASSPHRASE,
                                                              "CA key passphrase"))
    errors = [f for f in findings if f.level == "error"]
    data = {"ok": not errors, "findings": [f.__dict__ for f in findings]}
    width = max(len(f.check) for f in findings)
    human = "\n".join(f"{f.level.upper():7} {f.check:{width}}  {f.message}" for f in findings)
    emit(as_json, data, human)
    if errors:
        raise click.ClickException(f"{len(errors)} check{'s' if len(errors) > 1 else ''} failed: "
                                   + "; ".join(e.check for e in errors) + ".")
