"""The nineteenth round's team findings (audit team, round nineteen): a PostgreSQL inventory whose server
crashes, restarts or is slow, and a CA key in a PKCS#11 token (SoftHSM2).

1. ``issue-batch --format tar|jsonl|k8s --out FILE`` records its certificates without waiting for the database
   server's disk (``synchronous_commit = off``) and syncs the inventory before the file is put in place. A
   server that crashed in between (an OOM kill, a failover) lost those rows, and the sync then ran on the
   new connection certkit made to the restarted server, which knew nothing of them: the file was put in
   place with certificates and keys no row records (not listed, not revocable, never on a CRL), and the
   batch said "Issued 20 certificates". The rows are now looked for once synced: gone, the file is not
   put in place and the batch says why.
"""

from __future__ import annotations

import os
import signal
import tarfile
import time
from pathlib import Path

from cryptography import x509
from test_audit14_team import own_postgres  # noqa: F401 (a fixture)

from certkit.vocabulary import serial_hex

from conftest import PASSPHRASE, certkit_env, run_certkit


# --- 1. a server crash between a batch's unsynced rows and its sync ------------------------------------------
def _server_pid(server, backend_type: str) -> int:
    with server.connect() as conn:
        return conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = %s", (backend_type,)).fetchone()[0]


def _back_after_crash(server, before: int) -> None:
    """Wait until the postmaster has restarted its processes after a crash (a new WAL writer) and takes connections."""
    import psycopg

    deadline = time.monotonic() + 60
    while True:
        try:
            if _server_pid(server, "walwriter") not in (None, before):
                return
        except (psycopg.Error, TypeError):
            pass
        assert time.monotonic() < deadline, server.log_tail()
        time.sleep(0.1)


def test_a_batch_file_is_not_put_in_place_when_a_server_crash_lost_its_unsynced_rows(tmp_path, own_postgres):
    """The WAL writer is stopped, so the first chunk's rows (committed without waiting for the disk) stay in the
    server's memory; at that chunk's 'recorded' pause it is killed: the server restarts itself, without them.
    Before the fix the tar was put in place with 20 certificates, 5 of them in no row, exit 0."""
    from integrity_helpers import start_paused

    url = own_postgres.create_database()
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      HOME=str(tmp_path), **own_postgres.env())
    run_certkit("init-ca", "--name", "Crash CA", "--inventory", url, env=env, check=True, subprocess=True)
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names\n" + "".join(f"server,h{i}.example.test\n" for i in range(20)))
    writer = _server_pid(own_postgres, "walwriter")
    os.kill(writer, signal.SIGSTOP)
    marker = tmp_path / "paused"
    try:
        proc = start_paused(["issue-batch", manifest, "--format", "tar", "--out", tmp_path / "out.tar", "--jobs",
                             "1"], dict(env, CERTKIT_TEST_CHUNK_SIZE="5"), tmp_path, "recorded", marker)
    finally:
        os.kill(writer, signal.SIGKILL)  # a crash: the postmaster restarts every process, from the WAL on disk
    try:
        _back_after_crash(own_postgres, writer)
    finally:
        marker.unlink(missing_ok=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None:  # the next chunks pause there too: let each go on
        marker.unlink(missing_ok=True)
        assert time.monotonic() < deadline
        time.sleep(0.02)
    out, err = proc.communicate()
    with own_postgres.connect(url.rsplit("/", 1)[1]) as conn:
        rows = dict(conn.execute("SELECT serial, status FROM certificates WHERE kind = 'server'").fetchall())
    if (tmp_path / "out.tar").exists():  # (before the fix)
        with tarfile.open(tmp_path / "out.tar") as archive:
            in_tar = {serial_hex(x509.load_pem_x509_certificate(archive.extractfile(m).read()).serial_number)
                      for m in archive.getmembers() if m.name.endswith("/cert.pem")}
        assert in_tar <= set(rows), f"{len(in_tar - set(rows))} certificates of out.tar have no row: {out}{err}"
    assert proc.returncode == 1, out + err
    assert err.startswith("Error: The inventory postgresql://") and err.count("\n") == 1, err
    assert " lost 5 of the 20 certificates recorded for this output " in err, err
    assert "Nothing was put in place" in err and not (tmp_path / "out.tar").exists()
    assert len(rows) == 15 and set(rows.values()) == {"abandoned"}, rows  # what the server kept: abandoned
