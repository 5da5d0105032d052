"""The library API after audit library6: extra files holding keys are private and a replaced file never
loosens, CA parts must chain, an in-memory renewal never strands a bundle folder, rekey works for every key
certkit certifies, key_type beside key= is checked, flags take bools only, revoke takes a serial prefix and
no time before notBefore, wrong types are named, and library errors give library advice."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from certkit import CA, CADirectory, CertkitError
from certkit.errors import CannotRenew, InvalidArgument, InvalidCSR, UnknownCertificate
from certkit.issuing import FolderTarget, deliver, server_request

from conftest import PASSPHRASE, certkit_env, openssl, run_certkit


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create("Audit6 Library CA")


@pytest.fixture
def env(tmp_path: Path, ca_template: Path) -> dict[str, str]:
    """The CLI with a CA directory (a copy of the session's) and a home of this test's own."""
    shutil.copytree(ca_template, tmp_path / "ca")
    (tmp_path / "home").mkdir()
    return certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path / "home"),
                       CERTKIT_CA_PASSPHRASE=PASSPHRASE)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def serial_in(folder: Path) -> str:
    from certkit.vocabulary import serial_hex

    return serial_hex(x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes()).serial_number)


def listing(env: dict[str, str]) -> dict[str, dict]:
    data = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)
    return {row["serial"]: row for row in data["certificates"]}


def csr_pem(key, cn: str | None, *dns: str) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []))
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns]), False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


# --- 1. extra files: private unless plainly public; a replaced file never loosens --------------------------
def test_extra_files_holding_secrets_are_0600_and_force_never_loosens(ca: CA, tmp_path: Path) -> None:
    server = ca.issue_server("localhost")
    p12 = pkcs12.serialize_key_and_certificates(b"web", server.private_key, server.cert, None,
                                                serialization.NoEncryption())
    web = tmp_path / "web"
    server.write(web, extra={"server.key": server.private_key_pem, "bundle.pfx": p12, "keystore.jks": b"\xfe\xed",
                             "tls": server.private_key_pem, "notes.txt": b"anything", "root-copy.pem": server.ca_pem})
    modes = {name: mode(web / name) for name in os.listdir(web)}
    assert modes == {"cert.pem": 0o644, "privkey.pem": 0o600, "fullchain.pem": 0o644, "ca.pem": 0o644,
                     "server.key": 0o600, "bundle.pfx": 0o600, "keystore.jks": 0o600, "tls": 0o600,
                     "notes.txt": 0o600, "root-copy.pem": 0o644}
    # Over an existing folder: a user's 0600 files stay 0600, the bundle's own as well as extra ones.
    other = tmp_path / "web2"
    other.mkdir()
    for name in ("tls.key", "chain-copy.pem"):
        (other / name).write_bytes(b"old")
        os.chmod(other / name, 0o600)
    extra = {"tls.key": server.private_key_pem, "chain-copy.pem": server.ca_pem}
    server.write(other, force=True, extra=extra)
    assert mode(other / "tls.key") == mode(other / "chain-copy.pem") == 0o600
    os.chmod(other / "cert.pem", 0o600)
    server.write(other, force=True, extra=extra)
    assert (other / "tls.key").read_bytes() == server.private_key_pem
    assert {n: mode(other / n) for n in ("tls.key", "chain-copy.pem", "cert.pem", "privkey.pem")} == dict.fromkeys(
        ("tls.key", "chain-copy.pem", "cert.pem", "privkey.pem"), 0o600)


# --- 2. CA(cert, key, parents) must chain ----------------------------------------------------------------
def test_ca_parts_must_chain_to_a_root(tmp_path: Path) -> None:
    root, other = CA.create("Real Root"), CA.create("Other Root")
    inter = CA.create("Inter", parent=root)
    for parents, said in (([], "no parents were given"), ([other.cert], "is not signed by CN=Other Root"),
                          ([root.cert, other.cert], "go on after the root CN=Real Root")):
        with pytest.raises(InvalidArgument, match=said):
            CA(inter.cert, inter.key, parents)
    # The whole chain is taken, and what it issues verifies strictly.
    rebuilt = CA(inter.cert, inter.key, [root.cert])
    rebuilt.issue_server("localhost").write(tmp_path / "ok")
    ok = tmp_path / "ok"
    proc = openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", ok / "ca.pem", "-untrusted",
                   ok / "fullchain.pem", ok / "cert.pem")
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- 3. an in-memory renewal never strands a bundle folder -------------------------------------------------
def test_memory_renewal_leaves_the_folder_due_for_bulk_renewal(env: dict[str, str], tmp_path: Path) -> None:
    for name in ("web", "ctl"):
        run_certkit("issue-server", f"{name}.example", "--out", tmp_path / name, "--days", "10", env=env, check=True)
    old = serial_in(tmp_path / "web")
    ca = CADirectory(tmp_path / "ca").load(PASSPHRASE)
    new = ca.renew(x509.load_pem_x509_certificate((tmp_path / "web" / "cert.pem").read_bytes()))
    assert any("stays due for renewal" in note for note in new.notes)
    assert ca.inventory.successors(old) == []
    listed = listing(env)
    assert not listed[old].get("renewed_by")
    bulk = run_certkit("renew", "--expiring", "30d", env=env, check=True)
    assert "Renewed 2 of 2" in bulk.stdout, bulk.stdout
    assert serial_in(tmp_path / "web") not in (old, new.serial_hex)
    assert run_certkit("check", env=env).returncode == 0


def test_writing_the_renewal_over_the_folder_records_the_succession(env: dict[str, str], tmp_path: Path) -> None:
    web = tmp_path / "web"
    run_certkit("issue-server", "web.example", "--out", web, "--days", "10", env=env, check=True)
    old_serial = serial_in(web)
    ca = CADirectory(tmp_path / "ca").load(PASSPHRASE)
    old = x509.load_pem_x509_certificate((web / "cert.pem").read_bytes())
    new = ca.renew(old)
    new.write(web, force=True)
    row = ca.inventory.get(new.serial_hex)
    assert (row["folder"], row["sink"], row["renewed_from"]) == (str(web), "folder", old_serial)
    assert "valid (renewed)" in run_certkit("list", "--name", "web.example", env=env, check=True).stdout
    # Renewing the old one again is refused in plain words (nothing ran meanwhile).
    with pytest.raises(CannotRenew, match=f"already renewed as {new.serial_hex}") as refused:
        ca.renew(old)
    assert "meanwhile" not in str(refused.value)
    # The command line renews the folder: the library's renewal, not the old certificate a second time.
    proc = run_certkit("renew", web, "--json", env=env, check=True)
    assert json.loads(proc.stdout)["renewed_from"] == new.serial_hex
    assert run_certkit("check", env=env).returncode == 0


def test_a_certificate_issued_to_memory_is_recorded_where_it_is_written(env: dict[str, str], tmp_path: Path) -> None:
    ca = CADirectory(tmp_path / "ca").load(PASSPHRASE)
    issued = ca.issue_server("mem.example", days=10)
    issued.write(tmp_path / "mem")
    assert ca.inventory.get(issued.serial_hex)["folder"] == str(tmp_path / "mem")
    run_certkit("renew", "--expiring", "30d", env=env, check=True)
    assert serial_in(tmp_path / "mem") != issued.serial_hex


# --- 4. rekey for every key certkit certifies ---------------------------------------------------------------
def test_rekey_keeps_p521_and_rounds_an_rsa_size_up(ca: CA) -> None:
    p521 = ca.issue_server("p521.example", key=ec.generate_private_key(ec.SECP521R1()))
    assert ca.renew(p521, rekey=True).cert.public_key().curve.name == "secp521r1"
    rsa2560 = ca.issue_server("r2560.example", key=rsa.generate_private_key(65537, 2560))
    renewed = ca.renew(rsa2560, rekey=True)
    assert renewed.cert.public_key().key_size == 3072
    assert any("rsa-2560" in note and "rsa-3072" in note for note in renewed.notes)


def test_cli_rekey_of_a_p521_csr_bundle(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "r521.csr").write_bytes(csr_pem(ec.generate_private_key(ec.SECP521R1()), "p521.example",
                                                "p521.example"))
    run_certkit("sign-csr", tmp_path / "r521.csr", "--server", "--out", tmp_path / "b521", env=env, check=True)
    # A CSR's requester holds the key: --rekey makes none for it (audit fleet8 #5); the renewal keeps it.
    refused = run_certkit("renew", tmp_path / "b521", "--rekey", env=env)
    assert refused.returncode == 1 and "was signed from a CSR" in refused.stderr, refused.stderr
    proc = run_certkit("renew", tmp_path / "b521", env=env)
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "b521"
    cert = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes())
    assert cert.public_key().curve.name == "secp521r1"
    verified = openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", folder / "ca.pem",
                       folder / "cert.pem")
    assert verified.returncode == 0, verified.stdout + verified.stderr


# --- 5. key_type beside key= ---------------------------------------------------------------------------------
@pytest.mark.parametrize("call", ["issue_server", "issue_peer", "issue_client", "create"])
def test_key_type_beside_key_must_name_its_type(ca: CA, call: str) -> None:
    def run(key_type):
        key = ec.generate_private_key(ec.SECP384R1())
        if call == "create":
            return CA.create("KT", key=key, key_type=key_type)
        return getattr(ca, call)("alice" if call == "issue_client" else "a.example", key=key, key_type=key_type)

    with pytest.raises(InvalidArgument, match="is ecdsa-p384, but key_type asks for rsa-4096"):
        run("rsa-4096")
    with pytest.raises(InvalidArgument, match="Unknown key type 'dsa'"):
        run("dsa")
    assert run("ecdsa-p384").cert.public_key().curve.name == "secp384r1"


# --- 6. flags take bools only --------------------------------------------------------------------------------
def test_flags_refuse_non_bools_before_anything_is_written(ca: CA, tmp_path: Path) -> None:
    first = ca.issue_server("a.example")
    first.write(tmp_path / "fb")
    for call, name in ((lambda: ca.issue_server("b.example").write(tmp_path / "fb", force="no"), "force"),
                       (lambda: ca.renew(first, rekey="no"), "rekey"),
                       (lambda: FolderTarget(tmp_path / "fb", force="no"), "force"),
                       (lambda: FolderTarget(tmp_path / "fb", p12=1), "p12")):
        with pytest.raises(TypeError, match=f"^{name} must be a bool") as refused:
            call()
        assert isinstance(refused.value, InvalidArgument)
    assert serial_in(tmp_path / "fb") == first.serial_hex


# --- 7 and 10. revoke: a unique prefix; no time before notBefore ----------------------------------------------
def test_revoke_takes_a_unique_prefix_and_no_time_before_not_before(env: dict[str, str], tmp_path: Path) -> None:
    for name in ("a", "b"):
        run_certkit("issue-server", f"{name}.example", "--out", tmp_path / name, env=env, check=True)
    ca = CADirectory(tmp_path / "ca").open()
    serial_a, serial_b = serial_in(tmp_path / "a"), serial_in(tmp_path / "b")
    with pytest.raises(UnknownCertificate, match="too short a serial prefix"):
        ca.revoke(serial_a[:6])
    assert ca.revoke(serial_a[:8].lower())["serial"] == serial_a
    listed = listing(env)
    assert listed[serial_a]["status"] == "revoked"
    with pytest.raises(CertkitError, match="before the certificate's notBefore"):
        ca.revoke(serial_b, when=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    assert ca.inventory.get(serial_b)["status"] == "valid"
    cert_b = x509.load_pem_x509_certificate((tmp_path / "b" / "cert.pem").read_bytes())
    assert ca.revoke(serial_b, when=cert_b.not_valid_before_utc)["status"] == "revoked"


# --- 8. wrong types, named ---------------------------------------------------------------------------------
def test_wrong_types_name_the_argument(ca: CA, env: dict[str, str], tmp_path: Path) -> None:
    directory = CADirectory(tmp_path / "ca")
    calls = {
        "inventory": lambda: CA(ca.cert, ca.key, inventory="x"),
        "store": lambda: CA(ca.cert, ca.key, store="x"),
        "folder": lambda: FolderTarget(None),
        "request": lambda: deliver(ca, "x"),
        "path": lambda: CADirectory(5),
        "days": lambda: directory.load(PASSPHRASE).crl(days=True),
    }
    for name, call in calls.items():
        with pytest.raises(TypeError, match=f"^{name} must be "):
            call()
    with pytest.raises(TypeError, match="^folder must be a str or a Path, got bytes"):
        deliver(ca, server_request("a.example"), FolderTarget(b"out"))
    with pytest.raises(CertkitError, match=r"is locked .*unlock\(\) it"):
        CADirectory(tmp_path / "n2").save_new(directory.open(), PASSPHRASE.encode())
    # A str passphrase is taken as UTF-8, as unlock() takes it.
    CADirectory(tmp_path / "n1").save_new(CA.create("Saved"), "a long passphrase")
    assert CADirectory(tmp_path / "n1").load(b"a long passphrase").common_name == "Saved"


# --- 9. library advice in Python's terms; the command line keeps its own ---------------------------------------
def test_library_errors_give_library_advice(ca: CA, env: dict[str, str], tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(InvalidCSR, match=r"sign_csr\(csr, 'client'\)") as email:
        ca.sign_csr(csr_pem(key, "alice@example.com"), "server")
    with pytest.raises(InvalidCSR, match=r"extra_names=\[") as nameless:
        ca.sign_csr(csr_pem(key, None), "server")
    with pytest.raises(CertkitError, match="passphrase=None") as empty:
        CADirectory(tmp_path / "n3").save_new(ca, b"")
    for said in (email, nameless, empty):
        assert "--" not in str(said.value) and "after the CSR file" not in str(said.value)
    (tmp_path / "nameless.csr").write_bytes(csr_pem(key, None))
    proc = run_certkit("sign-csr", tmp_path / "nameless.csr", "--server", "--out", tmp_path / "x", env=env)
    assert proc.returncode == 1 and "arguments after the CSR file" in proc.stderr, proc.stderr
