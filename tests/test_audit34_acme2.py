"""The ACME server, audit round thirty-four (acme2):

1. docs/acme.md says a pending order carries ``Retry-After`` (RFC 8555 7.4, 8.2), but the 201 answer to
   new-order, an order that is pending, had none (only a POST-as-GET of the order had it), and finalize answered
   without going through the same rule. Every resource that answers with an order now gives Retry-After exactly
   while it is pending or processing; authorizations and challenges keep theirs (pending; being validated).
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from test_audit5_acme import _account

from acme_client import Client, HTTP01Responder, make_csr
from acme_helpers import serving

NAMES = tuple(f"s{i}.acme.test" for i in range(1, 12))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    yield from serving(tmp_path_factory.mktemp("acme34"), NAMES)


def _client(setup) -> Client:
    return _account(setup.server.directory, setup.root)


def _polled(response) -> bool:
    return response.headers.get("Retry-After") == "1"


# --- 1. Retry-After by state, on every resource ------------------------------------------------------------------
def test_every_order_and_authorization_answer_carries_retry_after_exactly_while_pending(setup) -> None:
    c = _client(setup)
    created = c.post(c.directory["newOrder"], {"identifiers": [{"type": "dns", "value": "s1.acme.test"}]})
    order_url, order = created.headers["Location"], created.json()
    assert created.status_code == 201 and order["status"] == "pending"
    assert _polled(created), dict(created.headers)  # the 201 of new-order, as docs/acme.md says
    assert _polled(c.post(order_url))
    authz_url = order["authorizations"][0]
    assert _polled(c.post(authz_url))
    with HTTP01Responder(setup.http_port) as responder:
        c.authorize(order, responder)
        assert c.wait(order_url)["status"] == "ready"
    for url in (order_url, authz_url):  # ready, valid: nothing to wait for
        fetched = c.post(url)
        assert fetched.json()["status"] in ("ready", "valid") and not _polled(fetched), dict(fetched.headers)
    done = c.finalize(order, make_csr(ec.generate_private_key(ec.SECP256R1()), ["s1.acme.test"]))
    assert done.json()["status"] == "valid" and not _polled(done), dict(done.headers)
    assert done.headers["Location"] == order_url
    assert not _polled(c.post(order_url))
    # invalid order and authorization (a failed challenge): never polled either
    url2, order2 = c.new_order("s2.acme.test")
    with HTTP01Responder(setup.http_port, wrong=True) as responder:
        c.authorize(order2, responder)
        assert c.wait(url2, ("invalid",))["status"] == "invalid"
    for url in (url2, order2["authorizations"][0]):
        fetched = c.post(url)
        assert fetched.json()["status"] == "invalid" and not _polled(fetched)
    # a deactivated authorization, answered and read
    _url3, order3 = c.new_order("s3.acme.test")
    answered = c.post(order3["authorizations"][0], {"status": "deactivated"})
    assert answered.json()["status"] == "deactivated" and not _polled(answered)
