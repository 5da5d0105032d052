"""The twentieth round's team findings (audit team, round twenty): a PostgreSQL inventory shared by hosts, and a
CA key in a PKCS#11 token (SoftHSM2).

1. The connection's text encoding was whatever libpq was told: ``$PGCLIENTENCODING``, ``client_encoding=`` in the
   URL, a role's or database's ``client_encoding``, or the database's own encoding. psycopg encodes and decodes text
   in it: with LATIN1, issuing for a name outside it (``CN=Jürgen 日本``) died with a traceback
   (UnicodeEncodeError) while recording it; on a database created ``ENCODING 'SQL_ASCII'`` (which init-ca took)
   every text column came back as bytes, and every command after init-ca died (TypeError). certkit now always
   talks UTF-8 (the server converts), refuses to put a new inventory (init-ca, inventory migrate) in a database
   whose encoding cannot hold every name, says in words when an existing one (restored there by a DBA) cannot
   store a name, and ``check`` warns of such a database.
2. A ``statement_timeout`` the DBA set on the role or database (``ALTER DATABASE ca SET statement_timeout = ...``)
   cancelled certkit's statements that legitimately take long: ``issue-batch`` of 8,000 certificates wrote its
   file whole, then the mark of its rows was cancelled ("timed out ... try again"), and every later command
   (``list`` too) failed the same way settling those 8,000 pending rows: the CA was down until the DBA changed the
   setting. Likewise its ``idle_in_transaction_session_timeout`` ended a keyCompromise revocation while it read
   the key of every valid certificate (client-side, inside its transaction): on a large inventory, every time,
   "cannot be used: terminating connection due to idle-in-transaction timeout", and a compromised key could not be
   revoked. certkit's sessions now raise a shorter one of either to 10 minutes (a longer one, or none, is kept).
3. A role without a privilege was told "may not be used by this database user: permission denied for schema public."
   (init-ca by a role that does not own the database: PostgreSQL 15 gives CREATE on public to its owner only) or
   "... for table certificates." (a role that may only read, issuing), and not what to do. The message now gives the
   GRANT, naming the role, or says to run it as the database's owner / with a role that may write. Likewise a
   search_path naming no schema that exists ("cannot be used: no schema has been selected to create in.").
4. A token holding two private keys under the CA's key URI that no label or id tells apart (made without an id by
   pkcs11-tool, which is common, then another made under the same label): every command of the CA failed, "they share
   an id (or have none) ... remove the one this CA does not use", which nothing told apart; pkcs11-tool
   --delete-object by that label removes whichever it finds first, and the CA's key, non-extractable, is lost with
   it. The CA now uses the key a test signature shows to be ca.pem's, check warns, and the messages warn against
   deleting by label.
5. A role's or database's ``synchronous_commit = off`` (a DBA's tuning) made certkit's durable commits return
   before the server's disk had them: ``issue-server`` delivered its bundle, the server crashed, and the
   certificate had no row (not listed, not revocable, never on a CRL); round nineteen's sync of a batch's rows
   synced nothing either. certkit's sessions now commit with ``synchronous_commit = local`` where it was off (what
   they commit with ``durable=False`` stays so; a stronger setting, on or remote_apply, is kept: no wait for a
   standby the DBA chose not to wait for).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

from cryptography import x509
from test_audit14_team import own_postgres  # noqa: F401 (a fixture)
from test_audit17_team import _role
from test_audit19_team import _back_after_crash, _server_pid
from test_team_hsm import env_for, init_token_ca

from certkit.vocabulary import serial_hex

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, run_certkit


# --- 1. a database (or a connection) not in UTF-8 ----------------------------------------------------------------
def _database(server, name: str, encoding: str) -> str:
    with server.connect() as conn:
        conn.execute(f"CREATE DATABASE \"{name}\" ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C' "
                     "TEMPLATE template0")
    return server.url(name)


def test_text_goes_to_the_inventory_as_utf8_whatever_the_database_or_libpq_says(tmp_path: Path, postgres_server,
                                                                                  postgres_url) -> None:
    from certkit.db_postgres_pool import close_idle

    tag = f"{os.getpid()}_{tmp_path.name[-6:]}".replace("-", "_")
    (tmp_path / "pass").write_text(PASSPHRASE + "\n")
    os.chmod(tmp_path / "pass", 0o600)
    home = tmp_path / "home"
    home.mkdir()
    base = certkit_env(HOME=str(home), **postgres_server.env())
    latin1 = _database(postgres_server, f"latin1_{tag}", "LATIN1")
    ascii_url = _database(postgres_server, f"ascii_{tag}", "SQL_ASCII")
    try:
        # A new inventory is not put in a database that cannot hold every name; nothing is made.
        refused = run_certkit("init-ca", "--ca-dir", tmp_path / "refused", "--name", "Latin CA", "--inventory", latin1,
                              "--passphrase-file", tmp_path / "pass", env=base)
        assert_clean_error(refused, f"The database {latin1} is encoded in LATIN1, which cannot hold every name a "
                                    "certificate may carry; create the database with ENCODING 'UTF8'")
        assert not (tmp_path / "refused").exists()

        # SQL_ASCII stores the bytes it is sent: certkit's UTF-8 comes back as it went (was: bytes, TypeError).
        env = {**base, "CERTKIT_CA_DIR": str(tmp_path / "ascii-ca")}
        run_certkit("init-ca", "--name", "ASCII CA", "--inventory", ascii_url, "--passphrase-file",
                    tmp_path / "pass", env=env, check=True)
        run_certkit("issue-client", "Jürgen 日本", "--out", tmp_path / "jp", "--passphrase-file", tmp_path / "pass",
                    env=env, check=True)
        listed = run_certkit("list", env=env, check=True)
        assert "CN=Jürgen 日本" in listed.stdout and "Traceback" not in listed.stderr

        # $PGCLIENTENCODING=LATIN1 on a UTF8 database (was: UnicodeEncodeError while recording, a traceback).
        env = {**base, "CERTKIT_CA_DIR": str(tmp_path / "utf-ca")}
        run_certkit("init-ca", "--name", "UTF CA", "--inventory", postgres_url, "--passphrase-file",
                    tmp_path / "pass", env=env, check=True)
        # (its copy, taken now, before any name outside LATIN1)
        tools = {**os.environ, **postgres_server.env()}
        dump = subprocess.run([str(postgres_server.bin / "pg_dump"), "-Fc", postgres_url], capture_output=True,
                              env=tools, check=True, timeout=120).stdout
        restore = [str(postgres_server.bin / "pg_restore"), "--no-owner", "-d", latin1]  # below
        latin_client = {**env, "PGCLIENTENCODING": "LATIN1"}
        run_certkit("issue-client", "Jürgen 日本", "--out", tmp_path / "jp2", "--passphrase-file", tmp_path / "pass",
                    env=latin_client, check=True)
        assert "CN=Jürgen 日本" in run_certkit("list", env={**env, "PGCLIENTENCODING": "SQL_ASCII"}, check=True).stdout

        # A DBA restores that inventory into a LATIN1 database: a name outside LATIN1 is refused in words before
        # anything is signed, names inside it still work, and check warns.
        subprocess.run(restore, input=dump, capture_output=True, env=tools, check=True, timeout=120)
        moved = {**env, "CERTKIT_INVENTORY_URL": latin1}
        before = sorted(tmp_path.iterdir())
        lost = run_certkit("issue-client", "Jürgen 日本 zwei", "--out", tmp_path / "jp3", "--passphrase-file",
                           tmp_path / "pass", env=moved)
        assert_clean_error(lost, f"The inventory {latin1} cannot store this text: character with byte sequence "
                                 "0xe6 0x97 0xa5 in encoding \"UTF8\" has no equivalent in encoding \"LATIN1\"; this "
                                 "command's change was rolled back. Copy the inventory (pg_dump, pg_restore) into a "
                                 "database created with ENCODING 'UTF8'")
        assert sorted(tmp_path.iterdir()) == before
        run_certkit("issue-client", "Jürgen", "--out", tmp_path / "j", "--passphrase-file", tmp_path / "pass",
                    env=moved, check=True)
        listed = json.loads(run_certkit("list", "--json", env=moved, check=True).stdout)
        assert [row["subject"] for row in listed["certificates"]] == ["CN=Jürgen"], listed
        checked = run_certkit("check", "--passphrase-file", tmp_path / "pass", env=moved)
        said = re.sub(r"(WARNING|ERROR|OK) +(\S+) +", r"\1 \2 ", checked.stdout)  # the columns' width aside
        assert (f"WARNING database {latin1} is encoded in LATIN1: a name outside it cannot be recorded, and its "
                "certificate is refused") in said, checked.stdout
        # The inventory was restored from the dump taken before jp2 was issued: check says so of jp2's bundle
        # (its row is in no inventory now), since round 37 finds rows deleted or lost to an older backup.
        assert (f"ERROR inventory-row {tmp_path / 'jp2' / 'cert.pem'} holds serial" in said
                and "which the inventory does not record" in said), checked.stdout

        # inventory migrate refuses it too, before it copies anything.
        solo = {**base, "CERTKIT_CA_DIR": str(tmp_path / "solo")}
        run_certkit("init-ca", "--name", "Solo", "--passphrase-file", tmp_path / "pass", env=solo, check=True)
        fresh = _database(postgres_server, f"latin1_fresh_{tag}", "LATIN1")
        assert_clean_error(run_certkit("inventory", "migrate", "--to", fresh, env=solo),
                           f"The database {fresh} is encoded in LATIN1")
        run_certkit("issue-server", "solo.example", "--out", tmp_path / "solo-www", "--passphrase-file",
                    tmp_path / "pass", env=solo, check=True)  # its SQLite inventory still takes writes
        close_idle(fresh)
    finally:
        for url in (latin1, ascii_url):
            close_idle(url)


# --- 2. a DBA's short statement_timeout ---------------------------------------------------------------------------
def test_short_statement_and_idle_timeouts_of_the_database_do_not_end_certkits_work(tmp_path: Path, postgres_server,
                                                                                   postgres_url) -> None:
    from certkit.db_postgres import PostgresDatabase
    from certkit.db_postgres_pool import close_idle

    name = postgres_url.rsplit("/", 1)[1]
    with postgres_server.connect() as conn:
        conn.execute(f'ALTER DATABASE "{name}" SET statement_timeout = \'1ms\'')
        conn.execute(f'ALTER DATABASE "{name}" SET idle_in_transaction_session_timeout = \'1ms\'')
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"), **postgres_server.env())
    (tmp_path / "pass").write_text(PASSPHRASE + "\n")
    os.chmod(tmp_path / "pass", 0o600)
    run_certkit("init-ca", "--name", "Timed CA", "--inventory", postgres_url, "--passphrase-file", tmp_path / "pass",
                env=env, check=True)
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names\n" + "".join(f"server,h{i}.example\n" for i in range(400)))
    run_certkit("issue-batch", manifest, "--format", "jsonl", "--out", tmp_path / "out.jsonl", "--passphrase-file",
                tmp_path / "pass", env=env, check=True)
    listed = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)
    assert [row["status"] for row in listed["certificates"]] == ["valid"] * 400
    # keyCompromise reads the key of each of the 399 others inside its transaction (was: idle-in-transaction timeout)
    serial = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])["serial"]
    run_certkit("revoke", serial, "--reason", "keyCompromise", env=env, check=True)
    run_certkit("crl", "--out", tmp_path / "crl.pem", "--passphrase-file", tmp_path / "pass", env=env, check=True)
    crl = x509.load_pem_x509_crl((tmp_path / "crl.pem").read_bytes())
    assert [f"{entry.serial_number:040X}" for entry in crl] == [serial]
    # The session's own: a statement longer than the database's 1 ms runs; a longer setting, or none, is kept.
    database = PostgresDatabase(postgres_url)
    with database.transaction() as tx:
        assert tx.execute("SELECT pg_sleep(0.05), current_setting('statement_timeout'), "
                          "current_setting('idle_in_transaction_session_timeout')").fetchone()[1:] == ("10min", "10min")
    for kept in ("20min", "0"):
        close_idle(postgres_url)
        with postgres_server.connect() as conn:
            conn.execute(f'ALTER DATABASE "{name}" SET statement_timeout = \'{kept}\'')
            conn.execute(f'ALTER DATABASE "{name}" SET idle_in_transaction_session_timeout = \'{kept}\'')
        with database.transaction() as tx:
            assert tx.execute("SELECT current_setting('statement_timeout'), "
                              "current_setting('idle_in_transaction_session_timeout')").fetchone() == (kept, kept)


# --- 3. a role that lacks a privilege: the GRANT to give ------------------------------------------------------------
def test_a_role_without_a_privilege_is_told_the_grant_it_needs(tmp_path: Path, postgres_server, pg_ca,
                                                               postgres_url) -> None:
    tag = f"{os.getpid()}_{tmp_path.name[-6:]}".replace("-", "_").lower()
    creator, reader = f"creator_{tag}", f"reader_{tag}"
    empty = postgres_server.create_database()
    with postgres_server.connect() as conn:
        conn.execute(f"CREATE ROLE {creator} LOGIN PASSWORD 'its-own'")
        conn.execute(f"GRANT CONNECT ON DATABASE \"{empty.rsplit('/', 1)[1]}\" TO {creator}")
    passfile = _role(tmp_path, postgres_server, postgres_url, reader, "SELECT ON ALL TABLES IN SCHEMA public")
    passfile.write_text(passfile.read_text() + f"*:*:*:{creator}:its-own\n")
    env = dict(pg_ca, PGPASSFILE=str(passfile))
    made = run_certkit("init-ca", "--ca-dir", tmp_path / "new", "--name", "New CA", "--inventory",
                       empty.replace("certkit@", f"{creator}@"), "--no-passphrase", env=env)
    assert_clean_error(made, "may not be used by this database user: permission denied for schema public; the role "
                             f"must be allowed to create the tables there (GRANT CREATE ON SCHEMA public TO {creator}; "
                             "since PostgreSQL 15 only the database's owner may, by default), or run this as the "
                             "database's owner.")
    reading = dict(env, CERTKIT_INVENTORY_URL=postgres_url.replace("certkit@", f"{reader}@"),
                   CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    assert run_certkit("list", env=reading).returncode == 0
    issued = run_certkit("issue-server", "ro.example", "--out", tmp_path / "ro", env=reading)
    assert_clean_error(issued, "permission denied for table certificates; the role lacks a privilege on the "
                               "inventory's tables (one that may only SELECT runs certkit list and check): GRANT "
                               f"SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {reader} (or the "
                               "inventory's schema), or use a role that may write; nothing was issued or written.")
    assert not (tmp_path / "ro").exists()
    # A search_path of schemas that do not exist (was: "cannot be used: no schema has been selected to create in.")
    nowhere = f"{empty}?options=-csearch_path%3Dnosuch"
    assert_clean_error(run_certkit("init-ca", "--ca-dir", tmp_path / "nowhere", "--name", "Nowhere CA", "--inventory",
                                   nowhere, "--no-passphrase", env=env),
                       f"The inventory {nowhere} cannot be created: no schema has been selected to create in (the "
                       "search_path, of the role, the database, options= in the URL or $PGOPTIONS, names no schema "
                       "that exists); create that schema, or fix the search_path.")


# --- 4. two keys under the CA's URI that no label or id tells apart -------------------------------------------------
def test_the_cas_key_is_told_by_a_signature_among_keys_no_label_or_id_tells_apart(tmp_path: Path, token,
                                                                                   monkeypatch) -> None:
    monkeypatch.setenv("CERTKIT_TEST_SUBPROCESS", "1")  # a PKCS#11 login belongs to a process
    made = token.tool("--keypairgen", "--key-type", "EC:prime256v1", "--label", "noid")  # no --id: no CKA_ID
    assert made.returncode == 0, made.stderr
    init_token_ca(tmp_path, token, obj="noid")
    env = env_for(tmp_path, token)
    again = token.tool("--keypairgen", "--key-type", "EC:prime256v1", "--label", "noid")  # an operator's slip
    assert again.returncode == 0, again.stderr
    assert token.tool("--list-objects", "--type", "privkey").stdout.count("label:      noid") == 2

    run_certkit("issue-server", "www.example.test", "--out", tmp_path / "www", env=env, check=True)
    assert openssl("verify", "-CAfile", tmp_path / "ca" / "ca.pem", tmp_path / "www" / "cert.pem").returncode == 0
    checked = run_certkit("check", env=env)
    assert (f"WARNING key        {token.uri('noid')} names 2 private keys that share a label and id; certkit uses the "
            "one ca.pem's key verifies (a test signature), and pkcs11-tool --delete-object by that label or id "
            "removes whichever it finds first: a CA's key deleted is lost (non-extractable).") in checked.stdout
    other = run_certkit("init-ca", "--ca-dir", tmp_path / "other", "--name", "Other", "--key-uri", token.uri("noid"),
                        "--pkcs11-module", token.module, env=env)
    assert_clean_error(other, f"2 private keys match {token.uri('noid')} (ids none, none); they share an id (or have "
                              "none), so no URI names one of them, and pkcs11-tool --delete-object by that label or id "
                              "removes whichever it finds first: a CA's key deleted is lost (non-extractable); for a "
                              "new CA, choose an object= label of its own.")


# --- 5. a DBA's synchronous_commit = off, and a crash -----------------------------------------------------------
def test_synchronous_commit_off_of_the_database_loses_no_delivered_certificate_in_a_crash(request, tmp_path: Path):
    """The WAL writer is stopped, so what is committed without waiting for the disk stays in the server's memory;
    it is killed once the bundle is delivered: the server restarts itself, from the WAL that was written."""
    server = request.getfixturevalue("own_postgres")
    url = server.create_database()
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path),
                      **server.env())
    run_certkit("init-ca", "--name", "Sync CA", "--inventory", url, env=env, check=True, subprocess=True)
    with server.connect() as conn:
        conn.execute(f"ALTER DATABASE \"{url.rsplit('/', 1)[1]}\" SET synchronous_commit = off")
    writer = _server_pid(server, "walwriter")
    os.kill(writer, signal.SIGSTOP)
    try:
        run_certkit("issue-server", "www.example.test", "--out", tmp_path / "www", env=env, check=True,
                    subprocess=True)
    finally:
        os.kill(writer, signal.SIGKILL)  # a crash: the postmaster restarts every process, from the WAL written
    _back_after_crash(server, writer)
    serial = serial_hex(x509.load_pem_x509_certificate((tmp_path / "www" / "cert.pem").read_bytes()).serial_number)
    listed = json.loads(run_certkit("list", "--json", env=env, check=True, subprocess=True).stdout)
    assert [(row["serial"], row["status"]) for row in listed["certificates"]] == [(serial, "valid")], listed
