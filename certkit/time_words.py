"""How long, and when, in words: a certificate's dates as the lines that describe it (expired, valid from,
expires, with how long ago or until), and how long is left, never more than it is. Every command that says a
certificate's dates (inspect, verify, probe, serve, check, list) says them so. No third-party imports.
"""

from __future__ import annotations


def time_until(left) -> str:
    """How long until a moment, never less than it is: whole hours under two days ("47 hours", not the
    "1 day" that 1 day 23 h would floor to), whole days (rounded up) beyond."""
    import math

    hours = math.ceil(left.total_seconds() / 3600)
    if hours < 48:
        return f"{hours} hour{'s' if hours != 1 else ''}"
    days = math.ceil(left.total_seconds() / 86400)
    return f"{days} days"


def time_left(left) -> str:
    """How long a certificate has left, never more than it has: whole hours under two days ("23 hours", not the
    "0 days" that 23 h floors to; "less than an hour"), whole days (rounded down) beyond."""
    hours = int(left.total_seconds() // 3600)
    if hours < 48:
        return f"{hours} hour{'s' if hours != 1 else ''}" if hours else "less than an hour"
    return f"{int(left.total_seconds() // 86400)} days"


def ends(not_after, now=None) -> str:
    """A certificate's end as a header line says it: "expires 2026-11-30 08:56:07 UTC", "expired ..." once past."""
    import datetime as dt

    verb = "expired" if not_after <= (now or dt.datetime.now(dt.UTC)) else "expires"
    return f"{verb} {not_after:%Y-%m-%d %H:%M:%S} UTC"


def dated(not_before, not_after, now=None) -> list[tuple[str, str]]:
    """A certificate's dates as the lines that describe it at ``now`` (aware datetimes): ("expired", "2026-11-24
    13:08:40 UTC (10 days ago)") once past its end, never "expires" of a past moment; ("valid from", "... (in 5
    days)") and ("expires", ...) before its start; ("expires", ...) alone while it is valid."""
    import datetime as dt

    now = now or dt.datetime.now(dt.UTC)
    if now > not_after:
        days = (now - not_after).days
        ago = f"{days} day{'s' if days > 1 else ''} ago" if days else "less than a day ago"
        return [("expired", f"{not_after:%Y-%m-%d %H:%M:%S} UTC ({ago})")]
    until = [("expires", f"{not_after:%Y-%m-%d %H:%M:%S} UTC")]
    if not_before is not None and now < not_before:
        return [("valid from", f"{not_before:%Y-%m-%d %H:%M:%S} UTC (in {time_until(not_before - now)})"), *until]
    return until


def outside_dates(not_before, not_after, now=None) -> str | None:
    """What keeps a certificate from being valid at ``now``, as a sentence's end in :func:`dated`'s words
    ("expired on ... UTC (10 days ago)", "is valid from ... UTC (in 6 days)"); None when it is valid."""
    rows = dict(dated(not_before, not_after, now))
    return f"expired on {rows['expired']}" if "expired" in rows else \
        f"is valid from {rows['valid from']}" if "valid from" in rows else None


def described_dates(cert: dict) -> list[tuple[str, str]]:
    """The dates of a certificate :func:`certkit.inspect.describe_certificate` described, in :func:`dated`'s
    words, as verify, probe and serve say them: "valid from ... (in 6 days)" and "expires ...", "expired ... (10
    days ago)", "expires ... (199 days left)"."""
    start, end = (f"{cert[k][:10]} {cert[k][11:19]} UTC" for k in ("not_before", "not_after"))
    if cert["status"] == "expired":
        return [("expired", f"{end} ({cert['validity'].removeprefix('expired ')})")]
    if cert["status"] == "not yet valid":
        return [("valid from", f"{start} (in {cert['validity'].removeprefix('valid in ')})"), ("expires", end)]
    return [("expires", f"{end} ({cert['validity']})")]
