"""The seventeenth round's trust findings, each as a class, against real NSS databases (certutil, vfychain) and a
real browser (headless Chromium reading the test's own ``~/.pki/nssdb``):

1. An NSS database in the old dbm format (``cert8.db``, ``key3.db``: a Chromium ``~/.pki/nssdb`` or a Firefox
   profile no browser has opened since NSS moved to ``cert9.db``) was invisible to certkit, though NSS reads it
   and Chromium trusts what it holds (converting it to ``cert9.db`` when it opens it). ``status`` said "not
   trusted" of a CA it trusts, a Firefox profile holding one was skipped ("start the program once"), and
   ``install`` waited ten seconds, then refused with the advice ``certutil -N -d sql:...``, which loops forever
   asking for a password. certkit now reads it as NSS does and changes it through certutil, which converts it as
   Chromium does.
2. A running browser keeps its answer for the sites it has already checked: Chromium refuses a page it refused
   before ``install`` until it is restarted, and keeps loading, after ``uninstall``, one it loaded under the CA.
   Neither command said so (the docs said "restart the browser to be sure"). A program that holds the database
   open is now named (``in use by chromium (pid N)``), with what that means.
3. The warning about a trusted CA's unencrypted key ended "take the CA out: certkit trust uninstall" also where
   the only trusting store was a JDK's cacerts whose password is not the default, which certkit does not change
   (uninstall skips it): it now gives that store's own command (keytool, which asks for the password).
4. The Java sibling of 2: a running Java program read cacerts once, and keeps trusting (or refusing) as it read
   it, on new connections too, until it is restarted; install and uninstall now say so for each Java store.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import signal
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from test_trust import _java_get, java_client, machine_store_quiet, outcomes, pki, server, trust, untrusted  # noqa: F401

from conftest import certkit_env, require, require_chromium, run_certkit
from trust_helpers import CHROMIUM, chromium, client_env, nss_verifies, private_java_home, private_jks_java_home


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


# --- 2: a running browser ------------------------------------------------------------------------------------
PAGE_TITLE = "certkit-audit17-page"


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = f"<html><head><title>{PAGE_TITLE}</title></head><body>ok</body></html>".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@contextmanager
def _https_page(fullchain: Path, key: Path) -> Iterator[str]:
    """An HTTPS server on 127.0.0.1 whose page has a title a browser shows; yields its URL (localhost)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(fullchain, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(30)


class _Browser:
    """Headless Chromium left running (HOME ``home``: its NSS database is the test's), driven through its DevTools
    HTTP endpoints: each :meth:`title` opens the URL in a new tab and waits for the page's title."""

    def __init__(self, home: Path, user_data: Path) -> None:
        user_data.mkdir()
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--lang=en-US", "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={user_data}", "--remote-debugging-port=0", "about:blank"],
            env=client_env(HOME=str(home), LANG="C"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        port_file = user_data / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            assert self.proc.poll() is None and time.monotonic() < deadline, "Chromium did not start"
            time.sleep(0.2)
        self.base = f"http://127.0.0.1:{int(port_file.read_text().split()[0])}"

    def pids(self) -> set[int]:
        """Every process of this browser (its own session)."""
        found = set()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == self.proc.pid:  # the session id
                found.add(int(pid))
        return found

    def title(self, url: str) -> str:
        request = urllib.request.Request(f"{self.base}/json/new?{url}", method="PUT")
        tab = json.load(urllib.request.urlopen(request, timeout=30))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for each in json.load(urllib.request.urlopen(f"{self.base}/json/list", timeout=30)):
                if each["id"] == tab["id"] and each["title"] in (PAGE_TITLE, "Privacy error"):
                    return each["title"]
            time.sleep(0.3)
        raise AssertionError(f"Chromium loaded no page from {url} within 60 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)


def _in_use(proc: subprocess.CompletedProcess) -> list[str]:
    (store,) = json.loads(proc.stdout)["stores"]
    return [n for n in store["notes"] if n.startswith("in use by")]


def test_a_running_browser_is_named_for_it_keeps_its_answer_until_restarted(pki, tmp_path: Path) -> None:  # noqa: F811
    require_chromium()
    home = tmp_path / "home"
    nssdb = home / ".pki/nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{nssdb}", "--empty-password"], check=True, capture_output=True)
    browsers: list[_Browser] = []

    def browser() -> _Browser:
        browsers.append(_Browser(home, tmp_path / f"chromium-{len(browsers)}"))
        return browsers[-1]

    with _https_page(pki.server / "fullchain.pem", pki.server / "privkey.pem") as url:
        try:
            first = browser()
            assert first.title(url) == "Privacy error"  # the CA is not trusted yet
            added = trust("install", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True)
            (note,) = _in_use(added)
            named = {int(pid) for pid in re.findall(r"chromium \(pid (\d+)\)", note)}
            assert named and named <= first.pids(), (note, first.pids())
            assert "keeps its earlier answer for the sites it has already checked" in note
            # What the note says: the running browser still refuses the page it refused; a new one loads it.
            assert first.title(url) == "Privacy error"
            second = browser()
            assert second.title(url) == PAGE_TITLE

            removed = trust("uninstall", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True)
            (note,) = _in_use(removed)
            named = {int(pid) for pid in re.findall(r"chromium \(pid (\d+)\)", note)}
            assert named & second.pids() and named <= first.pids() | second.pids(), note
            assert second.title(url) == PAGE_TITLE  # still loads in the browser that loaded it
            assert browser().title(url) == "Privacy error"  # restarted: refused
        finally:
            for each in browsers:
                each.stop()
        # No browser running: nothing to say.
        assert _in_use(trust("install", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True)) == []
        assert _in_use(trust("uninstall", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True)) == []


# --- 3: the way out of a store certkit does not change ---------------------------------------------------------
def test_the_warning_about_an_unencrypted_key_gives_the_command_for_a_store_certkit_does_not_change(
        tmp_path: Path, java_client: Path, machine_store_quiet) -> None:  # noqa: F811
    java_home = private_jks_java_home(tmp_path)
    cacerts = (java_home / "lib/security/cacerts").resolve()
    env = {"JAVA_HOME": str(java_home), "PATH": f"{java_home / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    home = tmp_path / "home"
    home.mkdir()
    ca = tmp_path / "ca"
    run_certkit("init-ca", "--ca-dir", ca, "--name", "Bare key CA", "--permit-dns", "localhost", "--no-passphrase",
                env=certkit_env(HOME=str(home)), check=True)
    run_certkit("issue-server", "--ca-dir", ca, "localhost", cwd=tmp_path, env=certkit_env(HOME=str(home)), check=True)
    leaf = tmp_path / "localhost"
    assert outcomes(trust("install", "--java", "--json", home=home, ca_dir=ca, extra_env=env, check=True)) == {
        str(cacerts): "added"}
    keytool = str(java_home / "bin/keytool")
    subprocess.run([keytool, "-storepasswd", "-keystore", cacerts, "-storepass", "changeit", "-new", "hardened"],
                   check=True, capture_output=True, timeout=120)  # hardened after the install
    with _https_page(leaf / "fullchain.pem", leaf / "privkey.pem") as url:
        got = _java_get(java_home, java_client, url)
        assert got.returncode == 0 and "HTTP 200" in got.stdout, got.stdout + got.stderr

        report = json.loads(trust("status", "--java", "--json", home=home, ca_dir=ca, extra_env=env,
                                  check=True).stdout)
        (warning,) = [w for w in report["warnings"] if "is not encrypted" in w]
        way_out = warning.split("Keep it encrypted, or take the CA out: ", 1)[1]
        # certkit trust uninstall would skip this store (its password is not the default): not the way out here.
        assert "certkit trust uninstall" not in way_out, warning
        command = shlex.split(way_out.split(" (certkit's copy in a store whose password", 1)[0])
        assert command[:2] == [keytool, "-delete"] and "-storepass" not in command, command
        skipped = trust("uninstall", "--java", home=home, ca_dir=ca, extra_env=env)
        assert skipped.returncode == 1 and "protected by a password" in skipped.stderr, skipped.stderr
        subprocess.run([keytool, *command[1:]], input="hardened\n", text=True, check=True, capture_output=True,
                       timeout=120)  # the advice, followed: keytool asks for the password
        assert untrusted(_java_get(java_home, java_client, url).stdout)
    status = json.loads(trust("status", "--java", "--json", home=home, ca_dir=ca, extra_env=env, check=True).stdout)
    assert [s["outcome"] for s in status["stores"]] == ["not trusted"] and not status["warnings"], status


# --- 4: a running Java program ----------------------------------------------------------------------------------
TRUST_LOOP = """
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.URL;
import javax.net.ssl.HttpsURLConnection;

// GET a URL once per line read, in one JVM, with Java's default trust store; a new connection each time.
public class TrustLoop {
    public static void main(String[] args) throws Exception {
        System.setProperty("http.keepAlive", "false");
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        while (in.readLine() != null) {
            HttpsURLConnection c = (HttpsURLConnection) new URL(args[0]).openConnection();
            c.setConnectTimeout(10000);
            c.setReadTimeout(10000);
            try {
                System.out.println("HTTP " + c.getResponseCode());
            } catch (javax.net.ssl.SSLException e) {
                System.out.println("TLS FAILED: " + e);
            }
            System.out.flush();
        }
    }
}
"""


class _JavaLoop:
    """A Java program left running (TrustLoop): each :meth:`get` has it fetch the URL again."""

    def __init__(self, java_home: Path, classes: Path, url: str) -> None:
        self.proc = subprocess.Popen([str(java_home / "bin/java"), "-cp", str(classes), "TrustLoop", url],
                                     env=client_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def get(self) -> str:
        import select

        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        ready, _w, _x = select.select([self.proc.stdout], [], [], 60)  # it answers within its 10 s timeouts
        assert ready, "the Java program gave no answer within 60 s"
        return self.proc.stdout.readline().strip()

    def stop(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
        self.proc.stdout.close()


def test_install_and_uninstall_say_that_a_running_java_program_keeps_the_trust_it_read(
        pki, server: int, java_client: Path, tmp_path: Path, machine_store_quiet) -> None:  # noqa: F811
    real_home = Path(os.environ["JAVA_HOME"]) if os.environ.get("JAVA_HOME") else \
        Path(shutil.which("java")).resolve().parent.parent
    java_home = private_java_home(real_home, tmp_path)
    (java_client / "TrustLoop.java").write_text(TRUST_LOOP)
    subprocess.run(["javac", "-d", str(java_client), str(java_client / "TrustLoop.java")], check=True,
                   capture_output=True, timeout=120)
    env = {"JAVA_HOME": str(java_home), "PATH": f"{java_home / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    home = tmp_path / "home"
    home.mkdir()
    url = f"https://localhost:{server}/"
    note = "Java programs running now keep the trust they read from it (once, at their first TLS connection)"

    def notes(action: str) -> list[str]:
        (store,) = json.loads(trust(action, "--java", "--json", home=home, ca_dir=pki.issuing, extra_env=env,
                                    check=True).stdout)["stores"]
        assert store["outcome"] == {"install": "added", "uninstall": "removed"}[action], store
        return store["notes"]

    before = _JavaLoop(java_home, java_client, url)
    try:
        assert before.get().startswith("TLS FAILED")
        assert any(n.startswith(note) for n in notes("install"))
        assert before.get().startswith("TLS FAILED")  # what the note says: the running program still refuses it
        fresh = _java_get(java_home, java_client, url)
        assert fresh.returncode == 0 and "HTTP 200" in fresh.stdout, fresh.stdout + fresh.stderr  # a new one trusts
    finally:
        before.stop()
    during = _JavaLoop(java_home, java_client, url)
    try:
        assert during.get() == "HTTP 200"
        assert any(n.startswith(note) for n in notes("uninstall"))
        assert during.get() == "HTTP 200"  # still trusted by the program that read it, on a new connection
        assert untrusted(_java_get(java_home, java_client, url).stdout)  # a new one does not
    finally:
        during.stop()
