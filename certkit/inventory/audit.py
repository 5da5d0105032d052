"""Read-only audits of an inventory against its certificates and its CA (``certkit check``, ``certkit crl``).

A row's kind, subject, names, dates and fingerprint are copies of facts its
certificate (the DER it holds) states; :func:`contradictions` names every column
that says something else. :func:`issuer_problem` says whether a certificate was
issued by the CA of the directory the inventory sits in: its issuer name, and
(``verify``) its signature checked with the CA's public key. Nothing here writes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from certkit.errors import DamagedRow
from certkit.inventory.rows import iso, load_der, row_dict, subject_text

if TYPE_CHECKING:
    from cryptography import x509

    from certkit.inventory import Inventory

# The columns every schema version has (``check`` reads an inventory it does not migrate).
BASE_COLUMNS = ("serial", "kind", "subject", "names", "not_before", "not_after", "fingerprint_sha256", "status",
                "revoked_at", "revocation_reason", "renewed_from", "issued_at")


@dataclass
class Audit:
    """What :func:`audit` found: each problem a :class:`DamagedRow` (serial, reason)."""

    count: int = 0
    damaged: list[DamagedRow] = field(default_factory=list)  # unreadable rows
    contradicted: list[DamagedRow] = field(default_factory=list)  # columns that contradict the certificate
    foreign: list[DamagedRow] = field(default_factory=list)  # certificates this CA did not issue


def audit(inventory: "Inventory", ca_cert: "x509.Certificate | None") -> Audit:
    """Every row read, its certificate parsed and compared with the row, and (given ``ca_cert``)
    checked to be issued by that CA, signature included. One pass over the rows, streamed."""
    found = Audit()
    issuer = Issuer(ca_cert) if ca_cert is not None else None
    with inventory._read(readonly=True) as tx:
        for values in tx.execute(f"SELECT {', '.join(BASE_COLUMNS)}, der FROM certificates"):
            found.count += 1
            try:
                row = row_dict(tuple(values[:-1]) + (None, None, None, 1))
                cert = load_der(row["serial"], values[-1])
            except DamagedRow as exc:
                found.damaged.append(exc)
                continue
            der = bytes(values[-1])
            wrong = contradictions(row, cert, der)
            if wrong:
                found.contradicted.append(DamagedRow(row["serial"], wrong))
            if issuer is not None:
                problem = issuer.problem(cert, der, verify=True)
                if problem:
                    found.foreign.append(DamagedRow(row["serial"], problem))
    return found


def contradictions(row: dict, cert: "x509.Certificate", der: bytes) -> str | None:
    """The columns of ``row`` that contradict its certificate, said in one clause, or None."""
    from certkit.vocabulary import leaf_kind, san_entries

    wrong = []
    kind = leaf_kind(cert)
    if kind != "unknown" and row["kind"] != kind:
        wrong.append(f"kind is {_said(row['kind'])}, its certificate is a {kind} certificate")
    subject = subject_text(cert.subject)
    if row["subject"] != subject:
        wrong.append(f"subject is {_said(row['subject'])}, its certificate's is {_said(subject)}")
    names = san_entries(cert)
    if row["names"] != names:
        wrong.append(f"names are {_said(json.dumps(row['names']))}, its certificate's are {_said(json.dumps(names))}")
    for column, when in (("not_before", cert.not_valid_before_utc), ("not_after", cert.not_valid_after_utc)):
        if row[column] != iso(when):
            wrong.append(f"{column} is {row[column]}, its certificate's is {iso(when)}")
    if row["fingerprint_sha256"] != hashlib.sha256(der).hexdigest():
        wrong.append("fingerprint_sha256 is not the SHA-256 of its certificate")
    return "; ".join(wrong) + " (the certificate is what was signed: the row was changed)" if wrong else None


class Issuer:
    """The CA whose certificate is ``ca_cert``, ready to tell whether it issued a certificate."""

    def __init__(self, ca_cert: "x509.Certificate") -> None:
        from cryptography.hazmat.primitives.serialization import Encoding

        self.cert = ca_cert
        self.der = ca_cert.public_bytes(Encoding.DER)
        self.name = ca_cert.subject
        self.name_der = ca_cert.subject.public_bytes()
        self.label = subject_text(ca_cert.subject)
        self.public_key = ca_cert.public_key()

    def problem(self, cert: "x509.Certificate", der: bytes, *, verify: bool) -> str | None:
        """Why ``cert`` (whose DER is ``der``) was not issued by this CA, or None if it was: its
        issuer name is this CA's subject and (``verify``) this CA's key made its signature. The CA's
        own certificate (a root records itself) is this CA's."""
        if der == self.der:
            return None
        if cert.issuer.public_bytes() != self.name_der and cert.issuer != self.name:
            return (f"its certificate was issued by {_said(subject_text(cert.issuer))}, not by this CA "
                    f"({_said(self.label)})")
        if verify:
            try:
                self._verify(cert)
            except Exception:  # InvalidSignature, or a signature algorithm this CA's key cannot have used
                return (f"its certificate names this CA ({_said(self.label)}) as issuer, but ca.pem's key did not "
                        "sign it (another CA of the same name did)")
        return None


    def _verify(self, cert: "x509.Certificate") -> None:
        """``cert.verify_directly_issued_by(self.cert)`` less its name comparison, done already: a
        third of its time, and ``check`` verifies every row."""
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        key, parameters = self.public_key, cert.signature_algorithm_parameters
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, parameters, cert.signature_hash_algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, parameters)
        else:  # Ed25519, Ed448
            key.verify(cert.signature, cert.tbs_certificate_bytes)


def _said(text: str) -> str:
    from certkit.text import shown

    text = shown(text)
    return "'" + (text if len(text) <= 80 else text[:77] + "...") + "'"
