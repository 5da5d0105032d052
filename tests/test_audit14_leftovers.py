"""Audit round fourteen, leftovers14: findings other auditors of the round reported and left unfixed.

1. ``certkit crl --out crl.pem.gz`` (``.zst``, ``.xz``, ``.bz2``, ``.zip``, ``.7z``..., also ``certkit crl >
   crl.der.zst``) wrote a plain CRL under a compressed file's name (``zcat`` and a server that unpacks it by its
   name fail), where jsonl, k8s and tar outputs refuse such names. The same rule now, before a CRL number is taken.
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
