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


# --- finding 3: threads sharing the bundle lock file's descriptor --------------------------------------
def test_threads_writing_bundles_of_one_ca_directory_never_close_each_others_descriptor(tmp_path):
    import os
    import threading

    from certkit.store import CADirectory

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Threads", "--key-type", "ecdsa-p256", env=env, cwd=tmp_path, check=True)
    ca = CADirectory(str(tmp_path / "ca")).load(PASSPHRASE)
    certs = [ca.issue_server(f"t{i}.example") for i in range(80)]
    errors: list[str] = []
    start = threading.Barrier(8)

    def writer(mine):
        start.wait()
        for issued in mine:
            try:
                issued.write(str(tmp_path / issued.cert.subject.rfc4514_string()[3:]))
            except Exception as exc:  # noqa: BLE001 - every failure is the finding
                errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=writer, args=(certs[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    for issued in certs:
        folder = tmp_path / issued.cert.subject.rfc4514_string()[3:]
        assert sorted(os.listdir(folder)) == ["ca.pem", "cert.pem", "fullchain.pem", "privkey.pem"]
        assert (folder / "cert.pem").read_bytes() == issued.cert_pem
        row = ca.inventory.get(issued.serial_hex)
        assert row["status"] == "valid" and row["folder"] == str(folder)


def test_threads_holding_bundle_folders_of_one_ca_directory_share_its_lock_file_safely(tmp_path):
    """The unit under ``write()``/``deliver()``, hammered: on the old code most threads died of EBADF at once."""
    import threading

    from certkit.bundle_locks import folders_held

    (tmp_path / "ca").mkdir()
    errors: list[str] = []
    start = threading.Barrier(8)

    def holder(i):
        start.wait()
        for _ in range(1500):
            try:
                with folders_held(tmp_path / "ca", [tmp_path / f"f{i}"]):
                    pass
            except Exception as exc:  # noqa: BLE001 - every failure is the finding
                errors.append(repr(exc))
                return

    threads = [threading.Thread(target=holder, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
