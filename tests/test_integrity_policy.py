"""Issue 9, class 8: policy holes closed.

- Name constraints constrain every kind of name: an IP-only CA permits no real DNS name (and no
  email or URI), a DNS-constrained CA constrains emails and URIs too. certkit refuses such names,
  and OpenSSL rejects a certificate forged for them with the CA's own key, so the constraint is
  in the CA certificate, not only in certkit.
- A CA directory that others can write to, or with a parents.pem that does not chain, is refused.
- A secret file that others can read is refused.
- A certificate revoked while its renewal is in flight is not renewed with the compromised key.
- verify against a CA directory says NOT VALID for a certificate its inventory lists as revoked.
- The decrypted CA key cannot end up in a core file (checked in /proc of paused processes).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, run_certkit
from integrity_helpers import db_rows, descendants, listed, read_bundle, start_paused


def make_ca(folder: Path, *constraints: str) -> dict:
    env = certkit_env(CERTKIT_CA_DIR=str(folder), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", f"{folder.name} CA", *constraints, env=env, check=True)
    return env


def forge(ca_dir: Path, out: Path, *, eku, sans, cn: str = "forged") -> Path:
    """A leaf made with the CA's own key and cryptography, bypassing certkit's checks."""
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca-key.pem").read_bytes(), PASSPHRASE.encode())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    out.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return out


def openssl_verify(ca_dir: Path, cert: Path, purpose: str = "sslserver"):
    return openssl("verify", "-x509_strict", "-purpose", purpose, "-CAfile", ca_dir / "ca.pem", cert)


SERVER, CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH


# --- name constraints ------------------------------------------------------------------
def test_ip_only_ca_permits_no_dns_name(tmp_path: Path) -> None:
    ca = tmp_path / "iponly"
    env = make_ca(ca, "--permit-ip", "10.0.0.0/8")
    for args in (["issue-server", "www.google.com"], ["issue-server", "10.1.2.3", "www.google.com"],
                 ["issue-peer", "node.example.com"], ["issue-client", "Alice Smith", "--dns", "alice.example.com"],
                 ["issue-client", "Alice Smith", "--email", "alice@example.com"],
                 ["issue-client", "Alice Smith", "--uri", "spiffe://example.com/alice"],
                 ["issue-server", "192.168.1.1"]):
        proc = run_certkit(*args, "--out", tmp_path / "x", env=env)
        assert_clean_error(proc, "outside the name constraints")
        assert not (tmp_path / "x").exists()
    assert db_rows(ca) == []
    run_certkit("issue-server", "10.1.2.3", "--out", tmp_path / "ip", env=env, check=True)
    assert openssl_verify(ca, tmp_path / "ip" / "cert.pem").returncode == 0
    # The constraint is in the CA certificate: OpenSSL refuses what the CA key signs outside it.
    for sans, purpose in (([x509.DNSName("www.google.com")], "sslserver"),
                          ([x509.IPAddress(ipaddress.ip_address("8.8.8.8"))], "sslserver"),
                          ([x509.RFC822Name("alice@example.com")], "sslclient"),
                          ([x509.UniformResourceIdentifier("spiffe://example.com/alice")], "sslclient")):
        forged = forge(ca, tmp_path / "forged.pem", eku=SERVER if purpose == "sslserver" else CLIENT, sans=sans,
                       cn="Forged Name")
        verdict = openssl_verify(ca, forged, purpose)
        assert verdict.returncode != 0 and b"subtree violation" in verdict.stdout + verdict.stderr, (sans, verdict)
        checked = run_certkit("verify", forged, "--purpose", "server" if purpose == "sslserver" else "client",
                              env=env)
        assert checked.returncode == 1 and "NOT VALID" in checked.stdout, checked.stdout


def test_dns_constraints_reach_emails_and_uris(tmp_path: Path) -> None:
    ca = tmp_path / "dnsonly"
    env = make_ca(ca, "--permit-dns", "example.internal")
    refused = (["--email", "alice@evil.example"], ["--email", "alice@example.internal.evil.example"],
               ["--uri", "spiffe://evil.example/alice"], ["--uri", "https://example.internal.evil.example/x"],
               ["--dns", "alice.evil.example"])
    for extra in refused:
        proc = run_certkit("issue-client", "Alice Smith", *extra, "--out", tmp_path / "x", env=env)
        assert_clean_error(proc, "outside the name constraints")
    for n, extra in enumerate((["--email", "alice@example.internal"], ["--email", "alice@mail.example.internal"],
                               ["--uri", "spiffe://example.internal/alice"], ["--dns", "alice.example.internal"])):
        run_certkit("issue-client", "Alice Smith", *extra, "--out", tmp_path / f"ok{n}", env=env, check=True)
        assert openssl_verify(ca, tmp_path / f"ok{n}" / "cert.pem", "sslclient").returncode == 0
    # A CSR and a manifest asking for an email outside are refused the same way.
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Mallory Smith")]))
           .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("mallory@evil.example")]), critical=False)
           .sign(key, hashes.SHA256()))
    (tmp_path / "m.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    assert_clean_error(run_certkit("sign-csr", tmp_path / "m.csr", "--client", "--out", tmp_path / "m", env=env),
                       "outside the name constraints")
    (tmp_path / "m.csv").write_text("kind,names,email,uri\nclient,Bob Smith,bob@example.internal,\n"
                                    "client,Eve Smith,,spiffe://evil.example/eve\n")
    batch = run_certkit("issue-batch", tmp_path / "m.csv", "--out-dir", tmp_path / "batch", env=env)
    assert_clean_error(batch, "line 3")
    assert not (tmp_path / "batch").exists()
    for sans in ([x509.RFC822Name("alice@evil.example")], [x509.UniformResourceIdentifier("spiffe://evil.example/a")]):
        forged = forge(ca, tmp_path / "forged.pem", eku=CLIENT, sans=sans, cn="Forged Name")
        verdict = openssl_verify(ca, forged, "sslclient")
        assert verdict.returncode != 0 and b"subtree violation" in verdict.stdout + verdict.stderr, (sans, verdict)


# --- the CA directory --------------------------------------------------------------------
@pytest.mark.parametrize("what,mode", [(".", 0o777), (".", 0o770), (".", 0o702), ("ca.pem", 0o666),
                                       ("ca.pem", 0o664), ("inventory.sqlite3", 0o666)])
def test_ca_directory_writable_by_others_is_refused(tmp_path: Path, ca_env: dict, ca_dir: Path, what: str,
                                                    mode: int) -> None:
    (ca_dir / what).chmod(mode)
    for args in (["issue-server", "web.example.internal", "--out", tmp_path / "web"], ["list"],
                 ["crl", "--out", tmp_path / "c.crl"]):
        proc = run_certkit(*args, env=ca_env)
        assert_clean_error(proc, "chmod go-w")
    assert not (tmp_path / "web").exists() and not (tmp_path / "c.crl").exists()
    assert db_rows(ca_dir) == []


@pytest.mark.parametrize("planted", ["another CA", "a link", "the CA itself"])
def test_planted_parents_file_is_refused(tmp_path: Path, ca_env: dict, ca_dir: Path, planted: str) -> None:
    other = tmp_path / "other"
    make_ca(other)
    parents = ca_dir / "parents.pem"
    if planted == "another CA":
        parents.write_bytes((other / "ca.pem").read_bytes())
    elif planted == "a link":
        parents.symlink_to(other / "ca.pem")
    else:
        parents.write_bytes((ca_dir / "ca.pem").read_bytes() + (other / "ca.pem").read_bytes())
    proc = run_certkit("issue-server", "web.example.internal", "--out", tmp_path / "web", env=ca_env)
    assert_clean_error(proc, "parents.pem" if planted != "a link" else "symbolic link")
    assert not (tmp_path / "web").exists()
    assert db_rows(ca_dir) == []


def test_planted_parents_file_in_an_intermediate_is_refused(tmp_path: Path, ca_env: dict, ca_dir: Path) -> None:
    other = tmp_path / "other"
    make_ca(other)
    secret = tmp_path / "root.pass"
    secret.write_text(PASSPHRASE)
    secret.chmod(0o600)
    run_certkit("init-ca", "--ca-dir", tmp_path / "ica", "--parent-ca-dir", ca_dir, "--parent-passphrase-file",
                secret, env=ca_env, check=True)
    (tmp_path / "ica" / "parents.pem").write_bytes((other / "ca.pem").read_bytes())
    proc = run_certkit("issue-server", "web.example.internal", "--ca-dir", tmp_path / "ica", "--out",
                       tmp_path / "web", env=ca_env)
    assert_clean_error(proc, "do not form a chain")
    assert not (tmp_path / "web").exists()


# --- secrets ----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, "another owner"])
def test_secret_files_readable_by_others_are_refused(tmp_path: Path, ca_env: dict, ca_dir: Path, mode) -> None:
    """Other users can read the file (group or world bits), or it is theirs, so they can read and
    replace it (ssh's rule): refused everywhere a secret file is taken."""
    secret = tmp_path / "secret"
    secret.write_text(PASSPHRASE + "\n")
    if mode == "another owner":
        if os.geteuid() != 0:
            pytest.skip("giving a file to another user needs root")
        secret.chmod(0o600)
        os.chown(secret, 65534, -1)
    else:
        secret.chmod(mode)
    env = {k: v for k, v in ca_env.items() if k != "CERTKIT_CA_PASSPHRASE"}
    attempts = (["issue-server", "web.example.internal", "--out", tmp_path / "web", "--passphrase-file", secret],
                ["issue-client", "Alice", "--out", tmp_path / "alice", "--p12", "--p12-password-file", secret,
                 "--passphrase-file", secret],
                ["crl", "--passphrase-file", secret],
                ["init-ca", "--ca-dir", tmp_path / "ica", "--no-passphrase", "--parent-ca-dir", ca_dir,
                 "--parent-passphrase-file", secret])
    for args in attempts:
        proc = run_certkit(*args, env=env)
        assert_clean_error(proc, "belongs to another user" if mode == "another owner" else "chmod 600")
    assert db_rows(ca_dir) == []
    os.chown(secret, os.geteuid(), -1)
    secret.chmod(0o600)
    run_certkit(*attempts[0], env=env, check=True)


# --- revocation -----------------------------------------------------------------------
@pytest.mark.parametrize("point,rekey", [("signed", False), ("recorded", False), ("staged", False),
                                         ("recorded", True)],
                         ids=["signed", "recorded", "staged", "recorded --rekey"])
def test_revoked_while_its_renewal_is_in_flight(tmp_path: Path, ca_env: dict, ca_dir: Path, point: str,
                                                rekey: bool) -> None:
    folder = tmp_path / "svc"
    run_certkit("issue-server", "svc.example.internal", "--out", folder, env=ca_env, check=True)
    old = read_bundle(folder)
    old_key = (folder / "privkey.pem").read_bytes()
    marker = tmp_path / "paused"
    proc = start_paused(["renew", folder, *(["--rekey"] if rekey else [])], ca_env, tmp_path, point, marker)
    # revoke SERIAL waits for the folder its row records while a renewal holds it (then revokes what is
    # there too, naming it), or goes first when the renewal does not hold it yet: either way, in turn
    revoking = subprocess.Popen([sys.executable, "-m", "certkit", "revoke", old.serial, "--reason", "keyCompromise"],
                                env=ca_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if point == "signed":  # the renewal holds no folder yet: the revocation is done first, however slow
            revoking.wait(timeout=60)
        else:
            time.sleep(1.5)
        marker.unlink()
        out, err = proc.communicate(timeout=60)
        revoke_out, revoke_err = revoking.communicate(timeout=60)
        assert revoking.returncode == 0, revoke_err
    finally:
        for running in (proc, revoking):
            if running.poll() is None:
                running.kill()
                running.wait()
    rows = {r["serial"]: r for r in listed(ca_env)}
    assert rows[old.serial]["status"] == "revoked"
    if point == "signed":  # checked when the renewal is recorded: refused, nothing written
        assert proc.returncode == 1 and "revoked" in err and "Traceback" not in err, err
        assert read_bundle(folder) == old
    new = read_bundle(folder)
    same_key = (folder / "privkey.pem").read_bytes() == old_key
    # Whatever happened, no certificate for the compromised key is valid.
    valid = [r for r in listed(ca_env, "--status", "valid") if r["kind"] != "ca"]
    if same_key:
        assert valid == [], valid
        if new.serial != old.serial:
            assert rows[new.serial]["status"] == "revoked"
            assert "revoked too" in out + err or f"also      {new.serial} (the same key)" in revoke_out, \
                (out + err, revoke_out)
    else:
        assert rekey and [r["serial"] for r in valid] == [new.serial]


def test_verify_against_the_ca_directory_knows_what_is_revoked(tmp_path: Path, ca_env: dict, ca_dir: Path) -> None:
    run_certkit("issue-client", "Alice", "--out", tmp_path / "alice", env=ca_env, check=True)
    run_certkit("issue-server", "web.example.internal", "--out", tmp_path / "web", env=ca_env, check=True)
    run_certkit("revoke", tmp_path / "alice", "--reason", "keyCompromise", env=ca_env, check=True)
    for target in (tmp_path / "alice" / "cert.pem", tmp_path / "alice", tmp_path / "alice" / "fullchain.pem"):
        proc = run_certkit("verify", target, "--purpose", "client", env=ca_env)
        assert proc.returncode == 1 and "NOT VALID" in proc.stdout and "revoked" in proc.stdout, proc.stdout
        assert "Error:" in proc.stderr and "revoked" in proc.stderr
    proc = run_certkit("verify", tmp_path / "alice" / "cert.pem", "--purpose", "client", "--json", env=ca_env)
    assert proc.returncode == 1
    ok = run_certkit("verify", tmp_path / "web" / "cert.pem", "--purpose", "server", env=ca_env)
    assert ok.returncode == 0 and "VALID" in ok.stdout, ok.stdout


# --- core dumps -------------------------------------------------------------------------
def core_limit(pid: int) -> str:
    with open(f"/proc/{pid}/limits") as f:
        line = next(line for line in f if line.startswith("Max core file size"))
    return " ".join(line.split()[4:6])


@pytest.mark.parametrize("args", [["serve", "--port", "0"], ["issue-server", "web.example.internal"],
                                  ["renew", "svc"], ["issue-batch", "m.csv", "--jobs", "2"]],
                         ids=["serve", "issue-server", "renew", "issue-batch workers"])
def test_no_core_dump_once_the_ca_key_is_decrypted(tmp_path: Path, ca_env: dict, ca_dir: Path, args: list) -> None:
    run_certkit("issue-server", "svc.example.internal", "--out", tmp_path / "svc", env=ca_env, check=True)
    (tmp_path / "m.csv").write_text("kind,names\nserver,a.example.internal\nserver,b.example.internal\n")
    env = dict(ca_env, CERTKIT_TEST_CHUNK_SIZE="1")
    marker = tmp_path / "paused"
    proc = start_paused(args, env, tmp_path, "signed", marker)  # the key is decrypted; something is signed
    try:
        paused = int(marker.read_text())
        for pid in {paused, proc.pid, *descendants(proc.pid)}:
            assert core_limit(pid) == "0 0", (pid, core_limit(pid))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(0.1)
