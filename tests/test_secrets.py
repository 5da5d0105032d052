"""Secrets: the CA passphrase comes from a prompt, a file or the environment, never argv,
and never appears in output, JSON or error messages."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import PASSPHRASE, REPO, certkit_env, openssl, run_certkit
from team_terminal import run_on_terminal as on_terminal


def run_on_terminal(args: list[str], answers: list[tuple[bytes, bytes]], env: dict, cwd: Path,
                    timeout: float = 60) -> tuple[int, bytes]:
    """Run certkit on a pseudo-terminal, typing each answer after its prompt appears."""
    code, shown = on_terminal([sys.executable, "-m", "certkit", *args], env,
                              [(prompt.decode(), answer.decode()) for prompt, answer in answers], cwd=cwd,
                              timeout=timeout)
    return code, shown.encode()


def test_passphrase_prompt_on_a_terminal(tmp_path: Path) -> None:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"))
    code, screen = run_on_terminal(["init-ca"], [(b"New CA key passphrase:", b"typed secret"),
                                                 (b"Repeat for confirmation:", b"typed secret")], env, tmp_path)
    assert code == 0, screen
    assert b"typed secret" not in screen  # not echoed
    assert openssl("pkey", "-in", tmp_path / "ca" / "ca-key.pem", "-passin", "pass:typed secret",
                   "-noout").returncode == 0
    code, screen = run_on_terminal(["issue-client", "alice"], [(b"CA key passphrase:", b"typed secret")],
                                   env, tmp_path)
    assert code == 0, screen
    assert (tmp_path / "alice" / "privkey.pem").exists()
    # A wrong passphrase on a terminal is asked again, three times in all, then refused.
    code, screen = run_on_terminal(["issue-client", "bob"], [(b"CA key passphrase:", b"zebra-guess")] * 3,
                                   env, tmp_path)
    assert code == 1 and b"Error: The passphrase does not decrypt" in screen
    assert screen.count(b"Wrong passphrase; try again.") == 2
    assert b"zebra-guess" not in screen
    code, screen = run_on_terminal(["issue-client", "carol"], [(b"CA key passphrase:", b"zebra-guess"),
                                                               (b"CA key passphrase:", b"typed secret")],
                                   env, tmp_path)
    assert code == 0 and (tmp_path / "carol" / "cert.pem").exists(), screen
    assert not (tmp_path / "bob").exists()


def test_passphrase_is_not_an_option() -> None:
    for command in ("init-ca", "issue-server", "issue-client"):
        help_text = run_certkit(command, "--help", check=True).stdout
        assert "--passphrase " not in help_text and "--passphrase=" not in help_text
        assert "--passphrase-file" in help_text
    proc = run_certkit("init-ca", "--passphrase", "x")
    assert proc.returncode == 2 and "No such option" in proc.stderr


def test_passphrase_never_echoed(tmp_path: Path, ca_env: dict) -> None:
    outputs = []
    outputs.append(run_certkit("init-ca", "--json", env=ca_env, check=True))
    outputs.append(run_certkit("issue-server", "a.example.com", "--json", cwd=tmp_path, env=ca_env, check=True))
    outputs.append(run_certkit("check", "--json", env=ca_env, check=True))
    outputs.append(run_certkit("issue-client", "x", cwd=tmp_path, env=dict(ca_env, CERTKIT_CA_PASSPHRASE="bad pw")))
    for proc in outputs:
        assert PASSPHRASE not in proc.stdout + proc.stderr and "bad pw" not in proc.stdout + proc.stderr
    # Nor is it written anywhere in the CA directory or the bundle.
    for path in list((tmp_path / "ca").iterdir()) + list((tmp_path / "a.example.com").iterdir()):
        assert PASSPHRASE.encode() not in path.read_bytes()


def test_no_secret_in_library_exceptions(tmp_path: Path) -> None:
    from certkit.ca import CA
    from certkit.errors import CertkitError
    from certkit.store import CADirectory

    CADirectory(tmp_path / "ca").save_new(CA.create("x"), b"the real one")
    try:
        CADirectory(tmp_path / "ca").load(b"a guessed secret")
    except CertkitError as exc:
        assert b"a guessed secret".decode() not in str(exc) and "the real one" not in str(exc)
        assert exc.__cause__ is None and exc.__suppress_context__
    else:
        raise AssertionError("a wrong passphrase was accepted")


def test_empty_passphrase_sources_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.touch(0o600)
    empty.write_text("\n")
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"))
    proc = run_certkit("init-ca", "--passphrase-file", empty, env=env)
    assert proc.returncode == 1 and "empty secret" in proc.stderr
    proc = run_certkit("init-ca", env=dict(env, CERTKIT_CA_PASSPHRASE=""))
    assert proc.returncode == 1 and "set but empty" in proc.stderr
    assert not (tmp_path / "ca").exists()
    assert REPO.exists()


def test_p12_password_prompt_and_never_echoed(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    code, screen = run_on_terminal(["issue-client", "alice", "--p12"],
                                   [(b"PKCS#12 password for bundle.p12:", b"p12 zebra"),
                                    (b"Repeat for confirmation:", b"p12 zebra")], ca_env, tmp_path)
    assert code == 0, screen
    assert b"p12 zebra" not in screen
    info = openssl("pkcs12", "-info", "-noout", "-in", tmp_path / "alice" / "bundle.p12", "-passin", "pass:p12 zebra")
    assert info.returncode == 0, info.stderr
    proc = run_certkit("issue-client", "bob", "--p12", "--json", cwd=tmp_path,
                       env=dict(ca_env, CERTKIT_P12_PASSWORD="p12 env secret"), check=True)
    assert "p12 env secret" not in proc.stdout + proc.stderr
    assert b"p12 env secret" not in (tmp_path / "bob" / "bundle.p12").read_bytes()
