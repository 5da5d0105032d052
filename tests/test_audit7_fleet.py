"""Audit round seven, fleets (report fleet7), each finding as a class, with real processes:

1. a certificate renewed, revoked or moved by another command while a bulk run goes on is skipped
   (as the planner would skip it), not failed: exit 0;
2. a replaced bundle file that keeps a group-readable mode keeps its group too (or becomes 0644);
3. a kept key readable by its group only (PostgreSQL's root:postgres 0640) gets no chmod 600 advice;
4. the crontab line carries PATH, so hooks find /usr/sbin's programs under cron's bare PATH;
5. hooks get CERTKIT_CA_DIR, the CA in use;
7. a hook's cut output is cut at a line, says so, and --json says output_truncated;
8. --remove-timer refuses what it would ignore; --cron refuses systemd's options; --remove-timer
   --cron speaks of the crontab line;
9. a bundle whose cert.pem holds no certificate is said to be damaged, not "another certificate".
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from cryptography import x509

from certkit.vocabulary import serial_hex

from conftest import PASSPHRASE, assert_clean_error, certkit_env, code_others_can_read, run_certkit
from integrity_helpers import start_paused


def serial_in(folder: Path) -> str:
    return serial_hex(x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes()).serial_number)


def issue(env: dict, tmp_path: Path, name: str, days: int = 10) -> str:
    run_certkit("issue-server", name, "--days", str(days), "--out", tmp_path / name, env=env, check=True)
    return serial_in(tmp_path / name)


def finish(proc: subprocess.Popen, marker: Path) -> tuple[int, str, str]:
    marker.unlink()
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


# --- 1. changed while the run goes on ----------------------------------------------------------------------------
def test_renewed_revoked_or_moved_meanwhile_is_skipped_not_failed(ca_dir, ca_env, tmp_path):
    """fleet7 #1: the bulk run re-plans each certificate; what it found renewed, revoked or moved by
    then was reported failed (exit 1, "renew that one"), where the next run calls the same state fine."""
    first = issue(ca_env, tmp_path, "k1.test", days=5)  # the soonest to expire: renewed first
    serials = {name: issue(ca_env, tmp_path, name) for name in ("k2.test", "k3.test", "k4.test")}
    marker = tmp_path / "pause"
    proc = start_paused(["renew", "--expiring", "30d", "--days", "60", "--json"], ca_env, tmp_path, "signed", marker)
    try:
        run_certkit("renew", tmp_path / "k2.test", "--days", "60", env=ca_env, check=True)
        run_certkit("revoke", serials["k3.test"], env=ca_env, check=True)
        (tmp_path / "k4.test").rename(tmp_path / "k4-moved")
    finally:
        code, out, err = finish(proc, marker)
    assert code == 0, (out, err)
    report = json.loads(out)
    assert report["ok"] is True and report["failed"] == 0 and report["renewed"] == 1, report
    outcomes = {c["old_serial"]: c for c in report["certificates"]}
    assert outcomes[first]["outcome"] == "renewed"
    assert {outcomes[s]["outcome"] for s in serials.values()} == {"skipped"}, outcomes
    assert "another command renewed it as " in outcomes[serials["k2.test"]]["reason"]
    assert "was revoked on " in outcomes[serials["k3.test"]]["reason"]
    assert "was moved" in outcomes[serials["k4.test"]]["reason"]  # the planner's own words
    again = run_certkit("renew", "--expiring", "30d", "--days", "60", env=ca_env)
    assert again.returncode == 0 and "was moved" in again.stderr  # and the next run agrees


def test_renewed_by_hand_between_signing_and_writing_is_skipped(ca_dir, ca_env, tmp_path):
    """The same race one step later: the bulk run had planned and signed, then the inventory refused
    its record (another renewal came first). Skipped, and its signed certificate never written."""
    old = issue(ca_env, tmp_path, "r1.test")
    marker = tmp_path / "pause"
    args = ["renew", "--expiring", "30d", "--days", "60", "--json"]
    proc = start_paused(args, ca_env, tmp_path, "signed", marker)
    try:
        run_certkit("renew", tmp_path / "r1.test", "--days", "60", env=ca_env, check=True)
        by_hand = serial_in(tmp_path / "r1.test")
    finally:
        code, out, err = finish(proc, marker)
    assert code == 0, (out, err)
    report = json.loads(out)
    assert report["ok"] is True and (report["failed"], report["renewed"]) == (0, 0), report
    [entry] = report["certificates"]
    assert entry["old_serial"] == old and entry["outcome"] == "skipped"
    assert f"renewed it as {by_hand}" in entry["reason"], entry
    quiet = run_certkit("renew", "--expiring", "30d", env=ca_env)  # nothing due any more: nothing said
    assert serial_in(tmp_path / "r1.test") == by_hand and (quiet.returncode, quiet.stdout) == (0, "")


# --- 2. a replaced file keeps its group --------------------------------------------------------------------------
def other_group() -> int:
    """A group this process may give its files that is not its own: any, as root (daemon's); else
    one of its supplementary groups."""
    if os.geteuid() == 0:
        try:
            return grp.getgrnam("daemon").gr_gid
        except KeyError:
            return 1
    others = [g for g in os.getgroups() if g != os.getegid()]
    if not others:
        pytest.skip("this user belongs to no group but its own: it cannot give a file another group")
    return others[0]


def share_with_group(folder: Path, gid: int, names=("cert.pem", "fullchain.pem", "privkey.pem")) -> None:
    """The PostgreSQL / HAProxy set-up: the server's group may read the bundle, mode 0640."""
    for name in names:
        os.chown(folder / name, -1, gid)
        (folder / name).chmod(0o640)


def group_and_mode(path: Path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_gid, stat.S_IMODE(info.st_mode)


@pytest.mark.parametrize("how", ["renew", "renew-journaled", "renew-rekey", "bulk", "issue-force"])
def test_replaced_bundle_files_keep_their_group(ca_dir, ca_env, tmp_path, how):
    """fleet7 #2: cert.pem and fullchain.pem came back 0640 root:root (the renewer's group), so the
    server that read them through its group was locked out at its next reload."""
    gid = other_group()
    folder = tmp_path / "db.test"
    issue(ca_env, tmp_path, "db.test", days=5)
    share_with_group(folder, gid)
    if how == "renew-journaled":
        (folder / "notes.txt").write_text("mine\n")  # not only bundle files: replaced through the journal
    args = {"renew": ["renew", folder], "renew-journaled": ["renew", folder],
            "renew-rekey": ["renew", folder, "--rekey"], "bulk": ["renew", "--expiring", "30d"],
            "issue-force": ["issue-server", "db.test", "--out", folder, "--force"]}[how]
    run_certkit(*args, env=ca_env, check=True)
    for name in ("cert.pem", "fullchain.pem"):
        assert group_and_mode(folder / name) == (gid, 0o640), (name, group_and_mode(folder / name))
    key_gid, key_mode = group_and_mode(folder / "privkey.pem")
    if how in ("renew", "renew-journaled", "bulk"):
        assert (key_gid, key_mode) == (gid, 0o640)  # the very same key file
    else:  # a new key: never more readable than the 0600 certkit writes
        assert key_mode == 0o600


def test_without_the_right_to_give_the_group_a_certificate_is_public_a_key_private(tmp_path):
    """Where the renewer is not in the old file's group, a certificate file is written 0644 (its
    content is public) rather than 0640 for the wrong group, and a secret stays its owner's."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root (to act as another user with setpriv)")
    nobody = 65534
    place = Path(tempfile.mkdtemp(prefix="certkit-audit7-", dir="/tmp"))
    # The code, where that user can read it (a checkout under a 0700 folder, as mktemp -d makes, is not).
    code = code_others_can_read(Path(tempfile.mkdtemp(prefix="certkit-audit7-code-", dir="/tmp")))
    try:
        os.chown(place, nobody, nobody)
        for name in ("cert.pem", "key.pem"):
            (place / name).write_text("old\n")
            os.chown(place / name, nobody, grp.getgrnam("daemon").gr_gid)
            (place / name).chmod(0o640)
        script = ("import sys; from pathlib import Path; from certkit.file_modes import write_kept; "
                  "p = Path(sys.argv[1]); "
                  "write_kept(p / 'cert.new', b'c', p / 'cert.pem', 0o644); "
                  "write_kept(p / 'key.new', b'k', p / 'key.pem', 0o640)")
        subprocess.run(["setpriv", f"--reuid={nobody}", f"--regid={nobody}", "--clear-groups", sys.executable, "-c",
                        script, str(place)], env={"PYTHONPATH": str(code), "PATH": "/usr/bin:/bin"},
                       check=True, capture_output=True, timeout=60)
        assert group_and_mode(place / "cert.new") == (nobody, 0o644)
        assert group_and_mode(place / "key.new") == (nobody, 0o600)
    finally:
        shutil.rmtree(place)
        shutil.rmtree(code)


# --- 3. a key for the server's group -----------------------------------------------------------------------------
def test_a_key_for_the_servers_group_gets_no_chmod_advice(ca_dir, ca_env, tmp_path):
    """fleet7 #3: docs/renew.md's PostgreSQL recipe (root:postgres 0640) was told "other users can read
    the private key ... run: chmod 600" at every renewal; following it stops the server."""
    gid = other_group()
    folder = tmp_path / "db.test"
    issue(ca_env, tmp_path, "db.test", days=5)
    share_with_group(folder, gid, names=("privkey.pem",))
    proc = run_certkit("renew", folder, "--json", env=ca_env, check=True)
    assert not [n for n in json.loads(proc.stdout)["notes"] if "privkey.pem" in n], proc.stdout
    bulk = run_certkit("renew", "--all", "--json", env=ca_env, check=True)
    assert not [n for c in json.loads(bulk.stdout)["certificates"] for n in c.get("notes", []) if "chmod" in n]
    folder.joinpath("privkey.pem").chmod(0o644)  # readable by every user: still said, and how to close it
    proc = run_certkit("renew", folder, "--json", env=ca_env, check=True)
    [note] = [n for n in json.loads(proc.stdout)["notes"] if "privkey.pem" in n]
    assert "every user can read" in note and "chmod 600" in note


# --- 4. PATH in the crontab line ---------------------------------------------------------------------------------
def test_the_crontab_line_carries_path_for_hooks(ca_dir, ca_env, tmp_path):
    """fleet7 #4: cron runs jobs with PATH=/usr/bin:/bin, so `nginx -s reload` (in /usr/sbin) was not
    found: exit 127 every night."""
    issue(ca_env, tmp_path, "c1.test")
    tools = tmp_path / "sbin"
    tools.mkdir()
    (tools / "reload-my-server").write_text(f"#!/bin/sh\necho reloaded > {tmp_path / 'reloaded'}\n")
    (tools / "reload-my-server").chmod(0o755)
    secret = tmp_path / "pp"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    env = dict(ca_env, PATH=f"{tools}{os.pathsep}{ca_env['PATH']}", CERTKIT_SYSTEMD_SYSTEM_DIR=str(tmp_path / "s"),
               XDG_CONFIG_HOME=str(tmp_path / "config"))
    proc = run_certkit("renew", "--install-timer", "--cron", "--expiring", "30d", "--passphrase-file", secret,
                       "--exec-once", "reload-my-server", env=env, check=True)
    [line] = proc.stdout.splitlines()
    command = line.split(" ", 5)[5].replace("\\%", "%")
    ran = subprocess.run(["/bin/sh", "-c", command], env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, (ran.stdout, ran.stderr)
    assert (tmp_path / "reloaded").read_text() == "reloaded\n"


# --- 5. the CA a hook runs for -----------------------------------------------------------------------------------
@pytest.mark.parametrize("bulk", [True, False], ids=["bulk", "single"])
def test_hooks_are_told_the_ca_directory(ca_dir, tmp_path, bulk):
    """fleet7 #5: the timer passes --ca-dir, so a hook that ran certkit acted on the default CA."""
    elsewhere = tmp_path / "ca2"
    ca_dir.rename(elsewhere)
    env = certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path / "home"),
                      XDG_DATA_HOME=str(tmp_path / "home" / "data"))
    run_certkit("issue-server", "h1.test", "--days", "10", "--out", tmp_path / "h1", "--ca-dir", "ca2", env=env,
                cwd=tmp_path, check=True)
    def hook(name: str) -> str:
        return (f'echo "$CERTKIT_CA_DIR" > {tmp_path / name}.dir && '
                f'"{sys.executable}" -m certkit list --json > {tmp_path / name}.json')

    which = ["--expiring", "30d"] if bulk else [tmp_path / "h1"]
    run_certkit("renew", *which, "--ca-dir", "ca2", "--exec", hook("each"), "--exec-once", hook("once"), env=env,
                cwd=tmp_path, check=True)
    for name in ("each", "once"):
        assert (tmp_path / f"{name}.dir").read_text() == f"{elsewhere}\n"
        listed = json.loads((tmp_path / f"{name}.json").read_text())
        assert len(listed["certificates"]) == 2, listed  # the old certificate and its successor, in ca2


# --- 7. a hook's output, cut ---------------------------------------------------------------------------------------
def test_a_hooks_long_output_is_cut_at_a_line_and_says_so(ca_dir, ca_env, tmp_path):
    """fleet7 #7: the last 64 KiB were kept from the middle of a line, with nothing saying that
    anything was dropped, on standard error or in --json."""
    issue(ca_env, tmp_path, "l1.test")
    issue(ca_env, tmp_path, "l2.test", days=5)
    hook = 'if [ "$(basename "$RENEWED_LINEAGE")" = l2.test ]; then echo FIRST; seq 1 100000; else echo short; fi'
    proc = run_certkit("renew", "--expiring", "30d", "--exec", hook, "--json", env=ca_env, check=True)
    hooks = {Path(c["folder"]).name: c["hook"] for c in json.loads(proc.stdout)["certificates"]}
    assert hooks["l1.test"]["output"] == "short\n" and hooks["l1.test"]["output_truncated"] is False
    long = hooks["l2.test"]
    assert long["output_truncated"] is True
    head, first, second, *rest = long["output"].splitlines()
    total = len("FIRST\n") + sum(len(str(i)) + 1 for i in range(1, 100001))
    kept = len(long["output"].encode()) - len(head) - 1
    assert head == f"[... {total - kept:,} bytes of earlier output not kept]", head
    assert int(second) == int(first) + 1 and rest[-1] == "100000"  # whole lines, to the end
    assert kept <= 64 << 10
    assert f"  {head}\n  {first}\n" in proc.stderr  # what is shown is the same (indented under its heading: round 35)


# --- 8. the timer's options --------------------------------------------------------------------------------------
@pytest.fixture
def timer_env(ca_dir, ca_env, tmp_path):
    secret = tmp_path / "pp"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    return secret, dict(ca_env, CERTKIT_SYSTEMD_SYSTEM_DIR=str(tmp_path / "system"),
                        XDG_CONFIG_HOME=str(tmp_path / "config"))


@pytest.mark.parametrize("extra,named", [(["--exec", "x"], "--exec"), (["--exec-once", "y"], "--exec-once"),
                                         (["--days", "5"], "--days"), (["--exec-timeout", "5"], "--exec-timeout"),
                                         (["--passphrase-file", "PP"], "--passphrase-file"),
                                         (["--p12-password-file", "PP"], "--p12-password-file")])
def test_remove_timer_refuses_what_it_would_ignore(timer_env, tmp_path, extra, named):
    """fleet7 #8: these were dropped without a word ("No certkit-renew timer to remove", exit 0)."""
    secret, env = timer_env
    proc = run_certkit("renew", "--remove-timer", *[str(secret) if a == "PP" else a for a in extra], env=env)
    assert_clean_error(proc, f"leave out {named}", code=2)


def test_cron_refuses_the_options_of_systemd_units(timer_env, tmp_path):
    secret, env = timer_env
    for extra in (["--unit-dir", tmp_path / "u"], ["--timer-name", "other"], ["--force"]):
        proc = run_certkit("renew", "--install-timer", "--cron", "--passphrase-file", secret, *extra, env=env)
        assert_clean_error(proc, "--cron is about a crontab line", code=2)
    assert not (tmp_path / "u").exists()


def test_remove_timer_cron_speaks_of_the_crontab_line(ca_dir, timer_env, tmp_path):
    secret, env = timer_env
    proc = run_certkit("renew", "--remove-timer", "--cron", env=env)
    assert_clean_error(proc, "certkit does not edit crontabs")
    assert "crontab -e" in proc.stderr and "-m certkit renew" in proc.stderr and str(ca_dir) in proc.stderr
    assert "systemd" not in proc.stderr and not (tmp_path / "system").exists()


# --- 9. a damaged cert.pem -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("content", [b"junk\n", b"-----BEGIN CERTIFICATE-----\nMIIB\n", "key"],
                         ids=["junk", "truncated", "a-key"])
def test_a_damaged_cert_pem_is_said_to_be_damaged(ca_dir, ca_env, tmp_path, content):
    """fleet7 #9: "now holds another certificate in cert.pem", of a file that holds none."""
    serial = issue(ca_env, tmp_path, "r5.test")
    folder = tmp_path / "r5.test"
    (folder / "cert.pem").write_bytes((folder / "privkey.pem").read_bytes() if content == "key" else content)
    proc = run_certkit("renew", "--expiring", "30d", env=ca_env)
    assert proc.returncode == 1, proc.stderr  # round thirteen (fleetserve13 #1): a damaged due bundle is a failure
    [warning] = [line for line in proc.stderr.splitlines() if line.startswith("Warning: ")]
    assert "holds no readable certificate in cert.pem" in warning and "another certificate" not in warning
    assert "fullchain.pem begins with it" in warning, warning
    [entry] = json.loads(run_certkit("renew", "--expiring", "30d", "--json", env=ca_env).stdout)["certificates"]
    assert "holds no readable certificate" in entry["reason"]
    by_serial = run_certkit("renew", serial, env=ca_env)
    assert_clean_error(by_serial, "holds no readable certificate in cert.pem")
    assert "another certificate" not in by_serial.stderr


# --- left alone until round seven: a --p12-legacy bundle.p12 keeps its format across renewals --------------------
@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "modern"])
def test_a_renewed_bundle_p12_keeps_its_format(ca_dir, ca_env, tmp_path, bulk, legacy):
    import subprocess as _subprocess

    password = tmp_path / "p12.pass"
    password.write_text("p12-password-here\n")
    password.chmod(0o600)
    folder = tmp_path / "web.test"
    run_certkit("issue-server", "web.test", "--out", folder, "--days", "5", "--p12-password-file", password,
                *(["--p12-legacy"] if legacy else ["--p12"]), env=ca_env, check=True)
    args = ["--expiring", "30d"] if bulk else [folder]
    run_certkit("renew", *args, "--p12-password-file", password, env=ca_env, check=True)
    info = _subprocess.run(["openssl", "pkcs12", "-in", folder / "bundle.p12", "-info", "-noout", "-passin",
                            f"file:{password}", *(["-legacy"] if legacy else [])], capture_output=True, text=True,
                           timeout=60)
    assert info.returncode == 0, info.stderr
    said = info.stdout + info.stderr
    assert ("pbeWithSHA1And3-KeyTripleDES-CBC" in said) is legacy, said
    assert ("AES-256-CBC" in said) is not legacy, said
