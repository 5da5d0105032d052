"""Issue 9, class 11: client certificates from a name-constrained CA work with Java (JSSE) servers.

docs/two-tier-pki.md builds an offline root and an issuing intermediate limited to
example.internal and 10.0.0.0/8. Java's PKIX validator reads the common name of a client
certificate without a DNS name as a DNS name and checks it against the constraint, so
``issue-client alice`` would give a certificate every Tomcat, Jetty, Spring Boot and Kafka
server rejects ("name constraints check failed"). Here a real JSSE server (compiled with javac:
key store = the server bundle's bundle.p12, trust store = the root's ca.pem, needClientAuth)
accepts the client certificates the page issues, refuses one made the old way (forged with the
issuing CA's key, since certkit now refuses to issue it, with the advice), and OpenSSL accepts a
server certificate for an IP address alone under the DNS constraint.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import assert_clean_error, certkit_env, openssl, require, run_certkit

P12_PASSWORD = "changeit-for-the-test"
ISSUING_PASSPHRASE = "a long passphrase for the online intermediate"

JAVA_SERVER = r"""
import java.io.*;
import java.net.InetAddress;
import java.security.KeyStore;
import java.security.cert.*;
import javax.net.ssl.*;

/** A TLS server that requires a client certificate: key store = a PKCS#12 bundle, trust store = one CA. */
public class MtlsServer {
    public static void main(String[] args) throws Exception {
        char[] password = args[1].toCharArray();
        KeyStore keys = KeyStore.getInstance("PKCS12");
        try (InputStream in = new FileInputStream(args[0])) { keys.load(in, password); }
        KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
        kmf.init(keys, password);
        KeyStore trust = KeyStore.getInstance("PKCS12");
        trust.load(null, null);
        try (InputStream in = new FileInputStream(args[2])) {
            trust.setCertificateEntry("root", CertificateFactory.getInstance("X.509").generateCertificate(in));
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
        SSLServerSocket server = (SSLServerSocket) ctx.getServerSocketFactory()
            .createServerSocket(0, 50, InetAddress.getByName("127.0.0.1"));
        server.setNeedClientAuth(true);
        System.out.println("LISTENING " + server.getLocalPort());
        System.out.flush();
        while (true) {
            try (SSLSocket socket = (SSLSocket) server.accept()) {
                try {
                    socket.startHandshake();
                    X509Certificate peer = (X509Certificate) socket.getSession().getPeerCertificates()[0];
                    String who = peer.getSubjectX500Principal().getName();
                    OutputStream out = socket.getOutputStream();
                    out.write(("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nACCEPTED " + who + "\n").getBytes());
                    out.flush();
                    System.out.println("ACCEPTED " + who);
                } catch (IOException e) {
                    Throwable root = e;
                    while (root.getCause() != null) root = root.getCause();
                    System.out.println("REFUSED " + e.getMessage() + " | " + root.getMessage());
                }
                System.out.flush();
            } catch (IOException e) {
                System.out.println("ERROR " + e);
            }
        }
    }
}
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> tuple[Path, dict]:
    """The PKI of docs/two-tier-pki.md, made with the page's own commands."""
    folder = tmp_path_factory.mktemp("two-tier")
    env = certkit_env(CERTKIT_P12_PASSWORD=P12_PASSWORD)
    (folder / "root.pass").write_text("the offline root's passphrase\n")
    (folder / "root.pass").chmod(0o600)
    run_certkit("init-ca", "--ca-dir", "root", "--name", "Example Root CA", "--org", "Example Corp", "--days", "7300",
                "--passphrase-file", "root.pass", cwd=folder, env=env, check=True)
    env["CERTKIT_CA_PASSPHRASE"] = ISSUING_PASSPHRASE
    run_certkit("init-ca", "--ca-dir", "issuing", "--parent-ca-dir", "root", "--parent-passphrase-file", "root.pass",
                "--name", "Example Issuing CA 1", "--days", "1825", "--permit-dns", "example.internal",
                "--permit-ip", "10.0.0.0/8", cwd=folder, env=env, check=True)
    env["CERTKIT_CA_DIR"] = str(folder / "issuing")
    run_certkit("issue-server", "api.example.internal", "10.0.0.10", "--p12", cwd=folder, env=env, check=True)
    run_certkit("issue-client", "alice", "--dns", "alice.example.internal", cwd=folder, env=env, check=True)
    run_certkit("issue-client", "Bob Smith", "--out", "bob", cwd=folder, env=env, check=True)
    # Two more identities the page's CA permits: an email and a SPIFFE ID.
    run_certkit("issue-client", "Carol Jones", "--email", "carol@example.internal", "--out", "carol", cwd=folder,
                env=env, check=True)
    run_certkit("issue-client", "Billing Service", "--uri", "spiffe://example.internal/billing", "--out", "billing",
                cwd=folder, env=env, check=True)
    return folder, env


@pytest.fixture(scope="module")
def java_server(pki, tmp_path_factory):
    """The JSSE server, compiled once, listening with the server bundle's bundle.p12."""
    for tool in ("javac", "java"):
        require(tool)
    folder, _env = pki
    classes = tmp_path_factory.mktemp("java")
    (classes / "MtlsServer.java").write_text(JAVA_SERVER)
    subprocess.run(["javac", "-d", classes, classes / "MtlsServer.java"], check=True, capture_output=True, timeout=180)
    log = classes / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(["java", "-cp", classes, "MtlsServer", folder / "api.example.internal" / "bundle.p12",
                                 P12_PASSWORD, folder / "root" / "ca.pem"], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (listening := re.search(r"^LISTENING (\d+)\n", log.read_text(), re.M)):  # the whole line
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the Java server did not start"
            time.sleep(0.1)
        port = int(listening[1])
        yield port, log
    finally:
        proc.terminate()
        proc.wait(60)


def connect(folder: Path, port: int, client: Path) -> subprocess.CompletedProcess:
    """curl as the client: it checks the server against the root and sends its own chain."""
    curl = require("curl")
    return subprocess.run([curl, "-sS", "--max-time", "20", "--cacert", folder / "root" / "ca.pem",
                           "--resolve", f"api.example.internal:{port}:127.0.0.1",
                           "--cert", client / "fullchain.pem", "--key", client / "privkey.pem",
                           f"https://api.example.internal:{port}/"], capture_output=True, text=True, timeout=60)


def verdicts(log: Path) -> list[str]:
    text = log.read_text()  # whole lines only: the server may be writing the last one
    return [line for line in text[:text.rfind("\n") + 1].splitlines() if line.startswith(("ACCEPTED", "REFUSED"))]


def next_verdict(log: Path, seen: int) -> str:
    """The server's word on the connection after the ``seen`` it had judged before."""
    deadline = time.monotonic() + 60
    while len(verdicts(log)) <= seen:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return verdicts(log)[seen]


@pytest.mark.parametrize("client,subject", [("alice", "CN=alice"), ("bob", "CN=Bob Smith"),
                                            ("carol", "CN=Carol Jones"), ("billing", "CN=Billing Service")])
def test_jsse_accepts_the_client_certificates_of_the_page(pki, java_server, client: str, subject: str) -> None:
    folder, _env = pki
    port, log = java_server
    seen = len(verdicts(log))
    proc = connect(folder, port, folder / client)
    assert proc.returncode == 0, (proc.stderr, log.read_text())
    assert f"ACCEPTED {subject}" in proc.stdout
    assert next_verdict(log, seen) == f"ACCEPTED {subject}"


def forged_alice(folder: Path) -> Path:
    """What ``issue-client alice`` used to issue (CN=alice, the subject DN as the only SAN), signed
    with the issuing CA's own key since certkit no longer issues it."""
    ca_cert = x509.load_pem_x509_certificate((folder / "issuing" / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((folder / "issuing" / "ca-key.pem").read_bytes(),
                                                ISSUING_PASSPHRASE.encode())
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DirectoryName(subject)]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    out = folder / "old-alice"
    out.mkdir(exist_ok=True)
    (out / "fullchain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                                        + (folder / "issuing" / "ca.pem").read_bytes())
    (out / "privkey.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    return out


def test_the_old_way_is_refused_with_the_advice_and_jsse_shows_why(pki, java_server) -> None:
    folder, env = pki
    port, log = java_server
    proc = run_certkit("issue-client", "alice", "--out", "alice-old", cwd=folder, env=env)
    assert_clean_error(proc, "--dns alice.example.internal")
    assert "Java" in proc.stderr and "Alice Smith" in proc.stderr
    assert not (folder / "alice-old").exists()
    # The certificate certkit refuses to make is one that JSSE really rejects.
    seen = len(verdicts(log))
    refused = connect(folder, port, forged_alice(folder))
    assert refused.returncode != 0
    verdict = next_verdict(log, seen)
    assert verdict.startswith("REFUSED") and "name constraints" in verdict.lower(), verdict


def test_ip_only_server_certificate_under_a_dns_constraint(pki) -> None:
    """No CN for a server with addresses only: OpenSSL would check a CN '10.0.0.5' as a host name
    against example.internal and refuse the certificate."""
    folder, env = pki
    run_certkit("issue-server", "10.0.0.5", "--out", "db", cwd=folder, env=env, check=True)
    cert = x509.load_pem_x509_certificate((folder / "db" / "cert.pem").read_bytes())
    assert not cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME) or \
        cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value != "10.0.0.5"
    ok = openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", folder / "root" / "ca.pem",
                 "-untrusted", folder / "db" / "chain.pem", "-verify_ip", "10.0.0.5", folder / "db" / "cert.pem")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # The same certificate with the address as its CN, as certkit made it before, is refused.
    ca_key = serialization.load_pem_private_key((folder / "issuing" / "ca-key.pem").read_bytes(),
                                                ISSUING_PASSPHRASE.encode())
    with_cn = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "10.0.0.5")]))
               .issuer_name(cert.issuer).public_key(cert.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(cert.not_valid_before_utc).not_valid_after(cert.not_valid_after_utc))
    for ext in cert.extensions:
        with_cn = with_cn.add_extension(ext.value, critical=ext.critical)
    (folder / "db-cn.pem").write_bytes(with_cn.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    refused = openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", folder / "root" / "ca.pem",
                      "-untrusted", folder / "db" / "chain.pem", folder / "db-cn.pem")
    assert refused.returncode != 0 and b"subtree violation" in refused.stdout + refused.stderr, refused
    assert ipaddress.ip_address("10.0.0.5") in [gn for gn in cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.IPAddress)]
