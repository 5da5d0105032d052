"""``certkit serve`` decides on every connection: a resumed TLS session (openssl s_client -sess_out,
then -sess_in, TLS 1.2 and 1.3) never turns a refused certificate into an accepted one, and the
serving CA's inventory is asked about every certificate of the client's chain (a root that revokes
its intermediate CA refuses the clients under it), as ``certkit verify`` does.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography import x509

from certkit.serve import IdentityServer
from certkit.serve_optional import OptionalContext

from conftest import PASSPHRASE, certkit_env, run_certkit
from serve_process import serving

REQUEST = b"GET /?format=json HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
TLS = ["tls1_2", "tls1_3"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A root CA (its server certificate in ``localhost``, a client ``dave``), an intermediate under it
    (``issuing``, client ``carol``), and a CA of nobody's (``usageca``, with words the page once matched
    in its name; client ``frank``)."""
    root = tmp_path_factory.mktemp("sessions-pki")
    env = certkit_env(CERTKIT_CA_DIR=str(root / "root"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Example Root CA", env=env, check=True)
    run_certkit("issue-server", "localhost", "127.0.0.1", env=env, cwd=root, check=True)
    run_certkit("issue-client", "dave", env=env, cwd=root, check=True)
    run_certkit("init-ca", "--ca-dir", root / "issuing", "--parent-ca-dir", root / "root",
                "--name", "Example Issuing CA 1", env=env, check=True)
    run_certkit("issue-client", "carol", "--ca-dir", root / "issuing", env=env, cwd=root, check=True)
    other = dict(env, CERTKIT_CA_DIR=str(root / "usageca"))
    run_certkit("init-ca", "--name", "Usage Expired Chain Revoked CA", env=other, check=True)
    run_certkit("issue-client", "frank", env=other, cwd=root, check=True)
    return root


def _env(pki: Path) -> dict[str, str]:
    return certkit_env(CERTKIT_CA_DIR=str(pki / "root"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)


def s_client(pki: Path, port: int, tls: str, *args: str) -> str:
    """One GET over ``openssl s_client``: its whole output (session facts, then the HTTP answer)."""
    proc = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", f"-{tls}", "-servername",
                           "localhost", "-CAfile", str(pki / "root" / "ca.pem"), "-ign_eof", *args],
                          input=REQUEST, capture_output=True, timeout=60)
    return proc.stdout.decode("utf-8", "replace")


def _resume(session: Path) -> tuple[str, ...]:
    """-sess_in, if the server gave a session to resume (one that resumes none gives none in TLS 1.2)."""
    return ("-sess_in", str(session)) if session.exists() else ()


def _with(pki: Path, who: str, cert: str = "cert.pem") -> tuple[str, ...]:
    return ("-cert", str(pki / who / cert), "-key", str(pki / who / "privkey.pem"))


def _answer(output: str) -> tuple[int, dict]:
    status = int(re.search(r"^HTTP/1\.[01] (\d{3})", output, re.M).group(1))
    body = output[output.index("\r\n\r\n") + 4:]
    return status, json.loads(body[:body.index("\n}\n") + 2])  # TLS 1.3: s_client's session facts follow


# --- 1. resumption ---------------------------------------------------------------------------
@pytest.mark.parametrize("tls", TLS)
@pytest.mark.parametrize("who", ["frank", "localhost"], ids=["another-ca", "server-certificate"])
def test_optional_resumed_session_does_not_authenticate_a_refused_certificate(pki: Path, tmp_path: Path,
                                                                              tls: str, who: str):
    session = tmp_path / "session.pem"
    with serving("--optional", env=_env(pki)) as srv:
        first = s_client(pki, srv.port, tls, *_with(pki, who), "-sess_out", str(session))
        assert _answer(first)[0] == 403, first
        again = s_client(pki, srv.port, tls, *_resume(session))
        status, data = _answer(again)
        assert status == 403 and data["authenticated"] is False, again
        assert "Reused," not in again and "200 OK" not in again
        assert "accepted 127.0.0.1" not in srv.stderr


def test_optional_verdict_does_not_depend_on_the_verify_callback(pki: Path, tmp_path: Path):
    """With session resumption forced back on (TLS 1.2 session ids), a resumed session, on which
    OpenSSL calls no verify callback, is still refused: the chain is judged anew per connection."""
    from OpenSSL import SSL

    context = OptionalContext((pki / "localhost" / "fullchain.pem").read_bytes(),
                              (pki / "localhost" / "privkey.pem").read_bytes(),
                              (pki / "root" / "ca.pem").read_bytes())
    context._ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    log: list[str] = []
    server = IdentityServer(("127.0.0.1", 0), context, log=log.append)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    try:
        session, port = tmp_path / "session.pem", server.server_address[1]
        assert _answer(s_client(pki, port, "tls1_2", *_with(pki, "frank"), "-sess_out", str(session)))[0] == 403
        again = s_client(pki, port, "tls1_2", "-sess_in", str(session))
        assert "Reused," in again, again  # the point of this test: a session OpenSSL did resume
        status, data = _answer(again)
        assert status == 403 and data["presented"]["common_name"] == "frank", again
        assert not [line for line in log if line.startswith("accepted")], log
    finally:
        server.shutdown()
        server.server_close()


def _two_tier(base: Path) -> dict[str, str]:
    """Root (``root``), an intermediate under it (``issuing``) and carol from it, in ``base``: the root's
    environment."""
    env = certkit_env(CERTKIT_CA_DIR=str(base / "root"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Example Root CA", env=env, check=True)
    run_certkit("init-ca", "--ca-dir", base / "issuing", "--parent-ca-dir", base / "root",
                "--name", "Example Issuing CA 1", env=env, check=True)
    run_certkit("issue-client", "carol", "--ca-dir", base / "issuing", env=env, cwd=base, check=True)
    return env


def _revoke_intermediate(base: Path, env: dict[str, str]) -> None:
    cert = x509.load_pem_x509_certificate((base / "issuing" / "ca.pem").read_bytes())
    run_certkit("revoke", "--ca-dir", base / "root", format(cert.serial_number, "X"), "--reason", "keyCompromise",
                env=env, check=True)


@pytest.mark.parametrize("tls", TLS)
def test_required_mode_resumed_session_is_judged_again(tmp_path: Path, tls: str):
    """The default mode: carol accepted, then her intermediate CA revoked by the root; a connection that
    resumes her session (no certificate sent) is not let in."""
    env, session = _two_tier(tmp_path), tmp_path / "session.pem"
    with serving(env=env) as srv:
        first = s_client(tmp_path, srv.port, tls, *_with(tmp_path, "carol"), "-cert_chain",
                         str(tmp_path / "carol" / "fullchain.pem"), "-sess_out", str(session))
        assert _answer(first)[0] == 200, first
        _revoke_intermediate(tmp_path, env)
        again = s_client(tmp_path, srv.port, tls, *_resume(session))
        assert "200 OK" not in again and '"authenticated": true' not in again, again


# --- 2. a revoked intermediate CA --------------------------------------------------------------
@pytest.mark.parametrize("optional", [False, True], ids=["required", "optional"])
def test_root_revoking_its_intermediate_refuses_the_clients_under_it(tmp_path: Path, optional: bool):
    env = _two_tier(tmp_path)
    url_args = ("--cacert", str(tmp_path / "root" / "ca.pem"), "--cert", str(tmp_path / "carol" / "fullchain.pem"),
                "--key", str(tmp_path / "carol" / "privkey.pem"))
    with serving(*(["--optional"] if optional else []), env=env) as srv:
        before = _curl(srv.port, "?format=html", *url_args)
        assert before.startswith("<!DOCTYPE html>") and "Hello," in before, before
        assert "not revoked: <code>Example Root CA</code>\u2019s inventory, read at each connection, holds " \
               "Example Issuing CA 1, and leads to the inventory of the intermediate CA that issued your " \
               "certificate, read too, which holds it" in before
        _revoke_intermediate(tmp_path, env)
        after = _curl(srv.port, "?format=json", *url_args)
        data = json.loads(after)
        assert data["authenticated"] is False, after
        assert "the issuing CA CN=Example Issuing CA 1 was revoked on " in data["reason"]
        assert "(reason: keyCompromise)" in srv.wait_for_log("refused 127.0.0.1")[0]
        page = _curl(srv.port, "?format=html", *url_args)
        assert '<li class="failed">not revoked' in page and page.count('class="failed"') == 1
        assert "certkit crl --out crl.pem" in page


def _curl(port: int, query: str, *args: str) -> str:
    proc = subprocess.run(["curl", "-sS", "--max-time", "20", *args, f"https://localhost:{port}/{query}"],
                          capture_output=True, text=True, timeout=60)
    return proc.stdout


# --- 3, 4, 6, 7: the page states facts -------------------------------------------------------
def test_page_marks_only_the_rule_the_facts_break(pki: Path):
    """A CA named with the words the page once matched ("Usage", "Expired", "Chain", "Revoked"): only
    the CA line is marked failed, since the certificate is in date and has clientAuth."""
    with serving("--optional", env=_env(pki)) as srv:
        page = _curl(srv.port, "?format=html", "--cacert", str(pki / "root" / "ca.pem"),
                     "--cert", str(pki / "frank" / "cert.pem"), "--key", str(pki / "frank" / "privkey.pem"))
    failed = re.findall(r'<li class="failed">(.*?)</li>', page)
    assert len(failed) == 1 and failed[0].startswith("signed by"), failed


def test_page_for_an_unrecorded_certificate_and_one_without_eku():
    from test_serve_page import _identity

    from certkit.serve import InventoryVerdict
    from certkit.serve_page import ServerFacts, Visit, render_page

    server = ServerFacts(None, "Example Lab CA", revocation=True, revocation_ca="Example Lab CA")
    unrecorded = InventoryVerdict("Example Lab CA", True, [], ["it is not a certificate Example Lab CA recorded"],
                                  unrecorded=True)
    page = render_page(Visit(_identity(eku=[]), ["it is not a certificate Example Lab CA recorded"], True,
                             frozenset({"unrecorded"}), unrecorded), server, "localhost")
    failed = re.findall(r'<li class="failed">(.*?)</li>', page)
    assert len(failed) == 1 and failed[0].startswith("recorded by"), failed
    assert "certkit crl --out crl.pem</code>, then" not in page and "It is not revoked" in page
    accepted = render_page(Visit(_identity(eku=[]), [], False, frozenset(),
                                 InventoryVerdict("Example Lab CA", True, ["alice"], leaf_held=True)), server)
    assert "it has no extendedKeyUsage, which TLS reads as" in accepted
    assert "its extendedKeyUsage includes <code>clientAuth</code>" not in accepted


def test_several_client_cas_say_whose_revocations_are_checked(pki: Path, tmp_path: Path):
    both = tmp_path / "both.pem"
    both.write_bytes((pki / "root" / "ca.pem").read_bytes() + (pki / "usageca" / "ca.pem").read_bytes())
    env = _env(pki)
    with serving("--client-ca", both, env=env) as srv:
        page = _curl(srv.port, "?format=html", "--cacert", str(pki / "root" / "ca.pem"),
                     "--cert", str(pki / "frank" / "cert.pem"), "--key", str(pki / "frank" / "privkey.pem"))
        assert "not checked for revocation: it is not under <code>Example Root CA</code>" in page

    proc = subprocess.Popen([sys.executable, "-m", "certkit", "serve", "--port", "0", "--client-ca", str(both)],
                            env=env, stdout=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(5)]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert any("what \"Example Root CA\" issued" in line and "(so \"Usage Expired Chain Revoked CA\"'s are not "
               "checked)" in line for line in lines), lines
