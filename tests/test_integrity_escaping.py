"""Issue 9, class 10: text from a certificate, a CSR, a manifest or a file name never reaches the
terminal raw.

The hostile text is built as an attacker would build it: certificates and CSRs made with
cryptography directly (certkit refuses such names itself), a live TLS server (openssl s_server)
presenting one, manifests and file names holding the sequences. It carries an OSC title change
(ESC ] 0 ; ... BEL), clear-screen sequences, a C1 control (the 8-bit CSI), DEL, bidi controls
(U+202E, U+2066..U+2069), a line separator and a newline followed by a forged "Error:" line.
Every command that shows it (inspect, verify, sign-csr, list, probe, export-p12, error lines)
must print it escaped: no control character but the newlines and tabs certkit lays out with,
no bidi control, and no forged line.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import PASSPHRASE, certkit_env, free_port, require, run_certkit, wait_listening
from integrity_helpers import serial_hex
from serve_process import ServeProcess

FORGED = "Error: forged"
# Within a common name's 64 characters: title, clear screen, C1 CSI, DEL, bidi, line separator, newline.
HOSTILE = "x\x1b]0;owned\x07\x1b[2J\x1bc\x9b1m\x7f\u202e\u2066\u2069\u2028\n" + FORGED
# A DNS name is ASCII (IA5String): the C0 part, DEL and the newline.
HOSTILE_DNS = "a\x1b]0;owned\x07\x1b[2J\x7f\n" + FORGED + ".example"
BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029, 0x200E, 0x200F)}


def assert_escaped(proc: subprocess.CompletedProcess) -> None:
    """Nothing raw: no control character but newline and tab, no C1, DEL or bidi control, no
    forged line, at most one Error line."""
    for stream in (proc.stdout, proc.stderr):
        raw = sorted({f"U+{ord(ch):04X}" for ch in stream
                      if (ord(ch) < 0x20 and ch not in "\n\t") or 0x7F <= ord(ch) <= 0x9F or ch in BIDI})
        assert not raw, f"raw {raw} in:\n{stream!r}"
        assert not [line for line in stream.splitlines() if line.lstrip().startswith(FORGED)], stream
    assert sum(line.startswith("Error:") for line in proc.stderr.splitlines()) <= 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


def name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def build_cert(subject: x509.Name, issuer: x509.Name, key, signer, *, ca: bool, sans=(), eku=None):
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                              critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                        critical=True)
    else:
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                                        critical=True)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return builder.sign(signer, hashes.SHA256())


def pem(obj) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    if isinstance(obj, x509.CertificateSigningRequest):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    """An attacker's CA and server certificate, a hostile CSR, and a bundle folder of the certificate."""
    root = tmp_path_factory.mktemp("hostile")
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = name("Evil CA " + HOSTILE[:40], org=HOSTILE)
    ca = build_cert(ca_name, ca_name, ca_key, ca_key, ca=True)
    leaf = build_cert(name(HOSTILE, org=HOSTILE), ca_name, leaf_key, ca_key, ca=False,
                      sans=[x509.DNSName("localhost"), x509.DNSName(HOSTILE_DNS),
                            x509.UniformResourceIdentifier("spiffe://e\x1b]0;owned\x07/\n" + FORGED),
                            x509.RFC822Name("a\x1b[2J\n" + FORGED + "@example.org")],
                      eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    csr = (x509.CertificateSigningRequestBuilder().subject_name(name(HOSTILE, org=HOSTILE))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOSTILE_DNS)]), critical=False)
           .sign(leaf_key, hashes.SHA256()))
    (root / "evil-ca.pem").write_bytes(pem(ca))
    (root / "evil.pem").write_bytes(pem(leaf))
    (root / "evil-key.pem").write_bytes(pem(leaf_key))
    (root / "evil.csr").write_bytes(pem(csr))
    bundle = root / "bundle"
    bundle.mkdir()
    (bundle / "cert.pem").write_bytes(pem(leaf))
    (bundle / "fullchain.pem").write_bytes(pem(leaf) + pem(ca))
    (bundle / "ca.pem").write_bytes(pem(ca))
    (bundle / "privkey.pem").write_bytes(pem(leaf_key))
    (bundle / "privkey.pem").chmod(0o600)
    return root


@pytest.mark.parametrize("args", [
    ["inspect", "evil.pem"], ["inspect", "evil.pem", "--json"], ["inspect", "evil.csr"], ["inspect", "bundle"],
    ["inspect", "evil-ca.pem"],
    ["verify", "evil.pem", "--purpose", "server", "--ca-file", "evil-ca.pem"],
    ["verify", "evil.pem", "--purpose", "client", "--ca-file", "evil-ca.pem", "--name", HOSTILE],
    ["verify", "evil.pem", "--purpose", "server"],
    ["sign-csr", "evil.csr", "--server", "--out", "signed"], ["sign-csr", "evil.csr", "--client", "--out", "signed"],
    ["export-p12", "bundle", "--force"],
], ids=lambda a: " ".join(a[:2]) + (" --json" if "--json" in a else "") + (" --name" if "--name" in a else "")
    + (" --ca-file" if "--ca-file" in a else "") + (" --client" if "--client" in a else ""))
def test_certificate_and_csr_text_is_escaped(hostile: Path, ca_env: dict, ca_dir: Path, args: list) -> None:
    env = dict(ca_env, CERTKIT_P12_PASSWORD="a p12 password")
    proc = run_certkit(*args, cwd=hostile, env=env)
    assert_escaped(proc)
    if "--json" not in args:
        assert "\\x1b" in proc.stdout + proc.stderr  # shown, escaped, rather than dropped
    assert not (hostile / "signed").exists()


def test_probe_escapes_what_a_live_server_presents(hostile: Path) -> None:
    require("openssl")
    port = free_port()
    server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", hostile / "evil.pem",
                               "-key", hostile / "evil-key.pem", "-cert_chain", hostile / "evil-ca.pem", "-www",
                               "-quiet"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, server, "openssl s_server")
        for extra in ([], ["--ca-file", hostile / "evil-ca.pem"], ["--json"]):
            proc = run_certkit("probe", f"https://127.0.0.1:{port}/", *extra, "--timeout", "5")
            assert_escaped(proc)
            assert "owned" in proc.stdout  # the certificate was read and shown
    finally:
        server.terminate()
        server.wait(10)


def test_list_escapes_inventory_text(tmp_path: Path, ca_env: dict, ca_dir: Path) -> None:
    """A row recorded by an older certkit that let such a name through (made here with the CA key
    and written into the inventory as a row): list, its names column and --json."""
    run_certkit("issue-client", "Alice", "--out", tmp_path / "alice", env=ca_env, check=True)
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca-key.pem").read_bytes(), PASSPHRASE.encode())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build_cert(name(HOSTILE), ca_cert.subject, key, ca_key, ca=False, sans=[x509.DNSName(HOSTILE_DNS)],
                      eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    with sqlite3.connect(ca_dir / "inventory.sqlite3") as db:
        cursor = db.execute("SELECT * FROM certificates LIMIT 1")
        template = dict(zip([d[0] for d in cursor.description], cursor.fetchone(), strict=True))
        template.update(serial=serial_hex(cert), kind="server", subject=cert.subject.rfc4514_string(),
                        names=json.dumps([f"DNS:{HOSTILE_DNS}"]), der=cert.public_bytes(serialization.Encoding.DER),
                        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(), folder=None)
        db.execute(f"INSERT INTO certificates ({', '.join(template)}) VALUES ({', '.join('?' * len(template))})",
                   list(template.values()))
    db.close()
    for args in (["list"], ["list", "--json"], ["list", "--name", "*owned*"]):
        proc = run_certkit(*args, env=ca_env)
        assert proc.returncode == 0, proc.stderr
        assert_escaped(proc)
        assert "owned" in proc.stdout


HOSTILE_FILE = "c\x1b]0;owned\x07\x1b[2J\x7f\u202e\n" + FORGED + ".pem"


@pytest.mark.parametrize("args", [
    ["inspect", HOSTILE_FILE], ["verify", HOSTILE_FILE, "--purpose", "server"],
    ["sign-csr", HOSTILE_FILE, "--server"], ["issue-batch", HOSTILE_FILE],
    ["inspect", "empty-" + HOSTILE_FILE], ["verify", "empty-" + HOSTILE_FILE, "--purpose", "client"],
    ["sign-csr", "empty-" + HOSTILE_FILE, "--client"], ["issue-batch", "empty-" + HOSTILE_FILE],
    ["export-p12", "dir-" + HOSTILE_FILE], ["renew", "dir-" + HOSTILE_FILE],
    ["revoke", "dir-" + HOSTILE_FILE], ["issue-server", "x.example.internal", "--out", "file-" + HOSTILE_FILE],
    ["crl", "--out", "dir-" + HOSTILE_FILE],
], ids=lambda a: f"{a[0]} {'missing' if a[1] == HOSTILE_FILE else a[-1][:5].strip('-')}")
def test_file_names_in_error_lines_are_escaped(tmp_path: Path, ca_env: dict, ca_dir: Path, args: list) -> None:
    (tmp_path / ("empty-" + HOSTILE_FILE)).write_bytes(b"")
    (tmp_path / ("dir-" + HOSTILE_FILE)).mkdir()
    (tmp_path / ("file-" + HOSTILE_FILE)).write_text("not a folder\n")
    proc = run_certkit(*args, cwd=tmp_path, env=ca_env)
    assert proc.returncode in (1, 2), (proc.returncode, proc.stdout, proc.stderr)
    assert_escaped(proc)


HOSTILE_FIELD = "e\x1b]0;owned\x07\x1b[2J\x9b\x7f\u202e\n" + FORGED


@pytest.mark.parametrize("field", ["names", "out", "email", "uri", "dns", "kind", "key_type", "days", "unknown key"])
def test_manifest_fields_are_escaped(tmp_path: Path, ca_env: dict, ca_dir: Path, field: str) -> None:
    if field == "unknown key":
        record = {"kind": "client", "names": "Alice", HOSTILE_FIELD: "x"}
    else:
        record = {"kind": "client" if field != "dns" else "server", "names": "Alice"} | {field: HOSTILE_FIELD}
    (tmp_path / "m.jsonl").write_text(json.dumps(record) + "\n")
    proc = run_certkit("issue-batch", "m.jsonl", "--out-dir", "out", cwd=tmp_path, env=ca_env)
    assert_escaped(proc)
    if field != "out":  # a folder may have any name but NUL; nothing is printed raw
        assert proc.returncode == 1, (proc.returncode, proc.stderr)
        assert not (tmp_path / "out").exists()


def test_csv_manifest_text_is_escaped(tmp_path: Path, ca_env: dict, ca_dir: Path) -> None:
    (tmp_path / "m.csv").write_text(f"kind,names,{HOSTILE_FIELD}\nclient,\"B\x1b]0;owned\x07\u202e\n{FORGED}\",\n")
    (tmp_path / "n.csv").write_text(f"kind,names\nclient,\"B\x1b]0;owned\x07\u202e\n{FORGED}\"\n")
    for manifest in ("m.csv", "n.csv"):
        proc = run_certkit("issue-batch", manifest, "--out-dir", "out", cwd=tmp_path, env=ca_env)
        assert proc.returncode == 1, (proc.returncode, proc.stderr)
        assert_escaped(proc)
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("optional", [True, False], ids=["--optional", "required"])
def test_serve_log_escapes_a_hostile_client_certificate(hostile: Path, ca_env: dict, ca_dir: Path,
                                                        optional: bool) -> None:
    """A client presenting the attacker's certificate to `certkit serve`: the operator's log line."""
    curl = require("curl")
    with ServeProcess(*(["--optional"] if optional else []), env=ca_env) as server:
        subprocess.run([curl, "-sk", "--max-time", "30", "--cert", hostile / "evil.pem", "--key",
                        hostile / "evil-key.pem", server.url], capture_output=True, timeout=60)
        server.wait_for_log("refused" if optional else server.url.split("//")[1].split(":")[0], count=1)
        time.sleep(0.2)
    log = subprocess.CompletedProcess([], 0, "", server.stderr)
    assert_escaped(log)
    if optional:
        assert "owned" in server.stderr


def test_paths_in_warnings_and_progress_are_escaped(tmp_path: Path, ca_env: dict, ca_dir: Path) -> None:
    """init-ca --no-passphrase's warning names the key's path, and issue-batch on a terminal names the
    manifest it checks: both escaped (a title-setting sequence in a folder or file name reached the
    terminal raw there)."""
    from fleet_helpers import run_in_pty

    folder = tmp_path / ("d\x1b]0;owned\x07\x1b[31m" + "x")
    folder.mkdir()
    proc = run_certkit("init-ca", "--ca-dir", folder / "ca", "--no-passphrase", env=certkit_env())
    assert proc.returncode == 0
    assert_escaped(proc)
    assert "\\x1b]0;owned" in proc.stderr
    manifest = tmp_path / ("m\x1b]0;owned\x07\x1b[31m.csv")
    manifest.write_text("kind,names\nserver,a.example\n")
    code, shown, _ = run_in_pty(["issue-batch", manifest, "--out-dir", tmp_path / "o"], env=ca_env, cwd=tmp_path)
    assert code == 0, shown
    assert "\x1b]0;owned" not in shown and "Checking every line of " in shown and "\\x1b]0;owned" in shown
