"""Audit edges4, findings 1 to 5 and 7, each as a class of defect, with real peers (curl, openssl, Python's
ssl, nginx, certutil in a temporary HOME; servers on 127.0.0.1, stopped by the test):

1. serve's server card states only what is true of its certificate at the request (dates, extendedKeyUsage),
   its log says when the client refused the server (not the other way round), and when its certificate
   expires while it runs;
2. ``trust status`` warns about the key and the expiry of a CA trusted through any entry, and never says
   ``--every-certkit-ca`` removes an entry certkit did not add;
3. serve's refusal of a certificate its CA's inventory does not record is stated in its banner and docs;
4. a profiles.ini in another encoding, with a byte order mark or stray lines, is read; one that cannot be
   read is a skipped store, with the reason;
5. ``serve --host '[::1]'`` binds ::1;
7. probe adds a ``beware:`` note for an expired or not yet valid client certificate a server let in.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_probe import openssl_server

from conftest import PASSPHRASE, REPO, assert_clean_error, certkit_env, require, run_certkit
from nginx_helper import nginx
from serve_process import ServeProcess
from trust_helpers import nss_listing

NOW = dt.datetime.now(dt.UTC)


# --- certificates signed with a CA's key outside certkit (as openssl x509 -req would) -------------------------
def sign(ca: Path, out: Path, cn: str, *, eku: list[str] | None, names: tuple[str, ...] = (),
         not_before: dt.datetime | None = None, not_after: dt.datetime | None = None) -> Path:
    """A leaf for ``cn`` signed by the CA in ``ca`` (its key decrypted with the tests' passphrase): its
    extendedKeyUsage ``eku`` (None: no such extension), DNS or IP ``names``, and its dates; written as
    ``out``/cert.pem, fullchain.pem (the same) and privkey.pem."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from certkit.keys import load_private_key

    ca_key = load_private_key((ca / "ca-key.pem").read_bytes(), PASSPHRASE.encode())
    ca_cert = x509.load_pem_x509_certificate((ca / "ca.pem").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    oids = {"serverAuth": ExtendedKeyUsageOID.SERVER_AUTH, "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
            "anyExtendedKeyUsage": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
    sans = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before or NOW - dt.timedelta(hours=1))
               .not_valid_after(not_after or NOW + dt.timedelta(days=5))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([oids[e] for e in eku]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    out.mkdir(parents=True)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (out / "cert.pem").write_bytes(pem)
    (out / "fullchain.pem").write_bytes(pem)
    (out / "privkey.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    (out / "privkey.pem").chmod(0o600)
    return out


def curl(ca_dir: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    """curl checking the server against the CA (``-k`` among ``args`` turns that off); stdout ends with the status."""
    require("curl")
    return subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", str(ca_dir / "ca.pem"),
                           "-w", "\n%{http_code}", *args, url], capture_output=True, text=True, timeout=30)


def pair(folder: Path) -> tuple[str, ...]:
    return "--cert", str(folder / "cert.pem"), "--key", str(folder / "privkey.pem")


def server_card(page: str) -> str:
    return page[page.index('id="server-card"'):page.index('id="client-card"')]


@pytest.fixture
def alice(ca_dir: Path, ca_env: dict[str, str], tmp_path: Path) -> Path:
    """A client certificate certkit issued (so the CA's inventory records it)."""
    run_certkit("issue-client", "alice", env=ca_env, cwd=tmp_path, check=True)
    return tmp_path / "alice"


def serve_files(ca_dir: Path, server: Path, *args: str) -> ServeProcess:
    return ServeProcess("--cert", server / "fullchain.pem", "--key", server / "privkey.pem", *args,
                        env=certkit_env(CERTKIT_CA_DIR=str(ca_dir)))


def serve_expiring(ca_dir: Path, tmp_path: Path, lead: float, *args: str, before=lambda srv: None):
    """serve (``args``) given a localhost certificate that expires ``lead`` seconds from now, and what
    ``before(srv)`` returned, run while that certificate was still valid: (server, its expiry, that). On a
    machine too loaded to get that far in time, again with a certificate three times as long-lived, so a
    slow start is not taken for serve refusing (an expired certificate) or for a client refusing."""
    for attempt in range(3):
        expires = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=lead * 3 ** attempt)
        folder = sign(ca_dir, tmp_path / f"expiring-{attempt}", "localhost", eku=["serverAuth"],
                      names=("localhost", "127.0.0.1"), not_after=expires)
        try:
            srv = serve_files(ca_dir, folder, *args)
        except AssertionError:  # it did not start: refused a certificate expired meanwhile, or a failure
            if dt.datetime.now(dt.UTC) < expires:
                raise
            continue
        seen = before(srv)
        if dt.datetime.now(dt.UTC) < expires:
            return srv, expires, seen
        srv.stop()
    raise AssertionError(f"serve never started and answered within {lead * 9:g} s")


# --- 1. the server card, true of the certificate at the request --------------------------------------------------
SERVER_CASES = {
    # name: (extendedKeyUsage, not_before, not_after, the rule's lines the card must show, failed)
    "valid": (["serverAuth"], None, None, ["its extendedKeyUsage includes <code>serverAuth</code>",
                                           "valid now, by this server\u2019s clock (from "], False),
    "expired": (["serverAuth"], NOW - dt.timedelta(days=10), NOW - dt.timedelta(days=1),
                ["valid now, not expired; <strong>it expired on", "a browser refuses it unless told to go on"], True),
    "not-yet-valid": (["serverAuth"], NOW + dt.timedelta(days=1), NOW + dt.timedelta(days=9),
                      ["valid now, not expired; <strong>it is not valid before"], True),
    "no-eku": (None, None, None, ["it has no extendedKeyUsage, which TLS clients accept for any purpose"], False),
    "server-and-any": (["serverAuth", "anyExtendedKeyUsage"], None, None,
                       ["its extendedKeyUsage includes <code>serverAuth</code>"], False),
    "any-only": (["anyExtendedKeyUsage"], None, None,
                 ["it has only <code>anyExtendedKeyUsage</code> as its extendedKeyUsage: OpenSSL (curl, Python) "
                  "refuses that for a TLS server"], True),
    "client-only": (["clientAuth"], None, None, ["it has only <code>clientAuth</code> as its extendedKeyUsage, "
                                                 "without <code>serverAuth</code>"], True),
}


@pytest.mark.parametrize("case", sorted(SERVER_CASES))
def test_server_card_states_what_is_true_of_the_certificate(ca_dir: Path, tmp_path: Path, case: str):
    """Finding 1: the card's time and purpose lines were fixed text ("valid now, not expired", "its
    extendedKeyUsage includes serverAuth"), whatever the certificate. Each kind now reads as it is, a
    broken rule marked failed, and the headline proves the server's name only for a certificate that does."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from certkit.serve import PeerIdentity, peer_identity
    from certkit.serve_page import ServerFacts, Visit, as_json, render_page

    eku, not_before, not_after, lines, failed = SERVER_CASES[case]
    folder = sign(ca_dir, tmp_path / case, "localhost", eku=eku, names=("localhost",), not_before=not_before,
                  not_after=not_after)
    der = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes()).public_bytes(Encoding.DER)
    server = ServerFacts(peer_identity(der), "certkit test root")
    client = PeerIdentity("alice", "CN=alice", [], "1F", "CN=certkit test root", ["clientAuth"],
                          "2030-01-01T00:00:00+00:00", "ab" * 32, "TLSv1.3")
    card = server_card(render_page(Visit(client, [], False), server, "localhost"))
    for line in lines:
        assert line in card, (line, card)
    assert ('<li class="failed">' in card) == failed, card
    assert ("it proves that this server is <code>localhost</code>" in card) == (not failed), card
    assert ("it would prove that this server is <code>localhost</code>, but it" in card) == failed, card
    if eku is None or "serverAuth" not in eku:  # the line no longer claims what the certificate lacks
        assert "<li>its extendedKeyUsage includes <code>serverAuth</code></li>" not in card, card
    if not_after is not None and not_after < NOW:
        assert "valid now, by this server" not in card
    validity = {"expired": "expired", "not-yet-valid": "not yet valid"}.get(case, "valid")
    assert as_json(Visit(client, [], False), server)["server_certificate"]["status"] == validity


def test_self_issued_certificate_expired_says_serve_does_not_renew_it(ca_dir: Path, tmp_path: Path):
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from certkit.serve import peer_identity
    from certkit.serve_page import ServerFacts, Visit, render_page

    folder = sign(ca_dir, tmp_path / "old", "localhost", eku=["serverAuth"], names=("localhost",),
                  not_before=NOW - dt.timedelta(days=2), not_after=NOW - dt.timedelta(days=1))
    der = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes()).public_bytes(Encoding.DER)
    card = server_card(render_page(Visit(None, [], True), ServerFacts(peer_identity(der), "CA", self_issued=True),
                                   "localhost"))
    assert "serve issued it for one day and does not renew it: restart <code>certkit serve</code>" in card


def test_serve_whose_certificate_expires_while_it_runs(ca_dir: Path, tmp_path: Path, alice: Path):
    """Finding 1, end to end: a --cert that expires a few seconds after serve starts. Before: curl gets in,
    the card says valid. After: curl refuses the server ("certificate has expired"), serve's log says the
    client refused this server (it said "rejected", as if alice's certificate had expired), and that its own
    certificate expired; the page, for a client told to go on, marks the time rule failed."""
    def card_before(srv: ServeProcess):
        return curl(ca_dir, f"https://localhost:{srv.port}/", *pair(alice), "-H", "Accept: text/html")

    srv, expires, before = serve_expiring(ca_dir, tmp_path, 12, before=card_before)
    with srv:
        url = f"https://localhost:{srv.port}/"
        assert before.stdout.endswith("\n200"), before.stderr
        assert "valid now, by this server\u2019s clock (from" in server_card(before.stdout)
        time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 1.5)
        srv.wait_for_log(f"warning: this server's certificate expired on {expires:%Y-%m-%d %H:%M:%S} UTC: clients "
                         "that check it refuse to connect; give serve a current one (--cert, --key)")
        refused = curl(ca_dir, url, *pair(alice))
        assert refused.returncode == 60 and "certificate has expired" in refused.stderr, refused.stderr
        (line,) = srv.wait_for_log("refused by the client 127.0.0.1:")
        assert "alert certificate expired: it finds this server's certificate expired or not yet valid: this " \
               f"server's certificate expired on {expires:%Y-%m-%d %H:%M:%S} UTC" in line, line
        assert not [x for x in srv.stderr.splitlines() if x.split(" ", 2)[1] == "rejected"], srv.stderr
        told = curl(ca_dir, url, "-k", *pair(alice), "-H", "Accept: text/html")
        card = server_card(told.stdout)
        assert told.stdout.endswith("\n200")
        assert '<li class="failed">valid now, not expired; <strong>it expired on' in card, card
        assert "it would prove that this server is <code>localhost</code>, but it expired on" in card
        assert "valid now, by this server" not in card
        data = json.loads(curl(ca_dir, url + "?format=json", "-k", *pair(alice)).stdout.rsplit("\n", 1)[0])
        assert data["server_certificate"]["status"] == "expired"


def test_a_server_certificate_without_extended_key_usage_is_described_as_such(ca_dir: Path, tmp_path: Path,
                                                                                alice: Path):
    """Finding 1: "(none)" in the facts, and "its extendedKeyUsage includes serverAuth" below. curl takes
    the certificate (no extendedKeyUsage: any purpose), and the card says exactly that."""
    server = sign(ca_dir, tmp_path / "noeku", "localhost", eku=None, names=("localhost",))
    with serve_files(ca_dir, server) as srv:
        page = curl(ca_dir, f"https://localhost:{srv.port}/", *pair(alice), "-H", "Accept: text/html")
    assert page.returncode == 0 and page.stdout.endswith("\n200"), page.stderr
    card = server_card(page.stdout)
    assert "<dt>Usage (EKU)</dt><dd>(none)</dd>" in card
    assert "it has no extendedKeyUsage, which TLS clients accept for any purpose, so <code>serverAuth</code>" in card
    assert "its extendedKeyUsage includes" not in card and 'class="failed"' not in card


def test_log_says_who_ended_the_handshake(ca_dir: Path, tmp_path: Path, alice: Path):
    """Finding 1, the log: an alert the client sent is the client refusing this server ("refused by the
    client"), whatever the alert; this server's own refusals stay "rejected"."""
    import socket
    import ssl

    server = sign(ca_dir, tmp_path / "srv", "localhost", eku=["serverAuth"], names=("localhost", "127.0.0.1"))
    with serve_files(ca_dir, server) as srv:
        # curl with the system's trust store, which does not hold this CA: "unknown ca".
        untrusted = subprocess.run(["curl", "-sS", "--max-time", "20", *pair(alice), f"https://localhost:{srv.port}/"],
                                   capture_output=True, text=True, timeout=30)
        assert untrusted.returncode == 60, untrusted.stderr
        (line,) = srv.wait_for_log("alert unknown ca")
        assert line.split(" ", 1)[1].startswith("refused by the client 127.0.0.1:"), line
        assert "it does not trust the CA that issued this server's certificate" in line
        # Python's ssl asking for a name the certificate does not hold.
        ctx = ssl.create_default_context(cafile=str(ca_dir / "ca.pem"))
        ctx.load_cert_chain(alice / "fullchain.pem", alice / "privkey.pem")
        with pytest.raises(ssl.SSLCertVerificationError):
            ctx.wrap_socket(socket.create_connection(("127.0.0.1", srv.port), timeout=10),
                            server_hostname="elsewhere.example")
        lines = srv.wait_for_log("refused by the client 127.0.0.1:", count=2)
        assert "alert" in lines[1] and "this server's certificate" in lines[1], lines
        # This server refusing: no client certificate.
        assert curl(ca_dir, f"https://localhost:{srv.port}/").returncode != 0
        (line,) = srv.wait_for_log("no client certificate")
        assert line.split(" ", 1)[1].startswith("rejected 127.0.0.1:"), line


def test_the_expiry_watch_of_a_self_issued_certificate(ca_dir: Path, tmp_path: Path, capfd):
    """serve issues itself a one-day certificate and keeps no CA key: when it expires, the log says so,
    and to restart serve."""
    from certkit.cli.serve import _say_when_expired

    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.5)
    folder = sign(ca_dir, tmp_path / "srv", "localhost", eku=["serverAuth"], names=("localhost",), not_after=expires)
    _say_when_expired((folder / "fullchain.pem").read_bytes(), self_issued=True)
    deadline = time.monotonic() + 60
    seen = ""
    while "warning:" not in seen and time.monotonic() < deadline:
        time.sleep(0.2)
        seen += capfd.readouterr().err
    assert "warning: this server's certificate expired on" in seen
    assert "serve issued it for one day and does not renew it (it keeps no CA key): restart certkit serve" in seen


# --- 3. the rule no real server applies, stated ---------------------------------------------------------------
def banner(*args: str, env: dict[str, str]) -> str:
    """What ``certkit serve`` prints at start for people (not --json), up to "Stop with Ctrl-C."; then stopped."""
    proc = subprocess.Popen([sys.executable, "-m", "certkit", "serve", "--port", "0", *args], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        text = ""
        while (line := proc.stdout.readline()) and not line.startswith("Stop with Ctrl-C."):
            text += line
        # stopped at once, before it logs "listening on" (SIGTERM stops it cleanly from its banner on)
    finally:
        watchdog.cancel()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, text  # stopped cleanly, as every command SIGTERM stops
    return text


def test_serve_states_that_it_refuses_unrecorded_client_certificates(ca_dir: Path, ca_env: dict[str, str],
                                                                     tmp_path: Path):
    """Finding 3: a client certificate the CA's key signed outside certkit passes OpenSSL's check and nginx's
    (with the CA's CRL); serve refuses it, and its banner and docs/serve.md say that this is serve's own
    rule. The banner also says serve does not renew its own certificate (finding 1)."""
    dev = sign(ca_dir, tmp_path / "dev1", "dev1", eku=["clientAuth"])
    run_certkit("crl", "--out", tmp_path / "crl.pem", env=ca_env, cwd=tmp_path, check=True)
    verify = subprocess.run(["openssl", "verify", "-CAfile", ca_dir / "ca.pem", "-CRLfile", tmp_path / "crl.pem",
                             "-crl_check", "-purpose", "sslclient", dev / "cert.pem"], capture_output=True, text=True)
    assert verify.returncode == 0 and verify.stdout.strip().endswith(": OK"), verify.stdout + verify.stderr
    srv = sign(ca_dir, tmp_path / "srv", "localhost", eku=["serverAuth"], names=("localhost",))
    tls = (f"ssl_certificate {srv / 'fullchain.pem'};\nssl_certificate_key {srv / 'privkey.pem'};\n"
           f"ssl_client_certificate {ca_dir / 'ca.pem'};\nssl_verify_client on;\nssl_crl {tmp_path / 'crl.pem'};")
    with nginx(tmp_path / "nginx", tls) as (port, _log):
        real = curl(ca_dir, f"https://localhost:{port}/", *pair(dev))
    assert "verify=SUCCESS dn=CN=dev1" in real.stdout, real.stdout + real.stderr

    with serve_files(ca_dir, srv) as serving:
        refused = curl(ca_dir, f"https://localhost:{serving.port}/", *pair(dev))
    assert refused.stdout.endswith("\n403") and "the CA's inventory has no record of it" in refused.stdout

    said = banner(env=ca_env)
    assert ("  so are client certificates \"certkit test root\" signed that its inventory has no record of (signed "
            "with its key outside certkit, or the inventory restored from an older backup): serve's own rule, which "
            "real servers (nginx, OpenSSL) do not apply") in said, said
    assert "serve does not renew it: restart serve for a new one)" in said
    docs = (REPO / "docs" / "serve.md").read_text()
    lets_in = docs[docs.index("- **Whom it lets in**"):docs.index("- **What it answers**")]
    assert "serve's own" in " ".join(lets_in.split()) and "real servers do not apply" in " ".join(lets_in.split())
    assert "has no record of it" in " ".join(lets_in.split())


# --- 5. --host in brackets ------------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["[::1]", "[0:0:0:0:0:0:0:1]"])
def test_serve_host_in_brackets_binds_the_address(ca_dir: Path, ca_env: dict[str, str], tmp_path: Path,
                                                  alice: Path, host: str):
    """Finding 5: "[::1]" was named in the certificate but given to bind() as is ("Name or service not known")."""
    import socket

    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with ServeProcess("--host", host, env=ca_env, cwd=tmp_path) as srv:
        assert srv.url == f"https://[::1]:{srv.port}/" and srv.info["host"] == host[1:-1]
        assert srv.info["server_certificate"]["names"].count("IP:::1") == 1
        ok = curl(ca_dir, srv.url, *pair(alice))
    assert ok.returncode == 0 and ok.stdout.endswith("\n200") and "common name  alice" in ok.stdout, ok.stderr


def test_serve_host_that_cannot_be_bound_is_one_line(ca_env: dict[str, str], ca_dir: Path):
    proc = run_certkit("serve", "--port", "0", "--host", "[2001:db8::1]", env=ca_env)
    assert_clean_error(proc, "Cannot listen on [2001:db8::1]:0: ")
    assert "Name or service not known" not in proc.stderr


# --- 2. trust status: warnings for a CA trusted by anyone's entry ---------------------------------------------
def trust(*args: object, home: Path, ca_dir: Path | None = None) -> subprocess.CompletedProcess:
    argv = ["trust", *map(str, args)] + (["--ca-dir", str(ca_dir)] if ca_dir else [])
    proc = run_certkit(*argv, env=certkit_env(HOME=str(home)))
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def nssdb(home: Path) -> Path:
    require("certutil")
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True, capture_output=True)
    return db


def add_by_hand(db: Path, nickname: str, ca: Path) -> None:
    subprocess.run(["certutil", "-A", "-d", f"sql:{db}", "-n", nickname, "-t", "C,,", "-i", str(ca / "ca.pem")],
                   check=True, capture_output=True)


def new_ca(where: Path, name: str, *args: str) -> Path:
    run_certkit("init-ca", "--ca-dir", where, "--name", name, "--permit-dns", "localhost", *args,
                env=certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE), check=True)
    return where


@pytest.mark.parametrize("action", ["status", "install"])
def test_a_ca_trusted_by_hand_gets_the_key_and_expiry_warnings(tmp_path: Path, action: str):
    """Finding 2: status said "trusted" for an entry added by hand, then left out the warnings it gives for
    certkit's own copy; and the way out it names must be one that removes that entry."""
    home = tmp_path / "home"
    db = nssdb(home)
    ca = new_ca(tmp_path / "ca", "Dev CA", "--no-passphrase", "--days", "10")
    add_by_hand(db, "Dev CA (by hand)", ca)
    proc = trust(action, "--nss", "--json", home=home, ca_dir=ca)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["stores"][0]["outcome"] == ("trusted" if action == "status" else "unchanged")
    (key,) = [w for w in report["warnings"] if "not encrypted" in w]
    assert key.startswith(f"the key of the trusted CA \"Dev CA\" ({(ca / 'ca-key.pem').resolve()}) is not encrypted")
    assert key.endswith(f"take the CA out: the entries certkit did not add (Dev CA (by hand) in {db}) with the "
                        "store's own tool")
    assert any(w.startswith("the trusted CA \"Dev CA\" expires on") for w in report["warnings"]), report["warnings"]


def test_every_certkit_ca_is_not_said_to_remove_an_entry_certkit_did_not_add(tmp_path: Path):
    """Finding 2: with this CA held by hand and another certkit CA installed, the warning said
    --every-certkit-ca "would remove it, but also this CA"; it removes only certkit's entries."""
    home = tmp_path / "home"
    db = nssdb(home)
    old, new, third = (new_ca(tmp_path / n, "Dev CA") for n in ("ca1", "ca2", "ca3"))
    add_by_hand(db, "Old Dev CA", old)
    assert trust("install", "--nss", home=home, ca_dir=new).returncode == 0
    from certkit.trust import Anchor

    this = Anchor.from_ca_dir(old)
    (warning,) = [w for w in trust("status", "--nss", home=home, ca_dir=old).stderr.splitlines() if "another" in w]
    assert "but also this CA" not in warning
    assert warning.endswith(f"(certkit trust uninstall --every-certkit-ca would remove it and every other CA certkit "
                            f"added, but not this CA, \"Dev CA\" ({this.name}), whose entry certkit did not add)")
    # A CA trusted nowhere: nothing about "this CA" either.
    (warning,) = [w for w in trust("status", "--nss", home=home, ca_dir=third).stderr.splitlines() if "another" in w]
    assert warning.endswith("(certkit trust uninstall --every-certkit-ca would remove it and every other CA certkit "
                            "added)"), warning
    # What the warning says, checked: the command removes certkit's copy and leaves the entry by hand.
    assert trust("uninstall", "--nss", "--every-certkit-ca", home=home, ca_dir=old).returncode == 0
    listing = nss_listing(db)
    assert "Old Dev CA" in listing and "certkit-" not in listing


# --- 4. profiles.ini read as Firefox reads it --------------------------------------------------------------------
PROFILES = (b"[Profile1]\nName=other\nIsRelative=1\nPath=xyz.other\n\n[Profile0]\nName=default-release\n"
            b"IsRelative=1\nPath=abc.default-release\nDefault=1\n\n[General]\nStartWithLastProfile=1\nVersion=2\n")


@pytest.mark.parametrize("variant", ["latin-1", "bom", "crlf", "stray-lines"])
def test_profiles_ini_in_another_shape_still_lists_the_profiles(tmp_path: Path, variant: str):
    """Finding 4: one Latin-1 byte in a profile's name, or a byte order mark, dropped every Firefox profile
    without a word. Each variant keeps both profiles in install, status and uninstall."""
    home = tmp_path / "home"
    ca = new_ca(tmp_path / "ca", "Dev CA")
    firefox = home / ".mozilla" / "firefox"
    for folder in ("abc.default-release", "xyz.other"):
        (firefox / folder).mkdir(parents=True)
        subprocess.run(["certutil", "-N", "-d", f"sql:{firefox / folder}", "--empty-password"], check=True,
                       capture_output=True)
    data = {"latin-1": PROFILES.replace(b"Name=other", b"Name=Andr\xe9"), "bom": b"\xef\xbb\xbf" + PROFILES,
            "crlf": PROFILES.replace(b"\n", b"\r\n"),
            "stray-lines": b"# written by hand\n" + PROFILES.replace(b"[General]\n", b"[General]\nnot a setting\n")}
    (firefox / "profiles.ini").write_bytes(data[variant])
    profiles = {str(firefox / "abc.default-release"), str(firefox / "xyz.other")}
    done = {}
    for action in ("install", "status", "uninstall"):
        proc = trust(action, "--nss", "--json", home=home, ca_dir=ca)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        stores = json.loads(proc.stdout)["stores"]
        done[action] = {s["location"]: s["outcome"] for s in stores if s["location"] in profiles}
        assert not [s for s in stores if s["outcome"] == "skipped" and s["label"].startswith("Firefox")], stores
        if action == "install":
            assert all("certkit-" in nss_listing(Path(p)) for p in profiles)
            labels = {s["label"] for s in stores}
            assert ("Firefox profile André" if variant == "latin-1" else "Firefox profile other") in labels, labels
    assert done == {"install": dict.fromkeys(profiles, "added"), "status": dict.fromkeys(profiles, "trusted"),
                    "uninstall": dict.fromkeys(profiles, "removed")}
    assert all("certkit-" not in nss_listing(Path(p)) for p in profiles)


@pytest.mark.parametrize("content", [b"\x00\x01 not an ini file\n[Profile0\nPath=x\n", b"x" * (2 << 20)],
                         ids=["garbage", "too-large"])
def test_profiles_ini_that_cannot_be_read_is_a_skipped_store(tmp_path: Path, content: bytes):
    """Finding 4: a profiles.ini nothing can be read from is reported as a skipped store, with the reason,
    by install, status and uninstall (Chromium's database is still changed)."""
    home = tmp_path / "home"
    nssdb(home)
    ca = new_ca(tmp_path / "ca", "Dev CA")
    ini = home / ".mozilla" / "firefox" / "profiles.ini"
    ini.parent.mkdir(parents=True)
    ini.write_bytes(content)
    for action in ("install", "status", "uninstall"):
        proc = trust(action, "--nss", "--json", home=home, ca_dir=ca)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        stores = {s["label"]: s for s in json.loads(proc.stdout)["stores"]}
        assert stores["Chromium/Chrome"]["outcome"] in ("added", "trusted", "removed")
        skipped = stores["Firefox"]
        assert (skipped["outcome"], skipped["code"], skipped["location"]) == ("skipped", "unreadable", str(ini))
        assert skipped["reason"].startswith("profiles.ini cannot be read (")
        assert "so its profiles are not known and certkit touches none of them" in skipped["reason"]
        text = " ".join(trust(action, "--nss", home=home, ca_dir=ca).stdout.split())
        assert f"skipped nss Firefox: {ini} profiles.ini cannot be read (" in text, text


# --- 7. probe: a server that lets in an out-of-date client certificate ----------------------------------------
@pytest.mark.parametrize("when", ["expired", "not-yet-valid"])
def test_probe_bewares_of_a_server_that_lets_in_an_out_of_date_client_certificate(ca_dir: Path, tmp_path: Path,
                                                                                   alice: Path, when: str):
    """Finding 7: `openssl s_server -verify 1` (no -verify_return_error) lets in an expired client
    certificate; probe said "accepted" with no note, as it does add for a wrong purpose or issuer."""
    dates = {"expired": (NOW - dt.timedelta(days=10), NOW - dt.timedelta(days=1)),
             "not-yet-valid": (NOW + dt.timedelta(days=1), NOW + dt.timedelta(days=10))}[when]
    old = sign(ca_dir, tmp_path / "old", "old", eku=["clientAuth"], not_before=dates[0], not_after=dates[1])
    server = sign(ca_dir, tmp_path / "srv", "localhost", eku=["serverAuth"], names=("localhost",))
    note = (f"beware: it expired on {dates[1]:%Y-%m-%d %H:%M:%S} UTC" if when == "expired" else
            f"beware: it is not valid before {dates[0]:%Y-%m-%d %H:%M:%S} UTC")
    args = ["--ca-file", ca_dir / "ca.pem"]
    with openssl_server("-cert", server / "cert.pem", "-key", server / "privkey.pem", "-CAfile", ca_dir / "ca.pem",
                        "-verify", "1") as port:
        url = f"https://localhost:{port}/"
        lax = run_certkit("probe", url, *args, "--cert", old / "cert.pem", "--key", old / "privkey.pem")
        good = run_certkit("probe", url, *args, "--bundle", alice)
        data = json.loads(run_certkit("probe", url, *args, "--bundle", old, "--json").stdout)
    assert lax.returncode == 0, lax.stdout + lax.stderr
    line = next(x for x in lax.stdout.splitlines() if x.startswith("  with it"))
    assert line == (f"  with it     accepted: the server answered HTTP 200 ok; {note}, yet it got in: this server "
                    "does not check a client certificate's validity dates"), line
    assert data["client_certificate"]["given_status"] == when.replace("-", " ")
    assert note in data["client_certificate"]["verdict"]
    assert good.returncode == 0 and "; beware:" not in good.stdout
    # A server that checks: refused, and no note.
    with openssl_server("-cert", server / "cert.pem", "-key", server / "privkey.pem", "-CAfile", ca_dir / "ca.pem",
                        "-Verify", "1", "-verify_return_error") as port:
        strict = run_certkit("probe", f"https://localhost:{port}/", *args, "--bundle", old)
    assert strict.returncode == 1 and "with it     refused" in strict.stdout and "; beware:" not in strict.stdout


def test_probe_docs_name_the_validity_note():
    text = " ".join((REPO / "docs" / "probe.md").read_text().split())
    assert "one that has expired or is not yet valid" in text and "validity dates" in text
