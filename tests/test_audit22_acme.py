"""The ACME server, audit round twenty-two (acme):

1. a client's renewal that changed its key's size or curve (``lego renew --key-type ec384`` after an ec256
   certificate, ``certbot renew --rsa-key-size 3072`` after an RSA-2048 one) was recorded as a stranger to
   the certificate it replaced: ``certkit list`` showed the replaced one plain ``valid`` and
   ``list --expiring`` listed it as due, though its client held it no more (a TLS server holds one
   certificate of each algorithm: the new ECDSA one replaced the old). Renewals are now matched by the
   key's algorithm (RSA, ECDSA, Ed25519), not its size or curve; an RSA and an ECDSA certificate for one
   name are still two.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from test_audit5_acme import _account, _obtain, _serial

from acme_client import HTTP01Responder
from acme_helpers import lego, serial_of, serving, split_chain
from conftest import require, run_certkit

NAMES = ("k1.acme.test", "k2.acme.test", "k3.acme.test")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    yield from serving(tmp_path_factory.mktemp("acme22"), NAMES)


def _rows(env: dict) -> dict[str, dict]:
    rows = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]
    return {row["serial"]: row for row in rows}


def _expiring(env: dict) -> set[str]:
    rows = json.loads(run_certkit("list", "--expiring", "400d", "--json", env=env, check=True).stdout)
    return {row["serial"] for row in rows["certificates"]}


# --- 1. a renewal that changed the key's size or curve is a renewal ----------------------------------
def test_lego_renewing_with_another_curve_is_recorded_as_a_renewal(setup, tmp_path: Path) -> None:
    require("lego")
    path, certs = tmp_path / "lego", tmp_path / "lego" / "certificates"
    common = ("--email", "ops@acme.test", "-d", "k1.acme.test", "--http", "--http.port", f"127.0.0.1:{setup.http_port}")
    got = lego(path, setup.server.directory, *common, "--key-type", "ec256", "run", root=setup.root)
    assert got.returncode == 0, got.stderr
    first = serial_of(split_chain(certs / "k1.acme.test.crt", tmp_path)[0])
    renewed = lego(path, setup.server.directory, *common, "--key-type", "ec384", "renew", "--days", "9999",
                   "--no-random-sleep", root=setup.root)
    assert renewed.returncode == 0, renewed.stderr
    second = serial_of(split_chain(certs / "k1.acme.test.crt", tmp_path)[0])
    assert second != first
    rows = _rows(setup.env)
    assert rows[first]["renewed_by"] == second and rows[second]["renewed_from"] == first, (rows[first], rows[second])
    due = _expiring(setup.env)
    assert first not in due and second in due  # what lego holds is the one due, not the one it replaced


def test_an_rsa_renewal_of_another_size_renews_and_an_ecdsa_certificate_beside_it_does_not(setup) -> None:
    with HTTP01Responder(setup.http_port) as responder:
        client = _account(setup.server.directory, setup.root)
        first = _serial(_obtain(client, responder, rsa.generate_private_key(65537, 2048), "k2.acme.test"))
        beside = _serial(_obtain(client, responder, ec.generate_private_key(ec.SECP256R1()), "k2.acme.test"))
        second = _serial(_obtain(client, responder, rsa.generate_private_key(65537, 3072), "k2.acme.test"))
        third = _serial(_obtain(client, responder, ec.generate_private_key(ec.SECP521R1()), "k2.acme.test"))
    rows = _rows(setup.env)
    assert rows[second]["renewed_from"] == first and rows[first]["renewed_by"] == second
    assert rows[beside]["renewed_from"] is None  # an ECDSA certificate beside an RSA one: a first one
    assert rows[third]["renewed_from"] == beside  # P-256 to P-521: the ECDSA certificate renewed
    due = _expiring(setup.env)
    assert first not in due and beside not in due and {second, third} <= due
