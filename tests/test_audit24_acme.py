"""The ACME server and the certificates it issued, audit round twenty-four (acme):

1. a request signed by a key that is not the account's (a forged or broken signature) naming a deactivated
   account by its kid URL was answered "The account ... is deactivated" (unauthorized) before its signature
   was checked: anyone who knew an account's URL learnt its status. The signature (and the nonce) are now
   checked first, for every resource a kid signs; only the account's holder learns it is deactivated.
2. ``certkit renew SERIAL`` of a certificate issued over ACME (its key with certbot, lego, Caddy) said "choose
   where the renewed bundle goes with --out FOLDER", and ``--out`` then wrote a "renewal" with no private key
   that no client would ever use. It is now refused, naming the client's renewal command, nothing written,
   whether named by serial or name, with --out, --rekey, or by a folder holding a copy with its key. So is,
   in the same way, the HTTPS certificate of a running acme serve, whose key is in its memory alone:
   ``renew SERIAL --out DIR`` wrote a keyless bundle and marked the server's certificate renewed.
3. ``certkit list --expiring`` and ``renew --expiring`` said nothing of a certificate issued over ACME whose
   client was late to renew it (past the point certbot, lego or Caddy renew: min(30 days, a third of its life)
   before its end), so a client whose timer had stopped let it expire under a quiet cron job. Both now warn,
   naming the client's renewal command; renew still leaves it to the client. One the client is not late for
   yet is listed (and skipped) without a word.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from test_audit5_acme import _account, _obtain, _serial

from acme_client import AcmeError, Client, HTTP01Responder, account_key, sign
from acme_helpers import serving
from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit
from fleet_helpers import backdated_ca

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


# --- 2. an ACME client's certificate is renewed by that client -------------------------------------------
def test_renewing_an_acme_certificate_is_refused_naming_the_clients_command(setup, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with HTTP01Responder(setup.http_port) as responder:
        cert = _obtain(_account(setup.server.directory, setup.root), responder, key, "d2.acme.test")
    serial = _serial(cert)
    live = tmp_path / "live"  # as certbot keeps it: cert.pem and privkey.pem side by side
    live.mkdir()
    (live / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (live / "privkey.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    before = {p.name: p.read_bytes() for p in live.iterdir()}
    out = tmp_path / "out"
    for args in ([serial], [serial, "--out", out], [serial, "--rekey", "--out", out], ["d2.acme.test", "--out", out],
                 [live], [serial, "--out", out, "--json"]):
        proc = run_certkit("renew", *args, env=setup.env)
        assert_clean_error(proc, f"The certificate {serial} was issued over ACME")
        text = proc.stderr + proc.stdout
        assert "certbot renew --cert-name d2.acme.test" in text and "--domains d2.acme.test renew" in text, text
        assert "--out FOLDER" not in text
        assert not out.exists()
        assert {p.name: p.read_bytes() for p in live.iterdir()} == before
    rows = json.loads(run_certkit("list", "--json", env=setup.env, check=True).stdout)["certificates"]
    assert [row["serial"] for row in rows if "DNS:d2.acme.test" in row["names"]] == [serial]  # no keyless "renewal"
    assert os.listdir(tmp_path) == ["live"]


def test_renewing_a_running_acme_servers_own_certificate_is_refused(setup, tmp_path: Path) -> None:
    rows = json.loads(run_certkit("list", "--json", env=setup.env, check=True).stdout)["certificates"]
    (own,) = [row["serial"] for row in rows if row["sink"] == "memory" and row["status"] == "valid"]
    out = tmp_path / "out"
    for args in ([own], [own, "--out", out], [own, "--rekey", "--out", out], [own, "--out", out, "--json"]):
        proc = run_certkit("renew", *args, env=setup.env)
        assert_clean_error(proc, f"The certificate {own} is the HTTPS certificate of a running server")
        assert "--out FOLDER" not in proc.stderr + proc.stdout and not out.exists()
    rows = json.loads(run_certkit("list", "--json", env=setup.env, check=True).stdout)["certificates"]
    assert not any(row["renewed_from"] == own for row in rows)
    assert os.listdir(tmp_path) == []

# --- 3. an ACME client late to renew is warned of ----------------------------------------------------------
def _over_acme(ca, name: str, *, days: int, started_days_ago: float) -> str:
    """A certificate delivered over ACME (as acme serve records one) for ``name``, begun that long ago."""
    import datetime as dt

    from certkit.issuing import Target, deliver, server_request

    class OverAcme(Target):
        sink = "acme"

    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=started_days_ago)
    return deliver(ca, server_request([name], days=days, not_before=start), OverAcme()).issued.serial_hex


def test_a_late_acme_client_is_warned_of_and_its_certificate_left_to_it(tmp_path: Path) -> None:
    ca = backdated_ca(tmp_path / "ca")
    late = {_over_acme(ca, "late90.example.com", days=90, started_days_ago=70): "late90.example.com",  # 20 of 90 left
            _over_acme(ca, "late10.example.com", days=10, started_days_ago=8.5): "late10.example.com"}  # 1.5 of 10
    on_time = [_over_acme(ca, "fresh.example.com", days=90, started_days_ago=55),  # 35 left: certbot renews at 30
               _over_acme(ca, "today.example.com", days=90, started_days_ago=60.5),  # due half a day ago: its timer
               _over_acme(ca, "short.example.com", days=10, started_days_ago=7)]  # 3 of 10: a third, due just now
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    for args in (("list", "--expiring", "40d"), ("list", "--expiring", "40d", "--json"), ("renew", "--expiring", "40d"),
                 ("renew", "--expiring", "40d", "--json")):
        proc = run_certkit(*args, env=env)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        warnings = [line for line in proc.stderr.splitlines() if line.startswith("Warning: ")]
        assert len(warnings) == 2, (args, proc.stderr)
        for serial, name in late.items():
            said = next(w for w in warnings if serial in w)
            assert "was issued over ACME" in said and "its ACME client should have renewed it by" in said
            assert f"'certbot renew --cert-name {name}'" in said and f"--domains {name} renew" in said, said
        assert not any(serial in proc.stderr for serial in on_time), proc.stderr
        if "--json" in args and args[0] == "renew":
            report = json.loads(proc.stdout)
            why = {o["serial"]: (o["outcome"], o["why"], o["needs_attention"]) for o in report["certificates"]}
            assert {why[s] for s in late} == {("skipped", "late", True)}
            assert {why[s] for s in on_time} == {("skipped", "elsewhere", False)}
            assert report["renewed"] == 0 and report["ok"] is True
    rows = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]
    assert len(rows) == 5 and not any(row["renewed_from"] for row in rows)  # nothing renewed by certkit
    assert os.listdir(tmp_path) == ["ca"]
