"""Where a user's NSS databases are: Chromium's ``~/.pki/nssdb`` (and a sandboxed browser's, flatpak or snap),
the Firefox and Thunderbird profiles that each ``profiles.ini`` lists. :func:`chromium_dbs`,
:func:`profile_roots`, :func:`read_profiles`.
"""

from __future__ import annotations

import os
import re
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
    # The bytes of a folder's name stay those bytes (surrogateescape, as os.fsdecode).
    sections, problem = _parse_ini(data.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "surrogateescape"))
    found, ignored, read = [], [], set()
    for number in itertools.count():
        section = f"Profile{number}"
        settings = sections.get(section, {})
        if "IsRelative" not in settings:
            break
        read.add(section)
        raw = settings.get("Path")
        name = _readable(settings.get("Name", raw or section))
        flag = settings["IsRelative"]
        folder = base / raw if raw is not None and flag == "1" else Path(raw or ".")
        if raw is None or "Name" not in settings:
            ignored.append((name, folder if raw is not None else ini, f"its section [{section}] in {ini} has no "
                            f"{'Path' if raw is None else 'Name'}= setting, so {reader} does not read it"))
        elif flag != "1" and not os.path.isabs(raw):
            ignored.append((name, ini, f"its section [{section}] in {ini} says IsRelative={shown(flag)} (not 1), so "
                            f"its Path={shown(raw)} must be a full path, and {reader} does not read it"))
        else:
            found.append((name, folder))
    for section, settings in sections.items():  # after a gap in the numbers (one taken out by hand): never read
        if section.startswith("Profile") and section not in read and "Path" in settings:
            raw = settings["Path"]
            relative = settings.get("IsRelative", "1") == "1"
            ignored.append((_readable(settings.get("Name", raw)), base / raw if relative else Path(raw),
                            f"{reader} reads the sections [Profile0], [Profile1]... of {ini} up to the first one "
                            f"missing or without IsRelative= ([Profile{len(read)}]), and never this one, [{section}]"))
    return found, problem if not found else None, ignored


def _parse_ini(text: str) -> tuple[dict[str, dict[str, str]], str | None]:
    """The settings of each [section] of an INI file's ``text``, as Mozilla's nsINIParser reads them, and why it is
    not all read (the first line ignored, or None). Lines end at CR or LF; a line whose first character is # or ; is
    a comment; leading spaces and tabs go; a header followed by anything but spaces and tabs opens no section (its
    settings are ignored); a setting's key (case and spaces kept) ends at its first =, its value is the rest of the
    line, as it is; a key set twice keeps its last value; a line without = is ignored, as are those before any
    section."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    problems = []
    for number, line in enumerate(re.split(r"\r\n|\r|\n", text), 1):
        token = line.lstrip(" \t")
        if line[:1] in ("#", ";") or not token:
            continue
        if token.startswith("["):
            name, closed, rest = token[1:].partition("]")
            current = sections.setdefault(name, {}) if closed and name and not rest.strip(" \t") else None
            problems += [] if current is not None else [f"line {number} is not a [section] header: its settings are "
                                                        "ignored"]
            continue
        key, equals, value = token.lstrip("=").partition("=")
        if current is not None and equals:
            current[key] = value
        elif current is not None or not sections:
            problems.append(f"line {number} is neither a [section] nor a setting" if sections else
                            f"line {number} comes before any [section]")
    return sections, f"cannot be read ({problems[0]})" if problems else None


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
