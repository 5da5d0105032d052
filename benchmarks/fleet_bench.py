"""Fleet benchmark: ``issue-batch`` into a folder per certificate, one JSON-lines file and one tar
archive, each against the limit that bounds it, both limits measured in the same run.

    python benchmarks/fleet_bench.py                  # 10,000 certificates, 3 rounds; 100,000 for memory
    python benchmarks/fleet_bench.py --n 2000 --big 0 --runs 1   # a quick look
    python benchmarks/fleet_bench.py --stages         # where one certificate's time goes, in one process

- **library limit**: what cryptography itself does per certificate, in memory, on
  every core (one process per core): an EC P-256 key, the certificate with
  certkit's server extensions, signed, both PEM-encoded; no files, no inventory.
- **raw file-system limit** for the folder layout: the same folders and files
  the folder format writes (a folder assembled under a temporary name, four
  files created with O_EXCL and their final modes, renamed into place; one
  ``syncfs()`` per chunk of 500, as ``--sync chunk`` does), with no crypto, on
  every core.
- **certkit**: ``certkit issue-batch`` with its default number of worker
  processes (one per core), measured as wall clock from start to exit
  (start-up and the manifest check included), and as its own issuing rate.

Rounds are interleaved (limit, certkit, limit, ...) and medians reported with
ratios, because on a shared machine absolute numbers drift while ratios
measured side by side hold. Every timed run starts with nothing left to write
(``sync()`` after the run before it is removed, outside the timing), and the raw
limit and the folder format swap places from round to round: otherwise the
folder run's syncs also paid for writing out the raw run's 10,000 removed
folders, which always came just before it. jsonl and tar swap places too:
every run adds its certificates to the one inventory, and a larger inventory
records a little slower. Peak memory (GNU time's maximum resident set size,
the largest process) is taken for ``--n`` and ``--big`` certificates.
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

from library_loop import SETUP, one_certificate

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
CORES = os.cpu_count() or 1

# One process's share of the library limit: prints "start end count" (wall-clock seconds).
LIBRARY_WORKER = SETUP + """
n, offset = int(sys.argv[1]), int(sys.argv[2])
start = time.time()
for i in range(offset, offset + n):
""" + one_certificate(4) + """print(start, time.time(), n)
"""

# One process's share of the raw file-system limit for the folder layout: the file steps of
# certkit.atomic.new_folder + write_new_file(sync=False), one syncfs() of the output's file system per
# chunk of 500 bundles, as --sync chunk makes (sync() where the C library has no syncfs).
RAW_FS_WORKER = r"""
import ctypes, os, sys, time
root, n, offset = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    _syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    _root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    flush = lambda: _syncfs(_root_fd)
except AttributeError:
    flush = os.sync
files = {"cert.pem": (0o644, 660), "privkey.pem": (0o600, 241), "fullchain.pem": (0o644, 660),
         "ca.pem": (0o644, 583)}
data = {name: os.urandom(size) for name, (mode, size) in files.items()}
flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
start = time.time()
for i in range(offset, offset + n):
    folder = os.path.join(root, f"h{i}.example.com")
    staging = os.path.join(root, f".h{i}.example.com.{os.getpid()}-{os.urandom(8).hex()}.certkit-tmp")
    os.mkdir(staging, 0o700)
    for name, (mode, _size) in files.items():
        fd = os.open(os.path.join(staging, name), flags, mode)
        os.fchmod(fd, mode)
        os.write(fd, data[name])
        os.close(fd)
    os.chmod(staging, 0o755)
    os.rename(staging, folder)
    if (i - offset + 1) % 500 == 0:
        flush()
flush()
print(start, time.time(), n)
"""


def run(cmd, *, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {cmd}\n{proc.stdout}\n{proc.stderr}")
    return proc


def parallel(script: str, args_for, procs: int, *, cwd: Path, env: dict) -> float:
    """Certificates (or bundles) per second of ``procs`` processes running ``script`` at once,
    from the first start to the last end (interpreter start-up excluded, as certkit's own rate)."""
    children = [subprocess.Popen([PY, "-c", script, *map(str, args_for(k))], cwd=cwd, env=env,
                                 stdout=subprocess.PIPE, text=True) for k in range(procs)]
    reports = []
    for child in children:
        out, _ = child.communicate()
        if child.returncode != 0:
            raise SystemExit(f"worker failed ({child.returncode})")
        reports.append([float(x) for x in out.split()])
    start, end, total = min(r[0] for r in reports), max(r[1] for r in reports), sum(r[2] for r in reports)
    return total / (end - start)


def settle() -> None:
    """Write out what is dirty (the files of the run before, and their removal) before the next
    timed run starts and after a run is removed, outside any timing: each run's syncs then wait for
    its own files only, whichever run came before it."""
    os.sync()


class Bench:
    def __init__(self, work: Path, n: int) -> None:
        self.work, self.n = work, n
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CERTKIT_")}
        self.env["PYTHONPATH"] = str(REPO) + os.pathsep + self.env.get("PYTHONPATH", "")
        self.certkit = [PY, "-m", "certkit"]
        self.counter = 0

    def setup(self) -> None:
        compile_env = {k: v for k, v in self.env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        run([PY, "-m", "compileall", "-q", str(REPO / "certkit")], cwd=self.work, env=compile_env)
        run([*self.certkit, "init-ca", "--ca-dir", "ca", "--no-passphrase", "--name", "bench CA"], cwd=self.work,
            env=self.env)

    def manifest(self, n: int) -> Path:
        path = self.work / f"manifest-{n}.csv"
        if not path.exists():
            with open(path, "w") as f:
                f.write("kind,names\n")
                for i in range(n):
                    f.write(f"server,h{i}.example.com\n")
        return path

    def fresh(self, name: str) -> Path:
        self.counter += 1
        return self.work / f"{name}{self.counter}"

    def share(self, n: int, procs: int, k: int) -> tuple[int, int]:
        size = -(-n // procs)
        return min(size, n - k * size), k * size

    def library(self) -> float:
        return parallel(LIBRARY_WORKER, lambda k: self.share(self.n, CORES, k), CORES, cwd=self.work, env=self.env)

    def raw_fs(self) -> float:
        root = self.fresh("raw")
        root.mkdir()
        settle()
        rate = parallel(RAW_FS_WORKER, lambda k: (root, *self.share(self.n, CORES, k)), CORES, cwd=self.work,
                        env=self.env)
        shutil.rmtree(root)
        settle()
        return rate

    def batch(self, fmt: str, n: int | None = None) -> tuple[float, float, int | None]:
        """(wall-clock certificates/s, certkit's own issuing rate, peak KiB)."""
        n = n or self.n
        out = self.fresh(fmt)
        cmd = [*self.certkit, "issue-batch", str(self.manifest(n)), "--ca-dir", "ca", "--json", "--format", fmt]
        cmd += ["--out-dir", str(out)] if fmt == "folder" else ["--out", f"{out}.{fmt}"]
        if GNU_TIME:
            cmd = [GNU_TIME, "-f", "PEAK %M", *cmd]
        settle()
        start = time.perf_counter()
        proc = run(cmd, cwd=self.work, env=self.env)
        wall = n / (time.perf_counter() - start)
        peak = int(proc.stderr.strip().splitlines()[-1].split()[-1]) if GNU_TIME else None
        own = json.loads(proc.stdout)["per_second"]
        shutil.rmtree(out, ignore_errors=True)
        Path(f"{out}.{fmt}").unlink(missing_ok=True)
        settle()
        return wall, own, peak


# Where one certificate's time goes in issue-batch --format jsonl|tar, step by step in one process,
# next to the library loop's; rounds of 250 certificates, every step in each round, so that a burst of
# load on the shared machine hits all steps alike. Prints "label|microseconds" lines: medians.
STAGES = SETUP + """
import itertools, statistics
from dataclasses import replace
from certkit.batch.spool import Spool
from certkit.batch.manifest import read_manifest
from certkit.formats import Encoder
from certkit.issuing import Target, record
from certkit.keys import generate_key
from certkit.store import CADirectory
manifest, ca_dir, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
ca = CADirectory(ca_dir).open()
ca.unlock(None)
N = 250
class InFile(Target):
    deferred = True  # as a batch file's certificates are: recorded without waiting for the disk
def library():
    for i in range(N):
""" + one_certificate(8) + r"""times = {}
def step(label, work):
    start = time.perf_counter()
    out = work()
    times.setdefault(label, []).append((time.perf_counter() - start) / N * 1e6)
    return out
source = read_manifest(manifest)
for _ in range(rounds):
    lines = step("check: read and parse a manifest line", lambda: list(itertools.islice(source, N)))
    requests = step("check: build the request", lambda: [line.request() for line in lines])
    step("check: the request against the CA", lambda: [ca.check_request(r) for r in requests])
    spooled = [line.with_plan(r) for line, r in zip(lines, requests)]
    def through_spool():
        with Spool() as spool:
            handle = spool.new_file()
            Spool.write(handle, 0, spooled)
            handle.flush()
            return [line.request() for chunk in spool.chunks() for line in chunk]
    step("spool the checked line, read it back to issue", through_spool)
    keys = step("generate the key (EC P-256)", lambda: [generate_key("ecdsa-p256") for _ in requests])
    requests = [replace(r, key=k) for r, k in zip(requests, keys)]
    issued = step("sign (certkit's profile, cryptography signs)", lambda: [ca.sign(r) for r in requests])
    step("record it pending in the inventory", lambda: record(ca, [(r, InFile()) for r in requests], issued))
    step("mark it valid", lambda: ca.inventory.mark_issued([x.serial_hex for x in issued]))
    for fmt in ("jsonl", "tar"):
        encoder = Encoder(fmt)
        step(f"encode a {fmt} record", lambda: [encoder.encode(x, "name") for x in issued])
    step("library loop: key, sign, both PEMs", library)
for label, values in times.items():
    print(f"{label}|{statistics.median(values)}")
"""


def stages(bench: Bench, rounds: int) -> list[str]:
    proc = run([PY, "-c", STAGES, str(bench.manifest(rounds * 250)), "ca", str(rounds)], cwd=bench.work,
               env=bench.env)
    steps = [(label, float(us)) for label, us in (line.split("|") for line in proc.stdout.splitlines())]
    library = steps[-1][1]
    jsonl = sum(us for label, us in steps[:-1] if "tar" not in label)
    tar = sum(us for label, us in steps[:-1] if "jsonl" not in label)
    lines = [f"### Where one certificate's time goes (one process; median of {rounds} rounds of 250)", "",
             "| step | µs | of the library loop |", "|---|---:|---:|"]
    lines += [f"| {label} | {us:,.0f} | {us / library:.2f}x |" for label, us in steps]
    lines += [f"| certkit, every step for jsonl (tar) | {jsonl:,.0f} ({tar:,.0f}) | {jsonl / library:.2f}x "
              f"({tar / library:.2f}x) |", "",
              "The manifest is read and parsed once, by the check (one process per core, before anything is "
              "issued); issuing reads the checked lines back from the check's spool.", ""]
    return lines


def machine(work: Path) -> list[str]:
    import cryptography
    from cryptography.hazmat.backends.openssl.backend import backend

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    fs = subprocess.run(["df", "-T", str(work)], capture_output=True, text=True).stdout.splitlines()[-1].split()[1]
    return [f"- CPU: {cpu}, {CORES} cores; load average at start {os.getloadavg()[0]:.2f}",
            f"- OS: {platform.system()} {platform.release()}; output on {fs} ({work})",
            f"- Python {platform.python_version()}; cryptography {cryptography.__version__} with "
            f"{backend.openssl_version_text()}"]


def mib(kib: int | None) -> str:
    return f"{kib / 1024:.1f} MiB" if kib else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="certificates per run [default: 10,000]")
    parser.add_argument("--big", type=int, default=100_000,
                        help="certificates of the memory runs of jsonl and tar (0: skip) [default: 100,000]")
    parser.add_argument("--runs", type=int, default=3, help="rounds, interleaved [default: 3]")
    parser.add_argument("--dir", type=Path, help="where to write [default: a temporary folder]")
    parser.add_argument("--output", type=Path, help="also write the Markdown table to this file")
    parser.add_argument("--stages", action="store_true",
                        help="only the per-certificate breakdown, in one process (4 x --runs rounds; a minute)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="certkit-fleet-bench-", dir=args.dir))
    started = time.perf_counter()
    try:
        bench = Bench(work, args.n)
        bench.setup()
        lines = ["### Machine", "", *machine(work), ""]
        if args.stages:
            lines += stages(bench, args.runs * 4)
            lines.append(f"Load average at the end {os.getloadavg()[0]:.2f}.")
            return _print(lines, args.output)
        samples: dict[str, list] = {k: [] for k in ("library", "raw", "folder", "jsonl", "tar")}
        for round_ in range(args.runs):
            samples["library"].append(bench.library())
            # the raw limit and the folder format in turn first and second, so neither always follows the other
            pair = [("raw", bench.raw_fs), ("folder", lambda: bench.batch("folder"))]
            for name, run_once in pair if round_ % 2 == 0 else pair[::-1]:
                samples[name].append(run_once())
            # jsonl and tar in turn first: each run adds its certificates to the one inventory, and a
            # larger inventory records a little slower (random serials: each new row lands on its own
            # page of the serial's index), so the format always run last would always pay more
            for fmt in ("jsonl", "tar") if round_ % 2 == 0 else ("tar", "jsonl"):
                samples[fmt].append(bench.batch(fmt))
        lib = statistics.median(samples["library"])
        raw = statistics.median(samples["raw"])
        result = {fmt: (statistics.median(s[0] for s in samples[fmt]), statistics.median(s[1] for s in samples[fmt]),
                        max((s[2] or 0) for s in samples[fmt])) for fmt in ("folder", "jsonl", "tar")}
        big = {fmt: bench.batch(fmt, args.big)[2] for fmt in ("jsonl", "tar")} if args.big else {}
        lines += [f"### {args.n:,} EC P-256 server certificates, median of {args.runs} interleaved rounds", "",
                  "| what | certificates/s | ratio |", "|---|---:|---|",
                  f"| library limit: cryptography in memory, {CORES} processes (keygen + sign + PEM) | {lib:,.0f} | "
                  "1.00x |",
                  f"| raw file-system limit, folder layout: the same folders and files and syncs, no crypto, "
                  f"{CORES} processes | {raw:,.0f} | {raw / lib:.2f}x library limit |"]
        for fmt, limit, label, goal in (("folder", raw, "raw file-system limit", "goal >= 0.8x"),
                                        ("jsonl", lib, "library limit", "goal >= 0.8x and >= 2,500/s"),
                                        ("tar", lib, "library limit", "goal >= 0.8x and >= 2,500/s")):
            wall, own, _peak = result[fmt]
            where = "--out-dir DIR" if fmt == "folder" else f"--out FILE.{fmt}"
            lines.append(f"| `certkit issue-batch --format {fmt} {where}`: wall clock (start-up and check included) "
                         f"| {wall:,.0f} | {wall / limit:.2f}x {label} ({goal}) |")
            lines.append(f"| `certkit issue-batch --format {fmt}`: issuing only (its own report) | {own:,.0f} | "
                         f"{own / limit:.2f}x {label} |")
        lines += ["", "| peak memory (largest process) | " + " | ".join(
            [f"{args.n:,}"] + ([f"{args.big:,}"] if args.big else [])) + " |",
                  "|---|" + "---:|" * (2 if args.big else 1)]
        for fmt in ("folder", "jsonl", "tar"):
            cells = [mib(result[fmt][2])] + ([mib(big[fmt]) if fmt in big else "not run"] if args.big else [])
            lines.append(f"| `--format {fmt}` | " + " | ".join(cells) + " |")
        lines += ["", f"Measured in {time.perf_counter() - started:.0f} s; load average at the end "
                      f"{os.getloadavg()[0]:.2f}. Command: `python benchmarks/fleet_bench.py"
                      + (f" --n {args.n}" if args.n != 10_000 else "") + (f" --big {args.big}" if args.big != 100_000
                                                                            else "")
                      + (f" --runs {args.runs}" if args.runs != 3 else "") + "`.", ""]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _print(lines, args.output)


def _print(lines: list[str], output: Path | None) -> None:
    text = "\n".join(lines)
    print(text)
    if output:
        output.write_text(text)


if __name__ == "__main__":
    main()
