"""The thirteenth round's fleet findings (audits fleetserve13 and regress20), each as a class:

fleetserve13
1. a bulk renewal that leaves a due certificate unrenewed because its bundle is damaged (cert.pem empty, junk,
   a folder, or gone from a folder that still holds the bundle's other files) exits 1 with ``"ok": false``,
   and never says the bundle was "moved" or "deleted by hand"; a moved bundle still exits 0;
4. what a hook printed is kept (on standard error and in ``--json``) when the run is stopped (SIGTERM,
   SIGHUP) while it runs, in a bulk renewal and a single one;
5. an interrupted bulk renewal's ``--json`` lists each planned renewal it left undone (``not_done``) and
   counts them;
   (minor) renew.md says which passphrase variables hooks lose, truly.

regress20
7. a renewal that keeps the key writes bundle.p12 again with the owner, group and mode it had (root:daemon 0640
   stays so: a service reading it through its group is not locked out), and so does export-p12 --force over a
   bundle.p12 of the same key and password; a new key (--rekey), or another password, gets 0600 as before;
10. ``renew --install-timer --unit-dir DIR`` as a user whose $HOME does not exist is refused before any unit is
   written (it wrote both, then failed);
11. ``renew FOLDER`` and ``revoke FOLDER`` with a cert.pem behind a loop of links say the file system's error, as
   by serial (not "holds no cert.pem");
13. a passphrase file of several lines that does not unlock the CA key is said to hold several lines (as
   init-ca and export-p12 say), by crl, renew (single, bulk, --install-timer), issue-* and check;
14. a bundle folder whose name is 214 to 255 bytes (moved there with mv) is refused for renewal in place in words
   that say why (the folder assembled beside it), not as "the output folder", before anything is signed; --out
   renews it, and a 213-byte one renews in place.
"""

from __future__ import annotations

import grp
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import run_certkit
from integrity_helpers import signalled_once_started

ROOT = Path(__file__).resolve().parent.parent


def _issue(env: dict, folder: Path, name: str, days: str = "10") -> None:
    run_certkit("issue-server", name, "--days", days, "--out", folder, env=env, check=True)


# --- fleetserve13 #1: a damaged due bundle fails the run -------------------------------------------------------------
def _damage(folder: Path, how: str) -> None:
    cert = folder / "cert.pem"
    if how == "empty":
        cert.write_bytes(b"")
    elif how == "junk":
        cert.write_text("not a certificate\n")
    elif how == "a-key":
        cert.write_bytes((folder / "privkey.pem").read_bytes())
    elif how == "deleted-alone":
        cert.unlink()
    elif how == "a-folder":
        cert.unlink()
        cert.mkdir()
    elif how == "a-link-to-nothing":
        cert.unlink()
        cert.symlink_to("gone.pem")


@pytest.mark.parametrize("how", ["empty", "junk", "a-key", "deleted-alone", "a-folder", "a-link-to-nothing"])
def test_a_damaged_due_bundle_fails_the_bulk_renewal(ca_dir, ca_env, tmp_path, how):
    _issue(ca_env, tmp_path / "d", "d.example.com")
    _issue(ca_env, tmp_path / "k", "k.example.com")
    _damage(tmp_path / "d", how)
    proc = run_certkit("renew", "--expiring", "30d", "--json", env=ca_env)
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] is False and data["renewed"] == 1 and data["needs_attention"] == 1
    damaged = next(o for o in data["certificates"] if o["folder"] == str(tmp_path / "d"))
    assert (damaged["outcome"], damaged["why"]) == ("skipped", "damaged")
    for words in ("moved", "deleted by hand"):
        assert words not in damaged["reason"] and words not in proc.stderr, proc.stderr
    assert "Error: 1 due certificate was not renewed, its bundle damaged" in proc.stderr
    text = run_certkit("renew", "--expiring", "30d", env=ca_env)  # the same, said for people: every run fails
    assert text.returncode == 1 and f"skipped  {damaged['serial']}" in text.stdout, text.stdout


def test_a_damaged_bundle_is_named_as_it_is(ca_dir, ca_env, tmp_path):
    for name, how in (("gone", "deleted-alone"), ("dir", "a-folder")):
        _issue(ca_env, tmp_path / name, f"{name}.example.com")
        _damage(tmp_path / name, how)
    proc = run_certkit("renew", "--expiring", "30d", "--json", env=ca_env)
    reasons = {Path(o["folder"]).name: o["reason"] for o in json.loads(proc.stdout)["certificates"]}
    assert "is damaged: it holds privkey.pem, fullchain.pem, ca.pem but no cert.pem" in reasons["gone"]
    assert "is damaged: its cert.pem is a folder" in reasons["dir"]


def test_a_moved_or_wholly_deleted_bundle_still_exits_0(ca_dir, ca_env, tmp_path):
    """renew.md's exceptions stand: a bundle moved, or deleted with its folder's files, is warned of, exit 0."""
    _issue(ca_env, tmp_path / "moved", "moved.example.com")
    _issue(ca_env, tmp_path / "emptied", "emptied.example.com")
    (tmp_path / "moved").rename(tmp_path / "elsewhere")
    for file in (tmp_path / "emptied").iterdir():
        file.unlink()
    proc = run_certkit("renew", "--expiring", "30d", "--json", env=ca_env)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] is True and data["needs_attention"] == 2
    assert {o["why"] for o in data["certificates"]} == {"moved"}


# --- fleetserve13 #4 and #5: a stop during a hook ---------------------------------------------------------------------
def _hook(started: Path) -> str:
    return (f'echo start-$(basename "$RENEWED_LINEAGE"); trap "echo got-signal; exit 9" TERM HUP; touch {started}; '
            "sleep 30 & wait; echo end")


def test_an_interrupted_bulk_renewal_keeps_the_hooks_words_and_lists_what_it_left(ca_dir, ca_env, tmp_path):
    for name in ("a", "b", "c"):
        _issue(ca_env, tmp_path / name, f"{name}.example.com")
    started = tmp_path / "started"
    args = ["renew", "--expiring", "30d", "--days", "90", "--json", "--exec", _hook(started)]
    code, out, err = signalled_once_started(args, ca_env, started, signal.SIGTERM)
    assert code == 143, err
    data = json.loads(out)
    [renewed] = [o for o in data["certificates"] if o["outcome"] == "renewed"]
    first = Path(renewed["folder"]).name
    assert renewed["hook"]["output"] == f"start-{first}\ngot-signal\n", renewed["hook"]
    assert f"  start-{first}\n  got-signal\n" in err  # on standard error too, indented (round 35)
    assert data["interrupted"] is True and data["ok"] is False
    undone = [o for o in data["certificates"] if o["outcome"] == "not_done"]
    assert data["not_done"] == 2 and {Path(o["folder"]).name for o in undone} == {"a", "b", "c"} - {first}
    assert all(o["why"] == "interrupted" and "SIGTERM" in o["reason"] and "still due" in o["reason"]
               for o in undone), undone
    assert len(data["certificates"]) == 3
    assert "2 planned renewals were not done" in err


def test_a_single_renewal_stopped_by_sighup_keeps_the_hooks_words(ca_dir, ca_env, tmp_path):
    _issue(ca_env, tmp_path / "v", "v.example.com")
    started = tmp_path / "started"
    args = ["renew", tmp_path / "v", "--json", "--exec", _hook(started)]
    code, out, err = signalled_once_started(args, ca_env, started, signal.SIGHUP)
    assert code == 129, err
    run = json.loads(out)["exec"]
    assert run["output"] == "start-v\ngot-signal\n" and run["error"].startswith("interrupted (SIGHUP)"), run
    assert "  start-v\n  got-signal\n" in err  # indented under its heading (round 35)


def test_renew_md_names_the_secrets_hooks_lose_truly(ca_dir, ca_env, tmp_path):
    """fleetserve13 (minor): renew.md promised that every passphrase, password or PIN variable is removed;
    certkit's own are (and libpq's), other programs' are passed on, and the page now says so."""
    page = " ".join((ROOT / "docs" / "renew.md").read_text().split())
    assert "every other passphrase, password or PIN variable" not in page
    assert "other programs' variables, such as `MYSQL_PWD`, are passed on" in page
    _issue(ca_env, tmp_path / "h", "h.example.com")
    seen = tmp_path / "seen"
    env = ca_env | {"CERTKIT_P12_PASSWORD": "p12-secret", "CERTKIT_PKCS11_PIN": "1234", "PGPASSWORD": "pg",
                    "MYSQL_PWD": "mysql"}
    run_certkit("renew", tmp_path / "h", "--exec", f"env > {seen}", env=env, check=True)
    names = {line.split("=", 1)[0] for line in seen.read_text().splitlines() if "=" in line}
    assert not names & {"CERTKIT_CA_PASSPHRASE", "CERTKIT_P12_PASSWORD", "CERTKIT_PKCS11_PIN", "PGPASSWORD"}
    assert "MYSQL_PWD" in names and os.environ.get("MYSQL_PWD") is None


# --- regress20 #7: bundle.p12 keeps its group when it keeps its key ---------------------------------------------------
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another group needs root")


@pytest.fixture
def open_dir():
    """A folder every user can reach (pytest's own are its owner's alone), removed after the test."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="certkit-fleet13-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _daemon_reads(path: Path) -> bool:
    """Whether a process of the user and group daemon (no other groups) can read ``path``, as a service would."""
    import pwd

    user = pwd.getpwnam("daemon")

    def drop() -> None:
        os.setgroups([])
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return subprocess.run(["head", "-c", "1", str(path)], capture_output=True, timeout=30,
                          preexec_fn=drop).returncode == 0


def _give_to_daemon_group(path: Path) -> None:
    os.chown(path, 0, grp.getgrnam("daemon").gr_gid)
    path.chmod(0o640)


@needs_root
@pytest.mark.parametrize("bulk", [False, True], ids=["single", "bulk"])
def test_a_kept_key_renewal_keeps_the_group_of_bundle_p12(open_dir, ca_dir, ca_env, bulk):
    env = ca_env | {"CERTKIT_P12_PASSWORD": "p12-password-here"}
    folder = open_dir / "srv"
    _issue(env, folder, "srv.example.com")
    folder.chmod(0o755)
    run_certkit("export-p12", folder, env=env, check=True)
    p12 = folder / "bundle.p12"
    _give_to_daemon_group(p12)
    assert _daemon_reads(p12)
    before = p12.stat().st_ino
    run_certkit("renew", *(["--expiring", "30d"] if bulk else [folder]), env=env, check=True)
    info = p12.stat()
    assert info.st_ino != before  # written again (with the new certificate)
    assert (info.st_mode & 0o777, info.st_uid, grp.getgrgid(info.st_gid).gr_name) == (0o640, 0, "daemon")
    assert _daemon_reads(p12)
    opened = subprocess.run(["openssl", "pkcs12", "-in", p12, "-nokeys", "-passin", "pass:p12-password-here"],
                            capture_output=True, text=True, timeout=60)
    assert opened.returncode == 0 and (folder / "cert.pem").read_text().strip() in opened.stdout, opened.stderr
    run_certkit("renew", folder, "--rekey", env=env, check=True)  # a new key: the new secret's own mode, as ever
    assert (p12.stat().st_mode & 0o777, p12.stat().st_gid) == (0o600, 0)


@needs_root
def test_export_p12_force_keeps_the_group_of_a_bundle_p12_of_the_same_key(open_dir, ca_dir, ca_env):
    env = ca_env | {"CERTKIT_P12_PASSWORD": "p12-password-here"}
    folder = open_dir / "srv"
    _issue(env, folder, "srv.example.com")
    run_certkit("export-p12", folder, env=env, check=True)
    p12 = folder / "bundle.p12"
    _give_to_daemon_group(p12)
    proc = run_certkit("export-p12", folder, "--force", env=env, check=True)
    assert "(PKCS#12, mode 0640)" in proc.stdout
    assert (p12.stat().st_mode & 0o777, grp.getgrgid(p12.stat().st_gid).gr_name) == (0o640, "daemon")
    other = run_certkit("export-p12", folder, "--force", env=env | {"CERTKIT_P12_PASSWORD": "another-password"},
                        check=True)  # not known to hold the same key: its readers are not passed on
    assert "(PKCS#12, mode 0600)" in other.stdout and (p12.stat().st_mode & 0o777, p12.stat().st_gid) == (0o600, 0)


# --- regress20 #10: a $HOME that does not exist, refused before a unit is written ----------------------------------
@pytest.mark.parametrize("home", ["missing", "present"])
def test_install_timer_checks_home_before_writing_units(ca_dir, ca_env, tmp_path, monkeypatch, home):
    """As a user (not root: root's units are the system's and need no $HOME); the process's user id is all that
    is changed here, so that the user's unit folder is the one asked for."""
    secret = tmp_path / "passphrase"
    secret.write_text(ca_env["CERTKIT_CA_PASSPHRASE"] + "\n")
    secret.chmod(0o600)
    units = tmp_path / "units"
    home_dir = tmp_path / ("nonexistent" if home == "missing" else "home")
    if home == "present":
        home_dir.mkdir()
    env = {k: v for k, v in ca_env.items() if k not in ("CERTKIT_CA_PASSPHRASE", "XDG_CONFIG_HOME")}
    env["HOME"] = str(home_dir)
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    proc = run_certkit("renew", "--expiring", "30d", "--install-timer", "--unit-dir", units, "--passphrase-file",
                       secret, env=env)
    if home == "missing":
        assert proc.returncode == 1 and "is not an existing folder" in proc.stderr, proc.stderr
        assert not units.exists() or list(units.iterdir()) == [], list(units.iterdir())
    else:
        assert proc.returncode == 0, proc.stderr
        assert sorted(p.name for p in units.iterdir()) == ["certkit-renew.service", "certkit-renew.timer"]
        assert "systemctl --user link" in proc.stdout


# --- regress20 #11: a cert.pem behind a loop of links, given as a folder --------------------------------------------
@pytest.mark.parametrize("command", ["renew", "revoke"])
def test_a_cert_pem_behind_a_loop_of_links_is_said_when_the_folder_is_given(ca_dir, ca_env, tmp_path, command):
    from conftest import assert_clean_error

    folder = tmp_path / "srv"
    _issue(ca_env, folder, "srv.example.com")
    (folder / "cert.pem").unlink()
    (folder / "cert.pem").symlink_to("l1")
    (folder / "l1").symlink_to("l2")
    (folder / "l2").symlink_to("l1")
    for given in (folder, f"{folder}/", Path(os.path.relpath(folder))):
        proc = run_certkit(command, given, env=ca_env)
        assert_clean_error(proc, "cert.pem: Too many levels of symbolic links.")
        assert "holds no cert.pem" not in proc.stderr


# --- regress20 #13: a passphrase file of several lines ----------------------------------------------------------------
@pytest.mark.parametrize("content", ["{p}\nextra\n", "{p}\n\n"], ids=["two-lines", "a-blank-line-after"])
def test_a_passphrase_file_of_several_lines_is_said_so_when_it_unlocks_nothing(ca_dir, ca_env, tmp_path, content):
    from conftest import assert_clean_error

    _issue(ca_env, tmp_path / "srv", "srv.example.com")
    secret = tmp_path / "p2"
    secret.write_text(content.format(p=ca_env["CERTKIT_CA_PASSPHRASE"]))
    secret.chmod(0o600)
    env = {k: v for k, v in ca_env.items() if k != "CERTKIT_CA_PASSPHRASE"}
    said = f"The file {secret} holds a secret of several lines, taken whole; a passphrase is one line"
    for args in (["crl", "--out", tmp_path / "c.pem"], ["renew", tmp_path / "srv"], ["renew", "--expiring", "30d"],
                 ["issue-server", "b.example.com", "--out", tmp_path / "b"],
                 ["renew", "--expiring", "30d", "--install-timer", "--unit-dir", tmp_path / "units"]):
        proc = run_certkit(*args, "--passphrase-file", secret, env=env)
        assert_clean_error(proc, said)
    assert not (tmp_path / "units").exists() and not (tmp_path / "b").exists()
    checked = run_certkit("check", "--passphrase-file", secret, env=env)
    assert checked.returncode == 1 and "holds a secret of several lines" in checked.stdout + checked.stderr
    secret.write_text(ca_env["CERTKIT_CA_PASSPHRASE"] + "\n")  # one line, one trailing newline: it opens
    run_certkit("crl", "--out", tmp_path / "c.pem", "--passphrase-file", secret, env=env, check=True)


# --- regress20 #14: a bundle folder of a long name -------------------------------------------------------------------
def test_a_bundle_folder_of_a_long_name_is_refused_in_place_in_true_words(ca_dir, ca_env, tmp_path):
    from conftest import assert_clean_error

    _issue(ca_env, tmp_path / "srv", "srv.example.com")
    long = tmp_path / ("g" * 230)
    (tmp_path / "srv").rename(long)
    before = run_certkit("list", "--json", env=ca_env).stdout
    proc = run_certkit("renew", long, env=ca_env)
    assert_clean_error(proc, "cannot be renewed in place: its name is 230 bytes long")
    assert "output folder" not in proc.stderr and "Rename the folder to a name of at most 213 bytes" in proc.stderr
    assert run_certkit("list", "--json", env=ca_env).stdout == before  # nothing signed nor recorded
    run_certkit("renew", long, "--out", tmp_path / "new", env=ca_env, check=True)
    edge = tmp_path / ("h" * 213)
    _issue(ca_env, edge, "edge.example.com")
    run_certkit("renew", edge, env=ca_env, check=True)  # the longest name certkit can renew in place
