"""The inventory's SQLite file holds everything once a command has exited: a backup that copies
``inventory.sqlite3`` alone (as docs/ca-directory.md says it may) misses nothing.

certkit keeps one idle connection open while it runs (certkit.db.SQLiteDatabase), so that
its transactions do not each checkpoint the write-ahead log; these tests hold it to
checkpointing and removing the log when the process ends, with and without forked batch
workers, and to never creating an inventory that does not exist.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from certkit.db import SQLiteDatabase

from conftest import run_certkit


@pytest.fixture(autouse=True)
def _real_processes(monkeypatch):
    """What a process leaves behind when it exits is the point: certkit runs as a real process."""
    monkeypatch.setenv("CERTKIT_TEST_SUBPROCESS", "1")


def rows_in_the_file_alone(ca_dir: Path, tmp_path: Path) -> dict[str, int]:
    """Status counts of a copy of inventory.sqlite3 made without its -wal and -shm files."""
    copy = tmp_path / "backup.sqlite3"
    shutil.copyfile(ca_dir / "inventory.sqlite3", copy)
    with sqlite3.connect(copy) as db:
        counts = dict(db.execute("SELECT status, count(*) FROM certificates GROUP BY status").fetchall())
    db.close()
    return counts


def assert_log_gone(ca_dir: Path) -> None:
    left = sorted(p.name for p in ca_dir.iterdir() if p.name.startswith("inventory.sqlite3-"))
    assert left == [], f"the write-ahead log was left behind: {left}"


def test_one_shot_commands_leave_everything_in_the_file(ca_env, ca_dir: Path, tmp_path: Path) -> None:
    run_certkit("issue-server", "web.internal", "--out", str(tmp_path / "web"), env=ca_env, check=True)
    run_certkit("issue-client", "alice", "--out", str(tmp_path / "alice"), env=ca_env, check=True)
    run_certkit("revoke", str(tmp_path / "alice"), env=ca_env, check=True)
    assert_log_gone(ca_dir)
    assert rows_in_the_file_alone(ca_dir, tmp_path) == {"valid": 1, "revoked": 1}


def test_a_batch_with_workers_leaves_everything_in_the_file(ca_env, ca_dir: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "fleet.csv"
    manifest.write_text("kind,names\n" + "".join(f"server,h{i}.example.net\n" for i in range(40)))
    env = dict(ca_env, CERTKIT_TEST_CHUNK_SIZE="5")  # 8 chunks, taken in turn by 2 forked workers
    run_certkit("issue-batch", str(manifest), "--out-dir", str(tmp_path / "out"), "--jobs", "2", env=env,
                check=True)
    assert_log_gone(ca_dir)
    assert rows_in_the_file_alone(ca_dir, tmp_path) == {"valid": 40}


def test_the_held_connection_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.sqlite3"
    SQLiteDatabase(missing)._hold()
    assert not missing.exists()  # never an empty inventory where none was


def test_the_held_connection_is_closed_before_a_fork(tmp_path: Path) -> None:
    import os

    path = tmp_path / "inv.sqlite3"
    database = SQLiteDatabase(path)
    database.create(["CREATE TABLE t (x INTEGER)"])
    with database.transaction(write=True) as tx:
        tx.execute("INSERT INTO t VALUES (1)")
    assert database._held is not None and Path(f"{path}-wal").exists()
    pid = os.fork()
    if pid == 0:  # the child: nothing inherited is open; it can use the inventory on its own
        try:
            code = 0 if database._held is None else 3
            with database.transaction(write=True) as tx:
                tx.execute("INSERT INTO t VALUES (2)")
        except BaseException:
            code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert database._held is None  # released before the fork, checkpointed: reopened when needed
    with database.transaction() as tx:
        assert [x for (x,) in tx.execute("SELECT x FROM t ORDER BY x")] == [1, 2]
    database.release()
    assert not Path(f"{path}-wal").exists()
