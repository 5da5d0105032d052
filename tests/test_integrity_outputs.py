"""Issue 9, classes 3, 4 and 5: where certkit writes.

Class 3: no output option writes into a CA directory, with or without --force: the one in use,
an intermediate's, another CA's, reached directly, through a symbolic link, through '..', or
below it; for crl, issue-*, sign-csr, export-p12, issue-batch and renew. The CA's files stay
byte for byte, nothing is signed or recorded.

Class 4: a manifest cannot write outside --out-dir ('..', absolute paths, '~', a symbolic link
inside --out-dir that leads out), and two lines cannot share a folder by any path (a link, './',
a trailing '/', the same default name).

Class 5: --force and renew replace exactly the bundle: the files of the old bundle that the new
one lacks (bundle.p12, chain.pem, privkey.pem) go, everything else in the folder (files,
subfolders, a log being appended to, a mount point) stays as it is; renewing a folder that is
itself a mount point works and is recorded as it happened.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, run_certkit
from integrity_helpers import db_rows, listed, read_bundle, tmpfs

NEVER = "never writes there"


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below ``folder`` (content and mode), but the inventory (compared by its rows)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"", p.lstat().st_mode)
            for p in sorted(folder.rglob("*")) if not p.name.startswith("inventory.sqlite3")}


def make_intermediate(ica: Path, parent: Path, env: dict) -> None:
    secret = ica.parent / "parent.pass"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    run_certkit("init-ca", "--ca-dir", ica, "--parent-ca-dir", parent, "--parent-passphrase-file", secret,
                "--name", f"{ica.name} issuing", env=env, check=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> tuple[Path, dict]:
    """A root, an intermediate under it, a bundle of each to renew, a CSR, and links to the CAs."""
    root = tmp_path_factory.mktemp("outputs")
    env = certkit_env(CERTKIT_CA_DIR=str(root / "root"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      CERTKIT_P12_PASSWORD="a p12 password")
    run_certkit("init-ca", "--name", "Outputs Root", env=env, check=True)
    make_intermediate(root / "ica", root / "root", env)
    run_certkit("issue-server", "web.example.internal", "--out", root / "web", env=env, check=True)
    run_certkit("issue-client", "Alice", "--out", root / "alice", "--ca-dir", root / "ica", env=env, check=True)
    assert openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                   root / "csr.key", "-subj", "/CN=csr.example.internal", "-out", root / "req.csr").returncode == 0
    (root / "to-root").symlink_to(root / "root")
    (root / "to-ica").symlink_to(root / "ica")
    (root / "m.csv").write_text("kind,names,out\nserver,m.example.internal,m\n")
    (root / "into-ica.csv").write_text("kind,names,out\nserver,m.example.internal,m\nserver,n.example.internal,ica\n")
    (root / "escape").mkdir()
    (root / "escape" / "inner").symlink_to(root / "root")
    return root, env


INTO_A_CA = {
    "crl --out ca-key.pem --force": ["crl", "--out", "root/ca-key.pem", "--force"],
    "crl --out ca.pem --force": ["crl", "--out", "root/ca.pem", "--force"],
    "crl --out inventory --force": ["crl", "--out", "root/inventory.sqlite3", "--force"],
    "crl --out a new file in the CA": ["crl", "--out", "root/crl.pem"],
    "crl --out through a link": ["crl", "--out", "to-root/ca-key.pem", "--force"],
    "crl --out the intermediate's ca.pem": ["crl", "--out", "ica/ca.pem", "--force"],
    "crl --out with ..": ["crl", "--out", "web/../root/ca-key.pem", "--force"],
    "issue-server --out the CA": ["issue-server", "x.example.internal", "--out", "root", "--force"],
    "issue-server --out its own CA (intermediate)": ["issue-server", "x.example.internal", "--ca-dir", "ica", "--out",
                                                     "ica", "--force"],
    "issue-server --out an intermediate's dir": ["issue-server", "x.example.internal", "--out", "ica", "--force"],
    "issue-server --out below the CA": ["issue-server", "x.example.internal", "--out", "root/certs/x"],
    "issue-client --out through a link": ["issue-client", "Bob", "--out", "to-root", "--force"],
    "issue-client --out below a link": ["issue-client", "Bob", "--out", "to-ica/bob"],
    "issue-peer --out with ..": ["issue-peer", "p.example.internal", "--out", "web/../ica", "--force"],
    "sign-csr --out the CA": ["sign-csr", "req.csr", "--server", "--out", "root", "--force"],
    "export-p12 through a link to the CA": ["export-p12", "to-root", "--force"],
    "issue-batch --out-dir the CA": ["issue-batch", "m.csv", "--out-dir", "root"],
    "issue-batch --out-dir inside the CA": ["issue-batch", "m.csv", "--out-dir", "root/certs"],
    "issue-batch --out-dir a link to the CA": ["issue-batch", "m.csv", "--out-dir", "to-ica", "--force"],
    "issue-batch --out-dir holding a link to the CA": ["issue-batch", "m.csv", "--out-dir", "escape/inner"],
    "issue-batch line out = an intermediate's dir": ["issue-batch", "into-ica.csv", "--out-dir", ".", "--force"],
    "renew --out the CA": ["renew", "web", "--out", "root", "--force"],
    "renew --out the intermediate": ["renew", "web", "--out", "ica", "--force"],
    "renew --out through a link": ["renew", "web", "--out", "to-root/web", "--rekey"],
    "renew --out an intermediate's bundle into its CA": ["renew", "alice", "--ca-dir", "ica", "--out", "ica",
                                                         "--force"],
}


@pytest.mark.parametrize("what", list(INTO_A_CA))
def test_nothing_is_written_into_a_ca_directory(pki, what: str) -> None:
    root, env = pki
    before = {ca: (snapshot(root / ca), db_rows(root / ca)) for ca in ("root", "ica")}
    proc = run_certkit(*INTO_A_CA[what], cwd=root, env=env)
    assert_clean_error(proc, NEVER)
    for ca in ("root", "ica"):
        assert (snapshot(root / ca), db_rows(root / ca)) == before[ca], f"{ca} changed"


def test_export_p12_into_a_ca_directory_holding_a_bundle(tmp_path: Path, ca_env: dict, ca_dir: Path) -> None:
    """Even a CA directory that someone filled with a bundle's files gets no bundle.p12."""
    run_certkit("issue-client", "Alice", "--out", tmp_path / "alice", env=ca_env, check=True)
    for name in ("cert.pem", "privkey.pem"):
        shutil.copy2(tmp_path / "alice" / name, ca_dir / name)
    before = snapshot(ca_dir)
    proc = run_certkit("export-p12", ca_dir, "--force", env=dict(ca_env, CERTKIT_P12_PASSWORD="pw"))
    assert_clean_error(proc, NEVER)
    assert snapshot(ca_dir) == before


# --- class 4 -------------------------------------------------------------------------
ESCAPES = {
    "..": "../outside",
    "../..": "../../outside",
    "a/../..": "a/../../outside",
    "./..": "./../outside",
    "absolute": "{tmp}/outside",
    "home": "~/outside",
    "a link inside --out-dir that leads out": "link/outside",
    "a link inside --out-dir, itself": "link",
}


@pytest.mark.parametrize("what", list(ESCAPES))
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_batch_cannot_write_outside_out_dir(tmp_path: Path, ca_env: dict, ca_dir: Path, what: str, fmt: str) -> None:
    out_dir = tmp_path / "certs"
    out_dir.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (out_dir / "link").symlink_to(tmp_path / "elsewhere")
    bad = ESCAPES[what].format(tmp=tmp_path)
    lines = [("server", "ok.example.internal", "ok"), ("server", "bad.example.internal", bad)]
    if fmt == "csv":
        text = "kind,names,out\n" + "".join(f"{k},{n},{o}\n" for k, n, o in lines)
    else:
        text = "".join(json.dumps({"kind": k, "names": n, "out": o}) + "\n" for k, n, o in lines)
    (tmp_path / f"m.{fmt}").write_text(text)
    proc = run_certkit("issue-batch", f"m.{fmt}", "--out-dir", out_dir, cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, f"line {3 if fmt == 'csv' else 2}")
    assert "nothing was issued" in proc.stderr or "outside" in proc.stderr
    assert db_rows(ca_dir) == []
    assert not (tmp_path / "outside").exists() and list((tmp_path / "elsewhere").iterdir()) == []
    assert sorted(p.name for p in out_dir.iterdir()) == ["link"]


DUPLICATES = {
    "through a link": [("server", "a.example.internal", "real/x"), ("client", "Bob", "alias/x")],
    "./ and plain": [("server", "a.example.internal", "x"), ("server", "b.example.internal", "./x")],
    "a trailing slash": [("server", "a.example.internal", "x"), ("client", "Bob", "x/")],
    "a doubled slash": [("server", "a.example.internal", "d/x"), ("client", "Bob", "d//x")],
    "the same default folder": [("server", "web.example.internal", ""), ("client", "web.example.internal", "")],
    "a link to --out-dir itself": [("server", "a.example.internal", "x"), ("client", "Bob", "self/x")],
}


@pytest.mark.parametrize("what", list(DUPLICATES))
def test_batch_refuses_two_lines_in_one_folder(tmp_path: Path, ca_env: dict, ca_dir: Path, what: str) -> None:
    out_dir = tmp_path / "certs"
    (out_dir / "real").mkdir(parents=True)
    (out_dir / "d").mkdir()
    (out_dir / "alias").symlink_to(out_dir / "real")
    (out_dir / "self").symlink_to(out_dir)
    text = "".join(json.dumps({"kind": k, "names": n} | ({"out": o} if o else {})) + "\n"
                   for k, n, o in DUPLICATES[what])
    (tmp_path / "m.jsonl").write_text(text)
    proc = run_certkit("issue-batch", "m.jsonl", "--out-dir", out_dir, cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, "also line 1")
    assert db_rows(ca_dir) == []
    assert [p for p in out_dir.rglob("*.pem")] == []


# --- class 5 -------------------------------------------------------------------------
def tree(folder: Path, skip=("cert.pem", "privkey.pem", "fullchain.pem", "chain.pem", "ca.pem", "bundle.p12")):
    """What is not the bundle's in ``folder``: path -> (inode, size, mtime, content)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.relative_to(folder).parts[0] in skip:
            continue
        info = p.lstat()
        out[str(p.relative_to(folder))] = (info.st_ino, info.st_size, info.st_mtime_ns,
                                           p.read_bytes() if p.is_file() else None)
    return out


def users_files(folder: Path) -> None:
    (folder / "notes.txt").write_text("the operator's notes\n")
    (folder / ".hidden").write_text("dotfile\n")
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / "sub" / "deeper" / "keep.txt").write_text("kept\n")
    (folder / "README").symlink_to("notes.txt")


def test_force_replaces_exactly_the_bundle(tmp_path: Path, ca_env: dict) -> None:
    """A bundle from an intermediate with bundle.p12 and chain.pem, replaced with --force from the
    root: the old p12 (another key) and chain (another CA) go; the user's files stay."""
    env = dict(ca_env, CERTKIT_P12_PASSWORD="a p12 password")
    run_certkit("init-ca", "--name", "Force Root", env=env, check=True)
    make_intermediate(tmp_path / "ica", tmp_path / "ca", env)
    folder = tmp_path / "web"
    run_certkit("issue-server", "web.example.internal", "--out", folder, "--p12", "--ca-dir", tmp_path / "ica",
                env=env, check=True)
    assert {"chain.pem", "bundle.p12"} <= {p.name for p in folder.iterdir()}
    users_files(folder)
    mine = tree(folder)
    run_certkit("issue-server", "web.example.internal", "--out", folder, "--force", env=env, check=True)
    assert not (folder / "chain.pem").exists() and not (folder / "bundle.p12").exists()
    assert tree(folder) == mine
    bundle = read_bundle(folder)
    assert bundle.complete
    assert (folder / "fullchain.pem").read_bytes() == (folder / "cert.pem").read_bytes()  # a root's leaf
    assert (folder / "ca.pem").read_bytes() == (tmp_path / "ca" / "ca.pem").read_bytes()
    # --force with --p12 again: the bundle.p12 holds the new certificate, not a stale one.
    run_certkit("issue-server", "web.example.internal", "--out", folder, "--force", "--p12", env=env, check=True)
    key, cert, _ = pkcs12.load_key_and_certificates((folder / "bundle.p12").read_bytes(), b"a p12 password")
    assert cert == x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes())
    assert tree(folder) == mine


def test_force_with_a_csr_removes_the_stale_private_key(tmp_path: Path, ca_env: dict, ca_dir: Path) -> None:
    folder = tmp_path / "web"
    run_certkit("issue-server", "web.example.internal", "--out", folder, env=ca_env, check=True)
    users_files(folder)
    mine = tree(folder)
    assert openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                   tmp_path / "k.pem", "-subj", "/CN=web.example.internal", "-out", tmp_path / "r.csr").returncode == 0
    run_certkit("sign-csr", tmp_path / "r.csr", "--server", "--out", folder, "--force", env=ca_env, check=True)
    assert not (folder / "privkey.pem").exists()  # it belonged to the old certificate
    assert tree(folder) == mine


class Appender:
    """A process appending numbered lines to a log in the bundle folder, as a server would,
    until ``stop`` (a file outside the folder) appears."""

    def __init__(self, log: Path, stop: Path) -> None:
        code = ("import os, sys, time\nfd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)\n"
                "n = 0\nwhile not os.path.exists(sys.argv[2]):\n"
                "    n += 1\n    os.write(fd, b'line %d\\n' % n)\n    time.sleep(0.002)\n"
                "print(n)\n")
        self.log, self.stop_file = log, stop
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(log), str(stop)], stdout=subprocess.PIPE,
                                     text=True)
        while not log.exists() or log.stat().st_size == 0:
            time.sleep(0.01)

    def stop(self) -> int:
        self.stop_file.touch()
        out, _ = self.proc.communicate(timeout=30)
        return int(out)


@pytest.mark.parametrize("rekey", [False, True], ids=["keep key", "rekey"])
def test_renew_keeps_everything_but_the_bundle(tmp_path: Path, ca_env: dict, ca_dir: Path, rekey: bool) -> None:
    folder = tmp_path / "svc"
    run_certkit("issue-server", "svc.example.internal", "--out", folder, env=ca_env, check=True)
    users_files(folder)
    (folder / "logs").mkdir()
    old = read_bundle(folder)
    old_key = (folder / "privkey.pem").read_bytes()
    with tmpfs(folder / "data", "size=1m") as mount:
        (mount / "db.txt").write_text("on the mount\n")
        log = Appender(folder / "logs" / "app.log", tmp_path / "stop-logging")
        try:
            mine = {k: v for k, v in tree(folder).items() if not k.startswith("logs/app.log")}
            args = ["renew", folder] + (["--rekey"] if rekey else [])
            for _ in range(3):  # renewals while the server keeps logging
                run_certkit(*args, env=ca_env, check=True)
        finally:
            written = log.stop()
        assert os.path.ismount(mount) and (mount / "db.txt").read_text() == "on the mount\n"
        lines = (folder / "logs" / "app.log").read_text().splitlines()
        assert lines == [f"line {n}" for n in range(1, written + 1)]  # no line lost
        assert {k: v for k, v in tree(folder).items() if not k.startswith("logs/app.log")} == mine
    new = read_bundle(folder)
    assert new.complete and new.serial != old.serial
    assert ((folder / "privkey.pem").read_bytes() == old_key) != rekey
    rows = {r["serial"]: r for r in listed(ca_env)}
    assert rows[new.serial]["status"] == "valid" and rows[old.serial]["renewed_by"] is not None


@pytest.mark.parametrize("rekey", [False, True], ids=["keep key", "rekey"])
def test_renew_a_folder_that_is_a_mount_point(tmp_path: Path, ca_env: dict, ca_dir: Path, rekey: bool) -> None:
    """The folder cannot be renamed (EBUSY): the journal replaces the files inside it, and the
    inventory records exactly that."""
    with tmpfs(tmp_path / "svc", "size=1m") as folder:
        run_certkit("issue-server", "svc.example.internal", "--out", folder, "--force", env=ca_env, check=True)
        (folder / "notes.txt").write_text("mine\n")
        old = read_bundle(folder)
        proc = run_certkit("renew", folder, *(["--rekey"] if rekey else []), env=ca_env)
        assert proc.returncode == 0, proc.stderr
        assert os.path.ismount(folder) and (folder / "notes.txt").read_text() == "mine\n"
        new = read_bundle(folder)
        assert new.complete and new.serial != old.serial
        assert not [p for p in folder.iterdir() if "certkit" in p.name]
        rows = {r["serial"]: r for r in listed(ca_env)}
        assert rows[new.serial]["status"] == "valid"
        assert rows[old.serial]["renewed_by"] == new.serial
        assert old.serial not in {r["serial"] for r in listed(ca_env, "--expiring", "825d")}


@pytest.mark.parametrize("plan", [
    {"write": [], "remove": ["../victim.txt"]},
    {"write": [], "remove": ["ABSOLUTE"]},
    {"write": ["../victim.txt"], "remove": []},
    {"write": ["cert.pem"], "remove": ["notes.txt"]},  # a file that is not the bundle's
    {"write": ["cert.pem"], "remove": [], "link": True},  # the new file a link to elsewhere
    "not a plan",
], ids=["remove ..", "remove absolute", "write ..", "remove a user file", "write a link", "not JSON"])
@pytest.mark.parametrize("command", ["renew", "issue --force"])
def test_a_planted_journal_is_never_carried_out(tmp_path: Path, ca_env: dict, ca_dir: Path, plan, command: str):
    """A dead writer's committed journal (``.certkit-swap.PID-X.certkit-tmp/COMMIT``) is carried
    out when the folder is next written; one certkit did not write (naming files outside the
    bundle, or a link) is removed unread: nothing outside the bundle files is touched."""
    victim, outside = tmp_path / "victim.txt", tmp_path / "victim-abs.txt"
    victim.write_text("precious\n")
    outside.write_text("precious too\n")
    folder = tmp_path / "x.example"
    run_certkit("issue-server", "x.example", cwd=tmp_path, env=ca_env, check=True)
    (folder / "notes.txt").write_text("mine\n")
    journal = folder / ".certkit-swap.4000000-abcdef0123456789.certkit-tmp"  # pid 4000000: no such process
    journal.mkdir()
    if isinstance(plan, dict):
        if plan.pop("link", False):
            (journal / "cert.pem").symlink_to(victim)
        plan = {k: [str(outside) if n == "ABSOLUTE" else n for n in v] for k, v in plan.items()}
        for name in plan["write"]:
            if not os.path.lexists(journal / name):
                (journal / name).write_text("planted\n")
        text = json.dumps(plan)
    else:
        text = plan
    (journal / "COMMIT").write_text(text)
    args = ["renew", folder] if command == "renew" else ["issue-server", "x.example", "--force"]
    run_certkit(*args, cwd=tmp_path, env=ca_env, check=True)
    assert victim.read_text() == "precious\n" and outside.read_text() == "precious too\n"
    assert (folder / "notes.txt").read_text() == "mine\n"
    assert not journal.exists()
    assert read_bundle(folder).complete
    assert not (folder / "cert.pem").is_symlink()
