"""DER input, audit round twenty-eight: one rule for every option that reads one certificate or one key.

inspect, verify, sign-csr, probe --ca-file/--key and serve --client-ca read DER, but ``serve --cert/--key``
and ``probe --cert`` refused it ("holds a DER certificate, not PEM; give it as PEM (openssl x509 ...)"):
OpenSSL's file loaders read PEM only. A DER file holds exactly one object, so certkit now reads it and hands
OpenSSL its PEM form. Checked with real peers: ``openssl s_client`` and a Python ``ssl`` handshake against
serve, ``openssl s_server -Verify`` for the client certificate probe presents.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from test_probe import openssl_server

from conftest import assert_clean_error, certkit_env, new_ca, run_certkit
from serve_process import ServeProcess

FORMS = ("pem", "der", "der-pkcs8", "der-traditional")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """ca/ (Lab CA) with localhost/ (server) and alice/ (client), each also in DER: cert.der, key.der (PKCS#8),
    key-trad.der (traditional), key-enc.der (encrypted PKCS#8, passphrase xyz); env.json: the CA's environment."""
    top = tmp_path_factory.mktemp("audit28-der")
    env = new_ca(top, "Lab CA")
    run_certkit("issue-server", "localhost", "127.0.0.1", "--key-type", "rsa-2048", "--out", top / "localhost",
                env=env, check=True)
    run_certkit("issue-client", "alice", "--out", top / "alice", env=env, check=True)
    for who in ("localhost", "alice"):
        folder = top / who
        subprocess.run(["openssl", "x509", "-in", folder / "cert.pem", "-outform", "DER", "-out", folder / "cert.der"],
                       check=True)
        subprocess.run(["openssl", "pkey", "-in", folder / "privkey.pem", "-outform", "DER", "-out",
                        folder / "key.der"], check=True)
        subprocess.run(["openssl", "pkey", "-in", folder / "privkey.pem", "-traditional", "-outform", "DER", "-out",
                        folder / "key-trad.der"], check=True)
        subprocess.run(["openssl", "pkcs8", "-topk8", "-in", folder / "privkey.pem", "-outform", "DER", "-v2",
                        "aes-256-cbc", "-passout", "pass:xyz", "-out", folder / "key-enc.der"], check=True)
    (top / "env.json").write_text(json.dumps(env))
    return top


def files(folder: Path, form: str) -> tuple[Path, Path]:
    """The certificate and key of ``folder`` in ``form``: PEM, or DER with the key in PKCS#8 or traditional form."""
    cert = folder / ("cert.pem" if form == "pem" else "cert.der")
    key = {"pem": "privkey.pem", "der": "key.der", "der-pkcs8": "key.der", "der-traditional": "key-trad.der"}[form]
    return cert, folder / key


def _env(pki: Path) -> dict:
    return json.loads((pki / "env.json").read_text())


@pytest.mark.parametrize("cert_form, key_form", [("der", "pem"), ("pem", "der-pkcs8"), ("der", "der-traditional"),
                                                 ("der", "der-pkcs8")])
def test_serve_with_a_der_certificate_and_key_answers_real_clients(pki: Path, tmp_path: Path, cert_form: str,
                                                                   key_form: str) -> None:
    """serve --cert cert.der was "Error: Cannot use cert.der with privkey.pem as the server certificate: cert.der
    holds a DER certificate, not PEM; give it as PEM ...", --key key.der the same of the key. Now serve reads them
    and openssl s_client and Python's ssl complete a handshake that presents that certificate."""
    cert, _ = files(pki / "localhost", cert_form)
    _, key = files(pki / "localhost", key_form)
    client_ca = pki / "ca" / "ca.pem"
    with ServeProcess("--cert", cert, "--key", key, "--client-ca", client_ca, env=_env(pki), cwd=tmp_path) as serve:
        port = serve.info["port"]
        assert serve.info["server_certificate"]["cert"] == str(cert)
        out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", pki / "ca" / "ca.pem",
                              "-verify_return_error", "-cert", pki / "alice" / "cert.pem", "-key",
                              pki / "alice" / "privkey.pem", "-servername", "localhost"],
                             input="", capture_output=True, text=True)
        assert "Verify return code: 0 (ok)" in out.stdout, out.stdout + out.stderr
        assert "CN=localhost" in out.stdout or "CN = localhost" in out.stdout, out.stdout
        ctx = ssl.create_default_context(cafile=str(pki / "ca" / "ca.pem"))
        ctx.load_cert_chain(pki / "alice" / "cert.pem", pki / "alice" / "privkey.pem")
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            served = tls.getpeercert(binary_form=True)
            tls.sendall(b"GET / HTTP/1.0\r\nAccept: application/json\r\n\r\n")
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
    assert served == (pki / "localhost" / "cert.der").read_bytes()
    assert b"200" in answer.split(b"\r\n", 1)[0] and b"alice" in answer, answer[:300]


@pytest.mark.parametrize("option", ["--cert", "--key"])
def test_serve_and_probe_say_an_encrypted_der_key_as_an_encrypted_pem_key(pki: Path, tmp_path: Path,
                                                                          option: str) -> None:
    """An encrypted DER PKCS#8 key was, to serve --key, "holds a private key in DER form, not PEM; give it as
    PEM"; an encrypted PEM key "is encrypted; give an unencrypted key (mode 0600)". Now the same words for both,
    as probe --key already said; nothing listens, no file is written."""
    folder = pki / "localhost" if option == "--cert" else pki / "alice"
    enc_pem = tmp_path / "enc.pem"
    subprocess.run(["openssl", "pkcs8", "-topk8", "-in", folder / "privkey.pem", "-v2", "aes-256-cbc", "-passout",
                    "pass:xyz", "-out", enc_pem], check=True)
    for key in (folder / "key-enc.der", enc_pem):
        for cert in (folder / "cert.pem", folder / "cert.der"):
            if option == "--cert":
                args = ["serve", "--port", "0", "--cert", cert, "--key", key, "--client-ca", pki / "ca" / "ca.pem"]
                said = f"Error: The server key {key} is encrypted; give an unencrypted key (mode 0600)."
            else:
                args = ["probe", "https://127.0.0.1:9/", "--cert", cert, "--key", key, "--ca-file", pki / "ca/ca.pem"]
                said = f"Error: The client key {key} is encrypted; give an unencrypted key (mode 0600)."
            before = sorted(tmp_path.iterdir())
            proc = run_certkit(*args, env=_env(pki), cwd=tmp_path)
            assert_clean_error(proc, said, 1)
            assert proc.stderr.strip() == said, proc.stderr
            assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize("form", FORMS)
def test_probe_presents_a_der_client_certificate_to_openssl_s_server(pki: Path, form: str) -> None:
    """probe --cert cert.der was "Error: cert.der holds a DER certificate, not PEM; give it as PEM (openssl x509
    ...)" though --key key.der was read. Now openssl s_server -Verify 1 -verify_return_error receives that
    certificate and accepts it, whichever form of the key (PKCS#8 or traditional) goes with it."""
    cert, key = files(pki / "alice", form)
    with openssl_server("-cert", pki / "localhost" / "cert.pem", "-key", pki / "localhost" / "privkey.pem",
                        "-Verify", "1", "-verify_return_error", "-CAfile", pki / "ca" / "ca.pem") as port:
        proc = run_certkit("probe", f"https://localhost:{port}/", "--ca-file", pki / "ca" / "ca.pem", "--cert", cert,
                           "--key", key, "--json", env=certkit_env())
    data = json.loads(proc.stdout)
    client = data["client_certificate"]
    assert client["with_it"]["presented"] is not None and "alice" in json.dumps(client["with_it"]["presented"])
    assert client["accepted"] is True, data


@pytest.mark.parametrize("form", FORMS)
def test_serve_with_a_der_certificate_of_another_key_names_the_mismatch(pki: Path, tmp_path: Path, form: str) -> None:
    """A certificate with a key not its own, in PEM or DER: one error naming the mismatch, never "holds a DER
    certificate, not PEM" of a certificate serve reads; nothing listens."""
    cert, _ = files(pki / "localhost", form)
    _, key = files(pki / "alice", form)
    proc = run_certkit("serve", "--port", "0", "--cert", cert, "--key", key, "--client-ca", pki / "ca/ca.pem",
                       env=_env(pki), cwd=tmp_path)
    assert_clean_error(proc, f"Cannot use {cert} with {key} as the server certificate: ")
    assert "not PEM" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def test_probe_with_a_der_certificate_of_another_key_names_the_mismatch(pki: Path) -> None:
    """A client certificate (PEM or DER) with a key of another type (ECDSA certificate, RSA key) was "Cannot use
    ... as the client certificate: no certificate assigned." (OpenSSL put the RSA key in its RSA slot, which holds
    no certificate). Now the mismatch is said, as for a key of the same type, and as serve --cert/--key says it."""
    for form in FORMS:
        cert, _ = files(pki / "alice", form)
        _, key = files(pki / "localhost", form)
        proc = run_certkit("probe", "https://127.0.0.1:9/", "--cert", cert, "--key", key, env=certkit_env())
        assert_clean_error(proc, f"Cannot use {cert} with {key} as the client certificate: {key} is not the key of "
                                 "that certificate (OpenSSL: key values mismatch).")


def test_serve_optional_with_a_der_certificate_and_key_answers_openssl(pki: Path, tmp_path: Path) -> None:
    """serve --optional (pyOpenSSL, from the files' bytes) serves a DER certificate and traditional DER key too."""
    cert, key = pki / "localhost" / "cert.der", pki / "localhost" / "key-trad.der"
    with ServeProcess("--cert", cert, "--key", key, "--optional", "--client-ca", pki / "ca/ca.pem", env=_env(pki),
                      cwd=tmp_path) as serve:
        out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{serve.info['port']}", "-CAfile",
                              pki / "ca/ca.pem", "-verify_return_error", "-servername", "localhost"],
                             input="", capture_output=True, text=True, timeout=60)
    assert "Verify return code: 0 (ok)" in out.stdout, out.stdout + out.stderr
