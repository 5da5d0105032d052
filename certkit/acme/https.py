"""The ACME server over HTTPS: :class:`AcmeHTTPServer` and its request handler (standard
library ``http.server`` and ``ssl``).

One thread per connection, with the TLS handshake in that thread (as ``certkit
serve`` does); keep-alive, since clients send a dozen requests per certificate.
Requests http.server refuses itself (an unknown method, a bad request line,
headers too long) are answered with problem documents too (:meth:`AcmeRequestHandler.send_error`).
The handler reads a bounded request body and hands method, path, headers and
body to :meth:`AcmeService.handle <certkit.acme.server.AcmeService.handle>`;
URLs are built from the authority the request names (:meth:`AcmeRequestHandler._base`): its
request target's, given in absolute form (RFC 9112 3.2.2), else its ``Host`` header's; an
HTTP/1.1 request without one ``Host`` header is refused (RFC 9112 3.2).
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from certkit.acme import jws
from certkit.acme.problems import RETRY_LATER, Problem
from certkit.acme.response import Response
from certkit.pkcs11.session import clear_tls_errors
from certkit.text import received, shown

if TYPE_CHECKING:
    from certkit.acme.server import AcmeService

HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 30.0
# How long, and how much of it, the rest of a refused request is read and dropped before its connection
# closes (:meth:`AcmeRequestHandler.finish`): more than any ACME client sends with a refused body.
LINGER_S, LINGER_BYTES = 2.0, 1 << 20
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")


class AcmeRequestHandler(BaseHTTPRequestHandler):
    server_version = "certkit-acme"
    sys_version = ""
    protocol_version = "HTTP/1.1"  # keep-alive: clients send a dozen requests per certificate
    timeout = IDLE_TIMEOUT
    server: "AcmeHTTPServer"
    lingering = False  # answered and closing with what the client sent, or still sends, unread

    def finish(self) -> None:
        """Close the connection; one answered with its request unread (a body refused or too large, an
        unknown method's body, a request of a server that is stopping) is half-closed first, and what the
        client still sends is read and dropped until it closes (:func:`certkit.pyossl.drain_rejected`).
        Closed with bytes unread, the kernel sends a reset instead: a client still sending its body
        (requests, certbot's library: 'EOF occurred in violation of protocol') never read the answer
        that said why, already sent."""
        super().finish()
        if self.lingering:
            from certkit.pyossl import drain_rejected

            drain_rejected(self.connection, LINGER_S, LINGER_BYTES)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a method it has no do_ for, a bad request line, headers too
        long) as problem documents, like every other refusal, instead of its HTML page."""
        if code == HTTPStatus.NOT_IMPLEMENTED and self.command:  # a method: 405 from the resource, with Allow
            self.close_connection = self.lingering = True  # its body, if any, is not read
            self._serve(self.command, read_body=False)
            return
        if self.request_version == "HTTP/0.9":  # no status line or headers otherwise; nobody speaks 0.9
            self.request_version = "HTTP/1.0"
        detail = {HTTPStatus.BAD_REQUEST: "The request is not HTTP/1.1", 431: "The request's headers are too long",
                  HTTPStatus.REQUEST_URI_TOO_LONG: "The request line is too long"}.get(code, "The request is refused")
        response = Response.problem(Problem("malformed", f"{detail} ({shown(message or HTTPStatus(code).phrase)}).",
                                            status=int(code)))
        self._send(self.server.service.finish(response, self.server.base_url(None)), self.command or "GET",
                   close=True)

    def _serve(self, method: str, *, read_body: bool = True) -> None:
        if not self.server.begin_request():  # stopping: only the requests under way are finished
            stopping = Problem("serverInternal", "The server is stopping; try again in a moment.", status=503,
                               headers={"Retry-After": RETRY_LATER})
            response = self.server.service.finish(Response.problem(stopping), self.server.base_url(None), mint=False)
            self._send(response, method, close=True)
            return
        try:
            self._answer(method, read_body)
        finally:
            self.server.end_request()
            # Whatever answering it ran in this thread (a finalize signing in a PKCS#11 token built on
            # OpenSSL) leaves nothing on the thread's OpenSSL error queue, which the connection's next
            # read would take for its own error, and drop the client (certkit.pkcs11.session).
            clear_tls_errors()

    def _answer(self, method: str, read_body: bool) -> None:
        base, refusal = self._base()
        body = b""
        if read_body or refusal is not None:
            refusal = refusal or self._body_refusal()
            if refusal is not None:  # its body, if any, is not read: the connection ends with the answer
                self._send(self.server.service.finish(Response.problem(refusal), base), method, close=True)
                return
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        response = self.server.service.handle(method, self.path, self.headers, body, base)
        self._send(response, method)

    def _base(self) -> tuple[str, Problem | None]:
        """The base of the URLs this request is answered with, and why it is refused, or None. The
        authority is the request target's when it is in absolute form (RFC 9112 3.2.2: the Host
        header is then ignored), else the Host header's; either must look like a host and port,
        else the server's own address is used (:meth:`AcmeHTTPServer.base_url`). An HTTP/1.1
        request must carry exactly one Host header, whatever its target (RFC 9112 3.2)."""
        hosts = self.headers.get_all("Host") or []
        authority = target_authority(self.path)
        base = self.server.base_url(authority if authority is not None else (hosts[0] if hosts else None))
        if len(hosts) > 1:
            return base, Problem("malformed", "The request carries more than one Host header (RFC 9112 3.2).")
        if not hosts and self.request_version not in ("HTTP/0.9", "HTTP/1.0"):
            return base, Problem("malformed", f"An {self.request_version} request must carry a Host header naming "
                                              "the server it is for (RFC 9112 3.2).")
        return base, None

    def _body_refusal(self) -> Problem | None:
        """Why the request's body cannot be read, or None. Every method's declared body is read,
        GET's and HEAD's too: left unread, its bytes would be taken for the next request on the
        connection (a request smuggled past whatever forwarded this one)."""
        if self.headers.get("Transfer-Encoding"):
            return Problem("malformed", "Send the request body with a Content-Length.", status=411)
        lengths = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        if len(lengths) > 1 or not all(re.fullmatch(r"[0-9]{1,20}", value) for value in lengths):
            shown_lengths = ", ".join(sorted(shown(value) for value in lengths))
            return Problem("malformed", f"The Content-Length '{shown_lengths}' is not one number of bytes.")
        if lengths and int(next(iter(lengths))) > jws.MAX_BODY_BYTES:
            return Problem("malformed", f"The request body must be at most {jws.MAX_BODY_BYTES} bytes.", status=413)
        return None

    def _send(self, response: Response, method: str, close: bool = False) -> None:
        self.send_response(response.status)
        if response.content_type:
            self.send_header("Content-Type", response.content_type)
        if response.status != 204:  # RFC 9110 8.6: a 204 carries no Content-Length
            self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = self.lingering = True
        # Headers and body in one write, so one TLS record: written apart, the body waited for
        # the client's delayed ACK (Nagle), 40 ms on every response.
        self._headers_buffer.append(b"\r\n")
        if method != "HEAD" and response.body:
            self._headers_buffer.append(response.body)
        self.flush_headers()

    def log_request(self, code="-", size="-") -> None:
        self.server.log(f"{_peer(self.client_address)} {received(self.requestline)} {code}")

    def log_message(self, format: str, *args) -> None:
        self.server.log(f"{_peer(self.client_address)} {received(format % args, quote=False)}")


class AcmeHTTPServer(ThreadingHTTPServer):
    """The ACME service over HTTPS; the handshake runs in the connection's worker thread."""

    # Connection threads are daemons (an idle keep-alive connection must not hold a stop up); a
    # clean stop waits instead for the requests under way (drain).
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], service: AcmeService,
                 context: ssl.SSLContext | Callable[[], ssl.SSLContext], *,
                 log: Callable[[str], None], verbose: bool = False, url_host: str | None = None) -> None:
        """``context``: the TLS context, or what gives the one to use now (the :class:`Listener
        <certkit.acme.listener.Listener>`'s, a new one at each renewal), asked at each connection.
        ``url_host``: the name or address the directory URL gives (one the server's certificate
        covers); None: the bound address."""
        self.service, self.log_line, self.verbose = service, log, verbose
        self.current_context = context if callable(context) else lambda: context
        self.url_host = url_host
        self._requests = threading.Condition()
        self.active = 0  # requests being answered now
        self.stopping = False
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, AcmeRequestHandler)

    def begin_request(self) -> bool:
        """Count a request in; False once the server is stopping (it is refused with a 503)."""
        with self._requests:
            if self.stopping:
                return False
            self.active += 1
            return True

    def end_request(self) -> None:
        with self._requests:
            self.active -= 1
            self._requests.notify_all()

    def drain(self, timeout: float) -> int:
        """Refuse new requests, and wait up to ``timeout`` seconds for those under way to be
        answered (a finalize ends with its order valid, ready or invalid, never processing);
        return how many are still running. Call it once the listening socket is closed."""
        deadline = time.monotonic() + timeout
        with self._requests:
            self.stopping = True
            while self.active and time.monotonic() < deadline:
                self._requests.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            return self.active

    def log(self, message: str) -> None:
        if self.verbose:
            self.log_line(message)

    @property
    def default_host(self) -> str:
        host, port = self.url_host or self.server_address[0], self.server_address[1]
        if host in ("0.0.0.0", "::", ""):
            host = "localhost"
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def base_url(self, host_header: str | None) -> str:
        host = (host_header or "").strip()
        if not host or len(host) > 300 or not _HOST.match(host):
            host = self.default_host
        return f"https://{host}"

    @property
    def directory_url(self) -> str:
        return f"https://{self.default_host}/directory"

    def get_request(self):
        sock, address = self.socket.accept()
        return self.current_context().wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def finish_request(self, request, client_address) -> None:
        request.settimeout(HANDSHAKE_TIMEOUT)  # Python's ssl bounds the whole handshake by it, not each read
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            self.log_line(f"TLS handshake with {_peer(client_address)} failed: {exc.__class__.__name__}: "
                          f"{getattr(exc, 'reason', None) or exc}")
            if getattr(exc, "reason", None) == "HTTP_REQUEST":  # http:// typed: an answer that says so, as nginx's
                from certkit.pyossl import drain_rejected
                from certkit.serve_json import plain_http_answer

                with contextlib.suppress(OSError):  # in plain HTTP: no TLS began
                    socket.socket.sendall(request, plain_http_answer("certkit acme serve"))
                drain_rejected(request)  # the request's unread rest would make the close a reset, lost the answer
            return
        request.settimeout(IDLE_TIMEOUT)
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError | ssl.SSLError):
            return  # a client that went away
        self.log_line(f"error serving {_peer(client_address)}: {type(exc).__name__}: {shown(exc)}")


def target_authority(target: str) -> str | None:
    """The authority (``host:port``) a request target in absolute form (``https://host:port/path``)
    names, '' when it names none; None for a target in origin form (``/path``)."""
    if not target[:8].lower().startswith(("https://", "http://")):
        return None
    rest = target.split("://", 1)[1]
    return rest[:min([i for i in (rest.find("/"), rest.find("?")) if i >= 0], default=len(rest))]


def _peer(address) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
