"""The twenty-first round's trust findings, each as a class, against real clients and tools, never the machine's own
stores (the system store runs in a private mount namespace over copies: test_audit19_trust's
``_private_system_store``):

1. A CA trusted through OpenSSL's folder of certificates, not the bundle. A CA copied into /etc/ssl/certs and hashed
   there (``openssl rehash``, ``c_rehash``: what many guides say; update-ca-certificates --fresh keeps it) is trusted
   by curl and Python's ssl, which look a missing issuer up in that folder by its subject hash; ``status --system``
   read the bundle alone and said "not trusted", and ``uninstall`` said "removed" with nothing of the copy that
   kept the CA trusted. The store's clients' reading now includes that folder (by the names OpenSSL looks up), for
   the root and for the CA directory's intermediate.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from test_audit19_trust import _private_system_store
from test_trust import pki, server  # noqa: F401

from conftest import certkit_env
from trust_helpers import PYTHON_CLIENT, client_env


# --- 1: a CA trusted through OpenSSL's folder of certificates -----------------------------------------------------
def test_a_ca_in_openssls_folder_of_certificates_is_reported_trusted(pki, server: int, tmp_path: Path) -> None:  # noqa: F811
    prefix = _private_system_store(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    env = certkit_env(HOME=str(home))

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([*prefix, *argv], env=client_env(), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=120)

    def trust(action: str) -> dict:
        proc = subprocess.run([*prefix, sys.executable, "-m", "certkit", "trust", action, "--system", "--json",
                               "--ca-dir", str(pki.issuing)], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (store,) = json.loads(proc.stdout)["stores"]
        return store

    def accepted() -> dict[str, bool]:
        curl = run("curl", "-sS", "-o", "/dev/null", f"https://localhost:{server}/")
        python = run(sys.executable, "-c", PYTHON_CLIENT, str(server))
        return {"curl": curl.returncode == 0, "python": python.returncode == 0}

    # A guide's way: the CA's file into OpenSSL's folder, then its hash link (update-ca-certificates never runs).
    by_hand = "/etc/ssl/certs/company-root.pem"
    run("sh", "-c", f"cp {pki.root / 'ca.pem'} {by_hand} && openssl rehash /etc/ssl/certs")
    assert accepted() == {"curl": True, "python": True}
    seen = trust("status")
    assert seen["outcome"] == "trusted" and [e for e in seen["elsewhere"] if e.startswith(f"{by_hand} (")], seen
    assert "Java do not" in seen["elsewhere"][0]
    # certkit adds its own copy and takes it out again: the hand-made one stays, and is still said to trust the CA
    assert trust("install")["outcome"] == "added"
    removed = trust("uninstall")
    assert removed["outcome"] == "removed" and [e for e in removed["elsewhere"] if e.startswith(f"{by_hand} (")]
    assert accepted() == {"curl": True, "python": True}
    assert trust("status")["outcome"] == "trusted"

    # The CA directory's intermediate there instead: curl accepts what it signs (a partial chain)
    run("sh", "-c", f"cp {pki.issuing / 'ca.pem'} {by_hand} && openssl rehash /etc/ssl/certs")
    assert accepted()["curl"]
    seen = trust("status")
    assert seen["outcome"] == "trusted" and seen["elsewhere"] == [], seen
    assert [e for e in seen["intermediate_trusted_as"] if e.startswith(f"{by_hand} (not in ")], seen
