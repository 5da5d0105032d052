"""The ACME server, audit round eighteen (acme), each as a class:

1. the work a server killed outright (SIGKILL, the OOM killer, a power cut of its process) left was taken
   over only by the next server to *start* on its host, never by a server already running beside it on the
   same CA (docs/acme.md: several servers on one CA share the state). Until some server restarted, the order
   it was issuing for read ``processing`` with ``Retry-After: 1`` for good (its client polled an order nobody
   would ever finish), the challenge it was validating read ``processing`` too, and its own HTTPS
   certificate stayed valid in the inventory though its key had died with it. A running server now takes
   that work over at its maintenance round, as a starting server does: the order becomes ``invalid``
   (its client orders again), the challenge is validated again, the certificate is revoked
   (cessationOfOperation); what a live server is doing is still left alone;
2. docs/acme.md said a certificate a client's renewal replaced is left out of ``list --expiring`` "since its
   client has replaced it". A rehearsal against this server (``certbot renew --dry-run --server URL``,
   ``certbot certonly --dry-run``) gets a real certificate that certbot throws away, recorded as the renewal
   of the one certbot still serves: that one is marked renewed and hidden from ``--expiring`` while the
   discarded one is listed. Nothing in ACME tells the server, so the page says so now, how to put it right
   (a forced renewal), and that ``certbot renew --dry-run`` without ``--server`` tests Let's Encrypt's
   staging server instead of this one;
3. RFC 8555 6.3 says the server MUST allow POST-as-GET requests for the directory and newNonce, beside GET:
   both answered ``405`` ("POST is not allowed here"). They answer a POST-as-GET now, checked as every signed
   request is (an account's JWS, its nonce used up, no payload, no query); and every answer of newNonce,
   its refusals too, says ``Cache-Control: no-store`` (RFC 8555 7.2: a refusal carries a nonce as well);
4. RFC 8555 7.3.2 says the server MUST ignore updates to an account's ``status`` (but deactivation) and
   ``orders``: an update carrying ``"status": "valid"``, as acmez (Caddy's ACME library) sends its whole
   account object back, was refused as malformed. Such a status is ignored now, and the update applied;
5. a JWS without its ``url`` was refused with "The JWS url header 'None' is not the URL it was sent to":
   it is said to carry none now.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import pytest
from test_acme_clients import start_server
from test_acme_concurrency import (
    BACKENDS,
    HeldResponder,
    _challenge,
    _finalize_in_background,
    _inventory,
    _let_go_once,
    _paused,
    _ready_order,
    _resolve,
    _two_tier,
)
from test_audit16_acme import _expiring, _rows

from acme_client import Client, b64, sign
from acme_helpers import AcmeServer, certbot, listed_serials, module_server, ports, serial_of, wait_for
from conftest import PASSPHRASE, REPO, free_port, require, run_certkit


# --- 1: a running server takes over what a server killed beside it left ------------------------------
def _running_server(issuing: Path, http_port: int, names: tuple[str, ...]):
    """Server B, in this process, on the CA of ``issuing``: (service, listener, log lines). Its
    maintenance round runs every 50 ms (the real ``maintain``; a server's is every minute)."""
    from certkit.acme.challenges import Validator
    from certkit.acme.db import Database
    from certkit.acme.listener import Listener
    from certkit.acme.policy import Policy
    from certkit.acme.server import AcmeConfig, AcmeService
    from certkit.acme.state import AcmeState
    from certkit.store import CADirectory

    ca = CADirectory(issuing).open()
    ca.unlock(PASSPHRASE.encode())
    said: list[str] = []
    validator = Validator(http_port=http_port, resolve={name: ["127.0.0.1"] for name in names})
    config = AcmeConfig(policy=Policy.build(["two.test"]), validator=validator)
    service = AcmeService(ca, AcmeState(Database(ca.inventory)), config, log=said.append)
    service.start(workers=1)
    listener = Listener(ca, ["localhost"], hold=lambda serial: service.state.hold_listener(serial, renews=True))
    return service, listener, said


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_running_server_takes_over_what_a_server_killed_beside_it_left(tmp_path: Path, request,
                                                                         backend: str) -> None:
    from certkit.acme.listener import maintain, retire

    root, issuing, env = _two_tier(tmp_path, _inventory(request, backend))
    marker = tmp_path / "pause"
    (http_port,) = ports(1)
    names = ("k.two.test", "w.two.test")
    service, listener, said = _running_server(issuing, http_port, names)
    stop = threading.Event()
    worker = threading.Thread(target=maintain, args=(service, listener, stop, said.append, 0.05))
    worker.start()
    first = _let_go_once(marker)  # A's own certificate at its start passes the pause
    a = AcmeServer("--allow-domain", "two.test", "--http01-port", http_port, *_resolve(*names),
                   env=_paused(env, marker))
    first.join()
    a_serial = a.info["server_certificate"]["serial"]
    state = service.state
    try:
        with HeldResponder(http_port) as responder:
            responder.release()
            c = Client(a.directory, root)
            c.register()
            order_url, order = _ready_order(c, responder, "k.two.test")
            # A validating a challenge (the answer held back) and issuing a certificate (held after signing).
            responder.held.clear()
            _w_url, w_order = c.new_order("w.two.test")
            challenge = _challenge(c, w_order["authorizations"][0])
            responder.add(None, challenge["token"], c.key_authorization(challenge["token"]))
            assert c.post(challenge["url"], {}).json()["status"] == "processing"
            wait_for(lambda: len(responder.requests) == 2, what="A's validation request")
            finalize, _out = _finalize_in_background(c, order, "k.two.test")  # its answer: the kill's
            wait_for(marker.exists, timeout=60, interval=0.02, what="A inside the finalize")
            order_id, challenge_id = order_url.rsplit("/", 1)[1], challenge["url"].rsplit("/", 1)[1]
            # B's rounds leave a live server's work alone.
            assert c.get(order_url)["status"] == "processing"
            assert state.challenge(challenge_id)[0].status == "processing"
            assert listed_serials(env)[a_serial] == "valid"
            a.stop(signal.SIGKILL)
            finalize.join(60)
            marker.unlink()
            responder.release()
            # B takes over, without a restart of anything.
            after = wait_for(lambda: (o := state.order(order_id)).status != "processing" and o, 60,
                             what="A's order settled by the running server")
            assert after.status == "invalid", after
            assert after.error["detail"] == ("The server stopped while issuing this order's certificate; place a "
                                             "new order."), after.error
            done = wait_for(lambda: (ch := state.challenge(challenge_id)[0]).status != "processing" and ch, 60,
                            what="A's challenge validated by the running server")
            assert done.status == "valid", done
            assert len(responder.requests) == 3, responder.requests  # validated again, by B
            wait_for(lambda: listed_serials(env)[a_serial] == "revoked", 60, what="A's certificate revoked")
            assert state.authorization(w_order["authorizations"][0].rsplit("/", 1)[1]).status == "valid"
    finally:
        stop.set()
        worker.join(30)
        a.stop(signal.SIGKILL)
        retire(service.ca, service.state, listener.issued.serial_hex, "cessationOfOperation", None)
        service.stop()
    log = "\n".join(said)
    assert "1 order(s) interrupted while issuing" in log, log
    assert "http-01 for w.two.test: valid" in log, log
    assert f"revoked the certificate of a server killed earlier here (serial {a_serial})" in log, log
    assert "maintenance failed" not in log, log
    rows = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]
    assert [r["revocation_reason"] for r in rows if r["serial"] == a_serial] == ["cessationOfOperation"]


# --- 2: a client's rehearsal is a renewal, as the page says ------------------------------------------
def test_a_certbot_rehearsal_against_this_server_renews_the_certificate_served_as_the_page_says(
        tmp_path: Path, monkeypatch) -> None:
    """``certbot renew --dry-run --server URL`` gets a real certificate from this server and throws it away:
    the certificate certbot serves is then marked renewed and left out of ``list --expiring``, the discarded
    one listed instead; a forced renewal makes the one served the newest again. Without ``--server`` the
    rehearsal goes to Let's Encrypt's staging server (here through a proxy that answers nothing, so no
    request leaves this machine). docs/acme.md said the previous certificate was left out "since its client
    has replaced it", and nothing of rehearsals."""
    require("certbot")
    server, root, env, http_port, _ = start_server(tmp_path, "dry.acme.test", extra=("--days", "10"))
    work = tmp_path / "certbot"
    live = work / "conf" / "live" / "dry.acme.test"
    standalone = ("--standalone", "--http-01-port", str(http_port), "--http-01-address", "127.0.0.1")
    with server:
        got = certbot(work, "certonly", "--agree-tos", "--register-unsafely-without-email", "--server",
                      server.directory, "-d", "dry.acme.test", *standalone, root=root)
        assert got.returncode == 0, got.stdout + got.stderr
        served = serial_of(live / "cert.pem")
        rehearsal = certbot(work, "renew", "--dry-run", "--no-random-sleep-on-renew", "--server", server.directory,
                            root=root)
        assert rehearsal.returncode == 0 and "simulated renewal" in rehearsal.stdout, rehearsal.stdout
        assert serial_of(live / "cert.pem") == served  # certbot serves what it served
        rows = _rows(env)
        discarded = rows[served]["renewed_by"]
        assert discarded not in (None, served) and rows[discarded]["status"] == "valid", rows[served]
        assert _expiring(env) & {served, discarded} == {discarded}
        renewed = certbot(work, "renew", "--force-renewal", "--no-random-sleep-on-renew", root=root)
        assert renewed.returncode == 0, renewed.stdout + renewed.stderr
        now = serial_of(live / "cert.pem")
        assert _expiring(env) & {served, discarded, now} == {now}
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    elsewhere = certbot(work, "renew", "--dry-run", "--no-random-sleep-on-renew", root=root)
    assert elsewhere.returncode != 0 and "acme-staging-v02.api.letsencrypt.org" in elsewhere.stdout + elsewhere.stderr
    page = " ".join((REPO / "docs" / "acme.md").read_text().split())
    for said in ("so a rehearsal is a renewal too. `certbot renew --dry-run --server URL`",
                 "the certificate certbot still serves is marked `valid (renewed)` and left out of `list --expiring`, "
                 "and the discarded one is listed there instead",
                 "`certbot renew --force-renewal` makes the certificate served the newest again",
                 "Without `--server`, `certbot renew --dry-run` rehearses against Let's Encrypt's staging server"):
        assert said in page, said



# --- 3: POST-as-GET of the directory and newNonce --------------------------------------------------
@pytest.mark.parametrize("resource", ["directory", "newNonce"])
def test_the_directory_and_new_nonce_answer_post_as_get(tmp_path: Path, resource: str) -> None:
    """RFC 8555 6.3: "The server MUST allow GET requests for the directory and newNonce resources (see
    Section 7.1), in addition to POST-as-GET requests for these resources". Both answered 405 "POST is not
    allowed here". A POST-as-GET is a real one: signed by an account, its nonce used up, with the fresh
    nonce of every signed answer; a payload, a query, an unsigned body or a key alone are refused."""
    setup = module_server(tmp_path, [])
    try:
        c = Client(setup.server.directory, setup.root)
        c.register()
        url = setup.server.directory if resource == "directory" else c.directory["newNonce"]
        nonce = c.nonce()
        got = c.send(url, sign(None, c.key, c.alg, url=url, nonce=nonce, kid=c.kid), check=False)
        assert got.status_code == 200, got.text
        fresh = got.headers["Replay-Nonce"]
        assert fresh and fresh != nonce
        if resource == "directory":
            assert got.json() == c.session.get(url, timeout=30).json()
        else:
            assert got.headers["Cache-Control"] == "no-store" and got.content == b""
        assert c.post(c.kid).status_code == 200  # the fresh nonce is a nonce (c.post uses it)
        replayed = c.send(url, sign(None, c.key, c.alg, url=url, nonce=nonce, kid=c.kid), check=False)
        assert replayed.status_code == 400 and replayed.json()["type"].endswith(":badNonce"), replayed.text
        refusals = {"a payload": (url, sign({}, c.key, c.alg, url=url, nonce=c.nonce(), kid=c.kid)),
                    "a query": (url + "?x=1", sign(None, c.key, c.alg, url=url + "?x=1", nonce=c.nonce(),
                                                   kid=c.kid)),
                    "a key, no account": (url, sign(None, c.key, c.alg, url=url, nonce=c.nonce()))}
        for what, (where, jws) in refusals.items():
            refused = c.send(where, jws, check=False)
            assert refused.status_code == 400 and refused.json()["type"].endswith(":malformed"), (what, refused.text)
        unsigned = c.session.post(url, data=b"", headers={"Content-Type": "application/jose+json"}, timeout=30)
        assert unsigned.status_code == 400 and unsigned.json()["type"].endswith(":malformed"), unsigned.text
        assert c.session.get(url, timeout=30).status_code in (200, 204)  # GET as before
        put = c.session.put(url, timeout=30)
        assert put.status_code == 405 and put.headers["Allow"] == "GET, HEAD, POST", put.headers
        if resource == "newNonce":  # RFC 8555 7.2: no answer of newNonce is cached, its refusals neither
            assert [r.headers.get("Cache-Control") for r in (replayed, unsigned, put)] == ["no-store"] * 3
    finally:
        setup.server.stop()
    assert "Traceback" not in setup.server.stderr, setup.server.stderr


# --- 4: an account update that sends the account object back ---------------------------------------
def test_an_account_update_ignores_the_status_and_orders_a_client_sends_back(tmp_path: Path) -> None:
    """RFC 8555 7.3.2: "The server MUST ignore any updates to the 'orders' field, 'termsOfServiceAgreed'
    field, the 'status' field (except as required by Section 7.3.6), or any other fields it does not
    recognize." acmez (the ACME library of Caddy) updates an account by sending its whole account object
    back: ``status`` "valid" (its JSON tag has no omitempty), ``orders``, ``location``. That was refused as
    malformed ("An account's status can only be changed to "deactivated", not "valid"")."""
    setup = module_server(tmp_path, [])
    try:
        c = Client(setup.server.directory, setup.root)
        c.register(contact=["mailto:old@acme.test"])
        account = c.get(c.kid)
        sent_back = {"status": account["status"], "contact": ["mailto:new@acme.test"], "termsOfServiceAgreed": True,
                     "orders": account["orders"], "location": c.kid}  # acmez's Account, as json.Marshal writes it
        updated = c.post(c.kid, sent_back, check=False)
        assert updated.status_code == 200, updated.text
        assert updated.json()["contact"] == ["mailto:new@acme.test"] and updated.json()["status"] == "valid"
        assert c.post(c.kid, {"status": "revoked"}).json()["status"] == "valid"  # not the client's to change
        assert c.get(c.kid) == dict(account, contact=["mailto:new@acme.test"])
        refused = c.post(c.kid, {"status": None}, check=False)  # a field of the wrong type is still said
        assert refused.status_code == 400 and refused.json()["type"].endswith(":malformed"), refused.text
        done = c.post(c.kid, {"status": "deactivated", "orders": account["orders"]}).json()
        assert done["status"] == "deactivated"
    finally:
        setup.server.stop()
    assert "Traceback" not in setup.server.stderr, setup.server.stderr


# --- 5: a JWS without its url ------------------------------------------------------------------------
def test_a_jws_without_its_url_is_said_to_lack_one(tmp_path: Path) -> None:
    """RFC 8555 6.4: the protected header carries the URL the request is sent to. One that carried none was
    refused as "The JWS url header 'None' is not the URL it was sent to": Python's None, shown as a URL."""
    setup = module_server(tmp_path, [])
    try:
        c = Client(setup.server.directory, setup.root)
        c.register()
        protected = b64(json.dumps({"alg": c.alg.name, "kid": c.kid, "nonce": c.nonce()}).encode())
        signature = c.alg.sign(c.key.key, f"{protected}.".encode())
        refused = c.send(c.kid, {"protected": protected, "payload": "", "signature": b64(signature)}, check=False)
        problem = refused.json()
        assert refused.status_code == 403 and problem["type"].endswith(":unauthorized"), problem
        assert problem["detail"] == (f"The JWS carries no 'url' header parameter; it must be the URL it is sent to "
                                     f"({c.kid}), RFC 8555 6.4."), problem
        assert "None" not in problem["detail"]
    finally:
        setup.server.stop()
