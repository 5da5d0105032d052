"""A real browser authenticates with a certkit client certificate.

Headless Chromium (Debian's ``chromium``) with certkit's bundle.p12 imported
into its NSS database (``pk12util``), the certkit CA trusted there, and the
managed policy AutoSelectCertificateForUrls so that no certificate picker is
needed (headless Chromium would wait for it forever). It loads
``https://localhost:PORT/`` from ``certkit serve``, and the DOM it dumps must
show the client's CN, which only the server's view of the TLS handshake can
have put there.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import PASSPHRASE, certkit_env, chromium, require_chromium, run_certkit
from serve_process import ServeProcess


@pytest.fixture(autouse=True)
def _browser_tools() -> None:
    # Skipped only where the tools are absent, and never in CI (CERTKIT_REQUIRE_PEERS=1).
    require_chromium()

POLICY_DIR = Path("/etc/chromium/policies/managed")
CN = "alice-browser"
CA_NAME = "certkit browser test CA"
P12_PASSWORD = "browser p12 password"


def _nss_db(home: Path, p12: Path, password_file: Path) -> None:
    """The user's NSS database, as Chromium on Linux reads it: ~/.pki/nssdb, no password."""
    db = f"sql:{home / '.pki' / 'nssdb'}"
    (home / ".pki" / "nssdb").mkdir(parents=True)
    run = {"check": True, "capture_output": True, "text": True, "timeout": 60}
    subprocess.run(["certutil", "-N", "-d", db, "--empty-password"], **run)
    subprocess.run(["pk12util", "-d", db, "-i", str(p12), "-w", str(password_file)], **run)
    # The .p12 carries the root, so pk12util has imported it (nickname: its CN) without
    # trust; "C,," makes it a trusted issuer of server certificates.
    subprocess.run(["certutil", "-M", "-d", db, "-n", CA_NAME, "-t", "C,,"], **run)
    listing = subprocess.run(["certutil", "-L", "-d", db], **run).stdout
    assert CN in listing and CA_NAME in listing, listing


def test_headless_chromium_authenticates_with_certkit_client_certificate(tmp_path: Path):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      CERTKIT_P12_PASSWORD=P12_PASSWORD)
    run_certkit("init-ca", "--name", CA_NAME, env=env, check=True)
    run_certkit("issue-client", CN, "--p12", env=env, cwd=tmp_path, check=True)
    password_file = tmp_path / "p12-password"
    password_file.touch(0o600)
    password_file.write_text(P12_PASSWORD)
    home = tmp_path / "home"
    _nss_db(home, tmp_path / CN / "bundle.p12", password_file)

    policy = {"AutoSelectCertificateForUrls": [json.dumps({"pattern": "https://localhost:{port}",
                                                           "filter": {"ISSUER": {"CN": CA_NAME}}})]}
    policy_file = POLICY_DIR / f"certkit-test-{uuid.uuid4().hex}.json"
    user_data = tmp_path / "chromium-profile"
    with ServeProcess(env=env, cwd=tmp_path) as server:
        url = f"https://localhost:{server.port}/"
        policy["AutoSelectCertificateForUrls"][0] = policy["AutoSelectCertificateForUrls"][0].replace(
            "{port}", str(server.port))
        try:
            if os.access(POLICY_DIR, os.W_OK) or (not POLICY_DIR.exists() and os.geteuid() == 0):
                POLICY_DIR.mkdir(parents=True, exist_ok=True)
                policy_file.write_text(json.dumps(policy))
            else:
                # Without root the same setting goes in the profile's preferences (Chromium's
                # per-profile auto_select_certificate content setting); the outcome is the same.
                pattern = json.loads(policy["AutoSelectCertificateForUrls"][0])
                prefs = {"profile": {"content_settings": {"exceptions": {"auto_select_certificate": {
                    pattern["pattern"] + ",*": {"setting": {"filters": [pattern["filter"]]}}}}}}}
                (user_data / "Default").mkdir(parents=True)
                (user_data / "Default" / "Preferences").write_text(json.dumps(prefs))
            result = chromium(url, home, user_data, "--dump-dom",
                              why_hung=": no certificate was auto-selected, or the handshake hung")
        finally:
            policy_file.unlink(missing_ok=True)
        # Chromium exits 0 even on an error page, so the DOM is the evidence.
        assert f'<span id="cn">{CN}</span>' in result.stdout, (result.stdout[-2000:], result.stderr[-3000:],
                                                                server.stderr)
        assert f"CN={CA_NAME}" in result.stdout  # the issuer row of the page
        server.wait_for_log(f'client "{CN}"')
        server.wait_for_log(f"client={CN}")
    assert not policy_file.exists()
