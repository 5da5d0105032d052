"""The eleventh round's verification findings (audit x50911), each judged against ``openssl verify``:

1. a certificate whose authority key identifier names another key than its CA's (or another issuer or serial) is
   not that CA's, as OpenSSL's issuer check says (verify and inspect called it VALID);
2. a wildcard over a single label (``*.com``) matches no host, as in OpenSSL and Python;
3. an issuer name that is its CA's subject only as OpenSSL compares names (another case of A-Z, spacing, or string
   type) is said as such: OpenSSL accepts the chain, cryptography's verifier refuses it, and certkit verify with it
   (its own checks alone would miss what the verifier checks: regress16); a name OpenSSL does not take for the
   CA's (CAFÉ against Café, a no-break space) is no such case;
4. an EC key under 224 bits (P-192) is too weak for OpenSSL at its default level, as RSA under 2048 is.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import certkit_env, openssl, run_certkit

NOW = dt.datetime.now(dt.UTC)


def _name(cn: str, printable: bool = False) -> x509.Name:
    from cryptography.x509.name import _ASN1Type

    if printable:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn, _type=_ASN1Type.PrintableString)])
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _root(key, name: x509.Name) -> x509.Certificate:
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(hours=1))
            .not_valid_after(NOW + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(ski, critical=False).sign(key, hashes.SHA256()))


def _leaf(ca_key, issuer: x509.Name, *, aki: x509.AuthorityKeyIdentifier | None, name: str = "f.example.com",
          key=None) -> x509.Certificate:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(hours=1))
               .not_valid_after(NOW + dt.timedelta(days=10))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(True, *[False] * 8), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False))
    if aki is not None:
        builder = builder.add_extension(aki, critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _write(tmp_path: Path, **certs: x509.Certificate) -> dict[str, Path]:
    paths = {}
    for label, cert in certs.items():
        paths[label] = tmp_path / f"{label}.pem"
        paths[label].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return paths


def _both(tmp_path: Path, root: Path, leaf: Path, name: str = "f.example.com") -> tuple[bool, object]:
    ok = openssl("verify", "-x509_strict", "-purpose", "sslserver", "-verify_hostname", name, "-CAfile", root,
                 leaf).returncode == 0
    proc = run_certkit("verify", leaf, "--purpose", "server", "--name", name, "--ca-file", root,
                       env=certkit_env(CERTKIT_CA_DIR=str(tmp_path / "none")))
    return ok, proc


@pytest.mark.parametrize("which", ["key id", "issuer and serial"])
def test_an_authority_key_identifier_naming_another_key_is_not_this_cas(tmp_path: Path, which: str) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    root = _root(ca_key, _name("AKI Root"))
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    aki = (x509.AuthorityKeyIdentifier.from_issuer_public_key(other) if which == "key id" else
           x509.AuthorityKeyIdentifier(None, [x509.DirectoryName(_name("Someone Else"))], 12345))
    paths = _write(tmp_path, root=root, leaf=_leaf(ca_key, root.subject, aki=aki))
    openssl_ok, proc = _both(tmp_path, paths["root"], paths["leaf"])
    assert not openssl_ok
    assert proc.returncode == 1 and "NOT VALID" in proc.stdout, proc.stdout


def test_a_wildcard_over_one_label_matches_no_host(tmp_path: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    root = _root(ca_key, _name("Wild Root"))
    leaf = _leaf(ca_key, root.subject, aki=x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                 name="*.com")
    paths = _write(tmp_path, root=root, leaf=leaf)
    openssl_ok, proc = _both(tmp_path, paths["root"], paths["leaf"], name="example.com")
    assert not openssl_ok
    assert proc.returncode == 1 and "NOT VALID" in proc.stdout, proc.stdout


@pytest.mark.parametrize("form", ["printable", "case", "spacing", "non-ascii case", "no-break space"])
def test_an_issuer_name_openssl_takes_for_its_cas_is_said_as_such(tmp_path: Path, form: str) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    root = _root(ca_key, _name("Form Café Root"))
    issuer = {"printable": _name("Form Root", printable=True), "case": _name("FORM Café ROOT"),
              "spacing": _name("Form  Café Root"), "non-ascii case": _name("Form CAFÉ Root"),
              "no-break space": _name("Form\u00a0Café Root")}[form]
    if form == "printable":
        root = _root(ca_key, _name("Form Root"))
    leaf = _leaf(ca_key, issuer, aki=x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()))
    paths = _write(tmp_path, root=root, leaf=leaf)
    openssl_ok, proc = _both(tmp_path, paths["root"], paths["leaf"])
    assert openssl_ok == (form in ("printable", "case", "spacing")), form
    assert proc.returncode == 1 and "NOT VALID" in proc.stdout, proc.stdout  # cryptography's verifier refuses all
    assert ("only as OpenSSL compares names" in proc.stdout) == openssl_ok, proc.stdout
    assert "candidates exhausted with no interior errors" not in proc.stdout.split("verifier")[0]


def test_a_name_in_another_form_never_hides_what_the_verifier_refuses(tmp_path: Path) -> None:
    """An unknown critical extension under a case-differing issuer name: NOT VALID, as OpenSSL says (regress16)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    root = _root(ca_key, _name("Crit Root"))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(_name("f.example.com")).issuer_name(_name("CRIT ROOT"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(hours=1)).not_valid_after(NOW + dt.timedelta(days=10))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("f.example.com")]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"),
                           critical=True)
            .sign(ca_key, hashes.SHA256()))
    paths = _write(tmp_path, root=root, leaf=leaf)
    openssl_ok, proc = _both(tmp_path, paths["root"], paths["leaf"])
    assert not openssl_ok and proc.returncode == 1 and "NOT VALID" in proc.stdout, proc.stdout


def test_an_authority_key_identifier_naming_its_issuer_in_another_case_fits(tmp_path: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    root = _root(ca_key, _name("Case Root"))
    ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()).digest
    aki = x509.AuthorityKeyIdentifier(ski, [x509.DirectoryName(_name("CASE ROOT"))], root.serial_number)
    paths = _write(tmp_path, root=root, leaf=_leaf(ca_key, root.subject, aki=aki))
    openssl_ok, proc = _both(tmp_path, paths["root"], paths["leaf"])
    assert openssl_ok and proc.returncode == 0, proc.stdout


def test_an_ec_key_under_224_bits_is_too_weak(tmp_path: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    root = _root(ca_key, _name("Weak Root"))
    leaf = _leaf(ca_key, root.subject, aki=x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                 key=ec.generate_private_key(ec.SECP192R1()))
    paths = _write(tmp_path, root=root, leaf=leaf)
    assert openssl("verify", "-auth_level", "2", "-CAfile", paths["root"], paths["leaf"]).returncode != 0
    _ok, proc = _both(tmp_path, paths["root"], paths["leaf"])
    assert proc.returncode == 1 and "under 224 bits" in proc.stdout, proc.stdout


def test_an_intermediate_with_its_parents_name_and_another_key_type_is_no_root(tmp_path: Path) -> None:
    """Its signature (RSA, by its parent) is not one its own EC key could make: not self-signed, whatever the
    names say (regress15)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    parent_key = rsa.generate_private_key(65537, 2048)
    name = _name("Same Name CA")
    parent = _root(parent_key, name)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(inter_key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(hours=1))
             .not_valid_after(NOW + dt.timedelta(days=20))
             .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
             .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
             .sign(parent_key, hashes.SHA256()))
    leaf = _leaf(inter_key, name, aki=None)
    paths = _write(tmp_path, parent=parent, inter=inter, leaf=leaf)
    shown = run_certkit("inspect", paths["inter"], "--json", env=certkit_env()).stdout
    assert '"self_signed": false' in shown
    openssl_ok, proc = _both(tmp_path, paths["inter"], paths["leaf"])
    assert not openssl_ok and proc.returncode == 1, proc.stdout
