"""Audit integrity7 #4: ``trust install --nss`` that fails while creating ~/.pki/nssdb (a full disk, certutil
killed) left a half-made database where Chromium reads, which every later install and status then called bad.
Now what that run made goes, and a half-made database left by a run killed outright is named so, with what to
do. The file-size limit (ulimit -f) stands in for a full disk: certutil's writes fail as they would."""

from __future__ import annotations

import os
from pathlib import Path

from test_trust import outcomes, pki, trust  # noqa: F401 (pki: the module's fixture)

from conftest import require
from trust_helpers import nss_listing


def _chromium_on_path(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"  # a Chromium on PATH is what has certkit create ~/.pki/nssdb
    bin_dir.mkdir()
    (bin_dir / "chromium").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "chromium").chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_a_database_certutil_could_not_finish_is_not_left_behind(pki, tmp_path: Path) -> None:  # noqa: F811
    require("certutil")
    home = tmp_path / "home"
    home.mkdir()
    env = _chromium_on_path(tmp_path)
    proc = trust("install", "--nss", home=home, ca_dir=pki.issuing, extra_env=env,
                 prefix=["sh", "-c", 'ulimit -f 8 && exec "$@"', "sh"])
    assert proc.returncode == 1, proc
    assert "certutil -N" in proc.stderr and f"nothing was left in {home / '.pki/nssdb'}" in proc.stderr, proc.stderr
    assert not (home / ".pki/nssdb").exists()
    added = trust("install", "--nss", "--json", home=home, ca_dir=pki.issuing, extra_env=env, check=True)
    assert outcomes(added) == {str(home / ".pki/nssdb"): "added"}
    assert pki.anchor.nickname in nss_listing(home / ".pki/nssdb")


def test_a_half_made_database_is_named_with_what_to_do(pki, tmp_path: Path) -> None:  # noqa: F811
    require("certutil")
    home = tmp_path / "home"
    (home / ".pki/nssdb").mkdir(parents=True)
    (home / ".pki/nssdb/cert9.db").write_bytes(b"")  # what a run killed during certutil -N leaves
    (home / ".pki/nssdb/pkcs11.txt").write_text("library=\n")
    proc = trust("install", "--nss", home=home, ca_dir=pki.issuing, extra_env=_chromium_on_path(tmp_path))
    assert proc.returncode == 1, proc
    assert (f"cert9.db is empty: the database was left half-made, holding nothing; remove {home / '.pki/nssdb'} "
            "and run again") in proc.stderr, proc.stderr
