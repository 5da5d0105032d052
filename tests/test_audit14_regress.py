"""The fourteenth round's regress audit: siblings of round thirteen's fixes ("a read that failed once is taken
for nothing there", "a revoked certificate treated as valid", "--force writes over a file certkit reads").

1. An SQLite inventory in another CA's directory, named by $CERTKIT_INVENTORY_URL, was refused only when that
   CA's ca.pem could be read: unreadable, damaged or gone, the inventory took this CA's certificates (that CA
   could then sign no CRL, and this one could revoke nothing it issued). Its binding is asked instead.
2. export-p12 with no --ca-dir or $CERTKIT_CA_DIR packed a certificate that an intermediate of the per-user CA
   had revoked when that CA could not be opened (its inventory unreadable, its certkit-ca.json damaged, its
   folder unreadable): taken for "no CA to ask". A per-user CA above the certificate in its chain refuses now.

Unreadable files are tested with file modes in force: root without the capabilities that bypass them, as
tests/test_audit5.py does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_audit5 import obeying_modes

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit


def _run_obeying_modes(*args, env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*obeying_modes(), sys.executable, "-m", "certkit", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


# --- 1. another CA's SQLite inventory, its ca.pem unreadable, damaged or gone ---------------------------------
@pytest.mark.parametrize("damage", ["unreadable", "damaged", "removed"])
def test_another_cas_inventory_is_refused_when_its_ca_pem_cannot_be_read(tmp_path: Path, damage: str):
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    for name in ("A", "B"):
        run_certkit("init-ca", "--name", f"CA {name}", "--ca-dir", tmp_path / name, env=env, check=True)
    theirs = tmp_path / "B" / "ca.pem"
    if damage == "unreadable":
        theirs.chmod(0)
    elif damage == "damaged":
        theirs.write_text("not a certificate\n")
    else:
        theirs.unlink()
    wrong = dict(env, CERTKIT_INVENTORY_URL=str(tmp_path / "B" / "inventory.sqlite3"))
    try:
        proc = _run_obeying_modes("issue-server", "a.example.com", "--ca-dir", tmp_path / "A", "--out",
                                  tmp_path / "srv", env=wrong)
    finally:
        if theirs.exists():
            theirs.chmod(0o644)
    assert_clean_error(proc, "belongs to another CA")
    assert not (tmp_path / "srv").exists()
    import sqlite3

    with sqlite3.connect(tmp_path / "B" / "inventory.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM certificates").fetchone()[0] == 0
    # the CA's own inventory, named the same way, is still taken
    own = dict(env, CERTKIT_INVENTORY_URL=str(tmp_path / "A" / "inventory.sqlite3"))
    run_certkit("issue-server", "a.example.com", "--ca-dir", tmp_path / "A", "--out", tmp_path / "srv", env=own,
                check=True)
