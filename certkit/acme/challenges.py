"""Challenge validation: http-01 (RFC 8555 8.3) and tls-alpn-01 (RFC 8737), for DNS names and
IP addresses (RFC 8738).

The server connects to the name's addresses on port 80 (http-01) or 443
(tls-alpn-01); for tests and closed networks ``--http01-port`` and
``--tls-alpn01-port`` change the ports (as Pebble's ``-httpport`` and
``-tlsport`` do) and ``--resolve NAME=ADDRESS`` answers for names instead of
the system resolver (a name given several addresses is tried at each in turn, as
the system resolver's addresses are, until one accepts the connection).
http-01 follows up to :data:`MAX_REDIRECTS` redirects
(RFC 8555 8.3) to http or https on ports 80 and 443 (or those two options'
ports); https is not verified there, as Let's Encrypt does. Each attempt,
redirects included, ends within :data:`TIMEOUT` seconds however slowly the
other side answers (:mod:`certkit.acme.fetch`).
Each failure is a problem document of type ``dns``,
``connection``, ``tls`` or ``incorrectResponse`` whose detail says what was
tried and what came back.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import socket
import ssl
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from certkit.acme.failures import certificate_words, failure_words
from certkit.acme.fetch import Channel, Deadline, connect, unverified_context
from certkit.acme.problems import Problem
from certkit.text import is_digits, shown

HTTP01, TLS_ALPN01 = "http-01", "tls-alpn-01"
TYPES = (HTTP01, TLS_ALPN01)
ALPN_PROTOCOL = "acme-tls/1"
# id-pe-acmeIdentifier (RFC 8737 section 6.1)
ACME_IDENTIFIER_OID = "1.3.6.1.5.5.7.1.31"
# The whole of one validation attempt (connect, TLS, request, the complete answer, every redirect)
# ends within this many seconds, however slowly the other side answers.
TIMEOUT = 10.0
# Boulder's limit: RFC 8555 8.3 asks to follow redirects, a loop must end.
MAX_REDIRECTS = 10
REDIRECTS = (301, 302, 303, 307, 308)
# A key authorization is about 87 characters; anything much longer is not one.
MAX_HTTP_BODY = 4096


def key_authorization(token: str, thumbprint: str) -> str:
    return f"{token}.{thumbprint}"


@dataclass
class Validator:
    """How this server reaches the machines it validates."""

    http_port: int = 80
    tls_port: int = 443
    resolve: dict[str, list[str]] = field(default_factory=dict)  # lowercase name -> its IP addresses, in turn
    timeout: float = TIMEOUT
    # Whether a redirect may lead to a host (raises a Problem if not): the server's policy, so that no
    # redirect reaches a host this server would not validate (an internal page read back through the error).
    permits: Callable[[dict], object] | None = field(default=None, compare=False, repr=False)
    # Whether the server would issue for an identifier now (raises a Problem if not): checked again before
    # connecting, since the order may have been placed under another policy (a server restarted with a
    # narrower --allow-domain, another server sharing the CA's state, the CA's name constraints changed).
    issues_for: Callable[[dict], object] | None = field(default=None, compare=False, repr=False)

    def validate(self, kind: str, identifier: dict, token: str, key_auth: str) -> None:
        """Return if the challenge is met; raise a Problem saying why not otherwise."""
        if self.issues_for is not None:
            try:
                self.issues_for(identifier)
            except Problem as problem:
                raise Problem(problem.kind, f"{problem.detail.rstrip('.')}; it was not validated: this server "
                                            "validates only what it issues for (the order was placed under another "
                                            "policy).", identifier=identifier) from None
        if kind == HTTP01:
            self.http01(identifier, token, key_auth)
        elif kind == TLS_ALPN01:
            self.tls_alpn01(identifier, key_auth)
        else:
            raise Problem("malformed", f"Unknown challenge type {kind!r}.")

    # --- where to connect -----------------------------------------------------------------
    def addresses(self, identifier: dict, port: int, host: dict | None = None) -> list[str]:
        """The addresses of ``host`` (a redirect's target; by default the identifier itself)."""
        host = host or identifier
        value = host["value"]
        if host["type"] == "ip":
            return [value]
        mapped = self.resolve.get(value.lower())
        if mapped:
            return [mapped] if isinstance(mapped, str) else list(mapped)
        try:
            infos = socket.getaddrinfo(value, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise Problem("dns", f"Cannot resolve '{shown(value)}': "
                                 f"{exc.strerror if hasattr(exc, 'strerror') else exc}.",
                          identifier=identifier) from None
        found = list(dict.fromkeys(info[4][0] for info in infos))
        if not found:
            raise Problem("dns", f"'{shown(value)}' has no address.", identifier=identifier)
        return found

    def _connect(self, identifier: dict, port: int, what: str, deadline: Deadline,
                 host: dict | None = None) -> tuple[socket.socket, str]:
        errors = []
        for address in self.addresses(identifier, port, host):
            try:
                return connect(address, port, deadline), address
            except OSError as exc:
                errors.append(f"{_hostport(address, port)}: {_reason(exc)}")
        raise Problem("connection", f"{what} for '{shown((host or identifier)['value'])}': cannot connect to "
                                    f"{'; '.join(errors)}.", identifier=identifier)

    # --- http-01 --------------------------------------------------------------------------
    def http01(self, identifier: dict, token: str, key_auth: str) -> None:
        """Fetch the key authorization, following up to MAX_REDIRECTS redirects (RFC 8555 8.3),
        all within one deadline."""
        deadline = Deadline(self.timeout)
        kind = "ip" if identifier["type"] == "ip" else "dns"
        hop = _Hop("http", {"type": kind, "value": identifier["value"]},
                   None if self.http_port == 80 else self.http_port, f"/.well-known/acme-challenge/{token}")
        first = hop.url
        for count in range(MAX_REDIRECTS + 1):
            where = hop.url if count == 0 else f"{hop.url} (redirected from {first})"
            status, location, length, body, address = self._get(identifier, hop, deadline, where)
            where = f"{hop.url} (at {address}{'' if count == 0 else f', redirected from {first}'})"
            if status not in REDIRECTS:
                break
            hop = self._redirect(identifier, hop, location, where)
        else:
            raise Problem("connection", f"http-01: {first} redirected more than {MAX_REDIRECTS} times.",
                          identifier=identifier)
        if status != 200:
            raise Problem("incorrectResponse", f"http-01: {where} answered HTTP {status}; "
                                               "it must answer 200 with the key authorization.",
                          identifier=identifier)
        if len(body) > MAX_HTTP_BODY:
            size = f"{length} bytes" if length is not None else f"more than {MAX_HTTP_BODY} bytes"
            raise Problem("incorrectResponse", f"http-01: {where} answered {size}; the body must be the key "
                                               f"authorization alone ({len(key_auth)} characters, at most "
                                               f"{MAX_HTTP_BODY} bytes with trailing whitespace).",
                          identifier=identifier)
        text = body.decode("ascii", "replace").rstrip()
        if text != key_auth:
            seen = text[:100] + ("..." if len(text) > 100 else "")
            if hop.host["value"] != identifier["value"]:  # another machine's page is not the client's to read
                seen = f"{len(body)} bytes"
            raise Problem("incorrectResponse", f"http-01: {where} answered '{shown(seen)}', not the key "
                                               f"authorization '{key_auth}'.", identifier=identifier)

    def _get(self, identifier: dict, hop: "_Hop", deadline: Deadline, where: str):
        """(status, Location, Content-Length, body (None for a redirect), address:port) of one GET."""
        port = self.http_port if hop.scheme == "http" else self.tls_port
        sock, address = self._connect(identifier, port, "http-01", deadline, hop.host)
        channel = Channel(sock, deadline)
        conn = http.client.HTTPConnection(address if ":" not in address else f"[{address}]", port)
        conn.sock = channel
        try:
            if hop.scheme == "https":
                channel.start_tls(unverified_context(), hop.host["value"] if hop.host["type"] == "dns" else None)
            conn.putrequest("GET", hop.path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", hop.host_header)
            conn.putheader("User-Agent", "certkit-acme")
            conn.putheader("Accept", "*/*")
            conn.putheader("Connection", "close")
            conn.endheaders()
            response = conn.getresponse()
            redirect = response.status in REDIRECTS
            body = b"" if redirect else response.read(MAX_HTTP_BODY + 1)
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            raise Problem("connection", f"http-01: fetching {where} (at {_hostport(address, port)}) failed: "
                                        f"{_reason(exc)}.", identifier=identifier) from None
        finally:
            conn.close()
            sock.close()  # the answer is read, or will not be
        length = response.getheader("Content-Length")
        return (response.status, response.getheader("Location"), int(length) if is_digits(length or "") else None,
                body, _hostport(address, port))

    def _redirect(self, identifier: dict, hop: "_Hop", location: str | None, where: str) -> "_Hop":
        """The next hop of a redirect: http or https, on port 80 or 443 (or this server's
        --http01-port / --tls-alpn01-port, where it connects instead)."""
        def refuse(why: str) -> Problem:
            return Problem("incorrectResponse", f"http-01: {where} redirected to {shown(location or '(nothing)')}, "
                                                f"which {why}.", identifier=identifier)

        if not location:
            raise refuse("is no URL: the Location header is missing")
        try:
            parts = urllib.parse.urlsplit(urllib.parse.urljoin(hop.url, location.strip()))
            port = parts.port
        except ValueError:
            raise refuse("is not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise refuse("is not an http or https URL with a host")
        standard, configured = (80, self.http_port) if parts.scheme == "http" else (443, self.tls_port)
        if port not in (None, standard, configured):
            raise refuse(f"is on port {port}; redirects are followed to port {standard}"
                         + (f" (or {configured}, where this server validates)" if configured != standard else ""))
        try:
            host = {"type": "ip", "value": str(ipaddress.ip_address(parts.hostname))}
        except ValueError:  # a final dot names the same host (an absolute name): not another one
            name = parts.hostname
            host = {"type": "dns", "value": name[:-1] if name.endswith(".") and not name.endswith("..") else name}
        if self.permits is not None and (host["type"], host["value"]) != (identifier["type"], identifier["value"]):
            try:
                self.permits(host)
            except Problem as exc:
                raise refuse(f"is a host this server does not validate ({exc.detail.rstrip('.')}); redirects are "
                             "followed only to hosts it could issue for") from None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return _Hop(parts.scheme, host, port, path)

    # --- tls-alpn-01 ----------------------------------------------------------------------
    def tls_alpn01(self, identifier: dict, key_auth: str) -> None:
        value = identifier["value"]
        # RFC 8738 section 6: an IP address is named in SNI by its reverse-mapping name.
        sni = ipaddress.ip_address(value).reverse_pointer if identifier["type"] == "ip" else value
        deadline = Deadline(self.timeout)
        sock, address = self._connect(identifier, self.tls_port, "tls-alpn-01", deadline)
        where = f"{_hostport(address, self.tls_port)} (SNI {sni})"
        channel = Channel(sock, deadline)
        try:
            channel.start_tls(unverified_context([ALPN_PROTOCOL]), sni)
            protocol = channel.tls.selected_alpn_protocol()
            der = channel.tls.getpeercert(binary_form=True)
        except (OSError, ssl.SSLError) as exc:
            raise Problem("tls", f"tls-alpn-01: the TLS handshake with {where} failed: {_reason(exc)}.",
                          identifier=identifier) from None
        finally:
            channel.close()
        if protocol != ALPN_PROTOCOL:
            raise Problem("tls", f"tls-alpn-01: {where} did not negotiate the ALPN protocol {ALPN_PROTOCOL} "
                                 f"(it chose {protocol or 'none'}).", identifier=identifier)
        problem = check_validation_certificate(der, identifier, key_auth)
        if problem:
            raise Problem("incorrectResponse", f"tls-alpn-01: the certificate from {where} {problem}.",
                          identifier=identifier)


@dataclass(frozen=True)
class _Hop:
    """One URL fetched for http-01: the first, or a redirect's target."""

    scheme: str
    host: dict  # {"type": "dns" | "ip", "value": ...}
    port: int | None  # as written in the URL; None: the scheme's own
    path: str

    @property
    def host_header(self) -> str:
        value = self.host["value"]
        name = f"[{value}]" if ":" in value else value
        return name if self.port is None else f"{name}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.path}"


def check_validation_certificate(der: bytes | None, identifier: dict, key_auth: str) -> str | None:
    """What is wrong with a tls-alpn-01 certificate (RFC 8737 section 3), in words, or None."""
    from cryptography import x509

    from certkit.errors import parse_errors

    if not der:
        return "is missing"
    try:
        cert = x509.load_der_x509_certificate(der)
        extensions = {ext.oid.dotted_string: ext for ext in cert.extensions}
    except parse_errors() as exc:
        return f"cannot be parsed: {certificate_words(exc)}"  # in words, not the ASN.1 parser's
    san = extensions.get(x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME.dotted_string)
    entries = list(san.value) if san is not None else []
    if identifier["type"] == "ip":
        wanted = ipaddress.ip_address(identifier["value"])
        matches = len(entries) == 1 and isinstance(entries[0], x509.IPAddress) and entries[0].value == wanted
    else:
        matches = (len(entries) == 1 and isinstance(entries[0], x509.DNSName)
                   and entries[0].value.lower() == identifier["value"].lower())
    if not matches:
        names = ", ".join(str(getattr(e, "value", e)) for e in entries) or "nothing"
        return f"must name exactly '{identifier['value']}' in its subjectAltName, and names {shown(names)}"
    ext = extensions.get(ACME_IDENTIFIER_OID)
    if ext is None:
        return "has no acmeIdentifier extension (1.3.6.1.5.5.7.1.31)"
    if not ext.critical:
        return "has an acmeIdentifier extension that is not critical"
    digest = hashlib.sha256(key_auth.encode("ascii")).digest()
    # The extension's value is DER: OCTET STRING (SIZE (32)) holding the SHA-256 of the key authorization.
    if getattr(ext.value, "value", None) != b"\x04\x20" + digest:
        return "has an acmeIdentifier that is not the SHA-256 digest of the key authorization"
    return None


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _reason(exc: BaseException) -> str:
    return failure_words(exc, TIMEOUT)
