"""Every command in the lifecycle docs pages runs, in order, and prints what the page shows
(tests/docs_runner.py: each page in its own empty folder, $CERTKIT_CA_PASSPHRASE set)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import PASSPHRASE, REPO, certkit_env
from docs_runner import run_page

PAGES = ["sign-csr.md", "list.md", "renew.md", "revoke.md", "crl.md", "two-tier-pki.md"]
# Walkthroughs a reader follows from an empty shell: they run with no passphrase from outside,
# which proves they set every variable they use.
SELF_CONTAINED = {"two-tier-pki.md"}


@pytest.mark.parametrize("name", PAGES)
def test_doc_page_commands(tmp_path: Path, name: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    home = tmp_path / "home"  # nothing from the real ~ (a per-user CA directory, say)
    home.mkdir()
    env = certkit_env(HOME=str(home)) if name in SELF_CONTAINED else certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_page(REPO / "docs" / name, cwd=work, env=env)
