"""demo, probe and serve, audit round seventeen (helper "show"), against real peers on 127.0.0.1.

- show17 #1: ``certkit demo`` counted a row expected "rejected" as expected whatever refused it and why: with the
  expired client certificate swapped for another CA's (refused for "unable to get local issuer certificate"),
  it still said ``10 of 10 outcomes as expected`` and exited 0, though the row says "past its notAfter date".
  A row is now as expected only when the side that should refuse it refuses it for the expected reason, and a
  row expected accepted only when the other side received the certificate the row is about (the peer certificate
  put in the place of alice's, or of the server's, passed every row before).
- show17 #2: probe labelled a server's own root, sent with its certificate but without the intermediate between
  (``cat cert.pem root.pem``), "NOT of its chain", and said "it sends every client someone else's certificate as
  its chain" ("the chain from CN=localhost ends at CN=localhost"). Now, when the CAs known show it above the
  missing intermediate, it is "root (sent along), above a CA not sent"; when nothing tells, "NOT linked to its
  chain", in words that say the chain stops at a missing issuer. verify and serve --cert say it alike.
- show17 #3: against a TLS 1.2 server that requires a client certificate, probe's header and --json named no
  cipher suite (null): it was read only after a completed handshake.
- show17 #4: serve --optional's JSON answer for a certificate OpenSSL refused for two reasons gave
  ``verify_errors`` as one string joining both, where probe and verify give one entry per error.
- show17 #5: probe of a server by address (``https://127.0.0.1:PORT/``, no SNI) that chooses its TLS settings by
  name and answers such a connection HTTP 421 Misdirected Request (Caddy with client_auth) said "asked for: no,
  the server does not request one", "the server does not ask for client certificates, so it neither checks nor
  uses one" and "never asked for the client certificate", though by name it requires one. Now the 421 is named,
  with the SNI it depends on, and whether it would accept the certificate is not known.
- show17 #6: a server that refuses a handshake for a server name it does not serve, or for none (HAProxy
  strict-sni, nginx ssl_reject_handshake), got OpenSSL's bare words, ``tlsv1 unrecognized name``, from probe;
  now the error says what they mean, and that probe sends no name for an address.
- show17 #7: a server that sends its own certificate twice (``cat cert.pem fullchain.pem``) had the copy labelled
  "(intermediate)" by probe.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_probe import openssl_server

from conftest import PASSPHRASE, certkit_env, new_ca, openssl, run_certkit
from serve_process import serving

BUNDLE_FILES = ("cert.pem", "fullchain.pem", "privkey.pem")


def _demo_with(tmp_path: Path, swap: tuple[str, str], *args: str) -> subprocess.CompletedProcess:
    """``certkit demo --keep`` in a real process, paused once its certificates are written, so that one
    folder's certificate is replaced by another's (``swap``: (folder, taken from)) before any handshake."""
    marker = tmp_path / "paused"
    env = certkit_env(HOME=str(tmp_path), CERTKIT_TEST_PAUSE_AT="handshakes", CERTKIT_TEST_PAUSE_FILE=str(marker))
    proc = subprocess.Popen([sys.executable, "-m", "certkit", "demo", "--keep", "certs", *args], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate(timeout=60)
    into, taken = swap
    for name in BUNDLE_FILES:
        shutil.copyfile(tmp_path / "certs" / taken / name, tmp_path / "certs" / into / name)
    marker.unlink()
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# A row refused, as expected, but by a check that is not the row's: (folder, replaced by, row, expected words)
WRONG_REASON = [
    ("expired-client", "other-ca-client", "expired client certificate (CN=bob)",
     "expected rejected by the server (certificate has expired), observed rejected for another reason (the server "
     "said: certificate verify failed: unable to get local issuer certificate"),
    ("server", "expired-client", "no certificate",
     "expected rejected by the server (did not return a certificate), observed rejected for another reason"),
    ("client-localhost", "other-ca-client", "client certificate presented as server",
     "expected rejected by the client (unsuitable certificate purpose), observed rejected for another reason"),
]


# A row accepted, as expected, but with a certificate that is not the row's: (folder, replaced by, row, words)
WRONG_CERTIFICATE = [
    ("client", "peer", "client certificate (CN=alice)",
     "expected accepted with CN=alice (clientAuth), observed accepted with CN=localhost (serverAuth, clientAuth)"),
    ("server", "peer", "server certificate, right name (localhost)",
     "expected accepted with CN=localhost (serverAuth), observed accepted with CN=localhost (serverAuth, clientAuth)"),
]


@pytest.mark.parametrize("into, taken, row, said", WRONG_CERTIFICATE, ids=[w[0] for w in WRONG_CERTIFICATE])
def test_demo_notices_a_row_accepted_with_another_certificate(tmp_path: Path, into: str, taken: str, row: str,
                                                              said: str):
    """The peer certificate (both usages) passes wherever the client or the server certificate does: put in
    their place, every row still came out as expected, though "clientAuth, signed by the CA the server trusts:
    the server lets alice in" was then said of CN=localhost's peer certificate."""
    proc = _demo_with(tmp_path, (into, taken))
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    line = next(ln for ln in proc.stdout.splitlines() if ln.strip().startswith(row))
    assert "accepted  accepted" in line and "<-- NOT AS EXPECTED (it was CN=localhost (serverAuth, clientAuth)" in line
    assert f"{row}: {said}" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("into, taken, row, said", WRONG_REASON, ids=[w[0] for w in WRONG_REASON])
def test_demo_notices_a_row_refused_for_another_reason(tmp_path: Path, into: str, taken: str, row: str, said: str):
    proc = _demo_with(tmp_path, (into, taken))
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    line = next(ln for ln in proc.stdout.splitlines() if ln.strip().startswith(row))
    assert "rejected  rejected" in line and "<-- NOT AS EXPECTED (the " in line, line
    assert " of 10 outcomes as expected." in proc.stdout and "10 of 10" not in proc.stdout
    assert proc.stderr.startswith("Error: ") and f"{row}: {said}" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_demo_json_says_which_side_must_refuse_and_an_untouched_demo_passes(tmp_path: Path):
    swapped = _demo_with(tmp_path, ("expired-client", "other-ca-client"), "--json")
    rows = {r["scenario"]: r for r in json.loads(swapped.stdout)["rows"]}
    assert swapped.returncode == 1 and json.loads(swapped.stdout)["ok"] is False
    bad = rows["expired client certificate (CN=bob)"]
    assert (bad["observed"], bad["as_expected"], bad["expected_refused_by"]) == ("rejected", False, "server")
    assert [s for s, r in rows.items() if not r["as_expected"]] == ["expired client certificate (CN=bob)"]
    assert rows["wrong hostname (www.example.com)"]["expected_refused_by"] == "client"
    assert rows["client certificate (CN=alice)"]["expected_refused_by"] is None
    assert rows["client certificate (CN=alice)"]["received_certificate"] == "CN=alice (clientAuth)"
    assert rows["peer certificate presented as client"]["expected_certificate"] == \
        "CN=localhost (serverAuth, clientAuth)" == rows["peer certificate presented as client"]["received_certificate"]
    for tls in ("1.2", "1.3"):  # nothing touched: every row is refused by its side for its reason
        good = subprocess.run([sys.executable, "-m", "certkit", "demo", "--tls", tls], cwd=tmp_path, timeout=120,
                              env=certkit_env(HOME=str(tmp_path)), capture_output=True, text=True)
        assert good.returncode == 0 and "10 of 10 outcomes as expected." in good.stdout, (good.stdout, good.stderr)


# --- probe ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """ca/ (Show17 Root) and its intermediate inter/ (Show17 Inter), which issued localhost/ (server) and alice/
    (client)."""
    top = tmp_path_factory.mktemp("audit17-show")
    env = new_ca(top, "Show17 Root") | {"HOME": str(top)}
    (top / "root.pass").write_text(PASSPHRASE + "\n")
    (top / "root.pass").chmod(0o600)
    run_certkit("init-ca", "--ca-dir", top / "inter", "--parent-ca-dir", top / "ca", "--parent-passphrase-file",
                top / "root.pass", "--name", "Show17 Inter", env=env, check=True)
    inter = env | {"CERTKIT_CA_DIR": str(top / "inter")}
    run_certkit("issue-server", "localhost", "127.0.0.1", "--out", top / "localhost", env=inter, check=True)
    run_certkit("issue-client", "alice", "--out", top / "alice", env=inter, check=True)
    return top


def _probe(*args: object) -> tuple[str, dict, int]:
    text = run_certkit("probe", *map(str, args))
    data = json.loads(run_certkit("probe", *map(str, args), "--json").stdout)
    return text.stdout + text.stderr, data, text.returncode


def test_probe_calls_the_root_sent_without_the_intermediate_its_own_not_someone_elses(pki: Path, tmp_path: Path):
    """A server configured with its certificate and its root, the intermediate left out (``cat cert.pem
    root.pem``): the root is its chain's own, above the missing intermediate, as openssl verify shows once given
    the intermediate; it was labelled "NOT of its chain", and "it sends every client someone else's certificate"."""
    root, inter = pki / "ca" / "ca.pem", pki / "inter" / "ca.pem"
    proof = openssl("verify", "-CAfile", root, "-untrusted", inter, pki / "localhost" / "cert.pem")
    assert proof.returncode == 0, proof.stdout + proof.stderr  # the root above the intermediate: one chain
    with openssl_server("-cert", pki / "localhost" / "cert.pem", "-key", pki / "localhost" / "privkey.pem",
                        "-cert_chain", root) as port:
        sent = openssl("s_client", "-connect", f"127.0.0.1:{port}", "-showcerts", input=b"")
        assert sent.stdout.count(b"-----BEGIN CERTIFICATE-----") == 2, sent.stdout  # leaf and root, no intermediate
        url = f"https://localhost:{port}/"
        for trust in (["--ca-dir", pki / "inter"], ["--ca-dir", pki / "ca"]):  # the intermediate known: shown so
            text, data, code = _probe(url, *trust)
            assert code == 1 and "CN=Show17 Root  (root (sent along), above a CA not sent)" in text, text
            assert "NOT of its chain" not in text and "someone else's" not in text, text
            assert ("beware      the server also sends CN=Show17 Root (certificate 2 of 2), the root above CN=Show17 "
                    "Inter, the intermediate CA that issued CN=localhost, which the chain lacks: send the "
                    "intermediate CAs between as well") in text, text
            server = data["server_certificate"]
            assert server["not_of_its_chain"] == [] and len(server["above_missing_intermediate"]) == 1, server
        for trust in (["--ca-file", root], []):  # nothing known tells: not said to be someone else's either
            text, data, code = _probe(url, *trust)
            assert code == 1 and "CN=Show17 Root  (NOT linked to its chain)" in text, text
            assert "someone else's" not in text, text
            assert ("the chain from CN=localhost stops at CN=localhost, whose issuer CN=Show17 Inter is missing (if "
                    "CN=Show17 Inter is an intermediate CA under CN=Show17 Root, that intermediate is what the chain "
                    "lacks)") in text, text
            assert data["server_certificate"]["not_of_its_chain"] == []
    # verify of the same file knows the root of --ca-dir inter, and serve --cert refuses it in the same words
    joined = tmp_path / "leaf-root.pem"
    joined.write_bytes((pki / "localhost" / "cert.pem").read_bytes() + root.read_bytes())
    said = run_certkit("verify", joined, "--purpose", "server", "--ca-dir", pki / "inter")
    assert "CN=Show17 Root (certificate 2 of 2), the root above CN=Show17 Inter" in said.stdout, said.stdout
    assert "issued none of the chain's certificates (the chain from CN=localhost ends" not in said.stdout


def test_probe_still_calls_another_ca_sent_along_someone_elses(pki: Path, tmp_path: Path):
    """The other side of the line: a CA above nothing of the chain, the chain complete to its root, stays
    NOT of its chain, also when the intermediate is missing and the CAs known show the chain's root is another."""
    other = new_ca(tmp_path, "Show17 Stranger")
    stranger = tmp_path / "ca" / "ca.pem"
    assert other["CERTKIT_CA_DIR"] == str(tmp_path / "ca")
    for chain in ([pki / "inter" / "ca.pem", stranger], [stranger]):
        sent = tmp_path / "sent.pem"
        sent.write_bytes(b"".join(p.read_bytes() for p in chain))
        with openssl_server("-cert", pki / "localhost" / "cert.pem", "-key", pki / "localhost" / "privkey.pem",
                            "-cert_chain", sent) as port:
            text, data, _ = _probe(f"https://localhost:{port}/", "--ca-dir", pki / "inter")
        assert "CN=Show17 Stranger  (NOT of its chain)" in text and "someone else's certificate" in text, text
        assert data["server_certificate"]["above_missing_intermediate"] == []


def test_probe_names_the_cipher_of_a_tls12_server_that_requires_a_certificate(pki: Path):
    """TLS 1.2 ends the handshake of a client without a certificate; the cipher suite was chosen before
    (ServerHello), and openssl s_client with the certificate names it. probe's header and --json had none."""
    with openssl_server("-cert", pki / "localhost" / "cert.pem", "-key", pki / "localhost" / "privkey.pem",
                        "-cert_chain", pki / "inter" / "ca.pem", "-CAfile", pki / "ca" / "ca.pem", "-Verify", "1",
                        "-verify_return_error", "-tls1_2") as port:
        real = openssl("s_client", "-connect", f"127.0.0.1:{port}", "-cert", pki / "alice" / "cert.pem",
                       "-key", pki / "alice" / "privkey.pem", "-cert_chain", pki / "inter" / "ca.pem", "-brief",
                       input=b"")
        cipher = next(ln.split(":", 1)[1].strip() for ln in real.stderr.decode().splitlines()
                      if ln.startswith("Ciphersuite:"))
        for client in ([], ["--bundle", pki / "alice"]):
            text, data, _ = _probe(f"https://localhost:{port}/", "--ca-dir", pki / "ca", *client)
            assert data["tls_version"] == "TLSv1.2" and data["cipher"] == cipher, data
            first = f"https://localhost:{port}/: localhost:{port} (127.0.0.1), TLSv1.2, {cipher}"
            assert text.splitlines()[0] == first, text
            assert data["client_certificate"]["without_one_verdict"].startswith("required"), data


# --- serve ------------------------------------------------------------------------------------------------------
def test_serve_json_lists_each_openssl_error_of_a_refused_certificate_apart(pki: Path, tmp_path: Path):
    """An expired client certificate from another CA fails OpenSSL's check twice; serve --optional's JSON answer
    gave ``verify_errors`` one string holding both ("unable to get local issuer certificate; certificate has
    expired"), where probe and verify list one error per entry, as docs/serve.md says it gives them."""
    demo = subprocess.run([sys.executable, "-m", "certkit", "demo", "--keep", tmp_path / "demo"], cwd=tmp_path,
                          env=certkit_env(HOME=str(tmp_path)), capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0, demo.stderr
    bob = tmp_path / "demo" / "expired-client"
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(pki / "inter"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    with serving("--optional", env=env) as srv:
        def answer(fmt: str) -> str:
            return subprocess.run(["curl", "-sS", "--max-time", "30", "--cacert", str(pki / "ca" / "ca.pem"), "--cert",
                                   str(bob / "fullchain.pem"), "--key", str(bob / "privkey.pem"),
                                   f"https://localhost:{srv.port}/?format={fmt}"],
                                  capture_output=True, text=True, timeout=60, check=True).stdout
        data, text = json.loads(answer("json")), answer("text")
    assert data["authenticated"] is False and data["presented"]["status"] == "expired", data
    assert data["verify_errors"] == ["unable to get local issuer certificate", "certificate has expired"], data
    said = next(ln for ln in text.splitlines() if ln.startswith("  refused      OpenSSL: "))
    assert said.removeprefix("  refused      OpenSSL: ").split("; ") == data["verify_errors"], text
    assert data["reason"].endswith("OpenSSL: unable to get local issuer certificate; certificate has expired")


CADDY_MTLS = """{{
  admin off
  auto_https off
  storage file_system {home}/storage
}}
https://localhost:{port} {{
  tls {cert} {key} {{
    client_auth {{
      mode require_and_verify
      trusted_ca_cert_file {ca}
    }}
  }}
  respond "hello {{tls_client_subject}}"
}}
"""


def test_probe_by_address_of_a_server_that_picks_its_settings_by_name_is_not_said_to_ask_for_none(
        pki: Path, tmp_path: Path):
    """Caddy requires client certificates of the site it serves by name; a connection without a server name
    (SNI), as probe (and any TLS client) makes to an address, gets its TLS settings without that requirement,
    and the request an answer HTTP 421 Misdirected Request, as curl shows. probe said "the server does not ask for
    client certificates, so it neither checks nor uses one" and "never asked for the client certificate"."""
    from acme_helpers import caddy_env, stop_process
    from conftest import free_port, require, wait_listening

    require("caddy")
    port, home = free_port(), tmp_path / "caddy-home"
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(CADDY_MTLS.format(home=home, port=port, cert=pki / "localhost" / "fullchain.pem",
                                           key=pki / "localhost" / "privkey.pem", ca=pki / "ca" / "ca.pem"))
    log = tmp_path / "caddy.log"
    with open(log, "w") as out:
        caddy = subprocess.Popen(["caddy", "run", "--config", str(caddyfile), "--adapter", "caddyfile"],
                                 env=caddy_env(home), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_listening(port, caddy, "caddy", log=log.read_text)
        alice = ["--cert", str(pki / "alice" / "fullchain.pem"), "--key", str(pki / "alice" / "privkey.pem")]

        def curl(host: str, *args: str) -> str:
            return subprocess.run(["curl", "-sS", "--max-time", "30", "-o", "/dev/null", "-w", "%{http_code}",
                                   "--cacert", str(pki / "ca" / "ca.pem"), *args, f"https://{host}:{port}/"],
                                  capture_output=True, text=True, timeout=60).stdout
        assert curl("127.0.0.1") == "421" and curl("127.0.0.1", *alice) == "421"  # no SNI: misdirected
        assert curl("localhost", *alice) == "200" and curl("localhost") != "200"  # by name: required, taken
        text, data, code = _probe(f"https://127.0.0.1:{port}/", "--ca-dir", pki / "ca", "--bundle", pki / "alice")
        by_name = run_certkit("probe", f"https://localhost:{port}/", "--ca-dir", pki / "ca", "--bundle", pki / "alice")
    finally:
        stop_process(caddy)
    assert "does not ask for client certificates" not in text and "does not request one" not in text, text
    assert "  asked for   no, not on this connection" in text, text
    misdirected = ("the server answered HTTP 421 Misdirected Request: it does not serve 127.0.0.1 on this connection, "
                   "whose TLS settings (its certificate, whether it asks for a client certificate) it chose by the "
                   "server name the client sent (SNI), and probe sends none for an address such as 127.0.0.1")
    lines = {line[:14].strip(): line[14:] for line in text.splitlines() if line.startswith("  ")}
    assert lines["without"].startswith(f"not known: no client certificate was asked for on this connection, but "
                                       f"{misdirected}"), text
    assert lines["with it"].startswith(f"never sent: no client certificate was asked for on this connection, and "
                                       f"{misdirected}"), text
    assert data["client_certificate"]["accepted"] is None and code == 1
    assert text.endswith(f"Error: 127.0.0.1:{port}: the server answered HTTP 421 Misdirected Request and asked for "
                         "no client certificate on this connection, so whether it accepts the client certificate is "
                         "not known: probe it by a name it serves.\n"), text
    assert by_name.returncode == 0 and "  with it     accepted: the server answered HTTP 200" in by_name.stdout


HAPROXY_STRICT_SNI = """global
  log stdout format raw local0
defaults
  mode http
  timeout connect 5s
  timeout client 10s
  timeout server 10s
frontend f
  bind 127.0.0.1:{port} ssl crt {pem} strict-sni
  http-request return status 200 content-type text/plain string ok
"""


def test_probe_says_what_a_refusal_of_the_server_name_means(pki: Path, tmp_path: Path):
    """HAProxy ``strict-sni`` and nginx ``ssl_reject_handshake on`` end a handshake whose server name (SNI) they
    serve no certificate for, or that has none (any client connecting to an address), with the alert
    ``unrecognized name``, as curl shows; probe gave OpenSSL's bare words, ``tlsv1 unrecognized name``."""
    from conftest import free_port, require, wait_listening
    from nginx_helper import nginx

    haproxy = require("haproxy")
    pem = tmp_path / "haproxy.pem"
    pem.write_bytes(b"".join((pki / "localhost" / name).read_bytes() for name in ("fullchain.pem", "privkey.pem")))
    port = free_port()
    (tmp_path / "haproxy.cfg").write_text(HAPROXY_STRICT_SNI.format(port=port, pem=pem))
    proc = subprocess.Popen([haproxy, "-db", "-f", tmp_path / "haproxy.cfg"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_listening(port, proc, "haproxy")
        curl = subprocess.run(["curl", "-sS", "--max-time", "30", "--cacert", pki / "ca" / "ca.pem",
                               f"https://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=60)
        assert curl.returncode != 0 and "unrecognized name" in curl.stderr, curl.stderr
        by_address = run_certkit("probe", f"https://127.0.0.1:{port}/", "--ca-dir", pki / "ca")
        by_name = run_certkit("probe", f"https://localhost:{port}/", "--ca-dir", pki / "ca")
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdout.close()
    assert by_address.returncode == 1 and by_address.stdout == "", by_address.stdout
    assert by_address.stderr == (
        f"Error: 127.0.0.1:{port} did not complete a TLS handshake: tlsv1 unrecognized name: the server serves no "
        "certificate for the server name the client sent (SNI; probe sent none, as for any address such as "
        "127.0.0.1: TLS carries host names only), and refuses the handshake: probe it by a name it serves.\n")
    assert by_name.returncode == 0, by_name.stdout + by_name.stderr  # by the name it serves: in
    with nginx(tmp_path, "        ssl_reject_handshake on;") as (port, _log):
        named = run_certkit("probe", f"https://localhost:{port}/")
    assert named.returncode == 1 and named.stderr.endswith(
        "tlsv1 unrecognized name: the server serves no certificate for the server name the client sent (SNI; probe "
        "sent localhost), and refuses the handshake: probe it by a name it serves.\n"), named.stderr


def test_probe_does_not_call_the_servers_own_certificate_sent_twice_an_intermediate(pki: Path):
    """``cat cert.pem fullchain.pem`` as the server's file sends its own certificate twice; OpenSSL clients take
    the chain (s_client verifies it). probe labelled the copy "(intermediate)"."""
    with openssl_server("-cert", pki / "localhost" / "cert.pem", "-key", pki / "localhost" / "privkey.pem",
                        "-cert_chain", pki / "localhost" / "fullchain.pem") as port:
        sent = openssl("s_client", "-connect", f"127.0.0.1:{port}", "-showcerts", "-CAfile", pki / "ca" / "ca.pem",
                       "-verify_return_error", input=b"")
        text, data, code = _probe(f"https://localhost:{port}/", "--ca-dir", pki / "ca")
    assert sent.stdout.count(b"-----BEGIN CERTIFICATE-----") == 3 and b"Verify return code: 0 (ok)" in sent.stdout
    assert code == 0 and "  [1] CN=localhost  (the same certificate as [0], sent again)" in text, text
    assert "  [2] CN=Show17 Inter  (intermediate)" in text and text.count("(intermediate)") == 1, text
    assert data["server_certificate"]["not_of_its_chain"] == [] and data["server_certificate"]["ok"] is True
