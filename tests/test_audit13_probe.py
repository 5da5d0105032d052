"""probe, audit round thirteen: fleetserve13 findings 2, 3 and 6 (and its note on port wording), regress20
finding 9. Against real ``openssl s_server`` peers on 127.0.0.1, started and stopped here.

- fleetserve13 #2: a client certificate whose key fits none of the signature algorithms of the server's
  CertificateRequest is not sent at all (OpenSSL writes an empty Certificate message, no CertificateVerify):
  probe says ``not sent``, ``presented`` is null, never "refused".
- fleetserve13 #3: a client certificate of another CA (or of another CA of the same name) that a lax server
  let in gets a ``beware:`` note when the CA is known (--ca-dir, --ca-file), checked by signature.
- fleetserve13 #6: ``unknown ca`` for a chain whose CA the server lists names the cause "the CAs a server
  lists need not be the CAs it verifies with".
- regress20 #9: a control character in probe's target (a newline, a tab, ESC) is refused, escaped, before
  urlsplit drops it and probes another host.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from test_probe import openssl_server

from conftest import assert_clean_error, certkit_env, new_ca, run_certkit


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """ca/ (Lab CA) with localhost/, alice/ (ECDSA client) and rsa/ (RSA client); other/ (Other CA) with
    mallory/; same/ (another CA named Lab CA) with eve/."""
    top = tmp_path_factory.mktemp("audit13-probe")
    env = new_ca(top, "Lab CA")
    run_certkit("issue-server", "localhost", "127.0.0.1", "--out", top / "localhost", env=env, check=True)
    run_certkit("issue-client", "alice", "--out", top / "alice", env=env, check=True)
    run_certkit("issue-client", "rclient", "--key-type", "rsa-2048", "--out", top / "rsa", env=env, check=True)
    other = new_ca(top / "other", "Other CA")
    run_certkit("issue-client", "mallory", "--out", top / "mallory", env=other, check=True)
    same = new_ca(top / "same", "Lab CA")
    run_certkit("issue-client", "eve", "--out", top / "eve", env=same, check=True)
    return top


def probe(*args: object) -> subprocess.CompletedProcess:
    return run_certkit("probe", *args, env=certkit_env())


def server(pki: Path, *extra: object):
    return openssl_server("-cert", pki / "localhost" / "cert.pem", "-key", pki / "localhost" / "privkey.pem", *extra)


# --- fleetserve13 #2: a certificate OpenSSL did not send ---------------------------------------------
@pytest.mark.parametrize("tls, sigalgs, who", [("1_3", "rsa_pss_rsae_sha256:rsa_pkcs1_sha256", "alice"),
                                               ("1_2", "ecdsa_secp256r1_sha256", "rsa")])
def test_a_certificate_whose_key_fits_no_requested_sigalg_is_not_sent(pki: Path, tls: str, sigalgs: str, who: str):
    with server(pki, "-Verify", "1", "-verify_return_error", "-CAfile", pki / "ca" / "ca.pem",
                "-client_sigalgs", sigalgs, f"-tls{tls}") as port:
        url = f"https://localhost:{port}/"
        text = probe(url, "--ca-dir", pki / "ca", "--bundle", pki / who)
        assert text.returncode == 1
        line = next(x for x in text.stdout.splitlines() if x.strip().startswith("with it"))
        assert "with it     not sent: OpenSSL sent an empty certificate message" in line, line
        assert "refused:" not in line.split("without it", 1)[0], line
        assert "the client certificate was not sent" in text.stderr and "is refused" not in text.stderr
        data = json.loads(probe(url, "--ca-dir", pki / "ca", "--bundle", pki / who, "--json").stdout)
        with_it = data["client_certificate"]["with_it"]
        assert with_it["presented"] is None and with_it["not_sent"] is True
        assert data["client_certificate"]["accepted"] is None
        # the same server takes the certificate whose key fits: sent, and accepted
        fits = "rsa" if who == "alice" else "alice"
        ok = json.loads(probe(url, "--ca-dir", pki / "ca", "--bundle", pki / fits, "--json").stdout)
        assert ok["client_certificate"]["with_it"]["presented"] is not None
        assert ok["client_certificate"]["with_it"]["not_sent"] is False
        assert ok["client_certificate"]["accepted"] is True


# --- fleetserve13 #3: another CA's certificate let in -------------------------------------------------
@pytest.mark.parametrize("listing", [["-verifyCAfile"], ["-CAfile"]])
def test_a_foreign_certificate_let_in_gets_a_beware_note(pki: Path, listing: list):
    with server(pki, "-verify", "1", *listing, pki / "ca" / "ca.pem") as port:
        url = f"https://localhost:{port}/"
        eve = probe(url, "--ca-dir", pki / "ca", "--bundle", pki / "eve")
        assert "accepted: the server answered HTTP 200" in eve.stdout, eve.stdout
        assert ("beware: its chain names CN=Lab CA as its issuer, but the CA of that name in --ca-dir "
                f"{pki / 'ca'} did not sign it (another CA of the same name), yet it got in") in eve.stdout
        mallory = probe(url, "--ca-file", pki / "ca" / "ca.pem", "--bundle", pki / "mallory", "--json")
        verdict = json.loads(mallory.stdout)["client_certificate"]["verdict"]
        assert (f"beware: its chain does not lead to the CA in --ca-file {pki / 'ca' / 'ca.pem'} "
                "(its issuer is CN=Other CA), yet it got in") in verdict, verdict
        assert json.loads(mallory.stdout)["client_certificate"]["given_not_from_ca"].startswith("its chain does")
        alice = json.loads(probe(url, "--ca-dir", pki / "ca", "--bundle", pki / "alice", "--json").stdout)
        assert "beware" not in alice["client_certificate"]["verdict"]
        no_ca = probe(url, "--bundle", pki / "eve", "--json")  # the CA not known: nothing to check it by
        assert "beware: its chain" not in no_ca.stdout


# --- fleetserve13 #6: the CA names listed are not the CAs verified with -------------------------------
def test_unknown_ca_names_a_ca_list_that_is_not_the_trust_store(pki: Path):
    with server(pki, "-Verify", "1", "-verify_return_error", "-CAfile", pki / "other" / "ca" / "ca.pem",
                "-verifyCAfile", pki / "ca" / "ca.pem") as port:
        out = probe(f"https://localhost:{port}/", "--ca-dir", pki / "ca", "--bundle", pki / "mallory")
        assert out.returncode == 1
        assert "alert unknown ca" in out.stdout
        assert "when the CAs they verify with are not the CAs they list" in out.stdout, out.stdout
        assert "check which CAs the server verifies with" in out.stdout


# --- regress20 #9 and the port wording ------------------------------------------------------------
@pytest.mark.parametrize("target, escaped", [("exa\nmple.com", "exa\\x0ample.com"),
                                             ("https://exa\tmple.com/", "https://exa\\x09mple.com/"),
                                             ("127.0.0.1\nX:443", "127.0.0.1\\x0aX:443"),
                                             ("https://a.example/x\ry", "https://a.example/x\\x0dy"),
                                             ("a\x1b[31mb.example:443", "a\\x1b[31mb.example:443")])
def test_a_control_character_in_the_target_is_refused_escaped(target: str, escaped: str):
    out = probe(target, "--timeout", "1")
    assert_clean_error(out, f"'{escaped}' holds a control character")
    assert "Cannot connect" not in out.stderr and "IPv6" not in out.stderr


def test_ports_out_of_range_are_worded_alike():
    for port in ("0", "99999"):
        out = probe(f"https://localhost:{port}/")
        assert_clean_error(out, "give a port from 1 to 65535")
        assert "Port out of range" not in out.stderr
