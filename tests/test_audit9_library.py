"""The library API after audit library7 (/work/audit/library7.md), each finding as a class:

1. ``save_new`` refuses a CA that is stored already (opened from a directory, saved once by the same object, or
   held by the directory its parent's inventory records or by the default CA directory): a CA directory is
   copied with its inventory, never re-created (a fork that restarts CRL numbers and forgets revocations);
2. ``CA(cert, key, inventory=...)`` refuses another CA's inventory, and ``Inventory()`` a location that is no
   path or URL;
3. an intermediate made with ``CA.create(parent=..., directory=D)`` and saved elsewhere is recorded where it
   is (valid, that folder), and the parent can revoke a CA certificate its inventory settled as abandoned;
4. text that is not UTF-8 (a lone surrogate, as os.environ gives) is refused with a CertkitError before
   anything is written, by every call that takes a name, a folder, a CSR text or a passphrase;
5. an empty folder or CA directory ("", an unset variable) is refused, not taken as here or the default CA;
6. ``write(extra=...)`` refuses names with control characters, in the folder check's words;
7. ``CA.create``'s ``directory`` is checked before anything is signed;
8. ``FolderTarget(p12=True)`` with nothing to make the bundle.p12 is refused, saying how;
9. error classes as documented (a bad reason InvalidArgument, a CRL lifetime InvalidLifetime), a byte that was
   not UTF-8 shown as \\xNN, and ``ca.renew(ca.cert)`` told that a CA certificate is renewed with init-ca.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import pytest

from certkit import CA, CADirectory, CertkitError
from certkit.errors import CAExists, CannotRenew, InvalidArgument, InvalidLifetime, UnsafeOutputPath, WrongType
from certkit.inventory import Inventory
from certkit.issuing import FolderTarget, deliver, server_request
from certkit.vocabulary import serial_hex

from conftest import PASSPHRASE

SECRET = PASSPHRASE.encode()
NOT_UTF8 = "\udcff"  # the byte 0xff of a Latin-1 name, as os.environ and sys.argv give it


@pytest.fixture
def home(tmp_path: Path, ca_template: Path, monkeypatch) -> Path:
    """A CA directory (a copy of the session's) as $CERTKIT_CA_DIR, a home of this test's own, and the
    test's folder as the current one."""
    shutil.copytree(ca_template, tmp_path / "ca")
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("CERTKIT_CA_DIR", str(tmp_path / "ca"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.delenv("CERTKIT_INVENTORY_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def rows(ca: CA) -> dict[str, dict]:
    return {row["serial"]: row for row in ca.inventory.rows()}


# --- 1. a CA is stored once ---------------------------------------------------------------------------------
def test_save_new_refuses_a_ca_that_is_stored_already(home: Path) -> None:
    loaded = CADirectory().load(SECRET)
    with pytest.raises(CAExists, match=r"stored already, in .*a CA directory is copied with its inventory \(cp -a"):
        CADirectory(home / "copy").save_new(loaded, SECRET)
    # The same certificate and key in a new object: the default CA directory holds it.
    with pytest.raises(CAExists, match="copied with its inventory"):
        CADirectory(home / "copy").save_new(CA(loaded.cert, loaded.key), SECRET)
    # One in-memory CA saved twice would be two live directories of one CA.
    fresh = CA.create("Saved once")
    CADirectory(home / "one").save_new(fresh, SECRET)
    with pytest.raises(CAExists, match=r"in .*one: a CA directory is copied"):
        CADirectory(home / "two").save_new(fresh, SECRET)
    # An intermediate whose parent records it in a directory that holds it.
    inter = CA.create("Saved inter", parent=loaded, directory=home / "inter")
    CADirectory(home / "inter").save_new(inter, SECRET, parent=loaded)
    with pytest.raises(CAExists, match=r"in .*inter: a CA directory is copied"):
        CADirectory(home / "inter2").save_new(CA(inter.cert, inter.key, inter.parents), SECRET, parent=loaded)
    assert not any((home / name).exists() for name in ("copy", "two", "inter2"))


# --- 2. a CA records only in its own inventory --------------------------------------------------------------
def test_a_ca_refuses_the_inventory_of_another_ca(home: Path) -> None:
    theirs = CADirectory().inventory
    before = theirs.count()
    other = CA.create("Other CA")
    with pytest.raises(InvalidArgument, match=r"belongs to another CA.*not the inventory of CN=Other CA"):
        CA(other.cert, other.key, inventory=theirs)
    assert theirs.count() == before
    own = CADirectory().load(SECRET)
    assert CA(own.cert, own.key, inventory=theirs).inventory is theirs
    for location in (5, b"inventory.sqlite3", None):
        with pytest.raises(WrongType, match="^location must be"):
            Inventory(location)
    with pytest.raises(InvalidArgument, match="^location must be"):
        Inventory(f"inv{NOT_UTF8}.sqlite3")


# --- 3. an intermediate is recorded where it is, and its parent can always revoke it ---------------------------
def test_an_intermediate_saved_elsewhere_is_recorded_there_and_stays_revocable(home: Path) -> None:
    root = CADirectory().load(SECRET)
    inter = CA.create("Inter elsewhere", parent=root, directory=home / "planned")
    serial = serial_hex(inter.cert.serial_number)
    assert rows(root)[serial]["status"] == "pending"
    CADirectory(home / "elsewhere").save_new(inter, SECRET)  # no parent=: the CA knows who records it
    row = rows(root)[serial]
    assert (row["status"], row["folder"]) == ("valid", str(home / "elsewhere"))
    assert root.revoke(serial, "cACompromise")["status"] == "revoked"
    # Never saved (used in memory): settled abandoned once its process is gone, yet its key exists.
    kept = CA.create("Inter in memory", parent=root, directory=home / "never")
    kept_serial = serial_hex(kept.cert.serial_number)
    root.inventory.mark_abandoned([kept_serial])
    assert rows(root)[kept_serial]["status"] == "abandoned"
    assert root.revoke(kept_serial, "cACompromise")["status"] == "revoked"
    crl = root.crl()
    assert crl.get_revoked_certificate_by_serial_number(kept.cert.serial_number) is not None


# --- 4. text that is not UTF-8 ----------------------------------------------------------------------------------
def _not_utf8_calls(home: Path):
    memory = CA.create("Memory CA")
    issued = memory.issue_server("a.example")
    return {
        "issue_client": lambda: memory.issue_client(NOT_UTF8),
        "CA.create": lambda: CA.create(f"CA {NOT_UTF8}"),
        "organization": lambda: CA.create("CA", organization=NOT_UTF8),
        "organizational_unit": lambda: CA.create("CA", organizational_unit=NOT_UTF8),
        "issue_server": lambda: memory.issue_server(f"a{NOT_UTF8}.example"),
        "emails": lambda: memory.issue_client("alice", emails=[f"a{NOT_UTF8}@x.example"]),
        "sign_csr": lambda: memory.sign_csr("-----BEGIN CERTIFICATE REQUEST-----\n" + NOT_UTF8, "server"),
        "save_new": lambda: CADirectory(home / "s").save_new(CA.create("New CA"), f"pass{NOT_UTF8}phrase"),
        "unlock": lambda: CADirectory().open().unlock(f"pass{NOT_UTF8}phrase"),
        "write": lambda: CADirectory().load(SECRET).issue_server("w.example").write(f"f{NOT_UTF8}"),
        "write memory": lambda: issued.write(f"m{NOT_UTF8}"),
        "extra": lambda: issued.write("x", extra={f"e{NOT_UTF8}": b"x"}),
        "FolderTarget": lambda: deliver(CADirectory().load(SECRET), server_request("g.example"),
                                        FolderTarget(f"g{NOT_UTF8}")),
    }


@pytest.mark.parametrize("call", ["issue_client", "CA.create", "organization", "organizational_unit", "issue_server",
                                  "emails", "sign_csr", "save_new", "unlock", "write", "write memory", "extra",
                                  "FolderTarget"])
def test_text_that_is_not_utf8_is_refused_before_anything_is_written(home: Path, call: str) -> None:
    before = sorted(os.listdir(home))
    count = CADirectory().inventory.count()
    calls = _not_utf8_calls(home)
    with pytest.raises(CertkitError, match=r"not UTF-8 text"):
        calls[call]()
    assert sorted(os.listdir(home)) == before
    assert CADirectory().inventory.count() == count + (1 if call == "write" else 0)  # issued to memory first
    if call == "write":  # recorded as issued to memory, never as written to a folder it could not name
        assert all(row["folder"] is None for row in CADirectory().inventory.rows())


# --- 5. an empty folder or CA directory -------------------------------------------------------------------------
def test_an_empty_folder_or_ca_directory_is_refused(home: Path, monkeypatch) -> None:
    issued = CA.create("Empty CA").issue_server("a.example")
    for call in (lambda: issued.write(""), lambda: FolderTarget(""), lambda: CADirectory(""),
                 lambda: CADirectory("").save_new(CA.create("Y"), None)):
        with pytest.raises(InvalidArgument, match=r"empty \(an unset variable\?\)"):
            call()
    with pytest.raises(InvalidArgument, match="blank"):
        issued.write("  ")
    monkeypatch.delenv("CERTKIT_CA_DIR")
    with pytest.raises(InvalidArgument, match=r"empty \(an unset variable\?\)"):
        CADirectory("").save_new(CA.create("Y"), None)
    assert not (home / "cert.pem").exists() and not (home / "home" / ".local").exists()


# --- 6. extra names with control characters -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tls.key\n", "a\x1b[31mred", "a\rb", "a\x7fb", "a\x85b", "a\u2028b"])
def test_extra_names_with_control_characters_are_refused(home: Path, name: str) -> None:
    issued = CA.create("Extra CA").issue_server("a.example")
    with pytest.raises(UnsafeOutputPath, match="contains a control character; certkit does not create names that "
                                               "break tools reading paths a line at a time"):
        issued.write(home / "web", extra={name: b"x"})
    assert not (home / "web").exists()


# --- 7. CA.create's directory -------------------------------------------------------------------------------------
def test_create_checks_its_directory_before_signing(home: Path) -> None:
    root = CADirectory().load(SECRET)
    count = root.inventory.count()
    for directory in (5, b"x", ["x"]):
        with pytest.raises(WrongType, match="^directory must be a str or a Path"):
            CA.create("Inter", parent=root, directory=directory)
        with pytest.raises(WrongType, match="^directory must be a str or a Path"):
            CA.create("Root", directory=directory)
    with pytest.raises(InvalidArgument, match=r"directory is empty \(an unset variable\?\)"):
        CA.create("Inter", parent=root, directory="")
    assert root.signed_cas == [] and root.inventory.count() == count


# --- 8. FolderTarget(p12=True) ------------------------------------------------------------------------------------
def test_folder_target_p12_without_a_way_to_make_it_is_refused(home: Path) -> None:
    ca = CADirectory().load(SECRET)
    count = ca.inventory.count()
    with pytest.raises(InvalidArgument, match=r"writes no bundle\.p12 by itself: pass extra=.*issued_pkcs12"):
        deliver(ca, server_request(["p.example"]), FolderTarget(home / "p", p12=True))
    assert not (home / "p").exists() and ca.inventory.count() == count
    from certkit.pkcs12 import issued_pkcs12

    made = FolderTarget(home / "q", p12=True, extra=lambda issued: {"bundle.p12": issued_pkcs12(issued, b"pw pw pw")})
    delivery = deliver(ca, server_request(["q.example"]), made)
    assert "bundle.p12" in [p.name for p in delivery.files]


# --- 9. error classes and words -----------------------------------------------------------------------------------
def test_mistakes_get_the_documented_classes_and_words(home: Path) -> None:
    ca = CADirectory().load(SECRET)
    issued = ca.issue_server("r.example")
    issued.write(home / "r")
    with pytest.raises(InvalidArgument, match="is not a revocation reason"):
        ca.revoke(issued.serial_hex, "bogus")
    with pytest.raises(WrongType, match="A revocation reason is a name"):
        ca.revoke(issued.serial_hex, 5)
    with pytest.raises(InvalidArgument, match="is in the future"):
        ca.revoke(issued.serial_hex, when=dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    for days in (0, 100000):
        with pytest.raises(InvalidLifetime, match="CRL valid for"):
            ca.crl(days=days)
    with pytest.raises(InvalidArgument, match=r"Unknown key type '\\xff'"):
        ca.renew(issued, rekey=True, key_type=NOT_UTF8)
    with pytest.raises(CertkitError, match=r"'a\\xff\.example'"):
        CA.create("Shown CA").issue_server(f"a{NOT_UTF8}.example")
    memory = CA.create("Own CA")
    inter = CA.create("Own inter", parent=memory)
    for owner, cert in ((ca, ca.cert), (memory, memory.cert), (inter, inter.cert), (memory, inter.cert)):
        with pytest.raises(CannotRenew, match="a CA certificate is renewed with 'certkit init-ca'"):
            owner.renew(cert)


def test_the_default_ca_name_of_a_login_name_that_is_not_utf8(home: Path, monkeypatch) -> None:
    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(variable, f"al{NOT_UTF8}ice")
    name = CA.create().common_name
    assert name.startswith("certkit CA alice@")
