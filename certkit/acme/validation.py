"""Challenge validation in worker threads: :class:`Validations`.

A client's challenge POST marks the challenge processing and hands it here;
a worker runs the validator (http-01, tls-alpn-01: :mod:`certkit.acme.challenges`)
and records the outcome in the ACME state, while the request waits a moment
for it. Validations that a stop cut off (their validating process is dead) are
taken over and queued again at the next start; those another live server is
running are left to it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from certkit.acme import challenges
from certkit.acme.challenges import Validator
from certkit.acme.problems import Problem
from certkit.acme.state import AcmeState
from certkit.text import shown

VALIDATION_WORKERS = 8


class Validations:
    """The queue of challenges to validate and the threads that work through it."""

    def __init__(self, state: AcmeState, validator: Validator, log: Callable[[str], None]) -> None:
        self.state, self.validator, self.log = state, validator, log
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._done: dict[str, threading.Event] = {}
        self._done_lock = threading.Lock()
        self._workers: list[threading.Thread] = []

    def start(self, workers: int = VALIDATION_WORKERS) -> None:
        """Start the workers, and queue again the validations a stop (or a kill) cut off."""
        for _ in range(workers):
            thread = threading.Thread(target=self._work, name="acme-validate", daemon=True)
            thread.start()
            self._workers.append(thread)
        for challenge_id in self.state.claim_interrupted_challenges():
            self._queue.put(challenge_id)  # validations cut off by a stop are done again

    def stop(self) -> None:
        for _ in self._workers:
            self._queue.put(None)

    def run(self, challenge_id: str, wait: float) -> None:
        """Validate the challenge in a worker; return when it is done, or after ``wait`` seconds."""
        done = self._expect(challenge_id)
        self._queue.put(challenge_id)
        done.wait(wait)
        with self._done_lock:
            self._done.pop(challenge_id, None)

    def _expect(self, challenge_id: str) -> threading.Event:
        event = threading.Event()
        with self._done_lock:
            self._done[challenge_id] = event
        return event

    def _work(self) -> None:
        while (challenge_id := self._queue.get()) is not None:
            try:
                self.validate(challenge_id)
            except Exception as exc:  # the database went away: the challenge stays processing, retried on restart
                self.log(f"error validating challenge {challenge_id}: {type(exc).__name__}: {shown(exc)}")
            finally:
                with self._done_lock:
                    event = self._done.get(challenge_id)
                if event is not None:
                    event.set()

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
        self.state.finish_challenge(challenge.id, error)
        took = f"{(time.monotonic() - started) * 1000:.0f} ms"
        outcome = "valid" if error is None else f"invalid: {error['detail']}"
        self.log(f"{challenge.type} for {authz.identifier['value']}: {outcome} ({took})")
