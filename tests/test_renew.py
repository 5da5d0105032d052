"""certkit renew: same identity and purpose, key kept or replaced, bundle swapped in place so the
folder never holds a mismatched pair, link old -> new in the inventory; refusals with nothing changed."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certkit.store import CADirectory
from certkit.vocabulary import serial_hex

from conftest import PASSPHRASE, assert_clean_error, openssl, run_certkit

pytestmark = pytest.mark.both_inventories  # every test with a ca_dir runs on PostgreSQL too (team_fixtures)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def spki(obj) -> bytes:
    return obj.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def pair_matches(folder: Path) -> bool:
    key = serialization.load_pem_private_key((folder / "privkey.pem").read_bytes(), None)
    return spki(key) == spki(load(folder / "cert.pem"))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def issued(tmp_path, ca_env, ca_dir):
    run_certkit("issue-server", "localhost", "127.0.0.1", "--days", "90", cwd=tmp_path, env=ca_env, check=True)
    run_certkit("issue-client", "alice", "--email", "alice@example.com", cwd=tmp_path, env=ca_env, check=True)
    return tmp_path


def test_renew_folder_keeps_key(issued, ca_env, ca_dir):
    folder = issued / "localhost"
    old, key_before = load(folder / "cert.pem"), (folder / "privkey.pem").read_bytes()
    key_inode = (folder / "privkey.pem").stat().st_ino
    (folder / "nginx-snippet.conf").write_text("# the user's own file\n")
    proc = run_certkit("renew", "./localhost", "--json", cwd=issued, env=ca_env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    new = load(folder / "cert.pem")
    assert out["renewed_from"] == serial_hex(old.serial_number) and out["serial"] == serial_hex(new.serial_number)
    assert new.serial_number != old.serial_number
    assert new.subject == old.subject and spki(new) == spki(old)
    for ext in (x509.SubjectAlternativeName, x509.ExtendedKeyUsage, x509.KeyUsage, x509.BasicConstraints):
        assert new.extensions.get_extension_for_class(ext) == old.extensions.get_extension_for_class(ext)
    # Same lifetime as before (90 days), starting now.
    assert new.not_valid_after_utc - new.not_valid_before_utc == old.not_valid_after_utc - old.not_valid_before_utc
    assert new.not_valid_after_utc >= old.not_valid_after_utc  # equal when renewed within the same second
    assert (folder / "privkey.pem").read_bytes() == key_before
    assert (folder / "privkey.pem").stat().st_ino == key_inode  # the very same file, hard-linked
    assert oct((folder / "privkey.pem").stat().st_mode & 0o777) == "0o600"
    assert (folder / "nginx-snippet.conf").read_text() == "# the user's own file\n"
    assert not [p for p in issued.iterdir() if p.name.endswith(".certkit-tmp")]
    assert pair_matches(folder)
    assert (folder / "fullchain.pem").read_bytes() == (folder / "cert.pem").read_bytes()
    ok = openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", folder / "ca.pem", folder / "cert.pem")
    assert ok.returncode == 0, ok.stderr
    inventory = CADirectory(ca_dir).inventory
    assert inventory.get(out["serial"])["renewed_from"] == out["renewed_from"]
    assert inventory.get(out["serial"])["folder"] == str(folder)
    listed = {r["serial"]: r for r in inventory.query()}
    assert listed[out["renewed_from"]]["renewed_by"] == out["serial"]


def test_renew_by_serial_and_name_with_rekey(issued, ca_env, ca_dir):
    folder = issued / "alice"
    old = load(folder / "cert.pem")
    serial = serial_hex(old.serial_number)
    proc = run_certkit("renew", serial, "--rekey", "--key-type", "rsa-2048", "--json", cwd="/", env=ca_env)
    assert proc.returncode == 0, proc.stderr
    first = load(folder / "cert.pem")
    assert spki(first) != spki(old) and first.public_key().key_size == 2048
    assert pair_matches(folder)
    assert oct((folder / "privkey.pem").stat().st_mode & 0o777) == "0o600"
    assert first.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.RFC822Name) == ["alice@example.com"]
    # By name: the current certificate named alice is the one just issued.
    proc = run_certkit("renew", "alice", "--days", "30", "--json", cwd="/", env=ca_env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["renewed_from"] == serial_hex(first.serial_number)
    second = load(folder / "cert.pem")
    assert (second.not_valid_after_utc - second.not_valid_before_utc).days == 29  # 30 days counted inclusively
    assert pair_matches(folder)
    # The original serial was renewed already: renewing it again is refused, naming the successor.
    again = run_certkit("renew", serial, cwd="/", env=ca_env)
    assert_clean_error(again, f"already renewed as {serial_hex(first.serial_number)}")
    # By a unique serial prefix.
    prefix = serial_hex(second.serial_number)[:10]
    assert run_certkit("renew", prefix, cwd="/", env=ca_env).returncode == 0


def test_renew_csr_signed_and_out(issued, ca_env, ca_dir):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.internal")]))
           .sign(key, hashes.SHA256()))
    (issued / "api.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    run_certkit("sign-csr", "api.csr", "--server", cwd=issued, env=ca_env, check=True)
    proc = run_certkit("renew", "api.internal", cwd=issued, env=ca_env)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (issued / "api.internal").iterdir()) == ["ca.pem", "cert.pem", "fullchain.pem"]
    assert spki(load(issued / "api.internal" / "cert.pem")) == spki(key)
    # A certificate whose bundle was never written: renew needs --out, and then writes there.
    from certkit.store import CADirectory as Store

    ca = Store(ca_dir).load(PASSPHRASE.encode())
    unwritten = ca.issue_server(["ghost.internal"])
    refused = run_certkit("renew", unwritten.serial_hex, cwd=issued, env=ca_env)
    assert_clean_error(refused, "--out")
    ok = run_certkit("renew", unwritten.serial_hex, "--out", "ghost", cwd=issued, env=ca_env)
    assert ok.returncode == 0, ok.stderr
    assert sorted(p.name for p in (issued / "ghost").iterdir()) == ["ca.pem", "cert.pem", "fullchain.pem"]
    assert "no private key written" in ok.stdout


def test_renew_refusals_change_nothing(issued, ca_env, ca_dir, tmp_path):
    inventory = CADirectory(ca_dir).inventory
    folder = issued / "alice"
    run_certkit("revoke", folder, "--reason", "keyCompromise", env=ca_env, check=True)
    before, count = snapshot(folder), inventory.count()
    revoked = run_certkit("renew", folder, cwd=issued, env=ca_env)
    assert_clean_error(revoked, "a revoked certificate is not renewed")
    unknown = run_certkit("renew", "0123456789ABCDEF", cwd=issued, env=ca_env)
    assert_clean_error(unknown, "no certificate of this ca matches '0123456789ABCDEF'")
    nobody = run_certkit("renew", "nobody.example", cwd=issued, env=ca_env)
    assert_clean_error(nobody, "matches 'nobody.example'")
    key_type = run_certkit("renew", folder, "--key-type", "ed25519", cwd=issued, env=ca_env)
    assert_clean_error(key_type, "add --rekey", code=2)
    # A bundle from another CA.
    other = dict(ca_env, CERTKIT_CA_DIR=str(tmp_path / "other"))
    run_certkit("init-ca", env=other, check=True)
    run_certkit("issue-server", "foreign.internal", cwd=issued, env=other, check=True)
    foreign = run_certkit("renew", issued / "foreign.internal", cwd=issued, env=ca_env)
    assert_clean_error(foreign, "was not issued by this CA")
    # A folder whose key does not match its certificate is not renewed into.
    (issued / "localhost" / "privkey.pem").write_bytes((issued / "foreign.internal" / "privkey.pem").read_bytes())
    mismatched = run_certkit("renew", issued / "localhost", cwd=issued, env=ca_env)
    assert_clean_error(mismatched, "does not belong to")
    assert snapshot(folder) == before and inventory.count() == count


@pytest.mark.parametrize("damage", ["empty", "not a key", "fifo", "directory", "missing"])
def test_a_bundle_whose_key_is_damaged_is_not_renewed_with_its_key_kept(issued, ca_env, ca_dir, damage):
    """Renewing with the key kept would hand servers a bundle they cannot load, and run reload hooks
    against it: refused, alone and in a bulk renewal, with nothing changed; --rekey repairs it."""
    inventory = CADirectory(ca_dir).inventory
    folder = issued / "localhost"
    key = folder / "privkey.pem"
    key.unlink()
    if damage == "empty":
        key.write_bytes(b"")
    elif damage == "not a key":
        key.write_text("not a key\n")
    elif damage == "fifo":
        os.mkfifo(key)
    elif damage == "directory":
        key.mkdir()
    before = {p.name: (p.read_bytes() if p.is_file() else None) for p in folder.iterdir()}
    count = inventory.count()
    expected = {"empty": "is empty", "not a key": "does not hold a private key",
                "fifo": "is a device or other special file, not a file", "directory": "is a folder, not a file",
                "missing": "is missing"}[damage]
    assert_clean_error(run_certkit("renew", folder, cwd=issued, env=ca_env), expected)
    bulk = run_certkit("renew", "--all", "--kind", "server", "--json", "--exec", "touch hook-ran", cwd=issued,
                       env=ca_env)
    assert bulk.returncode == 1 and not (issued / "hook-ran").exists(), bulk.stdout + bulk.stderr
    [outcome] = json.loads(bulk.stdout)["certificates"]
    assert outcome["outcome"] == "failed" and expected in outcome["error"]
    assert {p.name: (p.read_bytes() if p.is_file() else None) for p in folder.iterdir()} == before
    assert inventory.count() == count
    if damage == "directory":
        key.rmdir()
    elif key.exists() or key.is_symlink():
        key.unlink()
    run_certkit("renew", folder, "--rekey", cwd=issued, env=ca_env, check=True)
    assert pair_matches(folder)


def test_a_copy_of_the_certificate_elsewhere_is_not_its_bundle(issued, ca_env, ca_dir):
    """'renew notes/cert.pem' with the bundle in ./localhost: refused, pointing at the bundle; nothing
    is written into notes/ and the inventory still knows where the bundle is."""
    notes = issued / "notes"
    notes.mkdir()
    (notes / "cert.pem").write_bytes((issued / "localhost" / "cert.pem").read_bytes())
    (notes / "README").write_text("hi\n")
    serial = serial_hex(load(issued / "localhost" / "cert.pem").serial_number)
    for ref in (notes, notes / "cert.pem"):
        assert_clean_error(run_certkit("renew", ref, cwd=issued, env=ca_env), "holds a copy of the certificate")
    assert sorted(p.name for p in notes.iterdir()) == ["README", "cert.pem"]
    assert CADirectory(ca_dir).inventory.get(serial)["folder"] == str(issued / "localhost")
    run_certkit("renew", serial, cwd=issued, env=ca_env, check=True)  # the real bundle is renewed
    assert serial_hex(load(issued / "localhost" / "cert.pem").serial_number) != serial
    # A bundle folder that was moved is still renewed where it now is.
    (issued / "alice").rename(issued / "alice-moved")
    run_certkit("renew", issued / "alice-moved", cwd=issued, env=ca_env, check=True)
    assert pair_matches(issued / "alice-moved")


def _reader(folder: str, stop, counts) -> None:
    """Open the folder once per round and read cert and key through it: a consistent view."""
    from cryptography import x509 as _x509
    from cryptography.hazmat.primitives import serialization as _ser

    def read(dfd, name):
        fd = os.open(name, os.O_RDONLY, dir_fd=dfd)
        with os.fdopen(fd, "rb") as f:
            return f.read()

    checked = mismatched = missing = 0
    while not stop.is_set() or checked == 0:
        try:
            dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            missing += 1
            continue
        try:
            cert = _x509.load_pem_x509_certificate(read(dfd, "cert.pem"))
            key = _ser.load_pem_private_key(read(dfd, "privkey.pem"), None)
        finally:
            os.close(dfd)
        same = cert.public_key().public_bytes(_ser.Encoding.DER, _ser.PublicFormat.SubjectPublicKeyInfo) == \
            key.public_key().public_bytes(_ser.Encoding.DER, _ser.PublicFormat.SubjectPublicKeyInfo)
        checked += 1
        mismatched += not same
    counts.extend([checked, mismatched, missing])


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "fallback"])
def test_rekey_never_exposes_a_mismatched_pair(issued, ca_dir, exchange, monkeypatch):
    from certkit import bundle
    from certkit.renewal import renew_bundle

    if not exchange:
        monkeypatch.setattr(bundle, "exchange", lambda a, b: False)
    else:
        assert bundle.exchange.__name__ == "exchange"
    ca = CADirectory(ca_dir).load(PASSPHRASE.encode())
    folder = issued / "localhost"
    ctx = multiprocessing.get_context("spawn")
    manager = ctx.Manager()
    stop, counts = manager.Event(), manager.list()
    reader = ctx.Process(target=_reader, args=(str(folder), stop, counts))
    reader.start()
    try:
        for _ in range(8):
            renew_bundle(ca, str(folder), rekey=True)
            assert pair_matches(folder)
    finally:
        stop.set()
        reader.join(60)
    checked, mismatched, missing = list(counts)
    assert checked > 0 and mismatched == 0
    if exchange:
        assert missing == 0  # the folder is exchanged, never absent
    assert len(CADirectory(ca_dir).inventory.successors(serial_hex(load(folder / "cert.pem").serial_number))) == 0
    manager.shutdown()


@pytest.mark.skipif(not os.sys.platform.startswith("linux"), reason="renameat2 is Linux's")
def test_rename_exchange_is_used_on_linux(tmp_path):
    from certkit.folder_swap import exchange

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "one").write_text("1")
    assert exchange(tmp_path / "a", tmp_path / "b") is True
    assert (tmp_path / "b" / "one").exists() and not (tmp_path / "a" / "one").exists()


@pytest.mark.parametrize("command", [["issue-server", "app.internal"], ["issue-client", "app-client"]])
def test_a_bundle_replaced_with_force_is_not_due_any_more(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                         command: list[str]) -> None:
    """--force deletes the old bundle, key included: its certificate is recorded as replaced (the
    new one's predecessor), so bulk renewal neither renews it nor calls it moved, every day."""
    folder = tmp_path / "app"
    run_certkit(*command, "--days", "20", "--out", folder, env=ca_env, check=True)
    run_certkit(*command, "--days", "20", "--out", folder, "--force", env=ca_env, check=True)
    listed = json.loads(run_certkit("list", "--json", env=ca_env, check=True).stdout)["certificates"]
    new = next(c for c in listed if c["renewed_by"] is None)
    old = next(c for c in listed if c["renewed_by"] is not None)
    assert old["renewed_by"] == new["serial"]
    due = json.loads(run_certkit("list", "--expiring", "30d", "--json", env=ca_env, check=True).stdout)
    assert [c["serial"] for c in due["certificates"]] == [new["serial"]]
    proc = run_certkit("renew", "--expiring", "30d", "--days", "90", "--json", env=ca_env)
    data = json.loads(proc.stdout)
    assert proc.returncode == 0 and (data["renewed"], data["skipped"]) == (1, 0), data


def test_a_kept_key_that_others_can_read_is_said(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    """The key is kept as it is (hard-linked): a mode someone loosened goes on into the renewed
    bundle, so the renewal says so, with the chmod, in text and JSON, single and bulk."""
    folder = tmp_path / "perm"
    run_certkit("issue-server", "perm.internal", "--days", "10", "--out", folder, env=ca_env, check=True)
    (folder / "privkey.pem").chmod(0o644)
    proc = run_certkit("renew", folder, "--json", env=ca_env, check=True)
    assert any("mode 0644" in n and "chmod 600" in n for n in json.loads(proc.stdout)["notes"]), proc.stdout
    (folder / "privkey.pem").chmod(0o640)
    run_certkit("renew", folder, "--days", "10", env=ca_env, check=True)
    proc = run_certkit("renew", "--expiring", "30d", "--days", "90", env=ca_env, check=True)
    assert "mode 0640" in proc.stdout and "chmod 600" in proc.stdout, proc.stdout
    (folder / "privkey.pem").chmod(0o600)
    proc = run_certkit("renew", folder, "--json", env=ca_env, check=True)
    assert not any("mode" in n for n in json.loads(proc.stdout)["notes"])


def test_a_batch_with_force_records_what_it_replaced(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    (tmp_path / "m.csv").write_text("kind,names,days\nserver,b.example.com,10\nclient,Bea,10\n")
    run_certkit("issue-batch", tmp_path / "m.csv", "--out-dir", tmp_path / "d", env=ca_env, check=True)
    run_certkit("issue-batch", tmp_path / "m.csv", "--out-dir", tmp_path / "d", "--force", env=ca_env, check=True)
    listed = json.loads(run_certkit("list", "--json", env=ca_env, check=True).stdout)["certificates"]
    assert sorted(c["renewed_by"] is None for c in listed) == [False, False, True, True]
    due = json.loads(run_certkit("list", "--expiring", "30d", "--json", env=ca_env, check=True).stdout)
    assert due["count"] == 2


def test_renewing_over_another_valid_bundle_is_refused(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    """renew X --out Y --force where Y holds another valid certificate's bundle: its key would go and
    it would stay valid with no record of being replaced (the renewal succeeds X, not it)."""
    run_certkit("issue-server", "x.example.com", "--out", tmp_path / "x", env=ca_env, check=True)
    run_certkit("issue-server", "y.example.com", "--out", tmp_path / "y", env=ca_env, check=True)
    before = (tmp_path / "y" / "privkey.pem").read_bytes()
    proc = run_certkit("renew", tmp_path / "x", "--out", tmp_path / "y", "--force", env=ca_env)
    assert_clean_error(proc, "which is still valid")
    assert (tmp_path / "y" / "privkey.pem").read_bytes() == before
    y_serial = next(c["serial"] for c in json.loads(run_certkit("list", "--json", env=ca_env).stdout)["certificates"]
                    if c["subject"] == "CN=y.example.com")
    run_certkit("revoke", y_serial, "--reason", "superseded", env=ca_env, check=True)
    run_certkit("renew", tmp_path / "x", "--out", tmp_path / "y", "--force", env=ca_env, check=True)


def test_renewing_a_certificate_delivered_into_a_file_says_where_it_went(tmp_path: Path, ca_dir: Path,
                                                                         ca_env: dict) -> None:
    run_certkit("issue-server", "j.example.com", "--format", "jsonl", "--out", tmp_path / "j.jsonl", env=ca_env,
                check=True)
    proc = run_certkit("renew", "j.example.com", env=ca_env)
    assert_clean_error(proc, "delivered into the output file")
    assert "j.jsonl" in proc.stderr and "was moved" not in proc.stderr and "with --out" in proc.stderr


@pytest.mark.parametrize("rekey", [[], ["--rekey"]])
def test_renew_into_another_folder_says_nothing_on_stderr(issued, ca_env, rekey):
    """Renewing into --out reads the old key to check it; with cryptography 50 that check named the
    deprecated finite-field DH key class and printed its deprecation warning as a 'Warning:' line."""
    proc = run_certkit("renew", "localhost", "--out", "renewed", *rekey, cwd=issued, env=ca_env, subprocess=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert pair_matches(issued / "renewed")
