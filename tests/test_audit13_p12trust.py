"""The thirteenth round's findings on export-p12, renew's bundle.p12, trust and verify's report (regress20):

2. export-p12 --ca-dir ROOT never packs a certificate whose issuing intermediate (recorded by the root) cannot
   be asked: its folder gone or its inventory unreadable refuses ("cannot be told"), in the CLI and the library;
4. export-p12 asks about the whole chain, as verify does: an intermediate the given root revoked refuses;
6. renew stops, before signing, over a bundle.p12 it cannot read (it could not tell whether to keep it legacy);
8. trust uninstall --every-certkit-ca goes ahead when the CA's ca.pem, or the CA directory itself, cannot be read;
12. verify's report cuts a long value as error lines are cut, and "(N characters)" counts the value only.

Unreadable files are tested with file modes in force: root without the capabilities that bypass them (the
pytest interpreter lives under /root, which the user nobody cannot reach), as tests/test_audit5.py does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_audit5 import obeying_modes

from conftest import assert_clean_error, certkit_env, run_certkit


def _run_obeying_modes(*args, env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*obeying_modes(), sys.executable, "-m", "certkit", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def _library(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([*obeying_modes(), sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120)


# --- 2 and 4: export-p12 under a root, its intermediate unreadable or revoked -------------------------------
@pytest.fixture
def chain(tmp_path: Path) -> tuple[dict, Path, Path]:
    """A root, an intermediate it recorded, and a client bundle of the intermediate; the password file."""
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "root"), HOME=str(tmp_path))
    run_certkit("init-ca", "--name", "Export Root", "--no-passphrase", env=env, check=True)
    run_certkit("init-ca", "--name", "Export Int", "--ca-dir", tmp_path / "int", "--parent-ca-dir", tmp_path / "root",
                "--no-passphrase", env=env, check=True)
    run_certkit("issue-client", "bob", "--ca-dir", tmp_path / "int", "--out", tmp_path / "bob", env=env, check=True)
    password = tmp_path / "pw"
    password.write_text("a good password\n")
    password.chmod(0o600)
    return env, tmp_path / "bob", password


def _export(tmp_path: Path, env: dict, bob: Path, password: Path, *, modes: bool = False):
    args = ("export-p12", bob, "--password-file", password, "--ca-dir", tmp_path / "root")
    return _run_obeying_modes(*args, env=env) if modes else run_certkit(*args, env=env)


def _export_folder(tmp_path: Path, env: dict, bob: Path) -> subprocess.CompletedProcess:
    code = ("import certkit.pkcs12 as p, certkit.errors as e\n"
            f"try: p.export_folder({str(bob)!r}, b'pw', ca_dir={str(tmp_path / 'root')!r})\n"
            "except e.CertkitError as exc: print('refused:', exc)\nelse: print('written')\n")
    return _library(code, env)


def test_export_p12_refuses_when_the_issuing_intermediates_folder_is_gone(tmp_path: Path, chain) -> None:
    env, bob, password = chain
    run_certkit("revoke", bob, "--reason", "keyCompromise", "--ca-dir", tmp_path / "int", env=env, check=True)
    (tmp_path / "int").rename(tmp_path / "int-moved")
    proc = _export(tmp_path, env, bob, password)
    assert_clean_error(proc, "was revoked cannot be told, so it is not exported: the inventory of CN=Export Int, "
                             "which issued it, cannot be read")
    assert "where it was created, is gone" in proc.stderr, proc.stderr
    lib = _export_folder(tmp_path, env, bob)
    assert lib.stdout.startswith("refused: Whether the certificate"), lib.stdout + lib.stderr
    assert not (bob / "bundle.p12").exists()


def test_export_p12_refuses_when_the_issuing_intermediates_inventory_cannot_be_read(tmp_path: Path, chain) -> None:
    env, bob, password = chain
    run_certkit("revoke", bob, "--reason", "keyCompromise", "--ca-dir", tmp_path / "int", env=env, check=True)
    (tmp_path / "int" / "inventory.sqlite3").chmod(0)
    proc = _export(tmp_path, env, bob, password, modes=True)
    assert_clean_error(proc, "was revoked cannot be told, so it is not exported: the inventory of CN=Export Int")
    lib = _export_folder(tmp_path, env, bob)
    assert lib.stdout.startswith("refused: Whether the certificate"), lib.stdout + lib.stderr
    assert not (bob / "bundle.p12").exists()


def test_another_intermediates_folder_gone_does_not_stop_the_export(tmp_path: Path, chain) -> None:
    """A recorded intermediate that is not above the bundle: skipped, as before."""
    env, bob, password = chain
    run_certkit("init-ca", "--name", "Other Int", "--ca-dir", tmp_path / "other", "--parent-ca-dir",
                tmp_path / "root", "--no-passphrase", env=env, check=True)
    shutil.rmtree(tmp_path / "other")
    proc = _export(tmp_path, env, bob, password)
    assert proc.returncode == 0, proc.stderr
    assert (bob / "bundle.p12").is_file()


def _serial_of(env: dict, ca_dir: Path, cn: str) -> str:
    import json

    rows = json.loads(run_certkit("list", "--json", "--ca-dir", ca_dir, env=env, check=True).stdout)
    rows = rows["certificates"] if isinstance(rows, dict) else rows
    return next(r["serial"] for r in rows if cn in (r.get("subject") or r.get("common_name") or ""))


def test_export_p12_refuses_a_bundle_whose_intermediate_the_root_revoked(tmp_path: Path, chain) -> None:
    env, bob, password = chain
    serial = _serial_of(env, tmp_path / "root", "Export Int")
    run_certkit("revoke", serial, "--reason", "keyCompromise", "--ca-dir", tmp_path / "root", env=env, check=True)
    verify = run_certkit("verify", bob / "fullchain.pem", "--purpose", "client", "--ca-dir", tmp_path / "root",
                         env=env)
    assert "the issuing CA CN=Export Int was revoked" in verify.stdout, verify.stdout
    proc = _export(tmp_path, env, bob, password)
    assert_clean_error(proc, "is not exported: the issuing CA CN=Export Int was revoked on ")
    assert "(reason: keyCompromise)" in proc.stderr, proc.stderr
    lib = _export_folder(tmp_path, env, bob)
    assert lib.stdout.startswith("refused: The certificate") and "was revoked" in lib.stdout, lib.stdout + lib.stderr
    default = certkit_env(HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path / "xdg"))  # the root as the per-user CA
    shutil.copytree(tmp_path / "root", tmp_path / "xdg" / "certkit", symlinks=True)
    proc = run_certkit("export-p12", bob, "--password-file", password, env=default)
    assert_clean_error(proc, "the issuing CA CN=Export Int was revoked")
    assert not (bob / "bundle.p12").exists()


# --- 6. renew over a bundle.p12 it cannot read ------------------------------------------------------------
@pytest.mark.parametrize("how", [("srv",), ("--all",), ("srv", "--out", "elsewhere")])
def test_renew_stops_before_signing_over_a_bundle_p12_it_cannot_read(tmp_path: Path, how) -> None:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path))
    run_certkit("init-ca", "--name", "P12 Renew CA", "--no-passphrase", env=env, check=True)
    run_certkit("issue-server", "a.example.com", "--out", tmp_path / "srv", env=env, check=True)
    password = tmp_path / "pw"
    password.write_text("a good password\n")
    password.chmod(0o600)
    run_certkit("export-p12", tmp_path / "srv", "--legacy", "--password-file", password, env=env, check=True)
    p12 = tmp_path / "srv" / "bundle.p12"
    before = p12.read_bytes()
    p12.chmod(0)
    proc = _run_obeying_modes("renew", *how, "--p12-password-file", password, env=env, cwd=tmp_path)
    p12.chmod(0o600)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    said = proc.stdout + proc.stderr
    assert "srv/bundle.p12 was written the legacy way (3DES, for an older importer) cannot be told, so the bundle " \
           "is not renewed: it cannot be read: Permission denied" in said, said
    assert p12.read_bytes() == before and not (tmp_path / "elsewhere").exists()
    listed = run_certkit("list", "--json", env=env, check=True).stdout
    assert listed.count('"serial"') == 1, listed  # nothing signed


# --- 8. trust uninstall --every-certkit-ca with a CA it cannot read --------------------------------------
@pytest.mark.parametrize("unreadable", ["ca.pem", "the CA directory"])
@pytest.mark.parametrize("named_by", ["--ca-dir", "$CERTKIT_CA_DIR"])
def test_every_certkit_ca_goes_ahead_with_a_ca_it_cannot_read(tmp_path: Path, unreadable: str, named_by: str) -> None:
    """Private HOME, NSS only (certutil): the CA's ca.pem, or its whole folder, unreadable (file modes in force)."""
    from test_trust import trust

    from conftest import PASSPHRASE, require
    from trust_helpers import nss_listing

    require("certutil")
    ca = tmp_path / "ca"
    env = certkit_env(CERTKIT_CA_DIR=str(ca), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path))
    run_certkit("init-ca", "--name", "Unread CA", "--permit-dns", "localhost", env=env, check=True)
    home = tmp_path / "home"
    home.mkdir()
    trust("install", "--nss", home=home, ca_dir=ca, check=True)
    assert "certkit-" in nss_listing(home / ".pki" / "nssdb")
    target = ca / "ca.pem" if unreadable == "ca.pem" else ca
    target.chmod(0)
    try:
        given = {"ca_dir": ca} if named_by == "--ca-dir" else {"extra_env": {"CERTKIT_CA_DIR": str(ca)}}
        proc = trust("uninstall", "--every-certkit-ca", "--nss", home=home, prefix=obeying_modes(), **given)
        plain = trust("uninstall", "--nss", home=home, prefix=obeying_modes(), **given)  # without it: refused
    finally:
        target.chmod(0o755 if target == ca else 0o644)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(the CA cannot be read (" in proc.stdout and "Permission denied" in proc.stdout, proc.stdout
    assert "removed certkit-" in proc.stdout, proc.stdout
    db = home / ".pki" / "nssdb"  # removed whole when install had created it
    assert not db.exists() or "certkit-" not in nss_listing(db)
    assert_clean_error(plain, "Permission denied")


# --- 12. verify's report with a long --name; the cut's count ----------------------------------------------
@pytest.mark.parametrize("as_json", [False, True])
def test_verify_report_lines_are_cut_as_error_lines_are(tmp_path: Path, as_json: bool) -> None:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path))
    run_certkit("init-ca", "--name", "Long CA", "--no-passphrase", env=env, check=True)
    run_certkit("issue-client", "cli", "--out", tmp_path / "cli", env=env, check=True)
    name = "a" * 3000
    proc = run_certkit("verify", tmp_path / "cli" / "cert.pem", "--purpose", "client", "--name", name,
                       *(["--json"] if as_json else []), env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for line in (proc.stdout + proc.stderr).splitlines():
        assert len(line) <= 1000, line[:200]
    assert "(3000 characters)" in proc.stdout, proc.stdout
    if as_json:
        import json

        report = json.loads(proc.stdout)
        assert report["name_checked"] and report["name_ok"] is False
        assert report["reasons"][0].startswith("not valid for name " + "a" * 100 + "..."), report["reasons"]


@pytest.mark.parametrize("purpose", ["server", "client"])
def test_the_cut_counts_the_value_alone(tmp_path: Path, purpose: str) -> None:
    """A --name of exactly 1,100 characters was said to be of 1,102 (in quotes) or 1,101 (before a colon)."""
    from certkit.text import cut_long_words

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path))
    run_certkit("init-ca", "--name", "Count CA", "--no-passphrase", env=env, check=True)
    run_certkit("issue-client", "cli", "--out", tmp_path / "cli", env=env, check=True)
    name = "b" * 1100 if purpose == "client" else ("b" * 60 + ".") * 18 + "b" * 2  # 1,100 characters
    assert len(name) == 1100
    proc = run_certkit("verify", tmp_path / "cli" / "cert.pem", "--purpose", purpose, "--name", name, env=env)
    said = proc.stdout + proc.stderr
    assert "(1100 characters)" in said and "(1101 characters)" not in said and "(1102 characters)" not in said, said
    assert cut_long_words(f'the name "{"c" * 700}".') == f'the name "{"c" * 100}...{"c" * 100}" (700 characters).'
    assert cut_long_words(f"({'d' * 600}):") == f"({'d' * 100}...{'d' * 100}) (600 characters):"
