"""Every example in README.md and the core docs pages runs, with the documented output."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import PASSPHRASE, REPO, certkit_env, free_port, require
from docs_runner import run_page


def test_readme_quickstart(tmp_path: Path) -> None:
    require("openssl")
    require("curl")
    port = free_port()
    work = tmp_path / "work"
    work.mkdir()
    run_page(REPO / "README.md", cwd=work, env=certkit_env(), substitutions={"8443": str(port)})
    assert (work / "my-ca" / "ca.pem").exists()


@pytest.mark.parametrize("page", ["init-ca.md", "issue-server.md", "issue-client.md", "check.md"])
def test_command_pages(tmp_path: Path, page: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = certkit_env(CERTKIT_CA_DIR=str(work / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    if page not in ("init-ca.md", "check.md"):
        (work / "ca").parent.mkdir(exist_ok=True)
        from conftest import run_certkit

        run_certkit("init-ca", "--name", "Docs CA", env=env, check=True)
    run_page(REPO / "docs" / page, cwd=work, env=env)


def test_no_merge_conflict_markers_anywhere() -> None:
    """A page or module with a leftover conflict would read (or run) as two versions at once."""
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    markers = ("<<<<<<< ", ">>>>>>> ")
    found = [name for name in tracked if name.endswith((".md", ".py", ".toml", ".txt", ".json"))
             and any(line.startswith(markers) or line == "=======" for line in
                     (REPO / name).read_text(encoding="utf-8", errors="replace").splitlines())]
    assert not found, found
