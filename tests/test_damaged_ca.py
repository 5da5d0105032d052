"""A damaged CA directory is detected at load, with what is wrong and what to do;
nothing is issued from it, and ``certkit check`` reports the same on demand."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from pathlib import Path

import pytest

from certkit.ca import CA
from certkit.store import CADirectory

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit


def issue_refused(tmp_path: Path, env: dict, fragment: str) -> None:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    proc = run_certkit("issue-client", "alice", cwd=work, env=env)
    assert_clean_error(proc, fragment)
    assert list(work.iterdir()) == []


def check_fails(env: dict, check: str, fragment: str) -> None:
    proc = run_certkit("check", "--json", env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    findings = json.loads(proc.stdout)["findings"]
    errors = {f["check"]: f["message"] for f in findings if f["level"] == "error"}
    assert check in errors, findings
    assert fragment.lower() in errors[check].lower()
    assert PASSPHRASE not in proc.stdout + proc.stderr


def test_healthy_ca_passes_check(ca_dir: Path, ca_env: dict) -> None:
    proc = run_certkit("check", env=ca_env, check=True)
    assert "decrypts and matches ca.pem" in proc.stdout
    assert "0 certificates recorded" in proc.stdout


def test_key_that_does_not_match_the_certificate(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    other = tmp_path / "other"
    run_certkit("init-ca", env=dict(ca_env, CERTKIT_CA_DIR=str(other)), check=True)
    (ca_dir / "ca-key.pem").write_bytes((other / "ca-key.pem").read_bytes())
    issue_refused(tmp_path, ca_env, "does not belong to the CA certificate")
    check_fails(ca_env, "key", "does not belong")


def test_truncated_key(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    """Said to be truncated, not "wrong passphrase, or damaged": with the passphrase and without it
    (no passphrase opens it, so none is asked for), by issuing and by check alike."""
    data = (ca_dir / "ca-key.pem").read_bytes()
    (ca_dir / "ca-key.pem").write_bytes(data[: len(data) // 2])
    no_passphrase = {k: v for k, v in ca_env.items() if k != "CERTKIT_CA_PASSPHRASE"}
    for env in (ca_env, no_passphrase):
        issue_refused(tmp_path, env, "is damaged: it is truncated: its BEGIN ENCRYPTED PRIVATE KEY line has no END")
    check_fails(ca_env, "key", "is damaged: it is truncated")


def test_truncated_bundle_key_is_said_to_be(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    """The same for a bundle's key read back (export-p12, renew): truncated, named."""
    run_certkit("issue-client", "bob", cwd=tmp_path, env=ca_env, check=True)
    key = tmp_path / "bob" / "privkey.pem"
    key.write_bytes(key.read_bytes()[:100])
    proc = run_certkit("export-p12", tmp_path / "bob", cwd=tmp_path, env=dict(ca_env, CERTKIT_P12_PASSWORD="p12 pw"))
    assert_clean_error(proc, "is damaged: it is truncated: its BEGIN PRIVATE KEY line has no END line")


def test_wrong_passphrase(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    env = dict(ca_env, CERTKIT_CA_PASSPHRASE="wrong")
    issue_refused(tmp_path, env, "passphrase does not decrypt")
    check_fails(env, "key", "passphrase does not decrypt")


@pytest.mark.parametrize("damage", ["garbage", "missing", "newer", "no-table"])
def test_damaged_inventory(tmp_path: Path, ca_dir: Path, ca_env: dict, damage: str) -> None:
    db = ca_dir / "inventory.sqlite3"
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    if damage == "garbage":
        db.write_bytes(b"this is not an SQLite database" * 100)
        fragment = "damaged"
    elif damage == "missing":
        db.unlink()
        fragment = "missing"
    elif damage == "newer":
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA user_version = 99")
        fragment = "newer certkit"
    else:
        with sqlite3.connect(db) as conn:
            conn.execute("DROP TABLE certificates")
        fragment = "damaged"
    issue_refused(tmp_path, ca_env, fragment)
    check_fails(ca_env, "inventory", fragment)


def _saved_ca(path: Path, *, not_before: dt.datetime, days: int) -> dict:
    ca = CA.create("certkit short-lived CA", not_before=not_before, days=days)
    CADirectory(path).save_new(ca, PASSPHRASE.encode())
    return certkit_env(CERTKIT_CA_DIR=str(path), CERTKIT_CA_PASSPHRASE=PASSPHRASE)


def test_expired_ca(tmp_path: Path) -> None:
    env = _saved_ca(tmp_path / "ca", not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=10), days=5)
    issue_refused(tmp_path, env, "expired on")
    check_fails(env, "validity", "expired on")
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "sub", "--parent-ca-dir", tmp_path / "ca",
                       env=dict(env, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE))
    assert_clean_error(proc, "expired on")
    assert not (tmp_path / "sub").exists()


def test_ca_expiring_soon_warns_and_caps_lifetimes(tmp_path: Path) -> None:
    env = _saved_ca(tmp_path / "ca", not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=1), days=11)
    proc = run_certkit("check", env=env, check=True)
    assert "WARNING validity" in proc.stdout and "in 9 days" in proc.stdout
    data = json.loads(run_certkit("issue-server", "a.example.com", "--json", cwd=tmp_path, env=env,
                                  check=True).stdout)
    assert "capped at the CA's expiry" in data["notes"][0]
    assert_clean_error(run_certkit("issue-server", "b.example.com", "--days", "30", cwd=tmp_path, env=env),
                       "at most 10 days")
    run_certkit("issue-server", "c.example.com", "--days", "10", cwd=tmp_path, env=env, check=True)


def test_world_readable_unencrypted_key_is_refused(tmp_path: Path) -> None:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"))
    run_certkit("init-ca", "--no-passphrase", env=env, check=True)
    os.chmod(tmp_path / "ca" / "ca-key.pem", 0o644)
    issue_refused(tmp_path, env, "chmod 600")
    check_fails(env, "key-mode", "UNENCRYPTED")


def test_world_readable_encrypted_key_warns(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    os.chmod(ca_dir / "ca-key.pem", 0o644)
    proc = run_certkit("issue-client", "alice", cwd=tmp_path, env=ca_env, check=True)
    assert "Warning: the CA key" in proc.stderr and "chmod 600" in proc.stderr
    assert (tmp_path / "alice" / "cert.pem").exists()


def test_missing_ca_files(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    (ca_dir / "ca-key.pem").unlink()
    issue_refused(tmp_path, ca_env, "is missing")
    check_fails(ca_env, "key", "missing")
    (ca_dir / "ca.pem").unlink()
    issue_refused(tmp_path, ca_env, "has lost its ca.pem (inventory.sqlite3 is there)")


def test_a_missing_inventory_stays_missing(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    """Reading commands never create the inventory: verify, inspect, export-p12 and trust status
    leave it missing (it was made anew as an empty file, which every command then called damaged),
    and verify fails closed: revocation could not be checked, so the certificate is not called valid."""
    run_certkit("issue-server", "a.example", cwd=tmp_path, env=ca_env, check=True)
    run_certkit("revoke", tmp_path / "a.example", env=ca_env, check=True)
    (ca_dir / "inventory.sqlite3").unlink()
    proc = run_certkit("verify", tmp_path / "a.example" / "cert.pem", "--purpose", "server", "--json", env=ca_env)
    data = json.loads(proc.stdout)
    assert proc.returncode == 1 and data["valid"] is False, data
    assert any(r.startswith("revocation could not be checked against the CA's inventory: The inventory")
               and "is missing" in r for r in data["reasons"]), data
    run_certkit("inspect", ca_dir, env=ca_env)
    run_certkit("export-p12", tmp_path / "a.example", env=dict(ca_env, CERTKIT_P12_PASSWORD="p12 password"))
    run_certkit("trust", "status", "--nss", "--ca-dir", ca_dir, env=dict(ca_env, HOME=str(tmp_path)))
    assert not (ca_dir / "inventory.sqlite3").exists()
    assert_clean_error(run_certkit("list", env=ca_env), "inventory.sqlite3 is missing")


@pytest.mark.both_inventories
@pytest.mark.parametrize("version", [None, "0", "v3"], ids=["missing", "zero", "unreadable"])
def test_an_inventory_without_a_schema_version_is_named_not_a_traceback(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                                        inventory_url: str | None,
                                                                        version: str | None) -> None:
    """A partial restore can lose the schema version: every command says so in one line (no
    migration from version 0 is attempted), and check reports it as an error, not a migration."""
    import sqlite3

    if inventory_url:
        import psycopg

        with psycopg.connect(inventory_url) as conn:
            conn.execute("DELETE FROM meta WHERE key = 'schema_version'")
            if version is not None:
                conn.execute("INSERT INTO meta VALUES ('schema_version', %s)", (version,))
    else:
        if version == "v3":
            pytest.skip("SQLite's user_version is an integer")
        with sqlite3.connect(ca_dir / "inventory.sqlite3") as db:
            db.execute("PRAGMA user_version = 0")
        db.close()
    for args in (["list"], ["issue-server", "a.example", "--out", tmp_path / "a"], ["crl", "--out", tmp_path / "c"]):
        assert_clean_error(run_certkit(*args, env=ca_env), "schema version")
    assert not (tmp_path / "a").exists()
    proc = run_certkit("check", env=ca_env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "ERROR" in proc.stdout and "schema version" in proc.stdout and "migrates" not in proc.stdout
