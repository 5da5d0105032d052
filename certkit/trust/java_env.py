"""Which keystore the Java programs of a JDK read, beyond its own files: the trust store option their environment
gives them (JAVA_TOOL_OPTIONS, JDK_JAVA_OPTIONS, _JAVA_OPTIONS), read as the JVM reads it, and a jssecacerts some of
its users cannot read. Java's rule (sun.security.ssl.TrustStoreManager): the store javax.net.ssl.trustStore names, else
jssecacerts, else cacerts, each only when it is a file the program can read; a named store it cannot read makes it fall
back to cacerts, never jssecacerts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

# Variables the JVM (or the java launcher) takes options from, in the order it applies them.
OPTION_VARIABLES = ("JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", "_JAVA_OPTIONS")


def trust_store_options(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """Each javax.net.ssl.trustStore option of the options variables (variable, path), in the order the JVM applies
    them: the last one wins."""
    prefix = "-Djavax.net.ssl.trustStore="
    return [(name, option[len(prefix):]) for name in OPTION_VARIABLES
            for option in jvm_options(env.get(name, "")) if option.startswith(prefix)]


def none_store_note(env: Mapping[str, str]) -> str:
    """The note for Java programs given javax.net.ssl.trustStore=NONE (the winning option): Java then reads no file
    (sun.security.ssl.TrustStoreManager) but loads a store of the type javax.net.ssl.trustStoreType names from nothing:
    a PKCS#11 token's anchors (what NONE is meant for), or, for a file type (PKCS12, JKS), no CA at all."""
    variable = trust_store_options(env)[-1][0]
    prefix = "-Djavax.net.ssl.trustStoreType="
    types = [option[len(prefix):] for name in OPTION_VARIABLES for option in jvm_options(env.get(name, ""))
             if option.startswith(prefix)]
    given = f"Java programs started with this environment are given javax.net.ssl.trustStore=NONE ({variable})"
    if types and types[-1].strip().upper() == "PKCS11":
        return (f"{given} with javax.net.ssl.trustStoreType=PKCS11: they trust the CAs of a PKCS#11 token, not this "
                "store: what certkit changes here does not reach them; add the CA to that token, or drop those options")
    return (f"{given}: they read no trust store file, this one or any other, and trust no CA at all (each TLS "
            "connection fails: \"the trustAnchors parameter must be non-empty\"); NONE is meant for a PKCS#11 token "
            "(javax.net.ssl.trustStoreType=PKCS11): what certkit changes here does not reach them; drop that option")


def jvm_options(text: str) -> list[str]:
    """The options of an options variable, split as the JVM splits them (Arguments::parse_options_buffer): at white
    space outside quotes; a single or double quote anywhere in an option keeps what it encloses as it is, spaces and
    all (-Djavax.net.ssl.trustStore="/x/team store.jks", "-D.../x/team store.jks"), and goes; no escapes. A quote
    left open makes the JVM refuse to start: no options."""
    options, current, quote, started = [], [], "", False
    for char in text:
        if quote:
            if char == quote:
                quote = ""
            else:
                current.append(char)
        elif char in "'\"":
            quote, started = char, True
        elif char.isspace():
            if started:
                options.append("".join(current))
            current, started = [], False
        else:
            current.append(char)
            started = True
    if quote:
        return []
    return options + (["".join(current)] if started else [])


def no_store_file(path: str) -> bool:
    """Whether a trust store option naming ``path`` names no file Java can read, so that Java falls back to its JDK's
    cacerts: empty (-Djavax.net.ssl.trustStore= with nothing after it), or a full path to no readable file."""
    return path == "" or (path != "NONE" and os.path.isabs(path) and not (os.path.isfile(path)
                                                                         and os.access(path, os.R_OK)))


def given_cacerts(env: Mapping[str, str], cacerts: Path) -> bool:
    """Whether Java programs started with ``env`` read ``cacerts`` though its JDK has a jssecacerts: the trust store
    option that wins names it (by any path), or names no readable file, for which Java falls back to cacerts, never
    jssecacerts (sun.security.ssl.TrustStoreManager), or a relative path, which each program reads in the folder it is
    started in: one started where there is no such file reads cacerts."""
    found = trust_store_options(env)
    path = found[-1][1] if found else "NONE"
    if path != "NONE" and not os.path.isabs(path):
        return True
    return no_store_file(path) or (os.path.isabs(path) and Path(path).resolve() == cacerts.resolve())


def closed_to_some(jsse: Path, cacerts: Path) -> str | None:
    """The note that users who may read ``cacerts`` cannot read ``jsse`` (a jssecacerts made by root with a umask of
    077, mode 0600), or None: Java takes a jssecacerts its program cannot read for none, and reads cacerts (its rule,
    sun.security.ssl.TrustStoreManager), so their Java programs read that cacerts, which certkit then changes too."""
    import pwd

    try:
        j, c = jsse.stat(), cacerts.stat()
    except OSError:
        return None
    others = bool(c.st_mode & 0o004) and not j.st_mode & 0o004
    group = bool(c.st_mode & 0o040) and not (j.st_mode & 0o004 or (j.st_mode & 0o040 and j.st_gid == c.st_gid))
    if not (others or group or not os.access(jsse, os.R_OK)):
        return None
    try:
        owner = pwd.getpwuid(j.st_uid).pw_name
    except KeyError:
        owner = f"uid {j.st_uid}"
    return (f"{jsse} (mode {j.st_mode & 0o7777:04o}, {owner}'s) cannot be read by every user who reads this cacerts: "
            "their Java programs take it for none and read this cacerts instead (Java's rule), so certkit changes it "
            "too")
