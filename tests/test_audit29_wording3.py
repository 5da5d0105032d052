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
