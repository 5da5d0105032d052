"""Every command in the lifecycle docs pages runs, in order, and does what the page shows.

A small runner: in each ```console block, a line starting with ``$ `` is a command; the lines up
to the next command are what the page shows it printing. Each page runs in its own empty folder
in one bash session (so ``export`` and ``cd`` carry over), with ``certkit`` on PATH running this
worktree, and $CERTKIT_CA_PASSPHRASE set. A command must exit 0 unless the page shows it failing
(an ``Error:`` line or an openssl ``error ...`` line). Shown lines that are stable (``Error:``,
``error ...``, ``...: OK``, ``verify OK``) must appear in the output, ``...`` standing for any text.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import PASSPHRASE, REPO, certkit_env

PAGES = ["sign-csr.md", "list.md", "renew.md", "revoke.md", "crl.md", "two-tier-pki.md"]


def commands(page: Path) -> list[tuple[str, list[str]]]:
    found: list[tuple[str, list[str]]] = []
    in_console = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_console = line.strip() == "```console"
            continue
        if not in_console:
            continue
        if line.startswith("$ "):
            found.append((line[2:], []))
        elif found:
            found[-1][1].append(line)
    return found


def _checked(line: str) -> bool:
    return line.startswith(("Error:", "error ")) or line.endswith(": OK") or line == "verify OK"


def _pattern(line: str) -> re.Pattern:
    return re.compile(".*".join(re.escape(part) for part in line.split("...")) + r"\Z")


@pytest.mark.parametrize("name", PAGES)
def test_doc_page_commands(tmp_path, name):
    page = REPO / "docs" / name
    steps = commands(page)
    assert steps, f"{name} has no commands"
    bin_dir = tmp_path / ".bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "certkit"
    wrapper.write_text(f'#!/bin/sh\nexec "{os.sys.executable}" -m certkit "$@"\n')
    wrapper.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    logs = tmp_path / ".logs"
    logs.mkdir()
    script = ["set -u"]
    for i, (cmd, _shown) in enumerate(steps):
        script.append(f"{{ {cmd}\n}} > {logs}/out.{i} 2> {logs}/err.{i} < /dev/null; echo $? > {logs}/rc.{i}")
    env = certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(["bash", "-c", "\n".join(script)], cwd=work, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    for i, (cmd, shown) in enumerate(steps):
        rc = int((logs / f"rc.{i}").read_text())
        out = (logs / f"out.{i}").read_text() + (logs / f"err.{i}").read_text()
        fails = any(line.startswith(("Error:", "error ")) for line in shown)
        where = f"{name}: $ {cmd}\n(exit {rc})\n{out}"
        assert (rc != 0) == fails, where
        if fails:
            assert "Traceback" not in out, where
        actual = [line.rstrip() for line in out.splitlines()]
        for line in filter(_checked, shown):
            assert any(_pattern(line).match(a) for a in actual), f"{where}\nexpected a line like: {line}"
