"""Audit round nine against the spec (report spec9):

1. a Ctrl-C while probe waits for a TLS handshake is "Interrupted.", exit 130, with no traceback: raised inside
   pyOpenSSL's callbacks, it was printed by cffi and swallowed, and the handshake was said to have timed out;
2. ``trust uninstall --nss`` takes out the NSS database ``trust install`` created, once it holds nothing else
   (exactly reversible, as the spec says); a database holding anything else stays.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

from conftest import certkit_env


def test_a_ctrl_c_during_probes_handshake_is_interrupted_not_a_timeout():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:  # a server that accepts and never speaks TLS, as a hung or firewalled one does
        proc = subprocess.Popen([sys.executable, "-m", "certkit", "probe", f"https://127.0.0.1:{port}/",
                                 "--timeout", "30"], env=certkit_env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        listener.settimeout(30)
        conn, _ = listener.accept()
        conn.settimeout(30)
        assert conn.recv(1) == b"\x16"  # its ClientHello was sent
        deadline = time.monotonic() + 60
        while _state(proc.pid) != "S":  # and it sleeps in the kernel, waiting for the answer: a signal sent in
            assert time.monotonic() < deadline, _state(proc.pid)  # between would land before its read began
            time.sleep(0.01)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        conn.close()
    finally:
        listener.close()
    assert proc.returncode == 130, (proc.returncode, out, err)
    assert err.strip() == "Interrupted." and "Traceback" not in err and "no answer" not in err, err
    assert time.monotonic() - started < 25  # not after its --timeout of 30 s


def _state(pid: int) -> str:
    """R (running), S (asleep in a system call), ... of ``pid``'s main thread."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return stat[stat.rfind(b")") + 2:].split()[0].decode()


# --- 2. trust uninstall --nss takes out the database install created --------------------------------------------
def test_trust_uninstall_takes_out_the_nss_database_install_created(ca_dir, tmp_path):
    import os

    from conftest import PASSPHRASE, require, run_certkit

    require("certutil")
    home = tmp_path / "home"
    home.mkdir()
    env = certkit_env(HOME=str(home), CERTKIT_CA_DIR=str(ca_dir), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    db = home / ".pki" / "nssdb"
    run_certkit("trust", "install", "--nss", "--unconstrained", env=env, check=True)
    assert (db / "cert9.db").is_file()
    proc = run_certkit("trust", "uninstall", "--nss", env=env, check=True)
    assert f"removed the NSS database {db}, which install had created for it" in proc.stdout, proc.stdout
    assert not db.exists() and os.listdir(home) == []  # ~/.pki, made by install, goes too
    # Once it holds something else (the user's own CA, added by hand), the database stays.
    run_certkit("trust", "install", "--nss", "--unconstrained", env=env, check=True)
    other = tmp_path / "other.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tmp_path / "k.pem"), "-subj", "/CN=mine", "-days", "3", "-out", str(other)],
                   check=True, capture_output=True)
    subprocess.run(["certutil", "-A", "-d", f"sql:{db}", "-n", "mine", "-t", "C,,", "-i", str(other)], check=True,
                   capture_output=True)
    proc = run_certkit("trust", "uninstall", "--nss", env=env, check=True)
    assert "removed the NSS database" not in proc.stdout and (db / "cert9.db").is_file()
    listed = subprocess.run(["certutil", "-L", "-d", f"sql:{db}"], capture_output=True, text=True).stdout
    assert "mine" in listed and "certkit-" not in listed, listed
    assert os.listdir(home) == [".pki"]


# --- 3. --json is the option, not another option's value ------------------------------------------------------
def test_json_is_asked_by_the_option_not_by_a_value(ca_dir, ca_env):
    import json

    from conftest import run_certkit

    proc = run_certkit("init-ca", "--name", "--json", env=ca_env)  # a CA is there: refused, in words
    assert proc.returncode == 1 and proc.stdout == "" and proc.stderr.startswith("Error: A CA already exists"), proc
    listed = run_certkit("list", "--name", "--json", env=ca_env)
    assert listed.returncode == 0 and not listed.stdout.startswith("{"), listed.stdout
    proc = run_certkit("init-ca", "--name", "Again", "--json", env=ca_env)
    assert proc.stdout.startswith("{"), (proc.stdout, proc.stderr)
    assert json.loads(proc.stdout)["exit"] == 1 and "A CA already exists" in json.loads(proc.stdout)["error"]
    proc = run_certkit("acme", "serve", "--port", "x", "--json", env=ca_env)
    assert json.loads(proc.stdout)["exit"] == 2, proc.stdout


# --- 4. issue-batch --days past the CA's life is said of --days ---------------------------------------------
def test_batch_days_past_the_cas_life_is_said_of_the_option(tmp_path):
    from conftest import PASSPHRASE, assert_clean_error, run_certkit

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "short"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Short", "--days", "100", env=env, check=True)
    manifest = tmp_path / "m2.csv"
    manifest.write_text("kind,names\nserver,y.test\n")
    proc = run_certkit("issue-batch", manifest, "--days", "150", "--out-dir", tmp_path / "out", env=env)
    assert_clean_error(proc, "Error: A lifetime of 150 days would end after the CA expires on ")
    assert "line 2" not in proc.stderr and not (tmp_path / "out").exists()
    manifest.write_text("kind,names,days\nserver,y.test,150\n")  # a line's own days is still said of its line
    proc = run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "out", env=env)
    assert proc.returncode != 0 and "line 2" in proc.stderr, proc.stderr


# --- 5. init-ca over an existing CA: the words for a CA just made, and for any other ---------------------------
def test_init_ca_over_an_old_ca_does_not_talk_of_an_interrupted_init_ca(tmp_path):
    import datetime as dt

    from certkit import CA
    from certkit.store import CADirectory

    from conftest import PASSPHRASE, assert_clean_error, run_certkit

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    old = CA.create("Old CA", not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=400))
    CADirectory(tmp_path / "ca").save_new(old, PASSPHRASE.encode())
    proc = run_certkit("init-ca", "--name", "Again", env=env)
    assert_clean_error(proc, "certkit will not overwrite a CA. Choose another --ca-dir")
    assert "stopped" not in proc.stderr and "interrupted" not in proc.stderr
    run_certkit("init-ca", "--name", "New", "--ca-dir", tmp_path / "new", env=env, check=True)
    proc = run_certkit("init-ca", "--name", "Again", "--ca-dir", tmp_path / "new", env=env)
    assert_clean_error(proc, "(if an init-ca was stopped just after it made this one, the CA is whole and can be used "
                             "as it is). Choose another --ca-dir")
