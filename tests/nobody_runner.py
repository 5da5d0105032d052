"""Running certkit as the real user ``nobody`` (uid 65534), not as root in disguise.

``unshare --user`` gives a process the overflow uid in a new namespace, but its files are still
checked against root's uid: it can read a root-only 0600 file. ``setpriv`` to 65534 cannot. A
process run that way must import certkit and its dependencies from where nobody can read them:
CI's Python and packages live under /root/.pyenv (in /root, mode 0700), a checkout may sit under a
0700 folder. :func:`nobody_runner` copies the certkit package and the distributions it needs (found
with importlib.metadata, from pyproject.toml's dependencies down) into a 0755 folder, and picks an
interpreter nobody can execute: the running one if reachable, else /usr/bin/python3.X of the same
version (the copied compiled modules are built for it). If that cannot be made, it falls back to
``unshare --user`` (:attr:`Runner.as_nobody` False).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from conftest import REPO, code_others_can_read

NOBODY = 65534
SETPRIV = ["--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups", "--"]


@dataclass
class Runner:
    """How to run ``python -m certkit`` as another user: ``argv(...)``, with ``env(...)``."""

    prefix: list[str]
    python: str
    pythonpath: str | None = None
    as_nobody: bool = False
    folder: Path | None = None  # a 0755 folder of the session, for what nobody must reach
    notes: list[str] = field(default_factory=list)

    def argv(self, *args: str) -> list[str]:
        return [*self.prefix, self.python, *(["-s"] if self.as_nobody else []), *args]

    def env(self, env: dict[str, str]) -> dict[str, str]:
        env = dict(env)
        if self.pythonpath is not None:
            env["PYTHONPATH"] = self.pythonpath
            env.pop("PYTHONHOME", None)
        return env


def _requirement_names(requirements: list[str] | None) -> list[tuple[str, bool]]:
    """(name, whether a marker makes it conditional) of each requirement that no extra asks for."""
    names = []
    for req in requirements or []:
        if "extra ==" in req.replace('"', "").replace("'", ""):
            continue
        found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
        if found:
            names.append((found.group(1), ";" in req))
    return names


def _copy_distributions(target: Path) -> None:
    """Copy every installed distribution certkit needs (its own files as RECORD lists them) into ``target``."""
    wanted = _requirement_names(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])
    seen: set[str] = set()
    while wanted:
        name, conditional = wanted.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            if conditional:  # for another Python or platform
                continue
            raise
        for item in dist.files or []:
            source = Path(dist.locate_file(item))
            if item.parts[0] == ".." or not source.is_file() or "__pycache__" in item.parts:
                continue
            (target / item).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target / item)
        wanted += _requirement_names(dist.requires)


def _runs_as_nobody(python: str, pythonpath: str, secret: Path) -> bool:
    """``python`` run as nobody imports certkit from ``pythonpath`` and cannot read ``secret`` (root's, 0600)."""
    check = ("import os, sys, certkit.cli, click, cryptography.x509\n"
             f"assert os.getuid() == os.geteuid() == {NOBODY}\n"
             f"try:\n    open({str(secret)!r}).read()\nexcept PermissionError:\n    sys.exit(0)\nsys.exit(3)\n")
    try:
        proc = subprocess.run([shutil.which("setpriv"), *SETPRIV, python, "-s", "-c", check], capture_output=True,
                              text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": pythonpath}, cwd="/")
    except OSError:
        return False
    return proc.returncode == 0


def nobody_runner() -> Runner | None:
    """A :class:`Runner` that runs certkit as the user nobody (root only), else ``unshare --user``, else None.

    Not root: no prefix is needed (the running interpreter, as it is). The caller removes ``folder``.
    """
    if os.geteuid() != 0:
        return Runner([], sys.executable)
    folder = Path(tempfile.mkdtemp(prefix="certkit-nobody-"))
    folder.chmod(0o755)
    notes = []
    if shutil.which("setpriv"):
        try:
            (folder / "code").mkdir()
            code = code_others_can_read(folder / "code")
            _copy_distributions(code)
            for place, _dirs, files in os.walk(code):
                os.chmod(place, 0o755)
                for name in files:
                    os.chmod(os.path.join(place, name), 0o644)
            secret = folder / "root-only"
            secret.write_text("root's\n")
            secret.chmod(0o600)
            version = f"python{sys.version_info.major}.{sys.version_info.minor}"
            for python in (sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
                if os.path.exists(python) and _runs_as_nobody(python, str(code), secret):
                    return Runner([shutil.which("setpriv"), *SETPRIV], python, str(code), True, folder)
            notes.append("no interpreter the user nobody can run imports the copied code")
        except (OSError, metadata.PackageNotFoundError) as e:
            notes.append(f"the code could not be copied for nobody: {e}")
    probe = subprocess.run(["unshare", "--user", "id", "-u"], capture_output=True, text=True, timeout=10) \
        if shutil.which("unshare") else None
    if probe is None or probe.returncode != 0 or probe.stdout.strip() == "0":
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return Runner([shutil.which("unshare"), "--user", "--"], sys.executable, None, False, folder, notes)


def runner_while_used() -> Iterator[Runner | None]:
    """A fixture's body: :func:`nobody_runner`, its folder removed when the fixture ends."""
    runner = nobody_runner()
    yield runner
    if runner is not None and runner.folder is not None:
        shutil.rmtree(runner.folder, ignore_errors=True)
