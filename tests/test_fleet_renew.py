"""Bulk renewal (renew --expiring / --all): what is due is renewed in place with its key kept or
replaced, hooks run per bundle and once, a failed hook leaves the bundle in place and fails the run,
and a second run (cron, an hour later) renews nothing, prints nothing and asks for no passphrase."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import signal
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certkit.store import CADirectory
from certkit.vocabulary import serial_hex

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, run_certkit
from fleet_helpers import backdated_ca, bundle, run_in_pty, served_serial, until_changed
from integrity_helpers import alive


def load(folder: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes())


def spki(obj) -> bytes:
    return obj.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def pair_ok(folder: Path) -> bool:
    key = serialization.load_pem_private_key((folder / "privkey.pem").read_bytes(), None)
    return spki(key) == spki(load(folder))


@pytest.fixture
def fleet(tmp_path):
    """Three bundles due within 30 days (two servers, a client), one that is not, one revoked,
    and one delivered as a JSON line (no folder to renew in)."""
    ca = backdated_ca(tmp_path / "ca")
    work = tmp_path / "w"
    serials = {
        "web": bundle(ca, work / "web", "web.example.com", days=40, age=35).serial_hex,
        "api": bundle(ca, work / "api", "api.example.com", "10.0.0.7", days=40, age=30).serial_hex,
        "alice": bundle(ca, work / "alice", "alice", kind="client", days=40, age=36).serial_hex,
        "db": bundle(ca, work / "db", "db.example.com", days=200).serial_hex,
        "old": bundle(ca, work / "old", "old.example.com", days=40, age=35).serial_hex,
    }
    ca.revoke(serials["old"], "superseded")
    from certkit.formats import Output
    from certkit.issuing import deliver, server_request

    output = Output("jsonl", work / "line.jsonl")
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=35)
    serials["line"] = deliver(ca, server_request(["line.example.com"], days=40, not_before=start),
                              output.target("line")).issued.serial_hex
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    return work, serials, env


def renew_json(env, *args, cwd=None, code=0):
    proc = run_certkit("renew", *args, "--json", env=env, cwd=cwd)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout), proc


def test_keeps_keys_and_a_second_run_does_nothing(fleet):
    work, serials, env = fleet
    before = {name: (load(work / name), (work / name / "privkey.pem").stat().st_ino) for name in
              ("web", "api", "alice", "db")}
    data, _ = renew_json(env, "--expiring", "30d")
    assert data["ok"] and data["renewed"] == 3 and data["failed"] == 0 and data["skipped"] == 1
    outcomes = {o["serial"]: o for o in data["certificates"]}
    assert outcomes[serials["line"]]["outcome"] == "skipped"
    assert serials["db"] not in outcomes and serials["old"] not in outcomes  # not due; revoked
    for name in ("web", "api", "alice"):
        cert, inode = before[name]
        new = load(work / name)
        o = outcomes[serials[name]]
        assert o["outcome"] == "renewed" and o["new_serial"] == serial_hex(new.serial_number)
        assert o["folder"] == str(work / name)
        assert new.subject == cert.subject and spki(new) == spki(cert)  # the key kept: the very same file
        assert (work / name / "privkey.pem").stat().st_ino == inode and pair_ok(work / name)
        assert new.extensions.get_extension_for_class(x509.ExtendedKeyUsage) == \
            cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        assert new.not_valid_after_utc - new.not_valid_before_utc == dt.timedelta(days=40) - dt.timedelta(seconds=1)
        purpose = "sslclient" if name == "alice" else "sslserver"
        ok = openssl("verify", "-x509_strict", "-purpose", purpose, "-CAfile", work / name / "ca.pem",
                     work / name / "cert.pem")
        assert ok.returncode == 0, ok.stderr
    assert load(work / "db") == before["db"][0]
    inventory = CADirectory(work.parent / "ca").inventory
    assert inventory.get(outcomes[serials["web"]]["new_serial"])["renewed_from"] == serials["web"]
    # cron, an hour later: nothing is due, nothing printed, exit 0, and no passphrase needed
    quiet = dict(env)
    del quiet["CERTKIT_CA_PASSPHRASE"]
    proc = run_certkit("renew", "--expiring", "30d", env=quiet)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    again, _ = renew_json(quiet, "--expiring", "30d")
    assert again["renewed"] == 0 and again["ok"]


def test_rekey_by_kind_and_name(fleet):
    work, serials, env = fleet
    old_key = (work / "api" / "privkey.pem").read_bytes()
    data, _ = renew_json(env, "--expiring", "30d", "--kind", "server", "--name", "api.*", "--rekey")
    assert [o["serial"] for o in data["certificates"] if o["outcome"] == "renewed"] == [serials["api"]]
    assert (work / "api" / "privkey.pem").read_bytes() != old_key and pair_ok(work / "api")
    assert oct((work / "api" / "privkey.pem").stat().st_mode & 0o777) == "0o600"
    san = load(work / "api").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["api.example.com"]
    assert serial_hex(load(work / "web").serial_number) == serials["web"]  # not chosen: untouched
    data, _ = renew_json(env, "--all", "--kind", "client")
    assert [o["serial"] for o in data["certificates"] if o["outcome"] == "renewed"] == [serials["alice"]]


def test_hooks_per_bundle_and_once(fleet, tmp_path):
    work, serials, env = fleet
    log = tmp_path / "hooks.log"
    each = (f'printf "%s|%s|%s|%s|%s|%s|%s\\n" "$RENEWED_LINEAGE" "$CERTKIT_FOLDER" "$CERTKIT_SERIAL" '
            f'"$CERTKIT_OLD_SERIAL" "$RENEWED_DOMAINS" "$CERTKIT_KIND" "${{CERTKIT_CA_PASSPHRASE-none}}" >> {log}')
    once = f'echo "once $CERTKIT_RENEWED" >> {log}; printf "%s\\n" "$CERTKIT_FOLDERS" >> {log}'
    data, proc = renew_json(env, "--expiring", "30d", "--exec", each, "--exec-once", once)
    lines = log.read_text().splitlines()
    renewed = {o["serial"]: o for o in data["certificates"] if o["outcome"] == "renewed"}
    assert len(lines) == 3 + 1 + 3
    for line in lines[:3]:
        lineage, folder, new, old, domains, kind, secret = line.split("|")
        assert lineage == folder and Path(folder).is_dir() and secret == "none"  # no passphrase leaks to hooks
        assert renewed[old]["new_serial"] == new == serial_hex(load(Path(folder)).serial_number)
        assert domains == " ".join(renewed[old]["domains"]) and kind == renewed[old]["kind"]
        assert renewed[old]["old_serial"] == old and all(":" in n for n in renewed[old]["names"])
    # alice's certificate has no SAN: no domains
    assert {ln.split("|")[4] for ln in lines[:3]} == {"web.example.com", "api.example.com 10.0.0.7", ""}
    assert lines[3] == "once 3" and sorted(lines[4:]) == sorted(o["folder"] for o in renewed.values())
    assert all(o["hook"]["ok"] for o in renewed.values()) and data["exec_once"]["exit"] == 0
    # nothing to do: neither hook runs
    log.unlink()
    proc = run_certkit("renew", "--expiring", "30d", "--exec", each, "--exec-once", once, env=env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "") and not log.exists()


def test_a_failed_hook_keeps_the_bundle_and_fails_the_run(fleet):
    work, serials, env = fleet
    hook = '[ "$(basename "$CERTKIT_FOLDER")" != api ] || { echo "reload failed" >&2; exit 3; }'
    data, proc = renew_json(env, "--expiring", "30d", "--exec", hook, "--exec-once", "exit 4", code=1)
    assert not data["ok"] and data["renewed"] == 3 and data["hook_failures"] == 1
    api = next(o for o in data["certificates"] if o["serial"] == serials["api"])
    assert api["hook"] == {"command": hook, "exit": 3, "ok": False, "error": "exit 3", "timed_out": False,
                           "output": "reload failed\n", "output_truncated": False}
    assert serial_hex(load(work / "api").serial_number) == api["new_serial"]  # written, kept, valid
    assert CADirectory(work.parent / "ca").inventory.get(api["new_serial"])["status"] == "valid"
    assert data["exec_once"]["exit"] == 4
    assert "reload failed" in proc.stderr and "Error: 1 --exec hook failed" in proc.stderr
    assert "--exec-once hook failed" in proc.stderr
    # people see the same
    proc = run_certkit("renew", "--all", "--kind", "client", "--exec", "exit 5", env=env)
    assert proc.returncode == 1 and "--exec: exit 5" in proc.stdout and "Error:" in proc.stderr


def test_a_refusal_does_not_stop_the_others(fleet):
    work, serials, env = fleet
    other = serialization.load_pem_private_key((work / "db" / "privkey.pem").read_bytes(), None)
    (work / "web" / "privkey.pem").write_bytes(other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    broken = (work / "web" / "cert.pem").read_bytes()
    proc = run_certkit("renew", "--expiring", "30d", env=env)
    assert proc.returncode == 1, proc.stderr
    assert "Renewed 2 of 3" in proc.stdout and f"failed   {serials['web']}" in proc.stdout
    assert "does not belong to" in proc.stdout and "Error: 1 of 3 renewals failed" in proc.stderr
    assert (work / "web" / "cert.pem").read_bytes() == broken  # refused before anything was signed
    assert pair_ok(work / "api") and pair_ok(work / "alice")


def test_hook_timeout(fleet):
    work, serials, env = fleet
    data, _ = renew_json(env, "--all", "--kind", "client", "--exec", "sleep 30", "--exec-timeout", "1", code=1)
    [hook] = [o["hook"] for o in data["certificates"] if o["outcome"] == "renewed"]
    assert hook["exit"] is None and "still running after 1 s" in hook["error"]


def test_hook_timeout_covers_what_the_hook_left_running(fleet, tmp_path):
    """'my-daemon &' exits at once but its child holds the hook's output: the timeout still bounds
    the run, the child is stopped with the hook's session, and the hook is reported as failed."""
    work, serials, env = fleet
    pids = tmp_path / "pids"
    hook = f'sleep 300 & echo $! >> {pids}; exit 0'
    data, proc = renew_json(env, "--all", "--kind", "client", "--exec", hook, "--exec-timeout", "1", code=1)
    [outcome] = [o for o in data["certificates"] if o["outcome"] == "renewed"]
    assert outcome["hook"]["exit"] == 0 and not outcome["hook"]["ok"]
    assert "still held its output after 1 s" in outcome["hook"]["error"]
    assert serial_hex(load(work / "alice").serial_number) == outcome["new_serial"]  # the bundle stays
    [pid] = pids.read_text().split()
    deadline = time.monotonic() + 60
    while alive(int(pid)):  # gone, or a zombie (its stat may vanish between two reads: alive() reads it once)
        assert time.monotonic() < deadline, f"the hook's background child {pid} is still running"
        time.sleep(0.05)


def test_hooks_get_no_secrets(monkeypatch):
    from certkit.fleet.hooks import hook_base_environment

    for name in ("CERTKIT_CA_PASSPHRASE", "CERTKIT_PARENT_CA_PASSPHRASE", "CERTKIT_P12_PASSWORD",
                 "CERTKIT_PKCS11_PIN", "PGPASSWORD"):
        monkeypatch.setenv(name, "s3cret")
    monkeypatch.setenv("CERTKIT_INVENTORY_URL", "postgresql://certkit:s3cret@db.internal/certkit")
    monkeypatch.setenv("PGHOST", "db.internal")
    env = hook_base_environment()
    assert "s3cret" not in repr(env) and env["PGHOST"] == "db.internal"
    monkeypatch.setenv("CERTKIT_INVENTORY_URL", "postgresql://certkit@db.internal/certkit")  # no password: kept
    assert hook_base_environment()["CERTKIT_INVENTORY_URL"] == "postgresql://certkit@db.internal/certkit"


def test_usage_mistakes(fleet):
    _work, _serials, env = fleet
    for args, fragment in ((["web.example.com", "--expiring", "30d"], "belong to a single renewal"),
                           (["--expiring", "30d", "--all"], "choose one"),
                           (["--kind", "server"], "add --expiring PERIOD or --all"),
                           ([], "Say which certificate to renew"),
                           (["--expiring", "30d", "--out", "x"], "belong to a single renewal"),
                           (["--cron"], "apply with --install-timer")):
        assert_clean_error(run_certkit("renew", *args, env=env), fragment, code=2)


def test_one_bulk_renewal_at_a_time(fleet):
    work, _serials, env = fleet
    fd = os.open(work.parent / "ca", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert_clean_error(run_certkit("renew", "--expiring", "30d", env=env), "Another bulk renewal")
    finally:
        os.close(fd)
    assert renew_json(env, "--expiring", "30d")[0]["renewed"] == 3


def test_progress_on_a_terminal(fleet):
    work, _serials, env = fleet
    code, shown, _ = run_in_pty(["renew", "--expiring", "30d"], env=env, cwd=work, cols=120)
    assert code == 0, shown
    assert "Checking certificates expiring within 30 days before anything is renewed" in shown
    assert "3/3" in shown and "/s" in shown and "Renewed 3 of 3" in shown
    # nothing left to renew here: the terminal shows that it checked, and (round nineteen) names the due certificate
    # it does not renew, delivered into line.jsonl, rather than nothing as if none were due
    code, shown, _ = run_in_pty(["renew", "--expiring", "30d"], env=env, cwd=work, cols=120)
    assert code == 0 and "Renewing" not in shown, shown
    assert "Renewed none of 1 certificate expiring within 30 days" in shown and "line.jsonl" in shown, shown


def test_hook_output_on_a_terminal_starts_its_own_line(fleet):
    """What hooks print is not glued onto the progress bar ('... 58.4/shook-45AA...')."""
    import re

    work, _serials, env = fleet
    code, shown, _ = run_in_pty(["renew", "--expiring", "30d", "--exec", "echo hook-$CERTKIT_SERIAL",
                                 "--exec-once", "echo ONCE"], env=env, cwd=work, cols=120)
    assert code == 0, shown
    # A serial is 159 random bits: 40 hex digits, or fewer when its leading octets are zero (1 in 128).
    starts = [m.start() for m in re.finditer(r"hook-[0-9A-F]{2,40}|ONCE", shown)]
    assert len(starts) == 4, shown
    for start in starts:
        before = shown[:start]
        # (round 35: each output is indented under a heading line that names its bundle; the heading starts a line)
        assert re.search(r"(\n|\x1b\[K)--exec(-once)? [^\n]*: exit 0\n  $", before), repr(before[-80:])


def test_single_renewal_runs_hooks_too(fleet, tmp_path):
    work, serials, env = fleet
    log = tmp_path / "single.log"
    data, _ = renew_json(env, str(work / "db"), "--exec", f'echo "$CERTKIT_OLD_SERIAL $CERTKIT_SERIAL" >> {log}',
                         "--exec-once", f"echo once >> {log}")
    assert log.read_text().splitlines() == [f"{serials['db']} {data['serial']}", "once"]
    assert data["exec"]["ok"] and data["exec_once"]["ok"]


def test_nginx_picks_up_the_renewed_certificate_on_reload(fleet, tmp_path):
    """What docs/renew.md says: --exec-once reloads nginx once, and nginx then serves the new
    certificate (from the same files, swapped in place)."""
    from nginx_helper import nginx, require_nginx

    require_nginx()
    work, serials, env = fleet
    web = work / "web"
    tls = f"        ssl_certificate {web / 'fullchain.pem'};\n        ssl_certificate_key {web / 'privkey.pem'};"
    with nginx(tmp_path, tls) as (port, _log):
        ca_file = web / "ca.pem"
        before = served_serial(port, ca_file, "web.example.com")
        assert serial_hex(before) == serials["web"]
        pid_file = tmp_path / "nginx" / "nginx.pid"
        reload = f'kill -HUP "$(cat {pid_file})"'  # what nginx -s reload does
        data, _ = renew_json(env, "--expiring", "30d", "--kind", "server", "--name", "web.*", "--exec-once", reload)
        [renewed] = [o for o in data["certificates"] if o["outcome"] == "renewed"]
        now = until_changed(lambda: served_serial(port, ca_file, "web.example.com"), before)  # new workers take over
        assert serial_hex(now) == renewed["new_serial"]


def test_ctrl_c_stops_after_the_bundle_and_still_reloads_once(fleet, tmp_path):
    """Ctrl-C (here sent by the first hook to certkit itself) stops the run between two renewals;
    what was renewed is reported, --exec-once still runs for it, the exit status is 130."""
    work, serials, env = fleet
    log = tmp_path / "once.log"
    proc = run_certkit("renew", "--expiring", "30d", "--exec", 'kill -INT "$PPID"',  # $PPID: certkit itself
                       "--exec-once", f'echo "$CERTKIT_RENEWED" > {log}', env=env, subprocess=True)
    assert proc.returncode == 130, proc.stdout + proc.stderr
    # of the three that were due (audit team8 #3: it said "1 of 1"), and how many are left
    assert "Renewed 1 of 3" in proc.stdout and "Error: interrupted after 1 renewal; 2 planned renewals were not done" \
        in proc.stderr
    assert log.read_text() == "1\n" and "Traceback" not in proc.stderr
    renewed = [name for name in ("web", "api", "alice") if serial_hex(load(work / name).serial_number) != serials[name]]
    assert len(renewed) == 1 and pair_ok(work / renewed[0])
    # the next run renews the rest
    data, _ = renew_json(env, "--expiring", "30d")
    assert data["renewed"] == 2


@pytest.mark.parametrize("purpose", ["--server", "--client", "--peer"])
def test_a_csr_bundle_renews_again_and_again(tmp_path, ca_dir, ca_env, purpose):
    """A bundle signed from a CSR holds no key (its requester keeps it); its renewal holds none
    either, so it renews again in place, by folder and in bulk, keeping the requester's key each
    time (the second renewal used to be refused as 'privkey.pem is missing: damaged')."""
    key = tmp_path / "web.key"
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
            "-subj", "/CN=web.internal", "-out", tmp_path / "web.csr")
    run_certkit("sign-csr", tmp_path / "web.csr", purpose, cwd=tmp_path, env=ca_env, check=True)
    folder = tmp_path / "web.internal"
    first = load(folder)
    run_certkit("renew", folder, env=ca_env, check=True)
    # As certkit recorded that renewal until now (keyed): told apart by its unkeyed predecessor.
    import sqlite3

    with sqlite3.connect(ca_dir / "inventory.sqlite3") as conn:
        conn.execute("UPDATE certificates SET keyed = 1 WHERE serial = ?", (serial_hex(load(folder).serial_number),))
    run_certkit("renew", folder, env=ca_env, check=True)
    data, _proc = renew_json(ca_env, "--all")
    assert data["renewed"] == 1 and data["failed"] == 0, data
    last = load(folder)
    assert last.serial_number != first.serial_number and spki(last) == spki(first)
    assert not (folder / "privkey.pem").exists()
    requester = serialization.load_pem_private_key(key.read_bytes(), None)
    assert spki(requester) == spki(last)


def test_a_stop_as_a_bundle_is_swapped_in_still_runs_its_deploy_hook(fleet, tmp_path):
    """SIGTERM while a renewed bundle is being put in place is held off until it is there; that bundle's
    --exec hook still runs (a rerun will not renew it again, so its hook would never run), then
    --exec-once, and the exit status says the run was stopped."""
    from integrity_helpers import interrupt, start_paused

    work, serials, env = fleet
    log, marker = tmp_path / "hooks.log", tmp_path / "paused"
    proc = start_paused(["renew", "--expiring", "30d", "--exec", f'echo "deploy $CERTKIT_FOLDER" >> {log}',
                         "--exec-once", f'echo "reload $CERTKIT_RENEWED" >> {log}', "--json"], env, work, "swapped",
                        marker)
    outcome = interrupt(proc, signal.SIGTERM, marker)
    assert outcome.returncode == 143, outcome.stdout + outcome.stderr
    renewed = [name for name in ("web", "api", "alice") if serial_hex(load(work / name).serial_number) != serials[name]]
    assert len(renewed) == 1 and pair_ok(work / renewed[0])
    assert log.read_text() == f"deploy {work / renewed[0]}\nreload 1\n"
    data = json.loads(outcome.stdout)
    [done] = [o for o in data["certificates"] if o["outcome"] == "renewed"]
    assert done["hook"]["exit"] == 0, done
