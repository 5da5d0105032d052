"""Round 32, renew (issue 13): every --json report of renew has "ok" (agreeing with the exit status) and
"notes"; a --days no selected certificate may have is one usage error before anything; the bulk summary says
moved bundles apart from certificates delivered elsewhere; installing the same timer again says nothing
changed. Units go to temporary folders only (--unit-dir, CERTKIT_SYSTEMD_SYSTEM_DIR)."""

from __future__ import annotations

import json

from test_fleet_timer import due  # noqa: F401 (a CA with one bundle due in 5 days, its passphrase in a file)

from conftest import openssl, run_certkit


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
