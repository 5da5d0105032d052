"""``certkit serve``'s facts in certkit's one vocabulary: its JSON answer and start-up object, and its dates.

A certificate serve shows (the client's, the server's own) is described with
the field names issue-*, list and inspect use for the same facts (``names``
as labelled SAN entries, ``extended_key_usage``, ``issuer`` as a full DN,
``status`` for valid/expired/not yet valid), and its moments as every
``--json`` writes them (:func:`certkit.vocabulary.iso`, ``...Z``) and every
human line does (``YYYY-MM-DD HH:MM:SS UTC``). What the inventories of the client CA say of a client chain, which
serve's answers state, is :mod:`certkit.serve_revocations`'s.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from certkit.text import shown
from certkit.time_words import dated, outside_dates
from certkit.vocabulary import colons, eku_names, iso, san_entries, serial_hex

if TYPE_CHECKING:
    from certkit.serve_page import ServerFacts, Visit


@dataclass(frozen=True)
class PeerIdentity:
    """What a certificate says about its holder: a client's as the server saw it, or the server's own. Its
    JSON (:func:`identity_json`) names ``sans`` and ``eku`` as every command does: ``names``, ``extended_key_usage``."""

    common_name: str | None
    subject: str
    sans: list[str]  # "DNS:host", "IP:addr", "email:a@b", "URI:spiffe://...", "DirName:CN=..."
    serial: str
    issuer: str
    eku: list[str]
    not_after: str
    fingerprint_sha256: str
    tls_version: str | None = None
    not_before: str | None = None

    def as_dict(self) -> dict:
        """The JSON answer: certkit's field names for these facts, as issue-*, list and inspect write them."""
        return {"authenticated": True, **identity_json(self)}

    def as_text(self) -> str:
        rows = [
            ("common name", self.common_name or "(none)"), ("subject", self.subject),
            ("SAN", ", ".join(self.sans) or "(none)"), ("serial", self.serial), ("issuer", self.issuer),
            ("EKU", ", ".join(self.eku) or "(none)"), *dated_rows(self),
            ("SHA-256", colons(self.fingerprint_sha256)), ("TLS", self.tls_version or "?"),
        ]
        return "Authenticated client certificate\n" + "".join(f"  {k:<12} {shown(v)}\n" for k, v in rows)


def peer_identity(der: bytes, tls_version: str | None = None) -> PeerIdentity:
    """Describe a DER client certificate (``SSLSocket.getpeercert(binary_form=True)``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    cert = x509.load_der_x509_certificate(der)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return PeerIdentity(
        common_name=str(cns[0].value) if cns else None,
        subject=cert.subject.rfc4514_string(),
        sans=san_entries(cert),
        serial=serial_hex(cert.serial_number),
        issuer=cert.issuer.rfc4514_string(),
        eku=eku_names(cert) or [],  # none: no extendedKeyUsage, which TLS reads as any purpose
        not_after=iso(cert.not_valid_after_utc),  # as every --json writes a moment (vocabulary.iso)
        not_before=iso(cert.not_valid_before_utc),
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        tls_version=tls_version,
    )


def text_time(moment: str) -> str:
    """A moment of a certificate (ISO 8601, as :func:`certkit.vocabulary.iso` writes it) as certkit's human
    lines write one: ``2027-12-01 16:01:27 UTC``."""
    from certkit.vocabulary import moment_text

    return moment_text(iso(_parsed(moment)))


def client_cas(client_ca_pem: bytes, now: dt.datetime | None = None) -> list[dict]:
    """The CA(s) whose client certificates serve takes, with their dates and ``status`` (inspect's: ``valid``,
    ``expired``, ``not yet valid``), for --json's ``client_cas`` and the banner's warning."""
    from cryptography import x509

    from certkit.vocabulary import dn_text

    now = now or dt.datetime.now(dt.UTC)
    return [{"subject": dn_text(ca.subject), "not_before": iso(ca.not_valid_before_utc),
             "not_after": iso(ca.not_valid_after_utc),
             "status": "expired" if now > ca.not_valid_after_utc else "not yet valid" if now < ca.not_valid_before_utc
             else "valid"} for ca in x509.load_pem_x509_certificates(client_ca_pem)]


def client_ca_warning(cas: list[dict]) -> str:
    """The banner's words for a client CA out of its dates (OpenSSL then refuses every client chain through it),
    empty when all are in their dates."""
    out = [f"{shown(ca['subject'])} "
           + (outside_dates(_parsed(ca["not_before"]), _parsed(ca["not_after"])) or "is out of its dates")  # verify's
           for ca in cas if ca["status"] != "valid"]
    return (f"; beware: {', '.join(out)}, so every client certificate it issued is refused (OpenSSL refuses a "
            "chain through a CA out of its dates: certificate has expired, or is not yet valid)") if out else ""


def _parsed(moment: str) -> dt.datetime:
    return dt.datetime.fromisoformat(moment).astimezone(dt.UTC)


def dated_rows(cert: "PeerIdentity") -> list[tuple[str, str]]:
    """``cert``'s dates as rows (:func:`certkit.time_words.dated`): "expired ... (N days ago)" past its end."""
    return dated(_parsed(cert.not_before) if cert.not_before else None, _parsed(cert.not_after))


def time_problem(cert: "PeerIdentity", now: dt.datetime | None = None) -> str | None:
    """What keeps ``cert`` from being valid at ``now`` (this server's clock), in words; None when it is."""
    now = now or dt.datetime.now(dt.UTC)
    if _parsed(cert.not_after) < now:
        return f"expired on {text_time(cert.not_after)}"
    if cert.not_before and _parsed(cert.not_before) > now:
        return f"is not valid before {text_time(cert.not_before)}"
    return None


def status_of(cert: "PeerIdentity", now: dt.datetime | None = None) -> str:
    """``valid``, ``expired`` or ``not yet valid``: ``cert`` at ``now``, by this server's clock (inspect's
    ``status``)."""
    problem = time_problem(cert, now)
    return "valid" if problem is None else "expired" if problem.startswith("expired") else "not yet valid"


def identity_json(identity: "PeerIdentity") -> dict:
    """A certificate serve saw, with the keys inspect and issue-* give the same facts."""
    return {"common_name": identity.common_name, "subject": identity.subject, "names": list(identity.sans),
            "serial": identity.serial, "issuer": identity.issuer,
            "extended_key_usage": list(identity.eku), "not_before": identity.not_before,
            "not_after": identity.not_after, "fingerprint_sha256": identity.fingerprint_sha256,
            "tls_version": identity.tls_version}


def certificate_json(identity: "PeerIdentity", now: dt.datetime | None = None) -> dict:
    """The server's own certificate: as :func:`identity_json` without the connection's TLS version, and its
    ``status`` at ``now``."""
    data = identity_json(identity)
    del data["tls_version"]
    return {**data, "status": status_of(identity, now)}


def presented_json(visit: "Visit") -> dict:
    """The refused client's certificate, with its ``status`` (by this server's clock) and what the CA's
    inventory records against it (``withdrawn``), as serve gives its own certificate."""
    verdict = visit.inventory  # what it records; an inventory it could not read records nothing (said in reasons)
    withdrawn = [p for p in verdict.problems if not p.startswith("its revocation status cannot be read")] \
        if verdict is not None else []
    return {**identity_json(visit.client), "status": status_of(visit.client), "withdrawn": withdrawn}


def as_json(visit: "Visit", server: "ServerFacts") -> dict:
    """The JSON answer: the client's identity (``authenticated``: true), or why there is none."""
    if visit.authenticated:
        data = visit.client.as_dict()
    else:
        ours = [r for r in visit.refused if not r.startswith("OpenSSL: ")]
        data = {"authenticated": False,
                "reason": "; ".join(visit.refused) if visit.client else "no client certificate was sent",
                # as certkit verify and probe give them: certkit's reasons, and OpenSSL's words apart
                "reasons": ours if visit.client else ["no client certificate was sent"],
                # one entry per error, as probe and verify list them (the text joins them on one "OpenSSL:" line)
                "verify_errors": [e for r in visit.refused if r.startswith("OpenSSL: ")
                                  for e in r.removeprefix("OpenSSL: ").split("; ")],
                "presented": presented_json(visit) if visit.client else None}
    cert = server.certificate  # its status judged at this request, by this server's clock
    data["server_certificate"] = {**certificate_json(cert), "withdrawn": server.withdrawn()} if cert else None
    data["client_ca"] = server.client_ca
    # what this server did not check of the client's certificate: its revocation, for another CA's clients
    data["supplied_by_server"] = list(visit.supplied)  # intermediate CAs the client did not send: serve supplied them
    line = unchecked_line(server, visit) if visit.client is not None else None
    data["not_checked"] = [] if line is None else [f"revocation: {line.removeprefix('not checked for revocation: ')}"]
    data["proxied"] = None if visit.proxied is None else {"header": visit.proxied, "note": proxy_note(visit.proxied)}
    return data


def unchecked(ca_name: str) -> str:
    """Why revocation is not checked for the clients of ``ca_name``: the banner's words, and the answers'."""
    return (f"{ca_name} is neither the CA directory's CA nor an intermediate CA its inventory records, so this server "
            "has no inventory to read (a real server given that CA's CRL checks it)")


def server_identity(chain_pem: bytes):
    """The server certificate (the first in the chain) as the page shows it; None if unreadable."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        return peer_identity(x509.load_pem_x509_certificates(chain_pem)[0].public_bytes(Encoding.DER))
    except (ValueError, IndexError):
        return None


def supplied_line(visit) -> str | None:
    """That the client did not send its intermediate CA, which serve supplied (a real server would not)."""
    if not visit.supplied:
        return None
    return (f"your client did not send {', '.join(visit.supplied)} (above its certificate), which this server "
            "supplied from what its CA's inventory records. This server's certificate request names no CA (Python's "
            "ssl cannot name one), so a browser sends its certificate alone here and the chain to a server that names "
            "its CA (nginx, serve --optional); a client that sends what it is given (curl, Python) needs fullchain.pem "
            "(curl --cert fullchain.pem), since a server given only the root's ca.pem refuses the certificate alone")


def unchecked_line(server, visit=None) -> str | None:
    """Why a client certificate's revocation is not checked at all (another CA's clients: every one, or this
    ``visit``'s, whose chain is not under the CA whose inventory is read); None when it is."""
    if not server.revocation:
        return f"not checked for revocation: {shown(server.unchecked)}"
    if visit is not None and visit.inventory is not None and not visit.inventory.under:
        return (f"not checked for revocation: it is not under {shown(server.revocation_ca or server.client_ca)}, the "
                "only CA whose inventory this server reads")
    return None


def as_text(visit: "Visit", server: "ServerFacts") -> str:
    """The text answer: the client's identity, or why there is none; and, for a request that came through a
    proxy, what that means (:func:`proxy_note`)."""
    through = f"  proxy        {proxy_note(visit.proxied)}\n" if visit.proxied else ""
    if visit.authenticated:
        return visit.client.as_text() + _supplied_text(visit) + _unchecked_text(server, visit) + through
    if visit.client is None:
        return ("No client certificate was sent.\n"
                f"  This server accepts client certificates issued by \"{shown(server.client_ca)}\".\n  With curl: "
                "--cert fullchain.pem --key privkey.pem (or --cert-type P12 --cert bundle.p12:PASSWORD).\n" + through)
    lines = visit.client.as_text().replace("Authenticated client certificate", "Refused client certificate", 1)
    return (lines + "".join(f"  refused      {shown(r)}\n" for r in visit.refused) + _unchecked_text(server, visit)
            + through)


def _supplied_text(visit: "Visit") -> str:
    return "" if (line := supplied_line(visit)) is None else f"  note         {shown(line)}\n"


def _unchecked_text(server: "ServerFacts", visit: "Visit | None" = None) -> str:
    return "" if (line := unchecked_line(server, visit)) is None else f"  revocation   {line}\n"


# The headers a proxy adds to a request it passes on: RFC 7239's, RFC 9110's Via, and the ones nginx, HAProxy
# and the cloud load balancers are configured to add. A proxy that adds none cannot be told from a client.
_PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP", "X-Forwarded-Host", "X-Forwarded-Proto", "Via")


def proxied_by(headers) -> str | None:
    """The first proxy header of a request (``Name: value``, escaped and cut at 200 characters), or None."""
    found = next((name for name in _PROXY_HEADERS if headers.get(name) is not None), None)
    return None if found is None else f"{found}: {shown(headers.get(found))[:200]}"


def proxy_note(header: str) -> str:
    """What a request through a proxy means for what this server shows: the TLS it ended is the proxy's."""
    return (f"This request came through a proxy ({header}), which ended your TLS connection and made its own to "
            "this server: the client certificate shown here is the one the proxy presented (or none), not your "
            "browser's, and the server certificate your browser checked is the proxy's, not this server's. Your "
            "certificate went to the proxy, which must check it itself (nginx: ssl_verify_client) and pass on what "
            "it found ($ssl_client_s_dn in a header): this server cannot see it")


_ANSWERS = (("json", "application/json"), ("html", "text/html"), ("text", "text/plain"))


def url_to_visit(url: str, host: str, names: list[str]) -> str:
    """The URL to give clients: ``url``, where serve listens, but for the unspecified address (0.0.0.0, ::), which
    names no host a certificate covers (curl: "no alternative certificate subject name matches target host name
    '0.0.0.0'"): localhost when the certificate's ``names`` hold it (the one serve issues does), else its first."""
    if host not in ("0.0.0.0", "::"):
        return url
    names = [n.partition(":")[2] for n in names if n.startswith(("DNS:", "IP:"))]
    name = "localhost" if "localhost" in names else next((n for n in names if "*" not in n), "localhost")
    return f"https://{f'[{name}]' if ':' in name else name}:{url.rstrip('/').rpartition(':')[2]}/"


PLAIN_HTTP_ANSWER = ("This is an HTTPS server ({}), and it got a plain HTTP request: use https:// "
                     "instead of http://, with the same host and port.\n")


def plain_http_answer(server: str) -> bytes:
    """The whole HTTP 400 answer to a plain HTTP request sent to serve's HTTPS port, which says what to do: a browser
    shows it, where a closed connection gets only its own error page (Chromium: ERR_EMPTY_RESPONSE)."""
    body = PLAIN_HTTP_ANSWER.format(server).encode()
    return (f"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


def answer_format(accept: str) -> str:
    """``json``, ``html`` or ``text``: what an ``Accept`` header asks for, by its media ranges and their
    q-values (RFC 9110 12.5.1: the most specific range that covers a type gives its weight, and ``q=0`` means
    "not this"). Of the formats weighed highest, one named exactly wins (JSON before the page), else text;
    with nothing acceptable (or no header), text."""
    ranges = []
    for part in accept.lower().split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = next((p[2:] for p in params if p.startswith("q=")), "1")
        ranges.append((media, float(q) if q.replace(".", "", 1).isdigit() else 1.0))
    best = (0.0, False, -1, "text")
    for rank, (name, wanted) in enumerate(_ANSWERS):
        covering = {wanted: 3, wanted.split("/")[0] + "/*": 2, "*/*": 1}
        found = [(covering[media], q) for media, q in ranges if media in covering]
        if found:
            exact, q = max(found)[0] == 3, max(q for spec, q in found if spec == max(found)[0])
            best = max(best, (q, exact, -rank if exact else rank, name))
    return best[3] if best[0] > 0 else "text"
