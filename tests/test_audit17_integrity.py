"""The seventeenth round's integrity findings (audit integrity, round seventeen): what the one issuing
pipeline says and leaves when the disk, a signal or a second command gets in its way.

1. ``issue-batch`` (``--sync chunk``, the default) made each chunk durable with ``sync()``, which reports
   nothing: a disk that failed to write a chunk back (an I/O error on write-back) was never heard of, the
   chunk's certificates were marked valid and the batch said it issued them all, exit 0. Now each chunk is
   flushed with ``syncfs()`` on each file system its folders are on, through a folder opened before the chunk
   is written (so that a write-back error of any of its files is reported there): such an error stops the
   batch with one ``Error:`` line that says the disk failed to store what was written, how many bundles were
   written and recorded, and to rerun with ``--resume``.
2. ``certkit serve`` killed outright (SIGKILL) leaves its own certificate valid, its key gone with the process,
   until the next ``serve`` or ``acme serve`` on the host revokes it (round fourteen's design, documented).
   Meanwhile ``certkit check`` said every check passed and named nothing. It now names that certificate in a
   warning, with the revoke command that retires it at once; a serve that still runs is never named.
3. Before signing, every command that writes (issue-*, sign-csr, renew --out, issue-batch, crl --out, init-ca, the
   jsonl/k8s/tar outputs) made sure a file can be made where it will write, by creating
   ``.probe.PID-RANDOM.certkit-tmp`` there and removing it. Killed in between, it left that file in the user's
   folder (the current folder, the output folder's parent, an existing bundle folder), where no later command
   removed it (the sweeps look for the temporaries of the name being written): ``list`` and ``check`` came back
   clean over it, and an ``init-ca`` run again beside it left it too. The file is now made unnamed (Linux
   ``O_TMPFILE``), so a kill leaves nothing; a named one is made only where the file system cannot (``/proc``).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PASSPHRASE, free_port, new_ca, openssl, run_certkit
from integrity_helpers import assert_inventory_matches_disk, bundles_under
from serve_process import ServeProcess


def _strace() -> str:
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    return strace


def _manifest(path: Path, count: int) -> Path:
    path.write_text("kind,names\n" + "".join(f"server,h{i}.example\n" for i in range(1, count + 1)))
    return path


# --- 1. a chunk the disk fails to flush ---------------------------------------------------
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_chunk_the_disk_fails_to_flush_stops_the_batch_and_says_so(tmp_path: Path, jobs: str) -> None:
    env = new_ca(tmp_path, "Flush CA") | {"CERTKIT_TEST_CHUNK_SIZE": "2"}
    manifest, out = _manifest(tmp_path / "fleet.csv", 5), tmp_path / "out"
    # Every flush the batch can make fails as a disk failing its write-back does: syncfs() says EIO; sync()
    # (which returns nothing to its caller) is failed too, so a batch that syncs with it hears of nothing.
    proc = subprocess.run([_strace(), "-f", "-qq", "-o", "/dev/null", "-e", "trace=syncfs,sync",
                           "-e", "inject=syncfs:error=EIO", "-e", "inject=sync:error=EIO",
                           sys.executable, "-m", "certkit", "issue-batch", str(manifest), "--out-dir", str(out),
                           "--jobs", jobs], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: The disk under "), proc.stderr
    assert "failed to store what was just written to it (input/output error" in lines[0], lines[0]
    assert "may be damaged or lost if the machine stops before that disk recovers" in lines[0], lines[0]
    assert "Rerun the same command with --resume" in lines[0], lines[0]
    written = len(bundles_under(out))
    assert written < 5  # the batch stopped at the chunk the disk failed
    if jobs == "1":
        assert written == 2 and "The batch stopped after 2 bundles were written and recorded." in lines[0], lines
    assert_inventory_matches_disk(env, tmp_path / "ca", out)
    again = run_certkit("issue-batch", manifest, "--out-dir", out, "--resume", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert len(bundles_under(out)) == 5
    assert_inventory_matches_disk(env, tmp_path / "ca", out)


def test_a_batch_the_disk_flushes_is_unchanged(tmp_path: Path) -> None:
    """The guard beside it: syncfs() that works (one per chunk) leaves the batch as it was."""
    env = new_ca(tmp_path, "Flush CA") | {"CERTKIT_TEST_CHUNK_SIZE": "2"}
    manifest, out = _manifest(tmp_path / "fleet.csv", 5), tmp_path / "out"
    trace = tmp_path / "trace.txt"
    proc = subprocess.run([_strace(), "-f", "-qq", "-o", str(trace), "-e", "trace=syncfs,sync", sys.executable, "-m",
                           "certkit", "issue-batch", str(manifest), "--out-dir", str(out), "--jobs", "1"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    calls = trace.read_text().splitlines()
    assert len([c for c in calls if "syncfs(" in c and "= 0" in c]) == 3, calls  # one per chunk of 2, 2, 1
    assert not [c for c in calls if c.split("(")[0].split()[-1] == "sync"], calls
    assert len(bundles_under(out)) == 5
    assert_inventory_matches_disk(env, tmp_path / "ca", out)


# --- 2. the certificate of a serve killed outright ----------------------------------------
def _check(env: dict) -> tuple[int, list[dict]]:
    proc = run_certkit("check", "--json", env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)["findings"]


@pytest.mark.both_inventories
def test_check_names_the_certificate_a_killed_serve_left_valid(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    (tmp_path / "home").mkdir()
    env = ca_env | {"HOME": str(tmp_path / "home")}
    with ServeProcess("--host", "127.0.0.1", "--port", str(free_port()), env=env, cwd=tmp_path) as running:
        serial = running.info["server_certificate"]["serial"]
        code, findings = _check(env)  # a serve that runs holds its key: nothing to say
        assert code == 0 and not [f for f in findings if f["check"] == "serve"], findings
        running.stop(signal.SIGKILL)
    code, findings = _check(env)
    assert code == 0, findings  # a warning, not a failure
    (warning,) = [f for f in findings if f["check"] == "serve"]
    assert warning["level"] == "warning", warning
    assert serial in warning["message"] and "killed outright on this host" in warning["message"], warning
    assert "its key died with it" in warning["message"], warning
    command = f"certkit revoke {serial} --reason cessationOfOperation"
    assert command in warning["message"], warning
    rows = {r["serial"]: r for r in json.loads(run_certkit("list", "--json", env=env, check=True).stdout)
            ["certificates"]}
    assert rows[serial]["status"] == "valid"  # as documented: until revoked, by the command or the next serve
    run_certkit(*command.split()[1:], env=env, check=True)  # the warning's own command retires it
    code, findings = _check(env)
    assert code == 0 and not [f for f in findings if f["check"] == "serve"], findings
    crl = tmp_path / "crl.pem"
    run_certkit("crl", "--out", str(crl), env=env, cwd=tmp_path, check=True)
    text = openssl("crl", "-in", str(crl), "-text", "-noout").stdout.decode().replace(":", "").upper()
    assert serial.upper() in text and "CESSATION OF OPERATION" in text, text


# --- 3. the probe a kill left behind ------------------------------------------------------
@pytest.mark.parametrize("command", [
    ["issue-server", "w.example", "--out", "out/w"],
    ["issue-server", "a.example", "--out", "a", "--force"],
    ["crl", "--out", "pub/crl.pem"],
    ["init-ca", "--ca-dir", "ica", "--parent-ca-dir", "ca", "--name", "Issuing CA", "--no-passphrase"],
], ids=["issue-server", "force", "crl", "intermediate"])
def test_a_kill_right_after_the_writability_check_leaves_no_file(tmp_path: Path, command: list[str]) -> None:
    env = new_ca(tmp_path, "Probe CA") | {"CERTKIT_PARENT_CA_PASSPHRASE": PASSPHRASE}
    run_certkit("issue-server", "a.example", "--out", "a", cwd=tmp_path, env=env, check=True)
    (tmp_path / "out").mkdir()
    (tmp_path / "pub").mkdir()
    for when in (1, 2):  # the first removals a command makes: the probe's, where it makes one
        proc = subprocess.run([_strace(), "-f", "-qq", "-o", "/dev/null", "-e", "trace=unlink,unlinkat", "-e",
                               f"inject=unlink,unlinkat:signal=KILL:when={when}", sys.executable, "-m", "certkit",
                               *command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == -signal.SIGKILL, (when, proc.returncode, proc.stderr)
        run_certkit("list", cwd=tmp_path, env=env, check=True)  # settles what the kill left pending
        left = [p for p in tmp_path.rglob("*") if ".probe." in p.name]
        assert not left, (when, left)
    again = run_certkit(*command, cwd=tmp_path, env=env)  # done, or refused (the killed one got there first)
    assert "Traceback" not in again.stderr, again.stderr
    assert not [p for p in tmp_path.rglob("*") if ".probe." in p.name]
