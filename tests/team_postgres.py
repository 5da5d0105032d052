"""A real PostgreSQL server for the tests: Debian's ``initdb`` and ``pg_ctl`` into a temporary folder.

Started once per test session (per xdist worker: each worker has its own server,
on its own loopback port) and only when a test asks for it; each test gets a
fresh database. The server runs as an unprivileged user (initdb refuses root:
under root the ``postgres`` system user the Debian package creates, else
``nobody``), listens on 127.0.0.1 and on a socket in its own folder, and asks for
a password (scram-sha-256), which clients find in a ``PGPASSFILE`` as certkit's
users would. ``fsync`` is off for the tests (they kill processes, never the
machine, and a process crash loses nothing committed even so); the benchmark
(benchmarks/team_bench.py) starts it with ``durable=True``, as a server runs.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

USER = "certkit"  # the database role certkit connects as
ENV_BINDIR = "CERTKIT_TEST_PG_BINDIR"


def bindir() -> Path | None:
    """Where initdb and pg_ctl are: Debian keeps them out of PATH, in /usr/lib/postgresql/N/bin."""
    if os.environ.get(ENV_BINDIR):
        return Path(os.environ[ENV_BINDIR])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
                   if p.split("/")[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' user exists to run initdb")


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder; :meth:`stop` removes it all."""

    def __init__(self) -> None:
        self.bin = bindir()
        self.base: Path | None = None
        self.port = 0
        self.password = secrets.token_urlsafe(18)
        self.passfile: Path | None = None
        self._client_dir: Path | None = None
        self._count = 0

    def _pg(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        user = _run_as()
        extra = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}
        proc = subprocess.run([str(self.bin / args[0]), *args[1:]], capture_output=True, text=True, env=env,
                              cwd=self.base, timeout=timeout, **extra)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n"
                               + self.log_tail())
        return proc

    def start(self, *, durable: bool = False) -> PostgresServer:
        self.base = Path(tempfile.mkdtemp(prefix="certkit-pg-"))
        user = _run_as()
        pwfile = self.base / "pw"
        pwfile.write_text(self.password + "\n")
        if user:
            os.chown(self.base, user.pw_uid, user.pw_gid)
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        os.chmod(self.base, 0o700)
        os.chmod(pwfile, 0o600)
        atexit.register(self.stop)  # also when the session dies before its finalizers run
        self._pg("initdb", "-D", str(self.base / "data"), "-U", USER, "-A", "scram-sha-256",
                 f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
        pwfile.unlink()
        self.port = _free_port()
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.base} -c max_connections=200 "
                   "-c shared_buffers=32MB" + ("" if durable else " -c fsync=off -c full_page_writes=off"))
        self._pg("pg_ctl", "-D", str(self.base / "data"), "-l", str(self.base / "log"), "-w", "-t", "60",
                 "-o", options, "start")
        # The clients' password file: theirs (0600, this user's), where libpq is told to look.
        self._client_dir = Path(tempfile.mkdtemp(prefix="certkit-pgpass-"))
        from leftover_reaper import watch_over

        # atexit does not run on SIGTERM: the server and its folders must not outlive this process anyway
        watch_over([self.base, self._client_dir], pg_ctl=self.bin / "pg_ctl", data=self.base / "data",
                   uid=user.pw_uid if user else -1, gid=user.pw_gid if user else -1)
        self.passfile = self._client_dir / "pgpass"
        self.passfile.write_text(f"127.0.0.1:{self.port}:*:{USER}:{self.password}\n")
        os.chmod(self.passfile, 0o600)
        return self

    def url(self, database: str) -> str:
        """The URL certkit stores: user, host, port, database; never the password."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def env(self) -> dict[str, str]:
        return {"PGPASSFILE": str(self.passfile)}

    def connect(self, database: str = "postgres"):
        import psycopg

        return psycopg.connect(self.url(database), password=self.password, autocommit=True)

    def reload(self, timeout: float = 60.0) -> None:
        """pg_reload_conf(), then wait until the postmaster has read its files again: the call only signals it,
        and on a loaded machine a session opened just after still has the old settings and pg_hba.conf. A new
        session's pg_conf_load_time() is the postmaster's, which sets it as it reloads, in the one pass that
        also reads pg_hba.conf and the TLS files (it forks no session in between)."""
        import time

        with self.connect() as conn:
            before = conn.execute("SELECT pg_conf_load_time()").fetchone()[0]
            conn.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + timeout
        while True:
            with self.connect() as conn:
                if conn.execute("SELECT pg_conf_load_time()").fetchone()[0] > before:
                    return
            assert time.monotonic() < deadline, f"the postmaster did not reload within {timeout:g} s: {self.log_tail()}"
            time.sleep(0.05)

    def create_database(self, prefix: str = "t") -> str:
        """A fresh, empty database; returns its URL."""
        self._count += 1
        name = f"{prefix}_{os.getpid()}_{self._count}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.base / "log").read_text(errors="replace").splitlines()[-lines:])
        except (OSError, TypeError):
            return ""

    def stop(self) -> None:
        if self.base is None:
            return
        base, self.base = self.base, None
        if (base / "data" / "postmaster.pid").exists():
            self.base = base
            try:
                self._pg("pg_ctl", "-D", str(base / "data"), "-m", "immediate", "-w", "-t", "30", "stop", timeout=60)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
            self.base = None
        shutil.rmtree(base, ignore_errors=True)
        if self._client_dir is not None:
            shutil.rmtree(self._client_dir, ignore_errors=True)


def _free_port() -> int:
    """A free loopback port: the tests' own (conftest.free_port, below the ephemeral range, so that no
    outgoing connection takes it before the server binds it), or the kernel's for a benchmark."""
    try:
        from conftest import free_port
    except ImportError:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    return free_port()
