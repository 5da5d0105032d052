"""A CA directory named through '..' that climbs above '/' (which the kernel takes as '/' itself), or through a
symbolic link and then '..', works in every command that opens its inventory: SQLite resolves '..' itself,
lexically, and met the first with "unable to open database file", a traceback at init-ca (found by a sweep of
odd option values). Real processes, real SQLite; the files are checked where the kernel puts them."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import PASSPHRASE, certkit_env, openssl, run_certkit


def _run(*args, cwd: Path, home: Path):
    proc = run_certkit(*args, cwd=cwd, env=certkit_env(HOME=str(home), CERTKIT_CA_PASSPHRASE=PASSPHRASE),
                       subprocess=True)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, (args, proc.stdout, proc.stderr)
    return proc


def _every_command(ca: str, cwd: Path, home: Path, real: Path) -> None:
    _run("init-ca", "--ca-dir", ca, "--name", "Dotdot CA", cwd=cwd, home=home)
    assert (real / "inventory.sqlite3").is_file() and (real / "ca.pem").is_file()
    _run("issue-server", "web.example", "--ca-dir", ca, "--out", real.parent / "web", cwd=cwd, home=home)
    _run("issue-client", "alice", "--ca-dir", ca, "--out", real.parent / "alice", cwd=cwd, home=home)
    assert "web.example" in _run("list", "--ca-dir", ca, cwd=cwd, home=home).stdout
    _run("revoke", real.parent / "alice", "--ca-dir", ca, cwd=cwd, home=home)
    _run("crl", "--ca-dir", ca, "--out", real.parent / "crl.pem", cwd=cwd, home=home)
    _run("renew", real.parent / "web", "--ca-dir", ca, cwd=cwd, home=home)
    assert "OK      inventory" in _run("check", "--ca-dir", ca, cwd=cwd, home=home).stdout
    revoked = openssl("verify", "-crl_check", "-CRLfile", real.parent / "crl.pem", "-CAfile", real / "ca.pem",
                      real.parent / "alice" / "cert.pem")
    assert b"certificate revoked" in revoked.stdout + revoked.stderr
    served = openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", real / "ca.pem",
                     real.parent / "web" / "cert.pem")
    assert served.returncode == 0, served.stdout + served.stderr


def test_a_ca_dir_named_through_dotdot_above_the_root(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    climb = "../" * (len(deep.parts) + 3)  # three more than there are folders: '/..' is '/'
    _every_command(climb + str(tmp_path / "ca").lstrip("/"), deep, tmp_path, tmp_path / "ca")


def test_a_ca_dir_named_through_a_link_and_then_dotdot(tmp_path: Path) -> None:
    (tmp_path / "real" / "sub").mkdir(parents=True)
    os.symlink(tmp_path / "real" / "sub", tmp_path / "link")
    # the kernel: link/.. is real/, so the CA is real/ca; read lexically, it would be tmp_path/ca
    _every_command("link/../ca", tmp_path, tmp_path, tmp_path / "real" / "ca")
    assert not (tmp_path / "ca").exists()
