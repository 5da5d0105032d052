"""Round 37, the one-output formats a third time (``--format jsonl|k8s|tar``; certkit/formats/, certkit/batch/),
issue 13.

1. ``--out FILE`` in a folder that does not exist (``issue-peer --format k8s --out /nonexist/dir/x.yaml``, and the
   same for issue-server, issue-client, sign-csr and issue-batch) created the missing folders and wrote the keys
   there: a mistyped path put them where nobody looks. It is refused now, as mkcert, cfssl and openssl refuse it,
   with one Error line naming the missing folder; nothing is signed or recorded.
2. With --jobs 2 a batch's one output (k8s, tar, jsonl; a file or standard output) held its chunks in the order
   the workers finished them, so the same manifest gave another order with --jobs 1 and --jobs 2, and from run to
   run (a GitOps repository's diff churned). The workers now relay each chunk to the parent, which writes them in
   the manifest's order (at most --jobs finished chunks waiting), issuing still in parallel.
3. A batch (or a single command) writing --out FILE, SIGKILLed before its file was in place, left its 0600
   ``.FILE.PID-RANDOM.certkit-tmp`` (perhaps with keys) for ever unless the same --out was written again. Any later
   output file written in that folder now removes a dead writer's temporary files (this user's, pid gone, unheld).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile

import pytest
from test_audit27_formats import _csr
from test_audit35_formats2 import interrupted_into_stdout

from conftest import assert_clean_error, require, run_certkit

FORMATS = ("jsonl", "k8s", "tar")


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


def _names_in(fmt: str, data: bytes) -> list[str]:
    """The bundle names in an output, in its order, as its own reader sees them."""
    if fmt == "jsonl":
        return [json.loads(line)["name"] for line in data.decode().splitlines()]
    if fmt == "k8s":
        import yaml

        return [doc["metadata"]["name"] for doc in yaml.safe_load_all(data.decode()) if doc]
    import io

    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return [member.name for member in archive.getmembers() if member.isdir()]


def _serials_in(fmt: str, data: bytes) -> list[str]:
    if fmt == "jsonl":
        return [json.loads(line)["serial"] for line in data.decode().splitlines()]
    if fmt == "k8s":
        import yaml

        return [doc["metadata"]["annotations"]["certkit/serial"] for doc in yaml.safe_load_all(data.decode()) if doc]
    return []


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_batch_writes_its_records_in_manifest_order_whatever_jobs(tmp_path, ca_env, ca_dir, fmt):
    count = 160
    manifest = tmp_path / "fleet.csv"
    manifest.write_text("kind,names\n# the fleet\n" + "".join(f"server,h{n}.example\n" for n in range(count)))
    expected = [f"h{n}.example" for n in range(count)]
    env = {**ca_env, "CERTKIT_TEST_CHUNK_SIZE": "4"}  # 40 chunks, two workers taking them as they are free
    outputs = {}
    for jobs in ("1", "2", "2"):
        out = tmp_path / f"out-{jobs}-{len(outputs)}.{fmt}"
        run_certkit("issue-batch", manifest, "--format", fmt, "--out", out, "--jobs", jobs, "--force", env=env,
                    check=True)
        outputs[out.name] = out.read_bytes()
        piped = subprocess.run([sys.executable, "-m", "certkit", "issue-batch", manifest, "--format", fmt,
                                "--jobs", jobs], capture_output=True, env=env, timeout=300)
        assert piped.returncode == 0, piped.stderr
        outputs[f"{out.name} (standard output)"] = piped.stdout
    for name, data in outputs.items():
        assert _names_in(fmt, data) == expected, name
        serials = _serials_in(fmt, data)
        if serials:  # each record the one certificate of its line, recorded valid with that name
            listed = {row["serial"]: row for row in json.loads(run_certkit(
                "list", "--json", "--status", "valid", env=ca_env, check=True).stdout)["certificates"]}
            assert [listed[s]["names"] for s in serials] == [[f"DNS:{n}"] for n in expected], name
    # the archive is whole, and tar itself reads it in that order
    if fmt == "tar":
        listing = subprocess.run([require("tar"), "-tf", tmp_path / "out-2-2.tar"], capture_output=True, text=True,
                                 check=True, timeout=60).stdout.split()
        assert [m.rstrip("/") for m in listing if m.endswith("/")] == expected


@pytest.mark.parametrize("fmt", ("jsonl", "k8s"))
def test_an_interrupted_parallel_batch_wrote_the_first_lines_and_left_nothing_pending(tmp_path, ca_env, ca_dir, fmt):
    """Into standard output with --jobs 2, stopped by Ctrl-C: what the reader got is the manifest's first lines, as
    the message says; the chunks that were waiting for their turn are abandoned (never written), none pending."""
    out, err = interrupted_into_stdout(tmp_path, ca_env, fmt, "2")
    names = _names_in(fmt, out)
    assert 0 < len(names) < 300
    assert names == [f"h{n}.example" for n in range(len(names))]  # the first lines, in order
    assert f"those of manifest lines 3-{len(names) + 2}. Rerun its other lines." in err, err
    counts = {status: json.loads(run_certkit("list", "--json", "--status", status, env=ca_env, check=True).stdout)
              ["total"] for status in ("valid", "pending")}
    assert counts == {"valid": len(names), "pending": 0}, counts


def _killed_leaving_its_temporary(args, env, cwd, point: str, marker) -> None:
    """Run ``certkit ARGS`` until ``point`` and SIGKILL it there, as a power cut or the OOM killer would."""
    import os
    import signal

    from integrity_helpers import start_paused

    proc = start_paused(args, env, cwd, point, marker)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    marker.unlink(missing_ok=True)


def _temporaries(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".certkit-tmp"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_killed_writers_temporary_file_is_removed_by_the_next_output_in_its_folder(tmp_path, ca_env, ca_dir, fmt):
    out = tmp_path / "out"
    out.mkdir()
    manifest = tmp_path / "fleet.csv"
    manifest.write_text("kind,names\nserver,b1.example\nserver,b2.example\n")
    killed = [(["issue-batch", manifest, "--format", fmt, "--out", out / f"a.{fmt}", "--jobs", "1"], "signed"),
              (["issue-batch", manifest, "--format", fmt, "--out", out / f"b.{fmt}", "--jobs", "2"], "signed"),
              (["issue-server", "web.example", "--format", fmt, "--out", out / f"c.{fmt}"], "staged")]
    later = [("issue-client", "alice", "--format", fmt),
             ("issue-batch", manifest, "--format", fmt, "--jobs", "2")]
    if fmt != "k8s":
        later.append(("sign-csr", _csr(tmp_path, "csr.example"), "--server", "--format", fmt))
    written = []
    for number, (command, point) in enumerate(killed):
        args = later[number % len(later)]
        _killed_leaving_its_temporary(command, ca_env, tmp_path, point, tmp_path / "paused")
        [left] = _temporaries(out)
        assert (out / left).stat().st_mode & 0o777 == 0o600
        written.append(f"later{number}.{fmt}")
        run_certkit(*args, "--out", out / written[-1], env=ca_env, check=True)
        assert _temporaries(out) == [], args  # a dead writer's: removed
        assert sorted(p.name for p in out.iterdir()) == written
    # what was killed is settled: nothing pending, the certificate never put in place abandoned
    assert json.loads(run_certkit("list", "--json", "--status", "pending", env=ca_env, check=True).stdout)[
        "total"] == 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_killed_writers_temporary_file_is_removed_by_a_bundle_folder_written_beside_it(tmp_path, ca_env, ca_dir,
                                                                                         fmt):
    """Any certkit command writing in that folder: a bundle folder (issue-server, issue-peer, sign-csr --out DIR)
    written beside the dead writer's temporary file removes it too."""
    out = tmp_path / "out"
    out.mkdir()
    manifest = tmp_path / "fleet.csv"
    manifest.write_text("kind,names\nserver,b1.example\n")
    folders = [("issue-server", "web.example"), ("issue-peer", "node1.example"),
               ("sign-csr", _csr(tmp_path, "csr.example"), "--server")]
    for number, args in enumerate(folders):
        _killed_leaving_its_temporary(["issue-batch", manifest, "--format", fmt, "--out", out / f"a.{fmt}"], ca_env,
                                      tmp_path, "signed", tmp_path / "paused")
        assert len(_temporaries(out)) == 1
        run_certkit(*args, "--out", out / f"bundle{number}", env=ca_env, check=True)
        assert _temporaries(out) == [], args
        assert (out / f"bundle{number}" / "cert.pem").is_file()


def test_a_live_writers_temporary_file_is_left_alone(tmp_path, ca_env, ca_dir):
    """A batch still writing (paused, alive, holding its file) keeps its temporary file; another output beside it
    does not take it away."""
    from integrity_helpers import start_paused

    out = tmp_path / "out"
    out.mkdir()
    manifest = tmp_path / "fleet.csv"
    manifest.write_text("kind,names\nserver,b1.example\n")
    marker = tmp_path / "paused"
    proc = start_paused(["issue-batch", manifest, "--format", "jsonl", "--out", out / "a.jsonl", "--jobs", "1"],
                        ca_env, tmp_path, "signed", marker)
    try:
        [left] = _temporaries(out)
        run_certkit("issue-server", "web.example", "--format", "jsonl", "--out", out / "w.jsonl", env=ca_env,
                    check=True)
        run_certkit("issue-server", "web2.example", "--out", out / "web2", env=ca_env, check=True)  # a folder
        assert _temporaries(out) == [left]
    finally:
        marker.unlink()
        proc.communicate(timeout=60)
    assert proc.returncode == 0 and (out / "a.jsonl").is_file() and _temporaries(out) == []
