"""Round 32, renew (issue 13): every --json report of renew has "ok" (agreeing with the exit status) and
"notes"; a --days no selected certificate may have is one usage error before anything; the bulk summary says
moved bundles apart from certificates delivered elsewhere; installing the same timer again says nothing
changed. Units go to temporary folders only (--unit-dir, CERTKIT_SYSTEMD_SYSTEM_DIR)."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from test_audit29_wording3 import as_nobody, home, runner  # noqa: F401 (certkit run as the user nobody)
from test_fleet_timer import due  # noqa: F401 (a CA with one bundle due in 5 days, its passphrase in a file)

from conftest import assert_clean_error, openssl, run_certkit


def test_every_renew_json_report_has_ok_and_notes_agreeing_with_the_exit_status(due):  # noqa: F811
    """`renew web --json --exec 'exit 3'` exited 1 with a report that had no "ok" (a script reading .ok got
    nothing, though the bulk report has it), and the bulk report had no top-level "notes". Each has both now,
    and "ok" is false exactly when the exit status is not 0."""
    tmp_path, secret, env = due
    web = tmp_path / "web"
    for hook, code in (("exit 3", 1), ("true", 0)):
        proc = run_certkit("renew", web, "--exec", hook, "--passphrase-file", secret, "--json", env=env,
                           subprocess=True)
        data = json.loads(proc.stdout)
        assert proc.returncode == code and data["ok"] is (code == 0) and data["notes"] == [], proc
        assert data["exec"]["exit"] == int(hook == "exit 3") * 3
    assert "OK" in openssl("verify", "-CAfile", str(web / "ca.pem"), str(web / "cert.pem")).stdout.decode()
    plain = json.loads(run_certkit("renew", web, "--days", "60", "--passphrase-file", secret, "--json", env=env,
                                   check=True).stdout)
    assert plain["ok"] is True and plain["notes"] == []
    run_certkit("issue-peer", "node1.example", "--days", "3", "--passphrase-file", secret, cwd=tmp_path, env=env,
                check=True)
    for hook, code in (("exit 4", 1), ("true", 0)):
        proc = run_certkit("renew", "--expiring", "10d", "--days", "3", "--exec", hook, "--passphrase-file", secret,
                           "--json", cwd=tmp_path, env=env, subprocess=True)
        data = json.loads(proc.stdout)
        assert proc.returncode == code and data["ok"] is (code == 0), proc
        assert data["renewed"] == 1 and any("peer" in n for n in data["notes"]), data["notes"]
    nothing = run_certkit("renew", "--expiring", "1h", "--json", env=env, check=True)
    assert json.loads(nothing.stdout)["ok"] is True and json.loads(nothing.stdout)["notes"] == []


def _days_past_ca(tmp_path) -> int:
    """A --days that ends two days after the CA of ``due`` expires."""
    import datetime as dt

    from cryptography import x509

    ca = x509.load_pem_x509_certificate((tmp_path / "ca" / "ca.pem").read_bytes())
    return (ca.not_valid_after_utc - dt.datetime.now(dt.UTC)).days + 2


def test_a_days_no_selected_certificate_may_have_is_one_usage_error_before_anything(due):  # noqa: F811
    """`renew --all --kind server --days 900` failed each server certificate at the plan stage ('Renewed 0 of 1
    ... failed ...: A server certificate may live at most 825 days', exit 1), and so did a --days past the CA's
    expiry for every kind; --install-timer with such a --days was installed, to fail every night. Each is now one
    usage error (exit 2) before anything is renewed or written."""
    from test_fleet_timer import serial_of

    tmp_path, secret, env = due
    bundle_serial = serial_of(tmp_path / "web")
    past = str(_days_past_ca(tmp_path))
    run_certkit("issue-client", "alice", "--days", "3", "--passphrase-file", secret, cwd=tmp_path, env=env, check=True)
    for args, said in ((["--kind", "server", "--days", "900"], "a server certificate may live at most 825 days"),
                       (["--kind", "peer", "--days", "900"], "a peer certificate may live at most 825 days"),
                       (["--kind", "client", "--days", past], "would end after the ca expires"),
                       (["--days", past], "would end after the ca expires")):
        for extra in ([], ["--json"]):
            proc = run_certkit("renew", "--all", *args, "--passphrase-file", secret, *extra, cwd=tmp_path, env=env,
                               subprocess=True)
            assert "Traceback" not in proc.stderr and proc.returncode == 2, proc
            said_as = json.loads(proc.stdout)["error"] if extra else proc.stderr
            assert said in said_as.lower() and "nothing was renewed" in said_as, said_as
            assert said_as.count("fits no certificate") == 1 and "Renewed" not in proc.stdout, proc
    units = tmp_path / "units"
    proc = run_certkit("renew", "--install-timer", "--kind", "client", "--days", past, "--passphrase-file", secret,
                       "--unit-dir", units, env=env, subprocess=True)
    assert proc.returncode == 2 and "nothing was installed" in proc.stderr and not units.exists(), proc
    assert serial_of(tmp_path / "web") == bundle_serial and serial_of(tmp_path / "alice") != ""
    listed = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]
    assert len(listed) == 2, listed  # nothing renewed: the bundle and alice, no successor
    fits = run_certkit("renew", "--all", "--kind", "client", "--days", "30", "--passphrase-file", secret, cwd=tmp_path,
                       env=env, check=True)
    assert "Renewed 1 of 1" in fits.stdout, fits.stdout


def test_the_summary_says_moved_bundles_apart_from_certificates_delivered_elsewhere(due):  # noqa: F811
    """The summary said 'skipped 3 not in a known bundle folder' of a bundle moved by hand (which the operator
    must act on: it will expire under a quiet cron job) and of certificates delivered into a jsonl file or to
    standard output on purpose alike. It counts them apart now, in a run that renewed some and in one at a
    terminal that renewed none; the moved one is still warned of by serial."""
    from fleet_helpers import run_in_pty

    tmp_path, secret, env = due
    for name in ("db.example", "cache.example"):
        run_certkit("issue-server", name, "--days", "20", "--passphrase-file", secret, cwd=tmp_path, env=env,
                    check=True)
    (tmp_path / "db.example").rename(tmp_path / "db-moved")
    run_certkit("issue-server", "api.example", "--days", "20", "--format", "jsonl", "--out", tmp_path / "api.jsonl",
                "--passphrase-file", secret, env=env, check=True)
    run_certkit("issue-server", "s.example", "--days", "20", "--format", "jsonl", "--passphrase-file", secret,
                env=env, check=True)
    proc = run_certkit("renew", "--expiring", "25d", "--days", "60", "--passphrase-file", secret, cwd=tmp_path,
                       env=env, subprocess=True)
    assert proc.returncode == 0 and "Renewed 2 of 2" in proc.stdout, proc
    assert "not in a known bundle folder" not in proc.stdout
    assert "  skipped  1 moved or deleted since written, needing your action: renew it where it is now" in proc.stdout
    assert "  skipped  2 delivered elsewhere by design" in proc.stdout and "no run renews them" in proc.stdout
    assert proc.stderr.count("was not renewed") == 1 and "db.example" in proc.stderr, proc.stderr
    code, shown, _ = run_in_pty(["renew", "--expiring", "25d", "--kind", "server", "--name", "*.example",
                                 "--passphrase-file", str(secret)], env=env, cwd=tmp_path, cols=300)
    assert code == 0 and "Renewed none of 3 server certificates" in shown, shown
    assert ": 2 of them were delivered into no bundle folder" in shown, shown
    assert "skipped  1 moved or deleted since written" in shown, shown
    data = json.loads(run_certkit("renew", "--expiring", "25d", "--json", env=env, cwd=tmp_path, check=True).stdout)
    whys = sorted(o["why"] for o in data["certificates"])
    assert whys == ["elsewhere", "elsewhere", "moved"] and data["needs_attention"] == 1, whys


def test_installing_the_same_timer_again_says_nothing_changed(due):  # noqa: F811
    """Installing an identical timer again said 'Wrote the daily renewal timer certkit-renew' and 'To finish,
    run:' as if it were new, while docs/renew.md says it changes nothing; --json could not tell either. It now
    says the timer is installed already and nothing changed (the units byte for byte as they were), an install
    from a shell with another PATH says only the environment lines changed, and --force over another renewal
    says it replaced it; --json has "changed" and "change"."""
    tmp_path, secret, env = due
    units = tmp_path / "units"
    args = ["renew", "--install-timer", "--passphrase-file", secret, "--unit-dir", units]
    first = run_certkit(*args, env=env, check=True)
    assert first.stdout.startswith("Wrote the daily renewal timer certkit-renew") and "To finish, run:" in first.stdout
    written = {p.name: p.read_bytes() for p in units.iterdir()}
    again = run_certkit(*args, env=env, check=True)
    assert again.stdout.startswith("The daily renewal timer certkit-renew is installed already, the same: nothing "
                                   "changed"), again.stdout
    assert "Wrote" not in again.stdout and "If not done yet, run:" in again.stdout, again.stdout
    assert {p.name: p.read_bytes() for p in units.iterdir()} == written
    same = json.loads(run_certkit(*args, "--json", env=env, check=True).stdout)
    assert same["changed"] is False and same["change"] == "unchanged" and same["ok"] is True, same
    moved_path = env | {"PATH": f"{tmp_path}:{env['PATH']}"}
    updated = run_certkit(*args, env=moved_path, check=True, subprocess=True)
    assert updated.stdout.startswith("Updated the daily renewal timer certkit-renew") and \
        "only its environment lines (PATH, HOME) changed" in updated.stdout, updated.stdout
    other = json.loads(run_certkit(*args, "--expiring", "20d", "--force", "--json", env=env, check=True).stdout)
    assert other["changed"] is True and other["change"] == "replaced", other
    replaced = run_certkit(*args, "--expiring", "10d", "--force", env=env, check=True)
    assert replaced.stdout.startswith("Replaced the daily renewal timer certkit-renew"), replaced.stdout
    assert "--expiring 10d" in (units / "certkit-renew.service").read_text()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_a_key_the_user_may_not_read_is_said_so_and_rekey_replaces_it(runner, home):  # noqa: F811
    """Run as the user nobody, a bundle whose privkey.pem is mode 000 was refused, single and bulk, with 'Cannot
    read the private key ...: Permission denied.' and no way out: --rekey, which replaces a missing or damaged
    key, failed the same way (it read the old key first). The refusal now says what to do, and --rekey renews
    it with a new key (0600, openssl: the certificate's), single and in bulk; nothing is written without it."""
    env = {"CERTKIT_CA_DIR": str(home / "ca")}
    for args in (["init-ca", "--name", "N32", "--no-passphrase"], ["issue-server", "a.example", "--days", "20"],
                 ["issue-server", "b.example", "--days", "20"]):
        assert as_nobody(runner, home, "-m", "certkit", *args, **env).returncode == 0
    for name in ("a.example", "b.example"):
        (home / name / "privkey.pem").chmod(0)
    before = {n: (home / n / "cert.pem").read_bytes() for n in ("a.example", "b.example")}
    single = as_nobody(runner, home, "-m", "certkit", "renew", "a.example", **env)
    assert_clean_error(single, "Cannot read the private key a.example/privkey.pem: Permission denied, so certkit "
                               "cannot renew the bundle with its key kept; nothing was written.")
    assert "--rekey for a new key" in single.stderr
    bulk = as_nobody(runner, home, "-m", "certkit", "renew", "--expiring", "25d", "--days", "60", **env)
    assert bulk.returncode == 1 and bulk.stdout.count("cannot renew the bundle with its key kept") == 2, bulk
    assert {n: (home / n / "cert.pem").read_bytes() for n in before} == before
    rekeyed = as_nobody(runner, home, "-m", "certkit", "renew", "a.example", "--rekey", "--json", **env)
    assert rekeyed.returncode == 0 and json.loads(rekeyed.stdout)["ok"] is True, rekeyed
    bulk = as_nobody(runner, home, "-m", "certkit", "renew", "--expiring", "25d", "--days", "60", "--rekey", **env)
    assert bulk.returncode == 0 and "Renewed 2 of 2" in bulk.stdout and "(new keys)" in bulk.stdout, bulk
    for name in before:
        folder = home / name
        assert (folder / "privkey.pem").stat().st_mode & 0o777 == 0o600
        of_cert = openssl("x509", "-noout", "-pubkey", "-in", str(folder / "cert.pem")).stdout
        assert of_cert == openssl("pkey", "-pubout", "-in", str(folder / "privkey.pem")).stdout
        assert (folder / "cert.pem").read_bytes() != before[name]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_a_bundle_folder_the_user_may_write_but_not_list_is_refused_before_signing(runner, home):  # noqa: F811
    """Run as nobody, a bundle folder of mode 0300 (written and entered, not listed) passed every check, so the
    renewal signed a certificate (bulk: after the passphrase, at the stage 'renew') and then failed with 'Cannot
    write the bundle in c: Permission denied; nothing was replaced', blaming a write. Renewing in place, in bulk,
    and issue-* --force over it are now refused before anything is signed, naming the read permission."""
    env = {"CERTKIT_CA_DIR": str(home / "ca")}
    for args in (["init-ca", "--name", "N32", "--no-passphrase"], ["issue-client", "c", "--days", "20"],
                 ["issue-client", "d", "--days", "20"]):
        assert as_nobody(runner, home, "-m", "certkit", *args, **env).returncode == 0
    (home / "c").chmod(0o300)
    said = "permission denied to read it (its mode 0300)"
    for args in (["renew", "c"], ["issue-client", "c", "--force"]):
        proc = as_nobody(runner, home, "-m", "certkit", *args, **env)
        assert_clean_error(proc, f"Cannot write the output folder c: {said}")
    bulk = as_nobody(runner, home, "-m", "certkit", "renew", "--expiring", "25d", "--days", "60", "--json", **env)
    outcomes = {o["folder"].rsplit("/", 1)[-1]: o for o in json.loads(bulk.stdout)["certificates"]}
    assert bulk.returncode == 1 and outcomes["d"]["outcome"] == "renewed", bulk
    assert outcomes["c"]["stage"] == "plan" and said in outcomes["c"]["error"], outcomes["c"]
    listed = json.loads(as_nobody(runner, home, "-m", "certkit", "list", "--json", **env).stdout)
    assert listed["total"] == 3, listed  # c, d and d's successor: nothing signed for c


def test_a_hook_stopped_by_its_deadline_is_marked_timed_out(due):  # noqa: F811
    """A hook --exec-timeout stopped was reported {"exit": null, "ok": false, "error": "still running after 1 s,
    so it was stopped"}: a script could tell it from a hook that failed (exit 3) or could not run only by parsing
    English. Every hook's report has "timed_out" now: true for the stopped one (single and bulk, --exec and
    --exec-once, and one whose background child held its output past the deadline), false otherwise. The hook
    reads no terminal: its standard input is empty, so 'read' ends at once."""
    import time

    tmp_path, secret, env = due
    web = tmp_path / "web"
    started = time.monotonic()
    single = run_certkit("renew", web, "--exec", "sleep 30", "--exec-timeout", "1", "--passphrase-file", secret,
                         "--json", env=env, subprocess=True)
    data = json.loads(single.stdout)
    assert single.returncode == 1 and data["ok"] is False and time.monotonic() - started < 25, single
    assert data["exec"]["timed_out"] is True and data["exec"]["exit"] is None, data["exec"]
    proc = run_certkit("renew", "--expiring", "60d", "--days", "70", "--exec", "read x && exit 4; exit 3",
                       "--exec-once", "sleep 30 & echo started", "--exec-timeout", "1", "--passphrase-file", secret,
                       "--json", cwd=tmp_path, env=env, subprocess=True, input="yes\n")
    data = json.loads(proc.stdout)
    hook = data["certificates"][0]["hook"]
    assert proc.returncode == 1 and hook["exit"] == 3 and hook["timed_out"] is False, hook
    assert data["exec_once"]["timed_out"] is True and data["exec_once"]["exit"] == 0, data["exec_once"]
    assert "started" in data["exec_once"]["output"]


def test_a_run_with_include_expired_names_its_selection_as_one_phrase(due):  # noqa: F811
    """--all --include-expired was described as 'valid certificates and expired ones', which read 'Nothing to
    renew: no valid client certificates and expired ones.' and 'Renewed 1 of 1 valid certificate and expired
    ones'. It is 'valid or expired certificates' now, in every line that names the selection."""
    from fleet_helpers import run_in_pty

    tmp_path, secret, env = due
    code, shown, _ = run_in_pty(["renew", "--all", "--include-expired", "--kind", "client", "--passphrase-file",
                                 str(secret)], env=env, cwd=tmp_path, cols=200)
    assert code == 0 and "Nothing to renew: no valid or expired client certificates." in shown, shown
    assert "expired ones" not in shown
    proc = run_certkit("renew", "--all", "--include-expired", "--days", "60", "--passphrase-file", secret,
                       cwd=tmp_path, env=env, check=True)
    assert proc.stdout.startswith("Renewed 1 of 1 valid or expired certificate\n"), proc.stdout
    data = json.loads(run_certkit("renew", "--all", "--include-expired", "--kind", "client", "--json", env=env,
                                  check=True).stdout)
    assert data["selection"] == "all valid or expired client certificates" and data["ok"] is True, data
