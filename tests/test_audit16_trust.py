"""The sixteenth round's trust findings, each as a class, against real NSS databases (certutil, vfychain) and real
JDKs (keytool, a JSSE client):

1. An NSS database holding two CAs of one subject (a CA and its renewal, each added by hand): certutil shows every
   certificate of that subject for either nickname, the one valid longest first, and certkit took that one as the
   entry's own. ``status`` called the trusted CA "not trusted" and the untrusted one "trusted", and ``install``
   named the other CA's entry (trusted) as "not trusted", with a ``certutil -M`` command that changed nothing.
   Each entry's own certificate is now told by its own trust (nss_entries).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import subprocess
from pathlib import Path

from test_trust import _ca, outcomes, trust

from certkit import CA
from certkit.store import CADirectory
from certkit.trust import Anchor
from certkit.trust.tools import pem_fingerprints

from conftest import PASSPHRASE, certkit_env, require, run_certkit
from trust_helpers import nss_listing, nss_verifies


def _leaf(ca: Path, work: Path) -> Path:
    """A server certificate for x.home.arpa from ``ca``."""
    work.mkdir()
    run_certkit("issue-server", "--ca-dir", ca, "x.home.arpa", cwd=work, env=certkit_env(
        CERTKIT_CA_PASSPHRASE=PASSPHRASE), check=True)
    return work / "x.home.arpa" / "cert.pem"


def test_two_cas_of_one_subject_under_two_nicknames_are_told_apart(tmp_path: Path) -> None:
    require("certutil")
    require("vfychain")
    old = tmp_path / "old"  # made a year ago; renewed today, same name
    CADirectory(old).save_new(CA.create("Team CA", permitted_dns=["home.arpa"], days=730, not_before=dt.datetime.now(
        dt.UTC) - dt.timedelta(days=365)), PASSPHRASE.encode())
    (tmp_path / "new").mkdir()
    new = _ca(tmp_path / "new", "Team CA", "--permit-dns", "home.arpa")
    old_leaf, new_leaf = _leaf(old, tmp_path / "old-leaf"), _leaf(new, tmp_path / "new-leaf")
    home = tmp_path / "home"
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    certutil = ["certutil", "-d", f"sql:{db}"]
    subprocess.run([*certutil, "-N", "--empty-password"], check=True, capture_output=True)
    subprocess.run([*certutil, "-A", "-n", "Team CA (2025)", "-t", "C,,", "-i", old / "ca.pem"], check=True)
    subprocess.run([*certutil, "-A", "-n", "Team CA (2026)", "-t", ",,", "-i", new / "ca.pem"], check=True)
    # What certutil shows for the old CA's nickname starts with the renewal (the newer): the trap.
    shown = subprocess.run([*certutil, "-L", "-n", "Team CA (2025)", "-a"], capture_output=True, check=True).stdout
    assert pem_fingerprints(shown) == [Anchor.from_ca_dir(new).fingerprint, Anchor.from_ca_dir(old).fingerprint]
    # NSS's own verifier: the old CA is trusted, the renewal is not.
    assert nss_verifies(db, old_leaf).returncode == 0
    assert "marked as not trusted" in nss_verifies(db, new_leaf).stderr

    status = json.loads(trust("status", "--nss", "--json", home=home, ca_dir=old, check=True).stdout)["stores"]
    assert [(s["outcome"], s["elsewhere"]) for s in status] == [("trusted", ["Team CA (2025)"])]
    status = json.loads(trust("status", "--nss", "--json", home=home, ca_dir=new, check=True).stdout)["stores"]
    assert [(s["outcome"], s["elsewhere"]) for s in status] == [("not trusted", [])]

    listing = nss_listing(db)
    assert outcomes(trust("install", "--nss", "--json", home=home, ca_dir=old, check=True)) == {
        str(db): "unchanged"}
    refused = trust("install", "--nss", home=home, ca_dir=new)
    assert refused.returncode == 1 and nss_listing(db) == listing
    assert "as 'Team CA (2026)' (trust ,,, not trusted to identify websites)" in refused.stdout, refused.stdout
    advice = re.search(r"Trust that one yourself \((certutil -M .*? -t C,,)\)", refused.stdout)[1]
    subprocess.run(shlex.split(advice), check=True, capture_output=True)  # the advice, followed
    assert nss_verifies(db, new_leaf).returncode == 0 and nss_verifies(db, old_leaf).returncode == 0
    status = json.loads(trust("status", "--nss", "--json", home=home, ca_dir=new, check=True).stdout)["stores"]
    assert [(s["outcome"], s["elsewhere"]) for s in status] == [("trusted", ["Team CA (2026)"])]
