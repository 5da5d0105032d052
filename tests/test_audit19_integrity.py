"""The nineteenth round's integrity findings (audit integrity, round nineteen).

1. A dead writer's leftovers (a bundle's journal, a temporary folder or file beside a bundle: they hold private
   keys) were told from a live writer's by their pid alone (``kill(pid, 0)``). A pid names another process once
   its writer is gone: after a reboot, and in a container every command is pid 1, so a run killed there (the OOM
   killer, ``docker kill``) left leftovers that every later run took for a live writer's, for good. A journal
   killed between two renames stayed half applied: cert.pem of the killed renewal (recorded abandoned), privkey.pem
   and fullchain.pem of the old certificate, and ``certkit renew`` refused the folder forever ("Restore the pair
   first"), the journal that restores it beside it; ``renew --rekey`` or ``--force`` wrote a new bundle and carried
   the journal along into it, to be rolled back over the new bundle later (its cert.pem replaced by the old one).
   Writers now hold (``flock``) each temporary folder and journal while they fill it, and an output file while
   they write it; one that no one holds is a dead writer's when its pid is gone, or when nothing was written in it
   for five minutes whatever its pid names (:func:`certkit.atomic.writer_gone`). ``renew`` and ``revoke`` settle
   the folder they are given before they read it (as issue and export-p12 did: ``revoke FOLDER --reason
   keyCompromise`` refused such a folder as "a file replaced by hand?"), and a bundle is never written into a
   folder whose journal cannot be settled yet: refused, in words that say why and when it can.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import new_ca, run_certkit
from integrity_helpers import db_rows, read_bundle

_AGO = 20 * 60  # seconds: older than certkit's lease for leftovers no one holds


def _strace() -> str:
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    return strace


def _killed_mid_journal(tmp_path: Path) -> tuple[dict, Path, Path]:
    """A bundle folder holding a user's file beside it (so a renewal replaces it through a journal), renewed with
    --rekey and killed (SIGKILL) as it renames its second new file in: cert.pem is the new one, privkey.pem and
    fullchain.pem the old. Returns the environment, the folder and the journal, renamed as if its writer had been
    pid 1 (init here; in a container, every certkit run)."""
    env = new_ca(tmp_path, "Journal CA")
    folder = tmp_path / "web"
    run_certkit("issue-server", "web.example", "--out", folder, env=env, check=True)
    (folder / "notes.txt").write_text("the user's own file\n")
    env = env | {"PYTHONDONTWRITEBYTECODE": "1"}
    # renameat calls: 1 commits the journal, 2 moves cert.pem in, 3 privkey.pem: killed there
    proc = subprocess.run([_strace(), "-f", "-qq", "-o", "/dev/null", "-e", "trace=renameat", "-e",
                           "inject=renameat:signal=KILL:when=3", sys.executable, "-m", "certkit", "renew",
                           str(folder), "--rekey"], env=env, capture_output=True, text=True, timeout=120)
    if "ptrace" in proc.stderr and "Operation not permitted" in proc.stderr:
        pytest.skip("ptrace is not allowed here")
    journals = [p for p in folder.iterdir() if p.name.startswith(".certkit-swap.")]
    assert len(journals) == 1, (proc.returncode, proc.stderr, list(folder.iterdir()))
    half = read_bundle(folder)
    assert not half.complete  # the state a kill between two renames leaves
    random = journals[0].name.split(".")[2].split("-")[1]  # .certkit-swap.PID-RANDOM.certkit-tmp
    reused = folder / f".certkit-swap.1-{random}.certkit-tmp"
    os.rename(journals[0], reused)
    return env, folder, reused


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def test_a_journal_whose_pid_names_a_live_process_is_settled_once_no_one_holds_it(tmp_path):
    env, folder, journal = _killed_mid_journal(tmp_path)
    killed = read_bundle(folder).serial  # cert.pem: the killed renewal's
    _age(journal, _AGO)
    listed = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]
    assert not journal.exists() and read_bundle(folder).complete  # committed: rolled forward
    assert {r["serial"]: r["status"] for r in listed}[killed] == "valid"


def test_renew_of_a_folder_settles_its_journal_before_it_reads_it(tmp_path):
    """Before, ``certkit renew FOLDER`` refused the half-replaced folder for good ("Restore the pair first")."""
    env, folder, journal = _killed_mid_journal(tmp_path)
    killed = read_bundle(folder).serial
    run_certkit("list", env=env, check=True)  # within the lease: the killed renewal settled abandoned, journal kept
    assert journal.is_dir()
    _age(journal, _AGO)
    renewed = run_certkit("renew", folder, env=env)
    assert renewed.returncode == 0, renewed.stderr
    assert not [p for p in folder.iterdir() if "certkit-tmp" in p.name]
    bundle = read_bundle(folder)
    assert bundle.complete and bundle.serial != killed
    assert (folder / "notes.txt").read_text() == "the user's own file\n"
    rows = {r["serial"]: r for r in db_rows(tmp_path / "ca")}
    assert rows[bundle.serial]["status"] == "valid" and rows[killed]["status"] == "abandoned"
    assert rows[bundle.serial]["renewed_from"] not in (None, killed)  # renewed what the folder held once settled


def test_revoke_of_a_folder_settles_its_journal_before_it_reads_it(tmp_path):
    """Before, ``revoke FOLDER --reason keyCompromise`` refused the half-replaced folder ("names no one certificate
    ... a file replaced by hand?") while the journal that settles it lay beside it."""
    env, folder, journal = _killed_mid_journal(tmp_path)
    run_certkit("list", env=env, check=True)  # within the lease: the killed renewal settled abandoned, journal kept
    assert journal.is_dir()
    _age(journal, _AGO)
    revoked = run_certkit("revoke", folder, "--reason", "keyCompromise", "--json", env=env)
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr
    assert not journal.exists()
    bundle = read_bundle(folder)
    assert bundle.complete and json.loads(revoked.stdout)["serial"] == bundle.serial


def test_a_bundle_is_not_written_over_a_journal_that_cannot_be_settled_yet(tmp_path):
    """Before, ``issue-server --force`` wrote its bundle and carried the journal into the new folder; once settled
    (its pid gone), the journal's undo put the first certificate's cert.pem over the new one's: a mismatched pair."""
    env, folder, journal = _killed_mid_journal(tmp_path)  # just now: its pid may still be its writer's
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    refused = run_certkit("issue-server", "web.example", "--out", folder, "--force", env=env)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"Error: Another certkit command is replacing the bundle in {folder} (its journal {journal.name} is there), "
        "or was stopped less than 5 minutes ago; nothing was written. Run again once it is done: certkit then "
        "finishes or undoes it."]
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before and journal.is_dir()
    _age(journal, _AGO)  # later: the journal is settled first, then the new bundle written
    again = run_certkit("issue-server", "web.example", "--out", folder, "--force", env=env)
    assert again.returncode == 0, again.stderr
    assert not [p for p in folder.iterdir() if "certkit-tmp" in p.name]
    bundle = read_bundle(folder)
    assert bundle.complete
    listed = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]
    assert {r["serial"]: r["status"] for r in listed}[bundle.serial] == "valid"


def test_a_leftover_held_by_its_live_writer_stays_however_old(tmp_path):
    """The other side of the lease: a writer paused with its journal committed (held) keeps it, even when nothing
    was written in it for longer than the lease and its pid is the settling process's own."""
    env = new_ca(tmp_path, "Held CA")
    folder = tmp_path / "web"
    run_certkit("issue-server", "web.example", "--out", folder, env=env, check=True)
    (folder / "notes.txt").write_text("x\n")
    code = ("import os, sys, time; from pathlib import Path; from certkit import atomic, bundle_journal\n"
            "folder = Path(sys.argv[1]); fd = os.open(folder, os.O_RDONLY)\n"
            "name = '.certkit-swap.' + atomic.random_suffix() + '.certkit-tmp'\n"
            "os.mkdir(name, 0o700, dir_fd=fd); atomic.hold(name, dir_fd=fd)\n"
            "then = time.time() - 3600; os.utime(folder / name, (then, then))\n"
            "kept = atomic.writer_gone(folder / name, os.getpid())\n"
            "atomic.let_go(name, dir_fd=fd)\n"
            "print(kept, atomic.writer_gone(folder / name, os.getpid()))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=60,
                          env=env)
    assert proc.stdout.split() == ["False", "True"], proc.stderr


def test_a_reader_opening_the_pair_by_path_across_a_swap_gets_one_of_each_as_the_docs_now_say(tmp_path):
    """2. docs/renew.md and docs/security.md said that a server reading cert.pem and privkey.pem of a folder swapped
    whole "sees the old pair or the new pair, never one of each". The folder holds one pair at every instant, but a
    reader opening the two by path, one before the exchange and one after, gets one of each (here: opened while the
    renewal is paused just before its exchange, and after it). The pages say so now, and what to do."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from integrity_helpers import spki, start_paused

    env = new_ca(tmp_path, "Swap CA")
    folder = tmp_path / "web"
    run_certkit("issue-server", "web.example", "--out", folder, env=env, check=True)
    marker = tmp_path / "marker"
    proc = start_paused(["renew", folder, "--rekey"], env, tmp_path, "staged", marker)
    try:
        cert = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes())  # before the exchange
    finally:
        marker.unlink()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    key = serialization.load_pem_private_key((folder / "privkey.pem").read_bytes(), None)  # after it
    assert spki(key) != spki(cert)  # one of each
    docs = Path(__file__).resolve().parent.parent / "docs"
    for page in ("renew.md", "security.md"):
        text = " ".join((docs / page).read_text().split())
        assert "sees the old pair or the new pair, never one of each;" not in text
        assert "finds the old certificate with the old key or the new certificate with the new key, never" not in text
        assert "by path" in text and "--exec" in text
