"""The twelfth round's fleet findings (audit fleet12), each as a class:

1. a renewal keeps the owner of the certificate files it replaces (a service's own bundle, 0600), as it keeps
   their group and mode: the service reads its certificate after the renewal as before;
2. it keeps their POSIX ACL (setfacl) too, and the note on a kept key with an ACL does not read the ACL's mask
   as its group's access;
3. the progress bar fits the terminal: no line of it is wider than the terminal, whatever the total;
4. a tar archive tar would not read is refused before anything is signed: appended to a file that holds data
   (``>> fleet.tar``), or named as a compressed archive (``fleet.tar.gz``).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import struct
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import PASSPHRASE, certkit_env, run_certkit
from fleet_helpers import run_in_pty


def _env(tmp_path: Path) -> dict[str, str]:
    return certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path))


@pytest.fixture
def ca(tmp_path: Path) -> dict[str, str]:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Fleet12 CA", env=env, check=True)
    return env


def _as_nobody(*paths: Path) -> list[bool]:
    """Whether the user nobody can read each of ``paths`` (a real open by /usr/bin/head, as a service would)."""
    nobody = pwd.getpwnam("nobody")

    def drop() -> None:
        os.setgroups([])
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    return [subprocess.run(["head", "-c", "1", str(path)], capture_output=True, timeout=30,
                           preexec_fn=drop).returncode == 0 for path in paths]


@pytest.fixture
def open_dir():
    """A folder every user can reach (pytest's own are its owner's alone), removed after the test."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="certkit-fleet12-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving files to another user needs root")


@needs_root
@pytest.mark.parametrize("bulk", [False, True])
def test_a_renewal_keeps_the_owner_of_a_services_bundle(open_dir: Path, ca, bulk: bool) -> None:
    folder = open_dir / "own"
    run_certkit("issue-server", "own.example.com", "--days", "10", "--out", folder, env=ca, check=True)
    folder.chmod(0o755)
    nobody = pwd.getpwnam("nobody").pw_uid
    for name in ("cert.pem", "fullchain.pem", "privkey.pem"):
        os.chown(folder / name, nobody, -1)
        (folder / name).chmod(0o600)
    files = [folder / n for n in ("cert.pem", "fullchain.pem", "privkey.pem")]
    assert _as_nobody(*files) == [True, True, True]
    args = ["renew", "--expiring", "30d"] if bulk else ["renew", folder]
    proc = run_certkit(*args, env=ca)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [os.stat(f).st_uid for f in files] == [nobody] * 3
    assert _as_nobody(*files) == [True, True, True]


def _acl(user_uid: int) -> bytes:
    """u::rw-, u:UID:r--, g::---, m::r--, o::--- as the kernel stores it (what setfacl -m u:UID:r writes)."""
    entries = [(1, 6, 0xFFFFFFFF), (2, 4, user_uid), (4, 0, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)


@needs_root
def test_a_renewal_keeps_the_acl_and_says_it_truly(open_dir: Path, ca) -> None:
    folder = open_dir / "acl"
    run_certkit("issue-server", "acl.example.com", "--out", folder, env=ca, check=True)
    folder.chmod(0o755)
    files = [folder / n for n in ("cert.pem", "fullchain.pem", "privkey.pem")]
    try:
        for path in files:
            path.chmod(0o600)
            os.setxattr(path, "system.posix_acl_access", _acl(pwd.getpwnam("nobody").pw_uid))
    except OSError as exc:
        pytest.skip(f"this file system keeps no POSIX ACL: {exc}")
    assert _as_nobody(*files) == [True, True, True]
    proc = run_certkit("renew", folder, env=ca)
    assert proc.returncode == 0, proc.stderr
    assert _as_nobody(*files) == [True, True, True]
    assert all(os.getxattr(path, "system.posix_acl_access") for path in files)
    assert "the users of the group" not in proc.stdout and "access control list" in proc.stdout, proc.stdout


@pytest.mark.parametrize("cols", [60, 80])
def test_the_progress_bar_fits_the_terminal(tmp_path: Path, ca, cols: int) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names\n" + "".join(f"server,n{i}.big.example\n" for i in range(1200)))
    code, shown, _ = run_in_pty(["issue-batch", manifest, "--format", "jsonl", "--out", tmp_path / "big.jsonl"],
                                env=ca, cwd=tmp_path, cols=cols, timeout=120)
    assert code == 0, shown
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)
    drawn = [part for line in plain.split("\n") for part in line.split("\r") if "Issuing" in part]
    assert drawn and "1200/1200" in plain and "/s" in drawn[-1], plain[-500:]
    assert max(len(part.rstrip()) for part in drawn) <= cols, max(drawn, key=len)


def test_a_tar_appended_to_a_file_is_refused(tmp_path: Path, ca) -> None:
    archive = tmp_path / "app.tar"
    with archive.open("wb") as out:
        run = subprocess.run(["python3", "-m", "certkit", "issue-server", "ta.example.com", "--format", "tar"],
                             stdout=out, stderr=subprocess.PIPE, text=True, env=ca, timeout=60)
    assert run.returncode == 0, run.stderr
    before = archive.read_bytes()
    with archive.open("ab") as out:
        appended = subprocess.run(["python3", "-m", "certkit", "issue-server", "tb.example.com", "--format", "tar"],
                                  stdout=out, stderr=subprocess.PIPE, text=True, env=ca, timeout=60)
    assert appended.returncode == 1 and appended.stderr.startswith("Error: ") and ">>" in appended.stderr
    assert archive.read_bytes() == before
    with tarfile.open(archive) as read:
        assert {m.name.split("/")[0] for m in read} == {"ta.example.com"}
    listed = json.loads(run_certkit("list", "--json", env=ca, check=True).stdout)["certificates"]
    assert [r["names"] for r in listed] == [["DNS:ta.example.com"]]  # nothing signed for the refused one
    # jsonl, whose lines a reader takes one by one, may be appended to
    for name in ("j1.example.com", "j2.example.com"):
        with (tmp_path / "app.jsonl").open("ab") as out:
            done = subprocess.run(["python3", "-m", "certkit", "issue-server", name, "--format", "jsonl"],
                                  stdout=out, stderr=subprocess.PIPE, env=ca, timeout=60)
        assert done.returncode == 0
    assert len((tmp_path / "app.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("name", ["fleet.tar.gz", "fleet.tgz", "fleet.tar.xz", "fleet.tar.zst"])
def test_a_tar_named_as_compressed_is_refused(tmp_path: Path, ca, name: str) -> None:
    proc = run_certkit("issue-server", "z.example.com", "--format", "tar", "--out", tmp_path / name, env=ca)
    assert proc.returncode == 1 and "uncompressed tar" in proc.stderr and "| gzip" in proc.stderr, proc.stderr
    assert not (tmp_path / name).exists()
    assert json.loads(run_certkit("list", "--json", env=ca, check=True).stdout)["certificates"] == []


@pytest.mark.parametrize("name", ["fleet.tar.gz", "FLEET.TGZ"])
def test_a_tar_redirected_to_a_compressed_name_is_refused(tmp_path: Path, ca, name: str) -> None:
    with (tmp_path / name).open("wb") as out:
        run = subprocess.run(["python3", "-m", "certkit", "issue-server", "z.example.com", "--format", "tar"],
                             stdout=out, stderr=subprocess.PIPE, text=True, env=ca, timeout=60)
    assert run.returncode == 1 and "uncompressed tar" in run.stderr, run.stderr
    assert (tmp_path / name).stat().st_size == 0
    assert json.loads(run_certkit("list", "--json", env=ca, check=True).stdout)["certificates"] == []


@pytest.mark.parametrize("name", ["fleet.tar.Z", "fleet.taz", "fleet.tar.lz4"])
def test_every_compressed_name_is_refused(tmp_path: Path, ca, name: str) -> None:
    proc = run_certkit("issue-server", "z.example.com", "--format", "tar", "--out", tmp_path / name, env=ca)
    assert proc.returncode == 1 and "uncompressed tar" in proc.stderr, proc.stderr
    assert not (tmp_path / name).exists()
