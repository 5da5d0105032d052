"""Round twenty-six, bad input (badinput): every command and option that reads or writes a file, against a matrix
of hostile paths and values (a throwaway harness, described in the round's report); each test here is one class
it found.

1. A named pipe (FIFO) that no program writes to, given where a file is read (inspect, verify CERT / --ca-file /
   --untrusted, sign-csr, issue-batch's manifest, a passphrase or password file, serve --cert/--key/--client-ca,
   probe --ca-file/--cert/--key): certkit hung in open() for ever. It is refused at once, by name; a pipe a
   program writes to (``<(...)``, /dev/fd/N, a FIFO its writer holds open) is read as before.
2. `check --passphrase-file <(pass show ca)`: "holds an empty secret", the key check failed: check read the file
   ahead for a hint (in case the passphrase were wrong), emptying the pipe the passphrase was then read from.
3. An output path under a device (``--out /dev/null/x``, ``--out-dir /dev/null``, ``--unit-dir``, a CA
   directory): "The folder /dev/null, above the output folder /dev/null/x, is writable by every user (mode 0666,
   no sticky bit) ... choose a folder of your own": a device is no folder. The check of the folders above now
   passes over what is no folder, and the path is refused as under a file is: "/dev/null is not a folder, so
   the output folder ... cannot be written".
4. A domain with a leading dot whose rest is no domain either (init-ca --permit-dns, acme serve --allow-domain,
   CA.create(permitted_dns=...)): '.*.example.com', '.10.0.0.0/8', '.1.2.3.4', '../x' were each told "so give
   '*.example.com' (or '10.0.0.0/8', '1.2.3.4', '/x') without it", a value that is refused in turn (a wildcard,
   an IP range that has its own option, no name). The form to give is offered only when it is one; else the
   rest is said for what it is.
5. A PKCS#11 module path naming a FIFO, /dev/null or /dev/zero (or a link to one): init-ca --pkcs11-module (or a
   key URI's module-path) said "The PKCS#11 module /dev/null does not exist.", of a file that is there. It is
   said as it is: "is a device or other special file, not a file", as the CA directory's own files are.
6. verify --ca-dir of a CA directory whose inventory.sqlite3 is a FIFO or a folder: "revocation could not be
   checked ...: The inventory .../inventory.sqlite3 is missing; the CA directory is incomplete" (restore what?);
   every other command names what stands there ("is a device or other special file, not a file; the CA directory
   is damaged"; round 28 made the CA directory's words those of every file).
7. demo --keep LINK (a link to nothing, or to an empty folder): "LINK already exists and is not an empty folder",
   where every other command that writes says "... is a symbolic link; certkit does not write through links".
8. probe --bundle of a folder whose fullchain.pem or privkey.pem is a FIFO or a folder: "is not a bundle folder:
   privkey.pem is missing", of a file that is there; it is named as what it is, as verify and inspect name it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE, certkit_env, run_certkit


def _certkit(args, env: dict, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    """A real ``python -m certkit`` (a hang is a timeout here, not a stuck test run), without a terminal."""
    return subprocess.run([sys.executable, "-m", "certkit", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, **kwargs)


def run_env(tmp_path: Path) -> dict:
    return certkit_env(HOME=str(tmp_path))


def _one_error_line(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("Error: "), proc.stderr
    assert fragment in proc.stderr, proc.stderr


@pytest.fixture
def issued(tmp_path: Path, ca_dir: Path, ca_env: dict) -> dict:
    """A CA with a server bundle ``srv``, a CSR, a manifest and a secret file, in ``tmp_path``."""
    run_certkit("issue-server", "srv.example", "--out", tmp_path / "srv", env=ca_env, check=True)
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", tmp_path / "csr.key", "-out", tmp_path / "req.csr", "-subj", "/CN=csr.example"],
                   check=True, capture_output=True)
    (tmp_path / "m.jsonl").write_text('{"kind": "server", "names": ["m.example"]}\n')
    secret = tmp_path / "secret.txt"
    secret.write_text("a p12 password of some length\n")
    secret.chmod(0o600)
    (tmp_path / "pp.txt").write_text(PASSPHRASE + "\n")
    (tmp_path / "pp.txt").chmod(0o600)
    return ca_env


# --- 1. a named pipe nobody writes to ------------------------------------------------------------------------
FIFO_READS = {
    "inspect": ["inspect", "{F}"],
    "verify-cert": ["verify", "--purpose", "server", "{F}"],
    "verify-ca-file": ["verify", "--purpose", "server", "srv/cert.pem", "--ca-file", "{F}"],
    "verify-untrusted": ["verify", "--purpose", "server", "srv/cert.pem", "--untrusted", "{F}"],
    "sign-csr": ["sign-csr", "--server", "{F}", "--out", "out"],
    "issue-batch": ["issue-batch", "{F}", "--out-dir", "out"],
    "check-passphrase-file": ["check", "--passphrase-file", "{F}"],
    "issue-passphrase-file": ["issue-server", "x.example", "--out", "out", "--passphrase-file", "{F}"],
    "issue-p12-password-file": ["issue-server", "x.example", "--out", "out", "--p12", "--p12-password-file", "{F}"],
    "export-p12-password-file": ["export-p12", "srv", "--force", "--password-file", "{F}"],
    "renew-p12-password-file": ["renew", "srv", "--out", "out", "--p12-password-file", "{F}"],
    "crl-passphrase-file": ["crl", "--out", "out.crl", "--passphrase-file", "{F}"],
    "serve-cert": ["serve", "--port", "0", "--cert", "{F}", "--key", "srv/privkey.pem"],
    "serve-key": ["serve", "--port", "0", "--cert", "srv/fullchain.pem", "--key", "{F}"],
    "serve-client-ca": ["serve", "--port", "0", "--client-ca", "{F}"],
    "probe-ca-file": ["probe", "https://127.0.0.1:9/", "--timeout", "2", "--ca-file", "{F}"],
    "probe-cert": ["probe", "https://127.0.0.1:9/", "--timeout", "2", "--cert", "{F}", "--key", "srv/privkey.pem"],
    "probe-key": ["probe", "https://127.0.0.1:9/", "--timeout", "2", "--cert", "srv/fullchain.pem", "--key", "{F}"],
}


@pytest.mark.parametrize("where", FIFO_READS.values(), ids=FIFO_READS.keys())
def test_a_named_pipe_nobody_writes_to_is_refused_not_waited_on(tmp_path: Path, issued: dict, where) -> None:
    """`mkfifo f; certkit inspect f` (or any file option given such a pipe) waited in open() for a writer that never
    came: a command that never ends, in a script or a timer. Now: one Error line at once, nothing written."""
    os.mkfifo(tmp_path / "fifo")
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = _certkit([arg.replace("{F}", "fifo") for arg in where], issued, tmp_path)
    said = "fifo is a named pipe (FIFO) that no program is writing to; give a file, or start the program that " \
           "writes to it first."
    if where[0] == "check":  # its report says why the key check failed, its error line that it failed
        _one_error_line(proc, "1 check failed: key.")
        assert f"ERROR   key        The secret file {said}" in proc.stdout, proc.stdout
    else:
        _one_error_line(proc, said)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no bundle, no CRL, no folder made


def _through_pipe(args, data: bytes, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    """``certkit ARGS`` with {P} a /dev/fd/N whose writer wrote ``data`` and left: what ``<(...)`` gives."""
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    try:
        return _certkit([arg.replace("{P}", f"/dev/fd/{read}") for arg in args], env, cwd, pass_fds=(read,))
    finally:
        os.close(read)


def test_a_pipe_a_program_writes_to_is_still_read(tmp_path: Path, issued: dict) -> None:
    """What `inspect <(cat cert.pem)` gives: /dev/fd/N, a pipe whose writer is there (or was: it may be gone, its
    data left in the pipe); an empty one is said to be empty, as before."""
    proc = _through_pipe(["inspect", "{P}"], (tmp_path / "srv" / "cert.pem").read_bytes(), issued, tmp_path)
    assert proc.returncode == 0 and "CN=srv.example" in proc.stdout, proc.stderr
    proc = _through_pipe(["inspect", "{P}"], b"", issued, tmp_path)
    _one_error_line(proc, "is empty")


@pytest.mark.parametrize("args", [["check", "--passphrase-file", "{P}"],
                                  ["crl", "--out", "out.crl", "--passphrase-file", "{P}"]], ids=["check", "crl"])
def test_a_passphrase_from_a_process_substitution_opens_the_key(tmp_path: Path, issued: dict, args) -> None:
    """`certkit check --passphrase-file <(pass show ca)` said "The file /dev/fd/63 holds an empty secret" (and its
    key check failed, exit 1): check read the file first for a hint in case the passphrase were wrong, which
    emptied the pipe before the passphrase was read from it. A pipe is now read once, for the passphrase."""
    env = {k: v for k, v in issued.items() if k != "CERTKIT_CA_PASSPHRASE"}
    proc = _through_pipe(args, (PASSPHRASE + "\n").encode(), env, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "empty secret" not in proc.stdout + proc.stderr
    if args[0] == "check":
        assert "decrypts and matches ca.pem" in proc.stdout, proc.stdout


def test_a_named_pipe_with_its_writer_there_is_read(tmp_path: Path, issued: dict) -> None:
    """A FIFO some program holds open for writing is read to its end, as a file, however slow the writer."""
    os.mkfifo(tmp_path / "fifo")
    writer = subprocess.Popen(["sh", "-c", "exec 3>fifo; sleep 1; cat srv/cert.pem >&3"], cwd=tmp_path)
    try:
        # the writer holds it open before certkit starts (it waits for a reader, as a FIFO's writer does)
        proc = _certkit(["inspect", "fifo"], issued, tmp_path)
    finally:
        writer.wait(timeout=30)
    assert proc.returncode == 0 and "CN=srv.example" in proc.stdout, proc.stderr


# --- 3. an output place under a device or another user's file ------------------------------------------------
UNDER = {
    "issue-out": ["issue-server", "x.example", "--out", "{D}/x"],
    "issue-tar": ["issue-server", "x.example", "--format", "tar", "--out", "{D}/x"],
    "renew-out": ["renew", "srv", "--out", "{D}/x"],
    "sign-csr-out": ["sign-csr", "--server", "req.csr", "--out", "{D}/x"],
    "batch-out-dir": ["issue-batch", "m.jsonl", "--out-dir", "{D}"],
    "batch-out": ["issue-batch", "m.jsonl", "--format", "jsonl", "--out", "{D}/x"],
    "crl-out": ["crl", "--out", "{D}/x"],
    "init-ca-dir": ["init-ca", "--ca-dir", "{D}/x"],
    "unit-dir": ["renew", "--install-timer", "--passphrase-file", "pp.txt", "--unit-dir", "{D}/x"],
}


@pytest.mark.parametrize("under", ["/dev/null", "theirs"])
@pytest.mark.parametrize("args", UNDER.values(), ids=UNDER.keys())
def test_an_output_place_under_what_is_no_folder_is_said_so(tmp_path: Path, issued: dict, args, under) -> None:
    """/dev/null (mode 0666) above the output was called a folder "writable by every user": the advice (choose a
    folder of your own) fits no device. Now each command says what it says of a file there (held here with
    another user's file, never a folder that "belongs to another user"): it is not a folder."""
    theirs = tmp_path / "theirs"
    theirs.write_text("someone else's notes\n")
    os.chown(theirs, 65534, 65534)
    env = {**issued, "CERTKIT_SYSTEMD_SYSTEM_DIR": str(tmp_path / "system"), "HOME": str(tmp_path)}
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir() if p.name != "ca"}
    proc = _certkit([arg.replace("{D}", under) for arg in args], env, tmp_path)
    assert "writable by every user" not in proc.stderr and "belongs to another user" not in proc.stderr, proc.stderr
    _one_error_line(proc, "/dev/null is not a folder" if under == "/dev/null" else "is a file")
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir() if p.name != "ca"} == before  # nothing written
    listed = json.loads(run_certkit("list", "--json", env=issued, check=True).stdout)["certificates"]
    assert [row["status"] for row in listed] == ["valid"]  # srv's: no row signed, pending or abandoned


# --- 4. the form offered for a domain with a leading dot -----------------------------------------------------
DOTTED = {".*.example.com": "'*.example.com': a wildcard is not allowed here.",
          ".10.0.0.0/8": "'10.0.0.0/8' is a range of IP addresses, not a domain: IP ranges are permitted apart from "
                         "domains (init-ca --permit-ip 10.0.0.0/8",
          ".1.2.3.4": "'1.2.3.4' is an IP address, not a domain",
          "../x": "'/x' is not a valid DNS name",
          ".-x.example": "'-x.example' is not a valid DNS name"}


@pytest.mark.parametrize("args", [["init-ca", "--name", "Dots", "--no-passphrase", "--permit-dns", "X"],
                                  ["acme", "serve", "--port", "0", "--allow-domain", "X"]], ids=["init-ca", "acme"])
@pytest.mark.parametrize("value", DOTTED)
def test_a_dotted_domain_is_not_told_to_give_what_is_refused_too(tmp_path: Path, args, value: str) -> None:
    env = {**run_env(tmp_path), "CERTKIT_CA_DIR": str(tmp_path / "ca")}
    if args[0] == "acme":
        run_certkit("init-ca", "--name", "ACME CA", "--no-passphrase", env=env, check=True)
    before = sorted(os.listdir(tmp_path))
    proc = run_certkit(*[value if a == "X" else a for a in args], env=env, cwd=tmp_path)
    _one_error_line(proc, f"'{value}' starts with a dot, and is no domain without it either: {DOTTED[value]}")
    assert "so give" not in proc.stderr and sorted(os.listdir(tmp_path)) == before


def test_a_dotted_domain_whose_rest_is_one_is_still_offered_it() -> None:
    from certkit.ca import CA
    from certkit.errors import InvalidName

    for value, offered in ((".example.com", "example.com"), ("..bücher.example", "bücher.example")):
        with pytest.raises(InvalidName, match=f"starts with a dot: a domain covers itself and its subdomains, so give "
                                              f"'{offered}' without it."):
            CA.create("Dots", permitted_dns=[value])
    with pytest.raises(InvalidName, match="is no domain without it either: '10.0.0.0/8' is a range of IP addresses"):
        CA.create("Dots", permitted_dns=[".10.0.0.0/8"])


# --- 5. a PKCS#11 module that is there but is no file --------------------------------------------------------
@pytest.mark.parametrize("given", ["option", "uri"])
@pytest.mark.parametrize("module", ["fifo", "/dev/null", "/dev/zero", "link"])
def test_a_pkcs11_module_that_is_no_file_is_not_said_to_be_missing(tmp_path: Path, module: str, given: str) -> None:
    os.mkfifo(tmp_path / "fifo")
    os.symlink("/dev/null", tmp_path / "link")
    path = module if module.startswith("/") else str(tmp_path / module)
    uri = "pkcs11:token=certkit;object=ca-key"
    extra = ["--pkcs11-module", path] if given == "option" else []
    env = {**run_env(tmp_path), "CERTKIT_CA_DIR": str(tmp_path / "ca")}
    proc = _certkit(["init-ca", "--name", "Token CA", "--key-uri", uri if extra else f"{uri}?module-path={path}",
                     *extra], env, tmp_path)
    kind = "a device or other special file" + (" (a symbolic link to /dev/null)" if module == "link" else "")
    _one_error_line(proc, f"The PKCS#11 module {path} is {kind}, not a file.")
    assert "does not exist" not in proc.stderr and not (tmp_path / "ca").exists()


# --- 6. verify names what stands where the inventory should be -------------------------------------------------
@pytest.mark.parametrize("kind,said", [("fifo", "is a device or other special file, not a file"),
                                       ("folder", "is a folder, not a file")])
def test_verify_names_what_stands_where_the_inventory_should_be(tmp_path: Path, issued: dict, kind: str,
                                                                said: str) -> None:
    inventory = Path(issued["CERTKIT_CA_DIR"]) / "inventory.sqlite3"
    inventory.unlink()
    os.mkfifo(inventory) if kind == "fifo" else inventory.mkdir()
    proc = _certkit(["verify", "--purpose", "server", "srv/cert.pem"], issued, tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert f"{inventory} {said}; the CA directory is damaged: restore it from a backup" in proc.stdout, proc.stdout
    assert "is missing" not in proc.stdout + proc.stderr


# --- 7. an output place that is a symbolic link, said as such by every command -------------------------------
LINKED = {
    "demo-keep": (["demo", "--keep", "{L}"], "The demo folder {L} is a symbolic link"),
    "issue-out": (["issue-server", "x.example", "--out", "{L}"], "The output folder {L} is a symbolic link"),
    "renew-out": (["renew", "srv", "--out", "{L}"], "The output folder {L} is a symbolic link"),
    "sign-csr-out": (["sign-csr", "--server", "req.csr", "--out", "{L}"], "The output folder {L} is a symbolic link"),
    "init-ca-dir": (["init-ca", "--ca-dir", "{L}"], "The CA directory {L} is a symbolic link"),
}


@pytest.mark.parametrize("target", ["nowhere", "empty"])
@pytest.mark.parametrize("args,said", LINKED.values(), ids=LINKED.keys())
def test_an_output_place_that_is_a_link_is_said_so(tmp_path: Path, issued: dict, args, said: str, target) -> None:
    (tmp_path / "empty").mkdir()
    os.symlink(target, tmp_path / "link")
    proc = run_certkit(*[arg.replace("{L}", "link") for arg in args], env=issued, cwd=tmp_path)
    _one_error_line(proc, said.replace("{L}", "link") + "; certkit does not write through links. Give the real path.")
    assert not (tmp_path / "nowhere").exists() and not any((tmp_path / "empty").iterdir())


# --- 8. probe --bundle names what stands where a bundle file should be ----------------------------------------
BUNDLE_SPOTS = [(name, kind, said) for name in ("fullchain.pem", "privkey.pem")
                for kind, said in (("fifo", "is a device or other special file, not a file"),
                                   ("folder", "is a folder, not a file"), ("gone", "is missing"))
                if (name, kind) != ("fullchain.pem", "gone")]  # without fullchain.pem, cert.pem is taken


@pytest.mark.parametrize("name,kind,said", BUNDLE_SPOTS)
def test_probe_bundle_names_what_stands_there(tmp_path: Path, issued: dict, name: str, kind: str, said: str) -> None:
    (tmp_path / "srv" / name).unlink()
    {"fifo": os.mkfifo, "folder": os.mkdir, "gone": lambda path: None}[kind](tmp_path / "srv" / name)
    proc = run_certkit("probe", "https://127.0.0.1:9/", "--timeout", "2", "--bundle", "srv", env=issued, cwd=tmp_path)
    _one_error_line(proc, f"srv is not a bundle folder: {name} {said}.")
