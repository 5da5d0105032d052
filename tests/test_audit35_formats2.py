"""Round 35, the one-output formats again (``--format jsonl|k8s|tar``; certkit/formats/), issue 13.

1. An output of one format was written over, or appended to, an output of another: ``--format jsonl --out
   fleet.tar --force`` replaced a tar archive by JSON lines (``tar -t`` then fails on fleet.tar), ``--format k8s
   --force`` over a jsonl file, and ``--format jsonl >> secrets.yaml`` appended a JSON line to a Secret stream
   (``kubectl apply -f secrets.yaml`` then fails to parse it), while the inventory said the certificates were
   delivered. --force now replaces an earlier output of the same format only (or an empty file), and standard
   output does not append jsonl or k8s to a file that holds an output of another format.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from conftest import assert_clean_error, require, run_certkit

FORMATS = ("jsonl", "k8s", "tar")
SUFFIX = {"jsonl": "jsonl", "k8s": "yaml", "tar": "tar"}


def _csr(tmp_path, cn: str):
    """A CSR made by openssl (its key beside it), as a requester makes one."""
    subprocess.run([require("openssl"), "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", tmp_path / "k.pem", "-subj", f"/CN={cn}", "-out", tmp_path / "r.csr"],
                   capture_output=True, check=True, timeout=60)
    return tmp_path / "r.csr"


def _commands(tmp_path, fmt: str) -> list[tuple[str, ...]]:
    """Every command that writes a one-output file, writing ``fmt`` (without --out)."""
    manifest = tmp_path / "fleet.csv"
    manifest.write_text("kind,names\nserver,b1.example\nserver,b2.example\n")
    commands = [("issue-server", "web.example", "--format", fmt),
                ("issue-client", "alice", "--format", fmt),
                ("issue-peer", "node1.example", "--format", fmt),
                ("issue-batch", manifest, "--format", fmt),
                ("issue-batch", manifest, "--format", fmt, "--jobs", "2")]
    if fmt != "k8s":  # a Secret holds a key, which a certificate signed from a CSR has not here
        commands.append(("sign-csr", _csr(tmp_path, "csr.example"), "--server", "--format", fmt))
    return commands


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _valid(env) -> int:
    return json.loads(run_certkit("list", "--json", "--status", "valid", env=env, check=True).stdout)["total"]


def _reads(fmt: str, path) -> bool:
    """Whether the format's own reader takes the file whole: tar, a JSON-lines reader, a YAML stream."""
    if fmt == "tar":
        return subprocess.run([require("tar"), "-tf", path], capture_output=True, timeout=60).returncode == 0
    if fmt == "jsonl":
        return all(isinstance(json.loads(line), dict) for line in path.read_text().splitlines())
    import yaml

    return all(doc["kind"] == "Secret" for doc in yaml.safe_load_all(path.read_text()) if doc)


@pytest.mark.parametrize("old", FORMATS)
def test_force_never_replaces_an_output_of_another_format(tmp_path, ca_env, ca_dir, old):
    earlier = tmp_path / f"earlier.{SUFFIX[old]}"
    run_certkit("issue-server", "old.example", "--format", old, "--out", earlier, env=ca_env, check=True)
    kept, valid = _digest(earlier), _valid(ca_env)
    for new in (f for f in FORMATS if f != old):
        for args in _commands(tmp_path, new):
            for force in ((), ("--force",)):
                ran = run_certkit(*args, "--out", earlier, *force, env=ca_env)
                assert_clean_error(ran, f"{earlier} is a {old} output, and this command writes {new}")
                assert "even with --force" in ran.stderr
                assert _digest(earlier) == kept, args
                assert _reads(old, earlier)
                assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".earlier")] == []
    assert _valid(ca_env) == valid  # nothing issued
    for args in _commands(tmp_path, old):  # the same format is still what --force replaces
        done = run_certkit(*args, "--out", earlier, "--force", env=ca_env, check=True)
        assert f"{earlier} was replaced: it was a {old} output" in done.stdout + done.stderr
        assert _reads(old, earlier)


def _appended(args, target, env):
    """``certkit ARGS >> target`` in a real process (standard output a file opened to append)."""
    with open(target, "ab") as out:
        return subprocess.run([sys.executable, "-m", "certkit", *map(str, args)], stdout=out,
                              stderr=subprocess.PIPE, text=True, env=env, timeout=120)


@pytest.mark.parametrize("new", ("jsonl", "k8s"))
def test_standard_output_never_appends_to_an_output_of_another_format(tmp_path, ca_env, ca_dir, new):
    for old in (f for f in FORMATS if f != new):
        earlier = tmp_path / f"earlier.{SUFFIX[old]}"
        earlier.unlink(missing_ok=True)
        run_certkit("issue-server", "old.example", "--format", old, "--out", earlier, env=ca_env, check=True)
        kept, valid = _digest(earlier), _valid(ca_env)
        for args in _commands(tmp_path, new):
            ran = _appended(args, earlier, ca_env)
            assert ran.returncode == 1 and "Traceback" not in ran.stderr, ran.stderr
            assert ran.stderr.startswith(f"Error: Standard output is a file that already holds data (>>?); it is "
                                         f"a {old} output, and this command writes {new}"), ran.stderr
            assert len(ran.stderr.splitlines()) == 1, ran.stderr
            assert _digest(earlier) == kept, args
        assert _reads(old, earlier)
        assert _valid(ca_env) == valid  # nothing delivered, nothing recorded valid
    same = tmp_path / f"same.{SUFFIX[new]}"  # the same format still appends, each record readable
    for host in ("a1.example", "a2.example"):
        assert _appended(("issue-server", host, "--format", new), same, ca_env).returncode == 0
    assert _reads(new, same)


def _cut_last_line_break(path) -> bytes:
    """The file as an editor, ``printf '%s'`` or ``jq -j`` leaves it: its last line without its line break."""
    data = path.read_bytes().rstrip(b"\n")
    path.write_bytes(data)
    return data


@pytest.mark.parametrize("fmt", ("jsonl", "k8s"))
def test_standard_output_never_joins_a_record_to_a_last_line_without_its_break(tmp_path, ca_env, ca_dir, fmt):
    """2. ``>> FILE`` onto a file whose last line had no line break joined the new record to it: a jsonl file of
    one unreadable line (both records lost to jq), a Secret stream whose last Secret's fields the new one took
    over (kubectl applied one Secret of two). Such a file is now refused, and left as it was."""
    earlier = tmp_path / f"earlier.{SUFFIX[fmt]}"
    run_certkit("issue-server", "old.example", "--format", fmt, "--out", earlier, env=ca_env, check=True)
    kept = _cut_last_line_break(earlier)
    assert _reads(fmt, earlier)  # still whole: a last line without its break reads
    valid = _valid(ca_env)
    for args in _commands(tmp_path, fmt):
        ran = _appended(args, earlier, ca_env)
        assert ran.returncode == 1 and "Traceback" not in ran.stderr, ran.stderr
        assert ran.stderr.startswith("Error: Standard output is a file whose last line has no line break (>>?)"), \
            ran.stderr
        assert len(ran.stderr.splitlines()) == 1, ran.stderr
        assert earlier.read_bytes() == kept, args
    notes = tmp_path / "notes.txt"  # any file: the record would join its last line
    notes.write_bytes(b"issued for the lab")
    ran = _appended(("issue-server", "n.example", "--format", fmt), notes, ca_env)
    assert ran.returncode == 1 and notes.read_bytes() == b"issued for the lab", ran.stderr
    assert _valid(ca_env) == valid
    with open(earlier, "ab") as f:  # the line break given back: the record is appended, both read
        f.write(b"\n")
    assert _appended(("issue-server", "new.example", "--format", fmt), earlier, ca_env).returncode == 0
    assert _reads(fmt, earlier)
    if fmt == "jsonl":
        assert [json.loads(line)["name"] for line in earlier.read_text().splitlines()] == ["old.example",
                                                                                          "new.example"]
    else:
        import yaml

        names = [doc["metadata"]["name"] for doc in yaml.safe_load_all(earlier.read_text()) if doc]
        assert names == ["old.example", "new.example"]


def _lines_said(message: str) -> set[int]:
    """The manifest lines an interrupted batch says it wrote: '... those of manifest lines 3-7, 13-17. ...'."""
    said = message.split("those of manifest lines ", 1)[1].split(".", 1)[0]
    lines: set[int] = set()
    for part in said.split(", "):
        first, _, last = part.partition("-")
        lines.update(range(int(first), int(last or first) + 1))
    return lines


def interrupted_into_stdout(tmp_path, ca_env, fmt: str, jobs: str) -> tuple[bytes, str]:
    """A 300-line batch (chunks of 5) into standard output, stopped by Ctrl-C once writing has begun: what the
    reader got, and the batch's standard error (exit 130, no traceback)."""
    import signal
    import time

    manifest = tmp_path / "fleet.csv"
    manifest.write_text("kind,names\n# the fleet\n" + "".join(f"server,h{n}.example\n" for n in range(300)))
    env = {**ca_env, "CERTKIT_TEST_CHUNK_SIZE": "5"}
    proc = subprocess.Popen([sys.executable, "-m", "certkit", "issue-batch", manifest, "--format", fmt,
                             "--jobs", jobs], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, bufsize=0)
    first = proc.stdout.read(1)  # writing has begun; unread, the pipe fills and its writer waits on it
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    out, err = first + out, err.decode()
    assert proc.returncode == 130 and "Traceback" not in err, err
    return out, err


@pytest.mark.parametrize("fmt", ("jsonl", "k8s"))
@pytest.mark.parametrize("jobs", ("1", "2"))
def test_an_interrupted_batch_names_the_lines_it_wrote_to_standard_output(tmp_path, ca_env, ca_dir, fmt, jobs):
    """3. Interrupted while writing to standard output, a batch said "Rerun the manifest's remaining lines". With
    --jobs 2 the chunks reach the stream as they are finished (lines 502-1001 before 2-501), so the lines after
    the last one written are not those left to do. It now names the manifest lines it wrote, and exactly those
    reached the reader."""
    out, err = interrupted_into_stdout(tmp_path, ca_env, fmt, jobs)
    assert err.startswith("Error: The batch was interrupted after ") and len(err.splitlines()) == 1, err
    assert "Rerun its other lines." in err and "remaining lines" not in err, err
    if fmt == "jsonl":
        names = [json.loads(line)["name"] for line in out.decode().splitlines()]
    else:
        import yaml

        names = [doc["metadata"]["name"] for doc in yaml.safe_load_all(out.decode()) if doc]
    received = {int(name[1:].split(".")[0]) + 3 for name in names}  # h0 is line 3
    assert len(received) == len(names) and 0 < len(names) < 300
    assert f"after {len(names):,} certificates were written to standard output" in err, err
    assert _lines_said(err) == received, (err, sorted(received))
    listed = json.loads(run_certkit("list", "--json", "--status", "valid", env=ca_env, check=True).stdout)
    assert listed["total"] == len(names)  # the inventory says the same: those written are valid


def _bar_lines(shown: str, label: str) -> list[str]:
    """Each drawing of the progress bar a terminal showed (escape sequences removed)."""
    import re

    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)
    return [part for line in plain.split("\n") for part in line.split("\r") if part.startswith(label)]


@pytest.mark.parametrize("cols", (40, 60, 100))
def test_progress_fits_the_terminal_when_standard_output_is_the_data(tmp_path, ca_env, ca_dir, cols):
    """4. The progress bar is drawn on standard error, but click fitted it to standard output's terminal, else to
    80 columns: with standard output the jsonl stream (``issue-batch --format jsonl | jq``) or a log (``renew
    --all | tee``), every drawing was 80 wide, and on a 40- or 60-column terminal each redraw wrapped onto a new
    line. It now fits standard error's terminal, n/total and the rate kept."""
    from fleet_helpers import run_in_pty

    manifest = tmp_path / "fleet.csv"
    manifest.write_text("kind,names,out\n" + "".join(f"server,h{n}.example,h{n}\n" for n in range(40)))
    env = {**ca_env, "CERTKIT_TEST_CHUNK_SIZE": "5"}
    for fmt, jobs in (("jsonl", "1"), ("k8s", "2")):
        code, shown, stdout = run_in_pty(["issue-batch", manifest, "--format", fmt, "--jobs", jobs], env=env,
                                         cols=cols, stdout_tty=False)
        assert code == 0, shown
        drawn = _bar_lines(shown, "Issuing")
        assert drawn and all(len(line.rstrip()) <= cols for line in drawn), (cols, drawn)
        assert drawn[-1].rstrip().endswith("/s") and "40/40" in drawn[-1], drawn
        assert "PRIVATE KEY" not in shown and "Issuing" not in stdout
        assert stdout.count('"key": ' if fmt == "jsonl" else "tls.key: ") == 40  # every record, nothing else
    run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "bundles", env=ca_env, check=True)
    code, shown, stdout = run_in_pty(["renew", "--all", "--kind", "server"], env=ca_env, cols=cols,
                                     stdout_tty=False, cwd=tmp_path)
    drawn = _bar_lines(shown, "Renewing")
    assert code == 0 and drawn, shown + stdout
    assert all(len(line.rstrip()) <= cols for line in drawn), (cols, [d for d in drawn if len(d.rstrip()) > cols])


def test_a_batch_summary_groups_its_numbers_as_the_progress_bar_does(tmp_path, ca_env, ca_dir):
    """5. The progress bar said "1,200/1,200 ... 3,589/s" and ``list`` "8 of 10,000 certificates", but the batch's
    summary "Issued 1200 certificates (1200 server) from fleet.csv in 0.84 s (3561/s)": now 1,200 and 3,561/s,
    in every format (--json keeps plain numbers)."""
    import re

    manifest = tmp_path / "fleet.csv"
    manifest.write_text("kind,names\n" + "".join(f"server,h{n}.example\n" for n in range(1200)))
    for fmt in ("jsonl", "tar", "folder"):
        out = ("--out", tmp_path / f"out.{fmt}") if fmt != "folder" else ("--out-dir", tmp_path / "bundles")
        done = run_certkit("issue-batch", manifest, "--format", fmt, *out, "--jobs", "2", env=ca_env, check=True)
        head = done.stdout.splitlines()[0]
        assert head.startswith("Issued 1,200 certificates (1,200 server) from "), head
        rate = re.fullmatch(r".* in [0-9.]+ s \(([0-9,]+)/s\)", head)
        assert rate and re.fullmatch(r"\d{1,3}(,\d{3})*", rate[1]), head
        data = json.loads(run_certkit("issue-batch", manifest, "--format", fmt, *out, "--force", "--json",
                                      env=ca_env, check=True).stdout)
        assert data["issued"] == 1200, data


@pytest.mark.parametrize("cols", (36, 40, 50, 60, 200))
def test_list_on_a_narrow_terminal_keeps_the_names(tmp_path, ca_env, ca_dir, cols):
    """6. On a 40-column terminal ``list`` fitted its lines by cutting the NAMES column to nothing: each row read
    "4EF9EE02…  server  valid   2027-06-23  …", no row saying which certificate it was. Where the names would get
    fewer than 6 columns, the NOT AFTER column now gives way to them; from about 45 columns on (50: see
    test_audit4_outputs), the table is as it was."""
    from fleet_helpers import run_in_pty

    manifest = tmp_path / "fleet.csv"
    manifest.write_text("kind,names\nserver,api.example.com\nserver,db.example.com\nclient,backup-job\n")
    run_certkit("issue-batch", manifest, "--format", "jsonl", "--out", tmp_path / "f.jsonl", env=ca_env, check=True)
    code, shown, _ = run_in_pty(["list"], env=ca_env, cols=cols)
    assert code == 0, shown
    lines = [line for line in shown.splitlines() if line.strip()]
    assert all(len(line) <= cols for line in lines), (cols, lines)
    header, rows = lines[0], lines[1:4]
    for name in ("api.example.com", "db.example.com", "backup-job"):  # (listed by serial, not in this order)
        assert sum(name[:5] in row for row in rows) == 1, (cols, lines)
    assert ("NOT AFTER" in header) == (cols >= 50), (cols, lines)
