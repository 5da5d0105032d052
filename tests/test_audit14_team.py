"""Audit team, round fourteen (the PostgreSQL inventory, the PKCS#11 CA key, trust stores).

1. A batch into one file (``--format jsonl|tar|k8s --out FILE``) records its certificates pending
   without waiting for the server's disk and makes them durable (``PostgresDatabase.sync``) before
   the file is put in place. That sync waited for nothing: PostgreSQL waits at commit only for a
   transaction that wrote to its log, and ``SELECT txid_current()`` writes nothing there. A server
   crash (``pg_ctl stop -m immediate``) right after the file was in place lost the last chunks' rows:
   certificates with their keys in the file, which the inventory never knew (no CRL could list them).

2. A CA whose token keeps its private key but no public key object (nor certificate) for it (HSMs
   need not keep one; ``pkcs11-tool --delete-object --type pubkey``) could sign nothing: every
   command said the public half is needed "to build the CA certificate", which ca.pem holds. The
   CA certificate's key is now used, once a test signature proves the token's key is its pair; a
   key that is not (another key under the URI) is refused as not the CA certificate's.
3. A key made with CKA_ALWAYS_AUTHENTICATE (the PIN again before each signature) was refused as
   "cannot sign: user not logged in" by a session that was logged in; now said as it is. (And "a
   ecdsa-p521 key" is "an ecdsa-p521 key".)

4. A relative path in the inventory URL (``passfile=mypgpass``, ``sslkey=``, ``sslrootcert=``...) was
   written into certkit-ca.json as given, and libpq looked for it in the folder of each later
   command: run from elsewhere, ``list`` said no password was found (``put it in ~/.pgpass``).
   ``init-ca`` and ``inventory migrate`` now refuse it, naming the full path to write.

5. ``--pkcs11-module ./libx.so`` (or ``module-path=./libx.so`` in the key URI): the module was found
   in this folder, then handed to the loader as ``libx.so`` (without the ``./``), which looks for a
   name without a '/' in the library path: "cannot open shared object file" for a file that is
   there. And a relative module path went into certkit-ca.json as given, for commands run from
   any folder. The module is now named in full.

6. An inventory URL naming its password file (``passfile=/path``, which libpq reads instead of
   ~/.pgpass and $PGPASSFILE): when it was missing, or held no line for the server, the error said
   "none was found: put it in ~/.pgpass (or $PGPASSFILE)", where libpq never looked; a wrong
   password in it was "check ~/.pgpass, $PGPASSFILE or $PGPASSWORD". Both now name that file.

PostgreSQL and SoftHSM2 are started by the tests (tests/team_postgres.py, tests/team_hsm.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from cryptography import x509

from certkit.constants import ENV_INVENTORY_URL as ENV_URL
from certkit.vocabulary import serial_hex

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, run_certkit


@pytest.fixture
def own_postgres():
    """A PostgreSQL server of this test alone: it is crashed and started again."""
    from team_fixtures import started_postgres

    with started_postgres() as server:
        yield server


def _crash(server) -> None:
    """What a killed postmaster (or an OOM kill of the server) does: no shutdown checkpoint."""
    server._pg("pg_ctl", "-D", str(server.base / "data"), "-m", "immediate", "-w", "-t", "60", "stop")


def _start_again(server) -> None:
    options = (f"-c listen_addresses=127.0.0.1 -p {server.port} -k {server.base} -c max_connections=200 "
               "-c shared_buffers=32MB -c fsync=off -c full_page_writes=off")
    server._pg("pg_ctl", "-D", str(server.base / "data"), "-l", str(server.base / "log"), "-w", "-t", "60",
               "-o", options, "start")


def _serials_in_tar(path: Path) -> set[str]:
    found = set()
    with tarfile.open(path) as archive:
        for member in archive.getmembers():
            if member.name.endswith("/cert.pem"):
                cert = x509.load_pem_x509_certificate(archive.extractfile(member).read())
                found.add(serial_hex(cert.serial_number))
    return found


# --- finding 1: the sync before a batch file is put in place ------------------------------------
def test_a_server_crash_after_a_batch_file_is_in_place_loses_none_of_its_rows(tmp_path, own_postgres):
    """40 certificates in chunks of 5 into one tar; paused once the tar is in place, the server is
    crashed. Started again, the inventory knows every certificate the tar holds (before the fix, the
    last chunks' rows were gone, and certkit had said they 'stay pending')."""
    from integrity_helpers import start_paused

    url = own_postgres.create_database()
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      HOME=str(tmp_path), **own_postgres.env())
    run_certkit("init-ca", "--name", "Crash CA", "--inventory", url, env=env, check=True, subprocess=True)
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names\n" + "".join(f"server,h{i}.example.test\n" for i in range(40)))
    marker = tmp_path / "paused"
    proc = start_paused(["issue-batch", manifest, "--format", "tar", "--out", tmp_path / "out.tar", "--jobs", "1"],
                        dict(env, CERTKIT_TEST_CHUNK_SIZE="5"), tmp_path, "placed", marker)
    try:
        _crash(own_postgres)
    finally:
        marker.unlink(missing_ok=True)  # the batch goes on: its marks find no server
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "stay pending" in err, out + err
    _start_again(own_postgres)
    in_tar = _serials_in_tar(tmp_path / "out.tar")
    assert len(in_tar) == 40
    listed = subprocess.run([sys.executable, "-m", "certkit", "list", "--json"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    recorded = {c["serial"] for c in json.loads(listed.stdout)["certificates"] if c["status"] == "valid"}
    assert in_tar <= recorded, f"{len(in_tar - recorded)} certificates of out.tar have no row"


# --- findings 2 and 3: what the token keeps beside the CA key -------------------------------------
def _tool(token, *args: str) -> None:
    proc = token.tool(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _token_ca(tmp_path: Path, token, name: str, obj: str) -> dict[str, str]:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / name), CERTKIT_PKCS11_PIN=token.pin, HOME=str(tmp_path))
    run_certkit("init-ca", "--name", f"HSM {name}", "--key-uri", token.uri(obj), "--pkcs11-module", token.module,
                env=env, check=True, subprocess=True)
    return env


def test_a_token_ca_whose_public_key_object_is_gone_still_signs_what_peers_accept(tmp_path, token):
    env = _token_ca(tmp_path, token, "ca", "nopub")
    _tool(token, "--delete-object", "--type", "pubkey", "--label", "nopub")
    _tool(token, "--delete-object", "--type", "cert", "--label", "nopub")
    issued = run_certkit("issue-server", "www.example.test", "--out", tmp_path / "www", env=env, subprocess=True)
    assert issued.returncode == 0, issued.stderr
    crl = run_certkit("crl", "--out", tmp_path / "ca.crl", env=env, subprocess=True)
    assert crl.returncode == 0, crl.stderr
    check = run_certkit("check", env=env, subprocess=True)
    assert check.returncode == 0 and "signs for ca.pem" in check.stdout, check.stdout + check.stderr
    ca = str(tmp_path / "ca" / "ca.pem")
    assert openssl("verify", "-purpose", "sslserver", "-CAfile", ca, str(tmp_path / "www" / "cert.pem")).returncode == 0
    assert openssl("crl", "-in", str(tmp_path / "ca.crl"), "-CAfile", ca, "-noout").returncode == 0


@pytest.mark.parametrize("curve", ["prime256v1", "secp384r1"])
def test_another_key_without_a_public_object_is_not_taken_for_the_ca_key(tmp_path, token, curve):
    """The URI in certkit-ca.json names a key of the token that is not the CA certificate's, and the
    token keeps no public object for it: refused, naming the file, and nothing signed."""
    env = _token_ca(tmp_path, token, "ca", "real")
    _tool(token, "--keypairgen", "--key-type", f"EC:{curve}", "--label", "impostor", "--id", "77", "--usage-sign")
    _tool(token, "--delete-object", "--type", "pubkey", "--label", "impostor")
    config = tmp_path / "ca" / "certkit-ca.json"
    config.write_text(config.read_text().replace("object=real", "object=impostor"))
    proc = run_certkit("issue-server", "www.example.test", "--out", tmp_path / "www", env=env, subprocess=True)
    assert_clean_error(proc, "does not belong to the CA certificate")
    assert "certkit-ca.json" in proc.stderr
    assert not (tmp_path / "www").exists()


def test_a_key_that_wants_the_pin_before_each_signature_is_said_as_such(tmp_path, token):
    _tool(token, "--keypairgen", "--key-type", "EC:prime256v1", "--label", "each", "--id", "78", "--usage-sign",
          "--always-auth")
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_PKCS11_PIN=token.pin, HOME=str(tmp_path))
    proc = run_certkit("init-ca", "--name", "Each", "--key-uri", token.uri("each"), "--pkcs11-module", token.module,
                       env=env, subprocess=True)
    assert_clean_error(proc, "CKA_ALWAYS_AUTHENTICATE")
    assert "not logged in" not in proc.stderr
    assert not (tmp_path / "ca").exists()


def test_a_key_type_certkit_does_not_sign_with_is_named_with_its_article(tmp_path, token):
    _tool(token, "--keypairgen", "--key-type", "EC:secp521r1", "--label", "big", "--id", "79", "--usage-sign")
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_PKCS11_PIN=token.pin, HOME=str(tmp_path))
    proc = run_certkit("init-ca", "--name", "Big", "--key-uri", token.uri("big"), "--pkcs11-module", token.module,
                       env=env, subprocess=True)
    assert_clean_error(proc, "is an ecdsa-p521 key")


# --- finding 4: a relative path in the URL certkit-ca.json keeps --------------------------------------
@pytest.mark.parametrize("parameter", ["passfile", "sslkey", "sslrootcert"])
def test_a_relative_path_in_the_inventory_url_is_refused_before_it_is_kept(tmp_path, postgres_server, postgres_url,
                                                                            parameter):
    (tmp_path / "mypgpass").write_text(postgres_server.passfile.read_text())
    (tmp_path / "mypgpass").chmod(0o600)
    env = {k: v for k, v in certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                                        HOME=str(tmp_path)).items() if k != "PGPASSFILE"}
    url = f"{postgres_url}?{parameter}=mypgpass"
    proc = run_certkit("init-ca", "--name", "Rel", "--inventory", url, env=env, cwd=tmp_path, subprocess=True)
    assert_clean_error(proc, f"{parameter}={tmp_path / 'mypgpass'}")
    assert not (tmp_path / "ca").exists()
    run_certkit("init-ca", "--name", "Solo", env=env, cwd=tmp_path, check=True, subprocess=True)
    proc = run_certkit("inventory", "migrate", "--to", url, env=env, cwd=tmp_path, subprocess=True)
    assert_clean_error(proc, "a relative path")
    assert not (tmp_path / "ca" / "certkit-ca.json").exists()
    # Written in full, it is kept, and read from any folder.
    full = f"{postgres_url}?passfile={tmp_path / 'mypgpass'}"
    run_certkit("inventory", "migrate", "--to", full, env=env, cwd=tmp_path, check=True, subprocess=True)
    (tmp_path / "elsewhere").mkdir()
    listed = run_certkit("list", env=env, cwd=tmp_path / "elsewhere", subprocess=True)
    assert listed.returncode == 0, listed.stderr


# --- finding 5: a PKCS#11 module named by a relative path ----------------------------------------------
@pytest.mark.parametrize("where", ["option", "uri"])
def test_a_module_given_by_a_relative_path_is_loaded_and_kept_in_full(tmp_path, token, where):
    import shutil

    shutil.copy(token.module, tmp_path / "libmodule.so")
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_PKCS11_PIN=token.pin, HOME=str(tmp_path))
    uri = token.uri("rel")
    args = ["--key-uri", uri, "--pkcs11-module", "./libmodule.so"] if where == "option" else \
        ["--key-uri", f"{uri}?module-path=./libmodule.so"]
    made = run_certkit("init-ca", "--name", "Rel module", *args, env=env, cwd=tmp_path, subprocess=True)
    assert made.returncode == 0, made.stderr
    config = json.loads((tmp_path / "ca" / "certkit-ca.json").read_text())
    assert config["pkcs11_module"] == str(tmp_path / "libmodule.so")
    (tmp_path / "elsewhere").mkdir()
    issued = run_certkit("issue-server", "www.example.test", "--out", tmp_path / "www", env=env,
                         cwd=tmp_path / "elsewhere", subprocess=True)
    assert issued.returncode == 0, issued.stderr


# --- finding 6: the password file the URL names -------------------------------------------------------
def test_the_password_file_the_url_names_is_the_one_the_error_names(tmp_path, postgres_server, pg_ca):
    env = {k: v for k, v in pg_ca.items() if k != "PGPASSFILE"}
    url = json.loads((Path(env["CERTKIT_CA_DIR"]) / "certkit-ca.json").read_text())["inventory"]
    passfile = tmp_path / "team.pgpass"
    env[ENV_URL] = f"{url}?passfile={passfile}"
    proc = run_certkit("list", env=env, subprocess=True)
    assert_clean_error(proc, f"the password file {passfile} that the URL names (passfile=")
    assert "does not exist" in proc.stderr and "put it in ~/.pgpass" not in proc.stderr
    passfile.write_text(f"127.0.0.1:1:*:certkit:{postgres_server.password}\n")  # another port's line
    passfile.chmod(0o600)
    proc = run_certkit("list", env=env, subprocess=True)
    assert_clean_error(proc, "holds no line for this connection")
    passfile.write_text(f"127.0.0.1:{postgres_server.port}:*:certkit:not-the-password\n")
    proc = run_certkit("list", env=env, subprocess=True)
    assert_clean_error(proc, f"check the password file {passfile} that the URL names")
    passfile.write_text(f"127.0.0.1:{postgres_server.port}:*:certkit:{postgres_server.password}\n")
    assert run_certkit("list", env=env, subprocess=True).returncode == 0
