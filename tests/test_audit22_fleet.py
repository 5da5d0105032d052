r"""The twenty-second round's fleet findings (audit helper "fleet"), each as a class:

1. A ``--format jsonl``, ``k8s`` or ``tar`` output was put in place with a hard link (``link(2)`` fails when
   something appeared meanwhile, so nothing is replaced); a file system without hard links (vfat and exFAT: a USB
   stick, where a tar of a fleet goes to an offline machine; many FUSE and network file systems) refuses link(2)
   with EPERM, so every such output there failed, after signing, with ``Error: Cannot put /media/usb/fleet.tar in
   place: Operation not permitted.`` (its certificates recorded abandoned), though folders are written there (the
   bundle code copies where it cannot link). The file is now renamed into place without replacing anything
   (``renameat2(RENAME_NOREPLACE)``, else the name taken with O_EXCL first); a file that appeared meanwhile is
   still never replaced.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import run_certkit

# --- 1: an output file on a file system without hard links -------------------------------------------------------
# link(2) into the folder "usb" fails as vfat's does (EPERM): Linux's vfat and exfat drivers have no link operation.
_NO_LINKS_HERE = '''
import errno, os
_link = os.link
def _vfat_link(src, dst, *args, **kwargs):
    if os.path.basename(os.path.dirname(os.path.abspath(os.fspath(dst)))) == "usb":
        raise PermissionError(errno.EPERM, "Operation not permitted", os.fspath(dst))
    return _link(src, dst, *args, **kwargs)
os.link = _vfat_link
'''


@pytest.fixture
def usb(tmp_path: Path, ca_env: dict, ca_dir: Path) -> tuple[Path, dict]:
    """A folder ``usb`` where link(2) fails with EPERM, as on a vfat USB stick, and the environment that makes
    certkit (run as ``python -m certkit``) meet it there."""
    hooks = tmp_path / "nolinks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(_NO_LINKS_HERE)
    folder = tmp_path / "usb"
    folder.mkdir()
    env = dict(ca_env, PYTHONPATH=f"{hooks}{os.pathsep}{ca_env.get('PYTHONPATH', '')}")
    probe = subprocess.run([sys.executable, "-c", f"import os; os.link({str(hooks / 'sitecustomize.py')!r}, "
                            f"{str(folder / 'x')!r})"], env=env, capture_output=True, text=True)
    assert "Operation not permitted" in probe.stderr, probe.stderr  # the stand-in for vfat is in force
    return folder, env


def _statuses(env: dict) -> dict[str, str]:
    listed = json.loads(run_certkit("list", "--json", "--status", "abandoned", env=env, check=True).stdout)
    abandoned = {c["serial"] for c in listed["certificates"]}
    valid = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)
    return {c["names"][0]: c["status"] for c in valid["certificates"]} | {s: "abandoned" for s in abandoned}


def test_an_output_file_is_written_where_the_file_system_has_no_hard_links(usb, tmp_path):
    folder, env = usb
    outs = {"jsonl": folder / "web.jsonl", "k8s": folder / "web.yaml", "tar": folder / "web.tar"}
    for fmt, out in outs.items():
        proc = run_certkit("issue-server", f"{fmt}.example", "--format", fmt, "--out", out, env=env, subprocess=True)
        assert proc.returncode == 0, proc.stderr
        assert "Error" not in proc.stderr
        assert out.stat().st_mode & 0o777 == 0o600
    manifest = tmp_path / "fleet.csv"
    manifest.write_text("kind,names\nserver,a.example\nclient,Alice Smith\n")
    proc = run_certkit("issue-batch", manifest, "--format", "tar", "--out", folder / "fleet.tar", env=env,
                       subprocess=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["fleet.tar", "web.jsonl", "web.tar", "web.yaml"]  # no leftover

    # read back as their readers read them
    record = json.loads(outs["jsonl"].read_text())
    shown = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=record["cert"], capture_output=True,
                           text=True, check=True).stdout
    assert "jsonl.example" in shown
    listing = subprocess.run(["tar", "-tvf", folder / "fleet.tar"], capture_output=True, text=True, check=True).stdout
    assert "-rw------- root/root" in next(line for line in listing.splitlines() if "a.example/privkey.pem" in line)
    with tarfile.open(folder / "fleet.tar") as archive:
        assert {"a.example/cert.pem", "Alice_Smith/privkey.pem"} <= set(archive.getnames())
    if shutil.which("kubectl"):
        named = subprocess.run(["kubectl", "annotate", "--local", "-f", outs["k8s"], "seen=yes", "-o", "name"],
                               capture_output=True, text=True)
        assert named.stdout.strip() == "secret/k8s.example", named.stderr
    # every certificate delivered is recorded valid in its file, none abandoned
    statuses = _statuses(env)
    assert [statuses[f"DNS:{n}"] for n in ("jsonl.example", "k8s.example", "tar.example", "a.example")] == ["valid"] * 4
    assert "abandoned" not in statuses.values()

    # and a file that is there already is still refused without --force, and replaced with it
    before = outs["tar"].read_bytes()
    proc = run_certkit("issue-server", "tar.example", "--format", "tar", "--out", outs["tar"], env=env,
                       subprocess=True)
    assert proc.returncode == 1 and "already exists" in proc.stderr, proc.stderr
    assert outs["tar"].read_bytes() == before
    proc = run_certkit("issue-server", "tar.example", "--format", "tar", "--out", outs["tar"], "--force", env=env,
                       subprocess=True)
    assert proc.returncode == 0, proc.stderr
    assert outs["tar"].read_bytes() != before


@pytest.mark.parametrize("noreplace", [True, False], ids=["renameat2", "o_excl"])
def test_without_hard_links_a_file_that_appeared_meanwhile_is_never_replaced(tmp_path, monkeypatch, noreplace):
    """What link(2) gave (nothing replaced when a file appeared at the name while the output was written) holds
    for both ways of putting a file in place without it."""
    from certkit.errors import OutputExists
    from certkit.formats import placing

    def no_link(src, dst, *args, **kwargs):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    if not noreplace:
        monkeypatch.setattr(placing, "_rename_noreplace", lambda tmp, path: False)
    target = tmp_path / "fleet.tar"
    tmp, fd, _made = placing.create_temporary(target)
    placing.write_all(fd, b"new archive")
    os.close(fd)
    target.write_bytes(b"someone else's file")  # appeared meanwhile
    with pytest.raises(OutputExists, match="appeared while it was being written"):
        placing.place(tmp, target, force=False, sync=False)
    assert target.read_bytes() == b"someone else's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet.tar"]  # the temporary file is gone too

    target.unlink()
    tmp, fd, _made = placing.create_temporary(target)
    placing.write_all(fd, b"new archive")
    os.close(fd)
    placing.place(tmp, target, force=False, sync=False)
    assert target.read_bytes() == b"new archive" and target.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fleet.tar"]
