"""docs/issue-peer.md and docs/peers.md run as a reader would run them (tests/docs_runner.py):
every command, with the documented output; the peers page starts its own Redis and etcd."""

from __future__ import annotations

from pathlib import Path

from conftest import PASSPHRASE, REPO, certkit_env, free_port, require, run_certkit
from docs_runner import run_page


def test_issue_peer_page(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = certkit_env(CERTKIT_CA_DIR=str(work / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Cluster CA", env=env, check=True)
    run_page(REPO / "docs" / "issue-peer.md", cwd=work, env=env)
    assert (work / "peers" / "node-2" / "cert.pem").exists()


def test_peers_page(tmp_path: Path) -> None:
    """The Redis replication and the etcd 3.4 cluster of docs/peers.md, on free ports."""
    for tool in ("redis-server", "redis-cli", "etcd", "etcdctl"):
        require(tool)
    work = tmp_path / "work"
    work.mkdir()
    env = certkit_env(CERTKIT_CA_DIR=str(work / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Cluster CA", env=env, check=True)
    # Documented ports -> free ones. Redis ports first; the etcd ones are spelled with their
    # address so that 2379 cannot match inside 22379.
    substitutions = {"6380": str(free_port()), "6381": str(free_port())}
    for port in ("2379", "2380", "22379", "22380", "32379", "32380"):
        substitutions[f"127.0.0.1:{port}"] = f"127.0.0.1:{free_port()}"
    session = run_page(REPO / "docs" / "peers.md", cwd=work, env=env, substitutions=substitutions)
    assert "MASTER <-> REPLICA sync: Finished with success" in session.job_output(2)
    assert (work / "consul-1" / "cert.pem").exists()
