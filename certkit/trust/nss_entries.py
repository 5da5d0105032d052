"""Which certificate each entry of an NSS database holds: :func:`own_certificates`.

``certutil -L -n NICK -a`` does not print NICK's certificate alone: it prints every certificate with
the same subject, the one valid longest first, whichever nickname each has. A renewed CA usually
keeps its subject, so an old and a new CA (added by certkit, or by hand under two nicknames) both
come back for either nickname. Each entry's own certificate is told apart here: a certkit nickname
carries its certificate's fingerprint; another takes one of the rest whose own trust (certutil's
full listing of the nickname, per certificate) is the entry's, and, among those, the one stored
under that nickname (:func:`stored_labels`, read from the database's file); no two entries take
the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from certkit.trust.tools import CERTKIT_NAME, pem_fingerprints


def trusts_servers(flags: str) -> bool:
    """Whether NSS trust flags (``C,,``) make the certificate a trusted issuer of TLS server certificates."""
    return "C" in flags.split(",")[0]


def server_trust(text: str) -> dict[str, bool]:
    """SHA-256 fingerprint -> whether it is a trusted issuer of TLS server certificates ("Trusted CA" among
    its SSL flags), for every certificate of ``certutil -L -n NICK`` (without ``-a``)."""
    found: dict[str, bool] = {}
    lines = text.splitlines()
    fingerprint, section = None, None
    for i, line in enumerate(lines):
        words = line.strip()
        if words == "Fingerprint (SHA-256):" and i + 1 < len(lines):
            fingerprint = lines[i + 1].strip().replace(":", "").lower()
            found.setdefault(fingerprint, False)
        elif words.endswith("Flags:"):
            section = words
        elif words == "Trusted CA" and section == "SSL Flags:" and fingerprint is not None:
            found[fingerprint] = True
    return found


def stored_labels(cert9: Path) -> dict[str, set[str]]:
    """SHA-256 fingerprint -> the nicknames (CKA_LABEL) its certificate is stored under, read from the NSS
    database's cert9.db (its table nssPublic: column a0 the object class, a3 the label, a11 the DER);
    empty when the file cannot be read so (in use by a writer, damaged, another layout)."""
    import contextlib
    import hashlib
    import sqlite3
    from urllib.parse import quote

    found: dict[str, set[str]] = {}
    try:
        with contextlib.closing(sqlite3.connect(f"file:{quote(str(cert9))}?mode=ro", uri=True, timeout=2)) as db:
            rows = db.execute("SELECT a3, a11 FROM nssPublic WHERE a0 = ?", (CERTIFICATE_CLASS,)).fetchall()
    except sqlite3.Error:
        return found
    for label, der in rows:
        if isinstance(label, bytes) and isinstance(der, bytes):
            found.setdefault(hashlib.sha256(der).hexdigest(), set()).add(label.decode(errors="replace"))
    return found


CERTIFICATE_CLASS = (1).to_bytes(4, "big")  # CKO_CERTIFICATE, as NSS stores a CK_ULONG attribute


def own_certificates(rows: Sequence[tuple[str, str]], exported: Callable[[str], list[bytes]],
                     trust_of: Callable[[str], dict[str, bool]],
                     labels: Callable[[], dict[str, set[str]]]) -> list[tuple[bytes, bool]]:
    """For each (nickname, trust flags) of ``rows`` (certutil's listing, one row per certificate): its own
    certificate (a PEM block; ``b""`` when none is shown) and whether certkit named it (the nickname carries
    that certificate's fingerprint). ``exported(nick)`` is what certutil shows for the nickname (every
    certificate of its subject), ``trust_of(nick)`` the server trust of each (:func:`server_trust`), asked
    only when more than one certificate is left to choose from, as ``labels()`` (:func:`stored_labels`),
    which decides between certificates of equal trust."""
    groups = {nick: exported(nick) for nick in dict.fromkeys(nick for nick, _flags in rows)}
    own: list[tuple[bytes, bool] | None] = [None] * len(rows)
    taken: set[str] = set()
    for i, (nick, _flags) in enumerate(rows):
        if (match := CERTKIT_NAME.match(nick)) is None:
            continue
        block = next((b for b in groups[nick] if pem_fingerprints(b)[0].startswith(match[1])
                      and pem_fingerprints(b)[0] not in taken), None)
        if block is not None:
            own[i] = (block, True)
            taken.add(pem_fingerprints(block)[0])
    for i, (nick, flags) in enumerate(rows):
        if own[i] is not None:
            continue
        free = [b for b in groups[nick] if pem_fingerprints(b)[0] not in taken]
        if len(free) > 1:  # certificates of one subject under several names: the entry's own trust tells
            trusted = trust_of(nick)
            free = [b for b in free if trusted.get(pem_fingerprints(b)[0]) == trusts_servers(flags)] or free
        if len(free) > 1:
            stored = labels()
            free = [b for b in free if nick in stored.get(pem_fingerprints(b)[0], ())] or free
        block = (free or groups[nick] or [b""])[0]
        if free:
            taken.add(pem_fingerprints(block)[0])
        own[i] = (block, False)
    return [entry or (b"", False) for entry in own]
