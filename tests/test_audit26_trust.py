"""Audit 26, trust: the store a consumer actually reads, checked with real peers (a JSSE client compiled with the
JDK and run with a private JAVA_HOME, against a loopback Python ssl server), never the machine's own stores.

1. A JDK with a ``jssecacerts``, started with a javax.net.ssl.trustStore option (JAVA_TOOL_OPTIONS, JDK_JAVA_OPTIONS,
   _JAVA_OPTIONS) naming a file that does not exist. Java then falls back to the JDK's ``cacerts`` (never
   ``jssecacerts``): certkit's note said so, but ``install`` added the CA to ``jssecacerts`` alone and skipped
   ``cacerts`` as ``unread``, so those Java programs still refused the CA's servers. That ``cacerts`` is now a store
   Java reads: install adds the CA there too, status reports it, uninstall takes it out. Of the same class: an option
   naming the JDK's ``cacerts`` itself (by any path), where the note told the user to add the CA there with keytool;
   and an option naming no file at all (``-Djavax.net.ssl.trustStore=`` with nothing after it), which certkit did not
   see, though Java then reads cacerts too.
2. A ``jssecacerts`` that users who read ``cacerts`` cannot read (0600, root's: InstallCert run by root with a umask of
   077). Java takes it for none and reads ``cacerts``; certkit (run as root) added the CA to ``jssecacerts`` alone and
   skipped ``cacerts`` as ``unread``, so every other user's Java programs refused the CA's servers, while ``status``
   said trusted. That ``cacerts`` is now changed too, with a note saying why.
"""

from __future__ import annotations

import http.server
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_audit20_trust import _java_env, _real_java_home
from test_trust import java_client, pki, untrusted  # noqa: F401

from certkit.trust import Anchor

from conftest import require, run_certkit
from trust_helpers import client_env, keytool_listing, private_java_home, run_trust_client, trust_json


@pytest.fixture(scope="module")
def python_server(pki) -> Iterator[int]:  # noqa: F811
    """A loopback Python ssl server (http.server) with the test server certificate and its chain, answering 200."""

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server / "fullchain.pem", pki.server / "privkey.pem")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)  # a client refusing it: an accept that fails
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize(("variable", "named"), [("JAVA_TOOL_OPTIONS", "missing"), ("JDK_JAVA_OPTIONS", "missing"),
                                                ("_JAVA_OPTIONS", "missing"), ("JAVA_TOOL_OPTIONS", "cacerts"),
                                                ("JAVA_TOOL_OPTIONS", "empty"), ("_JAVA_OPTIONS", "empty")])
def test_a_trust_store_option_with_a_jssecacerts_gets_the_ca_into_the_cacerts_java_reads(
        pki, python_server: int, java_client: Path, tmp_path: Path, variable: str, named: str) -> None:  # noqa: F811
    require("keytool")
    java_home = private_java_home(_real_java_home(), tmp_path)
    security = java_home / "lib/security"
    cacerts, jsse = (security / "cacerts").resolve(), security / "jssecacerts"
    shutil.copyfile(cacerts, jsse)
    keytool = str(java_home / "bin/keytool")
    stem = Anchor.from_ca_dir(pki.root).file_stem
    home = tmp_path / "home"
    home.mkdir()
    # a file that is not there, or no file at all (Java falls back to cacerts), or the JDK's cacerts by its link
    given = {"missing": tmp_path / "gone" / "truststore.jks", "cacerts": security / "cacerts", "empty": ""}[named]
    options = f"-Djavax.net.ssl.trustStore={given} -Xss1m"
    env = {**_java_env(home, java_home), variable: options}

    added = run_certkit("trust", "install", "--java", "--ca-dir", pki.root, "--json", env=env)
    assert added.returncode == 0, added.stdout + added.stderr
    stores = {s["location"]: s for s in trust_json(added)["stores"]}
    assert stores[str(jsse)]["outcome"] == "added" and stores[str(cacerts)]["outcome"] == "added", stores
    if named != "cacerts":
        assert any("falls back" in n and "so they read this store" in n for n in stores[str(cacerts)]["notes"]), stores
    assert any("certkit changes that file too" in n for n in stores[str(jsse)]["notes"]), stores
    assert not any("add the CA there with keytool" in n for s in stores.values() for n in s["notes"]), stores
    # Java programs of that environment read cacerts; those not given the option read jssecacerts: both trust it
    got = run_trust_client(java_home, java_client, python_server, **{variable: options})
    assert "HTTP 200" in got.stdout, got.stdout + got.stderr
    got = run_trust_client(java_home, java_client, python_server)
    assert "HTTP 200" in got.stdout, got.stdout + got.stderr
    assert stem in keytool_listing(cacerts, keytool) and stem in keytool_listing(jsse, keytool)

    status = run_certkit("trust", "status", "--java", "--ca-dir", pki.root, "--json", env=env)
    assert {s["location"]: s["outcome"] for s in trust_json(status)["stores"]} == {str(jsse): "trusted",
                                                                            str(cacerts): "trusted"}, status.stdout

    removed = run_certkit("trust", "uninstall", "--java", "--ca-dir", pki.root, "--json", env=env)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert {s["location"]: s["removed"] for s in trust_json(removed)["stores"]} == {str(jsse): [stem],
                                                                                  str(cacerts): [stem]}
    assert untrusted(run_trust_client(java_home, java_client, python_server, **{variable: options}).stdout)
    assert stem not in keytool_listing(cacerts, keytool) and stem not in keytool_listing(jsse, keytool)

    # without the option, cacerts is read by no Java program again: skipped as unread, as before
    plain = run_certkit("trust", "install", "--java", "--ca-dir", pki.root, "--json", env=_java_env(home, java_home))
    stores = {s["location"]: s for s in trust_json(plain)["stores"]}
    assert stores[str(cacerts)]["code"] == "unread" and stores[str(jsse)]["outcome"] == "added", stores
    # what a Java program given the option reads is cacerts, not jssecacerts (which holds the CA now)
    assert untrusted(run_trust_client(java_home, java_client, python_server, **{variable: options}).stdout)


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder every user may read (pytest's own are root's alone): for a JDK and a client run as another user."""
    folder = Path(tempfile.mkdtemp(prefix="certkit-audit26-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_jssecacerts_other_users_cannot_read_leaves_their_java_reading_cacerts(
        pki, python_server: int, java_client: Path, open_folder: Path) -> None:  # noqa: F811
    """InstallCert run by root with a umask of 077: its jssecacerts is 0600. Java programs of every other user take it
    for none and read cacerts (a JSSE client run as another user, nobody, shows it)."""
    require("keytool")
    # Another user indeed (a user namespace keeps root's uid for the files it opens: root's 0600 file stays readable)
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("running a program as another user needs root and setpriv")
    prefix = [shutil.which("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups"]
    java_home = private_java_home(_real_java_home(), open_folder)
    classes = open_folder / "classes"
    shutil.copytree(java_client, classes)
    for place, _dirs, files in os.walk(open_folder):  # its own folders and files, never what a link leads to
        os.chmod(place, 0o755)
        for path in (os.path.join(place, name) for name in files):
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o444)
    security = java_home / "lib/security"
    cacerts, jsse = (security / "cacerts").resolve(), security / "jssecacerts"
    shutil.copyfile(cacerts, jsse)
    jsse.chmod(0o600)
    keytool = str(java_home / "bin/keytool")
    stem = Anchor.from_ca_dir(pki.root).file_stem
    home = open_folder / "home"
    home.mkdir()
    env = _java_env(home, java_home)

    def other_user_trusts() -> bool:
        got = subprocess.run([*prefix, str(java_home / "bin/java"), "-cp", str(classes), "TrustClient",
                              f"https://localhost:{python_server}/"], env=client_env(), capture_output=True,
                             text=True, timeout=120)
        assert "HTTP 200" in got.stdout or untrusted(got.stdout), got.stdout + got.stderr
        return "HTTP 200" in got.stdout

    added = run_certkit("trust", "install", "--java", "--ca-dir", pki.root, "--json", env=env)
    assert added.returncode == 0, added.stdout + added.stderr
    stores = {s["location"]: s for s in trust_json(added)["stores"]}
    assert stores[str(jsse)]["outcome"] == "added" and stores[str(cacerts)]["outcome"] == "added", stores
    assert any("cannot be read by every user" in n and "0600" in n for n in stores[str(cacerts)]["notes"]), stores
    assert other_user_trusts()
    assert "HTTP 200" in run_trust_client(java_home, classes, python_server).stdout  # root reads jssecacerts

    status = run_certkit("trust", "status", "--java", "--ca-dir", pki.root, "--json", env=env)
    assert {s["location"]: s["outcome"] for s in trust_json(status)["stores"]} == {str(jsse): "trusted",
                                                                            str(cacerts): "trusted"}, status.stdout
    removed = run_certkit("trust", "uninstall", "--java", "--ca-dir", pki.root, "--json", env=env)
    assert {s["location"]: s["removed"] for s in trust_json(removed)["stores"]} == {str(jsse): [stem],
                                                                                  str(cacerts): [stem]}
    assert not other_user_trusts()
    assert stem not in keytool_listing(cacerts, keytool)

    # readable by all, jssecacerts is what every Java program reads: cacerts is unread again
    jsse.chmod(0o644)
    plain = run_certkit("trust", "install", "--java", "--ca-dir", pki.root, "--json", env=env)
    stores = {s["location"]: s for s in trust_json(plain)["stores"]}
    assert stores[str(cacerts)]["code"] == "unread" and stores[str(jsse)]["outcome"] == "added", stores
    assert other_user_trusts()
    jsse.chmod(0o600)  # Java's rule itself: closed to them, jssecacerts (holding the CA) is not what they read
    assert not other_user_trusts()


@pytest.mark.parametrize("variable", ["JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS"])
def test_a_quoted_trust_store_option_is_read_as_the_jvm_reads_it(
        pki, python_server: int, java_client: Path, tmp_path: Path, variable: str) -> None:  # noqa: F811
    """The whole option quoted, as one quotes a path with a space: "-Djavax.net.ssl.trustStore=/x/team store.jks".
    certkit read the path up to the space (/x/team), called it missing, and said Java falls back to this JDK's
    cacerts, where it added the CA: Java reads the team's store, and refused the CA's servers."""
    require("keytool")
    java_home = private_java_home(_real_java_home(), tmp_path)
    team = tmp_path / "team store.jks"  # a team's copy of the JDK's cacerts, without the CA
    shutil.copyfile((java_home / "lib/security/cacerts").resolve(), team)
    home = tmp_path / "home"
    home.mkdir()
    options = f'-Xss1m "-Djavax.net.ssl.trustStore={team}"'
    added = run_certkit("trust", "install", "--java", "--ca-dir", pki.root, "--json",
                        env={**_java_env(home, java_home), variable: options})
    [store] = trust_json(added)["stores"]
    assert store["outcome"] == "added", store
    got = run_trust_client(java_home, java_client, python_server, **{variable: options})
    assert untrusted(got.stdout), got.stdout + got.stderr  # the team's store, not the cacerts certkit changed
    assert not run_trust_client(java_home, java_client, python_server).returncode  # cacerts itself holds it
    notes = " ".join(store["notes"])
    assert f"read the trust store {team} ({variable}), not this one" in notes, notes
    assert "falls back" not in notes, notes
