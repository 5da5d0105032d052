"""DER input, audit round twenty-nine: what a file of the wrong kind holds is said alike in PEM and in DER.

Every option that reads a private key names what a file given there holds instead (a certificate, a CSR, a
CRL, a bundle.p12), whether the file is PEM or DER, in the same words: a DER CRL or a bundle.p12 given as a key
said OpenSSL's "Could not deserialize key data", and a PEM CRL "holds no private key (PEM -----BEGIN ...)".
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import assert_clean_error, new_ca, run_certkit
from serve_process import ServeProcess

HELD = {"cert": "holds a certificate, not a private key",
        "csr": "holds a certificate signing request, not a private key",
        "crl": "holds a certificate revocation list (CRL), not a private key",
        "p12": "a PKCS#12 bundle (a .p12 or .pfx file: certificates and a key, encrypted), not a private key"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """ca/ with localhost/ (server), alice/ and bob/ (clients; bob revoked) and a CRL; each of cert, csr, crl, key,
    ca/ca and alice/cert in PEM and DER; b.p12."""
    top = tmp_path_factory.mktemp("audit29-der2")
    env = new_ca(top, "Lab CA")
    run_certkit("issue-server", "localhost", "127.0.0.1", "--out", top / "localhost", env=env, check=True)
    for who in ("alice", "bob"):
        run_certkit("issue-client", who, "--out", top / who, env=env, check=True)
    run_certkit("revoke", top / "bob", env=env, check=True)
    run_certkit("crl", "--out", top / "crl.pem", env=env, check=True)
    for pem in (top / "ca" / "ca.pem", top / "alice" / "cert.pem", top / "localhost" / "cert.pem"):
        subprocess.run(["openssl", "x509", "-in", pem, "-outform", "DER", "-out", pem.with_suffix(".der")], check=True)
    ossl = ["openssl"]
    key, cert = top / "localhost" / "privkey.pem", top / "localhost" / "cert.pem"
    subprocess.run([*ossl, "req", "-new", "-key", key, "-subj", "/CN=localhost", "-out", top / "csr.pem"], check=True)
    (top / "cert.pem").write_bytes(cert.read_bytes())
    (top / "key.pem").write_bytes(key.read_bytes())
    for kind, tool in (("cert", "x509"), ("csr", "req"), ("crl", "crl"), ("key", "pkey")):
        subprocess.run([*ossl, tool, "-in", top / f"{kind}.pem", "-outform", "DER", "-out", top / f"{kind}.der"],
                       check=True)
    subprocess.run([*ossl, "pkcs12", "-export", "-in", cert, "-inkey", key, "-passout", "pass:xyz",
                    "-out", top / "b.p12"], check=True)
    (top / "env.json").write_text(json.dumps(env))
    return top


KEY_FILES = [("cert", "pem"), ("cert", "der"), ("csr", "pem"), ("csr", "der"), ("crl", "pem"), ("crl", "der"),
             ("p12", "p12")]


def _key_given(option: str, pki: Path, given: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = json.loads((pki / "env.json").read_text())
    cert = pki / "localhost" / "cert.pem"
    if option == "probe --key":  # a closed port: the key is read before any connection
        return run_certkit("probe", "https://127.0.0.1:1/", "--cert", cert, "--key", given, env=env)
    folder = tmp_path / "bundle"  # export-p12 reads the folder's privkey.pem
    folder.mkdir()
    (folder / "cert.pem").write_bytes(cert.read_bytes())
    (folder / "privkey.pem").write_bytes(given.read_bytes())
    (folder / "privkey.pem").chmod(0o600)
    return run_certkit("export-p12", folder, env={**env, "CERTKIT_P12_PASSWORD": "abcdefgh12345"})


@pytest.mark.parametrize("option", ["probe --key", "export-p12"])
@pytest.mark.parametrize(("kind", "form"), KEY_FILES, ids=[f"{k}-{f}" for k, f in KEY_FILES])
def test_a_file_of_another_kind_given_as_a_key_is_named_alike_in_pem_and_der(pki, tmp_path, option, kind, form):
    given = pki / ("b.p12" if kind == "p12" else f"{kind}.{form}")
    proc = _key_given(option, pki, given, tmp_path)
    assert_clean_error(proc, HELD[kind])
    assert "deserialize" not in proc.stderr and "PEM -----BEGIN" not in proc.stderr, proc.stderr
    assert not (tmp_path / "bundle" / "bundle.p12").exists()


CERT_FILES = [("csr", "pem"), ("csr", "der"), ("crl", "pem"), ("crl", "der"), ("key", "pem"), ("key", "der")]
NO_CERT = {"csr": "holds a CSR but no certificate", "crl": "holds a CRL but no certificate",
           "key": "holds a private key but no certificate"}


@pytest.mark.parametrize("option", ["serve --cert", "probe --cert"])
@pytest.mark.parametrize(("kind", "form"), CERT_FILES, ids=[f"{k}-{f}" for k, f in CERT_FILES])
def test_a_file_of_another_kind_given_as_a_certificate_is_named_alike_in_pem_and_der(pki, option, kind, form):
    """serve --cert said "holds no certificate (PEM -----BEGIN CERTIFICATE-----)" of a CSR, a CRL or a PEM key,
    and "is a private key in DER form, not a PEM certificate" of a DER key, where probe --cert (and verify's
    --ca-file, --untrusted, serve's --client-ca) name what the file holds, PEM or DER."""
    env = json.loads((pki / "env.json").read_text())
    key = pki / "localhost" / "privkey.pem"
    given = pki / f"{kind}.{form}"
    args = ["serve", "--port", "0"] if option == "serve --cert" else ["probe", "https://127.0.0.1:1/"]
    proc = run_certkit(*args, "--cert", given, "--key", key, env=env)
    assert_clean_error(proc, f"{NO_CERT[kind]}; it is given as ")
    assert "PEM" not in proc.stderr, proc.stderr


@pytest.mark.parametrize(("kind", "form"), KEY_FILES, ids=[f"{k}-{f}" for k, f in KEY_FILES])
def test_serve_names_a_file_of_another_kind_given_as_its_key_as_probe_does(pki, kind, form):
    """serve --key said "holds no private key (PEM -----BEGIN PRIVATE KEY-----)" of a CSR, a CRL or a PEM
    certificate, and "is a certificate in DER form, not a PEM private key" of a DER one; probe --key names them."""
    env = json.loads((pki / "env.json").read_text())
    given = pki / ("b.p12" if kind == "p12" else f"{kind}.{form}")
    proc = run_certkit("serve", "--port", "0", "--cert", pki / "localhost" / "cert.pem", "--key", given, env=env)
    assert_clean_error(proc, HELD[kind])
    assert f"The server key {given} {'is' if kind == 'p12' else 'holds'} " in proc.stderr, proc.stderr
    assert "PEM -----BEGIN" not in proc.stderr and "not a PEM" not in proc.stderr, proc.stderr


READERS = {  # an option that reads a certificate, CSR or CRL file: its command line, F the file (in .pem or .der)
    "verify CERT": ["verify", "F:localhost/cert", "--purpose", "server", "--name", "localhost"],
    "verify --ca-file": ["verify", "localhost/cert.pem", "--purpose", "server", "--ca-file", "F:ca/ca"],
    "verify --untrusted": ["verify", "localhost/cert.pem", "--purpose", "server", "--untrusted", "F:ca/ca"],
    "inspect CSR": ["inspect", "F:csr"],
    "inspect CRL": ["inspect", "F:crl"],
    "sign-csr": ["sign-csr", "F:csr", "--server", "--out", "OUT"],
}


@pytest.mark.parametrize("form", ["pem", "der"])
@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_option_that_reads_a_certificate_csr_or_crl_reads_pem_and_der_alike(pki, tmp_path, reader, form):
    env = json.loads((pki / "env.json").read_text())
    args = [str(pki / f"{a[2:]}.{form}") if a.startswith("F:") else str(tmp_path / "out") if a == "OUT"
            else str(pki / a) if "/" in a else a for a in READERS[reader]]
    proc = run_certkit(*args, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "PEM" not in proc.stderr, proc.stderr
    if reader == "inspect CRL":  # the revoked serial openssl reads from the same file
        text = subprocess.run(["openssl", "crl", "-inform", form.upper(), "-in", args[1], "-noout", "-text"],
                              capture_output=True, text=True, check=True).stdout
        bob = json.loads(run_certkit("inspect", pki / "bob" / "cert.pem", "--json", env=env).stdout)["items"][0]
        bob = bob["serial"]
        assert bob in proc.stdout and f"Serial Number: {bob}" in text, (proc.stdout, text)


@pytest.mark.parametrize("form", ["pem", "der"])
def test_serve_client_ca_and_probe_ca_file_and_cert_read_der_with_real_peers(pki, tmp_path, form):
    """serve --client-ca ca.der, probe --ca-file ca.der --cert alice/cert.der: a handshake with openssl s_client
    presenting alice's certificate is answered 200, and probe verifies the server and is accepted."""
    env = json.loads((pki / "env.json").read_text())
    with ServeProcess("--cert", pki / "localhost" / "cert.pem", "--key", pki / "localhost" / "privkey.pem",
                      "--client-ca", pki / "ca" / f"ca.{form}", env=env, cwd=tmp_path) as serve:
        port = serve.info["port"]
        out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", pki / "ca" / "ca.pem",
                              "-verify_return_error", "-cert", pki / "alice" / "cert.pem", "-key",
                              pki / "alice" / "privkey.pem", "-servername", "localhost", "-quiet"],
                             input="GET / HTTP/1.0\r\n\r\n", capture_output=True, text=True, timeout=60)
        assert "200" in out.stdout.split("\n", 1)[0], out.stdout + out.stderr
        proc = run_certkit("probe", f"https://127.0.0.1:{port}/", "--ca-file", pki / "ca" / f"ca.{form}",
                           "--cert", pki / "alice" / f"cert.{form}", "--key", pki / "alice" / "privkey.pem", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "accepted" in proc.stdout, proc.stdout
