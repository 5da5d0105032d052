"""The thirteenth round's library findings (audit library11), through the library's own entry points:

1. IssuedCert.write() of a CA-directory certificate records the folder (pending) before the bundle is placed and
   settles it after: an inventory locked too long leaves a row the next command settles, and the error says the
   bundle was written whole (no "try again" that OutputExists then refuses);
3. threads of one process writing over one folder are kept apart: the record matches the sequential case.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import PASSPHRASE, certkit_env, run_certkit


@pytest.fixture
def ca(tmp_path: Path):
    from certkit.store import CADirectory

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path))
    run_certkit("init-ca", "--name", "Lib Root", env=env, check=True)
    return CADirectory(tmp_path / "ca").load(PASSPHRASE.encode())


def _env(tmp_path: Path) -> dict[str, str]:
    return certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path))


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@contextmanager
def _locked(tmp_path: Path):
    """Another process holding the inventory's write lock (a long issue-batch, say)."""
    holder = subprocess.Popen([sys.executable, "-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1], "
                               "isolation_level=None); c.execute('BEGIN IMMEDIATE'); print('held', flush=True); "
                               "sys.stdin.read()", str(tmp_path / "ca" / "inventory.sqlite3")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        yield
    finally:
        holder.stdin.close()
        holder.wait(10)


# --- 1. the folder recorded before the bundle is placed --------------------------------------------------------
def test_write_with_the_inventory_locked_records_the_folder_and_says_so(tmp_path: Path, ca) -> None:
    from certkit.errors import InventoryError, OutputExists

    issued = ca.issue_server("lk.example")
    ca.inventory.db.busy_timeout = 1.0
    # Locked from the start: refused before anything is placed, and "try again" is true.
    with _locked(tmp_path):
        with pytest.raises(InventoryError, match="try again"):
            issued.write(tmp_path / "lk")
    assert not (tmp_path / "lk").exists() and ca.inventory.get(issued.serial_hex)["folder"] is None
    # Locked once the bundle is placed (another certkit process's long transaction lands just then).
    held = []
    settle = issued.recorder.after

    def locked_after(*args):
        held.append(_locked(tmp_path))
        held[0].__enter__()
        return settle(*args)

    issued.recorder.after = locked_after
    try:
        with pytest.raises(InventoryError) as caught:
            issued.write(tmp_path / "lk")
    finally:
        held[0].__exit__(None, None, None)
        issued.recorder.after = settle
    assert "was written whole" in str(caught.value) and "do not write it again" in str(caught.value)
    assert (tmp_path / "lk" / "cert.pem").exists()
    row = ca.inventory.get(issued.serial_hex)
    assert row["status"] == "pending" and row["folder"] == str(tmp_path / "lk") and row["sink"] == "folder"
    with pytest.raises(OutputExists):
        issued.write(tmp_path / "lk")
    # Once this writer is gone (as after a Ctrl-C that ends the program), the next command settles it valid.
    from certkit.inventory.reconcile import writer_id

    dead = writer_id(_dead_pid())
    with ca.inventory.transaction(write=True) as tx:
        tx.execute("UPDATE certificates SET writer = ? WHERE serial = ?", (dead, issued.serial_hex))
    listed = run_certkit("list", "--json", env=_env(tmp_path), check=True).stdout
    assert '"status": "valid"' in listed and str(tmp_path / "lk") in listed


def test_write_that_fails_before_placing_leaves_the_row_in_memory(tmp_path: Path, ca) -> None:
    from certkit.errors import CertkitError

    issued = ca.issue_server("f.example")
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "cert.pem").write_bytes(b"someone else's")
    with pytest.raises(CertkitError):
        issued.write(tmp_path / "f")
    row = ca.inventory.get(issued.serial_hex)
    assert (row["status"], row["folder"], row["sink"]) == ("valid", None, "memory")
    issued.write(tmp_path / "g")
    row = ca.inventory.get(issued.serial_hex)
    assert (row["status"], row["folder"], row["sink"]) == ("valid", str(tmp_path / "g"), "folder")


# --- 3. threads writing over one folder ------------------------------------------------------------------------
def test_threads_writing_over_one_folder_record_one_succession(tmp_path: Path, ca) -> None:
    folder = tmp_path / "api"
    ca.issue_server("api.example").write(folder)
    certs = [ca.issue_server("api.example") for _ in range(4)]
    start, errors = threading.Barrier(4), []

    def write(cert) -> None:
        start.wait()
        try:
            cert.write(folder, force=True)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(c,)) for c in certs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rows = ca.inventory.rows("WHERE status = 'valid' AND folder = ?", [os.path.abspath(folder)])
    due = [r for r in rows if not ca.inventory.successors(r["serial"])]
    assert len(due) == 1, [(r["serial"], r["renewed_from"]) for r in rows]


# --- 2, 6. a CA object whose directory now holds another CA --------------------------------------------------
def test_a_stale_ca_signs_no_intermediate_and_says_load_again(tmp_path: Path, ca) -> None:
    import shutil

    from certkit.ca import CA
    from certkit.errors import CABroken

    server = ca.issue_server("t.example")
    shutil.rmtree(tmp_path / "ca")
    run_certkit("init-ca", "--name", "Other CA", env=_env(tmp_path), check=True)
    for call in (lambda: CA.create("child", parent=ca), lambda: ca.renew(server), lambda: ca.crl(),
                 lambda: ca.issue_server("x.example")):
        with pytest.raises(CABroken, match=r"now holds another CA .*Load the CA again"):
            call()
    listed = run_certkit("list", "--json", env=_env(tmp_path), check=True).stdout
    assert '"count": 0' in listed
    assert run_certkit("crl", "--out", str(tmp_path / "crl.pem"), env=_env(tmp_path)).returncode == 0


# --- 5. a revoked certificate is not handed out as files nor presented in a TLS context -------------------------
def test_a_revoked_certificate_goes_into_no_files_and_no_context(tmp_path: Path, ca) -> None:
    import ssl

    from certkit.errors import AlreadyRevoked
    from certkit.issuing import FolderTarget, deliver, server_request

    server, bob = ca.issue_server("localhost"), ca.issue_client("bob")
    delivered = deliver(ca, server_request(["d.example"]), FolderTarget(tmp_path / "d")).issued
    for cert in (server, bob, delivered):
        ca.revoke(cert.serial_hex, "keyCompromise")
    calls = [lambda: bob.files().__enter__(), lambda: delivered.files().__enter__(),
             lambda: ca.server_context(server), lambda: ca.client_context(bob), lambda: ca.server_context(delivered),
             lambda: bob.configure_cert(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))]
    for call in calls:
        with pytest.raises(AlreadyRevoked, match="was revoked on .*keyCompromise"):
            call()
    fresh = ca.issue_client("carol")
    with fresh.files() as paths:
        assert paths.key.stat().st_mode & 0o777 == 0o600
    assert isinstance(ca.client_context(fresh), ssl.SSLContext)


# --- 7. export_folder and Inventory.get take what the CLI and revoke() take -------------------------------------
def test_export_folder_and_inventory_get_answer_in_their_own_words(tmp_path: Path, ca, monkeypatch) -> None:
    import certkit.pkcs12 as p12
    from certkit.errors import UnsafeOutputPath, WrongType

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsafeOutputPath, match="has a name of 300 bytes.*at most 255 bytes"):
        p12.export_folder("x" * 300, b"pw")
    issued = ca.issue_server("a.example")
    for serial in (issued.serial_hex, issued.serial_hex.lower(), issued.cert.serial_number,
                   ":".join(issued.serial_hex[i:i + 2] for i in range(0, len(issued.serial_hex), 2))):
        assert ca.inventory.get(serial)["serial"] == issued.serial_hex
    for absent in ("\udcff", "not hex", 0, -5, "0" * 10):
        assert ca.inventory.get(absent) is None
    with pytest.raises(WrongType):
        ca.inventory.get(b"AB")


# --- 4. save_new interrupted once the intermediate's directory is in place -------------------------------------
@pytest.mark.parametrize("planned", [True, False])
def test_save_new_interrupted_after_placing_keeps_the_intermediate_valid(tmp_path: Path, ca, planned: bool) -> None:
    import inspect

    from certkit.ca import CA
    from certkit.store import CADirectory

    where = tmp_path / "issuing"
    child = CA.create("Issuing CA", parent=ca, directory=where if planned else None)
    source, first = inspect.getsourcelines(CADirectory._write_new)
    line = first + next(i for i, text in enumerate(source) if text.strip().startswith("return [self.path"))

    def ctrl_c(frame, event, arg):
        if frame.f_code is CADirectory._write_new.__code__ and event == "line" and frame.f_lineno == line:
            raise KeyboardInterrupt
        return ctrl_c

    sys.settrace(lambda frame, event, arg: ctrl_c if frame.f_code is CADirectory._write_new.__code__ else None)
    try:
        with pytest.raises(KeyboardInterrupt):
            CADirectory(where).save_new(child, PASSPHRASE.encode(), parent=ca)
    finally:
        sys.settrace(None)
    assert (where / "ca.pem").exists()
    row = ca.inventory.get(child.cert.serial_number)
    assert (row["status"], row["folder"], row["sink"]) == ("valid", str(where), "ca-dir")


# --- 8. an interruption that lands while a delivery is marked, in a process that lives on -----------------------
@pytest.mark.parametrize("to_folder", [False, True])
def test_an_interrupt_while_marking_settles_the_row_at_once(tmp_path: Path, ca, to_folder: bool) -> None:
    from certkit.issuing import FolderTarget, client_request, deliver

    def ctrl_c(frame, event, arg):  # Ctrl-C arriving while the delivery is being marked valid
        if frame.f_code.co_name == "revoke_compromised":  # called for every row marked
            raise KeyboardInterrupt

    sys.settrace(ctrl_c)
    try:
        with pytest.raises(KeyboardInterrupt):
            if to_folder:
                deliver(ca, client_request("alice"), FolderTarget(tmp_path / "alice"))
            else:
                ca.issue_client("alice")
    finally:
        sys.settrace(None)
    rows = ca.inventory.rows("")
    assert [r["status"] for r in rows] == ["valid" if to_folder else "abandoned"]
    if to_folder:
        assert rows[0]["folder"] == str(tmp_path / "alice") and (tmp_path / "alice" / "cert.pem").exists()


def test_an_interrupt_while_write_marks_the_row_settles_it(tmp_path: Path, ca) -> None:
    issued = ca.issue_client("bob")

    def ctrl_c(frame, event, arg):
        if frame.f_code.co_name == "revoke_compromised":  # called for every row marked
            raise KeyboardInterrupt

    sys.settrace(ctrl_c)
    try:
        with pytest.raises(KeyboardInterrupt):
            issued.write(tmp_path / "bob")
    finally:
        sys.settrace(None)
    row = ca.inventory.get(issued.serial_hex)
    assert (row["status"], row["folder"]) == ("valid", str(tmp_path / "bob"))
