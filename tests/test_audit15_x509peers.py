"""Round fifteen, x509peers: what real peers do with what certkit signs, against what certkit says of it.

1. An RSA key of more than 3072 bits whose public exponent is longer than 64 bits: OpenSSL ("bad e value") and
   Java (RSAKeyFactory) check no signature it makes, GnuTLS does. certkit signed such a key through the library's
   ``key=`` (a certificate whose handshake every OpenSSL-based client refuses and Java cannot even read, while
   certkit verify said VALID and inspect "usable for TLS server authentication"); sign-csr refused its CSR as
   "altered after it was signed, or damaged" and inspect called the CSR's signature "INVALID (tampered or
   damaged)", though nothing was altered; ``CA.create(key=...)`` called the root it made "an intermediate CA
   (issued by itself)"; and certkit verify said of a chain under a CA with such a key that the CA file "holds no
   root CA certificate (a self-signed one)". Now the key is refused where certkit would sign it, with its reason,
   and verify, inspect and serve say why OpenSSL and Java refuse what holds or signs with it.
2. probe judged a server's certificate by OpenSSL's chain verification alone: with certkit verify's reason
   listed under it (the leaf of 1, served), it still said "valid ... ? yes" and exited 0.
3. init-ca of an Ed25519 root (or of any CA under one) said nothing of what its first leaf is told: browsers and
   cryptography's verifier refuse every certificate under it. It now prints that note (``notes`` in --json).
4. Renewing a certificate of no kind certkit issues said "is a unknown certificate" (now "an unknown").
"""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from test_audit14_x509peers import _gnutls_client, _python_handshake

from conftest import (
    PASSPHRASE,
    certkit_env,
    free_port,
    openssl,
    require,
    run_certkit,
    serve_refused_at_start,
    wait_listening,
    wait_or_kill,
)

NOW = dt.datetime.now(dt.UTC)
LONG_E = "66-bit public exponent"


def _long_exponent_key(bits: int) -> rsa.RSAPrivateKey:
    """An RSA key of ``bits`` whose public exponent has 66 bits (2^65 + 1 or the next that fits)."""
    numbers = rsa.generate_private_key(65537, bits).private_numbers()
    p, q = numbers.p, numbers.q
    phi = (p - 1) * (q - 1)
    e = 2**65 + 1
    while math.gcd(e, phi) != 1:
        e += 2
    d = pow(e, -1, phi)
    return rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p),
                                 rsa.RSAPublicNumbers(e, p * q)).private_key()


@pytest.fixture(scope="module")
def keys() -> dict[int, rsa.RSAPrivateKey]:
    """4096 bits: over OpenSSL's and Java's limit; 3072: the largest modulus they take such an exponent with."""
    return {bits: _long_exponent_key(bits) for bits in (4096, 3072)}


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(thing) -> bytes:
    if isinstance(thing, x509.Certificate | x509.CertificateSigningRequest):
        return thing.public_bytes(serialization.Encoding.PEM)
    return thing.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())


def _ca(key, cn: str) -> x509.Certificate:
    return (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - dt.timedelta(minutes=5))
            .not_valid_after(NOW + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(True, None), True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256()))


def _folder(tmp_path: Path, stem: str, ca_key, ca: x509.Certificate, key) -> Path:
    """A localhost server bundle (cert.pem, privkey.pem, ca.pem) for ``key``, signed by ``ca_key``."""
    cert = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(minutes=5)).not_valid_after(NOW + dt.timedelta(days=90))
            .add_extension(x509.BasicConstraints(False, None), True)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .sign(ca_key, hashes.SHA256()))
    folder = tmp_path / stem
    folder.mkdir()
    (folder / "cert.pem").write_bytes(_pem(cert))
    (folder / "privkey.pem").write_bytes(_pem(key))
    (folder / "privkey.pem").chmod(0o600)
    (folder / "ca.pem").write_bytes(_pem(ca))
    return folder


JAVA_READER = """
import java.io.FileInputStream;
import java.security.cert.CertificateFactory;

public class ReadCert {
    public static void main(String[] files) throws Exception {
        for (String file : files) {
            try (FileInputStream in = new FileInputStream(file)) {
                CertificateFactory.getInstance("X.509").generateCertificate(in);
                System.out.println(file + ": READ");
            } catch (Exception e) {
                System.out.println(file + ": REFUSED " + e);
            }
        }
    }
}
"""


def _java_reads(tmp_path: Path, *certs: Path) -> list[str]:
    """What Java's X.509 CertificateFactory says of each certificate file (the JDK's own, run from source)."""
    source = tmp_path / "ReadCert.java"
    source.write_text(JAVA_READER)
    ran = subprocess.run([require("java"), source, *certs], capture_output=True, text=True, timeout=180)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return ran.stdout.splitlines()


def _env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "home").mkdir(exist_ok=True)
    return certkit_env(HOME=str(tmp_path / "home"), CERTKIT_CA_DIR=str(tmp_path / "ca"),
                       CERTKIT_CA_PASSPHRASE=PASSPHRASE)


def _verify(cert: Path, ca: Path, tmp_path: Path) -> tuple[int, dict]:
    proc = run_certkit("verify", cert, "--ca-file", ca, "--purpose", "server", "--name", "localhost", "--json",
                       env=_env(tmp_path))
    return proc.returncode, json.loads(proc.stdout)


def _inspect(path: Path) -> dict:
    return json.loads(run_certkit("inspect", path, "--json", check=True).stdout)["items"][0]


# --- 1. an RSA exponent OpenSSL and Java refuse beside a large modulus --------------------------------------------
def test_sign_csr_refuses_such_a_key_by_its_exponent_not_as_an_altered_request(tmp_path, keys):
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Exponent Test", env=env, check=True)
    for bits, key in keys.items():
        csr = (x509.CertificateSigningRequestBuilder().subject_name(_name("localhost"))
               .sign(key, hashes.SHA256()))
        (tmp_path / f"{bits}.csr").write_bytes(_pem(csr))
    # OpenSSL cannot check the 4096-bit request's own signature; the 3072-bit one it checks.
    assert b"verify failure" in openssl("req", "-verify", "-noout", "-in", tmp_path / "4096.csr").stderr
    assert b"verify OK" in openssl("req", "-verify", "-noout", "-in", tmp_path / "3072.csr").stderr
    proc = run_certkit("sign-csr", tmp_path / "4096.csr", "--server", "--out", tmp_path / "big", env=env)
    assert proc.returncode == 1 and proc.stderr.startswith("Error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert LONG_E in proc.stderr and "4096-bit modulus" in proc.stderr and "altered" not in proc.stderr, proc.stderr
    assert not (tmp_path / "big").exists()
    said = _inspect(tmp_path / "4096.csr")
    assert said["signature_valid"] is None and LONG_E in said["signature_unchecked"], said
    assert "INVALID" not in run_certkit("inspect", tmp_path / "4096.csr", check=True).stdout
    # At 3072 bits OpenSSL takes the exponent: certkit signs it, and a handshake with it completes.
    run_certkit("sign-csr", tmp_path / "3072.csr", "--server", "--out", tmp_path / "ok", env=env, check=True)
    (tmp_path / "ok" / "privkey.pem").write_bytes(_pem(keys[3072]))
    assert _python_handshake(tmp_path / "ok", tmp_path / "ok" / "ca.pem") is None
    assert _inspect(tmp_path / "3072.csr")["signature_valid"] is True


def test_the_library_refuses_such_a_key_wherever_it_takes_one(keys):
    from certkit import CA
    from certkit.errors import CertkitError

    key = keys[4096]
    ca = CA.create("Library Test")
    # A certificate of the key, as an earlier certkit's issue_server(key=...) made it: not renewed either.
    issued = ca.issue_server("localhost").cert
    old = x509.CertificateBuilder(issuer_name=issued.issuer, subject_name=issued.subject, public_key=key.public_key(),
                                  serial_number=x509.random_serial_number(),
                                  not_valid_before=issued.not_valid_before_utc,
                                  not_valid_after=issued.not_valid_after_utc,
                                  extensions=list(issued.extensions)).sign(ca.key, hashes.SHA256())
    for make in (lambda: CA.create("Own Key", key=key), lambda: ca.issue_server("localhost", key=key),
                 lambda: ca.issue_client("alice", key=key), lambda: ca.issue_peer("node1.example.com", key=key),
                 lambda: ca.renew(old), lambda: ca.renew(old, key=key)):
        with pytest.raises(CertkitError) as refused:
            make()
        assert LONG_E in str(refused.value) and "intermediate" not in str(refused.value), refused.value
    ca.issue_server("localhost", key=keys[3072])  # the boundary OpenSSL and Java keep


def test_a_leaf_with_such_a_key_is_not_valid_as_openssl_and_java_refuse_it(tmp_path, keys):
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _ca(root_key, "Plain Root")
    leaf = _folder(tmp_path, "leaf", root_key, root, keys[4096])
    ca = leaf / "ca.pem"
    # The chain is sound (the root signed it): openssl verify takes it ...
    assert openssl("verify", "-purpose", "sslserver", "-CAfile", ca, leaf / "cert.pem").returncode == 0
    # ... but OpenSSL-based clients refuse the handshake signature its key makes, Java cannot read the
    # certificate, and GnuTLS completes the handshake.
    assert "BAD_SIGNATURE" in (_python_handshake(leaf, ca) or "").upper()
    assert "Handshake was completed" in _gnutls_client(leaf, ca)
    (said,) = _java_reads(tmp_path, leaf / "cert.pem")
    assert "REFUSED" in said and "no longer than 64 bits" in said, said
    code, verdict = _verify(leaf / "cert.pem", ca, tmp_path)
    assert code == 1 and not verdict["valid"], verdict
    assert any(LONG_E in r and "bad e value" in r and "Java" in r for r in verdict["reasons"]), verdict
    assert _inspect(leaf / "cert.pem")["usable_for"].startswith("nothing"), _inspect(leaf / "cert.pem")
    # serve, which refuses a certificate no client takes, refuses it at start.
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Serve Test", env=env, check=True)
    err = serve_refused_at_start(leaf, env, "a certificate OpenSSL clients refuse")
    assert LONG_E in err, err


def test_a_chain_under_a_ca_with_such_a_key_is_said_as_openssl_and_java_refuse_it(tmp_path, keys):
    root_key = keys[4096]
    root = _ca(root_key, "Long Exponent Root")
    leaf = _folder(tmp_path, "leaf", root_key, root, ec.generate_private_key(ec.SECP256R1()))
    ca = leaf / "ca.pem"
    theirs = openssl("verify", "-purpose", "sslserver", "-CAfile", ca, leaf / "cert.pem")
    assert theirs.returncode != 0 and b"bad e value" in theirs.stdout + theirs.stderr
    gnutls = subprocess.run([require("certtool"), "--verify", "--load-ca-certificate", ca, "--infile",
                             leaf / "cert.pem"], capture_output=True, text=True, timeout=60)
    assert "The certificate is trusted" in gnutls.stdout, gnutls.stdout + gnutls.stderr
    said = _java_reads(tmp_path, ca)
    assert "REFUSED" in said[0] and "no longer than 64 bits" in said[0], said
    code, verdict = _verify(leaf / "cert.pem", ca, tmp_path)
    assert code == 1 and not verdict["valid"], verdict
    (reason,) = verdict["reasons"]
    assert "cannot check its signature by CN=Long Exponent Root" in reason and LONG_E in reason, reason
    assert "GnuTLS takes them" in reason and "does not implement" not in reason, reason
    assert "no root" not in json.dumps(verdict), verdict
    described = _inspect(ca)
    assert described["self_signed"] is True, described
    assert described["usable_for"].startswith("nothing with OpenSSL-based peers") and LONG_E in described["usable_for"]


def test_probe_says_no_of_a_server_certificate_certkit_verify_refuses(tmp_path, keys):
    """probe said "valid ... ? yes" and exited 0 while listing certkit verify's reason beneath (OpenSSL had
    verified the chain, and its verdict alone decided): of the leaf above, whose handshake signature every
    OpenSSL client refuses."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _folder(tmp_path, "leaf", root_key, _ca(root_key, "Plain Root"), keys[4096])
    port = free_port()
    server = subprocess.Popen([require("openssl"), "s_server", "-accept", f"127.0.0.1:{port}", "-www", "-cert",
                               leaf / "cert.pem", "-key", leaf / "privkey.pem"], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, server)
        proc = run_certkit("probe", f"https://localhost:{port}/", "--ca-file", leaf / "ca.pem", env=_env(tmp_path))
        assert _python_handshake(leaf, leaf / "ca.pem") is not None  # what an OpenSSL client makes of it
    finally:
        server.kill()
        wait_or_kill(server)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Is it a valid TLS server certificate for localhost? NO" in proc.stdout, proc.stdout
    assert proc.stderr.startswith("Error: ") and LONG_E in proc.stderr, proc.stderr


# --- 3. an Ed25519 CA is said to be one when it is made, not at its first leaf ---------------------------------
def _refused_by_cryptography(leaf: Path, root: Path) -> str | None:
    """cryptography's web-PKI verifier on a localhost server leaf under ``root``: None, or its refusal."""
    from cryptography.x509.verification import DNSName, PolicyBuilder, Store, VerificationError

    verifier = PolicyBuilder().store(Store(x509.load_pem_x509_certificates(root.read_bytes()))) \
        .build_server_verifier(DNSName("localhost"))
    try:
        verifier.verify(x509.load_pem_x509_certificate(leaf.read_bytes()), [])
        return None
    except VerificationError as exc:
        return str(exc)


def test_init_ca_notes_an_ed25519_ca_as_its_leaves_are_noted(tmp_path):
    """init-ca --key-type ed25519 said nothing; only the first certificate it issued carried the note that
    browsers and cryptography's verifier refuse every certificate under it (and so the CA's intermediates)."""
    env = _env(tmp_path)
    ed = ["--ca-dir", tmp_path / "ed"]
    made = run_certkit("init-ca", *ed, "--key-type", "ed25519", "--name", "Ed Root", env=env, check=True)
    below = run_certkit("init-ca", "--ca-dir", tmp_path / "below", "--parent-ca-dir", tmp_path / "ed", "--name",
                        "Below Ed", "--json", env={**env, "CERTKIT_PARENT_CA_PASSPHRASE": PASSPHRASE}, check=True)
    plain = run_certkit("init-ca", "--ca-dir", tmp_path / "plain", "--name", "Plain", "--json", env=env, check=True)
    leaf = run_certkit("issue-server", "localhost", *ed, "--out", tmp_path / "leaf", env=env, check=True)
    # The peer the note names: cryptography's verifier refuses the leaf for the Ed25519 key above it.
    assert "Ed25519" in (_refused_by_cryptography(tmp_path / "leaf" / "cert.pem", tmp_path / "ed" / "ca.pem") or "")
    (said,) = [line for line in leaf.stdout.splitlines() if "has an Ed25519 key" in line]
    note = said.split("note", 1)[1].strip()
    assert f"  note         {note}" in made.stdout, made.stdout
    assert json.loads(below.stdout)["notes"] == [note], below.stdout
    assert json.loads(plain.stdout)["notes"] == [], plain.stdout


def test_renewing_a_certificate_of_no_known_kind_is_refused_in_plain_words():
    """``ca.renew`` of a certificate without a TLS extendedKeyUsage said "is a unknown certificate"."""
    from certkit import CA
    from certkit.errors import CannotRenew

    ca = CA.create("Words Test")
    issued = ca.issue_server("localhost").cert
    kept = [e for e in issued.extensions if not isinstance(e.value, x509.ExtendedKeyUsage)]
    bare = x509.CertificateBuilder(issuer_name=issued.issuer, subject_name=issued.subject,
                                   public_key=issued.public_key(), serial_number=x509.random_serial_number(),
                                   not_valid_before=issued.not_valid_before_utc,
                                   not_valid_after=issued.not_valid_after_utc, extensions=kept)
    bare = bare.sign(ca.key, hashes.SHA256())
    with pytest.raises(CannotRenew, match="is an unknown certificate; only server, client and peer"):
        ca.renew(bare)
