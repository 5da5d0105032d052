"""Helpers for the trust-store tests: guarding the machine's system store, a private JDK, the clients.

- :func:`system_store_guard` holds a lock (one test at a time, across xdist workers), records every
  file and link of the system store's folders (Debian: /usr/local/share/ca-certificates,
  /etc/ssl/certs with Java's copy /etc/ssl/certs/java/cacerts, /var/lib/ca-certificates-java), and
  puts back whatever differs afterwards, also when the test fails; then it checks that it did.
- :func:`private_java_home` builds a JDK whose ``cacerts`` is the test's own (see its docstring).
- The clients (curl, Python's ssl, openssl s_client, Chromium, Java) use their default trust store,
  so every variable that would point them elsewhere (SSL_CERT_FILE, CURL_CA_BUNDLE...) is removed.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Variables that make a client use another trust store than its default one.
CA_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
                "GIT_SSL_CAINFO", "NIX_SSL_CERT_FILE", "PIP_CERT", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS",
                "JDK_JAVA_OPTIONS")
SYSTEM_DIRS = (Path("/usr/local/share/ca-certificates"), Path("/etc/ssl/certs"),
               Path("/var/lib/ca-certificates-java"), Path("/etc/pki/ca-trust/source/anchors"),
               Path("/etc/pki/ca-trust/extracted"))
LOCK = Path("/tmp/certkit-test-system-trust-store.lock")
CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", shutil.which("chromium") or "")
                 if p and os.access(p, os.X_OK)), None)


def client_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CA_VARIABLES}
    env.update(extra)
    return env


def trust_json(proc: subprocess.CompletedProcess) -> dict:
    """The JSON a ``trust ... --json`` run printed (the test fails with its output when there is none)."""
    assert proc.stdout.startswith("{"), proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def run_trust_client(java_home: Path, classes: Path, port: int, **env: str) -> subprocess.CompletedProcess:
    """The compiled Java TrustClient (default trust store of ``java_home``) fetching https://localhost:PORT/."""
    return subprocess.run([str(java_home / "bin/java"), "-cp", str(classes), "TrustClient",
                           f"https://localhost:{port}/"], env=client_env(**env), capture_output=True, text=True,
                          timeout=120)


# --- the system store: record, restore --------------------------------------------------
# ("d", mode, uid, gid, None, mtime) | ("f", mode, uid, gid, bytes, mtime) | ("l", target, None, None, None, mtime)
Entry = tuple


def snapshot(dirs=SYSTEM_DIRS) -> dict[str, Entry]:
    """Every folder, file and link under ``dirs``: type, mode, owner, content (links: their target)."""
    found: dict[str, Entry] = {}
    for top in dirs:
        if not os.path.lexists(top):
            continue
        for root, subdirs, files in os.walk(top):
            for name in [root] + [os.path.join(root, n) for n in subdirs + files]:
                st = os.lstat(name)
                if stat.S_ISLNK(st.st_mode):
                    found[name] = ("l", os.readlink(name), None, None, None, st.st_mtime_ns)
                elif stat.S_ISDIR(st.st_mode):
                    found[name] = ("d", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, None, st.st_mtime_ns)
                else:
                    with open(name, "rb") as f:
                        found[name] = ("f", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, f.read(), st.st_mtime_ns)
            subdirs[:] = [d for d in subdirs if not os.path.islink(os.path.join(root, d))]
    return found


def _same(a: Entry, b: Entry) -> bool:
    # Content, type, mode and owner; a modification time is put back, but not compared.
    return a[:5] == b[:5]


def restore(saved: dict[str, Entry], dirs=SYSTEM_DIRS) -> list[str]:
    """Put back what ``saved`` recorded; return the paths that had to be put back."""
    now = snapshot(dirs)
    changed = []
    for name in sorted(set(now) - set(saved), key=len, reverse=True):  # added since: children first
        changed.append(name)
        if now[name][0] == "d":
            shutil.rmtree(name, ignore_errors=True)
        elif os.path.lexists(name):
            os.unlink(name)
    for name in sorted(saved, key=len):  # parents first
        want = saved[name]
        have = now.get(name)
        if have is not None and _same(have, want):
            continue
        changed.append(name)
        if have is not None and have[0] != want[0]:
            shutil.rmtree(name) if have[0] == "d" else os.unlink(name)
        tmp = f"{name}.certkit-restore"
        if want[0] == "d":
            os.makedirs(name, exist_ok=True)
            os.chmod(name, want[1])
            os.chown(name, want[2], want[3])
        elif want[0] == "l":
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(want[1], tmp)
            os.replace(tmp, name)
        else:
            with open(tmp, "wb") as f:
                f.write(want[4])
            os.chmod(tmp, want[1])
            os.chown(tmp, want[2], want[3])
            os.utime(tmp, ns=(want[5], want[5]))
            os.replace(tmp, name)
    for name, want in sorted(saved.items(), key=lambda item: -len(item[0])):  # folders after their entries
        if os.path.lexists(name) and os.lstat(name).st_mtime_ns != want[5]:
            os.utime(name, ns=(want[5], want[5]), follow_symlinks=False)
    return changed


_lock_depth = 0


@contextmanager
def system_store_lock() -> Iterator[None]:
    """No other test (in any xdist worker) changes the system store inside this block. A block
    nested in another of the same process holds the lock already (flock would wait for itself)."""
    global _lock_depth
    if _lock_depth:
        _lock_depth += 1
        try:
            yield
        finally:
            _lock_depth -= 1
        return
    LOCK.touch(exist_ok=True)
    with open(LOCK) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _lock_depth = 1
        try:
            yield
        finally:
            _lock_depth = 0


@contextmanager
def system_store_guard() -> Iterator[dict[str, Entry]]:
    """The machine's system store, exactly as it was after the block, whatever happened in it."""
    with system_store_lock():
        saved = snapshot()
        # SIGTERM (a killed test run) unwinds through the finally below as well.
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        try:
            yield saved
        finally:
            try:
                restore(saved)
                now = snapshot()
                left = sorted(n for n in set(now) | set(saved) if now.get(n) != saved.get(n))
                assert not left, f"the system store could not be restored: {left[:10]}"
            finally:
                signal.signal(signal.SIGTERM, previous)


def system_store_consistent() -> bool:
    """Whether Debian's update-ca-certificates would find nothing to add: every certificate that
    /etc/ca-certificates.conf and /usr/local/share/ca-certificates name is linked from /etc/ssl/certs."""
    conf = Path("/etc/ca-certificates.conf")
    wanted = []
    if conf.exists():
        wanted += [Path("/usr/share/ca-certificates") / line.strip() for line in conf.read_text().splitlines()
                   if line.strip() and not line.startswith(("#", "!"))]
    wanted += sorted(p for p in Path("/usr/local/share/ca-certificates").rglob("*.crt") if p.is_file())
    for cert in wanted:
        link = Path("/etc/ssl/certs") / (cert.stem.replace(" ", "_").replace("(", "=").replace(")", "=")
                                         .replace(",", "_") + ".pem")
        if not link.is_symlink() or os.readlink(link) != str(cert):
            return False
    return True


def bundle_fingerprints(path: Path = Path("/etc/ssl/certs/ca-certificates.crt")) -> list[str]:
    from certkit.trust.tools import pem_fingerprints

    return pem_fingerprints(path.read_bytes())


def system_listing() -> dict:
    """What a client of the system store sees: the trusted certificates (bundle, hashed folder,
    local anchors) and Java's copy by alias, named by fingerprint; not how each file is stored."""
    import hashlib

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "dangling"

    certs = Path("/etc/ssl/certs")
    return {
        "bundle": bundle_fingerprints(),
        "etc_ssl_certs": {p.name: digest(p) for p in sorted(certs.iterdir()) if p.name != "java"
                          and p.name != "ca-certificates.crt"},
        "local": {p.name: digest(p) for p in sorted(Path("/usr/local/share/ca-certificates").rglob("*"))},
        "java": keytool_listing(certs / "java" / "cacerts") if (certs / "java" / "cacerts").exists() else None,
    }


def keytool_listing(keystore: Path, keytool: str = "keytool") -> dict[str, str]:
    """alias -> SHA-256 fingerprint of every entry of a keystore, as keytool reads it."""
    proc = subprocess.run([keytool, "-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC", "-J-Duser.language=en", "-list",
                           "-keystore", str(keystore), "-storepass",
                           "changeit"], capture_output=True, text=True, timeout=120, check=True)
    listing, alias = {}, None
    for line in proc.stdout.splitlines():
        if ", trustedCertEntry," in line or ", PrivateKeyEntry," in line:
            alias = line.split(",", 1)[0]
        elif line.startswith("Certificate fingerprint (SHA-256):") and alias:
            listing[alias] = line.split(":", 1)[1].strip()
    return listing


# --- a JDK with a cacerts of the test's own ---------------------------------------------
_TEMPLATES: dict[Path, Path] = {}


def _launchers(real_home: Path) -> Path:
    """The copied files of a private JDK (bin/* and lib/server/libjvm.so), made once per session;
    each private JDK hard-links them (same file system) or copies them again."""
    if real_home not in _TEMPLATES:
        import tempfile

        template = Path(tempfile.mkdtemp(prefix="certkit-test-jdk-"))
        (template / "bin").mkdir()
        for tool in (real_home / "bin").iterdir():
            shutil.copy2(tool, template / "bin" / tool.name)
        (template / "libjvm.so").write_bytes((real_home / "lib/server/libjvm.so").read_bytes())
        import atexit

        atexit.register(shutil.rmtree, template, True)
        _TEMPLATES[real_home] = template
    return _TEMPLATES[real_home]


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def private_java_home(real_home: Path, workdir: Path, *, debian_link: bool = True) -> Path:
    """A JDK that is the real one in every respect but its ``lib/security/cacerts``.

    Java finds its home (java.home, hence ``lib/security/cacerts``) from the real path of
    ``lib/server/libjvm.so``, and the launcher finds libjvm from its own real path; so the
    launchers (bin/*) and libjvm.so are copies, and everything else (the class library,
    conf, the rest of lib/) is a link to the real JDK. cacerts is a private copy of the
    real one; with ``debian_link`` it is, as on Debian, a link (to a copy outside the JDK,
    standing in for /etc/ssl/certs/java/cacerts). Nothing of the real JDK is changed.
    """
    home = workdir / "jdk"
    home.mkdir(parents=True)
    template = _launchers(real_home)
    for entry in real_home.iterdir():
        if entry.name not in ("bin", "lib"):
            (home / entry.name).symlink_to(entry)
    (home / "bin").mkdir()
    for tool in (template / "bin").iterdir():
        _link_or_copy(tool, home / "bin" / tool.name)
    (home / "lib").mkdir()
    for entry in (real_home / "lib").iterdir():
        if entry.name not in ("server", "security"):
            (home / "lib" / entry.name).symlink_to(entry)
    (home / "lib" / "server").mkdir()
    for entry in (real_home / "lib" / "server").iterdir():
        if entry.name == "libjvm.so":
            _link_or_copy(template / "libjvm.so", home / "lib" / "server" / entry.name)
        else:
            (home / "lib" / "server" / entry.name).symlink_to(entry)
    (home / "lib" / "security").mkdir()
    for entry in (real_home / "lib" / "security").iterdir():
        if entry.name != "cacerts":
            (home / "lib" / "security" / entry.name).symlink_to(entry)
    # The system-store tests' update-ca-certificates hook rewrites the machine's cacerts (through
    # /etc/ssl/certs/java) while they run: a copy taken meanwhile would hold their test root.
    with system_store_lock():
        real_cacerts = (real_home / "lib" / "security" / "cacerts").read_bytes()
    if debian_link:
        shared = workdir / "etc-ssl-certs-java" / "cacerts"
        shared.parent.mkdir()
        shared.write_bytes(real_cacerts)
        (home / "lib" / "security" / "cacerts").symlink_to(shared)
    else:
        (home / "lib" / "security" / "cacerts").write_bytes(real_cacerts)
    return home


JAVA_CLIENT = """
import java.net.URL;
import javax.net.ssl.HttpsURLConnection;

// GET a URL with Java's default trust store (java.home/lib/security/cacerts): no options.
public class TrustClient {
    public static void main(String[] args) throws Exception {
        System.out.println("java.home=" + System.getProperty("java.home"));
        HttpsURLConnection c = (HttpsURLConnection) new URL(args[0]).openConnection();
        c.setConnectTimeout(10000);
        c.setReadTimeout(10000);
        try {
            System.out.println("HTTP " + c.getResponseCode());
        } catch (javax.net.ssl.SSLException e) {
            System.out.println("TLS FAILED: " + e);
            System.exit(2);
        }
    }
}
"""


def private_jks_java_home(workdir: Path) -> Path:
    """:func:`private_java_home` of the JDK ``java`` runs, whose cacerts is a JKS keystore (Debian's);
    skips the test otherwise (a PKCS#12 cacerts with a password is read with that password only)."""
    import pytest

    real_home = Path(os.environ["JAVA_HOME"]) if os.environ.get("JAVA_HOME") else \
        Path(shutil.which("java")).resolve().parent.parent
    java_home = private_java_home(real_home, workdir)
    if not (java_home / "lib/security/cacerts").resolve().read_bytes().startswith(b"\xfe\xed\xfe\xed"):
        pytest.skip("this JDK's cacerts is not a JKS keystore (Debian's is)")
    return java_home


# --- the clients ----------------------------------------------------------------------------
def curl(url: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", url], env=client_env(),
                          capture_output=True, text=True, timeout=30)


PYTHON_CLIENT = """
import socket, ssl, sys
ctx = ssl.create_default_context()
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            print("OK", tls.version())
except ssl.SSLCertVerificationError as exc:
    print("VERIFY FAILED", exc.verify_message)
    sys.exit(2)
"""


def python_client(port: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PYTHON_CLIENT, str(port)], env=client_env(), capture_output=True,
                          text=True, timeout=30)


def openssl_client(port: int) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
                           "-verify_hostname", "localhost", "-verify_return_error", "-brief"],
                          stdin=subprocess.DEVNULL, env=client_env(), capture_output=True, text=True, timeout=30)


def chromium(url: str, home: Path, user_data: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Headless Chromium's --dump-dom of ``url``, with ``home`` as HOME (so ~/.pki/nssdb is the test's)."""
    assert CHROMIUM, "chromium is not installed"
    args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={user_data}", "--dump-dom", url]
    proc = subprocess.Popen(args, env=client_env(HOME=str(home)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def nss_listing(directory: Path) -> str:
    """certutil's listing of an NSS database (nicknames and trust), or "" when there is none."""
    if not (directory / "cert9.db").exists():
        return ""
    return subprocess.run(["certutil", "-L", "-d", f"sql:{directory}"], capture_output=True, text=True,
                          timeout=30, check=True).stdout


def nss_verifies(directory: Path, leaf: Path, *chain: Path) -> subprocess.CompletedProcess:
    """NSS's own path building (vfychain, PKIX) of a TLS server certificate against the database's trust."""
    args = ["vfychain", "-d", f"sql:{directory}", "-pp", "-u", "1", "-a", str(leaf)]
    for cert in chain:
        args += ["-a", str(cert)]
    return subprocess.run(args, capture_output=True, text=True, timeout=30)
