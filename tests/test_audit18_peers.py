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
3. docs/peers.md said a member's certificates name "its own host name and address", and that etcd checks the
   peer URL's host. etcd 3.4 also checks a connecting member's certificate against the address the connection
   comes from, which the routing picks (on one loopback, a member at 127.0.0.2 connects from 127.0.0.1). With
   certificates as the page said, members at 127.0.0.2 and .3 were refused by everyone; the cluster formed and
   was healthy, but once 127.0.0.1 stopped the two left had no leader. The page now says to name every address a
   member connects from; real etcd clusters show both sides.
4. With 1., ``certkit renew`` of a certificate an older certkit issued for 0x7f000001 failed with the new refusal
   (an unattended renewal would have let it expire). A renewal keeps such a name as certified, as it keeps an
   IPv4-mapped address, with a note saying what curl and browsers make of it.
5. ``issue-client svc --uri URI:spiffe://example.org/ns/a`` (the entry as openssl and certkit print it) certified
   the URI 'URI:spiffe://example.org/ns/a', of the scheme 'URI': no SPIFFE ID, which no peer matches;
   ``--email email:alice@example.com`` was refused for its local part. Both are now named as an entry with its type,
   with the value to give; a certificate certified so before is renewed as it is, with a note.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from test_audit17_house import words_ca  # noqa: F401  (a fixture: a CA, a CSR and a certificate to name)
from test_peers_etcd import MEMBERS, Etcd, Member, eventually

from conftest import (
    PASSPHRASE,
    REPO,
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
    for spelled, host in (("IP_Address:10.0.0.11", "10.0.0.11"), ("DNS_Name:etcd-1.cluster.internal",
                                                                    "etcd-1.cluster.internal")):
        assert_clean_error(run_certkit("issue-peer", spelled, "--out", tmp_path / "again", env=env, cwd=tmp_path),
                           f"'{spelled}' is a subjectAltName entry as certkit, openssl and keytool print one; a name "
                           f"is given without its type ('{host}')")
    assert not (tmp_path / "again").exists()


def test_an_ipv6_zone_in_a_urls_brackets_names_the_address_to_give(tmp_path: Path) -> None:
    env = _env(tmp_path)
    for spelled in ("[fe80::1%eth0]", "[fe80::1%25eth0]", "fe80::1%eth0"):
        ran = run_certkit("issue-peer", spelled, "--out", tmp_path / "node", env=env, cwd=tmp_path)
        zone = spelled.strip("[]").partition("%")[2]
        assert_clean_error(ran, f"'{spelled}' has an IPv6 zone (%{zone}): a zone only means something on one host "
                                "and cannot go in a certificate; use the address without it ('fe80::1').")
    run_certkit("issue-peer", "fe80::1", "--out", tmp_path / "node", env=env, cwd=tmp_path, check=True)


# --- 3. etcd checks the address a member connects from ------------------------------------------------------------
PAGE = REPO / "docs" / "peers.md"
HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


def _documented(marker: str) -> re.Pattern:
    """The line of docs/peers.md that holds ``marker``, as a pattern (``...``: any text)."""
    (line,) = [ln for ln in PAGE.read_text().splitlines() if marker in ln]
    return re.compile(".*".join(re.escape(part) for part in line.split("...")))


@pytest.fixture
def routed_certs(tmp_path: Path) -> Path:
    """For each member at its address of HOSTS: a peer certificate naming its host name and that address (``own``),
    and one naming also 127.0.0.1, the address it connects to the others from (``routed``); etcdctl's."""
    root = tmp_path / "certs"
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(root / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "certkit source address CA", env=env, cwd=tmp_path, check=True)
    for member, host in zip(MEMBERS, HOSTS, strict=True):
        own = (f"{member}.cluster.internal", host)
        run_certkit("issue-peer", *own, "--out", root / f"{member}-own", env=env, cwd=tmp_path, check=True)
        run_certkit("issue-peer", *own, "127.0.0.1", "--out", root / f"{member}-routed", env=env, cwd=tmp_path,
                    check=True)
    run_certkit("issue-client", "etcdctl", "--out", root / "etcdctl", env=env, cwd=tmp_path, check=True)
    return root


def _refused(member: Member, whose: str) -> bool:
    return any(f'"ip-addresses":["{whose}"]' in line and "does not match any of DNSNames" in line
               for line in member.log.splitlines())


def _said(ran: subprocess.CompletedProcess) -> str:
    return ran.stdout + ran.stderr


def _without_leader(etcd: Etcd, member) -> bool:
    """Whether ``member`` says it has no leader: the error its status carries, or no leader in it (etcdctl's JSON
    leaves out a leader of 0); what it said last goes into the failure message (_SAID)."""
    said = etcd.ctl(member, "endpoint", "status", "-w", "json", patient=True)
    _SAID[:] = [_said(said)]
    if "etcdserver: no leader" in _said(said):
        return True
    try:
        statuses = json.loads(said.stdout)
    except ValueError:
        return False
    return said.returncode == 0 and bool(statuses) and all(not s.get("Status", {}).get("leader") for s in statuses)


_SAID: list[str] = []


def _until(etcd: Etcd, check, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        etcd.check_running()
        assert time.monotonic() < deadline, f"timed out waiting for {what} ({_SAID}):\n" + "\n".join(
            f"--- {m.name}\n{m.log[-3000:]}" for m in etcd.members)
        time.sleep(0.2)


def test_etcd_refuses_a_member_whose_certificate_lacks_the_address_it_connects_from(tmp_path, routed_certs):
    """docs/peers.md's section: members at 127.0.0.1, .2 and .3; the routing has .2 and .3 connect from 127.0.0.1
    (ip route get). With certificates naming only each member's own address, the cluster forms and is healthy,
    but .2 and .3 refuse each other, so once .1 stops they have no leader; naming 127.0.0.1 too, they go on."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # the kernel's choice of source, sending nothing
        probe.connect(("127.0.0.3", 9))
        assert probe.getsockname()[0] == "127.0.0.1"
    if shutil.which("ip"):  # iproute2 is not among the packages CI installs; where it is, the page's command
        route = subprocess.run(["ip", "route", "get", "127.0.0.3"], capture_output=True, text=True, timeout=30,
                               check=True)
        assert _documented("local 127.0.0.3 dev lo src").match(route.stdout.strip()), route.stdout
    etcd = Etcd(tmp_path / "own", routed_certs)
    (tmp_path / "own").mkdir()
    try:
        members = etcd.start(MEMBERS, peer_cert="own", client_cert="own", hosts=HOSTS)
        eventually(etcd, lambda: etcd.ctl(members[0], "put", "greeting", "hello"), "a write on etcd-1", timeout=60)
        eventually(etcd, lambda: etcd.ctl(members[0], "endpoint", "health", "--cluster"), "a healthy cluster",
                   timeout=60)
        _until(etcd, lambda: _refused(members[0], "127.0.0.2") and _refused(members[2], "127.0.0.2")
               and _refused(members[1], "127.0.0.3"), "etcd-2 refused by etcd-1 and etcd-3, etcd-3 by etcd-2")
        pattern = _documented('"ip-addresses":["127.0.0.2"]')
        assert any(pattern.fullmatch(line) for line in members[0].log.splitlines()), members[0].log[-3000:]
        members[0].process.terminate()
        wait_or_kill(members[0].process)
        etcd.members.remove(members[0])
        _until(etcd, lambda: _without_leader(etcd, members[1]), "etcd-2 without a leader", timeout=120)
        assert etcd.ctl(members[1], "put", "after", "etcd-1").returncode != 0
    finally:
        etcd.stop()

    etcd = Etcd(tmp_path / "routed", routed_certs)
    (tmp_path / "routed").mkdir()
    try:
        members = etcd.start(MEMBERS, peer_cert="routed", client_cert="own", hosts=HOSTS)
        eventually(etcd, lambda: etcd.ctl(members[0], "endpoint", "health", "--cluster"), "a healthy cluster",
                   timeout=60)
        members[0].process.terminate()
        wait_or_kill(members[0].process)
        etcd.members.remove(members[0])
        eventually(etcd, lambda: etcd.ctl(members[1], "put", "after", "etcd-1"), "a write on etcd-2", timeout=60)
        read = eventually(etcd, lambda: etcd.ctl(members[2], "get", "after", "--consistency", "s"), "a read on etcd-3",
                          timeout=60)
        assert read.stdout.split() == ["after", "etcd-1"], read.stdout
        assert not any("does not match any of" in m.log for m in etcd.members), [m.log[-2000:] for m in etcd.members]
    finally:
        etcd.stop()


def test_the_page_says_etcd_checks_the_address_a_member_connects_from() -> None:
    text = " ".join(PAGE.read_text().split())
    for claim in ("### The address a member connects from", "the address the connection comes from",
                  "`ip route get ADDRESS` shows it (`src`)", "stopping the first leaves the other two without a leader",
                  "every address it connects from",
                  "certkit issue-peer etcd-2.cluster.internal 127.0.0.2 127.0.0.1 --out etcd-2/peer"):
        assert claim in text, claim


# --- 4. a certificate an older certkit issued for such a name is renewed as it is -----------------------------------
def test_a_certificate_certified_for_0x7f000001_before_is_renewed_with_its_names_and_a_note(
        tmp_path: Path, monkeypatch) -> None:
    """Finding 1 refuses 0x7f000001 as a name; a certificate an older certkit issued for it (Python's ssl and
    openssl match it, curl does not) is renewed keeping its names, as a renewal keeps an IPv4-mapped address,
    with a note saying what curl and browsers make of it, not refused (an unattended renewal would let it expire)."""
    import certkit.names as names
    import certkit.names_dns as names_dns

    env = _env(tmp_path)
    with monkeypatch.context() as older:  # the rule before round eighteen: only a decimal last label is a number
        for module in (names, names_dns):  # names' own and the one names_dns imported
            older.setattr(module, "_ends_in_a_number", lambda text: text.rstrip(".").rpartition(".")[2].isdigit())
        names._parse_host.cache_clear()
        run_certkit("issue-server", "0x7f000001", "--out", tmp_path / "hex", env=env, cwd=tmp_path, check=True)
    names._parse_host.cache_clear()
    renewed = run_certkit("renew", tmp_path / "hex", env=env, cwd=tmp_path, subprocess=True)
    assert renewed.returncode == 0, renewed.stderr
    assert ("note        it names the DNS name 0x7f000001, which curl and browsers read as the IPv4 address 127.0.0.1 "
            "and never match in a DNS entry; to change it, issue a new certificate naming 127.0.0.1") in renewed.stdout
    san = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "hex" / "cert.pem"), "-noout", "-ext",
                          "subjectAltName"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert san.split()[-1] == "DNS:0x7f000001", san
    listed = run_certkit("list", "--json", env=env, cwd=tmp_path, check=True).stdout
    rows = json.loads(listed)["certificates"]
    assert sorted(bool(row["renewed_by"]) for row in rows) == [False, True], listed  # the old one, its successor
    # a new certificate for it is still refused
    assert_clean_error(run_certkit("issue-server", "0x7f000001", "--out", tmp_path / "again", env=env, cwd=tmp_path),
                       READ_AS)


# --- 5. an email address or URI given with its type -------------------------------------------------------------------
def _san(cert: Path) -> str:
    return subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-ext", "subjectAltName"],
                          capture_output=True, text=True, timeout=60, check=True).stdout.split("\n", 1)[1].strip()


TYPED = {
    "--uri as openssl prints it": (["issue-client", "svc", "--uri", "URI:spiffe://example.org/ns/a"],
                                   "spiffe://example.org/ns/a"),
    "--email as openssl prints it": (["issue-client", "svc", "--email", "email:alice@example.com"],
                                     "alice@example.com"),
    "a client named by an entry": (["issue-client", "email:alice@example.com"], "alice@example.com"),
    "--email as RFC 5280 names it": (["issue-client", "svc", "--email", "RFC822Name: bob@example.com"],
                                     "bob@example.com"),
}


@pytest.mark.parametrize("case", sorted(TYPED))
def test_an_email_or_uri_given_with_its_type_is_named_as_an_entry(tmp_path: Path, case: str) -> None:
    """``--uri URI:spiffe://example.org/ns/a`` (how openssl and certkit print the entry) was certified as the URI
    'URI:spiffe://...' (openssl: URI:URI:spiffe://...), a URI of the scheme 'URI' and no SPIFFE ID; the email forms
    were refused for their local part. Each is now refused naming the value to give."""
    env = _env(tmp_path)
    args, value = TYPED[case]
    entry = next(arg for arg in args if value in arg)
    assert_clean_error(run_certkit(*args, "--out", tmp_path / "it", env=env, cwd=tmp_path),
                       f"'{entry}' is a subjectAltName entry as certkit, openssl and keytool print one; a name is "
                       f"given without its type ('{value}')")
    assert not (tmp_path / "it").exists()
    given = [value if arg == entry else arg for arg in args]
    run_certkit(*given, "--out", tmp_path / "it", env=env, cwd=tmp_path, check=True)  # the value itself is taken
    assert value in _san(tmp_path / "it" / "cert.pem")


def test_a_certificate_certified_with_a_typed_uri_before_is_renewed_with_it_and_a_note(tmp_path: Path,
                                                                                       monkeypatch) -> None:
    import certkit.names_uri as names_uri

    env = _env(tmp_path)
    with monkeypatch.context() as older:  # before round eighteen, a typed URI was taken as a URI
        older.setattr(names_uri, "refuse_a_typed_entry", lambda text, fits: None)
        run_certkit("issue-client", "svc", "--uri", "URI:spiffe://example.org/ns/a", "--out", tmp_path / "svc",
                    env=env, cwd=tmp_path, check=True)
    assert _san(tmp_path / "svc" / "cert.pem") == "URI:URI:spiffe://example.org/ns/a"
    renewed = run_certkit("renew", tmp_path / "svc", env=env, cwd=tmp_path, subprocess=True)
    assert renewed.returncode == 0, renewed.stderr
    assert ("note        it names the URI URI:spiffe://example.org/ns/a, a subjectAltName entry with its type, not "
            "the URI spiffe://example.org/ns/a peers look for; to change it, issue a new certificate naming "
            "spiffe://example.org/ns/a") in renewed.stdout, renewed.stdout
    assert _san(tmp_path / "svc" / "cert.pem") == "URI:URI:spiffe://example.org/ns/a"
