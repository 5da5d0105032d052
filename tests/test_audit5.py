"""Audit round five (reports library5, state5, badinput5), each finding as a class of defect, with
real peers (openssl, cryptography's verifier, the CLI as a user runs it):

1. a bundle written into an existing folder never removes files without ``--force`` (a CSR's own key,
   a user's bundle.p12 or chain.pem), and never the key of the certificate it writes, even with it;
2. ``CA(cert, key, parents)`` refuses a key that is not the CA's, a leaf as a CA, and wrong types.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certkit import CA, CertkitError
from certkit.vocabulary import serial_hex

from conftest import assert_clean_error, certkit_env, openssl, run_certkit
from integrity_helpers import make_schema_one


def spki(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def csr_with_key(folder: Path, name: str) -> Path:
    """What a requester does: ``openssl req -keyout FOLDER/privkey.pem``, the CSR beside it."""
    folder.mkdir(exist_ok=True)
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(folder / "privkey.pem"), "-out", str(folder / "req.csr"), "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name}"], check=True, capture_output=True)
    return folder / "req.csr"


# --- 1. leftovers of a folder: refused without --force, the certificate's own key always kept -----------------
def test_sign_csr_into_the_requesters_folder_keeps_its_key(ca_dir: Path, ca_env: dict, tmp_path: Path):
    """library5 #1: the key of the CSR, which openssl req wrote beside it, was deleted; the bundle is
    now the one a server loads (openssl s_server takes privkey.pem with cert.pem)."""
    folder = tmp_path / "web"
    csr = csr_with_key(folder, "web.example")
    key_before = (folder / "privkey.pem").read_bytes()
    for force in ((), ("--force",)):
        proc = run_certkit("sign-csr", csr, "--server", "--out", folder, *force, env=ca_env)
        assert proc.returncode == 0, proc.stderr
        assert (folder / "privkey.pem").read_bytes() == key_before
        assert sorted(os.listdir(folder)) == ["ca.pem", "cert.pem", "fullchain.pem", "privkey.pem", "req.csr"]
        check = openssl("x509", "-in", str(folder / "cert.pem"), "-noout", "-pubkey")
        key = openssl("pkey", "-in", str(folder / "privkey.pem"), "-pubout")
        assert check.stdout == key.stdout
        if not force:
            (folder / "cert.pem").unlink()  # the first run's files, but not its key: the folder as a user left it
            (folder / "fullchain.pem").unlink()
            (folder / "ca.pem").unlink()


COMMANDS = [("issue-server", "a.example"), ("issue-client", "alice"), ("issue-peer", "p.example"),
            ("sign-csr", "CSR", "--server")]


# (a keyed bundle writes its own privkey.pem: one there is a replaced file, refused as ever)
@pytest.mark.parametrize("command,left", [(c, f) for c in COMMANDS for f in ("bundle.p12", "chain.pem")]
                         + [(COMMANDS[-1], "privkey.pem")])
def test_files_a_bundle_would_leave_out_are_refused_without_force(ca_dir: Path, ca_env: dict, tmp_path: Path,
                                                                   command: tuple, left: str):
    """library5 #1, every command and every file of another bundle: refused in one line, nothing written;
    with --force they go (a privkey.pem of another key included)."""
    folder = tmp_path / "out"
    folder.mkdir()
    other = tmp_path / "other"
    args = [a if a != "CSR" else str(csr_with_key(other, "c.example")) for a in command]
    (folder / left).write_bytes(CA.create("Another").issue_server("x.example").private_key_pem
                                if left == "privkey.pem" else b"the user's own file\n")
    (folder / "notes.txt").write_text("kept\n")
    proc = run_certkit(*args, "--out", folder, env=ca_env)
    assert_clean_error(proc, f"already holds {left}, which writing this bundle there would remove")
    assert sorted(os.listdir(folder)) == sorted([left, "notes.txt"])
    assert run_certkit("list", "--json", env=ca_env).stdout.count('"serial"') == 0
    proc = run_certkit(*args, "--out", folder, "--force", env=ca_env)
    assert proc.returncode == 0, proc.stderr
    assert left not in os.listdir(folder)  # (a privkey.pem of another certificate: sign-csr's CSR key is elsewhere)
    assert (folder / "notes.txt").read_text() == "kept\n"


def test_library_write_keeps_the_key_of_a_renewal_in_place(tmp_path: Path):
    """library5 #2: ca.renew(old.cert).write(folder, force=True) removed the renewed certificate's own
    key, which docs/library.md says stays; without force the write is refused and the folder unchanged."""
    ca = CA.create("Renew in place")
    old = ca.issue_server("localhost")
    folder = tmp_path / "b"
    old.write(folder)
    renewed = ca.renew(old.cert)
    assert renewed.private_key is None
    (folder / "bundle.p12").write_bytes(b"p12 of the old bundle")
    with pytest.raises(CertkitError, match="already holds"):
        renewed.write(folder)
    renewed.write(folder, force=True)
    assert sorted(os.listdir(folder)) == ["ca.pem", "cert.pem", "fullchain.pem", "privkey.pem"]
    key = serialization.load_pem_private_key((folder / "privkey.pem").read_bytes(), None)
    assert spki(key.public_key()) == spki(renewed.cert.public_key())
    assert openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", str(folder / "ca.pem"),
                   str(folder / "cert.pem")).returncode == 0


# --- 2. CA(cert, key, parents) ---------------------------------------------------------------------------------
def test_ca_constructor_refuses_what_would_sign_unverifiable_certificates():
    """library5 #3: another CA's key signed certificates that do not verify; a leaf acted as a CA."""
    a, b = CA.create("A parts"), CA.create("B parts")
    with pytest.raises(CertkitError, match="not the key of the CA certificate"):
        CA(a.cert, b.key)
    leaf = a.issue_server("localhost")
    with pytest.raises(CertkitError, match="is not a CA certificate"):
        CA(leaf.cert, leaf.private_key)
    with pytest.raises(CertkitError, match="is not a CA certificate"):
        CA(a.cert, a.key, [leaf.cert])
    for cert, key, parents, named in (("x", None, (), "cert"), (a.cert, a.key, ["x"], "parents"),
                                      (a.cert, a.key, a.cert.public_bytes(serialization.Encoding.PEM), "parents"),
                                      (a.cert, "key", (), "key")):
        with pytest.raises(TypeError, match=f"^{named} must be"):
            CA(cert, key, parents)
    # What is right still works, and what it signs verifies (cryptography's own verifier).
    inter = CA.create("Inter parts", parent=a)
    again = CA(inter.cert, inter.key, inter.parents)
    issued = again.issue_server("localhost")
    store = x509.verification.Store([a.cert])
    verifier = x509.verification.PolicyBuilder().store(store).build_server_verifier(x509.DNSName("localhost"))
    assert verifier.verify(issued.cert, [inter.cert])
    assert CA(a.cert, None).key is None  # a locked CA (opened from a directory) has no key yet


# --- 3. a CRL after an inventory restored from a backup ------------------------------------------------------
def test_crl_never_drops_a_revocation_the_published_crl_lists(ca_dir: Path, ca_env: dict, tmp_path: Path):
    """state5 #1: after the restore certkit advises, the next run blamed a 'certkit crl' that never ran,
    and the run after published a CRL without the keyCompromise revocation (openssl verify -crl_check
    then said OK). Now: refused, naming the serial and its reason, until it is recorded again; the
    next CRL is numbered above the published one and lists it."""
    crl = tmp_path / "crl.pem"
    run_certkit("issue-server", "web.test", "--out", tmp_path / "web", env=ca_env, check=True)
    run_certkit("crl", "--out", crl, env=ca_env, check=True)
    backup = (ca_dir / "inventory.sqlite3").read_bytes()
    run_certkit("revoke", tmp_path / "web", "--reason", "keyCompromise", env=ca_env, check=True)
    run_certkit("crl", "--out", crl, env=ca_env, check=True)
    published = crl.read_bytes()
    for extra in ("-wal", "-shm"):
        (ca_dir / f"inventory.sqlite3{extra}").unlink(missing_ok=True)
    (ca_dir / "inventory.sqlite3").write_bytes(backup)
    serial = x509.load_pem_x509_certificate((tmp_path / "web" / "cert.pem").read_bytes()).serial_number
    for _ in range(2):  # cron runs again: refused every time, the published CRL kept
        proc = run_certkit("crl", "--out", crl, env=ca_env)
        assert_clean_error(proc, "lists 1 revoked certificate that the inventory holds but does not record as "
                                 f"revoked: {serial_hex(serial)} (keyCompromise)")
        assert crl.read_bytes() == published
    run_certkit("revoke", f"{serial_hex(serial)}", "--reason", "keyCompromise", env=ca_env, check=True)
    proc = run_certkit("crl", "--out", crl, env=ca_env, check=True)
    assert proc.stdout.startswith('Wrote CRL number 3 of "certkit test root"'), proc.stdout
    listed = x509.load_pem_x509_crl(crl.read_bytes())
    assert listed.get_revoked_certificate_by_serial_number(serial) is not None
    check = openssl("verify", "-crl_check", "-CAfile", str(ca_dir / "ca.pem"), "-CRLfile", str(crl),
                    str(tmp_path / "web" / "cert.pem"))
    assert check.returncode != 0 and b"certificate revoked" in check.stdout + check.stderr


# --- 4. a bundle folder of one's own in a folder one cannot write --------------------------------------------
def obeying_modes() -> list[str]:
    """A prefix under which file modes count: root without the capabilities that bypass them."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is needed to run as root without CAP_DAC_OVERRIDE")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner,-chown", "--inh-caps=-all"]


def test_bundles_in_a_read_only_parent_are_replaced_in_place(ca_dir: Path, ca_env: dict, tmp_path: Path):
    """files5 #1: /etc/ssl/web of a service account under a /etc/ssl it cannot write: renew, bulk renew,
    --force and export-p12 failed ("Permission denied"), each leaving a signed certificate abandoned."""
    parent = tmp_path / "srv"
    parent.mkdir()
    run_certkit("issue-server", "web.test", "--out", parent / "web", env=ca_env, check=True)
    secret = tmp_path / "pw"
    secret.write_text("a p12 password\n")
    secret.chmod(0o600)
    parent.chmod(0o555)
    try:
        for args in (("renew", parent / "web"), ("renew", "--all"), ("issue-server", "web.test", "--out",
                     parent / "web", "--force"), ("export-p12", parent / "web", "--password-file", secret)):
            proc = subprocess.run([*obeying_modes(), sys.executable, "-m", "certkit", *map(str, args)], env=ca_env,
                                  capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, (args, proc.stderr)
    finally:
        parent.chmod(0o755)
    assert sorted(os.listdir(parent)) == ["web"]
    assert sorted(os.listdir(parent / "web")) == ["bundle.p12", "ca.pem", "cert.pem", "fullchain.pem", "privkey.pem"]
    rows = json.loads(run_certkit("list", "--json", env=ca_env).stdout)["certificates"]
    assert sorted(r["status"] for r in rows) == ["valid"] * 4 and sum(not r["renewed_by"] for r in rows) == 1, rows
    assert json.loads(run_certkit("list", "--json", "--status", "abandoned", env=ca_env).stdout)["certificates"] == []
    assert openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", str(parent / "web" / "ca.pem"),
                   str(parent / "web" / "cert.pem")).returncode == 0


# --- 5. a CA directory of round one, and its serials -----------------------------------------------------------
def test_verify_reads_an_inventory_of_an_older_schema(ca_dir: Path, ca_env: dict, tmp_path: Path):
    """state5 #3: the first command after an upgrade, verify, called a valid certificate NOT VALID and
    advised restoring the inventory from a backup ("lacks part of its schema")."""
    run_certkit("issue-server", "web.test", "--out", tmp_path / "web", env=ca_env, check=True)
    run_certkit("issue-client", "bob", "--out", tmp_path / "bob", env=ca_env, check=True)
    run_certkit("revoke", tmp_path / "bob", env=ca_env, check=True)
    make_schema_one(ca_dir)
    proc = run_certkit("verify", tmp_path / "web", "--purpose", "server", env=ca_env)
    assert proc.returncode == 0 and proc.stdout.startswith(f"{tmp_path / 'web'}: VALID"), proc.stdout + proc.stderr
    proc = run_certkit("verify", tmp_path / "bob" / "cert.pem", "--purpose", "client", env=ca_env)
    assert proc.returncode == 1 and "revoked on" in proc.stdout and "schema" not in proc.stdout, proc.stdout


def test_a_serial_prefix_without_its_leading_zero_is_found(ca_dir: Path, ca_env: dict, tmp_path: Path):
    """state5 #4: round one printed serials without their leading zero ("any unique 8+ digit prefix works");
    stored padded, 1 in 16 stopped matching its printed prefix."""
    for i in range(200):
        proc = run_certkit("issue-client", f"user{i}", "--json", cwd=tmp_path, env=ca_env, check=True)
        serial = json.loads(proc.stdout)["serial"]
        if serial.startswith("0"):
            break
    else:
        pytest.fail("200 serials without a leading zero")
    proc = run_certkit("revoke", serial[1:13], env=ca_env)
    assert proc.returncode == 0 and serial in proc.stdout, proc.stdout + proc.stderr


# --- 6. revoke FOLDER while the folder is being renewed ---------------------------------------------------------
@pytest.mark.parametrize("point", ["recorded", "staged", "swapped"])
def test_revoking_a_folder_being_renewed_revokes_what_it_then_delivers(ca_dir: Path, ca_env: dict, tmp_path: Path,
                                                                       point: str):
    """state5 #2: by timing, revoke FOLDER revoked the old certificate (and, superseded, its successor
    too, unnamed), or the new one still pending, after which renew said "Renewed", exit 0, and the
    server's folder held a revoked certificate; or it blamed the user ("a file replaced by hand?").
    Now revoke waits for the renewal, then revokes the certificate the folder delivers."""
    from integrity_helpers import start_paused

    folder = tmp_path / "web"
    run_certkit("issue-server", "web.test", "--out", folder, env=ca_env, check=True)
    old = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes()).serial_number
    marker = tmp_path / "pause"
    renewal = start_paused(["renew", folder], ca_env, tmp_path, point, marker)
    revoking = subprocess.Popen([sys.executable, "-m", "certkit", "revoke", str(folder), "--reason", "superseded"],
                                env=ca_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            revoking.wait(1.5)  # the renewal holds the folder
    finally:
        marker.unlink()
    renewed_out, renewed_err = renewal.communicate(timeout=120)
    revoked_out, revoked_err = revoking.communicate(timeout=120)
    assert renewal.returncode == 0, renewed_err
    assert revoking.returncode == 0, revoked_err
    new = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes()).serial_number
    assert new != old
    assert revoked_out.startswith(f"Revoked server certificate {serial_hex(new)}\n"), revoked_out
    assert "also" not in revoked_out
    rows = {r["serial"]: r["status"] for r in json.loads(run_certkit("list", "--json", env=ca_env).stdout)
            ["certificates"]}
    assert rows == {f"{serial_hex(old)}": "valid", f"{serial_hex(new)}": "revoked"}, rows


# --- 7. secrets no prompt could give ----------------------------------------------------------------------------
@pytest.mark.parametrize("content,why", [(b"correct horse battery\n\n", "several lines"),
                                         (b"line one\nline two\n", "several lines"),
                                         (b"line one\r\nline two", "several lines"), (b"   \n", "white space only"),
                                         (b"\t\n", "white space only")])
def test_a_secret_of_several_lines_or_white_space_is_refused(tmp_path: Path, content: bytes, why: str):
    """badinput5 #1: the CA key was encrypted with "correct horse battery\\n" (a blank line after it), which no
    prompt, no variable and no `openssl -passin file:` could give again; a bundle.p12 password of three
    spaces got no warning. Files and variables, for the CA passphrase and the PKCS#12 password."""
    secret = tmp_path / "secret"
    secret.write_bytes(content)
    secret.chmod(0o600)
    good = tmp_path / "good"
    good.write_text("correct horse battery staple\n")
    good.chmod(0o600)
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path))
    assert_clean_error(run_certkit("init-ca", "--passphrase-file", secret, env=env), why)
    assert not (tmp_path / "ca").exists()
    run_certkit("init-ca", "--passphrase-file", good, env=env, check=True)
    proc = run_certkit("issue-server", "a.example", "--out", tmp_path / "a", "--p12", "--p12-password-file", secret,
                       "--passphrase-file", good, env=env)
    assert_clean_error(proc, why)
    assert not (tmp_path / "a").exists()
    variable = content.decode().removesuffix("\n")
    for name, extra, command in (("CERTKIT_CA_PASSPHRASE", (), "init-ca"),
                                 ("CERTKIT_P12_PASSWORD", ("--p12", "--passphrase-file", good), "issue-server")):
        args = ("--ca-dir", tmp_path / "ca2") if command == "init-ca" else ("a.example", "--out", tmp_path / "a")
        proc = run_certkit(command, *args, *extra, env=env | {name: variable})
        assert_clean_error(proc, why)
    assert not (tmp_path / "ca2").exists()
    assert run_certkit("list", "--json", env=env).stdout.count('"serial"') == 0


# --- 8. issue-peer: the warning comes with the certificate, not with a refusal -------------------------------------
def test_a_refused_peer_certificate_gets_one_error_line(ca_dir: Path, ca_env: dict, tmp_path: Path):
    """badinput5 #4: issue-peer printed its Warning, then the Error (two lines for one bad input) for a wrong
    passphrase, a p12 password file readable by others, a missing p12 password; in a folder and in jsonl."""
    loose = tmp_path / "loose"
    loose.write_text("a p12 password\n")
    loose.chmod(0o644)
    for args, env in ((("--out", tmp_path / "p1"), ca_env | {"CERTKIT_CA_PASSPHRASE": "wrong passphrase"}),
                      (("--out", tmp_path / "p2", "--p12", "--p12-password-file", loose), ca_env),
                      (("--out", tmp_path / "p3", "--p12"), ca_env),
                      (("--format", "jsonl", "--out", tmp_path / "p.jsonl"),
                       ca_env | {"CERTKIT_CA_PASSPHRASE": "wrong passphrase"})):
        proc = run_certkit("issue-peer", "p.example", *args, env=env)
        assert proc.returncode == 1 and proc.stderr.startswith("Error: ") and proc.stderr.count("\n") == 1, \
            (args, proc.stderr)
    proc = run_certkit("issue-peer", "p.example", "--out", tmp_path / "p4", env=ca_env)
    assert proc.returncode == 0 and proc.stderr.startswith("Warning: a peer certificate carries both"), proc.stderr
    proc = run_certkit("renew", tmp_path / "p4", env=ca_env | {"CERTKIT_CA_PASSPHRASE": "wrong passphrase"})
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "Warning" not in proc.stderr, proc.stderr


def test_crl_to_a_folder_that_does_not_exist_is_refused_before_the_passphrase(ca_dir: Path, ca_env: dict,
                                                                               tmp_path: Path):
    """badinput5 #6: the passphrase was asked for, a number taken and a CRL signed, then the write failed."""
    proc = run_certkit("crl", "--out", tmp_path / "nodir" / "crl.pem", env=ca_env | {"CERTKIT_CA_PASSPHRASE": "wrong"})
    assert_clean_error(proc, "the folder")
    assert "does not exist" in proc.stderr and "passphrase" not in proc.stderr
    number = sqlite3.connect(ca_dir / "inventory.sqlite3").execute(
        "SELECT value FROM meta WHERE key = 'crl_number'").fetchone()
    assert number in (None, ("0",)), number
    proc = run_certkit("crl", "--out", tmp_path / "crl.pem", env=ca_env, check=True)
    assert proc.stdout.startswith('Wrote CRL number 1 of'), proc.stdout


# --- 9. a CA at its very end -------------------------------------------------------------------------------------
def test_a_ca_at_its_end_says_so_and_the_lifetime_it_granted(tmp_path: Path):
    """state5 #5: a certificate capped to the CA's last ten minutes was reported "(1 days)"; bulk renew then
    advised "renew it with a longer lifetime", which the CA cannot grant, and never said the CA ends."""
    import datetime as dt

    from certkit.store import CADirectory

    from conftest import PASSPHRASE

    now = dt.datetime.now(dt.UTC)
    CADirectory(tmp_path / "ca").save_new(CA.create("Ending CA", days=1, not_before=now - dt.timedelta(hours=23,
                                                                                                     minutes=50)),
                                          PASSPHRASE.encode())
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path))
    proc = run_certkit("issue-server", "web.test", "--out", tmp_path / "web", env=env, check=True)
    expires = next(line for line in proc.stdout.splitlines() if line.startswith("  expires"))
    minutes = int(expires.rsplit("(", 1)[1].split()[0])
    assert expires.endswith(" minutes)") and 5 <= minutes <= 16, expires
    assert "the CA 'Ending CA' ends then" in proc.stdout and "certkit init-ca" in proc.stdout, proc.stdout
    proc = run_certkit("issue-server", "day.test", "--days", "1", "--out", tmp_path / "day", env=env)
    assert proc.returncode != 0  # a lifetime asked for past the CA's end is refused, as ever
    proc = run_certkit("renew", "--expiring", "30d", env=env, check=True)
    assert "its CA ends then; create the CA's successor with 'certkit init-ca'" in proc.stdout, proc.stdout
    assert "renew it with a longer lifetime" not in proc.stdout


def test_a_one_day_certificate_is_one_day(ca_dir: Path, ca_env: dict, tmp_path: Path):
    proc = run_certkit("issue-server", "a.test", "--days", "1", "--out", tmp_path / "a", env=ca_env, check=True)
    assert " (1 day)\n" in proc.stdout and "(1 days)" not in proc.stdout, proc.stdout


def test_command_line_messages_keep_the_command_lines_advice(ca_dir: Path, ca_env: dict, tmp_path: Path):
    """The library now gives its advice in its own words (ca.issue_client(NAME, emails=[...])); the
    command line, where it builds its own message from the library's (a batch line, verify --name),
    keeps saying its options."""
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names\nserver,alice@example.com\nclient,10.0.0.5\n")
    proc = run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "o", env=ca_env)
    assert "line 2: 'alice@example.com' is an email address" in proc.stderr, proc.stderr
    assert "'certkit issue-client NAME --email alice@example.com'" in proc.stderr, proc.stderr
    assert "use certkit issue-server 10.0.0.5" in proc.stderr and "ca.issue" not in proc.stderr, proc.stderr
    run_certkit("issue-server", "localhost", "--out", tmp_path / "s", env=ca_env, check=True)
    proc = run_certkit("verify", tmp_path / "s", "--purpose", "server", "--name", "alice@example.com", env=ca_env)
    assert_clean_error(proc, "--name: 'alice@example.com' is an email address", code=proc.returncode)
    assert "certkit issue-client NAME --email" in proc.stderr and "ca.issue" not in proc.stderr, proc.stderr
    with pytest.raises(CertkitError, match=r"ca\.issue_client\(NAME, emails=\['alice@example.com'\]\)"):
        CA.create("Words").issue_server("alice@example.com")


@pytest.mark.parametrize("args,usage,error", [
    (("export-p12", "./x", "--ca-dir", ""), "Usage: certkit export-p12 ", "--ca-dir was given an empty value"),
    (("export-p12", "./x", "--cadir", ""), "Usage: certkit export-p12 ", "No such option '--cadir'"),
    (("trust", "status", "--nss", "--ca-dir", ""), "Usage: certkit trust status ", "--ca-dir was given an empty value"),
    (("acme", "serve", "--ca-dir", ""), "Usage: certkit acme serve ", "--ca-dir was given an empty value"),
    (("inventory", "migrate", "--ca-dir", ""), "Usage: certkit inventory migrate ", "--ca-dir was given an empty"),
    (("revoke", ""), "Usage: certkit revoke ", "'certkit revoke' was given an empty value"),
    (("inspect", "-", ""), "Usage: certkit inspect ", "'certkit inspect' was given an empty value"),
    (("issue-server", "a.example", "--days", "-1", ""), "Usage: certkit issue-server ",
     "'certkit issue-server' was given an empty value"),
])
def test_usage_errors_name_the_command_and_option_given(tmp_path: Path, args: tuple, usage: str, error: str):
    """badinput5 #7: an empty value after an option the command does not have was blamed on the command's
    argument, and a subcommand's mistake showed its group's usage."""
    proc = run_certkit(*args, env=certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path)))
    assert proc.returncode == 2 and proc.stderr.startswith(usage) and f"Error: {error}" in proc.stderr, proc.stderr


def test_a_file_output_that_cannot_be_put_in_place_is_named(ca_dir: Path, ca_env: dict, tmp_path: Path):
    """files5 #3: the error named a temporary file nobody gave, and said nothing of the keys it left."""
    out = tmp_path / "o"
    out.mkdir()
    marker = tmp_path / "pause"
    env = ca_env | {"CERTKIT_TEST_PAUSE_AT": "staged", "CERTKIT_TEST_PAUSE_FILE": str(marker)}
    proc = subprocess.Popen([*obeying_modes(), sys.executable, "-m", "certkit", "issue-server", "m.test", "--format",
                             "jsonl", "--out", str(out / "m.jsonl")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            if marker.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert marker.exists(), proc.communicate()
        out.chmod(0o555)
        marker.unlink()
        _, err = proc.communicate(timeout=60)
    finally:
        out.chmod(0o755)
    (left,) = [p for p in out.iterdir()]
    assert proc.returncode == 1 and err.startswith(f"Error: Cannot put {out / 'm.jsonl'} in place: "), err
    assert f"its temporary file {left} holds private keys and could not be removed: remove it." in err, err
    assert err.count("\n") == 1
    rows = json.loads(run_certkit("list", "--json", "--status", "abandoned", env=ca_env).stdout)["certificates"]
    assert len(rows) == 1


def test_verify_untrusted_takes_certificates_only(ca_dir: Path, ca_env: dict, tmp_path: Path):
    """badinput5 #8: a CSR given as --untrusted was accepted silently (VALID); a key was refused in
    inspect's words ("to describe")."""
    run_certkit("issue-server", "web.test", "--out", tmp_path / "web", env=ca_env, check=True)
    subprocess.run(["openssl", "req", "-new", "-key", str(tmp_path / "web" / "privkey.pem"), "-subj", "/CN=x",
                    "-out", str(tmp_path / "web.csr")], check=True, capture_output=True)
    for given, holds in (("web.csr", "a CSR"), ("web/privkey.pem", "a private key")):
        proc = run_certkit("verify", tmp_path / "web", "--purpose", "server", "--untrusted", tmp_path / given,
                           env=ca_env)
        assert_clean_error(proc, f"holds {holds} but no certificate; it is given as --untrusted")


@pytest.mark.parametrize("host,reason", [("256.0.0.1", "256 is larger than 255"),
                                         ("fe80::1%nosuchif", "has an IPv6 zone")])
def test_acme_serve_says_why_a_host_cannot_be_listened_on(ca_dir: Path, ca_env: dict, host: str, reason: str):
    proc = run_certkit("acme", "serve", "--host", host, "--port", "0", env=ca_env)
    assert_clean_error(proc, f"Cannot listen on {host}:0: ")
    assert reason in proc.stderr and "Name or service not known" not in proc.stderr, proc.stderr


# --- 10. prose5: an empty $CERTKIT_CA_DIR ------------------------------------------------------------------------
def test_an_empty_ca_dir_variable_is_refused_not_taken_for_the_default(tmp_path: Path):
    """prose5 #4: CERTKIT_CA_DIR="$TEAM_CA" with TEAM_CA unset issued from the user's personal CA."""
    home = tmp_path / "home"
    env = certkit_env(HOME=str(home), XDG_DATA_HOME=str(home / "data"), CERTKIT_CA_PASSPHRASE="a long passphrase")
    run_certkit("init-ca", "--name", "Personal CA", env=env, check=True)
    for value in ("", " "):
        for args in (("issue-server", "web.example.com", "--out", tmp_path / "web"), ("list",), ("crl",)):
            proc = run_certkit(*args, env=env | {"CERTKIT_CA_DIR": value})
            assert_clean_error(proc, "$CERTKIT_CA_DIR is set but empty (an unset variable?)")
    assert not (tmp_path / "web").exists()
    assert run_certkit("list", "--json", env=env).stdout.count('"serial"') == 0


# --- 11. serve: what it is given is checked before it signs anything ----------------------------------------------
def test_serve_refuses_a_client_ca_that_holds_no_certificate_before_signing(ca_dir: Path, ca_env: dict,
                                                                           tmp_path: Path):
    """badinput5 #5: a CSR as --client-ca got through to OpenSSL ("Empty certificate data") after serve had
    signed and recorded its own certificate (left abandoned); a damaged PEM as --cert got "[SSL] PEM lib"."""
    csr = csr_with_key(tmp_path / "req", "x.example")
    for given, holds in ((csr, "a CSR"), (tmp_path / "req" / "privkey.pem", "a private key")):
        proc = run_certkit("serve", "--port", "0", "--client-ca", given, env=ca_env, subprocess=True)
        assert_clean_error(proc, f"holds {holds} but no certificate; it is given as --client-ca")
    assert json.loads(run_certkit("list", "--json", "--status", "abandoned", env=ca_env).stdout)["certificates"] == []
    assert json.loads(run_certkit("list", "--json", env=ca_env).stdout)["certificates"] == []
    run_certkit("issue-server", "s.example", "--out", tmp_path / "s", env=ca_env, check=True)
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    proc = run_certkit("serve", "--port", "0", "--cert", bad, "--key", tmp_path / "s" / "privkey.pem", env=ca_env,
                       subprocess=True)
    assert_clean_error(proc, "holds a certificate block that cannot be read (a damaged or truncated PEM file)")
    assert "PEM lib" not in proc.stderr


@pytest.mark.parametrize("content,said", [(b"", "is empty"), (b"   \n", "is empty"),
                                          (b"junk text\n", "holds no private key (PEM -----BEGIN PRIVATE KEY-----)"),
                                          ("cert", "holds a certificate, not a private key"),
                                          ("other", "is not the key of that certificate (OpenSSL: key values "
                                                    "mismatch)")])
def test_probe_says_what_is_wrong_with_a_client_key_in_its_own_words(ca_dir: Path, ca_env: dict, tmp_path: Path,
                                                                     content, said: str):
    """badinput5 #8: cryptography's "Could not deserialize key data. The data may be in an incorrect format, it
    may be encrypted with an unsupported algorithm, ..." and OpenSSL's "key values mismatch (the key must be
    unencrypted PEM and match)" were passed on as they were."""
    run_certkit("issue-client", "alice", "--out", tmp_path / "alice", env=ca_env, check=True)
    key = tmp_path / "key.pem"
    if content == "cert":
        key.write_bytes((tmp_path / "alice" / "cert.pem").read_bytes())
    elif content == "other":
        key.write_bytes(CA.create("Other").issue_client("bob").private_key_pem)
    else:
        key.write_bytes(content)
    key.chmod(0o600)
    proc = run_certkit("probe", "https://127.0.0.1:1/", "--timeout", "1", "--cert", tmp_path / "alice" / "cert.pem",
                       "--key", key, env=ca_env)
    assert_clean_error(proc, said)
    assert "Could not deserialize" not in proc.stderr and "must be unencrypted PEM" not in proc.stderr


def test_a_key_made_with_a_passphrase_of_several_lines_still_opens(tmp_path: Path):
    """regress5 #1: the rule for new secrets locked out a CA whose key was encrypted, before it, with a
    passphrase file of several lines (openssl rand -base64 66 writes two): it still opens, from the file
    or the variable; only a new passphrase or bundle.p12 password is held to one line."""
    from cryptography.hazmat.primitives import serialization

    from certkit.store import CADirectory

    passphrase = b"first line of it\nsecond line of it"
    old = CA.create("Old CA")  # as a version before the rule saved it (the library now refuses such a passphrase)
    CADirectory(tmp_path / "ca").save_new(old, None)
    (tmp_path / "ca" / "ca-key.pem").write_bytes(old.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase)))
    secret = tmp_path / "pp"
    secret.write_bytes(passphrase + b"\n")
    secret.chmod(0o600)
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path))
    run_certkit("issue-server", "a.example", "--out", tmp_path / "a", "--passphrase-file", secret, env=env, check=True)
    run_certkit("issue-server", "b.example", "--out", tmp_path / "b", env=env | {
        "CERTKIT_CA_PASSPHRASE": passphrase.decode()}, check=True)
    run_certkit("crl", "--out", tmp_path / "crl.pem", "--passphrase-file", secret, env=env, check=True)


def test_a_revocation_the_restored_inventory_never_knew_is_carried_over(ca_dir: Path, ca_env: dict,
                                                                       tmp_path: Path):
    """regress5 #3: a certificate issued and revoked after the backup could not be revoked again (the restored
    inventory does not hold it), so crl --out was refused for good; now its entry is carried over, with its
    date and reason, and a warning names it. In DER, as the page allows."""
    crl = tmp_path / "crl.der"
    backup = (ca_dir / "inventory.sqlite3").read_bytes()
    run_certkit("issue-server", "b.example", "--out", tmp_path / "b", env=ca_env, check=True)
    run_certkit("revoke", tmp_path / "b", "--reason", "keyCompromise", env=ca_env, check=True)
    run_certkit("crl", "--der", "--out", crl, env=ca_env, check=True)
    before = x509.load_der_x509_crl(crl.read_bytes())
    for extra in ("-wal", "-shm"):
        (ca_dir / f"inventory.sqlite3{extra}").unlink(missing_ok=True)
    (ca_dir / "inventory.sqlite3").write_bytes(backup)
    proc = run_certkit("crl", "--der", "--out", crl, env=ca_env, check=True)
    serial = x509.load_pem_x509_certificate((tmp_path / "b" / "cert.pem").read_bytes()).serial_number
    assert f"does not hold at all (restored from a backup older than it?): {serial_hex(serial)}" in proc.stderr
    after = x509.load_der_x509_crl(crl.read_bytes())
    entry = after.get_revoked_certificate_by_serial_number(serial)
    assert entry is not None and entry.revocation_date_utc == \
        before.get_revoked_certificate_by_serial_number(serial).revocation_date_utc
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    assert after.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    pem = tmp_path / "crl.pem"
    pem.write_bytes(after.public_bytes(serialization.Encoding.PEM))
    check = openssl("verify", "-crl_check", "-CAfile", str(ca_dir / "ca.pem"), "-CRLfile", str(pem),
                    str(tmp_path / "b" / "cert.pem"))
    assert check.returncode != 0 and b"certificate revoked" in check.stdout + check.stderr


def test_sign_csr_keeps_the_requesters_encrypted_key(ca_dir: Path, ca_env: dict, tmp_path: Path):
    """regress5 #2: openssl req encrypts the key by default; such a privkey.pem beside the CSR was refused
    as a leftover, and --force then deleted it while the summary said "the requester keeps the private key"."""
    folder = tmp_path / "req"
    folder.mkdir()
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-passout",
                    "pass:requester secret", "-keyout", str(folder / "privkey.pem"), "-out", str(folder / "req.csr"),
                    "-subj", "/CN=req.example"], check=True, capture_output=True)
    key = (folder / "privkey.pem").read_bytes()
    for force in ((), ("--force",)):
        run_certkit("sign-csr", folder / "req.csr", "--server", "--out", folder, *force, env=ca_env, check=True)
        assert (folder / "privkey.pem").read_bytes() == key
    CA.create("Lib").sign_csr((folder / "req.csr").read_bytes(), "server").write(folder, force=True)
    assert (folder / "privkey.pem").read_bytes() == key
    proc = openssl("pkey", "-in", str(folder / "privkey.pem"), "-passin", "pass:requester secret", "-pubout")
    assert proc.stdout == openssl("x509", "-in", str(folder / "cert.pem"), "-noout", "-pubkey").stdout


def test_commands_that_need_no_ca_directory_run_with_an_empty_variable(tmp_path: Path):
    """regress5 #4: the refusal of an empty $CERTKIT_CA_DIR stopped demo --keep, which uses no CA directory."""
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR="")
    proc = run_certkit("demo", "--keep", tmp_path / "kept", env=env)
    assert proc.returncode == 0 and (tmp_path / "kept" / "server" / "cert.pem").exists(), proc.stderr
    assert_clean_error(run_certkit("list", env=env), "$CERTKIT_CA_DIR is set but empty")


# --- 12. two-tier PKI (audit twotier5) ------------------------------------------------------------------------------
def test_an_intermediates_permit_flags_mean_what_they_mean_for_a_root(tmp_path: Path):
    """twotier5 #1: under a root constrained to a domain and 10.0.0.0/8, an intermediate given --permit-dns alone
    still signed the root's whole IP range (openssl verify: OK), and --permit-ip alone the root's domain; init-ca
    showed nothing of what it wrote."""
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_PASSPHRASE="a long passphrase here",
                      CERTKIT_PARENT_CA_PASSPHRASE="a long passphrase here")
    run_certkit("init-ca", "--ca-dir", tmp_path / "root", "--name", "NC Root", "--permit-dns", "example.internal",
                "--permit-ip", "10.0.0.0/8", env=env, check=True)
    for name, flag, value, may_sign in (("dns", "--permit-dns", "a.example.internal",
                                         "DNS names under a.example.internal; no IP addresses"),
                                        ("ip", "--permit-ip", "10.1.0.0/16",
                                         "no DNS names; IP addresses in 10.1.0.0/16")):
        proc = run_certkit("init-ca", "--ca-dir", tmp_path / name, "--parent-ca-dir", tmp_path / "root", "--name",
                           f"NC {name}", flag, value, env=env, check=True)
        assert f"  may sign     {may_sign}\n" in proc.stdout, proc.stdout
    for ca, name in (("dns", "10.200.0.1"), ("ip", "web.example.internal")):
        proc = run_certkit("issue-server", name, "--ca-dir", tmp_path / ca, "--out", tmp_path / f"out-{ca}", env=env)
        assert_clean_error(proc, "is outside the name constraints")
    run_certkit("issue-server", "10.1.2.3", "--ca-dir", tmp_path / "ip", "--out", tmp_path / "ok", env=env, check=True)
    assert openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", str(tmp_path / "root" / "ca.pem"),
                   "-untrusted", str(tmp_path / "ok" / "chain.pem"), str(tmp_path / "ok" / "cert.pem")).returncode == 0
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "inherit", "--parent-ca-dir", tmp_path / "root", "--name",
                       "NC inherit", env=env, check=True)  # no flag: the parent's namespace, as before
    assert "  may sign     DNS names under example.internal; IP addresses in 10.0.0.0/8\n" in proc.stdout


def test_renewing_an_intermediates_certificate_is_refused_as_what_it_is(tmp_path: Path):
    """twotier5 #3: 'No folder is known ... choose --out FOLDER', and with --out: 'a ca certificate'."""
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_PASSPHRASE="a long passphrase here",
                      CERTKIT_PARENT_CA_PASSPHRASE="a long passphrase here")
    run_certkit("init-ca", "--ca-dir", tmp_path / "root", "--name", "Root", env=env, check=True)
    run_certkit("init-ca", "--ca-dir", tmp_path / "issuing", "--parent-ca-dir", tmp_path / "root", "--name",
                "Issuing", env=env, check=True)
    serial = serial_hex(x509.load_pem_x509_certificate((tmp_path / "issuing" / "ca.pem").read_bytes()).serial_number)
    for ref in (serial, tmp_path / "issuing" / "ca.pem"):
        proc = run_certkit("renew", "--ca-dir", tmp_path / "root", ref, env=env)
        assert_clean_error(proc, "is a ca certificate; only server, client and peer certificates are renewed")


def test_probe_gives_the_fullchain_advice_when_nginx_refuses_a_client_without_its_intermediate(tmp_path: Path):
    """twotier5 #2: nginx (the server the docs configure) completes the handshake and answers HTTP 400 "The SSL
    certificate error"; probe said only "refused", although it knew the issuer the file stopped short of."""
    from nginx_helper import nginx

    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_PASSPHRASE="a long passphrase here",
                      CERTKIT_PARENT_CA_PASSPHRASE="a long passphrase here")
    run_certkit("init-ca", "--ca-dir", tmp_path / "root", "--name", "T5 Root", env=env, check=True)
    run_certkit("init-ca", "--ca-dir", tmp_path / "issuing", "--parent-ca-dir", tmp_path / "root", "--name",
                "T5 Issuing", env=env, check=True)
    for args in (("issue-server", "localhost", "--out", tmp_path / "srv"), ("issue-client", "alice", "--out",
                                                                           tmp_path / "cli")):
        run_certkit(*args, "--ca-dir", tmp_path / "issuing", env=env, check=True)
    srv, cli = tmp_path / "srv", tmp_path / "cli"
    tls = (f"ssl_certificate {srv / 'fullchain.pem'};\nssl_certificate_key {srv / 'privkey.pem'};\n"
           f"ssl_client_certificate {tmp_path / 'root' / 'ca.pem'};\nssl_verify_client on;\nssl_verify_depth 2;")
    with nginx(tmp_path / "nginx", tls) as (port, _log):
        url = f"https://localhost:{port}/"
        alone = run_certkit("probe", url, "--ca-dir", tmp_path / "root", "--cert", cli / "cert.pem", "--key",
                            cli / "privkey.pem", env=certkit_env(HOME=str(tmp_path)))
        whole = run_certkit("probe", url, "--ca-dir", tmp_path / "root", "--bundle", cli,
                            env=certkit_env(HOME=str(tmp_path)))
    assert alone.returncode == 1, alone.stdout + alone.stderr
    assert ("refused: HTTP 400: The SSL certificate error; the client sent its certificate without its intermediate "
            "CA, CN=T5 Issuing, which the server does not list (it lists CN=T5 Root): give fullchain.pem") \
        in " ".join(alone.stdout.split()), alone.stdout
    assert whole.returncode == 0, whole.stdout + whole.stderr


def test_probe_names_the_intermediate_given_when_a_server_does_not_send_it(tmp_path: Path):
    """twotier5 #4: with --ca-dir issuing, probe said "not issued by this CA ... if CN=Issuing is an
    intermediate CA" of a certificate that very CA directory issued."""
    from test_probe import openssl_server

    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_PASSPHRASE="a long passphrase here",
                      CERTKIT_PARENT_CA_PASSPHRASE="a long passphrase here")
    run_certkit("init-ca", "--ca-dir", tmp_path / "root", "--name", "T5 Root", env=env, check=True)
    run_certkit("init-ca", "--ca-dir", tmp_path / "issuing", "--parent-ca-dir", tmp_path / "root", "--name",
                "T5 Issuing", env=env, check=True)
    run_certkit("issue-server", "localhost", "--ca-dir", tmp_path / "issuing", "--out", tmp_path / "srv", env=env,
                check=True)
    with openssl_server("-cert", tmp_path / "srv" / "cert.pem", "-key", tmp_path / "srv" / "privkey.pem") as port:
        proc = run_certkit("probe", f"https://localhost:{port}/", "--ca-dir", tmp_path / "issuing",
                           env=certkit_env(HOME=str(tmp_path)))
    text = " ".join(proc.stdout.split())
    assert proc.returncode == 1 and ("reason issued by CN=T5 Issuing, the intermediate CA given, but the server does "
                                     "not send its certificate after its own") in text, proc.stdout
    assert "not issued by this CA" not in text


def test_serve_advises_fullchain_which_works_under_an_intermediate_too(tmp_path: Path):
    """twotier5 #5: the "no certificate" answer said --cert cert.pem, which the same server refuses for every
    client of an intermediate; fullchain.pem works for a root's clients and an intermediate's alike."""
    from serve_process import serving

    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_PASSPHRASE="a long passphrase here",
                      CERTKIT_PARENT_CA_PASSPHRASE="a long passphrase here", CERTKIT_CA_DIR=str(tmp_path / "root"))
    run_certkit("init-ca", "--name", "T5 Root", env=env, check=True)
    run_certkit("init-ca", "--ca-dir", tmp_path / "issuing", "--parent-ca-dir", tmp_path / "root", "--name",
                "T5 Issuing", env=env, check=True)
    run_certkit("issue-client", "alice", "--ca-dir", tmp_path / "issuing", "--out", tmp_path / "cli", env=env,
                check=True)
    with serving("--optional", "--port", "0", env=env) as server:
        url = f"https://localhost:{server.port}/"
        ca = str(tmp_path / "root" / "ca.pem")
        bare = subprocess.run(["curl", "-sS", "--cacert", ca, url], capture_output=True, text=True, timeout=30)
        assert "With curl: --cert fullchain.pem --key privkey.pem" in bare.stdout, bare.stdout
        cli = tmp_path / "cli"
        sent = subprocess.run(["curl", "-sS", "--cacert", ca, "--cert", str(cli / "fullchain.pem"), "--key",
                               str(cli / "privkey.pem"), url], capture_output=True, text=True, timeout=30)
        assert sent.stdout.startswith("Authenticated"), sent.stdout


# --- 13. team scale (audit team5) ------------------------------------------------------------------------------------
@pytest.mark.parametrize("location", ["dbname=ca password=s3cr3tpw", "host=h password='s3cr3tpw two' user=x",
                                      "POSTGRESQL://certkit:s3cr3tpw@127.0.0.1:5/ca",
                                      " postgresql://certkit:s3cr3tpw@127.0.0.1:5/ca",
                                      "postgresql://certkit:s3/cr3tpw@127.0.0.1:5/ca"])
def test_a_password_in_any_inventory_location_is_never_repeated(ca_dir: Path, ca_env: dict, tmp_path: Path,
                                                                location: str):
    """team5 #2: a libpq keyword/value string, a URL in capitals or with a leading space (taken for SQLite
    paths), a password holding '/': the Error: line and --json repeated the password."""
    secret = "s3cr3tpw"
    runs = [run_certkit("list", env=ca_env | {"CERTKIT_INVENTORY_URL": location}),
            run_certkit("list", "--json", env=ca_env | {"CERTKIT_INVENTORY_URL": location}),
            run_certkit("init-ca", "--ca-dir", tmp_path / "new", "--inventory", location, env=ca_env),
            run_certkit("inventory", "migrate", "--to", location, env=ca_env)]
    for proc in runs:
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert secret not in proc.stdout + proc.stderr and "s3/cr3tpw" not in proc.stdout + proc.stderr, proc.args


def _rebuild_certificates(db: Path, drop: str | None = None, primary_key: bool = True) -> None:
    """The certificates table again, with a column left out or without its primary key (damage by hand)."""
    from certkit.inventory import schema

    columns = [c for c in schema.COLUMNS[3] if c != drop]
    conn = sqlite3.connect(db)
    with conn:
        declared = [c + (" TEXT PRIMARY KEY" if c == "serial" and primary_key else "") for c in columns]
        conn.execute(f"CREATE TABLE rebuilt ({', '.join(declared)})")
        conn.execute(f"INSERT INTO rebuilt SELECT {', '.join(columns)} FROM certificates")
        conn.execute("DROP TABLE certificates")
        conn.execute("ALTER TABLE rebuilt RENAME TO certificates")
    conn.close()


@pytest.mark.parametrize("damage,said", [
    ("no-primary-key", "no longer keeps serials unique (the primary key on serial is gone)"),
    ("no-writer", "lacks the column writer of schema version 3"),
    ("version-2", "says schema version 2 but holds the columns sink, writer, keyed of a later one"),
    ("crl-x", "holds a damaged CRL number ('x', not a whole number of 0 or more)"),
    ("crl-negative", "holds a damaged CRL number ('-5', not a whole number of 0 or more)"),
])
def test_check_finds_damage_to_the_inventorys_tables(ca_dir: Path, ca_env: dict, tmp_path: Path, damage: str,
                                                     said: str):
    """team5 #1, #4, #5: check said "schema version 3 (current)" and exit 0 with the serial's primary key gone
    (duplicates, a CRL listing a serial twice) or a column missing; crl died with a traceback on a CRL number
    'x' and numbered from -5; a lowered version number was "migrated by the next command", which then failed
    on "duplicate column name: sink"."""
    run_certkit("issue-server", "a.example", "--out", tmp_path / "a", env=ca_env, check=True)
    run_certkit("crl", "--out", tmp_path / "crl.pem", env=ca_env, check=True)
    db = ca_dir / "inventory.sqlite3"
    if damage == "no-primary-key":
        _rebuild_certificates(db, primary_key=False)
    elif damage == "no-writer":
        _rebuild_certificates(db, drop="writer")
    else:
        conn = sqlite3.connect(db)
        with conn:
            if damage == "version-2":
                conn.execute("PRAGMA user_version = 2")
            else:
                conn.execute("UPDATE meta SET value = ? WHERE key = 'crl_number'",
                             ("x" if damage == "crl-x" else "-5",))
        conn.close()
    proc = run_certkit("check", env=ca_env)
    assert proc.returncode == 1 and said in proc.stdout, proc.stdout + proc.stderr
    if damage in ("version-2", "crl-x", "crl-negative"):
        proc = run_certkit("list" if damage == "version-2" else "crl", env=ca_env)
        assert_clean_error(proc, said)


def test_a_certificate_stored_as_text_is_named_not_printed(ca_dir: Path, ca_env: dict, tmp_path: Path):
    """team5 #6: SQLite's message for a DER stored as TEXT carried the raw bytes, over several lines."""
    run_certkit("issue-server", "a.example", "--out", tmp_path / "a", env=ca_env, check=True)
    run_certkit("revoke", tmp_path / "a", env=ca_env, check=True)
    conn = sqlite3.connect(ca_dir / "inventory.sqlite3")
    with conn:
        conn.execute("UPDATE certificates SET der = CAST(der AS TEXT)")
    conn.close()
    for args in (("check",), ("crl",)):
        proc = run_certkit(*args, env=ca_env)
        text = proc.stdout + proc.stderr
        assert proc.returncode == 1 and "a row's der holds bytes that are not text" in text, text
        assert "Could not decode" not in text and all(line.isprintable() for line in text.splitlines()), text
