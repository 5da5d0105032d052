"""The sixteenth round's trust findings, each as a class, against real NSS databases (certutil, vfychain) and real
JDKs (keytool, a JSSE client):

1. An NSS database holding two CAs of one subject (a CA and its renewal, each added by hand): certutil shows every
   certificate of that subject for either nickname, the newer first, and certkit took that one as the entry's
   own. ``status`` called the trusted CA "not trusted" and the untrusted one "trusted", and ``install``
   named the other CA's entry (trusted) as "not trusted", with a ``certutil -M`` command that changed nothing.
   Each entry's own certificate is now told by its own trust and, between equals, by the label cert9.db stores it
   under (nss_entries).
2. ``trust install --java`` and ``uninstall --java`` had keytool rewrite the JDK's cacerts in place (truncated, then
   written): keytool stopped in between (Ctrl-C, certkit's time limit, the OOM killer, a power cut) left it empty,
   and every Java program on the machine without a trust anchor (Debian's JDKs all link that one file). keytool now
   works on a copy beside it, which replaces it whole. strace kills keytool at its write, as those would.
3. A browser from Flathub or the Snap Store other than Chromium (Chrome, Brave, Edge...) keeps its own NSS database,
   ``~/.var/app/APP/.pki/nssdb`` or ``~/snap/APP/current/.pki/nssdb``, and reads no other: ``trust install --nss``
   never looked there (nor at another flatpak/snap app's Mozilla profiles), so such a browser went on refusing the
   CA while certkit said it was installed. Every app's database there is now a store (nss_places).
4. A JDK's cacerts whose password is not the default ``changeit`` (hardening guides advise changing it): every
   command failed on keytool's "Keystore was tampered with, or password was incorrect", status included, with no
   way forward. Now status reads it without the password, as Java programs do; install and uninstall skip it (or,
   named, refuse) with the keytool command to run, which asks for the password, as for an NSS database's.
5. Two ``trust install --java`` at once (two CAs, a provisioning script run twice): each put its changed copy of
   cacerts in place, and the later one took away the CA the other had just added, which had said "added". They now
   take turns (a lock on the keystore's folder), each changing what the last one put in place.
6. A ``java`` on PATH that is a version manager's shim (asdf, jenv: a script that runs the chosen JDK) was taken for
   the JDK: its folder has no cacerts, so the Java store was skipped ("has no lib/security/cacerts") while every
   Java program the shim runs went on refusing the CA. The JDK the shim runs now says where it is (java.home).
7. ``status`` of an NSS database holding the CA under a name certkit did not give, without the trust that makes it
   a website's issuer (``c,,``, ``,,``), said "not trusted" and nothing more, as if the CA were not there, while
   ``install`` then failed on that entry. status now names it (``untrusted_as`` in --json).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from test_trust import _ca, _java_get, java_client, machine_store_quiet, outcomes, pki, server, trust, untrusted  # noqa: F401

from certkit import CA
from certkit.store import CADirectory
from certkit.trust import Anchor
from certkit.trust.tools import pem_fingerprints

from conftest import PASSPHRASE, certkit_env, require, run_certkit
from trust_helpers import chromium, keytool_listing, nss_listing, nss_verifies, private_java_home, private_jks_java_home


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


KILLED_KEYTOOL = """#!/bin/sh
# The JDK's keytool, killed (SIGKILL: a time limit, the OOM killer) at its first write into the keystore it is given.
keystore=; previous=
for arg in "$@"; do [ "$previous" = "-keystore" ] && keystore=$arg; previous=$arg; done
exec strace -f -qq -o /dev/null -P "$keystore" -e trace=write -e inject=write:signal=KILL:when=1 \\
    "$(dirname "$0")/keytool.real" "$@"
"""


def test_keytool_stopped_while_writing_leaves_cacerts_whole(pki, server: int, java_client: Path,  # noqa: F811
                                                               tmp_path: Path, machine_store_quiet) -> None:  # noqa: F811
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    real_home = Path(os.environ["JAVA_HOME"]) if os.environ.get("JAVA_HOME") else \
        Path(shutil.which("java")).resolve().parent.parent
    java_home = private_java_home(real_home, tmp_path)
    cacerts = (java_home / "lib/security/cacerts").resolve()
    keytool = java_home / "bin" / "keytool"
    keytool.rename(keytool.with_name("keytool.real"))
    keytool.write_text(KILLED_KEYTOOL)
    keytool.chmod(0o755)
    env = {"JAVA_HOME": str(java_home), "PATH": f"{java_home / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    home = tmp_path / "home"
    home.mkdir()
    url = f"https://localhost:{server}/"
    listing = keytool_listing(cacerts, str(keytool.with_name("keytool.real")))

    def killed(action: str) -> None:
        before = cacerts.read_bytes()
        proc = trust(action, "--java", "--json", home=home, ca_dir=pki.issuing, extra_env=env)
        assert proc.returncode == 1 and outcomes(proc) == {str(cacerts): "failed"}, proc.stdout + proc.stderr
        (store,) = json.loads(proc.stdout)["stores"]
        assert store["reason"].endswith(f"was stopped by SIGKILL before it finished; {cacerts} was left as it was")
        assert cacerts.read_bytes() == before  # whole, as it was
        assert sorted(p.name for p in cacerts.parent.iterdir()) == ["cacerts"]  # no copy left behind

    killed("install")
    assert untrusted(_java_get(java_home, java_client, url).stdout)  # Java reads its anchors, not this CA
    keytool.with_name("keytool.real").replace(keytool)  # keytool left alone: it works
    assert outcomes(trust("install", "--java", "--json", home=home, ca_dir=pki.issuing, extra_env=env,
                          check=True)) == {str(cacerts): "added"}
    trusted = _java_get(java_home, java_client, url)
    assert trusted.returncode == 0 and "HTTP 200" in trusted.stdout, trusted.stdout + trusted.stderr
    assert (java_home / "lib/security/cacerts").is_symlink()  # Debian's link stays; the file it names changed

    keytool.rename(keytool.with_name("keytool.real"))
    keytool.write_text(KILLED_KEYTOOL)
    keytool.chmod(0o755)
    killed("uninstall")
    assert _java_get(java_home, java_client, url).returncode == 0  # still trusted, nothing lost
    keytool.with_name("keytool.real").replace(keytool)
    assert outcomes(trust("uninstall", "--java", "--json", home=home, ca_dir=pki.issuing, extra_env=env,
                          check=True)) == {str(cacerts): "removed"}
    assert keytool_listing(cacerts, str(keytool)) == listing and cacerts.stat().st_mode == 0o100644
    assert untrusted(_java_get(java_home, java_client, url).stdout)


def _nss_db(folder: Path) -> Path:
    folder.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{folder}", "--empty-password"], check=True, capture_output=True)
    return folder


def test_the_nss_databases_of_other_flatpak_and_snap_browsers_are_used(pki, server: int,  # noqa: F811
                                                                       tmp_path: Path) -> None:
    for tool in ("certutil", "vfychain", "chromium"):
        require(tool)
    home = tmp_path / "home"
    chrome_home = home / ".var/app/com.google.Chrome"  # what flatpak Chrome keeps as its ~/.pki (--persist=.pki)
    chrome = _nss_db(chrome_home / ".pki/nssdb")
    brave = _nss_db(home / "snap/brave/412/.pki/nssdb")
    (home / "snap/brave/current").symlink_to("412")  # as snapd links a snap's current revision
    betterbird = home / ".var/app/eu.betterbird.Betterbird/.thunderbird"
    profile = _nss_db(betterbird / "x1.default")
    (betterbird / "profiles.ini").write_text("[Profile0]\nName=default\nIsRelative=1\nPath=x1.default\n")
    databases = [chrome, brave, profile]
    listings = {db: nss_listing(db) for db in databases}
    chain = (pki.server / "cert.pem", pki.issuing / "ca.pem")
    url = f"https://localhost:{server}/"
    before = chromium(url, chrome_home, tmp_path / "chromium-1")
    assert "ERR_CERT_AUTHORITY_INVALID" in before.stderr and "verify=" not in before.stdout, before.stderr[-2000:]

    added = json.loads(trust("install", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True).stdout)
    stores = {s["location"]: (s["label"], s["outcome"]) for s in added["stores"]}
    assert stores[str(chrome)] == ("com.google.Chrome (flatpak)", "added"), stores
    assert stores[str(home / "snap/brave/current/.pki/nssdb")] == ("brave (snap)", "added"), stores
    assert stores[str(profile)] == ("eu.betterbird.Betterbird (flatpak) profile default", "added"), stores
    assert all(nss_verifies(db, *chain).returncode == 0 for db in databases)
    page = chromium(url, chrome_home, tmp_path / "chromium-2")
    assert "verify=NONE" in page.stdout, page.stderr[-3000:]  # nginx's answer, in the DOM
    status = json.loads(trust("status", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True).stdout)
    assert {s["location"]: s["outcome"] for s in status["stores"]}[str(chrome)] == "trusted"

    trust("uninstall", "--nss", home=home, ca_dir=pki.issuing, check=True)
    assert {db: nss_listing(db) for db in databases} == listings
    after = chromium(url, chrome_home, tmp_path / "chromium-3")
    assert "ERR_CERT_AUTHORITY_INVALID" in after.stderr and "verify=" not in after.stdout, after.stderr[-2000:]


def test_a_cacerts_with_another_password_is_read_and_the_command_to_change_it_given(
        pki, server: int, java_client: Path, tmp_path: Path, machine_store_quiet) -> None:  # noqa: F811
    java_home = private_jks_java_home(tmp_path)
    cacerts = (java_home / "lib/security/cacerts").resolve()
    keytool = str(java_home / "bin/keytool")
    subprocess.run([keytool, "-storepasswd", "-keystore", cacerts, "-storepass", "changeit", "-new", "hardened"],
                   check=True, capture_output=True, timeout=120)
    env = {"JAVA_HOME": str(java_home), "PATH": f"{java_home / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    home = tmp_path / "home"
    home.mkdir()
    url = f"https://localhost:{server}/"

    def status() -> dict:
        (store,) = json.loads(trust("status", "--java", "--json", home=home, ca_dir=pki.issuing, extra_env=env,
                                    check=True).stdout)["stores"]
        assert "its password is not the JDK's default (changeit)" in " ".join(store["notes"]), store
        return store

    def advised(action: str) -> list[str]:
        before = cacerts.read_bytes()
        refused = trust(action, "--java", home=home, ca_dir=pki.issuing, extra_env=env)
        assert refused.returncode == 1 and cacerts.read_bytes() == before, refused.stdout + refused.stderr
        (line,) = refused.stderr.splitlines()
        assert f"{cacerts} is protected by a password other than the JDK's default (changeit), which certkit " \
               "does not ask for (keytool does); " in line, line
        return shlex.split(line.split("yourself: ", 1)[1])

    assert status()["outcome"] == "not trusted"
    command = advised("install")
    assert command[:4] == [keytool, "-importcert", "-alias", pki.anchor.file_stem] and command[-1] == str(
        pki.issuing / "parents.pem")  # the root alone, never the intermediate
    subprocess.run([keytool, *command[1:]], input="hardened\nyes\n", text=True, check=True, capture_output=True,
                   timeout=120)  # the advice, followed: keytool asks for the password, and to trust the CA
    assert status()["current"] == pki.anchor.file_stem
    trusted = _java_get(java_home, java_client, url)
    assert trusted.returncode == 0 and "HTTP 200" in trusted.stdout, trusted.stdout + trusted.stderr

    command = advised("uninstall")
    assert command == [keytool, "-delete", "-alias", pki.anchor.file_stem, "-keystore", str(cacerts)]
    subprocess.run([keytool, *command[1:]], input="hardened\n", text=True, check=True, capture_output=True,
                   timeout=120)
    assert status()["outcome"] == "not trusted"
    assert untrusted(_java_get(java_home, java_client, url).stdout)


def _waits_for_a_lock(pid: int) -> bool:
    """Whether process ``pid`` is blocked waiting for a file lock (/proc/locks lists waiters with "->")."""
    return any(line.split()[1] == "->" and line.split()[5] == str(pid)
               for line in Path("/proc/locks").read_text().splitlines() if len(line.split()) > 5)


def test_java_installs_at_once_keep_both_cas(tmp_path: Path, machine_store_quiet) -> None:  # noqa: F811
    import sys
    import time

    require("keytool")
    real_home = Path(os.environ["JAVA_HOME"]) if os.environ.get("JAVA_HOME") else \
        Path(shutil.which("java")).resolve().parent.parent
    java_home = private_java_home(real_home, tmp_path)
    cacerts = (java_home / "lib/security/cacerts").resolve()
    cas = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        cas.append(_ca(tmp_path / name, f"Cluster {name}", "--permit-dns", f"{name}.home.arpa"))
    home, marker = tmp_path / "home", tmp_path / "paused"
    home.mkdir()
    env = certkit_env(HOME=str(home), JAVA_HOME=str(java_home), PATH=f"{java_home / 'bin'}{os.pathsep}"
                      f"{os.environ['PATH']}")

    def install(ca: Path, **extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "certkit", "trust", "install", "--java", "--ca-dir", ca],
                                env={**env, **extra}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_for(event, what: str) -> None:
        deadline = time.monotonic() + 60
        while not event():
            assert time.monotonic() < deadline, f"no {what} within 60 s"
            time.sleep(0.05)

    first = install(cas[0], CERTKIT_TEST_PAUSE_AT="staged", CERTKIT_TEST_PAUSE_FILE=str(marker))
    try:
        wait_for(marker.exists, "pause before the first install puts its copy in place")
        second = install(cas[1])
        # The second one waits for its turn (or, taking none, finishes) before the first one goes on.
        wait_for(lambda: second.poll() is not None or _waits_for_a_lock(second.pid), "turn taken")
    finally:
        marker.unlink(missing_ok=True)
    for proc in (first, second):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and "added" in out, out + err
    listing = keytool_listing(cacerts, str(java_home / "bin/keytool"))
    assert {Anchor.from_ca_dir(ca).file_stem for ca in cas} <= listing.keys(), sorted(listing)


def test_a_java_shim_on_path_leads_to_the_jdk_it_runs(pki, server: int, java_client: Path,  # noqa: F811
                                                      tmp_path: Path, machine_store_quiet) -> None:  # noqa: F811
    real_home = Path(os.environ["JAVA_HOME"]) if os.environ.get("JAVA_HOME") else \
        Path(shutil.which("java")).resolve().parent.parent
    java_home = private_java_home(real_home, tmp_path)
    cacerts = (java_home / "lib/security/cacerts").resolve()
    shims = tmp_path / "asdf" / "shims"  # as asdf and jenv put them: scripts that run the JDK chosen
    shims.mkdir(parents=True)
    for tool in ("java", "keytool"):
        (shims / tool).write_text(f'#!/bin/sh\nexec "{java_home / "bin" / tool}" "$@"\n')
        (shims / tool).chmod(0o755)
    env = {"JAVA_HOME": "", "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}"}
    home = tmp_path / "home"
    home.mkdir()
    url = f"https://localhost:{server}/"
    listing = keytool_listing(cacerts, str(shims / "keytool"))

    status = json.loads(trust("status", "--java", "--json", home=home, ca_dir=pki.issuing, extra_env=env,
                              check=True).stdout)
    assert [(s["label"], s["location"], s["outcome"]) for s in status["stores"]] == [
        (f"Java (java on PATH: {java_home})", str(cacerts), "not trusted")], status["stores"]
    assert outcomes(trust("install", "--java", "--json", home=home, ca_dir=pki.issuing, extra_env=env,
                          check=True)) == {str(cacerts): "added"}
    trusted = _java_get(java_home, java_client, url)
    assert trusted.returncode == 0 and "HTTP 200" in trusted.stdout, trusted.stdout + trusted.stderr
    assert outcomes(trust("uninstall", "--java", "--json", home=home, ca_dir=pki.issuing, extra_env=env,
                          check=True)) == {str(cacerts): "removed"}
    assert keytool_listing(cacerts, str(shims / "keytool")) == listing
    assert untrusted(_java_get(java_home, java_client, url).stdout)


@pytest.mark.parametrize("flags", [",,", "c,,"])
def test_status_names_the_cas_entry_that_is_there_but_not_trusted(pki, tmp_path: Path, flags: str) -> None:  # noqa: F811
    require("certutil")
    require("vfychain")
    home = tmp_path / "home"
    db = _nss_db(home / ".pki/nssdb")
    subprocess.run(["certutil", "-A", "-d", f"sql:{db}", "-n", "my dev root", "-t", flags], input=pki.anchor.pem,
                   check=True, capture_output=True)
    chain = (pki.server / "cert.pem", pki.issuing / "ca.pem")
    assert nss_verifies(db, *chain).returncode != 0  # NSS: not a trusted issuer
    text = trust("status", "--nss", home=home, ca_dir=pki.issuing, check=True).stdout
    assert "this CA is there as my dev root (not certkit's entry), not trusted to identify websites" in text, text
    (store,) = json.loads(trust("status", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True).stdout)[
        "stores"]
    assert (store["outcome"], store["untrusted_as"], store["elsewhere"]) == ("not trusted", ["my dev root"], [])
    subprocess.run(["certutil", "-M", "-d", f"sql:{db}", "-n", "my dev root", "-t", "C,,"], check=True)
    assert nss_verifies(db, *chain).returncode == 0
    (store,) = json.loads(trust("status", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True).stdout)[
        "stores"]
    assert (store["outcome"], store["untrusted_as"], store["elsewhere"]) == ("trusted", [], ["my dev root"])
