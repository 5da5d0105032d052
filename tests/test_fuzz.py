"""Fuzzing the parsers certkit exposes: inspect's and verify's loaders (certificates, CSRs,
keys, bundles; PEM and DER) and sign-csr's CSR loader, on truncated, bit-flipped, spliced
and random input.

Every outcome is a result or one CertkitError with a one-line message: never another
exception, never a hang. Inputs that once broke something live in tests/fuzz_corpus/
and are replayed on every run, through the library and through the real CLI.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certkit.ca import CA
from certkit.csr import load_csr
from certkit.csr_plan import plan
from certkit.errors import CertkitError
from certkit.inspect import inspect_path
from certkit.store import CADirectory
from certkit.verify import verify_path

from conftest import PASSPHRASE, REPO, certkit_env, run_certkit

CORPUS = REPO / "tests" / "fuzz_corpus"

_CA = CA.create("certkit fuzz CA")
_SERVER = _CA.issue_server(["fuzz.example.com", "192.0.2.1"])
_CLIENT = _CA.issue_client("fuzz-client", emails=["f@example.com"])
_WORK = Path(tempfile.mkdtemp(prefix="certkit-fuzz-"))
_CA_FILE = _WORK / "ca.pem"
_CA_FILE.write_bytes(_CA.cert_pem)
_CA_DIR = _WORK / "ca"
CADirectory(_CA_DIR).save_new(_CA, PASSPHRASE.encode())


def _seeds() -> list[bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = _SERVER.private_key
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "csr.example.com")]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("csr.example.com")]), critical=False)
           .sign(key, hashes.SHA256()))
    return [
        _SERVER.cert_pem,
        _SERVER.fullchain_pem + _SERVER.private_key_pem,
        _CLIENT.cert.public_bytes(serialization.Encoding.DER),
        csr.public_bytes(serialization.Encoding.PEM),
        csr.public_bytes(serialization.Encoding.DER),
        _CA.cert_pem,
    ]


SEEDS = _seeds()


def _mutate(seed: bytes, op: str, where: int, value: int, size: int) -> bytes:
    if not seed:
        return seed
    i = where % len(seed)
    if op == "flip":
        return seed[:i] + bytes([seed[i] ^ (1 << (value % 8))]) + seed[i + 1:]
    if op == "truncate":
        return seed[:i]
    if op == "set":
        return seed[:i] + bytes([value % 256]) + seed[i + 1:]
    if op == "duplicate":
        return seed[:i] + seed[i:i + size] * 3 + seed[i + size:]
    return seed[:i] + seed[i + size:]  # delete


def check_file(data: bytes) -> None:
    """Both loaders on ``data``: a result or one clean CertkitError line."""
    path = _WORK / "input.bin"
    path.write_bytes(data)
    for call in (lambda: inspect_path(path),
                 lambda: verify_path(path, purpose="server", name="fuzz.example.com", ca_file=_CA_FILE),
                 lambda: verify_path(path, purpose="client", ca_file=_CA_FILE),
                 lambda: [plan(load_csr(data), kind) for kind in ("server", "client")]):
        try:
            call()
        except CertkitError as exc:
            message = str(exc)
            assert message and "\n" not in message.strip() and "Traceback" not in message


@settings(max_examples=400, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(SEEDS), op=st.sampled_from(["flip", "truncate", "set", "duplicate", "delete"]),
       where=st.integers(min_value=0, max_value=10_000), value=st.integers(min_value=0, max_value=255),
       size=st.integers(min_value=1, max_value=64))
def test_mutated_inputs(seed: bytes, op: str, where: int, value: int, size: int) -> None:
    check_file(_mutate(seed, op, where, value, size))


@settings(max_examples=200, deadline=2000)
@given(st.binary(max_size=2048))
def test_random_bytes(data: bytes) -> None:
    check_file(data)


@settings(max_examples=100, deadline=2000)
@given(st.lists(st.sampled_from(SEEDS + [b"-----BEGIN CERTIFICATE-----\n", b"-----END CERTIFICATE-----\n",
                                         b"\x00", b"\n", b"-----BEGIN PRIVATE KEY-----\nAAAA\n"]), max_size=6))
def test_spliced_pem(parts: list[bytes]) -> None:
    check_file(b"".join(parts))


def test_huge_input_is_refused_quickly() -> None:
    check_file(b"-----BEGIN CERTIFICATE-----\n" + b"A" * 20_000_000 + b"\n-----END CERTIFICATE-----\n")
    check_file(b"\x30\x84\x7f\xff\xff\xff" + b"\x00" * 1000)  # DER claiming a 2 GiB body


@pytest.mark.parametrize("case", sorted(CORPUS.glob("*")), ids=lambda p: p.name)
def test_corpus_through_the_cli(case: Path, tmp_path: Path) -> None:
    env = certkit_env(CERTKIT_CA_DIR=str(_CA_DIR), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    for args in (["inspect", case], ["verify", case, "--purpose", "server", "--ca-file", _CA_FILE],
                 ["sign-csr", case, "--server", "--out", tmp_path / "out"]):
        proc = run_certkit(*args, cwd=tmp_path, env=env)
        assert proc.returncode in (0, 1), proc.stderr
        assert "Traceback" not in proc.stderr
        # Only one-line messages: a library warning too is "Warning: ...", once.
        lines = proc.stderr.splitlines()
        assert all(ln.startswith(("Error: ", "Warning: ")) for ln in lines), proc.stderr
        assert len(lines) == len(set(lines)), proc.stderr
        if proc.returncode == 1:
            assert sum(ln.startswith("Error: ") for ln in lines) == 1, proc.stderr
