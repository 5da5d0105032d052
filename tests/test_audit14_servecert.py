"""Audit fourteen, servecert: ``certkit serve`` issues its own server certificate, whose key lives in its memory
alone. It was left ``valid`` in the inventory when serve stopped (Ctrl-C, SIGTERM) or was killed: a valid
certificate whose key existed nowhere. serve now revokes it (cessationOfOperation) when it stops, and the next
server to start on the host (serve or acme serve) revokes the one a killed serve left, as acme serve does for its
own; a certificate given with --cert/--key is never revoked. Real serve processes on free loopback ports."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from conftest import PASSPHRASE, certkit_env, free_port, openssl, run_certkit
from serve_process import ServeProcess


def _lab(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "home").mkdir()
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path / "home"),
                      CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Servecert CA", env=env, check=True)
    return env


def _rows(env: dict[str, str]) -> dict[str, dict]:
    listed = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)
    return {row["serial"]: row for row in listed["certificates"]}


def _crl_text(tmp_path: Path, env: dict[str, str]) -> str:
    out = tmp_path / "crl.pem"
    run_certkit("crl", "--out", str(out), env=env, cwd=tmp_path, check=True)
    return openssl("crl", "-in", str(out), "-text", "-noout").stdout.decode().replace(":", "").upper()


def _serve(tmp_path: Path, env: dict[str, str], *args: str) -> ServeProcess:
    return ServeProcess("--host", "127.0.0.1", "--port", str(free_port()), *args, env=env, cwd=tmp_path)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_serve_revokes_its_own_certificate(tmp_path: Path, sig: int) -> None:
    env = _lab(tmp_path)
    srv = _serve(tmp_path, env)
    serial = srv.info["server_certificate"]["serial"]
    assert _rows(env)[serial]["status"] == "valid"
    assert srv.stop(sig) == 128 + sig, srv.stderr
    row = _rows(env)[serial]
    assert (row["status"], row["revocation_reason"]) == ("revoked", "cessationOfOperation"), (row, srv.stderr)
    assert f"revoked this server's certificate (serial {serial}" in srv.stderr
    assert "Traceback" not in srv.stderr
    crl = _crl_text(tmp_path, env)
    assert serial.upper() in crl and "CESSATION OF OPERATION" in crl, crl


def test_the_next_serve_revokes_the_certificate_of_a_killed_one(tmp_path: Path) -> None:
    env = _lab(tmp_path)
    killed = _serve(tmp_path, env)
    orphan = killed.info["server_certificate"]["serial"]
    killed.stop(signal.SIGKILL)
    assert _rows(env)[orphan]["status"] == "valid"  # nothing could revoke it yet: its process is gone
    with _serve(tmp_path, env) as second:
        second.wait_for_log(f"revoked the certificate of a server killed earlier here (serial {orphan})")
        mine = second.info["server_certificate"]["serial"]
        rows = _rows(env)
        assert (rows[orphan]["status"], rows[orphan]["revocation_reason"]) == ("revoked", "cessationOfOperation")
        assert rows[mine]["status"] == "valid"  # the running server's own is left alone
    assert _rows(env)[mine]["status"] == "revoked"
    crl = _crl_text(tmp_path, env)
    assert orphan.upper() in crl and mine.upper() in crl, crl


def test_a_given_certificate_is_never_revoked(tmp_path: Path) -> None:
    env = _lab(tmp_path)
    run_certkit("issue-server", "localhost", "127.0.0.1", env=env, cwd=tmp_path, check=True)
    (given,) = _rows(env)
    srv = _serve(tmp_path, env, "--cert", "localhost/fullchain.pem", "--key", "localhost/privkey.pem")
    assert srv.stop(signal.SIGTERM) == 143, srv.stderr
    assert "revoked" not in srv.stderr
    assert _rows(env)[given]["status"] == "valid"


def test_a_running_serve_is_not_taken_for_a_killed_one(tmp_path: Path) -> None:
    env = _lab(tmp_path)
    first = _serve(tmp_path, env)
    try:
        with _serve(tmp_path, env) as second:
            assert "killed earlier" not in second.stderr
            rows = _rows(env)
            assert {rows[s.info["server_certificate"]["serial"]]["status"] for s in (first, second)} == {"valid"}
    finally:
        assert first.stop(signal.SIGTERM) == 143, first.stderr
    assert {row["status"] for row in _rows(env).values()} == {"revoked"}


def test_acme_serve_revokes_the_certificate_of_a_killed_serve(tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import wait_or_kill

    env = _lab(tmp_path)
    killed = _serve(tmp_path, env, "--optional")
    orphan = killed.info["server_certificate"]["serial"]
    killed.stop(signal.SIGKILL)
    acme = subprocess.Popen([sys.executable, "-m", "certkit", "acme", "serve", "--host", "127.0.0.1", "--port",
                             str(free_port())], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in acme.stderr:
            if "listening on" in line:
                break
    finally:
        acme.send_signal(signal.SIGTERM)
        wait_or_kill(acme)
    row = _rows(env)[orphan]
    assert (row["status"], row["revocation_reason"]) == ("revoked", "cessationOfOperation"), row
