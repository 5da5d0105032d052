"""certkit list: filters by kind, status, expiry window and name glob; table and JSON; and the
inventory's migration from schema version 1."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pytest

from certkit.store import CADirectory

from conftest import PASSPHRASE, assert_clean_error, run_certkit

pytestmark = pytest.mark.both_inventories  # every test with a CA runs on PostgreSQL too (team_fixtures)

V1_SCHEMA = """
CREATE TABLE certificates (
    serial TEXT PRIMARY KEY, kind TEXT NOT NULL, subject TEXT NOT NULL, names TEXT NOT NULL,
    not_before TEXT NOT NULL, not_after TEXT NOT NULL, fingerprint_sha256 TEXT NOT NULL, der BLOB NOT NULL,
    status TEXT NOT NULL DEFAULT 'valid', revoked_at TEXT, revocation_reason TEXT, renewed_from TEXT,
    issued_at TEXT NOT NULL
);
CREATE INDEX certificates_not_after ON certificates(not_after);
"""


def listing(env, *args):
    proc = run_certkit("list", "--json", *args, env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["count"] == len(data["certificates"])
    return data["certificates"]


def backdated_root(path, days_ago: int = 60, inventory_url: str | None = None):
    """A root CA whose validity began ``days_ago`` days ago, so it can hold already-expired leaves
    (its inventory in the PostgreSQL database ``inventory_url`` if given)."""
    from certkit.ca import CA, _random_serial
    from certkit.keys import generate_key
    from certkit.profiles import PROFILES, build_certificate, leaf_subject

    key = generate_key()
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=days_ago)
    cert = build_certificate(PROFILES["root-ca"], subject=leaf_subject("Backdated root"), public_key=key.public_key(),
                             issuer_name=leaf_subject("Backdated root"), issuer_key=key, issuer_ski=None,
                             serial=_random_serial(), not_before=start, not_after=start + dt.timedelta(days=3650))
    CADirectory(path).save_new(CA(cert, key), PASSPHRASE.encode(), inventory_url=inventory_url)


@pytest.fixture
def fleet(tmp_path, ca_env, inventory_url):
    backdated_root(tmp_path / "ca", inventory_url=inventory_url)
    ca = CADirectory(tmp_path / "ca").load(PASSPHRASE.encode())
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    serials = {
        "web": ca.issue_server(["www.example.com", "example.com"], days=10).serial_hex,
        "api": ca.issue_server(["api.Example.com"]).serial_hex,
        "db": ca.issue_server(["db.internal", "10.0.0.5"], days=25).serial_hex,
        "old": ca.issue_server(["old.internal"], days=30, not_before=past).serial_hex,
        "alice": ca.issue_client("alice", emails=["alice@example.com"]).serial_hex,
        "bob": ca.issue_client("bob", days=20).serial_hex,
    }
    ca.revoke(serials["bob"], "keyCompromise")
    return serials


def test_filters(fleet, ca_env):
    s = fleet
    everything = listing(ca_env)
    assert sorted(r["serial"] for r in everything) == sorted(s.values())
    assert [r["not_after"] for r in everything] == sorted(r["not_after"] for r in everything)
    status = {r["serial"]: r["status"] for r in everything}
    assert status[s["old"]] == "expired" and status[s["bob"]] == "revoked" and status[s["web"]] == "valid"
    assert {r["serial"] for r in listing(ca_env, "--kind", "client")} == {s["alice"], s["bob"]}
    assert {r["serial"] for r in listing(ca_env, "--status", "revoked")} == {s["bob"]}
    assert {r["serial"] for r in listing(ca_env, "--status", "expired")} == {s["old"]}
    assert {r["serial"] for r in listing(ca_env, "--status", "valid")} == {s["web"], s["api"], s["db"], s["alice"]}
    # Expiring within 30 days: valid, not revoked (bob), not already expired (old).
    assert {r["serial"] for r in listing(ca_env, "--expiring", "30d")} == {s["web"], s["db"]}
    assert {r["serial"] for r in listing(ca_env, "--expiring", "15")} == {s["web"]}
    assert {r["serial"] for r in listing(ca_env, "--expiring", "2w")} == {s["web"]}
    assert {r["serial"] for r in listing(ca_env, "--name", "*.EXAMPLE.com")} == {s["web"], s["api"]}
    assert {r["serial"] for r in listing(ca_env, "--name", "10.0.0.*")} == {s["db"]}
    assert {r["serial"] for r in listing(ca_env, "--name", "alice@*")} == {s["alice"]}
    assert {r["serial"] for r in listing(ca_env, "--kind", "server", "--expiring", "30", "--name", "db*")} == {s["db"]}
    assert listing(ca_env, "--name", "nothing*") == []
    assert len(listing(ca_env, "--limit", "2")) == 2


def test_table_and_renewed(fleet, ca_env, tmp_path):
    proc = run_certkit("list", env=ca_env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["SERIAL", "KIND", "STATUS", "NOT", "AFTER", "SUBJECT", "NAMES"]
    assert lines[-1].startswith("6 certificates")
    web = next(line for line in lines if "www.example.com" in line)
    assert fleet["web"][:16] in web and "server" in web and "valid" in web
    assert "No certificates match." in run_certkit("list", "--name", "zzz", env=ca_env).stdout
    # A renewed certificate is marked and drops out of --expiring: it needs no action.
    ca = CADirectory(tmp_path / "ca").load(PASSPHRASE.encode())
    old = ca.inventory.certificate(fleet["web"])
    new = ca.renew(old, days=200)
    expiring = {r["serial"] for r in listing(ca_env, "--expiring", "30d")}
    assert fleet["web"] not in expiring and new.serial_hex not in expiring
    rows = {r["serial"]: r for r in listing(ca_env)}
    assert rows[fleet["web"]]["renewed_by"] == new.serial_hex
    assert rows[new.serial_hex]["renewed_from"] == fleet["web"]
    assert "valid (renewed)" in run_certkit("list", "--name", "www.example.com", env=ca_env).stdout


def test_bad_input(tmp_path, ca_env, ca_dir):
    for args, fragment in ((["--expiring", "30x"], "is not a period"), (["--expiring", "0"], "is not a period"),
                           (["--status", "lost"], "'lost' is not one of"), (["--kind", "user"], "is not one of")):
        assert_clean_error(run_certkit("list", *args, env=ca_env), fragment, code=2)
    missing = run_certkit("list", env=dict(ca_env, CERTKIT_CA_DIR=str(tmp_path / "none")))
    assert_clean_error(missing, "No CA in")
    assert "No certificates issued yet" in run_certkit("list", env=ca_env).stdout


@pytest.mark.sqlite_only  # PostgreSQL inventories start at version 3: tests/test_team_postgres.py migrates them
def test_version_1_inventory_is_migrated(tmp_path, ca_env, ca_dir):
    ca = CADirectory(ca_dir).load(PASSPHRASE.encode())
    issued = ca.issue_server(["legacy.internal"])
    path = ca_dir / "inventory.sqlite3"
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT serial, kind, subject, names, not_before, not_after, fingerprint_sha256, der,"
                        " status, revoked_at, revocation_reason, renewed_from, issued_at FROM certificates").fetchall()
    conn.executescript("DROP TABLE certificates; DROP TABLE IF EXISTS meta;" + V1_SCHEMA)
    conn.executemany("INSERT INTO certificates VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    assert [r["serial"] for r in listing(ca_env)] == [issued.serial_hex]
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"certificates_status_not_after", "certificates_renewed_from"} <= indexes
    plan = " ".join(r[3] for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT serial FROM certificates WHERE status = 'valid' AND not_after >= ?"
        " AND not_after <= ?", ("a", "b")))
    assert "certificates_status_not_after" in plan or "certificates_not_after" in plan
    conn.close()
    run_certkit("revoke", issued.serial_hex, env=ca_env, check=True)
    run_certkit("crl", "--out", tmp_path / "crl.pem", env=ca_env, check=True)
    # An inventory from a newer certkit is refused rather than misread.
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    assert_clean_error(run_certkit("list", env=ca_env), "written by a newer certkit")
