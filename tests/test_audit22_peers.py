"""Round twenty-two, peers: what a cluster's operators paste where certkit asks for a host.

1. A Redis cluster node as CLUSTER NODES (and nodes.conf) writes it, ``127.0.0.1:6379@16379`` (address, port and
   cluster bus port) and, in Redis 7 with ``cluster-announce-hostname``, ``127.0.0.1:6379@16379,redis-0.internal``,
   given to issue-peer, issue-server, verify --name or a manifest, was called "an email address, not a host name",
   with the advice to run ``certkit issue-client NAME --email 127.0.0.1:6379@16379`` (which fails in turn), or, with
   the host name, "holds 2 names", the first of them that same "email address"; issue-client --dns said "give it as
   an email (--email)". It is now named for what it is, with the address (and host name) to give.
2. A Redis URL with its password (``rediss://default:PASSWORD@10.0.0.21:6380/0``, what redis-cli -u and every Redis
   client library take), given where certkit takes a host (issue-peer, issue-server, issue-client --dns/--uri,
   verify --name, init-ca --permit-dns/--permit-ip, a manifest line, renew, revoke), was refused with the whole URL,
   password and all, in the Error: line (and in --json's error): into the terminal's scrollback, a CI log, a support
   ticket. probe already left it out. Every such message now writes the user information as '...'; init-ca
   --permit-dns and --permit-ip now say it is a URL and name its host (they called it a DNS name with a bad label,
   quoting the password in lower case).
3. ``init-ca --permit-ip ::10.0.0.0/104`` (10.0.0.0/8 in RFC 4291's deprecated IPv4-compatible form, ::a00:0/104) made
   a CA that "may sign IP addresses in ::a00:0/104": every address of that range is one certkit refuses to certify
   (round twenty), and OpenSSL refuses 10.0.0.5 below it ("permitted subtree violation": a constraint of 16 octets
   never matches an address of 4), so the CA could sign no address at all. The IPv4-mapped form was refused; this one
   is now refused the same way, naming the IPv4 range to permit (init-ca, CA.create, acme serve --allow-ip).
4. docs/peers.md had etcd members share one name, first in each peer certificate, and start with
   ``--peer-cert-allowed-cn`` "naming it". etcd 3.4 compares the CN exactly, case included, and certkit writes a DNS
   name in lower case: ``issue-peer Etcd-Peer.Cluster.Internal`` makes CN=etcd-peer.cluster.internal, and members
   started with the name as it was typed refuse each other ("client certificate authentication failed"), so the
   cluster never forms. The page now says to give the flag the CN as issue-peer's subject line shows it; run here
   with real etcd both ways.
5. A URL given for a host was refused naming "the host" as written: 'https://0x7f000001:2379' gave "the host is
   '0x7f000001'", which certkit refuses next (curl and browsers connect to 127.0.0.1, also for 127.1 and 2130706433),
   and 'https://[fe80::1%25eth0]:2380' gave 'fe80::1%25eth0', refused for its zone. The host given is now the one
   clients connect to and match ('127.0.0.1', 'fe80::1'), saying why; curl connects to https://0x7f000001:PORT/ and
   accepts a certificate issued for the host named.
"""

from __future__ import annotations

import subprocess
import time

import pytest
from test_audit16_peers import _page_says, _wait_in_log, soon
from test_peers_etcd import MEMBERS, Etcd

from conftest import assert_clean_error, free_port, new_ca, require, run_certkit, wait_listening, wait_or_kill


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    folder = tmp_path_factory.mktemp("peers22")
    return folder, new_ca(folder, "certkit round 22 peers CA")


# --- 1. a Redis cluster node as CLUSTER NODES writes it -----------------------------------------------------------
def _redis_node(folder, port: int, bus: int, hostname: str) -> subprocess.Popen:
    folder.mkdir()
    return subprocess.Popen([require("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                             "--cluster-port", str(bus), "--cluster-announce-hostname", hostname],
                            cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _cluster_nodes_field(port: int, other: int, bus: int) -> str:
    """The second field of the line for the node on ``other`` in CLUSTER NODES of the node on ``port``, as Redis writes
    it once the two have met and exchanged their host names."""
    listed = ""
    for _ in range(600):
        listed = subprocess.run([require("redis-cli"), "-p", str(port), "cluster", "nodes"], capture_output=True,
                                text=True, timeout=60).stdout
        found = [line.split()[1] for line in listed.splitlines() if f":{other}@" in line]
        if found and "," in found[0] and not found[0].startswith(":"):
            return found[0]
        subprocess.run([require("redis-cli"), "-p", str(port), "cluster", "meet", "127.0.0.1", str(other), str(bus)],
                       capture_output=True, timeout=60)
        time.sleep(0.1)  # the meeting shows in a later answer (a poll, not a wait for time)
    raise AssertionError(f"the node on {port} never listed the node on {other} with its host name: {listed}")


def test_a_redis_cluster_node_as_cluster_nodes_writes_it_is_named_with_the_hosts_to_give(tmp_path, ca):
    folder, env = ca
    ports, buses = (free_port(), free_port()), (free_port(), free_port())
    names = ("redis-0.redis.internal", "redis-1.redis.internal")
    nodes = [_redis_node(tmp_path / str(port), port, bus, name) for port, bus, name in zip(ports, buses, names,
                                                                                             strict=True)]
    try:
        for node, port in zip(nodes, ports, strict=True):
            wait_listening(port, node, "redis-server")
        written = _cluster_nodes_field(*ports, buses[1])
    finally:
        for node in nodes:
            node.terminate()
            wait_or_kill(node)
    assert written == f"127.0.0.1:{ports[1]}@{buses[1]},{names[1]}", written
    bare = written.partition(",")[0]
    with_name = (f"'{written}' is a Redis cluster node as CLUSTER NODES writes it (address:port@cluster-bus-port,"
                 f"hostname), not a host; a certificate names the hosts alone ('127.0.0.1' and '{names[1]}'), and is "
                 "valid on every port.")
    alone = (f"'{bare}' is a Redis cluster node as CLUSTER NODES writes it (address:port@cluster-bus-port), not a "
             "host; a certificate names the host alone ('127.0.0.1'), and is valid on every port.")
    for typed, said in ((written, with_name), (bare, alone)):
        for command in (["issue-peer", typed], ["issue-server", typed], ["issue-client", "redis-1", "--dns", typed],
                        ["verify", str(folder / "ca" / "ca.pem"), "--purpose", "server", "--name", typed]):
            ran = run_certkit(*command, "--out", str(tmp_path / "out"), env=env) if command[0] != "verify" \
                else run_certkit(*command, env=env)
            assert_clean_error(ran, said)
            assert "email" not in ran.stderr
        manifest = tmp_path / "fleet.jsonl"
        manifest.write_text(f'{{"kind": "peer", "names": ["{typed}"], "out": "n"}}\n')
        ran = run_certkit("issue-batch", str(manifest), "--out-dir", str(tmp_path / "batch"), env=env)
        assert ran.returncode != 0 and said in ran.stdout + ran.stderr, ran.stdout + ran.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "batch" / "n").exists()
    # an IPv6 node (written without brackets), and one that knows no address of its own yet
    assert_clean_error(run_certkit("issue-peer", "::1:6379@16379", "--out", str(tmp_path / "out"), env=env),
                       "a certificate names the host alone ('::1'), and is valid on every port.")
    assert_clean_error(run_certkit("issue-peer", ":6379@16379", "--out", str(tmp_path / "out"), env=env),
                       "a certificate names the node's host name or address, which this one does not say")
    # the hosts it names are what the two nodes' certificates need: issued, OpenSSL matches each
    run_certkit("issue-peer", "127.0.0.1", names[1], "--out", str(tmp_path / "ok"), env=env, check=True)
    for check in (["-verify_ip", "127.0.0.1"], ["-verify_hostname", names[1]]):
        assert subprocess.run(["openssl", "verify", "-CAfile", str(folder / "ca" / "ca.pem"), *check,
                               str(tmp_path / "ok" / "cert.pem")], capture_output=True).returncode == 0


# --- 2. a URL's password in an error ------------------------------------------------------------------------------
PASSWORD = "Tr0ub4dor-and-3"


def test_a_redis_urls_password_is_never_repeated_in_an_error(tmp_path, ca):
    folder, env = ca
    port = free_port()
    redis = subprocess.Popen([require("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--requirepass", PASSWORD],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, redis, "redis-server")
        url = f"redis://default:{PASSWORD}@127.0.0.1:{port}/0"
        # the URL is how Redis clients are given the password: redis-cli logs in with it
        assert subprocess.run([require("redis-cli"), "-u", url, "ping"], capture_output=True, text=True,
                              timeout=60).stdout.strip() == "PONG"
    finally:
        redis.terminate()
        wait_or_kill(redis)
    shown = f"'redis://***@127.0.0.1:{port}/0'"
    (tmp_path / "m.jsonl").write_text(f'{{"kind": "peer", "names": ["{url}"]}}\n')
    (tmp_path / "m.csv").write_text(f"kind,names\npeer,{url}\n")
    out = ["--out", str(tmp_path / "out")]
    runs = {
        "issue-peer": (["issue-peer", url, *out], "is a URL; a certificate names the host alone (the host is "
                                                   "'127.0.0.1')"),
        "issue-server": (["issue-server", url, *out], "is a URL"),
        "issue-client --dns": (["issue-client", "app", "--dns", url, *out], "is a URL"),
        "issue-client --uri": (["issue-client", "app", "--uri", url, *out], "leave out its 'user@' part"),
        "verify --name": (["verify", str(folder / "ca" / "ca.pem"), "--purpose", "server", "--name", url], "is a URL"),
        "init-ca --permit-dns": (["init-ca", "--ca-dir", str(tmp_path / "c1"), "--no-passphrase", "--permit-dns", url],
                                 "is a URL; a domain is given alone (the host is '127.0.0.1')"),
        "init-ca --permit-ip": (["init-ca", "--ca-dir", str(tmp_path / "c2"), "--no-passphrase", "--permit-ip", url],
                                "is a URL; an IP range is given alone (the host is '127.0.0.1')"),
        "issue-batch jsonl": (["issue-batch", str(tmp_path / "m.jsonl"), "--out-dir", str(tmp_path / "b1")],
                              "is a URL"),
        "issue-batch csv": (["issue-batch", str(tmp_path / "m.csv"), "--out-dir", str(tmp_path / "b2")], "is a URL"),
        "renew": (["renew", url], "No certificate of this CA matches"),
        "revoke": (["revoke", url], "No certificate of this CA matches"),
        "a list": (["issue-peer", f"{url},{url.replace('127.0.0.1', 'localhost')}", *out], "holds 2 names"),
        "NAME=VALUE": (["issue-peer", f"redis-0={url}", *out], "is a NAME=VALUE pair"),
        "a long URI": (["issue-client", "app", "--uri", url + "a" * 2048, *out], "is not a valid URI: it is"),
    }
    for what, (args, said) in runs.items():
        ran = run_certkit(*args, env=env)
        assert ran.returncode != 0, what
        assert PASSWORD.lower() not in (ran.stdout + ran.stderr).lower(), (what, ran.stdout, ran.stderr)
        assert said in ran.stderr and "***@" in ran.stderr, (what, ran.stderr)
    assert_clean_error(run_certkit("issue-peer", url, *out, env=env), f"{shown} is a URL")
    ran = run_certkit("issue-server", url, *out, "--json", env=env)
    assert PASSWORD not in ran.stdout + ran.stderr and shown in ran.stdout, ran.stdout
    assert not (tmp_path / "out").exists() and not (tmp_path / "c1").exists() and not (tmp_path / "c2").exists()


# --- 3. an IPv4 range in the IPv4-compatible form, to permit ----------------------------------------------------------
def _hand_made_chain(folder, permitted: str, leaf_ip: str):
    """A CA permitting the IP range ``permitted`` and a server certificate for ``leaf_ip`` under it, made with
    cryptography as another CA would make them (certkit now refuses to make that CA)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hand-made constrained CA")])

    def base(subject, key):
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=30)))

    ca = (base(ca_name, ca_key).add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .add_extension(x509.NameConstraints([x509.IPAddress(ipaddress.ip_network(permitted))], None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (base(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, leaf_ip)]), leaf_key)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(leaf_ip))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    return folder / "ca.pem", folder / "leaf.pem"


def _openssl_verify(ca, cert, *check: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "verify", "-CAfile", str(ca), *check, str(cert)], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("typed", ["::10.0.0.0/104", "::a00:0/104"])
def test_an_ipv4_range_in_the_ipv4_compatible_form_is_refused_as_a_permitted_range(tmp_path, ca, typed):
    import ipaddress

    from certkit import CA
    from certkit.errors import InvalidName

    said = (f"'{typed}' is IPv4 written as IPv6 in the deprecated IPv4-compatible form (RFC 4291), which no host has "
            "and no certificate names (an address of it is refused); permit the IPv4 range itself (10.0.0.0/8).")
    # what such a CA does: OpenSSL refuses 10.0.0.5 below it, and the IPv6 address ::a00:5 is not 10.0.0.5
    (tmp_path / "v4").mkdir()
    ran = _openssl_verify(*_hand_made_chain(tmp_path / "v4", typed, "10.0.0.5"))
    assert ran.returncode != 0 and "permitted subtree violation" in ran.stdout + ran.stderr, ran.stdout + ran.stderr
    (tmp_path / "v6").mkdir()
    ca_pem, leaf = _hand_made_chain(tmp_path / "v6", typed, "::a00:5")
    assert _openssl_verify(ca_pem, leaf).returncode == 0
    assert _openssl_verify(ca_pem, leaf, "-verify_ip", "10.0.0.5").returncode != 0
    # certkit refuses to make it, everywhere a range to permit is read
    assert_clean_error(run_certkit("init-ca", "--ca-dir", str(tmp_path / "c"), "--no-passphrase", "--permit-ip",
                                   typed, env=ca[1]), said)
    assert not (tmp_path / "c").exists()
    with pytest.raises(InvalidName) as refused:
        CA.create("lib", permitted_ips=[typed], directory=tmp_path / "lib")
    assert str(refused.value) == said
    with pytest.raises(InvalidName):
        CA.create("lib", permitted_ips=[ipaddress.ip_network(typed)], directory=tmp_path / "lib")
    # the range it names, permitted itself: the address is certified and OpenSSL accepts it
    env = new_ca(tmp_path / "v4ca", "permits 10.0.0.0/8")
    run_certkit("init-ca", "--ca-dir", str(tmp_path / "ok"), "--no-passphrase", "--permit-ip", "10.0.0.0/8", env=env,
                check=True)
    run_certkit("issue-peer", "10.0.0.5", "--ca-dir", str(tmp_path / "ok"), "--out", str(tmp_path / "p"), env=env,
                check=True)
    assert _openssl_verify(tmp_path / "ok" / "ca.pem", tmp_path / "p" / "cert.pem", "-verify_ip",
                           "10.0.0.5").returncode == 0


def test_loopback_and_ranges_that_hold_it_stay_permitted(tmp_path, ca):
    for typed in ("::1/128", "::/127", "::/96"):
        run_certkit("init-ca", "--ca-dir", str(tmp_path / typed.replace("/", "_")), "--no-passphrase", "--permit-ip",
                    typed, env=ca[1], check=True)
    assert_clean_error(run_certkit("init-ca", "--ca-dir", str(tmp_path / "c"), "--no-passphrase", "--permit-ip",
                                   "::2/128", env=ca[1]),
                       "'::2/128' is in the deprecated IPv4-compatible range ::/96 (RFC 4291), which no host has and "
                       "no certificate names (an address of it is refused); permit the range of the hosts' own "
                       "addresses.")


# --- 4. etcd's --peer-cert-allowed-cn compares the CN exactly -----------------------------------------------------
TYPED = "Etcd-Peer.Cluster.Internal"


def test_etcd_compares_the_allowed_cn_exactly_so_the_flag_takes_the_cn_as_issue_peer_shows_it(tmp_path):
    root = tmp_path / "certs"
    root.mkdir()
    env = new_ca(root, "certkit etcd cluster CA")
    for member in MEMBERS:
        issued = run_certkit("issue-peer", TYPED, f"{member}.cluster.internal", "127.0.0.1", "--out",
                             root / f"{member}-peer", env=env, check=True)
        assert f"subject   CN={TYPED.lower()}" in issued.stdout, issued.stdout
        run_certkit("issue-server", "127.0.0.1", "--out", root / f"{member}-server", env=env, check=True)
    run_certkit("issue-client", "etcdctl", "--out", root / "etcdctl", env=env, check=True)
    for allowed, forms in ((TYPED, False), (TYPED.lower(), True)):
        etcd = Etcd(tmp_path / ("forms" if forms else "typed"), root)
        etcd.root.mkdir()
        try:
            members = etcd.start(MEMBERS, peer_cert="peer", client_cert="server",
                                 extra=("--peer-cert-allowed-cn", allowed))
            if forms:
                soon(etcd, lambda m=members, e=etcd: e.ctl(m[0], "put", "greeting", "hello"),
                     "the cluster to take a write")
                health = soon(etcd, lambda m=members, e=etcd: e.ctl(m[0], "endpoint", "health", "--cluster"),
                              "three healthy members")
                assert (health.stdout + health.stderr).count("is healthy") == 3, health
                assert "client certificate authentication failed" not in "".join(m.log for m in members)
            else:
                _wait_in_log(etcd, members, '"error":"client certificate authentication failed"', "the refusal")
                put = etcd.ctl(members[0], "put", "greeting", "hello")
                assert put.returncode != 0, put
        finally:
            etcd.stop()
    _page_says("Give the flag the CN as `issue-peer`'s `subject` line shows it: etcd compares it exactly, case "
               "included", "`issue-peer Etcd-Peer.Cluster.Internal` makes `CN=etcd-peer.cluster.internal`")


# --- 5. the host of a URL, as clients read it -------------------------------------------------------------------------
URL_HOSTS = {  # the URL, the host to give, why
    "https://0x7f000001:2379": ("127.0.0.1", ", as curl and browsers read '0x7f000001'"),
    "https://127.1:2379/": ("127.0.0.1", ", as curl and browsers read '127.1'"),
    "https://2130706433/v3/kv": ("127.0.0.1", ", as curl and browsers read '2130706433'"),
    "https://[fe80::1%25eth0]:2380": ("fe80::1", ", without its zone (%25eth0), which only picks the interface"),
    "https://127.0.0.1:2379": ("127.0.0.1", ""),
}


@pytest.mark.parametrize("url", URL_HOSTS)
def test_a_url_is_refused_naming_the_host_clients_connect_to(tmp_path, ca, url):
    host, why = URL_HOSTS[url]
    assert_clean_error(run_certkit("issue-peer", url, "--out", str(tmp_path / "p"), env=ca[1]),
                       f"'{url}' is a URL; a certificate names the host alone (the host is '{host}'{why}). The scheme, "
                       "port and path are not part of it.")
    assert_clean_error(run_certkit("issue-peer", f"etcd-1={url}", "--out", str(tmp_path / "p"), env=ca[1]),
                       f"not a host; a certificate names the host alone (the host is '{host}'{why}).")
    run_certkit("issue-peer", host, "--out", str(tmp_path / "p"), env=ca[1], check=True)  # the host named is taken


def test_curl_connects_to_the_host_named_and_accepts_its_certificate(tmp_path, ca):
    folder, env = ca
    script = "for (const u of process.argv.slice(1)) console.log(new URL(u).hostname)"
    ipv4 = [url for url, (host, _why) in URL_HOSTS.items() if host == "127.0.0.1"]
    read = subprocess.run([require("node"), "-e", script, *ipv4], capture_output=True, text=True, timeout=60,
                          check=True).stdout.split()
    assert read == ["127.0.0.1"] * len(ipv4), read  # browsers (the WHATWG URL standard) read each as 127.0.0.1
    run_certkit("issue-server", "127.0.0.1", "--out", str(tmp_path / "s"), env=env, check=True)
    port = free_port()
    server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert",
                               str(tmp_path / "s" / "cert.pem"), "-key", str(tmp_path / "s" / "privkey.pem"), "-www"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, server, "openssl s_server")
        got = subprocess.run([require("curl"), "-sS", "-o", "/dev/null", "-w", "%{remote_ip}", "--cacert",
                              str(folder / "ca" / "ca.pem"), f"https://0x7f000001:{port}/"], capture_output=True,
                             text=True, timeout=60)
    finally:
        server.terminate()
        wait_or_kill(server)
    assert got.returncode == 0 and got.stdout == "127.0.0.1", (got.stdout, got.stderr)
    # and curl reads the zone off an IPv6 address in a URL: it connects to fe80::1 (no such host here)
    zone = subprocess.run([require("curl"), "-sv", "--max-time", "2", "https://[fe80::1%25lo]:1/"],
                          capture_output=True, text=True, timeout=60)
    assert "Trying [fe80::1]:1" in zone.stderr, zone.stderr
