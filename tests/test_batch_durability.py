"""A batch into one file (jsonl, tar, k8s) records its certificates pending without waiting for the
disk, and makes the inventory durable once, before the file is put in place: until then nothing of
theirs is delivered, and from then on the inventory knows every certificate in the file.

The order is observed in a real run (in this process, one worker): every statement SQLite is given,
every ``os.fsync`` and the link or rename that puts the file in place, as they happen.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from conftest import run_certkit


@pytest.fixture
def events(monkeypatch):
    """("sql", statement), ("fsync", path) and ("place", path) in the order they happen."""
    log: list[tuple[str, str]] = []
    real_connect, real_fsync, real_link, real_replace = sqlite3.connect, os.fsync, os.link, os.replace

    def connect(*args, **kwargs):
        conn = real_connect(*args, **kwargs)
        conn.set_trace_callback(lambda sql: log.append(("sql", sql)))
        return conn

    def fsync(fd):
        log.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def link(src, dst, *args, **kwargs):
        log.append(("place", os.fspath(dst)))
        return real_link(src, dst, *args, **kwargs)

    def replace(src, dst, *args, **kwargs):
        log.append(("place", os.fspath(dst)))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "replace", replace)
    return log


def transactions(log: list[tuple[str, str]]) -> list[list[str]]:
    """The statements of each connection that recorded pending rows, from its first statement to COMMIT."""
    found, current = [], []
    for kind, text in log:
        if kind != "sql":
            continue
        current.append(text)
        if text.strip().upper() == "COMMIT":
            if any(s.startswith("INSERT INTO certificates") for s in current):
                found.append(current)
            current = []
        elif text.startswith("PRAGMA busy_timeout"):
            current = [text]  # a new connection's transaction starts
    return found


def batch(tmp_path: Path, ca_env: dict, fmt: str, lines: int = 12, chunk: int = 5) -> Path:
    manifest = tmp_path / "fleet.csv"
    manifest.write_text("kind,names\n" + "".join(f"server,h{i}.example.net\n" for i in range(lines)))
    env = dict(ca_env, CERTKIT_TEST_CHUNK_SIZE=str(chunk))
    out = tmp_path / f"fleet.{fmt}"
    args = ["--out", str(out)] if fmt != "folder" else ["--out-dir", str(out)]
    proc = run_certkit("issue-batch", str(manifest), "--format", fmt, *args, "--jobs", "1", "--json", env=env,
                       check=True)
    assert json.loads(proc.stdout)["issued"] == lines
    return out


@pytest.mark.parametrize("fmt", ["jsonl", "tar", "k8s"])
def test_a_batch_file_syncs_the_inventory_once_before_it_is_put_in_place(fmt, ca_env, ca_dir: Path,
                                                                          tmp_path: Path, events) -> None:
    out = batch(tmp_path, ca_env, fmt)
    recorded = transactions(events)
    assert len(recorded) == 3  # 12 lines in chunks of 5: one transaction each
    assert all("PRAGMA synchronous = NORMAL" in tx for tx in recorded), recorded  # not waiting for the disk
    last_insert = max(i for i, (kind, text) in enumerate(events)
                      if kind == "sql" and text.startswith("INSERT INTO certificates"))
    placed = [i for i, (kind, path) in enumerate(events) if kind == "place" and path == str(out)]
    assert len(placed) == 1
    inventory = str(ca_dir / "inventory.sqlite3")
    synced = [i for i, (kind, path) in enumerate(events)
              if kind == "fsync" and path in (inventory, inventory + "-wal") and last_insert < i < placed[0]]
    assert synced, "the inventory was not synced between the last pending row and putting the file in place"
    # and after it is in place, its certificates are marked valid, durably
    marks = [i for i, (kind, text) in enumerate(events)
             if kind == "sql" and text.startswith("UPDATE certificates SET status = 'valid'")]
    assert marks and min(marks) > placed[0]
    with sqlite3.connect(ca_dir / "inventory.sqlite3") as db:
        assert db.execute("SELECT status, count(*) FROM certificates GROUP BY status").fetchall() == [("valid", 12)]
    db.close()


def test_bundle_folders_are_recorded_durably_before_they_are_written(ca_env, ca_dir: Path, tmp_path: Path,
                                                                     events) -> None:
    """A folder is delivered as soon as it is written: its pending row waits for the disk first."""
    batch(tmp_path, ca_env, "folder")
    recorded = transactions(events)
    assert len(recorded) == 3
    assert not any("PRAGMA synchronous = NORMAL" in tx for tx in recorded), recorded
