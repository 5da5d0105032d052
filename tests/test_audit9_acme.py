"""The ACME server's ninth audit (acme9):

1. an IP identifier certkit never certifies (the unspecified, broadcast and multicast addresses, an
   IPv4-mapped IPv6 address) is refused at newOrder with the sentence issue-server gives, even when
   ``--allow-ip`` covers it: it was validated (0.0.0.0 reaches the ACME host itself), then every
   finalize was ``badCSR``;
2. finalizing an order that failed says why it failed (it said "it is invalid")."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from test_audit5_acme import _account

from acme_client import AcmeError, make_csr
from acme_helpers import serving
from conftest import run_certkit

NAMES = ("f.acme.test",)
NEVER_CERTIFIED = ("0.0.0.0", "::", "255.255.255.255", "224.0.0.1", "ff02::1", "::ffff:7f00:1", "::ffff:0.0.0.0")


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    yield from serving(tmp_path_factory.mktemp("acme9"), NAMES)


@pytest.mark.parametrize("address", NEVER_CERTIFIED)
def test_an_address_no_command_certifies_is_refused_at_new_order(address: str, ca_env: dict, tmp_path: Path) -> None:
    from certkit.acme.policy import Policy
    from certkit.acme.problems import Problem

    wide = Policy.build(ips=["0.0.0.0/0", "::/0"])  # every address in range: only the name rules can refuse
    with pytest.raises(Problem) as refused:
        wide.check(None, {"type": "ip", "value": address})
    assert refused.value.kind == "rejectedIdentifier", refused.value
    assert refused.value.identifier == {"type": "ip", "value": address}
    # The same sentence as issue-server's refusal of the address.
    proc = run_certkit("issue-server", address, "--out", tmp_path / "out", env=ca_env)
    assert proc.returncode == 1 and not (tmp_path / "out").exists()
    assert proc.stderr.strip() == f"Error: {refused.value.detail}", (proc.stderr, refused.value.detail)


def test_an_address_the_rules_accept_still_passes_the_policy() -> None:
    from certkit.acme.policy import Policy

    class Unconstrained:
        @staticmethod
        def check_permitted(identities) -> None:
            pass

    wide = Policy.build(ips=["0.0.0.0/0", "::/0"])
    for address in ("192.0.2.1", "2001:db8::1", "127.0.0.1", "::1"):
        assert wide.check(Unconstrained(), {"type": "ip", "value": address}) == {"type": "ip", "value": address}


def test_finalizing_a_failed_order_says_why_it_failed(acme) -> None:
    c = _account(acme.server.directory, acme.root)
    url, order = c.new_order("f.acme.test")
    authz = c.get(order["authorizations"][0])
    challenge = next(ch for ch in authz["challenges"] if ch["type"] == "http-01")
    c.post(challenge["url"], {})  # nothing answers on the http-01 port: the validation fails
    order = c.wait(url, ("invalid", "valid", "ready"), timeout=30)
    assert order["status"] == "invalid", order
    with pytest.raises(AcmeError) as refused:
        c.finalize(order, make_csr(ec.generate_private_key(ec.SECP256R1()), ["f.acme.test"]))
    problem = refused.value.problem
    assert problem["type"].endswith("orderNotReady"), problem
    assert problem["detail"].startswith("The order is invalid: it failed (http-01 for "), problem
    assert "f.acme.test" in problem["detail"] and problem["detail"].endswith("; place a new order."), problem
    assert "it is invalid" not in problem["detail"]
