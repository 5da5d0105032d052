"""The twelfth round's integrity findings (audit integrity12), one class: a read the file system refuses once
(an I/O error, no permission) says nothing of what a file holds, and is never taken for "nothing there":

1. a pending row whose writer died is settled by what its files hold; a file that cannot be read leaves it
   pending (revocable, said in a warning), never ``abandoned`` for good with its bundle and key on disk, for
   a bundle folder, an output file (jsonl) and an intermediate's CA directory alike;
2. a refusal that holds "even with --force" (a file holding a private key, an SQLite inventory) holds when
   the file cannot be read: nothing is written over it;
3. ``crl`` over a published CRL it cannot read says so, never "not a CRL of this CA; pass --force", and
   ``--force`` does not replace it: the revocations it carries would be lost;
4. a renewal that keeps the key of a certificate delivered into a jsonl file, when that file cannot be
   read, fails before signing, rather than renewing without the key and saying someone else holds it.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PASSPHRASE, certkit_env, openssl, run_certkit


def _env(tmp_path: Path, ca: str = "ca") -> dict[str, str]:
    return certkit_env(CERTKIT_CA_DIR=str(tmp_path / ca), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path))


def _broken(args: list, env: dict, path: Path, call: str = "read", cwd: Path | None = None,
            error: str = "EIO") -> subprocess.CompletedProcess:
    """``certkit ARGS`` with every ``call`` (read, openat) on ``path`` failing with ``error``."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    proc = subprocess.run([strace, "-f", "-qq", "-o", "/dev/null", "-P", str(path), "-e", f"trace={call}",
                           "-e", f"inject={call}:error={error}:when=1+", sys.executable, "-m", "certkit",
                           *map(str, args)], env=env, capture_output=True, text=True, timeout=120, cwd=cwd)
    if "ptrace" in proc.stderr and "Operation not permitted" in proc.stderr:
        pytest.skip("ptrace is not allowed here")
    return proc


def _status(inventory: Path, serial: str) -> str:
    with sqlite3.connect(inventory) as db:
        return db.execute("SELECT status FROM certificates WHERE serial = ?", (serial,)).fetchone()[0]


def _orphan(inventory: Path, serial: str) -> None:
    """The row as a writer killed between writing its files and marking them leaves it: pending, its
    writer gone."""
    with sqlite3.connect(inventory) as db:
        db.execute("UPDATE certificates SET status = 'pending', writer = NULL WHERE serial = ?", (serial,))


def _serial_of(env: dict, name: str) -> str:
    rows = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]
    return next(r["serial"] for r in rows if f"DNS:{name}" in r["names"])


@pytest.mark.parametrize("sink", ["folder", "jsonl"])
def test_a_pending_row_whose_files_cannot_be_read_stays_pending(tmp_path: Path, sink: str) -> None:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Settle CA", env=env, check=True)
    out = tmp_path / ("x" if sink == "folder" else "x.jsonl")
    run_certkit("issue-server", "x.test", "--out", out, *(["--format", "jsonl"] if sink == "jsonl" else []), env=env,
                check=True)
    serial = _serial_of(env, "x.test")
    inventory = tmp_path / "ca" / "inventory.sqlite3"
    _orphan(inventory, serial)
    broken = out / "cert.pem" if sink == "folder" else out
    proc = _broken(["list"], env, broken, "read" if sink == "folder" else "openat")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert f"The pending certificate {serial} stays pending" in proc.stderr, proc.stderr
    assert "Input/output error" in proc.stderr, proc.stderr
    assert _status(inventory, serial) == "pending"
    checked = _broken(["check"], env, broken, "read" if sink == "folder" else "openat")
    assert "a command that can read them settles those" in checked.stdout, checked.stdout  # not "the next command"
    # a revocation for a compromised key still reaches it (and the CRL) meanwhile; here, once readable,
    # the row is settled as what its files show: delivered
    listed = run_certkit("list", "--json", env=env, check=True)
    assert _status(inventory, serial) == "valid", listed.stdout
    assert run_certkit("revoke", serial, "--reason", "keyCompromise", env=env).returncode == 0
    run_certkit("crl", "--out", tmp_path / "crl.pem", env=env, check=True)
    crl = openssl("crl", "-in", tmp_path / "crl.pem", "-noout", "-text").stdout.decode()
    assert serial in crl.replace(":", "").upper()


def test_an_intermediate_whose_ca_pem_cannot_be_read_stays_pending(tmp_path: Path) -> None:
    env = _env(tmp_path, "root")
    run_certkit("init-ca", "--name", "Settle Root", env=env, check=True)
    run_certkit("init-ca", "--name", "Settle Inter", "--ca-dir", tmp_path / "inter", "--parent-ca-dir",
                tmp_path / "root", env=env | {"CERTKIT_PARENT_CA_PASSPHRASE": PASSPHRASE}, check=True)
    inventory = tmp_path / "root" / "inventory.sqlite3"
    with sqlite3.connect(inventory) as db:
        serial = db.execute("SELECT serial FROM certificates WHERE sink = 'ca-dir'").fetchone()[0]
    _orphan(inventory, serial)
    proc = _broken(["list"], env, tmp_path / "inter" / "ca.pem", "openat", error="EACCES")
    assert proc.returncode == 0 and "stays pending" in proc.stderr and "Permission denied" in proc.stderr, proc.stderr
    assert _status(inventory, serial) == "pending"
    run_certkit("list", env=env, check=True)
    assert _status(inventory, serial) == "valid"


@pytest.mark.parametrize("command,what", [("crl", "key"), ("crl", "inventory"), ("jsonl", "inventory")])
def test_a_file_that_cannot_be_read_is_not_written_over_even_with_force(tmp_path: Path, what: str,
                                                                        command: str) -> None:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Force CA", env=env, check=True)
    target = tmp_path / "precious"
    if what == "key":
        assert openssl("genpkey", "-algorithm", "ed25519", "-out", target).returncode == 0
    else:
        run_certkit("init-ca", "--name", "Other", "--ca-dir", tmp_path / "other", env=env, check=True)
        shutil.copy(tmp_path / "other" / "inventory.sqlite3", target)
    target.chmod(0o600)
    before = target.read_bytes()
    args = (["crl", "--out", target, "--force"] if command == "crl"
            else ["issue-server", "x.test", "--format", "jsonl", "--out", target, "--force"])
    plain = run_certkit(*args, env=env)  # readable: refused by what it holds
    assert plain.returncode != 0 and "even with --force" in plain.stderr, plain.stderr
    proc = _broken(args, env, target, "openat")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("Error: ") and "cannot be read" in proc.stderr, proc.stderr
    assert target.read_bytes() == before
    assert json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"] == []


def test_crl_over_a_published_crl_it_cannot_read(tmp_path: Path) -> None:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "CRL CA", env=env, check=True)
    crl = tmp_path / "crl.pem"
    run_certkit("crl", "--out", crl, env=env, check=True)
    backup = tmp_path / "inventory.backup"
    shutil.copy(tmp_path / "ca" / "inventory.sqlite3", backup)
    run_certkit("issue-server", "x.test", "--out", tmp_path / "x", env=env, check=True)
    serial = _serial_of(env, "x.test")
    run_certkit("revoke", serial, "--reason", "keyCompromise", env=env, check=True)
    run_certkit("crl", "--out", crl, env=env, check=True)
    shutil.copy(backup, tmp_path / "ca" / "inventory.sqlite3")  # an inventory restored from an older backup
    for suffix in ("-wal", "-shm"):
        (tmp_path / "ca" / f"inventory.sqlite3{suffix}").unlink(missing_ok=True)
    published = crl.read_bytes()
    for force in ([], ["--force"]):
        proc = _broken(["crl", "--out", crl, *force], env, crl)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "Input/output error" in proc.stderr and "pass --force" not in proc.stderr, proc.stderr
        assert crl.read_bytes() == published
    # readable again: the next CRL carries the revocation the restored inventory lost
    run_certkit("crl", "--out", crl, env=env, check=True)
    assert serial in openssl("crl", "-in", crl, "-noout", "-text").stdout.decode().replace(":", "").upper()


def test_a_renewal_keeping_a_jsonl_key_it_cannot_read_fails_before_signing(tmp_path: Path) -> None:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Key CA", env=env, check=True)
    run_certkit("issue-server", "j.test", "--format", "jsonl", "--out", tmp_path / "f.out", env=env, check=True)
    serial = _serial_of(env, "j.test")
    proc = _broken(["renew", serial, "--out", tmp_path / "nf"], env, tmp_path / "f.out", "openat")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("Error: ") and "Input/output error" in proc.stderr, proc.stderr
    assert "whoever holds the old one" not in proc.stdout + proc.stderr
    assert not (tmp_path / "nf").exists()
    rows = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]
    assert [r["serial"] for r in rows] == [serial]
    # readable, the same renewal takes the key from the file
    done = run_certkit("renew", serial, "--out", tmp_path / "nf", env=env, check=True)
    assert (tmp_path / "nf" / "privkey.pem").is_file(), done.stdout


# --- integrity13: a renewal racing another, and a killed export-p12's leftover --------------------------------------
def test_a_renewal_racing_another_is_told_so(tmp_path: Path) -> None:
    from integrity_helpers import start_paused

    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Race CA", env=env, check=True)
    run_certkit("issue-server", "w.test", "--out", tmp_path / "w", env=env, check=True)
    serial = _serial_of(env, "w.test")
    marker = tmp_path / "paused"
    first = start_paused(["renew", tmp_path / "w"], env, tmp_path, "swapped", marker)
    try:
        second = run_certkit("renew", serial, env=env)
        assert second.returncode == 1 and "is being renewed by another certkit command" in second.stderr, \
            second.stderr
        assert "by hand" not in second.stderr and "--out" not in second.stderr
    finally:
        marker.unlink()
        out, err = first.communicate(timeout=60)
    assert first.returncode == 0, (out, err)
    rows = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]
    assert len([r for r in rows if r["status"] == "valid" and not r.get("renewed_by")]) == 1, rows


def test_a_killed_export_p12s_leftover_is_removed_by_the_next(tmp_path: Path) -> None:
    env = _env(tmp_path) | {"CERTKIT_P12_PASSWORD": "p12-password-1"}
    run_certkit("init-ca", "--name", "P12 CA", env=env, check=True)
    run_certkit("issue-server", "w.test", "--out", tmp_path / "out" / "w", env=env, check=True)
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    for when in (1, 2, 3):
        (tmp_path / "out" / "w" / "bundle.p12").unlink(missing_ok=True)
        subprocess.run([strace, "-f", "-qq", "-o", "/dev/null", "-e", "trace=fsync", "-e",
                        f"inject=fsync:signal=KILL:when={when}", sys.executable, "-m", "certkit", "export-p12",
                        str(tmp_path / "out" / "w")], env=env, capture_output=True, timeout=120)
        if any(p.name.endswith(".certkit-tmp") for p in (tmp_path / "out" / "w").iterdir()):
            break  # killed before its temporary bundle.p12 was renamed into place (it never copies the folder)
    else:
        pytest.skip("no kill left a temporary file in the folder on this system")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["w"]  # nothing beside the folder
    again = run_certkit("export-p12", tmp_path / "out" / "w", env=env)  # refused or not, the leftover goes first
    assert "Traceback" not in again.stderr, again.stderr
    assert not any(p.name.endswith(".certkit-tmp") for p in (tmp_path / "out").rglob("*"))
