"""The twenty-sixth round's inventory findings (audit inventory, round twenty-six): a PostgreSQL inventory's URL
and what certkit says about the database behind it.

1. An inventory URL with sslkeylogfile= (libpq 18 writes every connection's TLS session keys to that file), with a
   parameter given twice (sslmode=verify-full&sslmode=disable, or &ssl=true: libpq takes the last, so the URL a
   reviewer reads as verify-full connects without checking the server), with gssencmode=require beside a verifying
   sslmode (GSSAPI instead of TLS: the certificate never checked) or with gssdelegation=1 (the user's Kerberos
   credentials handed to the server) was taken, from init-ca --inventory, inventory migrate --to, certkit-ca.json,
   $CERTKIT_INVENTORY_URL and the library alike. Each is now refused, naming the parameter and where it came from.
2. inventory migrate --to postgresql://HOST/postgres (and init-ca --inventory, CADirectory.move_inventory) put the
   inventory in the server's maintenance database, shared with every tool and role, silently; template1 (copied into
   every database created after) too; a URL with no database took $PGDATABASE or the user's name, whatever each host
   has. Each is now refused, saying why, before anything is written.
3. Two marks for one secret: an inventory URL's password was shown as '***', the user part of a URL given to probe,
   issue-*, verify --name or a hook as '...', the mark certkit's messages also write where they cut a long value
   short ('https://...@x.example/aaaa...'). Every message now writes '***' (certkit.text.HIDDEN).
4. A service file (service= in the URL, or $PGSERVICE) fills in what the URL leaves out: a service with sslkeylogfile=,
   gssdelegation=1 or gssencmode=require (beside the URL's sslmode=verify-full) was used as it is. It is now refused as
   the URL would be, naming the service and its file.
5. A password the server refused was said to be "check ~/.pgpass, $PGPASSFILE or $PGPASSWORD" whichever libpq took
   it from: a wrong $PGPASSWORD beside a right password file sent one to check a file libpq never read. The error
   now names the one place, in libpq's order: a service's password=, $PGPASSWORD, passfile=, $PGPASSFILE, ~/.pgpass.
6. So too libpq's variables, which apply where neither the URL nor its service sets the parameter: $PGGSSDELEGATION=1,
   $PGGSSENCMODE=require beside a verifying sslmode (the URL's or $PGSSLMODE's) were used as they were. Refused now,
   naming the variables to unset.
7. inventory migrate into a database holding inventory tables tied to no CA said "already holds a certkit inventory ;
   move this one into an empty database." (a blank before ';', neither what it holds nor that nothing was changed).
"""

from __future__ import annotations

import json

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit


def unsafe_urls(url: str, tmp_path) -> list[tuple[str, str]]:
    """``url`` with each parameter certkit refuses, in the spellings libpq reads, and what the refusal says."""
    keys = tmp_path / "keys.log"
    return [
        (f"{url}?sslkeylogfile={keys}", f"names sslkeylogfile={keys}: libpq"),
        (f"{url}?sslmode=prefer&ssl%6Beylogfile={keys}", "names sslkeylogfile="),  # libpq decodes the names
        (f"{url}?sslmode=verify-full&sslmode=disable",
         "gives sslmode twice (sslmode=verify-full, then sslmode=disable)"),
        (f"{url}?sslmode=verify-full&ssl=true",
         "gives sslmode twice (sslmode=verify-full, then ssl=true (read as sslmode=require))"),
        (f"{url}?sslmode=verify-full&gssencmode=require", "asks for sslmode=verify-full and gssencmode=require"),
        (f"{url}?gssdelegation=1", "names gssdelegation=1: libpq would hand"),
    ]


def test_unsafe_libpq_parameters_are_refused_wherever_the_url_comes_from(tmp_path, postgres_url):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--inventory", postgres_url, env=env, check=True)
    config = tmp_path / "ca" / "certkit-ca.json"
    stored = config.read_text()
    solo = dict(env, CERTKIT_CA_DIR=str(tmp_path / "solo"))
    run_certkit("init-ca", env=solo, check=True)
    before = sorted(p.name for p in (tmp_path / "solo").iterdir())
    for url, said in unsafe_urls(postgres_url, tmp_path):
        fresh = dict(env, CERTKIT_CA_DIR=str(tmp_path / "new"))
        assert_clean_error(run_certkit("init-ca", "--inventory", url, env=fresh), f"The inventory URL {said}")
        assert_clean_error(run_certkit("init-ca", env=dict(fresh, CERTKIT_INVENTORY_URL=url)),  # --inventory's
                           f"The inventory URL {said}")
        assert not (tmp_path / "new").exists(), url
        assert_clean_error(run_certkit("inventory", "migrate", "--to", url, env=solo), f"The inventory URL {said}")
        assert sorted(p.name for p in (tmp_path / "solo").iterdir()) == before, url
        proc = run_certkit("list", env=dict(env, CERTKIT_INVENTORY_URL=url))
        assert_clean_error(proc, f"The inventory URL $CERTKIT_INVENTORY_URL {said}")
        assert "from $CERTKIT_INVENTORY_URL" in proc.stderr, proc.stderr
        config.write_text(json.dumps({"inventory": url}))
        for command in (["list"], ["issue-server", "a.internal", "--out", str(tmp_path / "a")]):
            proc = run_certkit(*command, env=env)
            assert_clean_error(proc, f"The inventory URL in {config} {said}")
            assert f"from the URL in {config}" in proc.stderr, proc.stderr
        config.write_text(stored)
    assert not (tmp_path / "keys.log").exists() and not (tmp_path / "a").exists()
    assert run_certkit("list", env=env).returncode == 0  # the URL without them is taken


def test_the_library_refuses_unsafe_libpq_parameters(tmp_path):
    from certkit.errors import InventoryError
    from certkit.inventory import Inventory

    base = "postgresql://certkit@127.0.0.1:9/ca"  # never reached: refused before any connection
    for url, said in unsafe_urls(base, tmp_path):
        with pytest.raises(InventoryError) as raised:
            Inventory(url)
        assert str(raised.value).startswith(f"The inventory URL {said}"), raised.value
    # The same parameter given twice with one value, and a verifying sslmode alone, are what they say.
    for url in (f"{base}?sslmode=verify-full&sslmode=verify-full", f"{base}?sslmode=verify-full&gssencmode=disable",
                f"{base}?ssl=true&sslmode=require", f"{base}?gssdelegation=0"):
        Inventory(url)


def test_an_inventory_is_never_put_in_a_shared_or_unnamed_database(tmp_path, postgres_url, postgres_server):
    from certkit.errors import InventoryError
    from certkit.store import CADirectory

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", env=env, check=True)
    before = {p.name: p.read_bytes() for p in (tmp_path / "ca").iterdir() if p.is_file()}
    server = postgres_url.rsplit("/", 1)[0]
    refused = [
        (f"{server}/postgres", "names the database 'postgres', the server's maintenance database"),
        (f"{server}/postgres?sslmode=disable", "names the database 'postgres', the server's maintenance database"),
        (f"{postgres_url}?dbname=postgres", "names the database 'postgres'"),  # libpq: the query's dbname wins
        (f"{server}/%70ostgres", "names the database 'postgres'"),
        (f"{server}/template1", "names the database 'template1', the template every new database"),
        (server, "names no database: libpq would take $PGDATABASE, else the user's name"),
        (f"{server}/?sslmode=disable", "names no database"),
    ]
    for url, said in refused:
        assert_clean_error(run_certkit("inventory", "migrate", "--to", url, env=env), f"The inventory URL {said}")
        fresh = dict(env, CERTKIT_CA_DIR=str(tmp_path / "n"))
        assert_clean_error(run_certkit("init-ca", "--inventory", url, env=fresh), f"The inventory URL {said}")
        assert not (tmp_path / "n").exists(), url
        with pytest.raises(InventoryError, match="The inventory URL names"):
            CADirectory(tmp_path / "ca").move_inventory(url)
    assert {p.name: p.read_bytes() for p in (tmp_path / "ca").iterdir() if p.is_file()} == before
    for database in ("postgres", "template1"):
        with postgres_server.connect(database) as conn:
            assert conn.execute("SELECT to_regclass('certificates')").fetchone()[0] is None, database
    # A database of its own is taken (libpq's dbname= in the query, a service file's, too).
    from certkit.db_url import check_stored_url

    assert check_stored_url(f"{server}/postgres?dbname=ca") and check_stored_url(f"{server}/?service=ca")
    out = run_certkit("inventory", "migrate", "--to", postgres_url, env=env, check=True).stdout
    assert f"Moved the inventory of {tmp_path / 'ca'} to {postgres_url}" in out


def test_every_message_hides_a_secret_with_the_one_mark(tmp_path):
    secret = "Pw9-SECRET"
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Masks", env=env, check=True)
    long_uri = f"https://u:{secret}@x.example/" + "a" * 300
    runs = [
        (["probe", f"https://bob:{secret}@127.0.0.1:1/x"], env, "'https://***@127.0.0.1:1/x' holds a user name"),
        (["issue-server", f"rediss://default:{secret}@127.0.0.1:6380/0", "--out", str(tmp_path / "o")], env,
         "'rediss://***@127.0.0.1:6380/0' is a URL"),
        (["issue-client", "app", "--uri", long_uri, "--out", str(tmp_path / "o")], env, "'https://***@x.example/aaa"),
        (["list"], dict(env, CERTKIT_INVENTORY_URL=f"postgresql//certkit:{secret}@db.internal/ca"),
         "$CERTKIT_INVENTORY_URL names postgresql//certkit:***@db.internal/ca, which"),
        (["init-ca", "--ca-dir", str(tmp_path / "n"), "--inventory", f"mysql://certkit:{secret}@db/ca"], env,
         "'mysql://certkit:***@db/ca' is not a PostgreSQL URL"),
    ]
    for args, run_env, said in runs:
        proc = run_certkit(*args, env=run_env)
        assert_clean_error(proc, said)
        assert secret not in proc.stdout + proc.stderr and "...@" not in proc.stderr, proc.stderr
    from certkit.db_url import shown_url
    from certkit.names import hide_user_info
    from certkit.probe_http import hidden
    from certkit.text import HIDDEN

    assert HIDDEN == "***"
    assert shown_url(f"postgresql://certkit:{secret}@db/ca?sslpassword={secret}") == \
        "postgresql://certkit:***@db/ca?sslpassword=***"
    assert hide_user_info(f"redis://default:{secret}@db:6379") == hidden(f"redis://default:{secret}@db:6379") == \
        "redis://***@db:6379"


def test_a_service_file_is_held_to_what_the_url_is_held_to(tmp_path, postgres_url):
    services = tmp_path / "pg_service.conf"
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path),
                      PGSERVICEFILE=str(services))
    run_certkit("init-ca", "--inventory", postgres_url, env=env, check=True)
    keys = tmp_path / "keys.log"
    services.write_text(f"[plain]\nconnect_timeout=5\n\n[keys]\n# a comment\nsslkeylogfile = {keys}\n"
                        "sslmode=prefer\n[kerberos]\ngssdelegation=1\n[gss]\ngssencmode=require\n")
    services.chmod(0o600)
    config = tmp_path / "ca" / "certkit-ca.json"
    refused = {"keys": f"names sslkeylogfile={keys}: libpq", "kerberos": "names gssdelegation=1",
               "gss": "asks for sslmode=verify-full and gssencmode=require"}
    for service, said in refused.items():
        url = f"{postgres_url}?sslmode=verify-full" if service == "gss" else postgres_url
        whole = f"The inventory URL, with the service '{service}' in {services}, {said}"
        named = f"{url}{'&' if '?' in url else '?'}service={service}"
        for run_env in (dict(env, PGSERVICE=service, CERTKIT_INVENTORY_URL=url),
                        dict(env, CERTKIT_INVENTORY_URL=named)):
            for command in (["list"], ["issue-server", "a.internal", "--out", str(tmp_path / "a")]):
                assert_clean_error(run_certkit(*command, env=run_env), whole)
        proc = run_certkit("init-ca", "--inventory", named, env=dict(env, CERTKIT_CA_DIR=str(tmp_path / "new")))
        assert_clean_error(proc, whole)
        assert not (tmp_path / "new").exists()
    assert not keys.exists() and not (tmp_path / "a").exists()
    # What the URL sets itself is what libpq uses: the service's setting of it is not in the way.
    assert run_certkit("list", env=dict(env, CERTKIT_INVENTORY_URL=f"{postgres_url}?service=plain")).returncode == 0
    assert run_certkit("list", env=dict(env, CERTKIT_INVENTORY_URL=f"{postgres_url}?gssdelegation=0",
                                        PGSERVICE="kerberos")).returncode == 0
    assert json.loads(config.read_text())["inventory"] == postgres_url


def test_a_refused_password_is_said_of_the_one_place_libpq_took_it_from(tmp_path, postgres_url, postgres_server):
    home = tmp_path / "home"
    home.mkdir()
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(home))
    run_certkit("init-ca", "--inventory", postgres_url, env=env, check=True)
    wrong = "Wr0ng-pw-26"
    bad = tmp_path / "bad.pgpass"
    bad.write_text(f"127.0.0.1:{postgres_server.port}:*:certkit:{wrong}\n")
    bad.chmod(0o600)
    (home / ".pgpass").write_text(bad.read_text())
    (home / ".pgpass").chmod(0o600)
    services = tmp_path / "services"
    services.write_text(f"[ca]\npassword={wrong}\n")
    services.chmod(0o600)
    right = str(postgres_server.passfile)
    cases = [
        ({"PGPASSWORD": wrong, "PGPASSFILE": right}, "it is $PGPASSWORD's, which libpq takes before any password file"),
        ({"PGPASSFILE": str(bad)}, f"check the line for this connection in $PGPASSFILE ({bad})."),
        ({"PGPASSFILE": ""}, "check the line for this connection in ~/.pgpass."),
        ({"PGPASSFILE": right, "CERTKIT_INVENTORY_URL": f"{postgres_url}?passfile={bad}"},
         f"check the password file {bad} that the URL names (passfile=)."),
        ({"PGPASSWORD": wrong, "PGSERVICEFILE": str(services), "PGSERVICE": "ca"},
         f"it is the password of the service ca in {services}: fix it."),
    ]
    for extra, said in cases:
        run_env = {k: v for k, v in dict(env, **extra).items() if v != "" or k != "PGPASSFILE"}
        proc = run_certkit("list", env=run_env, subprocess=True)  # a connection of its own: libpq logs in
        assert_clean_error(proc, "refused the password (connection failed: ")
        assert said in proc.stderr and wrong not in proc.stderr, (extra, proc.stderr)
        assert "$PGPASSFILE or $PGPASSWORD" not in proc.stderr, proc.stderr
    assert run_certkit("list", env=dict(env, PGPASSFILE=right, PGPASSWORD=""), subprocess=True).returncode == 0


def test_libpqs_variables_are_held_to_what_the_url_is_held_to(tmp_path, postgres_url):
    services = tmp_path / "pg_service.conf"
    services.write_text("[nogss]\ngssencmode=disable\n")
    services.chmod(0o600)
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path),
                      PGSERVICEFILE=str(services))
    run_certkit("init-ca", "--inventory", postgres_url, env=env, check=True)
    verify = f"{postgres_url}?sslmode=verify-full"
    refused = [
        ({"PGGSSDELEGATION": "1"}, "with the environment's $PGGSSDELEGATION=1, names gssdelegation=1",
         "remove it from the environment (unset $PGGSSDELEGATION)."),
        ({"PGGSSENCMODE": "require", "CERTKIT_INVENTORY_URL": verify},
         "with the environment's $PGGSSENCMODE=require, asks for sslmode=verify-full and gssencmode=require",
         "Remove one of them from the environment (unset $PGGSSENCMODE)."),
        ({"PGGSSENCMODE": "require", "PGSSLMODE": "verify-ca"},
         "with the environment's $PGSSLMODE=verify-ca and $PGGSSENCMODE=require, asks for sslmode=verify-ca",
         "(unset $PGSSLMODE $PGGSSENCMODE)."),
    ]
    for extra, said, fix in refused:
        for command in (["list"], ["issue-server", "a.internal", "--out", str(tmp_path / "a")]):
            proc = run_certkit(*command, env=dict(env, **extra))
            assert_clean_error(proc, f"The inventory URL, {said}")
            assert fix in proc.stderr, proc.stderr
        proc = run_certkit("init-ca", "--inventory", extra.get("CERTKIT_INVENTORY_URL", postgres_url),
                           env=dict(env, CERTKIT_CA_DIR=str(tmp_path / "new"), **extra))
        assert_clean_error(proc, f"The inventory URL, {said}")
        assert not (tmp_path / "new").exists()
    assert not (tmp_path / "a").exists()
    # What the URL or its service sets is what libpq uses: the variable is not in the way.
    for extra in ({"PGGSSDELEGATION": "1", "CERTKIT_INVENTORY_URL": f"{postgres_url}?gssdelegation=0"},
                  {"PGGSSENCMODE": "require", "CERTKIT_INVENTORY_URL": f"{postgres_url}?service=nogss&sslmode=prefer"},
                  {"PGSSLMODE": "prefer", "PGGSSDELEGATION": "0", "PGGSSENCMODE": "disable"}):
        assert run_certkit("list", env=dict(env, **extra)).returncode == 0, extra


def test_a_move_into_a_database_holding_an_inventory_of_no_ca_says_so(tmp_path, postgres_url, postgres_server):
    from certkit.inventory import schema

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", env=env, check=True)
    before = {p.name: p.read_bytes() for p in (tmp_path / "ca").iterdir() if p.is_file()}
    with postgres_server.connect(postgres_url.rsplit("/", 1)[1]) as conn:
        for statement in schema.create_statements("postgresql"):
            conn.execute(statement.replace("?", "%s"))
    proc = run_certkit("inventory", "migrate", "--to", postgres_url, env=env)
    assert_clean_error(proc, f"Error: The database {postgres_url} already holds a certkit inventory tied to no CA; "
                             "move this one into an empty database; nothing was changed.")
    assert {p.name: p.read_bytes() for p in (tmp_path / "ca").iterdir() if p.is_file()} == before
