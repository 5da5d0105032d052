"""Challenge validation: http-01 (RFC 8555 8.3) and tls-alpn-01 (RFC 8737), for DNS names and
IP addresses (RFC 8738).

The server connects to the name's addresses on port 80 (http-01) or 443
(tls-alpn-01); for tests and closed networks ``--http01-port`` and
``--tls-alpn01-port`` change the ports (as Pebble's ``-httpport`` and
``-tlsport`` do) and ``--resolve NAME=ADDRESS`` answers for names instead of
the system resolver. Each failure is a problem document of type ``dns``,
``connection``, ``tls`` or ``incorrectResponse`` whose detail says what was
tried and what came back.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass, field

from certkit.acme.problems import Problem
from certkit.text import shown

HTTP01, TLS_ALPN01 = "http-01", "tls-alpn-01"
TYPES = (HTTP01, TLS_ALPN01)
ALPN_PROTOCOL = "acme-tls/1"
# id-pe-acmeIdentifier (RFC 8737 section 6.1)
ACME_IDENTIFIER_OID = "1.3.6.1.5.5.7.1.31"
TIMEOUT = 10.0
# A key authorization is about 87 characters; anything much longer is not one.
MAX_HTTP_BODY = 4096


def key_authorization(token: str, thumbprint: str) -> str:
    return f"{token}.{thumbprint}"


@dataclass
class Validator:
    """How this server reaches the machines it validates."""

    http_port: int = 80
    tls_port: int = 443
    resolve: dict[str, str] = field(default_factory=dict)  # lowercase name -> IP address
    timeout: float = TIMEOUT

    def validate(self, kind: str, identifier: dict, token: str, key_auth: str) -> None:
        """Return if the challenge is met; raise a Problem saying why not otherwise."""
        if kind == HTTP01:
            self.http01(identifier, token, key_auth)
        elif kind == TLS_ALPN01:
            self.tls_alpn01(identifier, key_auth)
        else:
            raise Problem("malformed", f"Unknown challenge type {kind!r}.")

    # --- where to connect -----------------------------------------------------------------
    def addresses(self, identifier: dict, port: int) -> list[str]:
        value = identifier["value"]
        if identifier["type"] == "ip":
            return [value]
        mapped = self.resolve.get(value.lower())
        if mapped is not None:
            return [mapped]
        try:
            infos = socket.getaddrinfo(value, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise Problem("dns", f"Cannot resolve '{value}': {exc.strerror if hasattr(exc, 'strerror') else exc}.",
                          identifier=identifier) from None
        found = list(dict.fromkeys(info[4][0] for info in infos))
        if not found:
            raise Problem("dns", f"'{value}' has no address.", identifier=identifier)
        return found

    def _connect(self, identifier: dict, port: int, what: str) -> tuple[socket.socket, str]:
        errors = []
        for address in self.addresses(identifier, port):
            try:
                return socket.create_connection((address, port), timeout=self.timeout), address
            except OSError as exc:
                errors.append(f"{_hostport(address, port)}: {exc.strerror or exc}")
        raise Problem("connection", f"{what} for '{identifier['value']}': cannot connect to "
                                    f"{'; '.join(errors)}.", identifier=identifier)

    # --- http-01 --------------------------------------------------------------------------
    def http01(self, identifier: dict, token: str, key_auth: str) -> None:
        path = f"/.well-known/acme-challenge/{token}"
        sock, address = self._connect(identifier, self.http_port, "http-01")
        host = identifier["value"]
        if ":" in host:
            host = f"[{host}]"
        if self.http_port != 80:
            host = f"{host}:{self.http_port}"
        where = f"http://{host}{path} (at {_hostport(address, self.http_port)})"
        conn = http.client.HTTPConnection(address if ":" not in address else f"[{address}]", self.http_port,
                                          timeout=self.timeout)
        conn.sock = sock
        try:
            conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", host)
            conn.putheader("User-Agent", "certkit-acme")
            conn.putheader("Accept", "*/*")
            conn.putheader("Connection", "close")
            conn.endheaders()
            response = conn.getresponse()
            body = response.read(MAX_HTTP_BODY + 1)
        except (OSError, http.client.HTTPException) as exc:
            raise Problem("connection", f"http-01: fetching {where} failed: {_reason(exc)}.",
                          identifier=identifier) from None
        finally:
            conn.close()
        if response.status != 200:
            moved = f" to {shown(response.getheader('Location') or '?')} (redirects are not followed)" \
                if 300 <= response.status < 400 else ""
            raise Problem("incorrectResponse", f"http-01: {where} answered HTTP {response.status}{moved}; "
                                               "it must answer 200 with the key authorization.",
                          identifier=identifier)
        text = body[:MAX_HTTP_BODY].decode("ascii", "replace").rstrip()
        if len(body) > MAX_HTTP_BODY or text != key_auth:
            seen = text[:100] + ("..." if len(text) > 100 else "")
            raise Problem("incorrectResponse", f"http-01: {where} answered '{shown(seen)}', not the key "
                                               f"authorization '{key_auth}'.", identifier=identifier)

    # --- tls-alpn-01 ----------------------------------------------------------------------
    def tls_alpn01(self, identifier: dict, key_auth: str) -> None:
        value = identifier["value"]
        # RFC 8738 section 6: an IP address is named in SNI by its reverse-mapping name.
        sni = ipaddress.ip_address(value).reverse_pointer if identifier["type"] == "ip" else value
        sock, address = self._connect(identifier, self.tls_port, "tls-alpn-01")
        where = f"{_hostport(address, self.tls_port)} (SNI {sni})"
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the certificate is self-signed by design; its content is checked
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols([ALPN_PROTOCOL])
        try:
            with context.wrap_socket(sock, server_hostname=sni) as tls:
                protocol = tls.selected_alpn_protocol()
                der = tls.getpeercert(binary_form=True)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise Problem("tls", f"tls-alpn-01: the TLS handshake with {where} failed: {_reason(exc)}.",
                          identifier=identifier) from None
        if protocol != ALPN_PROTOCOL:
            raise Problem("tls", f"tls-alpn-01: {where} did not negotiate the ALPN protocol {ALPN_PROTOCOL} "
                                 f"(it chose {protocol or 'none'}).", identifier=identifier)
        problem = check_validation_certificate(der, identifier, key_auth)
        if problem:
            raise Problem("incorrectResponse", f"tls-alpn-01: the certificate from {where} {problem}.",
                          identifier=identifier)


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
        return f"cannot be parsed ({exc})"
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
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer within {TIMEOUT:g} s"
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
