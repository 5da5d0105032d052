"""``issue-batch``: many certificates from one manifest, in one process."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from certkit.cli.common import ca_dir_option, emit, json_option, load_ca, passphrase_file_option
from certkit.constants import KEY_TYPES


def _default_jobs(total: int) -> int:
    import os

    from certkit.batch import CHUNK_SIZE

    # A worker per CPU, but no more workers than chunks: a small batch stays in one process.
    return max(1, min(os.cpu_count() or 1, -(-total // CHUNK_SIZE)))


@click.command("issue-batch")
@click.argument("manifest", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--out-dir", type=click.Path(path_type=Path, file_okay=False), default=Path("."),
              show_default=True, help="Folder that relative 'out' paths (and default folders) go under.")
@click.option("--key-type", type=click.Choice(KEY_TYPES), default="ecdsa-p256", show_default=True,
              help="Key type for lines that leave key_type empty.")
@click.option("--days", type=int, help="Lifetime for lines that leave days empty (default: the profile's).")
@click.option("--force", is_flag=True, help="Replace files in output folders that already hold a bundle.")
@click.option("--sync", type=click.Choice(["chunk", "file", "none"]), default="chunk", show_default=True,
              help="Durability: one sync per chunk of 500 certificates, an fsync per file "
                   "(as issue-server does), or leave it to the operating system.")
@click.option("--jobs", type=click.IntRange(min=1),
              help="Worker processes, each issuing every Nth chunk [default: CPU count].")
@ca_dir_option
@passphrase_file_option
@json_option
def issue_batch(manifest, out_dir, key_type, days, force, sync, jobs, ca_dir, passphrase_file, as_json):
    """Issue every certificate listed in MANIFEST, in one process.

    MANIFEST is CSV with a header row (columns kind, names, and optionally
    out, days, key_type, email, uri, dns), or JSON lines with the same keys.
    kind is server or client; a server's names are separated by spaces, a
    client's names field is its common name. Each certificate gets its own
    folder with the same files as issue-server / issue-client.

    The whole manifest is checked first: if any line is bad, the batch is
    refused with each bad line's number and reason, and nothing is issued.

    \b
    Examples:
      certkit issue-batch fleet.csv --out-dir ./certs
      certkit issue-batch devices.jsonl --key-type ecdsa-p384 --days 730
      certkit issue-batch fleet.csv --sync file --json
    """
    from certkit.batch import check_manifest
    from certkit.batch import issue_batch as run_batch

    ca = load_ca(ca_dir, passphrase_file)
    options = {"out_dir": out_dir, "key_type": key_type, "days": days, "force": force}
    total = check_manifest(ca, manifest, **options)
    if sys.stderr.isatty() and not as_json:
        with click.progressbar(length=total, label="Issuing", file=sys.stderr) as bar:
            result = run_batch(ca, manifest, sync=sync, jobs=jobs or _default_jobs(total), checked=True,
                               progress=bar.update, **options)
    else:
        result = run_batch(ca, manifest, sync=sync, jobs=jobs or _default_jobs(total), checked=True, **options)
    data = {
        "manifest": str(manifest), "issued": result.issued, "server": result.server,
        "client": result.client, "out_dir": str(out_dir), "ca_dir": str(ca.inventory.path.parent),
        "seconds": round(result.seconds, 3), "per_second": round(result.per_second, 1),
        "lifetime_capped": result.capped, "sync": sync,
    }
    human = [
        f"Issued {result.issued} certificates ({result.server} server, {result.client} client) "
        f"from {manifest} in {result.seconds:.2f} s ({result.per_second:.0f}/s)",
        f"  folders    under {out_dir}, one per line (cert.pem, privkey.pem mode 0600, fullchain.pem, ca.pem)",
        f"  inventory  {ca.inventory.path}",
    ]
    if result.capped:
        human.append(f"  note       {result.capped} lifetimes were capped at the CA's expiry")
    emit(as_json, data, "\n".join(human))
