"""A batch checks the folders above its new bundle folders once per folder above, not once per line (issue 13:
the folder format's own CPU time, a third of which was these checks): what the checks refuse must still be refused
for every line it concerns, and a folder found fine must never stand in for another one.

Each test runs the batch through the CLI, both with one job and with the check and issuing forked into two, and
compares what was refused and what is on disk and in the inventory."""

from __future__ import annotations

import json
import os

import pytest

from conftest import new_ca, run_certkit


def _manifest(tmp_path, lines: list[tuple[str, str]]):
    path = tmp_path / "m.csv"
    # enough bytes for the check to run in forked processes (PARALLEL_FROM_BYTES) with --jobs 2
    padding = [(f"pad{i}.example.test", f"ok/pad{i}") for i in range(1200)]
    path.write_text("kind,names,out\n" + "".join(f"server,{name},{out}\n" for name, out in [*lines, *padding]))
    return path


def _refused_lines(stderr: str) -> list[int]:
    return sorted(int(line.split(" line ")[1].split(":")[0]) for line in stderr.splitlines()
                  if " line " in line and ":" in line.split(" line ")[1])


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_each_line_below_a_folder_every_user_controls_is_refused_and_the_fine_folder_next_to_it_is_not(tmp_path, jobs):
    env = new_ca(tmp_path, "Folder checks CA")
    out = tmp_path / "out"
    (out / "shared").mkdir(parents=True)
    (out / "shared").chmod(0o777)  # no sticky bit: every user may move what certkit makes there
    (out / "ok").mkdir()
    (out / "afile").write_text("not a folder\n")
    lines = [("a1.example.test", "ok/a1"), ("s1.example.test", "shared/s1"), ("a2.example.test", "ok/a2"),
             ("s2.example.test", "shared/s2"), ("f1.example.test", "afile/f1"), ("s3.example.test", "shared/s3"),
             ("f2.example.test", "afile/f2")]
    manifest = _manifest(tmp_path, lines)
    proc = run_certkit("issue-batch", manifest, "--out-dir", out, "--jobs", jobs, env=env)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    # lines 3, 5 and 7 (shared/), 6 and 8 (below a file): each refused, none of the lines into ok/
    assert _refused_lines(proc.stderr) == [3, 5, 6, 7, 8], proc.stderr
    assert proc.stderr.count("is writable by every user") == 3, proc.stderr
    assert "has 5 bad lines; nothing was issued." in proc.stderr, proc.stderr
    assert sorted(os.listdir(out / "ok")) == [] and sorted(os.listdir(out / "shared")) == []
    assert json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["total"] == 0  # nothing signed

    # with the folder made safe (the sticky bit, as /tmp) and the file out of the way, the same batch issues
    # every line, each bundle complete in its own folder
    (out / "shared").chmod(0o1777)
    (out / "afile").unlink()
    proc = run_certkit("issue-batch", manifest, "--out-dir", out, "--jobs", jobs, "--json", env=env, check=True)
    assert json.loads(proc.stdout)["issued"] == len(lines) + 1200
    for _name, place in lines:
        assert sorted(os.listdir(out / place)) == ["ca.pem", "cert.pem", "fullchain.pem", "privkey.pem"], place
        assert (out / place / "privkey.pem").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_batch_line_that_is_the_home_folder_is_refused_among_lines_that_are_not(tmp_path, jobs):
    env = new_ca(tmp_path, "Folder checks home CA")
    home = tmp_path / "out" / "home"
    home.mkdir(parents=True)
    env["HOME"] = str(home)
    manifest = _manifest(tmp_path, [("h1.example.test", "home/h1"), ("h2.example.test", "home"),
                                    ("h3.example.test", "home/h3")])
    proc = run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "out", "--jobs", jobs, env=env)
    assert _refused_lines(proc.stderr) == [3], proc.stderr
    assert "is your home folder" in proc.stderr, proc.stderr
    assert os.listdir(home) == []
