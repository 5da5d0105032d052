"""Issuing reads back the lines the check accepted (certkit.batch.spool.Spool), not the manifest:
what is issued is exactly what was checked, once each, in any mix of checking and issuing
processes, even if the manifest is changed between the check and the issuing."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509

from certkit.batch import check_manifest, checking, issue_batch
from certkit.batch.spool import Spool
from certkit.formats import Output
from certkit.store import CADirectory
from certkit.vocabulary import san_entries

from conftest import PASSPHRASE, openssl

LINES = 1500  # over 32 KiB, so the check runs in several processes when asked to
CHUNK = 40


def write_manifest(path: Path, prefix: str) -> list[str]:
    names = [f"{prefix}{i:05d}-with-a-longer-name.example.com" for i in range(LINES)]
    path.write_text("kind,names\n" + "".join(f"server,{n}\n" for n in names))
    assert path.stat().st_size > checking.PARALLEL_FROM_BYTES
    return names


@pytest.mark.parametrize(("check_jobs", "issue_jobs"), [(1, 1), (2, 2), (3, 2), (1, 2), (2, 1)])
def test_issued_once_each_as_checked_whatever_the_manifest_says_later(ca_dir: Path, tmp_path: Path,
                                                                    check_jobs: int, issue_jobs: int) -> None:
    manifest = tmp_path / "fleet.csv"
    names = write_manifest(manifest, "checked")
    ca = CADirectory(ca_dir).open()
    out = tmp_path / "fleet.jsonl"
    with Spool() as spool:
        output = Output("jsonl", out, shared=True)
        total = check_manifest(ca, manifest, jobs=check_jobs, chunk_size=CHUNK, output=output, spool=spool)
        assert total == LINES and len(spool.files) == check_jobs
        write_manifest(manifest, "edited")  # after the check: must change nothing
        manifest.write_text("kind,names\nserver,https://not-even-a-host/\n" + manifest.read_text()[11:])
        ca.unlock(PASSPHRASE.encode())
        result = issue_batch(ca, manifest, jobs=issue_jobs, chunk_size=CHUNK, output=output,
                             spool=spool)
    assert result.issued == LINES
    records = [json.loads(line) for line in out.read_text().splitlines()]
    issued = [x509.load_pem_x509_certificate(r["cert"].encode()) for r in records]
    assert sorted(r["name"] for r in records) == sorted(names)  # each checked line once, no edited one
    assert sorted(san_entries(c)[0] for c in issued) == sorted(f"DNS:{n}" for n in names)
    assert len({c.serial_number for c in issued}) == LINES
    rows = {row["serial"]: row for row in ca.inventory.rows()}
    assert {r["serial"] for r in records} <= set(rows) and all(rows[r["serial"]]["status"] == "valid" for r in records)
    # a certificate from the file is a real server certificate of this CA
    (tmp_path / "one.pem").write_text(records[-1]["cert"])
    assert openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", str(ca_dir / "ca.pem"),
                   str(tmp_path / "one.pem")).returncode == 0


def test_a_refused_manifest_spools_nothing_usable_and_leaves_no_file(ca_dir: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "fleet.csv"
    write_manifest(manifest, "ok")
    manifest.write_text(manifest.read_text() + "server,https://www.example.com/\n")
    ca = CADirectory(ca_dir).open()
    with Spool() as spool:
        with pytest.raises(checking.ManifestError):
            check_manifest(ca, manifest, jobs=2, chunk_size=CHUNK, out_dir=tmp_path / "out", spool=spool)
        assert len(spool.files) == 2
        for handle in spool.files:  # the parsed lines are in files no one else can open or find
            info = os.fstat(handle.fileno())
            assert info.st_nlink == 0 and stat.S_IMODE(info.st_mode) & 0o077 == 0
    assert spool.files == []  # closed with the spool
    assert not (tmp_path / "out").exists()


def test_a_worker_that_falls_behind_issues_fewer_chunks(ca_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """Workers take the next chunk nobody has taken when they are free: a worker held up (here for
    two seconds, as a busy machine might) leaves its share to the others, instead of each worker
    owning every Nth chunk and the others waiting for it at the end. Every line is still issued once."""

    from certkit.batch import runner

    chunks = 10
    (tmp_path / "m.csv").write_text("kind,names\n" + "".join(f"server,h{i}.example.com\n" for i in range(chunks * 3)))
    log = tmp_path / "issued-by"
    real_issue = runner._Job._issue_chunk

    def logged(self, chunk, report):
        def logged_report(stats):
            with open(log, "a") as f:  # each worker appends one short line per chunk
                f.write(f"{os.getpid()} {stats['issued']}\n")
            report(stats)

        real_issue(self, chunk, logged_report)

    monkeypatch.setattr(runner, "_worker", first_one_held_up(runner._worker, tmp_path / "held"))
    monkeypatch.setattr(runner._Job, "_issue_chunk", logged)
    ca = CADirectory(ca_dir).load(PASSPHRASE.encode())
    output = Output("jsonl", tmp_path / "all.jsonl", shared=True)
    result = issue_batch(ca, tmp_path / "m.csv", jobs=2, chunk_size=3, output=output)
    assert result.issued == chunks * 3
    per_worker: dict[str, int] = {}
    for line in log.read_text().splitlines():
        pid, issued = line.split()
        assert issued == "3"
        per_worker[pid] = per_worker.get(pid, 0) + 1
    assert sum(per_worker.values()) == chunks
    # owning every other chunk, each worker would issue exactly 5
    assert max(per_worker.values()) > chunks // 2, per_worker
    names = sorted(json.loads(line)["name"] for line in (tmp_path / "all.jsonl").read_text().splitlines())
    assert names == sorted(f"h{i}.example.com" for i in range(chunks * 3))


def test_a_checking_process_that_falls_behind_checks_fewer_chunks(ca_dir: Path, tmp_path: Path,
                                                                 monkeypatch) -> None:
    """The check shares out its chunks the same way: the process held up checks fewer than its half,
    and issuing still gets every line once, in manifest order."""

    manifest = tmp_path / "fleet.csv"
    names = write_manifest(manifest, "late")
    monkeypatch.setattr(checking, "_worker", first_one_held_up(checking._worker, tmp_path / "held"))
    ca = CADirectory(ca_dir).open()
    with Spool() as spool:
        output = Output("jsonl", tmp_path / "all.jsonl", shared=True)
        assert check_manifest(ca, manifest, jobs=2, chunk_size=CHUNK, output=output, spool=spool) == LINES
        per_file = [sum(1 for _ in _only(spool, handle).chunks()) for handle in spool.files]
        chunks = -(-LINES // CHUNK)
        assert sum(per_file) == chunks and max(per_file) > -(-chunks // 2), per_file
        spooled = [line.names[0] for chunk in spool.chunks() for line in chunk]
        assert spooled == names  # every line once, in manifest order
        ca.unlock(PASSPHRASE.encode())
        result = issue_batch(ca, manifest, jobs=2, chunk_size=CHUNK, output=output, spool=spool)
    assert result.issued == LINES


def first_one_held_up(worker, marker: Path):
    """``worker`` (a forked process's function) with the first process to start it held up for two
    seconds, as a busy machine might; ``marker`` tells the others it is taken."""
    import time

    def held(*args):
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            pass  # another process
        else:
            time.sleep(2)
        worker(*args)

    return held


def _only(spool: Spool, handle) -> Spool:
    """A view of ``spool`` that holds only one of its files."""
    view = Spool()
    view.files = [handle]
    return view
