"""Audit round six, fleets (report fleet6), each finding as a class, with real readers (tar, openssl,
a pseudo-terminal, the hooks' shell):

1. a batch line whose folder lies inside another line's bundle (``a`` and ``a/cert.pem``, either order,
   at any depth, in folders or a tar's members, checked in one process or several) is refused first;
2. private keys written to standard output redirected into a file others can read: the file is made 0600;
3. no bundle folder below a folder whose name holds a line break (hooks read CERTKIT_FOLDERS a line
   at a time);
4. near the CA's end, a renewal ends with the CA, never sooner than what it renews, run after run;
5. ``--remove-timer --unit-dir`` refuses while systemd still links to the units;
6. a CA directory reached through a symbolic link works;
7. ``list`` fits the terminal by display columns (wide characters count two);
8. bulk renew names every bundle it skipped because it is gone or replaced, and says which.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import stat
import subprocess
import tarfile
import unicodedata
from pathlib import Path

import pytest
from cryptography import x509

from certkit import CA
from certkit.store import CADirectory

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, run_certkit
from fleet_helpers import run_in_pty


def manifest(tmp_path: Path, rows: list[tuple[str, str]], name: str = "m.csv") -> Path:
    path = tmp_path / name
    path.write_text("kind,names,out\n" + "".join(f"server,{n},{o}\n" for n, o in rows))
    return path


# --- 1. one line's folder inside another line's bundle -------------------------------------------------------
NESTED = [
    ([("a1.test", "a"), ("a2.test", "a/cert.pem")], 3, "lies inside line 2's bundle, where cert.pem is a file"),
    ([("a1.test", "a/privkey.pem/deeper"), ("a2.test", "a")], 3, "line 2's output folder lies inside this line's"),
    ([("a1.test", "x/y"), ("a2.test", "x/y/fullchain.pem")], 3, "where fullchain.pem is a file"),
    ([("a1.test", "p"), ("a2.test", "p/bundle.p12")], 3, "where bundle.p12 is a file"),
]


@pytest.mark.parametrize("fmt", ["folder", "tar"])
@pytest.mark.parametrize("rows,line,fragment", NESTED, ids=["file-after", "folder-after", "deep", "p12"])
def test_a_line_inside_another_lines_bundle_is_refused_first(ca_dir, ca_env, tmp_path, fmt, rows, line, fragment):
    """fleet6 #1: the folder format wrote and recorded the first bundle, then stopped (and --resume
    could not finish); the tar format wrote an archive whose extraction made a bundle file a folder."""
    path = manifest(tmp_path, rows)
    out = ["--out-dir", tmp_path / "od"] if fmt == "folder" else ["--format", "tar", "--out", tmp_path / "x.tar"]
    proc = run_certkit("issue-batch", path, *out, env=ca_env)
    assert_clean_error(proc, f"line {line}: ")
    assert fragment in proc.stderr, proc.stderr
    assert not (tmp_path / "od").exists() and not (tmp_path / "x.tar").exists()
    assert json.loads(run_certkit("list", "--json", env=ca_env, check=True).stdout)["certificates"] == []


def test_nested_lines_far_apart_are_found_by_the_parallel_check(ca_dir, ca_env, tmp_path):
    """The same through the check's worker processes (a manifest large enough to be split)."""
    rows = [("first.test", "a")] + [(f"h{i}.test", f"h{i}") for i in range(3000)] + [("last.test", "a/chain.pem")]
    path = manifest(tmp_path, rows)
    proc = run_certkit("issue-batch", path, "--out-dir", tmp_path / "od", "--jobs", "2", env=ca_env)
    assert_clean_error(proc, "line 3003: its output folder")
    assert "line 2's bundle, where chain.pem is a file" in proc.stderr and not (tmp_path / "od").exists()


def test_folders_inside_a_bundle_folder_that_are_not_its_files_still_work(ca_dir, ca_env, tmp_path):
    """Only the bundle's file names clash: a bundle folder may hold another bundle's folder."""
    path = manifest(tmp_path, [("outer.test", "a"), ("inner.test", "a/inner")])
    run_certkit("issue-batch", path, "--out-dir", tmp_path / "od", env=ca_env, check=True)
    for folder in (tmp_path / "od" / "a", tmp_path / "od" / "a" / "inner"):
        openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", folder / "ca.pem", folder / "cert.pem")


# --- 2. keys into a redirected standard output ---------------------------------------------------------------
@pytest.mark.parametrize("command", [["issue-server", "redir.test", "--format", "jsonl"],
                                     ["issue-client", "alice", "--format", "k8s"],
                                     ["batch", "--format", "tar"], ["batch", "--format", "jsonl"]])
def test_a_readable_redirect_is_made_private_before_keys_go_in(ca_dir, ca_env, tmp_path, command):
    """fleet6 #2: ``> fleet.jsonl`` under umask 022 left the keys in a 0644 file without a word."""
    if command[0] == "batch":
        command = ["issue-batch", manifest(tmp_path, [("b.test", "b")]), *command[1:]]
    target = tmp_path / "out.data"
    with open(target, "wb") as handle:
        os.chmod(target, 0o644)
        proc = subprocess.run(["python", "-m", "certkit", *map(str, command)], stdout=handle, stderr=subprocess.PIPE,
                              env=ca_env, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert "mode 0644); certkit made it 0600" in proc.stderr
    data = target.read_bytes()
    if command[-1] == "tar":
        names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
        assert "b/privkey.pem" in names
    else:
        assert b"PRIVATE KEY" in data or b"tls.key: " in data


def test_a_private_redirect_and_a_pipe_are_left_as_they_are(ca_dir, ca_env, tmp_path):
    target = tmp_path / "out.jsonl"
    with open(target, "wb") as handle:
        os.chmod(target, 0o640 & 0o600)
        proc = subprocess.run(["python", "-m", "certkit", "issue-server", "p.test", "--format", "jsonl"], stdout=handle,
                              stderr=subprocess.PIPE, env=ca_env, text=True, cwd=tmp_path)
    assert proc.returncode == 0 and "made it 0600" not in proc.stderr
    piped = subprocess.run(["python", "-m", "certkit", "issue-server", "q.test", "--format", "jsonl"],
                           capture_output=True, env=ca_env, text=True, cwd=tmp_path)
    assert piped.returncode == 0 and "made it 0600" not in piped.stderr and "PRIVATE KEY" in piped.stdout


# --- 3. a line break above a bundle folder --------------------------------------------------------------------
@pytest.mark.parametrize("how", ["cwd", "relative", "absolute", "batch"])
def test_no_bundle_below_a_folder_with_a_line_break(ca_dir, ca_env, tmp_path, how):
    """fleet6 #3: only the part certkit created was checked, so a bundle below an existing folder
    named with a line break was written, and its renewal's CERTKIT_FOLDERS split it in two."""
    odd = tmp_path / "cw\nd"
    odd.mkdir()
    args, cwd = {"cwd": (["issue-server", "n.test"], odd), "relative": (["issue-server", "n.test", "--out", "cw\nd/x"],
                                                                       tmp_path),
                 "absolute": (["issue-server", "n.test", "--out", odd / "x"], tmp_path),
                 "batch": (["issue-batch", manifest(tmp_path, [("n.test", "x")]), "--out-dir", odd], tmp_path)}[how]
    proc = run_certkit(*args, env=ca_env, cwd=cwd)
    assert_clean_error(proc, "below a folder whose name holds a line break")
    assert list(odd.iterdir()) == []
    assert json.loads(run_certkit("list", "--json", env=ca_env, check=True).stdout)["certificates"] == []


# --- 4. a CA at its end: renewals end with it --------------------------------------------------------------------
def test_renewals_near_the_cas_end_end_with_it_every_run(tmp_path):
    """fleet6 #4: from the second run on, each renewal ended five minutes sooner than what it renewed
    (the capped lifetime, started again with the backdate), and the advice became "a longer lifetime"."""
    now = dt.datetime.now(dt.UTC)
    CADirectory(tmp_path / "ca").save_new(CA.create("Ten Day CA", days=10, not_before=now - dt.timedelta(days=8)),
                                          PASSPHRASE.encode())
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path))
    ca_end = x509.load_pem_x509_certificate((tmp_path / "ca" / "ca.pem").read_bytes()).not_valid_after_utc
    run_certkit("issue-server", "w.test", "--out", tmp_path / "w", env=env, check=True)
    for _ in range(3):
        proc = run_certkit("renew", "--expiring", "30d", env=env, check=True)
        assert "its CA ends then; create the CA's successor" in proc.stdout, proc.stdout
        assert "longer lifetime" not in proc.stdout
        cert = x509.load_pem_x509_certificate((tmp_path / "w" / "cert.pem").read_bytes())
        assert cert.not_valid_after_utc == ca_end
    rows = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]
    assert len(rows) == 4 and {r["not_after"] for r in rows} == {ca_end.strftime("%Y-%m-%dT%H:%M:%SZ")}
    # the library's renew too
    ca = CADirectory(tmp_path / "ca").load(PASSPHRASE.encode())
    assert ca.renew(cert).not_after == ca_end


# --- 5. removing linked units ------------------------------------------------------------------------------------
def test_remove_timer_refuses_while_systemd_links_to_the_units(tmp_path):
    """fleet6 #5: the units were removed first and the advice disabled only the timer, leaving the
    linked service dangling. Links made as ``systemctl link`` and ``enable`` make them."""
    ca = tmp_path / "ca"
    CADirectory(ca).save_new(CA.create("Timer CA"), PASSPHRASE.encode())
    secret = tmp_path / "pp"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    system, units = tmp_path / "system", tmp_path / "units"
    env = certkit_env(CERTKIT_CA_DIR=str(ca), CERTKIT_SYSTEMD_SYSTEM_DIR=str(system),
                      XDG_CONFIG_HOME=str(tmp_path / "config"), HOME=str(tmp_path))
    run_certkit("renew", "--install-timer", "--passphrase-file", secret, "--unit-dir", units, env=env, check=True)
    user = Path(env["XDG_CONFIG_HOME"]) / "systemd" / "user" if os.geteuid() else system
    (user / "timers.target.wants").mkdir(parents=True)
    links = [user / "certkit-renew.service", user / "certkit-renew.timer",
             user / "timers.target.wants" / "certkit-renew.timer"]
    for link in links:
        link.symlink_to(units / link.name)
    proc = run_certkit("renew", "--remove-timer", "--unit-dir", units, env=env)
    assert_clean_error(proc, "systemd still links to the units")
    assert "disable --now certkit-renew.timer certkit-renew.service' first" in proc.stderr
    assert sorted(p.name for p in units.iterdir()) == ["certkit-renew.service", "certkit-renew.timer"]
    for link in links:  # what the advised `systemctl disable` does
        link.unlink()
    proc = run_certkit("renew", "--remove-timer", "--unit-dir", units, env=env, check=True)
    assert list(units.iterdir()) == [] and "disable" not in proc.stdout


# --- 6. a CA directory through a link ----------------------------------------------------------------------------
def test_a_ca_directory_reached_through_a_link_works(ca_dir, tmp_path):
    """fleet6 #6: every command refused it, "mode 0777 ... chmod go-w LINK" (the link's own mode)."""
    (tmp_path / "current").symlink_to(ca_dir)
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "current"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("issue-server", "l.test", "--out", tmp_path / "l", env=env, check=True)
    openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", ca_dir / "ca.pem",
            tmp_path / "l" / "cert.pem")
    assert "l.test" in run_certkit("list", env=env, check=True).stdout
    ca_dir.chmod(0o777)  # what the link leads to is judged
    try:
        assert_clean_error(run_certkit("list", env=env), "has mode 0777")
    finally:
        ca_dir.chmod(0o700)


# --- 7. list by display columns ------------------------------------------------------------------------------------
def display_width(line: str) -> int:
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line)


@pytest.mark.parametrize("cols", [100, 80, 50])
def test_list_fits_wide_characters_in_the_terminal(ca_dir, ca_env, tmp_path, cols):
    """fleet6 #7: subjects in CJK or emoji were measured in characters and overflowed the terminal."""
    for name, folder in (("山田太郎の証明書テスト用クライアント", "y"), ("emoji 😀😀😀😀😀😀😀😀😀😀 user", "e"),
                         ("alice", "a")):
        run_certkit("issue-client", name, "--out", tmp_path / folder, env=ca_env, check=True)
    code, shown, _ = run_in_pty(["list"], env=ca_env | {"PAGER": "cat"}, cols=cols)
    assert code == 0, shown
    lines = [line.rstrip("\r") for line in shown.splitlines() if line.strip()]
    assert all(display_width(line) <= cols for line in lines), [(display_width(x), x) for x in lines]
    rows = [line for line in lines if " client " in line]
    assert len(rows) == 3
    starts = {display_width(line[:line.index("valid")]) for line in rows}
    assert len(starts) == 1  # the columns line up


# --- 8. skipped bundles are named ----------------------------------------------------------------------------------
def test_bulk_renew_names_what_it_skipped_and_why(ca_dir, ca_env, tmp_path):
    """fleet6 #8: with something renewed, the moved bundles were only counted; a folder whose cert.pem
    was replaced by hand was said to be "never written to one, or was moved"."""
    for i in (1, 4, 5, 7):
        run_certkit("issue-server", f"e{i}.test", "--days", "3", "--out", tmp_path / f"e{i}", env=ca_env, check=True)
    (tmp_path / "e1").rename(tmp_path / "moved1")
    (tmp_path / "e4" / "cert.pem").write_bytes((tmp_path / "e5" / "cert.pem").read_bytes())
    (tmp_path / "e7" / "cert.pem").unlink()
    proc = run_certkit("renew", "--expiring", "5d", "--days", "30", env=ca_env)
    assert proc.returncode == 1, proc.stderr  # round thirteen: e7, damaged (its other files still there), fails it
    assert "Renewed 1 of 2" in proc.stdout, proc.stdout
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("Warning: ")]
    assert len(warnings) == 3, proc.stderr
    said = {name: next(w for w in warnings if f"({name})" in w) for name in ("e1.test", "e4.test", "e7.test")}
    assert "was moved" in said["e1.test"]
    assert "now holds another certificate in cert.pem" in said["e4.test"]
    assert "holds privkey.pem, fullchain.pem, ca.pem but no cert.pem" in said["e7.test"]
