"""Audit round ten, the docs against the code (report docs10), each as a class:

1. no CRL goes over a DER private key of a type cryptography cannot load (a binary curve, SM2): a key is
   known by its shape, not by whether it can be used;
2. inspect describes a certificate or CSR of such a key type instead of calling it damaged;
3. a missing ``verify --purpose`` is one line, in text and in JSON;
4. reading a Diffie-Hellman key file prints no library deprecation notice as a ``Warning:``.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit


def _openssl(*args, cwd) -> None:
    proc = subprocess.run(["openssl", *map(str, args)], cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        pytest.skip(f"this openssl cannot: openssl {' '.join(map(str, args))}: {proc.stderr.strip()[:200]}")


@pytest.mark.parametrize("kind", ["sect283k1-sec1", "sect283k1-pkcs8", "sm2"])
def test_no_crl_over_a_der_key_cryptography_cannot_load(ca_dir, ca_env, tmp_path, kind):
    key = tmp_path / f"{kind}.der"
    if kind == "sm2":
        _openssl("genpkey", "-algorithm", "SM2", "-outform", "DER", "-out", key, cwd=tmp_path)
    elif kind == "sect283k1-sec1":
        _openssl("ecparam", "-name", "sect283k1", "-genkey", "-noout", "-outform", "DER", "-out", key, cwd=tmp_path)
    else:
        _openssl("ecparam", "-name", "sect283k1", "-genkey", "-noout", "-out", tmp_path / "k.pem", cwd=tmp_path)
        _openssl("pkcs8", "-topk8", "-nocrypt", "-in", tmp_path / "k.pem", "-outform", "DER", "-out", key,
                 cwd=tmp_path)
    before = key.read_bytes()
    proc = run_certkit("crl", "--out", key, "--force", env=ca_env)
    assert_clean_error(proc, "holds a private key")
    assert key.read_bytes() == before


def test_der_files_that_are_not_keys_are_still_replaced(ca_dir, ca_env, tmp_path):
    """A DER CRL (a refresh) and a DER certificate are no keys: --force replaces them."""
    crl = tmp_path / "crl.der"
    run_certkit("crl", "--der", "--out", crl, env=ca_env, check=True)
    run_certkit("crl", "--der", "--out", crl, "--force", env=ca_env, check=True)
    cert = tmp_path / "ca.der"
    subprocess.run(["openssl", "x509", "-in", ca_dir / "ca.pem", "-outform", "DER", "-out", cert], check=True)
    run_certkit("crl", "--der", "--out", cert, "--force", env=ca_env, check=True)  # a PEM CRL is not named .der
    from cryptography import x509

    assert len(x509.load_der_x509_crl(cert.read_bytes())) == 0  # a DER CRL where the DER certificate was


def test_inspect_describes_a_certificate_and_csr_of_a_key_type_it_cannot_read(ca_dir, ca_env, tmp_path):
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:sect283k1", "-nodes", "-keyout",
             tmp_path / "b.key", "-subj", "/CN=b.example", "-out", tmp_path / "b.csr", cwd=tmp_path)
    ext = tmp_path / "ext.cnf"
    ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:b.example\n")
    _openssl("x509", "-req", "-in", tmp_path / "b.csr", "-CA", ca_dir / "ca.pem", "-CAkey", ca_dir / "ca-key.pem",
             "-passin", f"pass:{PASSPHRASE}", "-days", "30", "-extfile", ext, "-out", tmp_path / "b.pem",
             cwd=tmp_path)
    (tmp_path / "mix.pem").write_bytes((tmp_path / "b.pem").read_bytes() + (ca_dir / "ca.pem").read_bytes())
    for name, kind in (("b.pem", "certificate"), ("mix.pem", "certificate"), ("b.csr", "csr")):
        proc = run_certkit("inspect", tmp_path / name, "--json", env=ca_env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        items = json.loads(proc.stdout)["items"]
        assert items[0]["type"] == kind and items[0]["subject"] == "CN=b.example", items
        assert "not supported" in items[0]["key_type"] and "damaged" not in proc.stdout
    text = run_certkit("inspect", tmp_path / "b.csr", env=ca_env).stdout
    assert "not checked: its key type is one certkit cannot read" in text, text


@pytest.mark.parametrize("as_json", [False, True])
def test_a_missing_purpose_is_one_line(ca_dir, ca_env, tmp_path, as_json):
    run_certkit("issue-server", "a.example", "--out", tmp_path / "a", env=ca_env, check=True)
    proc = run_certkit("verify", tmp_path / "a", *(["--json"] if as_json else []), env=ca_env)
    assert_clean_error(proc, "Missing option '--purpose'", code=2)
    said = json.loads(proc.stdout)["error"] if as_json else proc.stderr.strip().splitlines()[-1]
    assert "\n" not in said and "\t" not in said


def test_a_dh_key_file_gets_no_library_warning(tmp_path):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "DH test", env=env, check=True)
    _openssl("genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt", "dh_paramgen_prime_len:512", "-out",
             tmp_path / "dhp.pem", cwd=tmp_path)
    _openssl("genpkey", "-paramfile", tmp_path / "dhp.pem", "-out", tmp_path / "dh.pem", cwd=tmp_path)
    _openssl("genpkey", "-paramfile", tmp_path / "dhp.pem", "-outform", "DER", "-out", tmp_path / "dh.der",
             cwd=tmp_path)
    for args in (("inspect", tmp_path / "dh.pem"), ("crl", "--out", tmp_path / "dh.der", "--force")):
        proc = run_certkit(*args, env=env, subprocess=True)
        assert proc.returncode == 1 and "Warning" not in proc.stderr and "eprecat" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
