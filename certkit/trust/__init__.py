"""Trust stores: put a certkit root CA where clients look for trust anchors, report on it, take it out.

What ``certkit trust`` does, without click. This module finds the stores and
acts on them; each concern has its own module:

- :mod:`~certkit.trust.anchor`: :class:`Anchor`, the root certificate of a CA
  directory and the names certkit gives its copies (from its fingerprint);
  :func:`describe_scope`, what its name constraints let it vouch for.
- :mod:`~certkit.trust.store`: :class:`Store`, what every store implements, and
  what one holds (:class:`Found`, :class:`StoreState`) or did (:class:`StoreResult`);
  :mod:`~certkit.trust.tools`: running a store's own tool, reading its PEM certificates.
- The stores, each changed only through its own tool:
  :mod:`~certkit.trust.system` (Debian/Ubuntu, Fedora/RHEL, Arch, openSUSE: an
  anchor file and the distribution's refresh command; which, and which distribution this is:
  :mod:`~certkit.trust.system_layouts`), :mod:`~certkit.trust.nss`
  (one NSS database: Chromium's ``~/.pki/nssdb``, a Firefox or Thunderbird
  profile; ``certutil``, and why it failed: :mod:`~certkit.trust.nss_failures`; where a user's databases
  are: :mod:`~certkit.trust.nss_places`;
  which certificate each of their entries holds: :mod:`~certkit.trust.nss_entries`) and
  :mod:`~certkit.trust.java` (a JDK's ``cacerts``; ``keytool``; which JDKs are found:
  :mod:`~certkit.trust.java_homes`; which keystore its programs read, given their
  environment: :mod:`~certkit.trust.java_env`).
- :mod:`~certkit.trust.platforms`: on macOS and Windows certkit edits no store;
  :func:`manual_steps` gives the exact commands instead.

Here: :func:`find_stores` lists the stores of this machine and user, and those
skipped with the reason; :func:`install`, :func:`uninstall` and :func:`status`
give one :class:`StoreResult` per store; :func:`warnings` says what is risky
about what is trusted.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from certkit.text import shown
from certkit.time_words import dated, time_left
from certkit.trust.anchor import Anchor, describe_scope
from certkit.trust.java import JAVA_STOREPASS, JavaStore
from certkit.trust.java_homes import java_stores
from certkit.trust.nss import NSS_PACKAGES, NSS_TRUST, NSSStore, nss_stores
from certkit.trust.platforms import manual_steps, platform_name
from certkit.trust.store import Found, Store, StoreResult, StoreState, TrustError
from certkit.trust.system import SystemStore
from certkit.trust.system_layouts import (
    LAYOUTS,
    OS_RELEASE,
    SystemLayout,
    UnsupportedSystem,
    detect_system_layout,
    read_os_release,
)

__all__ = [
    "EXPIRY_WARNING_DAYS", "JAVA_STOREPASS", "KINDS", "LAYOUTS", "NSS_PACKAGES", "NSS_TRUST", "OS_RELEASE",
    "Anchor", "Found", "JavaStore", "NSSStore", "Store", "StoreResult", "StoreState", "SystemLayout",
    "SystemStore", "TrustError", "UnsupportedSystem", "describe_scope", "detect_system_layout", "find_stores",
    "install", "manual_steps", "platform_name", "read_os_release", "refusal", "status", "uninstall",
    "validity_warnings", "warnings",
]

KINDS = ("system", "nss", "java")
EXPIRY_WARNING_DAYS = 30


def find_stores(kinds: Iterable[str] = KINDS, *, env: Mapping[str, str] | None = None,
                os_release: Path = OS_RELEASE) -> tuple[list[Store], list[StoreResult]]:
    """The stores of ``kinds`` on this Linux machine for this user (HOME and PATH from ``env``),
    and those skipped with the reason (a missing tool, an unknown distribution...)."""
    env = dict(os.environ if env is None else env)
    from certkit.files import home_folder

    home = home_folder(env)
    stores: list[Store] = []
    skipped: list[StoreResult] = []
    kinds = list(kinds)
    if "system" in kinds:
        try:
            stores.append(SystemStore(detect_system_layout(os_release, env), env))
        except UnsupportedSystem as exc:
            skipped.append(StoreResult("system", "system store", "", "skipped", str(exc), "unsupported"))
    if "nss" in kinds:
        found, missing = nss_stores(home, env)
        stores += found
        skipped += missing
    if "java" in kinds:
        found, missing = java_stores(env)
        stores += found
        skipped += missing
    return stores, skipped


def _check(store: Store, anchor: Anchor | None, *, removing: bool = False) -> StoreResult | None:
    blocked = store.blocked(anchor, removing=removing)
    if blocked is None:
        return None
    code, reason = blocked
    return store.skipped(code, reason, needs_root=os.geteuid() != 0 and store.kind != "nss"
                         and code not in ("password", "unread"))


def install(anchor: Anchor, stores: Iterable[Store]) -> list[StoreResult]:
    """Add ``anchor`` to each store that lacks it; a store that has it is left untouched."""

    def add(store: Store) -> StoreResult:
        before = store.state(anchor)
        if before.current is not None and before.pending is None:
            return _by_hand(store, anchor, store.result("unchanged", state=before))
        if before.current is None and before.elsewhere and not store.holds_copies:
            # NSS keeps a certificate once, under its first nickname: certkit cannot add its own copy,
            # and leaves (and will never remove) the one someone else added.
            return store.result("unchanged", state=before, notes=["already trusted under a name certkit did not "
                                                                  "give; certkit leaves that entry alone"])
        store.add(anchor)
        after = store.state(anchor)
        if after.current is None or after.pending:
            raise TrustError(f"the CA is not in {store.location} after adding it")
        return store.result("added", state=after)

    return _java_notes(anchor, _change_each(stores, add, anchor, removing=False))


def _java_notes(anchor: Anchor | None, results: list[StoreResult]) -> list[StoreResult]:
    """``results``, a store Java reads that trusts a constrained root noting that Java ignores its constraints
    (:meth:`Anchor.java_note`)."""
    for result in results:
        by_hand = result.state is not None and bool(result.state.intermediate)  # the intermediate itself trusted
        note = anchor.java_note(result.kind, intermediate_trusted=by_hand) \
            if anchor is not None and result.java_reads else None
        if note and result.outcome in ("added", "unchanged", "trusted", "incomplete"):
            result.notes.append(note)
    return results


def uninstall(anchor: Anchor | None, stores: Iterable[Store], *, every_certkit_ca: bool = False
              ) -> list[StoreResult]:
    """Remove certkit's copy of ``anchor`` from each store (and, with ``every_certkit_ca``, every
    certificate certkit named, whichever CA: rotated ones, and those still in use). Nothing certkit
    did not name is touched."""
    if anchor is None and not every_certkit_ca:
        raise TrustError("Nothing to remove: no CA was given.")

    def remove(store: Store) -> StoreResult:
        before = store.state(anchor)
        targets = before.certkit_entries() if every_certkit_ca else [e for e in [before.current] if e]
        if not targets:
            return store.result("absent", state=before)
        try:
            store.remove(targets)
        except (TrustError, OSError) as exc:
            return _partly_removed(store, anchor, targets, exc)
        after = store.state(anchor)
        left = {e.name for e in after.certkit_entries()} & {e.name for e in targets}
        if left:
            raise TrustError(f"{', '.join(sorted(left))} still in {store.location} after removing it")
        return store.result("removed", state=after, removed=[e.name for e in targets])

    return _change_each(stores, remove, anchor, removing=True)


def _partly_removed(store: Store, anchor: Anchor | None, targets: Sequence[Found], exc: Exception) -> StoreResult:
    """A removal that failed part-way (an NSS database locked by a browser after its first entry went): "failed",
    naming what it took out before (its clients no longer trust those), rather than failing as if nothing went."""
    try:
        after = store.state(anchor)
    except (TrustError, OSError):
        raise exc from None
    left = {e.name for e in after.certkit_entries()}
    return store.result("failed", _reason(exc), state=after, removed=[e.name for e in targets if e.name not in left])


def _change_each(stores: Iterable[Store], change: Callable[[Store], StoreResult], anchor: Anchor | None, *,
                 removing: bool) -> list[StoreResult]:
    """``change`` applied to each store: a store this user cannot change is skipped with the reason,
    one whose change fails is reported failed; the others say what ``change`` did."""
    results = []
    for store in stores:
        if (skip := _check(store, anchor, removing=removing)) is not None:
            results.append(skip)
            continue
        try:
            results.append(change(store))
        except (TrustError, OSError) as exc:
            results.append(store.result("failed", _reason(exc)))
    return results


def status(anchor: Anchor | None, stores: Iterable[Store]) -> list[StoreResult]:
    """What each store holds of certkit's; changes nothing."""
    results = []
    for store in stores:
        try:
            if (unread := store.unread()) is not None:  # no client reads it: neither "trusted" nor "not trusted"
                results.append(store.skipped("unread", _held_unread(unread, store.state(anchor))))
                continue
            if (unknown := store.unknown(anchor)) is not None:  # neither "trusted" nor "not trusted" is known
                results.append(store.skipped("password", unknown))
                continue
            state = store.state(anchor)
        except (TrustError, OSError) as exc:
            results.append(StoreResult(store.kind, store.label, store.location, "failed", _reason(exc)))
            continue
        notes = []
        if anchor is None:  # no CA to ask about: what certkit CAs the store trusts
            outcome = "certkit CAs" if any(e.not_trusted is None for e in state.older) else "none"
        elif state.current is None and state.elsewhere:
            # Added by hand, or by another tool: the store trusts the CA all the same (a Chromium that reads
            # an NSS entry named "Dev CA (by hand)" accepts its certificates), so "trusted" is the truth.
            outcome = "trusted"
            notes.append("certkit did not add that entry: certkit trust uninstall leaves it")
        elif state.current is None and state.intermediate:
            # The CA directory's own intermediate, trusted by hand: Chromium (and Java) accept what it signs.
            outcome = "trusted"
            notes.append("certkit did not add that entry (it installs the root above it): certkit trust uninstall "
                         "leaves it")
        elif state.current is None and state.same_key_trusted():
            outcome = "trusted"  # through another certificate of its name and key: the store's note names it
        else:
            outcome = "incomplete" if state.pending else "trusted" if state.current else "not trusted"
        results.append(_by_hand(store, anchor, store.result(outcome, state.pending, state=state, notes=notes)))
    return _java_notes(anchor, results)


def _held_unread(reason: str, state: StoreState) -> str:
    """``reason`` (why no client reads a store), with the certkit copies it holds nonetheless: trusted again once a
    client reads it again (a JDK's jssecacerts deleted, a Firefox profile listed again), which certkit trust
    uninstall takes out."""
    held = [e.name for e in state.certkit_entries()]
    if not held:
        return reason
    return (f"{reason}; it holds certkit's {', '.join(held)}, trusted again once a client reads it again: certkit "
            "trust uninstall takes it out")


def _by_hand(store: Store, anchor: Anchor | None, result: StoreResult) -> StoreResult:
    """``result``, with the command that takes certkit's copy of ``anchor`` out of ``store`` where certkit would
    not (a Java store whose password is not the default, which certkit does not ask for)."""
    state = result.state
    if anchor is None or state is None or state.current is None:
        return result
    try:
        blocked = store.blocked(anchor, removing=True)
    except (TrustError, OSError):
        return result
    if blocked is not None and blocked[0] == "password":
        result.by_hand = store.removal(state.current)
    return result


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, TrustError):
        where = f" ({shown(exc.filename)})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return str(exc)


def warnings(anchor: Anchor | None, results: Sequence[StoreResult], *,
             now: dt.datetime | None = None) -> list[str]:
    """What is risky about the certkit CAs these results show trusted: an unencrypted key, an
    expired or expiring CA, other certkit CAs trusted too (each with the commands that remove it alone)."""
    now = now or dt.datetime.now(dt.UTC)
    found: list[str] = []
    # Trusted whoever added the entry: certkit's copy, or this CA (or its intermediate) under a name certkit did
    # not give (which status reports "trusted" too: a client reading the store accepts the CA either way).
    trusted_here = [r for r in results if r.trusted_here]
    # Whose entry of this CA --every-certkit-ca would meet: certkit's own (it goes too), only others' (they stay).
    this_ca = "certkit" if any(r.state is not None and (r.state.current is not None or any(
        e.ours for e in r.state.same_key_trusted())) for r in results) else "others" if trusted_here else None
    if anchor is not None and trusted_here:
        where, out = ", ".join(sorted({r.kind for r in trusted_here})), _take_out(trusted_here)
        if anchor.key_encrypted is False and anchor.intermediate is not None:
            # The CA directory holds an intermediate: its key is the one at hand (the root's is elsewhere).
            # Trusted itself where Java reads it, the intermediate is an anchor whose constraints Java ignores.
            java = " (and any name to Java programs, which take the intermediate, trusted by hand, as a trust anchor " \
                "and ignore its name constraints)" if anchor.constraints is not None and any(
                    r.state.intermediate for r in trusted_here if r.java_reads) else ""
            found.append(f"the key of the intermediate CA \"{shown(anchor.intermediate)}\" ({anchor.key_path}), "
                         f"below the trusted root \"{shown(anchor.common_name)}\", is not encrypted: whoever copies "
                         f"it can sign certificates for {anchor.reach()}{java} that this machine's clients accept "
                         f"({where}). Keep it encrypted, or take the root out: {out}")
        elif anchor.key_encrypted is False:
            java = " (and any name to Java programs, which ignore a root's name constraints)" \
                if anchor.java_scope() and any(r.java_reads for r in trusted_here) else ""
            found.append(f"the key of the trusted CA \"{shown(anchor.common_name)}\" ({anchor.key_path}) is not "
                         f"encrypted: whoever copies it can impersonate {anchor.reach()}{java} to this machine's "
                         f"clients ({where}). Keep it encrypted, or take the CA out: {out}")
        found += validity_warnings(anchor, now, java=_java_reads(r.kind for r in trusted_here if r.java_reads), out=out)
    others: dict[str, list[tuple[Found, str]]] = {}
    java_places = {f"{r.kind}: {r.location}" for r in results if r.java_reads}
    for result in results:
        for entry in result.state.older if result.state else []:
            if entry.not_trusted is None:  # one there but trusted by none of the store's clients puts nobody at risk
                others.setdefault(entry.fingerprint, []).append((entry, f"{result.kind}: {result.location}"))
    same_key = {id(e) for r in results if r.state for e in r.state.same_key}
    for copies in others.values():
        found.append(_earlier(copies) if id(copies[0][0]) in same_key else _another_ca(anchor, copies, this_ca))
        if (entry := copies[0][0]).not_after is not None:
            what = "the other" if anchor is not None else "the"
            found += _expiry(f"{what} certkit CA {shown(entry.subject)} ({shown(entry.name)})", entry.not_after, now,
                             java=_java_reads(place.split(":", 1)[0] for _e, place in copies if place in java_places),
                             out="the commands above remove it")
    return found


def _java_reads(kinds: Iterable[str]) -> str | None:
    """These kinds of store, each one Java programs take their trust from ("java, system": Debian's
    ca-certificates-java and Fedora's java/cacerts copy the system store into Java's), or None."""
    return ", ".join(sorted(set(kinds))) or None


def validity_warnings(anchor: Anchor, now: dt.datetime | None = None, *, java: str | None = None,
                      out: str = "certkit trust uninstall") -> list[str]:
    """What the dates of the CA directory's CAs mean for its clients: the root's, and the intermediate's
    that signs (for an intermediate CA directory), each expired, expiring or not valid yet. ``java``: the kinds of
    store trusting the root that Java programs read, which do not check a trusted root's dates (``out``: how to
    take it out of them)."""
    now = now or dt.datetime.now(dt.UTC)
    found = _expiry(f"the trusted CA \"{shown(anchor.common_name)}\"", anchor.not_after, now, anchor.not_before,
                    java=java, out=out)
    if (own := anchor.intermediate_cert) is not None:
        found += _expiry(f"the intermediate CA \"{shown(anchor.intermediate)}\" (below the trusted root \""
                         f"{shown(anchor.common_name)}\")", own.not_valid_after_utc, now, own.not_valid_before_utc)
    return found


def refusal(anchor: Anchor, now: dt.datetime | None = None) -> str | None:
    """Why trusting ``anchor`` would make nothing of its CA directory valid (its root, or the intermediate
    that signs, has expired), or None."""
    now = now or dt.datetime.now(dt.UTC)
    if anchor.not_after <= now:
        # Java does not check a trusted root's dates: to Java programs, trusting it would make its key good for any
        # name again (and a leaked key of an old CA is the likeliest): refused all the same, but not as harmless.
        return (f"The CA \"{shown(anchor.common_name)}\" expired on {anchor.not_after:%Y-%m-%d %H:%M:%S} UTC; "
                f"{_EXPIRED_ROOT}: trusting it would only put this machine at risk. Create a new CA.")
    own = anchor.intermediate_cert
    if own is not None and own.not_valid_after_utc <= now:
        return (f"The intermediate CA \"{shown(anchor.intermediate)}\" of {anchor.ca_dir} expired on "
                f"{own.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC; trusting its root \"{shown(anchor.common_name)}\" "
                "would make nothing it signs valid. Create a new intermediate CA (or give the root's own CA "
                "directory to trust the root for its other CAs).")
    return None


def _take_out(trusted: Sequence[StoreResult]) -> str:
    """How to take this CA out of the stores where it is trusted: certkit's copies with certkit trust
    uninstall, or, where certkit does not (a store whose password it does not ask for), with the store's own
    command; entries certkit did not add (which it never removes) with the store's own tool."""
    theirs = sorted({f"{shown(name)} in {shown(r.location)}" for r in trusted
                     for name in [*r.state.elsewhere, *r.state.intermediate]})
    by_hand = sorted({r.by_hand for r in trusted if r.by_hand})
    # another certificate of this CA (the same name and key), which certkit trust uninstall leaves: each alone
    same_key = sorted({e.remove_with or f"{shown(e.name)} in {shown(r.location)} with the store's own tool"
                       for r in trusted for e in r.state.same_key_trusted()})
    ways = ["certkit trust uninstall"] if any(r.state.current is not None and not r.by_hand for r in trusted) else []
    if by_hand:  # certkit's copy where certkit does not take it out: the store's own command, which asks
        ways.append(f"{'; '.join(by_hand)} (certkit's copy in a store whose password certkit does not ask for; the "
                    "command asks for it)")
    if same_key:
        ways.append(f"the other certificates of this CA (the same name and key): {'; '.join(same_key)}")
    if theirs:
        ways.append(f"the entries certkit did not add ({'; '.join(theirs)}) with the store's own tool")
    return ", and ".join(ways) or "certkit trust uninstall"


def _earlier(copies: Sequence[tuple[Found, str]]) -> str:
    """The warning about another certificate of this CA (its name and key), trusted in these places."""
    commands = "; ".join(dict.fromkeys(e.remove_with for e, _place in copies if e.remove_with))
    return (f"an earlier certificate of this CA (the same name and key), {shown(copies[0][0].name)}, is also trusted "
            f"in {'; '.join(sorted({p for _e, p in copies}))}: clients accept what the CA signs through it until it "
            "is taken out" + (f": {commands}" if commands else " with the store's own tool"))


def _another_ca(anchor: Anchor | None, copies: Sequence[tuple[Found, str]], this_ca: str | None = "certkit") -> str:
    """The warning about a certkit CA other than ``anchor`` trusted in these places (``copies``: each
    entry with its store). certkit cannot tell whether it was replaced or is still in use (a CA per
    cluster), so it names the commands that remove that CA alone: --every-certkit-ca removes ``anchor``
    too when certkit added ``anchor``'s entry (``this_ca``: "certkit"); entries others added (``this_ca``:
    "others") it leaves."""
    entry = copies[0][0]
    places = "; ".join(sorted({place for _e, place in copies}))
    commands = list(dict.fromkeys(e.remove_with for e, _place in copies if e.remove_with))
    came = sorted({e.via for e, _place in copies if e.via})
    if commands:
        how = f"remove it alone with: {'; '.join(commands)}"
        how += f" (its copy through {', '.join(came)} goes with it)" if came else ""
    elif came:  # only a copy another store put here: it goes when it leaves that store
        how = f"remove it from where it came: {', '.join(came)}"
    else:
        how = "remove it with its store's own tool"
    if anchor is None:
        return (f"a certkit CA is trusted: {shown(entry.subject)} ({shown(entry.name)}) in {places}. If it is no "
                f"longer used, {how}; or every certkit CA at once: certkit trust uninstall --every-certkit-ca")
    this = f"\"{shown(anchor.common_name)}\" ({anchor.name})"
    every = {"certkit": f"would remove it, but also this CA, {this}",
             "others": f"would remove it and every other CA certkit added, but not this CA, {this}, whose entry "
                       "certkit did not add"}.get(this_ca, "would remove it and every other CA certkit added")
    return (f"another certkit CA is also trusted: {shown(entry.subject)} ({shown(entry.name)}) in {places}. If it is "
            f"no longer used, {how} (certkit trust uninstall --every-certkit-ca {every})")


# What clients make of a trusted root outside its dates (checked with each): OpenSSL (curl, Python's ssl), GnuTLS and
# NSS (Chromium, Firefox) refuse what it signs; Java (PKIX) takes a trust anchor without its dates, and accepts it.
_EXPIRED_ROOT = ("OpenSSL, GnuTLS and NSS clients (curl, Python, browsers) accept nothing it signed any more, but Java "
                 "programs, which do not check the dates of a trusted root, accept whatever its key signs")


def _expiry(what: str, not_after: dt.datetime, now: dt.datetime, not_before: dt.datetime | None = None, *,
            java: str | None = None, out: str = "certkit trust uninstall") -> list[str]:
    """The warning about ``what``'s dates; ``java``, for a root trusted in stores Java programs read (those kinds),
    says that Java accepts what it signs all the same (``out``: how to take it out)."""
    if not_before is not None and not_before > now:
        # A clock set wrong here or where the CA was made: until then every client refuses what it signs, but Java.
        java_too = (f", but Java programs, which do not check the dates of a trusted root, accept it already ({java})"
                    if java else "")
        who = "OpenSSL, GnuTLS and NSS clients" if java else "clients"
        return [f"{what} is not valid before {not_before:%Y-%m-%d %H:%M} UTC; until then {who} reject everything it "
                f"signs{java_too} (check the clock of this machine and of the one that "
                "created the CA)."]
    # to the second, as verify, inspect and probe say it (certkit.time_words.dated): "... UTC (10 days ago)"
    ended = dict(dated(None, not_after, now)).get("expired", f"{not_after:%Y-%m-%d %H:%M:%S} UTC")
    if not_after <= now and java:
        return [f"{what} expired on {ended}; {_EXPIRED_ROOT} ({java}): take it out ({out})."]
    if not_after <= now:
        return [f"{what} expired on {ended}; nothing it signed is accepted any more."]
    if not_after - now < dt.timedelta(days=EXPIRY_WARNING_DAYS):
        return [f"{what} expires on {not_after:%Y-%m-%d %H:%M:%S} UTC, in {time_left(not_after - now)}."]
    return []
