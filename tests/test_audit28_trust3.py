"""Round 28, trust3: certkit run "as another user" in the trust tests is the real user nobody, not root
in a user namespace (which keeps root's access to root's files), in a venv and in CI's /root/.pyenv layout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_audit20_trust import _java_env, _real_java_home
from test_audit26_trust import python_server  # noqa: F401
from test_trust import java_client, pki, untrusted  # noqa: F401

from conftest import certkit_env, require, run_certkit
from nobody_runner import NOBODY, runner_while_used
from trust_helpers import client_env, private_java_home, trust_json

READ = "import sys\ntry:\n    open(sys.argv[1]).read()\nexcept PermissionError:\n    sys.exit(7)\n"


@pytest.fixture(scope="module")
def runner():
    yield from runner_while_used()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_certkit_runs_as_nobody_who_cannot_read_roots_files(runner, tmp_path: Path):
    assert runner is not None and runner.as_nobody, runner
    secret = runner.folder / "secret-of-this-test"
    secret.write_text("root's\n")
    secret.chmod(0o600)
    env = runner.env(certkit_env(HOME=str(runner.folder)))
    who = subprocess.run(runner.argv("-c", "import os, certkit.cli, click, cryptography; print(os.getuid())"),
                         env=env, capture_output=True, text=True, timeout=60, cwd="/")
    assert who.returncode == 0 and who.stdout.strip() == str(NOBODY), who
    read = subprocess.run(runner.argv("-c", READ, str(secret)), env=env, capture_output=True, text=True,
                          timeout=60, cwd="/")
    assert read.returncode == 7, read  # the user nobody: Permission denied
    version = subprocess.run(runner.argv("-m", "certkit", "--version"), env=env, capture_output=True, text=True,
                             timeout=60, cwd="/")
    assert version.returncode == 0 and version.stdout.startswith("certkit"), version
    # The code it runs is the copy, never the checkout or the interpreter's site-packages under /root.
    where = subprocess.run(runner.argv("-c", "import certkit, click, cryptography as c; "
                                       "print(certkit.__file__, click.__file__, c.__file__)"),
                           env=env, capture_output=True, text=True, timeout=60, cwd="/")
    assert all(p.startswith(str(runner.folder)) for p in where.stdout.split()), where.stdout


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare")
def test_a_user_namespace_alone_would_still_read_roots_files(tmp_path: Path):
    """Why unshare --user is only the fallback: the process keeps root's access to root's 0600 files."""
    secret = tmp_path / "secret"
    secret.write_text("root's\n")
    secret.chmod(0o600)
    probe = subprocess.run(["unshare", "--user", "id", "-u"], capture_output=True, text=True, timeout=10)
    if probe.returncode != 0:
        pytest.skip("no user namespaces here")
    read = subprocess.run(["unshare", "--user", "--", sys.executable, "-c", READ, str(secret)],
                          capture_output=True, text=True, timeout=60)
    assert read.returncode == 0, read


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_the_systems_interpreter_runs_the_copy_as_nobody(runner):
    """CI's layout: the running interpreter under /root/.pyenv may be out of nobody's reach; then
    /usr/bin/python3.X (same version) runs the copied code, compiled modules included."""
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not system.exists():
        pytest.skip(f"no {system} here")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": runner.pythonpath}
    proc = subprocess.run([*runner.prefix, str(system), "-s", "-m", "certkit", "--version"], env=env,
                          capture_output=True, text=True, timeout=60, cwd="/")
    assert proc.returncode == 0 and proc.stdout.startswith("certkit"), proc
    crypto = subprocess.run([*runner.prefix, str(system), "-s", "-c", "from cryptography.hazmat.primitives.asymmetric "
                             "import ec; ec.generate_private_key(ec.SECP256R1()); import os; print(os.getuid())"],
                            env=env, capture_output=True, text=True, timeout=60, cwd="/")
    assert crypto.returncode == 0 and crypto.stdout.strip() == str(NOBODY), crypto


# --- a relative javax.net.ssl.trustStore beside a jssecacerts -------------------------------------------------------
@pytest.mark.parametrize("variable", ["JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS"])
def test_a_relative_trust_store_beside_a_jssecacerts_has_cacerts_changed_for_programs_started_elsewhere(
        pki, python_server: int, java_client: Path, tmp_path: Path, variable: str) -> None:  # noqa: F811
    """-Djavax.net.ssl.trustStore=team.jks with a jssecacerts in the JDK: a program started where there is no team.jks
    falls back to cacerts, never jssecacerts (Java's rule); certkit skipped that cacerts as "unread", so such programs
    did not trust the CA though certkit said installed."""
    require("keytool")
    java_home = private_java_home(_real_java_home(), tmp_path)
    security = java_home / "lib/security"
    cacerts, jsse = (security / "cacerts").resolve(), security / "jssecacerts"
    shutil.copyfile(cacerts, jsse)
    home, team, elsewhere = tmp_path / "home", tmp_path / "team", tmp_path / "elsewhere"
    for folder in (home, team, elsewhere):
        folder.mkdir()
    shutil.copyfile(cacerts, team / "team.jks")  # without the CA
    options = "-Djavax.net.ssl.trustStore=team.jks"
    env = {**_java_env(home, java_home), variable: options}
    stores = {s["location"]: s for s in trust_json(run_certkit("trust", "install", "--java", "--ca-dir", pki.root,
                                                          "--json", env=env))["stores"]}
    assert stores[str(cacerts)]["outcome"] == "added" and stores[str(jsse)]["outcome"] == "added", stores
    notes = " ".join(stores[str(jsse)]["notes"])
    fallback = f"so they read {security / 'cacerts'}, not this one, and certkit changes that file too"
    assert "a relative path" in notes and fallback in notes, notes

    argv = [str(java_home / "bin/java"), "-cp", str(java_client), "TrustClient", f"https://localhost:{python_server}/"]
    runs = {"installed": None, "removed": None}
    for step in runs:
        if step == "removed":
            removed = run_certkit("trust", "uninstall", "--java", "--ca-dir", pki.root, "--json", env=env)
            assert removed.returncode == 0, removed.stdout + removed.stderr
        # started without team.jks: cacerts (Java's rule); beside it: the team's store, which never holds the CA
        runs[step] = {where.name: subprocess.run(argv, env=client_env(**{variable: options}), capture_output=True,
                                                 text=True, timeout=120, cwd=where).stdout
                      for where in (elsewhere, team)}
    assert "HTTP 200" in runs["installed"]["elsewhere"], runs
    assert untrusted(runs["installed"]["team"]) and untrusted(runs["removed"]["elsewhere"]), runs
