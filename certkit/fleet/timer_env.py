"""The environment a timer or crontab line runs certkit with (for :mod:`certkit.fleet.timer`): the program
(this interpreter, and the PYTHONPATH that finds this copy), the variables that choose the inventory and the
token carried into it (paths made absolute), ``PATH`` as it was, and a trial run in that environment, so that
what would fail every night is refused when the timer is installed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from certkit.constants import ENV_INVENTORY_URL
from certkit.errors import CertkitError
from certkit.paths import absolute
from certkit.text import is_utf8, shown

# What chooses the inventory and the token, and how they are reached (every connection variable libpq reads,
# PQconndefaults' and the service file's, but PGPASSWORD, a secret), carried into the timer when set; the paths
# among them made absolute (cron starts in the home folder, systemd in /). Those that only demand more of the
# server ($PGCHANNELBINDING, $PGREQUIREAUTH, $PGSSLMINPROTOCOLVERSION, $PGSSLCERTMODE, $PGREQUIREPEER...) were
# left out: the timer connected with less than this shell insisted on (no channel binding, a cleartext password).
# OpenSSL's $SSL_CERT_FILE and $SSL_CERT_DIR (the CAs trusted by sslrootcert=system and by a hook's curl) too:
# without them the timer verified its connections against other CAs than this shell, and failed every night.
CARRIED_PATHS = ("PGPASSFILE", "SOFTHSM2_CONF", "PGSERVICEFILE", "PGSYSCONFDIR", "PGSSLCERT", "PGSSLKEY",
                 "PGSSLROOTCERT", "PGSSLCRL", "PGSSLCRLDIR", "SSL_CERT_FILE", "SSL_CERT_DIR")
CARRIED_ENVIRONMENT = (ENV_INVENTORY_URL, *CARRIED_PATHS, "PGSERVICE", "PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER",
                       "PGDATABASE", "PGSSLMODE", "PGREQUIRESSL", "PGGSSENCMODE", "PGTARGETSESSIONATTRS",
                       "PGCONNECT_TIMEOUT", "PGCLIENTENCODING", "PGOPTIONS", "PGCHANNELBINDING", "PGREQUIREAUTH",
                       "PGSSLNEGOTIATION", "PGSSLCOMPRESSION", "PGSSLCERTMODE", "PGSSLSNI", "PGREQUIREPEER",
                       "PGMINPROTOCOLVERSION", "PGMAXPROTOCOLVERSION", "PGSSLMINPROTOCOLVERSION",
                       "PGSSLMAXPROTOCOLVERSION", "PGKRBSRVNAME", "PGGSSLIB", "PGGSSDELEGATION", "PGLOADBALANCEHOSTS",
                       "PGAPPNAME", "PGDATESTYLE", "PGTZ", "PGGEQO")


def program() -> tuple[list[str], dict[str, str]]:
    """How a timer or cron runs this certkit: this interpreter with ``-m certkit``, the PYTHONPATH
    that finds this copy when it is not installed where the interpreter looks, and the variables of
    :data:`CARRIED_ENVIRONMENT` that are set."""
    import certkit

    argv = [sys.executable, "-m", "certkit"]
    home = str(Path(certkit.__file__).resolve().parent.parent)
    probe = subprocess.run([sys.executable, "-I", "-c", "import certkit, os; print(os.path.dirname("
                            "os.path.dirname(os.path.realpath(certkit.__file__))))"],
                           capture_output=True, text=True, env={"PATH": os.environ.get("PATH", "")})
    env = {} if probe.returncode == 0 and probe.stdout.strip() == home else {"PYTHONPATH": home}
    # What decides which inventory and token this CA uses, set for this command: the timer must
    # renew against the same ones. None is a secret (a URL with a password is refused everywhere).
    env |= {name: _carried(name, os.environ[name]) for name in CARRIED_ENVIRONMENT if os.environ.get(name)}
    for name, value in env.items():
        if not is_utf8(value):  # a unit file and a crontab are UTF-8 text
            raise CertkitError(f"${name} is '{shown(value)}', which is not UTF-8 text; a timer or crontab line "
                               "cannot carry it. Set it to UTF-8 text (rename a folder it names).")
    return argv, env


def refuse_hook_password(option: str, hook: str | None) -> None:
    """A timer's hook holding a URL with a password (curl https://admin:PW@host/reload): the unit, which every user
    may read (systemctl show prints it), or the crontab line would carry the secret, and installing show it."""
    from certkit.probe_http import hidden

    if hook and re.search(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/@]*:[^\s/@]*@", hook):
        raise CertkitError(f"{option} '{shown(hidden(hook))}' holds a password in a URL, which the timer would carry "
                           "in its unit or crontab line, where others may read it: put it in a file only you can "
                           "read (curl --netrc-file FILE) and name that file in the hook.")


def _carried(name: str, value: str) -> str:
    if name == "SSL_CERT_DIR":  # OpenSSL reads a list of folders, separated as in PATH
        return os.pathsep.join(absolute(os.path.expanduser(d)) for d in value.split(os.pathsep) if d)
    if name in CARRIED_PATHS and value != "system":  # PGSSLROOTCERT=system: the system's CAs, not a file
        return absolute(os.path.expanduser(value))
    if name == ENV_INVENTORY_URL and not value.startswith(("postgresql://", "postgres://")):  # an SQLite file
        prefix = "sqlite:///" if value.startswith("sqlite:///") else ""
        return prefix + absolute(os.path.expanduser(value.removeprefix(prefix)))
    return value


def check_environment(renew_argv: Sequence[str], env: dict[str, str]) -> None:
    """Open the CA that ``renew_argv`` renews from, reach its inventory and unlock a token key with
    its ``--passphrase-file``, in a process with the environment the timer gives it (``env``, this
    user's HOME and PATH, started in /): what works only through this shell's other variables (a
    password in $PGPASSWORD, a relative path) is refused now, not every night. A CA whose inventory
    is a file and whose key is ca-key.pem depends on none of them."""
    from certkit.store import CADirectory

    options = dict(zip(renew_argv[:-1], renew_argv[1:], strict=True))  # the last --ca-dir: _ca_arguments's
    if "--ca-dir" not in options:
        return
    store = CADirectory(options["--ca-dir"])
    if store.key_uri is None and not str(store.inventory_location).startswith(("postgresql:", "postgres:")):
        return
    given = {k: os.environ[k] for k in ("HOME", "PATH", "LANG", "LC_ALL") if os.environ.get(k)}
    try:
        proc = subprocess.run([sys.executable, "-c", "import sys; from certkit.fleet.timer_env import _probe; "
                               "sys.exit(_probe(sys.argv[1:]))", options["--ca-dir"],
                               options.get("--passphrase-file", "")], env=given | env, cwd="/",
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CertkitError(f"The timer's environment could not be tried: {exc}.") from None
    if proc.returncode == 0:
        return
    said = (proc.stderr.strip().splitlines() or ["it failed"])[-1].removeprefix("Error: ").rstrip(".")
    if os.environ.get("PGPASSWORD") and "needs a password" in said:
        raise CertkitError("The inventory's password is only in $PGPASSWORD, which is never written into a timer or "
                           "crontab (it is a secret): put it in ~/.pgpass, or in a file only you can read named by "
                           "$PGPASSFILE, and install the timer again.")
    carried = ", ".join(f"${k}" for k in env if k != "PYTHONPATH") or "none"
    raise CertkitError(f"The timer would fail in the environment it runs with (this user's HOME and PATH, and "
                       f"{carried}): {said}. Set what it needs in this shell (absolute paths), and install it again.")


def _probe(args: list[str]) -> int:
    """In the timer's environment (:func:`check_environment`): the CA opened, its inventory read, a
    token key unlocked with the passphrase file; 1 and one line on standard error if any fails."""
    from certkit.constants import MAX_SECRET_FILE_BYTES
    from certkit.files import read_limited
    from certkit.store import CADirectory

    def secret() -> bytes:  # as the command line reads a secret file: one trailing newline dropped
        text = read_limited(Path(passphrase_file), MAX_SECRET_FILE_BYTES, what="secret file")
        if text.startswith(b"\xef\xbb\xbf"):  # never sent to the token: a PIN try it would use up
            raise CertkitError(f"The PIN file {passphrase_file} starts with a byte-order mark (U+FEFF), which is "
                               "no part of a PIN; remove it.")
        return text[:-2] if text.endswith(b"\r\n") else text[:-1] if text.endswith(b"\n") else text

    ca_dir, passphrase_file = args
    try:
        store = CADirectory(ca_dir)
        ca = store.open()
        store.inventory.count()
        if passphrase_file and store.key_uri is not None:
            ca.unlock(secret)
    except Exception as exc:  # (click's exceptions are not CertkitErrors: each said in its line)
        text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        print(text.splitlines()[0] if text.strip() else type(exc).__name__, file=sys.stderr)
        return 1
    return 0


def cron_path() -> dict[str, str]:
    """``PATH`` as this command has it, for the crontab line (as certbot's cron file sets one): cron runs a
    job with ``/usr/bin:/bin``, where neither ``nginx`` nor ``pg_ctl`` (in ``/usr/sbin``) nor ``certkit``
    may be, so hooks would not find them. Only absolute folders (cron starts in the home folder), in UTF-8 (a
    unit file and a crontab are UTF-8 text)."""
    folders = [d for d in os.environ.get("PATH", "").split(os.pathsep) if os.path.isabs(d) and is_utf8(d)]
    return {"PATH": os.pathsep.join(dict.fromkeys(folders))} if folders else {}
