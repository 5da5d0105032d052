"""Lifetimes: how long a certificate may live, checked against its profile and its issuer."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from certkit.errors import CertkitError, InvalidLifetime
from certkit.profiles import BACKDATE, PROFILES, aware, validity
from certkit.text import shown
from certkit.vocabulary import common_name

if TYPE_CHECKING:
    from certkit.profiles import Profile


def check_usable(chain) -> None:
    """Refuse to sign with a CA (or under a parent) that has expired."""
    now = dt.datetime.now(dt.UTC)
    for cert in chain:
        if cert.not_valid_after_utc <= now:
            raise CertkitError(f"The CA '{shown(cert.subject.rfc4514_string())}' expired on "
                               f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC; nothing it signs would be valid. "
                               "Create a new CA with 'certkit init-ca'.")


def check_started(chain, now: dt.datetime) -> None:
    """Refuse to issue now from a CA (or under a parent) not valid yet: every verifier refuses what it signs until
    then. A certificate asked to start later (the library's not_before) is not refused by this."""
    for cert in chain:
        if (start := cert.not_valid_before_utc) > now:
            raise CertkitError(f"The CA '{_name(cert)}' is not valid before {start:%Y-%m-%d %H:%M:%S} UTC (its "
                               "notBefore: was the clock of the machine that created it ahead?); every verifier "
                               "refuses what it signs until then. Sign with it after then, or check this "
                               "machine's clock.")


def leaf_validity(ca_cert, parents, profile: "Profile", days: int | None, start, notes: list[str],
                  default_days: int | None = None) -> tuple[dt.datetime, dt.datetime]:
    """notBefore/notAfter of a leaf of the CA ``ca_cert``: ``days`` (checked against the profile and the
    CA's expiry), else the profile's default capped at the CA's expiry (with a note)."""
    check_usable([ca_cert, *parents])
    latest = ca_cert.not_valid_after_utc
    if start is not None and aware(start) >= latest:
        raise InvalidLifetime(_starts_too_late(start, latest, f"the CA '{_name(ca_cert)}'"))
    if days is None:
        lifetime = default_days or profile.default_days
        if profile.max_days is not None and lifetime > profile.max_days:  # a renewal of an older, longer one
            notes.append(f"lifetime capped at {profile.max_days} days, a {profile.name} certificate's most (it "
                         f"would have lived {lifetime}, as the one it renews)")
            lifetime = profile.max_days
        not_before, not_after = validity(lifetime, start=start)
        if not_after > latest:
            not_after = latest
            notes.append(f"lifetime capped at the CA's expiry ({latest:%Y-%m-%d %H:%M:%S} UTC)")
            if latest - not_before < dt.timedelta(days=30):
                notes.append(f"the CA '{_name(ca_cert)}' ends then: every certificate it issues ends with it; create "
                             "its successor with 'certkit init-ca' and move its certificates to that CA")
    else:
        check_days(days)
        if profile.max_days is not None and days > profile.max_days:
            raise InvalidLifetime(f"A {profile.name} certificate may live at most {profile.max_days} days "
                                  f"(Apple's limit for locally trusted roots); {days} were asked for.")
        not_before, not_after = validity(days, start=start)
        if not_after > latest:
            raise InvalidLifetime(_past_issuer_message(days, latest, not_before))
    ca_start = ca_cert.not_valid_before_utc
    if not_before < ca_start:  # a leaf never claims validity before its issuer's
        if start is not None and ca_start - aware(start) > BACKDATE:  # asked for, not the usual backdating
            notes.append(f"starts when the CA '{_name(ca_cert)}' does ({ca_start:%Y-%m-%d %H:%M:%S} UTC), not at the "
                         f"not_before asked for ({aware(start):%Y-%m-%d %H:%M:%S} UTC): a certificate is never valid "
                         "before its issuer (backdate the CA too: CA.create(not_before=...))")
        not_before = ca_start
    if not_after <= not_before:  # check_usable() has ruled out an expired CA
        raise InvalidLifetime(
            f"The requested validity ends on {not_after:%Y-%m-%d %H:%M:%S} UTC, before the CA '{_name(ca_cert)}' "
            f"became valid ({ca_start:%Y-%m-%d %H:%M:%S} UTC); a certificate cannot be valid before its issuer.")
    return not_before, not_after


def check_within_parent(parent_cert, parent_name: str, days: int, not_before: dt.datetime,
                        not_after: dt.datetime) -> None:
    """Refuse an intermediate that would outlive its parent, or a parent that has expired."""
    latest = parent_cert.not_valid_after_utc
    if latest <= dt.datetime.now(dt.UTC):
        raise InvalidLifetime(f"The parent CA '{shown(parent_name)}' expired on "
                              f"{latest:%Y-%m-%d %H:%M:%S} UTC; it can sign no intermediate. Create a new root first.")
    if not_before >= latest:
        raise InvalidLifetime(_starts_too_late(not_before, latest, f"the parent CA '{shown(parent_name)}'"))
    if not_after > latest:
        raise InvalidLifetime(_past_issuer_message(days, latest, not_before, what="intermediate CA",
                                                   issuer=f"parent CA '{shown(parent_name)}'"))


def cap_at_parent(parent, asked: int | None, not_before: dt.datetime, not_after: dt.datetime) -> dt.datetime:
    """An intermediate's end: with the default lifetime (``asked`` None), cut at its parent's end,
    as a leaf's default is cut at its CA's, with a warning; a lifetime asked for is kept (and
    refused by :func:`check_within_parent` if the parent ends sooner)."""
    latest = parent.cert.not_valid_after_utc
    if asked is not None or not_after <= latest or not_before >= latest:
        return not_after
    import warnings

    warnings.warn(f"the intermediate CA ends on {latest:%Y-%m-%d} with its parent CA '{shown(parent.common_name)}', "
                  f"before the default lifetime would end ({not_after:%Y-%m-%d}); a new root extends it",
                  stacklevel=3)
    return latest


def check_days(days: int) -> None:
    from certkit.constants import MAX_DAYS

    if isinstance(days, bool) or not isinstance(days, int):
        from certkit.vocabulary import wrong_type

        raise wrong_type("days", "an int (a number of days)", days)
    if not 1 <= days <= MAX_DAYS:
        raise InvalidLifetime(f"A lifetime of {days} days is not possible; give 1 to {MAX_DAYS} days.")


def _name(cert) -> str:
    return shown(common_name(cert.subject) or cert.subject.rfc4514_string())


def _starts_too_late(start: dt.datetime, latest: dt.datetime, issuer: str) -> str:
    return (f"The requested validity starts on {start.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC, after {issuer} "
            f"expires ({latest:%Y-%m-%d %H:%M:%S} UTC): nothing it signs is valid then. Give a not_before "
            "before its expiry.")


def _past_issuer_message(days: int, latest: dt.datetime, not_before: dt.datetime, *,
                         what: str = "certificate", issuer: str = "the CA") -> str:
    most = (latest - not_before).days
    a_what = f"a{'n' if what[0] in 'aeiou' else ''} {what}"
    return (f"A lifetime of {days} day{'s' if days != 1 else ''} would end after {issuer} expires on "
            f"{latest:%Y-%m-%d %H:%M:%S} UTC; " + longest_text(most, latest, a_what))


def longest_text(most: int, latest: dt.datetime, a_what: str = "a certificate") -> str:
    """What lifetime is left below an issuer that ends at ``latest``, ``most`` whole days away: a number of
    days --days takes, or (under a day) that leaving --days out issues until then."""
    if most >= 1:
        return f"{a_what} issued now can live at most {most} day{'s' if most != 1 else ''} (until {latest:%Y-%m-%d})."
    return (f"less than a day is left, which --days cannot give: leave --days out to issue {a_what} that ends "
            "with it, and create its successor.")



def check_days_for_kinds(days: int, kinds, ca_cert) -> None:
    """``days`` for certificates of ``kinds`` issued now by ``ca_cert``: refused (:class:`InvalidLifetime`) when
    no certificate of those kinds may have it (a bulk renewal's or a timer's --days: a usage mistake, said once,
    not once per certificate)."""
    limits = [PROFILES[kind].max_days for kind in kinds]
    if None not in limits and days > max(limits):
        names = " or ".join(kinds)
        raise InvalidLifetime(f"A {names} certificate may live at most {max(limits)} days (Apple's limit for locally "
                              f"trusted roots); {days} were asked for")
    not_before, not_after = validity(days)
    if not_after > (latest := ca_cert.not_valid_after_utc):
        raise InvalidLifetime(_past_issuer_message(days, latest, not_before).rstrip("."))
