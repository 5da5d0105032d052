"""What a bundle folder holds, read before certkit replaces it: the files of an old bundle that a new
one would remove (:func:`leftovers`), whether its privkey.pem is the key of the certificate written,
the certificate its cert.pem holds (:func:`refuse_unreadable_cert`), and what in it is not a
certificate's own (:func:`bundle_mismatch`).

A file the file system will not read (no permission, an I/O error) says nothing of what it holds: it is
never taken for "no key" or "no certificate" where that would delete a key or leave a certificate whose
key is gone recorded as valid.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from certkit.constants import CERT_FILE, KEY_FILE
from certkit.errors import CertkitError, UnreadableFile
from certkit.files import read_limited
from certkit.text import shown


def leftovers(folder: Path, written: Iterable[str], replaces: Sequence[str], *, public_key=None,
              cert_pem: bytes | None = None) -> list[str]:
    """The names of ``replaces`` in the existing ``folder`` that writing ``written`` there would remove
    (the rest of another bundle: its chain.pem, bundle.p12, privkey.pem). A privkey.pem holding the
    key of the certificate written (``public_key``, or the key of ``cert_pem``: a CSR's requester put
    it there) is no leftover: it is kept."""
    names = [n for n in replaces if n not in written and os.path.lexists(folder / n)]
    if KEY_FILE in names and (public_key is not None or cert_pem):
        from cryptography import x509

        from certkit.keys import public_key_der

        held = _key_in(folder / KEY_FILE, strict=True)  # b"": an encrypted key (openssl req's): a requester's
        if held == b"" or held == public_key_der(public_key or x509.load_pem_x509_certificate(cert_pem).public_key()):
            names.remove(KEY_FILE)
    return names


def _unreadable_key(path: Path, reason: str, errno: int | None) -> UnreadableFile:
    """A privkey.pem that cannot be read is never removed: it may be the only copy of the key the new
    certificate certifies (a CSR's requester keeps it in the folder, owned by the service)."""
    return UnreadableFile(f"Cannot read {shown(path)} ({reason}), so whether it holds the key of the certificate "
                          "being written (a CSR's requester may keep it there) cannot be told; certkit will not "
                          "remove it, even with --force. Make it readable, or choose another folder.", errno)


def _key_in(path: Path, *, strict: bool = False) -> bytes | None:
    """The public half (DER) of the private key in ``path``: b"" for an encrypted one (not compared),
    None if it holds no key certkit can read. ``strict``: a file the file system will not read
    (no permission, an I/O error) is :class:`UnreadableFile`, never "no key"."""
    from cryptography.hazmat.primitives import serialization

    from certkit.key_encryption import is_encrypted
    from certkit.keys import public_key_der

    if not path.is_file():  # a FIFO or a folder there is not read (nor waited on)
        return None
    try:
        data = read_limited(path, 1 << 20)
    except UnreadableFile as exc:
        if strict:
            raise _unreadable_key(path, _reason(exc), exc.errno) from None
        return None
    except CertkitError:  # larger than any key
        return None
    try:
        if is_encrypted(data):
            return b""
        return public_key_der(serialization.load_pem_private_key(data, None).public_key())
    except (ValueError, TypeError, CertkitError):
        return None


def refuse_unreadable_cert(folder: Path) -> None:
    """Refuse replacing the bundle in ``folder`` (``--force``, or a renewal in place) when its cert.pem cannot
    be read: which certificate's bundle it would replace (and whose key it would delete) cannot be told, so the
    inventory could not record it as replaced, and it would stay valid, and due, with its key gone."""
    from certkit.constants import MAX_CERT_FILE_BYTES

    path = folder / CERT_FILE
    if not path.is_file() or path.is_symlink():  # a link or a FIFO there is refused as such
        return
    try:
        read_limited(path, MAX_CERT_FILE_BYTES)
    except UnreadableFile as exc:
        raise UnreadableFile(f"Cannot read {shown(path)} ({_reason(exc)}), so which certificate's bundle would be "
                             "replaced (its key deleted with it) cannot be told; certkit will not replace it. Make it "
                             "readable, or choose another folder.", exc.errno) from None  # said alike by a renewal
    except CertkitError:  # larger than any certificate: a damaged file, which the inventory's record names
        return


def _reason(exc: UnreadableFile) -> str:
    return os.strerror(exc.errno) if exc.errno else str(exc).rstrip(".")


def bundle_mismatch(folder: Path, cert) -> str | None:
    """What in the bundle ``folder`` is not ``cert``'s: a cert.pem or fullchain.pem that holds another
    certificate, a privkey.pem that is another key (a file replaced or copied in by hand); None when its
    files agree (an encrypted or unreadable key is not judged)."""
    from cryptography import x509

    from certkit.constants import FULLCHAIN_FILE, MAX_CERT_FILE_BYTES
    from certkit.vocabulary import serial_hex

    serial = serial_hex(cert.serial_number)
    for name in (CERT_FILE, FULLCHAIN_FILE):
        if not (folder / name).is_file():  # a FIFO or a folder there is not read (nor waited on)
            continue
        try:
            first = x509.load_pem_x509_certificates(read_limited(folder / name, MAX_CERT_FILE_BYTES))[0]
        except (ValueError, IndexError, OSError, CertkitError):
            continue
        if first != cert:
            return f"its {name} holds another certificate ({serial_hex(first.serial_number)}) than {serial}"
    from certkit.keys import public_key_der

    key = _key_in(folder / KEY_FILE)
    if key and key != public_key_der(cert.public_key()):
        return f"its {KEY_FILE} is not the key of certificate {serial} (a server given it cannot start: OpenSSL says " \
               "key values mismatch)"
    return None


def of_another_kind(exc, folder: Path, kind: str, names: "list[str] | None" = None):
    """``exc``, the refusal of a folder that holds a bundle already, saying so when that bundle's certificate is of
    another kind than the ``kind`` to write there: 'pass --force' would replace a name's server certificate, and
    its key, with the peer (or client) certificate meant to go beside it (issue-server etcd-1, then issue-peer
    etcd-1 into the same default folder), and whatever reads the folder would present another purpose."""
    from cryptography import x509

    from certkit.constants import MAX_CERT_FILE_BYTES
    from certkit.errors import OutputExists, cli_worded
    from certkit.vocabulary import eku_names, leaf_kind

    try:
        held = x509.load_pem_x509_certificate(read_limited(Path(folder) / CERT_FILE, MAX_CERT_FILE_BYTES))
    except (OSError, ValueError, CertkitError):
        return exc
    theirs = leaf_kind(held)
    if not exc.replaceable or theirs not in ("server", "client", "peer"):
        return exc
    if theirs == kind:
        return _for_other_names(exc, held, kind, names)
    fix = f"give the {kind} certificate a folder of its own"
    return cli_worded(OutputExists(
        f"{str(exc).rstrip('.')}: a {theirs} certificate's bundle ({', '.join(eku_names(held) or [])}), which this "
        f"{kind} certificate would replace, key and all, so that whatever reads the folder would get another "
        f"purpose; {fix}.", count=exc.count), fix, f"{fix} with --out")


def _for_other_names(exc, held, kind: str, names: "list[str] | None"):
    """``exc``, saying so when the bundle there is of a ``kind`` certificate for other ``names``, none in common (as
    :func:`certkit.vocabulary.san_entries` writes them): 'pass --force' would take its key from a certificate that
    stays valid (the note --force gives then: :func:`certkit.inventory.succession.replaced_note`)."""
    from certkit.errors import OutputExists, cli_worded
    from certkit.inventory.succession import names_text
    from certkit.vocabulary import san_entries

    theirs = san_entries(held)
    if not names or not theirs or set(theirs) & set(names):  # a name in common: the same host's, names changed
        return exc
    fix = f"give the certificate for {names_text(names)} a folder of its own"
    return cli_worded(OutputExists(
        f"{str(exc).rstrip('.')}: the bundle of a {kind} certificate for {names_text(theirs)}, which this one would "
        f"replace, key and all, while it stays valid (whatever uses that bundle would lose its key); {fix}.",
        count=exc.count), fix, f"{fix} with --out")


def certified_names(identities, subject) -> list[str]:
    """What a certificate is for, as :func:`_for_other_names` compares bundles and as
    :func:`certkit.vocabulary.san_entries` writes it: its SAN entries (``identities``), else its subject (an
    x509.Name, or the common name it is made of) as a directory name, which certkit's certificates then carry."""
    if identities:
        return [str(identity) for identity in identities]
    if isinstance(subject, str):
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    return [f"DirName:{subject.rfc4514_string()}"] if subject is not None else []
