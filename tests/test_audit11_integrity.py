"""The eleventh round's integrity findings (audit integrity11), each as a class:

1. a bundle folder is checked against the CA directories again as it is written, not only at the plan: a
   link in its path flipped meanwhile (while a passphrase is typed, by a deploy's "current" link) made
   ``--force`` write into an intermediate's directory and replace its ca.pem, with exit 0;
2. a cert.pem the disk fails to read even once is said as the disk's error, in bulk renewal (a failure,
   exit 1) and in a single renewal, never taken for a bundle deleted, replaced or renewed by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from acme_helpers import make_two_tier
from conftest import run_certkit
from integrity_helpers import start_paused


def test_a_link_flipped_before_the_write_never_lands_a_bundle_in_a_ca_directory(tmp_path: Path) -> None:
    top = tmp_path / "top"
    top.mkdir()
    _root, issuing, env = make_two_tier(top)
    (tmp_path / "safe").mkdir()
    (tmp_path / "lnk").symlink_to("safe")
    run_certkit("issue-server", "w.test", "--out", "lnk/issuing", env=env, cwd=tmp_path, check=True)
    before = (issuing / "ca.pem").read_bytes()
    marker = tmp_path / "paused"
    proc = start_paused(["issue-server", "w.test", "--out", "lnk/issuing", "--force"], env, tmp_path, "recorded",
                        marker)
    (tmp_path / "lnk.new").symlink_to("top")
    os.replace(tmp_path / "lnk.new", tmp_path / "lnk")  # the link now leads into the CA's own folder
    marker.unlink()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "Traceback" not in err, (out, err)
    assert err.startswith("Error: ") and "CA directory" in err, err
    assert (issuing / "ca.pem").read_bytes() == before
    assert not (issuing / "privkey.pem").exists() and not (issuing / "cert.pem").exists()
    assert run_certkit("check", env=env).returncode == 0  # the CA is whole, its inventory agrees


def _strace(args: list[str], broken: Path, env: dict, when: str) -> subprocess.CompletedProcess:
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    proc = subprocess.run([strace, "-f", "-qq", "-o", "/dev/null", "-P", str(broken), "-e", "trace=read",
                           "-e", f"inject=read:error=EIO:when={when}", sys.executable, "-m", "certkit", *args],
                          env=env, capture_output=True, text=True, timeout=120)
    if "ptrace" in proc.stderr and "Operation not permitted" in proc.stderr:
        pytest.skip("ptrace is not allowed here")
    return proc


def test_a_one_off_read_error_in_bulk_renewal_is_a_failure(ca_dir, ca_env, tmp_path: Path) -> None:
    for name in ("w", "v"):
        run_certkit("issue-server", f"{name}.test", "--out", tmp_path / name, env=ca_env, check=True)
    proc = _strace(["renew", "--all", "--json"], tmp_path / "w" / "cert.pem", ca_env, "1")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, (proc.returncode, proc.stderr)
    outcomes = json.loads(proc.stdout)["certificates"]
    failed = [o for o in outcomes if o["outcome"] == "failed"]
    assert len(failed) == 1 and "Input/output error" in failed[0]["error"] and "by hand" not in failed[0]["error"]
    assert [o["outcome"] for o in outcomes if o["outcome"] != "failed"] == ["renewed"]


@pytest.mark.parametrize("when", ["1", "3", "5"])
def test_a_one_off_read_error_in_a_single_renewal_is_said_as_such(ca_dir, ca_env, tmp_path: Path, when: str) -> None:
    run_certkit("issue-server", "w.test", "--out", tmp_path / "w", env=ca_env, check=True)
    before = (tmp_path / "w" / "cert.pem").read_bytes()
    proc = _strace(["renew", str(tmp_path / "w")], tmp_path / "w" / "cert.pem", ca_env, when)
    if proc.returncode == 0:  # the read this run failed was one the renewal does not need (it read again)
        assert (tmp_path / "w" / "cert.pem").read_bytes() != before
        return
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "Input/output error" in proc.stderr, proc.stderr
    assert "--force" not in proc.stderr and "another certkit command" not in proc.stderr, proc.stderr
    assert (tmp_path / "w" / "cert.pem").read_bytes() == before


def test_a_revocation_needs_no_readable_bundle(ca_dir, ca_env, tmp_path: Path) -> None:
    """revoke SERIAL of a certificate whose recorded folder the disk fails to read still revokes: a
    revocation needs no folder (regress15)."""
    run_certkit("issue-server", "w.test", "--out", tmp_path / "w", env=ca_env, check=True)
    serial = json.loads(run_certkit("list", "--json", env=ca_env, check=True).stdout)["certificates"][0]["serial"]
    proc = _strace(["revoke", serial, "--reason", "keyCompromise"], tmp_path / "w" / "cert.pem", ca_env, "1+")
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(run_certkit("list", "--status", "revoked", "--json", env=ca_env, check=True).stdout)
    listed = listed["certificates"]
    assert [c["status"] for c in listed if c["serial"] == serial] == ["revoked"]
