"""The NSS database certkit makes for a browser's trust (``trust install --nss``): made only where there is none,
never over a part of one, and taken out again only as far as this run made it."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from certkit.text import shown
from certkit.trust.store import TrustError
from certkit.trust.tools import pem_fingerprints

# Left in an NSS database folder that trust install created (empty, for the CA alone): uninstall removes the
# database once it holds nothing else. Browsers ignore files they do not know.
CREATED_MARK = ".certkit-created"


def made_meanwhile(directory: Path, exists: Callable[[], bool], db: str) -> bool:
    """For a folder this run did not make: whether a database is there to use, or comes to be (another install
    racing this one is making it). An empty folder is given a second for that, then made here; a part of a
    database (a key4.db alone, an old cert8.db) is waited for, then refused: certutil -N would ask for its
    password, and nothing of it is certkit's to remove."""
    parts = ("key4.db", "pkcs11.txt", "cert8.db", "key3.db", "secmod.db")
    waited = time.monotonic()
    while not exists():
        found = sorted(n for n in parts if (directory / n).exists())
        if time.monotonic() - waited > (10 if found else 1):
            if not found:
                return False  # an empty folder nobody else fills: made here
            raise TrustError(f"{directory} holds part of an NSS database ({', '.join(found)}) but no cert9.db (a "
                             "half-made one, or one of the old dbm: format); certkit does not make a database over "
                             f"it: move those files away, or make it yourself: certutil -N -d {shlex.quote(db)}")
        time.sleep(0.1)
    return True


def remove_half_made(directory: Path, above: int = 0) -> None:
    """Remove what ``certutil -N`` left in a folder this run created: NSS's own files only, then the folder,
    then the ``above`` folders over it that the run made too (~/.pki), each only when nothing else is in it."""
    for name in ("cert9.db", "key4.db", "pkcs11.txt", "cert9.db-journal", "key4.db-journal", CREATED_MARK):
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
    for folder in [directory, *directory.parents[:above]]:
        try:
            folder.rmdir()  # only when nothing else is in it
        except OSError:
            return

def disk_full(folder: Path) -> str:
    """`` (the disk is full: N KiB free)`` when the file system of ``folder`` has under 1 MiB free."""
    try:
        info = os.statvfs(folder)
    except OSError:
        return ""
    free = info.f_bavail * info.f_frsize
    return f" (the disk is full: {free // 1024} KiB free in {folder})" if free < (1 << 20) else ""


def only_its_own_module(directory: Path) -> bool:
    """Whether the database's pkcs11.txt registers no module but NSS's internal one, as certutil -N left it: a
    module registered since (a smart card, p11-kit's trust) is the user's, and keeps the database."""
    try:
        lines = (directory / "pkcs11.txt").read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return all(line[5:].strip() == "NSS Internal PKCS #11 Module" for line in lines if line.startswith("name="))


def holders(directory: Path) -> list[tuple[int, str]]:
    """(pid, program name) of each process this user may look into (``/proc/PID/fd``) that holds a file of the
    NSS database in ``directory`` open: a running browser (Chromium opens it at its first TLS connection, and
    keeps it open). Files are matched by device and inode, whatever path (a link, a sandbox's mount) led there.
    Empty where /proc cannot tell."""
    wanted = set()
    for name in ("cert9.db", "key4.db", "cert8.db", "key3.db"):
        with contextlib.suppress(OSError):
            info = os.stat(directory / name)
            wanted.add((info.st_dev, info.st_ino))
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()] if wanted else []
    except OSError:
        return []
    found = []
    for pid in pids:
        try:
            if not any(_file_of(pid, fd) in wanted for fd in os.listdir(f"/proc/{pid}/fd")):
                continue
            with open(f"/proc/{pid}/comm") as f:
                found.append((pid, f.read().strip()))
        except OSError:  # another user's process, or one that ended meanwhile
            continue
    return found


def _file_of(pid: int, fd: str) -> tuple[int, int] | None:
    try:
        info = os.stat(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None
    return info.st_dev, info.st_ino


@contextlib.contextmanager
def owners_kept(directory: Path):
    """Root changing a user's database (``sudo -E certkit trust install --nss``, HOME the user's): the files certutil
    creates meanwhile (converting an old-format database: cert9.db, key4.db, pkcs11.txt) are given to the owner of
    its folder, as NSS makes them 0600: left root's, the user's browser could not read its own database (certutil and
    Firefox, run as the user, then see an empty one, without the CA and without the keys of its saved logins)."""
    try:
        info = os.stat(directory) if os.geteuid() == 0 else None
        before = set(os.listdir(directory)) if info is not None and info.st_uid != 0 else None
    except OSError:
        before = None
    try:
        yield
    finally:
        if before is not None:
            with contextlib.suppress(OSError):
                for name in set(os.listdir(directory)) - before:
                    with contextlib.suppress(FileNotFoundError):
                        if os.lstat(directory / name).st_uid == 0:
                            os.chown(directory / name, info.st_uid, info.st_gid, follow_symlinks=False)


def old_copies_removed(directory: Path, certutil: Callable[..., subprocess.CompletedProcess],
                       removed: Sequence[tuple[str, str]]) -> list[str]:
    """Take the entries (nickname, SHA-256 fingerprint) certkit removed from cert9.db out of the old-format cert8.db
    beside it too (a database NSS converted, which leaves the old files as they were): NSS converts cert8.db again the
    day cert9.db goes, and the CA would be back, trusted. ``certutil(*args, db=...)`` runs certutil on ``db``. Only an
    entry holding that very certificate is taken out; the notes say what was done, or what is left."""
    old = directory / "cert8.db"
    if not (old.is_file() and (directory / "cert9.db").is_file()):
        return []
    db, notes = f"dbm:{directory}", []
    for name, fingerprint in removed:
        if not _in_old(certutil, db, name, fingerprint):
            continue
        if certutil("-D", "-n", name, db=db).returncode == 0:
            notes.append(f"took '{shown(name)}' out of {old} too, the old-format (dbm) database NSS converted to "
                         "cert9.db, which NSS converts again if cert9.db goes")
        elif (left := old_copy_left(directory, certutil, name, fingerprint)) is not None:
            notes.append(left)
    return notes


def _in_old(certutil: Callable[..., subprocess.CompletedProcess], db: str, name: str, fingerprint: str) -> bool:
    listed = certutil("-L", "-n", name, "-a", db=db)
    return listed.returncode == 0 and fingerprint in pem_fingerprints(listed.stdout)


def old_copy_left(directory: Path, certutil: Callable[..., subprocess.CompletedProcess], name: str,
                  fingerprint: str) -> str | None:
    """The note that the old-format cert8.db beside cert9.db holds certkit's copy (``name``, ``fingerprint``) that
    cert9.db does not (left there by an uninstall before certkit took it out of both), or None."""
    old, db = directory / "cert8.db", f"dbm:{directory}"
    if not (old.is_file() and (directory / "cert9.db").is_file() and _in_old(certutil, db, name, fingerprint)):
        return None
    return (f"'{shown(name)}' is still in {old}, the old-format (dbm) database NSS converted to cert9.db: NSS brings "
            f"it back, trusted, if cert9.db goes; take it out: {shlex.join(['certutil', '-D', '-d', db, '-n', name])}")
