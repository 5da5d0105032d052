"""Round fourteen, peers: what docs/peers.md tells cluster members and their clients to present, run with
the real peers (Redis, etcd 3.4, openssl s_client) under an intermediate CA, the layout two-tier-pki.md
recommends."""

from __future__ import annotations

from pathlib import Path

from conftest import PASSPHRASE, REPO, certkit_env, free_port, require, run_certkit
from docs_runner import run_page


def test_peers_page_runs_under_an_intermediate_ca(tmp_path: Path) -> None:
    """peers.md had every client present ``cert.pem`` (redis-cli ``--cert``, ``ETCDCTL_CERT``, s_client
    ``-cert``, etcd 3.5's ``--peer-client-cert-file``/``--client-cert-file``): under an intermediate that
    leaf lacks its issuer, and Redis and etcd, trusting the root ``ca.pem``, refused every client (redis-cli
    got 'Connection reset by peer', etcdctl 'context deadline exceeded'). The page now presents
    ``fullchain.pem``; run whole, under an intermediate, it works."""
    for tool in ("redis-server", "redis-cli", "etcd", "etcdctl", "openssl"):
        require(tool)
    work = tmp_path / "work"
    work.mkdir()
    env = certkit_env(CERTKIT_CA_DIR=str(work / "issuing"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--ca-dir", str(work / "root"), "--name", "Cluster Root", env=env, check=True)
    run_certkit("init-ca", "--parent-ca-dir", str(work / "root"), "--name", "Cluster Issuing", env=env,
                check=True)
    substitutions = {"6380": str(free_port()), "6381": str(free_port())}
    for port in ("2379", "2380", "22379", "22380", "32379", "32380"):
        substitutions[f"127.0.0.1:{port}"] = f"127.0.0.1:{free_port()}"
    session = run_page(REPO / "docs" / "peers.md", cwd=work, env=env, substitutions=substitutions)
    assert "MASTER <-> REPLICA sync: Finished with success" in session.job_output(2)
    assert (work / "app" / "chain.pem").exists()  # an intermediate's bundle, so cert.pem alone is not enough


def test_peers_page_names_no_client_cert_pem() -> None:
    """Every client-side option on the page names fullchain.pem (s_client: cert.pem plus -cert_chain)."""
    text = (REPO / "docs" / "peers.md").read_text()
    for option in ("--cert ", "ETCDCTL_CERT=", "--peer-client-cert-file ", "--client-cert-file ",
                   "tls-client-cert-file "):
        for line in text.splitlines():
            if option in line:
                assert f"{option}" in line and "cert.pem" not in line.replace("fullchain.pem", ""), line
    for line in text.splitlines():
        if line.startswith("$ openssl s_client") and " -cert " in line:
            assert "-cert_chain" in line, line


JSSE_SERVER = r"""
import javax.net.ssl.*; import java.security.*; import java.io.*;
public class NeedClientAuth { public static void main(String[] a) throws Exception {
  KeyStore t = KeyStore.getInstance("PKCS12"); t.load(new FileInputStream(a[0]), "pwpwpw".toCharArray());
  TrustManagerFactory f = TrustManagerFactory.getInstance("PKIX"); f.init(t);
  KeyStore k = KeyStore.getInstance("PKCS12"); k.load(new FileInputStream(a[1]), "pwpwpw".toCharArray());
  KeyManagerFactory kf = KeyManagerFactory.getInstance("PKIX"); kf.init(k, "pwpwpw".toCharArray());
  SSLContext c = SSLContext.getInstance("TLS"); c.init(kf.getKeyManagers(), f.getTrustManagers(), null);
  SSLServerSocket ss = (SSLServerSocket) c.getServerSocketFactory().createServerSocket(
      Integer.parseInt(a[2]), 5, java.net.InetAddress.getByName("127.0.0.1"));
  ss.setNeedClientAuth(true); System.out.println("READY"); System.out.flush();
  while (true) { SSLSocket s = (SSLSocket) ss.accept();
    try { s.startHandshake(); s.getOutputStream().write("HTTP/1.0 200 OK\r\n\r\nok\n".getBytes()); }
    catch (Exception e) { System.out.println("REFUSED " + e); System.out.flush(); }
    s.close(); } } }
"""


def test_probe_names_java_among_servers_that_send_bad_certificate_for_none(tmp_path: Path) -> None:
    """A JSSE server that needs a client certificate sends ``bad certificate`` when none comes (TLS 1.3):
    probe said only Go servers before 1.21 (etcd 3.4) do so; it now names Java too. With a server
    certificate as the client's, JSSE refuses it (``certificate unknown``) and probe says why."""
    import subprocess
    import time

    for tool in ("javac", "java", "keytool", "openssl"):
        require(tool)
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      HOME=str(tmp_path / "home"))
    run_certkit("init-ca", "--name", "Java CA", env=env, check=True)
    run_certkit("issue-server", "localhost", "--out", str(tmp_path / "srv"), env=env, check=True)
    subprocess.run(["openssl", "pkcs12", "-export", "-in", tmp_path / "srv" / "fullchain.pem", "-inkey",
                    tmp_path / "srv" / "privkey.pem", "-out", tmp_path / "srv.p12", "-passout", "pass:pwpwpw"],
                   check=True, capture_output=True)
    subprocess.run(["keytool", "-importcert", "-noprompt", "-alias", "ca", "-keystore", tmp_path / "ts.p12",
                    "-storetype", "PKCS12", "-storepass", "pwpwpw", "-file", tmp_path / "ca" / "ca.pem"],
                   check=True, capture_output=True)
    (tmp_path / "NeedClientAuth.java").write_text(JSSE_SERVER)
    subprocess.run(["javac", "NeedClientAuth.java"], cwd=tmp_path, check=True, capture_output=True)
    port = free_port()
    server = subprocess.Popen(["java", "NeedClientAuth", "ts.p12", "srv.p12", str(port)], cwd=tmp_path,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "READY"
        url = f"https://localhost:{port}/"
        none = run_certkit("probe", url, "--ca-dir", str(tmp_path / "ca"), env=env, subprocess=True)
        wrong = run_certkit("probe", url, "--ca-dir", str(tmp_path / "ca"), "--bundle", str(tmp_path / "srv"),
                            env=env, subprocess=True)
        time.sleep(0.5)
    finally:
        server.kill()
        server.wait()
    lines = {line[:14].strip(): line[14:] for line in none.stdout.splitlines() if line.startswith("  ")}
    assert lines["without"].startswith("required: without one the server refused (tls alert bad certificate: "
                                       "the server requires a client certificate and got none; Java servers"), \
        none.stdout
    lines = {line[:14].strip(): line[14:] for line in wrong.stdout.splitlines() if line.startswith("  ")}
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    assert lines["with it"].startswith("refused: tls alert certificate unknown: "), wrong.stdout
    assert "has no clientAuth in its extendedKeyUsage" in lines["with it"], wrong.stdout
