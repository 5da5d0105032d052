"""issue-peer, certkit's one certificate with both serverAuth and clientAuth, checked by real peers:
openssl verify for both purposes, pkilint, Python's ssl (OpenSSL) on both sides of a loopback
handshake, and what certkit's own inspect, verify and list say about it.

Every check that a peer certificate passes is paired with the server or client certificate
failing the same check, so that none of them could pass by accident.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certkit.tlscheck import Endpoint, client_context, handshake, server_context

from conftest import PASSPHRASE, certkit_env, openssl, pkilint_errors, run_certkit

# Written out here, not imported from certkit.cli.issue: a change to the line the user reads
# must show up as a failing test. The lead engineer owns the text (certkit/cli/issue.py).
WARNING_LINE = (
    "Warning: a peer certificate carries both serverAuth and clientAuth: whoever holds its key can act "
    "as the server and as a client; use it only for cluster members that cannot take separate server "
    "and client certificates (etcd 3.4 peers, Elasticsearch transport, Kafka brokers, Consul servers)."
)
NAMES = ("node-1.cluster.internal", "127.0.0.1")
VERSIONS = ["1.2", "1.3"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict:
    """A CA made through the CLI; two peer certificates (the first one's run kept, to read what it
    printed), and a server and a client certificate from the same CA to compare with."""
    root = tmp_path_factory.mktemp("peers")
    env = certkit_env(CERTKIT_CA_DIR=str(root / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "certkit peers test CA", env=env, check=True)
    first = run_certkit("issue-peer", *NAMES, "--out", root / "node-1", env=env, check=True)
    second = run_certkit("issue-peer", "node-2.cluster.internal", "127.0.0.1", "--out", root / "node-2",
                         "--json", env=env, check=True)
    server = run_certkit("issue-server", "localhost", "127.0.0.1", "--out", root / "server", env=env, check=True)
    client = run_certkit("issue-client", "alice", "--out", root / "alice", env=env, check=True)
    return {"root": root, "env": env, "runs": {"peer": first, "peer --json": second, "server": server,
                                               "client": client}}


def load(pki: dict, name: str, file: str = "cert.pem") -> x509.Certificate:
    return x509.load_pem_x509_certificate((pki["root"] / name / file).read_bytes())


def endpoint(pki: dict, name: str) -> Endpoint:
    return Endpoint(pki["root"] / name / "fullchain.pem", pki["root"] / name / "privkey.pem")


# --- what issue-peer says and writes ------------------------------------------------
def test_the_warning_is_printed_every_time(pki):
    runs = pki["runs"]
    for label in ("peer", "peer --json"):
        assert runs[label].stderr.splitlines() == [WARNING_LINE], (label, runs[label].stderr)
    assert json.loads(runs["peer --json"].stdout)["kind"] == "peer"  # stdout stays one JSON object
    assert "Issued a peer certificate: TLS server AND client authentication (serverAuth, clientAuth)" \
        in runs["peer"].stdout
    for label in ("server", "client"):  # the other issue commands never say it
        assert "Warning" not in runs[label].stderr, runs[label].stderr


@pytest.mark.parametrize("fmt", ["folder", "jsonl"])
def test_a_batch_with_peer_lines_says_so_too(tmp_path, fmt):
    """kind: peer in a manifest issues the same certificate, and the batch prints the same warning
    (counted); a batch without peer lines prints none."""
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", env=env, check=True)
    (tmp_path / "m.csv").write_text("kind,names\npeer,n1.internal 10.0.0.1\npeer,n2.internal\nserver,s.internal\n")
    (tmp_path / "s.csv").write_text("kind,names\nserver,t.internal\n")
    args = ["--format", "jsonl", "--out", tmp_path / "out.jsonl"] if fmt == "jsonl" else []
    proc = run_certkit("issue-batch", "m.csv", *args, "--json", cwd=tmp_path, env=env, check=True)
    assert proc.stderr == "Warning: 2 lines of the manifest (kind: peer) issued peer certificates; " + \
        WARNING_LINE.removeprefix("Warning: ") + "\n"
    assert json.loads(proc.stdout)["by_kind"]["peer"] == 2
    quiet = run_certkit("issue-batch", "s.csv", *(["--format", "jsonl", "--out", tmp_path / "s.jsonl"]
                                                   if fmt == "jsonl" else []), cwd=tmp_path, env=env, check=True)
    assert quiet.stderr == ""


def test_the_warning_comes_before_a_passphrase_prompt(pki, tmp_path):
    """On a terminal the warning is read before anyone types the passphrase; from a variable or a file, a
    wrong passphrase is told its error alone (one line: audit badinput5 #4)."""
    from test_secrets import run_on_terminal

    env = {k: v for k, v in pki["env"].items() if k != "CERTKIT_CA_PASSPHRASE"}
    code, screen = run_on_terminal(["issue-peer", "node-9.cluster.internal", "--out", str(tmp_path / "node-9")],
                                   [(b"CA key passphrase:", b"not the passphrase")] * 3, env, tmp_path)
    assert code == 1 and screen.index(WARNING_LINE.encode()[:60]) < screen.index(b"CA key passphrase:"), screen
    assert not (tmp_path / "node-9").exists()
    env = dict(pki["env"], CERTKIT_CA_PASSPHRASE="not the passphrase")
    proc = run_certkit("issue-peer", "node-9.cluster.internal", "--out", tmp_path / "node-9", env=env)
    assert proc.returncode == 1 and proc.stderr.startswith("Error:") and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "node-9").exists()


def test_a_refused_request_is_told_its_error_alone(pki, tmp_path):
    """The warning is for a certificate about to be issued: a request refused by its checks (a
    lifetime, a name, an existing folder) gets one Error: line and nothing else."""
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "cert.pem").write_text("x")
    for args, fragment in ((["node-9.cluster.internal", "--days", "826"], "at most 825 days"),
                           (["node-9.cluster.internal", "--out", tmp_path / "taken"], "--force"),
                           (["node-9.cluster.internal", "--format", "jsonl", "--out", tmp_path / "taken"],
                            "is not a file")):
        proc = run_certkit("issue-peer", *args, env=pki["env"])
        assert proc.returncode != 0 and len(proc.stderr.splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("Error:") and fragment in proc.stderr, proc.stderr


def test_extensions_are_a_server_certificate_plus_client_auth(pki):
    cert, ca = load(pki, "node-1"), load(pki, "node-1", "ca.pem")
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert list(eku.value) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not eku.critical
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_encipherment  # ECDSA key
    assert not ku.value.key_cert_sign and not ku.value.crl_sign
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [NAMES[0]]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == [NAMES[1]]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == NAMES[0]
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    # issue-server's lifetime: 200 days, counted inclusively.
    period = cert.not_valid_after_utc - cert.not_valid_before_utc + dt.timedelta(seconds=1)
    assert period == dt.timedelta(days=200)
    # Everything but the EKU is what issue-server writes: the same extensions, criticality and
    # key usage, and the server certificate's EKU is serverAuth alone.
    server = load(pki, "server")

    def shape(c: x509.Certificate) -> list:
        return [(e.oid.dotted_string, e.critical) for e in c.extensions]

    assert shape(cert) == shape(server)
    assert ku.value == server.extensions.get_extension_for_class(x509.KeyUsage).value
    assert bc.value == server.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert list(server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == \
        [ExtendedKeyUsageOID.SERVER_AUTH]


# --- OpenSSL and pkilint ----------------------------------------------------------
@pytest.mark.parametrize("purpose", ["sslserver", "sslclient"])
def test_openssl_verify_accepts_it_for_both_purposes(pki, purpose):
    root = pki["root"]
    extra = ["-verify_hostname", NAMES[0]] if purpose == "sslserver" else []
    proc = openssl("verify", "-x509_strict", "-purpose", purpose, *extra, "-CAfile", root / "node-1" / "ca.pem",
                   root / "node-1" / "cert.pem")
    assert proc.returncode == 0 and proc.stdout.decode().strip().endswith(": OK"), proc
    if purpose == "sslserver":
        by_ip = openssl("verify", "-x509_strict", "-purpose", purpose, "-verify_ip", NAMES[1], "-CAfile",
                        root / "node-1" / "ca.pem", root / "node-1" / "cert.pem")
        assert by_ip.returncode == 0, by_ip
    # The same command refuses the certificate that has only the other usage.
    other = "alice" if purpose == "sslserver" else "server"
    refused = openssl("verify", "-x509_strict", "-purpose", purpose, "-CAfile", root / other / "ca.pem",
                      root / other / "cert.pem")
    assert refused.returncode != 0
    assert b"error 26 at 0 depth lookup: unsuitable certificate purpose" in refused.stdout + refused.stderr


def test_pkilint_finds_no_error(pki):
    root = pki["root"]
    assert pkilint_errors(root / "node-1" / "cert.pem") == ""
    assert pkilint_errors(root / "node-1" / "ca.pem", root / "node-1" / "cert.pem") == ""


# --- real handshakes --------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_accepted_as_a_server_certificate(pki, version):
    ca = pki["root"] / "node-1" / "ca.pem"
    for hostname in NAMES:
        result = handshake(server_context(endpoint(pki, "node-1"), None, require_client_cert=False, version=version),
                           client_context(ca, version=version), server_hostname=hostname)
        assert result.accepted, (hostname, result)
        assert result.version == f"TLSv{version}"
    # The client that takes it refuses a client certificate in the same place.
    refused = handshake(server_context(endpoint(pki, "alice"), None, require_client_cert=False, version=version),
                        client_context(ca, version=version), server_hostname="alice")
    assert not refused.accepted
    assert refused.client_error.startswith("certificate verify failed")


@pytest.mark.parametrize("version", VERSIONS)
def test_accepted_as_a_client_certificate(pki, version):
    ca = pki["root"] / "node-1" / "ca.pem"
    requiring = server_context(endpoint(pki, "server"), ca, version=version)  # demands a client certificate
    result = handshake(requiring, client_context(ca, endpoint(pki, "node-1"), version=version))
    assert result.accepted, result
    assert result.peer_subject == f"commonName={NAMES[0]}"
    # The same server refuses the server certificate, for its purpose.
    refused = handshake(requiring, client_context(ca, endpoint(pki, "server"), version=version))
    assert not refused.accepted
    assert refused.server_error == "certificate verify failed: unsuitable certificate purpose"


@pytest.mark.parametrize("version", VERSIONS)
def test_two_peers_authenticate_each_other(pki, version):
    """What a cluster does: each member presents its own peer certificate, the listening one as
    the server, the connecting one as the client, both checked."""
    ca = pki["root"] / "node-1" / "ca.pem"
    result = handshake(server_context(endpoint(pki, "node-1"), ca, version=version),
                       client_context(ca, endpoint(pki, "node-2"), version=version),
                       server_hostname=NAMES[0])
    assert result.accepted, result
    assert result.peer_subject == "commonName=node-2.cluster.internal"


# --- what certkit says about it ---------------------------------------------------
def test_inspect_explains_either_side(pki):
    cert = pki["root"] / "node-1" / "cert.pem"
    proc = run_certkit("inspect", cert, env=pki["env"], check=True)
    out = " ".join(proc.stdout.split())  # the explanation is wrapped
    assert "EKU serverAuth, clientAuth" in out
    assert ("Usable for: TLS server authentication (node-1.cluster.internal, 127.0.0.1) and TLS client "
            "authentication (CN=node-1.cluster.internal; node-1.cluster.internal, 127.0.0.1)") in out
    assert ("Peer certificate: it may be presented by either side of a connection: by a server to its "
            "clients, and by a client to a server that asks for a certificate. That is certkit's one "
            "exception: every other certificate gets one purpose") in out
    assert "cannot take two certificates (certkit issue-peer)." in out
    item = json.loads(run_certkit("inspect", cert, "--json", env=pki["env"], check=True).stdout)["items"][0]
    assert item["kind"] == "peer"
    assert "either side of a connection" in item["either_side"]
    from certkit.inspect import inspect_path, render

    for name, kind in (("server", "server"), ("alice", "client")):  # the others say nothing of the kind
        report = inspect_path(pki["root"] / name / "cert.pem")
        assert (report["items"][0]["kind"], report["items"][0]["either_side"]) == (kind, None)
        assert "Peer certificate" not in render(report)


@pytest.mark.parametrize("purpose, name, other", [("server", NAMES[0], "client"), ("server", NAMES[1], "client"),
                                                 ("client", NAMES[0], "server")])
def test_verify_says_valid_for_both_purposes(pki, purpose, name, other):
    cert = pki["root"] / "node-1" / "cert.pem"
    proc = run_certkit("verify", cert, "--purpose", purpose, "--name", name, env=pki["env"])
    assert proc.returncode == 0, proc.stderr
    assert f"VALID as a TLS {purpose} certificate" in proc.stdout
    assert (f"peer      it carries serverAuth and clientAuth, so it is meant for either side: check it as a "
            f"TLS {other} certificate with --purpose {other}") in proc.stdout
    data = json.loads(run_certkit("verify", cert, "--purpose", purpose, "--json", env=pki["env"]).stdout)
    assert data["valid"] is True and data["peer"] is True


def test_verify_keeps_refusing_single_purpose_certificates(pki):
    for name, purpose in (("server", "client"), ("alice", "server")):
        proc = run_certkit("verify", pki["root"] / name / "cert.pem", "--purpose", purpose, "--json", env=pki["env"])
        assert proc.returncode == 1
        data = json.loads(proc.stdout)
        assert data["valid"] is False and data["peer"] is False


def test_list_shows_kind_peer(pki):
    data = json.loads(run_certkit("list", "--json", env=pki["env"], check=True).stdout)
    kinds = {c["subject"]: c["kind"] for c in data["certificates"]}
    assert kinds == {"CN=node-1.cluster.internal": "peer", "CN=node-2.cluster.internal": "peer",
                     "CN=localhost": "server", "CN=alice": "client"}
    table = run_certkit("list", env=pki["env"], check=True).stdout.splitlines()
    row = next(line for line in table if "CN=node-1.cluster.internal" in line)
    assert row.split()[1] == "peer", row


def test_library_issue_peer_matches_the_cli(tmp_path: Path):
    """CA.issue_peer from Python gives the same profile, and refuses bad names as issue-server does."""
    from certkit import CA
    from certkit.errors import CertkitError

    ca = CA.create("library peers CA")
    issued = ca.issue_peer(["etcd-1.example.internal", "10.0.0.11"])
    assert issued.kind == "peer"
    eku = issued.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(CertkitError, match="public suffix"):
        ca.issue_peer(["*.co.uk"])
    # An RSA peer key also gets keyEncipherment, as an RSA server key does (TLS 1.2 RSA key transport).
    rsa_peer = ca.issue_peer(["etcd-2.example.internal"], key_type="rsa-2048")
    assert rsa_peer.cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
