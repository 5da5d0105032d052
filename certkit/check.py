"""``certkit check``: an on-demand health report of a CA directory.

Each check yields a :class:`Finding` (ok, warning or error) saying what was
found and, when something is wrong, what to do. Nothing here changes a file.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from certkit.errors import CertkitError, PassphraseRequired, WrongPassphrase
from certkit.keys import key_damage, pem_damage
from certkit.signatures import self_signed
from certkit.store import CERT_FILE, CONFIG_FILE, INVENTORY_FILE, PARENTS_FILE, CADirectory, Passphrase
from certkit.time_words import dated, time_left
from certkit.vocabulary import absent_text

Level = Literal["ok", "warning", "error"]
EXPIRY_WARNING_DAYS = 30


@dataclass(frozen=True)
class Finding:
    check: str
    level: Level
    message: str


def check_ca_directory(path: str | Path | None, passphrase: Passphrase = None,
                       *, now: dt.datetime | None = None, wrong_hint: str = "") -> list[Finding]:
    """Run every check on the CA directory at ``path`` and return the findings in order. Each
    finding is about one file; a problem with one file does not keep the others from being checked.
    ``wrong_hint``: said after a passphrase that does not decrypt the key (where it came from)."""
    store = CADirectory(path)
    now = now or dt.datetime.now(dt.UTC)
    out: list[Finding] = []

    if not store.path.is_dir():
        out.append(Finding("directory", "error", f"{store.path} does not exist; create a CA with 'certkit init-ca'."))
        return out + _left_beside(store.path)
    out.extend(_check_files(store))
    cert, parents, found = _load_certificates(store)
    out.extend(found)
    if cert is not None:
        out.extend(_check_certificates(cert, parents, now, store))
    try:
        token = store.key_uri is not None
    except CertkitError as exc:  # certkit-ca.json unreadable: neither the key nor the inventory can be found
        out.append(Finding("config", "error", str(exc)))
        return out
    usable = cert if cert is not None and _is_ca(cert) else None  # a leaf in ca.pem: not the key's, nor the rows'
    unused = "holds no CA certificate" if cert is not None else "cannot be read"
    if not token:
        out.extend(_check_key(store, usable, passphrase, wrong_hint, unused))
    elif usable is not None:
        out.extend(_check_token_key(store, usable, passphrase, wrong_hint))
    else:
        out.append(Finding("key", "warning", f"the token's key was not checked: {CERT_FILE} {unused}."))
    from certkit.check_inventory import _check_inventory

    out.extend(_check_inventory(store, usable))
    return out


# What another user who can write each file of a CA directory could do with it.
_AT_STAKE = {
    CERT_FILE: ("certificate", "replace it (and what peers are told to trust)"),
    PARENTS_FILE: ("parents", "replace it (and the chain every bundle hands to peers)"),
    INVENTORY_FILE: ("inventory", "rewrite it (the record of what this CA issued and revoked, which its CRLs "
                                  "are made from)"),
    CONFIG_FILE: ("config", "change it (and where the inventory and the key are taken from)"),
}


def _left_beside(path: Path) -> list[Finding]:
    """What an init-ca killed while it assembled the CA directory ``path`` left beside it (the CA key in it)."""
    import shlex

    from certkit.check_leftovers import dead_beside

    return [Finding("leftovers", "warning", f"{left} was left by a certkit init-ca killed while creating {path}; it "
                    f"holds that CA's key. 'certkit init-ca' removes it as it starts; or remove it: rm -r -- "
                    f"{shlex.quote(left)}") for left in dead_beside(path)]


def _check_files(store: CADirectory) -> list[Finding]:
    """The directory and each file in it: no link, no other owner, nobody else can write it. Every
    command refuses such a directory (``CADirectory.check_safe``); here each file is named on its own."""
    me = os.geteuid()
    found: list[Finding] = []
    info = store.path.stat()
    dir_mode = stat.S_IMODE(info.st_mode)
    if info.st_uid not in (me, 0):
        found.append(Finding("directory", "error", f"{store.path} belongs to another user (uid {info.st_uid}), who "
                                                   "could replace any file in it; use a CA directory of your own."))
    elif dir_mode & 0o022:
        found.append(Finding("directory", "error", f"{store.path} has mode {dir_mode:04o}: other users can add and "
                                                   f"replace files in it. Run: chmod 700 {store.path}"))
    elif dir_mode & 0o077:
        found.append(Finding("directory", "warning", f"{store.path} has mode {dir_mode:04o}; others can list it. "
                                                     f"Run: chmod 700 {store.path}"))
    else:
        found.append(Finding("directory", "ok", f"{store.path} (mode {dir_mode:04o})"))
    for name, (check, stake) in _AT_STAKE.items():
        path = store.path / name
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(info.st_mode):
            found.append(Finding(check, "error", f"{path} is a symbolic link; a CA directory holds its own files. "
                                                 "Replace the link with the file it points to."))
        elif info.st_uid not in (me, 0):
            found.append(Finding(check, "error", f"{path} belongs to another user (uid {info.st_uid}), who could "
                                                 f"{stake}; use a CA directory of your own."))
        elif info.st_mode & 0o022:
            found.append(Finding(check, "error", f"{path} has mode {stat.S_IMODE(info.st_mode):04o}: other users "
                                                 f"can {stake}. Run: chmod go-w {path}"))
    return found


def _load_certificates(store: CADirectory) -> tuple[Any, list | None, list[Finding]]:
    """ca.pem and parents.pem, each read on its own: (ca.pem or None, the parents or None, findings).
    A missing parents.pem is an empty list (a root has none); the chain check says if one is needed."""
    from cryptography import x509

    found: list[Finding] = []
    cert = _read_pem(store.cert_path, "certificate", "CA certificate", x509.load_pem_x509_certificate, found)
    parents: list | None = []
    if os.path.lexists(store.path / PARENTS_FILE):
        parents = _read_pem(store.path / PARENTS_FILE, "parents", "parent certificates",
                            x509.load_pem_x509_certificates, found)
    return cert, parents, found


def _read_pem(path: Path, check: str, what: str, parse, found: list[Finding]):
    from certkit.constants import MAX_CERT_FILE_BYTES
    from certkit.errors import parse_errors
    from certkit.files import read_limited

    if not os.path.lexists(path):
        found.append(Finding(check, "error", f"{path} is missing; the CA directory is incomplete: restore it from a "
                                             "backup" + (", or take it from a bundle this CA issued (a root's ca.pem; "
                                                         "an intermediate's is the first certificate of chain.pem)."
                                                         if check == "certificate" else ".")))
        return None
    if not path.is_file():
        from certkit.vocabulary import file_kind_text  # as every command says it of a file

        found.append(Finding(check, "error", f"{path} is {file_kind_text(path)}; the CA directory is damaged: "
                                             f"restore {path.name} from a backup."))
        return None
    try:
        data = read_limited(path, MAX_CERT_FILE_BYTES, what=what)
    except CertkitError as exc:
        found.append(Finding(check, "error", str(exc)))
        return None
    from certkit.material_kinds import held_instead_of_certificate

    if (held := held_instead_of_certificate(data)) is not None:  # a key, a CSR, DER: said as list and issue say it
        found.append(Finding(check, "error", f"{path} cannot be read: {held}."))
        return None
    damage = pem_damage(data)
    if damage is None:
        try:
            return parse(data)
        except parse_errors():
            damage = "its certificate data does not parse"
    found.append(Finding(check, "error", f"{path} is damaged: {damage}. Restore it from a backup."))
    return None


def _is_ca(cert) -> bool:
    from cryptography import x509

    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _check_certificates(cert, parents: list | None, now: dt.datetime, store: CADirectory) -> list[Finding]:
    """ca.pem a CA certificate, the chain to a root (when parents.pem could be read), and the validity
    of each certificate (an intermediate revoked, as its parent's inventory records, issues nothing either)."""

    from certkit.parent_record import recorded_parent_dir, revoked_by_parent

    found: list[Finding] = []
    is_ca = _is_ca(cert)
    if not is_ca:  # a certificate it issued copied over it: no chain to judge, and no parents.pem to restore
        found.append(Finding("certificate", "error", f"ca.pem holds {cert.subject.rfc4514_string()}, which is not a "
                             "CA certificate (no basicConstraints CA:TRUE; a certificate it issued copied over it?). "
                             "Put the CA's certificate back from a backup (a root's is the ca.pem of every bundle "
                             "it issued)."))
    chain = [cert, *(parents or [])]
    if parents is not None and is_ca:
        found.extend(_check_chain(chain))
    for c in chain if is_ca else chain[1:]:  # a leaf's dates are not the CA's: said of no CA, OK or expired
        name = c.subject.rfc4514_string()
        end, rows = c.not_valid_after_utc, dict(dated(c.not_valid_before_utc, c.not_valid_after_utc, now))
        ended = rows.get("expired", f"{end:%Y-%m-%d %H:%M:%S} UTC")  # to the second, as verify, inspect, probe say it
        if end <= now:
            found.append(Finding("validity", "error", f"{name} expired on {ended}; it can issue nothing valid. Create "
                                 "a new CA (and distribute its ca.pem)."))
        elif end - now < dt.timedelta(days=EXPIRY_WARNING_DAYS):
            found.append(Finding("validity", "warning", f"{name} expires on {end:%Y-%m-%d %H:%M:%S} UTC, in "
                                 f"{time_left(end - now)}."))
        elif c.not_valid_before_utc > now:
            found.append(Finding("validity", "error", f"{name} is not valid before {rows['valid from']}; check the "
                                 "system clock."))
    if parents and (revoked := revoked_by_parent(cert, parents[0], recorded_parent_dir(store))):
        found.append(Finding("validity", "error", revoked))
    if is_ca and not any(f.check == "validity" for f in found):
        chained = parents and not any(f.check == "chain" and f.level == "error" for f in found)
        found.append(Finding("validity", "ok", f"valid until {cert.not_valid_after_utc:%Y-%m-%d}"
                             + (f", chain of {len(chain)}" if chained else "")))
    return found


def _check_chain(chain: list) -> list[Finding]:
    """Each certificate issued (name and signature) by the next; the last one a root that signed itself. A
    signature under a digest OpenSSL refuses (SHA-1) is a warning, not damage: the key made it."""
    from certkit.signatures import signature_by

    for index, child in enumerate(chain):
        where = CERT_FILE if index == 0 else f"{PARENTS_FILE} (certificate {index})"
        name = child.subject.rfc4514_string()
        issuer_name = child.issuer.rfc4514_string()
        if index + 1 == len(chain):
            if child.issuer != child.subject:
                if index == 0:
                    return [Finding("chain", "error", f"ca.pem ({name}) is issued by {issuer_name}, but "
                                    f"{PARENTS_FILE} is missing: bundles would lack the chain to the root. Restore "
                                    f"{PARENTS_FILE} from a backup (or copy the parent CA's ca.pem and its "
                                    f"{PARENTS_FILE} into it, nearest first).")]
                return [Finding("chain", "error", f"{PARENTS_FILE} ends with {name}, issued by {issuer_name}, which "
                                f"it does not hold: the chain stops short of the root. Restore {PARENTS_FILE} "
                                "from a backup.")]
            issuer = child
        else:
            issuer = chain[index + 1]
            if self_signed(child):
                return [Finding("chain", "error", f"{where} ({name}) is a root, yet {PARENTS_FILE} goes on after it "
                                f"({len(chain) - index - 1} more): a root ends the chain, and bundles would carry "
                                f"the extra certificates. Restore {PARENTS_FILE} from a backup.")]
            if child.issuer != issuer.subject:
                return [Finding("chain", "error", f"{where} ({name}) is issued by {issuer_name}, but the next "
                                f"certificate in {PARENTS_FILE} is {issuer.subject.rfc4514_string()}: "
                                f"{PARENTS_FILE} does not fit {CERT_FILE}. Restore {PARENTS_FILE} from a "
                                "backup.")]
        if signature_by(child, issuer) is False:  # None: an algorithm cryptography lacks, which OpenSSL may have
            if issuer is child:
                problem = f"the signature of {where} ({name}) on itself does not verify: it is damaged"
            else:
                problem = (f"{where} ({name}) is not signed by the key of {issuer.subject.rfc4514_string()}: "
                           f"{PARENTS_FILE} does not fit {CERT_FILE}")
            return [Finding("chain", "error", f"{problem}. Restore it from a backup.")]
    from certkit.verify import weak_chain

    # What OpenSSL refuses in every chain this CA's certificates carry (a SHA-1 root's own signature is no part)
    name = chain[0].subject.rfc4514_string()
    return [Finding("chain", "warning", f"{CERT_FILE} ({name}) or its chain: {problem}; every certificate this CA "
                    "issues carries that chain") for problem in weak_chain(chain)]


def _check_key(store: CADirectory, cert, passphrase: Passphrase, wrong_hint: str = "",
               unused: str = "cannot be read") -> list[Finding]:
    from certkit.key_encryption import is_encrypted

    path = store.key_path
    if not path.is_file():
        return [Finding("key", "error", f"{path} {absent_text(path)}; nothing can be issued without it.")]
    found: list[Finding] = []
    try:
        info, data = path.stat(), path.read_bytes()
    except OSError as exc:
        return [Finding("key", "error", f"Cannot read the CA key {path}: {exc.strerror or exc}.")]
    key_mode = stat.S_IMODE(info.st_mode)
    damage = key_damage(data)
    encrypted = is_encrypted(data)
    if damage is not None:  # whether it is encrypted cannot be known
        found.append(Finding("key-mode", "warning" if key_mode & 0o077 else "ok",
                             f"{path} has mode {key_mode:04o}: others can read it. Run: chmod 600 {path}"
                             if key_mode & 0o077 else f"mode {key_mode:04o}"))
    elif key_mode & 0o077:
        level: Level = "warning" if encrypted else "error"
        found.append(Finding("key-mode", level, f"{path} has mode {key_mode:04o}: others can read "
                             f"the {'encrypted' if encrypted else 'UNENCRYPTED'} CA key. Run: chmod 600 {path}"))
    else:
        found.append(Finding("key-mode", "ok", f"mode {key_mode:04o}, {'encrypted' if encrypted else 'not encrypted'}"))
    if info.st_uid != os.geteuid():
        found.append(Finding("key-owner", "warning", f"{path} is owned by uid {info.st_uid}, not by you."))
    if damage is not None:
        found.append(Finding("key", "error", f"The CA key {path} is damaged: {damage}. Restore it from a backup; "
                                             "nothing can be issued without it."))
        return found
    try:
        if cert is None:  # it can still be decrypted, if not compared
            from certkit.keys import load_private_key

            secret = (passphrase() if callable(passphrase) else passphrase) if encrypted else None
            load_private_key(data, secret, source=f"CA key {path}", trusted=True)
        else:
            store.load_key(cert, passphrase)
    except PassphraseRequired:
        found.append(Finding("key", "warning", "the key is encrypted and no passphrase was given: not checked."))
    except WrongPassphrase as exc:
        found.append(Finding("key", "error", f"{exc}{wrong_hint}"))
    except CertkitError as exc:
        found.append(Finding("key", "error", str(exc)))
    else:
        found.append(Finding("key", "ok", "decrypts and matches ca.pem" if cert is not None
                             else f"decrypts (not compared with {CERT_FILE}, which {unused})"))
    return found


def _check_token_key(store: CADirectory, cert, pin: Passphrase, wrong_hint: str = "") -> list[Finding]:
    """A key in a PKCS#11 token: the token present (no PIN needed), then with the PIN: the key
    found, kept in the token, and matching ca.pem (it signs a test message ca.pem's key verifies);
    ``wrong_hint`` said after a PIN the token refused (where it came from)."""
    from certkit import pkcs11

    uri_text, module = store.key_uri, store.config.get("pkcs11_module")
    try:
        uri = pkcs11.KeyURI.parse(uri_text)
        module = pkcs11.module_path(uri, module, str(store.config_path))  # or the URI's module-path, module-name
        token = pkcs11.find_token(uri, module)
    except CertkitError as exc:
        return [Finding("token", "error", str(exc))]
    found = [Finding("token", "ok", f"'{token.label}' present ({token.manufacturer_id.strip()} {token.model.strip()},"
                                    f" module {module})")]
    if state := pkcs11.pin_state(token):  # the flags as they are before this check logs in
        found.append(Finding("token", *state))
    try:
        key = store.load_key(cert, pin)[0]
    except PassphraseRequired:
        return found + [Finding("key", "warning", "the token's PIN was not given: the key was not checked.")]
    except CertkitError as exc:
        refused = isinstance(exc, pkcs11.TokenPinIncorrect) and not exc.remembered and "refused the PIN" in str(exc)
        return found + [Finding("key", "error", f"{exc}{wrong_hint if refused else ''}")]
    try:
        test = b"certkit check: does the token's key match ca.pem?"
        signature = key.sign(test)
        _verify_with_certificate(cert, key, signature, test)
        attributes = key.attributes()
        note = pkcs11.provision.unrecorded(key, cert, store.cert_path)  # None too if the token cannot say
    except Exception as exc:  # InvalidSignature, a token error
        return found + [Finding("key", "error", f"the token's key {uri_text} does not sign for ca.pem: {exc}")]
    finally:
        key.close()
    if attributes["extractable"] or not attributes["sensitive"]:
        faults = [word for word, fault in (("not sensitive", not attributes["sensitive"]),
                                           ("extractable", attributes["extractable"])) if fault]
        found.append(Finding("key", "warning", f"{uri_text} matches ca.pem but is {' and '.join(faults)}: it can "
                             "leave the token."))
    else:
        found.append(Finding("key", "ok", f"{uri_text}: {key.key_type}, signs for ca.pem, sensitive and "
                                          "non-extractable"))
    if key.told_apart:
        found.append(Finding("key", "warning", key.told_apart_note()))
    return found + ([Finding("key", "warning", note)] if note else [])


def _verify_with_certificate(cert, key, signature: bytes, data: bytes) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, padding

    public = cert.public_key()
    if key.key_type.startswith("ecdsa"):
        public.verify(signature, data, ec.ECDSA(key.hash()))
    else:
        public.verify(signature, data, key._padding() or padding.PKCS1v15(), key.hash())
