"""The ACME server's third audit (acme3): a locked inventory answered promptly, External Account
Binding checked on every request, every refusal of a request's length with a nonce, a body on
any method read (never a second request), a directory URL the server's certificate covers,
--allow-domain/--allow-ip within the CA's name constraints, and expired authorizations."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from acme_client import AcmeError, Client, HTTP01Responder, b64, sign
from acme_helpers import AcmeServer, listed_serials, make_two_tier, module_server
from conftest import assert_clean_error

NAMES = ("a.acme.test", "b.acme.test", "c.acme.test")
HMAC_KEYS = {"team-1": b"1" * 32, "team-2": b"2" * 32}
START_LIMIT = 30  # a server that starts where it must refuse is killed after this many seconds


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    """An open server and an EAB-only server (key id team-1) on one CA, as the audit ran them."""
    tmp = tmp_path_factory.mktemp("acme3")
    setup = module_server(tmp, NAMES)
    setup.key_files = {}
    for kid, key in HMAC_KEYS.items():
        setup.key_files[kid] = tmp / f"{kid}.key"
        setup.key_files[kid].write_text(b64(key) + "\n")
        setup.key_files[kid].chmod(0o600)
    try:
        setup.eab = AcmeServer("--eab-kid", "team-1", "--eab-hmac-file", setup.key_files["team-1"], env=setup.env)
    except BaseException:
        setup.server.stop()
        raise
    try:
        yield setup
    finally:
        setup.eab.stop()
        setup.server.stop()
    for server in (setup.server, setup.eab):
        assert "Traceback" not in server.stderr, server.stderr


def _session(acme) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
    session.verify = str(acme.root)
    return session


def _refused(call, *args, **kwargs) -> AcmeError:
    with pytest.raises(AcmeError) as exc:
        call(*args, **kwargs)
    return exc.value


# --- finding 1: a locked inventory ---------------------------------------------------------------------
def test_a_locked_inventory_is_a_prompt_503(acme) -> None:
    """Another certkit process holding the inventory's write lock: a POST gets 503 serverInternal with
    Retry-After after the server's short wait (5 s), newNonce (which writes nothing, acme7 #3) and the
    directory their 200, each well inside a client's timeout (the inventory's own 60 s wait, twice,
    outlasted them all)."""
    c = Client(acme.server.directory, acme.root)
    c.register()
    nonce = c.nonce()
    new_order = c.directory["newOrder"]
    body = json.dumps(sign({"identifiers": [{"type": "dns", "value": "a.acme.test"}]}, c.key, c.alg, url=new_order,
                           nonce=nonce, kid=c.kid))

    def timed(call):
        started = time.monotonic()
        response = call(timeout=30)
        return response, time.monotonic() - started

    holder = sqlite3.connect(acme.issuing / "inventory.sqlite3", isolation_level=None, timeout=30)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with ThreadPoolExecutor(3) as pool:
            nonce_answer = pool.submit(timed, lambda **kw: _session(acme).head(c.directory["newNonce"], **kw))
            directory = pool.submit(timed, lambda **kw: _session(acme).get(acme.server.directory, **kw))
            order = pool.submit(timed, lambda **kw: _session(acme).post(
                new_order, data=body, headers={"Content-Type": "application/jose+json"}, **kw))
            answers = [nonce_answer.result(), directory.result(), order.result()]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    for response, took in answers:
        assert took < 20, (response.request.method, response.request.url, took)
    (head, _), (listing, _), (posted, _) = answers
    assert head.status_code == 200 and head.headers["Replay-Nonce"], head.headers
    assert listing.status_code == 200 and listing.json()["newNonce"] == c.directory["newNonce"]
    assert posted.status_code == 503 and posted.headers["Retry-After"] == "5", posted.text
    assert posted.json()["type"] == "urn:ietf:params:acme:error:serverInternal"
    assert "database is unavailable" in posted.json()["detail"]
    assert 'rel="index"' in posted.headers["Link"]
    acme.server.wait_for_log("stayed locked by another certkit process for 5 s")
    assert c.new_order("a.acme.test")[1]["status"] == "pending"  # the lock gone, the server answers again


# --- finding 2: External Account Binding on every request -------------------------------------------------
def _binding(c: Client, kid: str) -> dict:
    protected = b64(json.dumps({"alg": "HS256", "kid": kid, "url": c.directory["newAccount"]}).encode())
    payload = b64(json.dumps(c.key.public_key().to_json()).encode())
    mac = hmac.new(HMAC_KEYS[kid], f"{protected}.{payload}".encode(), hashlib.sha256).digest()
    return {"protected": protected, "payload": payload, "signature": b64(mac)}


def _same_account(c: Client, directory: str, root) -> Client:
    """``c``'s account key talking to another server on the same CA (its account URL there)."""
    other = Client(directory, root)
    other.key, other.alg = c.key, c.alg
    other.kid = directory.rsplit("/", 1)[0] + "/acme/acct/" + c.kid.rsplit("/", 1)[1]
    return other


def test_an_eab_server_refuses_an_account_without_a_binding(acme) -> None:
    """An account registered on the open server shares the CA's inventory with the EAB server,
    which refuses it on every request until its key registers there with a binding."""
    opened = Client(acme.server.directory, acme.root)
    assert opened.register().status_code == 201
    c = _same_account(opened, acme.eab.directory, acme.root)
    new_account, new_order = c.directory["newAccount"], c.directory["newOrder"]
    identifiers = {"identifiers": [{"type": "dns", "value": "b.acme.test"}]}
    for error in (_refused(c.post, new_account, {"onlyReturnExisting": True}, use_jwk=True),
                  _refused(c.post, new_account, {"termsOfServiceAgreed": True}, use_jwk=True),
                  _refused(c.post, c.kid),
                  _refused(c.post, new_order, identifiers)):
        # 403 (was 401, which HTTP says must come with a WWW-Authenticate scheme that EAB is not)
        assert error.status == 403 and error.type == "externalAccountRequired", error.problem
        assert "no External Account Binding" in error.problem["detail"], error.problem
    assert opened.new_order("b.acme.test")[1]["status"] == "pending"  # the open server serves it still
    bound = c.post(new_account, {"termsOfServiceAgreed": True, "externalAccountBinding": _binding(c, "team-1")},
                   use_jwk=True)
    assert bound.status_code == 200 and bound.headers["Location"] == c.kid
    assert c.post(new_order, identifiers).status_code == 201
    assert c.post(new_account, {"onlyReturnExisting": True}, use_jwk=True).headers["Location"] == c.kid


def test_an_account_bound_to_a_key_id_no_longer_enrolled_is_refused(acme) -> None:
    c = Client(acme.eab.directory, acme.root)
    assert c.register(externalAccountBinding=_binding(c, "team-1")).status_code == 201
    with AcmeServer("--eab-kid", "team-2", "--eab-hmac-file", acme.key_files["team-2"], env=acme.env) as rotated:
        moved = _same_account(c, rotated.directory, acme.root)
        for error in (_refused(moved.post, moved.directory["newAccount"], {"onlyReturnExisting": True},
                               use_jwk=True),
                      _refused(moved.post, moved.kid),
                      _refused(moved.new_order, "c.acme.test")):
            assert error.status == 403 and error.type == "unauthorized", error.problem
            assert "'team-1', which this server does not enroll" in error.problem["detail"], error.problem
    assert c.new_order("c.acme.test")[1]["status"] == "pending"  # team-1's server serves it


# --- findings 3 and 4: the request's length, and its body --------------------------------------------------
def _exchange(acme, data: bytes, quiet: float = 3.0) -> bytes:
    """Send ``data`` over one TLS connection; every byte the server answers until it closes (or is
    quiet for ``quiet`` seconds)."""
    context = ssl.create_default_context(cafile=str(acme.root))
    host, port = acme.server.directory.split("/")[2].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock, \
            context.wrap_socket(sock, server_hostname=host) as tls:
        tls.sendall(data)
        tls.settimeout(quiet)
        answer = b""
        try:
            while chunk := tls.recv(65536):
                answer += chunk
        except TimeoutError:
            pass
    return answer


def _first(answer: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return status, headers, body[:int(headers.get("content-length", 0))]


@pytest.mark.parametrize("method, length_headers, status", [
    ("POST", b"Transfer-Encoding: chunked\r\n", 411),
    ("POST", b"Content-Length: 70000\r\n", 413),
    ("GET", b"Content-Length: 70000\r\n", 413),
    ("POST", b"Content-Length: -1\r\n", 400),
    ("POST", b"Content-Length: abc\r\n", 400),
    ("POST", b"Content-Length: +5\r\n", 400),
    ("POST", b"Content-Length: 5\r\nContent-Length: 6\r\n", 400),
], ids=["chunked", "too-large", "too-large-get", "negative", "not-a-number", "signed", "two-lengths"])
def test_refusals_of_the_length_carry_a_nonce_and_the_index_link(acme, method: str, length_headers: bytes,
                                                                   status: int) -> None:
    request = (f"{method} /acme/new-order HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/jose+json\r\n"
               .encode() + length_headers + b"\r\n")
    line, headers, body = _first(_exchange(acme, request))
    assert line.startswith(f"HTTP/1.1 {status} "), line
    problem = json.loads(body)
    assert problem["type"] == "urn:ietf:params:acme:error:malformed" and problem["status"] == status, problem
    assert headers["replay-nonce"] and 'rel="index"' in headers["link"], headers
    assert headers["connection"] == "close", headers
    if status == 400:
        assert "is not one number of bytes" in problem["detail"], problem


SMUGGLED = b"HEAD /acme/new-nonce HTTP/1.1\r\nHost: smuggled.example\r\n\r\n"


@pytest.mark.parametrize("method, path, status", [("GET", "/directory", 200), ("HEAD", "/directory", 200),
                                                  ("DELETE", "/acme/new-order", 405)])
def test_a_body_on_any_method_is_never_a_second_request(acme, method: str, path: str, status: int) -> None:
    """The declared body is read (and ignored), so its bytes are not served as a request of their
    own; the next request on the connection is answered as usual."""
    data = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(SMUGGLED)}\r\n\r\n".encode()
            + SMUGGLED + b"GET /directory HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    answer = _exchange(acme, data)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) [A-Za-z ]+\r\n", answer)
    assert statuses == [str(status).encode(), b"200"], answer
    assert b"smuggled" not in answer, answer


# --- findings 5 and 6: what the server may advertise ---------------------------------------------------------
def _must_refuse(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``certkit acme serve ARGS`` as a process, which must exit by itself (killed after START_LIMIT seconds)."""
    try:
        return subprocess.run([sys.executable, "-m", "certkit", "acme", "serve", "--port", "0", *args], env=env,
                              capture_output=True, text=True, timeout=START_LIMIT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"certkit acme serve {' '.join(args)} ran instead of refusing: {exc.stdout}") from None


@pytest.mark.parametrize("args, fragment", [
    (["--host", "::1"], "may not sign a server certificate for ::1 (its name constraints), so no client could "
                        "verify this server at the address it listens on (::1); listen with --host on a name or "
                        "address it permits, such as localhost or 127.0.0.1."),
    (["--allow-domain", "outside.com"], "--allow-domain outside.com: 'outside.com' is outside the name constraints "
                                        "of CA 'ACME Test Issuing'"),
    (["--allow-domain", "test"], "--allow-domain test: 'test' is outside the name constraints"),
    (["--allow-ip", "10.0.0.0/8"], "--allow-ip 10.0.0.0/8: '10.0.0.0/8' is not within the name constraints of CA "
                                   "'ACME Test Issuing' (permitted: acme.test, localhost, 127.0.0.0/8)."),
    (["--allow-ip", "126.0.0.0/7"], "--allow-ip 126.0.0.0/7: '126.0.0.0/7' is not within the name constraints"),
    (["--allow-ip", "::1/128"], "--allow-ip ::1/128: '::1/128' is not within the name constraints"),
], ids=["host-ipv6", "domain-outside", "domain-wider", "ip-outside", "ip-wider", "ip-other-version"])
def test_what_the_ca_may_not_sign_is_refused_at_start(acme, args: list[str], fragment: str) -> None:
    """An address to listen on, or a name to issue for, outside the CA's name constraints: one
    Error: line, and no server certificate issued."""
    before = listed_serials(acme.env)
    assert_clean_error(_must_refuse(acme.env, *args), fragment, 1)
    assert listed_serials(acme.env) == before


def test_a_name_only_the_ca_refuses(acme) -> None:
    """Without --allow-domain the server orders any name the CA may sign; one outside the CA's name
    constraints is a rejectedIdentifier that says so (the EAB server runs without --allow-domain)."""
    c = Client(acme.eab.directory, acme.root)
    c.register(externalAccountBinding=_binding(c, "team-1"))
    identifier = {"type": "dns", "value": "x.example.com"}
    error = _refused(c.post, c.directory["newOrder"], {"identifiers": [identifier]})
    assert error.type == "rejectedIdentifier", error.problem
    assert "'x.example.com' is outside the name constraints of CA 'ACME Test Issuing'" in error.problem["detail"]
    assert error.problem["subproblems"][0]["identifier"] == identifier


def test_the_directory_url_names_what_the_certificate_covers(tmp_path) -> None:
    """A CA that permits the name localhost but no IP address: the server listening on localhost
    says https://localhost:PORT/directory, which verifies (it said the bound address, 127.0.0.1,
    which its certificate does not cover); listening on 127.0.0.1 it refuses to start."""
    root, issuing, env = make_two_tier(tmp_path, permit=("--permit-dns", "localhost", "--permit-dns", "acme.test"))
    assert_clean_error(_must_refuse(env, "--host", "127.0.0.1"), "may not sign a server certificate for 127.0.0.1", 1)
    with AcmeServer("--host", "localhost", env=env) as server:
        assert server.directory == f"https://localhost:{server.info['port']}/directory", server.info
        session = requests.Session()
        session.trust_env = False
        session.verify = str(root / "ca.pem")
        assert session.get(server.directory, timeout=10).json()["newNonce"].startswith("https://localhost:")


# --- finding 7: expired authorizations -----------------------------------------------------------------------------
def _backdate(acme, authz_url: str) -> None:
    from certkit.inventory import Inventory

    with Inventory(acme.issuing / "inventory.sqlite3").db.transaction(write=True) as tx:
        tx.execute("UPDATE acme_authorizations SET expires = '2020-01-01T00:00:00Z' WHERE id = ?",
                   (authz_url.rsplit("/", 1)[1],))


def test_an_authorization_past_its_expiry_reads_expired(acme) -> None:
    """RFC 8555 7.1.6: valid (and pending) authorizations become expired at their expiry; the
    maintenance round records it, and an expired one can no longer be deactivated."""
    from certkit.acme.db import Database
    from certkit.acme.state import AcmeState
    from certkit.inventory import Inventory

    c = Client(acme.server.directory, acme.root)
    c.register()
    url, order = c.new_order("a.acme.test")
    with HTTP01Responder(acme.http_port) as responder:
        c.authorize(order, responder)
        assert c.wait(url)["status"] == "ready"
    valid = order["authorizations"][0]
    pending = c.new_order("b.acme.test")[1]["authorizations"][0]
    for authz in (valid, pending):
        _backdate(acme, authz)
        assert c.get(authz)["status"] == "expired", c.get(authz)
    with pytest.raises(AcmeError) as refused:  # refused with an error (RFC 8555 7.5.2), not a 200 "expired"
        c.post(valid, {"status": "deactivated"})
    assert refused.value.type == "malformed" and "is expired" in refused.value.problem["detail"]
    assert c.get(valid)["status"] == "expired"
    AcmeState(Database(Inventory(acme.issuing / "inventory.sqlite3"))).purge()
    with sqlite3.connect(f"file:{acme.issuing / 'inventory.sqlite3'}?mode=ro", uri=True) as db:
        stored = db.execute("SELECT status FROM acme_authorizations WHERE id = ?", (valid.rsplit("/", 1)[1],))
        assert stored.fetchone() == ("expired",)
    db.close()
