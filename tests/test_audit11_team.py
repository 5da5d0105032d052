"""The eleventh round's team findings (audit team11): a parent CA's token PIN (from --parent-passphrase-file or
$CERTKIT_PARENT_CA_PASSPHRASE) that no token could hold (several lines, white space only) is refused before the
parent's token counts it, as the new CA's own PIN is; and a dropped PostgreSQL database of a CA that used it is
not met with "create it" alone (a new database holds none of its certificates)."""

from __future__ import annotations

import pytest

from conftest import assert_clean_error, certkit_env, run_certkit


@pytest.fixture(autouse=True)
def _real_processes(monkeypatch):
    """A PKCS#11 login belongs to a process: certkit runs as a real one here."""
    monkeypatch.setenv("CERTKIT_TEST_SUBPROCESS", "1")


@pytest.mark.parametrize(("where", "value", "said"), [("file", "{pin}\n\n", "several lines"),
                                                      ("env", "{pin}\n\n", "several lines"),
                                                      ("env", " ", "white space only")])
def test_a_parent_pin_no_token_holds_is_not_tried(tmp_path, token, where, value, said):
    root_env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "root"), CERTKIT_PKCS11_PIN=token.pin)
    run_certkit("init-ca", "--name", "Token Root", "--key-uri", token.uri("root"), "--pkcs11-module", token.module,
                env=root_env, check=True)
    secret = value.replace("{pin}", token.pin)
    args = ["init-ca", "--ca-dir", tmp_path / "int", "--parent-ca-dir", tmp_path / "root", "--name", "File Int",
            "--no-passphrase"]
    env = certkit_env()
    if where == "file":
        pin_file = tmp_path / "parent-pin"
        pin_file.write_text(secret)
        pin_file.chmod(0o600)
        args += ["--parent-passphrase-file", pin_file]
    else:
        env["CERTKIT_PARENT_CA_PASSPHRASE"] = secret
    proc = run_certkit(*args, env=env)
    assert_clean_error(proc, said)
    assert "was not tried" in proc.stderr and "refused the PIN" not in proc.stderr
    assert not (tmp_path / "int").exists()
    run_certkit("crl", "--out", tmp_path / "c.crl", env=root_env, check=True)  # the token still takes its PIN
