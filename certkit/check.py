"""``certkit check``: an on-demand health report of a CA directory.

Each check yields a :class:`Finding` (ok, warning or error) saying what was
found and, when something is wrong, what to do. Nothing here changes a file.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from certkit.errors import CertkitError, PassphraseRequired
from certkit.store import CADirectory, Passphrase

Level = Literal["ok", "warning", "error"]
EXPIRY_WARNING_DAYS = 30


@dataclass(frozen=True)
class Finding:
    check: str
    level: Level
    message: str


def check_ca_directory(path: str | Path | None, passphrase: Passphrase = None,
                       *, now: dt.datetime | None = None) -> list[Finding]:
    """Run every check on the CA directory at ``path`` and return the findings in order."""
    store = CADirectory(path)
    now = now or dt.datetime.now(dt.UTC)
    out: list[Finding] = []
    add = lambda check, level, message: out.append(Finding(check, level, message))  # noqa: E731

    if not store.path.is_dir():
        add("directory", "error", f"{store.path} does not exist; create a CA with 'certkit init-ca'.")
        return out
    dir_mode = stat.S_IMODE(store.path.stat().st_mode)
    try:
        store.check_safe()
    except CertkitError as exc:
        add("directory", "error", str(exc))
    if dir_mode & 0o077:
        add("directory", "warning",
            f"{store.path} has mode {dir_mode:04o}; others can list it. Run: chmod 700 {store.path}")
    else:
        add("directory", "ok", f"{store.path} (mode {dir_mode:04o})")

    try:
        cert, parents = store.load_certificates()
    except CertkitError as exc:
        add("certificate", "error", str(exc))
        return out
    out.extend(_check_certificates(cert, parents, now))
    try:
        token = store.key_uri is not None
    except CertkitError as exc:  # certkit-ca.json unreadable: neither the key nor the inventory can be found
        add("config", "error", str(exc))
        return out
    out.extend(_check_token_key(store, cert, passphrase) if token else _check_key(store, cert, passphrase))
    out.extend(_check_inventory(store, cert))
    return out


def _check_certificates(cert, parents, now: dt.datetime) -> list[Finding]:
    from cryptography import x509

    found: list[Finding] = []
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = bc.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        found.append(Finding("certificate", "error", "ca.pem is not a CA certificate (no basicConstraints CA:TRUE)."))
    chain = [cert, *parents]
    for child, issuer in zip(chain, chain[1:] + [chain[-1]], strict=True):
        try:
            child.verify_directly_issued_by(issuer)
        except Exception as exc:  # InvalidSignature, or a key type that cannot sign
            name = child.subject.rfc4514_string()
            found.append(Finding("chain", "error", f"{name} is not signed by {issuer.subject.rfc4514_string()}"
                                                   f" ({type(exc).__name__}); parents.pem does not fit ca.pem."))
    for c in chain:
        name = c.subject.rfc4514_string()
        end = c.not_valid_after_utc
        if end <= now:
            found.append(Finding("validity", "error", f"{name} expired on {end:%Y-%m-%d}; it can issue nothing "
                                 "valid. Create a new CA (and distribute its ca.pem)."))
        elif end - now < dt.timedelta(days=EXPIRY_WARNING_DAYS):
            found.append(Finding("validity", "warning", f"{name} expires on {end:%Y-%m-%d}, in "
                                 f"{(end - now).days} days."))
        elif c.not_valid_before_utc > now:
            found.append(Finding("validity", "error", f"{name} is not valid before {c.not_valid_before_utc:%Y-%m-%d};"
                                 " check the system clock."))
    if not any(f.check in ("chain", "validity") for f in found):
        found.append(Finding("validity", "ok", f"valid until {cert.not_valid_after_utc:%Y-%m-%d}"
                             + (f", chain of {len(chain)}" if parents else "")))
    return found


def _check_key(store: CADirectory, cert, passphrase: Passphrase) -> list[Finding]:
    from certkit.keys import is_encrypted

    path = store.key_path
    if not path.is_file():
        return [Finding("key", "error", f"{path} is missing; nothing can be issued without it.")]
    found: list[Finding] = []
    key_mode = stat.S_IMODE(path.stat().st_mode)
    data = path.read_bytes()
    encrypted = is_encrypted(data)
    if key_mode & 0o077:
        level: Level = "warning" if encrypted else "error"
        found.append(Finding("key-mode", level, f"{path} has mode {key_mode:04o}: others can read "
                             f"the {'encrypted' if encrypted else 'UNENCRYPTED'} CA key. Run: chmod 600 {path}"))
    else:
        found.append(Finding("key-mode", "ok", f"mode {key_mode:04o}, {'encrypted' if encrypted else 'not encrypted'}"))
    if path.stat().st_uid != os.geteuid():
        found.append(Finding("key-owner", "warning", f"{path} is owned by uid {path.stat().st_uid}, not by you."))
    try:
        store.load_key(cert, passphrase)
    except PassphraseRequired:
        found.append(Finding("key", "warning", "the key is encrypted and no passphrase was given: not checked."))
    except CertkitError as exc:
        found.append(Finding("key", "error", str(exc)))
    else:
        found.append(Finding("key", "ok", "decrypts and matches ca.pem"))
    return found


def _check_token_key(store: CADirectory, cert, pin: Passphrase) -> list[Finding]:
    """A key in a PKCS#11 token: the token present (no PIN needed), then with the PIN: the key
    found, kept in the token, and matching ca.pem (it signs a test message ca.pem's key verifies)."""
    from certkit import pkcs11

    uri_text, module = store.key_uri, store.config.get("pkcs11_module")
    try:
        uri = pkcs11.KeyURI.parse(uri_text)
        token = pkcs11.find_token(uri, pkcs11.module_path(uri, module))
    except CertkitError as exc:
        return [Finding("token", "error", str(exc))]
    found = [Finding("token", "ok", f"'{token.label}' present ({token.manufacturer_id.strip()} {token.model.strip()},"
                                    f" module {module})")]
    try:
        key = store.load_key(cert, pin)[0]
    except PassphraseRequired:
        return found + [Finding("key", "warning", "the token's PIN was not given: the key was not checked.")]
    except CertkitError as exc:
        return found + [Finding("key", "error", str(exc))]
    try:
        test = b"certkit check: does the token's key match ca.pem?"
        signature = key.sign(test)
        _verify_with_certificate(cert, key, signature, test)
        attributes = key.attributes()
    except Exception as exc:  # InvalidSignature, a token error
        return found + [Finding("key", "error", f"the token's key {uri_text} does not sign for ca.pem: {exc}")]
    finally:
        key.close()
    if attributes["extractable"] or not attributes["sensitive"]:
        found.append(Finding("key", "warning", f"{uri_text} matches ca.pem but is "
                             f"{'extractable' if attributes['extractable'] else 'not sensitive'}: it can leave the "
                             "token."))
    else:
        found.append(Finding("key", "ok", f"{uri_text}: {key.key_type}, signs for ca.pem, sensitive and "
                                          "non-extractable"))
    return found


def _verify_with_certificate(cert, key, signature: bytes, data: bytes) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, padding

    public = cert.public_key()
    if key.key_type.startswith("ecdsa"):
        public.verify(signature, data, ec.ECDSA(key.hash()))
    else:
        public.verify(signature, data, key._padding() or padding.PKCS1v15(), key.hash())


def _check_inventory(store: CADirectory, cert=None) -> list[Finding]:
    """The inventory read as it is: nothing migrated, settled or written (query_only)."""
    from certkit.inventory import SCHEMA_VERSION

    try:
        inventory = store.inventory
        present = inventory.db.exists()
    except CertkitError as exc:  # a shared inventory that cannot be reached
        return [Finding("inventory", "error", str(exc))]
    if not present:
        if inventory.db.dialect != "sqlite":
            return [Finding("inventory", "error", f"{inventory.location} holds no certkit inventory (its tables "
                                                  "are missing); check the URL, or restore it from a backup.")]
        import os

        if os.path.isdir(inventory.location):
            return [Finding("inventory", "error", f"{inventory.location} is a directory, not a file; the CA "
                                                  "directory is damaged: restore the inventory from a backup.")]
        return [Finding("inventory", "error", f"{inventory.location} is missing; the CA directory is incomplete.")]
    found: list[Finding] = []
    if inventory.db.dialect != "sqlite":
        from certkit.store import check_binding

        try:
            check_binding(inventory, cert)
            found.append(Finding("database", "ok", f"PostgreSQL {inventory.db.server_version()} at "
                                                   f"{inventory.location}"))
        except CertkitError as exc:
            return [Finding("inventory", "error", str(exc))]
    try:
        version = inventory.version(readonly=True)
        if version > SCHEMA_VERSION:
            return [Finding("inventory", "error", f"{inventory.location} was written by a newer certkit (schema "
                            f"{version}, this one knows {SCHEMA_VERSION}); upgrade certkit.")]
        if version < SCHEMA_VERSION:
            found.append(Finding("inventory", "warning", f"schema version {version}; the next command that opens "
                                 f"it migrates it to version {SCHEMA_VERSION} (check changes nothing)."))
        integrity = _integrity(inventory)
        if integrity != "ok":
            return [Finding("inventory", "error", f"{inventory.location} failed SQLite's integrity check: "
                            f"{integrity}. Restore it from a backup.")]
        damaged = inventory.damaged()
        with inventory.transaction() as tx:
            count = tx.execute("SELECT count(*) FROM certificates").fetchone()[0]
            pending = tx.execute("SELECT count(*) FROM certificates WHERE status = 'pending'").fetchone()[0]
    except CertkitError as exc:
        return [Finding("inventory", "error", str(exc))]
    except sqlite3.Error as exc:
        return [Finding("inventory", "error", f"{inventory.location} is damaged: {exc}.")]
    for row in damaged:
        found.append(Finding("inventory-row", "error", f"serial {row.serial}: {row.reason}."))
    if pending:
        found.append(Finding("inventory", "warning", f"{pending} certificate{'s are' if pending > 1 else ' is'} "
                             "pending (being written now, or left by a process that died: the next command that "
                             "opens the inventory settles those)."))
    if not damaged:
        found.append(Finding("inventory", "ok", f"{count} certificates recorded, every row readable, schema "
                                                f"version {min(version, SCHEMA_VERSION)}"
                                                + (" (current)" if version == SCHEMA_VERSION else "")))
    return found


def _integrity(inventory) -> str:
    if inventory.db.dialect != "sqlite":
        return "ok"
    with inventory.db.transaction(readonly=True) as tx:
        return tx.execute("PRAGMA quick_check").fetchone()[0]
