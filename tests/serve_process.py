"""``certkit serve`` as a real subprocess for tests: started on a free port, its log collected,
stopped with a signal, its exit checked."""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from conftest import certkit_env

START_TIMEOUT = 60.0


def stopped_status(sig: int = signal.SIGTERM) -> int:
    """The exit status of serve or acme serve stopped cleanly by ``sig``: as of every certkit command a
    signal stops, 128 + its number (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP)."""
    return 128 + sig


class ServeProcess:
    """``python -m certkit serve --port 0 --json ARGS``; use as a context manager.

    ``info`` is the JSON object serve prints at start (url, port, ...);
    ``log`` collects stderr lines as they come.
    """

    def __init__(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        args = tuple(map(str, args))
        port = () if "--port" in args else ("--port", "0")  # an option is given once (certkit refuses twice)
        self._start(["serve", *port, "--json", *args], env=env or certkit_env(), cwd=cwd)

    def _start(self, args: list[str], *, env: dict[str, str], cwd: Path | None) -> None:
        """Run ``python -m certkit ARGS``, collect its output in threads, read the JSON it prints at start."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "certkit", *args],
            cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._stdout: queue.Queue[str | None] = queue.Queue()
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self.info = self._read_info()

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            with self._cond:
                self._lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            self._stdout.put(line)
        self._stdout.put(None)

    def _read_info(self) -> dict:
        text, deadline = "", time.monotonic() + START_TIMEOUT
        while True:
            try:
                line = self._stdout.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"certkit serve did not start: {text}\n{self.stderr}")
            text += line
            if line.rstrip() == "}":
                return json.loads(text)

    @property
    def url(self) -> str:
        return self.info["url"]

    @property
    def port(self) -> int:
        return self.info["port"]

    @property
    def stderr(self) -> str:
        with self._cond:
            return "\n".join(self._lines)

    def wait_for_log(self, fragment: str, timeout: float = 60.0, count: int = 1) -> list[str]:
        """The log lines containing ``fragment``, once there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [line for line in self._lines if fragment in line]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"no log line with {fragment!r} (x{count}) in:\n" + "\n".join(self._lines))
                self._cond.wait(min(left, 0.2))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"certkit serve ignored signal {sig}:\n{self.stderr}") from None
        self._stderr_reader.join(10)  # the whole log, up to the last line
        return self.proc.returncode

    def __enter__(self) -> "ServeProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def serving(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Iterator[ServeProcess]:
    """A :class:`ServeProcess` for a ``with`` block or a fixture; at the end it is stopped, and must have
    stopped cleanly (by SIGTERM: exit status 143), no traceback."""
    srv = ServeProcess(*args, env=env, cwd=cwd)
    try:
        yield srv
    finally:
        code = srv.stop()
    assert code == stopped_status(signal.SIGTERM), srv.stderr
    assert "Traceback" not in srv.stderr, srv.stderr
