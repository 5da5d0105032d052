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

    return sorted(main.commands)


@pytest.mark.parametrize("args", [("--help",), ("--version",), ("-h",)])
def test_help_and_version_do_not_import_the_crypto_stack(args: tuple[str, ...]) -> None:
    assert loaded_by(*args) == set()


def test_no_command_help_imports_cryptography() -> None:
    names = command_names()
    assert "issue-batch" in names and "issue-server" in names
    for name in names:
        assert "cryptography" not in loaded_by(name, "--help"), name


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
