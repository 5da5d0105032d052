"""The nineteenth round's team findings (audit team, round nineteen): a PostgreSQL inventory whose server
crashes, restarts or is slow, and a CA key in a PKCS#11 token (SoftHSM2).

1. ``issue-batch --format tar|jsonl|k8s --out FILE`` records its certificates without waiting for the database
   server's disk (``synchronous_commit = off``) and syncs the inventory before the file is put in place. A
   server that crashed in between (an OOM kill, a failover) lost those rows, and the sync then ran on the
   new connection certkit made to the restarted server, which knew nothing of them: the file was put in
   place with certificates and keys no row records (not listed, not revocable, never on a CRL), and the
   batch said "Issued 20 certificates". The rows are now looked for once synced: gone, the file is not
   put in place and the batch says why.
2. A TLS file of this host's that libpq cannot use (an sslrootcert= that is missing or holds no certificate, an
   sslkey= others can read or that holds no key) was said of the server: "was reached, but its TLS certificate
   was not accepted ... give the CA of the server's certificate with sslrootcert=PATH", or "cannot be reached".
3. A host that went away in the middle of a write (a laptop suspended, a VM powered off, a network cut: no FIN
   reaches the server) kept its locks on the shared database for as long as the operating system's keepalive
   takes (over two hours): every other host's issuance, revocation and CRL failed meanwhile after 60 s, "stayed
   locked by another certkit process for 60 s; try again". certkit's sessions now ask the server for TCP
   keepalives (and libpq for its own): the server ends such a session, and rolls it back, within 20 s.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from test_audit14_team import own_postgres  # noqa: F401 (a fixture)

from certkit.vocabulary import serial_hex

from conftest import PASSPHRASE, certkit_env, require, run_certkit


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
    # issued into a folder of root's, then copied into the server's (certkit refuses to write below a folder another
    # user owns, who could swap its names for links while root writes there)
    run_certkit("issue-server", "--ca-dir", str(folder / "ca"), "127.0.0.1", "--out", str(folder / "tls"),
                env=certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE), check=True)
    shutil.copytree(folder / "tls", server.base / "tls")
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
    # A CRL file of another CA: OpenSSL finds none of the server's CA and refuses its certificate; said so.
    run_certkit("crl", "--out", str(tmp_path / "team.crl"), env=env, check=True)
    query = f"sslmode=verify-ca&sslrootcert={root}&sslcrl={tmp_path / 'team.crl'}"
    ran = run_certkit("list", env=dict(env, CERTKIT_INVENTORY_URL=f"{url}?{query}"))
    assert ran.returncode == 1 and "certificate verify failed" in ran.stderr, ran.stderr
    assert (f"check that sslcrl={tmp_path / 'team.crl'} holds a current CRL of that CA (one whose next update has "
            "not passed; without one every certificate of that CA is refused), or choose another sslmode.\n"
            ) in ran.stderr, ran.stderr
    # A service no service file defines, a service file that is not there: not a server that 'cannot be reached'.
    missing = tmp_path / "none.conf"
    for extra, said in (({}, 'definition of service "nosuch" not found'),
                        ({"PGSERVICEFILE": str(missing)}, f'service file "{missing}" not found')):
        ran = run_certkit("list", env=dict(env, CERTKIT_INVENTORY_URL=f"{url}?service=nosuch", **extra))
        assert ran.returncode == 1 and ran.stderr == (
            f"Error: The inventory {url}?service=nosuch names a service that cannot be found on this host (connection "
            f"is bad: {said}); define it in ~/.pg_service.conf (or in the file $PGSERVICEFILE names, which must "
            "exist), or fix service= in the URL.\n"), ran.stderr


# --- 3. a host gone in the middle of a transaction --------------------------------------------------------------
_HOLD = """
import sys, time
from certkit.db_postgres import PostgresDatabase
from certkit.inventory.compromise import hold_compromise_lock
with PostgresDatabase(sys.argv[1]).transaction(write=True) as tx:
    hold_compromise_lock(tx, shared=False)  # as a keyCompromise revocation holds it
    print("held", flush=True)
    time.sleep(600)
"""


def _in_netns(holder: subprocess.Popen, args: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net=/proc/{holder.pid}/ns/net", *map(str, args)], capture_output=True,
                          text=True, timeout=120, **kwargs)


def test_a_host_gone_in_a_transaction_does_not_keep_its_locks_for_hours(request, tmp_path):
    """The server runs in a network namespace of its own; a 'host' there holds the keyCompromise lock over
    TCP, then its network is cut (a blackhole qdisc drops every packet: no FIN, no RST, no answer; the server's
    last answer is never acknowledged). Another host, on the server's Unix socket, issues a certificate, whose
    marking waits for that lock: the server ended the gone host's session and the issuance went through
    (before the fix: 'stayed locked by another certkit process for 60 s', exit 1)."""
    if os.geteuid() != 0:
        pytest.skip("a network namespace of its own needs root")
    for tool in ("unshare", "nsenter", "ip", "tc"):
        require(tool)
    from team_postgres import _run_as

    server = request.getfixturevalue("own_postgres")
    url = server.create_database()
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path),
                      **server.env())
    run_certkit("init-ca", "--name", "Gone CA", "--inventory", url, env=env, check=True)
    server._pg("pg_ctl", "-D", str(server.base / "data"), "-m", "fast", "-w", "stop")
    holder = subprocess.Popen(["unshare", "--net", "sh", "-c", "ip link set lo up && exec sleep 600"])
    gone = None
    try:
        deadline = time.monotonic() + 30
        while "UP" not in _in_netns(holder, ["ip", "link", "show", "lo"]).stdout:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        user = _run_as()
        ids = ["--setuid", str(user.pw_uid), "--setgid", str(user.pw_gid)] if user else []
        options = f"-c listen_addresses=127.0.0.1 -p {server.port} -k {server.base} -c fsync=off"
        started = _in_netns(holder, [*ids, server.bin / "pg_ctl", "-D", server.base / "data", "-l",
                                     server.base / "log", "-w", "-o", options, "start"], cwd=server.base)
        assert started.returncode == 0, started.stdout + started.stderr + server.log_tail()
        gone = subprocess.Popen(["nsenter", f"--net=/proc/{holder.pid}/ns/net", sys.executable, "-c", _HOLD, url],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert gone.stdout.readline() == "held\n", gone.communicate()
        # Every packet dropped on the way (no FIN, no RST, no answer), as a host that went away: not the link
        # down, which the kernel's keepalive takes for local congestion and waits out.
        cut = _in_netns(holder, ["tc", "qdisc", "add", "dev", "lo", "root", "blackhole"])
        assert cut.returncode == 0, cut.stderr
        by_socket = f"postgresql://certkit@{quote(str(server.base), safe='')}:{server.port}/{url.rsplit('/', 1)[1]}"
        ran = subprocess.run([sys.executable, "-m", "certkit", "issue-server", "w.example.test", "--out",
                              tmp_path / "w"], env=dict(env, CERTKIT_INVENTORY_URL=by_socket,
                                                        PGPASSWORD=server.password),
                             capture_output=True, text=True, timeout=180)
        assert ran.returncode == 0, ran.stdout + ran.stderr + server.log_tail()
        assert "timed out" in server.log_tail(), server.log_tail()  # the server ended the gone host's session
    finally:
        if gone is not None:
            gone.kill()
            gone.communicate()
        server._pg("pg_ctl", "-D", str(server.base / "data"), "-m", "immediate", "-w", "stop")
        holder.kill()
        holder.wait()
