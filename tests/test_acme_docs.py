"""docs/acme.md runs as written: a two-tier CA, `certkit acme serve` in the background, then the real
certbot, lego and Caddy from the page, each certificate verified, listed, revoked onto the CRL."""

from __future__ import annotations

from pathlib import Path

from acme_helpers import ports
from conftest import PASSPHRASE, REPO, certkit_env, require
from docs_runner import run_page


def test_acme_page(tmp_path: Path) -> None:
    for tool in ("certbot", "lego", "caddy", "curl", "openssl"):
        require(tool)
    work = tmp_path / "work"
    work.mkdir()
    acme_port, http_port, tls_port = ports(3)
    env = certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    for name in ("REQUESTS_CA_BUNDLE", "LEGO_CA_CERTIFICATES", "XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        env.pop(name, None)
    session = run_page(REPO / "docs" / "acme.md", cwd=work, env=env,
                       substitutions={"14000": str(acme_port), "18080": str(http_port), "18443": str(tls_port)})
    server_log = session.job_output(1)
    assert "http-01 for app.example.internal: valid" in server_log
    assert "tls-alpn-01 for www.example.internal: valid" in server_log
    assert "http-01 for web.example.internal: valid" in server_log
    assert "revoked serial" in server_log
