"""The hooks a bulk renewal runs: after each renewed bundle (certbot's deploy-hook variables:
:data:`HOOK_ENV`) and once at the end (:data:`ONCE_ENV`). A hook runs through ``/bin/sh -c``
with certkit's environment minus its secrets, in its own session (stopped with everything it
started on a timeout or Ctrl-C); its last :data:`HOOK_OUTPUT` bytes are kept in :class:`HookRun`, from a
line's start, after a line that says how much came before."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from certkit.constants import ENV_INVENTORY_URL
from certkit.paths import absolute

if TYPE_CHECKING:
    from certkit.fleet.plan import Outcome

# What a per-bundle hook finds in its environment. RENEWED_LINEAGE and RENEWED_DOMAINS are
# certbot's deploy-hook variables (so hooks written for certbot work unchanged); the rest are certkit's.
HOOK_ENV = {
    "RENEWED_LINEAGE": "the bundle folder (absolute), as certbot's deploy hooks get it",
    "RENEWED_DOMAINS": "the certificate's subject alternative names, space-separated (DNS names, IP addresses, "
                       "emails, URIs; none holds a space); empty for a client certificate without any",
    "CERTKIT_NAMES": "the certificate's names, one per line: its subject alternative names, else its common name "
                     "(which may hold spaces: Alice Smith)",
    "CERTKIT_FOLDER": "the bundle folder (absolute)",
    "CERTKIT_SERIAL": "the new certificate's serial",
    "CERTKIT_OLD_SERIAL": "the serial of the certificate it renews",
    "CERTKIT_KIND": "server, client or peer",
    "CERTKIT_NOT_AFTER": "the new certificate's expiry (ISO 8601, UTC)",
}
# What the once-at-the-end hook finds.
ONCE_ENV = {
    "CERTKIT_RENEWED": "how many bundles were renewed",
    "CERTKIT_FOLDERS": "their folders, one per line (unset when longer than a variable may be: 128 KiB)",
    "CERTKIT_FOLDERS_FILE": "a file that lists them, one per line (removed when the hook ends)",
}
MAX_VARIABLE = 128 << 10  # bytes NAME=value may take in an environment (Linux's MAX_ARG_STRLEN): exec fails past it
# What both find: the CA in use (a timer passes --ca-dir, so a hook that runs certkit needs it).
CA_ENV = {"CERTKIT_CA_DIR": "the CA directory in use (absolute), so that a hook that runs certkit acts on this CA"}
DEFAULT_HOOK_TIMEOUT = 600  # seconds: a reload takes a moment; a hung hook must not hold the timer forever
STOP_GRACE = 5.0  # seconds a hook gets to end after SIGTERM when the run is stopped, before SIGKILL
HOOK_OUTPUT = 64 << 10  # bytes of a hook's output kept: its last words, not a runaway log
_STOPS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}  # held while a hook starts, and while its output is kept
_SECRET_ENV = re.compile(r"CERTKIT_\w*(PASSPHRASE|PASSWORD|PIN)\w*|PGPASSWORD")


@dataclass
class HookRun:
    """One run of a hook: the command, its exit status (None if it could not run or timed out),
    and what it printed (standard output and error together, the last :data:`HOOK_OUTPUT` bytes).
    A hook killed by a signal N has the status a shell gives it, 128 + N (143 for SIGTERM), and
    ``signal`` names it (``SIGTERM``; :meth:`as_dict` has it only then); Python's negative return code
    is never an exit status."""

    command: str
    exit: int | None
    error: str | None = None
    output: str = ""
    truncated: bool = False  # the output was longer: its start was dropped (and said so in its first line)
    signal: str | None = None
    timed_out: bool = False  # stopped by --exec-timeout (``exit`` None if the hook itself was still running)

    def __post_init__(self) -> None:
        if self.exit is not None and self.exit < 0:  # subprocess's -N: killed by signal N
            self.signal = signal_name(-self.exit)
            self.exit = 128 - self.exit

    @property
    def ok(self) -> bool:
        return self.exit == 0 and self.error is None

    def as_dict(self) -> dict:
        signal = {"signal": self.signal} if self.signal else {}  # only for a hook a signal ended
        return {"command": self.command, "exit": self.exit, **signal, "ok": self.ok, "error": self.error,
                "timed_out": self.timed_out, "output": self.output, "output_truncated": self.truncated}

    def describe(self) -> str:
        return "exit 0" if self.ok else self.error or f"exit {self.exit}"


def ca_environment(ca) -> dict[str, str]:
    """The variables of :data:`CA_ENV` for ``ca`` (none for a CA that is no CA directory's)."""
    store = getattr(ca, "store", None)
    return {"CERTKIT_CA_DIR": absolute(store.path)} if store is not None else {}


def hook_environment(outcome: Outcome) -> dict[str, str]:
    """The variables of :data:`HOOK_ENV` for one renewed bundle."""
    return {"RENEWED_LINEAGE": outcome.folder, "RENEWED_DOMAINS": " ".join(outcome.domains),
            "CERTKIT_NAMES": "\n".join(outcome.names),
            "CERTKIT_FOLDER": outcome.folder, "CERTKIT_SERIAL": outcome.new_serial,
            "CERTKIT_OLD_SERIAL": outcome.serial, "CERTKIT_KIND": outcome.kind or "",
            "CERTKIT_NOT_AFTER": outcome.not_after or ""}


def folders_fit(folders: list[str]) -> bool:
    """Whether CERTKIT_FOLDERS of ``folders`` fits in an environment variable. A longer one (a few thousand
    bundles) makes the hook's exec fail (E2BIG, "Argument list too long"): it is left out, and
    CERTKIT_FOLDERS_FILE lists them."""
    return len(("CERTKIT_FOLDERS=" + "\n".join(folders)).encode("utf-8", "surrogateescape")) < MAX_VARIABLE


@contextlib.contextmanager
def once_environment(folders: list[str]) -> Iterator[dict[str, str]]:
    """The variables of :data:`ONCE_ENV` for ``folders``, while the hook runs: the file CERTKIT_FOLDERS_FILE
    names lives in a private temporary folder, removed afterwards."""
    import shutil
    import tempfile

    env = {"CERTKIT_RENEWED": str(len(folders))} | ({"CERTKIT_FOLDERS": "\n".join(folders)}
                                                    if folders_fit(folders) else {})
    where = None
    try:
        where = tempfile.mkdtemp(prefix="certkit-folders-")
        with open(os.path.join(where, "folders"), "w", encoding="utf-8", errors="surrogateescape") as listing:
            listing.write("".join(folder + "\n" for folder in folders))
        env["CERTKIT_FOLDERS_FILE"] = listing.name
    except OSError:  # no temporary folder to be had (a full or read-only /tmp): the hook runs all the same
        pass
    try:
        yield env
    finally:
        if where is not None:
            shutil.rmtree(where, ignore_errors=True)


def run_hook(command: str, extra_env: dict[str, str], *, timeout: float = DEFAULT_HOOK_TIMEOUT,
             interrupted: list | None = None) -> HookRun:
    """Run ``command`` with ``/bin/sh -c``: certkit's environment without its secrets, plus
    ``extra_env``; what it prints is kept in the result. ``timeout`` bounds the whole run,
    including anything the hook started that still holds its output (``my-daemon &``): at the
    deadline, the hook's session is killed and certkit stops waiting. A stop (Ctrl-C, SIGTERM)
    during the hook stops it (:func:`_stop`) and is raised again; ``interrupted`` then receives how the
    hook ended (its exit status, and what happened to it)."""
    import selectors
    import signal
    import time

    deadline = time.monotonic() + timeout
    kept = bytearray()
    dropped = 0  # bytes of earlier output not kept
    closed = False  # the output's end of file: nothing the hook started holds it any more
    stuck: list[int] = []  # processes holding its output that could not be stopped
    # A stop that comes while the hook is being started is held until it is known (then it stops it too);
    # the hook itself starts with the mask certkit had, so that its traps work.
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", command], env=hook_base_environment() | extra_env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_SETMASK,
                                                                                                  held))
    except BaseException as exc:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        if isinstance(exc, OSError):
            return HookRun(command, None, f"could not run it: {exc.strerror or exc}")
        raise
    try:  # a stop held above lands here, or any time later: it stops the hook, and what it printed is kept
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        fd = proc.stdout.fileno()
        os.set_blocking(fd, False)
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while not closed and (left := deadline - time.monotonic()) > 0:
                if selector.select(left):
                    closed, cut = _read_into(fd, kept)
                    dropped += cut
        try:
            code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            code = None
        if code is None or not closed:
            _kill_group(proc.pid, signal.SIGKILL)
            proc.wait()
            stuck = _stop_holders(fd)  # what left the hook's session (setsid, a daemon) and still holds its output
    except BaseException:  # Ctrl-C: the hook runs in its own session, so stop it too
        code, what = _stop(proc, deadline)
        _stop_holders(proc.stdout.fileno())
        dropped += _drain(proc.stdout.fileno(), kept)  # its last words too: what it printed when told to stop
        if interrupted is not None:
            interrupted.append((code, what, kept_output(kept, dropped), dropped > 0))
        raise
    finally:
        proc.stdout.close()
    output = kept_output(kept, dropped)
    stopped = "so it was stopped" if not stuck else \
        f"so it was stopped but for {_pids_text(stuck)}, which could not be stopped"
    if code is None:
        error = f"still running after {timeout:g} s, {stopped}"
    elif not closed:
        error = (f"exit {code}, but what it started still held its output after {timeout:g} s, {stopped} "
                 "(redirect a background command's output: cmd >/dev/null 2>&1 &)")
    else:
        error = None if code == 0 else describe_status(code)
    return HookRun(command, code, error, output, truncated=dropped > 0, timed_out=code is None or not closed)


def _read_into(fd: int, kept: bytearray) -> tuple[bool, int]:
    """Read one chunk of a hook's output into ``kept`` (its last :data:`HOOK_OUTPUT` bytes): whether the output
    ended, and how many earlier bytes were dropped. A stop signal (Ctrl-C, SIGTERM, SIGHUP) is held until the
    chunk read is kept: one that came between the read and the keeping would lose it."""
    import signal

    held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
    try:
        chunk = os.read(fd, 65536)
        kept.extend(chunk)
        dropped = max(0, len(kept) - HOOK_OUTPUT)
        del kept[:-HOOK_OUTPUT]
    except BlockingIOError:
        return False, 0
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    return not chunk, dropped


def _stop_holders(fd: int) -> list[int]:
    """Kill (SIGKILL) every process but this one that holds the hook's output pipe, whose read end is ``fd``: what
    the hook started that left its session (``setsid cmd &``, a daemon's double fork) is out of reach of the hook's
    process group, and would otherwise go on running after "it was stopped". Each round waits (at most a second) for
    the pipe's end of file, then looks again (a holder may have forked meanwhile). Returns the pids it could not
    kill (another user's: a setuid program). Looks in /proc: elsewhere, nothing is done."""
    import selectors
    import signal

    try:
        pipe = f"pipe:[{os.fstat(fd).st_ino}]"
    except OSError:
        return []
    refused: list[int] = []
    for _round in range(5):
        holders = [pid for pid in _processes() if pid != os.getpid() and _holds(pid, pipe)]
        refused = []
        for pid in holders:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            except PermissionError:
                refused.append(pid)
        if not holders or len(refused) == len(holders):
            return refused
        with selectors.DefaultSelector() as selector:  # the holders' end: their output's end of file
            selector.register(fd, selectors.EVENT_READ)
            while selector.select(1.0):
                try:
                    if not os.read(fd, 65536):
                        return []
                except BlockingIOError:
                    continue
                except OSError:
                    return []
    return refused


def _processes() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def _holds(pid: int, pipe: str) -> bool:
    """Whether process ``pid`` has the pipe ``pipe`` (``pipe:[inode]``) open."""
    folder = f"/proc/{pid}/fd"
    try:
        return any(os.readlink(f"{folder}/{fd}") == pipe for fd in os.listdir(folder))
    except OSError:  # gone, or another user's
        return False


def _pids_text(pids: list[int]) -> str:
    return ("pid " if len(pids) == 1 else "pids ") + ", ".join(map(str, pids))


def _drain(fd: int, kept: bytearray) -> int:
    """Read what is left in a stopped hook's output pipe into ``kept`` (without waiting: what its session wrote
    before it ended); keep the last :data:`HOOK_OUTPUT` bytes, and return how many earlier ones were dropped."""
    dropped = 0
    os.set_blocking(fd, False)
    while True:
        try:
            chunk = os.read(fd, 65536)
        except (BlockingIOError, InterruptedError, OSError):
            break
        if not chunk:
            break
        kept.extend(chunk)
        dropped += max(0, len(kept) - HOOK_OUTPUT)
        del kept[:-HOOK_OUTPUT]
    return dropped


def _stop(proc: subprocess.Popen, deadline: float) -> tuple[int | None, str]:
    """Stop a hook because the run is stopped: SIGTERM to its session, at most :data:`STOP_GRACE` seconds
    (nor past its own ``--exec-timeout``) to end, then SIGKILL to whatever is left of it. Its exit status
    (None if it had to be killed) and what happened, as the report says it."""
    import signal
    import time

    _kill_group(proc.pid, signal.SIGTERM)
    grace = max(0.0, min(STOP_GRACE, deadline - time.monotonic()))
    try:
        code = proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        code = None
    finally:  # also what it started that ignores SIGTERM, and on a second Ctrl-C
        _kill_group(proc.pid, signal.SIGKILL)
        proc.wait()
    if code is None:
        return None, f"it was still running {grace:g} s after SIGTERM, so it was killed"
    if code == -signal.SIGTERM:
        return code, "so it was stopped"
    return code, f"it ended ({'exit 0' if code == 0 else describe_status(code)}) when told to stop"


def describe_status(code: int) -> str:
    """``exit 3`` or ``killed by SIGKILL (signal 9)``: a hook's exit status (subprocess's) in words."""
    return f"killed by {signal_name(-code)} (signal {-code})" if code < 0 else f"exit {code}"


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15; ``signal 64`` for a number without a name here."""
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def kept_output(kept: bytearray, dropped: int) -> str:
    """The last bytes of a hook's output, ``kept``, as text; when ``dropped`` bytes came before them,
    from the first whole line on, after a line that says how much was not kept."""
    if not dropped:
        return kept.decode("utf-8", "replace")
    cut = kept.find(b"\n") + 1  # 0 (no line break at all): one long line, kept as it is
    if cut < len(kept):
        dropped += cut
        del kept[:cut]
    return f"[... {dropped:,} bytes of earlier output not kept]\n" + kept.decode("utf-8", "replace")


def run_hook_until_stopped(command: str, extra_env: dict[str, str], *, timeout: float = DEFAULT_HOOK_TIMEOUT
                           ) -> tuple[HookRun, int | None]:
    """:func:`run_hook`, and the stop signal (2 for Ctrl-C, 15 for SIGTERM, 1 for SIGHUP) that interrupted it, or
    None: a stop during a hook still lets the caller report what was renewed before it exits."""
    from certkit.errors import Terminated

    ended: list[tuple[int | None, str, str, bool]] = []
    try:
        return run_hook(command, extra_env, timeout=timeout, interrupted=ended), None
    except KeyboardInterrupt:
        signum, name = 2, "Ctrl-C"
    except Terminated as exc:
        signum, name = exc.signum, "SIGHUP" if exc.signum == 1 else "SIGTERM"
    code, what, output, truncated = ended[0] if ended else (None, "so it was stopped", "", False)
    # what it printed is kept, as when it ends by itself or times out: its last words matter most here
    return HookRun(command, code, f"interrupted ({name}), {what}", output, truncated=truncated), signum


def hook_base_environment() -> dict[str, str]:
    """certkit's environment without its secrets: passphrases, passwords and PINs (certkit's
    own and libpq's PGPASSWORD), and an inventory URL that holds a password."""
    def secret(name: str, value: str) -> bool:
        if _SECRET_ENV.fullmatch(name):
            return True
        if name == ENV_INVENTORY_URL:
            from certkit.db_postgres import secrets_in

            return bool(secrets_in(value))  # a password or any other secret parameter (sslpassword...)
        return False

    return {k: v for k, v in os.environ.items() if not secret(k, v)}


def _kill_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
