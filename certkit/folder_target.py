"""Where the issuing pipeline delivers a certificate: :class:`Target` (memory) and :class:`FolderTarget`
(a bundle folder, new or replaced exactly with ``force``). Both are importable from :mod:`certkit.issuing` too."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from certkit.paths import absolute, check_output, leads_outside

if TYPE_CHECKING:
    from certkit.ca import CA, IssuedCert
    from certkit.issuing import Request


class Target:
    """Where an issued certificate is delivered: nowhere but memory, unless a subclass says."""

    sink = "memory"
    folder: Path | None = None
    # False for a renewal to memory whose predecessor is in a bundle folder: succeeds it once written there.
    succeeds = True
    # True when the certificate is valid only once a whole shared output is in place (a batch into one archive):
    # deliver_many leaves its row pending, the output marks it (formats.Output.commit) or abandons it (abort).
    deferred = False
    # True when the bytes go to another process that writes them in turn and marks the certificate valid then (a
    # batch's worker relaying a chunk for standard output to its parent): recorded pending as usual, never marked here.
    relayed = False

    def check(self, ca: "CA", request: Request) -> None:
        """Refuse, before anything is signed, what :meth:`write` could not do."""

    def write(self, issued: "IssuedCert") -> list[Path]:
        return []


class FolderTarget(Target):
    """A bundle folder: new, or (``force``) with its bundle replaced exactly."""

    sink = "folder"

    def __init__(self, folder: str | Path, *, force: bool = False, p12: bool = False,
                 extra: Callable[["IssuedCert"], Mapping[str, bytes]] | None = None, sync: bool = True,
                 sweep: bool = True, keeps_key: bool = False, replaces: Sequence[str] | None = None,
                 cache: dict | None = None) -> None:
        from certkit.constants import BUNDLE_FILES
        from certkit.issued import check_folder, p12_guard
        from certkit.vocabulary import check_bool, wrong_type

        check_folder(folder)
        for name, value in (("force", force), ("p12", p12), ("sync", sync), ("sweep", sweep)):
            check_bool(name, value)
        if extra is not None and not callable(extra):  # before anything is signed
            raise wrong_type("extra", "a function of the IssuedCert returning {file name: bytes}", extra)
        self.given, self.folder = Path(folder), Path(absolute(folder))
        self.force, self.p12, self.extra, self.sync, self.sweep = force, p12, extra, sync, sweep
        self.keeps_key = keeps_key  # a renewal in place keeps the folder's private key (not rewritten, not removed)
        self.replaces = tuple(replaces) if replaces is not None else BUNDLE_FILES
        # A batch's targets share one: the folders above thousands of outputs, resolved and checked once.
        self.cache = cache
        # A renewal in place: the serial whose bundle the folder must still hold when written; any other check
        # made again then (renew --out --force); the note naming another CA's bundle --force replaced; and the
        # CA directories the folder is checked against, at the plan and as it is written.
        self.replacing: str | None = None
        self.guard: Callable[[], None] | None = p12_guard(self) if p12 else None  # p12=True needs extra=
        self.foreign, self.ca_directories = None, ()
        # What the folder is checked against the CA directories with as it is written: a batch's, fresh for each
        # chunk (never its plan's cache, which would remember a folder a link has since sent elsewhere).
        self.recheck_cache: dict | None = None
        self.inside: tuple | None = None  # a batch's: its --out-dir, where it led at the plan, that folder's identity
        self.removed: list[str] = []  # once written with force: the notes of the old bundle's files it removed

    def recheck(self) -> None:
        """Just before recording, with the folder held (:func:`certkit.bundle_locks.folders_held`): a renewal in
        place is refused if another command renewed or replaced the bundle since it was planned."""
        from certkit.lifecycle import holds

        if self.guard is not None:
            self.guard()
        if self.replacing is not None and not holds(self.folder, self.replacing):
            from certkit.errors import CannotRenew
            from certkit.text import shown

            raise CannotRenew(f"{shown(self.given)} no longer holds the certificate {self.replacing}: another certkit "
                              "command renewed or replaced it meanwhile ('certkit list' shows it), and this renewal "
                              "was not recorded and wrote nothing.")

    def check(self, ca: "CA", request: Request, *, guard: bool = True) -> None:
        from certkit.bundle import bundle_names, check_writable
        from certkit.errors import CertkitError, OutputExists
        from certkit.files import cannot_reach_to_write

        if (said := cannot_reach_to_write(self.given, "output folder")) is not None:  # a write: never "Cannot read"
            raise CertkitError(said)
        if guard:
            check_output(self.given, ca.directories, what="output folder", cache=self.cache)
            self.ca_directories = tuple(ca.directories)  # checked again as the bundle is written
        try:
            check_writable(self.given, bundle_names(chain=bool(ca.parents), key=request.keyed and not self.keeps_key,
                                                    p12=self.p12), force=self.force, replaces=self.replaces,
                           public_key=request.public_key, cache=self.cache)
        except OutputExists as exc:
            from certkit.bundle_contents import certified_names, of_another_kind

            names = certified_names(request.identities, request.subject or request.common_name)
            raise of_another_kind(exc, self.given, request.kind, names) from None

    def write(self, issued: "IssuedCert") -> list[Path]:
        from certkit.bundle import check_extra, write_bundle
        from certkit.inventory.succession import foreign_replaced
        from certkit.testhooks import pause_at

        pause_at("writing")
        files = (own := issued.bundle_files()) | check_extra(self.extra(issued) if self.extra else None, own)
        if self.ca_directories:  # a link in it may have changed since the plan: never into a CA directory
            check_output(self.given, self.ca_directories, what="output folder", cache=self.recheck_cache)
        if self.inside is not None:  # nor out of a batch's --out-dir
            refuse_leaving(self.given, *self.inside, cache=self.recheck_cache)
        if self.force and self.replacing is None:  # read before the old bundle goes: said once it has
            self.foreign = foreign_replaced(issued.issuer_cert, self.given)
            removed = removed_files(self.given, files, self.replaces, keyed=issued.private_key is not None)
        # A journal left in the folder is bound to the certificate's row: never rolled forward once abandoned.
        inventory = [Path(d) / "inventory.sqlite3" for d in issued.ca_directories[:1]]
        owner = (str(inventory[0]), issued.serial_hex) if inventory and inventory[0].is_file() else None
        written = write_bundle(self.given, files, force=self.force, sync=self.sync, sweep=self.sweep,
                               replaces=self.replaces, owner=owner, cache=self.cache)
        if self.force and self.replacing is None:  # (a renewal in place says what it removes at its plan)
            self.removed = removed
        return written


# How the note of a file of the old bundle that --force removed reads: every issuing command, a batch too, says it.
REMOVED_NOTE = "was the replaced bundle's"


def removed_files(folder: Path, files: Mapping[str, bytes], replaces: Sequence[str], *, keyed: bool) -> list[str]:
    """The notes of the files of the bundle in ``folder`` that writing ``files`` there with --force removes (the
    rest of the old bundle: its bundle.p12, chain.pem, or the privkey.pem of another key), each named, as nobody
    asked for their removal (``keyed``: the new bundle holds a key, from which a keystore can be exported again)."""
    from certkit.bundle_contents import leftovers
    from certkit.constants import CERT_FILE, P12_FILE
    from certkit.text import shown

    if not folder.is_dir():
        return []
    notes = []
    for name in leftovers(folder, list(files), replaces, cert_pem=files.get(CERT_FILE)):
        again = f"; export it again: certkit export-p12 {shown(folder)}" if name == P12_FILE and keyed else ""
        notes.append(f"{shown(folder / name)} {REMOVED_NOTE} {name} and was removed{again}")
    return notes


def refuse_leaving(path: Path, out_dir: Path, planned: str, ident: tuple[int, int] | None = None, *,
                   cache: dict | None = None) -> None:
    """As a batch writes the bundle folder ``path``: refuse it unless it still leads into ``planned``, where its
    ``out_dir`` led at the manifest's check (``ident``: that folder's device and inode): a link put in its path since
    is never followed. Per bundle, uncached: ``out_dir`` still that folder and no link below it is a stat or two."""
    from certkit.errors import UnsafeOutputPath
    from certkit.text import shown

    if ident is not None and _stays_below(Path(path), Path(out_dir), ident):
        return
    # (resolved afresh where out_dir was there at the plan: ``cache`` may hold the folders above from before a swap)
    if (real := leads_outside(path, planned, cache=cache if ident is None else None)) is not None:
        raise UnsafeOutputPath(f"The output folder {shown(path)} leads outside the batch's output folder "
                               f"{shown(out_dir)} now (to {shown(real)}): a symbolic link was put in its path after "
                               "the manifest was checked, and certkit does not follow it.")


def confirmed(inside: tuple) -> tuple:
    """A batch's ``inside`` (its --out-dir, where it led at the check, that folder's identity), with the identity of
    an --out-dir made since (by the batch's first bundles) once it leads where the check said: each later bundle is
    then checked without the chunk's cache (:func:`refuse_leaving`)."""
    import os

    out_dir, planned, ident = inside
    if ident is None and os.path.realpath(out_dir) == planned:
        return out_dir, planned, folder_identity(out_dir)
    return inside


def folder_identity(path: str | Path) -> tuple[int, int] | None:
    """The device and inode of the folder ``path`` leads to, None if none."""
    import os
    import stat

    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISDIR(info.st_mode) else None


def _stays_below(path: Path, out_dir: Path, ident: tuple[int, int]) -> bool:
    """``out_dir`` still the folder ``ident``, and no link between it and ``path`` (a folder not there yet is made)."""
    import os
    import stat

    base = out_dir.parts
    if path.parts[:len(base)] != base or folder_identity(out_dir) != ident:
        return False
    for depth in range(len(base) + 1, len(path.parts)):
        try:
            if stat.S_ISLNK(os.lstat(Path(*path.parts[:depth])).st_mode):
                return False
        except OSError as exc:
            return isinstance(exc, FileNotFoundError)
    return True
