"""Shared fixtures: a CA directory, the certkit CLI as a real subprocess, and real peers
(the openssl binary, pkilint) for checking what certkit writes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PASSPHRASE = "correct horse battery staple"


def certkit_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTKIT_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_certkit(*args: str, cwd: Path | None = None, env: dict | None = None,
                input: str | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """Run ``python -m certkit ARGS`` as a user would, capturing text output."""
    proc = subprocess.run(
        [sys.executable, "-m", "certkit", *map(str, args)], cwd=cwd, env=env or certkit_env(),
        input=input, capture_output=True, text=True, timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"certkit {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ca_env(tmp_path: Path, request) -> dict[str, str]:
    """Environment for the CLI with a CA directory and its passphrase (and, on a ``[postgresql]``
    run, the PGPASSFILE of its database: see team_fixtures)."""
    if inventory_backend_of(request) == PG_SUFFIX:
        request.getfixturevalue("postgres_url")
    return certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)


@pytest.fixture
def ca_dir(tmp_path: Path, ca_env: dict[str, str], inventory_url: str | None) -> Path:  # noqa: F811 (a fixture)
    """A root CA created through the CLI, as a user would create it (with its inventory in
    PostgreSQL on a ``[postgresql]`` run)."""
    run_certkit("init-ca", "--name", "certkit test root", *(["--inventory", inventory_url] if inventory_url else []),
                env=ca_env, check=True)
    return tmp_path / "ca"


# Team scale: PostgreSQL and SoftHSM2 fixtures, and the [postgresql] twins of the issuing tests.
from team_fixtures import (  # noqa: E402, F401
    PG_SUFFIX,
    inventory_backend_of,
    inventory_url,
    postgres_server,
    postgres_url,
    pytest_collection_modifyitems,
    pytest_configure,
    softhsm,
    token,
)
