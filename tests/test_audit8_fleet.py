"""Audit round eight, fleets (report fleet8), each finding as a class, with real processes:

1. two commands given the same --out FILE take turns: the first one's certificates are released when the second
   one's file replaces it (they were both recorded in the file, which held only the last one's);
2. --out FILE is never one of the files the command reads (passphrase file, manifest, CSR), even with --force;
3. --out FILE is never a file of a bundle folder the inventory records there;
4. a timer is never installed to renew everything every day (--all, --days no longer than the window), and the
   certificates whose life is no longer than the window are counted at install time;
5. --rekey never makes a key for a certificate signed from a CSR: refused alone, the requester's key kept in bulk;
6. a stop during a hook that ignores SIGTERM kills it after a grace, says how it ended, and speaks of "the rest"
   only when renewals are left;
7. bulk --json says why each skipped certificate was skipped and which need attention, and the warnings still
   go to standard error;
8. a second bulk renewal refused while one runs says what is true.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from certkit.vocabulary import serial_hex

from conftest import PASSPHRASE, assert_clean_error, openssl, run_certkit
from integrity_helpers import signalled_once_started, start_paused


def serial_in(folder: Path) -> str:
    return serial_hex(x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes()).serial_number)


def rows(env: dict, *args: str) -> list[dict]:
    return json.loads(run_certkit("list", "--json", *args, env=env, check=True).stdout)["certificates"]


# --- 1. one writer of an output file at a time ------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["jsonl", "tar"])
def test_two_writers_of_one_output_file_take_turns(ca_dir, ca_env, tmp_path, fmt):
    out = tmp_path / f"fleet.{fmt}"
    out.write_text("")  # an existing (empty) file: what --force replaces
    marker = tmp_path / "pause"
    first = start_paused(["issue-server", "a.turns.example", "--format", fmt, "--out", out, "--force"], ca_env,
                         tmp_path, "recorded", marker)
    second = subprocess.Popen([sys.executable, "-m", "certkit", "issue-server", "b.turns.example", "--format", fmt,
                               "--out", str(out), "--force"], env=ca_env, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        assert second.poll() is None, second.communicate()  # it waits for the first to finish with the file
    finally:
        marker.unlink()
        assert first.wait(timeout=120) == 0, first.communicate()
        _out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    listed = {row["subject"]: row for row in rows(ca_env, "--name", "*.turns.example")}
    assert listed["CN=b.turns.example"]["folder"] == str(out)
    assert listed["CN=a.turns.example"]["folder"] is None  # released: the file no longer holds it
    if fmt == "jsonl":
        assert [json.loads(line)["name"] for line in out.read_text().splitlines()] == ["b.turns.example"]


def test_two_batches_into_one_file_leave_the_inventory_true(ca_dir, ca_env, tmp_path):
    out = tmp_path / "fleet.jsonl"
    out.write_text("")  # an existing (empty) file: what --force replaces
    procs = []
    for letter in "ab":
        manifest = tmp_path / f"{letter}.csv"
        manifest.write_text("kind,names\n" + "".join(f"server,{letter}{i}.batch.example\n" for i in range(40)))
        procs.append(subprocess.Popen([sys.executable, "-m", "certkit", "issue-batch", str(manifest), "--format",
                                       "jsonl", "--out", str(out), "--force", "--jobs", "1"], env=ca_env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    in_file = {json.loads(line)["serial"] for line in out.read_text().splitlines()}
    recorded = {row["serial"] for row in rows(ca_env, "--name", "*.batch.example") if row["folder"] == str(out)}
    assert len(in_file) == 40 and recorded == in_file


# --- 2. an input is never the output ------------------------------------------------------------------------------
def _csr(tmp_path: Path) -> Path:
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            str(tmp_path / "r.key"), "-subj", "/CN=csr.example", "-addext", "subjectAltName=DNS:csr.example",
            "-out", str(tmp_path / "r.csr"))
    return tmp_path / "r.csr"


@pytest.mark.parametrize("case", ["issue-passphrase", "batch-manifest", "batch-passphrase", "csr", "crl"])
def test_an_output_file_is_never_an_input(ca_dir, ca_env, tmp_path, case):
    env = {k: v for k, v in ca_env.items() if k != "CERTKIT_CA_PASSPHRASE"}
    secret = tmp_path / "ca.pass"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names\nserver,m1.example\n")
    unlock = ["--passphrase-file", str(secret)]
    args, victim, given = {
        "issue-passphrase": (["issue-server", "w.example", "--format", "jsonl", "--out", secret], secret,
                             "--passphrase-file"),
        "batch-manifest": (["issue-batch", manifest, "--format", "tar", "--out", manifest], manifest, "MANIFEST"),
        "batch-passphrase": (["issue-batch", manifest, "--format", "k8s", "--out", tmp_path / "." / "ca.pass"],
                             secret, "--passphrase-file"),
        "csr": (["sign-csr", _csr(tmp_path), "--server", "--format", "jsonl", "--out", tmp_path / "r.csr"],
                tmp_path / "r.csr", "CSR"),
        "crl": (["crl", "--out", secret], secret, "--passphrase-file"),
    }[case]
    before = victim.read_bytes()
    proc = run_certkit(*args, "--force", *unlock, env=env, cwd=tmp_path)
    assert_clean_error(proc, f"is the file given as {given}")
    assert "even with --force" in proc.stderr
    assert victim.read_bytes() == before
    assert rows(env) == []


# --- 3. never over a recorded bundle's file ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["privkey.pem", "cert.pem", "fullchain.pem"])
def test_an_output_file_is_never_a_recorded_bundles_file(ca_dir, ca_env, tmp_path, name):
    run_certkit("issue-server", "www.example.com", "--out", tmp_path / "www", env=ca_env, check=True)
    before = {p.name: p.read_bytes() for p in (tmp_path / "www").iterdir()}
    proc = run_certkit("issue-server", "api.example.com", "--format", "jsonl", "--out", tmp_path / "www" / name,
                       "--force", env=ca_env)
    assert_clean_error(proc, f"is the {name} of the bundle folder of certificate {serial_in(tmp_path / 'www')}")
    assert {p.name: p.read_bytes() for p in (tmp_path / "www").iterdir()} == before
    # another file in the folder is only a file
    run_certkit("issue-server", "api.example.com", "--format", "jsonl", "--out", tmp_path / "www" / "more.jsonl",
                env=ca_env, check=True)


# --- 4. a timer that would renew everything every day -------------------------------------------------------------
def test_a_timer_never_renews_everything_every_day(ca_dir, ca_env, tmp_path):
    secret = tmp_path / "ca.pass"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    units = tmp_path / "units"
    base = ["renew", "--install-timer", "--unit-dir", units, "--passphrase-file", secret]
    assert_clean_error(run_certkit(*base, "--all", env=ca_env), "--all would renew every certificate every day",
                       code=2)
    assert_clean_error(run_certkit("renew", "--install-timer", "--cron", "--all", "--passphrase-file", secret,
                                   env=ca_env), "give --expiring PERIOD", code=2)
    for days in ("30", "31"):  # a 31-day successor is due again the next day
        assert_clean_error(run_certkit(*base, "--expiring", "30d", "--days", days, env=ca_env),
                           "no more than a day longer than the renewal window of 30 days", code=2)
    assert not units.exists()
    run_certkit("issue-server", "short.example", "--days", "20", "--out", tmp_path / "short", env=ca_env, check=True)
    run_certkit("issue-server", "long.example", "--out", tmp_path / "long", env=ca_env, check=True)
    proc = run_certkit(*base, "--expiring", "30d", env=ca_env)
    assert proc.returncode == 0, proc.stderr
    assert f"1 valid certificate lives no more than a day longer than the renewal window of 30 days (such as " \
           f"{serial_in(tmp_path / 'short')})" in proc.stderr
    quiet = run_certkit(*base, "--expiring", "14d", "--force", env=ca_env)
    assert quiet.returncode == 0 and "Warning" not in quiet.stderr, quiet.stderr


# --- 5. --rekey and a CSR's certificate ---------------------------------------------------------------------------
def test_rekey_never_makes_a_key_for_a_csrs_certificate(ca_dir, ca_env, tmp_path):
    csr = _csr(tmp_path)
    run_certkit("sign-csr", csr, "--server", "--out", tmp_path / "app", "--days", "10", env=ca_env, check=True)
    run_certkit("issue-server", "www.example", "--days", "10", "--out", tmp_path / "www", env=ca_env, check=True)
    old = serial_in(tmp_path / "app")
    proc = run_certkit("renew", tmp_path / "app", "--rekey", env=ca_env)
    assert_clean_error(proc, f"{old} was signed from a CSR: its requester holds the private key")
    assert serial_in(tmp_path / "app") == old and not (tmp_path / "app" / "privkey.pem").exists()
    data = json.loads(run_certkit("renew", "--expiring", "30d", "--rekey", "--days", "90", "--json", env=ca_env,
                                  check=True).stdout)
    by_folder = {o["folder"]: o for o in data["certificates"]}
    app = by_folder[str(tmp_path / "app")]
    assert app["outcome"] == "renewed" and any("requester's key" in n for n in app["notes"])
    assert not (tmp_path / "app" / "privkey.pem").exists()
    requester = openssl("pkey", "-in", str(tmp_path / "r.key"), "-pubout").stdout
    assert openssl("x509", "-in", str(tmp_path / "app" / "cert.pem"), "-pubkey", "-noout").stdout == requester
    assert by_folder[str(tmp_path / "www")]["outcome"] == "renewed"  # the others get new keys
    assert (tmp_path / "www" / "privkey.pem").stat().st_mode & 0o777 == 0o600


# --- 6. a hook that ignores SIGTERM --------------------------------------------------------------------------------
def test_a_stop_kills_a_hook_that_ignores_sigterm(ca_dir, ca_env, tmp_path):
    run_certkit("issue-server", "www.example", "--days", "10", "--out", tmp_path / "www", env=ca_env, check=True)
    started, finished = tmp_path / "started", tmp_path / "finished"
    hook = f"trap '' TERM INT HUP; touch {started}; sleep 60; touch {finished}"
    code, out, err = signalled_once_started(["renew", "--expiring", "30d", "--days", "90", "--json", "--exec-timeout",
                                             "300", "--exec", hook], ca_env, started, signal.SIGTERM)
    # the hook would sleep 60 s: the grace is 5
    assert code == 143, err
    assert not finished.exists()
    run = json.loads(out)["certificates"][0]["hook"]
    assert run["error"] == "interrupted (SIGTERM), it was still running 5 s after SIGTERM, so it was killed"
    assert "every planned renewal was done" in err and "renew the rest" not in err


# --- 7. --json says why, and the warnings stay ------------------------------------------------------------------
def test_bulk_json_says_which_skipped_bundles_need_attention(ca_dir, ca_env, tmp_path):
    run_certkit("issue-server", "moved.example", "--days", "10", "--out", tmp_path / "moved", env=ca_env, check=True)
    (tmp_path / "moved").rename(tmp_path / "elsewhere")
    run_certkit("issue-server", "file.example", "--days", "10", "--format", "jsonl", "--out", tmp_path / "f.jsonl",
                env=ca_env, check=True)
    proc = run_certkit("renew", "--expiring", "30d", "--json", env=ca_env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["needs_attention"] == 1 and data["skipped"] == 2
    why = {o["folder"]: (o["why"], o["needs_attention"]) for o in data["certificates"]}
    assert why == {str(tmp_path / "moved"): ("moved", True), str(tmp_path / "f.jsonl"): ("elsewhere", False)}
    assert proc.stderr.startswith("Warning: ") and "moved.example" in proc.stderr


# --- 8. one bulk renewal at a time, said truly ---------------------------------------------------------------------
def test_a_second_bulk_renewal_says_what_is_true(ca_dir, ca_env):
    fd = os.open(ca_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running bulk renewal holds it
        proc = run_certkit("renew", "--all", "--kind", "client", env=ca_env)
    finally:
        os.close(fd)
    assert_clean_error(proc, "is running, so this one renewed nothing (not even what only this one selects): run "
                             "it again once the other has ended")
    assert "renews what is due" not in proc.stderr


# --- regress10: the same classes, one step further -----------------------------------------------------------------
def test_a_crl_never_replaces_a_recorded_file(ca_dir, ca_env, tmp_path):
    run_certkit("issue-server", "d.example", "--out", tmp_path / "d", env=ca_env, check=True)
    run_certkit("issue-server", "j.example", "--format", "jsonl", "--out", tmp_path / "keys.jsonl", env=ca_env,
                check=True)
    for target, said in ((tmp_path / "d" / "privkey.pem", "is the privkey.pem of the bundle folder"),
                         (tmp_path / "keys.jsonl", "holds certificate")):
        before = target.read_bytes()
        assert_clean_error(run_certkit("crl", "--out", target, "--force", env=ca_env), said)
        assert target.read_bytes() == before


def test_a_name_equal_to_the_output_file_is_no_input(ca_dir, ca_env, tmp_path):
    """regress10 #2: every text argument was taken for a file the command reads (NAMES, NAME)."""
    for args in (["issue-server", "fp.example"], ["issue-client", "alice"]):
        out = args[1]
        run_certkit(*args, "--format", "jsonl", "--out", out, env=ca_env, cwd=tmp_path, check=True)
        proc = run_certkit(*args, "--format", "jsonl", "--out", out, "--force", env=ca_env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr


def test_force_over_another_cas_output_file_is_said(tmp_path):
    from conftest import certkit_env

    env = certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "R", "--ca-dir", tmp_path / "ca", env=env, check=True)
    run_certkit("init-ca", "--name", "I", "--ca-dir", tmp_path / "ica", "--parent-ca-dir", tmp_path / "ca", env=env,
                check=True)
    first = json.loads(run_certkit("issue-server", "xa.example", "--format", "jsonl", "--out", tmp_path / "x.jsonl",
                                   "--ca-dir", tmp_path / "ca", "--json", env=env, check=True).stdout)
    proc = run_certkit("issue-server", "xb.example", "--format", "jsonl", "--out", tmp_path / "x.jsonl", "--force",
                       "--ca-dir", tmp_path / "ica", "--json", env=env, check=True)
    notes = json.loads(proc.stdout)["notes"]
    assert any(f"held certificate {first['serial']} of another CA (CN=R)" in n for n in notes), notes
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names\nserver,b1.example\n")
    batch = run_certkit("issue-batch", manifest, "--format", "jsonl", "--out", tmp_path / "x.jsonl", "--force",
                        "--ca-dir", tmp_path / "ca", "--json", env=env, check=True)
    assert len(json.loads(batch.stdout)["foreign_replaced"]) == 1  # xb.example, of the intermediate


def test_export_p12_names_a_link_loop(ca_dir, ca_env, tmp_path):
    run_certkit("issue-server", "v.example", "--out", tmp_path / "v", env=ca_env, check=True)
    (tmp_path / "v" / "privkey.pem").unlink()
    os.symlink("x", tmp_path / "v" / "privkey.pem")
    os.symlink("privkey.pem", tmp_path / "v" / "x")
    secret = tmp_path / "pw"
    secret.write_text("p12 password 123\n")
    secret.chmod(0o600)
    proc = run_certkit("export-p12", tmp_path / "v", "--password-file", secret, env=ca_env)
    assert_clean_error(proc, "privkey.pem is a loop of symbolic links")


def test_a_run_stopped_early_counts_what_was_due(ca_dir, ca_env, tmp_path):
    """team8 #3: a run stopped early said "Renewed 12 of 12" when 60 were due."""
    for name in ("s1.example", "s2.example", "s3.example"):
        run_certkit("issue-server", name, "--days", "10", "--out", tmp_path / name, env=ca_env, check=True)
    marker = tmp_path / "pause"
    proc = start_paused(["renew", "--expiring", "30d", "--days", "60"], ca_env, tmp_path, "signed", marker)
    try:
        proc.send_signal(signal.SIGTERM)
    finally:
        marker.unlink()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    first = out.splitlines()[0] if out else ""
    assert first.startswith("Renewed ") and " of 3 " in first, (out, err)
