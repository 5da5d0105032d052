"""Where certkit may write: every output path resolved, checked, and kept out of CA directories.

Before anything is signed, each place a command will write (a bundle folder,
a CRL file, an export) goes through :func:`check_output`: it is resolved
(symbolic links and ``..`` followed, as the kernel will follow them), refused
if it lies in a CA directory (the one in use, or any folder that holds a CA's
key or inventory) whatever ``--force`` says, and refused if the kernel would
refuse it later (a NUL byte, a file name over 255 bytes once certkit's
temporary name is added, a path over 4,096 bytes). So an output option can
never replace a CA's key or certificate, and a signed certificate is never
recorded for a folder that cannot be written.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from certkit.errors import CertkitError, OutputExists, UnsafeOutputPath
from certkit.text import shown

NAME_MAX = 255  # bytes in one file name: ext4, XFS, btrfs, tmpfs, APFS
PATH_MAX = 4096
# certkit writes ``.NAME.PID-RANDOM[.old].certkit-tmp`` beside its target first.
TEMPORARY_OVERHEAD = len(".") + len(".4194304-") + 16 + len(".old.certkit-tmp")
# What marks a folder as a CA directory (certkit.store's files): its key, its inventory,
# its parents, its configuration. A bundle folder holds ca.pem too, but none of these.
CA_MARKERS = ("ca-key.pem", "inventory.sqlite3", "parents.pem", "certkit-ca.json")


def absolute(path: str | Path) -> str:
    """``path`` made absolute without changing what it names: what ``os.path.abspath`` does, but for a ``..``
    component, which the kernel takes physically (``link/..`` is the folder above where ``link`` leads, not the
    folder holding ``link``): the part up to the last ``..`` is resolved as the kernel resolves it."""
    text = os.fspath(path)
    parts = text.split(os.sep)
    if ".." not in parts:
        return os.path.abspath(text)
    last = len(parts) - 1 - parts[::-1].index("..")
    head = os.sep.join(parts[:last + 1]) or os.sep
    return os.path.normpath(os.path.join(os.path.realpath(head), *parts[last + 1:]))


def resolved(path: str | Path, cache: dict | None = None) -> Path:
    """``path`` made absolute with every symbolic link and ``..`` resolved (the part that exists),
    as the kernel will resolve it when certkit writes there.

    With ``cache`` (a batch's, for thousands of outputs in a few folders), the folder that
    holds ``path`` is resolved once; ``path``'s own name is still looked at every time."""
    return Path(_resolved(os.fspath(path), cache))


def _resolved(text: str, cache: dict | None) -> str:
    if cache is None:
        return os.path.realpath(text)  # (not abspath first: it takes link/.. by name)
    # The few paths of the line being checked (its folder, the batch's folder, the CA's) are asked
    # for several times in a row: remembered briefly, never for the whole batch.
    recent = cache.setdefault("recent", {})
    if text not in recent:
        if len(recent) > 16:
            recent.clear()
        recent[text] = _resolved_once(text, cache)
    return recent[text]


def _resolved_once(text: str, cache: dict) -> str:
    whole = absolute(text)
    parent, name = os.path.split(whole)
    key = ("resolved", parent)
    if key not in cache:
        cache[key] = os.path.realpath(parent)
    candidate = os.path.join(cache[key], name)
    if name and not os.path.islink(candidate):
        return candidate
    return os.path.realpath(whole)  # a link (or the root): followed the whole way


def _inside(target: str, folder: str) -> bool:
    """Whether the resolved path ``target`` is the resolved ``folder`` or below it."""
    return target == folder or target.startswith(folder if folder.endswith(os.sep) else folder + os.sep)


def is_ca_directory(folder: str | Path) -> bool:
    folder = os.fspath(folder)
    return os.path.isdir(folder) and os.path.exists(os.path.join(folder, "ca.pem")) and any(
        os.path.lexists(os.path.join(folder, marker)) for marker in CA_MARKERS)


def _ancestor_is_ca_directory(folder: str, cache: dict | None) -> bool:
    # The ancestors of thousands of batch folders are the same few: a batch passes a cache.
    if cache is None:
        return is_ca_directory(folder)
    key = ("ca", folder)
    if key not in cache:
        cache[key] = is_ca_directory(folder)
    return cache[key]


def check_name(path: str | Path, what: str = "output path") -> None:
    """Refuse what the kernel would refuse: NUL bytes, over-long names and paths; and control characters
    (a newline), which the kernel allows but which break every tool that reads paths a line at a time
    (a hook's CERTKIT_FOLDERS, one per line; a shell loop over ``certkit list``)."""
    text = os.fspath(path)
    if "\0" in text:
        raise UnsafeOutputPath(f"The {what} {shown(text)} contains a NUL byte; no file can be named that way.")
    if not text.isprintable() and _has_control(_created_part(text)):
        raise UnsafeOutputPath(f"The {what} {shown(text)} contains a control character; certkit does not create "
                               "names that break tools reading paths a line at a time. Choose another name.")
    # below an existing folder so named: refused for what certkit would make, not for a bundle it made
    # there before this rule (renewed in place, or replaced with --force)
    absolute = text if os.path.isabs(text) and text.isprintable() else os.path.abspath(text)
    if absolute.splitlines() != [absolute] and not os.path.lexists(text):
        where = "" if absolute == text else f" ({shown(absolute)})"
        raise UnsafeOutputPath(f"The {what} {shown(text)}{where} is below a folder whose name holds a line "
                               "break; what certkit writes there would break tools reading paths a line at a "
                               "time (a renewal hook's CERTKIT_FOLDERS). Write it elsewhere.")
    check_lengths(text, what)


def check_path_argument(value, what: str) -> str:
    """A path the library is given to read, refused as the command line refuses an argument: not a str or a
    Path (a TypeError that names it), empty (an unset variable: not the current folder), not UTF-8, or longer
    than the kernel takes. Returns it as a str."""
    from certkit.errors import InvalidArgument
    from certkit.names import check_utf8
    from certkit.vocabulary import wrong_type

    if not isinstance(value, (str, os.PathLike)) or not isinstance(os.fspath(value), str):
        raise wrong_type(what, "a str or a Path", value)
    text = os.fspath(value)
    if not text.strip():
        raise InvalidArgument(f"{what} is {'empty (an unset variable?)' if not text else 'blank'}; give a path.")
    check_utf8(text, f"The {what}", InvalidArgument)
    if "\0" not in text:
        check_lengths(text, what, temporary=False)
    return text


def refuse_bundle_as_ca(folder: Path, other: str = "folder", *, new: bool = True) -> None:
    """Refuse a certificate bundle folder (cert.pem beside the ca.pem of its CA, no CA key nor configuration) as
    a CA directory: as a ``new`` one (it is no CA, whatever its ca.pem says, and making one there would mix the
    two), or as one to open (not "the CA directory is incomplete: its inventory is missing")."""
    from certkit.errors import CAExists, CANotFound

    markers = ("ca-key.pem", "certkit-ca.json") if new else CA_MARKERS
    if (folder / "cert.pem").is_file() and (folder / "ca.pem").exists() and not any(
            (folder / name).exists() for name in markers):
        said = f"{shown(folder)} is a certificate bundle (it holds cert.pem and the ca.pem of the CA that issued it), "
        if new:
            raise CAExists(f"{said}not a CA directory; choose another {other}.")
        raise CANotFound(f"{said}not a CA directory: give the folder 'certkit init-ca' made.")


def check_lengths(text: str, what: str, *, temporary: bool = True) -> None:
    """Refuse a path whose whole, or one of whose names, is longer than the kernel takes (with room for the
    temporary name certkit writes beside the last one, when it is to be written: ``temporary``)."""
    if len(text) < NAME_MAX - TEMPORARY_OVERHEAD and text.isascii() and len(os.getcwd()) < PATH_MAX // 2:
        return  # short and plain (thousands of batch lines): no name in it, nor the whole, can be too long
    absolute = os.fsencode(os.path.abspath(text))
    if len(absolute) >= PATH_MAX:
        raise UnsafeOutputPath(f"The {what} {shown(text[:60])}... is {len(absolute)} bytes long; "
                               f"paths are limited to {PATH_MAX - 1}.")
    parts = Path(text).parts
    for part in parts:
        room = temporary and part is parts[-1]
        limit = NAME_MAX - (TEMPORARY_OVERHEAD if room else 0)
        if len(os.fsencode(part)) > limit:
            raise UnsafeOutputPath(
                f"The {what} {shown(text[:60])}... has a name of {len(os.fsencode(part))} bytes "
                f"('{shown(part[:30])}...'); " + (f"certkit can write names of at most {limit} bytes there (file "
                                                  f"systems allow {NAME_MAX}, and certkit needs room for a "
                                                  "temporary name)." if room else
                                                  f"file systems allow names of at most {NAME_MAX} bytes.")
            )


def _has_control(text: str) -> bool:
    """C0 and C1 controls, DEL, and the Unicode line and paragraph separators: what line-based readers
    (a shell's read, Python's splitlines) take for the end of a line. Each of them is unprintable to
    ``str.isprintable``, which a batch's names pass in C (a tenth of a manifest line's check)."""
    if text.isprintable():
        return False
    return any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ch in "\u2028\u2029" for ch in text)


def _created_part(text: str) -> str:
    """The part of a path that does not exist yet: what certkit would create (folders that exist are
    the user's, whatever their names)."""
    parts = Path(text).parts
    for index in range(len(parts)):
        if not os.path.lexists(os.path.join(*parts[:index + 1])):
            return os.path.join(*parts[index:])
    return ""


def check_output(path: str | Path, ca_dirs: Iterable[str | Path] = (), *, what: str = "output path",
                 cache: dict | None = None) -> Path:
    """Check one output path (a folder, or a file) and return it resolved.

    Refused: anything :func:`check_name` refuses, and any path inside one of
    ``ca_dirs`` or inside a folder that is itself a CA directory.
    """
    check_name(path, what)
    target = _resolved(os.fspath(path), cache)
    refuse_system_folder(path, target, what, cache)
    for ca_dir in ca_dirs:
        if _inside(target, _resolved(os.fspath(ca_dir), cache)):
            raise UnsafeOutputPath(
                f"The {what} {shown(path)} is in the CA directory {shown(ca_dir)}; certkit never writes "
                "there, even when asked to replace files (it would replace the CA's own). Choose another place."
            )
    folder, above = target, False
    while True:
        if _ancestor_is_ca_directory(folder, cache) if above else is_ca_directory(folder):
            raise UnsafeOutputPath(
                f"The {what} {shown(path)} is in {shown(folder)}, which holds a CA (its key or inventory); "
                "certkit never writes there, even when asked to replace files. Choose another place."
            )
        parent = os.path.dirname(folder)
        if parent == folder:
            return Path(target)
        folder, above = parent, True


# The operating system's own folders. A bundle folder (a CA directory, any output folder) is a folder of its own, never
# one of these: issue-peer --out / wrote cert.pem and privkey.pem among the root folder's; nor is an output file
# written straight into one, but for the few where a user's files belong (a CRL or a tar in /tmp or /root).
# (/proc and /sys take no new file: check_can_write says so.)
SYSTEM_FOLDERS = frozenset(("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32",
                            "/media", "/mnt", "/opt", "/root", "/run", "/sbin", "/srv", "/tmp", "/usr", "/var",
                            "/usr/bin", "/usr/lib", "/usr/local", "/usr/sbin", "/usr/share", "/var/lib"))
FILES_WELCOME = frozenset(("/home", "/media", "/mnt", "/opt", "/root", "/srv", "/tmp"))


def refuse_system_folder(path: str | Path, target: str, what: str, cache: dict | None = None) -> None:
    """Refuse, whatever --force says, the output ``path`` (resolved: ``target``) that is a system folder or the home
    folder ($HOME), or a file (``what`` names no folder) straight in a system folder only the system's files belong
    in (:data:`SYSTEM_FOLDERS`, but :data:`FILES_WELCOME`). With ``cache`` (a batch's), $HOME is resolved once."""
    folder = what.endswith(("folder", "directory"))
    where = target if folder else os.path.dirname(target)
    leads = "" if os.path.abspath(path) == target else f" (it leads to {shown(target)})"
    if folder and where not in SYSTEM_FOLDERS and where == _home(cache):
        raise UnsafeOutputPath(f"The {what} {shown(path)}{leads} is your home folder: certkit writes into a folder "
                               "of its own, never among your own files, even with --force. Give a folder of its "
                               f"own, such as {shown(where)}/certkit/NAME.")
    if where not in SYSTEM_FOLDERS or (not folder and where in FILES_WELCOME):
        return
    if folder:
        raise UnsafeOutputPath(f"The {what} {shown(path)}{leads} is the system folder {where}: certkit writes into a "
                               "folder of its own, never among the system's files, even with --force. Give a folder "
                               f"of its own, such as {where.rstrip('/')}/certkit/NAME.")
    raise UnsafeOutputPath(f"The {what} {shown(path)}{leads} is in the system folder {where}, where only the system's "
                           "own files belong: certkit never writes there, even with --force. Choose another place.")


def _home(cache: dict | None) -> str:
    if cache is None:
        return os.path.realpath(os.path.expanduser("~"))
    key = ("home", os.environ.get("HOME"))
    if key not in cache:
        cache[key] = os.path.realpath(os.path.expanduser("~"))
    return cache[key]


def check_folders_above(path: str | Path, what: str = "output") -> None:
    """Refuse ``path`` when something that is not a folder stands where a folder above it must be
    (``--out web/a`` where ``web`` is a file): it could never be written, so say so before signing."""
    from certkit.atomic import not_a_folder

    for above in Path(path).absolute().parents:
        if os.path.isdir(above):
            return
        if os.path.lexists(above) and not os.path.isdir(above):  # not one another writer made meanwhile
            raise OutputExists(f"{not_a_folder(above)}, so the {what} "
                               f"{shown(path)} cannot be written.", replaceable=False)


def check_new_folder(folder: str | Path, cache: dict | None = None) -> None:
    """The checks of a bundle folder yet to be made that depend only on the folder above it (who controls the
    folders above it, that they are folders, that a file can be made there): with ``cache`` (a batch's, for
    thousands of new folders side by side), made once per folder above, not once per bundle (a third of a
    batch line's check); what fails is never remembered, so each line that meets it is refused."""
    key = ("new folder in", os.path.dirname(absolute(folder)))
    if cache is not None and key in cache:
        return
    refuse_controlled_above(folder)
    check_folders_above(folder, "output folder")
    check_can_write(folder)
    if cache is not None:
        cache[key] = True


def check_can_write(path: str | Path, what: str = "output folder", *, listed: bool = False) -> None:
    """Refuse, before anything is signed, a place that cannot be written: ``path`` (or the nearest
    folder above it that exists) on a read-only file system, not writable by this user, or where no
    file can be made though its mode says one can (/proc, /sys: tried, :func:`_make_a_file`). With ``listed``,
    an existing folder ``path`` this user may not list either (mode 0300): what it holds is read before files
    in it are replaced."""
    here = Path(path).absolute()
    while not os.path.isdir(here) and here != here.parent:
        here = here.parent
    try:
        read_only = bool(os.statvfs(here).f_flag & os.ST_RDONLY)
    except OSError:
        return  # said when writing, in the words of what failed
    if read_only:
        raise CertkitError(f"Cannot write the {what} {shown(path)}: the file system is read-only.")
    if not os.access(here, os.W_OK):
        raise CertkitError(f"Cannot write the {what} {shown(path)}: permission denied ({shown(here)}).")
    if listed and here == Path(path).absolute() and not os.access(here, os.R_OK):
        raise CertkitError(f"Cannot write the {what} {shown(path)}: permission denied to read it (its mode "
                           f"{os.stat(here).st_mode & 0o7777:04o}), and certkit reads what a folder holds before it "
                           "replaces files there; nothing was written. Give it back the read permission, or "
                           "choose another folder.")
    try:
        _make_a_file(here)
    except OSError as exc:
        raise CertkitError(f"Cannot write the {what} {shown(path)}: no file can be made in {shown(here)} "
                           f"({exc.strerror or exc}).") from None


def _make_a_file(here: Path) -> None:
    """Make a file in the folder ``here`` and remove it, or raise the OSError that refused it: an unnamed one
    (``O_TMPFILE``) where the file system can, so that a kill in between leaves nothing in a user's folder; else
    a named one (``/proc``, ``/sys``: refused either way, with the reason a write would get)."""
    from certkit.atomic import temporary_name

    if hasattr(os, "O_TMPFILE"):  # Linux
        try:
            os.close(os.open(here, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600))
            return
        except OSError as exc:  # not on this file system (or kernel): the named file says
            if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
    probe = here / temporary_name("probe")
    os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    os.unlink(probe)


def within(base: str | Path, path: str | Path, *, cache: dict | None = None) -> bool:
    """Whether ``path`` (resolved) is ``base`` (resolved) or inside it."""
    return _inside(_resolved(os.fspath(path), cache), _resolved(os.fspath(base), cache))


def leads_outside(path: str | Path, planned: str, *, cache: dict | None = None) -> str | None:
    """Where ``path`` leads (resolved) if that is not in the resolved folder ``planned``, else None."""
    real = _resolved(os.fspath(path), cache)
    return None if _inside(real, planned) else real


def check_renewable_in_place(folder: str | Path) -> None:
    """Refuse, before anything is signed, to renew in place a bundle folder whose name leaves no room for the
    temporary name of the folder the renewal assembles beside it (:data:`TEMPORARY_OVERHEAD` bytes longer): a
    name of 214 to 255 bytes, which a file system took from ``mv`` or another tool, though certkit would not
    have made it. Nor one that is a symbolic link now (the bundle moved elsewhere, a link left in its place):
    certkit does not write through links, and renewing the folder it leads to records the bundle there. Said
    as it is, not as an output folder's: none was given."""
    name, text = Path(absolute(folder)).name, os.fspath(folder)
    if os.path.islink(folder):
        real = os.path.realpath(folder)
        raise UnsafeOutputPath(
            f"The bundle folder {shown(text)} is a symbolic link now (to {shown(real)}); certkit does not write "
            f"through links: renew the folder it leads to (certkit renew {shown(real)}), which later runs renew "
            "in place, or give --out DIR.")
    limit = NAME_MAX - TEMPORARY_OVERHEAD
    if len(os.fsencode(name)) > limit:
        cut = "..." if len(text) > 60 else ""
        raise UnsafeOutputPath(
            f"The bundle folder {shown(text[:60])}{cut} cannot be renewed in place: its name is "
            f"{len(os.fsencode(name))} bytes long ('{shown(name[:30])}...'), and a renewal assembles the new bundle "
            f"in a folder beside it under a temporary name {TEMPORARY_OVERHEAD} bytes longer, more than the "
            f"{NAME_MAX} bytes file systems allow. Rename the folder to a name of at most {limit} bytes and renew "
            "it there, or give --out DIR to write the renewed bundle into a new folder.")


def refuse_controlled_above(path: str | Path, what: str = "output folder") -> None:
    """Refuse to write ``path`` (a bundle folder, a CRL file, a new CA directory) below a folder that another
    user controls: one owned by someone other than this user or root, or writable by every user without the
    sticky bit. certkit reaches what it writes there by name (a temporary folder beside ``path``, then a rename):
    that user could move those names between two steps and put links in their place, making a command run as
    root write its files, or move a file of root's, wherever the link leads (the folder itself is judged by
    ``bundle.check_folder_owner``). The folders above the path as given and above where it leads are judged."""
    if not hasattr(os, "geteuid"):
        return
    me, seen = os.geteuid(), set()
    for start in (absolute(path), os.path.realpath(path)):
        for above in Path(start).parents:
            if above in seen:
                continue
            seen.add(above)
            try:
                info = os.stat(above)
            except OSError:
                continue  # not there (yet): said when writing
            if not stat.S_ISDIR(info.st_mode):
                continue  # a file or a device (/dev/null) is nobody's folder: "... is not a folder", said when writing
            if info.st_uid not in (me, 0):
                who = f"belongs to another user (uid {info.st_uid}), who"
            elif info.st_mode & 0o002 and not info.st_mode & 0o1000:
                who = f"is writable by every user (mode {info.st_mode & 0o7777:04o}, no sticky bit); any of them"
            else:
                continue
            raise UnsafeOutputPath(f"The folder {shown(above)}, above the {what} {shown(path)}, {who} could move what "
                                   "certkit writes there and put links in its place, making it write or move files "
                                   "elsewhere; choose a folder of your own (or run certkit as that user).")
