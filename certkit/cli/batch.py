"""``issue-batch``: many certificates from one manifest, in one process."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from certkit.cli.common import (
    EXIT_INTERRUPTED,
    ExistingPath,
    OutPath,
    Whole,
    WrittenPath,
    ca_dir_option,
    days_option,
    emit,
    format_option,
    json_option,
    passphrase_file_option,
    progress,
    unlock,
    warn,
)
from certkit.constants import KEY_TYPES


def _cpus() -> int:
    """The CPUs this process may run on (taskset, a container's cpuset), not the machine's count: a worker
    more than those only waits for a turn, holding its memory."""
    import os

    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # no affinity to ask (macOS)
        return os.cpu_count() or 1


def _default_jobs(total: int) -> int:
    from certkit.batch import CHUNK_SIZE

    # A worker per CPU, but no more workers than chunks: a small batch stays in one process.
    return max(1, min(_cpus(), -(-total // CHUNK_SIZE)))


@click.command("issue-batch")
@click.argument("manifest", type=ExistingPath(path_type=Path, dir_okay=False, allow_dash=True))
@click.option("--out-dir", type=WrittenPath(path_type=Path, file_okay=False), default=Path("."),
              show_default=True, help="Folder that 'out' paths (and default folders) go under; no line can "
                                      "write outside it.")
@format_option
@click.option("--out", type=OutPath(path_type=Path, dir_okay=False),
              help="With --format jsonl, k8s or tar: the one file every certificate goes into "
                   "[default: standard output].")
@click.option("--key-type", type=click.Choice(KEY_TYPES), default="ecdsa-p256", show_default=True,
              help="Key type for lines that leave key_type empty.")
@days_option("Lifetime for lines that leave days empty (default: the profile's).")
@click.option("--force", is_flag=True, help="Replace the bundles in output folders that already hold one, or "
                                            "the --format jsonl, k8s or tar output file.")
@click.option("--resume", is_flag=True,
              help="Keep the bundles of this manifest that are already complete (an interrupted batch) and "
                   "issue the rest.")
@click.option("--sync", type=click.Choice(["chunk", "file", "none"]), default="chunk", show_default=True,
              help="Durability: one sync per chunk of 500 certificates, an fsync per file "
                   "(as issue-server does), or leave it to the operating system.")
@click.option("--jobs", type=Whole(1, 256),
              help="Worker processes, each checking, then issuing, every Nth chunk [default: the CPUs this "
                   "process may use].")
@ca_dir_option
@passphrase_file_option
@json_option
def issue_batch(manifest, out_dir, fmt, out, key_type, days, force, resume, sync, jobs, ca_dir, passphrase_file,
                as_json):
    """Issue every certificate listed in MANIFEST (- reads standard input), in one process.

    MANIFEST is CSV with a header row (columns kind, names, and optionally
    out, days, key_type, email, uri, dns), or JSON lines with the same keys.
    kind is server, client or peer; a server's names are separated by spaces,
    a client's names field is its common name. Each certificate gets its own
    folder below --out-dir with the same files as issue-server / issue-client.

    The whole manifest is checked first: if any line is bad, the batch is
    refused with each bad line's number and reason, and nothing is issued.
    Interrupted (Ctrl-C, a full disk), it stops once the chunk being written
    is complete, says how many bundles were written and recorded, and
    --resume finishes the job.

    \b
    Examples:
      certkit issue-batch fleet.csv --out-dir ./certs
      certkit issue-batch devices.jsonl --key-type ecdsa-p384 --days 730
      certkit issue-batch fleet.csv --out-dir ./certs --resume
      generate-manifest | certkit issue-batch - --out-dir ./certs --json
      certkit issue-batch fleet.csv --format tar --out fleet.tar
      certkit issue-batch pods.csv --format k8s | kubectl apply -f -
    """
    import contextlib

    from certkit.batch import CHUNK_SIZE, check_manifest
    from certkit.batch.manifest import STDIN
    from certkit.batch.spool import Spool
    from certkit.store import CADirectory
    from certkit.testhooks import chunk_size

    output = _output(fmt, out, force, resume, sync, as_json)  # --format jsonl, k8s, tar: one file or stream
    name = STDIN if str(manifest) == "-" else None  # what messages call it: not the copy's temporary file
    with _spooled(manifest) as path, contextlib.ExitStack() as holding:
        ca = CADirectory(ca_dir).open()
        if days is not None:  # --days against the CA's life said of the option, once, not of a manifest line
            from certkit.profiles import PROFILES
            from certkit.validity import leaf_validity

            leaf_validity(ca.cert, ca.parents, PROFILES["server"], days, None, [])
        if output is not None:
            holding.enter_context(output.held(ca))  # to released(): another writer of the file waits
            output.check(ca.directories, inventory=ca.inventory)
            output.held_before(ca.inventory)
        foreign = output.foreign_held(ca) if output is not None else []  # before the file goes
        from certkit.cli.output import replaced_file

        replaced = replaced_file(output) if output is not None else []  # (said as a folder's removed files)
        options = {"out_dir": out_dir if output is None else Path("."), "key_type": key_type, "days": days,
                   "force": force, "resume": resume, "output": output}
        interactive = sys.stderr.isatty() and not as_json
        if interactive:
            from certkit.text import shown

            click.echo(f"Checking every line of {shown(name or manifest)} before anything is issued...", err=True)
        chunk = chunk_size(CHUNK_SIZE)
        with Spool() as spool:  # the checked lines, for issuing to read back
            total = _checked(lambda: check_manifest(ca, path, jobs=jobs or _cpus(), chunk_size=chunk,
                                                    spool=spool, name=name, **options))
            unlock(ca, passphrase_file)
            if output is not None:
                from certkit.cli.output import warn_made_private

                warn_made_private(output)  # the manifest checked: keys go there now
            run = dict(sync=sync, jobs=jobs or _default_jobs(total), chunk_size=chunk, spool=spool, **options)
            result = _run(ca, path, total, interactive, run, as_json)
            result.foreign += foreign
            result.removed += replaced
            released = output.released(ca.inventory) if output is not None else []
    if result.by_kind.get("peer"):  # as issue-peer says every time it runs
        from certkit.cli.issue import PEER_WARNING

        peers = result.by_kind["peer"]
        warn(f"{_counted(peers, 'line')} of the manifest (kind: peer) issued peer certificates; "
             + PEER_WARNING)
    if output is not None:
        from certkit.cli.output import batch_summary

        return batch_summary(output, manifest, result, ca, as_json, released, sync)
    _summary(result, manifest, out_dir, sync, ca, as_json)


def _checked(check) -> int:
    """The manifest's check, which writes nothing: interrupted, it says so (no bundle was written)."""
    from certkit.errors import Terminated

    try:
        return check()
    except (KeyboardInterrupt, Terminated) as exc:
        exc.certkit_delivered = 0
        raise


def _run(ca, path: Path, total: int, interactive: bool, run: dict, as_json: bool):
    """Issue the checked manifest (with a progress bar on a terminal); interrupted by a signal, say
    what was written and how to finish (with --json, as the error's JSON object), and exit as the
    signal says."""
    from certkit.batch import BatchStopped
    from certkit.batch import issue_batch as run_batch

    try:
        if interactive:
            with progress(total, "Issuing") as advance:
                return run_batch(ca, path, progress=advance, **run)
        return run_batch(ca, path, **run)
    except BatchStopped as exc:
        if exc.signal is None:
            raise
        code = EXIT_INTERRUPTED if exc.signal == 2 else 128 + exc.signal
        if as_json:
            import json

            click.echo(json.dumps({"error": str(exc), "exit": code, "issued": exc.result.issued,
                                   "kept": exc.result.kept}))
        else:
            from certkit.text import terminal_safe

            click.echo(f"Error: {terminal_safe(str(exc))}", err=True)  # what was written, and how to finish
        sys.exit(code)


def _summary(result, manifest: Path, out_dir: Path, sync: str, ca, as_json: bool) -> None:
    """What a batch into folders did, as JSON or as lines for people."""
    data = summary_data(result, manifest, ca, fmt="folder", out_dir=out_dir, file=None, sync=sync, released=[])
    from certkit.text import shown

    human = [
        summary_head(result, manifest),
        f"  folders    under {shown(out_dir)}, one per line ({_files_written(bool(ca.parents))})",
        f"  inventory  {ca.inventory.location}",
        *summary_notes(result),
    ]
    emit(as_json, data, "\n".join(human))


def summary_data(result, manifest: Path, ca, *, fmt: str, out_dir: Path | None, file: str | None, sync: str,
                 released: list[str]) -> dict:
    """A batch's ``--json`` summary, one shape for every --format: ``out_dir`` for bundle folders, ``file`` for
    one output file (each null for the other), ``kept`` 0 where --resume is refused, ``released`` empty for
    folders (a bundle that --force replaces is recorded as renewed)."""
    return {
        "manifest": str(manifest), "issued": result.issued, "kept": result.kept, "by_kind": result.by_kind,
        "server": result.server, "client": result.client, "peer": result.by_kind.get("peer", 0), "format": fmt,
        "out_dir": None if out_dir is None else str(out_dir), "file": file, "ca_dir": str(ca.store.path),
        "seconds": round(result.seconds, 3), "per_second": round(result.per_second, 1),
        "lifetime_capped": result.capped, "sync": sync, "released": released, "foreign_replaced": result.foreign,
        "removed": result.removed, "notes": result.marked,
        "advice": [{"note": note, "certificates": n} for note, n in result.advised.items()],
    }


def _files_written(chain: bool) -> str:
    """The files of each folder, as the single commands' summaries name them: chain.pem under an intermediate."""
    from certkit.bundle import bundle_names
    from certkit.constants import KEY_FILE

    return ", ".join(f"{name} mode 0600" if name == KEY_FILE else name for name in bundle_names(chain=chain))


def summary_head(result, manifest: Path) -> str:
    """The first line of a batch's summary, whatever its format: what was issued, from where, how fast."""
    from certkit.batch.manifest import STDIN
    from certkit.constants import LEAF_KINDS
    from certkit.text import shown

    kinds = ", ".join(f"{result.by_kind[k]:,} {k}" for k in LEAF_KINDS if result.by_kind.get(k)) or "none"
    source = STDIN if str(manifest) == "-" else shown(manifest)
    return (f"Issued {_counted(result.issued, 'certificate')} ({kinds}) from {source} in {result.seconds:.2f} s "
            f"({result.per_second:,.0f}/s)")  # grouped as the progress bar's rate and list's counts


def summary_notes(result) -> list[str]:
    """The summary's lines about bundles kept (--resume), lifetimes capped and bundles of another CA's
    certificates replaced (--force), if any."""
    from certkit.text import shown

    notes = [f"  note       {shown(note)}" for note in result.marked[:10]]
    if len(result.marked) > 10:
        notes.append(f"  note       and {len(result.marked) - 10} more certificates revoked or settled while they "
                     "were written (--json lists them)")
    if result.kept:
        notes.append(f"  kept       {_counted(result.kept, 'bundle')} already complete (--resume)")
    if result.capped:
        were = "was" if result.capped == 1 else "were"
        notes.append(f"  note       {_counted(result.capped, 'lifetime')} {were} capped at the CA's expiry")
    notes += [f"  note       {shown(note)}" for note in result.foreign[:10]]
    if len(result.foreign) > 10:
        notes.append(f"  note       {len(result.foreign) - 10} more bundles of another CA's certificates were "
                     "replaced (--json lists them)")
    advised = list(result.advised.items())  # what the single commands print beneath a certificate
    notes += [f"  note       {shown(note)}" + (f" ({n} certificates)" if n > 1 else "") for note, n in advised[:10]]
    if len(advised) > 10:
        notes.append(f"  note       and {len(advised) - 10} more notes on the certificates (--json lists them)")
    notes += [f"  note       {note}" for note in result.removed[:10]]  # (shown when made)
    if len(result.removed) > 10:
        notes.append(f"  note       and {len(result.removed) - 10} more files of the replaced bundles were removed "
                     "(--json lists them)")
    return notes


def _counted(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'s' if count != 1 else ''}"


def _output(fmt: str, out: Path | None, force: bool, resume: bool, sync: str, as_json: bool):
    """The one output of --format jsonl, k8s or tar (None for folders), its usage mistakes refused."""
    ctx = click.get_current_context()
    if fmt == "folder":
        if out is not None:
            raise click.UsageError("--out names the one output file of --format jsonl, k8s or tar; folders go "
                                   "under --out-dir.")
        return None
    from certkit.cli.output import check_format_options
    from certkit.formats import Output

    out = check_format_options(fmt, out, as_json)
    if ctx.get_parameter_source("out_dir") is not click.core.ParameterSource.DEFAULT:
        raise click.UsageError(f"--out-dir applies to --format folder; with --format {fmt} every certificate goes "
                               "into --out FILE (or standard output).")
    if resume:
        raise click.UsageError(f"--resume keeps complete bundle folders; --format {fmt} puts its one output in place "
                               "whole, its certificates recorded valid with it: if that file is there, the batch is "
                               "complete ('certkit list' shows them); if not, run the batch again.")
    return Output(fmt, out, force=force, shared=True, sync=sync != "none")


# A manifest on standard input is copied to a temporary file, which must not fill the disk: at most
# this much (a file argument, which is read where it is, has no such limit). 256 MiB is two million
# lines of 128 bytes, a hundred times the largest batch measured (docs/performance.md).
MAX_SPOOLED_MANIFEST_BYTES = 256 << 20


def _spooled(manifest: Path):
    """The manifest as a file that every checking process can read (a large manifest is checked by
    several, each reading it through): standard input is copied to a private temporary file first,
    line by line, each line checked as reading the manifest would check it (not too long, no NUL
    byte, UTF-8), so that endless junk (``< /dev/urandom``) is refused at its first bad line rather
    than copied until the disk is full; the copy as a whole stops at :data:`MAX_SPOOLED_MANIFEST_BYTES`."""
    import contextlib
    import os
    import tempfile

    if str(manifest) != "-":
        return contextlib.nullcontext(manifest)

    @contextlib.contextmanager
    def spool():
        from certkit.batch.manifest import STDIN, byte_lines, check_spooled_line
        from certkit.errors import InputTooLarge
        from certkit.scratch import to_scratch

        fd, name = tempfile.mkstemp(prefix="certkit-manifest-", suffix=".txt")
        try:
            out = os.fdopen(fd, "wb")
            try:
                number = size = 0
                if sys.stdin.isatty():  # else a bare `issue-batch -` waits for input, silently, as if it hung
                    click.echo(f"Reading the manifest from {STDIN}, a terminal: type its lines (a CSV header, "
                               "or JSON lines), then Ctrl-D at the start of a line; Ctrl-C stops. To give a file: "
                               "certkit issue-batch FILE, or - < FILE.", err=True)
                for line in byte_lines(sys.stdin.buffer):  # a CR, LF or CRLF ends a line, as reading the copy has it
                    number, size = number + 1, size + len(line)
                    check_spooled_line(line, number, STDIN)
                    if size > MAX_SPOOLED_MANIFEST_BYTES:
                        raise InputTooLarge(f"The manifest on standard input is larger than "
                                            f"{MAX_SPOOLED_MANIFEST_BYTES >> 20} MiB, all that certkit copies to a "
                                            "temporary file; give a manifest that large as a file.")
                    to_scratch(out.write, line, what=f"a copy of the manifest from {STDIN}")
                to_scratch(out.flush, what=f"a copy of the manifest from {STDIN}")  # what close() would write, checked
            finally:
                with contextlib.suppress(OSError):  # a write that failed is said above, once
                    out.close()
            yield Path(name)
        finally:
            os.unlink(name)

    return spool()

