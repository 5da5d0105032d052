"""Audit round seventeen (house): the library as docs/library.md teaches it, and its words beside the CLI's.

1. A secret was taken by two rules. ``save_new()`` and ``unlock()`` took a passphrase as bytes, a str, a
   bytearray or a memoryview, but the PKCS#12 password of ``issued_pkcs12()``, ``pkcs12_bytes()`` and
   ``export_folder()`` was refused as a bytearray or memoryview (``WrongType: password must be bytes or a
   str, got bytearray``), and a token's PIN given to ``certkit.pkcs11.open_key()`` / ``generate_key()`` as a
   str or memoryview failed deep inside (``AttributeError: 'str' object has no attribute 'decode'``). One
   rule now (:func:`certkit.text.secret_bytes`): bytes, a bytearray or memoryview, or a str as UTF-8.
2. The annotations refused what the page documents, so ``mypy --strict`` failed a script that follows it:
   a str or bytearray passphrase to ``save_new()``, a str PKCS#12 password, ``permitted_ips=`` as
   ``ipaddress`` networks, ``verify_certificate()`` given an ``IssuedCert`` or a ``CA``, a PIN as a str.
3. A revocation was named two ways. ``ca.revoke()`` returned the damaged rows a keyCompromise could not compare
   as ``unchecked_rows`` ((serial, why) pairs) where ``certkit revoke --json`` says ``unchecked`` (serials), and
   ``certkit inspect crl.pem --json`` called the RFC 5280 reason ``reason`` where ``list`` and ``revoke`` say
   ``revocation_reason``. The library's dict now carries ``unchecked`` too (``unchecked_rows`` kept, with why)
   and is documented; inspect's CRL entries carry ``revocation_reason`` (``reason`` kept for old scripts).
4. A host written in another notation was misread. ``certkit issue-peer 'https://[::1:2380'`` (an unclosed
   bracket) ended in a traceback (``ValueError: Invalid IPv6 URL``), in issue-server, issue-client --dns,
   sign-csr's NAMES, verify --name and manifest lines too, and ``verify --purpose client --name`` of it said the
   certificate was damaged. etcd's own notations were refused for a reason beside the point or read as one host
   of several: ``etcd-1=https://10.0.0.11:2380`` (an --initial-cluster member) and ``DNS:web.example`` (a SAN
   entry as ``certkit list`` prints it) were "not a valid IPv6 address", ``10.0.0.1,10.0.0.2`` "has 7 parts",
   and a comma list of peer URLs "is a URL (the host is <the first>)". Each is now named for what it is, with
   the host to give (certkit/names_notation.py).
5. ``ca.issue_server(..., not_before=<before the CA's start>, days=10)`` silently started the certificate when the
   CA does: a shorter lifetime than asked, and no word of it. Its ``notes`` now say so, as they say a lifetime
   capped at the CA's expiry.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from test_audit16_library import _mypy

from conftest import PASSPHRASE, certkit_env, openssl, require, run_certkit

P12_PASSWORD = "p12 password, café"
SECRET_FORMS = {"bytes": lambda s: s.encode(), "bytearray": lambda s: bytearray(s.encode()),
                "memoryview": lambda s: memoryview(s.encode()), "str": lambda s: s}


def _p12_holds(path: Path, password: str, subject: str) -> None:
    """openssl opens the PKCS#12 file with ``password`` and finds the certificate of ``subject`` and its key."""
    require("openssl")
    read = subprocess.run(["openssl", "pkcs12", "-in", str(path), "-passin", "env:P12_PASS", "-nodes"],
                          env=dict(os.environ, P12_PASS=password), capture_output=True, timeout=120)
    text = read.stdout.decode()
    assert read.returncode == 0, read.stderr.decode()
    assert f"subject=CN = {subject}" in text and "-----BEGIN PRIVATE KEY-----" in text, text


# --- finding 1: one rule for every secret ------------------------------------------------------------------
@pytest.mark.parametrize("form", sorted(SECRET_FORMS))
def test_every_pkcs12_password_takes_the_forms_a_passphrase_takes(tmp_path: Path, form: str) -> None:
    from certkit import CA, CADirectory
    from certkit.pkcs12 import export_folder, issued_pkcs12, pkcs12_bytes

    given = SECRET_FORMS[form]
    ca = CA.create("Secrets CA")
    CADirectory(str(tmp_path / "ca")).save_new(ca, given(PASSPHRASE))  # this one took every form already
    opened = CADirectory(str(tmp_path / "ca")).open()
    opened.unlock(given(PASSPHRASE))
    alice = opened.issue_client("alice")

    (tmp_path / "issued.p12").write_bytes(issued_pkcs12(alice, given(P12_PASSWORD)))
    _p12_holds(tmp_path / "issued.p12", P12_PASSWORD, "alice")
    (tmp_path / "bytes.p12").write_bytes(pkcs12_bytes(alice.private_key, alice.cert, [], given(P12_PASSWORD)))
    _p12_holds(tmp_path / "bytes.p12", P12_PASSWORD, "alice")
    alice.write(str(tmp_path / "alice"))
    exported = export_folder(str(tmp_path / "alice"), given(P12_PASSWORD), ca_dir=str(tmp_path / "ca"))
    _p12_holds(exported, P12_PASSWORD, "alice")


def test_a_bytearray_password_is_copied_so_wiping_it_after_the_call_changes_nothing(tmp_path: Path) -> None:
    from certkit import CA
    from certkit.pkcs12 import issued_pkcs12

    ca = CA.create("Wipe CA")
    bob = ca.issue_client("bob")
    password = bytearray(P12_PASSWORD.encode())
    data = issued_pkcs12(bob, password)
    password[:] = b"\0" * len(password)  # what a careful caller does once the file is made
    (tmp_path / "bob.p12").write_bytes(data)
    _p12_holds(tmp_path / "bob.p12", P12_PASSWORD, "bob")


@pytest.mark.parametrize("form", ["str", "memoryview", "bytearray"])
def test_a_tokens_pin_takes_the_forms_a_passphrase_takes(tmp_path: Path, token, form: str) -> None:
    from cryptography.hazmat.primitives import serialization

    from certkit import CA, pkcs11

    pin = SECRET_FORMS[form](token.pin)
    made = pkcs11.generate_key(token.uri("formed"), token.module, pin, "ecdsa-p256")
    made.close()
    key = pkcs11.open_key(token.uri("formed"), token.module, SECRET_FORMS[form](token.pin))
    try:
        ca = CA.create("Token CA", key=key)  # the token signs it, logged in with the PIN as given
        leaf = ca.issue_server("token.internal")
    finally:
        key.close()
    (tmp_path / "ca.pem").write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.cert_pem)
    checked = openssl("verify", "-purpose", "sslserver", "-CAfile", str(tmp_path / "ca.pem"),
                      str(tmp_path / "leaf.pem"))
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- finding 2: the annotations admit what the page documents ------------------------------------------------
def test_a_script_that_follows_the_library_page_passes_mypy_strict(tmp_path: Path) -> None:
    checked = _mypy(tmp_path, """
        import ipaddress

        from certkit import CA, CADirectory
        from certkit.check import check_ca_directory
        from certkit.issuing import server_request
        from certkit.pkcs11 import open_key
        from certkit.pkcs12 import export_folder, issued_pkcs12, pkcs12_bytes
        from certkit.verify import verify_certificate

        ca = CA.create("T", permitted_dns="example.com",
                       permitted_ips=[ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_address("192.0.2.1")])
        server = ca.issue_server([ipaddress.ip_address("10.0.0.1"), "a.example.com"])
        alice = ca.issue_client("alice")
        CADirectory("ca").save_new(ca, "a str passphrase")
        CADirectory("ca2").save_new(ca, bytearray(b"a bytearray passphrase"))
        opened = CADirectory("ca").open()
        opened.unlock("a str passphrase")
        opened.unlock(lambda: bytearray(b"from a callable"))
        check_ca_directory("ca", "a str passphrase")
        p12: bytes = issued_pkcs12(alice, "a str password")
        more: bytes = pkcs12_bytes(alice.private_key, alice.cert, [], memoryview(b"pw"))
        export_folder("alice", bytearray(b"pw"), ca_dir="ca")
        key = open_key("pkcs11:token=ca;object=root", None, "1234")
        verdict = verify_certificate(server, purpose="server", roots=[ca])
        again = verify_certificate(server.cert, purpose="server", roots=ca, intermediates=[])
        request = server_request([ipaddress.ip_address("10.0.0.3")])
    """)
    assert "Success: no issues found" in checked.stdout, checked.stdout + checked.stderr


def test_the_library_page_names_one_rule_for_secrets() -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "library.md").read_text()
    flat = " ".join(page.split())
    assert "Every secret the library takes" in flat and "`bytearray` or `memoryview` (copied)" in flat


# --- finding 3: one vocabulary for a revocation, in the library and in every --json --------------------------------
def test_ca_revoke_and_the_commands_name_a_revocation_the_same_way(tmp_path: Path) -> None:
    import json
    import sqlite3

    from certkit import CA, CADirectory

    ca = CA.create("Words CA")
    CADirectory(str(tmp_path / "ca")).save_new(ca, PASSPHRASE)
    pairs = []
    for name in ("lib.example", "cli.example"):
        first = ca.issue_server(name)
        pairs.append((first.serial_hex, ca.renew(first).serial_hex))  # the key kept: both hold it
    with sqlite3.connect(tmp_path / "ca" / "inventory.sqlite3") as db:  # the older rows damaged: not comparable
        db.executemany("UPDATE certificates SET der = x'3082' WHERE serial = ?", [(old,) for old, _new in pairs])
    db.close()

    by_library = ca.revoke(pairs[0][1], "keyCompromise")
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"))
    ran = run_certkit("revoke", pairs[1][1], "--reason", "keyCompromise", "--json", env=env, cwd=tmp_path,
                      subprocess=True)
    assert ran.returncode == 0, ran.stderr
    by_command = json.loads(ran.stdout)
    assert set(by_command) <= set(by_library), set(by_command) - set(by_library)
    damaged = sorted(old for old, _new in pairs)  # either could hold the key: both named, by both
    assert by_library["unchecked"] == by_command["unchecked"] == damaged, (by_library, by_command)
    assert [serial for serial, _why in by_library["unchecked_rows"]] == by_library["unchecked"]

    crl = tmp_path / "crl.pem"
    run_certkit("crl", "--out", str(crl), env=dict(env, CERTKIT_CA_PASSPHRASE=PASSPHRASE), cwd=tmp_path,
                check=True)
    described = json.loads(run_certkit("inspect", str(crl), "--json", env=env, cwd=tmp_path, check=True).stdout)
    listed = json.loads(run_certkit("list", "--status", "revoked", "--json", env=env, cwd=tmp_path,
                                    check=True).stdout)["certificates"]
    in_crl = {e["serial"]: e["revocation_reason"] for e in described["items"][0]["revoked"]}
    assert in_crl == {row["serial"]: row["revocation_reason"] for row in listed} == {
        new: "keyCompromise" for _old, new in pairs}
    assert all(e["reason"] == e["revocation_reason"] for e in described["items"][0]["revoked"])  # the old name kept


# --- finding 4: a host written in another notation ------------------------------------------------------------------
UNCLOSED = "https://[::1:2380"  # urlsplit raised ValueError on it: a traceback
NOTATIONS = {
    "issue-server unclosed URL": (["issue-server", UNCLOSED], "is a URL; a certificate names the host alone"),
    "issue-peer unclosed URL": (["issue-peer", UNCLOSED], "is a URL; a certificate names the host alone"),
    "issue-client --dns unclosed URL": (["issue-client", "bob", "--dns", UNCLOSED], "is a URL"),
    "sign-csr NAMES unclosed URL": (["sign-csr", "{csr}", "--server", UNCLOSED], "is a URL"),
    "verify --name unclosed URL": (["verify", "{cert}", "--purpose", "server", "--name", UNCLOSED], "is a URL"),
    "etcd --initial-cluster member": (["issue-peer", "etcd-1=https://10.0.0.11:2380"],
                                      "not a host; a certificate names the host alone (the host is '10.0.0.11')"),
    "etcd --initial-advertise-peer-urls list": (
        ["issue-peer", "https://10.0.0.11:2380,https://etcd-1.cluster.internal:2380"],
        "holds 2 names ('https://10.0.0.11:2380', 'https://etcd-1.cluster.internal:2380')"),
    "addresses with a comma": (["issue-server", "10.0.0.1,10.0.0.2"], "holds 2 names ('10.0.0.1', '10.0.0.2')"),
    "SAN entry as list prints it": (["issue-server", "DNS:web.example"], "without its type ('web.example')"),
    "SAN entry as openssl prints it": (["issue-peer", "IP Address:::1"], "without its type ('::1')"),
    "subject attribute": (["issue-server", "CN=web.example"], "the host alone (here 'web.example')"),
}


@pytest.fixture
def words_ca(tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """A CA directory made by the library, the environment that uses it, and a CSR and a certificate to name."""
    from certkit import CA, CADirectory

    ca = CA.create("Notation CA")
    CADirectory(str(tmp_path / "ca")).save_new(ca, PASSPHRASE)
    (tmp_path / "web.pem").write_bytes(ca.issue_server("web.example").cert_pem)
    require("openssl")
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(tmp_path / "x.key"), "-subj", "/CN=x.example", "-out", str(tmp_path / "x.csr")],
                   check=True, capture_output=True, timeout=120)
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    return env, {"csr": str(tmp_path / "x.csr"), "cert": str(tmp_path / "web.pem")}


@pytest.mark.parametrize("case", sorted(NOTATIONS))
def test_a_host_in_another_notation_is_refused_naming_the_host(tmp_path: Path, words_ca, case: str) -> None:
    from conftest import assert_clean_error

    env, files = words_ca
    args, fragment = NOTATIONS[case]
    work = tmp_path / "work"
    work.mkdir()
    ran = run_certkit(*[arg.format(**files) for arg in args], env=env, cwd=work)
    assert_clean_error(ran, fragment)
    assert not any(work.iterdir()), list(work.iterdir())  # nothing written


def test_a_manifest_line_in_another_notation_is_refused_in_a_manifests_words(tmp_path: Path, words_ca) -> None:
    from conftest import assert_clean_error

    env, _files = words_ca
    (tmp_path / "m.csv").write_text(f'kind,names\nserver,"{UNCLOSED}"\npeer,"etcd-1.internal,10.0.0.11"\n')
    ran = run_certkit("issue-batch", str(tmp_path / "m.csv"), "--out-dir", str(tmp_path / "out"), env=env,
                      cwd=tmp_path)
    assert_clean_error(ran, "line 2:")
    assert f"'{UNCLOSED}' is a URL" in ran.stderr, ran.stderr
    assert "line 3: 'etcd-1.internal,10.0.0.11' holds 2 names" in ran.stderr and "separated by spaces" in ran.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_verify_blames_the_name_not_the_certificate(tmp_path: Path, words_ca) -> None:
    env, files = words_ca
    ran = run_certkit("verify", files["cert"], "--purpose", "client", "--name", UNCLOSED, env=env, cwd=tmp_path)
    assert ran.returncode == 1 and "Traceback" not in ran.stderr, ran.stderr
    assert "damaged" not in ran.stderr and f"not valid for name {UNCLOSED}" in ran.stderr, ran.stderr


def test_the_library_says_the_same_as_an_invalid_name() -> None:
    from certkit import CA
    from certkit.errors import InvalidName

    ca = CA.create("Library notation CA")
    with pytest.raises(InvalidName, match="is a URL; a certificate names the host alone"):
        ca.issue_peer(UNCLOSED)
    with pytest.raises(InvalidName, match=r"give each as an item of a list \(\['a.example', 'b.example'\]\)"):
        ca.issue_server("a.example,b.example")
    with pytest.raises(InvalidName, match=r"has a port \(:53\); a certificate names the host alone \('dns'\)"):
        ca.issue_server("dns:53")  # a host named dns, not a SAN entry


# --- finding 5: a not_before before the CA's start is said --------------------------------------------------------
def test_a_not_before_moved_to_the_cas_start_is_said_in_the_notes(tmp_path: Path) -> None:
    import datetime as dt

    from certkit import CA

    ca = CA.create("Late CA")
    asked = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    leaf = ca.issue_client("early", not_before=asked, days=10)
    assert leaf.cert.not_valid_before_utc == ca.cert.not_valid_before_utc  # never before its issuer
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    (tmp_path / "leaf.pem").write_bytes(leaf.cert_pem)
    dates = openssl("x509", "-in", str(tmp_path / "leaf.pem"), "-noout", "-startdate").stdout.decode()
    assert ca.cert.not_valid_before_utc.strftime("%b %e %H:%M:%S %Y") in dates, dates
    said = " ".join(leaf.notes)
    assert "starts when the CA 'Late CA' does" in said and asked.strftime("%Y-%m-%d %H:%M:%S") in said, leaf.notes
    assert ca.issue_client("now").notes == []  # the usual few minutes of backdating say nothing
