"""A key once revoked for keyCompromise is never certified again: not from a CSR (sign-csr, which
ACME finalize goes through too), not as a library key=; a key revoked for another reason may be;
and the CA's own key is refused in words a sign-csr user can act on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from conftest import assert_clean_error, certkit_env, openssl, run_certkit


@pytest.fixture
def ca(tmp_path):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"))
    run_certkit("init-ca", "--no-passphrase", "--name", "KC", env=env, check=True)
    return tmp_path, env


def csr_of(key_file: Path, out: Path, cn: str = "www.example.com") -> Path:
    proc = openssl("req", "-new", "-key", key_file, "-subj", f"/CN={cn}", "-out", out)
    assert proc.returncode == 0, proc.stderr
    return out


def rows(env) -> list[dict]:
    return json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]


@pytest.mark.parametrize("reason", ["keyCompromise", "key-compromise"])
def test_a_compromised_key_is_never_signed_again(ca, reason) -> None:
    work, env = ca
    run_certkit("issue-server", "www.example.com", "--out", work / "web", env=env, check=True)
    revoked = run_certkit("revoke", work / "web", "--reason", reason, "--json", env=env, check=True)
    serial = json.loads(revoked.stdout)["serial"]
    before = rows(env)
    csr = csr_of(work / "web" / "privkey.pem", work / "again.csr")
    proc = run_certkit("sign-csr", csr, "--server", "--out", work / "web2", env=env)
    assert_clean_error(proc, "revoked for keyCompromise")
    assert serial in proc.stderr and "Generate a new key pair" in proc.stderr
    assert not (work / "web2").exists() and rows(env) == before
    # A fresh key for the same name is fine.
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", work / "new.key")
    run_certkit("sign-csr", csr_of(work / "new.key", work / "new.csr"), "--server", "--out", work / "web3", env=env,
                check=True)


def test_the_library_refuses_a_compromised_key_too(ca) -> None:
    work, env = ca
    from certkit.errors import CertkitError
    from certkit.store import CADirectory

    run_certkit("issue-client", "alice", "--out", work / "alice", env=env, check=True)
    run_certkit("revoke", work / "alice", "--reason", "keyCompromise", env=env, check=True)
    key = serialization.load_pem_private_key((work / "alice" / "privkey.pem").read_bytes(), None)
    authority = CADirectory(work / "ca").open()
    authority.unlock(None)
    with pytest.raises(CertkitError, match="revoked for keyCompromise"):
        authority.issue_client("alice", key=key)


def test_a_key_revoked_for_another_reason_may_be_certified_again(ca) -> None:
    work, env = ca
    run_certkit("issue-server", "www.example.com", "--out", work / "web", env=env, check=True)
    run_certkit("revoke", work / "web", "--reason", "superseded", env=env, check=True)
    run_certkit("sign-csr", csr_of(work / "web" / "privkey.pem", work / "again.csr"), "--server", "--out",
                work / "web2", env=env, check=True)


def test_the_cas_own_key_is_refused_in_words_for_sign_csr(ca) -> None:
    work, env = ca
    proc = run_certkit("sign-csr", csr_of(work / "ca" / "ca-key.pem", work / "ca.csr"), "--server", "--out",
                       work / "leaf", env=env)
    assert_clean_error(proc, "the key of the CA 'KC'")
    assert "key=" not in proc.stderr and "Generate a new key pair" in proc.stderr
    assert not (work / "leaf").exists()


def test_aa_compromise_is_not_offered_but_a_recorded_one_still_goes_on_the_crl(ca) -> None:
    """aACompromise is for attribute certificates: not offered for TLS certificates (the CA/Browser
    Forum's CRL profile refuses it); an inventory where an older certkit recorded it still signs its CRL."""
    import sqlite3

    work, env = ca
    run_certkit("issue-server", "www.example.com", "--out", work / "web", env=env, check=True)
    proc = run_certkit("revoke", work / "web", "--reason", "aACompromise", env=env)
    assert_clean_error(proc, "not a revocation reason", code=2 if proc.returncode == 2 else 1)
    serial = json.loads(run_certkit("revoke", work / "web", "--json", env=env, check=True).stdout)["serial"]
    with sqlite3.connect(work / "ca" / "inventory.sqlite3") as db:
        db.execute("UPDATE certificates SET revocation_reason = 'aACompromise' WHERE serial = ?", (serial,))
    db.close()
    run_certkit("crl", "--out", work / "crl.pem", env=env, check=True)
    text = openssl("crl", "-in", work / "crl.pem", "-noout", "-text").stdout.decode()
    assert serial in text.replace(":", "").upper() and "AA Compromise" in text


def test_check_names_a_revocation_reason_no_crl_can_state(ca) -> None:
    import sqlite3

    work, env = ca
    run_certkit("issue-server", "www.example.com", "--out", work / "web", env=env, check=True)
    serial = json.loads(run_certkit("revoke", work / "web", "--json", env=env, check=True).stdout)["serial"]
    with sqlite3.connect(work / "ca" / "inventory.sqlite3") as db:
        db.execute("UPDATE certificates SET revocation_reason = 'banana' WHERE serial = ?", (serial,))
    db.close()
    proc = run_certkit("check", env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert serial in proc.stdout and "banana" in proc.stdout and "no CRL can state" in proc.stdout
