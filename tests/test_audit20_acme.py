"""The ACME server, audit round twenty (acme), each as a class:

1. a finalize whose certificate was signed and recorded (its inventory row pending) but never delivered,
   because its order could not take it (the disk full, the SQLite inventory locked, the order settled
   meanwhile), left the row pending for as long as the server lived when the database refused to mark it
   abandoned too: the pipeline tries once, at that moment, when the same database refuses. The server runs
   for months, so ``certkit check`` and ``list`` kept saying the certificate was "being written by a certkit
   command that still runs", and a renewal's row left so made its predecessor look renewed. The server now
   remembers such rows and settles them (abandoned, or valid if an order does hold the certificate) at the
   next request for that order and at every maintenance round, as it does an order it could not take out of
   processing;
2. a stop of the server (Ctrl-C, SIGTERM) that landed while its maintenance round renewed the server's own
   HTTPS certificate (a third of its life left, or revoked) revoked the certificate being replaced, and the
   renewal then went on to make its successor valid, whose key died with the process: a valid certificate
   nobody holds the key of, until the next server started on this host (round nineteen left it alone). A stop
   now waits for a renewal under way (up to 30 s, saying so), no renewal starts once it is stopping, and it
   retires the certificate served then;
3. the class of 1 in the server's own certificate: a renewal whose new certificate was already loaded into
   the TLS context (served) when the inventory refused to mark its row valid (full, locked) raised, so the
   server served a certificate whose row stayed pending while it believed it served the one before: that
   one was renewed again at every round, and at a stop the one retired was not the one served. The
   certificate served is now the one the listener holds, and its row is marked valid by the next round;
   and a renewal that failed before it served its certificate (the process's hold on its key refused),
   when the pipeline could not abandon the row either, left it pending for as long as the server lived: the
   next round now abandons it.
"""

from __future__ import annotations

import socket
import sqlite3
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from acme_client import Client, HTTP01Responder, make_csr
from acme_helpers import AcmeServer, ports, wait_for
from conftest import PASSPHRASE, certkit_env, run_certkit
from integrity_helpers import fill, tmpfs


# --- 1: a row of a certificate never delivered is abandoned once the database takes it -------------------
@contextmanager
def _issuing_ca_on_a_small_disk(tmp_path: Path, name: str) -> Iterator[tuple[Path, Path, Path]]:
    """A root CA on the test's disk and an intermediate CA directory below it on a 3 MiB tmpfs, where the tests
    fill the disk: yields (root, issuing, the tmpfs) while it is mounted."""
    env = certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    root = tmp_path / "root"
    run_certkit("init-ca", "--ca-dir", root, "--name", f"{name} Root", env=env, check=True)
    with tmpfs(tmp_path / "small", "size=3m") as small:
        issuing = small / "issuing"
        run_certkit("init-ca", "--ca-dir", issuing, "--parent-ca-dir", root, "--name", f"{name} ACME", env=env,
                    check=True)
        yield root, issuing, small


def _pending(inventory: Path) -> set[str]:
    with sqlite3.connect(f"file:{inventory}?mode=ro", uri=True, timeout=30) as db:
        return {serial for (serial,) in db.execute("SELECT serial FROM certificates WHERE status = 'pending'"
                                                   " AND sink = 'acme'")}


def _status(inventory: Path, serial: str) -> str:
    with sqlite3.connect(f"file:{inventory}?mode=ro", uri=True, timeout=30) as db:
        return db.execute("SELECT status FROM certificates WHERE serial = ?", (serial,)).fetchone()[0]


def test_a_certificate_never_delivered_is_not_left_pending_while_the_server_runs(tmp_path: Path) -> None:
    """A CA directory on a small tmpfs; a ready order is finalized with the disk filled to a little under
    what issuing takes, each time a little more, until the finalize fails after its certificate was recorded
    (a 503, its row pending, the order unable to take it). Once the disk has room again, the next request for
    that order finds the row abandoned: nobody received that certificate. Before, it stayed pending until
    the server stopped."""
    with _issuing_ca_on_a_small_disk(tmp_path, "Full Disk") as (root, issuing, small):
        inventory = issuing / "inventory.sqlite3"
        http_port, tls_port = ports(2)
        server = AcmeServer("--allow-domain", "acme.test", "--http01-port", http_port, "--tls-alpn01-port", tls_port,
                            "--resolve", "app.acme.test=127.0.0.1",
                            env=certkit_env(CERTKIT_CA_DIR=str(issuing), CERTKIT_CA_PASSPHRASE=PASSPHRASE))
        try:
            client = Client(server.directory, root / "ca.pem")
            client.register()
            found = None
            with HTTP01Responder(http_port) as responder:
                for leave in range(8 << 10, 96 << 10, 2 << 10):  # fill leaves from leave to leave + 4 KiB
                    order_url, order = client.new_order("app.acme.test")
                    client.authorize(order, responder)
                    order = client.wait(order_url)
                    assert order["status"] == "ready", order
                    before = _pending(inventory)
                    filler = fill(small, leave)
                    try:
                        answer = client.finalize(order, make_csr(ec.generate_private_key(ec.SECP256R1()),
                                                                 ["app.acme.test"]), check=False)
                        left = _pending(inventory) - before
                    finally:
                        filler.unlink()
                    if answer.status_code == 503 and left:  # a 200: no failure at this room, the next order tries more
                        found = (order_url, left.pop())
                        break
            assert found is not None, "no room made the finalize fail after its certificate was recorded"
            order_url, serial = found
            assert client.get(order_url)["status"] == "ready"  # the client may finalize it again
            assert _status(inventory, serial) == "abandoned"
            assert not _pending(inventory)
        finally:
            server.stop()
        assert "Traceback" not in server.stderr, server.stderr


# --- 2: a stop waits for a renewal of the server's own certificate under way --------------------------------
def test_a_stop_during_a_renewal_of_the_servers_own_certificate_leaves_none_valid(tmp_path: Path,
                                                                                    monkeypatch) -> None:
    """The real Listener, maintenance round (its interval shortened) and stop path of acme serve, in this
    process; the renewal is held right after it signed the successor (the pipeline's 'signed' pause point), the
    stop lands then. Before, the stop revoked the certificate being replaced and the renewal made its successor
    valid afterwards."""
    from test_acme_concurrency import _two_tier

    from certkit.acme.db import Database
    from certkit.acme.listener import Listener, maintain, retire_served
    from certkit.acme.server import AcmeConfig, AcmeService
    from certkit.acme.state import AcmeState
    from certkit.store import CADirectory

    _root, issuing, _env = _two_tier(tmp_path, None)
    ca = CADirectory(issuing).open()
    ca.unlock(PASSPHRASE.encode())
    service = AcmeService(ca, AcmeState(Database(ca.inventory)), AcmeConfig())
    service.start(workers=1)
    said: list[str] = []
    stop = threading.Event()
    try:
        listener = Listener(ca, ["localhost"], hold=lambda serial: service.state.hold_listener(serial, renews=True))
        first = listener.issued.serial_hex
        ca.revoke(first, "unspecified")  # the next round replaces it
        marker = tmp_path / "paused"
        monkeypatch.setenv("CERTKIT_TEST_PAUSE_AT", "signed")
        monkeypatch.setenv("CERTKIT_TEST_PAUSE_FILE", str(marker))
        worker = threading.Thread(target=maintain, args=(service, listener, stop, said.append, 0.05))
        worker.start()
        wait_for(marker.exists, what="the renewal to sign the successor")
        stopped = threading.Event()

        def stopping() -> None:  # what acme serve's stop does: the round stops, what is served is retired
            stop.set()
            retire_served(ca, service.state, listener, said.append)
            stopped.set()

        stopper = threading.Thread(target=stopping)
        stopper.start()
        wait_for(lambda: stopped.is_set() or any("waiting for the renewal" in line for line in said),
                 what="the stop to retire or to wait")
        marker.unlink()
        stopper.join(60)
        worker.join(60)
        assert not stopper.is_alive() and not worker.is_alive()
        second = listener.issued.serial_hex
        assert second != first, said
        rows = {serial: ca.inventory.get(serial) for serial in (first, second)}
        assert {serial: row["status"] for serial, row in rows.items()} == {first: "revoked", second: "revoked"}, said
        assert rows[second]["revocation_reason"] == "cessationOfOperation"
    finally:
        stop.set()
        service.stop()


# --- 3: the server's own certificate, served, whose row could not be marked valid -----------------------------
def _served_serial(context: ssl.SSLContext) -> str:
    """The serial of the certificate a TLS handshake with ``context`` presents (over a socket pair)."""
    from certkit.vocabulary import serial_hex

    ours, theirs = socket.socketpair()

    def answer() -> None:
        try:
            with context.wrap_socket(ours, server_side=True):
                pass
        except OSError:
            pass

    thread = threading.Thread(target=answer)
    thread.start()
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    with client.wrap_socket(theirs, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)
    thread.join(30)
    from cryptography import x509

    return serial_hex(x509.load_der_x509_certificate(der).serial_number)


def test_the_servers_own_certificate_served_while_its_row_could_not_be_marked_is_the_one_held(
        tmp_path: Path) -> None:
    """The real Listener over a CA directory on a small tmpfs, renewed with the disk filled to a little under
    what a renewal takes, each time a little more, until the renewal fails after its certificate was loaded.
    The listener must then hold the certificate it serves, and the next round's mark makes its row valid."""
    from certkit.acme.listener import Listener
    from certkit.errors import CertkitError
    from certkit.store import CADirectory

    with _issuing_ca_on_a_small_disk(tmp_path, "Listener") as (root, issuing, small):
        ca = CADirectory(issuing).open()
        ca.unlock(PASSPHRASE.encode())
        listener = Listener(ca, ["localhost"])
        found = None
        for leave in range(4 << 10, 96 << 10, 2 << 10):
            before = listener.issued.serial_hex
            filler = fill(small, leave)
            try:
                try:
                    listener.renew()
                except CertkitError:
                    pass  # nothing served changed (checked below)
                served = _served_serial(listener.context)
            finally:
                filler.unlink()
            if served != before and _status(issuing / "inventory.sqlite3", served) == "pending":
                found = served
                break
            assert served == listener.issued.serial_hex
        assert found is not None, "no room made a renewal fail after its certificate was served"
        assert listener.issued.serial_hex == found  # it holds what it serves: retired at a stop, renewed when due
        listener.mark()  # the maintenance round's first step
        assert _status(issuing / "inventory.sqlite3", found) == "valid"


def test_a_renewal_that_failed_before_serving_its_certificate_leaves_no_pending_row(tmp_path: Path) -> None:
    """As above, with the hold acme serve gives its Listener (the ACME state's record of which process holds
    the key, one more write before the certificate is served): the disk filled until a renewal fails with
    the certificate signed and recorded but not served, its row still pending. The next round's first step
    abandons it; before, it stayed pending until the server stopped."""
    from certkit.acme.db import Database
    from certkit.acme.listener import Listener
    from certkit.acme.state import AcmeState
    from certkit.errors import CertkitError
    from certkit.store import CADirectory

    with _issuing_ca_on_a_small_disk(tmp_path, "Unserved") as (root, issuing, small):
        inventory = issuing / "inventory.sqlite3"
        ca = CADirectory(issuing).open()
        ca.unlock(PASSPHRASE.encode())
        state = AcmeState(Database(ca.inventory))
        state.create_schema()
        listener = Listener(ca, ["localhost"], hold=lambda serial: state.hold_listener(serial, renews=True))
        found = None
        for leave in range(4 << 10, 64 << 10, 2 << 10):
            context, before = listener.context, _pending_rows(inventory)
            filler = fill(small, leave)
            try:
                try:
                    listener.renew()
                except CertkitError:
                    left = _pending_rows(inventory) - before
                    if listener.context is context and left:
                        found = left.pop()
            finally:
                filler.unlink()
            if found:
                break
        assert found is not None, "no room made a renewal fail with its certificate recorded and not served"
        assert _served_serial(listener.context) != found
        listener.mark()  # the maintenance round's first step
        assert _status(inventory, found) == "abandoned"


def _pending_rows(inventory: Path) -> set[str]:
    with sqlite3.connect(f"file:{inventory}?mode=ro", uri=True, timeout=30) as db:
        return {serial for (serial,) in db.execute("SELECT serial FROM certificates WHERE status = 'pending'")}
