"""The twenty-second round's trust findings, each as a class, against real NSS tools (certutil, vfychain run as the
database's owner), never the machine's own stores:

1. Root changing a user's old-format NSS database (``sudo -E certkit trust install --nss``, or root with HOME the
   user's: a Firefox profile or ~/.pki/nssdb still in cert8.db/key3.db). certutil converts it to cert9.db, key4.db
   and pkcs11.txt, which it creates root's, mode 0600: the user's own NSS (the browser, certutil run as the user)
   could no longer read its database and saw it empty, without the CA certkit said it "added" (and without the keys
   of Firefox's saved logins, now in key4.db). Whatever certutil creates in a database folder of another user is now
   given to that folder's owner, for every certutil run (install, uninstall, status).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from test_trust import pki, trust  # noqa: F401

from conftest import require


def _as_user(user: pwd.struct_passwd, *argv: str) -> subprocess.CompletedProcess:
    """``argv`` run as ``user`` (its own uid and gid, no other group), as that user's browser runs."""
    return subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", *argv],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


# --- 1: root converting another user's old-format database --------------------------------------------------------
@pytest.mark.parametrize("place", ["firefox", "chromium"])
def test_a_users_old_format_database_changed_by_root_stays_the_users(pki, place: str) -> None:  # noqa: F811
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root (as sudo gives) and setpriv")
    require("vfychain")
    user = pwd.getpwnam("nobody")
    work = Path(tempfile.mkdtemp(prefix="certkit-audit22-"))
    try:
        work.chmod(0o755)  # the user reaches its home, and the certificates vfychain reads
        home = work / "home"
        folder = home / (".mozilla/firefox/main.default" if place == "firefox" else ".pki/nssdb")
        folder.mkdir(parents=True)
        subprocess.run(["certutil", "-N", "-d", f"dbm:{folder}", "--empty-password"], check=True,
                       capture_output=True, timeout=60)
        if place == "firefox":
            (home / ".mozilla/firefox/profiles.ini").write_text(
                "[Profile0]\nName=main\nIsRelative=1\nPath=main.default\nDefault=1\n\n[General]\nVersion=2\n")
        for path in [home, *home.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
        leaf, chain = work / "leaf.pem", work / "chain.pem"
        shutil.copy(pki.server / "cert.pem", leaf)
        shutil.copy(pki.issuing / "ca.pem", chain)

        def users_nss() -> subprocess.CompletedProcess:
            return _as_user(user, "vfychain", "-d", f"sql:{folder}", "-pp", "-u", "1", "-a", str(leaf), "-a",
                            str(chain))

        assert users_nss().returncode != 0  # not trusted before
        added = trust("install", "--nss", "--json", home=home, ca_dir=pki.issuing)
        (store,) = [s for s in json.loads(added.stdout)["stores"] if s["location"] == str(folder)]
        assert store["outcome"] == "added", added.stdout
        assert [n for n in store["notes"] if n.startswith("converted the NSS database")], store
        made = {p.name: p.stat() for p in folder.iterdir()}
        assert {"cert9.db", "key4.db", "pkcs11.txt"} <= set(made)
        assert {name: (st.st_uid, st.st_mode & 0o777) for name, st in made.items()} == {
            name: (user.pw_uid, 0o600) for name in made}  # the user's, and only the user's
        listing = _as_user(user, "certutil", "-L", "-d", f"sql:{folder}")
        assert pki.anchor.nickname in listing.stdout, listing.stdout + listing.stderr
        verified = users_nss()
        assert verified.returncode == 0, verified.stdout + verified.stderr  # what certkit said: the user trusts it
        removed = trust("uninstall", "--nss", "--json", home=home, ca_dir=pki.issuing)
        assert {s["location"]: s["outcome"] for s in json.loads(removed.stdout)["stores"]}[str(folder)] == "removed"
        assert all(p.stat().st_uid == user.pw_uid for p in folder.iterdir())
        assert users_nss().returncode != 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
