"""Audit round fourteen, leftovers14: findings other auditors of the round reported and left unfixed.

1. ``certkit crl --out crl.pem.gz`` (``.zst``, ``.xz``, ``.bz2``, ``.zip``, ``.7z``..., also ``certkit crl >
   crl.der.zst``) wrote a plain CRL under a compressed file's name (``zcat`` and a server that unpacks it by its
   name fail), where jsonl, k8s and tar outputs refuse such names. The same rule now, before a CRL number is taken.
2. ``revoke FOLDER`` / ``renew FOLDER`` of a folder whose cert.pem is empty, damaged or gone said only that it holds
   no readable certificate (or no cert.pem), while the inventory records which certificate is there: the error now
   names that serial and how the command takes it (revoke by serial; renew after putting cert.pem back, or by
   serial with --out), and ``revoke SERIAL`` then works.
3. A jsonl, k8s or tar ``--out`` in a folder where no file can be made (``--out /proc/version --force``) was
   refused naming certkit's temporary file (``/proc/.version.NNN.certkit-tmp``), a name nobody gave; the output
   asked for is named now, with its folder, for a single issue and issue-batch alike.
5. An issue-batch line with ``out`` of ``.`` (``./``, ``./.``) wrote its bundle straight into ``--out-dir``, which
   became a bundle folder itself, though ``out`` "must be a folder below the batch's output folder" (``..`` and
   ``a/..`` were refused). Refused now, in CSV and JSON lines, for every format; an empty ``out`` is still the
   default folder (as an empty key_type is the default).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_clean_error, openssl, run_certkit


# --- 1: a CRL named as a compressed file ------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "der"), [("crl.pem.gz", False), ("crl.der.ZST", True), ("crl.xz", False),
                                           ("crl.bz2", False), ("crl.zip", True), ("crl.7z", False)])
def test_a_crl_named_as_compressed_is_refused_before_signing(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                              name: str, der: bool):
    extra = ["--der"] if der else []
    proc = run_certkit("crl", "--out", name, *extra, env=ca_env, cwd=tmp_path)
    assert_clean_error(proc, f"{name} is named as a compressed file")
    assert not (tmp_path / name).exists()
    with open(tmp_path / name, "w") as stdout:  # > FILE: the name the kernel knows
        ran = subprocess.run([sys.executable, "-m", "certkit", "crl"], cwd=tmp_path, env=ca_env, stdout=stdout,
                             stderr=subprocess.PIPE, text=True, timeout=60)
    assert ran.returncode == 1 and "is named as a compressed file" in ran.stderr, ran.stderr
    assert (tmp_path / name).stat().st_size == 0
    written = json.loads(run_certkit("crl", "--out", "crl.pem", "--json", env=ca_env, cwd=tmp_path,
                                     check=True).stdout)
    assert written["crl_number"] == 1  # no number was taken by the refused runs
    assert "X509 CRL" in (tmp_path / "crl.pem").read_text()
    assert openssl("crl", "-in", str(tmp_path / "crl.pem"), "-noout").returncode == 0


# --- 2: revoke/renew FOLDER of a folder whose cert.pem cannot be read ----------------------------------------------
@pytest.mark.parametrize("damage", ["empty", "garbage", "a key", "gone"])
def test_a_folder_without_a_readable_cert_names_the_recorded_serial(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                                     damage: str):
    run_certkit("issue-server", "srv.example", "--out", "srv", env=ca_env, cwd=tmp_path, check=True)
    serial = json.loads(run_certkit("list", "--json", env=ca_env, check=True).stdout)["certificates"][0]["serial"]
    cert = tmp_path / "srv" / "cert.pem"
    if damage == "gone":
        cert.unlink()
    else:
        cert.write_bytes({"empty": b"", "garbage": b"garbage\n",
                          "a key": (tmp_path / "srv" / "privkey.pem").read_bytes()}[damage])
    revoking = run_certkit("revoke", "srv", env=ca_env, cwd=tmp_path)
    assert_clean_error(revoking, f"The inventory records certificate {serial} (CN=srv.example) in srv: give that "
                                 "serial instead of the folder")
    renewing = run_certkit("renew", "srv", env=ca_env, cwd=tmp_path)
    assert_clean_error(renewing, f"The inventory records certificate {serial} (CN=srv.example) in srv: put it back "
                                 "into cert.pem")
    assert "--out FOLDER" in renewing.stderr
    run_certkit("renew", serial, "--out", "new", env=ca_env, cwd=tmp_path, check=True)  # as the hint says
    assert openssl("x509", "-in", str(tmp_path / "new" / "cert.pem"), "-noout").returncode == 0
    run_certkit("revoke", serial, env=ca_env, cwd=tmp_path, check=True)
    rows = {row["serial"]: row["status"]
            for row in json.loads(run_certkit("list", "--json", env=ca_env, check=True).stdout)["certificates"]}
    assert rows[serial] == "revoked"


def test_a_folder_nothing_is_recorded_in_gets_no_hint(tmp_path: Path, ca_dir: Path, ca_env: dict):
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "cert.pem").write_bytes(b"")
    revoking = run_certkit("revoke", "srv", env=ca_env, cwd=tmp_path)
    assert_clean_error(revoking, "does not hold a readable certificate: it is empty.")  # round 31: says what it holds
    assert "inventory records" not in revoking.stderr


# --- 3: an output no file can be made beside is named, not certkit's temporary file -------------------------------
@pytest.mark.parametrize("fmt", ["jsonl", "k8s", "tar"])
def test_an_output_that_cannot_be_made_is_named_not_its_temporary_file(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                                        fmt: str):
    single = run_certkit("issue-server", "a.example", "--format", fmt, "--out", "/proc/version", "--force",
                         env=ca_env, cwd=tmp_path)
    (tmp_path / "m.csv").write_text("kind,names\nserver,x.example\nserver,y.example\n")
    batch = run_certkit("issue-batch", "m.csv", "--format", fmt, "--out", "/proc/version", "--force",
                        env=ca_env, cwd=tmp_path)
    for proc in (single, batch):
        # (refused before signing since round fifteen: no file can be made in /proc, tried first)
        assert_clean_error(proc, "Cannot write the output file /proc/version: no file can be made in /proc (")
        assert "certkit-tmp" not in proc.stderr
    listed = json.loads(run_certkit("list", "--json", env=ca_env, check=True).stdout)["certificates"]
    assert all(row["status"] != "valid" for row in listed), listed


# --- 5: a manifest line's out of '.' is the output folder itself --------------------------------------------------
@pytest.mark.parametrize(("manifest", "text"), [
    ("m.jsonl", '{"kind": "server", "names": ["b.example"], "out": "."}\n'),
    ("m.jsonl", '{"kind": "server", "names": ["b.example"], "out": "./"}\n'),
    ("m.csv", "kind,names,out\nserver,b.example,./.\n")])
@pytest.mark.parametrize("fmt", ["folder", "tar"])
def test_a_manifest_out_of_dot_is_refused(tmp_path: Path, ca_dir: Path, ca_env: dict, manifest: str, text: str,
                                          fmt: str):
    (tmp_path / manifest).write_text(text)
    (tmp_path / "out").mkdir()
    where = ["--out-dir", "out"] if fmt == "folder" else ["--format", "tar", "--out", "x.tar"]
    proc = run_certkit("issue-batch", manifest, *where, env=ca_env, cwd=tmp_path)
    assert_clean_error(proc, "the batch's output folder itself; it must be a folder below it")
    assert list((tmp_path / "out").iterdir()) == [] and not (tmp_path / "x.tar").exists()
    assert run_certkit("list", env=ca_env).stdout.startswith("No certificates issued yet")


def test_a_manifest_out_empty_or_below_is_still_written(tmp_path: Path, ca_dir: Path, ca_env: dict):
    (tmp_path / "m.jsonl").write_text('{"kind": "server", "names": ["b.example"], "out": ""}\n'
                                      '{"kind": "server", "names": ["c.example"], "out": "x/./y"}\n')
    run_certkit("issue-batch", "m.jsonl", "--out-dir", "out", env=ca_env, cwd=tmp_path, check=True)
    assert (tmp_path / "out" / "b.example" / "cert.pem").is_file()
    assert (tmp_path / "out" / "x" / "y" / "cert.pem").is_file()
