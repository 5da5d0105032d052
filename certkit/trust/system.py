"""The distribution's trust store (Debian/Ubuntu, Fedora/RHEL, Arch, openSUSE): :class:`SystemStore`.

The store OpenSSL, GnuTLS, curl, Python, Go and most programs read. certkit
writes an anchor file into the distribution's folder of local anchors and runs
its refresh command (which, per distribution family, and which family this is:
:mod:`certkit.trust.system_layouts`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from certkit.text import shown
from certkit.trust.anchor import Anchor
from certkit.trust.store import Found, Store, StoreState, TrustError, sort_found
from certkit.trust.system_layouts import _DEBIAN_JAVA_CACERTS, SystemLayout, overriding_variables
from certkit.trust.tools import (
    CERTKIT_NAME,
    carries_fingerprint,
    describe_pem,
    find_tool,
    key_id,
    mount_point_advice,
    mounted_on_its_own,
    pem_blocks,
    pem_ders,
    pem_fingerprints,
    run_tool,
    succeeded,
)

_HASH_NAME = re.compile(r"([0-9a-f]{8})\.([0-9]+)")  # what OpenSSL looks up in its folder: the subject hash, .N


class SystemStore(Store):
    """The distribution's store, which OpenSSL, GnuTLS, curl, Python, Go and most programs read."""

    kind = "system"

    def __init__(self, layout: SystemLayout, env: Mapping[str, str] | None = None) -> None:
        self.layout = layout
        self.env = env
        self.label = f"{layout.family} system store"
        self.location = str(layout.anchors)
        self.notes = overriding_variables(layout, os.environ if env is None else env)
        self.aliases = []

    @property
    def java_reads(self) -> bool:  # type: ignore[override]
        return self.layout.java_copy is not None and self.layout.java_copy.exists()

    def blocked(self, anchor: Anchor | None = None, *, removing: bool = False) -> tuple[str, str] | None:
        if os.geteuid() != 0:
            return "needs-root", f"changing the system trust store ({self.layout.anchors}) needs root"
        return None

    def _files(self) -> list[Path]:
        try:
            return sorted(p for p in self.layout.anchors.iterdir()
                          if CERTKIT_NAME.match(p.name) and p.suffix == self.layout.suffix)
        except OSError:
            return []

    def _bundle(self) -> set[str]:
        try:
            return set(pem_fingerprints(self.layout.bundle.read_bytes()))
        except OSError:
            return set()

    def state(self, anchor: Anchor | None) -> StoreState:
        entries = []
        for path in self._files():
            try:
                found = describe_pem(path.name, data := path.read_bytes())
            except OSError as exc:
                entries.append(Found(path.name, "", f"(unreadable: {exc.strerror})"))
                continue
            # certkit names a file after its certificate's fingerprint: a file of that form holding another
            # certificate is not certkit's doing, and is never counted (nor removed) as certkit's.
            found.ours = carries_fingerprint(path.name, pem_fingerprints(data))
            if not found.ours:
                self.note_misnamed(found)
            entries.append(found)
        gone = self._leftovers({e.name for e in entries})
        state = sort_found(anchor, entries + gone, StoreState())
        bundle, hashed = self._bundle(), self._hashed()
        read = bundle | hashed.keys()  # what some of its clients trust: the bundle, or OpenSSL's folder by hash
        for entry in state.older:  # its file there, but not (or no longer) in what clients read
            if entry.fingerprint and entry.fingerprint not in read:
                entry.not_trusted = f"not in {self.layout.bundle}: run {shlex.join(self.layout.refresh_added)}"
        if anchor is not None:
            if state.current and anchor.fingerprint not in bundle:
                # A refresh stopped between its links and its bundle (killed, or its bundle a mount point): OpenSSL
                # clients trust the CA already, the others not yet.
                already = (f" (OpenSSL clients, curl and Python, already find it in {self.layout.hashed} by its "
                           "subject hash; GnuTLS and Java do not)") if anchor.fingerprint in hashed else ""
                state.pending = (f"not yet in {self.layout.bundle}{already}: run "
                                 f"{shlex.join(self.layout.refresh_added)}")
            elif not state.current and anchor.fingerprint in read:
                state.elsewhere.append(self._holding(anchor.fingerprint, bundle, hashed))
            if anchor.intermediate_fingerprint in read:
                # The CA directory's own intermediate, in the bundle by hand (its ca.pem copied into the anchors):
                # curl (which accepts a partial chain), GnuTLS, Go and Java (Debian's copy) accept what it signs,
                # without the root. Found like the root's own copies, it is trusted whoever added it.
                state.intermediate.append(self._holding(anchor.intermediate_fingerprint, bundle, hashed, by=""))
            if state.current is not None and state.current in gone:
                state.pending = (f"certkit's file {state.current.name} was taken out, but {self.layout.bundle} still "
                                 "holds the CA (a removal stopped part-way, or the file deleted without "
                                 f"{shlex.join(self.layout.refresh_removed)}): its clients still trust it; "
                                 "certkit trust uninstall finishes the removal, certkit trust install puts the file "
                                 "back")
            known = {e.fingerprint for e in state.same_key} | {anchor.fingerprint, anchor.intermediate_fingerprint}
            state.same_key += self._copies_of_its_key(anchor, bundle, hashed, known)
        return state

    def _copies_of_its_key(self, anchor: Anchor, bundle: set[str], hashed: dict[str, Path],
                           known: set[str]) -> list[Found]:
        """Certificates of the CA's subject and key that the store's clients read and certkit did not name (an
        earlier root of the CA copied in by hand, or a root made again from its key): clients accept what the CA
        signs through them. Only those holding the subject's bytes are parsed."""
        import hashlib

        from cryptography import x509
        from cryptography.exceptions import UnsupportedAlgorithm

        subject, ders = anchor.cert.subject.public_bytes(), []
        for path in (self.layout.bundle, *{p for f, p in hashed.items() if f not in bundle}):
            try:
                with path.open("rb") as f:
                    ders += [der for der in pem_ders(f.read(16 << 20)) if subject in der]
            except OSError:
                continue
        found: list[Found] = []
        for der in ders:
            fingerprint = hashlib.sha256(der).hexdigest()
            try:
                cert = x509.load_der_x509_certificate(der)
                same = cert.subject == anchor.cert.subject and key_id(cert) == anchor.public_key_sha256
            except (ValueError, UnsupportedAlgorithm):
                continue
            if not same or fingerprint in known:
                continue
            known.add(fingerprint)
            held = self._holding(fingerprint, bundle, hashed, by="")
            where = Path(held)
            entry = Found(where.name if where.parent == self.layout.anchors else held, fingerprint,
                          cert.subject.rfc4514_string(), cert.not_valid_after_utc, ours=False,
                          key=anchor.public_key_sha256)  # the same key: just compared
            entry.remove_with = self.removal(entry) if where.parent == self.layout.anchors else None
            found.append(entry)
        return found

    def _holding(self, fingerprint: str, bundle: set[str], hashed: dict[str, Path], *,
                 by: str = " (added by other means)") -> str:
        """Where the store's clients get a certificate certkit did not add: the file of the folder of anchors that
        holds it (someone's own), else the bundle (a distribution's CA, or another folder's), else the file of
        OpenSSL's folder of certificates that only OpenSSL clients find (put there by hand), saying so."""
        try:
            files = sorted(p for p in self.layout.anchors.iterdir() if p.suffix == self.layout.suffix)
        except OSError:
            files = []
        for path in files if fingerprint in bundle else []:
            try:
                if not path.is_file():  # a FIFO would never end a read
                    continue
                with path.open("rb") as f:
                    if fingerprint in pem_fingerprints(f.read(1 << 20)):
                        return f"{path}{by}"
            except OSError:
                continue
        if fingerprint in bundle:
            return f"{self.layout.bundle}{by}"
        why = (f"not in {self.layout.bundle}: OpenSSL clients (curl, Python) find it in {self.layout.hashed} by its "
               "subject hash, GnuTLS and Java do not")
        return f"{hashed[fingerprint]} ({by.strip(' ()')}; {why})" if by else f"{hashed[fingerprint]} ({why})"

    def _hashed(self) -> dict[str, Path]:
        """fingerprint -> file of every certificate OpenSSL clients find in its folder of certificates (:attr:`hashed`):
        by the names it looks up, HASH.0, HASH.1... up to the first missing one (each a file or a link to one)."""
        folder = self.layout.hashed
        try:
            names = set(os.listdir(folder)) if folder is not None else set()
        except OSError:
            return {}
        found: dict[str, Path] = {}
        for name in sorted(names):
            if not (match := _HASH_NAME.fullmatch(name)) or any(
                    f"{match[1]}.{i}" not in names for i in range(int(match[2]))):
                continue
            path = folder / name
            try:
                if not path.is_file():  # a FIFO would never end a read; a link leading nowhere opens nothing
                    continue
                with path.open("rb") as f:
                    data = f.read(1 << 20)
                target = path.resolve()
            except (OSError, RuntimeError):
                continue
            for fingerprint in pem_fingerprints(data):
                found.setdefault(fingerprint, target if target.parent == folder.resolve() else path)
        return found

    def _leftovers(self, names: set[str]) -> list[Found]:
        """certkit's copies whose file was taken out while the bundle still holds them (a removal stopped part-way, by
        a failed or killed refresh, or a file deleted by hand without one): Debian's link to the file is left behind,
        leading nowhere. Still trusted, and certkit's to take out (their files are not in ``names``)."""
        if self.layout.links is None:
            return []
        try:
            links = [p for p in self.layout.links.iterdir() if CERTKIT_NAME.match(p.name) and p.is_symlink()
                     and not p.exists()]
            targets = [Path(os.readlink(link)) for link in links]
            blocks = pem_blocks(self.layout.bundle.read_bytes()) if links else []
        except OSError:
            return []
        found = []
        for target in targets:
            if target.parent != self.layout.anchors or target.name in names or not target.name.endswith(
                    self.layout.suffix) or not (match := CERTKIT_NAME.match(target.name)):
                continue
            block = next((b for b in blocks if pem_fingerprints(b)[0].startswith(match[1])), None)
            if block is not None:  # else not in what clients read: nothing is trusted
                found.append(describe_pem(target.name, block))
                names.add(target.name)
        return found

    def _refresh(self, argv: tuple[str, ...]) -> None:
        tool = find_tool(argv[0], self.env, sbin=True) or argv[0]
        try:
            proc = succeeded(run_tool([tool, *argv[1:]], env=self.env), shlex.join(argv))
        except TrustError as exc:  # a bundle mounted on its own (a container's): its rename fails, "busy"
            if mounted_on_its_own(self.layout.bundle):
                raise TrustError(f"{exc}; {mount_point_advice(self.layout.bundle)}") from None
            raise
        # update-ca-certificates reports a failed hook (Java's copy not updated) as "E: ..." yet exits 0.
        for line in (proc.stdout + proc.stderr).decode(errors="replace").splitlines():
            if line.startswith(("E: ", "W: ")):
                self.notes.append(f"{argv[0]}: {shown(line)}")

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """This store to this run alone (a lock on its folder of anchors): two certkit runs changing it at once ran
        the refresh twice at once, which updates one bundle, one folder of links and Java's copy with no lock of its
        own. One run's bundle replaced the other's (install: 'ran, but the bundle does not hold the CA', for a CA
        trusted in the end), both held dpkg's lock for Java's hook ('dpkg frontend lock was locked'), the bundle
        came out with a CA twice. They take turns, as they do for a Java keystore."""
        import fcntl

        self.layout.anchors.mkdir(mode=0o755, parents=True, exist_ok=True)
        lock = os.open(self.layout.anchors, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield
        finally:
            os.close(lock)  # the turn of the next one

    def add(self, anchor: Anchor) -> None:
        with self._turn():
            self._add(anchor)

    def _add(self, anchor: Anchor) -> None:
        from certkit.testhooks import pause_at

        path = self.layout.anchors / f"{anchor.file_stem}{self.layout.suffix}"
        state = self.state(anchor)
        created = False
        if state.current is None and (path.exists() or path.is_symlink()):
            # Not this CA (certkit's copy of it would be state.current): someone else's file, under certkit's name.
            raise TrustError(f"{path} is there and does not hold this CA: certkit does not change a file it did "
                             "not add. Rename or delete that file and run again")
        if state.current is None or not (path.exists() or path.is_symlink()):  # or its file taken out (_leftovers)
            self.layout.anchors.mkdir(mode=0o755, parents=True, exist_ok=True)
            _write_atomically(path, anchor.pem, 0o644)
            created = True
        pause_at("staged")
        try:
            self._refresh(self.layout.refresh_added)
        except BaseException:
            # Failed, or stopped (Ctrl-C, SIGTERM: the refresh is killed wherever it is, perhaps with its links made,
            # which curl and Python read, or its bundle written): the store is left as it was, whole, also then.
            from certkit.issuing import uninterrupted

            if created:
                with uninterrupted():
                    path.unlink(missing_ok=True)
                    with contextlib.suppress(TrustError, OSError):
                        self._refresh_removed()
            raise
        if anchor.fingerprint not in self._bundle():
            raise TrustError(f"{shlex.join(self.layout.refresh_added)} ran, but {self.layout.bundle} does not "
                             f"hold the CA; check {path}.")
        self._running_programs()

    def _running_programs(self) -> None:
        """Note that a program running now may keep the trust it read: a Go program reads the store once; a Python
        program's SSL context keeps each CA it has read from it (a CA taken out stays trusted there), and Java
        programs read Debian's copy in Java's cacerts once. certkit cannot find them: they hold no file open."""
        java = ", Java programs its copy in Java's cacerts" \
            if self.layout.hooks is not None and _DEBIAN_JAVA_CACERTS.exists() else ""
        note = (f"programs running now may keep the trust they read from this store (a Go program reads it once{java}; "
                "a Python program's SSL context keeps each CA it has read from it): restart them to see this change")
        if note not in self.notes:
            self.notes.append(note)

    def removal(self, entry: Found) -> str | None:
        sudo = ["sudo"] if os.geteuid() != 0 else []
        steps = [[*sudo, "rm", "-f", str(self.layout.anchors / entry.name)], [*sudo, *self.layout.refresh_removed]]
        if self.layout.hooks is not None and _DEBIAN_JAVA_CACERTS.exists():
            # --fresh tells the hooks nothing (see LAYOUTS): Java's copy goes only by hand.
            steps.append([*sudo, "keytool", "-delete", "-alias", f"debian:{Path(entry.name).stem}.pem",
                          "-keystore", str(_DEBIAN_JAVA_CACERTS), "-storepass", "changeit"])
        return " && ".join(map(shlex.join, steps))

    def remove(self, entries: Sequence[Found]) -> None:
        with self._turn():
            self._remove(entries)

    def _remove(self, entries: Sequence[Found]) -> None:
        saved: dict[Path, tuple[bytes, int, str]] = {}
        for entry in entries:
            path = self.layout.anchors / entry.name
            with contextlib.suppress(OSError):
                saved[path] = (path.read_bytes(), path.stat().st_mode & 0o777, entry.fingerprint)
            path.unlink(missing_ok=True)
        try:
            self._refresh_removed()
        except BaseException as exc:
            # The refresh failed or was stopped: each CA the bundle still holds gets its file back, so that the store
            # says what its clients trust (certkit's copy, still trusted) and another uninstall takes it out; without
            # its file, status called it someone else's ("added by other means") and uninstall said "absent".
            bundle = self._bundle()
            back = [path for path, (data, mode, fingerprint) in saved.items() if fingerprint in bundle]
            for path in back:
                with contextlib.suppress(OSError):
                    _write_atomically(path, *saved[path][:2])
            if isinstance(exc, TrustError) and back:
                raise TrustError(f"{exc}; certkit put back {', '.join(p.name for p in back)}, which "
                                 f"{self.layout.bundle} still holds: its clients still trust it. Run again once "
                                 "that is mended") from None
            raise
        self._running_programs()

    def _refresh_removed(self) -> None:
        """The refresh after files were taken out; on Debian without hooks, then each hook told which links went."""
        if self.layout.hooks is None or self.layout.links is None:
            self._refresh(self.layout.refresh_removed)
            return
        before = self._links()
        with tempfile.TemporaryDirectory(prefix="certkit-no-hooks-") as no_hooks:
            self._refresh((*self.layout.refresh_removed, "--hooksdir", no_hooks))
        after = self._links()
        changes = "".join([f"+{self.layout.links / n}\n" for n in sorted(after - before)]
                          + [f"-{self.layout.links / n}\n" for n in sorted(before - after)])
        if changes:
            self._run_hooks(changes.encode())

    def _links(self) -> set[str]:
        assert self.layout.links is not None
        try:
            return {p.name for p in self.layout.links.iterdir() if p.is_symlink() and p.name.endswith(".pem")}
        except OSError:
            return set()

    def _run_hooks(self, changes: bytes) -> None:
        """Tell each hook (as run-parts would pick them) which links came and went, as update-ca-certificates
        does after a change it noticed itself."""
        assert self.layout.hooks is not None
        try:
            hooks = sorted(p for p in self.layout.hooks.iterdir()
                           if re.fullmatch(r"[A-Za-z0-9_-]+", p.name) and p.is_file() and os.access(p, os.X_OK))
        except OSError:
            return
        for hook in hooks:
            succeeded(run_tool([str(hook)], input=changes, env=self.env), f"the hook {hook}")


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
