"""Round twenty-two, x509: what certkit says of the names it is asked to certify.

1. A server, peer or verify name with a colon that is no IPv6 address (``www.example.test:https``, a host with a
   named port; ``db:primary``; a CSR's common name ``bob\\nEvil: x``) was "not a valid IPv6 address", as if the user
   had meant one. It is now said to be neither a DNS name nor an IP address, a DNS name holding no ':' and a port
   being no part of a certificate's names; what is written as an address (hex digits and colons, ``::``, brackets)
   is still "not a valid IPv6 address".
2. ``certkit revoke`` of an intermediate at its parent said "Revoked ca certificate SERIAL" (the inventory's kind
   word); it now says "Revoked CA certificate SERIAL", and the CRL lists it as openssl reads it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import PASSPHRASE, assert_clean_error, new_ca, run_certkit

NOT_A_NAME = "is neither a DNS name nor an IP address: a DNS name cannot hold ':'"


@pytest.mark.parametrize("name", ["www.example.test:https", "db:primary", "www.example.test:"])
def test_a_name_with_a_colon_is_not_called_an_ipv6_address(tmp_path: Path, name: str) -> None:
    env = new_ca(tmp_path, "certkit colon CA")
    for command in ("issue-server", "issue-peer"):
        proc = run_certkit(command, name, "--out", tmp_path / "out", env=env)
        assert_clean_error(proc, f"'{name}' {NOT_A_NAME}")
        assert "IPv6" not in proc.stderr
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("written", ["[zz::1]", "fe80::zz", "1:2:3", "[::1"])
def test_what_is_written_as_an_address_is_still_a_bad_ipv6_address(tmp_path: Path, written: str) -> None:
    env = new_ca(tmp_path, "certkit colon CA")
    assert_clean_error(run_certkit("issue-server", written, env=env), f"'{written}' is not a valid IPv6 address.")


def test_a_csr_common_name_with_a_colon_is_named_for_what_it_is(tmp_path: Path) -> None:
    env = new_ca(tmp_path, "certkit colon CA")
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "db:primary")]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("db.example.test")]), critical=False)
           .sign(key, hashes.SHA256()))
    (tmp_path / "db.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    proc = run_certkit("sign-csr", tmp_path / "db.csr", "--server", "--out", tmp_path / "db", env=env)
    assert_clean_error(proc, f"'db:primary' {NOT_A_NAME}")
    assert "IPv6" not in proc.stderr
    assert not (tmp_path / "db").exists()


def test_revoking_an_intermediate_says_ca_certificate(tmp_path: Path) -> None:
    env = new_ca(tmp_path, "certkit parent CA")
    run_certkit("init-ca", "--ca-dir", tmp_path / "int", "--parent-ca-dir", tmp_path / "ca", "--name", "Issuing 1",
                env={**env, "CERTKIT_PARENT_CA_PASSPHRASE": PASSPHRASE}, check=True)
    serial = format(x509.load_pem_x509_certificate((tmp_path / "int" / "ca.pem").read_bytes()).serial_number, "X")
    proc = run_certkit("revoke", tmp_path / "int" / "ca.pem", "--reason", "cACompromise", env=env, check=True)
    first = proc.stdout.splitlines()[0]
    assert first.startswith("Revoked CA certificate ") and first.split()[-1].lstrip("0") == serial
    run_certkit("crl", "--out", tmp_path / "crl.pem", env=env, check=True)
    text = subprocess.run(["openssl", "crl", "-in", tmp_path / "crl.pem", "-noout", "-text"], check=True,
                          capture_output=True, text=True).stdout
    assert serial[-16:] in text and "CA Compromise" in text
