r"""The twenty-second round's fleet findings (audit helper "fleet"), each as a class:

1. A ``--format jsonl``, ``k8s`` or ``tar`` output was put in place with a hard link (``link(2)`` fails when
   something appeared meanwhile, so nothing is replaced); a file system without hard links (vfat and exFAT: a USB
   stick, where a tar of a fleet goes to an offline machine; many FUSE and network file systems) refuses link(2)
   with EPERM, so every such output there failed, after signing, with ``Error: Cannot put /media/usb/fleet.tar in
   place: Operation not permitted.`` (its certificates recorded abandoned), though folders are written there (the
   bundle code copies where it cannot link). The file is now renamed into place without replacing anything
   (``renameat2(RENAME_NOREPLACE)``, else the name taken with O_EXCL first); a file that appeared meanwhile is
   still never replaced.
2. On a file system that keeps no file modes of its own (vfat, exFAT: every file has the mount's mode), the
   temporary file of such an output could not be made 0600: chmod failed (EPERM), and certkit said ``Error: the
   operation is not permitted.``, naming neither the file nor why, and left the temporary file
   (``.fleet.tar.PID-....certkit-tmp``) in the folder; under vfat's ``quiet`` option chmod "succeeds" and changes
   nothing, and the keys went into a file of the mount's mode (0755). The temporary file's mode is now checked
   after chmod; when it is not 0600 the file is removed and one Error line says why and what to do.
3. The same for bundle folders, and it was a lie there: where chmod "succeeds" without changing anything (an SMB
   mount without Unix extensions, vfat under ``quiet``), ``issue-server --out /mnt/share/web`` printed
   ``privkey.pem  (private key, mode 0600)`` and left privkey.pem 0755, readable by everyone; a renewal put the new
   key there the same way. Where chmod fails (vfat), it said ``Cannot write the bundle in ...: Operation not
   permitted.`` Every file certkit creates (:func:`certkit.atomic.write_new_file`) now checks that a private mode
   was kept, and a failed chmod of a file it just made is said as what it is; nothing is left, and a renewal
   leaves the old bundle as it was.
4. ``issue-batch --format tar`` refused two lines with one folder in the archive, but took folders that differ only
   in case or Unicode form (the default folders of clients ``Alice Smith`` and ``alice smith``, or outs ``café``
   composed and decomposed): ``tar -x`` on macOS or Windows, whose file names ignore both, unpacks them into one
   folder, the second bundle's cert.pem and privkey.pem over the first's, so one certificate and its key were lost
   and the folder named for the first held the second's. Such lines are now refused, saying why.
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

from conftest import assert_clean_error, run_certkit

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


# --- 2: an output file on a file system that keeps no modes ---------------------------------------------------------
# chmod of a file in "usb" fails (EPERM), as vfat's does when the mode asked for is not the mount's; or, as under
# vfat's "quiet" option, it "succeeds" and leaves the mount's mode, 0755.
_NO_MODES_HERE = '''
import errno, os
_fchmod = os.fchmod
def _vfat_fchmod(fd, mode):
    if os.path.basename(os.path.dirname(os.readlink(f"/proc/self/fd/{fd}"))) == "usb":
        if os.environ.get("VFAT_QUIET"):
            return _fchmod(fd, 0o755)
        raise PermissionError(errno.EPERM, "Operation not permitted")
    return _fchmod(fd, mode)
os.fchmod = _vfat_fchmod
'''


@pytest.mark.parametrize("quiet", [False, True], ids=["chmod-fails", "quiet"])
@pytest.mark.parametrize("fmt", ["jsonl", "k8s", "tar"])
def test_an_output_file_that_cannot_be_made_private_is_refused_and_leaves_nothing(tmp_path, ca_env, ca_dir, fmt,
                                                                                    quiet):
    hooks = tmp_path / "nomodes"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(_NO_MODES_HERE)
    folder = tmp_path / "usb"
    folder.mkdir()
    env = dict(ca_env, PYTHONPATH=f"{hooks}{os.pathsep}{ca_env.get('PYTHONPATH', '')}")
    if quiet:
        env["VFAT_QUIET"] = "1"
    out = folder / f"fleet.{ {'k8s': 'yaml'}.get(fmt, fmt) }"
    manifest = tmp_path / "fleet.csv"
    manifest.write_text("kind,names\nserver,a.example\nclient,Alice Smith\n")
    for args in (["issue-server", "web.example", "--out", out], ["issue-batch", manifest, "--out", out]):
        proc = run_certkit(*args, "--format", fmt, env=env, subprocess=True)
        assert_clean_error(proc, f"Cannot write {out}: the file system in {folder} keeps no file modes")
        assert ("its files get mode 0755" if quiet else "chmod fails there: Operation not permitted") in proc.stderr
        assert list(folder.iterdir()) == []  # no temporary file left behind, nor a file of keys others can read


# --- 3: a bundle folder on a file system that keeps no modes -------------------------------------------------------
def _no_modes_env(tmp_path: Path, ca_env: dict, quiet: bool) -> dict:
    hooks = tmp_path / "nomodes"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(_NO_MODES_HERE.replace('os.path.basename(os.path.dirname(os.readlink('
                                                                   'f"/proc/self/fd/{fd}"))) == "usb"',
                                                                   '"/usb/" in os.readlink(f"/proc/self/fd/{fd}")'))
    env = dict(ca_env, PYTHONPATH=f"{hooks}{os.pathsep}{ca_env.get('PYTHONPATH', '')}")
    return env | ({"VFAT_QUIET": "1"} if quiet else {})


@pytest.mark.parametrize("quiet", [False, True], ids=["chmod-fails", "quiet"])
def test_a_bundle_folder_whose_key_cannot_be_made_private_is_refused_and_renewal_keeps_the_old(tmp_path, ca_env,
                                                                                             ca_dir, quiet):
    folder = tmp_path / "usb"
    folder.mkdir()
    env = _no_modes_env(tmp_path, ca_env, quiet)
    proc = run_certkit("issue-server", "web.example", "--out", folder / "web", env=env, subprocess=True)
    said = "its files get mode 0755" if quiet else "chmod fails there"
    assert_clean_error(proc, f"Cannot write the bundle in {folder / 'web'}: the file system there keeps no file modes")
    assert said in proc.stderr and "mode 0600" not in proc.stdout
    assert list(folder.iterdir()) == []

    # a bundle written there before (the file system then kept modes) is not renewed into it with a public key
    run_certkit("issue-server", "api.example", "--out", folder / "api", "--days", "5", env=ca_env, check=True)
    before = {p.name: p.read_bytes() for p in (folder / "api").iterdir()}
    for args in (["renew", folder / "api"], ["renew", folder / "api", "--rekey"], ["renew", "--expiring", "30d"]):
        proc = run_certkit(*args, env=env, subprocess=True)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert "keeps no file modes of its own" in proc.stdout + proc.stderr, (args, proc.stdout, proc.stderr)
        assert {p.name: p.read_bytes() for p in (folder / "api").iterdir()} == before
        assert (folder / "api" / "privkey.pem").stat().st_mode & 0o777 == 0o600


# --- 4: archive folders that are one folder where the archive is unpacked ------------------------------------------
def test_an_archive_never_holds_two_folders_that_differ_only_in_case_or_unicode_form(tmp_path, ca_env, ca_dir):
    manifest = tmp_path / "fleet.csv"
    manifest.write_text("kind,names,out\nclient,Alice Smith,\nclient,alice smith,\nserver,x.example,caf\u00e9\n"
                        "server,y.example,cafe\u0301\nclient,Bob,\nclient,Bob,bob2\n", encoding="utf-8")
    proc = run_certkit("issue-batch", manifest, "--format", "tar", "--out", tmp_path / "fleet.tar", env=ca_env)
    assert_clean_error(proc, "fleet.csv has 2 bad lines; nothing was issued")
    assert "line 3: its name in the output, alice_smith, is line 2's Alice_Smith to tar -x on macOS and Windows" \
        in proc.stderr
    assert "line 5: its name in the output, cafe\u0301, is line 4's caf\u00e9 to tar -x" in proc.stderr
    assert "line 7" not in proc.stderr  # Bob and bob2 are two folders anywhere
    assert not (tmp_path / "fleet.tar").exists()

    # with folders of their own, the lines are one archive whose folders stay apart when unpacked anywhere
    manifest.write_text("kind,names,out\nclient,Alice Smith,\nclient,alice smith,alice-2\nclient,Bob,\n")
    run_certkit("issue-batch", manifest, "--format", "tar", "--out", tmp_path / "fleet.tar", env=ca_env, check=True)
    listing = subprocess.run(["tar", "-tf", tmp_path / "fleet.tar"], capture_output=True, text=True,
                             check=True).stdout.split()
    folders = {name.split("/")[0] for name in listing}
    assert folders == {"Alice_Smith", "alice-2", "Bob"}
    assert len({f.casefold() for f in folders}) == len(folders)
    # the folder format on this file system keeps them apart, and takes them as before
    manifest.write_text("kind,names\nclient,Alice Smith\nclient,alice smith\n")
    run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "folders", env=ca_env, check=True)
    assert sorted(p.name for p in (tmp_path / "folders").iterdir()) == ["Alice_Smith", "alice_smith"]
