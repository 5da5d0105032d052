"""The twenty-second round's integrity findings (audit integrity, round twenty-two).

1. ``demo --keep FOLDER`` on a disk that fills while the demo's files are written said either nothing of where
   ("Error: the disk is full.", a ``write()`` failing on ``ca/ca.pem``, which carries no file name) or named the
   temporary folder the demo is assembled in ("Error: Cannot write the bundle in
   mnt/.demo.2664-2e974b74a97b5cde.certkit-tmp/server: the disk is full."), a name nobody gave and that is gone
   by the time it is read. Every other writer that assembles a folder under a temporary name (a bundle, a CA
   directory) names the folder given; now the demo does too: "Cannot write the demo's certificates in
   mnt/demo: the disk is full; nothing was kept", or "Cannot write the bundle in mnt/demo/server: ...".
"""

from __future__ import annotations

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
