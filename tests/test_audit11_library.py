"""The eleventh round's library findings (audit library9), each as a class:

1. ``FolderTarget(extra=...)`` file names are checked as ``IssuedCert.write(extra=)``'s are: no folder, no
   ``..``, no control character, none of the bundle's own names (one wrote a CA directory's parents.pem and
   broke the CA; another replaced the bundle's key); a non-callable ``extra`` is refused before signing;
2. a certificate its CA's inventory records as revoked is neither written (whatever produced the IssuedCert)
   nor packed into a PKCS#12 file, as export-p12 refuses it;
3. ``save_new(inventory_url=...)`` takes what init-ca --inventory takes: a PostgreSQL URL;
4. ``write()`` of a certificate already renewed is refused (its folder would expire where no renewal looks);
5. wrong arguments of the PKCS#12 helpers are WrongType or CertkitError, and their flags are bools.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import PASSPHRASE, run_certkit


@pytest.fixture
def ca(tmp_path: Path):
    from certkit import CA, CADirectory

    CADirectory(tmp_path / "ca").save_new(CA.create("Library CA"), PASSPHRASE)
    return CADirectory(tmp_path / "ca").load(PASSPHRASE)


@pytest.mark.parametrize("name", ["../ca/parents.pem", "ABSOLUTE", "privkey.pem", "tls.key\n", ".."])
def test_extra_file_names_of_a_folder_target_are_checked(ca, tmp_path: Path, name: str) -> None:
    from certkit.errors import CertkitError
    from certkit.issuing import FolderTarget, deliver, server_request

    name = str(tmp_path / "outside.txt") if name == "ABSOLUTE" else name
    with pytest.raises(CertkitError):
        deliver(ca, server_request(["web.example"]), FolderTarget(tmp_path / "web", extra=lambda i: {name: b"x"}))
    assert not (tmp_path / "ca" / "parents.pem").exists() and not (tmp_path / "outside.txt").exists()
    assert not (tmp_path / "web").exists()
    assert run_certkit("check", "--ca-dir", tmp_path / "ca").returncode == 0


def test_a_non_callable_extra_is_refused_before_signing(ca, tmp_path: Path) -> None:
    from certkit.errors import WrongType
    from certkit.issuing import FolderTarget

    with pytest.raises(WrongType, match="extra"):
        FolderTarget(tmp_path / "web", extra={"bundle.p12": b"x"})


def test_a_revoked_certificate_is_neither_written_nor_packed(ca, tmp_path: Path) -> None:
    from certkit.errors import AlreadyRevoked
    from certkit.issuing import FolderTarget, client_request, deliver
    from certkit.pkcs12 import issued_pkcs12

    alice = deliver(ca, client_request("alice"), FolderTarget(tmp_path / "alice")).issued
    ca.revoke(alice.serial_hex, "keyCompromise")
    with pytest.raises(AlreadyRevoked):
        alice.write(tmp_path / "alice-copy")
    assert not (tmp_path / "alice-copy").exists()
    bob = ca.issue_client("bob")
    ca.revoke(bob.serial_hex, "keyCompromise")
    with pytest.raises(AlreadyRevoked):
        issued_pkcs12(bob, b"a long password")


def test_save_new_takes_only_a_postgresql_url(tmp_path: Path) -> None:
    from certkit import CA, CADirectory
    from certkit.errors import CertkitError

    for url in ("team.db", ""):
        with pytest.raises(CertkitError, match="not a PostgreSQL URL"):
            CADirectory(tmp_path / "team").save_new(CA.create("Team"), PASSPHRASE, inventory_url=url)
        assert not (tmp_path / "team").exists() and not Path("team.db").exists()


def test_writing_a_renewed_certificate_is_refused(ca, tmp_path: Path) -> None:
    from certkit.errors import CannotRenew

    old = ca.issue_server("a.example", days=10)
    new = ca.renew(old)
    with pytest.raises(CannotRenew, match=new.serial_hex):
        old.write(tmp_path / "site-b")
    assert not (tmp_path / "site-b").exists()
    new.write(tmp_path / "site-a")
    listed = run_certkit("list", "--ca-dir", tmp_path / "ca").stdout
    assert "site-a" in listed or new.serial_hex[:8] in listed


def test_the_pkcs12_helpers_refuse_wrong_arguments_in_words(ca, tmp_path: Path) -> None:
    from certkit.errors import CertkitError, WrongType
    from certkit.pkcs12 import export_folder, issued_pkcs12

    alice = ca.issue_client("alice")
    with pytest.raises(WrongType):
        issued_pkcs12(alice.cert, b"a long password")
    with pytest.raises(WrongType):
        issued_pkcs12(alice, b"a long password", legacy="no")
    with pytest.raises(CertkitError, match="not the key of the certificate"):
        issued_pkcs12(alice, b"a long password", key=ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(WrongType):
        export_folder(None, b"a long password")
    alice.write(tmp_path / "alice")
    export_folder(tmp_path / "alice", b"a long password")
    with pytest.raises(WrongType):
        export_folder(tmp_path / "alice", b"a long password", force="no")


def test_other_wrong_arguments_are_said(tmp_path: Path) -> None:
    from certkit import CA, CADirectory
    from certkit.errors import CertkitError, WrongType

    root = CA.create("Args")
    with pytest.raises(WrongType, match="parents"):
        CA(root.cert, root.key, None)
    with pytest.raises(WrongType, match="parent"):
        CADirectory(tmp_path / "n").save_new(CA.create("N"), PASSPHRASE, parent="ca")
    with pytest.raises(CertkitError, match="300 bytes"):
        CADirectory(tmp_path / ("a" * 300)).open()


def test_a_certificate_whose_renewal_was_revoked_can_be_written(ca, tmp_path: Path) -> None:
    old = ca.issue_server("b.example", days=10)
    new = ca.renew(old)
    ca.revoke(new.serial_hex, "superseded")
    old.write(tmp_path / "site")  # the valid one: nothing newer stands in its way
    assert (tmp_path / "site" / "cert.pem").is_file()
