"""Audit round nine, fleets (report fleet9), each finding as a class, with real readers:

1. --format tar refuses, before anything is signed, a folder that `tar -x` cannot make or that breaks tools
   (a name over 255 bytes, a member path over the 4,095 bytes GNU tar extracts, a control character), in
   issue-* and issue-batch alike; what tar can extract (a 255-byte name, a 4,095-byte member path) is kept;
2. --install-timer and --cron refuse a renewal window no longer than the longest time between two runs
   (computed from the timer's OnCalendar=, as systemd-analyze reads it, and RandomizedDelaySec=), with the
   smallest window that works; the library's install_timer and crontab_line refuse it too;
3. --remove-timer with a CA directory (--ca-dir, $CERTKIT_CA_DIR) removes only the timer that renews it;
4. the service sets PATH as the crontab line does: a hook finds the tools of the installing shell when the
   ExecStart runs as systemd runs it (started in /, systemd's default PATH plus the unit's Environment=);
5. a hook killed by a signal N has the exit status a shell gives it (128 + N) and "signal": "SIGTERM" in
   --json, bulk and single renewal (a hook that exits has no "signal");
6. docs/formats.md gives cfssljson one JSON line at a time, as cfssljson needs (a stream fails).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from certkit.errors import CertkitError

from conftest import PASSPHRASE, REPO, assert_clean_error, certkit_env, openssl, require, run_certkit

SYSTEMD_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # systemd.exec(5)


def _certificates(env: dict) -> list[dict]:
    return json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]


def _tar_extract(archive: Path, into: Path) -> subprocess.CompletedProcess:
    into.mkdir()
    return subprocess.run(["tar", "-xpf", str(archive), "-C", str(into)], capture_output=True, text=True,
                          timeout=60)


# --- 1. tar member paths ----------------------------------------------------------------------------
LONG_DNS = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 59])  # a valid 251-byte DNS name
DEEP = "/".join(["y" * 250] * 20)  # a 5,019-byte folder path of names that are each fine


@pytest.mark.parametrize("command,said", [
    (["issue-server", f"*.{LONG_DNS}"], "has a name of 261 bytes"),
    (["batch", json.dumps({"kind": "server", "names": "o.example.com", "out": "x" * 256})], "has a name of 256"),
    (["batch", json.dumps({"kind": "server", "names": "o2.example.com", "out": DEEP})], "at most 4095 bytes"),
    (["batch", json.dumps({"kind": "server", "names": "c.example.com", "out": "a\nb"})], "control character"),
    (["batch", json.dumps({"kind": "server", "names": "d.example.com", "out": "c\x1b[31md"})], "control character"),
    (["batch", json.dumps({"kind": "server", "names": "e.example.com", "out": "ok/e\u2028f"})], "control character"),
])
def test_tar_refuses_a_folder_tar_cannot_make_before_signing(ca_dir, ca_env, tmp_path, command, said):
    """fleet9 #1: each was issued, recorded valid "in" the archive, and `tar -xpf` failed on it ("File name
    too long") or made a folder whose name holds a line break or an escape sequence."""
    out = tmp_path / "out.tar"
    if command[0] == "batch":
        manifest = tmp_path / "m.jsonl"
        manifest.write_text(command[1] + "\n")
        proc = run_certkit("issue-batch", manifest, "--format", "tar", "--out", out, env=ca_env)
    else:
        proc = run_certkit(*command, "--format", "tar", "--out", out, env=ca_env)
    assert proc.returncode == 1 and said in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert "archive folder" in proc.stderr
    assert not out.exists() and _certificates(ca_env) == []  # refused before anything was signed


def test_tar_keeps_what_tar_extracts_and_refuses_one_byte_more(ca_dir, ca_env, tmp_path):
    """The limits are GNU tar's own: a 255-byte name and a 4,095-byte member path extract (checked with
    `tar -xpf` and openssl on what it made), one byte more does not, and is refused."""
    require("tar")
    deep = "/".join(["z" * 255] * 15 + ["w" * (4095 - len("/fullchain.pem") - 15 * 256)])
    assert len(deep) + len("/fullchain.pem") == 4095
    manifest = tmp_path / "ok.jsonl"
    manifest.write_text("".join(json.dumps({"kind": "server", "names": f"{n}.example.com", "out": o}) + "\n"
                                for n, o in (("long", "n" * 255), ("deep", deep))))
    run_certkit("issue-batch", manifest, "--format", "tar", "--out", tmp_path / "ok.tar", env=ca_env, check=True)
    extracted = _tar_extract(tmp_path / "ok.tar", tmp_path / "x")
    assert extracted.returncode == 0, extracted.stderr
    cert = tmp_path / "x" / ("n" * 255) / "cert.pem"
    assert openssl("verify", "-CAfile", ca_dir / "ca.pem", cert).returncode == 0
    fd = os.open(tmp_path / "x", os.O_RDONLY)  # the deep one, read as tar wrote it: relative to the folder
    try:
        assert os.stat(f"{deep}/fullchain.pem", dir_fd=fd).st_size > 0
    finally:
        os.close(fd)
    for name, out in (("long2", "n" * 256), ("deep2", deep + "w")):
        manifest.write_text(json.dumps({"kind": "server", "names": f"{name}.example.com", "out": out}) + "\n")
        proc = run_certkit("issue-batch", manifest, "--format", "tar", "--out", tmp_path / f"{name}.tar",
                           env=ca_env)
        assert proc.returncode == 1 and "archive folder" in proc.stderr, proc.stderr
        assert not (tmp_path / f"{name}.tar").exists()
    assert len(_certificates(ca_env)) == 2


# --- 2. the renewal window and the schedule ---------------------------------------------------------
@pytest.fixture
def timer_env(ca_dir, ca_env, tmp_path):
    secret = tmp_path / "pp"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    return secret, dict(ca_env, CERTKIT_SYSTEMD_SYSTEM_DIR=str(tmp_path / "system"),
                        XDG_CONFIG_HOME=str(tmp_path / "config"), HOME=str(tmp_path))


def _longest_gap_of(timer: Path) -> dt.timedelta:
    """The longest time between two runs of the timer as written: the period of its OnCalendar= (two elapses
    as systemd-analyze computes them in local time, over the night clocks go back: fleet10 #4), its
    RandomizedDelaySec= and systemd's default AccuracySec= (1 min)."""
    text = timer.read_text()
    calendar = re.search(r"^OnCalendar=(.+)$", text, re.M).group(1)
    delay = int(re.search(r"^RandomizedDelaySec=(\d+)$", text, re.M).group(1))
    assert "AccuracySec=" not in text
    if shutil.which("systemd-analyze"):
        shown = subprocess.run(["systemd-analyze", "calendar", "--iterations=2", "--base-time=2026-10-24 12:00",
                                calendar], capture_output=True, text=True, env=dict(os.environ, TZ="Europe/Berlin"),
                               timeout=60).stdout
        when = [dt.datetime.strptime(m, "%Y-%m-%d %H:%M:%S")
                for m in re.findall(r"\(in UTC\): \w+ (\S+ \S+) UTC", shown)]
        period = when[1] - when[0]
        assert period == dt.timedelta(hours=25), shown
    else:
        assert calendar == "daily"
        period = dt.timedelta(hours=25)
    return period + dt.timedelta(seconds=delay) + dt.timedelta(minutes=1)


def test_a_timer_refuses_a_window_a_certificate_can_expire_in_between_runs(timer_env, tmp_path):
    """fleet9 #2: --expiring 12h (or 1d, or 30h) was installed without a word; a certificate then expired
    between two runs and, expired, was never renewed."""
    secret, env = timer_env
    units = tmp_path / "units"
    run_certkit("renew", "--install-timer", "--expiring", "2d", "--passphrase-file", secret, "--unit-dir", units,
                env=env, check=True)
    gap = _longest_gap_of(units / "certkit-renew.timer")
    assert dt.timedelta(hours=31) < gap < dt.timedelta(days=2)
    for window in ("12h", "1d", f"{gap // dt.timedelta(hours=1)}h"):  # each no longer than the gap
        proc = run_certkit("renew", "--install-timer", "--expiring", window, "--passphrase-file", secret,
                           "--unit-dir", tmp_path / f"u{window}", "--force", env=env)
        assert_clean_error(proc, "Give --expiring 2d or longer", code=2)
        assert "31 hours and 1 minute apart" in proc.stderr and not (tmp_path / f"u{window}").exists()
    cron = run_certkit("renew", "--install-timer", "--cron", "--expiring", "1d", "--passphrase-file", secret,
                       env=env)
    assert_clean_error(cron, "25 hours apart", code=2)
    assert "Give --expiring 2d" in cron.stderr
    ok = run_certkit("renew", "--install-timer", "--cron", "--expiring", "2d", "--passphrase-file", secret, env=env)
    assert ok.returncode == 0 and "--expiring 2d" in ok.stdout, ok.stderr


def test_the_library_refuses_a_short_window_too(ca_dir, tmp_path):
    from certkit import fleet

    argv = ["renew", "--expiring", "1d", "--ca-dir", str(ca_dir)]
    with pytest.raises(CertkitError, match="Give --expiring 2d"):
        fleet.install_timer(argv, description="t", directory=tmp_path / "units", manage=False)
    with pytest.raises(CertkitError, match="25 hours apart"):
        fleet.crontab_line(argv)
    assert not (tmp_path / "units").exists()


# --- 3. --remove-timer and the CA ---------------------------------------------------------------------
def test_remove_timer_removes_only_the_timer_of_its_ca(timer_env, ca_dir, tmp_path):
    """fleet9 #3: with another CA's directory (or none that exists) it removed this CA's timer."""
    secret, env = timer_env
    units = tmp_path / "units"
    other = tmp_path / "other"
    run_certkit("init-ca", "--name", "Other", "--ca-dir", other, env=env, check=True)
    run_certkit("renew", "--install-timer", "--days", "90", "--passphrase-file", secret, "--unit-dir", units,
                env=env, check=True)
    files = sorted(units.iterdir())
    for given in (["--ca-dir", str(other)], ["--ca-dir", str(tmp_path / "nonexistent")]):
        proc = run_certkit("renew", "--remove-timer", "--unit-dir", units, *given, env=env)
        assert_clean_error(proc, f"renews the CA in {ca_dir}")
        assert sorted(units.iterdir()) == files
    elsewhere = run_certkit("renew", "--remove-timer", "--unit-dir", units, env=dict(env, CERTKIT_CA_DIR=str(other)))
    assert_clean_error(elsewhere, "nothing was removed")
    assert sorted(units.iterdir()) == files
    (tmp_path / "link").symlink_to(ca_dir)  # the same CA, however it is spelled
    removed = run_certkit("renew", "--remove-timer", "--unit-dir", units, "--ca-dir", tmp_path / "link", env=env,
                          check=True)
    assert "Removed the certkit-renew timer" in removed.stdout and list(units.iterdir()) == []


# --- 4. the service's PATH ----------------------------------------------------------------------------
def _unit_values(text: str, key: str) -> list[str]:
    """The double-quoted words of ``key=`` lines, as systemd reads them (C escapes, %% and $$)."""
    words = []
    for line in text.splitlines():
        if line.startswith(f"{key}="):
            for quoted in re.findall(r'"((?:[^"\\]|\\.)*)"', line):
                words.append(re.sub(r"\\(.)", r"\1", quoted).replace("%%", "%").replace("$$", "$"))
    return words


def test_the_service_carries_the_path_a_hook_needs(timer_env, tmp_path):
    """fleet9 #4: the unit set no PATH, so a hook's `certkit` (pip --user, pipx, a venv) or the user's own
    tools were not found under the timer (exit 127), while the crontab line found them."""
    secret, env = timer_env
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "reload-my-server").write_text(f"#!/bin/sh\necho reloaded > {tmp_path / 'reloaded'}\n")
    (tools / "reload-my-server").chmod(0o755)
    env = dict(env, PATH=f"{tools}:{os.environ['PATH']}")
    bundle = tmp_path / "b"
    bundle.mkdir()
    run_certkit("issue-server", "soon.example.com", "--days", "10", cwd=bundle, env=env, check=True)
    units = tmp_path / "units"
    run_certkit("renew", "--install-timer", "--days", "90", "--passphrase-file", secret, "--exec-once",
                "reload-my-server", "--unit-dir", units, env=env, check=True)
    service = (units / "certkit-renew.service").read_text()
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(["systemd-analyze", "verify", units / "certkit-renew.service"],
                                capture_output=True, text=True, timeout=120)
        assert "certkit-renew.service" not in verify.stderr, verify.stderr
    unit_env = dict(pair.split("=", 1) for pair in _unit_values(service, "Environment"))
    assert str(tools) in unit_env["PATH"].split(":")
    ran = subprocess.run(_unit_values(service, "ExecStart"), cwd="/", capture_output=True, text=True, timeout=300,
                         env={"PATH": SYSTEMD_DEFAULT_PATH, "HOME": str(tmp_path)} | unit_env)
    assert ran.returncode == 0, ran.stderr
    assert "Renewed 1 of 1" in ran.stdout and (tmp_path / "reloaded").read_text() == "reloaded\n"


# --- 5. a hook killed by a signal ---------------------------------------------------------------------
def test_a_hook_killed_by_a_signal_has_a_shell_exit_status(ca_dir, ca_env, tmp_path):
    """fleet9 #5: --json said "exit": -15 (Python's returncode), which no shell or tool gives."""
    shell = subprocess.run(["sh", "-c", "sh -c 'kill -TERM $$'; echo $?"], capture_output=True, text=True)
    assert shell.stdout.strip() == "143"  # what a shell says of the same hook
    run_certkit("issue-server", "www.example.com", cwd=tmp_path, env=ca_env, check=True)
    bulk = run_certkit("renew", "--all", "--name", "www.example.com", "--exec", "kill -TERM $$", "--json",
                       env=ca_env)
    hook = next(c["hook"] for c in json.loads(bulk.stdout)["certificates"] if c["outcome"] == "renewed")
    assert (hook["exit"], hook["signal"], hook["ok"]) == (143, "SIGTERM", False)
    assert "SIGTERM" in hook["error"]
    one = run_certkit("renew", "www.example.com", "--exec", "kill -KILL $$", "--json", env=ca_env)
    ran = json.loads(one.stdout)["exec"]
    assert (ran["exit"], ran["signal"]) == (137, "SIGKILL")
    fine = run_certkit("renew", "www.example.com", "--exec", "exit 3", "--json", env=ca_env)
    assert json.loads(fine.stdout)["exec"]["exit"] == 3 and "signal" not in json.loads(fine.stdout)["exec"]


# --- 6. cfssljson -------------------------------------------------------------------------------------
def test_formats_page_gives_cfssljson_one_line_at_a_time(ca_dir, ca_env, tmp_path):
    """fleet9 #6: the page said cfssljson reads jsonl; it reads one JSON object, and a batch's file fails.
    The page's loop is run as written on a two-certificate batch."""
    for tool in ("cfssljson", "jq", "bash"):
        require(tool)
    page = (REPO / "docs" / "formats.md").read_text()
    loop = next(line[2:] for line in page.splitlines() if line.startswith("$ while read -r line") and
                "cfssljson" in line)
    (tmp_path / "two.csv").write_text("kind,names,out\nserver,a.example.com,\nclient,backup-job,clients/job\n")
    run_certkit("issue-batch", "two.csv", "--format", "jsonl", "--out", "two.jsonl", cwd=tmp_path, env=ca_env,
                check=True)
    stream = subprocess.run("cfssljson -bare multi < two.jsonl", shell=True, cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert stream.returncode != 0 and "after top-level value" in stream.stderr  # what the page now says
    assert "after top-level value" in page
    split = tmp_path / "split"
    split.mkdir()
    ran = subprocess.run(["bash", "-c", loop.replace("../fleet.jsonl", "../two.jsonl")], cwd=split,
                         capture_output=True, text=True, timeout=60, env=certkit_env())
    assert ran.returncode == 0, ran.stderr
    assert sorted(p.name for p in split.iterdir()) == ["a.example.com-key.pem", "a.example.com.pem",
                                                      "clients_job-key.pem", "clients_job.pem"]
    assert openssl("verify", "-purpose", "sslclient", "-CAfile", ca_dir / "ca.pem",
                   split / "clients_job.pem").returncode == 0
    assert (split / "clients_job-key.pem").stat().st_mode & 0o077 == 0
