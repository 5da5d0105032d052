"""Round nineteen, area show: what inspect, verify, probe and serve say about certificates made outside
certkit, compared with what real peers (openssl verify -x509_strict, openssl s_server) do with them."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_probe import openssl_server

from conftest import free_port, openssl, run_certkit


# --- certificates made by openssl, as other tools make them -----------------------------------------
def _openssl_ca(folder: Path, *constraints: str) -> Path:
    """A root CA made by ``openssl req -x509`` with the nameConstraints given as openssl.cnf writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.cnf").write_text(
        "[req]\ndistinguished_name = dn\nx509_extensions = v3\nprompt = no\n[dn]\nCN = Lab NC Root\n"
        "[v3]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier = hash\n"
        + (f"nameConstraints = critical,{','.join(constraints)}\n" if constraints else ""))
    made = openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                   "-keyout", folder / "ca.key", "-out", folder / "ca.pem", "-days", "30", "-config", folder / "ca.cnf")
    assert made.returncode == 0, made.stderr
    return folder / "ca.pem"


def _openssl_leaf(ca: Path, out: Path, san: str, eku: str = "serverAuth,clientAuth") -> Path:
    """A leaf signed by ``openssl x509 -req`` with the subjectAltName written as openssl.cnf writes it."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "leaf.ext").write_text(
        "basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
        f"extendedKeyUsage = {eku}\nsubjectAltName = {san}\nauthorityKeyIdentifier = keyid\n"
        "subjectKeyIdentifier = hash\n")
    made = openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                   "-keyout", out / "privkey.pem", "-out", out / "leaf.csr", "-subj", "/CN=leaf")
    assert made.returncode == 0, made.stderr
    made = openssl("x509", "-req", "-in", out / "leaf.csr", "-CA", ca, "-CAkey", ca.with_name("ca.key"),
                   "-set_serial", "0x" + out.name.encode().hex()[:30], "-out", out / "cert.pem", "-days", "10",
                   "-extfile", out / "leaf.ext")
    assert made.returncode == 0, made.stderr
    return out / "cert.pem"


def _openssl_verdict(ca: Path, leaf: Path, purpose: str) -> bool:
    proc = openssl("verify", "-x509_strict", "-purpose", f"ssl{purpose}", "-CAfile", ca, leaf)
    return proc.returncode == 0


# (constraints of the CA, subjectAltName of the leaf, what OpenSSL says)
_OTHER_TOOLS_NAMES = [
    (("permitted;DNS:.example.com",), "DNS:www.example.com", True),  # a leading dot: the subdomains
    (("permitted;DNS:.example.com",), "DNS:example.com", False),  # ... only, not the domain itself
    (("excluded;DNS:.example.com",), "DNS:example.com", True),
    (("excluded;DNS:.example.com",), "DNS:www.example.com", False),
    (("permitted;DNS:example.com",), "DNS:foo_bar.example.com", True),  # '_' under constraints
    (("permitted;DNS:example.com",), "DNS:www.example.com.", False),  # a final dot: outside, as written
    ((), "DNS:_svc.example.com", True),  # '_' with no constraints at all
    ((), "DNS:*.foo_bar.example.com", True),
]


@pytest.mark.parametrize(("constraints", "san", "accepted"), _OTHER_TOOLS_NAMES)
@pytest.mark.parametrize("purpose", ["server", "client"])
def test_verify_follows_openssl_on_names_other_tools_write(tmp_path: Path, constraints, san: str, accepted: bool,
                                                           purpose: str) -> None:
    """A CA made by openssl with ``permitted;DNS:.example.com`` (how many guides write "the subdomains"),
    an empty DNS constraint, a leaf naming ``foo_bar.example.com``: cryptography's verifier calls them
    malformed and refused them, so verify said NOT VALID of chains OpenSSL, Python's ssl and Go accept.
    certkit now judges these itself, as OpenSSL reads them (a leading dot: below the domain only)."""
    ca = _openssl_ca(tmp_path / "ca", *constraints)
    leaf = _openssl_leaf(ca, tmp_path / "leaf", san)
    assert _openssl_verdict(ca, leaf, purpose) is accepted
    proc = run_certkit("verify", leaf, "--purpose", purpose, "--ca-file", ca, "--json")
    verdict = json.loads(proc.stdout)
    assert verdict["valid"] is accepted, verdict
    assert proc.returncode == (0 if accepted else 1)
    if accepted and (constraints or purpose == "server"):  # no constraints: the client verifier reads no name
        assert any("cryptography's verifier cannot judge this certificate" in n for n in verdict["notes"]), verdict
    elif not accepted:
        assert verdict["reasons"] == [f"{san.removeprefix('DNS:')} is outside the name constraints of "
                                      "CN=Lab NC Root"], verdict


def test_an_empty_dns_constraint_permits_every_name(tmp_path: Path) -> None:
    """``permitted;DNS:`` (an empty subtree, which openssl.cnf cannot write) is every name to OpenSSL and Go."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from certkit.verify import verify_certificate

    now, root_key, key = dt.datetime.now(dt.UTC), ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Empty Subtree Root")])

    def made(subject, public, extensions):
        builder = x509.CertificateBuilder().subject_name(subject).issuer_name(name).public_key(public) \
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1)) \
            .not_valid_after(now + dt.timedelta(days=9))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(root_key, hashes.SHA256())

    root = made(name, root_key.public_key(), [
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (x509.KeyUsage(False, False, False, False, False, True, True, False, False), True),
        (x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), False),
        (x509.NameConstraints([x509.DNSName("")], None), True)])
    leaf = made(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]), key.public_key(), [
        (x509.SubjectAlternativeName([x509.DNSName("www.example.org")]), False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False)])
    (tmp_path / "root.pem").write_bytes(root.public_bytes(encoding=_pem()))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(encoding=_pem()))
    assert _openssl_verdict(tmp_path / "root.pem", tmp_path / "leaf.pem", "server")
    verdict = verify_certificate(leaf, purpose="server", roots=[root], name="www.example.org")
    assert verdict.valid and verdict.reasons == [], verdict


def _pem():
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.PEM


def test_probe_of_a_server_under_a_leading_dot_constraint_says_yes(tmp_path: Path) -> None:
    """openssl s_server presenting a certificate of such a CA: probe said 'valid ... ? NO' (and exit 1)
    though it also said 'chain verified' and every OpenSSL client connects."""
    ca = _openssl_ca(tmp_path / "ca", "permitted;DNS:.example.com", "permitted;IP:127.0.0.0/255.0.0.0")
    leaf = _openssl_leaf(ca, tmp_path / "srv", "DNS:www.example.com,IP:127.0.0.1", eku="serverAuth")
    with openssl_server("-cert", leaf, "-key", leaf.with_name("privkey.pem")) as port:
        proc = run_certkit("probe", f"https://127.0.0.1:{port}/", "--ca-file", ca, "--json")
    server = json.loads(proc.stdout)["server_certificate"]
    assert server["verified"] is True and server["reasons"] == [], server
    assert server["ok"] is True, server


# --- probe: a name with several addresses ------------------------------------------------------------
@contextmanager
def _s_server(host: str, port: int, cert: Path, *args: object) -> Iterator[None]:
    """``openssl s_server -www`` on ``host:port`` (two of them may share a port on two loopback addresses)."""
    proc = subprocess.Popen(["openssl", "s_server", "-accept", f"{host}:{port}", "-www", "-quiet", "-cert", cert,
                             "-key", cert.with_name("privkey.pem"), *map(str, args)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"openssl s_server on {host}:{port} exited ({proc.returncode})"
            try:
                socket.create_connection((host, port), timeout=5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"openssl s_server did not listen on {host}:{port}"
                time.sleep(0.05)
        yield
    finally:
        proc.kill()
        proc.wait(10)


def test_probe_keeps_to_the_address_its_first_connection_reached(tmp_path: Path, monkeypatch) -> None:
    """A name with two addresses whose resolver rotates them (round-robin DNS, BIND's cyclic order): probe
    connected twice (without, then with --cert), resolving each time, so its report joined two servers: the
    first's chain and 'asked for: no', the second's verdict on the client certificate. Every connection now
    goes to the address the first reached, which the report names (text and --json 'address')."""
    ca = _openssl_ca(tmp_path / "ca")
    first = _openssl_leaf(ca, tmp_path / "first", "DNS:multi.test", eku="serverAuth")
    second = _openssl_leaf(ca, tmp_path / "second", "DNS:multi.test", eku="serverAuth")
    alice = _openssl_leaf(ca, tmp_path / "alice", "email:alice@example.com", eku="clientAuth")
    real, calls, port = socket.getaddrinfo, [], free_port()

    def rotating(host, *args, **kwargs):
        if host != "multi.test":
            return real(host, *args, **kwargs)
        calls.append(host)
        order = ["127.0.0.2", "127.0.0.1"] if len(calls) % 2 else ["127.0.0.1", "127.0.0.2"]
        return [entry for address in order for entry in real(address, *args, **kwargs)]

    monkeypatch.setattr(socket, "getaddrinfo", rotating)
    other = _openssl_ca(tmp_path / "other")  # the second server refuses alice: a TLS alert, were she sent there
    with _s_server("127.0.0.2", port, first), _s_server("127.0.0.1", port, second, "-Verify", "1",
                                                         "-verify_return_error", "-CAfile", other):
        proc = run_certkit("probe", f"https://multi.test:{port}/", "--ca-file", ca, "--cert", alice,
                           "--key", alice.with_name("privkey.pem"), "--json")
        calls.clear()
        text = run_certkit("probe", f"https://multi.test:{port}/", "--ca-file", ca).stdout
    report = json.loads(proc.stdout)
    client = report["client_certificate"]  # the first server's: it never asks for one
    assert client["with_it"]["handshake"] == "ok" and client["with_it"]["http_status"] == 200, client["with_it"]
    assert client["requested"] is False and client["accepted"] is None, client["verdict"]
    assert client["verdict"].startswith("never sent: the server does not ask for client certificates"), client
    assert report.get("address") == "127.0.0.2", report
    assert text.splitlines()[0].startswith(f"https://multi.test:{port}/: multi.test:{port} (127.0.0.2), TLSv1.3"), text
