"""Settling rows by serial costs the same however many other rows are pending.

SQLite plans without statistics: it took ``status = 'pending'`` (an indexed column) for more
selective than a list of serials, so every statement that settles rows by serial read every
pending row of the inventory. Marking a 100,000-certificate batch valid at its end (a jsonl or tar
file, put in place whole) then read 100,000 rows 200 times. These tests count SQLite's work (its
virtual machine's steps, through a progress handler), never time, and ask the planner directly.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import sqlite3
from pathlib import Path

import pytest

from certkit.inventory import Inventory
from certkit.inventory.reconcile import writer_id
from certkit.inventory.rows import iso

from conftest import run_certkit

STEP = 100  # the progress handler runs every STEP virtual-machine instructions


@pytest.fixture
def counted(monkeypatch):
    """Every SQLite connection certkit opens counts its work into ``counted["steps"]`` and logs its
    statements into ``counted["sql"]``."""
    state = {"steps": 0, "sql": []}
    real_connect = sqlite3.connect

    def connect(*args, **kwargs):
        conn = real_connect(*args, **kwargs)

        def tick() -> int:
            state["steps"] += 1
            return 0

        conn.set_progress_handler(tick, STEP)
        conn.set_trace_callback(state["sql"].append)
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)
    return state


def add_rows(path: Path, count: int, status: str, writer: str | None) -> list[str]:
    """``count`` rows of ``status`` held by ``writer``, written directly (what they hold does not matter)."""
    now = iso(dt.datetime.now(dt.UTC))
    serials = [secrets.token_hex(16).upper() for _ in range(count)]
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO certificates (serial, kind, subject, names, not_before, not_after, fingerprint_sha256,"
            " der, status, issued_at, sink, writer, keyed) VALUES (?, 'server', 'CN=x', '[]', ?, ?, ?, x'00', ?, ?,"
            " 'memory', ?, 1)", [(s, now, now, secrets.token_hex(32), status, now, writer) for s in serials])
    db.close()
    return serials


def work_of(counted, action) -> int:
    counted["steps"] = 0
    action()
    return counted["steps"]


SETTLE = {
    "mark valid": lambda inventory, serials: inventory.mark_issued(serials),
    "mark valid, not waiting for the disk": lambda inventory, serials: inventory.mark_issued(serials, durable=False),
    "mark abandoned": lambda inventory, serials: inventory.mark_abandoned(serials),
}


@pytest.mark.parametrize("how", sorted(SETTLE))
def test_settling_rows_does_not_read_the_other_pending_rows(how, ca_dir: Path, counted) -> None:
    path = ca_dir / "inventory.sqlite3"
    inventory = Inventory(path)
    mine = writer_id()
    alone = add_rows(path, 300, "pending", mine)
    work_alone = work_of(counted, lambda: SETTLE[how](inventory, alone))
    add_rows(path, 20_000, "pending", mine)  # another batch, under way
    crowded = add_rows(path, 300, "pending", mine)
    work_crowded = work_of(counted, lambda: SETTLE[how](inventory, crowded))
    assert work_alone > 0
    # reading the other 20,000 pending rows once per statement would be dozens of times the work
    assert work_crowded < 1.5 * work_alone, (how, work_alone, work_crowded)
    with sqlite3.connect(path) as db:
        settled = dict(db.execute("SELECT status, count(*) FROM certificates WHERE serial IN"
                                  f" ({','.join('?' * 600)}) GROUP BY status", alone + crowded).fetchall())
    db.close()
    assert settled == {"abandoned" if "abandoned" in how else "valid": 600}


def test_reconciling_orphans_does_not_read_the_live_pending_rows(ca_dir: Path, counted) -> None:
    """Rows of a process that is gone are settled (abandoned: nothing of theirs is on disk); the
    rows a live process holds are left pending. One scan finds the pending rows; settling the
    orphans, 500 at a time, must not read the live ones again for each 500."""
    path = ca_dir / "inventory.sqlite3"
    inventory = Inventory(path)
    gone = f"{writer_id().rsplit(' ', 2)[0]} 999999999 1"  # this host, a pid no process has
    orphans = add_rows(path, 1_200, "pending", gone)
    work_alone = work_of(counted, inventory.reconcile)  # 1,200 orphans, nothing else pending
    live = add_rows(path, 20_000, "pending", writer_id())
    orphans += add_rows(path, 1_200, "pending", gone)
    work_small = work_of(counted, inventory.reconcile)  # 1,200 orphans among 20,000 live rows
    orphans += add_rows(path, 2_400, "pending", gone)
    work_large = work_of(counted, inventory.reconcile)  # 2,400 orphans among them
    # 1,200 more orphans cost what 1,200 orphans cost alone, not two more reads of 20,000 live rows
    assert work_large - work_small < 1.5 * work_alone, (work_alone, work_small, work_large)
    with sqlite3.connect(path) as db:
        counts = dict(db.execute("SELECT status, count(*) FROM certificates GROUP BY status").fetchall())
    db.close()
    assert counts == {"abandoned": len(orphans), "pending": len(live)}


BY_SERIAL = re.compile(r"\bserial\s*(=|IN\b)", re.IGNORECASE)


def test_every_statement_that_finds_rows_by_serial_uses_the_serial_index(ca_env, ca_dir: Path, tmp_path: Path,
                                                                        counted) -> None:
    """The statements a batch into one file, a renewal, a revocation and a list run: each one that
    finds certificates by serial is planned through the serial's index, never through status."""
    manifest = tmp_path / "fleet.csv"
    manifest.write_text("kind,names\n" + "".join(f"server,h{i}.example.net\n" for i in range(30)))
    web = tmp_path / "web"
    for args in (("issue-batch", str(manifest), "--format", "jsonl", "--out", str(tmp_path / "fleet.jsonl"),
                  "--jobs", "1"),
                 ("issue-server", "web.example.net", "--out", str(web)),
                 ("renew", str(web), "--force"),
                 ("revoke", str(web)),
                 ("list",)):
        run_certkit(*args, env=ca_env, check=True)
    statements = {sql for sql in counted["sql"] if "certificates" in sql and BY_SERIAL.search(sql)}
    assert any("status = 'valid'" in sql for sql in statements)  # the marks were seen
    with sqlite3.connect(ca_dir / "inventory.sqlite3") as db:
        for sql in statements:
            params = [None] * sql.count("?")
            plan = [row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            through_status = [step for step in plan if "certificates_pending" in step
                              or "certificates_status_not_after" in step]
            assert not through_status, (sql, plan)
    db.close()
