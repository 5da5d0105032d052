"""What a test started outside its own process (a PostgreSQL server, a folder of secrets) goes when the
test process goes, however it goes: a SIGTERM (``timeout``, a cancelled CI job) runs no finalizer and
no ``atexit`` handler. A detached watchdog waits for the process that started it to end, then stops the
server and removes the folders (nothing, when they were cleaned up as usual)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_WATCH = """
import os, shutil, subprocess, sys, time
owner, pg_ctl, data, uid, gid, *folders = sys.argv[1:]
while True:
    try:
        os.kill(int(owner), 0)
    except ProcessLookupError:
        break
    except PermissionError:
        pass
    time.sleep(1)
if pg_ctl and os.path.exists(os.path.join(data, "postmaster.pid")):
    kw = {"user": int(uid), "group": int(gid), "extra_groups": []} if int(uid) >= 0 else {}
    try:
        subprocess.run([pg_ctl, "-D", data, "-m", "immediate", "-w", "-t", "30", "stop"], capture_output=True,
                       timeout=60, **kw)
    except Exception:
        pass
for folder in folders:
    shutil.rmtree(folder, ignore_errors=True)
"""


def watch_over(folders: list[Path], *, pg_ctl: Path | None = None, data: Path | None = None,
               uid: int = -1, gid: int = -1) -> None:
    """Stop the PostgreSQL cluster in ``data`` (with ``pg_ctl``, as ``uid``) and remove ``folders`` once
    this process has ended."""
    subprocess.Popen([sys.executable, "-c", _WATCH, str(os.getpid()), str(pg_ctl or ""), str(data or ""),
                      str(uid), str(gid), *map(str, folders)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
