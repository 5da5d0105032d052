"""The ACME server's sixth audit (acme6): a validation outcome refused by a locked inventory, a
certificate's key made an account key, the identifier limit counted before repeats merge, the JWS
``url`` and the query string, the account's orders list (invalid orders, pages), and ``--resolve``
given twice for a name. Each runs real ``certkit acme serve`` processes on loopback, talked to by
the test ACME client over HTTPS."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import josepy as jose
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from test_audit5_acme import _account, _obtain, _own_server, _peer_certificate, _ready, _serial

from acme_client import AcmeError, Client, HTTP01Responder, make_csr, sign
from acme_helpers import listed_serials, module_server, wait_for

NAMES = ("a.acme.test", "b.acme.test", "peer.acme.test")
DUP = "dup.acme.test"


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("acme6")
    # DUP at 127.0.0.2 first, where nothing listens, then (module_server's) at 127.0.0.1.
    setup = module_server(tmp, (*NAMES, DUP), "--resolve", f"{DUP}=127.0.0.2")
    try:
        yield setup
    finally:
        setup.server.stop()
    assert "Traceback" not in setup.server.stderr, setup.server.stderr


def _problem(exc: pytest.ExceptionInfo) -> tuple[int, str, str]:
    return exc.value.status, exc.value.type, exc.value.problem.get("detail", "")


# --- finding 1: a validation outcome the locked inventory refused ------------------------------------
class _LockingResponder(HTTP01Responder):
    """http-01 on 127.0.0.1:``port``: on the server's fetch, another process's connection takes the
    inventory's write lock (BEGIN EXCLUSIVE) for ``hold`` seconds, then the right answer is sent, so
    the server has its outcome while it cannot write it."""

    def __init__(self, port: int, inventory: Path, hold: float) -> None:
        self.inventory, self.hold = inventory, hold
        self.released = threading.Event()
        super().__init__(port)

    def fetched(self) -> None:
        if self.released.is_set():
            return
        taken = threading.Event()
        threading.Thread(target=self._lock, args=(taken,), daemon=True).start()
        taken.wait(30)

    def _lock(self, taken: threading.Event) -> None:
        conn = sqlite3.connect(self.inventory, isolation_level=None, timeout=30)
        conn.execute("BEGIN EXCLUSIVE")
        taken.set()
        time.sleep(self.hold)
        conn.execute("ROLLBACK")
        conn.close()
        self.released.set()


def _challenge_status(inventory: Path, challenge_url: str) -> str:
    with sqlite3.connect(inventory) as conn:
        return conn.execute("SELECT status FROM acme_challenges WHERE id = ?",
                            (challenge_url.rsplit("/", 1)[1],)).fetchone()[0]


def test_a_validation_outcome_a_locked_inventory_refused_is_written_once_it_is_free(tmp_path: Path) -> None:
    """Another certkit process holds the inventory's write lock (7 s, past the server's 5 s wait)
    while a validation finishes: the challenge is processing meanwhile, and valid by itself soon
    after the lock is let go, without any request from the client (the old server left it
    processing for as long as it ran); the order is then ready, and finalizing it issues."""
    own = _own_server(tmp_path, "lockval.acme.test")
    inventory = own.issuing / "inventory.sqlite3"
    responder = _LockingResponder(own.http_port, inventory, hold=7)
    try:
        c = _account(own.server.directory, own.root)
        order_url, order = c.new_order(own.name)
        (answered,) = c.authorize(order, responder)
        assert answered["status"] == "processing", answered
        assert responder.released.wait(30), "the lock was never taken"
        released = time.monotonic()
        wait_for(lambda: _challenge_status(inventory, answered["url"]) == "valid", timeout=60, interval=0.2,
                 what="the challenge's outcome to be written with no client request")
        assert time.monotonic() - released < 40  # its own retry (every 2 s), not the 60 s maintenance round
        assert c.get(order_url)["status"] == "ready"
        done = c.finalize(order, make_csr(ec.generate_private_key(ec.SECP256R1()), [own.name])).json()
        assert done["status"] == "valid", done
        serial = _serial(x509.load_pem_x509_certificates(c.certificate(done["certificate"]).encode())[0])
        assert listed_serials(own.env)[serial] == "valid"
    finally:
        responder.close()
        own.server.stop()
    assert "its outcome cannot be written now" in own.server.stderr, own.server.stderr
    assert "Traceback" not in own.server.stderr, own.server.stderr


# --- finding 2: a certificate's key as an account key ------------------------------------------------
def _key_change(c: Client, new_key, new_alg):
    url = c.directory["keyChange"]
    inner = sign({"account": c.kid, "oldKey": c.key.public_key().to_json()}, new_key, new_alg, url=url, nonce=None)
    return c.post(url, inner)


def test_a_certificates_key_never_becomes_an_account_key(acme, tmp_path: Path) -> None:
    """newAccount signed by the key of a certificate this CA issued (through ACME, or by the
    operator's sign-csr), and a keyChange to it, are badPublicKey naming the certificate; the
    account keeps its key, and the certificate's holder renews keeping its key."""
    cert_key = ec.generate_private_key(ec.SECP256R1())
    with HTTP01Responder(acme.http_port) as responder:
        owner = _account(acme.server.directory, acme.root)
        cert = _obtain(owner, responder, cert_key, "a.acme.test")
        jwk = jose.JWKEC(key=cert_key)
        stranger = Client(acme.server.directory, acme.root)
        with pytest.raises(AcmeError) as exc:
            stranger.post(stranger.directory["newAccount"], {"termsOfServiceAgreed": True}, key=jwk, alg=jose.ES256,
                          use_jwk=True)
        status, kind, detail = _problem(exc)
        assert (status, kind) == (400, "badPublicKey"), detail
        assert f"certificate {_serial(cert)}" in detail and "RFC 8555 11.1" in detail
        other = _account(acme.server.directory, acme.root)
        with pytest.raises(AcmeError) as exc:
            _key_change(other, jwk, jose.ES256)
        assert _problem(exc)[:2] == (400, "badPublicKey"), exc.value.problem
        assert other.get(other.kid)["status"] == "valid"  # still its old key
        # the certificate's holder renews keeping its key, as certbot/lego --reuse-key do
        renewed = _obtain(owner, responder, cert_key, "a.acme.test")
        assert renewed.public_key() == cert.public_key() and _serial(renewed) != _serial(cert)
    # the key of a certificate the operator issued outside ACME
    peer_key = ec.generate_private_key(ec.SECP256R1())
    peer = _peer_certificate(acme, tmp_path, peer_key, "peer.acme.test")
    with pytest.raises(AcmeError) as exc:
        stranger.post(stranger.directory["newAccount"], {"termsOfServiceAgreed": True},
                      key=jose.JWKEC(key=peer_key), alg=jose.ES256, use_jwk=True)
    status, kind, detail = _problem(exc)
    assert (status, kind) == (400, "badPublicKey") and f"peer certificate {peer}" in detail, detail


# --- finding 3: the identifier limit, after merging --------------------------------------------------
def test_the_identifier_limit_counts_names_once_merged(acme) -> None:
    """100 distinct names plus a repeat and a case variant make an order of 100; 101 distinct are
    refused, counted as such."""
    c = _account(acme.server.directory, acme.root)
    names = [{"type": "dns", "value": f"n{i}.acme.test"} for i in range(100)]
    extra = [{"type": "dns", "value": "n0.acme.test"}, {"type": "dns", "value": "N1.acme.test"}]
    order = c.post(c.directory["newOrder"], {"identifiers": names + extra})
    assert order.status_code == 201, order.text
    assert order.json()["identifiers"] == names
    with pytest.raises(AcmeError) as exc:
        c.post(c.directory["newOrder"], {"identifiers": [*names, {"type": "dns", "value": "n100.acme.test"}]})
    status, kind, detail = _problem(exc)
    assert (status, kind) == (400, "rejectedIdentifier") and "not 101" in detail, detail


# --- finding 4: the JWS url and the query string -----------------------------------------------------
def test_the_jws_url_is_the_request_url_query_included(acme) -> None:
    """A request sent to new-order?x=1 whose JWS url omits the query is unauthorized (it was
    accepted); one whose url carries it passes the check, and is refused because new-order takes
    no query (it was unauthorized, for naming the exact URL)."""
    c = _account(acme.server.directory, acme.root)
    url = c.directory["newOrder"]
    payload = {"identifiers": [{"type": "dns", "value": "a.acme.test"}]}
    response = c.send(f"{url}?x=1", sign(payload, c.key, c.alg, url=url, nonce=c.nonce(), kid=c.kid), check=False)
    assert response.status_code == 403, response.text
    assert response.json()["type"] == "urn:ietf:params:acme:error:unauthorized"
    response = c.send(f"{url}?x=1", sign(payload, c.key, c.alg, url=f"{url}?x=1", nonce=c.nonce(), kid=c.kid),
                      check=False)
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "urn:ietf:params:acme:error:malformed"
    assert "takes no query string" in response.json()["detail"]


# --- finding 5: the account's orders list --------------------------------------------------------------
def _orders_page(c: Client, url: str) -> tuple[list[str], str | None]:
    response = c.post(url)
    links = response.headers.get("Link", "")
    following = [part.split(">", 1)[0].lstrip(" <") for part in links.split(",") if 'rel="next"' in part]
    return response.json()["orders"], (following[0] if following else None)


def test_the_orders_list_leaves_out_invalid_orders_and_pages(acme) -> None:
    """An order made invalid (its authorization deactivated) and one past its expiry are not
    listed; 101 pending orders come as a page of 100 with a Link rel="next" and a page of 1
    without one, newest first; a cursor naming no order of the account is malformed."""
    c = _account(acme.server.directory, acme.root)
    bad_url, bad = c.new_order("b.acme.test")
    assert c.post(bad["authorizations"][0], {"status": "deactivated"}).json()["status"] == "deactivated"
    assert c.get(bad_url)["status"] == "invalid"
    old_url, _old = c.new_order("b.acme.test")
    with sqlite3.connect(acme.issuing / "inventory.sqlite3") as conn:
        conn.execute("UPDATE acme_orders SET expires = '2000-01-01T00:00:00Z' WHERE id = ?",
                     (old_url.rsplit("/", 1)[1],))
    assert c.get(old_url)["status"] == "invalid"
    placed = [c.new_order("b.acme.test")[0] for _ in range(101)]
    listing = c.get(c.kid)["orders"]
    first, following = _orders_page(c, listing)
    assert len(first) == 100 and following == f"{listing}?cursor={first[-1].rsplit('/', 1)[1]}"
    second, after = _orders_page(c, following)
    assert after is None and len(second) == 1
    assert set(first + second) == set(placed) and len(set(first + second)) == 101
    assert bad_url not in first + second and old_url not in first + second
    with pytest.raises(AcmeError) as exc:
        c.post(f"{listing}?cursor=nosuchorder")
    assert _problem(exc)[:2] == (400, "malformed")


# --- finding 6: --resolve NAME=A --resolve NAME=B -----------------------------------------------------
def test_a_name_resolved_twice_has_both_addresses_tried_in_turn(acme) -> None:
    """``--resolve dup=127.0.0.2 --resolve dup=127.0.0.1``: both are kept, in that order (the first
    was dropped), and http-01 connects to the second when the first refuses."""
    assert acme.server.info["resolve"][DUP] == ["127.0.0.2", "127.0.0.1"]
    assert acme.server.info["resolve"]["a.acme.test"] == ["127.0.0.1"]
    with HTTP01Responder(acme.http_port) as responder:  # on 127.0.0.1 only
        c = _account(acme.server.directory, acme.root)
        _order_url, order = _ready(c, responder, DUP)
    assert order["status"] == "ready"
