"""Round twenty-two, the lead's own findings."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _certkit(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CERTKIT_CA_DIR": str(tmp_path / "ca"), "LANG": "C.UTF-8"}
    return subprocess.run([sys.executable, "-m", "certkit", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60)


@pytest.mark.parametrize(("typed", "meant"), [
    (["isue-server", "web.internal"], "'issue-server'"),
    (["renw", "--all"], "'renew'"),
    (["LIST"], "'list'"),
    (["issue", "x"], "one of 'issue-batch', 'issue-client', 'issue-peer', 'issue-server'"),
    (["trust", "instal"], "'install'"),
    (["acme", "srve"], "'serve'"),
    (["inventory", "migate"], "'migrate'"),
])
def test_a_mistyped_command_names_the_one_it_looks_like(tmp_path, typed, meant):
    """click alone said only "No such command 'isue-server'."; git, cargo and kubectl name the command meant."""
    proc = _certkit(tmp_path, *typed)
    assert proc.returncode == 2, proc
    last = proc.stderr.strip().splitlines()[-1]
    assert last == f"Error: No such command '{typed[1] if typed[0] in ('trust', 'acme', 'inventory') else typed[0]}'." \
                   f" Did you mean {meant}?", proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "ca").exists()
    as_json = json.loads(_certkit(tmp_path, *typed, "--json").stdout)
    assert as_json["error"] == last.removeprefix("Error: ") and as_json["exit"] == 2


@pytest.mark.parametrize("typed", [["zzz"], ["trust", "bogus"]])
def test_a_command_like_none_is_refused_without_a_guess(tmp_path, typed):
    proc = _certkit(tmp_path, *typed)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == f"Error: No such command '{typed[-1]}'."
