"""Round fourteen, bad input (badinput): a generated matrix of every command with odd standard
streams, environments, files and values; each test here is one class of what it found."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, certkit_env, run_certkit

FULL = "Error: Cannot write to standard output: the disk is full."
DONE = " What the command did before this is done; it stopped there, its report cut short."  # test_audit14_integrity
PIPE = "Error: The reader of standard output closed it (a broken pipe) before everything was written."


def _certkit(args, env, cwd, stdout) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "certkit", *args], cwd=cwd, env=env, stdout=stdout,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, timeout=120)


def _into(where: str, args, env, cwd) -> subprocess.CompletedProcess:
    if where == "full":
        with open("/dev/full", "w") as full:
            return _certkit(args, env, cwd, full)
    read, write = os.pipe()
    os.close(read)  # the reader left before a byte was written: `certkit ... | head -c0`
    try:
        return _certkit(args, env, cwd, write)
    finally:
        os.close(write)


def _one_line(proc: subprocess.CompletedProcess, line: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert proc.stderr == line + "\n", proc.stderr  # one line: no traceback, no "Exception ignored"


@pytest.mark.parametrize("where", ["full", "pipe"])
@pytest.mark.parametrize("args,columns", [(["--version"], "80"), (["--help"], "80"), (["--help"], "40"),
                                          (["-h"], "80"), (["trust", "--help"], "80"),
                                          (["issue-server", "--help"], "80")],
                         ids=["version", "help", "help-narrow", "h", "trust-help", "issue-server-help"])
def test_help_and_version_that_cannot_be_written_are_one_error_line(tmp_path: Path, where: str, args, columns) -> None:
    """`certkit --version > /dev/full` was a 7-line traceback, `certkit --help` one of 42 lines (its
    fast path fell back to click, whose help is printed while parsing, before any handler), and into
    a closed pipe a traceback or nothing at all; a subcommand's help said a bare "Broken pipe."."""
    env = certkit_env(HOME=str(tmp_path), COLUMNS=columns)
    _one_line(_into(where, args, env, tmp_path), FULL if where == "full" else PIPE)


@pytest.mark.parametrize("where", ["full", "pipe"])
def test_a_report_lost_after_the_work_names_standard_output(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                             where: str) -> None:
    """issue-client wrote and recorded its bundle, then its report could not be printed: that was
    "Error: the disk is full." (read as the bundle's write failing) or "Error: Broken pipe.", naming
    nothing. Now it names standard output; the bundle is there and the inventory says valid."""
    _one_line(_into(where, ["issue-client", "erin", "--out", "erin"], ca_env, tmp_path),
              (FULL if where == "full" else PIPE) + DONE)
    assert (tmp_path / "erin" / "cert.pem").is_file()
    listed = subprocess.run([sys.executable, "-m", "certkit", "list", "--status", "valid", "--kind", "client"],
                            cwd=tmp_path, env=ca_env, capture_output=True, text=True, timeout=120)
    assert "CN=erin" in listed.stdout, listed.stdout + listed.stderr


@pytest.mark.parametrize("args", [["list"], ["inspect", "ca.pem"], ["crl", "--out", "x.pem"]])
def test_a_current_folder_that_was_removed_is_named(tmp_path: Path, ca_dir: Path, ca_env: dict, args) -> None:
    """Run from a folder removed meanwhile: "Error: No such file or directory." named no file; the
    missing one is the current folder."""
    args = [str(ca_dir / a) if a == "ca.pem" else a for a in args]
    gone = tmp_path / "gone"
    gone.mkdir()
    env = dict(ca_env, PYTHONPATH=str(REPO))  # no empty entry: Python cannot make "" absolute there
    proc = subprocess.run(["sh", "-c", 'cd "$1" && rmdir "$1" && shift && exec "$@"', "sh", str(gone),
                           sys.executable, "-m", "certkit", *args], env=env, capture_output=True, text=True,
                          timeout=120)
    _one_line(proc, "Error: The current folder no longer exists (it was removed or renamed); change to an "
                    "existing folder and run the command again.")


@pytest.mark.parametrize("args", [["init-ca", "--name", "Dots", "--no-passphrase", "--permit-dns", "X"],
                                  ["acme", "serve", "--port", "0", "--allow-domain", "X"]], ids=["init-ca", "acme"])
@pytest.mark.parametrize("dots", [".", ".."])
def test_a_domain_of_dots_alone_is_not_told_to_give_an_empty_one(tmp_path: Path, args, dots: str) -> None:
    """--permit-dns . said "starts with a dot: ... so give '' without it": a value to give that is none."""
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"))
    proc = _certkit([dots if a == "X" else a for a in args], env, tmp_path, subprocess.PIPE)
    _one_line(proc, f"Error: '{dots}' holds no domain, only dots; give a domain, as in example.com.")
    assert not (tmp_path / "ca").exists()


@pytest.mark.parametrize("holds", ["csr", "key", "crl"])
def test_export_p12_of_a_cert_pem_holding_no_certificate_is_one_error_line(tmp_path: Path, ca_dir: Path,
                                                                           ca_env: dict, holds: str) -> None:
    """export-p12 of a folder whose cert.pem holds a CSR (openssl req -out cert.pem, a slip), a key or a
    CRL was a 35-line IndexError traceback; it is one line naming the file and what it holds."""
    env = dict(ca_env, CERTKIT_P12_PASSWORD="pw123456")
    run_certkit("issue-client", "dana", "--out", tmp_path / "dana", env=env, check=True)
    cert = tmp_path / "dana" / "cert.pem"
    if holds == "crl":
        run_certkit("crl", "--out", tmp_path / "crl.pem", env=env, check=True)
        cert.write_bytes((tmp_path / "crl.pem").read_bytes())
    elif holds == "key":
        cert.write_bytes((tmp_path / "dana" / "privkey.pem").read_bytes())
    else:
        subprocess.run(["openssl", "req", "-new", "-key", str(tmp_path / "dana" / "privkey.pem"), "-subj", "/CN=dana",
                        "-out", str(cert)], check=True, capture_output=True)
    word = {"csr": "a CSR", "key": "a private key", "crl": "a CRL"}[holds]
    proc = _certkit(["export-p12", str(tmp_path / "dana")], env, tmp_path, subprocess.PIPE)
    _one_line(proc, f"Error: {cert} holds {word} but no certificate; it is given as the certificate to pack.")
    assert not (tmp_path / "dana" / "bundle.p12").exists()


@pytest.mark.parametrize("line,said", [
    ('"key_type": false', "key_type is false; it must be a string"),
    ('"key_type": 0', "key_type is 0; it must be a string"),
    ('"key_type": []', "key_type is []; it must be a string"),
    ('"days": true', "days is true; it must be a whole number"),
    ('"days": 1e400', "days is Infinity; it must be a whole number"),
], ids=["key_type-false", "key_type-0", "key_type-list", "days-true", "days-1e400"])
def test_a_json_lines_value_of_the_wrong_type_is_refused_in_json_words(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                                       line: str, said: str) -> None:
    """A JSON-lines manifest's key_type of false, 0 or [] was taken for "the default" and the line issued
    with another key type than written ('out', 'email', 'names' of a wrong type are refused); and values
    were echoed as Python prints them (days is True, kind is None, days is inf), not as the line wrote them."""
    (tmp_path / "m.jsonl").write_text('{"kind": "server", "names": ["w.example"], ' + line + "}\n")
    proc = _certkit(["issue-batch", "m.jsonl", "--out-dir", "out"], ca_env, tmp_path, subprocess.PIPE)
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith(f"Error: m.jsonl line 1: {said}"), proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_manifest_that_fails_to_read_midway_is_named(tmp_path: Path, ca_dir: Path, ca_env: dict, jobs: str) -> None:
    """A manifest whose read fails after it opened (an I/O error: /proc/self/mem gives one at once, as a
    failing disk would) said "Error: Input/output error.", naming no file; opening's errors named it."""
    proc = _certkit(["issue-batch", "/proc/self/mem", "--out-dir", "out", "--jobs", jobs], ca_env, tmp_path,
                    subprocess.PIPE)
    _one_line(proc, "Error: Cannot read the manifest /proc/self/mem: Input/output error.")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text", ['[{"kind": "server", "names": ["a.example"]}]\n',
                                  '[\n{"kind": "server", "names": ["a.example"]}\n]\n'], ids=["one-line", "pretty"])
def test_a_json_array_manifest_is_told_to_be_json_lines(tmp_path: Path, ca_dir: Path, ca_env: dict, text: str) -> None:
    """A manifest written as one JSON array (the form most JSON writers make) was refused only as a CSV
    header that names no columns; the line now says what a JSON manifest is."""
    (tmp_path / "m.json").write_text(text)
    proc = _certkit(["issue-batch", "m.json", "--out-dir", "out"], ca_env, tmp_path, subprocess.PIPE)
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "A JSON manifest is one object per line (JSON lines), not one JSON array." in proc.stderr
    assert not (tmp_path / "out").exists()
