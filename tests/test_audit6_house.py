"""Audit round six, one house (report house6), each finding as a class across commands:

1. any file of a bundle, or a copy of its certificate elsewhere, names the bundle for renew as for revoke;
2. renew --json: old_serial and new_serial in single and bulk renewals, names as SAN entries everywhere;
4. error lines say moments as the success lines do (``2026-12-01 16:04:53 UTC``), never the stored form;
5. sign-csr --json: what the CSR asked for in the same SAN vocabulary as what was granted;
6. a file argument that does not exist: one line, exit status 1, in every command;
8. a client's --dns gets the newcomer advice a server name gets (URL, port, CIDR, an email);
11. export-p12 does not pack a certificate its CA revoked.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from certkit.vocabulary import serial_hex

from conftest import assert_clean_error, openssl, run_certkit

STORED_MOMENT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
SAID_MOMENT = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")


def serial_in(folder: Path) -> str:
    return serial_hex(x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes()).serial_number)


# --- 1. any file of a bundle names it ---------------------------------------------------------------------------
@pytest.mark.parametrize("given", ["fullchain.pem", "cert.pem", "copy"])
def test_renew_takes_any_file_of_the_bundle(ca_dir, ca_env, tmp_path, given):
    """house6 #1: ``renew DIR/fullchain.pem`` said "no bundle folder is known to hold it" of a recorded
    folder, and advised --out, which would have left a second live bundle."""
    run_certkit("issue-client", "erin", "--out", tmp_path / "erin", env=ca_env, check=True)
    old = serial_in(tmp_path / "erin")
    ref = tmp_path / "erin" / given
    if given == "copy":
        ref = tmp_path / "copy.pem"
        ref.write_bytes((tmp_path / "erin" / "fullchain.pem").read_bytes())
    proc = run_certkit("renew", ref, "--json", env=ca_env, check=True)
    data = json.loads(proc.stdout)
    assert data["old_serial"] == old and data["new_serial"] == serial_in(tmp_path / "erin") != old
    assert Path(data["folder"]).resolve() == (tmp_path / "erin").resolve()
    openssl("verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", tmp_path / "erin" / "ca.pem",
            tmp_path / "erin" / "cert.pem")


# --- 2. one vocabulary in renew --json ------------------------------------------------------------------------------
def test_renew_json_says_old_and_new_serials_and_san_entries_in_both_modes(ca_dir, ca_env, tmp_path):
    run_certkit("issue-client", "bob", "--out", tmp_path / "bob", env=ca_env, check=True)
    run_certkit("issue-client", "alice", "--email", "alice@example.com", "--out", tmp_path / "alice", env=ca_env,
                check=True)
    listed = {c["subject"]: c["names"] for c in json.loads(run_certkit("list", "--json", env=ca_env,
                                                                           check=True).stdout)["certificates"]}
    single = json.loads(run_certkit("renew", tmp_path / "bob", "--json", env=ca_env, check=True).stdout)
    assert single["serial"] == single["new_serial"] == serial_in(tmp_path / "bob")
    assert single["names"] == listed["CN=bob"] == ["DirName:CN=bob"]
    assert single["issuer"] == "CN=certkit test root" and len(single["fingerprint_sha256"]) == 64
    bulk = json.loads(run_certkit("renew", "--expiring", "1000d", "--kind", "client", "--json", env=ca_env,
                                  check=True).stdout)
    by_name = {tuple(c["domains"]) or (c["names"][0],): c for c in bulk["certificates"]}
    alice = by_name[("alice@example.com",)]
    assert alice["names"] == listed["CN=alice"] == ["email:alice@example.com"]
    assert alice["old_serial"] == alice["serial"] and alice["new_serial"] == serial_in(tmp_path / "alice")
    assert by_name[("DirName:CN=bob",)]["old_serial"] == single["new_serial"]


# --- 4. moments in error lines --------------------------------------------------------------------------------------
def test_error_lines_say_moments_as_people_read_them(ca_dir, ca_env, tmp_path):
    run_certkit("issue-client", "rita", "--out", tmp_path / "rita", env=ca_env, check=True)
    said = run_certkit("revoke", tmp_path / "rita", "--reason", "keyCompromise", env=ca_env, check=True).stdout
    errors = [run_certkit("revoke", tmp_path / "rita", env=ca_env), run_certkit("renew", tmp_path / "rita", env=ca_env)]
    csr = tmp_path / "again.csr"
    openssl("req", "-new", "-key", tmp_path / "rita" / "privkey.pem", "-subj", "/CN=x.internal", "-out", csr)
    errors.append(run_certkit("sign-csr", csr, "--server", "--out", tmp_path / "x", env=ca_env))
    moment = SAID_MOMENT.search(said).group(0)
    for proc in errors:
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert not STORED_MOMENT.search(proc.stderr) and moment in proc.stderr, proc.stderr


# --- 5. sign-csr's requested names ---------------------------------------------------------------------------------
def test_sign_csr_json_names_what_was_asked_as_it_names_what_was_granted(ca_dir, ca_env, tmp_path):
    conf = tmp_path / "r.cnf"
    conf.write_text("[req]\ndistinguished_name=dn\n[dn]\n[d]\nCN=dirx\nO=Org\n")
    subprocess.run(["openssl", "req", "-new", "-config", conf, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", tmp_path / "c.key", "-subj", "/CN=carol", "-addext",
                    "subjectAltName=email:carol@example.com,URI:spiffe://ex.org/carol,DNS:carol.dev.internal,"
                    "IP:10.1.2.3,dirName:d", "-out", tmp_path / "c.csr"], check=True, capture_output=True)
    data = json.loads(run_certkit("sign-csr", tmp_path / "c.csr", "--server", "--out", tmp_path / "c", "--json",
                                  env=ca_env, check=True).stdout)
    assert data["requested"]["names"] == ["email:carol@example.com", "URI:spiffe://ex.org/carol",
                                          "DNS:carol.dev.internal", "IP:10.1.2.3", "DirName:O=Org,CN=dirx"]
    assert set(data["names"]) <= set(data["requested"]["names"]) | {"DNS:carol"}
    dropped = {d.split(" ", 2)[1] for d in data["dropped"]}
    assert dropped == {"email:carol@example.com", "URI:spiffe://ex.org/carol", "DirName:O=Org,CN=dirx"}


# --- 6. a file that does not exist ----------------------------------------------------------------------------------
MISSING = [
    ("inspect", "{m}"), ("verify", "{m}", "--purpose", "server"), ("sign-csr", "{m}", "--server"),
    ("issue-batch", "{m}"), ("probe", "https://127.0.0.1:1/", "--ca-file", "{m}"), ("serve", "--client-ca", "{m}"),
    ("issue-server", "a.test", "--passphrase-file", "{m}"), ("renew", "--all", "--p12-password-file", "{m}"),
    ("probe", "https://127.0.0.1:1/", "--cert", "{m}", "--key", "{m}"),
    ("probe", "https://127.0.0.1:1/", "--bundle", "{m}"),
    ("export-p12", "{d}", "--password-file", "{m}"),
    ("init-ca", "--name", "X", "--ca-dir", "{d}/new", "--pin-file", "{m}"),
]


@pytest.mark.parametrize("args", MISSING, ids=lambda a: "-".join(x for x in a if "{" not in x)[:40])
@pytest.mark.parametrize("json_mode", [False, True], ids=["text", "json"])
def test_a_missing_file_is_one_line_and_exit_1_everywhere(ca_dir, ca_env, tmp_path, args, json_mode):
    """house6 #6: a missing file exited 1 in inspect and verify, but 2 with a usage block in sign-csr,
    issue-batch, probe, serve and for every secret file."""
    run_certkit("issue-client", "pat", "--out", tmp_path / "pat", env=ca_env, check=True)
    missing = tmp_path / "nope"
    argv = [a.format(m=missing, d=tmp_path / "pat") for a in args] + (["--json"] if json_mode else [])
    proc = run_certkit(*argv, env=ca_env, cwd=tmp_path)
    if json_mode and proc.stdout.strip():
        assert json.loads(proc.stdout) == {"error": f"{missing} does not exist.", "exit": 1}, proc.stdout
        assert proc.returncode == 1
    else:
        assert_clean_error(proc, f"{missing} does not exist.")
        assert "Usage:" not in proc.stderr


# --- 8. newcomer advice for a client's --dns ------------------------------------------------------------------------
@pytest.mark.parametrize("value,advice", [
    ("localhost:8443", "has a port (:8443); a certificate names the host alone ('localhost')"),
    ("https://www.example.com/", "is a URL; a certificate names the host alone (the host is 'www.example.com')"),
    ("ops@example.com", "is an email address, not a DNS name: give it as an email (--email)"),
    ("10.0.0.0/8", "is a range of IP addresses (CIDR)"),
])
def test_a_clients_dns_names_get_the_newcomer_advice(ca_dir, ca_env, tmp_path, value, advice):
    proc = run_certkit("issue-client", "al", "--dns", value, "--out", tmp_path / "al", env=ca_env)
    assert_clean_error(proc, advice)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"kind,names,dns,out\nclient,al,{value},al\n")
    proc = run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "b", env=ca_env)
    assert_clean_error(proc, advice.split(" (--email)")[0])
    assert not (tmp_path / "al").exists() and not (tmp_path / "b").exists()


# --- 11. export-p12 of a revoked certificate ------------------------------------------------------------------------
@pytest.mark.parametrize("reason", ["keyCompromise", "superseded"])
def test_export_p12_refuses_a_revoked_certificate(ca_dir, ca_env, tmp_path, reason):
    env = ca_env | {"CERTKIT_P12_PASSWORD": "p12-password-long"}
    for name in ("kc", "ok"):
        run_certkit("issue-client", name, "--out", tmp_path / name, env=env, check=True)
    run_certkit("revoke", tmp_path / "kc", "--reason", reason, env=env, check=True)
    proc = run_certkit("export-p12", tmp_path / "kc", env=env)
    assert_clean_error(proc, f"(reason: {reason}); every verifier refuses it, so it is not exported")
    assert not (tmp_path / "kc" / "bundle.p12").exists()
    run_certkit("export-p12", tmp_path / "ok", env=env, check=True)
    info = subprocess.run(["openssl", "pkcs12", "-in", tmp_path / "ok" / "bundle.p12", "-nokeys", "-passin",
                           "pass:p12-password-long"], capture_output=True, text=True, check=True)
    assert "BEGIN CERTIFICATE" in info.stdout
    # A bundle copied to a machine with no CA (no --ca-dir, no $CERTKIT_CA_DIR, no per-user CA): no CA to ask,
    # exported as it is. A CA directory that is given must hold a CA (badinput12): a typo does not skip the check.
    other = {k: v for k, v in env.items() if k != "CERTKIT_CA_DIR"} | {"HOME": str(tmp_path / "elsewhere"),
                                                                         "XDG_DATA_HOME": str(tmp_path / "elsewhere")}
    run_certkit("export-p12", tmp_path / "kc", env=other, check=True)
    typo = env | {"CERTKIT_CA_DIR": str(tmp_path / "elsewhere")}
    assert "No CA in" in run_certkit("export-p12", tmp_path / "kc", "--force", env=typo).stderr
