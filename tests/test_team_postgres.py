"""The inventory in a real PostgreSQL (started by the tests, tests/team_postgres.py): the CA
directory names it, the password is never in argv nor in a file certkit writes, failures are
said in words, an SQLite inventory moves there verified row by row, migrations, ACME's
non-durable writes, and pending rows settled safely by two processes at once.

The issuing, batch, renew, revoke, CRL and list tests run on PostgreSQL too: their
``[postgresql]`` runs (tests/team_fixtures.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from certkit.errors import CertkitError, InventoryError
from certkit.inventory import Inventory, Pending
from certkit.store import CADirectory

from conftest import PASSPHRASE, REPO, assert_clean_error, certkit_env, free_port, run_certkit
from team_terminal import run_on_terminal


@pytest.fixture(autouse=True)
def _real_processes(monkeypatch):
    """A PKCS#11 login and a libpq password prompt belong to a process: certkit runs as a real one here."""
    monkeypatch.setenv("CERTKIT_TEST_SUBPROCESS", "1")


@pytest.fixture
def env(tmp_path, postgres_url) -> dict[str, str]:
    """The CLI's environment: a CA directory, its passphrase, and libpq's PGPASSFILE."""
    return certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_init_ca_names_the_database_and_check_reports_it(tmp_path, env, postgres_url, postgres_server):
    data = json.loads(run_certkit("init-ca", "--name", "Team CA", "--inventory", postgres_url, "--json", env=env,
                                  check=True).stdout)
    ca_dir = tmp_path / "ca"
    assert data["inventory"] == postgres_url
    assert sorted(files_of(ca_dir)) == ["ca-key.pem", "ca.pem", "certkit-ca.json"]  # no inventory.sqlite3
    assert json.loads((ca_dir / "certkit-ca.json").read_text()) == {"inventory": postgres_url}
    # The password is in no file certkit wrote, and in no argument it was given.
    assert not any(postgres_server.password.encode() in body for body in files_of(ca_dir).values())
    run_certkit("issue-server", "api.internal", cwd=tmp_path, env=env, check=True)
    listed = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)
    assert [c["subject"] for c in listed["certificates"]] == ["CN=api.internal"]
    check = run_certkit("check", "--json", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    findings = {f["check"]: f for f in json.loads(check.stdout)["findings"]}
    assert findings["database"]["level"] == "ok" and "PostgreSQL 15" in findings["database"]["message"]
    assert findings["inventory"]["level"] == "ok"
    assert "1 certificate recorded" in findings["inventory"]["message"]
    assert "schema version 3 (current)" in findings["inventory"]["message"]
    # The server gone: check says so, and issuing refuses in words.
    moved = dict(env, CERTKIT_INVENTORY_URL=postgres_url.replace(f":{postgres_server.port}/", f":{free_port()}/"))
    check = run_certkit("check", "--json", env=moved)
    assert check.returncode == 1
    findings = {f["check"]: f for f in json.loads(check.stdout)["findings"]}
    assert findings["inventory"]["level"] == "error" and "cannot be reached" in findings["inventory"]["message"]
    assert_clean_error(run_certkit("issue-server", "b.internal", cwd=tmp_path, env=moved), "cannot be reached")
    assert not (tmp_path / "b.internal").exists()


def test_the_environment_names_the_inventory(tmp_path, env, postgres_url):
    """$CERTKIT_INVENTORY_URL is init-ca's --inventory when none is given, and certkit-ca.json keeps it."""
    run_certkit("init-ca", env=dict(env, CERTKIT_INVENTORY_URL=postgres_url), check=True)
    assert json.loads((tmp_path / "ca" / "certkit-ca.json").read_text()) == {"inventory": postgres_url}
    run_certkit("issue-client", "bob", cwd=tmp_path, env=env, check=True)
    assert CADirectory(tmp_path / "ca").inventory.count() == 1


def test_no_password_in_argv_nor_in_the_url(tmp_path, env, postgres_url, postgres_server):
    with_password = postgres_url.replace("certkit@", f"certkit:{postgres_server.password}@")
    proc = run_certkit("init-ca", "--inventory", with_password, env=env)
    assert_clean_error(proc, "holds a password")
    assert postgres_server.password not in proc.stderr
    assert not (tmp_path / "ca").exists()
    as_parameter = postgres_url + "?password=" + postgres_server.password
    assert_clean_error(run_certkit("init-ca", "--inventory", as_parameter, env=env), "holds a password")
    # a URL that also has an unreadable port: the password is still refused first, never repeated
    for odd in (with_password.replace("@127.0.0.1:", "@127.0.0.1:x"),
                as_parameter.replace("@127.0.0.1:", "@127.0.0.1:1,127.0.0.1:")):
        proc = run_certkit("init-ca", "--inventory", odd, env=env)
        assert_clean_error(proc, "holds a password")
        assert postgres_server.password not in proc.stderr
    run_certkit("init-ca", "--inventory", postgres_url, env=env, check=True)
    # Nor from the environment's override.
    assert_clean_error(run_certkit("list", env=dict(env, CERTKIT_INVENTORY_URL=with_password)), "holds a password")


def test_the_password_from_libpq_sources_or_a_prompt(tmp_path, env, postgres_url, postgres_server):
    run_certkit("init-ca", "--inventory", postgres_url, env=env, check=True)
    bare = {k: v for k, v in env.items() if not k.startswith("PG")}
    # None at all, and no terminal to ask on.
    assert_clean_error(run_certkit("list", env=bare), "needs a password and none was found")
    # PGPASSWORD; a wrong one is named as such.
    assert run_certkit("list", env=dict(bare, PGPASSWORD=postgres_server.password)).returncode == 0
    assert_clean_error(run_certkit("list", env=dict(bare, PGPASSWORD="wrong")), "refused the password")
    # A service file (libpq's pg_service.conf), named by the URL.
    service = tmp_path / "pg_service.conf"
    service.write_text(f"[team-ca]\nhost=127.0.0.1\nport={postgres_server.port}\nuser=certkit\n"
                       f"dbname={postgres_url.rsplit('/', 1)[1]}\npassword={postgres_server.password}\n")
    service.chmod(0o600)
    by_service = dict(bare, PGSERVICEFILE=str(service), CERTKIT_INVENTORY_URL="postgresql:///?service=team-ca")
    assert run_certkit("list", env=by_service).returncode == 0
    # A prompt on a terminal, once per command.
    code, shown = run_on_terminal([sys.executable, "-m", "certkit", "issue-client", "alice"], bare,
                                  [("Password for the inventory", postgres_server.password)], cwd=tmp_path)
    assert code == 0, shown
    assert shown.count("Password for the inventory") == 1 and postgres_server.password not in shown
    assert (tmp_path / "alice" / "cert.pem").exists()


def test_unusable_databases_are_refused_in_words(tmp_path, env, postgres_url, postgres_server):
    missing = postgres_url.rsplit("/", 1)[0] + "/nosuchdb"
    assert_clean_error(run_certkit("init-ca", "--inventory", missing, env=env), "create it first")
    assert not (tmp_path / "ca").exists()
    run_certkit("init-ca", "--inventory", postgres_url, env=env, check=True)
    # A second CA into the same database: refused, nothing created.
    other = dict(env, CERTKIT_CA_DIR=str(tmp_path / "other"))
    assert_clean_error(run_certkit("init-ca", "--inventory", postgres_url, env=other), "already holds a certkit")
    assert not (tmp_path / "other").exists()
    # Another CA's database named by the override: refused before anything is signed.
    run_certkit("init-ca", "--inventory", postgres_server.create_database(), env=other, check=True)
    crossed = dict(env, CERTKIT_INVENTORY_URL=json.loads((tmp_path / "other" / "certkit-ca.json").read_text())
                   ["inventory"])
    assert_clean_error(run_certkit("issue-server", "x.internal", cwd=tmp_path, env=crossed), "belongs to another CA")
    assert not (tmp_path / "x.internal").exists()
    # A database whose tables were dropped.
    with postgres_server.connect(postgres_url.rsplit("/", 1)[1]) as conn:
        conn.execute("DROP TABLE certificates")
    check = run_certkit("check", "--json", env=env)
    assert check.returncode == 1 and "holds no certkit inventory" in check.stdout


def _sqlite_ca_with_history(tmp_path: Path, env: dict) -> dict:
    """A CA on SQLite that issued, renewed, revoked and signed a CRL, with ACME state beside it."""
    from certkit.acme.db import Database
    from certkit.acme.state import AcmeState

    run_certkit("init-ca", "--name", "Moving CA", env=env, check=True)
    for name in ("web.internal", "db.internal"):
        run_certkit("issue-server", name, cwd=tmp_path, env=env, check=True)
    run_certkit("issue-client", "alice", cwd=tmp_path, env=env, check=True)
    run_certkit("renew", tmp_path / "web.internal", cwd=tmp_path, env=env, check=True)
    run_certkit("revoke", tmp_path / "alice", "--reason", "keyCompromise", env=env, check=True)
    run_certkit("crl", "--out", tmp_path / "crl-1.pem", env=env, check=True)
    state = AcmeState(Database(CADirectory(tmp_path / "ca").inventory))
    state.create_schema()
    state.create_account("thumb", "{}", ["mailto:ops@example.com"], True, None)
    return json.loads(run_certkit("list", "--json", "--status", "valid", env=env, check=True).stdout)


def test_inventory_migrate_moves_every_row(tmp_path, env, postgres_url):
    before = _sqlite_ca_with_history(tmp_path, env)
    everything = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]
    proc = run_certkit("inventory", "migrate", "--to", postgres_url, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["tables"]["certificates"] == 4 and data["tables"]["acme_accounts"] == 1
    assert data["verified"] == data["rows"] and data["resumed"] is False
    ca_dir = tmp_path / "ca"
    assert json.loads((ca_dir / "certkit-ca.json").read_text()) == {"inventory": postgres_url}
    # The same inventory, now read from PostgreSQL: every row, the renewal link, the revocation.
    assert json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"] == everything
    assert json.loads(run_certkit("list", "--json", "--status", "valid", env=env, check=True).stdout) == before
    inventory = CADirectory(ca_dir).inventory
    assert inventory.db.dialect == "postgresql" and inventory.count() == 4
    from certkit.acme.db import Database
    from certkit.acme.state import AcmeState

    assert AcmeState(Database(inventory)).account_by_thumbprint("thumb").contact == ["mailto:ops@example.com"]
    # CRL numbers go on where they were; new certificates land in PostgreSQL.
    run_certkit("crl", "--out", tmp_path / "crl-2.pem", env=env, check=True)
    crl = x509.load_pem_x509_crl((tmp_path / "crl-2.pem").read_bytes())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2 and len(crl) == 1
    run_certkit("issue-server", "new.internal", cwd=tmp_path, env=env, check=True)
    assert inventory.count() == 5
    # acme serve finds a certificate by its key with PostgreSQL's byte search (an account key is never one)
    from certkit.keys import public_key_der

    new = x509.load_pem_x509_certificate((tmp_path / "new.internal" / "cert.pem").read_bytes())
    found = AcmeState(Database(inventory)).certificate_of_key(public_key_der(new.public_key()))
    assert found is not None and found[1:] == ("server", "valid")
    # The old file stays as a backup and refuses every write, naming where the inventory went.
    old = Inventory(ca_dir / "inventory.sqlite3")
    assert old.count() == 4
    with pytest.raises(InventoryError, match="moved to postgresql://"):
        old.revoke(everything[0]["serial"])
    # Again: it is there already.
    assert_clean_error(run_certkit("inventory", "migrate", "--to", postgres_url, env=env), "already in PostgreSQL")
    # And certkit check is happy with the result.
    assert run_certkit("check", env=env).returncode == 0


def test_inventory_migrate_refusals_and_resume(tmp_path, env, postgres_url, postgres_server):
    _sqlite_ca_with_history(tmp_path, env)
    ca_dir = tmp_path / "ca"
    before = files_of(ca_dir)
    # Into a database that holds another CA's inventory: refused, nothing changed.
    other = dict(env, CERTKIT_CA_DIR=str(tmp_path / "other"))
    run_certkit("init-ca", "--inventory", postgres_url, env=other, check=True)
    assert_clean_error(run_certkit("inventory", "migrate", "--to", postgres_url, env=env), "of another CA")
    assert files_of(ca_dir) == before
    # While a certificate is being issued (a pending row of a live writer): refused.
    target = postgres_server.create_database()
    ca = CADirectory(ca_dir).load(PASSPHRASE.encode())
    signed = ca.sign(__import__("certkit.issuing", fromlist=["server_request"]).server_request(["p.internal"]))
    ca.inventory.record_pending([Pending(signed.cert, "server", str(tmp_path / "p"))])
    assert_clean_error(run_certkit("inventory", "migrate", "--to", target, env=env), "being issued right now")
    ca.inventory.mark_abandoned([signed.serial_hex])
    # While an ACME server runs on the inventory: refused (the server would go on with the old file,
    # which refuses every write once the inventory has moved); once it has stopped, the move goes on.
    from acme_helpers import AcmeServer

    server = AcmeServer("--allow-domain", "acme.test", env=env)
    try:
        assert_clean_error(run_certkit("inventory", "migrate", "--to", target, env=env), "certkit acme serve")
        assert not (ca_dir / "certkit-ca.json").exists()  # nothing moved
    finally:
        server.stop()
    recorded = CADirectory(ca_dir).inventory.count()  # the server's own certificate is one more
    # Interrupted after the database committed (before certkit-ca.json was written): run again.
    from certkit.db_postgres import PostgresDatabase, copy_inventory
    from certkit.store_inventory import BINDING

    fingerprint = ca.cert.fingerprint(__import__("cryptography.hazmat.primitives.hashes",
                                                 fromlist=["SHA256"]).SHA256()).hex()
    from certkit.acme.state import SCHEMA as ACME_SCHEMA

    with ca.inventory.db.transaction(write=True) as tx:
        copy_inventory(tx, PostgresDatabase(target), (BINDING, fingerprint), ACME_SCHEMA)
    data = json.loads(run_certkit("inventory", "migrate", "--to", target, "--json", env=env, check=True).stdout)
    assert data["resumed"] is True and data["tables"]["certificates"] == recorded == 6
    assert CADirectory(ca_dir).inventory.count() == recorded


def test_schema_migrations_run_on_postgres_once(tmp_path, env, postgres_url, postgres_server):
    """A version-2 inventory (without sink, writer, keyed; odd-length serials) is migrated on
    PostgreSQL as on SQLite, by one of two commands that open it at the same moment."""
    run_certkit("init-ca", "--inventory", postgres_url, env=env, check=True)
    run_certkit("issue-server", "a.internal", cwd=tmp_path, env=env, check=True)
    with postgres_server.connect(postgres_url.rsplit("/", 1)[1]) as conn:
        serial = conn.execute("SELECT serial FROM certificates").fetchone()[0]
        conn.execute("ALTER TABLE certificates DROP COLUMN sink, DROP COLUMN writer, DROP COLUMN keyed")
        conn.execute("UPDATE certificates SET serial = 'ABC', der = der")  # an odd length, as version 2 wrote
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    check = run_certkit("check", "--json", env=env)
    assert "migrates it to version 3" in check.stdout
    procs = [subprocess.Popen([sys.executable, "-m", "certkit", "list", "--json", "--status", "abandoned"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        # the DER no longer matches the doctored serial: listed as damaged, but the schema is migrated
        assert "Traceback" not in err
    with postgres_server.connect(postgres_url.rsplit("/", 1)[1]) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "3"
        assert conn.execute("SELECT serial, sink, keyed FROM certificates").fetchone() == ("0ABC", "folder", 1)
    assert serial


def test_acme_non_durable_writes_and_read_only_transactions(postgres_url):
    from certkit.db_postgres import PostgresDatabase

    db = PostgresDatabase(postgres_url)
    with db.transaction(write=True, durable=False) as tx:
        assert tx.execute("SHOW synchronous_commit").fetchone()[0] == "off"
    with db.transaction(write=True) as tx:
        assert tx.execute("SHOW synchronous_commit").fetchone()[0] == "on"  # SET LOCAL: that transaction only
        tx.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    with pytest.raises(InventoryError, match="read-only"), db.transaction(readonly=True) as tx:
        tx.execute("INSERT INTO t (k) VALUES (?)", ("x",))
    with pytest.raises(InventoryError, match="refused a duplicate"), db.transaction(write=True) as tx:
        tx.executemany("INSERT INTO t (k) VALUES (?)", [("y",), ("y",)])
    with db.transaction() as tx:  # nothing of the failed transactions stayed
        assert tx.execute("SELECT count(*) FROM t").fetchone()[0] == 0
        # '?' inside a literal stays; '%' is no placeholder
        assert tx.execute("SELECT '?' || ?, 7 % 4", ("!",)).fetchone() == ("?!", 3)


_SETTLE = """
import sys
from certkit.inventory import Inventory
print(*Inventory(sys.argv[1]).reconcile())
"""


def test_two_processes_settle_pending_rows_each_row_once(tmp_path, postgres_url):
    """Pending rows of a dead writer, settled by two processes at once: each row judged by one of
    them (FOR UPDATE SKIP LOCKED), so their counts add up to the number of rows. Rows of a writer
    on another host stay pending unless their bundle is visible here."""
    from certkit.ca import CA
    from certkit.inventory.reconcile import _host

    inventory = Inventory(postgres_url)
    inventory.create()
    ca = CA.create("Settling CA")
    ca.inventory = inventory
    from certkit.issuing import server_request

    issued = [ca.sign(server_request([f"h{i}.internal"])) for i in range(120)]
    inventory.record_pending([Pending(one.cert, "server", str(tmp_path / f"h{i}")) for i, one in enumerate(issued)])
    for i, one in enumerate(issued[:60]):  # the first 60 were delivered before the writer died
        one.write(tmp_path / f"h{i}")
    with inventory.transaction(write=True) as tx:
        tx.execute("UPDATE certificates SET writer = ?", (f"{_host()} 4194304 1",))  # no such process
        for one in issued[100:]:  # 20 of a writer on another host, long ago; 10 of them delivered (shared disk)
            tx.execute("UPDATE certificates SET writer = 'elsewhere/boot 7 7', issued_at = '2020-01-01T00:00:00Z'"
                       " WHERE serial = ?", (one.serial_hex,))
    for i, one in enumerate(issued[100:110], start=100):
        one.write(tmp_path / f"h{i}")
    env = certkit_env(**{k: v for k, v in os.environ.items() if k.startswith("PG")})
    procs = [subprocess.Popen([sys.executable, "-c", _SETTLE, postgres_url], env=env, cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    counts = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        counts.append([int(n) for n in out.split()])
    assert sum(c[0] for c in counts) == 60 + 10 and sum(c[1] for c in counts) == 40
    status = {r["serial"]: r["status"] for r in inventory.rows()}
    assert [status[one.serial_hex] for one in issued] == ["valid"] * 60 + ["abandoned"] * 40 + ["valid"] * 10 + \
        ["pending"] * 10


def test_a_missing_driver_is_named(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_psycopg(name, *args, **kwargs):
        if name == "psycopg" or name.startswith("psycopg."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_psycopg)
    from certkit.db_postgres import PostgresDatabase

    with pytest.raises(CertkitError, match=r"pip install 'certkit\[team\]'"):
        PostgresDatabase("postgresql://certkit@127.0.0.1/x")


def test_inventory_migrate_refuses_a_database_that_is_not_empty_or_holds_a_stale_copy(tmp_path, env,
                                                                                      postgres_server):
    """--to names the EMPTY database: another application's tables there are refused; a copy an earlier,
    unfinished move left there, which the CA has since outgrown, is named as such, with the way out."""
    run_certkit("init-ca", "--name", "Moving CA", env=env, check=True)
    run_certkit("issue-server", "web.internal", cwd=tmp_path, env=env, check=True)
    ca_dir = tmp_path / "ca"
    busy = postgres_server.create_database()
    with postgres_server.connect(busy.rsplit("/", 1)[1]) as conn:
        conn.execute("CREATE TABLE users (id int PRIMARY KEY, name text)")
    proc = run_certkit("inventory", "migrate", "--to", busy, env=env)
    assert_clean_error(proc, "is not empty (it holds users)")
    assert not (ca_dir / "certkit-ca.json").exists()
    # An earlier move committed its copy and stopped before naming the database; the CA issued since.
    from cryptography.hazmat.primitives import hashes

    from certkit.acme.state import SCHEMA as ACME_SCHEMA
    from certkit.db_postgres import PostgresDatabase, copy_inventory
    from certkit.store_inventory import BINDING

    stale = postgres_server.create_database()
    ca = CADirectory(ca_dir).open()
    with ca.inventory.db.transaction(write=True) as tx:
        copy_inventory(tx, PostgresDatabase(stale), (BINDING, ca.cert.fingerprint(hashes.SHA256()).hex()),
                       ACME_SCHEMA)
    run_certkit("issue-server", "db.internal", cwd=tmp_path, env=env, check=True)
    proc = run_certkit("inventory", "migrate", "--to", stale, env=env)
    assert_clean_error(proc, "holds an earlier copy of this inventory")
    assert "Drop the database, create it empty again" in proc.stderr
    assert not (ca_dir / "certkit-ca.json").exists()
    fresh = postgres_server.create_database()
    run_certkit("inventory", "migrate", "--to", fresh, env=env, check=True)
    assert len(json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]) == 2
