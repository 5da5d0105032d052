"""The twenty-first round's integrity findings (audit integrity, round twenty-one).

1. Round twenty refused a bundle folder, a CRL file and a new CA directory below a folder another user controls
   (who could move certkit's temporary names and put links in their place), but not certkit's other writers:
   ``--format jsonl|k8s|tar --out FILE`` (its temporary file beside it, and folders made for it; only the folder
   holding it was judged, and only when it existed), ``renew --install-timer --unit-dir`` (root's systemd units,
   which that user could then replace) and ``demo --keep`` (refused only half-way, naming a temporary folder).
   Input: ``issue-server a.example --format jsonl --out owned/sub/a.jsonl`` as root, ``owned`` belonging to
   ``nobody``. Wrong output: the key written below it, exit 0. Now every one of them is refused before anything
   is signed, in the words round twenty uses.
2. A path with ``..`` after a symbolic link (``--out link/../web``) names, for the kernel, the folder above where
   the link leads; certkit made paths absolute with ``os.path.abspath``, which drops ``link/..`` by name. Input:
   ``issue-server a.example --out link/../web``. Wrong output: the bundle written in ``other/web`` (the kernel's
   reading) but recorded as ``work/web``; ``renew a.example`` then said no folder is known to hold it, and
   ``renew link/../web`` said "another certkit command renewed or replaced it meanwhile" (none had); a
   ``--format jsonl --out link/../j.jsonl`` landed in ``work/j.jsonl``, not where the kernel (and ``cat``) takes
   ``link/../j.jsonl``; with ``CERTKIT_CA_DIR=link/../ca2`` a timer's units named ``--ca-dir work/ca2``, a CA
   directory that does not exist; and ``issue-server z.example --out into/.. --force`` (``into`` a link to a folder
   in the CA directory) wrote privkey.pem and cert.pem into the CA directory and replaced its ca.pem, as
   ``crl --out into/../crl.pem`` wrote there: "certkit never writes there" was judged on the name. Now certkit
   resolves such a path up to its last ``..`` as the kernel does (``paths.absolute``), everywhere it makes a path
   absolute (what it records, locks, judges and writes).
3. A new bundle folder made in a setgid folder lost the setgid bit ``mkdir`` gave it (certkit set its mode to
   0755 outright); now it keeps it, as ``mkdir`` and ``install -d`` do.
4. An inventory held by another program (``sqlite3``, a backup tool) past the busy timeout was said to be held
   "by another certkit process"; now "by another process (a certkit command, or a program that opened it: fuser
   FILE names it)"; and once a bundle was written before that error, the error no longer says "try again"
   (which would issue it twice) before "... was written whole ... so do not issue it again".
5. A renewal's old folder that cannot be removed (its ``privkey.pem`` immutable, ``chattr +i``) stayed beside the
   bundle under a dot name, with the old key, unsaid for good; now it is said, by the renewal and by every later
   command that finds it.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from test_audit20_integrity import _other_user

from conftest import PASSPHRASE, assert_clean_error, new_ca, run_certkit


def _recorded(env: dict, cwd: Path) -> list[tuple[str, str]]:
    rows = json.loads(run_certkit("list", "--json", env=env, cwd=cwd, check=True).stdout)["certificates"]
    return [(row["folder"], row["status"]) for row in rows]


def test_every_single_file_output_refuses_a_place_below_a_folder_another_user_owns(tmp_path):
    nobody = _other_user()
    env = new_ca(tmp_path, "Outputs CA")
    owned = tmp_path / "owned"  # another user's folder: it may rename anything certkit makes in it
    owned.mkdir()
    os.chown(owned, nobody.pw_uid, nobody.pw_gid)
    (tmp_path / "names.txt").write_text("b.example\n")
    for args, what, place in [
        (("issue-server", "a.example", "--format", "jsonl", "--out", owned / "sub" / "a.jsonl"), "output file",
         owned / "sub" / "a.jsonl"),
        (("issue-client", "alice", "--format", "k8s", "--out", owned / "a.yaml"), "output file", owned / "a.yaml"),
        (("issue-batch", tmp_path / "names.txt", "--format", "tar", "--out", owned / "new" / "b.tar"), "output file",
         owned / "new" / "b.tar"),
        (("renew", "--install-timer", "--unit-dir", owned / "units"), "--unit-dir folder", owned / "units"),
        (("demo", "--keep", owned / "demo"), "demo folder", owned / "demo"),
    ]:
        proc = run_certkit(*args, env=env, cwd=tmp_path)
        assert_clean_error(proc, f"The folder {owned}, above the {what} {place}, belongs to another user (uid "
                                 f"{nobody.pw_uid}), who could move what certkit writes there")
    assert list(owned.iterdir()) == []
    assert _recorded(env, tmp_path) == []  # refused before anything was signed


def test_a_path_through_a_link_then_dotdot_is_written_and_recorded_where_the_kernel_takes_it(tmp_path):
    work, other = tmp_path / "work", tmp_path / "other"
    (other / "deep").mkdir(parents=True)
    work.mkdir()
    (work / "link").symlink_to("../other/deep")  # link/.. is other/, not work/
    env = new_ca(tmp_path, "Dots CA")
    run_certkit("issue-server", "a.example", "--out", "link/../web", env=env, cwd=work, check=True)
    assert (other / "web" / "cert.pem").is_file() and not (work / "web").exists()
    assert _recorded(env, work) == [(str(other / "web"), "valid")]
    renewed = run_certkit("renew", "link/../web", env=env, cwd=work)
    assert renewed.returncode == 0 and "Renewed server certificate" in renewed.stdout, renewed.stderr
    renewed = run_certkit("renew", "a.example", env=env, cwd=work)  # by name: the folder it was recorded in
    assert renewed.returncode == 0 and f"folder      {other / 'web'}" in renewed.stdout, renewed.stderr
    assert _recorded(env, work) == [(str(other / "web"), "valid")] * 3  # the first two renewed, the third there
    run_certkit("issue-server", "j.example", "--format", "jsonl", "--out", "link/../j.jsonl", env=env, cwd=work,
                check=True)
    assert (other / "j.jsonl").is_file() and not (work / "j.jsonl").exists()
    (tmp_path / "ca" / "sub").mkdir()  # a folder in the CA directory, and a link to it: into/.. is the CA's own
    (work / "into").symlink_to(tmp_path / "ca" / "sub")
    def in_ca():  # (SQLite's -wal and -shm come and go with the runs in this process)
        return sorted(p.name for p in (tmp_path / "ca").iterdir() if not p.name.startswith("inventory.sqlite3-"))

    before = in_ca()
    for args, what in [(("issue-server", "z.example", "--out", "into/..", "--force"), "output folder into/.."),
                       (("crl", "--out", "into/../crl.pem"), "CRL file into/../crl.pem")]:
        assert_clean_error(run_certkit(*args, env=env, cwd=work),
                           f"The {what} is in the CA directory {tmp_path / 'ca'}; certkit never writes there")
    assert in_ca() == before  # main wrote privkey.pem, ca.pem there
    relative = env | {"CERTKIT_CA_DIR": "link/../ca2"}  # a CA directory so spelt: other/ca2
    run_certkit("init-ca", "--name", "Dots CA 2", "--no-passphrase", env=relative, cwd=work, check=True)
    run_certkit("renew", "--install-timer", "--unit-dir", tmp_path / "units", env=relative, cwd=work, check=True)
    assert (other / "ca2" / "ca.pem").is_file()  # the timer renews in that CA directory, not in work/ca2
    assert f'"--ca-dir" "{other / "ca2"}"' in (tmp_path / "units" / "certkit-renew.service").read_text()


def test_a_new_bundle_folder_in_a_setgid_folder_keeps_the_setgid_bit(tmp_path):
    env = new_ca(tmp_path, "Group CA")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o2755)
    run_certkit("issue-server", "a.example", "--out", shared / "web", env=env, check=True)
    run_certkit("issue-server", "b.example", "--out", shared / "deeper" / "web", env=env, check=True)
    for folder in (shared / "web", shared / "deeper", shared / "deeper" / "web"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o2755, (folder, oct(folder.stat().st_mode))
    run_certkit("renew", shared / "web", env=env, check=True)
    assert stat.S_IMODE((shared / "web").stat().st_mode) == 0o2755


def test_an_old_key_that_a_renewal_cannot_remove_is_said_not_left_hidden_beside_the_bundle(tmp_path):
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("needs root and chattr")
    env = new_ca(tmp_path, "Immutable CA")
    web = tmp_path / "web"
    run_certkit("issue-server", "web.example", "--out", web, env=env, check=True)
    old_key = (web / "privkey.pem").read_bytes()
    if subprocess.run(["chattr", "+i", str(web / "privkey.pem")], capture_output=True).returncode != 0:
        pytest.skip("this file system has no immutable files")
    left: list[Path] = []
    try:
        renewed = run_certkit("renew", web, "--rekey", env=env, subprocess=True)  # its pid gone after it
        assert renewed.returncode == 0 and (web / "privkey.pem").read_bytes() != old_key, renewed.stderr
        left = [p for p in tmp_path.iterdir() if p.name.startswith(".web.") and p.name.endswith(".certkit-tmp")]
        assert len(left) == 1 and (left[0] / "privkey.pem").read_bytes() == old_key  # the old key, beside it
        assert renewed.stderr.startswith(
            f"Warning: The folder {left[0]}, which holds the bundle this renewal replaced, could not be removed "
            f"(Operation not permitted); it still holds privkey.pem. Remove it (lsattr -a {left[0]} shows a file "
            "made immutable or append-only: chattr -i or -a it first)."), renewed.stderr
        again = run_certkit("renew", web, env=env)  # every later command there says it too, until it is gone
        assert again.returncode == 0 and f"Warning: The folder {left[0]}, left by a stopped certkit command, could " \
            "not be removed (Operation not permitted); it still holds privkey.pem." in again.stderr, again.stderr
    finally:
        for folder in left:
            subprocess.run(["chattr", "-i", str(folder / "privkey.pem")], check=True)
        subprocess.run(["chattr", "-i", str(web / "privkey.pem")], capture_output=True)
    quiet = run_certkit("renew", web, env=env, check=True)
    assert "Warning" not in quiet.stderr and not left[0].exists()


def test_an_inventory_held_by_another_program_is_not_said_to_be_held_by_certkit(tmp_path):
    from test_audit13_library import _locked

    from certkit.errors import InventoryError
    from certkit.store import CADirectory

    new_ca(tmp_path, "Held CA")
    ca = CADirectory(tmp_path / "ca").load(PASSPHRASE.encode())
    ca.inventory.db.busy_timeout = 1.0
    with _locked(tmp_path), pytest.raises(InventoryError) as caught:  # python's sqlite3: no certkit at all
        ca.issue_server("held.example").write(tmp_path / "held")
    inventory = tmp_path / "ca" / "inventory.sqlite3"
    assert str(caught.value) == (f"The inventory {inventory} stayed locked for 1 s by another process (a certkit "
                                 f"command, or a program that opened it: fuser {inventory} names it); try again once "
                                 "it is done; nothing was issued or written.")  # round 24 adds what it means
    assert not (tmp_path / "held").exists()


def test_a_renewal_written_while_another_program_holds_the_inventory_is_not_told_to_try_again(tmp_path,
                                                                                            monkeypatch):
    import threading

    from test_audit13_library import _locked

    from certkit.errors import InventoryError
    from certkit.renewal import renew_bundle
    from certkit.store import CADirectory

    env = new_ca(tmp_path, "Held CA")
    run_certkit("issue-server", "held.example", "--out", tmp_path / "web", env=env, check=True)
    ca = CADirectory(tmp_path / "ca").load(PASSPHRASE.encode())
    ca.inventory.db.busy_timeout = 1.0
    marker, holding = tmp_path / "swapped", _locked(tmp_path)
    monkeypatch.setenv("CERTKIT_TEST_PAUSE_AT", "swapped")
    monkeypatch.setenv("CERTKIT_TEST_PAUSE_FILE", str(marker))

    def hold_once_swapped():  # the renewed bundle in place; then the inventory is held, and the renewal goes on
        while not marker.exists():
            threading.Event().wait(0.02)
        holding.__enter__()
        marker.unlink()

    helper = threading.Thread(target=hold_once_swapped)
    helper.start()
    try:
        with pytest.raises(InventoryError) as caught:
            renew_bundle(ca, str(tmp_path / "web"))
    finally:
        helper.join(30)
        holding.__exit__(None, None, None)
    inventory = tmp_path / "ca" / "inventory.sqlite3"
    assert str(caught.value) == (
        f"The inventory {inventory} stayed locked for 1 s by another process (a certkit command, or a program that "
        f"opened it: fuser {inventory} names it). {tmp_path / 'web'} was written whole; the next certkit command that "
        "reaches the inventory records it as issued ('certkit list' shows it), so do not issue it again.")
