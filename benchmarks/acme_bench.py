"""ACME load test: ORDERS orders from PROCESSES concurrent lego processes against `certkit acme serve`.

    python benchmarks/acme_bench.py [--orders 200] [--processes 8] [--challenge http-01|tls-alpn-01]

Creates a two-tier CA (root + issuing intermediate) in a temporary folder, starts `certkit acme
serve` on loopback, and runs PROCESSES workers at once; each runs `lego run` (one order for one
name, its own account after the first run) ORDERS/PROCESSES times in a row. Each worker has its own
loopback address (127.0.0.2, .3, ...) mapped with --resolve, so all lego challenge servers share
the one --http01-port (or --tls-alpn01-port). Then it checks what the issue asks of a load test:
no duplicate serial, no lost order (every run got a certificate, every order row is valid with
that certificate), inventory complete (every certificate a client received is in the inventory,
and nothing else was issued but the server's own TLS certificate). Prints orders/s (wall clock,
lego start-up included) and the server's CPU time per order, as JSON and as a Markdown row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from certkit.vocabulary import serial_hex

REPO = Path(__file__).resolve().parent.parent
PASSPHRASE = "benchmark passphrase"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def certkit(*args: str, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "certkit", *args], env=env, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode:
        raise SystemExit(f"certkit {' '.join(args)} failed: {proc.stderr}")
    return proc


def serial_of(pem_bundle: Path) -> str:
    from cryptography import x509

    return serial_hex(x509.load_pem_x509_certificates(pem_bundle.read_bytes())[0].serial_number)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--challenge", choices=["http-01", "tls-alpn-01"], default="http-01")
    parser.add_argument("--profile", metavar="FILE", help="Record the server with py-spy into FILE (speedscope "
                        "JSON; py-spy must be installed).")
    args = parser.parse_args()
    per_process = -(-args.orders // args.processes)
    total = per_process * args.processes

    tmp = Path(tempfile.mkdtemp(prefix="certkit-acme-bench-"))
    try:
        run(args, tmp, per_process, total)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args, tmp: Path, per_process: int, total: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CERTKIT_")}
    env.update(PYTHONPATH=str(REPO), CERTKIT_CA_PASSPHRASE=PASSPHRASE, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    certkit("init-ca", "--ca-dir", str(tmp / "root"), "--name", "Bench Root", env=env)
    certkit("init-ca", "--ca-dir", str(tmp / "issuing"), "--parent-ca-dir", str(tmp / "root"), "--name",
            "Bench Issuing", env=env)
    env["CERTKIT_CA_DIR"] = str(tmp / "issuing")
    root = tmp / "root" / "ca.pem"
    port = free_port()
    names = {f"bench{i}.acme.test": f"127.0.0.{i + 2}" for i in range(args.processes)}
    serve = [sys.executable, "-m", "certkit", "acme", "serve", "--port", "0", "--json", "--allow-domain",
             "acme.test", "--http01-port", str(port), "--tls-alpn01-port", str(port)]
    for name, address in names.items():
        serve += ["--resolve", f"{name}={address}"]
    if args.profile:
        serve = ["py-spy", "record", "--format", "speedscope", "--threads", "--output", args.profile,
                 "--subprocesses", "--", *serve]
    server = subprocess.Popen(serve, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    text = ""
    while True:  # the JSON object printed at start ends with a "}" line of its own
        line = server.stdout.readline()
        if not line:
            raise SystemExit(f"certkit acme serve did not start: {server.stderr.read()}")
        if text or line.startswith("{"):  # py-spy, when profiling, prints a line of its own first
            text += line
        if line.rstrip("\n") == "}":
            break
    directory = json.loads(text)["directory"]
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(server.stderr), daemon=True).start()
    try:
        measure(args, tmp, server, directory, names, port, root, per_process, total, log)
    finally:
        if server.poll() is None:  # on failure too (with --profile, py-spy passes the signal on)
            server.send_signal(signal.SIGTERM)
            server.wait(30)


def measure(args, tmp: Path, server, directory: str, names: dict, port: int, root: Path, per_process: int,
            total: int, log: list[str]) -> None:

    lego_env = dict(os.environ, LEGO_CA_CERTIFICATES=str(root))
    solver = ["--http", "--http.port"] if args.challenge == "http-01" else ["--tls", "--tls.port"]
    failures: list[str] = []

    def worker(name: str) -> list[str]:
        serials = []
        for _ in range(per_process):
            proc = subprocess.run(["lego", "--server", directory, "--path", str(tmp / name), "--accept-tos",
                                   "--email", f"ops@{name}", "-d", name, *solver, f"{names[name]}:{port}", "run"],
                                  env=lego_env, capture_output=True, text=True, timeout=300)
            if proc.returncode:
                failures.append(proc.stderr[-500:])
                continue
            serials.append(serial_of(tmp / name / "certificates" / f"{name}.crt"))
        return serials

    server_pid = server.pid
    if args.profile:  # the server is py-spy's child
        server_pid = int(Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()[0])
    cpu_before = cpu_seconds(server_pid)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with ThreadPoolExecutor(args.processes) as pool:
        serials = [s for batch in pool.map(worker, names) for s in batch]
    elapsed = time.perf_counter() - started
    server_cpu = cpu_seconds(server_pid) - cpu_before
    os.kill(server_pid, signal.SIGTERM)
    server.wait(30)

    with sqlite3.connect(tmp / "issuing" / "inventory.sqlite3") as db:
        inventory = {row[0] for row in db.execute("SELECT serial FROM certificates")}
        orders = dict(db.execute("SELECT status, count(*) FROM acme_orders GROUP BY status").fetchall())
        order_serials = [row[0] for row in db.execute(
            "SELECT certificate_serial FROM acme_orders WHERE status = 'valid'")]
    checks = {
        "every run got a certificate": not failures and len(serials) == total,
        "no duplicate serial": len(set(serials)) == len(serials),
        "no lost order (all valid, one certificate each)": orders == {"valid": total}
        and sorted(order_serials) == sorted(serials),
        "inventory complete (clients' certificates + the server's own)": set(serials) <= inventory
        and len(inventory) == len(serials) + 1,
    }
    import re
    import statistics

    validation_ms = [int(m) for m in re.findall(r": valid \((\d+) ms\)", "".join(log))]
    result = {
        "orders": total, "processes": args.processes, "challenge": args.challenge,
        "seconds": round(elapsed, 2), "orders_per_second": round(total / elapsed, 2),
        "server_cpu_ms_per_order": round(server_cpu * 1000 / total, 1),
        "validation_ms_median_max": [statistics.median(validation_ms), max(validation_ms)] if validation_ms else None,
        "checks": checks, "failures": failures[:3], "order_statuses": orders,
        "machine": f"{os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}",
        "load_average_at_start": round(load_before, 2),
    }
    print(json.dumps(result, indent=2))
    print(f"| `certkit acme serve`, {total} orders ({args.challenge}) from {args.processes} concurrent lego "
          f"processes | {result['orders_per_second']} orders/s | {result['seconds']} s wall clock, server CPU "
          f"{result['server_cpu_ms_per_order']} ms/order |")
    if not all(checks.values()):
        raise SystemExit("load test checks failed")


if __name__ == "__main__":
    main()
