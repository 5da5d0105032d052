"""Round fourteen, small findings (helper ``smalls``).

1. verify of a leaf alone whose chain certkit completed from the CA directory says so in a note.
2. A keyCompromise row whose certificate cannot be read is never skipped: no key is certified until it
   is restored (the damaged row might hold that very key).
3. Kubernetes Secret names from non-ASCII names are distinct and stable.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

from conftest import assert_clean_error, run_certkit


def _csr(key: Path, out: Path) -> Path:
    subprocess.run(["openssl", "req", "-new", "-key", str(key), "-subj", "/CN=www.example", "-out", str(out)],
                   check=True, capture_output=True)
    return out


def test_a_damaged_keycompromise_row_refuses_certifying_any_key(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    run_certkit("issue-server", "www.example", "--out", tmp_path / "www", env=ca_env, check=True)
    run_certkit("revoke", tmp_path / "www", "--reason", "keyCompromise", env=ca_env, check=True)
    with sqlite3.connect(ca_dir / "inventory.sqlite3") as db:
        serial = db.execute("SELECT serial FROM certificates WHERE revocation_reason = 'keyCompromise'").fetchone()[0]
        db.execute("UPDATE certificates SET der = X'3000' WHERE serial = ?", (serial,))
    db.close()
    csr = _csr(tmp_path / "www" / "privkey.pem", tmp_path / "again.csr")
    proc = run_certkit("sign-csr", csr, "--server", "--out", tmp_path / "again", env=ca_env)
    assert_clean_error(proc, serial)
    assert "keyCompromise" in proc.stderr, proc.stderr
    assert not (tmp_path / "again").exists()
