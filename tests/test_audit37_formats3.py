"""Round 37, the one-output formats a third time (``--format jsonl|k8s|tar``; certkit/formats/, certkit/batch/),
issue 13.

1. ``--out FILE`` in a folder that does not exist (``issue-peer --format k8s --out /nonexist/dir/x.yaml``, and the
   same for issue-server, issue-client, sign-csr and issue-batch) created the missing folders and wrote the keys
   there: a mistyped path put them where nobody looks. It is refused now, as mkcert, cfssl and openssl refuse it,
   with one Error line naming the missing folder; nothing is signed or recorded.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import assert_clean_error, require, run_certkit

FORMATS = ("jsonl", "k8s", "tar")


def _csr(tmp_path, cn: str):
    """A CSR made by openssl (its key beside it), as a requester makes one."""
    subprocess.run([require("openssl"), "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", tmp_path / "k.pem", "-subj", f"/CN={cn}", "-out", tmp_path / "r.csr"],
                   capture_output=True, check=True, timeout=60)
    return tmp_path / "r.csr"


def _commands(tmp_path, fmt: str) -> list[tuple]:
    """Every command that writes a one-output file, writing ``fmt`` (without --out)."""
    manifest = tmp_path / "fleet.csv"
    manifest.write_text("kind,names\nserver,b1.example\nserver,b2.example\nclient,b3\n")
    commands = [("issue-server", "web.example", "--format", fmt),
                ("issue-client", "alice", "--format", fmt),
                ("issue-peer", "node1.example", "--format", fmt),
                ("issue-batch", manifest, "--format", fmt, "--jobs", "1"),
                ("issue-batch", manifest, "--format", fmt, "--jobs", "2")]
    if fmt != "k8s":  # a Secret holds a key, which a certificate signed from a CSR has not here
        commands.append(("sign-csr", _csr(tmp_path, "csr.example"), "--server", "--format", fmt))
    return commands


def _rows(env) -> int:
    """Every row of the inventory, whatever its status."""
    return sum(json.loads(run_certkit("list", "--json", "--status", status, env=env, check=True).stdout)["total"]
               for status in ("valid", "pending", "abandoned"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_output_file_in_a_folder_that_does_not_exist_is_refused(tmp_path, ca_env, ca_dir, fmt):
    work = tmp_path / "work"
    work.mkdir()
    for args in _commands(tmp_path, fmt):
        for out, missing in ((work / "nonexist" / "dir" / "x.out", work / "nonexist"),
                             (work / "typo" / "x.out", work / "typo")):
            ran = run_certkit(*args, "--out", out, *(("--json",) if args[0] == "issue-batch" else ()), env=ca_env)
            assert ran.returncode == 1, (args, ran.stdout, ran.stderr)
            said = json.loads(ran.stdout)["error"] if args[0] == "issue-batch" else ran.stderr
            assert f"The folder {missing} does not exist" in said, (args, said)
            assert "Traceback" not in ran.stderr
            if args[0] != "issue-batch":
                assert_clean_error(ran, f"The folder {missing} does not exist")
            assert list(work.iterdir()) == [], args  # no folder made, no temporary file
        assert _rows(ca_env) == 0, args  # nothing signed, nothing recorded
    # relative, as typed: the folder is named so
    ran = run_certkit("issue-server", "web.example", "--format", fmt, "--out", "nodir/sub/web.out", env=ca_env,
                      cwd=work)
    assert_clean_error(ran, "The folder nodir does not exist")
    assert "mkdir -p nodir/sub" in ran.stderr
    assert list(work.iterdir()) == []
    # an existing folder is written to as before
    (work / "here").mkdir()
    run_certkit("issue-server", "web.example", "--format", fmt, "--out", work / "here" / "web.out", env=ca_env,
                check=True)
    assert (work / "here" / "web.out").stat().st_mode & 0o777 == 0o600


def test_the_folder_format_still_makes_its_bundle_folders(tmp_path, ca_env, ca_dir):
    """--out DIR for a bundle folder, and a batch's --out-dir, make their folders, as documented."""
    run_certkit("issue-server", "web.example", "--out", tmp_path / "new" / "web", env=ca_env, check=True)
    assert (tmp_path / "new" / "web" / "privkey.pem").is_file()
    manifest = tmp_path / "fleet.csv"
    manifest.write_text("kind,names\nserver,b1.example\n")
    run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "made" / "certs", env=ca_env, check=True)
    assert (tmp_path / "made" / "certs" / "b1.example" / "cert.pem").is_file()
