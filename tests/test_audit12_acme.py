"""The ACME server's twelfth audit (acme13), each as a class:

1. a GET is told what the resource takes: POST-as-GET where a resource is fetched, a JWS whose payload is
   the request's JSON object where one acts (newAccount, newOrder, revokeCert, keyChange, finalize), and
   the advice it gives is what the server then takes;
2. a key change's ``account`` of the wrong JSON type, or missing, is said as such, not as "another account".
"""

from __future__ import annotations

import josepy as jose
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from test_audit5_acme import _account
from test_audit11_acme import _problem

from acme_client import sign
from acme_helpers import serving

NAMES = ("k.acme.test",)


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    yield from serving(tmp_path_factory.mktemp("acme13"), NAMES)


def test_a_get_is_told_what_each_resource_takes(acme) -> None:
    c = _account(acme.server.directory, acme.root)
    order_url, order = c.new_order("k.acme.test")
    acting = {"newAccount": c.directory["newAccount"], "newOrder": c.directory["newOrder"],
              "revokeCert": c.directory["revokeCert"], "keyChange": c.directory["keyChange"],
              "finalize": order["finalize"]}
    fetched = {"account": c.kid, "orders": c.kid + "/orders", "order": order_url,
               "authorization": order["authorizations"][0]}
    for name, url in {**acting, **fetched}.items():
        got = requests.get(url, verify=str(acme.root), timeout=30)
        status, kind, detail = _problem(got)
        assert (status, kind, got.headers.get("Allow")) == (405, "malformed", "POST"), (name, detail)
        if name in acting:
            assert "POST-as-GET" not in detail and "payload is this request's JSON object" in detail, (name, detail)
        else:
            assert "use POST-as-GET" in detail, (name, detail)
            # the advice holds: the same URL fetched with POST-as-GET answers
            assert c.post(url, None).status_code == 200, name
    # and the advice for the acting ones holds too: POST-as-GET is refused there
    refused = c.post(acting["newOrder"], None, check=False)
    assert _problem(refused)[:2] == (400, "malformed")


@pytest.mark.parametrize("account,said", [(5, "not a number"), ([None], "not a list"), ({"url": "x"}, "not an object"),
                                          (None, "not null"), (True, "not true")],
                         ids=["number", "list", "object", "null", "bool"])
def test_a_key_change_account_of_the_wrong_type_is_said_so(acme, account, said) -> None:
    c = _account(acme.server.directory, acme.root)
    new = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    url = c.directory["keyChange"]
    if isinstance(account, list):
        account = [c.kid]  # even one that holds the right URL
    inner = sign({"account": account, "oldKey": c.key.public_key().to_json()}, new, jose.ES256, url=url, nonce=None,
                 extra={"jwk": new.public_key().to_json()})
    status, kind, detail = _problem(c.post(url, inner, check=False))
    assert (status, kind) == (400, "malformed") and "'account' must be a string" in detail and said in detail, detail
    assert "another account" not in detail
    assert c.get(c.kid)["status"] == "valid"  # the old key still signs


def test_a_key_change_without_its_account_says_so(acme) -> None:
    c = _account(acme.server.directory, acme.root)
    new = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    url = c.directory["keyChange"]
    inner = sign({"oldKey": c.key.public_key().to_json()}, new, jose.ES256, url=url, nonce=None,
                 extra={"jwk": new.public_key().to_json()})
    status, kind, detail = _problem(c.post(url, inner, check=False))
    assert (status, kind) == (400, "malformed") and "its URL as 'account'" in detail, detail
    # the right one still works
    inner = sign({"account": c.kid, "oldKey": c.key.public_key().to_json()}, new, jose.ES256, url=url, nonce=None,
                 extra={"jwk": new.public_key().to_json()})
    assert c.post(url, inner).status_code == 200
