"""Round twenty-seven, area serve2: verify's, check's and serve's words about dates, and staples, checked against
real peers (openssl s_server and s_client) on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from test_audit24_serve import _signed_by_ca

from conftest import PASSPHRASE, run_certkit

MOMENT = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC)"


def _first(pattern: str, text: str) -> str:
    found = re.search(pattern, text, re.M)
    assert found, (pattern, text)
    return found.group(1)


# --- 1. verify's reason gave the day alone where its own rows, inspect, probe and serve give the moment ------------
@pytest.mark.parametrize(("start", "days", "row", "reason"), [
    (-20, 10, rf"^  expired   {MOMENT} \(10 days ago\)$", rf"expired on {MOMENT} \(10 days ago\)"),
    (-10.2, 10, rf"^  expired   {MOMENT} \(less than a day ago\)$", rf"expired on {MOMENT} \(less than a day ago\)"),
    (5.5, 30, rf"^  valid from {MOMENT} \(in 6 days\)$", rf"not valid before {MOMENT} \(in 6 days\)")])
def test_verify_s_reason_says_the_moment_its_rows_say(ca_dir: Path, ca_env: dict, tmp_path: Path, start, days, row,
                                                      reason):
    """Before: 'reason    expired on 2026-11-24 (10 days ago)', under 'expired   2026-11-24 10:00:00 UTC (...)'."""
    leaf = _signed_by_ca(ca_dir, tmp_path / "leaf", days=days, start=start)
    proc = run_certkit("verify", leaf / "cert.pem", "--purpose", "server", env=ca_env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    said = _first(row, proc.stdout)
    assert _first(rf"^  reason    {reason}$", proc.stdout) == said
    assert proc.stderr.startswith("Error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert _first(rf": {reason}\.$", proc.stderr) == said


def _expired_ca(path: Path, *, start: float, days: float) -> dict:
    from certkit import CA
    from certkit.store import CADirectory

    from conftest import certkit_env

    now = dt.datetime.now(dt.UTC)
    ca = CA.create("certkit short-lived CA", not_before=now + dt.timedelta(days=start), days=days)
    CADirectory(path).save_new(ca, PASSPHRASE.encode())
    return certkit_env(CERTKIT_CA_DIR=str(path), CERTKIT_CA_PASSPHRASE=PASSPHRASE)


@pytest.mark.parametrize(("start", "days", "said"), [
    (-10, 5, rf"expired on {MOMENT} \(5 days ago\); it can issue nothing valid"),
    (-1, 3, rf"expires on {MOMENT}, in 47 hours\."),
    (3, 30, rf"is not valid before {MOMENT} \(in 3 days\); check the system clock")])
def test_check_says_a_ca_s_dates_to_the_second(tmp_path: Path, start, days, said):
    """Before: 'expired on 2026-11-29', 'expires on 2026-12-06, in 1 days', 'is not valid before 2026-12-07'."""
    env = _expired_ca(tmp_path / "ca", start=start, days=days)
    proc = run_certkit("check", env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    inspected = run_certkit("inspect", tmp_path / "ca" / "ca.pem", env=env).stdout
    moment = _first(said, proc.stdout + proc.stderr)
    assert moment in inspected, inspected
