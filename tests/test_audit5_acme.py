"""The ACME server's fifth audit (acme5): keyCompromise claimed through authorizations, a server
killed between storing a certificate in its order and marking its row, a locked inventory at
finalize, deeply nested JSON, a CSR of a compromised key, and SIGTERM during a finalize. Each
runs real ``certkit acme serve`` processes on loopback."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import josepy as jose
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from test_acme_concurrency import _let_go_once

from certkit.vocabulary import serial_hex

from acme_client import AcmeError, Client, HTTP01Responder, b64, make_csr
from acme_helpers import AcmeServer, listed_serials, make_two_tier, module_server, ports, wait_for
from conftest import PASSPHRASE, run_certkit

NAMES = ("a.acme.test", "b.acme.test", "c.acme.test", "d.acme.test", "peer1.acme.test", "peer2.acme.test")
PAUSE = "signed"  # certkit.testhooks: the certificate is signed, nothing recorded yet
DEEP = b"[" * 3000 + b"]" * 3000  # 6 KB, far below the body limit, far deeper than json's recursion


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("acme5")
    setup = module_server(tmp, NAMES)
    try:
        yield setup
    finally:
        setup.server.stop()
    assert "Traceback" not in setup.server.stderr, setup.server.stderr


def _account(directory: str, root: Path) -> Client:
    c = Client(directory, root)
    c.register()
    return c


def _ready(c: Client, responder, *names: str) -> tuple[str, dict]:
    order_url, order = c.new_order(*names)
    c.authorize(order, responder)
    order = c.wait(order_url)
    assert order["status"] == "ready", order
    return order_url, order


def _obtain(c: Client, responder, key, *names: str) -> x509.Certificate:
    """The certificate ``c`` gets for ``names`` with the certificate key ``key``."""
    order_url, order = _ready(c, responder, *names)
    order = c.finalize(order, make_csr(key, list(names))).json()
    if order["status"] != "valid":
        order = c.wait(order_url, ("valid", "invalid"))
    return x509.load_pem_x509_certificates(c.certificate(order["certificate"]).encode())[0]


def _serial(cert: x509.Certificate) -> str:
    return serial_hex(cert.serial_number)


def _peer_certificate(acme, tmp: Path, key, name: str) -> str:
    """The serial of a peer certificate the operator signs with ``certkit sign-csr --peer`` for ``key``."""
    csr = tmp / f"{name}.csr"
    csr.write_bytes(make_csr(key, [name]))
    run_certkit("sign-csr", csr, "--peer", "--out", tmp / name, env=acme.env, check=True)
    return _serial(x509.load_pem_x509_certificate((tmp / name / "cert.pem").read_bytes()))


def _revoke_body(cert: x509.Certificate, reason: int) -> dict:
    return {"certificate": b64(cert.public_bytes(Encoding.DER)), "reason": reason}


# --- finding 1: keyCompromise through an account's authorizations ----------------------------------------
def test_key_compromise_through_authorizations_is_refused(acme, tmp_path: Path) -> None:
    """An account that only validated the names may not claim keyCompromise (it would revoke every
    certificate of the key, a command-line peer's included): badRevocationReason, nothing revoked.
    Another reason revokes the named certificate alone; the certificate's own key may still claim
    keyCompromise, which reaches every certificate of that key."""
    key1, key2 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    peer1 = _peer_certificate(acme, tmp_path, key1, "peer1.acme.test")
    peer2 = _peer_certificate(acme, tmp_path, key2, "peer2.acme.test")
    with HTTP01Responder(acme.http_port) as responder:
        owner = _account(acme.server.directory, acme.root)
        cert1 = _obtain(owner, responder, key1, "a.acme.test")
        cert2 = _obtain(owner, responder, key2, "b.acme.test")
        holder = _account(acme.server.directory, acme.root)  # never held either key
        _ready(holder, responder, "a.acme.test", "b.acme.test")
    revoke = holder.directory["revokeCert"]
    with pytest.raises(AcmeError) as exc:
        holder.post(revoke, _revoke_body(cert1, 1))
    assert (exc.value.status, exc.value.type) == (400, "badRevocationReason"), exc.value.problem
    assert "keyCompromise must be signed with the certificate's own key" in exc.value.problem["detail"]
    listed = listed_serials(acme.env)
    assert listed[_serial(cert1)] == listed[peer1] == "valid"
    # superseded, through the authorizations: the named certificate only
    assert holder.post(revoke, _revoke_body(cert2, 4)).status_code == 200
    listed = listed_serials(acme.env)
    assert (listed[_serial(cert2)], listed[peer2]) == ("revoked", "valid")
    # signed by the certificate's own key: keyCompromise, for every certificate of the key (as today)
    anyone = Client(acme.server.directory, acme.root)
    response = anyone.post(revoke, _revoke_body(cert1, 1), key=jose.JWKEC(key=key1), alg=jose.ES256, use_jwk=True)
    assert response.status_code == 200
    listed = listed_serials(acme.env)
    assert listed[_serial(cert1)] == listed[peer1] == "revoked"


# --- finding 5: a CSR of a key revoked for keyCompromise ------------------------------------------------
def test_a_csr_of_a_compromised_key_is_bad_csr_and_the_order_stays_ready(acme) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with HTTP01Responder(acme.http_port) as responder:
        c = _account(acme.server.directory, acme.root)
        cert = _obtain(c, responder, key, "c.acme.test")
        anyone = Client(acme.server.directory, acme.root)
        assert anyone.post(anyone.directory["revokeCert"], _revoke_body(cert, 1), key=jose.JWKEC(key=key),
                           alg=jose.ES256, use_jwk=True).status_code == 200
        order_url, order = _ready(c, responder, "c.acme.test")
    with pytest.raises(AcmeError) as exc:
        c.finalize(order, make_csr(key, ["c.acme.test"]))
    assert (exc.value.status, exc.value.type) == (400, "badCSR"), exc.value.problem
    assert "revoked for keyCompromise" in exc.value.problem["detail"]
    assert c.get(order_url)["status"] == "ready"
    # the issuing CA's own key: refused by the pipeline too, the client's mistake as well
    ca_key = serialization.load_pem_private_key((acme.issuing / "ca-key.pem").read_bytes(), PASSPHRASE.encode())
    with pytest.raises(AcmeError) as exc:
        c.finalize(order, make_csr(ca_key, ["c.acme.test"]))
    assert (exc.value.status, exc.value.type) == (400, "badCSR"), exc.value.problem
    assert c.get(order_url)["status"] == "ready"
    # a new key, at once
    done = c.finalize(order, make_csr(ec.generate_private_key(ec.SECP256R1()), ["c.acme.test"])).json()
    assert done["status"] == "valid", done


# --- finding 4: deeply nested JSON --------------------------------------------------------------------
def _post_raw(session: requests.Session, url: str, body: bytes) -> requests.Response:
    return session.post(url, data=body, timeout=30, headers={"Content-Type": "application/jose+json"})


def _assert_malformed(response: requests.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "urn:ietf:params:acme:error:malformed", response.text
    assert response.headers.get("Replay-Nonce")


def test_deeply_nested_json_is_malformed_everywhere(acme) -> None:
    """Outer body, protected header, payload and both halves of an External Account Binding:
    each 400 malformed, and no traceback (RecursionError) in the log."""
    hmac_file = acme.tmp / "eab.key"
    hmac_file.write_text(b64(b"k" * 32) + "\n")
    hmac_file.chmod(0o600)
    eab = AcmeServer("--eab-kid", "team-1", "--eab-hmac-file", hmac_file, env=acme.env)
    try:
        c = Client(acme.server.directory, acme.root)
        session = c.session
        new_account, revoke = c.directory["newAccount"], c.directory["revokeCert"]
        _assert_malformed(_post_raw(session, new_account, DEEP))  # unauthenticated, the JWS itself
        deep_header = json.dumps({"protected": b64(DEEP), "payload": b64(b"{}"), "signature": b64(b"x")})
        _assert_malformed(_post_raw(session, revoke, deep_header.encode()))
        _assert_malformed(c.post(new_account, DEEP, use_jwk=True, check=False))  # a signed, deep payload
        e = Client(eab.directory, acme.root)
        url = e.directory["newAccount"]
        good = b64(json.dumps({"alg": "HS256", "kid": "team-1", "url": url}).encode())
        jwk = b64(json.dumps(e.key.public_key().to_json()).encode())
        for protected, payload in ((b64(DEEP), jwk), (good, b64(DEEP))):
            binding = {"protected": protected, "payload": payload, "signature": b64(b"s" * 32)}
            _assert_malformed(e.post(url, {"termsOfServiceAgreed": True, "externalAccountBinding": binding},
                                     use_jwk=True, check=False))
    finally:
        eab.stop()
    for server in (acme.server, eab):
        assert "RecursionError" not in server.stderr and "Traceback" not in server.stderr, server.stderr


# --- servers of their own: paused inside a finalize, killed, stopped -----------------------------------
def _own_server(tmp: Path, name: str, *, paused: bool = False, extra_env: dict | None = None) -> SimpleNamespace:
    """A two-tier CA and a server on it for ``name`` (paused at ``signed`` when asked)."""
    root, issuing, env = make_two_tier(tmp, permit=("--permit-dns", "acme.test", "--permit-dns", "localhost",
                                                    "--permit-ip", "127.0.0.0/8"))
    (http_port,) = ports(1)
    args = ("--allow-domain", "acme.test", "--http01-port", http_port, "--resolve", f"{name}=127.0.0.1")
    marker = tmp / "pause"
    server_env = dict(env, **(extra_env or {}))
    first = None
    if paused:
        server_env.update(CERTKIT_TEST_PAUSE_AT=PAUSE, CERTKIT_TEST_PAUSE_FILE=str(marker))
        first = _let_go_once(marker)
    server = AcmeServer(*args, env=server_env)
    if first is not None:
        first.join()
    return SimpleNamespace(root=root / "ca.pem", issuing=issuing, env=env, args=args, http_port=http_port,
                           marker=marker, server=server, name=name)


def _finalize_in_background(c: Client, order: dict, name: str) -> tuple[threading.Thread, dict]:
    out: dict = {}
    csr = make_csr(ec.generate_private_key(ec.SECP256R1()), [name])

    def run() -> None:
        started = time.monotonic()
        try:
            out["response"] = c.finalize(order, csr, check=False)
        except requests.RequestException as exc:
            out["error"] = exc
        out["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def _order_row(issuing: Path, order_url: str) -> tuple[str, str | None]:
    with sqlite3.connect(issuing / "inventory.sqlite3") as conn:
        return conn.execute("SELECT status, certificate_serial FROM acme_orders WHERE id = ?",
                            (order_url.rsplit("/", 1)[1],)).fetchone()


# --- finding 3: a locked inventory at finalize ----------------------------------------------------------
@pytest.mark.parametrize("hold", [7, 12])
def test_a_locked_inventory_at_finalize_is_a_503_and_the_order_ready_again(tmp_path: Path, hold: int) -> None:
    """Another certkit writer holds the inventory while a finalize records its certificate: 503
    serverInternal with Retry-After, nothing recorded, the order ready again (at once after 7 s;
    after 12 s its own reset waited out too, and is done by the next request for it), and the
    finalize retried issues."""
    own = _own_server(tmp_path, "lock.acme.test", paused=True)
    try:
        with HTTP01Responder(own.http_port) as responder:
            c = _account(own.server.directory, own.root)
            order_url, order = _ready(c, responder, own.name)
            finalize, out = _finalize_in_background(c, order, own.name)
            wait_for(own.marker.exists, timeout=60, interval=0.02, what="the finalize to be paused")
            lock = sqlite3.connect(own.issuing / "inventory.sqlite3", isolation_level=None)
            lock.execute("BEGIN EXCLUSIVE")
            own.marker.unlink()
            time.sleep(hold)
            lock.execute("ROLLBACK")
            lock.close()
            finalize.join(60)
        response = out["response"]
        assert response.status_code == 503, response.text
        assert response.headers.get("Retry-After"), response.headers
        assert response.json()["type"] == "urn:ietf:params:acme:error:serverInternal"
        assert c.get(order_url)["status"] == "ready"
        retry = _let_go_once(own.marker)  # the retried finalize pauses too
        done = c.finalize(order, make_csr(ec.generate_private_key(ec.SECP256R1()), [own.name])).json()
        retry.join()
        assert done["status"] == "valid", done
        chain = c.certificate(done["certificate"])
        serial = _serial(x509.load_pem_x509_certificates(chain.encode())[0])
        assert listed_serials(own.env)[serial] == "valid"
    finally:
        own.server.stop()
    assert "Traceback" not in own.server.stderr, own.server.stderr


# --- finding 6: SIGTERM during a finalize -----------------------------------------------------------
def test_sigterm_during_a_finalize_lets_it_finish(tmp_path: Path) -> None:
    """A stop stops accepting connections, lets the finalize under way answer its client (valid,
    with a certificate it can use), then exits 143 (SIGTERM's status); the order is never left processing."""
    own = _own_server(tmp_path, "term.acme.test", paused=True)
    try:
        with HTTP01Responder(own.http_port) as responder:
            c = _account(own.server.directory, own.root)
            order_url, order = _ready(c, responder, own.name)
            finalize, out = _finalize_in_background(c, order, own.name)
            wait_for(own.marker.exists, timeout=60, interval=0.02, what="the finalize to be paused")
            own.server.proc.send_signal(signal.SIGTERM)
            port = own.server.info["port"]

            def refused() -> bool:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                except (ConnectionRefusedError, ConnectionResetError):  # reset: it closed while this one queued
                    return True
                except TimeoutError:  # the accept queue is full: on a loaded machine the server has not yet
                    return False  # taken the signal (our own connections filled it); not closed yet
                return False

            wait_for(refused, timeout=30, interval=0.05, what="the listening socket to close")
            assert own.server.proc.poll() is None  # still finishing the finalize
            own.marker.unlink()
            finalize.join(60)
        assert "error" not in out, out
        response = out["response"]
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "valid"
        assert own.server.proc.wait(60) == 128 + signal.SIGTERM  # stopped by itself, once the finalize was answered
    finally:
        own.server.stop()
    status, serial = _order_row(own.issuing, order_url)
    assert status == "valid" and serial
    assert listed_serials(own.env)[serial] == "valid"
    assert "Traceback" not in own.server.stderr, own.server.stderr


# --- finding 2: killed between the order's certificate and the row's marking -----------------------------
KILL_AFTER_STORE = '''
import os, signal
if os.environ.get("CERTKIT_TEST_KILL_AFTER_STORE"):
    from certkit.acme import state

    _complete = state.AcmeState.complete_order

    def complete_order(self, *args, **kwargs):
        done = _complete(self, *args, **kwargs)
        if done:  # the order holds the certificate; its inventory row is still pending
            os.kill(os.getpid(), signal.SIGKILL)
        return done

    state.AcmeState.complete_order = complete_order
'''


def test_a_server_killed_after_the_order_took_its_certificate(tmp_path: Path) -> None:
    """SIGKILL right after the order holds the certificate, before its row is marked: the row is
    settled valid (its client can fetch it), so it is listed, and revocable over ACME and by
    certkit revoke; never 'abandoned' while downloadable."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(KILL_AFTER_STORE)
    name = "kill.acme.test"
    root, issuing, env = make_two_tier(tmp_path, permit=("--permit-dns", "acme.test", "--permit-dns", "localhost",
                                                         "--permit-ip", "127.0.0.0/8"))
    (http_port,) = ports(1)
    args = ("--allow-domain", "acme.test", "--http01-port", http_port, "--resolve", f"{name}=127.0.0.1")
    killed = AcmeServer(*args, env=dict(env, CERTKIT_TEST_KILL_AFTER_STORE="1",
                                        PYTHONPATH=f"{hooks}:{env['PYTHONPATH']}"))
    after = None
    try:
        with HTTP01Responder(http_port) as responder:
            c = _account(killed.directory, root / "ca.pem")
            order_url, order = _ready(c, responder, name)
            with pytest.raises(requests.RequestException):
                c.finalize(order, make_csr(ec.generate_private_key(ec.SECP256R1()), [name]))
        assert killed.proc.wait(30) == -signal.SIGKILL
        status, serial = _order_row(issuing, order_url)
        assert status == "valid" and serial
        assert listed_serials(env)[serial] == "valid"  # settled as delivered, not abandoned
        after = AcmeServer(*args, env=env)
        old_base, new_base = (s.directory.removesuffix("/directory") for s in (killed, after))
        c.kid = c.kid.replace(old_base, new_base)
        c.directory = Client(after.directory, root / "ca.pem").directory
        done = c.get(order_url.replace(old_base, new_base))
        cert = x509.load_pem_x509_certificates(c.certificate(done["certificate"]).encode())[0]
        assert _serial(cert) == serial
        assert c.post(c.directory["revokeCert"], _revoke_body(cert, 4)).status_code == 200
        assert listed_serials(env)[serial] == "revoked"
    finally:
        killed.stop()
        if after is not None:
            after.stop()
            assert "Traceback" not in after.stderr, after.stderr

