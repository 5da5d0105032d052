"""certkit acme serve under concurrency, on SQLite and on a real PostgreSQL (tests/team_postgres.py):
challenges of one order validated at the same moment, two servers on one CA (one starting while
the other finalizes or validates, one killed), two servers creating the ACME tables at once,
revocation by an account that holds authorizations for every name, a key change to the same
key, and a database that goes away under a running server."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from certkit.vocabulary import serial_hex

from acme_client import AcmeError, Client, HTTP01Responder, b64, make_csr, sign
from acme_helpers import AcmeServer, listed_serials, ports, wait_for
from conftest import PASSPHRASE, certkit_env, run_certkit

BACKENDS = ["sqlite", "postgresql"]


# --- helpers ------------------------------------------------------------------------------------
def _inventory(request, backend: str) -> str | None:
    """None for SQLite; the URL of a fresh database of the session's PostgreSQL otherwise."""
    return request.getfixturevalue("postgres_url") if backend == "postgresql" else None


def _two_tier(tmp: Path, inventory: str | None, **extra_env: str) -> tuple[Path, Path, dict[str, str]]:
    """A root CA and an issuing intermediate whose inventory is ``inventory`` (None: SQLite):
    (root ca.pem, issuing CA dir, environment with the issuing CA, its passphrase and PGPASSFILE)."""
    root, issuing = tmp / "root", tmp / "issuing"
    env = certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE, **extra_env)
    run_certkit("init-ca", "--ca-dir", root, "--name", "Concurrency Root", env=env, check=True)
    extra = ["--inventory", inventory] if inventory else []
    run_certkit("init-ca", "--ca-dir", issuing, "--parent-ca-dir", root, "--name", "Concurrency Issuing",
                *extra, env=env, check=True)
    return root / "ca.pem", issuing, certkit_env(CERTKIT_CA_DIR=str(issuing), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                                                 **extra_env)


def _sql(issuing: Path, inventory: str | None, statement: str, params: tuple = ()) -> list:
    """Run one statement on the CA's inventory database (as another program, or an older certkit, would)."""
    from certkit.inventory import Inventory

    with Inventory(inventory or issuing / "inventory.sqlite3").db.transaction(write=True) as tx:
        cursor = tx.execute(statement, params)
        return cursor.fetchall() if statement.lstrip().upper().startswith("SELECT") else []


def _resolve(*names: str) -> list[str]:
    return [arg for name in names for arg in ("--resolve", f"{name}=127.0.0.1")]


def _session(root: Path) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(root)
    return session


def _post_all(root: Path, bodies: list[tuple[str, dict]]) -> list[requests.Response]:
    """POST every (url, JWS) at the same moment, each from a thread and connection of its own."""
    results: list[requests.Response | None] = [None] * len(bodies)
    barrier = threading.Barrier(len(bodies))

    def post(index: int, url: str, body: dict) -> None:
        session = _session(root)
        barrier.wait()
        results[index] = session.post(url, data=json.dumps(body), timeout=60,
                                      headers={"Content-Type": "application/jose+json"})

    threads = [threading.Thread(target=post, args=(i, url, body)) for i, (url, body) in enumerate(bodies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _fresh_nonce(c: Client) -> str:
    return c.session.head(c.directory["newNonce"], timeout=10).headers["Replay-Nonce"]


def _challenge(c: Client, authz_url: str, kind: str = "http-01") -> dict:
    return next(ch for ch in c.get(authz_url)["challenges"] if ch["type"] == kind)


# --- finding 1: challenges of one order finishing at the same moment ---------------------------------
def _state(tmp: Path, url: str | None):
    """The ACME state of a fresh inventory (SQLite in ``tmp``, or the PostgreSQL database ``url``)."""
    from certkit.acme.db import Database
    from certkit.acme.state import AcmeState
    from certkit.inventory import Inventory

    inventory = Inventory(url or tmp / "inventory.sqlite3")
    inventory.create()
    state = AcmeState(Database(inventory))
    state.create_schema()
    return state


def _at_once(calls) -> list:
    """Run every call in a thread of its own, released together; their results in order."""
    results: list = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(index: int, call) -> None:
        barrier.wait()
        results[index] = call()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_transitions_hold_under_concurrent_transactions(tmp_path: Path, request, backend: str) -> None:
    """The transitions themselves, each transaction in a thread and connection of its own, released
    together: every last authorization to become valid moves its order to ready (20 orders of 8
    names), and of two challenges of one authorization started at once exactly one starts (20
    authorizations)."""
    state = _state(tmp_path, _inventory(request, backend))
    account, _ = state.create_account("thumb", "{}", [], True, None)
    names = [{"type": "dns", "value": f"n{i}.race.test"} for i in range(8)]
    stuck = []
    for attempt in range(20):
        order = state.create_order(account.id, names, ["http-01"])
        challenges = [state.authorization(a).challenges[0].id for a in order.authz_ids]
        assert all(state.start_challenge(c) for c in challenges)
        assert _at_once([lambda c=c: state.finish_challenge(c, None) for c in challenges]) == [True] * 8
        assert {state.authorization(a).status for a in order.authz_ids} == {"valid"}
        if state.order(order.id).status != "ready":
            stuck.append(attempt)
    started = []
    for _attempt in range(20):
        order = state.create_order(account.id, names[:1], ["http-01", "tls-alpn-01"])
        pair = [c.id for c in state.authorization(order.authz_ids[0]).challenges]
        started.append(sum(_at_once([lambda c=c: state.start_challenge(c) for c in pair])))
    assert (stuck, started) == ([], [1] * 20), \
        f"{len(stuck)} of 20 orders stayed pending with every authorization valid; started at once: {started}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_challenges_completed_at_once_make_the_order_ready(tmp_path: Path, request, backend: str) -> None:
    """Every challenge of an 8-name order POSTed at once (as cert-manager does), half to each of two
    servers on the CA (hosts behind a load balancer), ten orders: the last authorization to become
    valid moves the order to ready, however the validations interleave. On PostgreSQL's READ
    COMMITTED each finishing validation missed the others' and the order stayed pending for good."""
    root, _issuing, env = _two_tier(tmp_path, _inventory(request, backend))
    names = [f"n{i}.race.test" for i in range(8)]
    (http_port,) = ports(1)
    args = ("--allow-domain", "race.test", "--http01-port", http_port, *_resolve(*names))
    servers = [AcmeServer(*args, env=env)]
    try:
        servers.append(AcmeServer(*args, env=env))
        bases = [s.directory.removesuffix("/directory") for s in servers]
        with HTTP01Responder(http_port) as responder:
            c = Client(servers[0].directory, root)
            c.register()
            outcomes = []
            for _attempt in range(10):
                order_url, order = c.new_order(*names)
                bodies = []
                for index, authz_url in enumerate(order["authorizations"]):
                    challenge = _challenge(c, authz_url)
                    responder.add(None, challenge["token"], c.key_authorization(challenge["token"]))
                    base = bases[index % 2]  # the same objects, reached through either server
                    url, kid = (u.replace(bases[0], base) for u in (challenge["url"], c.kid))
                    bodies.append((url, sign({}, c.key, c.alg, url=url, kid=kid, nonce=_fresh_nonce(c))))
                assert all(r.status_code == 200 for r in _post_all(root, bodies))
                for authz_url in order["authorizations"]:
                    assert c.wait(authz_url, ("valid", "invalid"))["status"] == "valid"
                outcomes.append(c.wait(order_url, ("ready", "valid", "invalid"), timeout=30)["status"])
            assert [i for i, status in enumerate(outcomes) if status != "ready"] == [], outcomes
            # And a ready order issues.
            done = c.finalize(order, make_csr(ec.generate_private_key(ec.SECP256R1()), names)).json()
            assert done["status"] == "valid", done
    finally:
        for server in servers:
            server.stop()
    for server in servers:
        assert "Traceback" not in server.stderr, server.stderr


# --- finding 2: two servers on one CA ---------------------------------------------------------------
PAUSE = "signed"  # certkit.testhooks: the certificate is signed, nothing recorded yet


def _paused(env: dict[str, str], marker: Path) -> dict[str, str]:
    return dict(env, CERTKIT_TEST_PAUSE_AT=PAUSE, CERTKIT_TEST_PAUSE_FILE=str(marker))


def _let_go_once(marker: Path) -> threading.Thread:
    """Let the first pause at ``marker`` go at once (a paused server's own TLS certificate at start)."""
    def run() -> None:
        wait_for(marker.exists, timeout=60, interval=0.02, what="the first pause")
        marker.unlink()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _through(c: Client, server: AcmeServer, url: str) -> str:
    """``url`` (of any server on this CA) as reached through ``server``; the client's account too."""
    base = server.directory.removesuffix("/directory")
    theirs = c.kid.split("/acme/", 1)[0]
    c.kid = c.kid.replace(theirs, base)
    c.directory = {k: v.replace(theirs, base) if isinstance(v, str) else v for k, v in c.directory.items()}
    return url.replace(theirs, base)


def _ready_order(c: Client, responder, name: str) -> tuple[str, dict]:
    order_url, order = c.new_order(name)
    c.authorize(order, responder)
    order = c.wait(order_url)
    assert order["status"] == "ready", order
    return order_url, order


def _finalize_in_background(c: Client, order: dict, name: str) -> tuple[threading.Thread, dict]:
    out: dict = {}
    csr = make_csr(ec.generate_private_key(ec.SECP256R1()), [name])

    def run() -> None:
        try:
            out["response"] = c.finalize(order, csr, check=False)
        except requests.RequestException as exc:  # the server was killed meanwhile
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def _stop_all(*servers) -> None:
    for server in servers:
        if server is not None:
            server.stop()


@contextmanager
def _held_in_finalize(tmp_path: Path, request, backend: str, name: str) -> Iterator[SimpleNamespace]:
    """Server A on a fresh two-tier CA, its client's order for ``name`` held inside finalize (the
    certificate signed, nothing recorded yet), for the test to act meanwhile: start a second server,
    settle the order, kill A. The test lets A go on by removing ``marker``; A is stopped at the end."""
    url = _inventory(request, backend)
    root, issuing, env = _two_tier(tmp_path, url)
    marker = tmp_path / "pause"
    (http_port,) = ports(1)
    args = ("--allow-domain", "two.test", "--http01-port", http_port, *_resolve(name))
    first = _let_go_once(marker)
    a = AcmeServer(*args, env=_paused(env, marker))
    first.join()
    try:
        with HTTP01Responder(http_port) as responder:
            c = Client(a.directory, root)
            c.register()
            order_url, order = _ready_order(c, responder, name)
            finalize, out = _finalize_in_background(c, order, name)
            wait_for(marker.exists, timeout=60, interval=0.02, what="A inside the finalize")
            yield SimpleNamespace(url=url, issuing=issuing, env=env, marker=marker, args=args, a=a, c=c,
                                  order_url=order_url, finalize=finalize, out=out)
    finally:
        a.stop()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_starting_server_leaves_another_servers_finalize_alone(tmp_path: Path, request, backend: str) -> None:
    """Server A is held inside a finalize (its order processing, the certificate signed) while
    server B starts on the same CA: B must not touch A's order, and A's client gets a valid order
    with a certificate it can download, recorded valid. (B marked every processing order invalid;
    A then recorded a valid certificate no client could fetch and told its client that the server
    had stopped.)"""
    b = None
    try:
        with _held_in_finalize(tmp_path, request, backend, "a.two.test") as held:
            b = AcmeServer(*held.args, env=held.env)  # a second server on the same CA starts meanwhile
            held.marker.unlink()
            held.finalize.join(60)
            response = held.out["response"]
            assert response.status_code == 200, response.text
            done = response.json()
            assert done["status"] == "valid" and done["certificate"], done
            chain = held.c.certificate(done["certificate"])
            serial = serial_hex(x509.load_pem_x509_certificates(chain.encode())[0].serial_number)
            assert listed_serials(held.env)[serial] == "valid"
            # Through B too: one set of orders.
            assert held.c.get(_through(held.c, b, held.order_url))["status"] == "valid"
    finally:
        _stop_all(b)
    assert "interrupted while issuing" not in b.stderr, b.stderr
    assert "Traceback" not in held.a.stderr + b.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_certificate_whose_order_was_settled_meanwhile_is_never_valid(tmp_path: Path, request,
                                                                       backend: str) -> None:
    """While A issues, the order is settled by someone else (here: made invalid, as a server of an
    older certkit starting, or the order's expiry, does): A must not record the certificate valid
    (nobody could fetch it), but abandon it and tell its client so, without 'the server stopped'."""
    with _held_in_finalize(tmp_path, request, backend, "s.two.test") as held:
        _sql(held.issuing, held.url, "UPDATE acme_orders SET status = 'invalid' WHERE id = ?",
             (held.order_url.rsplit("/", 1)[1],))
        held.marker.unlink()
        held.finalize.join(60)
        response = held.out["response"]
        assert response.status_code == 500, response.text
        problem = response.json()
        assert problem["type"] == "urn:ietf:params:acme:error:serverInternal", problem
        assert "became invalid while its certificate was being issued" in problem["detail"], problem
        assert "discarded before anyone received it" in problem["detail"]
        assert held.c.get(held.order_url)["status"] == "invalid"
    env = held.env
    rows = json.loads(run_certkit("list", "--json", "--status", "abandoned", env=env, check=True).stdout)
    assert [r["subject"] for r in rows["certificates"]] == ["CN=s.two.test"]
    assert "CN=s.two.test" not in json.dumps(json.loads(run_certkit("list", "--json", env=env, check=True).stdout))
    assert "Traceback" not in held.a.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_killed_servers_finalize_is_abandoned_at_the_next_start(tmp_path: Path, request, backend: str) -> None:
    """A server killed inside a finalize leaves its order processing; the next server to start on
    this host finds its finalizer dead and makes the order invalid, so its client orders again."""
    b = None
    try:
        with _held_in_finalize(tmp_path, request, backend, "k.two.test") as held:
            held.a.stop(signal.SIGKILL)
            held.finalize.join(60)
            held.marker.unlink()
            b = AcmeServer(*held.args, env=held.env)
            after = held.c.get(_through(held.c, b, held.order_url))
        assert after["status"] == "invalid", after
        assert after["error"]["detail"] == ("The server stopped while issuing this order's certificate; place a "
                                            "new order.")
    finally:
        _stop_all(b)
    assert "1 order(s) interrupted while issuing" in b.stderr, b.stderr


class HeldResponder(HTTP01Responder):
    """An http-01 responder that holds every answer until :meth:`release` (a validation in flight)."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.held = threading.Event()
        handler = self.server.RequestHandlerClass
        original = handler.do_GET
        responder = self

        def do_get(handler_self) -> None:
            responder.requests.append((handler_self.headers.get("Host", ""), handler_self.path))
            responder.held.wait(30)
            responder.requests.pop()  # counted once, by the original handler
            original(handler_self)

        handler.do_GET = do_get

    def release(self) -> None:
        self.held.set()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_starting_server_leaves_another_servers_validation_alone(tmp_path: Path, request, backend: str) -> None:
    """Server A is validating a challenge (the client's answer held back) while server B starts on
    the same CA: B must not validate it a second time (it re-queued every processing challenge).
    Then A is killed inside another validation: the next server takes that one over and validates it."""
    url = _inventory(request, backend)
    root, _issuing, env = _two_tier(tmp_path, url)
    (http_port,) = ports(1)
    args = ("--allow-domain", "two.test", "--http01-port", http_port, *_resolve("v.two.test", "w.two.test"))
    a, b, d = AcmeServer(*args, env=env), None, None
    try:
        with HeldResponder(http_port) as responder:
            c = Client(a.directory, root)
            c.register()
            _order_url, order = c.new_order("v.two.test")
            challenge = _challenge(c, order["authorizations"][0])
            responder.add(None, challenge["token"], c.key_authorization(challenge["token"]))
            assert c.post(challenge["url"], {}).json()["status"] == "processing"  # held: still validating
            wait_for(lambda: len(responder.requests) == 1, what="A's validation request")
            b = AcmeServer(*args, env=env)
            time.sleep(1.5)  # B's validation workers would have asked by now
            assert len(responder.requests) == 1, responder.requests
            responder.release()
            assert c.wait(challenge["url"], ("valid", "invalid"))["status"] == "valid"
            assert len(responder.requests) == 1, responder.requests
            # A killed while validating: its challenge is taken over by the next server.
            responder.held.clear()
            _order_url, order = c.new_order("w.two.test")
            challenge = _challenge(c, order["authorizations"][0])
            responder.add(None, challenge["token"], c.key_authorization(challenge["token"]))
            c.post(challenge["url"], {})
            wait_for(lambda: len(responder.requests) == 2, what="A's second validation request")
            a.stop(signal.SIGKILL)
            responder.release()
            d = AcmeServer(*args, env=env)
            assert c.wait(_through(c, d, challenge["url"]), ("valid", "invalid"))["status"] == "valid"
            assert len(responder.requests) == 3, responder.requests  # validated again, once
    finally:
        _stop_all(a, b, d)
    assert "v.two.test" not in b.stderr, b.stderr
    # Once, by D at its start (or by B's maintenance round, had a minute passed since B started).
    assert [s.stderr.count("http-01 for w.two.test: valid") for s in (b, d)] in ([0, 1], [1, 0]), (b.stderr, d.stderr)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_older_database_gains_the_new_columns(tmp_path: Path, request, backend: str) -> None:
    """ACME tables written by an older certkit (no finalizer, no validator column), with an order it
    left processing: a server starts on them, adds the columns, abandons that order (its finalizer
    is unknown, so dead) and issues as usual."""
    url = _inventory(request, backend)
    root, issuing, env = _two_tier(tmp_path, url)
    (http_port,) = ports(1)
    args = ("--allow-domain", "two.test", "--http01-port", http_port, *_resolve("o.two.test"))
    with AcmeServer(*args, env=env) as server:
        c = Client(server.directory, root)
        c.register()
        with HTTP01Responder(http_port) as responder:
            old_url, _order = _ready_order(c, responder, "o.two.test")
    for table, column in (("acme_orders", "finalizer"), ("acme_challenges", "validator")):
        _sql(issuing, url, f"ALTER TABLE {table} DROP COLUMN {column}")
    _sql(issuing, url, "UPDATE acme_orders SET status = 'processing' WHERE id = ?", (old_url.rsplit("/", 1)[1],))
    with AcmeServer(*args, env=env) as server:
        assert c.get(_through(c, server, old_url))["status"] == "invalid"
        with HTTP01Responder(http_port) as responder:
            chain, _key, _url = c.obtain(["o.two.test"], responder)
        assert chain.count("BEGIN CERTIFICATE") == 2
    assert "1 order(s) interrupted while issuing" in server.stderr, server.stderr
    _sql(issuing, url, "SELECT finalizer FROM acme_orders")  # the columns are there again
    _sql(issuing, url, "SELECT validator FROM acme_challenges")


# --- finding 8: servers starting at once on a fresh PostgreSQL database -------------------------------
def test_tables_created_by_servers_starting_at_once(postgres_server, postgres_url) -> None:
    """CREATE TABLE IF NOT EXISTS is not atomic in PostgreSQL: servers starting at the same moment
    on a fresh database collided in its catalog and one failed. Eight at once, five fresh databases."""
    from certkit.acme.db import Database
    from certkit.acme.state import AcmeState
    from certkit.db_postgres_pool import close_idle
    from certkit.inventory import Inventory

    for attempt in range(5):
        url = postgres_url if attempt == 0 else postgres_server.create_database()
        states = [AcmeState(Database(Inventory(url))) for _ in range(8)]

        def create(state) -> str:
            try:
                state.create_schema()
            except Exception as exc:  # reported below, with the attempt
                return str(exc)
            return "ok"

        outcomes = _at_once([lambda s=s: create(s) for s in states])
        close_idle(url)
        assert outcomes == ["ok"] * 8, (attempt, outcomes)


def _start_together(cas: list[Path], env: dict[str, str], tmp: Path) -> tuple[list, list[str]]:
    """Start a server on each CA directory, each held at the signing of its own certificate and
    all let go at the same instant: (the servers that came up, what the others said)."""
    markers = [tmp / f"pause-{ca.name}" for ca in cas]
    servers: list = [None] * len(cas)
    errors: list[str] = []

    def start(index: int) -> None:
        try:
            servers[index] = AcmeServer(env=_paused(dict(env, CERTKIT_CA_DIR=str(cas[index])), markers[index]))
        except AssertionError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=start, args=(i,)) for i in range(len(cas))]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: all(m.exists() for m in markers) or not all(t.is_alive() for t in threads),
                 timeout=60, interval=0.02, what="every server paused")
    except AssertionError as exc:
        errors.append(str(exc))
    finally:
        for marker in markers:
            if marker.exists():
                marker.unlink()
        for thread in threads:
            thread.join(60)
    return [s for s in servers if s is not None], errors


def test_two_servers_starting_at_once_on_a_fresh_database_both_come_up(tmp_path: Path, postgres_server) -> None:
    """Two hosts (two copies of a CA directory, as docs/team.md has them) start `acme serve` at the
    same instant on a fresh PostgreSQL inventory, three times: both come up."""
    import shutil

    env = certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE, **postgres_server.env())
    for attempt in range(3):
        ca = tmp_path / f"ca{attempt}"
        run_certkit("init-ca", "--ca-dir", ca, "--name", f"Race {attempt}", "--inventory",
                    postgres_server.create_database(), env=env, check=True)
        shutil.copytree(ca, tmp_path / f"ca{attempt}b")
        servers, errors = _start_together([ca, tmp_path / f"ca{attempt}b"], env, tmp_path)
        _stop_all(*servers)
        assert errors == [], (attempt, errors)
        for server in servers:
            assert server.proc.returncode == 128 + signal.SIGTERM and "Traceback" not in server.stderr, server.stderr


def test_a_server_that_cannot_start_issues_nothing(tmp_path: Path) -> None:
    """A failure while the service starts (here: a view where a table should be) leaves no
    certificate of the server's own recorded valid: it is issued only for a server that runs."""
    import sqlite3

    from conftest import assert_clean_error

    root, issuing, env = _two_tier(tmp_path, None)
    before = listed_serials(env)
    with sqlite3.connect(issuing / "inventory.sqlite3") as db:
        db.execute("CREATE VIEW acme_orders AS SELECT 1 AS id, 2 AS account_id, 3 AS created_at")
    db.close()
    proc = run_certkit("acme", "serve", "--port", "0", env=env)
    assert_clean_error(proc, "views may not be indexed", 1)
    assert listed_serials(env) == before


# --- finding 3: revocation by an account holding authorizations for every name -----------------------
@pytest.fixture(scope="module")
def sqlite_acme(tmp_path_factory):
    """One server on an SQLite two-tier CA, for the tests below."""
    tmp = tmp_path_factory.mktemp("acme")
    root, issuing, env = _two_tier(tmp, None)
    (http_port,) = ports(1)
    names = ("a.rev.test", "b.rev.test", "c.rev.test")
    server = AcmeServer("--allow-domain", "rev.test", "--http01-port", http_port, *_resolve(*names), env=env)
    try:
        yield type("Acme", (), {"server": server, "root": root, "env": env, "issuing": issuing,
                                "http_port": http_port})
    finally:
        server.stop()


def _account(acme) -> Client:
    c = Client(acme.server.directory, acme.root)
    c.register()
    return c


def _authorize_all(c: Client, responder, *names: str) -> str:
    order_url, order = c.new_order(*names)
    c.authorize(order, responder)
    return c.wait(order_url)["status"]


def test_an_account_holding_authorizations_for_every_name_may_revoke(sqlite_acme) -> None:
    """RFC 8555 7.6: the server MUST let an account that holds authorizations for all of the
    identifiers in a certificate revoke it; partial, invalid or expired authorizations do not count."""
    acme = sqlite_acme
    revoke_names = ["a.rev.test", "b.rev.test"]
    with HTTP01Responder(acme.http_port) as responder:
        owner = _account(acme)
        chain, _key, _url = owner.obtain(revoke_names, responder)
        cert = x509.load_pem_x509_certificates(chain.encode())[0]
        serial = serial_hex(cert.serial_number)
        body = {"certificate": b64(cert.public_bytes(Encoding.DER)), "reason": 4}
        revoke = owner.directory["revokeCert"]

        def refused(c: Client, missing: str) -> None:
            with pytest.raises(AcmeError) as exc:
                c.post(revoke, body)
            assert (exc.value.status, exc.value.type) == (403, "unauthorized"), exc.value.problem
            assert f"holds no valid authorization for {missing}" in exc.value.problem["detail"]

        partial = _account(acme)  # one of the two names
        assert _authorize_all(partial, responder, "a.rev.test") == "ready"
        refused(partial, "b.rev.test")
        failed = _account(acme)  # both names ordered, one challenge failed: its authorization is invalid
        order_url, order = failed.new_order(*revoke_names)
        for authz_url in order["authorizations"]:
            authz = failed.get(authz_url)
            challenge = next(ch for ch in authz["challenges"] if ch["type"] == "http-01")
            if authz["identifier"]["value"] == "a.rev.test":
                responder.add(None, challenge["token"], failed.key_authorization(challenge["token"]))
            failed.post(challenge["url"], {})
            failed.wait(authz_url, ("valid", "invalid"))
        assert failed.get(order_url)["status"] == "invalid"
        refused(failed, "b.rev.test")
        expired = _account(acme)  # both valid once, expired since
        assert _authorize_all(expired, responder, *revoke_names) == "ready"
        _sql(acme.issuing, None, "UPDATE acme_authorizations SET expires = '2001-01-01T00:00:00Z'"
                                 " WHERE account_id = ?", (expired.kid.rsplit("/", 1)[1],))
        refused(expired, "a.rev.test, b.rev.test")
        assert listed_serials(acme.env)[serial] == "valid"
        # An account with valid authorizations for both names: revoked.
        holder = _account(acme)
        assert _authorize_all(holder, responder, *reversed(revoke_names)) == "ready"
        assert holder.post(revoke, body).status_code == 200
        assert listed_serials(acme.env)[serial] == "revoked"
        with pytest.raises(AcmeError) as exc:
            holder.post(revoke, body)
        assert exc.value.type == "alreadyRevoked"
    assert "which holds valid authorizations for all of its names" in acme.server.stderr


def test_authorizations_do_not_revoke_what_the_command_line_issued(sqlite_acme, tmp_path: Path) -> None:
    """A certificate issued outside ACME (a client's, a peer's, issue-server's) for a name an account
    validated is not that account's to revoke; signed with the certificate's own key it is revoked."""
    acme = sqlite_acme
    for command in ("issue-client", "issue-peer", "issue-server"):
        extra = ("--dns", "c.rev.test") if command == "issue-client" else ()
        run_certkit(command, "c.rev.test", *extra, "--out", tmp_path / command, env=acme.env, check=True)
    with HTTP01Responder(acme.http_port) as responder:
        holder = _account(acme)
        assert _authorize_all(holder, responder, "c.rev.test") == "ready"
        for command in ("issue-client", "issue-peer", "issue-server"):
            cert = x509.load_pem_x509_certificate((tmp_path / command / "cert.pem").read_bytes())
            body = {"certificate": b64(cert.public_bytes(Encoding.DER)), "reason": 4}
            with pytest.raises(AcmeError) as exc:
                holder.post(holder.directory["revokeCert"], body)
            assert (exc.value.status, exc.value.type) == (403, "unauthorized"), exc.value.problem
            assert "issued outside ACME" in exc.value.problem["detail"]
            assert listed_serials(acme.env)[serial_hex(cert.serial_number)] == "valid"
    # the holder of the certificate's key may (RFC 8555 7.6), whoever issued it
    import josepy as jose
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    cert = x509.load_pem_x509_certificate((tmp_path / "issue-server" / "cert.pem").read_bytes())
    key = jose.JWKEC(key=load_pem_private_key((tmp_path / "issue-server" / "privkey.pem").read_bytes(), None))
    body = {"certificate": b64(cert.public_bytes(Encoding.DER)), "reason": 4}
    anyone = Client(acme.server.directory, acme.root)
    assert anyone.post(anyone.directory["revokeCert"], body, key=key, alg=jose.ES256, use_jwk=True).status_code == 200
    assert listed_serials(acme.env)[serial_hex(cert.serial_number)] == "revoked"


# --- finding 4: a key change to the key the account has --------------------------------------------
def test_a_key_change_to_the_current_key_is_refused_as_such(sqlite_acme) -> None:
    c = _account(sqlite_acme)
    url = c.directory["keyChange"]
    inner = sign({"account": c.kid, "oldKey": c.key.public_key().to_json()}, c.key, c.alg, url=url, nonce=None)
    with pytest.raises(AcmeError) as exc:
        c.post(url, inner)
    assert exc.value.status == 409 and exc.value.response.headers["Location"] == c.kid
    detail = exc.value.problem["detail"]
    assert "is the account's current key already" in detail and "retry" not in detail, detail
    assert c.post(c.kid).json()["status"] == "valid"  # nothing changed


# --- the note: the database going away under a running server ------------------------------------
def _pg_ctl(pg, action: str) -> None:
    """Stop (fast: every connection cut) or start again the test's own PostgreSQL server."""
    data = str(pg.base / "data")
    if action == "stop":
        pg._pg("pg_ctl", "-D", data, "-m", "fast", "-w", "-t", "60", "stop")
        return
    options = (f"-c listen_addresses=127.0.0.1 -p {pg.port} -k {pg.base} -c max_connections=200 "
               "-c shared_buffers=32MB -c fsync=off -c full_page_writes=off")
    pg._pg("pg_ctl", "-D", data, "-l", str(pg.base / "log"), "-w", "-t", "60", "-o", options, "start")


def test_a_database_gone_away_is_said_in_one_line_and_a_503(tmp_path: Path, postgres_server) -> None:
    """PostgreSQL stopped under a running server: a request gets 503 'the database is unavailable;
    try again' (not 'the server failed'), the server logs one line and no traceback; once the
    database is back, the server answers again by itself. (``postgres_server``: skipped, as every
    PostgreSQL test, where PostgreSQL or psycopg is missing.)"""
    from team_postgres import PostgresServer

    pg = PostgresServer().start()  # a server of its own, stopped and started again here
    server = None
    try:
        root, _issuing, env = _two_tier(tmp_path, pg.create_database("down"), **pg.env())
        server = AcmeServer("--allow-domain", "down.test", env=env)
        c = Client(server.directory, root)
        c.register()
        order_url, _order = c.new_order("x.down.test")
        nonce = _fresh_nonce(c)
        _pg_ctl(pg, "stop")
        logged = len(server.stderr.splitlines())
        response = c.send(order_url, sign(None, c.key, c.alg, url=order_url, kid=c.kid, nonce=nonce), check=False)
        assert response.status_code == 503, response.text
        problem = response.json()
        assert problem["type"] == "urn:ietf:params:acme:error:serverInternal"
        assert problem["detail"] == "The server's database is unavailable; try again later.", problem
        assert response.headers["Retry-After"]
        path = "/" + order_url.split("/", 3)[3]
        server.wait_for_log(f"error POST {path}: ")  # logged before the answer; read from its pipe by a thread
        new = [line for line in server.stderr.splitlines()[logged:] if '"POST ' not in line]  # but --verbose's
        assert len(new) == 1 and f"error POST {path}: The inventory " in new[0] and "cannot be reached" in new[0], new
        _pg_ctl(pg, "start")

        def answers() -> bool:
            body = sign(None, c.key, c.alg, url=order_url, kid=c.kid, nonce=_fresh_nonce(c))
            return c.send(order_url, body, check=False).status_code == 200

        wait_for(answers, timeout=30, interval=0.5, what="the server answering again")
    finally:
        if server is not None:
            server.stop()
        pg.stop()
    assert "Traceback" not in server.stderr, server.stderr
