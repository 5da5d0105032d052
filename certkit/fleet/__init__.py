"""Renewal that runs itself: bulk renewal, deploy hooks, and the daily timer (``certkit renew --expiring``).

:func:`plan_fleet` picks the certificates to renew (valid, issued by this CA,
not renewed yet, expiring within a period or all of them, by kind and name)
and plans each one with :func:`certkit.renewal.plan_renewal`, so every refusal
(a folder whose key does not match, a certificate revoked meanwhile) is known
before the CA key is unlocked; a certificate whose bundle folder is unknown
(never written to a folder, or moved) is skipped, not renewed elsewhere.
:func:`renew_fleet` then renews them one by one, in place, through the issuing
pipeline (:func:`certkit.renewal.renew`), and after each renewed bundle runs
the per-bundle hook (certbot's deploy-hook convention: see :data:`HOOK_ENV`),
and once at the end the ``exec_once`` hook if anything was renewed (reload
nginx once, not 500 times). A failed hook is reported and never undoes a
written bundle. A second run renews nothing (the first one's successors are
not expiring), so it is safe to run from cron every hour.

Hooks run through ``/bin/sh -c`` with the environment of certkit minus its
secrets (passphrases, passwords, PINs); what they print is kept (the last
64 KiB) and handed to the caller, which shows it on standard error, so that
``--json`` keeps standard output to itself.

The schedule: :func:`install_timer` writes a systemd timer and service (the
user's, or as root the system's) that run the bulk renewal daily at a random
time of day; :func:`crontab_line` is the same for machines without systemd.

The package: :mod:`~certkit.fleet.plan` (choosing and planning; :mod:`~certkit.fleet.folders`: why a
certificate is not renewed in its bundle folder),
:mod:`~certkit.fleet.run` (renewing, one run per CA at a time),
:mod:`~certkit.fleet.hooks` (running a hook), :mod:`~certkit.fleet.timer` (the
timer; :mod:`~certkit.fleet.crontab`: the crontab line; :mod:`~certkit.fleet.schedule`: when they run and
whether a renewal window fits), :mod:`~certkit.fleet.timer_env` (the environment they run
certkit with, tried when installing). Everything public is importable from here.
"""

from certkit.fleet.crontab import crontab_line
from certkit.fleet.hooks import (
    CA_ENV,
    DEFAULT_HOOK_TIMEOUT,
    HOOK_ENV,
    HOOK_OUTPUT,
    ONCE_ENV,
    HookRun,
    ca_environment,
    hook_environment,
    run_hook,
)
from certkit.fleet.plan import FleetPlan, Outcome, Selection, plan_fleet, selected
from certkit.fleet.run import FleetLock, FleetResult, renew_fleet, renew_one
from certkit.fleet.schedule import RANDOM_DELAY, schedule_problem, window_of, window_problem
from certkit.fleet.timer import (
    ENV_SYSTEM_UNIT_DIR,
    UNIT_NAME,
    TimerChange,
    install_timer,
    program,
    remove_timer,
    service_text,
    systemd_quote,
    systemd_running,
    timer_text,
    unit_dir,
)

__all__ = [
    "CA_ENV",
    "DEFAULT_HOOK_TIMEOUT",
    "ENV_SYSTEM_UNIT_DIR",
    "HOOK_ENV",
    "HOOK_OUTPUT",
    "ONCE_ENV",
    "RANDOM_DELAY",
    "UNIT_NAME",
    "FleetLock",
    "FleetPlan",
    "FleetResult",
    "HookRun",
    "Outcome",
    "Selection",
    "TimerChange",
    "ca_environment",
    "crontab_line",
    "hook_environment",
    "install_timer",
    "plan_fleet",
    "program",
    "remove_timer",
    "renew_fleet",
    "renew_one",
    "run_hook",
    "schedule_problem",
    "selected",
    "service_text",
    "systemd_quote",
    "systemd_running",
    "timer_text",
    "unit_dir",
    "window_of",
    "window_problem",
]
