"""Audit x5094 (X.509 content and the library) and docs4 finding 2 (sign-csr's CN rule), each as a class:

1. A CSR's key is certified as it is, or refused in one line: never changed into another
   algorithm (an RSA-PSS key into rsaEncryption, which its private key then does not pair with).
   Every key type openssl (and cryptography) can put in a CSR is tried.
2. A CA permitting IP addresses alone ("no DNS names") issues no DNS name, email or URI, not even
   under the placeholder domain ``invalid`` its extension permits; its refusals do not show it.
3. An empty passphrase given to the library is a missing one: ``PassphraseRequired``, saying so.
4. A refused CSR name is refused as what it is, where it is: the common name, the subjectAltName
   entry, an extra name; an IP range is called a range, not a bad DNS name.
5. docs/library.md names pkilint's URI finding, which every SPIFFE ID triggers.
docs4 #2: sign-csr picks the subject CN by issue-server's rule when the CSR has none.

Real peers throughout: openssl (verify -x509_strict, s_server), Python's ssl, pkilint.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, x448, x25519
from cryptography.x509.oid import NameOID

from certkit import CA, CADirectory
from certkit.errors import InvalidCSR, InvalidName, NameNotPermitted, PassphraseRequired
from certkit.key_encryption import private_key_pem
from certkit.keys import load_private_key

from conftest import (
    PASSPHRASE,
    REPO,
    assert_clean_error,
    certkit_env,
    free_port,
    openssl,
    pkilint_errors,
    run_certkit,
    wait_or_kill,
)

# --- helpers ------------------------------------------------------------------------------------------


def openssl_req(folder: Path, name: str, key_args: list[str], subj: str = "/CN=web.example.com",
                *addext: str) -> tuple[Path, Path]:
    """A CSR made by the openssl binary, and its key file."""
    csr, key = folder / f"{name}.csr", folder / f"{name}.key"
    args = ["req", "-new", *key_args, "-subj", subj, "-out", csr]
    if "-key" in key_args:  # a key file made before
        key = Path(key_args[key_args.index("-key") + 1])
    else:
        args[2:2] = ["-nodes", "-keyout", key]
    for ext in addext:
        args += ["-addext", ext]
    proc = openssl(*args)
    if proc.returncode != 0 or not csr.exists():
        pytest.skip(f"this openssl cannot make a {name} CSR: {proc.stderr.decode()[-200:]}")
    return csr, key


def genpkey(folder: Path, name: str, *args: str) -> Path:
    key = folder / f"{name}.key"
    proc = openssl("genpkey", *args, "-out", key)
    assert proc.returncode == 0, proc.stderr
    return key


def crypto_csr(path: Path, cn: str | None, san=(), key=None) -> object:
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn is not None else []))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
    algorithm = None if isinstance(key, (ed25519.Ed25519PrivateKey, mldsa.MLDSA65PrivateKey)) else hashes.SHA256()
    path.write_bytes(builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM))
    return key


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    size = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes(
        (n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + size + body


def csr_with_spki(path: Path, spki: bytes) -> None:
    """A CSR carrying ``spki`` (a key that cannot sign, X25519 or X448), signed by another key: what
    a broken or hostile client might send. Its signature cannot verify; the key is refused first."""
    signer = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kex.example.com")]).public_bytes()
    info = _der(0x30, b"\x02\x01\x00" + name + spki + b"\xa0\x00")
    signature = signer.sign(info, ec.ECDSA(hashes.SHA256()))
    ecdsa_sha256 = _der(0x30, bytes.fromhex("06082a8648ce3d040302"))
    path.write_bytes(_der(0x30, info + ecdsa_sha256 + _der(0x03, b"\x00" + signature)))


def spki_of(obj) -> bytes:
    return obj.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def s_server_handshake(folder: Path, key: Path, hostname: str) -> str:
    """Serve ``folder``'s fullchain.pem with the requester's ``key`` from ``openssl s_server``, and
    connect with Python's ssl trusting only ``folder``/ca.pem: the TLS version agreed."""
    port = free_port()
    server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert",
                               str(folder / "fullchain.pem"), "-key", str(key), "-naccept", "1"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        ctx = ssl.create_default_context(cafile=str(folder / "ca.pem"))
        deadline = time.monotonic() + 60  # -naccept 1: the first connection is the handshake, so no probe first
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=30) as sock, \
                        ctx.wrap_socket(sock, server_hostname=hostname) as tls:
                    return tls.version()
            except ConnectionRefusedError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(server.stdout.read().decode()) from None
                time.sleep(0.05)
    finally:
        server.terminate()
        wait_or_kill(server)


def strict_verify(folder: Path, purpose: str = "sslserver") -> None:
    proc = openssl("verify", "-x509_strict", "-purpose", purpose, "-CAfile", folder / "ca.pem", folder / "cert.pem")
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- 1. a CSR's key: certified as it is, or refused in one line ---------------------------------------
RSA_PSS_KEYS = {
    "rsa-pss": ["-newkey", "rsa-pss", "-pkeyopt", "rsa_keygen_bits:2048"],
    "rsa-pss-sha256": ["-newkey", "rsa-pss", "-pkeyopt", "rsa_keygen_bits:2048", "-pkeyopt",
                       "rsa_pss_keygen_md:sha256"],
}


@pytest.mark.parametrize("kind", ["server", "peer", "client"])
@pytest.mark.parametrize("key", sorted(RSA_PSS_KEYS))
def test_rsa_pss_key_refused_not_turned_into_rsa_encryption(tmp_path, ca_env, ca_dir, key, kind):
    csr, _ = openssl_req(tmp_path, key, RSA_PSS_KEYS[key])
    assert "rsassaPss" in openssl("req", "-in", csr, "-noout", "-text").stdout.decode()
    proc = run_certkit("sign-csr", csr, f"--{kind}", "--out", tmp_path / "out", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, f"Error: The CSR {csr} holds an RSA-PSS key (id-RSASSA-PSS), which certkit does not "
                             "sign")
    assert "would not pair with its private key" in proc.stderr and "rsa:2048" in proc.stderr
    assert not (tmp_path / "out").exists()
    with pytest.raises(InvalidCSR, match="holds an RSA-PSS key"):  # the library, on the same path
        CA.create("PSS test CA").sign_csr(csr.read_bytes(), kind)


def test_rsa_pss_signature_on_an_rsa_key_is_fine_and_pairs(tmp_path, ca_env, ca_dir):
    """Only a PSS *key* is refused: a plain RSA key that signed its CSR with PSS is certified as it is."""
    csr, key = openssl_req(tmp_path, "pss-signed", ["-newkey", "rsa:2048", "-sigopt", "rsa_padding_mode:pss"],
                           "/CN=web.example.com")
    assert "rsassaPss" in openssl("req", "-in", csr, "-noout", "-text").stdout.decode()  # the signature
    run_certkit("sign-csr", csr, "--server", "--out", tmp_path / "web", cwd=tmp_path, env=ca_env, check=True)
    cert = load(tmp_path / "web" / "cert.pem")
    assert spki_of(cert) == spki_of(x509.load_pem_x509_csr(csr.read_bytes()))
    strict_verify(tmp_path / "web")
    assert s_server_handshake(tmp_path / "web", key, "web.example.com").startswith("TLS")


# Keys openssl puts in a CSR that certkit does not certify: each refused in one line naming it.
REFUSED_OPENSSL_KEYS = {
    "ed448": (["-newkey", "ed448"], "holds an ed448 key, which certkit does not sign"),
    "brainpoolP256r1": (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:brainpoolP256r1"],
                        "holds an ecdsa-brainpoolP256r1 key, which certkit does not sign"),
    "brainpoolP384r1": (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:brainpoolP384r1"],
                        "holds an ecdsa-brainpoolP384r1 key, which certkit does not sign"),
    "secp256k1": (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"],
                  "holds an ecdsa-secp256k1 key, which certkit does not sign"),
    "secp224r1": (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp224r1"],
                  "holds an ecdsa-secp224r1 key, which certkit does not sign"),
    "sm2": (["-newkey", "sm2"], "holds a public key that certkit cannot read (Curve 1.2.156.10197.1.301 is not "
                                "supported), which certkit does not sign"),
}


@pytest.mark.parametrize("name", sorted(REFUSED_OPENSSL_KEYS))
def test_openssl_keys_certkit_does_not_certify_are_refused_in_one_line(tmp_path, ca_env, ca_dir, name):
    key_args, words = REFUSED_OPENSSL_KEYS[name]
    csr, _ = openssl_req(tmp_path, name, key_args)
    proc = run_certkit("sign-csr", csr, "--server", "--out", tmp_path / "out", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, f"The CSR {csr} {words}: use RSA of at least 2048 bits, ECDSA P-256, P-384 or "
                             "P-521, or Ed25519.")
    assert "does not verify" not in proc.stderr  # an SM2 request was said to be "altered after it was signed"
    assert not (tmp_path / "out").exists()


def test_dsa_key_refused(tmp_path, ca_env, ca_dir):
    params = tmp_path / "dsa.params"
    assert openssl("genpkey", "-genparam", "-algorithm", "DSA", "-pkeyopt", "dsa_paramgen_bits:2048",
                   "-out", params).returncode == 0
    key = genpkey(tmp_path, "dsa", "-paramfile", str(params))
    csr, _ = openssl_req(tmp_path, "dsa", ["-key", str(key), "-sha256"])
    assert_clean_error(run_certkit("sign-csr", csr, "--client", cwd=tmp_path, env=ca_env),
                       "holds a dsa-2048 key, which certkit does not sign")


@pytest.mark.parametrize("make", [lambda: x25519.X25519PrivateKey.generate(), lambda: x448.X448PrivateKey.generate()],
                         ids=["x25519", "x448"])
def test_key_agreement_keys_refused(tmp_path, ca_env, ca_dir, make):
    """X25519 and X448 cannot sign, so no honest CSR holds one; a forged one is refused by its key."""
    key = make()
    csr = tmp_path / "kex.csr"
    csr_with_spki(csr, key.public_key().public_bytes(serialization.Encoding.DER,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    name = "x25519" if isinstance(key, x25519.X25519PrivateKey) else "x448"
    assert_clean_error(run_certkit("sign-csr", csr, "--server", cwd=tmp_path, env=ca_env),
                       f"holds an {name} key, which certkit does not sign")
    with pytest.raises(InvalidCSR, match=f"holds an {name} key"):
        CA.create("K").sign_csr(csr.read_bytes(), "server")


def test_ml_dsa_key_refused_by_its_name(tmp_path, ca_env, ca_dir):
    csr = tmp_path / "mldsa.csr"
    crypto_csr(csr, "pq.example.com", key=mldsa.MLDSA65PrivateKey.generate())
    assert_clean_error(run_certkit("sign-csr", csr, "--server", cwd=tmp_path, env=ca_env),
                       "holds an ml-dsa-65 key, which certkit does not sign")


# Keys certkit certifies: the same key in the certificate, verified, and served with the requester's key file.
ACCEPTED = {
    "p256": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "p384": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
    "p521": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
    "rsa2048": ["-newkey", "rsa:2048"],
    "ed25519": ["-newkey", "ed25519"],
    # The same P-256 key spelled otherwise: the certificate says it the standard way (RFC 5480: named curve).
    "p256-explicit-params": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-pkeyopt",
                             "ec_param_enc:explicit"],
}


@pytest.mark.parametrize("name", sorted(ACCEPTED) + ["p256-compressed"])
def test_accepted_keys_are_certified_unchanged_and_pair(tmp_path, ca_env, ca_dir, name):
    if name == "p256-compressed":
        plain = genpkey(tmp_path, "plain", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
        key = tmp_path / "compressed.key"
        assert openssl("ec", "-in", plain, "-conv_form", "compressed", "-out", key).returncode == 0
        csr, key = openssl_req(tmp_path, name, ["-key", str(key)])
    else:
        csr, key = openssl_req(tmp_path, name, ACCEPTED[name])
    run_certkit("sign-csr", csr, "--server", "--out", tmp_path / "web", cwd=tmp_path, env=ca_env, check=True)
    cert = load(tmp_path / "web" / "cert.pem")
    requested = x509.load_pem_x509_csr(csr.read_bytes())
    assert cert.public_key_algorithm_oid == requested.public_key_algorithm_oid
    assert spki_of(cert) == spki_of(requested)  # the very key, as cryptography reads both
    pubkey = openssl("pkey", "-in", key, "-pubout", "-outform", "DER").stdout  # the requester's key file's
    assert spki_of(cert) == serialization.load_der_public_key(pubkey).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    strict_verify(tmp_path / "web")
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(tmp_path / "web" / "fullchain.pem", key)  # pairs
    assert s_server_handshake(tmp_path / "web", key, "web.example.com").startswith("TLS")


def test_ca_key_policy_refusals_are_one_line_in_the_library_too():
    """``key=`` for issue_server takes the same policy; an Ed448 key is refused there with the same words."""
    from cryptography.hazmat.primitives.asymmetric import ed448

    with pytest.raises(Exception, match="is an ed448 key, which certkit does not sign: use RSA of at least 2048"):
        CA.create("K").issue_server(["a.example.com"], key=ed448.Ed448PrivateKey.generate())


# --- 2. a CA for IP addresses alone: no DNS name, email or URI, under "invalid" neither -----------------
IP_ONLY_MESSAGE = ("is outside the name constraints of CA 'IP only CA' (permitted: 10.0.0.0/8; no DNS names, emails "
                   "or URIs).")


@pytest.fixture(scope="module")
def ip_only(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("iponly")
    env = certkit_env(CERTKIT_CA_DIR=str(folder / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(folder))
    run_certkit("init-ca", "--name", "IP only CA", "--permit-ip", "10.0.0.0/8", env=env, check=True)
    ext = openssl("x509", "-in", folder / "ca" / "ca.pem", "-noout", "-ext", "nameConstraints").stdout.decode()
    assert "DNS:invalid" in ext  # the placeholder is there: what follows is certkit keeping to it
    return folder, env


@pytest.mark.parametrize("args, value", [
    (["issue-server", "host.invalid"], "host.invalid"),
    (["issue-server", "invalid"], "invalid"),
    (["issue-server", "*.corp.invalid"], "*.corp.invalid"),
    (["issue-server", "10.1.2.3", "www.invalid"], "www.invalid"),
    (["issue-peer", "node.invalid"], "node.invalid"),
    (["issue-client", "Alice Smith", "--email", "alice@corp.invalid"], "alice@corp.invalid"),
    (["issue-client", "Alice Smith", "--email", "alice@invalid.invalid"], "alice@invalid.invalid"),
    (["issue-client", "Alice Smith", "--uri", "spiffe://corp.invalid/alice"], "spiffe://corp.invalid/alice"),
    (["issue-client", "Alice Smith", "--dns", "alice.invalid"], "alice.invalid"),
    (["issue-server", "www.example.com"], "www.example.com"),
])
def test_ip_only_ca_refuses_names_under_the_placeholder(tmp_path, ip_only, args, value):
    folder, env = ip_only
    proc = run_certkit(*args, "--out", tmp_path / "x", cwd=tmp_path, env=env)
    assert_clean_error(proc, f"Error: '{value}' {IP_ONLY_MESSAGE}")
    assert "invalid," not in proc.stderr and "permitted: invalid" not in proc.stderr  # no placeholder shown
    assert not (tmp_path / "x").exists()


def test_ip_only_ca_refuses_them_from_csrs_and_manifests_and_still_issues_addresses(tmp_path, ip_only):
    folder, env = ip_only
    crypto_csr(tmp_path / "cn.csr", "h.invalid")
    assert_clean_error(run_certkit("sign-csr", tmp_path / "cn.csr", "--server", cwd=tmp_path, env=env),
                       f"'h.invalid' {IP_ONLY_MESSAGE}")
    crypto_csr(tmp_path / "san.csr", None, [x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
                                            x509.DNSName("a.invalid")])
    assert_clean_error(run_certkit("sign-csr", tmp_path / "san.csr", "--peer", cwd=tmp_path, env=env),
                       f"'a.invalid' {IP_ONLY_MESSAGE}")
    crypto_csr(tmp_path / "mail.csr", "Alice Smith", [x509.RFC822Name("alice@corp.invalid")])
    assert_clean_error(run_certkit("sign-csr", tmp_path / "mail.csr", "--client", cwd=tmp_path, env=env),
                       f"'alice@corp.invalid' {IP_ONLY_MESSAGE}")
    (tmp_path / "m.csv").write_text("kind,names,email\nserver,10.0.0.9,\nclient,Bob Smith,bob@x.invalid\n")
    batch = run_certkit("issue-batch", tmp_path / "m.csv", "--out-dir", tmp_path / "batch", cwd=tmp_path, env=env)
    assert batch.returncode != 0 and f"'bob@x.invalid' {IP_ONLY_MESSAGE}" in batch.stderr, batch.stderr
    # What it is for still works, and a real verifier agrees.
    run_certkit("issue-server", "10.1.2.3", "--out", tmp_path / "ip", cwd=tmp_path, env=env, check=True)
    (tmp_path / "ip" / "ca.pem").write_bytes((folder / "ca" / "ca.pem").read_bytes())
    strict_verify(tmp_path / "ip")
    assert pkilint_errors(tmp_path / "ip" / "cert.pem") == ""


def test_ip_only_ca_in_the_library_and_below_it(tmp_path, ip_only):
    folder, env = ip_only
    ca = CA.create("IP only CA", permitted_ips=["10.0.0.0/8"])
    refused = [lambda: ca.issue_server(["h.invalid"]), lambda: ca.issue_peer(["10.0.0.1", "p.invalid"]),
               lambda: ca.issue_client("Alice Smith", emails=["a@b.invalid"]),
               lambda: ca.issue_client("Alice Smith", uris=["spiffe://x.invalid/a"]),
               lambda: ca.sign_csr((tmp_path / "l.csr").read_bytes(), "server")]
    crypto_csr(tmp_path / "l.csr", "l.invalid")
    for attempt in refused:
        with pytest.raises(NameNotPermitted, match=r"\(permitted: 10\.0\.0\.0/8; no DNS names, emails or URIs\)"):
            attempt()
    assert ca.issue_server(["10.0.0.1"]).identities[0].value == "10.0.0.1"
    # An intermediate cannot take back what its parent does not permit, under "invalid" neither.
    env = {**env, "CERTKIT_PARENT_CA_PASSPHRASE": PASSPHRASE}
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "sub", "--parent-ca-dir", folder / "ca", "--name", "Sub",
                       "--permit-dns", "sub.invalid", cwd=tmp_path, env=env)
    assert_clean_error(proc, f"An intermediate cannot be wider than its parent: 'sub.invalid' {IP_ONLY_MESSAGE}")
    assert not (tmp_path / "sub").exists()


@pytest.mark.parametrize("spelling", ["invalid", "INVALID", "invalid."])
def test_the_placeholder_cannot_be_permitted_by_hand(tmp_path, spelling):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path))
    proc = run_certkit("init-ca", "--permit-dns", spelling, env=env)
    assert_clean_error(proc, "'invalid' cannot be a permitted domain: it is reserved (RFC 6761)")
    assert not (tmp_path / "ca").exists()
    with pytest.raises(InvalidName, match="'invalid' cannot be a permitted domain"):
        CA.create("X", permitted_dns=[spelling])


# --- 3. an empty passphrase is a missing one ----------------------------------------------------------
@pytest.mark.parametrize("given", ["", b"", bytearray(), lambda: "", lambda: b""],
                         ids=["str", "bytes", "bytearray", "callable-str", "callable-bytes"])
def test_library_unlock_with_an_empty_passphrase(ca_dir, given):
    ca = CADirectory(ca_dir).open()
    with pytest.raises(PassphraseRequired) as raised:
        ca.unlock(given)
    assert str(raised.value) == f"The CA key {ca_dir / 'ca-key.pem'} is encrypted and the passphrase given is empty."
    assert "Password was not given" not in str(raised.value)  # cryptography's own words
    with pytest.raises(PassphraseRequired, match="no passphrase was given"):
        ca.unlock(None)
    ca.unlock(PASSPHRASE)  # and the right one still opens it
    assert ca.key is not None


def test_empty_passphrase_everywhere_a_key_is_read(tmp_path, ca_env, ca_dir):
    from cryptography.hazmat.primitives.asymmetric import ec as _ec

    pem = private_key_pem(_ec.generate_private_key(_ec.SECP256R1()), b"a long passphrase")
    with pytest.raises(PassphraseRequired, match="^The key is encrypted and the passphrase given is empty.$"):
        load_private_key(pem, b"")
    # A CA whose key is not encrypted needs no passphrase: an empty one is not asked for, so not refused.
    plain = tmp_path / "plain"
    env = certkit_env(CERTKIT_CA_DIR=str(plain), HOME=str(tmp_path))
    run_certkit("init-ca", "--no-passphrase", "--name", "Plain", env=env, check=True)
    ca = CADirectory(plain).open()
    ca.unlock("")
    assert ca.key is not None
    # The command line says "empty" too, for each way it is given one.
    (tmp_path / "e.pass").write_text("")
    (tmp_path / "e.pass").chmod(0o600)
    env = {k: v for k, v in ca_env.items() if k != "CERTKIT_CA_PASSPHRASE"}
    proc = run_certkit("issue-server", "--passphrase-file", tmp_path / "e.pass", "a.example.com", cwd=tmp_path,
                       env=env)
    assert_clean_error(proc, "holds an empty secret")
    assert_clean_error(run_certkit("issue-server", "a.example.com", cwd=tmp_path,
                                   env={**env, "CERTKIT_CA_PASSPHRASE": ""}), "is set but empty")


# --- 4. a refused CSR name is refused as what it is, where it is -------------------------------------
@pytest.mark.parametrize("cn, reason", [
    ("a@b", "'a@b' is not a valid email address: its domain needs two labels at least."),
    ("al..ice@example.com", "'al..ice@example.com' is not a valid email address: the part before '@'"),
    ("alice@-bad-.example.com", "'alice@-bad-.example.com' is not a valid email address:"),
    ("alice@exa_mple.com", "'alice@exa_mple.com' is not a valid email address:"),
])
def test_client_csr_bad_email_common_name_is_called_the_common_name(tmp_path, ca_env, ca_dir, cn, reason):
    crypto_csr(tmp_path / "c.csr", cn)
    proc = run_certkit("sign-csr", tmp_path / "c.csr", "--client", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, f"Error: The CSR's common name is refused: {reason}")
    assert "subjectAltName" not in proc.stderr
    with pytest.raises(InvalidCSR, match="^The CSR's common name is refused"):
        CA.create("K").sign_csr((tmp_path / "c.csr").read_bytes(), "client")


@pytest.mark.parametrize("entry, text", [
    (x509.RFC822Name("bob@b"), "email:bob@b"),
    (x509.UniformResourceIdentifier("spiffe://Example.org/x"), "URI:spiffe://Example.org/x"),
    (x509.UniformResourceIdentifier("https://a.example.com:99999/"), "URI:https://a.example.com:99999/"),
    (x509.DNSName("*.example.com"), "DNS:*.example.com"),
    (x509.DNSName("bad_name.example.com"), "DNS:bad_name.example.com"),
])
def test_client_csr_bad_san_entry_is_named(tmp_path, ca_env, ca_dir, entry, text):
    crypto_csr(tmp_path / "c.csr", "alice", [x509.RFC822Name("alice@example.com"), entry])
    proc = run_certkit("sign-csr", tmp_path / "c.csr", "--client", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, f"Error: The CSR's subjectAltName {text} is refused: ")


@pytest.mark.parametrize("network", ["10.0.0.0/8", "192.0.2.0/24", "10.0.0.1/32", "fd00::/8", "2001:db8::/32"])
def test_ip_range_in_a_csr_is_called_a_range(tmp_path, ca_env, ca_dir, network):
    crypto_csr(tmp_path / "n.csr", None, [x509.IPAddress(ipaddress.ip_network(network))])
    proc = run_certkit("sign-csr", tmp_path / "n.csr", "--server", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, f"Error: The CSR's subjectAltName IP:{network} is refused: '{network}' is a range "
                             "of IP addresses (CIDR), not an address: a certificate names single addresses")
    assert "DNS name" not in proc.stderr


@pytest.mark.parametrize("network", ["10.0.0.0/8", "fd00::/64"])
def test_ip_range_given_as_a_name_is_called_a_range_everywhere(tmp_path, ca_env, ca_dir, network):
    crypto_csr(tmp_path / "w.csr", "web.example.com")
    extra = run_certkit("sign-csr", tmp_path / "w.csr", "--server", network, cwd=tmp_path, env=ca_env)
    assert_clean_error(extra, f"Error: The name '{network}' given after the CSR is refused: '{network}' is a range")
    server = run_certkit("issue-server", network, cwd=tmp_path, env=ca_env)
    assert_clean_error(server, f"Error: '{network}' is a range of IP addresses (CIDR), not an address")
    with pytest.raises(InvalidName, match="is a range of IP addresses"):
        CA.create("K").issue_server([ipaddress.ip_network(network)])
    assert not any(tmp_path.glob("*/cert.pem"))


# --- docs4 #2: one CN rule for every issuer ---------------------------------------------------------
@pytest.mark.parametrize("names, cn", [
    (["10.0.0.1", "a.example.com"], "a.example.com"),
    (["10.0.0.1", "10.0.0.2", "b.example.com", "a.example.com"], "b.example.com"),
    (["fd00::1", "a.example.com"], "a.example.com"),
    (["10.0.0.1", "10.0.0.2"], "10.0.0.1"),
    (["a.example.com", "10.0.0.1"], "a.example.com"),
])
@pytest.mark.parametrize("kind", ["server", "peer"])
def test_sign_csr_without_cn_takes_issue_servers_cn(tmp_path, ca_env, ca_dir, names, cn, kind):
    sans = [x509.IPAddress(ipaddress.ip_address(n)) if n[0].isdigit() or ":" in n else x509.DNSName(n) for n in names]
    crypto_csr(tmp_path / "x.csr", None, sans)
    signed = run_certkit("sign-csr", tmp_path / "x.csr", f"--{kind}", "--out", tmp_path / "csr", "--json",
                         cwd=tmp_path, env=ca_env, check=True)
    issued = run_certkit(f"issue-{kind}", *names, "--out", tmp_path / "direct", cwd=tmp_path, env=ca_env, check=True)
    assert f"subject   CN={cn}" in issued.stdout
    assert load(tmp_path / "csr" / "cert.pem").subject == load(tmp_path / "direct" / "cert.pem").subject
    expected = [("IP:" if isinstance(s, x509.IPAddress) else "DNS:") + n for s, n in zip(sans, names, strict=True)]
    assert json.loads(signed.stdout)["names"] == expected  # the SAN as the CSR orders it
    library = CA.create("K").sign_csr((tmp_path / "x.csr").read_bytes(), kind)
    assert library.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
    strict_verify(tmp_path / "csr")


def test_sign_csr_keeps_the_csrs_own_cn(tmp_path, ca_env, ca_dir):
    """The requester's CN is theirs: kept, even an address ahead of a DNS name (with a DNS name in the
    SAN, OpenSSL does not read the CN as a host name)."""
    crypto_csr(tmp_path / "x.csr", "10.0.0.1", [x509.DNSName("a.example.com")])
    run_certkit("sign-csr", tmp_path / "x.csr", "--server", "--out", tmp_path / "o", cwd=tmp_path, env=ca_env,
                check=True)
    assert load(tmp_path / "o" / "cert.pem").subject.rfc4514_string() == "CN=10.0.0.1"
    strict_verify(tmp_path / "o")


def test_batch_and_peer_pages_state_the_rule_they_follow(tmp_path, ca_env, ca_dir):
    peer = (REPO / "docs" / "issue-peer.md").read_text()
    batch = (REPO / "docs" / "issue-batch.md").read_text()
    sign = (REPO / "docs" / "sign-csr.md").read_text()
    assert "the first name\nis the subject CN" not in peer and "the first is the CN" not in batch
    assert "the subject CN\nis the first DNS name, else the first address" in peer
    assert "the CN is the first DNS name, else the first address" in batch
    assert "The first\n     name becomes the CN." not in sign and "the first DNS name, else the first address" in sign
    (tmp_path / "b.csv").write_text("kind,names\nserver,10.0.0.1 web.example.com\npeer,10.0.0.2 p.example.com\n")
    run_certkit("issue-batch", tmp_path / "b.csv", "--out-dir", tmp_path / "bo", cwd=tmp_path, env=ca_env, check=True)
    assert load(tmp_path / "bo" / "10.0.0.1" / "cert.pem").subject.rfc4514_string() == "CN=web.example.com"
    assert load(tmp_path / "bo" / "10.0.0.2" / "cert.pem").subject.rfc4514_string() == "CN=p.example.com"


# --- 5. pkilint's URI finding, named in docs/library.md ----------------------------------------------
URI_FINDING = 'pkix.invalid_uri_syntax (ERROR): Invalid URI syntax: "{}"'


@pytest.mark.parametrize("uri", ["spiffe://example.org/billing", "urn:example:device:42", "https://intranet/"])
def test_pkilint_uri_finding_is_the_only_one_and_documented(tmp_path, uri):
    ca = CA.create("Lint CA")
    ca.issue_client("billing", uris=[uri]).write(tmp_path / "c")
    findings = [line.strip() for line in pkilint_errors(tmp_path / "c" / "cert.pem").splitlines()
                if "(ERROR)" in line]
    assert findings == [URI_FINDING.format(uri)]
    text = " ".join((REPO / "docs" / "library.md").read_text().split())
    assert "pkix.invalid_uri_syntax" in text and uri.split("/")[0].rstrip(":") in text
    for example in ("spiffe://example.org/billing", "urn:example:device:42", "https://intranet/"):
        assert example in text


def test_a_web_url_lints_clean(tmp_path):
    """The finding is the linter's web-URL rule, not certkit's encoding: an https URL with a dotted host passes."""
    CA.create("Lint CA").issue_client("web", uris=["https://api.example.org/x"]).write(tmp_path / "c")
    assert pkilint_errors(tmp_path / "c" / "cert.pem") == ""
