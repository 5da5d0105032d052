"""probe, verify and serve, audit badinput6 (findings 4, 7 and 10) and peers6 (finding 2), against real
peers on 127.0.0.1: openssl s_server, certkit serve and etcd 3.4 (Go), each started and stopped here.

- badinput6 #4: a --ca-file holding the server's own certificate pins it (as curl --cacert allows): probe
  says ``pinned``, with no chain-break reason beside "verified"; a --ca-file holding another leaf and no CA
  is refused, as verify --ca-file refuses it. probe's dates are said to the second, as other commands do.
- badinput6 #7: a key (or a CSR) given where certificates are loaded (probe --ca-file and --cert, verify's
  certificate, --ca-file and --untrusted, serve --client-ca) is refused in the words of the option that
  took it, never inspect's "...no certificate or CSR to describe".
- badinput6 #10: a certificate file whose certificates after the first are not the CAs of its chain: verify
  names each in a note; serve --cert refuses it at start; fullchain.pem (leaf, then its CAs) stays as it was.
- peers6 #2: against etcd (Go 1.19, which sends ``bad certificate`` for every refusal and for a missing
  certificate), probe says the server requires a certificate when none was sent, and that a refused
  certificate has no clientAuth, with the fix.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_probe import openssl_server

from conftest import assert_clean_error, certkit_env, new_ca, run_certkit, wait_listening
from serve_process import serving

DATE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"  # what every command says of a moment, to the second


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """ca/ (Audit6 CA): localhost/ (a server certificate for localhost and 127.0.0.1), alice/ and bob/
    (client certificates); other/ (another CA) with carol/ (its client certificate)."""
    top = tmp_path_factory.mktemp("audit6-probe")
    env = new_ca(top, "Audit6 CA")
    run_certkit("issue-server", "localhost", "127.0.0.1", "--out", top / "localhost", env=env, check=True)
    for who in ("alice", "bob"):
        run_certkit("issue-client", who, "--out", top / who, env=env, check=True)
    other = new_ca(top / "other", "Audit6 Other CA")
    run_certkit("issue-client", "carol", "--out", top / "carol", env=other, check=True)
    return top


def probe(*args: object) -> subprocess.CompletedProcess:
    return run_certkit("probe", *args, env=certkit_env())


def localhost_server(pki: Path, *extra: object):
    """openssl s_server with the localhost certificate; ``extra``: more options (-cert_chain)."""
    return openssl_server("-cert", pki / "localhost" / "cert.pem", "-key", pki / "localhost" / "privkey.pem", *extra)


# --- badinput6 #4: a leaf in probe's --ca-file -----------------------------------------------------
@pytest.mark.parametrize("sent", ["leaf", "leaf and root"])
def test_probe_ca_file_with_the_servers_own_certificate_says_pinned_and_nothing_against_it(pki: Path, sent: str):
    """--ca-file localhost/cert.pem, the server's own certificate: probe said "chain verified" and, on the
    next line, that the chain breaks (or is "not issued by this CA") at "the trusted CA (CN=localhost)".
    Now: pinned, no reason line, exit 0; --json has pinned true and no reasons. The server sending its root
    along (s_server -cert_chain) changes nothing."""
    extra = ("-cert_chain", pki / "ca" / "ca.pem") if sent == "leaf and root" else ()
    pin = pki / "localhost" / "cert.pem"
    with localhost_server(pki, *extra) as port:
        url = f"https://127.0.0.1:{port}/"
        proc = probe(url, "--ca-file", pin)
        data = json.loads(probe(url, "--ca-file", pin, "--json").stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Is it a valid TLS server certificate for 127.0.0.1? yes" in proc.stdout
    assert f"  chain       pinned: the server's own certificate is in --ca-file {pin}, trusted as itself" \
        in proc.stdout, proc.stdout
    assert "  reason" not in proc.stdout and "trusted CA" not in proc.stdout and "breaks" not in proc.stdout
    server = data["server_certificate"]
    assert (server["verified"], server["pinned"], server["ok"], server["reasons"]) == (True, True, True, [])
    # Dates to the second, as every other command says them.
    assert re.search(rf"      expires    {DATE} \(\d+ days left\)", proc.stdout), proc.stdout
    # The CA's own certificate is no pin: the report it always gave.
    with localhost_server(pki) as port:
        by_ca = probe(f"https://127.0.0.1:{port}/", "--ca-file", pki / "ca" / "ca.pem")
    assert by_ca.returncode == 0 and f"chain       verified against the CA in {pki / 'ca' / 'ca.pem'}" in by_ca.stdout


def test_probe_ca_file_with_another_leaf_and_no_ca_is_refused_as_verify_refuses_it(pki: Path):
    """--ca-file alice/cert.pem (a client certificate, no CA, not the server's): probe printed a report
    calling alice "the trusted CA (CN=alice)". Now one Error line, in verify --ca-file's words."""
    alice = pki / "alice" / "cert.pem"
    with localhost_server(pki) as port:
        proc = probe(f"https://127.0.0.1:{port}/", "--ca-file", alice)
    held = f"{alice} holds no CA certificate (what it holds, CN=alice, is not a CA: basicConstraints CA:FALSE or none)"
    assert_clean_error(proc, f"{held}, nor the server's own certificate (CN=localhost), which a --ca-file may hold "
                             "to pin it.")
    verify = run_certkit("verify", pki / "localhost" / "cert.pem", "--purpose", "server", "--ca-file", alice)
    assert_clean_error(verify, held)


# --- badinput6 #7: a key where certificates are loaded ---------------------------------------------
def test_a_key_or_csr_given_where_certificates_are_loaded_is_refused_in_that_options_words(pki: Path, tmp_path: Path):
    """probe --ca-file key.pem said inspect's "...but no certificate or CSR to describe", as did verify
    --ca-file and verify's certificate; probe --cert key.pem "holds no PEM certificate". Each now names
    the option (or what the file was to be) in the words verify --untrusted and serve --client-ca use."""
    key = pki / "localhost" / "privkey.pem"
    csr = tmp_path / "request.csr"
    subprocess.run(["openssl", "req", "-new", "-key", str(key), "-subj", "/CN=x", "-out", str(csr)], check=True,
                   capture_output=True)
    cert = pki / "localhost" / "cert.pem"
    unreachable = "https://127.0.0.1:1/"  # every file is read before any connection
    for file, what in ((key, "a private key"), (csr, "a CSR")):
        cases = {
            "probe --ca-file": (["probe", unreachable, "--ca-file", file, "--timeout", "1"],
                                "it is given as --ca-file, the CA certificate(s) to trust."),
            "probe --cert": (["probe", unreachable, "--cert", file, "--key", key, "--timeout", "1"],
                             "it is given as the client certificate to present (--cert, --bundle)."),
            "verify --ca-file": (["verify", cert, "--purpose", "server", "--ca-file", file],
                                 "it is given as --ca-file, the CA certificate(s) to trust."),
            "verify --untrusted": (["verify", cert, "--purpose", "server", "--ca-file", pki / "ca" / "ca.pem",
                                    "--untrusted", file], "it is given as --untrusted"),
            "serve --client-ca": (["serve", "--port", "0", "--cert", cert, "--key", key, "--client-ca", file],
                                  "it is given as --client-ca"),
        }
        for label, (args, words) in cases.items():
            proc = run_certkit(*args, env=certkit_env())
            assert_clean_error(proc, f"{file} holds {what} but no certificate; {words}")
            assert "to describe" not in proc.stderr, (label, proc.stderr)
    verify_key = run_certkit("verify", key, "--purpose", "server", env=certkit_env())
    assert_clean_error(verify_key, f"{key} holds a private key but no certificate to verify.")


# --- badinput6 #10: certificates after the first that are not its chain --------------------------------
def _joined(tmp_path: Path, name: str, *files: Path) -> Path:
    path = tmp_path / name
    path.write_bytes(b"".join(f.read_bytes() for f in files))
    return path


def test_verify_names_the_certificates_of_a_file_that_are_not_its_chain(pki: Path, tmp_path: Path):
    """`cat localhost/cert.pem bob/cert.pem > two.pem`: verify said VALID of localhost and nothing of bob.
    Now a note names bob and what he is; a CA that issued none of the chain is named too;
    fullchain.pem and cert.pem followed by its root get no note."""
    ca = ["--ca-file", pki / "ca" / "ca.pem"]
    two = _joined(tmp_path, "two.pem", pki / "localhost" / "cert.pem", pki / "bob" / "cert.pem")
    proc = run_certkit("verify", two, "--purpose", "server", *ca)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    note = (f"  note      {two} holds more than the certificate verified and its chain: CN=bob (certificate 2 of 2), "
            "a client certificate, not a CA certificate. Only the first certificate was verified; a server given "
            "this file sends the others as its chain")
    assert note in proc.stdout, proc.stdout
    data = json.loads(run_certkit("verify", two, "--purpose", "server", *ca, "--json").stdout)
    assert any("CN=bob (certificate 2 of 2), a client certificate" in n for n in data["notes"]), data["notes"]

    stranger = _joined(tmp_path, "stranger.pem", pki / "localhost" / "cert.pem", pki / "other" / "ca" / "ca.pem")
    proc = run_certkit("verify", stranger, "--purpose", "server", *ca)
    assert "CN=Audit6 Other CA (certificate 2 of 2), a CA that issued none of the chain's certificates (the chain " \
           "from CN=localhost ends at CN=localhost)" in proc.stdout, proc.stdout

    with_root = _joined(tmp_path, "with-root.pem", pki / "localhost" / "cert.pem", pki / "ca" / "ca.pem")
    for good in (pki / "localhost" / "fullchain.pem", with_root, pki / "localhost"):
        proc = run_certkit("verify", good, "--purpose", "server", *ca)
        assert proc.returncode == 0 and "note" not in proc.stdout, proc.stdout


def test_serve_refuses_a_cert_file_that_would_send_a_stranger_as_its_chain(pki: Path, tmp_path: Path):
    """serve --cert two.pem started and sent bob's certificate to every client as the chain. Now one Error
    line at start; the certificate followed by its root still serves."""
    key, client_ca = pki / "localhost" / "privkey.pem", pki / "ca" / "ca.pem"
    two = _joined(tmp_path, "two.pem", pki / "localhost" / "cert.pem", pki / "bob" / "cert.pem")
    args = ["serve", "--port", "0", "--cert", two, "--key", key, "--client-ca", client_ca]
    try:  # a real process: one that starts serving is stopped by the timeout, not left running
        proc = subprocess.run([sys.executable, "-m", "certkit", *map(str, args)], env=certkit_env(),
                              capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail("certkit serve started with a client certificate after its own")
    assert_clean_error(proc, f"{two} holds more than a certificate and its chain: CN=bob (certificate 2 of 2), a "
                             "client certificate, not a CA certificate; a server sends every certificate of its file")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    with_root = _joined(tmp_path, "with-root.pem", pki / "localhost" / "cert.pem", client_ca)
    with serving("--cert", with_root, "--key", key, "--client-ca", client_ca) as srv:
        assert srv.port > 0


# --- peers6 #2: a Go server's "bad certificate" -----------------------------------------------------
@pytest.fixture(scope="module")
def etcd_certs(tmp_path_factory) -> Path:
    """What tests/test_peers_etcd.py's Etcd starts a member with: ca/, etcd-1-peer/ (issue-peer) and
    etcd-1-server/ (issue-server); and etcd-2-server/, a server certificate given as a peer's by mistake,
    and alice/, a client certificate."""
    root = tmp_path_factory.mktemp("audit6-etcd")
    env = new_ca(root, "Audit6 etcd CA")
    for kind in ("peer", "server"):
        run_certkit(f"issue-{kind}", "etcd-1.internal", "127.0.0.1", "--out", root / f"etcd-1-{kind}", env=env,
                    check=True)
    run_certkit("issue-server", "etcd-2.internal", "127.0.0.1", "--out", root / "etcd-2-server", env=env, check=True)
    run_certkit("issue-client", "alice", "--out", root / "alice", env=env, check=True)
    return root


def test_probe_explains_a_go_servers_bad_certificate_by_what_was_sent(etcd_certs: Path, tmp_path: Path):
    """etcd 3.4's peer listener (--peer-client-cert-auth) sends `bad certificate` for a missing client
    certificate and for a server certificate given as a peer's. probe said "the server could not verify it"
    of both: of a certificate never sent, and without a word on the clientAuth the certificate lacks."""
    from test_peers_etcd import Etcd

    etcd = Etcd(tmp_path, etcd_certs)
    try:
        member = etcd.start(["etcd-1"], peer_cert="peer", client_cert="server")[0]
        wait_listening(member.peer_port, what="etcd's peer listener", check=etcd.check_running)
        url, ca = f"{member.peer_url}/version", ("--ca-dir", etcd_certs / "ca")
        wrong = probe(url, *ca, "--bundle", etcd_certs / "etcd-2-server")
        good = probe(url, *ca, "--bundle", etcd_certs / "alice")
    finally:
        etcd.stop()
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    lines = {line[:14].strip(): line[14:] for line in wrong.stdout.splitlines() if line.startswith("  ")}
    assert lines["without"] == ("required: without one the server refused (tls alert bad certificate: the server "
                                "requires a client certificate and got none; Java servers, and Go servers before "
                                "Go 1.21 (etcd 3.4 among them), send this alert for a missing one)"), wrong.stdout
    assert "could not verify" not in lines["without"]
    assert lines["with it"].startswith("refused: tls alert bad certificate: "), wrong.stdout
    assert lines["with it"].endswith(
        "; the certificate given has no clientAuth in its extendedKeyUsage, so a server that checks a client "
        "certificate's purpose refuses it (it is a server certificate): give a client certificate (certkit "
        "issue-client), or a peer certificate for a cluster member (certkit issue-peer)"), wrong.stdout
    assert wrong.stderr.startswith("Error: ") and "the client certificate is refused" in wrong.stderr
    assert good.returncode == 0, good.stdout + good.stderr
    assert "with it     accepted: the server answered HTTP 200" in good.stdout and "clientAuth" not in good.stdout
