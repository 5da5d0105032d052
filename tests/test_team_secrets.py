"""Secrets around a team's CA are never echoed, stored or lost track of (audit findings 5 to 7):

- every libpq connection parameter that is a secret (``password``, ``sslpassword``...) is refused
  in an inventory URL, in any spelling libpq reads, wherever the URL comes from, and no message
  prints one;
- a PIN in a PKCS#11 URI is refused in the path as in the query, an unknown attribute is named
  without its value, and PKCS#11 errors read as words;
- ``init-ca --key-uri --inventory`` tries the database before it generates a key in the token, and
  says so when a key it generated stays there after all.

PostgreSQL and SoftHSM2 are started by the tests (tests/team_postgres.py, tests/team_hsm.py).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, free_port, require, run_certkit

SECRET = "Kp7-SECRET-VALUE-93"  # what must never be printed nor written


@pytest.fixture(autouse=True)
def _real_processes(monkeypatch):
    """A PKCS#11 login and a libpq password prompt belong to a process: certkit runs as a real one here."""
    monkeypatch.setenv("CERTKIT_TEST_SUBPROCESS", "1")


def assert_refused(proc: subprocess.CompletedProcess, fragment: str, *secrets: str) -> None:
    """One ``Error:`` line naming the problem, a non-zero exit, and no secret anywhere in the output."""
    assert_clean_error(proc, fragment)
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.count("Error:") == 1, proc.stderr
    for secret in secrets or (SECRET,):
        assert secret not in proc.stdout + proc.stderr, proc.stderr


def secret_urls(url: str) -> list[tuple[str, str]]:
    """``url`` with a secret in every spelling libpq reads, and the parameter the refusal names."""
    host = url[len("postgresql://certkit@"):]
    return [
        (f"{url}?sslpassword={SECRET}&sslmode=disable", "sslpassword"),
        (f"{url}?sslmode=disable&SSLPASSWORD={SECRET}", "sslpassword"),  # libpq: an unknown name, said with the URL
        (f"{url}?%73slpassword={SECRET}", "sslpassword"),  # libpq decodes the names
        (f"{url}?ssl%50assword={SECRET}", "sslpassword"),
        (f"{url}?sslpassword=x&sslpassword={SECRET}", "sslpassword"),  # libpq keeps the last
        (f"{url}?oauth_client_secret={SECRET}", "oauth_client_secret"),
        (f"{url}?scram_client_key={SECRET}", "scram_client_key"),
        (f"{url}#?password={SECRET}", "a password"),  # no fragment for libpq: a query parameter
        (f"postgresql://x?a=b:{SECRET}@{host}", "a password"),  # libpq's user part runs to the first '@'
        (f"postgresql://certkit:{SECRET}@{host}?sslpassword={SECRET}", "a password and sslpassword"),
    ]


# --- finding 5: secrets in an inventory URL ------------------------------------------------------
def test_secret_parameters_in_the_inventory_url_are_refused(tmp_path, postgres_url, postgres_server):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    for url, named in secret_urls(postgres_url):
        for how in ("argument", "environment"):
            args, extra = (["--inventory", url], {}) if how == "argument" else ([], {"CERTKIT_INVENTORY_URL": url})
            proc = run_certkit("init-ca", *args, env=dict(env, **extra))
            assert_refused(proc, f"holds {named}")
            assert "certkit never stores" in proc.stderr, proc.stderr
            assert not (tmp_path / "ca").exists(), (how, url)
    proc = run_certkit("init-ca", "--inventory", f"{postgres_url}?sslpassword={SECRET}", env=env)
    assert "client key" in proc.stderr and "service file" in proc.stderr and "chmod 600" in proc.stderr
    # The database was not touched: a CA without a secret in its URL takes it.
    with postgres_server.connect(postgres_url.rsplit("/", 1)[1]) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0
    # passfile is a path, not a secret: libpq reads the password from that file (0600, or it ignores it).
    bare = {k: v for k, v in env.items() if not k.startswith("PG")}
    with_passfile = f"{postgres_url}?passfile={postgres_server.passfile}"
    data = json.loads(run_certkit("init-ca", "--inventory", with_passfile, "--json", env=bare, check=True).stdout)
    assert data["inventory"] == with_passfile
    assert json.loads((tmp_path / "ca" / "certkit-ca.json").read_text()) == {"inventory": with_passfile}


def test_inventory_migrate_refuses_a_secret_in_its_target(tmp_path, postgres_url):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", env=env, check=True)
    before = sorted(p.name for p in (tmp_path / "ca").iterdir())
    for url, named in secret_urls(postgres_url):
        assert_refused(run_certkit("inventory", "migrate", "--to", url, env=env), f"holds {named}")
        assert_refused(run_certkit("inventory", "migrate", "--to", url, "--ca-dir", tmp_path / "ca",
                                   env=certkit_env()), f"holds {named}")
    assert sorted(p.name for p in (tmp_path / "ca").iterdir()) == before  # no certkit-ca.json written
    assert "inventory.sqlite3" in before


def test_an_existing_ca_never_prints_a_secret_it_is_given(tmp_path, postgres_url):
    """A secret that reaches a CA another way than init-ca: $CERTKIT_INVENTORY_URL, or a
    certkit-ca.json written by an earlier certkit (which stored sslpassword): every command
    refuses it, and check reports it, without printing it."""
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--inventory", postgres_url, env=env, check=True)
    config = tmp_path / "ca" / "certkit-ca.json"
    for url, named in secret_urls(postgres_url)[:3]:
        overridden = dict(env, CERTKIT_INVENTORY_URL=url)
        for command in (["list"], ["issue-server", "a.internal"], ["crl", "--out", str(tmp_path / "c.pem")]):
            assert_refused(run_certkit(*command, cwd=tmp_path, env=overridden), f"holds {named}")
        proc = run_certkit("check", env=overridden)
        assert proc.returncode == 1 and SECRET not in proc.stdout + proc.stderr
        said = rf"ERROR\s+inventory\s+The inventory URL \$CERTKIT_INVENTORY_URL holds {named}"
        assert re.search(said, proc.stdout), proc.stdout
    config.write_text(json.dumps({"inventory": f"{postgres_url}?sslpassword={SECRET}"}))
    assert_refused(run_certkit("list", env=env), "holds sslpassword")
    proc = run_certkit("check", "--json", env=env)
    assert proc.returncode == 1 and SECRET not in proc.stdout + proc.stderr
    assert not (tmp_path / "a.internal").exists() and not (tmp_path / "c.pem").exists()


def test_a_shown_url_never_holds_a_secret():
    """The one function that shows an inventory URL (shown_url) hides every secret parameter's
    value, however it is spelled; check_url never repeats one, even in a URL that is no PostgreSQL URL."""
    from certkit.db_postgres import check_url, secrets_in, shown_url
    from certkit.errors import InventoryError

    base = "postgresql://certkit@db.internal:5432/ca"
    for url, _named in secret_urls(base):
        assert SECRET not in shown_url(url) and "***" in shown_url(url), url
        assert secrets_in(url), url
    assert shown_url(f"{base}?application_name=a&sslpassword={SECRET}&sslmode=require") == \
        f"{base}?application_name=a&sslpassword=***&sslmode=require"
    assert shown_url(f"postgresql://u:{SECRET}@h/db") == "postgresql://u:***@h/db"
    for harmless in (base, f"{base}?passfile=/home/ca/.pgpass&sslkey=/k.pem&service=ca",
                     "postgresql://certkit@[::1]:5432/ca", "postgresql://certkit@h1:1,h2:2/ca?target_session_attrs=any"):
        assert shown_url(harmless) == harmless and secrets_in(harmless) == [] and check_url(harmless) == harmless
    for not_postgres in (f"mysql://u:{SECRET}@h/db", f"postgresq://u@h/db?sslpassword={SECRET}"):
        with pytest.raises(InventoryError, match="not a PostgreSQL URL") as refused:
            check_url(not_postgres)
        assert SECRET not in str(refused.value)
    with pytest.raises(InventoryError) as refused:
        check_url(f"{base}?sslpassword={SECRET}%zz")  # a bad %-escape libpq would quote with the value
    assert SECRET not in str(refused.value) and "holds sslpassword" in str(refused.value)


# --- finding 6: PINs in a PKCS#11 URI, PKCS#11 errors in words ----------------------------------
PIN_URIS = [
    "pkcs11:token=a;object=b;pin-value={pin}",
    "pkcs11:token=a;PIN-VALUE={pin};object=b",
    "pkcs11:token=a;object=b;pin-source=file:/run/{pin}",
    "pkcs11:token=a;object=b?pin-value={pin}",
    "pkcs11:token=a;object=b?module-path=/x.so&pin-source=file:/{pin}",
    "pkcs11:token=a;token=b;object=c?pin-value={pin}",  # another mistake that would quote the URI
    "pkcs11:token=a;object=b;type=cert;pin-value={pin}",
    "pkcs11 :token=a;object=b;pin-value={pin}",  # not even a pkcs11: URI
]
UNKNOWN_URIS = [  # an unknown attribute is named, never its value (nor the URI that holds it)
    ("pkcs11:token=a;object=b;x-pin={pin}", "'x-pin'"),
    ("pkcs11:token=a;object=b;pin={pin}", "'pin'"),
    ("pkcs11:token=a;object=b?passphrase={pin}", "'passphrase'"),
    ("pkcs11:token=a;object=b;{pin}", "has no '='"),
    ("pkcs11:token=a;token=b;object=c;secret={pin}", "'secret'"),
]


def test_key_uri_refusals_never_repeat_a_value():
    from certkit.pkcs11 import KeyURI, TokenError

    for text in PIN_URIS:
        with pytest.raises(TokenError, match="holds no PIN") as refused:
            KeyURI.parse(text.format(pin=SECRET))
        assert SECRET not in str(refused.value)
    for text, fragment in UNKNOWN_URIS:
        with pytest.raises(TokenError) as refused:
            KeyURI.parse(text.format(pin=SECRET))
        assert fragment in str(refused.value) and SECRET not in str(refused.value), refused.value
    # Once every attribute is known, the URI may be quoted.
    with pytest.raises(TokenError, match="'pkcs11:token=a;token=b;object=c' names token twice"):
        KeyURI.parse("pkcs11:token=a;token=b;object=c")
    assert KeyURI.parse("pkcs11:token=a;object=pin-value-key").object == "pin-value-key"


def test_pkcs11_errors_read_as_words():
    from certkit.pkcs11.errors import words

    def error(name: str, text: str = "") -> Exception:
        return type(name, (RuntimeError,), {})(text)

    assert words(error("PKCS11Error", "OS exception while loading x")) == "PKCS#11 error (OS exception while loading x)"
    assert words(error("PinIncorrect")) == "PIN incorrect"
    assert words(error("PinLenRange")) == "PIN length range"
    assert words(error("SlotIDInvalid")) == "slot ID invalid"
    assert words(error("SessionReadWriteSOExists")) == "session read write SO exists"
    assert words(error("RandomNoRNG")) == "random no RNG"
    assert words(error("UserPinNotInitialized")) == "user PIN not initialized"
    assert words(error("GeneralError")) == "general error"
    assert words(OSError("gone")) == "OS error (gone)"


def test_pins_in_key_uris_on_the_command_line(tmp_path, token):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"))
    module = ["--pkcs11-module", token.module, "--pin-file", token.pin_file]
    for text in PIN_URIS:
        uri = text.format(pin=token.pin).replace("token=a", f"token={token.label}")
        assert_refused(run_certkit("init-ca", "--key-uri", uri, *module, env=env), "holds no PIN", token.pin)
    for text, fragment in UNKNOWN_URIS:
        uri = text.format(pin=token.pin).replace("token=a", f"token={token.label}")
        assert_refused(run_certkit("init-ca", "--key-uri", uri, *module, env=env), fragment, token.pin)
    assert not (tmp_path / "ca").exists()
    assert token_objects(token) == []


def test_module_load_errors_read_as_words(tmp_path):
    pytest.importorskip("pkcs11")
    pin = tmp_path / "pin"
    pin.write_text("1234\n")
    pin.chmod(0o600)
    not_a_library = tmp_path / "module.so"
    not_a_library.write_text("not a shared library\n")
    modules = [Path("/etc/passwd"), not_a_library]
    libc = next((p for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6")
                 if Path(p).is_file()), None)
    if libc:
        modules.append(Path(libc))  # a shared library, but no PKCS#11 module
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"))
    for module in modules:
        proc = run_certkit("init-ca", "--key-uri", "pkcs11:token=a;object=b", "--pkcs11-module", module,
                           "--pin-file", pin, env=env)
        assert_refused(proc, f"The PKCS#11 module {module} cannot be loaded: PKCS#11 error (", "1234")
        assert "p k c s" not in proc.stderr.lower()
    assert not (tmp_path / "ca").exists()


# --- finding 7: the database tried before a key is generated in the token ------------------------
def token_objects(token) -> list[str]:
    """The objects in ``token`` (their kinds and labels), as OpenSC's pkcs11-tool lists them: a
    process of its own, which reads the token as it is now."""
    require("pkcs11-tool")
    listed = token.tool("--list-objects")
    assert listed.returncode == 0, listed.stderr
    return re.findall(r"^\S.* Object;.*$", listed.stdout, re.M)


def init_token_ca(tmp_path: Path, token, url: str, obj: str = "k1", name: str = "ca", **extra_env):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / name), **extra_env)
    return run_certkit("init-ca", "--name", "Tok B", "--key-uri", token.uri(obj), "--pkcs11-module", token.module,
                       "--pin-file", token.pin_file, "--inventory", url, "--json", env=env)


def test_init_ca_tries_the_database_before_generating_a_key(tmp_path, token, postgres_url, postgres_server):
    # A database that already holds an inventory (another CA's).
    run_certkit("init-ca", "--inventory", postgres_url, env=certkit_env(
        CERTKIT_CA_DIR=str(tmp_path / "other"), CERTKIT_CA_PASSPHRASE=PASSPHRASE), check=True)
    database = postgres_url.rsplit("/", 1)[1]
    unreachable = postgres_url.replace(f":{postgres_server.port}/", f":{free_port()}/")
    missing = postgres_url.rsplit("/", 1)[0] + "/nosuchdb"
    # A user who may connect but not create tables (PostgreSQL 15: only the owner creates in public).
    with postgres_server.connect() as conn:
        conn.execute("CREATE ROLE limited LOGIN PASSWORD 'limited-pw'")
    passfile = tmp_path / "pgpass"
    passfile.write_text(Path(postgres_server.passfile).read_text()
                        + f"127.0.0.1:{postgres_server.port}:*:limited:limited-pw\n")
    passfile.chmod(0o600)
    fresh = postgres_server.create_database()
    limited = fresh.replace("certkit@", "limited@")
    for url, fragment in [(postgres_url, "already holds a certkit inventory"), (unreachable, "cannot be reached"),
                          (missing, "create it first"), (limited, "may not be used by this database user")]:
        proc = init_token_ca(tmp_path, token, url, PGPASSFILE=str(passfile))
        assert_clean_error(proc, fragment)
        assert not (tmp_path / "ca").exists()
        assert token_objects(token) == [], (url, proc.stdout)
    # The failed tries left nothing in the databases either; the next try generates a new key.
    with postgres_server.connect(fresh.rsplit("/", 1)[1]) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0
    with postgres_server.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM certificates").fetchone()[0] == 0  # the other CA's, untouched
    proc = init_token_ca(tmp_path, token, fresh)
    assert proc.returncode == 0, proc.stdout
    assert json.loads(proc.stdout)["key_generated"] is True
    assert len(token_objects(token)) == 3  # the new pair, private and public, and the CA certificate beside it


def test_a_key_generated_before_a_later_failure_is_reported(tmp_path, token, postgres_url):
    """The database taken by another CA between init-ca's check and its use of it (the moment the
    CA certificate is signed): the error says the new key pair stays in the token, and how to remove
    it; the command it gives does."""
    marker = tmp_path / "pause"
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_TEST_PAUSE_AT="signed",
                      CERTKIT_TEST_PAUSE_FILE=str(marker))
    process = subprocess.Popen([sys.executable, "-m", "certkit", "init-ca", "--name", "Tok B", "--key-uri",
                                token.uri("k1"), "--pkcs11-module", token.module, "--pin-file", str(token.pin_file),
                                "--inventory", postgres_url], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "init-ca never reached the pause point"
            time.sleep(0.05)
        run_certkit("init-ca", "--inventory", postgres_url, env=certkit_env(
            CERTKIT_CA_DIR=str(tmp_path / "other"), CERTKIT_CA_PASSPHRASE=PASSPHRASE), check=True)
        os.unlink(marker)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1 and out == "" and err.count("Error:") == 1, err
    assert "already holds a certkit inventory" in err and token.pin not in err
    assert f"stays in token '{token.label}' (label 'k1', id " in err
    assert "init-ca with the same --key-uri uses it" in err
    assert not (tmp_path / "ca").exists()
    assert len(token_objects(token)) == 2
    # The command it gives removes the pair (pkcs11-tool asks for the PIN; given here on its command line).
    command = re.search(r"remove it with: (pkcs11-tool .*?) \(and again with --type pubkey\)", err).group(1)
    argv = shlex.split(command)
    assert argv[:2] == ["pkcs11-tool", "--module"] and "--delete-object" in argv
    for kind in ("privkey", "pubkey"):
        typed = [kind if arg == "privkey" else arg for arg in argv]
        deleted = subprocess.run([*typed, "--pin", token.pin], capture_output=True, text=True, timeout=60)
        assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert token_objects(token) == []


def test_an_inventory_url_that_is_not_utf8_is_refused_without_its_secret(tmp_path) -> None:
    url = os.fsdecode(f"postgresql://certkit:{SECRET}@127.0.0.1/db\xff".encode("latin-1"))
    run_certkit("init-ca", "--no-passphrase", env=certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca")), check=True)
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_INVENTORY_URL=url)
    proc = subprocess.run([sys.executable, "-m", "certkit", "list"], env=env, capture_output=True, text=True)
    assert proc.returncode == 1 and "not UTF-8" in proc.stderr and "Traceback" not in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr


def test_psycopgs_own_log_never_reaches_standard_error(tmp_path):
    """psycopg logs what it ignores while it fails ('error ignored terminating <psycopg.Pipeline [BAD]
    at 0x...>' when PostgreSQL goes away mid-pipeline): Python printed that above certkit's one Error:
    line, since no handler was set. Once certkit opens a PostgreSQL inventory, such records go nowhere
    unless the program set up logging itself."""
    import subprocess
    import sys

    code = ("import logging\nfrom certkit.db_postgres import PostgresDatabase\n"
            "PostgresDatabase('postgresql://certkit@127.0.0.1:1/ca')\n"
            "logging.getLogger('psycopg').warning('error ignored terminating <psycopg.Pipeline [BAD]>')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    configured = subprocess.run([sys.executable, "-c", "import logging; logging.basicConfig()\n" + code],
                                capture_output=True, text=True, timeout=60)
    assert "error ignored terminating" in configured.stderr  # a program's own logging still sees it
