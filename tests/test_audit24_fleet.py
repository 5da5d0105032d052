"""Audit round 24, fleet: defects found in issue-batch, list and their siblings, each with its test.

1. ``issue-batch --resume`` kept the bundles of an interrupted batch whatever the rerun asked for: a
   different --key-type or --days (or a manifest edited meanwhile) silently mixed old and new bundles,
   and a kept certificate that had expired since was kept too; the rerun now refuses such a folder,
   saying what differs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit
from fleet_helpers import backdated_ca, bundle


# --- 1. --resume keeps only bundles the rerun would issue ---------------------------------------------------------
def _manifest(folder: Path, *names: str) -> Path:
    manifest = folder / "fleet.csv"
    manifest.write_text("kind,names\n" + "".join(f"server,{name}\n" for name in names))
    return manifest


@pytest.mark.parametrize(("first", "rerun", "fragment"), [
    ((), ("--key-type", "rsa-2048"), "its key is ecdsa-p256; the line asks for rsa-2048"),
    (("--key-type", "ed25519"), (), "its key is ed25519; the line asks for ecdsa-p256"),
    (("--days", "90"), ("--days", "30"), "its certificate lives 90 days; the line asks for 30"),
    ((), ("--days", "30"), "its certificate lives 200 days; the line asks for 30"),
])
def test_resume_refuses_a_bundle_of_another_key_type_or_lifetime(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                                   first: tuple, rerun: tuple, fragment: str) -> None:
    run_certkit("issue-batch", _manifest(tmp_path, "a.example.com"), "--out-dir", "certs", *first, cwd=tmp_path,
                env=ca_env, check=True)
    manifest = _manifest(tmp_path, "a.example.com", "b.example.com")
    proc = run_certkit("issue-batch", manifest, "--out-dir", "certs", "--resume", *rerun, cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, fragment)
    assert "line 2: certs/a.example.com holds a bundle that --resume does not keep" in proc.stderr
    assert not (tmp_path / "certs" / "b.example.com").exists()  # nothing of the rest was issued either
    # the same options as the first run: the bundle is kept and the rest issued
    again = run_certkit("issue-batch", manifest, "--out-dir", "certs", "--resume", *first, cwd=tmp_path, env=ca_env,
                        check=True)
    assert "kept       1 bundle already complete" in again.stdout
    assert (tmp_path / "certs" / "b.example.com" / "cert.pem").is_file()


def test_resume_keeps_a_manifest_key_type_and_lifetime_that_match(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    manifest = tmp_path / "fleet.csv"
    manifest.write_text("kind,names,key_type,days\nserver,a.example.com,rsa-2048,45\nclient,Alice,ed25519,\n")
    run_certkit("issue-batch", manifest, "--out-dir", "certs", cwd=tmp_path, env=ca_env, check=True)
    with manifest.open("a") as grown:
        grown.write("server,b.example.com,,\n")
    again = run_certkit("issue-batch", manifest, "--out-dir", "certs", "--resume", cwd=tmp_path, env=ca_env,
                        check=True)
    assert "Issued 1 certificate" in again.stdout and "kept       2 bundles" in again.stdout
    manifest.write_text("kind,names,key_type,days\nserver,a.example.com,rsa-2048,46\n")  # edited: another lifetime
    proc = run_certkit("issue-batch", manifest, "--out-dir", "certs", "--resume", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, "its certificate lives 45 days; the line asks for 46")


def test_resume_refuses_a_bundle_whose_certificate_has_expired(tmp_path: Path) -> None:
    ca = backdated_ca(tmp_path / "ca")
    issued = bundle(ca, tmp_path / "certs" / "old.example.com", "old.example.com", days=2, age=3)
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    proc = run_certkit("issue-batch", _manifest(tmp_path, "old.example.com", "new.example.com"), "--out-dir", "certs",
                       "--resume", cwd=tmp_path, env=env)
    assert_clean_error(proc, f"its certificate expired on {issued.cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC")
    kept = x509.load_pem_x509_certificate((tmp_path / "certs" / "old.example.com" / "cert.pem").read_bytes())
    assert kept == issued.cert and not (tmp_path / "certs" / "new.example.com").exists()
