"""Challenge validation in worker threads: :class:`Validations`.

A client's challenge POST marks the challenge processing and hands it here;
a worker runs the validator (http-01, tls-alpn-01: :mod:`certkit.acme.challenges`)
and records the outcome in the ACME state, while the request waits a moment
for it. Validations that a stop cut off (their validating process is dead) are
taken over and queued again by the next server to start, or by a running server's
maintenance round; those another live server is running are left to it. Each account's
challenges wait in a line of their own and the accounts take turns, at most
:data:`PER_ACCOUNT` validations each at once, so one account's slow responders
cannot hold every worker (each attempt also ends by its deadline: :data:`certkit.acme.challenges.TIMEOUT`).

An outcome the database refuses to record (another certkit process holds an SQLite inventory's
write lock longer than the server waits, a PostgreSQL server gone) is kept, and written again
every :data:`RETRY_WRITE` seconds until it is: by a retry of its own, by the next request for that
challenge, its authorization or its order, and by the maintenance round (:meth:`Validations.settle`),
which also queues again any challenge this process is validating that is neither queued, running
nor waiting to be written (a validation that failed before it had an outcome). A challenge is
never left ``processing`` behind a live server whose validation has ended.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from certkit.acme import challenges
from certkit.acme.challenges import Validator
from certkit.acme.problems import Problem
from certkit.acme.state import AcmeState
from certkit.errors import CertkitError
from certkit.text import shown

VALIDATION_WORKERS = 8
# At most this many validations of one account run at once, and waiting accounts take turns: one
# account's slow responders (each held until the deadline) can never occupy every worker while
# other clients' challenges wait.
PER_ACCOUNT = 2
# How often an outcome the database refused is written again, until it is.
RETRY_WRITE = 2.0


class Validations:
    """The challenges to validate, queued per account, and the threads that work through them."""

    def __init__(self, state: AcmeState, validator: Validator, log: Callable[[str], None]) -> None:
        self.state, self.validator, self.log = state, validator, log
        self._lock = threading.Condition()
        self._waiting: dict[str, deque[str]] = {}  # account id -> challenge ids; dict order: whose turn
        self._running: dict[str, int] = {}  # account id -> validations in progress
        self._stopping = False
        self._done: dict[str, threading.Event] = {}
        self._workers: list[threading.Thread] = []
        self._active: set[str] = set()  # challenge ids queued or being validated here
        self._unwritten: dict[str, dict | None] = {}  # challenge id -> its outcome the database refused
        self._retrying = False  # a retry of the unwritten outcomes is scheduled

    def start(self, workers: int = VALIDATION_WORKERS) -> None:
        """Start the workers, and queue again the validations a stop (or a kill) cut off."""
        for _ in range(workers):
            thread = threading.Thread(target=self._work, name="acme-validate", daemon=True)
            thread.start()
            self._workers.append(thread)
        for challenge_id in self.state.claim_interrupted_challenges():
            found = self.state.challenge(challenge_id)  # validations cut off by a stop are done again
            self._submit(challenge_id, found[1].account_id if found else "")

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()

    def run(self, challenge_id: str, account_id: str, wait: float) -> None:
        """Validate the challenge in a worker; return when it is done, or after ``wait`` seconds."""
        done = threading.Event()
        with self._lock:
            self._done[challenge_id] = done
        self._submit(challenge_id, account_id)
        done.wait(wait)
        with self._lock:
            self._done.pop(challenge_id, None)

    def _submit(self, challenge_id: str, account_id: str) -> None:
        with self._lock:
            if challenge_id in self._active or challenge_id in self._unwritten:
                return  # queued, running or done already: once is enough
            self._active.add(challenge_id)
            self._waiting.setdefault(account_id, deque()).append(challenge_id)
            self._lock.notify()

    def _next(self) -> tuple[str, str] | None:
        """(account, challenge) to validate next: the first account in turn that is under its
        limit; None when stopping."""
        with self._lock:
            while not self._stopping:
                for account_id, waiting in self._waiting.items():
                    if self._running.get(account_id, 0) < PER_ACCOUNT:
                        challenge_id = waiting.popleft()
                        del self._waiting[account_id]
                        if waiting:
                            self._waiting[account_id] = waiting  # to the back of the line
                        self._running[account_id] = self._running.get(account_id, 0) + 1
                        return account_id, challenge_id
                self._lock.wait()
            return None

    def _finished(self, account_id: str, challenge_id: str) -> None:
        with self._lock:
            self._running[account_id] -= 1
            self._active.discard(challenge_id)
            if not self._running[account_id]:
                del self._running[account_id]
            event = self._done.get(challenge_id)
            self._lock.notify_all()
        if event is not None:
            event.set()

    def _work(self) -> None:
        while (taken := self._next()) is not None:
            account_id, challenge_id = taken
            try:
                self.validate(challenge_id)
            except Exception as exc:  # before an outcome (the database went away): queued again by settle
                self.log(f"error validating challenge {challenge_id}: {type(exc).__name__}: {shown(exc)}; "
                         "validated again by the next maintenance round")
            finally:
                self._finished(account_id, challenge_id)

    def validate(self, challenge_id: str) -> None:
        """Validate a processing challenge and record the outcome."""
        found = self.state.challenge(challenge_id)
        if found is None or found[0].status != "processing":
            return
        challenge, authz = found
        account = self.state.account(authz.account_id)
        key_auth = challenges.key_authorization(challenge.token, account.thumbprint)
        started = time.monotonic()
        try:
            self.validator.validate(challenge.type, authz.identifier, challenge.token, key_auth)
            error = None
        except Problem as problem:
            error = problem.to_json()
        except Exception as exc:
            error = Problem("serverInternal", f"Validation failed unexpectedly: {type(exc).__name__}.").to_json()
        self._record(challenge.id, error)
        took = f"{(time.monotonic() - started) * 1000:.0f} ms"
        outcome = "valid" if error is None else f"invalid: {error['detail']}"
        self.log(f"{challenge.type} for {authz.identifier['value']}: {outcome} ({took})")

    # --- outcomes the database refused -------------------------------------------------------
    def _record(self, challenge_id: str, error: dict | None) -> None:
        """Write the outcome; one the database refuses is kept and written again (:meth:`settle`)."""
        try:
            self.state.finish_challenge(challenge_id, error)
        except CertkitError as exc:
            with self._lock:
                self._unwritten[challenge_id] = error
            self.log(f"challenge {challenge_id}: its outcome cannot be written now ({shown(exc)}); "
                     f"retried every {RETRY_WRITE:g} s")
            self._schedule_retry()

    def _schedule_retry(self) -> None:
        with self._lock:
            if self._retrying or self._stopping or not self._unwritten:
                return
            self._retrying = True
        timer = threading.Timer(RETRY_WRITE, self._retry)
        timer.daemon = True
        timer.start()

    def _retry(self) -> None:
        with self._lock:
            self._retrying = False
            if self._stopping:
                return  # the stop writes what it can; the next server validates the rest again
        try:
            self.write_outcomes()
        except Exception as exc:  # not the database's refusal (that is kept): a bug, said and retried
            self.log(f"writing validation outcomes failed: {type(exc).__name__}: {shown(exc)}")
        self._schedule_retry()

    def unwritten(self) -> bool:
        with self._lock:
            return bool(self._unwritten)

    def write_outcomes(self) -> None:
        """Write the outcomes the database refused; those it refuses again stay for the next call."""
        with self._lock:
            pending = dict(self._unwritten)
        for challenge_id, error in pending.items():
            try:
                self.state.finish_challenge(challenge_id, error)
            except CertkitError:
                return  # still refused: the rest would wait as long
            with self._lock:
                self._unwritten.pop(challenge_id, None)
            self.log(f"challenge {challenge_id}: its outcome ({'valid' if error is None else 'invalid'}) is "
                     "written now")

    def settle(self) -> None:
        """The maintenance round's share: write the refused outcomes, take over the validations of a
        server of this host that died (as :meth:`start` does), and queue again the challenges this
        process is validating that nothing here is working on (a validation that failed before it
        had an outcome, or one just taken over)."""
        self.write_outcomes()
        self.state.claim_interrupted_challenges()  # this process's from now on: queued just below
        for challenge_id, account_id in self.state.validating():
            self._submit(challenge_id, account_id)  # skips those queued, running or awaiting their write


def refuse_not_started(challenge, authz) -> None:
    """Why the challenge a client answered was not started, as a Problem: its authorization is closed, or another
    of its challenges is being validated (whose outcome decides it). Nothing if another request for this challenge
    started it meanwhile."""
    if challenge.status != "pending":
        return
    if authz.status != "pending":
        raise Problem("malformed", f"The authorization is {authz.status}; its challenges are closed.")
    busy = " and ".join(c.type for c in authz.challenges if c.status == "processing") or "another"
    raise Problem("malformed", f"The {challenge.type} challenge was not started: the {busy} challenge of this "
                               "authorization is being validated, and its outcome decides the authorization (one "
                               "challenge suffices, RFC 8555 7.1.4); poll the authorization.")
