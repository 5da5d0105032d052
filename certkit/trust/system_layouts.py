"""Where each distribution keeps its trust store, and which one this is: :class:`SystemLayout` (the folder of
local anchors, the refresh command, the bundle, OpenSSL's folder by subject hash, Java's copy), :data:`LAYOUTS`
per distribution family, :func:`detect_system_layout` from os-release; and the environment variables that point
programs at other CAs than the store's (:func:`overriding_variables`). Changed by :mod:`certkit.trust.system`."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from certkit.text import shown
from certkit.trust.store import TrustError
from certkit.trust.tools import find_tool

OS_RELEASE = Path("/etc/os-release")
_DEBIAN_JAVA_CACERTS = Path("/etc/ssl/certs/java/cacerts")  # ca-certificates-java's copy of the system store


class UnsupportedSystem(TrustError):
    """A system whose trust store certkit does not know how to change."""


@dataclass(frozen=True)
class SystemLayout:
    """Where a distribution keeps locally added trust anchors and how it rebuilds its bundle."""

    family: str
    anchors: Path
    suffix: str
    refresh_added: tuple[str, ...]
    refresh_removed: tuple[str, ...]
    bundle: Path
    package: str  # what provides the refresh tool
    links: Path | None = None  # Debian: the folder of links the hooks are told about
    hooks: Path | None = None  # Debian: programs told "+/etc/ssl/certs/X.pem" or "-..." on stdin
    # OpenSSL's certificate folder (its CApath): curl and Python's ssl look a missing issuer up there by its subject
    # hash (HASH.0, HASH.1...), so a CA put there by hand (cp ca.pem; openssl rehash) is trusted without the bundle.
    hashed: Path | None = None
    # The distribution's copy of the store in Java's keystore format, which a JDK's cacerts leads to: there (Debian's
    # ca-certificates-java installed), Java programs trust what the store trusts; missing, they do not read it.
    java_copy: Path | None = None


LAYOUTS = {
    # Debian's README.Debian: a removed local certificate needs --fresh, or its links stay behind.
    # But --fresh tells the hooks nothing of the removal, so Java's copy (ca-certificates-java's
    # debian:X.pem) would stay: certkit runs --fresh without hooks and tells them itself.
    "debian": SystemLayout("Debian/Ubuntu", Path("/usr/local/share/ca-certificates"), ".crt",
                           ("update-ca-certificates",), ("update-ca-certificates", "--fresh"),
                           Path("/etc/ssl/certs/ca-certificates.crt"), "ca-certificates",
                           Path("/etc/ssl/certs"), Path("/etc/ca-certificates/update.d"), Path("/etc/ssl/certs"),
                           _DEBIAN_JAVA_CACERTS),
    "fedora": SystemLayout("Fedora/RHEL", Path("/etc/pki/ca-trust/source/anchors"), ".pem",
                           ("update-ca-trust", "extract"), ("update-ca-trust", "extract"),
                           Path("/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"), "ca-certificates",
                           hashed=Path("/etc/pki/tls/certs"),
                           java_copy=Path("/etc/pki/ca-trust/extracted/java/cacerts")),
    # Arch and openSUSE: p11-kit's anchor directory, then the distribution's refresh (which runs p11-kit's
    # `trust extract`). Only Debian's layout runs in certkit's tests (this machine and CI are Debian);
    # the others follow each distribution's documented procedure for a local CA.
    "arch": SystemLayout("Arch Linux", Path("/etc/ca-certificates/trust-source/anchors"), ".crt",
                         ("update-ca-trust",), ("update-ca-trust",),
                         Path("/etc/ssl/certs/ca-certificates.crt"), "ca-certificates-utils",
                         hashed=Path("/etc/ssl/certs"), java_copy=Path("/etc/ssl/certs/java/cacerts")),
    "suse": SystemLayout("openSUSE/SLES", Path("/etc/pki/trust/anchors"), ".pem",
                         ("update-ca-certificates",), ("update-ca-certificates",),
                         Path("/etc/ssl/ca-bundle.pem"), "ca-certificates", hashed=Path("/etc/ssl/certs"),
                         java_copy=Path("/var/lib/ca-certificates/java-cacerts")),
}
_FAMILIES = {"debian": "debian", "ubuntu": "debian", "fedora": "fedora", "rhel": "fedora", "centos": "fedora",
             "arch": "arch", "suse": "suse", "opensuse": "suse", "sles": "suse"}


def read_os_release(path: Path = OS_RELEASE) -> dict[str, str]:
    """The KEY=value pairs of os-release(5)."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return values
    for line in text.splitlines():
        key, sep, raw = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            try:
                parts = shlex.split(raw)
            except ValueError:
                parts = [raw]
            values[key.strip()] = " ".join(parts)
    return values


def detect_system_layout(os_release: Path = OS_RELEASE, env: Mapping[str, str] | None = None) -> SystemLayout:
    """The layout of this distribution, from os-release (ID, then ID_LIKE) and the tools present."""
    info = read_os_release(os_release)
    words = [info.get("ID", ""), *info.get("ID_LIKE", "").split()]
    family = next((_FAMILIES.get(w) or ("suse" if w.startswith("opensuse") else None) for w in words
                   if _FAMILIES.get(w) or w.startswith("opensuse")), None)
    name = info.get("PRETTY_NAME") or info.get("ID") or f"unknown ({os_release} is missing)"
    if family is None:
        raise UnsupportedSystem(
            f"certkit does not know how to change the system trust store of {shown(name)}: it knows Debian/Ubuntu, "
            "Fedora/RHEL, Arch Linux and openSUSE (and distributions whose os-release ID_LIKE names them). "
            "Add the CA by hand with your distribution's tool, or use --nss / --java.")
    layout = LAYOUTS[family]
    if find_tool(layout.refresh_added[0], env, sbin=True) is None:
        raise UnsupportedSystem(f"{shown(name)} is {layout.family}-like, but {layout.refresh_added[0]} is not "
                                f"installed (package {layout.package}).")
    return layout


def overriding_variables(layout: SystemLayout, env: Mapping[str, str]) -> list[str]:
    """A note for each kind of program that a variable of ``env`` points at another file or folder of CAs than this
    store's (its bundle, OpenSSL's folder of links by subject hash): "installed" or "trusted" would otherwise say of
    them what is not so. OpenSSL's default paths (Python, openssl) take SSL_CERT_FILE and SSL_CERT_DIR, each even
    empty; curl takes CURL_CA_BUNDLE, else SSL_CERT_DIR, else SSL_CERT_FILE, none of them empty."""
    def given(*names: str, empty: bool) -> tuple[str, str] | None:
        return next(((n, env[n]) for n in names if n in env and (empty or env[n])), None)

    def elsewhere(pair: tuple[str, str] | None) -> tuple[str, str] | None:
        """``pair`` (name, value), unless its value is this store's own file or folder (by another path or not)."""
        own = layout.hashed if pair and pair[0] == "SSL_CERT_DIR" else layout.bundle
        places = pair[1].split(os.pathsep) if pair and pair[0] == "SSL_CERT_DIR" else [pair[1] if pair else ""]
        same = own is not None and any(p and os.path.realpath(p) == os.path.realpath(own) for p in places)
        return None if pair is None or same else pair

    notes = [_reads(layout, "programs using OpenSSL's default CA paths (Python, openssl)",
                    elsewhere(given("SSL_CERT_FILE", empty=True)), elsewhere(given("SSL_CERT_DIR", empty=True)))]
    curl = given("CURL_CA_BUNDLE", "SSL_CERT_DIR", "SSL_CERT_FILE", empty=False)
    notes.append(_reads(layout, "curl commands", elsewhere(curl if curl and curl[0] != "SSL_CERT_DIR" else None),
                        elsewhere(curl if curl and curl[0] == "SSL_CERT_DIR" else None)))
    return [note for note in notes if note]


def _reads(layout: SystemLayout, who: str, file_: tuple[str, str] | None, dir_: tuple[str, str] | None) -> str | None:
    """What ``who`` reads instead of this store, given the file and folder of CAs a variable names (name, value)."""
    if not file_ and not dir_:
        return None
    hashed = layout.hashed
    done = [f"{pair[0]}={shown(pair[1])}" for pair in (file_, dir_) if pair]
    what = ([f"read their CAs from {shown(file_[1]) or 'no file'} instead of {layout.bundle}"] if file_ else []) + (
        [f"look a CA up by its subject hash in {shown(dir_[1]) or 'no folder'} instead of {hashed}"] if dir_ else [])
    reach = ("so they do not read this store at all" if file_ and (dir_ or hashed is None) else
             f"so they find this store's CAs only by the links in {hashed}" if file_ else
             f"but still read {layout.bundle}")
    return (f"{' and '.join(done)} in this environment: {who} {' and '.join(what)}, {reach}; unset "
            f"{'it' if len(done) == 1 else 'them'} where those programs run to have them read this store")
