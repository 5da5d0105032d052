"""Audit integrity8 #2: a ``certutil`` write into an existing NSS database (the user's Chromium store) killed
part-way (certkit's own timeout, the OOM killer) left a hot rollback journal, and every later ``trust install``
and ``trust status`` failed on "bad database" with no advice. certkit now lets SQLite roll the interrupted write
back before it runs certutil, as any program opening the database for writing would. strace kills certutil at a
write inside its transaction, as a timeout would."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from test_trust import outcomes, pki, trust  # noqa: F401 (pki: the module's fixture)

from conftest import require
from trust_helpers import nss_listing


def _interrupted_write(db: Path, pem: Path) -> bool:
    """certutil -A killed at one of its writes into cert9.db; whether that left the database unreadable to it."""
    for when in (26, 24, 28, 30):
        copy = db.parent / f"try{when}"
        shutil.copytree(db, copy)
        subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=pwrite64", "-e",
                        f"inject=pwrite64:signal=KILL:when={when}", "certutil", "-A", "-d", f"sql:{copy}", "-n",
                        "half", "-t", "C,,", "-i", str(pem)], capture_output=True, timeout=60)
        if subprocess.run(["certutil", "-L", "-d", f"sql:{copy}"], capture_output=True).returncode != 0:
            shutil.rmtree(db)
            copy.rename(db)
            return True
        shutil.rmtree(copy)
    return False


def test_an_interrupted_certutil_write_does_not_break_later_installs(pki, tmp_path: Path) -> None:  # noqa: F811
    require("certutil")
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    home = tmp_path / "home"
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True, capture_output=True)
    other = tmp_path / "other.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tmp_path / "k.pem"), "-subj", "/CN=other", "-days", "3", "-out", str(other)],
                   check=True, capture_output=True)
    if not _interrupted_write(db, other):
        pytest.skip("no kill landed inside certutil's transaction on this NSS version")
    assert (db / "cert9.db-journal").exists()
    status = trust("status", "--nss", "--json", home=home, ca_dir=pki.issuing)
    assert status.returncode in (0, 1) and "bad database" not in status.stdout + status.stderr, status
    added = trust("install", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True)
    assert outcomes(added) == {str(db): "added"}
    listed = nss_listing(db)
    assert pki.anchor.nickname in listed and "half" not in listed  # the killed write was rolled back
