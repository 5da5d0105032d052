"""Round thirty-two, peers (second pass): the inventory's truth about kinds, and a peer's two purposes.

1. ``--force`` over the bundle of a certificate of another kind (issue-server etcd-1, then issue-peer etcd-1 --force
   into the same folder; every pair of kinds; sign-csr; a manifest line; the library's write) replaced it without a
   note, and the inventory called the old certificate "renewed" by one of another kind: ``list`` showed
   'valid (renewed)', ``list --json`` gave it ``renewed_by`` and the new one ``renewed_from``, and ``renew OLD``
   answered 'was already renewed as NEW; renew that one'. A server certificate is not renewed by a peer certificate:
   the old one is now 'replaced' (``replaced_by`` / ``replaces`` in JSON), a note says so at ``--force``, and
   ``renew OLD`` says it was replaced, not renewed.
2. ``verify --purpose peer`` was click's "'peer' is not one of 'server', 'client'": a cluster member's certificate,
   read on both sides, took two runs to check. It now checks both purposes with the same chain, name and revocation
   checks, says which purpose failed, and --json gives both sides' verdicts (``purposes``); openssl verify -purpose
   sslserver/sslclient and a mutual-TLS handshake between two members agree with it.
3. The notes on an Ed25519 or a P-521 key in a peer certificate spoke of browsers (Chrome, Firefox), which never read
   one (nor did the note of any peer under an Ed25519 CA); they now say what cluster software does, as run here with
   both sides presenting it: etcd and etcdctl (Go), Redis and redis-cli (OpenSSL), and JDK 17's JSSE (Kafka,
   Elasticsearch) accept it. A server's notes are unchanged.
4. Bulk renewal of peers printed the peer warning after the hooks' output (and after --exec-once's), where issue-peer
   and a batch print it first; it now comes before anything is renewed, counting the peers to renew.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import assert_clean_error, new_ca, openssl, run_certkit

KINDS = ["server", "client", "peer"]
PAIRS = [(a, b) for a in KINDS for b in KINDS if a != b]
NAME = "etcd-1.cluster.internal"


def _listed(env) -> dict[str, dict]:
    ran = run_certkit("list", "--json", env=env, check=True)
    return {row["serial"]: row for row in json.loads(ran.stdout)["certificates"]}


def _serial(folder) -> str:
    ran = openssl("x509", "-noout", "-serial", "-in", str(folder / "cert.pem"))
    return ran.stdout.decode().strip().split("=", 1)[1].upper().lstrip("0") or "0"


def _same(serial: str, other: str) -> bool:
    return serial.lstrip("0") == other.lstrip("0")


def _assert_replaced(env, old: str, new: str, held: str, kind: str, note_text: str) -> None:
    assert f"the bundle replaced held the {held} certificate {old}, not a {kind} certificate: the inventory records " \
           f"it as replaced by this {kind} certificate, not renewed" in " ".join(note_text.split()), note_text
    rows = _listed(env)
    assert rows[old]["replaced_by"] == new and rows[old]["renewed_by"] is None, rows[old]
    assert rows[new]["replaces"] == old and rows[new]["renewed_from"] is None, rows[new]
    table = run_certkit("list", env=env, check=True).stdout
    line = next(line for line in table.splitlines() if line.startswith(old[:16]))
    assert "valid (replaced)" in line and "renewed" not in line, table
    assert_clean_error(run_certkit("renew", old, env=env),
                       f"The {held} certificate {old} was not renewed: its bundle was replaced (--force) with the "
                       f"{kind} certificate {new}")
    # Due for nothing: its bundle is gone (as before), and a renewal of the new one is one of its kind.
    assert old not in _listed_expiring(env)


def _listed_expiring(env) -> set[str]:
    ran = run_certkit("list", "--json", "--expiring", "36500d", env=env, check=True)
    return {row["serial"] for row in json.loads(ran.stdout)["certificates"]}


@pytest.mark.parametrize("held, kind", PAIRS, ids=[f"{a}-then-{b}" for a, b in PAIRS])
def test_force_over_a_bundle_of_another_kind_records_it_replaced_not_renewed(tmp_path, held, kind):
    env = new_ca(tmp_path, "certkit round 32 kinds CA")
    run_certkit(f"issue-{held}", NAME, env=env, cwd=tmp_path, check=True)
    folder = tmp_path / NAME
    old = next(iter(_listed(env)))
    ran = run_certkit(f"issue-{kind}", NAME, "--force", env=env, cwd=tmp_path, check=True)
    new = next(s for s in _listed(env) if s != old)
    assert _same(_serial(folder), new)
    _assert_replaced(env, old, new, held, kind, ran.stdout + ran.stderr)
    # The new one's own renewal is a renewal: same kind, 'renewed', with renewed_from.
    run_certkit("renew", new, env=env, cwd=tmp_path, check=True)
    rows = _listed(env)
    newest = next(s for s in rows if s not in (old, new))
    assert rows[new]["renewed_by"] == newest and rows[newest]["renewed_from"] == new
    assert rows[old]["replaced_by"] == new  # the chain: old replaced by new, new renewed by newest


def test_force_of_the_same_kind_is_a_renewal_as_before(tmp_path):
    env = new_ca(tmp_path, "certkit round 32 kinds CA")
    run_certkit("issue-peer", NAME, env=env, cwd=tmp_path, check=True)
    old = next(iter(_listed(env)))
    ran = run_certkit("issue-peer", NAME, "--force", env=env, cwd=tmp_path, check=True)
    assert "not renewed" not in ran.stdout + ran.stderr
    rows = _listed(env)
    new = next(s for s in rows if s != old)
    assert rows[old]["renewed_by"] == new and rows[old]["replaced_by"] is None
    assert rows[new]["renewed_from"] == old and rows[new]["replaces"] is None


def _csr(tmp_path, name: str):
    csr = tmp_path / f"{name}.csr"
    csr.write_bytes(subprocess.run(
        ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
         str(tmp_path / f"{name}.key"), "-subj", f"/CN={name}"], capture_output=True, check=True, timeout=60).stdout)
    return csr


def test_sign_csr_a_manifest_line_and_the_library_record_it_replaced_too(tmp_path):
    env = new_ca(tmp_path, "certkit round 32 kinds CA")
    out = tmp_path / "b"
    run_certkit("issue-server", "node-1.db.internal", "--out", out / "node-1", env=env, check=True)
    old = next(iter(_listed(env)))
    ran = run_certkit("sign-csr", _csr(tmp_path, "node-1.db.internal"), "--peer", "--out", out / "node-1", "--force",
                      env=env, check=True)
    new = _serial(out / "node-1")
    new = next(s for s in _listed(env) if _same(s, new))
    _assert_replaced(env, old, new, "server", "peer", ran.stdout + ran.stderr)

    run_certkit("issue-client", "node-2.db.internal", "--out", out / "node-2", env=env, check=True)
    old = next(s for s, r in _listed(env).items() if r["folder"] == str(out / "node-2"))
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names,out\npeer,node-2.db.internal,node-2\n")
    ran = run_certkit("issue-batch", manifest, "--out-dir", out, "--force", env=env, check=True)
    new = next(s for s in _listed(env) if _same(s, _serial(out / "node-2")))
    _assert_replaced(env, old, new, "client", "peer", ran.stdout + ran.stderr)


    from certkit.store import CADirectory

    from conftest import PASSPHRASE

    lib = CADirectory(tmp_path / "ca").load(PASSPHRASE.encode())
    first, second = _peer_over_server(lib, tmp_path, "node-3")
    assert any("replaced by this peer certificate, not renewed" in n for n in second.notes), second.notes
    rows = {r["serial"]: r for r in lib.inventory.query()}
    assert rows[first.serial_hex]["replaced_by"] == second.serial_hex
    assert rows[first.serial_hex]["renewed_by"] is None


def test_force_over_another_cas_bundle_and_bulk_renew_by_kind_tell_the_truth(tmp_path):
    """Another CA's bundle replaced: this CA records no succession (its note names the other CA), and the other
    CA's inventory still lists its certificate valid, neither renewed nor replaced. Bulk renew --kind server after a
    server's bundle was replaced by a peer's renews nothing (the server's bundle is gone); --kind peer renews the
    peer, as a renewal of its own kind."""
    other = new_ca(tmp_path / "a", "certkit round 32 other CA")
    env = new_ca(tmp_path / "b", "certkit round 32 kinds CA")
    run_certkit("issue-server", NAME, env=other, cwd=tmp_path, check=True)
    ran = run_certkit("issue-peer", NAME, "--force", env=env, cwd=tmp_path, check=True)
    assert "of another CA (CN=certkit round 32 other CA)" in " ".join((ran.stdout + ran.stderr).split()), ran.stdout
    assert "not renewed" not in ran.stdout + ran.stderr
    [theirs] = _listed(other).values()
    assert theirs["renewed_by"] is None and theirs["replaced_by"] is None and theirs["status"] == "valid"
    [ours] = _listed(env).values()
    assert ours["replaces"] is None and ours["renewed_from"] is None

    run_certkit("issue-server", "etcd-2.cluster.internal", env=env, cwd=tmp_path, check=True)
    run_certkit("issue-peer", "etcd-2.cluster.internal", "--force", env=env, cwd=tmp_path, check=True)
    old, new = (s for s, r in _listed(env).items() if r["subject"] == "CN=etcd-2.cluster.internal")
    old, new = (old, new) if _listed(env)[old]["kind"] == "server" else (new, old)
    ran = run_certkit("renew", "--all", "--kind", "server", "--json", env=env, check=True)
    assert json.loads(ran.stdout)["renewed"] == 0, ran.stdout
    ran = run_certkit("renew", "--all", "--kind", "peer", "--name", "etcd-2*", "--json", env=env, check=True)
    assert json.loads(ran.stdout)["renewed"] == 1, ran.stdout
    rows = _listed(env)
    assert rows[old]["replaced_by"] == new and rows[old]["renewed_by"] is None
    assert rows[new]["renewed_by"] is not None and rows[rows[new]["renewed_by"]]["renewed_from"] == new


# --- 2. verify --purpose peer -----------------------------------------------------------------------------------
MEMBER = ["etcd-1.cluster.internal", "127.0.0.1"]


def _openssl_ok(folder, purpose: str) -> bool:
    return openssl("verify", "-x509_strict", "-purpose", purpose, "-CAfile", str(folder / "ca.pem"),
                   str(folder / "cert.pem")).returncode == 0


def _members_handshake(folder) -> bool:
    """Two members of one cluster on loopback, each presenting ``folder``'s certificate: the listening one as the
    server (demanding a client certificate), the connecting one as the client (checking the server's name)."""
    from certkit.tlscheck import Endpoint, client_context, handshake, server_context

    member = Endpoint(folder / "fullchain.pem", folder / "privkey.pem")
    ca = folder / "ca.pem"
    return handshake(server_context(member, ca), client_context(ca, member), server_hostname="127.0.0.1").accepted


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    root = tmp_path_factory.mktemp("peers32")
    env = new_ca(root, "certkit round 32 cluster CA")
    for kind in KINDS:
        names = MEMBER if kind != "client" else MEMBER[:1]
        run_certkit(f"issue-{kind}", *names, "--out", root / kind, env=env, check=True)
    return root, env


@pytest.mark.parametrize("kind", KINDS)
def test_verify_purpose_peer_checks_both_purposes_as_openssl_and_a_handshake_do(members, kind):
    root, env = members
    folder = root / kind
    sides = {"server": _openssl_ok(folder, "sslserver"), "client": _openssl_ok(folder, "sslclient")}
    ran = run_certkit("verify", folder / "cert.pem", "--purpose", "peer", env=env)
    valid = all(sides.values())
    assert ran.returncode == (0 if valid else 1), (ran.stdout, ran.stderr)
    assert valid == (kind == "peer") == _members_handshake(folder)
    head = f"{'VALID' if valid else 'NOT VALID'} as a TLS peer certificate (server and client)"
    assert head in ran.stdout.splitlines()[0], ran.stdout
    for side, ok in sides.items():  # each side's line is openssl's verdict for that purpose
        assert f"  {side:<9} {'valid' if ok else 'NOT VALID'}" in ran.stdout.splitlines(), ran.stdout
    if not valid:
        failed = next(side for side, ok in sides.items() if not ok)
        usage = "clientAuth" if failed == "client" else "serverAuth"
        assert "Traceback" not in ran.stderr and ran.stderr.count("Error:") == 1
        assert (f"is not valid as a TLS peer certificate (server and client): as a {failed}: this is a {kind} "
                f"certificate: it has no {usage} usage.") in ran.stderr, ran.stderr
    data = json.loads(run_certkit("verify", folder / "cert.pem", "--purpose", "peer", "--json", env=env).stdout)
    assert data["purpose"] == "peer" and data["valid"] is valid
    assert {side: v["valid"] for side, v in data["purposes"].items()} == sides
    assert [v["purpose"] for v in data["purposes"].values()] == ["server", "client"]
    assert "purposes" not in json.loads(run_certkit("verify", folder / "cert.pem", "--purpose", "server", "--json",
                                                    env=env).stdout)


def test_verify_purpose_peer_checks_the_name_and_says_a_shared_reason_once(tmp_path):
    env = new_ca(tmp_path, "certkit round 32 cluster CA")
    run_certkit("issue-peer", *MEMBER, "--out", tmp_path / "peer", env=env, check=True)
    cert = tmp_path / "peer" / "cert.pem"
    ok = run_certkit("verify", cert, "--purpose", "peer", "--name", "127.0.0.1", env=env)
    assert ok.returncode == 0 and "name      127.0.0.1: matches" in ok.stdout, ok.stdout
    # Standard input is read once and judged for both sides (it was read twice: 'standard input is empty').
    for subprocess_run in (False, True):
        piped = run_certkit("verify", "-", "--purpose", "peer", "--name", "127.0.0.1", env=env, input=cert.read_text(),
                            subprocess=subprocess_run)
        assert piped.returncode == 0 and "VALID as a TLS peer certificate" in piped.stdout, (piped.stdout, piped.stderr)
    # So is a pipe (bash's <(cat cert.pem)), given as the certificate and as --ca-file: a FIFO written once.
    import os
    import threading

    fifos = {}
    for name, source in (("cert", cert), ("ca", tmp_path / "peer" / "ca.pem")):
        fifos[name] = tmp_path / f"{name}.fifo"
        os.mkfifo(fifos[name])
        threading.Thread(target=fifos[name].write_bytes, args=(source.read_bytes(),), daemon=True).start()
    piped = run_certkit("verify", fifos["cert"], "--purpose", "peer", "--ca-file", fifos["ca"], env=env,
                        subprocess=True)
    assert piped.returncode == 0 and "VALID as a TLS peer certificate" in piped.stdout, (piped.stdout, piped.stderr)
    wrong = run_certkit("verify", cert, "--purpose", "peer", "--name", "etcd-2.cluster.internal", env=env)
    assert wrong.returncode == 1 and "as a server: not valid for name etcd-2.cluster.internal" in wrong.stderr
    assert "as a client: not valid for name etcd-2.cluster.internal" in wrong.stderr
    assert_clean_error(run_certkit("verify", cert, "--purpose", "peer", "--name", "https://0.0.0.0:2380", env=env),
                       "--name")
    run_certkit("revoke", cert, "--reason", "keyCompromise", env=env, check=True)
    revoked = run_certkit("verify", cert, "--purpose", "peer", "--json", env=env)
    data = json.loads(revoked.stdout)
    assert revoked.returncode == 1 and data["valid"] is False
    assert not data["purposes"]["server"]["valid"] and not data["purposes"]["client"]["valid"]
    said = [r for r in data["reasons"] if "revoked" in r]
    assert len(said) == 1 and not said[0].startswith("as a "), data["reasons"]
    # --ca-file: the chain alone, both purposes
    alone = run_certkit("verify", cert, "--purpose", "peer", "--ca-file", tmp_path / "peer" / "ca.pem", env=env)
    assert alone.returncode == 0, alone.stderr


def test_the_library_verifies_a_peer_for_both_purposes(members):
    from cryptography import x509

    from certkit.errors import CertkitError
    from certkit.verify import verify_certificate, verify_path

    root, _env = members
    verdict, _trust = verify_path(root / "server" / "cert.pem", purpose="peer", ca_file=root / "server" / "ca.pem")
    assert not verdict.valid and verdict.purpose == "peer"
    assert verdict.reasons == ["as a client: this is a server certificate: it has no clientAuth usage"]
    assert verdict.purposes["server"]["valid"] and not verdict.purposes["client"]["valid"]
    load = x509.load_pem_x509_certificate
    leaf, ca = load((root / "peer" / "cert.pem").read_bytes()), load((root / "peer" / "ca.pem").read_bytes())
    assert verify_certificate(leaf, purpose="peer", roots=[ca], name="127.0.0.1").valid
    with pytest.raises(CertkitError, match="choose one of: server, client, peer"):
        verify_certificate(leaf, purpose="both", roots=[ca])


# --- 3. the key notes of a peer certificate speak of the cluster software that reads it -------------------------------
ED25519_PEER = ("an Ed25519 key in a peer certificate: etcd and etcdctl (Go), Redis (OpenSSL) and Java 17's JSSE "
                "(Kafka, Elasticsearch) accept it on both sides of a connection; a member on another TLS stack must "
                "support Ed25519 signatures in TLS too")
P521_PEER = ("a P-521 key in a peer certificate: etcd and etcdctl (Go), Redis (OpenSSL) and Java 17's JSSE (Kafka, "
             "Elasticsearch) accept it on both sides of a connection (of browsers, Chrome would not, but no browser "
             "reads a peer certificate)")

ED25519_CA_PEER = ("this CA (or a CA above it) has an Ed25519 key: etcd and etcdctl (Go), Redis (OpenSSL) and Java "
                   "17's JSSE (Kafka, Elasticsearch) accept a peer certificate it signs on both sides of a connection; "
                   "web-PKI verifiers (cryptography's) refuse every certificate under it")

JSSE_MUTUAL = """
import java.io.FileInputStream; import java.security.KeyStore; import java.security.cert.CertificateFactory;
import javax.net.ssl.*;
public class Mutual {
  public static void main(String[] a) throws Exception {
    char[] pw = a[2].toCharArray();
    KeyStore ks = KeyStore.getInstance("PKCS12"); ks.load(new FileInputStream(a[0]), pw);
    KeyManagerFactory kmf = KeyManagerFactory.getInstance("SunX509"); kmf.init(ks, pw);
    KeyStore ts = KeyStore.getInstance("PKCS12"); ts.load(null, null);
    ts.setCertificateEntry("ca",
        CertificateFactory.getInstance("X.509").generateCertificate(new FileInputStream(a[1])));
    TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX"); tmf.init(ts);
    SSLContext ctx = SSLContext.getInstance("TLS"); ctx.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
    SSLServerSocket ss = (SSLServerSocket) ctx.getServerSocketFactory().createServerSocket(
        0, 1, java.net.InetAddress.getLoopbackAddress());
    ss.setNeedClientAuth(true);
    Thread t = new Thread(() -> { try (SSLSocket s = (SSLSocket) ss.accept()) { s.startHandshake();
        System.out.println("server saw " + s.getSession().getPeerPrincipal());
        s.getOutputStream().write(1); s.getOutputStream().flush(); } catch (Exception e) { System.out.println(e); } });
    t.start();
    try (SSLSocket c = (SSLSocket) ctx.getSocketFactory().createSocket("127.0.0.1", ss.getLocalPort())) {
      SSLParameters p = c.getSSLParameters(); p.setEndpointIdentificationAlgorithm("HTTPS"); c.setSSLParameters(p);
      c.startHandshake(); System.out.println("client saw " + c.getSession().getPeerPrincipal());
      c.getInputStream().read();
    } catch (Exception e) { System.out.println(e); }
    t.join();
  }
}
"""


def _note(ran) -> str:
    return " ".join((ran.stdout + ran.stderr).split())


def _etcd_accepts(folder, tmp_path) -> bool:
    """One etcd member serving its client port with ``folder``'s certificate and demanding a client certificate,
    and etcdctl presenting the same certificate: a key is written and read back."""
    from conftest import free_port, require, wait_or_kill

    etcd, etcdctl = require("etcd"), require("etcdctl")
    client, peer = free_port(), free_port()
    data = tmp_path / f"etcd-{folder.name}"
    log = (tmp_path / f"etcd-{folder.name}.log").open("w")
    proc = subprocess.Popen(
        [etcd, "--name", "m1", "--data-dir", data, "--listen-client-urls", f"https://127.0.0.1:{client}",
         "--advertise-client-urls", f"https://127.0.0.1:{client}", "--listen-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}", "--initial-cluster", f"m1=http://127.0.0.1:{peer}",
         "--cert-file", folder / "fullchain.pem", "--key-file", folder / "privkey.pem",
         "--trusted-ca-file", folder / "ca.pem", "--client-cert-auth"], stdout=log, stderr=log)
    try:
        tls = ["--endpoints", f"https://127.0.0.1:{client}", "--cacert", folder / "ca.pem", "--cert",
               folder / "fullchain.pem", "--key", folder / "privkey.pem", "--dial-timeout", "5s"]
        env = {"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}
        import time

        for _ in range(60):
            put = subprocess.run([etcdctl, *tls, "put", "k", folder.name], capture_output=True, text=True, env=env,
                                 timeout=30)
            if put.returncode == 0:
                break
            time.sleep(0.5)
        got = subprocess.run([etcdctl, *tls, "get", "k", "--print-value-only"], capture_output=True, text=True,
                             env=env, timeout=30)
        return put.returncode == 0 and got.stdout.strip() == folder.name
    finally:
        proc.terminate()
        wait_or_kill(proc)
        log.close()


def _redis_accepts(folder, tmp_path, client=None) -> bool:
    """Whether redis-server, requiring client certificates, serving ``folder``'s bundle, takes ``client``'s
    (``folder``'s own by default) in redis-cli's PING."""
    from conftest import free_port, require, wait_or_kill

    client = folder if client is None else client

    server, cli = require("redis-server"), require("redis-cli")
    port = free_port()
    proc = subprocess.Popen([server, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--dir", tmp_path, "--tls-cert-file", folder / "fullchain.pem", "--tls-key-file",
                             folder / "privkey.pem", "--tls-ca-cert-file", folder / "ca.pem", "--tls-auth-clients",
                             "yes"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import time

        for _ in range(40):
            ping = subprocess.run([cli, "-h", "127.0.0.1", "-p", str(port), "--tls", "--cacert", client / "ca.pem",
                                   "--cert", client / "fullchain.pem", "--key", client / "privkey.pem", "ping"],
                                  capture_output=True, text=True, timeout=30)
            if ping.stdout.strip() == "PONG":
                return True
            time.sleep(0.25)
        return False
    finally:
        proc.terminate()
        wait_or_kill(proc)


def _jsse_accepts(folder, tmp_path) -> bool:
    from conftest import require

    java = require("java")
    source = tmp_path / "Mutual.java"
    source.write_text(JSSE_MUTUAL)
    p12 = tmp_path / f"{folder.name}.p12"
    subprocess.run(["openssl", "pkcs12", "-export", "-in", folder / "fullchain.pem", "-inkey", folder / "privkey.pem",
                    "-passout", "pass:peers32", "-out", p12], check=True, capture_output=True, timeout=60)
    ran = subprocess.run([java, source, p12, folder / "ca.pem", "peers32"], capture_output=True, text=True,
                         timeout=180)
    return ran.stdout.splitlines()[-2:] in (["client saw CN=etcd-1.cluster.internal",
                                             "server saw CN=etcd-1.cluster.internal"],
                                            ["server saw CN=etcd-1.cluster.internal",
                                             "client saw CN=etcd-1.cluster.internal"])


@pytest.fixture(scope="module")
def keyed_peers(tmp_path_factory):
    root = tmp_path_factory.mktemp("peers32keys")
    env = new_ca(root, "certkit round 32 keys CA")
    ed = run_certkit("issue-peer", *MEMBER, "--key-type", "ed25519", "--out", root / "ed25519", env=env, check=True)
    key = root / "p521.key"
    csr = subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521", "-nodes",
                          "-keyout", key, "-subj", f"/CN={MEMBER[0]}", "-addext",
                          f"subjectAltName=DNS:{MEMBER[0]},IP:{MEMBER[1]}"], capture_output=True, check=True,
                         timeout=60).stdout
    (root / "p521.csr").write_bytes(csr)
    p521 = run_certkit("sign-csr", root / "p521.csr", "--peer", "--out", root / "p521", env=env, check=True)
    (root / "p521" / "privkey.pem").write_bytes(key.read_bytes())
    ed_env = {**env, "CERTKIT_CA_DIR": str(root / "ed-ca")}
    run_certkit("init-ca", "--name", "certkit round 32 Ed25519 CA", "--key-type", "ed25519", env=ed_env, check=True)
    under = run_certkit("issue-peer", *MEMBER, "--out", root / "edca", env=ed_env, check=True)
    return root, env, {"ed25519": _note(ed), "p521": _note(p521), "edca": _note(under)}


def test_a_peers_ed25519_and_p521_notes_say_what_cluster_software_does(keyed_peers, tmp_path):
    root, env, said = keyed_peers
    assert ED25519_PEER in said["ed25519"] and "browsers" not in said["ed25519"], said["ed25519"]
    assert P521_PEER in said["p521"] and "ERR_SSL" not in said["p521"], said["p521"]
    assert ED25519_CA_PEER in said["edca"] and "browsers" not in said["edca"], said["edca"]
    # A renewal with a new Ed25519 key, and a manifest's peer line, say the same; a server's note is as it was.
    renewed = run_certkit("renew", root / "ed25519", "--rekey", "--key-type", "ed25519", "--out", tmp_path / "r",
                          env=env, check=True)
    assert ED25519_PEER in _note(renewed), renewed.stdout
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names,key_type\npeer,etcd-2.cluster.internal,ed25519\nserver,web.example.test,ed25519\n")
    batch = _note(run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "b", env=env, check=True))
    assert ED25519_PEER in batch and "browsers (Chrome, Firefox) do not take Ed25519" in batch, batch
    server = run_certkit("issue-server", "web2.example.test", "--key-type", "ed25519", "--out", tmp_path / "s",
                         env=env, check=True)
    assert "browsers (Chrome, Firefox) do not take Ed25519" in _note(server) and ED25519_PEER not in _note(server)


@pytest.mark.parametrize("key", ["ed25519", "p521", "edca"])
@pytest.mark.parametrize("peer", ["etcd", "redis", "jsse"])
def test_the_cluster_software_the_notes_name_accepts_such_a_peer_on_both_sides(keyed_peers, tmp_path, key, peer):
    """What the notes claim, run: each side presents the same peer certificate and demands the other's."""
    root, _env, _said = keyed_peers
    accepts = {"etcd": _etcd_accepts, "redis": _redis_accepts, "jsse": _jsse_accepts}[peer]
    assert accepts(root / key, tmp_path), (peer, key)


# --- 4. bulk renewal says the peer warning first ---------------------------------------------------------------
@pytest.mark.parametrize("hooks", [["--exec", "echo HOOK-EACH $CERTKIT_KIND"], ["--exec-once", "echo HOOK-ONCE"]])
def test_bulk_renewal_of_peers_warns_before_the_hooks_run(tmp_path, hooks):
    env = new_ca(tmp_path, "certkit round 32 bulk CA")
    for i in (1, 2):
        run_certkit("issue-peer", f"etcd-{i}.cluster.internal", "--days", "5", "--out", tmp_path / f"p{i}", env=env,
                    check=True)
    run_certkit("issue-server", "web.example.test", "--days", "5", "--out", tmp_path / "s", env=env, check=True)
    ran = run_certkit("renew", "--expiring", "30d", *hooks, env=env, check=True)
    err = ran.stderr
    warning = "2 of the certificates to renew are peer certificates; a peer certificate carries both serverAuth"
    assert err.count(warning) == 1, err
    hook = "HOOK-EACH" if hooks[0] == "--exec" else "HOOK-ONCE"
    assert hook in err and err.index(warning) < err.index(hook), err
    assert "Renewed 3 of 3" in ran.stdout
    # Nothing due: not a word (cron); a server alone: no peer warning.
    assert run_certkit("renew", "--expiring", "1d", env=env, check=True).stderr == ""
    alone = run_certkit("renew", "--all", "--kind", "server", env=env, check=True)
    assert "peer" not in alone.stderr, alone.stderr


def test_every_message_of_a_successor_says_replaced_for_one_of_another_kind(tmp_path):
    """The same lie elsewhere: writing the replaced IssuedCert again said 'was renewed as PEER; write that one
    instead' (write a peer where a server was wanted), and a bulk run whose planned server was replaced meanwhile
    said 'another command renewed it as PEER'. Both now say replaced, not renewed."""

    from certkit.errors import CannotRenew
    from certkit.fleet.plan import Selection, changed_meanwhile, plan_fleet
    from certkit.store import CADirectory

    from conftest import PASSPHRASE

    env = new_ca(tmp_path, "certkit round 32 messages CA")
    lib = CADirectory(tmp_path / "ca").load(PASSPHRASE.encode())
    first, second = _peer_over_server(lib, tmp_path, "node-1")
    said = (rf"The server certificate {first.serial_hex} was replaced \(--force over its bundle\) by the peer "
            rf"certificate {second.serial_hex}, not renewed; .*issue a new server certificate instead\.$")
    with pytest.raises(CannotRenew, match=said):
        first.write(tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()

    run_certkit("issue-server", "node-2.db.internal", "--days", "5", "--out", tmp_path / "node-2", env=env, check=True)
    plan = plan_fleet(lib, Selection(expiring=__import__("datetime").timedelta(days=30)))
    [serial] = plan.todo
    run_certkit("issue-peer", "node-2.db.internal", "--force", "--out", tmp_path / "node-2", env=env, check=True)
    skipped = changed_meanwhile(lib, serial)
    assert skipped is not None and skipped.error.startswith("another command replaced it (--force over its bundle) by "
                                                            "the peer certificate "), skipped.error
    assert "not renewed while this run went on" in skipped.error


@pytest.mark.both_inventories
def test_replaced_not_renewed_on_either_inventory(tmp_path, ca_dir, ca_env):
    """The same truth from an SQLite and a PostgreSQL inventory (the ca_env fixture's [postgresql] twin)."""
    run_certkit("issue-server", NAME, env=ca_env, cwd=tmp_path, check=True)
    old = next(iter(_listed(ca_env)))
    ran = run_certkit("issue-peer", NAME, "--force", env=ca_env, cwd=tmp_path, check=True)
    new = next(s for s in _listed(ca_env) if s != old)
    _assert_replaced(ca_env, old, new, "server", "peer", ran.stdout + ran.stderr)


def _peer_over_server(lib, tmp_path, host: str):
    """Through the library: a server certificate for HOST.db.internal written to tmp_path/HOST, then a peer
    certificate for the same name written over it with force=True; (server, peer)."""
    import warnings

    first = lib.issue_server([f"{host}.db.internal"])
    first.write(tmp_path / host)
    second = lib.issue_peer([f"{host}.db.internal"])
    with warnings.catch_warnings(record=True):
        second.write(tmp_path / host, force=True)
    return first, second
