"""Audit round eight, bad file inputs (badinput8), the findings about files read and written:

- #2 ``issue-batch -`` copied standard input to a temporary file without a limit and checked it
  only afterwards (``< /dev/urandom`` filled the disk): each line is now checked as it is copied
  (too long, a NUL byte, not UTF-8: the words a manifest file gets) and the copy is bounded.
- #3 a secret file starting with a UTF-8 byte-order mark (Windows Notepad) made the mark part of
  a NEW CA passphrase or PKCS#12 password, which neither a prompt nor OpenSSL's ``-passin file:``
  (which keeps the mark, as checked here) could give again: a new secret or a PIN with one is
  refused; an existing passphrase is taken as it is, as OpenSSL takes it, with a hint when it fails.
- #4 ``crl --out`` that failed to write (a full disk) used up a CRL number on every try: the
  number is given back while the file is not in place.
- #6 ``revoke FILE`` (and renew) of a file holding several end-entity certificates took the
  first; it is refused, naming them (a fullchain.pem, a leaf and its CA certificates, is fine).
- #10 a loop of symbolic links was called "a symbolic link to loopb, which does not exist" or
  "does not exist": it is "a loop of symbolic links" wherever a file argument is resolved.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, run_certkit

BOM = b"\xef\xbb\xbf"


def _secret(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


# --- #2: issue-batch - ---------------------------------------------------------------------
def _feed(proc: subprocess.Popen, data: bytes, sent: list[int]) -> None:
    """Write ``data`` to the process's standard input in pieces, counting what it took, until it
    stops reading (a broken pipe) or all is written."""
    view = memoryview(data)
    try:
        while view:
            piece = view[:65536]
            proc.stdin.write(piece)
            proc.stdin.flush()
            sent[0] += len(piece)
            view = view[len(piece):]
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass


def test_random_bytes_on_standard_input_are_refused_at_the_first_bad_line(ca_dir, ca_env, tmp_path):
    spool = tmp_path / "tmpdir"
    spool.mkdir()
    data = os.urandom(5 << 20)
    with open(tmp_path / "out", "w+") as out, open(tmp_path / "err", "w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "certkit", "issue-batch", "-", "--out-dir",
                                 str(tmp_path / "o")], stdin=subprocess.PIPE, stdout=out, stderr=err,
                                env=ca_env | {"TMPDIR": str(spool)}, cwd=tmp_path)
        sent = [0]
        feeder = threading.Thread(target=_feed, args=(proc, data, sent))
        feeder.start()
        proc.wait(60)
        feeder.join(60)
    ran = subprocess.CompletedProcess(["certkit", "issue-batch", "-"], proc.returncode, (tmp_path / "out").read_text(),
                                      (tmp_path / "err").read_text())
    # "is not UTF-8 text", or (rarely, a short line of random bytes that is UTF-8) "is not text: ... NUL"
    assert_clean_error(ran, "The manifest on standard input is not ")
    # refused at its first bad line: it stopped reading long before the 5 MB were copied
    assert sent[0] < 1 << 20, f"certkit read {sent[0]} bytes of random input before refusing it"
    assert list(spool.iterdir()) == []  # no spool file left behind
    assert not (tmp_path / "o").exists()


def test_a_nul_byte_is_refused_alike_on_standard_input_and_in_a_file(ca_dir, ca_env, tmp_path):
    text = "kind,names\nserver,a.example\n\0\n" * 2
    (tmp_path / "m.csv").write_text(text)
    spool = tmp_path / "tmpdir"
    spool.mkdir()
    piped = run_certkit("issue-batch", "-", "--out-dir", "o", cwd=tmp_path, env=ca_env | {"TMPDIR": str(spool)},
                        input=text, subprocess=True)
    assert_clean_error(piped, "The manifest on standard input is not text: line 3 holds a NUL byte")
    from_file = run_certkit("issue-batch", "m.csv", "--out-dir", "o", cwd=tmp_path, env=ca_env)
    assert_clean_error(from_file, "The manifest m.csv is not text: line 3 holds a NUL byte")
    assert list(spool.iterdir()) == [] and not (tmp_path / "o").exists()


def test_the_copy_of_standard_input_is_bounded(ca_dir, ca_env, tmp_path, monkeypatch):
    from certkit.cli import batch

    monkeypatch.setattr(batch, "MAX_SPOOLED_MANIFEST_BYTES", 1000)  # valid lines, endlessly many
    text = "kind,names\n" + "".join(f"server,h{i}.example\n" for i in range(200))
    proc = run_certkit("issue-batch", "-", "--out-dir", "o", cwd=tmp_path, env=ca_env, input=text)
    assert_clean_error(proc, "The manifest on standard input is larger than 0 MiB")
    assert "give a manifest that large as a file" in proc.stderr
    assert not (tmp_path / "o").exists()


# --- #3: a byte-order mark in a secret file ---------------------------------------------------
def test_a_new_ca_passphrase_with_a_byte_order_mark_is_refused(tmp_path):
    """Refused, not dropped: OpenSSL's -passin file: keeps the mark (checked below), so a key made
    without it would open with that file in certkit but not in OpenSSL."""
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"))
    marked = _secret(tmp_path / "ppbom", BOM + b"correct horse battery\n")
    proc = run_certkit("init-ca", "--passphrase-file", marked, env=env)
    assert_clean_error(proc, f"The file {marked} starts with a byte-order mark (U+FEFF")
    assert not (tmp_path / "ca").exists()
    # saved without it, the file, the typed passphrase and OpenSSL all open the key; OpenSSL given the
    # file with the mark does not
    plain = _secret(tmp_path / "pp", b"correct horse battery\n")
    run_certkit("init-ca", "--passphrase-file", plain, env=env, check=True)
    key = tmp_path / "ca" / "ca-key.pem"
    assert openssl("pkey", "-in", key, "-passin", f"file:{plain}", "-noout").returncode == 0
    assert openssl("pkey", "-in", key, "-passin", "pass:correct horse battery", "-noout").returncode == 0
    assert openssl("pkey", "-in", key, "-passin", f"file:{marked}", "-noout").returncode != 0


@pytest.mark.parametrize("how", ["export-p12 --password-file", "issue-server --p12-password-file",
                                 "$CERTKIT_P12_PASSWORD"])
def test_a_new_p12_password_with_a_byte_order_mark_is_refused(ca_dir, ca_env, tmp_path, how):
    marked = _secret(tmp_path / "pwbom", BOM + b"p12password\n")
    if how.startswith("export-p12"):
        run_certkit("issue-server", "b.example", "--out", tmp_path / "b", env=ca_env, check=True)
        proc = run_certkit("export-p12", tmp_path / "b", "--password-file", marked, env=ca_env)
    elif how.startswith("issue-server"):
        proc = run_certkit("issue-server", "b.example", "--out", tmp_path / "b", "--p12", "--p12-password-file",
                           marked, env=ca_env)
    else:
        run_certkit("issue-server", "b.example", "--out", tmp_path / "b", env=ca_env, check=True)
        proc = run_certkit("export-p12", tmp_path / "b",
                           env=ca_env | {"CERTKIT_P12_PASSWORD": (BOM + b"p12password").decode()})
    assert_clean_error(proc, "starts with a byte-order mark (U+FEFF")
    assert not (tmp_path / "b" / "bundle.p12").exists()
    # saved without it, the bundle.p12 opens in OpenSSL with the password as typed
    password = _secret(tmp_path / "pw", b"p12password\n")
    if (tmp_path / "b").exists():
        run_certkit("export-p12", tmp_path / "b", "--password-file", password, env=ca_env, check=True)
    else:
        run_certkit("issue-server", "b.example", "--out", tmp_path / "b", "--p12", "--p12-password-file", password,
                    env=ca_env, check=True)
    opened = openssl("pkcs12", "-in", tmp_path / "b" / "bundle.p12", "-passin", "pass:p12password", "-noout")
    assert opened.returncode == 0, opened.stderr


def test_a_pin_with_a_byte_order_mark_is_refused_before_the_token_sees_it(tmp_path, monkeypatch):
    """A wrong PIN uses up one of the token's few tries: the mark is refused, not sent."""
    import click

    from certkit.cli.common import read_secret
    from certkit.constants import ENV_PKCS11_PIN

    pin = _secret(tmp_path / "pinbom", BOM + b"1234\n")
    with pytest.raises(click.ClickException, match="starts with a byte-order mark"):
        read_secret(pin, ENV_PKCS11_PIN, "PIN")
    monkeypatch.setenv(ENV_PKCS11_PIN, (BOM + b"1234").decode())
    with pytest.raises(click.ClickException, match="starts with a byte-order mark"):
        read_secret(None, ENV_PKCS11_PIN, "PIN")


def test_an_existing_passphrase_read_with_a_mark_fails_with_a_hint(ca_dir, ca_env, tmp_path):
    """An existing passphrase is taken as it is (as OpenSSL's -passin file: takes it); when it does not
    open the key, the mark is named as the likely cause."""
    marked = _secret(tmp_path / "ppbom", BOM + PASSPHRASE.encode() + b"\n")
    env = {k: v for k, v in ca_env.items() if k != "CERTKIT_CA_PASSPHRASE"}
    proc = run_certkit("issue-server", "q.example", "--out", tmp_path / "q", "--passphrase-file", marked, env=env)
    assert_clean_error(proc, "The passphrase does not decrypt the CA key")
    assert "starts with a byte-order mark (U+FEFF)" in proc.stderr


def test_the_timer_gives_the_same_hint_and_never_sends_a_marked_pin(ca_dir, ca_env, tmp_path, monkeypatch, capsys):
    marked = _secret(tmp_path / "ppbom", BOM + PASSPHRASE.encode() + b"\n")
    env = {k: v for k, v in ca_env.items() if k != "CERTKIT_CA_PASSPHRASE"}
    proc = run_certkit("renew", "--install-timer", "--unit-dir", tmp_path / "u", "--passphrase-file", marked, env=env)
    assert_clean_error(proc, "The passphrase does not decrypt the CA key")
    assert "starts with a byte-order mark (U+FEFF)" in proc.stderr and not (tmp_path / "u").exists()
    # The timer's own try of its CA (in the environment it will run with): a key in a token would be sent the
    # PIN file's text; one that starts with the mark is refused before the token sees it.
    import certkit.store
    from certkit.fleet.timer import _probe

    monkeypatch.setattr(certkit.store.CADirectory, "key_uri", property(lambda self: "pkcs11:token=t;object=k"))
    monkeypatch.setattr("certkit.ca.CA.unlock", lambda self, secret: pytest.fail(f"sent to the token: {secret()!r}"))
    assert _probe([str(ca_dir), str(marked)]) == 1
    assert "starts with a byte-order mark (U+FEFF), which is no part of a PIN" in capsys.readouterr().err


# --- #4: crl --out that cannot be written -----------------------------------------------------
def _crl_number(ca_dir: Path) -> int:
    with sqlite3.connect(ca_dir / "inventory.sqlite3") as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'crl_number'").fetchone()
    return int(row[0]) if row else 0


def test_a_crl_that_cannot_be_written_takes_no_number(ca_dir, ca_env, tmp_path):
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    out = tmp_path / "crl.pem"
    run_certkit("crl", "--out", out, env=ca_env, check=True)
    before = _crl_number(ca_dir)
    for _ in range(2):
        # The first write(2) of the process is the CRL's (SQLite writes with pwrite64): it fails, as on a
        # full disk.
        proc = subprocess.run([strace, "-f", "-qq", "-o", os.devnull, "-e", "trace=write",
                               "-e", "inject=write:error=ENOSPC:when=1", sys.executable, "-m", "certkit", "crl",
                               "--out", str(out)], env=ca_env, capture_output=True, text=True, timeout=120)
        if "Operation not permitted" in proc.stderr and "ptrace" in proc.stderr:
            pytest.skip("ptrace is not allowed here")
        assert_clean_error(proc, f"Cannot write the CRL to {out}: the disk is full; {out} is as it was.")
        assert _crl_number(ca_dir) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".crl.pem")]  # no temporary file left
    proc = run_certkit("crl", "--out", out, env=ca_env, check=True)
    assert f"Wrote CRL number {before + 1} " in proc.stdout
    assert _crl_number(ca_dir) == before + 1


# --- #6: revoke FILE with several certificates ------------------------------------------------
@pytest.fixture
def two_bundles(ca_dir, ca_env, tmp_path):
    run_certkit("issue-server", "a.example", "--out", tmp_path / "a", env=ca_env, check=True)
    run_certkit("issue-client", "bob", "--out", tmp_path / "bob", env=ca_env, check=True)
    two = tmp_path / "two.pem"
    two.write_bytes((tmp_path / "bob" / "cert.pem").read_bytes() + (tmp_path / "a" / "cert.pem").read_bytes())
    return tmp_path


@pytest.mark.parametrize("command", ["revoke", "renew"])
def test_a_file_of_two_end_entity_certificates_is_refused(two_bundles, ca_env, command):
    tmp_path = two_bundles
    proc = run_certkit(command, tmp_path / "two.pem", env=ca_env, cwd=tmp_path)
    assert_clean_error(proc, f"{tmp_path / 'two.pem'} holds 2 end-entity certificates, not one (CN=bob, serial ")
    assert "CN=a.example, serial " in proc.stderr
    listed = json.loads(run_certkit("list", "--json", env=ca_env, check=True).stdout)
    assert [c["status"] for c in listed["certificates"]] == ["valid", "valid"], listed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "bob", "ca", "two.pem"]
    # a leaf followed by its CA certificates (fullchain.pem) names one certificate
    proc = run_certkit(command, tmp_path / "a" / "fullchain.pem", env=ca_env, cwd=tmp_path, check=True)
    assert "CN=a.example" in proc.stdout or "a.example" in proc.stdout


# --- #10: loops of symbolic links -------------------------------------------------------------
LOOP_COMMANDS = {
    "sign-csr CSR": ["sign-csr", "--server", "loopa"],
    "--passphrase-file": ["issue-server", "x.example", "--passphrase-file", "loopa"],
    "inspect": ["inspect", "loopa"],
    "inspect, a loop on the way": ["inspect", "loopa/x"],
    "verify": ["verify", "loopa", "--purpose", "server"],
    "verify --ca-file": ["verify", "a", "--purpose", "server", "--name", "a.example", "--ca-file", "loopa"],
    "verify --untrusted": ["verify", "a/cert.pem", "--purpose", "server", "--name", "a.example", "--untrusted",
                           "loopa"],
    "revoke": ["revoke", "loopa"],
    "renew": ["renew", "loopa"],
    "renew --unit-dir": ["renew", "--install-timer", "--unit-dir", "loopa"],
    "issue-batch": ["issue-batch", "loopa"],
    "serve --cert": ["serve", "--cert", "loopa", "--key", "a/privkey.pem"],
    "issue-server --out": ["issue-server", "y.example", "--out", "loopa"],
}


@pytest.mark.parametrize("what", list(LOOP_COMMANDS))
def test_a_loop_of_symbolic_links_is_called_one(ca_dir, ca_env, tmp_path, what):
    run_certkit("issue-server", "a.example", "--out", tmp_path / "a", env=ca_env, check=True)
    os.symlink("loopb", tmp_path / "loopa")
    os.symlink("loopa", tmp_path / "loopb")
    proc = run_certkit(*LOOP_COMMANDS[what], env=ca_env, cwd=tmp_path)
    shown = "loopa/x" if "loopa/x" in LOOP_COMMANDS[what] else "loopa"
    assert_clean_error(proc, f"{shown} is a loop of symbolic links.")
    assert "does not exist" not in proc.stderr


@pytest.mark.parametrize("command", [["inspect"], ["revoke"], ["renew"]])
def test_a_dangling_link_says_where_it_points(ca_dir, ca_env, tmp_path, command):
    os.symlink("nowhere", tmp_path / "dangling")
    proc = run_certkit(*command, "dangling", env=ca_env, cwd=tmp_path)
    assert_clean_error(proc, "dangling is a symbolic link to nowhere, which does not exist.")
