"""Round sixteen, peers: cluster members (docs/peers.md) after a revocation, run with real etcd 3.4 and Redis 7.

1. docs/peers.md said nothing of revoking a member's certificate, and revoke.md promises that "servers that
   check the CRL refuse it". A user who revokes a stolen etcd peer certificate and gives every member the CRL
   (``--peer-crl-file``) believes the member is shut out: it is not. etcd checks the CRL only for the
   connections a member accepts; the others still connect to the revoked member, raft runs over those
   connections, and the member stays in the cluster, gets every write and can lead it. Redis 7 has no CRL
   setting at all: a revoked node goes on replicating. The page now says so, and what does shut a member
   out (``etcdctl member remove``); the tests below show each sentence with the real servers.
2. ``certkit verify CERT --purpose server`` of a revoked certificate (a peer certificate's, or any server's) said
   "servers refuse it once they load the next CRL": a certificate a server presents is refused by its clients.
   verify now names the side a CRL tells to refuse it for the purpose asked (probe's own rewording of the same
   sentence is gone: it asks the inventory for a server's words); Python's ssl shows both sides refusing a
   revoked peer certificate with the CRL.
3. docs/peers.md told each member's certificates to "name its own host name and address" without saying that
   Redis looks at no name: a replica took a primary certificate naming another host, and any client certificate
   of the CA (alice's, issued for a web server) logged in with full rights. The page now says that the CA alone
   decides for Redis (a CA of its own for the nodes), and that etcd, unlike Redis, checks the peer URL's host.
4. probe --ca-dir --bundle of a revoked peer certificate at etcd's peer listener (which takes it in the handshake,
   then closes the connection) said "not known ... (probe a URL that answers HTTP)" without the revocation the
   inventory records; it now names it, and why such a server closes the connection.
5. crl.md tells nginx users to put the root's and the intermediate's CRLs in one file; etcd reads the first CRL of
   its file only, so with that file (root's first) it let in a peer the intermediate had revoked. peers.md and
   crl.md now say that etcd needs the issuing CA's CRL alone.
6. ``certkit renew 0:0:0:0:0:0:0:1`` and ``list --name 0:0:0:0:0:0:0:1`` found no peer issued for ::1 (stored
   compressed), while a host name is found in any case or with its final dot; an address is now looked for as
   issuing writes it.
7. Like Redis, etcd lets in any client certificate of the CA (alice's, issued for a web server, got the member
   list on the peer listener and wrote through the client API); peers.md did not say so. It now does, with etcd's
   limit for the peer listener (a name all peer certificates share, first, and --peer-cert-allowed-cn), run here.
8. ``issue-peer '[::1]'`` (an IPv6 address as etcd's peer URLs write it) said "is not a valid IPv6 address"; it
   now names the address in the brackets, in every command that reads a host name.
9. ``certkit revoke`` ended with "Publish a new CRL so servers refuse it" for a server certificate too (its clients
   refuse it) and a peer's (both sides); the hint now names the side by kind.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from test_peers_etcd import MEMBERS, Etcd, eventually
from test_peers_redis import Redis, replication, wait_for

from conftest import (
    PASSPHRASE,
    REPO,
    assert_clean_error,
    free_port,
    new_ca,
    require,
    run_certkit,
    wait_listening,
    wait_or_kill,
)

PAGE = REPO / "docs" / "peers.md"


def soon(etcd: Etcd, attempt, what: str):
    """test_peers_etcd's ``eventually``, with a minute's deadline: a loaded machine moves a leader slowly."""
    return eventually(etcd, attempt, what, timeout=60.0)


def _serial(folder: Path) -> str:
    """The serial as etcd logs it: its bytes (big-endian, as few as hold it) in lower-case hex."""
    serial = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes()).serial_number
    return serial.to_bytes((serial.bit_length() + 7) // 8, "big").hex()


def _documented_refusal(serial: str) -> re.Pattern:
    """The etcd log line docs/peers.md shows for a revoked peer (``...``: any text), with ``serial`` for its own."""
    (line,) = [ln for ln in PAGE.read_text().splitlines() if "transport: certificate serial" in ln]
    line = re.sub(r"serial [0-9a-f]+ revoked", f"serial {serial} revoked", line)
    return re.compile(".*".join(re.escape(part) for part in line.split("...")))


def _page_says(*claims: str) -> None:
    """Each of ``claims`` is in docs/peers.md (its text with runs of blanks as one space)."""
    text = " ".join(PAGE.read_text().split())
    for claim in claims:
        assert claim in text, claim


# --- 1. etcd 3.4: a revoked member stays in the cluster until it is removed -------------------------------------
@pytest.fixture
def etcd_certs(tmp_path) -> tuple[Path, dict[str, str]]:
    """As test_peers_etcd's certificates, plus ``ops`` (a second etcdctl certificate, never revoked) and the CA's
    first CRL, empty, at crl.pem: the file --peer-crl-file and --client-crl-file name from the start."""
    root = tmp_path / "certs"
    root.mkdir()
    env = new_ca(root, "certkit etcd revocation CA")
    for member in MEMBERS:
        names = (f"{member}.cluster.internal", "127.0.0.1")
        run_certkit("issue-peer", *names, "--out", root / f"{member}-peer", env=env, check=True)
        run_certkit("issue-server", *names, "--out", root / f"{member}-server", env=env, check=True)
    for client in ("etcdctl", "ops"):
        run_certkit("issue-client", client, "--out", root / client, env=env, check=True)
    run_certkit("crl", "--out", root / "crl.pem", env=env, check=True)
    return root, env


@pytest.fixture
def crl_etcd(tmp_path, etcd_certs):
    cluster = Etcd(tmp_path / "run", etcd_certs[0])
    cluster.root.mkdir()
    try:
        yield cluster
    finally:
        cluster.stop()


def _connect_as(bundle: Path, port: int, ca: Path) -> None:
    """A TLS connection to 127.0.0.1:``port`` presenting ``bundle``'s certificate; closed once etcd judged it."""
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(bundle / "fullchain.pem", bundle / "privkey.pem")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            try:
                tls.recv(1)  # etcd closes the connection after the handshake, once the CRL refused it
            except (ssl.SSLError, OSError):
                pass


def _member_ids(etcd: Etcd, member, client: str = "ops") -> dict[str, str]:
    listed = soon(etcd, lambda: etcd.ctl(member, "member", "list", client=client), "the member list")
    return {line.split(", ")[2]: line.split(", ")[0] for line in listed.stdout.splitlines()}


def _wait_in_log(etcd: Etcd, members, text: str, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in m.log for m in members):
        etcd.check_running()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n" + "\n".join(m.log[-2000:] for m in members))
        time.sleep(0.1)


def test_etcd_refuses_a_revoked_peer_only_where_it_accepts_so_the_member_stays(crl_etcd, etcd_certs):
    """Every member checks the CRL (read anew for each connection, so the new one applies with no restart): the
    revoked member's own connections and the revoked etcdctl are refused, the log names the serial; yet the
    member stays healthy, takes the leadership and gets a write; ``member remove`` is what ends it."""
    root, env = etcd_certs
    crl = str(root / "crl.pem")
    members = crl_etcd.start(MEMBERS, peer_cert="peer", client_cert="server",
                             extra=("--peer-crl-file", crl, "--client-crl-file", crl))
    first, _, revoked = members
    soon(crl_etcd, lambda: crl_etcd.ctl(first, "put", "greeting", "before"), "a write before the revocation")
    ids = _member_ids(crl_etcd, first)

    run_certkit("revoke", root / "etcd-3-peer", "--reason", "keyCompromise", env=env, check=True)
    run_certkit("revoke", root / "etcdctl", env=env, check=True)
    run_certkit("crl", "--out", crl, env=env, check=True)  # the file the members were started with

    # etcdctl's revoked certificate: refused at its next connection, with no restart.
    refused = crl_etcd.ctl(first, "get", "greeting")
    assert refused.returncode != 0, refused
    _wait_in_log(crl_etcd, members, f"certificate serial {_serial(root / 'etcdctl')} revoked", "etcdctl's refusal")
    # A new connection with the revoked peer certificate (as etcd-3 makes, or whoever stole its key): refused
    # by serial. etcd-3's own connections made before the CRL stay open, so the test makes this one itself.
    _connect_as(root / "etcd-3-peer", first.peer_port, root / "ca" / "ca.pem")
    serial = _serial(root / "etcd-3-peer")
    _wait_in_log(crl_etcd, [first], f"certificate serial {serial} revoked", "a refusal of etcd-3's peer certificate")
    documented = _documented_refusal(serial)
    assert any(documented.fullmatch(line) for line in first.log.splitlines()), first.log[-3000:]

    # Yet etcd-3 stays a member: healthy, and it can even lead the cluster.
    health = soon(crl_etcd, lambda: crl_etcd.ctl(first, "endpoint", "health", "--cluster", client="ops"),
                        "three healthy members")
    assert (health.stdout + health.stderr).count("is healthy") == 3, health
    soon(crl_etcd, lambda: crl_etcd.ctl(first, "move-leader", ids["etcd-3"], "--endpoints",
                                              ",".join(m.client_url for m in members), client="ops"),
               "etcd-3 to take the leadership")
    status = crl_etcd.ctl(revoked, "endpoint", "status", "-w", "json", client="ops")
    assert f'"leader":{int(ids["etcd-3"], 16)}' in status.stdout.replace(" ", ""), status
    soon(crl_etcd, lambda: crl_etcd.ctl(first, "put", "greeting", "after", client="ops"),
               "a write led by the revoked member")
    local = crl_etcd.ctl(revoked, "get", "greeting", "--consistency=s", "--print-value-only", client="ops")
    assert local.stdout.strip() == "after", local

    # What ends it: removing the member (from another one, as the revoked member leads: it hands the
    # leadership over and stops).
    soon(crl_etcd, lambda: crl_etcd.ctl(first, "member", "remove", ids["etcd-3"], client="ops"),
               "the removal of etcd-3")
    revoked.process.wait(60)
    assert "etcd-3" not in _member_ids(crl_etcd, first)
    soon(crl_etcd, lambda: crl_etcd.ctl(first, "put", "greeting", "without etcd-3", client="ops"),
               "a write by the two members left")


def test_etcd_refuses_every_connection_while_its_crl_file_cannot_be_read(crl_etcd, etcd_certs):
    root, _ = etcd_certs
    missing = str(root / "not-yet-written.pem")
    members = crl_etcd.start(MEMBERS, peer_cert="peer", client_cert="server", extra=("--peer-crl-file", missing))
    _wait_in_log(crl_etcd, members, f"open {missing}: no such file or directory", "the refusal")
    put = crl_etcd.ctl(members[0], "put", "greeting", "never stored")
    assert put.returncode != 0 and "deadline exceeded" in put.stderr, put
    for m in members:
        assert "elected leader" not in m.log, m.log


# --- 1. Redis 7: no CRL setting; a revoked node goes on replicating ----------------------------------------------
@pytest.fixture
def revoked_redis_certs(tmp_path) -> Path:
    """test_peers_redis's certificates, the replica's two revoked (keyCompromise) and a CRL that lists them."""
    root = tmp_path / "certs"
    root.mkdir()
    env = new_ca(root, "certkit redis revocation CA")
    for node in ("primary", "replica"):
        run_certkit("issue-server", "localhost", "127.0.0.1", "--out", root / f"{node}-server", env=env, check=True)
        run_certkit("issue-client", f"redis-{node}", "--out", root / f"{node}-client", env=env, check=True)
    run_certkit("issue-client", "app", "--out", root / "app", env=env, check=True)
    for folder in ("replica-server", "replica-client"):
        run_certkit("revoke", root / folder, "--reason", "keyCompromise", env=env, check=True)
    run_certkit("crl", "--out", root / "crl.pem", env=env, check=True)
    return root


def test_redis_has_no_crl_setting_and_a_revoked_replica_replicates(tmp_path, revoked_redis_certs):
    binary = require("redis-server")
    refused = subprocess.run([binary, "--port", "0", "--tls-crl-file", str(revoked_redis_certs / "crl.pem")],
                             capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert refused.returncode != 0 and "Bad directive" in refused.stdout + refused.stderr, refused
    redis = Redis(tmp_path / "run", revoked_redis_certs)
    redis.root.mkdir()
    try:
        primary = redis.start("primary", server_cert="primary-server", client_cert="primary-client")
        settings = redis.command(primary, "config", "get", "tls-*").stdout.splitlines()[0::2]  # names, values
        assert "tls-cert-file" in settings and not [s for s in settings if "crl" in s], settings
        replica = redis.start("replica", server_cert="replica-server", client_cert="replica-client", primary=primary)
        wait_for(lambda: "MASTER <-> REPLICA sync: Finished with success" in replica.log, "the first sync", replica)
        assert replication(redis, replica)["master_link_status"] == "up"
        assert redis.command(primary, "set", "greeting", "from the primary").stdout.strip() == "OK"
        wait_for(lambda: redis.command(replica, "get", "greeting").stdout.strip() == "from the primary",
                 "the key on the revoked replica", replica)
        # What does shut it out: a CA the primary trusts instead (the replica's link dropped, it reconnects).
        new_ca(tmp_path / "new", "certkit the cluster's new CA")
        cli = [redis.cli, "--tls", "--cacert", str(revoked_redis_certs / "ca" / "ca.pem"), "--cert",
               str(revoked_redis_certs / "app" / "cert.pem"), "--key", str(revoked_redis_certs / "app" / "privkey.pem"),
               "-h", "127.0.0.1", "-p", str(primary.port)]
        moved = subprocess.run(cli, input=f"config set tls-ca-cert-file {tmp_path / 'new' / 'ca' / 'ca.pem'}\n"
                               "client kill type replica\n", capture_output=True, text=True, timeout=30)
        assert moved.stdout.split() == ["OK", "1"], moved
        wait_for(lambda: "certificate verify failed" in primary.log, "the primary to refuse the replica", primary)
        assert replication(redis, replica)["master_link_status"] == "down"
    finally:
        redis.stop()


def test_the_page_says_what_each_system_does_with_a_revocation() -> None:
    _page_says("Redis 7 checks no revocation", "`--peer-crl-file`", "`--client-crl-file`",
               "for every connection it accepts", "stays in the cluster", "`etcdctl member remove",
               "etcd refuses every connection")
    security = " ".join((REPO / "docs" / "security.md").read_text().split())
    assert "an etcd 3.4 member whose peer certificate is revoked stays in its cluster" in security


# --- 2. verify named servers as those that refuse a revoked certificate a server presents ----------------------
# `certkit verify CERT --purpose server` of a revoked certificate said "servers refuse it once they load the next
# CRL": a server's certificate is refused by its clients (probe said so, through a rewording of its own). The
# inventory's words now name the side a CRL tells to refuse the certificate as it is judged: for a peer
# certificate, clients as a server's, servers as a client's. Both sides are shown refusing it with a CRL below.
CLIENTS_REFUSE = "clients refuse it once they load the next CRL (certkit crl)"
SERVERS_REFUSE = "servers refuse it once they load the next CRL"


@pytest.fixture
def revoked_peer(tmp_path) -> tuple[Path, dict[str, str]]:
    """A root CA and an intermediate under it (the layout of two-tier-pki.md); a peer certificate of each,
    revoked by its CA; a CRL of each CA."""
    env = new_ca(tmp_path, "Cluster Root") | {"CERTKIT_PARENT_CA_PASSPHRASE": PASSPHRASE}
    run_certkit("init-ca", "--ca-dir", tmp_path / "issuing", "--parent-ca-dir", tmp_path / "ca",
                "--name", "Cluster Issuing", env=env, check=True)
    for ca in ("ca", "issuing"):
        run_certkit("issue-peer", "node-1.cluster.internal", "127.0.0.1", "--ca-dir", tmp_path / ca,
                    "--out", tmp_path / f"{ca}-peer", env=env, check=True)
        run_certkit("revoke", tmp_path / f"{ca}-peer", "--ca-dir", tmp_path / ca, "--reason", "keyCompromise",
                    env=env, check=True)
        run_certkit("crl", "--ca-dir", tmp_path / ca, "--out", tmp_path / f"{ca}.crl", env=env, check=True)
    return tmp_path, env


@pytest.mark.parametrize("ca", ["ca", "issuing"])
@pytest.mark.parametrize("purpose, refusers", [("server", CLIENTS_REFUSE), ("client", SERVERS_REFUSE)])
def test_verify_names_who_refuses_a_revoked_certificate_for_its_purpose(revoked_peer, ca, purpose, refusers):
    """Through the root's CA directory, also for a leaf the intermediate revoked (read in its inventory)."""
    root, env = revoked_peer
    proc = run_certkit("verify", root / f"{ca}-peer", "--purpose", purpose, "--ca-dir", root / "ca", env=env)
    assert proc.returncode == 1, proc
    (reason,) = [ln for ln in proc.stdout.splitlines() if ln.startswith("  reason ")]
    assert "revoked on" in reason and reason.endswith(f"; {refusers}"), reason
    assert proc.stderr.rstrip().endswith(f"; {refusers}."), proc.stderr
    data = json.loads(run_certkit("verify", root / f"{ca}-peer", "--purpose", purpose, "--ca-dir", root / "ca",
                                  "--json", env=env).stdout)
    assert data["peer"] is True and data["valid"] is False
    assert [r for r in data["reasons"] if "revoked on" in r][0].endswith(f"; {refusers}"), data


def _python_tls(server_files: Path, client_files: Path, ca: Path, crl: Path, *, crl_at: str) -> str | None:
    """A loopback handshake (and one byte) between Python ssl endpoints presenting each folder's peer certificate,
    the side ``crl_at`` ("client" or "server") checking ``crl`` for the leaf: None when it went through, else the
    checking side's error."""
    contexts = {}
    for side, files in (("server", server_files), ("client", client_files)):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if side == "server" else ssl.PROTOCOL_TLS_CLIENT)
        context.load_cert_chain(files / "fullchain.pem", files / "privkey.pem")
        context.load_verify_locations(cafile=str(ca))
        context.verify_mode = ssl.CERT_REQUIRED
        if side == crl_at:
            context.load_verify_locations(cafile=str(crl))
            context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        contexts[side] = context
    errors: dict[str, str] = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with contexts["server"].wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"x")
                    tls.recv(1)
            except (ssl.SSLError, OSError) as exc:
                errors["server"] = str(exc)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as raw, \
                    contexts["client"].wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.recv(1)
                tls.sendall(b"y")
        except (ssl.SSLError, OSError) as exc:
            errors["client"] = str(exc)
        thread.join(30)
    return errors.get(crl_at)


@pytest.mark.parametrize("crl_at", ["client", "server"])
def test_a_peer_that_checks_the_crl_refuses_the_revoked_peer_certificate_on_either_side(revoked_peer, tmp_path,
                                                                                         crl_at):
    """What verify's two sentences say, done by OpenSSL (Python's ssl): as a server's certificate, a client with
    the CRL refuses it; as a client's, a server with the CRL refuses it. Without the CRL both take it."""
    root, env = revoked_peer
    run_certkit("issue-peer", "node-2.cluster.internal", "127.0.0.1", "--out", tmp_path / "good", env=env,
                check=True)
    revoked, good, ca, crl = root / "ca-peer", tmp_path / "good", root / "ca" / "ca.pem", root / "ca.crl"
    server, client = (revoked, good) if crl_at == "client" else (good, revoked)
    assert "certificate revoked" in (_python_tls(server, client, ca, crl, crl_at=crl_at) or "accepted")
    assert _python_tls(server, client, ca, crl, crl_at="neither") is None


def test_probe_names_clients_for_a_revoked_server_certificate(revoked_peer) -> None:
    """probe's words (its own rewording, now the inventory's) with a real server: openssl s_server."""
    root, env = revoked_peer
    port = free_port()
    server = subprocess.Popen([require("openssl"), "s_server", "-www", "-accept", str(port), "-cert",
                               root / "ca-peer" / "cert.pem", "-key", root / "ca-peer" / "privkey.pem"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, server, "openssl s_server")
        proc = run_certkit("probe", f"https://127.0.0.1:{port}/", "--ca-dir", root / "ca", "--json", env=env)
    finally:
        server.terminate()
        wait_or_kill(server)
    assert proc.returncode == 1, proc
    withdrawn = json.loads(proc.stdout)["server_certificate"]["withdrawn"]
    assert len(withdrawn) == 1 and withdrawn[0].endswith(f"; {CLIENTS_REFUSE}"), withdrawn


# --- 3. who Redis lets in: the CA alone, no name -------------------------------------------------------------------
# docs/peers.md said each member's certificates "name its own host name and address", as if those names counted:
# for Redis they never do. A replica takes any server certificate of the CA as its primary's, and any client
# certificate of the CA logs in; the page now says so (a CA of its own for the Redis nodes), and that etcd, unlike
# Redis, checks the peer URL's host against a member's certificate.
@pytest.fixture
def elsewhere_certs(tmp_path) -> Path:
    """test_peers_redis's layout, but the primary's server certificate names another host only, and ``app`` is a
    client certificate issued for someone else (alice, as for a web server)."""
    root = tmp_path / "certs"
    root.mkdir()
    env = new_ca(root, "certkit one CA for everything")
    run_certkit("issue-server", "elsewhere.example", "--out", root / "primary-server", env=env, check=True)
    run_certkit("issue-server", "localhost", "127.0.0.1", "--out", root / "replica-server", env=env, check=True)
    for node in ("primary", "replica"):
        run_certkit("issue-client", f"redis-{node}", "--out", root / f"{node}-client", env=env, check=True)
    run_certkit("issue-client", "alice@example.com", "--out", root / "app", env=env, check=True)
    return root


def test_redis_checks_no_name_in_its_primarys_certificate_nor_its_clients(tmp_path, elsewhere_certs):
    names = x509.load_pem_x509_certificate((elsewhere_certs / "primary-server" / "cert.pem").read_bytes()).extensions
    assert names.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == \
        ["elsewhere.example"]
    redis = Redis(tmp_path / "run", elsewhere_certs)
    redis.root.mkdir()
    try:
        primary = redis.start("primary", server_cert="primary-server", client_cert="primary-client")
        replica = redis.start("replica", server_cert="replica-server", client_cert="replica-client", primary=primary)
        wait_for(lambda: "MASTER <-> REPLICA sync: Finished with success" in replica.log, "the first sync", replica)
        # alice's certificate, issued for something else, has the default user's rights: here, all of them.
        assert redis.command(replica, "config", "get", "replicaof", verify=False).stdout.split() == \
            ["replicaof", "127.0.0.1", str(primary.port)]
        assert redis.command(primary, "set", "greeting", "from alice", verify=False).stdout.strip() == "OK"
        wait_for(lambda: redis.command(replica, "get", "greeting").stdout.strip() == "from alice",
                 "alice's key on the replica", replica)
    finally:
        redis.stop()


def test_etcd_checks_the_peer_urls_host_against_a_members_certificate(tmp_path):
    """Peer certificates naming the member's DNS name only, the peer URLs 127.0.0.1: no cluster, and the log says
    why (the redis test above replicates in the same case)."""
    root = tmp_path / "certs"
    root.mkdir()
    env = new_ca(root, "certkit etcd names CA")
    for member in MEMBERS:
        run_certkit("issue-peer", f"{member}.cluster.internal", "--out", root / f"{member}-peer", env=env, check=True)
        run_certkit("issue-server", "127.0.0.1", "--out", root / f"{member}-server", env=env, check=True)
    run_certkit("issue-client", "etcdctl", "--out", root / "etcdctl", env=env, check=True)
    etcd = Etcd(tmp_path / "run", root)
    etcd.root.mkdir()
    try:
        members = etcd.start(MEMBERS, peer_cert="peer", client_cert="server")
        _wait_in_log(etcd, members, "x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any "
                     "IP SANs", "the dialing member's refusal")
        put = etcd.ctl(members[0], "put", "greeting", "never stored")
        assert put.returncode != 0 and "deadline exceeded" in put.stderr, put
        for m in members:
            assert "elected leader" not in m.log, m.log
    finally:
        etcd.stop()


def test_the_page_says_redis_checks_no_name() -> None:
    _page_says("Redis checks the CA and the purpose, never a name", "`tls-replication` checks no host name",
               "every client certificate of the CA logs in", "give the Redis nodes a CA of their own",
               "etcd, by contrast, checks the peer URL's host against a member's certificate")


# --- 4. probe of a revoked peer certificate at etcd's peer listener ------------------------------------------------
# etcd takes a revoked certificate in the handshake and then closes the connection (its CRL check comes after).
# probe, given --ca-dir, knew from the inventory that the certificate was revoked, yet said only "not known: ...
# the server closed the connection without an answer ... (probe a URL that answers HTTP)", though the URL answers
# HTTP (a good peer certificate gets 200). It now names the revocation and why such a server closes so.
def test_probe_names_the_revocation_when_etcd_closes_after_the_handshake(crl_etcd, etcd_certs):
    root, env = etcd_certs
    (member,) = crl_etcd.start(MEMBERS[:1], peer_cert="peer", client_cert="server",
                               extra=("--peer-crl-file", str(root / "crl.pem")))
    soon(crl_etcd, lambda: crl_etcd.ctl(member, "put", "greeting", "hello"), "the member to serve")
    run_certkit("revoke", root / "etcd-3-peer", "--reason", "keyCompromise", env=env, check=True)
    run_certkit("crl", "--out", root / "crl.pem", env=env, check=True)
    url = f"{member.peer_url}/version"

    def probe(bundle: str, *trust: str) -> tuple[int, dict]:
        proc = run_certkit("probe", url, *trust, "--bundle", root / bundle, "--json", env=env)
        return proc.returncode, json.loads(proc.stdout)["client_certificate"]

    code, good = probe("etcd-2-peer", "--ca-dir", root / "ca")
    assert code == 0 and good["verdict"].startswith("accepted: the server answered HTTP 200"), good
    code, revoked = probe("etcd-3-peer", "--ca-dir", root / "ca")
    assert code == 1, revoked
    assert revoked["verdict"].startswith("not known: the handshake took it, but the server closed the connection "
                                         "without an answer; it was revoked on "), revoked
    assert "(etcd's --peer-crl-file and --client-crl-file among them)" in revoked["verdict"]
    assert "probe a URL that answers HTTP" not in revoked["verdict"]
    _wait_in_log(crl_etcd, [member], f"certificate serial {_serial(root / 'etcd-3-peer')} revoked", "the refusal")
    # Without the inventory, nothing is known of the revocation: the words stay as they were.
    code, unknown = probe("etcd-3-peer", "--ca-file", root / "ca" / "ca.pem")
    assert code == 1 and unknown["verdict"].endswith("(probe a URL that answers HTTP)"), unknown


# --- 5. etcd reads one CRL from its file: under an intermediate, the issuing CA's -----------------------------------
# crl.md tells nginx users to put the root's CRL and the intermediate's in one file. etcd reads the first CRL of
# the file only (and checks no issuer): given that file, root's CRL first, it let a peer whose certificate the
# intermediate had revoked in. peers.md now says which CRL etcd needs.
def _peer_get(port: int, bundle: Path, path: str = "/version") -> bytes:
    """GET ``path`` on etcd's peer listener presenting ``bundle`` (its fullchain): the answer, b"" when etcd closed
    the connection after the handshake (its CRL and CN checks come then)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the server's side is not what is judged
    context.load_cert_chain(bundle / "fullchain.pem", bundle / "privkey.pem")
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw, context.wrap_socket(raw) as tls:
        try:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            while chunk := tls.recv(4096):
                answer += chunk
        except (ssl.SSLError, OSError):
            pass
    return answer


@pytest.mark.parametrize("crl_file, refused", [("issuing.crl", True), ("root-then-issuing.crl", False)])
def test_etcd_under_an_intermediate_needs_the_issuing_cas_crl(tmp_path, crl_file, refused):
    root = tmp_path / "certs"
    root.mkdir()
    env = new_ca(root, "Cluster Root") | {"CERTKIT_PARENT_CA_PASSPHRASE": PASSPHRASE}
    issuing = root / "issuing"
    run_certkit("init-ca", "--ca-dir", issuing, "--parent-ca-dir", root / "ca", "--name", "Cluster Issuing",
                env=env, check=True)
    for member in MEMBERS[:2]:
        run_certkit("issue-peer", f"{member}.cluster.internal", "127.0.0.1", "--ca-dir", issuing,
                    "--out", root / f"{member}-peer", env=env, check=True)
    run_certkit("issue-server", "127.0.0.1", "--ca-dir", issuing, "--out", root / "etcd-1-server", env=env,
                check=True)
    run_certkit("revoke", root / "etcd-2-peer", "--ca-dir", issuing, env=env, check=True)
    run_certkit("crl", "--out", root / "root.crl", env=env, check=True)
    run_certkit("crl", "--ca-dir", issuing, "--out", root / "issuing.crl", env=env, check=True)
    (root / "root-then-issuing.crl").write_bytes((root / "root.crl").read_bytes() + (root / "issuing.crl").read_bytes())
    for folder in ("etcd-1-peer", "etcd-1-server"):  # etcd presents its files as given: the chain with the leaf
        (root / folder / "cert.pem").write_bytes((root / folder / "fullchain.pem").read_bytes())
    etcd = Etcd(tmp_path / "run", root)
    etcd.root.mkdir()
    try:
        (member,) = etcd.start(MEMBERS[:1], peer_cert="peer", client_cert="server",
                               extra=("--peer-crl-file", str(root / crl_file)))
        wait_listening(member.peer_port, member.process, "etcd's peer listener", log=lambda: member.log)
        answer = _peer_get(member.peer_port, root / "etcd-2-peer")
    finally:
        etcd.stop()
    assert (answer == b"") is refused, answer[:200]
    if refused:
        assert f"certificate serial {_serial(root / 'etcd-2-peer')} revoked" in member.log
    else:
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_the_page_names_the_crl_etcd_needs_under_an_intermediate() -> None:
    _page_says("etcd reads the first CRL of the file only", "the issuing CA's CRL alone")
    crl_page = " ".join((REPO / "docs" / "crl.md").read_text().split())
    assert "It reads the first CRL of the file only, so under an intermediate the file holds the issuing CA's CRL " \
           "alone" in crl_page


# --- 6. a peer addressed by IPv6, found by the address however it is written ----------------------------------------
# issue-peer 0:0:0:0:0:0:0:1 writes the address as ::1 (as every IPv6 address is stored: compressed), and
# renew NAME and list --name found a host name in any case or with its final dot, but an address only as stored:
# `certkit renew 0:0:0:0:0:0:0:1` said "No certificate of this CA matches" and `list --name` "No certificates
# match". An address is now looked for in the form issuing writes it.
@pytest.mark.parametrize("spelled", ["0:0:0:0:0:0:0:1", "0000:0000::0001"])
def test_renew_and_list_find_a_peer_by_its_ipv6_address_however_written(tmp_path, spelled):
    env = new_ca(tmp_path, "certkit ipv6 CA")
    run_certkit("issue-peer", spelled, "127.0.0.1", "--out", tmp_path / "node", env=env, check=True)
    listed = json.loads(run_certkit("list", "--name", spelled, "--json", env=env, check=True).stdout)
    assert [c["names"] for c in listed["certificates"]] == [["IP:::1", "IP:127.0.0.1"]], listed
    renewed = run_certkit("renew", spelled, "--json", env=env)
    assert renewed.returncode == 0, renewed
    data = json.loads(renewed.stdout)
    assert data["kind"] == "peer" and data["names"] == ["IP:::1", "IP:127.0.0.1"], data
    assert Path(data["folder"]).resolve() == (tmp_path / "node").resolve()
    # The renewed certificate keeps both purposes, for the same addresses (OpenSSL's own checks).
    for purpose, check in (("sslserver", ["-verify_ip", "::1"]), ("sslclient", [])):
        proc = subprocess.run([require("openssl"), "verify", "-x509_strict", "-purpose", purpose, *check, "-CAfile",
                               tmp_path / "node" / "ca.pem", tmp_path / "node" / "cert.pem"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and proc.stdout.strip().endswith(": OK"), proc
    cert = x509.load_pem_x509_certificate((tmp_path / "node" / "cert.pem").read_bytes())
    assert cert.serial_number == int(data["new_serial"], 16)


# --- 7. who etcd lets in on its peer listener: any client certificate of the CA, unless told otherwise --------------
# The Redis paragraph above says the CA alone decides; etcd's peer listener is the same by default: a client
# certificate of the CA issued for anything else (alice's) gets the member list there, and writes through the
# client API. peers.md now says so and gives etcd's own limit, run here: one name every peer certificate shares,
# first (so it is the CN), and --peer-cert-allowed-cn.
PEERS_NAME = "etcd-peer.cluster.internal"


@pytest.mark.parametrize("allowed_cn", [False, True])
def test_etcd_peer_listener_takes_any_client_certificate_of_the_ca_unless_a_cn_is_required(tmp_path, allowed_cn):
    root = tmp_path / "certs"
    root.mkdir()
    env = new_ca(root, "certkit one CA for everything")
    for member in MEMBERS:
        run_certkit("issue-peer", PEERS_NAME, f"{member}.cluster.internal", "127.0.0.1", "--out",
                    root / f"{member}-peer", env=env, check=True)
        run_certkit("issue-server", "127.0.0.1", "--out", root / f"{member}-server", env=env, check=True)
    for client in ("etcdctl", "alice"):
        run_certkit("issue-client", client, "--out", root / client, env=env, check=True)
    etcd = Etcd(tmp_path / "run", root)
    etcd.root.mkdir()
    try:
        members = etcd.start(MEMBERS, peer_cert="peer", client_cert="server",
                             extra=("--peer-cert-allowed-cn", PEERS_NAME) if allowed_cn else ())
        soon(etcd, lambda: etcd.ctl(members[0], "put", "greeting", "hello"), "the cluster to take a write")
        health = soon(etcd, lambda: etcd.ctl(members[0], "endpoint", "health", "--cluster"), "three healthy members")
        assert (health.stdout + health.stderr).count("is healthy") == 3, health
        answer = _peer_get(members[0].peer_port, root / "alice", "/members")
        if allowed_cn:
            assert answer == b"", answer[:300]
            _wait_in_log(etcd, members[:1], "\"error\":\"client certificate authentication failed\"", "alice's refusal")
        else:
            assert answer.startswith(b"HTTP/1.1 200") and b'"name":"etcd-1"' in answer, answer[:300]
        # The client API: any client certificate of the CA writes (etcd's own authentication is off).
        assert etcd.ctl(members[0], "put", "greeting", "from alice", client="alice").stdout.strip() == "OK"
    finally:
        etcd.stop()


def test_the_page_says_who_etcd_lets_in() -> None:
    _page_says("any client certificate of the CA is let in on the peer listener", "`--peer-cert-allowed-cn`",
               "`client certificate authentication failed`", "etcdctl with alice's certificate writes",
               f"certkit issue-peer {PEERS_NAME} etcd-1.cluster.internal 127.0.0.1 --out etcd-1/peer",
               f"--peer-cert-allowed-cn {PEERS_NAME}")


# --- 8. an IPv6 address as a cluster's URLs write it: [::1] --------------------------------------------------------
# etcd's peer URLs (and every URL) put an IPv6 address in brackets: https://[::1]:2380. certkit took
# '[::1]:2380' for the address ::1 with a port, but said of '[::1]' alone "is not a valid IPv6 address", which
# it is. It now names the address, as the port's message does, in issue-peer, verify --name and a manifest.
def test_a_bracketed_ipv6_address_is_named_for_what_it_is(tmp_path):
    env = new_ca(tmp_path, "certkit brackets CA")
    said = "'[::1]' is the IPv6 address ::1 in the brackets of a URL: a certificate names the address alone ('::1')"
    assert_clean_error(run_certkit("issue-peer", "[::1]", "--out", tmp_path / "node", env=env), said)
    assert not (tmp_path / "node").exists()
    run_certkit("issue-peer", "::1", "--out", tmp_path / "node", env=env, check=True)
    assert_clean_error(run_certkit("verify", tmp_path / "node", "--purpose", "server", "--name", "[::1]", env=env),
                       f"--name: {said}")
    (tmp_path / "m.csv").write_text("kind,names,out\npeer,[::1],b1\n")
    assert_clean_error(run_certkit("issue-batch", tmp_path / "m.csv", "--out-dir", tmp_path / "bo", env=env),
                       f"line 2: {said}")
    for spelled in ("[::1", "[zz::1]", "[::1/64]"):  # not an address in brackets: as before
        assert_clean_error(run_certkit("issue-peer", spelled, env=env), f"'{spelled}' is not a valid IPv6 address.")


# --- 9. revoke's hint names the side that refuses ------------------------------------------------------------------
# As verify did (2.), `certkit revoke` ended with "Publish a new CRL so servers refuse it" for every kind: for a
# server certificate it is its clients that refuse it, for a peer certificate (or a CA's) both sides. The hint,
# and the one of a revocation found already recorded, now name them by kind.
@pytest.mark.parametrize("kind, command, refusers", [
    ("server", ("issue-server", "web.internal"), "clients"),
    ("client", ("issue-client", "alice"), "servers"),
    ("peer", ("issue-peer", "node-1.cluster.internal", "::1"), "servers and clients"),
])
def test_revoke_says_who_refuses_a_certificate_of_its_kind(tmp_path, kind, command, refusers):
    env = new_ca(tmp_path, "certkit revoke CA")
    run_certkit(*command, "--out", tmp_path / "it", env=env, check=True)
    said = run_certkit("revoke", tmp_path / "it", env=env, check=True)
    assert said.stdout.splitlines()[0].startswith(f"Revoked {kind} certificate ")
    assert said.stdout.splitlines()[-1] == f"Publish a new CRL so {refusers} refuse it: certkit crl --out crl.pem"
    again = run_certkit("revoke", tmp_path / "it", env=env)
    assert_clean_error(again, f"publish one now so {refusers} refuse it: certkit crl --out crl.pem")
