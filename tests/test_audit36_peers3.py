"""Round 36, peers3 (issue 16): what certkit says of certificates that services read, checked with the services.

1. An Ed25519 client certificate's note spoke of browsers taking Ed25519 "in a TLS handshake" and of
   "OpenSSL-based peers"; under an Ed25519 CA it said browsers (Chrome) refuse every certificate under it, though a
   browser verifies no client's chain. The services that read a client certificate (etcd's client listener, Go;
   Redis, OpenSSL; a JDK 17 JSSE server) accept both, as run here.
2. docs/peers.md said what etcd does with a server certificate in a peer certificate's place, not with a client
   certificate there: the cluster never forms either, and the log says why on the connecting side.
"""

from __future__ import annotations

import datetime
import subprocess
import time
from pathlib import Path

import pytest

from conftest import new_ca, run_certkit

# --- 1. an Ed25519 client certificate's notes say what the services that read it do ------------------------------
SERVICES = "etcd (Go), Redis (OpenSSL) and Java 17's JSSE"
ED25519_CLIENT = (f"an Ed25519 key in a client certificate: {SERVICES} accept it from a client, and cryptography's "
                  "verifier under this CA, but browsers (Chrome, Firefox) cannot present it: they do not take Ed25519 "
                  "in a TLS handshake, so give a person's browser an RSA or ECDSA certificate")
ED25519_CA_CLIENT = (f"this CA (or a CA above it) has an Ed25519 key: {SERVICES} accept a client certificate it "
                     "signs, but web-PKI verifiers (cryptography's) refuse every certificate under it")
SERVER_NOTE = "browsers (Chrome, Firefox) do not take Ed25519 in a TLS handshake: give browsers an RSA or ECDSA"
SERVER_EDCA_NOTE = "browsers and web-PKI verifiers (Chrome, cryptography's) refuse every certificate under it"


def _note(ran) -> str:
    return " ".join((ran.stdout + ran.stderr).split())


@pytest.fixture(scope="module")
def clients(tmp_path_factory):
    """A server and an Ed25519 client certificate of an ECDSA CA, and a server and an ECDSA client certificate of
    an Ed25519 CA; what issuing the clients said."""
    root = tmp_path_factory.mktemp("peers36")
    env = new_ca(root, "certkit round 36 CA")
    run_certkit("issue-server", "localhost", "127.0.0.1", "--out", root / "srv", env=env, check=True)
    ed = run_certkit("issue-client", "app", "--key-type", "ed25519", "--out", root / "ed25519", env=env, check=True)
    ed_env = {**env, "CERTKIT_CA_DIR": str(root / "ed-ca")}
    run_certkit("init-ca", "--name", "certkit round 36 Ed25519 CA", "--key-type", "ed25519", env=ed_env, check=True)
    run_certkit("issue-server", "localhost", "127.0.0.1", "--out", root / "edsrv", env=ed_env, check=True)
    under = run_certkit("issue-client", "app", "--out", root / "edca", env=ed_env, check=True)
    return root, env, ed_env, {"ed25519": _note(ed), "edca": _note(under)}


def test_an_ed25519_client_certificates_notes_say_what_services_do(clients, tmp_path):
    root, env, ed_env, said = clients
    assert ED25519_CLIENT in said["ed25519"] and "OpenSSL-based peers" not in said["ed25519"], said["ed25519"]
    assert ED25519_CA_CLIENT in said["edca"] and "Chrome" not in said["edca"], said["edca"]
    # Every way a client certificate is made says the same: a renewal with a new key, sign-csr, a manifest line.
    renewed = run_certkit("renew", root / "ed25519", "--rekey", "--key-type", "ed25519", "--out", tmp_path / "r",
                          env=env, check=True)
    assert ED25519_CLIENT in _note(renewed), renewed.stdout
    key, csr = tmp_path / "alice.key", tmp_path / "alice.csr"
    subprocess.run(["openssl", "req", "-new", "-newkey", "ed25519", "-nodes", "-keyout", key, "-subj", "/CN=alice",
                    "-out", csr], check=True, capture_output=True, timeout=60)
    signed = run_certkit("sign-csr", csr, "--client", "--out", tmp_path / "alice", env=env, check=True)
    assert ED25519_CLIENT in _note(signed), signed.stdout
    signed_json = run_certkit("sign-csr", csr, "--client", "--json", "--out", tmp_path / "alice-j", env=env,
                              check=True)
    assert ED25519_CLIENT in _note(signed_json), signed_json.stdout
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names,key_type\nclient,bob,ed25519\nserver,web.example.test,ed25519\n")
    batch = _note(run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "b", env=env, check=True))
    assert ED25519_CLIENT in batch and SERVER_NOTE in batch, batch
    under = run_certkit("issue-client", "carol", "--key-type", "ed25519", "--out", tmp_path / "c", env=ed_env,
                        check=True)
    assert ED25519_CA_CLIENT in _note(under) and ED25519_CLIENT not in _note(under), under.stdout
    # A server certificate's notes, which browsers do read, are as they were.
    server = run_certkit("issue-server", "web2.example.test", "--key-type", "ed25519", "--out", tmp_path / "s",
                         env=env, check=True)
    assert SERVER_NOTE in _note(server) and ED25519_CLIENT not in _note(server), server.stdout
    server = run_certkit("issue-server", "web3.example.test", "--out", tmp_path / "s3", env=ed_env, check=True)
    assert SERVER_EDCA_NOTE in _note(server), server.stdout


def _etcd_takes(server, client, tmp_path) -> bool:
    """An etcd member serving its client listener with ``server`` and demanding a client certificate; etcdctl
    presenting ``client`` writes a key."""
    from conftest import free_port, require, wait_or_kill

    etcd, etcdctl = require("etcd"), require("etcdctl")
    port, peer = free_port(), free_port()
    log = (tmp_path / "etcd.log").open("w")
    proc = subprocess.Popen(
        [etcd, "--name", "m1", "--data-dir", tmp_path / "data", "--listen-client-urls", f"https://127.0.0.1:{port}",
         "--advertise-client-urls", f"https://127.0.0.1:{port}", "--listen-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}", "--initial-cluster", f"m1=http://127.0.0.1:{peer}",
         "--cert-file", server / "fullchain.pem", "--key-file", server / "privkey.pem",
         "--trusted-ca-file", server / "ca.pem", "--client-cert-auth"], stdout=log, stderr=log)
    try:
        tls = ["--endpoints", f"https://127.0.0.1:{port}", "--cacert", client / "ca.pem", "--cert",
               client / "fullchain.pem", "--key", client / "privkey.pem", "--dial-timeout", "5s"]
        for _ in range(60):
            put = subprocess.run([etcdctl, *tls, "put", "k", "v"], capture_output=True, text=True, timeout=30,
                                 env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})
            if put.returncode == 0:
                return True
            time.sleep(0.5)
        return False
    finally:
        proc.terminate()
        wait_or_kill(proc)
        log.close()


def _redis_takes(server, client, tmp_path) -> bool:
    from test_audit32_peers2 import _redis_accepts

    return _redis_accepts(server, tmp_path, client)


JSSE_SERVER = """
import java.io.FileInputStream; import java.security.KeyStore; import java.security.cert.CertificateFactory;
import javax.net.ssl.*;
public class Services {
  static SSLContext context(String p12, String ca) throws Exception {
    char[] pw = "peers36".toCharArray();
    KeyStore ks = KeyStore.getInstance("PKCS12"); ks.load(new FileInputStream(p12), pw);
    KeyManagerFactory kmf = KeyManagerFactory.getInstance("SunX509"); kmf.init(ks, pw);
    KeyStore ts = KeyStore.getInstance("PKCS12"); ts.load(null, null);
    ts.setCertificateEntry("ca",
        CertificateFactory.getInstance("X.509").generateCertificate(new FileInputStream(ca)));
    TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX"); tmf.init(ts);
    SSLContext c = SSLContext.getInstance("TLS"); c.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
    return c;
  }
  public static void main(String[] a) throws Exception {
    SSLServerSocket ss = (SSLServerSocket) context(a[0], a[2]).getServerSocketFactory().createServerSocket(
        0, 1, java.net.InetAddress.getLoopbackAddress());
    ss.setNeedClientAuth(true);
    Thread t = new Thread(() -> { try (SSLSocket s = (SSLSocket) ss.accept()) { s.startHandshake();
        System.out.println("server saw " + s.getSession().getPeerPrincipal());
        s.getOutputStream().write(1); s.getOutputStream().flush(); } catch (Exception e) { System.out.println(e); } });
    t.start();
    try (SSLSocket c = (SSLSocket) context(a[1], a[2]).getSocketFactory().createSocket("127.0.0.1",
        ss.getLocalPort())) { c.startHandshake(); c.getInputStream().read(); }
    catch (Exception e) { System.out.println(e); }
    t.join();
  }
}
"""


def _jsse_takes(server, client, tmp_path) -> bool:
    """A JDK JSSE server (Kafka's, Elasticsearch's TLS) demanding a client certificate takes ``client``'s."""
    from conftest import require

    java = require("java")
    source = tmp_path / "Services.java"
    source.write_text(JSSE_SERVER)
    for folder in (server, client):
        subprocess.run(["openssl", "pkcs12", "-export", "-in", folder / "fullchain.pem", "-inkey",
                        folder / "privkey.pem", "-passout", "pass:peers36", "-out", tmp_path / f"{folder.name}.p12"],
                       check=True, capture_output=True, timeout=60)
    ran = subprocess.run([java, source, tmp_path / f"{server.name}.p12", tmp_path / f"{client.name}.p12",
                          server / "ca.pem"], capture_output=True, text=True, timeout=180)
    return ran.stdout.strip() == "server saw CN=app"


@pytest.mark.parametrize("key", ["ed25519", "edca"])
@pytest.mark.parametrize("service", ["etcd", "redis", "jsse"])
def test_the_services_the_client_notes_name_accept_such_a_client(clients, tmp_path, key, service):
    """What the notes claim, run: each service demands a client certificate and takes this one."""
    root = clients[0]
    server = root / ("srv" if key == "ed25519" else "edsrv")
    takes = {"etcd": _etcd_takes, "redis": _redis_takes, "jsse": _jsse_takes}[service]
    assert takes(server, root / key, tmp_path) is True, (service, key)


def test_cryptographys_client_verifier_does_as_the_notes_say(clients):
    from cryptography import x509
    from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

    root = clients[0]
    now = datetime.datetime.now(datetime.UTC)

    def verify(folder):
        leaf = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes())
        ca = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
        return PolicyBuilder().store(Store([ca])).time(now).build_client_verifier().verify(leaf, [])

    assert verify(root / "ed25519").chain  # accepted under this (ECDSA) CA
    with pytest.raises(VerificationError, match="Forbidden public key algorithm"):
        verify(root / "edca")


# --- 2. docs/peers.md: a client certificate in a peer certificate's place, run in etcd ---------------------------
PROBER_KEY_USAGE = "x509: certificate specifies an incompatible key usage"


def _log_lines(member) -> list[dict]:
    import json

    log = member.log
    return [json.loads(line) for line in log[:log.rfind("\n") + 1].splitlines() if line.startswith("{")]


def test_client_certificates_as_peer_certificates_do_not_form_a_cluster(tmp_path):
    """issue-client certificates (DNS:localhost, the members' host) as etcd 3.4's --peer-cert-file: every member
    refuses the others as servers (the prober's line docs/peers.md shows) and is refused, no leader is elected;
    certkit verify --purpose peer says it first."""
    import re

    from test_peers_etcd import MEMBERS, Etcd

    env = new_ca(tmp_path, "certkit round 36 etcd CA")
    for member in MEMBERS:
        run_certkit("issue-client", f"{member}.cluster.internal", "--dns", "localhost", "--out",
                    tmp_path / f"{member}-client", env=env, check=True)
        run_certkit("issue-server", f"{member}.cluster.internal", "localhost", "127.0.0.1", "--out",
                    tmp_path / f"{member}-server", env=env, check=True)
    run_certkit("issue-client", "etcdctl", "--out", tmp_path / "etcdctl", env=env, check=True)
    verified = run_certkit("verify", tmp_path / "etcd-1-client", "--purpose", "peer", env=env)
    assert verified.returncode == 1 and "as a server: this is a client certificate: it has no serverAuth usage" \
        in verified.stderr, verified
    (tmp_path / "run").mkdir()
    etcd = Etcd(tmp_path / "run", tmp_path)
    try:
        members = etcd.start(MEMBERS, peer_cert="client", client_cert="server", hosts=("localhost",) * 3)
        started = time.monotonic()
        while not all(any(r.get("msg") == "prober detected unhealthy status" and r.get("error") == PROBER_KEY_USAGE
                          for r in _log_lines(m)) for m in members):
            etcd.check_running()
            assert time.monotonic() < started + 60, "\n".join(m.log[-2000:] for m in members)
            time.sleep(0.2)
        time.sleep(max(0.0, started + 3 - time.monotonic()))
        put = etcd.ctl(members[0], "put", "greeting", "never stored")
        assert put.returncode != 0, put
        for m in members:
            lines = _log_lines(m)
            assert not any(r.get("msg") == "elected leader" for r in lines), m.log
            x509 = {r["error"] for r in lines if "x509" in r.get("error", "")}
            assert x509 == {PROBER_KEY_USAGE}, x509  # the purpose, nothing else (no name, no chain)
            assert any(r.get("msg") == "rejected connection" and r.get("error") == "remote error: tls: bad certificate"
                       for r in lines), m.log[-2000:]
        shown = re.findall(r"<!-- run by: tests/test_audit36_peers3.py -->\n```\n(.*?)\n```",
                           (Path(__file__).parent.parent / "docs" / "peers.md").read_text(encoding="utf-8"), re.S)
        pattern = ".*".join(re.escape(part) for part in shown[0].split("..."))
        assert any(re.fullmatch(pattern, line) for m in members for line in m.log.splitlines()), shown
    finally:
        etcd.stop()
