"""Round fourteen, x509peers: what real peers do with a certificate, against what certkit verify, inspect and
probe say of it. The certificates are made by hand with cryptography (as another CA would make them) and put
before real peers: gnutls-cli/gnutls-serv, openssl s_server, Python's ssl.

1. A leaf whose keyUsage lacks digitalSignature (keyEncipherment or keyAgreement alone) passes OpenSSL and
   Python, but GnuTLS ("Key usage violation") and Java refuse it in every TLS 1.3 handshake: certkit verify
   said VALID with no word, inspect and probe "usable for TLS ..." with none.
2. A leaf whose EC key is on a curve TLS does not sign with (brainpoolP256r1, secp256k1) passes openssl
   verify and cryptography's verifier, but no handshake completes with it (OpenSSL "no suitable signature
   algorithm", GnuTLS, Java): certkit verify said VALID and inspect "usable for TLS server authentication",
   though certkit's own sign-csr refuses such a key.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import (
    certkit_env,
    free_port,
    require,
    run_certkit,
    serve_refused_at_start,
    wait_listening,
    wait_or_kill,
)

NOW = dt.datetime.now(dt.UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _root(tmp_path: Path):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("Other CA")).issuer_name(_name("Other CA"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(minutes=5)).not_valid_after(NOW + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(True, 1), True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "root.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def _leaf(tmp_path: Path, root, stem: str, *, usage: str, purpose: str = "server", curve=None) -> Path:
    """A leaf of the hand-made root: ``usage`` is its one keyUsage bit; a server names localhost."""
    ca_key, ca = root
    key = ec.generate_private_key(curve or ec.SECP256R1())
    bits = dict(digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False)
    bits[usage] = True
    builder = (x509.CertificateBuilder().subject_name(_name("localhost" if purpose == "server" else "alice"))
               .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - dt.timedelta(minutes=5)).not_valid_after(NOW + dt.timedelta(days=90))
               .add_extension(x509.BasicConstraints(False, None), True)
               .add_extension(x509.KeyUsage(**bits), True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if purpose == "server"
                                                     else ExtendedKeyUsageOID.CLIENT_AUTH]), False))
    if purpose == "server":
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
    folder = tmp_path / stem
    folder.mkdir()
    (folder / "cert.pem").write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    (folder / "privkey.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    (folder / "privkey.pem").chmod(0o600)
    (folder / "ca.pem").write_bytes((tmp_path / "root.pem").read_bytes())
    return folder


def _gnutls_client(folder: Path, ca: Path, *chain: Path) -> str:
    """gnutls-cli's account of a handshake with openssl s_server presenting ``folder``'s certificate (and the
    ``chain`` file after it)."""
    port = free_port()
    server = subprocess.Popen([require("openssl"), "s_server", "-accept", f"127.0.0.1:{port}",
                               *(["-cert_chain", chain[0]] if chain else []),
                               "-cert", folder / "cert.pem", "-key", folder / "privkey.pem"],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, server)
        out = subprocess.run([require("gnutls-cli"), "-p", str(port), "--x509cafile", ca, "--verify-hostname",
                              "localhost", "127.0.0.1"], input="", capture_output=True, text=True, timeout=30)
        return out.stdout + out.stderr
    finally:
        server.kill()
        wait_or_kill(server)


def _python_handshake(folder: Path, ca: Path) -> str | None:
    """A Python ssl client's handshake with a Python server presenting ``folder``: None, or the client's error."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(folder / "cert.pem", folder / "privkey.pem")
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(ca)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def serve() -> None:
            conn = listener.accept()[0]
            try:
                with server.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"x")
            except (OSError, ssl.SSLError):
                conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with client.wrap_socket(socket.create_connection(listener.getsockname(), timeout=10),
                                    server_hostname="localhost") as tls:
                tls.recv(1)
            return None
        except (OSError, ssl.SSLError) as exc:
            return str(exc)
        finally:
            thread.join(10)


def _verify(folder: Path, ca: Path, purpose: str) -> tuple[int, dict]:
    proc = run_certkit("verify", folder / "cert.pem", "--ca-file", ca, "--purpose", purpose, "--json",
                       env=certkit_env(HOME=str(ca.parent / "home")))
    return proc.returncode, json.loads(proc.stdout)


def _usable_for(folder: Path) -> str:
    proc = run_certkit("inspect", folder / "cert.pem", "--json", check=True)
    return json.loads(proc.stdout)["items"][0]["usable_for"]


@pytest.mark.parametrize("usage", ["key_encipherment", "key_agreement"])
def test_a_server_certificate_without_digital_signature_is_noted_as_gnutls_refuses_it(tmp_path, usage):
    root = _root(tmp_path)
    odd = _leaf(tmp_path, root, "odd", usage=usage)
    plain = _leaf(tmp_path, root, "plain", usage="digital_signature")
    ca = tmp_path / "root.pem"
    # The peers: OpenSSL (Python's ssl) takes it, GnuTLS refuses it; both take the digitalSignature one.
    assert _python_handshake(odd, ca) is None
    assert "Key usage violation" in _gnutls_client(odd, ca)
    assert "Handshake was completed" in _gnutls_client(plain, ca)
    # certkit: valid (OpenSSL-based peers take it), with a note naming what GnuTLS and Java refuse.
    code, verdict = _verify(odd, ca, "server")
    assert code == 0 and verdict["valid"], verdict
    assert any("no digitalSignature" in n and "GnuTLS" in n for n in verdict["notes"]), verdict
    assert "beware: its keyUsage" in _usable_for(odd) and "GnuTLS" in _usable_for(odd)
    code, verdict = _verify(plain, ca, "server")
    assert code == 0 and not any("digitalSignature" in n for n in verdict["notes"]), verdict
    assert "beware" not in _usable_for(plain)


def test_probe_names_the_missing_digital_signature_of_a_client_certificate_gnutls_serv_refuses(tmp_path):
    root = _root(tmp_path)
    ca = tmp_path / "root.pem"
    server = _leaf(tmp_path, root, "server", usage="digital_signature")
    client = _leaf(tmp_path, root, "alice", usage="key_agreement", purpose="client")
    code, verdict = _verify(client, ca, "client")
    assert code == 0 and any("no digitalSignature" in n for n in verdict["notes"]), verdict
    port = free_port()
    serv = subprocess.Popen([require("gnutls-serv"), "--http", "-p", str(port), "--x509certfile", server / "cert.pem",
                             "--x509keyfile", server / "privkey.pem", "--x509cafile", ca, "--require-client-cert",
                             "--verify-client-cert"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_listening(port, serv)
        proc = run_certkit("probe", f"https://localhost:{port}/", "--ca-file", ca, "--bundle", client,
                           env=certkit_env(HOME=str(tmp_path / "home")))
    finally:
        serv.terminate()
        wait_or_kill(serv)
    log = serv.stdout.read()
    assert "Key usage violation" in log, log  # the real server's reason
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "refused" in proc.stdout and "no digitalSignature" in proc.stdout, proc.stdout


@pytest.mark.parametrize("curve", [ec.BrainpoolP256R1(), ec.SECP256K1()], ids=["brainpoolP256r1", "secp256k1"])
def test_a_leaf_key_on_a_curve_tls_does_not_sign_with_is_not_valid(tmp_path, curve):
    root = _root(tmp_path)
    ca = tmp_path / "root.pem"
    odd = _leaf(tmp_path, root, "odd", usage="digital_signature", curve=curve)
    # openssl verify takes the certificate; no handshake completes with its key.
    assert subprocess.run([require("openssl"), "verify", "-purpose", "sslserver", "-CAfile", ca, odd / "cert.pem"],
                          capture_output=True).returncode == 0
    assert "HANDSHAKE_FAILURE" in (_python_handshake(odd, ca) or "").upper()
    assert "Handshake was completed" not in _gnutls_client(odd, ca)
    for purpose in ("server", "client"):
        code, verdict = _verify(odd, ca, purpose)
        assert code == 1 and not verdict["valid"], verdict
        assert any(curve.name in r and "signature algorithm" in r for r in verdict["reasons"]), verdict
    assert _usable_for(odd).startswith("nothing"), _usable_for(odd)


def _csr(tmp_path: Path, stem: str, curve) -> tuple[Path, Path]:
    key = ec.generate_private_key(curve)
    csr = (x509.CertificateSigningRequestBuilder().subject_name(_name("localhost"))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
           .sign(key, hashes.SHA256()))
    (tmp_path / f"{stem}.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    (tmp_path / f"{stem}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                             serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
    return tmp_path / f"{stem}.csr", tmp_path / f"{stem}.key"


def _chromium_loads(tmp_path: Path, cert: Path, key: Path) -> tuple[str, str]:
    """Headless Chromium's page from openssl s_server -www presenting ``cert``, and the server's log. The
    certificate's trust is not the question (--ignore-certificate-errors): whether a handshake can be made."""
    from tests.conftest import chromium

    port = free_port()
    server = subprocess.Popen([require("openssl"), "s_server", "-accept", f"127.0.0.1:{port}", "-www",
                               "-cert", cert, "-key", key], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        wait_listening(port, server)
        page = chromium(f"https://localhost:{port}/", tmp_path / "home", tmp_path / f"ud-{cert.parent.name}",
                        "--ignore-certificate-errors", "--dump-dom").stdout
    finally:
        server.kill()
        wait_or_kill(server)
    return page, server.stdout.read()


def test_sign_csr_notes_that_chrome_cannot_connect_to_a_server_with_a_p521_key(tmp_path):
    from tests.conftest import PASSPHRASE, require_chromium

    require_chromium()
    env = certkit_env(HOME=str(tmp_path / "home"), CERTKIT_CA_DIR=str(tmp_path / "ca"),
                      CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    (tmp_path / "home").mkdir()
    run_certkit("init-ca", "--name", "P521 Test", env=env, check=True)
    said = {}
    for stem, curve in (("p521", ec.SECP521R1()), ("p256", ec.SECP256R1())):
        csr, key = _csr(tmp_path, stem, curve)
        said[stem] = run_certkit("sign-csr", csr, "--server", "--out", tmp_path / stem, env=env, check=True).stdout
        page, log = _chromium_loads(tmp_path, tmp_path / stem / "cert.pem", key)
        said[stem + " chromium"] = (page, log)
    page, log = said["p521 chromium"]
    assert "s_server" not in page and "no suitable signature algorithm" in log, (page, log)
    assert "s_server" in said["p256 chromium"][0], said["p256 chromium"]
    assert "Chrome" in said["p521"] and "P-521" in said["p521"], said["p521"]
    assert "P-521" not in said["p256"], said["p256"]
    # A client certificate is not served to a browser: no note there.
    csr, _key = _csr(tmp_path, "alice", ec.SECP521R1())
    client = run_certkit("sign-csr", csr, "--client", "--out", tmp_path / "alice", env=env)
    assert client.returncode == 0 and "P-521" not in client.stdout + client.stderr, client.stdout + client.stderr


def _ca_cert(key, subject: str, issuer_key, issuer: str, *, days_ago: int, days_left: int, path_length: int):
    """A CA certificate for ``key``: one key may have several (a CA renewed with its key beside its old self)."""
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=days_ago)).not_valid_after(NOW + dt.timedelta(days=days_left))
            .add_extension(x509.BasicConstraints(True, path_length), True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False)
            .sign(issuer_key, hashes.SHA256()))


def _pem(*certs) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@pytest.mark.parametrize("renewed", ["intermediate", "root"])
def test_a_ca_renewed_with_its_key_beside_its_expired_self_is_chosen_as_peers_choose_it(tmp_path, renewed):
    """A renewed CA (same name, same key) beside its expired old certificate, the old one first: OpenSSL and
    Python's ssl take the valid one; certkit verify took the first and said the issuing CA had expired (and, of
    a fullchain.pem, that the renewed one issued none of the chain's certificates)."""
    root_key, mid_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    if renewed == "root":
        old = _ca_cert(root_key, "Renewed CA", root_key, "Renewed CA", days_ago=400, days_left=-1, path_length=1)
        new = _ca_cert(root_key, "Renewed CA", root_key, "Renewed CA", days_ago=2, days_left=400, path_length=1)
        (tmp_path / "root.pem").write_bytes(_pem(old, new))
        issuer = new
    else:
        root = _ca_cert(root_key, "Root CA", root_key, "Root CA", days_ago=500, days_left=900, path_length=1)
        (tmp_path / "root.pem").write_bytes(_pem(root))
        old = _ca_cert(mid_key, "Renewed CA", root_key, "Root CA", days_ago=400, days_left=-1, path_length=0)
        issuer = _ca_cert(mid_key, "Renewed CA", root_key, "Root CA", days_ago=2, days_left=400, path_length=0)
    leaf = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(issuer.subject)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(minutes=5)).not_valid_after(NOW + dt.timedelta(days=90))
            .add_extension(x509.BasicConstraints(False, None), True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()), False)
            .sign(root_key if renewed == "root" else mid_key, hashes.SHA256()))
    folder = tmp_path / "srv"
    folder.mkdir()
    (folder / "cert.pem").write_bytes(_pem(leaf) + (_pem(old, issuer) if renewed == "intermediate" else b""))
    (folder / "privkey.pem").write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM,
                                                                serialization.PrivateFormat.PKCS8,
                                                                serialization.NoEncryption()))
    ca = tmp_path / "root.pem"
    theirs = subprocess.run([require("openssl"), "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", ca,
                             "-untrusted", folder / "cert.pem", folder / "cert.pem"], capture_output=True, text=True)
    assert theirs.returncode == 0, theirs.stdout + theirs.stderr
    assert _python_handshake(folder, ca) is None
    code, verdict = _verify(folder, ca, "server")
    assert code == 0 and verdict["valid"], verdict
    assert not any("issued none" in n for n in verdict["notes"]), verdict
    if renewed == "intermediate":  # sent old first: GnuTLS takes the first and refuses it, which a note says
        (tmp_path / "sent.pem").write_bytes(_pem(old, issuer))
        assert "uses expired certificate" in _gnutls_client(folder, ca, tmp_path / "sent.pem")
        assert any("GnuTLS" in n and "expired" in n for n in verdict["notes"]), verdict
        (tmp_path / "sent.pem").write_bytes(_pem(issuer, old))  # the valid one first: GnuTLS takes it, no note
        assert "Handshake was completed" in _gnutls_client(folder, ca, tmp_path / "sent.pem")
        (folder / "cert.pem").write_bytes(_pem(leaf, issuer, old))
        code, verdict = _verify(folder, ca, "server")
        assert code == 0 and not any("GnuTLS" in n for n in verdict["notes"]), verdict


def test_export_p12_packs_the_renewed_intermediate_not_its_expired_old_self(tmp_path):
    """export-p12 took the first CA of chain.pem whose key signed the certificate: with a renewed intermediate
    beside its expired old certificate, the old one first, bundle.p12 carried the expired one alone, and OpenSSL
    refused the chain it holds ("certificate has expired")."""
    root_key, mid_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _ca_cert(root_key, "Root CA", root_key, "Root CA", days_ago=500, days_left=900, path_length=1)
    old = _ca_cert(mid_key, "Renewed CA", root_key, "Root CA", days_ago=400, days_left=-1, path_length=0)
    new = _ca_cert(mid_key, "Renewed CA", root_key, "Root CA", days_ago=2, days_left=400, path_length=0)
    leaf = (x509.CertificateBuilder().subject_name(_name("alice")).issuer_name(new.subject)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(minutes=5)).not_valid_after(NOW + dt.timedelta(days=90))
            .add_extension(x509.BasicConstraints(False, None), True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(mid_key.public_key()), False)
            .sign(mid_key, hashes.SHA256()))
    folder = tmp_path / "alice"
    folder.mkdir()
    (folder / "cert.pem").write_bytes(_pem(leaf))
    (folder / "chain.pem").write_bytes(_pem(old, new))
    (folder / "ca.pem").write_bytes(_pem(root))
    (folder / "privkey.pem").write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM,
                                                                serialization.PrivateFormat.PKCS8,
                                                                serialization.NoEncryption()))
    (folder / "privkey.pem").chmod(0o600)
    (tmp_path / "home").mkdir()
    env = certkit_env(HOME=str(tmp_path / "home"), CERTKIT_P12_PASSWORD="pw-for-the-test",
                      XDG_DATA_HOME=str(tmp_path / "xdg"))
    run_certkit("export-p12", folder, env=env, check=True)
    shown = subprocess.run([require("openssl"), "pkcs12", "-in", folder / "bundle.p12", "-nokeys", "-cacerts",
                            "-passin", "pass:pw-for-the-test"], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    (tmp_path / "p12chain.pem").write_text(shown.stdout)
    theirs = subprocess.run([require("openssl"), "verify", "-purpose", "sslclient", "-CAfile", folder / "ca.pem",
                             "-untrusted", tmp_path / "p12chain.pem", folder / "cert.pem"],
                            capture_output=True, text=True)
    assert theirs.returncode == 0, theirs.stdout + theirs.stderr


def test_serve_refuses_a_server_certificate_whose_key_no_handshake_signs_with(tmp_path):
    """certkit serve --cert with a brainpoolP256r1 key started, and then every client's handshake failed (the
    test above shows Python's and GnuTLS's); like an expired --cert, it is refused at start now."""

    from tests.conftest import PASSPHRASE

    root = _root(tmp_path)
    odd = _leaf(tmp_path, root, "odd", usage="digital_signature", curve=ec.BrainpoolP256R1())
    (tmp_path / "home").mkdir()
    env = certkit_env(HOME=str(tmp_path / "home"), CERTKIT_CA_DIR=str(tmp_path / "ca"),
                      CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Serve Test", env=env, check=True)
    err = serve_refused_at_start(odd, env, "a certificate no client can handshake with")
    assert "brainpoolP256r1" in err, err
