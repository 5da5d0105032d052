"""The ACME server, audit round thirteen (acme14), each as a class:

1. the External Account Binding JWS is held to RFC 7515's ``crit`` rule as the outer and key-change JWSs
   are (``b64: false`` among the extensions refused);
2. a CSR that asks for more than a serverAuth certificate for the order's names is refused with badCSR
   naming what cannot be granted (clientAuth alone, keyCertSign/cRLSign, must-staple, another critical
   extension, a subject emailAddress), while what certbot, lego, Caddy and acme.sh send is issued;
3. a server that stops revokes (cessationOfOperation) its own HTTPS certificate, whose key lived in it
   alone;
and the minor note: a key change to a key another account holds names that account in Content-Location.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import time

import josepy as jose
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier
from test_audit5_acme import _account
from test_audit11_acme import _problem

from acme_client import Client, HTTP01Responder, b64, sign
from acme_helpers import AcmeServer, listed_serials, make_two_tier, serving
from conftest import run_certkit

NAMES = ("e.acme.test",)
EAB_KEY = b"3" * 32


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    yield from serving(tmp_path_factory.mktemp("acme14"), NAMES)


# --- 1: crit in the EAB JWS -----------------------------------------------------------------------
@pytest.mark.parametrize("extra", [{"crit": ["x"], "x": 1}, {"crit": ["b64"], "b64": False}], ids=["crit", "b64"])
def test_an_eab_with_crit_is_malformed(tmp_path, extra) -> None:
    _root, _issuing, env = make_two_tier(tmp_path)
    key_file = tmp_path / "eab.key"
    key_file.write_text(b64(EAB_KEY) + "\n")
    key_file.chmod(0o600)
    with AcmeServer("--eab-kid", "kid1", "--eab-hmac-file", key_file, env=env) as server:
        c = Client(server.directory, tmp_path / "root" / "ca.pem")
        url = c.directory["newAccount"]

        def binding(header_extra: dict) -> dict:
            protected = b64(json.dumps({"alg": "HS256", "kid": "kid1", "url": url, **header_extra}).encode())
            payload = b64(json.dumps(c.key.public_key().to_json()).encode())
            mac = hmac.new(EAB_KEY, f"{protected}.{payload}".encode(), hashlib.sha256).digest()
            return {"protected": protected, "payload": payload, "signature": b64(mac)}

        refused = c.post(url, {"termsOfServiceAgreed": True, "externalAccountBinding": binding(extra)},
                         use_jwk=True, check=False)
        status, kind, detail = _problem(refused)
        assert (status, kind) == (400, "malformed"), detail
        assert "externalAccountBinding has a 'crit' header parameter" in detail, detail
        taken = c.post(url, {"termsOfServiceAgreed": True, "externalAccountBinding": binding({})}, use_jwk=True)
        assert taken.status_code == 201  # the same binding without it makes the account


# --- 2: a CSR asking for more than serverAuth -------------------------------------------------------
def _csr(key, name: str, *extensions, subject=()) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(list(subject)))
    builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


KU_CA = x509.KeyUsage(True, False, False, False, False, True, True, False, False)
KU_LEAF = x509.KeyUsage(True, True, True, False, False, False, False, False, False)  # acme.sh's older default
REFUSED = {
    "clientAuth": ([(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)], (),
                   "clientAuth (no serverAuth)"),
    "must-staple": ([(x509.TLSFeature([x509.TLSFeatureType.status_request]), False)], (), "OCSP must-staple"),
    "keyCertSign": ([(KU_CA, True)], (), "(CA powers)"),
    "CA:TRUE": ([(x509.BasicConstraints(True, None), True)], (), "basicConstraints CA:TRUE"),
    "critical": ([(x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00"), True)], (),
                 "the critical extension 1.3.6.1.4.1.55555.1"),
    "emailAddress": ([], [x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@example.com")], "subject emailAddress"),
}
ISSUED = {
    "certbot": ([], ()),  # SAN only (acme.crypto_util.make_csr)
    "lego": ([], [x509.NameAttribute(NameOID.COMMON_NAME, "e.acme.test")]),  # CN and SAN
    "acme.sh": ([(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False),
                 (KU_LEAF, False)], ()),
    "openssl req": ([(x509.BasicConstraints(False, None), False), (KU_LEAF, True)],
                    [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Internet Widgits Pty Ltd"),
                     x509.NameAttribute(NameOID.COMMON_NAME, "e.acme.test")]),
}


def test_a_csr_asking_for_more_than_server_auth_is_bad_csr_and_real_clients_csrs_pass(acme) -> None:
    c = _account(acme.server.directory, acme.root)
    key = ec.generate_private_key(ec.SECP256R1())
    with HTTP01Responder(acme.http_port) as responder:
        for label, (extensions, subject, named) in REFUSED.items():
            url, order = c.new_order("e.acme.test")
            c.authorize(order, responder)
            order = c.wait(url)
            status, kind, detail = _problem(c.finalize(order, _csr(key, "e.acme.test", *extensions, subject=subject),
                                                       check=False))
            assert (status, kind) == (400, "badCSR"), (label, detail)
            assert named in detail and "which is not allowed" in detail, (label, detail)
            assert c.get(url)["status"] == "ready", label  # a CSR for what can be granted may follow
        for label, (extensions, subject) in ISSUED.items():
            url, order = c.new_order("e.acme.test")
            c.authorize(order, responder)
            order = c.wait(url)
            answer = c.finalize(order, _csr(key, "e.acme.test", *extensions, subject=subject), check=False)
            assert answer.status_code == 200, (label, answer.text)
            assert c.wait(url, until=("valid", "invalid"))["status"] == "valid", label
            key = ec.generate_private_key(ec.SECP256R1())


# --- minor: 409 with Content-Location --------------------------------------------------------------
def test_a_key_change_to_a_key_another_account_holds_names_it_in_content_location(acme) -> None:
    c, other = _account(acme.server.directory, acme.root), _account(acme.server.directory, acme.root)
    url = c.directory["keyChange"]
    new = other.key
    inner = sign({"account": c.kid, "oldKey": c.key.public_key().to_json()}, new, jose.ES256, url=url, nonce=None,
                 extra={"jwk": new.public_key().to_json()})
    answer = c.post(url, inner, check=False)
    assert answer.status_code == 409
    assert answer.headers["Content-Location"] == other.kid == answer.headers["Location"]


# --- 3: the server's own certificate at stop ----------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_server_revokes_its_own_certificate(tmp_path, sig) -> None:
    _root, _issuing, env = make_two_tier(tmp_path)
    serials = []
    for at_once in (False, True):  # at once: the signal may land before it serves its first request
        server = AcmeServer(env=env)
        serial = server.info["server_certificate"]["serial"]
        if not at_once:
            assert listed_serials(env)[serial] == "valid"  # while it runs
        server.stop(sig)
        serials.append(serial)
    listed = listed_serials(env)
    assert [listed[s] for s in serials] == ["revoked", "revoked"], listed
    rows = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)
    rows = rows["certificates"] if isinstance(rows, dict) else rows
    reasons = {row["serial"]: row["revocation_reason"] for row in rows}
    assert [reasons[s] for s in serials] == ["cessationOfOperation"] * 2, reasons


def test_the_certificate_of_a_killed_server_is_revoked_by_the_next_to_start_here(tmp_path) -> None:
    _root, _issuing, env = make_two_tier(tmp_path)
    killed = AcmeServer(env=env)
    orphan = killed.info["server_certificate"]["serial"]
    killed.proc.kill()
    killed.proc.wait(15)
    assert listed_serials(env)[orphan] == "valid"  # nothing could revoke it: its process died at once
    with AcmeServer(env=env) as server:
        server.wait_for_log(f"revoked the certificate of a server killed earlier here (serial {orphan})")
        assert listed_serials(env)[orphan] == "revoked"
        mine = server.info["server_certificate"]["serial"]
        assert listed_serials(env)[mine] == "valid"
        with AcmeServer(env=env) as beside:  # a live server's certificate is never taken for a dead one's
            assert listed_serials(env)[mine] == "valid"
            assert "killed earlier" not in beside.stderr
    assert listed_serials(env)[mine] == "revoked"


def test_a_renewal_in_place_revokes_the_certificate_it_replaced(tmp_path) -> None:
    """The maintenance round renews the server's certificate (made due here) and revokes the replaced one,
    superseded; the new one stays valid while the server runs."""
    import threading

    from certkit.acme.db import Database
    from certkit.acme.listener import Listener, maintain
    from certkit.acme.server import AcmeConfig, AcmeService
    from certkit.acme.state import AcmeState
    from certkit.store import CADirectory

    from conftest import PASSPHRASE

    _root, issuing, env = make_two_tier(tmp_path)
    ca = CADirectory(issuing).open()
    ca.unlock(PASSPHRASE.encode())
    service = AcmeService(ca, AcmeState(Database(ca.inventory)), AcmeConfig())
    service.start(workers=1)
    said: list[str] = []
    try:
        listener = Listener(ca, ["localhost"])
        first = listener.issued.serial_hex
        service.state.hold_listener(first)
        listener.due = lambda: listener.issued.serial_hex == first  # due once: the first certificate
        stop = threading.Event()
        worker = threading.Thread(target=maintain, args=(service, listener, stop, said.append, 0.05))
        worker.start()
        deadline = time.monotonic() + 60
        while not any("renewed" in line for line in said) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()  # seen at the next round: the one under way, which revokes the first certificate, ends first
        worker.join(60)
        assert not worker.is_alive(), said
    finally:
        service.stop()
    second = listener.issued.serial_hex
    assert second != first, said
    listed = listed_serials(env)
    assert (listed[first], listed[second]) == ("revoked", "valid"), (listed, said)
    rows = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)
    rows = rows["certificates"] if isinstance(rows, dict) else rows
    assert {row["serial"]: row["revocation_reason"] for row in rows}[first] == "superseded"
