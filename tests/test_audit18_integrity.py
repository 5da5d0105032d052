"""The eighteenth round's integrity findings (audit integrity, round eighteen).

1. A stop signal (Ctrl-C, SIGTERM, SIGHUP) that lands just after a command outside the issuing pipeline made its
   change said only "Interrupted." (exit 130/143): ``revoke`` whose revocation had just committed, ``crl --out``
   whose CRL had just been renamed into place, ``export-p12`` whose bundle.p12 had, ``init-ca`` whose CA directory
   had (between its rename and the steps that said so). A script or user reading "Interrupted." and the exit
   status takes the change for not made: a certificate revoked for keyCompromise with no CRL published, a CA
   "created again" into a refusal. Each now says what it left, read from the inventory or the files then:
   "Interrupted, but certificate X is revoked ...: publish a new CRL ...", "Interrupted, but CRL number N was
   written to ...", or "Interrupted: ... was not ...".
2. docs/renew.md said that after ``--rekey`` the new privkey.pem "belongs to whoever ran certkit, mode 0600, so
   give it back in --exec". Run by root, it keeps the old key's owner (a service's own key, postgres 0600) and
   its POSIX ACL; only a key read through its group (root:postgres 0640) loses its reader. The page says so now.
3. Under a file size limit (``ulimit -f``, systemd's ``LimitFSIZE=``), every command that reached the inventory
   said "The inventory ... cannot be used: disk I/O error." (SQLite's words for the kernel's EFBIG), which sends
   the user to the disk and its logs; a key or file past the limit said "File too large.". Each now names the
   limit and its value: "... the file would grow past this process's file size limit of 2,048 bytes (ulimit -f,
   or LimitFSIZE= of a systemd unit); raise it." (the inventory, a bundle's or CA's file, standard output).
4. A write failing part-way (a full disk at the fourth bundle of a chunk) made the bundles already written durable
   with ``sync()``, which reports nothing, before marking them valid: a disk that also failed to write them back
   (EIO) went unsaid, and the batch said "stopped after 3 bundles were written and recorded" as if they were
   safe. They are now flushed with ``syncfs()`` as a whole chunk is (round seventeen), and a write-back error is
   added to the error's words: the disk under the folder failed to store what was written, check it.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

from conftest import certkit_env, new_ca, run_certkit
from integrity_helpers import db_rows


def _strace() -> str:
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    return strace


def _signalled_at(args: list[str], env: dict, cwd: Path, path: Path | None, calls: str, when: int = 1,
                  signum: str = "TERM") -> subprocess.CompletedProcess:
    """``certkit ARGS`` sent ``signum`` as it enters the ``when``-th of ``calls`` (on ``path``, when given: strace
    -P, which matches a file by its descriptor): the system call itself goes on, and the signal is taken by
    certkit right after it, as a real one landing then. No bytecode is written, so that every rename is certkit's."""
    where = [f"-P{path}"] if path is not None else []
    return subprocess.run([_strace(), "-f", "-qq", "-o", "/dev/null", *where, "-e", f"trace={calls}",
                           "-e", f"inject={calls}:signal={signum}:when={when}", sys.executable, "-m", "certkit",
                           *args], cwd=cwd, env=env | {"PYTHONDONTWRITEBYTECODE": "1"}, capture_output=True,
                          text=True, timeout=300)


def _one_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "strace: " not in line]  # strace's own
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


# --- 1. what a stopped command left, said ------------------------------------------------------
@pytest.mark.parametrize("signum,code", [("TERM", 128 + signal.SIGTERM), ("INT", 128 + signal.SIGINT)])
def test_a_revoke_stopped_as_it_commits_says_whether_it_revoked(tmp_path: Path, signum: str, code: int) -> None:
    env = new_ca(tmp_path, "Stop CA")
    said_revoked = 0
    for when in (1, 2):  # the syncs of the inventory's log as the revocation commits (the third: at exit)
        folder = f"a{when}"
        run_certkit("issue-server", f"{folder}.example", "--out", folder, cwd=tmp_path, env=env, check=True)
        proc = _signalled_at(["revoke", folder, "--reason", "keyCompromise"], env, tmp_path,
                             tmp_path / "ca" / "inventory.sqlite3-wal", "fdatasync,fsync", when, signum)
        if proc.returncode == 0:  # the signal came after the command was done with the inventory: nothing to say
            continue
        assert proc.returncode == code, (when, proc.returncode, proc.stderr)
        line = _one_line(proc)
        serial = x509.load_pem_x509_certificate((tmp_path / folder / "cert.pem").read_bytes()).serial_number
        row = next(r for r in db_rows(tmp_path / "ca") if int(r["serial"], 16) == serial)
        if row["status"] == "revoked":  # committed: never only "Interrupted."
            said_revoked += 1
            assert line.startswith("Interrupted, but certificate ") and "is revoked (keyCompromise" in line, line
            assert "publish a new CRL so clients refuse it: certkit crl --out crl.pem" in line, line
        else:
            assert line == f"Interrupted: certificate {row['serial']} was not revoked.", line
    assert said_revoked, "no stop landed once the revocation was committed"


def test_a_revoke_stopped_before_it_found_the_certificate_says_nothing_was_revoked(tmp_path: Path) -> None:
    env = new_ca(tmp_path, "Stop CA")
    run_certkit("issue-server", "a.example", "--out", "a", cwd=tmp_path, env=env, check=True)
    # The lock of the folder being revoked (a renewal of it would hold it): the stop lands as it is taken.
    proc = _signalled_at(["revoke", "a"], env, tmp_path, tmp_path / "ca" / ".certkit-bundles.lock", "fcntl")
    assert proc.returncode == 143, proc.stderr
    assert _one_line(proc) == "Interrupted: nothing was revoked."
    assert [r["status"] for r in db_rows(tmp_path / "ca")] == ["valid"]


def test_a_crl_stopped_as_it_is_put_in_place_says_it_was_written(tmp_path: Path) -> None:
    env = new_ca(tmp_path, "Stop CA")
    run_certkit("issue-server", "a.example", "--out", "a", cwd=tmp_path, env=env, check=True)
    run_certkit("revoke", "a", cwd=tmp_path, env=env, check=True)
    crl = tmp_path / "crl.pem"
    proc = _signalled_at(["crl", "--out", "crl.pem"], env, tmp_path, None, "rename,renameat,renameat2")
    assert proc.returncode == 143, proc.stderr
    assert _one_line(proc) == "Interrupted, but CRL number 1 was written to crl.pem (it is in place)."
    listed = x509.load_pem_x509_crl(crl.read_bytes())
    assert listed.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1 and len(listed) == 1
    # Stopped as it takes its turn at the folder, before writing: the CRL there is said to be unchanged.
    proc = _signalled_at(["crl", "--out", "crl.pem"], env, tmp_path, tmp_path, "flock")
    assert proc.returncode == 143, proc.stderr
    assert _one_line(proc) == "Interrupted: CRL number 2 was not written to crl.pem."
    assert crl.read_bytes() == listed.public_bytes(Encoding.PEM)


def test_an_export_p12_stopped_as_it_is_put_in_place_says_it_was_written(tmp_path: Path) -> None:
    env = new_ca(tmp_path, "Stop CA") | {"CERTKIT_P12_PASSWORD": "p12 password"}
    run_certkit("issue-server", "a.example", "--out", "a", cwd=tmp_path, env=env, check=True)
    p12 = tmp_path / "a" / "bundle.p12"
    # bundle.p12 is put in place by a hard link of its temporary file (round 35: no longer a folder swapped whole)
    proc = _signalled_at(["export-p12", "a"], env, tmp_path, None, "link,linkat,rename,renameat,renameat2")
    assert proc.returncode == 143, proc.stderr
    assert _one_line(proc) == "Interrupted, but a/bundle.p12 was written (it is in place)."
    assert pkcs12.load_pkcs12(p12.read_bytes(), b"p12 password").key is not None


def test_an_init_ca_stopped_once_its_directory_is_in_place_says_the_ca_exists(tmp_path: Path) -> None:
    env = new_ca(tmp_path, "Stop CA") | {"CERTKIT_CA_DIR": str(tmp_path / "fresh")}
    proc = _signalled_at(["init-ca", "--name", "Fresh CA"], env, tmp_path, None, "rename,renameat,renameat2")
    assert proc.returncode == 143, proc.stderr
    line = _one_line(proc)
    assert line.startswith(f"Interrupted, but the CA directory {tmp_path / 'fresh'} was created, whole (root CA "
                           "'Fresh CA', serial "), line
    assert "do not create it again" in line
    assert run_certkit("check", cwd=tmp_path, env=env).returncode == 0
    # An intermediate: its parent's inventory records it once the directory is in place, whatever the stop.
    env |= {"CERTKIT_PARENT_CA_PASSPHRASE": env["CERTKIT_CA_PASSPHRASE"]}
    proc = _signalled_at(["init-ca", "--ca-dir", "ica", "--parent-ca-dir", "ca", "--name", "Issuing"], env,
                         tmp_path, None, "rename,renameat,renameat2", signum="HUP")
    assert proc.returncode == 129, proc.stderr
    assert "Interrupted, but the CA directory " in _one_line(proc) and "intermediate CA 'Issuing'" in proc.stderr
    rows = run_certkit("list", "--json", "--kind", "ca", cwd=tmp_path, env=env | {
        "CERTKIT_CA_DIR": str(tmp_path / "ca")}, check=True)
    assert '"status": "valid"' in rows.stdout, rows.stdout


# --- 2. docs/renew.md: whose the new key of --rekey is ----------------------------------------------
def _acl(user_uid: int) -> bytes:
    """u::rw-, u:UID:r--, g::---, m::r--, o::--- as the kernel stores it (what setfacl -m u:UID:r writes)."""
    entries = [(1, 6, 0xFFFFFFFF), (2, 4, user_uid), (4, 0, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)


def _nobody_reads(path: Path) -> bool:
    """Whether the user nobody can read ``path`` (a real open by head, as a service would)."""
    nobody = pwd.getpwnam("nobody")

    def drop() -> None:
        os.setgroups([])
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    return subprocess.run(["head", "-c", "1", str(path)], capture_output=True, timeout=30,
                          preexec_fn=drop).returncode == 0


@pytest.fixture
def open_dir():
    """A folder every user can reach (pytest's own are its owner's alone), removed after the test."""
    folder = Path(tempfile.mkdtemp(prefix="certkit-audit18-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a key to another user needs root")
@pytest.mark.parametrize("readers", ["owner", "acl", "group"])
def test_the_new_key_of_a_rekey_is_read_by_whom_renew_md_says(open_dir: Path, readers: str) -> None:
    """docs/renew.md said the new privkey.pem of --rekey "belongs to whoever ran certkit, mode 0600": run by
    root, it keeps the old key's owner (a service's own key) and ACL, and drops only its group's read."""
    tmp_path = open_dir
    env = new_ca(tmp_path, "Keys CA")
    run_certkit("issue-server", "db.example", "--out", "db", cwd=tmp_path, env=env, check=True)
    key = tmp_path / "db" / "privkey.pem"
    nobody = pwd.getpwnam("nobody")
    if readers == "owner":  # PostgreSQL's own key: postgres, 0600
        os.chown(key, nobody.pw_uid, -1)
    elif readers == "acl":
        try:
            os.setxattr(key, "system.posix_acl_access", _acl(nobody.pw_uid))
        except OSError as exc:
            pytest.skip(f"this file system keeps no POSIX ACL: {exc}")
    else:  # root:postgres 0640
        os.chown(key, 0, nobody.pw_gid)
        key.chmod(0o640)
    assert _nobody_reads(key)
    old = key.read_bytes()
    run_certkit("renew", "db", "--rekey", cwd=tmp_path, env=env, check=True)
    assert key.read_bytes() != old
    info = key.stat()
    assert info.st_uid == (nobody.pw_uid if readers == "owner" else 0)
    assert info.st_mode & 0o7 == 0 and _nobody_reads(key) == (readers != "group")
    text = (Path(__file__).resolve().parent.parent / "docs" / "renew.md").read_text()
    said = " ".join(text.split())
    assert "it keeps the old key's owner when root renews a key another user owns" in said
    assert "and its POSIX ACL (`setfacl -m u:postgres:r`), but not its group's read" in said
    assert "belongs to whoever ran certkit" not in said


# --- 3. a file size limit, said as such -------------------------------------------------------------
LIMIT_WORDS = "the file would grow past this process's file size limit of {:,} bytes (ulimit -f, or LimitFSIZE= of a " \
              "systemd unit); raise it."


def _limited(limit: int, args: list[str], env: dict, cwd: Path, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    """``certkit ARGS`` with its file size limit (RLIMIT_FSIZE) at ``limit`` bytes, as ``ulimit -f`` sets it."""
    import resource

    return subprocess.run([sys.executable, "-m", "certkit", *args], cwd=cwd, env=env | {"PYTHONDONTWRITEBYTECODE": "1"},
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)),
                          stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=300)


def test_the_inventory_past_the_file_size_limit_is_said_so_not_an_io_error(tmp_path: Path) -> None:
    env = new_ca(tmp_path, "Limit CA")
    run_certkit("issue-server", "a.example", "--out", "a", cwd=tmp_path, env=env, check=True)
    inventory = tmp_path / "ca" / "inventory.sqlite3"
    for args in (["issue-server", "b.example", "--out", "b"], ["revoke", "a"], ["renew", "a"], ["list"]):
        proc = _limited(2048, args, env, tmp_path)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert _one_line(proc) == f"Error: The inventory {inventory} cannot be used: {LIMIT_WORDS.format(2048)}", args
    assert not (tmp_path / "b").exists()
    rows = db_rows(tmp_path / "ca")
    assert [r["status"] for r in rows] == ["valid"] and run_certkit("check", env=env).returncode == 0


def test_a_file_past_the_file_size_limit_is_said_so_not_file_too_large(tmp_path: Path) -> None:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"))
    # A CA's key: an RSA-4096 key (3 kB) past a 1 kB limit; nothing is left of the CA directory.
    proc = _limited(1024, ["init-ca", "--no-passphrase", "--key-type", "rsa-4096"], env, tmp_path)
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("Warning:")]
    assert lines == [f"Error: Cannot create the CA directory {tmp_path / 'ca'}: {LIMIT_WORDS.format(1024)}"], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing of the CA directory is left
    run_certkit("init-ca", "--no-passphrase", env=env, check=True)
    run_certkit("issue-server", "a.example", "--out", "a", cwd=tmp_path, env=env, check=True)
    # issue-batch's spool of its checked manifest, in the temporary folder: the limit, not "free space there".
    (tmp_path / "tmp").mkdir()
    manifest = tmp_path / "fleet.csv"
    manifest.write_text("kind,names\n" + "".join(f"server,host-number-{i}.example.internal\n" for i in range(3000)))
    proc = _limited(65536, ["issue-batch", manifest, "--out-dir", "out"], env | {"TMPDIR": str(tmp_path / "tmp")},
                    tmp_path)
    assert _one_line(proc) == (f"Error: Cannot write the checked manifest in the temporary folder {tmp_path / 'tmp'}: "
                               f"{LIMIT_WORDS.format(65536)[:-1]}; nothing was issued."), proc.stderr
    assert not (tmp_path / "out").exists()
    # Standard output into a file past the limit: a report cut short, said so.
    with open(tmp_path / "report.txt", "wb") as report:
        proc = _limited(512, ["inspect", "a/cert.pem"], env, tmp_path, stdout=report)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(f"Error: Cannot write to standard output: {LIMIT_WORDS.format(512)}"), proc.stderr


# --- 4. the flush after a part-way failure ----------------------------------------------------------
def test_a_disk_failing_to_store_the_bundles_written_before_a_part_way_failure_is_said(tmp_path: Path) -> None:
    from integrity_helpers import tmpfs

    env = new_ca(tmp_path, "Flush CA") | {"CERTKIT_TEST_CHUNK_SIZE": "10"}
    manifest = tmp_path / "fleet.csv"
    manifest.write_text("kind,names\n" + "".join(f"server,h{i}.example\n" for i in range(1, 41)))
    with tmpfs(tmp_path / "out", "size=60k") as out:  # room for a few bundles of the first chunk, not ten
        # Every flush fails as a disk failing its write-back does: syncfs() says EIO; sync() (which returns nothing
        # to its caller) is failed too, so a command that syncs with it hears of nothing.
        proc = subprocess.run([_strace(), "-f", "-qq", "-o", "/dev/null", "-e", "trace=syncfs,sync", "-e",
                               "inject=syncfs:error=EIO", "-e", "inject=sync:error=EIO", sys.executable, "-m",
                               "certkit", "issue-batch", manifest, "--out-dir", out], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        written = sorted(p.name for p in out.iterdir() if (p / "cert.pem").exists())
        assert proc.returncode == 1 and 0 < len(written) < 10, (proc.stderr, written)
        line = _one_line(proc)
        assert line.startswith("Error: Cannot write the bundle in "), line
        assert "the disk is full; nothing was written." in line, line
        assert re.search(rf"The disk under {re.escape(str(out))}(/h\d+\.example)? failed to store what was just "
                         r"written to it \(input/output error, as the file system said when it was flushed\): the "
                         "bundles are in place and recorded, but may be damaged or lost", line), line
        assert line.endswith(f"The batch stopped after {len(written):,} bundles were written and recorded. Rerun the "
                             "same command with --resume to finish it."), line
        valid = [r for r in db_rows(tmp_path / "ca") if r["status"] == "valid" and r["kind"] != "ca"]
        assert sorted(Path(r["folder"]).name for r in valid) == written
