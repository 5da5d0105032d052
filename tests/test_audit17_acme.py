"""The ACME server, audit round seventeen (acme), each as a class:

1. ``certkit list --expiring 30d`` (and ``renew --expiring 30d``) listed the ACME server's own 30-day HTTPS
   certificate every day of its life, though the server renews it in place and revokes it when it stops:
   ``list --help`` and docs/list.md define ``--expiring`` as the certificates "that need action", and nothing
   is due for this one (``certkit renew`` cannot renew it: its key lives in the server's memory). A cron job
   alerting on ``list --expiring`` fired for as long as an ACME server ran. A certificate that a running
   ``acme serve`` holds and renews itself is left out now; one of a server killed outright (which renews
   nothing), ``certkit serve``'s one-day certificate, which serve does not renew (restart it for a new one),
   and every other certificate are listed as before;
2. a running ACME server whose own certificate was revoked (``certkit revoke SERIAL``, say for
   keyCompromise) served it on until it was due for renewal, up to 20 days later: the revocation the operator
   made did not take the key out of service. The maintenance round now replaces a revoked certificate with a
   new one (a new key), and new TLS handshakes get that one;
3. a challenge was validated (the server connected to the name) whatever the server's policy said at that
   moment: the identifier was checked once, at newOrder. An order placed on a server of the CA with
   ``--allow-domain acme.test`` had its challenge validated by another server on the same CA (they share
   the ACME state, docs/acme.md) started with ``--allow-domain b.acme.test``, or by the same server restarted
   with that narrower policy: it fetched ``http://a.acme.test/...``, made the authorization valid and the
   order ``ready``, an order it then refused to finalize (rejectedIdentifier). Now a server validates only
   what it would issue for: the challenge fails with ``rejectedIdentifier`` saying so, before any
   connection, and the order is ``invalid``.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from test_acme_concurrency import BACKENDS, _inventory, _two_tier

from acme_client import Client, HTTP01Responder
from acme_helpers import AcmeServer, ports, wait_for
from conftest import PASSPHRASE, run_certkit
from serve_process import ServeProcess


def _listed(env: dict, *args: str) -> dict[str, dict]:
    """serial -> row of ``certkit list --json ARGS``."""
    rows = json.loads(run_certkit("list", "--json", *args, env=env, check=True).stdout)["certificates"]
    return {row["serial"]: row for row in rows}


# --- 1: list --expiring and the server's own certificate -------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_list_expiring_leaves_out_the_certificate_a_running_acme_server_renews_itself(request, backend,
                                                                                      tmp_path: Path) -> None:
    root, issuing, env = _two_tier(tmp_path, _inventory(request, backend))
    due = tmp_path / "due"
    run_certkit("issue-server", "due.example", "--days", "20", "--out", due, env=env, check=True)
    due_serial = _listed(env)
    with AcmeServer(env=env) as server:
        own = server.info["server_certificate"]["serial"]
        everything = _listed(env)
        assert everything[own]["status"] == "valid"  # list shows it, as every certificate
        expiring = _listed(env, "--expiring", "30d")
        assert own not in expiring, "the ACME server renews its own certificate: nothing is due for it"
        assert set(due_serial) <= set(expiring)  # a certificate due is listed as before
        count = json.loads(run_certkit("list", "--json", "--expiring", "30d", "--limit", "1", env=env,
                                       check=True).stdout)
        assert count["total"] == len(due_serial)  # counted as listed
        renewal = json.loads(run_certkit("renew", "--expiring", "30d", "--json", env=env, cwd=tmp_path).stdout)
        assert own not in {c["serial"] for c in renewal["certificates"]}, renewal
        assert renewal["renewed"] == 1, renewal
        with ServeProcess(env=env, cwd=tmp_path) as serve:  # serve renews nothing: its certificate is due
            served = serve.info["server_certificate"]["serial"]
            expiring = _listed(env, "--expiring", "30d")
            assert served in expiring and own not in expiring
    assert _listed(env)[own]["status"] == "revoked"  # stopped: revoked, as before
    killed = AcmeServer(env=env)
    orphan = killed.info["server_certificate"]["serial"]
    assert orphan not in _listed(env, "--expiring", "30d")
    killed.proc.kill()
    killed.proc.wait(15)
    assert orphan in _listed(env, "--expiring", "30d")  # a server killed outright renews nothing


# --- 2: a revoked server certificate is replaced at once ---------------------------------------------------
def _spki(cert) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _served_serial(port: int, root: Path) -> int:
    """The serial of the certificate a TLS server on 127.0.0.1:port presents, verified against ``root``."""
    context = ssl.create_default_context(cafile=str(root))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        with context.wrap_socket(sock, server_hostname="localhost") as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def test_a_revoked_server_certificate_is_replaced_by_the_next_maintenance_round(tmp_path: Path) -> None:
    """The server's real maintenance round (its interval shortened) and TLS context, served on loopback; the
    revocation by a real ``certkit revoke`` process."""
    from certkit.acme.db import Database
    from certkit.acme.listener import Listener, maintain
    from certkit.acme.server import AcmeConfig, AcmeService
    from certkit.acme.state import AcmeState
    from certkit.store import CADirectory

    root, issuing, env = _two_tier(tmp_path, None)
    ca = CADirectory(issuing).open()
    ca.unlock(PASSPHRASE.encode())
    service = AcmeService(ca, AcmeState(Database(ca.inventory)), AcmeConfig())
    service.start(workers=1)
    said: list[str] = []
    stop = threading.Event()
    listening = socket.create_server(("127.0.0.1", 0))
    listening.settimeout(0.2)
    try:
        listener = Listener(ca, ["localhost"], hold=lambda serial: service.state.hold_listener(serial, renews=True))
        first = listener.issued.serial_hex

        def serve() -> None:  # each handshake with the listener's context as it is now, as the HTTPS server's
            while not stop.is_set():
                try:
                    conn, _ = listening.accept()
                except OSError:
                    continue
                try:
                    with listener.context.wrap_socket(conn, server_side=True) as tls:
                        tls.settimeout(10)
                        tls.recv(1)
                except OSError:
                    pass

        threading.Thread(target=serve, daemon=True).start()
        port = listening.getsockname()[1]
        assert _served_serial(port, root) == int(first, 16)
        worker = threading.Thread(target=maintain, args=(service, listener, stop, said.append, 0.05))
        worker.start()
        time.sleep(0.5)  # a few rounds: the certificate is not due, nothing is renewed
        assert listener.issued.serial_hex == first and not any("renewed" in line for line in said), said
        ran = run_certkit("revoke", first, "--reason", "keyCompromise", env=env, subprocess=True)
        assert ran.returncode == 0, ran.stderr
        wait_for(lambda: listener.issued.serial_hex != first, 60, what="the revoked certificate replaced")
        wait_for(lambda: any("renewed" in line for line in said), 60, what="the renewal logged")
        second = listener.issued.serial_hex
        assert _served_serial(port, root) == int(second, 16)
        assert _spki(listener.issued.cert) != _spki(ca.inventory.certificate(first))  # a new key
        line = next(line for line in said if "renewed" in line)
        assert f"serial {first} was revoked, keyCompromise" in line, said
        rows = _listed(env)
        assert (rows[first]["status"], rows[first]["revocation_reason"]) == ("revoked", "keyCompromise")
        assert rows[second]["status"] == "valid"
        assert second not in _listed(env, "--expiring", "30d")  # still the server's own, renewed by it
    finally:
        stop.set()
        listening.close()
        service.stop()
    assert not any("maintenance failed" in line for line in said), said


# --- 3: a challenge is validated only for a name the server issues for ----------------------------------
def test_a_server_validates_no_identifier_outside_its_policy_whichever_server_took_the_order(tmp_path: Path) -> None:
    root, _issuing, env = _two_tier(tmp_path, None)
    (http_port,) = ports(1)
    common = ("--http01-port", http_port, "--resolve", "a.acme.test=127.0.0.1", "--resolve", "b.acme.test=127.0.0.1")
    with AcmeServer("--allow-domain", "acme.test", *common, env=env) as wide, \
            AcmeServer("--allow-domain", "b.acme.test", *common, env=env) as narrow, HTTP01Responder(http_port) as web:
        at_wide = Client(wide.directory, root)
        at_wide.register()
        order_url, order = at_wide.new_order("a.acme.test")  # within the policy of the server it is sent to
        at_narrow = Client(narrow.directory, root)  # the same account, through the other server
        at_narrow.key, at_narrow.alg = at_wide.key, at_wide.alg
        at_narrow.kid = at_wide.kid.replace(wide.directory.rsplit("/", 1)[0], narrow.directory.rsplit("/", 1)[0])
        authz_url = order["authorizations"][0]
        authz = at_wide.get(authz_url)
        challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
        web.add("a.acme.test", challenge["token"], at_wide.key_authorization(challenge["token"]))
        at_narrow.post(challenge["url"].replace(wide.directory.rsplit("/", 1)[0],
                                                narrow.directory.rsplit("/", 1)[0]), {})
        done = at_wide.wait(authz_url, ("valid", "invalid"))
        assert done["status"] == "invalid", done
        error = done["challenges"][0]["error"]
        assert error["type"].endswith(":rejectedIdentifier"), error
        assert "outside the domains this ACME server issues for (b.acme.test)" in error["detail"], error
        assert "it was not validated" in error["detail"], error
        assert web.requests == []  # no connection to a name the validating server does not issue for
        assert at_wide.get(order_url)["status"] == "invalid"
        # The server whose policy holds the name validates it as before.
        url, order = at_wide.new_order("a.acme.test")
        at_wide.authorize(order, web)
        assert at_wide.wait(url)["status"] == "ready"
        assert web.requests
