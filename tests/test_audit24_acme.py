"""The ACME server and the certificates it issued, audit round twenty-four (acme):

1. a request signed by a key that is not the account's (a forged or broken signature) naming a deactivated
   account by its kid URL was answered "The account ... is deactivated" (unauthorized) before its signature
   was checked: anyone who knew an account's URL learnt its status. The signature (and the nonce) are now
   checked first, for every resource a kid signs; only the account's holder learns it is deactivated.
"""

from __future__ import annotations

import pytest

from acme_client import AcmeError, Client, account_key, sign
from acme_helpers import serving

NAMES = ("d1.acme.test", "d2.acme.test", "d3.acme.test")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    yield from serving(tmp_path_factory.mktemp("acme24"), NAMES)


def _deactivated(setup) -> Client:
    c = Client(setup.server.directory, setup.root)
    c.register()
    assert c.post(c.kid, {"status": "deactivated"}).json()["status"] == "deactivated"
    return c


# --- 1. the signature before anything about the account ---------------------------------------------------
@pytest.mark.parametrize("resource", ["account", "newOrder", "newNonce", "keyChange", "orders"])
def test_a_forged_request_for_a_deactivated_account_learns_nothing_of_it(setup, resource) -> None:
    c = _deactivated(setup)
    url = {"account": c.kid, "orders": c.kid + "/orders"}.get(resource) or c.directory[resource]
    payload = {"newOrder": {"identifiers": [{"type": "dns", "value": "d1.acme.test"}]}, "keyChange": {}}.get(resource)
    stranger, alg = account_key("ES256")  # not the account's key
    forged = sign(payload, stranger, alg, url=url, nonce=c.nonce(), kid=c.kid)
    with pytest.raises(AcmeError) as exc:
        c.send(url, forged)
    assert (exc.value.status, exc.value.type) == (400, "malformed"), exc.value.problem
    assert "signature does not verify" in exc.value.problem["detail"]
    assert "deactivated" not in exc.value.response.text
    # the account's holder is told, as before
    with pytest.raises(AcmeError) as exc:
        c.post(url, payload)
    assert (exc.value.status, exc.value.type) == (403, "unauthorized"), exc.value.problem
    assert "is deactivated" in exc.value.problem["detail"]


def test_a_deactivated_account_with_a_used_nonce_is_told_of_the_nonce(setup) -> None:
    """The nonce is checked before the account's status too: a replayed request learns nothing more."""
    c = _deactivated(setup)
    body = sign(None, c.key, c.alg, url=c.kid, nonce=c.nonce(), kid=c.kid)
    with pytest.raises(AcmeError) as first:
        c.send(c.kid, body)
    assert first.value.type == "unauthorized"
    with pytest.raises(AcmeError) as replayed:
        c.send(c.kid, body)
    assert replayed.value.type == "badNonce", replayed.value.problem
    assert "deactivated" not in replayed.value.response.text

