"""certkit serve, probe and verify, audit house6 (findings 3, 7, 8, 9, 10 and 12's last sentence), against real
peers on 127.0.0.1: certkit serve as a process, curl, Python's ssl and openssl s_server.

3. serve's answers (JSON, text, page) and its start-up --json write a certificate's facts as every other
   command does: dates as ``...Z`` in JSON and ``YYYY-MM-DD HH:MM:SS UTC`` in text, the issuer as a DN,
   labelled names, and the keys ``names`` and ``extended_key_usage``; with --cert too.
7. A certificate issued by an intermediate the CA directory's inventory records is said to be that, with
   "send its certificate too", by verify, probe --ca-dir and serve --optional, never "not issued by this CA";
   another CA's certificate that came with its whole chain gets no "send its certificate too" hedge.
8. serve --host with a port or a URL is told to use --port, naming --host.
9. serve's and probe's valid/expired key is ``status``, as inspect's; ``validity`` is inspect's days left.
10. serve --help says a revoked client certificate passes the handshake and gets HTTP 403, as it does.
12. The --optional page names export-p12's argument as the command does: a FOLDER.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import re
import ssl
import subprocess
from pathlib import Path

import pytest
from test_probe import openssl_server

from conftest import PASSPHRASE, certkit_env, require, run_certkit
from serve_process import ServeProcess, serving


def _env(top: Path, ca: str = "ca", **extra: str) -> dict[str, str]:
    return certkit_env(CERTKIT_CA_DIR=str(top / ca), HOME=str(top / "home"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                       **extra)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """The audit's set-up: ca/ (Serve CA) with localhost/, alice/ (an email) and rv/ (revoked); inter/ (Serve
    Issuing, an intermediate ca/ signed and recorded) with inter-ivan/ and inter-localhost/; other/ (Other CA,
    a root of its own) with olga/ and olocal/."""
    top = tmp_path_factory.mktemp("audit6-serve")
    (top / "home").mkdir()
    env = _env(top)
    run_certkit("init-ca", "--name", "Serve CA", env=env, check=True)
    for args in (("issue-server", "localhost", "127.0.0.1", "::1"), ("issue-client", "alice", "--email",
                                                                      "alice@example.com"), ("issue-client", "rv")):
        run_certkit(*args, env=env, cwd=top, check=True)
    run_certkit("revoke", top / "rv", env=env, check=True)
    run_certkit("init-ca", "--ca-dir", top / "inter", "--parent-ca-dir", top / "ca", "--name", "Serve Issuing",
                env=_env(top, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE), cwd=top, check=True)
    run_certkit("issue-client", "ivan", "--out", "inter-ivan", env=_env(top, "inter"), cwd=top, check=True)
    run_certkit("issue-server", "localhost", "127.0.0.1", "--out", "inter-localhost", env=_env(top, "inter"),
                cwd=top, check=True)
    run_certkit("init-ca", "--name", "Other CA", env=_env(top, "other"), check=True)
    run_certkit("issue-client", "olga", "--out", "olga", env=_env(top, "other"), cwd=top, check=True)
    run_certkit("issue-server", "localhost", "--out", "olocal", env=_env(top, "other"), cwd=top, check=True)
    return top


def curl(top: Path, url: str, *args: object) -> subprocess.CompletedProcess:
    """curl with the CA trusted; the last line of stdout is the HTTP status."""
    require("curl")
    return subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", str(top / "ca" / "ca.pem"),
                           "-w", "\n%{http_code}", *map(str, args), url], capture_output=True, text=True, timeout=30)


def pair(folder: Path, cert: str = "cert.pem") -> tuple[str, ...]:
    return ("--cert", str(folder / cert), "--key", str(folder / "privkey.pem"))


def inspected(top: Path, folder: str) -> dict:
    """certkit inspect --json's description of FOLDER/cert.pem: what every other command says of it."""
    proc = run_certkit("inspect", top / folder / "cert.pem", "--json", env=_env(top), check=True)
    return json.loads(proc.stdout)["items"][0]


def as_text(moment: str) -> str:
    """An ISO moment as certkit's human lines write it."""
    return f"{dt.datetime.fromisoformat(moment):%Y-%m-%d %H:%M:%S} UTC"


# --- 3 and 9: serve's vocabulary -------------------------------------------------------------------------
def test_serve_answers_say_dates_names_and_issuer_as_every_command_does(pki: Path):
    """Before: "not_after": "...+00:00" in the page's JSON, "expires 2027-12-01T16:01:27+00:00" in the text
    answer, "Expires 2027-12-01 16:01 UTC" on the page; the start-up issuer a bare CN and its names unlabelled;
    the keys sans, eku and validity."""
    alice = inspected(pki, "alice")
    with serving(env=_env(pki), cwd=pki) as srv:
        started = srv.info["server_certificate"]
        answer = curl(pki, srv.url + "?format=json", *pair(pki / "alice"))
        text = curl(pki, srv.url, *pair(pki / "alice"))
        page = curl(pki, srv.url + "?format=html", *pair(pki / "alice"))
    data = json.loads(answer.stdout.rsplit("\n", 1)[0])
    # the client's certificate: inspect's facts, under inspect's and issue-client's keys
    assert data["authenticated"] is True
    assert data["names"] == ["email:alice@example.com"] and data["extended_key_usage"] == ["clientAuth"]
    assert data["issuer"] == alice["issuer"] == "CN=Serve CA"
    assert (data["not_before"], data["not_after"]) == (alice["not_before"], alice["not_after"])
    assert data["not_after"].endswith("Z") and data["serial"] == alice["serial"]
    assert not {"sans", "eku", "validity"} & set(data)
    # the server's own, at start-up and in the answer: the same facts in the same words
    server = data["server_certificate"]
    assert started["source"] == "issued" and started["issuer"] == server["issuer"] == "CN=Serve CA"
    assert started["names"] == server["names"] == ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]
    assert started["not_after"] == server["not_after"] and started["not_after"].endswith("Z")
    assert started["serial"] == server["serial"] and started["status"] == server["status"] == "valid"
    assert "validity" not in server and "validity" not in started and "eku" not in server
    # text and page: certkit's human form of the same moments
    lines = text.stdout.splitlines()
    assert f"  expires      {as_text(alice['not_after'])}" in lines, text.stdout
    assert "  issuer       CN=Serve CA" in lines
    assert f"<dt>Expires</dt><dd>{as_text(alice['not_after'])}</dd>" in page.stdout
    assert f"<dt>Expires</dt><dd>{as_text(server['not_after'])}</dd>" in page.stdout
    assert f"<dt>Valid from</dt><dd>{as_text(server['not_before'])}</dd>" in page.stdout
    assert "+00:00" not in answer.stdout + text.stdout + page.stdout


def test_serve_with_cert_describes_that_certificate_at_start(pki: Path):
    """Before: with --cert, the start-up --json gave only {"source", "cert", "key"}: no names, serial or expiry."""
    localhost = inspected(pki, "localhost")
    with serving("--cert", pki / "localhost" / "fullchain.pem", "--key", pki / "localhost" / "privkey.pem",
                 env=certkit_env(CERTKIT_CA_DIR=str(pki / "ca"), HOME=str(pki / "home")), cwd=pki) as srv:
        started = srv.info["server_certificate"]
        # Python's ssl, checking serve's certificate: it is the one described
        context = ssl.create_default_context(cafile=str(pki / "ca" / "ca.pem"))
        context.load_cert_chain(pki / "alice" / "fullchain.pem", pki / "alice" / "privkey.pem")
        conn = http.client.HTTPSConnection("localhost", srv.port, context=context, timeout=10)
        conn.request("GET", "/", headers={"Accept": "application/json"})
        answer = json.load(conn.getresponse())
        conn.close()
    assert started["source"] == "files" and started["cert"].endswith("fullchain.pem")
    assert started["names"] == ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]
    assert started["serial"] == localhost["serial"] == answer["server_certificate"]["serial"]
    assert started["not_after"] == localhost["not_after"] and started["issuer"] == "CN=Serve CA"
    assert started["status"] == localhost["status"] == "valid"


def test_probe_says_the_client_certificates_state_as_status(pki: Path):
    """Before: client_certificate.given_validity = "valid", where inspect's validity is "364 days left"."""
    srv = pki / "localhost"
    with openssl_server("-cert", srv / "cert.pem", "-key", srv / "privkey.pem", "-CAfile", pki / "ca" / "ca.pem",
                        "-verify", "1") as port:
        proc = run_certkit("probe", f"https://localhost:{port}/", "--ca-file", pki / "ca" / "ca.pem", "--bundle",
                           pki / "alice", "--json", env=certkit_env(HOME=str(pki / "home")))
    client = json.loads(proc.stdout)["client_certificate"]
    assert client["given_status"] == inspected(pki, "alice")["status"] == "valid"
    assert "given_validity" not in client


# --- 8: --host is where to listen -------------------------------------------------------------------------
@pytest.mark.parametrize(("host", "fix"), [("localhost:8443", "give --host localhost --port 8443"),
                                           ("[::1]:9443", "give --host ::1 --port 9443"),
                                           ("https://localhost:9443/", "give --host localhost --port 9443"),
                                           ("https://localhost/", "give --host localhost (and the port")])
def test_serve_host_with_a_port_or_url_is_told_to_use_port(pki: Path, host: str, fix: str):
    """Before: "a certificate names the host alone ..., and is valid on every port", about the listening address,
    without naming --host. Nothing is issued: the mistake is caught before the CA is opened."""
    before = run_certkit("list", "--json", env=_env(pki), check=True).stdout
    proc = run_certkit("serve", "--host", host, env=_env(pki))
    assert proc.returncode == 2, proc.stderr
    assert "Invalid value for '--host'" in proc.stderr and fix in proc.stderr, proc.stderr
    assert "takes the address to listen on" in proc.stderr and "certificate" not in proc.stderr
    assert run_certkit("list", "--json", env=_env(pki), check=True).stdout == before


# --- 10: what happens to a revoked client certificate ---------------------------------------------------
def test_serve_help_says_a_revoked_certificate_passes_the_handshake_and_gets_403(pki: Path):
    """Before: --help said connections without a valid client certificate "are refused in the handshake"; a
    revoked one gets HTTP 403 after a handshake that passes (curl exits 0), as the help now says."""
    help_text = " ".join(run_certkit("serve", "--help", check=True).stdout.split())
    assert "Connections without a valid client certificate from the CA are refused in the handshake" not in help_text
    assert ("records as revoked, or has no record of, passes the handshake (the inventory is read after it) and "
            "gets HTTP 403 with the page that says why: curl exits 0 then") in help_text
    with serving(env=_env(pki), cwd=pki) as srv:
        revoked = curl(pki, srv.url, *pair(pki / "rv"))
        failing = curl(pki, srv.url, "--fail", *pair(pki / "rv"))
        none = curl(pki, srv.url)
    assert revoked.returncode == 0 and revoked.stdout.endswith("\n403"), revoked.stderr
    assert "refused      revoked on " in revoked.stdout
    assert failing.returncode == 22, failing.stderr  # what the help advises for scripts
    assert none.returncode != 0 and "alert certificate required" in none.stderr  # refused in the handshake


# --- 12: export-p12 takes a folder ----------------------------------------------------------------------
def test_optional_page_names_export_p12s_folder_argument(pki: Path):
    usage = run_certkit("export-p12", "--help", check=True).stdout.splitlines()[0]
    assert usage == "Usage: certkit export-p12 [OPTIONS] FOLDER"
    with serving("--optional", env=_env(pki), cwd=pki) as srv:
        page = curl(pki, srv.url + "?format=html").stdout
    assert "<code>certkit export-p12 FOLDER</code>" in page and "export-p12 NAME" not in page
    assert "<code>certkit export-p12 alice</code>" in page
    made = run_certkit("export-p12", pki / "alice", env=_env(pki, CERTKIT_P12_PASSWORD="p12 test password"))
    assert made.returncode == 0 and (pki / "alice" / "bundle.p12").is_file(), made.stderr


# --- 7: an intermediate of this CA, recorded in its inventory --------------------------------------------
def test_verify_names_the_recorded_intermediate_and_no_hedge_for_a_whole_chain(pki: Path):
    proc = run_certkit("verify", pki / "inter-ivan" / "cert.pem", "--purpose", "client", env=_env(pki))
    reason = next(line for line in proc.stdout.splitlines() if line.startswith("  reason"))
    assert proc.returncode == 1
    assert reason == ("  reason    issued by CN=Serve Issuing, an intermediate CA of this CA (CN=Serve CA, whose "
                      "inventory records it), which the chain given lacks: verify fullchain.pem or pass its "
                      "certificate with --untrusted"), reason
    # the advice works
    whole = run_certkit("verify", pki / "inter-ivan" / "fullchain.pem", "--purpose", "client", env=_env(pki))
    assert whole.returncode == 0, whole.stdout + whole.stderr
    # another CA's certificate, as its bundle's fullchain.pem: no "if ... is an intermediate" hedge, whether the
    # CA directory's inventory tells (it records no intermediate of that name) or the bundle does (--ca-file)
    for trust in ((), ("--ca-file", pki / "ca" / "ca.pem")):
        other = run_certkit("verify", pki / "olga" / "fullchain.pem", "--purpose", "client", *trust, env=_env(pki))
        reason = next(line for line in other.stdout.splitlines() if line.startswith("  reason"))
        assert other.returncode == 1, other.stdout
        assert reason.startswith("  reason    not issued by this CA: it was issued by CN=Other CA, and the trusted "
                                 "CA is CN=Serve CA"), reason
        assert "is an intermediate CA under it" not in reason and "--untrusted" not in reason, reason


def test_probe_ca_dir_root_names_the_recorded_intermediate_the_server_does_not_send(pki: Path):
    home = certkit_env(HOME=str(pki / "home"))
    srv = pki / "inter-localhost"
    with openssl_server("-cert", srv / "cert.pem", "-key", srv / "privkey.pem") as port:
        proc = run_certkit("probe", f"https://localhost:{port}/", "--ca-dir", pki / "ca", env=home)
    with openssl_server("-cert", srv / "cert.pem", "-cert_chain", srv / "fullchain.pem", "-key",
                        srv / "privkey.pem") as port:  # what the advice says: the intermediate sent too
        fixed = run_certkit("probe", f"https://localhost:{port}/", "--ca-dir", pki / "ca", env=home)
    other = pki / "olocal"
    with openssl_server("-cert", other / "fullchain.pem", "-key", other / "privkey.pem") as port:
        foreign = run_certkit("probe", f"https://localhost:{port}/", "--ca-dir", pki / "ca", env=home)
    reasons = [line for line in proc.stdout.splitlines() if line.startswith("  reason")]
    assert proc.returncode == 1
    assert reasons == ["  reason      issued by CN=Serve Issuing, an intermediate CA of this CA (CN=Serve CA, whose "
                       "inventory records it), which the server does not send: send its certificate too: configure "
                       "the server with fullchain.pem, e.g. nginx ssl_certificate, not cert.pem alone"], proc.stdout
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr  # the advice works
    reason = next(line for line in foreign.stdout.splitlines() if line.startswith("  reason"))
    assert reason == ("  reason      not issued by this CA: it was issued by CN=Other CA, and the trusted CA is "
                      "CN=Serve CA, whose inventory records no intermediate CA of that name"), reason


def test_serve_optional_names_the_recorded_intermediate_and_no_hedge_for_another_ca(pki: Path):
    with serving("--optional", env=_env(pki), cwd=pki) as srv:
        ivan = curl(pki, srv.url, *pair(pki / "inter-ivan"))
        page = curl(pki, srv.url + "?format=html", *pair(pki / "inter-ivan")).stdout
        ivan_whole = curl(pki, srv.url, *pair(pki / "inter-ivan", "fullchain.pem"))
        olga = curl(pki, srv.url, *pair(pki / "olga", "fullchain.pem"))
    assert ivan.stdout.endswith("\n403"), ivan.stderr
    refused = [line for line in ivan.stdout.splitlines() if line.startswith("  refused")]
    assert refused[0] == ("  refused      issued by CN=Serve Issuing, an intermediate CA of this CA (CN=Serve CA, "
                          "whose inventory records it), which the client did not send: send its certificate too: curl "
                          "--cert fullchain.pem, or the bundle.p12 that holds it"), refused
    assert "not issued by this CA" not in ivan.stdout + page
    assert ivan_whole.stdout.endswith("\n200") and "common name  ivan" in ivan_whole.stdout  # the advice works
    assert olga.stdout.endswith("\n403"), olga.stderr
    refused = [line for line in olga.stdout.splitlines() if line.startswith("  refused")]
    assert refused[0] == ("  refused      not issued by this CA: it was issued by CN=Other CA, and the trusted CA is "
                          "CN=Serve CA, whose inventory records no intermediate CA of that name"), refused
    assert "send its certificate too" not in olga.stdout
    # --client-ca of a CA whose inventory serve does not read: nothing tells whether the issuer is an
    # intermediate under it, so the advice stays conditional (and true).
    with ServeProcess("--optional", "--client-ca", pki / "ca" / "ca.pem", "--cert",
                      pki / "localhost" / "fullchain.pem", "--key", pki / "localhost" / "privkey.pem",
                      env=certkit_env(HOME=str(pki / "home"), CERTKIT_CA_DIR=str(pki / "other")), cwd=pki) as srv:
        ivan = curl(pki, srv.url, *pair(pki / "inter-ivan"))
    assert re.search(r"if CN=Serve Issuing is an intermediate CA under it, the client must send its certificate "
                     "too", ivan.stdout), ivan.stdout
