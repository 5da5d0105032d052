"""Audit team9 (a PostgreSQL inventory and a CA key in a PKCS#11 token), each finding as a class:

#1 a PostgreSQL server that was reached and refused the connection (a role without CONNECT on the
   database, pg_hba.conf, a role that may not log in, no free connection slot: a role's or database's
   CONNECTION LIMIT, max_connections and its reserved slots, sslmode=require against a server without
   TLS) was reported as "cannot be reached", which sends one to the network: now the server's answer is
   said, with what to change;
#2 init-ca's summary called a never-extractable but non-sensitive token key "EXTRACTABLE"; it now names
   the attribute that is wrong (as check and the warning do), both when both are;
#3 a key URI naming two private keys (or a token label naming two tokens) said only "add id= (serial=)":
   now the ids (serials) are listed, the one whose public key is ca.pem's is named, and the exact URI to
   write in certkit-ca.json is given; writing it there works;
#4 a wrong password typed at certkit's own prompt was blamed on ~/.pgpass, $PGPASSFILE or $PGPASSWORD.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import psycopg
import pytest

from certkit.db_postgres import PostgresDatabase

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit
from team_terminal import run_on_terminal


@pytest.fixture(autouse=True)
def _real_processes(monkeypatch):
    """A PKCS#11 login and a libpq password prompt belong to a process: certkit runs as a real one here."""
    monkeypatch.setenv("CERTKIT_TEST_SUBPROCESS", "1")


# --- #1: a server that answered ---------------------------------------------------------------------


@pytest.fixture
def postgres_ca(tmp_path, postgres_url, postgres_server):
    """A CA on a fresh PostgreSQL database; returns its environment and the database's name."""
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--inventory", postgres_url, env=env, check=True)
    return env, postgres_url.rsplit("/", 1)[1]


def as_role(env: dict, postgres_server, database: str, role: str, tmp_path, query: str = "") -> dict:
    """``env`` with the inventory URL of ``database`` as ``role`` (its password in a PGPASSFILE of its own)."""
    passfile = tmp_path / f"pgpass-{role}"
    passfile.write_text(f"127.0.0.1:{postgres_server.port}:*:{role}:{role}-Pw1\n")
    passfile.chmod(0o600)
    url = f"postgresql://{role}@127.0.0.1:{postgres_server.port}/{database}{query}"
    return dict(env, PGPASSFILE=str(passfile), CERTKIT_INVENTORY_URL=url)


def refused(proc, *fragments: str) -> str:
    assert_clean_error(proc, fragments[0])
    error = proc.stderr.strip()
    assert error.count("\n") == 0 and "cannot be reached" not in error, error
    for fragment in fragments:
        assert fragment in error, error
    return error


def test_a_role_without_connect_or_login_or_pg_hba_entry_is_told_so(tmp_path, postgres_ca, postgres_server):
    env, database = postgres_ca
    tag = database.replace("t_", "")
    nocon, nolog, hba = f"nocon_{tag}", f"nolog_{tag}", f"hba_{tag}"
    with postgres_server.connect(database) as conn:
        conn.execute(f"CREATE ROLE {nocon} LOGIN PASSWORD '{nocon}-Pw1'")
        conn.execute(f"CREATE ROLE {nolog} NOLOGIN PASSWORD '{nolog}-Pw1'")
        conn.execute(f"CREATE ROLE {hba} LOGIN PASSWORD '{hba}-Pw1'")
        conn.execute(f'REVOKE CONNECT ON DATABASE "{database}" FROM PUBLIC')
        conn.execute(f'GRANT CONNECT ON DATABASE "{database}" TO {nolog}, {hba}')
    refused(run_certkit("list", env=as_role(env, postgres_server, database, nocon, tmp_path)),
            "may not be used by this database user", "permission denied for database", "GRANT CONNECT")
    refused(run_certkit("list", env=as_role(env, postgres_server, database, nolog, tmp_path)),
            "this role may not log in there", "is not permitted to log in", "ALTER ROLE")
    rules = postgres_server.base / "data" / "pg_hba.conf"
    before = rules.read_text()
    try:
        rules.write_text(f"host all {hba} 127.0.0.1/32 reject\n" + before)
        postgres_server.reload()
        proc = run_certkit("issue-server", "hba.example", "--out", tmp_path / "hba",
                           env=as_role(env, postgres_server, database, hba, tmp_path))
        refused(proc, "its pg_hba.conf refuses this connection", "pg_hba.conf rejects connection")
        assert not (tmp_path / "hba").exists()
    finally:
        rules.write_text(before)
        postgres_server.reload()


def test_no_free_connection_slot_is_said_as_such(tmp_path, postgres_ca, postgres_server):
    env, database = postgres_ca
    tag = database.replace("t_", "")
    limited, member = f"lim_{tag}", f"member_{tag}"
    with postgres_server.connect(database) as conn:
        conn.execute(f"CREATE ROLE {limited} LOGIN PASSWORD '{limited}-Pw1' CONNECTION LIMIT 0")
        conn.execute(f"CREATE ROLE {member} LOGIN PASSWORD '{member}-Pw1'")
        conn.execute(f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {member}")
    advice = ("no free connection for this user", "max_connections", "--jobs", "pooler")
    refused(run_certkit("list", env=as_role(env, postgres_server, database, limited, tmp_path)),
            *advice, "too many connections for role")
    # The database's own limit, taken by one other client.
    member_env = as_role(env, postgres_server, database, member, tmp_path)
    assert run_certkit("list", env=member_env).returncode == 0
    with postgres_server.connect() as conn:
        conn.execute(f'ALTER DATABASE "{database}" CONNECTION LIMIT 1')
    try:
        with psycopg.connect(member_env["CERTKIT_INVENTORY_URL"], password=f"{member}-Pw1"):
            proc = run_certkit("issue-server", "slot.example", "--out", tmp_path / "slot", env=member_env)
            refused(proc, *advice, "too many connections for database")
            assert not (tmp_path / "slot").exists()
    finally:
        with postgres_server.connect() as conn:
            conn.execute(f'ALTER DATABASE "{database}" CONNECTION LIMIT -1')
    # What max_connections and its reserved slots answer (PostgreSQL 15, and 16 on) reads the same.
    database_of = PostgresDatabase(member_env["CERTKIT_INVENTORY_URL"])
    for answer in ("sorry, too many clients already",
                   "remaining connection slots are reserved for non-replication superuser connections",
                   "remaining connection slots are reserved for roles with the SUPERUSER attribute"):
        said = str(database_of.error(psycopg.OperationalError(
            f'connection failed: connection to server at "127.0.0.1", port 5432 failed: FATAL:  {answer}')))
        assert all(fragment in said for fragment in advice) and "cannot be reached" not in said, said


def test_sslmode_require_against_a_server_without_tls(tmp_path, postgres_ca):
    env, _database = postgres_ca
    ca_url = json.loads((tmp_path / "ca" / "certkit-ca.json").read_text())["inventory"]
    for mode in ("require", "verify-full"):
        proc = run_certkit("list", env=dict(env, CERTKIT_INVENTORY_URL=f"{ca_url}?sslmode={mode}"))
        refused(proc, "it does not offer TLS", "choose another sslmode", "does not support SSL")
    assert run_certkit("list", env=dict(env, CERTKIT_INVENTORY_URL=f"{ca_url}?sslmode=prefer")).returncode == 0


# --- #4: a password typed at certkit's prompt ----------------------------------------------------------


def test_a_wrong_password_typed_at_the_prompt_is_not_blamed_on_pgpass(tmp_path, postgres_ca, postgres_server):
    env, _database = postgres_ca
    bare = {k: v for k, v in env.items() if not k.startswith("PG")}
    bare["HOME"] = str(tmp_path / "home")  # no ~/.pgpass there
    code, shown = run_on_terminal([sys.executable, "-m", "certkit", "list"], bare,
                                  [("Password for the inventory", "not-the-password")], cwd=tmp_path)
    assert code == 1, shown
    error = shown[shown.index("Error:"):].strip()
    assert "refused the password typed at the prompt" in error and "not-the-password" not in shown, shown
    assert "pgpass" not in error.lower() and "PGPASSWORD" not in error, error
    # A password libpq found is still the one to check where libpq found it.
    assert_clean_error(run_certkit("list", env=dict(bare, PGPASSWORD="wrong")), "it is $PGPASSWORD's, which libpq")


# --- #2 and #3: a key in a token ---------------------------------------------------------------------


def make_key(token, label: str, key_id: bytes, *, sensitive: bool, extractable: bool) -> None:
    """An EC key pair made in ``token`` by python-pkcs11 in a process of its own, with these attributes."""
    script = textwrap.dedent(f"""
        import pkcs11
        from pkcs11 import Attribute, KeyType
        from pkcs11.util.ec import encode_named_curve_parameters
        token = pkcs11.lib({token.module!r}).get_token(token_label={token.label!r})
        with token.open(rw=True, user_pin={token.pin!r}) as session:
            params = session.create_domain_parameters(
                KeyType.EC, {{Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}}, local=True)
            params.generate_keypair(store=True, label={label!r}, id={key_id!r}, private_template={{
                Attribute.SENSITIVE: {sensitive!r}, Attribute.EXTRACTABLE: {extractable!r}}})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


EXPOSURES = [  # sensitive, extractable: what the summary says, and what it must not
    (False, False, "NOT SENSITIVE: its value can be read out of the token", "EXTRACTABLE"),
    (False, True, "NOT SENSITIVE: its value can be read out of the token, EXTRACTABLE", "non-extractable"),
    (True, True, "EXTRACTABLE: it can be copied out of the token", "NOT SENSITIVE"),
]


def test_init_ca_says_which_attribute_lets_a_token_key_out(tmp_path, token):
    for number, (sensitive, extractable, said, not_said) in enumerate(EXPOSURES):
        make_key(token, f"exposed{number}", bytes([0x50 + number]), sensitive=sensitive, extractable=extractable)
        env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / f"ca{number}"), CERTKIT_PKCS11_PIN=token.pin)
        proc = run_certkit("init-ca", "--name", f"Exposed {number}", "--key-uri", token.uri(f"exposed{number}"),
                           "--pkcs11-module", token.module, env=env)
        assert proc.returncode == 0, proc.stderr
        line = next(line for line in proc.stdout.splitlines() if "private key" in line)
        assert said in line and not_said not in line, line
        expected = " and ".join(w for w, on in (("not sensitive", not sensitive), ("extractable", extractable)) if on)
        assert f"is {expected}: it can leave the token" in proc.stderr, proc.stderr
        check = run_certkit("check", env=env)  # check says the same of the same key
        assert f"matches ca.pem but is {expected}: it can leave" in check.stdout, check.stdout


def init_token_ca(tmp_path, token, name: str = "ca") -> dict:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / name), CERTKIT_PKCS11_PIN=token.pin)
    run_certkit("init-ca", "--name", f"HSM {name}", "--key-uri", token.uri("root"), "--pkcs11-module",
                token.module, env=env, check=True)
    return env


def test_two_keys_under_the_ca_label_name_the_ca_key_and_the_uri_to_write(tmp_path, token):
    env = init_token_ca(tmp_path, token)
    config = tmp_path / "ca" / "certkit-ca.json"
    made = token.tool("--keypairgen", "--key-type", "EC:prime256v1", "--label", "root", "--id", "99")
    assert made.returncode == 0, made.stderr
    listed = token.tool("--list-objects", "--type", "privkey").stdout
    ca_id = next(line.split()[1] for line in listed.splitlines() if line.strip().startswith("ID:")
                 and line.split()[1] != "99")
    fixed = token.uri("root") + ";id=" + "".join(f"%{ca_id[i:i + 2]}" for i in range(0, len(ca_id), 2))
    for args in (["issue-server", "w2.example", "--out", tmp_path / "w2"], ["crl", "--out", tmp_path / "w.crl"]):
        proc = run_certkit(*args, env=env)
        error = refused(proc, "2 private keys match", f"id {ca_id} is the CA certificate's key", str(config),
                        f"'{fixed}'")
        assert "99" in error.split("(ids ")[1].split(")")[0], error
    assert not (tmp_path / "w2").exists() and not (tmp_path / "w.crl").exists()
    check = run_certkit("check", env=env)
    assert f"id {ca_id} is the CA certificate's key" in check.stdout and fixed in check.stdout, check.stdout
    # Written where the message says, the URI works.
    data = json.loads(config.read_text())
    config.write_text(json.dumps(dict(data, key=fixed)))
    run_certkit("issue-server", "w2.example", "--out", tmp_path / "w2", env=env, check=True)
    # Without a CA certificate to compare with (a new CA on that URI), each key's URI is offered.
    other = dict(env, CERTKIT_CA_DIR=str(tmp_path / "other"))
    proc = run_certkit("init-ca", "--key-uri", token.uri("root"), "--pkcs11-module", token.module, env=other)
    refused(proc, "2 private keys match", f"'{fixed}'", f"'{token.uri('root')};id=%99'")


def test_two_tokens_of_one_label_list_their_serials(tmp_path, token, softhsm):
    env = init_token_ca(tmp_path, token)
    made = subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", token.label, "--pin", token.pin,
                           "--so-pin", token.so_pin], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    slots = subprocess.run(["softhsm2-util", "--show-slots"], capture_output=True, text=True, timeout=60).stdout
    serials = [line.split()[-1] for line in slots.splitlines() if line.strip().startswith("Serial number:")
               and len(line.split()) > 2]
    proc = run_certkit("issue-server", "t.example", "--out", tmp_path / "t", env=env)
    error = refused(proc, "2 tokens match", "add serial= to the key URI")
    named = [serial for serial in serials if f"serial={serial}" in error]
    assert len(named) == 2, (error, serials)
    config = tmp_path / "ca" / "certkit-ca.json"
    data = json.loads(config.read_text())
    for serial in named:  # the one whose key is the CA's signs; the other has no such key
        config.write_text(json.dumps(dict(data, key=f"{token.uri('root')};serial={serial}")))
        if run_certkit("issue-server", "t.example", "--out", tmp_path / "t", env=env).returncode == 0:
            break
    assert (tmp_path / "t" / "cert.pem").exists()
