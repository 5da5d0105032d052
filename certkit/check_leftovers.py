"""What ``certkit check`` says of what killed certkit commands left in or beside the places the inventory records
(bundle folders, output files, intermediate CA directories): temporary files and folders of dead writers, which
may hold a private key (an ``export-p12`` killed while writing leaves its bundle.p12 under a temporary name in the
folder, which no inventory row points to). :mod:`certkit.check_inventory` names each with the command that removes
it; nothing is removed here (check changes nothing), and a live writer's are never named."""

from __future__ import annotations

import os
from pathlib import Path


def dead_temporaries(inventory) -> list[str]:
    """The leftovers of dead writers in or beside each place this host's rows record, sorted; but those of a place
    a pending row names, which the settling of that row removes (check says so of pending rows)."""
    with inventory._read(readonly=True) as tx:
        rows = tx.execute("SELECT DISTINCT folder, sink, writer, status = 'pending' FROM certificates WHERE folder "
                          "IS NOT NULL AND sink IN ('folder', 'file', 'ca-dir')").fetchall()
    settled = {folder for folder, _sink, _writer, pending in rows if pending}
    return sorted(path for path in _dead_temporaries(rows) if _place_of(path) not in settled)


def _place_of(path: str) -> str:
    """The recorded place a temporary entry belongs to: the one it stands beside (``.NAME.PID-RANDOM...``), named
    for it, or the folder it is in."""
    from certkit.atomic import parse_temporary
    from certkit.constants import BUNDLE_FILES

    parent, name = os.path.split(path)
    parsed = parse_temporary(name)
    inside = parsed is None or parsed[0] == "certkit-swap" or parsed[0] in BUNDLE_FILES  # a journal, a file of it
    return parent if inside else os.path.join(parent, parsed[0])


def dead_beside(path: Path) -> list[str]:
    """The temporary copies of ``path`` that dead writers left beside it (an init-ca killed before its CA directory
    was in place leaves the one it assembled, the CA key in it), sorted."""
    from certkit.atomic import parse_temporary

    path = Path(os.path.abspath(path))
    return sorted(p for p in _in(str(path.parent)) if (parsed := parse_temporary(os.path.basename(p)))
                  and parsed[0] == path.name)


def _dead_temporaries(rows) -> set[str]:
    from certkit.inventory.reconcile import is_local

    places: set[str] = set()  # the folders to look in: each recorded place's, and a bundle folder itself
    for folder, sink, writer, _pending in rows:
        if not is_local(writer):  # another host's folder: not this one's to judge
            continue
        places.add(os.path.dirname(folder))
        if sink in ("folder", "ca-dir"):
            places.add(folder)
    return {path for place in places for path in _in(place)}


def _in(place: str) -> list[str]:
    from certkit.atomic import TEMP_SUFFIX, parse_temporary, writer_gone

    try:
        with os.scandir(place) as entries:
            named = [(e.path, parse_temporary(e.name)) for e in entries if e.name.endswith(TEMP_SUFFIX)]
    except OSError:
        return []
    return [path for path, parsed in named if parsed and writer_gone(Path(path), parsed[1])]
