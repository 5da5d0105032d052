"""Helpers of the fleet tests: running certkit on a pseudo-terminal, reading each output format back,
and a CA whose certificates are already close to expiry."""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import tarfile
import tempfile
import termios
import time
from pathlib import Path

from cryptography import x509

from conftest import PASSPHRASE


def run_in_pty(args, *, env: dict, cwd: Path | None = None, rows: int = 24, cols: int = 80,
               stdout_tty: bool = True, timeout: float = 60) -> tuple[int, str, str]:
    """Run ``python -m certkit ARGS`` with stdin, stderr (and stdout, unless ``stdout_tty`` is False) on a
    pseudo-terminal of ``rows`` x ``cols``; return (exit status, what the terminal showed, stdout if
    it was not the terminal)."""
    env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}  # the terminal's size, not the shell's
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    out_file = None if stdout_tty else tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "certkit", *map(str, args)], stdin=slave,
                            stdout=slave if stdout_tty else out_file, stderr=slave, env=env, cwd=cwd,
                            start_new_session=True)
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer of the terminal is gone
                    break
                if not data:
                    break
                shown += data
            elif proc.poll() is not None:
                continue  # drain what is left until EIO
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"certkit {args} did not finish within {timeout} s:\n{shown.decode()}")
        code = proc.wait(timeout=timeout)
    finally:
        os.close(master)
    stdout = ""
    if out_file is not None:
        out_file.seek(0)
        stdout = out_file.read().decode()
        out_file.close()
    return code, shown.decode(errors="replace").replace("\r\n", "\n"), stdout


# --- reading the outputs back -----------------------------------------------------------
def jsonl_records(path_or_text) -> list[dict]:
    text = path_or_text.read_text() if isinstance(path_or_text, Path) else path_or_text
    return [json.loads(line) for line in text.splitlines()]


def secrets(text: str) -> list[dict]:
    import yaml

    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def secret_files(secret: dict) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


def tar_listing(path: Path) -> dict[str, tuple[int, bytes | None]]:
    """member name -> (mode, content of a file)."""
    found = {}
    with tarfile.open(path) as archive:
        for member in archive:
            data = archive.extractfile(member).read() if member.isfile() else None
            found[member.name] = (member.mode, data)
    return found


def write_pems(folder: Path, **pems: bytes | str) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, data in pems.items():
        path = folder / f"{name}.pem"
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        path.chmod(0o600)
        paths[name] = path
    return paths


def served_serial(port: int, ca: Path, name: str = "localhost") -> int:
    """The serial of the certificate a TLS server on 127.0.0.1:``port`` presents for ``name``."""
    import socket
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def until_changed(read, before, timeout: float = 60):
    """What ``read()`` returns once it is no longer ``before``; a connection refused or reset while the
    server reloads (an OSError, ssl's errors included) is "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            now = read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            now = before
        if now != before or time.monotonic() > deadline:
            return now
        time.sleep(0.1)


def load_pem(data: bytes | str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(data.encode() if isinstance(data, str) else data)


# --- a CA with certificates close to expiry ---------------------------------------------
def backdated_ca(path: Path, days_ago: int = 60):
    """A root CA (in ``path``) whose validity began ``days_ago`` days ago, unlocked: it can issue
    certificates that started in the past and are about to expire."""
    from certkit.ca import CA, _random_serial
    from certkit.keys import generate_key
    from certkit.profiles import PROFILES, build_certificate, leaf_subject
    from certkit.store import CADirectory

    key = generate_key()
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=days_ago)
    name = leaf_subject("Fleet test root")
    cert = build_certificate(PROFILES["root-ca"], subject=name, public_key=key.public_key(), issuer_name=name,
                             issuer_key=key, issuer_ski=None, serial=_random_serial(), not_before=start,
                             not_after=start + dt.timedelta(days=3650))
    CADirectory(path).save_new(CA(cert, key), PASSPHRASE.encode())
    return CADirectory(path).load(PASSPHRASE.encode())


def bundle(ca, folder: Path, *names: str, kind: str = "server", days: int = 40, age: int = 0, emails=()):
    """Issue a certificate of ``days`` days that began ``age`` days ago into the bundle folder ``folder``."""
    from certkit.issuing import FolderTarget, client_request, deliver, server_request

    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=age)
    request = client_request(names[0], days=days, not_before=start, emails=emails) if kind == "client" else \
        server_request(names, days=days, not_before=start)
    return deliver(ca, request, FolderTarget(folder)).issued
