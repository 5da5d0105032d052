"""Where a user's NSS databases are: Chromium's ``~/.pki/nssdb`` (and a sandboxed browser's, flatpak or snap),
the Firefox and Thunderbird profiles that each ``profiles.ini`` lists. :func:`chromium_dbs`,
:func:`profile_roots`, :func:`read_profiles`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from certkit.text import shown

PROFILES_INI_LIMIT = 1 << 20  # a profiles.ini lists profiles in a few hundred bytes; a larger one is not one


def read_profiles(base: Path, reader: str = "Firefox"
                  ) -> tuple[list[tuple[str, Path]], str | None, list[tuple[str, Path, str]]]:
    """(name, folder) of every profile that ``base/profiles.ini`` lists, why none could be read from it (None when
    it was read, or is not there), and (name, folder, why) of each profile section that ``reader`` (Firefox,
    Thunderbird) does not read. Read as Firefox reads it, tolerantly: bytes, whatever their encoding (a profile
    name in Latin-1, a UTF-8 byte order mark), lines it cannot parse skipped; then its sections [Profile0],
    [Profile1]... in turn, up to the first without IsRelative= (the sections after a gap are never read), each
    with a Name= and a Path=, relative to ``base`` only when IsRelative is 1, else a full path (Mozilla's
    nsToolkitProfileService)."""
    import configparser
    import itertools

    ini = base / "profiles.ini"
    if not ini.is_file():
        return [], None, []
    try:
        with ini.open("rb") as f:
            data = f.read(PROFILES_INI_LIMIT + 1)
    except OSError as exc:
        return [], f"cannot be read ({exc.strerror or exc})", []
    if len(data) > PROFILES_INI_LIMIT:
        return [], f"cannot be read (larger than {PROFILES_INI_LIMIT} bytes)", []
    # The bytes of a folder's name stay those bytes (surrogateescape, as os.fsdecode); text before the
    # first section is ignored, as Firefox ignores it.
    lines = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "surrogateescape").splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("[")), len(lines))
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    junk = next((i for i, line in enumerate(lines[:start]) if line.strip()), None)
    problem = None if junk is None else f"cannot be read (line {junk + 1} comes before any [section])"
    try:
        parser.read_string("".join(lines[start:]), source=str(ini))
    except configparser.ParsingError as exc:  # the lines it could parse are kept
        first = exc.lineno if isinstance(exc, configparser.MissingSectionHeaderError) else exc.errors[0][0]
        problem = f"cannot be read (line {first + start} is neither a [section] nor a setting)"
    except configparser.Error as exc:
        problem = f"cannot be read ({shown(exc)})"
    found, ignored, read = [], [], set()
    for number in itertools.count():
        section = f"Profile{number}"
        if not parser.has_option(section, "IsRelative"):
            break
        read.add(section)
        raw = parser.get(section, "Path", fallback=None)
        name = _readable(parser.get(section, "Name", fallback=raw or section))
        flag = parser.get(section, "IsRelative").strip()
        folder = base / raw if raw is not None and flag == "1" else Path(raw or ".")
        if raw is None or not parser.has_option(section, "Name"):
            ignored.append((name, folder if raw is not None else ini, f"its section [{section}] in {ini} has no "
                            f"{'Path' if raw is None else 'Name'}= setting, so {reader} does not read it"))
        elif flag != "1" and not os.path.isabs(raw):
            ignored.append((name, ini, f"its section [{section}] in {ini} says IsRelative={shown(flag)} (not 1), so "
                            f"its Path={shown(raw)} must be a full path, and {reader} does not read it"))
        else:
            found.append((name, folder))
    for section in parser.sections():  # after a gap in the numbers (a section taken out by hand): never read
        if section.startswith("Profile") and section not in read and parser.has_option(section, "Path"):
            raw = parser.get(section, "Path")
            relative = parser.get(section, "IsRelative", fallback="1").strip() == "1"
            ignored.append((_readable(parser.get(section, "Name", fallback=raw)), base / raw if relative else Path(raw),
                            f"{reader} reads the sections [Profile0], [Profile1]... of {ini} up to the first one "
                            f"missing or without IsRelative= ([Profile{len(read)}]), and never this one, [{section}]"))
    return found, problem if not found else None, ignored


def _readable(text: str) -> str:
    """A name read with surrogateescape, for people: UTF-8 if its bytes are, else Latin-1 (Firefox's older
    profile managers wrote the system's 8-bit encoding)."""
    data = text.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


# (program, folder holding profiles.ini, relative to HOME)
_PROFILE_ROOTS = (
    ("Firefox", ".mozilla/firefox"),
    ("Firefox (snap)", "snap/firefox/common/.mozilla/firefox"),
    ("Firefox (flatpak)", ".var/app/org.mozilla.firefox/.mozilla/firefox"),
    ("Thunderbird", ".thunderbird"),
    ("Thunderbird (snap)", "snap/thunderbird/common/.thunderbird"),
    ("Thunderbird (flatpak)", ".var/app/org.mozilla.Thunderbird/.thunderbird"),
)
# (program, folder holding profiles.ini, relative to $XDG_CONFIG_HOME): Firefox 147 and later keep a new
# installation's profiles there (the XDG Base Directory layout: the legacy ~/.mozilla without its dot, under
# ~/.config), and the Mozilla code Thunderbird shares does the same with its ~/.thunderbird.
_XDG_PROFILE_ROOTS = (
    ("Firefox", "mozilla/firefox"),
    ("Thunderbird", "thunderbird"),
)
# Chromium-family browsers on Linux read the user's NSS database ~/.pki/nssdb.
_CHROMIUM_DBS = (
    ("Chromium/Chrome", ".pki/nssdb"),
    ("Chromium (snap)", "snap/chromium/current/.pki/nssdb"),
    ("Chromium (flatpak)", ".var/app/org.chromium.Chromium/.pki/nssdb"),
)
CHROMIUM_PROGRAMS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "brave-browser",
                     "microsoft-edge", "vivaldi")


def profile_roots(home: Path, env: Mapping[str, str]) -> list[tuple[str, Path]]:
    """(program, folder that holds its profiles.ini) for every place a Mozilla program of this user keeps one:
    those of :data:`_PROFILE_ROOTS` and :data:`_XDG_PROFILE_ROOTS`, and any other flatpak or snap app's."""
    xdg = env.get("XDG_CONFIG_HOME") or ""
    config = Path(xdg) if os.path.isabs(xdg) else home / ".config"  # the spec: a relative path is ignored
    known = [(program, home / rel) for program, rel in _PROFILE_ROOTS] + [
        (program, config / rel) for program, rel in _XDG_PROFILE_ROOTS]
    return known + _sandboxed(home, ((".var/app/*/.mozilla/firefox", "snap/*/common/.mozilla/firefox"),
                                     (".var/app/*/.thunderbird", "snap/*/common/.thunderbird")), known)


def chromium_dbs(home: Path) -> list[tuple[str, Path]]:
    """(program, folder) of every place a Chromium-family browser of this user keeps its NSS database: those of
    :data:`_CHROMIUM_DBS` (``~/.pki/nssdb`` first), and any other flatpak or snap app's own ``~/.pki/nssdb`` (Chrome,
    Brave, Edge, Vivaldi from Flathub or the Snap Store each keep one there, and read no other)."""
    known = [(program, home / rel) for program, rel in _CHROMIUM_DBS]
    return known + _sandboxed(home, ((".var/app/*/.pki/nssdb", "snap/*/current/.pki/nssdb"),), known)


def _sandboxed(home: Path, patterns: tuple[tuple[str, str], ...], known: list[tuple[str, Path]]
               ) -> list[tuple[str, Path]]:
    """(app (flatpak) or app (snap), folder) of each folder the (flatpak, snap) ``patterns`` find in ``home``,
    but those ``known`` already names."""
    taken = {folder for _program, folder in known}
    found = []
    for group in patterns:
        for pattern, kind in zip(group, ("flatpak", "snap"), strict=True):
            try:
                folders = sorted(home.glob(pattern))
            except OSError:
                continue
            for folder in folders:
                app = folder.relative_to(home).parts[2 if kind == "flatpak" else 1]
                if folder not in taken:
                    taken.add(folder)
                    found.append((f"{shown(app)} ({kind})", folder))
    return found
