"""What probe reads after its handshake: a refusal the server sends before any request (TLS 1.3), and
the start of the answer's body."""

from __future__ import annotations

import re

# How long probe waits, after a TLS 1.3 handshake in which the server asked for a certificate, for the
# server to refuse it (an alert) before it sends its request. In TLS 1.3 the client's handshake ends
# before the server has read the client's certificate: a request written at once meets the server's
# alert and close as a reset (ECONNRESET), and the alert is lost; a server that reads first (Redis) then
# looked as if it took the connection. Loopback and LAN servers answer in milliseconds.
REFUSAL_WAIT = 0.5


def await_refusal(conn, sock, timeout: float) -> tuple[bytes, Exception | None]:
    """Read for up to REFUSAL_WAIT seconds before writing: (what the server sent first, the error that
    ended the read: an alert, a close; None when the server said nothing, as an HTTP server does)."""
    from OpenSSL import SSL

    from certkit.pyossl import set_kernel_timeout

    set_kernel_timeout(sock, min(REFUSAL_WAIT, timeout))
    try:
        return conn.recv(4096), None
    except (SSL.WantReadError, SSL.WantWriteError):
        return b"", None  # nothing within the wait: the server waits for the request
    except SSL.Error as exc:
        return b"", exc
    finally:
        set_kernel_timeout(sock, timeout)


def read_body(conn, data: bytes, most: int) -> bytes:
    """Read on into the body, for the page nginx answers with and the reasons certkit serve gives: up to
    ``most`` bytes of it, its Content-Length, or the end of the connection."""
    from OpenSSL import SSL

    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:[ \t]*(\d{1,12})[ \t]*$", head)
    want = min(most, int(length.group(1)) if length else most)
    while len(body) < want:
        try:
            chunk = conn.recv(4096)
        except SSL.Error:
            break
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body
