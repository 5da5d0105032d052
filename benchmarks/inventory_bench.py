"""Inventory at fleet size: does `list --expiring` stay fast, and does issuing one more certificate
cost the same into 100,000 certificates as into none?

    python benchmarks/inventory_bench.py [--count 100000] [--repeats 7]

Fills one CA's inventory with COUNT real certificates (signed in-process by the CA, one shared leaf
key, inserted in transactions of 10,000 rows), keeps a second CA empty, then measures on both:
`Inventory.query(expiring_within=30 days)`, the CLI `certkit list --expiring 30d --json`, issuing
one server certificate through the library (`CA.issue_server`, inventory insert included, no files)
and through the CLI (`certkit issue-server`, a new process: start-up, passphrase, files). Prints the
medians as a Markdown table. Times include fsync, so the disk matters; compare columns, not machines.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from certkit.ca import CA, _random_serial  # noqa: E402
from certkit.inventory.rows import facts_of  # noqa: E402
from certkit.keys import generate_key  # noqa: E402
from certkit.names import Identity  # noqa: E402
from certkit.profiles import PROFILES, build_certificate, leaf_subject  # noqa: E402
from certkit.store import CADirectory  # noqa: E402
from certkit.vocabulary import iso  # noqa: E402

PASSPHRASE = b"benchmark passphrase"
WINDOW = dt.timedelta(days=30)
BATCH = 10_000


def fill(ca: CA, count: int) -> None:
    """COUNT certificates signed by ``ca``, expiries spread over the past 100 and next 800 days."""
    rng = random.Random(4)
    leaf_key = generate_key().public_key()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    rows = []
    started = time.perf_counter()
    for i in range(count):
        kind = "server" if i % 3 else "client"
        name = f"host-{i}.fleet.example.com" if kind == "server" else f"device-{i}"
        idents = [Identity("dns", name)] if kind == "server" else []
        not_after = now + dt.timedelta(days=rng.uniform(-100, 800))
        cert = build_certificate(PROFILES[kind], subject=leaf_subject(name), public_key=leaf_key,
                                 issuer_name=ca.cert.subject, issuer_key=ca.signing_key(), issuer_ski=ca.ski,
                                 serial=_random_serial(), not_before=not_after - dt.timedelta(days=200),
                                 not_after=not_after, identities=idents)
        revoked = rng.random() < 0.01
        f = facts_of(cert)
        rows.append((f.serial, kind, f.subject, json.dumps(f.names), f.not_before, f.not_after, f.fingerprint, f.der,
                     "revoked" if revoked else "valid", iso(now) if revoked else None,
                     "keyCompromise" if revoked else None, iso(now)))
        if len(rows) == BATCH or i == count - 1:
            with ca.inventory.transaction(write=True) as tx:
                tx.executemany(
                    "INSERT INTO certificates (serial, kind, subject, names, not_before, not_after,"
                    " fingerprint_sha256, der, status, revoked_at, revocation_reason, issued_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            rows.clear()
            print(f"  {i + 1:,} certificates ({time.perf_counter() - started:.0f} s)", file=sys.stderr)


def median_ms_pair(fn, repeats: int) -> dict[str, float]:
    """Median milliseconds of ``fn("empty")`` and ``fn("full")``, run alternately."""
    times: dict[str, list[float]] = {"empty": [], "full": []}
    for i in range(repeats):
        for label in (("empty", "full") if i % 2 == 0 else ("full", "empty")):
            start = time.perf_counter()
            fn(label)
            times[label].append((time.perf_counter() - start) * 1000)
    return {label: statistics.median(ts) for label, ts in times.items()}


def cli(env: dict, *args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "certkit", *args], env=env, cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="certkit-bench-") as tmp:
        tmp = Path(tmp)
        cas = {}
        for label in ("empty", "full"):
            CADirectory(tmp / label).save_new(CA.create(f"bench {label}"), PASSPHRASE)
            cas[label] = CADirectory(tmp / label).load(PASSPHRASE)
        print(f"Filling an inventory with {args.count:,} certificates...", file=sys.stderr)
        fill_start = time.perf_counter()
        fill(cas["full"], args.count)
        fill_s = time.perf_counter() - fill_start
        # Flush the fill's 100 MB to disk first, so its write-back does not slow the fsyncs measured below.
        os.sync()
        counter = iter(range(10**9))
        envs, outs = {}, {}
        for label in cas:
            env = {k: v for k, v in os.environ.items() if not k.startswith("CERTKIT_")}
            envs[label] = env | {"PYTHONPATH": str(REPO), "CERTKIT_CA_DIR": str(tmp / label),
                                 "CERTKIT_CA_PASSPHRASE": PASSPHRASE.decode()}
            outs[label] = tmp / f"out-{label}"
            outs[label].mkdir()
        operations = {
            "list --expiring 30d (library query)": (
                lambda label: cas[label].inventory.query(expiring_within=WINDOW), args.repeats),
            "certkit list --expiring 30d --json (CLI)": (
                lambda label: cli(envs[label], "list", "--expiring", "30d", "--json", cwd=outs[label]), args.repeats),
            "issue one server certificate (library)": (
                lambda label: cas[label].issue_server([f"new-{next(counter)}.example.com"]), args.repeats * 3),
            "certkit issue-server (CLI)": (
                lambda label: cli(envs[label], "issue-server", f"cli-{next(counter)}.example.com", cwd=outs[label]),
                args.repeats),
        }
        results: dict[str, dict] = {label: {"rows": ca.inventory.count(),
                                            "expiring": len(ca.inventory.query(expiring_within=WINDOW))}
                                    for label, ca in cas.items()}
        for name, (op, repeats) in operations.items():
            # Interleaved, alternating which goes first, so load from other processes hits both alike.
            for label, ms in median_ms_pair(op, repeats).items():
                results[label][name] = ms
    empty, full = results["empty"], results["full"]
    print(f"\nInventory of {args.count:,} certificates filled in {fill_s:.0f} s; "
          f"{full['expiring']:,} of them expire within 30 days (so list returns {full['expiring']:,} rows "
          f"there, none in the empty one). Medians in milliseconds.\n")
    print(f"| operation | empty inventory | {full['rows']:,} certificates |")
    print("|---|---:|---:|")
    for key in list(empty)[2:]:
        print(f"| {key} | {empty[key]:.1f} | {full[key]:.1f} |")


if __name__ == "__main__":
    main()
