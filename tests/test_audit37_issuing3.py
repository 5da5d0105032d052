"""Round 37, issuing pipeline (the promise: nothing is written where the user did not say, nothing left behind).

1. issue-batch checks that no line writes outside --out-dir when it checks the manifest; the out-dir (or a folder
   below it) replaced afterwards by a link to another folder of the same user was followed as the bundles were
   written, private keys and all, and recorded valid there. Each folder is now checked again as it is written
   against where --out-dir led at the check.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import run_certkit
from integrity_helpers import interrupt, listed, start_paused


# --- 1. a batch's folders stay inside --out-dir as they are written ---------------------------------------------
@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize("swapped", ["out", "out/sub"])
def test_a_batch_folder_sent_out_of_its_out_dir_after_the_plan_is_refused_as_it_is_written(ca_dir, ca_env, tmp_path,
                                                                                             jobs, swapped):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("the user's own\n")
    (tmp_path / "m.csv").write_text("kind,names,out\nserver,web.example,sub/web\nserver,api.example,sub/api\n")
    (tmp_path / "out" / "sub").mkdir(parents=True)
    proc = start_paused(["issue-batch", "m.csv", "--out-dir", "out", "--jobs", jobs], ca_env, tmp_path, "recorded",
                        tmp_path / "pause")
    (tmp_path / swapped).rename(tmp_path / "planned")
    (tmp_path / swapped).symlink_to(elsewhere)
    outcome = interrupt(proc, 0, tmp_path / "pause")  # (signal 0: the pause released, nothing sent)

    assert outcome.returncode == 1 and "Traceback" not in outcome.stderr, outcome
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: The output folder out/sub/"), lines
    assert "leads outside the batch's output folder out now" in lines[0], lines
    assert "stopped after 0 bundles were written" in lines[0], lines
    # was: elsewhere/web (or elsewhere/sub/web) and api with their privkey.pem, recorded valid there
    assert sorted(p.relative_to(elsewhere).as_posix() for p in elsewhere.rglob("*")) == ["notes.txt"]
    rows = listed(ca_env)
    assert [r for r in rows if r["status"] in ("valid", "pending") and r["kind"] != "ca"] == [], rows
    run_certkit("check", env=ca_env, check=True)


def test_a_batch_whose_out_dir_is_a_link_from_the_start_still_writes_there(ca_dir, ca_env, tmp_path):
    """The check is against where --out-dir led at the plan: an out-dir that is a link all along is written."""
    (tmp_path / "real").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "real")
    (tmp_path / "m.csv").write_text("kind,names,out\nserver,web.example,web\n")
    proc = run_certkit("issue-batch", "m.csv", "--out-dir", "out", cwd=tmp_path, env=ca_env)
    assert proc.returncode == 0, proc.stderr
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(ca_dir / "ca.pem"),
                             str(tmp_path / "real" / "web" / "cert.pem")], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    assert [r["status"] for r in listed(ca_env) if r["kind"] != "ca"] == ["valid"]
    assert Path(tmp_path / "real" / "web" / "privkey.pem").stat().st_mode & 0o777 == 0o600
