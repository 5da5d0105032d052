"""Round 29, wording3: a write refused is said as a write ("Cannot write X: permission denied"), also where no
option names the place written (init-ca's per-user CA directory) and in the catch-all (``describe_os_error``),
which said "Cannot read the file or folder X" or a bare "permission denied (X)" for any refusal it got."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import assert_clean_error
from nobody_runner import NOBODY, runner_while_used

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")


@pytest.fixture(scope="module")
def runner():
    found = next(gen := runner_while_used())
    if found is None or not found.as_nobody:
        pytest.skip("certkit cannot be run as the user nobody here")
    yield found
    next(gen, None)


@pytest.fixture
def home(runner) -> Path:
    """A HOME of nobody's, in a folder every user may search."""
    place = Path(runner.folder) / f"home-{os.urandom(4).hex()}"
    place.mkdir(mode=0o755)
    os.chown(place, NOBODY, NOBODY)
    return place


def _closed(place: Path) -> Path:
    """A folder of root's (0700) that nobody may not search."""
    place.mkdir(mode=0o700)
    return place


def as_nobody(runner, home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(runner.argv(*args), env=runner.env({"PATH": "/usr/bin:/bin", "HOME": str(home), **env}),
                          cwd=home, capture_output=True, text=True, timeout=120)


def test_init_ca_into_the_per_user_ca_directory_under_a_folder_one_may_not_search_is_said_as_a_write(
        runner, home) -> None:
    """init-ca without --ca-dir or $CERTKIT_CA_DIR makes the per-user CA directory ($XDG_DATA_HOME/certkit, else
    ~/.local/share/certkit); under a folder nobody may not search it said "Cannot read the file or folder
    .../certkit/ca.pem: Permission denied", as if it read a CA there, where --ca-dir says "Cannot write"."""
    xdg = _closed(home / "xdg")
    proc = as_nobody(runner, home, "-m", "certkit", "init-ca", "--name", "W29", "--no-passphrase",
                     XDG_DATA_HOME=str(xdg))
    assert_clean_error(proc, f"Cannot write the CA directory {xdg}/certkit: permission denied ({xdg}).")
    local = _closed(home / ".local")
    proc = as_nobody(runner, home, "-m", "certkit", "init-ca", "--name", "W29", "--no-passphrase", "--json")
    assert_clean_error(proc, f"Cannot write the CA directory {local}/share/certkit: permission denied ({local}).")
    assert os.listdir(xdg) == [] and os.listdir(local) == []
    # as --ca-dir's is said (round 28), and a CA that exists there is still read as one
    proc = as_nobody(runner, home, "-m", "certkit", "init-ca", "--name", "W29", "--no-passphrase",
                     "--ca-dir", f"{xdg}/certkit")
    assert_clean_error(proc, f"Cannot write the folder {xdg}/certkit: permission denied ({xdg}).")
    os.chmod(home / ".local", 0o755)
    os.chown(home / ".local", NOBODY, NOBODY)
    made = as_nobody(runner, home, "-m", "certkit", "init-ca", "--name", "W29", "--no-passphrase")
    assert made.returncode == 0, made.stderr
    again = as_nobody(runner, home, "-m", "certkit", "init-ca", "--name", "W29", "--no-passphrase")
    assert_clean_error(again, f"A CA already exists in {local}/share/certkit")


# Each act done for real as the user nobody (the kernel refuses it), then said by the command line's catch-all.
_ACTS_SAID = r'''
import os, sys
from pathlib import Path
from certkit.cli.failures import describe_os_error
closed, ro, secret = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
acts = [lambda: open(closed / "crl.pem", "w"), lambda: open(closed / "crl.pem"),
        lambda: open(ro / "certkit-renew.timer", "x"), lambda: (ro / "index.txt").write_text("1\n"),
        lambda: os.open(ro / "inventory.sqlite3", os.O_WRONLY | os.O_CREAT, 0o600), lambda: os.mkdir(ro / "journal"),
        lambda: os.replace(ro.parent / "spare", ro / "bundle.p12"), lambda: open(ro / "kept.pem", "a"),
        lambda: open(ro / "kept.pem").read() and open(secret, "rb")]
for act in acts:
    try:
        act()
    except OSError as exc:
        print(describe_os_error(exc))
    else:
        print("done")
'''


def test_the_catch_all_says_a_write_refused_as_a_write_and_a_read_refused_as_a_read(runner, home) -> None:
    """describe_os_error, the command line's words for an OSError the library did not anticipate, said "Cannot
    read the file or folder X: Permission denied." for any refusal under a folder one may not search, a write
    too, and a bare "permission denied (X)." for one elsewhere. It says the act refused now: "Cannot write X"
    for a file made, created exclusively, written, appended to or replaced, a folder made; "Cannot read X" for a
    read, as far as what the path is now tells it. A refusal under a folder one may not search, or of a change to
    a file one may read, cannot be told apart: said as before."""
    closed = _closed(home / "closed")
    ro = home / "ro"
    ro.mkdir()
    (ro / "kept.pem").write_text("kept\n")
    (ro / "kept.pem").chmod(0o444)
    (home / "spare").write_text("spare\n")
    secret = home / "secret"
    secret.write_text("root's\n")
    secret.chmod(0o600)
    for path in (ro, ro / "kept.pem", home / "spare"):
        os.chown(path, NOBODY, NOBODY)
    ro.chmod(0o555)
    script = home / "acts.py"
    script.write_text(_ACTS_SAID)
    proc = as_nobody(runner, home, script.as_posix(), str(closed), str(ro), str(secret))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.splitlines() == [
        *[f"Cannot read the file or folder {closed}/crl.pem: Permission denied."] * 2,
        *[f"Cannot write {ro}/{name}: permission denied." for name in (
            "certkit-renew.timer", "index.txt", "inventory.sqlite3", "journal", "bundle.p12")],
        f"permission denied ({ro}/kept.pem).",  # appending to a file one may read: a write or a change of mode alike
        f"Cannot read {secret}: permission denied.",
    ], proc.stdout
    assert not (ro / "certkit-renew.timer").exists() and not (ro / "journal").exists()


@pytest.mark.skipif(not shutil.which("certutil"), reason="needs certutil")
def test_trust_install_nss_under_a_folder_one_may_not_search_is_said_as_a_write(runner, home) -> None:
    """trust install --nss, with a Chromium-family browser installed and ~/.pki a folder nobody may not search,
    said "Error: Cannot read the file or folder ~/.pki/nssdb/cert9.db: Permission denied." (the catch-all, as
    its look for a database raised); a ~/.pki nobody may search but not write said "~/.pki is not writable by
    this user". It is now said in the same way, as a write refused, naming that folder; so is a Firefox profile
    under such a folder (it said "no certificate database yet; start Firefox once")."""
    tools = home / "bin"  # certutil and a stand-in chromium: no java or keytool on this PATH
    tools.mkdir()
    os.symlink(shutil.which("certutil"), tools / "certutil")
    (tools / "chromium").write_text("#!/bin/sh\nexit 0\n")
    (tools / "chromium").chmod(0o755)
    env = {"PATH": str(tools), "CERTKIT_CA_DIR": str(home / "ca")}
    made = as_nobody(runner, home, "-m", "certkit", "init-ca", "--name", "W29", "--no-passphrase", **env)
    assert made.returncode == 0, made.stderr
    pki = _closed(home / ".pki")
    for args in (["install", "--nss"], ["install", "--nss", "--json"]):
        proc = as_nobody(runner, home, "-m", "certkit", "trust", *args, **env)
        assert_clean_error(proc, f"Cannot install the CA in the nss store: {pki}/nssdb cannot be written: this "
                                 f"user may not search {pki}")
    assert os.listdir(pki) == []
    pki.rmdir()
    firefox = home / ".mozilla" / "firefox"
    firefox.mkdir(parents=True)
    (firefox / "profiles.ini").write_text(f"[Profile0]\nName=default\nIsRelative=0\nPath={home}/closed/p\n")
    closed = _closed(home / "closed")
    (tools / "chromium").unlink()
    proc = as_nobody(runner, home, "-m", "certkit", "trust", "install", "--nss", **env)
    assert "Traceback" not in proc.stderr and proc.returncode == 1, proc.stderr
    assert f"{closed}/p cannot be written: this user may not search {closed}" in proc.stdout + proc.stderr, proc
