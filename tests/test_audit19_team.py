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


def test_a_batch_file_is_not_put_in_place_when_a_server_crash_lost_its_unsynced_rows(request, tmp_path):
    """The WAL writer is stopped, so the first chunk's rows (committed without waiting for the disk) stay in the
    server's memory; at that chunk's 'recorded' pause it is killed: the server restarts itself, without them.
    Before the fix the tar was put in place with 20 certificates, 5 of them in no row, exit 0."""
    server = request.getfixturevalue("own_postgres")
    from integrity_helpers import start_paused

    url = server.create_database()
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      HOME=str(tmp_path), **server.env())
    run_certkit("init-ca", "--name", "Crash CA", "--inventory", url, env=env, check=True, subprocess=True)
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names\n" + "".join(f"server,h{i}.example.test\n" for i in range(20)))
    writer = _server_pid(server, "walwriter")
    os.kill(writer, signal.SIGSTOP)
    marker = tmp_path / "paused"
    try:
        proc = start_paused(["issue-batch", manifest, "--format", "tar", "--out", tmp_path / "out.tar", "--jobs",
                             "1"], dict(env, CERTKIT_TEST_CHUNK_SIZE="5"), tmp_path, "recorded", marker)
    finally:
        os.kill(writer, signal.SIGKILL)  # a crash: the postmaster restarts every process, from the WAL on disk
    try:
        _back_after_crash(server, writer)
    finally:
        marker.unlink(missing_ok=True)
    deadline = time.monotonic() + 120
    while proc.poll() is None:  # the next chunks pause there too: let each go on
        marker.unlink(missing_ok=True)
        assert time.monotonic() < deadline
        time.sleep(0.02)
    out, err = proc.communicate()
    with server.connect(url.rsplit("/", 1)[1]) as conn:
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


# --- 2. this host's TLS files for the database, said as such ------------------------------------------------
def _tls_on(server, folder: Path) -> None:
    """TLS on ``server`` with a certificate of a CA of certkit's own (its files readable by the server's user)."""
    run_certkit("init-ca", "--ca-dir", str(folder / "ca"), "--name", "PG TLS CA", env=certkit_env(
        CERTKIT_CA_PASSPHRASE=PASSPHRASE), check=True)
    run_certkit("issue-server", "--ca-dir", str(folder / "ca"), "127.0.0.1", "--out", str(server.base / "tls"),
                env=certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE), check=True)
    owner = os.stat(server.base)
    for path in (server.base / "tls", *(server.base / "tls").iterdir()):
        os.chown(path, owner.st_uid, owner.st_gid)
    with server.connect() as conn:
        conn.execute("ALTER SYSTEM SET ssl = on")
        conn.execute(f"ALTER SYSTEM SET ssl_cert_file = '{server.base / 'tls' / 'fullchain.pem'}'")
        conn.execute(f"ALTER SYSTEM SET ssl_key_file = '{server.base / 'tls' / 'privkey.pem'}'")
        conn.execute("SELECT pg_reload_conf()")
    deadline = time.monotonic() + 60
    while True:  # the postmaster reloads when it takes the signal: a new session then has TLS on
        with server.connect() as conn:
            if conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]:
                return
        assert time.monotonic() < deadline, server.log_tail()
        time.sleep(0.05)


def test_a_tls_file_of_this_host_that_libpq_cannot_use_is_named_not_said_of_the_server(request, tmp_path):
    """A missing or unreadable sslrootcert, a client key others can read, a key file that is no key: before the
    fix, 'was reached, but its TLS certificate was not accepted ... give the CA of the server's certificate with
    sslrootcert=PATH' (the URL gave one: missing here), or 'cannot be reached' (the network was fine)."""
    server = request.getfixturevalue("own_postgres")
    url = server.create_database()
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "team"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path),
                      **server.env())
    run_certkit("init-ca", "--name", "Team CA", "--inventory", url, env=env, check=True)
    _tls_on(server, tmp_path)
    root = tmp_path / "ca" / "ca.pem"
    ok = run_certkit("list", env=dict(env, CERTKIT_INVENTORY_URL=f"{url}?sslmode=verify-full&sslrootcert={root}"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    not_pem = tmp_path / "not-pem.txt"
    not_pem.write_text("no certificate here\n")
    open_key = tmp_path / "client.key"
    open_key.write_bytes((server.base / "tls" / "privkey.pem").read_bytes())
    open_key.chmod(0o644)
    for query, path in ((f"sslmode=verify-ca&sslrootcert={tmp_path / 'missing.pem'}", tmp_path / "missing.pem"),
                        (f"sslmode=verify-ca&sslrootcert={not_pem}", not_pem),
                        (f"sslmode=require&sslcert={server.base / 'tls' / 'cert.pem'}&sslkey={open_key}",
                         open_key),
                        (f"sslmode=require&sslcert={server.base / 'tls' / 'cert.pem'}&sslkey={not_pem}",
                         not_pem)):
        ran = run_certkit("list", env=dict(env, CERTKIT_INVENTORY_URL=f"{url}?{query}"))
        assert ran.returncode == 1 and ran.stderr.count("\n") == 1, ran.stderr
        assert ran.stderr.startswith(f"Error: The inventory {url}?{query} cannot be used from this host: a TLS file "
                                     "that libpq reads here is not usable (connection failed: "), ran.stderr
        assert ran.stderr.endswith(f"); fix {path} (or the URL's sslrootcert=, sslcert=, sslkey= or sslcrl= that "
                                   "names it), then try again.\n"), ran.stderr
        assert f'"{path}"' in ran.stderr and "not accepted" not in ran.stderr, ran.stderr
