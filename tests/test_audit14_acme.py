"""The ACME server, audit round fourteen (acme), each as a class:

1. a CSR whose extendedKeyUsage names serverAuth and another purpose than clientAuth (codeSigning,
   emailProtection, OCSPSigning, timeStamping, an unknown OID) was issued as plain serverAuth, the other
   purpose dropped in silence, where one without serverAuth is badCSR: all are badCSR now, naming the purpose;
   acme.sh's serverAuth, clientAuth and an anyExtendedKeyUsage still pass;
2. the server's own HTTPS certificate was recorded valid before the inventory named the process holding its
   key, so a server killed in between (at start, or renewing it in place) left a valid certificate whose key
   existed nowhere and that no later server revoked: it is named while its row is still pending now;
3. a ``kid`` that is an existing account's URL at another address than the request was sent to (localhost
   for 127.0.0.1) was refused as ``accountDoesNotExist`` "No account is known here", though the account
   exists: it is ``malformed`` naming the account's URL here now; an unknown account is still
   accountDoesNotExist. Its sibling: a key change whose ``account`` is the signer's URL at another address
   was said to name "another account than the one that signed it";
4. an http-01 redirect to the name validated written with a final dot (``http://NAME.:PORT/...``, the same
   host) failed the challenge as "a host this server does not validate ('NAME.' is not in canonical form)".
"""

from __future__ import annotations

import subprocess
import sys
import time

import josepy as jose
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier
from test_audit5_acme import _account
from test_audit11_acme import _problem
from test_audit13_acme import _csr

from acme_client import Client, HTTP01Responder, account_key, sign
from acme_helpers import AcmeServer, listed_serials, make_two_tier, serving, wait_for

NAMES = ("f.acme.test",)


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    yield from serving(tmp_path_factory.mktemp("acme-audit14"), NAMES)


# --- 1: an extendedKeyUsage with serverAuth and another purpose ------------------------------------
E = ExtendedKeyUsageOID
OTHER_PURPOSES = {
    "codeSigning": ([E.SERVER_AUTH, E.CODE_SIGNING], "codeSigning"),
    "emailProtection": ([E.CLIENT_AUTH, E.SERVER_AUTH, E.EMAIL_PROTECTION], "emailProtection"),
    "OCSPSigning": ([E.SERVER_AUTH, E.OCSP_SIGNING], "OCSPSigning"),
    "timeStamping": ([E.TIME_STAMPING, E.SERVER_AUTH], "timeStamping"),
    "unknown": ([E.SERVER_AUTH, ObjectIdentifier("1.3.6.1.4.1.55555.7")], "1.3.6.1.4.1.55555.7"),
}
PASSING = {"acme.sh": [E.SERVER_AUTH, E.CLIENT_AUTH], "serverAuth": [E.SERVER_AUTH],
           "any": [E.ANY_EXTENDED_KEY_USAGE]}


def _ready(c, responder, name: str):
    url, order = c.new_order(name)
    c.authorize(order, responder)
    return url, c.wait(url)


def test_an_eku_with_another_purpose_beside_server_auth_is_bad_csr_naming_it(acme) -> None:
    c = _account(acme.server.directory, acme.root)
    key = ec.generate_private_key(ec.SECP256R1())
    with HTTP01Responder(acme.http_port) as responder:
        for label, (purposes, named) in OTHER_PURPOSES.items():
            url, order = _ready(c, responder, "f.acme.test")
            csr = _csr(key, "f.acme.test", (x509.ExtendedKeyUsage(purposes), False))
            status, kind, detail = _problem(c.finalize(order, csr, check=False))
            assert (status, kind) == (400, "badCSR"), (label, detail)
            assert named in detail and "not a serverAuth certificate's purpose" in detail, (label, detail)
            assert c.get(url)["status"] == "ready", label  # a CSR for what can be granted may follow
        for label, purposes in PASSING.items():
            url, order = _ready(c, responder, "f.acme.test")
            answer = c.finalize(order, _csr(key, "f.acme.test", (x509.ExtendedKeyUsage(purposes), False)), check=False)
            assert answer.status_code == 200, (label, answer.text)
            leaf = x509.load_pem_x509_certificate(c.certificate(c.wait(url, ("valid",))["certificate"]).encode())
            assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [E.SERVER_AUTH]
            key = ec.generate_private_key(ec.SECP256R1())


# --- 2: the server's own certificate, killed right after it was issued ------------------------------
def test_a_server_killed_once_its_certificate_is_valid_leaves_it_to_the_next_server(tmp_path) -> None:
    _root, _issuing, env = make_two_tier(tmp_path)
    marker = tmp_path / "paused"
    paused_env = dict(env, CERTKIT_TEST_PAUSE_AT="listener", CERTKIT_TEST_PAUSE_FILE=str(marker))
    proc = subprocess.Popen([sys.executable, "-m", "certkit", "acme", "serve", "--port", "0", "--json"], env=paused_env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(marker.exists, 60, what="the server to pause with its certificate issued")
        time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait(15)
    orphans = [serial for serial, status in listed_serials(env).items() if status == "valid"]
    assert len(orphans) == 1, listed_serials(env)  # its certificate, valid, its key gone with the process
    with AcmeServer(env=env) as server:
        server.wait_for_log(f"revoked the certificate of a server killed earlier here (serial {orphans[0]})")
        assert listed_serials(env)[orphans[0]] == "revoked"


# --- 3: a kid naming an existing account at another address -----------------------------------------
def test_a_kid_of_an_account_at_another_address_is_malformed_naming_its_url_here(acme) -> None:
    c = _account(acme.server.directory, acme.root)
    there = Client(acme.server.directory.replace("127.0.0.1", "localhost"), acme.root)
    there.key, there.alg = c.key, c.alg
    account_id = c.kid.rsplit("/", 1)[1]
    for kid, expected in ((c.kid, "malformed"), (c.kid.rsplit("/", 1)[0] + "/no-such-account", "accountDoesNotExist")):
        there.kid = kid
        status, kind, detail = _problem(there.post(there.directory["newOrder"],
                                                   {"identifiers": [{"type": "dns", "value": "f.acme.test"}]},
                                                   check=False))
        assert (status, kind) == (400, expected), detail
        if expected == "malformed":
            assert f"'{there.directory['newAccount'].rsplit('/', 1)[0]}/acct/{account_id}'" in detail, detail
            assert "No account is known" not in detail
    there.kid = c.kid.replace("127.0.0.1", "localhost")  # its URL there works
    assert there.post(there.directory["newOrder"], {"identifiers": [{"type": "dns", "value": "f.acme.test"}]},
                      check=False).status_code == 201


def test_a_key_change_naming_its_account_at_another_address_says_so(acme) -> None:
    c = _account(acme.server.directory, acme.root)
    url, new = c.directory["keyChange"], account_key("ES256")[0]
    elsewhere = c.kid.replace("127.0.0.1", "localhost")
    for account, said in ((elsewhere, f"at another address ('{elsewhere}'); give its URL here, '{c.kid}'"),
                          (c.kid.rsplit("/", 1)[0] + "/no-such-account", "names another account")):
        inner = sign({"account": account, "oldKey": c.key.public_key().to_json()}, new, jose.ES256, url=url,
                     nonce=None, extra={"jwk": new.public_key().to_json()})
        status, kind, detail = _problem(c.post(url, inner, check=False))
        assert (status, kind) == (400, "malformed") and said in detail, detail


# --- 4: an http-01 redirect to the same name with a final dot ------------------------------------------
def test_an_http01_redirect_to_the_name_with_a_final_dot_is_followed(acme) -> None:
    import http.server
    import threading

    c = _account(acme.server.directory, acme.root)
    answers: dict[str, str] = {}
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Host", ""))
            if len(seen) == 1:  # the first request: redirected to the same name, absolute (final dot)
                self.send_response(302)
                self.send_header("Location", f"http://f.acme.test.:{acme.http_port}{self.path}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = answers.get(self.path.rsplit("/", 1)[-1], "").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", acme.http_port), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    try:
        url, order = c.new_order("f.acme.test")
        challenge = next(ch for ch in c.get(order["authorizations"][0])["challenges"] if ch["type"] == "http-01")
        answers[challenge["token"]] = c.key_authorization(challenge["token"])
        c.post(challenge["url"], {})
        done = c.wait(challenge["url"], until=("valid", "invalid"))
        assert done["status"] == "valid", done
        assert len(seen) == 2, seen
    finally:
        server.shutdown()
        server.server_close()
