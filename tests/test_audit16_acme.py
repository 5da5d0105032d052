"""The ACME server, audit round sixteen (acme), each as a class:

1. a certificate an ACME client renewed (certbot ``renew``, lego ``renew``, Caddy's own renewals: a new
   order of the same account for the same names) was recorded as a stranger to the one it replaced: ``certkit
   list`` never marked the old one "(renewed)" and ``list --expiring`` kept showing it as due, which its help
   says it leaves out "since they need no action". A new certificate is now recorded as renewing the account's
   newest one for exactly the same identifiers with a key of the same type that is still valid and not
   renewed yet; another account's, another name set's, another key type's (an RSA and an ECDSA certificate
   side by side) and a revoked one are not renewed by it, and a predecessor revoked while the new one is
   being issued is not either (the certificate is issued all the same, as a first one);
2. docs/acme.md said the clients print the server's problem documents; Debian's certbot 2.1 on Python 3.11
   prints "AttributeError: can't set attribute" for every refusal but a failed challenge (certbot issue 9539,
   fixed in 2.2), -v or not: the page says so now, and where the problem is (its letsencrypt.log);
3. a valid or invalid authorization listed every challenge it had offered, the unattempted one still
   "pending" in an authorization that is final, where RFC 8555 7.1.4 lists the challenge validated (valid) or
   the one attempted and failed (invalid): it lists that one alone now; a pending one lists all it offers;
4. IP identifiers (RFC 8738) were proven with this suite's own client only, and docs/acme.md did not say which
   client can order one: Caddy gets a certificate for an address (served to curl, listed), lego 4.9 sends an
   address as a dns identifier (refused, malformed), certbot 2.1 refuses one itself; the page says so.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from test_acme_clients import CADDYFILE as CLIENTS_CADDYFILE
from test_acme_clients import start_server
from test_acme_concurrency import BACKENDS, _inventory, _let_go_once, _sql, _two_tier
from test_audit5_acme import _account, _obtain, _serial

from acme_client import HTTP01Responder, b64
from acme_helpers import (
    AcmeServer,
    caddy_env,
    certbot,
    lego,
    ports,
    serial_of,
    serving,
    split_chain,
    stop_process,
    wait_for,
)
from conftest import REPO, openssl, require, run_certkit


def _rows(env: dict) -> dict[str, dict]:
    """serial -> row of ``certkit list --json``."""
    rows = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]
    return {row["serial"]: row for row in rows}


def _expiring(env: dict) -> set[str]:
    rows = json.loads(run_certkit("list", "--expiring", "30d", "--json", env=env, check=True).stdout)
    return {row["serial"] for row in rows["certificates"]}


def _assert_renewed(env: dict, old: str, new: str) -> None:
    """``new`` is recorded as renewing ``old``: list says so both ways, and --expiring leaves ``old`` out."""
    rows = _rows(env)
    assert rows[old]["renewed_by"] == new and rows[new]["renewed_from"] == old, (rows[old], rows[new])
    assert rows[old]["status"] == rows[new]["status"] == "valid"
    due = _expiring(env)
    assert new in due and old not in due, due
    text = run_certkit("list", "--name", rows[old]["names"][0].split(":", 1)[1], env=env, check=True).stdout
    assert "valid (renewed)" in text, text


# --- 1: renewals by real clients ------------------------------------------------------------------
def test_certbot_and_lego_renewals_are_recorded_as_renewals(tmp_path: Path) -> None:
    """certbot (certonly, then renew --force-renewal) and lego (run, then renew), each on its own account, on
    a server issuing 10-day certificates: each renewal is recorded as renewing the certificate it replaced."""
    require("certbot")
    require("lego")
    server, root, env, http_port, _ = start_server(tmp_path, "bot.acme.test", "go.acme.test", extra=("--days", "10"))
    work, path = tmp_path / "certbot", tmp_path / "lego"
    live = work / "conf" / "live" / "bot.acme.test"
    lego_args = ("--email", "ops@acme.test", "-d", "go.acme.test", "--http", "--http.port", f"127.0.0.1:{http_port}")
    with server:
        got = certbot(work, "certonly", "--standalone", "--agree-tos", "--register-unsafely-without-email",
                      "--server", server.directory, "-d", "bot.acme.test", "--http-01-port", str(http_port),
                      "--http-01-address", "127.0.0.1", root=root)
        assert got.returncode == 0, got.stdout + got.stderr
        first = serial_of(live / "cert.pem")
        assert first in _expiring(env) and _rows(env)[first]["renewed_by"] is None
        renewed = certbot(work, "renew", "--force-renewal", "--no-random-sleep-on-renew", root=root)
        assert renewed.returncode == 0, renewed.stdout + renewed.stderr
        second = serial_of(live / "cert.pem")
        _assert_renewed(env, first, second)

        got = lego(path, server.directory, *lego_args, "run", root=root)
        assert got.returncode == 0, got.stderr
        before = serial_of(split_chain(path / "certificates" / "go.acme.test.crt", tmp_path)[0])
        renewed = lego(path, server.directory, *lego_args, "renew", "--days", "9999", "--no-random-sleep", root=root)
        assert renewed.returncode == 0, renewed.stderr
        after = serial_of(split_chain(path / "certificates" / "go.acme.test.crt", tmp_path)[0])
        _assert_renewed(env, before, after)
        assert _rows(env)[second]["renewed_by"] is None  # another account's names: nothing of lego's renews it
    # the name names one current certificate now, the renewal (two before): renew NAME finds it, and
    # says that its client renews it
    told = run_certkit("renew", "bot.acme.test", env=env)
    assert told.returncode == 1 and f"certificate {second} was issued over ACME" in told.stderr, told.stderr
    assert "Renew it through that client: 'certbot renew --cert-name bot.acme.test'" in told.stderr


# test_acme_clients' site, its renewals checked every second
CADDYFILE = CLIENTS_CADDYFILE.replace("\thttps_port {https_port}\n", "\thttps_port {https_port}\n\trenew_interval 1s\n")


def test_caddys_renewals_are_recorded_as_renewals(tmp_path: Path) -> None:
    """Caddy renews by itself (here at once: a renewal window of nearly the whole lifetime, checked every
    second): every certificate it replaced is recorded as renewed by the next, one chain of renewals."""
    require("caddy")
    server, root, env, http_port, tls_port = start_server(tmp_path, "app.acme.test")
    home = tmp_path / "caddy-home"
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(CADDYFILE.format(directory=server.directory, root=root, http_port=http_port,
                                          https_port=tls_port))
    adapted = subprocess.run(["caddy", "adapt", "--config", str(caddyfile), "--adapter", "caddyfile"],
                             env=caddy_env(home), capture_output=True, text=True, timeout=60)
    assert adapted.returncode == 0, adapted.stderr
    config = json.loads(adapted.stdout)
    for policy in config["apps"]["tls"]["automation"]["policies"]:
        policy["renewal_window_ratio"] = 0.999999  # due as soon as obtained (notBefore is backdated minutes)
    (tmp_path / "caddy.json").write_text(json.dumps(config))
    log = tmp_path / "caddy.log"
    with server:
        caddy = _caddy(home, log, "--config", str(tmp_path / "caddy.json"))
        try:
            wait_for(lambda: server.stderr.count(": issued serial ") >= 3 or caddy.poll() is not None, timeout=120,
                     what="Caddy to obtain a certificate and renew it twice")
            assert caddy.poll() is None, log.read_text()
        finally:
            stop_process(caddy)
    assert "renewed successfully" in log.read_text()
    issued = [row for row in _rows(env).values() if row["sink"] == "acme"]
    assert len(issued) >= 3, issued
    # The chain's end is the one no certificate renews (issued_at has whole seconds: Caddy may renew twice in one)
    ends = [row for row in issued if row["renewed_by"] is None]
    assert len(ends) == 1, issued
    newest = ends[0]
    assert newest["issued_at"] == max(row["issued_at"] for row in issued), issued
    by_serial = {row["serial"]: row for row in issued}
    for row in issued:  # one chain: each but the newest renewed by exactly the one that renews it
        if row is not newest:
            assert row["renewed_by"] and by_serial[row["renewed_by"]]["renewed_from"] == row["serial"], row
    assert newest["renewed_by"] is None
    assert len({row["renewed_from"] for row in issued} - {None}) == len(issued) - 1


# --- 1: what a new order renews, and what it does not -----------------------------------------------
@pytest.fixture(params=BACKENDS)
def own(request, tmp_path):
    """A server for a.acme.test and www.a.acme.test, on SQLite and on PostgreSQL, that pauses each time a
    certificate is signed, nothing recorded yet (certkit.testhooks); a thread lets every pause go on at once,
    after ``on_pause[n]`` (the n-th pause after the server's own certificate) if the test put one there."""
    inventory = _inventory(request, request.param)
    root, issuing, env = _two_tier(tmp_path, inventory)
    (http_port,) = ports(1)
    marker = tmp_path / "pause"
    first = _let_go_once(marker)  # the server's own certificate, at start
    server = AcmeServer("--allow-domain", "acme.test", "--http01-port", http_port, "--resolve", "a.acme.test=127.0.0.1",
                        "--resolve", "www.a.acme.test=127.0.0.1",
                        env=dict(env, CERTKIT_TEST_PAUSE_AT="signed", CERTKIT_TEST_PAUSE_FILE=str(marker)))
    first.join()
    setup = SimpleNamespace(server=server, root=root, env=env, http_port=http_port, pauses=0, on_pause={},
                            sql=lambda *args: _sql(issuing, inventory, *args))
    stop = threading.Event()

    def release() -> None:
        while not stop.is_set():
            if marker.exists():
                setup.pauses += 1
                setup.on_pause.pop(setup.pauses, lambda: None)()
                marker.unlink()
            stop.wait(0.02)

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        yield setup
    finally:
        stop.set()
        thread.join(10)
        server.stop()
    assert "Traceback" not in server.stderr, server.stderr


DER = Encoding.DER


def test_only_the_same_accounts_certificate_for_the_same_names_and_key_type_is_renewed(own) -> None:
    env = own.env
    with HTTP01Responder(own.http_port) as responder:
        a, b = _account(own.server.directory, own.root), _account(own.server.directory, own.root)
        p256 = lambda: ec.generate_private_key(ec.SECP256R1())  # noqa: E731
        first = _serial(_obtain(a, responder, p256(), "a.acme.test"))
        rsa_cert = _serial(_obtain(a, responder, rsa.generate_private_key(65537, 2048), "a.acme.test"))
        wider = _serial(_obtain(a, responder, p256(), "a.acme.test", "www.a.acme.test"))
        theirs = _serial(_obtain(b, responder, p256(), "a.acme.test"))
        second_cert = _obtain(a, responder, p256(), "a.acme.test")
        second = _serial(second_cert)
        rows = _rows(env)
        assert rows[second]["renewed_from"] == first and rows[first]["renewed_by"] == second
        for serial in (rsa_cert, wider, theirs):  # another key type, name set, account: first ones
            assert rows[serial]["renewed_from"] is None, rows[serial]
        assert rows[rsa_cert]["renewed_by"] is None and rows[theirs]["renewed_by"] is None

        # a revoked certificate is not renewed, nor one renewed already: the next is a first one
        payload = {"certificate": b64(second_cert.public_bytes(DER)), "reason": 4}
        revoke = a.post(a.directory["revokeCert"], payload, check=False)
        assert revoke.status_code == 200, revoke.text
        third = _serial(_obtain(a, responder, p256(), "a.acme.test"))
        rows = _rows(env)
        assert rows[third]["renewed_from"] is None and rows[second]["renewed_by"] is None
        assert rows[first]["renewed_by"] == second  # its renewal, revoked since, renewed it all the same
        fourth = _serial(_obtain(a, responder, p256(), "a.acme.test"))
        assert _rows(env)[fourth]["renewed_from"] == third

        # a predecessor whose row is damaged (its DER unreadable: certkit check names it) is passed over
        own.sql("UPDATE certificates SET der = ? WHERE serial = ?", (b"damaged", fourth))
        fifth = _serial(_obtain(a, responder, p256(), "a.acme.test"))
        assert _rows(env)[fifth]["renewed_from"] is None


def test_a_predecessor_revoked_while_its_renewal_is_issued_is_not_renewed(own) -> None:
    """The certificate a finalize would renew is revoked between the choice and the record (the server
    paused once the new certificate is signed): the inventory refuses it as a predecessor, and the
    certificate is issued as a first one, its order valid; no finalize fails for it."""
    env = own.env
    with HTTP01Responder(own.http_port) as responder:
        a = _account(own.server.directory, own.root)
        first = _serial(_obtain(a, responder, ec.generate_private_key(ec.SECP256R1()), "a.acme.test"))
        revoked = []
        own.on_pause[own.pauses + 1] = lambda: revoked.append(
            run_certkit("revoke", first, "--reason", "superseded", env=env, subprocess=True))
        second = _serial(_obtain(a, responder, ec.generate_private_key(ec.SECP256R1()), "a.acme.test"))
    assert revoked and revoked[0].returncode == 0, revoked and revoked[0].stderr
    rows = _rows(env)
    assert rows[first]["status"] == "revoked" and rows[first]["renewed_by"] is None
    assert rows[second]["status"] == "valid" and rows[second]["renewed_from"] is None


# --- 2: what certbot and lego show of a refusal -----------------------------------------------------
def _version(tool: str) -> tuple[int, ...]:
    import re

    out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=60)
    found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out.stdout + out.stderr)
    assert found, out.stdout + out.stderr
    return tuple(int(part) for part in found.groups() if part is not None)


def test_what_certbot_and_lego_show_of_a_refusal_is_what_the_page_says(tmp_path: Path) -> None:
    """docs/acme.md said the clients print the problem documents: lego does, but Debian's certbot 2.1 on
    Python 3.11 prints only "AttributeError: can't set attribute" (certbot issue 9539, fixed in 2.2), -v or
    not, and the problem is in its letsencrypt.log alone. The page says so now, and this is what they do."""
    require("certbot")
    require("lego")
    page = " ".join((REPO / "docs" / "acme.md").read_text().split())
    server, root, env, http_port, _ = start_server(tmp_path, "app.acme.test")
    work = tmp_path / "certbot"
    with server:
        got = certbot(work, "certonly", "--standalone", "--agree-tos", "--register-unsafely-without-email", "-v",
                      "--server", server.directory, "-d", "app.other.test", "--http-01-port", str(http_port),
                      "--http-01-address", "127.0.0.1", root=root)
        went = lego(tmp_path / "lego", server.directory, "--email", "ops@acme.test", "-d", "app.other.test", "--http",
                    "--http.port", f"127.0.0.1:{http_port}", "run", root=root)
    problem = "urn:ietf:params:acme:error:rejectedIdentifier :: 'app.other.test' is outside the domains"
    assert went.returncode != 0 and problem in went.stderr, went.stderr
    assert "lego prints the problem (`acme: error: 400 :: POST :: .../acme/new-order ::" in page
    assert got.returncode != 0
    log = (work / "logs" / "letsencrypt.log").read_text()
    assert f"acme.messages.Error: {problem.split(' ::')[0]} ::" in log and "is outside the domains" in log
    if _version("certbot") < (2, 2):
        shown = got.stdout + got.stderr
        assert "AttributeError: can't set attribute" in shown and "outside the domains" not in shown, shown
        assert ("prints only `An unexpected error occurred: AttributeError: can't set attribute`, with `-v` too "
                "(certbot issue 9539, fixed in certbot 2.2)") in page
        assert "`acme.messages.Error: urn:ietf:params:acme:error:rejectedIdentifier :: ...`" in page
    else:  # a certbot with the fix prints the problem itself
        assert "outside the domains" in got.stdout + got.stderr, got.stderr


# --- 3: the challenges of a final authorization -----------------------------------------------------
@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    yield from serving(tmp_path_factory.mktemp("acme-audit16"), ("v.acme.test", "x.acme.test"))


def test_a_final_authorization_lists_the_challenge_validated_or_failed_alone(acme) -> None:
    c = _account(acme.server.directory, acme.root)
    for name, wrong, final in (("v.acme.test", False, "valid"), ("x.acme.test", True, "invalid")):
        url, order = c.new_order(name)
        authz_url = order["authorizations"][0]
        offered = c.get(authz_url)["challenges"]
        assert sorted(ch["type"] for ch in offered) == ["http-01", "tls-alpn-01"]
        assert {ch["status"] for ch in offered} == {"pending"}
        with HTTP01Responder(acme.http_port, wrong=wrong) as responder:
            c.authorize(order, responder)
            assert c.wait(url, ("ready", "invalid"))["status"] == ("ready" if final == "valid" else "invalid")
        authz = c.get(authz_url)
        assert authz["status"] == final
        (attempted,) = authz["challenges"]
        assert attempted["type"] == "http-01" and attempted["status"] == final, attempted
        assert ("error" in attempted) == (final == "invalid") and ("validated" in attempted) == (final == "valid")
        other = next(ch for ch in offered if ch["type"] == "tls-alpn-01")
        assert c.get(other["url"])["status"] == "pending"  # still fetched by its URL: nothing about it changed


# --- 4: IP addresses with the real clients ------------------------------------------------------------
def test_which_clients_get_a_certificate_for_an_address_is_what_the_page_says(tmp_path: Path) -> None:
    for tool in ("caddy", "lego", "certbot", "curl"):
        require(tool)
    page = " ".join((REPO / "docs" / "acme.md").read_text().split())
    server, root, env, http_port, tls_port = start_server(tmp_path, extra=("--allow-ip", "127.0.0.0/8"))
    home = tmp_path / "caddy-home"
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(CLIENTS_CADDYFILE.format(directory=server.directory, root=root, http_port=http_port,
                                                  https_port=tls_port)
                         .replace("app.acme.test {", "127.0.0.3 {").replace("bind 127.0.0.1", "bind 127.0.0.3"))
    log = tmp_path / "caddy.log"
    with server:
        caddy = _caddy(home, log, "--config", str(caddyfile), "--adapter", "caddyfile")
        try:
            wait_for(lambda: "certificate obtained successfully" in log.read_text() or caddy.poll() is not None,
                     timeout=90, what="Caddy to obtain a certificate for 127.0.0.3")
            assert caddy.poll() is None, log.read_text()
            served = wait_for(lambda: _curl(f"https://127.0.0.3:{tls_port}/", root), timeout=60,
                              what="Caddy to serve it")
            assert served == "hello from caddy"
        finally:
            stop_process(caddy)
        went = lego(tmp_path / "lego", server.directory, "--email", "ops@acme.test", "-d", "127.0.0.4", "--http",
                    "--http.port", f"127.0.0.4:{http_port}", "run", root=root)
        got = certbot(tmp_path / "certbot", "certonly", "--standalone", "--agree-tos",
                      "--register-unsafely-without-email", "--server", server.directory, "-d", "127.0.0.5",
                      "--http-01-port", str(http_port), "--http-01-address", "127.0.0.5", root=root)
    assert "http-01 for 127.0.0.3: valid" in server.stderr
    (stored,) = (home / "data").rglob("127.0.0.3.crt")
    leaf = split_chain(stored, tmp_path)[0]
    assert "IP Address:127.0.0.3" in openssl("x509", "-in", leaf, "-noout", "-ext", "subjectAltName").stdout.decode()
    assert _rows(env)[serial_of(leaf)]["names"] == ["IP:127.0.0.3"]
    assert "Caddy does: a site address such as `10.0.0.5` with an `acme` issuer gets a certificate for it." in page

    refused = "'127.0.0.4' is an IP address: order it as an identifier of type 'ip' (RFC 8738), not 'dns'."
    if refused in went.stderr:  # lego 4.9
        assert went.returncode != 0
        assert "lego 4.9 (Debian 12's) sends an address as a `dns` identifier, which is refused (`malformed`:" in page
    else:  # a lego that sends ip identifiers gets its certificate
        assert went.returncode == 0, went.stderr
    assert got.returncode != 0 and "Requested name 127.0.0.5 is an IP address" in got.stdout + got.stderr
    assert 'certbot 2.1 refuses an address itself ("Requested name 10.0.0.5 is an IP address")' in page


def _caddy(home: Path, log: Path, *args: str) -> subprocess.Popen:
    """``caddy run ARGS`` with its HOME and XDG folders in ``home``, its output in ``log``."""
    with open(log, "w") as out:
        return subprocess.Popen(["caddy", "run", *args], env=caddy_env(home), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def _curl(url: str, root: Path) -> str:
    """The page at ``url``, verified against ``root``; "" while it cannot be had."""
    proc = subprocess.run(["curl", "-sS", "--fail", "--max-time", "20", "--cacert", str(root), url],
                          capture_output=True, text=True, timeout=60)
    return proc.stdout if proc.returncode == 0 else ""
