"""Round nineteen, area show: what inspect, verify, probe and serve say about certificates made outside
certkit, compared with what real peers (openssl verify -x509_strict, openssl s_server) do with them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_probe import openssl_server

from conftest import free_port, openssl, run_certkit


# --- certificates made by openssl, as other tools make them -----------------------------------------
def _openssl_ca(folder: Path, *constraints: str) -> Path:
    """A root CA made by ``openssl req -x509`` with the nameConstraints given as openssl.cnf writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ca.cnf").write_text(
        "[req]\ndistinguished_name = dn\nx509_extensions = v3\nprompt = no\n[dn]\nCN = Lab NC Root\n"
        "[v3]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier = hash\n"
        + (f"nameConstraints = critical,{','.join(constraints)}\n" if constraints else ""))
    made = openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                   "-keyout", folder / "ca.key", "-out", folder / "ca.pem", "-days", "30", "-config", folder / "ca.cnf")
    assert made.returncode == 0, made.stderr
    return folder / "ca.pem"


def _openssl_leaf(ca: Path, out: Path, san: str, eku: str = "serverAuth,clientAuth") -> Path:
    """A leaf signed by ``openssl x509 -req`` with the subjectAltName written as openssl.cnf writes it."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "leaf.ext").write_text(
        "basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
        f"extendedKeyUsage = {eku}\nsubjectAltName = {san}\nauthorityKeyIdentifier = keyid\n"
        "subjectKeyIdentifier = hash\n")
    made = openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                   "-keyout", out / "privkey.pem", "-out", out / "leaf.csr", "-subj", "/CN=leaf")
    assert made.returncode == 0, made.stderr
    made = openssl("x509", "-req", "-in", out / "leaf.csr", "-CA", ca, "-CAkey", ca.with_name("ca.key"),
                   "-set_serial", "0x" + out.name.encode().hex()[:30], "-out", out / "cert.pem", "-days", "10",
                   "-extfile", out / "leaf.ext")
    assert made.returncode == 0, made.stderr
    return out / "cert.pem"


def _openssl_verdict(ca: Path, leaf: Path, purpose: str) -> bool:
    proc = openssl("verify", "-x509_strict", "-purpose", f"ssl{purpose}", "-CAfile", ca, leaf)
    return proc.returncode == 0


# (constraints of the CA, subjectAltName of the leaf, what OpenSSL says)
_OTHER_TOOLS_NAMES = [
    (("permitted;DNS:.example.com",), "DNS:www.example.com", True),  # a leading dot: the subdomains
    (("permitted;DNS:.example.com",), "DNS:example.com", False),  # ... only, not the domain itself
    (("excluded;DNS:.example.com",), "DNS:example.com", True),
    (("excluded;DNS:.example.com",), "DNS:www.example.com", False),
    (("permitted;DNS:example.com",), "DNS:foo_bar.example.com", True),  # '_' under constraints
    (("permitted;DNS:example.com",), "DNS:www.example.com.", False),  # a final dot: outside, as written
    ((), "DNS:_svc.example.com", True),  # '_' with no constraints at all
    ((), "DNS:*.foo_bar.example.com", True),
]


@pytest.mark.parametrize(("constraints", "san", "accepted"), _OTHER_TOOLS_NAMES)
@pytest.mark.parametrize("purpose", ["server", "client"])
def test_verify_follows_openssl_on_names_other_tools_write(tmp_path: Path, constraints, san: str, accepted: bool,
                                                           purpose: str) -> None:
    """A CA made by openssl with ``permitted;DNS:.example.com`` (how many guides write "the subdomains"),
    an empty DNS constraint, a leaf naming ``foo_bar.example.com``: cryptography's verifier calls them
    malformed and refused them, so verify said NOT VALID of chains OpenSSL, Python's ssl and Go accept.
    certkit now judges these itself, as OpenSSL reads them (a leading dot: below the domain only)."""
    ca = _openssl_ca(tmp_path / "ca", *constraints)
    leaf = _openssl_leaf(ca, tmp_path / "leaf", san)
    assert _openssl_verdict(ca, leaf, purpose) is accepted
    proc = run_certkit("verify", leaf, "--purpose", purpose, "--ca-file", ca, "--json")
    verdict = json.loads(proc.stdout)
    assert verdict["valid"] is accepted, verdict
    assert proc.returncode == (0 if accepted else 1)
    if accepted and (constraints or purpose == "server"):  # no constraints: the client verifier reads no name
        assert any("cryptography's verifier cannot judge this certificate" in n for n in verdict["notes"]), verdict
    elif not accepted:
        assert verdict["reasons"] == [f"{san.removeprefix('DNS:')} is outside the name constraints of "
                                      "CN=Lab NC Root"], verdict


def test_an_empty_dns_constraint_permits_every_name(tmp_path: Path) -> None:
    """``permitted;DNS:`` (an empty subtree, which openssl.cnf cannot write) is every name to OpenSSL and Go."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from certkit.verify import verify_certificate

    now, root_key, key = dt.datetime.now(dt.UTC), ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Empty Subtree Root")])

    def made(subject, public, extensions):
        builder = x509.CertificateBuilder().subject_name(subject).issuer_name(name).public_key(public) \
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1)) \
            .not_valid_after(now + dt.timedelta(days=9))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(root_key, hashes.SHA256())

    root = made(name, root_key.public_key(), [
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (x509.KeyUsage(False, False, False, False, False, True, True, False, False), True),
        (x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), False),
        (x509.NameConstraints([x509.DNSName("")], None), True)])
    leaf = made(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]), key.public_key(), [
        (x509.SubjectAlternativeName([x509.DNSName("www.example.org")]), False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        (x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False)])
    (tmp_path / "root.pem").write_bytes(root.public_bytes(encoding=_pem()))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(encoding=_pem()))
    assert _openssl_verdict(tmp_path / "root.pem", tmp_path / "leaf.pem", "server")
    verdict = verify_certificate(leaf, purpose="server", roots=[root], name="www.example.org")
    assert verdict.valid and verdict.reasons == [], verdict


def _pem():
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.PEM


def test_probe_of_a_server_under_a_leading_dot_constraint_says_yes(tmp_path: Path) -> None:
    """openssl s_server presenting a certificate of such a CA: probe said 'valid ... ? NO' (and exit 1)
    though it also said 'chain verified' and every OpenSSL client connects."""
    ca = _openssl_ca(tmp_path / "ca", "permitted;DNS:.example.com", "permitted;IP:127.0.0.0/255.0.0.0")
    leaf = _openssl_leaf(ca, tmp_path / "srv", "DNS:www.example.com,IP:127.0.0.1", eku="serverAuth")
    with openssl_server("-cert", leaf, "-key", leaf.with_name("privkey.pem")) as port:
        proc = run_certkit("probe", f"https://127.0.0.1:{port}/", "--ca-file", ca, "--json")
    server = json.loads(proc.stdout)["server_certificate"]
    assert server["verified"] is True and server["reasons"] == [], server
    assert server["ok"] is True, server


# --- probe: a name with several addresses ------------------------------------------------------------
@contextmanager
def _s_server(host: str, port: int, cert: Path, *args: object) -> Iterator[None]:
    """``openssl s_server -www`` on ``host:port`` (two of them may share a port on two loopback addresses)."""
    proc = subprocess.Popen(["openssl", "s_server", "-accept", f"{host}:{port}", "-www", "-quiet", "-cert", cert,
                             "-key", cert.with_name("privkey.pem"), *map(str, args)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"openssl s_server on {host}:{port} exited ({proc.returncode})"
            try:
                socket.create_connection((host, port), timeout=5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"openssl s_server did not listen on {host}:{port}"
                time.sleep(0.05)
        yield
    finally:
        proc.kill()
        proc.wait(10)


def test_probe_keeps_to_the_address_its_first_connection_reached(tmp_path: Path, monkeypatch) -> None:
    """A name with two addresses whose resolver rotates them (round-robin DNS, BIND's cyclic order): probe
    connected twice (without, then with --cert), resolving each time, so its report joined two servers: the
    first's chain and 'asked for: no', the second's verdict on the client certificate. Every connection now
    goes to the address the first reached, which the report names (text and --json 'address')."""
    ca = _openssl_ca(tmp_path / "ca")
    first = _openssl_leaf(ca, tmp_path / "first", "DNS:multi.test", eku="serverAuth")
    second = _openssl_leaf(ca, tmp_path / "second", "DNS:multi.test", eku="serverAuth")
    alice = _openssl_leaf(ca, tmp_path / "alice", "email:alice@example.com", eku="clientAuth")
    real, calls, port = socket.getaddrinfo, [], free_port()

    def rotating(host, *args, **kwargs):
        if host != "multi.test":
            return real(host, *args, **kwargs)
        calls.append(host)
        order = ["127.0.0.2", "127.0.0.1"] if len(calls) % 2 else ["127.0.0.1", "127.0.0.2"]
        return [entry for address in order for entry in real(address, *args, **kwargs)]

    monkeypatch.setattr(socket, "getaddrinfo", rotating)
    other = _openssl_ca(tmp_path / "other")  # the second server refuses alice: a TLS alert, were she sent there
    with _s_server("127.0.0.2", port, first), _s_server("127.0.0.1", port, second, "-Verify", "1",
                                                         "-verify_return_error", "-CAfile", other):
        proc = run_certkit("probe", f"https://multi.test:{port}/", "--ca-file", ca, "--cert", alice,
                           "--key", alice.with_name("privkey.pem"), "--json")
        calls.clear()
        text = run_certkit("probe", f"https://multi.test:{port}/", "--ca-file", ca).stdout
    report = json.loads(proc.stdout)
    client = report["client_certificate"]  # the first server's: it never asks for one
    assert client["with_it"]["handshake"] == "ok" and client["with_it"]["http_status"] == 200, client["with_it"]
    assert client["requested"] is False and client["accepted"] is None, client["verdict"]
    assert client["verdict"].startswith("never sent: the server does not ask for client certificates"), client
    assert report.get("address") == "127.0.0.2", report
    assert text.splitlines()[0].startswith(f"https://multi.test:{port}/: multi.test:{port} (127.0.0.2), TLSv1.3"), text


# --- which common name: a certificate with several --------------------------------------------------
def _two_cn_client(ca: Path, out: Path) -> Path:
    """A client certificate whose subject holds two common names, 'alice' then 'root' (openssl -subj)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "leaf.ext").write_text("basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
                                  "extendedKeyUsage = clientAuth\nauthorityKeyIdentifier = keyid\n")
    made = openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                   "-keyout", out / "privkey.pem", "-out", out / "leaf.csr", "-subj", "/CN=alice/CN=root")
    assert made.returncode == 0, made.stderr
    made = openssl("x509", "-req", "-in", out / "leaf.csr", "-CA", ca, "-CAkey", ca.with_name("ca.key"),
                   "-set_serial", "0x2C2C", "-out", out / "cert.pem", "-days", "10", "-extfile", out / "leaf.ext")
    assert made.returncode == 0, made.stderr
    return out / "cert.pem"


def _postgres_logins(tmp_path: Path, ca: Path, client: Path, users: tuple[str, ...]) -> dict[str, bool]:
    """Whether PostgreSQL ('hostssl ... cert': the CN is the user name) lets ``client`` in as each of ``users``."""
    import os
    import pwd
    import shutil
    import signal
    import tempfile

    from test_fleet_servers import _postgres_bin, stop

    from conftest import wait_listening

    bindir = _postgres_bin()
    user = pwd.getpwnam("postgres") if os.geteuid() == 0 else None  # initdb refuses root
    as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
    base = Path(tempfile.mkdtemp(prefix="certkit-show-pg-"))
    server = _openssl_leaf(ca, base / "tls", "DNS:localhost,IP:127.0.0.1", eku="serverAuth")
    shutil.copy(ca, base / "tls" / "client-ca.pem")  # pytest's folders are root's alone
    proc = None
    try:
        if user:
            for path in (base, base / "tls", server, server.with_name("privkey.pem"), base / "tls" / "client-ca.pem"):
                os.chown(path, user.pw_uid, user.pw_gid)
        pg_env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "LANG": "C"}
        subprocess.run([bindir / "initdb", "-D", base / "data", "-A", "trust", "-U", "postgres", "--no-sync"],
                       env=pg_env, capture_output=True, check=True, timeout=120, **as_user)
        (base / "data" / "pg_hba.conf").write_text("local all all trust\nhostssl all all 127.0.0.1/32 cert\n")
        port = free_port()
        with open(base / "server.log", "wb") as out:
            proc = subprocess.Popen(
                [bindir / "postgres", "-D", base / "data", "-c", "listen_addresses=127.0.0.1", "-c", f"port={port}",
                 "-c", f"unix_socket_directories={base}", "-c", "fsync=off", "-c", "ssl=on",
                 "-c", f"ssl_cert_file={server}", "-c", f"ssl_key_file={server.with_name('privkey.pem')}",
                 "-c", f"ssl_ca_file={base / 'tls' / 'client-ca.pem'}"],
                env=pg_env, stdout=out, stderr=subprocess.STDOUT, **as_user)
        wait_listening(port, proc, "postgres", log=lambda: (base / "server.log").read_text())
        psql = [bindir / "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1"]
        for name in users:
            subprocess.run([*psql, "-h", base, "-p", str(port), "-U", "postgres", "-c", f'CREATE ROLE "{name}" LOGIN'],
                           env=pg_env, capture_output=True, check=True, timeout=60)
        logins = {}
        for name in users:
            dsn = (f"host=127.0.0.1 port={port} dbname=postgres user={name} sslmode=verify-ca sslrootcert={ca} "
                   f"sslcert={client} sslkey={client.with_name('privkey.pem')}")
            ran = subprocess.run([*psql, dsn, "-c", "SELECT current_user"], env=pg_env, capture_output=True,
                                 text=True, timeout=60)
            logins[name] = ran.returncode == 0 and ran.stdout.strip() == name
        return logins
    finally:
        if proc is not None:
            stop(proc, signal.SIGINT)
        shutil.rmtree(base, ignore_errors=True)


def test_verify_names_the_common_name_servers_map(tmp_path: Path) -> None:
    """Of a subject with two common names (CN=alice, then CN=root), verify, inspect and probe took the last:
    'verify --purpose client --name root' was VALID and '--name alice' NOT VALID ('it names CN=root'), while
    PostgreSQL logs that certificate in as alice and refuses it as root (and serve's page greets alice). The
    first is now the common name everywhere; the later one is refused in words, and the first gets a note."""
    ca = _openssl_ca(tmp_path / "ca")
    client = _two_cn_client(ca, tmp_path / "two")
    assert _postgres_logins(tmp_path, ca, client, ("alice", "root")) == {"alice": True, "root": False}
    alice = json.loads(run_certkit("verify", client, "--purpose", "client", "--ca-file", ca, "--name", "alice",
                                   "--json").stdout)
    assert alice["valid"] is True and alice["name_ok"] is True, alice
    assert alice["notes"] == ["it has 2 common names (alice, root): PostgreSQL, Mosquitto and Apache map the first "
                              "to a user, Go-based servers the last"], alice
    root = run_certkit("verify", client, "--purpose", "client", "--ca-file", ca, "--name", "root")
    assert root.returncode == 1 and root.stderr == (
        f"Error: {client} is not valid as a TLS client certificate: not valid for name root: root is not its first "
        "common name but a later one; servers that map a CN to a user (PostgreSQL, Mosquitto, Apache) take the "
        "first, alice (Go-based ones the last).\n"), root.stderr
    described = json.loads(run_certkit("inspect", client, "--json").stdout)
    assert "(CN=alice)" in json.dumps(described), described


# --- a terminal whose encoding is not UTF-8 ----------------------------------------------------------
def test_a_name_the_terminal_cannot_write_is_escaped_not_a_traceback(tmp_path: Path) -> None:
    """Under a Latin-1 locale (PYTHONIOENCODING=latin-1 stands in for it), inspect and verify of a certificate
    whose CN holds an emoji or a CJK character stopped with a UnicodeEncodeError traceback in the midst of the
    report. Such a character is now written escaped, as Python writes it to stderr; what Latin-1 has stays."""
    from conftest import certkit_env

    ca = _openssl_ca(tmp_path / "ca")
    (tmp_path / "cl.ext").write_text("basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
                                     "extendedKeyUsage = clientAuth\nauthorityKeyIdentifier = keyid\n")
    made = openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-utf8",
                   "-keyout", tmp_path / "key.pem", "-out", tmp_path / "csr.pem", "-subj", "/CN=café \U0001f512 张")
    assert made.returncode == 0, made.stderr
    made = openssl("x509", "-req", "-in", tmp_path / "csr.pem", "-CA", ca, "-CAkey", ca.with_name("ca.key"),
                   "-set_serial", "0x1A71", "-out", tmp_path / "cert.pem", "-days", "10",
                   "-extfile", tmp_path / "cl.ext")
    assert made.returncode == 0, made.stderr
    env = certkit_env(PYTHONIOENCODING="latin-1")
    for args in (("inspect", tmp_path / "cert.pem"),
                 ("verify", tmp_path / "cert.pem", "--purpose", "client", "--ca-file", ca)):
        proc = subprocess.run([sys.executable, "-m", "certkit", *map(str, args)], env=env, capture_output=True,
                              timeout=120)
        assert proc.returncode == 0 and b"Traceback" not in proc.stderr, proc.stderr.decode("latin-1")
        assert "CN=café \\U0001f512 \\u5f20".encode("latin-1") in proc.stdout, proc.stdout


# --- inspect's 'Usable for' of what OpenSSL refuses in the certificate itself ---------------------------
def test_inspect_says_a_critical_extension_openssl_does_not_handle_leaves_it_unusable(tmp_path: Path) -> None:
    """A leaf with a private extension marked critical (openssl.cnf '1.2.3.4.5 = critical,ASN1:NULL'): inspect
    said 'Usable for: TLS server authentication (www.example.com)', though OpenSSL refuses it ('unhandled
    critical extension', error 34) and verify said NOT VALID. inspect (and probe's chain, which uses it) now
    say what verify says; verify's words name an unknown extension once ('its extension 1.2.3.4.5')."""
    ca = _openssl_ca(tmp_path / "ca")
    leaf = _openssl_leaf(ca, tmp_path / "crit", "DNS:www.example.com\n1.2.3.4.5 = critical,ASN1:NULL",
                         eku="serverAuth")
    refused = openssl("verify", "-purpose", "sslserver", "-CAfile", ca, leaf)
    assert refused.returncode != 0 and b"unhandled critical extension" in refused.stdout + refused.stderr
    words = ("it marks its extension 1.2.3.4.5 critical, which OpenSSL does not handle: OpenSSL (so Python's ssl, "
             "curl, nginx and Node) and Java refuse it (\"unhandled critical extension\"); GnuTLS and Go accept it")
    described = json.loads(run_certkit("inspect", leaf, "--json").stdout)["items"][0]
    assert described["usable_for"] == (f"nothing with OpenSSL-based peers: {words}; issued for TLS server "
                                       "authentication (www.example.com)"), described
    verified = json.loads(run_certkit("verify", leaf, "--purpose", "server", "--ca-file", ca, "--json").stdout)
    assert verified["valid"] is False and verified["reasons"] == [words], verified


# --- serve: a client CA out of its dates --------------------------------------------------------------
def test_serve_says_at_start_that_its_client_ca_has_expired(tmp_path: Path) -> None:
    """serve --client-ca of a CA that has expired started as if all were well ('client certificates must be
    issued by "CN=Expired Root"'), and --json had no word of it, though OpenSSL then refuses every client
    certificate that CA issued (certificate has expired, at depth 1). The banner now says so, and --json's
    'client_cas' gives each CA's dates and status."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from conftest import certkit_env
    from serve_process import ServeProcess

    key, now = ec.generate_private_key(ec.SECP256R1()), dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Expired Root")])
    expired = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(1).not_valid_before(now - dt.timedelta(days=30))
               .not_valid_after(now - dt.timedelta(days=1)).add_extension(x509.BasicConstraints(True, None), True)
               .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
               .sign(key, hashes.SHA256()))
    (tmp_path / "expired.pem").write_bytes(expired.public_bytes(serialization.Encoding.PEM))
    ca = _openssl_ca(tmp_path / "ca")
    server = _openssl_leaf(ca, tmp_path / "srv", "DNS:localhost,IP:127.0.0.1", eku="serverAuth")
    args = ("--cert", server, "--key", server.with_name("privkey.pem"), "--client-ca", tmp_path / "expired.pem")
    env = certkit_env(HOME=str(tmp_path))
    with ServeProcess(*args, env=env, cwd=tmp_path) as serve:
        assert serve.info["client_cas"] == [{"subject": "CN=Expired Root", "status": "expired",
                                             "not_before": serve.info["client_cas"][0]["not_before"],
                                             "not_after": serve.info["client_cas"][0]["not_after"]}], serve.info
    proc = subprocess.Popen([sys.executable, "-m", "certkit", "serve", "--port", "0", *map(str, args)], env=env,
                            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        banner = [proc.stdout.readline() for _ in range(3)][2]
    finally:
        proc.terminate()
        proc.wait(30)
    assert banner.startswith('  client certificates must be issued by "CN=Expired Root"; beware: CN=Expired Root '
                             "expired on "), banner
    assert banner.endswith(", so every client certificate it issued is refused (OpenSSL refuses a chain through a "
                           "CA out of its dates: certificate has expired, or is not yet valid)\n"), banner


def test_a_wildcard_common_name_without_a_dns_san_is_said_as_such(tmp_path: Path) -> None:
    """CN=*.example.com with a subjectAltName of an e-mail only, verified for www.example.com: the reason was
    'it names alice@example.com', silent on the CN that OpenSSL, curl and Python fall back to and match; it
    is now the CN-only reason that an exact CN gets, naming the wildcard."""
    ca = _openssl_ca(tmp_path / "ca")
    out = tmp_path / "wild"
    out.mkdir()
    (out / "leaf.ext").write_text("basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
                                  "extendedKeyUsage = serverAuth\nsubjectAltName = email:alice@example.com\n"
                                  "authorityKeyIdentifier = keyid\n")
    made = openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                   out / "privkey.pem", "-out", out / "leaf.csr", "-subj", "/CN=*.example.com")
    assert made.returncode == 0, made.stderr
    made = openssl("x509", "-req", "-in", out / "leaf.csr", "-CA", ca, "-CAkey", ca.with_name("ca.key"),
                   "-set_serial", "0x3C3C", "-out", out / "cert.pem", "-days", "10", "-extfile", out / "leaf.ext")
    assert made.returncode == 0, made.stderr
    assert openssl("verify", "-purpose", "sslserver", "-verify_hostname", "www.example.com", "-CAfile", ca,
                   out / "cert.pem").returncode == 0
    verdict = json.loads(run_certkit("verify", out / "cert.pem", "--purpose", "server", "--ca-file", ca, "--name",
                                     "www.example.com", "--json").stdout)
    assert verdict["valid"] is False and verdict["reasons"][0].startswith(
        "not valid for name www.example.com: it names www.example.com only in its subject CN (*.example.com), "
        "without a DNS name in its subjectAltName: curl, Python's ssl, OpenSSL"), verdict
