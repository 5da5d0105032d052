"""Round twenty-five, peers.

1. ``certkit renew NAME`` given a peer's host as etcd's and Redis's settings write it (a peer URL from
   --initial-advertise-peer-urls, ``host:port``, an IPv6 address in a URL's brackets, ``[::1]:2380``) said only
   "No certificate of this CA matches '...'; 'certkit list' shows them", though the host in it names one: what
   issue-peer, issue-server and verify --name say of the same text (the host to give) was not said. Where the
   host it holds names a certificate, renew now says so in the same words, and renews nothing.
2. ``certkit verify PEER --purpose client --name [2001:db8::11]`` (or ``etcd-1.cluster.internal:2380``, a peer URL):
   etcd checks a connecting member's certificate against the address it connects from, so a peer certificate is
   checked as a client by its host; given in those notations the name was said "NOT VALID ... it names ...,
   2001:db8::11, ..." without a word of why (--purpose server refused the same text, naming the host to give).
   Where the host it holds is one of the certificate's names, the reason now says so, in the same words.
3. The same text as a --name glob (``list --name etcd-1.cluster.internal:2380``, ``renew --expiring 30d --name
   '[2001:db8::11]'``, and ``renew --install-timer`` with it) matched nothing and said only "No certificates
   match." (list) or nothing at all (renew in bulk, exit 0): a timer installed with it renews no peer, every day,
   silently, until the certificate expires and the cluster refuses it. Where the host in it names a certificate,
   each now warns, in the same words, and goes on as before.
4. The same for an IPv4 peer's address in another notation than four decimal numbers: IPv6's IPv4-mapped form
   (``::ffff:127.0.0.1``, as a dual-stack socket shows an IPv4 peer), ``127.1``, ``0x7f000001``: renew, verify
   --purpose client, list and renew --name now say which address to give, as issue-peer does.
5. ``issue-peer NAME --out FOLDER --force`` over a bundle that held a bundle.p12 (a Kafka broker's keystore, from
   ``--p12``) removed it without a word, the summary listing only the files written: the broker finds no keystore
   at its next start. ``renew`` says it ("... was the old bundle's bundle.p12 and was removed; export it again");
   issue-peer, issue-server, issue-client and sign-csr with --force now say it too (also under --json's notes).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import PASSPHRASE, assert_clean_error, new_ca, require, run_certkit


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("peers25")
    env = new_ca(folder, "certkit round 25 peers CA")
    run_certkit("issue-peer", "etcd-1.cluster.internal", "2001:db8::11", "127.0.0.1", "--out", folder / "etcd-1",
                env=env, check=True)
    return folder, env


# --- 1. renew given a peer's host in a URL's, a port's or brackets' notation ----------------------------------------
@pytest.mark.parametrize(("given", "said"), [
    ("https://etcd-1.cluster.internal:2380", "is a URL; a certificate names the host alone (the host is "
                                             "'etcd-1.cluster.internal')"),
    ("etcd-1.cluster.internal:2380", "has a port (:2380); a certificate names the host alone "
                                     "('etcd-1.cluster.internal')"),
    ("ETCD-1.Cluster.Internal:2380", "has a port (:2380); a certificate names the host alone"),
    ("[2001:db8::11]", "is the IPv6 address 2001:db8::11 in the brackets of a URL: a certificate names the address "
                       "alone ('2001:db8::11')"),
    ("[2001:db8::11]:2380", "has a port (:2380); a certificate names the host alone ('2001:db8::11')"),
    ("https://[2001:DB8:0::11]:2380/", "is a URL; a certificate names the host alone"),
    ("127.0.0.1:2380", "has a port (:2380); a certificate names the host alone ('127.0.0.1')"),
    ("::ffff:127.0.0.1", "is the IPv4 address 127.0.0.1 written as IPv6 (IPv4-mapped): clients that connect to "
                         "127.0.0.1 do not match it in a certificate; give the IPv4 address itself (127.0.0.1)."),
    ("0x7f000001", "is not a valid IPv4 address: '0x7f000001' is hexadecimal, and an address is written in decimal; "
                   "curl and browsers read it as 127.0.0.1, so a certificate names that address ('127.0.0.1')."),
])
def test_renew_says_which_host_a_peer_url_or_host_port_holds(peers, given, said):
    folder, env = peers
    before = (folder / "etcd-1" / "cert.pem").read_bytes()
    ran = run_certkit("renew", given, env=env)
    assert_clean_error(ran, f"No certificate of this CA matches '{given}' (looked for a bundle folder, a serial or "
                            f"a name). '{given}' {said}")
    assert "certkit list" not in ran.stderr, ran.stderr
    assert_clean_error(run_certkit("renew", given, "--json", env=env), said)
    assert (folder / "etcd-1" / "cert.pem").read_bytes() == before
    listed = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)
    assert listed["count"] == 1, listed


@pytest.mark.parametrize("given", ["other.cluster.internal:2380", "https://[2001:db8::99]:2380", "alice",
                                   "alice@etcd-1.cluster.internal"])
def test_renew_of_a_host_no_certificate_names_says_what_it_said(peers, given):
    _folder, env = peers
    ran = run_certkit("renew", given, env=env)
    assert_clean_error(ran, f"No certificate of this CA matches '{given}' (looked for a bundle folder, a serial or "
                            "a name); 'certkit list' shows them.")


def test_renew_given_a_redis_url_with_its_password_names_the_host_and_never_the_password(peers):
    _folder, env = peers
    ran = run_certkit("renew", "rediss://default:s3cret-pw@127.0.0.1:6380/0", env=env)
    assert_clean_error(ran, "'rediss://***@127.0.0.1:6380/0' is a URL; a certificate names the host alone (the host "
                            "is '127.0.0.1')")
    assert "s3cret" not in ran.stdout + ran.stderr, ran.stderr


def _refused(ran, said: str) -> None:
    """verify's NOT VALID: its report on stdout, one Error: line saying ``said`` on stderr, exit 1."""
    assert ran.returncode == 1 and "Traceback" not in ran.stderr, ran
    assert ran.stderr.startswith("Error: ") and ran.stderr.count("\n") == 1 and said in ran.stderr, ran.stderr
    assert "NOT VALID as a TLS client certificate" in ran.stdout, ran.stdout


# --- 2. verify --purpose client given a peer's host in a URL's, a port's or brackets' notation ------------------------
@pytest.mark.parametrize(("given", "host", "said"), [
    ("[2001:db8::11]", "2001:db8::11", "is the IPv6 address 2001:db8::11 in the brackets of a URL: a certificate "
                                       "names the address alone ('2001:db8::11')"),
    ("[2001:DB8::11]:2380", "2001:db8::11", "has a port (:2380); a certificate names the host alone"),
    ("etcd-1.cluster.internal:2380", "etcd-1.cluster.internal", "has a port (:2380); a certificate names the host "
                                                                "alone ('etcd-1.cluster.internal')"),
    ("https://127.0.0.1:2380", "127.0.0.1", "is a URL; a certificate names the host alone (the host is "
                                            "'127.0.0.1')"),
    # as a dual-stack socket shows an IPv4 peer, and as curl and browsers read a number
    ("::ffff:127.0.0.1", "127.0.0.1", "is the IPv4 address 127.0.0.1 written as IPv6 (IPv4-mapped)"),
    ("127.1", "127.0.0.1", "is not a valid IPv4 address: it has 2 parts, an IPv4 address has 4; curl and browsers "
                           "read it as 127.0.0.1, so a certificate names that address ('127.0.0.1')"),
])
def test_verify_as_a_client_says_which_host_a_peer_url_or_host_port_holds(peers, given, host, said):
    folder, env = peers
    cert = folder / "etcd-1" / "cert.pem"
    ran = run_certkit("verify", cert, "--purpose", "client", "--name", given, env=env)
    _refused(ran, f"not valid for name {given}: it names CN=etcd-1.cluster.internal and etcd-1.cluster.internal, "
                  f"2001:db8::11, 127.0.0.1: '{given}' {said}")
    data = json.loads(run_certkit("verify", cert, "--purpose", "client", "--name", given, "--json", env=env).stdout)
    assert said in json.dumps(data), data
    # The host it names is the one that matches: for certkit, and for OpenSSL's own client check.
    run_certkit("verify", cert, "--purpose", "client", "--name", host, env=env, check=True)
    check = ["-verify_ip", host] if host[0].isdigit() else ["-verify_hostname", host]
    proc = subprocess.run([require("openssl"), "verify", "-x509_strict", "-purpose", "sslclient", *check, "-CAfile",
                           folder / "etcd-1" / "ca.pem", cert], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip().endswith(": OK"), proc


@pytest.mark.parametrize("given", ["other.cluster.internal:2380", "[2001:db8::99]", "alice", "10", "::ffff:10.0.0.9"])
def test_verify_as_a_client_of_a_host_the_certificate_does_not_name_says_what_it_said(peers, given):
    folder, env = peers
    ran = run_certkit("verify", folder / "etcd-1" / "cert.pem", "--purpose", "client", "--name", given, env=env)
    _refused(ran, f"not valid for name {given}: it names CN=etcd-1.cluster.internal and etcd-1.cluster.internal, "
                  "2001:db8::11, 127.0.0.1.")


def test_verify_as_a_client_still_matches_a_uri_the_certificate_holds(tmp_path):
    env = new_ca(tmp_path, "certkit round 25 URI CA")
    run_certkit("issue-client", "etcd-1", "--uri", "https://etcd-1.cluster.internal:2380", "--out", tmp_path / "c",
                env=env, check=True)
    ran = run_certkit("verify", tmp_path / "c" / "cert.pem", "--purpose", "client", "--name",
                      "https://etcd-1.cluster.internal:2380", env=env)
    assert ran.returncode == 0 and "VALID as a TLS client certificate" in ran.stdout, ran


# --- 3. a --name glob in those notations: list, renew in bulk, renew --install-timer ---------------------------------
GLOBS = [("etcd-1.cluster.internal:2380", "has a port (:2380); a certificate names the host alone "
                                          "('etcd-1.cluster.internal')"),
         ("[2001:db8::11]", "is the IPv6 address 2001:db8::11 in the brackets of a URL"),
         ("https://etcd-1.cluster.internal:2380", "is a URL; a certificate names the host alone"),
         ("::ffff:127.0.0.1", "is the IPv4 address 127.0.0.1 written as IPv6 (IPv4-mapped)")]


@pytest.mark.parametrize(("given", "said"), GLOBS)
def test_list_and_renew_in_bulk_warn_of_a_name_glob_holding_a_peers_host(peers, tmp_path, given, said):
    folder, env = peers
    warning = f"Warning: --name '{given}' matches no certificate: '{given}' {said}"
    listed = run_certkit("list", "--name", given, env=env)
    assert listed.returncode == 0 and listed.stdout == "No certificates match.\n", listed
    assert warning in listed.stderr and "Traceback" not in listed.stderr, listed.stderr
    as_json = run_certkit("list", "--name", given, "--json", env=env)
    assert json.loads(as_json.stdout)["count"] == 0 and warning in as_json.stderr, as_json
    before = (folder / "etcd-1" / "cert.pem").read_bytes()
    for bulk in (["--all"], ["--expiring", "30d"]):
        ran = run_certkit("renew", *bulk, "--name", given, env=env)
        assert ran.returncode == 0 and warning in ran.stderr and "Traceback" not in ran.stderr, ran
    assert (folder / "etcd-1" / "cert.pem").read_bytes() == before
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    timer = run_certkit("renew", "--install-timer", "--unit-dir", tmp_path / "units", "--passphrase-file", secret,
                        "--expiring", "30d", "--name", given, env=dict(env, CERTKIT_CA_PASSPHRASE=""))
    assert warning in timer.stderr, timer


@pytest.mark.parametrize("given", ["etcd-1.cluster.internal", "2001:db8::11", "*.cluster.internal",
                                   "other.cluster.internal:2380", "spiffe://cluster.internal/*"])
def test_list_says_nothing_more_of_a_name_glob_that_matches_or_holds_no_named_host(peers, given):
    _folder, env = peers
    listed = run_certkit("list", "--name", given, env=env)
    assert listed.returncode == 0 and "Warning" not in listed.stderr, listed


def test_renew_of_a_host_port_whose_host_names_two_certificates_says_the_notation(tmp_path):
    env = new_ca(tmp_path, "certkit round 25 two CA")
    run_certkit("issue-peer", "etcd-1.cluster.internal", "--out", tmp_path / "peer", env=env, check=True)
    run_certkit("issue-server", "etcd-1.cluster.internal", "--out", tmp_path / "server", env=env, check=True)
    assert_clean_error(run_certkit("renew", "etcd-1.cluster.internal:2380", env=env),
                       "'etcd-1.cluster.internal:2380' has a port (:2380); a certificate names the host alone "
                       "('etcd-1.cluster.internal')")
    assert_clean_error(run_certkit("renew", "etcd-1.cluster.internal", env=env), "names 2 current certificates")


# --- 5. --force over a bundle with a bundle.p12: its removal said -----------------------------------------------------
@pytest.mark.parametrize("command", [["issue-peer", "kafka-1.cluster.internal"], ["issue-server", "kafka-1.internal"],
                                     ["issue-client", "kafka-admin"]])
def test_force_over_a_bundle_with_a_keystore_says_it_removed_it(tmp_path, command):
    env = new_ca(tmp_path, "certkit round 25 p12 CA")
    secret = tmp_path / "p12-password"
    secret.write_text("keystore-secret\n")
    secret.chmod(0o600)
    broker = tmp_path / "broker"
    run_certkit(*command, "--out", broker, "--p12", "--p12-password-file", secret, env=env, check=True)
    ran = run_certkit(*command, "--out", broker, "--force", env=env)
    assert ran.returncode == 0, ran
    said = f"{broker}/bundle.p12 was the replaced bundle's bundle.p12 and was removed; export it again: " \
           f"certkit export-p12 {broker}"
    assert f"  note      {said}" in ran.stdout and not (broker / "bundle.p12").exists(), ran.stdout
    # with --p12, the keystore is written anew (the new certificate in it) and nothing is said of a removal
    ran = run_certkit(*command, "--out", broker, "--force", "--p12", "--p12-password-file", secret, env=env)
    assert ran.returncode == 0 and "was removed" not in ran.stdout, ran
    dump = subprocess.run([require("openssl"), "pkcs12", "-in", broker / "bundle.p12", "-passin",
                           "pass:keystore-secret", "-nokeys", "-clcerts"], capture_output=True, text=True, timeout=60)
    serial = subprocess.run([require("openssl"), "x509", "-noout", "-serial"], input=dump.stdout, capture_output=True,
                            text=True, timeout=60).stdout
    assert serial and serial == subprocess.run([require("openssl"), "x509", "-noout", "-serial", "-in",
                                                broker / "cert.pem"], capture_output=True, text=True).stdout
    # --json carries it in its notes; a folder without a keystore gets no such note
    ran = run_certkit(*command, "--out", broker, "--force", "--json", env=env)
    assert said in json.loads(ran.stdout)["notes"], ran.stdout
    ran = run_certkit(*command, "--out", broker, "--force", "--json", env=env)
    assert json.loads(ran.stdout)["notes"] == [], ran.stdout


def test_sign_csr_force_over_a_bundle_with_a_keystore_says_it_removed_it(tmp_path):
    env = new_ca(tmp_path, "certkit round 25 csr CA")
    secret = tmp_path / "p12-password"
    secret.write_text("keystore-secret\n")
    secret.chmod(0o600)
    run_certkit("issue-peer", "kafka-2.cluster.internal", "--out", tmp_path / "b", "--p12", "--p12-password-file",
                secret, env=env, check=True)
    subprocess.run([require("openssl"), "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", tmp_path / "k.pem", "-subj", "/CN=kafka-2.cluster.internal", "-out",
                    tmp_path / "r.csr"], capture_output=True, check=True, timeout=60)
    ran = run_certkit("sign-csr", tmp_path / "r.csr", "--peer", "--out", tmp_path / "b", "--force", env=env)
    assert ran.returncode == 0, ran
    assert f"  note      {tmp_path}/b/bundle.p12 was the replaced bundle's bundle.p12 and was removed\n" in ran.stdout
