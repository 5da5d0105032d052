"""The twelfth round's trust findings (audit trust7), each as a class, against real NSS databases (certutil):

1. an NSS database is made only where there is none: never over a part of one (a key4.db alone), which would
   make certutil -N ask for a password forever; installs racing on a fresh HOME all end with the CA trusted;
2. uninstall removes a database install made only as install left it: a module registered since keeps it;
3. a database another program is writing (SQLite RESERVED lock) is said to be in use;
4. a ca.pem that is no CA (CA:FALSE) is refused, by every command, and nothing is trusted;
5. the certutil command given for a password-protected database runs as printed (no full stop on its path);
6. uninstall --every-certkit-ca goes ahead with a CA directory that cannot be read.
"""

from __future__ import annotations

import json
import shlex
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_trust import outcomes, pki, trust  # noqa: F401 (pki: the module's fixture)

from conftest import PASSPHRASE, certkit_env, require, run_certkit
from trust_helpers import nss_listing


@pytest.fixture(autouse=True)
def _certutil():
    require("certutil")


def test_a_part_of_a_database_is_refused_at_once(pki, tmp_path: Path) -> None:  # noqa: F811
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run(["certutil", "-N", "-d", f"sql:{elsewhere}", "--empty-password"], check=True, capture_output=True)
    home = tmp_path / "home"
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    (db / "key4.db").write_bytes((elsewhere / "key4.db").read_bytes())
    started = time.monotonic()
    proc = trust("install", "--nss", "--json", home=home, ca_dir=pki.issuing)
    assert time.monotonic() - started < 30 and proc.returncode == 1, proc.stdout
    assert "holds part of an NSS database (key4.db)" in proc.stdout, proc.stdout
    assert sorted(p.name for p in db.iterdir()) == ["key4.db"]  # nothing made beside it, nothing removed


def test_installs_racing_on_a_fresh_home_all_trust_the_ca(pki, tmp_path: Path) -> None:  # noqa: F811
    home = tmp_path / "home"
    home.mkdir()
    env = certkit_env(HOME=str(home))
    argv = [sys.executable, "-m", "certkit", "trust", "install", "--nss", "--json", "--ca-dir", str(pki.issuing)]
    runs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(3)]
    results = [(run.wait(120), run.stdout.read(), run.stderr.read()) for run in runs]
    for code, out, err in results:
        assert code == 0 and "Traceback" not in err, (code, out, err)
        assert set(outcomes(subprocess.CompletedProcess(argv, code, out, err)).values()) <= {"added", "unchanged"}
    assert pki.anchor.nickname in nss_listing(home / ".pki" / "nssdb")
    status = trust("status", "--nss", "--json", home=home, ca_dir=pki.issuing)
    assert "not trusted" not in status.stdout and status.returncode == 0, status.stdout


def test_a_module_registered_since_keeps_the_database(pki, tmp_path: Path) -> None:  # noqa: F811
    home = tmp_path / "home"
    home.mkdir()
    trust("install", "--nss", home=home, ca_dir=pki.issuing, check=True)
    db = home / ".pki" / "nssdb"
    with (db / "pkcs11.txt").open("a") as modules:  # what modutil -add writes for a smart card's module
        modules.write("\nlibrary=/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so\nname=OpenSC smartcard\n")
    proc = trust("uninstall", "--nss", home=home, ca_dir=pki.issuing, check=True)
    assert "kept the NSS database" in proc.stdout, proc.stdout
    assert (db / "cert9.db").is_file() and "name=OpenSC smartcard" in (db / "pkcs11.txt").read_text()
    assert pki.anchor.nickname not in nss_listing(db)


def test_a_database_another_program_writes_is_in_use(pki, tmp_path: Path) -> None:  # noqa: F811
    home = tmp_path / "home"
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True, capture_output=True)
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:  # a browser in the middle of a write: SQLite's RESERVED lock
        connection = sqlite3.connect(db / "cert9.db", isolation_level=None, check_same_thread=False)
        connection.execute("BEGIN IMMEDIATE")
        holding.set()
        release.wait(60)
        connection.execute("ROLLBACK")
        connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        holding.wait(10)
        proc = trust("install", "--nss", "--json", home=home, ca_dir=pki.issuing)
    finally:
        release.set()
        thread.join(10)
    assert proc.returncode == 1 and "locked by another program" in proc.stdout, proc.stdout
    again = trust("install", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True)
    assert outcomes(again) == {str(db): "added"}


def test_a_ca_pem_that_is_no_ca_is_refused_everywhere(tmp_path: Path) -> None:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path))
    run_certkit("init-ca", "--name", "Real CA", env=env, check=True)
    run_certkit("issue-server", "localhost", "--out", tmp_path / "srv", env=env, check=True)
    fake = tmp_path / "fake"
    fake.mkdir(mode=0o700)
    (fake / "ca.pem").write_bytes((tmp_path / "srv" / "cert.pem").read_bytes())
    home = tmp_path / "home"
    proc = trust("install", "--nss", home=home, ca_dir=fake)
    assert proc.returncode == 1 and "is not a CA certificate" in proc.stderr, proc.stderr
    assert "intermediate" not in proc.stderr and not (home / ".pki").exists()
    listed = run_certkit("list", "--ca-dir", fake, env=env)
    assert listed.returncode == 1 and "is not a CA certificate" in listed.stderr, listed.stderr


def test_the_command_for_a_password_protected_database_runs_as_printed(pki, tmp_path: Path) -> None:  # noqa: F811
    home = tmp_path / "home"
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    password = tmp_path / "pw.txt"
    password.write_text("pw12345\n")
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "-f", str(password)], check=True, capture_output=True)
    proc = trust("install", "--nss", "--json", home=home, ca_dir=pki.issuing)
    error = json.loads(proc.stdout)["error"] if "error" in json.loads(proc.stdout) else proc.stdout
    command = error.split("add the CA yourself: ", 1)[1].split('"')[0].strip()
    assert not command.endswith("."), command
    done = subprocess.run([*shlex.split(command), "-f", str(password)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert pki.anchor.nickname in nss_listing(db)


def test_every_certkit_ca_goes_ahead_with_a_damaged_ca_directory(tmp_path: Path) -> None:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path))
    run_certkit("init-ca", "--name", "Half CA", "--permit-dns", "localhost", env=env, check=True)
    home = tmp_path / "home"
    home.mkdir()
    trust("install", "--nss", home=home, ca_dir=tmp_path / "ca", check=True)
    (tmp_path / "ca" / "ca.pem").unlink()
    proc = trust("uninstall", "--every-certkit-ca", "--nss", home=home, ca_dir=tmp_path / "ca")
    assert proc.returncode == 0 and "the CA cannot be read" in proc.stdout, proc.stdout + proc.stderr
    assert "certkit-" not in nss_listing(home / ".pki" / "nssdb")
