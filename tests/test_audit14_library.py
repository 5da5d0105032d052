"""Audit round fourteen, the library against the command line's contract (docs/library.md, SPEC.md).

1. A CA object loaded before ``certkit inventory migrate`` kept reading the old SQLite file, a backup of
   the day it moved: a certificate revoked (keyCompromise) in PostgreSQL since was handed out by
   ``files()``, ``server_context()``, ``client_context()``, ``issued_pkcs12()`` and ``write()``, as if
   valid. Every call that reads or records through the object now refuses (``CABroken``: load the CA
   again), as ``verify`` and every command refuse the moved file.
"""

from __future__ import annotations

import re
import ssl

import pytest

from conftest import PASSPHRASE, certkit_env, run_certkit


# --- finding 1: an object loaded before the inventory moved to PostgreSQL ----------------------------
def test_an_object_loaded_before_the_inventory_moved_hands_out_nothing_revoked_since(tmp_path, postgres_url):
    from certkit.errors import AlreadyRevoked, CABroken
    from certkit.pkcs12 import issued_pkcs12
    from certkit.store import CADirectory

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Moving CA", env=env, cwd=tmp_path, check=True, subprocess=True)
    ca = CADirectory(str(tmp_path / "ca")).open()
    ca.unlock(PASSPHRASE)
    server = ca.issue_server("moved.example")
    server.write(str(tmp_path / "www"))
    client = ca.issue_client("alice")
    run_certkit("inventory", "migrate", "--to", postgres_url, env=env, cwd=tmp_path, check=True, subprocess=True)
    for serial in (server.serial_hex, client.serial_hex):
        run_certkit("revoke", serial, "--reason", "keyCompromise", env=env, cwd=tmp_path, check=True,
                    subprocess=True)
    # The peers' verdict, through the command line: revoked.
    verdict = run_certkit("verify", tmp_path / "www", "--purpose", "server", env=env, cwd=tmp_path, subprocess=True)
    assert verdict.returncode == 1 and "NOT VALID" in verdict.stdout

    handing_out = {
        "files": lambda: server.files().__enter__(),
        "server_context": lambda: ca.server_context(server),
        "client_context": lambda: ca.client_context(client),
        "issued_pkcs12": lambda: issued_pkcs12(server, b"a password"),
        "write": lambda: server.write(str(tmp_path / "again")),
        "renew": lambda: ca.renew(server),
        "issue_server": lambda: ca.issue_server("new.example"),
        "revoke": lambda: ca.revoke(server.serial_hex),
        "crl": lambda: ca.crl(),
    }
    for name, call in handing_out.items():
        with pytest.raises(CABroken, match="moved to .*Load the CA again") as refused:
            got = call()
            if isinstance(got, ssl.SSLContext):
                pytest.fail(f"{name} gave a context presenting a revoked certificate")
        assert "\n" not in str(refused.value), name
    assert not (tmp_path / "again").exists()
    # Loaded again, the CA reads PostgreSQL: the revocation is known.
    fresh = CADirectory(str(tmp_path / "ca")).open()
    fresh.unlock(PASSPHRASE)
    assert fresh.inventory.get(server.serial_hex)["status"] == "revoked"
    with pytest.raises(AlreadyRevoked):
        fresh.revoke(server.serial_hex)
    assert isinstance(fresh.server_context(fresh.issue_server("new.example")), ssl.SSLContext)


# --- finding 2: a CA key that is no file was called missing ---------------------------------------------
@pytest.mark.parametrize("what", ["folder", "device link"])
def test_a_ca_key_that_is_no_file_is_named_for_what_it_is(tmp_path, what):
    import os

    from certkit.errors import CABroken
    from certkit.store import CADirectory

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Keyless", env=env, cwd=tmp_path, check=True)
    key = tmp_path / "ca" / "ca-key.pem"
    key.unlink()
    os.mkdir(key) if what == "folder" else os.symlink("/dev/zero", key)
    said = "a folder, not a file" if what == "folder" else \
        "a device or other special file (a symbolic link to /dev/zero)"
    with pytest.raises(CABroken, match="ca-key.pem is " + re.escape(said)):
        CADirectory(str(tmp_path / "ca")).load(PASSPHRASE)
    issued = run_certkit("issue-server", "k.example", "--out", tmp_path / "k", env=env, cwd=tmp_path)
    assert issued.returncode == 1 and "missing" not in issued.stderr and said in issued.stderr, issued.stderr
    assert issued.stderr.count("\n") == 1 and not (tmp_path / "k").exists()
    checked = run_certkit("check", env=env, cwd=tmp_path)
    assert checked.returncode == 1 and f"ca-key.pem is {said}" in checked.stdout, checked.stdout
