"""Audit round nine against real peers (report peers7), each on 127.0.0.1 with peers started and stopped here:

1. probe names the certificates a server sends that are not of its chain (a client certificate, an unrelated
   CA), as verify does of such a file: it called them "intermediate" and "root (sent along)", and said nothing;
2. probe --ca-file of an intermediate without its root says what Python, OpenSSL and Node clients do with that
   file (they refuse the server; curl, which probe follows, takes it);
3. a host name with its final dot (``localhost.``) matches in verify and probe, as curl and browsers match it,
   with a note that Python and OpenSSL clients refuse it (a hostname mismatch);
4. ``trust install --nss`` of an Ed25519 CA, which NSS's certutil cannot store, says why, and removes the NSS
   database it created for the install.
"""

from __future__ import annotations

import json
import socket
import ssl
from pathlib import Path

import pytest
from test_probe import openssl_server

from conftest import PASSPHRASE, certkit_env, new_ca, require, run_certkit


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """ca/ with localhost/ (server) and alice/ (client); other/ (an unrelated CA); root/ over issuing/ (an
    intermediate) with int-server/ (a server certificate it issued)."""
    top = tmp_path_factory.mktemp("audit9-peers")
    env = new_ca(top, "Audit9 CA")
    run_certkit("issue-server", "localhost", "127.0.0.1", "--out", top / "localhost", env=env, check=True)
    run_certkit("issue-client", "alice", "--out", top / "alice", env=env, check=True)
    new_ca(top / "other", "Audit9 Unrelated CA")
    two = certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Audit9 Root", "--ca-dir", top / "root", env=two, check=True)
    run_certkit("init-ca", "--name", "Audit9 Issuing", "--ca-dir", top / "issuing", "--parent-ca-dir", top / "root",
                env=two, check=True)
    run_certkit("issue-server", "localhost", "127.0.0.1", "--out", top / "int-server", "--ca-dir", top / "issuing",
                env=two, check=True)
    return top


def _probe(*args) -> tuple[str, dict, int]:
    text = run_certkit("probe", *args, env=certkit_env())
    data = json.loads(run_certkit("probe", *args, "--json", env=certkit_env()).stdout)
    return text.stdout, data, text.returncode


def _python_client(port: int, cafile: Path, host: str) -> str | None:
    """Python's ssl as a client of 127.0.0.1:``port``, trusting ``cafile``, checking ``host``: None when it
    accepts the server, else its refusal."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname=host):
            return None
    except ssl.SSLCertVerificationError as exc:
        return exc.verify_message


# --- 1. certificates that are not of the chain --------------------------------------------------------
def test_probe_names_what_a_server_sends_that_is_not_of_its_chain(pki: Path, tmp_path: Path):
    strangers = tmp_path / "strangers.pem"
    strangers.write_bytes((pki / "other" / "ca" / "ca.pem").read_bytes() + (pki / "alice" / "cert.pem").read_bytes())
    with openssl_server("-cert", pki / "localhost" / "cert.pem", "-key", pki / "localhost" / "privkey.pem",
                        "-cert_chain", strangers) as port:
        text, data, code = _probe(f"https://127.0.0.1:{port}/", "--ca-file", pki / "ca" / "ca.pem")
    assert "CN=Audit9 Unrelated CA  (NOT of its chain)" in text and "CN=alice  (NOT of its chain)" in text, text
    assert "(intermediate)" not in text and "root (sent along)" not in text, text
    assert "  beware      the server also sends " in text and "a client certificate, not a CA certificate" in text
    found = data["server_certificate"]["not_of_its_chain"]
    assert len(found) == 2 and "a CA that issued none of the chain's certificates" in found[0], found
    assert code == 0  # clients still take the server: what it sends more is a mistake, said
    # A fullchain sent as it should be has none.
    with openssl_server("-cert", pki / "int-server" / "cert.pem", "-key", pki / "int-server" / "privkey.pem",
                        "-cert_chain", pki / "int-server" / "chain.pem") as port:
        text, data, code = _probe(f"https://127.0.0.1:{port}/", "--ca-file", pki / "root" / "ca.pem")
    assert code == 0 and "(intermediate)" in text and "beware" not in text, text
    assert data["server_certificate"]["not_of_its_chain"] == []


# --- 2. a --ca-file without its root --------------------------------------------------------------------
def test_probe_says_which_clients_refuse_a_ca_file_without_its_root(pki: Path):
    intermediate = pki / "issuing" / "ca.pem"
    with openssl_server("-cert", pki / "int-server" / "cert.pem", "-key", pki / "int-server" / "privkey.pem",
                        "-cert_chain", pki / "int-server" / "chain.pem") as port:
        text, data, code = _probe(f"https://127.0.0.1:{port}/", "--ca-file", intermediate)
        refused = _python_client(port, intermediate, "localhost")
        accepted = _python_client(port, pki / "root" / "ca.pem", "localhost")
        _, by_root, _ = _probe(f"https://127.0.0.1:{port}/", "--ca-file", pki / "root" / "ca.pem")
    assert refused is not None and "issuer" in refused, refused  # the peer the note names refuses it
    assert accepted is None
    assert code == 0 and f"beware      {intermediate} holds no root CA (a self-signed one)" in text, text
    assert "Python before 3.13 and Node clients refuse it" in data["server_certificate"]["partial_anchor_note"]
    assert by_root["server_certificate"]["partial_anchor_note"] is None


# --- 3. a name with its final dot ------------------------------------------------------------------------
def test_a_final_dot_matches_with_a_note_that_python_and_openssl_refuse_it(pki: Path):
    proc = run_certkit("verify", pki / "localhost", "--purpose", "server", "--name", "localhost.",
                       env=certkit_env(CERTKIT_CA_DIR=str(pki / "ca")))
    assert proc.returncode == 0 and "VALID" in proc.stdout, proc.stdout + proc.stderr
    assert "localhost. ends with a dot" in proc.stdout and "Python and OpenSSL" in proc.stdout, proc.stdout
    with openssl_server("-cert", pki / "localhost" / "cert.pem", "-key", pki / "localhost" / "privkey.pem") as port:
        assert "mismatch" in (_python_client(port, pki / "ca" / "ca.pem", "localhost.") or "")  # what the note says
        assert _python_client(port, pki / "ca" / "ca.pem", "localhost") is None
        text, data, code = _probe(f"https://localhost.:{port}/", "--ca-file", pki / "ca" / "ca.pem")
        plain, _, _ = _probe(f"https://localhost:{port}/", "--ca-file", pki / "ca" / "ca.pem")
    assert code == 0 and "beware      localhost. ends with a dot" in text, text
    assert data["server_certificate"]["final_dot_note"] and "ends with a dot" not in plain
    without = run_certkit("verify", pki / "localhost", "--purpose", "server", "--name", "localhost",
                          env=certkit_env(CERTKIT_CA_DIR=str(pki / "ca")))
    assert "ends with a dot" not in without.stdout


# --- 4. an Ed25519 CA into NSS -------------------------------------------------------------------------------
def test_trust_install_nss_of_an_ed25519_ca_says_why_and_leaves_no_database(tmp_path: Path):
    require("certutil")
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Ed CA", "--key-type", "ed25519", env=env, check=True)
    proc = run_certkit("trust", "install", "--nss", "--unconstrained", env=env)
    if proc.returncode == 0:  # an NSS that stores Ed25519 certificates: nothing to explain
        pytest.skip("this NSS's certutil stores an Ed25519 certificate")
    assert "Traceback" not in proc.stderr
    assert "has an Ed25519 key, which this NSS's certutil cannot store" in proc.stderr, proc.stderr
    assert "certkit init-ca --key-type ecdsa-p256" in proc.stderr
    assert not (tmp_path / ".pki" / "nssdb").exists()
    assert "removed the NSS database" in proc.stdout, proc.stdout
