"""Round twenty-four, area serve/show: what verify, probe, inspect and serve say, checked against real
certificates and real peers on 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509

from conftest import assert_clean_error, free_port, run_certkit


# --- 1. a name with whitespace around it matched the certificate for the name without it --------------------------
@pytest.fixture
def served(ca_dir: Path, ca_env: dict, tmp_path: Path) -> Path:
    """A server certificate for localhost and 127.0.0.1, and a client one (alice, DNS alice.example)."""
    run_certkit("issue-server", "localhost", "127.0.0.1", cwd=tmp_path, env=ca_env, check=True)
    run_certkit("issue-client", "alice", "--dns", "alice.example", cwd=tmp_path, env=ca_env, check=True)
    return tmp_path


@pytest.mark.parametrize(("purpose", "folder", "name", "where"), [
    ("server", "localhost", "localhost ", "after it"), ("server", "localhost", " localhost", "before it"),
    ("server", "localhost", " localhost ", "around it"), ("server", "localhost", "localhost.\u00a0", "after it"),
    ("server", "localhost", "127.0.0.1 ", "after it"), ("server", "localhost", "localhost\t", "after it"),
    ("client", "alice", "alice.example ", "after it"), ("client", "alice", " alice", "before it")])
def test_verify_refuses_a_name_with_whitespace(served: Path, ca_env: dict, purpose, folder, name, where):
    proc = run_certkit("verify", served / folder / "cert.pem", "--purpose", purpose, "--name", name, env=ca_env)
    assert_clean_error(proc, f"has whitespace {where}, which no host name")
    assert f"give '{name.strip()}'" in proc.stderr
    ok = run_certkit("verify", served / folder / "cert.pem", "--purpose", purpose, "--name", name.strip(),
                     env=ca_env)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_verify_certificate_refuses_a_name_with_whitespace(served: Path, ca_dir: Path):
    from certkit.errors import InvalidName
    from certkit.verify import verify_certificate

    leaf = x509.load_pem_x509_certificate((served / "localhost" / "cert.pem").read_bytes())
    root = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    assert verify_certificate(leaf, purpose="server", roots=root, name="localhost").valid
    for name in ("localhost ", " 127.0.0.1", "localhost\u3000"):
        with pytest.raises(InvalidName, match="has whitespace"):
            verify_certificate(leaf, purpose="server", roots=root, name=name)


@pytest.mark.parametrize("host", ["localhost ", "localhost\u00a0", "127.0.0.1 "])
def test_probe_refuses_a_host_with_whitespace(host: str, ca_dir: Path):
    """Nothing listens on the port: before, probe connected to localhost (connection refused)."""
    url = f"https://{host}:{free_port()}/"
    for json in ((), ("--json",)):
        proc = run_certkit("probe", url, "--ca-dir", ca_dir, *json)
        assert_clean_error(proc, f"the host '{host.strip()}")
        assert "has whitespace after it" in proc.stdout + proc.stderr

