"""Team scale, side by side: the inventory in SQLite or PostgreSQL, the CA key in a file or in SoftHSM2.

    python benchmarks/team_bench.py [--quick] [--output FILE]

Starts its own PostgreSQL (Debian's initdb/pg_ctl, fsync on, as a server runs) and SoftHSM2
(tests/team_postgres.py, tests/team_hsm.py) in temporary folders, and creates four EC P-256 CAs:
SQLite + key file (certkit's default, the baseline of every ratio), PostgreSQL + key file,
SQLite + SoftHSM2 key, PostgreSQL + SoftHSM2 key. The key files are encrypted (the default; the
passphrase comes from the environment), the PIN likewise. Bundles are written to RAM (/dev/shm,
when there is one; fsync is still called) so that the disk does not hide the database and the
key. Then, in ONE run, interleaved round-robin (each round starting with the next configuration)
so that a shared machine's drift hits every configuration alike:

- one-shot: ``certkit issue-server`` as a new process (start-up, passphrase or PIN, one
  certificate, its files): median of N runs;
- batch: ``certkit issue-batch`` of M server certificates (all cores; its own issuing rate and the
  wall clock), median of R runs;
- 4 processes at once, each issuing K certificates through the library, one ``deliver()`` per
  certificate (its own transactions and bundle folder): on PostgreSQL each process has its own
  copy of the CA directory (four hosts); on SQLite all four share the one CA directory (its file
  cannot be shared between hosts at all); the aggregate rate, against one process;
- one signature, in process: ``cryptography`` with the key in memory against the token.

Prints Markdown tables (and writes them to --output).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from team_hsm import SoftHSM, module  # noqa: E402
from team_postgres import PostgresServer, bindir  # noqa: E402

PASSPHRASE = "benchmark passphrase"
CONFIGS = ("SQLite + key file", "PostgreSQL + key file", "SQLite + SoftHSM2 key", "PostgreSQL + SoftHSM2 key")
BASELINE = CONFIGS[0]

# One simulated host: issues COUNT certificates one deliver() at a time; prints its start and end.
WORKER = r"""
import sys, time
from certkit.issuing import FolderTarget, deliver, server_request
from certkit.store import CADirectory
from certkit.cli.common import key_secret
import os
ca_dir, out, count, prefix = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
store = CADirectory(ca_dir)
env, _ = key_secret(store)
ca = store.open()
ca.unlock(os.environ[env].encode())
deliver(ca, server_request([f"{prefix}-warm.example.com"]), FolderTarget(f"{out}/{prefix}-warm"))
started = time.time()
for i in range(count):
    deliver(ca, server_request([f"{prefix}-{i}.example.com"]), FolderTarget(f"{out}/{prefix}-{i}"))
print(started, time.time())
"""


class Bench:
    def __init__(self, work: Path, ram: Path, quick: bool) -> None:
        self.work, self.ram, self.quick = work, ram, quick
        self.pg = PostgresServer()
        self.hsm = SoftHSM()
        self.counter = 0
        self.env: dict[str, str] = {}

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    def setup(self) -> None:
        self.pg.start(durable=True)
        token = self.hsm.new_token("bench")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CERTKIT_")}
        self.env.update(PYTHONPATH=str(REPO), CERTKIT_CA_PASSPHRASE=PASSPHRASE, CERTKIT_PKCS11_PIN=token.pin,
                        **self.pg.env(), **self.hsm.env())
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "certkit")], check=True)
        for n, name in enumerate(CONFIGS):
            args = ["init-ca", "--ca-dir", str(self.ca(name)), "--name", name]
            if "PostgreSQL" in name:
                args += ["--inventory", self.pg.create_database("bench")]
            if "SoftHSM2" in name:
                args += ["--key-uri", token.uri(f"key{n}"), "--pkcs11-module", token.module]
            self.certkit(*args)

    def ca(self, name: str) -> Path:
        return self.work / "cas" / name.replace(" + ", "-").replace(" ", "-")

    def certkit(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "certkit", *args], env=self.env, capture_output=True,
                              text=True, timeout=600, cwd=cwd or self.work)
        if proc.returncode:
            raise SystemExit(f"certkit {' '.join(args)} failed: {proc.stderr}")
        return proc

    # --- measurements --------------------------------------------------------------------
    def one_shot(self, runs: int) -> dict[str, float]:
        times: dict[str, list[float]] = {name: [] for name in CONFIGS}
        out = self.ram / "one-shot"
        out.mkdir()
        for n in range(runs):
            for name in rotated(CONFIGS, n):
                start = time.perf_counter()
                self.certkit("issue-server", f"{self.fresh('h')}.example.com", "--ca-dir", str(self.ca(name)),
                             "--out", str(out / self.fresh("o")))
                times[name].append(time.perf_counter() - start)
        shutil.rmtree(out)
        return {name: statistics.median(values) for name, values in times.items()}

    def batch(self, count: int, runs: int) -> dict[str, tuple[float, float]]:
        manifest = self.work / "manifest.csv"
        manifest.write_text("kind,names\n" + "".join(f"server,b{i}.example.com\n" for i in range(count)))
        walls: dict[str, list[float]] = {name: [] for name in CONFIGS}
        own: dict[str, list[float]] = {name: [] for name in CONFIGS}
        for n in range(runs):
            for name in rotated(CONFIGS, n):
                out = self.ram / self.fresh("batch")
                start = time.perf_counter()
                proc = self.certkit("issue-batch", str(manifest), "--ca-dir", str(self.ca(name)), "--out-dir",
                                    str(out), "--json")
                walls[name].append(count / (time.perf_counter() - start))
                own[name].append(json.loads(proc.stdout)["per_second"])
                shutil.rmtree(out)
        return {name: (statistics.median(walls[name]), statistics.median(own[name])) for name in CONFIGS}

    def hosts(self, name: str, processes: int, count: int) -> float:
        """Aggregate certificates/s of ``processes`` simulated hosts issuing ``count`` each at once."""
        root = self.ram / self.fresh("hosts")
        copies = []
        for p in range(processes):
            copy = root / f"host{p}" / "ca"
            if "PostgreSQL" in name:
                shutil.copytree(self.ca(name), copy)
            else:  # one file, one machine: the processes share the CA directory itself
                copy.parent.mkdir(parents=True)
            copies.append(copy)
        procs = [subprocess.Popen([sys.executable, "-c", WORKER,
                                   str(copy if "PostgreSQL" in name else self.ca(name)), str(copy.parent / "out"),
                                   str(count), f"p{p}"], env=self.env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
                 for p, copy in enumerate(copies)]
        spans = []
        for proc in procs:
            out, err = proc.communicate(timeout=900)
            if proc.returncode:
                raise SystemExit(f"a host failed: {err}")
            spans.append([float(x) for x in out.split()])
        shutil.rmtree(root)
        return processes * count / (max(end for _s, end in spans) - min(start for start, _e in spans))

    def signing(self, count: int) -> tuple[float, float]:
        """(microseconds per signature by cryptography, by the token), over the same TBS bytes."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        from certkit.pkcs11 import open_key
        from certkit.store import CADirectory

        os.environ.update(self.hsm.env())
        store = CADirectory(self.ca(CONFIGS[2]))
        token_key = open_key(store.key_uri, store.config.get("pkcs11_module"), self.env["CERTKIT_PKCS11_PIN"].encode())
        memory_key = ec.generate_private_key(ec.SECP256R1())
        data = os.urandom(600)  # about a leaf's TBS
        start = time.perf_counter()
        for _ in range(count):
            memory_key.sign(data, ec.ECDSA(hashes.SHA256()))
        in_memory = (time.perf_counter() - start) / count
        start = time.perf_counter()
        for _ in range(count):
            token_key.sign(data)
        in_token = (time.perf_counter() - start) / count
        token_key.close()
        return in_memory * 1e6, in_token * 1e6

    def close(self) -> None:
        self.pg.stop()
        self.hsm.close()


def machine(work: Path, ram: Path) -> list[str]:
    import cryptography

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    pg = subprocess.run([str(bindir() / "postgres"), "--version"], capture_output=True, text=True).stdout.strip()
    hsm = subprocess.run(["softhsm2-util", "--version"], capture_output=True, text=True).stdout.strip()
    return [f"- CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; load average at start "
            f"{load:.2f}",
            f"- Python {platform.python_version()}; cryptography {cryptography.__version__}; {pg}, fsync on; "
            f"SoftHSM {hsm} ({module()})",
            f"- bundles written to {ram}; CA directories in {work}"]


def rotated(items, n: int) -> list:
    """``items`` starting at the n-th: each round begins with another configuration."""
    return [*items[n % len(items):], *items[:n % len(items)]]


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and smaller batches")
    parser.add_argument("--output", type=Path, help="also write the Markdown to this file")
    args = parser.parse_args()
    if bindir() is None or module() is None:
        raise SystemExit("needs PostgreSQL (Debian: postgresql) and SoftHSM2 (softhsm2)")
    runs, batch_count, batch_runs, host_count, host_runs = (5, 200, 1, 100, 1) if args.quick else (15, 1000, 3, 250, 3)
    work = Path(tempfile.mkdtemp(prefix="certkit-team-bench-"))
    ram = Path(tempfile.mkdtemp(prefix="certkit-team-hosts-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    bench = Bench(work, ram, args.quick)
    lines = ["### Machine", "", *machine(work, ram), ""]
    try:
        bench.setup()
        one = bench.one_shot(runs)
        lines += [f"### One certificate, one process: `certkit issue-server` (median of {runs}, interleaved)", "",
                  "| configuration | median | ratio |", "|---|---:|---|"]
        lines += [f"| {name} | {one[name] * 1000:.1f} ms | {ratio(one[name], one[BASELINE])}"
                  f"{' (baseline)' if name == BASELINE else ''} |" for name in CONFIGS]
        batch = bench.batch(batch_count, batch_runs)
        lines += ["", f"### Batch: `certkit issue-batch` of {batch_count:,} server certificates, all cores "
                  f"(median of {batch_runs})", "",
                  "| configuration | certificates/s, wall clock | issuing only (its own report) | ratio |",
                  "|---|---:|---:|---|"]
        lines += [f"| {name} | {batch[name][0]:,.0f} | {batch[name][1]:,.0f} | "
                  f"{ratio(batch[name][0], batch[BASELINE][0])} |" for name in CONFIGS]
        host_configs = (CONFIGS[0], CONFIGS[1], CONFIGS[3])
        singles: dict[str, list[float]] = {name: [] for name in host_configs}
        fours: dict[str, list[float]] = {name: [] for name in host_configs}
        for n in range(host_runs):
            for name in rotated(host_configs, n):
                singles[name].append(bench.hosts(name, 1, host_count))
                fours[name].append(bench.hosts(name, 4, host_count))
        rows = [(name, statistics.median(singles[name]), statistics.median(fours[name])) for name in host_configs]
        base_four = rows[0][2]
        lines += ["", f"### Four processes at once, {host_count} certificates each, one `deliver()` per certificate "
                  f"(median of {host_runs}, interleaved): on PostgreSQL four hosts (each its own copy of the CA "
                  "directory), on SQLite one shared CA directory", "",
                  "| configuration | 1 process, certificates/s | 4 processes, certificates/s | 4 against 1 | "
                  "4 processes against SQLite + key file |", "|---|---:|---:|---|---|"]
        lines += [f"| {name} | {single:,.0f} | {four:,.0f} | {four / single:.2f}x | "
                  f"{ratio(four, base_four)} |" for name, single, four in rows]
        in_memory, in_token = bench.signing(300 if args.quick else 2000)
        lines += ["", "### One signature (EC P-256, in process)", "", "| signer | microseconds | ratio |",
                  "|---|---:|---|", f"| cryptography, key in memory | {in_memory:.0f} | 1.00x |",
                  f"| SoftHSM2 through python-pkcs11 | {in_token:.0f} | {in_token / in_memory:.2f}x |"]
    finally:
        bench.close()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(ram, ignore_errors=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
