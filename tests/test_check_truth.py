"""``certkit check`` tells the truth: inventory rows against the certificates they hold and the CA
that issued them, each finding about the file it names, and one problem never hides the others."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from cryptography import x509

from certkit.errors import CABroken
from certkit.store import CADirectory
from certkit.vocabulary import serial_hex

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit


def findings(env: dict) -> tuple[int, list[dict]]:
    proc = run_certkit("check", "--json", env=env)
    assert "Traceback" not in proc.stderr
    return proc.returncode, json.loads(proc.stdout)["findings"]


def errors(found: list[dict]) -> list[tuple[str, str]]:
    return [(f["check"], f["message"]) for f in found if f["level"] == "error"]


def serial_of(pem: Path) -> str:
    return serial_hex(x509.load_pem_x509_certificate(pem.read_bytes()).serial_number)


@pytest.fixture
def issued(tmp_path: Path, ca_dir: Path, ca_env: dict) -> dict[str, str]:
    """A server, a client and an intermediate CA issued by the CA in ``ca_dir``: their serials by kind."""
    run_certkit("issue-server", "www.example.com", "10.0.0.1", cwd=tmp_path, env=ca_env, check=True)
    run_certkit("issue-client", "alice", cwd=tmp_path, env=ca_env, check=True)
    run_certkit("init-ca", "--ca-dir", tmp_path / "issuing", "--parent-ca-dir", ca_dir, "--name", "Issuing CA 1",
                env=dict(ca_env, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE), check=True)
    return {"server": serial_of(tmp_path / "www.example.com" / "cert.pem"),
            "client": serial_of(tmp_path / "alice" / "cert.pem"),
            "ca": serial_of(tmp_path / "issuing" / "ca.pem")}


def change(ca_dir: Path, serial: str, **columns: str) -> None:
    with sqlite3.connect(ca_dir / "inventory.sqlite3") as conn:
        for column, value in columns.items():
            conn.execute(f"UPDATE certificates SET {column} = ? WHERE serial = ?", (value, serial))


@pytest.mark.parametrize(("kind", "columns"), [
    ("ca", {"not_after": "2030-01-01T00:00:00Z", "subject": "CN=fake", "kind": "client"}),
    ("server", {"names": '["DNS:evil.example.com"]'}),
    ("server", {"not_after": "2099-01-01T00:00:00Z"}),
    ("client", {"subject": "CN=mallory", "not_before": "2001-01-01T00:00:00Z"}),
    ("client", {"kind": "server"}),
    ("client", {"fingerprint_sha256": "00" * 32}),
])
def test_rows_that_contradict_their_certificates(issued: dict, ca_dir: Path, ca_env: dict, kind: str,
                                                 columns: dict) -> None:
    assert findings(ca_env)[0] == 0
    change(ca_dir, issued[kind], **columns)
    code, found = findings(ca_env)
    assert code == 1
    (message,) = [m for c, m in errors(found) if c == "inventory-row"]
    assert message.startswith(f"serial {issued[kind]}:")
    for column in columns:
        assert column.replace("_sha256", "") in message
    assert not any(f["check"] == "inventory" and f["level"] == "ok" for f in found)


def _replace_ca(ca_dir: Path, other: Path) -> None:
    for name in ("ca.pem", "ca-key.pem"):
        shutil.copy(other / name, ca_dir / name)


@pytest.mark.parametrize("same_name", [False, True])
def test_inventory_of_another_ca(tmp_path: Path, issued: dict, ca_dir: Path, ca_env: dict, same_name: bool) -> None:
    """ca.pem and ca-key.pem of another CA (of another name, or of the same one: then only the
    signatures tell) beside this inventory: check reports every row, and crl signs nothing."""
    name = "certkit test root" if same_name else "Other CA"
    run_certkit("init-ca", "--ca-dir", tmp_path / "other", "--name", name, env=ca_env, check=True)
    run_certkit("revoke", issued["client"], env=ca_env, check=True)
    _replace_ca(ca_dir, tmp_path / "other")
    code, found = findings(ca_env)
    assert code == 1
    issuer_errors = [m for c, m in errors(found) if c == "issuer"]
    assert any(m.startswith("none of the 3 certificates") for m in issuer_errors)
    for serial in issued.values():
        assert any(m.startswith(f"serial {serial}:") for m in issuer_errors), issuer_errors
    assert any(f["check"] == "key" and f["level"] == "ok" for f in found)  # the pair itself fits
    proc = run_certkit("crl", "--out", tmp_path / "crl.pem", env=ca_env)
    assert_clean_error(proc, "did not issue")
    assert "certkit check" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "crl.pem").exists()
    # Nor is a revocation recorded: the other CA's next CRL would list this CA's serial as its own.
    for ref in (issued["server"], tmp_path / "www.example.com"):
        proc = run_certkit("revoke", ref, env=ca_env)
        assert_clean_error(proc, "do not belong together")
    with pytest.raises(CABroken, match="do not belong together"):  # the library's CA.revoke alike
        CADirectory(ca_dir).open().revoke(issued["server"])
    with sqlite3.connect(ca_dir / "inventory.sqlite3") as conn:
        assert conn.execute("SELECT status FROM certificates WHERE serial = ?",
                            (issued["server"],)).fetchone() == ("valid",)


def test_a_certificate_of_another_ca_among_this_cas_rows(tmp_path: Path, issued: dict, ca_dir: Path,
                                                          ca_env: dict) -> None:
    other_env = dict(ca_env, CERTKIT_CA_DIR=str(tmp_path / "other"))
    run_certkit("init-ca", "--name", "Other CA", env=other_env, check=True)
    run_certkit("issue-server", "stray.example.com", cwd=tmp_path, env=other_env, check=True)
    stray = serial_of(tmp_path / "stray.example.com" / "cert.pem")
    with sqlite3.connect(tmp_path / "other" / "inventory.sqlite3") as conn:
        row = conn.execute("SELECT * FROM certificates WHERE serial = ?", (stray,)).fetchone()
    with sqlite3.connect(ca_dir / "inventory.sqlite3") as conn:
        conn.execute(f"INSERT INTO certificates VALUES ({','.join('?' * len(row))})", row)
    code, found = findings(ca_env)
    assert code == 1
    assert errors(found) == [("issuer", f"serial {stray}: its certificate was issued by 'CN=Other CA', not by this "
                                        "CA ('CN=certkit test root'). Restore the inventory from a backup made "
                                        "before the change, then run certkit check again.")]


def _checks(found: list[dict]) -> set[str]:
    return {f["check"] for f in found}


@pytest.mark.parametrize(("name", "check"), [("ca.pem", "certificate"), ("inventory.sqlite3", "inventory")])
def test_a_file_others_can_write_is_named_and_the_rest_still_checked(ca_dir: Path, ca_env: dict, name: str,
                                                                     check: str) -> None:
    os.chmod(ca_dir / name, 0o666)
    code, found = findings(ca_env)
    assert code == 1
    (error,) = errors(found)
    assert error[0] == check and error[1].startswith(f"{ca_dir / name} has mode 0666")
    assert ("peers are told to trust" in error[1]) == (name == "ca.pem")
    assert [f["level"] for f in found if f["check"] == "directory"] == ["ok"]
    assert {"validity", "key-mode", "key", "inventory"} <= _checks(found)


@pytest.fixture
def issuing(tmp_path: Path, ca_dir: Path, ca_env: dict) -> dict:
    """An intermediate CA under ``ca_dir``: its environment."""
    env = dict(ca_env, CERTKIT_CA_DIR=str(tmp_path / "issuing"))
    run_certkit("init-ca", "--parent-ca-dir", ca_dir, "--name", "Issuing CA 1",
                env=dict(env, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE), check=True)
    return env


def test_truncated_parents_pem_is_named(tmp_path: Path, issuing: dict) -> None:
    parents = tmp_path / "issuing" / "parents.pem"
    parents.write_bytes(parents.read_bytes()[:100])
    code, found = findings(issuing)
    assert code == 1
    assert errors(found) == [("parents", f"{parents} is damaged: it is truncated: its BEGIN CERTIFICATE line has no "
                                         "END line. Restore it from a backup.")]
    assert {"validity", "key", "inventory"} <= _checks(found)


def test_missing_parents_pem_is_said_to_be_missing(tmp_path: Path, issuing: dict) -> None:
    (tmp_path / "issuing" / "parents.pem").unlink()
    code, found = findings(issuing)
    assert code == 1
    ((check, message),) = errors(found)
    assert check == "chain" and "parents.pem is missing" in message and "Error" not in message
    assert message.startswith("ca.pem (CN=Issuing CA 1) is issued by CN=certkit test root")


def test_parents_pem_of_another_ca(tmp_path: Path, issuing: dict, ca_env: dict) -> None:
    run_certkit("init-ca", "--ca-dir", tmp_path / "other", "--name", "Other CA", env=ca_env, check=True)
    shutil.copy(tmp_path / "other" / "ca.pem", tmp_path / "issuing" / "parents.pem")
    ((check, message),) = errors(findings(issuing)[1])
    assert check == "chain" and "Error" not in message
    assert message == ("ca.pem (CN=Issuing CA 1) is issued by CN=certkit test root, but the next certificate in "
                       "parents.pem is CN=Other CA: parents.pem does not fit ca.pem. Restore parents.pem from a "
                       "backup.")


@pytest.mark.parametrize("cut", [100, -40])
def test_truncated_key_is_called_damaged_not_a_wrong_passphrase(ca_dir: Path, ca_env: dict, cut: int) -> None:
    key = ca_dir / "ca-key.pem"
    key.write_bytes(key.read_bytes()[:cut])
    code, found = findings(ca_env)
    assert code == 1
    ((check, message),) = errors(found)
    assert check == "key" and message.startswith(f"The CA key {key} is damaged: it is truncated")
    assert "passphrase" not in message
    (mode,) = [f["message"] for f in found if f["check"] == "key-mode"]
    assert "encrypted" not in mode
    assert {"validity", "inventory"} <= _checks(found)


def test_unreadable_ca_pem_does_not_stop_the_key_and_inventory_checks(tmp_path: Path, ca_dir: Path,
                                                                      ca_env: dict) -> None:
    cert = ca_dir / "ca.pem"
    cert.write_bytes(cert.read_bytes()[:-30])
    code, found = findings(ca_env)
    assert code == 1
    assert errors(found) == [("certificate", f"{cert} is damaged: it is truncated: its BEGIN CERTIFICATE line has "
                                             "no END line. Restore it from a backup.")]
    levels = {f["check"]: f["level"] for f in found}
    assert levels["key"] == "ok" and levels["inventory"] == "ok"
    env = certkit_env(CERTKIT_CA_DIR=str(ca_dir), CERTKIT_CA_PASSPHRASE="wrong")
    assert ("key", f"The passphrase does not decrypt the CA key {ca_dir / 'ca-key.pem'} (wrong passphrase, or the "
                   "file is damaged).") in errors(findings(env)[1])


def test_the_summary_counts_each_failed_check_once(issued: dict, ca_dir: Path, ca_env: dict) -> None:
    change(ca_dir, issued["server"], not_after="2099-01-01T00:00:00Z")
    change(ca_dir, issued["client"], subject="CN=mallory")
    proc = run_certkit("check", env=ca_env)
    assert proc.returncode == 1 and proc.stderr == "Error: 2 checks failed: inventory-row (2).\n", proc.stderr
