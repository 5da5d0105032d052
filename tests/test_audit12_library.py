"""The twelfth round's library findings (audit library10), each as a class, through the library's own entry points:

1. a renewal keeps its purpose: renewal_request(old, kind) refuses another kind than the old certificate's, and a
   Request built by hand meets the builders' name rules (no ``*.com``, no ``bad..name``, a server names a host);
   a renewal's inherited lifetime is capped at the profile's most (a server's 825 days), with a note;
2. a one-output file given to deliver() is checked as the command line checks it: never in a CA directory, never
   over an existing file without force (refused before signing), force a bool;
3. a revoked certificate is never packed: issued_pkcs12 of a deliver() result asks the CA directory, and refuses
   when it cannot be read; pkcs12.export_folder refuses a revoked certificate as export-p12 does;
4. a CA object whose directory now holds another CA records nothing there;
5. verify_path and inspect_path refuse the caller's wrong arguments as such (WrongType, InvalidArgument), never
   as "a damaged certificate", never a raw TypeError or OSError.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from conftest import PASSPHRASE, certkit_env, openssl, run_certkit


@pytest.fixture
def ca(tmp_path: Path):
    from certkit.store import CADirectory

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path))
    run_certkit("init-ca", "--name", "Lib Root", env=env, check=True)
    return CADirectory(tmp_path / "ca").load(PASSPHRASE.encode())


def _rows(ca) -> list[dict]:
    return ca.inventory.rows("ORDER BY issued_at")


# --- 1. a renewal keeps its purpose; a hand-built request meets the rules ---------------------------------------
@pytest.mark.parametrize("old_kind,new_kind", [("client", "server"), ("server", "client"), ("server", "peer")])
def test_a_renewal_keeps_its_purpose(tmp_path: Path, ca, old_kind: str, new_kind: str) -> None:
    from certkit.errors import InvalidArgument
    from certkit.issuing import FolderTarget, client_request, deliver, renewal_request, server_request

    request = client_request("bob", days=300) if old_kind == "client" else server_request(["web.example"], days=30)
    old = deliver(ca, request, FolderTarget(tmp_path / "old")).issued
    before = len(_rows(ca))
    with pytest.raises(InvalidArgument, match=f"is a {old_kind} certificate"):
        deliver(ca, renewal_request(old.cert, new_kind, key=old.private_key), FolderTarget(tmp_path / "new"))
    assert len(_rows(ca)) == before and not (tmp_path / "new").exists()
    same = deliver(ca, renewal_request(old.cert, old_kind, key=old.private_key), FolderTarget(tmp_path / "same"))
    assert openssl("verify", "-purpose", "sslclient" if old_kind == "client" else "sslserver", "-CAfile",
                   tmp_path / "ca" / "ca.pem", tmp_path / "same" / "cert.pem").returncode == 0
    assert same.issued.serial_hex != old.serial_hex


@pytest.mark.parametrize("kind,identities", [("server", (("dns", "*.com"),)), ("server", (("dns", "bad..name"),)),
                                             ("server", ()), ("server", (("email", "a@example.com"),)),
                                             ("client", (("dns", "*.example.com"),)), ("peer", (("dns", "a b"),))])
def test_a_request_built_by_hand_meets_the_builders_rules(tmp_path: Path, ca, kind, identities) -> None:
    from certkit.errors import CertkitError
    from certkit.issuing import FolderTarget, Request, deliver
    from certkit.names import Identity

    request = Request(kind, tuple(Identity(k, v) for k, v in identities), "x")
    with pytest.raises(CertkitError):
        deliver(ca, request, FolderTarget(tmp_path / "hand"))
    assert _rows(ca) == [] and not (tmp_path / "hand").exists()


def test_a_renewals_inherited_lifetime_is_capped_at_the_profiles_most(tmp_path: Path, ca) -> None:
    from certkit.issuing import Request, deliver
    from certkit.names import Identity

    done = deliver(ca, Request("server", (Identity("dns", "long.example"),), "long.example", default_days=5000))
    lived = done.issued.cert.not_valid_after_utc - done.issued.cert.not_valid_before_utc
    assert lived <= dt.timedelta(days=825, seconds=1), lived
    assert any("capped at 825 days" in note for note in done.notes), done.notes


# --- 2. an Output given to deliver() is checked -----------------------------------------------------------------
def test_an_output_in_the_ca_directory_is_refused_before_signing(tmp_path: Path, ca) -> None:
    from certkit.errors import CertkitError
    from certkit.formats import Output
    from certkit.issuing import deliver, server_request

    for name in ("parents.pem", "secrets.yaml"):
        with pytest.raises(CertkitError, match="CA directory"):
            deliver(ca, server_request(["a.example"]), Output("jsonl", tmp_path / "ca" / name).target("a"))
        assert not (tmp_path / "ca" / name).exists()
    assert _rows(ca) == []
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path))
    listed = run_certkit("list", env=env)  # the CA is whole: every command still opens it
    assert listed.returncode == 0 and "No certificates issued yet" in listed.stdout, listed.stderr


def test_an_output_over_an_existing_file_needs_force_and_force_is_a_bool(tmp_path: Path, ca) -> None:
    from certkit.errors import CertkitError, WrongType
    from certkit.formats import Output
    from certkit.issuing import deliver, server_request

    notes = tmp_path / "notes.jsonl"
    notes.write_text("precious\n")  # no earlier output: refused, force or not (round 27)
    for force in (False, True):
        with pytest.raises(CertkitError, match="is no jsonl, k8s or tar output certkit wrote"):
            deliver(ca, server_request(["c.example"]), Output("jsonl", notes, force=force).target("c"))
    assert notes.read_text() == "precious\n" and _rows(ca) == []  # refused before signing: no row at all
    notes.write_text("")
    with pytest.raises(CertkitError, match="already exists"):
        deliver(ca, server_request(["c.example"]), Output("jsonl", notes).target("c"))
    assert notes.read_text() == "" and _rows(ca) == []
    with pytest.raises(WrongType):
        Output("jsonl", notes, force="no")
    done = deliver(ca, server_request(["c.example"]), Output("jsonl", notes, force=True).target("c"))
    assert json.loads(notes.read_text().splitlines()[0])["serial"] == done.issued.serial_hex


# --- 3. a revoked certificate is never packed ---------------------------------------------------------------------
def test_a_revoked_delivery_is_not_packed(tmp_path: Path, ca) -> None:
    from certkit.errors import CertkitError
    from certkit.issuing import FolderTarget, client_request, deliver
    from certkit.pkcs12 import export_folder, issued_pkcs12

    alice = deliver(ca, client_request("alice"), FolderTarget(tmp_path / "alice")).issued
    ca.revoke(alice.serial_hex, "keyCompromise")
    with pytest.raises(CertkitError, match="revoked"):
        issued_pkcs12(alice, b"a long password")
    with pytest.raises(CertkitError, match="revoked"):
        export_folder(tmp_path / "alice", b"a long password", ca_dir=tmp_path / "ca")
    assert not (tmp_path / "alice" / "bundle.p12").exists()


def test_a_certificate_whose_ca_cannot_be_read_is_not_packed(tmp_path: Path, ca) -> None:
    from certkit.errors import CertkitError
    from certkit.pkcs12 import issued_pkcs12

    bob = ca.issue_client("bob")
    (tmp_path / "ca" / "inventory.sqlite3").rename(tmp_path / "moved.sqlite3")
    try:
        with pytest.raises(CertkitError, match="cannot be told"):
            issued_pkcs12(bob, b"a long password")
        with pytest.raises(CertkitError):  # its recorder asks the inventory first, and says it is missing
            bob.write(tmp_path / "bob")
    finally:
        (tmp_path / "moved.sqlite3").rename(tmp_path / "ca" / "inventory.sqlite3")
    assert not (tmp_path / "bob").exists()


# --- 4. a stale CA object records nothing in another CA's inventory ------------------------------------------------
def test_a_ca_object_whose_directory_holds_another_ca_records_nothing(tmp_path: Path, ca) -> None:
    from certkit.errors import CertkitError

    shutil.rmtree(tmp_path / "ca")
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path))
    run_certkit("init-ca", "--name", "Other", env=env, check=True)
    with pytest.raises(CertkitError, match="another CA"):
        ca.issue_server("b.example")
    assert json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"] == []
    run_certkit("crl", "--out", tmp_path / "other.crl", env=env, check=True)


# --- 5. the caller's wrong arguments said as such -----------------------------------------------------------------
@pytest.mark.parametrize("kwargs,error", [({"name": b"alice"}, "WrongType"), ({"now": "2027-01-01"}, "WrongType"),
                                          ({"now": dt.datetime(2027, 1, 1)}, "CertkitError"),
                                          ({"cert_path": ""}, "InvalidArgument"),
                                          ({"cert_path": b"alice/cert.pem"}, "WrongType"),
                                          ({"cert_path": "a" * 300}, "UnsafeOutputPath")])
def test_verify_path_says_the_callers_mistake(tmp_path: Path, ca, kwargs, error) -> None:
    from certkit import errors
    from certkit.verify import verify_path

    ca.issue_client("alice").write(tmp_path / "alice")
    args = {"cert_path": str(tmp_path / "alice" / "cert.pem"), "purpose": "client", "ca_dir": str(tmp_path / "ca")}
    with pytest.raises(getattr(errors, error)) as raised:
        verify_path(**(args | kwargs))
    assert "damaged" not in str(raised.value)


@pytest.mark.parametrize("path", [None, b"x.pem", "a" * 300, ""])
def test_inspect_path_says_the_callers_mistake(path) -> None:
    from certkit.errors import CertkitError
    from certkit.inspect import inspect_path

    with pytest.raises(CertkitError):
        inspect_path(path)


# --- 6 and 7: an extra file's name in UTF-8, a mapping; save_new into a bundle says what the folder is ----------------
@pytest.mark.parametrize("extra,error", [(lambda issued: {"\udcff.txt": b"x"}, "UnsafeOutputPath"),
                                         (lambda issued: [("a.txt", b"x")], "WrongType")])
def test_an_extra_file_is_checked_as_write_checks_it(tmp_path: Path, ca, extra, error) -> None:
    from certkit import errors
    from certkit.issuing import FolderTarget, deliver, server_request

    with pytest.raises(getattr(errors, error)):
        deliver(ca, server_request(["x.example"]), FolderTarget(tmp_path / "x", extra=extra))
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())
    assert [row["status"] for row in _rows(ca)] == ["abandoned"]  # signed, never delivered: said so


def test_save_new_into_a_bundle_folder_says_it_is_one(tmp_path: Path, ca) -> None:
    from certkit.ca import CA
    from certkit.errors import CAExists
    from certkit.store import CADirectory

    ca.issue_server(["b.example"]).write(tmp_path / "b")
    before = {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}
    with pytest.raises(CAExists, match="is a certificate bundle"):
        CADirectory(tmp_path / "b").save_new(CA.create("Into A Bundle"), None)
    assert {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()} == before
