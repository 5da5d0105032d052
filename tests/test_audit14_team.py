"""Audit team, round fourteen (the PostgreSQL inventory, the PKCS#11 CA key, trust stores).

1. A batch into one file (``--format jsonl|tar|k8s --out FILE``) records its certificates pending
   without waiting for the server's disk and makes them durable (``PostgresDatabase.sync``) before
   the file is put in place. That sync waited for nothing: PostgreSQL waits at commit only for a
   transaction that wrote to its log, and ``SELECT txid_current()`` writes nothing there. A server
   crash (``pg_ctl stop -m immediate``) right after the file was in place lost the last chunks' rows:
   certificates with their keys in the file, which the inventory never knew (no CRL could list them).

PostgreSQL and SoftHSM2 are started by the tests (tests/team_postgres.py, tests/team_hsm.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from cryptography import x509

from certkit.vocabulary import serial_hex

from conftest import PASSPHRASE, certkit_env, run_certkit


@pytest.fixture
def own_postgres():
    """A PostgreSQL server of this test alone: it is crashed and started again."""
    from team_postgres import PostgresServer, bindir

    if bindir() is None:
        pytest.skip("initdb is not installed")
    pytest.importorskip("psycopg")
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _crash(server) -> None:
    """What a killed postmaster (or an OOM kill of the server) does: no shutdown checkpoint."""
    server._pg("pg_ctl", "-D", str(server.base / "data"), "-m", "immediate", "-w", "-t", "60", "stop")


def _start_again(server) -> None:
    options = (f"-c listen_addresses=127.0.0.1 -p {server.port} -k {server.base} -c max_connections=200 "
               "-c shared_buffers=32MB -c fsync=off -c full_page_writes=off")
    server._pg("pg_ctl", "-D", str(server.base / "data"), "-l", str(server.base / "log"), "-w", "-t", "60",
               "-o", options, "start")


def _serials_in_tar(path: Path) -> set[str]:
    found = set()
    with tarfile.open(path) as archive:
        for member in archive.getmembers():
            if member.name.endswith("/cert.pem"):
                cert = x509.load_pem_x509_certificate(archive.extractfile(member).read())
                found.add(serial_hex(cert.serial_number))
    return found


# --- finding 1: the sync before a batch file is put in place ------------------------------------
def test_a_server_crash_after_a_batch_file_is_in_place_loses_none_of_its_rows(tmp_path, own_postgres):
    """40 certificates in chunks of 5 into one tar; paused once the tar is in place, the server is
    crashed. Started again, the inventory knows every certificate the tar holds (before the fix, the
    last chunks' rows were gone, and certkit had said they 'stay pending')."""
    from integrity_helpers import start_paused

    url = own_postgres.create_database()
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      HOME=str(tmp_path), **own_postgres.env())
    run_certkit("init-ca", "--name", "Crash CA", "--inventory", url, env=env, check=True, subprocess=True)
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names\n" + "".join(f"server,h{i}.example.test\n" for i in range(40)))
    marker = tmp_path / "paused"
    proc = start_paused(["issue-batch", manifest, "--format", "tar", "--out", tmp_path / "out.tar", "--jobs", "1"],
                        dict(env, CERTKIT_TEST_CHUNK_SIZE="5"), tmp_path, "placed", marker)
    try:
        _crash(own_postgres)
    finally:
        marker.unlink(missing_ok=True)  # the batch goes on: its marks find no server
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "stay pending" in err, out + err
    _start_again(own_postgres)
    in_tar = _serials_in_tar(tmp_path / "out.tar")
    assert len(in_tar) == 40
    listed = subprocess.run([sys.executable, "-m", "certkit", "list", "--json"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    recorded = {c["serial"] for c in json.loads(listed.stdout)["certificates"] if c["status"] == "valid"}
    assert in_tar <= recorded, f"{len(in_tar - recorded)} certificates of out.tar have no row"
