"""Run docs/mtls.md, docs/serve.md and docs/pkcs12.md as written: every command, in order.

The pages are shell sessions in ```console blocks. A small runner here (not
shared, so the pages' extra needs stay visible in one place) handles:

- ``$ command`` lines (a trailing ``\\`` continues a command); the lines after a
  command are its documented output, each of which must appear in the real
  output, in order; runs of spaces compare equal and ``...`` stands for any
  text. A command is expected to exit 0 unless its output shows ``Error:``.
- ``export``/``cd`` carry over to the next command, as in a terminal.
- ``$ command &`` starts a background job (a server); the runner waits until its
  documented output has appeared. ``$ kill %N`` stops job N with SIGTERM and
  requires a clean exit (status 0).
- ``<!-- file: PATH -->`` right before a fenced block writes that block to PATH.
- Ports in the pages (8443) are replaced with a free port.

nginx (docs/mtls.md) is the Debian package, started by the page's own command
with its own prefix, configuration and pid file on a free 127.0.0.1 port; the
test stops it whatever happens.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import REPO, certkit_env, free_port

DOCS = REPO / "docs"
_FILE_MARK = re.compile(r"^<!--\s*file:\s*(\S+)\s*-->\s*$")
_KILL = re.compile(r"^kill %(\d+)$")


@dataclass
class Step:
    kind: str  # "run" | "file"
    text: str
    line: int
    expected: list[str] = field(default_factory=list)
    path: str | None = None

    @property
    def expects_error(self) -> bool:
        return any(ln.startswith("Error:") for ln in self.expected)


def steps(page: Path) -> list[Step]:
    """The commands and files of ``page``, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Step] = []
    pending_file: str | None = None
    i = 0
    while i < len(lines):
        mark = _FILE_MARK.match(lines[i])
        if mark:
            pending_file = mark.group(1)
        elif lines[i].startswith("```"):
            lang, start = lines[i][3:].strip(), i + 1
            i += 1
            while not lines[i].startswith("```"):
                i += 1
            body = lines[start:i]
            if pending_file:
                found.append(Step("file", "\n".join(body) + "\n", start, path=pending_file))
            elif lang == "console":
                found += _commands(body, start + 1)
            pending_file = None
        elif lines[i].strip():
            pending_file = None  # a file mark applies to the block right after it only
        i += 1
    return found


def _commands(body: list[str], first_line: int) -> list[Step]:
    found: list[Step] = []
    current: Step | None = None
    for offset, raw in enumerate(body):
        if current is not None and current.text.endswith("\\"):
            current.text += "\n" + raw  # bash joins the lines itself
        elif raw.startswith("$ "):
            current = Step("run", raw[2:], first_line + offset)
            found.append(current)
        elif current is not None and raw.strip():
            current.expected.append(raw.rstrip())
    return found


def _missing(expected: list[str], output: str) -> str | None:
    """The first documented line that is not in ``output`` (in order), or None."""
    actual = iter(" ".join(line.split()) for line in output.splitlines())
    for want in expected:
        pattern = re.compile(".*".join(re.escape(" ".join(p.split())) for p in want.split("...")))
        if not any(pattern.fullmatch(have) for have in actual):
            return want
    return None


class Session:
    """A shell session in ``cwd``: environment and folder carry over between commands."""

    def __init__(self, page: Path, cwd: Path, env: dict[str, str], substitutions: dict[str, str]) -> None:
        self.page, self.cwd, self.subs = page, cwd, substitutions
        self.state = cwd.parent / f".{cwd.name}-shell"
        bin_dir = self.state / "bin"
        bin_dir.mkdir(parents=True)
        # `certkit` and `python3` as a reader has them: this checkout, this interpreter.
        (bin_dir / "certkit").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m certkit "$@"\n')
        (bin_dir / "certkit").chmod(0o755)
        (bin_dir / "python3").symlink_to(sys.executable)
        self.env = dict(env, PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
        self.jobs: list[tuple[subprocess.Popen, Path, Step]] = []

    def _sub(self, text: str) -> str:
        for old, new in self.subs.items():
            text = text.replace(old, new)
        return text

    def run(self, step: Step) -> None:
        where = f"{self.page.name}:{step.line}"
        if step.kind == "file":
            path = self.cwd / step.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self._sub(step.text))
            return
        command, expected = self._sub(step.text), [self._sub(e) for e in step.expected]
        if (kill := _KILL.match(command)) is not None:
            self._stop_job(int(kill.group(1)), where)
        elif command.endswith("&"):
            self._start_job(command[:-1].strip(), expected, step, where)
        else:
            self._run_foreground(command, expected, step, where)

    def _run_foreground(self, command: str, expected: list[str], step: Step, where: str) -> None:
        env_file, pwd_file = self.state / "env", self.state / "pwd"
        script = f"{command}\n__rc=$?\nenv -0 > '{env_file}'\npwd > '{pwd_file}'\nexit $__rc\n"
        # One pipe for both streams keeps their lines in the order a terminal shows them.
        proc = subprocess.run(["bash", "-o", "pipefail", "-c", script], cwd=self.cwd, env=self.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        shown = f"\n$ {command}\n--- output\n{proc.stdout}"
        assert "Traceback" not in proc.stdout, f"{where}: traceback{shown}"
        if step.expects_error:
            assert proc.returncode != 0, f"{where}: documented as failing, exited 0{shown}"
        else:
            assert proc.returncode == 0, f"{where}: exited {proc.returncode}{shown}"
        missing = _missing(expected, proc.stdout)
        assert missing is None, f"{where}: documented line not in the output:\n  {missing}{shown}"
        if env_file.exists():
            pairs = [item.split("=", 1) for item in env_file.read_text().split("\0") if "=" in item]
            self.env = {k: v for k, v in pairs if not k.startswith("BASH_FUNC_") and k != "_"}
            self.cwd = Path(pwd_file.read_text().strip())

    def _start_job(self, command: str, expected: list[str], step: Step, where: str) -> None:
        log = self.state / f"job{len(self.jobs) + 1}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=self.cwd, env=self.env,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.jobs.append((proc, log, step))
        deadline = time.monotonic() + 30
        while (missing := _missing(expected, log.read_text())) is not None:
            assert proc.poll() is None, f"{where}: background job exited {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"{where}: never printed {missing!r}:\n{log.read_text()}"
            time.sleep(0.1)

    def _stop_job(self, number: int, where: str) -> None:
        proc, log, _ = self.jobs[number - 1]
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"{where}: job {number} ignored SIGTERM:\n{log.read_text()}") from None
        assert code == 0, f"{where}: job {number} exited {code}:\n{log.read_text()}"
        assert "Traceback" not in log.read_text(), log.read_text()

    def job_output(self, number: int) -> str:
        return self.jobs[number - 1][1].read_text()

    def close(self) -> None:
        for proc, _, _ in self.jobs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def run_page(page: Path, cwd: Path, env: dict[str, str], substitutions: dict[str, str]) -> Session:
    found = steps(page)
    assert any(s.kind == "run" for s in found), f"{page} has no commands"
    session = Session(page, cwd, env, substitutions)
    try:
        for step in found:
            session.run(step)
    finally:
        session.close()
    return session


@pytest.fixture
def page_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: no CERTKIT_* from the outside (pages set what they need), and a
    HOME of its own, since pages write to ~ (pkcs12.md imports into ~/.pki/nssdb)."""
    home = tmp_path / "home"
    home.mkdir()
    return certkit_env(HOME=str(home))


# --- the runner itself ---------------------------------------------------------------------
def test_runner_reads_commands_outputs_and_files(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n<!-- file: a.txt -->\n```text\nhello\n```\n\n```console\n"
                    "$ cat a.txt \\\n  | tr a-z A-Z\nHELLO\n$ echo 'Error: no' >&2; false\nError: ...\n```\n")
    found = steps(page)
    assert [(s.kind, s.text, s.expected, s.path) for s in found] == [
        ("file", "hello\n", [], "a.txt"),
        ("run", "cat a.txt \\\n  | tr a-z A-Z", ["HELLO"], None),
        ("run", "echo 'Error: no' >&2; false", ["Error: ..."], None),
    ]
    work = tmp_path / "work"
    work.mkdir()
    run_page(page, work, certkit_env(), {})


def test_runner_catches_wrong_output(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text("```console\n$ echo hello\ngoodbye\n```\n")
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(AssertionError, match="documented line not in the output"):
        run_page(page, work, certkit_env(), {})


# --- the pages -----------------------------------------------------------------------------
@pytest.mark.skipif(not shutil.which("nginx") or not shutil.which("curl"),
                    reason="docs/mtls.md needs nginx and curl (Debian: nginx-light or nginx, curl)")
def test_mtls_walkthrough(tmp_path: Path, page_env: dict[str, str]):
    pytest.importorskip("requests", reason="docs/mtls.md's Python client uses requests (pip install requests)")
    work = tmp_path / "walk"
    work.mkdir()
    port = free_port()
    try:
        run_page(DOCS / "mtls.md", work, page_env, {"8443": str(port)})
    finally:
        _stop_nginx(work / "nginx")
    log = (work / "nginx" / "access.log").read_text()
    assert log.count('"GET / HTTP/1.1" 200') == 4  # alice and bob with curl, then with Python
    assert log.count('"GET / HTTP/1.1" 400') == 2  # no certificate; the server's certificate


def _stop_nginx(prefix: Path) -> None:
    pid_file = prefix / "nginx.pid"
    deadline = time.monotonic() + 10
    while pid_file.exists() and time.monotonic() < deadline:  # the page's `-s stop`, or ours
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            break
        time.sleep(0.1)
    assert not pid_file.exists(), "nginx did not stop"


@pytest.mark.skipif(not shutil.which("curl"), reason="docs/serve.md uses curl (Debian: curl)")
def test_serve_page(tmp_path: Path, page_env: dict[str, str]):
    work = tmp_path / "serve"
    work.mkdir()
    session = run_page(DOCS / "serve.md", work, page_env, {"8443": str(free_port())})
    log = session.job_output(1)
    assert 'accepted 127.0.0.1:' in log and 'client "alice"' in log
    assert "certificate verify failed: unsuitable certificate purpose" in log
    assert "no client certificate (peer did not return a certificate)" in log
    assert log.rstrip().endswith("stopped")


_PKCS12_PAGE_TOOLS = ("keytool", "curl", "pk12util", "certutil")


@pytest.mark.skipif(not all(map(shutil.which, _PKCS12_PAGE_TOOLS)),
                    reason="docs/pkcs12.md uses keytool, curl, pk12util and certutil "
                           "(Debian: default-jdk-headless, curl, libnss3-tools)")
def test_pkcs12_page(tmp_path: Path, page_env: dict[str, str]):
    work = tmp_path / "p12"
    work.mkdir()
    run_page(DOCS / "pkcs12.md", work, page_env, {"8443": str(free_port())})
    assert (Path(page_env["HOME"]) / ".pki" / "nssdb" / "cert9.db").exists()
