"""A CA whose key is in a real SoftHSM2 token (tests/team_hsm.py), round 37: what ``check`` and the
signing commands say about the token's module when certkit-ca.json names it only in the key URI
(RFC 7512's module-path or module-name) or not at all, and about several keys under one label."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import certkit_env, run_certkit


@pytest.fixture(autouse=True)
def _real_processes(monkeypatch):
    monkeypatch.setenv("CERTKIT_TEST_SUBPROCESS", "1")  # a PKCS#11 login belongs to a process


def _token_ca(tmp_path: Path, token) -> dict[str, str]:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path), CERTKIT_PKCS11_PIN=token.pin)
    proc = run_certkit("init-ca", "--name", "Token CA", "--key-uri", token.uri("root"), "--pkcs11-module",
                       token.module, env=env)
    assert proc.returncode == 0, proc.stderr
    return env


def _findings(proc) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for finding in json.loads(proc.stdout)["findings"]:
        found.setdefault(finding["check"], []).append(finding)
    return found


@pytest.mark.parametrize("named", ["module-path", "module-name"])
def test_check_names_the_module_a_key_uri_names(tmp_path, token, named):
    """certkit-ca.json without "pkcs11_module", its key URI naming the module: check said "module None"."""
    env = _token_ca(tmp_path, token)
    if named == "module-name":  # p11-kit's registration of it, in this HOME
        folder = tmp_path / ".config" / "pkcs11" / "modules"
        folder.mkdir(parents=True)
        (folder / "softhsm2.module").write_text(f"module: {token.module}\n")
    query = f"module-path={token.module}" if named == "module-path" else "module-name=softhsm2"
    (tmp_path / "ca" / "certkit-ca.json").write_text(json.dumps({"key": f"{token.uri('root')}?{query}"}))
    proc = run_certkit("check", "--json", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    message = _findings(proc)["token"][0]["message"]
    assert f"module {token.module})" in message and "None" not in message, message
    assert run_certkit("issue-server", "a.internal", cwd=tmp_path, env=env).returncode == 0
