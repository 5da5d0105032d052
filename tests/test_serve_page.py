"""The page ``certkit serve`` shows, and ``serve --optional``, against real clients.

Headless Chromium (Debian's ``chromium``) loads the page with a client
certificate (bundle.p12 imported into a private NSS database, selected by the
profile's auto-select setting), without one (``--optional``) and with a server
certificate as client certificate (``--optional``); the DOM it dumps must
show both certificates' roles, and its screenshots are the ones docs/serve.md
shows (``CERTKIT_UPDATE_SCREENSHOTS=1`` copies them to docs/img/). curl and
Python's ssl check the same answers as text and JSON, including a client
certificate from another CA and an expired one.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from certkit.serve import PeerIdentity
from certkit.serve_page import ServerFacts, Visit, render_page

from conftest import PASSPHRASE, REPO, certkit_env, chromium, require_chromium, run_certkit
from serve_process import ServeProcess, serving

CA_NAME = "certkit page test CA"
CN = "alice"
P12_PASSWORD = "page p12 password"
WINDOW = (1200, 900)
IMG = REPO / "docs" / "img"
SCREENSHOTS = {"client": "serve-page-client.png", "none": "serve-page-optional-none.png",
               "refused": "serve-page-optional-refused.png"}

# What the page must say in each case: both roles, always.
ROLES = ["The certificate your browser checked", "The certificate the server checked",
         "serverAuth: TLS server authentication"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA; alice's client bundle; the server certificate as a .p12 too; another CA's client;
    an expired client (from a backdated CA in ``old-ca``)."""
    from certkit.ca import CA
    from certkit.store import CADirectory

    root = tmp_path_factory.mktemp("page-pki")
    env = certkit_env(CERTKIT_CA_DIR=str(root / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      CERTKIT_P12_PASSWORD=P12_PASSWORD)
    run_certkit("init-ca", "--name", CA_NAME, env=env, check=True)
    run_certkit("issue-client", CN, "--email", "alice@example.com", "--p12", env=env, cwd=root, check=True)
    run_certkit("issue-server", "localhost", "127.0.0.1", env=env, cwd=root, check=True)
    run_certkit("export-p12", "localhost", env=env, cwd=root, check=True)
    other = dict(env, CERTKIT_CA_DIR=str(root / "other-ca"))
    run_certkit("init-ca", "--name", "Some Other CA", env=other, check=True)
    run_certkit("issue-client", "mallory", env=other, cwd=root, check=True)
    now = dt.datetime.now(dt.UTC)
    old = CA.create("Old CA", not_before=now - dt.timedelta(days=40))
    CADirectory(root / "old-ca").save_new(old, PASSPHRASE.encode())
    old.issue_client("bob", not_before=now - dt.timedelta(days=30), days=10).write(root / "bob")
    (root / "p12-password").touch(0o600)
    (root / "p12-password").write_text(P12_PASSWORD)
    run_certkit("export-p12", "bob", env=env, cwd=root, check=True)
    CA.create(CA_NAME).issue_client("carol").write(root / "carol")  # same name, another key
    run_certkit("export-p12", "carol", env=env, cwd=root, check=True)
    return root


def _env(pki: Path, ca: str = "ca") -> dict[str, str]:
    return certkit_env(CERTKIT_CA_DIR=str(pki / ca), CERTKIT_CA_PASSPHRASE=PASSPHRASE)


def curl(pki: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", str(pki / "ca" / "ca.pem"),
                           "-w", "\n%{http_code}", *args, url], capture_output=True, text=True, timeout=30)


def _pair(pki: Path, who: str) -> tuple[str, ...]:
    return "--cert", str(pki / who / "cert.pem"), "--key", str(pki / who / "privkey.pem")


# --- the page itself ------------------------------------------------------------------------
def _identity(**changes) -> PeerIdentity:
    base = dict(common_name="alice", subject="CN=alice", sans=["email:alice@example.com"], serial="1F",
                issuer=f"CN={CA_NAME}", eku=["clientAuth"], not_after="2030-01-01T00:00:00+00:00",
                fingerprint_sha256="ab" * 32, tls_version="TLSv1.3")
    return PeerIdentity(**(base | changes))


SERVER = ServerFacts(_identity(common_name="localhost", subject="CN=localhost", sans=["DNS:localhost"],
                               eku=["serverAuth"], tls_version=None), CA_NAME)


def test_page_is_self_contained_and_has_light_and_dark():
    page = render_page(Visit(_identity(), [], False), SERVER, "localhost")
    assert "<script" not in page and "<link" not in page and "<img" not in page and "@import" not in page
    assert "http://" not in page and "https://" not in page and "url(" not in page  # nothing fetched, no link out
    assert "@media (prefers-color-scheme: dark)" in page
    assert "docs/mtls.md" in page and "docs/demo.md" in page  # named, since a link would not resolve


def test_page_escapes_what_came_from_certificates_and_headers():
    """A CN or Host with markup or terminal controls is shown, never obeyed."""
    evil = "<script>alert(1)</script>\x1b[2J\u202e"
    page = render_page(Visit(_identity(common_name=evil, subject=f"CN={evil}"), [], False), SERVER,
                       host='"><img src=x>')
    assert "<script>alert" not in page and "<img src=x>" not in page and "\x1b" not in page and "\u202e" not in page
    assert html.escape("<script>alert(1)</script>\\x1b[2J\\u202e") in page
    refused = render_page(Visit(_identity(), [f"because {evil}"], True), SERVER, "localhost")
    assert "<script>alert" not in refused and "\x1b" not in refused


def test_the_name_rule_is_true_of_the_certificate():
    """The page says the server's certificate holds the host asked for only when it does (a visitor
    who told the browser to go on reads that none of its names is the host)."""
    wildcard = ServerFacts(_identity(sans=["DNS:*.example.com", "IP:10.0.0.1"], eku=["serverAuth"]), CA_NAME)
    for server, host, holds in ((SERVER, "localhost", True), (SERVER, "127.0.0.1", False),
                                (wildcard, "www.example.com", True), (wildcard, "a.b.example.com", False),
                                (wildcard, "example.com", False), (wildcard, "10.0.0.1", True)):
        page = render_page(Visit(_identity(), [], False), server, host)
        assert (f"one of its names is <code>{host}</code>, the name you connected to" in page) == holds, host
        assert (f"<strong>none is</strong> <code>{host}</code>" in page) == (not holds), host
        # The headline claims the server is that host only when the certificate names it.
        assert (f"it proves that this server is <code>{host}</code>" in page) == holds, host
        assert (f"it does <strong>not</strong> name <code>{host}</code>" in page) == (not holds), host


def _page_over_tls(pki: Path, port: int, sni: str, host_header: str, check_hostname: bool = True) -> str:
    """The HTML page over a real TLS connection to 127.0.0.1 that carries ``sni`` (none for an IP
    address) and asks with ``Host: host_header``; alice's certificate as the client's."""
    import socket
    import ssl

    ctx = ssl.create_default_context(cafile=str(pki / "ca" / "ca.pem"))
    ctx.check_hostname = check_hostname  # False: a client told to go on (the chain is still verified)
    ctx.load_cert_chain(pki / CN / "fullchain.pem", pki / CN / "privkey.pem")
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20), server_hostname=sni) as tls:
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {host_header}\r\nAccept: text/html\r\nConnection: close\r\n\r\n"
                    .encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    head, _, body = answer.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.0 200") or head.startswith("HTTP/1.1 200"), head
    return body


@pytest.mark.parametrize("mode", [(), ("--optional",)], ids=["required", "optional"])
def test_page_names_what_the_client_connected_to_not_the_host_header(pki: Path, mode: tuple[str, ...]):
    """The server card judges the name the client checked (the TLS SNI name; without SNI the address
    it reached), not the Host header, which a client sets to anything: SNI localhost with
    Host: evil.example.com is a server proved to be localhost, and evil.example.com is not mentioned;
    SNI evil.example.com (a client told to go on) never reads "proves that this server is" it."""
    with serving(*mode, env=_env(pki), cwd=pki) as srv:
        page = _page_over_tls(pki, srv.port, "localhost", "evil.example.com")
        assert "it proves that this server is <code>localhost</code>" in page, page
        assert "one of its names is <code>localhost</code>, the name you connected to" in page
        assert "evil.example.com" not in page
        by_address = _page_over_tls(pki, srv.port, "127.0.0.1", "evil.example.com")  # an IP: no SNI sent
        assert "it proves that this server is <code>127.0.0.1</code>" in by_address, by_address
        told = _page_over_tls(pki, srv.port, "evil.example.com", "localhost", check_hostname=False)
        assert "proves that this server is <code>evil.example.com" not in told
        assert "it does <strong>not</strong> name <code>evil.example.com</code>, so it does not prove" in told, told
        assert "<strong>none is</strong> <code>evil.example.com</code>" in told


# --- --optional with curl and Python's ssl -------------------------------------------------------
@pytest.fixture(scope="module")
def optional_server(pki: Path):
    with serving("--optional", env=_env(pki), cwd=pki) as srv:
        yield srv


def test_optional_start_says_so(optional_server: ServeProcess):
    assert optional_server.info["client_certificate"] == "optional"


def test_optional_without_certificate_answers_why(pki: Path, optional_server: ServeProcess):
    proc = curl(pki, f"https://localhost:{optional_server.port}/")
    assert proc.returncode == 0, proc.stderr
    body, status = proc.stdout.rsplit("\n", 1)
    assert status == "403"
    assert body.startswith("No client certificate was sent.")
    assert f'issued by "CN={CA_NAME}"' in body  # the client CA written as an issuer is (serve8)
    data = json.loads(curl(pki, f"https://localhost:{optional_server.port}/?format=json").stdout.rsplit("\n", 1)[0])
    assert data["authenticated"] is False and data["presented"] is None
    assert data["reason"] == "no client certificate was sent"
    assert data["server_certificate"]["extended_key_usage"] == ["serverAuth"]
    optional_server.wait_for_log("no certificate 127.0.0.1:")


def test_optional_with_good_certificate_authenticates(pki: Path, optional_server: ServeProcess):
    proc = curl(pki, f"https://localhost:{optional_server.port}/?format=json", *_pair(pki, CN))
    body, status = proc.stdout.rsplit("\n", 1)
    assert status == "200", proc.stderr
    data = json.loads(body)
    assert data["authenticated"] is True and data["common_name"] == CN and data["extended_key_usage"] == ["clientAuth"]
    optional_server.wait_for_log('accepted 127.0.0.1:')


def test_optional_client_of_an_intermediate_is_told_to_send_it(pki: Path, optional_server: ServeProcess,
                                                                tmp_path: Path):
    """A client certificate from an intermediate under the trusted root, sent without the
    intermediate: the answer says to send it (curl --cert fullchain.pem), and with it she gets in."""
    env = dict(_env(pki), CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--ca-dir", tmp_path / "int", "--parent-ca-dir", pki / "ca", "--name", "Page Issuing CA",
                env=env, check=True)
    run_certkit("issue-client", "frank", "--ca-dir", tmp_path / "int", cwd=tmp_path, env=env, check=True)
    url = f"https://localhost:{optional_server.port}/?format=json"
    alone = curl(pki, url, *_pair(tmp_path, "frank"))
    body, status = alone.stdout.rsplit("\n", 1)
    assert status == "403", alone.stderr
    assert ("issued by CN=Page Issuing CA, an intermediate CA of this CA" in json.loads(body)["reason"]
            and "send its certificate too: curl --cert fullchain.pem" in json.loads(body)["reason"])
    chained = curl(pki, url, "--cert", str(tmp_path / "frank" / "fullchain.pem"), "--key",
                   str(tmp_path / "frank" / "privkey.pem"))
    body, status = chained.stdout.rsplit("\n", 1)
    assert status == "200" and json.loads(body)["common_name"] == "frank"


@pytest.mark.parametrize("who, words, openssl_words", [
    ("localhost", "this is a server certificate: it has no clientAuth usage", "unsuitable certificate purpose"),
    ("mallory", "not issued by this CA: it was issued by CN=Some Other CA",
     "unable to get local issuer certificate"),
], ids=["server-certificate", "other-ca"])
def test_optional_refused_certificate_is_explained(pki: Path, optional_server: ServeProcess, who: str,
                                                   words: str, openssl_words: str):
    """The handshake completes, nobody is authenticated, and the answer says why, in certkit's words
    and OpenSSL's (the same words the default mode logs when it ends the handshake)."""
    proc = curl(pki, f"https://localhost:{optional_server.port}/?format=json", *_pair(pki, who))
    body, status = proc.stdout.rsplit("\n", 1)
    assert status == "403", proc.stderr
    data = json.loads(body)
    assert data["authenticated"] is False
    assert data["presented"]["common_name"] == who
    assert words in data["reason"] and f"OpenSSL: {openssl_words}" in data["reason"]
    assert "--untrusted" not in data["reason"]  # certkit verify's advice, not this server's
    text = curl(pki, f"https://localhost:{optional_server.port}/", *_pair(pki, who)).stdout
    assert text.startswith("Refused client certificate") and f"refused      {words}" in text
    optional_server.wait_for_log('refused 127.0.0.1:', count=1)
    optional_server.wait_for_log(f"client={who} (refused)")


def test_optional_expired_certificate_is_explained(pki: Path):
    with ServeProcess("--optional", env=_env(pki, "old-ca"), cwd=pki) as srv:
        proc = curl(pki, f"https://localhost:{srv.port}/?format=json", "--cacert", str(pki / "old-ca" / "ca.pem"),
                    *_pair(pki, "bob"))
        body, status = proc.stdout.rsplit("\n", 1)
        assert status == "403", proc.stderr
        reason = json.loads(body)["reason"]
        assert "expired on" in reason and "OpenSSL: certificate has expired" in reason, reason


def test_optional_over_tls12_and_python_ssl(pki: Path, optional_server: ServeProcess):
    """TLS 1.2 (client certificate inside the handshake proper) and Python's ssl as the client."""
    import http.client
    import ssl

    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ssl.create_default_context(cafile=str(pki / "ca" / "ca.pem"))
        ctx.maximum_version = ctx.minimum_version = version
        ctx.load_cert_chain(pki / CN / "fullchain.pem", pki / CN / "privkey.pem")
        conn = http.client.HTTPSConnection("localhost", optional_server.port, context=ctx, timeout=20)
        conn.request("GET", "/", headers={"Accept": "text/html"})
        resp = conn.getresponse()
        page = resp.read().decode()
        conn.close()
        assert resp.status == 200
        assert f'<span id="cn">{CN}</span>' in page
        assert ("TLSv1.2" if version == ssl.TLSVersion.TLSv1_2 else "TLSv1.3") in page


def test_optional_silent_and_plain_http_clients(pki: Path, optional_server: ServeProcess):
    """The pyOpenSSL path keeps the default mode's manners: a silent client holds one thread, not the
    server, and plain HTTP is one log line, not a traceback."""
    import socket

    with socket.create_connection(("127.0.0.1", optional_server.port), timeout=10):
        proc = curl(pki, f"https://localhost:{optional_server.port}/", *_pair(pki, CN))
    assert proc.stdout.rsplit("\n", 1)[1] == "200", proc.stderr
    subprocess.run(["curl", "-sS", "--max-time", "10", f"http://127.0.0.1:{optional_server.port}/"],
                   capture_output=True, timeout=30)
    optional_server.wait_for_log("plain HTTP sent to the HTTPS port")


def test_optional_sends_the_client_ca_names(pki: Path, optional_server: ServeProcess):
    """Like nginx, --optional names the CA it accepts in its CertificateRequest (openssl s_client shows it)."""
    proc = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{optional_server.port}",
                           "-servername", "localhost", "-CAfile", str(pki / "ca" / "ca.pem")],
                          input="", capture_output=True, text=True, timeout=30)
    assert "Acceptable client certificate CA names" in proc.stdout, proc.stdout
    assert f"CN = {CA_NAME}" in proc.stdout.split("Acceptable client certificate CA names", 1)[1]


def test_default_mode_still_refuses_in_the_handshake(pki: Path):
    """Without --optional nothing changed: no certificate, no page."""
    with ServeProcess(env=_env(pki), cwd=pki) as srv:
        proc = curl(pki, srv.url)
        assert proc.returncode == 56 and "alert certificate required" in proc.stderr
        assert srv.info["client_certificate"] == "required"


# --- headless Chromium: the page as a person sees it ---------------------------------------------
def _browser_profile(pki: Path, where: Path, p12: Path | None, port: int, ca: str = "ca",
                     ca_name: str = CA_NAME) -> tuple[Path, Path]:
    """A HOME whose NSS db (~/.pki/nssdb, as Chromium on Linux reads it) trusts the CA and holds ``p12``,
    and a Chromium profile that auto-selects a client certificate for https://localhost:PORT (a headless
    browser cannot show the picker). Nothing outside ``where`` is touched."""
    home, user_data = where / "home", where / "profile"
    db = f"sql:{home / '.pki' / 'nssdb'}"
    (home / ".pki" / "nssdb").mkdir(parents=True)
    run = {"check": True, "capture_output": True, "text": True, "timeout": 60}
    subprocess.run(["certutil", "-N", "-d", db, "--empty-password"], **run)
    subprocess.run(["certutil", "-A", "-d", db, "-n", ca_name, "-t", "C,,", "-i", str(pki / ca / "ca.pem")], **run)
    if p12 is not None:
        subprocess.run(["pk12util", "-d", db, "-i", str(p12), "-w", str(pki / "p12-password")], **run)
    # Chromium's per-profile auto_select_certificate setting (what the AutoSelectCertificateForUrls
    # policy sets), so that no system policy file is written.
    prefs = {"profile": {"content_settings": {"exceptions": {"auto_select_certificate": {
        f"https://localhost:{port},*": {"setting": {"filters": [{"ISSUER": {"CN": ca_name}}]}}}}}}}
    (user_data / "Default").mkdir(parents=True)
    (user_data / "Default" / "Preferences").write_text(json.dumps(prefs))
    return home, user_data


def _chromium(url: str, home: Path, user_data: Path, *what: str) -> subprocess.CompletedProcess:
    return chromium(url, home, user_data, "--hide-scrollbars", f"--window-size={WINDOW[0]},{WINDOW[1]}", *what)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def _look(pki: Path, tmp_path: Path, case: str, p12: Path | None, *serve_args: str, ca: str = "ca",
          ca_name: str = CA_NAME) -> str:
    """Serve, load the page in Chromium twice (DOM, then screenshot); return the visible text
    (and the DOM, and serve's log)."""
    require_chromium()
    with ServeProcess(*serve_args, env=_env(pki, ca), cwd=pki) as srv:
        home, user_data = _browser_profile(pki, tmp_path, p12, srv.port, ca, ca_name)
        url = f"https://localhost:{srv.port}/"
        dom = _chromium(url, home, user_data, "--dump-dom").stdout
        shot = tmp_path / SCREENSHOTS.get(case, f"{case}.png")
        if case in SCREENSHOTS:
            _chromium(url, home, user_data, f"--screenshot={shot}")
        log = srv.stderr
    assert dom.strip(), log
    if case in SCREENSHOTS:
        assert _png_size(shot) == WINDOW
        if os.environ.get("CERTKIT_UPDATE_SCREENSHOTS"):
            IMG.mkdir(exist_ok=True)
            shutil.copyfile(shot, IMG / SCREENSHOTS[case])
    text = html.unescape(re.sub(r"<[^>]+>", " ", dom.split("<body", 1)[-1]))
    return " ".join(text.split()) + "\n" + dom + "\n--- serve log\n" + log


def test_browser_page_with_client_certificate(pki: Path, tmp_path: Path):
    seen = _look(pki, tmp_path, "client", pki / CN / "bundle.p12")
    assert f'<span id="cn">{CN}</span>' in seen, seen[-4000:]  # the server's view of the handshake put it there
    for words in [*ROLES, "clientAuth: TLS client authentication", "The rule your browser applied",
                  "The rule this server applied", "A server certificate here would be refused because",
                  "A client certificate here would be refused because", "DNS:localhost",
                  f"CN={CA_NAME}", "email:alice@example.com", "docs/mtls.md"]:
        assert words in seen, (words, seen[:3000])
    assert 'accepted 127.0.0.1:' in seen and f"client={CN}" in seen


def test_browser_page_optional_without_certificate(pki: Path, tmp_path: Path):
    seen = _look(pki, tmp_path, "none", None, "--optional")
    for words in [*ROLES, "No client certificate was sent", "None: your browser sent no client certificate",
                  "import your bundle.p12", "Chromium", "Firefox", "macOS", "Windows", "ERR_BAD_SSL_CLIENT_AUTH_CERT"]:
        assert words in seen, (words, seen[:3000])
    assert "no certificate 127.0.0.1:" in seen


def test_browser_page_optional_with_a_stale_certificate(pki: Path, tmp_path: Path):
    """A client certificate from an earlier CA of the same name (init-ca run anew): Chromium offers it,
    since the issuer name matches, serve --optional refuses it, and the page says why."""
    seen = _look(pki, tmp_path, "refused", pki / "carol" / "bundle.p12", "--optional")
    for words in [*ROLES, "Your certificate was not accepted", "the server refused it",
                  "another CA of the same name", "OpenSSL:"]:
        assert words in seen, (words, seen[:3000])
    assert "client=carol (refused)" in seen


@pytest.mark.parametrize("who, ca, ca_name", [("localhost", "ca", CA_NAME), ("bob", "old-ca", "Old CA")],
                         ids=["server-certificate", "expired"])
def test_browser_does_not_offer(pki: Path, tmp_path: Path, who: str, ca: str, ca_name: str):
    """A server certificate, or an expired client certificate, as the browser's only certificate:
    Chromium does not send it at all (it offers only certificates fit for client authentication),
    so serve --optional saw none. (curl sends them: see the tests above.)"""
    seen = _look(pki, tmp_path, f"not-offered-{who}", pki / who / "bundle.p12", "--optional", ca=ca,
                 ca_name=ca_name)
    assert "None: your browser sent no client certificate" in seen, seen[:3000]
    assert "no certificate 127.0.0.1:" in seen and "(refused)" not in seen


@pytest.mark.parametrize("name", sorted(SCREENSHOTS.values()))
def test_docs_show_the_screenshots(name: str):
    """docs/serve.md shows each screenshot, committed under docs/img/ at the size the tests take."""
    assert f"](img/{name})" in (REPO / "docs" / "serve.md").read_text()
    assert _png_size(IMG / name) == WINDOW
