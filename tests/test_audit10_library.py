"""Audit round ten, the Python library against the command line (report library8):

1. a CA saved with ``CADirectory(d).save_new(ca)`` records what it issues afterwards in d's inventory (leaves
   and intermediates), as one loaded from d does: before, they were recorded nowhere, and no command could
   revoke or renew them;
4. ``IssuedCert.write`` of a certificate its CA revoked is refused (as ``export-p12`` refuses to pack one),
   before anything is written.
"""

from __future__ import annotations

import json

import pytest

from conftest import PASSPHRASE, certkit_env, run_certkit


def test_a_saved_ca_records_what_it_issues_afterwards(tmp_path, monkeypatch):
    from certkit import CA, CADirectory
    from certkit.vocabulary import serial_hex

    monkeypatch.setenv("HOME", str(tmp_path))
    ca = CA.create("Saved CA")
    CADirectory(tmp_path / "d").save_new(ca, PASSPHRASE.encode())
    leaf = ca.issue_server("a.example")
    leaf.write(tmp_path / "a")
    sub = CA.create("Sub of saved", parent=ca, directory=tmp_path / "sub")
    CADirectory(tmp_path / "sub").save_new(sub, PASSPHRASE.encode(), parent=ca)
    client = sub.issue_client("bob")
    client.write(tmp_path / "bob")

    env = certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    listed = json.loads(run_certkit("list", "--json", "--ca-dir", tmp_path / "d", env=env, check=True).stdout)
    assert {row["serial"] for row in listed["certificates"]} == {leaf.serial_hex, serial_hex(sub.cert.serial_number)}
    assert sub.revoke(client.serial_hex)["status"] == "revoked"
    crl = run_certkit("crl", "--ca-dir", tmp_path / "sub", env=env, check=True).stdout
    from cryptography import x509

    assert x509.load_pem_x509_crl(crl.encode()).get_revoked_certificate_by_serial_number(
        int(client.serial_hex, 16)) is not None
    renewed = run_certkit("renew", tmp_path / "a", "--ca-dir", tmp_path / "d", "--json", env=env)
    assert renewed.returncode == 0, renewed.stderr
    run_certkit("check", "--ca-dir", tmp_path / "d", env=env, check=True)


def test_a_revoked_certificate_is_not_written(ca_dir, tmp_path):
    from certkit import CADirectory
    from certkit.errors import AlreadyRevoked

    ca = CADirectory(ca_dir).load(PASSPHRASE)
    issued = ca.issue_client("alice")
    ca.revoke(issued.serial_hex, "keyCompromise")
    with pytest.raises(AlreadyRevoked, match="keyCompromise"):
        issued.write(tmp_path / "alice")
    assert not (tmp_path / "alice").exists()


def test_an_intermediate_never_starts_before_its_parent(ca_dir):
    """#5: held to the rule leaves are held to; one that would end before its parent began is refused."""
    import datetime as dt

    from certkit import CA, CADirectory
    from certkit.errors import InvalidLifetime

    root = CADirectory(ca_dir).load(PASSPHRASE)
    start = root.cert.not_valid_before_utc
    inter = CA.create("Early Intermediate", parent=root, not_before=start - dt.timedelta(days=3), days=30)
    assert inter.cert.not_valid_before_utc == start
    inter.cert.verify_directly_issued_by(root.cert)
    with pytest.raises(InvalidLifetime, match="before the parent CA"):
        CA.create("Too Early", parent=root, not_before=start - dt.timedelta(days=400), days=30)


def test_write_takes_the_folder_lock_as_every_command_does(ca_dir, ca_env, tmp_path):
    """#3: IssuedCert.write waits while `certkit renew` holds the folder, then writes: the inventory and the
    folder agree (before, its bundle was written during the renewal, then swapped out, and still recorded)."""
    import os
    import subprocess
    import sys
    import threading
    import time

    from cryptography import x509

    from certkit import CADirectory

    run_certkit("issue-server", "a.example", "--out", tmp_path / "A", "--days", "10", env=ca_env, check=True)
    ca = CADirectory(ca_dir).load(PASSPHRASE)
    old = x509.load_pem_x509_certificate((tmp_path / "A" / "cert.pem").read_bytes())
    new = ca.renew(old)
    marker = tmp_path / "pause"
    env = dict(ca_env, CERTKIT_TEST_PAUSE_AT="staged", CERTKIT_TEST_PAUSE_FILE=str(marker))
    cli = subprocess.Popen([sys.executable, "-m", "certkit", "renew", str(tmp_path / "A")], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert cli.poll() is None, cli.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    done = threading.Event()
    outcome: list = []

    def write() -> None:
        try:
            outcome.append(new.write(tmp_path / "A", force=True))
        except Exception as exc:  # said below
            outcome.append(exc)
        done.set()

    threading.Thread(target=write, daemon=True).start()
    assert not done.wait(1.5)  # the folder is held by the renewal: the library waits
    os.unlink(marker)
    assert cli.wait(60) == 0, cli.communicate()
    assert done.wait(60), "the library's write never ended"
    assert not isinstance(outcome[0], Exception), outcome
    held = x509.load_pem_x509_certificate((tmp_path / "A" / "cert.pem").read_bytes())
    assert held == new.cert  # the last writer's, and recorded there
    rows = {r["serial"]: r for r in json.loads(run_certkit("list", "--json", env=ca_env, check=True).stdout)
            ["certificates"]}
    assert rows[new.serial_hex]["folder"] == str(tmp_path / "A")
    run_certkit("check", env=ca_env, check=True)
    bulk = run_certkit("renew", "--expiring", "3650d", "--json", env=ca_env)
    assert "now holds another certificate" not in bulk.stdout + bulk.stderr, bulk.stdout + bulk.stderr


@pytest.mark.parametrize("given_parent", [False, True])
def test_an_intermediate_saved_without_directory_is_recorded_where_it_is(ca_dir, tmp_path, given_parent):
    """#6: recorded as init-ca --parent-ca-dir records one (sink ca-dir, its directory), not as a program's."""
    from certkit import CA, CADirectory

    root = CADirectory(ca_dir).load(PASSPHRASE)
    inter = CA.create("Saved Later", parent=root)
    CADirectory(tmp_path / "int").save_new(inter, PASSPHRASE.encode(), **({"parent": root} if given_parent else {}))
    (row,) = [r for r in root.inventory.rows("WHERE kind = 'ca'", []) if r["subject"] == "CN=Saved Later"]
    assert (row["sink"], row["folder"], row["status"]) == ("ca-dir", str((tmp_path / "int").absolute()), "valid")
    kept = CA.create("Never Saved", parent=root)  # handed to a program: recorded as such
    (row,) = [r for r in root.inventory.rows("WHERE kind = 'ca'", []) if r["subject"] == "CN=Never Saved"]
    assert (row["sink"], row["folder"]) == ("memory", None) and kept.cert is not None
