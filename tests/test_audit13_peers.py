"""The thirteenth round's peer findings (audit peers11), proven with Java's own TLS stack (JSSE, compiled with
javac) and OpenSSL:

1. Java ignores the name constraints of a trusted **root**: a certificate for www.evil.test signed with the key
   of a root made with ``--permit-dns example.test`` is accepted by a JSSE client whose trust store (a private
   PKCS#12 file made with ``keytool -importcert``, as ``trust install --java`` does to cacerts) holds only that
   root, while OpenSSL and certkit verify refuse it; the same forgery under a constrained **intermediate** is
   refused by Java ("name constraints check failed"). So the docs say so (Java's protection comes from a
   constrained intermediate), ``trust status`` no longer presents the "may sign" line as holding for the Java
   store (a "for Java" line, and a note on each store Java reads), and installing into a Java store says so.
2. Following from it, ``issue-client alice`` under a DNS-constrained root is no longer refused "because Java would
   reject it": a JSSE server that trusts the root accepts CN=alice, and so does OpenSSL. Under a constrained
   intermediate Java does reject it, and certkit still refuses it with Java's reason; where OpenSSL reads the
   name (a dot: alice.other.test) certkit refuses it under a root too, naming OpenSSL alone.

No test here changes a real trust store: the trust stores are files in the test's folder.
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
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import PASSPHRASE, REPO, certkit_env, openssl, require, run_certkit

STORE_PASSWORD = "changeit-for-the-test"

# One JSSE server and one JSSE client per case, over loopback, each judging the other with the PKIX trust manager
# of a PKCS#12 trust store (what keytool -importcert made), the client checking the host name as HTTPS does.
PEER_JAVA = r"""
import java.io.*;
import java.net.*;
import java.security.KeyStore;
import java.security.cert.X509Certificate;
import javax.net.ssl.*;

/** Arguments: the stores' password, then per case: server key store, server trust store ("-": no client
 *  certificate asked), client key store ("-": none), client trust store, the host name the client asks for. */
public class Peer {
    static KeyStore load(String path, char[] password) throws Exception {
        KeyStore store = KeyStore.getInstance("PKCS12");
        try (InputStream in = new FileInputStream(path)) { store.load(in, password); }
        return store;
    }
    static TrustManager[] trust(String path, char[] password) throws Exception {
        TrustManagerFactory f = TrustManagerFactory.getInstance("PKIX");
        f.init(load(path, password));
        return f.getTrustManagers();
    }
    static KeyManager[] keys(String path, char[] password) throws Exception {
        if (path.equals("-")) return null;
        KeyManagerFactory f = KeyManagerFactory.getInstance("PKIX");
        f.init(load(path, password), password);
        return f.getKeyManagers();
    }
    static String why(Throwable e) {
        Throwable root = e;
        while (root.getCause() != null) root = root.getCause();
        return e.getMessage() + " | " + root.getMessage();
    }
    static void run(int n, String[] a, char[] pw) throws Exception {
        SSLContext serverCtx = SSLContext.getInstance("TLS");
        serverCtx.init(keys(a[0], pw), a[1].equals("-") ? null : trust(a[1], pw), null);
        SSLServerSocket server = (SSLServerSocket) serverCtx.getServerSocketFactory()
            .createServerSocket(0, 5, InetAddress.getByName("127.0.0.1"));
        if (!a[1].equals("-")) server.setNeedClientAuth(true);
        Thread side = new Thread(() -> {
            try (SSLSocket s = (SSLSocket) server.accept()) {
                s.setSoTimeout(20000);
                try {
                    s.startHandshake();
                    if (s.getInputStream().read() != 'y') throw new IOException("the client sent nothing");
                    s.getOutputStream().write('x');
                    s.getOutputStream().flush();
                    String who = a[1].equals("-") ? "-" : ((X509Certificate) s.getSession().getPeerCertificates()[0])
                        .getSubjectX500Principal().getName();
                    System.out.println(n + " server: ACCEPTED " + who);
                } catch (IOException e) { System.out.println(n + " server: REFUSED " + why(e)); }
            } catch (IOException e) { System.out.println(n + " server: ERROR " + e); }
        });
        side.start();
        SSLContext clientCtx = SSLContext.getInstance("TLS");
        clientCtx.init(keys(a[2], pw), trust(a[3], pw), null);
        try (Socket plain = new Socket()) {
            plain.connect(new InetSocketAddress("127.0.0.1", server.getLocalPort()), 20000);
            plain.setSoTimeout(20000);
            SSLSocket s = (SSLSocket) clientCtx.getSocketFactory()
                .createSocket(plain, a[4], server.getLocalPort(), true);
            SSLParameters p = s.getSSLParameters();
            p.setEndpointIdentificationAlgorithm("HTTPS");
            s.setSSLParameters(p);
            try {
                s.startHandshake();
                s.getOutputStream().write('y');
                s.getOutputStream().flush();
                if (s.getInputStream().read() != 'x') throw new IOException("the server sent nothing");
                System.out.println(n + " client: ACCEPTED " + s.getSession().getPeerPrincipal().getName());
            } catch (IOException e) { System.out.println(n + " client: REFUSED " + why(e)); }
        }
        side.join(30000);
        server.close();
    }
    public static void main(String[] a) throws Exception {
        char[] pw = a[0].toCharArray();
        for (int i = 1, n = 0; i + 4 < a.length; i += 5, n++) {
            String[] one = new String[5];
            System.arraycopy(a, i, one, 0, 5);
            run(n, one, pw);
        }
    }
}
"""


def forge(ca_dir: Path, out: Path, cn: str, dns: list[str], eku) -> Path:
    """A leaf signed with the CA's own key, as someone holding a leaked key makes it (certkit refuses to issue
    it): ``out``.pem (the leaf, then the CA when it is an intermediate) and ``out``.p12 (key and chain)."""
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca-key.pem").read_bytes(), PASSPHRASE.encode())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=3))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(True, *[False] * 8), critical=True)
               .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    chain = [] if ca.issuer == ca.subject else [ca]
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [cert, *chain])
    out.with_suffix(".pem").write_bytes(pem)
    out.with_suffix(".p12").write_bytes(pkcs12.serialize_key_and_certificates(
        b"forged", key, cert, chain or None, serialization.BestAvailableEncryption(STORE_PASSWORD.encode())))
    return out.with_suffix(".pem")


def trust_store(ca_pem: Path, out: Path) -> Path:
    """A private PKCS#12 trust store holding ``ca_pem`` alone, made as trust install --java makes cacerts'."""
    subprocess.run([require("keytool"), "-importcert", "-noprompt", "-alias", "ca", "-keystore", str(out),
                    "-storetype", "PKCS12", "-storepass", STORE_PASSWORD, "-file", str(ca_pem)],
                   check=True, capture_output=True, timeout=120)
    return out


def verify_openssl(ca: Path, leaf: Path, purpose: str) -> subprocess.CompletedProcess:
    return openssl("verify", "-purpose", purpose, "-CAfile", ca, "-untrusted", leaf, leaf)


class PKI:
    """The CAs, certificates and trust stores of the cases, and what JSSE said of each case."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.env = certkit_env(HOME=str(work / "home"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                               CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE, CERTKIT_P12_PASSWORD=STORE_PASSWORD)
        (work / "home").mkdir()
        self.root, self.open, self.issuing = work / "dnsonly", work / "open", work / "issuing"
        self.certkit("init-ca", "--ca-dir", self.root, "--name", "DNS only", "--permit-dns", "example.test")
        self.certkit("init-ca", "--ca-dir", self.open, "--name", "Open Root")
        self.certkit("init-ca", "--ca-dir", self.issuing, "--parent-ca-dir", self.open, "--name", "Issuing",
                     "--permit-dns", "example.test")
        for ca in (self.root, self.issuing):
            self.certkit("issue-server", "--ca-dir", ca, "api.example.test", "--p12", "--out", work / f"{ca.name}-srv")
        self.trusts = {ca.name: trust_store(ca / "ca.pem", work / f"ts-{ca.name}.p12") for ca in (self.root, self.open)}
        # What certkit issues now under the constrained root (it refused it, naming Java), else the same forged.
        self.alice = run_certkit("issue-client", "--ca-dir", self.root, "alice", "--p12", "--out", work / "alice",
                                 cwd=work, env=self.env)
        self.alice_p12 = work / "alice" / "bundle.p12"
        if self.alice.returncode != 0:
            forge(self.root, work / "alice-forged", "alice", [], ExtendedKeyUsageOID.CLIENT_AUTH)
            self.alice_p12 = work / "alice-forged.p12"

    def certkit(self, *args) -> subprocess.CompletedProcess:
        return run_certkit(*args, cwd=self.work, env=self.env, check=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> tuple[PKI, list[str]]:
    """The PKI, and the lines JSSE printed for the cases (one JVM for all of them)."""
    for tool in ("javac", "java", "keytool"):
        require(tool)
    work = tmp_path_factory.mktemp("peers13")
    pki = PKI(work)
    client, server = ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH
    evil = ["www.evil.test", "localhost"]
    forge(pki.root, work / "evil-root", "www.evil.test", evil, server)
    forge(pki.issuing, work / "evil-issuing", "www.evil.test", evil, server)
    forge(pki.issuing, work / "alice-issuing", "alice", [], client)
    forge(pki.root, work / "dotted-root", "alice.other.test", [], client)
    ts_root, ts_open = pki.trusts["dnsonly"], pki.trusts["open"]
    cases = [
        (work / "evil-root.p12", "-", "-", ts_root, "localhost"),  # 0: forged server, constrained root
        (work / "evil-issuing.p12", "-", "-", ts_open, "localhost"),  # 1: forged server, constrained intermediate
        (work / "dnsonly-srv" / "bundle.p12", ts_root, pki.alice_p12, ts_root, "api.example.test"),  # 2: alice, root
        (work / "issuing-srv" / "bundle.p12", ts_open, work / "alice-issuing.p12", ts_open, "api.example.test"),  # 3
        (work / "dnsonly-srv" / "bundle.p12", ts_root, work / "dotted-root.p12", ts_root, "api.example.test"),  # 4
    ]
    classes = work / "java"
    classes.mkdir()
    (classes / "Peer.java").write_text(PEER_JAVA)
    subprocess.run(["javac", "-d", str(classes), str(classes / "Peer.java")], check=True, capture_output=True,
                   timeout=180)
    ran = subprocess.run(["java", "-XX:TieredStopAtLevel=1", "-cp", str(classes), "Peer", STORE_PASSWORD,
                          *(str(arg) for case in cases for arg in case)], capture_output=True, text=True, timeout=240)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return pki, ran.stdout.splitlines()


def said(lines: list[str], case: int, side: str) -> str:
    (line,) = [line for line in lines if line.startswith(f"{case} {side}: ")]
    return line.split(": ", 1)[1]


# --- 1. Java ignores a trusted root's name constraints; an intermediate's bind it ------------------------------
def test_jsse_accepts_a_forgery_outside_a_roots_constraints_and_refuses_it_under_an_intermediate(pki) -> None:
    pki, lines = pki
    work = pki.work
    # The root permits example.test only: OpenSSL and certkit refuse the forged www.evil.test ...
    refused = verify_openssl(pki.root / "ca.pem", work / "evil-root.pem", "sslserver")
    assert refused.returncode != 0 and b"permitted subtree violation" in refused.stdout + refused.stderr
    verdict = run_certkit("verify", work / "evil-root.pem", "--purpose", "server", "--ca-dir", pki.root, "--json",
                          env=pki.env)
    assert verdict.returncode == 1 and json.loads(verdict.stdout)["valid"] is False, verdict.stdout
    # GnuTLS refuses it too (NSS: tests/test_trust.py) ...
    gnutls = subprocess.run([require("certtool"), "--verify", "--load-ca-certificate", str(pki.root / "ca.pem"),
                             "--infile", str(work / "evil-root.pem")], capture_output=True, text=True, timeout=60)
    assert "violates the signer's constraints" in gnutls.stdout + gnutls.stderr, gnutls.stdout + gnutls.stderr
    # ... and Java, trusting that root alone, accepts it: the handshake completes, the host name matches.
    assert said(lines, 0, "client") == "ACCEPTED CN=www.evil.test", lines
    # The same forgery by a constrained intermediate, the root above it trusted: Java refuses it.
    answer = said(lines, 1, "client")
    assert answer.startswith("REFUSED") and "name constraints check failed" in answer, lines


def _private_jdk(work: Path, anchor, other: Path, *, trusted: bool) -> dict[str, str]:
    """JAVA_HOME of a JDK of the test's own: bin/keytool (the real one) and a private lib/security/cacerts that
    holds ``other`` (another CA) and, when ``trusted``, the root under certkit's alias; PATH names no java, so it
    is the only JDK found."""
    home = work / f"jdk-{'trusted' if trusted else 'empty'}"
    (home / "bin").mkdir(parents=True)
    (home / "lib" / "security").mkdir(parents=True)
    (home / "bin" / "keytool").symlink_to(Path(require("keytool")).resolve())
    for alias, pem in [("other", other), *([(anchor.file_stem, anchor.ca_dir / "ca.pem")] * trusted)]:
        subprocess.run(["keytool", "-importcert", "-noprompt", "-alias", alias, "-keystore",
                        str(home / "lib" / "security" / "cacerts"), "-storetype", "PKCS12", "-storepass", "changeit",
                        "-file", str(pem)], check=True, capture_output=True, timeout=120)
    return {"JAVA_HOME": str(home), "PATH": str(work / "no-such-folder")}


def test_trust_status_says_java_ignores_the_roots_constraints(pki) -> None:
    from certkit.trust import Anchor

    pki, _lines = pki
    anchor = Anchor.from_ca_dir(pki.root)
    env = {**pki.env, **_private_jdk(pki.work, anchor, pki.open / "ca.pem", trusted=True)}
    shown = run_certkit("trust", "status", "--java", "--ca-dir", pki.root, env=env)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    head, java_row = shown.stdout.split("\ntrusted  java", 1)
    assert "may sign: DNS names under example.test; no IP addresses" in head
    assert "for Java: any DNS name and any IP address (Java ignores the name constraints of a trusted root)" in head
    assert "Java programs ignore the name constraints of a trusted root" in java_row, shown.stdout
    assert "issue from a constrained intermediate (docs/two-tier-pki.md)" in java_row
    data = json.loads(run_certkit("trust", "status", "--java", "--json", "--ca-dir", pki.root, env=env).stdout)
    assert data["ca"]["may_sign_java"].startswith("any DNS name and any IP address"), data["ca"]
    assert any("Java programs ignore" in note for note in data["stores"][0]["notes"]), data
    # A root without constraints (the intermediate's, here) says nothing more.
    bare = run_certkit("trust", "status", "--java", "--ca-dir", pki.issuing, env=env)
    assert "for Java" not in bare.stdout and "ignore the name constraints" not in bare.stdout, bare.stdout
    # A store that does not hold the CA gets no note; the header still says what the CA may sign to Java.
    (pki.work / "e").mkdir()
    empty = {**pki.env, **_private_jdk(pki.work / "e", anchor, pki.open / "ca.pem", trusted=False)}
    untrusted = run_certkit("trust", "status", "--java", "--ca-dir", pki.root, env=empty)
    assert "not trusted  java" in untrusted.stdout and "for Java: any DNS name" in untrusted.stdout
    assert "Java programs ignore" not in untrusted.stdout, untrusted.stdout


def test_installing_into_a_java_store_notes_it(pki, tmp_path: Path) -> None:
    """The library's install, on a private cacerts (never the machine's), and the system store's note."""
    from certkit.trust import Anchor, JavaStore, install

    pki, _lines = pki
    anchor = Anchor.from_ca_dir(pki.root)
    jdk = Path(_private_jdk(tmp_path, anchor, pki.open / "ca.pem", trusted=False)["JAVA_HOME"])
    store = JavaStore(jdk, "the test's own", jdk / "lib" / "security" / "cacerts", jdk / "bin" / "keytool")
    (result,) = install(anchor, [store])
    assert result.outcome == "added", result
    assert any("Java programs ignore the name constraints of a trusted root" in n for n in result.notes), result
    system = anchor.java_note("system")
    assert system.startswith("Java programs that take their trust from this store (Debian's ca-certificates-java")
    assert anchor.java_note("nss") is None  # NSS applies a root's constraints


def test_the_docs_say_java_ignores_a_roots_constraints() -> None:
    """The pages that promised a constrained root limits every verifier now say Java's exception (the tests
    above prove it) and point Java users at a constrained intermediate."""
    trust_page = (REPO / "docs" / "trust.md").read_text()
    security = (REPO / "docs" / "security.md").read_text()
    two_tier = (REPO / "docs" / "two-tier-pki.md").read_text()
    readme = (REPO / "README.md").read_text()
    for page in (trust_page, security, two_tier, readme):
        flat = " ".join(page.split())
        assert "Java" in flat and "ignores" in flat and "constraints of a trusted root" in flat
    flat = " ".join(trust_page.split())
    assert "To programs using those, a CA created with `--permit-dns home.arpa" in flat  # it said so of every one
    assert "**Java is the exception.**" in flat
    assert "OpenSSL and other verifiers enforce it too" not in " ".join(security.split())


# --- 2. the common-name rule names Java only where Java applies it ----------------------------------------------
def test_a_cn_only_client_under_a_constrained_root_is_issued_and_java_accepts_it(pki) -> None:
    pki, lines = pki
    assert pki.alice.returncode == 0, pki.alice.stderr  # it said "Java (JSSE) ... would reject this certificate"
    assert said(lines, 2, "server") == "ACCEPTED CN=alice", lines  # a JSSE server trusting the root accepts it
    cert = pki.work / "alice" / "cert.pem"
    assert verify_openssl(pki.root / "ca.pem", cert, "sslclient").returncode == 0
    verdict = run_certkit("verify", cert, "--purpose", "client", "--ca-dir", pki.root, "--json", env=pki.env)
    assert verdict.returncode == 0 and json.loads(verdict.stdout)["valid"] is True, verdict.stdout


def test_under_an_intermediate_java_rejects_it_and_certkit_still_refuses(pki) -> None:
    pki, lines = pki
    refused = run_certkit("issue-client", "--ca-dir", pki.issuing, "alice", "--out", pki.work / "alice-i",
                          env=pki.env)
    assert refused.returncode == 1 and refused.stderr.startswith("Error: Java (JSSE) reads the common name 'alice'")
    assert "OpenSSL" not in refused.stderr and not (pki.work / "alice-i").exists()
    answer = said(lines, 3, "server")
    assert answer.startswith("REFUSED") and "name constraints check failed" in answer, lines
    verdict = run_certkit("verify", pki.work / "alice-issuing.pem", "--purpose", "client", "--ca-dir", pki.open,
                          env=pki.env)
    assert verdict.returncode == 1 and "Java (JSSE) servers refuse it" in verdict.stdout, verdict.stdout


def test_a_name_openssl_reads_is_refused_under_a_root_naming_openssl_alone(pki) -> None:
    pki, lines = pki
    refused = run_certkit("issue-client", "--ca-dir", pki.root, "alice.other.test", "--out", pki.work / "dotted",
                          env=pki.env)
    assert refused.returncode == 1 and refused.stderr.startswith("Error: OpenSSL reads the common name"), \
        refused.stderr
    assert "Java" not in refused.stderr and not (pki.work / "dotted").exists()
    forged = pki.work / "dotted-root.pem"
    checked = verify_openssl(pki.root / "ca.pem", forged, "sslclient")
    assert checked.returncode != 0 and b"permitted subtree violation" in checked.stdout + checked.stderr
    assert said(lines, 4, "server") == "ACCEPTED CN=alice.other.test", lines  # Java would not have rejected it
    verdict = run_certkit("verify", forged, "--purpose", "client", "--ca-dir", pki.root, env=pki.env)
    assert verdict.returncode == 1 and "OpenSSL (permitted subtree violation) and Python's ssl servers refuse it" \
        in verdict.stdout and "Java" not in verdict.stdout, verdict.stdout


def test_the_rule_is_by_position_in_the_library() -> None:
    """A root's constraints are marked, an intermediate's not (inherited from a root: a fresh, unmarked copy);
    the library issues and refuses as the command line does, and a constrained intermediate's note says Java
    applies its constraints."""
    from certkit import CA
    from certkit.constraints import of_chain, on_trust_anchor
    from certkit.errors import NameNotPermitted
    from certkit.trust import Anchor

    root = CA.create("Root", permitted_dns=["example.test"])
    issuing = CA.create("Issuing", parent=root)
    [mine, above] = of_chain([issuing.cert, root.cert])
    assert on_trust_anchor(above) and not on_trust_anchor(mine) and mine == above
    assert not on_trust_anchor(root.cert.extensions.get_extension_for_class(x509.NameConstraints).value)
    with pytest.raises(NameNotPermitted, match=r"^Java \(JSSE\) reads the common name 'alice'"):
        issuing.issue_client("alice")
    assert root.issue_client("alice").cert.subject.rfc4514_string() == "CN=alice"
    anchor = Anchor(root.cert, intermediate="Issuing", intermediate_cert=issuing.cert)
    assert anchor.java_note("java").endswith("what the intermediate \"Issuing\" signs stays inside its own "
                                             "constraints, which Java applies"), anchor.java_note("java")
