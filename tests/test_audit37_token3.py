"""A CA whose key is in a real SoftHSM2 token (tests/team_hsm.py), round 37: what ``check`` and the
signing commands say about the token's module when certkit-ca.json names it only in the key URI
(RFC 7512's module-path or module-name) or not at all, and about several keys under one label."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import assert_clean_error, certkit_env, openssl, run_certkit


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


@pytest.mark.parametrize("config", [{}, {"pkcs11_module": ""}])
def test_a_ca_whose_config_names_no_module_says_where_to_write_it(tmp_path, token, config):
    """An existing CA's commands take no --pkcs11-module: the refusal said to pass one."""
    env = _token_ca(tmp_path, token)
    assert run_certkit("issue-server", "a.internal", cwd=tmp_path, env=env).returncode == 0  # for renew --all
    path = tmp_path / "ca" / "certkit-ca.json"
    path.write_text(json.dumps({"key": token.uri("root"), **config}))
    said = f'write its path as "pkcs11_module" in {path}'
    for args in (["issue-server", "b.internal"], ["issue-client", "bob"], ["crl", "--out", "crl.pem"],
                 ["renew", "--all"]):
        proc = run_certkit(*args, cwd=tmp_path, env=env)
        assert_clean_error(proc, said)
        assert "--pkcs11-module" not in proc.stderr, proc.stderr
    assert not (tmp_path / "b.internal").exists() and not (tmp_path / "bob").exists()
    assert not (tmp_path / "crl.pem").exists()
    proc = run_certkit("check", "--json", env=env)
    assert proc.returncode == 1
    message = _findings(proc)["token"][0]["message"]
    assert said in message and "--pkcs11-module" not in message, message


def test_check_names_the_id_that_tells_the_cas_key_apart(tmp_path, token):
    """A URI naming the CA's key (an id of its own) and two keys an operator made under its label, one with no
    id and one with another: check said they "share a label and id", which they do not, and not the id= that
    names the CA's key alone. Now it gives that URI, which then names one key: no warning, and it signs."""
    env = _token_ca(tmp_path, token)
    for extra in ([], ["--id", "77"]):
        made = token.tool("--keypairgen", "--key-type", "EC:prime256v1", "--label", "root", *extra)
        assert made.returncode == 0, made.stderr
    proc = run_certkit("check", "--json", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = tmp_path / "ca" / "certkit-ca.json"
    warned = [f["message"] for f in _findings(proc)["key"] if "private keys" in f["message"]]
    assert len(warned) == 1 and "share a label and id" not in warned[0], warned
    pinned = warned[0].split("which then reads '")[1].split("'")[0]
    assert pinned.startswith(token.uri("root") + ";id=%") and f"the key URI in {config}" in warned[0], warned
    config.write_text(json.dumps({**json.loads(config.read_text()), "key": pinned}))
    proc = run_certkit("check", "--json", env=env)
    assert proc.returncode == 0 and "private keys" not in proc.stdout, proc.stdout
    assert run_certkit("issue-server", "c.internal", cwd=tmp_path, env=env).returncode == 0
    assert openssl("verify", "-x509_strict", "-CAfile", tmp_path / "ca" / "ca.pem",
                   tmp_path / "c.internal" / "cert.pem").returncode == 0
