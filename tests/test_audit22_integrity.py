"""The twenty-second round's integrity findings (audit integrity, round twenty-two).

1. ``demo --keep FOLDER`` on a disk that fills while the demo's files are written said either nothing of where
   ("Error: the disk is full.", a ``write()`` failing on ``ca/ca.pem``, which carries no file name) or named the
   temporary folder the demo is assembled in ("Error: Cannot write the bundle in
   mnt/.demo.2664-2e974b74a97b5cde.certkit-tmp/server: the disk is full."), a name nobody gave and that is gone
   by the time it is read. Every other writer that assembles a folder under a temporary name (a bundle, a CA
   directory) names the folder given; now the demo does too: "Cannot write the demo's certificates in
   mnt/demo: the disk is full; nothing was kept", or "Cannot write the bundle in mnt/demo/server: ...".
2. A bundle file that is there but is no file (a named pipe, a folder, a link to nothing) was said to be missing:
   ``renew web`` and ``revoke web`` with ``web/cert.pem`` a FIFO said "The folder web holds no cert.pem" (``ls``
   shows one); ``export-p12 web`` with ``web/ca.pem`` a FIFO or a folder wrote a bundle.p12 without the CA
   certificate, exit 0, and warned "web holds no ca.pem". Now each says what the file is ("web/cert.pem is a
   device or other special file, not a file"), and export-p12 refuses, as it refuses such a cert.pem or
   privkey.pem, writing nothing.
3. ``renew --install-timer --unit-dir DIR`` on a disk with room for one unit file wrote ``certkit-renew.service``
   and then failed on ``certkit-renew.timer``: "Error: Cannot write the timer units to DIR: No space left on
   device." and a lone .service left in the folder made for it (or, replacing a pair, a new .service beside the old
   .timer). Now the pair is written whole or not at all: what was replaced is put back (kept meanwhile as a hard
   link), what was created is removed, and the error says "the disk is full; nothing there was changed".
"""

from __future__ import annotations

import os
from pathlib import Path

from conftest import assert_clean_error, run_certkit
from integrity_helpers import fill, tmpfs


def test_demo_keep_on_a_full_disk_names_the_folder_given_not_its_temporary_name(tmp_path: Path, ca_env: dict):
    said = []
    for leave in (0, 3 * 4096, 9 * 4096):  # full before ca/ca.pem; before the server bundle; part-way
        with tmpfs(tmp_path / f"small{leave}", "size=256k") as mnt:
            fill(mnt, leave=leave)
            keep = mnt / "demo"
            proc = run_certkit("demo", "--keep", keep, env=ca_env, cwd=tmp_path)
            assert_clean_error(proc, "the disk is full")
            assert "certkit-tmp" not in proc.stderr, proc.stderr
            assert str(keep) in proc.stderr, proc.stderr
            assert not keep.exists()
            assert sorted(p.name for p in mnt.iterdir()) == ["filler"]  # nothing left, no temporary folder
            said.append(proc.stderr)
    assert f"Cannot write the demo's certificates in {tmp_path / 'small0' / 'demo'}: the disk is full; nothing " \
           "was kept." in said[0]


def test_a_bundle_file_that_is_no_file_is_said_as_such_not_as_missing(tmp_path: Path, ca_dir: Path, ca_env: dict):
    web = tmp_path / "web"
    run_certkit("issue-server", "web.example", "--out", web, env=ca_env, check=True)
    os.replace(web / "cert.pem", tmp_path / "cert.pem")
    os.mkfifo(web / "cert.pem")
    for command in ("renew", "revoke"):
        proc = run_certkit(command, web, env=ca_env, cwd=tmp_path)
        assert_clean_error(proc, f"{web / 'cert.pem'} is a device or other special file, not a file")
        assert "holds no cert.pem" not in proc.stderr
    os.unlink(web / "cert.pem")
    os.replace(tmp_path / "cert.pem", web / "cert.pem")
    os.unlink(web / "ca.pem")
    for make, kind in ((os.mkfifo, "a device or other special file, not a file"), (os.mkdir, "a folder, not a file")):
        make(web / "ca.pem")
        proc = run_certkit("export-p12", web, env={**ca_env, "CERTKIT_P12_PASSWORD": "export-password-22"},
                           cwd=tmp_path)
        assert_clean_error(proc, f"{web / 'ca.pem'} is {kind}")
        assert not (web / "bundle.p12").exists()  # no file without its CA certificate
        os.rmdir(web / "ca.pem") if make is os.mkdir else os.unlink(web / "ca.pem")


def test_a_timer_pair_the_disk_cannot_take_whole_leaves_no_lone_unit(tmp_path: Path, ca_dir: Path, ca_env: dict):
    pp = tmp_path / "pp"
    pp.write_text(ca_env["CERTKIT_CA_PASSPHRASE"] + "\n")
    pp.chmod(0o600)
    env = dict(ca_env, CERTKIT_SYSTEMD_SYSTEM_DIR=str(tmp_path / "s"), HOME=str(tmp_path))
    args = ("renew", "--install-timer", "--passphrase-file", pp, "--unit-dir")
    with tmpfs(tmp_path / "small", "size=64k") as mnt:
        filler = fill(mnt, leave=4096)  # room for one unit file, not two
        proc = run_certkit(*args, mnt / "units", env=env, cwd=tmp_path)
        assert_clean_error(proc, f"Cannot write the timer units to {mnt / 'units'}: the disk is full; nothing there "
                                 "was changed.")
        assert sorted(p.name for p in mnt.iterdir()) == ["filler"]  # no lone .service, no folder made for it
        filler.unlink()
        run_certkit(*args, mnt / "units", env=env, cwd=tmp_path, check=True)
        before = {p.name: p.read_bytes() for p in (mnt / "units").iterdir()}
        assert sorted(before) == ["certkit-renew.service", "certkit-renew.timer"]
        fill(mnt, leave=4096)
        proc = run_certkit(*args[:2], "--expiring", "10d", *args[2:], mnt / "units", "--force", env=env, cwd=tmp_path)
        assert_clean_error(proc, "the disk is full; nothing there was changed")
        assert {p.name: p.read_bytes() for p in (mnt / "units").iterdir()} == before  # the old pair, whole
