"""Audit round twenty-two, docs: the reverse of tests/test_docs_options.py.

That test makes every option of a command appear on its page; nothing made every option a page (or
README.md, or a command's own --help examples) names for ``certkit CMD`` be one CMD has. A renamed or
removed option left in prose, a table, a not-run block or a --help example would then send readers to
``Error: No such option``. These tests read every ``certkit CMD ... --opt`` (and every
``certkit GROUP SUB``) the pages and --help texts show and ask click whether CMD takes --opt.
"""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from tests.conftest import REPO

# a command ends at a shell separator, an inline-code end, or where the prose resumes
_END = re.compile(r"[`|;&)]|',|'\.|\. [A-Z]|\.$")
_CALL = re.compile(r"(?<![\w/.-])certkit((?:\s+[a-z][a-z0-9-]*)+)")
_OPTION = re.compile(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)")


def _commands():
    import click

    from certkit.cli import main

    def walk(group, path):
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            if isinstance(command, click.Group):
                yield (*path, name), command
                yield from walk(command, (*path, name))
            else:
                yield (*path, name), command

    return main, dict(walk(main, ()))


def _options(command) -> set[str]:
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")} | {"--help"}


def _calls(text: str):
    """(line number, words after certkit, the rest of the command) of every certkit call in ``text``."""
    number = 1
    for line in text.replace("\\\n", " \x00").split("\n"):  # a continued command is one line
        for match in _CALL.finditer(line):
            rest = line[match.end():]
            end = _END.search(rest)
            rest = rest[:end.start()] if end else rest
            yield number + line[:match.start()].count("\x00"), match.group(1).split(), rest
        number += line.count("\x00") + 1


def _mistakes(text: str) -> list[str]:
    main, commands = _commands()
    top = _options(main) | {"--version"}
    found = []
    for number, words, rest in _calls(text):
        path = next((tuple(words[:k]) for k in (3, 2, 1) if tuple(words[:k]) in commands), None)
        if path is None:
            continue  # prose: "certkit writes ..."
        command = commands[path]
        given = " ".join(words[len(path):]) + " " + rest
        for option in _OPTION.findall(given):
            if option not in _options(command) and option not in top:
                found.append(f"line {number}: certkit {' '.join(path)} has no option {option}")
    return found


PAGES = sorted(p.name for p in (REPO / "docs").glob("*.md")) + ["README.md"]


@pytest.mark.parametrize("page", PAGES)
def test_every_option_a_page_names_is_one_the_command_has(page: str) -> None:
    path = REPO / page if page == "README.md" else REPO / "docs" / page
    mistakes = _mistakes(path.read_text())
    assert not mistakes, f"{page}: " + "; ".join(mistakes)


def test_every_option_a_help_example_names_is_one_the_command_has() -> None:
    main, commands = _commands()
    mistakes = []
    for path in commands:
        result = CliRunner().invoke(main, [*path, "--help"])
        assert result.exit_code == 0, result.output
        mistakes += [f"certkit {' '.join(path)} --help, {m}" for m in _mistakes(result.output)]
    assert not mistakes, "; ".join(mistakes)


def test_the_check_sees_a_renamed_option() -> None:
    """The check itself: an option a command lacks is found in prose, in a continued command, in a
    table, and an option of another command after ``&&`` or in the prose that follows is not."""
    text = (
        "Run `certkit issue-server web --no-such-option` to see.\n"
        "$ certkit crl --der \\\n    --next-update 7\n"
        "| `certkit probe host:443 --retries 3` | x |\n"
        "certkit revoke ./x --reason superseded && certkit crl --out crl.pem\n"
        "Error: ... e.g. 'certkit init-ca --permit-dns a.example', can ... Pass --unconstrained to trust it.\n"
    )
    assert _mistakes(text) == [
        "line 1: certkit issue-server has no option --no-such-option",
        "line 2: certkit crl has no option --next-update",
        "line 4: certkit probe has no option --retries",
    ]


def test_readme_says_which_exit_a_json_usage_mistake_reports(tmp_path) -> None:
    """README.md showed every --json error as ``"exit": 1``; a usage mistake (an unknown option, a bad
    value, a missing argument) reports ``"exit": 2`` and exits 2. The page now says so, and a real run
    agrees with it."""
    import json
    import os
    import subprocess
    import sys

    readme = " ".join((REPO / "README.md").read_text().split())
    assert '`"exit": 2` for a usage mistake' in readme
    env = {**os.environ, "HOME": str(tmp_path), "CERTKIT_CA_DIR": str(tmp_path / "ca")}
    for args in (["list", "--json", "--bogus"], ["crl", "--json", "--days", "0"], ["issue-server", "--json"]):
        run = subprocess.run([sys.executable, "-m", "certkit", *args], capture_output=True, text=True,
                             env=env, cwd=tmp_path, timeout=60)
        assert run.returncode == 2, (args, run)
        assert json.loads(run.stdout)["exit"] == 2 and run.stderr == "", (args, run)


def test_crl_help_and_page_say_where_a_der_crl_without_out_goes(tmp_path, ca_dir, ca_env) -> None:
    """``certkit crl --help`` said ``--out`` [default, or -: PEM on stdout] and docs/crl.md "Without
    --out the PEM goes to stdout"; but ``certkit crl --der > crl.der`` writes DER there (openssl reads
    it as DER), and a DER CRL to a terminal is refused. Both now say so."""
    import os
    import pty
    import subprocess
    import sys

    from tests.conftest import run_certkit

    shown = " ".join(run_certkit("crl", "--help", env=ca_env, check=True).stdout.split())
    assert "PEM on stdout" not in shown and "with --der, a stdout that is no terminal" in shown
    page = " ".join((REPO / "docs" / "crl.md").read_text().split())
    assert "Without `--out` (or with `--out -`) the CRL goes to stdout, PEM or DER alike" in page
    assert "a stdout that is a terminal is refused" in page

    with open(tmp_path / "crl.der", "wb") as out:  # DER on a stdout that is a file: what the page says
        run = subprocess.run([sys.executable, "-m", "certkit", "crl", "--der"], stdout=out,
                             stderr=subprocess.PIPE, env=ca_env, cwd=tmp_path, timeout=60)
    assert run.returncode == 0, run.stderr
    parsed = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(tmp_path / "crl.der"), "-noout",
                             "-nextupdate"], capture_output=True, text=True)
    assert parsed.returncode == 0 and "nextUpdate=" in parsed.stdout, parsed

    main, tty = pty.openpty()  # and refused on a terminal, with no partial output
    try:
        run = subprocess.run([sys.executable, "-m", "certkit", "crl", "--der"], stdout=tty,
                             stderr=subprocess.PIPE, env=ca_env, cwd=tmp_path, timeout=60, text=True)
    finally:
        os.close(tty)
        os.close(main)
    assert run.returncode == 2 and "Error: A DER CRL is binary" in run.stderr, run
