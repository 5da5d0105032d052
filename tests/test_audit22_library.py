"""Audit round twenty-two, the library against docs/library.md.

1. ``ca.inventory.get(serial)`` of a CA object loaded before ``certkit inventory migrate`` read the old
   SQLite file, a backup of the day it moved: a client certificate revoked (keyCompromise) in PostgreSQL
   since was answered ``"valid"``. docs/library.md tells a server made with ``ca.server_context()`` to check
   ``ca.inventory.get(serial)["status"]`` of each peer after the handshake, so that server let a revoked
   client in. Reading the moved file now refuses (``CABroken``: load the CA again), as signing through the
   object and every command do.
2. ``ca.revoke()`` through a CA object whose directory was moved, deleted or made again for another CA
   refused with "...; nothing was signed. Load the CA again.": a revocation signs nothing, so the sentence
   left open whether the certificate was revoked. It now says "nothing was revoked".
"""

from __future__ import annotations

import pytest

from conftest import PASSPHRASE, certkit_env, run_certkit


# --- finding 1: the inventory read of an object loaded before the inventory moved -----------------------
def test_the_inventory_of_an_object_loaded_before_the_move_does_not_answer_from_the_backup(tmp_path, postgres_url):
    from certkit.errors import CABroken
    from certkit.store import CADirectory

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Moving CA", env=env, cwd=tmp_path, check=True, subprocess=True)
    ca = CADirectory(str(tmp_path / "ca")).open()
    ca.unlock(PASSPHRASE)
    client = ca.issue_client("alice")
    assert ca.inventory.get(client.serial_hex)["status"] == "valid"
    run_certkit("inventory", "migrate", "--to", postgres_url, env=env, cwd=tmp_path, check=True, subprocess=True)
    run_certkit("revoke", client.serial_hex, "--reason", "keyCompromise", env=env, cwd=tmp_path, check=True,
                subprocess=True)
    # What the command line says of it: revoked.
    listed = run_certkit("list", "--json", env=env, cwd=tmp_path, check=True, subprocess=True)
    assert '"revoked"' in listed.stdout
    for serial in (client.serial_hex, client.cert.serial_number):
        with pytest.raises(CABroken, match="moved to .*backup") as refused:
            row = ca.inventory.get(serial)
            pytest.fail(f"the backup answered {row and row['status']!r} for a certificate revoked since")
        assert "\n" not in str(refused.value)
    fresh = CADirectory(str(tmp_path / "ca")).open()
    assert fresh.inventory.get(client.serial_hex)["status"] == "revoked"


# --- finding 2: a revocation refused said "nothing was signed" ------------------------------------------
@pytest.mark.parametrize("change", ["moved", "made again"])
def test_a_revocation_refused_by_a_ca_whose_directory_went_says_nothing_was_revoked(tmp_path, change):
    import shutil

    from certkit.errors import CABroken
    from certkit.store import CADirectory

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Going CA", env=env, cwd=tmp_path, check=True, subprocess=True)
    ca = CADirectory(str(tmp_path / "ca")).open()
    ca.unlock(PASSPHRASE)
    server = ca.issue_server("going.example")
    shutil.move(tmp_path / "ca", tmp_path / "elsewhere")
    if change == "made again":
        run_certkit("init-ca", "--name", "Other CA", env=env, cwd=tmp_path, check=True, subprocess=True)
    with pytest.raises(CABroken) as refused:
        ca.revoke(server.serial_hex, "keyCompromise")
    assert "nothing was revoked" in str(refused.value) and "signed" not in str(refused.value)
    # and it was not: the CA where it went still has it valid
    moved = CADirectory(str(tmp_path / "elsewhere")).open()
    assert moved.inventory.get(server.serial_hex)["status"] == "valid"
