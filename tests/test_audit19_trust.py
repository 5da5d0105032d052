"""The nineteenth round's trust findings, each as a class, against real JDKs (keytool, a JSSE client whose trust store
is the JDK's default cacerts), never the machine's own stores:

1. A store changed by another program between certkit's read and its write. ``trust install|uninstall --java`` copied
   the JDK's cacerts, had keytool change the copy, and put the copy in place whole; a change another program made
   to cacerts meanwhile (keytool run by hand, Debian's ca-certificates-java hook run by apt, a configuration tool:
   none takes certkit's turn) was undone in silence: a CA it added was gone again (Java programs refused its
   servers), one it deleted (a compromised CA taken out) was trusted again, and certkit said "added"/"removed".
   certkit now puts its copy in place only if cacerts still holds what it copied; otherwise it makes its change
   again on a new copy.
2. A program running while the system store changes. ``trust install|uninstall --system`` said "added"/"removed" and
   nothing of the programs already running, which may keep what they read: a Python service's SSL context that
   has used the CA goes on accepting its servers after ``uninstall`` (new processes, curl, openssl and Python,
   refuse them), as a Go program keeps the pool it read once. The NSS and Java stores said so of their programs;
   the system store now does too, in a note on each change.
3. A removal from the system store stopped part-way. When the refresh after certkit took its file out failed (a
   read-only or full /etc, a hook that failed) or was stopped (Ctrl-C), or the file was deleted by hand without
   ``update-ca-certificates --fresh``, the bundle kept the CA, and its clients trusted it; but ``status`` called it
   "added by other means ... certkit did not add that entry: certkit trust uninstall leaves it", and ``uninstall``
   said "absent" and exited 0, so nothing certkit offered could take it out. A failed removal now puts back the
   file of each CA the bundle still holds (and says so), and a copy whose file is gone while the bundle holds it
   (Debian's link to the file is left) is certkit's, "incomplete": ``uninstall`` finishes it, ``install`` puts the
   file back.
4. Two certkit runs changing the system store at once (two installs, an install and an uninstall: a provisioning
   script run twice, a CA per cluster) ran update-ca-certificates twice at once, which updates one bundle, one
   folder of links and Java's copy with no lock of its own: one run's bundle replaced the other's (install failed
   with "ran, but ... does not hold the CA" for a CA trusted in the end), Java's hook failed on dpkg's lock, the
   bundle came out with a CA three times. They now take turns (a lock on the folder of anchors), as they do for a
   Java keystore.
5. A removal that failed part-way through an NSS database (``uninstall --every-certkit-ca``, a browser writing the
   database after the first entry went): "failed" with the reason alone, as if nothing had gone, while the first
   CA was out and browsers refused its sites. A failed removal now names what it took out before it failed
   (``removed`` in --json).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_audit16_trust import _waits_for_a_lock
from test_trust import _ca, _java_get, java_client, pki, server, untrusted  # noqa: F401

from certkit.trust import Anchor
from certkit.trust.tools import pem_fingerprints

from conftest import PASSPHRASE, certkit_env, require
from trust_helpers import (
    PYTHON_CLIENT,
    client_env,
    keytool_listing,
    nss_listing,
    nss_verifies,
    private_java_home,
    system_store_lock,
)


# --- 1: a store changed by another program between certkit's read and its write ----------------------------------
def _paused_trust(action: str, ca: Path, env: dict[str, str], marker: Path) -> subprocess.Popen:
    """``certkit trust ACTION --java`` stopped with its changed copy of cacerts beside it, not yet in place."""
    proc = subprocess.Popen([sys.executable, "-m", "certkit", "trust", action, "--java", "--ca-dir", ca],
                            env={**env, "CERTKIT_TEST_PAUSE_AT": "staged", "CERTKIT_TEST_PAUSE_FILE": str(marker)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "certkit did not reach its pause within 120 s"
        time.sleep(0.05)
    return proc


def _let_go(proc: subprocess.Popen, marker: Path) -> tuple[str, str, int]:
    """Let the paused certkit go on; (its output, how many times it paused again: each time it had made its change
    on a new copy of cacerts, found the first one stale)."""
    marker.unlink()
    again, deadline = 0, time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if marker.exists():
            again += 1
            marker.unlink()
        time.sleep(0.05)
    out, err = proc.communicate(timeout=120)
    return out, err, again


def test_a_java_keystore_changed_by_another_program_meanwhile_keeps_that_change(
        pki, server: int, java_client: Path, tmp_path: Path) -> None:  # noqa: F811
    require("keytool")
    real_home = Path(os.environ["JAVA_HOME"]) if os.environ.get("JAVA_HOME") else \
        Path(shutil.which("java")).resolve().parent.parent
    java_home = private_java_home(real_home, tmp_path)
    cacerts = (java_home / "lib/security/cacerts").resolve()
    keytool = str(java_home / "bin/keytool")
    url = f"https://localhost:{server}/"
    ca = _ca(tmp_path, "Dev CA", "--permit-dns", "home.arpa")
    stem = Anchor.from_ca_dir(ca).file_stem
    home, marker = tmp_path / "home", tmp_path / "paused"
    home.mkdir()
    env = certkit_env(HOME=str(home), JAVA_HOME=str(java_home),
                      PATH=f"{java_home / 'bin'}{os.pathsep}{os.environ['PATH']}")
    assert untrusted(_java_get(java_home, java_client, url).stdout)

    # install: an administrator adds the company's CA (the one the test server's chain leads to) by hand meanwhile
    proc = _paused_trust("install", ca, env, marker)
    try:
        subprocess.run([keytool, "-importcert", "-noprompt", "-alias", "company-ca", "-file", pki.root / "ca.pem",
                        "-keystore", cacerts, "-storepass", "changeit"], check=True, capture_output=True, timeout=120)
    except BaseException:
        marker.unlink(missing_ok=True)
        raise
    out, err, again = _let_go(proc, marker)
    assert proc.returncode == 0 and "added    java" in out and again == 1, (out + err, again)
    assert {"company-ca", stem} <= keytool_listing(cacerts, keytool).keys()
    got = _java_get(java_home, java_client, url)
    assert "HTTP 200" in got.stdout, got.stdout + got.stderr  # the company's CA is still trusted

    # uninstall: the company's CA is taken out by hand (its key leaked) meanwhile
    proc = _paused_trust("uninstall", ca, env, marker)
    try:
        subprocess.run([keytool, "-delete", "-alias", "company-ca", "-keystore", cacerts, "-storepass", "changeit"],
                       check=True, capture_output=True, timeout=120)
    except BaseException:
        marker.unlink(missing_ok=True)
        raise
    out, err, again = _let_go(proc, marker)
    assert proc.returncode == 0 and "removed  java" in out and again == 1, (out + err, again)
    assert not {"company-ca", stem} & keytool_listing(cacerts, keytool).keys()
    assert untrusted(_java_get(java_home, java_client, url).stdout)  # not trusted again behind the user's back
    assert not [p for p in cacerts.parent.iterdir() if p.name != "cacerts"]  # no copy left beside it


# --- 2: a program running while the system store changes ----------------------------------------------------------
# Debian's system store and what its refresh writes (the Java hook's queue, dpkg's triggers and the Java copy it
# makes), each bound to a private copy in a mount namespace of its own: nothing outside the test's folder changes.
_PRIVATE = (Path("/etc/ssl/certs"), Path("/usr/local/share/ca-certificates"), Path("/var/lib/ca-certificates-java"),
            Path("/var/lib/dpkg"))


def system_store_json(prefix: list[str], env: dict, ca_dir: Path, action: str) -> dict:
    """``certkit trust ACTION --system --json`` of ``ca_dir`` run through ``prefix`` (a private system store): the
    system store's JSON, the command having succeeded."""
    proc = subprocess.run([*prefix, sys.executable, "-m", "certkit", "trust", action, "--system", "--json",
                           "--ca-dir", str(ca_dir)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (store,) = json.loads(proc.stdout)["stores"]
    return store


def _private_system_store(work: Path, *, read_only: bool = False) -> list[str]:
    """A command prefix that runs a program in a private mount namespace whose Debian system store is the test's own
    copy, made by the first call (each run binds the same copies: one store for every program the test runs), its
    /etc/ssl/certs read-only with ``read_only``."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("update-ca-certificates") is None:
        pytest.skip("needs root, unshare and Debian's update-ca-certificates")
    binds = []
    with system_store_lock():  # not while a test of the machine's store changes it
        for i, place in enumerate(_PRIVATE):
            if place.is_dir():
                if not (work / f"bind{i}").exists():
                    shutil.copytree(place, work / f"bind{i}", symlinks=True)
                binds.append(f'mount --bind "{work / f"bind{i}"}" "{place}"')
    binds += ["mount -o remount,ro,bind /etc/ssl/certs"] if read_only else []
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c", " && ".join([*binds, 'exec "$@"']), "sh"]
    if subprocess.run([*prefix, "true"], capture_output=True, timeout=30).returncode != 0:
        pytest.skip("no private mount namespace here")
    return prefix


_RUNNING_CLIENT = """
import socket, ssl, sys
ctx = ssl.create_default_context()  # made once, as a service makes it at start
for _ in sys.stdin:
    try:
        with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost"):
                print("OK", flush=True)
    except ssl.SSLCertVerificationError as exc:
        print("VERIFY FAILED", exc.verify_message, flush=True)
"""


def test_a_system_store_change_says_that_running_programs_keep_what_they_read(
        pki, server: int, tmp_path: Path) -> None:  # noqa: F811
    prefix = _private_system_store(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    env = certkit_env(HOME=str(home))

    def trust(action: str) -> dict:
        return system_store_json(prefix, env, pki.issuing, action)

    def clients() -> dict[str, bool]:
        """Whether each client started now (curl, Python's ssl, openssl s_client) accepts the server."""
        ran = {name: subprocess.run([*prefix, *argv], env=client_env(), stdin=subprocess.DEVNULL, capture_output=True,
                                    timeout=60) for name, argv in (
            ("curl", ["curl", "-sS", "-o", "/dev/null", f"https://localhost:{server}/"]),
            ("python", [sys.executable, "-c", PYTHON_CLIENT, str(server)]),
            ("openssl", ["openssl", "s_client", "-connect", f"127.0.0.1:{server}", "-servername", "localhost",
                         "-verify_hostname", "localhost", "-verify_return_error", "-brief"]))}
        return {name: proc.returncode == 0 for name, proc in ran.items()}

    running = subprocess.Popen([*prefix, sys.executable, "-c", _RUNNING_CLIENT, str(server)], env=client_env(),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        def ask() -> str:
            running.stdin.write("\n")
            running.stdin.flush()
            return running.stdout.readline().strip()

        assert ask().startswith("VERIFY FAILED")
        note = "programs running now may keep the trust they read from this store"
        added = trust("install")
        assert added["outcome"] == "added" and [n for n in added["notes"] if n.startswith(note)], added
        assert clients() == {"curl": True, "python": True, "openssl": True}
        assert ask() == "OK"  # it read the CA (OpenSSL looks up a missing issuer in /etc/ssl/certs)
        removed = trust("uninstall")
        assert removed["outcome"] == "removed" and [n for n in removed["notes"] if n.startswith(note)], removed
        assert ask() == "OK"  # what the note says: the running program still accepts the removed CA's servers
        # A program started now refuses them: the store itself no longer trusts the CA.
        assert clients() == {"curl": False, "python": False, "openssl": False}
    finally:
        running.stdin.close()
        running.wait(timeout=30)


def _store_of(proc: subprocess.CompletedProcess) -> dict:
    (store,) = json.loads(proc.stdout)["stores"]
    return store


def test_a_removal_from_the_system_store_stopped_part_way_is_still_certkits_to_finish(
        pki, server: int, tmp_path: Path) -> None:  # noqa: F811
    prefix = _private_system_store(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    anchor = Anchor.from_ca_dir(pki.issuing)
    name = f"{anchor.file_stem}.crt"
    local, bundle = tmp_path / "bind1", tmp_path / "bind0" / "ca-certificates.crt"  # the copies the namespace binds

    def trust(action: str, *, read_only: bool = False) -> subprocess.CompletedProcess:
        run = _private_system_store(tmp_path, read_only=True) if read_only else prefix
        return subprocess.run([*run, sys.executable, "-m", "certkit", "trust", action, "--system", "--json",
                               "--ca-dir", str(pki.issuing)], env=certkit_env(HOME=str(home)), capture_output=True,
                              text=True, timeout=300)

    # The refresh fails (/etc/ssl/certs read-only): the CA stays in the bundle, and its file comes back.
    assert trust("install").returncode == 0
    failed = trust("uninstall", read_only=True)
    assert failed.returncode == 1 and _store_of(failed)["outcome"] == "failed", failed.stdout + failed.stderr
    assert f"certkit put back {name}, which /etc/ssl/certs/ca-certificates.crt still holds: its clients still " \
           "trust it" in failed.stderr, failed.stderr
    assert (local / name).is_file() and anchor.fingerprint in pem_fingerprints(bundle.read_bytes())
    said = _store_of(trust("status"))
    assert (said["outcome"], said["current"], said["elsewhere"]) == ("trusted", name, []), said

    # The file deleted by hand, no refresh since: certkit's copy, half-removed, still trusted.
    (local / name).unlink()
    said = _store_of(trust("status"))
    assert (said["outcome"], said["current"], said["elsewhere"]) == ("incomplete", name, []), said
    assert said["pending"].startswith(f"certkit's file {name} was taken out, but /etc/ssl/certs/ca-certificates.crt "
                                      "still holds the CA"), said
    removed = trust("uninstall")
    assert removed.returncode == 0 and _store_of(removed)["outcome"] == "removed", removed.stdout + removed.stderr
    assert _store_of(removed)["removed"] == [name]
    assert anchor.fingerprint not in pem_fingerprints(bundle.read_bytes())
    assert not [p for p in (tmp_path / "bind0").iterdir() if p.name.startswith(anchor.name)]  # no link left
    java = tmp_path / "bind0" / "java" / "cacerts"  # Debian's copy for Java, told by the hook
    assert not [a for a in keytool_listing(java) if anchor.name in a] if java.exists() else True
    ran = subprocess.run([*prefix, sys.executable, "-c", PYTHON_CLIENT, str(server)], env=client_env(),
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 2 and "VERIFY FAILED" in ran.stdout, ran.stdout + ran.stderr


def test_two_changes_of_the_system_store_at_once_take_turns(tmp_path: Path) -> None:
    prefix = _private_system_store(tmp_path)
    home, marker = tmp_path / "home", tmp_path / "paused"
    home.mkdir()
    cas = [_ca(tmp_path, f"Cluster {n}", "--permit-dns", f"{n}.home.arpa") for n in ("one", "two")]

    def install(ca: Path, **extra: str) -> subprocess.Popen:
        # As under apt, Java's hook only queues its change (no JVM run): the bundle is what this test reads.
        env = certkit_env(HOME=str(home), DPKG_MAINTSCRIPT_PACKAGE="certkit-test", **extra)
        return subprocess.Popen([*prefix, sys.executable, "-m", "certkit", "trust", "install", "--system", "--ca-dir",
                                 str(ca)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    first = install(cas[0], CERTKIT_TEST_PAUSE_AT="staged", CERTKIT_TEST_PAUSE_FILE=str(marker))
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():  # its anchor file written, its refresh not run
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        second = install(cas[1])
        while not _waits_for_a_lock(second.pid):  # its turn comes when the first is done
            assert second.poll() is None, second.communicate()
            assert time.monotonic() < deadline, "the second install neither waited nor finished within 120 s"
            time.sleep(0.05)
    finally:
        marker.unlink(missing_ok=True)
    for proc in (first, second):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "added    system" in out, out + err
    bundle = pem_fingerprints((tmp_path / "bind0" / "ca-certificates.crt").read_bytes())
    assert [bundle.count(Anchor.from_ca_dir(ca).fingerprint) for ca in cas] == [1, 1]


# --- 5: a removal that failed part-way ----------------------------------------------------------------------------
def test_a_removal_that_failed_part_way_names_what_it_took_out(tmp_path: Path) -> None:
    require("certutil")
    require("vfychain")
    home, marker = tmp_path / "home", tmp_path / "paused"
    db = home / ".pki/nssdb"
    db.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True, capture_output=True,
                   timeout=60)
    env = certkit_env(HOME=str(home))
    leaves = {}
    for n in ("one", "two"):
        ca = _ca(tmp_path, f"Cluster {n}", "--permit-dns", "home.arpa")
        subprocess.run([sys.executable, "-m", "certkit", "trust", "install", "--nss", "--ca-dir", ca], env=env,
                       check=True, capture_output=True, timeout=120)
        (tmp_path / f"leaf-{n}").mkdir()
        subprocess.run([sys.executable, "-m", "certkit", "issue-server", "--ca-dir", ca, "x.home.arpa"], check=True,
                       cwd=tmp_path / f"leaf-{n}", env={**env, "CERTKIT_CA_PASSPHRASE": PASSPHRASE},
                       capture_output=True, timeout=120)
        leaves[Anchor.from_ca_dir(ca).nickname] = tmp_path / f"leaf-{n}" / "x.home.arpa" / "cert.pem"
    proc = subprocess.Popen([sys.executable, "-m", "certkit", "trust", "uninstall", "--nss", "--every-certkit-ca",
                             "--json"], env={**env, "CERTKIT_TEST_PAUSE_AT": "removed-one",
                                             "CERTKIT_TEST_PAUSE_FILE": str(marker)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writer = sqlite3.connect(db / "cert9.db", isolation_level=None)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():  # the first entry deleted, the second not yet
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        writer.execute("BEGIN IMMEDIATE")  # a browser writing the database now
        marker.unlink()
        out, err = proc.communicate(timeout=120)
    finally:
        marker.unlink(missing_ok=True)
        writer.close()
    assert proc.returncode == 1, out + err
    (store,) = json.loads(out)["stores"]
    listing = nss_listing(db)
    gone = [nick for nick in leaves if nick not in listing]
    assert len(gone) == 1 and store["outcome"] == "failed" and "locked by another program" in store["reason"], store
    assert store["removed"] == gone, store  # said, as browsers now refuse its sites
    for nick, leaf in leaves.items():
        assert (nss_verifies(db, leaf).returncode == 0) == (nick not in gone)
