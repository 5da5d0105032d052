"""Round twenty-four, area serve/show: what verify, probe, inspect and serve say, checked against real
certificates and real peers on 127.0.0.1.
"""

from __future__ import annotations

import re
import subprocess
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


# --- 2. a certificate with the TLS Feature extension (OCSP Must-Staple) was described as any other -----------------
def _signed_by_ca(ca_dir: Path, folder: Path, *extensions, days: float = 30, start: float = -1,
                  client: bool = False) -> Path:
    """A serverAuth leaf for localhost that the CA in ``ca_dir`` signed, with ``extensions`` (non-critical), valid
    from ``start`` days from now for ``days`` days, written to ``folder``/cert.pem and privkey.pem."""
    import datetime as dt

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from conftest import PASSPHRASE

    ca_key = serialization.load_pem_private_key((ca_dir / "ca-key.pem").read_bytes(), PASSPHRASE.encode())
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    key, now = ec.generate_private_key(ec.SECP256R1()), dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
               .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now + dt.timedelta(days=start)).not_valid_after(now + dt.timedelta(days=start + days))
               .add_extension(x509.BasicConstraints(False, None), True)
               .add_extension(x509.KeyUsage(True, *[False] * 8), True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client
                                                      else ExtendedKeyUsageOID.SERVER_AUTH]), False)
               .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()), False))
    for extension in extensions:
        builder = builder.add_extension(extension, False)
    folder.mkdir()
    (folder / "cert.pem").write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    (folder / "privkey.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (folder / "privkey.pem").chmod(0o600)
    return folder


MUST_STAPLE = "a server presenting this certificate must staple an OCSP response to every handshake"


@pytest.mark.parametrize("features", [[x509.TLSFeatureType.status_request],
                                      [x509.TLSFeatureType.status_request, x509.TLSFeatureType.status_request_v2]])
def test_must_staple_is_named_by_inspect_verify_and_probe(ca_dir: Path, ca_env: dict, tmp_path: Path, features):
    import json

    from test_probe import openssl_server

    staple = _signed_by_ca(ca_dir, tmp_path / "staple", x509.TLSFeature(features))
    # round 27: beside status_request_v2, which Firefox refuses whatever is stapled, the note says that instead
    said = MUST_STAPLE if len(features) == 1 else "Firefox refuses every server presenting this certificate"
    assert "TLS Feature" in subprocess_text("openssl", "x509", "-noout", "-text", "-in", staple / "cert.pem")
    shown = run_certkit("inspect", staple / "cert.pem", env=ca_env, check=True).stdout
    assert "  TLS feature   status_request (OCSP Must-Staple)" in shown and "Firefox refuses " in shown
    assert ("status_request_v2" in shown) == (len(features) == 2)
    data = json.loads(run_certkit("inspect", staple / "cert.pem", "--json", env=ca_env, check=True).stdout)
    assert said in data["items"][0]["tls_feature"]
    verified = run_certkit("verify", staple / "cert.pem", "--purpose", "server", "--name", "localhost", env=ca_env,
                           check=True).stdout
    assert "TLS Feature extension (1.3.6.1.5.5.7.1.24) names status_request (OCSP Must-Staple)" in verified
    assert said in " ".join(verified.split())
    assert ("certkit runs no OCSP responder" in verified) == (len(features) == 1)
    with openssl_server("-cert", staple / "cert.pem", "-key", staple / "privkey.pem") as port:
        probed = run_certkit("probe", f"https://localhost:{port}/", "--ca-dir", ca_dir, env=ca_env).stdout
    assert "TLS feature status_request (OCSP Must-Staple)" in probed and said in " ".join(probed.split()), probed
    plain = run_certkit("inspect", ca_dir / "ca.pem", env=ca_env, check=True).stdout
    assert "TLS feature" not in plain


def subprocess_text(*args) -> str:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=True).stdout


# --- 4. a certificate past its end was said to "expire" then; one not yet valid got no start date ----------------
def test_verify_says_expired_and_valid_from(ca_dir: Path, ca_env: dict, tmp_path: Path):
    old = _signed_by_ca(ca_dir, tmp_path / "old", days=10, start=-20)
    future = _signed_by_ca(ca_dir, tmp_path / "future", days=10, start=5.5)
    said = run_certkit("verify", old / "cert.pem", "--purpose", "server", env=ca_env)
    assert said.returncode == 1 and "expires" not in said.stdout, said.stdout
    assert re.search(r"^  expired   \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(10 days ago\)$", said.stdout, re.M), \
        said.stdout
    said = run_certkit("verify", future / "cert.pem", "--purpose", "server", env=ca_env)
    assert said.returncode == 1 and re.search(r"^  valid from \S+ \S+ UTC \(in 6 days\)\n  expires   ", said.stdout,
                                              re.M), said.stdout


def test_probe_says_expired(ca_dir: Path, ca_env: dict, tmp_path: Path):
    from test_probe import openssl_server

    old = _signed_by_ca(ca_dir, tmp_path / "old", days=10, start=-20)
    future = _signed_by_ca(ca_dir, tmp_path / "future", days=10, start=5.5)
    for folder, line in ((old, r"      expired    \S+ \S+ UTC \(10 days ago\)"),
                         (future, r"      valid from \S+ \S+ UTC \(in 6 days\)\n      expires    \S+ \S+ UTC")):
        with openssl_server("-cert", folder / "cert.pem", "-key", folder / "privkey.pem") as port:
            probed = run_certkit("probe", f"https://localhost:{port}/", "--ca-dir", ca_dir, env=ca_env).stdout
        assert re.search(line, probed) and "expires    " + "(" not in probed, probed


def test_serve_optional_says_a_refused_client_certificate_expired(ca_dir: Path, ca_env: dict, tmp_path: Path):
    from conftest import require
    from serve_process import ServeProcess

    curl = require("curl")
    bob = _signed_by_ca(ca_dir, tmp_path / "bob", days=10, start=-20, client=True)
    with ServeProcess("--optional", env=ca_env, cwd=tmp_path) as srv:
        text = subprocess.run([curl, "-s", "--cacert", ca_dir / "ca.pem", "--cert", bob / "cert.pem", "--key",
                               bob / "privkey.pem", f"https://localhost:{srv.port}/"],
                              capture_output=True, text=True, timeout=60).stdout
        page = subprocess.run([curl, "-s", "-H", "Accept: text/html", "--cacert", ca_dir / "ca.pem", "--cert",
                               bob / "cert.pem", "--key", bob / "privkey.pem", f"https://localhost:{srv.port}/"],
                              capture_output=True, text=True, timeout=60).stdout
    assert text.startswith("Refused client certificate") and "expires" not in text, text
    assert re.search(r"^  expired      \S+ \S+ UTC \(10 days ago\)$", text, re.M), text
    assert "<dt>Expired</dt><dd>" in page and "(10 days ago)" in page and "<dt>Expires</dt>" in page, page


# --- 3. serve --optional logged "answering with the page" at the handshake, for clients that never asked ---------
def test_serve_optional_log_answers_only_requests(ca_dir: Path, ca_env: dict, tmp_path: Path):
    from conftest import require
    from serve_process import ServeProcess

    curl, openssl = require("curl"), require("openssl")
    bob = _signed_by_ca(ca_dir, tmp_path / "bob", days=10, start=-20, client=True)
    with ServeProcess("--optional", env=ca_env, cwd=tmp_path) as srv:
        for cert in ((), ("-cert", bob / "cert.pem", "-key", bob / "privkey.pem")):  # a handshake, no request
            subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{srv.port}", "-CAfile", ca_dir / "ca.pem",
                            *cert], stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        silent = [*srv.wait_for_log("no certificate 127.0.0.1:"), *srv.wait_for_log("refused 127.0.0.1:")]
        for cert in ((), ("--cert", bob / "cert.pem", "--key", bob / "privkey.pem")):  # the same, with a request
            subprocess.run([curl, "-s", "--cacert", ca_dir / "ca.pem", *cert, f"https://localhost:{srv.port}/"],
                           capture_output=True, timeout=60)
        srv.wait_for_log('"GET / HTTP/1.1" 403', count=2)
        log = srv.stderr
    for line in silent:
        assert "answering" not in line and "a request gets the page that says " in line, line
    lines = [line for line in log.splitlines() if "127.0.0.1:" in line and "listening" not in line]
    assert len(lines) == 6, log
    for verdict, request in ((lines[2], lines[3]), (lines[4], lines[5])):  # the verdict first, then the request
        port = verdict.split("127.0.0.1:")[1].split(":")[0]
        assert verdict.split()[1] in ("no", "refused") and f"127.0.0.1:{port} \"GET / HTTP/1.1\" 403" in request, log


@pytest.mark.parametrize("host", ["127.0.0.1 ", " localhost", "::1\u00a0"])
def test_serve_refuses_a_host_with_whitespace(host: str, ca_dir: Path, ca_env: dict):
    """Before: 'Error: Cannot listen on 127.0.0.1 :0: Name or service not known.', the space unseen."""
    proc = run_certkit("serve", "--host", host, "--port", "0", env=ca_env)
    assert_clean_error(proc, "has whitespace around it; --host takes the address to listen on", code=2)
    assert f"give --host {host.strip()} " in proc.stderr
