"""issue-batch's words: bad manifest lines numbered as the file numbers them and refused for the
right reason (an unclosed quote is one), a manifest on standard input called that, and the
summary's counts in the singular when there is one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit

RUNS_ON = "a quoted field runs on past the end of the line (an unclosed quote?)."


def refusal(proc) -> list[tuple[int, str]]:
    """The ``(line, reason)`` pairs of a refused batch, from its one error (``Error:`` or JSON)."""
    message = json.loads(proc.stdout)["error"] if "--json" in proc.args else proc.stderr
    return [(int(n), reason) for n, reason in re.findall(r"line (\d+): (.*?)(?: Nothing was issued\.)?$", message,
                                                         re.M)]


def refused(tmp_path: Path, ca_env: dict, body: str, *args: str) -> list[tuple[int, str]]:
    manifest = tmp_path / "m.txt"
    manifest.write_bytes(body.encode())
    proc = run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "out", *args, env=ca_env)
    assert_clean_error(proc, "line ")
    assert not (tmp_path / "out").exists()
    return refusal(proc)


@pytest.mark.parametrize(("body", "expected"), [
    # The auditor's manifest: line 3's quote is never closed; lines 4 and 5 are good lines.
    ('kind,names\nserver,a.example.com\nclient,"Bob Smith\nserver,b.example.com\nserver,c.example.com\n',
     [(3, RUNS_ON)]),
    # A quoted field over two lines is numbered by the line it starts on; its second line is read as a line.
    ('kind,names\nserver,a.example.com\nclient,"Bob\nSmith"\nserver,c.example.com\n',
     [(3, RUNS_ON), (4, "kind is 'Smith\"'; it must be one of: server, client, peer.")]),
    # The last line, with no line break to end it.
    ('kind,names\nserver,a.example.com\nclient,"Bob Smith', [(3, RUNS_ON)]),
    # The header: nothing after it can be read.
    ('kind,"names\nserver,a.example.com\nserver,b.example.com\n', [(1, RUNS_ON)]),
    # Comments, blank lines and CRLF line ends count as lines; a quote closed later closes nothing.
    ('# fleet\r\n\r\nkind,names,out\r\nserver,"a.example.com\r\n# a comment\r\nserver,b.example.com,"b"\r\n'
     'server,*.com\r\nclient,"Carol,\r\n',
     [(4, RUNS_ON), (7, "'*.com' is not allowed: a wildcard directly over the top-level label 'com' would match "
                        "every host under it."), (8, RUNS_ON)]),
])
def test_csv_lines_are_numbered_as_the_file_numbers_them(tmp_path: Path, ca_env: dict, body: str,
                                                         expected: list) -> None:
    run_certkit("init-ca", env=ca_env, check=True)
    assert refused(tmp_path, ca_env, body) == expected
    assert refused(tmp_path, ca_env, body, "--json") == expected


def test_json_lines_are_numbered_as_the_file_numbers_them(tmp_path: Path, ca_env: dict) -> None:
    run_certkit("init-ca", env=ca_env, check=True)
    good = json.dumps({"kind": "server", "names": "a.example.com"})
    body = (f"# devices\n\n{good}\r\n\n" + json.dumps({"kind": "server", "names": "*.com"}) + "\n# done?\n"
            + '{"kind": "client", "names": "Bob\n Smith"}\n' + json.dumps({"kind": "client", "names": "Dave"}) + "\r"
            + json.dumps({"kind": "printer", "names": "p"}) + "\n")
    assert [line for line, _ in refused(tmp_path, ca_env, body)] == [5, 7, 8, 10]


@pytest.mark.parametrize("as_json", [False, True])
def test_standard_input_is_called_that(tmp_path: Path, ca_env: dict, as_json: bool) -> None:
    run_certkit("init-ca", env=ca_env, check=True)
    flags = ["--json"] if as_json else []

    def message(body: str, *args: str) -> str:
        proc = run_certkit("issue-batch", "-", "--out-dir", tmp_path / "out", *flags, *args, input=body, env=ca_env)
        assert_clean_error(proc, "standard input")
        text = json.loads(proc.stdout)["error"] if as_json else proc.stderr.removeprefix("Error: ").rstrip("\n")
        assert "certkit-manifest-" not in text and "/tmp" not in text, text
        return text

    assert message("kind,names\nserver,*.com\n").startswith("standard input line 2: '*.com' is not allowed")
    assert message('kind,names\nserver,a.example.com\nclient,"Bob\n').startswith(f"standard input line 3: {RUNS_ON}")
    assert message("kind,names\nserver,*.com\nserver,*.org\n").startswith(
        "standard input has 2 bad lines; nothing was issued.\n  line 2: ")
    assert message("kind,names\n") == "The manifest on standard input lists no certificates."
    assert message("kind,names\nserver,a.example.com\n" + "x" * 70_000 + "\n").startswith(
        "Line 3 of the manifest on standard input is longer than 64 KiB")
    # Checked by two processes (a manifest of more than 32 KiB): the same words.
    many = "kind,names\n" + "".join(f"server,host-{i:05d}.a-long-subdomain.example.com\n" for i in range(800))
    assert message(many + "server,*.com\n", "--jobs", "2").startswith("standard input line 802: '*.com'")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt", ["folder", "jsonl", "k8s", "tar"])
def test_summary_counts_agree_with_their_nouns(tmp_path: Path, fmt: str) -> None:
    # A CA that expires in 30 days: every default lifetime is capped at its expiry.
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--days", "30", env=env, check=True)
    for n, noun, were in ((1, "certificate", "lifetime was"), (2, "certificates", "lifetimes were")):
        body = "kind,names\n" + "".join(f"server,n{n}-{i}.example.com\n" for i in range(n))
        where = ["--out-dir", tmp_path / f"out{n}"] if fmt == "folder" else ["--out", tmp_path / f"out{n}.{fmt}"]
        proc = run_certkit("issue-batch", "-", "--format", fmt, *where, input=body, env=env, check=True)
        lines = proc.stdout.splitlines()
        assert lines[0].startswith(f"Issued {n} {noun} ({n} server) from standard input in "), proc.stdout
        assert f"  note       {n} {were} capped at the CA's expiry" in lines, proc.stdout
        if fmt != "folder":
            keys = "key" if n == 1 else "keys"
            assert lines[1].endswith(f"(mode 0600: it holds the private {keys})"), proc.stdout
        if fmt == "folder":  # and kept again with --resume
            again = run_certkit("issue-batch", "-", *where, "--resume", input=body, env=env, check=True)
            assert f"  kept       {n} {'bundle' if n == 1 else 'bundles'} already complete (--resume)" in \
                again.stdout.splitlines(), again.stdout
            assert again.stdout.startswith("Issued 0 certificates (none) from standard input"), again.stdout
    # Into standard output, the summary goes to standard error: the same words.
    proc = run_certkit("issue-batch", "-", "--format", "jsonl", input="kind,names\nserver,one.example.com\n", env=env,
                       check=True)
    assert proc.stderr.startswith("Issued 1 certificate (1 server) from standard input in "), proc.stderr


# --- interrupted: said, and with --json as the error's one object -------------------------------
STOPS = {"SIGINT": 130, "SIGHUP": 129, "SIGTERM": 143}


@pytest.mark.parametrize("signame", list(STOPS))
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_interrupted_while_checking_says_nothing_was_written(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                             signame: str, as_json: bool) -> None:
    import signal

    from integrity_helpers import interrupt, start_paused

    (tmp_path / "m.csv").write_text("kind,names\nserver,a.example\nclient,bob\n")
    args = ["issue-batch", "m.csv", "--out-dir", "out", *(["--json"] if as_json else [])]
    proc = start_paused(args, ca_env, tmp_path, "checking", tmp_path / "paused")
    outcome = interrupt(proc, getattr(signal, signame), tmp_path / "paused")
    assert outcome.returncode == STOPS[signame] and "Traceback" not in outcome.stderr, outcome.stderr
    if as_json:
        assert json.loads(outcome.stdout) == {"error": "Interrupted: no bundle was written.",
                                              "exit": STOPS[signame], "written": 0}
    else:
        assert outcome.stdout == "" and outcome.stderr.strip() == "Interrupted: no bundle was written."
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("signame", list(STOPS))
def test_interrupted_issuing_with_json_prints_the_account_as_json(tmp_path: Path, signame: str) -> None:
    import signal

    from integrity_helpers import interrupt, start_paused

    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      CERTKIT_TEST_CHUNK_SIZE="2")
    run_certkit("init-ca", "--name", "Stop CA", env=env, check=True)
    (tmp_path / "m.csv").write_text("kind,names\n" + "".join(f"server,h{i}.example\n" for i in range(6)))
    proc = start_paused(["issue-batch", "m.csv", "--out-dir", "out", "--jobs", "1", "--json"], env, tmp_path,
                        "recorded", tmp_path / "paused")
    outcome = interrupt(proc, getattr(signal, signame), tmp_path / "paused")
    assert outcome.returncode == STOPS[signame], outcome.stderr
    data = json.loads(outcome.stdout)
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert data["exit"] == STOPS[signame] and data["issued"] == len(written) == 2 and data["kept"] == 0, data
    assert "2 bundles were written and recorded" in data["error"] and "--resume" in data["error"]


def test_resume_says_why_a_folder_is_not_kept(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    """--resume refuses a folder whose bundle was issued for other names, and says so: not 'pass
    --resume' to someone who did, and only --force is offered."""
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names,uri\nclient,dev1,spiffe://ex/dev1\nserver,a.example.com,\n")
    run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "d", env=ca_env, check=True)
    manifest.write_text("kind,names,uri\nclient,dev1,spiffe://ex/OTHER\nserver,a.example.com,\n")
    proc = run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "d", "--resume", env=ca_env)
    assert_clean_error(proc, "holds a bundle that --resume does not keep: its certificate is a client certificate "
                             "for URI:spiffe://ex/dev1; the line asks for a client certificate for "
                             "URI:spiffe://ex/OTHER; pass --force to replace it.")
    assert "--resume to keep" not in proc.stderr


@pytest.mark.parametrize(("body", "expected"), [
    # json.loads keeps the last of two values: this line would have been issued as a client
    ('{"kind": "server", "names": "d2.example.com", "kind": "client"}\n',
     [(1, "the key 'kind' is given twice; give each key once.")]),
    ('{"kind": "server", "names": "a.example.com", "days": 30, "names": "b.example.com"}\n',
     [(1, "the key 'names' is given twice; give each key once.")]),
    # int() reads other scripts' digits: Arabic-Indic 30, fullwidth 30, Devanagari 90
    ("kind,names,days\nserver,e3.example.com,\u0663\u0660\nserver,e4.example.com,\uff13\uff10\n"
     "server,e5.example.com,\u0969\u0966\n",
     [(2, "days is '\u0663\u0660'; it must be a whole number in the digits 0 to 9."),
      (3, "days is '\uff13\uff10'; it must be a whole number in the digits 0 to 9."),
      (4, "days is '\u0969\u0966'; it must be a whole number in the digits 0 to 9.")]),
])
def test_a_line_that_says_two_things_is_refused(tmp_path: Path, ca_env: dict, body: str, expected: list) -> None:
    run_certkit("init-ca", env=ca_env, check=True)
    assert refused(tmp_path, ca_env, body) == expected


@pytest.mark.parametrize("args", [["issue-server", "x.example.com", "--days"], ["renew", "--expiring"],
                                  ["list", "--limit"], ["crl", "--days"], ["issue-batch", "m.csv", "--jobs"],
                                  ["serve", "--port"]])
@pytest.mark.parametrize("digits", ["\u0663\u0660", "\uff13\uff10"])
def test_options_take_ascii_digits_only(tmp_path: Path, ca_env: dict, args: list, digits: str) -> None:
    value = digits + ("d" if args[-1] == "--expiring" else "")
    proc = run_certkit(*args, value, cwd=tmp_path, env=ca_env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"Error: Invalid value for '{args[-1]}': '{value}' is not a" in proc.stderr
    assert "Traceback" not in proc.stderr
