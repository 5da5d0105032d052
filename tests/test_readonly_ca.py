"""A CA directory that cannot be written (an offline root on read-only media, a full disk) is still
read: ``list``, ``check`` and ``verify`` work on it, and ``verify`` still refuses a revoked
certificate. What writes fails as read-only, with nothing changed. A verify that cannot read the
inventory at all fails closed (tests/test_damaged_ca.py: a missing inventory)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit
from integrity_helpers import fill, tmpfs


def _ca_with_a_revoked_and_a_valid(root: Path) -> dict:
    env = certkit_env(CERTKIT_CA_DIR=str(root / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Offline Root", env=env, check=True)
    for name in ("gone.internal", "kept.internal"):
        run_certkit("issue-server", name, "--out", root / name, env=env, check=True)
    run_certkit("revoke", root / "gone.internal", "--reason", "keyCompromise", env=env, check=True)
    return env


def _remount_read_only(path: Path) -> None:
    proc = subprocess.run(["mount", "-o", "remount,ro", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"remounting read-only is not permitted here: {proc.stderr.strip()}")


def _reads_work(root: Path, env: dict) -> None:
    proc = run_certkit("verify", root / "gone.internal", "--purpose", "server", "--json", env=env)
    data = json.loads(proc.stdout)
    assert proc.returncode == 1 and data["valid"] is False, data
    assert any("revoked on" in r and "keyCompromise" in r for r in data["reasons"]), data
    proc = run_certkit("verify", root / "kept.internal", "--purpose", "server", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_certkit("list", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert sorted(c["status"] for c in json.loads(proc.stdout)["certificates"]) == ["revoked", "valid"]
    proc = run_certkit("check", env=env)
    assert proc.returncode == 0 and "2 certificates recorded" in proc.stdout, proc.stdout + proc.stderr


def test_a_read_only_ca_directory_is_read(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "media", "size=4m") as media:
        env = _ca_with_a_revoked_and_a_valid(media)
        _remount_read_only(media)
        _reads_work(media, env)
        proc = run_certkit("issue-server", "new.internal", "--out", tmp_path / "new", env=env)
        assert_clean_error(proc, "read-only")
        assert not (tmp_path / "new").exists()


def test_a_ca_directory_on_a_full_disk_is_read(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "size=2m") as small:
        env = _ca_with_a_revoked_and_a_valid(small)
        # A clean copy of the inventory, as after the last command: no log and no log index beside it.
        for extra in ("inventory.sqlite3-wal", "inventory.sqlite3-shm"):
            assert not (small / "ca" / extra).exists()
        fill(small, leave=0)
        _reads_work(small, env)
        proc = run_certkit("revoke", small / "kept.internal", env=env)
        assert_clean_error(proc, "the disk is full")


def test_pending_rows_of_a_read_only_inventory_are_left_with_a_warning(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "media", "size=4m") as media:
        env = _ca_with_a_revoked_and_a_valid(media)
        with sqlite3.connect(media / "ca" / "inventory.sqlite3") as db:  # a writer that died long ago
            db.execute("UPDATE certificates SET status = 'pending', writer = 'gone-host 1 1'"
                       " WHERE subject = 'CN=kept.internal'")
        db.close()
        _remount_read_only(media)
        proc = run_certkit("list", env=env)
        assert proc.returncode == 0, proc.stderr
        assert "Warning:" in proc.stderr and "pending were not settled" in proc.stderr
        assert "pending" in proc.stdout
