"""Round nineteen, peers: names that real peers (Go's crypto/x509 in etcd, Java's JSSE) read otherwise than certkit.

1. A URI whose host has an empty label (a final dot, https://example.internal./x; two dots in a row or a final dot
   in a SPIFFE trust domain, whose syntax allows them) was certified as given. Go's crypto/x509 refuses to parse a
   certificate naming such a URI ('x509: cannot parse URI ...: invalid domain'): etcdctl cannot load it and etcd
   refuses the handshake. It is now refused, naming the URI to give; a renewal keeps one certified before, with a
   note.
2. A Unicode host name that IDNA2003 converts otherwise (faß.de: fass.de) was noted as refused by Python's ssl
   module alone. Java's JSSE checks the name it connects by through java.net.IDN, IDNA2003 too, and refuses the
   certificate as Python does: the note (issue-server, verify --name) and docs/issue-server.md name Java too.
3. A client common name with a final dot ('alice.', 'svc.example.org.') under a DNS-constrained intermediate was
   refused as one "Java (JSSE) reads as a host name": Java's DNSName refuses a final dot, so Java does not check it
   (nor does OpenSSL, whose cn2dnsid refuses it too), and both accept the certificate. It is now issued.
4. Two names can give the same default folder (Müller and Möller: M_ller). The second was told 'M_ller already
   holds cert.pem, ...; pass --force to replace them', and --force threw away the first one's key; issue-batch
   --resume took the first one's bundle as the second's ('kept 1 bundle already complete'). Both now say whose it is.
5. A host name ending in an ideographic, fullwidth or halfwidth full stop, which browsers read as the final dot of
   the absolute name, was refused as having an empty label; it is now the absolute name, as 'a.example.com.' is.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_peers_etcd import Etcd

from conftest import assert_clean_error, new_ca, run_certkit

# --- 1. a URI whose host has an empty label -----------------------------------------------------------------------
# Each URI: how its host is refused, and the URI the refusal says to give.
EMPTY_LABEL = {
    "https://example.internal./x": ("ends with a dot", "https://example.internal/x"),
    "spiffe://example.internal./ns/a": ("ends with a dot", "spiffe://example.internal/ns/a"),
    "spiffe://a..example.internal/ns/a": ("has an empty label ('..')", "spiffe://a.example.internal/ns/a"),
}


def _refusal(uri: str) -> str:
    where, fixed = EMPTY_LABEL[uri]
    host = uri.split("/")[2]
    return (f"'{uri}' is not a valid URI for a certificate: its host '{host}' {where}, and Go refuses a certificate "
            f"naming it ('x509: cannot parse URI {uri}: invalid domain'): etcd, Kubernetes, SPIRE and other Go "
            f"programs would refuse it; give '{fixed}'.")


@contextlib.contextmanager
def _older(monkeypatch):
    """certkit before round nineteen, which took such a URI: within it, certkit issues as it did."""
    import certkit.names_uri as names_uri

    with monkeypatch.context() as older:
        older.setattr(names_uri, "go_unreadable", lambda text: None)
        yield


@pytest.fixture(scope="module")
def uri_certs(tmp_path_factory) -> Path:
    """A CA; etcd-1's peer and server certificates; a client certificate for each URI of EMPTY_LABEL as certkit
    issued it before (uri-0, uri-1, ...), and one for the URI it says to give instead of the first (good)."""
    root = tmp_path_factory.mktemp("uri-certs")
    env = new_ca(root, "certkit URI host CA")
    run_certkit("issue-peer", "etcd-1.cluster.internal", "127.0.0.1", "--out", root / "etcd-1-peer", env=env,
                check=True)
    run_certkit("issue-server", "127.0.0.1", "--out", root / "etcd-1-server", env=env, check=True)
    with pytest.MonkeyPatch.context() as monkeypatch:
        with _older(monkeypatch):
            for i, uri in enumerate(EMPTY_LABEL):
                run_certkit("issue-client", f"svc-{i}", "--uri", uri, "--out", root / f"uri-{i}", env=env, check=True)
    run_certkit("issue-client", "svc-good", "--uri", EMPTY_LABEL[next(iter(EMPTY_LABEL))][1], "--out",
                root / "good", env=env, check=True)
    return root


def _handshake(bundle: Path, port: int, ca: Path) -> None:
    """A TLS connection to etcd presenting ``bundle``'s certificate (Python's ssl reads it); closed once etcd judged
    it."""
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(bundle / "fullchain.pem", bundle / "privkey.pem")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError):
            pass


def test_go_refuses_a_certificate_naming_such_a_uri_and_certkit_now_refuses_to_issue_it(tmp_path, uri_certs):
    env = new_ca(tmp_path, "certkit URI CA")
    for uri in EMPTY_LABEL:  # now: refused, nothing written
        assert_clean_error(run_certkit("issue-client", "svc", "--uri", uri, "--out", tmp_path / "svc", env=env),
                           _refusal(uri))
        assert not (tmp_path / "svc").exists()
    # what certkit issued before: Go, in etcdctl and in etcd, cannot read it; the URI it now says to give, it can
    etcd = Etcd(tmp_path / "run", uri_certs)
    etcd.root.mkdir()
    try:
        (member,) = etcd.start(["etcd-1"], peer_cert="peer", client_cert="server")
        deadline = time.monotonic() + 30
        while etcd.ctl(member, "put", "k", "v", client="good").returncode != 0:
            etcd.check_running()
            assert time.monotonic() < deadline, member.log[-3000:]
            time.sleep(0.1)
        for i, uri in enumerate(EMPTY_LABEL):
            said = etcd.ctl(member, "put", "k", "v", client=f"uri-{i}")
            assert said.returncode != 0 and f'x509: cannot parse URI "{uri}": invalid domain' in said.stderr, said
            _handshake(uri_certs / f"uri-{i}", member.client_port, uri_certs / "ca" / "ca.pem")
            deadline = time.monotonic() + 30
            while f'cannot parse URI \\"{uri}\\": invalid domain' not in member.log:
                assert time.monotonic() < deadline, member.log[-3000:]
                time.sleep(0.1)
    finally:
        etcd.stop()


def _csr_with_uri(uri: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "svc")]))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


@pytest.mark.parametrize("uri", sorted(EMPTY_LABEL))
def test_sign_csr_and_the_library_refuse_it_too(tmp_path, uri):
    from certkit import CA
    from certkit.errors import InvalidName

    env = new_ca(tmp_path, "certkit URI CSR CA")
    (tmp_path / "svc.csr").write_bytes(_csr_with_uri(uri))
    assert_clean_error(run_certkit("sign-csr", tmp_path / "svc.csr", "--client", "--out", tmp_path / "svc", env=env),
                       f"The CSR's subjectAltName URI:{uri} is refused: {_refusal(uri)}")
    assert not (tmp_path / "svc").exists()
    ca = CA.create("certkit URI library CA")
    with pytest.raises(InvalidName) as refused:
        ca.issue_client("svc", uris=[uri])
    assert str(refused.value) == _refusal(uri)


def test_a_certificate_certified_with_such_a_uri_before_is_renewed_with_it_and_a_note(tmp_path, monkeypatch):
    env = new_ca(tmp_path, "certkit URI renewal CA")
    uri = "https://example.internal./x"
    with _older(monkeypatch):
        run_certkit("issue-client", "svc", "--uri", uri, "--out", tmp_path / "svc", env=env, cwd=tmp_path, check=True)
    renewed = run_certkit("renew", tmp_path / "svc", env=env, cwd=tmp_path, subprocess=True)
    assert renewed.returncode == 0, renewed.stderr
    where, fixed = EMPTY_LABEL[uri]
    assert (f"note        it names the URI {uri}: its host 'example.internal.' {where}, and Go refuses a certificate "
            f"naming it ('x509: cannot parse URI {uri}: invalid domain'): etcd, Kubernetes, SPIRE and other Go "
            f"programs would refuse it; give '{fixed}' in a new certificate") in renewed.stdout, renewed.stdout
    san = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "svc" / "cert.pem"), "-noout", "-ext",
                          "subjectAltName"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert san.split()[-1] == f"URI:{uri}", san


# --- 2. a Unicode host name Java converts otherwise -------------------------------------------------------------------
JAVA_CLIENT = """
import javax.net.ssl.*; import java.io.FileInputStream; import java.net.Socket; import java.security.KeyStore;
import java.security.cert.CertificateFactory;
public class IdnClient { public static void main(String[] a) throws Exception {
  KeyStore trust = KeyStore.getInstance("PKCS12"); trust.load(null, null);
  CertificateFactory x509 = CertificateFactory.getInstance("X.509");
  trust.setCertificateEntry("ca", x509.generateCertificate(new FileInputStream(a[0])));
  TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX"); tmf.init(trust);
  SSLContext context = SSLContext.getInstance("TLS"); context.init(null, tmf.getTrustManagers(), null);
  int port = Integer.parseInt(a[1]);
  SSLSocket tls = (SSLSocket) context.getSocketFactory().createSocket(new Socket("127.0.0.1", port), a[2], port, true);
  SSLParameters parameters = tls.getSSLParameters();
  parameters.setEndpointIdentificationAlgorithm("HTTPS");  // as HttpsURLConnection and HttpClient check the name
  tls.setSSLParameters(parameters);
  try { tls.startHandshake(); System.out.println("ACCEPTED"); }
  catch (SSLHandshakeException e) { System.out.println("REFUSED " + e.getMessage()); }
}}
"""


def _java_connects(tmp_path: Path, bundle: Path, name: str) -> str:
    """What a Java (JSSE) client connecting by ``name`` says of a server presenting ``bundle``."""
    import threading

    from conftest import require

    source = tmp_path / "IdnClient.java"
    if not source.exists():  # compiled once for the test's two connections
        source.write_text(JAVA_CLIENT)
        subprocess.run([require("javac"), "-d", str(tmp_path), str(source)], check=True, capture_output=True,
                       timeout=120)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(bundle / "fullchain.pem", bundle / "privkey.pem")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                try:
                    with server.wrap_socket(conn, server_side=True):
                        pass
                except (ssl.SSLError, OSError):
                    pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        said = subprocess.run([require("java"), "-cp", str(tmp_path), "IdnClient", str(bundle / "ca.pem"),
                               str(listener.getsockname()[1]), name], capture_output=True, text=True, timeout=120)
        thread.join(timeout=30)
    return said.stdout.strip() or said.stderr


def test_a_name_java_converts_otherwise_is_noted_for_java_as_java_refuses_it(tmp_path):
    env = new_ca(tmp_path, "certkit IDNA CA")
    issued = run_certkit("issue-server", "faß.de", "--out", tmp_path / "idn", env=env, check=True)
    note = ("faß.de is xn--fa-hia.de in IDNA2008, as curl and browsers convert it, but Python's ssl module (IDNA2003) "
            "and Java's JSSE (java.net.IDN, IDNA2003 too) connect to fass.de instead and refuse this certificate "
            "(hostname mismatch): name fass.de too if Python or Java clients connect by this name")
    assert note in " ".join(issued.stdout.split()), issued.stdout
    refused = _java_connects(tmp_path, tmp_path / "idn", "faß.de")
    assert refused == "REFUSED No subject alternative DNS name matching faß.de found.", refused
    verified = run_certkit("verify", tmp_path / "idn", "--purpose", "server", "--name", "faß.de", env=env, check=True)
    assert note in " ".join(verified.stdout.split()), verified.stdout
    run_certkit("issue-server", "faß.de", "fass.de", "--out", tmp_path / "both", env=env, check=True)
    assert _java_connects(tmp_path, tmp_path / "both", "faß.de") == "ACCEPTED"  # as the note advises


# --- 3. a client common name with a final dot, which Java does not read as a host name -------------------------------
JAVA_PKIX = """
import java.io.FileInputStream; import java.security.cert.*; import java.util.*;
public class Pkix { public static void main(String[] a) throws Exception {
  CertificateFactory x509 = CertificateFactory.getInstance("X.509");
  X509Certificate root = (X509Certificate) x509.generateCertificate(new FileInputStream(a[0]));
  for (int i = 1; i < a.length; i++) {
    List<Certificate> chain = new ArrayList<>(x509.generateCertificates(new FileInputStream(a[i])));
    PKIXParameters parameters = new PKIXParameters(Set.of(new TrustAnchor(root, null)));
    parameters.setRevocationEnabled(false);
    try { CertPathValidator.getInstance("PKIX").validate(x509.generateCertPath(chain), parameters);
          System.out.println("ACCEPTED"); }
    catch (CertPathValidatorException e) { System.out.println("REFUSED " + e.getMessage()); }
  }
}}
"""


def _java_validates(tmp_path: Path, root: Path, *fullchains: Path) -> list[str]:
    """What Java's PKIX validator (the one JSSE servers use for client certificates) says of each chain."""
    from conftest import require

    source = tmp_path / "Pkix.java"
    source.write_text(JAVA_PKIX)
    said = subprocess.run([require("java"), str(source), str(root), *map(str, fullchains)], capture_output=True,
                          text=True, timeout=120)
    return said.stdout.split("\n")[:-1] or [said.stderr]


def test_a_common_name_with_a_final_dot_is_issued_under_an_intermediate_as_java_and_openssl_accept_it(tmp_path):
    env = new_ca(tmp_path, "certkit CN root")
    issuing = {**env, "CERTKIT_CA_DIR": str(tmp_path / "issuing")}
    run_certkit("init-ca", "--ca-dir", tmp_path / "issuing", "--parent-ca-dir", tmp_path / "ca", "--name",
                "certkit CN issuing", "--permit-dns", "example.internal", env=env | {
                    "CERTKIT_PARENT_CA_PASSPHRASE": env["CERTKIT_CA_PASSPHRASE"]}, check=True)
    root = tmp_path / "ca" / "ca.pem"
    for name in ("alice.", "svc.example.org."):
        run_certkit("issue-client", name, "--out", tmp_path / name, env=issuing, check=True)
        subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", str(root),
                        "-untrusted", str(tmp_path / name / "chain.pem"), str(tmp_path / name / "cert.pem")],
                       check=True, capture_output=True, timeout=60)
    assert _java_validates(tmp_path, root, tmp_path / "alice." / "fullchain.pem",
                           tmp_path / "svc.example.org." / "fullchain.pem") == ["ACCEPTED", "ACCEPTED"]
    # without the dot Java reads it, and refuses it: still refused, naming Java
    assert_clean_error(run_certkit("issue-client", "alice", "--out", tmp_path / "alice", env=issuing),
                       "Java (JSSE) reads the common name 'alice' of a client certificate without a DNS name as a "
                       "host name")


# --- 4. two names that give the same default folder ------------------------------------------------------------------
def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_name_whose_default_folder_holds_anothers_bundle_is_refused_even_with_force(tmp_path):
    """issue-client Möller after issue-client Müller (both M_ller): 'M_ller already holds cert.pem, ...; pass --force
    to replace them', and --force threw away Müller's key. Now refused, --force or not, naming the other name."""
    env = new_ca(tmp_path, "certkit folder CA")
    run_certkit("issue-client", "Müller", env=env, cwd=tmp_path, check=True)
    before = _files(tmp_path / "M_ller")
    for force in ((), ("--force",)):
        assert_clean_error(run_certkit("issue-client", "Möller", *force, env=env, cwd=tmp_path),
                           "M_ller holds the certificate of 'Müller', another name that certkit writes to the same "
                           "folder (a folder's name keeps letters, digits and . _ @ + - only); give the one for "
                           "'Möller' its own folder with --out.")
    (tmp_path / "anna.csr").write_bytes(subprocess.run(
        ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
         str(tmp_path / "anna.key"), "-subj", "/CN=Anna_Ng"], capture_output=True, check=True, timeout=60).stdout)
    run_certkit("issue-client", "Anna Ng", env=env, cwd=tmp_path, check=True)
    assert_clean_error(run_certkit("sign-csr", tmp_path / "anna.csr", "--client", "--force", env=env, cwd=tmp_path),
                       "Anna_Ng holds the certificate of 'Anna Ng', another name")
    assert _files(tmp_path / "M_ller") == before  # Müller's key and certificate, untouched
    run_certkit("issue-client", "Möller", "--out", tmp_path / "moeller", env=env, cwd=tmp_path, check=True)
    run_certkit("issue-client", "Müller", "--force", env=env, cwd=tmp_path, check=True)  # its own: replaced
    assert _files(tmp_path / "M_ller")["privkey.pem"] != before["privkey.pem"]
    run_certkit("issue-server", "10.9.9.9", "a.example", env=env, cwd=tmp_path, check=True)  # CN a.example in 10.9.9.9
    run_certkit("issue-server", "10.9.9.9", "a.example", "--force", env=env, cwd=tmp_path, check=True)


def test_issue_batch_neither_replaces_nor_keeps_a_bundle_of_another_common_name(tmp_path):
    """A manifest line for Möller where M_ller holds Müller's bundle: 'M_ller already holds ...; Pass --force', and
    --force replaced Müller's key; with --resume it was counted 'kept 1 bundle already complete', and Möller got no
    certificate. Now the line is refused naming Müller, with either; given as its 'out', --resume says whose it is."""
    env = new_ca(tmp_path, "certkit batch folder CA")
    (tmp_path / "first.csv").write_text("kind,names\nclient,Müller\n")
    (tmp_path / "second.csv").write_text("kind,names\nclient,Möller\n")
    (tmp_path / "named.csv").write_text("kind,names,out\nclient,Möller,shared\n")
    (tmp_path / "shared.csv").write_text("kind,names,out\nclient,Müller,shared\n")
    run_certkit("issue-batch", tmp_path / "first.csv", env=env, cwd=tmp_path, check=True)
    run_certkit("issue-batch", tmp_path / "shared.csv", env=env, cwd=tmp_path, check=True)
    before = _files(tmp_path / "M_ller")
    for option in ("--resume", "--force"):
        assert_clean_error(run_certkit("issue-batch", tmp_path / "second.csv", option, env=env, cwd=tmp_path),
                           "line 2: its output folder M_ller holds the certificate of 'Müller', "
                           "another name that gives the same folder; give the line its own 'out'.")
    assert_clean_error(run_certkit("issue-batch", tmp_path / "named.csv", "--resume", env=env, cwd=tmp_path),
                       "shared holds a bundle that --resume does not keep: its certificate is for CN=Müller; the "
                       "line asks for CN=Möller")
    assert _files(tmp_path / "M_ller") == before
    kept = run_certkit("issue-batch", tmp_path / "first.csv", "--resume", env=env, cwd=tmp_path, check=True)
    assert "kept       1 bundle already complete (--resume)" in kept.stdout, kept.stdout
    run_certkit("issue-batch", tmp_path / "first.csv", "--force", env=env, cwd=tmp_path, check=True)  # its own
    assert _files(tmp_path / "M_ller")["privkey.pem"] != before["privkey.pem"]


# --- 5. a host name ending in another full stop -----------------------------------------------------------------------
@pytest.mark.parametrize("stop", ["\u3002", "\uff0e", "\uff61"])
def test_a_name_ending_in_a_full_stop_browsers_read_as_a_dot_is_the_absolute_name(tmp_path, stop):
    """'a.example.com。' was refused ('it has an empty label') while 'a.example.com.' is the absolute form of
    a.example.com: browsers (the WHATWG URL standard, Node's url.domainToASCII here) map the ideographic, fullwidth
    and halfwidth full stops to '.', so both are the same host. It is now certified as a.example.com."""
    from conftest import require

    read = subprocess.run([require("node"), "-e", "process.stdout.write(require('url').domainToASCII(process.argv[1]))",
                           f"a.example.com{stop}"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert read == "a.example.com."
    env = new_ca(tmp_path, "certkit full stop CA")
    run_certkit("issue-peer", f"a.example.com{stop}", "--out", tmp_path / "peer", env=env, check=True)
    san = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "peer" / "cert.pem"), "-noout", "-ext",
                          "subjectAltName"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert san.split()[-1] == "DNS:a.example.com", san
