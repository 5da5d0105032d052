"""The ACME state's records (:class:`Account`, :class:`Order`, :class:`Authorization`,
:class:`Challenge`), :func:`is_id`: whether a client's string could name one, and :func:`gone`: whether the
process working on a row (finalizing an order, validating a challenge) is certainly dead; :func:`now_iso` and
:func:`new_id`: the timestamps and identifiers the rows hold."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass, field

from certkit.vocabulary import iso

# An identifier this server makes (new_id: 128 bits, base64url), in a URL pattern.
ID = "[A-Za-z0-9_-]{1,64}"


def now_iso() -> str:
    return iso(dt.datetime.now(dt.UTC))


def new_id() -> str:
    """A random identifier for URLs (128 bits, base64url)."""
    return secrets.token_urlsafe(16)


@dataclass
class Account:
    id: str
    thumbprint: str
    jwk: str
    status: str
    contact: list[str]
    tos_agreed: bool
    eab_kid: str | None
    created_at: str


@dataclass
class Challenge:
    id: str
    authz_id: str
    type: str
    token: str
    status: str
    validated: str | None = None
    error: dict | None = None


@dataclass
class Authorization:
    id: str
    order_id: str
    account_id: str
    identifier: dict
    status: str
    expires: str
    challenges: list[Challenge] = field(default_factory=list)

    @property
    def wildcard(self) -> bool:
        return self.identifier["value"].startswith("*.")


@dataclass
class Order:
    id: str
    account_id: str
    status: str
    identifiers: list[dict]
    expires: str
    error: dict | None
    certificate_serial: str | None
    authz_ids: list[str]
    created_at: str


def gone(process: str | None) -> bool:
    """Whether the process that finalizes an order or validates a challenge is certainly dead: it
    ran on this host (the inventory's writer liveness check) and is gone, or on an earlier boot of
    this host, or it was never named (a server of an older version recorded the row). A process on
    another host may live: only that host can tell, and its server settles the row when it starts."""
    from certkit.inventory.reconcile import is_local, writer_alive, writer_id

    if not process:
        return True
    if is_local(process):
        return not writer_alive(process, dt.datetime.now(dt.UTC))
    return process.split("/", 1)[0] == writer_id().split("/", 1)[0]  # this host's name, another boot


def is_id(value: object) -> bool:
    """Whether ``value``, an account, order, authorization or challenge identifier a client names (its kid, the
    orders list's cursor, a URL), could be one this server made. Only then is it looked up: as it came, a lone
    surrogate (``"\\udc80"`` in the JSON) is text no database encodes (a 500), and a NUL one PostgreSQL refuses (a
    503 blaming the database, Retry-After, for the client's own mistake)."""
    return isinstance(value, str) and re.fullmatch(ID, value) is not None
