"""Round twenty, peers: names that real peers read otherwise than certkit.

1. Under a CA with name constraints, a URI's host is checked against the permitted domains. OpenSSL (nginx, curl,
   Node, Python's ssl, Redis) reads a URI's host from '//' to its first ':' wherever it is, else to its first '/':
   https://svc.example.internal?x has the host 'svc.example.internal?x' for it, https://svc.example.internal/a:b the
   host 'svc.example.internal/a'. certkit took the host as RFC 3986 reads it (Go, Java) and certified such URIs below
   an intermediate permitting example.internal; OpenSSL refuses those certificates ('permitted subtree violation'),
   and `certkit verify` called them VALID, "as OpenSSL and GnuTLS do". They are now refused with the URI to give,
   verify says why OpenSSL refuses one made elsewhere, and a renewal keeps one certified before, with a note. A URI
   with no host, or an IP address as its host, which no URI constraint matches, is refused saying so rather than as
   "outside the name constraints (permitted: ..., 10.0.0.0/8)".
2. An IPv4 address written in fullwidth digits (１２７.0.0.1), which browsers and curl map to ASCII (UTS 46) and
   read as 127.0.0.1, was refused as "'１２７' is not a number"; the refusal now names the address.
3. docs/peers.md had etcd members share one peer name, first, "so that it is the subject CN", for
   --peer-cert-allowed-cn. A name over 64 bytes cannot be a CN: the subject is empty and etcd refuses every member.
   issue-peer now notes it, and the page gives --peer-cert-allowed-hostname (and its wildcard catch), run here.
4. '::127.0.0.1' (RFC 4291's deprecated IPv4-compatible form) was certified as IP:::7f00:1, an IPv6 address no host
   has, which OpenSSL never matches for a client connecting to 127.0.0.1; it is refused naming the IPv4 address, as
   the IPv4-mapped form is.
5. init-ca --permit-dns 10.0.0.0/8 was refused as "label '0/8' contains '/'", --permit-ip example.internal as "does
   not appear to be an IPv4 or IPv6 network", a list in one value for a bad label: each now says which option the
   value belongs to, or that it holds several (acme serve --allow-domain/--allow-ip read them the same way).
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, new_ca, run_certkit

# --- 1. a URI whose host OpenSSL reads otherwise ----------------------------------------------------------------------
# Each URI: the host OpenSSL reads in it, and the URI certkit says to give instead.
OPENSSL_HOST = {
    "https://svc.example.internal?x": ("svc.example.internal?x", "https://svc.example.internal/?x"),
    "https://svc.example.internal#f": ("svc.example.internal#f", "https://svc.example.internal/#f"),
    "https://svc.example.internal/a:b": ("svc.example.internal/a", "https://svc.example.internal/a%3Ab"),
}
CA_WORDS = "the name constraints of CA 'certkit URI issuing' (URI hosts: example.internal and their subdomains)"


def _reading(uri: str) -> str:
    host, _fixed = OPENSSL_HOST[uri]
    return (f"has the host 'svc.example.internal', but OpenSSL (so nginx, curl, Node, Python's ssl, Redis) reads it as "
            f"'{host}' (it ends a URI's host at its first ':', else at its first '/'), outside {CA_WORDS}, and "
            "refuses the certificate")


@contextlib.contextmanager
def _older():
    """certkit before round twenty, which read a URI's host as RFC 3986 does only: within it, certkit issues as it
    did."""
    import certkit.constraints as constraints

    with pytest.MonkeyPatch.context() as older:
        read = getattr(constraints, "uri_hosts", None)  # None: a certkit that reads it so already
        if read is not None:
            older.setattr(constraints, "uri_hosts", lambda uri: (read(uri)[0],) * 2)
        yield


@pytest.fixture(scope="module")
def issuing(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A root and an intermediate below it permitting example.internal (the environment issuing from it)."""
    folder = tmp_path_factory.mktemp("uri-issuing")
    env = new_ca(folder, "certkit URI root")
    run_certkit("init-ca", "--ca-dir", folder / "issuing", "--parent-ca-dir", folder / "ca", "--name",
                "certkit URI issuing", "--permit-dns", "example.internal",
                env=env | {"CERTKIT_PARENT_CA_PASSPHRASE": PASSPHRASE}, check=True)
    return folder, {**env, "CERTKIT_CA_DIR": str(folder / "issuing")}


def _openssl_verify(root: Path, bundle: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", str(root),
                           "-untrusted", str(bundle / "chain.pem"), str(bundle / "cert.pem")], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("uri", OPENSSL_HOST)
def test_openssl_refuses_a_uri_whose_host_it_reads_otherwise_and_certkit_now_refuses_it(tmp_path, issuing, uri):
    folder, env = issuing
    root = folder / "ca" / "ca.pem"
    with _older():  # as certkit issued it before
        run_certkit("issue-client", "Svc Old", "--uri", uri, "--out", tmp_path / "old", env=env, check=True)
    refused = _openssl_verify(root, tmp_path / "old")
    assert refused.returncode != 0 and "permitted subtree violation" in refused.stdout + refused.stderr, refused
    verified = run_certkit("verify", tmp_path / "old", "--purpose", "client", env=env)
    assert verified.returncode == 1 and "NOT VALID as a TLS client certificate" in verified.stdout, verified.stdout
    host, fixed = OPENSSL_HOST[uri]
    assert (f"{uri} is outside the name constraints of CN=certkit URI issuing (OpenSSL, which refuses it, reads the "
            f"host of {uri} as '{host}', not 'svc.example.internal': it ends a URI's host at its first ':', else at "
            "its first '/')") in " ".join(verified.stdout.split()), verified.stdout
    # now: refused, with the URI to give, which OpenSSL accepts
    assert_clean_error(run_certkit("issue-client", "Svc New", "--uri", uri, "--out", tmp_path / "new", env=env),
                       f"'{uri}' {_reading(uri)}; give '{fixed}'.")
    assert not (tmp_path / "new").exists()
    run_certkit("issue-client", "Svc New", "--uri", fixed, "--out", tmp_path / "new", env=env, check=True)
    assert _openssl_verify(root, tmp_path / "new").returncode == 0


def test_a_certificate_certified_with_such_a_uri_before_is_renewed_with_it_and_a_note(tmp_path, issuing):
    _folder, env = issuing
    uri = "https://svc.example.internal?x"
    with _older():
        run_certkit("issue-client", "Svc Old", "--uri", uri, "--out", tmp_path / "old", env=env, check=True)
    renewed = run_certkit("renew", tmp_path / "old", env=env, subprocess=True)
    assert renewed.returncode == 0, renewed.stderr
    assert (f"note it names the URI {uri}, which {_reading(uri)}; to change it, issue a new certificate naming "
            f"'{OPENSSL_HOST[uri][1]}'") in " ".join(renewed.stdout.split()), renewed.stdout
    san = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "old" / "cert.pem"), "-noout", "-ext",
                          "subjectAltName"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert san.split()[-1] == f"URI:{uri}", san


def test_below_a_constrained_root_too_the_note_is_said_once(tmp_path):
    env = certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    root_env = {**env, "CERTKIT_CA_DIR": str(tmp_path / "root")}
    run_certkit("init-ca", "--name", "certkit constrained URI root", "--permit-dns", "example.internal", env=root_env,
                check=True)
    run_certkit("init-ca", "--ca-dir", tmp_path / "issuing", "--parent-ca-dir", tmp_path / "root", "--name",
                "certkit URI issuing", env=root_env | {"CERTKIT_PARENT_CA_PASSPHRASE": PASSPHRASE}, check=True)
    issuing = {**env, "CERTKIT_CA_DIR": str(tmp_path / "issuing")}
    uri = "https://svc.example.internal?x"
    with _older():
        run_certkit("issue-client", "Svc Old", "--uri", uri, "--out", tmp_path / "old", env=issuing, check=True)
    renewed = run_certkit("renew", tmp_path / "old", env=issuing, subprocess=True)
    assert renewed.returncode == 0, renewed.stderr
    assert renewed.stdout.count(f"it names the URI {uri}, which has the host") == 1, renewed.stdout


@pytest.mark.parametrize(("uri", "why"), [
    ("urn:example:svc", f"has no host, and verifiers check a URI against {CA_WORDS} by its host: Go and OpenSSL "
                        "refuse a URI without one; give a URI with a host inside them (as in spiffe://DOMAIN/...)."),
    ("https://10.0.0.1/x", f"has an IP address as its host, and verifiers check a URI's host against the domains of "
                           f"{CA_WORDS}, never its IP ranges (Go: 'URI with IP ... cannot be matched against "
                           "constraints'); give a URI whose host is a DNS name inside them."),
], ids=["no-host", "ip-host"])
def test_a_uri_no_constraint_can_match_is_refused_saying_why(tmp_path, issuing, uri, why):
    _folder, env = issuing
    assert_clean_error(run_certkit("issue-client", "Svc", "--uri", uri, "--out", tmp_path / "svc", env=env),
                       f"'{uri}' {why}")


# --- 2. an IPv4 address written in fullwidth digits ----------------------------------------------------------------
FULLWIDTH = {"１２７.0.0.1": "127.0.0.1", "127.0.0.１": "127.0.0.1", "１２７.1": "127.1"}


@pytest.mark.parametrize("host", FULLWIDTH)
def test_an_address_in_fullwidth_digits_is_refused_naming_the_address_browsers_read(tmp_path, host):
    from conftest import require

    # the URL standard (Node's URL, as browsers) maps the digits to ASCII and reads the host as an address
    read = subprocess.run([require("node"), "-e", "console.log(new URL('https://' + process.argv[1] + '/').hostname)",
                           host], capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert read == "127.0.0.1"
    env = new_ca(tmp_path, "certkit fullwidth CA")
    assert_clean_error(run_certkit("issue-peer", host, "--out", tmp_path / "peer", env=env),
                       f"'{host}' is not a valid IPv4 address: it is {FULLWIDTH[host]} written in other characters "
                       "than ASCII digits and dots; curl and browsers read it as 127.0.0.1, so a certificate names "
                       "that address ('127.0.0.1').")


# --- 3. a shared peer name too long for a common name, and etcd's two ways to ask for it ---------------------------
# peers.md had every member's peer certificate share one name, first, "so that it is the subject CN", for etcd's
# --peer-cert-allowed-cn. A name over 64 bytes cannot be a CN: the subject is empty, etcd refuses every member and the
# cluster never forms. issue-peer now says so, and the page gives --peer-cert-allowed-hostname, which checks the
# certificate's names (and lets in a wildcard that covers the name: Go's host name check), run here.
LONG_NAME = "etcd-peers.a-cluster-whose-shared-name-is-rather-long.example.internal"


@pytest.mark.parametrize("flag", ["--peer-cert-allowed-cn", "--peer-cert-allowed-hostname"])
def test_a_shared_peer_name_over_64_bytes_works_with_allowed_hostname_only(tmp_path, flag):
    from test_audit16_peers import _page_says, _peer_get, _wait_in_log, soon
    from test_peers_etcd import MEMBERS, Etcd

    root = tmp_path / "certs"
    root.mkdir()
    env = new_ca(root, "certkit etcd long name CA")
    for member in MEMBERS:
        issued = run_certkit("issue-peer", LONG_NAME, f"{member}.cluster.internal", "127.0.0.1", "--out",
                             root / f"{member}-peer", env=env, check=True)
        assert "subject (empty)" in " ".join(issued.stdout.split()), issued.stdout
        assert (f"note the subject is empty: the first name, {LONG_NAME}, is "
                "70 bytes, more than a common name holds (64), so a peer that admits members by their common name "
                "(etcd's --peer-cert-allowed-cn) finds none; etcd's --peer-cert-allowed-hostname checks a DNS name "
                "instead (docs/peers.md)") in " ".join(issued.stdout.split()), issued.stdout
        run_certkit("issue-server", "127.0.0.1", "--out", root / f"{member}-server", env=env, check=True)
    run_certkit("issue-client", "etcdctl", "--out", root / "etcdctl", env=env, check=True)
    run_certkit("issue-client", "alice", "--out", root / "alice", env=env, check=True)
    run_certkit("issue-peer", "*." + LONG_NAME.partition(".")[2], "127.0.0.1", "--out", root / "wildcard", env=env,
                check=True)
    etcd = Etcd(tmp_path / "run", root)
    etcd.root.mkdir()
    try:
        members = etcd.start(MEMBERS, peer_cert="peer", client_cert="server", extra=(flag, LONG_NAME))
        if flag == "--peer-cert-allowed-cn":  # each member refuses the others: no CN to compare
            _wait_in_log(etcd, members, '"error":"client certificate authentication failed"', "a member refused")
            assert not any('"msg":"established TCP streaming connection with remote peer"' in m.log for m in members)
        else:
            soon(etcd, lambda: etcd.ctl(members[0], "put", "greeting", "hello"), "the cluster to take a write")
            assert _peer_get(members[0].peer_port, root / "alice", "/members") == b""  # another name: refused
            answer = _peer_get(members[0].peer_port, root / "wildcard", "/members")  # a wildcard covering it: in
            assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    finally:
        etcd.stop()
    _page_says("`--peer-cert-allowed-cn` then refuses every member", "`--peer-cert-allowed-hostname` checks the "
               "certificate's DNS names and IP addresses", "lets in a certificate whose wildcard covers that name",
               f"certkit issue-peer {LONG_NAME} etcd-1.cluster.internal 127.0.0.1 --out etcd-1/peer",
               f"--peer-cert-allowed-hostname {LONG_NAME}")


# --- 4. an IPv4 address written in the deprecated IPv4-compatible IPv6 form ----------------------------------------
def test_an_ipv4_compatible_address_is_refused_as_openssl_never_matches_the_ipv4_address(tmp_path):
    import certkit.names_notation as notation

    env = new_ca(tmp_path, "certkit compatible CA")
    with pytest.MonkeyPatch.context() as older:  # as certkit issued it before: ::127.0.0.1, the IPv6 address ::7f00:1
        older.setattr(notation, "refuse_ipv4_compatible", lambda text, address: None, raising=False)
        run_certkit("issue-peer", "::127.0.0.1", "--out", tmp_path / "old", env=env, check=True)
    import certkit.names

    certkit.names._parse_host.cache_clear()  # its reading, in this process, was the older certkit's
    for address, matches in (("127.0.0.1", False), ("::7f00:1", True)):  # OpenSSL's check of the address it connects to
        checked = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "ca" / "ca.pem"), "-verify_ip",
                                  address, str(tmp_path / "old" / "cert.pem")], capture_output=True, text=True,
                                 timeout=60)
        assert (checked.returncode == 0) is matches, checked
    for given in ("::127.0.0.1", "0:0:0:0:0:0:10.1.1.1"):
        ipv4 = given.rpartition(":")[2]
        assert_clean_error(run_certkit("issue-peer", given, "--out", tmp_path / "new", env=env),
                           f"'{given}' is the IPv4 address {ipv4} written as IPv6 in the deprecated IPv4-compatible "
                           f"form (RFC 4291), the IPv6 address {'::7f00:1' if ipv4 == '127.0.0.1' else '::a01:101'}, "
                           f"which no host has: clients that connect to {ipv4} do not match it in a certificate; give "
                           f"the IPv4 address itself ({ipv4}).")
    # written as IPv6, the same address: refused too since round twenty-one (tests/test_audit21_peers.py)
    assert_clean_error(run_certkit("issue-peer", "::102:304", "--out", tmp_path / "hex", env=env),
                       "'::102:304' is in the deprecated IPv4-compatible range ::/96 (RFC 4291), which no host has")


# --- 5. a value given to the other --permit option, or several in one ------------------------------------------------
PERMIT_MIXUPS = {
    ("--permit-dns", "10.0.0.0/8"): "'10.0.0.0/8' is a range of IP addresses, not a domain: IP ranges are permitted "
                                    "apart from domains (init-ca --permit-ip 10.0.0.0/8, acme serve --allow-ip "
                                    "10.0.0.0/8, CA.create(permitted_ips=...)).",
    ("--permit-dns", "10.1.1.1"): "'10.1.1.1' is an IP address, not a domain: IP ranges are permitted apart from "
                                  "domains (init-ca --permit-ip 10.1.1.1/32, acme serve --allow-ip 10.1.1.1/32, "
                                  "CA.create(permitted_ips=...)).",
    ("--permit-ip", "example.internal"): "'example.internal' is a domain, not an IP range: domains are permitted apart "
                                         "from IP ranges (init-ca --permit-dns, acme serve --allow-domain, "
                                         "CA.create(permitted_dns=...)).",
    ("--permit-ip", "10.0.0.0/8,192.168.0.0/16"): "'10.0.0.0/8,192.168.0.0/16' holds 2 IP ranges ('10.0.0.0/8', "
                                                  "'192.168.0.0/16'); give each on its own (the option once for each, "
                                                  "or each as an item of a list).",
    ("--permit-dns", "a.example,b.example"): "'a.example,b.example' holds 2 domains ('a.example', 'b.example'); give "
                                             "each on its own (the option once for each, or each as an item of a "
                                             "list).",
    ("--permit-ip", "10.0.0.1/8"): "'10.0.0.1/8' is not an IP range in CIDR form (as in 10.0.0.0/8): 10.0.0.1/8 has "
                                   "host bits set (the range that holds it is 10.0.0.0/8).",
}


@pytest.mark.parametrize("option, value", PERMIT_MIXUPS, ids=[f"{o}={v}" for o, v in PERMIT_MIXUPS])
def test_init_ca_says_which_option_a_permitted_value_belongs_to(tmp_path, option, value):
    refused = run_certkit("init-ca", "--ca-dir", tmp_path / "ca", "--name", "certkit mixup CA", option, value,
                          env=certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE))
    assert_clean_error(refused, PERMIT_MIXUPS[(option, value)])
    assert not (tmp_path / "ca").exists()
