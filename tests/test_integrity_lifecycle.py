"""Issue 9, classes 1, 2 and 6: the inventory tells the truth about interrupted, failed and
refused work; batch bundles are renewable; killed batches leave no worker writing.

Class 1: a name whose folder (or its staging name) would exceed the file-system limits is refused
before signing, with nothing recorded (issue-server's default folder, --out of every command, a
manifest line); serve records nothing when it cannot listen; a renewal that cannot be written
leaves the deployed certificate listed as it is (not "renewed", still expiring); a manifest
issued before is finished with --resume instead of refused.
(Interruptions at every pause point: tests/test_integrity_faults.py.)

Class 2: certificates issued by issue-batch (one worker or two) are renewed by serial, by serial
prefix, by name and by folder, and revoked by folder, like any other.

Class 6: a batch whose parent is killed (SIGKILL, SIGTERM) leaves no worker running or writing.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import assert_clean_error, openssl, run_certkit
from integrity_helpers import (
    alive,
    assert_inventory_matches_disk,
    bundles_under,
    db_rows,
    descendants,
    listed,
    read_bundle,
    start_paused,
    tmpfs,
)

LONG_DNS = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 53]) + ".example"  # 253 characters, a valid name
LONG_FOLDER = "f" * 240  # fits NAME_MAX, but not with certkit's temporary name around it


# --- class 1 -------------------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["issue-server", LONG_DNS],  # the default folder is the name itself
    ["issue-server", "ok.example.internal", "--out", LONG_FOLDER],
    ["issue-peer", "ok.example.internal", "--out", "x/" + LONG_FOLDER],
    ["issue-client", "Bob", "--out", LONG_FOLDER],
    ["issue-client", "Bob", "--out", "/".join(["d" * 200] * 21)],  # a path past PATH_MAX
    ["sign-csr", "req.csr", "--client", "--out", LONG_FOLDER],
    ["renew", "web", "--out", LONG_FOLDER],
    ["renew", "web", "--rekey", "--out", "g" * 256 + "/x"],  # a folder on the way past NAME_MAX
    ["issue-batch", "long-out.csv"],
    ["issue-batch", "long-name.csv"],
], ids=["issue-server default folder", "issue-server --out", "issue-peer --out", "issue-client --out",
        "issue-client path", "sign-csr --out", "renew --out", "renew --rekey --out", "batch out", "batch name"])
def test_over_long_names_are_refused_before_signing(tmp_path: Path, ca_env: dict, ca_dir: Path, args: list) -> None:
    run_certkit("issue-server", "web.example.internal", "--out", tmp_path / "web", env=ca_env, check=True)
    assert openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                   tmp_path / "req.key", "-subj", "/CN=Carol", "-out", tmp_path / "req.csr").returncode == 0
    (tmp_path / "long-out.csv").write_text(f"kind,names,out\nserver,a.example.internal,\nserver,b.example.internal,"
                                           f"{LONG_FOLDER}\n")
    (tmp_path / "long-name.csv").write_text(f"kind,names\nserver,a.example.internal\nserver,{LONG_DNS}\n")
    before = db_rows(ca_dir)
    proc = run_certkit(*args, cwd=tmp_path, env=ca_env)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stderr.splitlines()[-1].startswith("Error:"), proc.stderr
    assert "bytes" in proc.stderr or "too long" in proc.stderr, proc.stderr
    assert db_rows(ca_dir) == before  # nothing signed, so nothing recorded, not even abandoned
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["ca", "web", "req.csr", "req.key", "long-out.csv", "long-name.csv"])


def busy_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_serve_records_nothing_when_it_cannot_listen(tmp_path: Path, ca_env: dict, ca_dir: Path) -> None:
    with busy_port() as taken:
        for host, port in (("127.0.0.1", taken.getsockname()[1]), ("192.0.2.1", 0)):  # in use; not ours
            proc = run_certkit("serve", "--host", host, "--port", port, env=ca_env)
            assert_clean_error(proc, "Cannot listen")
    assert db_rows(ca_dir) == []


@pytest.mark.parametrize("rekey", [False, True], ids=["keep key", "rekey"])
def test_a_renewal_that_cannot_be_written_changes_nothing_listed(tmp_path: Path, ca_env: dict, ca_dir: Path,
                                                                rekey: bool) -> None:
    with tmpfs(tmp_path / "mnt", "size=1m") as mount:
        folder = mount / "svc"
        run_certkit("issue-server", "svc.example.internal", "--out", folder, env=ca_env, check=True)
        old = read_bundle(folder)
        assert subprocess.run(["mount", "-o", "remount,ro", str(mount)]).returncode == 0
        proc = run_certkit("renew", folder, *(["--rekey"] if rekey else []), env=ca_env)
        assert_clean_error(proc, "read-only")
        assert read_bundle(folder) == old
        rows = {r["serial"]: r for r in listed(ca_env)}
        assert rows[old.serial]["status"] == "valid" and rows[old.serial]["renewed_by"] is None
        assert old.serial in {r["serial"] for r in listed(ca_env, "--expiring", "825d")}  # still needs renewing
        # refused before anything was signed: the folder's file system is read-only
        assert [r["status"] for r in db_rows(ca_dir) if r["serial"] != old.serial] == []
        assert_inventory_matches_disk(ca_env, ca_dir, mount)


def test_a_manifest_issued_before_is_resumed_not_refused(tmp_path: Path, ca_env: dict, ca_dir: Path) -> None:
    (tmp_path / "m.csv").write_text("kind,names\nserver,a.example.internal\nclient,Bob\nserver,c.example.internal\n")
    run_certkit("issue-batch", "m.csv", "--out-dir", "out", cwd=tmp_path, env=ca_env, check=True)
    first = {b.folder.name: b for b in bundles_under(tmp_path / "out")}
    (tmp_path / "m.csv").write_text((tmp_path / "m.csv").read_text() + "client,Dora\n")
    again = run_certkit("issue-batch", "m.csv", "--out-dir", "out", cwd=tmp_path, env=ca_env)
    assert_clean_error(again, "--resume")
    resumed = run_certkit("issue-batch", "m.csv", "--out-dir", "out", "--resume", "--json", cwd=tmp_path, env=ca_env)
    assert resumed.returncode == 0, resumed.stderr
    import json

    data = json.loads(resumed.stdout)
    assert (data["issued"], data["kept"]) == (1, 3)
    now = {b.folder.name: b for b in bundles_under(tmp_path / "out")}
    assert {k: v for k, v in now.items() if k in first} == first and now["Dora"].complete
    assert_inventory_matches_disk(ca_env, ca_dir, tmp_path / "out")


# --- class 2 -------------------------------------------------------------------------
FLEET = ("kind,names,out\nserver,web1.example.internal 10.0.0.1,web1\nclient,Alice Smith,people/alice\n"
         "peer,node1.example.internal,nodes/node1\nserver,web2.example.internal,web2\nclient,Bob,people/bob\n")


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_batch_certificates_are_renewable(tmp_path: Path, ca_env: dict, ca_dir: Path, jobs: str) -> None:
    (tmp_path / "fleet.csv").write_text(FLEET)
    env = dict(ca_env, CERTKIT_TEST_CHUNK_SIZE="2")  # three chunks: both workers issue
    run_certkit("issue-batch", "fleet.csv", "--out-dir", "out", "--jobs", jobs, cwd=tmp_path, env=env, check=True,
                subprocess=True)  # it forks its workers
    out = tmp_path / "out"
    before = {name: read_bundle(out / name) for name in ("web1", "people/alice", "nodes/node1", "web2", "people/bob")}
    renewals = {
        "web1": [before["web1"].serial],  # by serial
        "people/alice": ["Alice Smith"],  # by name (the common name)
        "nodes/node1": [before["nodes/node1"].serial[:10].lower()],  # by a serial prefix, as typed
        "web2": ["web2.example.internal", "--rekey"],  # by DNS name, with a new key
    }
    for name, args in renewals.items():
        key = (out / name / "privkey.pem").read_bytes()
        proc = run_certkit("renew", *args, cwd=tmp_path, env=ca_env)
        assert proc.returncode == 0, (name, proc.stderr)
        after = read_bundle(out / name)
        assert after.complete and after.serial != before[name].serial, name
        assert ((out / name / "privkey.pem").read_bytes() == key) == ("--rekey" not in args), name
    revoked = run_certkit("revoke", out / "people/bob", "--reason", "keyCompromise", env=ca_env)
    assert revoked.returncode == 0, revoked.stderr
    rows = {r["serial"]: r for r in listed(ca_env)}
    for name in renewals:
        assert rows[before[name].serial]["renewed_by"] == read_bundle(out / name).serial
        assert Path(rows[read_bundle(out / name).serial]["folder"]).resolve() == (out / name).resolve()
    assert rows[before["people/bob"].serial]["status"] == "revoked"


# --- class 6 -------------------------------------------------------------------------
def wait_gone(pids: set[int], timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    return {p for p in pids if alive(p)}


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_batch_leaves_no_worker(tmp_path: Path, ca_env: dict, ca_dir: Path, signum: int) -> None:
    """The workers are paused at 'signed' and never released: only the parent's death (or its
    SIGTERM) can stop them, and they must stop without writing anything more."""
    lines = "".join(f"server,h{n}.example.internal\n" for n in range(40))
    (tmp_path / "m.csv").write_text("kind,names\n" + lines)
    env = dict(ca_env, CERTKIT_TEST_CHUNK_SIZE="4")
    marker = tmp_path / "paused"
    proc = start_paused(["issue-batch", "m.csv", "--out-dir", "out", "--jobs", "2"], env, tmp_path, "signed", marker)
    try:
        deadline = time.monotonic() + 60  # both workers started (one of them has reached the pause)
        while len(workers := descendants(proc.pid)) < 2:
            assert time.monotonic() < deadline and proc.poll() is None, workers
            time.sleep(0.02)
        os.kill(proc.pid, signum)
        proc.wait(30)
        assert wait_gone(workers, 60) == set(), "workers kept running after their parent was killed"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pid in descendants(proc.pid):
            os.kill(pid, signal.SIGKILL)
    assert proc.returncode == (-signal.SIGKILL if signum == signal.SIGKILL else 143), proc.stderr.read()
    written = bundles_under(tmp_path / "out") if (tmp_path / "out").exists() else []
    time.sleep(0.5)
    assert (bundles_under(tmp_path / "out") if (tmp_path / "out").exists() else []) == written
    assert written == []  # every worker was stopped before its first chunk was recorded
    assert_inventory_matches_disk(ca_env, ca_dir, tmp_path / "out")
    if marker.exists():
        marker.unlink()


def test_workers_die_with_a_parent_killed_mid_chunk(tmp_path: Path, ca_env: dict, ca_dir: Path) -> None:
    """Killed while a worker writes a chunk (signals held off until it is written): that chunk is
    finished, nothing after it; the rest of the manifest is issued with --resume."""
    lines = "".join(f"server,h{n}.example.internal\n" for n in range(24))
    (tmp_path / "m.csv").write_text("kind,names\n" + lines)
    env = dict(ca_env, CERTKIT_TEST_CHUNK_SIZE="3")
    marker = tmp_path / "paused"
    proc = start_paused(["issue-batch", "m.csv", "--out-dir", "out", "--jobs", "2"], env, tmp_path, "staged", marker)
    workers = descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    deadline = time.monotonic() + 30
    while any(alive(p) for p in workers):
        assert time.monotonic() < deadline, "workers kept running"
        if marker.exists():
            marker.unlink()
        time.sleep(0.01)
    written = bundles_under(tmp_path / "out")
    assert 0 < len(written) <= 2 * 3, len(written)  # at most the chunk each worker had begun
    assert_inventory_matches_disk(ca_env, ca_dir, tmp_path / "out")
    resumed = run_certkit("issue-batch", "m.csv", "--out-dir", "out", "--resume", cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert len(bundles_under(tmp_path / "out")) == 24
    assert_inventory_matches_disk(ca_env, ca_dir, tmp_path / "out")

