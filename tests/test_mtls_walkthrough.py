"""Run docs/mtls.md, docs/serve.md and docs/pkcs12.md as written: every command, in order
(with tests/docs_runner.py; ports in the pages, 8443, are replaced with a free port).

nginx (docs/mtls.md) is the Debian package, started by the page's own command
with its own prefix, configuration and pid file on a free 127.0.0.1 port; the
test stops it whatever happens.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from conftest import REPO, certkit_env, free_port, require
from docs_runner import run_page, steps

DOCS = REPO / "docs"


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
    run_page(page, cwd=work, env=certkit_env())


def test_runner_catches_wrong_output(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text("```console\n$ echo hello\ngoodbye\n```\n")
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(AssertionError, match="documented line not in the output"):
        run_page(page, cwd=work, env=certkit_env())


# --- the pages -----------------------------------------------------------------------------
def test_mtls_walkthrough(tmp_path: Path, page_env: dict[str, str]):
    require("nginx")
    require("curl")
    import requests  # noqa: F401  (the test extra has it; the page's Python client uses it)
    work = tmp_path / "walk"
    work.mkdir()
    port = free_port()
    try:
        run_page(DOCS / "mtls.md", cwd=work, env=page_env, substitutions={"8443": str(port)})
    finally:
        _stop_nginx(work / "nginx")
    log = (work / "nginx" / "access.log").read_text()
    assert log.count('"GET / HTTP/1.1" 200') == 4  # alice and bob with curl, then with Python
    assert log.count('"GET / HTTP/1.1" 400') == 2  # no certificate; the server's certificate


def _stop_nginx(prefix: Path) -> None:
    pid_file = prefix / "nginx.pid"
    deadline = time.monotonic() + 60
    while pid_file.exists() and time.monotonic() < deadline:  # the page's `-s stop`, or ours
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except ProcessLookupError:
            break
        except (ValueError, FileNotFoundError):  # being written (empty), or just removed as nginx exited
            pass
        time.sleep(0.1)
    assert not pid_file.exists(), "nginx did not stop"


def test_serve_page(tmp_path: Path, page_env: dict[str, str]):
    require("curl")
    work = tmp_path / "serve"
    work.mkdir()
    session = run_page(DOCS / "serve.md", cwd=work, env=page_env, substitutions={"8443": str(free_port())})
    log = session.job_output(1)
    assert 'accepted 127.0.0.1:' in log and 'client "alice"' in log
    assert "certificate verify failed: unsuitable certificate purpose" in log
    assert "no client certificate (peer did not return a certificate)" in log
    assert log.rstrip().endswith("stopped")


_PKCS12_PAGE_TOOLS = ("keytool", "curl", "pk12util", "certutil")


def test_pkcs12_page(tmp_path: Path, page_env: dict[str, str]):
    for tool in _PKCS12_PAGE_TOOLS:  # Debian: default-jdk-headless, curl, libnss3-tools
        require(tool)
    work = tmp_path / "p12"
    work.mkdir()
    run_page(DOCS / "pkcs12.md", cwd=work, env=page_env, substitutions={"8443": str(free_port())})
    assert (Path(page_env["HOME"]) / ".pki" / "nssdb" / "cert9.db").exists()
