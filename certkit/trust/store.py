"""What a trust store holds and the interface every store implements.

:class:`Store` is one trust store (system, NSS database, Java keystore): it
reads what it holds (:meth:`Store.state`) and changes it (:meth:`Store.add`,
:meth:`Store.remove`). :class:`Found` is one certificate in it,
:class:`StoreState` what it holds of certkit's, :class:`StoreResult` the
outcome of one action on it; :func:`sort_found` sorts a store's certificates
into this CA's copy, other certkit CAs and other copies of this CA.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from certkit.errors import CertkitError
from certkit.vocabulary import iso

if TYPE_CHECKING:
    from certkit.trust.anchor import Anchor


class TrustError(CertkitError):
    """A trust store could not be read or changed."""


@dataclass
class Found:
    """A certificate in a store: certkit's copy of a CA (``ours``), or the current CA under another name."""

    name: str  # the file, NSS nickname or Java alias
    fingerprint: str  # SHA-256, hex
    subject: str = ""
    not_after: dt.datetime | None = None
    ours: bool = True
    via: str | None = None  # a certkit copy that another store put here (and takes away again)
    remove_with: str | None = None  # the command that takes this entry alone out of its store
    # Why the store's clients do not trust it though it is there (an NSS entry without the C flag, a system-store
    # file not in the bundle yet): there, and certkit's, but no risk to anyone.
    not_trusted: str | None = None
    key: str = ""  # SHA-256 of its public key (SubjectPublicKeyInfo), when it could be read

    def to_dict(self) -> dict:
        return {"name": self.name, "fingerprint_sha256": self.fingerprint, "subject": self.subject,
                "not_after": iso(self.not_after) if self.not_after else None, "via": self.via,
                "remove_with": self.remove_with, "not_trusted": self.not_trusted}


@dataclass
class StoreState:
    """What one store holds of certkit's: this CA's copy, other certkit CAs, other copies of this CA."""

    current: Found | None = None
    # Every other CA certkit named: certkit cannot tell a replaced one from one still in use (the name,
    # kept for the --json output, is from when it assumed the first).
    older: list[Found] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)  # this CA, under names certkit did not give
    # The CA directory's own intermediate, trusted as an anchor by hand: Chromium and Java then accept what
    # it signs, though certkit installs the root (never that entry, which it leaves alone).
    intermediate: list[str] = field(default_factory=list)
    pending: str | None = None  # certkit's copy is there but not yet in effect (and why)
    # This CA under names certkit did not give, there but not trusted to identify websites (an NSS entry without
    # the C flag): the store does not trust it, whatever "not trusted" alone would suggest of its contents.
    untrusted: list[str] = field(default_factory=list)
    # Another certificate of this CA: the same subject and public key (a root made again from its key, by init-ca
    # --reuse-key or openssl): a client that trusts it accepts what the CA signs, whichever certificate it holds.
    same_key: list[Found] = field(default_factory=list)

    def same_key_trusted(self) -> list[Found]:
        """The certificates of :attr:`same_key` that the store's clients trust."""
        return [e for e in self.same_key if e.not_trusted is None]

    def certkit_entries(self) -> list[Found]:
        """What certkit put into this store itself, hence may take out."""
        return [e for e in ([self.current] if self.current else []) + self.older if e.via is None]


@dataclass
class StoreResult:
    """The outcome for one store: ``added``, ``unchanged``, ``removed``, ``absent``, ``trusted``,
    ``not trusted``, ``incomplete``, ``skipped`` or ``failed``; with the reason when skipped or failed."""

    kind: str
    label: str
    location: str
    outcome: str
    reason: str | None = None
    code: str | None = None  # why skipped: needs-root, not-writable, missing, unsupported, no-tool, password,
    # unreadable (a file that lists stores, such as profiles.ini), unread (a store no client reads)
    state: StoreState | None = None
    removed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    needs_root: bool = False  # skipped, but root could do it
    aliases: list[str] = field(default_factory=list)  # other paths that lead to this same store
    # The command that takes certkit's copy of the CA out where certkit does not (a store whose password it does
    # not ask for): what the warnings advise for that store, rather than certkit trust uninstall.
    by_hand: str | None = None
    java_reads: bool = False  # whether Java programs take their trust from this store (:attr:`Store.java_reads`)

    @property
    def trusted_here(self) -> bool:
        """Whether a client reading this store accepts what the CA directory signs, whoever added the entry."""
        state = self.state
        return state is not None and (state.current is not None or bool(state.elsewhere or state.intermediate
                                                                         or state.same_key_trusted()))

    def to_dict(self) -> dict:
        state = self.state
        return {
            "kind": self.kind, "label": self.label, "location": self.location, "outcome": self.outcome,
            "reason": self.reason, "code": self.code,
            "current": state.current.name if state and state.current else None,
            "older": [f.to_dict() for f in state.older] if state else [],
            "elsewhere": list(state.elsewhere) if state else [],
            "intermediate_trusted_as": list(state.intermediate) if state else [],
            "untrusted_as": list(state.untrusted) if state else [],
            "same_key_trusted_as": [e.name for e in state.same_key_trusted()] if state else [],
            "pending": state.pending if state else None,
            "removed": self.removed, "notes": self.notes, "aliases": self.aliases,
        }


class Store:
    """One trust store. Subclasses read it (:meth:`state`) and change it (:meth:`add`, :meth:`remove`)."""

    kind = ""
    label = ""
    location = ""
    notes: list[str] = []
    aliases: list[str] = []  # other paths that lead to this store ("LABEL: PATH")
    holds_copies = True  # whether the store can hold the same certificate twice, under two names
    # Whether Java programs take their trust from this store: a JDK's cacerts, or a system store that a Java copy is
    # made of (Debian's ca-certificates-java): what is said of Java (it ignores a root's constraints and dates) is
    # said of it, and of no other.
    java_reads = False

    def blocked(self, anchor: Anchor | None = None, *, removing: bool = False) -> tuple[str, str] | None:
        """Why this user cannot change the store (``removing``: take certkit's copy out; else add
        ``anchor``), as (code, reason), or None."""
        return None

    def unread(self) -> str | None:
        """Why no client reads this store though it is there (a JDK's cacerts, while its jssecacerts exists), or
        None: ``install`` skips it, ``status`` reports it skipped, ``uninstall`` takes certkit's copies out of it."""
        return None

    def unknown(self, anchor: Anchor | None) -> str | None:
        """Why what this store holds cannot be told (it is sealed by a password certkit does not ask for), with the
        command that checks it; None when it can be read (and :meth:`state` is the truth)."""
        return None

    def needs_adding(self, state: StoreState) -> bool:
        """Whether installing would change this store, now in ``state``: certkit's copy missing (and, in a store
        that keeps one entry per certificate, the CA not trusted under another name), or its trust taken away."""
        if state.current is None:
            return self.holds_copies or not state.elsewhere
        return state.pending is not None

    def note_misnamed(self, found: Found) -> None:
        """Say that ``found``, under a name of certkit's form, holds a certificate whose fingerprint that name
        does not carry: certkit did not add it (its names carry their certificate's fingerprint)."""
        note = (f"'{found.name}' has the form of a certkit name, but holds a certificate whose fingerprint it does "
                f"not carry ({found.subject}): certkit did not add it, and leaves it alone")
        if note not in self.notes:  # the state is read more than once per command
            self.notes.append(note)

    def state(self, anchor: Anchor | None) -> StoreState:
        raise NotImplementedError

    def add(self, anchor: Anchor) -> None:
        raise NotImplementedError

    def remove(self, entries: Sequence[Found]) -> None:
        raise NotImplementedError

    def removal(self, entry: Found) -> str | None:
        """The command a user runs to take ``entry`` alone out of this store (it is in it), or None."""
        return None

    def result(self, outcome: str, reason: str | None = None, *, notes: Sequence[str] = (), **fields) -> StoreResult:
        """This store's :class:`StoreResult`, with the store's notes as they are now and then ``notes``; each
        other certkit CA its state shows gets the command that removes it alone."""
        state = fields.get("state")
        for entry in state.older if state is not None else []:
            if entry.via is None:  # a copy that another store put here goes when it leaves that store
                entry.remove_with = self.removal(entry)
        for entry in state.same_key_trusted() if state is not None else []:
            how = f"; take it out too to stop that: {entry.remove_with}" if entry.remove_with else \
                "; take it out too, with the store's own tool, to stop that (certkit did not add it)"
            notes = [*notes, f"{entry.name} is another certificate of this CA (the same name and key), trusted "
                             f"here: clients accept what the CA signs through it, with or without certkit's copy of "
                             f"this certificate{how}"]
        return StoreResult(self.kind, self.label, self.location, outcome, reason, notes=[*self.notes, *notes],
                           aliases=list(self.aliases), java_reads=self.java_reads, **fields)

    def skipped(self, code: str, reason: str, *, needs_root: bool = False) -> StoreResult:
        return StoreResult(self.kind, self.label, self.location, "skipped", reason, code, needs_root=needs_root,
                           aliases=list(self.aliases), java_reads=self.java_reads)


def sort_found(anchor: Anchor | None, entries: Iterable[Found], state: StoreState) -> StoreState:
    """Sort a store's certificates into ``state``: this CA's copy, other copies of it, the CA directory's
    own intermediate (trusted by hand), other certkit CAs."""
    same = (anchor.public_key_sha256, anchor.subject) if anchor is not None else None  # its other certificates
    for entry in entries:
        if anchor is not None and entry.fingerprint == anchor.fingerprint:
            if entry.ours and entry.via is None and state.current is None:
                state.current = entry
            else:
                state.elsewhere.append(entry.name)
        elif anchor is not None and entry.fingerprint and entry.fingerprint == anchor.intermediate_fingerprint:
            state.intermediate.append(entry.name)
        else:
            if same is not None and entry.key and (entry.key, entry.subject) == same:
                state.same_key.append(entry)
            if entry.ours:
                state.older.append(entry)
    return state
