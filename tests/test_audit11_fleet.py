"""The eleventh round's fleet findings (audit fleet11), each as a class:

1. a systemctl command that fails while the timer is installed or removed is a failure: an ``Error:`` line,
   ``"ok": false``, exit 1, systemctl's own line (not a Python list) and the command left under "To finish,
   run"; and a failed ``disable --now`` removes nothing (the files gone, systemd would go on running the
   timer from memory, its enable link left dangling);
2. a single renewal's ``--exec`` hook gets ``RENEWED_DOMAINS`` as a bulk renewal's does;
3. the install-time warning about certificates each day's run would renew again counts only what the
   timer's runs select (its ``--name``; bundles in folders, not certificates delivered into files).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_fleet_timer import due  # noqa: F401 (a fixture)

from conftest import run_certkit
from fleet_helpers import bundle


@pytest.fixture
def failing_systemctl(tmp_path: Path, monkeypatch) -> Path:
    """A systemctl on PATH that fails as ``systemctl --user`` does without a user bus."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text("#!/bin/sh\necho 'Failed to connect to bus: No medium found' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return fake


def test_a_failed_systemctl_at_install_is_said_and_left_to_run(tmp_path: Path, failing_systemctl, capsys) -> None:
    from certkit import fleet
    from certkit.cli.fleet import _emit_timer

    change = fleet.install_timer(["renew", "--expiring", "30d"], description="t", directory=tmp_path / "units",
                                 manage=True)
    assert len(change.failed) >= 2 and not any("['" in f for f in change.failed)
    assert change.failed[0].endswith(": Failed to connect to bus: No medium found")
    assert any(todo.endswith("daemon-reload") for todo in change.todo)
    assert any("enable --now certkit-renew.timer" in todo for todo in change.todo)
    data: dict = {}
    with pytest.raises(SystemExit) as exc:
        _emit_timer(False, data, ["Wrote the daily renewal timer certkit-renew (user units):"], change, "not enabled")
    assert exc.value.code == 1 and data["ok"] is False
    err = capsys.readouterr().err
    assert err.startswith("Error: not enabled: ") and "Failed to connect to bus" in err


def test_a_failed_disable_removes_nothing(tmp_path: Path, failing_systemctl) -> None:
    from certkit import fleet
    from certkit.errors import CertkitError

    units = tmp_path / "units"
    fleet.install_timer(["renew", "--expiring", "30d"], description="t", directory=units, manage=False)
    written = sorted(p.name for p in units.iterdir())
    with pytest.raises(CertkitError, match="nothing was removed"):
        fleet.remove_timer(directory=units, manage=True)
    assert sorted(p.name for p in units.iterdir()) == written


def test_a_single_renewals_hook_gets_renewed_domains(due) -> None:  # noqa: F811
    tmp_path, secret, env = due
    out = tmp_path / "domains"
    proc = run_certkit("renew", tmp_path / "web", "--exec", f'echo "$RENEWED_DOMAINS" > {out}', "--passphrase-file",
                       secret, env=env)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().split() == ["web.example.com"]


def test_the_short_lives_warning_counts_only_what_the_timer_renews(due) -> None:  # noqa: F811
    from certkit import CADirectory

    tmp_path, secret, env = due
    ca = CADirectory(tmp_path / "ca").load(secret.read_text().strip())
    bundle(ca, tmp_path / "other", "other.example.com", days=10)
    run_certkit("issue-server", "j.example.com", "--days", "10", "--format", "jsonl", "--out", tmp_path / "j.jsonl",
                env=env | {"CERTKIT_CA_PASSPHRASE": secret.read_text().strip()}, check=True)
    args = ["renew", "--install-timer", "--expiring", "30d", "--passphrase-file", secret]
    for_db = run_certkit(*args, "--name", "db*", "--unit-dir", tmp_path / "u1", env=env)
    assert for_db.returncode == 0, for_db.stderr
    assert "live no more than a day longer" not in for_db.stderr and "lives no more" not in for_db.stderr
    every = run_certkit(*args, "--name", "*.example.com", "--unit-dir", tmp_path / "u2", env=env)
    assert "1 valid certificate lives no more than a day longer" in every.stderr, every.stderr  # not j's jsonl


def test_bulk_rekey_says_which_kept_their_key(tmp_path: Path) -> None:
    """--rekey renews a CSR's bundle with its requester's key (certkit holds no other): said per certificate
    and in the header, not "(new keys)" for every one."""
    import json
    import subprocess

    from conftest import certkit_env

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE="a long pass phrase")
    run_certkit("init-ca", "--name", "Rekey CA", env=env, check=True)
    run_certkit("issue-server", "own.example", "--out", tmp_path / "own", env=env, check=True)
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", tmp_path / "csr.key", "-subj", "/CN=csr.example", "-addext",
                    "subjectAltName=DNS:csr.example", "-out", tmp_path / "r.csr"], check=True, capture_output=True)
    run_certkit("sign-csr", tmp_path / "r.csr", "--server", "--out", tmp_path / "csr", env=env, check=True)
    data = json.loads(run_certkit("renew", "--all", "--rekey", "--json", env=env, check=True).stdout)
    keys = {o["folder"].rsplit("/", 1)[-1]: o["new_key"] for o in data["certificates"]}
    assert keys == {"own": True, "csr": False}, data
    text = run_certkit("renew", "--all", "--rekey", env=env, check=True).stdout
    assert "1 kept their key, held by the CSR's requester" in text, text
