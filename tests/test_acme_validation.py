"""Challenge validation against responders that misbehave on purpose: slow ones (a byte at a time)
must neither hold a validation past its deadline nor keep other accounts' challenges waiting;
http-01 redirects are followed (RFC 8555 8.3) within bounds; an answer too long says so."""

from __future__ import annotations

import concurrent.futures
import socketserver
import ssl
import threading
import time
from pathlib import Path

import pytest
import requests

from acme_client import Client, sign, validation_certificate
from acme_helpers import serving

SLOW = [f"slow{i}.acme.test" for i in range(8)]
NAMES = (*SLOW, "honest.acme.test", "tls-slow.acme.test", "red.acme.test", "long.acme.test")
PREFIX = "/.well-known/acme-challenge/"


@pytest.fixture(scope="module")
def acme(tmp_path_factory):
    yield from serving(tmp_path_factory.mktemp("acme"), NAMES, clean=False)


def client(acme) -> Client:
    c = Client(acme.server.directory, acme.root)
    c.register()
    return c


def challenge(c: Client, name: str, kind: str = "http-01") -> dict:
    _url, order = c.new_order(name)
    authz = c.get(order["authorizations"][0])
    return next(ch for ch in authz["challenges"] if ch["type"] == kind)


def answer(body: bytes, status: str = "200 OK", headers: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body


def redirect(location: str, status: str = "302 Found") -> bytes:
    return answer(b"", status, f"Location: {location}\r\n")


def drip(sock, stop: threading.Event) -> None:
    """Headers, then one byte of the body every half second: never a 10 s silence."""
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n")
    while not stop.wait(0.5):
        sock.sendall(b" ")


def drip_tls(sock, stop: threading.Event) -> None:
    """Take the ClientHello, then start a 16 KiB handshake record and send it a byte every half second."""
    sock.recv(4096)
    sock.sendall(b"\x16\x03\x03\x40\x00")
    while not stop.wait(0.5):
        sock.sendall(b"\x02")


class Scripted:
    """A loopback HTTP (``tls``: HTTPS, self-signed) server: ``routes[path]`` is the whole answer
    (bytes) or a function given the socket; ``raw`` takes every connection before any HTTP."""

    def __init__(self, port: int, *, tls: bool = False, raw=None, folder: Path | None = None) -> None:
        self.routes: dict[str, object] = {}
        self.seen: list[tuple[str, str]] = []  # (Host, path)
        self.stop = threading.Event()
        context = None
        if tls:
            cert, key = validation_certificate("red.acme.test", "unused")
            (folder / "c.pem").write_bytes(cert)
            (folder / "k.pem").write_bytes(key)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(folder / "c.pem", folder / "k.pem")
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                try:
                    outer.serve(context.wrap_socket(self.request, server_side=True) if context else self.request,
                                raw)
                except (OSError, ssl.SSLError):
                    pass

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()

    def serve(self, sock, raw) -> None:
        if raw is not None:
            raw(sock, self.stop)
            return
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                return
            data += chunk
        line, *headers = data.split(b"\r\n\r\n")[0].decode().split("\r\n")
        path = line.split(" ")[1]
        host = next((h.split(":", 1)[1].strip() for h in headers if h.lower().startswith("host:")), "")
        self.seen.append((host, path))
        reply = self.routes.get(path, answer(b"", "404 Not Found"))
        if callable(reply):
            reply(sock, self.stop)
        else:
            sock.sendall(reply)

    def seen_for(self, token: str) -> list[tuple[str, str]]:
        """What was asked, less other challenges' own paths: a validation an earlier test started (a slow
        one, retried) may still reach this port, and once made a test see one request too many."""
        return [(host, path) for host, path in self.seen if not path.startswith(PREFIX) or token in path]

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


def post_at_once(acme, posts: list[tuple[Client, str]]) -> None:
    """POST {} to each challenge URL at once, each signed by its client (one nonce each)."""
    bodies = [(url, sign({}, c.key, c.alg, url=url, nonce=c.nonce(), kid=c.kid)) for c, url in posts]

    def send(url_body) -> int:
        url, body = url_body
        return requests.post(url, json=body, headers={"Content-Type": "application/jose+json"},
                             verify=str(acme.root), timeout=30).status_code

    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        assert list(pool.map(send, bodies)) == [200] * len(bodies)


def test_slow_responders_end_at_the_deadline_and_starve_no_one(acme) -> None:
    """One account with eight challenges answered a byte at a time, another with a tls-alpn-01
    handshake answered a byte at a time: a third account's challenge still validates at once,
    and each slow one fails when its 10 s are up, not when the responder gives up."""
    attacker, tls_attacker, honest = client(acme), client(acme), client(acme)
    with Scripted(acme.http_port) as http, Scripted(acme.tls_port, raw=drip_tls):
        slow = [challenge(attacker, name) for name in SLOW]
        for ch in slow:
            http.routes[PREFIX + ch["token"]] = drip
        slow_tls = challenge(tls_attacker, "tls-slow.acme.test", "tls-alpn-01")
        started = time.monotonic()
        post_at_once(acme, [(attacker, ch["url"]) for ch in slow] + [(tls_attacker, slow_tls["url"])])
        good = challenge(honest, "honest.acme.test")
        http.routes[PREFIX + good["token"]] = answer(honest.key_authorization(good["token"]).encode())
        t0 = time.monotonic()
        honest.post(good["url"], {})
        assert honest.wait(good["url"], ("valid", "invalid"), timeout=8)["status"] == "valid"
        assert time.monotonic() - t0 < 5
        failed_tls = tls_attacker.wait(slow_tls["url"], ("valid", "invalid"), timeout=20)
        first = None
        while first is None and time.monotonic() - started < 70:
            first = next((ch for ch in map(attacker.get, (c["url"] for c in slow)) if ch["status"] == "invalid"),
                         None)
        took = time.monotonic() - started
    assert first is not None and took < 60, took  # its deadline, 10 s; the drip would end after 100 s
    assert first["error"]["type"].endswith(":connection"), first
    assert "no complete answer within 10 s" in first["error"]["detail"], first
    assert failed_tls["status"] == "invalid" and failed_tls["error"]["type"].endswith(":tls"), failed_tls
    assert "no complete answer within 10 s" in failed_tls["error"]["detail"], failed_tls


def _validated(c: Client, http: Scripted, route: bytes | None = None, name: str = "red.acme.test") -> dict:
    ch = challenge(c, name)
    http.routes[PREFIX + ch["token"]] = route if route is not None else answer(b"unused")
    c.post(ch["url"], {})
    return ch, c.wait(ch["url"], ("valid", "invalid"))


def test_http01_follows_redirects(acme, tmp_path: Path) -> None:
    c = client(acme)
    with Scripted(acme.http_port) as http, Scripted(acme.tls_port, tls=True, folder=tmp_path) as https:
        # Absolute, to the same scheme and port; then relative; then to https (self-signed: not verified).
        ch = challenge(c, "red.acme.test")
        token, key_auth = ch["token"], c.key_authorization(ch["token"]).encode()
        http.routes[PREFIX + token] = redirect(f"http://red.acme.test:{acme.http_port}/central/{token}")
        http.routes[f"/central/{token}"] = redirect(f"../tls/{token}", "307 Temporary Redirect")
        http.routes[f"/tls/{token}"] = redirect(f"https://red.acme.test:{acme.tls_port}/final/{token}?x=1",
                                                "301 Moved Permanently")
        https.routes[f"/final/{token}?x=1"] = answer(key_auth + b"\n")
        c.post(ch["url"], {})
        assert c.wait(ch["url"], ("valid", "invalid"))["status"] == "valid"
    assert [path for _host, path in http.seen_for(token)] == [PREFIX + token, f"/central/{token}", f"/tls/{token}"]
    assert https.seen_for(token) == [(f"red.acme.test:{acme.tls_port}", f"/final/{token}?x=1")]


def test_http01_redirects_are_bounded(acme) -> None:
    c = client(acme)
    with Scripted(acme.http_port) as http:
        ch = challenge(c, "red.acme.test")
        http.routes[PREFIX + ch["token"]] = redirect(PREFIX + ch["token"])  # a loop
        c.post(ch["url"], {})
        looped = c.wait(ch["url"], ("valid", "invalid"))
        assert len(http.seen_for(ch["token"])) == 11
        elsewhere = {}
        for label, location in (("port", "http://red.acme.test:1/x"), ("scheme", "ftp://red.acme.test/x"),
                                ("none", "")):
            ch = challenge(c, "red.acme.test")
            http.routes[PREFIX + ch["token"]] = redirect(location)
            c.post(ch["url"], {})
            elsewhere[label] = c.wait(ch["url"], ("valid", "invalid"))["error"]
    assert looped["status"] == "invalid" and looped["error"]["type"].endswith(":connection"), looped
    assert "redirected more than 10 times" in looped["error"]["detail"], looped
    assert "is on port 1; redirects are followed to port 80 (or" in elsewhere["port"]["detail"], elsewhere
    assert "is not an http or https URL" in elsewhere["scheme"]["detail"], elsewhere
    assert "the Location header is missing" in elsewhere["none"]["detail"], elsewhere
    assert all(e["type"].endswith(":incorrectResponse") for e in elsewhere.values()), elsewhere


def redirected(c: Client, port: int, name: str, location: str, body: bytes) -> tuple[dict, dict, "Scripted"]:
    """An http-01 challenge for ``name`` whose responder on ``port`` redirects to ``location``, whose path
    answers ``body``: (the challenge, its outcome, the responder, with what it was asked)."""
    from urllib.parse import urlsplit

    with Scripted(port) as http:
        ch = challenge(c, name)
        http.routes[PREFIX + ch["token"]] = redirect(location)
        http.routes[urlsplit(location).path] = answer(body)
        c.post(ch["url"], {})
        return ch, c.wait(ch["url"], ("valid", "invalid")), http


@pytest.mark.parametrize("target,why", [
    ("localhost", "'localhost' is outside the domains this ACME server issues for (acme.test)"),
    ("internal.example", "'internal.example' is outside the domains this ACME server issues for"),
    ("10.1.2.3", "'10.1.2.3' is outside the IP ranges this ACME server issues for (127.0.0.0/8)"),
    ("[::1]", "'::1' is outside the IP ranges this ACME server issues for"),
])
def test_http01_redirects_only_to_hosts_the_server_validates(acme, target, why) -> None:
    """acme7 #2: a redirect reached any host (localhost, an internal address) and its page came back in
    the error; now a host outside the server's policy is refused before anything is fetched from it."""
    ch, done, http = redirected(client(acme), acme.http_port, "red.acme.test",
                                f"http://{target}:{acme.http_port}/secret", b"internal-page")
    assert done["status"] == "invalid" and done["error"]["type"].endswith(":incorrectResponse"), done
    assert why in done["error"]["detail"] and "internal-page" not in done["error"]["detail"], done
    assert [path for _host, path in http.seen_for(ch["token"])] == [PREFIX + ch["token"]]


@pytest.mark.parametrize("target", ["honest.acme.test", "127.0.0.1"])
def test_http01_redirects_to_another_host_the_server_validates(acme, target) -> None:
    c = client(acme)
    with Scripted(acme.http_port) as http:
        ch = challenge(c, "red.acme.test")
        http.routes[PREFIX + ch["token"]] = redirect(f"http://{target}:{acme.http_port}/elsewhere")
        http.routes["/elsewhere"] = answer(c.key_authorization(ch["token"]).encode())
        c.post(ch["url"], {})
        assert c.wait(ch["url"], ("valid", "invalid"))["status"] == "valid"
    assert http.seen[-1] == (f"{target}:{acme.http_port}", "/elsewhere")


def test_an_answer_too_long_says_so(acme) -> None:
    c = client(acme)
    with Scripted(acme.http_port) as http:
        ch = challenge(c, "long.acme.test")
        key_auth = c.key_authorization(ch["token"]).encode()
        body = key_auth + b"\n" * 10000
        http.routes[PREFIX + ch["token"]] = answer(body)
        c.post(ch["url"], {})
        done = c.wait(ch["url"], ("valid", "invalid"))
    assert done["status"] == "invalid" and done["error"]["type"].endswith(":incorrectResponse"), done
    detail = done["error"]["detail"]
    assert f"answered {len(body)} bytes; the body must be the key authorization alone" in detail, detail
    assert "not the key authorization" not in detail
