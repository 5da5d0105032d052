"""Audit round twenty-four, the library against docs/library.md.

1. A CA object kept by a long-running process (``CADirectory(path).open()``) whose directory was then
   removed (or moved aside) and made again by ``certkit init-ca`` (another CA: a new certificate, a new key) read the
   new CA's inventory as its own: ``ca.inventory.get(serial)`` gave the other CA's certificate as "valid",
   ``rows()``, ``query()``, ``revoked()``, ``count()`` listed its rows, and ``ca.inventory.revoke()``,
   ``set_folder()``, ``record_pending()`` wrote there. Signing through the object was refused already
   (``check_still_home``); every inventory read and write of such an object is now refused too (``CABroken``,
   naming both CAs: load the CA again).
"""

from __future__ import annotations

import datetime as dt
import shutil

import pytest

from conftest import PASSPHRASE, certkit_env, run_certkit


def _made_again(tmp_path, *, aside: bool):
    """A CA object loaded from tmp_path/ca, which issued a certificate; the directory then made again for
    another CA, which issued one of its own. Returns (old object, its IssuedCert, the other CA's serial)."""
    from certkit.store import CADirectory

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Lib CA", env=env, cwd=tmp_path, check=True)
    ca = CADirectory(str(tmp_path / "ca")).open()
    ca.unlock(PASSPHRASE)
    mine = ca.issue_server("mine.example")
    if aside:
        (tmp_path / "ca").rename(tmp_path / "ca.old")
    else:
        shutil.rmtree(tmp_path / "ca")
    run_certkit("init-ca", "--name", "Lib CA", env=env, cwd=tmp_path, check=True)
    run_certkit("issue-server", "theirs.example", "--out", str(tmp_path / "theirs"), env=env, cwd=tmp_path,
                check=True)
    theirs = CADirectory(str(tmp_path / "ca")).open().inventory.query()[0]["serial"]
    return ca, mine, theirs


READS = {
    "get theirs": lambda inv, mine, theirs: inv.get(theirs),
    "get mine": lambda inv, mine, theirs: inv.get(mine),
    "certificate": lambda inv, mine, theirs: inv.certificate(theirs),
    "rows": lambda inv, mine, theirs: inv.rows(),
    "query": lambda inv, mine, theirs: inv.query(),
    "count": lambda inv, mine, theirs: inv.count(),
    "serials_starting": lambda inv, mine, theirs: inv.serials_starting(theirs[:8]),
    "successors": lambda inv, mine, theirs: inv.successors(theirs),
    "revoked": lambda inv, mine, theirs: inv.revoked(),
    "crl_contents": lambda inv, mine, theirs: inv.crl_contents(),
    "pending_count": lambda inv, mine, theirs: inv.pending_count(),
}


@pytest.mark.parametrize("aside", [True, False], ids=["moved aside", "removed"])
def test_an_object_whose_directory_was_made_again_reads_nothing_of_the_other_ca(tmp_path, aside):
    from certkit.errors import CABroken

    ca, issued, theirs = _made_again(tmp_path, aside=aside)
    mine = issued.serial_hex
    answered = {}
    for name, read in READS.items():
        try:
            answered[name] = read(ca.inventory, mine, theirs)
        except CABroken as exc:
            said = str(exc)
            assert "now holds another CA" in said and "Load the CA again" in said, said
            assert "\n" not in said
    assert not answered, f"the other CA's inventory answered as this CA's: {answered}"
    with pytest.raises(CABroken, match="now holds another CA"):
        ca.kind_of(issued.cert)


def test_an_object_whose_directory_was_made_again_writes_nothing_there(tmp_path):
    from certkit.errors import CABroken
    from certkit.inventory import Pending
    from certkit.store import CADirectory

    ca, _, theirs = _made_again(tmp_path, aside=False)
    other = CA_create_server()
    (tmp_path / "folder").mkdir()
    writes = {
        "revoke": lambda: ca.inventory.revoke(theirs, "keyCompromise"),
        "set_folder": lambda: ca.inventory.set_folder(theirs, tmp_path / "folder"),
        "record_pending": lambda: ca.inventory.record_pending([Pending(other, "server", sink="memory")]),
        "mark_issued": lambda: ca.inventory.mark_issued([theirs]),
        "mark_abandoned": lambda: ca.inventory.mark_abandoned([theirs]),
        "next_crl_number": lambda: ca.inventory.next_crl_number(),
        "ca.revoke": lambda: ca.revoke(theirs),
        "ca.crl": lambda: ca.crl(),
    }
    for name, write in writes.items():
        with pytest.raises(CABroken, match="now holds another CA"):
            write()
            pytest.fail(f"{name} went through")
    fresh = CADirectory(str(tmp_path / "ca")).open().inventory
    assert fresh.get(theirs)["status"] == "valid" and fresh.get(theirs)["folder"] == str(tmp_path / "theirs")
    assert fresh.count() == 1 and fresh.revoked() == []


def CA_create_server():
    from certkit import CA

    return CA.create("Elsewhere").issue_server("x.example").cert


def test_an_object_whose_directory_went_reads_nothing_and_one_rewritten_alike_reads_on(tmp_path):
    """A ca.pem written again with the same certificate is the same CA; a directory gone is said as gone."""
    from certkit.errors import CABroken
    from certkit.store import CADirectory

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Stay CA", env=env, cwd=tmp_path, check=True)
    ca = CADirectory(str(tmp_path / "ca")).open()
    ca.unlock(PASSPHRASE)
    issued = ca.issue_client("alice")
    pem = (tmp_path / "ca" / "ca.pem").read_bytes()
    (tmp_path / "ca" / "ca.pem").write_bytes(pem.replace(b"\n", b"\r\n"))
    assert ca.inventory.get(issued.serial_hex)["status"] == "valid"
    ca.revoke(issued.serial_hex, when=dt.datetime.now(dt.UTC))
    assert ca.inventory.get(issued.serial_hex)["status"] == "revoked"
    (tmp_path / "ca" / "ca.pem").unlink()
    with pytest.raises(CABroken, match="no longer holds"):
        ca.inventory.get(issued.serial_hex)


def test_a_ca_built_from_its_parts_with_its_directorys_inventory_is_bound_too(tmp_path):
    from certkit.ca import CA
    from certkit.errors import CABroken
    from certkit.store import CADirectory

    (tmp_path / "a").mkdir()
    old, _, theirs = _made_again(tmp_path / "a", aside=True)
    # CA(cert, key, parents, inventory=CADirectory(path).inventory): bound as open() binds it.
    new = CADirectory(str(tmp_path / "a" / "ca")).open()
    built = CA(new.cert, None, new.parents, inventory=CADirectory(str(tmp_path / "a" / "ca")).inventory)
    assert built.inventory.get(theirs)["status"] == "valid"
    shutil.rmtree(tmp_path / "a" / "ca")
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "a" / "ca"), HOME=str(tmp_path), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Third CA", env=env, cwd=tmp_path, check=True)
    with pytest.raises(CABroken, match=r"now holds another CA \(CN=Third CA\)"):
        built.inventory.get(theirs)
    with pytest.raises(CABroken, match="now holds another CA"):
        old.inventory.query()
