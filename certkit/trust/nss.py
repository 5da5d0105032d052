"""NSS databases (Chromium's ``~/.pki/nssdb``, Firefox and Thunderbird profiles): :class:`NSSStore`.

Each database is changed with ``certutil`` from the NSS tools;
:func:`nss_stores` finds the databases of a user (and says why others were skipped); why certutil
failed on one, told apart by cause: :mod:`certkit.trust.nss_failures`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from certkit.atomic import make_folders
from certkit.files import unsearchable_above
from certkit.text import shown
from certkit.trust.anchor import Anchor
from certkit.trust.nss_entries import own_certificates, server_trust, stored_labels, trusts_servers
from certkit.trust.nss_failures import _key_type_hint, add_refused, certutil_failure
from certkit.trust.nss_files import (
    CREATED_MARK,
    disk_full,
    holders,
    made_meanwhile,
    old_copies_removed,
    old_copy_left,
    only_its_own_module,
    owners_kept,
    remove_half_made,
)
from certkit.trust.nss_places import CHROMIUM_PROGRAMS, chromium_dbs, profile_roots, read_profiles
from certkit.trust.store import Found, Store, StoreResult, StoreState, TrustError, sort_found
from certkit.trust.tools import (
    CERTKIT_NAME,
    dangling_link,
    describe_pem,
    find_tool,
    pem_blocks,
    pem_fingerprints,
    run_tool,
    tool_failure,
)

NSS_TRUST = "C,,"  # a trusted issuer of TLS server certificates; nothing for e-mail or code signing
NSS_PACKAGES = ("libnss3-tools (Debian/Ubuntu), nss-tools (Fedora/RHEL), nss (Arch) "
                "or mozilla-nss-tools (openSUSE)")


class NSSStore(Store):
    """One NSS database (``sql:`` format), changed with ``certutil`` from the NSS tools."""

    kind = "nss"
    holds_copies = False

    def __init__(self, label: str, directory: Path, certutil: str, *, create: bool = False,
                 env: Mapping[str, str] | None = None, unread: str | None = None) -> None:
        self.label = label
        self.unread_because = unread  # a profile's database that its program does not read (profiles.ini)
        self.directory = directory
        self.location = str(directory)
        self.certutil = certutil
        self.create = create  # a missing database is created, as Chromium would create it
        self.env = env
        self.notes = []
        self.aliases = []

    @property
    def db(self) -> str:
        return f"sql:{self.directory}"

    def exists(self) -> bool:  # False under a folder this user may not search: blocked() says so, as a write refused
        db = self.directory / "cert9.db"
        return not unsearchable_above(db) and (db.is_file() or self.legacy())

    def legacy(self) -> bool:
        """Whether the database is in NSS's old dbm format (cert8.db and key3.db, no cert9.db): certutil reads it
        as it is, and the first change converts it to cert9.db (the old files stay), as Chromium does when it opens
        it, then trusting what it holds."""
        folder = self.directory
        return not (folder / "cert9.db").is_file() and all((folder / n).is_file() for n in ("cert8.db", "key3.db"))

    def _converting(self) -> None:
        """Say, before certkit's first change to an old-format database, that certutil converts it."""
        if self.legacy():
            self.notes.append(f"converted the NSS database {self.directory} from the old dbm format (cert8.db, left as "
                              "it was) to cert9.db, as Chromium does when it opens it")

    def _certutil(self, *args: str, input: bytes | None = None, db: str = "") -> subprocess.CompletedProcess:
        self._roll_back_interrupted()
        with owners_kept(self.directory):
            return run_tool([self.certutil, *args, "-d", db or self.db], input=input, env=self.env, timeout=60)

    def unread(self) -> str | None:
        return self.unread_because

    def blocked(self, anchor: Anchor | None = None, *, removing: bool = False) -> tuple[str, str] | None:
        if self.unread_because is not None and not removing:
            return "unread", self.unread_because
        if (closed := unsearchable_above(self.directory / "cert9.db")) is not None:  # a write: not "Cannot read"
            return "not-writable", f"{self.directory} cannot be written: this user may not search {closed}"
        if not self.exists():
            if not removing and (nowhere := self._nowhere()) is not None:
                return "missing", nowhere
            nearest = next((p for p in [self.directory, *self.directory.parents] if p.exists()), Path("/"))
            if not os.access(nearest, os.W_OK):
                return "not-writable", f"{nearest} is not writable by this user"
            return None
        for path in [self.directory, *(self.directory / n for n in ("cert9.db", "key4.db"))]:
            if path.exists() and not os.access(path, os.W_OK):
                return "not-writable", f"{path} is not writable by this user"
        # A database with a password (Firefox's Primary Password) needs it to change trust; an empty
        # password file makes certutil say so instead of asking. Deleting a certificate needs none, nor
        # does an install that finds the CA there already.
        if removing or anchor is None:
            return None
        try:
            if not self.needs_adding(self.state(anchor)):
                return None
        except TrustError:
            return None  # install reads the database again, and reports why it cannot
        proc = self._certutil("-K", "-f", os.devnull)
        if b"SEC_ERROR_BAD_PASSWORD" in proc.stderr or b"could not authenticate" in proc.stderr:
            return "password", ("the database is protected by a password (Firefox's Primary Password, for example) "
                                f"and certkit does not ask for it; add the CA yourself: {self._by_hand(anchor)}")
        return None

    def _by_hand(self, anchor: Anchor) -> str:
        """The certutil command that adds ``anchor`` as certkit would (certkit's nickname, so that status and
        uninstall know it), from the file that holds the root: never an intermediate's ca.pem."""
        return anchor.by_hand(["certutil", "-A", "-d", self.db, "-t", NSS_TRUST, "-n", anchor.nickname, "-i"])

    def listing(self) -> list[tuple[str, str]]:
        """(nickname, trust flags) of every certificate in the database."""
        if not self.exists():
            return []
        proc = self._certutil("-L")
        if proc.returncode != 0:
            raise certutil_failure(self.directory, proc, f"certutil -L -d {self.db}")
        rows = []
        lines = proc.stdout.decode(errors="replace").splitlines()
        for line in lines:
            match = re.match(r"^(?P<nick>.*\S)\s+(?P<trust>[A-Za-z]*,[A-Za-z]*,[A-Za-z]*)\s*$", line)
            if match and match["nick"] != "SSL,S/MIME,JAR/XPI":
                rows.append((match["nick"], match["trust"]))
        return rows

    def _export(self, nickname: str) -> bytes:
        proc = self._certutil("-L", "-n", nickname, "-a")
        return proc.stdout if proc.returncode == 0 else b""

    def _entries(self) -> list[tuple[str, str, bytes, bool]]:
        """(nickname, trust flags, its own certificate, whether certkit named it) of every entry; certutil
        shows a nickname with every certificate of its subject (:mod:`certkit.trust.nss_entries`)."""
        rows = self.listing()

        def trust_of(nick: str) -> dict[str, bool]:
            return server_trust(self._certutil("-L", "-n", nick).stdout.decode(errors="replace"))

        stored = functools.cache(lambda: stored_labels(self.directory / "cert9.db"))  # read once, when needed
        own = own_certificates(rows, lambda nick: pem_blocks(self._export(nick)), trust_of, stored)
        return [(nick, flags, block, ours) for (nick, flags), (block, ours) in zip(rows, own, strict=True)]

    def state(self, anchor: Anchor | None) -> StoreState:
        # A certkit-shaped nickname holding another certificate is not certkit's doing (certkit names a copy
        # after its own fingerprint): it is described with what it holds, and never counted as certkit's.
        entries, untrusted, present = [], {}, []
        for nick, trust, block, ours in self._entries():
            if not ours and CERTKIT_NAME.match(nick):
                self.note_misnamed(describe_pem(nick, block, ours=False))
            if not (ours or trusts_servers(trust)) and anchor and pem_fingerprints(block)[:1] == [anchor.fingerprint]:
                present.append(nick)  # there, but browsers do not take it as a website's issuer
            if ours or trusts_servers(trust):
                entries.append(describe_pem(nick, block, ours=ours))
                if not trusts_servers(trust):
                    untrusted[nick] = trust
        state = sort_found(anchor, entries, StoreState(untrusted=present))
        if anchor and not state.current and (left := old_copy_left(self.directory, self._certutil, anchor.nickname,
                                                                     anchor.fingerprint)) and left not in self.notes:
            self.notes.append(left)  # left there by an uninstall that took it out of cert9.db alone
        for entry in state.older:  # another certkit CA whose trust was taken away: there, but trusted by no browser
            if entry.name in untrusted:
                entry.not_trusted = f"flags {untrusted[entry.name]}: browsers do not take it as a website's issuer"
        if state.current is not None and state.current.name in untrusted:
            # certkit's copy is there, but its trust was taken away (Firefox's Edit Trust, certutil -M): a browser
            # does not trust it, and install sets the trust again.
            state.pending = (f"certkit's copy is there, but its trust was taken away (flags "
                             f"{untrusted[state.current.name]}): browsers do not trust it; certkit trust install "
                             "sets it again")
        return state

    def _roll_back_interrupted(self) -> None:
        """A write that was killed part-way (certutil stopped by a timeout, the OOM killer) leaves a hot
        rollback journal beside cert9.db or key4.db, and certutil, opening the database read-only, then calls it
        bad. Opening it read-write, SQLite rolls the interrupted write back, as it does for any program that
        opens it next; a journal of a write still going on (a running browser's) holds a lock, and is left alone."""
        import sqlite3

        for name in ("cert9.db", "key4.db"):
            path, journal = self.directory / name, self.directory / f"{name}-journal"
            try:
                if not (path.is_file() and journal.is_file() and journal.stat().st_size):
                    continue
                with contextlib.closing(sqlite3.connect(path, timeout=0.5)) as db:
                    db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except (OSError, sqlite3.Error):
                continue  # busy (in use), or damaged: certutil's own failure, told by certutil_failure, says which

    def _stored_under(self, nickname: str, entries: list[tuple[str, str, bytes, bool]] | None = None) -> list[str]:
        """The SHA-256 fingerprints of the certificates stored under ``nickname`` (of ``entries``, else read now);
        none when no entry has that nickname."""
        return [fp for nick, _flags, block, _ours in (self._entries() if entries is None else entries)
                if nick == nickname for fp in pem_fingerprints(block)]

    def add(self, anchor: Anchor) -> None:
        created = self._create() if not self.exists() else False
        entries = self._entries()
        if (held := self._held_as(anchor, entries)) is not None:
            # NSS keeps a certificate once, under its first nickname: adding certkit's copy would only set
            # the trust of that entry, which certkit did not add and so would never take out again.
            nick, trust = held
            raise TrustError(f"the CA is already in {self.directory} as '{shown(nick)}' (trust {trust}, not trusted "
                             "to identify websites), and NSS keeps one entry per certificate: certkit does not "
                             "change an entry it did not add. Trust that one yourself (certutil -M -d "
                             f"{shlex.quote(self.db)} -n {shlex.quote(nick)} -t {NSS_TRUST}), or delete it "
                             "and run again")
        before = self._stored_under(anchor.nickname, entries)
        if (refused := add_refused(anchor, entries, before, self.db, self.directory)) is not None:
            raise refused
        self._converting()
        proc = self._certutil("-A", "-n", anchor.nickname, "-t", NSS_TRUST, "-f", os.devnull, input=anchor.pem)
        if proc.returncode != 0:
            # certutil may have stored the certificate before failing to set its trust: take it out, if it is
            # there now and was not before (an entry already there, certkit's or not, stays as it was).
            if not before and anchor.fingerprint in self._stored_under(anchor.nickname):
                self._certutil("-D", "-n", anchor.nickname)
            failure = certutil_failure(self.directory, proc, f"certutil -A -d {self.db}")
            if created:  # made for this install, which put nothing in it: it goes (browsers read it)
                self._take_out_created()
                self.notes[:] = [n for n in self.notes if not n.startswith("created the NSS database")] + [
                    f"removed the NSS database {self.directory} it had created for this install"]
            raise TrustError(f"{failure}{_key_type_hint(anchor, proc)}") from None
        self._in_use("refused before this change stays refused")

    def _create(self) -> bool:
        """Create the database (install with ``create``); whether this run made it in an empty folder, which a
        failed install, or an uninstall once it holds nothing else, takes out again (:data:`CREATED_MARK`)."""
        if not self.create:
            raise TrustError(f"There is no NSS database in {self.directory}.")
        if (nowhere := self._nowhere()) is not None:
            raise TrustError(nowhere)
        nearest = next(p for p in [self.directory, *self.directory.parents] if p.exists())
        if not nearest.is_dir():
            where = "there" if nearest == self.directory else f"in {shown(self.directory)}"
            raise TrustError(f"{shown(nearest)} is a file, not a folder: the NSS database cannot be created "
                             f"{where}; move the file away and run again")
        # The folders above it (~/.pki) as certkit makes any folder, at most 0755 whatever the umask: one that
        # others may write lets them put a database of their own, trusting their CA, where browsers read it.
        above = sum(not p.exists() for p in self.directory.parents)  # ~/.pki made here too: taken out with the rest
        make_folders(self.directory.parent)
        try:  # made by this run (exclusively: another install racing this one finds it made), or found
            self.directory.mkdir(mode=0o700)  # the umask may remove more, never add
            fresh = True
        except FileExistsError:
            fresh = False
        if not fresh and made_meanwhile(self.directory, self.exists, self.db):
            return False
        try:  # -f: a password asked for (a key database there already) fails at once, never a prompt
            made = self._certutil("-N", "--empty-password", "-f", os.devnull)
        except BaseException:  # Ctrl-C, SIGTERM, SIGHUP while certutil makes it: what this run made goes too
            if fresh:
                remove_half_made(self.directory, above)
            raise
        if made.returncode != 0 and self.exists() and (self.directory / "key4.db").exists():
            return False  # another install made it meanwhile (racing this one): used as found, never removed
        if made.returncode != 0:
            # A half-made database (an empty cert9.db: a full disk, certutil killed) is where browsers read:
            # every later certutil, and the browser, would call it bad. What this run made goes.
            if fresh:
                remove_half_made(self.directory, above)
            raise TrustError(f"{tool_failure(made, f'certutil -N -d {self.db} --empty-password')}"
                             f"{disk_full(self.directory.parent)}; nothing was left in {self.directory}")
        if fresh:  # so that uninstall takes it out again once it holds nothing else (exactly reversible)
            (self.directory / CREATED_MARK).write_bytes(f"with its folder\n{above}\n".encode() if above else b"")
        _give_to_owner_of(nearest, self.directory)
        self.notes.append(f"created the NSS database {self.directory} (empty password, as Chromium does)")
        return fresh

    def _nowhere(self) -> str | None:
        """Why the database cannot be created where a link leads nowhere (~/.pki/nssdb, or ~/.pki, a link to a
        folder that does not exist): certutil would call the database bad, and Chromium cannot create it either."""
        if (found := dangling_link(self.directory)) is None:
            return None
        link, target = found
        where = "there" if link == self.directory else f"in {shown(self.directory)}"
        return (f"{shown(link)} is a link to {shown(target)}, which does not exist: the NSS database cannot be created "
                f"{where} (nor can a browser create it); create that folder, or remove the link, and run again")

    def _take_out_created(self) -> bool:
        """Remove the database :meth:`_create` made, and ~/.pki if it made that too (when nothing else is in it);
        False (a note says why) when its mark cannot be read."""
        mark = self.directory / CREATED_MARK
        try:
            said = mark.read_bytes().split(b"\n") if mark.is_file() else [b""]
        except OSError as exc:  # how much install made cannot be told: the CA is out, the database stays
            self.notes.append(f"kept the NSS database {self.directory}, which install had created: its mark {mark} "
                              f"cannot be read ({exc.strerror or exc}); remove it yourself if nothing else uses it")
            return False
        above = (int(said[1]) if len(said) > 2 and said[1].isdigit() else 1) if said[0] == b"with its folder" else 0
        remove_half_made(self.directory, above)
        return True

    def _held_as(self, anchor: Anchor, entries: list[tuple[str, str, bytes, bool]]) -> tuple[str, str] | None:
        """(nickname, trust) of the entry of ``entries`` certkit did not name that holds ``anchor``'s certificate."""
        return next(((nick, flags) for nick, flags, block, ours in entries
                     if not ours and pem_fingerprints(block)[:1] == [anchor.fingerprint]), None)

    def _in_use(self, example: str) -> None:
        """Note the running programs (browsers) that hold the database open: a running Chromium applies a change
        to the sites it has not checked yet, but keeps its answer for those it has until it is restarted."""
        found = holders(self.directory)
        if found:
            who = ", ".join(f"{shown(name)} (pid {pid})" for pid, name in sorted(found))
            self.notes.append(f"in use by {who}: restart it; until then it keeps its earlier answer for the sites it "
                              f"has already checked (a page {example})")

    def _holds_no_keys(self) -> bool:
        return _no_keys(self._certutil("-K", "-f", os.devnull))

    def removal(self, entry: Found) -> str | None:
        return shlex.join(["certutil", "-D", "-d", self.db, "-n", entry.name])

    def remove(self, entries: Sequence[Found]) -> None:
        from certkit.testhooks import pause_at

        self._converting()
        for i, entry in enumerate(entries):
            if i:
                pause_at("removed-one")
            proc = self._certutil("-D", "-n", entry.name)
            if proc.returncode != 0:
                raise certutil_failure(self.directory, proc, f"certutil -D -d {self.db} -n {shlex.quote(entry.name)}")
        self.notes += old_copies_removed(self.directory, self._certutil, [(e.name, e.fingerprint) for e in entries])
        self._in_use("it loaded under a removed CA keeps loading")
        if not (self.directory / CREATED_MARK).is_file() or self.listing() or not self._holds_no_keys():
            return
        if only_its_own_module(self.directory):
            if not self._take_out_created():  # install made it, and it holds nothing else: it goes as it came
                return
            self.notes.append(f"removed the NSS database {self.directory}, which install had created for it")
        else:
            self.notes.append(f"kept the NSS database {self.directory}, which install had created: a module was "
                              "registered in it since (its pkcs11.txt), which is not certkit's to remove")


def _no_keys(proc: subprocess.CompletedProcess) -> bool:
    return b"no keys found" in (proc.stdout or b"") + (proc.stderr or b"")


def _give_to_owner_of(existing: Path, created: Path) -> None:
    """Root creating a database in someone's home leaves it theirs, or their browser could not write it."""
    owner = existing.stat()
    if os.geteuid() != 0 or owner.st_uid == 0:
        return
    for path in [*(p for p in created.parents if existing in p.parents), created, *created.iterdir()]:
        os.chown(path, owner.st_uid, owner.st_gid, follow_symlinks=False)


def nss_stores(home: Path, env: Mapping[str, str]) -> tuple[list[Store], list[StoreResult]]:
    """The NSS databases of the user whose home is ``home``, one store per database (a database reached by
    several paths, a link or two profiles.ini entries, is one store, the other paths its aliases), and those
    skipped with the reason."""
    certutil = find_tool("certutil", env)
    if certutil is None:
        return [], [StoreResult("nss", "NSS (Chromium, Firefox, Thunderbird)", str(home), "skipped",
                                f"certutil is not installed: install {NSS_PACKAGES}", "no-tool")]
    found: dict[Path, Store | StoreResult] = {}

    def keep(directory: Path, label: str, item: Store | StoreResult) -> None:
        try:
            real = directory.resolve()
        except (OSError, RuntimeError):  # a loop of links: no database there, whatever the name
            real = directory
        first = found.setdefault(real, item)
        if first is not item and f"{label}: {directory}" not in first.aliases:
            first.aliases.append(f"{label}: {directory}")

    for i, (label, directory) in enumerate(chromium_dbs(home)):
        store = NSSStore(label, directory, certutil, create=i == 0, env=env)
        if store.exists() or (i == 0 and any(find_tool(p, env) for p in CHROMIUM_PROGRAMS)):
            keep(directory, label, store)  # there, or Chromium is installed and would create it: create it now
        elif i == 0:
            keep(directory, label, StoreResult("nss", label, str(directory), "skipped", "no NSS database here, and "
                                               "no Chromium-family browser to read one", "missing"))
    for program, base in profile_roots(home, env):
        profiles, problem, ignored = read_profiles(base, program.split()[0])
        if problem is not None:  # its profiles unknown: said, never left out in silence
            keep(base / "profiles.ini", program, StoreResult(
                "nss", program, str(base / "profiles.ini"), "skipped", f"profiles.ini {problem}, so its profiles "
                "are not known and certkit touches none of them: mend the file, or run certutil -d sql:PROFILE on "
                "each profile yourself", "unreadable"))
        for name, folder in profiles:
            label = f"{program} profile {shown(name)}"
            store = NSSStore(label, folder, certutil, env=env)
            reached = store.exists() or unsearchable_above(folder / "cert9.db")  # one unreached: blocked() says so
            keep(folder, label, store if reached else _absent_profile(program, label, folder))
        for name, where, why in ignored:  # added to, and called trusted, only where the program reads it
            label = f"{program} profile {shown(name)}"
            unread = NSSStore(label, where, certutil, env=env, unread=why)
            keep(where, label, unread if unread.exists() and where.name != "profiles.ini" else StoreResult(
                "nss", label, str(where), "skipped", why, "unread"))
    items = list(found.values())
    return [s for s in items if isinstance(s, Store)], [r for r in items if isinstance(r, StoreResult)]


def _absent_profile(program: str, label: str, folder: Path) -> StoreResult:
    """Why a profile that profiles.ini lists has no database certkit can use."""
    if not folder.is_dir():
        reason = "listed in profiles.ini, but the folder is missing"
    elif (folder / "cert8.db").exists():
        reason = "holds cert8.db without key3.db, a part of an old-format (dbm) database, which certkit cannot read"
    else:
        reason = f"no certificate database yet; start {program.split()[0]} once with this profile"
    return StoreResult("nss", label, str(folder), "skipped", reason, "missing")
