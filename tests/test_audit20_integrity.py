"""The twentieth round's integrity findings (audit integrity, round twenty).

1. certkit reaches what it writes by name: a bundle is staged in a temporary folder beside its folder
   (``.web.PID-RANDOM.certkit-tmp``), exchanged with it, and what the old folder gained meanwhile is moved back
   by name; a CRL and a new CA directory are staged beside their place too. The folder itself was refused when
   another user owned it ("who could replace the files"), but not the folder *holding* it, whose owner can move
   any name in it. Run as root on a bundle in a folder of another user's (``sudo certkit renew`` of
   ``/home/alice/web``), that user could replace the temporary name by a link to any folder between the exchange
   and the tidying up: renew then moved every file of that folder (a root-only one) into the bundle folder, where
   others could read it. Now a bundle folder, CRL file or new CA directory below a folder that another user owns,
   or that every user may write to without the sticky bit, is refused before anything is signed.
2. Where a folder cannot be exchanged whole (``renameat2(RENAME_EXCHANGE)`` refused: some network and FUSE file
   systems), a renewal swaps it by three renames: old aside, new in, old to the temporary name to be removed. A
   failure of that third rename (a full disk, an I/O error), with the new bundle in place, was reported as
   "Error: Cannot write the bundle in web: the disk is full." (exit 1: ``renew --exec`` ran no reload) while the
   folder held the renewed bundle, recorded valid. Now the old bundle is removed from where it was set aside, and
   the renewal is reported as done.
3. A journal whose writer is gone but which cannot be settled (its folder append-only, ``chattr +a``: nothing in it
   can be renamed or removed) made every later write there say "Another certkit command is replacing the bundle
   in web ..., or was stopped less than 5 minutes ago ... Run again once it is done" for good: no command was
   running, and no wait helps. Now it says that certkit cannot finish or undo that stopped command's journal, and
   what to look at.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_clean_error, new_ca, run_certkit
from integrity_helpers import db_rows, read_bundle


def _other_user() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("needs root (to give a folder to another user)")
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' here")


def _as(user: pwd.struct_passwd, *command: str, cwd: Path) -> None:
    """Run a stdlib-free command (mv, ln) as ``user``."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv is not installed")
    subprocess.run([setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", *command],
                   cwd=cwd, check=True, timeout=30)


def test_renew_as_root_in_another_users_folder_is_refused_before_its_temporary_name_can_be_swapped(tmp_path):
    nobody = _other_user()
    env = new_ca(tmp_path, "Owner CA")
    home = tmp_path / "alice"  # another user's folder, holding a bundle of root's
    home.mkdir()
    run_certkit("issue-server", "web.example", "--out", home / "web", env=env, check=True)
    victim = tmp_path / "root-only"  # a folder only root may enter, and a file in it
    victim.mkdir(mode=0o700)
    (victim / "secret.txt").write_text("root's\n")
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    os.chmod(tmp_path, 0o755)  # (pytest's own folder is 0700: the other user must reach the folder it owns)
    pause = tmp_path / "paused"
    renew = subprocess.Popen([sys.executable, "-m", "certkit", "renew", str(home / "web")], cwd=tmp_path,
                             env=env | {"CERTKIT_TEST_PAUSE_AT": "swapped", "CERTKIT_TEST_PAUSE_FILE": str(pause)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not pause.exists() and renew.poll() is None:  # paused after its exchange, or refused and gone
            try:
                renew.wait(0.05)
            except subprocess.TimeoutExpired:
                pass
        if pause.exists():  # the other user moves the old bundle away and links its name to root's folder
            [temporary] = [p.name for p in home.iterdir() if p.name.endswith(".certkit-tmp")]
            _as(nobody, "mv", temporary, "moved", cwd=home)
            _as(nobody, "ln", "-s", str(victim), temporary, cwd=home)
            pause.unlink()
        out, err = renew.communicate(timeout=120)
    finally:
        if renew.poll() is None:
            renew.kill()
            renew.wait()
    assert (victim / "secret.txt").read_text() == "root's\n", sorted(os.listdir(home / "web"))
    assert not (home / "web" / "secret.txt").exists()
    assert renew.returncode == 1, (out, err)
    assert err.splitlines() == [
        f"Error: The folder {home}, above the output folder {home / 'web'}, belongs to another user (uid "
        f"{nobody.pw_uid}), who could move what certkit writes there and put links in its place, making it write "
        "or move files elsewhere; choose a folder of your own (or run certkit as that user)."], err
    rows = run_certkit("list", "--json", env=env, check=True).stdout
    assert rows.count('"serial"') == 1  # nothing signed for the refused renewal


def test_every_writer_refuses_a_place_below_a_folder_others_control_and_accepts_a_sticky_one(tmp_path):
    nobody = _other_user()
    env = new_ca(tmp_path, "Places CA") | {"CERTKIT_P12_PASSWORD": "p12-password"}
    run_certkit("issue-client", "alice", "--out", tmp_path / "shared" / "alice", env=env, check=True)
    shared = tmp_path / "shared"
    shared.chmod(0o777)  # every user may rename what is in it
    for args, what, place in [
        (("issue-server", "a.example", "--out", shared / "a"), "output folder", shared / "a"),
        (("renew", shared / "alice"), "output folder", shared / "alice"),
        (("export-p12", shared / "alice"), "output folder", shared / "alice"),
        (("crl", "--out", shared / "crl.pem"), "CRL file", shared / "crl.pem"),
        (("init-ca", "--ca-dir", shared / "ca2", "--name", "Second"), "CA directory", shared / "ca2"),
    ]:
        proc = run_certkit(*args, env=env)
        assert_clean_error(proc, f"The folder {shared}, above the {what} {place}, is writable by every user (mode "
                                 "0777, no sticky bit); any of them could move what certkit writes there")
    assert sorted(p.name for p in shared.iterdir()) == ["alice"]
    assert sorted(p.name for p in (shared / "alice").iterdir()) == ["ca.pem", "cert.pem", "fullchain.pem",
                                                                   "privkey.pem"]
    shared.chmod(0o1777)  # /tmp's mode: no one may rename what another user made there
    run_certkit("issue-server", "a.example", "--out", shared / "a", env=env, check=True)
    run_certkit("crl", "--out", shared / "crl.pem", env=env, check=True)
    owned = tmp_path / "owned"
    owned.mkdir()
    os.chown(owned, nobody.pw_uid, nobody.pw_gid)
    proc = run_certkit("crl", "--out", owned / "crl.pem", env=env)
    assert_clean_error(proc, f"The folder {owned}, above the CRL file {owned / 'crl.pem'}, belongs to another user")
    link = tmp_path / "link"  # a link to it, from a folder of root's: where it leads is judged too
    link.symlink_to(owned)
    proc = run_certkit("issue-server", "b.example", "--out", link / "b", env=env)
    assert_clean_error(proc, f"The folder {link}, above the output folder {link / 'b'}, belongs to another user")
    assert list(owned.iterdir()) == []


def test_a_renewal_swapped_by_renames_whose_last_rename_fails_is_reported_done_not_unwritten(tmp_path):
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    env = new_ca(tmp_path, "Renames CA")
    folder = tmp_path / "web"
    run_certkit("issue-server", "web.example", "--out", folder, env=env, check=True)
    old = read_bundle(folder).serial
    log = tmp_path / "strace.log"
    # No exchange (as on a file system without it): then rename 1 sets the old folder aside, 2 puts the new one
    # in, 3 (failing: a full disk) would move the old one to the temporary name to be removed
    proc = subprocess.run([strace, "-f", "-qq", "-o", str(log), "-e", "trace=rename,renameat2",
                           "-e", "inject=renameat2:error=EINVAL", "-e", "inject=rename:error=ENOSPC:when=3",
                           sys.executable, "-m", "certkit", "renew", str(folder)], env=env | {
                               "PYTHONDONTWRITEBYTECODE": "1"}, capture_output=True, text=True, timeout=120)
    if "ptrace" in proc.stderr and "Operation not permitted" in proc.stderr:
        pytest.skip("ptrace is not allowed here")
    injected = [line for line in log.read_text().splitlines() if "INJECTED" in line and "ENOSPC" in line]
    assert len(injected) == 1 and ".old.certkit-tmp" in injected[0], log.read_text()
    new = read_bundle(folder)
    assert new.complete and new.serial != old
    assert (proc.returncode, proc.stderr) == (0, ""), proc
    assert f"Renewed server certificate {old}" in proc.stdout
    assert f"new serial  {new.serial}" in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir() if "certkit-tmp" in p.name) == []  # the old key is gone
    assert {r["serial"]: r["status"] for r in db_rows(tmp_path / "ca")}[new.serial] == "valid"


def test_a_dead_writers_journal_that_cannot_be_settled_is_said_so_not_taken_for_a_live_command(tmp_path):
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("needs root and chattr")
    env = new_ca(tmp_path, "Attributes CA")
    folder = tmp_path / "web"
    run_certkit("issue-server", "web.example", "--out", folder, env=env, check=True)
    if subprocess.run(["chattr", "+a", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("this file system has no append-only attribute")
    try:
        first = run_certkit("renew", folder, env=env, subprocess=True)  # its own process: gone once it ends
        assert_clean_error(first, "nothing was replaced (the bundle was left as it was)")
        [journal] = [p.name for p in folder.iterdir() if p.name.startswith(".certkit-swap.")]  # not removable
        again = run_certkit("renew", folder, env=env)
        assert_clean_error(again, f"The bundle in {folder} holds the journal {journal} of a certkit command that "
                                  "stopped, and certkit could not finish or undo it: it cannot rename or remove files "
                                  f"there (is the folder or a file in it immutable or append-only? lsattr -a {folder}")
        assert "Another certkit command" not in again.stderr
    finally:
        subprocess.run(["chattr", "-a", str(folder)], check=True)
    run_certkit("renew", folder, env=env, check=True)  # settled, then renewed
    assert read_bundle(folder).complete and not [p for p in folder.iterdir() if "certkit-tmp" in p.name]
