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
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest

from conftest import PASSPHRASE, assert_clean_error, new_ca, run_certkit

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
