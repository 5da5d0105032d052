"""certkit list for a person at a terminal (a pseudo-terminal here): long output goes through the
pager ($PAGER), every line fits the terminal's width, and a limited list says "8 of 10,000
certificates". Into a pipe: no pager, nothing cut."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import PASSPHRASE, certkit_env, run_certkit
from fleet_helpers import run_in_pty

COUNT = 10_000


@pytest.fixture(scope="module")
def big_ca(tmp_path_factory) -> Path:
    """A CA with 10,000 server certificates (one key for all: the list is tested, not key generation)."""
    from certkit.ca import CA
    from certkit.issuing import Target, deliver_many, server_request
    from certkit.keys import generate_key
    from certkit.store import CADirectory

    path = tmp_path_factory.mktemp("list") / "ca"
    CADirectory(path).save_new(CA.create("List test root", key_type="ed25519"), PASSPHRASE.encode())
    ca = CADirectory(path).load(PASSPHRASE.encode())
    key = generate_key("ed25519")  # the fastest to sign with: 10,000 certificates in a few seconds
    for start in range(0, COUNT, 500):
        deliver_many(ca, [(server_request([f"host-{i:05d}.a-rather-long-subdomain.example.com"], key=key), Target())
                          for i in range(start, start + 500)])
    return path


def pager_env(tmp_path: Path, ca: Path) -> tuple[dict, Path]:
    """$PAGER: a script that keeps what it was given (and shows nothing)."""
    kept = tmp_path / "paged.txt"
    pager = tmp_path / "pager.sh"
    pager.write_text(f"#!/bin/sh\ncat > '{kept}'\n")
    pager.chmod(0o755)
    return certkit_env(CERTKIT_CA_DIR=str(ca), PAGER=str(pager)), kept


def test_limited_list_fits_and_says_how_many(big_ca, tmp_path):
    env, kept = pager_env(tmp_path, big_ca)
    code, shown, _ = run_in_pty(["list", "--limit", "8"], env=env, cols=80)
    assert code == 0, shown
    lines = shown.rstrip("\n").splitlines()
    assert lines[-1] == f"8 of {COUNT:,} certificates" and len(lines) == 1 + 8 + 2
    assert lines[-2].startswith("Serials are shortened")  # on a line of its own: both fit
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    assert sum("host-" in line for line in lines) == 8
    assert not kept.exists()  # eight lines need no pager


def test_long_list_goes_through_the_pager(big_ca, tmp_path):
    env, kept = pager_env(tmp_path, big_ca)
    code, shown, _ = run_in_pty(["list", "--kind", "server"], env=env, cols=100, rows=30)
    assert code == 0, shown
    assert "host-" not in shown  # the terminal got the pager, not 10,000 lines
    paged = kept.read_text().rstrip("\n").splitlines()
    assert paged[0].split()[:3] == ["SERIAL", "KIND", "STATUS"]
    assert paged[-1].startswith(f"{COUNT:,} certificates")
    assert sum("host-" in line for line in paged) == COUNT  # every row reached the pager
    assert all(len(line) <= 100 for line in paged), max(paged, key=len)
    assert any(line.endswith("…") for line in paged)  # the long names were cut to fit


def test_a_pipe_gets_everything_without_a_pager(big_ca, tmp_path):
    env, kept = pager_env(tmp_path, big_ca)
    proc = run_certkit("list", "--limit", "3", env=env)
    assert proc.returncode == 0 and not kept.exists(), proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == (f"3 of {COUNT:,} certificates (serials shortened: any unique 8+ digit prefix works in renew "
                         "and revoke)")
    assert all(".a-rather-long-subdomain.example.com" in line for line in lines[1:4])  # nothing cut
