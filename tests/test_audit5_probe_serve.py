"""certkit probe and serve, audit peers5 (findings 1 to 4), against real peers on 127.0.0.1: openssl
s_server, certkit serve, curl and Python's ssl.

1. A revocation the CA's inventory records counts wherever probe or serve judges a certificate that
   inventory knows: probe --ca-dir's verdict on the server's certificate, the client certificate given
   (a ``beware:`` note when a server lets a revoked one in), serve --cert at start-up, and serve's page
   for a server certificate revoked while it runs.
2. probe --ca-dir of an intermediate CA judges the server's chain as the CA's bundles' clients do, from
   the root (their ca.pem): an intermediate the server does not send is missing.
3. serve --optional's page does not say "not revoked" of a certificate refused before the inventory
   was read.
4. A client certificate refused with ``unknown ca`` because it was sent without its intermediate: probe
   says so, and to give fullchain.pem.
"""

from __future__ import annotations

import http.client
import json
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from test_probe import openssl_server

from conftest import PASSPHRASE, assert_clean_error, certkit_env, require, run_certkit
from serve_process import serving


def _env(top: Path, ca: str = "ca", **extra: str) -> dict[str, str]:
    return certkit_env(CERTKIT_CA_DIR=str(top / ca), HOME=str(top / "home"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                       **extra)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """ca/ (Audit5 CA): srv/ and bob/ revoked (keyCompromise), localhost/ and alice/ good, rogue/ a server
    certificate revoked; root/ > issuing/ (an intermediate): isrv/ and dave/ issued by issuing."""
    top = tmp_path_factory.mktemp("audit5")
    (top / "home").mkdir()
    env = _env(top)
    run_certkit("init-ca", "--name", "Audit5 CA", env=env, check=True)
    for args in (("issue-server", "localhost", "127.0.0.1", "--out", "srv"),
                 ("issue-server", "localhost", "127.0.0.1"), ("issue-server", "rogue.test", "--out", "rogue"),
                 ("issue-client", "bob"), ("issue-client", "alice")):
        run_certkit(*args, env=env, cwd=top, check=True)
    for who in ("srv", "bob", "rogue"):
        run_certkit("revoke", top / who, "--reason", "keyCompromise", env=env, check=True)
    run_certkit("init-ca", "--name", "Audit5 Root", env=_env(top, "root"), check=True)
    run_certkit("init-ca", "--ca-dir", top / "issuing", "--parent-ca-dir", top / "root", "--name", "Audit5 Issuing",
                env=_env(top, "root", CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE), cwd=top, check=True)
    inter = _env(top, "issuing")
    run_certkit("issue-server", "localhost", "127.0.0.1", "--out", "isrv", env=inter, cwd=top, check=True)
    run_certkit("issue-client", "dave", "--out", "dave", env=inter, cwd=top, check=True)
    return top


def probe(top: Path, url: str, *args: object) -> subprocess.CompletedProcess:
    """certkit probe, with no CA directory in the environment (probe takes --ca-dir only from its options)."""
    env = certkit_env(HOME=str(top / "home"))
    return run_certkit("probe", url, *map(str, args), env=env)


def python_client(top: Path, port: int, cafile: Path) -> str:
    """What Python's ssl says of the server, given ``cafile``: "ok" or its error."""
    context = ssl.create_default_context(cafile=str(cafile))
    conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        return "ok"
    except ssl.SSLError as exc:
        return str(exc)
    finally:
        conn.close()


# --- 1. revocations the inventory records ----------------------------------------------------------
def test_probe_ca_dir_gives_verifys_revocation_verdict_and_a_beware_for_a_revoked_client(pki: Path):
    """A lax server (s_server -verify 1 logs and goes on) with a revoked server certificate lets in a revoked
    client: probe --ca-dir says NO (exit 1) with verify's reason, and adds a beware note for the client. It
    said yes, exit 0, with no note. Good certificates on the same server get neither."""
    srv = pki / "srv"
    verify = run_certkit("verify", srv / "cert.pem", "--purpose", "server", "--name", "localhost",
                         env=_env(pki))
    assert verify.returncode == 1 and "(reason: keyCompromise), as this CA's inventory records" in verify.stderr
    with openssl_server("-cert", srv / "cert.pem", "-key", srv / "privkey.pem", "-CAfile", pki / "ca" / "ca.pem",
                        "-verify", "1") as port:
        url = f"https://localhost:{port}/"
        proc = probe(pki, url, "--ca-dir", pki / "ca", "--bundle", pki / "bob")
        data = json.loads(probe(pki, url, "--ca-dir", pki / "ca", "--bundle", pki / "bob", "--json").stdout)
        # --ca-file judges the chain alone, as curl --cacert does: no inventory, no revocation.
        chain_only = probe(pki, url, "--ca-file", pki / "ca" / "ca.pem")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Is it a valid TLS server certificate for localhost? NO" in proc.stdout
    assert "  reason      revoked on " in proc.stdout
    assert "(reason: keyCompromise), as this CA's inventory records; clients refuse it" in proc.stdout
    assert proc.stderr.startswith(f"Error: localhost:{port}: the server's certificate was revoked on ")
    assert "accepted: the server answered HTTP 200 ok; beware: it was revoked on " in proc.stdout
    assert "yet it got in: this server loads no CRL that lists it" in proc.stdout
    server, client = data["server_certificate"], data["client_certificate"]
    assert server["ok"] is False and server["withdrawn"][0].startswith("revoked on ")
    assert client["accepted"] is True and client["given_withdrawn"][0].startswith("revoked on ")
    assert chain_only.returncode == 0, chain_only.stdout + chain_only.stderr
    # Certificates the inventory holds as valid, on the same lax server: yes, exit 0, no revocation words.
    good = pki / "localhost"
    with openssl_server("-cert", good / "cert.pem", "-key", good / "privkey.pem", "-CAfile", pki / "ca" / "ca.pem",
                        "-verify", "1") as port:
        proc = probe(pki, f"https://localhost:{port}/", "--ca-dir", pki / "ca", "--bundle", pki / "alice")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "revoked" not in proc.stdout and "beware" not in proc.stdout


def test_serve_refuses_a_server_certificate_its_inventory_records_as_revoked(pki: Path):
    """serve --cert with a revoked certificate served, and its page said it "proves" the server's name."""
    args = ["serve", "--port", "0", "--cert", pki / "srv" / "fullchain.pem", "--key", pki / "srv" / "privkey.pem"]
    try:  # a real process: one that starts serving is stopped by the timeout, not left running
        proc = subprocess.run([sys.executable, "-m", "certkit", *map(str, args)], env=_env(pki), capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail("certkit serve started with a revoked server certificate")
    assert_clean_error(proc, "is not a certificate to serve with: it was revoked on ")
    assert "(reason: keyCompromise)" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_serve_page_says_a_server_certificate_revoked_while_serving_proves_nothing(pki: Path, tmp_path: Path):
    """Revoked after serve started: the page no longer says it proves the server's name; the rule's
    revocation line is marked failed, and the JSON answer says it."""
    require("curl")
    env = _env(pki)
    run_certkit("issue-server", "localhost", "127.0.0.1", "--out", tmp_path / "late", env=env, check=True)
    late = tmp_path / "late"
    alice = ("--cert", str(pki / "alice" / "cert.pem"), "--key", str(pki / "alice" / "privkey.pem"))

    def page(url: str) -> str:
        return subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", str(pki / "ca" / "ca.pem"), *alice,
                               url], capture_output=True, text=True, timeout=30, check=True).stdout

    with serving("--cert", late / "fullchain.pem", "--key", late / "privkey.pem", env=env) as srv:
        url = f"https://localhost:{srv.port}/"
        before = page(url + "?format=html")
        assert "it proves that this server is <code>localhost</code>" in before and "not revoked;" not in before
        run_certkit("revoke", late, "--reason", "keyCompromise", env=env, check=True)
        after = page(url + "?format=html")
        data = json.loads(page(url + "?format=json"))
    assert "it proves that this server is" not in after
    assert "but it cannot be trusted any more: <strong>it was revoked on " in after
    assert '<li class="failed">not revoked; <strong>it was revoked on ' in after
    assert data["authenticated"] is True
    assert data["server_certificate"]["withdrawn"][0].startswith("it was revoked on ")


# --- 2. probe --ca-dir of an intermediate CA --------------------------------------------------------
def test_probe_ca_dir_of_an_intermediate_needs_the_intermediate_from_the_server(pki: Path):
    """s_server with cert.pem alone (the classic mistake): curl and Python given the bundle's ca.pem fail,
    and probe --ca-dir issuing now says NO with the fullchain advice (it said yes). With the chain sent,
    all three agree it is good. --ca-file keeps curl --cacert's rule (the intermediate's ca.pem is an anchor)."""
    require("curl")
    isrv = pki / "isrv"
    with openssl_server("-cert", isrv / "cert.pem", "-key", isrv / "privkey.pem") as port:
        url = f"https://localhost:{port}/"
        proc = probe(pki, url, "--ca-dir", pki / "issuing")
        curl = subprocess.run(["curl", "-sS", "-o", "/dev/null", "--cacert", str(isrv / "ca.pem"), url],
                              capture_output=True, text=True, timeout=30)
        python = python_client(pki, port, isrv / "ca.pem")
        partial = probe(pki, url, "--ca-file", pki / "issuing" / "ca.pem")
    assert curl.returncode == 60 and "unable to get local issuer certificate" in python
    assert proc.returncode == 1, proc.stdout
    assert "Is it a valid TLS server certificate for localhost? NO" in proc.stdout
    assert "NOT verified against the root of the CA in " in proc.stdout
    assert ("issued by CN=Audit5 Issuing, the intermediate CA given, but the server does not send its certificate "
            "after its own, and clients trust only the root: configure the server with fullchain.pem"
            in " ".join(proc.stdout.split())), proc.stdout
    assert "the server's certificate is not trusted by the root of the CA in" in proc.stderr
    assert partial.returncode == 0, partial.stdout + partial.stderr
    with openssl_server("-cert", isrv / "cert.pem", "-key", isrv / "privkey.pem", "-cert_chain",
                        isrv / "chain.pem") as port:
        url = f"https://localhost:{port}/"
        sent = probe(pki, url, "--ca-dir", pki / "issuing")
        curl = subprocess.run(["curl", "-sS", "-o", "/dev/null", "--cacert", str(isrv / "ca.pem"), url],
                              capture_output=True, text=True, timeout=30)
        assert python_client(pki, port, isrv / "ca.pem") == "ok" and curl.returncode == 0
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "chain       verified against the root of the CA in " in sent.stdout


# --- 3. serve --optional's page for a certificate refused before the inventory was read ---------------
def test_optional_page_does_not_say_not_revoked_of_a_certificate_it_never_looked_up(pki: Path):
    """rogue (a server certificate, revoked) presented as a client: refused for its purpose before the
    inventory was read. The page said "not revoked: ... inventory says so"."""
    require("curl")
    rogue = ("--cert", str(pki / "rogue" / "cert.pem"), "--key", str(pki / "rogue" / "privkey.pem"))
    with serving("--optional", "--cert", pki / "localhost" / "fullchain.pem", "--key",
                 pki / "localhost" / "privkey.pem", env=_env(pki)) as srv:
        page = subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", str(pki / "ca" / "ca.pem"), *rogue,
                               f"https://localhost:{srv.port}/?format=html"],
                              capture_output=True, text=True, timeout=30, check=True).stdout
    assert "Your certificate was not accepted" in page
    assert "inventory says so" not in page and "not revoked:" not in page
    assert "<li>not checked for revocation: this server reads <code>Audit5 CA</code>’s inventory" in page
    assert ('<li class="failed">its extendedKeyUsage includes <code>clientAuth</code>, and its keyUsage, if it has '
            'one, <code>digitalSignature</code> or <code>keyAgreement</code>; <strong>this is a server certificate: it '
            'has no clientAuth usage</strong></li>') in page  # certkit verify's words (serve8 #1)


# --- 4. a client certificate sent without its intermediate -----------------------------------------------
def test_unknown_ca_for_a_client_sent_without_its_intermediate_says_to_send_fullchain(pki: Path, tmp_path: Path):
    """A strict server that lists the root refuses dave's cert.pem alone (unknown ca); probe said only that
    "the server does not know the CA that issued it". With the bundle (fullchain.pem) dave gets in."""
    isrv, dave = pki / "isrv", pki / "dave"
    alone = tmp_path / "dave-alone"  # dave's files without the bundle beside: nothing tells what his issuer is
    alone.mkdir()
    for name in ("cert.pem", "privkey.pem"):
        shutil.copy(dave / name, alone / name)
    with openssl_server("-cert", isrv / "cert.pem", "-cert_chain", isrv / "chain.pem", "-key", isrv / "privkey.pem",
                        "-CAfile", pki / "root" / "ca.pem", "-Verify", "2", "-verify_return_error") as port:
        url = f"https://localhost:{port}/"
        ca = ("--ca-file", pki / "root" / "ca.pem")
        bare = probe(pki, url, *ca, "--cert", dave / "cert.pem", "--key", dave / "privkey.pem")
        unsure = probe(pki, url, *ca, "--cert", alone / "cert.pem", "--key", alone / "privkey.pem")
        bundle = probe(pki, url, *ca, "--bundle", dave)
        other = probe(pki, url, *ca, "--bundle", pki / "alice")  # another root's client: no such advice
    assert bare.returncode == 1
    assert ("alert unknown ca: the server does not know the CA that issued it; the client sent its certificate "
            "without its intermediate CA, CN=Audit5 Issuing, which the server does not list (it lists "
            "CN=Audit5 Root): give fullchain.pem, which holds it (--cert fullchain.pem, or --bundle)") in bare.stdout
    assert unsure.returncode == 1
    assert ("its issuer CN=Audit5 Issuing is not among the CA names the server listed (it lists CN=Audit5 Root), "
            "and the file given holds no certificate of it: if CN=Audit5 Issuing is an intermediate CA, the client "
            "must send it too") in unsure.stdout
    assert bundle.returncode == 0 and "accepted: the server answered HTTP 200" in bundle.stdout, bundle.stdout
    with_it = next(line for line in other.stdout.splitlines() if line.startswith("  with it"))
    assert other.returncode == 1
    assert with_it.endswith("alert unknown ca: the server does not know the CA that issued it; its issuer CN=Audit5 "
                            "CA is not among the CA names the server listed"), with_it  # the cause probe knows
