"""The fifteenth round's regress audit: siblings of round fourteen's fixes that those fixes missed.

1. A passphrase or password file kept in a bundle folder (round fourteen: export-p12, renew FOLDER and the
   issue commands refuse to write over it) was removed by bulk renewal (renew --all / --expiring) and by
   issue-batch --force, which replace many folders: the CA key's passphrase file named like a leftover
   (chain.pem under a root CA) was gone after the run, exit 0. Every bundle write now refuses to replace or
   remove a file the command was given to read (bundle.check_writable, files.keep_input).
2. serve --cert with --client-ca of another CA served a certificate its CA directory's inventory records as
   revoked (keyCompromise) when that inventory could not be read (damaged, or another CA's named by
   $CERTKIT_INVENTORY_URL), or the CA directory's ca.pem could not be read: taken for "nothing revoked", where
   round fourteen made the library's server_context, verify and export-p12 refuse as "cannot be told". serve
   refuses to start now.
3. renew --install-timer carried $CERTKIT_INVENTORY_URL naming an SQLite inventory by a relative path into the
   unit (and the crontab line) as given, though renew.md says each path is made absolute: systemd starts the
   service in /, where that path names nothing, so every nightly renewal failed. It is made absolute now, as
   round fourteen made the inventory URL's paths in certkit-ca.json whole. Its sibling, a hook given by a relative
   path (--exec-once ./reload.sh), was written into the unit as given, so each night's renewals ran and their
   reload failed (the server kept the old certificate): installing refuses it now, naming the full path.
4. revoke --reason keyCompromise revokes every valid certificate holding the same key, but skipped in silence one
   whose inventory row is damaged (round fourteen: issuing refuses a key such a keyCompromise row may hold): the
   renewal's predecessor, holding the compromised key, stayed valid, with no word and exit 0. It is named now
   (a warning, and "unchecked" in --json), to revoke once the inventory is restored.
5. Standard output that fails (round fourteen: one wording, "Cannot write to standard output: ...", and "what the
   command did before this is done ... its report cut short"): crl > /dev/full said its report was cut short and
   the work done, though the CRL itself, standard output's whole content, was lost; --format jsonl, k8s and tar
   to standard output still said "Writing to standard output failed". The CRL's loss is said now, and the words
   are one.
6. A bundle folder assembled beside its place is synced (its files, then the folder) before it is renamed there;
   a failed file sync refused the bundle (round fourteen named the jsonl/k8s/tar file's), but a failed sync of
   the assembled folder (an I/O error) was swallowed: the bundle was put in place and recorded valid, exit 0,
   its entries perhaps never on disk. It refuses now as a file's failed sync does, the old bundle kept. Once a
   file or folder is renamed into place (a bundle, a CRL, a jsonl file), the failed sync of the folder it is in
   was swallowed too: exit 0 with no word. It is a warning now (what is there may be lost if the machine stops).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit, wait_or_kill


# --- 1. a passphrase file kept in a bundle folder, under bulk renewal and issue-batch --------------------------
def _kept_passphrase(folder: Path) -> Path:
    kept = folder / "chain.pem"  # a leftover under a root CA: a whole new bundle removes it
    kept.write_text(PASSPHRASE + "\n")
    kept.chmod(0o600)
    return kept


def test_bulk_renewal_and_issue_batch_keep_a_passphrase_file_in_a_bundle_folder(ca_dir: Path, ca_env: dict,
                                                                                tmp_path: Path):
    env = {k: v for k, v in ca_env.items() if k != "CERTKIT_CA_PASSPHRASE"}
    srv = tmp_path / "srv"
    run_certkit("issue-server", "a.example.com", "--out", srv, env=ca_env, check=True)
    kept = _kept_passphrase(srv)
    proc = run_certkit("renew", "--all", "--passphrase-file", kept, env=env)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "is the file given as --passphrase-file, which this command reads" in proc.stdout + proc.stderr
    assert kept.read_text() == PASSPHRASE + "\n"
    # the guard is the command's own: a library call in the same process afterwards replaces what it is told to
    from certkit.issuing import FolderTarget, deliver, server_request
    from certkit.store import CADirectory

    deliver(CADirectory(ca_dir).load(PASSPHRASE.encode()), server_request(["a.example.com"]),
            FolderTarget(srv, force=True))
    assert not kept.exists()

    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names,out\nserver,b.example.com,b\n")
    out_dir = tmp_path / "outs"
    run_certkit("issue-batch", manifest, "--out-dir", out_dir, env=ca_env, check=True)
    kept = _kept_passphrase(out_dir / "b")
    proc = run_certkit("issue-batch", manifest, "--out-dir", out_dir, "--force", "--passphrase-file", kept, env=env)
    assert_clean_error(proc, "is the file given as --passphrase-file, which this command reads")
    assert kept.read_text() == PASSPHRASE + "\n"

    # the same file outside the folders is taken as before, and a leftover that no command reads still goes
    outside = tmp_path / "pf"
    outside.write_text(PASSPHRASE + "\n")
    outside.chmod(0o600)
    run_certkit("issue-batch", manifest, "--out-dir", out_dir, "--force", "--passphrase-file", outside, env=env,
                check=True)
    assert not kept.exists()
    run_certkit("renew", "--all", "--passphrase-file", outside, env=env, check=True)
    assert not (srv / "chain.pem").exists()


# --- 2. serve --cert of a revoked certificate, its CA's inventory unread --------------------------------------
def _serve_exit(args: list, env: dict) -> subprocess.CompletedProcess:
    """Run serve; a server that started (it prints its URL) is stopped and its words returned with exit None."""
    proc = subprocess.Popen([sys.executable, "-m", "certkit", "serve", "--port", "0", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()  # the URL when it started; "" once it exited
        if first:
            return subprocess.CompletedProcess(proc.args, None, first, "")
        return subprocess.CompletedProcess(proc.args, proc.wait(60), "", proc.stderr.read())
    finally:
        if proc.poll() is None:
            proc.terminate()
        wait_or_kill(proc, 60)
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.parametrize("unread", ["damaged", "another CA's", "ca.pem damaged"])
def test_serve_refuses_a_certificate_whose_revocation_cannot_be_read(tmp_path: Path, unread: str):
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    for name in ("root", "other"):
        run_certkit("init-ca", "--name", name, "--ca-dir", tmp_path / name, env=env, check=True)
    srv = tmp_path / "srv"
    run_certkit("issue-server", "localhost", "--ca-dir", tmp_path / "root", "--out", srv, env=env, check=True)
    run_certkit("revoke", srv, "--reason", "keyCompromise", "--ca-dir", tmp_path / "root", env=env, check=True)
    args = ["--ca-dir", tmp_path / "root", "--cert", srv / "fullchain.pem", "--key", srv / "privkey.pem",
            "--client-ca", tmp_path / "other" / "ca.pem"]
    assert "revoked on" in _serve_exit(args, env).stderr  # read: refused, as before
    if unread == "damaged":
        (tmp_path / "root" / "inventory.sqlite3").write_bytes(b"not a database" * 300)
    elif unread == "ca.pem damaged":  # which CA it is cannot be told: nor that it is not this certificate's
        (tmp_path / "root" / "ca.pem").write_text("not a certificate\n")
    else:
        env = dict(env, CERTKIT_INVENTORY_URL=str(tmp_path / "other" / "inventory.sqlite3"))
    proc = _serve_exit(args, env)
    assert proc.returncode is not None, f"serve started with a revoked certificate: {proc.stdout}"
    assert_clean_error(proc, "whether its CA revoked it cannot be told")
    if unread == "ca.pem damaged":
        return
    # another CA's certificate served beside that CA directory is served as before
    run_certkit("issue-server", "localhost", "--ca-dir", tmp_path / "other", "--out", tmp_path / "o", env=env,
                check=True)
    started = _serve_exit([*args[:2], "--cert", tmp_path / "o" / "fullchain.pem", "--key", tmp_path / "o" /
                           "privkey.pem", *args[6:]], env)
    assert started.returncode is None and "Listening on https://" in started.stdout, started


# --- 3. the timer's $CERTKIT_INVENTORY_URL, a relative SQLite path -------------------------------------------
@pytest.mark.parametrize("prefix", ["", "sqlite:///"])
def test_the_timer_carries_a_relative_sqlite_inventory_url_in_full(tmp_path: Path, prefix: str):
    from test_fleet_timer import exec_start, plain_env

    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "root", "--ca-dir", tmp_path / "ca", env=env, check=True)
    secret = tmp_path / "pf"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    relative = dict(env, CERTKIT_INVENTORY_URL=prefix + "ca/inventory.sqlite3")
    run_certkit("renew", "--install-timer", "--expiring", "30d", "--ca-dir", tmp_path / "ca", "--passphrase-file",
                secret, "--unit-dir", tmp_path / "units", env=relative, cwd=tmp_path, check=True)
    argv, unit_env = exec_start((tmp_path / "units" / "certkit-renew.service").read_text())
    assert unit_env["CERTKIT_INVENTORY_URL"] == prefix + str(tmp_path / "ca" / "inventory.sqlite3")
    ran = subprocess.run(argv, env=plain_env(tmp_path, **unit_env), cwd="/", capture_output=True, text=True,
                         timeout=120)  # as systemd runs it: in /
    assert (ran.returncode, ran.stderr) == (0, ""), ran.stderr


def test_a_timer_refuses_a_hook_given_by_a_relative_path(tmp_path: Path):
    from test_fleet_timer import exec_start, plain_env

    from fleet_helpers import backdated_ca, bundle

    ca = backdated_ca(tmp_path / "ca")
    bundle(ca, tmp_path / "web", "web.example.com", days=40, age=35)
    secret = tmp_path / "pf"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    hook = tmp_path / "reload.sh"
    hook.write_text(f"#!/bin/sh\necho reloaded >> {tmp_path / 'hook.log'}\n")
    hook.chmod(0o755)
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"))
    units = tmp_path / "units"
    for option, cron in (("--exec-once", False), ("--exec", True)):
        where = ["--cron"] if cron else ["--unit-dir", units]
        proc = run_certkit("renew", "--install-timer", "--expiring", "14d", "--passphrase-file", secret, *where,
                           option, "./reload.sh", env=env, cwd=tmp_path)
        assert_clean_error(proc, f"give it in full ({hook})")
        assert not units.exists()
    # given in full, the timer's command runs it, started in / as systemd starts it
    run_certkit("renew", "--install-timer", "--expiring", "14d", "--passphrase-file", secret, "--unit-dir", units,
                "--exec-once", hook, env=env, cwd=tmp_path, check=True)
    argv, unit_env = exec_start((units / "certkit-renew.service").read_text())
    ran = subprocess.run(argv, env=plain_env(tmp_path, **unit_env), cwd="/", capture_output=True, text=True,
                         timeout=120)
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "hook.log").read_text() == "reloaded\n"


# --- 4. keyCompromise and a damaged row of the same key ---------------------------------------------------------
def test_a_key_compromise_names_a_damaged_row_it_could_not_check(ca_dir: Path, ca_env: dict, tmp_path: Path):
    import sqlite3

    from cryptography import x509

    from certkit.vocabulary import serial_hex

    def serial(folder: Path) -> str:
        return serial_hex(x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes()).serial_number)

    web = tmp_path / "web"
    run_certkit("issue-server", "web.example.com", "--out", web, env=ca_env, check=True)
    old = serial(web)
    run_certkit("renew", web, env=ca_env, check=True)  # the key kept: both certificates hold it
    new = serial(web)
    with sqlite3.connect(ca_dir / "inventory.sqlite3") as db:
        db.execute("UPDATE certificates SET der = x'3082' WHERE serial = ?", (old,))
    db.close()
    proc = run_certkit("revoke", new, "--reason", "keyCompromise", "--json", env=ca_env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["also_revoked"] == [] and data["unchecked"] == [old]
    assert f"The inventory row of certificate {old} is damaged" in proc.stderr
    assert "whether it holds the same key cannot be told, and it was not revoked" in proc.stderr


# --- 5. standard output that fails: the CRL lost, the formats' words ---------------------------------------------
def _to_dev_full(args: list, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    with open("/dev/full", "w") as full:
        return subprocess.run([sys.executable, "-m", "certkit", *map(str, args)], stdout=full, stderr=subprocess.PIPE,
                              env=env, cwd=cwd, text=True, timeout=120)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_standard_output_that_fails_says_what_was_lost(ca_dir: Path, ca_env: dict, tmp_path: Path):
    for as_json in ([], ["--json"], ["--der"]):
        proc = _to_dev_full(["crl", *as_json], ca_env, tmp_path)
        assert proc.returncode == 1 and proc.stderr.splitlines() == [
            "Error: Cannot write to standard output: the disk is full; the CRL (number "
            f"{1 + [[], ['--json'], ['--der']].index(as_json)}) was not delivered whole: run certkit crl again, or "
            "give --out FILE."], proc.stderr
    for fmt in ("jsonl", "k8s", "tar"):
        proc = _to_dev_full(["issue-server", f"{fmt}.example.com", "--format", fmt], ca_env, tmp_path)
        assert (proc.returncode, proc.stderr.splitlines()[-1]) == (
            1, "Error: Cannot write to standard output: the disk is full."), proc.stderr


# --- 6. the assembled folder's failed sync ----------------------------------------------------------------------
def _strace(*args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    import shutil

    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    proc = subprocess.run([strace, "-f", "-qq", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    if "ptrace" in proc.stderr and "Operation not permitted" in proc.stderr:
        pytest.skip("ptrace is not allowed here")
    return proc


@pytest.mark.parametrize("force", [False, True], ids=["new", "replaced"])
def test_a_failed_sync_of_the_assembled_bundle_folder_refuses_the_bundle(tmp_path: Path, force: bool):
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Sync CA", env=env, check=True)
    def issue(folder: str) -> list:
        return [sys.executable, "-m", "certkit", "issue-server", "www.example.com", "--out", folder] + (
            ["--force"] if force else [])

    for folder in ("probe", "www") if force else ():
        run_certkit(*issue(folder)[3:], env=env, cwd=tmp_path, check=True)
    # which fsync syncs the folder assembled beside its place (the same run into another folder, traced)
    trace = tmp_path / "trace"
    _strace("-y", "-e", "trace=fsync", "-o", str(trace), *issue("probe"), env=env, cwd=tmp_path)
    calls = [line for line in trace.read_text().splitlines() if "fsync(" in line]  # as strace counts them
    nth = 1 + next(i for i, line in enumerate(calls) if line.rstrip().endswith("certkit-tmp>) = 0"))
    before = (tmp_path / "www" / "cert.pem").read_bytes() if force else None
    rows = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]
    proc = _strace("-o", "/dev/null", "-e", f"inject=fsync:error=EIO:when={nth}", *issue("www"), env=env,
                   cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.splitlines()[-1] == (
        "Error: Cannot write the bundle in www: Input/output error; " + (
            "nothing was replaced (the bundle was left as it was)." if force else "nothing was written.")), proc.stderr
    if force:
        assert (tmp_path / "www" / "cert.pem").read_bytes() == before
    else:
        assert not (tmp_path / "www").exists()
    assert [p.name for p in tmp_path.iterdir() if "certkit-tmp" in p.name] == []
    after = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]
    assert [r for r in after if r["status"] == "valid"] == [r for r in rows if r["status"] == "valid"]


@pytest.mark.parametrize("args", [["crl", "--out", "crl.pem"], ["issue-server", "www.example.com", "--out", "www"],
                                  ["issue-server", "j.example.com", "--format", "jsonl", "--out", "j.jsonl"]],
                         ids=["crl", "bundle", "jsonl"])
def test_a_failed_sync_of_the_folder_an_output_was_put_in_is_said(tmp_path: Path, args: list):
    env = certkit_env(HOME=str(tmp_path), CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Sync CA", env=env, check=True)
    work = tmp_path / "work"
    work.mkdir()
    command = [sys.executable, "-m", "certkit", *args]
    trace = tmp_path / "trace"
    _strace("-y", "-e", "trace=fsync", "-o", str(trace), *command, env=env, cwd=tmp_path)  # once, beside work
    calls = [line for line in trace.read_text().splitlines() if "fsync(" in line]  # as strace counts them
    nth = 1 + max(i for i, line in enumerate(calls) if line.rstrip().endswith(f"<{tmp_path}>) = 0"))
    proc = _strace("-o", "/dev/null", "-e", f"inject=fsync:error=EIO:when={nth}", *command, env=env, cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        f"Warning: The folder {work} could not be synced to disk (Input/output error): what was just put in it is "
        "there now, but may be lost if the machine stops before that disk recovers; check it."), proc.stderr
    assert (work / args[-1]).exists()
