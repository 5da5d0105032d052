"""The twenty-first round's team findings (audit team, round twenty-one): a PostgreSQL inventory shared by hosts,
and a CA key in a PKCS#11 token.

1. ``certkit acme serve``: a finalize that failed on the database or the token answered the ACME client (anyone
   on the network) with the operator's message: the inventory URL (host, port, role, database) and the GRANT to
   run, or the token's label. The client now gets what happened and what to do; the server's log gets the rest.
2. A command that gave up waiting for a lock said "stayed locked by another certkit process for 60 s; try again",
   naming nobody, whether the holder was certkit or a psql left in a transaction, and every certkit session was
   ``certkit`` in pg_stat_activity. Sessions now name their command, host and pid, and the message names the
   sessions that can hold the lock and the pg_terminate_backend that ends one whose process is gone or stopped.
3. A PIN the token refused was remembered per process only: after a PIN change, each forked worker of
   ``issue-batch --jobs N`` logging in again sent the old PIN (N wrong PINs; tokens lock after a few). Refusals are
   now shared with the forked family, which logs in one process at a time.
4. A server that accepted the connection and never answered (hung) was said to be unreachable ("cannot be reached:
   connection timeout expired."); it is now said not to have answered within 10 s, with how to check it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from test_acme_concurrency import _two_tier
from test_team_hsm import _real_processes  # noqa: F401 (an autouse fixture: certkit runs as real processes)

from acme_helpers import AcmeServer


def test_a_finalize_failing_on_the_database_does_not_tell_the_client_its_url(tmp_path: Path, postgres_server) -> None:
    """The database server's disk is full (a trigger raises PostgreSQL's disk_full on the certificate's row): a
    finalize gets 503, the order stays ready, and the detail names no URL, host, port, role or database (it did:
    "... the server's database is unavailable: The inventory postgresql://certkit@127.0.0.1:PORT/db ..."); the
    server's log has the whole message. With room again, the same order is finalized."""
    from acme_client import Client, HTTP01Responder, make_csr
    from acme_helpers import ports

    url = postgres_server.create_database("leak")
    root, _issuing, env = _two_tier(tmp_path, url, **postgres_server.env())
    http_port = ports(1)[0]
    server = AcmeServer("--allow-domain", "acme.test", "--http01-port", str(http_port), "--resolve",
                        "a.acme.test=127.0.0.1", env=env)
    database = url.rsplit("/", 1)[1]
    try:
        with HTTP01Responder(http_port) as web:
            client = Client(server.directory, root)
            client.register()
            order_url, order = client.new_order("a.acme.test")
            client.authorize(order, web)
            assert client.wait(order_url)["status"] == "ready"
            with postgres_server.connect(database) as conn:
                conn.execute("CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION "
                             "'could not extend file: No space left on device' USING ERRCODE = 'disk_full'; END $$")
                conn.execute("CREATE TRIGGER disk_full BEFORE INSERT ON certificates FOR EACH ROW "
                             "EXECUTE FUNCTION disk_full()")
            csr = make_csr(ec.generate_private_key(ec.SECP256R1()), ["a.acme.test"])
            response = client.finalize(client.get(order_url), csr, check=False)
            problem = response.json()
            assert response.status_code == 503 and response.headers.get("Retry-After"), problem
            assert problem["detail"] == ("The certificate was not issued, the server's database is unavailable. "
                                         "The order is ready again: finalize it again later."), problem
            for secret in ("postgresql://", str(postgres_server.port), "127.0.0.1", database, "disk"):
                assert secret not in response.text, (secret, problem)
            server.wait_for_log("nothing issued, the order is ready again: the server's database is unavailable: "
                                f"The inventory {url} ")
            assert client.get(order_url)["status"] == "ready"
            with postgres_server.connect(database) as conn:
                conn.execute("DROP TRIGGER disk_full ON certificates")
            response = client.finalize(client.get(order_url), csr, check=False)
            assert response.status_code == 200, response.text
            assert client.wait(order_url, ("valid", "invalid"))["status"] == "valid"
    finally:
        server.stop()
    assert "Traceback" not in server.stderr, server.stderr


# --- 2. a lock waited for too long: who holds it ------------------------------------------------------------------
def _waiting(postgres_server, database: str, proc) -> str:
    """The application_name of the certkit process ``proc`` once its session waits for a lock."""
    import time

    deadline = time.monotonic() + 60  # a process to start and reach the lock, on a loaded machine
    with postgres_server.connect(database) as admin:
        while time.monotonic() < deadline and proc.poll() is None:
            row = admin.execute("SELECT application_name FROM pg_stat_activity WHERE datname = %s AND "
                                "wait_event_type = 'Lock' AND application_name LIKE %s",
                                (database, f"certkit % pid {proc.pid}")).fetchone()
            if row:
                return row[0]
            time.sleep(0.05)
    raise AssertionError(f"certkit never waited for the lock: {proc.communicate()}")


def test_a_lock_waited_for_too_long_names_the_session_that_holds_it(tmp_path: Path, postgres_server, postgres_url,
                                                                     pg_ca, monkeypatch) -> None:
    """A report left in a transaction holds the CRL number's row: `certkit crl` waits, its session named
    ``certkit crl on HOST pid N`` (was: ``certkit``, every command alike); a command that gives up names the holder's
    pid, application_name, role, address and since when, and the pg_terminate_backend that ends it (was: "stayed
    locked by another certkit process for 60 s; try again", of a psql session, naming nobody). A role that may not
    see the other role's transactions is told the pids of those that hold locks."""
    import socket
    import subprocess
    import sys

    from certkit.db_postgres import PostgresDatabase
    from certkit.db_postgres_pool import close_idle
    from certkit.errors import InventoryError

    database = postgres_url.rsplit("/", 1)[1]
    holder = postgres_server.connect(database)
    holder.execute("SET application_name = 'nightly report'")
    holder.execute("INSERT INTO meta (key, value) VALUES ('crl_number', '0') ON CONFLICT (key) DO NOTHING")
    holder.execute("BEGIN")
    holder.execute("SELECT value FROM meta WHERE key = 'crl_number' FOR UPDATE")
    holder_pid = holder.info.backend_pid
    crl = subprocess.Popen([sys.executable, "-m", "certkit", "crl", "--passphrase-file", tmp_path / "pass", "--out",
                            tmp_path / "ca.crl"], env=pg_ca, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _waiting(postgres_server, database, crl) == f"certkit crl on {socket.gethostname()} pid {crl.pid}"[:63]
        with postgres_server.connect(database) as admin:  # a session that waited long: the holder's transaction is
            admin.execute("SELECT pg_sleep(1.5)")           # older than the wait, certkit crl's is not named
        close_idle(postgres_url)  # init-ca's, in this process: their lock timeout is the 60 s one
        db = PostgresDatabase(postgres_url)
        db.busy_timeout = 1.0
        with pytest.raises(InventoryError) as gave_up, db.transaction(write=True) as tx:
            tx.execute("SELECT value FROM meta WHERE key = 'crl_number' FOR UPDATE")
        said = str(gave_up.value)
        assert said.startswith(f"The inventory {postgres_url} stayed locked for 1 s by pid {holder_pid} "
                               "(nightly report, role certkit from 127.0.0.1, idle in transaction, in a transaction "
                               "since "), said
        assert said.endswith(f"try again once it ends, or, if its process is gone or stopped, end its session (SELECT "
                             f"pg_terminate_backend({holder_pid}), as its role or a superuser)."), said
        assert f"pid {crl.pid}" not in said and "certkit process" not in said, said
        close_idle(postgres_url)
        other = f"lock_viewer_{database}"  # roles are the cluster's: one of its own (a name no other test uses)
        with postgres_server.connect(database) as admin:
            admin.execute(f"CREATE ROLE {other} LOGIN PASSWORD 'reader-password'")
            admin.execute(f"GRANT SELECT, UPDATE ON meta TO {other}")
        monkeypatch.setenv("PGPASSWORD", "reader-password")
        url = postgres_url.replace("//certkit@", f"//{other}@")
        db = PostgresDatabase(url)
        db.busy_timeout = 1.0
        with pytest.raises(InventoryError) as gave_up, db.transaction(write=True) as tx:
            tx.execute("SELECT value FROM meta WHERE key = 'crl_number' FOR UPDATE")
        close_idle(url)
        said = str(gave_up.value)
        assert said.startswith(f"The inventory {url} stayed locked for 1 s by another session: of another role, "
                               "whose transactions this role may not see; of those, "), said
        assert f"pid {holder_pid} (nightly report, role certkit)" in said, said
        holder.execute("COMMIT")
        out, err = crl.communicate(timeout=120)
        assert crl.returncode == 0 and "Wrote CRL number 1" in out, (out, err)
    finally:
        holder.close()
        if crl.poll() is None:
            crl.kill()
            crl.communicate()


# --- 3. a changed PIN sent once by a process family, not once by each forked worker --------------------------------
SPY = "/usr/lib/x86_64-linux-gnu/pkcs11-spy.so"  # OpenSC's PKCS#11 spy: logs every call to the module behind it
_FAMILY = r"""
import multiprocessing, os, sys
from certkit.store import CADirectory

ca = CADirectory(sys.argv[1]).open()
ca.unlock(os.environ["CERTKIT_PKCS11_PIN"])  # the parent logs in, as issue-batch's does before its workers fork
print("logged in", flush=True)
sys.stdin.readline()  # the token's PIN is changed meanwhile


def work(said):
    try:
        ca.key.sign(b"a test message")  # a forked child: it logs in again (the parent's session is not its own)
        said.put("signed")
    except Exception as exc:
        said.put(f"{type(exc).__name__}: {exc}")


ctx = multiprocessing.get_context("fork")
said = ctx.Queue()
workers = [ctx.Process(target=work, args=(said,)) for _ in range(int(sys.argv[2]))]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join(120)
for _ in workers:
    print(said.get(timeout=10), flush=True)
"""


def test_a_pin_changed_under_forked_workers_is_sent_wrong_once_by_all_of_them(tmp_path: Path, token) -> None:
    """The parent logged in, the token's PIN was changed, then three workers were forked (issue-batch --jobs 3;
    each logs in again, as a worker does whenever the token closed its session): the old PIN reaches the token
    once (the PKCS#11 spy's log), the other workers refuse to send it, saying it was refused earlier; was: each
    worker sent it, three wrong PINs, where a token that locks after three is then locked for every host."""
    import subprocess
    import sys

    from test_team_hsm import init_token_ca

    from conftest import certkit_env

    if not Path(SPY).exists():
        pytest.skip("OpenSC's pkcs11-spy is not installed")
    spy_log = tmp_path / "spy.log"
    spying = {"PKCS11SPY": token.module, "PKCS11SPY_OUTPUT": str(spy_log)}
    os.environ.update(spying)  # init-ca (in this process or not) loads the spy too
    try:
        init_token_ca(tmp_path, type(token)(**{**token.__dict__, "module": SPY}))
    finally:
        for name in spying:
            os.environ.pop(name, None)
    family = subprocess.Popen([sys.executable, "-c", _FAMILY, str(tmp_path / "ca"), "3"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=certkit_env(CERTKIT_PKCS11_PIN=token.pin, **spying))
    try:
        assert family.stdout.readline() == "logged in\n", family.communicate()
        changed = token.tool("--change-pin", "--new-pin", "55501234")  # an operator, from another process
        assert changed.returncode == 0, changed.stdout + changed.stderr
        out, err = family.communicate("\n", timeout=180)
    finally:
        if family.poll() is None:
            family.kill()
            family.communicate()
    assert family.returncode == 0, (out, err)
    said = out.splitlines()
    assert len(said) == 3 and not any(line == "signed" for line in said), said
    assert sum("refused the PIN this process logged in with before" in line for line in said) == 1, said
    assert sum("or another worker of this command), so it is not sent again" in line for line in said) == 2, said
    assert spy_log.read_text(errors="replace").count("CKR_PIN_INCORRECT") == 1


# --- 4. a server that accepts connections and never answers ---------------------------------------------------------
def test_a_hung_server_is_said_to_be_hung_not_unreachable(tmp_path: Path) -> None:
    """The postmaster stopped (SIGSTOP: a hung server; the kernel still accepts its TCP connections): a command gives
    up after connect_timeout saying the server did not answer in 10 s and how to check it (was: "cannot be reached:
    connection timeout expired.", which sends one to the network and says nothing to do)."""
    import signal

    from conftest import PASSPHRASE, certkit_env, run_certkit
    from team_fixtures import started_postgres

    with started_postgres() as pg:
        url = pg.create_database("hung")
        env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, **pg.env())
        run_certkit("init-ca", "--name", "Hung CA", "--inventory", url, env=env, check=True)
        postmaster = int((pg.base / "data" / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGSTOP)
        try:
            listed = run_certkit("list", env=env)
        finally:
            os.kill(postmaster, signal.SIGCONT)
        assert listed.returncode == 1, listed
        assert listed.stderr == (f"Error: The inventory {url} did not answer within 10 s (connection timeout "
                                 "expired): the server is down, hung or overloaded, or the network to it drops "
                                 "packets; check it (pg_isready -h HOST -p PORT), then try again.\n"), listed.stderr
