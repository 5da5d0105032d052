"""Round 31, renew (issue 13): the timer's refusals say what is wrong, and every --json report of
--install-timer / --remove-timer has the same keys, whatever it did. Never touches this machine's
systemd folders: units go to temporary folders (CERTKIT_SYSTEMD_SYSTEM_DIR, --unit-dir)."""

from __future__ import annotations

import json

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit
from fleet_helpers import backdated_ca, bundle


@pytest.fixture
def due(tmp_path):
    """A CA with one bundle due, its passphrase in a 0600 file, an environment without a passphrase."""
    ca = backdated_ca(tmp_path / "ca")
    bundle(ca, tmp_path / "web", "web.example.com", days=40, age=35)
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_SYSTEMD_SYSTEM_DIR=str(tmp_path / "system"),
                      XDG_CONFIG_HOME=str(tmp_path / "config"))
    return tmp_path, secret, env


@pytest.mark.parametrize("name, said", [
    ("x" * 202, "202 characters long; give at most 201"),
    ("-x", "begin it with a letter or a digit, not '-'"),
    (".hidden", "begin it with a letter or a digit, not '.'"),
    ("_x", "begin it with a letter or a digit, not '_'"),
    ("nightly.timer", "without .timer or .service"),
    ("nightly.service", "without .timer or .service"),
    ("a/b", "use letters, digits, '-', '_' and '.'"),
    ("a@b", "use letters, digits, '-', '_' and '.'"),
])
def test_a_timer_name_systemd_cannot_take_is_refused_saying_why(due, name, said):
    """'-x' or a 202-character name is made of letters, digits and '-' only, yet was refused with 'use
    letters, digits, '-', '_' and '.'': the refusal said nothing of what was wrong. Installing and
    removing both say it, and nothing is written."""
    tmp_path, secret, env = due
    units = tmp_path / "units"
    for args in (["--install-timer", "--passphrase-file", secret], ["--remove-timer"]):
        proc = run_certkit("renew", *args, "--unit-dir", units, "--timer-name", name, env=env)
        assert_clean_error(proc, "cannot name a systemd unit")
        assert said in proc.stderr, proc.stderr
    assert not units.exists()
    longest = "x" * 201  # the longest name taken
    run_certkit("renew", "--install-timer", "--passphrase-file", secret, "--unit-dir", units, "--timer-name",
                longest, env=env, check=True)
    assert {p.name for p in units.iterdir()} == {longest + ".service", longest + ".timer"}


def test_every_timer_json_report_says_ok_and_notes(due):
    """--remove-timer --json with no timer to remove printed {"removed": [], "ran": [], ...} without the
    "ok" and "notes" a removal has (a script reading .ok got nothing), and --install-timer --cron --json
    had no "ok" either. Each report has them now."""
    tmp_path, secret, env = due
    units = tmp_path / "units"
    installed = json.loads(run_certkit("renew", "--install-timer", "--passphrase-file", secret, "--unit-dir", units,
                                       "--json", env=env, check=True).stdout)
    removed = json.loads(run_certkit("renew", "--remove-timer", "--unit-dir", units, "--json", env=env,
                                     check=True).stdout)
    nothing = run_certkit("renew", "--remove-timer", "--unit-dir", units, "--json", env=env, check=True)
    absent = json.loads(nothing.stdout)
    assert installed["ok"] is True and removed["ok"] is True and removed["removed"]
    assert absent["ok"] is True and absent["removed"] == [] and absent["notes"] == []
    assert set(absent) == set(removed), (absent, removed)
    cron = json.loads(run_certkit("renew", "--install-timer", "--cron", "--passphrase-file", secret, "--json",
                                  env=env, check=True).stdout)
    assert cron["ok"] is True and cron["notes"] == [] and cron["systemd"] is False and "renew" in cron["crontab"]
