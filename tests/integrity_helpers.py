"""What the integrity tests share: the inventory read as it is, the bundles found on disk, the
two compared; processes paused at a pause point (certkit.testhooks) and interrupted; small tmpfs
mounts for full disks and mount points.

Written against the command line, the database file and the files on disk only (no certkit
import), so the same tests can be run against an older checkout of certkit.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conftest import run_certkit

BUNDLE_FILES = ("cert.pem", "privkey.pem", "fullchain.pem", "chain.pem", "ca.pem", "bundle.p12")


def serial_hex(cert: x509.Certificate) -> str:
    text = format(cert.serial_number, "X")
    return "0" + text if len(text) % 2 else text


def spki(obj) -> bytes:
    return obj.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


# --- the inventory, read as it is -------------------------------------------------------
def db_rows(ca_dir: Path) -> list[dict]:
    """Every row of the inventory, read-only (nothing settled or migrated)."""
    conn = sqlite3.connect(f"file:{ca_dir / 'inventory.sqlite3'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM certificates")]
    finally:
        conn.close()


def listed(env: dict, *args: str, cwd: Path | None = None) -> list[dict]:
    """``certkit list --json`` (which settles the rows of dead writers first)."""
    proc = run_certkit("list", "--json", *args, env=env, cwd=cwd)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, (proc.stdout, proc.stderr)
    return json.loads(proc.stdout)["certificates"]


# --- bundles on disk --------------------------------------------------------------------
@dataclass
class Bundle:
    folder: Path
    complete: bool
    serial: str | None


def read_bundle(folder: Path) -> Bundle:
    """A bundle folder as a server would read it: cert.pem, fullchain.pem starting with it, and
    privkey.pem holding its key (a folder signed from a CSR has no key: not used here)."""
    try:
        cert_pem = (folder / "cert.pem").read_bytes()
        cert = x509.load_pem_x509_certificate(cert_pem)
    except (OSError, ValueError):
        return Bundle(folder, False, None)
    try:
        key = serialization.load_pem_private_key((folder / "privkey.pem").read_bytes(), None)
        complete = ((folder / "fullchain.pem").read_bytes().startswith(cert_pem) and spki(key) == spki(cert)
                    and (folder / "ca.pem").is_file())
    except (OSError, ValueError, TypeError):
        complete = False
    return Bundle(folder, complete, serial_hex(cert))


def bundles_under(*roots: Path) -> list[Bundle]:
    """Every folder below ``roots`` that holds any bundle file, read as a bundle."""
    found = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            if any(name in BUNDLE_FILES for name in filenames):
                found.append(read_bundle(Path(dirpath)))
    return found


def temporaries_under(*roots: Path) -> list[Path]:
    """What certkit writes first and renames later (``*.certkit-tmp``, journals): none may stay."""
    return [p for root in roots for p in root.rglob("*") if "certkit-tmp" in p.name]


def assert_inventory_matches_disk(env: dict, ca_dir: Path, *roots: Path) -> list[dict]:
    """``certkit list --json`` lists as valid exactly the complete bundles on disk; every row is
    settled (no pending), abandoned rows have no bundle; no half bundle and no temporary file is
    left; ``certkit check`` passes. Returns the listed rows."""
    rows = listed(env)
    leaves = [r for r in rows if r["kind"] != "ca"]
    assert not [r for r in leaves if r["status"] == "pending"], leaves
    bundles = bundles_under(*roots)
    assert all(b.complete for b in bundles), [b for b in bundles if not b.complete]
    on_disk = {b.serial: b.folder for b in bundles}
    current = {r["serial"]: r for r in leaves if r["status"] == "valid" and not r.get("renewed_by")}
    assert set(current) == set(on_disk), (sorted(current), on_disk)
    for serial, row in current.items():  # each valid row names the folder that holds it
        assert Path(row["folder"]).resolve() == on_disk[serial].resolve(), (row, on_disk[serial])
    everything = db_rows(ca_dir)
    assert not [r for r in everything if r["status"] == "pending"]
    abandoned = {r["serial"] for r in everything if r["status"] == "abandoned"}
    assert not abandoned & set(on_disk), abandoned & set(on_disk)
    assert not temporaries_under(*roots), temporaries_under(*roots)
    check = run_certkit("check", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    return rows


# --- processes paused and interrupted ------------------------------------------------------
def descendants(pid: int) -> set[int]:
    """Every living process below ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            parents[int(entry)] = int(stat[stat.rfind(b")") + 2:].split()[1])
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:].split()[0] not in (b"Z", b"X")  # a zombie writes nothing


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    paused_pid: int
    family: set[int]  # the worker processes seen while paused


def start_paused(args: list, env: dict, cwd: Path, point: str, marker: Path, *,
                 nohup: bool = False) -> subprocess.Popen:
    """Start ``certkit ARGS`` in its own process group (with SIGHUP ignored, as ``nohup`` starts
    it, if ``nohup``) and wait until one of its processes reaches ``point``."""
    env = dict(env, CERTKIT_TEST_PAUSE_AT=point, CERTKIT_TEST_PAUSE_FILE=str(marker))
    ignore = (lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN)) if nohup else None
    proc = subprocess.Popen([sys.executable, "-m", "certkit", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=ignore)
    deadline = time.monotonic() + 60
    while not marker.exists() or not marker.read_text():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"certkit {args} exited {proc.returncode} before {point}:\n{out}\n{err}")
        assert time.monotonic() < deadline, f"never reached {point}"
        time.sleep(0.01)
    return proc


def interrupt(proc: subprocess.Popen, signum: int, marker: Path, timeout: float = 60) -> Outcome:
    """Send ``signum`` as a user would (Ctrl-C, and a hangup of the terminal or ssh session, to the
    whole foreground process group; kill to the command's own process), release every paused
    process, and wait until the command and all its processes are gone."""
    paused_pid = int(marker.read_text())
    family = descendants(proc.pid)
    if signum in (signal.SIGINT, signal.SIGHUP):
        os.killpg(proc.pid, signum)
    else:
        os.kill(proc.pid, signum)
    if signum == signal.SIGKILL:
        # Its workers get their parent-death signal as it exits: release them only after that,
        # as a real kill at this point would.
        proc.wait(timeout)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None or any(alive(p) for p in family):
            assert time.monotonic() < deadline, f"still running: {[p for p in family if alive(p)]}"
            if marker.exists():  # a paused process goes on (a held-off signal lands after its step)
                marker.unlink()
            time.sleep(0.01)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in family:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    return Outcome(proc.returncode, out, err, paused_pid, family)


# --- file systems -----------------------------------------------------------------------
def signalled_once_started(args: list, env: dict, started: Path, signum: int) -> tuple[int, str, str]:
    """Run certkit with ``args``, send it ``signum`` once ``started`` exists (a hook's marker), and return its
    exit status, standard output and standard error; killed if it outlives the test."""
    proc = subprocess.Popen([sys.executable, "-m", "certkit", *map(str, args)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=45)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


@contextmanager
def tmpfs(path: Path, *options: str) -> Iterator[Path]:
    """A small tmpfs mounted at ``path`` (root only), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options or ("size=1m",)), "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {proc.stderr.strip()}")
    device = os.stat(path).st_dev
    try:
        yield path
    finally:
        # Wherever the mount is now: code that moves the folder holding it moves the mount too.
        for where in mounts_of(device) or [str(path)]:
            subprocess.run(["umount", "-l", where], check=False)


def mounts_of(device: int) -> list[str]:
    """The mount points of the file system ``device`` (from /proc/self/mountinfo)."""
    wanted = f"{os.major(device)}:{os.minor(device)}"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[2] == wanted:
                found.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4]))
    return found


def fill(path: Path, leave: int) -> Path:
    """Fill the file system at ``path`` until fewer than ``leave`` bytes remain; return the filler."""
    filler = path / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                st = os.statvfs(path)
                if st.f_bavail * st.f_frsize < leave + 4096:
                    break
                f.write(b"\0" * 4096)
                f.flush()
        except OSError:
            pass
    return filler


def is_mount(path: Path) -> bool:
    return os.path.ismount(path)


def make_schema_one(ca_dir: Path) -> None:
    """The inventory as certkit's first schema had it (no folder, sink, writer or keyed column)."""
    columns = ("serial, kind, subject, names, not_before, not_after, fingerprint_sha256, der, status, revoked_at,"
               " revocation_reason, renewed_from, issued_at")
    db = sqlite3.connect(ca_dir / "inventory.sqlite3")
    with db:
        db.executescript(f"""
            CREATE TABLE v1 (serial TEXT PRIMARY KEY, kind TEXT NOT NULL, subject TEXT NOT NULL, names TEXT NOT NULL,
                not_before TEXT NOT NULL, not_after TEXT NOT NULL, fingerprint_sha256 TEXT NOT NULL, der BLOB NOT NULL,
                status TEXT NOT NULL DEFAULT 'valid', revoked_at TEXT, revocation_reason TEXT, renewed_from TEXT,
                issued_at TEXT NOT NULL);
            INSERT INTO v1 SELECT {columns} FROM certificates;
            DROP TABLE certificates;
            DROP TABLE meta;
            ALTER TABLE v1 RENAME TO certificates;
            CREATE INDEX certificates_not_after ON certificates(not_after);
            PRAGMA user_version = 1;
        """)
    db.close()
