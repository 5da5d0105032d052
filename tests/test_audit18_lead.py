"""Round eighteen, the lead's finding: a batch told nothing of what happened to its certificates while they
were being written. ``certkit revoke SERIAL`` of a pending certificate (an operator who saw it in
``list --status pending``), or a keyCompromise revocation of its key, leaves it revoked when the batch
marks it; single issuance says so ("was revoked ... while it was being written: it is delivered
revoked ... publish a new CRL"), but issue-batch, into folders or into one file, printed "Issued 3
certificates" and nothing else, and its --json had no word of it either. Real certkit processes, paused
at the test points of certkit.testhooks; the inventory read with sqlite3 and the CRL with openssl.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from conftest import openssl, run_certkit
from integrity_helpers import start_paused


def _pending(ca_dir: Path) -> list[str]:
    with sqlite3.connect(ca_dir / "inventory.sqlite3") as db:
        found = sorted(s for (s,) in db.execute("SELECT serial FROM certificates WHERE status = 'pending'"))
    db.close()
    return found


def _run_paused(tmp_path: Path, ca_dir: Path, ca_env: dict, fmt: str, as_json: bool, meanwhile):
    """A batch of 3 servers into folders (one process, one chunk: it pauses once, its rows recorded, no
    bundle written) or into one JSON-lines file (paused with the file in place, its rows pending);
    ``meanwhile(serial)`` is done to the second row; return (that serial, the rows, stdout + stderr)."""
    manifest = tmp_path / "fleet.csv"
    manifest.write_text("kind,names\n" + "".join(f"server,h{i}.example.net\n" for i in range(3)))
    where = (["--jobs", "1", "--out-dir", tmp_path / "out"] if fmt == "folder"
             else ["--format", "jsonl", "--out", tmp_path / "fleet.jsonl"])
    marker = tmp_path / "paused"
    writer = start_paused(["issue-batch", manifest, *where, *(["--json"] if as_json else [])], ca_env, tmp_path,
                          "recorded" if fmt == "folder" else "placed", marker)
    try:
        pending = _pending(ca_dir)
        assert len(pending) == 3, pending
        meanwhile(pending[1])
    finally:
        marker.unlink(missing_ok=True)
    out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, out + err
    assert "Traceback" not in err
    return pending[1], pending, out, err


def _said(serial: str, pending: list[str], out: str, err: str, as_json: bool, words: str) -> None:
    """The batch's summary (or its --json "notes") names ``serial`` with ``words``, and no other row."""
    if as_json:
        notes = json.loads(out)["notes"]
        assert [n for n in notes if serial in n and words in n], notes
        assert all(other not in " ".join(notes) for other in pending if other != serial), notes
    else:
        said = [line for line in (out + err).splitlines() if serial in line]
        assert said and words in said[0], out + err
        assert all(other not in out + err for other in pending if other != serial), out + err


@pytest.mark.parametrize("as_json", [False, True], ids=["words", "json"])
def test_a_file_batch_says_which_certificates_were_revoked_while_it_wrote_them(tmp_path: Path, ca_dir: Path,
                                                                              ca_env: dict, as_json: bool) -> None:
    """Revoked (keyCompromise) with the file in place: the batch's summary says so, with the CRL to publish,
    and a CRL made then lists it (openssl)."""
    def revoke(serial: str) -> None:
        run_certkit("revoke", serial, "--reason", "keyCompromise", env=ca_env, check=True, subprocess=True)

    revoked, pending, out, err = _run_paused(tmp_path, ca_dir, ca_env, "jsonl", as_json, revoke)
    _said(revoked, pending, out, err, as_json, "was revoked (keyCompromise")
    assert "certkit crl --out" in out + err
    run_certkit("crl", "--out", tmp_path / "crl.pem", env=ca_env, check=True, subprocess=True)
    text = openssl("crl", "-in", str(tmp_path / "crl.pem"), "-noout", "-text").stdout.decode()
    assert revoked.upper().lstrip("0") in text.replace(":", "").upper(), text


@pytest.mark.parametrize("fmt", ["folder", "jsonl"])
def test_a_batch_says_which_rows_another_command_had_settled_as_abandoned(tmp_path: Path, ca_dir: Path,
                                                                          ca_env: dict, fmt: str) -> None:
    """A row settled as abandoned meanwhile by a command that misjudged the writer (another PID namespace): the
    batch records it valid again, as single issuance does, and says so."""
    from certkit.store import CADirectory

    def abandon(serial: str) -> None:
        CADirectory(ca_dir).inventory.mark_abandoned([serial])

    serial, pending, out, err = _run_paused(tmp_path, ca_dir, ca_env, fmt, False, abandon)
    _said(serial, pending, out, err, False, "recorded as valid again")
    listed = json.loads(run_certkit("list", "--json", "--status", "valid", env=ca_env, check=True).stdout)
    assert serial in [c["serial"] for c in listed["certificates"]]


def _posix_locks_held(inode: int) -> list[str]:
    """The POSIX (fcntl) locks this process holds on the file of ``inode``, as the kernel lists them."""
    pid = str(os.getpid())
    return [line for line in Path("/proc/locks").read_text().splitlines()
            if "POSIX" in line and line.split()[4] == pid and line.split()[5].endswith(f":{inode}")]


def test_migrate_never_closes_a_descriptor_of_the_inventory_while_sqlite_holds_locks_on_it(
        tmp_path: Path, ca_dir: Path, monkeypatch, postgres_url: str) -> None:
    """``inventory migrate`` locks the SQLite file with flock on a descriptor of its own. Closing any
    descriptor of a file drops every POSIX lock the process holds on it, its SQLite connections' included
    (SQLite's "How To Corrupt", 2.2): another process's connection closing then takes itself for the last,
    checkpoints and deletes the log under this one. Every close migrate makes of such a descriptor is
    watched (the kernel's /proc/locks, read at that moment): no SQLite lock of this process may be there."""
    from certkit import store_inventory
    from certkit.store import CADirectory

    inode = (ca_dir / "inventory.sqlite3").stat().st_ino
    closing_with_locks: list[list[str]] = []
    real_close = os.close

    def watched_close(fd: int) -> None:
        try:
            same = os.fstat(fd).st_ino == inode
        except OSError:
            same = False
        if same and _posix_locks_held(inode):
            closing_with_locks.append(_posix_locks_held(inode))
        real_close(fd)

    store = CADirectory(ca_dir)
    monkeypatch.setattr(store_inventory.os, "close", watched_close)
    store_inventory.move(store, postgres_url)
    monkeypatch.undo()
    assert closing_with_locks == []
    with sqlite3.connect(ca_dir / "inventory.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    db.close()
