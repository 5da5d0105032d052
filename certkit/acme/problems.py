"""Problem documents (RFC 7807) with the ACME error types (RFC 8555 section 6.7).

A handler raises :class:`Problem`; the server turns it into an
``application/problem+json`` response. Challenge failures are stored as the
same documents in the challenge, authorization and order they failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PREFIX = "urn:ietf:params:acme:error:"
# When a client whose request found the database unavailable may try again, in seconds (the server
# itself recovers as soon as the database answers again).
RETRY_LATER = "5"
# The longest run of characters without a blank a problem's detail repeats whole: a client's value (a DNS name is at
# most 253, an email address 254) is echoed up to this, a longer one (a 400-digit revocation reason, a 60 kB
# identifier) cut to its start, its end and its length, as the command line's errors cut theirs.
ECHO_LIMIT = 256

# type -> the HTTP status a request failing with it gets (RFC 8555 6.7; Boulder's choices where
# the RFC leaves it open).
STATUS = {
    "accountDoesNotExist": 400,
    "alreadyRevoked": 400,
    "badCSR": 400,
    "badNonce": 400,
    "badPublicKey": 400,
    "badRevocationReason": 400,
    "badSignatureAlgorithm": 400,
    "connection": 400,
    "dns": 400,
    # 403, as Pebble answers it: a 401 must name an HTTP authentication scheme (WWW-Authenticate, RFC 9110
    # 15.5.2), and an External Account Binding is none
    "externalAccountRequired": 403,
    "incorrectResponse": 403,
    "invalidContact": 400,
    "malformed": 400,
    "orderNotReady": 403,
    "rejectedIdentifier": 400,
    "serverInternal": 500,
    "tls": 400,
    "unauthorized": 403,
    "unsupportedContact": 400,
    "unsupportedIdentifier": 400,
}


@dataclass
class Problem(Exception):
    """An ACME error: ``kind`` is the short type (``badNonce``), ``detail`` one sentence for people."""

    kind: str
    detail: str
    status: int | None = None
    identifier: dict | None = None  # for a subproblem: the identifier it is about
    subproblems: list["Problem"] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # e.g. "algorithms" for badSignatureAlgorithm
    headers: dict = field(default_factory=dict)  # e.g. Location of the conflicting account
    # The operator's words for the server's log, never sent: they name the database URL, the token, the CA's files.
    logged: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        self.detail = bounded(self.detail)
        if isinstance(self.identifier, dict):  # a subproblem's identifier, as the client wrote it: its type and value
            self.identifier = {k: bounded(v) if isinstance(v, str) else v for k, v in self.identifier.items()}
        super().__init__(self.detail)
        if self.kind not in STATUS:
            raise ValueError(f"unknown ACME error type {self.kind!r}")

    @property
    def http_status(self) -> int:
        return self.status or STATUS[self.kind]

    def to_json(self) -> dict:
        doc = {"type": PREFIX + self.kind, "detail": self.detail, "status": self.http_status}
        if self.identifier is not None:
            doc["identifier"] = self.identifier
        if self.subproblems:
            doc["subproblems"] = [sub.to_json() for sub in self.subproblems]
        return doc | self.extra

    @classmethod
    def from_json(cls, doc: dict) -> "Problem":
        kind = str(doc.get("type", "")).removeprefix(PREFIX)
        return cls(kind if kind in STATUS else "serverInternal", str(doc.get("detail", "")),
                   doc.get("status"), doc.get("identifier"))


def bounded(text: str) -> str:
    """``text`` with each value of more than :data:`ECHO_LIMIT` characters it repeats cut to its start, its end and
    its length, and a line still too long cut too (:func:`certkit.text.cut_long_lines`): whatever a client sent, the
    problem document that answers it stays a few lines long."""
    from certkit.text import cut_long_lines, cut_long_words

    return cut_long_lines(cut_long_words(text, ECHO_LIMIT))
