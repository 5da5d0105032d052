"""Audit round ten, gaps in round nine's fixes (report regress12), each as a class:

1. a number is the digits 0 to 9 alone wherever certkit reads one: an IPv4 part, a port, a PKCS#11 slot-id,
   an HTTP status a server sends to probe ('²'.isdigit() is true, and int('²') raises);
2. no CRL goes over a private key in any common container: Java keystores (JKS, JCEKS), OpenPGP secret
   keys (armored and binary), PuTTY and age keys, besides PEM, DER and PKCS#12;
3. a ``trust install --nss`` whose ``certutil -N`` fails or is stopped takes out every folder it made
   (~/.pki too), as uninstall does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, require, run_certkit

ODD_DIGITS = ["²", "٣", "３"]  # superscript two, Arabic-Indic three, fullwidth three
# What each is refused for: a digit UTS 46 maps to an ASCII one (as curl and browsers read it) names the address
# they read (round twenty); one it does not map names the address in ASCII digits (round twenty-one).
REFUSAL = {"²": "written in other characters", "٣": "written in Arabic-Indic digits",
           "３": "written in other characters"}


# --- 1. digits ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("digit", ODD_DIGITS)
@pytest.mark.parametrize("shape", ["1.2.3.{d}", "1.{d}.3.4", "10.0.0.1{d}"])
def test_an_ipv4_part_in_another_scripts_digits_is_refused_in_one_line(ca_dir, ca_env, tmp_path, digit, shape):
    name = shape.format(d=digit)
    proc = run_certkit("issue-server", name, "--out", tmp_path / "o", env=ca_env)
    assert_clean_error(proc, REFUSAL[digit])
    assert not (tmp_path / "o").exists()
    proc = run_certkit("verify", "--purpose", "server", "--name", name, ca_dir / "ca.pem", env=ca_env)
    assert_clean_error(proc, REFUSAL[digit], code=proc.returncode or 1)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"kind,names\nserver,{name}\n", encoding="utf-8")
    proc = run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "b", env=ca_env)
    assert proc.returncode != 0 and REFUSAL[digit] in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


@pytest.mark.parametrize("digit", ODD_DIGITS)
def test_the_library_and_acme_refuse_odd_digits_with_their_own_errors(ca_dir, ca_env, digit):
    from certkit import CADirectory
    from certkit.acme.policy import Policy
    from certkit.acme.problems import Problem
    from certkit.errors import InvalidName

    ca = CADirectory(ca_dir).load(PASSPHRASE)
    with pytest.raises(InvalidName, match=REFUSAL[digit]):
        ca.issue_server([f"1.2.3.{digit}"])
    policy = Policy.build([], ["10.0.0.0/8"])
    with pytest.raises(Problem) as raised:
        policy.check_identifiers(ca, [{"type": "dns", "value": f"10.0.0.{digit}"}])
    assert raised.value.kind == "rejectedIdentifier" and REFUSAL[digit] in raised.value.detail
    with pytest.raises(Problem) as raised:  # an ip identifier that is no address: malformed, said, no crash
        policy.check_identifiers(ca, [{"type": "ip", "value": f"10.0.0.{digit}"}])
    assert raised.value.kind in ("malformed", "rejectedIdentifier") and raised.value.detail


@pytest.mark.parametrize("slot", ["%C2%B2", "%D9%A3", "%EF%BC%93"])
def test_a_pkcs11_slot_id_in_other_digits_is_not_a_number(tmp_path, slot):
    env = certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "t", "--name", "T",
                       "--key-uri", f"pkcs11:token=x;object=k;slot-id={slot}", env=env)
    assert_clean_error(proc, "slot-id")
    assert "is not a number" in proc.stderr
    assert not (tmp_path / "t").exists()


def test_probe_reads_an_http_status_in_odd_digits_as_no_status(ca_dir, ca_env, tmp_path):
    """A server answering ``HTTP/1.1 ² OK``: probe reports what it got, no traceback."""
    import socket
    import ssl
    import threading

    run_certkit("issue-server", "localhost", "--out", tmp_path / "srv", env=ca_env, check=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "srv" / "fullchain.pem", tmp_path / "srv" / "privkey.pem")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def answer():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.settimeout(5)
                    tls.recv(4096)
                    tls.sendall("HTTP/1.1 ² OK\r\nContent-Length: 2\r\n\r\nhi".encode("latin-1"))
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        proc = run_certkit("probe", f"https://localhost:{port}/", "--ca-file", ca_dir / "ca.pem", "--json",
                           env=ca_env)
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    assert "http_status" not in json.dumps(report) or '"http_status": 178' not in json.dumps(report)
    assert proc.returncode in (0, 1), (proc.returncode, proc.stderr)


# --- 2. no output over a private key of any container -------------------------------------------------------
def _pgp_secret_binary(new_format: bool) -> bytes:
    body = bytes([4]) + b"\x5f\x00\x00\x00\x16" + b"\x00" * 40  # version 4, time, algorithm...: enough
    if new_format:
        return bytes([0xC5, len(body)]) + body
    return bytes([0x94, len(body)]) + body


KEY_CONTAINERS = {
    "keystore.jks": b"\xfe\xed\xfe\xed\x00\x00\x00\x02" + b"\x00" * 56,
    "keystore.jceks": b"\xce\xce\xce\xce\x00\x00\x00\x02" + b"\x00" * 56,
    "secret.asc": b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlFgEZw...\n-----END PGP PRIVATE KEY BLOCK-----\n",
    "secret-old.gpg": _pgp_secret_binary(False),
    "secret-new.gpg": _pgp_secret_binary(True),
    "id.ppk": b"PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n",
    "age.txt": b"# created: 2026-01-01\nAGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ\n",
}


@pytest.mark.parametrize("name", sorted(KEY_CONTAINERS))
def test_no_crl_goes_over_a_key_container(ca_dir, ca_env, tmp_path, name):
    """(A jsonl, k8s or tar output holds keys itself: replacing a file of keys with --force is what it is asked
    to do, and what it replaces is recorded; docs/formats.md.)"""
    target = tmp_path / name
    target.write_bytes(KEY_CONTAINERS[name])
    proc = run_certkit("crl", "--out", target, "--force", env=ca_env)
    assert_clean_error(proc, "holds a private key")
    assert target.read_bytes() == KEY_CONTAINERS[name]


def test_real_keystores_and_gpg_keys_are_refused(ca_dir, ca_env, tmp_path):
    made = []
    if shutil.which("keytool"):
        for kind in ("JKS", "JCEKS", "PKCS12"):
            path = tmp_path / f"ks.{kind.lower()}"
            subprocess.run(["keytool", "-genkeypair", "-alias", "a", "-keyalg", "EC", "-keystore", path,
                            "-storetype", kind, "-storepass", "changeit", "-keypass", "changeit", "-dname", "CN=a",
                            "-noprompt"], check=True, capture_output=True)
            made.append(path)
    if shutil.which("gpg"):
        home = tmp_path / "gnupg"
        home.mkdir(mode=0o700)
        gpg = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase", ""]
        subprocess.run([*gpg, "--quick-gen-key", "t@example.com", "ed25519"], check=True, capture_output=True)
        for armor, path in ((True, tmp_path / "sec.asc"), (False, tmp_path / "sec.gpg")):
            out = subprocess.run([*gpg, *(["--armor"] if armor else []), "--export-secret-keys", "t@example.com"],
                                 check=True, capture_output=True).stdout
            path.write_bytes(out)
            made.append(path)
        public = tmp_path / "pub.gpg"
        public.write_bytes(subprocess.run([*gpg, "--export", "t@example.com"], check=True,
                                          capture_output=True).stdout)
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)
        # a public key is not a secret: --force replaces it, as asked
        run_certkit("crl", "--out", public, "--force", env=ca_env, check=True)
        assert public.read_bytes().startswith(b"-----BEGIN X509 CRL-----")
    if not made:
        pytest.skip("neither keytool nor gpg is installed")
    for path in made:
        before = path.read_bytes()
        proc = run_certkit("crl", "--out", path, "--force", env=ca_env)
        assert_clean_error(proc, "holds a private key")
        assert path.read_bytes() == before


# --- 3. trust install --nss: every folder it made goes when certutil -N fails or is stopped -----------------
def _fake_certutil(tmp_path: Path, on_create: str) -> dict:
    real = require("certutil")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "certutil"
    wrapper.write_text(f'#!/bin/sh\ncase " $* " in *" -N "*) {on_create};; *) exec "{real}" "$@";; esac\n')
    wrapper.chmod(stat.S_IRWXU)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_a_failed_database_creation_takes_out_the_pki_folder_it_made(ca_dir, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    path = _fake_certutil(tmp_path, 'echo "certutil: function failed: SEC_ERROR_IO" >&2; exit 1')
    env = certkit_env(HOME=str(home), CERTKIT_CA_DIR=str(ca_dir), CERTKIT_CA_PASSPHRASE=PASSPHRASE, **path)
    proc = run_certkit("trust", "install", "--nss", "--unconstrained", env=env)
    assert proc.returncode == 1 and "SEC_ERROR_IO" in proc.stderr and "Traceback" not in proc.stderr
    assert list(home.iterdir()) == []


def test_a_stopped_database_creation_takes_out_the_pki_folder_it_made(ca_dir, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    started = tmp_path / "creating"
    path = _fake_certutil(tmp_path, f'touch "{started}"; exec sleep 30')
    env = certkit_env(HOME=str(home), CERTKIT_CA_DIR=str(ca_dir), CERTKIT_CA_PASSPHRASE=PASSPHRASE, **path)
    proc = subprocess.Popen([sys.executable, "-m", "certkit", "trust", "install", "--nss", "--unconstrained"],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while not started.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "certutil -N never ran"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, (proc.returncode, out, err)
    assert list(home.iterdir()) == []


def test_a_pki_folder_that_was_there_stays(ca_dir, tmp_path):
    home = tmp_path / "home"
    (home / ".pki").mkdir(parents=True)
    path = _fake_certutil(tmp_path, "exit 1")
    env = certkit_env(HOME=str(home), CERTKIT_CA_DIR=str(ca_dir), CERTKIT_CA_PASSPHRASE=PASSPHRASE, **path)
    proc = run_certkit("trust", "install", "--nss", "--unconstrained", env=env)
    assert proc.returncode == 1
    assert [p.name for p in home.iterdir()] == [".pki"] and list((home / ".pki").iterdir()) == []
