"""Audit round six, different commands racing on one folder (report integrity6), at certkit's own pause
points, which only hold open windows that exist anyway:

1. export-p12 and a renewal of the same folder take turns: neither puts back what the other replaced;
2. a certificate revoked (by serial) while it is being written is delivered with a note that says so;
3. revoke SERIAL waits for the folder its row records, as revoke FOLDER does: a same-key renewal under way
   is revoked with it and named ``also``, and the CRL published next lists both.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from certkit.vocabulary import serial_hex

from conftest import openssl, run_certkit
from integrity_helpers import start_paused

P12 = "p12-password-long"


def serial_in(path: Path) -> str:
    return serial_hex(x509.load_pem_x509_certificate(path.read_bytes()).serial_number)


def spki(cert_or_key) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = cert_or_key.public_key()
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def run_later(args, env, cwd, results: list) -> threading.Thread:
    def go():
        results.append(subprocess.run(["python", "-m", "certkit", *map(str, args)], env=env, cwd=cwd,
                                      capture_output=True, text=True, timeout=120))
    thread = threading.Thread(target=go)
    thread.start()
    return thread


def assert_consistent(folder: Path, env: dict) -> None:
    """cert.pem is the folder's current valid certificate; privkey.pem and bundle.p12 go with it."""
    serial = serial_in(folder / "cert.pem")
    rows = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]
    row = next(r for r in rows if r["serial"] == serial)
    assert row["status"] == "valid" and not row.get("renewed_by"), row
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key((folder / "privkey.pem").read_bytes(), None)
    cert = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes())
    assert spki(key) == spki(cert)
    if (folder / "bundle.p12").exists():
        p12_key, p12_cert, _ = pkcs12.load_key_and_certificates((folder / "bundle.p12").read_bytes(), P12.encode())
        assert p12_cert.serial_number == cert.serial_number and spki(p12_key) == spki(cert)
    proc = run_certkit("check", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_export_p12_waits_for_a_renewal_of_its_folder(ca_dir, ca_env, tmp_path):
    """integrity6 #1: export-p12 took no lock: paused between staging and its exchange, it put the old
    bundle back over a renew --rekey, whose certificate stayed valid with its key deleted."""
    env = ca_env | {"CERTKIT_P12_PASSWORD": P12}
    run_certkit("issue-server", "web.test", "--out", tmp_path / "web", "--p12", env=env, check=True)
    renewing = start_paused(["renew", tmp_path / "web", "--rekey"], env, tmp_path, "staged", tmp_path / "pause")
    results: list = []
    exporter = run_later(["export-p12", tmp_path / "web", "--force"], env, tmp_path, results)
    time.sleep(1.5)
    assert exporter.is_alive()  # it waits for the renewal's hold on the folder
    (tmp_path / "pause").unlink()
    out, err = renewing.communicate(timeout=120)
    exporter.join(timeout=120)
    assert renewing.returncode == 0, err
    assert results[0].returncode == 0, results[0].stderr
    assert_consistent(tmp_path / "web", env)


def test_a_renewal_waits_for_export_p12_of_its_folder(ca_dir, ca_env, tmp_path):
    env = ca_env | {"CERTKIT_P12_PASSWORD": P12}
    run_certkit("issue-server", "web.test", "--out", tmp_path / "web", "--p12", env=env, check=True)
    exporting = start_paused(["export-p12", tmp_path / "web", "--force"], env, tmp_path, "staged", tmp_path / "pause")
    results: list = []
    renewal = run_later(["renew", tmp_path / "web", "--rekey"], env, tmp_path, results)
    time.sleep(1.5)
    assert renewal.is_alive()
    (tmp_path / "pause").unlink()
    exporting.communicate(timeout=120)
    renewal.join(timeout=120)
    assert exporting.returncode == 0 and results[0].returncode == 0, results[0].stderr
    assert "bundle.p12" in results[0].stdout  # the renewal wrote its own, with the password given
    assert_consistent(tmp_path / "web", env)


def test_a_certificate_revoked_while_being_written_is_delivered_with_a_note(ca_dir, ca_env, tmp_path):
    """integrity6 #2: it was "Issued", exit 0, without a word that it was already revoked."""
    issuing = start_paused(["issue-server", "p1.test", "--format", "jsonl", "--out", tmp_path / "p1.jsonl"],
                           ca_env, tmp_path, "recorded", tmp_path / "pause")
    rows = json.loads(run_certkit("list", "--json", "--status", "pending", env=ca_env, check=True).stdout)
    (serial,) = [r["serial"] for r in rows["certificates"]]
    run_certkit("revoke", serial, "--reason", "keyCompromise", env=ca_env, check=True)
    (tmp_path / "pause").unlink()
    out, err = issuing.communicate(timeout=120)
    assert issuing.returncode == 0, err
    said = out + err
    assert f"{serial} was revoked (keyCompromise, " in said and "it is delivered revoked" in said, said
    assert "certkit crl --out crl.pem" in said
    rows = json.loads(run_certkit("list", "--json", env=ca_env, check=True).stdout)["certificates"]
    assert [(r["serial"], r["status"]) for r in rows] == [(serial, "revoked")]


def test_revoke_by_serial_waits_for_a_renewal_and_names_the_successor(ca_dir, ca_env, tmp_path):
    """integrity6 #3: revoke SERIAL --reason keyCompromise during a same-key renewal named no "also", and
    the CRL published as it advised missed the renewal, which openssl then accepted."""
    run_certkit("issue-server", "k.test", "--out", tmp_path / "k", env=ca_env, check=True)
    old = serial_in(tmp_path / "k" / "cert.pem")
    renewing = start_paused(["renew", tmp_path / "k"], ca_env, tmp_path, "recorded", tmp_path / "pause")
    results: list = []
    revoking = run_later(["revoke", old, "--reason", "keyCompromise"], ca_env, tmp_path, results)
    time.sleep(1.5)
    assert revoking.is_alive()  # waits for the folder the row records
    (tmp_path / "pause").unlink()
    renewing.communicate(timeout=120)
    revoking.join(timeout=120)
    new = serial_in(tmp_path / "k" / "cert.pem")
    assert new != old and results[0].returncode == 0, results[0].stderr
    assert f"also      {new} (the same key)" in results[0].stdout, results[0].stdout
    run_certkit("crl", "--out", tmp_path / "crl.pem", env=ca_env, check=True)
    proc = subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", ca_dir / "ca.pem", "-CRLfile",
                           tmp_path / "crl.pem", tmp_path / "k" / "cert.pem"], capture_output=True, text=True)
    assert proc.returncode != 0 and "certificate revoked" in proc.stdout + proc.stderr
    listed = openssl("crl", "-in", tmp_path / "crl.pem", "-noout", "-text").stdout
    listed = listed.decode() if isinstance(listed, bytes) else listed
    assert old in listed.replace(":", "").upper() or old.lstrip("0") in listed.replace(":", "").upper()
