"""Every profile, for every key type: the extensions, and what real peers make of them.

Peers: the openssl binary (verify -x509_strict -purpose), pkilint's PKIX linters,
and cryptography's X.509 verifiers.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509 import verification as v

from certkit.ca import CA
from certkit.keys import KEY_TYPES, key_type_of

from conftest import openssl, pkilint_errors
from x509_asserts import assert_is_ca, assert_is_leaf, ext

SERVER_NAMES = ["www.example.com", "api.example.com", "192.0.2.10", "2001:db8::10"]


@pytest.fixture(scope="module", params=KEY_TYPES)
def issued(request, tmp_path_factory) -> dict:
    """A CA, a server and a client certificate of one key type, written to files."""
    key_type = request.param
    ca = CA.create("certkit profile test CA", key_type=key_type)
    server = ca.issue_server(SERVER_NAMES, key_type=key_type)
    client = ca.issue_client("alice@example.com", dns_names=["alice-laptop.example.com"], key_type=key_type)
    folder = tmp_path_factory.mktemp(key_type)
    server.write(folder / "server")
    client.write(folder / "client")
    return {"key_type": key_type, "ca": ca, "server": server, "client": client, "dir": folder}


def test_key_types(issued) -> None:
    assert key_type_of(issued["ca"].cert.public_key()) == issued["key_type"]
    assert key_type_of(issued["server"].cert.public_key()) == issued["key_type"]


def test_ca_profile(issued) -> None:
    ca = issued["ca"].cert
    assert_is_ca(ca, path_length=1)
    assert ca.subject == ca.issuer
    assert ext(ca, x509.AuthorityKeyIdentifier).value.key_identifier == ext(ca, x509.SubjectKeyIdentifier).value.digest
    life = ca.not_valid_after_utc - ca.not_valid_before_utc + dt.timedelta(seconds=1)
    assert life == dt.timedelta(days=3650)


def test_server_profile(issued) -> None:
    cert = issued["server"].cert
    assert_is_leaf(cert, issued["ca"].cert, "server")
    san = ext(cert, x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.DNSName) == SERVER_NAMES[:2]
    assert [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)] == SERVER_NAMES[2:]
    assert cert.subject.rfc4514_string() == "CN=www.example.com"
    # 200 days counted inclusively: notAfter - notBefore + 1 second
    assert cert.not_valid_after_utc - cert.not_valid_before_utc + dt.timedelta(seconds=1) == dt.timedelta(days=200)


def test_client_profile(issued) -> None:
    cert = issued["client"].cert
    assert_is_leaf(cert, issued["ca"].cert, "client")
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["alice@example.com"]
    assert san.get_values_for_type(x509.DNSName) == ["alice-laptop.example.com"]
    assert cert.subject.rfc4514_string() == "CN=alice@example.com"


def _verify(cert: Path, ca: Path, purpose: str, *extra: str):
    return openssl("verify", "-x509_strict", "-CAfile", ca, "-purpose", purpose, *extra, cert)


def test_openssl_accepts_each_certificate_for_its_purpose_only(issued) -> None:
    d = issued["dir"]
    ca = d / "server" / "ca.pem"
    for host in ("www.example.com", "api.example.com"):
        ok = _verify(d / "server" / "cert.pem", ca, "sslserver", "-verify_hostname", host)
        assert ok.returncode == 0, ok.stderr
    for ip in ("192.0.2.10", "2001:db8::10"):
        assert _verify(d / "server" / "cert.pem", ca, "sslserver", "-verify_ip", ip).returncode == 0
    wrong_host = _verify(d / "server" / "cert.pem", ca, "sslserver", "-verify_hostname", "other.example.com")
    assert wrong_host.returncode != 0 and b"hostname mismatch" in wrong_host.stdout + wrong_host.stderr
    bad = _verify(d / "server" / "cert.pem", ca, "sslclient")
    assert bad.returncode != 0 and b"unsuitable certificate purpose" in bad.stdout + bad.stderr

    assert _verify(d / "client" / "cert.pem", ca, "sslclient").returncode == 0
    bad = _verify(d / "client" / "cert.pem", ca, "sslserver")
    assert bad.returncode != 0 and b"unsuitable certificate purpose" in bad.stdout + bad.stderr


def test_pkilint_reports_no_errors(issued, tmp_path: Path) -> None:
    d = issued["dir"]
    ca = d / "server" / "ca.pem"
    for leaf in (d / "server" / "cert.pem", d / "client" / "cert.pem"):
        assert pkilint_errors(leaf) == ""
        assert pkilint_errors(ca, leaf) == ""
    assert pkilint_errors(ca) == ""


def test_spiffe_uri_only_trips_pkilints_web_url_check(tmp_path: Path) -> None:
    """pkilint checks URIs with validators.url, which knows only web schemes; a SPIFFE ID
    (RFC 3986-valid) is its one finding, and every other linter is clean."""
    ca = CA.create("certkit spiffe test CA")
    ca.issue_client("billing", uris=["spiffe://example.com/ns/prod/sa/billing"]).write(tmp_path / "c")
    findings = pkilint_errors(tmp_path / "c" / "cert.pem")
    assert [line for line in findings.splitlines() if "(ERROR)" in line] == [
        '    pkix.invalid_uri_syntax (ERROR): Invalid URI syntax: "spiffe://example.com/ns/prod/sa/billing"']
    assert pkilint_errors(tmp_path / "c" / "ca.pem", tmp_path / "c" / "cert.pem") == ""


def test_cryptography_verifiers(issued) -> None:
    if issued["key_type"] == "ed25519":
        # cryptography's verifier applies the CA/Browser Forum profile, which (like
        # browsers) admits only RSA and ECDSA keys; certkit says so when it issues.
        with pytest.raises(v.VerificationError, match="Forbidden public key algorithm"):
            v.PolicyBuilder().store(v.Store([issued["ca"].cert])).build_client_verifier().verify(
                issued["client"].cert, [])
        assert any("Ed25519" in note for note in issued["server"].notes)
        return
    store = v.Store([issued["ca"].cert])
    server, client = issued["server"].cert, issued["client"].cert
    for name in (v.DNSName("www.example.com"), v.IPAddress(__import__("ipaddress").ip_address("2001:db8::10"))):
        chain = v.PolicyBuilder().store(store).build_server_verifier(name).verify(server, [])
        assert chain[0] == server
    verified = v.PolicyBuilder().store(store).build_client_verifier().verify(client, [])
    assert verified.chain[0] == client
    with pytest.raises(v.VerificationError, match="EKU"):
        v.PolicyBuilder().store(store).build_client_verifier().verify(server, [])


def test_server_verifier_rejects_client_certificate_for_its_purpose() -> None:
    ca = CA.create("certkit eku test CA")
    client = ca.issue_client("device", dns_names=["device.example.com"])  # the name matches; only the EKU differs
    with pytest.raises(v.VerificationError, match="EKU"):
        v.PolicyBuilder().store(v.Store([ca.cert])).build_server_verifier(
            v.DNSName("device.example.com")).verify(client.cert, [])


def test_client_without_identities_carries_its_dn(tmp_path: Path) -> None:
    ca = CA.create("certkit dn test CA")
    client = ca.issue_client("alice")
    san = ext(client.cert, x509.SubjectAlternativeName).value
    assert list(san) == [x509.DirectoryName(client.cert.subject)]
    verified = v.PolicyBuilder().store(v.Store([ca.cert])).build_client_verifier().verify(client.cert, [])
    assert verified.subjects == [x509.DirectoryName(client.cert.subject)]
    client.write(tmp_path / "alice")
    assert pkilint_errors(tmp_path / "alice" / "cert.pem") == ""
    assert _verify(tmp_path / "alice" / "cert.pem", tmp_path / "alice" / "ca.pem", "sslclient").returncode == 0


def test_name_constraints_are_critical_and_enforced(tmp_path: Path) -> None:
    ca = CA.create("certkit constrained CA", permitted_dns=["example.com"], permitted_ips=["192.0.2.0/24"])
    nc = ext(ca.cert, x509.NameConstraints)
    assert nc.critical
    assert [g.value for g in nc.value.permitted_subtrees] == [
        "example.com", "example.com", ".example.com", "example.com", ".example.com",
        __import__("ipaddress").ip_network("192.0.2.0/24")]
    assert [type(g).__name__ for g in nc.value.permitted_subtrees] == [
        "DNSName", "RFC822Name", "RFC822Name", "UniformResourceIdentifier", "UniformResourceIdentifier", "IPAddress"]
    ok = ca.issue_server(["a.example.com", "192.0.2.7"])
    ok.write(tmp_path / "ok")
    assert _verify(tmp_path / "ok" / "cert.pem", tmp_path / "ok" / "ca.pem", "sslserver").returncode == 0
    assert pkilint_errors(tmp_path / "ok" / "ca.pem") == ""
    from certkit.errors import NameNotPermitted

    for outside in (["evil.org"], ["a.example.com", "198.51.100.1"], ["example.com.evil.org"]):
        with pytest.raises(NameNotPermitted, match="outside the name constraints"):
            ca.issue_server(outside)


def test_dns_only_constraints_exclude_all_ip_addresses() -> None:
    ca = CA.create("certkit dns-only CA", permitted_dns=["internal.example"])
    nc = ext(ca.cert, x509.NameConstraints).value
    assert {str(g.value) for g in nc.excluded_subtrees} == {"0.0.0.0/0", "::/0"}
    from certkit.errors import NameNotPermitted

    with pytest.raises(NameNotPermitted):
        ca.issue_server(["db.internal.example", "10.0.0.1"])


def test_long_first_name_gives_empty_subject_and_critical_san(tmp_path: Path) -> None:
    ca = CA.create("certkit long-name CA")
    long_name = ("a" * 60) + ".example.com"  # 72 characters: too long for a CN
    cert = ca.issue_server([long_name]).cert
    assert len(cert.subject) == 0
    assert ext(cert, x509.SubjectAlternativeName).critical


def test_validity_before_the_issuer_is_refused_with_the_reason() -> None:
    from certkit.errors import InvalidLifetime

    ca = CA.create("certkit young CA")
    with pytest.raises(InvalidLifetime, match="before the CA 'certkit young CA' became valid"):
        ca.issue_client("a", not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=30), days=5)


@pytest.mark.parametrize(("ca_key", "leaf_key", "noted"), [("ecdsa-p256", "ecdsa-p256", False),
                                                           ("ecdsa-p256", "ed25519", True),
                                                           ("ed25519", "ecdsa-p256", True),
                                                           ("rsa-2048", "rsa-2048", False)])
def test_ed25519_on_either_side_is_noted(ca_key: str, leaf_key: str, noted: bool) -> None:
    ca = CA.create("notes CA", key_type=ca_key)
    issued = ca.issue_server(["web.example.com"], key_type=leaf_key)
    assert any("Ed25519" in note for note in issued.notes) is noted
    assert key_type_of(issued.private_key) == leaf_key
