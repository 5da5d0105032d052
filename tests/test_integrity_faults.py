"""Fault injection: issue-server, issue-batch (one worker and two) and renew (key kept, new key)
interrupted at every pause point (certkit.testhooks: signed, recorded, staged, swapped) with
SIGINT (Ctrl-C) and SIGHUP (the terminal or ssh session went away), both to the whole process
group as a terminal sends them, SIGTERM and SIGKILL (to the command), and run out of disk space
part-way.

Afterwards, every time: ``certkit list --json`` lists as valid exactly the complete bundles on
disk (abandoned rows have none, nothing stays pending, no half bundle or temporary file is
left), ``certkit check`` passes, no process of the command is left (a batch's workers die with
their parent, even when it is SIGKILLed), Ctrl-C exits 130, SIGHUP 129 and SIGTERM 143 and each
says how many bundles were written, and rerunning the batch with --resume finishes the job, keeping
the bundles already complete.

The pipeline holds SIGINT/SIGTERM/SIGHUP off from recording to marking (certkit.issuing.uninterrupted),
so a signal at "recorded" or "staged" lands right after the bundle (the chunk) is written: the
tests assert the consistent end state and the count said, not that nothing was written.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import sqlite3
from pathlib import Path

import pytest

from conftest import PASSPHRASE, certkit_env, run_certkit
from integrity_helpers import (
    alive,
    assert_inventory_matches_disk,
    bundles_under,
    db_rows,
    fill,
    interrupt,
    listed,
    read_bundle,
    start_paused,
    tmpfs,
)

POINTS = ("signed", "recorded", "staged")
RENEW_POINTS = (*POINTS, "swapped")
SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGKILL)
EXIT = {signal.SIGINT: 130, signal.SIGHUP: 129, signal.SIGTERM: 143, signal.SIGKILL: -signal.SIGKILL}
CHUNK = 2  # CERTKIT_TEST_CHUNK_SIZE: five lines make three chunks
MANIFEST = "kind,names,out\n" + "".join(
    f"{kind},{name},{folder}\n" for kind, name, folder in [
        ("server", "web1.example.internal 10.0.0.1", "web1"), ("client", "Alice Smith", "people/alice"),
        ("server", "web2.example.internal", "web2"), ("peer", "node1.example.internal", "nodes/node1"),
        ("client", "bob@example.internal", "people/bob")])
LINES = 5
COMMANDS = {
    "issue-server": ["issue-server", "api.example.internal", "--out", "out/api"],
    "issue-batch --jobs 1": ["issue-batch", "fleet.csv", "--out-dir", "out", "--jobs", "1"],
    "issue-batch --jobs 2": ["issue-batch", "fleet.csv", "--out-dir", "out", "--jobs", "2"],
    # a folder of bundle files only: swapped whole (renameat2 RENAME_EXCHANGE)
    "renew": ["renew", "out/svc"],
    # a folder with the user's files beside the bundle: the journaled replacement
    "renew --rekey": ["renew", "out/app", "--rekey"],
}
CASES = [(command, point, signum) for command in COMMANDS
         for point in (RENEW_POINTS if command.startswith("renew") else POINTS) for signum in SIGNALS]


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A CA and two bundles to renew, made once; each case works on a copy."""
    root = tmp_path_factory.mktemp("template")
    env = certkit_env(CERTKIT_CA_DIR=str(root / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Faults Root", env=env, check=True)
    run_certkit("issue-server", "svc.example.internal", "--out", root / "out/svc", env=env, check=True)
    run_certkit("issue-client", "App Client", "--out", root / "out/app", env=env, check=True)
    (root / "out/app/notes.txt").write_text("the user's own file\n")
    (root / "out/app/logs").mkdir()
    (root / "out/app/logs/app.log").write_text("line 1\n")
    (root / "fleet.csv").write_text(MANIFEST)
    return root


def copy_of(template: Path, tmp_path: Path) -> tuple[Path, dict]:
    """The template copied to ``tmp_path``, the inventory's folders moved with it."""
    shutil.copytree(template, tmp_path, dirs_exist_ok=True, symlinks=True)
    with sqlite3.connect(tmp_path / "ca/inventory.sqlite3") as db:
        db.execute("UPDATE certificates SET folder = replace(folder, ?, ?)", (str(template), str(tmp_path)))
    db.close()
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      CERTKIT_TEST_CHUNK_SIZE=str(CHUNK))
    return tmp_path, env


def said_written(stderr: str) -> int:
    """The number of bundles the interrupted command says it wrote."""
    if re.search(r"no bundle (was|were) written", stderr, re.I):
        return 0
    found = re.search(r"([\d,]+) bundles? (?:was|were) written", stderr)  # grouped: 1,500
    assert found, f"does not say how many bundles were written:\n{stderr}"
    return int(found.group(1).replace(",", ""))


def bundle_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("command,point,signum", CASES,
                         ids=[f"{c.replace(' ', '')}-{p}-{signal.Signals(s).name}" for c, p, s in CASES])
def test_interrupted(template: Path, tmp_path: Path, command: str, point: str, signum: int) -> None:
    work, env = copy_of(template, tmp_path)
    out = work / "out"
    before = {f: bundle_bytes(out / f) for f in ("svc", "app")}
    proc = start_paused(COMMANDS[command], env, work, point, work / "paused")
    outcome = interrupt(proc, signum, work / "paused")

    # The exit status a shell expects, one clear account, no traceback, no process left.
    assert outcome.returncode == EXIT[signum], (outcome.returncode, outcome.stderr)
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert not [p for p in outcome.family if alive(p)]
    if command.endswith("--jobs 2"):
        assert len(outcome.family) >= 2, "the batch ran without its worker processes"

    rows = assert_inventory_matches_disk(env, work / "ca", out)
    new = [r for r in rows if r["kind"] != "ca" and r["serial"] not in _template_serials(template)]
    if signum != signal.SIGKILL:
        assert said_written(outcome.stderr) == len(new), (outcome.stderr, new)

    held_off = signum != signal.SIGKILL and point != "signed"  # the step in flight finishes first
    if point == "signed" and (signum == signal.SIGKILL or not command.endswith("--jobs 2")):
        # Nothing is written once the signal is in; a SIGKILLed batch's workers die with it. (The
        # parent passes SIGINT/SIGTERM on to its workers: one may have begun its chunk by then.)
        assert new == []
    if command.startswith("renew"):
        _after_renew(command, point, signum, out, before, new)
    elif command == "issue-server":
        assert len(new) == (1 if held_off else 0) or signum == signal.SIGKILL
    else:
        if held_off:  # the chunk in flight (one per worker), then a stop at its boundary
            assert CHUNK <= len(new) <= (CHUNK if command.endswith("--jobs 1") else 2 * CHUNK), new
        _resume_finishes(work, env, out, {b.folder.name: b for b in bundles_under(out)})


@pytest.mark.parametrize("command", ["issue-server", "issue-batch --jobs 2", "renew"])
def test_hangup_ignored_under_nohup(template: Path, tmp_path: Path, command: str) -> None:
    """Started with SIGHUP ignored (``nohup certkit ...``), a hangup changes nothing: the command
    runs to its end, as nohup promises, instead of stopping as it does on a terminal's hangup."""
    work, env = copy_of(template, tmp_path)
    proc = start_paused(COMMANDS[command], env, work, "recorded", work / "paused", nohup=True)
    outcome = interrupt(proc, signal.SIGHUP, work / "paused")
    assert outcome.returncode == 0, outcome.stderr
    assert "Interrupted" not in outcome.stderr and "interrupted" not in outcome.stderr
    rows = assert_inventory_matches_disk(env, work / "ca", work / "out")
    new = [r for r in rows if r["kind"] != "ca" and r["serial"] not in _template_serials(template)]
    assert len(new) == {"issue-server": 1, "issue-batch --jobs 2": LINES, "renew": 1}[command]


def _template_serials(template: Path) -> set[str]:
    return {r["serial"] for r in db_rows(template / "ca")}


def _after_renew(command: str, point: str, signum: int, out: Path, before: dict, new: list) -> None:
    folder = out / ("svc" if command == "renew" else "app")
    now = bundle_bytes(folder)
    renewed = now["cert.pem"] != before[folder.name]["cert.pem"]
    assert renewed == bool(new), (renewed, new)
    if signum != signal.SIGKILL:  # a held-off signal lets the renewal finish; before it, none starts
        assert renewed == (point != "signed")
    elif point == "swapped":
        assert renewed  # the new bundle was in place when the process died: rolled forward
    if command == "renew":
        assert now["privkey.pem"] == before["svc"]["privkey.pem"]  # the key is kept, never rewritten
    else:  # the user's files are untouched whatever happened
        assert (folder / "notes.txt").read_text() == "the user's own file\n"
        assert (folder / "logs/app.log").read_text() == "line 1\n"
    assert (out / "svc" if command != "renew" else out / "app").exists()


def _resume_finishes(work: Path, env: dict, out: Path, complete: dict) -> None:
    """Rerunning the batch with --resume issues the rest and keeps what is complete."""
    kept = {name: bundle_bytes(b.folder) for name, b in complete.items() if b.complete and name not in ("svc", "app")}
    proc = run_certkit("issue-batch", "fleet.csv", "--out-dir", "out", "--resume", "--jobs", "2", "--json",
                       cwd=work, env=env, subprocess=True)  # it forks its workers
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    batch_bundles = [b for b in bundles_under(out) if b.folder.name not in ("svc", "app")]
    assert (data["issued"], data["kept"]) == (LINES - len(kept), len(kept)), (data, sorted(kept))
    assert len(batch_bundles) == LINES and all(b.complete for b in batch_bundles)
    for b in batch_bundles:
        if b.folder.name in kept:
            assert bundle_bytes(b.folder) == kept[b.folder.name]
    valid = {r["serial"] for r in db_rows(work / "ca") if r["status"] == "valid"}
    assert {b.serial for b in batch_bundles} <= valid


# --- a full disk ------------------------------------------------------------------------
@pytest.mark.parametrize("command", list(COMMANDS))
def test_disk_full(template: Path, tmp_path: Path, command: str) -> None:
    """The output's file system fills up part-way: one Error line saying so and how many bundles
    were written; the inventory matches the disk; with room again, the batch resumes."""
    work, env = copy_of(template, tmp_path)
    with tmpfs(work / "small", "size=512k") as small:
        out = small / "out"
        shutil.copytree(work / "out", out, symlinks=True)
        with sqlite3.connect(work / "ca/inventory.sqlite3") as db:
            db.execute("UPDATE certificates SET folder = replace(folder, ?, ?)", (str(work / "out"), str(out)))
        db.close()
        shutil.rmtree(work / "out")
        (work / "out").symlink_to(out)
        before = {f: bundle_bytes(out / f) for f in ("svc", "app")}
        # Room for a bundle or two (tmpfs counts a page per file), not for the whole batch.
        filler = fill(small, leave=40 * 1024 if "batch" in command else 2 * 1024)
        proc = run_certkit(*COMMANDS[command], cwd=work, env=env, subprocess=True)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "the disk is full" in proc.stderr, proc.stderr
        assert "damaged" not in proc.stderr
        rows = assert_inventory_matches_disk(env, work / "ca", out)
        new = [r for r in rows if r["kind"] != "ca" and r["serial"] not in _template_serials(template)]
        if "batch" in command:
            assert said_written(proc.stderr) == len(new), (proc.stderr, new)
            filler.unlink()
            _resume_finishes(work, env, out, {b.folder.name: b for b in bundles_under(out)})
        else:
            assert new == []
            for name in ("svc", "app"):
                assert bundle_bytes(out / name) == before[name]
            if command.startswith("renew"):  # the deployed certificate is still the one to renew
                expiring = listed(env, "--expiring", "825d")
                assert read_bundle(out / COMMANDS[command][1].split("/")[1]).serial in {r["serial"] for r in expiring}
