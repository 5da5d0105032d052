"""The twenty-first round's trust findings, each as a class, against real clients and tools, never the machine's own
stores (the system store runs in a private mount namespace over copies: test_audit19_trust's
``_private_system_store``):

1. A CA trusted through OpenSSL's folder of certificates, not the bundle. A CA copied into /etc/ssl/certs and hashed
   there (``openssl rehash``, ``c_rehash``: what many guides say; update-ca-certificates --fresh keeps it) is trusted
   by curl and Python's ssl, which look a missing issuer up in that folder by its subject hash; ``status --system``
   read the bundle alone and said "not trusted", and ``uninstall`` said "removed" with nothing of the copy that
   kept the CA trusted. The store's clients' reading now includes that folder (by the names OpenSSL looks up), for
   the root and for the CA directory's intermediate; and certkit's own copy whose refresh stopped between its links
   and its bundle ("incomplete": curl and Python trust it already) says so.
2. What is said of Java where no Java program reads the system store. Every Java warning and note (an expired root
   "Java programs ... accept whatever its key signs", "Java ignores the name constraints of a trusted root", the
   ``for Java:`` line) counted the system store as read by Java, as Debian's ca-certificates-java makes it; on a
   machine without it (no /etc/ssl/certs/java/cacerts: no JDK, or one with its own cacerts) an expired root was
   said to be accepted by Java, and left trusted "for Java". The system store is now counted only when the
   distribution's Java copy of it is there.
3. A store file that is a mount point (a container's cacerts or CA bundle mounted on its own: a volume, a Kubernetes
   ConfigMap's subPath). No rename replaces it: ``install --java`` failed with "Device or resource busy
   (.../.cacerts.NNN.certkit-tmp)", naming certkit's temporary file, and ``install --system`` with
   update-ca-certificates' "mv: cannot move ...: Device or resource busy", neither saying what is wrong or what to
   do. Both now say the file is a mount point, that it was left as it was, and what to change instead.
4. An NSS database this user cannot read (its cert9.db left root's by ``sudo certutil``): ``status`` (and any
   command) repeated certutil's "SEC_ERROR_BAD_DATABASE: bad database", as of a damaged one, which a user mends by
   deleting it. It now names the file, whose it is and its mode, and what to do.
5. An install of the system store stopped during its refresh (Ctrl-C, SIGTERM): the refresh was killed wherever it
   was, perhaps with its links or its bundle made, and certkit's file stayed: curl and Python trusted the CA (or
   would at the next refresh anyone ran) while certkit said only "Interrupted.". A failed refresh already took the
   file out again; a stopped one now does too, with the stop signals held off meanwhile.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_audit19_trust import _private_system_store, system_store_json
from test_audit20_trust import _root_and_server
from test_trust import java_client, pki, server  # noqa: F401

from certkit.trust import Anchor, NSSStore, status

from conftest import certkit_env, free_port, require, wait_listening, wait_or_kill
from trust_helpers import PYTHON_CLIENT, client_env, private_java_home


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
        return system_store_json(prefix, env, pki.issuing, action)

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

    # certkit's own copy, its refresh stopped between its links and its bundle (killed; a bundle that is a mount
    # point): OpenSSL clients trust the CA already, and the store's "incomplete" says so.
    stem = pki.anchor.file_stem
    run("sh", "-c", f"rm {by_hand} && cp {pki.root / 'ca.pem'} /usr/local/share/ca-certificates/{stem}.crt && "
        f"ln -s /usr/local/share/ca-certificates/{stem}.crt /etc/ssl/certs/{stem}.pem && openssl rehash /etc/ssl/certs")
    assert accepted() == {"curl": True, "python": True}
    seen = trust("status")
    assert seen["outcome"] == "incomplete" and "curl and Python, already find it" in seen["pending"], seen


# --- 2: what is said of Java where no Java program reads the system store -----------------------------------------
_WITHOUT_JAVA_COPY = ["sh", "-c", "mount -t tmpfs tmpfs /etc/ssl/certs/java && exec \"$@\"", "sh"]


def test_an_expired_root_in_the_system_store_is_not_said_to_be_accepted_by_java_where_java_does_not_read_it(
        java_client: Path, tmp_path: Path) -> None:  # noqa: F811
    require("java")
    require("openssl")
    prefix = _private_system_store(tmp_path)
    no_java = [*prefix, *_WITHOUT_JAVA_COPY]  # this machine without ca-certificates-java's copy of the store
    now = dt.datetime.now(dt.UTC)
    ca = tmp_path / "Old CA"
    _root_and_server(ca, now - dt.timedelta(days=400), now - dt.timedelta(days=1))
    # In the system store as certkit put it there while it was valid (certkit's own file name, then the refresh).
    anchor_file = f"/usr/local/share/ca-certificates/{Anchor.from_ca_dir(ca).file_stem}.crt"
    no_hooks = tmp_path / "no-hooks"
    no_hooks.mkdir()
    placed = subprocess.run([*prefix, "sh", "-c", f'cp "$1" "{anchor_file}" && update-ca-certificates --hooksdir "$2"',
                             "sh", str(ca / "ca.pem"), str(no_hooks)], capture_output=True, text=True, timeout=120)
    assert placed.returncode == 0, placed.stdout + placed.stderr
    env = certkit_env(HOME=str(tmp_path))

    def said(where: list[str]) -> str:
        proc = subprocess.run([*where, sys.executable, "-m", "certkit", "trust", "status", "--system", "--ca-dir",
                               str(ca)], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0 and "trusted  system" in proc.stdout, proc.stdout + proc.stderr
        return " ".join(proc.stderr.split())

    # What the Java programs of that machine do: the JDK's cacerts leads to the missing copy, they trust nothing.
    port = free_port()
    served = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", ca / "server.pem",
                               "-key", ca / "server.key", "-www", "-quiet"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=client_env())
    try:
        wait_listening(port, served, "openssl s_server")
        got = subprocess.run([*no_java, "java", "-cp", str(java_client), "TrustClient", f"https://localhost:{port}/"],
                             env=client_env(), capture_output=True, text=True, timeout=120)
        assert "HTTP 200" not in got.stdout, got.stdout + got.stderr
    finally:
        served.terminate()
        wait_or_kill(served)
    without = said(no_java)
    assert "nothing it signed is accepted any more" in without and "Java" not in without, without
    # With Debian's copy there, Java programs do read the store: that warning stays.
    assert "Java programs, which do not check the dates of a trusted root, accept" in said(prefix)


# --- 3: a store file that is a mount point -------------------------------------------------------------------------
def _mounted_over(target: str, source: Path) -> list[str]:
    """A command prefix: ``source`` bind-mounted over the file ``target``, in a mount namespace of its own."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'mount --bind "{source}" "{target}" && exec "$@"', "sh"]


def test_a_store_file_that_is_a_mount_point_is_said_to_be_one(pki, tmp_path: Path) -> None:  # noqa: F811
    require("keytool")
    java = shutil.which("java")
    assert java is not None
    java_home = private_java_home(Path(java).resolve().parent.parent, tmp_path / "jdk")
    cacerts = (java_home / "lib/security/cacerts").resolve()
    mounted = tmp_path / "cacerts-from-the-host"
    shutil.copyfile(cacerts, mounted)
    was = hashlib.sha256(mounted.read_bytes()).hexdigest()
    env = certkit_env(HOME=str(tmp_path), JAVA_HOME=str(java_home), PATH=f"{java_home / 'bin'}:{client_env()['PATH']}")
    ran = subprocess.run([*_mounted_over(str(cacerts), mounted), sys.executable, "-m", "certkit", "trust", "install",
                          "--java", "--ca-dir", str(pki.issuing)], env=env, capture_output=True, text=True, timeout=300)
    said = " ".join(ran.stderr.split())
    assert ran.returncode == 1 and f"{cacerts} is a mount point" in said and "Change the file it is mounted" in said, \
        ran.stdout + ran.stderr
    assert "busy" not in said and "certkit-tmp" not in said, said
    assert hashlib.sha256(mounted.read_bytes()).hexdigest() == was  # left as it was, and nothing beside it
    assert sorted(p.name for p in cacerts.parent.iterdir()) == ["cacerts"]

    # The system store's bundle mounted on its own: update-ca-certificates' rename fails the same way.
    prefix = _private_system_store(tmp_path / "system")
    bundle = tmp_path / "bundle-from-the-host.crt"
    shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", bundle)
    ran = subprocess.run([*prefix, *_mounted_over("/etc/ssl/certs/ca-certificates.crt", bundle)[4:], sys.executable,
                          "-m", "certkit", "trust", "install", "--system", "--ca-dir", str(pki.issuing)],
                         env=certkit_env(HOME=str(tmp_path)), capture_output=True, text=True, timeout=300)
    said = " ".join(ran.stderr.split())
    assert ran.returncode == 1 and "/etc/ssl/certs/ca-certificates.crt is a mount point" in said, ran.stdout + said
    left = subprocess.run([*prefix, "sh", "-c", "ls /usr/local/share/ca-certificates"], capture_output=True,
                          text=True, timeout=60)
    assert "certkit-" not in left.stdout  # the install rolled back: certkit's file is not left


# --- 4: an NSS database this user cannot read ----------------------------------------------------------------------
def _as_nobody(work: Callable[[], str]) -> str:
    """``work()`` in a child process run as the user nobody (everything it needs imported before), its answer."""
    nobody = pwd.getpwnam("nobody")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no return from here
        code = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            os.write(write, work().encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        said = f.read().decode()
    assert os.waitpid(pid, 0)[1] == 0, said
    return said


def test_an_nss_database_this_user_cannot_read_is_not_called_bad(pki, request) -> None:  # noqa: F811
    certutil = require("certutil")
    if os.geteuid() != 0:
        pytest.skip("giving files to another user needs root")
    nobody = pwd.getpwnam("nobody")
    tmp_path = Path(tempfile.mkdtemp(prefix="certkit-audit21-", dir="/tmp"))  # pytest's own folder is root's alone
    request.addfinalizer(lambda: shutil.rmtree(tmp_path, ignore_errors=True))
    home = tmp_path / "home"
    nssdb = home / ".pki/nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run([certutil, "-N", "-d", f"sql:{nssdb}", "--empty-password"], check=True, capture_output=True,
                   timeout=60)
    # The user's own database, but its cert9.db left root's (sudo certutil run on it): everything else is theirs.
    for place in [tmp_path, home, home / ".pki", nssdb, *nssdb.iterdir()]:
        os.chown(place, nobody.pw_uid, nobody.pw_gid)
    os.chown(nssdb / "cert9.db", 0, 0)
    os.chmod(nssdb / "cert9.db", 0o600)
    own = subprocess.run([certutil, "-L", "-d", f"sql:{nssdb}"], capture_output=True, text=True, timeout=60,
                         preexec_fn=lambda: (os.setgroups([]), os.setgid(nobody.pw_gid), os.setuid(nobody.pw_uid)))
    assert own.returncode != 0 and "SEC_ERROR_BAD_DATABASE" in own.stderr, own.stderr  # certutil: "bad database"
    store = NSSStore("Chromium/Chrome", nssdb, certutil)
    import sqlite3  # noqa: F401  (what NSSStore reads with, imported before the child drops root)
    import urllib.parse  # noqa: F401

    def asked() -> str:
        (result,) = status(pki.anchor, [store])
        return json.dumps([result.outcome, result.reason])

    outcome, reason = json.loads(_as_nobody(asked))
    assert outcome == "failed" and f"{nssdb / 'cert9.db'} cannot be read by this user (it is root's, mode 0600)" \
        in reason, reason
    assert "run as its owner, or give the file back to this user" in reason


# --- 5: an install of the system store stopped during its refresh -----------------------------------------------------
_SLOW_REFRESH = """#!/bin/sh
# update-ca-certificates, then (but for a removal, --fresh) a wait that the test's Ctrl-C interrupts
/usr/sbin/update-ca-certificates "$@" || exit $?
case " $* " in *" --fresh "*) exit 0;; esac
touch "{marker}"
exec sleep 120
"""


def test_an_install_stopped_during_its_refresh_leaves_the_system_store_as_it_was(
        pki, server: int, tmp_path: Path) -> None:  # noqa: F811
    prefix = _private_system_store(tmp_path)
    tools, marker = tmp_path / "tools", tmp_path / "refreshed"
    tools.mkdir()
    (tools / "update-ca-certificates").write_text(_SLOW_REFRESH.format(marker=marker))
    (tools / "update-ca-certificates").chmod(0o755)
    env = certkit_env(HOME=str(tmp_path), PATH=f"{tools}:{client_env()['PATH']}")
    proc = subprocess.Popen([*prefix, sys.executable, "-m", "certkit", "trust", "install", "--system", "--ca-dir",
                             str(pki.issuing)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():  # the refresh has made its links and its bundle: the CA is trusted now
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the refresh did not run within 120 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGINT)  # Ctrl-C to certkit (unshare and sh exec it: the same process)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0 and "Interrupted" in err and "Traceback" not in err, out + err
    left = subprocess.run([*prefix, "sh", "-c", "ls /usr/local/share/ca-certificates /etc/ssl/certs"],
                          capture_output=True, text=True, timeout=60)
    assert "certkit-" not in left.stdout  # neither certkit's file nor its links
    curl = subprocess.run([*prefix, "curl", "-sS", "-o", "/dev/null", f"https://localhost:{server}/"],
                          env=client_env(), capture_output=True, text=True, timeout=60)
    assert curl.returncode == 60, curl.stderr  # the CA is not trusted: the store is as it was
