"""probe's HTTP side: the URL it is given (read as certkit reads hosts), and what it does after its
handshake: one HTTP request and the start of its answer, and a refusal the server sends before any request
(TLS 1.3)."""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from certkit.errors import CertkitError
from certkit.text import HIDDEN, is_digits, shown

# How long probe waits, after a TLS 1.3 handshake in which the server asked for a certificate, for the
# server to refuse it (an alert) before it sends its request. In TLS 1.3 the client's handshake ends
# before the server has read the client's certificate: a request written at once meets the server's
# alert and close as a reset (ECONNRESET), and the alert is lost; a server that reads first (Redis) then
# looked as if it took the connection. Loopback and LAN servers answer in milliseconds.
REFUSAL_WAIT = 0.5
MAX_RESPONSE_BYTES = 1 << 16  # the head of an HTTP answer: enough for its status line and a short body
MAX_BODY_BYTES = 1 << 14  # the start of the body: certkit serve's refusal text says why in its last lines
# What RFC 3986 lets stand in a path and a query as written; anything else (a space, non-ASCII text,
# controls) is percent-encoded as UTF-8. A '%' stays only when it starts an escape already made.
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_QUERY_SAFE = _PATH_SAFE + "?"


class ProbeError(CertkitError):
    """The probe could not be made (bad URL, unreachable server, unusable client files)."""


@dataclass
class Target:
    host: str  # a name, or an address without its zone
    port: int
    path: str
    # An IPv6 address's zone (RFC 6874 https://[fe80::1%25eth0]/): the network interface to reach it through,
    # by name or index. The connection only uses it: it is no part of the name the certificate must hold.
    zone: str | None = None
    # The address the first connection reached, of the name's addresses: every later connection goes to it, so
    # that the report is of one server, not of two behind a name with several addresses (round-robin DNS).
    reached: str | None = field(default=None, compare=False)

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
            return True
        except ValueError:
            return False

    @property
    def label(self) -> str:
        zone = f"%{self.zone}" if self.zone else ""
        return f"[{self.host}{zone}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def connect(self, timeout: float) -> socket.socket:
        """A TCP connection to the host (each of a name's addresses in turn, up to ``timeout`` each, until one
        answers; then that one again), through the zone's interface."""
        if self.zone is None:
            sock = socket.create_connection((self.reached or self.host, self.port), timeout=timeout)
            if self.reached is None:
                self.reached = sock.getpeername()[0]
            return sock
        # The resolver takes a zone for a link-local address only (glibc): the address is given with it here.
        index = zone_index(self.zone)
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect((self.host, self.port, 0, index))
        except BaseException:
            sock.close()
            raise
        return sock


def hidden(url: str) -> str:
    """``url`` fit to echo: in each URL it holds (several, separated by blanks, commas or line breaks, are one
    argument's mistake), what stands before the '@' that ends a user part is written "***"
    (:data:`certkit.text.HIDDEN`). A password with a '/', '?' or '#' in it ends the host for a URL parser (its
    port is then the password's start): the user part then runs to the last '@' of that URL."""
    pieces = re.split(r"([\s,;\x00-\x1f\x7f]+)", url)
    for i, piece in enumerate(pieces):
        start = piece.find("://") + 3 if "://" in piece else 0
        rest = piece[start:]
        authority = re.split(r"[/?#\\]", rest, maxsplit=1)[0]
        _, colon, port = authority.rpartition("]")[2].rpartition(":")
        if "@" in authority:
            pieces[i] = piece[:start] + HIDDEN + "@" + rest[authority.rindex("@") + 1:]
        elif "@" in rest and colon and port and not is_digits(port):
            pieces[i] = piece[:start] + HIDDEN + "@" + rest[rest.rindex("@") + 1:]
    return "".join(pieces)


def parse_url(url: str) -> Target:
    """``https://HOST[:PORT][/PATH]`` (a bare ``HOST[:PORT]`` is taken as https)."""
    text = url.strip()
    url = hidden(url)  # only ever echoed from here on: the text parsed is ``text``
    if (bad := next((ch for ch in text if unicodedata.category(ch) == "Cc"), None)) is not None:
        # Before urlsplit, which drops a tab or line break (WHATWG's rule) and so would probe another host.
        raise ProbeError(f"'{shown(url)}' holds a control character ({shown(bad)}), which no URL holds; give "
                         "https://HOST[:PORT][/PATH].")
    if "://" not in text:
        text = "https://" + text
    scheme, _, rest = text.partition("://")
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if hidden(text) != text:
        # probe sends no credentials, so a server that wants them answers 401, which would read as a refused
        # client certificate; and the URL is printed in the report. Refused, without echoing what came before '@'.
        raise ProbeError(f"'{shown(hidden(text))}' holds a user name or password (before '@'); probe sends no "
                         "credentials: give https://HOST[:PORT][/PATH] without them.")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        given = authority.rpartition("]")[2].rpartition(":")[2]
        if given and not is_digits(given):  # in certkit's words, as the host's digits are (４４３, 8o)
            raise ProbeError(f"'{shown(url)}' is not a URL certkit can probe: its port '{shown(given)}' is not a "
                             "number in the digits 0 to 9.") from None
        if given and int(given) > 65535:  # Python's "Port out of range 0-65535": said as for port 0
            raise ProbeError(f"'{shown(url)}' is not a URL certkit can probe: it names port {given}, and ports "
                             "end at 65535; give a port from 1 to 65535.") from None
        raise ProbeError(f"'{shown(url)}' is not a URL certkit can probe: {exc}.") from None
    if parts.scheme.lower() != "https":
        raise ProbeError(f"'{shown(url)}' is not an https:// URL; probe speaks TLS (https://HOST[:PORT]).")
    if not parts.hostname:
        raise ProbeError(f"'{shown(url)}' names no host; give https://HOST[:PORT].")
    if parts.hostname != parts.hostname.strip():  # urlsplit keeps it; curl refuses such a URL, browsers drop it
        from certkit.names_notation import refuse_surrounding_space

        refuse_surrounding_space(parts.hostname, f"The host '{shown(parts.hostname)}' of '{shown(url)}'")
    if port == 0:
        raise ProbeError(f"'{shown(url)}' names port 0, which no server listens on; give a port from 1 to 65535.")
    path = _encoded(parts.path or "/", _PATH_SAFE)
    host, zone = _host(url, parts.hostname)
    return Target(host, 443 if port is None else port,
                  path + (f"?{_encoded(parts.query, _QUERY_SAFE)}" if parts.query else ""), zone)


def _encoded(text: str, safe: str) -> str:
    """``text`` as an HTTP request line may carry it: percent-encoded, escapes already made kept as they are
    (``/a b`` is sent as ``/a%20b``, ``/a%20b`` unchanged, ``/100%`` as ``/100%25``)."""
    return quote(re.sub(r"%(?![0-9A-Fa-f]{2})", "%25", text), safe=safe)


def _host(url: str, hostname: str) -> tuple[str, str | None]:
    """The URL's host as certkit names hosts (:func:`certkit.names.parse_host`): A-labels, a compressed IP; and
    an IPv6 address's zone (:func:`_zone`), or None."""
    from certkit.errors import InvalidName
    from certkit.names import parse_host

    try:  # an address as given: probe connects to it (0.0.0.0 reaches this host), it names no certificate
        address = ipaddress.ip_address(hostname)
    except ValueError:
        pass
    else:
        if getattr(address, "scope_id", None) is None:
            return str(address), None
        return str(ipaddress.ip_address(hostname.partition("%")[0])), _zone(url, hostname.partition("%")[2])
    try:
        host = parse_host(hostname)
    except InvalidName as exc:
        raise ProbeError(f"'{shown(url)}' names no host certkit can probe: {shown(exc)}") from None
    if host.is_wildcard:
        raise ProbeError(f"'{shown(url)}' names a wildcard; probe connects to one host, as in https://www.example.com/.")
    return host.value, None


def _zone(url: str, written: str) -> str:
    """The zone of ``https://[fe80::1%25eth0]/`` (:func:`unescaped_zone`), which must name an interface of this
    machine (or be an interface's index)."""
    zone = unescaped_zone(written)
    try:
        zone_index(zone)
    except (OSError, ValueError, OverflowError):  # ValueError: empty, or a NUL in it
        raise ProbeError(f"'{shown(url)}' names the zone '{shown(zone)}' (the network interface to reach the "
                         "address through), which is no interface of this machine: give one `ip link` lists, as "
                         "in https://[fe80::1%25eth0]:8443/.") from None
    return zone


def unescaped_zone(written: str) -> str:
    """An IPv6 zone as written after the '%' of an address: RFC 6874 writes that '%' as %25 in a URL, which is taken
    off (as curl does; a bare '%eth0' is taken too), and the zone's own escapes decoded."""
    from urllib.parse import unquote

    return unquote(written[2:] if written.startswith("25") else written)


def zone_index(zone: str) -> int:
    """The index of the network interface ``zone`` names (or is the index of); OSError when this machine has none."""
    index = int(zone) if zone.isdigit() else socket.if_nametoindex(zone)
    socket.if_indextoname(index)
    return index


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


def request(conn, target, attempt, data: bytes = b"", refused: Exception | None = None) -> None:
    """One HTTP/1.1 GET and the head of its answer; a TLS alert instead is recorded as such. ``data`` and
    ``refused``: what the server sent, and how its connection ended, before the request was written."""
    from OpenSSL import SSL

    from certkit.pyossl import openssl_reason

    host = f"[{target.host}]" if ":" in target.host else target.host
    line = (f"GET {target.path} HTTP/1.1\r\nHost: {host}:{target.port}\r\nUser-Agent: certkit-probe\r\n"
               "Accept: text/plain, */*\r\nConnection: close\r\n\r\n")
    try:
        if refused is not None:
            raise refused
        conn.sendall(line.encode("ascii", "replace"))
        while len(data) < MAX_RESPONSE_BYTES and b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        if b"\r\n\r\n" in data:
            data = read_body(conn, data, MAX_BODY_BYTES)
    except SSL.ZeroReturnError:
        pass
    except (SSL.WantReadError, SSL.WantWriteError):
        attempt.http_error = "no answer to the HTTP request in time"
    except SSL.SysCallError as exc:
        attempt.http_error = f"the server closed the connection ({exc.args[-1]})"
    except SSL.Error as exc:
        attempt.http_error = openssl_reason(exc)
    head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    bits = status_line.split(" ", 2)
    if len(bits) >= 2 and bits[0].startswith("HTTP/") and is_digits(bits[1]):
        attempt.http_status = int(bits[1])
        attempt.http_reason = bits[2] if len(bits) > 2 else ""
        attempt.body_start = body[:MAX_BODY_BYTES].decode("utf-8", "replace")
    elif data and not attempt.read_alert:  # what it said, rather than how it ended
        attempt.http_error = HTTP2_ANSWER if _http2_frames(data) else "the answer is not HTTP"


# An HTTP/2 server's first frame, SETTINGS (RFC 9113 3.4, 6.5), sent before it reads anything: a server that speaks
# HTTP/2 only (gRPC servers; probe offers no ALPN, so it cannot ask for HTTP/1.1 and be refused in the handshake)
HTTP2_ANSWER = ("the answer is not HTTP/1.1 but HTTP/2 frames: the server speaks HTTP/2 only (as gRPC servers do), "
                "and probe asks in HTTP/1.1")


def _http2_frames(data: bytes) -> bool:
    """Whether ``data`` starts with an HTTP/2 SETTINGS frame: type 4, on stream 0, its length a multiple of 6."""
    return len(data) >= 9 and data[3] == 4 and data[5:9] == bytes(4) and int.from_bytes(data[:3], "big") % 6 == 0


# A CertificateRequest that came after the handshake, once the server read the request (RFC 8446 4.6.2)
AFTER_HANDSHAKE = ("yes, after the handshake: the server sent a CertificateRequest once it read the request for {} "
                   "({}, as Apache httpd asks for a certificate that one path requires)")
POST_HANDSHAKE_AUTH = ("TLS 1.3 post-handshake authentication; only a client that allows it is asked (curl does; "
                       "Python's ssl with post_handshake_auth = True), any other gets no chance to send one")


MISDIRECTED_PROBLEM = ("the server answered HTTP 421 Misdirected Request and asked for no client certificate on this "
                       "connection, so whether it accepts the client certificate is not known: probe it by a name it "
                       "serves")


def misdirected(attempt, target: Target) -> str | None:
    """An HTTP 421 Misdirected Request, in words: the server (Caddy, Traefik, nginx) chose this connection's TLS
    settings by the server name the client sent (SNI), and will not answer for the URL's host on it; what it
    asked of the client here says nothing of what it asks by that name. None for any other answer."""
    if attempt is None or attempt.http_status != 421:
        return None
    sni = (f", and probe sends none for an address such as {target.host}: TLS carries host names only"
           if target.is_ip else "")
    return (f"the server answered HTTP 421 Misdirected Request: it does not serve {target.host} on this connection, "
            "whose TLS settings (its certificate, whether it asks for a client certificate) it chose by the "
            f"server name the client sent (SNI){sni}; probe it by a name it serves")


def unreadable_chain(label: str, chain: list) -> list:
    """The server's ``chain``, once each certificate in it can be read; else a ProbeError naming the first one
    certkit cannot read (damaged, or a name form cryptography lacks, which OpenSSL takes): not a traceback."""
    from certkit.errors import damage_said, unreadable_certificate

    for place, cert in enumerate(chain, start=1):
        if (exc := unreadable_certificate(cert)) is not None:
            raise ProbeError(f"{shown(label)}: certificate {place} of {len(chain)} the server sends is "
                             f"{damage_said(exc)}; openssl s_client -connect {shown(label)} -showcerts shows them.")
    return chain


def not_tls(target: Target, timeout: float) -> str:
    """What a server that answered probe's TLS handshake with something else ("wrong version number") speaks on
    the port: plain HTTP (asked again, in plain HTTP, on a connection of its own), or another protocol."""
    answer = b""
    try:
        with target.connect(timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(f"HEAD / HTTP/1.0\r\nHost: {target.label}\r\n\r\n".encode("ascii", "replace"))
            answer = sock.recv(256)
    except OSError:
        pass
    if answer.startswith(b"HTTP/"):
        status = answer.split(b"\r\n", 1)[0].decode("latin-1")
        return (f": the server speaks plain HTTP on this port, not TLS (asked in plain HTTP, it answers "
                f"'{shown(status)}'): give the port where it speaks HTTPS, or use a plain HTTP client for this one")
    return (": what the server sent is not TLS: it speaks another protocol on this port (one that starts TLS only "
            "after a greeting of its own, as SMTP, IMAP or PostgreSQL, is not something probe speaks); give the "
            "port where the server speaks TLS from the first byte")
