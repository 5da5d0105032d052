"""What sign-csr reads from a CSR file and which keys it certifies: broken RSA keys (e=1, e=3, an even
exponent, a modulus anyone can factor) refused by sign-csr and by the library's ``key=`` and
``sign_csr``; a PEM block with text around it read; a file with several CSRs refused."""

from __future__ import annotations

import hashlib
import re
import subprocess
from math import lcm
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from certkit.errors import CertkitError
from certkit.key_encryption import _tlv  # _tlv: certkit's DER tag-length writer, for hand-built CSRs
from certkit.keys import key_policy_problem
from certkit.store import CADirectory

from conftest import assert_clean_error, openssl, run_certkit

# --- CSRs no library will sign: DER written by hand, signed with raw RSA arithmetic ----------------------


def _int(i: int) -> bytes:
    return _tlv(0x02, i.to_bytes(i.bit_length() // 8 + 1, "big"))


def _seq(*parts: bytes) -> bytes:
    return _tlv(0x30, b"".join(parts))


RSA_OID, NULL = bytes.fromhex("06092a864886f70d010101"), b"\x05\x00"
SHA256_OID, SHA256_RSA_OID = bytes.fromhex("0609608648016503040201"), bytes.fromhex("06092a864886f70d01010b")


def rsa_spki(n: int, e: int) -> bytes:
    return _seq(_seq(RSA_OID, NULL), _tlv(0x03, b"\x00" + _seq(_int(n), _int(e))))


def raw_rsa_csr(cn: str, n: int, e: int, d: int) -> bytes:
    """A DER CSR for the RSA public key (n, e), signed PKCS#1 v1.5 with SHA-256 as s = m^d mod n. With e=1
    and d=1 the "signature" is the padded hash itself: no private key exists, yet it verifies."""
    spki = rsa_spki(n, e)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]).public_bytes()
    info = _seq(_int(0), subject, spki, _tlv(0xA0, b""))
    size = (n.bit_length() + 7) // 8
    digest_info = _seq(_seq(SHA256_OID, NULL), _tlv(0x04, hashlib.sha256(info).digest()))
    padded = int.from_bytes(b"\x00\x01" + b"\xff" * (size - 3 - len(digest_info)) + b"\x00" + digest_info, "big")
    return _seq(info, _seq(SHA256_RSA_OID, NULL), _tlv(0x03, b"\x00" + pow(padded, d, n).to_bytes(size, "big")))


def library_refusal(n: int, e: int) -> str | None:
    """Why cryptography will not load the RSA key (n, e) at all, or None: from version 50 it refuses e=1
    and an even e itself, so certkit can only say that, not which of its own rules the key breaks."""
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    try:
        load_der_public_key(rsa_spki(n, e))
    except ValueError as exc:
        return str(exc).rstrip(".")
    return None


def prime(bits: int) -> int:
    return int(subprocess.run(["openssl", "prime", "-generate", "-bits", str(bits)], capture_output=True,
                              check=True, timeout=120).stdout)


@pytest.fixture(scope="module")
def weak_keys() -> dict[str, tuple[int, int, int]]:
    """(n, e, d) for each broken key; d signs, so that every CSR but the even-exponent one verifies."""
    q, p, c = prime(2047), prime(1024), prime(700)
    e = 65537
    return {
        "e1": (q * prime(1025), 1, 1),
        "even-exponent": (3 * q, 65538, 1),  # no d exists: the key is refused before the signature is looked at
        "even-modulus": (2 * q, e, pow(e, -1, q - 1)),
        "factor-3": (3 * q, e, pow(e, -1, lcm(2, q - 1))),
        "square": (p * p, e, pow(e, -1, p * (p - 1))),
        "cube": (c ** 3, e, pow(e, -1, c * c * (c - 1))),
    }


REFUSALS = {
    "e1": "whose public exponent is 1, which certkit does not sign: an RSA exponent must be odd and from 65537 "
          "to 2^256-1 (CA/Browser Forum BR 6.1.6); with e=1 anyone can make signatures",
    "even-exponent": "whose public exponent is 65538, which certkit does not sign",
    "even-modulus": "whose modulus is even, which certkit does not sign: anyone can factor that modulus",
    "factor-3": "whose modulus is divisible by 3, which certkit does not sign",
    "square": "whose modulus is a perfect square",
    "cube": "whose modulus is a perfect cube",
}


def _openssl_csr(folder: Path, name: str) -> Path:
    csr = folder / f"{name}.csr"
    proc = openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                   folder / f"{name}.key", "-subj", f"/CN={name}.internal", "-out", csr)
    assert proc.returncode == 0, proc.stderr
    return csr


def _refused(proc, tmp_path: Path, ca_dir: Path, before: int, message: str, code: int = 1) -> None:
    assert_clean_error(proc, message, code=code)
    assert not (tmp_path / "out").exists()
    assert CADirectory(ca_dir).inventory.count() == before


@pytest.mark.parametrize("case", list(REFUSALS))
def test_broken_rsa_csr_refused(tmp_path, ca_env, ca_dir, weak_keys, case):
    n, e, d = weak_keys[case]
    csr = tmp_path / "weak.der"
    csr.write_bytes(raw_rsa_csr(f"{case}.internal", n, e, d))
    refusal = library_refusal(n, e)
    if case not in ("even-exponent", "even-modulus") and refusal is None:  # OpenSSL checks the others fine
        assert x509.load_der_x509_csr(csr.read_bytes()).is_signature_valid
    before = CADirectory(ca_dir).inventory.count()
    proc = run_certkit("sign-csr", csr, "--server", "--out", "out", cwd=tmp_path, env=ca_env)
    said = (f"a public key that cannot be used ({refusal})" if refusal
            else f"an rsa-{n.bit_length()} key {REFUSALS[case]}")
    _refused(proc, tmp_path, ca_dir, before, f"The CSR {csr} holds {said}")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_exponent_3_from_cryptography_refused(tmp_path, ca_env, ca_dir):
    key = rsa.generate_private_key(public_exponent=3, key_size=2048)
    csr = tmp_path / "e3.csr"
    csr.write_bytes(x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "e3.internal")])).sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM))
    before = CADirectory(ca_dir).inventory.count()
    proc = run_certkit("sign-csr", csr, "--server", "--out", "out", "--json", cwd=tmp_path, env=ca_env)
    _refused(proc, tmp_path, ca_dir, before, "holds an rsa-2048 key whose public exponent is 3, which certkit "
                                             "does not sign: an RSA exponent must be odd and from 65537")


def _factor_3_key() -> rsa.RSAPrivateKey:
    p, q, e = 3, prime(2047), 65537
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), rsa.RSAPublicNumbers(e, p * q))
    return numbers.private_key(unsafe_skip_rsa_key_validation=True)


def test_library_refuses_broken_rsa_keys(weak_keys):
    """``key=`` and ``sign_csr`` go through the same policy as sign-csr (ACME's finalize does too)."""
    from certkit import CA

    ca = CA.create("Policy CA")
    for weak, said in ((rsa.generate_private_key(3, 2048), "public exponent is 3"),
                       (_factor_3_key(), "modulus is divisible by 3")):
        with pytest.raises(CertkitError, match=f"The key given is an rsa-\\d+ key whose {said}, which certkit"):
            ca.issue_server("weak.internal", key=weak)
        with pytest.raises(CertkitError, match=said):
            ca.issue_client("alice", key=weak)
        with pytest.raises(CertkitError, match=said):
            CA.create("Weak CA", key=weak)
    n, e, d = weak_keys["e1"]
    refusal = library_refusal(n, e)
    with pytest.raises(CertkitError, match=re.escape(f"a public key that cannot be used ({refusal})") if refusal
                       else "whose public exponent is 1"):
        ca.sign_csr(raw_rsa_csr("e1.internal", n, e, d), "server")
    sound = rsa.generate_private_key(65537, 2048)
    assert key_policy_problem(sound.public_key()) is None
    assert ca.issue_server("sound.internal", key=sound).cert.public_key().public_numbers().e == 65537


def test_policy_words_for_each_flaw(weak_keys):
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    for case, (n, e, _d) in weak_keys.items():
        if library_refusal(n, e) is not None:  # no key object to judge: sign-csr says the library's reason
            continue
        assert REFUSALS[case].split(",")[0] in key_policy_problem(load_der_public_key(rsa_spki(n, e)))
    n = rsa.generate_private_key(65537, 2048).public_key().public_numbers().n  # a sound modulus
    for e, said in ((2**256 + 1, "public exponent is a 257-bit number"), (65535, "public exponent is 65535"),
                    (2**256 - 1, None)):
        problem = key_policy_problem(rsa.RSAPublicNumbers(e, n).public_key())
        assert (said in problem) if said else problem is None, problem


def test_pem_with_text_around_it_is_signed(tmp_path, ca_env, ca_dir):
    """openssl req -text writes the request in words, then the PEM block: inspect and OpenSSL read it."""
    csr = _openssl_csr(tmp_path, "a")
    proc = openssl("req", "-in", csr, "-text", "-out", tmp_path / "a-text.csr")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "a-text.csr").read_bytes()
    assert text.startswith(b"Certificate Request:\n")
    (tmp_path / "around.csr").write_bytes(b"Requested by ops, ticket 42\r\n" + text + b"\nthanks\n")
    for name in ("a-text.csr", "around.csr"):
        proc = run_certkit("sign-csr", tmp_path / name, "--server", "--out", name + ".out", cwd=tmp_path, env=ca_env)
        assert proc.returncode == 0, proc.stderr
        assert "subject   CN=a.internal" in proc.stdout
    piped = run_certkit("sign-csr", "-", "--server", "--out", "piped", cwd=tmp_path, env=ca_env, input=text.decode())
    assert piped.returncode == 0, piped.stderr
    # Text before something that is not a CSR is still named for what it is.
    (tmp_path / "key.csr").write_bytes(b"my key, as asked:\n" + (tmp_path / "a.key").read_bytes())
    before = CADirectory(ca_dir).inventory.count()
    proc = run_certkit("sign-csr", tmp_path / "key.csr", "--server", "--out", "out", cwd=tmp_path, env=ca_env)
    _refused(proc, tmp_path, ca_dir, before, "is not a certificate signing request: it is PEM "
                                             "'-----BEGIN PRIVATE KEY-----'")
    (tmp_path / "cut.csr").write_bytes(text[:text.index(b"-----END")])
    proc = run_certkit("sign-csr", tmp_path / "cut.csr", "--server", "--out", "out", cwd=tmp_path, env=ca_env)
    _refused(proc, tmp_path, ca_dir, before, "holds a damaged certificate signing request: it is truncated")


def test_several_csrs_in_one_file_refused(tmp_path, ca_env, ca_dir):
    a, b = _openssl_csr(tmp_path, "a"), _openssl_csr(tmp_path, "b")
    (tmp_path / "both.csr").write_bytes(b.read_bytes() + a.read_bytes())
    proc = openssl("req", "-in", a, "-text")
    (tmp_path / "three.csr").write_bytes(a.read_bytes() + proc.stdout + b.read_bytes())
    before = CADirectory(ca_dir).inventory.count()
    for name, count in (("both.csr", 2), ("three.csr", 3)):
        proc = run_certkit("sign-csr", tmp_path / name, "--server", "--out", "out", cwd=tmp_path, env=ca_env)
        _refused(proc, tmp_path, ca_dir, before,
                 f"The CSR {tmp_path / name} holds {count} certificate signing requests; give one per file.")
    proc = run_certkit("sign-csr", "-", "--client", "--out", "out", cwd=tmp_path, env=ca_env,
                       input=(tmp_path / "both.csr").read_text())
    _refused(proc, tmp_path, ca_dir, before, "The CSR on standard input holds 2 certificate signing requests")
