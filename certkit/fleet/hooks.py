"""The hooks a bulk renewal runs: after each renewed bundle (certbot's deploy-hook variables:
:data:`HOOK_ENV`) and once at the end (:data:`ONCE_ENV`). A hook runs through ``/bin/sh -c``
with certkit's environment minus its secrets, in its own session (stopped with everything it
started on a timeout or Ctrl-C); its last :data:`HOOK_OUTPUT` bytes are kept in :class:`HookRun`."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from certkit.fleet.plan import Outcome

# What a per-bundle hook finds in its environment. RENEWED_LINEAGE and RENEWED_DOMAINS are
# certbot's deploy-hook variables (so hooks written for certbot work unchanged); the rest are certkit's.
HOOK_ENV = {
    "RENEWED_LINEAGE": "the bundle folder (absolute), as certbot's deploy hooks get it",
    "RENEWED_DOMAINS": "the certificate's names, space-separated (DNS names, IP addresses, emails, URIs; a "
                       "client certificate without any: its common name)",
    "CERTKIT_FOLDER": "the bundle folder (absolute)",
    "CERTKIT_SERIAL": "the new certificate's serial",
    "CERTKIT_OLD_SERIAL": "the serial of the certificate it renews",
    "CERTKIT_KIND": "server, client or peer",
    "CERTKIT_NOT_AFTER": "the new certificate's expiry (ISO 8601, UTC)",
}
# What the once-at-the-end hook finds.
ONCE_ENV = {
    "CERTKIT_RENEWED": "how many bundles were renewed",
    "CERTKIT_FOLDERS": "their folders, one per line",
}
DEFAULT_HOOK_TIMEOUT = 600  # seconds: a reload takes a moment; a hung hook must not hold the timer forever
HOOK_OUTPUT = 64 << 10  # bytes of a hook's output kept: its last words, not a runaway log
_SECRET_ENV = re.compile(r"CERTKIT_\w*(PASSPHRASE|PASSWORD|PIN)\w*")


@dataclass
class HookRun:
    """One run of a hook: the command, its exit status (None if it could not run or timed out),
    and what it printed (standard output and error together, the last :data:`HOOK_OUTPUT` bytes)."""

    command: str
    exit: int | None
    error: str | None = None
    output: str = ""

    @property
    def ok(self) -> bool:
        return self.exit == 0

    def as_dict(self) -> dict:
        return {"command": self.command, "exit": self.exit, "ok": self.ok, "error": self.error,
                "output": self.output}

    def describe(self) -> str:
        return "exit 0" if self.ok else self.error or f"exit {self.exit}"


def hook_environment(outcome: Outcome) -> dict[str, str]:
    """The variables of :data:`HOOK_ENV` for one renewed bundle."""
    return {"RENEWED_LINEAGE": outcome.folder, "RENEWED_DOMAINS": " ".join(outcome.names),
            "CERTKIT_FOLDER": outcome.folder, "CERTKIT_SERIAL": outcome.new_serial,
            "CERTKIT_OLD_SERIAL": outcome.serial, "CERTKIT_KIND": outcome.kind or "",
            "CERTKIT_NOT_AFTER": outcome.not_after or ""}


def run_hook(command: str, extra_env: dict[str, str], *, timeout: float = DEFAULT_HOOK_TIMEOUT) -> HookRun:
    """Run ``command`` with ``/bin/sh -c``: certkit's environment without its secrets, plus
    ``extra_env``; what it prints is kept in the result. A hook still running after ``timeout``
    seconds is killed (with anything it started)."""
    import signal

    env = {k: v for k, v in os.environ.items() if not _SECRET_ENV.fullmatch(k)} | extra_env
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", command], env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        return HookRun(command, None, f"could not run it: {exc.strerror or exc}")
    kept = bytearray()

    def read() -> None:  # in a thread: a hook that prints a lot never blocks on a full pipe
        while chunk := proc.stdout.read1(65536):
            kept.extend(chunk)
            del kept[:-HOOK_OUTPUT]

    import threading

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid, signal.SIGKILL)
        proc.wait()
        code = None
    except BaseException:  # Ctrl-C: the hook runs in its own session, so stop it too
        _kill_group(proc.pid, signal.SIGTERM)
        proc.wait()
        raise
    finally:
        reader.join(timeout=5)
        proc.stdout.close()
    output = kept.decode("utf-8", "replace")
    if code is None:
        return HookRun(command, None, f"still running after {timeout:g} s, so it was stopped", output)
    if code < 0:
        return HookRun(command, code, f"killed by signal {-code}", output)
    return HookRun(command, code, None if code == 0 else f"exit {code}", output)


def _kill_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
