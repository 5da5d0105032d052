"""Round thirteen's team findings (audit team14):

2. ``init-ca --reuse-key`` was offered for "a root's renewal", yet the new CA's inventory starts empty: the
   warning and the docs now say that the first CA's revocations and CRL numbers do not carry over.
3. a secret in an existing CA's inventory URL is refused naming where the URL came from (certkit-ca.json, or
   $CERTKIT_INVENTORY_URL), not "remove it from the URL" that nobody typed.
4. a password file others can read: libpq's own WARNING line is spared, and the one Error: line says that the
   file was ignored for its mode (not "none was found").
5. several init-ca racing for one empty database: the losers are told that another CA took it, not that a
   duplicate key was recorded and to try again.
7. a PIN (or a new passphrase) ending in a lone carriage return is said to, not "several lines".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import PASSPHRASE, REPO, assert_clean_error, certkit_env, run_certkit


@pytest.fixture(autouse=True)
def _real_processes(monkeypatch):
    """A PKCS#11 login belongs to a process, and libpq writes to the process's stderr: real ones here."""
    monkeypatch.setenv("CERTKIT_TEST_SUBPROCESS", "1")


# --- finding 3: a secret in an existing CA's URL is refused naming where the URL is ---------------
def test_a_secret_in_an_existing_cas_url_names_its_source(tmp_path, postgres_server, postgres_url, pg_ca):
    copy = tmp_path / "capw"
    shutil.copytree(tmp_path / "ca", copy)
    config = copy / "certkit-ca.json"
    data = json.loads(config.read_text())
    data["inventory"] = data["inventory"].replace("certkit@", "certkit:s3cretpw@")
    config.write_text(json.dumps(data))
    for args in (["list"], ["list", "--json"], ["crl", "--out", tmp_path / "x.crl"]):
        proc = run_certkit(*args, "--ca-dir", copy, env=pg_ca)
        assert_clean_error(proc, f"The inventory URL in {config} holds a password")
        assert f"Remove it from the URL in {config}" in proc.stdout + proc.stderr, proc.stderr
        assert "s3cretpw" not in proc.stdout + proc.stderr
    bad = postgres_url.replace("certkit@", "certkit:s3cretpw@") + "?sslpassword=x"
    proc = run_certkit("list", env=dict(pg_ca, CERTKIT_INVENTORY_URL=bad))
    assert_clean_error(proc, "The inventory URL $CERTKIT_INVENTORY_URL holds a password and sslpassword")
    assert "Remove them from $CERTKIT_INVENTORY_URL" in proc.stderr and "s3cretpw" not in proc.stderr
    # A URL typed on init-ca keeps its words (it is the URL on that command line).
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "new", "--no-passphrase", "--inventory", bad, env=pg_ca)
    assert_clean_error(proc, "Remove them from the URL")


# --- finding 4: a password file others can read -----------------------------------------------
def test_a_pgpass_others_can_read_is_named_in_one_line(tmp_path, postgres_server, pg_ca):
    passfile = tmp_path / "pgpass"
    shutil.copy(postgres_server.passfile, passfile)
    os.chmod(passfile, 0o644)
    env = dict(pg_ca, PGPASSFILE=str(passfile))
    proc = run_certkit("list", env=env, subprocess=True)
    assert_clean_error(proc, f"the password file {passfile} was ignored: it has mode 0644")
    assert f"chmod 600 {passfile}" in proc.stderr and "none was found" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # libpq's WARNING line spared
    # ~/.pgpass, read by libpq when $PGPASSFILE is unset, the same.
    home_pgpass = Path(env["HOME"]) / ".pgpass"
    shutil.copy(passfile, home_pgpass)
    os.chmod(home_pgpass, 0o640)
    home_env = {k: v for k, v in env.items() if k != "PGPASSFILE"}
    proc = run_certkit("list", env=home_env, subprocess=True)
    assert_clean_error(proc, f"the password file {home_pgpass} was ignored: it has mode 0640")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    # Once its mode is right it is read, as libpq reads it.
    os.chmod(passfile, 0o600)
    assert run_certkit("list", env=env, subprocess=True).returncode == 0
    # No file at all: "none was found", as before.
    proc = run_certkit("list", env=dict(env, PGPASSFILE=str(tmp_path / "absent")), subprocess=True)
    assert_clean_error(proc, "needs a password and none was found")


# --- finding 5: init-ca racing for one empty database -----------------------------------------
def _creator_holds_the_database(postgres_server, url: str, *, lock: bool):
    """Another process's inventory, created and not yet committed (holding the creation lock as a certkit
    does, or not as an older certkit did): returns its open connection."""
    import psycopg

    from certkit.db_postgres import CREATE_LOCK
    from certkit.inventory import schema

    conn = psycopg.connect(url, password=postgres_server.password)
    if lock:
        conn.execute(f"SELECT pg_advisory_xact_lock({CREATE_LOCK})")
    for statement in schema.create_statements("postgresql"):
        conn.execute(statement)
    return conn


def _wait_until_blocked(postgres_server, database: str) -> None:
    deadline = time.monotonic() + 60  # a certkit process to start and reach the lock, on a loaded machine
    with postgres_server.connect() as admin:
        while time.monotonic() < deadline:
            waiting = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND "
                                    "application_name LIKE 'certkit %%' AND wait_event_type = 'Lock'",
                                    (database,)).fetchone()[0]
            if waiting:
                return
            time.sleep(0.05)
    raise AssertionError("the second init-ca never waited for the first")


@pytest.mark.parametrize("lock", [True, False])
def test_an_init_ca_that_loses_the_race_is_told_another_ca_took_it(tmp_path, postgres_server, postgres_url, lock):
    database = postgres_url.rsplit("/", 1)[1]
    holder = _creator_holds_the_database(postgres_server, postgres_url, lock=lock)
    try:
        loser = subprocess.Popen([sys.executable, "-m", "certkit", "init-ca", "--ca-dir", str(tmp_path / "b"),
                                  "--no-passphrase", "--name", "Loser", "--inventory", postgres_url],
                                 env=certkit_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_until_blocked(postgres_server, database)
        holder.commit()
        out, err = loser.communicate(timeout=60)
    finally:
        holder.close()
    proc = subprocess.CompletedProcess(["certkit", "init-ca"], loser.returncode, out, err)
    assert_clean_error(proc, "already holds a certkit inventory")
    assert "duplicate" not in err and "try again" not in err, err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("lock", [True, False])
def test_creating_the_tables_after_another_ca_took_them_says_so(postgres_server, postgres_url, lock):
    from certkit.db_postgres import PostgresDatabase
    from certkit.db_postgres_pool import close_idle
    from certkit.errors import InventoryError
    from certkit.inventory import schema

    holder = _creator_holds_the_database(postgres_server, postgres_url, lock=lock)
    said: list[str] = []

    def create():
        try:
            PostgresDatabase(postgres_url).create(schema.create_statements("postgresql"))
        except InventoryError as exc:
            said.append(str(exc))

    thread = threading.Thread(target=create)
    try:
        thread.start()
        _wait_until_blocked(postgres_server, postgres_url.rsplit("/", 1)[1])
        holder.commit()
        thread.join(60)
    finally:
        holder.close()
        close_idle(postgres_url)
    assert len(said) == 1 and "already holds a certkit inventory" in said[0], said


def test_parallel_init_cas_on_one_database_give_one_ca_and_true_words(tmp_path, postgres_url):
    procs = [subprocess.Popen([sys.executable, "-m", "certkit", "init-ca", "--ca-dir", str(tmp_path / f"a{i}"),
                               "--no-passphrase", "--name", f"Racer {i}", "--inventory", postgres_url],
                              env=certkit_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(4)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert sorted(code for code, _ in results) == [0, 1, 1, 1], results
    for code, err in results:
        if code:
            assert "already holds a certkit inventory" in err and "duplicate" not in err, err


# --- finding 7: a PIN or new passphrase ending in a lone carriage return ----------------------
def test_a_pin_ending_in_a_carriage_return_is_said_so(tmp_path, token):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_PKCS11_PIN=token.pin)
    run_certkit("init-ca", "--name", "CR Root", "--key-uri", token.uri("root"), "--pkcs11-module", token.module,
                env=env, check=True)
    pin_file = tmp_path / "cr.pin"
    pin_file.write_bytes(token.pin.encode() + b"\r")
    pin_file.chmod(0o600)
    no_pin = {k: v for k, v in env.items() if k != "CERTKIT_PKCS11_PIN"}
    for proc in (run_certkit("crl", "--out", tmp_path / "x.crl", "--passphrase-file", pin_file, env=no_pin),
                 run_certkit("crl", "--out", tmp_path / "x.crl", env=dict(env, CERTKIT_PKCS11_PIN=token.pin + "\r"))):
        assert_clean_error(proc, "holds a PIN that ends in a carriage return")
        assert "several lines" not in proc.stderr and "blank line" not in proc.stderr
        assert "was not tried" in proc.stderr
    # A Windows line end (CRLF) is one line end, as before: taken.
    pin_file.write_bytes(token.pin.encode() + b"\r\n")
    run_certkit("crl", "--out", tmp_path / "x.crl", "--passphrase-file", pin_file, env=no_pin, check=True)


def test_a_new_passphrase_ending_in_a_carriage_return_is_said_so(tmp_path):
    passfile = tmp_path / "pass"
    passfile.write_bytes(PASSPHRASE.encode() + b"\r")
    passfile.chmod(0o600)
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "ca", "--passphrase-file", passfile)
    assert_clean_error(proc, "holds a secret that ends in a carriage return")
    assert "several lines" not in proc.stderr and not (tmp_path / "ca").exists()


# --- finding 2: --reuse-key says that the first CA's revocations do not carry over ---------------
def test_reuse_key_says_the_first_cas_revocations_do_not_carry_over(tmp_path, token):
    env = certkit_env(CERTKIT_PKCS11_PIN=token.pin)
    first = ["init-ca", "--name", "Team Root", "--key-uri", token.uri("root"), "--pkcs11-module", token.module]
    run_certkit(*first, "--ca-dir", tmp_path / "old", env=env, check=True)
    run_certkit("issue-client", "--ca-dir", tmp_path / "old", "alice", "--out", tmp_path / "alice", env=env,
                check=True)
    run_certkit("revoke", "--ca-dir", tmp_path / "old", tmp_path / "alice", "--reason", "keyCompromise", env=env,
                check=True)
    renewed = run_certkit(*first, "--ca-dir", tmp_path / "new", "--reuse-key", env=env)
    assert renewed.returncode == 0, renewed.stderr
    warning = " ".join(renewed.stderr.split())
    assert "its inventory starts empty" in warning and "None of that CA's revocations carry over" in warning
    assert "number from 1 again" in warning and "accepts the certificates that CA revoked" in warning
    # What the warning says is so: the new CA's CRL is number 1 and leaves alice out.
    crl = run_certkit("crl", "--ca-dir", tmp_path / "new", "--out", tmp_path / "new.crl", env=env, check=True)
    assert "Wrote CRL number 1 " in crl.stdout and "revoked      0 certificates" in crl.stdout, crl.stdout
    # The docs no longer offer it as a root's renewal without saying so.
    team = " ".join((REPO / "docs" / "team.md").read_text().split())
    assert "such as a root's renewal" not in team
    assert "none of that CA's revocations carry over" in team and "number from 1 again" in team
    init_ca = (REPO / "docs" / "init-ca.md").read_text()
    assert "revocations and CRL numbers do not carry over" in init_ca
    help_text = " ".join(run_certkit("init-ca", "--help").stdout.split())
    assert "revocations and CRL numbers do not carry over" in help_text
