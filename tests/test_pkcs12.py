"""bundle.p12 from --p12 / --p12-legacy and export-p12, imported for real: openssl pkcs12,
Java keytool (Debian's JDK), NSS pk12util. curl --cert-type P12 is in test_serve.py."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, require, run_certkit

P12_PASSWORD = "p12 test password"
FLAVOURS = {
    "modern": (["--p12"], ["PBES2, PBKDF2, AES-256-CBC, Iteration 100000, PRF hmacWithSHA256", "MAC: sha256"]),
    "legacy": (["--p12-legacy"], ["pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 2048", "MAC: sha1"]),
}


@pytest.fixture
def env(tmp_path: Path, ca_dir: Path) -> dict[str, str]:
    return certkit_env(CERTKIT_CA_DIR=str(ca_dir), CERTKIT_CA_PASSPHRASE=PASSPHRASE)


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "p12-password"
    path.touch(0o600)
    path.write_text(P12_PASSWORD + "\n")  # as `echo pw > file` writes it: the newline is not part of it
    return path


def issued_count(ca_dir: Path) -> int:
    from certkit.inventory import Inventory

    return Inventory(ca_dir / "inventory.sqlite3").count()


def p12_info(path: Path, password_file: Path) -> subprocess.CompletedProcess:
    return openssl("pkcs12", "-info", "-noout", "-in", path, "-passin", f"file:{password_file}")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_openssl_reads_p12_with_expected_encryption(tmp_path: Path, env, password_file: Path, flavour: str):
    flags, expected = FLAVOURS[flavour]
    run_certkit("issue-client", "alice", *flags, "--p12-password-file", password_file, env=env, cwd=tmp_path,
                check=True)
    p12 = tmp_path / "alice" / "bundle.p12"
    assert stat.S_IMODE(p12.stat().st_mode) == 0o600
    info = p12_info(p12, password_file)
    assert info.returncode == 0, info.stderr
    text = info.stdout.decode() + info.stderr.decode()
    for line in expected:
        assert line in text
    assert text.count("Certificate bag") == 2  # alice and the root
    assert "Shrouded Keybag" in text
    # The friendly name is the CN, and the certificate inside is the one in cert.pem.
    certs = openssl("pkcs12", "-in", p12, "-nokeys", "-clcerts", "-passin", f"file:{password_file}")
    assert certs.returncode == 0, certs.stderr
    assert b"friendlyName: alice" in certs.stdout
    pem = certs.stdout[certs.stdout.index(b"-----BEGIN CERTIFICATE"):]
    assert pem.strip() == (tmp_path / "alice" / "cert.pem").read_bytes().strip()


def test_wrong_password_fails_openssl_mac_check(tmp_path: Path, env):
    run_certkit("issue-client", "alice", "--p12", env=dict(env, CERTKIT_P12_PASSWORD=P12_PASSWORD), cwd=tmp_path,
                check=True)
    wrong = tmp_path / "wrong"
    wrong.touch(0o600)
    wrong.write_text("not the password")
    info = p12_info(tmp_path / "alice" / "bundle.p12", wrong)
    assert info.returncode != 0
    assert b"mac verify error" in info.stderr.lower() + info.stdout.lower()


def test_server_p12_under_intermediate_holds_whole_chain(tmp_path: Path, env, ca_dir: Path, password_file: Path):
    issuing = dict(env, CERTKIT_CA_DIR=str(tmp_path / "issuing"))
    run_certkit("init-ca", "--name", "Issuing CA", "--parent-ca-dir", ca_dir, "--parent-passphrase-file",
                _write(tmp_path / "pp", PASSPHRASE), env=issuing, check=True)
    run_certkit("issue-server", "localhost", "--p12", "--p12-password-file", password_file, env=issuing,
                cwd=tmp_path, check=True)
    info = p12_info(tmp_path / "localhost" / "bundle.p12", password_file)
    assert info.returncode == 0, info.stderr
    assert (info.stdout + info.stderr).count(b"Certificate bag") == 3  # leaf, intermediate, root


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_java_keytool_lists_p12(tmp_path: Path, env, password_file: Path, flavour: str):
    require("keytool")  # Debian: default-jre-headless
    run_certkit("issue-client", "alice", *FLAVOURS[flavour][0], "--p12-password-file", password_file, env=env,
                cwd=tmp_path, check=True)
    proc = subprocess.run(
        ["keytool", "-list", "-v", "-storetype", "PKCS12", "-keystore", str(tmp_path / "alice" / "bundle.p12"),
         "-storepass:file", str(password_file)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Your keystore contains 1 entry" in proc.stdout
    assert "Alias name: alice" in proc.stdout
    assert "Entry type: PrivateKeyEntry" in proc.stdout
    assert "Certificate chain length: 2" in proc.stdout
    assert "Owner: CN=alice" in proc.stdout


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_nss_pk12util_imports_p12(tmp_path: Path, env, password_file: Path, flavour: str):
    require("pk12util")  # Debian: libnss3-tools
    run_certkit("issue-client", "alice", *FLAVOURS[flavour][0], "--p12-password-file", password_file, env=env,
                cwd=tmp_path, check=True)
    db = tmp_path / "nssdb"
    db.mkdir()
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True, timeout=60)
    proc = subprocess.run(["pk12util", "-d", f"sql:{db}", "-i", str(tmp_path / "alice" / "bundle.p12"),
                           "-w", str(password_file)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    keys = subprocess.run(["certutil", "-K", "-d", f"sql:{db}"], capture_output=True, text=True, timeout=60)
    assert "alice" in keys.stdout


# --- the password: never argv; file, environment or prompt ----------------------------------
def test_no_password_source_is_an_error_before_issuing(tmp_path: Path, env, ca_dir: Path):
    before = issued_count(ca_dir)
    proc = run_certkit("issue-client", "alice", "--p12", env=env, cwd=tmp_path)
    assert_clean_error(proc, "bundle.p12 needs a password: set $CERTKIT_P12_PASSWORD")
    assert not (tmp_path / "alice").exists()
    assert issued_count(ca_dir) == before  # nothing was issued either


def test_empty_password_file_is_an_error(tmp_path: Path, env):
    empty = _write(tmp_path / "empty", "")
    proc = run_certkit("issue-client", "alice", "--p12", "--p12-password-file", empty, env=env, cwd=tmp_path)
    assert_clean_error(proc, "holds an empty secret")
    assert not (tmp_path / "alice").exists()


def test_a_password_that_is_not_utf8_is_refused_before_issuing(tmp_path: Path, env, ca_dir: Path):
    """No importer could take it (cryptography refuses it too, after the certificate was signed)."""
    binary = tmp_path / "binary"
    binary.touch(0o600)
    binary.write_bytes(b"pw\xff\n")
    before = issued_count(ca_dir)
    proc = run_certkit("issue-client", "alice", "--p12", "--p12-password-file", binary, env=env, cwd=tmp_path)
    assert_clean_error(proc, "not UTF-8 text")
    environ = dict(env, CERTKIT_P12_PASSWORD="a\udcffb")  # the byte 0xff, as Python holds it
    proc = run_certkit("issue-server", "p12.example", "--p12", env=environ, cwd=tmp_path, subprocess=True)
    assert_clean_error(proc, "not UTF-8 text")
    assert not (tmp_path / "alice").exists() and not (tmp_path / "p12.example").exists()
    assert issued_count(ca_dir) == before  # nothing was signed, so nothing abandoned either
    run_certkit("issue-client", "bob", "--out", tmp_path / "bob", env=env, check=True)
    for args, environment in ((["--password-file", binary], env), ([], environ)):
        proc = run_certkit("export-p12", tmp_path / "bob", *args, env=environment, subprocess=not args)
        assert_clean_error(proc, "not UTF-8 text")
    assert not (tmp_path / "bob" / "bundle.p12").exists()


def test_password_file_without_p12_is_a_usage_error(tmp_path: Path, env, password_file: Path):
    proc = run_certkit("issue-client", "alice", "--p12-password-file", password_file, env=env, cwd=tmp_path)
    assert_clean_error(proc, "--p12-password-file needs --p12", code=2)
    assert not (tmp_path / "alice").exists()


def test_existing_p12_is_not_replaced_without_force(tmp_path: Path, env, password_file: Path):
    args = ("issue-client", "alice", "--p12", "--p12-password-file", password_file)
    run_certkit(*args, env=env, cwd=tmp_path, check=True)
    before = (tmp_path / "alice" / "bundle.p12").read_bytes()
    proc = run_certkit(*args, env=env, cwd=tmp_path)
    assert_clean_error(proc, "pass --force to replace")
    assert (tmp_path / "alice" / "bundle.p12").read_bytes() == before
    run_certkit(*args, "--force", env=env, cwd=tmp_path, check=True)
    assert (tmp_path / "alice" / "bundle.p12").read_bytes() != before


# --- export-p12 on an existing folder -------------------------------------------------------
def test_export_p12_from_folder(tmp_path: Path, env, password_file: Path):
    run_certkit("issue-client", "bob", env=env, cwd=tmp_path, check=True)
    folder = tmp_path / "bob"
    pw_env = dict(env, CERTKIT_P12_PASSWORD=P12_PASSWORD)
    proc = run_certkit("export-p12", folder, "--json", env=pw_env, check=True)
    assert '"friendly_name": "bob"' in proc.stdout
    p12 = folder / "bundle.p12"
    assert stat.S_IMODE(p12.stat().st_mode) == 0o600
    text = p12_info(p12, password_file)
    assert text.returncode == 0 and b"AES-256-CBC" in text.stdout + text.stderr

    before = p12.read_bytes()
    refused = run_certkit("export-p12", folder, "--legacy", env=pw_env)
    assert_clean_error(refused, f"{folder} already holds bundle.p12; pass --force")
    assert p12.read_bytes() == before

    run_certkit("export-p12", folder, "--legacy", "--force", "--password-file", password_file, env=env, check=True)
    text = p12_info(p12, password_file)
    assert text.returncode == 0 and b"pbeWithSHA1And3-KeyTripleDES-CBC" in text.stdout + text.stderr


def test_export_p12_folder_without_key(tmp_path: Path, env):
    run_certkit("issue-client", "bob", env=env, cwd=tmp_path, check=True)
    os.unlink(tmp_path / "bob" / "privkey.pem")
    proc = run_certkit("export-p12", tmp_path / "bob", env=dict(env, CERTKIT_P12_PASSWORD=P12_PASSWORD))
    assert_clean_error(proc, "holds no privkey.pem")
    assert not (tmp_path / "bob" / "bundle.p12").exists()


def test_export_p12_key_of_another_certificate(tmp_path: Path, env):
    run_certkit("issue-client", "bob", env=env, cwd=tmp_path, check=True)
    run_certkit("issue-client", "carol", env=env, cwd=tmp_path, check=True)
    shutil.copy(tmp_path / "carol" / "privkey.pem", tmp_path / "bob" / "privkey.pem")
    proc = run_certkit("export-p12", tmp_path / "bob", env=dict(env, CERTKIT_P12_PASSWORD=P12_PASSWORD))
    assert_clean_error(proc, "is not the private key of")
    assert not (tmp_path / "bob" / "bundle.p12").exists()


def test_export_p12_ca_files_of_another_ca_or_none(tmp_path: Path, env, password_file: Path):
    """Another CA's ca.pem in the folder is refused (the .p12 would carry the wrong CA to whoever
    imports it); no ca.pem at all is said, and the file then holds the key and certificate only."""
    other = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "other"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Other CA", env=other, check=True)
    run_certkit("issue-client", "bob", env=env, cwd=tmp_path, check=True)
    pw_env = dict(env, CERTKIT_P12_PASSWORD=P12_PASSWORD)
    shutil.copy(tmp_path / "other" / "ca.pem", tmp_path / "bob" / "ca.pem")
    proc = run_certkit("export-p12", tmp_path / "bob", env=pw_env)
    assert_clean_error(proc, "do not belong together")
    assert not (tmp_path / "bob" / "bundle.p12").exists()

    os.unlink(tmp_path / "bob" / "ca.pem")
    proc = run_certkit("export-p12", tmp_path / "bob", env=pw_env, check=True)
    assert proc.stderr.startswith("Warning: ") and "holds no ca.pem" in proc.stderr
    assert "0 CA certificates" in proc.stdout
    listed = openssl("pkcs12", "-in", tmp_path / "bob" / "bundle.p12", "-passin", f"file:{password_file}",
                     "-nokeys", "-cacerts")
    assert listed.returncode == 0 and b"BEGIN CERTIFICATE" not in listed.stdout

    run_certkit("issue-client", "carol", env=env, cwd=tmp_path, check=True)  # a whole bundle: no warning
    proc = run_certkit("export-p12", tmp_path / "carol", env=pw_env, check=True)
    assert proc.stderr == "" and "and 1 CA certificate\n" in proc.stdout


def test_export_p12_missing_folder(tmp_path: Path, env):
    proc = run_certkit("export-p12", tmp_path / "nobody", env=dict(env, CERTKIT_P12_PASSWORD=P12_PASSWORD))
    assert_clean_error(proc, "is not a folder")
    assert not (tmp_path / "nobody").exists()


def test_export_p12_without_password_source(tmp_path: Path, env):
    run_certkit("issue-client", "bob", env=env, cwd=tmp_path, check=True)
    proc = run_certkit("export-p12", tmp_path / "bob", env=env)
    assert_clean_error(proc, "CERTKIT_P12_PASSWORD")
    assert not (tmp_path / "bob" / "bundle.p12").exists()


def test_library_pkcs12_round_trip():
    """The library alone: a .p12 of an in-memory CA's client that cryptography reads back."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    from certkit import CA
    from certkit.pkcs12 import issued_pkcs12

    ca = CA.create("lib CA")
    issued = ca.issue_client("dave")
    loaded = pkcs12.load_pkcs12(issued_pkcs12(issued, b"pw"), b"pw")
    assert loaded.cert.certificate == issued.cert
    assert loaded.cert.friendly_name == b"dave"
    assert [c.certificate for c in loaded.additional_certs] == [ca.cert]


def _write(path: Path, text: str) -> Path:
    path.touch(0o600)
    path.write_text(text)
    return path


@pytest.mark.parametrize("rekey", [False, True], ids=["key kept", "new key"])
def test_renew_out_writes_the_p12_the_bundle_had(tmp_path: Path, env, password_file: Path, rekey: bool):
    """renew --out DIR of a bundle with a bundle.p12, a PKCS#12 password given: DIR gets one, of the new
    certificate and its key (openssl reads both); asked for a p12 a bundle never had, renew says so."""
    run_certkit("issue-client", "alice", "--out", tmp_path / "a", "--p12", "--p12-password-file", password_file,
                env=env, check=True)
    run_certkit("renew", tmp_path / "a", "--out", tmp_path / "b", "--p12-password-file", password_file,
                *(["--rekey"] if rekey else []), env=env, check=True)
    pem = openssl("pkcs12", "-in", tmp_path / "b" / "bundle.p12", "-passin", f"file:{password_file}", "-nodes")
    assert pem.returncode == 0, pem.stderr
    cert = openssl("x509", "-noout", "-fingerprint", "-sha256", input=pem.stdout).stdout
    assert cert == openssl("x509", "-noout", "-fingerprint", "-sha256", "-in", tmp_path / "b" / "cert.pem").stdout
    mod = openssl("pkey", "-pubout", input=pem.stdout).stdout
    assert mod == openssl("pkey", "-pubout", "-in", tmp_path / "b" / "privkey.pem").stdout
    assert stat.S_IMODE((tmp_path / "b" / "bundle.p12").stat().st_mode) == 0o600
    run_certkit("issue-server", "s.example", "--out", tmp_path / "s", env=env, check=True)
    proc = run_certkit("renew", tmp_path / "s", "--p12-password-file", password_file, env=env, check=True)
    assert "no bundle.p12 written: the bundle had none to refresh" in proc.stdout
    assert not (tmp_path / "s" / "bundle.p12").exists()
