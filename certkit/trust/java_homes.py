"""Which JDKs' keystores ``certkit trust`` changes: :func:`java_stores`, from ``$JAVA_HOME`` and the ``java`` on PATH.

A JDK's folder, its keystore (``cacerts``, or the ``jssecacerts`` its programs read instead) and its ``keytool``,
or why one is skipped (no such folder, a dangling cacerts link); the note that the environment's trust store
option (:mod:`~certkit.trust.java_env`) makes Java programs read another file than the one changed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from certkit.trust.java import JavaStore
from certkit.trust.java_env import closed_to_some, given_cacerts, no_store_file, none_store_note, trust_store_options
from certkit.trust.store import Store, StoreResult, TrustError
from certkit.trust.tools import dangling_link, find_tool, run_tool


def java_stores(env: Mapping[str, str]) -> tuple[list[Store], list[StoreResult]]:
    """The keystores the JDKs of ``$JAVA_HOME`` and of the ``java`` on PATH read their trust from (each once), and
    those skipped with the reason. A JDK whose ``lib/security`` holds a ``jssecacerts`` reads that file instead of
    its ``cacerts`` (Java's own rule, for every program not given javax.net.ssl.trustStore): it is that JDK's store,
    and a ``cacerts`` no JDK found reads any more is a store of its own, which certkit only takes its copies out
    of (:attr:`JavaStore.unread`)."""
    homes: list[tuple[Path, str]] = []
    if env.get("JAVA_HOME"):
        homes.append((Path(env["JAVA_HOME"]), f"JAVA_HOME {env['JAVA_HOME']}"))
    java = find_tool("java", env)
    if java:
        home = Path(java).resolve().parent.parent
        if not any((home / rel).exists() for rel in ("lib/security/cacerts", "jre/lib/security/cacerts")):
            home = _running_home(java, env) or home  # a shim (asdf, jenv): the JDK it runs says where it is
        homes.append((home, f"java on PATH: {home}"))
    if not homes:
        return [], [StoreResult("java", "Java", "", "skipped",
                                "no Java found: JAVA_HOME is not set and there is no java on PATH", "missing")]
    stores: list[JavaStore] = []
    skipped: list[StoreResult] = []
    hidden: list[tuple[Path, str, Path, Path, Path]] = []  # (home, found_by, cacerts, keytool, the file read instead)
    for home, found_by in homes:
        folder = next((f for f in (home / "lib/security", home / "jre/lib/security")
                       if (f / "cacerts").exists() or (f / "jssecacerts").is_file()), None)
        keytool = next((k for k in (home / "bin/keytool", home / "jre/bin/keytool") if k.is_file()), None)
        if folder is None or keytool is None:
            what = "lib/security/cacerts" if folder is None else "bin/keytool"
            why = _no_home(home, homes) if not home.is_dir() else _nowhere(home) if folder is None else \
                f"{home} has no {what}"
            skipped.append(StoreResult("java", f"Java ({found_by})", str(home), "skipped", why, "missing"))
            continue
        read = folder / "jssecacerts" if (folder / "jssecacerts").is_file() else folder / "cacerts"
        if read.name == "jssecacerts" and (folder / "cacerts").exists():
            hidden.append((home, found_by, folder / "cacerts", keytool, read))
        if all(read.resolve() != s.path for s in stores):
            stores.append(JavaStore(home, found_by, read, keytool, env))
    for home, found_by, cacerts, keytool, instead in hidden:
        if all(cacerts.resolve() != s.path for s in stores):  # read by no JDK found (a shared one may be)
            # A trust store option naming it, or naming no readable file (Java then falls back to cacerts), makes
            # the Java programs of this environment read it, jssecacerts or not: it is changed as the others are.
            given, closed = given_cacerts(env, cacerts), closed_to_some(instead, cacerts)
            store = JavaStore(home, found_by, cacerts, keytool, env, unread=None if given or closed else instead)
            store.notes += [closed] if closed and not given else []
            stores.append(store)
    changed = {s.path for s in stores if s.unread_for is None}
    for store in stores:
        if (elsewhere := _named_elsewhere(env, store, changed)) is not None:
            store.notes.append(elsewhere)
    return list(stores), skipped


def _no_home(home: Path, homes: list[tuple[Path, str]]) -> str:
    """Why JAVA_HOME ``home``, not a folder, is skipped, and which JDK the ``java`` on PATH is (``homes``)."""
    on_path = [found for found, by in homes if by.startswith("java on PATH")]
    instead = f"the java on PATH, of {on_path[0]}, is the JDK certkit finds here" if on_path else \
        "there is no java on PATH either"
    return (f"JAVA_HOME names {home}, which {'is not a folder' if home.exists() else 'does not exist'}: programs "
            f"that start Java through JAVA_HOME (Maven, Gradle) fail; {instead}; set JAVA_HOME to an installed JDK")


def _named_elsewhere(env: Mapping[str, str], store: JavaStore, changed: set[Path]) -> str | None:
    """The note that Java programs started with this environment read another trust store than ``store``, named by
    javax.net.ssl.trustStore in an options variable (a developer's profile, a CI image), or None. The JVM applies the
    variables in turn, the last such option winning; a store it names that is not a readable file makes Java fall
    back to its JDK's cacerts (never jssecacerts)."""
    found = trust_store_options(env)
    if not found:
        return None
    named = ", ".join(f"{path or repr('')} ({name})" for name, path in found)
    path = found[-1][1]
    if no_store_file(path) or (path != "NONE" and os.path.isabs(path)):
        if path and Path(path).resolve() == store.path:
            return None
        if no_store_file(path):
            return (f"Java programs started with this environment are given the trust store {named} "
                    f"(javax.net.ssl.trustStore), which does not exist or cannot be read: Java then falls back to its "
                    f"JDK's cacerts (its rule for a trust store it cannot read), {_reach(store)}; drop that option, "
                    "or make that file")
    if path == "NONE":  # no file at all (Java's rule): a PKCS#11 token, or no CA
        return none_store_note(env)
    if not os.path.isabs(path):  # java.io.File: the folder each program is started in, not certkit's
        return (f"Java programs started with this environment are given the trust store {named} "
                "(javax.net.ssl.trustStore), a relative path: each reads it in the folder it is started in, and one "
                "started where there is no such file falls back to its JDK's cacerts (Java's rule), "
                f"{_reach(store)}; give the option a full path")
    if Path(path).resolve() in changed:  # the JDK's cacerts, named while its jssecacerts exists
        return (f"Java programs started with this environment read the trust store {named}, not this one "
                "(javax.net.ssl.trustStore), and certkit changes that file too")
    return (f"Java programs started with this environment read the trust store {named}, not this one "
            "(javax.net.ssl.trustStore): what certkit changes here does not reach them; add the CA there with keytool, "
            "or drop that option")


def _reach(store: JavaStore) -> str:
    """What Java programs falling back to their JDK's cacerts read, said from ``store`` (that cacerts, or the
    jssecacerts beside it)."""
    fallback = store.cacerts.parent / "cacerts"
    if store.cacerts.name == "cacerts":
        return f"so they read this store ({store.path})"
    also = ", and certkit changes that file too" if fallback.exists() else ""
    return f"so they read {fallback}, not this one{also}"


def _nowhere(home: Path) -> str:
    """Why ``home`` has no cacerts: none there, or a link to a file that does not exist (Debian's JDKs link theirs to
    /etc/ssl/certs/java/cacerts, which ca-certificates-java makes: a JDK installed without it, or a failed hook)."""
    for rel in ("lib/security/cacerts", "jre/lib/security/cacerts"):
        if (found := dangling_link(home / rel, above=False)) is not None:
            link, target = found
            return (f"{link} is a link to {target}, which does not exist: the Java programs of this JDK have no trust "
                    "store at all (each TLS connection fails: \"the trustAnchors parameter must be non-empty\"), and "
                    "certkit does not make one holding its CA alone; restore that file (on Debian and Ubuntu the "
                    "package ca-certificates-java makes it) and run again")
    return f"{home} has no lib/security/cacerts"


def _running_home(java: str, env: Mapping[str, str]) -> Path | None:
    """The home of the JDK that ``java`` runs, as that JDK reports it (its java.home property): for a ``java``
    that is a script (a version manager's shim) rather than a link to the JDK's own launcher."""
    import re

    try:
        proc = run_tool([java, "-XshowSettings:properties", "-version"], env=env, timeout=60)
    except TrustError:
        return None
    found = re.search(rb"^\s*java\.home = (.+?)\s*$", proc.stderr + proc.stdout, re.M)
    return Path(os.fsdecode(found[1])) if found and proc.returncode == 0 else None
