"""Audit team8 #1: a PostgreSQL inventory that this host may only read (a standby, a SELECT-only role, a full
disk) made every reading command fail once a killed command had left a pending row: settling it needs a write.
As for a read-only SQLite file, the rows are now read as they are, with a warning that a command with write
access settles them; a command that writes still fails with its one Error line."""

from __future__ import annotations

import json

import pytest

from conftest import PASSPHRASE, certkit_env, run_certkit


@pytest.fixture(autouse=True)
def _real_processes(monkeypatch):
    monkeypatch.setenv("CERTKIT_TEST_SUBPROCESS", "1")


def test_a_role_that_may_only_read_lists_a_pending_row(tmp_path, postgres_url, postgres_server):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--inventory", postgres_url, env=env, check=True)
    issued = json.loads(run_certkit("issue-server", "ro.example", "--out", tmp_path / "ro", "--json", env=env,
                                    check=True).stdout)
    database = postgres_url.rsplit("/", 1)[1]
    with postgres_server.connect(database) as conn:
        # what a command killed between recording and marking leaves
        conn.execute("UPDATE certificates SET status = 'pending' WHERE serial = %s", (issued["serial"],))
        conn.execute("DROP ROLE IF EXISTS reader")
        conn.execute("CREATE ROLE reader LOGIN PASSWORD 'reader-pw'")
        conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader")
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{postgres_server.port}:*:reader:reader-pw\n")
    passfile.chmod(0o600)
    reader = dict(env, PGPASSFILE=str(passfile),
                  CERTKIT_INVENTORY_URL=postgres_url.replace("certkit@", "reader@"))
    for args in (["list"], ["list", "--json"]):
        proc = run_certkit(*args, env=reader)
        assert proc.returncode == 0, proc.stderr
        assert "cannot be written here, so the certificates it lists as pending were not settled" in proc.stderr
        assert "ro.example" in proc.stdout
    writing = run_certkit("issue-server", "w.example", "--out", tmp_path / "w", env=reader)
    assert writing.returncode == 1 and "may not be used by this database user" in writing.stderr, writing.stderr
    assert not (tmp_path / "w").exists()
    settled = run_certkit("list", "--json", env=env, check=True)  # the writer settles it: the bundle is there
    assert json.loads(settled.stdout)["certificates"][0]["status"] == "valid"


@pytest.mark.parametrize("query", ["sslmode=bogus", "nosuchoption=1"])
def test_a_url_parameter_libpq_refuses_is_said_to_be_one(tmp_path, postgres_url, query):
    """team8 #2: a bad parameter was reported as "cannot be reached", which sends one looking at the network."""
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--inventory", postgres_url, env=env, check=True)
    proc = run_certkit("list", env=dict(env, CERTKIT_INVENTORY_URL=f"{postgres_url}?{query}"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "is not valid:" in proc.stderr and "cannot be reached" not in proc.stderr, proc.stderr
