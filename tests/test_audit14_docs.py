"""The fourteenth round's documentation-truth findings (audit docs14), each as a class:

1. an output file that even ``--force`` never replaces (a bundle's cert.pem/privkey.pem/ca.pem, a file libpq
   reads, a private key) was refused without ``--force`` as "exists ...; pass --force to replace it", and the
   advice taken got a second refusal: ``crl --out`` and every one-file format (jsonl, tar, k8s) now say at once
   that no --force writes over it, as formats.md and crl.md state.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import assert_clean_error, new_ca, run_certkit


# --- 1: "pass --force" for files --force never replaces ------------------------------------------------------


@pytest.fixture
def with_bundle(tmp_path: Path) -> tuple[dict[str, str], Path]:
    env = new_ca(tmp_path, "Docs14 CA")
    env["HOME"] = str(tmp_path / "home")
    (tmp_path / "home").mkdir()
    run_certkit("issue-client", "alice", cwd=tmp_path, env=env, check=True)
    (tmp_path / "home" / ".pgpass").write_text("localhost:5432:*:certkit:secret\n")
    return env, tmp_path


NEVER_REPLACED = ["alice/cert.pem", "alice/privkey.pem", "alice/ca.pem", "home/.pgpass"]


@pytest.mark.parametrize("target", NEVER_REPLACED)
def test_crl_over_a_file_force_never_replaces_says_so_at_once(with_bundle, target: str) -> None:
    env, work = with_bundle
    before = (work / target).read_bytes()
    proc = run_certkit("crl", "--out", target, cwd=work, env=env)
    assert_clean_error(proc, "even with --force")
    assert "pass --force" not in proc.stderr, proc.stderr
    forced = run_certkit("crl", "--out", target, "--force", cwd=work, env=env)
    assert_clean_error(forced, "even with --force")  # what the advice would have led to
    assert (work / target).read_bytes() == before


@pytest.mark.parametrize("fmt", ["jsonl", "tar", "k8s"])
@pytest.mark.parametrize("target", NEVER_REPLACED)
def test_one_file_format_over_a_file_force_never_replaces_says_so_at_once(with_bundle, fmt: str,
                                                                          target: str) -> None:
    env, work = with_bundle
    before = (work / target).read_bytes()
    proc = run_certkit("issue-server", "y.example", "--format", fmt, "--out", target, cwd=work, env=env)
    assert_clean_error(proc, "even with --force")
    assert "pass --force" not in proc.stderr, proc.stderr
    assert (work / target).read_bytes() == before


def test_a_plain_file_is_still_replaceable_with_force(with_bundle) -> None:
    """The advice stays where it is true: a file of no such kind is replaced with --force."""
    env, work = with_bundle
    (work / "notes.txt").write_text("mine\n")
    assert_clean_error(run_certkit("crl", "--out", "notes.txt", cwd=work, env=env), "pass --force to replace it")
    run_certkit("crl", "--out", "notes.txt", "--force", cwd=work, env=env, check=True)
    assert (work / "notes.txt").read_text().startswith("-----BEGIN X509 CRL-----")
    (work / "out.jsonl").write_text("mine\n")
    proc = run_certkit("issue-server", "y.example", "--format", "jsonl", "--out", "out.jsonl", cwd=work, env=env)
    assert_clean_error(proc, "pass --force to replace it")
