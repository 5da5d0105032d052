"""The ACME server, audit round thirty-one (acme):

1. a challenge left ``pending`` in an authorization that can no longer change (valid by its other challenge,
   invalid after a failed one, deactivated by the client, expired) was answered with ``Retry-After: 1``, as if
   polling it could lead somewhere: a client waiting on it polled every second until its own timeout. Retry-After
   now goes only with a challenge that can still change: being validated, or pending in a pending authorization.
2. a deactivation of an authorization that cannot be deactivated (invalid after a failed challenge, expired) was
   answered 200 with the authorization as it was, as if the request had been taken; RFC 8555 7.5.2 asks for an
   error when the server does not accept it. It is now ``malformed`` (400), naming the status; a pending or valid
   one is deactivated as before, and one deactivated already is answered as it is.
3. a contact whose scheme was written in capitals (``MAILTO:ops@example.com``, ``Mailto:``) was refused as
   ``unsupportedContact``, "Only mailto: contacts are accepted, not 'MAILTO:...'": a URI scheme is
   case-insensitive (RFC 3986 3.1; Boulder parses it so). It is taken, at newAccount and in an account update,
   and stored with the scheme in lower case, so one address written both ways is one contact; another scheme is
   still ``unsupportedContact`` and a bad address ``invalidContact``, whatever the case of ``mailto``.
4. a challenge answered (``{}``) while another challenge of its authorization was being validated was answered
   200 ``pending`` with Retry-After and never validated: the client's answer was dropped in silence. It is now
   ``malformed``, naming the challenge being validated, whose outcome decides the authorization.
5. an identifier a client names was handed to the database as it came: a ``kid`` with a lone surrogate
   (``"\\udc80"`` in the JSON) was a 500 with a traceback in the log (no database encodes it), on SQLite and
   PostgreSQL; a ``kid`` or an orders-list ``cursor`` holding a NUL (``%00``) was, on PostgreSQL, a 503 "the
   database is unavailable; try again later" with Retry-After, for the client's own mistake. Only what could be an
   identifier the server made (base64url) is looked up now, in a kid, a cursor or a URL: the others are
   ``accountDoesNotExist`` and ``malformed``, as an unknown one always was.
"""

from __future__ import annotations

import pytest
from test_acme_audit3 import _backdate
from test_audit5_acme import _account

from acme_client import AcmeError, Client, HTTP01Responder, sign
from acme_helpers import AcmeServer, serving

NAMES = tuple(f"r{i}.acme.test" for i in range(1, 12))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    yield from serving(tmp_path_factory.mktemp("acme31"), NAMES)


def _client(setup) -> Client:
    return _account(setup.server.directory, setup.root)


def _challenges(c: Client, authz_url: str) -> dict[str, str]:
    """type -> URL of each challenge of the authorization (all of them, while it is pending)."""
    return {ch["type"]: ch["url"] for ch in c.get(authz_url)["challenges"]}


# --- 1. Retry-After only on a challenge that can still change ---------------------------------------------------
@pytest.mark.parametrize("closed", ["valid", "invalid", "deactivated", "expired"])
def test_a_pending_challenge_of_a_closed_authorization_is_not_to_be_polled(setup, closed) -> None:
    c = _client(setup)
    name = {"valid": "r1", "invalid": "r2", "deactivated": "r3", "expired": "r4"}[closed] + ".acme.test"
    order_url, order = c.new_order(name)
    authz_url = order["authorizations"][0]
    urls = _challenges(c, authz_url)
    # while the authorization is open, its challenges are worth polling
    for url in urls.values():
        fetched = c.post(url)
        assert fetched.json()["status"] == "pending" and fetched.headers.get("Retry-After") == "1", fetched.headers
    if closed in ("valid", "invalid"):
        with HTTP01Responder(setup.http_port, wrong=closed == "invalid") as responder:
            c.authorize(order, responder)
            assert c.wait(authz_url, ("valid", "invalid"))["status"] == closed
    elif closed == "deactivated":
        assert c.post(authz_url, {"status": "deactivated"}).json()["status"] == "deactivated"
    else:
        _backdate(setup, authz_url)
    assert c.get(authz_url)["status"] == closed
    left = c.post(urls["tls-alpn-01"])  # the challenge the client never answered
    assert left.json()["status"] == "pending", left.json()
    assert "Retry-After" not in left.headers, (closed, dict(left.headers))
    assert f'<{authz_url}>;rel="up"' in left.headers["Link"]
    if closed in ("valid", "invalid"):  # the one answered has its outcome, with nothing to wait for either
        answered = c.post(urls["http-01"])
        assert answered.json()["status"] == closed and "Retry-After" not in answered.headers


def test_a_challenge_of_an_open_authorization_is_still_to_be_polled(setup) -> None:
    """The other side: pending in a pending authorization (the client may answer it), Retry-After: 1."""
    c = _client(setup)
    _order_url, order = c.new_order("r5.acme.test")
    for url in _challenges(c, order["authorizations"][0]).values():
        fetched = c.post(url)
        assert fetched.json()["status"] == "pending" and fetched.headers["Retry-After"] == "1"


# --- 2. deactivating an authorization that cannot be deactivated is refused -------------------------------------
@pytest.mark.parametrize("closed", ["invalid", "expired-pending", "expired-valid"])
def test_an_authorization_that_cannot_be_deactivated_is_refused_not_answered_200(setup, closed) -> None:
    """RFC 8555 7.5.2: only a pending or valid authorization becomes deactivated, and a deactivation the server
    does not accept gets an error. An invalid or expired one was answered 200 with its own status, as if the
    client's request had been taken."""
    c = _client(setup)
    name = {"invalid": "r6", "expired-pending": "r7", "expired-valid": "r8"}[closed] + ".acme.test"
    order_url, order = c.new_order(name)
    authz_url = order["authorizations"][0]
    if closed != "expired-pending":
        with HTTP01Responder(setup.http_port, wrong=closed == "invalid") as responder:
            c.authorize(order, responder)
            c.wait(authz_url, ("valid", "invalid"))
    if closed.startswith("expired"):
        _backdate(setup, authz_url)
    status = closed.split("-")[0]
    with pytest.raises(AcmeError) as refused:
        c.post(authz_url, {"status": "deactivated"})
    assert (refused.value.status, refused.value.type) == (400, "malformed"), refused.value.problem
    detail = refused.value.problem["detail"]
    assert f"The authorization is {status}" in detail and "only a pending or valid" in detail, detail
    assert refused.value.response.headers.get("Replay-Nonce")
    assert c.get(authz_url)["status"] == status  # nothing changed


def test_pending_valid_and_deactivated_authorizations_are_deactivated_with_200(setup) -> None:
    """The other side: pending and valid become deactivated (200, the updated object, its order invalid when it was
    pending); asking again of a deactivated one answers it as it is."""
    c = _client(setup)
    pending_url, pending = c.new_order("r9.acme.test")
    valid_url, valid = c.new_order("r10.acme.test")
    with HTTP01Responder(setup.http_port) as responder:
        c.authorize(valid, responder)
        assert c.wait(valid_url)["status"] == "ready"
    for authz_url in (pending["authorizations"][0], valid["authorizations"][0]):
        for _ in range(2):
            answer = c.post(authz_url, {"status": "deactivated"})
            assert answer.status_code == 200 and answer.json()["status"] == "deactivated", answer.text
            assert "Retry-After" not in answer.headers
    assert c.get(pending_url)["status"] == c.get(valid_url)["status"] == "invalid"


# --- 3. the mailto scheme in any case ------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", ["MAILTO", "Mailto", "mailTo"])
def test_a_mailto_contact_is_taken_whatever_the_case_of_its_scheme(setup, scheme) -> None:
    c = Client(setup.server.directory, setup.root)
    created = c.register(contact=[f"{scheme}:ops@acme.test", "mailto:ops@acme.test", f"{scheme}:dev@acme.test"])
    assert created.status_code == 201, created.text
    assert created.json()["contact"] == ["mailto:ops@acme.test", "mailto:dev@acme.test"]
    updated = c.post(c.kid, {"contact": [f"{scheme}:new@acme.test"]})
    assert updated.json()["contact"] == ["mailto:new@acme.test"]
    assert c.get(c.kid)["contact"] == ["mailto:new@acme.test"]  # as stored
    for contact, kind in ((f"{scheme}:not an address", "invalidContact"), (f"{scheme}:a@@acme.test", "invalidContact"),
                          (f"{scheme}ops@acme.test", "unsupportedContact"), ("tel:+15555550100", "unsupportedContact"),
                          ("HTTPS://acme.test/ops", "unsupportedContact")):
        with pytest.raises(AcmeError) as refused:  # an account update
            c.post(c.kid, {"contact": [contact]})
        assert refused.value.type == kind, (contact, refused.value.problem)
        with pytest.raises(AcmeError) as refused:  # newAccount
            Client(setup.server.directory, setup.root).register(contact=[contact])
        assert refused.value.type == kind, (contact, refused.value.problem)
    assert c.get(c.kid)["contact"] == ["mailto:new@acme.test"]  # nothing changed by the refusals


# --- 4. a challenge answered while another of its authorization is being validated -------------------------------
class _SlowResponder(HTTP01Responder):
    """Answers http-01 rightly, after ``delay`` seconds: longer than the server waits before it answers a challenge
    POST "processing"."""

    delay = 4.0

    def fetched(self) -> None:
        import time

        time.sleep(self.delay)


def test_a_challenge_answered_while_another_of_its_authorization_is_validated_is_refused_not_dropped(setup) -> None:
    """The second challenge was answered 200 "pending" with Retry-After, and never validated: the client believed it
    was being checked. It is now malformed, naming the challenge being validated; the first decides the
    authorization, and answering it again meanwhile still answers it as it is (processing)."""
    c = _client(setup)
    order_url, order = c.new_order("r11.acme.test")
    authz_url = order["authorizations"][0]
    urls = _challenges(c, authz_url)
    with _SlowResponder(setup.http_port) as responder:
        http01 = c.authorize(order, responder)[0]
        assert http01["status"] == "processing", http01
        with pytest.raises(AcmeError) as refused:
            c.post(urls["tls-alpn-01"], {})
        assert (refused.value.status, refused.value.type) == (400, "malformed"), refused.value.problem
        detail = refused.value.problem["detail"]
        assert "tls-alpn-01 challenge was not started" in detail and "the http-01 challenge" in detail, detail
        again = c.post(urls["http-01"], {})  # the one under way, answered again: as it is
        assert again.json()["status"] in ("processing", "valid") and again.status_code == 200
        assert c.wait(authz_url, ("valid", "invalid"))["status"] == "valid"
    assert c.wait(order_url)["status"] == "ready"
    assert c.post(urls["tls-alpn-01"]).json()["status"] == "pending"  # never started
    with pytest.raises(AcmeError) as closed:  # and now closed, as before
        c.post(urls["tls-alpn-01"], {})
    assert "The authorization is valid; its challenges are closed." in closed.value.problem["detail"]


# --- 5. a kid or a cursor no server made is not handed to the database ----------------------------------------
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_kid_or_cursor_that_is_no_identifier_is_unknown_not_a_database_failure(tmp_path, request, backend) -> None:
    from test_acme_concurrency import _inventory, _two_tier

    root, _issuing, env = _two_tier(tmp_path, _inventory(request, backend))
    with AcmeServer(env=env) as server:
        c = Client(server.directory, root)
        c.register()
        for tail in ("\udc80", "\x00", "\u00e9", "x" * 60):
            forged = sign(None, c.key, c.alg, url=c.kid, nonce=c.nonce(), kid=c.kid + tail)
            with pytest.raises(AcmeError) as unknown:
                c.send(c.kid, forged)
            said = (unknown.value.status, unknown.value.type)
            assert said == (400, "accountDoesNotExist"), (tail, unknown.value.problem)
            assert unknown.value.response.headers.get("Replay-Nonce")
        for cursor in ("%00", "a%00b", "%ED%B2%80", "%C3%A9"):
            with pytest.raises(AcmeError) as unknown:
                c.post(f"{c.kid}/orders?cursor={cursor}")
            assert (unknown.value.status, unknown.value.type) == (400, "malformed"), (cursor, unknown.value.problem)
            assert "names no order of this account" in unknown.value.problem["detail"]
        # what the server made is read as before
        order_url, _order = c.new_order("cursor.example.test")
        assert c.post(f"{c.kid}/orders").json()["orders"] == [order_url]
        assert c.post(f"{c.kid}/orders?cursor={order_url.rsplit('/', 1)[1]}").json()["orders"] == []
        assert c.get(c.kid)["status"] == "valid"
    assert "Traceback" not in server.stderr and "cannot be used" not in server.stderr, server.stderr
