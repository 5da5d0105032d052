"""The ACME server's tenth audit (acme10), each as a class:

1. a range that holds only addresses no certificate names (multicast, broadcast, unspecified) is refused where
   ranges are given (``acme serve --allow-ip``, ``init-ca --permit-ip``, the library), as an IPv4-mapped one
   was: the banner advertised it, and every order for it was refused;
2. a newAccount field of the wrong JSON type is ``malformed`` whatever the answer would be: for a key that
   already has an account, and an ``externalAccountBinding`` sent to a server that needs none;
3. a JSON payload sent to what is only fetched (an order, a certificate, an orders list) is ``malformed``: it
   was answered as a fetch, as if a change (``{"status": "deactivated"}``) had been taken.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_audit5_acme import _account

from acme_client import Client
from acme_helpers import serving
from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit

NAMES = ("g.acme.test",)
NO_PEERS_RANGES = ("224.0.0.0/4", "239.255.0.0/16", "255.255.255.255/32", "0.0.0.0/32", "ff00::/8", "ff02::1/128",
                   "::/128")


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    yield from serving(tmp_path_factory.mktemp("acme10"), NAMES)


# --- 1. ranges of addresses no certificate names ---------------------------------------------------------------
@pytest.mark.parametrize("network", NO_PEERS_RANGES)
def test_a_range_of_addresses_no_certificate_names_is_refused(network: str, tmp_path: Path) -> None:
    from certkit.acme.policy import Policy
    from certkit.errors import InvalidName

    env = certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "ca", "--name", "R", "--permit-ip", network,
                       "--permit-dns", "example.internal", env=env)
    assert_clean_error(proc, "holds only")
    assert not (tmp_path / "ca").exists()
    with pytest.raises(InvalidName, match="holds only"):
        Policy.build(ips=[network])


@pytest.mark.parametrize("network", ["0.0.0.0/0", "224.0.0.0/3", "::/0", "fe00::/7", "10.0.0.0/8"])
def test_a_range_that_also_holds_hosts_addresses_is_accepted(network: str, tmp_path: Path) -> None:
    from certkit.acme.policy import Policy

    env = certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--ca-dir", tmp_path / "ca", "--name", "R", "--permit-ip", network, env=env, check=True)
    assert Policy.build(ips=[network]).allow_ips


def test_acme_serve_refuses_a_multicast_range_at_start(ca_env: dict) -> None:
    proc = run_certkit("acme", "serve", "--port", "0", "--allow-ip", "224.0.0.0/4", env=ca_env)
    assert_clean_error(proc, "multicast", code=proc.returncode or 1)
    assert "224.0.0.0/4" in proc.stderr


# --- 2. newAccount fields of the wrong type, whatever the answer -----------------------------------------------
BAD_FIELDS = [{"contact": 5}, {"contact": "mailto:a@example.com"}, {"contact": [1]},
              {"externalAccountBinding": "garbage"}, {"externalAccountBinding": [1, 2]},
              {"externalAccountBinding": {}}]


@pytest.mark.parametrize("fields", BAD_FIELDS, ids=lambda f: repr(f))
def test_a_new_account_field_of_the_wrong_type_is_malformed(acme, fields: dict) -> None:
    fresh = Client(acme.server.directory, acme.root)
    response = fresh.post(fresh.directory["newAccount"], {"termsOfServiceAgreed": True, **fields}, use_jwk=True,
                          check=False)
    assert response.status_code == 400 and response.json()["type"].endswith(":malformed"), response.text
    existing = _account(acme.server.directory, acme.root)  # the key has an account: the field is still said
    response = existing.post(existing.directory["newAccount"], {"termsOfServiceAgreed": True, **fields},
                             use_jwk=True, check=False)
    assert response.status_code == 400 and response.json()["type"].endswith(":malformed"), response.text


def test_an_existing_account_is_still_returned_for_well_formed_fields(acme) -> None:
    c = _account(acme.server.directory, acme.root)
    response = c.post(c.directory["newAccount"], {"termsOfServiceAgreed": True, "contact": []}, use_jwk=True)
    assert response.status_code == 200 and response.headers["Location"] == c.kid


# --- 3. a payload sent to what is only fetched -----------------------------------------------------------------
@pytest.mark.parametrize("payload", [{"status": "deactivated"}, {}])
def test_a_payload_to_an_order_or_orders_list_is_malformed(acme, payload: dict) -> None:
    c = _account(acme.server.directory, acme.root)
    url, _order = c.new_order(*NAMES)
    orders = c.get(c.kid)["orders"]
    for target in (url, orders):
        response = c.post(target, payload, check=False)
        assert response.status_code == 400, (target, response.text)
        problem = response.json()
        assert problem["type"].endswith(":malformed") and "POST-as-GET" in problem["detail"], problem
    assert c.get(url)["status"] == "pending"  # and a fetch still works
