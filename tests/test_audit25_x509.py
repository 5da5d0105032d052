"""Round twenty-five, x509: the content of the CA certificates certkit makes.

1. A CA made with --org, --org-unit or --country had its subject written CN first (CN, O, OU, C): the reverse of
   X.501's order, most significant first, which every public CA follows and the CA/Browser Forum's Baseline
   Requirements (7.1.4.2) require: pkilint's CA/B linter says ``cabf.serverauth.invalid_rdn_order``, openssl
   printed ``CN = Home Lab CA, O = Home, C = DE`` and Java ``C=DE,O=Home,CN=Home Lab CA``. A root's, an
   intermediate's (init-ca --parent-ca-dir) and a library CA's (CA.create) subject is now C, O, OU, CN, and
   the leaves under them chain as before. An intermediate named as a root made before (CN first) is still
   refused as that root's namesake: the order alone does not make a name of its own.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, run_certkit

X501_ORDER = [NameOID.COUNTRY_NAME, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.COMMON_NAME]


def _cabf_findings(cert: Path, kind: str) -> str:
    exe = shutil.which("lint_cabf_serverauth_cert")
    assert exe, "lint_cabf_serverauth_cert is not installed (pip install pkilint)"
    proc = subprocess.run([exe, "lint", "-t", kind, "-s", "ERROR", str(cert)], capture_output=True, text=True,
                          timeout=120)
    assert proc.stderr == "" and (proc.returncode == 0 or "@ certificate" in proc.stdout), proc  # exit: findings
    return proc.stdout


def _in_x501_order(cert: x509.Certificate) -> None:
    assert [attr.oid for attr in cert.subject] == X501_ORDER, cert.subject


def _env(tmp_path: Path) -> dict[str, str]:  # noqa: ARG001 - per test, as new_ca's
    return certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)


@pytest.mark.parametrize("key_type", ["ecdsa-p256", "rsa-4096", "ed25519"])
def test_a_roots_subject_is_written_most_significant_first(tmp_path: Path, key_type: str) -> None:
    run_certkit("init-ca", "--ca-dir", tmp_path / "ca", "--name", "Home Lab CA", "--org", "Home", "--org-unit",
                "Lab", "--country", "de", "--key-type", key_type, env=_env(tmp_path), check=True)
    pem = tmp_path / "ca" / "ca.pem"
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    _in_x501_order(cert)
    assert cert.subject.rfc4514_string() == "CN=Home Lab CA,OU=Lab,O=Home,C=DE"
    shown = openssl("x509", "-in", pem, "-noout", "-subject", "-nameopt", "sep_comma_plus")
    assert shown.stdout.decode().strip() == "subject=C=DE,O=Home,OU=Lab,CN=Home Lab CA", shown
    der = tmp_path / "ca.der"
    der.write_bytes(cert.public_bytes(Encoding.DER))
    assert "invalid_rdn_order" not in _cabf_findings(der, "ROOT-CA")


def test_an_intermediate_and_its_leaves_in_that_order_chain(tmp_path: Path) -> None:
    env = _env(tmp_path)
    run_certkit("init-ca", "--ca-dir", tmp_path / "root", "--name", "Example Root", "--org", "Example Corp",
                "--country", "US", env=env, check=True)
    run_certkit("init-ca", "--ca-dir", tmp_path / "issuing", "--parent-ca-dir", tmp_path / "root", "--name",
                "Issuing 1", "--org", "Example Corp", "--org-unit", "Ops", env=env, check=True)
    inter = x509.load_pem_x509_certificate((tmp_path / "issuing" / "ca.pem").read_bytes())
    assert [attr.oid for attr in inter.subject] == X501_ORDER[1:]
    der = tmp_path / "issuing.der"
    der.write_bytes(inter.public_bytes(Encoding.DER))
    assert "invalid_rdn_order" not in _cabf_findings(der, "INTERNAL-UNCONSTRAINED-TLS-CA")
    root = x509.load_pem_x509_certificate((tmp_path / "root" / "ca.pem").read_bytes())
    assert [attr.oid for attr in root.subject] == [NameOID.COUNTRY_NAME, NameOID.ORGANIZATION_NAME,
                                                    NameOID.COMMON_NAME]
    assert inter.issuer == root.subject
    env["CERTKIT_CA_DIR"] = str(tmp_path / "issuing")
    run_certkit("issue-server", "--out", tmp_path / "web", "web.example.com", env=env, check=True)
    run_certkit("issue-client", "--out", tmp_path / "alice", "alice", env=env, check=True)
    for folder, purpose in (("web", "sslserver"), ("alice", "sslclient")):
        done = openssl("verify", "-x509_strict", "-purpose", purpose, "-CAfile", tmp_path / folder / "ca.pem",
                       "-untrusted", tmp_path / folder / "chain.pem", tmp_path / folder / "cert.pem")
        assert done.returncode == 0, done
        leaf = x509.load_pem_x509_certificate((tmp_path / folder / "cert.pem").read_bytes())
        assert leaf.issuer == inter.subject


def test_a_library_ca_is_in_that_order_too() -> None:
    from certkit import CA

    root = CA.create("Library Root", organization="Example Corp", organizational_unit="Dev", country="nl")
    _in_x501_order(root.cert)
    inter = CA.create("Library Issuing", organization="Example Corp", parent=root)
    assert [attr.oid for attr in inter.cert.subject] == [NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME]
    server = inter.issue_server(["localhost"])
    assert server.cert.issuer == inter.cert.subject


def test_an_intermediate_named_as_a_root_written_cn_first_is_still_its_namesake(tmp_path: Path) -> None:
    """A root made before (its subject CN, O, C) and an intermediate of the same CN, O and C are one name to a
    person and to every display that sorts nothing: refused as before."""
    from certkit import CA
    from certkit.profiles import PROFILES, build_certificate, validity
    from certkit.store import CADirectory

    made = CA.create("Home Lab CA", organization="Home", country="DE")
    old_order = x509.Name([made.cert.subject.get_attributes_for_oid(oid)[0]
                           for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.COUNTRY_NAME)])
    not_before, not_after = validity(3650)
    cert = build_certificate(PROFILES["root-ca"], subject=old_order, public_key=made.key.public_key(),
                             issuer_name=old_order, issuer_key=made.key, issuer_ski=None,
                             serial=x509.random_serial_number(), not_before=not_before, not_after=not_after)
    CADirectory(tmp_path / "root").save_new(CA(cert, made.key, []), PASSPHRASE.encode())
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "issuing", "--parent-ca-dir", tmp_path / "root", "--name",
                       "Home Lab CA", "--org", "Home", "--country", "DE", env=_env(tmp_path))
    assert_clean_error(proc, "The intermediate would carry the name of the CA above it")
    assert not (tmp_path / "issuing").exists()
