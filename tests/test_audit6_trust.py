"""Audit trust6 (`certkit trust`), each finding as a class, proven with the stores' own tools (certutil -L,
vfychain, keytool -list) and Chromium; every command names --nss or --java, with a private HOME, a
private JDK and a private system-store layout: the machine's stores are never touched.

1/9. the dates of the intermediate of an intermediate CA directory count as the root's: expired (install
     refuses), expiring within 30 days, not valid yet; a root not valid yet is warned about too.
2.   install into a password-protected database that holds certkit's copy already: unchanged, no password asked.
3.   the password advice names the root's file by absolute path (following it works); status reports the CA
     directory's own intermediate trusted by hand as Chromium sees it: trusted.
4.   `status --nss` under sudo reports the database `install --nss` changed.
5.   Firefox and Thunderbird profiles under $XDG_CONFIG_HOME (default ~/.config) are found.
6.   a Java alias or system-store file of certkit's form holding another certificate is not certkit's.
7.   the macOS and Windows notes fit the action.
8.   one NSS database reached by several paths is one store.
10.  a locked NSS database is said to be in use, a damaged one damaged.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_probe import openssl_server

from certkit.trust import Anchor

from conftest import certkit_env, require, run_certkit
from trust_helpers import chromium, keytool_listing, nss_listing, nss_verifies, private_java_home

NOW = dt.datetime.now(dt.UTC)


@dataclass
class PKI:
    root: Path
    issuing: Path  # an intermediate CA directory: what install trusts is the root above it
    server: Path  # cert.pem, privkey.pem of localhost, from the intermediate
    anchor: Anchor


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    work = tmp_path_factory.mktemp("audit6-trust")
    env = certkit_env()
    run_certkit("init-ca", "--ca-dir", work / "root", "--name", "Audit6 Root", "--permit-dns", "localhost",
                "--permit-ip", "127.0.0.1/32", "--no-passphrase", env=env, check=True)
    run_certkit("init-ca", "--ca-dir", work / "issuing", "--parent-ca-dir", work / "root", "--name",
                "Audit6 Issuing", "--no-passphrase", env=env, check=True)
    run_certkit("issue-server", "--ca-dir", work / "issuing", "localhost", "127.0.0.1", env=env, cwd=work,
                check=True)
    return PKI(work / "root", work / "issuing", work / "localhost", Anchor.from_ca_dir(work / "issuing"))


def trust(*args: object, home: Path, ca_dir: Path | None = None, env: dict | None = None
          ) -> subprocess.CompletedProcess:
    """``certkit trust ARGS`` with a private HOME; no XDG_CONFIG_HOME unless ``env`` gives one."""
    assert {"--nss", "--java"} & set(map(str, args)) or "--platform" in map(str, args), "name a private store"
    full = certkit_env(HOME=str(home))
    full.pop("XDG_CONFIG_HOME", None)
    full.update(env or {})
    proc = run_certkit("trust", *map(str, args), *(["--ca-dir", ca_dir] if ca_dir else []), env=full)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def stores(proc: subprocess.CompletedProcess) -> dict[str, dict]:
    return {s["location"]: s for s in json.loads(proc.stdout)["stores"]}


def new_db(db: Path, password: Path | None = None) -> Path:
    require("certutil")
    db.mkdir(parents=True)
    how = ["-f", str(password)] if password else ["--empty-password"]
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", *how], check=True, capture_output=True)
    return db


def add_by_hand(db: Path, nickname: str, pem: bytes, password: Path | None = None) -> None:
    subprocess.run(["certutil", "-A", "-d", f"sql:{db}", "-n", nickname, "-t", "C,,",
                    *(["-f", str(password)] if password else [])], input=pem, check=True, capture_output=True)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1 and len([ln for ln in lines if ln.startswith("Error:")]) == 1, proc.stderr
    return next(ln for ln in lines if ln.startswith("Error:"))


# --- 1 and 9: the dates of the root and of the intermediate ----------------------------------------
def _cas(tmp_path: Path, which: str, when: str) -> Path:
    """A CA directory whose root (``which``: root) or intermediate (intermediate) is expired, expiring or
    not valid yet (``when``); the other CA is valid for years."""
    from certkit import CA
    from certkit.store import CADirectory

    dates = {"expired": (NOW - dt.timedelta(days=3), 1), "expiring": (NOW - dt.timedelta(hours=1), 10),
             "future": (NOW + dt.timedelta(days=5), 30)}[when]
    if which == "root":
        CADirectory(tmp_path / "ca").save_new(CA.create("Dated Root", permitted_dns=["localhost"],
                                                        not_before=dates[0], days=dates[1]), None)
        return tmp_path / "ca"
    root = CA.create("Dated Root", permitted_dns=["localhost"], not_before=NOW - dt.timedelta(days=10))
    CADirectory(tmp_path / "root").save_new(root, None)
    root = CADirectory(tmp_path / "root").load(None)
    ca = CA.create("Dated Issuing", parent=root, not_before=dates[0], days=dates[1], directory=tmp_path / "int")
    CADirectory(tmp_path / "int").save_new(ca, None, parent=root)
    return tmp_path / "int"


@pytest.mark.parametrize("which, when", [("intermediate", "expired"), ("intermediate", "expiring"),
                                         ("intermediate", "future"), ("root", "future")])
def test_the_dates_of_root_and_intermediate_are_checked_in_install_and_status(tmp_path: Path, which: str, when: str):
    ca_dir = _cas(tmp_path, which, when)
    anchor = Anchor.from_ca_dir(ca_dir)
    home = tmp_path / "home"
    db = new_db(home / ".pki/nssdb")
    empty = nss_listing(db)
    name = "\"Dated Issuing\" (below the trusted root \"Dated Root\")" if which == "intermediate" else \
        "\"Dated Root\""
    said = {"expired": "expired on", "expiring": "expires on", "future": "is not valid before"}[when]
    install = trust("install", "--nss", "--json", home=home, ca_dir=ca_dir)
    if when == "expired":
        # Nothing the directory signs would validate: refused, the database as it was.
        assert json.loads(install.stdout)["exit"] == 1
        assert "The intermediate CA \"Dated Issuing\"" in json.loads(install.stdout)["error"]
        assert "would make nothing it signs valid" in json.loads(install.stdout)["error"]
        text = one_error_line(trust("install", "--nss", home=home, ca_dir=ca_dir))
        assert "expired on" in text and nss_listing(db) == empty
        add_by_hand(db, anchor.nickname, anchor.pem)  # as an install before it expired left it
    else:
        assert install.returncode == 0 and stores(install)[str(db)]["outcome"] == "added", install.stdout
        assert any(w.startswith(f"the {'intermediate' if which == 'intermediate' else 'trusted'} CA {name} {said}")
                   for w in json.loads(install.stdout)["warnings"]), install.stdout
    assert anchor.nickname in nss_listing(db)
    status = trust("status", "--nss", "--json", home=home, ca_dir=ca_dir)
    report = json.loads(status.stdout)
    assert stores(status)[str(db)]["outcome"] == "trusted"
    (warning,) = [w for w in report["warnings"] if said in w]
    assert name in warning, report["warnings"]
    if when == "expiring":
        assert "in 9 days" in warning
    text = trust("status", "--nss", home=home, ca_dir=ca_dir)
    assert f"Warning: {warning}" in text.stderr
    if which == "intermediate":  # the header names both dates
        ends = anchor.intermediate_cert.not_valid_after_utc
        verb = "expired" if when == "expired" else "expires"  # a past end is said as past (test_audit24_main)
        assert f"root of the intermediate \"Dated Issuing\" ({verb} {ends:%Y-%m-%d %H:%M:%S} UTC)" in text.stdout


# --- 2. a password-protected database that holds the CA already -----------------------------------
def test_reinstall_into_a_password_protected_database_is_unchanged(pki: PKI, tmp_path: Path):
    home = tmp_path / "home"
    password = tmp_path / "pw"
    password.write_text("primary password\n")
    db = new_db(home / ".pki/nssdb", password)
    add_by_hand(db, pki.anchor.nickname, pki.anchor.pem, password)  # what an earlier install left
    listing = nss_listing(db)
    proc = trust("install", "--nss", "--json", home=home, ca_dir=pki.issuing)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (stores(proc)[str(db)]["outcome"], stores(proc)[str(db)]["current"]) == ("unchanged", pki.anchor.nickname)
    assert nss_listing(db) == listing
    # The same database without the CA: the password is needed, and install says so.
    trust("uninstall", "--nss", home=home, ca_dir=pki.issuing)
    assert pki.anchor.name not in nss_listing(db)
    skipped = trust("install", "--nss", home=home, ca_dir=pki.issuing)
    assert "protected by a password" in one_error_line(skipped)


# --- 3. the advice names the root; the intermediate trusted by hand --------------------------------
@pytest.mark.parametrize("ca", ["issuing", "root"])
def test_the_password_advice_names_the_roots_file_and_following_it_works(pki: PKI, tmp_path: Path, ca: str):
    ca_dir = getattr(pki, ca)
    home = tmp_path / "home"
    password = tmp_path / "pw"
    password.write_text("primary password\n")
    db = new_db(home / ".pki/nssdb", password)
    root_file = ca_dir.resolve() / ("parents.pem" if ca == "issuing" else "ca.pem")
    advice = shlex.join(["certutil", "-A", "-d", f"sql:{db}", "-t", "C,,", "-n", pki.anchor.nickname, "-i",
                         str(root_file)])
    text = one_error_line(trust("install", "--nss", home=home, ca_dir=ca_dir))
    assert text.endswith(f"add the CA yourself: {advice}"), text  # no full stop on the path (trust7 #5)
    subprocess.run([*shlex.split(advice), "-f", str(password)], check=True, capture_output=True)  # followed
    assert nss_verifies(db, pki.server / "cert.pem", pki.issuing / "ca.pem").returncode == 0
    status = trust("status", "--nss", "--json", home=home, ca_dir=ca_dir)
    assert (stores(status)[str(db)]["outcome"], stores(status)[str(db)]["current"]) == ("trusted",
                                                                                       pki.anchor.nickname)
    again = trust("install", "--nss", "--json", home=home, ca_dir=ca_dir)
    assert again.returncode == 0 and stores(again)[str(db)]["outcome"] == "unchanged"


def test_status_reports_the_intermediate_trusted_by_hand_as_chromium_sees_it(pki: PKI, tmp_path: Path):
    require("chromium")
    home = tmp_path / "home"
    db = new_db(home / ".pki/nssdb")
    add_by_hand(db, "Issuing by hand", (pki.issuing / "ca.pem").read_bytes())
    listing = nss_listing(db)
    with openssl_server("-cert", pki.server / "cert.pem", "-key", pki.server / "privkey.pem") as port:
        url = f"https://localhost:{port}/"
        assert "s_server" in chromium(url, home, tmp_path / "chromium-1").stdout  # Chromium trusts it
        assert "s_server" not in chromium(url, tmp_path, tmp_path / "chromium-2").stdout  # (not without it)
    status = trust("status", "--nss", home=home, ca_dir=pki.issuing)
    assert status.returncode == 0
    assert status.stdout.splitlines()[2] == f"trusted  nss     Chromium/Chrome: {db}", status.stdout
    assert ("trusted as Issuing by hand (added by hand: the intermediate \"Audit6 Issuing\" itself, not the root "
            "certkit installs)") in status.stdout
    (store,) = json.loads(trust("status", "--nss", "--json", home=home, ca_dir=pki.issuing).stdout)["stores"]
    assert (store["current"], store["intermediate_trusted_as"]) == (None, ["Issuing by hand"])
    gone = trust("uninstall", "--nss", "--every-certkit-ca", "--json", home=home, ca_dir=pki.issuing)
    assert stores(gone)[str(db)]["outcome"] == "absent" and nss_listing(db) == listing


# --- 4. status --nss under sudo ----------------------------------------------------------------
def test_status_nss_under_sudo_reports_the_database_install_changed(pki: PKI, tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("needs root, as sudo gives")
    home = tmp_path / "home"
    db = new_db(home / ".pki/nssdb")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "certutil").symlink_to(shutil.which("certutil"))
    env = {"SUDO_USER": "nobody", "PATH": str(bin_dir)}
    assert stores(trust("install", "--nss", "--json", home=home, ca_dir=pki.issuing, env=env))[str(db)][
        "outcome"] == "added"
    assert pki.anchor.nickname in nss_listing(db)
    status = trust("status", "--nss", "--json", home=home, ca_dir=pki.issuing, env=env)
    assert (stores(status)[str(db)]["outcome"], stores(status)[str(db)]["code"]) == ("trusted", None), status.stdout
    bare = trust("status", "--nss", home=home, ca_dir=pki.issuing, env={**env, "SUDO_USER": ""})
    assert "trusted  nss" in bare.stdout
    gone = trust("uninstall", "--nss", "--json", home=home, ca_dir=pki.issuing, env=env)
    assert stores(gone)[str(db)]["outcome"] == "removed" and pki.anchor.name not in nss_listing(db)


# --- 5. profiles under $XDG_CONFIG_HOME ---------------------------------------------------------
def _profile(base: Path, folder: str) -> Path:
    base.mkdir(parents=True, exist_ok=True)
    (base / "profiles.ini").write_text(f"[Profile0]\nName=main\nIsRelative=1\nPath={folder}\nDefault=1\n\n"
                                       "[General]\nStartWithLastProfile=1\nVersion=2\n")
    return new_db(base / folder)


@pytest.mark.parametrize("xdg", [None, "elsewhere/config"], ids=["~/.config", "XDG_CONFIG_HOME"])
def test_firefox_and_thunderbird_profiles_under_xdg_config_home_are_found(pki: PKI, tmp_path: Path, xdg: str | None):
    home = tmp_path / "home"
    home.mkdir()  # a $HOME that is not there is refused (round nine)
    config = tmp_path / xdg if xdg else home / ".config"
    firefox = _profile(config / "mozilla/firefox", "abcd.default-release")
    thunderbird = _profile(config / "thunderbird", "efgh.default")
    env = {"XDG_CONFIG_HOME": str(config)} if xdg else {}
    proc = trust("install", "--nss", "--json", home=home, ca_dir=pki.issuing, env=env)
    found = stores(proc)
    assert (found[str(firefox)]["label"], found[str(firefox)]["outcome"]) == ("Firefox profile main", "added")
    assert (found[str(thunderbird)]["label"], found[str(thunderbird)]["outcome"]) == ("Thunderbird profile main",
                                                                                      "added")
    for db in (firefox, thunderbird):
        assert pki.anchor.nickname in nss_listing(db)
        assert nss_verifies(db, pki.server / "cert.pem", pki.issuing / "ca.pem").returncode == 0
    gone = trust("uninstall", "--nss", "--json", home=home, ca_dir=pki.issuing, env=env)
    assert stores(gone)[str(firefox)]["outcome"] == stores(gone)[str(thunderbird)]["outcome"] == "removed"
    assert pki.anchor.name not in nss_listing(firefox) + nss_listing(thunderbird)


def test_a_relative_xdg_config_home_is_ignored_as_the_spec_says(pki: PKI, tmp_path: Path):
    home = tmp_path / "home"
    firefox = _profile(home / ".config/mozilla/firefox", "a.default")
    (tmp_path / "rel/mozilla/firefox").mkdir(parents=True)
    proc = trust("status", "--nss", "--json", home=home, ca_dir=pki.issuing, env={"XDG_CONFIG_HOME": "rel"})
    assert stores(proc)[str(firefox)]["outcome"] == "not trusted"


# --- 6. names of certkit's form holding another certificate: Java and the system store --------------
@pytest.fixture
def other_ca(tmp_path: Path) -> Anchor:
    run_certkit("init-ca", "--ca-dir", tmp_path / "other", "--name", "Other CA", "--permit-dns", "home.arpa",
                "--no-passphrase", env=certkit_env(), check=True)
    return Anchor.from_ca_dir(tmp_path / "other")


def test_a_java_alias_of_certkits_form_holding_another_certificate_is_left_alone(pki: PKI, tmp_path: Path,
                                                                                   other_ca: Anchor):
    require("keytool")
    real = Path(os.environ["JAVA_HOME"]) if os.environ.get("JAVA_HOME") else \
        Path(require("java")).resolve().parent.parent
    java_home = private_java_home(real, tmp_path, debian_link=False)
    cacerts = java_home / "lib/security/cacerts"
    env = {"JAVA_HOME": str(java_home), "PATH": f"{java_home / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    stranger = "certkit-0123456789abcdef-someone"
    for alias in (pki.anchor.file_stem, stranger):  # this CA's alias, and another of certkit's form
        subprocess.run([str(java_home / "bin/keytool"), "-importcert", "-noprompt", "-alias", alias, "-keystore",
                        str(cacerts), "-storepass", "changeit"], input=other_ca.pem, check=True, capture_output=True)
    listing = keytool_listing(cacerts)
    assert listing[pki.anchor.file_stem] == listing[stranger]

    status = trust("status", "--java", "--json", home=tmp_path, ca_dir=pki.issuing, env=env)
    (store,) = json.loads(status.stdout)["stores"]
    assert (store["outcome"], store["older"], store["elsewhere"]) == ("not trusted", [], []), store
    for alias in (pki.anchor.file_stem, stranger):
        assert (f"'{alias}' has the form of a certkit name, but holds a certificate whose fingerprint it does not "
                "carry (CN=Other CA): certkit did not add it, and leaves it alone") in store["notes"]
    assert not [w for w in json.loads(status.stdout)["warnings"] if "certkit CA" in w]
    install = trust("install", "--java", "--json", home=tmp_path, ca_dir=pki.issuing, env=env)
    (store,) = json.loads(install.stdout)["stores"]
    assert install.returncode == 1 and store["outcome"] == "failed"
    assert store["reason"].startswith(f"the alias {pki.anchor.file_stem} in {cacerts} holds another certificate")
    every = trust("uninstall", "--java", "--every-certkit-ca", "--json", home=tmp_path, env=env)
    assert json.loads(every.stdout)["stores"][0]["outcome"] == "absent", every.stdout
    assert keytool_listing(cacerts) == listing


def test_a_system_store_file_of_certkits_form_holding_another_certificate_is_left_alone(pki: PKI, tmp_path: Path,
                                                                                        other_ca: Anchor):
    """A private layout of the system store (its anchors folder and bundle in the test's folder; refreshing it
    is `true`): the machine's store is not involved."""
    from certkit.trust import SystemLayout, SystemStore, install, status, uninstall

    anchors = tmp_path / "anchors"
    anchors.mkdir()
    names = [f"{pki.anchor.file_stem}.crt", "certkit-0123456789abcdef-someone.crt"]
    for name in names:
        (anchors / name).write_bytes(other_ca.pem)
    (tmp_path / "bundle.pem").write_bytes(other_ca.pem)
    store = SystemStore(SystemLayout("Private", anchors, ".crt", ("true",), ("true",), tmp_path / "bundle.pem",
                                     "coreutils"), {"PATH": "/usr/bin:/bin"})
    (result,) = status(pki.anchor, [store])
    assert (result.outcome, result.state.older, result.state.elsewhere) == ("not trusted", [], [])
    assert [n for n in result.notes if "has the form of a certkit name" in n and "(CN=Other CA)" in n] == [
        f"'{name}' has the form of a certkit name, but holds a certificate whose fingerprint it does not carry "
        "(CN=Other CA): certkit did not add it, and leaves it alone" for name in sorted(names)]
    (everything,) = status(None, [store])
    assert everything.outcome == "none"
    if os.geteuid() != 0:
        pytest.skip("changing a system store needs root (CI runs as root)")
    (added,) = install(pki.anchor, [store])
    assert added.outcome == "failed" and "does not hold this CA" in added.reason
    (gone,) = uninstall(None, [store], every_certkit_ca=True)
    assert (gone.outcome, gone.removed) == ("absent", [])
    assert sorted(p.name for p in anchors.iterdir()) == sorted(names)
    assert all((anchors / n).read_bytes() == other_ca.pem for n in names)


# --- 7. the notes on macOS and Windows ------------------------------------------------------------
@pytest.mark.parametrize("platform", ["darwin", "win32"])
@pytest.mark.parametrize("action", ["install", "status", "uninstall"])
def test_the_macos_and_windows_note_fits_the_action(pki: PKI, tmp_path: Path, platform: str, action: str):
    proc = trust(action, "--platform", platform, home=tmp_path, ca_dir=pki.root)
    assert proc.returncode == 0, proc.stderr
    commands = json.loads(trust(action, "--platform", platform, "--json", home=tmp_path, ca_dir=pki.root).stdout)[
        "commands"]
    note = proc.stdout.splitlines()[-1]
    assert proc.stdout.splitlines()[-1 - len(commands):-1] == [f"  {c}" for c in commands]
    if action != "install":
        assert "adds it" not in note and "new root" not in note, note
    expected = {
        ("darwin", "install"): "(the first command adds it for all users;",
        ("darwin", "status"): "(the first command shows whether the System keychain holds it, the second whether "
                              "macOS trusts it;",
        ("darwin", "uninstall"): "(the first command takes away its trust settings, the second deletes it from the "
                                 "System keychain;",
        ("win32", "install"): "(Windows asks you to confirm the new root;",
        ("win32", "status"): "(the first command shows whether your Root store holds it;",
        ("win32", "uninstall"): "(Windows may ask you to confirm the removal;",
    }[platform, action]
    assert note.startswith(expected), note


# --- 8. one database, several paths ---------------------------------------------------------------
def test_one_nss_database_reached_by_several_paths_is_one_store(pki: PKI, tmp_path: Path):
    home = tmp_path / "home"
    firefox = home / ".mozilla/firefox"
    db = new_db(firefox / "a.default")
    (home / ".pki").mkdir()
    (home / ".pki/nssdb").symlink_to(db)  # Chromium sharing Firefox's database
    (firefox / "profiles.ini").write_text(f"[Profile0]\nName=default\nIsRelative=1\nPath=a.default\nDefault=1\n\n"
                                          f"[Profile1]\nName=abs\nIsRelative=0\nPath={db}\n")
    proc = trust("install", "--nss", "--json", home=home, ca_dir=pki.issuing)
    (store,) = json.loads(proc.stdout)["stores"]
    assert (store["location"], store["outcome"]) == (str(home / ".pki/nssdb"), "added"), proc.stdout
    assert store["aliases"] == [f"Firefox profile default: {db}", f"Firefox profile abs: {db}"]
    assert nss_listing(db).count(pki.anchor.nickname) == 1
    text = trust("status", "--nss", home=home, ca_dir=pki.issuing)
    assert f"also Firefox profile abs: {db} (the same database)" in text.stdout
    assert [ln.split()[0] for ln in text.stdout.splitlines() if " nss " in ln] == ["trusted"]
    gone = trust("uninstall", "--nss", "--json", home=home, ca_dir=pki.issuing)
    assert [s["outcome"] for s in json.loads(gone.stdout)["stores"]] == ["removed"]
    assert pki.anchor.name not in nss_listing(db)


# --- 10. locked, or damaged ---------------------------------------------------------------------
LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()  # until the test closes it
"""


def test_a_locked_nss_database_is_said_to_be_in_use_and_a_damaged_one_damaged(pki: PKI, tmp_path: Path):
    home = tmp_path / "home"
    db = new_db(home / ".pki/nssdb")
    listing = nss_listing(db)
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(db / "cert9.db")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline() == "locked\n"
        for action in ("install", "status", "uninstall"):
            text = one_error_line(trust(action, "--nss", home=home, ca_dir=pki.issuing))
            assert f"{db / 'cert9.db'} is locked by another program, possibly a running browser" in text, text
            assert "close it and run again" in text and "damaged:" not in text
    finally:
        locker.stdin.close()
        locker.wait(10)
    assert nss_listing(db) == listing
    assert stores(trust("install", "--nss", "--json", home=home, ca_dir=pki.issuing))[str(db)]["outcome"] == "added"
    assert pki.anchor.nickname in nss_listing(db)
    (db / "cert9.db").write_bytes((db / "cert9.db").read_bytes()[:3000])  # cut short
    text = one_error_line(trust("status", "--nss", home=home, ca_dir=pki.issuing))
    assert f"({db / 'cert9.db'} is damaged: SQLite cannot read it:" in text and "is locked" not in text, text
