"""Audit round ten, certificate content and what verify says of it (report x50910), each as a class:

1. a 1024-bit RSA key anywhere in the chain: OpenSSL at its default security level and Python's ssl refuse
   it; verify said VALID and inspect "usable for TLS", probe said "X.509 verification error 66";
2. a weak signature (SHA-1) by this very CA was "not issued by this CA: it was issued by CN=Root, and the
   trusted CA is CN=Root"; SHA-224, which OpenSSL and Python accept, was refused; both with a Rust debug dump;
3. a CA permitted a one-label domain gets pkilint's web-domain ERRORs (docs/library.md says which);
4. acme serve of an IP-only CA without --allow-ip refuses to start (every order would be refused), and its
   banner says the CA permits no DNS name.
"""

from __future__ import annotations

import ssl
import subprocess

import pytest

from conftest import PASSPHRASE, REPO, assert_clean_error, certkit_env, require, run_certkit


def _openssl(*args, cwd, check=True):
    return subprocess.run(["openssl", *map(str, args)], cwd=cwd, capture_output=True, text=True, check=check)


@pytest.fixture
def foreign(ca_dir, tmp_path):
    """Leaves signed by the CA's key with openssl: a 1024-bit RSA key, and P-256 keys signed with SHA-1, SHA-224
    and SHA-256."""
    _openssl("pkey", "-in", ca_dir / "ca-key.pem", "-passin", f"pass:{PASSPHRASE}", "-out", "cakey.pem", cwd=tmp_path)
    (tmp_path / "f.ext").write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,"
                                    "keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:f.example.com,"
                                    "IP:127.0.0.1\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    _openssl("genrsa", "-out", "k1024.pem", "1024", cwd=tmp_path)
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "k.pem", cwd=tmp_path)
    made = {}
    for name, key, digest in (("rsa1024", "k1024.pem", "sha256"), ("sha1", "k.pem", "sha1"),
                              ("sha224", "k.pem", "sha224"), ("sha256", "k.pem", "sha256")):
        _openssl("req", "-new", "-key", key, "-subj", "/CN=f.example.com", "-out", f"{name}.csr", cwd=tmp_path)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", ca_dir / "ca.pem", "-CAkey", "cakey.pem", "-days", "30",
                 f"-{digest}", "-extfile", "f.ext", "-out", f"{name}.pem", cwd=tmp_path)
        made[name] = tmp_path / f"{name}.pem"
    return made


def _verify(ca_env, path):
    return run_certkit("verify", path, "--purpose", "server", "--name", "f.example.com", env=ca_env)


def test_a_weak_rsa_key_is_not_valid_as_openssl_and_python_say(ca_dir, ca_env, foreign, tmp_path):
    proc = _verify(ca_env, foreign["rsa1024"])
    assert proc.returncode == 1 and "its RSA key has 1024 bits" in proc.stdout, proc.stdout
    assert "Usable for: nothing with OpenSSL-based peers: its RSA key has 1024 bits" in run_certkit(
        "inspect", foreign["rsa1024"], env=ca_env).stdout
    peer = _openssl("verify", "-auth_level", "2", "-purpose", "sslserver", "-CAfile", ca_dir / "ca.pem",
                    foreign["rsa1024"], cwd=tmp_path, check=False)
    assert "key too weak" in peer.stdout + peer.stderr, peer.stdout
    with pytest.raises(ssl.SSLError, match="(?i)key too small|too weak"):  # Python's ssl will not even serve it
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(foreign["rsa1024"],
                                                                            tmp_path / "k1024.pem")
    from certkit.pyossl import x509_error

    assert x509_error(66) == "EE certificate key too weak"


def test_a_sha1_signature_of_this_ca_is_said_as_such(ca_env, foreign):
    proc = _verify(ca_env, foreign["sha1"])
    assert proc.returncode == 1 and "it is signed with SHA1, a digest" in proc.stdout, proc.stdout
    assert "not issued by this CA" not in proc.stdout and "PhantomData" not in proc.stdout, proc.stdout


def test_a_sha224_signature_is_valid_as_openssl_says(ca_dir, ca_env, foreign, tmp_path):
    proc = _verify(ca_env, foreign["sha224"])
    assert proc.returncode == 0, proc.stdout
    assert "forbids SHA-224 signatures, which OpenSSL and Python's ssl accept" in proc.stdout
    assert "PhantomData" not in proc.stdout
    peer = _openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", ca_dir / "ca.pem",
                    foreign["sha224"], cwd=tmp_path, check=False)
    assert peer.returncode == 0, peer.stdout + peer.stderr
    assert _verify(ca_env, foreign["sha256"]).returncode == 0


# --- 3. one-label permitted domains and pkilint ----------------------------------------------------------------
@pytest.mark.parametrize(("domain", "errors"), [("internal", 5), ("home.arpa", 0), ("lab.internal", 0)])
def test_a_one_label_permitted_domain_gets_the_linters_web_rule_as_the_docs_say(tmp_path, domain, errors):
    env = certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--ca-dir", tmp_path / "ca", "--name", "NC", "--permit-dns", domain, env=env, check=True)
    lint = subprocess.run([require("lint_pkix_cert"), "lint", "-s", "ERROR", tmp_path / "ca" / "ca.pem"],
                          capture_output=True, text=True, timeout=120)
    assert lint.stdout.count("(ERROR)") == errors, lint.stdout + lint.stderr  # (its exit status: the count)
    docs = (REPO / "docs" / "library.md").read_text()
    assert "a CA permitted a one-label" in docs and "five times" in docs


# --- 4. acme serve of an IP-only CA --------------------------------------------------------------------------
def test_acme_serve_of_an_ip_only_ca_needs_allow_ip(tmp_path):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "IP CA", "--permit-ip", "127.0.0.0/8", env=env, check=True)
    proc = run_certkit("acme", "serve", "--port", "0", env=env)
    assert_clean_error(proc, "permits no DNS names")
    assert "--allow-ip" in proc.stderr
    from certkit import CADirectory
    from certkit.acme.policy import Policy

    ca = CADirectory(tmp_path / "ca").open()
    assert Policy.build(ips=["127.0.0.0/8"]).describe(ca).startswith("DNS names: none (the CA permits none)")
