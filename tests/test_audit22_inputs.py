"""The twenty-second round's input findings (audit inputs22), each as a class:

1. a manifest that is not UTF-8 (a Latin-1 / Windows-1252 "CSV" from a spreadsheet, as a file or on standard
   input, with LF or CR line ends) is refused in one ``Error:`` line that names the line and shows its value
   (the bytes that are not UTF-8 as ``\\xNN``, control characters escaped), not "is not UTF-8 text." alone;
   nothing is issued;
2. a NEW secret (init-ca's CA passphrase, export-p12's bundle password) from a file ending in a Windows line end
   (CRLF) is taken without it, but ``openssl ... -passin file:`` keeps the CR and does not open the key or
   bundle with the same file: certkit now warns, naming the file and OpenSSL, before it makes them;
3. a manifest whose columns are separated by semicolons (a spreadsheet's "CSV" where the decimal mark is a
   comma), tabs or '|' was refused as a header naming unknown columns, without saying why: it now says the
   columns are separated by semicolons (tabs, '|'), not commas; nothing is issued;
4. ``issue-batch -`` with standard input a terminal waited for input without a word, as if it hung: it now
   says it is reading the manifest from the terminal and how to end it (Ctrl-D), and what is typed is issued.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import assert_clean_error, certkit_env, openssl, run_certkit


def _env(tmp_path: Path, **extra) -> dict[str, str]:
    return certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path), **extra)


@pytest.fixture
def ca_env(tmp_path: Path) -> dict[str, str]:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Inputs 22 CA", "--no-passphrase", env=env, check=True)
    return env


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
@pytest.mark.parametrize("stdin", [False, True])
def test_latin1_manifest_names_line_and_value(tmp_path: Path, ca_env: dict, newline: bytes, stdin: bool) -> None:
    rows = [b"kind,names", b"client,alice", b"client,Jos\xe9 Garc\xeda \x1b[31m"]
    manifest = tmp_path / "fleet.csv"
    manifest.write_bytes(newline.join(rows) + newline)
    if stdin:
        proc = run_certkit("issue-batch", "-", "--out-dir", tmp_path / "out", env=ca_env, input=manifest.read_bytes())
    else:
        proc = run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "out", env=ca_env)
    stderr = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode()
    proc.stderr = stderr
    assert_clean_error(proc, "is not UTF-8 text: line 3 is 'client,Jos\\xe9 Garc\\xeda \\x1b[31m'")
    assert "\x1b" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "out").exists()


PASSPHRASE = "correct horse battery staple"


def _secret_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def test_new_ca_passphrase_from_a_crlf_file_is_warned_as_openssl_disagrees(tmp_path: Path) -> None:
    crlf = _secret_file(tmp_path / "pass.txt", PASSPHRASE.encode() + b"\r\n")
    proc = run_certkit("init-ca", "--name", "CRLF CA", "--passphrase-file", crlf, env=_env(tmp_path), check=True)
    assert "Warning: the file" in proc.stderr and "CRLF" in proc.stderr and "-passin file:" in proc.stderr, proc.stderr
    key = tmp_path / "ca" / "ca-key.pem"
    # The peer: OpenSSL given the same file does not open the key; given the secret certkit took, it does.
    assert openssl("pkey", "-in", key, "-noout", "-passin", f"file:{crlf}").returncode != 0
    assert openssl("pkey", "-in", key, "-noout", "-passin", f"pass:{PASSPHRASE}").returncode == 0
    # A Unix line end: no warning.
    lf = _secret_file(tmp_path / "lf.txt", PASSPHRASE.encode() + b"\n")
    proc = run_certkit("init-ca", "--name", "LF CA", "--passphrase-file", lf, env=_env(tmp_path / "lf"), check=True)
    assert "CRLF" not in proc.stderr, proc.stderr
    lf_key = tmp_path / "lf" / "ca" / "ca-key.pem"
    assert openssl("pkey", "-in", lf_key, "-noout", "-passin", f"file:{lf}").returncode == 0


def test_new_p12_password_from_a_crlf_file_is_warned_as_openssl_disagrees(tmp_path: Path, ca_env: dict) -> None:
    run_certkit("issue-client", "bob", "--out", tmp_path / "bob", env=ca_env, check=True)
    crlf = _secret_file(tmp_path / "pw", b"a good password\r\n")
    proc = run_certkit("export-p12", tmp_path / "bob", "--password-file", crlf, env=ca_env, check=True)
    assert "Warning: the file" in proc.stderr and "CRLF" in proc.stderr, proc.stderr
    bundle = tmp_path / "bob" / "bundle.p12"
    assert openssl("pkcs12", "-in", bundle, "-noout", "-passin", f"file:{crlf}").returncode != 0
    assert openssl("pkcs12", "-in", bundle, "-noout", "-passin", "pass:a good password").returncode == 0


@pytest.mark.parametrize(("mark", "called"), [(";", "semicolons"), ("\t", "tabs"), ("|", "'|'")])
def test_manifest_with_another_separator_says_so(tmp_path: Path, ca_env: dict, mark: str, called: str) -> None:
    manifest = tmp_path / "fleet.csv"
    manifest.write_text(f"# exported\nKind{mark}Names{mark}out\nserver{mark}a.example.com{mark}a\n", encoding="utf-8")
    proc = run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "out", env=ca_env)
    assert_clean_error(proc, "line 2: the header must name the columns")
    assert f"Its columns are separated by {called}; a manifest's are separated by commas" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    # a header of known columns and one unknown is not said to be separated otherwise
    manifest.write_text("kind,names,colour\nserver,a.example.com,red\n", encoding="utf-8")
    proc = run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "out", env=ca_env)
    assert_clean_error(proc, "(found: kind, names, colour).")
    assert "separated by" not in proc.stderr


def test_manifest_on_a_terminal_says_it_is_read_from_it(tmp_path: Path, ca_env: dict) -> None:
    import os
    import pty
    import subprocess
    import sys
    import time

    main, child = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "certkit", "issue-batch", "-", "--out-dir", tmp_path / "out"],
                                stdin=child, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ca_env)
        os.close(child)
        time.sleep(0.5)
        os.write(main, b"kind,names\nserver,a.example.com\n\x04")
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(main)
    err = err.decode()
    assert proc.returncode == 0, err
    assert "Reading the manifest from standard input, a terminal" in err and "Ctrl-D" in err, err
    assert (tmp_path / "out" / "a.example.com" / "cert.pem").is_file()
