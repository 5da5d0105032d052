"""issue-batch: the same certificates, files and inventory rows as the single commands, and bad
manifests refused as documented (line numbers, exit status, nothing written)."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
from cryptography import x509

from certkit import batch
from certkit.store import CADirectory
from certkit.vocabulary import serial_hex

from conftest import PASSPHRASE, REPO, assert_clean_error, openssl, pkilint_errors, run_certkit
from docs_runner import run_page
from x509_asserts import assert_is_leaf

BUNDLE = {"cert.pem", "privkey.pem", "fullchain.pem", "ca.pem"}
pytestmark = pytest.mark.both_inventories  # every test with a ca_dir runs on PostgreSQL too (team_fixtures)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def inventory(ca_dir: Path) -> dict[str, str]:
    return {r["serial"]: r["kind"] for r in CADirectory(ca_dir).inventory.rows()}  # SQLite or PostgreSQL


def load(folder: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes())


def extension_shape(cert: x509.Certificate) -> list[tuple[str, bool]]:
    """Which extensions, with which criticality: what must match single issuance."""
    return sorted((e.oid.dotted_string, e.critical) for e in cert.extensions)


def check_bundle(folder: Path, ca_cert: x509.Certificate, purpose: str) -> x509.Certificate:
    assert {p.name for p in folder.iterdir()} == BUNDLE
    assert mode(folder / "privkey.pem") == 0o600
    assert all(mode(folder / n) == 0o644 for n in BUNDLE - {"privkey.pem"})
    cert = load(folder)
    assert_is_leaf(cert, ca_cert, purpose)
    assert (folder / "fullchain.pem").read_bytes() == (folder / "cert.pem").read_bytes()  # under a root
    assert x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes()) == ca_cert
    good, bad = ("sslserver", "sslclient") if purpose == "server" else ("sslclient", "sslserver")
    ok = openssl("verify", "-x509_strict", "-purpose", good, "-CAfile", folder / "ca.pem", folder / "cert.pem")
    assert ok.returncode == 0, ok.stderr
    wrong = openssl("verify", "-x509_strict", "-purpose", bad, "-CAfile", folder / "ca.pem", folder / "cert.pem")
    assert wrong.returncode != 0
    # The key in the folder is the certificate's.
    assert openssl("x509", "-in", folder / "cert.pem", "-noout", "-pubkey").stdout == \
        openssl("pkey", "-in", folder / "privkey.pem", "-pubout").stdout
    return cert


FLEET = """\
# a comment, then the header
kind,names,out,days,key_type,email,uri,dns
server,web1.example.com 10.0.0.1 ::1,,,,,,
server,*.dev.example.com dev.example.com,dev,90,,,,
server,bücher.example,,,ed25519,,,
client,Alice Smith,alice,,,alice@example.com,,
client,sensor-17,devices/sensor-17,730,ecdsa-p384,,spiffe://example.com/sensor/17,sensor-17.iot.example.com
client,bob@example.com,,,,,,
"""


def test_batch_matches_single_issuance(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    (tmp_path / "fleet.csv").write_text(FLEET, encoding="utf-8")
    proc = run_certkit("issue-batch", "fleet.csv", "--out-dir", "out", "--json", cwd=tmp_path, env=ca_env,
                       check=True)
    data = json.loads(proc.stdout)
    assert (data["issued"], data["server"], data["client"]) == (6, 3, 3)
    assert proc.stderr == ""  # no progress bar when stderr is not a terminal
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    out = tmp_path / "out"
    web = check_bundle(out / "web1.example.com", ca_cert, "server")
    wild = check_bundle(out / "dev", ca_cert, "server")
    idn = check_bundle(out / "xn--bcher-kva.example", ca_cert, "server")
    alice = check_bundle(out / "alice", ca_cert, "client")
    sensor = check_bundle(out / "devices" / "sensor-17", ca_cert, "client")
    bob = check_bundle(out / "bob@example.com", ca_cert, "client")
    san = web.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["web1.example.com"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.1", "::1"]
    assert (wild.not_valid_after_utc - wild.not_valid_before_utc).days == 89  # 90 days, inclusive
    assert (sensor.not_valid_after_utc - sensor.not_valid_before_utc).days == 729
    assert sensor.public_key().curve.name == "secp384r1"
    assert type(idn.public_key()).__name__.startswith("Ed25519")
    sensor_san = sensor.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sensor_san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://example.com/sensor/17"]
    assert sensor_san.get_values_for_type(x509.DNSName) == ["sensor-17.iot.example.com"]
    assert alice.subject.rfc4514_string() == "CN=Alice Smith"
    assert bob.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.RFC822Name) == ["bob@example.com"]

    # Same extensions and criticality as the single commands give.
    run_certkit("issue-server", "single.example.com", "--out", "single-server", cwd=tmp_path, env=ca_env,
                check=True)
    run_certkit("issue-client", "Carol", "--email", "carol@example.com", "--out", "single-client", cwd=tmp_path,
                env=ca_env, check=True)
    assert extension_shape(web) == extension_shape(load(tmp_path / "single-server"))
    assert extension_shape(alice) == extension_shape(load(tmp_path / "single-client"))

    # Unique serials, every one in the inventory with its kind.
    issued = [web, wild, idn, alice, sensor, bob]
    serials = {serial_hex(c.serial_number): k for c, k in zip(issued, ["server"] * 3 + ["client"] * 3,
                                                                 strict=True)}
    assert len(serials) == 6
    recorded = inventory(ca_dir)
    assert len(recorded) == 6 + 2  # the batch and the two single ones (a root is not in its own inventory)
    assert all(recorded[s] == k for s, k in serials.items())
    assert pkilint_errors(out / "web1.example.com" / "cert.pem") == ""
    assert pkilint_errors(out / "alice" / "cert.pem") == ""


def test_json_lines_and_jobs(tmp_path: Path, ca_dir: Path) -> None:
    """JSON lines with lists; several worker processes over many small chunks."""
    manifest = tmp_path / "devices.jsonl"
    lines = [{"kind": "client", "names": f"device-{i:03}", "uri": [f"spiffe://example.com/d/{i}"]}
             for i in range(25)]
    lines += [{"kind": "server", "names": [f"h{i}.example.com", f"10.1.0.{i}"]} for i in range(25)]
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    ca = CADirectory(ca_dir).load(PASSPHRASE.encode())
    seen = []
    result = batch.issue_batch(ca, manifest, out_dir=tmp_path / "out", jobs=2, chunk_size=4,
                               progress=seen.append)
    assert (result.issued, result.server, result.client) == (50, 25, 25)
    assert sum(seen) == 50 and max(seen) <= 4
    folders = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(folders) == 50 and not any(name.endswith(".certkit-tmp") for name in folders)
    certs = [load(tmp_path / "out" / name) for name in folders]
    assert len({c.serial_number for c in certs}) == 50
    recorded = inventory(ca_dir)
    assert all(serial_hex(c.serial_number) in recorded for c in certs)
    assert len(recorded) == 50
    check_bundle(tmp_path / "out" / "device-007", ca.cert, "client")
    check_bundle(tmp_path / "out" / "h7.example.com", ca.cert, "server")


def test_serial_collision_is_resigned(tmp_path: Path, ca_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A serial already in the inventory is never recorded twice: that certificate is re-signed."""
    import certkit.ca

    ca = CADirectory(ca_dir).load(PASSPHRASE.encode())
    taken = ca.issue_server(["first.example.com"]).cert.serial_number  # recorded in the inventory
    fresh = iter([taken, 5 << 100, 7 << 100])  # a, b, then a again
    monkeypatch.setattr(certkit.ca, "_random_serial", lambda: next(fresh))
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names\nserver,a.example.com\nserver,b.example.com\n")
    result = batch.issue_batch(ca, manifest, out_dir=tmp_path / "out")
    assert result.issued == 2
    serials = {load(tmp_path / "out" / n).serial_number for n in ("a.example.com", "b.example.com")}
    assert serials == {5 << 100, 7 << 100}
    assert len(inventory(ca_dir)) == 3  # first, a and b
    # The re-signed certificate kept its key: files and certificate agree.
    check_bundle(tmp_path / "out" / "a.example.com", ca.cert, "server")


def test_record_pending_reports_taken_serials(ca_dir: Path) -> None:
    from certkit.ca import CA
    from certkit.inventory import Pending

    ca = CADirectory(ca_dir).load(PASSPHRASE.encode())
    signer = CA(ca.cert, ca.key, ca.parents)
    a, b = (signer.issue_server([n]).cert for n in ("a.example.com", "b.example.com"))
    assert ca.inventory.record_pending([Pending(a, "server")]) == []
    assert ca.inventory.record_pending([Pending(a, "server"), Pending(b, "server"), Pending(b, "server")]) == [0, 2]
    assert len(inventory(ca_dir)) == 2


@pytest.mark.parametrize(("body", "line", "fragment"), [
    ("kind,names\nserver,ok.example.com\nserver,foo..example.com\n", 3, "empty label"),
    ("kind,names\nserver,*.co.uk\n", 2, "public suffix"),
    ("kind,names\nprinter,ok.example.com\n", 2, "must be one of: server, client, peer"),
    ("kind,names,email\nserver,ok.example.com,a@example.com\n", 2, "client lines only"),
    ("kind,names,days\nserver,ok.example.com,900\n", 2, "at most 825 days"),
    ("kind,names,days\nserver,ok.example.com,soon\n", 2, "whole number"),
    ("kind,names,key_type\nserver,ok.example.com,dsa\n", 2, "choose one of"),
    ("kind,names\nserver,ok.example.com\nserver,ok.example.com 10.0.0.1\n", 3, "also line 2's"),
    ("kind,name\nserver,ok.example.com\n", 1, "the header must name"),
    ("kind,names\nserver,ok.example.com,extra\n", 2, "quote a field"),
    ('{"kind": "server", "names": "ok.example.com"}\n{"kind": "server", names}\n', 2, "not valid JSON"),
    ('{"kind": "client", "names": "x", "mail": "a@example.com"}\n', 1, "unknown key 'mail'"),
    ("kind,names,uri\nclient,dev1,no-scheme\n", 2, "not a valid URI"),
])
def test_bad_manifest_is_refused_whole(tmp_path: Path, ca_dir: Path, ca_env: dict, body: str, line: int,
                                       fragment: str) -> None:
    (tmp_path / "m.txt").write_text(body)
    proc = run_certkit("issue-batch", "m.txt", "--out-dir", "out", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, f"line {line}: ")
    assert fragment.lower() in proc.stderr.lower(), proc.stderr
    assert "nothing was issued" in proc.stderr.lower()
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "ok.example.com").exists()
    assert inventory(ca_dir) == {}


def test_every_bad_line_is_named(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    rows = ["kind,names"] + [f"server,h{i}.example.com" if i % 3 else f"server,bad_{i}.example.com"
                             for i in range(1, 61)]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    proc = run_certkit("issue-batch", "m.csv", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, "m.csv has 20 bad lines; nothing was issued.")
    # Line numbers are those of the file: the header is line 1, h{i} is line i + 1.
    assert re.findall(r"line (\d+):", proc.stderr) == [str(i + 1) for i in range(3, 61, 3)]
    assert {p.name for p in tmp_path.iterdir()} == {"m.csv", "ca"}


def test_existing_folder_needs_force_and_empty_manifest(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    (tmp_path / "m.csv").write_text("kind,names\nserver,a.example.com\nserver,b.example.com\n")
    run_certkit("issue-server", "b.example.com", cwd=tmp_path, env=ca_env, check=True)
    before = (tmp_path / "b.example.com" / "cert.pem").read_bytes()
    proc = run_certkit("issue-batch", "m.csv", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, "line 3: ")
    assert "--force" in proc.stderr and not (tmp_path / "a.example.com").exists()
    run_certkit("issue-batch", "m.csv", "--force", "--sync", "file", cwd=tmp_path, env=ca_env, check=True)
    assert (tmp_path / "b.example.com" / "cert.pem").read_bytes() != before
    assert mode(tmp_path / "b.example.com" / "privkey.pem") == 0o600
    (tmp_path / "empty.csv").write_text("# nothing yet\nkind,names\n")
    assert_clean_error(run_certkit("issue-batch", "empty.csv", cwd=tmp_path, env=ca_env), "lists no certificates")
    proc = run_certkit("issue-batch", "missing.csv", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, "missing.csv does not exist.")  # an input's mistake (1), as inspect says it


def test_name_constraints_are_checked_before_issuing(tmp_path: Path, ca_env: dict) -> None:
    run_certkit("init-ca", "--permit-dns", "example.com", env=ca_env, check=True)
    (tmp_path / "m.csv").write_text("kind,names\nserver,a.example.com\nserver,b.example.org\n")
    proc = run_certkit("issue-batch", "m.csv", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, "line 3: 'b.example.org' is outside the name constraints")
    assert not (tmp_path / "a.example.com").exists()


@pytest.mark.sqlite_only  # a docs page: the inventory's part is proven by the tests above
def test_docs_examples(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    page = REPO / "docs" / "issue-batch.md"
    work = tmp_path / "work"
    work.mkdir()
    # The manifests shown on the page (```csv NAME / ```json NAME blocks) are the ones run.
    text = page.read_text(encoding="utf-8")
    blocks = re.findall(r"^```(?:csv|json) (\S+)\n(.*?)^```", text, re.S | re.M)
    assert {name for name, _ in blocks} == {"fleet.csv", "devices.jsonl", "bad.csv"}
    for name, body in blocks:
        (work / name).write_text(body, encoding="utf-8")
    run_page(page, cwd=work, env=ca_env)
