"""The fifteenth round's integrity findings (audit integrity, round fifteen).

1. ``init-ca`` that fails, or is stopped (Ctrl-C, SIGTERM, SIGHUP), once the new CA directory is in place (its
   parent marking it issued, the directory read back) said only "Error: Cannot read the CA certificate
   root/ca.pem: Input/output error." or "Interrupted.", exit 1 or 130/143: the user runs init-ca again and is
   told a CA exists there. A stopped intermediate's row stayed pending in its parent's inventory until
   another command came. Now the words say that the CA was created, whole, and where; the parent's row is
   settled valid before the command exits.
2. A bundle folder replaced whole (renew in place, export-p12, issue-* --force) whose new bundle was swapped into
   place, and then an I/O error putting back what was created in the old folder meanwhile, said "Error: Cannot
   write the bundle in alice: ...", exit 1: the new bundle was in place and recorded valid, and the user was
   sent to renew (issue a certificate) again. Now it says the bundle was replaced and what failed after that.
3. ``crl --out FILE`` whose CRL was renamed into place and then met an I/O error (closing the folder it syncs and
   locks) said "Error: Input/output error." and gave its CRL number back: the next CRL, listing other
   revocations, was published under the same number. A number is now given back only when its CRL is certainly
   not in place, and the words say that it is.
4. Syncing a folder after a rename into it let an error closing that folder escape (``atomic.fsync_dir``): an
   ``issue-server --format jsonl --out FILE`` (or tar, or issue-batch) whose file of keys was in place said
   "Error: Input/output error." and marked its certificates abandoned (``list`` did not show them); a new
   bundle folder in place was said not written. Syncing a folder never fails a write that is done; nor does
   closing a folder whose bundle the journal replaced (renew of a folder holding more than its bundle said
   "Error: Cannot write the bundle in alice: Input/output error." for a renewal in place and valid).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit
from integrity_helpers import db_rows, interrupt, listed, read_bundle, start_paused


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                       CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path), **extra)


def _straced(args: list, env: dict, cwd: Path, *options: str) -> subprocess.CompletedProcess:
    """``certkit ARGS`` under strace with ``options`` (``-P PATH``, ``-e inject=...``)."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    proc = subprocess.run([strace, "-f", "-qq", "-o", "/dev/null", *options, sys.executable, "-m", "certkit",
                           *map(str, args)], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    if "ptrace" in proc.stderr and "Operation not permitted" in proc.stderr:
        pytest.skip("ptrace is not allowed here")
    return proc


def _ca_rows(ca_dir: Path) -> list[tuple[str, str]]:
    return [(r["subject"], r["status"]) for r in db_rows(ca_dir) if r["kind"] == "ca"]


# --- 1. init-ca: what fails once the CA directory is in place says the CA exists ----------------------
@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_an_intermediate_stopped_once_in_place_says_it_was_created(tmp_path: Path, signum: int, code: int) -> None:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Root", env=env, check=True)
    proc = start_paused(["init-ca", "--ca-dir", "issuing", "--parent-ca-dir", "ca", "--name", "Issuing"], env,
                        tmp_path, "placed", tmp_path / "paused")
    outcome = interrupt(proc, signum, tmp_path / "paused")
    assert outcome.returncode == code, outcome
    assert "Traceback" not in outcome.stderr
    assert "the CA directory issuing was created, whole (intermediate CA 'Issuing'" in outcome.stderr, outcome.stderr
    assert "do not create it again" in outcome.stderr
    # settled before it exited, not left pending for the next command to find
    assert _ca_rows(tmp_path / "ca") == [("CN=Issuing", "valid")]
    assert run_certkit("check", "--ca-dir", tmp_path / "issuing", env=env).returncode == 0
    issued = run_certkit("issue-server", "web.example.com", "--ca-dir", tmp_path / "issuing", env=env, cwd=tmp_path)
    assert issued.returncode == 0, issued.stderr


@pytest.mark.parametrize("parent", [False, True])
@pytest.mark.parametrize("as_json", [False, True])
def test_an_io_error_reading_the_new_ca_back_says_it_was_created(tmp_path: Path, parent: bool,
                                                                 as_json: bool) -> None:
    """The directory is in place (and, for an intermediate, recorded valid by its parent); reading its ca.pem
    back fails (an I/O error of the disk): init-ca exits 1 and says the CA is there."""
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Root", env=env, check=True)
    args = ["init-ca", "--ca-dir", "new", "--name", "New", *(["--parent-ca-dir", "ca"] if parent else []),
            *(["--json"] if as_json else [])]
    proc = _straced(args, env, tmp_path, "-P", "new/ca.pem", "-e", "trace=openat", "-e",
                    "inject=openat:error=EIO:when=1")
    kind = "intermediate" if parent else "root"
    assert_clean_error(proc, f"Cannot read the CA certificate new/ca.pem: Input/output error. But the CA directory "
                             f"new was created, whole ({kind} CA 'New'")
    assert run_certkit("check", "--ca-dir", tmp_path / "new", env=env).returncode == 0
    if parent:
        assert _ca_rows(tmp_path / "ca") == [("CN=New", "valid")]
    again = run_certkit(*args[:-1] if as_json else args, env=env, cwd=tmp_path)
    assert_clean_error(again, "A CA already exists in new")


# --- 2. a bundle swapped into place is never said to be not written ----------------------------------
@pytest.mark.parametrize("command", ["renew", "issue-client"])  # (export-p12 writes bundle.p12 alone: no swap)
def test_a_failure_after_the_swap_says_the_bundle_was_replaced(tmp_path: Path, command: str) -> None:
    """The new bundle is swapped into place; then putting back what was created in the old folder meanwhile
    fails (here the set-aside old folder was replaced by a file: Not a directory). The command said "Cannot
    write the bundle in alice", exit 1, for a bundle that was written and recorded valid."""
    env = _env(tmp_path, CERTKIT_P12_PASSWORD="p12 password here")
    run_certkit("init-ca", "--name", "Swap CA", env=env, check=True)
    run_certkit("issue-client", "alice", env=env, cwd=tmp_path, check=True)
    args = {"renew": ["renew", "./alice"], "export-p12": ["export-p12", "./alice"],
            "issue-client": ["issue-client", "alice", "--force"]}[command]
    proc = start_paused(args, env, tmp_path, "swapped", tmp_path / "paused")
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith(".alice.") and p.is_dir()]
    aside.rename(tmp_path / "old-bundle")
    aside.write_text("in the way\n")
    outcome = interrupt(proc, 0, tmp_path / "paused")  # (signal 0: nothing sent, the pause released)
    assert outcome.returncode == 1, outcome
    assert "Traceback" not in outcome.stderr
    assert outcome.stderr.startswith("Error: The bundle in alice was replaced (the new files are in place), but "
                                     "tidying up after it failed: Not a directory."), outcome.stderr
    assert "Cannot write" not in outcome.stderr
    bundle = read_bundle(tmp_path / "alice")
    assert bundle.complete
    rows = listed(env)
    assert [r["status"] for r in rows if r["serial"] == bundle.serial] == ["valid"]
    if command == "export-p12":
        assert (tmp_path / "alice" / "bundle.p12").is_file()
    else:
        assert len(rows) == 2 and bundle.serial != read_bundle(tmp_path / "old-bundle").serial


# --- 3. a CRL in place keeps its number ----------------------------------------------------------------
def _crl_number(path: Path) -> int:
    from cryptography import x509

    crl = x509.load_pem_x509_crl(path.read_bytes())
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_a_failure_after_the_crl_is_in_place_keeps_its_number(tmp_path: Path) -> None:
    """An I/O error once the CRL was renamed into place (closing its folder, which it syncs and locks) said
    "Error: Input/output error." and gave its number back, so the next CRL, with other contents, was published
    under the same number (RFC 5280 5.2.3: numbers increase)."""
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "CRL CA", env=env, check=True)
    run_certkit("issue-client", "alice", env=env, cwd=tmp_path, check=True)
    run_certkit("revoke", "./alice", env=env, cwd=tmp_path, check=True)
    (tmp_path / "pub").mkdir()
    run_certkit("crl", "--out", "pub/crl.pem", env=env, cwd=tmp_path, check=True)
    assert _crl_number(tmp_path / "pub" / "crl.pem") == 1
    proc = _straced(["crl", "--out", "pub/crl.pem"], env, tmp_path, "-P", str(tmp_path / "pub"), "-e",
                    "trace=openat,close", "-e", "inject=close:error=EIO:when=2+")
    assert_clean_error(proc, "CRL number 2 was written to pub/crl.pem (it is in place), but what followed failed: "
                             "Input/output error.")
    assert _crl_number(tmp_path / "pub" / "crl.pem") == 2
    run_certkit("crl", "--out", "other.pem", env=env, cwd=tmp_path, check=True)
    assert _crl_number(tmp_path / "other.pem") == 3  # never a second CRL numbered 2


# --- 4. syncing a folder never undoes a write that is in place -----------------------------------------
@pytest.mark.parametrize("args,output", [
    (["issue-server", "web.example.com", "--format", "jsonl", "--out", "pub/out.jsonl"], "pub/out.jsonl"),
    (["issue-server", "web.example.com", "--format", "tar", "--out", "pub/out.tar"], "pub/out.tar"),
    (["issue-batch", "m.csv", "--format", "jsonl", "--out", "pub/out.jsonl"], "pub/out.jsonl"),
    (["issue-server", "web.example.com", "--out", "pub/web"], "pub/web/privkey.pem"),
])
def test_an_error_closing_the_synced_folder_leaves_the_output_valid(tmp_path: Path, args: list,
                                                                   output: str) -> None:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Sync CA", env=env, check=True)
    (tmp_path / "m.csv").write_text("kind,names\nserver,web.example.com\n")
    (tmp_path / "pub").mkdir()
    proc = _straced(args, env, tmp_path, "-P", str(tmp_path / "pub"), "-e", "trace=openat,close", "-e",
                    "inject=close:error=EIO:when=1+")
    assert proc.returncode == 0 and "Error" not in proc.stderr, proc.stderr
    assert (tmp_path / output).is_file()
    rows = listed(env)
    assert [(r["subject"], r["status"]) for r in rows] == [("CN=web.example.com", "valid")], rows


def test_an_error_closing_a_journaled_folder_leaves_the_renewal_in_place(tmp_path: Path) -> None:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Journal CA", env=env, check=True)
    run_certkit("issue-client", "alice", env=env, cwd=tmp_path, check=True)
    (tmp_path / "alice" / "notes.txt").write_text("the folder holds more than its bundle: the journal replaces it\n")
    old = read_bundle(tmp_path / "alice").serial
    proc = _straced(["renew", "./alice"], env, tmp_path, "-P", str(tmp_path / "alice"), "-e", "trace=openat,close",
                    "-e", "inject=close:error=EIO:when=1+")
    assert proc.returncode == 0 and "Error" not in proc.stderr, proc.stderr
    bundle = read_bundle(tmp_path / "alice")
    assert bundle.complete and bundle.serial != old
    assert (tmp_path / "alice" / "notes.txt").is_file()
    assert {r["serial"]: r["status"] for r in listed(env)} == {old: "valid", bundle.serial: "valid"}
