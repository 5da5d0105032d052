"""Running a trust store's own tools (``update-ca-certificates``, ``certutil``, ``keytool``) and
reading the PEM certificates they hold, for the store modules of :mod:`certkit.trust`.

A tool runs detached from any terminal, in the C locale (certkit reads its
messages), with a time limit; a failed run becomes a :class:`TrustError`
quoting the tool's last lines. PEM certificates are fingerprinted without
parsing them, so a damaged one in a store does not hide the others.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import shlex
import shutil
import subprocess
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from certkit.text import shown
from certkit.trust.store import Found, TrustError

TOOL_TIMEOUT = 180  # seconds; Debian's refresh runs a JVM to update Java's copy of the store
# sbin is not on every user's PATH, but the refresh tools live there.
_SBIN = os.pathsep.join(["/usr/local/sbin", "/usr/sbin", "/sbin"])
CERTKIT_NAME = re.compile(r"certkit-([0-9a-f]{16})(?![0-9a-f])")
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)


def _tool_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    base = dict(os.environ if env is None else env)
    base["LC_ALL"] = "C"  # messages certkit reads, in English
    return base


def run_tool(argv: Sequence[str], *, input: bytes | None = None, env: Mapping[str, str] | None = None,
             timeout: float = TOOL_TIMEOUT) -> subprocess.CompletedProcess:
    """Run a store's tool detached from any terminal (it must never sit waiting at a prompt)."""
    try:
        return subprocess.run(list(argv), input=input, stdin=None if input is not None else subprocess.DEVNULL,
                              capture_output=True, timeout=timeout, env=_tool_env(env), start_new_session=True)
    except FileNotFoundError:
        raise TrustError(f"{argv[0]} is not installed.") from None
    except subprocess.TimeoutExpired:
        raise TrustError(f"{shlex.join(argv[:3])} did not finish within {timeout:.0f} s.") from None


def tool_failure(proc: subprocess.CompletedProcess, what: str) -> TrustError:
    if proc.returncode < 0:  # stopped by a signal (the OOM killer, a time limit): what it printed is no reason
        import signal

        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        return TrustError(f"{what} was stopped by {name} before it finished")
    text = (proc.stderr or b"").decode(errors="replace") + (proc.stdout or b"").decode(errors="replace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    detail = "; ".join(lines[-3:]) if lines else "no message"
    return TrustError(f"{what} failed (exit status {proc.returncode}): {shown(detail)}")


def succeeded(proc: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    """``proc``, when the tool exited 0; otherwise the :class:`TrustError` naming ``what`` (the command)."""
    if proc.returncode != 0:
        raise tool_failure(proc, what)
    return proc


def mounted_on_its_own(path: Path) -> bool:
    """Whether the file ``path`` is a mount point (bind-mounted on its own: a container's volume, a Kubernetes
    ConfigMap's subPath), which no rename can replace (EBUSY): what a store's tool writes beside it and renames stays
    there, and the file as it was."""
    try:
        real = os.path.realpath(path)
        with open("/proc/self/mountinfo", "rb") as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    # The fifth field, with space, tab, newline and backslash written as octal escapes (\040...).
    points = {re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), line.split()[4])
              for line in lines if len(line.split()) > 4}
    return os.fsencode(real) in points


def mount_point_advice(path: Path) -> str:
    """What to do about a store file that is a mount point (:func:`mounted_on_its_own`)."""
    return (f"{path} is a mount point (a file mounted on its own, as a container's volume or a ConfigMap is), which "
            "cannot be replaced: it was left as it was. Change the file it is mounted from (outside this container), "
            "or mount its folder rather than the file, and run again")


def find_tool(tool: str, env: Mapping[str, str] | None = None, *, sbin: bool = False) -> str | None:
    path = (os.environ if env is None else env).get("PATH", os.defpath)
    return shutil.which(tool, path=path + os.pathsep + _SBIN if sbin else path)


def dangling_link(path: Path, *, above: bool = True) -> tuple[Path, str] | None:
    """The first of ``path`` and (with ``above``) the folders above it that is a link to nothing (its target does
    not exist: a dotfiles folder not there yet, a package that never made the file), with what it names; or None."""
    for place in [path, *(path.parents if above else [])]:
        try:
            if place.is_symlink() and not place.exists():
                return place, os.readlink(place)
        except OSError:
            return None
    return None


def pem_ders(data: bytes) -> list[bytes]:
    """The DER of every PEM certificate in ``data``, without parsing the certificates."""
    found = []
    for block in _PEM_BLOCK.findall(data):
        try:
            found.append(base64.b64decode(b"".join(block.split()), validate=True))
        except (binascii.Error, ValueError):
            continue
    return found


def pem_fingerprints(data: bytes) -> list[str]:
    """SHA-256 fingerprints of every PEM certificate in ``data``, without parsing the certificates."""
    import hashlib

    return [hashlib.sha256(der).hexdigest() for der in pem_ders(data)]


def carries_fingerprint(name: str, fingerprints: Sequence[str]) -> bool:
    """Whether ``name`` (of certkit's form, perhaps behind a prefix such as Debian's ``debian:``) carries the
    fingerprint of the first certificate of its entry: certkit names each copy after its certificate."""
    match = CERTKIT_NAME.search(name)
    return match is not None and bool(fingerprints) and fingerprints[0].startswith(match[1])


def pem_blocks(data: bytes) -> list[bytes]:
    """Each PEM certificate in ``data``, as its own block."""
    return [m.group(0) for m in _PEM_BLOCK.finditer(data) if pem_fingerprints(m.group(0))]


def key_id(cert) -> str:
    """SHA-256 of a certificate's public key (its SubjectPublicKeyInfo): the same in each certificate of one key."""
    import hashlib

    from cryptography.hazmat.primitives import serialization

    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def _key_or_none(cert) -> str | None:
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        return key_id(cert)
    except (ValueError, UnsupportedAlgorithm):  # a key type cryptography cannot read: compared by fingerprint only
        return None


def describe_pem(name: str, data: bytes, *, ours: bool = True) -> Found:
    from cryptography import x509

    fingerprints = pem_fingerprints(data)
    if not fingerprints:
        return Found(name, "", "(no certificate in it)", None, ours)
    try:
        with warnings.catch_warnings():  # a store's own CA with a negative serial: cryptography warns, it is no error
            warnings.simplefilter("ignore")
            cert = x509.load_pem_x509_certificate(data)
            key = _key_or_none(cert)
        return Found(name, fingerprints[0], cert.subject.rfc4514_string(), cert.not_valid_after_utc, ours,
                     key=key or "")
    except ValueError:
        return Found(name, fingerprints[0], "(unreadable certificate)", None, ours)
