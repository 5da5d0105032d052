"""Round twenty-two, area show: what inspect, verify, probe and serve say of inputs real peers judge otherwise,
checked against those peers (openssl verify, openssl s_server, curl, Python's ssl) on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import certkit_env, run_certkit

NOW = dt.datetime.now(dt.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(obj) -> bytes:
    return obj.public_bytes(serialization.Encoding.PEM)


# --- 1. a CRL OpenSSL cannot use, given alone, was described as any CRL ------------------------------------------
@pytest.fixture(scope="module")
def crl_ca(tmp_path_factory) -> tuple:
    """A CA ("CRL CA") and a server leaf it signed (serial 1000), as PEM files in a folder."""
    where = tmp_path_factory.mktemp("crl")
    key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("CRL CA")).issuer_name(_name("CRL CA"))
          .public_key(key.public_key()).serial_number(1).not_valid_before(NOW - dt.timedelta(days=1))
          .not_valid_after(NOW + dt.timedelta(days=100))
          .add_extension(x509.BasicConstraints(True, None), True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
          .sign(key, hashes.SHA256()))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca.subject)
            .public_key(leaf_key.public_key()).serial_number(1000).not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=50))
            .add_extension(x509.BasicConstraints(False, None), True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256()))
    (where / "leaf.pem").write_bytes(_pem(leaf))
    return where, ca, key


def _crl(ca, key, *, this_update=None, extensions=(), signer=None) -> bytes:
    signer = signer or key
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
               .last_update(this_update or NOW - dt.timedelta(hours=1)).next_update(NOW + dt.timedelta(days=9))
               .add_extension(x509.CRLNumber(5), False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False))
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical)
    return _pem(builder.sign(signer, hashes.SHA256()))


_IDP = dict(full_name=None, relative_name=None, only_contains_user_certs=False, only_contains_ca_certs=False,
            only_some_reasons=None, indirect_crl=False, only_contains_attribute_certs=False)
CRLS = {  # name: (what to build, what openssl verify -crl_check says of the leaf, words inspect must say)
    "plain": ({}, None, None),
    "future": ({"this_update": NOW + dt.timedelta(days=2)}, "CRL is not yet valid", "not yet valid"),
    "delta": ({"extensions": [(x509.DeltaCRLIndicator(4), True)]}, "unable to get certificate CRL",
              "delta CRL"),
    "ca-only": ({"extensions": [(x509.IssuingDistributionPoint(**{**_IDP, "only_contains_ca_certs": True}), True)]},
                "different CRL scope", "covers CA certificates only"),
    "some-reasons": ({"extensions": [(x509.IssuingDistributionPoint(**{
        **_IDP, "only_some_reasons": frozenset({x509.ReasonFlags.key_compromise})}), True)]},
        "unable to get certificate CRL", "some reasons only"),
    "indirect": ({"extensions": [(x509.IssuingDistributionPoint(**{**_IDP, "indirect_crl": True}), True)]},
                 "unable to get certificate CRL", "indirect CRL"),
    "unknown-critical": ({"extensions": [(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4.5"),
                                                                      b"\x05\x00"), True)]},
                         "unhandled critical CRL extension", "critical extension OpenSSL does not handle"),
    "other-key": ({"signer": ec.generate_private_key(ec.SECP256R1())}, "unable to get certificate CRL",
                  "NOT signed by the key of the certificate of CN=CRL CA here"),
}


@pytest.mark.parametrize("case", list(CRLS))
def test_inspect_says_a_crl_openssl_cannot_use_alone_is_not_usable(crl_ca, case: str) -> None:
    """A CRL whose thisUpdate is still to come, a delta CRL, one whose issuingDistributionPoint covers CA
    certificates only, some reasons only, or is indirect, one with a critical extension OpenSSL does not handle,
    and one signed by another key of the CA's name: given with the CA to openssl verify -crl_check (as nginx's
    ssl_crl is), every certificate of the CA is refused; inspect described each as a current CRL, with nothing
    said (and JSON status "current")."""
    where, ca, key = crl_ca
    build, openssl_says, inspect_says = CRLS[case]
    both = where / f"{case}.pem"  # the CA and its CRL in one file: what -CAfile (and ssl_crl beside it) is given
    both.write_bytes(_pem(ca) + _crl(ca, key, **build))
    peer = subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", both, where / "leaf.pem"],
                          capture_output=True, text=True)
    env = certkit_env(HOME=str(where))
    text = run_certkit("inspect", both, env=env, check=True).stdout
    [item] = [i for i in json.loads(run_certkit("inspect", both, "--json", env=env, check=True).stdout)["items"]
              if i["type"] == "crl"]
    if openssl_says is None:
        assert peer.returncode == 0, peer.stdout + peer.stderr
        assert "NOT" not in text and item["status"] == "current" and item["unusable"] == [], text
        assert item["signature"] == "valid: signed by the key of the certificate of CN=CRL CA here", item
        return
    assert peer.returncode != 0 and openssl_says in peer.stdout + peer.stderr, peer.stdout + peer.stderr
    assert inspect_says in text, text
    said = " ".join([item["status"], *item["unusable"], item["signature"] or ""])
    assert inspect_says in said and openssl_says in said, item
    if case == "future":
        assert item["status"].startswith("not yet valid") and "(not yet valid: its thisUpdate is" in text, text
    elif case == "other-key":
        assert item["signature"].startswith("NOT signed") and "  signature     NOT signed" in text, text
    else:
        assert item["status"] == "current" and len(item["unusable"]) == 1 and "  NOT USABLE    it " in text, text


# --- 2. a PKCS#7 bundle (.p7b) was said to hold no certificate -------------------------------------------------
def test_a_pkcs7_bundle_is_named_with_the_command_that_takes_its_certificates_out(ca_dir, ca_env, tmp_path) -> None:
    """Windows, keytool and many CAs hand out a chain as a .p7b (PKCS#7, PEM or DER). inspect, verify, probe
    and serve said "b.p7b holds a pkcs7 but no certificate" (it holds three), "holds no certificate (PEM
    -----BEGIN CERTIFICATE-----)", or of the DER form "may be truncated or not a certificate at all". Each now
    says what it is and the openssl command that takes its certificates out; that command works."""
    run_certkit("issue-server", "localhost", "--out", tmp_path / "srv", env=ca_env, check=True)
    full = tmp_path / "srv" / "fullchain.pem"
    for der in (False, True):
        p7b = tmp_path / ("b.der.p7b" if der else "b.p7b")
        subprocess.run(["openssl", "crl2pkcs7", "-nocrl", "-certfile", full, "-certfile", ca_dir / "ca.pem",
                        "-out", p7b, *(["-outform", "DER"] if der else [])], check=True)
        uses = [("inspect", p7b), ("verify", p7b, "--purpose", "server"),
                ("verify", full, "--purpose", "server", "--ca-file", p7b),
                ("verify", full, "--purpose", "server", "--untrusted", p7b),
                ("probe", "https://127.0.0.1:1/", "--ca-file", p7b),
                ("probe", "https://127.0.0.1:1/", "--cert", p7b, "--key", tmp_path / "srv" / "privkey.pem"),
                ("serve", "--port", "0", "--client-ca", p7b),
                ("serve", "--port", "0", "--cert", p7b, "--key", tmp_path / "srv" / "privkey.pem"),
                *([("sign-csr", p7b, "--server")] if der else [])]  # a PEM one: "it is PEM -----BEGIN PKCS7"
        for args in uses:
            proc = run_certkit(*args, env=ca_env)
            assert proc.returncode != 0 and "Traceback" not in proc.stderr, (args, proc.stderr)
            line = proc.stderr.strip().splitlines()[-1]
            assert "is a PKCS#7 bundle" in line and "no certificate" not in line, (args, line)
            if args[0] != "sign-csr":
                command = line[line.index("'openssl pkcs7") + 1:line.index("' and give")]
                assert ("-inform DER" in command) == der, line
        taken = subprocess.run(command.replace("certs.pem", str(tmp_path / "certs.pem")).split(), check=True)
        assert taken.returncode == 0
        said = json.loads(run_certkit("inspect", tmp_path / "certs.pem", "--json", env=ca_env, check=True).stdout)
        assert [i["subject"] for i in said["items"]] == ["CN=localhost", "CN=certkit test root"], said


# --- 3. a host name in the CN beside an address in the subjectAltName; an address written as a DNS name ---------
def _leaf_of(where: Path, ca, ca_key, cn: str, sans: list) -> Path:
    """A server leaf (CN ``cn``, subjectAltName ``sans``) of ``ca`` in where/cert.pem with where/privkey.pem."""
    where.mkdir()
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=20))
            .add_extension(x509.BasicConstraints(False, None), True)
            .add_extension(x509.SubjectAlternativeName(sans), False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False)
            .sign(ca_key, hashes.SHA256()))
    (where / "cert.pem").write_bytes(_pem(cert))
    (where / "privkey.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return where / "cert.pem"


def _clients_accept(cert: Path, ca_pem: Path, host: str) -> tuple[dict[str, bool], str]:
    """Whether Python's ssl, openssl s_client (-verify_hostname/-verify_ip), Node and curl accept ``cert``
    (served by openssl s_server on 127.0.0.1) when connecting to ``host``; and what certkit probe says."""
    import ipaddress
    import socket
    import ssl

    from conftest import free_port, wait_listening

    port = free_port()
    server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-www", "-quiet", "-cert",
                               cert, "-key", cert.with_name("privkey.pem")], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, server, "openssl s_server")
        said = {}
        ctx = ssl.create_default_context(cafile=str(ca_pem))
        try:
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=host):
                said["python"] = True
        except ssl.SSLCertVerificationError:
            said["python"] = False
        try:
            ipaddress.ip_address(host)
            check = ["-verify_ip", host]
        except ValueError:
            check = ["-verify_hostname", host, "-servername", host]
        s_client = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", ca_pem,
                                   "-verify_return_error", *check], input=b"", capture_output=True, timeout=30)
        said["openssl"] = s_client.returncode == 0
        node = subprocess.run(["node", "-e", "const t=require('tls'),f=require('fs');const s=t.connect({host:"
                               f"'127.0.0.1',port:{port},servername:'{host}',ca:f.readFileSync('{ca_pem}')}},"
                               "()=>{s.end();process.exit(0)});s.on('error',e=>{console.log(e.message);"
                               "process.exit(3)})"], capture_output=True, timeout=30)
        said["node"] = node.returncode == 0
        url_host = f"[{host}]" if ":" in host else host
        curl = subprocess.run(["curl", "-s", "-o", "/dev/null", "--cacert", ca_pem, "--resolve",
                               f"{host}:{port}:127.0.0.1", f"https://{url_host}:{port}/"], capture_output=True,
                              timeout=30)
        said["curl"] = curl.returncode == 0
        probe = run_certkit("probe", f"https://{url_host}:{port}/", "--ca-file", ca_pem, "--timeout", "20")
        return said, probe.stdout
    finally:
        server.kill()
        server.wait(10)


def test_a_host_in_the_cn_beside_an_address_in_the_san_is_said_as_clients_take_it(crl_ca, tmp_path) -> None:
    """CN=localhost with a subjectAltName of IP:127.0.0.1 only (what `openssl req -addext subjectAltName=IP:...`
    with the host in -subj makes): verify and probe said 'not valid for name localhost: it names 127.0.0.1'
    and nothing else, while Python's ssl, OpenSSL and Node, finding no DNS name in the subjectAltName, fall back
    to the CN and connect (curl does not). And a subjectAltName of DNS:127.0.0.1, verified for the address
    127.0.0.1: 'it names 127.0.0.1, localhost', as if it did, while every client refuses it."""
    where, ca, ca_key = crl_ca
    ca_pem = tmp_path / "ca.pem"
    ca_pem.write_bytes(_pem(ca))
    import ipaddress

    cn_host = _leaf_of(tmp_path / "cn", ca, ca_key, "localhost", [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    said, probe = _clients_accept(cn_host, ca_pem, "localhost")
    assert said == {"python": True, "openssl": True, "node": True, "curl": False}
    assert "reason      not valid for name localhost: it names localhost only in its subject CN, without a DNS name " \
           "in its subjectAltName (only 127.0.0.1): Python's ssl, OpenSSL and Node fall back" in probe, probe
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "none"))
    verdict = json.loads(run_certkit("verify", cn_host, "--purpose", "server", "--ca-file", ca_pem, "--name",
                                     "localhost", "--json", env=env).stdout)
    assert verdict["valid"] is False and verdict["reasons"][0] == (
        "not valid for name localhost: it names localhost only in its subject CN, without a DNS name in its "
        "subjectAltName (only 127.0.0.1): Python's ssl, OpenSSL and Node fall back to the CN and accept it, curl, "
        "GnuTLS, browsers and Go refuse it; reissue it with the name as a subjectAltName (certkit issue-server "
        "localhost 127.0.0.1)"), verdict

    ip_as_dns = _leaf_of(tmp_path / "dns", ca, ca_key, "web", [x509.DNSName("127.0.0.1"), x509.DNSName("localhost")])
    said, probe = _clients_accept(ip_as_dns, ca_pem, "127.0.0.1")
    assert said == {"python": False, "openssl": False, "node": False, "curl": False}
    assert "reason      not valid for name 127.0.0.1: its subjectAltName holds 127.0.0.1 as a DNS name" in probe, probe
    verdict = json.loads(run_certkit("verify", ip_as_dns, "--purpose", "server", "--ca-file", ca_pem, "--name",
                                     "127.0.0.1", "--json", env=env).stdout)
    assert verdict["reasons"][0].startswith(
        "not valid for name 127.0.0.1: its subjectAltName holds 127.0.0.1 as a DNS name (DNS:127.0.0.1), not as an "
        "IP address (IP:127.0.0.1)"), verdict


# --- 4. a name string OpenSSL reads and cryptography refuses: "damaged", and a traceback in sign-csr ------------
_T61_CNF = ("[req]\ndistinguished_name = dn\nstring_mask = default\nutf8 = yes\nprompt = no\n"
            "[dn]\nCN = localhost\nO = Müller GmbH\n")


def test_a_name_string_openssl_reads_is_said_to_be_unreadable_not_damaged(ca_dir, ca_env, tmp_path) -> None:
    """openssl req with string_mask = default (as old openssl.cnf files and many old CAs have it) writes O=Müller
    as a T61String of Latin-1 bytes; old CAs wrote CN=*.example.com as a PrintableString, whose alphabet has no
    '*'. OpenSSL, curl and Python's ssl read and accept both; cryptography refuses the name. inspect and verify
    said 'a damaged certificate: it is not valid DER', probe the same of the server's certificate, serve's log of
    such a client certificate, and sign-csr of such a CSR ended in a traceback (ValueError: error parsing asn1
    value). Each now says which name holds what, that OpenSSL reads it and cryptography does not."""
    import socket
    import ssl

    from conftest import free_port, wait_listening

    (tmp_path / "t61.cnf").write_text(_T61_CNF, encoding="utf-8")
    (tmp_path / "leaf.ext").write_text("subjectAltName = DNS:localhost\nextendedKeyUsage = serverAuth, clientAuth\n"
                                       "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n")
    csr, key, leaf = tmp_path / "t61.csr", tmp_path / "privkey.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-new", "-config", tmp_path / "t61.cnf", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr], check=True, capture_output=True)
    ca_key = tmp_path / "ca.key"
    subprocess.run(["openssl", "pkey", "-in", ca_dir / "ca-key.pem", "-passin", "env:CERTKIT_CA_PASSPHRASE", "-out",
                    ca_key], check=True, env=ca_env)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_dir / "ca.pem", "-CAkey", ca_key, "-days", "5",
                    "-extfile", tmp_path / "leaf.ext", "-out", leaf], check=True, capture_output=True)
    assert b"T61STRING" in subprocess.run(["openssl", "asn1parse", "-in", leaf], capture_output=True).stdout
    said = ("its subject name holds a T61String 'Müller GmbH' with 8-bit bytes (Latin-1 text, as OpenSSL shows it), "
            "which OpenSSL (and so nginx, curl, Python's ssl) reads but cryptography")

    proc = run_certkit("inspect", leaf, env=ca_env)
    assert proc.returncode == 1 and f"holds a certificate or CSR certkit cannot read: {said}" in proc.stderr, \
        proc.stderr
    proc = run_certkit("verify", leaf, "--purpose", "server", "--name", "localhost", env=ca_env)
    assert proc.returncode == 1 and "damaged" not in proc.stderr and said in proc.stderr, proc.stderr
    out = tmp_path / "signed"
    proc = run_certkit("sign-csr", csr, "--server", "--out", out, env=ca_env, subprocess=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert "holds a certificate signing request certkit cannot read: its subject name holds a T61String" \
           in proc.stderr and "(openssl req -text shows it)" in proc.stderr and not out.exists(), proc.stderr

    port = free_port()  # the server presents it: Python's ssl connects, probe said "damaged"
    server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-www", "-quiet", "-cert",
                               leaf, "-key", key], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, server, "openssl s_server")
        ctx = ssl.create_default_context(cafile=str(ca_dir / "ca.pem"))
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                             server_hostname="localhost") as tls:
            assert ("organizationName", "Müller GmbH") in [rdn[0] for rdn in tls.getpeercert()["subject"]]
        proc = run_certkit("probe", f"https://localhost:{port}/", "--ca-file", ca_dir / "ca.pem", env=ca_env)
    finally:
        server.kill()
        server.wait(10)
    assert "certificate 1 of 1 the server sends is a certificate certkit cannot read: " + said in proc.stderr, \
        proc.stderr

    star = tmp_path / "star.der"  # CN=*.example.com as a PrintableString (signature aside: it is never checked)
    n = _name("Q" * 13)
    k = ec.generate_private_key(ec.SECP256R1())
    der = (x509.CertificateBuilder().subject_name(n).issuer_name(n).public_key(k.public_key()).serial_number(7)
           .not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=1)).sign(k, hashes.SHA256())
           .public_bytes(serialization.Encoding.DER))
    star.write_bytes(der.replace(b"\x0c\x0d" + b"Q" * 13, b"\x13\x0d*.example.com"))
    assert "CN=*.example.com" in subprocess.run(["openssl", "x509", "-inform", "DER", "-in", star, "-noout",
                                                 "-subject", "-nameopt", "RFC2253"], capture_output=True,
                                                text=True).stdout
    for given in (star, tmp_path / "star.pem"):
        if given.suffix == ".pem":
            subprocess.run(["openssl", "x509", "-inform", "DER", "-in", star, "-out", given], check=True)
        proc = run_certkit("inspect", given, env=ca_env)
        assert proc.returncode == 1 and "certkit cannot read: its issuer name holds a PrintableString " \
               "'*.example.com' with characters outside that type's alphabet ('*')" in proc.stderr, proc.stderr

    port = free_port()  # the client presents it: serve's log said "a damaged client certificate"
    import sys

    serve = subprocess.Popen([sys.executable, "-m", "certkit", "serve", "--port", str(port)], env=ca_env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_listening(port, serve, "certkit serve")
        subprocess.run(["curl", "-s", "--cacert", ca_dir / "ca.pem", "--cert", leaf, "--key", key,
                        f"https://127.0.0.1:{port}/"], capture_output=True, timeout=60)
    finally:
        serve.terminate()
        log = serve.communicate(timeout=30)[1]
    assert "it presented a client certificate certkit cannot read: " + said in log, log


# --- 5. serve's log showed a UTF-8 request line as its Latin-1 reading -----------------------------------------
def test_serve_logs_the_bytes_of_a_request_line_a_client_sent_not_their_latin1_reading(ca_dir, ca_env) -> None:
    """A browser asking for https://localhost:8443/é sends /é in UTF-8 (curl percent-encodes it, a raw client
    need not); serve logged "GET /Ã© HTTP/1.1" (and 'Bad request version' lines alike): Python's http.server
    reads the line as Latin-1. It now logs each byte past ASCII as nginx and Apache do, "GET /\\xc3\\xa9"."""
    import socket
    import ssl
    import sys

    from conftest import free_port, wait_listening

    port = free_port()
    serve = subprocess.Popen([sys.executable, "-m", "certkit", "serve", "--optional", "--port", str(port)],
                             env=ca_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_listening(port, serve, "certkit serve")
        ctx = ssl.create_default_context(cafile=str(ca_dir / "ca.pem"))
        for line in ("GET /é?format=json HTTP/1.0", "GET / HTTP/é"):  # the second: a version it cannot parse
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30),
                                 server_hostname="localhost") as tls:
                tls.sendall(line.encode() + b"\r\n\r\n")
                answer = b""
                while chunk := tls.recv(65536):
                    answer += chunk
            assert b"403" in answer[:20] or b"Bad request version" in answer, answer[:80]  # 0.9 style: no status line
    finally:
        serve.terminate()
        log = serve.communicate(timeout=30)[1]
    assert '"GET /\\xc3\\xa9?format=json HTTP/1.0" 403 client=-' in log, log
    # one line per request since round 37 (serve4), its bytes as sent, ending in why it was refused
    assert '"GET / HTTP/\\xc3\\xa9" 400 client=-; bad request version' in log, log
    assert "Ã" not in log, log


def test_acme_serve_logs_a_request_line_as_serve_does(tmp_path) -> None:
    """The same class in certkit acme serve's log: "GET /Ã© HTTP/1.0", and a '"' the client sent left as it
    was (so the quotes ended inside the request line); now as serve logs it: bytes past ASCII as \\xhh, quotes
    escaped."""
    import socket
    import ssl

    from acme_helpers import module_server

    setup = module_server(tmp_path, ())
    try:
        ctx = ssl.create_default_context(cafile=str(setup.root))
        port = setup.server.port
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30),
                             server_hostname="localhost") as tls:
            tls.sendall('GET /é"x HTTP/1.0\r\n\r\n'.encode())
            while tls.recv(65536):
                pass
        [line] = setup.server.wait_for_log("GET /")
    finally:
        setup.server.stop()
    assert '"GET /\\xc3\\xa9\\"x HTTP/1.0" 404' in line and "Ã" not in line, line
