"""Round eighteen, perf: what the bulk path (``issue-batch --format jsonl|tar``) now does its own way to
be cheaper, held to what it did before, through real certkit processes and real readers.

- a certificate's PEM is written from the DER its inventory row holds (``certkit.issued.pem_of_der``),
  not serialized again by cryptography: every line of a batch, whatever the DER's length (so every
  length of the last base64 line), must be byte for byte what openssl and cryptography write;
- a JSON line's fullchain and CA texts are joined from texts escaped once per batch;
- marking a file's certificates valid reads each row once and runs each check only on the rows it
  concerns: a row abandoned meanwhile must still become valid, a row revoked meanwhile must still stay
  revoked (its writer released), and every other row must be valid, after the file is in place.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from conftest import certkit_env, openssl, run_certkit
from fleet_helpers import jsonl_records
from integrity_helpers import start_paused


def _manifest(path: Path, count: int) -> Path:
    """``count`` server lines whose names grow by one character a line (the DER by two bytes or more), so
    that the PEMs' last base64 lines take every length from 4 to 64 characters."""
    path.write_text("kind,names\n" + "".join(f"server,{'h' * (1 + i)}.example.net\n" for i in range(count)))
    return path


def _as_openssl_writes(pem: str) -> str:
    return openssl("x509", "-outform", "PEM", input=pem.encode()).stdout.decode()


def _check_record(record: dict, chain: str, ca: str) -> None:
    cert = x509.load_pem_x509_certificate(record["cert"].encode())
    assert record["cert"] == cert.public_bytes(Encoding.PEM).decode()
    assert record["cert"] == _as_openssl_writes(record["cert"])
    assert record["fullchain"] == record["cert"] + chain
    assert record["chain"] == chain and record["ca"] == ca


def test_batch_pems_are_what_openssl_and_cryptography_write(tmp_path: Path) -> None:
    """Under an intermediate (a chain to join into fullchain), 60 lines: every certificate's PEM in the
    JSON lines, in the tar archive and in a folder is cryptography's and openssl's, byte for byte."""
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "issuing"), HOME=str(tmp_path))
    run_certkit("init-ca", "--ca-dir", tmp_path / "root", "--no-passphrase", "--name", "perf root", env=env,
                cwd=tmp_path, check=True)
    run_certkit("init-ca", "--parent-ca-dir", tmp_path / "root", "--no-passphrase", "--name", "perf issuing",
                env=env, cwd=tmp_path, check=True)
    chain = (tmp_path / "issuing" / "ca.pem").read_text()
    ca = (tmp_path / "root" / "ca.pem").read_text()
    manifest = _manifest(tmp_path / "fleet.csv", 60)
    run_certkit("issue-batch", manifest, "--format", "jsonl", "--out", tmp_path / "fleet.jsonl", "--jobs", "2",
                env=env, cwd=tmp_path, check=True, subprocess=True)
    records = jsonl_records(tmp_path / "fleet.jsonl")
    assert len(records) == 60
    for record in records:
        _check_record(record, chain, ca)
    # the last base64 line holds 4 * ceil(len(DER) / 3) mod 64 characters: each of its 16 lengths was written
    last_lines = {-(-len(x509.load_pem_x509_certificate(r["cert"].encode()).public_bytes(Encoding.DER)) // 3) % 16
                  for r in records}
    assert len(last_lines) == 16, sorted(last_lines)
    # the same certificates' PEMs from a tar archive and from folders
    run_certkit("issue-batch", _manifest(tmp_path / "few.csv", 3), "--format", "tar", "--out",
                tmp_path / "fleet.tar", env=env, cwd=tmp_path, check=True, subprocess=True)
    (tmp_path / "untar").mkdir()
    subprocess.run(["tar", "-xf", str(tmp_path / "fleet.tar"), "-C", str(tmp_path / "untar")], check=True,
                   capture_output=True, timeout=60)
    run_certkit("issue-batch", tmp_path / "few.csv", "--out-dir", tmp_path / "folders", env=env, cwd=tmp_path,
                check=True, subprocess=True)
    for root in (tmp_path / "untar", tmp_path / "folders"):
        folders = sorted(p for p in root.iterdir() if p.is_dir())
        assert len(folders) == 3, folders
        for folder in folders:
            pem = (folder / "cert.pem").read_text()
            _check_record({"cert": pem, "fullchain": (folder / "fullchain.pem").read_text(),
                           "chain": (folder / "chain.pem").read_text(), "ca": (folder / "ca.pem").read_text()},
                          chain, ca)


def _rows(ca_dir: Path) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(ca_dir / "inventory.sqlite3") as db:
        found = {serial: (status, writer) for serial, status, writer in db.execute(
            "SELECT serial, status, writer FROM certificates WHERE kind <> 'ca'")}
    db.close()
    return found


def test_a_file_batch_marks_rows_changed_meanwhile_as_before(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    """A jsonl batch paused with its file in place and its rows pending: one row is settled abandoned by a
    command that misjudged the writer, one is revoked (``certkit revoke SERIAL``). Let go, the batch
    marks the abandoned one valid again, leaves the revoked one revoked with its writer released,
    and marks the rest valid; nothing stays pending."""
    from certkit.store import CADirectory

    manifest = _manifest(tmp_path / "fleet.csv", 5)
    out = tmp_path / "fleet.jsonl"
    marker = tmp_path / "paused"
    writer = start_paused(["issue-batch", manifest, "--format", "jsonl", "--out", out], ca_env, tmp_path,
                          "placed", marker)
    try:
        pending = _rows(ca_dir)
        assert out.is_file() and {status for status, _w in pending.values()} == {"pending"}, pending
        assert sorted(r["serial"] for r in jsonl_records(out)) == sorted(pending)
        abandoned, revoked, *rest = sorted(pending)
        CADirectory(ca_dir).inventory.mark_abandoned([abandoned])  # as a command that misjudged the writer
        run_certkit("revoke", revoked, env=ca_env, check=True, subprocess=True)
        assert _rows(ca_dir)[abandoned][0] == "abandoned" and _rows(ca_dir)[revoked][0] == "revoked"
    finally:
        marker.unlink(missing_ok=True)
    out_text, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, out_text + err
    after = _rows(ca_dir)
    assert after[abandoned][0] == "valid"
    assert after[revoked] == ("revoked", None)
    assert all(after[serial][0] == "valid" for serial in rest), after
    assert _integrity(ca_dir) == ["ok"]
    listed = json.loads(run_certkit("list", "--json", "--status", "pending", env=ca_env, check=True).stdout)
    assert listed["certificates"] == []


def test_a_file_batch_stopped_as_its_file_is_placed_marks_every_row(tmp_path: Path, ca_dir: Path,
                                                                    ca_env: dict) -> None:
    """SIGTERM while the file is complete and about to be put in place: the stop is held until the file is
    in place and every row is marked valid (a file in place holds keys: its certificates are never left
    pending or abandoned), then the batch says it was interrupted, with no traceback."""
    manifest = _manifest(tmp_path / "fleet.csv", 5)
    out = tmp_path / "fleet.jsonl"
    marker = tmp_path / "paused"
    writer = start_paused(["issue-batch", manifest, "--format", "jsonl", "--out", out], ca_env, tmp_path,
                          "staged", marker)
    try:
        assert {status for status, _w in _rows(ca_dir).values()} == {"pending"} and not out.exists()
        writer.send_signal(signal.SIGTERM)
    finally:
        marker.unlink(missing_ok=True)
    out_text, err = writer.communicate(timeout=120)
    assert writer.returncode != 0 and "Traceback" not in err and "interrupted once it was complete" in err, err
    rows = _rows(ca_dir)
    assert {status for status, _w in rows.values()} == {"valid"}, rows
    assert sorted(r["serial"] for r in jsonl_records(out)) == sorted(rows)


def _integrity(ca_dir: Path) -> list[str]:
    with sqlite3.connect(ca_dir / "inventory.sqlite3") as db:
        found = [row[0] for row in db.execute("PRAGMA integrity_check")]
    db.close()
    return found


def test_a_command_run_while_a_file_batch_is_placed_leaves_the_inventory_whole(tmp_path: Path, ca_dir: Path,
                                                                              ca_env: dict) -> None:
    """perf18 #1 (data loss): a jsonl batch syncs the inventory before it puts its file in place; it did so
    by opening and closing the database file itself, which dropped the SQLite locks of its own
    connections. ``certkit list`` run meanwhile then took itself for the last connection, checkpointed
    and reset the write-ahead log under the batch, and the batch's marks left the indexes out of step
    with the rows: ``PRAGMA integrity_check`` said "row 1 missing from index certificates_pending",
    ``list --status valid`` showed nothing. Now the batch's rows are valid and the file is whole."""
    manifest = _manifest(tmp_path / "fleet.csv", 3)
    out = tmp_path / "fleet.jsonl"
    marker = tmp_path / "paused"
    writer = start_paused(["issue-batch", manifest, "--format", "jsonl", "--out", out], ca_env, tmp_path,
                          "placed", marker)
    try:
        run_certkit("list", env=ca_env, check=True, subprocess=True)  # another command, another process
    finally:
        marker.unlink(missing_ok=True)
    out_text, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, out_text + err
    assert _integrity(ca_dir) == ["ok"]
    listed = json.loads(run_certkit("list", "--json", "--status", "valid", env=ca_env, check=True).stdout)
    assert sorted(c["serial"] for c in listed["certificates"]) == sorted(r["serial"] for r in jsonl_records(out))
    assert len(listed["certificates"]) == 3
