"""The fourteenth round's integrity findings (audit integrity, round fourteen).

1. A full temporary folder is not the output's or the inventory's disk. issue-batch spools its checked
   manifest in $TMPDIR, and SQLite writes its temporary files (the statement journal of a large change:
   marking a batch's rows issued) in $SQLITE_TMPDIR/$TMPDIR. A small temporary folder (a tmpfs /tmp, a
   container's emptyDir) that filled up was reported as "the disk is full" (no file named), as
   "OSError: [Errno 28] No space left on device" (several checking processes), or as "The inventory
   .../inventory.sqlite3 cannot be written: the disk is full", sending the user to a disk with room.
   A manifest read from standard input, copied to $TMPDIR first, said "the disk is full" too. The words
   now name the temporary folder.
2. A report that cannot be written to standard output (a log file on a full disk; here /dev/full) after
   the work was done said only "Error: the disk is full.": issue-server (the bundle in place), revoke (the
   certificate revoked), crl, init-ca (the CA made), with or without --json.
   The words now say that standard output failed and that what was done is done.
3. An I/O error syncing a jsonl/k8s/tar output file (issue-server --format jsonl --out F, issue-batch --out F)
   said "Error: Input/output error.", naming no file; it names the output now, and that nothing was put in place.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit
from integrity_helpers import tmpfs


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path),
                       **extra)


def _statuses(inventory: Path) -> dict[str, int]:
    with sqlite3.connect(inventory) as db:
        return dict(db.execute("SELECT status, count(*) FROM certificates GROUP BY status").fetchall())


def _manifest(tmp_path: Path, count: int) -> Path:
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names\n" + "".join(f"server,h{i}.example.com\n" for i in range(count)))
    return manifest


def _fill(folder: Path, leave_kib: int) -> None:
    """Fill the tmpfs at ``folder`` but for about ``leave_kib`` KiB."""
    import os

    info = os.statvfs(folder)
    free = info.f_bavail * info.f_frsize
    (folder / "fill").write_bytes(b"\0" * max(0, free - leave_kib * 1024))


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_full_temporary_folder_while_checking_a_batch_is_named(tmp_path: Path, jobs: str) -> None:
    with tmpfs(tmp_path / "tmp", "size=1m") as scratch:
        env = _env(tmp_path, TMPDIR=str(scratch))
        run_certkit("init-ca", "--name", "Scratch CA", env=env, check=True)
        manifest = _manifest(tmp_path, 3000)
        _fill(scratch, 200)
        proc = run_certkit("issue-batch", manifest, "--format", "jsonl", "--out", tmp_path / "out.jsonl",
                           "--jobs", jobs, env=env, subprocess=True)
        assert_clean_error(proc, f"Cannot write the checked manifest in the temporary folder {scratch}: the disk "
                                 "is full; nothing was issued.")
        assert "$TMPDIR" in proc.stderr
    assert not (tmp_path / "out.jsonl").exists()
    assert _statuses(tmp_path / "ca" / "inventory.sqlite3") == {}


def test_a_full_sqlite_temporary_folder_is_not_called_the_inventorys_disk(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "tmp", "size=1m") as scratch:
        env = _env(tmp_path, TMPDIR=str(scratch))
        run_certkit("init-ca", "--name", "Scratch CA", env=env, check=True)
        manifest = _manifest(tmp_path, 3000)
        out = tmp_path / "out.jsonl"
        # Room for the checked manifest, not for SQLite's statement journal of marking 3,000 rows issued.
        proc = run_certkit("issue-batch", manifest, "--format", "jsonl", "--out", out, env=env, subprocess=True)
        assert proc.returncode == 1, proc.stderr
        error = proc.stderr.strip().splitlines()[-1]
        assert "cannot be written: the disk is full" not in error, error
        assert "SQLite ran out of room, not on the inventory's disk" in error, error
        assert f"most likely in its temporary folder {scratch}" in error and "$SQLITE_TMPDIR" in error, error
        assert f"{out.name} was written whole (3,000 certificates)" in error, error  # grouped (round 35)
    # With room again, the next command records them issued: the output file is whole.
    listed = run_certkit("list", "--json", "--limit", "10000", env=_env(tmp_path))
    assert listed.returncode == 0, listed.stderr
    assert {r["status"] for r in json.loads(listed.stdout)["certificates"]} == {"valid"}
    assert _statuses(tmp_path / "ca" / "inventory.sqlite3") == {"valid": 3000}
    assert len(out.read_text().splitlines()) == 3000


def test_a_full_temporary_folder_while_copying_a_manifest_from_standard_input_is_named(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "tmp", "size=1m") as scratch:
        env = _env(tmp_path, TMPDIR=str(scratch))
        run_certkit("init-ca", "--name", "Scratch CA", env=env, check=True)
        manifest = _manifest(tmp_path, 3000)
        _fill(scratch, 40)
        proc = subprocess.run([sys.executable, "-m", "certkit", "issue-batch", "-", "--format", "jsonl", "--out",
                               str(tmp_path / "out.jsonl")], stdin=manifest.open("rb"), env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1 and proc.stdout == "", proc
        assert proc.stderr.splitlines() == [
            f"Error: Cannot write a copy of the manifest from standard input in the temporary folder {scratch}: the "
            "disk is full; nothing was issued. Free space there, or point $TMPDIR at a folder with room."], proc.stderr
        assert [p.name for p in scratch.iterdir()] == ["fill"]  # the partial copy is removed
    assert not (tmp_path / "out.jsonl").exists()
    assert _statuses(tmp_path / "ca" / "inventory.sqlite3") == {}


STDOUT_FAILED = ("Error: Cannot write to standard output: the disk is full. What the command did before this is "
                 "done; it stopped there, its report cut short.")


def _to_dev_full(args: list, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    with open("/dev/full", "w") as full:
        return subprocess.run([sys.executable, "-m", "certkit", *map(str, args)], stdout=full, stderr=subprocess.PIPE,
                              env=env, cwd=cwd, text=True, timeout=120)


@pytest.mark.parametrize("as_json", [[], ["--json"]])
def test_a_report_standard_output_cannot_take_says_so_and_that_the_work_is_done(tmp_path: Path, as_json) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    env = _env(tmp_path)
    made = _to_dev_full(["init-ca", "--name", "Full CA", *as_json], env, tmp_path)
    assert (made.returncode, made.stderr.splitlines()) == (1, [STDOUT_FAILED])
    assert (tmp_path / "ca" / "ca.pem").exists()
    issued = _to_dev_full(["issue-server", "www.example.com", "--out", "www", *as_json], env, tmp_path)
    assert (issued.returncode, issued.stderr.splitlines()) == (1, [STDOUT_FAILED])
    listed = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]
    assert [r["status"] for r in listed] == ["valid"] and (tmp_path / "www" / "privkey.pem").exists()
    revoked = _to_dev_full(["revoke", listed[0]["serial"], *as_json], env, tmp_path)
    assert (revoked.returncode, revoked.stderr.splitlines()) == (1, [STDOUT_FAILED])
    assert _statuses(tmp_path / "ca" / "inventory.sqlite3") == {"revoked": 1}
    crl = _to_dev_full(["crl", "--out", tmp_path / "ca.crl", *as_json], env, tmp_path)
    assert (crl.returncode, crl.stderr.splitlines()) == (1, [STDOUT_FAILED])
    assert "Serial Number: " + listed[0]["serial"] in subprocess.run(
        ["openssl", "crl", "-in", tmp_path / "ca.crl", "-noout", "-text"], capture_output=True, text=True).stdout


# --- 3. an I/O error syncing a jsonl/k8s/tar output file names that file --------------------------------
@pytest.mark.parametrize("args", [["issue-server", "q.example.com", "--format", "jsonl", "--out", "OUT"],
                                  ["issue-batch", "MANIFEST", "--format", "k8s", "--out", "OUT"]],
                         ids=["issue-server", "issue-batch"])
def test_an_io_error_syncing_an_output_file_names_it(tmp_path: Path, args: list) -> None:
    import shutil

    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Sync CA", env=env, check=True)
    out = tmp_path / "out.yaml"
    args = [str(out) if a == "OUT" else str(_manifest(tmp_path, 3)) if a == "MANIFEST" else a for a in args]
    proc = subprocess.run([strace, "-f", "-qq", "-o", "/dev/null", "-e", "inject=fsync:error=EIO:when=1",
                           sys.executable, "-m", "certkit", *args], env=env, capture_output=True, text=True,
                          timeout=120)
    if "ptrace" in proc.stderr and "Operation not permitted" in proc.stderr:
        pytest.skip("ptrace is not allowed here")
    # Was "Error: Input/output error.", naming nothing.
    assert proc.returncode == 1 and proc.stderr.splitlines() == [
        f"Error: Cannot write {out}: Input/output error; nothing was put in place."], proc.stderr
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if "certkit-tmp" in p.name] == []
    statuses = _statuses(tmp_path / "ca" / "inventory.sqlite3")
    assert statuses.get("valid") is None and statuses.get("abandoned", 0) + statuses.get("pending", 0) >= 1, statuses
