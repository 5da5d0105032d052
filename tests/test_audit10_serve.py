"""Audit serve10, against real peers on 127.0.0.1 (certkit serve as a process, curl), and trust --nss in a
temporary home, each as a class:

1. --client-ca of two CAs: a client of the one whose inventory serve does not read gets "not checked for
   revocation" in the text and the JSON too, as the page said (the decision was per server, not per visit);
2. probe says what OpenSSL does with a CA certificate given as a client's: it takes it (unit: the words);
3. default serve says when it supplied the intermediate CA the client did not send (a real server given only
   the root refuses that client); with the full chain sent, it says nothing;
4. trust install asks before trusting a CA that may sign any IP address (0.0.0.0/0, ::/0, or no IP limit);
6. the page's last rule line says a certificate without a CN maps no user;
7. the rule line of a certificate from another CA of the same name says so;
8. the warning about an unencrypted key says what it could impersonate, not "no DNS names".
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_audit9_serve import FILES, _curl, _env, _rules, lab  # noqa: F401 (lab: the module's fixture)

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit
from serve_process import serving


# --- 1. two CAs in one --client-ca -----------------------------------------------------------------------------
def test_a_client_of_the_second_client_ca_is_told_revocation_was_not_checked(lab: Path) -> None:  # noqa: F811
    both = lab / "both-cas.pem"
    both.write_bytes((lab / "ca" / "ca.pem").read_bytes() + (lab / "other" / "ca.pem").read_bytes())
    with serving(*FILES, "--client-ca", str(both), env=_env(lab), cwd=lab) as srv:
        text, code = _curl(lab, srv.port, "mallory")
        data, _ = _curl(lab, srv.port, "mallory", "json")
        alice, _ = _curl(lab, srv.port, "alice")
        alice_json, _ = _curl(lab, srv.port, "alice", "json")
    assert code == "200" and "revocation   not checked for revocation: it is not under" in text, text
    assert json.loads(data)["not_checked"] and "Lab CA" in json.loads(data)["not_checked"][0]
    assert "not checked" not in alice and json.loads(alice_json)["not_checked"] == []


# --- 2. probe's words about a CA certificate given as a client's -------------------------------------------------
def test_probe_says_openssl_takes_a_ca_certificate_as_a_client_certificate() -> None:
    from certkit.probe_client_verdict import _lax_purpose, _no_client_auth

    result = SimpleNamespace(client_eku=["clientAuth"], client_openssl_purpose=None,
                             client_purpose="this is a CA certificate: it signs certificates and is not a TLS "
                                            "client certificate")
    said = _lax_purpose(result)
    assert "OpenSSL-based servers (nginx, Python's ssl) take it" in said and "does not check" not in said
    assert _no_client_auth(result) == ""  # not why a handshake failed: OpenSSL takes it
    # a CA certificate whose keyUsage OpenSSL refuses for a client (certkit's: keyCertSign, cRLSign) (audit serve11)
    result.client_openssl_purpose = "its keyUsage (keyCertSign, cRLSign) has no digitalSignature"
    said = _lax_purpose(result)
    assert "take it" not in said and "does not check a client certificate's purpose as OpenSSL does" in said
    assert "keyUsage" in _no_client_auth(result)


# --- 3. the intermediate the client did not send ------------------------------------------------------------------
def test_default_serve_says_it_supplied_the_intermediate(lab: Path) -> None:  # noqa: F811
    with serving(*FILES, env=_env(lab), cwd=lab) as srv:
        alone, code = _curl(lab, srv.port, "carol")
        alone_json, _ = _curl(lab, srv.port, "carol", "json")
        full, _ = _curl(lab, srv.port, "carol", pem="fullchain.pem")
        full_json, _ = _curl(lab, srv.port, "carol", "json", pem="fullchain.pem")
        logged = srv.wait_for_log("which this server supplied")
    assert code == "200" and "note         your client did not send CN=Lab Issuing" in alone, alone
    assert json.loads(alone_json)["supplied_by_server"] == ["CN=Lab Issuing"]
    assert "did not send" not in full and json.loads(full_json)["supplied_by_server"] == []
    assert len(logged) >= 1 and "client \"carol\"" in logged[0]
    # a real server given only the root refuses the certificate sent alone, as the note says
    proc = subprocess.run(["openssl", "verify", "-CAfile", str(lab / "ca" / "ca.pem"), str(lab / "carol" / "cert.pem")],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "unable to get local issuer certificate" in proc.stdout + proc.stderr


# --- 4. trust: a CA that may sign any IP address ----------------------------------------------------------------------
@pytest.mark.parametrize(("ips", "asks"), [(("0.0.0.0/0", "::/0"), True), (("0.0.0.0/1",), True),
                                           (("8.0.0.0/8",), True), (("2001::/16",), True),
                                           (("10.0.0.0/8",), False), (("fd00::/8",), False), (("fc00::/7",), False),
                                           (("fe80::/10",), False), (("8.8.8.0/24",), False), ((), False),
                                           # shared address space (RFC 6598: CGNAT, Tailscale) is no one's public
                                           # range (audit regress14); a /8 around private ones still holds some
                                           (("100.64.0.0/10",), False), (("198.18.0.0/15",), False),
                                           (("192.0.0.0/8",), True)])
def test_trust_asks_before_a_ca_that_may_sign_any_ip_address(tmp_path, ips, asks):
    home = tmp_path / "home"
    home.mkdir()
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(home), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "IP CA", "--permit-dns", "localhost",
                *[arg for ip in ips for arg in ("--permit-ip", ip)], env=env, check=True)
    proc = run_certkit("trust", "install", "--nss", env=env, input="")
    if asks:
        assert_clean_error(proc, "holds public addresses, other people's servers among them")
        assert not (home / ".pki").exists()
        status = json.loads(run_certkit("trust", "status", "--nss", "--json", env=env).stdout)
        assert status["ca"]["limits_ips"] is False
    else:
        assert proc.returncode == 0, proc.stderr
        run_certkit("trust", "uninstall", "--nss", env=env, check=True)
    assert not (home / ".pki").exists()


def test_another_tools_ca_limited_to_dns_names_alone_may_sign_any_address(tmp_path):
    from cryptography import x509

    from certkit.constraints import build
    from certkit.trust.anchor import Anchor

    nc = build(["example.internal"], [])
    assert Anchor.__dict__["wide_ips"].fget(SimpleNamespace(constraints=nc)) == []  # certkit's: every address out
    foreign = x509.NameConstraints(permitted_subtrees=[x509.DNSName("example.internal")], excluded_subtrees=None)
    assert Anchor.__dict__["wide_ips"].fget(SimpleNamespace(constraints=foreign)) == ["any IP address"]


# --- 6 and 7. the rule's words ---------------------------------------------------------------------------------------
def test_the_rule_says_a_certificate_without_cn_maps_no_user_and_names_a_same_name_ca(lab: Path, tmp_path) -> None:  # noqa: F811
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from certkit import CADirectory

    ca = CADirectory(lab / "ca").load(PASSPHRASE)
    key = ec.generate_private_key(ec.SECP256R1())
    now = __import__("datetime").datetime.now(__import__("datetime").UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme"),
                                     x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Eng")]))
            .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + __import__("datetime").timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("zed@acme.test")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca.key, hashes.SHA256()))
    folder = tmp_path / "zed"
    folder.mkdir()
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "privkey.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    twin = tmp_path / "twin"
    run_certkit("init-ca", "--name", "Lab CA", env=certkit_env(CERTKIT_CA_DIR=str(twin),
                                                                CERTKIT_CA_PASSPHRASE=PASSPHRASE), check=True)
    run_certkit("issue-client", "eve", "--out", tmp_path / "eve",
                env=certkit_env(CERTKIT_CA_DIR=str(twin), CERTKIT_CA_PASSPHRASE=PASSPHRASE), check=True)
    with serving(*FILES, "--client-ca", str(lab / "ca" / "ca.pem"), "--optional", env=_env(lab), cwd=lab) as srv:
        zed, eve = (_page(lab, srv.port, tmp_path / who) for who in ("zed", "eve"))
    last = _rules(zed)[-1]
    assert "which it has none of: PostgreSQL and Mosquitto map no user" in last and "O=Acme" in last, last
    first = _rules(eve)[0]
    assert "it names CN=Lab CA as its issuer, but another CA of that name signed it" in first, first


def _page(root: Path, port: int, folder: Path) -> str:
    return subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", str(root / "ca" / "ca.pem"), "--cert",
                           str(folder / "cert.pem"), "--key", str(folder / "privkey.pem"), "-H", "Accept: text/html",
                           f"https://localhost:{port}/"], capture_output=True, text=True, timeout=30).stdout


# --- 8. the unencrypted key's warning ---------------------------------------------------------------------------------
def test_the_unencrypted_key_warning_says_what_it_could_impersonate(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ip"), HOME=str(home))
    run_certkit("init-ca", "--name", "IP CA", "--permit-ip", "127.0.0.0/8", "--no-passphrase", env=env, check=True)
    proc = run_certkit("trust", "install", "--nss", env=env)
    assert proc.returncode == 0, proc.stderr
    warning = next(line for line in proc.stderr.splitlines() if "not encrypted" in line)
    assert "can impersonate IP addresses in 127.0.0.0/8 to" in warning and "no DNS names" not in warning, warning
    run_certkit("trust", "uninstall", "--nss", env=env, check=True)
    assert re.fullmatch(r"[^\n]*", warning)
