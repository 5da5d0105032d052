"""Audit team7 (issue 12: the PostgreSQL inventory and the PKCS#11 CA key):

1. a kept connection the server closed (a restart, ``idle_session_timeout``) is replaced and the
   transaction run again, not reported as "cannot be reached"; a statement timeout is said as one;
2. ``renew --install-timer`` tries the database and the token in the environment the timer gets:
   paths made absolute, libpq's service file carried, a password only in ``$PGPASSWORD`` refused;
3. a ``password=`` in any spelling of a URL (``jdbc:postgresql://``, ``postgresql//``, after a ';')
   is never printed;
4. a token key that already signs a CA is not taken silently by a second ``init-ca``.

PostgreSQL and SoftHSM2 are started by the tests (tests/team_postgres.py, tests/team_hsm.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit

SECRET = "Sekr3t-AUDIT7-value"


@pytest.fixture(autouse=True)
def _real_processes(monkeypatch):
    """A PKCS#11 login and a libpq password prompt belong to a process: certkit runs as a real one here."""
    monkeypatch.setenv("CERTKIT_TEST_SUBPROCESS", "1")


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def set_for_database(server, url: str, setting: str) -> None:
    with server.connect() as conn:
        conn.execute(f'ALTER DATABASE "{database_name(url)}" SET {setting}')


def restart(server) -> None:
    """pg_ctl restart (fast: the sessions are terminated), with the options the server was started with."""
    server._pg("pg_ctl", "-D", str(server.base / "data"), "-l", str(server.base / "log"), "-w", "-t", "60",
               "-m", "fast", "restart")


# --- finding 1: a connection the server closed is replaced -------------------------------------
@pytest.mark.parametrize("readable_check", [True, False], ids=["probed", "raced"])
def test_a_kept_connection_closed_by_an_idle_timeout_is_replaced(postgres_server, postgres_url, monkeypatch,
                                                                 readable_check):
    """The server ends idle sessions after 1 s: the next read and the next write of this process
    take a new connection and succeed. ``raced``: the server's goodbye is not seen before the
    connection is used (it closes it just then), so the transaction itself runs again."""
    import certkit.db_postgres as dbp
    import certkit.db_postgres_pool as pool

    set_for_database(postgres_server, postgres_url, "idle_session_timeout = '1s'")
    if not readable_check:
        monkeypatch.setattr(pool, "_readable", lambda conn: False)
    database = dbp.PostgresDatabase(postgres_url)
    with database.transaction(write=True) as tx:
        tx.execute("CREATE TABLE t (n integer)")
    for n in range(2):
        time.sleep(1.6)
        with database.transaction() as tx:
            assert tx.execute("SELECT count(*) FROM t").fetchone()[0] == n
        time.sleep(1.6)
        with database.transaction(write=True) as tx:
            tx.execute("INSERT INTO t VALUES (?)", (n,))
    with database.transaction(readonly=True) as tx:
        assert tx.execute("SELECT count(*) FROM t").fetchone()[0] == 2
    pool.close_idle(postgres_url)


def test_a_restart_costs_nothing_once_it_is_over(postgres_server, postgres_url):
    """Several kept connections (threads), then a restart: every transaction after it succeeds."""
    import threading

    from certkit.db_postgres import PostgresDatabase
    from certkit.db_postgres_pool import close_idle

    database = PostgresDatabase(postgres_url)
    barrier = threading.Barrier(3)

    def hold() -> None:
        with database.transaction() as tx:
            barrier.wait(timeout=30)  # three connections open at once: three kept afterwards
            tx.execute("SELECT 1")

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    restart(postgres_server)
    for _ in range(4):
        with database.transaction(write=True) as tx:
            assert tx.execute("SELECT 1").fetchone()[0] == 1
        assert database.server_version()
    close_idle(postgres_url)


def test_bulk_renew_across_an_idle_timeout_renews_every_certificate(tmp_path, postgres_server, postgres_url):
    """audit (a): each hook outlasts the server's idle_session_timeout; no renewal fails for it."""
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Idle", "--inventory", postgres_url, env=env, check=True)
    for i in range(3):
        run_certkit("issue-server", f"i{i}.example", "--out", tmp_path / f"b{i}", env=env, check=True)
    set_for_database(postgres_server, postgres_url, "idle_session_timeout = '1s'")
    proc = run_certkit("renew", "--expiring", "400d", "--exec", "sleep 1.5", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Renewed 3 of 3" in proc.stdout + proc.stderr and "cannot be reached" not in proc.stderr


def test_a_statement_timeout_is_said_as_one(postgres_url):
    from certkit.db_postgres import PostgresDatabase
    from certkit.db_postgres_pool import close_idle
    from certkit.errors import InventoryError

    database = PostgresDatabase(postgres_url)
    with pytest.raises(InventoryError) as failed:
        with database.transaction(write=True) as tx:
            tx.execute("SET LOCAL statement_timeout = '50ms'")
            tx.execute("SELECT pg_sleep(2)")
    said = str(failed.value)
    assert "timed out" in said and "statement timeout" in said and "cannot be reached" not in said, said
    close_idle(postgres_url)


# --- finding 3: a password in any spelling is never printed ----------------------------------
def password_urls(host: str) -> list[str]:
    return [
        f"jdbc:postgresql://{host}/ca1?user=certkit&password={SECRET}",
        f"postgresql//certkit@{host}/ca1?password={SECRET}",
        f"postgresql://certkit@{host}/ca1?sslmode=require;password={SECRET}",
        f"postgresql://certkit@{host}/ca1?x=1;password={SECRET}",
        f"jdbc:postgresql://{host}/ca1;user=certkit;PassWord={SECRET}",
        f"postgresql//certkit:{SECRET}@{host}/ca1",
        f"postgres://certkit@{host}/ca1?application_name=a;%70assword={SECRET}&sslmode=disable",
        f"host={host} dbname=ca1 password = {SECRET}",
    ]


def test_shown_url_masks_every_password_spelling():
    from certkit.db_postgres import check_url, secrets_in, shown_url
    from certkit.errors import InventoryError

    for url in password_urls("127.0.0.1:5432"):
        assert SECRET not in shown_url(url) and "***" in shown_url(url), url
        assert secrets_in(url) == ["password"], url
        with pytest.raises(InventoryError) as refused:
            check_url(url)
        assert SECRET not in str(refused.value), url
    assert shown_url(f"postgresql://u@h/db?sslmode=require;password={SECRET}&application_name=x") == \
        "postgresql://u@h/db?sslmode=require;password=***&application_name=x"


def test_no_command_prints_a_password_from_any_spelling(tmp_path, postgres_server, postgres_url):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Masked", "--inventory", postgres_url, env=env, check=True)
    for url in password_urls(f"127.0.0.1:{postgres_server.port}"):
        for args in (["list"], ["list", "--json"], ["check"], ["check", "--json"]):
            proc = run_certkit(*args, env=dict(env, CERTKIT_INVENTORY_URL=url))
            assert proc.returncode != 0 and SECRET not in proc.stdout + proc.stderr, (url, args, proc.stderr)
        proc = run_certkit("init-ca", "--ca-dir", tmp_path / "other", "--inventory", url, env=env)
        assert proc.returncode != 0 and SECRET not in proc.stdout + proc.stderr, (url, proc.stderr)
        assert not (tmp_path / "other").exists()


# --- finding 4: a token key that signs a CA is not taken silently by another ------------------
def token_ca(tmp_path: Path, token, folder: str, obj: str, *extra: str, name: str = "T7 Root"):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / folder), CERTKIT_PKCS11_PIN=token.pin)
    return run_certkit("init-ca", "--name", name, "--key-uri", token.uri(obj), "--pkcs11-module", token.module,
                       *extra, env=env)


def test_a_key_that_signs_a_ca_is_refused_for_another(tmp_path, token):
    first = token_ca(tmp_path, token, "ca1", "root", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["key_generated"] is True
    # The CA certificate is kept in the token next to the key, as HSM tools keep one.
    listed = token.tool("--list-objects", "--type", "cert", login=False).stdout
    assert "label:      root" in listed and "CN=T7 Root" in listed, listed
    for name in ("T7 Root", "Another Root"):  # the same name or another: the same key either way
        again = token_ca(tmp_path, token, "ca2", "root", name=name)
        assert_clean_error(again, "already signs the CA 'CN=T7 Root'")
        assert len(again.stderr.strip().splitlines()) == 1, again.stderr
        assert "object=root-2" in again.stderr and "--reuse-key" in again.stderr
        assert not (tmp_path / "ca2").exists()
    # An intermediate on it is refused as before (the parent's own key).
    env = certkit_env(CERTKIT_PKCS11_PIN=token.pin, CERTKIT_PARENT_CA_PASSPHRASE=token.pin)
    inter = run_certkit("init-ca", "--ca-dir", tmp_path / "int", "--name", "Inter", "--parent-ca-dir",
                        tmp_path / "ca1", "--key-uri", token.uri("root"), "--pkcs11-module", token.module, env=env)
    assert inter.returncode != 0 and not (tmp_path / "int").exists()
    # Asked for explicitly: used, with a warning; another object= generates a new key.
    reused = token_ca(tmp_path, token, "ca3", "root", "--reuse-key")
    assert reused.returncode == 0 and "already signs the CA" in reused.stderr, reused.stderr
    other = token_ca(tmp_path, token, "ca4", "root-2", "--json")
    assert other.returncode == 0 and json.loads(other.stdout)["key_generated"] is True, other.stderr
    # --reuse-key names an existing key: none there is said, nothing generated.
    missing = token_ca(tmp_path, token, "ca5", "nothing-here", "--reuse-key")
    assert_clean_error(missing, "holds no private")
    assert not (tmp_path / "ca5").exists()
    assert "nothing-here" not in token.tool("--list-objects").stdout


def test_a_key_no_ca_uses_is_still_taken(tmp_path, token):
    """A key made by another tool (no certificate for it in the token) is used, as docs/team.md says;
    from then on it signs a CA, and a second init-ca on it is refused."""
    made = token.tool("--keypairgen", "--key-type", "EC:prime256v1", "--label", "made", "--id", "0c",
                      "--usage-sign", "--sensitive")
    assert made.returncode == 0, made.stderr
    first = token_ca(tmp_path, token, "ca1", "made", "--json")
    assert first.returncode == 0 and json.loads(first.stdout)["key_generated"] is False, first.stderr
    assert_clean_error(token_ca(tmp_path, token, "ca2", "made"), "already signs the CA")
    # The first CA still signs through its key (the certificate object changed nothing it uses).
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca1"), CERTKIT_PKCS11_PIN=token.pin)
    run_certkit("issue-server", "a.internal", "--out", tmp_path / "a", env=env, check=True)


# --- finding 2: the timer gets what made the database and the token work ------------------------
def cron_command(line: str) -> str:
    """The shell command of a crontab line (after its five time fields), as cron gives it to sh."""
    return line.split(" ", 5)[5].replace("\\%", "%")


def run_as_cron(line: str, home: Path) -> subprocess.CompletedProcess:
    """The crontab line's command as cron runs it: sh, in the home folder, HOME and a bare PATH only."""
    return subprocess.run(["/bin/sh", "-c", cron_command(line)], cwd=home, capture_output=True, text=True,
                          env={"HOME": str(home), "PATH": "/usr/bin:/bin", "LOGNAME": "root", "SHELL": "/bin/sh"},
                          timeout=120)


def test_a_password_only_in_pgpassword_is_refused(tmp_path, postgres_server, pg_ca):
    env = {k: v for k, v in pg_ca.items() if k != "PGPASSFILE"}
    env["PGPASSWORD"] = postgres_server.password
    for extra in (["--cron"], ["--unit-dir", str(tmp_path / "units")]):
        proc = run_certkit("renew", "--install-timer", "--passphrase-file", tmp_path / "pass", *extra, env=env,
                           cwd=tmp_path)
        assert_clean_error(proc, "only in $PGPASSWORD")
        assert "~/.pgpass" in proc.stderr and "PGPASSFILE" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert postgres_server.password not in proc.stdout + proc.stderr
        assert not (tmp_path / "units").exists()


def test_relative_paths_are_carried_absolute_and_the_line_works(tmp_path, postgres_server, pg_ca):
    import shutil

    shutil.copy(postgres_server.passfile, tmp_path / "pgpass")
    os.chmod(tmp_path / "pgpass", 0o600)
    env = dict(pg_ca, PGPASSFILE="pgpass")
    proc = run_certkit("renew", "--install-timer", "--cron", "--passphrase-file", "pass", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    assert f"PGPASSFILE={tmp_path / 'pgpass'}" in line, line
    ran = run_as_cron(line, Path(env["HOME"]))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    # The systemd unit carries the same, absolute.
    proc = run_certkit("renew", "--install-timer", "--unit-dir", tmp_path / "units", "--passphrase-file", "pass",
                       env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    service = (tmp_path / "units" / "certkit-renew.service").read_text()
    assert f'Environment="PGPASSFILE={tmp_path / "pgpass"}"' in service, service


def test_a_service_file_is_carried(tmp_path, postgres_server, postgres_url):
    """The URL names a service= of $PGSERVICEFILE: the timer gets the file (absolute), and its line works."""
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "svc.conf").write_text(f"[team]\nhost=127.0.0.1\nport={postgres_server.port}\nuser=certkit\n"
                                       f"dbname={database_name(postgres_url)}\n")
    (tmp_path / "pass").write_text(PASSPHRASE + "\n")
    os.chmod(tmp_path / "pass", 0o600)
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(home), PGSERVICEFILE="svc.conf")
    run_certkit("init-ca", "--name", "Svc", "--inventory", "postgresql:///?service=team", "--passphrase-file",
                "pass", env=env, cwd=tmp_path, check=True)
    proc = run_certkit("renew", "--install-timer", "--cron", "--passphrase-file", "pass", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    assert f"PGSERVICEFILE={tmp_path / 'svc.conf'}" in line, line
    ran = run_as_cron(line, home)
    assert ran.returncode == 0, ran.stdout + ran.stderr


def test_the_token_is_tried_in_the_timers_environment(tmp_path, token, softhsm, monkeypatch):
    """A relative $SOFTHSM2_CONF is carried absolute, and the line works from the home folder; a
    token the timer's environment cannot reach is refused at install, in one line."""
    home = tmp_path / "home"
    home.mkdir()
    first = token_ca(tmp_path, token, "ca", "root")
    assert first.returncode == 0, first.stderr
    relative = os.path.relpath(softhsm.conf, tmp_path)
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(home), SOFTHSM2_CONF=relative)
    proc = run_certkit("renew", "--install-timer", "--cron", "--passphrase-file", token.pin_file, env=env,
                       cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    assert f"SOFTHSM2_CONF={softhsm.conf}" in line, line
    ran = run_as_cron(line, home)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    # A configuration that names no token the CA's is in (here: none at all) is refused now.
    (tmp_path / "empty.conf").write_text(f"directories.tokendir = {tmp_path / 'none'}\nobjectstore.backend = file\n")
    (tmp_path / "none").mkdir()
    monkeypatch.setenv("SOFTHSM2_CONF", str(tmp_path / "empty.conf"))
    from certkit.errors import CertkitError
    from certkit.fleet.timer import check_environment

    with pytest.raises(CertkitError, match="The timer would fail in the environment it runs with") as refused:
        check_environment(["renew", "--ca-dir", str(tmp_path / "ca"), "--passphrase-file", str(token.pin_file)],
                          {"SOFTHSM2_CONF": str(tmp_path / "empty.conf")})
    assert token.pin not in str(refused.value)


# --- finding 5: a worker stopped on top of its own unmarked bundles counts them ----------------
def test_a_stopped_worker_reports_its_pending_bundles(monkeypatch):
    """issue-batch --jobs 2 across a restart: one worker fails, the parent sends SIGTERM to the
    other, whose bundles were written but not marked (its own inventory error, held off under the
    stop): the stop it reports counts them as pending, and the batch's report sums every worker's."""
    import signal

    from certkit.batch import runner
    from certkit.errors import InventoryError, Terminated

    failure = InventoryError("The inventory cannot be reached.")
    failure.certkit_delivered, failure.certkit_unmarked = 50, 50

    class Job:
        def run(self, report, claim):
            try:
                raise failure
            except InventoryError:
                raise Terminated(signal.SIGTERM) from None  # (its context stays: the stop landed on top)

    class Messages(list):
        put = list.append

        def close(self):
            pass

        def join_thread(self):
            pass

    for name in ("die_with_parent", "let_signals_in", "handle_stop_signals", "claimer"):
        monkeypatch.setattr(runner, name, lambda *args, **kwargs: None)
    monkeypatch.setattr(signal, "signal", lambda *args: None)
    messages = Messages()
    runner._worker(Job(), messages, os.getpid(), None)
    assert messages == [("stopped", {"stats": {"issued": 50, "unmarked": 50}})], messages
    result = runner.BatchResult()
    for stats in ({"issued": 200, "unmarked": 0}, {"issued": 50, "unmarked": 50}, {"issued": 50, "unmarked": 50}):
        result.add(stats)
    said = runner._stopped(result, "stopped")
    assert "300 bundles were written and recorded (100 of them as pending only" in said, said


def test_a_softhsm_that_cannot_read_its_configuration_is_told(tmp_path, token):
    """badinput7 #11: a wrong $SOFTHSM2_CONF was only "cannot be loaded: general error"."""
    assert token_ca(tmp_path, token, "ca", "hint").returncode == 0
    for conf in (str(tmp_path / "nowhere.conf"), ""):
        env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_PKCS11_PIN=token.pin, SOFTHSM2_CONF=conf)
        proc = run_certkit("issue-server", "h.example", "--out", tmp_path / "h", env=env, subprocess=True)
        assert_clean_error(proc, "cannot be loaded")
        assert "and the tokendir where its tokens are, from $SOFTHSM2_CONF" in proc.stderr, proc.stderr
        assert not (tmp_path / "h").exists()
