"""certkit list: filters by kind, status, expiry window and name glob; table and JSON; and the
inventory's migration from schema version 1."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pytest

from certkit.store import CADirectory
from certkit.vocabulary import serial_hex

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
    for args, fragment in ((["--expiring", "30x"], "is not a period"), (["--expiring", "0"], "is an empty period"),
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


@pytest.fixture
def counted(ca_dir):
    """14 certificates listed without a filter: 6 h1 servers expiring in 30 days (one of them renewed,
    so no longer expiring, and its successor), 4 h2 servers and 3 clients for 400 days; and 2
    abandoned h1 servers."""
    from certkit.ca import CA
    from certkit.inventory import Pending
    from certkit.issuing import Target, client_request, deliver_many, server_request
    from certkit.keys import generate_key

    ca = CADirectory(ca_dir).load(PASSPHRASE.encode())
    key = generate_key("ed25519")  # one key for all: the count is tested, not key generation
    requests = ([server_request([f"h1-{i}.example.com"], key=key, days=30) for i in range(6)]
                + [server_request([f"h2-{i}.example.com"], key=key, days=400) for i in range(4)]
                + [client_request(f"dev-{i}", key=key, days=400) for i in range(3)])
    first = deliver_many(ca, [(request, Target()) for request in requests])[0].issued
    ca.renew(first.cert, days=200)
    signer = CA(ca.cert, ca.key, ca.parents)  # signs without recording: the rows are made abandoned here
    abandoned = [signer.issue_server([f"h1-lost-{i}.example.com"]).cert for i in range(2)]
    assert ca.inventory.record_pending([Pending(cert, "server") for cert in abandoned]) == []
    ca.inventory.mark_abandoned(serial_hex(cert.serial_number) for cert in abandoned)


def count_line(env, *args) -> str:
    proc = run_certkit("list", *args, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()[-1].split(" (serials shortened")[0]


# (filters, the list's last line): every case in one test, so that each also runs on PostgreSQL
LIMITED = [
    (["--limit", "4"], "4 of 14 certificates"),
    (["--limit", "14"], "14 certificates"),
    (["--name", "h1*", "--limit", "4"], "4 of 7 certificates matching 'h1*'"),
    (["--name", "h1*", "--limit", "7"], "7 certificates"),  # exactly as many as match: no "of"
    (["--expiring", "60d", "--limit", "2"], "2 of 5 certificates expiring within 60 days"),
    (["--expiring", "60d", "--limit", "5"], "5 certificates"),
    (["--status", "abandoned", "--limit", "1"], "1 of 2 abandoned certificates"),  # counted though never listed
    (["--kind", "client", "--limit", "2"], "2 of 3 client certificates"),
    (["--kind", "server", "--status", "valid", "--name", "H2*", "--limit", "3"],
     "3 of 4 valid server certificates matching 'H2*'"),
    (["--kind", "server", "--name", "h1*", "--expiring", "60d", "--limit", "1"],
     "1 of 5 server certificates matching 'h1*' expiring within 60 days"),
    (["--status", "revoked", "--limit", "1"], "No certificates match."),
]


def test_limited_count_is_of_the_matching_certificates(counted, ca_env):
    """"N of M": M is how many certificates match the filters, and it is said only when more match
    than are shown."""
    for args, line in LIMITED:
        assert count_line(ca_env, *args) == line, args
        shown = int(line.split()[0]) if line[0].isdigit() else 0
        assert len(listing(ca_env, *args)) == shown, args
