"""Concurrency and crashes, for real: several processes issuing, renewing, revoking and signing CRLs
against one CA at once; and processes killed with SIGKILL at chosen points (certkit.testhooks)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certkit.store import CADirectory
from certkit.vocabulary import serial_hex

from conftest import run_certkit

WORKER = textwrap.dedent("""
    import sys, time, os
    from pathlib import Path
    from certkit.store import CADirectory
    from certkit.renewal import renew_bundle
    ca_dir, out, worker, go = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    ca = CADirectory(ca_dir).load(os.environ["CERTKIT_CA_PASSPHRASE"].encode())
    while not go.exists():
        time.sleep(0.01)
    issued = []
    for i in range(8):
        cert = ca.issue_server([f"w{worker}-{i}.internal"])
        cert.write(out / f"w{worker}-{i}")
        issued.append(cert.serial_hex)
    for i in (0, 1):
        renew_bundle(ca, str(out / f"w{worker}-{i}"), rekey=(i == 1))
    for serial in issued[2:4]:
        ca.revoke(serial, "superseded")
    ca.crl()
""")


def spki(obj) -> bytes:
    return obj.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def check_inventory(ca_dir: Path) -> list[dict]:
    """Integrity, and every row's certificate present, parseable, signed by the CA and matching its row."""
    conn = sqlite3.connect(ca_dir / "inventory.sqlite3")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ders = dict(conn.execute("SELECT serial, der FROM certificates"))
    finally:
        conn.close()
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    for serial, der in ders.items():
        cert = x509.load_der_x509_certificate(der)
        assert serial_hex(cert.serial_number) == serial
        cert.verify_directly_issued_by(ca_cert)
    inventory = CADirectory(ca_dir).inventory
    inventory.check()  # as every command does first: settle the rows of dead writers
    return inventory.query()


def test_many_processes_at_once(tmp_path, ca_env, ca_dir):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    go = tmp_path / "go"
    workers = [subprocess.Popen([sys.executable, str(script), str(ca_dir), str(tmp_path), str(n), str(go)],
                                env=ca_env, stderr=subprocess.PIPE, text=True) for n in range(4)]
    # The CLI joins in too, as separate processes.
    clis = [subprocess.Popen([sys.executable, "-m", "certkit", "issue-client", f"cli-{n}", "--out",
                              str(tmp_path / f"cli-{n}")], env=ca_env, stderr=subprocess.PIPE, text=True)
            for n in range(3)]
    time.sleep(0.3)
    go.touch()
    for proc in workers + clis:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    rows = check_inventory(ca_dir)
    # 4 x (8 issued + 2 renewals) + 3 clients, every serial distinct (the primary key) and present.
    assert len(rows) == 4 * 10 + 3 == len({r["serial"] for r in rows})
    assert sum(r["status"] == "revoked" for r in rows) == 8
    renewals = [r for r in rows if r["renewed_from"]]
    assert len(renewals) == 8
    for worker in range(4):
        for i in range(8):
            folder = tmp_path / f"w{worker}-{i}"
            cert = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes())
            key = serialization.load_pem_private_key((folder / "privkey.pem").read_bytes(), None)
            assert spki(cert) == spki(key)
            row = next(r for r in rows if r["serial"] == serial_hex(cert.serial_number))
            assert (row["renewed_from"] is not None) == (i < 2)
    conn = sqlite3.connect(ca_dir / "inventory.sqlite3")
    assert conn.execute("SELECT value FROM meta WHERE key = 'crl_number'").fetchone()[0] == "4"
    conn.close()
    assert not list(tmp_path.glob(".*certkit-tmp"))


def _run_until(point: str, args: list[str], env: dict, tmp_path: Path) -> None:
    """Run the CLI until it reaches ``point``, then kill it with SIGKILL."""
    marker = tmp_path / f"paused-{point}"
    env = dict(env, CERTKIT_TEST_PAUSE_AT=point, CERTKIT_TEST_PAUSE_FILE=str(marker))
    proc = subprocess.Popen([sys.executable, "-m", "certkit", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, f"never reached {point}"
            time.sleep(0.02)
        assert int(marker.read_text() or proc.pid) == proc.pid
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


@pytest.mark.parametrize("point,rows", [("signed", 0), ("recorded", 1), ("staged", 1)])
def test_kill_while_issuing(tmp_path, ca_env, ca_dir, point, rows):
    _run_until(point, ["issue-server", "victim.internal", "--out", "victim"], ca_env, tmp_path)
    assert not (tmp_path / "victim").exists()  # no half-written bundle where a server would look
    # A row, if any, holds its whole certificate; the next command finds it was never delivered.
    assert len(check_inventory(ca_dir)) == 0
    assert len(CADirectory(ca_dir).inventory.query(status="abandoned")) == rows
    # The CA is not left locked or damaged: the same command now succeeds.
    proc = run_certkit("issue-server", "victim.internal", "--out", "victim", cwd=tmp_path, env=ca_env)
    assert proc.returncode == 0, proc.stderr
    assert len(check_inventory(ca_dir)) == 1
    # and what the killed process left (a staged folder may hold a key) is swept away.
    assert not list(tmp_path.glob(".victim.*certkit-tmp"))


@pytest.mark.parametrize("point", ["signed", "recorded", "staged", "swapped"])
def test_kill_while_renewing(tmp_path, ca_env, ca_dir, point):
    run_certkit("issue-server", "svc.internal", "--out", "svc", cwd=tmp_path, env=ca_env, check=True)
    folder = tmp_path / "svc"
    old = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes())
    _run_until(point, ["renew", "svc", "--rekey"], ca_env, tmp_path)
    cert = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes())
    key = serialization.load_pem_private_key((folder / "privkey.pem").read_bytes(), None)
    assert spki(cert) == spki(key)  # old pair or new pair, never one of each
    assert (cert == old) == (point != "swapped")
    assert (cert.public_bytes(serialization.Encoding.PEM) ==
            (folder / "fullchain.pem").read_bytes())
    serials = {r["serial"] for r in check_inventory(ca_dir)}
    assert serial_hex(cert.serial_number) in serials
    # Renewing again works from whatever state was left.
    proc = run_certkit("renew", folder, cwd=tmp_path, env=ca_env)
    assert proc.returncode == 0, proc.stderr
    assert not list(tmp_path.glob(".svc.*certkit-tmp")) and not list(folder.glob(".*certkit-tmp"))


def test_paused_process_resumes_when_released(tmp_path, ca_env, ca_dir):
    marker = tmp_path / "paused"
    env = dict(ca_env, CERTKIT_TEST_PAUSE_AT="recorded", CERTKIT_TEST_PAUSE_FILE=str(marker))
    proc = subprocess.Popen([sys.executable, "-m", "certkit", "issue-client", "carol"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        assert not (tmp_path / "carol").exists()
        marker.unlink()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert (tmp_path / "carol" / "cert.pem").exists()
