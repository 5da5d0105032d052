"""An answer of the ACME server before any socket carries it: :class:`Response`, and the media
types RFC 8555 names (JOSE requests, problem documents, JSON, PEM certificate chains)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from certkit.acme.problems import Problem

JOSE = "application/jose+json"
PROBLEM = "application/problem+json"
JSON = "application/json"
PEM_CHAIN = "application/pem-certificate-chain"


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, obj, **kw) -> "Response":
        return cls(status, json.dumps(obj, indent=2).encode() + b"\n", JSON, **kw)

    @classmethod
    def problem(cls, problem: Problem) -> "Response":
        return cls(problem.http_status, json.dumps(problem.to_json(), indent=2).encode() + b"\n", PROBLEM,
                   list(problem.headers.items()))
