"""The thirteenth round's integrity findings (audits integrity14 and team14), one class: what a command
states about an inventory's certificates, and which inventory it reads, stays true after a kill or an
I/O error and whatever file is named:

1. a batch killed while writing to standard output leaves the certificates it was writing pending (they may
   have been delivered, with their keys), never ``abandoned``; list, check and revoke see them;
2. ``inventory migrate`` makes the old SQLite file refuse writes before certkit-ca.json names the database:
   a kill at any point leaves either no move, or a move that the same command finishes (never a
   configuration naming the database while the old file takes writes);
3. a failure after the database committed the copy says so, and what to do;
4. ``check`` says truly what holds a pending row (a writer that died, settled by the next command);
5. a moved SQLite inventory is never read as the inventory (a copy of the CA directory without
   certkit-ca.json, $CERTKIT_INVENTORY_URL naming it), nor moved a second time;
6. another CA's SQLite inventory kept outside a CA directory is refused through $CERTKIT_INVENTORY_URL.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit


def _env(tmp_path: Path, ca: str = "ca", **extra: str) -> dict[str, str]:
    return certkit_env(CERTKIT_CA_DIR=str(tmp_path / ca), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path),
                       **extra)


def _straced(args: list, env: dict, inject: str, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    """``certkit ARGS`` under strace with ``-e inject=INJECT`` (a signal or an error at one system call)."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    proc = subprocess.run([strace, "-f", "-qq", "-o", "/dev/null", "-e", f"inject={inject}", sys.executable, "-m",
                           "certkit", *map(str, args)], env=env, stdout=stdout, stderr=subprocess.PIPE, timeout=120)
    if b"ptrace" in proc.stderr and b"Operation not permitted" in proc.stderr:
        pytest.skip("ptrace is not allowed here")
    return proc


def _statuses(inventory: Path) -> dict[str, int]:
    with sqlite3.connect(inventory) as db:
        return dict(db.execute("SELECT status, count(*) FROM certificates GROUP BY status").fetchall())


# --- 1. a batch to standard output, killed -------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["jsonl", "tar"])
def test_a_stdout_batch_killed_while_writing_leaves_its_certificates_pending(tmp_path: Path, fmt: str) -> None:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Stream CA", env=env, check=True)
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names\n" + "".join(f"server,h{i}.example.com\n" for i in range(20)))
    out = tmp_path / f"out.{fmt}"
    with out.open("wb") as sink:
        proc = _straced(["issue-batch", manifest, "--format", fmt, "--jobs", "1"], env, "write:signal=KILL:when=8",
                        stdout=sink)
    assert proc.returncode != 0
    assert out.stat().st_size > 0  # records (certificates and their keys) reached the output
    listed = run_certkit("list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["certificates"]
    # Never "abandoned" (signed but never delivered): each may be in the output, with its key.
    assert len(rows) == 20 and {r["status"] for r in rows} == {"pending"}, rows
    assert "standard output" in listed.stderr and "may have been delivered" in listed.stderr, listed.stderr
    assert _statuses(tmp_path / "ca" / "inventory.sqlite3") == {"pending": 20}
    assert "No certificates match" in run_certkit("list", "--status", "abandoned", env=env).stdout
    check = run_certkit("check", env=env)
    assert "20 certificates are pending: they were being written to standard output" in check.stdout, check.stdout
    # Revocable, and on the next CRL.
    run_certkit("revoke", rows[0]["serial"], env=env, check=True)
    assert _statuses(tmp_path / "ca" / "inventory.sqlite3") == {"pending": 19, "revoked": 1}


# --- 4. check's words for a pending row of a writer that died --------------------------------------------
def test_check_says_a_dead_writers_pending_row_is_settled_by_the_next_command(tmp_path: Path) -> None:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Pending CA", env=env, check=True)
    run_certkit("issue-server", "x.test", "--out", tmp_path / "x", env=env, check=True)
    inventory = tmp_path / "ca" / "inventory.sqlite3"
    with sqlite3.connect(inventory) as db:  # as a writer killed after writing the bundle leaves it
        db.execute("UPDATE certificates SET status = 'pending', writer = NULL")
    check = run_certkit("check", env=env)
    warning = next(line for line in check.stdout.splitlines() if "pending" in line)
    assert "left by a command that died" in warning and "certkit list" in warning, warning
    assert "being written now" not in warning and "whose files cannot be read here" not in warning, warning
    assert _statuses(inventory) == {"pending": 1}  # check changed nothing
    run_certkit("list", env=env, check=True)
    assert _statuses(inventory) == {"valid": 1}  # settled by its bundle, as the warning said


# --- 6. another CA's SQLite inventory outside a CA directory -------------------------------------------
def test_another_cas_sqlite_inventory_outside_a_ca_directory_is_refused(tmp_path: Path) -> None:
    env = certkit_env(HOME=str(tmp_path))
    for name in ("s1", "s2"):
        run_certkit("init-ca", "--ca-dir", tmp_path / name, "--no-passphrase", "--name", name.upper(), env=env,
                    check=True)
    run_certkit("issue-server", "--ca-dir", tmp_path / "s2", "zz.example", "--out", tmp_path / "zz", env=env,
                check=True)
    (tmp_path / "elsewhere").mkdir()
    copy = tmp_path / "elsewhere" / "inv.sqlite3"
    shutil.copy(tmp_path / "s2" / "inventory.sqlite3", copy)
    foreign = dict(env, CERTKIT_INVENTORY_URL=str(copy))
    assert_clean_error(run_certkit("list", "--ca-dir", tmp_path / "s1", env=foreign), "belongs to another CA")
    assert_clean_error(run_certkit("issue-server", "--ca-dir", tmp_path / "s1", "yy.example", "--out",
                                   tmp_path / "yy", env=foreign), "belongs to another CA")
    assert not (tmp_path / "yy").exists()
    assert _statuses(copy) == {"valid": 1}  # nothing written into it
    # Its own CA reads the copy (a backup kept elsewhere) as before.
    assert "zz.example" in run_certkit("list", "--ca-dir", tmp_path / "s2", env=foreign, check=True).stdout
    # An empty one is tied to its CA too (init-ca binds it, as it binds a PostgreSQL inventory).
    run_certkit("init-ca", "--ca-dir", tmp_path / "s3", "--no-passphrase", "--name", "S3", env=env, check=True)
    empty = tmp_path / "elsewhere" / "empty.sqlite3"
    shutil.copy(tmp_path / "s3" / "inventory.sqlite3", empty)
    assert_clean_error(run_certkit("issue-server", "--ca-dir", tmp_path / "s1", "yy.example", "--out",
                                   tmp_path / "yy", env=dict(env, CERTKIT_INVENTORY_URL=str(empty))),
                       "bound to another CA certificate")
    assert _statuses(empty) == {}


# --- 2, 3, 5. inventory migrate ---------------------------------------------------------------------
@pytest.fixture
def solo(tmp_path: Path, postgres_url: str) -> dict[str, str]:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Solo CA", env=env, check=True)
    run_certkit("issue-server", "www.example.internal", "--out", tmp_path / "www", env=env, check=True)
    return env


def _config(tmp_path: Path) -> dict:
    path = tmp_path / "ca" / "certkit-ca.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _refuses_writes(inventory: Path) -> bool:
    db = sqlite3.connect(inventory, isolation_level=None)
    try:
        db.execute("BEGIN")
        db.execute("INSERT INTO meta (key, value) VALUES ('x', 'y')")
    except sqlite3.DatabaseError as exc:
        return "moved to" in str(exc)
    finally:
        db.rollback() if db.in_transaction else None
        db.close()
    return False


@pytest.mark.parametrize("kill_at", ["fdatasync:signal=KILL:when=1", "fdatasync:signal=KILL:when=2",
                                     "fsync:signal=KILL:when=2", "rename:signal=KILL:when=1"])
def test_a_killed_migrate_never_names_the_database_while_the_old_file_takes_writes(
        tmp_path: Path, solo: dict, postgres_url: str, kill_at: str) -> None:
    inventory = tmp_path / "ca" / "inventory.sqlite3"
    _straced(["inventory", "migrate", "--to", postgres_url], solo, kill_at)
    if _config(tmp_path).get("inventory") == postgres_url:
        assert _refuses_writes(inventory), kill_at
    elif _refuses_writes(inventory):
        # Marked, not yet named: every command refuses the CA, saying how to finish.
        proc = run_certkit("issue-server", "late.example.internal", "--out", tmp_path / "late", env=solo)
        assert_clean_error(proc, "run certkit inventory migrate --to")
        assert "was moved to" in proc.stderr and not (tmp_path / "late").exists()
    # The same command finishes (or redoes) the move, whatever was left.
    if _config(tmp_path).get("inventory") != postgres_url:
        run_certkit("inventory", "migrate", "--to", postgres_url, env=solo, check=True)
    assert _config(tmp_path) == {"inventory": postgres_url} and _refuses_writes(inventory)
    run_certkit("issue-server", "late.example.internal", "--out", tmp_path / "late", env=solo, check=True)
    names = [c["names"] for c in json.loads(run_certkit("list", "--json", env=solo, check=True).stdout)["certificates"]]
    assert sorted(names) == [["DNS:late.example.internal"], ["DNS:www.example.internal"]]


def test_migrate_failing_on_the_configuration_says_the_copy_is_committed(tmp_path: Path, solo: dict,
                                                                          postgres_url: str) -> None:
    proc = _straced(["inventory", "migrate", "--to", postgres_url], solo, "rename:error=EIO:when=1")
    stderr = proc.stderr.decode()
    assert proc.returncode == 1 and "Traceback" not in stderr, stderr
    assert stderr.startswith("Error: ") and len(stderr.strip().splitlines()) == 1, stderr
    assert "Input/output error" in stderr and "committed" in stderr and postgres_url in stderr, stderr
    assert "run certkit inventory migrate --to" in stderr and "again" in stderr, stderr
    assert _config(tmp_path) == {} and _refuses_writes(tmp_path / "ca" / "inventory.sqlite3")
    data = json.loads(run_certkit("inventory", "migrate", "--to", postgres_url, "--json", env=solo,
                                  check=True).stdout)
    assert data["resumed"] is True and _config(tmp_path) == {"inventory": postgres_url}


def test_a_moved_sqlite_inventory_is_never_read_as_the_inventory(tmp_path: Path, solo: dict, postgres_url: str,
                                                                  postgres_server) -> None:
    run_certkit("inventory", "migrate", "--to", postgres_url, env=solo, check=True)
    shutil.copytree(tmp_path / "ca", tmp_path / "copy")
    (tmp_path / "copy" / "certkit-ca.json").unlink()  # a copy of the CA without its json: looks like a solo CA
    run_certkit("revoke", tmp_path / "www", "--reason", "keyCompromise", env=solo, check=True)
    copy = _env(tmp_path, "copy")
    verified = run_certkit("verify", "--purpose", "server", tmp_path / "www", env=copy)
    assert verified.returncode != 0 and "NOT VALID" in verified.stdout, verified.stdout
    assert f"was moved to {postgres_url}" in verified.stdout + verified.stderr, verified.stdout
    assert_clean_error(run_certkit("list", env=copy), f"was moved to {postgres_url}")
    check = run_certkit("check", env=copy)
    assert check.returncode != 0 and f"was moved to {postgres_url}" in check.stdout, check.stdout
    # Named by $CERTKIT_INVENTORY_URL: refused alike.
    named = dict(solo, CERTKIT_INVENTORY_URL=str(tmp_path / "ca" / "inventory.sqlite3"))
    verified = run_certkit("verify", "--purpose", "server", tmp_path / "www", env=named)
    assert verified.returncode != 0 and "was moved to" in verified.stdout + verified.stderr, verified.stdout
    assert_clean_error(run_certkit("list", env=named), "was moved to")
    # Never moved a second time (a forked inventory).
    other = postgres_server.create_database()
    assert_clean_error(run_certkit("inventory", "migrate", "--to", other, env=copy), "was moved to")
    assert not (tmp_path / "copy" / "certkit-ca.json").exists()


@pytest.mark.parametrize("fault", ["fdatasync:error=EIO:when=1", "fdatasync:error=EIO:when=2",
                                   "fsync:error=EIO:when=1", "write:error=ENOSPC:when=1"])
def test_migrate_failing_on_io_says_what_state_it_left(tmp_path: Path, solo: dict, postgres_url: str,
                                                        fault: str) -> None:
    proc = _straced(["inventory", "migrate", "--to", postgres_url], solo, fault)
    stderr = proc.stderr.decode()
    assert "Traceback" not in stderr, stderr
    named = _config(tmp_path).get("inventory") == postgres_url
    if named:  # the move took effect: the old file refuses writes, whatever was said
        assert _refuses_writes(tmp_path / "ca" / "inventory.sqlite3"), (fault, stderr)
    if proc.returncode != 0:
        assert stderr.startswith("Error: ") and len(stderr.strip().splitlines()) == 1, stderr
        assert not named, (fault, stderr)  # never "failed" for a move that took effect
        # each of these fails after PostgreSQL committed the copy: said, with what to do
        assert "is committed" in stderr or "(committed," in stderr, stderr
        assert f"run certkit inventory migrate --to {postgres_url} again" in stderr, stderr
    if not named:
        run_certkit("inventory", "migrate", "--to", postgres_url, env=solo, check=True)
    assert _config(tmp_path) == {"inventory": postgres_url}
    assert _refuses_writes(tmp_path / "ca" / "inventory.sqlite3")


def test_a_moved_sqlite_inventory_given_to_the_library_is_refused_as_moved(tmp_path: Path, solo: dict,
                                                                           postgres_url: str) -> None:
    from cryptography import x509

    from certkit.ca import CA
    from certkit.errors import CABroken
    from certkit.inventory import Inventory

    run_certkit("inventory", "migrate", "--to", postgres_url, env=solo, check=True)
    cert = x509.load_pem_x509_certificate((tmp_path / "ca" / "ca.pem").read_bytes())
    with pytest.raises(CABroken, match=f"was moved to {postgres_url}") as raised:
        CA(cert, None, [], inventory=Inventory(tmp_path / "ca" / "inventory.sqlite3"))
    assert "not the inventory of" not in str(raised.value)
