"""Shared fixtures: a CA directory, the certkit CLI, and real peers (the openssl binary, pkilint)
for checking what certkit writes.

The CLI runs in this process by default (click's runner: the same code, without an
interpreter start-up per call), because most tests are about what a command does,
not how a process starts. Tests about processes (start-up, signals, terminals,
concurrency, kills) start real ones: ``run_certkit(..., subprocess=True)`` or
``subprocess`` directly. ``CERTKIT_TEST_SUBPROCESS=1`` runs every call as a real
process, to check the two ways agree.

A CA is created once per test session (per worker) and copied into each test
that asks for ``ca_dir``: creating one costs a key generation and scrypt.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import subprocess as _subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# A suite started in the background by a shell without job control (`cmd &` in a script) inherits
# SIGINT ignored, and every process it starts would inherit that too (an ignored signal survives
# exec; Python then installs no Ctrl-C handler): the tests that send SIGINT would find it ignored.
# A Python handler is reset to the default at exec, so the processes the tests start get Ctrl-C back.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

PASSPHRASE = "correct horse battery staple"


def certkit_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTKIT_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


class Ran(subprocess.CompletedProcess):
    """What an in-process run gives: the same fields as a finished subprocess."""


def run_certkit(*args: str, cwd: Path | None = None, env: dict | None = None, input: str | None = None,
                check: bool = False, subprocess: bool = False) -> subprocess.CompletedProcess:
    """Run ``certkit ARGS`` as a user would (exit status, stdout and stderr apart), in this process
    unless ``subprocess`` (or ``CERTKIT_TEST_SUBPROCESS=1``) asks for a real ``python -m certkit``."""
    args = tuple(map(str, args))
    env = env or certkit_env()
    if subprocess or os.environ.get("CERTKIT_TEST_SUBPROCESS"):
        proc = _subprocess.run([sys.executable, "-m", "certkit", *args], cwd=cwd, env=env, input=input,
                               capture_output=True, text=True, timeout=120)
    else:
        proc = _in_process(args, cwd, env, input)
    if check and proc.returncode != 0:
        raise AssertionError(f"certkit {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def _in_process(args: tuple[str, ...], cwd: Path | None, env: dict, input: str | None) -> Ran:
    import traceback
    import warnings

    from click.testing import CliRunner

    from certkit.cli import common, main

    changes: dict[str, str | None] = {k: v for k, v in env.items() if os.environ.get(k) != v}
    changes.update({k: None for k in os.environ if k not in env})
    here, showwarning = os.getcwd(), warnings.showwarning
    common._WARNED.clear()  # each run says its warnings, as a fresh process would
    try:
        os.chdir(cwd or here)
        result = CliRunner().invoke(main, list(args), input=input, env=changes, prog_name="certkit")
    finally:
        os.chdir(here)
        warnings.showwarning = showwarning
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        # What a real process would have printed: the traceback, which tests look for.
        stderr += "Traceback (most recent call last):\n" + "".join(traceback.format_exception(*result.exc_info))
    return Ran([sys.executable, "-m", "certkit", *args], result.exit_code, result.stdout, stderr)


def assert_clean_error(proc: subprocess.CompletedProcess, fragment: str, code: int = 1) -> None:
    """One ``Error:`` line naming the problem, the right exit status, no traceback; under
    ``--json``, one JSON object ``{"error": ..., "exit": N}`` on stdout instead."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    if "--json" in proc.args:
        import json

        assert json.loads(proc.stdout) == {"error": json.loads(proc.stdout)["error"], "exit": code}, proc.stdout
        assert fragment.lower() in json.loads(proc.stdout)["error"].lower(), proc.stdout
        return
    assert "Error:" in proc.stderr, proc.stderr
    assert fragment.lower() in proc.stderr.lower(), proc.stderr
    assert proc.stdout == "", proc.stdout
    if code != 2:  # a usage error is click's: the usage line, a hint, then the Error: line
        # one Error: line first, nothing before it (a warning, a library's message); indented detail after
        # it only (a manifest's bad lines, one per line)
        lines = proc.stderr.splitlines()
        assert lines[0].startswith("Error: ") and all(line.startswith(" ") for line in lines[1:]), proc.stderr


def openssl(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *map(str, args)], input=input, capture_output=True, timeout=60)


def pkilint_errors(*paths: Path) -> str:
    """pkilint's ERROR-level findings (empty when clean): the cert linter for one path,
    the issuer/subject chain linter for two."""
    tool = "lint_pkix_cert" if len(paths) == 1 else "lint_pkix_signer_signee_cert_chain"
    exe = shutil.which(tool)
    assert exe, f"{tool} is not installed (pip install pkilint)"
    proc = subprocess.run([exe, "lint", "-s", "ERROR", *map(str, paths)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.stdout.strip() + proc.stderr.strip()


def require(tool: str) -> str:
    """The path of a peer program; skip when it is absent, fail instead in CI
    (CERTKIT_REQUIRE_PEERS=1), where a skipped proof would be a silent gap."""
    path = shutil.which(tool)
    if path:
        return path
    if os.environ.get("CERTKIT_REQUIRE_PEERS"):
        pytest.fail(f"{tool} is required here (CERTKIT_REQUIRE_PEERS=1) but is not installed")
    pytest.skip(f"{tool} is not installed")


_PORTS_GIVEN: set[int] = set()
_OWN_LOW, _EPHEMERAL_LOW = 20000, 32768  # free_port's ports: below Linux's ephemeral range


def code_others_can_read(folder: Path) -> Path:
    """A copy of the certkit package in ``folder`` (made 0755), readable by every user: put it on PYTHONPATH of a
    certkit run as another user (a checkout under a 0700 folder, as mktemp -d makes CI's, is not readable)."""
    folder.chmod(0o755)
    shutil.copytree(REPO / "certkit", folder / "certkit", ignore=shutil.ignore_patterns("__pycache__"))
    for place, _dirs, files in os.walk(folder):
        os.chmod(place, 0o755)
        for name in files:
            os.chmod(os.path.join(place, name), 0o644)
    return folder


def free_port() -> int:
    """A loopback port free now and not handed out before in this test process.

    The kernel may give a port just closed again, so two calls in a row could name the same port
    (three etcd members were once given two ports alike); a port already handed out is never given twice.
    Ports come from below the kernel's ephemeral range (ip_local_port_range starts at 32768), from a
    slice of their own for each pytest-xdist worker: a port chosen here and bound a moment later by the
    test's server cannot meanwhile become the local end of some process's outgoing connection, nor be
    handed to another worker (an ACME test's challenge responder once met "Address already in use" so).
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]
    span = (_EPHEMERAL_LOW - _OWN_LOW) // 8
    low = _OWN_LOW + (int(worker) % 8 if worker.isdigit() else 0) * span
    for port in random.sample(range(low, low + span), span):
        if port in _PORTS_GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _PORTS_GIVEN.add(port)
        return port
    for _ in range(200):  # this worker's slice is used up: any port the kernel gives
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port
    raise RuntimeError("no loopback port left that this test process has not handed out")


def serve_refused_at_start(folder: Path, env: dict, what: str) -> str:
    """Run ``certkit serve`` with ``folder``'s cert.pem and privkey.pem, which it must refuse at start (exit 1,
    one ``Error:`` line, returned); a server that starts instead fails the test, saying it started with ``what``."""
    serve = subprocess.Popen([sys.executable, "-m", "certkit", "serve", "--cert", folder / "cert.pem", "--key",
                              folder / "privkey.pem", "--port", str(free_port())], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        out, err = serve.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        serve.kill()
        out, err = serve.communicate()
        pytest.fail(f"serve started with {what}:\n{out}{err}")
    assert serve.returncode == 1, out + err
    assert err.startswith("Error: ") and err.count("\n") == 1, err
    return err


def wait_listening(port: int, process: subprocess.Popen | None = None, what: str = "the server", *,
                   timeout: float = 60.0, check=None, log=lambda: "") -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:``port``, while ``process`` runs (and
    ``check()``, when given, raises nothing). A refused, reset or timed-out connect means "not yet": on a
    loaded machine a server takes seconds to start, and a connect to a full accept queue times out."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what} exited ({process.returncode}) before it listened on {port}: {log()}")
        if check is not None:
            check()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            return
        except OSError:  # ConnectionRefusedError, ConnectionResetError, TimeoutError
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not listen on {port} within {timeout:g} s: {log()}") from None
            time.sleep(0.05)


def wait_or_kill(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """Wait for a daemon the test stopped to exit; kill it when it has not within ``timeout`` seconds."""
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def new_ca(folder: Path, name: str) -> dict[str, str]:
    """A root CA named ``name``, created through the CLI in ``folder``/ca; the environment that uses it."""
    env = certkit_env(CERTKIT_CA_DIR=str(folder / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", name, env=env, check=True)
    return env


@pytest.fixture
def ca_env(tmp_path: Path, request) -> dict[str, str]:
    """Environment for the CLI with a CA directory and its passphrase (and, on a ``[postgresql]``
    run, the PGPASSFILE of its database: see team_fixtures)."""
    if inventory_backend_of(request) == PG_SUFFIX:
        request.getfixturevalue("postgres_url")
    return certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)


@pytest.fixture(scope="session")
def ca_template(tmp_path_factory) -> Path:
    """One root CA per test session (per worker), as ``init-ca --name "certkit test root"`` makes it."""
    from certkit.ca import CA
    from certkit.store import CADirectory

    folder = tmp_path_factory.mktemp("ca-template") / "ca"
    CADirectory(folder).save_new(CA.create("certkit test root"), PASSPHRASE.encode())
    return folder


@pytest.fixture
def ca_dir(tmp_path: Path, ca_env: dict[str, str], ca_template: Path, inventory_url: str | None) -> Path:  # noqa: F811
    """A root CA directory of this test's own: a copy of the session's (its own SQLite inventory), or,
    on a ``[postgresql]`` run, one created through the CLI with its inventory in PostgreSQL."""
    if inventory_url:
        run_certkit("init-ca", "--name", "certkit test root", "--inventory", inventory_url, env=ca_env, check=True)
    else:
        shutil.copytree(ca_template, tmp_path / "ca")
    return tmp_path / "ca"


# --- headless Chromium ---------------------------------------------------------------------------
# The real binary, not Debian's /usr/bin/chromium wrapper script, so that killing it kills the browser.
CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", shutil.which("chromium") or "")
                 if p and os.access(p, os.X_OK)), None)
CHROMIUM_TIMEOUT = 120  # a loaded machine (2 cores, 2 test workers) takes tens of seconds to start it


def require_chromium() -> None:
    """Chromium, and the NSS tools that prepare its certificate database (pk12util, certutil), as
    :func:`require` has them: skipped where absent, a failure in CI."""
    for tool in ("chromium", "pk12util", "certutil"):
        require(tool)
    assert CHROMIUM, "chromium is installed but its binary is not executable"


def chromium(url: str, home: Path, user_data: Path, *args: str, why_hung: str = "") -> subprocess.CompletedProcess:
    """Headless Chromium loading ``url`` with HOME ``home`` (whose NSS database it reads) and the profile
    ``user_data``; ``args`` add flags (``--dump-dom``, ``--screenshot=...``). Bounded: a load that hangs
    fails the test after CHROMIUM_TIMEOUT seconds, with ``why_hung`` after the time."""
    argv = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={user_data}", *args, url]
    proc = subprocess.Popen(argv, env=dict(os.environ, HOME=str(home)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=CHROMIUM_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"Chromium did not finish loading {url} within {CHROMIUM_TIMEOUT} s{why_hung}.\n{err[-3000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


# Team scale: PostgreSQL and SoftHSM2 fixtures, and the [postgresql] twins of the issuing tests.
from team_fixtures import (  # noqa: E402, F401
    PG_SUFFIX,
    inventory_backend_of,
    inventory_url,
    pg_ca,
    postgres_server,
    postgres_url,
    pytest_collection_modifyitems,
    pytest_configure,
    softhsm,
    token,
)
