"""The twenty-second round's trust findings, each as a class, against real NSS tools (certutil, vfychain run as the
database's owner), never the machine's own stores:

1. Root changing a user's old-format NSS database (``sudo -E certkit trust install --nss``, or root with HOME the
   user's: a Firefox profile or ~/.pki/nssdb still in cert8.db/key3.db). certutil converts it to cert9.db, key4.db
   and pkcs11.txt, which it creates root's, mode 0600: the user's own NSS (the browser, certutil run as the user)
   could no longer read its database and saw it empty, without the CA certkit said it "added" (and without the keys
   of Firefox's saved logins, now in key4.db). Whatever certutil creates in a database folder of another user is now
   given to that folder's owner, for every certutil run (install, uninstall, status).
2. profiles.ini sections Firefox (and Thunderbird: the same Mozilla code) does not read. Firefox reads [Profile0],
   [Profile1]... in turn up to the first without IsRelative=, skips one without Name= or Path=, and takes Path as
   relative to its folder only for IsRelative=1 (else as a full path: a relative one is skipped). certkit took every
   section whose name began with "Profile": after a gap (a section taken out by hand), without a name, and, for
   IsRelative=0 with a relative Path, a folder relative to the CURRENT folder, whose NSS database it changed. Each
   was reported "added" / "trusted" as "Firefox profile NAME", a profile Firefox does not have, while docs/trust.md
   says profiles.ini "is read as Firefox reads it". They are now read as Firefox reads them, and each section it does
   not read is reported skipped (code "unread") with the reason; install adds nothing there, status does not call it
   trusted, and uninstall still takes out a copy certkit put there before.
3. The command as root given for a Java keystore this user cannot write. It was ``sudo certkit trust install --java``
   (with ``env JAVA_HOME=$JAVA_HOME`` when that was set, whichever JDK the keystore was of): sudo keeps neither this
   user's PATH (its secure_path) nor JAVA_HOME, so for a JDK found as the ``java`` on PATH (a JDK in /opt, an
   sdkman one) the command changed the keystore of the distribution's JDK (/usr/bin/java: /etc/ssl/certs/java/
   cacerts) and reported it "added", while the JDK the user runs still refused the server. The command now names the
   JDK of the keystore itself: ``sudo env JAVA_HOME=ITS_HOME PATH=ITS_HOME/bin:/usr/bin:/bin certkit trust ...``.
   The same class in the keytool commands certkit prints for a keystore it does not change itself (a password other
   than changeit; another certkit CA to take out alone; under sudo): they named a bare ``keytool``, which is the
   PATH's (none, on a machine whose JDK is JAVA_HOME's alone: "No such file or directory"; under sudo, the
   distribution's) rather than that JDK's; they now name the JDK's own keytool by its full path.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from test_audit19_trust import _private_system_store
from test_trust import _java_get, java_client, pki, server, trust, untrusted  # noqa: F401

from conftest import certkit_env, require
from trust_helpers import keytool_listing, private_java_home


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


# --- 2: profiles.ini sections Firefox does not read ----------------------------------------------------------------
def _listing(folder: Path) -> str:
    return subprocess.run(["certutil", "-L", "-d", f"sql:{folder}"], capture_output=True, text=True, timeout=60,
                          check=True).stdout


def test_profiles_firefox_does_not_read_are_neither_changed_nor_called_trusted(pki, tmp_path: Path) -> None:  # noqa: F811
    require("certutil")
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    firefox = home / ".mozilla/firefox"
    folders = {"used": firefox / "a.default", "gap": firefox / "b.after-gap", "nameless": firefox / "c.nameless",
               "cwd": cwd / "rel.profile"}  # a database in the current folder, where IsRelative=0 Path=rel.profile
    for folder in folders.values():
        folder.mkdir(parents=True)
        subprocess.run(["certutil", "-N", "-d", f"sql:{folder}", "--empty-password"], check=True,
                       capture_output=True, timeout=60)
    (firefox / "profiles.ini").write_text(
        "[Profile0]\nName=used\nIsRelative=1\nPath=a.default\nDefault=1\n\n"
        "[Profile1]\nName=relative\nIsRelative=0\nPath=rel.profile\n\n"
        "[Profile2]\nIsRelative=1\nPath=c.nameless\n\n"
        "[Profile4]\nName=after-gap\nIsRelative=1\nPath=b.after-gap\n\n"  # no [Profile3]: never read
        "[General]\nStartWithLastProfile=1\nVersion=2\n")
    env = certkit_env(HOME=str(home), PATH=str(Path(shutil.which("certutil")).parent))  # no Chromium: no ~/.pki

    def run(action: str) -> dict[str, dict]:
        proc = subprocess.run([sys.executable, "-m", "certkit", "trust", action, "--nss", "--json", "--ca-dir",
                               str(pki.issuing)], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
        return {s["label"]: s for s in json.loads(proc.stdout)["stores"] if s["label"].startswith("Firefox")}

    added = run("install")
    assert added["Firefox profile used"]["outcome"] == "added"
    assert {label: (s["outcome"], s["code"]) for label, s in added.items() if label != "Firefox profile used"} == {
        "Firefox profile relative": ("skipped", "unread"), "Firefox profile c.nameless": ("skipped", "unread"),
        "Firefox profile after-gap": ("skipped", "unread")}, added
    assert "never this one, [Profile4]" in added["Firefox profile after-gap"]["reason"]
    assert "IsRelative=0 (not 1)" in added["Firefox profile relative"]["reason"]
    assert "has no Name= setting" in added["Firefox profile c.nameless"]["reason"]
    assert pki.anchor.nickname in _listing(folders["used"])
    for which in ("gap", "nameless", "cwd"):  # certutil: nothing added where Firefox does not look
        assert "certkit-" not in _listing(folders[which]), which
    status = run("status")
    assert status["Firefox profile used"]["outcome"] == "trusted"
    assert status["Firefox profile after-gap"]["outcome"] == "skipped"
    # A copy put there before (by an earlier certkit) is said to be there, and taken out by uninstall.
    subprocess.run(["certutil", "-A", "-d", f"sql:{folders['gap']}", "-n", pki.anchor.nickname, "-t", "C,,"],
                   input=pki.anchor.pem, check=True, capture_output=True, timeout=60)
    assert "it holds certkit's" in run("status")["Firefox profile after-gap"]["reason"]
    removed = run("uninstall")
    assert (removed["Firefox profile used"]["outcome"], removed["Firefox profile after-gap"]["outcome"]) == (
        "removed", "removed"), removed
    assert all("certkit-" not in _listing(folder) for folder in folders.values())


# --- 3: the command as root for a Java keystore this user cannot write --------------------------------------------
SUDO_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # sudo's secure_path (Debian, Ubuntu)


def test_the_command_as_root_for_a_jdk_on_path_changes_that_jdk(pki, server: int, java_client: Path,  # noqa: F811
                                                                  tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root, and unshare to run certkit as a user that is not")
    prefix = _private_system_store(tmp_path)  # the machine's /etc/ssl/certs/java/cacerts: a copy, whatever happens
    machine_java = tmp_path / "bind0/java/cacerts"
    before = machine_java.read_bytes() if machine_java.exists() else None
    real_home = Path(shutil.which("java")).resolve().parent.parent
    jdk = private_java_home(real_home, tmp_path, debian_link=False)  # a JDK of its own (in /opt, say), root's
    for path in (jdk / "lib/security", jdk / "lib/security/cacerts"):
        os.chown(path, 12345, 12345)  # another owner's: the user below cannot write it
    home = tmp_path / "home"
    home.mkdir()
    url = f"https://localhost:{server}/"
    assert untrusted(_java_get(jdk, java_client, url).stdout)
    env = certkit_env(HOME=str(home), PATH=f"{jdk / 'bin'}:/usr/bin:/bin")  # that JDK's java first; no JAVA_HOME
    env.pop("JAVA_HOME", None)
    user = subprocess.run([*prefix, "unshare", "--user", "--", sys.executable, "-m", "certkit", "trust", "install",
                           "--java", "--ca-dir", str(pki.issuing)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert user.returncode == 1 and "is not writable by this user; run: sudo " in user.stderr, user.stderr
    command = shlex.split(user.stderr.split("; run: ", 1)[1].strip())
    assert command[:4] == ["sudo", "env", f"JAVA_HOME={jdk}", f"PATH={jdk / 'bin'}:/usr/bin:/bin"], command
    # What sudo runs: the command, its environment reset, PATH its secure_path.
    as_root = subprocess.run([*prefix, "env", "-i", f"PATH={SUDO_PATH}", f"HOME={home}", *command[1:]],
                             capture_output=True, text=True, timeout=300)
    assert as_root.returncode == 0, as_root.stdout + as_root.stderr
    assert pki.anchor.file_stem in keytool_listing(jdk / "lib/security/cacerts")
    got = _java_get(jdk, java_client, url)
    assert "HTTP 200" in got.stdout, got.stdout + got.stderr  # the JDK the user runs trusts it now
    assert (machine_java.read_bytes() if machine_java.exists() else None) == before  # and no other JDK changed
    assert (jdk / "lib/security/cacerts").stat().st_uid == 12345


def test_the_keytool_commands_for_a_jdk_not_on_path_run_as_printed(pki, server: int, java_client: Path,  # noqa: F811
                                                                    tmp_path: Path) -> None:
    real_home = Path(shutil.which("java")).resolve().parent.parent
    jdk = private_java_home(real_home, tmp_path, debian_link=False)
    cacerts = jdk / "lib/security/cacerts"
    subprocess.run([str(jdk / "bin/keytool"), "-storepasswd", "-keystore", str(cacerts), "-storepass", "changeit",
                    "-new", "hardened"], check=True, capture_output=True, timeout=120)
    home, empty = tmp_path / "home", tmp_path / "no-java-here"
    home.mkdir()
    empty.mkdir()
    # The user's JDK is JAVA_HOME's alone: no java, no keytool on PATH (and so no other JDK's keystore is found).
    env = certkit_env(HOME=str(home), JAVA_HOME=str(jdk), PATH=str(empty))

    def certkit(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "certkit", "trust", *argv, "--java", "--ca-dir", str(pki.issuing)],
                              env=env, capture_output=True, text=True, timeout=300)

    def as_printed(line: str, marker: str, password: str) -> list[str]:
        command = shlex.split(line.split(marker, 1)[1])
        ran = subprocess.run(command, env=env, input=f"{password}\nyes\n", capture_output=True, text=True,
                             timeout=120)  # keytool asks for the password (and, adding, whether to trust it)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        return command

    refused = certkit("install")
    assert refused.returncode == 1 and "add the CA yourself: " in refused.stderr, refused.stderr
    command = as_printed(refused.stderr.strip(), "add the CA yourself: ", "hardened")
    assert command[0] == str(jdk / "bin/keytool"), command
    url = f"https://localhost:{server}/"
    got = _java_get(jdk, java_client, url)
    assert "HTTP 200" in got.stdout, got.stdout + got.stderr  # that JDK trusts it, as certkit's advice said
    refused = certkit("uninstall")
    assert refused.returncode == 1 and "take certkit's entries out yourself: " in refused.stderr, refused.stderr
    as_printed(refused.stderr.strip(), "take certkit's entries out yourself: ", "hardened")
    assert untrusted(_java_get(jdk, java_client, url).stdout)
