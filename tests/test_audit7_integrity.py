"""Audit round seven, integrity (report integrity7): a bundle replaced through its journal is all or nothing.

1. a roll-forward that fails part-way (a file that cannot be replaced) is undone: the old bundle stays
   whole with its key, the new certificate is abandoned, and no journal is left to install it later
   (issue --force, renew in place, renew --rekey, bulk renew); a journal whose certificate was settled
   as abandoned is rolled back, never forward, by the next command that settles the folder;
2. a folder moved, or replaced by a symbolic link, while its journal waits: the command fails, nothing
   is written where the folder went, the row is abandoned;
5. a bundle file that is a mount point is refused, never carried away into a hidden folder;
7. revoking a certificate revoked already (a revoke killed after its commit) says to publish the CRL.

Driven at certkit's own pause points (certkit.testhooks); mounts only as root, always undone.
"""

from __future__ import annotations

import os
import signal
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509

from certkit.vocabulary import serial_hex

from conftest import assert_clean_error, run_certkit
from integrity_helpers import db_rows, interrupt, start_paused, temporaries_under


def serial_in(path: Path) -> str:
    return serial_hex(x509.load_pem_x509_certificate(path.read_bytes()).serial_number)


def rows(env: dict) -> dict[str, dict]:
    """Every row of the inventory, once ``certkit list`` has settled the rows of dead writers."""
    run_certkit("list", "--json", env=env, check=True)
    return {r["serial"]: r for r in db_rows(Path(env["CERTKIT_CA_DIR"]))}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def web_with_log(ca_env: dict, tmp_path: Path) -> Path:
    """A bundle folder with a file of the user's beside the bundle: replaced through the journal."""
    web = tmp_path / "web"
    run_certkit("issue-server", "web.test", "--out", web, env=ca_env, check=True)
    (web / "app.log").write_text("access log\n")
    return web


def finish(proc: subprocess.Popen, marker: Path) -> subprocess.CompletedProcess:
    marker.unlink()
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@contextmanager
def blocked(path: Path):
    """``path`` replaced by a folder that is not empty: no rename can put a file there (EISDIR)."""
    aside = path.with_name(path.name + ".aside")
    os.rename(path, aside)
    path.mkdir()
    (path / "x").write_text("x")
    try:
        yield
    finally:
        (path / "x").unlink()
        path.rmdir()
        os.rename(aside, path)


@pytest.mark.parametrize("command", [["renew", "--rekey", "{web}"], ["renew", "{web}"],
                                     ["issue-server", "web.test", "--out", "{web}", "--force"],
                                     ["renew", "--expiring", "4000d"]], ids=["rekey", "same-key", "force", "bulk"])
def test_a_journal_that_fails_part_way_is_undone(ca_dir, ca_env, tmp_path, command):
    web = web_with_log(ca_env, tmp_path)
    before, old = snapshot(web), serial_in(web / "cert.pem")
    args = [a.format(web=web) for a in command]
    proc = start_paused(args, ca_env, tmp_path, "staged", tmp_path / "pause")
    with blocked(web / "fullchain.pem"):  # cert.pem and privkey.pem go first, then this one cannot
        done = finish(proc, tmp_path / "pause")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert "left as it was" in done.stdout + done.stderr, (done.stdout, done.stderr)
    assert snapshot(web) == before  # the old bundle, whole, with its key
    assert not temporaries_under(tmp_path / "web")
    listed = rows(ca_env)
    assert listed[old]["status"] == "valid", listed[old]
    assert [r["status"] for s, r in listed.items() if s != old] == ["abandoned"]
    # Nothing is left for a later command to install.
    run_certkit("export-p12", web, "--password-file", "-", input="p12-password-1\n", env=ca_env, check=True)
    assert serial_in(web / "cert.pem") == serial_in(web / "fullchain.pem") == old
    assert {n: d for n, d in snapshot(web).items() if n != "bundle.p12"} == before
    assert run_certkit("check", env=ca_env).returncode == 0


@pytest.mark.parametrize("how", ["moved", "symlink"])
@pytest.mark.parametrize("command", [["issue-server", "web.test", "--out", "{web}", "--force"], ["renew", "{web}"]],
                         ids=["force", "renew"])
def test_a_folder_moved_while_its_journal_waits_fails(ca_dir, ca_env, tmp_path, command, how):
    web = web_with_log(ca_env, tmp_path)
    before, old = snapshot(web), serial_in(web / "cert.pem")
    proc = start_paused([a.format(web=web) for a in command], ca_env, tmp_path, "staged", tmp_path / "pause")
    moved = tmp_path / "web.moved"
    os.rename(web, moved)
    if how == "symlink":
        (tmp_path / "elsewhere").mkdir()
        web.symlink_to(tmp_path / "elsewhere")
    done = finish(proc, tmp_path / "pause")
    assert_clean_error(done, "was moved or replaced while the bundle was being written")
    assert "Issued" not in done.stdout and "Renewed" not in done.stdout
    assert snapshot(moved) == before and not temporaries_under(tmp_path)
    if how == "symlink":
        assert not os.listdir(tmp_path / "elsewhere")  # nothing written through the link
    listed = rows(ca_env)
    assert listed[old]["status"] == "valid", listed[old]
    assert [r["status"] for s, r in listed.items() if s != old] == ["abandoned"]


def test_a_journal_settled_as_abandoned_is_rolled_back_not_forward(ca_dir, ca_env, tmp_path):
    """A renewal killed with its journal committed, its folder moved before the next command: the row
    is abandoned (nothing at its folder), and the journal, found later in the moved folder, is undone."""
    web = web_with_log(ca_env, tmp_path)
    before, old = snapshot(web), serial_in(web / "cert.pem")
    proc = start_paused(["renew", "--rekey", web], ca_env, tmp_path, "staged", tmp_path / "pause")
    interrupt(proc, signal.SIGKILL, tmp_path / "pause")
    moved = tmp_path / "web.moved"
    os.rename(web, moved)
    listed = rows(ca_env)  # settles the dead writer's row: nothing in web
    new = [s for s in listed if s != old]
    assert [listed[s]["status"] for s in new] == ["abandoned"]
    run_certkit("export-p12", moved, "--password-file", "-", input="p12-password-1\n", env=ca_env, check=True)
    assert serial_in(moved / "cert.pem") == old  # not the abandoned certificate
    assert {n: d for n, d in snapshot(moved).items() if n != "bundle.p12"} == before
    assert not temporaries_under(tmp_path)


def _unmount_under(root: Path) -> None:
    """Undo every mount below ``root``, wherever a command may have moved it."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split(" ")[4]
        if point.startswith(str(root) + "/"):
            subprocess.run(["umount", "-l", point], check=False)


def _mount(*args: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("bind mounts need root")
    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"mount is not permitted here: {proc.stderr.strip()}")


def test_a_journal_abandoned_while_its_folder_was_read_only_is_never_rolled_forward(ca_dir, ca_env, tmp_path):
    web = web_with_log(ca_env, tmp_path)
    before, old = snapshot(web), serial_in(web / "cert.pem")
    proc = start_paused(["renew", web], ca_env, tmp_path, "staged", tmp_path / "pause")
    interrupt(proc, signal.SIGKILL, tmp_path / "pause")
    _mount("--bind", str(web), str(web))
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(web)], check=True)
        listed = rows(ca_env)  # the journal cannot be carried out in a read-only folder: abandoned
    finally:
        _unmount_under(tmp_path)
        subprocess.run(["umount", str(web)], check=False)
    assert [r["status"] for s, r in listed.items() if s != old] == ["abandoned"]
    run_certkit("export-p12", web, "--password-file", "-", input="p12-password-1\n", env=ca_env, check=True)
    assert serial_in(web / "cert.pem") == serial_in(web / "fullchain.pem") == old
    assert {n: d for n, d in snapshot(web).items() if n != "bundle.p12"} == before
    assert not temporaries_under(tmp_path)


def test_a_bundle_file_that_is_a_mount_point_is_refused_not_carried_away(ca_dir, ca_env, tmp_path):
    web = tmp_path / "web"
    run_certkit("issue-server", "web.test", "--out", web, env=ca_env, check=True)
    shared = tmp_path / "shared-ca.pem"
    shared.write_text("shared CA bundle\n")
    before = snapshot(web)
    _mount("--bind", str(shared), str(web / "ca.pem"))
    try:
        done = run_certkit("renew", web, env=ca_env, subprocess=True)
        assert os.path.realpath(web / "ca.pem").encode() in Path("/proc/self/mountinfo").read_bytes()
        assert (web / "ca.pem").read_text() == "shared CA bundle\n"  # still mounted there
    finally:
        _unmount_under(tmp_path)
    assert_clean_error(done, "is a mount point")
    assert snapshot(web) == before
    assert sorted(os.listdir(tmp_path)) == sorted(["ca", "web", "shared-ca.pem"]), os.listdir(tmp_path)
    assert [r["status"] for r in rows(ca_env).values()] == ["valid"]


def test_revoking_again_says_to_publish_the_crl(ca_dir, ca_env, tmp_path):
    run_certkit("issue-server", "web.test", "--out", tmp_path / "web", env=ca_env, check=True)
    serial = serial_in(tmp_path / "web" / "cert.pem")
    run_certkit("revoke", serial, "--reason", "keyCompromise", env=ca_env, check=True)
    again = run_certkit("revoke", serial, "--reason", "keyCompromise", env=ca_env)
    assert_clean_error(again, "already revoked")
    assert "certkit crl --out crl.pem" in again.stderr, again.stderr


# --- integrity7 #3: --force over another CA's bundle ----------------------------------------------------------
def test_force_over_another_cas_bundle_names_it_and_its_ca(tmp_path: Path) -> None:
    import json as _json

    from conftest import PASSPHRASE, certkit_env, run_certkit

    env = certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--ca-dir", tmp_path / "root", "--name", "Root", env=env, check=True)
    run_certkit("init-ca", "--ca-dir", tmp_path / "issuing", "--parent-ca-dir", tmp_path / "root", "--name",
                "Issuing", env=env, check=True)
    first = _json.loads(run_certkit("issue-server", "web.test", "--ca-dir", tmp_path / "root", "--out",
                                    tmp_path / "web", "--json", env=env, check=True).stdout)
    proc = run_certkit("issue-server", "web.test", "--ca-dir", tmp_path / "issuing", "--out", tmp_path / "web",
                       "--force", "--json", env=env, check=True)
    notes = _json.loads(proc.stdout)["notes"]
    assert any(f"held certificate {first['serial']} of another CA (CN=Root)" in n and "certkit revoke "
               f"{first['serial']} --ca-dir" in n for n in notes), notes
    again = _json.loads(run_certkit("issue-server", "web.test", "--ca-dir", tmp_path / "issuing", "--out",
                                    tmp_path / "web", "--force", "--json", env=env, check=True).stdout)
    assert not any("another CA" in n for n in again["notes"]), again  # its own CA's: recorded as replaced


# --- integrity7 #6: init-ca over a CA that exists (an interrupted run had finished) ------------------------------
def test_init_ca_over_an_intermediate_names_it_and_its_record_at_the_parent(tmp_path: Path) -> None:
    import json as _json

    from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit

    env = certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--ca-dir", tmp_path / "root", "--name", "R", env=env, check=True)
    made = _json.loads(run_certkit("init-ca", "--ca-dir", tmp_path / "ica", "--parent-ca-dir", tmp_path / "root",
                                   "--name", "Issuing 1", "--json", env=env, check=True).stdout)
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "ica", "--parent-ca-dir", tmp_path / "root", "--name",
                       "Issuing 1", env=env)
    assert_clean_error(proc, "(CN=Issuing 1, valid from ")
    advice = f"certkit revoke {made['serial']} --ca-dir {tmp_path / 'root'} --reason cessationOfOperation"
    assert "the CA is whole and can be used as it is" in proc.stderr and advice in proc.stderr, proc.stderr
    run_certkit(*advice.split()[1:], env=env, check=True)  # the advice works as given
