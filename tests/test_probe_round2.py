"""certkit probe, serve/probe audit round 2 (findings 4 and 9 to 14): a client under an intermediate CA
judged against the CA names a server lists, the advice for a server that does not send its intermediate,
the URL path sent percent-encoded, HTTP errors never called "accepted", the exit status when the server
never asks for a client certificate, serve --optional's reasons, and the page's sentence about ca.pem.
Real servers: openssl s_server, nginx, certkit serve.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from test_probe import openssl_server

from conftest import PASSPHRASE, certkit_env, require, run_certkit
from nginx_helper import nginx
from serve_process import ServeProcess


@pytest.fixture(scope="module")
def two_tier(tmp_path_factory) -> Path:
    """root/ (Example Root CA) > issuing/ (Example Issuing CA); srv/ and dave/ issued by the intermediate;
    alice/ and localhost/ issued by the root."""
    top = tmp_path_factory.mktemp("probe-two-tier")
    env = certkit_env(CERTKIT_CA_DIR=str(top / "root"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Example Root CA", env=env, check=True)
    run_certkit("issue-client", "alice", env=env, cwd=top, check=True)
    run_certkit("issue-server", "localhost", "127.0.0.1", env=env, cwd=top, check=True)
    run_certkit("init-ca", "--ca-dir", top / "issuing", "--parent-ca-dir", top / "root", "--name",
                "Example Issuing CA", env=dict(env, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE), cwd=top, check=True)
    inter = dict(env, CERTKIT_CA_DIR=str(top / "issuing"))
    run_certkit("issue-server", "localhost", "127.0.0.1", "--out", "srv", env=inter, cwd=top, check=True)
    run_certkit("issue-client", "dave", "--out", "dave", env=inter, cwd=top, check=True)
    return top


def probe(top: Path, url: str, *args: object) -> subprocess.CompletedProcess:
    return run_certkit("probe", url, "--ca-file", top / "root" / "ca.pem", *map(str, args), env=certkit_env())


s_server = openssl_server  # a server configured entirely by its arguments


def test_client_under_an_intermediate_of_the_listed_root_is_no_beware(two_tier: Path):
    """Finding 4: a strict server lists the root and verifies dave's chain up to it; dave's issuer is the
    intermediate, which is not listed, yet its issuer is: no "beware" (there was one)."""
    srv = two_tier / "srv"
    with s_server("-cert", srv / "cert.pem", "-key", srv / "privkey.pem", "-cert_chain", srv / "chain.pem",
                  "-Verify", "1", "-verify_return_error", "-CAfile", two_tier / "root" / "ca.pem") as port:
        url = f"https://localhost:{port}/"
        good = probe(two_tier, url, "--bundle", two_tier / "dave")
        assert good.returncode == 0, good.stdout + good.stderr
        assert "CA names    CN=Example Root CA" in good.stdout
        assert "with it     accepted: the server answered HTTP 200 ok" in good.stdout
        assert "beware" not in good.stdout
        # The server does check: dave without his intermediate is refused.
        dave = two_tier / "dave"
        alone = probe(two_tier, url, "--cert", dave / "cert.pem", "--key", dave / "privkey.pem")
        assert alone.returncode == 1 and "alert unknown ca" in alone.stdout
    # A lax server that lists only the intermediate lets in alice (root-issued): her chain's only issuer,
    # the root, is not listed, so the note stays.
    with s_server("-cert", srv / "cert.pem", "-key", srv / "privkey.pem", "-cert_chain", srv / "chain.pem",
                  "-Verify", "1", "-CAfile", two_tier / "issuing" / "ca.pem") as port:
        lax = probe(two_tier, f"https://localhost:{port}/", "--bundle", two_tier / "alice")
        assert "beware: its issuer CN=Example Root CA is not among the CA names the server listed" in lax.stdout


def test_server_without_its_intermediate_is_told_to_send_it(two_tier: Path, tmp_path: Path):
    """Finding 9: the advice was certkit verify's (--untrusted), an option probe does not have."""
    srv = two_tier / "srv"
    with s_server("-cert", srv / "cert.pem", "-key", srv / "privkey.pem") as port:
        proc = probe(two_tier, f"https://localhost:{port}/")
    assert proc.returncode == 1
    assert "--untrusted" not in proc.stdout and "verify fullchain.pem" not in proc.stdout
    assert ("if CN=Example Issuing CA is an intermediate CA under it, the server must send its certificate "
            "after its own: configure the server with fullchain.pem, e.g. nginx ssl_certificate") in proc.stdout
    # A self-signed server certificate: no intermediate to send.
    require("openssl")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-days", "1",
                    "-keyout", tmp_path / "k.pem", "-out", tmp_path / "c.pem"], check=True, capture_output=True)
    with s_server("-cert", tmp_path / "c.pem", "-key", tmp_path / "k.pem") as port:
        selfsigned = probe(two_tier, f"https://localhost:{port}/").stdout
    assert "--untrusted" not in selfsigned and "is an intermediate CA" not in selfsigned
    assert "(the server's certificate is self-signed: no CA issued it)" in selfsigned


def test_path_is_percent_encoded(two_tier: Path):
    """Finding 11: "/a b" went out as is; serve answered 400 and probe said "accepted", exit 0."""
    env = certkit_env(CERTKIT_CA_DIR=str(two_tier / "root"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    with ServeProcess(env=env, cwd=two_tier) as srv:
        proc = probe(two_tier, f"https://localhost:{srv.port}/a b/é?q=x y", "--bundle", two_tier / "alice")
        srv.wait_for_log('"GET /a%20b/%C3%A9?q=x%20y HTTP/1.1" 200')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "with it     accepted: the server answered HTTP 200" in proc.stdout


def test_an_http_error_is_not_called_accepted(two_tier: Path, tmp_path: Path):
    """Finding 11: an answer of 4xx/5xx that is no known refusal says nothing sure about the certificate:
    probe says so, with the status, and exits 1."""
    root = two_tier / "root" / "ca.pem"
    tls = (f"        ssl_certificate {two_tier / 'localhost' / 'fullchain.pem'};\n"
           f"        ssl_certificate_key {two_tier / 'localhost' / 'privkey.pem'};\n"
           f"        ssl_client_certificate {root};\n        ssl_verify_client on;\n"
           "        location = /gone { return 404; }\n        location = /broken { return 500; }\n")
    with nginx(tmp_path, tls) as (port, _log):
        for path, status in (("gone", 404), ("broken", 500)):
            proc = probe(two_tier, f"https://localhost:{port}/{path}", "--bundle", two_tier / "alice")
            assert proc.returncode == 1, proc.stdout
            assert "accepted" not in proc.stdout
            assert f"with it     not known: the handshake took it, but the server answered HTTP {status}" in proc.stdout
            assert proc.stderr.strip() == (f"Error: localhost:{port}: the server answered HTTP {status}, so whether "
                                           "it accepts the client certificate is not known.")
        ok = probe(two_tier, f"https://localhost:{port}/", "--bundle", two_tier / "alice")
        assert ok.returncode == 0 and "with it     accepted: the server answered HTTP 200" in ok.stdout


def test_never_asked_for_is_exit_1(two_tier: Path):
    """Finding 12: a client certificate the server never asked for was exit 0, "accepted" by the docs."""
    srv = two_tier / "localhost"
    with s_server("-cert", srv / "cert.pem", "-key", srv / "privkey.pem") as port:
        proc = probe(two_tier, f"https://localhost:{port}/", "--bundle", two_tier / "alice")
        assert proc.returncode == 1, proc.stdout
        assert "with it     never sent: the server does not ask for client certificates" in proc.stdout
        assert proc.stderr.strip() == (f"Error: localhost:{port}: the server never asked for the client certificate, "
                                       "so it was not sent.")
        # Without a client certificate to try, the server's own certificate decides, as before.
        assert probe(two_tier, f"https://localhost:{port}/").returncode == 0


def test_serve_optional_refusal_says_why(two_tier: Path):
    """Finding 14: probe said only "HTTP 403: Refused client certificate"; serve's answer says why."""
    env = certkit_env(CERTKIT_CA_DIR=str(two_tier / "root"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    with ServeProcess("--optional", env=env, cwd=two_tier) as srv:
        server_cert = probe(two_tier, f"https://localhost:{srv.port}/", "--cert", two_tier / "localhost" / "cert.pem",
                            "--key", two_tier / "localhost" / "privkey.pem")
    # serve of the intermediate: alice, the root's, is another CA's client.
    with ServeProcess("--optional", env=dict(env, CERTKIT_CA_DIR=str(two_tier / "issuing")), cwd=two_tier) as srv:
        other_ca = probe(two_tier, f"https://localhost:{srv.port}/", "--cert", two_tier / "alice" / "cert.pem",
                         "--key", two_tier / "alice" / "privkey.pem")
    assert server_cert.returncode == 1 and other_ca.returncode == 1
    line = next(x for x in server_cert.stdout.splitlines() if x.startswith("  with it"))
    assert line.startswith("  with it     refused: HTTP 403: Refused client certificate (")
    assert "clientAuth" in line, line
    line = next(x for x in other_ca.stdout.splitlines() if x.startswith("  with it"))
    assert line.startswith("  with it     refused: HTTP 403: Refused client certificate ("), line
    assert "the trusted CA (CN=Example Issuing CA)" in line and "OpenSSL: " in line, line


def test_page_does_not_say_the_intermediate_was_imported():
    """Finding 10: "here CN=Issuing CA: you trusted it by importing ca.pem"; ca.pem is the root."""
    from certkit.serve import PeerIdentity
    from certkit.serve_page import ServerFacts, Visit, render_page

    server = PeerIdentity(common_name="localhost", subject="CN=localhost", sans=["DNS:localhost"], serial="1F",
                          issuer="CN=Example Issuing CA", eku=["serverAuth"], not_after="2030-01-01T00:00:00+00:00",
                          fingerprint_sha256="ab" * 32, tls_version=None)
    client = PeerIdentity(common_name="dave", subject="CN=dave", sans=[], serial="2F", issuer="CN=Example Issuing CA",
                          eku=["clientAuth"], not_after="2030-01-01T00:00:00+00:00", fingerprint_sha256="cd" * 32,
                          tls_version="TLSv1.3")
    page = render_page(Visit(client, [], False), ServerFacts(server, "Example Issuing CA"), "localhost")
    assert "you trusted it by importing" not in page
    assert ("signed by <code>CN=Example Issuing CA</code>, a CA your browser trusts or one whose chain leads to a "
            "CA it trusts\n    (the root CA you imported from <code>ca.pem</code>)") in page
