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
