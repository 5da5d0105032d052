"""Round 27, the one-output formats (``--format jsonl|k8s|tar --out FILE``; certkit/formats/).

1. ``--force`` replaced any existing file without a word: ``--out notes.txt --force`` (a file of the user's, no
   certkit output) was overwritten by a jsonl line, a Secret or a tar archive, its content gone, and an earlier
   output was replaced with nothing said of what it held (the folder format names every file --force removes).
   --force now replaces an earlier jsonl, k8s or tar output (or an empty file) only; a file that holds something
   else is refused, --force or not, and left whole, for issue-server, issue-client, sign-csr and issue-batch. What
   --force replaced is said: "FILE was replaced: it was a jsonl output of 1 certificate (NAME SERIAL)" (or "it
   was empty"), in the summary and --json's ``notes`` (a batch: ``removed``, as a folder's removed files).
"""

from __future__ import annotations

import base64
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


def _manifest(tmp_path, *hosts: str):
    manifest = tmp_path / "fleet.csv"
    manifest.write_text("kind,names\n" + "".join(f"server,{host}\n" for host in hosts))
    return manifest


def _commands(tmp_path, fmt: str, out) -> list[tuple[str, ...]]:
    """Every command that writes a one-output file, writing ``fmt`` to ``out``."""
    commands = [("issue-server", "web.example", "--format", fmt, "--out", out),
                ("issue-client", "alice", "--format", fmt, "--out", out),
                ("issue-batch", _manifest(tmp_path, "b1.example", "b2.example"), "--format", fmt, "--out", out)]
    if fmt != "k8s":  # a Secret holds a key, which a certificate signed from a CSR has not here
        commands.append(("sign-csr", _csr(tmp_path, "csr.example"), "--server", "--format", fmt, "--out", out))
    return commands


def _pems_of(fmt: str, path) -> list[bytes]:
    """The certificates of an output, read by the format's own readers: JSON lines, YAML (base64 data), tar."""
    if fmt == "jsonl":
        return [json.loads(line)["cert"].encode() for line in path.read_text().splitlines()]
    if fmt == "k8s":
        import yaml

        return [base64.b64decode(doc["data"]["tls.crt"]) for doc in yaml.safe_load_all(path.read_text()) if doc]
    listing = subprocess.run([require("tar"), "-tvf", path], capture_output=True, text=True, check=True, timeout=60)
    assert all(line.startswith("-rw-------") for line in listing.stdout.splitlines() if "privkey" in line), listing
    names = [n for n in subprocess.run([require("tar"), "-tf", path], capture_output=True, text=True, check=True,
                                       timeout=60).stdout.split() if n.endswith("/cert.pem")]
    return [subprocess.run([require("tar"), "-xOf", path, n], capture_output=True, check=True, timeout=60).stdout
            for n in names]


def _serials(fmt: str, path) -> list[str]:
    """The serials openssl reads from the certificates of an output."""
    serials = []
    for pem in _pems_of(fmt, path):
        ran = subprocess.run([require("openssl"), "x509", "-noout", "-serial"], input=pem, capture_output=True,
                             check=True, timeout=60)
        serials.append(ran.stdout.decode().strip().removeprefix("serial="))
    return serials


@pytest.mark.parametrize("fmt", FORMATS)
def test_force_never_replaces_a_file_certkit_did_not_write(tmp_path, ca_env, ca_dir, fmt):
    notes = tmp_path / "notes.txt"
    for args in _commands(tmp_path, fmt, notes):
        for force in ((), ("--force",)):
            notes.write_text("my notes: do not lose them\n")
            notes.chmod(0o644)
            ran = run_certkit(*args, *force, env=ca_env)
            assert_clean_error(ran, "notes.txt holds 27 bytes and is no jsonl, k8s or tar output certkit wrote")
            assert "even with --force" in ran.stderr
            assert notes.read_text() == "my notes: do not lose them\n", args
            assert oct(notes.stat().st_mode & 0o777) == "0o644"
            assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".notes")) == []
    assert str(notes) not in run_certkit("list", "--json", env=ca_env, check=True).stdout  # nothing recorded in it


@pytest.mark.parametrize("fmt", FORMATS)
def test_force_says_what_the_replaced_output_held(tmp_path, ca_env, ca_dir, fmt):
    out = tmp_path / f"out.{fmt}"
    for args in _commands(tmp_path, fmt, out):
        out.unlink(missing_ok=True)
        first = run_certkit(*args, "--json", env=ca_env, check=True)
        assert json.loads(first.stdout).get("notes", []) == []
        held = _serials(fmt, out)
        kept = run_certkit(*args, env=ca_env)  # refused without --force, named
        assert_clean_error(kept, f"{out} already exists")
        assert _serials(fmt, out) == held
        second = json.loads(run_certkit(*args, "--force", "--json", env=ca_env, check=True).stdout)
        said = second["removed"] if args[0] == "issue-batch" else second["notes"]
        count = "1 certificate" if len(held) == 1 else f"{len(held)} certificates"
        replaced = [n for n in said if n.startswith(f"{out} was replaced: it was a {fmt} output of {count} (")]
        assert len(replaced) == 1, said
        assert all(serial in replaced[0] for serial in held), (held, replaced)
        assert oct(out.stat().st_mode & 0o777) == "0o600"
        assert set(_serials(fmt, out)).isdisjoint(held)  # the new output, readable by its readers
        human = run_certkit(*args, "--force", env=ca_env, check=True)
        assert f"was replaced: it was a {fmt} output of {count}" in human.stdout + human.stderr


@pytest.mark.parametrize("fmt", FORMATS)
def test_force_over_an_empty_file_says_it_was_empty(tmp_path, ca_env, ca_dir, fmt):
    out = tmp_path / "placeholder.out"
    for content in ("", "\n  \n"):
        out.write_text(content)
        done = json.loads(run_certkit("issue-server", "e.example", "--format", fmt, "--out", out, "--force",
                                      "--json", env=ca_env, check=True).stdout)
        assert f"{out} was replaced: it was empty" in done["notes"], done
        assert len(_serials(fmt, out)) == 1
    out.write_text("")
    batch = json.loads(run_certkit("issue-batch", _manifest(tmp_path, "b.example"), "--format", fmt, "--out", out,
                                   "--force", "--json", env=ca_env, check=True).stdout)
    assert f"{out} was replaced: it was empty" in batch["removed"], batch
