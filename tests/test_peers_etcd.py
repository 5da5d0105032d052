"""issue-peer where it is needed: a real etcd 3.4 cluster of three members on loopback.

etcd 3.4 (Debian's etcd-server 3.4.23) has one certificate per listener: ``--peer-cert-file`` is
presented when a member accepts a peer connection *and* when it opens one to another member. With
``--peer-client-cert-auth`` the accepting member demands a client certificate, so a peer
certificate needs both serverAuth and clientAuth; etcd 3.5 added ``--peer-client-cert-file`` to
separate them, 3.4 cannot. These tests start the members with certkit certificates (issue-peer for
the peers, issue-server for the client listener, issue-client for etcdctl) and show:

- the cluster forms with issue-peer certificates: a key written on one member is read on another;
- with issue-server certificates as peer certificates it does not form, and every member's log
  names the purpose (Go: "certificate specifies an incompatible key usage", the log docs/peers.md shows);
- what the client listener's ``--cert-file`` needs: a server certificate serves etcdctl (gRPC),
  but with ``--client-cert-auth`` etcd 3.4's own HTTP/JSON gateway connects to the member with
  that same certificate as a client certificate, so the gateway works only with both usages
  (issue-peer) or is turned off (``--enable-grpc-gateway=false``).

Elections are tuned short (50 ms heartbeats, 500 ms election timeout), data lives in tmp, and
every member is stopped by the test.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64decode, b64encode
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import free_port, new_ca, require, run_certkit, wait_or_kill

# What Go's crypto/tls says, in etcd's log, when a connecting side's certificate lacks clientAuth.
KEY_USAGE = "tls: failed to verify client certificate: x509: certificate specifies an incompatible key usage"
MEMBERS = ("etcd-1", "etcd-2", "etcd-3")


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """A CA; for each member a peer certificate (issue-peer) and a server certificate
    (issue-server), both for its name and 127.0.0.1; a client certificate for etcdctl."""
    root = tmp_path_factory.mktemp("etcd-certs")
    env = new_ca(root, "certkit etcd test CA")
    for member in MEMBERS:
        names = (f"{member}.cluster.internal", "127.0.0.1")
        run_certkit("issue-peer", *names, "--out", root / f"{member}-peer", env=env, check=True)
        run_certkit("issue-server", *names, "--out", root / f"{member}-server", env=env, check=True)
    run_certkit("issue-client", "etcdctl", "--out", root / "etcdctl", env=env, check=True)
    return root


@dataclass
class Member:
    name: str
    peer_port: int
    client_port: int
    log_path: Path
    process: subprocess.Popen | None = None
    host: str = "127.0.0.1"

    @property
    def peer_url(self) -> str:
        return f"https://{self.host}:{self.peer_port}"

    @property
    def client_url(self) -> str:
        return f"https://{self.host}:{self.client_port}"

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Etcd:
    """Starts etcd members for one test, runs etcdctl against them, and stops every member."""

    def __init__(self, root: Path, certs: Path) -> None:
        self.binary = require("etcd")
        self.etcdctl = require("etcdctl")
        self.root, self.certs = root, certs
        self.members: list[Member] = []

    def start(self, names, *, peer_cert: str, client_cert: str, gateway: bool = False,
              extra: tuple[str, ...] = (), hosts: tuple[str, ...] = ()) -> list[Member]:
        """Members ``names``, each with ``<name>-<peer_cert>`` on its peer listener and
        ``<name>-<client_cert>`` on its client listener, and ``extra`` flags, each on its address of ``hosts``
        (default 127.0.0.1). A port another process took between the
        choice and etcd's bind (seen once in CI) starts the members again on other ports."""
        for _attempt in range(3):
            members = self._start(names, peer_cert=peer_cert, client_cert=client_cert, gateway=gateway, extra=extra,
                                  hosts=hosts)
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and all(m.process.poll() is None for m in members):
                time.sleep(0.1)
            if not any(m.process.poll() is not None and "address already in use" in m.log for m in members):
                return members
            self.stop()
            self.members = []
            for m in members:
                shutil.rmtree(self.root / f"{m.name}.etcd", ignore_errors=True)
        return members

    def _start(self, names, *, peer_cert: str, client_cert: str, gateway: bool,
               extra: tuple[str, ...], hosts: tuple[str, ...] = ()) -> list[Member]:
        members = [Member(n, free_port(), free_port(), self.root / f"{n}.log", host=h)
                   for n, h in zip(names, hosts or ("127.0.0.1",) * len(names), strict=True)]
        cluster = ",".join(f"{m.name}={m.peer_url}" for m in members)
        ca = str(self.certs / "ca" / "ca.pem")
        for m in members:
            peer, client = self.certs / f"{m.name}-{peer_cert}", self.certs / f"{m.name}-{client_cert}"
            args = [self.binary, "--name", m.name, "--data-dir", str(self.root / f"{m.name}.etcd"),
                    "--logger", "zap", "--log-outputs", "stderr",
                    "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
                    "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
                    "--initial-cluster", cluster, "--initial-cluster-state", "new",
                    "--initial-cluster-token", f"certkit-{self.root.name}",
                    "--heartbeat-interval", "50", "--election-timeout", "500",
                    "--peer-cert-file", str(peer / "cert.pem"), "--peer-key-file", str(peer / "privkey.pem"),
                    "--peer-trusted-ca-file", ca, "--peer-client-cert-auth",
                    "--cert-file", str(client / "cert.pem"), "--key-file", str(client / "privkey.pem"),
                    "--trusted-ca-file", ca, "--client-cert-auth",
                    f"--enable-grpc-gateway={'true' if gateway else 'false'}", *extra]
            with open(m.log_path, "w") as log:
                m.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            self.members.append(m)
        return members

    def ctl(self, member: Member, *args: str, client: str = "etcdctl", patient: bool = False
            ) -> subprocess.CompletedProcess:
        """etcdctl (API v3) with the issue-client certificate ``client``, as a user runs it; ``patient``: with
        longer dial and command timeouts (a member busy with elections on a loaded machine answers late)."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ETCDCTL_API": "3"}
        return subprocess.run([self.etcdctl, "--endpoints", member.client_url,
                               "--cacert", str(self.certs / "ca" / "ca.pem"),
                               "--cert", str(self.certs / client / "cert.pem"),
                               "--key", str(self.certs / client / "privkey.pem"),
                               "--dial-timeout", "5s" if patient else "1s",
                               "--command-timeout", "10s" if patient else "2s", *args],
                              env=env, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)

    def check_running(self) -> None:
        for m in self.members:
            if m.process.poll() is not None:
                raise AssertionError(f"etcd {m.name} exited {m.process.returncode}:\n{m.log}")

    def stop(self) -> None:
        # One at a time: a leader stopping hands leadership to a live member at once, but waits
        # seconds for one when the others are stopping too.
        for m in self.members:
            if m.process is None:
                continue
            if m.process.poll() is None:
                m.process.terminate()
            wait_or_kill(m.process)


@pytest.fixture
def etcd(tmp_path, certs):
    cluster = Etcd(tmp_path, certs)
    try:
        yield cluster
    finally:
        cluster.stop()


def eventually(etcd: Etcd, attempt, what: str, timeout: float = 30.0):
    """Retry ``attempt`` (returning a CompletedProcess) until it exits 0; the last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = attempt()
        if result.returncode == 0:
            return result
        etcd.check_running()
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {m.name}\n{m.log[-3000:]}" for m in etcd.members)
            raise AssertionError(f"timed out waiting for {what}: {result.stderr}\n{logs}")
        time.sleep(0.1)


def gateway_range(etcd: Etcd, member: Member, key: str) -> dict:
    """The HTTP/JSON gateway's range call (what curl users of /v3/kv/range see), over mutual TLS
    with the etcdctl client certificate."""
    context = ssl.create_default_context(cafile=str(etcd.certs / "ca" / "ca.pem"))
    context.load_cert_chain(etcd.certs / "etcdctl" / "cert.pem", etcd.certs / "etcdctl" / "privkey.pem")
    request = urllib.request.Request(f"{member.client_url}/v3/kv/range", method="POST",
                                     data=json.dumps({"key": b64encode(key.encode()).decode()}).encode())
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return {"http_status": exc.code, **json.loads(exc.read() or b"{}")}


def test_cluster_forms_with_issue_peer_certificates(etcd):
    members = etcd.start(MEMBERS, peer_cert="peer", client_cert="server")
    started = time.monotonic()
    put = eventually(etcd, lambda: etcd.ctl(members[0], "put", "greeting", "from etcd-1"), "a write on etcd-1")
    assert put.stdout.strip() == "OK"
    formed = time.monotonic() - started
    # Read on the other members: a serializable read answers from the member's own copy, so the
    # value is there only if the peers replicated it to etcd-3; a linearizable read on etcd-2.
    local = eventually(etcd, lambda: _read_found(etcd.ctl(members[2], "get", "greeting", "--consistency=s")),
                       "the key in etcd-3's own copy")
    assert local.stdout.splitlines() == ["greeting", "from etcd-1"]
    assert etcd.ctl(members[1], "get", "greeting", "--print-value-only").stdout.strip() == "from etcd-1"
    health = eventually(etcd, lambda: etcd.ctl(members[0], "endpoint", "health", "--cluster"), "three healthy members")
    assert (health.stdout + health.stderr).count("is healthy") == 3, health
    for m in members:
        assert KEY_USAGE not in m.log and "bad certificate" not in m.log, m.log
    print(f"three members formed and took a write in {formed:.1f} s")


def _read_found(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """A get that printed nothing found no key: count that as a failure to retry."""
    if result.returncode == 0 and not result.stdout.strip():
        return subprocess.CompletedProcess(result.args, 1, result.stdout, "key not there yet")
    return result


def test_server_certificates_as_peer_certificates_do_not_form_a_cluster(etcd):
    """Everything as above but the peer certificates: issue-server's, serverAuth only. Each
    member refuses the others' connections, and says why."""
    members = etcd.start(MEMBERS, peer_cert="server", client_cert="server")
    started = time.monotonic()
    while not all(KEY_USAGE in m.log for m in members):
        etcd.check_running()
        assert time.monotonic() < started + 60, "\n".join(m.log[-2000:] for m in members)
        time.sleep(0.1)
    # No write gets through, and three seconds in (six election timeouts; the cluster above forms
    # in about one) there is still no leader.
    put = etcd.ctl(members[0], "put", "greeting", "never stored")
    assert put.returncode != 0 and "deadline exceeded" in put.stderr, put
    time.sleep(max(0.0, started + 3 - time.monotonic()))
    for m in members:
        assert "elected leader" not in m.log, m.log
        log = m.log
        rejections = [json.loads(line) for line in log[:log.rfind("\n") + 1].splitlines()  # whole lines: etcd
                      if line.startswith("{") and '"rejected connection"' in line]  # may be writing the last
        certificate_errors = {r["error"] for r in rejections if "x509" in r["error"]}
        assert certificate_errors == {KEY_USAGE}, rejections[:5]  # the purpose, and nothing else


@pytest.mark.parametrize("client_cert, gateway_works", [("server", False), ("peer", True)])
def test_client_listener_certificate_and_the_json_gateway(etcd, client_cert, gateway_works):
    """One member with the gateway on (etcd's default). Its gRPC API (etcdctl) works with a server
    certificate; its HTTP/JSON gateway dials the member presenting --cert-file as a client
    certificate, which --client-cert-auth refuses unless it carries clientAuth too."""
    (member,) = etcd.start(MEMBERS[:1], peer_cert="peer", client_cert=client_cert, gateway=True)
    eventually(etcd, lambda: etcd.ctl(member, "put", "greeting", "hello"), "a write")
    assert etcd.ctl(member, "get", "greeting", "--print-value-only").stdout.strip() == "hello"
    answer = gateway_range(etcd, member, "greeting")
    if gateway_works:
        assert [b64decode(kv["value"]).decode() for kv in answer["kvs"]] == ["hello"], answer
        assert KEY_USAGE not in member.log
    else:
        assert "kvs" not in answer and answer.get("code") == 14, answer  # gRPC UNAVAILABLE
        assert KEY_USAGE in member.log
