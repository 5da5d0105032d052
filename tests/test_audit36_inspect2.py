"""inspect, verify, probe and check, audit round thirty-six: inputs from other tools, against real peers.

A DER chain (``cat cert.der ca.der``, what Java's CertificateFactory and Go's x509.ParseCertificates read, and
what some appliances hand out) was "neither a PEM file nor a DER certificate, CSR or CRL (it may be truncated or
not a certificate at all)" to inspect, verify (CERT, --untrusted, --ca-file), probe --cert and --ca-file.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from test_probe import openssl_server

from conftest import assert_clean_error, new_ca, run_certkit


def _der(pem: Path, out: Path) -> bytes:
    subprocess.run(["openssl", "x509", "-in", pem, "-outform", "DER", "-out", out], check=True)
    return out.read_bytes()


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """ca/ (root), inter/ (an intermediate under it), localhost/ (a server of the intermediate), alice/ (a
    client of the root); DER chains: localhost.der (leaf, intermediate), alice.der (leaf, root), cas.der
    (intermediate, root)."""
    top = tmp_path_factory.mktemp("audit36-inspect2")
    env = new_ca(top, "Lab Root")
    run_certkit("issue-client", "alice", "--out", top / "alice", env=env, check=True)
    inter = {**env, "CERTKIT_CA_DIR": str(top / "inter"), "CERTKIT_PARENT_CA_PASSPHRASE": env["CERTKIT_CA_PASSPHRASE"]}
    run_certkit("init-ca", "--name", "Lab Inter", "--parent-ca-dir", top / "ca", env=inter, check=True)
    run_certkit("issue-server", "localhost", "127.0.0.1", "--out", top / "localhost", env=inter, check=True)
    root = _der(top / "ca" / "ca.pem", top / "root.der")
    mid = _der(top / "inter" / "ca.pem", top / "inter.der")
    (top / "localhost.der").write_bytes(_der(top / "localhost" / "cert.pem", top / "leaf.der") + mid)
    (top / "alice.der").write_bytes(_der(top / "alice" / "cert.pem", top / "alice1.der") + root)
    (top / "cas.der").write_bytes(mid + root)
    (top / "env.json").write_text(json.dumps(env))
    return top


def _env(pki: Path) -> dict:
    return json.loads((pki / "env.json").read_text())


def test_inspect_reads_a_der_chain_as_openssl_reads_each_certificate(pki):
    data = json.loads(run_certkit("inspect", pki / "localhost.der", "--json", env=_env(pki), check=True).stdout)
    subjects = [item["subject"] for item in data["items"]]
    assert subjects == ["CN=localhost", "CN=Lab Inter"], data
    for item, one in zip(data["items"], ("leaf.der", "inter.der"), strict=True):
        fingerprint = subprocess.run(["openssl", "x509", "-inform", "DER", "-in", pki / one, "-noout",
                                      "-fingerprint", "-sha256"], capture_output=True, text=True, check=True).stdout
        assert item["fingerprint_sha256"] == fingerprint.split("=")[1].strip().replace(":", "").lower()
    text = run_certkit("inspect", pki / "cas.der", env=_env(pki), check=True).stdout
    assert "Certificate (cas.der [1 of 2])" in text and "Certificate (cas.der [2 of 2])" in text, text


@pytest.mark.parametrize("how", ["CERT", "--untrusted", "--ca-file"])
def test_verify_reads_a_der_chain_as_openssl_verifies_its_pem(pki, how):
    """The verdict openssl verify -x509_strict gives the same chain (in PEM: it reads no DER chain) is certkit's."""
    env = _env(pki)
    if how == "CERT":
        args = [pki / "localhost.der", "--ca-file", pki / "root.der"]
    elif how == "--untrusted":
        args = [pki / "leaf.der", "--untrusted", pki / "localhost.der", "--ca-file", pki / "root.der"]
    else:
        args = [pki / "leaf.der", "--ca-file", pki / "cas.der"]
    proc = run_certkit("verify", *args, "--purpose", "server", "--name", "localhost", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "CN=localhost -> CN=Lab Inter -> CN=Lab Root" in proc.stdout, proc.stdout
    ossl = subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", "sslserver", "-verify_hostname",
                           "localhost", "-CAfile", pki / "ca" / "ca.pem", "-untrusted", pki / "inter" / "ca.pem",
                           pki / "localhost" / "cert.pem"], capture_output=True, text=True)
    assert ossl.returncode == 0, ossl.stdout + ossl.stderr
    wrong = run_certkit("verify", *args, "--purpose", "client", env=env)  # the purpose still judged
    assert wrong.returncode == 1 and "NOT VALID" in wrong.stdout, wrong.stdout


def test_a_cut_or_mixed_der_file_is_still_refused_in_one_line(pki, tmp_path):
    data = (pki / "localhost.der").read_bytes()
    for name, content in (("cut.der", data[:-20]), ("junk.der", data + b"junk\n"),
                          ("one-and-junk.der", (pki / "leaf.der").read_bytes() + b"\x30\x03\x02\x01\x01")):
        (tmp_path / name).write_bytes(content)
        proc = run_certkit("inspect", tmp_path / name, env=_env(pki))
        assert_clean_error(proc, "is neither a PEM file nor a DER certificate, CSR or CRL")


def test_probe_reads_a_der_chain_as_cert_and_as_ca_file_against_openssl_s_server(pki):
    """openssl s_server asking for a client certificate of the root: probe --cert alice.der (alice's certificate
    and the root, in DER) is accepted, and --ca-file cas.der verifies the server's chain."""
    server = pki / "localhost"
    with openssl_server("-cert", server / "cert.pem", "-key", server / "privkey.pem", "-cert_chain",
                        pki / "inter" / "ca.pem", "-Verify", "2", "-CAfile", pki / "ca" / "ca.pem") as port:
        proc = run_certkit("probe", f"https://localhost:{port}/", "--ca-file", pki / "cas.der", "--cert",
                           pki / "alice.der", "--key", pki / "alice" / "privkey.pem", env=_env(pki))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "accepted: the server answered HTTP 200" in proc.stdout, proc.stdout
    assert "given       CN=alice" in proc.stdout, proc.stdout
