"""Round 35, issuing pipeline (the promise: nothing the user did not name is destroyed or left behind).

1. ``export-p12 FOLDER`` killed (SIGKILL) while writing left ``.FOLDER.PID-RANDOM.certkit-tmp`` beside the folder: a
   whole copy of the bundle, its private key included (a hard link), since it swapped the folder whole to add one
   file. ``certkit list`` and ``certkit check`` never removed it (no inventory row names it), nor did ``rm -r
   FOLDER``: a key the user retired stayed on disk under a hidden name. Now bundle.p12 is written alone, a private
   temporary file in the folder renamed into place; a kill leaves no copy of the bundle anywhere.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from conftest import run_certkit
from integrity_helpers import interrupt, spki, start_paused, temporaries_under

P12 = "p12-password-35"


def _key_copies(root: Path, key_der: bytes, allowed: Path) -> list[Path]:
    """Every file below ``root`` but in ``allowed`` that is a PEM private key equal to ``key_der``."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and allowed not in path.parents and b"PRIVATE KEY" in (
                data := path.read_bytes()):
            try:
                key = serialization.load_pem_private_key(data, None)
            except (ValueError, TypeError):
                continue
            if spki(key) == key_der:
                found.append(path)
    return found


@pytest.mark.parametrize("force", [False, True])
def test_export_p12_killed_while_writing_leaves_no_copy_of_the_bundle_beside_its_folder(ca_dir, ca_env, tmp_path,
                                                                                          force):
    env = dict(ca_env, CERTKIT_P12_PASSWORD=P12)
    run_certkit("issue-server", "web.test", "--out", "web", cwd=tmp_path, env=env, check=True)
    if force:
        run_certkit("export-p12", "web", cwd=tmp_path, env=env, check=True)
    old_p12 = (tmp_path / "web" / "bundle.p12").read_bytes() if force else None
    key = serialization.load_pem_private_key((tmp_path / "web" / "privkey.pem").read_bytes(), None)
    args = ["export-p12", "web", *(["--force"] if force else [])]
    proc = start_paused(args, env, tmp_path, "staged", tmp_path / "pause")
    interrupt(proc, signal.SIGKILL, tmp_path / "pause")
    run_certkit("list", env=env, check=True)
    run_certkit("check", env=env, check=True)

    beside = sorted(p.name for p in tmp_path.iterdir() if p.name not in ("web", "ca", "pause"))
    assert beside == [], beside  # was ['.web.PID-RANDOM.certkit-tmp'], holding privkey.pem
    assert _key_copies(tmp_path, spki(key), tmp_path / "web") == []
    # the bundle as it was: its files, and the old bundle.p12 (or none) untouched
    names = {p.name for p in (tmp_path / "web").iterdir() if not p.name.startswith(".")}
    assert names == {"cert.pem", "privkey.pem", "fullchain.pem", "ca.pem"} | ({"bundle.p12"} if force else set())
    if force:
        assert (tmp_path / "web" / "bundle.p12").read_bytes() == old_p12

    again = run_certkit("export-p12", "web", "--force", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert not temporaries_under(tmp_path), temporaries_under(tmp_path)
    assert oct((tmp_path / "web" / "bundle.p12").stat().st_mode & 0o777) == "0o600"
    read = subprocess.run(["openssl", "pkcs12", "-in", str(tmp_path / "web" / "bundle.p12"), "-passin", f"pass:{P12}",
                           "-nodes"], capture_output=True, text=True)
    assert read.returncode == 0, read.stderr
    assert (tmp_path / "web" / "cert.pem").read_text().strip() in read.stdout
    # the folder removed, no copy of its key is left anywhere
    subprocess.run(["rm", "-r", str(tmp_path / "web")], check=True)
    assert _key_copies(tmp_path, spki(key), tmp_path / "web") == []
