"""Audit round six, bad inputs and peers (reports badinput6, peers6), each as a class:

1. $CERTKIT_INVENTORY_URL that names no inventory is refused naming the variable, never "restore it from a
   backup"; what it may name (a PostgreSQL URL, an SQLite inventory, sqlite:///) still works;
2. renew reads $CERTKIT_P12_PASSWORD by the rules of a new password (set but empty, several lines, blank);
3. renew keeping an encrypted privkey.pem says it could not check it;
5. a CRL that cannot be written takes no CRL number;
6. --parent-passphrase-file without --parent-ca-dir is refused (it made a root);
8. inspect tells an RSA-PSS key from an RSA one;
9. addresses no client connects to (unspecified, broadcast, multicast) are refused as names;
peers6 #1: verify of a peer certificate keeps its reasons; #4: renew NAME lists every match, with its kind.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import assert_clean_error, openssl, run_certkit


# --- 1. $CERTKIT_INVENTORY_URL ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value,fragment", [
    ("", "$CERTKIT_INVENTORY_URL is set but empty"), ("  ", "$CERTKIT_INVENTORY_URL is set but empty"),
    ("garbage", "names garbage, which cannot be read (No such file or directory)"),
    ("mysql://u@h/db", "$CERTKIT_INVENTORY_URL is a mysql:// URL"),
    ("ca/ca.pem", "names ca/ca.pem, which is not an SQLite database"),
    ("/dev/null", "names /dev/null, which is not an SQLite database"),
    ("fifo", "names fifo, which is not an SQLite database"),
    ("dbname=ca password=s3cr3tpw", "names dbname=ca password=***"),
])
@pytest.mark.parametrize("command", [["list"], ["issue-client", "x"], ["crl"], ["revoke", "00112233445566778899"]])
def test_an_inventory_url_that_names_no_inventory_is_refused_by_name(ca_dir, ca_env, tmp_path, value, fragment,
                                                                     command):
    """badinput6 #1: a typo was reported as "the CA directory is incomplete", or "damaged ... restore it
    from a backup", and the variable was never named."""
    os.mkfifo(tmp_path / "fifo")
    before = (ca_dir / "inventory.sqlite3").read_bytes()
    proc = run_certkit(*command, env=ca_env | {"CERTKIT_INVENTORY_URL": value}, cwd=tmp_path)
    assert_clean_error(proc, fragment)
    assert "backup" not in proc.stderr and "s3cr3tpw" not in proc.stderr
    assert (ca_dir / "inventory.sqlite3").read_bytes() == before and not (tmp_path / "x").exists()


@pytest.mark.parametrize("form", ["path", "sqlite-url"])
def test_an_inventory_url_naming_an_sqlite_inventory_still_works(ca_dir, ca_env, tmp_path, form):
    shared = tmp_path / "shared.sqlite3"
    shared.write_bytes((ca_dir / "inventory.sqlite3").read_bytes())
    env = ca_env | {"CERTKIT_INVENTORY_URL": str(shared) if form == "path" else f"sqlite:///{shared}"}
    run_certkit("issue-server", "shared.test", "--out", tmp_path / "s", env=env, check=True)
    with sqlite3.connect(shared) as db:
        assert db.execute("SELECT count(*) FROM certificates").fetchone()[0] == 1
    assert json.loads(run_certkit("list", "--json", env=ca_env, check=True).stdout)["certificates"] == []


# --- 2. renew and $CERTKIT_P12_PASSWORD -----------------------------------------------------------------------------
@pytest.mark.parametrize("value,fragment", [("", "is set but empty"), ("line1\nline2", "several lines"),
                                            ("   ", "white space only"), ("pw\r", "ends in a carriage return")])
@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
def test_renew_reads_the_p12_password_as_a_new_one(ca_dir, ca_env, tmp_path, value, fragment, bulk):
    """badinput6 #2: an empty value removed bundle.p12 (exit 0); a two-line or blank one became its password."""
    good = ca_env | {"CERTKIT_P12_PASSWORD": "good-p12-password"}
    run_certkit("issue-server", "b.test", "--out", tmp_path / "b", "--p12", env=good, check=True)
    before = {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}
    args = ["--all"] if bulk else [tmp_path / "b"]
    proc = run_certkit("renew", *args, env=ca_env | {"CERTKIT_P12_PASSWORD": value})
    assert_clean_error(proc, f"$CERTKIT_P12_PASSWORD {'is set but empty' if not value else 'holds a secret'}")
    assert fragment in proc.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()} == before
    run_certkit("renew", *args, env=good, check=True)
    openssl("pkcs12", "-in", tmp_path / "b" / "bundle.p12", "-nokeys", "-passin", "pass:good-p12-password")


# --- 3. an encrypted key kept ---------------------------------------------------------------------------------------
def test_renew_says_it_could_not_check_an_encrypted_key(ca_dir, ca_env, tmp_path):
    run_certkit("issue-server", "d.test", "--out", tmp_path / "d", env=ca_env, check=True)
    key = tmp_path / "d" / "privkey.pem"
    openssl("genpkey", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-aes256", "-pass", "pass:secretpw",
            "-out", key)
    key.chmod(0o600)
    proc = run_certkit("renew", tmp_path / "d", env=ca_env, check=True)
    assert "privkey.pem is encrypted, so certkit could not check that it is the key of cert.pem" in proc.stdout


# --- 5. a CRL that cannot be written --------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["/proc/crl.pem", "/sys/crl.pem"])
def test_a_crl_that_cannot_be_written_takes_no_number(ca_dir, ca_env, tmp_path, where):
    proc = run_certkit("crl", "--out", where, env=ca_env)
    assert_clean_error(proc, f"Cannot write the CRL file {where}: no file can be made in ")
    run_certkit("crl", "--out", tmp_path / "crl.pem", env=ca_env, check=True)
    text = openssl("crl", "-in", tmp_path / "crl.pem", "-noout", "-crlnumber").stdout
    assert (text.decode() if isinstance(text, bytes) else text).strip() == "crlNumber=0x01"
    assert not [p for p in tmp_path.iterdir() if "probe" in p.name]


# --- 6. --parent-passphrase-file alone ------------------------------------------------------------------------------
def test_parent_passphrase_file_without_a_parent_is_refused(ca_env, tmp_path):
    secret = tmp_path / "pp"
    secret.write_text("parent passphrase\n")
    secret.chmod(0o600)
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "issuing", "--no-passphrase", "--parent-passphrase-file",
                       secret, env=ca_env)
    assert_clean_error(proc, "--parent-passphrase-file goes with --parent-ca-dir", code=2)
    assert not (tmp_path / "issuing").exists()


# --- 8. RSA-PSS -----------------------------------------------------------------------------------------------------
def test_inspect_tells_an_rsa_pss_key_apart(tmp_path, ca_env):
    key = tmp_path / "pss.key"
    openssl("genpkey", "-algorithm", "rsa-pss", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key)
    openssl("req", "-new", "-key", key, "-subj", "/CN=pss.test", "-out", tmp_path / "pss.csr")
    openssl("req", "-x509", "-key", key, "-subj", "/CN=pss.test", "-days", "3", "-out", tmp_path / "pss.pem")
    for file in ("pss.csr", "pss.pem"):
        data = json.loads(run_certkit("inspect", tmp_path / file, "--json", env=ca_env, check=True).stdout)
        assert json.dumps(data).count('"rsa-pss-2048"') >= 1 and '"rsa-2048"' not in json.dumps(data)
    assert_clean_error(run_certkit("sign-csr", tmp_path / "pss.csr", "--server", env=ca_env), "RSA-PSS")


# --- 9. addresses no client connects to -----------------------------------------------------------------------------
@pytest.mark.parametrize("address,fragment", [("0.0.0.0", "is the unspecified address"), ("::", "unspecified"),
                                              ("255.255.255.255", "is the broadcast address"),
                                              ("224.0.0.1", "is a multicast address"), ("ff02::1", "multicast")])
@pytest.mark.parametrize("command", ["issue-server", "issue-peer", "sign-csr"])
def test_addresses_no_client_connects_to_are_refused(ca_dir, ca_env, tmp_path, address, fragment, command):
    if command == "sign-csr":
        csr = tmp_path / "r.csr"
        subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", tmp_path / "k.pem", "-subj", "/CN=host.test", "-addext",
                        f"subjectAltName=DNS:host.test,IP:{address}", "-out", csr], check=True, capture_output=True)
        proc = run_certkit("sign-csr", csr, "--server", "--out", tmp_path / "o", env=ca_env)
        if proc.returncode == 0:  # dropped, and said so, is as good as refused
            data = run_certkit("inspect", tmp_path / "o" / "cert.pem", "--json", env=ca_env, check=True).stdout
            assert address not in data.replace("host.test", "")
            return
    else:
        proc = run_certkit(command, address, "--out", tmp_path / "o", env=ca_env)
    assert_clean_error(proc, fragment)
    assert not (tmp_path / "o").exists()


# --- peers6 #1: verify keeps a peer's reasons -----------------------------------------------------------------------
def test_verify_of_a_peer_keeps_its_reasons(ca_dir, ca_env, tmp_path):
    run_certkit("issue-peer", "node-1.internal", "10.0.0.1", "--out", tmp_path / "peer", env=ca_env, check=True)
    proc = run_certkit("verify", tmp_path / "peer" / "cert.pem", "--purpose", "server", "--name", "node-2.internal",
                       env=ca_env)
    assert proc.returncode == 1
    assert "  reason    not valid for name node-2.internal: it names node-1.internal, 10.0.0.1" in proc.stdout
    assert "peer      it carries serverAuth and clientAuth, so it is meant for either side\n" in proc.stdout
    assert "--purpose client" not in proc.stdout  # the other side fails the same way: not sent there
    run_certkit("revoke", tmp_path / "peer", "--reason", "keyCompromise", env=ca_env, check=True)
    proc = run_certkit("verify", tmp_path / "peer" / "cert.pem", "--purpose", "client", env=ca_env)
    assert proc.returncode == 1 and "  reason    revoked on " in proc.stdout, proc.stdout


# --- peers6 #4: renew NAME with many matches ------------------------------------------------------------------------
def test_renew_by_a_name_many_share_lists_them_all_with_their_kinds(ca_dir, ca_env, tmp_path):
    for n in (1, 2, 3):
        for command in ("issue-peer", "issue-server"):
            run_certkit(command, f"etcd-{n}.internal", "127.0.0.1", "--out", tmp_path / f"etcd-{n}-{command}",
                        env=ca_env, check=True)
    proc = run_certkit("renew", "127.0.0.1", env=ca_env)
    assert_clean_error(proc, "'127.0.0.1' names 6 current certificates")
    assert "; and 1 more)" in proc.stderr and "(peer) in " in proc.stderr and "(server) in " in proc.stderr
    assert "certkit list --name '127.0.0.1'" in proc.stderr
    assert Path(tmp_path / "etcd-1-issue-peer").is_dir()


# --- house6 #12: inspect describes a CRL -----------------------------------------------------------------------
@pytest.mark.parametrize("der", [False, True], ids=["pem", "der"])
def test_inspect_describes_a_crl_as_openssl_reads_it(ca_dir, ca_env, tmp_path, der):
    """house6 #12: inspect of the CRL certkit crl writes said "holds a x509 crl but no certificate or CSR"."""
    for name in ("a", "b"):
        run_certkit("issue-client", name, "--out", tmp_path / name, env=ca_env, check=True)
    run_certkit("revoke", tmp_path / "a", "--reason", "keyCompromise", env=ca_env, check=True)
    run_certkit("revoke", tmp_path / "b", "--reason", "affiliationChanged", env=ca_env, check=True)
    crl = tmp_path / ("crl.der" if der else "crl.pem")
    run_certkit("crl", "--out", crl, *(["--der"] if der else []), env=ca_env, check=True)
    data = json.loads(run_certkit("inspect", crl, "--json", env=ca_env, check=True).stdout)
    [item] = data["items"]
    text = openssl("crl", "-in", crl, "-inform", "DER" if der else "PEM", "-noout", "-text").stdout
    text = text.decode() if isinstance(text, bytes) else text
    listed = {line.split(":", 1)[1].strip() for line in text.splitlines() if "Serial Number:" in line}
    assert {e["serial"].lstrip("0") for e in item["revoked"]} == {s.lstrip("0") for s in listed}
    assert {e["reason"] for e in item["revoked"]} == {"keyCompromise", "affiliationChanged"}
    assert item["crl_number"] == 1 and item["status"] == "current" and item["issuer"] == "CN=certkit test root"
    human = run_certkit("inspect", crl, env=ca_env, check=True).stdout
    assert human.startswith(f"Certificate revocation list ({crl.name})") and "  revoked       2 certificates" in human


# --- regress7 #1, #2: a chain file's CAs in any order --------------------------------------------------------
def test_a_chain_file_with_its_cas_out_of_order_is_served_and_verified_without_a_note(tmp_path):
    """regress7: leaf, root, intermediate: serve refused it ("the root did not issue the leaf"), verify printed
    a chain through the root and a note calling the root a stranger. Clients build the chain in any order."""
    import ssl

    from conftest import PASSPHRASE, certkit_env

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "root"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path))
    run_certkit("init-ca", "--name", "Order Root", env=env, check=True)
    run_certkit("init-ca", "--ca-dir", tmp_path / "inter", "--parent-ca-dir", tmp_path / "root", "--name",
                "Order Issuing", env=env, check=True)
    run_certkit("issue-server", "localhost", "127.0.0.1", "--ca-dir", tmp_path / "inter", "--out", tmp_path / "web",
                env=env, check=True)
    web = tmp_path / "web"
    mixed = tmp_path / "mixed.pem"
    mixed.write_bytes((web / "cert.pem").read_bytes() + (tmp_path / "root" / "ca.pem").read_bytes()
                      + (tmp_path / "inter" / "ca.pem").read_bytes())
    proc = run_certkit("verify", mixed, "--purpose", "server", "--ca-dir", tmp_path / "root", env=env)
    assert proc.returncode == 0 and "note" not in proc.stdout, proc.stdout
    import socket

    from serve_process import serving

    with serving("--port", "0", "--cert", str(mixed), "--key", str(web / "privkey.pem"), env=env) as server:
        context = ssl.create_default_context(cafile=str(tmp_path / "root" / "ca.pem"))
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version()


# --- regress7 #4: an extra file mixing a key with public PEM --------------------------------------------------
def test_an_extra_file_with_anything_besides_public_pem_is_0600(tmp_path):
    import base64
    import stat

    from certkit import CA

    ca = CA.create("Modes CA")
    issued = ca.issue_server(["web.test"])
    secret = (b"apiVersion: v1\nkind: Secret\ndata:\n  tls.key: " + base64.b64encode(issued.private_key_pem)
              + b"\nstringData:\n  ca.crt: |\n" + ca.cert_pem)
    issued.write(tmp_path / "b", extra={"secret.yaml": secret, "ca.crt": ca.cert_pem,
                                        "both.crt": issued.cert_pem + ca.cert_pem})
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "b").iterdir()}
    assert modes["secret.yaml"] == 0o600 and modes["privkey.pem"] == 0o600
    assert modes["ca.crt"] == 0o644 and modes["both.crt"] == 0o644


# --- regress7 #5, #6: acme serve --host as serve's; '-' for a folder ------------------------------------------
@pytest.mark.parametrize("host,advice", [("localhost:14000", "give --host localhost --port 14000"),
                                         ("https://localhost/", "is a URL"), ("ops@example.com", "email")])
def test_acme_serve_host_gets_serves_advice(ca_dir, ca_env, host, advice):
    proc = run_certkit("acme", "serve", "--host", host, "--port", "0", env=ca_env)
    assert_clean_error(proc, "Invalid value for '--host'", code=2)
    assert advice in proc.stderr and "issue-client" not in proc.stderr


@pytest.mark.parametrize("command", [["init-ca", "--no-passphrase"], ["list"], ["issue-server", "a.test"]])
def test_a_dash_names_no_ca_directory(ca_env, tmp_path, command):
    proc = run_certkit(*command, "--ca-dir", "-", env=ca_env, cwd=tmp_path)
    assert_clean_error(proc, "'-' names no folder here")
    assert not (tmp_path / "-").exists()


# --- docs6 #1, #2: a CRL beside certificates; a certificate repeated in a chain file --------------------------
def test_inspect_of_a_file_with_a_crl_beside_a_certificate_describes_both(ca_dir, ca_env, tmp_path):
    run_certkit("issue-server", "m.test", "--out", tmp_path / "m", env=ca_env, check=True)
    run_certkit("crl", "--out", tmp_path / "crl.pem", env=ca_env, check=True)
    mixed = tmp_path / "mixed.pem"
    mixed.write_bytes(b"".join((tmp_path / n).read_bytes() for n in ("m/cert.pem", "m/privkey.pem", "crl.pem")))
    data = json.loads(run_certkit("inspect", mixed, "--json", env=ca_env, check=True).stdout)
    assert [i["type"] for i in data["items"]] == ["certificate", "crl"]
    assert data["private_keys"][0]["matches"] == "CN=m.test"


def test_a_chain_file_repeating_a_certificate_is_served_and_gets_no_note(tmp_path):
    from conftest import PASSPHRASE, certkit_env
    from serve_process import serving

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "root"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path))
    run_certkit("init-ca", "--name", "Dup Root", env=env, check=True)
    run_certkit("init-ca", "--ca-dir", tmp_path / "inter", "--parent-ca-dir", tmp_path / "root", "--name",
                "Dup Issuing", env=env, check=True)
    run_certkit("issue-server", "localhost", "--ca-dir", tmp_path / "inter", "--out", tmp_path / "web", env=env,
                check=True)
    web = tmp_path / "web"
    twice = tmp_path / "twice.pem"
    twice.write_bytes((web / "fullchain.pem").read_bytes() + (tmp_path / "inter" / "ca.pem").read_bytes())
    proc = run_certkit("verify", twice, "--purpose", "server", "--ca-dir", tmp_path / "root", env=env)
    assert proc.returncode == 0 and "note" not in proc.stdout, proc.stdout
    with serving("--port", "0", "--cert", str(twice), "--key", str(web / "privkey.pem"), env=env) as server:
        assert server.port > 0


# --- team6 #1, #2: an intermediate's directory and the root's certificates; the variable named ------------------
def test_verify_with_an_intermediates_directory_refuses_what_the_root_issued(tmp_path):
    """team6 #1: a certificate the ROOT issued and revoked for keyCompromise was VALID "trusted int1": the
    intermediate's inventory knows nothing of it. Now refused as not this CA's; the root's directory says why."""
    from conftest import PASSPHRASE, certkit_env

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "root"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path))
    run_certkit("init-ca", "--name", "T Root", env=env, check=True)
    run_certkit("init-ca", "--ca-dir", tmp_path / "int1", "--parent-ca-dir", tmp_path / "root", "--name", "T Int",
                env=env, check=True)
    run_certkit("issue-server", "a.test", "--out", tmp_path / "a", env=env, check=True)
    run_certkit("revoke", tmp_path / "a", "--reason", "keyCompromise", env=env, check=True)
    run_certkit("issue-server", "b.test", "--out", tmp_path / "b", "--ca-dir", tmp_path / "int1", env=env, check=True)
    proc = run_certkit("verify", tmp_path / "a" / "cert.pem", "--purpose", "server", "--ca-dir", tmp_path / "int1",
                       env=env)
    assert proc.returncode == 1 and "not issued by this CA (CN=T Int) nor by a CA below it" in proc.stdout
    proc = run_certkit("verify", tmp_path / "a" / "cert.pem", "--purpose", "server", "--ca-dir", tmp_path / "root",
                       env=env)
    assert proc.returncode == 1 and "reason: keyCompromise" in proc.stdout
    for ca in ("int1", "root"):  # what the intermediate issued: valid under either
        proc = run_certkit("verify", tmp_path / "b", "--purpose", "server", "--ca-dir", tmp_path / ca, env=env)
        assert proc.returncode == 0, proc.stdout


def test_an_inventory_the_variable_names_is_blamed_on_the_variable(ca_dir, ca_env, tmp_path):
    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE x (a)")
    proc = run_certkit("list", env=ca_env | {"CERTKIT_INVENTORY_URL": str(other)})
    assert_clean_error(proc, "that inventory is the one $CERTKIT_INVENTORY_URL names, not the CA directory's own")
