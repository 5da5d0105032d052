"""Network I/O for challenge validation under one deadline: :class:`Deadline` and :class:`Channel`.

A validation attempt (connect, TLS handshake, request, the whole answer, every redirect) must end
by its deadline whatever the other side does. A socket timeout bounds one read only: a responder
that trickles a byte every few seconds never trips it, and held a validation worker for hours.
So every read and write here first asks the deadline how long is left and waits no longer than
that. TLS runs over memory BIOs (``ssl.SSLObject``) for the same reason: ``SSLSocket`` waits a
full timeout for each piece of a handshake.
"""

from __future__ import annotations

import io
import socket
import ssl
import time


class DeadlinePassed(TimeoutError):
    """The validation attempt ran out of time."""


class Deadline:
    """The end of one validation attempt, ``seconds`` from now."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        """The seconds left; DeadlinePassed once there are none."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise DeadlinePassed(f"no complete answer within {self.seconds:g} s")
        return left


def connect(address: str, port: int, deadline: Deadline) -> socket.socket:
    return socket.create_connection((address, port), timeout=deadline.left())


def unverified_context(alpn: list[str] | None = None) -> ssl.SSLContext:
    """A TLS client context that checks no certificate: tls-alpn-01 reads a self-signed one by
    design, and http-01 redirects to https are not verified either (as Let's Encrypt does)."""
    from certkit.tlscheck import new_context

    context = new_context(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


class Channel:
    """A connected socket, plain or TLS, whose every operation ends by the deadline; it offers
    what ``http.client`` uses of a socket (``sendall``, ``makefile``, ``close``)."""

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        self.sock, self.deadline = sock, deadline
        self.tls: ssl.SSLObject | None = None
        self._readers, self._closed = 0, False
        self._incoming, self._outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()

    def start_tls(self, context: ssl.SSLContext, server_hostname: str | None) -> None:
        self.tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        self._tls(self.tls.do_handshake)

    def _tls(self, operation, *args):
        """Run an SSLObject operation, moving bytes between it and the socket until it completes."""
        while True:
            try:
                result = operation(*args)
            except ssl.SSLWantReadError:
                self._flush()
                if self._incoming.eof:
                    raise ConnectionResetError("the connection closed during TLS") from None
                data = self._recv(65536)
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
                continue
            self._flush()
            return result

    def _flush(self) -> None:
        if self._outgoing.pending:
            self._send(self._outgoing.read())

    def _recv(self, size: int) -> bytes:
        self.sock.settimeout(self.deadline.left())
        return self.sock.recv(size)

    def _send(self, data: bytes) -> None:
        self.sock.settimeout(self.deadline.left())
        self.sock.sendall(data)

    # --- the socket interface http.client uses ----------------------------------------------------
    def sendall(self, data: bytes) -> None:
        if self.tls is None:
            self._send(bytes(data))
            return
        view = memoryview(bytes(data))
        while view:
            view = view[self._tls(self.tls.write, view):]

    def recv_into(self, buffer) -> int:
        if self.tls is None:
            self.sock.settimeout(self.deadline.left())
            return self.sock.recv_into(buffer)
        try:
            return self._tls(self.tls.read, len(buffer), buffer)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return 0  # closed, with or without close_notify: http.client says if the answer was cut short

    def makefile(self, mode: str = "rb", *args, **kwargs) -> io.BufferedReader:
        self._readers += 1
        return io.BufferedReader(_Reader(self))

    def close(self) -> None:
        """Close the socket once no reader uses it any more (as a socket does with its makefile
        objects: http.client closes the connection before the answer is read)."""
        self._closed = True
        if self._readers <= 0:
            self.sock.close()

    def _reader_closed(self) -> None:
        self._readers -= 1
        if self._closed and self._readers <= 0:
            self.sock.close()


class _Reader(io.RawIOBase):
    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self.channel.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            self.channel._reader_closed()
        super().close()
