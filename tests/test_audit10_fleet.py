"""Audit round ten, fleets (report fleet10), each as a class:

1. no output goes over a file certkit reads that the environment names ($CERTKIT_INVENTORY_URL, $PGPASSFILE,
   $PGSERVICEFILE, $SOFTHSM2_CONF), nor over any SQLite database (an inventory), even with --force;
2. a timer carries only UTF-8: a PATH folder that is not is left out, another variable is refused in one line;
3. the same timer installed from a shell with another PATH is the same timer (it takes the new PATH);
4. (in test_audit9_fleet) the longest gap between two runs counts a 25-hour day;
5. ``--include-expired`` takes any window: its runs renew what expired between two of them;
6. a jsonl or k8s name with a control character is refused, as a folder's and a tar member's are;
7. a timer whose service is gone renews no CA, and is removed whatever $CERTKIT_CA_DIR says;
8. list measures its note in terminal columns (wide characters count two).
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit
from fleet_helpers import run_in_pty


@pytest.fixture
def pp(tmp_path) -> Path:
    secret = tmp_path / "pp"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    return secret


def _writers(target: Path, tmp_path: Path) -> list[tuple[str, ...]]:
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names\nserver,bb.example.com\n")
    return [("issue-server", "a.example.com", "--format", "jsonl", "--out", str(target), "--force"),
            ("issue-client", "alice", "--format", "k8s", "--out", str(target), "--force"),
            ("issue-batch", str(manifest), "--format", "tar", "--out", str(target), "--force"),
            ("crl", "--out", str(target), "--force")]


# --- 1. files the environment names, and inventories ---------------------------------------------------------
@pytest.mark.parametrize("form", ["path", "sqlite-url"])
def test_no_output_goes_over_the_inventory_the_environment_names(ca_dir, ca_env, tmp_path, form):
    shared = tmp_path / "inv" / "shared.sqlite3"
    shared.parent.mkdir()
    shared.write_bytes((ca_dir / "inventory.sqlite3").read_bytes())
    env = dict(ca_env, CERTKIT_INVENTORY_URL=str(shared) if form == "path" else f"sqlite:///{shared}")
    run_certkit("issue-server", "kept.example.com", "--out", tmp_path / "kept", env=env, check=True)
    before = shared.read_bytes()
    for args in _writers(shared, tmp_path):
        proc = run_certkit(*args, env=env)
        assert_clean_error(proc, "$CERTKIT_INVENTORY_URL names")
        assert shared.read_bytes() == before, args
    listed = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)
    assert [c["names"] for c in listed["certificates"]] == [["DNS:kept.example.com"]]


def test_no_output_goes_over_any_sqlite_database(ca_dir, ca_env, tmp_path):
    other = tmp_path / "some.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE t (x)")
    db.close()
    before = other.read_bytes()
    for args in _writers(other, tmp_path):
        proc = run_certkit(*args, env=ca_env)
        assert_clean_error(proc, "is an SQLite database")
        assert other.read_bytes() == before, args


@pytest.mark.parametrize("variable", ["PGPASSFILE", "PGSERVICEFILE", "SOFTHSM2_CONF"])
def test_no_output_goes_over_a_file_postgresql_or_softhsm_reads(ca_dir, ca_env, tmp_path, variable):
    named = tmp_path / "named.conf"
    named.write_text("# what a tool reads\n")
    env = dict(ca_env, **{variable: str(named)})
    for args in _writers(named, tmp_path):
        proc = run_certkit(*args, env=env)
        assert_clean_error(proc, f"${variable} names")
        assert named.read_text() == "# what a tool reads\n"


def test_the_library_refuses_it_too(ca_dir, tmp_path, monkeypatch):
    from certkit.errors import UnsafeOutputPath
    from certkit.formats.output import Output

    shared = tmp_path / "shared.sqlite3"
    shared.write_bytes((ca_dir / "inventory.sqlite3").read_bytes())
    monkeypatch.setenv("CERTKIT_INVENTORY_URL", str(shared))
    with pytest.raises(UnsafeOutputPath, match="CERTKIT_INVENTORY_URL"):
        Output("jsonl", shared, force=True).check([ca_dir])


# --- 2. a timer carries UTF-8 only --------------------------------------------------------------------------
def test_a_path_folder_that_is_not_utf8_is_left_out_of_the_timer(ca_dir, ca_env, tmp_path, pp):
    odd = os.fsdecode(b"/opt/caf\xe9/bin")
    env = dict(ca_env, PATH=f"{ca_env['PATH']}{os.pathsep}{odd}", CERTKIT_SYSTEMD_SYSTEM_DIR=str(tmp_path / "s"),
               HOME=str(tmp_path))
    run_certkit("renew", "--install-timer", "--expiring", "30d", "--passphrase-file", pp, "--unit-dir",
                tmp_path / "u", env=env, check=True)
    service = (tmp_path / "u" / "certkit-renew.service").read_bytes()
    assert b"caf" not in service and b'Environment="PATH=' in service
    service.decode("utf-8")
    cron = run_certkit("renew", "--install-timer", "--cron", "--expiring", "30d", "--passphrase-file", pp, env=env)
    assert cron.returncode == 0 and "caf" not in cron.stdout, cron.stderr


@pytest.mark.parametrize("variable", ["PGSERVICE", "PGPASSFILE", "PGOPTIONS"])
@pytest.mark.parametrize("cron", [False, True])
def test_a_carried_variable_that_is_not_utf8_is_refused_in_one_line(ca_dir, ca_env, tmp_path, pp, variable, cron):
    env = dict(ca_env, **{variable: os.fsdecode(b"/tmp/x\xff")}, CERTKIT_SYSTEMD_SYSTEM_DIR=str(tmp_path / "s"),
               HOME=str(tmp_path))
    where = ["--cron"] if cron else ["--unit-dir", str(tmp_path / "u")]
    proc = run_certkit("renew", "--install-timer", *where, "--expiring", "30d", "--passphrase-file", pp, env=env)
    assert_clean_error(proc, f"${variable} is")
    assert "not UTF-8" in proc.stderr and not (tmp_path / "u").exists()


# --- 3. the same timer from a shell with another PATH ------------------------------------------------------------
def test_the_same_timer_from_another_path_is_the_same_timer(ca_dir, ca_env, tmp_path, pp):
    env = dict(ca_env, CERTKIT_SYSTEMD_SYSTEM_DIR=str(tmp_path / "s"), HOME=str(tmp_path))
    units = tmp_path / "u"
    args = ("renew", "--install-timer", "--expiring", "30d", "--passphrase-file", pp, "--unit-dir", units)
    run_certkit(*args, env=env, check=True)
    other = dict(env, PATH=f"{env['PATH']}{os.pathsep}{tmp_path / 'bin'}")
    proc = run_certkit(*args, env=other)
    assert proc.returncode == 0, proc.stderr
    assert str(tmp_path / "bin") in (units / "certkit-renew.service").read_text()  # the newest PATH
    different = run_certkit("renew", "--install-timer", "--expiring", "40d", "--passphrase-file", pp, "--unit-dir",
                            units, env=other)
    assert_clean_error(different, "another renewal or schedule")


# --- 5. --include-expired takes any window ---------------------------------------------------------------------
@pytest.mark.parametrize("cron", [False, True])
def test_include_expired_takes_a_short_window(ca_dir, ca_env, tmp_path, pp, cron):
    env = dict(ca_env, CERTKIT_SYSTEMD_SYSTEM_DIR=str(tmp_path / "s"), HOME=str(tmp_path))
    where = ["--cron"] if cron else ["--unit-dir", str(tmp_path / "u")]
    proc = run_certkit("renew", "--install-timer", *where, "--expiring", "1d", "--include-expired",
                       "--passphrase-file", pp, env=env)
    assert proc.returncode == 0, proc.stderr
    written = proc.stdout if cron else (tmp_path / "u" / "certkit-renew.service").read_text()
    assert "--include-expired" in written
    refused = run_certkit("renew", "--install-timer", *where, "--expiring", "1d", "--passphrase-file", pp,
                          *([] if cron else ["--force"]), env=env)
    assert refused.returncode == 2 and "--include-expired" in refused.stderr


# --- 6. control characters in a jsonl or k8s name ------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["jsonl", "k8s", "tar"])
@pytest.mark.parametrize("bad", ["a\nb", "a\x1b]0;pwned\x07b", "a\x85b", "a\u2028b", "a\tb"])
def test_a_name_with_a_control_character_is_refused_in_every_file_format(ca_dir, ca_env, tmp_path, fmt, bad):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"kind": "server", "names": "c.example.com", "out": bad}) + "\n")
    proc = run_certkit("issue-batch", manifest, "--format", fmt, "--out", tmp_path / f"o.{fmt}", env=ca_env)
    assert_clean_error(proc, "control character")
    assert not (tmp_path / f"o.{fmt}").exists()
    assert json.loads(run_certkit("list", "--json", env=ca_env, check=True).stdout)["certificates"] == []


# --- 7. a timer whose service is gone ----------------------------------------------------------------------------
def test_a_timer_without_its_service_is_removed(ca_dir, ca_env, tmp_path, pp):
    env = dict(ca_env, CERTKIT_SYSTEMD_SYSTEM_DIR=str(tmp_path / "s"), HOME=str(tmp_path))
    units = tmp_path / "u"
    run_certkit("renew", "--install-timer", "--expiring", "30d", "--passphrase-file", pp, "--unit-dir", units,
                env=env, check=True)
    (units / "certkit-renew.service").unlink()
    proc = run_certkit("renew", "--remove-timer", "--unit-dir", units, env=env)  # $CERTKIT_CA_DIR is set
    assert proc.returncode == 0, proc.stderr
    assert not (units / "certkit-renew.timer").exists()


# --- 8. list's note in terminal columns ----------------------------------------------------------------------------
def test_the_list_note_is_measured_in_columns(tmp_path):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "W", env=env, check=True)
    for i in range(3):
        run_certkit("issue-client", f"日本語テスト{i}", "--out", tmp_path / f"c{i}", env=env, check=True)
    cols = 113
    code, shown, _ = run_in_pty(["list", "--name", "日本語テスト*", "--limit", "2"], env=env, cols=cols, rows=40)
    assert code == 0, shown
    from certkit.text import columns

    lines = shown.rstrip("\n").splitlines()
    assert all(columns(line) <= cols for line in lines), [columns(line) for line in lines]
    assert not any(line.endswith("…") and "serials" in line.lower() for line in lines), lines
    assert any("8+ digit prefix works in renew and revoke" in line for line in lines), lines
