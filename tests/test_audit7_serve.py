"""Audit serve7, against real peers on 127.0.0.1 (certkit serve as a process, curl, Python's ssl):

1. a root's CA directory vouches for what its intermediates issued: a leaf the intermediate revoked is NOT
   VALID for verify and refused by serve (the root's inventory records the intermediate's folder, whose
   inventory is read too); a folder that cannot be read refuses it (fail closed); the page says "counts at
   once" only of an inventory it reads;
3. the page's client card says in words how a failed rule line fails, not by its colour alone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import PASSPHRASE, certkit_env, run_certkit
from serve_process import serving


def _env(top: Path, ca: str = "root", **extra: str) -> dict[str, str]:
    return certkit_env(CERTKIT_CA_DIR=str(top / ca), HOME=str(top / "home"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                       **extra)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """root/ (Lab CA) with int/ (Lab Issuing, recorded with its folder); carol/ and dave/ issued by int/,
    carol revoked there for keyCompromise; erin/ issued by root/ and expired-looking is not needed here."""
    (tmp_path / "home").mkdir()
    run_certkit("init-ca", "--name", "Lab CA", env=_env(tmp_path), check=True)
    run_certkit("init-ca", "--ca-dir", tmp_path / "int", "--parent-ca-dir", tmp_path / "root", "--name",
                "Lab Issuing", env=_env(tmp_path, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE), cwd=tmp_path, check=True)
    for name in ("carol", "dave"):
        run_certkit("issue-client", name, env=_env(tmp_path, "int"), cwd=tmp_path, check=True)
    run_certkit("issue-server", "localhost", env=_env(tmp_path), cwd=tmp_path, check=True)
    run_certkit("revoke", tmp_path / "carol", "--reason", "keyCompromise", env=_env(tmp_path, "int"), check=True)
    return tmp_path


def _verify(pki: Path, name: str) -> tuple[int, dict]:
    proc = run_certkit("verify", pki / name / "fullchain.pem", "--purpose", "client", "--json", env=_env(pki))
    return proc.returncode, json.loads(proc.stdout)


def test_verify_with_the_roots_directory_reads_the_intermediates_inventory(pki: Path) -> None:
    code, data = _verify(pki, "carol")
    assert code == 1 and data["valid"] is False, data
    assert any("revoked on" in r and "(reason: keyCompromise)" in r and "the inventory of its issuing CA CN=Lab "
               "Issuing" in r for r in data["reasons"]), data
    code, data = _verify(pki, "dave")
    assert code == 0 and data["valid"] is True, data


def test_an_intermediates_folder_that_cannot_be_read_refuses_its_leaves(pki: Path) -> None:
    shutil.move(pki / "int", pki / "int-moved")
    code, data = _verify(pki, "dave")
    assert code == 1 and data["valid"] is False, data
    assert any("the inventory of CN=Lab Issuing, which issued it, cannot be read" in r and "is gone" in r
               for r in data["reasons"]), data


def _curl(port: int, pki: Path, who: str) -> str:
    return subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", str(pki / "root" / "ca.pem"),
                           "--cert", str(pki / who / "fullchain.pem"), "--key", str(pki / who / "privkey.pem"),
                           f"https://localhost:{port}/?format=html"], capture_output=True, text=True, timeout=30,
                          check=False).stdout


@pytest.mark.parametrize("optional", [False, True], ids=["required", "optional"])
def test_serve_refuses_a_leaf_its_intermediate_revoked(pki: Path, optional: bool) -> None:
    args = ["--cert", pki / "localhost" / "fullchain.pem", "--key", pki / "localhost" / "privkey.pem"]
    with serving(*map(str, args), *(["--optional"] if optional else []), env=_env(pki)) as srv:
        carol = _curl(srv.port, pki, "carol")
        dave = _curl(srv.port, pki, "dave")
    assert "Hello," not in carol
    if optional:
        assert '<li class="failed">not revoked; <strong>revoked on ' in carol, carol
    assert "Hello," in dave and "which holds it (<code>certkit revoke</code> there counts at once)" in dave, dave


def test_a_failed_rule_line_says_how_it_fails() -> None:
    from test_serve_page import _identity

    from certkit.serve_page import ServerFacts, Visit, render_page

    server = ServerFacts(None, "Example Lab CA")
    expired = _identity(eku=["serverAuth"], not_after="2020-01-01T00:00:00Z", issuer="CN=Other CA")
    page = render_page(Visit(expired, ["refused"], True, frozenset({"ca", "time", "purpose"})), server, "localhost")
    import re

    failed = re.findall(r'<li class="failed">(.*?)</li>', page)
    assert len(failed) == 3, failed
    assert all("<strong>" in line for line in failed), failed
    assert "it is signed by CN=Other CA" in failed[0] and "expired on 2020-01-01" in failed[1], failed
    assert "its extendedKeyUsage is serverAuth, without clientAuth" in failed[2], failed


# --- serve7 #2: probe and a server that refuses after a TLS 1.3 handshake (Redis) -----------------------------
def test_probe_sees_redis_refuse_a_missing_client_certificate_every_time(tmp_path: Path) -> None:
    """Redis with tls-auth-clients yes refuses a client without a certificate by an alert after the TLS 1.3
    handshake; probe wrote its request at once, met the reset, and said in most runs that the handshake
    "completed without it". It now waits for that refusal before writing: the same verdict every run."""
    from test_peers_redis import Redis
    from test_peers_redis import certs as make_certs

    certs = make_certs.__wrapped__(_Factory(tmp_path))  # the module fixture's certificates, made here
    cluster = Redis(tmp_path / "redis", certs)
    (tmp_path / "redis").mkdir()
    try:
        node = cluster.start("primary", server_cert="primary-server", client_cert="primary-client")
        verdicts = []
        for _ in range(6):
            proc = run_certkit("probe", f"https://127.0.0.1:{node.port}/", "--ca-file", certs / "ca" / "ca.pem",
                               "--json", env=certkit_env())
            verdicts.append(json.loads(proc.stdout)["client_certificate"])
    finally:
        cluster.stop()
    assert all(v == verdicts[0] for v in verdicts), verdicts
    assert "refused" in json.dumps(verdicts[0]) and "completed the handshake without" not in json.dumps(verdicts)


class _Factory:
    """The tmp_path_factory a module fixture is given, for a fixture called directly."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def mktemp(self, name: str) -> Path:
        path = self.base / name
        path.mkdir()
        return path


# --- serve7 #5: probe's Error line names a client certificate served by mistake -------------------------------
def test_probe_headline_names_a_client_certificate_served_by_mistake(tmp_path: Path) -> None:
    from test_probe import openssl_server

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Probe CA", env=env, check=True)
    run_certkit("issue-client", "etcd-1.cluster.internal", "--out", tmp_path / "wrong", env=env, check=True)
    with openssl_server("-cert", tmp_path / "wrong" / "fullchain.pem", "-key", tmp_path / "wrong" / "privkey.pem") \
            as port:
        proc = run_certkit("probe", f"https://localhost:{port}/", env=env)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (f"Error: localhost:{port}: the server's certificate is a client certificate (clientAuth, no "
                    "serverAuth): the server is configured with the wrong bundle."), proc.stderr


# --- serve7 #4: a certificate the root above the trusted intermediate issued ----------------------------------
def test_serve_optional_says_a_roots_certificate_is_from_above_the_intermediate(pki: Path) -> None:
    run_certkit("issue-client", "erin", env=_env(pki), cwd=pki, check=True)  # issued by the root
    with serving("--optional", env=_env(pki, "int")) as srv:
        answer = subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", str(pki / "root" / "ca.pem"),
                                 "--cert", str(pki / "erin" / "fullchain.pem"), "--key",
                                 str(pki / "erin" / "privkey.pem"), f"https://localhost:{srv.port}/?format=json"],
                                capture_output=True, text=True, timeout=30, check=True).stdout
    data = json.loads(answer)
    assert data["authenticated"] is False, data
    assert ("not issued by the trusted CA (CN=Lab Issuing) nor by a CA below it: its chain ends at the root CN=Lab "
            "CA, a CA above the trusted one") in data["reason"], data
    assert "nor in the intermediates given" not in data["reason"]


# --- serve7 #7: serials in the docs as certkit prints them ----------------------------------------------------
def test_every_serial_in_the_docs_has_whole_bytes() -> None:
    """certkit prints a serial as openssl does, whole bytes (vocabulary.serial_hex: 40 digits, not 39): a page
    showing an odd number of digits shows what certkit never prints."""
    import re

    from conftest import REPO

    odd = [f"{page.name}:{n}: {token}" for page in [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]
           for n, line in enumerate(page.read_text().splitlines(), 1)
           for token in re.findall(r"\b[0-9A-F]{20,41}\b", line) if len(token) % 2]
    assert odd == []


# --- serve7 #6: one vocabulary for a refused client ---------------------------------------------------------
def test_a_refused_clients_answer_has_verify_and_probes_fields(pki: Path) -> None:
    with serving("--optional", env=_env(pki, "int")) as srv:
        answer = subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", str(pki / "root" / "ca.pem"),
                                 "--cert", str(pki / "carol" / "fullchain.pem"), "--key",
                                 str(pki / "carol" / "privkey.pem"), f"https://localhost:{srv.port}/?format=json"],
                                capture_output=True, text=True, timeout=30, check=True).stdout
        text = subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", str(pki / "root" / "ca.pem"),
                               "--cert", str(pki / "dave" / "fullchain.pem"), "--key",
                               str(pki / "dave" / "privkey.pem"), f"https://localhost:{srv.port}/?format=text"],
                              capture_output=True, text=True, timeout=30, check=True).stdout
    data = json.loads(answer)
    verify = json.loads(run_certkit("verify", pki / "carol" / "fullchain.pem", "--purpose", "client", "--json",
                                    env=_env(pki, "int")).stdout)
    assert data["authenticated"] is False and data["reasons"] == verify["reasons"], (data, verify)
    assert data["verify_errors"] == [] and data["presented"]["status"] == "valid"
    assert data["presented"]["withdrawn"] == verify["reasons"]
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    dave = x509.load_pem_x509_certificate((pki / "dave" / "cert.pem").read_bytes())
    assert f"  SHA-256      {dave.fingerprint(hashes.SHA256()).hex(':').upper()}" in text, text
