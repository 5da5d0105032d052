"""The twenty-second round's team findings (audit team, round twenty-two): a PostgreSQL inventory shared by hosts,
and a CA key in a PKCS#11 token.

1. ``renew --install-timer``: of libpq's connection variables, those that only demand more of the server
   ($PGCHANNELBINDING, $PGREQUIREAUTH, $PGSSLMINPROTOCOLVERSION, $PGSSLCERTMODE, $PGREQUIREPEER...) were not carried
   into the unit or the crontab line, nor into the trial run: the timer connected with less than the shell insisted
   on (no channel binding, a password sent in clear), and installing said nothing. Every variable libpq reads but
   $PGPASSWORD is carried now.
2. A connection refused for what sslmode, channel_binding, gssencmode or target_session_attrs demand was said to be
   "the URL's" demand when $PGSSLMODE, $PGCHANNELBINDING... (or a service) made it: the error now names where it came
   from.
3. A command given another CA's inventory (a wrong $CERTKIT_INVENTORY_URL) of an older schema migrated it, and
   settled its pending rows, before refusing it as another CA's: that CA's hosts, on the older certkit, were then
   locked out of their own inventory. Whose inventory it is is now checked first.
4. A role without USAGE on the schema that holds the inventory (PostgreSQL leaves such a schema out of name lookup)
   was told the database "holds no certkit inventory (its tables are missing) ... or restore it from a backup": it
   is now told the schema and the GRANT it needs.
5. Two CAs in one database: a second CA's tables in a schema named as the role (options=-csearch_path=certkit) come
   first in the default search_path ("$user", public) of the first CA, which was then told its inventory "belongs to
   another CA ...; check the URL", of a URL that had not changed. It is now told which schema the search_path found,
   which schema holds its own inventory, and the options= that names it.
6. A PIN file "PIN \n" (a blank before the newline) sent "PIN " to the token, which refused it (a try of the few
   before it locks) and was said only to have "refused the PIN": the error now says that the PIN sent began or ended
   with white space, which went to the token as part of it.
"""

from __future__ import annotations

import os
from pathlib import Path

from test_audit7_team import run_as_cron
from test_team_hsm import _real_processes  # noqa: F401 (an autouse fixture: certkit runs as real processes)

from conftest import PASSPHRASE, certkit_env, run_certkit


# --- 1. the timer connects as the shell insists ---------------------------------------------------------------------
def _tls_on(server, tmp_path: Path, on: bool) -> None:
    """The private server ``server`` with TLS on (a certificate certkit issued for 127.0.0.1) or off, reloaded."""
    import shutil

    from team_postgres import _run_as

    data = server.base / "data"
    if on and not (data / "server.key").exists():
        env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "tls-ca"), HOME=str(tmp_path))
        run_certkit("init-ca", "--name", "Database TLS", "--no-passphrase", env=env, check=True)
        run_certkit("issue-server", "127.0.0.1", "--out", tmp_path / "tls", env=env, check=True)
        shutil.copy(tmp_path / "tls" / "fullchain.pem", data / "server.crt")
        shutil.copy(tmp_path / "tls" / "privkey.pem", data / "server.key")
        if (user := _run_as()) is not None:
            for name in ("server.crt", "server.key"):
                os.chown(data / name, user.pw_uid, user.pw_gid)
    with server.connect() as conn:
        conn.execute(f"ALTER SYSTEM SET ssl = {'on' if on else 'off'}")
    server.reload()  # a session opened next has the new setting


def test_the_timer_insists_on_what_libpqs_variables_insist_on(tmp_path: Path) -> None:
    """The shell sets $PGCHANNELBINDING=require (and $PGREQUIREAUTH=scram-sha-256): the server speaks TLS, a timer
    is installed, then the server answers without TLS (a TLS-stripping peer, a server whose TLS was turned off).
    `certkit list` refuses to connect without channel binding; the crontab line had no $PGCHANNELBINDING (nor
    $PGREQUIREAUTH) and connected anyway, the password exchange without TLS: it now carries both and refuses as
    the shell does. Every connection variable of libpq's PQconndefaults but the password is carried."""
    from psycopg import pq

    from certkit.db_postgres_pool import close_idle
    from certkit.fleet.timer_env import CARRIED_ENVIRONMENT

    from team_fixtures import started_postgres

    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "pass").write_text(PASSPHRASE + "\n")
    os.chmod(tmp_path / "pass", 0o600)
    with started_postgres() as server:
        _tls_on(server, tmp_path, True)
        url = server.create_database("bind")
        env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(home), PGCHANNELBINDING="require",
                          PGREQUIREAUTH="scram-sha-256", **server.env())
        run_certkit("init-ca", "--name", "Bound", "--inventory", url, "--passphrase-file", tmp_path / "pass",
                    env=env, check=True)
        proc = run_certkit("renew", "--install-timer", "--cron", "--passphrase-file", tmp_path / "pass", env=env,
                           cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        line = proc.stdout.strip().splitlines()[-1]
        assert " PGCHANNELBINDING=require " in line and " PGREQUIREAUTH=scram-sha-256 " in line, line
        assert run_as_cron(line, home).returncode == 0
        _tls_on(server, tmp_path, False)
        listed = run_certkit("list", env=env, cwd=tmp_path)
        assert listed.returncode == 1 and "channel binding required, but SSL not in use" in listed.stderr, listed
        ran = run_as_cron(line, home)
        assert ran.returncode == 1, ran.stdout + ran.stderr
        assert "channel binding required, but SSL not in use" in ran.stderr, ran.stderr
        close_idle()

    secret = {o.envvar.decode() for o in pq.Conninfo.get_defaults() if o.envvar and o.dispchar == b"*"}
    read = {o.envvar.decode() for o in pq.Conninfo.get_defaults() if o.envvar} - secret
    assert secret == {"PGPASSWORD"}, secret
    assert read - set(CARRIED_ENVIRONMENT) == set(), read - set(CARRIED_ENVIRONMENT)
    assert not secret & set(CARRIED_ENVIRONMENT)


def test_a_demand_of_libpqs_variable_is_not_said_to_be_the_urls(tmp_path: Path, pg_ca) -> None:
    """The server offers no TLS; $PGCHANNELBINDING=require, $PGSSLMODE=require, $PGTARGETSESSIONATTRS=standby in the
    environment, none in the URL: the error names the variable (was: "the URL's channel_binding=require cannot be
    met", "the URL's sslmode requires it", "the URL's target_session_attrs", of a URL that sets none of them)."""
    from conftest import assert_clean_error

    for variable, said in (("PGCHANNELBINDING=require", "but $PGCHANNELBINDING=require cannot be met: "),
                           ("PGSSLMODE=require", "does not offer TLS, and $PGSSLMODE=require requires it: "),
                           ("PGTARGETSESSIONATTRS=standby", "not the kind of server $PGTARGETSESSIONATTRS=standby "
                                                            "asks for: ")):
        name, value = variable.split("=")
        proc = run_certkit("list", env=dict(pg_ca, **{name: value}), cwd=tmp_path)
        assert_clean_error(proc, said)
        assert "the URL's" not in proc.stderr, proc.stderr


# --- 3. another CA's inventory is refused before it is migrated -----------------------------------------------------
def test_another_cas_older_inventory_is_refused_before_it_is_migrated(tmp_path: Path, postgres_server, postgres_url,
                                                                       pg_ca, monkeypatch) -> None:
    """$CERTKIT_INVENTORY_URL names, by mistake, another CA's inventory, of schema version 2 (its hosts run an older
    certkit): `certkit list` refuses it as another CA's, and leaves it at version 2 (was: migrated it to version 3,
    then refused it: the other CA's hosts were then told their inventory "was written by a newer certkit"). The same
    for an SQLite inventory file of another CA directory, and for what `serve` and `verify` read of the CAs an
    inventory records (anchors.recorded_cas: it read another CA's records, after migrating them)."""
    from conftest import assert_clean_error

    other = postgres_server.create_database("other")
    other_env = dict(pg_ca, CERTKIT_CA_DIR=str(tmp_path / "other"))
    run_certkit("init-ca", "--name", "Other CA", "--inventory", other, "--no-passphrase", env=other_env, check=True)
    run_certkit("issue-server", "a.example", "--out", tmp_path / "a", env=other_env, check=True)
    with postgres_server.connect(other.rsplit("/", 1)[1]) as conn:  # version 2, as test_team_postgres makes one
        conn.execute("ALTER TABLE certificates DROP COLUMN sink, DROP COLUMN writer, DROP COLUMN keyed")
        conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    proc = run_certkit("list", env=dict(pg_ca, CERTKIT_INVENTORY_URL=other), cwd=tmp_path)
    assert_clean_error(proc, f"The inventory {other} belongs to another CA")
    with postgres_server.connect(other.rsplit("/", 1)[1]) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "2"
        assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'certificates' AND "
                            "column_name = 'sink'").fetchone()[0] == 0

    import sqlite3

    from certkit.inventory.schema import COLUMNS

    files = dict(pg_ca, CERTKIT_CA_DIR=str(tmp_path / "files"))
    run_certkit("init-ca", "--name", "File CA", "--no-passphrase", env=files, check=True)
    run_certkit("issue-server", "b.example", "--out", tmp_path / "b", env=files, check=True)
    inventory = tmp_path / "files" / "inventory.sqlite3"
    with sqlite3.connect(inventory) as conn:
        declared = ", ".join(c + (" TEXT PRIMARY KEY" if c == "serial" else "") for c in COLUMNS[2])
        conn.execute(f"CREATE TABLE v2 ({declared})")
        conn.execute(f"INSERT INTO v2 SELECT {', '.join(COLUMNS[2])} FROM certificates")
        conn.execute("DROP TABLE certificates")
        conn.execute("ALTER TABLE v2 RENAME TO certificates")
        conn.execute("PRAGMA user_version = 2")
    conn.close()
    proc = run_certkit("list", env=dict(pg_ca, CERTKIT_INVENTORY_URL=str(inventory)), cwd=tmp_path)
    assert_clean_error(proc, "belongs to another CA")
    with sqlite3.connect(inventory) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.close()
    from certkit.anchors import recorded_cas

    monkeypatch.setenv("CERTKIT_INVENTORY_URL", str(inventory))
    assert recorded_cas(tmp_path / "ca") is None
    with sqlite3.connect(inventory) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.close()


# --- 4. a schema the role may not use hides the inventory: said, not "missing, restore it from a backup" -------------
def test_an_inventory_in_a_schema_the_role_may_not_use_is_not_said_to_be_missing(tmp_path: Path, postgres_server,
                                                                                postgres_url, pg_ca) -> None:
    """A reader role may SELECT the tables, but USAGE on the schema public was revoked from PUBLIC: `certkit list` and
    `check` said "holds no certkit inventory (its tables are missing); ... or restore it from a backup" of a
    database that holds it; they now name the schema and the GRANT USAGE it needs. Granted, list works."""
    from conftest import assert_clean_error

    database = postgres_url.rsplit("/", 1)[1]
    role = f"hidden_{database}"  # roles are the cluster's: one of this database's own
    with postgres_server.connect(database) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'reader-password'")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
    url = postgres_url.replace("//certkit@", f"//{role}@")
    env = dict(pg_ca, CERTKIT_INVENTORY_URL=url, PGPASSWORD="reader-password")
    said = (f"The inventory {url} may not be used by this database user: its tables are in the schema public of its "
            f"search_path, which the role may not use; GRANT USAGE ON SCHEMA public TO {role} ")
    for args in (["list"], ["check"]):
        proc = run_certkit(*args, env=env, cwd=tmp_path)
        if args == ["list"]:
            assert_clean_error(proc, said)
        else:
            assert proc.returncode == 1 and f"ERROR   inventory  {said}" in proc.stdout, proc.stdout + proc.stderr
        assert "missing" not in proc.stdout + proc.stderr and "backup" not in proc.stdout + proc.stderr
    with postgres_server.connect(database) as conn:
        conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
    proc = run_certkit("list", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


# --- 5. two CAs in one database: a role-named schema comes first in the search_path ---------------------------------
def test_a_second_cas_schema_named_as_the_role_is_said_to_hide_the_first_cas(tmp_path: Path, postgres_server,
                                                                             postgres_url, pg_ca) -> None:
    """The first CA's tables are in public; a second CA is made in the schema certkit (the role's name), which the
    default search_path ("$user", public) now puts first: the first CA's `list` and `check` name both schemas and the
    URL's options= that finds its own (was: "belongs to another CA ...; check the URL in certkit-ca.json", of a URL
    no one changed); with that options=, list works again."""
    from conftest import assert_clean_error

    database = postgres_url.rsplit("/", 1)[1]
    run_certkit("issue-server", "first.example", "--out", tmp_path / "first", "--passphrase-file", tmp_path / "pass",
                env=pg_ca, check=True)
    with postgres_server.connect(database) as conn:
        conn.execute("CREATE SCHEMA certkit")
    second = dict(pg_ca, CERTKIT_CA_DIR=str(tmp_path / "second"))
    run_certkit("init-ca", "--name", "Second CA", "--inventory", postgres_url + "?options=-csearch_path%3Dcertkit",
                "--no-passphrase", env=second, check=True)
    said = (f"The inventory {postgres_url} belongs to another CA (its CA certificate fingerprint is ")
    hint = ("its tables are those of the schema certkit, the first of the search_path that holds them; this CA's are "
            "in the schema public of the same database: name that schema in the URL (options=-csearch_path%3Dpublic)")
    proc = run_certkit("list", env=pg_ca, cwd=tmp_path)
    assert_clean_error(proc, said)
    assert hint in proc.stderr, proc.stderr
    proc = run_certkit("check", env=pg_ca, cwd=tmp_path)
    assert proc.returncode == 1 and hint in proc.stdout, proc.stdout + proc.stderr
    proc = run_certkit("list", env=dict(pg_ca, CERTKIT_INVENTORY_URL=postgres_url + "?options=-csearch_path%3Dpublic"),
                       cwd=tmp_path)
    assert proc.returncode == 0 and "first.example" in proc.stdout, proc.stdout + proc.stderr


# --- 6. a PIN with a blank around it: said when the token refuses it -------------------------------------------------
def test_a_refused_pin_with_a_blank_around_it_is_said_so(tmp_path: Path, token) -> None:
    """`--passphrase-file` holds "PIN \\n", $CERTKIT_PKCS11_PIN " PIN": the token refuses each (a try it counts), and
    the error says the PIN sent began or ended with white space (was: "refused the PIN" alone); the PIN without it
    signs."""
    from test_team_hsm import init_token_ca

    from conftest import assert_clean_error

    init_token_ca(tmp_path, token)
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"))
    (tmp_path / "pin").write_text(token.pin + " \n")
    os.chmod(tmp_path / "pin", 0o600)
    said = (f"The token '{token.label}' refused the PIN (tokens lock after a few wrong PINs; certkit does not retry). "
            "The PIN sent began or ended with white space, which went to the token as part of it: remove it if it is "
            "no part of the PIN.")
    proc = run_certkit("issue-server", "a.example", "--out", tmp_path / "a", "--passphrase-file", tmp_path / "pin",
                       env=env, cwd=tmp_path)
    assert_clean_error(proc, said)
    proc = run_certkit("issue-server", "a.example", "--out", tmp_path / "a", env=dict(env, CERTKIT_PKCS11_PIN=" "
                                                                                      + token.pin), cwd=tmp_path)
    assert_clean_error(proc, said)
    assert not (tmp_path / "a").exists()
    proc = run_certkit("issue-server", "a.example", "--out", tmp_path / "a", "--passphrase-file", token.pin_file,
                       env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
