"""File-system faults, for real: a full disk, a read-only file system, links planted where
files go, folders others control, umask 000. Each ends in one clear error and no partial
files; private keys stay 0600."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import assert_clean_error, run_certkit


@contextmanager
def tmpfs(path: Path, *options: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path, leave: int) -> None:
    """Fill the file system at ``path`` until fewer than ``leave`` bytes remain."""
    filler = path / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
                st = os.statvfs(path)
                if st.f_bavail * st.f_frsize < leave + 4096:
                    break
        except OSError:
            pass


def no_temporaries(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if "certkit-tmp" in p.name], list(folder.rglob("*"))


def test_disk_full_while_writing_a_bundle(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    with tmpfs(tmp_path / "small", "size=64k") as mnt:
        fill(mnt, leave=1024)  # room for a file or two, not for a bundle
        proc = run_certkit("issue-server", "a.example.com", "--out", mnt / "a", env=ca_env)
        assert_clean_error(proc, "the disk is full")
        assert not (mnt / "a").exists()
        no_temporaries(mnt)
    # Signed and recorded before the disk said no: the inventory says it was never delivered.
    assert_inventory(ca_env, valid=0, abandoned=1)


def test_disk_full_while_creating_a_ca(tmp_path: Path, ca_env: dict) -> None:
    with tmpfs(tmp_path / "small", "size=64k") as mnt:
        fill(mnt, leave=512)
        proc = run_certkit("init-ca", "--ca-dir", mnt / "ca", env=ca_env)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr and "Error:" in proc.stderr
        assert not (mnt / "ca").exists()
        no_temporaries(mnt)


def test_read_only_file_system(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    with tmpfs(tmp_path / "ro", "size=1m", "ro") as mnt:
        proc = run_certkit("issue-client", "alice", "--out", mnt / "alice", env=ca_env)
        assert_clean_error(proc, "the file system is read-only")
        assert list(mnt.iterdir()) == []
    assert_inventory(ca_env, valid=0, abandoned=0)  # refused before anything was signed


def assert_inventory(env: dict, *, valid: int, abandoned: int) -> None:
    import json

    listed = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]
    assert len([r for r in listed if r["status"] == "valid"]) == valid, listed
    gone = json.loads(run_certkit("list", "--status", "abandoned", "--json", env=env, check=True).stdout)
    assert gone["count"] == abandoned, gone


def test_dangling_symlink_as_output_folder(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    (tmp_path / "alice").symlink_to(tmp_path / "does-not-exist")
    proc = run_certkit("issue-client", "alice", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, "symbolic link")
    assert not (tmp_path / "does-not-exist").exists()


@pytest.mark.parametrize("dangling", [True, False])
def test_symlinked_key_file_is_never_written_through(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                    dangling: bool) -> None:
    run_certkit("issue-client", "alice", cwd=tmp_path, env=ca_env, check=True)
    victim = tmp_path / "victim"
    if not dangling:
        victim.write_text("precious\n")
    (tmp_path / "alice" / "privkey.pem").unlink()
    (tmp_path / "alice" / "privkey.pem").symlink_to(victim)
    proc = run_certkit("issue-client", "alice", "--force", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, "symbolic link")
    assert (victim.read_text() == "precious\n") if not dangling else not victim.exists()
    no_temporaries(tmp_path / "alice")


def test_folder_owned_by_someone_else(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a folder to another user needs root")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)  # nobody
    proc = run_certkit("issue-client", "alice", "--out", theirs, env=ca_env)
    assert_clean_error(proc, "belongs to another user")
    assert list(theirs.iterdir()) == []


def test_world_writable_folder_without_sticky_bit(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    assert_clean_error(run_certkit("issue-client", "alice", "--out", shared, env=ca_env), "writable by every user")
    assert list(shared.iterdir()) == []
    # A new folder inside a sticky world-writable one (like /tmp) is the user's own: fine.
    os.chmod(shared, 0o1777)
    run_certkit("issue-client", "alice", "--out", shared / "alice", env=ca_env, check=True)
    assert stat.S_IMODE((shared / "alice" / "privkey.pem").stat().st_mode) == 0o600


def test_leftovers_of_dead_writers_are_swept_live_ones_kept(tmp_path: Path) -> None:
    import subprocess as sp

    from certkit.bundle import sweep_stale

    dead = sp.Popen(["true"])
    dead.wait()  # a pid that no longer runs
    live = os.getpid()
    (tmp_path / f".alice.{dead.pid}-00ff.certkit-tmp").mkdir()
    (tmp_path / f".alice.{dead.pid}-00ff.certkit-tmp" / "privkey.pem").write_text("secret")
    (tmp_path / f".alice.{live}-0aaa.certkit-tmp").mkdir()
    (tmp_path / f".bob.{dead.pid}-0bbb.old.certkit-tmp").mkdir()  # bob's bundle, set aside
    (tmp_path / f".bob.{dead.pid}-0bbb.old.certkit-tmp" / "cert.pem").write_text("bob")
    (tmp_path / ".notes.txt").write_text("not ours")
    sweep_stale(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f".alice.{live}-0aaa.certkit-tmp", "bob", ".notes.txt"])
    assert (tmp_path / "bob" / "cert.pem").read_text() == "bob"  # put back, not deleted
