"""A writer of --format jsonl|k8s|tar killed at each step, and what the next command makes of its rows:
the file in place holds the certificate -> valid; no file (or a damaged one) -> abandoned. Also a
batch whose file cannot be put in place: nothing valid, nothing left behind."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from certkit.store import CADirectory

from conftest import PASSPHRASE, run_certkit
from fleet_helpers import jsonl_records, secrets, tar_listing
from integrity_helpers import start_paused


def statuses(ca_dir: Path) -> dict[str, str]:
    inventory = CADirectory(ca_dir).inventory
    inventory.check()  # what the next command does first: settle the rows of dead writers
    return {r["serial"]: r["status"] for r in inventory.rows()}


def run_until(point: str, args: list, env: dict, cwd: Path) -> None:
    """Run the CLI until it reaches ``point``, then kill it with SIGKILL."""
    marker = cwd / f"paused-{point}"
    proc = start_paused(args, env, cwd, point, marker)
    try:
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    marker.unlink(missing_ok=True)


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".certkit-tmp")]


@pytest.mark.parametrize("fmt,point,delivered", [
    ("jsonl", "recorded", False), ("tar", "staged", False), ("k8s", "staged", False),
    ("jsonl", "placed", True), ("tar", "placed", True), ("k8s", "placed", True),
])
def test_kill_a_single_issuance(tmp_path, ca_env, ca_dir, fmt, point, delivered):
    out = tmp_path / f"web.{fmt}"
    run_until(point, ["issue-server", "web.example.com", "--format", fmt, "--out", out], ca_env, tmp_path)
    assert out.exists() == delivered
    [(serial, status)] = statuses(ca_dir).items()
    assert status == ("valid" if delivered else "abandoned")
    assert not leftovers(tmp_path)  # a temporary file holding the key is swept away
    if delivered:
        held = {"jsonl": lambda: jsonl_records(out)[0]["serial"],
                "k8s": lambda: secrets(out.read_text())[0]["metadata"]["annotations"]["certkit/serial"],
                "tar": lambda: serial}[fmt]()
        assert held == serial
    # and the same command now succeeds
    proc = run_certkit("issue-server", "web.example.com", "--format", fmt, "--out", out, "--force", env=ca_env)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("fmt,point,delivered", [("tar", "placed", True), ("jsonl", "staged", False),
                                                 ("k8s", "recorded", False)])
def test_kill_a_batch_into_one_file(tmp_path, ca_env, ca_dir, fmt, point, delivered):
    (tmp_path / "m.csv").write_text("kind,names\n" + "".join(f"server,h{i}.example.com\n" for i in range(6))
                                    + "client,alice\n")
    out = tmp_path / f"fleet.{fmt}"
    run_until(point, ["issue-batch", "m.csv", "--format", fmt, "--out", out, "--jobs", "1"], ca_env, tmp_path)
    found = statuses(ca_dir)
    assert out.exists() == delivered and not leftovers(tmp_path)
    if delivered:  # the whole archive was in place: every certificate in it is valid
        assert len(found) == 7 and set(found.values()) == {"valid"}
        cert_members = [n for n in tar_listing(out) if n.endswith("/cert.pem")]
        assert len(cert_members) == 7
    else:
        assert found and set(found.values()) == {"abandoned"}


def test_reading_damaged_and_partial_files(tmp_path, ca_env, ca_dir):
    """What a killed writer (or a user) could leave at the path: only whole records count, a key
    must belong to its certificate, and a file that is not ours holds nothing."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from certkit.formats import holds_certificates

    ca = CADirectory(ca_dir).load(PASSPHRASE.encode())
    issued = [ca.issue_server([f"h{i}.example.com"]) for i in range(3)]
    other = ca.issue_server(["other.example.com"])
    der = [one.cert.public_bytes(Encoding.DER) for one in issued]
    wanted = dict.fromkeys(der, True)
    from certkit.formats import Encoder

    for fmt in ("jsonl", "k8s", "tar"):
        encoder = Encoder(fmt)
        data = [encoder.encode(one, f"h{i}") for i, one in enumerate(issued)]
        path = tmp_path / f"f.{fmt}"
        path.write_bytes(b"".join(data) + encoder.end())
        assert holds_certificates(path, wanted) == set(der), fmt
        path.write_bytes(b"".join(data)[:-1000])  # the last record cut off
        assert holds_certificates(path, wanted) == set(der[:2]), fmt
    # a key of another certificate does not make a bundle whole
    from certkit.formats import jsonl_record

    files = Encoder("jsonl").files(issued[0]) | {"privkey.pem": other.private_key_pem}
    (tmp_path / "swapped.jsonl").write_bytes(jsonl_record(issued[0], "h0", files))
    assert holds_certificates(tmp_path / "swapped.jsonl", wanted) == set()
    assert holds_certificates(tmp_path / "swapped.jsonl", {der[0]: False}) == {der[0]}  # a CSR's: no key needed
    for junk in (b"", b"\0" * 2048, b"not a certificate\n", b"{\"cert\": 5}\n"):
        (tmp_path / "junk").write_bytes(junk)
        assert holds_certificates(tmp_path / "junk", wanted) == set()
    assert holds_certificates(tmp_path / "missing", wanted) == set()


def test_a_batch_whose_file_cannot_be_placed(tmp_path, ca_env, ca_dir):
    """Another file appears at the destination while the batch runs: nothing is replaced, the
    certificates meant for the batch's file are abandoned, its temporary file is removed."""
    from certkit.batch import BatchStopped, issue_batch
    from certkit.errors import OutputExists
    from certkit.formats import Output

    (tmp_path / "m.csv").write_text("kind,names\n" + "".join(f"server,h{i}.example.com\n" for i in range(5)))
    out = tmp_path / "fleet.tar"
    ca = CADirectory(ca_dir).load(PASSPHRASE.encode())
    output = Output("tar", out, shared=True)
    output.check(ca.directories)
    with pytest.raises((OutputExists, BatchStopped)):
        issue_batch(ca, tmp_path / "m.csv", chunk_size=2, output=output,
                    progress=lambda n: out.write_text("someone else's"))
    assert out.read_text() == "someone else's"
    found = statuses(ca_dir)
    assert len(found) == 5 and set(found.values()) == {"abandoned"}
    assert not leftovers(tmp_path)


@pytest.mark.parametrize("fmt,signum,jobs", [("jsonl", signal.SIGTERM, "2"), ("tar", signal.SIGINT, "1"),
                                             ("k8s", signal.SIGHUP, "1")])
def test_a_stop_as_the_file_is_placed_leaves_every_certificate_in_it_valid(tmp_path, ca_env, ca_dir, fmt, signum,
                                                                           jobs):
    """Ctrl-C, SIGTERM or a hangup once the file is in place (it holds every key) is held off until its
    certificates are recorded valid, so each can still be revoked; the command says the batch was
    complete, and how many certificates it wrote."""
    from integrity_helpers import interrupt

    (tmp_path / "m.csv").write_text("kind,names\n" + "".join(f"server,p{i}.example.com\n" for i in range(5)))
    out, marker = tmp_path / f"fleet.{fmt}", tmp_path / "paused"
    proc = start_paused(["issue-batch", "m.csv", "--format", fmt, "--out", out, "--jobs", jobs], ca_env, tmp_path,
                        "placed", marker)
    outcome = interrupt(proc, signum, marker)
    assert outcome.returncode == (130 if signum == signal.SIGINT else 128 + signum), outcome.stderr
    assert outcome.stderr.strip() == (f"Error: The batch was interrupted once it was complete: 5 certificates were "
                                      f"written to {out} and recorded.")
    found = statuses(ca_dir)
    assert len(found) == 5 and set(found.values()) == {"valid"}
    assert out.exists() and not leftovers(tmp_path)
    proc = run_certkit("revoke", next(iter(found)), env=ca_env)
    assert proc.returncode == 0, proc.stderr


def test_an_inventory_gone_once_the_file_is_placed_is_said_and_settled_later(tmp_path, ca_env, ca_dir):
    """The file was put in place, then the inventory could not be reached to mark its certificates: the
    command said only the inventory's error; it now says the file was written whole and its
    certificates stay pending (not to issue them again), and the next command records them valid."""
    (tmp_path / "m.csv").write_text("kind,names\n" + "".join(f"server,g{i}.example.com\n" for i in range(4)))
    out, marker = tmp_path / "fleet.jsonl", tmp_path / "paused"
    inventory = ca_dir / "inventory.sqlite3"
    proc = start_paused(["issue-batch", "m.csv", "--format", "jsonl", "--out", out, "--jobs", "1"], ca_env, tmp_path,
                        "placed", marker)
    inventory.rename(inventory.with_name("away.sqlite3"))  # the marks find no inventory
    marker.unlink()  # let it go on
    try:
        _out, err = proc.communicate(timeout=60)
    finally:
        inventory.with_name("away.sqlite3").rename(inventory)
    assert proc.returncode == 1, err
    [line] = err.splitlines()
    assert line.startswith("Error: ") and line.endswith(
        f"{out} was written whole (4 certificates); they stay pending until the next certkit command reaches the "
        "inventory and records them as issued, so do not issue them again."), line
    assert len(jsonl_records(out)) == 4
    found = statuses(ca_dir)  # the next command: the file holds them
    assert len(found) == 4 and set(found.values()) == {"valid"}
