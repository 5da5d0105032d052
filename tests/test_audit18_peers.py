"""Round eighteen, peers: the names a cluster's certificates are given, and what real peers make of them.

1. ``certkit issue-peer 0x7f000001`` issued a certificate for the DNS name ``0x7f000001``: a host whose last label
   is a number in hexadecimal was taken as a name. curl, and every browser (the WHATWG URL standard, which Node's
   ``URL`` implements), read that host as the IPv4 address 127.0.0.1, connect there and match only an IP entry:
   the certificate is refused by them for the very host it was issued for. The other IPv4 notations curl and
   browsers read the same way (``127.1``, ``2130706433``) were refused with a reason beside the point ("it has
   1 parts"). Every such host is now refused as an address in another notation, naming the address curl and
   browsers connect to, in every command that reads a host (issue-*, verify --name, manifests, CSRs, --permit-dns,
   issue-client --dns), and the page says so. curl and Node show the reading the message states.
2. A subjectAltName entry pasted from Java's ``keytool -printcert`` (``DNSName: etcd-1.cluster.internal``,
   ``IPAddress: 127.0.0.1``) was "not a valid IPv6 address", or "holds 2 names"; an IPv6 zone inside a URL's
   brackets (``[fe80::1%eth0]``) was shown as the zone ``%eth0]`` with the advice to drop it, which left
   ``[fe80::1]``, refused again. Both are now named for what they are, with the host to give; keytool's real
   output is fed back here.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from test_audit17_house import words_ca  # noqa: F401  (a fixture: a CA, a CSR and a certificate to name)

from conftest import (
    PASSPHRASE,
    assert_clean_error,
    certkit_env,
    free_port,
    require,
    run_certkit,
    wait_listening,
    wait_or_kill,
)

# Hosts curl and browsers read as the address 127.0.0.1: hexadecimal, two parts, one number, octal, mixed.
NUMERIC = ("0x7f000001", "127.1", "2130706433", "0177.0.0.1", "0x7F.1")
READ_AS = "curl and browsers read it as 127.0.0.1, so a certificate names that address ('127.0.0.1')"


def _env(tmp_path: Path) -> dict[str, str]:
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "certkit notation CA", env=env, cwd=tmp_path, check=True)
    return env


# --- 1. a host curl and browsers read as an IPv4 address -----------------------------------------------------------
def test_curl_and_the_url_standard_connect_to_127_0_0_1_for_each_of_these_hosts(tmp_path: Path) -> None:
    """What the refusal says, shown with the peers it names: Node's URL (the WHATWG URL standard browsers follow)
    reads each host as 127.0.0.1, and curl connects to 127.0.0.1 for it and takes a certificate that names
    127.0.0.1 alone (so a DNS entry '0x7f000001' is never what it matches)."""
    node, curl = require("node"), require("curl")
    read = subprocess.run([node, "-e", "for (const h of process.argv.slice(1)) console.log(new URL(`https://${h}/`)"
                           ".hostname)", *NUMERIC], capture_output=True, text=True, timeout=60, check=True)
    assert read.stdout.split() == ["127.0.0.1"] * len(NUMERIC), read.stdout
    env = _env(tmp_path)
    run_certkit("issue-server", "127.0.0.1", "--out", tmp_path / "ip", env=env, cwd=tmp_path, check=True)
    port = free_port()
    server = subprocess.Popen([require("openssl"), "s_server", "-accept", f"127.0.0.1:{port}", "-www", "-quiet",
                               "-cert", tmp_path / "ip" / "fullchain.pem", "-key", tmp_path / "ip" / "privkey.pem"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_listening(port, server, "openssl s_server")
        for host in NUMERIC:
            got = subprocess.run([curl, "-sS", "--cacert", str(tmp_path / "ip" / "ca.pem"), "-o", "/dev/null",
                                  "-w", "%{http_code} %{remote_ip}", f"https://{host}:{port}/"],
                                 capture_output=True, text=True, timeout=60)
            assert (got.returncode, got.stdout) == (0, "200 127.0.0.1"), (host, got.stdout, got.stderr)
    finally:
        server.terminate()
        wait_or_kill(server)


@pytest.mark.parametrize("host", NUMERIC)
def test_issue_peer_refuses_a_host_curl_reads_as_an_address_and_names_the_address(tmp_path: Path, host: str) -> None:
    env = _env(tmp_path)
    ran = run_certkit("issue-peer", host, "--out", tmp_path / "node", env=env, cwd=tmp_path)
    assert_clean_error(ran, f"'{host}' is not a valid IPv4 address: ")
    assert READ_AS in ran.stderr, ran.stderr
    assert not (tmp_path / "node").exists()


NUMERIC_EVERYWHERE = {
    "issue-server": (["issue-server", "web.example", "0x7f000001"], READ_AS),
    "verify --name": (["verify", "{cert}", "--purpose", "server", "--name", "0x7f000001"], f"--name: '0x7f000001' "
                      f"is not a valid IPv4 address: '0x7f000001' is hexadecimal, and an address is written in "
                      f"decimal; {READ_AS}"),
    "sign-csr NAMES": (["sign-csr", "{csr}", "--server", "0x7f000001"], READ_AS),
    "issue-client --dns": (["issue-client", "bob", "--dns", "0x7f000001"], "'0x7f000001' is not a valid DNS name: "
                           "its last label is a number, so curl and browsers read it as the IPv4 address 127.0.0.1"),
    "init-ca --permit-dns": (["init-ca", "--ca-dir", "sub", "--permit-dns", "db.0x10"],
                             "'db.0x10' is not a valid DNS name: its last label is a number"),
    "probe": (["probe", "https://0x7f000001:1/"], READ_AS),
    "a final dot": (["issue-peer", "127.0.0.1."], "'127.0.0.1.' is not a valid IPv4 address: an address has no "
                    "final dot."),
    "one part": (["issue-peer", "2130706433"], "it has 1 part, an IPv4 address has 4; " + READ_AS),
}


@pytest.mark.parametrize("case", sorted(NUMERIC_EVERYWHERE))
def test_every_command_that_reads_a_host_refuses_one_that_curl_reads_as_an_address(
        tmp_path: Path, words_ca, case: str) -> None:  # noqa: F811
    env, files = words_ca
    args, fragment = NUMERIC_EVERYWHERE[case]
    work = tmp_path / "work"
    work.mkdir()
    assert_clean_error(run_certkit(*[arg.format(**files) for arg in args], env=env, cwd=work), fragment)
    assert not any(work.iterdir()), list(work.iterdir())


def test_a_manifest_line_and_the_library_refuse_it_too(tmp_path: Path, words_ca) -> None:  # noqa: F811
    from certkit import CA
    from certkit.errors import InvalidName

    env, _files = words_ca
    (tmp_path / "m.csv").write_text("kind,names,out\npeer,0x7f000001,b1\n")
    ran = run_certkit("issue-batch", tmp_path / "m.csv", "--out-dir", tmp_path / "out", env=env, cwd=tmp_path)
    assert_clean_error(ran, "line 2: '0x7f000001' is not a valid IPv4 address")
    assert READ_AS in ran.stderr, ran.stderr
    with pytest.raises(InvalidName, match=r"read it as 127\.0\.0\.1"):
        CA.create("Library CA").issue_peer(["node-1.cluster.internal", "0x7f000001"])
    # a DNS name that merely starts like a number stays a name
    assert CA.create("Library CA").issue_peer(["0xg.cluster.internal", "7f000001"]).cert is not None


# --- 2. a subjectAltName entry as keytool prints it; a zone in a URL's brackets -----------------------------------
def test_keytools_subjectaltname_lines_are_named_as_such(tmp_path: Path) -> None:
    keytool = require("keytool")
    env = _env(tmp_path)
    run_certkit("issue-peer", "etcd-1.cluster.internal", "127.0.0.1", "::1", "--out", tmp_path / "e1", env=env,
                cwd=tmp_path, check=True)
    printed = subprocess.run([keytool, "-printcert", "-file", str(tmp_path / "e1" / "cert.pem")],
                             capture_output=True, text=True, timeout=120, check=True).stdout
    lines = [line.strip() for line in printed.splitlines() if line.strip().startswith(("DNSName:", "IPAddress:"))]
    assert lines == ["DNSName: etcd-1.cluster.internal", "IPAddress: 127.0.0.1", "IPAddress: 0:0:0:0:0:0:0:1"], printed
    for line in lines:
        host = line.partition(": ")[2]
        assert_clean_error(run_certkit("issue-peer", line, "--out", tmp_path / "again", env=env, cwd=tmp_path),
                           f"'{line}' is a subjectAltName entry as certkit, openssl and keytool print one; a name is "
                           f"given without its type ('{host}')")
        assert_clean_error(run_certkit("issue-peer", line.replace(" ", ""), "--out", tmp_path / "again", env=env,
                                       cwd=tmp_path), f"without its type ('{host}')")
    assert not (tmp_path / "again").exists()


def test_an_ipv6_zone_in_a_urls_brackets_names_the_address_to_give(tmp_path: Path) -> None:
    env = _env(tmp_path)
    for spelled in ("[fe80::1%eth0]", "[fe80::1%25eth0]", "fe80::1%eth0"):
        ran = run_certkit("issue-peer", spelled, "--out", tmp_path / "node", env=env, cwd=tmp_path)
        zone = spelled.strip("[]").partition("%")[2]
        assert_clean_error(ran, f"'{spelled}' has an IPv6 zone (%{zone}): a zone only means something on one host "
                                "and cannot go in a certificate; use the address without it ('fe80::1').")
    run_certkit("issue-peer", "fe80::1", "--out", tmp_path / "node", env=env, cwd=tmp_path, check=True)
