"""Start-up side by side: this checkout's certkit against an earlier commit's, in one run.

    python benchmarks/startup_vs.py 02fa671          # round one's last commit, 40 rounds
    python benchmarks/startup_vs.py 02fa671 --runs 60

The machine's speed moves from minute to minute (the import floor measured 109 to
192 ms on the development VM within an hour), so a figure from another day is no
baseline. This runs both versions with the same interpreter and packages, rounds
interleaved: ``python -c pass``, the import floor (``import cryptography.x509,
click``), then for each version ``python -m certkit --help`` and a one-shot
``issue-server`` with an unencrypted EC CA. It reports medians of wall clock and of
CPU time (user + system, from the children's rusage: what the code does, without
the waits for a disk that other sessions share), as ratios to the baselines.
The earlier commit's ``certkit/`` is taken with ``git archive`` into a temporary
folder, and this checkout's is copied beside it; both are byte-compiled first.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def measure(cmd: list[str], env: dict) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {cmd}\n{proc.stderr.decode(errors='replace')}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall * 1000, cpu * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("commit", help="the earlier commit to compare with (e.g. 02fa671, round one's last)")
    parser.add_argument("--runs", type=int, default=40, help="interleaved rounds [default: 40]")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="certkit-startup-vs-"))
    try:
        # Both copies in the same temporary folder: where the files lie (one mount or another)
        # changed --help by 5 ms on the development VM.
        versions = {"this checkout": work / "new", args.commit: work / "old"}
        shutil.copytree(REPO / "certkit", work / "new" / "certkit", ignore=shutil.ignore_patterns("__pycache__"))
        (work / "old").mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", args.commit, "certkit"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(work / "old")], input=archive, check=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith("CERTKIT_") and k != "PYTHONDONTWRITEBYTECODE"}
        envs = {name: dict(base, PYTHONPATH=str(root)) for name, root in versions.items()}
        slot = {name: i for i, name in enumerate(versions)}  # each version's own CA directory
        for name, root in versions.items():
            subprocess.run([PY, "-m", "compileall", "-q", str(root / "certkit")], env=base, check=True)
            subprocess.run([PY, "-m", "certkit", "init-ca", "--ca-dir", str(work / f"ca-{slot[name]}"),
                            "--no-passphrase", "--name", "bench"], env=envs[name], capture_output=True, check=True)
        cases = [("python -c pass", [PY, "-c", "pass"], base),
                 ("floor: import cryptography.x509, click", [PY, "-c", "import cryptography.x509, click"], base)]
        for name in versions:
            cases.append((f"{name}: certkit --help", [PY, "-m", "certkit", "--help"], envs[name]))
        results: dict[str, list[tuple[float, float]]] = {label: [] for label, _, _ in cases}
        for name in versions:
            results[f"{name}: issue-server"] = []
        for r in range(args.runs):
            for label, cmd, env in cases:
                results[label].append(measure(cmd, env))
            for name in versions:
                out = work / f"out-{slot[name]}-{r}"
                cmd = [PY, "-m", "certkit", "issue-server", "web.internal", "--ca-dir", str(work / f"ca-{slot[name]}"),
                       "--out", str(out)]
                results[f"{name}: issue-server"].append(measure(cmd, envs[name]))
        med = {label: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
               for label, v in results.items()}
        passed, floor = med["python -c pass"], med["floor: import cryptography.x509, click"]
        print(f"{args.runs} interleaved rounds; load average at the end {os.getloadavg()[0]:.2f}\n")
        print("| command | wall (median) | ratio | CPU (median) | ratio |")
        print("|---|---:|---|---:|---|")
        for label, (wall, cpu) in med.items():
            ref, ref_name = (passed, "`python -c pass`") if "--help" in label else (floor, "the floor")
            ratio = "" if label in ("python -c pass", "floor: import cryptography.x509, click") else \
                f"{wall / ref[0]:.2f}x {ref_name}"
            cpu_ratio = "" if not ratio else f"{cpu / ref[1]:.2f}x {ref_name}"
            print(f"| {label} | {wall:.1f} ms | {ratio} | {cpu:.1f} ms | {cpu_ratio} |")
        new, old = versions
        print("\nPaired, round by round (this checkout minus the earlier commit), median and quartiles:\n")
        for what in ("certkit --help", "issue-server"):
            for unit, index in (("wall", 0), ("CPU", 1)):
                diffs = sorted(a[index] - b[index] for a, b in zip(results[f"{new}: {what}"],
                                                                   results[f"{old}: {what}"], strict=True))
                q = len(diffs) // 4
                print(f"- {what}, {unit}: {statistics.median(diffs):+.1f} ms ({diffs[q]:+.1f} to {diffs[-q - 1]:+.1f})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
