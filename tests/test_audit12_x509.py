"""The twelfth round's verification findings (audit x50912), each as a class, each against openssl:

1. a certificate without a DNS name whose common name (with a dot) is a host outside its CA's DNS name
   constraints is NOT VALID for either purpose, an IP address beside it or not: OpenSSL reads that CN
   (permitted subtree violation), and so do Python's ssl and GnuTLS;
2. a chain certkit checks itself (under an Ed25519 CA) reads the leaf's names as written, not by certkit's
   rules of issuing: a wildcard client name, '_svc' or a long label are no reason to refuse;
3. a subjectAltName marked critical beside a subject is VALID, as OpenSSL (-x509_strict too) says;
4. a subjectAltName with a final dot matches only the dotted name, as OpenSSL says; and no note claims a
   refusal that does not happen;
5. an intermediate without an authority key identifier, a root without a subject key identifier: VALID,
   with a note that strict verifiers (Python 3.13, openssl -x509_strict) refuse them;
6. the verifier's refusals name extensions in words, not OIDs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import PASSPHRASE, certkit_env, openssl, run_certkit


def _ca(tmp_path: Path, *args: str, key_type: str = "ecdsa-p256") -> tuple[dict, Path]:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path))
    run_certkit("init-ca", "--name", "Audit Root", "--key-type", key_type, *args, env=env, check=True)
    return env, tmp_path / "ca"


def _leaf(ca: Path, out: Path, *, cn: str = "leaf.example.com", dns=(), ips=(), client: bool = False,
          san_critical: bool = False) -> Path:
    """A leaf the CA's key signed, as a foreign tool would make it."""
    cert = x509.load_pem_x509_certificate((ca / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((ca / "ca-key.pem").read_bytes(), PASSPHRASE.encode())
    mine = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    built = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
             .issuer_name(cert.subject).public_key(mine.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
             .add_extension(x509.BasicConstraints(False, None), True)
             .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client
                                                   else ExtendedKeyUsageOID.SERVER_AUTH]), False)
             .add_extension(x509.SubjectAlternativeName(sans), san_critical)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(mine.public_key()), False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
             .sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()))
    out.write_bytes(built.public_bytes(serialization.Encoding.PEM))
    return out


def _verify(env, leaf: Path, purpose: str, *extra: str):
    return run_certkit("verify", leaf, "--purpose", purpose, "--ca-file", Path(env["CERTKIT_CA_DIR"]) / "ca.pem",
                       *extra, env=env)


def _openssl(ca: Path, leaf: Path, purpose: str, *extra: str) -> bool:
    return openssl("verify", "-purpose", "sslserver" if purpose == "server" else "sslclient", *extra,
                   "-CAfile", ca / "ca.pem", leaf).returncode == 0


@pytest.mark.parametrize("purpose", ["server", "client"])
@pytest.mark.parametrize("cn,inside", [("evil.other.org", False), ("10.9.9.9", False), ("in.example.com", True),
                                       ("nodot", True)])
def test_a_common_name_outside_the_constraints_beside_an_address(tmp_path: Path, purpose: str, cn: str,
                                                                 inside: bool) -> None:
    env, ca = _ca(tmp_path, "--permit-dns", "example.com", "--permit-ip", "10.0.0.0/8")
    leaf = _leaf(ca, tmp_path / "leaf.pem", cn=cn, ips=["10.1.2.3"], client=purpose == "client")
    said = _verify(env, leaf, purpose)
    assert (said.returncode == 0) == inside == _openssl(ca, leaf, purpose), said.stdout
    if not inside:
        assert "permitted subtree violation" in said.stdout and "it has no DNS name)" in said.stdout, said.stdout


def test_an_ed25519_chain_reads_names_as_written(tmp_path: Path) -> None:
    env, ca = _ca(tmp_path, key_type="ed25519")
    run_certkit("issue-peer", "www.example.com", "*.example.org", "--out", tmp_path / "peer", env=env, check=True)
    peer = tmp_path / "peer" / "cert.pem"
    for purpose in ("client", "server"):
        said = _verify(env, peer, purpose)
        assert said.returncode == 0 and _openssl(ca, peer, purpose, "-x509_strict"), said.stdout
    for name in ("_svc.example.com", "a" * 64 + ".example.com"):
        leaf = _leaf(ca, tmp_path / "odd.pem", dns=["leaf.example.com", name])
        said = _verify(env, leaf, "server", "--name", "leaf.example.com")
        assert said.returncode == 0 and "not valid" not in said.stdout, said.stdout
        assert _openssl(ca, leaf, "server", "-verify_hostname", "leaf.example.com")


@pytest.mark.parametrize("purpose", ["server", "client"])
def test_a_critical_san_beside_a_subject_is_valid(tmp_path: Path, purpose: str) -> None:
    env, ca = _ca(tmp_path)
    leaf = _leaf(ca, tmp_path / "crit.pem", dns=["leaf.example.com"], san_critical=True, client=purpose == "client")
    assert _openssl(ca, leaf, purpose, "-x509_strict")
    said = _verify(env, leaf, purpose)
    assert said.returncode == 0 and "VALID" in said.stdout, said.stdout


def test_a_critical_san_is_still_needed_beside_an_empty_subject(tmp_path: Path) -> None:
    env, ca = _ca(tmp_path)
    leaf = _leaf(ca, tmp_path / "empty.pem", cn="x", dns=["leaf.example.com"])
    # the same leaf with an empty subject and a SAN not critical: openssl -x509_strict refuses it, and so does verify
    cert = x509.load_pem_x509_certificate(leaf.read_bytes())
    key = serialization.load_pem_private_key((ca / "ca-key.pem").read_bytes(), PASSPHRASE.encode())
    rebuilt = x509.CertificateBuilder(issuer_name=cert.issuer, subject_name=x509.Name([]),
                                      public_key=cert.public_key(), serial_number=cert.serial_number,
                                      not_valid_before=cert.not_valid_before_utc,
                                      not_valid_after=cert.not_valid_after_utc,
                                      extensions=list(cert.extensions)).sign(key, hashes.SHA256())
    leaf.write_bytes(rebuilt.public_bytes(serialization.Encoding.PEM))
    assert not _openssl(ca, leaf, "server", "-x509_strict")
    said = _verify(env, leaf, "server")
    assert said.returncode == 1 and "must be marked critical" in said.stdout, said.stdout


def test_a_san_with_a_final_dot_matches_only_the_dotted_name(tmp_path: Path) -> None:
    env, ca = _ca(tmp_path)
    leaf = _leaf(ca, tmp_path / "dot.pem", dns=["leaf.example.com."])
    plain = _verify(env, leaf, "server", "--name", "leaf.example.com")
    assert not _openssl(ca, leaf, "server", "-verify_hostname", "leaf.example.com")
    assert plain.returncode == 1 and "leaf.example.com: does not match" in plain.stdout, plain.stdout
    dotted = _verify(env, leaf, "server", "--name", "leaf.example.com.")
    assert _openssl(ca, leaf, "server", "-verify_hostname", "leaf.example.com.")
    assert "leaf.example.com.: matches" in dotted.stdout, dotted.stdout
    assert "refuse the certificate (hostname mismatch)" not in dotted.stdout  # no refusal that does not happen
    assert "ends with a dot" in dotted.stdout and ".." not in dotted.stderr, dotted.stdout + dotted.stderr
    # a certificate naming the host without its dot, asked with it: the note says who refuses
    plain_leaf = _leaf(ca, tmp_path / "plain.pem", dns=["leaf.example.com"])
    noted = _verify(env, plain_leaf, "server", "--name", "leaf.example.com.")
    assert not _openssl(ca, plain_leaf, "server", "-verify_hostname", "leaf.example.com.")
    assert noted.returncode == 0 and "Python and OpenSSL clients connecting to that name refuse" in noted.stdout


def _chain_without(tmp_path: Path, missing: str) -> tuple[Path, Path, Path]:
    """root -> intermediate -> leaf (P-256), the intermediate without its AKI or the root without its SKI."""
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]
    names = [x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, n)]) for n in ("S Root", "S Int", "leaf.example.com")]
    now = dt.datetime.now(dt.UTC)
    certs = []
    for depth in range(3):
        issuer = 0 if depth == 0 else depth - 1
        b = (x509.CertificateBuilder().subject_name(names[depth]).issuer_name(names[issuer])
             .public_key(keys[depth].public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30)))
        if depth < 2:
            b = b.add_extension(x509.BasicConstraints(True, None), True).add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
        else:
            b = b.add_extension(x509.BasicConstraints(False, None), True).add_extension(
                x509.KeyUsage(True, False, False, False, False, False, False, False, False), True).add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False).add_extension(
                x509.SubjectAlternativeName([x509.DNSName("leaf.example.com")]), False)
        if not (missing == "ski" and depth == 0):
            b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(keys[depth].public_key()), False)
        if depth > 0 and not (missing == "aki" and depth == 1):
            b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(keys[issuer].public_key()), False)
        certs.append(b.sign(keys[issuer], hashes.SHA256()))
    paths = [tmp_path / f"{n}.pem" for n in ("root", "int", "leaf")]
    for path, cert in zip(paths, certs, strict=True):
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return tuple(paths)


@pytest.mark.parametrize("missing,words", [("aki", "authority key identifier"), ("ski", "subject key identifier")])
def test_what_only_strict_verifiers_refuse_is_noted(tmp_path: Path, missing: str, words: str) -> None:
    root, inter, leaf = _chain_without(tmp_path, missing)
    relaxed = openssl("verify", "-CAfile", root, "-untrusted", inter, leaf)
    strict = openssl("verify", "-x509_strict", "-CAfile", root, "-untrusted", inter, leaf)
    assert relaxed.returncode == 0 and strict.returncode != 0, (relaxed.stdout, strict.stdout)
    full = tmp_path / "full.pem"
    full.write_bytes(leaf.read_bytes() + inter.read_bytes())
    said = run_certkit("verify", full, "--purpose", "server", "--ca-file", root, env=certkit_env(HOME=str(tmp_path)))
    assert said.returncode == 0, said.stdout
    assert f"has no {words}" in said.stdout and "Python 3.13" in said.stdout, said.stdout


def test_the_verifiers_refusals_name_extensions_in_words(tmp_path: Path) -> None:
    # a leaf without its authority key identifier: refused by cryptography's verifier; said with the name
    env, ca = _ca(tmp_path)
    foreign = _leaf(ca, tmp_path / "noaki.pem", dns=["leaf.example.com"])
    bare = x509.load_pem_x509_certificate(foreign.read_bytes())
    ca_key = serialization.load_pem_private_key((ca / "ca-key.pem").read_bytes(), PASSPHRASE.encode())
    no_aki = x509.CertificateBuilder(issuer_name=bare.issuer, subject_name=bare.subject, public_key=bare.public_key(),
                                     serial_number=bare.serial_number, not_valid_before=bare.not_valid_before_utc,
                                     not_valid_after=bare.not_valid_after_utc,
                                     extensions=[e for e in bare.extensions
                                                 if not isinstance(e.value, x509.AuthorityKeyIdentifier)])
    foreign.write_bytes(no_aki.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    said = _verify(env, foreign, "server")
    reason = next(line for line in said.stdout.splitlines() if line.strip().startswith("reason"))
    assert said.returncode == 1 and "authorityKeyIdentifier" in reason and "2.5.29.35:" not in reason, said.stdout


# --- regress18: the common-name rule is each peer's own, and a wildcard with a final dot matches nothing ----------
@pytest.mark.parametrize("cn,openssl_reads", [("my_host.other.com", True), ("host.other.com.", False),
                                              ("a-.other.com", False), ("x.-b.other.com", False)])
def test_the_common_name_rule_is_openssls_own(tmp_path: Path, cn: str, openssl_reads: bool) -> None:
    env, ca = _ca(tmp_path, "--permit-dns", "example.internal", "--permit-ip", "10.0.0.0/8")
    leaf = _leaf(ca, tmp_path / "leaf.pem", cn=cn, ips=["10.0.0.5"])
    said = _verify(env, leaf, "server")
    assert _openssl(ca, leaf, "server") != openssl_reads  # OpenSSL refuses exactly the names it reads
    assert (said.returncode == 1) == openssl_reads, said.stdout
    if openssl_reads:
        assert "OpenSSL (permitted subtree violation) and Python's ssl clients refuse it" in said.stdout, said.stdout


def test_issuing_refuses_a_client_name_openssl_reads_and_names_only_who_reads_it(tmp_path: Path) -> None:
    env, ca = _ca(tmp_path, "--permit-dns", "example.internal")
    refused = run_certkit("issue-client", "my_host.other.com", "--out", tmp_path / "u", env=env)
    assert refused.returncode == 1 and "OpenSSL" in refused.stderr and "Java" not in refused.stderr, refused.stderr
    # Neither OpenSSL nor Java reads 'host.other.com.' as a host name (the final dot: Java's DNSName refuses it,
    # and a Java PKIX validator accepts such a certificate below a constrained intermediate, run in
    # tests/test_audit19_peers.py; round twelve took Java to read it): issued under the root and below it.
    run_certkit("issue-client", "host.other.com.", "--out", tmp_path / "r", env=env, check=True)
    run_certkit("init-ca", "--ca-dir", tmp_path / "issuing", "--parent-ca-dir", ca, "--name", "Audit Issuing",
                env={**env, "CERTKIT_PARENT_CA_PASSPHRASE": PASSPHRASE}, check=True)
    run_certkit("issue-client", "--ca-dir", tmp_path / "issuing", "host.other.com.", "--out", tmp_path / "t",
                env=env, check=True)
    assert not (tmp_path / "u").exists()


def test_a_wildcard_with_a_final_dot_matches_nothing(tmp_path: Path) -> None:
    env, ca = _ca(tmp_path)
    leaf = _leaf(ca, tmp_path / "w.pem", dns=["*.example.com."])
    for name in ("a.example.com.", "a.example.com"):
        assert not _openssl(ca, leaf, "server", "-verify_hostname", name)
        said = _verify(env, leaf, "server", "--name", name)
        assert said.returncode == 1 and f"{name}: does not match" in said.stdout, said.stdout
        assert "match it to" not in said.stdout


# --- peers10: critical extensions as OpenSSL handles them, and the verifier's words true to the certificate --------
def _custom_leaf(ca: Path, out: Path, extra, *, ski_critical: bool = False, key_usage=None) -> Path:
    """A localhost server leaf the CA's key signed, with ``extra`` extensions (Extension value, critical)."""
    cert = x509.load_pem_x509_certificate((ca / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((ca / "ca-key.pem").read_bytes(), PASSPHRASE.encode())
    mine = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usage = key_usage or x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
               .issuer_name(cert.subject).public_key(mine.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(False, None), True).add_extension(usage, True)
               .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(mine.public_key()), ski_critical)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False))
    for value, critical in extra:
        builder = builder.add_extension(value, critical)
    out.write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return out


def test_a_critical_extension_openssl_does_not_handle_is_not_valid(tmp_path: Path) -> None:
    env, ca = _ca(tmp_path)
    eku = (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
    leaf = _custom_leaf(ca, tmp_path / "ski.pem", [eku], ski_critical=True)
    refused = openssl("verify", "-purpose", "sslserver", "-CAfile", ca / "ca.pem", leaf)
    assert refused.returncode != 0 and b"unhandled critical extension" in refused.stdout + refused.stderr
    said = _verify(env, leaf, "server")
    assert said.returncode == 1 and "subjectKeyIdentifier (2.5.29.14) extension critical" in said.stdout, said.stdout
    assert "unhandled critical extension" in said.stdout


def test_the_verifiers_criticality_words_are_true(tmp_path: Path) -> None:
    env, ca = _ca(tmp_path)
    eku = (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
    cdp = (x509.CRLDistributionPoints([x509.DistributionPoint([x509.UniformResourceIdentifier(
        "http://crl.example/ca.crl")], None, None, None)]), True)
    leaf = _custom_leaf(ca, tmp_path / "cdp.pem", [eku, cdp])
    assert openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", ca / "ca.pem", leaf).returncode == 0
    said = _verify(env, leaf, "server")
    # Round twenty: OpenSSL accepts it, so it is valid; the note says who refuses it (Java), in true words.
    note = next(line for line in said.stdout.splitlines() if line.strip().startswith("note"))
    assert said.returncode == 0 and "critical cRLDistributionPoints (2.5.29.31) extension of the leaf" in note, note
    assert "certificate certificate" not in note and "Java refuses it" in note, note


def test_a_leaf_asserting_keycertsign_is_usable_with_a_beware(tmp_path: Path) -> None:
    env, ca = _ca(tmp_path)
    eku = (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
    usage = x509.KeyUsage(True, False, False, False, False, True, False, False, False)  # digitalSignature, keyCertSign
    leaf = _custom_leaf(ca, tmp_path / "kcs.pem", [eku], key_usage=usage)
    assert openssl("verify", "-purpose", "sslserver", "-CAfile", ca / "ca.pem", leaf).returncode == 0
    usable = next(line for line in run_certkit("inspect", leaf, env=env, check=True).stdout.splitlines()
                  if "Usable for" in line)
    assert "TLS server authentication" in usable and "beware" in usable and "Python 3.13" in usable, usable
    assert "nothing TLS can use" not in usable


def test_a_critical_policy_extension_is_valid_with_who_accepts_it(tmp_path: Path) -> None:
    """regress19: cryptography refuses a critical certificatePolicies, which OpenSSL (-x509_strict too) and Java
    take: the reason names the extension and does not put Java among those who refuse it."""
    env, ca = _ca(tmp_path)
    eku = (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
    policies = (x509.CertificatePolicies([x509.PolicyInformation(x509.ObjectIdentifier("2.23.140.1.2.1"), None)]),
                True)
    leaf = _custom_leaf(ca, tmp_path / "pol.pem", [eku, policies])
    assert openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", ca / "ca.pem", leaf).returncode == 0
    said = _verify(env, leaf, "server")
    # Round twenty: OpenSSL accepts it, so it is valid, with a note naming it and who accepts it.
    note = next(line for line in said.stdout.splitlines() if line.strip().startswith("note"))
    assert said.returncode == 0 and "certificatePolicies (2.5.29.32)" in note, note
    assert "GnuTLS and Java accept it too" in note, note
