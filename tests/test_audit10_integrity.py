"""Audit round ten, integrity (report integrity10), each as a class:

1. a certificate delivered into a jsonl, k8s or tar file with its key, renewed elsewhere with the key kept
   (``renew SERIAL --out DIR``), gets its key in the new bundle, read from the file: before, none was
   written ("the key stays with whoever holds the old one"), and a later ``--force`` over the file destroyed
   the only copy of a valid certificate's key without a word;
2. bulk renewal says a bundle's cert.pem the file system cannot read (an I/O error) as a failure, with the
   error, and exits 1: it was "deleted by hand", or "damaged", and exit 0.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import run_certkit


@pytest.mark.parametrize("fmt", ["jsonl", "k8s", "tar"])
def test_a_renewal_out_of_a_file_takes_its_key_from_the_file(ca_dir, ca_env, tmp_path, fmt):
    out = tmp_path / f"f.{fmt}"
    first = json.loads(run_certkit("issue-server", "j.test", "--format", fmt, "--out", out, "--json", env=ca_env,
                                   check=True).stdout)
    serial = first["serial"] if "serial" in first else first["certificates"][0]["serial"]
    renewed = run_certkit("renew", serial, "--out", tmp_path / "nf", env=ca_env, check=True)
    assert "the key is taken from" in renewed.stdout, renewed.stdout
    key_pub = subprocess.run(["openssl", "pkey", "-in", tmp_path / "nf" / "privkey.pem", "-pubout"],
                             capture_output=True, check=True).stdout
    cert_pub = subprocess.run(["openssl", "x509", "-in", tmp_path / "nf" / "cert.pem", "-noout", "-pubkey"],
                              capture_output=True, check=True).stdout
    assert key_pub == cert_pub
    assert (tmp_path / "nf" / "privkey.pem").stat().st_mode & 0o777 == 0o600
    # the file replaced: the renewal's key is still in its own bundle, and the bundle serves
    run_certkit("issue-server", "other.test", "--format", fmt, "--out", out, "--force", env=ca_env, check=True)
    check = subprocess.run(["openssl", "x509", "-in", tmp_path / "nf" / "cert.pem", "-noout", "-checkend", "0"],
                           capture_output=True)
    assert check.returncode == 0 and (tmp_path / "nf" / "privkey.pem").is_file()


def test_bulk_renewal_says_a_disk_error_as_a_failure(ca_dir, ca_env, tmp_path):
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    for name in ("w", "v"):
        run_certkit("issue-server", f"{name}.test", "--out", tmp_path / name, env=ca_env, check=True)
    broken = tmp_path / "w" / "cert.pem"
    proc = subprocess.run([strace, "-f", "-qq", "-o", "/dev/null", "-P", str(broken), "-e", "trace=read",
                           "-e", "inject=read:error=EIO", sys.executable, "-m", "certkit", "renew", "--all", "--json"],
                          env=ca_env, capture_output=True, text=True, timeout=120)
    if "ptrace" in proc.stderr and "Operation not permitted" in proc.stderr:
        pytest.skip("ptrace is not allowed here")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, (proc.returncode, proc.stderr)
    data = json.loads(proc.stdout)
    failed = [o for o in data["certificates"] if o["outcome"] == "failed"]
    assert len(failed) == 1 and "Input/output error" in failed[0]["error"], data
    assert "by hand" not in failed[0]["error"]
    assert [o["outcome"] for o in data["certificates"] if o["outcome"] != "failed"] == ["renewed"]
