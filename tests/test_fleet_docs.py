"""docs/formats.md runs as written (tests/docs_runner.py), with the readers it shows: jq,
cfssljson, openssl and tar. (docs/renew.md runs in tests/test_lifecycle_docs.py.)"""

from __future__ import annotations

from pathlib import Path

from conftest import PASSPHRASE, REPO, certkit_env, require
from docs_runner import run_page


def test_formats_page(tmp_path: Path) -> None:
    for tool in ("jq", "cfssljson", "openssl", "tar"):
        require(tool)
    work = tmp_path / "work"
    work.mkdir()
    run_page(REPO / "docs" / "formats.md", cwd=work, env=certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE))
    assert (work / "deployed" / "web1.example.com" / "privkey.pem").stat().st_mode & 0o777 == 0o600
