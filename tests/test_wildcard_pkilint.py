"""pkilint's PKIX linter and a wildcard: its one finding is the web-domain rule's (RFC 1034 syntax has no '*'),
for the wildcard name alone; its CA/Browser Forum server linter, which knows wildcards (RFC 6125 6.4.3, the Baseline
Requirements), finds nothing in the name; openssl verifies the certificate for its purpose and Python's ssl module
matches a host under the wildcard in a real handshake, and refuses the bare domain. docs/library.md says so."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from conftest import REPO, openssl, pkilint_errors, run_certkit

FINDING = '    pkix.invalid_domain_name_syntax (ERROR): Invalid domain name syntax: "{}"'


def test_a_wildcard_is_pkilints_one_pkix_finding_and_peers_match_it(tmp_path: Path, ca_env, ca_dir) -> None:
    from certkit.tlscheck import Endpoint, client_context, handshake, server_context

    run_certkit("issue-server", "*.apps.example.com", "apps.example.com", "--out", "w", cwd=tmp_path, env=ca_env,
                check=True)
    cert = tmp_path / "w" / "cert.pem"
    errors = [line for line in pkilint_errors(cert).splitlines() if "(ERROR)" in line]
    assert errors == [FINDING.format("*.apps.example.com")]  # the apex name beside it: clean
    assert pkilint_errors(ca_dir / "ca.pem", cert) == ""  # the chain linter: clean
    cabf = shutil.which("lint_cabf_serverauth_cert")
    assert cabf, "pkilint's CA/Browser Forum linter is not installed"
    linted = subprocess.run([cabf, "lint", "-t", "DV-FINAL-CERTIFICATE", "-s", "ERROR", str(cert)],
                            capture_output=True, text=True, timeout=120)
    # it lints (a private CA's leaf lacks what a public CA must add: policies, AIA), and nothing of it is the name's
    assert linted.stderr == "" and "(ERROR)" in linted.stdout, linted.stdout + linted.stderr
    assert not any(word in linted.stdout.lower() for word in ("dnsname", "domain_name", "wildcard")), linted.stdout
    checked = openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", ca_dir / "ca.pem", cert)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    server = server_context(Endpoint(tmp_path / "w" / "fullchain.pem", tmp_path / "w" / "privkey.pem"), None,
                            require_client_cert=False)
    for host, accepted in (("api.apps.example.com", True), ("apps.example.com", True),
                           ("a.b.apps.example.com", False), ("example.com", False)):
        result = handshake(server, client_context(ca_dir / "ca.pem", None), server_hostname=host)
        assert result.accepted is accepted, (host, result.reason)
    assert "lint_cabf_serverauth_cert" in (REPO / "docs" / "library.md").read_text()
