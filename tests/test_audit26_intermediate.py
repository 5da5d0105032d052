"""Audit 26, CA hierarchies: an intermediate its root revoked issues nothing (every verifier that loads the
root's CRL refuses what it would sign); checked with openssl verify -crl_check_all and cryptography."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from certkit.ca import CA
from certkit.errors import AlreadyRevoked
from certkit.store import CADirectory

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, run_certkit


@pytest.fixture
def revoked_tier(tmp_path, ca_env, ca_dir):
    """A root, an intermediate made by init-ca with a server bundle 'before', then the intermediate revoked by
    the root (cACompromise) and the root's CRL and the intermediate's own in crls.pem."""
    run_certkit("init-ca", "--ca-dir", tmp_path / "inter", "--parent-ca-dir", ca_dir, "--name", "Issuing CA 1",
                cwd=tmp_path, env=dict(ca_env, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE), check=True)
    env = dict(ca_env, CERTKIT_CA_DIR=str(tmp_path / "inter"))
    run_certkit("issue-server", "before.example.test", "--out", "before", cwd=tmp_path, env=env, check=True)
    run_certkit("revoke", "--ca-dir", ca_dir, tmp_path / "inter" / "ca.pem", "--reason", "cACompromise",
                cwd=tmp_path, env=ca_env, check=True)
    run_certkit("crl", "--ca-dir", ca_dir, "--out", "root.crl", cwd=tmp_path, env=ca_env, check=True)
    run_certkit("crl", "--out", "inter.crl", cwd=tmp_path, env=env, check=True)  # its own CRL: still signed
    (tmp_path / "crls.pem").write_bytes((tmp_path / "root.crl").read_bytes() + (tmp_path / "inter.crl").read_bytes())
    return tmp_path, env


def test_revoked_intermediate_is_refused_by_openssl(revoked_tier):
    """What the refusal is about: openssl rejects every leaf of the revoked intermediate (error 23 at depth 1)."""
    tmp_path, _env = revoked_tier
    before = tmp_path / "before"
    proc = openssl("verify", "-x509_strict", "-crl_check_all", "-CAfile", tmp_path / "ca" / "ca.pem", "-untrusted",
                   before / "chain.pem", "-CRLfile", tmp_path / "crls.pem", before / "cert.pem")
    assert proc.returncode != 0 and b"error 23 at 1 depth lookup: certificate revoked" in proc.stdout + proc.stderr


@pytest.mark.parametrize("args", [
    ("issue-server", "new.example.test", "--out", "new"),
    ("issue-client", "Bob Smith", "--out", "new"),
    ("issue-peer", "peer.example.test", "--out", "new"),
    ("renew", "before", "--out", "new"),
    ("sign-csr", "new.csr", "--server", "--out", "new"),
    ("issue-batch", "fleet.csv", "--out-dir", "new"),
    ("issue-server", "new.example.test", "--out", "new", "--json"),
])
def test_revoked_intermediate_issues_nothing(revoked_tier, args):
    tmp_path, env = revoked_tier
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            tmp_path / "csr-key.pem", "-subj", "/CN=new.example.test", "-out", tmp_path / "new.csr")
    (tmp_path / "fleet.csv").write_text("kind,names\nserver,b1.example.test\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    rows = CADirectory(tmp_path / "inter").inventory.count()
    proc = run_certkit(*args, cwd=tmp_path, env=env)
    assert_clean_error(proc, "The CA 'Issuing CA 1' was revoked by its parent 'certkit test root'")
    words = proc.stderr if "--json" not in args else proc.stdout
    assert "cACompromise" in words and "--parent-ca-dir" in words and "issues nothing" in words
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    assert CADirectory(tmp_path / "inter").inventory.count() == rows  # nothing signed or recorded


def test_unrevoked_intermediate_still_issues_with_root_offline(tmp_path, ca_env, ca_dir):
    """The root's directory is only looked at: gone (an offline root on its USB stick) or holding another CA,
    it tells nothing, and the intermediate issues as before."""
    run_certkit("init-ca", "--ca-dir", tmp_path / "inter", "--parent-ca-dir", ca_dir, "--name", "Issuing CA 1",
                cwd=tmp_path, env=dict(ca_env, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE), check=True)
    env = dict(ca_env, CERTKIT_CA_DIR=str(tmp_path / "inter"))
    run_certkit("issue-server", "a.example.test", cwd=tmp_path, env=env, check=True)
    run_certkit("revoke", "--ca-dir", ca_dir, tmp_path / "inter" / "ca.pem", cwd=tmp_path, env=ca_env, check=True)
    shutil.move(ca_dir, tmp_path / "usb-stick")  # offline: nothing can be told
    run_certkit("issue-server", "b.example.test", cwd=tmp_path, env=env, check=True)
    run_certkit("init-ca", "--ca-dir", ca_dir, "--name", "Another root", env=ca_env, check=True)
    run_certkit("issue-server", "c.example.test", cwd=tmp_path, env=env, check=True)  # another CA there: no word


def test_library_intermediate_of_a_loaded_root(tmp_path, ca_dir):
    """CA.create(parent=...) of a root loaded from its directory: in memory and once saved, the intermediate
    issues nothing after the root revoked it (and the root's CRL lists it)."""
    root = CADirectory(ca_dir).load(PASSPHRASE)
    inter = CA.create("Library Issuing CA", parent=root)
    CADirectory(tmp_path / "inter").save_new(inter, None)
    CADirectory(tmp_path / "inter").load().issue_server("ok.example.test")
    in_memory = CA.create("Library Issuing CA 2", parent=root)
    for ca in (inter, in_memory):
        root.revoke(ca.cert.serial_number, "cACompromise")
        assert root.crl().get_revoked_certificate_by_serial_number(ca.cert.serial_number) is not None
    for ca in (CADirectory(tmp_path / "inter").load(), in_memory):
        with pytest.raises(AlreadyRevoked, match="revoked by its parent 'certkit test root'"):
            ca.issue_server("late.example.test")
    CA.create("Fresh", parent=root).issue_server("fresh.example.test")


# --- a CA not valid yet (its notBefore ahead of this clock) issued leaves that no verifier accepted until then -------
def _future_root(tmp_path: Path) -> Path:
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)  # made on a machine whose clock was ahead
    CADirectory(tmp_path / "ca").save_new(CA.create("Future Root", not_before=start), PASSPHRASE.encode())
    return tmp_path / "ca"


@pytest.mark.parametrize("args", [
    ("issue-server", "new.example.test", "--out", "new"),
    ("issue-client", "Bob Smith", "--out", "new"),
    ("sign-csr", "new.csr", "--server", "--out", "new"),
    ("issue-batch", "fleet.csv", "--out-dir", "new"),
    ("init-ca", "--ca-dir", "new", "--parent-ca-dir", "ca", "--no-passphrase"),
])
def test_a_ca_not_valid_yet_issues_nothing(tmp_path, args):
    ca_dir = _future_root(tmp_path)
    said = openssl("verify", "-x509_strict", "-CAfile", ca_dir / "ca.pem", ca_dir / "ca.pem")
    assert said.returncode != 0 and b"certificate is not yet valid" in said.stdout + said.stderr  # what peers say
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            tmp_path / "csr-key.pem", "-subj", "/CN=new.example.test", "-out", tmp_path / "new.csr")
    (tmp_path / "fleet.csv").write_text("kind,names\nserver,b1.example.test\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    env = certkit_env(CERTKIT_CA_DIR=str(ca_dir), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    proc = run_certkit(*args, cwd=tmp_path, env=env)
    assert_clean_error(proc, "The CA 'Future Root' is not valid before ")
    assert "every verifier refuses what it signs until then" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert CADirectory(ca_dir).inventory.count() == 0


def test_under_an_intermediate_not_valid_yet_and_asked_for_later(tmp_path, ca_dir):
    """An intermediate not valid yet (a library's not_before) refuses to issue now from the command line; a leaf
    asked to start once the CA does (not_before) is still issued, and verifies from then (openssl -attime)."""
    root = CADirectory(ca_dir).load(PASSPHRASE)
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    inter = CA.create("Later Issuing CA", parent=root, not_before=start, directory=tmp_path / "inter")
    CADirectory(tmp_path / "inter").save_new(inter, None, parent=root)
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "inter"))
    proc = run_certkit("issue-server", "now.example.test", cwd=tmp_path, env=env)
    assert_clean_error(proc, "The CA 'Later Issuing CA' is not valid before ")
    assert not (tmp_path / "now.example.test").exists()
    later = inter.issue_server("later.example.test", not_before=start + dt.timedelta(hours=1), days=10)
    later.write(tmp_path / "later")
    ok = openssl("verify", "-x509_strict", "-attime", str(int((start + dt.timedelta(hours=2)).timestamp())),
                 "-CAfile", ca_dir / "ca.pem", "-untrusted", tmp_path / "later" / "chain.pem",
                 tmp_path / "later" / "cert.pem")
    assert ok.returncode == 0, ok.stdout + ok.stderr


# --- verify and check with the intermediate's CA directory called its revoked chain VALID and OK ---------------------
def test_verify_and_check_of_the_intermediate_ask_its_parent(revoked_tier):
    tmp_path, env = revoked_tier
    proc = run_certkit("verify", "before", "--purpose", "server", cwd=tmp_path, env=env)
    assert proc.returncode == 1 and "NOT VALID" in proc.stdout, proc.stdout + proc.stderr
    assert ("the issuing CA CN=Issuing CA 1 was revoked on " in proc.stdout
            and f"(reason: cACompromise), as the inventory of its parent CA CN=certkit test root (at {tmp_path / 'ca'})"
            in proc.stdout), proc.stdout
    checked = run_certkit("check", cwd=tmp_path, env=env)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "ERROR   validity   The CA 'Issuing CA 1' was revoked by its parent 'certkit test root'" in checked.stdout
    assert "OK      validity" not in checked.stdout
    shutil.move(tmp_path / "ca", tmp_path / "usb-stick")  # the root put away: nothing to ask, nothing claimed
    assert "VALID as a TLS server certificate" in run_certkit("verify", "before", "--purpose", "server", cwd=tmp_path,
                                                               env=env, check=True).stdout
    assert "OK      validity" in run_certkit("check", cwd=tmp_path, env=env, check=True).stdout


def test_export_p12_under_the_revoked_intermediate_is_refused(revoked_tier):
    """export-p12 with the intermediate's CA directory packed the leaf for a browser or keystore that refuses it
    (with --ca-dir of the root it was refused already)."""
    tmp_path, env = revoked_tier
    env = dict(env, CERTKIT_P12_PASSWORD="a p12 password of some length")
    proc = run_certkit("export-p12", "before", cwd=tmp_path, env=env)
    assert_clean_error(proc, "is not exported: its issuing CA 'Issuing CA 1' was revoked by its parent 'certkit test "
                             "root'")
    assert not (tmp_path / "before" / "bundle.p12").exists()
    shutil.move(tmp_path / "ca", tmp_path / "usb-stick")  # the root put away: nothing known, nothing refused
    run_certkit("export-p12", "before", cwd=tmp_path, env=env, check=True)
