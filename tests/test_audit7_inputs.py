"""Audit round seven, inputs, and what round six left alone:

- inspect reads a CRL wherever it reads a certificate: a file (PEM or DER), standard input, a folder
  (crl.pem, *.crl), beside certificates and keys; a damaged one is named a damaged CRL; verify given a CRL
  says it holds a CRL but no certificate.
- badinput7: an option that takes one value, given twice, is refused (#3); a prompt given text that is not
  UTF-8 says so in one line (#1); a new secret from a variable follows a file's limits (#2); one trailing
  newline of a secret variable is dropped (#7); init-ca refuses an empty $CERTKIT_INVENTORY_URL (#6); under a
  day left, the advice is to leave --days out (#5); "not a folder" said once (#9).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import assert_clean_error, certkit_env, openssl, run_certkit


def _crl_serials(crl_der: bytes) -> set[str]:
    from cryptography import x509

    return {format(e.serial_number, "X") for e in x509.load_der_x509_crl(crl_der)}


@pytest.fixture
def crl_files(ca_dir, ca_env, tmp_path):
    run_certkit("issue-client", "gone", "--out", tmp_path / "gone", env=ca_env, check=True)
    run_certkit("revoke", tmp_path / "gone", "--reason", "keyCompromise", env=ca_env, check=True)
    run_certkit("crl", "--out", tmp_path / "crl.pem", env=ca_env, check=True)
    run_certkit("crl", "--out", tmp_path / "crl.der", "--der", env=ca_env, check=True)
    return tmp_path


@pytest.mark.parametrize("form", ["PEM", "DER"])
def test_inspect_reads_a_crl_on_standard_input(crl_files, ca_env, form):
    data = (crl_files / f"crl.{form.lower()}").read_bytes()
    proc = subprocess.run([sys.executable, "-m", "certkit", "inspect", "-", "--json"], input=data,
                          capture_output=True, env=ca_env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    [item] = json.loads(proc.stdout)["items"]
    expected = _crl_serials((crl_files / "crl.der").read_bytes())
    assert item["type"] == "crl" and {e["serial"].lstrip("0") for e in item["revoked"]} == expected
    text = openssl("crl", "-in", crl_files / f"crl.{form.lower()}", "-inform", form, "-noout", "-crlnumber").stdout
    text = text.decode() if isinstance(text, bytes) else text
    assert int(text.strip().split("=0x")[1], 16) == item["crl_number"]


@pytest.mark.parametrize("name", ["crl.pem", "revoked.crl"])
def test_inspect_reads_a_crl_in_a_folder_beside_the_bundle(crl_files, ca_env, name):
    folder = crl_files / "gone"
    (folder / name).write_bytes((crl_files / "crl.pem").read_bytes())
    data = json.loads(run_certkit("inspect", folder, "--json", env=ca_env, check=True).stdout)
    kinds = [(i["type"], i["file"]) for i in data["items"]]
    assert ("certificate", "cert.pem") in kinds and ("crl", name) in kinds
    human = run_certkit("inspect", folder, env=ca_env, check=True).stdout
    assert f"Certificate revocation list ({name}" in human


def test_a_folder_holding_only_a_crl_is_described(crl_files, ca_env):
    only = crl_files / "only"
    only.mkdir()
    (only / "crl.pem").write_bytes((crl_files / "crl.pem").read_bytes())
    data = json.loads(run_certkit("inspect", only, "--json", env=ca_env, check=True).stdout)
    assert [i["type"] for i in data["items"]] == ["crl"]


def test_a_damaged_crl_is_named_so(crl_files, ca_env):
    pem = (crl_files / "crl.pem").read_text().splitlines()
    del pem[2]  # a line of the body gone: the DER inside is cut short
    proc = run_certkit("inspect", "-", env=ca_env, input="\n".join(pem) + "\n")
    assert_clean_error(proc, "standard input holds a damaged CRL")


def test_verify_given_a_crl_says_it_holds_no_certificate(crl_files, ca_env):
    proc = run_certkit("verify", crl_files / "crl.der", "--purpose", "client", env=ca_env)
    assert_clean_error(proc, "crl.der holds a CRL but no certificate")


# --- badinput7 #3: one value, given twice -------------------------------------------------------------------
@pytest.mark.parametrize("args,option", [
    (["verify", "x/cert.pem", "--purpose", "server", "--name", "evil.example", "--name", "s.example"], "--name"),
    (["init-ca", "--ca-dir", "c2", "--passphrase-file", "a", "--passphrase-file", "b"], "--passphrase-file"),
    (["issue-server", "t.example", "--days", "3", "--days=4"], "--days"),
    (["issue-server", "t.example", "--out", "one", "--out", "two"], "--out"),
    (["acme", "serve", "--port", "0", "--port", "1"], "--port"),
    (["crl", "--out", "x.crl", "--out", "y.crl"], "--out"),
    (["list", "--expiring", "3d", "--expiring", "5d"], "--expiring"),
])
def test_an_option_of_one_value_given_twice_is_refused(ca_dir, ca_env, tmp_path, args, option):
    proc = run_certkit(*args, env=ca_env, cwd=tmp_path)
    assert_clean_error(proc, f"{option} was given twice; it takes one value: give it once.", 2)
    assert not any((tmp_path / n).exists() for n in ("one", "two", "x.crl", "y.crl", "c2"))


def test_options_that_take_several_values_may_repeat(ca_dir, ca_env, tmp_path):
    proc = run_certkit("issue-client", "alice", "--email", "a@example.com", "--email", "b@example.com",
                       "--out", tmp_path / "alice", env=ca_env, check=True)
    assert proc.returncode == 0
    proc = run_certkit("list", "--name", "--name", env=ca_env)  # a value that looks like an option is a value
    assert proc.returncode == 0 and "No certificates match." in proc.stdout


# --- badinput7 #1: a prompt given text that is not UTF-8 -----------------------------------------------------
def _on_a_terminal(args: list[str], env: dict, typed: bytes, cwd) -> tuple[int, str]:
    """Run certkit with a pseudo-terminal as its standard input and output, typing ``typed`` at its prompt."""
    import os
    import pty
    import time

    pid, fd = pty.fork()
    if pid == 0:  # the child: certkit itself
        os.chdir(cwd)
        os.execve(sys.executable, [sys.executable, "-m", "certkit", *args], env)
    seen, sent, deadline = b"", False, time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
        if not sent and b":" in seen:
            os.write(fd, typed + b"\r")
            sent = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), seen.decode("utf-8", "replace")


@pytest.mark.parametrize("command", [["issue-server", "a.example"], ["init-ca", "--ca-dir", "new"]])
def test_a_prompt_given_text_that_is_not_utf8_says_so(ca_dir, ca_env, tmp_path, command):
    env = {k: v for k, v in ca_env.items() if k != "CERTKIT_CA_PASSPHRASE"}
    code, seen = _on_a_terminal(command, env, b"caf\xe9 latin1 pass", tmp_path)
    assert code == 1, seen
    assert "Traceback" not in seen and "is not UTF-8 text (is the terminal set to another encoding?)" in seen, seen
    assert not (tmp_path / "new").exists() and not (tmp_path / "a.example").exists()


# --- badinput7 #2, #7: secrets from variables ----------------------------------------------------------------
@pytest.mark.parametrize("value,fragment", [
    ("a" * 5000, "holds a secret longer than 4 KiB"),
    ("\udcff\udcfeabcdefghijklmn", "holds a secret that is not UTF-8 text"),
])
def test_a_new_secret_from_a_variable_follows_a_files_limits(tmp_path, value, fragment):
    import os

    env = dict(certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca")), CERTKIT_CA_PASSPHRASE=value)
    proc = subprocess.run([sys.executable, "-m", "certkit", "init-ca"], env={k: os.fsencode(v) for k, v in
                                                                             env.items()},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and f"$CERTKIT_CA_PASSPHRASE {fragment}" in proc.stderr, proc.stderr
    assert not (tmp_path / "ca").exists()


def test_a_secret_variable_loses_one_trailing_newline_as_a_file_does(ca_dir, ca_env, tmp_path):
    from conftest import PASSPHRASE

    env = dict(ca_env, CERTKIT_CA_PASSPHRASE=PASSPHRASE + "\n")
    run_certkit("issue-server", "nl.example", "--out", tmp_path / "nl", env=env, check=True)


# --- badinput7 #6, #5, #9 ------------------------------------------------------------------------------------
def test_init_ca_refuses_an_empty_inventory_variable(tmp_path):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE="pass1234pass1234",
                      CERTKIT_INVENTORY_URL="")
    proc = run_certkit("init-ca", env=env)
    assert_clean_error(proc, "$CERTKIT_INVENTORY_URL is set but empty (an unset variable?)")
    assert not (tmp_path / "ca").exists()


def test_under_a_day_left_the_advice_is_to_leave_days_out(tmp_path):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE="pass1234pass1234")
    run_certkit("init-ca", "--days", "1", env=env, check=True)
    proc = run_certkit("issue-server", "b.example", "--days", "2", "--out", tmp_path / "b", env=env)
    assert_clean_error(proc, "A lifetime of 2 days would end after the CA expires on ")
    assert "less than a day is left, which --days cannot give: leave --days out" in proc.stderr
    assert "at most 0 days" not in proc.stderr
    run_certkit("issue-server", "b.example", "--out", tmp_path / "b", env=env, check=True)  # the advice works


def test_not_a_folder_is_said_once(ca_dir, ca_env, tmp_path):
    import socket

    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        manifest = tmp_path / "m.jsonl"
        manifest.write_text('{"kind":"server","names":["b1.example"]}\n')
        proc = run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "sock", env=ca_env)
    assert proc.returncode == 1 and "is not a folder, so the output folder" in proc.stderr, proc.stderr
    assert "not a folder, not a folder" not in proc.stderr


# --- badinput7 #10: a variable that is not UTF-8 is not a usage error -----------------------------------------
@pytest.mark.parametrize("variable", ["CERTKIT_CA_DIR", "CERTKIT_INVENTORY_URL"])
def test_a_variable_that_is_not_utf8_gets_one_line(tmp_path, variable):
    import os

    base = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"))
    run_certkit("init-ca", "--no-passphrase", env=base, check=True)  # the inventory's URL is read for a CA
    env = {os.fsencode(k): os.fsencode(v) for k, v in base.items()}
    env[variable.encode()] = b"\xff\xfe"
    proc = subprocess.run([sys.executable, "-m", "certkit", "list"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1 and proc.stderr == (f"Error: ${variable} is '\\xff\\xfe', which is not UTF-8 text; "
                                                    "certkit records paths and URLs as UTF-8.\n"), proc.stderr


# --- regress8 #2, badinput7 #4: what the default CA directory is made of -------------------------------------
@pytest.mark.parametrize("variable", ["HOME", "XDG_DATA_HOME"])
def test_a_home_that_is_not_utf8_gets_one_line(tmp_path, variable):
    import os

    env = {os.fsencode(k): os.fsencode(v) for k, v in certkit_env(HOME=str(tmp_path)).items()
           if k != "CERTKIT_CA_DIR"}
    env[variable.encode()] = os.fsencode(str(tmp_path)) + b"/\xff"
    for command in (["init-ca", "--no-passphrase"], ["list"]):
        proc = subprocess.run([sys.executable, "-m", "certkit", *command], env=env, capture_output=True, text=True,
                              timeout=60, cwd=tmp_path)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert f"${variable} is '" in proc.stderr and "which is not UTF-8 text" in proc.stderr, proc.stderr
    assert os.listdir(tmp_path) == []


def test_a_relative_xdg_data_home_is_ignored(tmp_path):
    for folder in ("proj", "other", "home"):  # a $HOME that is not there is refused (round nine)
        (tmp_path / folder).mkdir()
    env = certkit_env(HOME=str(tmp_path / "home"), XDG_DATA_HOME="data")
    env.pop("CERTKIT_CA_DIR", None)
    run_certkit("init-ca", "--no-passphrase", env=env, cwd=tmp_path / "proj", check=True)
    assert (tmp_path / "home" / ".local" / "share" / "certkit" / "ca.pem").is_file()
    assert not (tmp_path / "proj" / "data").exists()
    run_certkit("list", env=env, cwd=tmp_path / "other", check=True)
