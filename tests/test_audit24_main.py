"""Audit round twenty-four, what the lead fixed beside the helpers' branches (each a case a helper found and left):

1. ``certkit trust status`` of a CA whose root or intermediate has expired opened with the header
   'CA "Dated Root" (...), expires 2026-12-01 ...' (and '(expires ...)' of the intermediate) for a date in the past,
   the line under it saying it "expired on" that day: the header now says "expired" of a past end.
2. An inventory that cannot be written when the certificates are recorded pending (its disk full), the first thing
   issuing writes, was said as "The inventory ... cannot be written: the disk is full." and no more: the error now
   says what it means, that nothing was issued or written (issue-server, issue-client, issue-batch).
3. ``certkit serve --cert`` with an OCSP Must-Staple certificate (a TLS Feature extension naming status_request)
   served it without a word, though Firefox refuses its page (no OCSP response can be stapled: certkit runs no
   responder); inspect, verify and probe name it since fix24-serve. serve now warns at start, and serves.
4. ``renew SERIAL --out DIR`` of a certificate whose bundle folder still holds its key but whose cert.pem is
   damaged or gone (the way out the renew FOLDER error gives): it wrote DIR without a private key (before round 24),
   then was refused as a folder "which no longer holds it" (fix24-integrity); the key is taken from the folder
   the inventory records, said in a note, and DIR holds it.
5. ``renew --expiring 30d --name wbe.example.test`` (a typo) printed nothing and exited 0, as a timer installed with
   it would every day until the certificates expired; a --name that matches no certificate at all is now said
   (a warning; the exit status stays 0: nothing was due).
6. ``export-p12`` (and ``--p12``) of a certificate without a CN (a server name too long for one) wrote its entry
   without a friendly name, which keytool shows as the alias "1" and Keychain as nothing: its first
   subjectAltName entry is the friendly name now, as docs/pkcs12.md says.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from test_audit6_trust import _cas, add_by_hand, new_db, trust

from certkit.trust import Anchor

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit
from integrity_helpers import tmpfs


@pytest.mark.parametrize("which", ["root", "intermediate"])
def test_the_header_of_trust_status_says_expired_of_an_ended_ca(tmp_path: Path, which: str) -> None:
    ca_dir = _cas(tmp_path, which, "expired")
    anchor = Anchor.from_ca_dir(ca_dir)
    home = tmp_path / "home"
    db = new_db(home / ".pki/nssdb")
    add_by_hand(db, anchor.nickname, anchor.pem)  # as an install before it expired left it
    status = trust("status", "--nss", home=home, ca_dir=ca_dir)
    header = status.stdout.splitlines()[0]
    assert header.startswith('CA "Dated '), status.stdout
    ended = {"root": "Dated Root", "intermediate": "Dated Issuing"}[which]
    if which == "root":
        assert ", expired 20" in header and "expires" not in header, header
    else:  # the root is valid for years, its intermediate ended
        assert ", expires 20" in header and '"Dated Issuing" (expired 20' in header, header
    assert any(ended in line and "expired on" in line for line in (status.stdout + status.stderr).splitlines())


@pytest.mark.parametrize("command", [["issue-server", "a.example.test", "--out", "out"],
                                     ["issue-client", "alice", "--out", "out"],
                                     ["issue-batch", "m.csv", "--format", "jsonl", "--out", "out"]])
def test_an_inventory_that_cannot_record_the_certificates_says_nothing_was_issued(tmp_path: Path, command) -> None:
    (tmp_path / "m.csv").write_text("kind,names\nserver,a.example.test\nclient,bob\n")
    with tmpfs(tmp_path / "disk", "size=1m") as disk:
        env = certkit_env(CERTKIT_CA_DIR=str(disk / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path))
        run_certkit("init-ca", "--name", "Full CA", env=env, check=True)
        info = os.statvfs(disk)
        (disk / "fill").write_bytes(b"\0" * max(0, info.f_bavail * info.f_frsize - 4096))
        proc = run_certkit(*command, env=env, cwd=tmp_path, subprocess=True)
        assert_clean_error(proc, f"The inventory {disk / 'ca' / 'inventory.sqlite3'} cannot be written: the disk is "
                                 "full; nothing was issued or written.")
        assert not (tmp_path / "out").exists()
        (disk / "fill").unlink()
        with sqlite3.connect(disk / "ca" / "inventory.sqlite3") as db:
            assert db.execute("SELECT COUNT(*) FROM certificates").fetchone() == (0,)


def test_serve_warns_of_a_must_staple_certificate_and_serves_it(ca_dir: Path, ca_env: dict, tmp_path: Path) -> None:
    import socket
    import ssl

    from cryptography import x509
    from test_audit24_serve import MUST_STAPLE, _signed_by_ca

    from serve_process import ServeProcess

    plain = _signed_by_ca(ca_dir, tmp_path / "plain")
    staple = _signed_by_ca(ca_dir, tmp_path / "staple", x509.TLSFeature([x509.TLSFeatureType.status_request]))
    for folder in (plain, staple):
        server = ServeProcess("--cert", folder / "cert.pem", "--key", folder / "privkey.pem", "--optional",
                              env=ca_env, cwd=tmp_path)
        try:
            context = ssl.create_default_context(cafile=str(ca_dir / "ca.pem"))
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    assert tls.getpeercert()["subject"] == ((("commonName", "localhost"),),)
        finally:
            server.stop()
        said = " ".join(server.stderr.split())
        assert (MUST_STAPLE in said) == (folder == staple), server.stderr
    assert f"Warning: {staple / 'cert.pem'}: its TLS Feature extension names status_request (OCSP Must-Staple)" \
        in server.stderr and "certkit runs no OCSP responder" in said


@pytest.mark.parametrize("damage", ["empty", "gone"])
def test_renew_by_serial_takes_the_key_its_recorded_folder_still_holds(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                                      damage: str):
    import json

    from conftest import openssl

    run_certkit("issue-server", "srv.example", "--out", "srv", env=ca_env, cwd=tmp_path, check=True)
    serial = json.loads(run_certkit("list", "--json", env=ca_env, check=True).stdout)["certificates"][0]["serial"]
    if damage == "gone":
        (tmp_path / "srv" / "cert.pem").unlink()
    else:
        (tmp_path / "srv" / "cert.pem").write_bytes(b"")
    renewed = run_certkit("renew", serial, "--out", "new", env=ca_env, cwd=tmp_path, check=True)
    assert "the key is taken from" in renewed.stdout + renewed.stderr, renewed.stdout + renewed.stderr
    new = tmp_path / "new"
    assert (new / "privkey.pem").read_bytes() == (tmp_path / "srv" / "privkey.pem").read_bytes()
    assert (new / "privkey.pem").stat().st_mode & 0o777 == 0o600
    cert_key = openssl("x509", "-in", str(new / "cert.pem"), "-noout", "-pubkey").stdout
    own_key = openssl("pkey", "-in", str(new / "privkey.pem"), "-pubout").stdout
    assert cert_key and cert_key == own_key


def test_renew_in_bulk_says_a_name_that_matches_no_certificate(tmp_path: Path, ca_dir: Path, ca_env: dict):
    run_certkit("issue-server", "web.example.test", "--out", "web", env=ca_env, cwd=tmp_path, check=True)
    typo = run_certkit("renew", "--expiring", "30d", "--name", "wbe.example.test", env=ca_env, cwd=tmp_path)
    assert typo.returncode == 0, typo.stderr
    assert "Warning: --name 'wbe.example.test' matches no certificate of this CA yet" in typo.stderr, typo.stderr
    assert "nothing is renewed by it" in typo.stderr
    for pattern in ("web.example.test", "*.example.test"):  # matching, though nothing is due: not a word of it
        ran = run_certkit("renew", "--expiring", "30d", "--name", pattern, env=ca_env, cwd=tmp_path)
        assert ran.returncode == 0 and "matches no certificate" not in ran.stderr, ran.stderr


def test_a_keystore_of_a_certificate_without_a_cn_is_named_by_its_first_san(tmp_path: Path, ca_dir: Path,
                                                                           ca_env: dict) -> None:
    from conftest import openssl

    long_name = "a" * 60 + ".example.test"  # over the 64 characters a CN may hold: the certificate has none
    (tmp_path / "pw").write_text("p12-password-1\n")
    (tmp_path / "pw").chmod(0o600)
    run_certkit("issue-server", long_name, "10.0.0.7", "--out", "web", env=ca_env, cwd=tmp_path, check=True)
    subject = openssl("x509", "-in", str(tmp_path / "web" / "cert.pem"), "-noout", "-subject").stdout.decode()
    assert "CN" not in subject, subject
    run_certkit("export-p12", "web", "--password-file", "pw", env=ca_env, cwd=tmp_path, check=True)
    shown = openssl("pkcs12", "-in", str(tmp_path / "web" / "bundle.p12"), "-nokeys", "-passin",
                    f"file:{tmp_path / 'pw'}", "-info").stdout.decode()
    assert f"friendlyName: {long_name}" in shown, shown
