"""certkit probe against real servers: nginx (ssl_verify_client on, optional, off), openssl s_server
(-Verify 1, with and without -verify_return_error, TLS 1.3 and 1.2) and certkit serve, each tried
without a client certificate, with a good one, with a server certificate as client certificate and
with another CA's client certificate.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, free_port, require, run_certkit, wait_listening
from nginx_helper import nginx
from serve_process import ServeProcess

CA_NAME = "Probe Test CA"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("probe-pki")
    env = certkit_env(CERTKIT_CA_DIR=str(root / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", CA_NAME, env=env, check=True)
    run_certkit("issue-server", "localhost", "127.0.0.1", env=env, cwd=root, check=True)
    run_certkit("issue-client", "alice", env=env, cwd=root, check=True)
    other = dict(env, CERTKIT_CA_DIR=str(root / "other-ca"))
    run_certkit("init-ca", "--name", "Some Other CA", env=other, check=True)
    run_certkit("issue-client", "mallory", env=other, cwd=root, check=True)
    return root


def probe(pki: Path, port: int, *args: str, host: str = "localhost") -> subprocess.CompletedProcess:
    return run_certkit("probe", f"https://{host}:{port}/", "--ca-file", pki / "ca" / "ca.pem", *args,
                       env=certkit_env())


def probe_json(pki: Path, port: int, *args: str) -> dict:
    proc = probe(pki, port, "--json", *args)
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)


def bundle(pki: Path, who: str) -> tuple[str, str]:
    return "--bundle", str(pki / who)


def _tls(pki: Path, verify: str) -> str:
    return (f"        ssl_certificate {pki / 'localhost' / 'fullchain.pem'};\n"
            f"        ssl_certificate_key {pki / 'localhost' / 'privkey.pem'};\n"
            f"        ssl_client_certificate {pki / 'ca' / 'ca.pem'};\n"
            f"        ssl_verify_client {verify};\n")


# --- nginx ------------------------------------------------------------------------------------
def test_nginx_verify_client_on(pki: Path, tmp_path: Path):
    with nginx(tmp_path, _tls(pki, "on")) as (port, _log):
        data = probe_json(pki, port)
        server = data["server_certificate"]
        assert server["ok"] and server["verified"] and server["server_auth"] and server["name_matches"]
        assert server["chain"][0]["subject"] == "CN=localhost"
        assert server["chain"][0]["extended_key_usage"] == ["serverAuth"]
        client = data["client_certificate"]
        assert client["requested"] is True
        assert client["accepted_ca_names"] == [f"CN={CA_NAME}"]  # nginx names its ssl_client_certificate
        # nginx completes the handshake and answers 400 itself.
        assert client["without_one"]["http_status"] == 400
        assert client["without_one_verdict"] == \
            "required: without one the server refused (HTTP 400: No required SSL certificate was sent)"

        good = probe_json(pki, port, *bundle(pki, "alice"))["client_certificate"]
        assert good["accepted"] is True and good["with_it"]["http_status"] == 200, good
        for who in ("localhost", "mallory"):
            bad = probe(pki, port, *bundle(pki, who))
            assert bad.returncode == 1, bad.stdout
            assert "with it     refused: HTTP 400: The SSL certificate error" in bad.stdout
            assert bad.stderr.strip() == f"Error: localhost:{port}: the client certificate is refused."


def test_nginx_verify_client_optional(pki: Path, tmp_path: Path):
    with nginx(tmp_path, _tls(pki, "optional")) as (port, _log):
        client = probe_json(pki, port)["client_certificate"]
        assert client["requested"] is True and client["accepted_ca_names"] == [f"CN={CA_NAME}"]
        assert client["without_one"]["http_status"] == 200
        assert client["without_one_verdict"].startswith("optional: the server asks for one but answered without it")
        assert probe_json(pki, port, *bundle(pki, "alice"))["client_certificate"]["accepted"] is True
        for who in ("localhost", "mallory"):
            bad = probe_json(pki, port, *bundle(pki, who))["client_certificate"]
            assert bad["accepted"] is False
            # The server certificate (localhost) lacks clientAuth, and probe says so after nginx's words.
            note = "; the certificate given has no clientAuth in its extendedKeyUsage" if who == "localhost" else ""
            assert bad["verdict"].startswith("refused: HTTP 400: The SSL certificate error" + note), bad["verdict"]
            # Another CA's: the cause probe knows is said on refusal too (serve8 #3).
            assert note or bad["verdict"] == ("refused: HTTP 400: The SSL certificate error; its issuer CN=Some Other "
                                              "CA is not among the CA names the server listed")


def test_nginx_verify_client_off(pki: Path, tmp_path: Path):
    with nginx(tmp_path, _tls(pki, "off")) as (port, _log):
        proc = probe(pki, port, *bundle(pki, "alice"))
        # Nothing refused, but nothing accepted either: the certificate was never sent (exit 0 before).
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.strip() == (f"Error: localhost:{port}: the server never asked for the client "
                                       "certificate, so it was not sent.")
        assert "asked for   no, the server does not request one" in proc.stdout
        assert "with it     never sent: the server does not ask for client certificates" in proc.stdout
        data = probe_json(pki, port, *bundle(pki, "alice"))["client_certificate"]
        assert data["requested"] is False and data["accepted_ca_names"] == [] and data["accepted"] is None


# --- openssl s_server -----------------------------------------------------------------------------
def s_server(pki: Path, *args: str):
    """openssl s_server with the pki's localhost certificate, trusting its CA for clients."""
    return openssl_server("-cert", pki / "localhost" / "cert.pem", "-key", pki / "localhost" / "privkey.pem",
                          "-CAfile", pki / "ca" / "ca.pem", *args)


@contextmanager
def openssl_server(*args: object) -> Iterator[int]:
    """``openssl s_server -www`` on a free loopback port, once it accepts connections; killed after."""
    require("openssl")
    port = free_port()
    proc = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-www", "-quiet",
                             *map(str, args)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_listening(port, proc, "openssl s_server",
                       log=lambda: proc.stderr.read().decode() if proc.poll() is not None else "")
        yield port
    finally:
        proc.kill()
        proc.wait(10)
        proc.stderr.close()


@pytest.mark.parametrize("tls", ["1.3", "1.2"])
def test_openssl_s_server_verify_return_error(pki: Path, tls: str):
    """-Verify 1 -verify_return_error: a TLS alert, not an HTTP page; in TLS 1.3 it comes on the first
    read after the handshake, so only the round trip tells."""
    with s_server(pki, "-Verify", "1", "-verify_return_error", f"-tls{tls.replace('.', '_')}") as port:
        data = probe_json(pki, port)
        assert data["tls_version"] == f"TLSv{tls}"
        client = data["client_certificate"]
        assert client["requested"] is True and client["accepted_ca_names"] == [f"CN={CA_NAME}"]
        if tls == "1.3":
            assert client["without_one"]["handshake"] == "ok"  # the handshake itself completes...
            assert client["without_one"]["read_error"] == "tlsv13 alert certificate required"  # ...then this
        else:
            assert "alert handshake failure" in client["without_one"]["handshake"]
        assert client["without_one_verdict"].startswith("required: without one the server refused")

        good = probe_json(pki, port, *bundle(pki, "alice"))["client_certificate"]
        assert good["accepted"] is True and good["with_it"]["http_status"] == 200
        as_server = probe(pki, port, *bundle(pki, "localhost"))
        assert as_server.returncode == 1
        assert "alert unsupported certificate: the server does not accept this kind of certificate" in as_server.stdout
        other = probe(pki, port, *bundle(pki, "mallory"))
        assert other.returncode == 1
        assert "alert unknown ca: the server does not know the CA that issued it" in other.stdout


def test_openssl_s_server_without_return_error_lets_anything_in(pki: Path):
    """Plain -Verify 1 only logs verification errors: probe reports what really happens (accepted)
    and says why that is worth a second look."""
    with s_server(pki, "-Verify", "1") as port:
        proc = probe(pki, port, *bundle(pki, "localhost"))
        assert proc.returncode == 0, proc.stdout
        assert "with it     accepted: the server answered HTTP 200" in proc.stdout
        assert "beware: this is not a client certificate (extendedKeyUsage serverAuth)" in proc.stdout
        other = probe(pki, port, *bundle(pki, "mallory")).stdout
        assert "beware: its issuer CN=Some Other CA is not among the CA names the server listed" in other


# --- certkit serve ---------------------------------------------------------------------------------
def test_certkit_serve_default_and_optional(pki: Path):
    env = certkit_env(CERTKIT_CA_DIR=str(pki / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    with ServeProcess(env=env, cwd=pki) as srv:
        client = probe_json(pki, srv.port, *bundle(pki, "alice"))["client_certificate"]
        # Python's ssl server asks without naming any CA.
        assert client["requested"] is True and client["accepted_ca_names"] == []
        assert client["without_one"]["read_error"] == "tlsv13 alert certificate required"
        assert client["accepted"] is True
        for who, alert in (("localhost", "unsupported certificate"), ("mallory", "unknown ca")):
            bad = probe_json(pki, srv.port, *bundle(pki, who))["client_certificate"]
            assert bad["accepted"] is False and f"alert {alert}" in bad["verdict"], bad
    with ServeProcess("--optional", env=env, cwd=pki) as srv:
        client = probe_json(pki, srv.port)["client_certificate"]
        assert client["accepted_ca_names"] == [f"CN={CA_NAME}"]
        assert client["without_one_verdict"] == ("required: without one the server refused "
                                                 "(HTTP 403: No client certificate was sent)")
        for who in ("localhost", "mallory"):
            bad = probe(pki, srv.port, "--cert", pki / who / "cert.pem", "--key", pki / who / "privkey.pem")
            # with serve's reasons, from its answer (only the words "Refused client certificate" before)
            assert "with it     refused: HTTP 403: Refused client certificate (" in bad.stdout
            assert "OpenSSL: " in bad.stdout


# --- the server's own certificate --------------------------------------------------------------------
def test_untrusted_and_wrong_name_and_text(pki: Path, tmp_path: Path):
    with nginx(tmp_path, _tls(pki, "off")) as (port, _log):
        # Trusting the other CA: the chain does not verify, in OpenSSL's words and certkit's.
        proc = run_certkit("probe", f"https://localhost:{port}", "--ca-dir", pki / "other-ca", env=certkit_env())
        assert proc.returncode == 1
        assert "chain       NOT verified against the CA in" in proc.stdout
        assert "unable to get local issuer certificate" in proc.stdout
        assert "reason      not issued by this CA: it was issued by CN=Probe Test CA" in proc.stdout
        # The system store does not know a private CA either.
        assert "NOT verified against the system trust store" in run_certkit(
            "probe", f"https://localhost:{port}", env=certkit_env()).stdout
        text = probe(pki, port).stdout
        assert "[0] CN=localhost  (its own)" in text
        assert "usable for TLS server authentication (localhost, 127.0.0.1)" in text
        assert f"issued by  CN={CA_NAME}" in text
        assert "Is it a valid TLS server certificate for localhost? yes" in text


def test_name_the_certificate_does_not_hold(pki: Path, tmp_path: Path):
    env = certkit_env(CERTKIT_CA_DIR=str(pki / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("issue-server", "localhost", "--out", tmp_path / "only-localhost", env=env, check=True)
    tls = _tls(pki, "off").replace(str(pki / "localhost"), str(tmp_path / "only-localhost"))
    with nginx(tmp_path, tls) as (port, _log):
        wrong = probe(pki, port, host="127.0.0.1")
        assert wrong.returncode == 1
        assert "names       NO: 127.0.0.1 is not among its names" in wrong.stdout
        assert "reason      not valid for name 127.0.0.1: it names localhost" in wrong.stdout
        assert wrong.stderr.strip().endswith("the server's certificate is not valid for 127.0.0.1: the name is not "
                                             "among its names.")


def test_client_certificate_as_server_certificate(pki: Path, tmp_path: Path):
    """A server that presents a client certificate: probe says it is not for a TLS server."""
    tls = _tls(pki, "off").replace(str(pki / "localhost"), str(pki / "alice"))
    with nginx(tmp_path, tls) as (port, _log):
        proc = probe(pki, port)
        assert proc.returncode == 1
        assert "serverAuth  NO: TLS client authentication (CN=alice)" in proc.stdout
        assert "unsuitable certificate purpose" in proc.stdout  # OpenSSL's verdict, as a TLS client


def test_strings_from_the_server_are_escaped(tmp_path: Path):
    """A certificate whose CN holds terminal controls: shown escaped, never obeyed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil\x1b[2J\u202eserver")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    tls = (f"        ssl_certificate {tmp_path / 'cert.pem'};\n        ssl_certificate_key {tmp_path / 'key.pem'};\n")
    with nginx(tmp_path, tls) as (port, _log):
        proc = run_certkit("probe", f"https://localhost:{port}", "--ca-file", tmp_path / "cert.pem", env=certkit_env())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "\x1b" not in proc.stdout and "\u202e" not in proc.stdout
    assert "CN=evil\\x1b[2J\\u202eserver" in proc.stdout


# --- the page --------------------------------------------------------------------------------------------
def test_docs_page(tmp_path: Path):
    """docs/probe.md, every command in order, with its documented output."""
    from conftest import REPO
    from docs_runner import run_page

    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    run_page(REPO / "docs" / "probe.md", cwd=work, env=certkit_env(HOME=str(home)),
             substitutions={"8443": str(free_port())})


# --- mistakes -------------------------------------------------------------------------------------------
def test_mistakes_are_clean_errors(pki: Path):
    port = free_port()  # nobody listens there
    assert_clean_error(run_certkit("probe", f"https://127.0.0.1:{port}/"), f"Cannot connect to 127.0.0.1:{port}")
    assert_clean_error(run_certkit("probe", f"https://127.0.0.1:{port}/", "--json"), "Cannot connect")
    assert_clean_error(run_certkit("probe", "http://localhost/"), "is not an https:// URL")
    assert_clean_error(run_certkit("probe", "https://localhost:99999/"), "is not a URL certkit can probe")
    assert_clean_error(run_certkit("probe", "https://x/", "--cert", pki / "alice" / "cert.pem"),
                       "--cert and --key go together", code=2)
    assert_clean_error(run_certkit("probe", "https://x/", "--bundle", pki / "ca"), "is not a bundle folder")
    assert_clean_error(run_certkit("probe", "https://x/", "--bundle", pki / "alice", "--cert",
                                   pki / "alice" / "cert.pem"), "either --bundle or --cert/--key", code=2)


@pytest.mark.parametrize("host", ["a..b", ".x", "a" * 64 + ".com", "h\udcff", "*.example.com", "1.2.3.999"])
def test_malformed_hosts_are_clean_errors(host: str):
    """Each is refused before any connection, naming the host (a traceback before: the idna codec)."""
    for args in ((), ("--json",)):
        # A real process: its argv holds the bytes a shell passes (b'h\xff', not valid UTF-8).
        proc = run_certkit("probe", f"https://{host}/", *args, subprocess=True)
        if not host.isascii() and "\udcff" in host:  # not UTF-8: refused with every other argument (test_arguments)
            assert_clean_error(proc, "'https://h\\xff/', which is not UTF-8 text", code=2)
            continue
        assert_clean_error(proc, f"'https://{host.encode('utf-8', 'backslashreplace').decode()}/'")


@pytest.mark.parametrize("port", ["0", "00"])
def test_port_zero_is_refused(port: str):
    """Port 0 was probed as 443."""
    assert_clean_error(run_certkit("probe", f"https://127.0.0.1:{port}/"), "names port 0")
    assert_clean_error(run_certkit("probe", f"https://[::1]:{port}/", "--json"), "names port 0")


def test_plain_http_server_is_a_clean_error(pki: Path, tmp_path: Path):
    """A port that speaks plain HTTP, not TLS."""
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # its log would land in the in-process command's stderr
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        proc = run_certkit("probe", f"https://127.0.0.1:{srv.server_address[1]}/")
    finally:
        srv.shutdown()
        srv.server_close()
    assert_clean_error(proc, "did not complete a TLS handshake")


def test_any_extended_key_usage_alone_is_not_server_auth(pki: Path, tmp_path: Path):
    """A server certificate whose only extendedKeyUsage is anyExtendedKeyUsage: OpenSSL refuses it
    for sslserver, and so does probe (it said serverAuth yes)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from certkit.store import CADirectory

    ca = CADirectory(pki / "ca").load(PASSPHRASE.encode())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]), critical=False)
            .sign(ca.key, hashes.SHA256()))
    (tmp_path / "any.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "any.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    openssl_says = subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile",
                                   pki / "ca" / "ca.pem", tmp_path / "any.pem"], capture_output=True, text=True)
    assert openssl_says.returncode != 0
    with s_server(pki, "-cert", str(tmp_path / "any.pem"), "-key", str(tmp_path / "any.key")) as port:
        report = probe_json(pki, port)
    server = report["server_certificate"]
    assert server["server_auth"] is False and not server["ok"], server
