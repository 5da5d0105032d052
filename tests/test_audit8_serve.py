"""Audit serve8, against real peers on 127.0.0.1 (certkit serve as a process, curl, openssl verify, nginx, Redis,
etcd, a raw TLS client), one vocabulary for the same certificate:

1. the page's rule list marks a line failed only for its own cause, in certkit verify's words: a chain that stops
   at an intermediate the client did not send is not "does not chain to that CA", and a keyUsage refusal is
   said as one (the purpose line names keyUsage), not as the extendedKeyUsage failing;
2. probe explains a purpose refusal from purpose_problem (keyUsage, not a clientAuth the certificate has), and
   its beware notes for a Go server (etcd) say what Go does: anyExtendedKeyUsage taken as clientAuth, keyUsage
   not looked at;
3. probe gives the cause it knows when nginx refuses an expired, another CA's or a revoked client certificate;
4. ``status`` is one rule: list, list --status valid and inspect --json say ``not yet valid`` alike;
5. serve's handshake timeout is a deadline for the whole handshake, in both modes;
and serve --cert refuses a server certificate whose keyUsage no TLS server can use (purpose_problem), and serve's
JSON writes the client CA as it writes an issuer (CN=...).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import PASSPHRASE, certkit_env, openssl, run_certkit
from nginx_helper import nginx
from serve_process import serving


def _env(lab: Path, ca: str = "ca", **extra: str) -> dict[str, str]:
    return certkit_env(CERTKIT_CA_DIR=str(lab / ca), HOME=str(lab / "home"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                       **extra)


def _sign_outside_certkit(lab: Path, name: str, usages: dict, eku: list, rsa: bool = False) -> None:
    """A certificate the CA key signs outside certkit, as another tool would: its keyUsage and EKU as given."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import serialization as s
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys
    from cryptography.x509.oid import NameOID

    ca_key = s.load_pem_private_key((lab / "ca" / "ca-key.pem").read_bytes(), PASSPHRASE.encode())
    ca = x509.load_pem_x509_certificate((lab / "ca" / "ca.pem").read_bytes())
    key = rsa_keys.generate_private_key(65537, 2048) if rsa else ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    bits = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                          "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"), False)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()), critical=False)
               .add_extension(x509.KeyUsage(**{**bits, **usages}), critical=True)
               .add_extension(x509.ExtendedKeyUsage(eku), critical=False))
    if name == "x-server-ku":
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    (lab / name).mkdir()
    (lab / name / "cert.pem").write_bytes(cert.public_bytes(s.Encoding.PEM))
    fd = os.open(lab / name / "privkey.pem", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
    os.close(fd)


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    """ca/ (Lab CA, backdated 30 days) with int/ (Lab Issuing, recorded) and its carol/; localhost/ (a server
    certificate); bob/ (revoked) and crl.pem; erin/ (expired two days ago) and future/ (valid from in two
    days); other/ (Other CA) and its mallory/; etcd-1-peer/ and etcd-1-server/ for etcd; and, signed by the CA
    key outside certkit: x-kuenc (clientAuth, keyUsage keyEncipherment only), x-anyeku (anyExtendedKeyUsage
    only), x-server-ku (serverAuth, keyUsage contentCommitment only)."""
    from cryptography.x509.oid import ExtendedKeyUsageOID as Eku

    from certkit import CA
    from certkit.store import CADirectory

    lab = tmp_path_factory.mktemp("serve8")
    (lab / "home").mkdir()
    now = dt.datetime.now(dt.UTC)
    CADirectory(lab / "ca").save_new(CA.create("Lab CA", not_before=now - dt.timedelta(days=30)), PASSPHRASE.encode())
    ca = CADirectory(lab / "ca").load(PASSPHRASE.encode())
    ca.issue_client("erin", days=1, not_before=now - dt.timedelta(days=3)).write(lab / "erin")
    ca.issue_client("future", days=5, not_before=now + dt.timedelta(days=2)).write(lab / "future")
    env = _env(lab)
    for args in (("issue-server", "localhost", "127.0.0.1"), ("issue-client", "bob"),
                 ("issue-peer", "etcd-1.cluster.internal", "127.0.0.1", "--out", lab / "etcd-1-peer"),
                 ("issue-server", "127.0.0.1", "--out", lab / "etcd-1-server")):
        run_certkit(*args, env=env, cwd=lab, check=True)
    run_certkit("revoke", lab / "bob", env=env, check=True)
    run_certkit("crl", "--out", lab / "crl.pem", env=env, cwd=lab, check=True)
    run_certkit("init-ca", "--ca-dir", lab / "int", "--parent-ca-dir", lab / "ca", "--name", "Lab Issuing",
                env=_env(lab, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE), cwd=lab, check=True)
    run_certkit("issue-client", "carol", env=_env(lab, "int"), cwd=lab, check=True)
    run_certkit("init-ca", "--name", "Other CA", env=_env(lab, "other"), check=True)
    run_certkit("issue-client", "mallory", env=_env(lab, "other"), cwd=lab, check=True)
    _sign_outside_certkit(lab, "x-kuenc", {"key_encipherment": True}, [Eku.CLIENT_AUTH], rsa=True)
    _sign_outside_certkit(lab, "x-anyeku", {"digital_signature": True}, [Eku.ANY_EXTENDED_KEY_USAGE])
    _sign_outside_certkit(lab, "x-server-ku", {"content_commitment": True}, [Eku.SERVER_AUTH])
    return lab


def _said(proc: subprocess.CompletedProcess) -> str:
    return (proc.stdout + proc.stderr).decode(errors="replace")


def _verify_reasons(lab: Path, who: str) -> list[str]:
    return json.loads(run_certkit("verify", lab / who / "cert.pem", "--purpose", "client", "--json",
                                  env=_env(lab)).stdout)["reasons"]


def _rule_lines(page: str) -> dict[str, str]:
    """The client card's rule lines that failed, as text, keyed by their first words."""
    import html

    card = page[page.index("<h3>The rule this server applied"):]
    card = card[:card.index("</ul>")]
    lines = [html.unescape(re.sub(r"<[^>]+>", "", line)) for line in re.findall(r'<li class="failed">(.*?)</li>',
                                                                                 card, re.S)]
    return {line.split(";")[0]: line for line in lines}


def _curl_page(lab: Path, port: int, who: str, fmt: str = "html") -> str:
    return subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", str(lab / "ca" / "ca.pem"),
                           "--cert", str(lab / who / "cert.pem"), "--key", str(lab / who / "privkey.pem"),
                           f"https://localhost:{port}/?format={fmt}"],
                          capture_output=True, text=True, timeout=30, check=True).stdout


# --- 1. the page's rule lines ---------------------------------------------------------------------------
def test_each_failed_rule_line_names_its_own_cause(lab: Path) -> None:
    untrusted = ["-untrusted", str(lab / "int" / "ca.pem")]
    ok = openssl("verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", str(lab / "ca" / "ca.pem"),
                 *untrusted, str(lab / "carol" / "cert.pem"))
    assert ok.returncode == 0, _said(ok)  # carol does chain to the CA, with her intermediate
    refused = openssl("verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", str(lab / "ca" / "ca.pem"),
                      str(lab / "x-kuenc" / "cert.pem"))
    assert "unsuitable certificate purpose" in _said(refused)
    with serving("--optional", "--cert", lab / "localhost" / "fullchain.pem", "--key",
                 lab / "localhost" / "privkey.pem", env=_env(lab)) as srv:
        carol = _rule_lines(_curl_page(lab, srv.port, "carol"))
        kuenc = _rule_lines(_curl_page(lab, srv.port, "x-kuenc"))
        kuenc_json = json.loads(_curl_page(lab, srv.port, "x-kuenc", "json"))
    (ca_line,) = [line for key, line in carol.items() if key.startswith("signed by")]
    assert "does not chain to that CA" not in ca_line, carol
    assert "its chain stops at CN=Lab Issuing, an intermediate CA of that CA (its inventory records it), whose " \
           "certificate the client did not send" in ca_line, carol
    assert len(carol) == 1, carol  # nothing else failed
    (purpose,) = kuenc.values()  # only the purpose line: its EKU holds clientAuth, its keyUsage fails
    reason = "its keyUsage (keyEncipherment) has none of digitalSignature or keyAgreement, which a TLS client needs"
    assert purpose.startswith("its extendedKeyUsage includes clientAuth, and its keyUsage, if it has one, "
                              "digitalSignature or keyAgreement; "), purpose
    assert purpose.endswith(reason) and "OpenSSL does not take it" not in purpose, purpose
    assert reason in _verify_reasons(lab, "x-kuenc") and reason in kuenc_json["reasons"]  # verify's words, JSON's


# --- 2. probe's purpose words, against Redis (OpenSSL) and etcd (Go) -----------------------------------------
def _probe(lab: Path, url: str, who: str) -> str:
    proc = run_certkit("probe", url, "--ca-dir", lab / "ca", "--cert", lab / who / "cert.pem", "--key",
                       lab / who / "privkey.pem", "--json", env=_env(lab))
    assert "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout or "{}").get("client_certificate", {}).get("verdict") or proc.stderr


def test_probe_says_keyusage_to_redis(lab: Path, tmp_path: Path) -> None:
    from test_peers_redis import Redis

    redis = Redis(tmp_path, lab)
    try:
        node = redis.start("r", server_cert="localhost", client_cert="localhost", chain="fullchain.pem")
        verdict = _probe(lab, f"https://localhost:{node.port}/", "x-kuenc")
    finally:
        redis.stop()
    assert verdict.startswith("refused: tls alert unsupported certificate: "), verdict
    assert "has no clientAuth in its extendedKeyUsage" not in verdict, verdict
    assert ("the certificate given is not for a TLS client: its keyUsage (keyEncipherment) has none of "
            "digitalSignature or keyAgreement, which a TLS client needs") in verdict, verdict


def test_probe_says_what_go_does_to_etcd(lab: Path, tmp_path: Path) -> None:
    from test_peers_etcd import Etcd

    etcd = Etcd(tmp_path, lab)
    try:
        (member,) = etcd.start(["etcd-1"], peer_cert="peer", client_cert="server")
        url = f"{member.client_url}/version"
        deadline = time.monotonic() + 30
        while "accepted" not in _probe(lab, url, "etcd-1-peer") and time.monotonic() < deadline:
            etcd.check_running()
            time.sleep(0.5)
        anyeku, kuenc, server = (_probe(lab, url, who) for who in ("x-anyeku", "x-kuenc", "localhost"))
    finally:
        etcd.stop()
    assert server.startswith("refused: "), server  # etcd checks a client certificate's extendedKeyUsage
    assert anyeku.startswith("accepted: "), anyeku
    assert "does not check a client certificate's purpose" not in anyeku.split("(Go")[0], anyeku
    assert "this server takes anyExtendedKeyUsage as clientAuth (Go's crypto/x509 does" in anyeku, anyeku
    assert kuenc.startswith("accepted: "), kuenc
    assert ("; beware: its keyUsage (keyEncipherment) has none of digitalSignature or keyAgreement, which a TLS "
            "client needs, yet it got in") in kuenc, kuenc


# --- 3. probe's causes when nginx refuses ------------------------------------------------------------------
def test_probe_gives_the_cause_it_knows_when_nginx_refuses(lab: Path, tmp_path: Path) -> None:
    tls = (f"ssl_certificate {lab / 'localhost' / 'fullchain.pem'};\n"
           f"ssl_certificate_key {lab / 'localhost' / 'privkey.pem'};\n"
           f"ssl_client_certificate {lab / 'ca' / 'ca.pem'};\nssl_verify_client on;\nssl_crl {lab / 'crl.pem'};\n")
    with nginx(tmp_path, tls) as (port, log):
        verdicts = {who: _probe(lab, f"https://localhost:{port}/", who) for who in ("erin", "mallory", "bob")}
        errors = log.read_text()
    assert "certificate has expired" in errors and "certificate revoked" in errors  # nginx's own causes
    for verdict in verdicts.values():
        assert verdict.startswith("refused: HTTP 400: The SSL certificate error; "), verdicts
    assert re.search(r"; it expired on \d{4}-\d\d-\d\d", verdicts["erin"]), verdicts
    assert "; its issuer CN=Other CA is not among the CA names the server listed" in verdicts["mallory"], verdicts
    assert "; it was revoked on " in verdicts["bob"], verdicts


# --- 4. one status -----------------------------------------------------------------------------------------
def test_status_of_a_certificate_not_yet_valid_is_one_word(lab: Path) -> None:
    early = openssl("verify", "-CAfile", str(lab / "ca" / "ca.pem"), str(lab / "future" / "cert.pem"))
    assert "not yet valid" in _said(early)
    listed = json.loads(run_certkit("list", "--json", "--name", "future", env=_env(lab), check=True).stdout)
    inspected = json.loads(run_certkit("inspect", lab / "future" / "cert.pem", "--json", env=_env(lab),
                                       check=True).stdout)
    statuses = [item.get("status") for item in inspected["items"]]
    assert [c["status"] for c in listed["certificates"]] == ["not yet valid"] == statuses, \
        (listed, inspected)
    valid = json.loads(run_certkit("list", "--json", "--status", "valid", env=_env(lab), check=True).stdout)
    assert "CN=future" not in [c["subject"] for c in valid["certificates"]], valid
    table = run_certkit("list", "--name", "future", env=_env(lab), check=True).stdout
    assert "not yet valid" in table, table


# --- 5. the handshake deadline -------------------------------------------------------------------------------
def _client_hello() -> bytes:
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def _drip(port: int, hello: bytes, every: float, out: dict, key: str) -> None:
    """Send ``hello`` a byte every ``every`` seconds (under the 10 s read timeout); how long the server kept it."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(every)
        for byte in hello:
            if time.monotonic() - start > 30:  # the old per-read timeout would hold it for 517 x 3 s
                break
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(1) == b"":
                    break
            except TimeoutError:
                continue
            except OSError:
                break
    out[key] = time.monotonic() - start


def test_the_handshake_timeout_is_a_deadline_in_both_modes(lab: Path) -> None:
    hello, held = _client_hello(), {}
    args = ("--cert", lab / "localhost" / "fullchain.pem", "--key", lab / "localhost" / "privkey.pem")
    with serving(*args, env=_env(lab)) as strict, serving(*args, "--optional", env=_env(lab)) as optional:
        drips = [threading.Thread(target=_drip, args=(srv.port, hello, 3.0, held, mode), daemon=True)
                 for srv, mode in ((strict, "required"), (optional, "optional"))]
        for drip in drips:
            drip.start()
        for drip in drips:
            drip.join(60)
        for srv in (strict, optional):
            srv.wait_for_log("no TLS handshake within 10 s")
    assert all(9 <= held[mode] <= 16 for mode in ("required", "optional")), held


# --- serve --cert and serve's JSON ------------------------------------------------------------------------
def test_serve_refuses_a_server_certificate_whose_keyusage_no_server_can_use(lab: Path) -> None:
    refused = openssl("verify", "-purpose", "sslserver", "-CAfile", str(lab / "ca" / "ca.pem"),
                      str(lab / "x-server-ku" / "cert.pem"))
    assert "unsuitable certificate purpose" in _said(refused)
    proc = run_certkit("serve", "--port", "0", "--cert", lab / "x-server-ku" / "cert.pem", "--key",
                       lab / "x-server-ku" / "privkey.pem", env=_env(lab))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert re.search(r"is not a certificate a TLS client takes from a server: its keyUsage \(\w+\) has none of "
                     r".*, which a TLS server needs", proc.stderr.replace("\n", " ")), proc.stderr


def test_serves_json_writes_the_client_ca_as_it_writes_an_issuer(lab: Path) -> None:
    with serving("--optional", "--cert", lab / "localhost" / "fullchain.pem", "--key",
                 lab / "localhost" / "privkey.pem", env=_env(lab)) as srv:
        data = json.loads(_curl_page(lab, srv.port, "bob", "json"))
    assert srv.info["client_ca"] == "CN=Lab CA" == data["client_ca"] == data["presented"]["issuer"], data

