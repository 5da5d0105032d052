"""Audit round eight, bad input (report badinput8): bundle files that are not what their names say.

1. renew (in place and bulk) and issue-server/issue-client/sign-csr/issue-batch --force never remove a folder (with
   the user's files in it) or a symbolic link named like a bundle file the new bundle does not write (bundle.p12,
   chain.pem): it is refused as a written name is, before anything is signed, nothing recorded; one put there
   while the bundle is being replaced (folder swap or journal) is left alone; renew says a bundle.p12 "was
   removed" only of a regular file, without claiming what it held;
5. export-p12 packs only the CA certificates of the chain: a leaf in ca.pem or chain.pem is refused and named,
   as verify names it; a CA off the chain, and a second certificate in cert.pem, are named in a warning;
11. export-p12 warns of a certificate that has expired or is not valid yet.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import assert_clean_error, openssl, run_certkit
from integrity_helpers import start_paused, temporaries_under

NAME = "web.test"
BUNDLE = ("cert.pem", "privkey.pem", "fullchain.pem", "ca.pem")
P12_PASSWORD = "p12 test password"


def rows(env: dict) -> int:
    return run_certkit("list", "--json", env=env, check=True).stdout.count('"serial"')


def bundle_bytes(folder: Path) -> dict[str, bytes]:
    return {n: (folder / n).read_bytes() for n in BUNDLE if (folder / n).is_file()}


def plant(folder: Path, name: str, kind: str) -> Path:
    """The user's own thing under a bundle file's name: a folder with notes in it, or a link to a file elsewhere."""
    outside = folder.parent / "mine.txt"
    outside.write_text("my notes\n")
    if kind == "folder":
        (folder / name / "keep").mkdir(parents=True)
        (folder / name / "keep" / "notes.txt").write_text("my notes\n")
        return folder / name / "keep" / "notes.txt"
    (folder / name).symlink_to(outside)
    return outside


def command_for(how: str, folder: Path, tmp_path: Path) -> list:
    if how == "sign-csr":
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                tmp_path / "r.key", "-subj", f"/CN={NAME}", "-addext", f"subjectAltName=DNS:{NAME}", "-out",
                tmp_path / "r.csr")
        return ["sign-csr", tmp_path / "r.csr", "--server", "--out", folder, "--force"]
    if how == "issue-batch":
        (tmp_path / "m.csv").write_text(f"kind,names\nserver,{NAME}\n")
        return ["issue-batch", tmp_path / "m.csv", "--out-dir", folder.parent, "--force"]
    return {"renew": ["renew", folder], "renew-journal": ["renew", folder], "renew-all": ["renew", "--all"],
            "renew-rekey": ["renew", "--rekey", folder],
            "issue-server": ["issue-server", NAME, "--out", folder, "--force"],
            "issue-client": ["issue-client", "alice", "--out", folder, "--force"]}[how]


# --- 1. a folder or link under a bundle file's name is never removed -------------------------------------------
@pytest.mark.parametrize("name,kind", [("bundle.p12", "folder"), ("chain.pem", "folder"), ("chain.pem", "link"),
                                       ("bundle.p12", "link")])
@pytest.mark.parametrize("how", ["renew", "renew-journal", "renew-all", "renew-rekey", "issue-server",
                                 "issue-client", "sign-csr", "issue-batch"])
def test_a_folder_or_link_named_like_a_leftover_is_refused_before_signing(ca_dir, ca_env, tmp_path, how, name,
                                                                           kind):
    folder = tmp_path / NAME
    run_certkit("issue-server", NAME, "--out", folder, env=ca_env, check=True)
    if how == "renew-journal":  # a file of the user's beside the bundle: replaced through the journal
        (folder / "deploy.log").write_text("log\n")
    args = command_for(how, folder, tmp_path)
    mine, before, count = plant(folder, name, kind), bundle_bytes(folder), rows(ca_env)
    proc = run_certkit(*args, env=ca_env, cwd=tmp_path)
    what = "a folder, not a file" if kind == "folder" else f"a symbolic link to {mine}, not a file of its own"
    said = f"{folder / name} is {what}; certkit will not remove it"
    if how == "renew-all":  # each failure on its line, then the summary
        assert proc.returncode == 1 and said in proc.stdout, (proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
    else:
        assert_clean_error(proc, said)
    assert mine.read_text() == "my notes\n"
    assert os.path.lexists(folder / name) and (folder / name).is_symlink() == (kind == "link")
    assert bundle_bytes(folder) == before
    assert rows(ca_env) == count  # nothing signed, nothing recorded
    assert not temporaries_under(tmp_path)


@pytest.mark.parametrize("journal", [False, True], ids=["swap", "journal"])
def test_a_folder_put_in_place_of_a_leftover_while_replacing_is_left_alone(ca_dir, ca_env, tmp_path, journal):
    """Checked before signing, a regular bundle.p12 becomes a folder of the user's while the new bundle is staged:
    the folder swapped whole, or the journal, carries it away no more (it was deleted with the old bundle)."""
    folder = tmp_path / NAME
    run_certkit("issue-server", NAME, "--out", folder, env=ca_env, check=True)
    (folder / "bundle.p12").write_bytes(b"the old bundle's p12")
    if journal:
        (folder / "deploy.log").write_text("log\n")
    proc = start_paused(["renew", folder], ca_env, tmp_path, "staged", tmp_path / "pause")
    (folder / "bundle.p12").unlink()
    notes = plant(folder, "bundle.p12", "folder")
    (tmp_path / "pause").unlink()
    out, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err
    assert notes.read_text() == "my notes\n", (proc.returncode, out, err)
    assert not temporaries_under(tmp_path)


@pytest.mark.parametrize("content", [b"junk, not PKCS#12\n", b""], ids=["junk", "empty"])
def test_renew_says_a_regular_bundle_p12_was_removed_without_claiming_what_it_held(ca_dir, ca_env, tmp_path,
                                                                                    content):
    folder = tmp_path / NAME
    run_certkit("issue-server", NAME, "--out", folder, env=ca_env, check=True)
    (folder / "bundle.p12").write_bytes(content)
    proc = run_certkit("renew", folder, env=ca_env, check=True)
    assert f"{folder}/bundle.p12 was the old bundle's bundle.p12 and was removed; export it again" in proc.stdout
    assert "held the old certificate" not in proc.stdout
    assert not (folder / "bundle.p12").exists()


# --- 5. export-p12 packs the CA certificates of the chain only -------------------------------------------------
@pytest.fixture
def p12_folder(ca_dir, ca_env, tmp_path) -> Path:
    folder = tmp_path / "a"
    run_certkit("issue-server", "a.example", "--out", folder, env=ca_env, check=True)
    run_certkit("issue-client", "bob", "--out", tmp_path / "bob", env=ca_env, check=True)
    password = tmp_path / "pw"
    password.touch(0o600)
    password.write_text(P12_PASSWORD + "\n")
    return folder


def export(folder: Path, env: dict, *extra: str):
    return run_certkit("export-p12", folder, "--password-file", folder.parent / "pw", *extra, env=env)


def packed_subjects(folder: Path) -> list[str]:
    proc = openssl("pkcs12", "-in", folder / "bundle.p12", "-passin", f"pass:{P12_PASSWORD}", "-nokeys")
    assert proc.returncode == 0, proc.stderr
    return [line.split("=", 1)[1].strip() for line in proc.stdout.decode().splitlines() if line.startswith("subject=")]


@pytest.mark.parametrize("where", ["ca.pem", "chain.pem"])
def test_export_p12_refuses_a_leaf_in_the_ca_files(ca_env, tmp_path, p12_folder, where):
    bob = (tmp_path / "bob" / "cert.pem").read_bytes()
    if where == "ca.pem":
        (p12_folder / "ca.pem").write_bytes((p12_folder / "ca.pem").read_bytes() + bob)
    else:
        (p12_folder / "chain.pem").write_bytes(bob)
    proc = export(p12_folder, ca_env)
    assert_clean_error(proc, f"{p12_folder / where} holds CN=bob, a client certificate, not a CA certificate")
    assert not (p12_folder / "bundle.p12").exists()


def test_export_p12_leaves_out_a_ca_off_the_chain_and_says_so(ca_env, tmp_path, p12_folder):
    from certkit.ca import CA

    other = CA.create("Other root").cert
    ca_pem = (p12_folder / "ca.pem").read_bytes()
    (p12_folder / "ca.pem").write_bytes(ca_pem + other.public_bytes(serialization.Encoding.PEM))
    proc = export(p12_folder, ca_env)
    assert proc.returncode == 0, proc.stderr
    assert "key, certificate and 1 CA certificate\n" in proc.stdout
    assert "Warning: CN=Other root" in proc.stderr and "is left out of the file" in proc.stderr
    assert packed_subjects(p12_folder) == ["CN = a.example", "CN = certkit test root"]


def test_export_p12_says_it_packs_only_the_first_certificate_of_cert_pem(ca_env, tmp_path, p12_folder):
    bob = (tmp_path / "bob" / "cert.pem").read_bytes()
    (p12_folder / "cert.pem").write_bytes((p12_folder / "cert.pem").read_bytes() + bob)
    proc = export(p12_folder, ca_env)
    assert proc.returncode == 0, proc.stderr
    assert (f"Warning: {p12_folder / 'cert.pem'} holds 2 certificates; only the first, CN=a.example, is packed "
            "(the others: CN=bob)") in proc.stderr
    assert packed_subjects(p12_folder) == ["CN = a.example", "CN = certkit test root"]


# --- 11. export-p12 warns of a certificate outside its validity -----------------------------------------------
@pytest.mark.parametrize("when", ["expired", "not yet valid"])
def test_export_p12_warns_of_a_certificate_outside_its_validity(ca_dir, ca_env, tmp_path, when):
    from certkit.ca import CA

    ca, key = CA.create("Validity root"), ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start, end = (now - dt.timedelta(days=30), now - dt.timedelta(days=1)) if when == "expired" else \
        (now + dt.timedelta(days=2), now + dt.timedelta(days=30))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "exp.test")]))
            .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca.key, hashes.SHA256()))
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "ca.pem").write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    (folder / "privkey.pem").touch(0o600)
    (folder / "privkey.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    (tmp_path / "pw").touch(0o600)
    (tmp_path / "pw").write_text(P12_PASSWORD + "\n")
    proc = export(folder, ca_env)
    assert proc.returncode == 0, proc.stderr
    said = (f"Warning: the certificate expired on {end:%Y-%m-%d %H:%M:%S} UTC: every verifier refuses it; renew it"
            if when == "expired" else
            f"Warning: the certificate is not valid before {start:%Y-%m-%d %H:%M:%S} UTC: every verifier refuses it "
            "until then")
    assert said in proc.stderr, proc.stderr
