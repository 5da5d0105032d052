"""Round fifteen, bad input (badinput): a generated matrix of every command and option against hostile values,
environments and files (a throwaway harness, described in the round's report); each test here is one class it found.

1. JSON nested deeper than Python's decoder recurses (a few thousand ``[``), in any JSON certkit reads (a
   manifest line, a file to inspect, certkit-ca.json, an inventory row, a bundle's journal), was a
   RecursionError traceback, or "Error: RecursionError: maximum recursion depth exceeded...".
2. Standard input ('-') named for two inputs of one command (a CSR and --passphrase-file, a manifest and
   --passphrase-file, verify's CERT and --ca-file): the first read it all and the second was blamed ("The file -
   holds an empty secret"), or a passphrase was read as a manifest line and echoed in the error.
3. A bundle.p12, or a private key in DER form, given where a certificate, a CSR or a PEM key is read: "neither a
   PEM file nor a DER certificate, CSR or CRL (it may be truncated...)", and for serve --key the lie "holds no
   private key"; now each says what the file is, and how to get the PEM file that was meant.
4. A secret variable holding a line break alone ($'\n' or $'\r\n'): check skipped the key check and exited 0 ("no
   passphrase was given"), the others blamed the passphrase or "several lines". It is set but empty, and said so.
5. An output place under /proc or /sys (writable by its mode, as root): every issuing command signed, failed to
   write and left an abandoned row; crl alone tried to make a file first, and said of a folder that is a file
   "does not exist". One pre-signing check (paths.check_can_write) now tries for all.
6. `trust status` (and `trust uninstall --every-certkit-ca`) with $CERTKIT_CA_DIR set but empty went on as if no
   CA were chosen; every other command refuses it.
7. serve --cert / probe --cert of a chain file written CA first: OpenSSL's "key values mismatch", or "the key is not
   the key of that certificate" though it is (of the second); now the order is named, with its fix.
8. Standard input larger than a file could be: "The CSR standard input is larger than 1 MiB".
9. A bundle folder given as the CA directory (--ca-dir, $CERTKIT_CA_DIR, --parent-ca-dir): "the inventory is
   missing; the CA directory is incomplete" (restore it from a backup?); it is named a bundle, as init-ca did.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit

DEEP = "[" * 30000 + "]" * 30000  # far past the decoder's recursion limit; under every size limit


def _certkit(args, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    """A real ``python -m certkit`` (a traceback is what a user would see), without a terminal."""
    return subprocess.run([sys.executable, "-m", "certkit", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def _tree(root: Path) -> dict[str, tuple]:
    """Every entry below ``root``: its type, mode and content digest (what "unchanged" is checked against)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else ""
            found[str(path.relative_to(root))] = (info.st_mode, digest)
    return found


def _one_error_line(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("Error: "), proc.stderr
    assert "Recursion" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert fragment in proc.stderr, proc.stderr


# --- 1. JSON nested too deeply ---------------------------------------------------------------------------------
def _deep_manifest(tmp_path: Path, ca_dir: Path) -> list:
    (tmp_path / "m.jsonl").write_text('{"kind": "server", "names": ' + DEEP + "}\n")
    return ["issue-batch", "m.jsonl", "--out-dir", "out"]


def _deep_file(tmp_path: Path, ca_dir: Path) -> list:
    (tmp_path / "deep.json").write_text('{"cert": ' + DEEP + "}\n")
    return ["inspect", "deep.json"]


def _deep_jwk(tmp_path: Path, ca_dir: Path) -> list:
    # a file certkit would write over is first asked whether it holds a key (a JSON Web Key, certbot's); holding no
    # certificate, it is no earlier output either, so --force does not replace it (round 27)
    (tmp_path / "out.jsonl").write_text('{"kty": ' + DEEP + "}\n")
    return ["issue-server", "deep.example", "--format", "jsonl", "--out", "out.jsonl", "--force"]


def _deep_config(tmp_path: Path, ca_dir: Path) -> list:
    (ca_dir / "certkit-ca.json").write_text('{"inventory": ' + DEEP + "}\n")
    return ["list"]


@pytest.mark.parametrize("make,said", [
    (_deep_manifest, "m.jsonl line 1: it is not valid JSON (its arrays and objects are nested too deeply to read)."),
    (_deep_file, "deep.json starts like JSON"),
    (_deep_jwk, "out.jsonl holds 60010 bytes and is no jsonl, k8s or tar output certkit wrote"),
    (_deep_config, "certkit-ca.json is not JSON (its arrays and objects are nested too deeply to read)"),
], ids=["manifest", "inspect", "output-file", "certkit-ca.json"])
def test_json_nested_too_deeply_is_one_error_line(tmp_path: Path, ca_dir: Path, ca_env: dict, make, said: str) -> None:
    """Each was a 20-line RecursionError traceback, or (issue-batch) "Error: RecursionError: maximum recursion
    depth exceeded while decoding a JSON array from a unicode string"; nothing is written either way."""
    args = make(tmp_path, ca_dir)
    before = _tree(tmp_path)
    proc = _certkit(args, ca_env, tmp_path)
    _one_error_line(proc, said)
    after = _tree(tmp_path)
    after.pop("ca/.certkit-bundles.lock", None)  # (the output file's writers' lock, made empty: no output here)
    assert after == before


@pytest.mark.parametrize("args", [["list"], ["list", "--name", "x*"], ["check"]], ids=["list", "list-name", "check"])
def test_an_inventory_row_nested_too_deeply_is_a_damaged_row(tmp_path: Path, ca_dir: Path, ca_env: dict, args) -> None:
    """An inventory row whose names column is JSON nested too deeply was a traceback in list and check; it is
    a damaged row as any other that is not a JSON list (a warning, check's ERROR line)."""
    run_certkit("issue-server", "row.example", "--out", tmp_path / "row", env=ca_env, check=True)
    with sqlite3.connect(ca_dir / "inventory.sqlite3") as db:
        db.execute("UPDATE certificates SET names = ?", (DEEP,))
    db.close()
    proc = _certkit(args, ca_env, tmp_path)
    assert "Traceback" not in proc.stderr and "Recursion" not in proc.stderr, proc.stderr
    assert "not a JSON list" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert proc.returncode == (1 if args == ["check"] else 0), proc.stderr


def test_a_journal_nested_too_deeply_is_removed_unread(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    """A dead writer's journal (``.certkit-swap.PID-X.certkit-tmp/COMMIT``, read up to 4 KiB) holding 2,000
    ``[`` made the next write into that folder a traceback; it is not a plan certkit wrote, so it is removed
    unread, as a journal that is not JSON is (tests/test_integrity_outputs.py)."""
    run_certkit("issue-server", "j.example", cwd=tmp_path, env=ca_env, check=True)
    journal = tmp_path / "j.example" / ".certkit-swap.4000000-abcdef0123456789.certkit-tmp"  # no such process
    journal.mkdir()
    (journal / "COMMIT").write_text("[" * 2000)
    proc = _certkit(["issue-server", "j.example", "--force"], ca_env, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not journal.exists()


def test_the_library_reads_json_nested_too_deeply_as_damage() -> None:
    """The one place (certkit.errors.loads_json): a ValueError, as any damaged JSON, never a RecursionError."""
    from certkit.errors import NestedTooDeeply, loads_json

    with pytest.raises(ValueError, match="nested too deeply") as caught:
        loads_json(DEEP)
    assert isinstance(caught.value, NestedTooDeeply)
    assert loads_json('{"a": [1]}') == {"a": [1]}
    with pytest.raises(json.JSONDecodeError):
        loads_json("{")


def test_no_module_reads_json_but_through_loads_json() -> None:
    """Every json.loads of certkit's goes through loads_json, but the ACME server's (its own catch, jws.UNREADABLE,
    answers a client's nesting with a problem document) and scratch files certkit itself wrote."""
    import certkit

    root = Path(certkit.__file__).parent
    allowed = {"errors.py", "acme/jws.py", "acme/jws_nested.py", "acme/state.py", "batch/checking.py"}
    found = [str(p.relative_to(root)) for p in root.rglob("*.py")
             if "json.loads(" in p.read_text() and str(p.relative_to(root)) not in allowed]
    assert found == [], found


# --- 2. standard input named twice -----------------------------------------------------------------------------
def _stdin_readers() -> list[tuple[str, ...]]:
    """Every command line that names standard input ('-') for two of one command's inputs, found from the commands'
    own parameters (a new option that reads '-' is covered when it is added)."""
    import itertools

    import click

    from certkit.cli import main
    from certkit.cli.arguments import _reads_stdin

    ctx, found = click.Context(main), []

    def walk(command: click.Command, path: list[str]) -> None:
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), [*path, name])
            return
        readers = [p for p in command.params if _reads_stdin(p)]
        for one, two in itertools.combinations(readers, 2):
            args = [*path]
            for param in sorted((one, two), key=lambda p: not isinstance(p, click.Argument)):  # arguments first
                args += ["-"] if isinstance(param, click.Argument) else [param.opts[0], "-"]
            found.append(tuple(args))

    walk(main, [])
    return found


STDIN_TWICE = _stdin_readers()


def test_every_command_reading_two_files_is_in_the_matrix() -> None:
    commands = {args[0] for args in STDIN_TWICE}
    assert {"sign-csr", "issue-batch", "verify", "issue-server", "issue-client", "issue-peer", "renew", "init-ca"} <= \
        commands, commands


@pytest.mark.parametrize("args", STDIN_TWICE, ids=[" ".join(a) for a in STDIN_TWICE])
def test_standard_input_given_to_two_inputs_is_refused(tmp_path: Path, ca_dir: Path, ca_env: dict, args) -> None:
    """`sign-csr - --passphrase-file -` said "The file - holds an empty secret." (the CSR had read it all), and
    `verify - --ca-file -` "standard input is empty.": the second reader was blamed for what the first took."""
    before = _tree(tmp_path)
    proc = run_certkit(*args, cwd=tmp_path, env=ca_env, input="")
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stderr.splitlines()[-1].endswith("name standard input ('-'), which can be read once; give all but one "
                                                  "of them a file."), proc.stderr
    assert _tree(tmp_path) == before


def test_a_passphrase_on_standard_input_is_not_read_as_a_manifest_line(tmp_path: Path, ca_dir: Path,
                                                                        ca_env: dict) -> None:
    """`issue-batch - --passphrase-file -` with the passphrase then the manifest on standard input echoed the
    passphrase in its error: "standard input line 1: the header must name the columns ... (found: <passphrase>)"."""
    env = {k: v for k, v in ca_env.items() if k != "CERTKIT_CA_PASSPHRASE"}
    proc = subprocess.run([sys.executable, "-m", "certkit", "issue-batch", "-", "--out-dir", "out", "--passphrase-file",
                        "-"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
                       input=PASSPHRASE + "\nkind,names\nserver,a.example\n")
    assert proc.returncode == 2, proc.stderr
    assert PASSPHRASE not in proc.stderr + proc.stdout, proc.stderr
    assert "MANIFEST and --passphrase-file both name standard input" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_an_empty_secret_on_standard_input_is_said_to_be_there(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    """"The file - holds an empty secret." named a file called '-'; it was standard input."""
    run_certkit("issue-client", "sia", "--out", tmp_path / "sia", env=ca_env, check=True)
    proc = run_certkit("export-p12", tmp_path / "sia", "--password-file", "-", env=ca_env, input="")
    assert_clean_error(proc, "Standard input holds an empty secret.")
    assert not (tmp_path / "sia" / "bundle.p12").exists()


# --- 3. a file of a kind certkit can name, given where another is read -----------------------------------------
P12_PASSWORD = "pw-of-the-bundle"


@pytest.fixture
def wrong_kinds(tmp_path: Path, ca_dir: Path, ca_env: dict) -> dict[str, Path]:
    """A server bundle and its bundle.p12, and its key in DER (plain and encrypted, as openssl writes them)."""
    env = dict(ca_env, CERTKIT_P12_PASSWORD=P12_PASSWORD)
    run_certkit("issue-server", "localhost", "--out", tmp_path / "kim", "--p12", env=env, check=True)
    key = tmp_path / "kim" / "privkey.pem"
    files = {"p12": tmp_path / "kim" / "bundle.p12", "der-key": tmp_path / "key.der",
             "der-key-encrypted": tmp_path / "key-enc.der", "bundle": tmp_path / "kim"}
    subprocess.run(["openssl", "pkey", "-in", key, "-outform", "DER", "-out", files["der-key"]], check=True)
    subprocess.run(["openssl", "pkcs8", "-topk8", "-in", key, "-outform", "DER", "-v2", "aes-256-cbc", "-passout",
                    "pass:xyz", "-out", files["der-key-encrypted"]], check=True)
    return files


_ROLES = {  # the command line, F the file of the wrong kind, B the bundle folder
    "inspect": ["inspect", "F"],
    "verify": ["verify", "F", "--purpose", "server"],
    "verify --ca-file": ["verify", "B/cert.pem", "--purpose", "server", "--ca-file", "F"],
    "verify --untrusted": ["verify", "B/cert.pem", "--purpose", "server", "--untrusted", "F"],
    "sign-csr": ["sign-csr", "F", "--server", "--out", "signed"],
    "serve --client-ca": ["serve", "--port", "0", "--client-ca", "F"],
    "serve --key": ["serve", "--port", "0", "--cert", "B/cert.pem", "--key", "F"],
    "serve --cert": ["serve", "--port", "0", "--cert", "F", "--key", "B/privkey.pem"],
    "probe --cert": ["probe", "https://127.0.0.1:9", "--cert", "F", "--key", "B/privkey.pem"],
}
_SAID = {"p12": "is a PKCS#12 bundle (a .p12 or .pfx file: certificates and a key, encrypted)",
         "der-key": "private key", "der-key-encrypted": "private key"}


@pytest.mark.parametrize(("role", "kind"), [(role, kind) for role in sorted(_ROLES) for kind in sorted(_SAID)
                                           if (role, kind) != ("serve --key", "der-key")])  # read since round 28
def test_a_file_of_a_kind_certkit_can_name_is_named(tmp_path: Path, ca_env: dict, wrong_kinds: dict, role: str,
                                                    kind: str) -> None:
    """A bundle.p12, or a private key in DER form, given where a certificate, a CSR or a PEM key is read was "is
    neither a PEM file nor a DER certificate, CSR or CRL (it may be truncated or not a certificate at all)",
    "is not a certificate signing request in PEM or DER form (it may be truncated...)", or, given to serve --key,
    the lie "key.der holds no private key". Each now says what the file is."""
    args = [str(wrong_kinds[kind]) if a == "F" else a.replace("B", str(wrong_kinds["bundle"]), 1) if a.startswith("B/")
            else a for a in _ROLES[role]]
    before = _tree(tmp_path)
    proc = _certkit(args, ca_env, tmp_path)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("Error: "), proc.stderr
    assert "truncated" not in proc.stderr and "holds no private key" not in proc.stderr, proc.stderr
    if role == "serve --key" and kind == "der-key-encrypted":  # as the same key in PEM, since round 28
        assert "is encrypted; give an unencrypted key (mode 0600)" in proc.stderr, proc.stderr
    else:
        assert _SAID[kind] in proc.stderr, proc.stderr
    assert _tree(tmp_path) == before


def _advice(stderr: str) -> list[str]:
    """The openssl command line an error message advises, as arguments."""
    import re
    import shlex

    found = re.search(r"\((openssl [^)]+)\)|'(openssl [^']+)'", stderr)
    assert found, stderr
    return shlex.split(found.group(1) or found.group(2))


@pytest.mark.parametrize("role", ["serve --cert", "serve --key"])
def test_the_openssl_command_a_p12_message_advises_gives_what_serve_takes(tmp_path: Path, ca_env: dict,
                                                                          wrong_kinds: dict, role: str) -> None:
    """The advice for a bundle.p12 given as serve's --cert or --key is an openssl command that, run (with the
    bundle's password), writes the PEM file serve then reads: checked with the openssl binary and serve itself."""
    args = [str(wrong_kinds["p12"]) if a == "F" else a.replace("B", str(wrong_kinds["bundle"]), 1) if a.startswith("B/")
            else a for a in _ROLES[role]]
    proc = _certkit(args, ca_env, tmp_path)
    advice = _advice(proc.stderr)
    subprocess.run([*advice, "-passin", f"pass:{P12_PASSWORD}"], cwd=tmp_path, check=True, capture_output=True)
    made = tmp_path / advice[advice.index("-out") + 1]
    assert made.read_bytes().count(b"-----BEGIN ") >= 1
    fixed = [str(made) if a == str(wrong_kinds["p12"]) else a for a in args]
    said = []
    with subprocess.Popen([sys.executable, "-m", "certkit", *fixed], cwd=tmp_path, env=ca_env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as server:
        try:
            for line in server.stderr:  # "... listening on https://..." once it took the files; or it ends
                said.append(line)
                if "listening on https://" in line:
                    break
        finally:
            server.terminate()
            server.communicate(timeout=60)
    assert "listening on https://" in said[-1], said


# --- 4. a secret variable holding a line break alone -----------------------------------------------------------
_SECRET_USES = {  # variable -> command lines that read it (B: a client bundle with a bundle.p12)
    "CERTKIT_CA_PASSPHRASE": [["check"], ["crl", "--out", "crl.pem"], ["issue-server", "nl.example", "--out", "nl"],
                              ["renew", "B", "--out", "again"]],
    "CERTKIT_P12_PASSWORD": [["issue-client", "nl", "--p12", "--out", "nl"], ["export-p12", "B", "--force"],
                             ["renew", "B", "--out", "again"]],
    "CERTKIT_PARENT_CA_PASSPHRASE": [["init-ca", "--name", "Issuing", "--no-passphrase", "--ca-dir", "issuing",
                                      "--parent-ca-dir", "CA"]],
}
_SECRET_CASES = [(var, args) for var, uses in _SECRET_USES.items() for args in uses]


@pytest.mark.parametrize("value", ["\n", "\r\n"], ids=["LF", "CRLF"])
@pytest.mark.parametrize("variable,args", _SECRET_CASES, ids=[f"{v}-{a[0]}" for v, a in _SECRET_CASES])
def test_a_secret_variable_of_a_line_break_alone_is_empty(tmp_path: Path, ca_dir: Path, ca_env: dict, variable: str,
                                                          args, value: str) -> None:
    """A secret variable is read less one trailing newline, as a file is; one that held nothing else was then an
    empty secret taken for none: `check` said "the key is encrypted and no passphrase was given: not checked" and
    exited 0, issue-server "the passphrase given is empty. Set $CERTKIT_CA_PASSPHRASE" (it was set), --p12 "holds a
    secret of several lines". Each is now refused as the variable set but empty is."""
    env = dict(ca_env, CERTKIT_P12_PASSWORD=P12_PASSWORD)
    run_certkit("issue-client", "lb", "--p12", "--out", tmp_path / "lb", env=env, check=True)
    env[variable] = value
    if variable == "CERTKIT_PARENT_CA_PASSPHRASE":
        env.pop("CERTKIT_CA_PASSPHRASE")
    args = [str(tmp_path / "lb") if a == "B" else str(ca_dir) if a == "CA" else a for a in args]
    before = _tree(tmp_path)
    proc = _certkit(args, env, tmp_path)
    _one_error_line(proc, f"${variable} holds a line break alone: it is set, but to an empty secret.")
    assert _tree(tmp_path) == before


# --- 5. an output place where no file can be made, though its mode says one can ------------------------------
def _rows(ca_dir: Path) -> list:
    with sqlite3.connect(ca_dir / "inventory.sqlite3") as db:
        rows = db.execute("SELECT * FROM certificates ORDER BY serial").fetchall()
    db.close()
    return rows


_UNMAKEABLE = {  # command lines writing to X, a place under /proc or /sys
    "issue-server": ["issue-server", "p.example", "--out", "X"],
    "issue-server --format tar": ["issue-server", "p.example", "--format", "tar", "--out", "X"],
    "issue-client": ["issue-client", "pat", "--out", "X"],
    "issue-batch": ["issue-batch", "m.csv", "--out-dir", "X"],
    "issue-batch --format jsonl": ["issue-batch", "m.csv", "--format", "jsonl", "--out", "X"],
    "sign-csr": ["sign-csr", "r.csr", "--server", "--out", "X"],
    "renew --out": ["renew", "B", "--out", "X"],
    "crl": ["crl", "--out", "X"],
    "init-ca": ["init-ca", "--name", "P", "--no-passphrase", "--ca-dir", "X"],
}


@pytest.mark.parametrize("place", ["/proc/certkit-nope/x", "/sys/kernel/certkit-x"])
@pytest.mark.parametrize("role", sorted(_UNMAKEABLE))
def test_an_output_where_no_file_can_be_made_is_refused_before_signing(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                                       role: str, place: str) -> None:
    """As root, /proc and /sys look writable (their modes, access()), so issue-*, sign-csr, issue-batch and renew
    --out signed a certificate, then failed to write it ("Cannot write the bundle in /proc/nope/x: No such file or
    directory") and left an abandoned row in the inventory. Only crl tried to make a file first; now the one
    pre-signing check of every output place does, and the inventory is unchanged."""
    run_certkit("issue-server", "b.example", "--out", tmp_path / "b", env=ca_env, check=True)
    (tmp_path / "m.csv").write_text("kind,names\nserver,m.example\n")
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc",
                    "-keyout", tmp_path / "r.key", "-subj", "/CN=r.example", "-out", tmp_path / "r.csr"],
                   check=True, capture_output=True)
    args = [place if a == "X" else str(tmp_path / "b") if a == "B" else a for a in _UNMAKEABLE[role]]
    rows, before = _rows(ca_dir), _tree(tmp_path)
    proc = _certkit(args, ca_env, tmp_path)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("Error: "), proc.stderr
    assert place.split("/x")[0].rsplit("/", 1)[0] in proc.stderr, proc.stderr  # the place is named
    assert _rows(ca_dir) == rows
    assert _tree(tmp_path) == before


def test_a_crl_under_a_file_is_said_to_be_under_a_file(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    """crl --out key.pem/crl.pem said "the folder key.pem does not exist": it exists, as a file."""
    (tmp_path / "notes").write_text("a file\n")
    proc = _certkit(["crl", "--out", "notes/crl.pem"], ca_env, tmp_path)
    _one_error_line(proc, "is a file, not a folder, so the CRL file notes/crl.pem cannot be written.")
    assert "does not exist" not in proc.stderr


# --- 6. trust status with $CERTKIT_CA_DIR set but empty ---------------------------------------------------------
@pytest.mark.parametrize("args", [["trust", "status", "--nss"], ["trust", "uninstall", "--nss", "--every-certkit-ca"]],
                         ids=["status", "uninstall-every"])
def test_trust_refuses_a_ca_dir_variable_set_but_empty(tmp_path: Path, args) -> None:
    """Every command refuses $CERTKIT_CA_DIR set but empty (docs/ca-directory.md), `trust status` given a blank one
    too; given an empty one, it said "No CA directory here: showing every certkit CA the stores trust." and exited
    0, as without the variable: the error was swallowed with "no CA". (A private HOME: only its NSS database.)"""
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR="")
    proc = _certkit(args, env, tmp_path)
    _one_error_line(proc, "$CERTKIT_CA_DIR is set but empty (an unset variable?)")
    assert proc.stdout == ""


# --- 7. a certificate file with its CA first, or a key of another certificate ---------------------------------
@pytest.mark.parametrize("command", ["serve", "probe"])
def test_a_chain_file_written_ca_first_is_said_so(tmp_path: Path, ca_dir: Path, ca_env: dict, command: str) -> None:
    """`serve --cert` / `probe --cert` of a file holding the CA then the leaf (cat ca.pem cert.pem), with the leaf's
    key, said OpenSSL's "key values mismatch" (serve) or "privkey.pem is not the key of that certificate" (probe),
    which it is: OpenSSL compares the key with the first certificate. It now says which certificate of the file is
    the key's and that it goes first; a key of no certificate there keeps the plain words, in serve too."""
    kind = "issue-server" if command == "serve" else "issue-client"
    run_certkit(kind, "leaf.example" if command == "serve" else "leaf", "--out", tmp_path / "b", env=ca_env, check=True)
    run_certkit("issue-server", "other.example", "--out", tmp_path / "o", env=ca_env, check=True)
    leaf = (tmp_path / "b" / "cert.pem").read_bytes()
    (tmp_path / "ca-first.pem").write_bytes((ca_dir / "ca.pem").read_bytes() + leaf)
    head = ["serve", "--port", "0"] if command == "serve" else ["probe", "https://127.0.0.1:9"]
    proc = _certkit([*head, "--cert", "ca-first.pem", "--key", tmp_path / "b" / "privkey.pem"], ca_env, tmp_path)
    _one_error_line(proc, "ca-first.pem starts with CN=certkit test root, not with the certificate of this key (CN=")
    assert "number 2 in the file" in proc.stderr and "put that one first" in proc.stderr, proc.stderr
    other = _certkit([*head, "--cert", tmp_path / "b" / "cert.pem", "--key", tmp_path / "o" / "privkey.pem"], ca_env,
                     tmp_path)
    _one_error_line(other, f"{tmp_path / 'o' / 'privkey.pem'} is not the key of that certificate (OpenSSL: key values "
                           "mismatch).")


# --- 8. standard input too large, said of standard input -------------------------------------------------------
@pytest.mark.parametrize("args,said", [
    (["inspect", "-"], "The file on standard input is larger than 1 MiB"),
    (["verify", "-", "--purpose", "server"], "The file on standard input is larger than 1 MiB"),
    (["sign-csr", "-", "--server", "--out", "s"], "The CSR on standard input is larger than 1 MiB"),
    (["issue-server", "s.example", "--out", "s", "--passphrase-file", "-"],
     "The secret file on standard input is larger than 4 KiB"),
], ids=["inspect", "verify", "sign-csr", "passphrase-file"])
def test_standard_input_too_large_is_said_of_standard_input(tmp_path: Path, ca_dir: Path, ca_env: dict, args,
                                                            said: str) -> None:
    """"The CSR standard input is larger than 1 MiB", "The secret file standard input is larger...": the name of
    the stream was put where a file's name goes; the manifest already said "The manifest on standard input"."""
    proc = subprocess.run([sys.executable, "-m", "certkit", *args], cwd=tmp_path, env=ca_env, capture_output=True,
                          timeout=120, input=b"0" * (2 << 20))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.decode() == f"Error: {said}; " + proc.stderr.decode().split("; ", 1)[1], proc.stderr
    assert proc.stderr.count(b"\n") == 1
    assert not (tmp_path / "s").exists()


# --- 9. a bundle folder given as the CA directory --------------------------------------------------------------
_WITH_A_CA = {  # every command that opens a CA directory, given a bundle folder as it (B)
    "list": ["list", "--ca-dir", "B"],
    "issue-server": ["issue-server", "n.example", "--out", "n", "--ca-dir", "B"],
    "issue-client": ["issue-client", "n", "--out", "n", "--ca-dir", "B"],
    "issue-peer": ["issue-peer", "n.example", "--out", "n", "--ca-dir", "B"],
    "issue-batch": ["issue-batch", "m.csv", "--out-dir", "n", "--ca-dir", "B"],
    "sign-csr": ["sign-csr", "r.csr", "--server", "--out", "n", "--ca-dir", "B"],
    "crl": ["crl", "--out", "n.pem", "--ca-dir", "B"],
    "revoke": ["revoke", "B", "--ca-dir", "B"],
    "renew": ["renew", "B", "--out", "n", "--ca-dir", "B"],
    "serve": ["serve", "--port", "0", "--ca-dir", "B"],
    "inventory migrate": ["inventory", "migrate", "--to", "postgresql://certkit@127.0.0.1:9/ca", "--ca-dir", "B"],
    "init-ca --parent-ca-dir": ["init-ca", "--name", "I", "--no-passphrase", "--ca-dir", "n", "--parent-ca-dir", "B"],
}


@pytest.mark.parametrize("role", sorted(_WITH_A_CA))
def test_a_bundle_folder_given_as_the_ca_directory_is_named_a_bundle(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                                     role: str) -> None:
    """`--ca-dir ./web` (a bundle folder: cert.pem, privkey.pem and the ca.pem of its CA), or $CERTKIT_CA_DIR set
    to one, said "The inventory web/inventory.sqlite3 is missing; the CA directory is incomplete.": a CA to
    restore from a backup, where there is none. It is said to be a bundle, as init-ca --ca-dir already said."""
    run_certkit("issue-server", "web.example", "--out", tmp_path / "web", env=ca_env, check=True)
    (tmp_path / "m.csv").write_text("kind,names\nserver,m.example\n")
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-noenc",
                    "-keyout", tmp_path / "r.key", "-subj", "/CN=r.example", "-out", tmp_path / "r.csr"],
                   check=True, capture_output=True)
    args = [str(tmp_path / "web") if a == "B" else a for a in _WITH_A_CA[role]]
    rows, before = _rows(ca_dir), _tree(tmp_path)
    proc = _certkit(args, ca_env, tmp_path)
    _one_error_line(proc, f"{tmp_path / 'web'} is a certificate bundle (it holds cert.pem and the ca.pem of the CA "
                          "that issued it), not a CA directory")
    assert "incomplete" not in proc.stderr
    assert _rows(ca_dir) == rows and _tree(tmp_path) == before
