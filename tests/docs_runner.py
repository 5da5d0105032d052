"""Run the examples in a Markdown page, so documentation cannot drift from the program.

A page's ```console blocks hold shell sessions: a line starting with ``$ ``
is a command (a trailing ``\\`` continues it on the next line), the lines
after it up to the next command are its documented output. Each command runs
with bash in one shared folder, in order, with ``certkit`` on PATH meaning
this worktree's ``python -m certkit``. Checks per command:

- exit status: non-zero if the documented output has a line starting with
  ``Error:``, else zero;
- output: every documented line appears in the real output (stdout, then
  stderr), in the same order; runs of spaces compare equal, and ``...``
  stands for any text (serial numbers, dates, paths).

``export NAME=value`` sets the variable for the commands after it. A command
ending in `` &`` (a server) is started in the background, the next
command runs once ``wait_port`` (if given) accepts connections, and every
such process is stopped when the page is done. ``substitutions`` replace
text in commands before they run (a documented port by a free one).

Usage::

    from tests.docs_runner import run_page
    run_page(REPO / "docs" / "verify.md", cwd=tmp_path, env=ca_env)
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

_FENCE = re.compile(r"^```console[ \t]*\n(.*?)^```", re.S | re.M)


@dataclass
class Example:
    command: str
    line: int  # 1-based line of the command in the page
    expected: list[str] = field(default_factory=list)

    @property
    def expects_error(self) -> bool:
        return any(ln.startswith("Error:") for ln in self.expected)


def examples(page: Path) -> list[Example]:
    """The commands of every ```console block in ``page``, with their documented output."""
    text = page.read_text(encoding="utf-8")
    found: list[Example] = []
    for block in _FENCE.finditer(text):
        first_line = text.count("\n", 0, block.start(1)) + 1
        current: Example | None = None
        continuing = False
        for offset, raw in enumerate(block.group(1).splitlines()):
            if continuing and current is not None:
                current.command = current.command[:-1] + "\n" + raw
            elif raw.startswith("$ "):
                current = Example(raw[2:], first_line + offset)
                found.append(current)
            elif current is not None and raw.strip():
                current.expected.append(raw.rstrip())
            continuing = current is not None and current.command.endswith("\\")
    return found


def _pattern(line: str) -> re.Pattern:
    parts = [re.escape(" ".join(p.split())) for p in line.split("...")]
    return re.compile(".*".join(parts))


def _matches(expected: list[str], actual: list[str]) -> str | None:
    """None if ``expected`` lines appear in ``actual`` in order, else the first missing line."""
    lines = iter(" ".join(a.split()) for a in actual)
    for want in expected:
        pattern = _pattern(want)
        if not any(pattern.fullmatch(have) for have in lines):
            return want
    return None


def certkit_shim(folder: Path) -> Path:
    """A ``certkit`` executable in ``folder`` that runs this interpreter's ``-m certkit``."""
    folder.mkdir(parents=True, exist_ok=True)
    shim = folder / "certkit"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m certkit "$@"\n')
    shim.chmod(0o755)
    return folder


def run_page(page: Path, *, cwd: Path, env: dict[str, str], timeout: float = 60,
             substitutions: dict[str, str] | None = None, wait_port: int | None = None) -> list[Example]:
    """Run every example of ``page`` in ``cwd``; raise AssertionError at the first that fails."""
    found = examples(page)
    assert found, f"{page} has no ```console examples"
    env = dict(env)
    env["PATH"] = str(certkit_shim(cwd.parent / f".{cwd.name}-bin")) + os.pathsep + env.get("PATH", "")
    background: list[subprocess.Popen] = []
    try:
        for ex in found:
            command = ex.command
            for old, new in (substitutions or {}).items():
                command = command.replace(old, new)
            where = f"{page.name}:{ex.line}: $ {command}"
            if command.startswith("export "):  # each command has its own shell; keep exports
                for assignment in shlex.split(command)[1:]:
                    name, _, value = assignment.partition("=")
                    env[name] = value
                continue
            if command.rstrip().endswith("&"):
                log = open(cwd.parent / f".{cwd.name}-bg{len(background)}.log", "w")  # noqa: SIM115
                background.append(subprocess.Popen(["bash", "-c", command.rstrip()[:-1]], cwd=cwd, env=env,
                                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                   start_new_session=True))
                log.close()
                if wait_port is not None:
                    _wait_for_port(wait_port, background[-1], where)
                continue
            proc = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True,
                                  text=True, timeout=timeout)
            shown = f"\n--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"
            assert "Traceback" not in proc.stderr, f"{where} printed a traceback{shown}"
            if ex.expects_error:
                assert proc.returncode != 0, f"{where} should fail (documented Error:) but exited 0{shown}"
            else:
                assert proc.returncode == 0, f"{where} exited {proc.returncode}{shown}"
            missing = _matches(ex.expected, proc.stdout.splitlines() + proc.stderr.splitlines())
            assert missing is None, f"{where}: documented line not in the output:\n  {missing}{shown}"
    finally:
        for proc in background:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
    return found


def _wait_for_port(port: int, proc: subprocess.Popen, where: str, limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{where} exited with {proc.returncode} before listening on {port}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{where} did not listen on 127.0.0.1:{port} within {limit} s")
