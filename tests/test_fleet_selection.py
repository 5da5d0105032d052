"""What bulk renewal chooses and what it tells: expired certificates stay expired unless asked
(a retired credential is not brought back by a timer), --name globs match values, not the
``CN=`` text every subject starts with, hooks get a client's common name as written, a stop
during a hook still reports what was renewed, and the timer's texts say what it runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit
from fleet_helpers import backdated_ca, bundle


@pytest.fixture
def due(tmp_path):
    """Bundles of a CA that began 500 days ago: one expired a year ago, two about to expire, one not due."""
    ca = backdated_ca(tmp_path / "ca", days_ago=500)
    work = tmp_path / "w"
    serials = {
        "gone": bundle(ca, work / "gone", "departed", kind="client", days=30, age=400).serial_hex,
        "bob": bundle(ca, work / "bob", "bob", kind="client", days=40, age=35).serial_hex,
        "web": bundle(ca, work / "web", "a.example.com", days=40, age=35).serial_hex,
        "cache": bundle(ca, work / "cache", "cache.example.com", days=40, age=35).serial_hex,
        "later": bundle(ca, work / "later", "later.example.com", days=200).serial_hex,
    }
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    return work, serials, env


def bulk(env, *args, code=0) -> dict:
    proc = run_certkit("renew", *args, "--json", env=env)
    assert proc.returncode == code, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def listed(env, *args) -> set[str]:
    proc = run_certkit("list", *args, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return {row["serial"] for row in json.loads(proc.stdout)["certificates"]}


def renewed(data: dict) -> set[str]:
    return {o["serial"] for o in data["certificates"] if o["outcome"] == "renewed"}


@pytest.mark.parametrize("selection", [["--expiring", "30d"], ["--all"]])
def test_an_expired_certificate_is_not_brought_back(due, selection) -> None:
    work, serials, env = due
    before = (work / "gone" / "cert.pem").read_bytes()
    data = bulk(env, *selection)
    assert serials["gone"] not in {o["serial"] for o in data["certificates"]}
    assert (work / "gone" / "cert.pem").read_bytes() == before
    expected = {serials[n] for n in ("bob", "web", "cache")} | ({serials["later"]} if "--all" in selection else set())
    assert renewed(data) == expected


def test_renew_expiring_takes_what_list_expiring_shows(due) -> None:
    _work, serials, env = due
    shown = listed(env, "--expiring", "30d", "--status", "valid")
    assert serials["gone"] not in shown
    assert renewed(bulk(env, "--expiring", "30d")) == shown


def test_include_expired_renews_it_when_asked(due) -> None:
    work, serials, env = due
    data = bulk(env, "--expiring", "30d", "--include-expired", "--kind", "client", "--name", "departed")
    assert renewed(data) == {serials["gone"]}
    assert "expired or expiring within 30 days" in data["selection"]
    proc = subprocess.run(["openssl", "x509", "-checkend", "86400", "-noout", "-in", work / "gone" / "cert.pem"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout  # valid again, because it was asked for


def test_include_expired_alone_is_a_usage_error(due) -> None:
    _work, _serials, env = due
    assert_clean_error(run_certkit("renew", "bob", "--include-expired", env=env), "--include-expired", code=2)


@pytest.mark.parametrize(("pattern", "names"), [
    ("c*", {"cache"}),  # not every CN=... subject
    ("cn=*", {"bob", "web", "cache"}),  # a glob with "=" names an attribute: it matches the subject as written
    ("cn", set()),  # a value is matched whole, and no value is "cn"
    ("CN=b*", {"bob"}),
    ("*=*", {"bob", "web", "cache"}),
    ("b*", {"bob"}),
    ("*.example.com", {"web", "cache"}),
])
def test_name_globs_match_values(due, pattern, names) -> None:
    _work, serials, env = due
    expected = {serials[n] for n in names}
    assert renewed(bulk(env, "--expiring", "30d", "--name", pattern)) == expected


def test_list_name_globs_match_values(due) -> None:
    _work, serials, env = due
    assert listed(env, "--name", "c*") == {serials["cache"]}
    assert listed(env, "--name", "cn=bob") == {serials["bob"]}


@pytest.fixture
def odd_clients(tmp_path):
    ca = backdated_ca(tmp_path / "ca")
    work = tmp_path / "w"
    serials = {name: bundle(ca, work / folder, name, kind="client", days=40, age=35).serial_hex
               for folder, name in (("job", "backup-job"), ("smith", "Smith, John"), ("evil", "O=Evil,CN=x"),
                                    ("x", "x"))}
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    return work, serials, env


# for d in $RENEWED_DOMAINS, as certbot's hooks do: each word on a line of its own
HOOK = ('printf "%s|%s|" "$CERTKIT_OLD_SERIAL" "$(printf %s "$CERTKIT_NAMES" | tr "\\n" ,)" >> "$HOME/domains"; '
        'for d in $RENEWED_DOMAINS; do printf "[%s]" "$d"; done >> "$HOME/domains"; echo >> "$HOME/domains"')


def hook_domains(home: Path) -> dict[str, tuple[str, str]]:
    return {serial: (names, words) for serial, names, words in
            (line.split("|", 2) for line in (home / "domains").read_text().splitlines())}


def test_hooks_get_a_clients_common_name_as_written(odd_clients, tmp_path) -> None:
    """A client's common name is in CERTKIT_NAMES as written; RENEWED_DOMAINS holds the SAN values alone, so
    that certbot's `for d in $RENEWED_DOMAINS` never splits a name that holds a space into two."""
    _work, serials, env = odd_clients
    env = env | {"HOME": str(tmp_path)}
    data = bulk(env, "--all", "--kind", "client", "--exec", HOOK)
    assert len(renewed(data)) == 4
    bulk_domains = hook_domains(tmp_path)
    assert bulk_domains == {serials["backup-job"]: ("backup-job", ""), serials["Smith, John"]: ("Smith, John", ""),
                            serials["O=Evil,CN=x"]: ("O=Evil,CN=x", ""), serials["x"]: ("x", "")}
    assert all(o["domains"] == [] for o in data["certificates"])
    (tmp_path / "domains").unlink()
    # a single renewal gives the same values as the bulk one
    proc = run_certkit("renew", _work / "smith", "--exec", HOOK, env=env)
    assert proc.returncode == 0, proc.stderr
    assert list(hook_domains(tmp_path).values()) == [("Smith, John", "")]


def test_renewed_domains_split_as_certbot_hooks_split_them(tmp_path) -> None:
    """A client certificate with an email, and a server certificate with two names: each SAN value is one word."""
    ca = backdated_ca(tmp_path / "ca")
    work = tmp_path / "w"
    alice = bundle(ca, work / "alice", "Alice Smith", kind="client", days=40, age=35, emails=["alice@example.com"])
    web = bundle(ca, work / "web", "www.example.com", "10.0.0.7", days=40, age=35)
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path))
    bulk(env, "--all", "--exec", HOOK)
    got = hook_domains(tmp_path)
    assert got[alice.serial_hex] == ("alice@example.com", "[alice@example.com]")
    assert got[web.serial_hex] == ("www.example.com,10.0.0.7", "[www.example.com][10.0.0.7]")


def test_a_name_finds_the_certificate_of_that_common_name_only(odd_clients) -> None:
    work, _serials, env = odd_clients
    x_before = (work / "x" / "cert.pem").read_bytes()
    evil_before = (work / "evil" / "cert.pem").read_bytes()
    proc = run_certkit("renew", "x", "--json", env=env)  # one certificate has CN x; another's CN only contains it
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (work / "x" / "cert.pem").read_bytes() != x_before
    assert (work / "evil" / "cert.pem").read_bytes() == evil_before


def _interrupt_during_hook(args, env, cwd, signum) -> tuple[int, str, str]:
    marker = cwd / "hook-started"
    proc = subprocess.Popen([sys.executable, "-m", "certkit", *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    os.kill(proc.pid, signum)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_during_exec_once_still_reports(due, signum) -> None:
    work, serials, env = due
    code, out, err = _interrupt_during_hook(
        ["renew", "--expiring", "30d", "--exec-once", "touch hook-started; sleep 30", "--json"], env, work, signum)
    assert code == 128 + signum, err
    data = json.loads(out)
    assert renewed(data) == {serials[n] for n in ("bob", "web", "cache")}
    assert data["interrupted"] is True and data["exec_once"]["ok"] is False
    assert "interrupted" in data["exec_once"]["error"]
    assert "Traceback" not in err and "interrupted" in err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_during_a_single_renewals_hook_still_reports(due, signum) -> None:
    work, serials, env = due
    code, out, err = _interrupt_during_hook(
        ["renew", str(work / "web"), "--exec", "touch hook-started; sleep 30", "--exec-once", "touch once-ran"],
        env, work, signum)
    assert code == 128 + signum, err
    assert f"Renewed server certificate {serials['web']}" in out and "interrupted" in out
    assert err.strip().splitlines()[-1].startswith("Error: interrupted while a hook ran")
    assert "Traceback" not in err
    assert not (work / "once-ran").exists()  # the hooks after the interrupted one do not run


def test_timer_refuses_a_p12_password_it_cannot_read_every_night(due, tmp_path) -> None:
    _work, _serials, env = due
    proc = run_certkit("renew", "--install-timer", "--unit-dir", tmp_path / "u", "--p12-password-file", "-",
                       "--passphrase-file", "-", env=env, input="secret\n")
    assert_clean_error(proc, "standard input", code=2)
    assert not (tmp_path / "u").exists()
    loose = tmp_path / "p12pass"
    loose.write_text("p12secret\n")
    loose.chmod(0o644)
    proc = run_certkit("renew", "--install-timer", "--unit-dir", tmp_path / "u", "--p12-password-file", loose,
                       env=env)
    assert_clean_error(proc, "p12pass")
    assert not (tmp_path / "u").exists()


def test_timer_description_and_crontab_hint_say_the_whole_selection(due, tmp_path) -> None:
    _work, _serials, env = due
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    proc = run_certkit("renew", "--install-timer", "--unit-dir", tmp_path / "u", "--expiring", "21d", "--kind",
                       "client", "--name", "db*", "--passphrase-file", secret, env=env)
    assert proc.returncode == 0, proc.stderr
    description = [line for line in (tmp_path / "u" / "certkit-renew.timer").read_text().splitlines()
                   if line.startswith("Description=")]
    assert description == ["Description=certkit: renew certificates (--expiring 21d --kind client --name 'db*')"]
    proc = run_certkit("renew", "--install-timer", "--cron", "--expiring", "20d", "--exec-once", "systemctl reload x",
                       "--passphrase-file", secret, env=env)
    assert proc.returncode == 0, proc.stderr
    hint = proc.stderr.strip()
    assert hint.endswith("--install-timer --cron) | crontab -"), hint
    for words in ("--expiring 20d", "--exec-once 'systemctl reload x'", f"--passphrase-file {secret}"):
        assert words in hint


def test_a_moved_bundle_is_named_even_when_nothing_else_is_done(due) -> None:
    work, serials, env = due
    bulk(env, "--expiring", "30d")  # everything due is renewed
    (work / "later").rename(work / "elsewhere")
    quiet = run_certkit("renew", "--expiring", "300d", "--name", "later*", env=env)
    assert quiet.returncode == 0 and quiet.stdout == ""
    assert serials["later"] in quiet.stderr and "was not renewed" in quiet.stderr
    assert quiet.stderr.startswith("Warning: ") and len(quiet.stderr.strip().splitlines()) == 1


def test_certificates_never_in_a_folder_are_skipped_quietly_with_the_true_reason(tmp_path) -> None:
    """An ACME client's certificate and one handed to a program (the library, acme serve's own) are
    not bulk renewal's to renew, and were never written to standard output."""
    import datetime as dt

    from certkit.issuing import Target, deliver, server_request

    ca = backdated_ca(tmp_path / "ca")
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=35)

    class OverAcme(Target):
        sink = "acme"

    serials = {sink: deliver(ca, server_request([f"{sink}.example.com"], days=40, not_before=start),
                             target).issued.serial_hex for sink, target in (("acme", OverAcme()), ("memory", Target()))}
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    reasons = {o["serial"]: o["reason"] for o in bulk(env, "--expiring", "30d")["certificates"]
               if o["outcome"] == "skipped"}
    assert set(reasons) == set(serials.values())
    assert "issued over ACME" in reasons[serials["acme"]]
    assert "handed to a program" in reasons[serials["memory"]]
    assert not any("standard output" in r for r in reasons.values())
    cron = run_certkit("renew", "--expiring", "30d", env=env)
    assert (cron.returncode, cron.stdout) == (0, "")
    # the ACME one has 5 of its 40 days left, its client late to renew it (since audit 24, warned of): that alone
    assert cron.stderr.count("Warning: ") == 1 and serials["acme"] in cron.stderr, cron.stderr
    assert "should have renewed it" in cron.stderr and serials["memory"] not in cron.stderr
