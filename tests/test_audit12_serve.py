"""The twelfth round's serve finding (audit serveteam12 #2): an inventory serve cannot read refuses every client
(it fails closed), and says so; it never says a certificate was revoked, nor gives the advice for one (a CRL
that lists it): the JSON's ``withdrawn`` holds only what the inventory records, and the page has its own words.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import PASSPHRASE, certkit_env, run_certkit
from serve_process import serving


def _env(lab: Path) -> dict[str, str]:
    return certkit_env(CERTKIT_CA_DIR=str(lab / "ca"), HOME=str(lab / "home"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)


def _ask(lab: Path, port: int, fmt: str) -> tuple[str, str]:
    proc = subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", str(lab / "ca" / "ca.pem"),
                           "--cert", str(lab / "alice" / "cert.pem"), "--key", str(lab / "alice" / "privkey.pem"),
                           "-w", "\n%{http_code}", f"https://localhost:{port}/?format={fmt}"],
                          capture_output=True, text=True, timeout=30)
    body, _, code = proc.stdout.rpartition("\n")
    return body, code


@pytest.mark.parametrize("optional", [False, True])
def test_an_unread_inventory_refuses_and_says_no_revocation(tmp_path: Path, optional: bool) -> None:
    lab = tmp_path
    (lab / "home").mkdir()
    env = _env(lab)
    run_certkit("init-ca", "--name", "Unread CA", env=env, check=True)
    for args in (("issue-server", "localhost", "127.0.0.1"), ("issue-client", "alice")):
        run_certkit(*args, env=env, cwd=lab, check=True)
    files = ("--cert", "localhost/fullchain.pem", "--key", "localhost/privkey.pem", *(["--optional"] * optional))
    with serving(*files, env=env, cwd=lab) as srv:
        good, code = _ask(lab, srv.port, "json")
        assert code == "200" and json.loads(good)["authenticated"] is True, good
        inventory = lab / "ca" / "inventory.sqlite3"
        for suffix in ("-wal", "-shm"):
            (lab / "ca" / f"inventory.sqlite3{suffix}").unlink(missing_ok=True)
        inventory.write_bytes(b"not a database at all " * 200)  # a damaged file, as a failed disk leaves it
        data, code = _ask(lab, srv.port, "json")
        page, _ = _ask(lab, srv.port, "html")
    answer = json.loads(data)
    assert code == "403" and answer["authenticated"] is False, data
    assert any("revocation status cannot be read" in r for r in answer["reasons"]), answer["reasons"]
    assert answer["presented"]["withdrawn"] == [], answer["presented"]  # nothing is recorded against it
    assert "could not read it, so it refuses every client" in page and "Nothing says this certificate" in page
    assert "once they are given a CRL that lists it" not in page


# --- serveteam12 #1: an alert OpenSSL sends for its own CRL is not said as a fact about the certificate ------------
def _stale_crl(ca: Path, out: Path) -> None:
    """A CRL of ``ca``, signed with its key, whose next update has passed (a cron job that stopped)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    cert = x509.load_pem_x509_certificate((ca / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((ca / "ca-key.pem").read_bytes(), PASSPHRASE.encode())
    now = dt.datetime.now(dt.UTC)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(cert.subject)
           .last_update(now - dt.timedelta(days=2)).next_update(now - dt.timedelta(days=1))
           .add_extension(x509.CRLNumber(7), False)
           .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
           .sign(key, hashes.SHA256()))
    out.write_bytes(crl.public_bytes(serialization.Encoding.PEM))


def test_probe_says_a_crl_alert_is_about_the_servers_crl(tmp_path: Path) -> None:
    from test_probe import openssl_server

    root_env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "root"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                           HOME=str(tmp_path))
    run_certkit("init-ca", "--name", "CRL Root", env=root_env, check=True)
    for args in (("issue-server", "localhost", "127.0.0.1"), ("issue-client", "alice")):
        run_certkit(*args, env=root_env, cwd=tmp_path, check=True)
    run_certkit("init-ca", "--ca-dir", tmp_path / "int", "--parent-ca-dir", tmp_path / "root", "--name", "CRL Int",
                env=root_env | {"CERTKIT_PARENT_CA_PASSPHRASE": PASSPHRASE}, check=True)
    run_certkit("issue-client", "carol", env=root_env | {"CERTKIT_CA_DIR": str(tmp_path / "int")}, cwd=tmp_path,
                check=True)
    _stale_crl(tmp_path / "root", tmp_path / "stale.crl")
    run_certkit("crl", "--out", tmp_path / "root.crl", env=root_env, check=True)
    server = ("-cert", tmp_path / "localhost" / "fullchain.pem", "-key", tmp_path / "localhost" / "privkey.pem",
              "-Verify", "2", "-verify_return_error", "-CAfile", tmp_path / "root" / "ca.pem", "-crl_check")
    ca_file = ("--ca-file", tmp_path / "root" / "ca.pem")
    with openssl_server(*server, "-CRL", tmp_path / "stale.crl") as port:
        stale = run_certkit("probe", f"https://localhost:{port}/", *ca_file, "--bundle", tmp_path / "alice")
    assert stale.returncode == 1 and "alert certificate expired" in stale.stdout, stale.stdout
    assert "the certificate has expired" not in stale.stdout and "the certificate given is in date" in stale.stdout
    assert "CRL (ssl_crl, -CRL) has most likely expired" in stale.stdout, stale.stdout
    with openssl_server(*server, "-CRL", tmp_path / "root.crl") as port:  # none for the intermediate
        no_crl = run_certkit("probe", f"https://localhost:{port}/", *ca_file, "--bundle", tmp_path / "carol")
    assert no_crl.returncode == 1 and "alert unknown ca" in no_crl.stdout, no_crl.stdout
    assert "the server does not know the CA that issued it" not in no_crl.stdout
    assert "hold none for a CA of the chain" in no_crl.stdout, no_crl.stdout


def test_probe_does_not_blame_a_crl_when_a_certificate_of_the_chain_has_expired() -> None:
    """regress19: the 'certificate expired' alert is said to be the server's CRL only when every certificate of the
    client's chain is in date (an expired intermediate beside an in-date leaf is the certificate's fault)."""
    from certkit.probe import ProbeResult, Target
    from certkit.probe_alerts import _ALERTS
    from certkit.probe_client_verdict import _crl_cause

    refused = f"tls alert certificate expired: {_ALERTS['certificate expired']}"
    result = ProbeResult("https://h/", Target("h", 443, "/"), "the CA")
    result.client_validity = {"status": "valid", "not_before": "2026-01-01T00:00:00Z",
                              "not_after": "2027-12-02T00:00:00Z", "chain_in_date": False}
    assert _crl_cause(result, refused) == refused  # left as OpenSSL's alert says it
    result.client_validity["chain_in_date"] = True
    assert "the server's CRL" in _crl_cause(result, refused)
