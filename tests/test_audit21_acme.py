"""The ACME server, audit round twenty-one (acme), each as a class:

1. a finalize that lost a race while its CSR was checked (the order read ready, then another request changed
   it before ``begin_finalize``) was always told "The order is invalid: another request finalized it",
   whatever happened: its authorization or its account deactivated, another finalize under way or done.
   And a finalize refused at once for an order that a deactivation made invalid said only "it can no
   longer be finalized". Both now say, in one wording, what the order reads now and why;
2. a certificate delivered (its order valid, the client fetching it) whose inventory row the database refused
   to mark valid (another certkit process held the SQLite inventory's write lock past the server's wait) stayed
   ``pending`` until the server's next maintenance round, up to a minute, though the client's next requests
   (the order, the certificate) came at once: ``certkit list`` said pending, ``certkit check`` "being written
   by a certkit command that still runs". A request for that order or that certificate now marks it first, as
   one for an order whose other refused writes are waiting does.
"""

from __future__ import annotations

import sqlite3
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from acme_client import Client, HTTP01Responder, b64, make_csr
from acme_helpers import make_two_tier, ports, serving
from conftest import PASSPHRASE

NAMES = ("r1.acme.test", "r2.acme.test", "r3.acme.test", "r4.acme.test")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    yield from serving(tmp_path_factory.mktemp("acme21"), NAMES)


@pytest.fixture(scope="module")
def client(setup):
    c = Client(setup.server.directory, setup.root)
    c.register()
    return c


def _finalizer(setup):
    """A Finalizer of this process over the server's CA and ACME state: a second server's, sharing them."""
    from certkit.acme.challenges import Validator
    from certkit.acme.db import Database
    from certkit.acme.finalize import Finalizer
    from certkit.acme.policy import Policy
    from certkit.acme.server import AcmeConfig
    from certkit.acme.state import AcmeState
    from certkit.store import CADirectory

    ca = CADirectory(setup.issuing).open()
    ca.unlock(PASSPHRASE.encode())
    config = AcmeConfig(policy=Policy.build(["acme.test"], ["127.0.0.0/8"]), validator=Validator())
    return Finalizer(ca, AcmeState(Database(ca.inventory)), config, lambda message: None)


def _ready(c: Client, setup, name: str) -> tuple[str, dict]:
    with HTTP01Responder(setup.http_port) as responder:
        url, order = c.new_order(name)
        c.authorize(order, responder)
        order = c.wait(url)
    assert order["status"] == "ready", order
    return url, order


def _lost_race(setup, finalizer, order_url: str, name: str) -> dict:
    """The problem a finalize of the order gets when the order was read ready (before the change the
    caller made) and begin_finalize then finds it changed: the window while its CSR is checked."""
    from certkit.acme.problems import Problem

    with pytest.raises(Problem) as caught:
        finalizer.finalize(finalizer.stale, {"csr": b64(make_csr(ec.generate_private_key(ec.SECP256R1()), [name]))},
                           order_url.split("/acme/", 1)[0])
    return caught.value.to_json()


def _read_stale(finalizer, order_url: str) -> None:
    finalizer.stale = finalizer.state.order(order_url.rsplit("/", 1)[1])
    assert finalizer.stale.status == "ready"


def test_a_finalize_that_lost_a_race_to_an_authorization_deactivation_says_so(setup, client) -> None:
    finalizer = _finalizer(setup)
    url, order = _ready(client, setup, "r1.acme.test")
    _read_stale(finalizer, url)
    assert client.post(order["authorizations"][0], {"status": "deactivated"}).json()["status"] == "deactivated"
    problem = _lost_race(setup, finalizer, url, "r1.acme.test")
    want = "The order is invalid: its authorization for 'r1.acme.test' was deactivated; place a new order."
    assert (problem["type"], problem["detail"]) == ("urn:ietf:params:acme:error:orderNotReady", want)
    # A finalize sent after the deactivation says the same.
    refused = client.finalize(order, make_csr(ec.generate_private_key(ec.SECP256R1()), ["r1.acme.test"]), check=False)
    assert (refused.status_code, refused.json()["detail"]) == (403, want)


def test_a_finalize_that_lost_a_race_to_another_finalize_says_where_the_certificate_is(setup, client) -> None:
    finalizer = _finalizer(setup)
    url, order = _ready(client, setup, "r2.acme.test")
    _read_stale(finalizer, url)
    done = client.finalize(order, make_csr(ec.generate_private_key(ec.SECP256R1()), ["r2.acme.test"])).json()
    assert done["status"] == "valid", done
    problem = _lost_race(setup, finalizer, url, "r2.acme.test")
    assert problem["type"] == "urn:ietf:params:acme:error:orderNotReady"
    assert problem["detail"] == ("The order is valid: it was finalized already; its certificate is at "
                                 f"{done['certificate']}.")


def test_a_finalize_that_lost_a_race_to_its_accounts_deactivation_says_so(setup) -> None:
    c = Client(setup.server.directory, setup.root)
    c.register()
    finalizer = _finalizer(setup)
    url, _order = _ready(c, setup, "r3.acme.test")
    _read_stale(finalizer, url)
    assert c.post(c.kid, {"status": "deactivated"}).json()["status"] == "deactivated"
    problem = _lost_race(setup, finalizer, url, "r3.acme.test")
    assert problem["type"] == "urn:ietf:params:acme:error:orderNotReady"
    assert problem["detail"] == ("The order is invalid: its account was deactivated; place a new order with a valid "
                                 "account.")


# --- 2: a delivered certificate's row is marked valid at the client's next request -------------------------
class _InProcessServer:
    """``acme serve``'s HTTPS server (AcmeHTTPServer over AcmeService and its Listener, as cli/acme.py wires
    them) in this process, on a CA of its own, so that the inventory's write lock can be taken at the moment a
    finalize has put its certificate into the order and before the row is marked valid. No maintenance round
    runs: what is marked here is marked by the requests."""

    def __init__(self, tmp, names: tuple[str, ...]) -> None:
        from certkit.acme.challenges import Validator
        from certkit.acme.db import Database
        from certkit.acme.https import AcmeHTTPServer
        from certkit.acme.listener import Listener
        from certkit.acme.policy import Policy
        from certkit.acme.server import AcmeConfig, AcmeService
        from certkit.acme.state import AcmeState
        from certkit.store import CADirectory

        root, self.issuing, self.env = make_two_tier(tmp)
        self.root = root / "ca.pem"
        (self.http_port,) = ports(1)
        ca = CADirectory(self.issuing).open()
        ca.unlock(PASSPHRASE.encode())
        ca.inventory.db.busy_timeout = 0.5  # the server's wait for a lock, shortened (5 s in acme serve)
        validator = Validator(http_port=self.http_port, resolve={name: ["127.0.0.1"] for name in names})
        self.service = AcmeService(ca, AcmeState(Database(ca.inventory)), AcmeConfig(Policy.build(["acme.test"]),
                                                                                     validator))
        self.service.start(workers=1)
        self.listener = Listener(ca, ["localhost"])
        self.server = AcmeHTTPServer(("127.0.0.1", 0), self.service, lambda: self.listener.context,
                                     log=lambda line: None)
        self.directory = f"https://localhost:{self.server.server_address[1]}/directory"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def lock_after_delivery(self) -> list:
        """From the next finalize on: once its order holds the certificate, another connection takes the
        inventory's write lock (as a certkit command writing would), so marking the row valid is refused.
        Returns the list that gets that connection; the caller ends it."""
        finalizer, held = self.service.resources.finalizer, []
        complete = finalizer._complete

        def complete_then_lock(order_id, chain) -> None:
            complete(order_id, chain)
            conn = sqlite3.connect(self.issuing / "inventory.sqlite3", isolation_level=None, check_same_thread=False)
            conn.execute("BEGIN IMMEDIATE")
            held.append(conn)

        finalizer._complete = complete_then_lock
        return held

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.service.stop()


def _row_status(server: _InProcessServer, serial: str) -> str:
    conn = sqlite3.connect(server.issuing / "inventory.sqlite3")
    try:
        return conn.execute("SELECT status FROM certificates WHERE serial = ?", (serial,)).fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize("next_request", ["order", "certificate"])
def test_a_delivered_certificate_whose_row_could_not_be_marked_is_marked_at_the_next_request(
        tmp_path, next_request: str) -> None:
    name = "m.acme.test"
    server = _InProcessServer(tmp_path, (name,))
    try:
        c = Client(server.directory, server.root)
        c.register()
        with HTTP01Responder(server.http_port) as responder:
            url, order = c.new_order(name)
            c.authorize(order, responder)
            order = c.wait(url)
        held = server.lock_after_delivery()
        done = c.finalize(order, make_csr(ec.generate_private_key(ec.SECP256R1()), [name])).json()
        assert done["status"] == "valid", done
        serial = done["certificate"].rsplit("/", 1)[1]
        assert len(held) == 1
        held.pop().close()  # the other command is done: the inventory takes writes again
        assert _row_status(server, serial) == "pending"  # delivered, its mark refused
        if next_request == "order":
            assert c.get(url)["status"] == "valid"
        else:
            assert "BEGIN CERTIFICATE" in c.certificate(done["certificate"])
        assert _row_status(server, serial) == "valid"
    finally:
        server.close()
