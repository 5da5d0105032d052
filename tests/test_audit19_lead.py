"""Round nineteen, found by the lead in CI: a PKCS#11 module built on OpenSSL (SoftHSM2 at each C_Initialize,
which certkit calls again when a token went away or came back) leaves errors on the calling thread's OpenSSL
error queue, and OpenSSL reads that queue first when a TLS read has to wait for data. The next read of a
connection served by that thread failed with the module's stale error ("[ENGINE: NO_SUCH_ENGINE] no such
engine"): ``acme serve`` dropped the client's keep-alive connection after every finalize that initialized the
token again, and a client whose next request was already on its way got "Remote end closed connection without
response" (test_audit18_team's token test failed so in CI). Every call into the token now leaves the queue
empty, and acme serve empties it after each request whatever the request ran.
"""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from test_hsm_faults import delete_token
from test_team_hsm import _real_processes, init_token_ca  # noqa: F401 (an autouse fixture)

from certkit.ca import CA


def _loopback_tls(lines: int):
    """A TLS connection over loopback: (the server side's socket, the client thread). The client sends a
    line, waits for the server's "ok", waits a moment (so the server's read has to wait), and sends the
    next, ``lines`` times."""
    ca = CA.create("certkit test: TLS errors")
    server_ctx = ca.server_context(ca.issue_server(["localhost"]))
    client_ctx = ca.client_context(ca.issue_client("a client"))
    listener = socket.create_server(("127.0.0.1", 0))
    failures: list[BaseException] = []

    def client() -> None:
        try:
            with socket.create_connection(listener.getsockname(), timeout=30) as raw, \
                    client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                for n in range(lines):
                    time.sleep(0.3)
                    tls.sendall(f"line {n}\n".encode())
                    assert tls.recv(3) == b"ok\n"
        except BaseException as exc:  # noqa: BLE001 (reported by the test)
            failures.append(exc)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    raw, _ = listener.accept()
    listener.close()
    raw.settimeout(30)
    return server_ctx.wrap_socket(raw, server_side=True), thread, failures


def test_a_thread_that_used_the_token_keeps_reading_its_tls_connection(tmp_path: Path, token, softhsm) -> None:
    """The server side of a TLS connection reads a line after each of: opening the token's key, signing,
    signing while the token is away (refused, the module initialized again), signing once it is back:
    every read gets the client's line (was: ssl.SSLError "[ENGINE: NO_SUCH_ENGINE] no such engine" after
    the module was initialized again)."""
    from certkit.errors import CertkitError
    from certkit.pkcs11.provision import open_key

    init_token_ca(tmp_path, token)
    folder, saved = softhsm.token_folder(token), tmp_path / "token-copy"

    def away() -> None:
        shutil.copytree(folder, saved)
        delete_token(token)
        with pytest.raises(CertkitError, match="no longer present"):
            key.sign(b"while the token is away")

    def back() -> None:
        shutil.copytree(saved, folder)
        key.verify(key.sign(b"once it is back"), b"once it is back")

    key = None

    def opened() -> None:
        nonlocal key
        key = open_key(token.uri("root"), token.module, token.pin)

    steps = [opened, lambda: key.sign(b"a signature"), away, back]
    tls, client, failures = _loopback_tls(len(steps) + 1)
    with tls, tls.makefile("rb") as lines:
        assert lines.readline() == b"line 0\n"
        tls.sendall(b"ok\n")
        for n, step in enumerate(steps, 1):
            step()
            assert lines.readline() == f"line {n}\n".encode(), step  # the read waits for the client's line
            tls.sendall(b"ok\n")
    client.join(30)
    assert not failures, failures
    key.close()


def test_acme_serve_keeps_a_client_on_one_connection_across_a_token_away_and_back(tmp_path: Path, token,
                                                                                softhsm) -> None:
    """An ACME client finalizing while the CA's token is away (503), then once it is back (issued), keeps
    its one keep-alive connection throughout: the server's log shows every request from one client port
    (was: a new connection after each finalize that initialized the module again, the old one dropped,
    and a request already sent on it lost)."""
    from test_audit18_team import _acme_server, _issued, _ready_order, _unavailable
    from test_team_hsm import env_for

    from acme_client import Client, HTTP01Responder
    from acme_helpers import ports

    init_token_ca(tmp_path, token)
    ca_pem = tmp_path / "ca" / "ca.pem"
    http_port = ports(1)[0]
    server = _acme_server(tmp_path, env_for(tmp_path, token), http_port)
    folder, saved = softhsm.token_folder(token), tmp_path / "token-copy"
    try:
        with HTTP01Responder(http_port) as web:
            client = Client(server.directory, ca_pem)
            client.register()
            shutil.copytree(folder, saved)
            delete_token(token)
            order_url = _ready_order(client, web, "b.acme.test")
            _unavailable(client, order_url, "b.acme.test", "the CA's key cannot sign now")
            time.sleep(0.5)  # the server's read of the next request waits: where the stale error struck
            client.get(order_url)
            shutil.copytree(saved, folder)
            _issued(client, order_url, "b.acme.test", ca_pem, tmp_path)
            time.sleep(0.5)
            client.get(order_url)
    finally:
        server.stop()
    requests_from = re.findall(r'(\d+\.\d+\.\d+\.\d+:\d+) "[A-Z]+ ', server.stderr)
    assert len(requests_from) > 10 and len(set(requests_from)) == 1, (set(requests_from), server.stderr)
    assert "Traceback" not in server.stderr, server.stderr
