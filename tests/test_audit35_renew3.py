"""Round 35, renew (issue 13): in a bulk renewal each hook's output on standard error is headed by the bundle
it belongs to (folder, new serial) and how the hook ended, its lines indented, for --exec and --exec-once, in
text and with --json; ..."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil

from test_audit29_wording3 import as_nobody, home, runner  # noqa: F401 (certkit run as the user nobody)
from test_fleet_renew import fleet  # noqa: F401 (three bundles due within 30 days, a client among them)
from test_fleet_timer import due, serial_of  # noqa: F401 (one bundle due in 5 days, its passphrase in a file)

from conftest import openssl, run_certkit
from nobody_runner import NOBODY

HOOK = 'echo "deploy $(basename "$RENEWED_LINEAGE")"; echo "to stderr" >&2; [ "$CERTKIT_KIND" != client ] || exit 3'


def _blocks(stderr: str) -> dict[str, list[str]]:
    """The hook outputs on standard error: heading line -> its indented lines."""
    blocks, heading = {}, None
    for line in stderr.splitlines():
        if line.startswith("--exec"):
            heading = line
            blocks[heading] = []
        elif line.startswith("  ") and heading is not None:
            blocks[heading].append(line[2:])
        else:
            heading = None
    return blocks


def test_each_hook_output_in_bulk_is_headed_by_its_bundle(fleet):  # noqa: F811
    """`renew --expiring 30d --exec CMD --exec-once CMD` printed each hook's output bare on standard error: in cron
    mail, 500 of them could not be told apart (certbot heads each "Output from deploy-hook command ..."). Each is
    now under a heading naming the bundle's folder, its new serial and how the hook ended, its lines indented;
    --exec-once's says how many bundles it ran after; a hook that printed nothing shows nothing. The same with
    --json (whose report keeps each output under its certificate) and for a single renewal."""
    work, _serials, env = fleet
    proc = run_certkit("renew", "--expiring", "30d", "--days", "60", "--exec", HOOK, "--exec-once",
                       "echo reloaded $CERTKIT_RENEWED", cwd=work, env=env, subprocess=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr  # alice's hook failed
    blocks = _blocks(proc.stderr)
    assert len(blocks) == 4, proc.stderr
    for name in ("web", "api", "alice"):
        serial = serial_of(work / name)  # the new certificate, as it is in the bundle
        status = "exit 3" if name == "alice" else "exit 0"
        heading = f"--exec for {work / name} (serial {serial}): {status}"
        assert blocks.get(heading) == [f"deploy {name}", "to stderr"], (heading, proc.stderr)
        assert "OK" in openssl("verify", "-CAfile", str(work / name / "ca.pem"),
                               str(work / name / "cert.pem")).stdout.decode()
    assert blocks["--exec-once (after 3 renewed bundles): exit 0"] == ["reloaded 3"], proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith("Error: 1 --exec hook failed"), proc.stderr
    again = run_certkit("renew", "--expiring", "30d", "--exec", HOOK, "--exec-once", "echo reloaded", "--json",
                        cwd=work, env=env, subprocess=True)  # the successors are not due: no hook, nothing said
    assert (again.returncode, again.stderr, json.loads(again.stdout)["renewed"]) == (0, "", 0), again.stderr


def test_hook_headings_with_json_and_a_single_renewal(due):  # noqa: F811
    """With --json standard output holds the report alone, and standard error the headed outputs; a single
    renewal heads its hooks' outputs the same way. A hook that prints nothing gets no heading (cron stays
    quiet about it)."""
    tmp_path, secret, env = due
    run_certkit("issue-server", "api.example", "--days", "5", "--passphrase-file", secret, cwd=tmp_path, env=env,
                check=True)
    proc = run_certkit("renew", "--expiring", "10d", "--days", "60", "--exec", 'printf "a\\nb\\n"; exit 2',
                       "--exec-once", "true", "--passphrase-file", secret, "--json", cwd=tmp_path, env=env,
                       subprocess=True)
    data = json.loads(proc.stdout)
    assert proc.returncode == 1 and data["renewed"] == 2, proc.stderr
    blocks = _blocks(proc.stderr)
    for cert in data["certificates"]:
        heading = f"--exec for {cert['folder']} (serial {cert['new_serial']}): exit 2"
        assert blocks[heading] == ["a", "b"] and cert["hook"]["output"] == "a\nb\n", proc.stderr
    assert not any(h.startswith("--exec-once") for h in blocks), proc.stderr  # `true` printed nothing
    web = tmp_path / "web"
    single = run_certkit("renew", web, "--exec", "echo one; echo two", "--exec-once", "echo once",
                         "--passphrase-file", secret, env=env, subprocess=True)
    assert single.returncode == 0, single.stderr
    assert _blocks(single.stderr) == {f"--exec for {web} (serial {serial_of(web)}): exit 0": ["one", "two"],
                                      "--exec-once (after 1 renewed bundle): exit 0": ["once"]}, single.stderr
    assert re.search(r"^  --exec +exit 0$", single.stdout, re.M), single.stdout


def test_a_path_option_the_user_may_not_read_is_refused_in_certkits_words(runner, home):  # noqa: F811
    """`renew web --out c/` of a folder nobody may write but not list (0300) was refused by click's own check:
    "Path 'c/' is not readable." (and "File 'f' is not readable." for a --passphrase-file of mode 0200), unlike
    every other refusal of certkit's. Every path option and argument that must be read (click.Path's readable)
    now says it as certkit says a folder it may not list (round 32): which place, that permission to read it is
    denied, its mode, and that nothing was written or done; one line, exit 1, nothing made."""
    folder, secret = home / "c", home / "f"
    folder.mkdir(mode=0o300)
    secret.write_text("x\n")
    secret.chmod(0o200)
    for place in (folder, secret):
        os.chown(place, NOBODY, NOBODY)
    ca = {"CERTKIT_CA_DIR": str(home / "ca")}
    write = ("Cannot write the folder {}: permission denied to read it (its mode 0300), and certkit reads what a "
             "folder holds before it writes there; nothing was written. Give it back the read permission, or "
             "choose another folder.")
    cases = [
        (["renew", "web", "--out", "c/"], write.format("c/")),
        (["issue-server", "web.example", "--out", "c"], write.format("c")),
        (["issue-batch", "m.csv", "--out-dir", "c"], write.format("c")),
        (["renew", "--install-timer", "--expiring", "30d", "--unit-dir", "c"], write.format("c")),
        (["crl", "--out", "f"], "Cannot write the file f: permission denied to read it (its mode 0200), and certkit "
                                "reads a file before it replaces it; nothing was written. Give it back the read "
                                "permission, or choose another file."),
        (["renew", "--expiring", "30d", "--passphrase-file", "f"],
         "Cannot read the file f: permission denied (its mode 0200); nothing was done."),
        (["sign-csr", "f"], "Cannot read the file f: permission denied (its mode 0200); nothing was done."),
        (["list", "--ca-dir", "c"], "Cannot read the folder c: permission denied (its mode 0300); nothing was done."),
        # inspect and verify take a plain path (a certificate, a bundle folder): said as they say a read refused
        (["inspect", "f"], "Cannot read the file f: Permission denied."),
        (["verify", "f", "--purpose", "server"], "Cannot read the file f: Permission denied."),
        (["inspect", "c"], "Cannot read c: permission denied."),
        (["verify", "c", "--purpose", "client"], "Cannot read c: permission denied."),
    ]
    for args, said in cases:
        proc = as_nobody(runner, home, "-m", "certkit", *args, **ca)
        assert proc.stderr == f"Error: {said}\n" and proc.returncode == 1, (args, proc.stderr)
        assert "not readable" not in proc.stderr and proc.stdout == ""
    assert sorted(os.listdir(home)) == ["c", "f"]  # nothing made: no CA, no bundle, no unit


def test_a_days_longer_than_a_server_may_live_without_kind_is_one_usage_error(due):  # noqa: F811
    """`renew --expiring 10d --days 900` (no --kind) with a server and a client due renewed the client and failed
    the server at plan ('Renewed 1 of 2 ... failed ...: A server certificate may live at most 825 days', exit 1),
    while --install-timer with the same options is refused (round 32). The bulk run now refuses it the same way,
    whatever is due today: one usage error (exit 2), nothing renewed; --kind client renews the client that long."""
    tmp_path, secret, env = due
    run_certkit("issue-client", "bob", "--days", "5", "--passphrase-file", secret, cwd=tmp_path, env=env, check=True)
    before = {name: serial_of(tmp_path / name) for name in ("web", "bob")}
    said = ("--days 900 is longer than a server or peer certificate may live (825 days), so this run would fail "
            "each due one: give --days 825 or less, or --kind client to renew client certificates only; nothing "
            "was renewed.")
    for extra in ([], ["--json"], ["--name", "bob"], ["--exec-once", "touch reloaded"]):
        proc = run_certkit("renew", "--expiring", "10d", "--days", "900", *extra, "--passphrase-file", secret,
                           cwd=tmp_path, env=env, subprocess=True)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        if extra == ["--json"]:
            assert json.loads(proc.stdout) == {"error": said, "exit": 2}, proc.stdout
        else:
            assert proc.stderr.splitlines()[-1] == f"Error: {said}" and proc.stdout == "", proc.stderr
    assert {name: serial_of(tmp_path / name) for name in ("web", "bob")} == before
    assert not (tmp_path / "reloaded").exists()
    timer = run_certkit("renew", "--install-timer", "--expiring", "10d", "--days", "900", "--passphrase-file",
                        secret, "--unit-dir", tmp_path / "units", cwd=tmp_path, env=env, subprocess=True)
    assert timer.returncode == 2 and "longer than a server or peer certificate may live" in timer.stderr
    clients = run_certkit("renew", "--expiring", "10d", "--days", "900", "--kind", "client", "--passphrase-file",
                          secret, cwd=tmp_path, env=env, subprocess=True)
    assert clients.returncode == 0 and serial_of(tmp_path / "bob") != before["bob"], clients.stderr
    assert serial_of(tmp_path / "web") == before["web"]
    end = openssl("x509", "-in", str(tmp_path / "bob" / "cert.pem"), "-noout", "-enddate").stdout.decode()
    end = dt.datetime.strptime(end.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z").replace(tzinfo=dt.UTC)
    assert abs(end - dt.datetime.now(dt.UTC) - dt.timedelta(days=900)) < dt.timedelta(days=1), end


def test_a_name_glob_equal_to_a_name_with_brackets_matches_that_name(due):  # noqa: F811
    """`renew --expiring 10d --name 'bob[1]'` renewed bob1 (the glob's [1] is a class: one character, 1) and left the
    certificate issued for bob[1] to expire, silently; `list --name 'bob[1]'` listed bob1 alone, and `renew 'bob[1]'`
    (one certificate) renews bob[1]. A glob equal to a name now matches it too, in list, bulk renewal and the
    timer's selection; a glob that matches by its class still matches (bob1)."""
    tmp_path, secret, env = due
    for name in ("bob[1]", "bob1", "Device [lab]", "Device l", "carol"):
        run_certkit("issue-client", name, "--days", "5", "--passphrase-file", secret, "--out", tmp_path / name[-4:],
                    cwd=tmp_path, env=env, check=True)
    for pattern, names in (("bob[1]", {"bob[1]", "bob1"}), ("BOB[1]", {"bob[1]", "bob1"}),
                           ("device [lab]", {"Device [lab]", "Device l"}), ("bob[[]1]", {"bob[1]"}),
                           ("carol", {"carol"})):
        listed = json.loads(run_certkit("list", "--name", pattern, "--json", env=env, check=True).stdout)
        assert {c["subject"][3:] for c in listed["certificates"]} == names, (pattern, listed["certificates"])
    before = {f: serial_of(tmp_path / f) for f in ("b[1]", "bob1", "lab]", "ce l", "arol")}
    proc = run_certkit("renew", "--expiring", "10d", "--name", "bob[1]", "--days", "30", "--passphrase-file", secret,
                       "--json", cwd=tmp_path, env=env, subprocess=True)
    data = json.loads(proc.stdout)
    assert proc.returncode == 0 and data["renewed"] == 2 and proc.stderr == "", proc.stderr
    after = {f: serial_of(tmp_path / f) for f in before}
    assert {f for f in before if after[f] != before[f]} == {"b[1]", "bob1"}, after
    assert "OK" in openssl("verify", "-CAfile", str(tmp_path / "b[1]" / "ca.pem"),
                           str(tmp_path / "b[1]" / "cert.pem")).stdout.decode()
    subject = openssl("x509", "-in", str(tmp_path / "b[1]" / "cert.pem"), "-noout", "-subject").stdout.decode()
    assert "bob[1]" in subject, subject
    again = run_certkit("renew", "--expiring", "10d", "--name", "Device [lab]", "--days", "30", "--passphrase-file",
                        secret, cwd=tmp_path, env=env, subprocess=True)
    assert again.returncode == 0 and again.stdout.startswith("Renewed 2 of 2"), again.stdout + again.stderr


def _cron_runs_twice(tmp_path, env, secret) -> None:
    """Three servers due; the first run's --exec fails (exit 1, the bundles renewed); then a cron-like second run
    (stdin /dev/null, no terminal), also after one renewed bundle folder is deleted by hand: nothing renewed, no
    hook run, nothing said, exit 0."""
    for name in ("a", "b", "c"):
        run_certkit("issue-server", f"{name}.example", "--days", "5", "--out", tmp_path / name, "--passphrase-file",
                    secret, env=env, check=True)
    hook = f"echo ran >> {tmp_path / 'hooks'}; exit 4"
    run = ["renew", "--expiring", "10d", "--days", "60", "--exec", hook, "--exec-once", f"touch {tmp_path / 'once'}",
           "--passphrase-file", secret]
    first = run_certkit(*run, env=env, cwd=tmp_path, subprocess=True, input="")
    assert first.returncode == 1 and first.stdout.startswith("Renewed 3 of 3"), first.stdout + first.stderr
    assert (tmp_path / "hooks").read_text().count("ran") == 3 and (tmp_path / "once").exists()
    renewed = {name: serial_of(tmp_path / name) for name in ("a", "b", "c")}
    (tmp_path / "once").unlink()
    for step in ("again", "b deleted"):
        if step == "b deleted":
            shutil.rmtree(tmp_path / "b")
        proc = run_certkit(*run, env=env, cwd=tmp_path, subprocess=True, input="")
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", ""), (step, proc.stdout + proc.stderr)
        assert (tmp_path / "hooks").read_text().count("ran") == 3 and not (tmp_path / "once").exists(), step
    assert {name: serial_of(tmp_path / name) for name in ("a", "c")} == {k: renewed[k] for k in ("a", "c")}
    for name in ("a", "c"):
        assert "OK" in openssl("verify", "-CAfile", str(tmp_path / name / "ca.pem"),
                               str(tmp_path / name / "cert.pem")).stdout.decode()


def test_a_second_cron_run_is_quiet_after_a_failed_hook_and_a_deleted_folder(due):  # noqa: F811
    """Idempotence under cron (issue 13), checked: after a run whose --exec failed, and after a renewed bundle's
    folder was deleted by hand, the next run renews nothing, runs no hook, prints nothing and exits 0. A due bundle
    deleted before it was renewed is warned of on each run (exit 0: it would otherwise expire under a quiet cron
    job, as docs/renew.md says), until it is let go (revoked)."""
    tmp_path, secret, env = due
    web = serial_of(tmp_path / "web")
    shutil.rmtree(tmp_path / "web")  # the fixture's own bundle, due, deleted before any run: warned of each run
    work = tmp_path / "w"
    work.mkdir()
    for _ in range(2):
        proc = run_certkit("renew", "--expiring", "10d", "--passphrase-file", secret, env=env, cwd=work,
                           subprocess=True, input="")
        assert proc.returncode == 0 and proc.stdout == "" and proc.stderr.count("Warning: ") == 1, proc.stderr
        assert "web.example.com) was not renewed" in proc.stderr, proc.stderr
    run_certkit("revoke", web, "--reason", "cessationOfOperation", env=env, check=True)  # let go: warnings stop
    _cron_runs_twice(work, env, secret)


def test_a_second_cron_run_is_quiet_with_the_inventory_in_postgresql(pg_ca, tmp_path):
    """The same with the inventory in a real PostgreSQL server."""
    _cron_runs_twice(tmp_path, pg_ca, tmp_path / "pass")


def _nobody_with_own_python(runner):  # noqa: F811
    """The runner, with an interpreter nobody may also start again from certkit (a timer's line names
    sys.executable: one reached through root's 0700 folder starts once under setpriv, not from a child)."""
    import dataclasses
    import subprocess
    import sys

    system = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    again = [runner.python, "-s", "-c", "import subprocess, sys; subprocess.run([sys.executable, '-c', ''], "
                                        "check=True)"]
    if subprocess.run([*runner.prefix, *again], capture_output=True, env=runner.env({})).returncode != 0:
        if not os.path.exists(system):
            import pytest

            pytest.skip(f"no interpreter nobody may start again ({system})")
        return dataclasses.replace(runner, python=system)
    return runner


def test_a_user_timer_and_its_crontab_line_as_the_user_nobody(runner, home):  # noqa: F811
    """User-scope timers, as a real non-root user (issue 13; r31 and r32 left it untested): as nobody,
    --install-timer --unit-dir writes user units (no HOME=, no network-online.target, 'systemctl --user' to finish)
    that `systemd-analyze --user verify` accepts, and --remove-timer removes them; without systemd (this machine)
    it prints the crontab line, and that line, run as cron runs it (/bin/sh, cron's few variables), renews what
    is due, then, run again, renews nothing and prints nothing."""
    import shutil
    import subprocess

    runner = _nobody_with_own_python(runner)
    env = {"CERTKIT_CA_DIR": str(home / "ca")}
    for args in (["init-ca", "--name", "Nobody CA", "--no-passphrase"], ["issue-server", "n.example", "--days", "20"]):
        assert as_nobody(runner, home, "-m", "certkit", *args, **env).returncode == 0
    units = home / "units"
    made = as_nobody(runner, home, "-m", "certkit", "renew", "--install-timer", "--expiring", "10d", "--unit-dir",
                     str(units), "--json", **env)
    data = json.loads(made.stdout)
    assert made.returncode == 0 and data["system"] is False and data["ok"] is True, made.stderr
    assert all(c.startswith(("systemctl --user", "loginctl enable-linger nobody")) for c in data["todo"]), data
    service = (units / "certkit-renew.service").read_text()
    assert "HOME=" not in service and "network-online" not in service, service
    assert {os.stat(p).st_uid for p in units.iterdir()} == {NOBODY}
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups", "--",
                                 "systemd-analyze", "--user", "verify", *map(str, sorted(units.iterdir()))],
                                capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(home),
                                                                     "XDG_RUNTIME_DIR": str(home)}, timeout=60)
        assert verify.returncode == 0, verify.stdout + verify.stderr
    gone = as_nobody(runner, home, "-m", "certkit", "renew", "--remove-timer", "--unit-dir", str(units), **env)
    assert gone.returncode == 0 and os.listdir(units) == [], gone.stderr
    if os.path.isdir("/run/systemd/system"):
        return  # systemd runs this machine: the crontab line is --cron's, checked below all the same
    cron = as_nobody(runner, home, "-m", "certkit", "renew", "--install-timer", "--expiring", "25d", "--days", "60",
                     **env)
    line = cron.stdout.strip()
    assert cron.returncode == 0 and "no timer was written" in cron.stderr and len(cron.stdout.splitlines()) == 1
    minute, hour, *stars, command = line.split(" ", 5)
    assert stars == ["*", "*", "*"] and 0 <= int(minute) < 60 and 0 <= int(hour) < 24, line
    before = serial_of(home / "n.example")
    cron_env = {"HOME": str(home), "LOGNAME": "nobody", "SHELL": "/bin/sh", "PATH": "/usr/bin:/bin"}
    for time in ("first", "again"):
        ran = subprocess.run(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups", "--",
                              "/bin/sh", "-c", command], cwd=home, env=cron_env, capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, timeout=120)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        if time == "first":
            assert ran.stdout.startswith("Renewed 1 of 1") and serial_of(home / "n.example") != before, ran.stdout
        else:
            assert (ran.stdout, ran.stderr) == ("", ""), ran.stdout + ran.stderr
    assert "OK" in openssl("verify", "-CAfile", str(home / "ca" / "ca.pem"),
                           str(home / "n.example" / "cert.pem")).stdout.decode()


def test_a_name_that_matches_only_other_kinds_is_warned_of(due):  # noqa: F811
    """`renew --expiring 10d --kind client --name 'web*'` (web.example.com is a server) renewed nothing and said
    nothing, exit 0; the timer installed with it said nothing either, and would renew nothing every night, where a
    --name that matches no certificate at all is warned of (round 31). It is warned of now, in --json's notes
    too, naming the kinds it does match; with the right --kind it renews."""
    tmp_path, secret, env = due
    said = ("Warning: --name 'web*' matches no client certificate of this CA yet, only server certificates "
            "('certkit list --name' shows them), so nothing is renewed by --kind client with it.")
    bulk = run_certkit("renew", "--expiring", "10d", "--kind", "client", "--name", "web*", "--passphrase-file",
                       secret, cwd=tmp_path, env=env, subprocess=True, input="")
    assert (bulk.returncode, bulk.stdout, bulk.stderr) == (0, "", said + "\n"), bulk.stderr
    data = json.loads(run_certkit("renew", "--expiring", "10d", "--kind", "client", "--name", "web*", "--json",
                                  cwd=tmp_path, env=env, check=True).stdout)
    assert data["notes"] == [said.removeprefix("Warning: ")] and data["renewed"] == 0, data
    timer = run_certkit("renew", "--install-timer", "--expiring", "10d", "--kind", "client", "--name", "web*",
                        "--passphrase-file", secret, "--unit-dir", tmp_path / "units", cwd=tmp_path, env=env,
                        subprocess=True)
    assert timer.returncode == 0 and said in timer.stderr, timer.stderr
    before = serial_of(tmp_path / "web")
    right = run_certkit("renew", "--expiring", "10d", "--kind", "server", "--name", "web*", "--days", "60",
                        "--passphrase-file", secret, cwd=tmp_path, env=env, subprocess=True)
    assert right.returncode == 0 and "Warning" not in right.stderr and serial_of(tmp_path / "web") != before
