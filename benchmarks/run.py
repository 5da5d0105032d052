"""Side-by-side benchmark: certkit against openssl, mkcert and cfssl, and against Python's own floor.

Run it with the interpreter of the environment you want to measure (a
virtualenv's own ``bin/python``, not a shell shim such as pyenv's, whose own
start-up would be counted):

    .venv/bin/python benchmarks/run.py            # a couple of minutes
    .venv/bin/python benchmarks/run.py --quick    # well under a minute
    .venv/bin/python benchmarks/run.py --output docs/performance-table.md

Everything is measured in ONE run, commands interleaved round-robin, and
reported as medians with ratios, because on a shared machine absolute numbers
drift from minute to minute while ratios measured side by side hold. Peers are
measured only when installed (Debian: openssl, mkcert, golang-cfssl); peak
memory needs GNU time (/usr/bin/time, Debian package ``time``).

certkit runs from this checkout (PYTHONPATH, byte-compiled first as an
install would be), through the interpreter's ``certkit`` console script when
the environment has one, else ``-m certkit``.
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

# The library limit: what cryptography itself does per certificate, in one process,
# with the extensions certkit puts on a server certificate, PEM-encoded, no files.
LIBRARY_LOOP = SETUP + """
n = int(sys.argv[1])
start = time.perf_counter()
for i in range(n):
""" + one_certificate(4) + """print(n / (time.perf_counter() - start))
"""


def run(cmd: list[str] | str, *, cwd: Path, env: dict, shell: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, shell=shell, capture_output=True, text=True,
                          executable="/bin/bash" if shell else None)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {cmd}\n{proc.stdout}\n{proc.stderr}")
    return proc


def timed(cmd, *, cwd: Path, env: dict, shell: bool = False) -> float:
    start = time.perf_counter()
    run(cmd, cwd=cwd, env=env, shell=shell)
    return time.perf_counter() - start


def peak_kib(cmd: list[str], *, cwd: Path, env: dict) -> int | None:
    """Peak resident memory of ``cmd`` in KiB, from GNU time's %M."""
    if GNU_TIME is None:
        return None
    proc = run([GNU_TIME, "-f", "PEAK %M", *cmd], cwd=cwd, env=env)
    return int(proc.stderr.strip().splitlines()[-1].split()[-1])


class Bench:
    def __init__(self, work: Path, quick: bool) -> None:
        self.work = work
        self.quick = quick
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = str(REPO) + os.pathsep + self.env.get("PYTHONPATH", "")
        for name in [k for k in self.env if k.startswith("CERTKIT_")]:
            del self.env[name]
        script = Path(PY).parent / "certkit"
        self.certkit = [str(script)] if script.is_file() else [PY, "-m", "certkit"]
        self.certkit_how = "console script" if script.is_file() else "python -m certkit"
        self.counter = 0
        self.peers = {name: shutil.which(name) for name in ("openssl", "mkcert", "cfssl", "cfssljson")}

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    # --- setup -------------------------------------------------------------------------
    def setup(self) -> None:
        w = self.work
        # Byte-compile the checkout as pip does on install; otherwise, with
        # PYTHONDONTWRITEBYTECODE set, every run would compile certkit from source.
        compile_env = {k: v for k, v in self.env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        run([PY, "-m", "compileall", "-q", str(REPO / "certkit")], cwd=w, env=compile_env)
        run([*self.certkit, "init-ca", "--ca-dir", "ca", "--no-passphrase", "--name", "bench CA"], cwd=w, env=self.env)
        if self.peers["openssl"]:
            run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout o-ca.key "
                "-out o-ca.pem -subj /CN=bench-openssl -days 3650 2>/dev/null", cwd=w, env=self.env, shell=True)
        if self.peers["mkcert"]:
            (w / "mk").mkdir()
            self.env["CAROOT"] = str(w / "mk")
            run(["mkcert", "-ecdsa", "-cert-file", "mk/first.pem", "-key-file", "mk/first-key.pem", "first.example"],
                cwd=w, env=self.env)
        if self.peers["cfssl"] and self.peers["cfssljson"]:
            (w / "cf-ca.json").write_text(json.dumps({"CN": "bench cfssl", "key": {"algo": "ecdsa", "size": 256}}))
            (w / "cf-config.json").write_text(json.dumps({"signing": {"profiles": {"server": {
                "usages": ["signing", "digital signature", "server auth"], "expiry": "4800h"}}}}))
            run("cfssl gencert -initca cf-ca.json 2>/dev/null | cfssljson -bare cf-ca", cwd=w, env=self.env, shell=True)
            (w / "cf-leaf.json").write_text(json.dumps({"CN": "leaf.example.com", "hosts": ["leaf.example.com"],
                                                        "key": {"algo": "ecdsa", "size": 256}}))

    # --- one certificate, one process ---------------------------------------------------
    def one_shot_commands(self) -> dict[str, tuple]:
        """label -> (function returning a command and whether it is a shell line)."""
        c = self.certkit
        cmds = {
            "python -c pass": lambda: ([PY, "-c", "pass"], False),
            "python -c 'import cryptography.x509, click' (floor)": lambda: (
                [PY, "-c", "import cryptography.x509, click"], False),
            "certkit --help": lambda: ([*c, "--help"], False),
            "certkit issue-server (EC CA, one-shot)": lambda: (
                [*c, "issue-server", "--ca-dir", "ca", "--out", self.fresh("ck/o"), "host.example.com"], False),
        }
        if c[0] != PY:
            cmds["python -m certkit issue-server"] = lambda: (
                [PY, "-m", "certkit", "issue-server", "--ca-dir", "ca", "--out", self.fresh("ckm/o"),
                 "host.example.com"], False)
        if self.peers["openssl"]:
            cmds["openssl req -x509 -CA"] = lambda: (self.openssl_cmd(self.fresh("os/o")), True)
        if self.peers["mkcert"]:
            cmds["mkcert -ecdsa"] = lambda: (self.mkcert_cmd(self.fresh("mk/o")), True)
        if self.peers["cfssl"] and self.peers["cfssljson"]:
            cmds["cfssl gencert | cfssljson"] = lambda: (self.cfssl_cmd(self.fresh("cf/o")), True)
        return cmds

    @staticmethod
    def openssl_cmd(out: str) -> str:
        return (f"mkdir -p {out} && openssl req -x509 -CA o-ca.pem -CAkey o-ca.key -newkey ec "
                f"-pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {out}/key.pem -out {out}/cert.pem "
                "-subj /CN=host.example.com -addext subjectAltName=DNS:host.example.com "
                "-addext extendedKeyUsage=serverAuth -addext basicConstraints=critical,CA:FALSE "
                "-addext keyUsage=critical,digitalSignature -days 200 2>/dev/null")

    @staticmethod
    def mkcert_cmd(out: str) -> str:
        return (f"mkdir -p {out} && mkcert -ecdsa -cert-file {out}/cert.pem -key-file {out}/key.pem "
                "host.example.com 2>/dev/null")

    @staticmethod
    def cfssl_cmd(out: str) -> str:
        return (f"mkdir -p {out} && cfssl gencert -ca cf-ca.pem -ca-key cf-ca-key.pem -config cf-config.json "
                f"-profile server cf-leaf.json 2>/dev/null | cfssljson -bare {out}/leaf")

    def one_shot(self, runs: int) -> tuple[dict[str, float], dict[str, int | None]]:
        for folder in ("ck", "ckm", "os", "mk", "cf"):
            (self.work / folder).mkdir(exist_ok=True)
        cmds = self.one_shot_commands()
        samples: dict[str, list[float]] = {label: [] for label in cmds}
        for make in cmds.values():  # warm the page cache before measuring
            cmd, shell = make()
            timed(cmd, cwd=self.work, env=self.env, shell=shell)
        for _ in range(runs):
            for label, make in cmds.items():
                cmd, shell = make()
                samples[label].append(timed(cmd, cwd=self.work, env=self.env, shell=shell))
        memory = {}
        for label, make in cmds.items():
            cmd, shell = make()
            memory[label] = peak_kib(["bash", "-c", cmd] if shell else cmd, cwd=self.work, env=self.env)
        return {label: statistics.median(s) for label, s in samples.items()}, memory

    # --- many certificates ----------------------------------------------------------------
    def manifest(self, n: int) -> Path:
        path = self.work / f"manifest-{n}.csv"
        with open(path, "w") as f:
            f.write("kind,names\n")
            for i in range(n):
                f.write(f"server,h{i}.example.com\n")
        return path

    def batch(self, n: int, out_root: Path, runs: int, jobs: int | None = None) -> tuple[float, float, int | None]:
        """(wall-clock certs/s including start-up and the manifest check, certkit's own issuing rate,
        peak KiB of the last run)."""
        manifest = self.manifest(n)
        walls, own, peak = [], [], None
        for _ in range(runs):
            out = out_root / self.fresh("batch")
            cmd = [*self.certkit, "issue-batch", str(manifest), "--ca-dir", str(self.work / "ca"),
                   "--out-dir", str(out), "--json"] + (["--jobs", str(jobs)] if jobs else [])
            if GNU_TIME:
                cmd = [GNU_TIME, "-f", "PEAK %M", *cmd]
            start = time.perf_counter()
            proc = run(cmd, cwd=self.work, env=self.env)
            walls.append(n / (time.perf_counter() - start))
            own.append(json.loads(proc.stdout)["per_second"])
            if GNU_TIME:
                peak = int(proc.stderr.strip().splitlines()[-1].split()[-1])
            shutil.rmtree(out)
        return statistics.median(walls), statistics.median(own), peak

    def loop(self, label: str, n: int) -> float:
        """certs/s of a shell loop running one peer process per certificate."""
        (self.work / "loops").mkdir(exist_ok=True)
        make = {
            "openssl": lambda i: self.openssl_cmd(f"loops/o{i}"),
            "mkcert": lambda i: self.mkcert_cmd(f"loops/m{i}"),
            "cfssl": lambda i: self.cfssl_cmd(f"loops/c{i}"),
            "certkit": lambda i: " ".join(self.certkit) + f" issue-server --ca-dir ca --out loops/k{i} "
                                                          f"h{i}.example.com >/dev/null",
        }[label]
        script = "\n".join(make(i) for i in range(n))
        seconds = timed(script, cwd=self.work, env=self.env, shell=True)
        shutil.rmtree(self.work / "loops")
        return n / seconds

    def library_limit(self, n: int) -> float:
        return float(run([PY, "-c", LIBRARY_LOOP, str(n)], cwd=self.work, env=self.env).stdout)


def machine(work: Path) -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    fs = subprocess.run(["df", "-T", str(work)], capture_output=True, text=True).stdout.splitlines()[-1].split()[1]
    import cryptography
    from cryptography.hazmat.backends.openssl.backend import backend

    openssl = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip() \
        if shutil.which("openssl") else "not installed"
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores (nproc); load average at start {os.getloadavg()[0]:.2f}",
        f"- OS: {platform.system()} {platform.release()}; output on {fs} ({work})",
        f"- Python {platform.python_version()} ({PY}); cryptography {cryptography.__version__} "
        f"with {backend.openssl_version_text()}",
        f"- openssl binary: {openssl}",
    ]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def mib(kib: int | None) -> str:
    return f"{kib / 1024:.1f} MiB" if kib else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and smaller batches")
    parser.add_argument("--output", type=Path, help="also write the Markdown to this file")
    parser.add_argument("--dir", type=Path, help="where to write certificates [default: a temporary folder]")
    parser.add_argument("--tmpfs", type=Path, default=Path("/dev/shm"),
                        help="also run the batch on this RAM file system, if it exists [default: /dev/shm]")
    args = parser.parse_args()
    runs, n_batch, batch_runs, n_loop, n_lib = (5, 1000, 1, 20, 2000) if args.quick else (15, 4000, 3, 60, 10000)

    work = Path(tempfile.mkdtemp(prefix="certkit-bench-", dir=args.dir))
    try:
        bench = Bench(work, args.quick)
        bench.setup()
        lines = ["## Machine", "", *machine(work), ""]
        started = time.perf_counter()

        one, memory = bench.one_shot(runs)
        floor, bare = one["python -c 'import cryptography.x509, click' (floor)"], one["python -c pass"]
        shot = one["certkit issue-server (EC CA, one-shot)"]
        lines += [f"## One certificate, one process (median of {runs} runs, interleaved)", "",
                  "| command | median | ratio | peak memory |", "|---|---:|---|---:|"]
        for label, value in one.items():
            if label == "certkit --help":
                ratio = f"{value / bare:.2f}x `python -c pass` (target <= 3x)"
            elif label.startswith("certkit issue-server") or label.startswith("python -m certkit"):
                ratio = f"{value / floor:.2f}x the floor (target <= 1.15x)"
            elif label.startswith(("openssl", "mkcert", "cfssl")):
                ratio = f"certkit one-shot is {shot / value:.1f}x this"
            elif label.startswith("python -c 'import"):
                ratio = f"{value / bare:.2f}x `python -c pass`"
            else:
                ratio = "1.00x"
            lines.append(f"| `{label}` | {ms(value)} | {ratio} | {mib(memory.get(label))} |")
        lines += ["", f"certkit ran as: {bench.certkit_how}.", ""]

        lib = bench.library_limit(n_lib)
        targets = [("output folder", work)]
        if args.tmpfs.is_dir() and os.access(args.tmpfs, os.W_OK):
            targets.append((f"RAM ({args.tmpfs})", args.tmpfs))
        rows = []
        for where, root in targets:
            wall, own, peak = bench.batch(n_batch, root, batch_runs)
            one_job = bench.batch(n_batch, root, 1, jobs=1)
            rows.append((where, wall, own, peak, one_job))
        big_peak = bench.batch(n_batch * 4, targets[-1][1], 1)[2]
        loops = {name: bench.loop(name, n_loop) for name in ("openssl", "mkcert", "cfssl")
                 if bench.peers[name] and (name != "cfssl" or bench.peers["cfssljson"])}
        loops["certkit"] = bench.loop("certkit", n_loop)

        best = max(r[1] for r in rows)
        lines += [f"## Many certificates (EC P-256 server certificates, files written; batch of {n_batch}, "
                  f"median of {batch_runs})", "",
                  "| what | certificates/s | ratio |", "|---|---:|---|"]
        lines.append(f"| cryptography in-process loop (library limit: keygen + sign + PEM, no files) | {lib:,.0f} | "
                     "1.00x |")
        for where, wall, own, _peak, one_job in rows:
            lines.append(f"| `certkit issue-batch`, {where}, all cores: wall clock incl. start-up and check | "
                         f"{wall:,.0f} | {wall / lib:.2f}x library limit |")
            lines.append(f"| `certkit issue-batch`, {where}, all cores: issuing only (its own report) | "
                         f"{own:,.0f} | {own / lib:.2f}x library limit |")
            lines.append(f"| `certkit issue-batch --jobs 1`, {where}: wall clock | {one_job[0]:,.0f} | "
                         f"{one_job[0] / lib:.2f}x library limit |")
        for name, rate in loops.items():
            label = "certkit issue-server" if name == "certkit" else name
            lines.append(f"| shell loop of `{label}`, one process per certificate ({n_loop}) | {rate:,.1f} | "
                         f"certkit batch is {best / rate:,.0f}x this |")
        lines += ["", "| peak memory of `certkit issue-batch` | |", "|---|---:|"]
        for where, _w, _o, peak, _j in rows:
            lines.append(f"| {n_batch} certificates, {where} | {mib(peak)} |")
        lines.append(f"| {n_batch * 4} certificates, {targets[-1][0]} | {mib(big_peak)} |")
        lines += ["", f"Measured in {time.perf_counter() - started:.0f} s; load average at the end "
                      f"{os.getloadavg()[0]:.2f}. Command: `{Path(PY).name} benchmarks/run.py"
                      f"{' --quick' if args.quick else ''}`.", ""]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.write_text(text)


if __name__ == "__main__":
    main()
