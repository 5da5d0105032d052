"""The seventeenth round's trust findings, each as a class, against real NSS databases (certutil, vfychain) and a
real browser (headless Chromium reading the test's own ``~/.pki/nssdb``):

1. An NSS database in the old dbm format (``cert8.db``, ``key3.db``: a Chromium ``~/.pki/nssdb`` or a Firefox
   profile from before NSS 3.35) was invisible to certkit, though NSS reads it and Chromium trusts what it holds
   (converting it to ``cert9.db`` when it opens it). ``status`` said "not trusted" of a CA it trusts, a Firefox
   profile holding one was skipped ("start the program once"), and ``install`` waited ten seconds, then refused
   with the advice ``certutil -N -d sql:...``, which loops forever asking for a password. certkit now reads it as
   NSS does and changes it through certutil, which converts it as the browsers do.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

from test_trust import outcomes, pki, server, trust  # noqa: F401

from conftest import require
from trust_helpers import chromium, nss_verifies


def _legacy_db(folder: Path, password: str | None = None) -> Path:
    """An NSS database in the old dbm format (cert8.db, key3.db, secmod.db), as NSS before 3.35 made them."""
    folder.mkdir(parents=True)
    args = ["-f", str(folder.parent / "pw")] if password else ["--empty-password"]
    if password:
        (folder.parent / "pw").write_text(password)
    subprocess.run(["certutil", "-N", "-d", f"dbm:{folder}", *args], check=True, capture_output=True, timeout=60)
    assert sorted(p.name for p in folder.iterdir()) == ["cert8.db", "key3.db", "secmod.db"]
    return folder


def _certutil_listing(folder: Path) -> str:
    """certutil's listing of the database (nicknames and trust), read-only: an old-format one as it is."""
    return subprocess.run(["certutil", "-L", "-d", f"sql:{folder}"], capture_output=True, text=True, timeout=60,
                          check=True, stdin=subprocess.DEVNULL).stdout


def test_an_nss_database_of_the_old_dbm_format_is_read_and_changed_as_nss_does(pki, server: int,  # noqa: F811
                                                                               tmp_path: Path) -> None:
    for tool in ("certutil", "vfychain", "chromium"):
        require(tool)
    home = tmp_path / "home"
    nssdb = _legacy_db(home / ".pki/nssdb")
    firefox = home / ".mozilla/firefox"
    by_hand = _legacy_db(tmp_path / "elsewhere/hand.default")  # a profile named by its absolute path
    subprocess.run(["certutil", "-A", "-d", f"dbm:{by_hand}", "-n", "Hand root", "-t", "C,,"], input=pki.anchor.pem,
                   check=True, capture_output=True)
    locked = _legacy_db(firefox / "pw.default", password="primary password")
    firefox.joinpath("profiles.ini").write_text(
        f"[Profile0]\nName=hand\nIsRelative=0\nPath={by_hand}\n\n[Profile1]\nName=pw\nIsRelative=1\nPath=pw.default\n")
    chain = (pki.server / "cert.pem", pki.issuing / "ca.pem")
    url = f"https://localhost:{server}/"
    before = {db: _certutil_listing(db) for db in (nssdb, by_hand, locked)}
    # NSS itself (vfychain, reading it with sql: as Chromium does, read-only) reads the old format: the hand-added
    # root is trusted there, the CA is not trusted in ~/.pki/nssdb. (Chromium, opening it read-write, would convert
    # it at once: it runs once certkit has.)
    assert nss_verifies(by_hand, *chain).returncode == 0 and nss_verifies(nssdb, *chain).returncode != 0

    status = json.loads(trust("status", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True).stdout)
    found = {s["location"]: (s["outcome"], s["elsewhere"]) for s in status["stores"]}
    assert found == {str(nssdb): ("not trusted", []), str(by_hand): ("trusted", ["Hand root"]),
                     str(locked): ("not trusted", [])}, status["stores"]

    proc = trust("install", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True)
    assert outcomes(proc) == {str(nssdb): "added", str(by_hand): "unchanged", str(locked): "skipped"}, proc.stdout
    stores = {s["location"]: s for s in json.loads(proc.stdout)["stores"]}
    assert any(n.startswith(f"converted the NSS database {nssdb} from the old dbm format") for n in
               stores[str(nssdb)]["notes"]), stores[str(nssdb)]
    assert stores[str(locked)]["code"] == "password", stores[str(locked)]
    assert nss_verifies(nssdb, *chain).returncode == 0
    page = chromium(url, home, tmp_path / "chromium-1")
    assert "verify=NONE" in page.stdout, page.stderr[-3000:]  # nginx's answer, in the DOM
    assert _certutil_listing(by_hand) == before[by_hand] and _certutil_listing(locked) == before[locked]

    # The password-protected one: the command certkit gives, run with the password, trusts the CA there.
    advice = stores[str(locked)]["reason"].split("add the CA yourself: ", 1)[1]
    subprocess.run([*shlex.split(advice), "-f", str(locked.parent / "pw")], check=True, capture_output=True,
                   timeout=60, stdin=subprocess.DEVNULL)
    assert nss_verifies(locked, *chain).returncode == 0
    status = json.loads(trust("status", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True).stdout)
    assert {s["location"]: s["current"] for s in status["stores"]}[str(locked)] == pki.anchor.nickname

    gone = trust("uninstall", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True)
    assert outcomes(gone) == {str(nssdb): "removed", str(by_hand): "absent", str(locked): "removed"}, gone.stdout
    assert {db: _certutil_listing(db) for db in (nssdb, by_hand, locked)} == before
    assert nss_verifies(nssdb, *chain).returncode != 0 and nss_verifies(by_hand, *chain).returncode == 0
    after = chromium(url, home, tmp_path / "chromium-2")
    assert "ERR_CERT_AUTHORITY_INVALID" in after.stderr and "verify=" not in after.stdout, after.stderr[-2000:]
