"""Audit round ten, the contract line by line (report spec10), each as a class:

1. a certificate sent to standard output whose writer stopped before marking it (killed; or the inventory
   busy past its timeout) is settled abandoned, as nothing can look for it again, but it stays revocable
   and verify says it may have left: before, revoke refused it ("its key was never stored") while its key
   was in the output;
2. init-ca of an intermediate refuses a lifetime past its parent's and constraints wider than its parent's
   before any passphrase is asked for;
3. serve and acme serve say a port in use before the passphrase is asked for (or tried).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit


# --- 1. delivered to standard output, not marked --------------------------------------------------------------
def _killed_after_stdout(env, ca_dir, tmp_path, *args) -> bytes:
    """Run certkit ARGS into a file as standard output; once it wrote there, while another writer holds the
    inventory so that the mark waits, kill it. What it wrote is returned."""
    marker = tmp_path / "pause.marker"
    out_path = tmp_path / "delivered.out"
    env = dict(env, CERTKIT_TEST_PAUSE_AT="recorded", CERTKIT_TEST_PAUSE_FILE=str(marker))
    with open(out_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "certkit", *map(str, args)], stdout=out,
                                stderr=subprocess.PIPE, env=env)
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        db = sqlite3.connect(ca_dir / "inventory.sqlite3", isolation_level=None, timeout=30)
        db.execute("BEGIN EXCLUSIVE")  # another writer holds the inventory: the mark waits
        marker.unlink()
        while out_path.stat().st_size == 0:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        db.execute("ROLLBACK")
        db.close()
    return out_path.read_bytes()


@pytest.mark.parametrize("args", [("issue-client", "bob", "--format", "jsonl"),
                                  ("issue-server", "k8s.example", "--format", "k8s")])
def test_a_certificate_sent_to_stdout_stays_revocable(ca_dir, ca_env, tmp_path, args):
    delivered = _killed_after_stdout(ca_env, ca_dir, tmp_path, *args)
    assert b"PRIVATE KEY" in delivered or b"tls.key" in delivered
    # Round thirteen (integrity14 finding 1): pending, never "abandoned" (never delivered): it may have been.
    listed = json.loads(run_certkit("list", "--status", "pending", "--json", env=ca_env, check=True).stdout)
    (row,) = listed["certificates"]
    assert not json.loads(run_certkit("list", "--status", "abandoned", "--json", env=ca_env,
                                      check=True).stdout)["certificates"]
    if args[-1] == "jsonl":
        cert = tmp_path / "bob.pem"
        cert.write_text(json.loads(delivered.decode().splitlines()[0])["cert"])
        verdict = run_certkit("verify", cert, "--purpose", "client", env=ca_env)
        # signed, not revoked, and maybe in use: valid until revoked (below)
        assert verdict.returncode == 0 and "abandoned" not in verdict.stdout, verdict.stdout
    revoked = run_certkit("revoke", row["serial"], "--reason", "keyCompromise", "--json", env=ca_env)
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr
    from cryptography import x509

    crl = x509.load_pem_x509_crl(run_certkit("crl", env=ca_env, check=True).stdout.encode())
    assert crl.get_revoked_certificate_by_serial_number(int(row["serial"], 16)) is not None


def test_an_abandoned_bundle_folder_certificate_is_still_not_revocable(ca_dir, ca_env, tmp_path):
    """A folder is looked for: abandoned there means its key was never stored (the refusal stands)."""
    marker = tmp_path / "m"
    env = dict(ca_env, CERTKIT_TEST_PAUSE_AT="staged", CERTKIT_TEST_PAUSE_FILE=str(marker))
    proc = subprocess.Popen([sys.executable, "-m", "certkit", "issue-server", "f.example", "--out", tmp_path / "f"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not marker.exists():
        assert proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (row,) = json.loads(run_certkit("list", "--status", "abandoned", "--json", env=ca_env,
                                    check=True).stdout)["certificates"]
    assert_clean_error(run_certkit("revoke", row["serial"], env=ca_env), "never delivered")


# --- 2. an intermediate's limits before any passphrase ---------------------------------------------------------
@pytest.mark.parametrize(("extra", "fragment"), [(("--days", "5000"), "would end after parent CA"),
                                                 (("--permit-dns", "other.test"), "cannot be wider than its parent")])
def test_an_intermediates_limits_are_checked_before_any_passphrase(tmp_path, extra, fragment):
    env = certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--ca-dir", tmp_path / "root", "--name", "Limits Root", "--permit-dns", "example.test",
                env=env, check=True)
    # no passphrase for the new key, a wrong one for the parent: the limit is what is said
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "int", "--parent-ca-dir", tmp_path / "root", "--name",
                       "Limits Int", *extra, env=certkit_env(CERTKIT_PARENT_CA_PASSPHRASE="wrong wrong wrong"),
                       input="")
    assert_clean_error(proc, fragment)
    assert not (tmp_path / "int").exists()


# --- 3. a port in use before the passphrase ------------------------------------------------------------------------
@pytest.mark.parametrize("command", [("serve",), ("acme", "serve")])
def test_a_port_in_use_is_said_before_the_passphrase(ca_dir, tmp_path, command):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        env = certkit_env(CERTKIT_CA_DIR=str(ca_dir), CERTKIT_CA_PASSPHRASE="wrong wrong wrong")
        proc = run_certkit(*command, "--host", "127.0.0.1", "--port", taken.getsockname()[1], env=env, input="")
    finally:
        taken.close()
    assert_clean_error(proc, "Address already in use")
    assert "passphrase" not in proc.stderr
    assert json.loads(run_certkit("list", "--json", env=certkit_env(CERTKIT_CA_DIR=str(ca_dir)),
                                  check=True).stdout)["certificates"] == []
    assert os.path.isdir(ca_dir)
