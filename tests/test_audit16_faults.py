"""The sixteenth round's fault findings (audit faults, round sixteen): interruptions and races of
``inventory migrate`` to PostgreSQL, of a CA key kept in a PKCS#11 token (SoftHSM2), and of the ACME
account key rollover (RFC 8555 7.3.5).

1. An ACME key change whose new key another account took at the same moment (on PostgreSQL, between the
   server's look for a holder and its UPDATE) was answered 503 "The server's database is unavailable; try
   again later.": the database was fine, and trying again got the 409 the RFC names. Now it is that 409,
   with the holder's URL in Location, and the account keeps its key. A key change of an account deactivated
   at the same moment was answered 409 "The account's key changed meanwhile (another key change was
   accepted first)": no key had changed. Now it is 403 unauthorized, saying the account is deactivated.
2. A second ``certkit inventory migrate`` started while one ran was refused with "A running server (certkit acme
   serve) is using the inventory ...; Stop it, move the inventory, then start it again.": no server ran. Now
   it says that another move is under way.
3. ``init-ca --key-uri`` kept the new CA's certificate in the token (the record by which the next init-ca
   naming that key refuses to make a second CA on it) only after the CA directory was in place and the
   summary printed: killed in between, it left a CA the token knew nothing of, and the next ``init-ca`` on
   the same key made a second CA on it without a word (peers cannot tell the two CAs' certificates and CRLs
   apart; one's revocations unknown to the other). Now the record is made before the directory is placed,
   and taken out again if the directory could not be placed; ``certkit check`` names a token CA the token
   keeps no record of (made before, or through the library) and gives the commands that keep it.
4. A CA made again on its token key (``init-ca --reuse-key``) a second time, on a token that keeps no public
   key object (HSMs need not; the CA certificates in the token are the public half), failed with "The token
   holds the private key 'root' ... but no public key object for it (nor a certificate)": it held two
   certificates, both of that key. Several certificates of one key now give that key; certificates of several
   keys under the URI are said to be that, not "no ... certificate".
5. ``inventory migrate --to URL`` from a copy of a CA directory whose other copy had already moved the
   inventory to URL and gone on with it (issued, revoked, signed a CRL) said "holds an earlier copy of this
   inventory ... Drop the database, create it empty again, and run this again": the team's only record of
   what was issued and revoked since. Now a database that has gone on beyond this file is said to be in use,
   never to be dropped, with the count of certificates only this copy holds; a stale copy a stopped move
   left is still said to be one.

Proof without a finding: a move stopped at its COMMIT (certkit killed, or PostgreSQL stopped with ``pg_ctl
-m immediate``, while the copy is in PostgreSQL's log and the SQLite file not yet marked) loses nothing and
is finished by running it again.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from test_team_hsm import _real_processes, env_for, load  # noqa: F401 (an autouse fixture)

from certkit.vocabulary import serial_hex

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, run_certkit
from integrity_helpers import interrupt, start_paused


# --- 1. a key change racing another account for the same key (PostgreSQL) -----------------------------------
def _key_change_racing(tmp_path: Path, postgres_server, postgres_url: str, statement: str, of: str):
    """A key change by one account (``mover``) while another transaction, not yet committed, runs
    ``statement`` (its placeholders: the new key's thumbprint, then the id of the account ``of``, "mover" or
    "holder"): the server's request waits on that row, then the other transaction commits. Returns the
    answer, the two clients, the new key and its algorithm, and the server (stopped by the caller)."""
    import psycopg
    from cryptography.hazmat.primitives import hashes
    from test_acme_concurrency import _two_tier

    from acme_client import Client, account_key, b64, sign
    from acme_helpers import AcmeServer

    root, _issuing, env = _two_tier(tmp_path, postgres_url, **postgres_server.env())
    server = AcmeServer("--allow-domain", "kc.test", env=env)
    mover, holder = Client(server.directory, root), Client(server.directory, root)
    mover.register()
    holder.register()
    new_key, new_alg = account_key("ES256")
    url = mover.directory["keyChange"]
    inner = sign({"account": mover.kid, "oldKey": mover.key.public_key().to_json()}, new_key, new_alg, url=url,
                 nonce=None)
    other = psycopg.connect(postgres_url, password=postgres_server.password)
    try:
        other.execute(statement, (b64(new_key.public_key().thumbprint(hashes.SHA256)),
                                  {"mover": mover, "holder": holder}[of].kid.rsplit("/", 1)[1]))
        answer: dict = {}
        thread = threading.Thread(target=lambda: answer.setdefault("r", mover.post(url, inner, check=False)))
        thread.start()
        with psycopg.connect(postgres_url, password=postgres_server.password, autocommit=True) as watch:
            deadline = time.monotonic() + 60
            while not watch.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                    " AND datname = current_database()").fetchone()[0]:
                assert time.monotonic() < deadline and thread.is_alive(), answer
                time.sleep(0.02)
        other.commit()
        thread.join(60)
    finally:
        other.close()
    return answer["r"], mover, holder, (new_key, new_alg), server


def test_a_key_change_losing_a_race_for_the_key_is_a_409_naming_the_holder(tmp_path: Path, postgres_server,
                                                                            postgres_url: str) -> None:
    # Another account takes the new key in a transaction not yet committed: the server's look for a holder
    # finds none, and its UPDATE waits on that row until the other transaction commits.
    response, mover, holder, (new_key, new_alg), server = _key_change_racing(
        tmp_path, postgres_server, postgres_url, "UPDATE acme_accounts SET thumbprint = %s WHERE id = %s", "holder")
    try:
        assert response.status_code == 409, response.text
        assert response.headers["Location"] == holder.kid, response.headers
        assert "belongs to an account already" in response.json()["detail"]
        # Nothing changed for the account that asked: its old key still signs for it, the new one does not.
        assert mover.post(mover.kid).json()["status"] == "valid"
        assert mover.post(mover.kid, key=new_key, alg=new_alg, check=False).status_code in (400, 401, 403)
        assert "database is unavailable" not in server.stderr
    finally:
        server.stop()


def test_a_key_change_of_an_account_deactivated_meanwhile_says_so(tmp_path: Path, postgres_server,
                                                                   postgres_url: str) -> None:
    response, mover, _holder, (new_key, new_alg), server = _key_change_racing(
        tmp_path, postgres_server, postgres_url,
        "UPDATE acme_accounts SET status = 'deactivated' WHERE thumbprint <> %s AND id = %s", "mover")
    try:
        assert response.status_code == 403, response.text
        problem = response.json()
        assert problem["type"] == "urn:ietf:params:acme:error:unauthorized", problem
        assert "deactivated" in problem["detail"] and "changed meanwhile" not in problem["detail"], problem
        # Deactivated for good, under its old key: neither key acts for it.
        for key, alg in ((mover.key, mover.alg), (new_key, new_alg)):
            assert mover.post(mover.kid, key=key, alg=alg, check=False).status_code in (400, 401, 403)
    finally:
        server.stop()


# --- 2. two moves of one inventory at once -------------------------------------------------------------------
def _solo_ca(tmp_path: Path) -> dict[str, str]:
    """A CA on SQLite with a little history: issued, renewed, revoked, a CRL signed."""
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path))
    run_certkit("init-ca", "--name", "Moving CA", env=env, check=True)
    for name in ("web.internal", "db.internal"):
        run_certkit("issue-server", name, "--out", tmp_path / name, env=env, check=True)
    run_certkit("renew", tmp_path / "web.internal", env=env, check=True)
    run_certkit("revoke", tmp_path / "db.internal", "--reason", "keyCompromise", env=env, check=True)
    run_certkit("crl", "--out", tmp_path / "crl.pem", env=env, check=True)
    return env


def _listing(env: dict[str, str]) -> list[dict]:
    return json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]


def test_a_second_migrate_while_one_runs_is_not_blamed_on_an_acme_server(tmp_path: Path, postgres_url: str) -> None:
    env = dict(_solo_ca(tmp_path), PGPASSFILE=os.environ["PGPASSFILE"])
    before = _listing(env)
    inventory = tmp_path / "ca" / "inventory.sqlite3"
    # Opened before the writer's connection and closed after it: closing a descriptor of the file drops every
    # POSIX lock this process holds on it, the writer's SQLite locks included (SQLite's "How To Corrupt", 2.2).
    probe = os.open(inventory, os.O_RDONLY)
    writer = sqlite3.connect(inventory, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # the first move takes its lock on the file, then waits for this one
    first = subprocess.Popen([sys.executable, "-m", "certkit", "inventory", "migrate", "--to", postgres_url], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while _lockable(probe):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.02)
        second = run_certkit("inventory", "migrate", "--to", postgres_url, env=env)
        assert_clean_error(second, "Another certkit inventory migrate is moving the inventory")
        assert "acme serve" not in second.stderr, second.stderr
        writer.rollback()
        out, err = first.communicate(timeout=120)
    finally:
        writer.close()
        os.close(probe)
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err
    assert json.loads((tmp_path / "ca" / "certkit-ca.json").read_text()) == {"inventory": postgres_url}
    assert _listing(env) == before


def _lockable(fd: int) -> bool:
    """Whether a shared lock on the file of ``fd`` can be had now (no move holds its exclusive one); let go
    at once, the descriptor kept open."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(fd, fcntl.LOCK_UN)
    return True


# --- 3. init-ca on a token key stopped once its CA directory is in place ----------------------------------------
def _token_init(tmp_path: Path, token, name: str, *extra: str, obj: str = "root") -> list[str]:
    return ["init-ca", "--ca-dir", tmp_path / name, "--name", f"HSM {name}", "--key-uri", token.uri(obj),
            "--pkcs11-module", token.module, "--pin-file", token.pin_file, *extra]


def _issued_and_verified(tmp_path: Path, token, name: str) -> None:
    """The CA in ``name`` signs through the token, and openssl accepts what it signed."""
    out = tmp_path / f"{name}-server"
    run_certkit("issue-server", f"{name}.example.internal", "--out", out, env=env_for(tmp_path, token, name),
                check=True)
    assert openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", tmp_path / name / "ca.pem",
                   out / "cert.pem").returncode == 0


def test_an_init_ca_killed_once_its_directory_is_in_place_leaves_the_token_knowing_its_key_signs_it(
        tmp_path: Path, token) -> None:
    marker = tmp_path / "paused"
    proc = start_paused(_token_init(tmp_path, token, "killed"), certkit_env(), tmp_path, "placed", marker)
    assert interrupt(proc, signal.SIGKILL, marker).returncode == -signal.SIGKILL
    assert (tmp_path / "killed" / "ca.pem").is_file()  # the CA exists, whole
    # A second CA on the same key is refused as for a CA init-ca finished: the token says the key signs one.
    second = run_certkit(*_token_init(tmp_path, token, "second"), env=certkit_env())
    assert_clean_error(second, "already signs the CA 'CN=HSM killed'")
    assert not (tmp_path / "second").exists()
    _issued_and_verified(tmp_path, token, "killed")


def test_an_init_ca_that_cannot_place_its_directory_leaves_no_record_in_the_token(tmp_path: Path, token) -> None:
    from test_audit13_integrity import _straced

    failed = _straced(_token_init(tmp_path, token, "ca"), certkit_env(), "rename:error=EIO:when=1")
    stderr = failed.stderr.decode()
    assert failed.returncode == 1 and stderr.startswith("Error: ") and "Input/output error" in stderr, stderr
    assert "stays in token" in stderr and not (tmp_path / "ca").exists(), stderr
    assert "Certificate Object" not in token.tool("--list-objects").stdout  # no CA was made: nothing records one
    # The same command again takes the key made for it, without --reuse-key, and no warning of another CA.
    again = run_certkit(*_token_init(tmp_path, token, "ca"), env=certkit_env())
    assert again.returncode == 0 and "already signs" not in again.stderr, again.stderr
    _issued_and_verified(tmp_path, token, "ca")


# --- 4. a CA made again on its token key, more than once, on a token without a public key object ------------------
def test_reuse_key_works_a_second_time_on_a_token_that_keeps_no_public_key(tmp_path: Path, token) -> None:
    run_certkit(*_token_init(tmp_path, token, "first"), env=certkit_env(), check=True)
    deleted = token.tool("--delete-object", "--type", "pubkey", "--label", "root")  # HSMs need not keep one
    assert deleted.returncode == 0, deleted.stderr
    for name in ("second", "third"):
        made = run_certkit(*_token_init(tmp_path, token, name, "--reuse-key"), env=certkit_env())
        assert made.returncode == 0, made.stderr
        assert "already signs" in made.stderr and "'CN=HSM first'" in made.stderr, made.stderr  # each time
    listed = token.tool("--list-objects").stdout
    assert listed.count("Certificate Object") == 3 and "Public Key Object" not in listed, listed
    keys = {load(tmp_path / n / "ca.pem").public_key().public_bytes(serialization.Encoding.DER,
                                                                     serialization.PublicFormat.SubjectPublicKeyInfo)
            for n in ("first", "second", "third")}
    assert len(keys) == 1  # one key, three CA certificates
    for name in ("first", "third"):
        _issued_and_verified(tmp_path, token, name)


# --- 5. a database in use since another copy of the CA directory moved its inventory there ----------------------
@pytest.mark.parametrize("since", ["issued", "revoked", "crl"])
def test_a_database_in_use_is_never_called_an_earlier_copy_to_drop(tmp_path: Path, postgres_url: str,
                                                                   postgres_server, since: str) -> None:
    """Two hosts hold copies of one CA directory; the first moves its inventory to PostgreSQL and goes on
    with it; the second then runs the same move: it was told to drop the database, the team's only record of
    what the first issued and revoked since."""
    env = dict(_solo_ca(tmp_path), PGPASSFILE=os.environ["PGPASSFILE"])
    shutil.copytree(tmp_path / "ca", tmp_path / "copy")
    run_certkit("inventory", "migrate", "--to", postgres_url, env=env, check=True)
    if since == "issued":
        run_certkit("issue-client", "alice", "--out", tmp_path / "alice", env=env, check=True)
    elif since == "revoked":
        run_certkit("revoke", tmp_path / "web.internal", env=env, check=True)
    else:
        run_certkit("crl", "--out", tmp_path / "crl-2.pem", env=env, check=True)
    live = _listing(env)
    copy = dict(env, CERTKIT_CA_DIR=str(tmp_path / "copy"))
    run_certkit("issue-server", "only-here.internal", "--out", tmp_path / "only-here", env=copy, check=True)
    proc = run_certkit("inventory", "migrate", "--to", postgres_url, env=copy)
    assert_clean_error(proc, "used since it was copied there")
    assert "Do not drop the database" in proc.stderr and "Drop the database" not in proc.stderr, proc.stderr
    assert "This file holds 1 certificate the database does not" in proc.stderr, proc.stderr
    assert not (tmp_path / "copy" / "certkit-ca.json").exists()  # nothing changed here
    assert _listing(env) == live  # nor there


# --- proof: a move stopped at its commit (the copy durable in PostgreSQL, the SQLite file not yet marked) ---------
def _admin(pg, statement: str) -> None:
    with pg.connect() as conn:
        conn.execute(statement)
    pg.reload()  # the sessions opened next have the new setting


@pytest.mark.parametrize("how", ["SIGKILL", "immediate-stop"])
def test_a_migrate_stopped_at_its_commit_loses_nothing_and_finishes_when_run_again(tmp_path: Path, how: str) -> None:
    """PostgreSQL holds the move's COMMIT (a synchronous standby that never answers): the copy is in its log
    while certkit waits. Killing certkit there, or stopping the server there (pg_ctl -m immediate), leaves a
    CA that goes on with its SQLite file as it was; the same command run again finds its copy and finishes
    the move: every row, status, revocation and the CRL number carried over, the database bound to the CA."""
    from test_acme_concurrency import _pg_ctl

    from team_fixtures import started_postgres

    with started_postgres() as pg:
        url = pg.create_database("commit")
        env = dict(_solo_ca(tmp_path), **pg.env())
        before = _listing(env)
        _admin(pg, "ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
        proc = subprocess.Popen([sys.executable, "-m", "certkit", "inventory", "migrate", "--to", url], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            with pg.connect() as watch:
                deadline = time.monotonic() + 60
                while not watch.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
                                        ).fetchone()[0]:
                    assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                    time.sleep(0.02)
            if how == "SIGKILL":
                proc.kill()
            else:
                pg._pg("pg_ctl", "-D", str(pg.base / "data"), "-m", "immediate", "-w", "-t", "60", "stop")
            _out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if how == "SIGKILL":
            assert proc.returncode == -signal.SIGKILL
        else:
            assert_clean_error(subprocess.CompletedProcess(proc.args, proc.returncode, "", err),
                               "closed the connection during this command")
            _pg_ctl(pg, "start")
        _admin(pg, "ALTER SYSTEM RESET synchronous_standby_names")
        # The CA goes on with its SQLite file, which takes writes: nothing named the database yet.
        assert not (tmp_path / "ca" / "certkit-ca.json").exists() and _listing(env) == before
        again = json.loads(run_certkit("inventory", "migrate", "--to", url, "--json", env=env, check=True).stdout)
        assert again["resumed"] is True and again["tables"]["certificates"] == len(before) == 3
        assert json.loads((tmp_path / "ca" / "certkit-ca.json").read_text()) == {"inventory": url}
        assert _listing(env) == before and run_certkit("check", env=env).returncode == 0
        run_certkit("crl", "--out", tmp_path / "crl-2.pem", env=env, check=True)
        crl = x509.load_pem_x509_crl((tmp_path / "crl-2.pem").read_bytes())
        revoked = [c["serial"] for c in before if c["status"] == "revoked"]
        assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
        assert [serial_hex(r.serial_number) for r in crl] == revoked and len(revoked) == 1


def _self_signed_der(path: Path, name: str) -> Path:
    """A certificate of a key of its own (not the token's), DER, for pkcs11-tool --write-object."""
    import datetime as dt

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return path


def test_certificates_of_several_keys_under_the_label_are_said_so_not_called_missing(tmp_path: Path, token) -> None:
    made = token.tool("--keypairgen", "--key-type", "EC:prime256v1", "--label", "root")  # no id, as tools allow
    assert made.returncode == 0, made.stderr
    assert token.tool("--delete-object", "--type", "pubkey", "--label", "root").returncode == 0
    for name in ("other-1", "other-2"):
        written = token.tool("--write-object", _self_signed_der(tmp_path / f"{name}.der", name), "--type", "cert",
                             "--label", "root")
        assert written.returncode == 0, written.stderr
    proc = run_certkit(*_token_init(tmp_path, token, "ca"), env=certkit_env())
    assert_clean_error(proc, "certificates of 2 different keys under that URI")
    assert "nor a certificate" not in proc.stderr and not (tmp_path / "ca").exists()


def test_a_ca_on_a_token_holding_certificates_of_other_keys_under_its_label_still_signs(tmp_path: Path,
                                                                                         token) -> None:
    """The CA's certificate tells its key from the others (a test signature proves it), as before."""
    run_certkit(*_token_init(tmp_path, token, "ca"), env=certkit_env(), check=True)
    listed = token.tool("--list-objects", "--type", "privkey").stdout
    key_id = re.search(r"ID:\s+([0-9a-f]+)", listed).group(1)
    assert token.tool("--delete-object", "--type", "pubkey", "--label", "root").returncode == 0
    written = token.tool("--write-object", _self_signed_der(tmp_path / "other.der", "other"), "--type", "cert",
                         "--label", "root", "--id", key_id)
    assert written.returncode == 0, written.stderr
    _issued_and_verified(tmp_path, token, "ca")


def test_check_names_a_token_ca_the_token_keeps_no_record_of_and_how_to_keep_it(tmp_path: Path, token) -> None:
    """A CA made before the record was kept first (killed in between), or through the library: certkit check
    says that another init-ca could make a second CA on its key, and gives the commands that keep it; once run,
    the next init-ca naming the key is refused."""
    run_certkit(*_token_init(tmp_path, token, "ca"), env=certkit_env(), check=True)
    assert token.tool("--delete-object", "--type", "cert", "--label", "root").returncode == 0
    env = env_for(tmp_path, token, "ca")
    checked = run_certkit("check", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr  # a warning
    line = next(x for x in checked.stdout.splitlines() if "keeps no copy of ca.pem" in x)
    assert line.startswith("WARNING") and "second CA on it" in line, line
    convert, keep = line.split("Keep it there: ", 1)[1].split(" && ")
    for command in (convert, keep + f" --pin {token.pin}"):
        done = subprocess.run(shlex.split(command), cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    assert "keeps no copy" not in run_certkit("check", env=env).stdout
    assert_clean_error(run_certkit(*_token_init(tmp_path, token, "second"), env=certkit_env()),
                       "already signs the CA 'CN=HSM ca'")
