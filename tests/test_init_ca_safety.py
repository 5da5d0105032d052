"""init-ca never leaves a ghost: an intermediate whose CA directory could not be written is not
listed as valid by its parent (recorded pending, then abandoned; a killed init-ca is settled by the
next command), a folder that cannot take the CA is refused before any passphrase is read or
anything signed, a CA is never created inside another CA's directory, and what a killed init-ca
left is removed by the next. Outputs on a read-only file system are refused before signing too."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit
from integrity_helpers import fill, interrupt, start_paused, tmpfs


@pytest.fixture()
def root(tmp_path: Path) -> tuple[Path, dict]:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "root"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Safety Root", env=env, check=True)
    return tmp_path, env


def ca_rows(env: dict) -> list[dict]:
    """The parent's CA rows: those list shows, and the abandoned ones it leaves out unless asked."""
    rows = []
    for status in ([], ["--status", "abandoned"]):
        proc = run_certkit("list", "--kind", "ca", *status, "--json", env=env)
        assert proc.returncode == 0, proc.stderr
        rows += json.loads(proc.stdout)["certificates"]
    return rows


def intermediate(work: Path, env: dict, ca_dir: Path | str, name: str = "Issuing", **kwargs):
    return run_certkit("init-ca", "--ca-dir", ca_dir, "--parent-ca-dir", work / "root", "--name", name,
                       env=env, **kwargs)


def test_a_folder_that_is_not_empty_is_refused_before_the_parent_signs(root) -> None:
    work, env = root
    (work / "busy").mkdir()
    (work / "busy" / "README").write_text("mine\n")
    # No parent passphrase at all: the refusal comes before it is needed.
    proc = intermediate(work, dict(env, CERTKIT_PARENT_CA_PASSPHRASE=""), work / "busy")
    assert_clean_error(proc, "not an empty folder")
    assert os.listdir(work / "busy") == ["README"]
    assert ca_rows(env) == []


@pytest.mark.parametrize("inside", ["root/issuing", "root/sub/issuing"])
def test_no_ca_inside_another_cas_directory(root, inside: str) -> None:
    work, env = root
    proc = intermediate(work, env, work / inside)
    assert_clean_error(proc, "holds a CA")
    assert sorted(os.listdir(work / "root")) == ["ca-key.pem", "ca.pem", "inventory.sqlite3"]
    proc = run_certkit("init-ca", "--ca-dir", work / inside, "--name", "Nested root", env=env)
    assert_clean_error(proc, "holds a CA")
    assert ca_rows(env) == []


def test_a_read_only_place_is_refused_before_anything_is_signed(root) -> None:
    work, env = root
    with tmpfs(work / "media", "ro", "size=64k") as media:
        proc = intermediate(work, env, media / "issuing")
        assert_clean_error(proc, "read-only")
        for args in (["issue-server", "ro.internal", "--out", media / "ro"],
                     ["issue-server", "ro.internal", "--format", "jsonl", "--out", media / "ro.jsonl"]):
            assert_clean_error(run_certkit(*args, env=env), "read-only")
        (work / "m.csv").write_text("kind,names\nserver,a.internal\n")
        assert_clean_error(run_certkit("issue-batch", work / "m.csv", "--out-dir", media, env=env), "read-only")
    proc = run_certkit("list", "--status", "abandoned", "--json", env=env)
    assert json.loads(proc.stdout)["certificates"] == [], "something was signed and abandoned"


def test_a_full_disk_leaves_no_valid_ghost_and_names_the_ca_directory(root) -> None:
    work, env = root
    with tmpfs(work / "small", "size=64k") as small:
        fill(small, leave=8 * 1024)
        proc = intermediate(work, env, small / "issuing")
        assert_clean_error(proc, "Cannot create the CA directory")
        assert "certkit-tmp" not in proc.stderr, proc.stderr  # the folder asked for, not a temporary one
        assert not (small / "issuing").exists()
        assert [e for e in os.listdir(small) if e != "filler"] == []
    assert [r["status"] for r in ca_rows(dict(env))] in ([], ["abandoned"])
    listed = json.loads(run_certkit("list", "--kind", "ca", "--status", "valid", "--json", env=env).stdout)
    assert listed["certificates"] == []


@pytest.mark.parametrize("point,expected", [("signed", None), ("staged", "abandoned")])
def test_a_killed_intermediate_is_settled_by_the_next_command(root, point: str, expected: str | None) -> None:
    """SIGKILL once the parent signed (nothing recorded yet) or with the CA directory complete under
    its temporary name (recorded pending): the next command finds no ghost, and removes the staging
    folder that holds the dead one's key (the next init-ca in that place would too)."""
    work, env = root
    proc = start_paused(["init-ca", "--ca-dir", work / "issuing", "--parent-ca-dir", work / "root", "--name",
                         "Killed"], env, work, point, work / "paused")
    outcome = interrupt(proc, signal.SIGKILL, work / "paused")
    assert outcome.returncode == -signal.SIGKILL
    rows = ca_rows(env)  # settles the dead writer's row
    assert [r["status"] for r in rows] == ([expected] if expected else []), rows
    # the settling of the dead writer's row also removes its staged copy, the CA key in it (since 2c046ab)
    assert [e for e in os.listdir(work) if e.startswith(".issuing.")] == [], os.listdir(work)
    proc = intermediate(work, env, work / "issuing", name="Again")
    assert proc.returncode == 0, proc.stderr
    assert [e for e in os.listdir(work) if e.startswith(".issuing.")] == []
    assert sorted((r["subject"], r["status"]) for r in ca_rows(env)) == sorted(
        [("CN=Again", "valid")] + ([("CN=Killed", "abandoned")] if expected else []))


def test_a_killed_intermediate_in_place_is_found_valid(root) -> None:
    """Killed after its CA directory was renamed into place, before the parent marked it: the next
    command finds its ca.pem in the directory its row names, and marks it valid."""
    work, env = root
    proc = start_paused(["init-ca", "--ca-dir", work / "issuing", "--parent-ca-dir", work / "root", "--name",
                         "Placed"], env, work, "placed", work / "paused")
    assert interrupt(proc, signal.SIGKILL, work / "paused").returncode == -signal.SIGKILL
    assert (work / "issuing" / "ca.pem").exists()
    assert [(r["subject"], r["status"]) for r in ca_rows(env)] == [("CN=Placed", "valid")]


@pytest.mark.parametrize("option,value,said", [("--permit-dns", "*.example.com", "a wildcard is not allowed here"),
                                               ("--permit-ip", "10.0.0.1/8", "has host bits set")])
def test_a_bad_constraint_is_refused_before_the_unencrypted_key_warning(tmp_path: Path, option: str, value: str,
                                                                        said: str) -> None:
    """A name constraint that cannot be used is refused first, alone: init-ca warned that the key would be
    stored unencrypted, then refused, for a CA that was never made."""
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"))
    proc = run_certkit("init-ca", "--no-passphrase", option, value, env=env)
    assert_clean_error(proc, said)
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("Error: "), proc.stderr
    assert not (tmp_path / "ca").exists()
