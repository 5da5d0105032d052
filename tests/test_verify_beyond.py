"""certkit verify where cryptography's web-PKI verifier says too little or too much, checked against
the openssl binary: a keyUsage that no TLS handshake can use is refused (the verifier does not look,
OpenSSL does), and chains the verifier cannot judge (URI name constraints, which certkit puts on every
constrained CA; an Ed25519 CA) are checked by certkit itself, so that what OpenSSL accepts is VALID
and what it refuses is not."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certkit.errors import CertkitError

from conftest import assert_clean_error, certkit_env, openssl, run_certkit


def make_ca(tmp_path: Path, name: str, *args: str) -> tuple[Path, dict]:
    ca_dir = tmp_path / name
    env = certkit_env(CERTKIT_CA_DIR=str(ca_dir))
    run_certkit("init-ca", "--no-passphrase", "--name", name, *args, env=env, check=True)
    return ca_dir, env


def hand_made(ca_dir: Path, out: Path, *, eku, key_usage: dict | None = None, sans=(), cn: str = "hand",
              days: int = 30, start: dt.datetime | None = None) -> Path:
    """A leaf signed with the CA's key by cryptography directly: what certkit would never issue."""
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca-key.pem").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    start = start or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
               .add_extension(x509.ExtendedKeyUsage(eku), critical=False))
    if key_usage is not None:
        bits = dict(digital_signature=False, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                    encipher_only=False, decipher_only=False) | key_usage
        builder = builder.add_extension(x509.KeyUsage(**bits), critical=True)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    algorithm = None if isinstance(ca_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    out.write_bytes(builder.sign(ca_key, algorithm).public_bytes(serialization.Encoding.PEM))
    return out


def verdict(env, cert: Path, purpose: str, *name: str) -> dict:
    proc = run_certkit("verify", cert, "--purpose", purpose, *(("--name", name[0]) if name else ()), "--json", env=env)
    data = json.loads(proc.stdout)
    assert proc.returncode == (0 if data["valid"] else 1), proc.stderr
    return data


def openssl_ok(ca_dir: Path, cert: Path, purpose: str) -> bool:
    ssl_purpose = {"server": "sslserver", "client": "sslclient"}[purpose]
    return openssl("verify", "-x509_strict", "-purpose", ssl_purpose, "-CAfile", ca_dir / "ca.pem",
                   cert).returncode == 0


SERVER, CLIENT = [ExtendedKeyUsageOID.SERVER_AUTH], [ExtendedKeyUsageOID.CLIENT_AUTH]


@pytest.mark.parametrize(("purpose", "eku", "bits", "valid"), [
    ("server", SERVER, {"content_commitment": True}, False),
    ("server", SERVER, {"data_encipherment": True}, False),
    ("server", SERVER, {"key_encipherment": True}, True),  # RSA key exchange: a server may
    ("server", SERVER, {"digital_signature": True}, True),
    ("client", CLIENT, {"content_commitment": True}, False),
    ("client", CLIENT, {"data_encipherment": True}, False),
    ("client", CLIENT, {"key_encipherment": True}, False),  # a client has nothing to sign with
    ("client", CLIENT, {"digital_signature": True}, True),
])
def test_a_key_usage_no_handshake_can_use_is_refused_as_openssl_refuses_it(tmp_path, purpose, eku, bits, valid):
    ca_dir, env = make_ca(tmp_path, "KU")
    cert = hand_made(ca_dir, tmp_path / "leaf.pem", eku=eku, key_usage=bits, sans=[x509.DNSName("ku.example.com")])
    assert openssl_ok(ca_dir, cert, purpose) is valid
    data = verdict(env, cert, purpose)
    assert data["valid"] is valid, data
    if not valid:
        assert any("keyUsage" in r and f"a TLS {purpose} needs" in r for r in data["reasons"]), data


def test_uri_names_under_name_constraints_are_judged_by_certkit(tmp_path):
    ca_dir, env = make_ca(tmp_path, "NC", "--permit-dns", "example.com", "--permit-ip", "10.0.0.0/8")
    run_certkit("issue-client", "Svc One", "--uri", "spiffe://x.example.com/x", "--out", tmp_path / "svc", env=env,
                check=True)
    cert = tmp_path / "svc" / "cert.pem"
    assert openssl_ok(ca_dir, cert, "client")
    data = verdict(env, cert, "client", "spiffe://x.example.com/x")
    assert data["valid"] and data["verifier_error"] is None and data["chain"] == ["CN=Svc One", "CN=NC"]
    assert any("cannot judge" in n and "URI name constraints" in n for n in data["notes"])
    # A URI outside the constraints (made by hand: certkit refuses to issue it): refused by both.
    outside = hand_made(ca_dir, tmp_path / "evil.pem", eku=CLIENT, key_usage={"digital_signature": True},
                        sans=[x509.UniformResourceIdentifier("spiffe://evil.org/x")])
    assert not openssl_ok(ca_dir, outside, "client")
    data = verdict(env, outside, "client")
    assert not data["valid"] and any("outside the name constraints of CN=NC" in r for r in data["reasons"]), data
    # Its purpose and dates are still checked.
    assert not verdict(env, cert, "server")["valid"]
    old = hand_made(ca_dir, tmp_path / "old.pem", eku=CLIENT, key_usage={"digital_signature": True}, days=1,
                    sans=[x509.UniformResourceIdentifier("spiffe://x.example.com/old")],
                    start=dt.datetime.now(dt.UTC) - dt.timedelta(days=10))
    assert not openssl_ok(ca_dir, old, "client")
    assert not verdict(env, old, "client")["valid"]


def test_an_ed25519_cas_certificates_are_judged_by_certkit(tmp_path):
    ca_dir, env = make_ca(tmp_path, "Ed", "--key-type", "ed25519")
    run_certkit("issue-server", "www.example.com", "--out", tmp_path / "s", env=env, check=True)
    cert = tmp_path / "s" / "cert.pem"
    assert openssl_ok(ca_dir, cert, "server")
    data = verdict(env, cert, "server", "www.example.com")
    assert data["valid"] and any("not Ed25519" in n for n in data["notes"]), data
    assert not verdict(env, cert, "server", "other.example.com")["valid"]
    assert not verdict(env, cert, "client")["valid"]
    old = hand_made(ca_dir, tmp_path / "old.pem", eku=SERVER, key_usage={"digital_signature": True}, days=1,
                    sans=[x509.DNSName("www.example.com")], start=dt.datetime.now(dt.UTC) - dt.timedelta(days=10))
    assert not openssl_ok(ca_dir, old, "server")
    data = verdict(env, old, "server")
    assert not data["valid"] and any("expired" in r for r in data["reasons"])
    # Signed by another Ed25519 CA of the same name: the signature is checked, by certkit too.
    other, _env = make_ca(tmp_path / "x", "Ed", "--key-type", "ed25519")
    forged = hand_made(other, tmp_path / "forged.pem", eku=SERVER, key_usage={"digital_signature": True},
                       sans=[x509.DNSName("www.example.com")])
    assert not openssl_ok(ca_dir, forged, "server")
    assert not verdict(env, forged, "server")["valid"]


@pytest.mark.parametrize("cn", ["evil.org", "evil"])
@pytest.mark.parametrize("san", ["email", "uri", None])
def test_a_client_cn_outside_dns_constraints_is_not_valid_as_openssl_says(tmp_path: Path, san: str | None,
                                                                          cn: str) -> None:
    """A client certificate with no DNS name whose CN reads as a host name outside the DNS constraints of
    a root CA: OpenSSL refuses it when the name has a dot (permitted subtree violation); certkit does not
    issue it, and verify agrees (it said VALID). Java ignores a trusted root's own constraints (proven with
    JSSE in tests/test_audit13_peers.py), so 'evil', which OpenSSL accepts too, is issued and VALID, and no
    reason names Java (they did: "Java would reject it")."""
    from certkit.store import CADirectory

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE="a long passphrase 12")
    run_certkit("init-ca", "--name", "Constrained", "--permit-dns", "example.com", env=env, check=True)
    ca = CADirectory(tmp_path / "ca").load("a long passphrase 12")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    names = {"email": [x509.RFC822Name("alice@example.com")],
             "uri": [x509.UniformResourceIdentifier("spiffe://example.com/alice")], None: []}[san]
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.cert.public_key()), critical=False))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca.key, hashes.SHA256())
    (tmp_path / "evil.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    checked = openssl("verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", tmp_path / "ca" / "ca.pem",
                      tmp_path / "evil.pem")
    openssl_refuses = "." in cn
    assert (checked.returncode != 0) == openssl_refuses, checked.stdout + checked.stderr
    assert (b"permitted subtree violation" in checked.stdout + checked.stderr) == openssl_refuses
    proc = run_certkit("verify", tmp_path / "evil.pem", "--purpose", "client", "--ca-file", tmp_path / "ca" / "ca.pem",
                       "--json", env=env)
    data = json.loads(proc.stdout)
    if not openssl_refuses:  # no peer reads it against a root's constraints
        assert proc.returncode == 0 and data["valid"] is True, data
        assert ca.issue_client(cn).cert.subject.rfc4514_string() == f"CN={cn}"
        return
    assert proc.returncode == 1 and data["valid"] is False, data
    [reason] = [r for r in data["reasons"] if f"common name '{cn}' reads as a host name" in r]
    assert "OpenSSL" in reason and "Java" not in reason, reason
    # the library refuses to issue it, naming its own parameter; the command line names its option
    with pytest.raises(CertkitError, match=r"dns_names=\['evil\.example\.com'\]") as refused:
        ca.issue_client(cn)
    assert "OpenSSL" in str(refused.value) and "Java" not in str(refused.value)
    proc = run_certkit("issue-client", cn, "--out", tmp_path / "issued", env=env)
    assert_clean_error(proc, "(--dns evil.example.com)")
