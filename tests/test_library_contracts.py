"""What the library promises, held at its edges (audit of the library API, findings 2, 3, 5, 9, 10, 11
and 12): trust is exactly the CA asked for, a bundle is never written into a CA directory, the
inventory takes no row that breaks the CA, a certificate without its key says so, extra files are
plain names, each test's ``certkit_ca`` is its own, and pkilint's one finding on the plugin is the
documented one."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from certkit import CA
from certkit.errors import CertkitError, UnknownCertificate, UnsafeOutputPath
from certkit.store import CADirectory
from certkit.tlscheck import handshake

from conftest import PASSPHRASE, REPO, assert_clean_error, certkit_env, pkilint_errors, run_certkit


# --- trust is exactly the CA (finding 2) --------------------------------------------------------
@pytest.fixture(scope="module")
def tree() -> dict[str, CA]:
    """A root with two intermediates under it, A and B."""
    root = CA.create("Contracts Root")
    return {"root": root, "a": CA.create("Inter A", parent=root), "b": CA.create("Inter B", parent=root)}


def presenting(issued, trusted: CA, *, chain: bool = True) -> ssl.SSLContext:
    """A client context that trusts any server under ``trusted``'s root and presents ``issued``
    (its full chain, or its certificate alone), so only the server's verdict is tested."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=trusted.root_pem.decode())
    with issued.files() as paths:
        ctx.load_cert_chain(paths.fullchain if chain else paths.cert, paths.key)
    return ctx


@pytest.mark.parametrize("issuer", ["b", "root"])
def test_intermediate_server_refuses_clients_of_other_cas(tree, issuer: str) -> None:
    a = tree["a"]
    server = a.server_context(a.issue_server(["localhost"]))
    outsider = tree[issuer].issue_client(f"client of {issuer}")
    result = handshake(server, presenting(outsider, a))
    assert not result.accepted
    assert "certificate verify failed" in (result.server_error or ""), result
    # The same client through a context built by hand and configure_trust: refused too.
    own = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    a.issue_server(["localhost"]).configure_cert(own)
    a.configure_trust(own)
    own.verify_mode = ssl.CERT_REQUIRED
    assert not handshake(own, presenting(outsider, a)).accepted


@pytest.mark.parametrize("chain", [False, True], ids=["leaf-only", "with-chain"])
def test_intermediate_server_accepts_its_own_clients(tree, chain: bool) -> None:
    a = tree["a"]
    result = handshake(a.server_context(a.issue_server(["localhost"])),
                       presenting(a.issue_client("alice"), a, chain=chain))
    assert result.accepted, result.reason
    assert "alice" in result.peer_subject
    # And the library's own client context, which sends the full chain.
    both = handshake(a.server_context(a.issue_server(["localhost"])), a.client_context(a.issue_client("bob")))
    assert both.accepted, both.reason


@pytest.mark.parametrize("issuer", ["b", "root"])
def test_intermediate_client_context_refuses_servers_of_other_cas(tree, issuer: str) -> None:
    other = tree[issuer]
    server = other.server_context(other.issue_server(["localhost"]), client_certificates="none")
    for client in (tree["a"].client_context(), tree["a"].client_context(tree["a"].issue_client("alice"))):
        result = handshake(server, client)
        assert not result.accepted
        assert "certificate verify failed" in (result.client_error or ""), result
    own = tree["a"].server_context(tree["a"].issue_server(["localhost"]), client_certificates="none")
    assert handshake(own, tree["a"].client_context()).accepted


def test_root_ca_still_trusts_everything_under_it(tree) -> None:
    root = tree["root"]
    server = root.server_context(root.issue_server(["localhost"]))
    for issuer in ("root", "a", "b"):
        result = handshake(server, presenting(tree[issuer].issue_client(f"c-{issuer}"), root))
        assert result.accepted, (issuer, result.reason)
    for issuer in ("root", "a"):
        other = tree[issuer]
        result = handshake(other.server_context(other.issue_server(["localhost"]), client_certificates="none"),
                           root.client_context())
        assert result.accepted, (issuer, result.reason)
    assert not root.client_context().verify_flags & ssl.VERIFY_X509_PARTIAL_CHAIN


# --- never into a CA directory (finding 3) ------------------------------------------------------
@pytest.fixture
def ca_dirs(ca_dir: Path, tmp_path: Path) -> dict[str, Path]:
    """The root CA directory (``ca_dir``) and an intermediate's under it, ``inter``."""
    root = CADirectory(ca_dir).open()
    root.unlock(PASSPHRASE.encode())
    inter = tmp_path / "inter"
    CADirectory(inter).save_new(CA.create("Contracts Inter", parent=root), PASSPHRASE.encode())
    return {"root": ca_dir, "inter": inter}


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize("where", ["root", "inter", "root/sub", "inter/sub/deeper", "link", "link/sub"])
def test_write_refuses_ca_directories(ca_dirs, tmp_path: Path, where: str, force: bool) -> None:
    (tmp_path / "link").symlink_to(ca_dirs["inter"])
    first, _, rest = where.partition("/")
    target = (ca_dirs.get(first) or tmp_path / first) / rest
    before = {name: snapshot(folder) for name, folder in ca_dirs.items()}
    issued = CA.create("Elsewhere").issue_server(["x.example"])
    with pytest.raises(UnsafeOutputPath, match="CA"):
        issued.write(target, force=force)
    assert {name: snapshot(folder) for name, folder in ca_dirs.items()} == before
    issued.write(tmp_path / "out", force=force)  # a folder of its own is fine
    assert (tmp_path / "out" / "privkey.pem").exists()


def test_write_refuses_the_issuing_cas_directory(ca_dirs, tmp_path: Path) -> None:
    inter = CADirectory(ca_dirs["inter"]).open()
    inter.unlock(PASSPHRASE.encode())
    issued = inter.issue_server(["x.example"])
    before = snapshot(ca_dirs["inter"])
    with pytest.raises(UnsafeOutputPath):
        issued.write(ca_dirs["inter"], force=True)
    assert snapshot(ca_dirs["inter"]) == before
    # A folder the certificate knows as its CA's is refused even when nothing in it says so.
    plain = tmp_path / "plain"
    plain.mkdir()
    issued.ca_directories = [plain]
    with pytest.raises(UnsafeOutputPath, match="CA directory"):
        issued.write(plain / "sub")


# --- the inventory takes no row that breaks the CA (finding 5) ----------------------------------
@pytest.fixture
def opened(ca_dir: Path) -> CA:
    ca = CADirectory(ca_dir).open()
    ca.unlock(PASSPHRASE.encode())
    return ca


def test_inventory_revoke_checks_reason_and_time(opened: CA) -> None:
    serial = opened.issue_server(["a.example"]).serial_hex
    for reason in ("banana", "", "certificateHold", None):
        with pytest.raises(CertkitError, match="revocation reason"):
            opened.inventory.revoke(serial, reason)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    for revoke in (lambda: opened.inventory.revoke(serial, when=future),
                   lambda: opened.revoke(serial, when=dt.datetime(2100, 1, 1, tzinfo=dt.UTC))):
        with pytest.raises(CertkitError, match="future"):
            revoke()
    assert opened.inventory.get(serial)["status"] == "valid"
    row = opened.inventory.revoke(serial, "key-compromise", when=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    assert row["status"] == "revoked" and row["revocation_reason"] == "keyCompromise"


def test_inventory_add_checks_kind_and_issuer(opened: CA) -> None:
    unrecorded = CA(opened.cert, opened.key, opened.parents).issue_server(["b.example"]).cert  # no inventory
    foreign = CA.create("Foreign").issue_server(["evil.example"]).cert
    for cert, kind in ((unrecorded, "banana"), (unrecorded, "client"), (unrecorded, "ca"),
                       (foreign, "server"), (foreign, "banana")):
        with pytest.raises(CertkitError, match="nothing was recorded"):
            opened.inventory.add(cert, kind)
    other_root = CA.create("Other root")
    with pytest.raises(CertkitError, match="not issued by this inventory's CA"):
        opened.inventory.add(CA.create("Sub of other", parent=other_root).cert, "ca")
    assert opened.inventory.query() == []
    assert opened.inventory.add(unrecorded, "server") is True
    CA.create("Sub", parent=opened)  # an intermediate is still recorded as before
    assert sorted(r["kind"] for r in opened.inventory.query()) == ["ca", "server"]


def test_inventory_set_folder_checks_serial_and_folder(opened: CA, tmp_path: Path) -> None:
    serial = opened.issue_server(["c.example"]).serial_hex
    with pytest.raises(UnknownCertificate):
        opened.inventory.set_folder("DEADBEEF", tmp_path)
    with pytest.raises(CertkitError, match="not a folder"):
        opened.inventory.set_folder(serial, tmp_path / "nowhere")
    opened.inventory.set_folder(serial, tmp_path)
    assert opened.inventory.get(serial)["folder"] == str(tmp_path)


def test_crl_with_a_bad_stored_reason_is_a_clean_error(opened: CA, ca_dir: Path, ca_env: dict,
                                                       tmp_path: Path) -> None:
    serial = opened.issue_server(["d.example"]).serial_hex
    opened.revoke(serial, "superseded")
    with sqlite3.connect(ca_dir / "inventory.sqlite3") as db:
        db.execute("UPDATE certificates SET revocation_reason = 'banana' WHERE serial = ?", (serial,))
    db.close()
    with pytest.raises(CertkitError, match=serial):
        opened.crl()
    for args in (("crl", "--out", tmp_path / "crl.pem"), ("crl", "--json")):
        proc = run_certkit(*args, env=ca_env, cwd=tmp_path)
        assert_clean_error(proc, serial)
        assert "banana" in proc.stderr + proc.stdout
    assert not (tmp_path / "crl.pem").exists()
    proc = run_certkit("crl", "--out", tmp_path / "crl.pem", env=ca_env, cwd=tmp_path, subprocess=True)
    assert_clean_error(proc, serial)
    with sqlite3.connect(ca_dir / "inventory.sqlite3") as db:
        db.execute("UPDATE certificates SET revocation_reason = 'superseded' WHERE serial = ?", (serial,))
    db.close()
    from cryptography import x509

    crl = opened.crl()  # the refused attempts took no CRL number
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
    assert len(crl) == 1


# --- a certificate without its key says so (finding 9) -----------------------------------------
def test_renewed_without_key_says_what_is_missing(tmp_path: Path) -> None:
    ca = CA.create("Renew CA")
    old = ca.issue_server(["localhost"])
    client = ca.issue_client("alice")
    keyless = [ca.renew(old.cert), ca.renew(client.cert)]
    for new in keyless:
        assert new.private_key is None
        for make in (ca.server_context, ca.client_context):
            with pytest.raises(CertkitError, match=r"renewed keeping its key without key=.*rekey=True"):
                make(new)
        with new.files() as paths:
            assert paths.cert.read_bytes() == new.cert_pem and paths.ca.exists()
            assert not (paths.folder / "privkey.pem").exists()
            with pytest.raises(CertkitError, match=new.serial_hex):
                paths.key  # noqa: B018  never a path to a file that does not exist
    assert sorted(p.name for p in keyless[0].write(tmp_path / "b")) == ["ca.pem", "cert.pem", "fullchain.pem"]
    kept = ca.renew(old.cert, key=old.private_key)
    with kept.files() as paths:
        assert paths.key.exists()
    assert ca.server_context(kept).verify_mode == ssl.CERT_REQUIRED
    assert ca.renew(old.cert, rekey=True).private_key is not None


def test_csr_certificate_without_key_says_so() -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca = CA.create("CSR CA")
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "csr.example")]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("csr.example")]), critical=False)
           .sign(key, hashes.SHA256()))
    issued = ca.sign_csr(csr.public_bytes(serialization.Encoding.PEM), "server")
    with pytest.raises(CertkitError, match="signed from a CSR"):
        ca.server_context(issued)
    with issued.files() as paths, pytest.raises(CertkitError, match="private key"):
        paths.key  # noqa: B018


# --- extra files are plain names (finding 10) ---------------------------------------------------
@pytest.mark.parametrize("name", ["../escape.txt", "ABSOLUTE", "sub/x.txt", "", ".", "..", "a\0b",
                                  "privkey.pem", "cert.pem", "fullchain.pem", "ca.pem", "chain.pem",
                                  ".x.1-ab.certkit-tmp"])
def test_write_extra_refuses_names_that_are_not_plain(tmp_path: Path, name: str) -> None:
    name = str(tmp_path / "abs.txt") if name == "ABSOLUTE" else name
    work = tmp_path / "work"
    work.mkdir()
    issued = CA.create("Extra CA").issue_server(["e.example"])
    with pytest.raises(CertkitError, match="bundle's own" if name.endswith("pem") else "not a plain file name"):
        issued.write(work / "f", extra={name: b"NOT A KEY"})
    assert not (work / "f").exists() and sorted(os.listdir(work)) == [] and not (tmp_path / "abs.txt").exists()


def test_write_extra_plain_names_are_written_and_replaced(tmp_path: Path) -> None:
    ca = CA.create("Extra CA")
    first = ca.issue_server(["e.example"])
    written = first.write(tmp_path / "f", extra={"bundle.p12": b"p12", "notes.txt": b"one"})
    assert {p.name for p in written} == {"cert.pem", "privkey.pem", "fullchain.pem", "ca.pem", "bundle.p12",
                                         "notes.txt"}
    assert (tmp_path / "f" / "bundle.p12").stat().st_mode & 0o777 == 0o600
    (tmp_path / "f" / "mine.log").write_text("a user's file")  # the replacement goes through the journal
    second = ca.issue_server(["e.example"])
    second.write(tmp_path / "f", force=True, extra={"notes.txt": b"two"})
    assert (tmp_path / "f" / "cert.pem").read_bytes() == second.cert_pem
    assert (tmp_path / "f" / "notes.txt").read_bytes() == b"two"
    assert (tmp_path / "f" / "mine.log").read_text() == "a user's file"
    with pytest.raises(TypeError):
        second.write(tmp_path / "g", extra={"notes.txt": "text"})


def test_write_force_leaves_nothing_of_the_old_bundle(tmp_path: Path) -> None:
    """A stale chain.pem, bundle.p12 or, worst, a private key of another certificate must not stay
    beside the new certificate; a user's own file does."""
    from cryptography.hazmat.primitives import serialization

    root = CA.create("Old bundle root")
    inter = CA.create("Old bundle inter", parent=root)
    folder = tmp_path / "f"
    inter.issue_server(["e.example"]).write(folder, extra={"bundle.p12": b"p12"})
    (folder / "mine.log").write_text("kept")
    assert (folder / "chain.pem").exists()
    new = root.issue_server(["e.example"])
    new.write(folder, force=True)
    assert sorted(os.listdir(folder)) == ["ca.pem", "cert.pem", "fullchain.pem", "mine.log", "privkey.pem"]
    key = serialization.load_pem_private_key((folder / "privkey.pem").read_bytes(), None)
    assert key.public_key() == new.cert.public_key()
    keyless = root.renew(new.cert)  # the same key, not given: a bundle without privkey.pem
    keyless.write(folder, force=True)  # the privkey.pem there is this certificate's key: it stays
    assert sorted(os.listdir(folder)) == ["ca.pem", "cert.pem", "fullchain.pem", "mine.log", "privkey.pem"]
    assert serialization.load_pem_private_key((folder / "privkey.pem").read_bytes(), None).public_key() \
        == keyless.cert.public_key()
    root.issue_server(["e.example"]).write(folder, force=True)  # a privkey.pem of another certificate...
    keyless.write(folder, force=True)  # ...goes
    assert sorted(os.listdir(folder)) == ["ca.pem", "cert.pem", "fullchain.pem", "mine.log"]


# --- each test its own certkit_ca (finding 11) --------------------------------------------------
PLUGIN_TESTS = '''
def test_changes_its_ca(certkit_ca):
    certkit_ca.warnings.append("leak")
    certkit_ca.inventory = object()
    certkit_ca.parents.append(certkit_ca.cert)
    certkit_ca.key = None


def test_gets_a_clean_ca(certkit_ca, certkit_server_cert, certkit_client_cert):
    assert certkit_ca.warnings == [] and certkit_ca.inventory is None and certkit_ca.parents == []
    assert certkit_ca.key is not None
    assert certkit_server_cert.root == certkit_ca.cert == certkit_client_cert.root


def test_shares_the_session_certificate(certkit_ca, certkit_session_ca):
    assert certkit_ca is not certkit_session_ca
    assert certkit_ca.cert is certkit_session_ca.cert and certkit_ca.key is certkit_session_ca.key
    assert certkit_session_ca.warnings == [] and certkit_session_ca.inventory is None
'''


def test_plugin_gives_each_test_its_own_ca(tmp_path: Path) -> None:
    (tmp_path / "test_plugin_isolation.py").write_text(PLUGIN_TESTS)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                           "test_plugin_isolation.py"], cwd=tmp_path, env=certkit_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout


# --- pkilint and the plugin's names (finding 12) ------------------------------------------------
LOCALHOST_FINDING = '    pkix.invalid_domain_name_syntax (ERROR): Invalid domain name syntax: "{}"'


def error_lines(findings: str) -> list[str]:
    return [line for line in findings.splitlines() if "(ERROR)" in line]


def test_plugin_certificates_lint_clean_but_for_localhost(certkit_ca, certkit_server_cert, certkit_client_cert,
                                                          tmp_path: Path) -> None:
    from certkit.pytest_plugin import SERVER_NAMES

    certkit_server_cert.write(tmp_path / "server")
    certkit_client_cert.write(tmp_path / "client")
    assert error_lines(pkilint_errors(tmp_path / "server" / "cert.pem")) == [LOCALHOST_FINDING.format("localhost")]
    assert pkilint_errors(tmp_path / "server" / "ca.pem", tmp_path / "server" / "cert.pem") == ""
    assert pkilint_errors(tmp_path / "client" / "cert.pem") == ""
    assert pkilint_errors(tmp_path / "client" / "ca.pem") == ""
    # Every other name of the plugin's server certificate, under the root and an intermediate: clean.
    others = [n for n in SERVER_NAMES if n != "localhost"]
    assert others == ["127.0.0.1", "::1"]
    certkit_ca.issue_server(others).write(tmp_path / "others")
    CA.create("Lint inter", parent=certkit_ca).issue_server(others).write(tmp_path / "inter")
    for folder in ("others", "inter"):
        assert pkilint_errors(tmp_path / folder / "cert.pem") == "", folder
    assert pkilint_errors(tmp_path / "inter" / "chain.pem", tmp_path / "inter" / "cert.pem") == ""


def test_pkilint_flags_every_single_label_name_and_the_docs_say_so(certkit_ca, tmp_path: Path) -> None:
    """The finding is pkilint's rule (a dot wanted), not something about localhost: RFC 1034's preferred
    name syntax, which RFC 5280 4.2.1.6 asks for, admits one label. docs/library.md names the exception."""
    for name in ("intranet", "myhost"):
        certkit_ca.issue_server([name]).write(tmp_path / name)
        assert error_lines(pkilint_errors(tmp_path / name / "cert.pem")) == [LOCALHOST_FINDING.format(name)]
    certkit_ca.issue_server(["localhost.localdomain"]).write(tmp_path / "two-labels")
    assert pkilint_errors(tmp_path / "two-labels" / "cert.pem") == ""
    page = (REPO / "docs" / "library.md").read_text()
    assert "pkix.invalid_domain_name_syntax" in page and "RFC 1034" in page


def test_a_ca_never_certifies_a_key_it_certified_for_another_role(tmp_path: Path) -> None:
    """The root does not sign a leaf for its intermediate's key (the bundle's privkey.pem would be
    that CA's key), nor a new intermediate for a leaf's live or compromised key."""
    in_memory = CA.create("Reuse root")
    with pytest.raises(CertkitError, match="the key of the CA 'Reuse inter'"):
        in_memory.issue_server(["x.example"], key=CA.create("Reuse inter", parent=in_memory).key)
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "root"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Reuse root", env=env, check=True)
    run_certkit("init-ca", "--ca-dir", tmp_path / "inter", "--parent-ca-dir", tmp_path / "root", "--name",
                "Reuse inter", env=env, check=True)
    root = CADirectory(tmp_path / "root").load(PASSPHRASE)
    inter = CADirectory(tmp_path / "inter").load(PASSPHRASE)
    with pytest.raises(CertkitError, match="the key of the intermediate CA 'CN=Reuse inter' this CA issued"):
        root.issue_server(["x.example"], key=inter.key)
    leaf = root.issue_server(["leaf.example"])
    with pytest.raises(CertkitError, match=f"the server certificate {leaf.serial_hex}"):
        CA.create("Reuse inter 2", parent=root, key=leaf.private_key)
    root.revoke(leaf.serial_hex, "keyCompromise")
    with pytest.raises(CertkitError, match="revoked for keyCompromise"):
        CA.create("Reuse inter 3", parent=root, key=leaf.private_key)
    assert root.issue_server(["ok.example"]).private_key is not None


def test_constraints_given_twice_are_written_once() -> None:
    from cryptography import x509

    ca = CA.create("Twice", permitted_dns=["Example.com", "example.com", "EXAMPLE.COM."],
                   permitted_ips=["10.0.0.0/8", "10.0.0.0/8"])
    subtrees = ca.cert.extensions.get_extension_for_class(x509.NameConstraints).value.permitted_subtrees
    assert len(subtrees) == len(set(subtrees)) == 6  # DNS, e-mail (2), URI (2), IP: each once
