"""Running a planned bulk renewal: :func:`renew_fleet` renews each certificate in place through
the issuing pipeline (:func:`renew_one`), runs its hook, and the once-at-the-end hook even when
a signal stops the run early; :class:`FleetResult` is what it did; :class:`FleetLock` keeps
to one bulk renewal per CA directory at a time."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.errors import CertkitError
from certkit.fleet.hooks import (
    DEFAULT_HOOK_TIMEOUT,
    HookRun,
    ca_environment,
    hook_environment,
    once_environment,
    run_hook_until_stopped,
)
from certkit.fleet.plan import FleetPlan, Outcome, changed_meanwhile, period_words, row_names
from certkit.text import shown

if TYPE_CHECKING:
    from certkit.ca import CA


@dataclass
class FleetResult:
    """What a bulk renewal did: every outcome, the once-at-the-end hook, and the signal that stopped
    it early, if one did."""

    plan: FleetPlan
    outcomes: list[Outcome] = field(default_factory=list)
    exec_once: HookRun | None = None
    stopped: int | None = None  # the signal that stopped the run before every planned renewal was tried
    halted: str | None = None  # why the run could not go on (the inventory went away), said as a stop is

    @property
    def renewed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.outcome == "renewed"]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.outcome == "failed"]

    @property
    def skipped(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.outcome == "skipped"]

    @property
    def untried(self) -> list[str]:
        """The planned renewals a stop or a halt left undone (serials)."""
        tried = {o.serial for o in self.outcomes}
        return [serial for serial in self.plan.todo if serial not in tried]

    @property
    def undone(self) -> list[Outcome]:
        """The planned renewals a stop or a halt left undone, as ``not_done`` outcomes that say why."""
        from certkit.fleet.hooks import signal_name

        if self.halted:
            why = "the run stopped before it came to this certificate (the inventory could not be reached)"
        else:
            why = ("the run was interrupted (" + ("Ctrl-C" if self.stopped == 2 else signal_name(self.stopped or 15))
                   + ") before it came to this certificate")
        return self.plan.undone(self.untried, why + ", so it is still due: run the same command again")

    @property
    def hook_failures(self) -> list[Outcome]:
        return [o for o in self.renewed if o.hook is not None and not o.hook.ok]

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes) and (self.exec_once is None or self.exec_once.ok) \
            and self.stopped is None and self.halted is None


def renew_fleet(ca: "CA", plan: FleetPlan, *, exec_each: str | None = None, exec_once: str | None = None,
                hook_timeout: float = DEFAULT_HOOK_TIMEOUT, progress: Callable[[int], None] | None = None,
                on_hook: Callable[[HookRun, Outcome | None, int], None] | None = None) -> FleetResult:
    """Renew every planned certificate (the CA unlocked), each through the issuing pipeline, then
    its hook; ``exec_once`` at the end if anything was renewed, even when the run stops early
    (Ctrl-C, SIGTERM: ``stopped`` then holds the signal; an inventory that cannot be reached:
    ``halted`` says why), so servers always pick up what was written.
    ``on_hook`` is called after each hook has run (to show what it printed, under a heading that says whose): with
    the renewed bundle's :class:`Outcome` for ``exec_each``, None for ``exec_once``, and how many were renewed."""
    from certkit.errors import InventoryError, Terminated

    result = FleetResult(plan, outcomes=list(plan.outcomes))
    folders: list[str] = []
    ca_env = ca_environment(ca)  # a hook that runs certkit acts on this CA (a timer gives --ca-dir)

    def deploy(outcome: Outcome) -> None:
        """A renewed bundle's own hook: also when a stop came as it was written (the bundle is new on
        disk, and a rerun will not renew it again); a stop during the hook stops the run."""
        result.outcomes.append(outcome)
        if outcome.outcome != "renewed":
            return
        folders.append(outcome.folder)
        if exec_each:
            outcome.hook, stopped = run_hook_until_stopped(exec_each, ca_env | hook_environment(outcome),
                                                           timeout=hook_timeout)
            result.stopped = result.stopped or stopped
            if on_hook is not None:
                on_hook(outcome.hook, outcome, len(folders))

    try:
        for serial in plan.todo:
            try:
                outcome = renew_one(ca, serial, plan.options, window=plan.selection.expiring)
            except (KeyboardInterrupt, Terminated, InventoryError) as exc:  # the bundle being written was finished
                if getattr(exc, "certkit_outcome", None) is not None:
                    deploy(exc.certkit_outcome)
                raise
            deploy(outcome)
            if result.stopped is not None:
                break
            if progress is not None:
                progress(1)
    except InventoryError as exc:  # the inventory went away: what was renewed is reported, exec_once runs
        result.halted = str(exc)
    except KeyboardInterrupt:
        result.stopped = 2  # SIGINT: what was renewed is reported, then the exit status says so
    except Terminated as exc:
        result.stopped = exc.signum  # 15 for SIGTERM, 1 for SIGHUP
    if exec_once and folders:
        # also after a stop: servers pick up what was written; a stop during it is reported as one too
        with once_environment(folders) as once_env:
            result.exec_once, stopped = run_hook_until_stopped(exec_once, ca_env | once_env, timeout=hook_timeout)
        result.stopped = result.stopped or stopped
        if on_hook is not None:
            on_hook(result.exec_once, None, len(folders))
    return result


def renew_one(ca: "CA", serial: str, options: dict, *, window: dt.timedelta | None = None) -> Outcome:
    """Plan again (things may have changed since the fleet was planned) and renew in place.
    ``window``: the bulk renewal's ``expiring`` period, to warn when the successor is due at once.
    Interrupted right after the renewal was delivered, or the inventory gone once it was, the exception carries
    its outcome (``certkit_outcome``)."""
    from certkit.errors import InventoryError, Terminated
    from certkit.renewal import plan_renewal, renew

    try:
        planned = plan_renewal(ca, serial, **options)
    except CertkitError as exc:
        if (skipped := changed_meanwhile(ca, serial)) is not None:  # as the planner would now: not a failure
            return skipped
        row = ca.inventory.get(serial) or {}
        return Outcome(serial, "failed", row.get("folder"), row.get("kind"), row_names(row) if row else [],
                       stage="plan", error=str(exc), san=row.get("names", []))
    found = planned.found
    outcome = Outcome(serial, "failed", str(planned.target.folder), found.row["kind"], row_names(found.row),
                      san=found.row["names"])
    try:
        renewal = renew(ca, planned)
    except CertkitError as exc:  # another command renewed or revoked it first: the inventory refused this one
        if (written := getattr(exc, "certkit_renewal", None)) is not None:  # in place, the inventory gone since
            exc.certkit_outcome = _renewed(ca, outcome, found, written, window)  # its hooks run, then the run stops
            raise
        outcome.stage, outcome.error = "renew", str(exc)
        return (None if isinstance(exc, InventoryError) else changed_meanwhile(ca, serial)) or outcome
    except (KeyboardInterrupt, Terminated) as exc:
        # A signal held off while the bundle was written lands right after it: say what was done.
        successors = ca.inventory.successors(serial)
        if successors:
            row = ca.inventory.get(successors[-1])
            outcome.outcome, outcome.new_serial, outcome.not_after = "renewed", row["serial"], row["not_after"]
            exc.certkit_outcome = outcome
        raise
    return _renewed(ca, outcome, found, renewal, window)


def _renewed(ca: "CA", outcome: Outcome, found, renewal, window: dt.timedelta | None) -> Outcome:
    """``outcome`` of the renewal of ``found`` done (``renewal``), with its notes."""
    issued = renewal.issued
    outcome.outcome, outcome.new_serial = "renewed", issued.serial_hex
    outcome.new_key = issued.cert.public_key() != found.cert.public_key()  # --rekey keeps a CSR requester's key
    outcome.not_after = issued.not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    outcome.notes = list(renewal.notes)
    lifetime = issued.not_after - issued.cert.not_valid_before_utc
    if window is not None and lifetime <= window:
        capped = issued.not_after >= ca.cert.not_valid_after_utc  # no longer lifetime is possible from this CA
        outcome.notes.append(f"the new certificate lives {period_words(lifetime)}, no longer than the "
                             f"{period_words(window)} renewal window, so every run will renew it again: " +
                             ("its CA ends then; create the CA's successor with 'certkit init-ca' and move the "
                              "certificates to it" if capped else "renew it with a longer lifetime, or choose a "
                              "shorter window"))
    return outcome


@dataclass
class FleetLock:
    """One bulk renewal per CA directory at a time (an hourly cron job whose previous run is still
    going must not renew the same certificates twice): an exclusive ``flock`` on the directory,
    released when the process ends, however it ends."""

    path: Path
    fd: int | None = None

    def __enter__(self) -> "FleetLock":
        import fcntl

        self.fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise CertkitError(f"Another bulk renewal of the CA in {shown(self.path)} is running, so this one "
                               "renewed nothing (not even what only this one selects): run it again once the "
                               "other has ended.") from None
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None
