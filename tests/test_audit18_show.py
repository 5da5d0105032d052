"""probe, serve and verify, audit round eighteen (helper "show"), against real peers on 127.0.0.1.

- show18 #1: a CA out of its dates was taken for the certificate below it. probe of a server whose own
  certificate is in its dates but whose intermediate (or root) has expired said ``the server's certificate is not
  valid now (certificate has expired (at depth 1))``; serve --optional's page marked a client certificate in its
  dates ``valid now, not expired; it is outside its dates`` when its intermediate had expired; serve's log, when a
  client refused serve's chain for its expired intermediate, said ``by this server's clock it is valid until ...:
  check the client's clock``; certkit verify called an expired root two levels up ``the issuing CA``; and probe
  glossed an OpenSSL server's alert "certificate expired" about a client certificate in its dates, whose file sends
  an expired intermediate, as "the certificate has expired". Each now names the CA whose dates fail, and where it
  stands.
- show18 #2: probe refused an IPv6 address with its zone, as RFC 6874 writes it in a URL and curl takes it
  (``https://[::1%25lo]:8443/``, ``https://[fe80::1%25eth0]/``): ``Cannot connect to [::1%25lo]:8443: Name or
  service not known``; the resolver takes no zone for ::1, and '%25' (the '%' escaped) was left in the zone. Now
  the zone is read as curl reads it, checked against this machine's interfaces, and used for the connection only
  (the certificate is matched against the address, and the Host header carries none, as curl sends it). serve
  --host with a zone (``::1%lo``, ``[::1%25lo]``) was refused as if it were a certificate name ("a zone ... cannot
  go in a certificate"); it now listens there, through that interface, and its certificate names the address.
- show18 #3: serve behind a proxy that ends TLS (nginx ``proxy_pass https://`` with ``proxy_ssl_certificate``)
  greeted the proxy's certificate as the visitor's: alice, checked by nginx, got a page saying "Hello,
  nginx-proxy", "Your certificate: it proves who you are", and "the certificate your browser checked" for serve's
  own. A request carrying a proxy header (Forwarded, X-Forwarded-For, X-Real-IP, Via, ...) now gets, on the page,
  in the text and in the JSON (``proxied``), what that means: the certificates shown are those of the proxy's
  connection.
- show18 #4: a server that speaks HTTP/2 only (gRPC) answers probe's HTTP/1.1 request with HTTP/2 frames (its
  SETTINGS first, RFC 9113 3.4); probe called that "the answer is not HTTP". It now says it is HTTP/2.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import json
import re
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from test_probe import openssl_server

from conftest import (
    PASSPHRASE,
    assert_clean_error,
    certkit_env,
    new_ca,
    openssl,
    run_certkit,
)
from nginx_helper import nginx_server
from serve_process import serving

DAY = dt.timedelta(days=1)


# --- a PKI whose intermediate (or root) is out of its dates, the leaves in theirs --------------------------------
def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer: str, issuer_key, not_before, not_after, *, ca: bool,
          eku=None, dns: str | None = None) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca,
                                            content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False))
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    if dns is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def dated_pki(folder: Path, expired: str) -> Path:
    """Root "Dated Root" > intermediate "Dated Issuing" > a server leaf (localhost) and a client leaf (carol), the
    leaves in their dates; ``expired`` ("intermediate" or "root") ended yesterday. Files: root.pem, leaf.pem,
    inter.pem, chain.pem (leaf + intermediate), key.pem, client.pem (carol + intermediate), client.key."""
    now = dt.datetime.now(dt.UTC)
    root_key, inter_key, leaf_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))
    root = _cert("Dated Root", root_key, "Dated Root", root_key, now - 400 * DAY,
                 now - DAY if expired == "root" else now + 400 * DAY, ca=True)
    inter = _cert("Dated Issuing", inter_key, "Dated Root", root_key, now - 300 * DAY,
                  now - DAY if expired == "intermediate" else now + 300 * DAY, ca=True)
    leaf = _cert("localhost", leaf_key, "Dated Issuing", inter_key, now - 10 * DAY, now + 30 * DAY, ca=False,
                 eku=ExtendedKeyUsageOID.SERVER_AUTH, dns="localhost")
    client = _cert("carol", client_key, "Dated Issuing", inter_key, now - 10 * DAY, now + 30 * DAY, ca=False,
                   eku=ExtendedKeyUsageOID.CLIENT_AUTH)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (("root.pem", _pem(root)), ("leaf.pem", _pem(leaf)), ("inter.pem", _pem(inter)),
                       ("chain.pem", _pem(leaf, inter)), ("key.pem", _key_pem(leaf_key)),
                       ("client.pem", _pem(client, inter)), ("client.key", _key_pem(client_key))):
        (folder / name).write_bytes(data)
        if name.endswith((".key", "key.pem")):
            (folder / name).chmod(0o600)
    return folder


def _openssl_says_only_the_ca_is_out_of_date(pki: Path, depth: int) -> None:
    """openssl verify: the chain fails for an expired certificate at ``depth``, a CA's, and the leaf, by itself,
    is in its dates (x509 -checkend 0)."""
    verified = openssl("verify", "-CAfile", pki / "root.pem", "-untrusted", pki / "inter.pem", pki / "leaf.pem")
    assert verified.returncode != 0
    assert f"error 10 at {depth} depth lookup: certificate has expired" in verified.stdout.decode() + \
        verified.stderr.decode()
    assert openssl("x509", "-in", pki / "leaf.pem", "-noout", "-checkend", "0").returncode == 0


@pytest.mark.parametrize("expired, depth, words, whence", [
    ("intermediate", 1, "the issuing CA CN=Dated Issuing expired on", "the server sends it"),
    ("root", 2, "the CA CN=Dated Root above the issuing CA expired on", "not sent: taken from the CA in"),
])
def test_probe_names_the_ca_out_of_its_dates_not_the_servers_certificate(tmp_path: Path, expired: str,
                                                                         depth: int, words: str, whence: str):
    pki = dated_pki(tmp_path / "pki", expired)
    _openssl_says_only_the_ca_is_out_of_date(pki, depth)
    with openssl_server("-cert", pki / "leaf.pem", "-cert_chain", pki / "inter.pem", "-key", pki / "key.pem") as port:
        proc = run_certkit("probe", f"https://localhost:{port}/", "--ca-file", pki / "root.pem",
                           env=certkit_env(HOME=str(tmp_path)), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    error = proc.stderr.strip()
    assert error.startswith("Error: localhost:") and error.count("\n") == 0, error
    assert "the server's certificate is not valid now" not in error, error
    assert f"the server's certificate is in its dates, but {words}" in error, error
    assert f"({whence}" in error and f"certificate has expired (at depth {depth})" in error, error
    assert re.search(rf"reason +{re.escape(words)}", proc.stdout), proc.stdout  # the report's reason line


def test_probe_still_says_the_servers_own_certificate_is_out_of_its_dates(tmp_path: Path):
    """The server's own certificate expired, under a CA in its dates: said of it, as before."""
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Fresh Root", ca_key, "Fresh Root", ca_key, now - 10 * DAY, now + 100 * DAY, ca=True)
    leaf = _cert("localhost", key, "Fresh Root", ca_key, now - 10 * DAY, now - DAY, ca=False,
                 eku=ExtendedKeyUsageOID.SERVER_AUTH, dns="localhost")
    (tmp_path / "fresh.pem").write_bytes(_pem(ca))
    (tmp_path / "old.pem").write_bytes(_pem(leaf))
    (tmp_path / "old.key").write_bytes(_key_pem(key))
    with openssl_server("-cert", tmp_path / "old.pem", "-key", tmp_path / "old.key") as port:
        proc = run_certkit("probe", f"https://localhost:{port}/", "--ca-file", tmp_path / "fresh.pem",
                           env=certkit_env(HOME=str(tmp_path)), cwd=tmp_path)
    assert proc.returncode == 1
    assert "the server's certificate is not valid now (certificate has expired)" in proc.stderr, proc.stderr



def test_probe_says_a_client_certificate_refused_as_expired_is_in_date_and_names_its_ca(tmp_path: Path):
    """carol's certificate is in its dates, the intermediate her file sends expired: an OpenSSL server refuses
    with the alert "certificate expired", which probe glossed "the certificate has expired"."""
    pki = dated_pki(tmp_path / "pki", "intermediate")
    ca_env = dict(new_ca(tmp_path, "Server CA"), HOME=str(tmp_path))
    run_certkit("issue-server", "localhost", env=ca_env, cwd=tmp_path, check=True)
    server = ("-cert", tmp_path / "localhost" / "cert.pem", "-key", tmp_path / "localhost" / "privkey.pem",
              "-CAfile", pki / "root.pem", "-Verify", "1", "-verify_return_error", "-tls1_2")  # alert in the handshake
    with openssl_server(*server) as port:
        s_client = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
                                   "-cert", str(pki / "client.pem"), "-cert_chain", str(pki / "inter.pem"),
                                   "-key", str(pki / "client.key")], input=b"GET / HTTP/1.0\r\n\r\n",
                                  capture_output=True, timeout=60)
        assert b"alert certificate expired" in s_client.stdout + s_client.stderr  # the server's alert
        proc = run_certkit("probe", f"https://localhost:{port}/", "--ca-dir", tmp_path / "ca",
                           "--cert", pki / "client.pem", "--key", pki / "client.key",
                           env=certkit_env(HOME=str(tmp_path)), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.lstrip().startswith("with it"))
    assert "alert certificate expired: the certificate given is in date (until " in line, line
    assert "but the issuing CA CN=Dated Issuing expired on" in line, line
    assert "the certificate has expired" not in line, line

def _page_text(body: str) -> str:
    body = re.sub(r"<style.*?</style>", "", body, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


def test_serve_page_names_the_expired_intermediate_of_a_client_certificate_in_its_dates(tmp_path: Path):
    """carol's certificate is in its dates; the intermediate she sends expired yesterday. OpenSSL refuses the
    chain (curl gets the page with --optional); the page's time rule said "it is outside its dates"."""
    pki = dated_pki(tmp_path / "pki", "intermediate")
    ca_env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Serve CA", env=ca_env, check=True)
    with serving("--optional", "--client-ca", pki / "root.pem", env=ca_env, cwd=tmp_path) as srv:
        answer = subprocess.run(["curl", "-sS", "--max-time", "30", "--cacert", str(tmp_path / "ca" / "ca.pem"),
                                 "--cert", str(pki / "client.pem"), "--key", str(pki / "client.key"),
                                 "-H", "Accept: text/html", srv.url], capture_output=True, text=True, timeout=60)
    assert answer.returncode == 0, answer.stderr
    text = _page_text(answer.stdout)
    assert "certificate has expired (at depth 1)" in text, text  # OpenSSL's verdict, on the page
    rule = text[text.index("The rule this server applied"):]
    assert "valid now, not expired; the issuing CA CN=Dated Issuing expired on" in rule, rule
    assert "outside its dates" not in text, text


def test_serve_log_names_its_own_expired_intermediate_not_the_clients_clock(tmp_path: Path):
    """serve --cert with a chain whose intermediate expired: curl refuses it (certificate expired), and serve's
    log blamed the client's clock, though its own certificate is in its dates."""
    pki = dated_pki(tmp_path / "pki", "intermediate")
    ca_env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Serve CA", env=ca_env, check=True)
    with serving("--cert", pki / "chain.pem", "--key", pki / "key.pem", env=ca_env, cwd=tmp_path) as srv:
        curl = subprocess.run(["curl", "-sS", "--max-time", "30", "--cacert", str(pki / "root.pem"),
                               f"https://localhost:{srv.port}/"], capture_output=True, text=True, timeout=60)
        assert curl.returncode == 60 and "certificate has expired" in curl.stderr, curl.stderr
        line = srv.wait_for_log("refused by the client")[0]
    assert "alert certificate expired" in line, line
    assert "check the client's clock" not in line, line
    assert ("but the issuing CA CN=Dated Issuing expired on" in line
            and "this server sends that CA's certificate in its chain" in line), line


def test_verify_calls_a_root_two_levels_up_not_the_issuing_ca(tmp_path: Path):
    pki = dated_pki(tmp_path / "pki", "root")
    proc = run_certkit("verify", pki / "chain.pem", "--purpose", "server", "--ca-file", pki / "root.pem",
                       env=certkit_env(HOME=str(tmp_path)), cwd=tmp_path)
    assert proc.returncode == 1
    assert "the CA CN=Dated Root above the issuing CA expired on" in proc.stdout + proc.stderr, proc.stdout
    assert "the issuing CA CN=Dated Root" not in proc.stdout + proc.stderr


# --- show18 #2: IPv6 zones ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("zone", ["%25lo", "%lo", "%25{index}"])
def test_probe_reaches_an_ipv6_address_written_with_its_zone(tmp_path: Path, zone: str):
    zone = zone.format(index=socket.if_nametoindex("lo"))
    env = dict(new_ca(tmp_path, "Zone CA"), HOME=str(tmp_path))
    run_certkit("issue-client", "alice", env=env, cwd=tmp_path, check=True)
    with serving("--host", "::1", env=env, cwd=tmp_path) as srv:
        url = f"https://[::1{zone}]:{srv.port}/"
        curl = subprocess.run(["curl", "-sS", "--max-time", "30", "--cacert", str(tmp_path / "ca" / "ca.pem"),
                               "--cert", str(tmp_path / "alice" / "fullchain.pem"),
                               "--key", str(tmp_path / "alice" / "privkey.pem"), url],
                              capture_output=True, text=True, timeout=60)
        assert curl.returncode == 0 and "alice" in curl.stdout, curl.stderr  # the URL is one curl takes
        proc = run_certkit("probe", url, "--ca-dir", tmp_path / "ca", "--bundle", tmp_path / "alice",
                           env=certkit_env(HOME=str(tmp_path)), cwd=tmp_path)
        log = "\n".join(srv.wait_for_log('"GET / HTTP/1.1" 200', count=2))
    assert proc.returncode == 0, proc.stderr
    written = zone.removeprefix("%").removeprefix("25")
    assert f": [::1%{written}]:{srv.port}, TLSv1." in proc.stdout, proc.stdout
    assert "names       yes: ::1 is among its names" in proc.stdout, proc.stdout
    assert "with it     accepted: the server answered HTTP 200" in proc.stdout, proc.stdout
    assert "Name or service not known" not in proc.stdout + proc.stderr
    assert log.count("client=alice") >= 2, log


@pytest.mark.parametrize("zone, named", [("%25nosuch0", "nosuch0"), ("%25", ""), ("%2599999", "99999")])
def test_probe_names_a_zone_that_is_no_interface_of_this_machine(tmp_path: Path, zone: str, named: str):
    if named:
        with pytest.raises(OSError):  # no such interface here, by name or by index
            socket.if_indextoname(int(named)) if named.isdigit() else socket.if_nametoindex(named)
    proc = run_certkit("probe", f"https://[::1{zone}]:8443/", env=certkit_env(HOME=str(tmp_path)), cwd=tmp_path)
    assert_clean_error(proc, f"names the zone '{named}' (the network interface to reach the address through), "
                             "which is no interface of this machine")
    assert proc.stderr.count("\n") == 1, proc.stderr


@pytest.mark.parametrize("host", ["::1%lo", "[::1%25lo]"])
def test_serve_listens_on_an_ipv6_address_given_with_its_zone(tmp_path: Path, host: str):
    env = dict(new_ca(tmp_path, "Zone CA"), HOME=str(tmp_path))
    run_certkit("issue-client", "alice", env=env, cwd=tmp_path, check=True)
    with serving("--host", host, env=env, cwd=tmp_path) as srv:
        assert srv.info["server_certificate"]["names"] == ["DNS:localhost", "IP:127.0.0.1", "IP:::1"], srv.info
        curl = subprocess.run(["curl", "-sS", "--max-time", "30", "--cacert", str(tmp_path / "ca" / "ca.pem"),
                               "--cert", str(tmp_path / "alice" / "fullchain.pem"),
                               "--key", str(tmp_path / "alice" / "privkey.pem"), f"https://[::1%25lo]:{srv.port}/"],
                              capture_output=True, text=True, timeout=60)
    assert curl.returncode == 0 and "alice" in curl.stdout, curl.stderr


def test_serve_names_a_zone_that_is_no_interface_of_this_machine(tmp_path: Path):
    env = dict(new_ca(tmp_path, "Zone CA"), HOME=str(tmp_path))
    proc = run_certkit("serve", "--host", "::1%nosuch0", "--port", "0", env=env, cwd=tmp_path)
    assert_clean_error(proc, "Cannot listen on [::1%nosuch0]:0: no interface with this name")
    listed = run_certkit("list", "--json", env=env, cwd=tmp_path)
    assert listed.returncode == 0 and "localhost" not in listed.stdout, listed.stdout  # no certificate issued



# --- show18 #3: serve behind a proxy that ends TLS ---------------------------------------------------------------
@contextmanager
def nginx_in_front(work: Path, backend: int, *, forwarded: bool) -> Iterator[int]:
    """nginx on 127.0.0.1 requiring a client certificate of work/ca, passing each request on to serve on
    ``backend`` over TLS with its own client certificate (work/nginx-proxy); with ``forwarded``, adding
    X-Forwarded-For, as the usual proxy configuration does."""
    header = "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" if forwarded else ""
    with nginx_server(work, lambda port: f"""
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {work / 'localhost' / 'fullchain.pem'};
        ssl_certificate_key {work / 'localhost' / 'privkey.pem'};
        ssl_client_certificate {work / 'ca' / 'ca.pem'};
        ssl_verify_client on;
        location / {{
            proxy_pass https://127.0.0.1:{backend};
            proxy_ssl_certificate {work / 'nginx-proxy' / 'fullchain.pem'};
            proxy_ssl_certificate_key {work / 'nginx-proxy' / 'privkey.pem'};
            proxy_ssl_trusted_certificate {work / 'ca' / 'ca.pem'};
            proxy_ssl_verify on;
            proxy_ssl_name localhost;
            {header}
        }}
    }}""") as (port, _log):
        yield port


def _curl(work: Path, url: str, *args: str) -> str:
    alice = ("--cert", str(work / "alice" / "fullchain.pem"), "--key", str(work / "alice" / "privkey.pem"))
    done = subprocess.run(["curl", "-sS", "--fail", "--max-time", "30", "--cacert", str(work / "ca" / "ca.pem"),
                           *alice, *args, url], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_serve_says_a_request_through_a_proxy_shows_the_proxys_certificates(tmp_path: Path):
    env = dict(new_ca(tmp_path, "Proxy CA"), HOME=str(tmp_path))
    for command in (("issue-server", "localhost"), ("issue-client", "alice"), ("issue-client", "nginx-proxy")):
        run_certkit(*command, env=env, cwd=tmp_path, check=True)
    with serving(env=env, cwd=tmp_path) as srv:
        direct = json.loads(_curl(tmp_path, f"{srv.url}?format=json"))
        assert direct["common_name"] == "alice" and direct["proxied"] is None, direct  # no proxy: nothing said
        with nginx_in_front(tmp_path, srv.port, forwarded=True) as port:
            url = f"https://localhost:{port}/"
            data = json.loads(_curl(tmp_path, f"{url}?format=json"))
            text = _curl(tmp_path, f"{url}?format=text")
            page = _page_text(_curl(tmp_path, url, "-H", "Accept: text/html"))
    # nginx checked alice's certificate and made its own connection to serve, with its own certificate
    assert data["common_name"] == "nginx-proxy", data
    assert data["proxied"]["header"] == "X-Forwarded-For: 127.0.0.1", data
    note = data["proxied"]["note"]
    assert note.startswith("This request came through a proxy (X-Forwarded-For: 127.0.0.1), which ended your TLS "
                           "connection") and "the client certificate shown here is the one the proxy presented" in note
    assert f"  proxy        {note}\n" in text, text
    assert note in page and "Hello, nginx-proxy" in page, page


def test_serve_behind_a_proxy_that_adds_no_header_cannot_tell(tmp_path: Path):
    """nginx's proxy_pass adds no header of its own by default: serve cannot tell its request from a client's,
    as docs/serve.md says."""
    env = dict(new_ca(tmp_path, "Proxy CA"), HOME=str(tmp_path))
    for command in (("issue-server", "localhost"), ("issue-client", "alice"), ("issue-client", "nginx-proxy")):
        run_certkit(*command, env=env, cwd=tmp_path, check=True)
    with serving(env=env, cwd=tmp_path) as srv, nginx_in_front(tmp_path, srv.port, forwarded=False) as port:
        data = json.loads(_curl(tmp_path, f"https://localhost:{port}/?format=json"))
    assert data["common_name"] == "nginx-proxy" and data["proxied"] is None, data



# --- show18 #4: an HTTP/2-only server ---------------------------------------------------------------------------
SETTINGS = bytes.fromhex("000006" "04" "00" "00000000" "0003" "00000064")  # MAX_CONCURRENT_STREAMS 100 (RFC 9113 6.5)
GOAWAY = bytes.fromhex("000008" "07" "00" "00000000" "00000000" "00000001")  # last stream 0, PROTOCOL_ERROR


@contextmanager
def http2_only_server(work: Path, connections: int) -> Iterator[tuple[int, list[bytes]]]:
    """A TLS server on 127.0.0.1 (Python's ssl) that asks for a client certificate and answers as an HTTP/2-only
    server (gRPC's) does a client that sends no HTTP/2 preface: its SETTINGS frame, then GOAWAY PROTOCOL_ERROR;
    yield its port and what each connection sent first."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(work / "localhost" / "fullchain.pem", work / "localhost" / "privkey.pem")
    ctx.load_verify_locations(work / "ca" / "ca.pem")
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.set_alpn_protocols(["h2"])
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(60)
    seen: list[bytes] = []

    def answer() -> None:
        for _ in range(connections):
            raw, _ = listener.accept()
            with ctx.wrap_socket(raw, server_side=True) as conn:
                conn.settimeout(30)
                seen.append(conn.recv(4096))
                conn.sendall(SETTINGS + GOAWAY)
                conn.shutdown(socket.SHUT_WR)  # the end, as gRPC's server ends such a connection
                with contextlib.suppress(OSError):  # read on to the client's end: a reset could overtake the frames
                    while conn.recv(4096):
                        pass

    worker = threading.Thread(target=answer, daemon=True)
    worker.start()
    try:
        yield listener.getsockname()[1], seen
        worker.join(60)
    finally:
        listener.close()


def test_probe_says_an_http2_only_server_answers_in_http2(tmp_path: Path):
    env = dict(new_ca(tmp_path, "H2 CA"), HOME=str(tmp_path))
    for command in (("issue-server", "localhost"), ("issue-client", "alice")):
        run_certkit(*command, env=env, cwd=tmp_path, check=True)
    with http2_only_server(tmp_path, connections=3) as (port, seen):
        # curl (nghttp2) reads the server's answer as HTTP/2 frames
        curl = subprocess.run(["curl", "-sv", "--http2", "--max-time", "30", "--cacert",
                               str(tmp_path / "ca" / "ca.pem"), f"https://localhost:{port}/"],
                              capture_output=True, text=True, timeout=60)
        assert "ALPN: server accepted h2" in curl.stderr and "GOAWAY, error=1" in curl.stderr, curl.stderr
        proc = run_certkit("probe", f"https://localhost:{port}/", "--ca-dir", tmp_path / "ca",
                           "--bundle", tmp_path / "alice", env=certkit_env(HOME=str(tmp_path)), cwd=tmp_path)
    assert [s[:14] for s in seen[1:]] == [b"GET / HTTP/1.1"] * 2, seen  # probe's two requests, in HTTP/1.1
    assert proc.returncode == 1, proc.stderr
    words = ("the answer is not HTTP/1.1 but HTTP/2 frames: the server speaks HTTP/2 only (as gRPC servers do), "
             "and probe asks in HTTP/1.1")
    assert f"without     not known: the server asks for one and completed the handshake without it, but {words}" \
        in proc.stdout, proc.stdout
    assert f"with it     not known: the handshake took it, but {words}" in proc.stdout, proc.stdout
    assert f"the server gave no HTTP answer ({words})" in proc.stderr, proc.stderr
