"""Issue 9, class 9: damaged inventory rows are named, never a traceback; check changes nothing.

Rows are damaged as a disk error, a hand edit or a broken tool would damage them: a date that is
not a date, names that are not JSON, a certificate (DER) that does not parse, a status certkit
does not know, a revocation without a readable date. ``certkit check`` names each by serial and
changes nothing (the file's bytes and time stay, an old schema stays old); ``list`` warns and
lists the rest; renew, revoke and crl refuse a damaged row with one Error line.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from conftest import assert_clean_error, run_certkit
from integrity_helpers import make_schema_one, read_bundle

DAMAGE = {
    "web1": ("not_after", "the 5th of never"),
    "web2": ("names", "{not json"),
    "web3": ("der", b"\x30\x03\x02\x01"),
    "alice": ("status", "mislaid"),
    "bob": ("revoked_at", "yesterday-ish"),  # revoked first
}


@pytest.fixture
def damaged(tmp_path: Path, ca_env: dict, ca_dir: Path) -> dict[str, str]:
    """Six certificates, five of them with one damaged field each: name -> serial."""
    (tmp_path / "m.csv").write_text("kind,names,out\n" + "".join(
        f"server,{name}.example.internal,{name}\n" for name in ("web1", "web2", "web3", "web5"))
        + "client,Alice,alice\nclient,Bob,bob\n")
    run_certkit("issue-batch", tmp_path / "m.csv", "--out-dir", tmp_path, env=ca_env, check=True)
    run_certkit("revoke", tmp_path / "bob", env=ca_env, check=True)
    serials = {name: read_bundle(tmp_path / name).serial for name in (*DAMAGE, "web5")}
    with sqlite3.connect(ca_dir / "inventory.sqlite3") as db:
        for name, (column, value) in DAMAGE.items():
            db.execute(f"UPDATE certificates SET {column} = ? WHERE serial = ?", (value, serials[name]))
    db.close()
    return serials


def state(ca_dir: Path) -> tuple:
    path = ca_dir / "inventory.sqlite3"
    info = path.stat()
    return path.read_bytes(), info.st_mtime_ns, info.st_size


def test_check_names_every_damaged_row_and_changes_nothing(ca_env: dict, ca_dir: Path, damaged: dict) -> None:
    before = state(ca_dir)
    proc = run_certkit("check", env=ca_env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    for name in DAMAGE:
        assert damaged[name] in proc.stdout, (name, proc.stdout)
    assert damaged["web5"] not in proc.stdout
    report = json.dumps(json.loads(run_certkit("check", "--json", env=ca_env).stdout))
    assert all(damaged[name] in report for name in DAMAGE), report
    assert state(ca_dir) == before


def test_list_warns_and_lists_the_rest(ca_env: dict, damaged: dict) -> None:
    """Every row whose fields cannot be read is named in a warning. (list reads no certificate,
    so a row whose DER alone is damaged is listed; check, renew and revoke name it.)"""
    unreadable = [name for name in DAMAGE if DAMAGE[name][0] != "der"]
    proc = run_certkit("list", env=ca_env)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("Warning:")]
    for name in unreadable:
        assert sum(damaged[name] in w for w in warnings) == 1, (name, proc.stderr)
    assert damaged["web5"][:16] in proc.stdout
    data = json.loads(run_certkit("list", "--json", env=ca_env).stdout)
    assert sorted(data["damaged"]) == sorted(damaged[n] for n in unreadable)
    assert {r["serial"] for r in data["certificates"] if r["kind"] != "ca"} <= {damaged["web5"], damaged["web3"]}
    assert damaged["web5"] in {r["serial"] for r in data["certificates"]}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_write_commands_refuse_a_damaged_row(tmp_path: Path, ca_env: dict, ca_dir: Path, damaged: dict,
                                             name: str) -> None:
    before_files = {p.name: p.read_bytes() for p in (tmp_path / name).iterdir()}
    for args in (["renew", damaged[name]], ["renew", tmp_path / name], ["revoke", damaged[name]],
                 ["revoke", tmp_path / name, "--reason", "keyCompromise"]):
        proc = run_certkit(*args, env=ca_env)
        assert_clean_error(proc, damaged[name])
        assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1, proc.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / name).iterdir()} == before_files


def test_crl_refuses_while_a_revocation_is_unreadable(tmp_path: Path, ca_env: dict, ca_dir: Path,
                                                      damaged: dict) -> None:
    number = sqlite3.connect(ca_dir / "inventory.sqlite3").execute(
        "SELECT value FROM meta WHERE key = 'crl_number'").fetchone()
    for args in (["crl"], ["crl", "--out", tmp_path / "ca.crl"]):
        proc = run_certkit(*args, env=ca_env)
        assert_clean_error(proc, "damaged")  # a CRL without a revocation it cannot read would be wrong
        assert damaged["bob"] in proc.stderr or damaged["alice"] in proc.stderr, proc.stderr
    assert not (tmp_path / "ca.crl").exists()
    assert sqlite3.connect(ca_dir / "inventory.sqlite3").execute(
        "SELECT value FROM meta WHERE key = 'crl_number'").fetchone() == number  # no number taken


def test_healthy_rows_stay_usable(tmp_path: Path, ca_env: dict, damaged: dict) -> None:
    """Damage elsewhere does not stop work on a healthy certificate given by folder or serial."""
    run_certkit("renew", tmp_path / "web5", env=ca_env, check=True)
    renewed = read_bundle(tmp_path / "web5").serial
    run_certkit("revoke", renewed, env=ca_env, check=True)
    by_name = run_certkit("renew", "web5.example.internal", env=ca_env)  # a query across every row
    assert by_name.returncode in (0, 1) and "Traceback" not in by_name.stderr, by_name.stderr


def test_check_does_not_migrate_an_old_schema(tmp_path: Path, ca_env: dict, ca_dir: Path) -> None:
    """An inventory of schema version 1 (certkit's first: no folder, sink, writer or keyed column)."""
    run_certkit("issue-server", "web.example.internal", "--out", tmp_path / "web", env=ca_env, check=True)
    path = ca_dir / "inventory.sqlite3"
    make_schema_one(ca_dir)
    before = state(ca_dir)
    proc = run_certkit("check", env=ca_env)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "schema version 1" in proc.stdout, proc.stdout
    assert state(ca_dir) == before
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 1
    assert os.path.exists(path)
    # Any other command migrates it, and the certificate is still there.
    listed = json.loads(run_certkit("list", "--json", env=ca_env, check=True).stdout)["certificates"]
    assert [r["serial"] for r in listed] == [read_bundle(tmp_path / "web").serial]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] >= 2
