"""When bulk renewal runs, and whether a renewal window fits it: the timer's calendar and random delay (the
units :mod:`certkit.fleet.timer` writes), the longest time between two runs of the timer or of a crontab line
(:mod:`certkit.fleet.crontab`), and the refusal of a ``--expiring`` window a certificate could expire within
between two runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from certkit.errors import CertkitError
from certkit.text import is_digits

# A random moment within this many seconds after midnight, chosen anew every day: a fleet of
# machines does not renew (nor reload its servers) all at the same second.
RANDOM_DELAY = 6 * 3600
CALENDAR = "daily"  # OnCalendar=: once a day, at midnight (plus the random delay)
# The most seconds between two midnights, CALENDAR's period: 25 hours on the night clocks go back (a timer
# and cron both run in local time).
PERIOD = 25 * 3600
ACCURACY = 60  # systemd's default AccuracySec=1min: a timer may elapse up to this much late


def longest_gap(*, cron: bool = False) -> dt.timedelta:
    """The longest time between two runs of the schedule certkit writes. The timer
    (:func:`certkit.fleet.timer.timer_text`) elapses once a :data:`CALENDAR` day, each time at a new random
    moment within :data:`RANDOM_DELAY` after midnight and up to :data:`ACCURACY` late: one run just after
    midnight, the next as late as the following day allows. The crontab line (``cron``) runs at one fixed time
    each day. A day is :data:`PERIOD` long at most (the night clocks go back)."""
    if cron:
        return dt.timedelta(seconds=PERIOD)
    return dt.timedelta(seconds=PERIOD + RANDOM_DELAY + ACCURACY)


def window_of(renew_argv: Sequence[str]) -> dt.timedelta | None:
    """The renewal window of ``renew_argv`` (``--expiring 30d``, ``12h``, ``2w``), None without one."""
    if "--expiring" not in renew_argv[:-1]:
        return None
    text = renew_argv[max(i for i, arg in enumerate(renew_argv[:-1]) if arg == "--expiring") + 1]
    unit = {"h": dt.timedelta(hours=1), "d": dt.timedelta(days=1), "w": dt.timedelta(weeks=1)}.get(text[-1:])
    return unit * int(text[:-1]) if unit is not None and is_digits(text[:-1]) else None


def window_problem(window: dt.timedelta | None, *, cron: bool = False) -> str | None:
    """Why a renewal ``window`` is too short for the schedule (None if it is not): a certificate due
    only within the window may expire between two runs (:func:`longest_gap`), and no run renews an
    expired certificate. The smallest window that works, in whole days, is said."""
    gap = longest_gap(cron=cron)
    if window is None or window > gap:
        return None
    from certkit.fleet.plan import period_words

    smallest = gap // dt.timedelta(days=1) + 1
    when = ("A crontab line runs once a day at the same local time, so two runs can be up to 25 hours apart (the "
            "night clocks go back)" if cron else
            f"The timer runs daily at a random time within {RANDOM_DELAY // 3600} hours after midnight "
            f"(OnCalendar={CALENDAR}, RandomizedDelaySec={RANDOM_DELAY}, and up to {ACCURACY} s late), so two "
            f"runs can be up to {_hours_and_minutes(gap)} apart (on the night clocks go back)")
    return (f"{when}: a certificate due within the renewal window of {period_words(window)} could expire between "
            f"two runs, and an expired certificate is never renewed by them. Give --expiring {smallest}d or longer "
            "(or --include-expired, to renew a certificate that expired between two runs).")


def schedule_problem(renew_argv: Sequence[str], *, cron: bool = False) -> str | None:
    """:func:`window_problem` for the renewal ``renew_argv`` runs; none with ``--include-expired``, whose runs
    renew a certificate that expired between two of them."""
    return None if "--include-expired" in renew_argv else window_problem(window_of(renew_argv), cron=cron)


def _hours_and_minutes(period: dt.timedelta) -> str:
    hours, minutes = divmod(int(period.total_seconds()) // 60, 60)
    return f"{hours} hours" + (f" and {minutes} minute{'s' if minutes != 1 else ''}" if minutes else "")


def _check_window(renew_argv: Sequence[str], *, cron: bool) -> None:
    if problem := schedule_problem(renew_argv, cron=cron):
        raise CertkitError(problem)
