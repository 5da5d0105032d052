"""What ``issue-batch --resume`` must find the same in a bundle it keeps, beyond its kind and names: a
certificate still within its validity, of the key type and lifetime the line asks for now. A batch resumed
with another --key-type or --days (or a manifest edited meanwhile) would else mix the old and the new."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from certkit.ca import CA
    from certkit.issuing import Request


def kept_differs(ca: "CA", cert, request: "Request") -> str | None:
    """How the certificate ``cert`` of a bundle differs from what ``request`` would issue now (in words),
    or None: it has expired, its key is of another type, or it lives another number of days."""
    from certkit.keys import key_type_of
    from certkit.profiles import PROFILES

    now = dt.datetime.now(dt.UTC)
    if cert.not_valid_after_utc <= now:
        return f"its certificate expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
    have = key_type_of(cert.public_key())
    if request.public_key is None and have != request.key_type:
        return f"its key is {have}; the line asks for {request.key_type}"
    not_before, not_after = ca.leaf_validity(PROFILES[request.kind], request.days, None, [], request.default_days)
    if not_after == ca.cert.not_valid_after_utc == cert.not_valid_after_utc:  # both capped at the CA's expiry
        return None
    wanted, kept = (round((end - start + dt.timedelta(seconds=1)) / dt.timedelta(days=1))
                    for start, end in ((not_before, not_after), (cert.not_valid_before_utc, cert.not_valid_after_utc)))
    if wanted != kept:
        return f"its certificate lives {kept} days; the line asks for {wanted}"
    return None
