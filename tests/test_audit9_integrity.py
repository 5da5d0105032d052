"""Audit round nine, the pipeline that never lies nor destroys (report integrity9):

1. ``--force`` over a jsonl, k8s or tar file, killed once the new file is in place: the certificates the old
   file held stayed recorded "in" it (their keys gone with it). The next command, settling the killed
   command's rows, now finds they are not in the file and says so in their rows; and an inventory that
   fails while recording it says the file was replaced and which certificates went with it;
2. ``serve`` and ``acme serve`` put their own certificate's key in a temporary file, which a kill left on
   disk (the inventory calling it "never stored"): the key now never touches a disk (a memory file);
3. ``trust install --nss`` stopped while certutil creates the database removes what this run made.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import PASSPHRASE, certkit_env, free_port, require, run_certkit, wait_listening
from integrity_helpers import interrupt, start_paused


def _row(ca_dir: Path, serial: str) -> dict:
    from certkit.store import CADirectory

    return dict(CADirectory(ca_dir).inventory.get(serial))


# --- 1. a replaced output file's old rows ----------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["jsonl", "k8s", "tar"])
@pytest.mark.parametrize("command", ["issue-server", "issue-batch"])
def test_a_force_killed_once_the_file_is_placed_still_releases_the_old_rows(fmt, command, ca_dir, ca_env, tmp_path):
    out = tmp_path / f"f.{fmt}"
    old = json.loads(run_certkit("issue-server", "s1.test", "--format", fmt, "--out", out, "--json", env=ca_env,
                                 check=True).stdout)["serial"]
    if command == "issue-server":
        args = ["issue-server", "s2.test", "--format", fmt, "--out", out, "--force"]
    else:
        manifest = tmp_path / "m.csv"
        manifest.write_text("kind,names\nserver,s2.test\nserver,s3.test\n")
        args = ["issue-batch", manifest, "--format", fmt, "--out", out, "--force"]
    proc = start_paused(args, ca_env, tmp_path, "placed", tmp_path / "marker")
    interrupt(proc, signal.SIGKILL, tmp_path / "marker")
    assert _row(ca_dir, old)["folder"] == str(out)  # as the kill left it: the lie this fixes
    run_certkit("list", env=ca_env, check=True)  # settles the killed command's rows
    row = _row(ca_dir, old)
    assert row["status"] == "valid" and row["folder"] is None, row  # still valid (revocable), not "in" the file
    from certkit.store import CADirectory

    named = CADirectory(ca_dir).inventory.rows("WHERE folder = ? AND status = 'valid'", (str(out),))
    assert named and {r["serial"] for r in named}.isdisjoint({old}), named
    assert "s1.test" not in out.read_bytes().decode("latin-1")


def test_a_release_the_inventory_cannot_record_says_what_went_with_the_file(tmp_path):
    from contextlib import contextmanager

    from certkit.errors import InventoryError
    from certkit.formats.recorded import release

    class Failing:  # an inventory whose disk fails as the release is written (strace's EIO, in words)
        @contextmanager
        def transaction(self, write=False):
            raise InventoryError("The inventory /x/inventory.sqlite3 cannot be used: disk I/O error.")
            yield

    with pytest.raises(InventoryError) as failed:
        release(Failing(), tmp_path / "f.jsonl", ["AB12", "CD34"])
    said = str(failed.value)
    assert said.startswith("The inventory /x/inventory.sqlite3 cannot be used: disk I/O error. ")
    assert f"{tmp_path / 'f.jsonl'} was replaced and holds what this command issued" in said
    assert "the 2 certificate(s) it held before (AB12, CD34), whose keys went with the old file" in said


# --- 2. serve's and acme serve's own key never on disk --------------------------------------------------
def _files_created(log: Path, under: Path) -> list[str]:
    made = []
    for line in log.read_text(errors="replace").splitlines():
        if "O_CREAT" in line and str(under) in line:
            made.append(line)
    return made


@pytest.mark.parametrize("command", ["serve", "acme"])
def test_serve_and_acme_serve_never_write_their_key_to_a_file(command, ca_dir, ca_env, tmp_path):
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    log = tmp_path / "strace.log"
    port = free_port()
    args = ["serve", "--port", str(port)] if command == "serve" else \
        ["acme", "serve", "--port", str(port), "--allow-domain", "internal.test"]
    env = dict(ca_env, TMPDIR=str(tmp), HOME=str(tmp_path))
    proc = subprocess.Popen([strace, "-f", "-qq", "-o", str(log), "-e", "trace=openat,open,creat",
                             sys.executable, "-m", "certkit", *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_listening(port, proc, command)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # killed as a power cut would: nothing is left to clean up
        proc.communicate(timeout=30)
    if "ptrace" in log.read_text(errors="replace") and "Operation not permitted" in log.read_text(errors="replace"):
        pytest.skip("ptrace is not allowed here")
    assert _files_created(log, tmp) == [], _files_created(log, tmp)
    assert list(tmp.iterdir()) == []


# --- 3. trust install --nss stopped while certutil creates the database -----------------------------------
def test_trust_install_stopped_while_the_database_is_made_leaves_none(ca_dir, ca_env, tmp_path):
    real = require("certutil")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    started = tmp_path / "creating"
    wrapper = bin_dir / "certutil"
    # The real certutil, which takes a while to make the database (as on a slow disk), so that the stop lands
    # while it does.
    wrapper.write_text(f'#!/bin/sh\ncase " $* " in *" -N "*) "{real}" "$@"; touch "{started}"; exec sleep 30;; '
                       f'*) exec "{real}" "$@";; esac\n')
    wrapper.chmod(stat.S_IRWXU)
    home = tmp_path / "home"
    home.mkdir()
    env = certkit_env(HOME=str(home), CERTKIT_CA_DIR=str(ca_dir), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.Popen([sys.executable, "-m", "certkit", "trust", "install", "--nss", "--unconstrained"],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while not started.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "certutil -N never ran"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err, (proc.returncode, out, err)
    assert not (home / ".pki" / "nssdb").exists(), list((home / ".pki" / "nssdb").iterdir())
