"""The benchmark scripts that docs/performance.md and docs/list.md cite still run against today's code.

benchmarks/inventory_bench.py had imported names the inventory no longer has (``_iso``, ``san_strings``,
``certkit.ca._ski``) for several rounds, so the command docs/list.md gives failed at once, and nothing said so.
Each script runs here at its smallest size; what they measure is never asserted (timings are not tests), only
that they finish and print the table they promise."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO


def _bench(*args: str, timeout: int = 300) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stdout


def test_inventory_bench_runs():
    out = _bench("benchmarks/inventory_bench.py", "--count", "300", "--repeats", "1")
    assert "| operation | empty inventory | 300 certificates |" in out, out
    assert "| certkit issue-server (CLI) |" in out, out


def test_builder_cost_runs():
    out = _bench("benchmarks/builder_cost.py", "--number", "5")
    assert "| full server profile, builder made and signed: one call |" in out, out


@pytest.mark.parametrize("args", [["--stages", "--runs", "1"], ["--n", "200", "--big", "0", "--runs", "1"]],
                         ids=["stages", "formats"])
def test_fleet_bench_runs(args):
    out = _bench("benchmarks/fleet_bench.py", *args)
    if "--stages" in args:
        assert "| library loop: key, sign, both PEMs |" in out, out
    else:
        for fmt in ("folder", "jsonl", "tar"):
            assert f"`certkit issue-batch --format {fmt}" in out, out
