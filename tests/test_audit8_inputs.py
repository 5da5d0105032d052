"""Audit round eight, inputs (reports regress9, x5098), each finding as a class:

1. a $HOME, $XDG_DATA_HOME, $CERTKIT_CA_DIR or $CERTKIT_INVENTORY_URL that is not UTF-8 is refused only by a
   command that uses it: inspect and verify of a file, and any command given another CA directory, work;
2. the library refuses a CA directory whose path is not UTF-8 before it writes anything (it used to make the CA,
   then fail every open with a traceback).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import certkit_env, run_certkit

UTF8_LINE = "which is not UTF-8 text; certkit records paths and URLs as UTF-8."


def _bytes_env(env: dict[str, str], **raw: bytes) -> dict[bytes, bytes]:
    out = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
    out.update({k.encode(): v for k, v in raw.items()})
    return out


@pytest.fixture
def made(tmp_path):
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"))
    run_certkit("init-ca", "--no-passphrase", env=env, check=True)
    run_certkit("issue-server", "www.example.com", "--out", tmp_path / "www", env=env, check=True)
    return tmp_path, env


@pytest.mark.parametrize("variable", ["HOME", "XDG_DATA_HOME"])
def test_a_home_that_is_not_utf8_stops_only_what_uses_the_default_ca(made, variable):
    """regress9 #1: every command was refused for it, even inspect, and even with --ca-dir or $CERTKIT_CA_DIR."""
    tmp_path, env = made
    bad = os.fsencode(str(tmp_path)) + b"/h\xfe"
    with_ca_dir = _bytes_env(env, **{variable: bad})
    without = {k: v for k, v in with_ca_dir.items() if k != b"CERTKIT_CA_DIR"}
    cert = str(tmp_path / "www" / "cert.pem")
    ca_pem = str(tmp_path / "ca" / "ca.pem")
    for args, environment in ((["inspect", cert], without),
                              (["verify", cert, "--purpose", "server", "--ca-file", ca_pem, "--name",
                                "www.example.com"], without),
                              (["list"], with_ca_dir),
                              (["list", "--ca-dir", str(tmp_path / "ca")], without),
                              (["issue-server", "api.example.com", "--out", str(tmp_path / "api")], with_ca_dir)):
        proc = subprocess.run([sys.executable, "-m", "certkit", *args], env=environment, capture_output=True,
                              text=True, timeout=60, cwd=tmp_path)
        assert proc.returncode == 0, (args, proc.stderr)
    proc = subprocess.run([sys.executable, "-m", "certkit", "list"], env=without, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.startswith(f"Error: ${variable} is '") and UTF8_LINE in proc.stderr


def test_a_relative_xdg_data_home_that_is_not_utf8_is_ignored_as_any_relative_one(made):
    tmp_path, env = made
    home = tmp_path / "home"
    home.mkdir()  # a $HOME that is not there is refused (round nine)
    environment = _bytes_env(env | {"HOME": str(home)}, XDG_DATA_HOME=b"rel\xff")
    environment.pop(b"CERTKIT_CA_DIR")
    proc = subprocess.run([sys.executable, "-m", "certkit", "init-ca", "--no-passphrase"], env=environment,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (home / ".local" / "share" / "certkit" / "ca.pem").is_file()


def test_an_inventory_url_that_is_not_utf8_is_refused_masked(made):
    tmp_path, env = made
    environment = _bytes_env(env, CERTKIT_INVENTORY_URL=b"postgresql://u:hunter2@h\xff/db")
    proc = subprocess.run([sys.executable, "-m", "certkit", "list"], env=environment, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1 and UTF8_LINE in proc.stderr and "hunter2" not in proc.stderr, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "certkit", "inspect", str(tmp_path / "www")], env=environment,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_the_library_refuses_a_ca_directory_that_is_not_utf8_before_writing(tmp_path, monkeypatch):
    """regress9 #3: save_new wrote the CA, then every open failed with UnicodeEncodeError."""
    from certkit import CA, CADirectory, CertkitError

    folder = os.fsdecode(os.fsencode(str(tmp_path)) + b"/ca\xff")
    with pytest.raises(CertkitError, match="The CA directory is '.*ca\\\\xff', which is not UTF-8"):
        CADirectory(folder).save_new(CA.create("API CA"), b"pass phrase 123")
    assert os.listdir(tmp_path) == []
    monkeypatch.delenv("CERTKIT_CA_DIR", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", os.fsdecode(os.fsencode(str(tmp_path)) + b"/h\xfe"))
    with pytest.raises(CertkitError, match=r"\$HOME is '.*h\\xfe'"):
        CADirectory().save_new(CA.create("API CA"), b"pass phrase 123")
    assert os.listdir(tmp_path) == []


def test_a_path_that_is_not_utf8_is_shown_by_its_bytes(tmp_path):
    """regress10 #9: trust showed a $HOME of byte 0xff as '\\udcff', where every other message writes '\\xff'."""
    home = os.fsencode(str(tmp_path)) + b"/h\xff"
    os.makedirs(home)
    env = _bytes_env(certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca")), HOME=home)
    subprocess.run([sys.executable, "-m", "certkit", "init-ca", "--no-passphrase"], env=env, check=True,
                   capture_output=True, timeout=60)
    proc = subprocess.run([sys.executable, "-m", "certkit", "trust", "status", "--nss"], env=env,
                          capture_output=True, text=True, timeout=60)
    said = proc.stdout + proc.stderr
    assert "h\\xff" in said and "\\udcff" not in said, said
