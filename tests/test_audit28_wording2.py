"""Round 28, wording2: an output under a folder the user may not search is said as a write refused; what stands
where a CA directory's file should be is said in the one wording every other file gets (vocabulary.file_kind_text)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import assert_clean_error, code_others_can_read, run_certkit

NOBODY = 65534


def _python_others_can_run() -> str | None:
    """A Python of this version that another user may run (a venv's leads into root's own folder)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (os.path.realpath(sys.executable), f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        parents = Path(candidate).parents
        if os.path.isfile(candidate) and os.stat(candidate).st_mode & 0o001 and all(
                os.stat(above).st_mode & 0o001 for above in parents):
            return candidate
    return None


@pytest.fixture
def as_nobody() -> Iterator[tuple[Path, object]]:
    """A folder every user may read, and a runner of certkit as the user nobody (its code, click and cryptography
    copied there, readable by that user), with HOME and the CA directory of its own under that folder."""
    python = _python_others_can_run()
    if os.geteuid() != 0 or shutil.which("setpriv") is None or python is None:
        pytest.skip("running certkit as another user needs root, setpriv and a Python that user may run")
    place = Path(tempfile.mkdtemp(prefix="certkit-audit28-", dir="/tmp"))
    place.chmod(0o755)
    try:
        (place / "code").mkdir()
        code = code_others_can_read(place / "code")
        for module in ("click", "cryptography", "cffi", "_cffi_backend", "pycparser"):
            spec = importlib.util.find_spec(module)
            if spec is None or spec.origin is None:
                continue
            origin = Path(spec.origin)
            source = origin.parent if origin.name == "__init__.py" else origin
            (shutil.copytree if source.is_dir() else shutil.copy)(source, code / source.name)
        for here, _dirs, files in os.walk(code):
            os.chmod(here, 0o755)
            for name in files:
                os.chmod(os.path.join(here, name), 0o644)
        home = place / "home"
        home.mkdir()
        os.chown(home, NOBODY, NOBODY)

        def run(*args: str) -> subprocess.CompletedProcess:
            env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "PYTHONPATH": str(code),
                   "CERTKIT_CA_DIR": str(home / "ca")}
            return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", python,
                                   "-m", "certkit", *args], env=env, cwd=home, capture_output=True, text=True,
                                  timeout=120)

        made = run("init-ca", "--name", "Audit28", "--no-passphrase")
        assert made.returncode == 0, made.stdout + made.stderr
        yield place, run
    finally:
        shutil.rmtree(place, ignore_errors=True)


def test_an_output_under_a_folder_one_may_not_search_is_said_as_a_write(as_nobody) -> None:
    """issue-server --out X/web where nobody may not search X said "Cannot read the file or folder X/web:
    Permission denied", though the command writes there; every output option says "Cannot write", naming X."""
    place, run = as_nobody
    closed = place / "closed"
    closed.mkdir(mode=0o700)  # root's: nobody may not search it
    cases = [
        (("issue-server", "a.example", "--out", f"{closed}/web"), f"{closed}/web"),
        (("issue-client", "bob", "--out", f"{closed}/a/b"), f"{closed}/a/b"),
        (("init-ca", "--name", "Two", "--no-passphrase", "--ca-dir", f"{closed}/ca"), f"{closed}/ca"),
        (("crl", "--out", f"{closed}/crl.pem"), f"{closed}/crl.pem"),
        (("issue-batch", "/dev/null", "--out-dir", f"{closed}/batch"), f"{closed}/batch"),
        (("renew", "--install-timer", "--unit-dir", f"{closed}/units"), f"{closed}/units"),
        (("demo", "--keep", f"{closed}/demo"), f"{closed}/demo"),
    ]
    for args, target in cases:
        proc = run(*args)
        assert_clean_error(proc, "Cannot write the ")
        assert target in proc.stderr and f"permission denied ({closed})" in proc.stderr, (args, proc.stderr)
        assert "Cannot read" not in proc.stderr, (args, proc.stderr)
    assert os.listdir(closed) == []


def test_a_manifest_line_out_under_a_folder_one_may_not_search_is_said_as_a_write(as_nobody) -> None:
    """issue-batch with a line's out under such a folder said "Cannot read the file or folder"; a write too."""
    place, run = as_nobody
    home = place / "home"
    (home / "closed").mkdir(mode=0o700)  # root's, in nobody's own folder
    manifest = place / "manifest.csv"
    manifest.write_text("kind,names,out\nserver,a.example,closed/web\n")
    manifest.chmod(0o644)
    proc = run("issue-batch", str(manifest), "--out-dir", str(home))
    assert_clean_error(proc, f"Cannot write the output folder {home}/closed/web: permission denied ({home}/closed)")
    assert "Cannot read" not in proc.stderr and os.listdir(home / "closed") == []


# --- 2. what stands where a CA directory's file should be, in every file's words ---------------------------------
PLANTED = {  # how to make it, and how every other file's place says it (vocabulary.file_kind_text)
    "fifo": (os.mkfifo, "is a device or other special file, not a file"),
    "folder": (os.mkdir, "is a folder, not a file"),
    "dangling link": (lambda path: os.symlink("nowhere", path), "is a symbolic link to nowhere, which does not exist"),
}


# (a link where the inventory should be is refused before, as a link: "a CA directory holds its own files")
@pytest.mark.parametrize("name,kind", [("ca.pem", kind) for kind in PLANTED] +
                         [("inventory.sqlite3", kind) for kind in ("fifo", "folder")])
def test_what_stands_where_a_ca_directory_file_should_be_is_said_as_of_every_file(tmp_path, ca_dir, ca_env, name,
                                                                                  kind) -> None:
    """A FIFO where ca.pem should be was "a special file", a folder "a directory", a link to nothing "a symbolic
    link", though every other file's place says "a device or other special file", "a folder", "a symbolic link to
    X, which does not exist". issue-server and check now say the same words of the CA directory's files."""
    (ca_dir / name).unlink()
    PLANTED[kind][0](ca_dir / name)
    said = f"{ca_dir / name} {PLANTED[kind][1]}; the CA directory is damaged"
    proc = run_certkit("issue-server", "a.example", "--out", tmp_path / "a", env=ca_env)
    assert_clean_error(proc, said)
    checked = run_certkit("check", env=ca_env)
    assert checked.returncode == 1 and said in checked.stdout, (checked.stdout, checked.stderr)
    for old in ("a special file", "a directory", "a symbolic link;", "a symbolic link,"):
        assert old not in proc.stderr + checked.stdout.replace("is a symbolic link; a CA directory", ""), old
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("kind", ["fifo", "dangling link"])
def test_what_stands_where_the_ca_directory_should_be_is_said_as_of_every_file(tmp_path, ca_env, kind) -> None:
    """CERTKIT_CA_DIR naming a FIFO said "it is a special file, not a folder"; now "a device or other special
    file, not a folder" (a link to nothing: "a symbolic link to nowhere, which does not exist")."""
    place = tmp_path / "place"
    PLANTED[kind][0](place)
    proc = run_certkit("list", env={**ca_env, "CERTKIT_CA_DIR": str(place)})
    words = PLANTED[kind][1].removesuffix(", not a file")
    assert_clean_error(proc, f"No CA in {place}: it {words}" + ("" if "exist" in words else ", not a folder"))
    assert "a special file" not in proc.stderr and "a symbolic link," not in proc.stderr
