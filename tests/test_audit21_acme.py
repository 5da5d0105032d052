"""The ACME server, audit round twenty-one (acme), each as a class:

1. a finalize that lost a race while its CSR was checked (the order read ready, then another request changed
   it before ``begin_finalize``) was always told "The order is invalid: another request finalized it",
   whatever happened: its authorization or its account deactivated, another finalize under way or done.
   And a finalize refused at once for an order that a deactivation made invalid said only "it can no
   longer be finalized". Both now say, in one wording, what the order reads now and why;
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from acme_client import Client, HTTP01Responder, b64, make_csr
from acme_helpers import serving
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
