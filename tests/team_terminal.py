"""Run a command on a pseudo-terminal of its own, answering its prompts as a person would.

The child gets a new session whose controlling terminal is the pty (so a prompt that reads
/dev/tty, as getpass does, reads from here and never from the terminal running the tests).
"""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import termios
import time


def run_on_terminal(args: list[str], env: dict[str, str], answers: list[tuple[str, str]], *, cwd=None,
                    timeout: float = 120) -> tuple[int, str]:
    """Run ``args``; each time the output shows the next prompt fragment, type its answer.
    Returns the exit status and everything the terminal showed."""
    import pty

    master, slave = pty.openpty()

    def own_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd,
                            preexec_fn=own_terminal, close_fds=True)
    os.close(slave)
    shown, searched, todo = b"", 0, list(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                shown += data
            while todo and todo[0][0].encode() in shown[searched:]:
                searched = shown.index(todo[0][0].encode(), searched) + len(todo[0][0])
                os.write(master, todo.pop(0)[1].encode() + b"\n")
            if proc.poll() is not None and not ready:
                break
        else:
            proc.kill()
            raise AssertionError(f"{args} did not finish on its terminal:\n{shown.decode(errors='replace')}")
        code = proc.wait(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return code, shown.decode(errors="replace").replace("\r\n", "\n")
