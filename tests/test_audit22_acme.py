"""The ACME server, audit round twenty-two (acme):

1. a client's renewal that changed its key's size or curve (``lego renew --key-type ec384`` after an ec256
   certificate, ``certbot renew --rsa-key-size 3072`` after an RSA-2048 one) was recorded as a stranger to
   the certificate it replaced: ``certkit list`` showed the replaced one plain ``valid`` and
   ``list --expiring`` listed it as due, though its client held it no more (a TLS server holds one
   certificate of each algorithm: the new ECDSA one replaced the old). Renewals are now matched by the
   key's algorithm (RSA, ECDSA, Ed25519), not its size or curve; an RSA and an ECDSA certificate for one
   name are still two;
2. an ACME client was told certkit's library or command-line advice for a name or a CSR the rules refuse:
   an identifier "alice@acme.test" got "...is a client certificate: 'certkit issue-client NAME --email
   alice@acme.test'", "a,b" got "give each on its own (as arguments of their own; in a manifest's names...)",
   a CSR naming no host "give the names as extra_names=[...]", a CSR whose common name is an email address
   "sign it as one: sign_csr(csr, 'client')" (Python calls and commands no ACME client can make). The
   advice is now in an ACME client's words (certkit.errors.acme_text), wherever the server says such a refusal;
   and a CSR with a critical extension not granted was told "...the critical extension 1.2.3.4, which is not
   granted here, which is not allowed: ..." (one sentence, two "which").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from test_audit5_acme import _account, _obtain, _serial

from acme_client import HTTP01Responder, b64
from acme_helpers import lego, serial_of, serving, split_chain
from conftest import require, run_certkit

NAMES = ("k1.acme.test", "k2.acme.test", "k3.acme.test")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    yield from serving(tmp_path_factory.mktemp("acme22"), NAMES)


def _rows(env: dict) -> dict[str, dict]:
    rows = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]
    return {row["serial"]: row for row in rows}


def _expiring(env: dict) -> set[str]:
    rows = json.loads(run_certkit("list", "--expiring", "400d", "--json", env=env, check=True).stdout)
    return {row["serial"] for row in rows["certificates"]}


# --- 1. a renewal that changed the key's size or curve is a renewal ----------------------------------
def test_lego_renewing_with_another_curve_is_recorded_as_a_renewal(setup, tmp_path: Path) -> None:
    require("lego")
    path, certs = tmp_path / "lego", tmp_path / "lego" / "certificates"
    common = ("--email", "ops@acme.test", "-d", "k1.acme.test", "--http", "--http.port", f"127.0.0.1:{setup.http_port}")
    got = lego(path, setup.server.directory, *common, "--key-type", "ec256", "run", root=setup.root)
    assert got.returncode == 0, got.stderr
    first = serial_of(split_chain(certs / "k1.acme.test.crt", tmp_path)[0])
    renewed = lego(path, setup.server.directory, *common, "--key-type", "ec384", "renew", "--days", "9999",
                   "--no-random-sleep", root=setup.root)
    assert renewed.returncode == 0, renewed.stderr
    second = serial_of(split_chain(certs / "k1.acme.test.crt", tmp_path)[0])
    assert second != first
    rows = _rows(setup.env)
    assert rows[first]["renewed_by"] == second and rows[second]["renewed_from"] == first, (rows[first], rows[second])
    due = _expiring(setup.env)
    assert first not in due and second in due  # what lego holds is the one due, not the one it replaced


def test_an_rsa_renewal_of_another_size_renews_and_an_ecdsa_certificate_beside_it_does_not(setup) -> None:
    with HTTP01Responder(setup.http_port) as responder:
        client = _account(setup.server.directory, setup.root)
        first = _serial(_obtain(client, responder, rsa.generate_private_key(65537, 2048), "k2.acme.test"))
        beside = _serial(_obtain(client, responder, ec.generate_private_key(ec.SECP256R1()), "k2.acme.test"))
        second = _serial(_obtain(client, responder, rsa.generate_private_key(65537, 3072), "k2.acme.test"))
        third = _serial(_obtain(client, responder, ec.generate_private_key(ec.SECP521R1()), "k2.acme.test"))
    rows = _rows(setup.env)
    assert rows[second]["renewed_from"] == first and rows[first]["renewed_by"] == second
    assert rows[beside]["renewed_from"] is None  # an ECDSA certificate beside an RSA one: a first one
    assert rows[third]["renewed_from"] == beside  # P-256 to P-521: the ECDSA certificate renewed
    due = _expiring(setup.env)
    assert first not in due and beside not in due and {second, third} <= due


# --- 2. an ACME client is told what it can do, not certkit's library calls or commands ---------------
# What the library's and the command line's advice say; none of it is anything an ACME client can do.
NOT_ACME = ("issue_client(", "certkit issue-client", "--email", "extra_names", "sign_csr(", "--client",
            "item of a list", "arguments of their own", "manifest", "arguments after the CSR file")


def _csr(names: list[str], common_name: str | None = None) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def _said_for_acme(detail: str) -> None:
    assert not [words for words in NOT_ACME if words in detail], detail


@pytest.mark.parametrize("value, advice", [
    ("alice@acme.test", "which an ACME server does not issue"),
    ("k3.acme.test,www.k3.acme.test", "each as an identifier"),
])
def test_a_refused_identifier_is_told_in_an_acme_clients_words(setup, value: str, advice: str) -> None:
    client = _account(setup.server.directory, setup.root)
    answer = client.post(client.directory["newOrder"], {"identifiers": [{"type": "dns", "value": value}]},
                         check=False)
    problem = answer.json()
    assert answer.status_code == 400 and problem["type"].endswith(":rejectedIdentifier"), problem
    assert advice in problem["detail"], problem
    _said_for_acme(problem["detail"])
    assert problem["subproblems"][0]["detail"] == problem["detail"]


@pytest.mark.parametrize("names, common_name, advice", [
    ([], None, "make a CSR naming the order's identifiers in its subjectAltName"),
    (["k3.acme.test"], "alice@acme.test", "an ACME server issues server certificates only"),
    (["k3.acme.test,www.k3.acme.test"], None, "each as an identifier (or subjectAltName entry) of its own"),
])
def test_a_refused_csr_is_told_in_an_acme_clients_words(setup, names, common_name, advice) -> None:
    client = _account(setup.server.directory, setup.root)
    with HTTP01Responder(setup.http_port) as responder:
        url, order = client.new_order("k3.acme.test")
        client.authorize(order, responder)
        order = client.wait(url)
    assert order["status"] == "ready", order
    answer = client.post(order["finalize"], {"csr": b64(_csr(names, common_name))}, check=False)
    problem = answer.json()
    assert answer.status_code == 400 and problem["type"].endswith(":badCSR"), problem
    assert advice in problem["detail"], problem
    _said_for_acme(problem["detail"])
    assert client.get(url)["status"] == "ready"  # nothing was issued: a CSR that is right may follow


def test_a_critical_extension_not_granted_is_said_in_one_clause(setup) -> None:
    client = _account(setup.server.directory, setup.root)
    with HTTP01Responder(setup.http_port) as responder:
        url, order = client.new_order("k3.acme.test")
        client.authorize(order, responder)
        order = client.wait(url)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("k3.acme.test")]), critical=False)
           .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4"), b"\x05\x00"), critical=True)
           .sign(key, hashes.SHA256()).public_bytes(Encoding.DER))
    problem = client.post(order["finalize"], {"csr": b64(csr)}, check=False).json()
    assert problem["type"].endswith(":badCSR"), problem
    assert problem["detail"].startswith("The CSR asks for the critical extension 1.2.3.4 (one not granted here), "
                                        "which is not allowed"), problem
    assert problem["detail"].count("which") == 1, problem


def test_the_command_line_and_the_library_keep_their_own_words(setup, tmp_path: Path) -> None:
    from certkit.csr import load_csr
    from certkit.csr_plan import plan
    from certkit.errors import InvalidCSR, InvalidName
    from certkit.names import parse_host

    with pytest.raises(InvalidName) as named:
        parse_host("alice@acme.test")
    assert "ca.issue_client(NAME, emails=['alice@acme.test'])" in str(named.value)
    with pytest.raises(InvalidCSR) as csr:
        plan(load_csr(_csr([]), source="the CSR"), "server")
    assert "extra_names=[...]" in str(csr.value)
    path = tmp_path / "empty.csr"
    path.write_bytes(_csr([]))
    ran = run_certkit("sign-csr", path, "--server", "--out", tmp_path / "out", env=setup.env)
    assert ran.returncode == 1 and "give the names as arguments after the CSR file" in ran.stderr, ran.stderr
    assert not (tmp_path / "out").exists()
