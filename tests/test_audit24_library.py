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


# --- 2. whitespace around a name: one rule for issuing (library, CLI, manifest) and verifying -----------
PADS = [" {}", "{} ", "\t{}", "{}\u00a0", "\u00a0{}\t"]


@pytest.fixture(scope="module")
def padded_ca(tmp_path_factory):
    """A CA directory with a server (www.example.test) and a client (alice, alice@example.com,
    spiffe://example.org/alice), and the environment that uses it."""
    home = tmp_path_factory.mktemp("padded")
    env = certkit_env(CERTKIT_CA_DIR=str(home / "ca"), HOME=str(home), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Padded CA", env=env, cwd=home, check=True)
    run_certkit("issue-server", "www.example.test", "10.0.0.1", "--out", str(home / "s"), env=env, cwd=home,
                check=True)
    run_certkit("issue-client", "alice", "--email", "alice@example.com", "--uri", "spiffe://example.org/alice",
                "--out", str(home / "c"), env=env, cwd=home, check=True)
    return home, env


@pytest.mark.parametrize("pad", PADS)
@pytest.mark.parametrize(("purpose", "folder", "name"), [
    ("server", "s", "www.example.test"), ("server", "s", "10.0.0.1"), ("client", "c", "alice"),
    ("client", "c", "alice@example.com"), ("client", "c", "spiffe://example.org/alice")])
def test_a_name_to_check_with_whitespace_around_it_is_refused_naming_the_name_without_it(padded_ca, pad, purpose,
                                                                                        folder, name):
    """verify --name ' alice@example.com' said "not valid for name  alice@example.com" of the certificate
    issue-client --email ' alice@example.com' had made, and --name 'www.example.test<NBSP>' said it "contains
    control characters"; a name with whitespace around it is no name a client connects to or a server maps, so
    it is refused (never reported as matching), in words that give the name without it, by the CLI and the library
    alike, for a server's names and a client's CN, email and URI."""
    from cryptography import x509

    from certkit.errors import InvalidName
    from certkit.verify import verify_certificate

    home, env = padded_ca
    given = pad.format(name)
    ran = run_certkit("verify", str(home / folder / "cert.pem"), "--purpose", purpose, "--name", given, env=env,
                      cwd=home)
    assert ran.returncode != 0 and ran.stderr.startswith("Error: ") and ran.stderr.count("\n") == 1, ran.stderr
    assert "has whitespace" in ran.stderr and f"give '{name}'" in ran.stderr and "matches" not in ran.stdout
    leaf = x509.load_pem_x509_certificate((home / folder / "cert.pem").read_bytes())
    root = x509.load_pem_x509_certificate((home / "ca" / "ca.pem").read_bytes())
    with pytest.raises(InvalidName, match="has whitespace"):
        verify_certificate(leaf, purpose=purpose, roots=root, name=given)
    assert verify_certificate(leaf, purpose=purpose, roots=root, name=name).name_ok


@pytest.mark.parametrize("pad", PADS)
def test_names_padded_for_issuing_are_taken_alike_and_a_padded_common_name_refused_alike(tmp_path, pad):
    from cryptography import x509

    from certkit import CA
    from certkit.errors import InvalidName

    ca = CA.create("Names CA")
    server = ca.issue_server([pad.format("www.example.test"), pad.format("10.0.0.1")])
    client = ca.issue_client("alice", emails=[pad.format("alice@example.com")],
                             uris=[pad.format("spiffe://example.org/alice")], dns_names=[pad.format("a.example")])
    sans = {str(n.value) for c in (server, client)
            for n in c.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value}
    assert sans == {"www.example.test", "10.0.0.1", "alice@example.com", "spiffe://example.org/alice", "a.example"}
    with pytest.raises(InvalidName, match="starts or ends with whitespace; remove it") as refused:
        ca.issue_client(pad.format("alice"))
    said = str(refused.value)
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Names CA", env=env, cwd=tmp_path, check=True)
    ran = run_certkit("issue-client", pad.format("alice"), "--out", str(tmp_path / "c"), env=env, cwd=tmp_path)
    assert ran.returncode == 1 and ran.stderr.strip() == f"Error: {said}", ran.stderr
    (tmp_path / "m.csv").write_text(f'kind,names,email,out\nclient,"{pad.format("alice")}",,c\n'
                                    f'server,"{pad.format("www.example.test")}",,s\n', encoding="utf-8")
    ran = run_certkit("issue-batch", "m.csv", env=env, cwd=tmp_path)
    assert ran.returncode == 1 and f"line 2: {said}" in ran.stderr and "line 3" not in ran.stderr, ran.stderr
    assert not (tmp_path / "c").exists() and not (tmp_path / "s").exists()


# --- 3. Inventory.query's bad arguments: certkit errors, not a builtin ValueError / TypeError or nothing ---
@pytest.mark.parametrize(("given", "error", "said"), [
    ({"kind": "servers"}, "InvalidArgument", "Unknown kind 'servers'; choose one of: ca, server, client, peer."),
    ({"kind": 5}, "WrongType", "kind must be a str"),
    ({"status": "bogus"}, "InvalidArgument", "Unknown status 'bogus'; choose one of: valid, expired, revoked, "
                                             "pending, abandoned, not yet valid."),
    ({"expiring_within": 30}, "WrongType", "expiring_within must be a datetime.timedelta"),
    ({"now": dt.datetime(2030, 1, 1)}, "InvalidLifetime", "now must be timezone-aware"),
    ({"limit": "3"}, "WrongType", "limit must be a whole number of rows"),
    ({"limit": -1}, "WrongType", "limit must be a whole number of rows"),
    ({"name": b"www*"}, "WrongType", "name must be a str"),
])
def test_a_query_with_a_bad_filter_is_refused_in_certkits_words(ca_dir, given, error, said):
    """query(kind="servers") answered [] as if the CA had issued no server certificate; status="bogus" raised
    a bare ValueError, expiring_within=30 a TypeError from inside (datetime + int)."""
    from certkit import errors
    from certkit.store import CADirectory

    ca = CADirectory(str(ca_dir)).open()
    ca.unlock(PASSPHRASE)
    ca.issue_server("q.example")
    with pytest.raises(getattr(errors, error)) as refused:
        ca.inventory.query(**given)
    assert str(refused.value).startswith(said) and isinstance(refused.value, errors.CertkitError)
    assert [r["kind"] for r in ca.inventory.query(kind="server")] == ["server"]
    assert ca.inventory.query(status="not yet valid") == [] and len(ca.inventory.query(limit=0)) == 0


def test_an_acme_server_whose_directory_was_made_again_answers_nothing_from_the_other_cas_inventory(tmp_path):
    """certkit acme serve keeps its CA object as long as it runs, and reads and writes the inventory through its
    own adapter (certkit.acme.db), which skipped the check above: with its directory made again for another CA,
    it wrote its nonces and read its accounts and orders in that CA's inventory. It now answers every request
    with a problem saying its directory holds another CA, and logs why; the other CA's inventory gets no row."""
    import sqlite3

    from acme_client import AcmeError, Client
    from acme_helpers import AcmeServer

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Acme Lib CA", env=env, cwd=tmp_path, check=True)
    server = AcmeServer("--allow-domain", "acme.test", env=env, cwd=tmp_path)
    try:
        Client(server.directory, tmp_path / "ca" / "ca.pem").register()  # it serves, before
        (tmp_path / "ca").rename(tmp_path / "ca.old")
        run_certkit("init-ca", "--name", "Acme Lib CA", env=env, cwd=tmp_path, check=True)
        with pytest.raises(AcmeError) as refused:
            Client(server.directory, tmp_path / "ca.old" / "ca.pem").register()
        assert refused.value.type == "serverInternal" and "now holds another CA" in str(refused.value), refused.value
        server.wait_for_log("now holds another CA")
    finally:
        server.stop()
    with sqlite3.connect(tmp_path / "ca" / "inventory.sqlite3") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE name LIKE 'acme%'")]
        assert all(db.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] == 0 for t in tables), tables
    assert "Traceback" not in server.stderr, server.stderr
