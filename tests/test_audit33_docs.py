"""Round 33, docs: the prose today's changes wrote, checked by running certkit as each page says.

1. docs/renew.md: 'Every `--json` report of `renew` (one certificate, a bulk renewal, `--install-timer`,
   `--remove-timer`) has `"ok"` ... and `"notes"` (what the run as a whole warns of ...)'. --install-timer warned
   on standard error (a certificate the timer would renew each day, bundle.p12 files its renewals remove,
   certificates delivered into output files that no run renews) and its --json had `"notes": []`.
"""

from __future__ import annotations

import json

from test_fleet_timer import due  # noqa: F401 (a CA with one bundle due in 5 days, its passphrase in a file)

from conftest import REPO, run_certkit

RENEW_MD = (REPO / "docs" / "renew.md").read_text(encoding="utf-8")


def _issue(tmp_path, secret, env, *args: str) -> None:
    run_certkit(*args, "--passphrase-file", secret, cwd=tmp_path, env=env, check=True)


def test_install_timer_json_notes_hold_what_the_install_warns_of(due):  # noqa: F811
    tmp_path, secret, env = due
    assert 'has\n`"ok"`' in RENEW_MD and '`"notes"` (what the run as a whole warns of' in RENEW_MD
    pw = tmp_path / "p12pw"
    pw.write_text("p12 secret\n")
    pw.chmod(0o600)
    _issue(tmp_path, secret, env, "issue-server", "short.example.com", "--days", "20")  # due again every day
    _issue(tmp_path, secret, env, "issue-server", "p12.example.com", "--p12", "--p12-password-file", str(pw))
    _issue(tmp_path, secret, env, "issue-server", "line.example.com", "--format", "jsonl", "--out",
           str(tmp_path / "out.jsonl"))
    args = ["renew", "--install-timer", "--passphrase-file", secret, "--json"]
    for extra in (["--unit-dir", tmp_path / "units"], ["--cron"]):  # units written; a crontab line printed instead
        proc = run_certkit(*args, *extra, env=env, subprocess=True)
        assert proc.returncode == 0, proc
        data = json.loads(proc.stdout)
        warned = [line.removeprefix("Warning: ") for line in proc.stderr.splitlines() if line.startswith("Warning:")]
        assert len(warned) == 3, proc.stderr
        assert data["ok"] is True and data["notes"] == warned, (data["notes"], proc.stderr)
        notes = " ".join(data["notes"])
        assert "short.example.com" not in notes  # the serial names it; the three kinds of warning are there:
        for said in ("no more than a day longer than the renewal window", "remove the bundle.p12",
                     "delivered with --format jsonl, k8s or tar"):
            assert said in notes, notes


def test_a_single_peer_renewal_json_notes_hold_its_peer_warning(due):  # noqa: F811
    """A bulk renewal's --json "notes" hold the peer warning it says on standard error; `renew FOLDER --json` of a
    peer certificate said the same warning and had "notes": []. Its notes now begin with it; a server's stay []."""
    tmp_path, secret, env = due
    _issue(tmp_path, secret, env, "issue-peer", "node1.example", "--days", "40")
    for target, extra in (("node1.example", []), ("node1.example", ["--out", str(tmp_path / "moved")]),
                          ("web", [])):
        proc = run_certkit("renew", tmp_path / target, *extra, "--passphrase-file", secret, "--json", env=env,
                           subprocess=True)
        assert proc.returncode == 0, proc
        data = json.loads(proc.stdout)
        warned = [line.removeprefix("Warning: ") for line in proc.stderr.splitlines() if line.startswith("Warning:")]
        assert data["ok"] is True and data["notes"][:len(warned)] == warned, (data["notes"], proc.stderr)
        assert len(warned) == (target != "web") and all("peer certificate carries both" in w for w in warned)


def test_readme_command_table_names_verify_purpose_peer() -> None:
    """Today's verify --purpose peer (docs/verify.md, issue-peer.md, peers.md) was missing from README.md's
    command table, which names each command's chief options (renew's --expiring)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    [row] = [line for line in readme.splitlines() if line.startswith("| `certkit verify CERT` |")]
    assert "`--purpose peer`" in row and "both sides" in row, row
    assert "peer" in run_certkit("verify", "--help").stdout
