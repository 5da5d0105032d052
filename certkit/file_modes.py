"""The mode of each file certkit writes into a bundle folder: 0600 for anything that may be secret.

A bundle's own files are known by name (``privkey.pem`` and ``bundle.p12`` are secret, the
certificates are not). Files written beside them (``IssuedCert.write(extra=...)``) are the user's
payload, named as the user likes (``tls.key``, ``bundle.pfx``, ``keystore.jks``): they are 0600 unless
their content is plainly public, PEM certificates, CRLs, CSRs or public keys and nothing else (or a DER
certificate). A file replaced never becomes more readable than it was (:func:`kept_mode`).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import stat
from pathlib import Path

from certkit.atomic import PUBLIC_MODE, SECRET_MODE
from certkit.constants import BUNDLE_FILES, KEY_FILE, P12_FILE
from certkit.paths import absolute

# PEM labels that never carry a secret.
_PUBLIC_LABELS = {b"CERTIFICATE", b"TRUSTED CERTIFICATE", b"X509 CRL", b"PUBLIC KEY", b"RSA PUBLIC KEY",
                  b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST"}
_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
# A whole PEM block: what may stand between blocks is white space (and OpenSSL's "subject=" comments).
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----[A-Za-z0-9+/=\s:,-]*?-----END \1-----")
_COMMENT_LINE = re.compile(rb"^(?:subject|issuer)=.*$", re.MULTILINE)
# Names that say "a key or a key store", whatever the content.
_SECRET_SUFFIXES = ("key.pem", ".key", ".p12", ".pfx", ".jks", ".keystore", ".p8", ".pk8", ".der.key")


def is_secret(name: str, data: bytes | None = None) -> bool:
    """Whether the file ``name`` (holding ``data``, when known) may be secret."""
    if name in BUNDLE_FILES:
        return name in (KEY_FILE, P12_FILE)
    if name.lower().endswith(_SECRET_SUFFIXES):
        return True
    if data is None:
        return False
    return not _plainly_public(bytes(data))


def _plainly_public(data: bytes) -> bool:
    """PEM of certificates, CRLs, CSRs or public keys only; or one DER certificate."""
    if b"PRIVATE KEY" in data:
        return False
    labels = _PEM_BEGIN.findall(data)
    if labels:  # PEM blocks with public labels, and nothing else around them (a YAML with a key in base64)
        rest = _COMMENT_LINE.sub(b"", _PEM_BLOCK.sub(b"", data))
        return all(label in _PUBLIC_LABELS for label in labels) and not rest.strip()
    from cryptography import x509

    try:
        x509.load_der_x509_certificate(data)
    except ValueError:
        return False  # PKCS#12, a JKS store, a raw key, text: certkit cannot tell, so it is kept private
    return True


def mode_for(name: str, data: bytes | None = None) -> int:
    return SECRET_MODE if is_secret(name, data) else PUBLIC_MODE


def kept_mode(path: Path, mode: int) -> int:
    """``mode`` for a file about to replace ``path``, never more readable than what is there now (a
    user's 0600 made 0644 by a replacement would be a key given away); the owner keeps read and write."""
    try:
        info = os.lstat(path)
    except OSError:
        return mode
    if not stat.S_ISREG(info.st_mode):
        return mode
    return (mode & stat.S_IMODE(info.st_mode)) | (mode & 0o600)


# The files being replaced, while :func:`same_key` runs, by a secret file that holds the key they held.
_SAME_KEY: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("certkit_same_key", default=frozenset())


@contextlib.contextmanager
def same_key(*paths: Path):
    """While this runs, a secret file written to replace one of ``paths`` holds the very key the old one held (a
    renewal that keeps its key writes bundle.p12 again): it keeps the old file's mode, and with it its group and
    owner (:func:`write_kept`), as the kept privkey.pem beside it does, rather than the owner-only mode of a new
    secret (a Java service reading its bundle.p12 through its group, root:tomcat 0640, would be locked out)."""
    token = _SAME_KEY.set(_SAME_KEY.get() | {absolute(p) for p in paths})
    try:
        yield
    finally:
        _SAME_KEY.reset(token)


def _same_key_mode(old: Path, mode: int) -> int:
    """:func:`kept_mode`, or, for a file :func:`same_key` names, the old file's own read and write bits."""
    if absolute(old) in _SAME_KEY.get():
        try:
            info = os.lstat(old)
        except OSError:
            return mode
        if stat.S_ISREG(info.st_mode):
            return (stat.S_IMODE(info.st_mode) & 0o666) | 0o600
    return kept_mode(old, mode)


def write_kept(path: Path, data: bytes, old: Path, mode: int, *, sync: bool = True) -> None:
    """Create ``path`` (which must not exist) holding ``data``, to be renamed over ``old``: with
    :func:`kept_mode` (or the old mode, for a file of :func:`same_key`), and, when that mode lets the group
    read, ``old``'s group too. A cert.pem at root:postgres 0640 is for the server's group (PostgreSQL, HAProxy
    reading through their group): the same bits for the renewer's group would lock the server out. Where that
    group cannot be given (a user not in it), a public file gets the public mode 0644 instead and a secret one
    its owner's bits only: never group bits for another group than the old file's."""
    from certkit.atomic import write_new_file

    final = _same_key_mode(old, mode)
    try:
        was = os.lstat(old)
    except OSError:
        was = None
    gid = was.st_gid if was is not None and final & 0o070 else None
    uid = was.st_uid if was is not None and was.st_uid != os.geteuid() else None  # a service's own bundle
    acl = _acl_of(old)
    write_new_file(path, data, final & 0o700 if gid is not None else final, sync=sync)
    if gid is None and uid is None and acl is None:
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if gid is not None and os.fstat(fd).st_gid != gid:
            try:
                os.fchown(fd, -1, gid)  # the owner may give any group it is in; root, any
            except OSError:
                final = PUBLIC_MODE if mode & 0o004 else final & 0o700
        if uid is not None:
            with contextlib.suppress(OSError):  # root gives the file back to its owner; another user cannot
                os.fchown(fd, uid, -1)
        os.fchmod(fd, final)
        if acl is not None:  # after the mode: an ACL's mask is the group bits ls shows
            with contextlib.suppress(OSError):
                os.setxattr(fd, _ACL, acl)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


_ACL = "system.posix_acl_access"  # a POSIX ACL (setfacl): users and groups given access beyond the mode


def _acl_of(path: Path) -> bytes | None:
    """The POSIX access ACL of ``path`` (what setfacl gave it), None when it has none or it cannot be read."""
    try:
        return os.getxattr(path, _ACL, follow_symlinks=False)
    except (OSError, AttributeError):
        return None


_DEFAULT_ACL = "system.posix_acl_default"  # a folder's default ACL: what files made in it are given


def keep_folder_access(old: Path, new: Path) -> None:
    """Give the folder ``new`` (a bundle assembled beside ``old``, to take its place) who may reach it as ``old``
    has it: its mode, its owner (as root) or its group (one the renewer is in), and its POSIX ACLs (``setfacl -m
    u:postgres:rx``, the default ACL too), so that a service that reads the bundle through them still does."""
    info = os.stat(old)
    if os.geteuid() == 0:
        os.chown(new, info.st_uid, info.st_gid)
    elif os.stat(new).st_gid != info.st_gid:
        with contextlib.suppress(OSError):  # the owner may give any group it is in
            os.chown(new, -1, info.st_gid)
    mode = info.st_mode & 0o7777
    if os.stat(new).st_gid != info.st_gid:  # a group it could not give: its bits are not another group's to have
        mode &= ~0o070
    os.chmod(new, mode)  # after chown, which may clear set-id bits
    for name in (_ACL, _DEFAULT_ACL):  # after the mode: an ACL's mask is the group bits ls shows
        try:
            acl = os.getxattr(old, name, follow_symlinks=False)
        except (OSError, AttributeError):
            continue
        with contextlib.suppress(OSError):
            os.setxattr(new, name, acl, follow_symlinks=False)


def replace_kept(path: Path, data: bytes, mode: int) -> None:
    """:func:`certkit.atomic.replace_file`, the new file's mode and group as :func:`write_kept` keeps them."""
    from certkit.atomic import fsync_dir, sweep_stale, temporary_name, unlink_quietly

    path = Path(path)
    sweep_stale(path.absolute().parent, path.name)
    tmp = path.with_name(temporary_name(path.name))
    try:
        write_kept(tmp, data, path, mode)
        os.replace(tmp, path)
    except BaseException:
        unlink_quietly(tmp)
        raise
    fsync_dir(path.absolute().parent)


def kept_key_notes(key_path: Path) -> list[str]:
    """What to say of a private key kept by a renewal. One encrypted since (certkit cannot check that
    it is cert.pem's key): say so. One that others can read (certkit writes 0600; someone changed it)
    goes on into the renewed bundle as it is: say so, and how to close it; but not a key readable by
    its own group only, that group not the user's own: a server that reads its key through its group
    (PostgreSQL's root:postgres 0640, docs/renew.md) needs just that, and chmod 600 would stop it."""
    from certkit.constants import MAX_CERT_FILE_BYTES
    from certkit.key_encryption import is_encrypted
    from certkit.text import shown

    try:
        info = key_path.stat()
        encrypted = is_encrypted(key_path.read_bytes()[:MAX_CERT_FILE_BYTES])
    except OSError:
        return []
    notes = [f"{shown(key_path)} is encrypted, so certkit could not check that it is the key of cert.pem (the renewed "
             f"certificate certifies cert.pem's key); compare: openssl pkey -in {shown(key_path)} -pubout"] \
        if encrypted else []
    return notes + readable_key_notes(key_path, info)


def readable_key_notes(key_path: Path, info: os.stat_result | None = None) -> list[str]:
    """What to say of a file that holds the key a renewal keeps (privkey.pem, or the bundle.p12 written again with
    its mode, :func:`same_key`) when others than its owner can read it (see :func:`kept_key_notes`)."""
    from certkit.text import shown

    try:
        info = info or key_path.stat()
    except OSError:
        return []
    mode = stat.S_IMODE(info.st_mode)
    notes: list[str] = []
    if _acl_of(key_path) is not None and mode & 0o077 and not mode & 0o007:  # its group bits are the ACL's mask
        return notes + [f"{shown(key_path)} has an access control list (setfacl), which gives users or groups "
                        f"access to the private key the renewed certificate keeps: check that it lets in only the "
                        f"server that uses it: getfacl {shown(key_path)}"]
    if not mode & 0o077 or (not mode & 0o037 and info.st_gid != _primary_group()):
        return notes
    who = "every user" if mode & 0o007 else f"the users of the group {_group_name(info.st_gid)}"
    return notes + [f"{shown(key_path)} has mode {mode:04o}: {who} can read the private key the renewed "
                    f"certificate keeps; run: chmod 600 {shown(key_path)} (or renew with --rekey, since it may have "
                    "been read)"]


def _primary_group() -> int:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_gid
    except KeyError:
        return os.getgid()


def _group_name(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
