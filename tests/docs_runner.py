"""Run the examples in a Markdown page, so documentation cannot drift from the program.

Pages are shell sessions in ```console blocks:

- ``$ command`` lines (a trailing ``\\`` continues a command); the lines after a
  command are its documented output, each of which must appear in the real
  output (stdout and stderr, as a terminal interleaves them), in order; runs of
  spaces compare equal and ``...`` stands for any text (a line of its own: at
  least one line of output, not shown). A command must exit 0 unless its
  documented output shows ``Error:``; a page that states the exact status does
  it in the shell (``$ cmd; echo "exit status $?"``), and that line is checked
  like any other. A failing ``certkit`` command exits 1, or 2 for a usage mistake (the page shows
  its ``Usage:`` line), as README.md says.
- A command shown with no output after, in the same block, a command whose
  output is shown reads as "prints nothing", so it must print nothing (a page
  writes ``...`` for output it leaves out). The commands a block opens with,
  before any output, are the setup a reader types and are not held to this.
- ``export``/``cd`` carry over to the next command, as in a terminal; ``certkit``
  and ``python3`` mean this checkout and this interpreter.
- ``$ command &`` starts a background job (a server); the runner waits until its
  documented output has appeared. ``$ kill %N`` stops job N with SIGTERM and
  requires a clean exit (status 0; for certkit, which exits as every certkit
  command SIGTERM stops, 143). Jobs still running at the end are killed.
- ``<!-- file: PATH -->`` right before a fenced block writes that block to PATH.
- ``<!-- output of job N -->`` right before a fenced block: its lines are what background job N
  has printed by then (checked as a command's documented output is, in order, ``...`` for any text).
- Every other fenced block says why the page's run does not run it: ``<!-- run by: tests/FILE.py
  -->`` (a test of its own runs it), ``<!-- not run: REASON -->``; or it is a command's synopsis (a
  plain block that starts with ``certkit ``) or a manifest named in its fence (```` ```csv fleet.csv
  ````), which their own tests read. :func:`unexplained_blocks` finds the blocks that do neither.
- ``substitutions`` replace text in commands and files (a documented port by a free one).

Python examples (```python blocks without a file mark) are run as scripts by the tests
(:func:`python_blocks`, :func:`run_python`); ``<!-- python: skip REASON -->`` right before one
says why it cannot run there, and the tests report that reason.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

_FILE_MARK = re.compile(r"^<!--\s*file:\s*(\S+)\s*-->\s*$")
_JOB_OUTPUT_MARK = re.compile(r"^<!--\s*output of job (\d+)\s*-->\s*$")
_ELSEWHERE_MARK = re.compile(r"^<!--\s*(run by|not run):\s*(.*?)\s*-->\s*$")
_KILL = re.compile(r"^kill %(\d+)$")


@dataclass
class Step:
    kind: str  # "run" | "file" | "job output"
    text: str
    line: int
    expected: list[str] = field(default_factory=list)
    path: str | None = None
    after_output: bool = False  # an earlier command of its block has documented output
    job: int = 0  # for a "job output" step: the background job whose output it shows

    @property
    def expects_error(self) -> bool:
        # "cmd || echo ..." and "cmd; echo $?" show a refusal but succeed as a whole
        return (any(ln.startswith("Error:") for ln in self.expected)
                and "||" not in self.text and "$?" not in self.text)


def steps(page: Path) -> list[Step]:
    """The commands and files of ``page``, in order."""
    found: list[Step] = []
    for block in blocks(page):
        if block.mark and (file := _FILE_MARK.match(block.mark)):
            found.append(Step("file", "\n".join(block.body) + "\n", block.line, path=file.group(1)))
        elif block.mark and (job := _JOB_OUTPUT_MARK.match(block.mark)):
            found.append(Step("job output", "", block.line, expected=block.body, job=int(job.group(1))))
        elif block.lang == "console":
            found += _commands(block.body, block.line + 1)
    return found


@dataclass
class Block:
    lang: str  # what follows the opening ```: "console", "python", "csv fleet.csv", ""
    body: list[str]
    line: int  # of the opening fence
    mark: str | None  # the <!-- ... --> line right before it, if any
    indent: str = ""  # of its fence: a block in a list item is indented

    @property
    def synopsis(self) -> bool:
        """A command's synopsis (``certkit crl [--out FILE] ...``): test_audit14_docs checks its options."""
        return self.lang == "" and not self.indent and bool(self.body) and self.body[0].startswith("certkit ") \
            and "[" in self.body[0]


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page``, each with the mark right before it (a mark applies to that block only)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    mark: str | None = None
    i = 0
    while i < len(lines):
        text = lines[i].strip()
        if text.startswith("<!--") and text.endswith("-->"):
            mark = text
        elif text.startswith("```"):  # also indented, in a list item
            start, indent = i, lines[i][:len(lines[i]) - len(lines[i].lstrip())]
            i += 1
            while not lines[i].strip().startswith("```"):
                i += 1
            body = [line.removeprefix(indent) for line in lines[start + 1:i]]
            found.append(Block(text[3:].strip(), body, start + 1, mark, indent))
            mark = None
        elif text:
            mark = None
        i += 1
    return found


def unexplained_blocks(page: Path) -> list[str]:
    """The fenced blocks of ``page`` that nothing runs and no mark explains, as 'PAGE:LINE'; and the
    marks that name a test that does not exist or never names this page."""
    found = []
    for block in blocks(page):
        where = f"{page.name}:{block.line}"
        elsewhere = _ELSEWHERE_MARK.match(block.mark or "")
        if elsewhere and elsewhere.group(1) == "run by":
            test = page.parent.parent / elsewhere.group(2) if page.parent.name == "docs" else \
                page.parent / elsewhere.group(2)
            if not (test.is_file() and page.name in test.read_text(encoding="utf-8")):
                found.append(f"{where}: its mark names {elsewhere.group(2)}, which does not run {page.name}")
        elif elsewhere:
            if not elsewhere.group(2):
                found.append(f"{where}: 'not run' without a reason")
        elif not (block.lang in ("console", "python") or (block.mark and (
                _FILE_MARK.match(block.mark) or _JOB_OUTPUT_MARK.match(block.mark)))
                  or block.synopsis
                  or len(block.lang.split()) == 2):
            found.append(f"{where}: a ```{block.lang} block that nothing runs (mark it 'run by' or 'not run')")
    return found


@dataclass
class PythonBlock:
    code: str
    line: int  # of its first line of code
    skip: str | None = None  # the reason a <!-- python: skip REASON --> mark gives


_PYTHON = re.compile(r"(?:<!--[ \t]*(file|python):[ \t]*([^\n]*?)[ \t]*-->\s*\n)?```python\n(.*?)```", re.S)
# print(...)  # what it prints: the comment states the output line, checked loosely
_PRINTED = re.compile(r"^\s*print\(.*\)\s+#\s*(.+)$", re.M)


def python_blocks(page: Path) -> list[PythonBlock]:
    """The Python examples of ``page``: its ```python blocks, less those a file mark makes a file
    for a console step (the page's run writes and runs those)."""
    text = page.read_text(encoding="utf-8")
    found = []
    for m in _PYTHON.finditer(text):
        mark, value, code = m.groups()
        if mark == "file":
            continue
        skip = value.removeprefix("skip").strip() if mark == "python" else None
        assert skip is None or (value.startswith("skip") and skip), f"{page}: python mark without a reason: {value!r}"
        found.append(PythonBlock(code, text[:m.start(3)].count("\n") + 1, skip))
    return found


def run_python(code: str, *, cwd: Path, env: dict[str, str], where: str = "example") -> str:
    """Run ``code`` as a script in ``cwd``: it must exit 0, and print what its ``print(...)  # words``
    comments say (each word, loosely). Returns its output."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{where}: exited {proc.returncode}\n{proc.stdout}{proc.stderr}"
    for expected in _PRINTED.findall(code):
        for word in expected.split():
            assert word in proc.stdout, (where, word, proc.stdout)
    return proc.stdout


def _commands(body: list[str], first_line: int) -> list[Step]:
    found: list[Step] = []
    current: Step | None = None
    for offset, raw in enumerate(body):
        if current is not None and current.text.endswith("\\"):
            current.text += "\n" + raw  # bash joins the lines itself
        elif raw.startswith("$ "):
            current = Step("run", raw[2:], first_line + offset, after_output=any(s.expected for s in found))
            found.append(current)
        elif current is not None and raw.strip():
            current.expected.append(raw.rstrip())
    return found


def _missing(expected: list[str], output: str) -> str | None:
    """The first documented line that is not in ``output`` (in order), or None."""
    actual = iter(" ".join(line.split()) for line in output.splitlines())
    for want in expected:
        if want.strip() == "...":  # any number of lines, none included: the search below skips them anyway
            continue
        pattern = re.compile(".*".join(re.escape(" ".join(p.split())) for p in want.split("...")))
        if not any(pattern.fullmatch(have) for have in actual):
            return want
    return None


def _unshown(expected: list[str], output: str) -> str | None:
    """A page shows a command's output whole, but where a '...' line stands for any number of lines (a
    '...' inside a line for any text): the first output line (blank lines aside) that neither a shown
    line nor a '...' line accounts for, or None. Lines left out between two shown lines need a '...'."""
    if not expected:
        return None
    actual = [" ".join(line.split()) for line in output.splitlines() if line.strip()]
    wanted = [want for want in expected if want.strip()]
    patterns = [None if want.strip() == "..." else
                re.compile(".*".join(re.escape(" ".join(p.split())) for p in want.split("..."))) for want in wanted]
    reached, todo, seen = 0, [(0, 0)], {(0, 0)}  # (shown line, output line): how far a matching got
    while todo:
        w, a = todo.pop()
        reached = max(reached, a)
        if w == len(patterns):
            if a == len(actual):
                return None
            continue
        if patterns[w] is None:  # a gap: it takes no more lines, or one more
            steps = [(w + 1, a)] + ([(w, a + 1)] if a < len(actual) else [])
        else:
            steps = [(w + 1, a + 1)] if a < len(actual) and patterns[w].fullmatch(actual[a]) else []
        for step in steps:
            if step not in seen:
                seen.add(step)
                todo.append(step)
    return actual[reached] if reached < len(actual) else "(the output ends before the page's last lines)"


class Session:
    """A shell session in ``cwd``: environment and folder carry over between commands."""

    def __init__(self, page: Path, cwd: Path, env: dict[str, str], substitutions: dict[str, str]) -> None:
        self.page, self.cwd, self.subs = page, cwd, substitutions
        self.job_wait = 30.0
        self.state = Path(tempfile.mkdtemp(prefix=f".{cwd.name}-shell-", dir=cwd.parent))
        bin_dir = self.state / "bin"
        bin_dir.mkdir()
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
        if step.kind == "job output":
            self._wait_for_job_output(step, where)
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
            if _program(command) == "certkit":  # README: an error exits 1, a usage mistake (its usage shown) 2
                status = 2 if any(line.startswith("Usage: certkit") for line in expected) else 1
                assert proc.returncode == status, f"{where}: documented as exiting {status}, exited " \
                                                  f"{proc.returncode}{shown}"
        else:
            assert proc.returncode == 0, f"{where}: exited {proc.returncode}{shown}"
        missing = _missing(expected, proc.stdout)
        assert missing is None, f"{where}: documented line not in the output:\n  {missing}{shown}"
        extra = _unshown(expected, proc.stdout)
        assert extra is None, (f"{where}: the output has a line the page neither shows nor leaves out with a "
                               f"'...' line:\n  {extra}{shown}")
        assert not (step.after_output and not expected and proc.stdout.strip()), (
            f"{where}: shown printing nothing, but it prints (show its output, '...' for lines left out){shown}")
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
        deadline = time.monotonic() + 60
        while (missing := _missing(expected, log.read_text())) is not None:
            assert proc.poll() is None, f"{where}: background job exited {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"{where}: never printed {missing!r}:\n{log.read_text()}"
            time.sleep(0.1)

    def _wait_for_job_output(self, step: Step, where: str) -> None:
        assert 0 < step.job <= len(self.jobs), f"{where}: the page has started no job {step.job}"
        log = self.jobs[step.job - 1][1]
        deadline = time.monotonic() + self.job_wait
        expected = [self._sub(e) for e in step.expected]
        while (missing := _missing(expected, log.read_text())) is not None:
            assert time.monotonic() < deadline, (f"{where}: job {step.job} never printed this line the page shows:\n"
                                                 f"  {missing}\n--- its output\n{log.read_text()}")
            time.sleep(0.1)

    def _stop_job(self, number: int, where: str) -> None:
        proc, log, step = self.jobs[number - 1]
        clean = 128 + signal.SIGTERM if _program(step.text) == "certkit" else 0  # certkit serve, acme serve
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"{where}: job {number} ignored SIGTERM:\n{log.read_text()}") from None
        assert code == clean, f"{where}: job {number} exited {code}:\n{log.read_text()}"
        assert "Traceback" not in log.read_text(), log.read_text()

    def job_output(self, number: int) -> str:
        return self.jobs[number - 1][1].read_text()

    def close(self) -> None:
        for proc, _, _ in self.jobs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def run_page(page: Path, *, cwd: Path, env: dict[str, str], substitutions: dict[str, str] | None = None,
             job_wait: float = 30) -> Session:
    """Run every step of ``page`` in ``cwd``; raise AssertionError at the first that fails. ``job_wait``: how
    long a background job has to print the lines a job-output block shows."""
    found = steps(page)
    assert any(s.kind == "run" for s in found), f"{page} has no commands"
    session = Session(page, cwd, env, substitutions or {})
    session.job_wait = job_wait
    try:
        for step in found:
            session.run(step)
    finally:
        session.close()
    return session




def _program(command: str) -> str:
    """The program a shell line runs: past ``env`` with its ``-u NAME`` and ``NAME=value`` words."""
    words = command.split()
    while words and (words[0] == "env" or "=" in words[0] or words[0] == "-u"):
        words = words[2:] if words[0] == "-u" else words[1:]
    return words[0] if words else ""


def without_asides(text: str) -> str:
    """``text`` without its parenthesized asides (nested ones too): what a page's sentence or table cell names,
    its explanations left out."""
    out, depth = [], 0
    for char in text:
        depth += char == "("
        if depth == 0:
            out.append(char)
        depth -= char == ")" and depth > 0
    return "".join(out)
