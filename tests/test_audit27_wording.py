"""Audit 27, wording: one case said one way across commands.

1. ``renew --remove-timer --unit-dir X`` where X cannot be a folder (a FIFO, /dev/null, a dangling link, a path
   below a file) said "No certkit-renew timer to remove in X." and exited 0, while ``--install-timer`` with the
   same X is refused ("X is not a folder"). A --unit-dir that cannot be a folder is a mistake on both sides: remove
   refuses it now, naming what is there, as install does.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import assert_clean_error, run_certkit

IN_THE_WAY = {
    "fifo": ("fifo", "fifo is not a folder"),
    "devnull": ("/dev/null", "/dev/null is not a folder"),
    "dangling": ("dangling", "dangling is a symbolic link to nothing, not a folder"),
    "below-a-file": ("file/x", "file is a file, not a folder"),
}


def _in_the_way(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")


@pytest.mark.parametrize("case", sorted(IN_THE_WAY))
def test_a_unit_dir_that_cannot_be_a_folder_is_refused_by_remove_as_by_install(tmp_path, ca_dir, ca_env, case):
    _in_the_way(tmp_path)
    given, said = IN_THE_WAY[case]
    env = {**ca_env, "HOME": str(tmp_path / "home")}
    secret = tmp_path / "passphrase"
    secret.touch(0o600)
    secret.write_text(ca_env["CERTKIT_CA_PASSPHRASE"])
    before = sorted(os.listdir(tmp_path))
    for action, *more in (("--install-timer", "--passphrase-file", secret), ("--remove-timer",)):
        verb = "write" if more else "remove"
        proc = run_certkit("renew", action, *more, "--unit-dir", given, cwd=tmp_path, env=env)
        assert_clean_error(proc, f"Cannot {verb} the timer units")
        assert said in proc.stderr and "nothing there was changed" in proc.stderr, proc.stderr
    assert sorted(os.listdir(tmp_path)) == before


def test_remove_timer_still_finds_nothing_to_remove_in_a_folder_or_a_new_path(tmp_path, ca_dir, ca_env):
    (tmp_path / "units").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "units")
    env = {**ca_env, "HOME": str(tmp_path / "home")}
    for given in ("units", "linked", "missing/below"):
        proc = run_certkit("renew", "--remove-timer", "--unit-dir", given, cwd=tmp_path, env=env)
        assert proc.returncode == 0 and "No certkit-renew timer to remove" in proc.stdout, proc.stderr
    assert not (tmp_path / "missing").exists()
