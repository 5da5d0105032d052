"""Audit 26, CA hierarchies: an intermediate its root revoked issues nothing (every verifier that loads the
root's CRL refuses what it would sign); checked with openssl verify -crl_check_all and cryptography."""

from __future__ import annotations

import shutil

import pytest

from certkit.ca import CA
from certkit.errors import AlreadyRevoked
from certkit.store import CADirectory

from conftest import PASSPHRASE, assert_clean_error, openssl, run_certkit


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
