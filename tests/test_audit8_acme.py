"""The ACME server's eighth audit (acme8), against a real ``certkit acme serve`` on loopback (and the
ACME state itself, on SQLite and PostgreSQL, for #4):

1. an empty payload (POST-as-GET) only fetches (an account, order, authorization, challenge,
   certificate, orders list): newAccount, newOrder, revokeCert, keyChange and finalize with one are
   ``malformed``, and no account is created;
2. a payload field of the wrong JSON type is ``malformed`` in account and authorization updates as
   at newAccount (``"termsOfServiceAgreed": "yes"``, ``"status": null``), and so is revokeCert's
   ``"reason": "4"``; a well-typed unknown reason stays ``badRevocationReason``;
3. a request target in absolute form names the authority the answer's URLs are built on (RFC 9112
   3.2.2), and an HTTP/1.1 request without a Host header (or with two) is a 400 problem document;
4. deactivating an account makes its pending and ready orders invalid and their authorizations
   deactivated, in the same transaction (an order being issued is left to finish);
5. an order that expired reads invalid with no ``error`` (it was typed ``malformed``);
and ``--eab-hmac-file`` with a file starting with a UTF-8 byte-order mark is refused naming the mark."""

from __future__ import annotations

import json
import socket
import sqlite3
import ssl
from pathlib import Path

import pytest
from test_acme_concurrency import BACKENDS, _inventory, _state
from test_audit5_acme import _account, _ready

from acme_client import AcmeError, Client, HTTP01Responder, account_key, b64, sign
from acme_helpers import serving
from conftest import run_certkit

NAMES = ("p.acme.test", "r.acme.test", "x.acme.test")


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    yield from serving(tmp_path_factory.mktemp("acme8"), NAMES)


def _refused(call, *args, **kwargs) -> AcmeError:
    with pytest.raises(AcmeError) as refused:
        call(*args, **kwargs)
    return refused.value


def _db(acme) -> sqlite3.Connection:
    return sqlite3.connect(acme.issuing / "inventory.sqlite3")


def _rows(acme, sql: str, *args) -> list[tuple]:
    db = _db(acme)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


# --- 1. an empty payload only fetches -----------------------------------------------------------------
def test_new_account_with_an_empty_payload_is_malformed_and_creates_nothing(acme) -> None:
    stranger = Client(acme.server.directory, acme.root)
    before = _rows(acme, "SELECT count(*) FROM acme_accounts")
    error = _refused(stranger.post, stranger.directory["newAccount"], None, use_jwk=True)
    assert (error.status, error.type) == (400, "malformed"), error.problem
    assert "POST-as-GET" in error.problem["detail"] and error.response.headers.get("Replay-Nonce")
    assert _rows(acme, "SELECT count(*) FROM acme_accounts") == before
    gone = _refused(stranger.post, stranger.directory["newAccount"], {"onlyReturnExisting": True}, use_jwk=True)
    assert gone.type == "accountDoesNotExist"


@pytest.mark.parametrize("resource", ["newOrder", "revokeCert", "keyChange", "finalize"])
def test_resources_that_act_take_no_empty_payload(acme, resource: str) -> None:
    c = _account(acme.server.directory, acme.root)
    url = c.new_order("p.acme.test")[1]["finalize"] if resource == "finalize" else c.directory[resource]
    error = _refused(c.post, url, None)
    assert (error.status, error.type) == (400, "malformed"), error.problem
    assert "takes a JSON object" in error.problem["detail"], error.problem


def test_what_may_be_fetched_still_is(acme) -> None:
    c = _account(acme.server.directory, acme.root)
    order_url, order = c.new_order("p.acme.test")
    assert c.get(c.kid)["status"] == "valid"
    assert c.get(c.kid + "/orders")["orders"] == [order_url]
    assert c.get(order_url)["status"] == "pending"
    authz = c.get(order["authorizations"][0])
    assert c.get(authz["challenges"][0]["url"])["status"] == "pending"  # fetched, not started


# --- 2. fields of the wrong type --------------------------------------------------------------------
@pytest.mark.parametrize("payload", [{"termsOfServiceAgreed": "yes"}, {"termsOfServiceAgreed": None},
                                     {"status": None}, {"status": 1}, {"onlyReturnExisting": "true"}],
                         ids=["tos-string", "tos-null", "status-null", "status-number", "only-existing-string"])
def test_an_account_update_is_as_strict_as_new_account(acme, payload: dict) -> None:
    c = _account(acme.server.directory, acme.root)
    error = _refused(c.post, c.kid, payload)
    assert (error.status, error.type) == (400, "malformed"), error.problem
    assert c.get(c.kid)["status"] == "valid"


@pytest.mark.parametrize("status", [None, 1, ["deactivated"], "valid"])
def test_an_authorization_update_of_the_wrong_type_is_malformed(acme, status) -> None:
    c = _account(acme.server.directory, acme.root)
    authz = c.new_order("r.acme.test")[1]["authorizations"][0]
    error = _refused(c.post, authz, {"status": status})
    assert (error.status, error.type) == (400, "malformed"), error.problem
    assert c.get(authz)["status"] == "pending"


@pytest.mark.parametrize("reason, kind", [("4", "malformed"), (None, "malformed"), (4.5, "malformed"),
                                          (True, "malformed"), (7, "badRevocationReason"),
                                          (99, "badRevocationReason")])
def test_a_revocation_reason_of_the_wrong_type_is_malformed(acme, reason, kind: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    c = _account(acme.server.directory, acme.root)
    der = x509.load_pem_x509_certificate(acme.root.read_bytes()).public_bytes(Encoding.DER)
    error = _refused(c.post, c.directory["revokeCert"], {"certificate": b64(der), "reason": reason})
    assert (error.status, error.type) == (400, kind), error.problem


# --- 3. the request target's authority; Host ----------------------------------------------------------
def _raw(acme, request: bytes) -> tuple[int, dict[str, str], bytes]:
    context = ssl.create_default_context(cafile=str(acme.root))
    context.check_hostname = False
    with socket.create_connection(("127.0.0.1", acme.server.info["port"]), timeout=30) as sock, \
            context.wrap_socket(sock, server_hostname="localhost") as tls:
        tls.sendall(request)
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _sep, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    return int(status.split(" ")[1]), {k.lower(): v.strip() for k, v in (x.split(":", 1) for x in lines)}, body


def test_an_absolute_target_names_the_authority_of_the_urls(acme) -> None:
    port = acme.server.info["port"]
    status, _headers, body = _raw(acme, f"GET https://localhost:{port}/directory HTTP/1.1\r\n"
                                        f"Host: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
    assert status == 200 and json.loads(body)["newNonce"] == f"https://localhost:{port}/acme/new-nonce", body
    # The URL the client addressed is the one its JWS names: a new account over it is created.
    c = Client(acme.server.directory, acme.root)
    key, alg = account_key()
    url = f"https://localhost:{port}/acme/new-account"
    jws = json.dumps(sign({"termsOfServiceAgreed": True}, key, alg, url=url, nonce=c.nonce())).encode()
    status, headers, body = _raw(acme, f"POST {url} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                                       f"Content-Type: application/jose+json\r\nContent-Length: {len(jws)}\r\n"
                                       "Connection: close\r\n\r\n".encode() + jws)
    assert status == 201, body
    assert headers["location"].startswith(f"https://localhost:{port}/acme/acct/"), headers


@pytest.mark.parametrize("target", ["/directory", "https://localhost:{port}/directory"])
@pytest.mark.parametrize("hosts", [[], ["127.0.0.1:{port}", "localhost:{port}"]], ids=["no-host", "two-hosts"])
def test_an_http11_request_needs_one_host_header(acme, target: str, hosts: list[str]) -> None:
    port = acme.server.info["port"]
    lines = "".join(f"Host: {h.format(port=port)}\r\n" for h in hosts)
    status, headers, body = _raw(acme, f"GET {target.format(port=port)} HTTP/1.1\r\n{lines}"
                                       "Connection: close\r\n\r\n".encode())
    assert status == 400 and headers["content-type"] == "application/problem+json", (status, body)
    problem = json.loads(body)
    assert problem["type"].endswith(":malformed") and "Host header" in problem["detail"], problem
    assert headers["replay-nonce"]


def test_an_http10_request_without_host_is_answered(acme) -> None:
    status, _headers, body = _raw(acme, b"GET /directory HTTP/1.0\r\n\r\n")
    assert status == 200 and "newNonce" in json.loads(body)


# --- 4. deactivating an account abandons its open orders ------------------------------------------------
def test_deactivating_an_account_invalidates_its_open_orders(acme) -> None:
    c = _account(acme.server.directory, acme.root)
    pending_url, _pending = c.new_order("p.acme.test")
    with HTTP01Responder(acme.http_port) as responder:
        ready_url, _ready_order = _ready(c, responder, "r.acme.test")
    assert c.post(c.kid, {"status": "deactivated"}).json()["status"] == "deactivated"
    for url in (pending_url, ready_url):
        order_id = url.rsplit("/", 1)[1]
        assert _rows(acme, "SELECT status FROM acme_orders WHERE id = ?", order_id) == [("invalid",)]
        assert {r[0] for r in _rows(acme, "SELECT status FROM acme_authorizations WHERE order_id = ?",
                                    order_id)} == {"deactivated"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_deactivation_abandons_open_orders_in_the_state(tmp_path: Path, request, backend: str) -> None:
    """The statement itself, on both databases: pending and ready orders invalid, every authorization of the
    account still pending or valid deactivated; an order being issued (processing) is left to finish; another
    account's untouched."""
    state = _state(tmp_path, _inventory(request, backend))
    account, _ = state.create_account("thumb", "{}", [], True, None)
    other, _ = state.create_account("other", "{}", [], True, None)
    name = [{"type": "dns", "value": "d.state.test"}]
    pending = state.create_order(account.id, name, ["http-01"])
    orders = {}
    for kind in ("ready", "processing"):
        order = state.create_order(account.id, name, ["http-01"])
        challenge = state.authorization(order.authz_ids[0]).challenges[0].id
        assert state.start_challenge(challenge) and state.finish_challenge(challenge, None)
        orders[kind] = order
    assert state.begin_finalize(orders["processing"].id)
    untouched = state.create_order(other.id, name, ["http-01"])
    assert state.update_account(account.id, deactivate=True).status == "deactivated"
    assert [state.order(o.id).status for o in (pending, orders["ready"], orders["processing"], untouched)] \
        == ["invalid", "invalid", "processing", "pending"]
    assert state.authorization(pending.authz_ids[0]).status == "deactivated"
    assert state.authorization(orders["ready"].authz_ids[0]).status == "deactivated"
    # every authorization of the account still valid, as docs/acme.md says: the order being issued finishes
    assert state.authorization(orders["processing"].authz_ids[0]).status == "deactivated"
    assert state.authorization(untouched.authz_ids[0]).status == "pending"


# --- 5. an expired order carries no error -------------------------------------------------------------
def test_an_expired_order_reads_invalid_with_no_error(acme) -> None:
    from certkit.acme.db import Database
    from certkit.acme.state import AcmeState
    from certkit.inventory import Inventory

    c = _account(acme.server.directory, acme.root)
    url, _order = c.new_order("x.acme.test")
    order_id = url.rsplit("/", 1)[1]
    inventory = acme.issuing / "inventory.sqlite3"
    with Inventory(inventory).db.transaction(write=True) as tx:
        tx.execute("UPDATE acme_orders SET expires = '2020-01-01T00:00:00Z' WHERE id = ?", (order_id,))
    shown = c.get(url)
    assert shown["status"] == "invalid" and shown["expires"] == "2020-01-01T00:00:00Z" and "error" not in shown, shown
    AcmeState(Database(Inventory(inventory))).purge()  # the maintenance round records it
    assert _rows(acme, "SELECT status, error FROM acme_orders WHERE id = ?", order_id) == [("invalid", None)]
    assert "error" not in c.get(url)
    # What an older version's purge recorded is not shown either.
    old = json.dumps({"type": "urn:ietf:params:acme:error:malformed",
                      "detail": "The order expired before it was finalized.", "status": 400})
    with Inventory(inventory).db.transaction(write=True) as tx:
        tx.execute("UPDATE acme_orders SET error = ? WHERE id = ?", (old, order_id))
    assert "error" not in c.get(url)


# --- the EAB HMAC file with a byte-order mark ----------------------------------------------------------
def test_an_eab_hmac_file_with_a_byte_order_mark_is_refused_naming_it(tmp_path: Path) -> None:
    hmac_file = tmp_path / "eab.key"
    hmac_file.write_bytes("\ufeff".encode() + b"c2VjcmV0LWtleS1vZi1hdC1sZWFzdC0xNi1ieXRlcw\n")
    hmac_file.chmod(0o600)
    proc = run_certkit("acme", "serve", "--port", "0", "--eab-kid", "team-1", "--eab-hmac-file", hmac_file,
                       "--ca-dir", tmp_path / "none")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "byte-order mark" in proc.stderr and str(hmac_file) in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
