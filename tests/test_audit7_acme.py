"""The ACME server's seventh audit (acme7), each against a real ``certkit acme serve`` on loopback:

1. keyCompromise for a certificate revoked earlier for another reason (superseded, after a renewal that
   kept its key) is recorded: the reason changes, and the renewal holding the same key is revoked with
   it; the key is never certified again (over ACME, and with ``certkit revoke``);
3. giving a nonce writes nothing: newNonce and every other answer leave the inventory as it was; a nonce
   is taken once, in the exact text given; a forged or altered one is badNonce;
4. a request line in absolute form (``GET https://host:port/directory``) is answered;
5. the directory and newNonce ignore a query; signed resources still refuse one;
6. ``--json`` gives the lifetime certificates get (``days``), not null.
(#2, redirects to hosts the server does not validate: tests/test_acme_validation.py.)"""

from __future__ import annotations

import json
import socket
import sqlite3
import ssl

import josepy as jose
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from test_audit5_acme import _account, _obtain, _revoke_body, _serial

from acme_client import AcmeError, Client, HTTP01Responder, make_csr
from acme_helpers import listed_serials, serving
from conftest import run_certkit

NAMES = ("k.acme.test", "n.acme.test")


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    yield from serving(tmp_path_factory.mktemp("acme7"), NAMES)


def _session(acme) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(acme.root)
    return session


def _rows(acme) -> dict[str, int]:
    with sqlite3.connect(acme.issuing / "inventory.sqlite3") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        counts = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}  # noqa: S608
    db.close()
    return counts


# --- 1. keyCompromise after another reason ----------------------------------------------------------------
def test_key_compromise_after_superseded_revokes_the_key_over_acme(acme) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with HTTP01Responder(acme.http_port) as responder:
        c = _account(acme.server.directory, acme.root)
        first = _obtain(c, responder, key, "k.acme.test")
        renewal = _obtain(c, responder, key, "k.acme.test")  # a renewal that kept the key
        assert c.post(c.directory["revokeCert"], _revoke_body(first, 4)).status_code == 200  # superseded
        holder = Client(acme.server.directory, acme.root)
        answer = holder.post(holder.directory["revokeCert"], _revoke_body(first, 1), key=jose.JWKEC(key=key),
                             alg=jose.ES256, use_jwk=True)
        assert answer.status_code == 200
        with pytest.raises(AcmeError) as again:  # a second keyCompromise is already recorded
            holder.post(holder.directory["revokeCert"], _revoke_body(first, 1), key=jose.JWKEC(key=key),
                        alg=jose.ES256, use_jwk=True)
        order_url, order = c.new_order("k.acme.test")
        c.authorize(order, responder)
        order = c.wait(order_url)
    assert again.value.type == "alreadyRevoked"
    listed = listed_serials(acme.env)
    assert listed[_serial(first)] == "revoked" and listed[_serial(renewal)] == "revoked", listed
    rows = json.loads(run_certkit("list", "--status", "revoked", "--json", env=acme.env, check=True).stdout)
    reasons = {r["serial"]: r["revocation_reason"] for r in rows["certificates"]}
    assert reasons[_serial(first)] == "keyCompromise" and reasons[_serial(renewal)] == "keyCompromise"
    with pytest.raises(AcmeError) as refused:
        c.finalize(order, make_csr(key, ["k.acme.test"]))
    assert refused.value.type == "badCSR" and "keyCompromise" in refused.value.problem["detail"]


@pytest.mark.parametrize("first_reason", ["superseded", "cessationOfOperation", "unspecified"])
def test_revoke_key_compromise_after_another_reason_on_the_command_line(ca_dir, ca_env, tmp_path,
                                                                        first_reason) -> None:
    run_certkit("issue-server", "web.test", "--out", tmp_path / "web", env=ca_env, check=True)
    old = json.loads(run_certkit("inspect", tmp_path / "web", "--json", env=ca_env, check=True).stdout)
    old_serial = old["items"][0]["serial"]
    run_certkit("renew", tmp_path / "web", env=ca_env, check=True)  # keeps the key
    new = json.loads(run_certkit("inspect", tmp_path / "web", "--json", env=ca_env, check=True).stdout)
    new_serial = new["items"][0]["serial"]
    first = json.loads(run_certkit("revoke", old_serial, "--reason", first_reason, "--json", env=ca_env,
                                   check=True).stdout)
    proc = run_certkit("revoke", old_serial, "--reason", "keyCompromise", "--json", env=ca_env, check=True)
    data = json.loads(proc.stdout)
    assert data["revocation_reason"] == "keyCompromise" and data["reason_was"] == first_reason
    assert data["revoked_at"] == first["revoked_at"] and data["also_revoked"] == [new_serial]
    human = run_certkit("revoke", new_serial, "--reason", "keyCompromise", env=ca_env)
    assert human.returncode == 1 and "already revoked" in human.stderr
    crl = tmp_path / "crl.pem"
    run_certkit("crl", "--out", crl, env=ca_env, check=True)
    from cryptography import x509

    entries = {format(e.serial_number, "X"): e.extensions.get_extension_for_class(x509.CRLReason).value.reason.name
               for e in x509.load_pem_x509_crl(crl.read_bytes())}
    assert entries == {old_serial.lstrip("0"): "key_compromise", new_serial.lstrip("0"): "key_compromise"}


def test_the_text_answer_says_what_the_reason_was(ca_dir, ca_env, tmp_path) -> None:
    run_certkit("issue-client", "alice", "--out", tmp_path / "alice", env=ca_env, check=True)
    run_certkit("revoke", tmp_path / "alice", "--reason", "superseded", env=ca_env, check=True)
    out = run_certkit("revoke", tmp_path / "alice", "--reason", "keyCompromise", env=ca_env, check=True).stdout
    assert "  reason    keyCompromise (it was revoked as superseded; now its key is known to be compromised)" in out
    assert "(when it was first revoked)" in out


# --- 3. nonces ----------------------------------------------------------------------------------------------
def test_giving_nonces_writes_nothing(acme) -> None:
    session = _session(acme)
    directory = acme.server.directory
    session.get(directory, timeout=30)
    before = _rows(acme)
    nonces = set()
    for _ in range(40):
        nonces.add(session.head(directory.replace("/directory", "/acme/new-nonce"), timeout=30)
                   .headers["Replay-Nonce"])
        nonces.add(session.get(directory, timeout=30).headers["Replay-Nonce"])
        nonces.add(session.get(directory.replace("/directory", "/nothing"), timeout=30).headers["Replay-Nonce"])
    assert len(nonces) == 120
    assert _rows(acme) == before


@pytest.mark.parametrize("how", ["replayed", "respelled", "altered", "forged"])
def test_a_nonce_is_taken_once_in_the_text_given(acme, how) -> None:
    c = _account(acme.server.directory, acme.root)
    nonce = c.nonce()
    used = _post_with(c, nonce)
    assert used.status_code == 200, used.text
    bad = {"replayed": nonce, "respelled": nonce + "=" * 4,
           "altered": nonce[:5] + ("A" if nonce[5] != "A" else "B") + nonce[6:],
           "forged": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}[how]
    refused = _post_with(c, bad)
    assert refused.status_code == 400 and refused.json()["type"].endswith(":badNonce"), refused.text
    assert refused.headers.get("Replay-Nonce")


def _post_with(c: Client, nonce: str) -> requests.Response:
    from acme_client import sign

    body = sign({}, c.key, c.alg, url=c.kid, nonce=nonce, kid=c.kid)
    return c.session.post(c.kid, data=json.dumps(body), headers={"Content-Type": "application/jose+json"}, timeout=30)


# --- 4, 5. request targets --------------------------------------------------------------------------------
def _raw(acme, request_line: str) -> tuple[int, bytes]:
    host, port = "127.0.0.1", acme.server.info["port"]
    context = ssl.create_default_context(cafile=str(acme.root))
    context.check_hostname = False
    with socket.create_connection((host, port), timeout=30) as sock, \
            context.wrap_socket(sock, server_hostname="localhost") as tls:
        tls.sendall(f"{request_line}\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _sep, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def test_a_request_line_in_absolute_form_is_answered(acme) -> None:
    port = acme.server.info["port"]
    status, body = _raw(acme, f"GET https://127.0.0.1:{port}/directory HTTP/1.1")
    assert status == 200 and "newNonce" in json.loads(body)
    status, _body = _raw(acme, f"HEAD https://127.0.0.1:{port}/acme/new-nonce HTTP/1.1")
    assert status == 200


def test_the_directory_and_new_nonce_ignore_a_query_signed_resources_refuse_one(acme) -> None:
    session = _session(acme)
    assert session.get(acme.server.directory + "?x=1", timeout=30).json()["newAccount"]
    assert session.head(acme.server.directory.replace("/directory", "/acme/new-nonce?x=1"),
                        timeout=30).headers.get("Replay-Nonce")
    c = _account(acme.server.directory, acme.root)
    with pytest.raises(AcmeError) as refused:
        c.post(c.kid + "?x=1", {})
    assert refused.value.type == "malformed" and "takes no query string" in refused.value.problem["detail"]


# --- 6. --json days ----------------------------------------------------------------------------------------
def test_json_gives_the_lifetime_certificates_get(acme) -> None:
    assert acme.server.info["days"] == 200 and acme.server.info["days_default"] is True


# --- regress8 #1: redirects on a server without --allow-domain; another host's page is never echoed ---------------
def test_without_allow_domain_a_redirect_stays_on_the_name(tmp_path) -> None:
    from test_acme_validation import PREFIX, redirected

    from acme_helpers import AcmeServer, make_two_tier, ports

    _root, _issuing, env = make_two_tier(tmp_path)  # no name constraints
    (http_port,) = ports(1)
    server = AcmeServer("--http01-port", http_port, "--resolve", "r.acme.test=127.0.0.1", env=env)
    try:
        c = Client(server.directory, tmp_path / "root" / "ca.pem")
        c.register()
        ch, done, http = redirected(c, http_port, "r.acme.test", f"http://localhost:{http_port}/admin",
                                    b"internal-admin-page")
    finally:
        server.stop()
    assert done["status"] == "invalid", done
    detail = done["error"]["detail"]
    assert "follows redirects only on the name it validates" in detail and "internal-admin-page" not in detail
    assert [path for _host, path in http.seen] == [PREFIX + ch["token"]]


def test_another_hosts_wrong_answer_is_given_by_its_size(acme) -> None:
    from test_acme_validation import redirected

    _ch, done, _http = redirected(_account(acme.server.directory, acme.root), acme.http_port, "k.acme.test",
                                  f"http://n.acme.test:{acme.http_port}/page", b"another-machines-page")
    detail = done["error"]["detail"]
    assert "answered '21 bytes', not the key authorization" in detail and "another-machines-page" not in detail
