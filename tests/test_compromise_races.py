"""A key revoked for keyCompromise is never left valid in a certificate issued meanwhile: a CSR
signed again while the revocation lands, a renewal keeping its key that is marked while the
revocation's transaction is still open (PostgreSQL's READ COMMITTED does not serialise them as
SQLite's single writer does: certkit.inventory.compromise). Each run on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from conftest import openssl, run_certkit
from integrity_helpers import start_paused

pytestmark = pytest.mark.both_inventories


def serial_of(folder: Path) -> str:
    return openssl("x509", "-in", folder / "cert.pem", "-noout", "-serial").stdout.decode().strip().split("=")[1]


def statuses(env: dict, name: str) -> dict[str, tuple[str, str | None]]:
    proc = run_certkit("list", "--name", name, "--json", env=env, check=True)
    return {c["serial"]: (c["status"], c["revocation_reason"]) for c in json.loads(proc.stdout)["certificates"]}


def release(proc, marker: Path) -> tuple[int, str, str]:
    marker.unlink()
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def assert_refused_with_the_crl(tmp_path: Path, env: dict, ca_dir: Path, folder: Path) -> None:
    run_certkit("crl", "--out", tmp_path / "now.crl", env=env, check=True)
    proc = openssl("verify", "-x509_strict", "-crl_check", "-CRLfile", tmp_path / "now.crl", "-CAfile",
                   ca_dir / "ca.pem", "-purpose", "sslserver", folder / "cert.pem")
    assert proc.returncode != 0 and b"certificate revoked" in proc.stdout + proc.stderr


def test_a_csr_signed_while_its_key_is_revoked_is_revoked(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    key, csr = tmp_path / "kc.key", tmp_path / "kc.csr"
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
            "-subj", "/CN=kc.example.test", "-out", csr)
    run_certkit("sign-csr", csr, "--server", "--out", tmp_path / "kc1", env=ca_env, check=True)
    first = serial_of(tmp_path / "kc1")
    # Checked and signed, not yet recorded: the revocation lands now.
    proc = start_paused(["sign-csr", csr, "--server", "--out", tmp_path / "kc2"], ca_env, tmp_path, "signed",
                        tmp_path / "paused")
    run_certkit("revoke", first, "--reason", "keyCompromise", env=ca_env, check=True)
    code, out, err = release(proc, tmp_path / "paused")
    assert code == 0, err
    second = serial_of(tmp_path / "kc2")
    assert "revoked too" in out + err and second in out + err
    assert statuses(ca_env, "kc.example.test") == {first: ("revoked", "keyCompromise"),
                                                   second: ("revoked", "keyCompromise")}
    assert_refused_with_the_crl(tmp_path, ca_env, ca_dir, tmp_path / "kc2")


def _stretch_revocation(inventory_url: str | None, serial: str, seconds: float) -> threading.Thread | None:
    """Hold a row lock on ``serial`` (another certificate with the key) for ``seconds``: the
    revocation's transaction then stays open that long, as it does over a large inventory. SQLite
    needs none: its writers take turns."""
    if not inventory_url:
        return None
    import psycopg

    ready = threading.Event()

    def hold() -> None:
        with psycopg.connect(inventory_url) as conn, conn.transaction():
            conn.execute("SELECT serial FROM certificates WHERE serial = %s FOR UPDATE", (serial,))
            ready.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold)
    thread.start()
    assert ready.wait(30)
    return thread


def test_a_renewal_marked_while_its_key_is_revoked_is_revoked(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                              inventory_url: str | None) -> None:
    import subprocess
    import sys

    folder = tmp_path / "race"
    run_certkit("issue-server", "race.example.test", "--out", folder, env=ca_env, check=True)
    first = serial_of(folder)
    run_certkit("renew", folder, env=ca_env, check=True)  # the same key, in a second certificate
    second = serial_of(folder)
    renewing = start_paused(["renew", folder], ca_env, tmp_path, "staged", tmp_path / "paused")  # recorded pending
    holder = _stretch_revocation(inventory_url, second, 3)
    revoking = subprocess.Popen([sys.executable, "-m", "certkit", "revoke", first, "--reason", "keyCompromise"],
                                env=ca_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.2)  # the revocation's transaction is open (PostgreSQL); the renewal is marked now
    code, out, err = release(renewing, tmp_path / "paused")
    assert code == 0, err
    revoked_out, revoked_err = revoking.communicate(timeout=60)
    assert revoking.returncode == 0, revoked_err
    if holder is not None:
        holder.join()
    third = serial_of(folder)
    assert third not in (first, second)
    assert statuses(ca_env, "race.example.test") == {s: ("revoked", "keyCompromise") for s in (first, second, third)}
    assert_refused_with_the_crl(tmp_path, ca_env, ca_dir, folder)
