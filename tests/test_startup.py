"""Start-up discipline: what each entry point imports (never how long it takes: that is in benchmarks/)."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from conftest import certkit_env

# Runs certkit as ``python -m certkit`` does, then reports which heavy modules got loaded.
_PROBE = """
import runpy, sys
sys.argv = ["certkit", *sys.argv[1:]]
try:
    runpy.run_module("certkit", run_name="__main__")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = ("cryptography", "idna", "publicsuffixlist", "sqlite3")
print(repr({"code": code, "loaded": sorted({m.split(".")[0] for m in sys.modules} & set(heavy))}),
      file=sys.stderr)
"""


def loaded_by(*args: str, env: dict | None = None, cwd=None) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True,
                          env=env or certkit_env(), cwd=cwd, timeout=120)
    report = ast.literal_eval(proc.stderr.strip().splitlines()[-1])
    assert report["code"] in (0, None), proc
    return set(report["loaded"])


def command_names() -> list[str]:
    from certkit.cli import main

    return main.list_commands(None)  # every command, the lazily loaded ones included


@pytest.mark.parametrize("args", [("--help",), ("--version",), ("-h",)])
def test_help_and_version_do_not_import_the_crypto_stack(args: tuple[str, ...]) -> None:
    assert loaded_by(*args) == set()


def test_no_command_help_imports_cryptography() -> None:
    names = command_names()
    assert "issue-batch" in names and "issue-server" in names
    for name in names:
        loaded = loaded_by(name, "--help")
        assert "cryptography" not in loaded, name


def test_one_shot_issue_loads_only_what_the_names_need(tmp_path, ca_env) -> None:
    from conftest import run_certkit

    run_certkit("init-ca", env=ca_env, check=True)
    # A plain ASCII name needs neither the IDNA tables nor the public suffix list.
    plain = loaded_by("issue-server", "web.example.com", env=ca_env, cwd=tmp_path)
    assert {"cryptography", "sqlite3"} <= plain
    assert not plain & {"idna", "publicsuffixlist"}
    # A wildcard loads the public suffix list, an internationalized name the IDNA tables.
    assert "publicsuffixlist" in loaded_by("issue-server", "*.dev.example.com", env=ca_env, cwd=tmp_path)
    assert "idna" in loaded_by("issue-server", "bücher.example", env=ca_env, cwd=tmp_path)


def test_fast_help_is_what_click_renders() -> None:
    """certkit.entry answers --help from _help.txt without click; it must stay click's text.
    If this fails, run: python -m certkit.entry --regenerate"""
    from certkit.entry import HELP_FILE, render_help

    with open(HELP_FILE, encoding="utf-8") as f:
        assert f.read() == render_help()
    proc = subprocess.run([sys.executable, "-m", "certkit", "--help"], capture_output=True, text=True,
                          env=certkit_env(COLUMNS="120"), timeout=60)
    assert proc.returncode == 0 and proc.stdout == render_help()


def test_fast_version_is_what_click_prints() -> None:
    from click.testing import CliRunner

    from certkit.cli import main

    click_says = CliRunner().invoke(main, ["--version"], prog_name="certkit").output
    proc = subprocess.run([sys.executable, "-m", "certkit", "--version"], capture_output=True, text=True,
                          env=certkit_env(), timeout=60)
    assert proc.stdout == click_says


def test_narrow_terminal_help_comes_from_click() -> None:
    proc = subprocess.run([sys.executable, "-m", "certkit", "--help"], capture_output=True, text=True,
                          env=certkit_env(COLUMNS="60"), timeout=60)
    assert proc.returncode == 0 and "Commands:" in proc.stdout
    assert max(len(line) for line in proc.stdout.splitlines()) <= 60


def test_one_shot_loads_no_other_command_module(tmp_path, ca_env) -> None:
    from conftest import run_certkit

    run_certkit("init-ca", env=ca_env, check=True)
    code = ("import sys, runpy; sys.argv = ['certkit', 'issue-client', 'x']\n"
            "try:\n    runpy.run_module('certkit', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('certkit.cli')), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ca_env,
                          cwd=tmp_path, timeout=120)
    assert (tmp_path / "x" / "cert.pem").exists(), proc.stderr
    # the group, the shared helpers (the argument check every command runs, the summary and --json every
    # issuing command builds in one place, and the secret readers that unlock the CA), and the one module
    # that defines issue-client; path_types holds the path parameter types common's options use
    assert ast.literal_eval(proc.stderr.strip().splitlines()[-1]) == ["certkit.cli", "certkit.cli.arguments",
                                                                      "certkit.cli.common", "certkit.cli.issue",
                                                                      "certkit.cli.output",
                                                                      "certkit.cli.path_types",
                                                                      "certkit.cli.secrets_input"]
