"""Why certutil failed on an NSS database, said where certutil cannot tell its causes apart: it calls a database
"bad" whether another program holds it locked (a running browser), this user cannot read it, it was left half-made
or it is damaged (:func:`certutil_failure`, from what SQLite finds in its files); and a CA whose key type this NSS
cannot store (:func:`_key_type_hint`)."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import warnings
from collections.abc import Sequence
from pathlib import Path

from certkit.text import shown
from certkit.trust.anchor import Anchor
from certkit.trust.store import TrustError
from certkit.trust.tools import key_id, tool_failure


def certutil_failure(directory: Path, proc: subprocess.CompletedProcess, what: str) -> TrustError:
    """certutil's failure, told apart from its cause where certutil cannot: it calls a database that another
    program holds locked (a running browser) as "bad" as a damaged one. SQLite, reading the files, can tell."""
    import sqlite3
    from urllib.parse import quote

    if (unreadable := _unreadable(directory)) is not None:
        return TrustError(f"{what} failed: {unreadable}, so certutil calls the database bad (it is not known to be "
                          "damaged); run as its owner, or give the file back to this user (chown), and run again")
    for path in (directory / "cert9.db", directory / "key4.db"):
        if not path.is_file():
            continue
        if path.stat().st_size == 0:  # left half-made: created, never written (a full disk, a killed run)
            return TrustError(f"{tool_failure(proc, what)} ({path} is empty: the database was left half-made, "
                              f"holding nothing; remove {directory} and run again)")
        try:
            with contextlib.closing(sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True, timeout=0.5,
                                                    isolation_level=None)) as db:
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
                db.execute("BEGIN IMMEDIATE")  # another writer (a browser) holds it: reading alone would pass
                db.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return TrustError(f"{what} failed: {path} is locked by another program, possibly a running "
                                  "browser (Chromium, Firefox or Thunderbird) using this database; close it and "
                                  "run again (certutil calls it a bad database, but it is in use, not known to be "
                                  "damaged)")
        except sqlite3.DatabaseError as exc:
            failure = tool_failure(proc, what)
            return TrustError(f"{failure} ({path} is damaged: SQLite cannot read it: {exc})")
    if (directory / "cert9.db").is_file() and not (directory / "key4.db").exists():
        return TrustError(f"{tool_failure(proc, what)} ({directory} holds cert9.db but no key4.db: the "
                          f"database was left half-made, holding nothing; remove {directory} and run again)")
    return tool_failure(proc, what)


def _unreadable(directory: Path) -> str | None:
    """Which file of the database in ``directory`` this user cannot read, and whose it is (a cert9.db left root's by
    ``sudo certutil``), or None: certutil then says "bad database", as of a damaged one."""
    import pwd

    for path in (directory, *(directory / name for name in ("cert9.db", "key4.db"))):
        try:
            st = path.stat()
        except PermissionError:
            return f"{path} cannot be reached by this user (a folder above it is closed to this user)"
        except OSError:
            continue
        if not os.access(path, os.R_OK | (os.X_OK if path == directory else 0)):
            try:
                owner = pwd.getpwuid(st.st_uid).pw_name
            except KeyError:
                owner = f"uid {st.st_uid}"
            return f"{path} cannot be read by this user (it is {owner}'s, mode {st.st_mode & 0o7777:04o})"
    return None


def _key_type_hint(anchor: Anchor, proc: subprocess.CompletedProcess) -> str:
    """Why certutil could not add the CA, when its key type is the cause: this NSS stores no certificate
    whose own key is Ed25519 (browsers verify nothing under such a CA either)."""
    from cryptography.hazmat.primitives.asymmetric import ed448, ed25519

    if b"SEC_ERROR_ADDING_CERT" not in proc.stderr or not isinstance(
            anchor.cert.public_key(), (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return ""
    return (f" (the CA '{shown(anchor.common_name)}' has an Ed25519 key, which this NSS's certutil cannot store, and "
            "browsers (Chrome, Firefox) accept no certificate under it: make an ECDSA or RSA CA for browsers, "
            "certkit init-ca --key-type ecdsa-p256)")


def add_refused(anchor: Anchor, entries: Sequence[tuple[str, str, bytes, bool]], before: Sequence[str], db: str,
                directory: Path) -> TrustError | None:
    """Why certkit does not add ``anchor`` to the database, or None: its nickname holds another certificate
    (``before``: what it holds), or an entry holds another certificate of its issuer and serial number, which NSS
    keeps once (certutil -A fails with SEC_ERROR_REUSED_ISSUER_AND_SERIAL): a root made again from its key by
    ``openssl x509 -signkey``, which keeps the serial. ``entries``: (nickname, flags, certificate, certkit's)."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm

    if before and anchor.fingerprint not in before:
        return TrustError(f"'{shown(anchor.nickname)}' in {directory} holds another certificate, not this CA: certkit "
                          "does not change an entry it did not add. Rename or delete that entry (certutil -D -d "
                          f"{shlex.quote(db)} -n {shlex.quote(anchor.nickname)}) and run again")
    for nick, _flags, block, _ours in entries:
        try:
            with warnings.catch_warnings():  # a CA with a negative serial: cryptography warns, it is no error
                warnings.simplefilter("ignore")
                cert = x509.load_pem_x509_certificate(block)
            if (cert.serial_number, cert.issuer) != (anchor.cert.serial_number, anchor.cert.issuer) or \
                    cert == anchor.cert:
                continue
            same = cert.subject == anchor.cert.subject and key_id(cert) == anchor.public_key_sha256
        except (ValueError, UnsupportedAlgorithm):
            continue
        what = (f"an earlier certificate of this CA (the same name and key, valid until "
                f"{cert.not_valid_after_utc:%Y-%m-%d}; clients accept what the CA signs through it until then)"
                if same else "another certificate")
        return TrustError(f"{directory} holds '{shown(nick)}', {what} with the issuer and serial number of this CA's "
                          f"certificate ({anchor.cert.serial_number:#x}): NSS keeps one certificate per issuer and "
                          "serial number, so it cannot add this one. Take that entry out (certutil -D -d "
                          f"{shlex.quote(db)} -n {shlex.quote(nick)}) and run again (NSS holds both only if the "
                          "new one has a serial number of its own: openssl x509 -signkey ... -set_serial)")
    return None
