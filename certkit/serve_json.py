"""``certkit serve``'s facts in certkit's one vocabulary: its JSON answer and start-up object, and its dates.

A certificate serve shows (the client's, the server's own) is described with
the field names issue-*, list and inspect use for the same facts (``names``
as labelled SAN entries, ``extended_key_usage``, ``issuer`` as a full DN,
``status`` for valid/expired/not yet valid), and its moments as every
``--json`` writes them (:func:`certkit.vocabulary.iso`, ``...Z``) and every
human line does (``YYYY-MM-DD HH:MM:SS UTC``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from certkit.text import shown
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
            ("EKU", ", ".join(self.eku) or "(none)"), ("expires", text_time(self.not_after)),
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


def _parsed(moment: str) -> dt.datetime:
    return dt.datetime.fromisoformat(moment).astimezone(dt.UTC)


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
    withdrawn = list(visit.inventory.problems) if visit.inventory is not None else []
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
                "verify_errors": [r.removeprefix("OpenSSL: ") for r in visit.refused if r.startswith("OpenSSL: ")],
                "presented": presented_json(visit) if visit.client else None}
    cert = server.certificate  # its status judged at this request, by this server's clock
    data["server_certificate"] = {**certificate_json(cert), "withdrawn": server.withdrawn()} if cert else None
    data["client_ca"] = server.client_ca
    return data
