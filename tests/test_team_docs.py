"""docs/team.md runs as written, in order, against a real PostgreSQL and a SoftHSM2 of its own
(tests/docs_runner.py): the page's db.internal URLs become databases of the test's server."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO, certkit_env
from docs_runner import run_page
from team_hsm import SoftHSM


@pytest.fixture(autouse=True)
def _real_processes(monkeypatch):
    """A PKCS#11 login and a libpq password prompt belong to a process: certkit runs as a real one here."""
    monkeypatch.setenv("CERTKIT_TEST_SUBPROCESS", "1")


def test_team_page(tmp_path: Path, postgres_server) -> None:
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    hsm = SoftHSM()  # its own token store: the page's token 'ca' is the only one there
    try:
        # No CERTKIT_ variable from outside: the page sets every one it uses.
        env = certkit_env(HOME=str(home), **postgres_server.env(), **hsm.env())
        substitutions = {f"certkit@db.internal/{name}": postgres_server.create_database(name)[len("postgresql://"):]
                         for name in ("ca", "solo")}
        run_page(REPO / "docs" / "team.md", cwd=work, env=env, substitutions=substitutions)
    finally:
        hsm.close()
