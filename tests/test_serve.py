"""certkit serve against real clients: the curl binary (PEM files and PKCS#12) and Python's ssl.

One server runs for the module (started on a free port, stopped with SIGTERM at
the end, which must be a clean exit); tests that need their own server start one.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from certkit.tlscheck import Endpoint, client_context
from certkit.vocabulary import serial_hex

from conftest import PASSPHRASE, assert_clean_error, certkit_env, free_port, run_certkit
from serve_process import ServeProcess, serving, stopped_status

P12_PASSWORD = "p12 test password"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA, a server bundle, alice (modern .p12), bob (legacy .p12) and a client of another CA."""
    root = tmp_path_factory.mktemp("serve-pki")
    env = certkit_env(CERTKIT_CA_DIR=str(root / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      CERTKIT_P12_PASSWORD=P12_PASSWORD)
    run_certkit("init-ca", "--name", "Serve Test CA", env=env, check=True)
    run_certkit("issue-server", "localhost", "127.0.0.1", env=env, cwd=root, check=True)
    run_certkit("issue-client", "alice", "--email", "alice@example.com", "--p12", env=env, cwd=root, check=True)
    run_certkit("issue-client", "bob", "--p12-legacy", env=env, cwd=root, check=True)
    other = dict(env, CERTKIT_CA_DIR=str(root / "other-ca"))
    run_certkit("init-ca", "--name", "Some Other CA", env=other, check=True)
    run_certkit("issue-client", "mallory", "--out", "mallory", env=other, cwd=root, check=True)
    return root


@pytest.fixture(scope="module")
def server(pki: Path):
    env = certkit_env(CERTKIT_CA_DIR=str(pki / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    with serving(env=env, cwd=pki) as srv:
        yield srv


def curl(pki: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", str(pki / "ca" / "ca.pem"), *args, url],
                          capture_output=True, text=True, timeout=30)


def serial_of(folder: Path) -> str:
    from cryptography import x509

    return serial_hex(x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes()).serial_number)


# --- the certificates that must get in ------------------------------------------------
def test_start_reports_url_and_self_issued_server_certificate(server: ServeProcess):
    assert server.url == f"https://127.0.0.1:{server.port}/"
    cert = server.info["server_certificate"]
    assert cert["source"] == "issued"
    assert cert["names"] == ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]
    assert server.info["client_ca"] == "CN=Serve Test CA"  # as an issuer is written (serve8)
    server.wait_for_log(f"listening on {server.url}")


def test_curl_with_pem_client_certificate(pki: Path, server: ServeProcess):
    proc = curl(pki, f"https://localhost:{server.port}/", "--cert", str(pki / "alice" / "cert.pem"),
                "--key", str(pki / "alice" / "privkey.pem"))
    assert proc.returncode == 0, proc.stderr
    serial = serial_of(pki / "alice")
    assert "common name  alice" in proc.stdout
    assert "email:alice@example.com" in proc.stdout
    assert f"serial       {serial}" in proc.stdout
    assert "issuer       CN=Serve Test CA" in proc.stdout
    assert "EKU          clientAuth" in proc.stdout
    server.wait_for_log(f'client "alice" serial {serial} (clientAuth, TLSv1.3)')
    server.wait_for_log('"GET / HTTP/1.1" 200 client=alice')


@pytest.mark.parametrize("who", ["alice", "bob"], ids=["modern-p12", "legacy-p12"])
def test_curl_with_pkcs12(pki: Path, server: ServeProcess, who: str):
    proc = curl(pki, f"https://localhost:{server.port}/?format=json", "--cert-type", "P12",
                "--cert", f"{pki / who / 'bundle.p12'}:{P12_PASSWORD}")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["authenticated"] is True
    assert data["common_name"] == who
    assert data["serial"] == serial_of(pki / who)
    assert data["extended_key_usage"] == ["clientAuth"]
    assert data["issuer"] == "CN=Serve Test CA"


def test_curl_p12_with_wrong_password_fails_in_curl(pki: Path, server: ServeProcess):
    proc = curl(pki, server.url, "--cert-type", "P12", "--cert", f"{pki / 'alice' / 'bundle.p12'}:wrong")
    assert proc.returncode == 58, proc.stderr  # CURLE_SSL_CERTPROBLEM: the file could not be opened
    assert "PKCS12" in proc.stderr


# --- the ones that must not --------------------------------------------------------------
def test_curl_without_client_certificate_is_rejected(pki: Path, server: ServeProcess):
    proc = curl(pki, server.url)
    assert proc.returncode == 56, proc.stderr  # CURLE_RECV_ERROR: TLS 1.3 delivers the alert on the first read
    assert "tlsv13 alert certificate required" in proc.stderr
    assert "common name" not in proc.stdout
    server.wait_for_log("no client certificate (peer did not return a certificate)")


def test_server_certificate_as_client_certificate_is_rejected(pki: Path, server: ServeProcess):
    """The server certificate is signed by the same CA; only its EKU (serverAuth) keeps it out."""
    proc = curl(pki, server.url, "--cert", str(pki / "localhost" / "cert.pem"),
                "--key", str(pki / "localhost" / "privkey.pem"))
    assert proc.returncode == 56, proc.stderr
    assert "alert unsupported certificate" in proc.stderr  # the alert the server sent
    assert "common name" not in proc.stdout
    line = server.wait_for_log("unsuitable certificate purpose")[0]
    assert "rejected 127.0.0.1:" in line
    assert line.endswith("certificate verify failed: unsuitable certificate purpose")


def test_client_of_another_ca_is_rejected(pki: Path, server: ServeProcess):
    proc = curl(pki, server.url, "--cert", str(pki / "mallory" / "cert.pem"),
                "--key", str(pki / "mallory" / "privkey.pem"))
    assert proc.returncode != 0
    server.wait_for_log("certificate verify failed: unable to get local issuer certificate")


def test_plain_http_is_logged_not_a_traceback(server: ServeProcess):
    proc = subprocess.run(["curl", "-sS", "--fail", "--max-time", "10", f"http://127.0.0.1:{server.port}/"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0  # an HTTP 400 that says to use https:// (tests/test_audit16_show.py)
    server.wait_for_log("plain HTTP sent to the HTTPS port")


def test_silent_client_does_not_block_others(pki: Path, server: ServeProcess):
    """A connection that never starts its handshake holds one worker thread, not the server."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10):
        proc = curl(pki, server.url, "--cert", str(pki / "alice" / "cert.pem"),
                    "--key", str(pki / "alice" / "privkey.pem"))
    assert proc.returncode == 0, proc.stderr
    assert "common name  alice" in proc.stdout


# --- Python clients ------------------------------------------------------------------------
def _get(pki: Path, port: int, path: str = "/", accept: str | None = None,
         who: str = "alice") -> http.client.HTTPResponse:
    ctx = client_context(pki / "ca" / "ca.pem", Endpoint(pki / who / "fullchain.pem", pki / who / "privkey.pem"))
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=20)
    conn.request("GET", path, headers={"Accept": accept} if accept else {})
    return conn.getresponse()


def test_python_ssl_client_json(pki: Path, server: ServeProcess):
    resp = _get(pki, server.port, accept="application/json")
    assert resp.status == 200
    assert resp.getheader("Content-Type") == "application/json"
    data = json.loads(resp.read())
    assert data["common_name"] == "alice"
    assert data["names"] == ["email:alice@example.com"]
    assert data["tls_version"] == "TLSv1.3"


def test_python_ssl_client_html_for_browsers(pki: Path, server: ServeProcess):
    resp = _get(pki, server.port, accept="text/html,application/xhtml+xml,*/*;q=0.8")
    assert resp.getheader("Content-Type") == "text/html; charset=utf-8"
    assert '<span id="cn">alice</span>' in resp.read().decode()


def test_python_ssl_client_without_certificate_is_refused(pki: Path, server: ServeProcess):
    ctx = client_context(pki / "ca" / "ca.pem")
    conn = http.client.HTTPSConnection("localhost", server.port, context=ctx, timeout=20)
    with pytest.raises(ssl.SSLError, match="TLSV13_ALERT_CERTIFICATE_REQUIRED"):
        conn.request("GET", "/")
        conn.getresponse()
    conn.close()


# --- serve with given files, and its stop -----------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["SIGTERM", "SIGINT", "SIGHUP"])
def test_given_certificate_files_and_clean_stop(pki: Path, sig: int):
    """--cert/--key need no CA passphrase: only the CA certificate is read."""
    env = certkit_env(CERTKIT_CA_DIR=str(pki / "ca"))
    srv = ServeProcess("--cert", pki / "localhost" / "fullchain.pem", "--key", pki / "localhost" / "privkey.pem",
                       env=env)
    try:
        assert srv.info["server_certificate"]["source"] == "files"
        assert json.loads(_get(pki, srv.port, "/?format=json", who="bob").read())["common_name"] == "bob"
        srv.wait_for_log('client "bob"')
    finally:
        code = srv.stop(sig)
    assert code == stopped_status(sig), srv.stderr  # 143, 130, 129: as every command a signal stops
    assert srv.stderr.splitlines()[-1].endswith(" stopped")
    assert "Traceback" not in srv.stderr


def test_client_ca_option_selects_whom_to_accept(pki: Path):
    """--client-ca: the other CA's client gets in, this CA's alice does not."""
    env = certkit_env(CERTKIT_CA_DIR=str(pki / "ca"))
    with ServeProcess("--cert", pki / "localhost" / "fullchain.pem", "--key", pki / "localhost" / "privkey.pem",
                      "--client-ca", pki / "mallory" / "ca.pem", env=env) as srv:
        ok = curl(pki, srv.url, "--cert", str(pki / "mallory" / "cert.pem"),
                  "--key", str(pki / "mallory" / "privkey.pem"))
        assert "common name  mallory" in ok.stdout, ok.stderr
        refused = curl(pki, srv.url, "--cert", str(pki / "alice" / "cert.pem"),
                       "--key", str(pki / "alice" / "privkey.pem"))
        assert refused.returncode != 0
        # curl sends alice's root along (it is in --cacert); either way it is not the trusted one.
        assert "certificate verify failed: self-signed certificate in certificate chain" in \
            srv.wait_for_log("rejected")[0]


@pytest.mark.parametrize("optional", [False, True], ids=["required", "optional"])
def test_a_client_certificate_revoked_while_serving_is_refused(pki: Path, optional: bool):
    """certkit revoke counts at the next connection (the CA's inventory is read at each one): curl
    gets 403 and the reason, the log says it, the page marks the rule's revocation line; another
    client still gets in. The handshake itself passes (a CRL is what makes nginx refuse it)."""
    env = certkit_env(CERTKIT_CA_DIR=str(pki / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    name = f"carol-{'optional' if optional else 'required'}"
    run_certkit("issue-client", name, env=env, cwd=pki, check=True)
    args = ["--optional"] if optional else []
    with ServeProcess("--cert", pki / "localhost" / "fullchain.pem", "--key", pki / "localhost" / "privkey.pem",
                      *args, env=certkit_env(CERTKIT_CA_DIR=str(pki / "ca"))) as srv:
        assert srv.info["revocation"] == str(pki / "ca" / "inventory.sqlite3")
        with_carol = ("--cert", str(pki / name / "cert.pem"), "--key", str(pki / name / "privkey.pem"),
                      "-w", "%{http_code}")
        before = curl(pki, srv.url, *with_carol)
        assert before.stdout.endswith("200") and f"common name  {name}" in before.stdout, before.stderr
        run_certkit("revoke", pki / name, "--reason", "keyCompromise", env=env, check=True)
        after = curl(pki, srv.url, *with_carol)
        assert after.stdout.endswith("403"), after.stderr
        assert "refused      revoked on " in after.stdout and "(reason: keyCompromise)" in after.stdout
        assert "(reason: keyCompromise)" in srv.wait_for_log('refused 127.0.0.1')[0]
        data = json.loads(curl(pki, srv.url + "?format=json", *with_carol[:4]).stdout)
        assert data["authenticated"] is False and data["reason"].startswith("revoked on ")
        page = curl(pki, srv.url + "?format=html", *with_carol[:4]).stdout
        assert '<li class="failed">not revoked' in page and "ended the handshake" not in page
        assert "certkit crl --out crl.pem" in page
        bob = curl(pki, srv.url, "--cert", str(pki / "bob" / "cert.pem"), "--key", str(pki / "bob" / "privkey.pem"),
                   "-w", "%{http_code}")
        assert bob.stdout.endswith("200")


def test_revocation_is_checked_only_for_the_ca_directorys_ca(pki: Path):
    """--client-ca of another CA: that CA's inventory is not at hand, and serve says revocation is
    not checked (in --json: null) rather than implying it is."""
    env = certkit_env(CERTKIT_CA_DIR=str(pki / "ca"))
    files = ("--cert", pki / "localhost" / "fullchain.pem", "--key", pki / "localhost" / "privkey.pem")
    with ServeProcess(*files, "--client-ca", pki / "mallory" / "ca.pem", env=env) as srv:
        assert srv.info["revocation"] is None
    proc = subprocess.Popen([sys.executable, "-m", "certkit", "serve", "--port", "0", *map(str, files), "--client-ca",
                             str(pki / "mallory" / "ca.pem")], env=env, stdout=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(5)]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert "  revocation is not checked (--client-ca is not the CA directory's CA)\n" in lines


# --- bad input -------------------------------------------------------------------------------
def test_cert_without_key_is_a_usage_error(pki: Path):
    proc = run_certkit("serve", "--cert", pki / "localhost" / "fullchain.pem",
                       env=certkit_env(CERTKIT_CA_DIR=str(pki / "ca")))
    assert_clean_error(proc, "--cert and --key go together", code=2)


def test_port_in_use_is_a_clean_error(pki: Path):
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        proc = run_certkit("serve", "--port", port, "--cert", pki / "localhost" / "fullchain.pem",
                           "--key", pki / "localhost" / "privkey.pem", env=certkit_env(CERTKIT_CA_DIR=str(pki / "ca")))
    assert_clean_error(proc, f"Cannot listen on 127.0.0.1:{port}: Address already in use")


def test_key_not_matching_certificate_is_a_clean_error(pki: Path):
    proc = run_certkit("serve", "--port", "0", "--cert", pki / "localhost" / "fullchain.pem",
                       "--key", pki / "alice" / "privkey.pem", env=certkit_env(CERTKIT_CA_DIR=str(pki / "ca")))
    assert_clean_error(proc, "key values mismatch")


def test_a_certificate_no_client_takes_from_a_server_is_refused(pki: Path, tmp_path: Path):
    """--cert a client certificate (or a CA's): the page would teach a rule the server breaks."""
    env = certkit_env(CERTKIT_CA_DIR=str(pki / "ca"))
    for cert, key, fragment in ((pki / "alice" / "fullchain.pem", pki / "alice" / "privkey.pem",
                                 "this is a client certificate: it has no serverAuth usage"),):  # verify's words
        proc = run_certkit("serve", "--port", "0", "--cert", cert, "--key", key, env=env)
        assert_clean_error(proc, fragment)


def test_client_ca_must_be_a_ca(pki: Path):
    """--client-ca alice/cert.pem: a leaf taken for the CA would let alice in as if she were it."""
    proc = run_certkit("serve", "--port", "0", "--client-ca", pki / "alice" / "cert.pem",
                       env=certkit_env(CERTKIT_CA_DIR=str(pki / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE))
    assert_clean_error(proc, "CN=alice, which is not a CA certificate")


def test_files_swapped_or_of_the_wrong_kind_are_named(pki: Path):
    """OpenSSL says only "PEM lib": the message says which file lacks what."""
    env = certkit_env(CERTKIT_CA_DIR=str(pki / "ca"))
    for cert, key, fragment in (("privkey.pem", "privkey.pem", "privkey.pem holds a private key but no certificate"),
                                ("fullchain.pem", "cert.pem", "cert.pem holds a certificate, not a private key")):
        proc = run_certkit("serve", "--port", "0", "--cert", pki / "localhost" / cert, "--key",
                           pki / "localhost" / key, env=env)
        assert_clean_error(proc, fragment)
        assert "PEM lib" not in proc.stderr


def test_missing_ca_is_a_clean_error(tmp_path: Path):
    proc = run_certkit("serve", "--port", "0", env=certkit_env(CERTKIT_CA_DIR=str(tmp_path / "none")))
    assert_clean_error(proc, "No CA in")


def test_missing_passphrase_is_a_clean_error(pki: Path):
    proc = run_certkit("serve", "--port", "0", env=certkit_env(CERTKIT_CA_DIR=str(pki / "ca")))
    assert_clean_error(proc, "CERTKIT_CA_PASSPHRASE")
