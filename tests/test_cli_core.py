"""init-ca, issue-server and issue-client as a user runs them: files, modes, messages, refusals."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from certkit.store import CADirectory
from certkit.vocabulary import serial_hex

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, run_certkit


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def inventory_count(ca_dir: Path) -> int:
    return CADirectory(ca_dir).inventory.count()  # SQLite, or PostgreSQL on a [postgresql] run


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# --- init-ca ------------------------------------------------------------------------
def test_init_ca_writes_an_encrypted_key_and_a_private_directory(tmp_path: Path, ca_env: dict) -> None:
    proc = run_certkit("init-ca", "--name", "Home Lab CA", "--org", "Home", "--country", "de", "--json",
                       env=ca_env, check=True)
    data = json.loads(proc.stdout)
    ca_dir = tmp_path / "ca"
    assert data["ca_dir"] == str(ca_dir) and data["encrypted"] is True and data["kind"] == "root"
    assert mode(ca_dir) == 0o700 and mode(ca_dir / "ca-key.pem") == 0o600
    cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=Home Lab CA,O=Home,C=DE"
    assert serial_hex(cert.serial_number) == data["serial"]
    key = (ca_dir / "ca-key.pem").read_bytes()
    assert key.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    # The strong KDF and cipher, as openssl reads them (a weak default cipher was a real CVE elsewhere).
    parsed = openssl("asn1parse", "-in", ca_dir / "ca-key.pem").stdout.decode()
    assert ":PBES2" in parsed and ":scrypt" in parsed and ":aes-256-cbc" in parsed
    assert openssl("pkey", "-in", ca_dir / "ca-key.pem", "-passin", f"pass:{PASSPHRASE}", "-noout").returncode == 0
    assert openssl("pkey", "-in", ca_dir / "ca-key.pem", "-passin", "pass:wrong", "-noout").returncode != 0
    assert PASSPHRASE not in proc.stdout + proc.stderr


def test_init_ca_passphrase_file_with_trailing_newline(tmp_path: Path) -> None:
    secret = tmp_path / "pass.txt"
    secret.write_text("s3cret phrase\n")
    secret.chmod(0o600)
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"))
    run_certkit("init-ca", "--passphrase-file", secret, env=env, check=True)
    # The newline is not part of the passphrase: openssl agrees on the key's passphrase.
    assert openssl("pkey", "-in", tmp_path / "ca" / "ca-key.pem", "-passin", "pass:s3cret phrase",
                   "-noout").returncode == 0
    run_certkit("issue-server", "a.example.com", "--passphrase-file", secret, cwd=tmp_path, env=env, check=True)


def test_init_ca_without_any_passphrase_source_refuses(tmp_path: Path) -> None:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"))
    proc = run_certkit("init-ca", env=env)
    assert_clean_error(proc, "needs a passphrase")
    assert not (tmp_path / "ca").exists()


def test_init_ca_no_passphrase_warns_and_writes_plain_key(tmp_path: Path) -> None:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"))
    proc = run_certkit("init-ca", "--no-passphrase", env=env, check=True)
    assert "Warning: the CA key is stored unencrypted" in proc.stderr
    assert (tmp_path / "ca" / "ca-key.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert mode(tmp_path / "ca" / "ca-key.pem") == 0o600
    run_certkit("issue-client", "alice", cwd=tmp_path, env=env, check=True)  # no passphrase needed


def test_init_ca_refuses_to_overwrite(ca_dir: Path, ca_env: dict) -> None:
    before = (ca_dir / "ca.pem").read_bytes(), (ca_dir / "ca-key.pem").read_bytes()
    proc = run_certkit("init-ca", "--name", "Another", env=ca_env)
    assert_clean_error(proc, "already exists")
    assert ((ca_dir / "ca.pem").read_bytes(), (ca_dir / "ca-key.pem").read_bytes()) == before


def test_init_ca_in_a_certificate_bundle_says_it_is_one(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    """A bundle holds the ca.pem of its issuer, but it is no CA: init-ca says what the folder is."""
    for command in (["issue-server", "good.example.com"], ["issue-client", "alice"]):
        run_certkit(*command, cwd=tmp_path, env=ca_env, check=True)
    for bundle in (tmp_path / "good.example.com", tmp_path / "alice"):
        before = {p.name: p.read_bytes() for p in bundle.iterdir()}
        proc = run_certkit("init-ca", "--ca-dir", bundle, "--name", "Another", env=ca_env)
        assert_clean_error(proc, f"{bundle} is a certificate bundle (it holds cert.pem and the ca.pem of the CA "
                                 "that issued it), not a CA directory; choose another --ca-dir.")
        assert "already exists" not in proc.stderr
        assert {p.name: p.read_bytes() for p in bundle.iterdir()} == before


def test_default_ca_dir_is_per_user(tmp_path: Path) -> None:
    env = certkit_env(HOME=str(tmp_path / "home"), XDG_DATA_HOME=str(tmp_path / "data"),
                      CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    data = json.loads(run_certkit("init-ca", "--json", env=env, check=True).stdout)
    assert data["ca_dir"] == str(tmp_path / "data" / "certkit")
    work = tmp_path / "anywhere"
    work.mkdir()
    run_certkit("issue-server", "localhost", cwd=work, env=env, check=True)
    assert (work / "localhost" / "cert.pem").exists()


@pytest.mark.parametrize("key_type", ["ecdsa-p384", "rsa-2048", "ed25519"])
def test_init_ca_key_types(tmp_path: Path, key_type: str) -> None:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    data = json.loads(run_certkit("init-ca", "--key-type", key_type, "--json", env=env, check=True).stdout)
    assert data["key_type"] == key_type
    proc = run_certkit("issue-server", "a.example.com", "--json", cwd=tmp_path, env=env, check=True)
    out = tmp_path / "a.example.com"
    ok = openssl("verify", "-x509_strict", "-CAfile", out / "ca.pem", "-purpose", "sslserver", out / "cert.pem")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(proc.stdout)["kind"] == "server"


# --- issue-server / issue-client ----------------------------------------------------
@pytest.mark.both_inventories
def test_issue_server_bundle(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    proc = run_certkit("issue-server", "localhost", "127.0.0.1", "::1", "--json", cwd=tmp_path, env=ca_env,
                       check=True)
    data = json.loads(proc.stdout)
    out = tmp_path / "localhost"
    assert sorted(os.listdir(out)) == ["ca.pem", "cert.pem", "fullchain.pem", "privkey.pem"]
    assert data["names"] == ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]
    assert mode(out / "privkey.pem") == 0o600 and mode(out / "cert.pem") == 0o644
    assert (out / "ca.pem").read_bytes() == (ca_dir / "ca.pem").read_bytes()
    assert (out / "fullchain.pem").read_bytes() == (out / "cert.pem").read_bytes()  # no intermediates
    cert = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    assert serial_hex(cert.serial_number) == data["serial"]
    # The key in privkey.pem is the certificate's.
    pub = openssl("pkey", "-in", out / "privkey.pem", "-pubout").stdout
    assert pub == openssl("x509", "-in", out / "cert.pem", "-noout", "-pubkey").stdout
    assert inventory_count(ca_dir) == 1


def test_human_summary_names_files_serial_and_expiry(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    proc = run_certkit("issue-server", "bücher.example", cwd=tmp_path, env=ca_env, check=True)
    assert "serverAuth" in proc.stdout and "xn--bcher-kva.example (bücher.example)" in proc.stdout
    assert "(200 days)" in proc.stdout and "xn--bcher-kva.example/privkey.pem" in proc.stdout
    assert "serial" in proc.stdout


def test_keys_are_0600_even_under_umask_000(tmp_path: Path, ca_env: dict) -> None:
    env = dict(ca_env)
    code = ("import os,sys,runpy; os.umask(0); sys.argv=['certkit']+sys.argv[1:]; "
            "runpy.run_module('certkit', run_name='__main__')")
    for args in (["init-ca"], ["issue-client", "alice"]):
        subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, env=env, check=True,
                       capture_output=True)
    assert mode(tmp_path / "ca" / "ca-key.pem") == 0o600 and mode(tmp_path / "ca") == 0o700
    assert mode(tmp_path / "alice" / "privkey.pem") == 0o600
    assert mode(tmp_path / "alice" / "cert.pem") == 0o644 and mode(tmp_path / "alice") == 0o755


@pytest.mark.both_inventories
def test_issue_client_identities(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    run_certkit("issue-client", "bob@example.com", "--uri", "spiffe://example.com/bob", "--dns",
                "bob-laptop.example.com", cwd=tmp_path, env=ca_env, check=True)
    cert = x509.load_pem_x509_certificate((tmp_path / "bob@example.com" / "cert.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["bob@example.com"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://example.com/bob"]
    assert san.get_values_for_type(x509.DNSName) == ["bob-laptop.example.com"]
    verify = openssl("verify", "-x509_strict", "-purpose", "sslclient", "-CAfile",
                     tmp_path / "bob@example.com" / "ca.pem", tmp_path / "bob@example.com" / "cert.pem")
    assert verify.returncode == 0


def test_force_replaces_and_default_lifetime_is_capped_at_ca_expiry(tmp_path: Path) -> None:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--days", "30", env=env, check=True)
    run_certkit("issue-server", "a.example.com", cwd=tmp_path, env=env, check=True)
    first = (tmp_path / "a.example.com" / "cert.pem").read_bytes()
    proc = run_certkit("issue-server", "a.example.com", "--force", "--json", cwd=tmp_path, env=env, check=True)
    assert (tmp_path / "a.example.com" / "cert.pem").read_bytes() != first
    data = json.loads(proc.stdout)
    ca = x509.load_pem_x509_certificate((tmp_path / "ca" / "ca.pem").read_bytes())
    assert data["not_after"] == ca.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "capped at the CA's expiry" in data["notes"][0]
    assert not [p for p in os.listdir(tmp_path / "a.example.com") if p.startswith(".")]


# --- bad input: one clear line, exit code, nothing written -----------------------------
BAD_SERVER_NAMES = [
    (["*.com"], "top-level"),
    (["*.co.uk"], "public suffix"),
    (["foo.*.example.com"], "left-most label"),
    (["a..b"], "empty label"),
    (["-x.example"], "hyphen"),
    (["under_score.example"], "'_'"),
    (["999.1.1.1"], "larger than 255"),
    (["01.1.1.1"], "leading zero"),
    (["fe80::1%eth0"], "zone"),
    (["../x"], "not a valid DNS name"),
    (["good.example.com", "bad..example.com"], "bad..example.com"),
]


@pytest.mark.parametrize(("names", "fragment"), BAD_SERVER_NAMES)
def test_bad_server_names(tmp_path: Path, ca_dir: Path, ca_env: dict, names: list[str], fragment: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    proc = run_certkit("issue-server", "--", *names, cwd=work, env=ca_env)  # "--": "-x..." is no option
    assert_clean_error(proc, fragment)
    assert names[-1] in proc.stderr  # the message names the value
    assert listing(work) == set() and inventory_count(ca_dir) == 0


def _nothing_written(work: Path, ca_dir: Path) -> None:
    assert listing(work) == set()
    assert inventory_count(ca_dir) == 0


def test_no_names_is_a_usage_error(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    proc = run_certkit("issue-server", cwd=tmp_path / "ca", env=ca_env)
    assert proc.returncode == 2 and "Missing argument" in proc.stderr and "Traceback" not in proc.stderr


def test_client_name_escaping_the_folder(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    work = tmp_path / "work"
    work.mkdir()
    assert_clean_error(run_certkit("issue-client", "../x", cwd=work, env=ca_env), "escape")
    _nothing_written(work, ca_dir)
    assert not (tmp_path / "x").exists()


@pytest.mark.both_inventories
def test_wrong_passphrase(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = dict(ca_env, CERTKIT_CA_PASSPHRASE="not the passphrase")
    proc = run_certkit("issue-server", "a.example.com", cwd=work, env=env)
    assert_clean_error(proc, "passphrase does not decrypt")
    assert "not the passphrase" not in proc.stderr
    _nothing_written(work, ca_dir)


def test_missing_passphrase_without_terminal(tmp_path: Path, ca_dir: Path) -> None:
    env = certkit_env(CERTKIT_CA_DIR=str(ca_dir))
    proc = run_certkit("issue-server", "a.example.com", cwd=tmp_path, env=env)
    assert_clean_error(proc, "CERTKIT_CA_PASSPHRASE")


def test_missing_ca_directory(tmp_path: Path) -> None:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "nope"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    proc = run_certkit("issue-server", "a.example.com", cwd=tmp_path, env=env)
    assert_clean_error(proc, f"No CA in {tmp_path / 'nope'}")
    assert listing(tmp_path) == set()


def test_broken_ca_certificate(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    (ca_dir / "ca.pem").write_text("not a certificate\n")
    work = tmp_path / "work"
    work.mkdir()
    assert_clean_error(run_certkit("issue-client", "alice", cwd=work, env=ca_env), "cannot be read")
    assert listing(work) == set()


def test_lifetime_past_ca_expiry(tmp_path: Path) -> None:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--days", "30", env=env, check=True)
    work = tmp_path / "work"
    work.mkdir()
    proc = run_certkit("issue-server", "a.example.com", "--days", "100", cwd=work, env=env)
    ca = x509.load_pem_x509_certificate((tmp_path / "ca" / "ca.pem").read_bytes())
    assert_clean_error(proc, f"CA expires on {ca.not_valid_after_utc:%Y-%m-%d}")
    assert "at most 29 days" in proc.stderr or "at most 30 days" in proc.stderr
    _nothing_written(work, tmp_path / "ca")


def test_server_lifetime_limit(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    assert_clean_error(run_certkit("issue-server", "a.example.com", "--days", "826", cwd=tmp_path, env=ca_env),
                       "at most 825 days")
    proc = run_certkit("issue-server", "a.example.com", "--days", "825", "--json", cwd=tmp_path, env=ca_env,
                       check=True)
    assert json.loads(proc.stdout)["kind"] == "server"
    assert_clean_error(run_certkit("issue-client", "x", "--days", "0", cwd=tmp_path, env=ca_env),
                       "0 is not in the range 1<=x<=36500", code=2)


@pytest.mark.both_inventories
def test_existing_output_needs_force(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    run_certkit("issue-client", "alice", cwd=tmp_path, env=ca_env, check=True)
    before = {p: (tmp_path / "alice" / p).read_bytes() for p in os.listdir(tmp_path / "alice")}
    proc = run_certkit("issue-client", "alice", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, "--force")
    assert {p: (tmp_path / "alice" / p).read_bytes() for p in os.listdir(tmp_path / "alice")} == before
    assert inventory_count(ca_dir) == 1  # the refused attempt issued nothing


def test_output_folder_that_is_a_symlink_is_refused(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "alice").symlink_to(target)
    assert_clean_error(run_certkit("issue-client", "alice", cwd=tmp_path, env=ca_env), "symbolic link")
    assert list(target.iterdir()) == []


# --- concurrency -----------------------------------------------------------------------
@pytest.mark.both_inventories
def test_concurrent_issuers_get_unique_serials_and_a_complete_inventory(tmp_path: Path, ca_dir: Path,
                                                                        ca_env: dict) -> None:
    script = (
        "import sys\n"
        "from certkit.store import CADirectory\n"
        "ca = CADirectory(sys.argv[1]).load(sys.argv[2].encode())\n"
        "for i in range(15):\n"
        "    print(ca.issue_client(f'{sys.argv[3]}-{i}').serial_hex)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(ca_dir), PASSPHRASE, f"p{n}"],
                              env=ca_env, stdout=subprocess.PIPE, text=True) for n in range(4)]
    serials = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        serials += out.split()
    assert len(serials) == 60 and len(set(serials)) == 60
    rows = [(r["serial"], r["subject"]) for r in CADirectory(ca_dir).inventory.rows()]
    assert sorted(r[0] for r in rows) == sorted(serials)
    assert len({r[1] for r in rows}) == 60


def test_occupied_folder_is_refused_before_any_secret_is_asked(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    run_certkit("issue-client", "alice", cwd=tmp_path, env=ca_env, check=True)
    no_secrets = {k: v for k, v in ca_env.items() if k != "CERTKIT_CA_PASSPHRASE"}
    proc = run_certkit("issue-client", "alice", "--p12", cwd=tmp_path, env=no_secrets)
    assert_clean_error(proc, "--force")  # not "needs a passphrase"/"needs a password"


@pytest.mark.parametrize("group", [[], ["trust"], ["acme"], ["inventory"]], ids=["certkit", "trust", "acme",
                                                                                   "inventory"])
def test_a_group_without_a_command_shows_its_help_as_help(group: list[str]) -> None:
    """click 8.2+ reports a bare group as a usage error whose message is the help: it must read as
    the help does (many lines), not escaped into one line as a message holding input is."""
    proc = run_certkit(*group)
    helped = run_certkit(*group, "--help")
    assert proc.returncode in (0, 2) and "Traceback" not in proc.stderr
    shown = proc.stdout + proc.stderr
    assert "\\x0a" not in shown and shown.strip() == helped.stdout.strip()
