"""Real loopback TLS: what a certkit client certificate can do that a server certificate cannot.

Python's ssl module (OpenSSL) on both ends, TLS 1.2 and 1.3, server requiring a
client certificate and trusting only ca.pem.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from certkit.tlscheck import Endpoint, client_context, handshake, server_context

from conftest import PASSPHRASE, certkit_env, run_certkit


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """One CA with a server and a client certificate, and a second CA with its own client."""
    root = tmp_path_factory.mktemp("pki")
    for ca in ("ca", "other-ca"):
        env = certkit_env(CERTKIT_CA_DIR=str(root / ca), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
        run_certkit("init-ca", "--name", f"certkit {ca}", env=env, check=True)
    env = certkit_env(CERTKIT_CA_DIR=str(root / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("issue-server", "localhost", "127.0.0.1", "--out", root / "server", env=env, check=True)
    run_certkit("issue-client", "alice", "--out", root / "alice", env=env, check=True)
    # A client certificate that also names localhost: presented as a server certificate,
    # only its purpose (EKU) is wrong, so that is what the handshake must trip on.
    run_certkit("issue-client", "device", "--dns", "localhost", "--out", root / "device", env=env, check=True)
    env = certkit_env(CERTKIT_CA_DIR=str(root / "other-ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("issue-client", "mallory", "--out", root / "mallory", env=env, check=True)
    return root


def endpoint(pki: Path, name: str) -> Endpoint:
    return Endpoint(pki / name / "fullchain.pem", pki / name / "privkey.pem")


VERSIONS = ["1.2", "1.3"]


@pytest.mark.parametrize("version", VERSIONS)
def test_client_certificate_is_accepted(pki: Path, version: str) -> None:
    result = handshake(server_context(endpoint(pki, "server"), pki / "ca" / "ca.pem", version=version),
                       client_context(pki / "ca" / "ca.pem", endpoint(pki, "alice"), version=version))
    assert result.accepted, result
    assert result.peer_subject == "commonName=alice"
    assert result.version == f"TLSv{version}"


@pytest.mark.parametrize("version", VERSIONS)
def test_server_certificate_presented_as_client_is_rejected(pki: Path, version: str) -> None:
    result = handshake(server_context(endpoint(pki, "server"), pki / "ca" / "ca.pem", version=version),
                       client_context(pki / "ca" / "ca.pem", endpoint(pki, "server"), version=version))
    assert not result.accepted
    assert result.server_error == "certificate verify failed: unsuitable certificate purpose"


@pytest.mark.parametrize("version", VERSIONS)
def test_no_client_certificate_is_rejected(pki: Path, version: str) -> None:
    result = handshake(server_context(endpoint(pki, "server"), pki / "ca" / "ca.pem", version=version),
                       client_context(pki / "ca" / "ca.pem", None, version=version))
    assert not result.accepted
    assert result.server_error == "peer did not return a certificate"


@pytest.mark.parametrize("version", VERSIONS)
def test_client_certificate_from_another_ca_is_rejected(pki: Path, version: str) -> None:
    result = handshake(server_context(endpoint(pki, "server"), pki / "ca" / "ca.pem", version=version),
                       client_context(pki / "ca" / "ca.pem", endpoint(pki, "mallory"), version=version))
    assert not result.accepted
    assert result.server_error == "certificate verify failed: unable to get local issuer certificate"


@pytest.mark.parametrize("version", VERSIONS)
def test_client_certificate_presented_as_server_is_rejected(pki: Path, version: str) -> None:
    result = handshake(server_context(endpoint(pki, "device"), pki / "ca" / "ca.pem", version=version),
                       client_context(pki / "ca" / "ca.pem", endpoint(pki, "alice"), version=version))
    assert not result.accepted
    assert result.client_error == "certificate verify failed: unsuitable certificate purpose"


@pytest.mark.parametrize("version", VERSIONS)
def test_server_is_checked_by_name(pki: Path, version: str) -> None:
    ctx = server_context(endpoint(pki, "server"), pki / "ca" / "ca.pem", version=version)
    for name in ("localhost", "127.0.0.1"):
        ok = handshake(ctx, client_context(pki / "ca" / "ca.pem", endpoint(pki, "alice"), version=version),
                       server_hostname=name)
        assert ok.accepted, (name, ok)
    bad = handshake(ctx, client_context(pki / "ca" / "ca.pem", endpoint(pki, "alice"), version=version),
                    server_hostname="www.example.com")
    assert not bad.accepted and "Hostname mismatch" in bad.client_error
