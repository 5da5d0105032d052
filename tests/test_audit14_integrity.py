"""The fourteenth round's integrity findings (audit integrity, round fourteen).

1. A full temporary folder is not the output's or the inventory's disk. issue-batch spools its checked
   manifest in $TMPDIR, and SQLite writes its temporary files (the statement journal of a large change:
   marking a batch's rows issued) in $SQLITE_TMPDIR/$TMPDIR. A small temporary folder (a tmpfs /tmp, a
   container's emptyDir) that filled up was reported as "the disk is full" (no file named), as
   "OSError: [Errno 28] No space left on device" (several checking processes), or as "The inventory
   .../inventory.sqlite3 cannot be written: the disk is full", sending the user to a disk with room.
   A manifest read from standard input, copied to $TMPDIR first, said "the disk is full" too. The words
   now name the temporary folder.
"""

from __future__ import annotations

import json
import sqlite3
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
        assert f"{out.name} was written whole (3000 certificates)" in error, error
    # With room again, the next command records them issued: the output file is whole.
    listed = run_certkit("list", "--json", "--limit", "10000", env=_env(tmp_path))
    assert listed.returncode == 0, listed.stderr
    assert {r["status"] for r in json.loads(listed.stdout)["certificates"]} == {"valid"}
    assert _statuses(tmp_path / "ca" / "inventory.sqlite3") == {"valid": 3000}
    assert len(out.read_text().splitlines()) == 3000


def test_a_full_temporary_folder_while_copying_a_manifest_from_standard_input_is_named(tmp_path: Path) -> None:
    import subprocess
    import sys

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
