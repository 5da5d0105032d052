"""docs/library.md runs as written: each Python example as a script (its commented results checked),
the pytest plugin example through pytest itself, and the library's TLS contexts against real handshakes."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from conftest import REPO, certkit_env
from docs_runner import python_blocks, run_page, run_python

PAGE = REPO / "docs" / "library.md"


def python_examples() -> list[str]:
    """The page's Python blocks that are not files for another step (those have a file marker)."""
    return [block.code for block in python_blocks(PAGE)]


@pytest.mark.parametrize("index", range(len(python_examples())))
def test_python_example_runs(index: int, tmp_path: Path) -> None:
    run_python(python_examples()[index], cwd=tmp_path, env=certkit_env(), where=f"library.md example {index}")


def test_pytest_plugin_page(tmp_path: Path) -> None:
    """The file block and the console block: pytest finds certkit's fixtures through the entry point."""
    run_page(PAGE, cwd=tmp_path, env=certkit_env())


def test_plugin_fixtures_hold_strict_purposes(certkit_ca, certkit_server_cert, certkit_client_cert) -> None:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    def ekus(issued) -> list:
        return list(issued.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)

    assert ekus(certkit_server_cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert ekus(certkit_client_cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert certkit_server_cert.root == certkit_ca.cert == certkit_client_cert.root


def test_contexts_in_a_real_handshake(certkit_ca, certkit_server_cert, certkit_client_cert) -> None:
    from certkit.tlscheck import handshake

    ok = handshake(certkit_ca.server_context(certkit_server_cert),
                   certkit_ca.client_context(certkit_client_cert), server_hostname="localhost")
    assert ok.accepted, ok.reason
    # No client certificate: the server that requires one refuses.
    refused = handshake(certkit_ca.server_context(certkit_server_cert), certkit_ca.client_context(),
                        server_hostname="localhost")
    assert not refused.accepted
    # Optional: the same client without a certificate gets in.
    optional = handshake(certkit_ca.server_context(certkit_server_cert, client_certificates="optional"),
                         certkit_ca.client_context(), server_hostname="localhost")
    assert optional.accepted, optional.reason
    with pytest.raises(ValueError, match="client_certificates"):
        certkit_ca.server_context(certkit_server_cert, client_certificates="sometimes")


def test_files_are_private_and_gone_afterwards(certkit_client_cert) -> None:
    with certkit_client_cert.files() as paths:
        assert paths.key.stat().st_mode & 0o777 == 0o600 and paths.cert.read_bytes() == certkit_client_cert.cert_pem
        ctx = ssl.create_default_context(cafile=paths.ca)
        assert ctx.cert_store_stats()["x509_ca"] == 1
        folder = paths.folder
    assert not folder.exists()
