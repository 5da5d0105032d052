"""After a failure nothing is left behind: no half-written file, and no folder that certkit
created for an output that was never written. The failures are real (a full tmpfs, as in
test_filesystem_faults.py); folders that were there before are never removed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import assert_clean_error, run_certkit
from test_filesystem_faults import fill, tmpfs

BUNDLE = sorted(["ca.pem", "cert.pem", "fullchain.pem", "privkey.pem"])  # a root CA's bundle: no chain.pem


def full(mnt: Path, leave: int) -> Path:
    """Fill the tmpfs at ``mnt``; folders can still be created on it (they take no pages), so a
    command gets as far as creating the folders above its output before the disk says no."""
    fill(mnt, leave)
    (mnt / "probe").mkdir()
    (mnt / "probe").rmdir()
    return mnt


def left(mnt: Path) -> list[str]:
    """Everything on the file system at ``mnt`` but the filler."""
    return sorted(str(p.relative_to(mnt)) for p in mnt.rglob("*") if p.name != "filler")


def issued_rows(env: dict) -> list[dict]:
    """Every row of the inventory, whatever its status."""
    rows = []
    for status in ("valid", "pending", "abandoned"):
        listed = json.loads(run_certkit("list", "--status", status, "--json", env=env, check=True).stdout)
        rows += listed["certificates"]
    return rows


# --- one shared helper: make_folders / remove_made ------------------------------------------
def test_make_folders_removes_only_what_it_made_and_only_if_empty(tmp_path: Path) -> None:
    from certkit.atomic import folders_made, make_folders, remove_made

    (tmp_path / "there").mkdir()
    made = make_folders(tmp_path / "there" / "a" / "b" / "c")
    assert made == [tmp_path / "there" / "a", tmp_path / "there" / "a" / "b", tmp_path / "there" / "a" / "b" / "c"]
    assert make_folders(tmp_path / "there" / "a" / "b") == []  # nothing new: nothing of this call's to remove
    (tmp_path / "there" / "a" / "other").mkdir()  # another writer's, meanwhile
    remove_made(made)
    assert sorted(p.name for p in (tmp_path / "there").rglob("*")) == ["a", "other"]

    with pytest.raises(OSError), folders_made(tmp_path / "new" / "x"):
        raise OSError("the write failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["there"]


def test_make_folders_names_a_file_in_the_way(tmp_path: Path) -> None:
    from certkit.atomic import make_folders

    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotADirectoryError) as caught:
        make_folders(tmp_path / "afile" / "sub" / "deeper")
    assert caught.value.strerror == f"{tmp_path / 'afile'} is a file, not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


# --- full disk: each command removes the folders it created --------------------------------
def test_bundle_on_full_disk_leaves_no_parent_folders(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    with tmpfs(tmp_path / "small", "size=64k") as mnt:
        full(mnt, leave=1024)  # room for a file of the bundle, not for all of them
        (mnt / "mine").mkdir()  # the user's: stays, even empty
        proc = run_certkit("issue-server", "full.example", "--out", mnt / "a" / "b" / "c", env=ca_env)
        assert_clean_error(proc, "the disk is full")
        proc = run_certkit("issue-client", "alice", "--out", mnt / "mine" / "x" / "alice", env=ca_env)
        assert_clean_error(proc, "the disk is full")
        assert left(mnt) == ["mine"]


def test_init_ca_on_full_disk_leaves_no_parent_folders(tmp_path: Path, ca_env: dict) -> None:
    with tmpfs(tmp_path / "small", "size=64k") as mnt:
        full(mnt, leave=512)
        proc = run_certkit("init-ca", "--ca-dir", mnt / "newca" / "x", env=ca_env)
        assert_clean_error(proc, "the disk is full")
        assert left(mnt) == []


@pytest.mark.parametrize("fmt", ["tar", "jsonl", "k8s"])
def test_one_file_output_on_full_disk_leaves_no_parent_folders(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                               fmt: str) -> None:
    with tmpfs(tmp_path / "small", "size=64k") as mnt:
        full(mnt, leave=0)
        # (its folder must exist: certkit makes none for an output file, test_audit37_formats3)
        proc = run_certkit("issue-server", "t.example", "--format", fmt, "--out", mnt / f"x.{fmt}", env=ca_env)
        assert_clean_error(proc, "the disk is full")
        assert left(mnt) == []
    assert [r["status"] for r in issued_rows(ca_env)] == ["abandoned"]


def test_batch_file_on_full_disk_leaves_no_parent_folders(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    (tmp_path / "m.csv").write_text("kind,names\nserver,a.example\nserver,b.example\n")
    with tmpfs(tmp_path / "small", "size=64k") as mnt:
        full(mnt, leave=0)
        proc = run_certkit("issue-batch", tmp_path / "m.csv", "--format", "jsonl", "--out", mnt / "x.jsonl",
                           "--jobs", "1", env=ca_env)
        assert_clean_error(proc, "the disk is full")
        assert left(mnt) == []
    assert [r["status"] for r in issued_rows(ca_env)] == ["abandoned", "abandoned"]  # by this command


def test_batch_out_dir_on_full_disk(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    """A batch that wrote nothing leaves no --out-dir; one that wrote some bundles keeps them (they
    are complete and recorded valid) and so the folder they are in, for --resume to finish."""
    (tmp_path / "m.csv").write_text("kind,names,out\nserver,a.example,a\nserver,b.example,b\n")
    with tmpfs(tmp_path / "small", "size=64k") as mnt:
        full(mnt, leave=0)
        proc = run_certkit("issue-batch", tmp_path / "m.csv", "--out-dir", mnt / "batch" / "x", "--jobs", "1",
                           env=ca_env)
        assert_clean_error(proc, "the disk is full")
        assert left(mnt) == []

        (mnt / "filler").unlink()
        full(mnt, leave=4 * 4096)  # one bundle: cert.pem, privkey.pem, fullchain.pem, ca.pem
        proc = run_certkit("issue-batch", tmp_path / "m.csv", "--out-dir", mnt / "batch" / "x", "--jobs", "1",
                           env=ca_env)
        assert_clean_error(proc, "the disk is full")
        assert left(mnt) == ["batch", "batch/x", "batch/x/a", *[f"batch/x/a/{n}" for n in BUNDLE]]

        (mnt / "filler").unlink()
        run_certkit("issue-batch", tmp_path / "m.csv", "--out-dir", mnt / "batch" / "x", "--resume", "--jobs", "1",
                    env=ca_env, check=True)
        assert sorted(p.name for p in (mnt / "batch" / "x").iterdir()) == ["a", "b"]


def test_demo_keep_on_full_disk_leaves_nothing_and_can_run_again(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "size=512k") as mnt:  # room for the demo's 30-odd files, once emptied
        full(mnt, leave=4096)
        (mnt / "empty").mkdir()  # an empty folder of the user's: the demo may fill it, and empties it again
        assert_clean_error(run_certkit("demo", "--keep", mnt / "demo2" / "x"), "the disk is full")
        assert_clean_error(run_certkit("demo", "--keep", mnt / "empty"), "the disk is full")
        assert left(mnt) == ["empty"]
        (mnt / "filler").unlink()
        run_certkit("demo", "--keep", mnt / "demo2" / "x", check=True)
        run_certkit("demo", "--keep", mnt / "empty", check=True)
        assert (mnt / "demo2" / "x" / "ca" / "ca.pem").is_file() and (mnt / "empty" / "peer" / "cert.pem").is_file()


# --- one line saying what is wrong ----------------------------------------------------------
@pytest.mark.parametrize("fmt", ["folder", "jsonl"])
def test_a_file_where_a_folder_must_be(tmp_path: Path, ca_dir: Path, ca_env: dict, fmt: str) -> None:
    (tmp_path / "afile").write_text("mine\n")
    out = tmp_path / "afile" / "sub" if fmt == "folder" else tmp_path / "afile" / "sub" / "x.jsonl"
    proc = run_certkit("issue-server", "a.example", "--format", fmt, "--out", out, env=ca_env)
    assert_clean_error(proc, f"{tmp_path / 'afile'} is a file, not a folder")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert (tmp_path / "afile").read_text() == "mine\n"
    assert issued_rows(ca_env) == []  # refused before anything was signed


def test_a_file_where_the_demo_folder_must_be(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("mine\n")
    proc = run_certkit("demo", "--keep", tmp_path / "afile" / "demo")
    assert_clean_error(proc, f"{tmp_path / 'afile'} is a file, not a folder, so the demo folder")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert (tmp_path / "afile").read_text() == "mine\n"


@pytest.mark.parametrize("name", ["ca.pem", "inventory.sqlite3"])
def test_a_directory_where_a_ca_file_must_be(tmp_path: Path, ca_dir: Path, ca_env: dict, name: str) -> None:
    (ca_dir / name).unlink()
    (ca_dir / name).mkdir()
    proc = run_certkit("issue-server", "a.example", "--out", tmp_path / "a", env=ca_env)
    assert_clean_error(proc, f"{ca_dir / name} is a folder, not a file")
    assert "missing" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "a").exists()
    checked = run_certkit("check", env=ca_env)  # check reports the same, not "missing"
    assert checked.returncode == 1 and f"{ca_dir / name} is a folder, not a file" in checked.stdout + checked.stderr
    assert "is missing" not in checked.stdout
    os.rmdir(ca_dir / name)


def test_demo_keep_never_writes_into_a_ca_directory(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    """The demo's CAs and private keys go nowhere an output option may not write: neither the
    CA directory in use nor any folder that holds a CA."""
    other = dict(ca_env, CERTKIT_CA_DIR=str(tmp_path / "elsewhere"))
    for env, fragment in ((ca_env, "is in the CA directory"), (other, "which holds a CA")):
        proc = run_certkit("demo", "--keep", ca_dir / "sub", env=env)
        assert_clean_error(proc, fragment)
    assert not (ca_dir / "sub").exists()
