"""The twenty-fourth round's integrity findings (audit integrity, round twenty-four).

1. ``renew --install-timer --force --unit-dir DIR`` on a file system without hard links (vfat, exfat) and a disk
   with room for one unit: the old .service could not be kept aside as a hard link, so when the new .timer failed
   the new .service was removed, leaving the folder with no .service at all beside the old .timer, and said
   "nothing there was changed". Now what is replaced is kept aside by a copy when no link can be made, and the
   pair is put back whole (or, if the copy itself does not fit, nothing is touched).
2. ``renew SERIAL|NAME --out DIR`` of a certificate whose bundle folder was moved since wrote DIR without a private
   key and said "Renewed ... key kept"; so did ``renew FOLDER --out DIR`` of a bundle whose key is encrypted. Both
   are refused now, nothing signed or written.
3. ``renew --remove-timer`` that could remove the .timer but not the .service said only "permission denied
   (.../certkit-renew.service)"; it now says what was removed and what is left.
4. A bundle or CRL write failing on a full disk said "the disk is full." without what it left; it now says
   "nothing was written", "nothing was replaced (the bundle was left as it was)" or "FILE is as it was".
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_audit22_fleet import _NO_LINKS_HERE

from conftest import assert_clean_error, run_certkit
from integrity_helpers import listed

# link(2) into a folder named "units" fails as vfat's does (EPERM): Linux's vfat and exfat drivers have no link;
# and the disk is full when a file whose name begins with $FULL_AT is created (a temporary file beside it too)
_NO_LINKS_IN_UNITS = _NO_LINKS_HERE.replace('== "usb"', '== "units"') + '''
_open = os.open
def _full_open(path, flags, *args, **kwargs):
    full_at = os.environ.get("FULL_AT")
    name = os.path.basename(os.fspath(path)).lstrip(".")
    if full_at and flags & os.O_CREAT and name.startswith(full_at):
        raise OSError(errno.ENOSPC, "No space left on device", os.fspath(path))
    return _open(path, flags, *args, **kwargs)
os.open = _full_open
'''


@pytest.fixture
def no_links_env(tmp_path: Path, ca_env: dict) -> dict:
    hooks = tmp_path / "nolinks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(_NO_LINKS_IN_UNITS)
    env = dict(ca_env, PYTHONPATH=f"{hooks}{os.pathsep}{ca_env.get('PYTHONPATH', '')}",
               CERTKIT_SYSTEMD_SYSTEM_DIR=str(tmp_path / "s"), HOME=str(tmp_path))
    (tmp_path / "probe" / "units").mkdir(parents=True)
    probe = subprocess.run([sys.executable, "-c", f"import os; os.link({str(hooks / 'sitecustomize.py')!r}, "
                            f"{str(tmp_path / 'probe' / 'units' / 'x')!r})"], env=env, capture_output=True, text=True)
    assert "Operation not permitted" in probe.stderr, probe.stderr  # the stand-in for vfat is in force
    return env


def _units(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_timer_pair_replaced_without_hard_links_on_a_full_disk_is_left_whole(tmp_path: Path, ca_dir: Path,
                                                                                 no_links_env: dict):
    env = no_links_env
    pp = tmp_path / "pp"
    pp.write_text(env["CERTKIT_CA_PASSPHRASE"] + "\n")
    pp.chmod(0o600)
    units = tmp_path / "units"
    args = ("renew", "--install-timer", "--passphrase-file", pp, "--unit-dir", units)
    run_certkit(*args, env=env, cwd=tmp_path, check=True, subprocess=True)
    before = _units(units)
    assert sorted(before) == ["certkit-renew.service", "certkit-renew.timer"]
    for full_at in ("certkit-renew.timer", "certkit-renew.service", "certkit-renew"):  # after the .service; before
        proc = run_certkit(*args, "--expiring", "10d", "--force", env=dict(env, FULL_AT=full_at), cwd=tmp_path,
                           subprocess=True)
        assert_clean_error(proc, "the disk is full; nothing there was changed")
        assert _units(units) == before  # the old pair, whole: no unit lost, none new beside an old one
    proc = run_certkit(*args, "--expiring", "10d", "--force", env=env, cwd=tmp_path, subprocess=True)
    assert proc.returncode == 0, proc.stderr
    after = _units(units)
    assert sorted(after) == ["certkit-renew.service", "certkit-renew.timer"]
    assert b"10d" in after["certkit-renew.service"]


def _serial(folder: Path) -> str:
    out = subprocess.run(["openssl", "x509", "-in", folder / "cert.pem", "-noout", "-serial"], capture_output=True,
                         text=True, check=True).stdout
    return out.strip().split("=")[1]


def test_a_renewal_whose_bundle_folder_moved_away_is_refused_not_written_without_its_key(tmp_path: Path, ca_dir: Path,
                                                                                       ca_env: dict):
    web = tmp_path / "web"
    run_certkit("issue-server", "web.example", "--out", web, env=ca_env, check=True)
    moved = tmp_path / "moved"
    os.replace(web, moved)
    serial = _serial(moved)
    rows_before = listed(ca_env)
    for ref in (serial, "web.example", serial[:12]):
        out = tmp_path / "new"
        proc = run_certkit("renew", ref, "--out", out, env=ca_env, cwd=tmp_path)
        assert_clean_error(proc, f"The certificate {serial} was written with its private key to {web}, which no longer "
                                 "holds it")
        assert "nothing was written" in proc.stderr and "Renewed" not in proc.stdout
        assert not out.exists()
    assert listed(ca_env) == rows_before  # nothing recorded either
    # the folder that holds it now renews, keeping the key, into a new folder or in place
    run_certkit("renew", moved, "--out", tmp_path / "new", env=ca_env, cwd=tmp_path, check=True)
    key = subprocess.run(["openssl", "pkey", "-in", tmp_path / "new" / "privkey.pem", "-pubout"], capture_output=True,
                         check=True).stdout
    cert_key = subprocess.run(["openssl", "x509", "-in", tmp_path / "new" / "cert.pem", "-noout", "-pubkey"],
                              capture_output=True, check=True).stdout
    assert key == cert_key
    # as the error says, --rekey needs no old key: a new one is made and written with it
    run_certkit("issue-server", "api.example", "--out", tmp_path / "api", env=ca_env, check=True)
    os.replace(tmp_path / "api", tmp_path / "api-moved")
    run_certkit("renew", "api.example", "--rekey", "--out", tmp_path / "api2", env=ca_env, cwd=tmp_path, check=True)
    assert (tmp_path / "api2" / "privkey.pem").stat().st_mode & 0o777 == 0o600


# unlink(2) of the file named $STUCK fails (EACCES), as in a folder the user may read but not change
_STUCK_UNLINK = '''
import errno, os
_unlink = os.unlink
def _stuck_unlink(path, *args, **kwargs):
    if os.path.basename(os.fspath(path)) == os.environ.get("STUCK"):
        raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
    return _unlink(path, *args, **kwargs)
os.unlink = _stuck_unlink
'''


def test_a_timer_removed_only_in_part_says_what_went_and_what_is_left(tmp_path: Path, ca_dir: Path, ca_env: dict):
    hooks = tmp_path / "stuck"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(_STUCK_UNLINK)
    env = dict(ca_env, CERTKIT_SYSTEMD_SYSTEM_DIR=str(tmp_path / "s"), HOME=str(tmp_path))
    pp = tmp_path / "pp"
    pp.write_text(env["CERTKIT_CA_PASSPHRASE"] + "\n")
    pp.chmod(0o600)
    units = tmp_path / "units"
    service, timer = units / "certkit-renew.service", units / "certkit-renew.timer"
    install = ("renew", "--install-timer", "--passphrase-file", pp, "--unit-dir", units, "--force")
    stuck = dict(env, PYTHONPATH=f"{hooks}{os.pathsep}{env.get('PYTHONPATH', '')}")
    for json_args in ((), ("--json",)):
        run_certkit(*install, env=env, cwd=tmp_path, check=True)
        proc = run_certkit("renew", "--remove-timer", "--unit-dir", units, *json_args,
                           env=dict(stuck, STUCK="certkit-renew.service"), cwd=tmp_path, subprocess=True)
        assert_clean_error(proc, f"Cannot remove {service}: Permission denied; removed {timer}, left {service}")
        assert not timer.exists() and service.exists()
        run_certkit(*install, env=env, cwd=tmp_path, check=True)
        proc = run_certkit("renew", "--remove-timer", "--unit-dir", units, *json_args,
                           env=dict(stuck, STUCK="certkit-renew.timer"), cwd=tmp_path, subprocess=True)
        assert_clean_error(proc, f"Cannot remove {timer}: Permission denied; nothing was removed, left {timer}, "
                                 f"{service}")
        assert timer.exists() and service.exists()
    # what is left is removed by the next run
    run_certkit("renew", "--remove-timer", "--unit-dir", units, env=env, cwd=tmp_path, check=True)
    assert sorted(units.iterdir()) == []


# write(2) into a file whose name holds $FAIL_AT fails with ENOSPC, as on a disk that fills at that file
_FULL_AT_WRITE = '''
import errno, os
_write = os.write
def _full_write(fd, data):
    at = os.environ.get("FAIL_AT")
    if at:
        try:
            name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            name = ""
        if at in name:
            raise OSError(errno.ENOSPC, "No space left on device")
    return _write(fd, data)
os.write = _full_write
'''


def test_a_write_that_fills_the_disk_says_what_was_kept(tmp_path: Path, ca_dir: Path, ca_env: dict):
    hooks = tmp_path / "full"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(_FULL_AT_WRITE)
    full = dict(ca_env, PYTHONPATH=f"{hooks}{os.pathsep}{ca_env.get('PYTHONPATH', '')}")

    def run(at: str, *args) -> subprocess.CompletedProcess:
        return run_certkit(*args, env=dict(full, FAIL_AT=at), cwd=tmp_path, subprocess=True)

    for at in ("privkey.pem", "fullchain.pem"):  # a new bundle folder: none of it
        proc = run(at, "issue-server", "web.example", "--out", tmp_path / "web")
        assert_clean_error(proc, f"Cannot write the bundle in {tmp_path / 'web'}: the disk is full; nothing was "
                                 "written.")
        assert not (tmp_path / "web").exists()
    web = tmp_path / "web"
    run_certkit("issue-server", "web.example", "--out", web, env=ca_env, check=True)
    before = {p.name: p.read_bytes() for p in web.iterdir()}
    for args in (("renew", web), ("issue-server", "web.example", "--out", web, "--force"), ("export-p12", web)):
        proc = run_certkit(*args, env=dict(full, FAIL_AT=".pem" if args[0] != "export-p12" else "bundle.p12",
                                           CERTKIT_P12_PASSWORD="export-password-24"), cwd=tmp_path, subprocess=True)
        assert_clean_error(proc, f"Cannot write the bundle in {web}: the disk is full; nothing was replaced (the "
                                 "bundle was left as it was).")
        assert {p.name: p.read_bytes() for p in web.iterdir()} == before  # as it was, no leftover
    crl = tmp_path / "ca.crl"
    proc = run("ca.crl", "crl", "--out", crl)
    assert_clean_error(proc, f"Cannot write the CRL to {crl}: the disk is full; nothing was written.")
    assert not crl.exists()
    run_certkit("crl", "--out", crl, env=ca_env, check=True)
    published = crl.read_bytes()
    proc = run("ca.crl", "crl", "--out", crl)
    assert_clean_error(proc, f"Cannot write the CRL to {crl}: the disk is full; {crl} is as it was.")
    assert crl.read_bytes() == published
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary file left


def test_a_renewal_elsewhere_of_a_bundle_whose_key_is_encrypted_is_refused_not_written_without_it(
        tmp_path: Path, ca_dir: Path, ca_env: dict):
    web = tmp_path / "web"
    run_certkit("issue-server", "web.example", "--out", web, env=ca_env, check=True)
    subprocess.run(["openssl", "pkey", "-in", web / "privkey.pem", "-aes256", "-passout", "pass:key-pass-24",
                    "-out", tmp_path / "enc.pem"], check=True)
    os.replace(tmp_path / "enc.pem", web / "privkey.pem")
    rows_before = listed(ca_env)
    for ref in (web, web / "cert.pem", "web.example"):
        proc = run_certkit("renew", ref, "--out", tmp_path / "new", env=ca_env, cwd=tmp_path)
        assert_clean_error(proc, f"{web / 'privkey.pem'} is encrypted, so certkit cannot carry it into "
                                 f"{tmp_path / 'new'}: the renewed bundle would have no key; nothing was written.")
        assert not (tmp_path / "new").exists()
    assert listed(ca_env) == rows_before
    # in place the encrypted key stays, as before
    proc = run_certkit("renew", web, env=ca_env, cwd=tmp_path)
    assert proc.returncode == 0 and "Renewed" in proc.stdout, proc.stderr
    assert b"ENCRYPTED" in (web / "privkey.pem").read_bytes()
