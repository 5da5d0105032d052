"""certkit probe and certkit trust, audit trustserve3 (findings 1 to 6), against real peers:

1. a completed handshake followed by no HTTP answer (a timeout, an end of the connection, an SMTP
   banner) is "not known", never "refused" nor "required" (openssl s_server without -www, a Python
   ``ssl`` server that speaks SMTP);
2. ``trust status`` says "trusted" for the CA that an NSS database trusts under a nickname certkit did
   not give (added by hand, also in a database with a password);
3. a failed ``trust install`` never deletes an entry certkit did not add, and status names what a
   certkit-shaped nickname really holds (certutil, and a certutil that fails after storing);
4. an encrypted ``--key`` for probe is one ``Error:`` line: no OpenSSL prompt, nothing read from stdin;
5. a CA certificate as the server's own (``openssl req -x509``): probe says which clients take it,
   checked with Python's ``ssl``, curl and (where installed) Chromium;
6. a URL with a user name and password is refused, the password never echoed.

Servers listen on 127.0.0.1 and are stopped by the tests; every NSS database is under a temporary HOME.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_probe import openssl_server

from conftest import assert_clean_error, certkit_env, free_port, require, run_certkit, wait_listening
from trust_helpers import CHROMIUM, chromium, client_env, nss_listing


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """ca/ (Audit CA) with localhost/ (server) and alice/ (client), for probe; for trust, two CAs limited by
    name constraints (no consent asked): dev/ (Dev CA) and other/ (Other CA)."""
    root = tmp_path_factory.mktemp("audit3-pki")
    env = certkit_env(CERTKIT_CA_DIR=str(root / "ca"))
    run_certkit("init-ca", "--name", "Audit CA", "--no-passphrase", env=env, check=True)
    run_certkit("init-ca", "--ca-dir", root / "dev", "--name", "Dev CA", "--permit-dns", "localhost",
                "--no-passphrase", env=env, check=True)
    run_certkit("issue-server", "localhost", "127.0.0.1", env=env, cwd=root, check=True)
    run_certkit("issue-client", "alice", env=env, cwd=root, check=True)
    run_certkit("init-ca", "--ca-dir", root / "other", "--name", "Other CA", "--permit-dns", "home.arpa",
                "--no-passphrase", env=env, check=True)
    return root


def probe(pki: Path, port: int, *args: object) -> subprocess.CompletedProcess:
    proc = run_certkit("probe", f"https://localhost:{port}/", "--ca-dir", pki / "ca", "--timeout", "1",
                       *map(str, args), env=certkit_env())
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def line(proc: subprocess.CompletedProcess, head: str) -> str:
    return next(x for x in proc.stdout.splitlines() if x.startswith(head))


# --- 1. no HTTP answer after a completed handshake ----------------------------------------------
@contextmanager
def silent_s_server(pki: Path, *args: str) -> Iterator[int]:
    """``openssl s_server`` without -www: it completes handshakes, verifies, logs the request and answers
    nothing (its stdin, where an answer would come from, stays open and empty)."""
    require("openssl")
    port = free_port()
    proc = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert",
                             str(pki / "localhost" / "cert.pem"), "-key", str(pki / "localhost" / "privkey.pem"),
                             "-CAfile", str(pki / "ca" / "ca.pem"), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_listening(port, proc, "openssl s_server")
        yield port
    finally:
        proc.kill()
        proc.communicate(timeout=10)


@contextmanager
def smtp_like_server(pki: Path) -> Iterator[int]:
    """A Python ``ssl`` server that requires a client certificate of the CA, then answers like a mail
    server (``220 ... ESMTP ready``) and closes: it accepted the certificate, and speaks no HTTP."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "localhost" / "fullchain.pem", pki / "localhost" / "privkey.pem")
    ctx.load_verify_locations(pki / "ca" / "ca.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            raw.settimeout(5)
            tls = ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            try:
                tls.do_handshake()
                tls.recv(4096)
                tls.sendall(b"220 mail.example ESMTP ready\r\n")
                tls.close()
            except (ssl.SSLError, OSError):
                # No certificate, or one it refuses: the alert is sent. Read on until the client closes, so that
                # closing here does not reset the connection before the client reads the alert.
                with socket.socket(fileno=tls.detach()) as plain:
                    try:
                        while plain.recv(4096):
                            pass
                    except OSError:
                        pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(10)
        listener.close()


def test_required_certificate_accepted_but_no_http_answer_is_not_known(pki: Path):
    """Finding 1: s_server -Verify 1 -verify_return_error verified alice and read the request, then said
    nothing: probe called her certificate refused (exit 1, accepted false). A real refusal stays one."""
    with silent_s_server(pki, "-Verify", "1", "-verify_return_error") as port:
        alice = probe(pki, port, "--bundle", pki / "alice")
        data = json.loads(probe(pki, port, "--bundle", pki / "alice", "--json").stdout)["client_certificate"]
        server_as_client = probe(pki, port, "--bundle", pki / "localhost")
    assert line(alice, "  with it").startswith("  with it     not known: the handshake took it, but no answer to the "
                                               "HTTP request in time"), alice.stdout
    assert "refused" not in line(alice, "  with it")
    assert alice.returncode == 1
    assert alice.stderr.strip() == (f"Error: localhost:{port}: the server gave no HTTP answer (no answer to the HTTP "
                                    "request in time), so whether it accepts the client certificate is not known.")
    assert data["accepted"] is None and data["with_it"]["handshake"] == "ok", data
    # Without a certificate, the TLS 1.3 alert on the first read is a refusal, as before.
    assert line(alice, "  without").startswith("  without     required: without one the server refused (tlsv13 alert "
                                               "certificate required")
    # A server certificate as client certificate: an alert, a refusal.
    assert "with it     refused: tls alert unsupported certificate" in server_as_client.stdout
    assert server_as_client.stderr.strip() == f"Error: localhost:{port}: the client certificate is refused."


def test_optional_certificate_and_no_http_answer_is_not_known_not_required(pki: Path):
    """Finding 1: s_server -verify 1 (a certificate optional) without -www: probe said "required:
    without one the server refused", of a server that required nothing."""
    with silent_s_server(pki, "-verify", "1") as port:
        proc = probe(pki, port, "--bundle", pki / "alice")
        data = json.loads(probe(pki, port, "--json").stdout)["client_certificate"]
    without = line(proc, "  without")
    assert without.startswith("  without     not known: the server asks for one and completed the handshake "
                              "without it, but no answer to the HTTP request in time"), proc.stdout
    assert "required" not in without.replace("whether it requires one", "")
    assert line(proc, "  with it").startswith("  with it     not known: the handshake took it")
    assert data["without_one_verdict"].startswith("not known: ") and data["requested"] is True


def test_certificate_accepted_by_a_server_that_speaks_no_http_is_not_known(pki: Path):
    """Finding 1: a TLS server requiring a client certificate, which accepts alice's and answers with an
    SMTP banner: probe said "refused: the server closed the connection (Unexpected EOF)"."""
    with smtp_like_server(pki) as port:
        proc = probe(pki, port, "--bundle", pki / "alice")
        data = json.loads(probe(pki, port, "--bundle", pki / "alice", "--json").stdout)["client_certificate"]
        other = probe(pki, port, "--bundle", pki / "localhost")
    assert line(proc, "  with it") == ("  with it     not known: the handshake took it, but the answer is not HTTP: "
                                       "no HTTP answer says whether the server accepts the certificate (probe a URL "
                                       "that answers HTTP)"), proc.stdout
    assert proc.returncode == 1 and "is not known" in proc.stderr and "refused" not in proc.stderr
    assert data["accepted"] is None and data["with_it"]["read_error"] == "the answer is not HTTP", data
    assert "required: without one the server refused (tlsv13 alert certificate required" in proc.stdout
    assert "with it     refused: tls alert unsupported certificate" in other.stdout


# --- 4. an encrypted client key -------------------------------------------------------------------
@pytest.mark.parametrize("form", ["pkcs8", "traditional"])
def test_an_encrypted_client_key_is_refused_without_any_prompt(pki: Path, tmp_path: Path, form: str):
    """Finding 4: OpenSSL asked for the passphrase itself (twice), read it from stdin when one was piped
    in (exit 0), and otherwise said "PEM lib". Now: serve --key's one line, before any connection."""
    require("openssl")
    key = tmp_path / "alice_enc.key"
    convert = ["pkey"] if form == "pkcs8" else ["ec"]
    subprocess.run(["openssl", *convert, "-in", pki / "alice" / "privkey.pem", "-aes256", "-passout", "pass:abc",
                    "-out", key], check=True, capture_output=True)
    assert (b"ENCRYPTED" in key.read_bytes())
    with openssl_server("-cert", pki / "localhost" / "cert.pem", "-key", pki / "localhost" / "privkey.pem",
                        "-CAfile", pki / "ca" / "ca.pem", "-Verify", "1", "-verify_return_error") as port:
        for extra in ([], ["--json"]):
            # A real process, detached from any terminal, with the passphrase waiting on its stdin.
            proc = subprocess.run([sys.executable, "-m", "certkit", "probe", f"https://localhost:{port}/", "--ca-dir",
                                   str(pki / "ca"), "--cert", str(pki / "alice" / "cert.pem"), "--key", str(key),
                                   *extra], input="abc\n", capture_output=True, text=True, timeout=60,
                                  env=certkit_env(), start_new_session=True)
            assert "pass phrase" not in proc.stderr.lower(), proc.stderr
            assert_clean_error(proc, f"The client key {key} is encrypted; give an unencrypted key (mode 0600).")
    # The key as certkit wrote it still works.
    with openssl_server("-cert", pki / "localhost" / "cert.pem", "-key", pki / "localhost" / "privkey.pem",
                        "-CAfile", pki / "ca" / "ca.pem", "-Verify", "1", "-verify_return_error") as port:
        assert probe(pki, port, "--bundle", pki / "alice").returncode == 0


# --- 6. user name and password in the URL -----------------------------------------------------------
@pytest.mark.parametrize("url", ["https://user:s3cret@localhost:{port}/", "user:s3cret@localhost:{port}/path",
                                 "https://user:s3cret@[::1]:{port}/?q=a@b"])
def test_a_url_with_a_user_and_password_is_refused_without_echoing_them(url: str):
    """Finding 6: the credentials were ignored (no Authorization sent, so a 401 read as a refused
    client certificate) and the password printed back in the report and in --json."""
    url = url.format(port=free_port())
    for extra in ([], ["--json"]):
        proc = run_certkit("probe", url, *extra)
        assert_clean_error(proc, "holds a user name or password (before '@'); probe sends no credentials")
        assert "s3cret" not in proc.stdout + proc.stderr and "user" not in (proc.stdout + proc.stderr).replace(
            "a user name", "")
    # An '@' in the path or query is no user name.
    assert "holds a user name" not in run_certkit("probe", f"https://localhost:{free_port()}/a@b").stderr


# --- 5. a CA certificate as the server's own ---------------------------------------------------------
def test_a_ca_certificate_as_the_servers_own_says_which_clients_take_it(tmp_path: Path):
    """Finding 5: OpenSSL's defaults put CA:TRUE on `openssl req -x509`'s certificate. curl, Python and
    OpenSSL accept it as a server's own, Firefox does not (mozilla::pkix: CA_CERT_USED_AS_END_ENTITY);
    probe said a flat NO next to "chain verified". It still exits 1, for Firefox, and says who takes it."""
    require("openssl")
    require("curl")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-days", "5",
                    "-keyout", tmp_path / "self.key", "-out", tmp_path / "self.pem"], check=True, capture_output=True)
    self_pem = tmp_path / "self.pem"
    with openssl_server("-cert", self_pem, "-key", tmp_path / "self.key") as port:
        url = f"https://localhost:{port}/"
        proc = run_certkit("probe", url, "--ca-file", self_pem, env=certkit_env())
        data = json.loads(run_certkit("probe", url, "--ca-file", self_pem, "--json", env=certkit_env()).stdout)
        by_ip = run_certkit("probe", f"https://127.0.0.1:{port}/", "--ca-file", self_pem, env=certkit_env())
        # The real clients, trusting the same file.
        curl = subprocess.run(["curl", "-sS", "--cacert", self_pem, "-o", "/dev/null", "-w", "%{http_code}", url],
                              capture_output=True, text=True, timeout=30, env=client_env())
        python = subprocess.run([sys.executable, "-c", "import ssl, sys, urllib.request; print(urllib.request.urlopen("
                                 "sys.argv[1], context=ssl.create_default_context(cafile=sys.argv[2])).status)",
                                 url, self_pem], capture_output=True, text=True, timeout=30, env=client_env())
        browser = _chromium_with(self_pem, url, tmp_path) if CHROMIUM and require("certutil") else None
    assert curl.stdout == "200" and python.stdout.strip() == "200", (curl, python)
    if browser is not None:  # what docs/probe.md says of Chromium
        assert "s_server" in browser.stdout, browser.stderr[-2000:]
    assert "Is it a valid TLS server certificate for localhost? NO, not for every client" in proc.stdout
    assert "  serverAuth  NO for Firefox: issuing certificates (CA)" in proc.stdout
    assert "  chain       verified against the CA in" in proc.stdout
    assert line(proc, "  clients").startswith("  clients     OpenSSL accepts it (the chain line above is its "
                                              "verdict), and so do curl and Python's ssl; Firefox refuses a CA "
                                              "certificate as a server's own (MOZILLA_PKIX_ERROR_CA_CERT_USED_AS_END")
    assert proc.returncode == 1 and proc.stderr.strip() == (
        f"Error: localhost:{port}: the server's certificate is a CA certificate, which Firefox refuses (OpenSSL "
        "clients accept it).")
    server = data["server_certificate"]
    assert server["ca_as_server"] is True and server["server_auth"] is False and server["ok"] is False
    # For a name it does not hold, nobody takes it: a plain NO, and no word about clients.
    assert "for 127.0.0.1? NO\n" in by_ip.stdout and "  clients" not in by_ip.stdout
    assert by_ip.stderr.strip().endswith("the server's certificate is not valid for 127.0.0.1: the name is not among "
                                         "its names.")


def _chromium_with(anchor: Path, url: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Headless Chromium whose NSS database (under a temporary HOME) trusts ``anchor`` for servers."""
    home = tmp_path / "chromium-home"
    db = home / ".pki/nssdb"
    db.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True, capture_output=True)
    subprocess.run(["certutil", "-A", "-d", f"sql:{db}", "-n", "self", "-t", "C,,", "-i", anchor], check=True,
                   capture_output=True)
    return chromium(url, home, tmp_path / "chromium-data")


# --- 2 and 3. NSS entries certkit did not add ----------------------------------------------------------
def trust(*args: object, home: Path, ca_dir: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = run_certkit("trust", *map(str, args), "--ca-dir", ca_dir,
                       env=certkit_env(HOME=str(home), **(env or {})))
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def new_db(home: Path, password: Path | None = None) -> Path:
    require("certutil")
    db = home / ".pki/nssdb"
    db.mkdir(parents=True)
    how = ["-f", str(password)] if password else ["--empty-password"]
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", *how], check=True, capture_output=True)
    return db


def add_by_hand(db: Path, nickname: str, pem: Path, flags: str = "C,,", password: Path | None = None) -> None:
    subprocess.run(["certutil", "-A", "-d", f"sql:{db}", "-n", nickname, "-t", flags, "-i", str(pem),
                    *(["-f", str(password)] if password else [])], check=True, capture_output=True)


@pytest.mark.parametrize("protected", [False, True], ids=["empty password", "primary password"])
def test_status_says_trusted_for_the_ca_trusted_under_another_nickname(pki: Path, tmp_path: Path, protected: bool):
    """Finding 2: install said "already trusted" (unchanged), then status said "not trusted" for the
    same database; also for a database with a password, where docs/trust.md tells you to add it by hand."""
    home = tmp_path / "home"
    password = tmp_path / "pw" if protected else None
    if password:
        password.write_text("primary password\n")
    db = new_db(home, password)
    add_by_hand(db, "Dev CA (by hand)", pki / "dev" / "ca.pem", password=password)
    if not protected:
        installed = trust("install", "--nss", home=home, ca_dir=pki / "dev")
        assert installed.returncode == 0 and installed.stdout.splitlines()[2].startswith("unchanged  nss")
    listing = nss_listing(db)
    status = trust("status", "--nss", home=home, ca_dir=pki / "dev")
    (store,) = json.loads(trust("status", "--nss", "--json", home=home, ca_dir=pki / "dev").stdout)["stores"]
    assert status.returncode == 0
    assert status.stdout.splitlines()[2] == f"trusted  nss     Chromium/Chrome: {db}", status.stdout
    assert "this CA is trusted as Dev CA (by hand) (not certkit's copy)" in status.stdout
    assert "certkit did not add that entry: certkit trust uninstall leaves it" in status.stdout
    assert (store["outcome"], store["current"], store["elsewhere"]) == ("trusted", None, ["Dev CA (by hand)"])
    gone = trust("uninstall", "--nss", "--json", home=home, ca_dir=pki / "dev")
    assert json.loads(gone.stdout)["stores"][0]["outcome"] == "absent" and nss_listing(db) == listing


def test_status_is_not_trusted_for_an_entry_without_trust(pki: Path, tmp_path: Path):
    """The other side of finding 2: an entry by hand whose trust flags do not trust it for servers."""
    home = tmp_path / "home"
    add_by_hand(new_db(home), "Dev CA (kept, untrusted)", pki / "dev" / "ca.pem", flags=",,")
    (store,) = json.loads(trust("status", "--nss", "--json", home=home, ca_dir=pki / "dev").stdout)["stores"]
    assert store["outcome"] == "not trusted" and store["elsewhere"] == []


def test_a_failed_install_never_deletes_an_entry_under_certkits_nickname(pki: Path, tmp_path: Path):
    """Finding 3: someone else's certificate (Other CA, trusted) under the nickname certkit would give:
    install failed, then deleted that entry; status called it "(no certificate in it)", and
    uninstall --every-certkit-ca would have deleted it too."""
    from certkit.trust import Anchor

    home = tmp_path / "home"
    db = new_db(home)
    nickname = Anchor.from_ca_dir(pki / "dev").nickname
    add_by_hand(db, nickname, pki / "other" / "ca.pem")
    listing = nss_listing(db)
    assert f"{nickname}" in listing

    status = trust("status", "--nss", home=home, ca_dir=pki / "dev")
    assert "(no certificate in it)" not in status.stdout and "another certkit CA" not in status.stdout
    assert (f"'{nickname}' has the form of a certkit name, but holds a certificate whose fingerprint it does not "
            "carry (CN=Other CA): certkit did not add it, and leaves it alone") in status.stdout
    assert status.stdout.splitlines()[2].startswith("not trusted")

    install = trust("install", "--nss", "--json", home=home, ca_dir=pki / "dev")
    (store,) = json.loads(install.stdout)["stores"]
    assert install.returncode == 1 and store["outcome"] == "failed"
    assert store["reason"].startswith(f"'{nickname}' in {db} holds another certificate, not this CA: certkit does not "
                                      "change an entry it did not add"), store["reason"]
    assert nss_listing(db) == listing  # the entry, and its trust, as they were

    everything = run_certkit("trust", "uninstall", "--nss", "--every-certkit-ca", "--json",
                             env=certkit_env(HOME=str(home)))
    assert json.loads(everything.stdout)["stores"][0]["outcome"] == "absent", everything.stdout
    assert nss_listing(db) == listing
    exported = subprocess.run(["certutil", "-L", "-d", f"sql:{db}", "-n", nickname, "-a"], capture_output=True,
                              check=True).stdout
    assert exported.replace(b"\r\n", b"\n").strip() == (pki / "other" / "ca.pem").read_bytes().strip()


def _failing_certutil(tmp_path: Path) -> dict:
    """A certutil that does what the real one does, then reports a failure for every -A (as certutil does
    when it stores the certificate but cannot set its trust): PATH for certkit to find it first."""
    real = require("certutil")
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "certutil"
    script.write_text(f'#!/bin/sh\n"{real}" "$@"; status=$?\nfor a in "$@"; do [ "$a" = -A ] && exit 1; done\n'
                      'exit $status\n')
    script.chmod(0o755)
    return {"PATH": f"{folder}:{client_env()['PATH']}"}


def test_cleanup_after_a_failed_add_takes_out_only_what_it_added(pki: Path, tmp_path: Path):
    """Finding 3, the cleanup itself: after a failed certutil -A, certkit deleted whatever the nickname
    named. Now only an entry that was not there before, and holds this CA, is taken out again."""
    from certkit.trust import Anchor

    anchor = Anchor.from_ca_dir(pki / "dev")
    failing = _failing_certutil(tmp_path)
    home = tmp_path / "home"
    db = new_db(home)
    empty = nss_listing(db)
    fresh = trust("install", "--nss", home=home, ca_dir=pki / "dev", env=failing)
    assert fresh.returncode == 1 and "certutil -A" in fresh.stderr
    assert nss_listing(db) == empty  # what it added is out again

    # certkit's own entry, whose trust was taken away: a failed install to set it again leaves it there.
    assert trust("install", "--nss", home=home, ca_dir=pki / "dev").returncode == 0
    subprocess.run(["certutil", "-M", "-d", f"sql:{db}", "-n", anchor.nickname, "-t", ",,"], check=True,
                   capture_output=True)
    again = trust("install", "--nss", home=home, ca_dir=pki / "dev", env=failing)
    assert again.returncode == 1
    assert anchor.nickname in nss_listing(db)  # (its trust is what the real certutil -A left)
