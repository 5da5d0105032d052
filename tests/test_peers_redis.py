"""The separated way, proven with Redis 7 replication over mutual TLS.

Each Redis node gets two certkit certificates: a server certificate (issue-server) for the
connections it accepts (``tls-cert-file``) and a client certificate (issue-client) for the
connections it makes, here the replica's link to its primary (``tls-client-cert-file``). With
``tls-auth-clients yes`` the primary demands a client certificate from the replica, and with
``tls-replication yes`` the replica checks the primary's server certificate: each certificate is
used for the one purpose it carries, and replication works without any dual-purpose certificate.

Swapping the two certificates breaks replication, and the logs name the purpose. Redis logs
OpenSSL's error queue, not the verify result, so the words are:

- on the side that refused: ``certificate verify failed``;
- on the side that was refused: ``sslv3 alert unsupported certificate``, the alert OpenSSL sends
  for exactly one verify error, X509_V_ERR_INVALID_PURPOSE ("unsuitable certificate purpose");
  the last test shows that mapping on this machine's OpenSSL, next to the different alert an
  untrusted certificate gets.

Renewal: Redis reads its certificate files only at start and on ``CONFIG SET`` of its TLS files,
so a renewed certificate is presented only after docs/peers.md's ``--exec`` hook (redis-reload.sh,
taken from the page) has run; without it the node keeps presenting the old one, in both roles.

Debian's redis-server (7.0) is started by the test on 127.0.0.1 (TLS port only, ``--port 0``),
each node in its own folder, and stopped by the test.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from certkit.tlscheck import Endpoint, client_context, handshake, server_context

from conftest import REPO, free_port, new_ca, require, run_certkit, wait_or_kill
from docs_runner import steps

# What each side of the replication link logs when a certificate's purpose is wrong (Redis 7.0
# with OpenSSL 3). The error codes are OpenSSL's: 0A000086 SSL_R_CERTIFICATE_VERIFY_FAILED,
# 0A000413 the unsupported_certificate alert (43) received from the other side.
PRIMARY_REFUSES = "Error accepting a client connection: error:0A000086:SSL routines::certificate verify failed"
REPLICA_IS_REFUSED = ("Failed to read response from the server: "
                      "error:0A000413:SSL routines::sslv3 alert unsupported certificate")
REPLICA_REFUSES = "Error condition on socket for SYNC: error:0A000086:SSL routines::certificate verify failed"
PRIMARY_IS_REFUSED = ("Error accepting a client connection: "
                      "error:0A000413:SSL routines::sslv3 alert unsupported certificate")


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """A CA, and for each node a server and a client certificate; one more client certificate for
    redis-cli. All through the CLI, as an operator would issue them."""
    root = tmp_path_factory.mktemp("redis-certs")
    env = new_ca(root, "certkit redis test CA")
    for node in ("primary", "replica"):
        run_certkit("issue-server", "localhost", "127.0.0.1", "--out", root / f"{node}-server", env=env, check=True)
        run_certkit("issue-client", f"redis-{node}", "--out", root / f"{node}-client", env=env, check=True)
    run_certkit("issue-client", "app", "--out", root / "app", env=env, check=True)
    return root


@dataclass
class Node:
    name: str
    port: int
    folder: Path
    process: subprocess.Popen

    @property
    def log(self) -> str:
        path = self.folder / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""


class Redis:
    """Starts redis-server nodes for one test and stops every one of them, whatever happens."""

    def __init__(self, root: Path, certs: Path) -> None:
        self.binary = require("redis-server")
        self.cli = require("redis-cli")
        self.root, self.certs = root, certs
        self.nodes: list[Node] = []

    def start(self, name: str, *, server_cert: str, client_cert: str, primary: Node | None = None,
              chain: str = "cert.pem") -> Node:
        """A node presenting ``<server_cert>/<chain>`` and ``<client_cert>/<chain>`` (folders of ``certs``)."""
        folder = self.root / name
        folder.mkdir()
        port = free_port()
        args = [self.binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                "--dir", str(folder), "--logfile", str(folder / "redis.log"), "--daemonize", "no",
                "--save", "", "--appendonly", "no",
                # A disk-based first sync starts at once; the diskless default waits 5 s for more
                # replicas to join (and, in Redis 7.0 over TLS, can answer WAIT before the replica
                # has the write: docs/peers.md relies on WAIT).
                "--repl-diskless-sync", "no",
                "--tls-cert-file", str(self.certs / server_cert / chain),
                "--tls-key-file", str(self.certs / server_cert / "privkey.pem"),
                "--tls-client-cert-file", str(self.certs / client_cert / chain),
                "--tls-client-key-file", str(self.certs / client_cert / "privkey.pem"),
                "--tls-ca-cert-file", str(self.certs / "ca" / "ca.pem"),
                "--tls-auth-clients", "yes", "--tls-replication", "yes"]
        if primary is not None:
            args += ["--replicaof", "127.0.0.1", str(primary.port)]
        process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.STDOUT)
        node = Node(name, port, folder, process)
        self.nodes.append(node)
        wait_for(lambda: "Ready to accept connections" in node.log, f"{name} to start", node)
        return node

    def command(self, node: Node, *args: str, client: str = "app", verify: bool = True) -> subprocess.CompletedProcess:
        """redis-cli over TLS with a client certificate; ``verify=False`` skips checking the node's
        own certificate (to ask a node whose server certificate is deliberately wrong)."""
        trust = ["--cacert", str(self.certs / "ca" / "ca.pem")] if verify else ["--insecure"]
        return subprocess.run([self.cli, "--tls", *trust, "--cert", str(self.certs / client / "cert.pem"),
                               "--key", str(self.certs / client / "privkey.pem"), "-h", "127.0.0.1",
                               "-p", str(node.port), *args],
                              capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        for node in reversed(self.nodes):  # replicas first: a primary waits for them on shutdown
            if node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes:
            wait_or_kill(node.process)


def wait_for(condition, what: str, node: Node, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if node.process.poll() is not None:
            raise AssertionError(f"redis-server {node.name} exited {node.process.returncode}:\n{node.log}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{node.log}")
        time.sleep(0.05)


@pytest.fixture
def redis(tmp_path, certs):
    cluster = Redis(tmp_path, certs)
    try:
        yield cluster
    finally:
        cluster.stop()


def replication(redis: Redis, replica: Node, *, verify: bool = True) -> dict[str, str]:
    proc = redis.command(replica, "info", "replication", verify=verify)
    assert proc.returncode == 0, proc
    return dict(line.split(":", 1) for line in proc.stdout.splitlines() if ":" in line)


def test_replication_with_a_server_and_a_client_certificate(redis):
    primary = redis.start("primary", server_cert="primary-server", client_cert="primary-client")
    replica = redis.start("replica", server_cert="replica-server", client_cert="replica-client", primary=primary)
    wait_for(lambda: "MASTER <-> REPLICA sync: Finished with success" in replica.log, "the first sync", replica)
    assert replication(redis, replica)["master_link_status"] == "up"

    set_ = redis.command(primary, "set", "greeting", "separated certificates work")
    assert set_.stdout.strip() == "OK", set_
    wait_for(lambda: redis.command(replica, "get", "greeting").stdout.strip() == "separated certificates work",
             "the key on the replica", replica)
    # A replica is read-only: the value can only have come over the TLS replication link.
    refused = redis.command(replica, "set", "greeting", "written on the replica")
    assert "READONLY" in refused.stdout + refused.stderr
    assert "Synchronization with replica 127.0.0.1:" in primary.log
    for node in (primary, replica):
        assert "certificate verify failed" not in node.log and "alert" not in node.log, node.log


@pytest.mark.parametrize("swapped", ["both nodes", "replica only"])
def test_swapped_certificates_break_replication_for_their_purpose(redis, swapped):
    """Each node serving with its client certificate and connecting with its server certificate.

    Both swapped: the replica, connecting, gets the primary's client certificate as a server
    certificate and refuses it (its log: verify failed); the primary receives the alert.
    Replica only: the primary gets the replica's server certificate as a client certificate and
    refuses it; the replica receives the alert. Either way the link never comes up."""
    primary_certs = ({"server_cert": "primary-client", "client_cert": "primary-server"} if swapped == "both nodes"
                     else {"server_cert": "primary-server", "client_cert": "primary-client"})
    primary = redis.start("primary", **primary_certs)
    replica = redis.start("replica", server_cert="replica-client", client_cert="replica-server", primary=primary)
    refuser, refusal, refused, alert = ((replica, REPLICA_REFUSES, primary, PRIMARY_IS_REFUSED)
                                        if swapped == "both nodes" else
                                        (primary, PRIMARY_REFUSES, replica, REPLICA_IS_REFUSED))
    wait_for(lambda: refusal in refuser.log, f"{refuser.name} to log the refusal", refuser)
    wait_for(lambda: alert in refused.log, f"{refused.name} to log the alert", refused)
    # The replica keeps retrying (once a second) and never gets its data.
    assert "MASTER <-> REPLICA sync: Finished with success" not in replica.log
    assert replication(redis, replica, verify=False)["master_link_status"] == "down"


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_unsupported_certificate_is_the_purpose_alert(certs, version, tmp_path):
    """On this machine's OpenSSL, the refusing side's "unsuitable certificate purpose" reaches the
    other side as "alert unsupported certificate", while an untrusted certificate is announced with
    a different alert: so the alert in the Redis logs above names the purpose."""
    from certkit import CA

    def ep(name: str) -> Endpoint:
        return Endpoint(certs / name / "fullchain.pem", certs / name / "privkey.pem")

    ca = certs / "ca" / "ca.pem"
    server = server_context(ep("primary-server"), ca, version=version)
    wrong_purpose = handshake(server, client_context(ca, ep("replica-server"), version=version))
    assert wrong_purpose.server_error == "certificate verify failed: unsuitable certificate purpose"
    assert "alert unsupported certificate" in wrong_purpose.client_error

    CA.create("an untrusted CA").issue_client("stranger").write(tmp_path / "stranger")
    untrusted = handshake(server, client_context(ca, Endpoint(tmp_path / "stranger" / "fullchain.pem",
                                                             tmp_path / "stranger" / "privkey.pem"), version=version))
    assert untrusted.server_error == "certificate verify failed: unable to get local issuer certificate"
    assert "alert unknown ca" in untrusted.client_error
    assert "unsupported certificate" not in untrusted.client_error


# --- Renewal: the hook of docs/peers.md ------------------------------------------------------------

def documented_hook(ports: dict[str, int]) -> str:
    """docs/peers.md's redis-reload.sh, with the page's ports (6380, 6381) replaced by this test's."""
    [hook] = [s.text for s in steps(REPO / "docs" / "peers.md") if s.kind == "file" and s.path == "redis-reload.sh"]
    assert "6380" in hook and "6381" in hook and "$RENEWED_LINEAGE" in hook, hook
    for documented, port in ports.items():
        hook = hook.replace(documented, str(port))
    return hook


def serial_of(folder: Path) -> int:
    return x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes()).serial_number


def served_serial(certs: Path, node: Node) -> int:
    """The serial of the server certificate ``node`` presents to a new connection (a real handshake,
    with the app's client certificate, verified against the CA)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(certs / "ca" / "ca.pem")
    context.load_cert_chain(certs / "app" / "cert.pem", certs / "app" / "privkey.pem")
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock, \
            context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def presented_client_serial(redis: Redis, replica: Node, primary: Node) -> int:
    """The serial of the client certificate ``replica`` presents when it connects to a primary: it
    is pointed for a moment at a TLS listener of this test (which serves the primary's own
    certificate, demands a client certificate and reads it), then back at ``primary``, and the
    link must come up again."""
    certs, primary_server = redis.certs, redis.certs / "redis-1" / "server"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(primary_server / "fullchain.pem", primary_server / "privkey.pem")
    context.load_verify_locations(certs / "ca" / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(15)
        moved = redis.command(replica, "replicaof", "127.0.0.1", str(listener.getsockname()[1]))
        assert moved.stdout.strip() == "OK", moved
        conn, _ = listener.accept()
        conn.settimeout(10)
        with context.wrap_socket(conn, server_side=True) as tls:
            serial = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number
    back = redis.command(replica, "replicaof", "127.0.0.1", str(primary.port))
    assert back.stdout.strip() == "OK", back
    wait_for(lambda: (lambda info: info.get("master_port") == str(primary.port)
                      and info.get("master_link_status") == "up")(replication(redis, replica)),
             "the replica back on its primary", replica)
    return serial


def replica_link(redis: Redis, primary: Node) -> str:
    """The primary's connection from its replica (its client id and address): the same while the
    link stays open, another after the replica reconnects."""
    proc = redis.command(primary, "client", "list", "type", "replica")
    [line] = proc.stdout.splitlines()
    return " ".join(field for field in line.split() if field.split("=")[0] in ("id", "addr"))


@pytest.fixture
def page_certs(tmp_path) -> tuple[Path, dict[str, str]]:
    """docs/peers.md's layout (redis-1/server, redis-1/client, redis-2/..., app), in a CA of its
    own: these certificates get renewed. The folder and the CA's environment."""
    root = tmp_path / "page"
    root.mkdir()
    env = new_ca(root, "certkit redis renewal CA")
    for node in ("redis-1", "redis-2"):
        run_certkit("issue-server", "localhost", "127.0.0.1", "--out", root / node / "server", env=env, check=True)
        run_certkit("issue-client", node, "--out", root / node / "client", env=env, check=True)
    run_certkit("issue-client", "app", "--out", root / "app", env=env, check=True)
    return root, env


def test_renewed_certificates_are_presented_only_after_the_documented_hook(tmp_path, page_certs):
    """Renewal of the primary's server certificate and the replica's client certificate, as
    docs/peers.md does it. Renewed without the hook, both nodes go on presenting the old
    certificates (so the check below cannot pass by itself); renewed again (new keys) with the
    page's ``--exec 'sh redis-reload.sh'``, a new connection to the primary gets its new server
    certificate, the replica connecting out presents its new client certificate, and replication
    over the reconnected link still carries a write."""
    root, env = page_certs
    redis = Redis(tmp_path / "nodes", root)
    (tmp_path / "nodes").mkdir()
    try:
        primary = redis.start("primary", server_cert="redis-1/server", client_cert="redis-1/client",
                              chain="fullchain.pem")
        replica = redis.start("replica", server_cert="redis-2/server", client_cert="redis-2/client",
                              primary=primary, chain="fullchain.pem")
        wait_for(lambda: "MASTER <-> REPLICA sync: Finished with success" in replica.log, "the first sync", replica)
        (root / "redis-reload.sh").write_text(documented_hook({"6380": primary.port, "6381": replica.port}))
        server, client = root / "redis-1" / "server", root / "redis-2" / "client"
        first_server, first_client = serial_of(server), serial_of(client)
        assert served_serial(root, primary) == first_server
        assert presented_client_serial(redis, replica, primary) == first_client

        # Renewed, no hook: the files change, what the nodes present does not.
        for folder in (server, client):
            run_certkit("renew", folder, cwd=root, env=env, check=True)
        assert serial_of(server) != first_server and serial_of(client) != first_client
        assert served_serial(root, primary) == first_server
        assert presented_client_serial(redis, replica, primary) == first_client

        # Renewed with the documented hook (and new keys): the new certificates are presented.
        link = replica_link(redis, primary)
        said = {}
        for folder, node in ((server, "redis-1"), (client, "redis-2")):
            before = serial_of(folder)
            proc = run_certkit("renew", folder.relative_to(root), "--rekey", "--exec", "sh redis-reload.sh",
                               cwd=root, env=env, check=True)
            said[node] = proc.stdout + proc.stderr
            assert f"{node}: OK" in said[node] and "--exec      exit 0" in proc.stdout, said[node]
            assert serial_of(folder) not in (before, first_server, first_client)
        # The reloads left the open replication link alone (docs/peers.md: open connections go on).
        assert replica_link(redis, primary) == link
        assert served_serial(root, primary) == serial_of(server)
        assert presented_client_serial(redis, replica, primary) == serial_of(client)
        # The other certificate of each node, reloaded too, is the one on disk still (not renewed).
        assert served_serial(root, replica) == serial_of(root / "redis-2" / "server")

        # The link presented_client_serial brought back runs on the renewed certificates: a write
        # on the primary reaches the (read-only) replica.
        set_ = redis.command(primary, "set", "greeting", "after renewal")
        assert set_.stdout.strip() == "OK", set_
        wait_for(lambda: redis.command(replica, "get", "greeting").stdout.strip() == "after renewal",
                 "the key on the replica", replica)
        for node in (primary, replica):
            assert "certificate verify failed" not in node.log and "alert" not in node.log, node.log
    finally:
        redis.stop()


def test_documented_hook_fails_when_redis_refuses_the_reload(tmp_path, page_certs):
    """redis-cli exits 0 on an error reply; the page's hook checks the reply, so a reload Redis
    refuses (here: the renewed folder is not where the node's files are) is a failed hook, exit 1."""
    root, env = page_certs
    redis = Redis(tmp_path / "nodes", root)
    (tmp_path / "nodes").mkdir()
    try:
        primary = redis.start("primary", server_cert="redis-1/server", client_cert="redis-1/client",
                              chain="fullchain.pem")
        (root / "redis-reload.sh").write_text(documented_hook({"6380": primary.port, "6381": free_port()}))
        old = serial_of(root / "redis-1" / "server")
        proc = run_certkit("renew", "redis-1/server", "--out", "elsewhere/redis-1/client",
                           "--exec", "sh redis-reload.sh", cwd=root, env=env)
        assert proc.returncode == 1, (proc.stdout, proc.stderr)
        assert "redis-1: ERR" in proc.stderr and "--exec      exit 1" in proc.stdout, (proc.stdout, proc.stderr)
        assert served_serial(root, primary) == old  # Redis keeps its old configuration
    finally:
        redis.stop()
