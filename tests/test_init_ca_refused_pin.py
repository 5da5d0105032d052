"""init-ca with a key in a real SoftHSM2 token whose PIN is wrong says where the refused PIN came from, as
issue-*, crl, renew and the rest do (round 34): a stale $CERTKIT_PKCS11_PIN of a service's environment, or the
wrong --pin-file, is what to look at. Before, init-ca said only "The token ... refused the PIN"."""

from __future__ import annotations

import pytest

from conftest import assert_clean_error, certkit_env, run_certkit


@pytest.fixture(autouse=True)
def _real_processes(monkeypatch):
    monkeypatch.setenv("CERTKIT_TEST_SUBPROCESS", "1")  # a PKCS#11 login belongs to a process


@pytest.mark.parametrize("source", ["variable", "file", "stdin"])
def test_a_refused_pin_is_said_with_where_it_came_from(tmp_path, token, source):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path))
    args, stdin = [], None
    if source == "variable":
        env["CERTKIT_PKCS11_PIN"] = "not-the-pin-1"
        said = "The PIN it refused was $CERTKIT_PKCS11_PIN's."
    elif source == "file":
        wrong = tmp_path / "pin"
        wrong.write_text("not-the-pin-2\n")
        wrong.chmod(0o600)
        args, said = ["--pin-file", str(wrong)], f"The PIN it refused was read from the file {wrong}."
    else:
        args, stdin, said = ["--pin-file", "-"], "not-the-pin-3\n", "The PIN it refused was read from standard input."
    proc = run_certkit("init-ca", "--key-uri", token.uri("root"), "--pkcs11-module", token.module, *args, env=env,
                       input=stdin)
    assert_clean_error(proc, "refused the PIN")
    assert said in proc.stderr and "not-the-pin" not in proc.stderr, proc.stderr
    assert not (tmp_path / "ca").exists()
    assert "root" not in token.tool("--list-objects").stdout  # nothing generated
