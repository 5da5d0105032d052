"""ACME nonces (RFC 8555 6.5) that cost the database nothing until one is used.

A nonce is 12 random bytes, the time it expires (8 bytes, seconds since 1970) and the first 16 bytes
of an HMAC-SHA256 of both under a key kept in the ACME tables (``acme_keys``, made once; every
server on the database shares it, so any of them takes a nonce another gave, before and after a
restart). Giving one out (every answer carries one) writes nothing: an unauthenticated client
cannot make the CA's inventory grow, nor hold its write lock, by asking for nonces. A signed request
uses its nonce up by inserting it into ``acme_used_nonces`` (its primary key refuses a second use),
where it stays until it has expired anyway.

A nonce is accepted only in the exact text it was given (one base64url encoding of its bytes), so
that a second spelling of the same bytes is not a second nonce.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import secrets
import time

from certkit.vocabulary import iso

LIFETIME = dt.timedelta(hours=1)
_RANDOM, _STAMP, _MAC = 12, 8, 16


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class Nonces:
    """Makes and takes the nonces of one ACME state (``db``: its :class:`certkit.acme.db.Database`)."""

    def __init__(self, db) -> None:
        self.db = db
        self._key: bytes | None = None

    def key(self) -> bytes:
        """The shared HMAC key, made by the first server that needs it, read once per process."""
        if self._key is None:
            with self.db.write() as conn:
                conn.execute("INSERT INTO acme_keys (name, value) VALUES ('nonce', ?) ON CONFLICT (name) DO NOTHING",
                             (secrets.token_hex(32),))
                (value,) = conn.execute("SELECT value FROM acme_keys WHERE name = 'nonce'").fetchone()
            self._key = bytes.fromhex(value)
        return self._key

    def new(self) -> str:
        body = secrets.token_bytes(_RANDOM) + int(time.time() + LIFETIME.total_seconds()).to_bytes(_STAMP, "big")
        return _encode(body + self._mac(body))

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self.key(), body, hashlib.sha256).digest()[:_MAC]

    def expiry(self, nonce: str) -> dt.datetime | None:
        """When ``nonce`` expires, if this database's servers gave it and it has not; else None."""
        if not isinstance(nonce, str) or len(nonce) > 64:
            return None
        try:
            raw = base64.b64decode(nonce + "=" * (-len(nonce) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            return None
        if len(raw) != _RANDOM + _STAMP + _MAC or _encode(raw) != nonce:
            return None
        body, mac = raw[:-_MAC], raw[-_MAC:]
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        expires = int.from_bytes(body[_RANDOM:], "big")
        return dt.datetime.fromtimestamp(expires, dt.UTC) if expires > time.time() else None

    def take(self, nonce: str) -> bool:
        """Use ``nonce`` up; False if it was never given, was used already, or expired."""
        expires = self.expiry(nonce)
        if expires is None:
            return False
        with self.db.write(durable=False) as conn:
            return conn.execute("INSERT INTO acme_used_nonces (nonce, expires) VALUES (?, ?)"
                                " ON CONFLICT (nonce) DO NOTHING", (nonce, iso(expires))).rowcount == 1
