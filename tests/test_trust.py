"""``certkit trust``: the CA goes into the system, NSS and Java trust stores and comes out again,
proven with the clients that read those stores (no mocks):

- system store (Debian's update-ca-certificates, on this machine): curl without --cacert, Python's
  ``ssl.create_default_context()`` and ``openssl s_client -verify_return_error``, each with its
  default store, fail before ``install --system``, succeed after, fail after ``uninstall``. The
  machine's store is recorded first and put back afterwards, also when the test fails
  (trust_helpers.system_store_guard); the test needs root (CI runs as root).
- NSS: headless Chromium with HOME set to the test's folder (so ~/.pki/nssdb is the test's), and
  NSS's own verifier (vfychain) on Firefox and Thunderbird profiles found through profiles.ini.
- Java: a small HttpsURLConnection client, default trust store, on a private JDK whose cacerts is
  the test's own (trust_helpers.private_java_home explains how); the machine's cacerts is never
  touched.

One PKI serves them all: a name-constrained root (localhost, 127.0.0.1), an intermediate under it
whose directory is what the commands are given (so "installs the root" is tested throughout), and
a server certificate from the intermediate, served by nginx on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from certkit.store import CADirectory
from certkit.trust import Anchor, describe_scope, detect_system_layout, read_os_release

from conftest import PASSPHRASE, REPO, assert_clean_error, certkit_env, free_port, require, run_certkit
from nginx_helper import nginx, require_nginx
from nobody_runner import NOBODY, Runner, runner_while_used
from test_secrets import run_on_terminal
from trust_helpers import (
    JAVA_CLIENT,
    bundle_fingerprints,
    chromium,
    curl,
    keytool_listing,
    nss_listing,
    nss_verifies,
    openssl_client,
    private_java_home,
    python_client,
    system_listing,
    system_store_consistent,
    system_store_guard,
    system_store_lock,
)


@dataclass
class PKI:
    work: Path
    root: Path  # CA directory of the root
    issuing: Path  # CA directory of the intermediate: what the commands get
    server: Path  # folder of the server certificate (fullchain.pem, privkey.pem)
    anchor: Anchor


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    work = tmp_path_factory.mktemp("trust-pki")
    env = certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--ca-dir", work / "root", "--name", "certkit trust test root", "--permit-dns",
                "localhost", "--permit-ip", "127.0.0.1/32", env=env, check=True)
    run_certkit("init-ca", "--ca-dir", work / "issuing", "--parent-ca-dir", work / "root", "--name",
                "certkit trust test issuing", env=env, check=True)
    run_certkit("issue-server", "--ca-dir", work / "issuing", "localhost", "127.0.0.1", env=env, cwd=work,
                check=True)
    anchor = Anchor.from_ca_dir(work / "issuing")
    assert anchor.fingerprint == Anchor.from_ca_dir(work / "root").fingerprint  # the root, not the intermediate
    return PKI(work, work / "root", work / "issuing", work / "localhost", anchor)


@pytest.fixture(scope="module")
def server(pki: PKI) -> int:
    """nginx on 127.0.0.1 with the server certificate and its chain, no client certificate asked."""
    require_nginx()
    tls = f"ssl_certificate {pki.server / 'fullchain.pem'};\nssl_certificate_key {pki.server / 'privkey.pem'};"
    with nginx(pki.work / f"nginx-{os.getpid()}", tls) as (port, _log):
        yield port


def trust(*args, home: Path, ca_dir: Path | None = None, runner: Runner | None = None, extra_env=None,
          check: bool = False, prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    """``certkit trust ARGS`` with HOME (hence the NSS databases) in the test's folder.

    ``runner`` runs it as another user (nobody_runner); ``prefix`` puts a command before Python's (a ulimit,
    obeying_modes), as other test files do.
    """
    env = certkit_env(HOME=str(home), **(extra_env or {}))
    argv = ["trust", *map(str, args)] + (["--ca-dir", str(ca_dir)] if ca_dir else [])
    if runner:
        proc = subprocess.run(runner.argv("-m", "certkit", *argv), env=runner.env(env), capture_output=True,
                              text=True, timeout=300, cwd="/")
    elif prefix:
        proc = subprocess.run([*prefix, sys.executable, "-m", "certkit", *argv], env=env, capture_output=True,
                              text=True, timeout=300)
    else:
        proc = run_certkit(*argv, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"certkit {shlex.join(argv)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def outcomes(proc: subprocess.CompletedProcess) -> dict[str, str]:
    """location -> outcome, from --json output."""
    return {s["location"]: s["outcome"] for s in json.loads(proc.stdout)["stores"]}


# --- the system store ---------------------------------------------------------------------
def _system_clients(port: int) -> dict[str, bool]:
    results = {"curl": curl(f"https://localhost:{port}/"), "python": python_client(port),
               "openssl": openssl_client(port)}
    ok = {name: proc.returncode == 0 for name, proc in results.items()}
    if ok["curl"]:
        assert results["curl"].stdout == "200", results["curl"]
    else:
        assert results["curl"].returncode == 60, results["curl"]  # curl: peer certificate cannot be authenticated
    if not ok["python"]:
        assert "VERIFY FAILED" in results["python"].stdout, results["python"]
    if not ok["openssl"]:
        assert "unable to get local issuer certificate" in results["openssl"].stderr, results["openssl"]
    return ok


def test_system_store_install_status_uninstall_with_curl_python_openssl(pki: PKI, server: int, tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("changing the system store needs root (CI runs as root); the refusal is tested below")
    for tool in ("curl", "openssl", "update-ca-certificates"):
        require(tool)
    layout = detect_system_layout()
    assert layout.family == "Debian/Ubuntu", "this test knows Debian's system store layout only"
    home = tmp_path / "home"
    home.mkdir()
    anchor_file = layout.anchors / f"{pki.anchor.file_stem}.crt"
    with system_store_guard():
        # First what the system's own refresh makes of its store (on a consistent machine: nothing; on
        # this one, a CA copied into /etc/ssl/certs by hand becomes a link, and Java's copy gains it), so
        # that the comparison below measures what certkit did and nothing else. The guard restores all.
        if not system_store_consistent():
            subprocess.run(["update-ca-certificates"], check=True, capture_output=True, timeout=300)
        assert _system_clients(server) == {"curl": False, "python": False, "openssl": False}
        before = system_listing()

        proc = trust("install", "--system", "--json", home=home, ca_dir=pki.issuing, check=True)
        assert outcomes(proc) == {str(layout.anchors): "added"}
        assert anchor_file.read_bytes() == pki.anchor.pem and oct(anchor_file.stat().st_mode & 0o777) == "0o644"
        assert _system_clients(server) == {"curl": True, "python": True, "openssl": True}
        assert pki.anchor.fingerprint in bundle_fingerprints()

        # Again: nothing runs, nothing changes (the very files, not only what they mean).
        from trust_helpers import snapshot

        files = snapshot()
        again = trust("install", "--system", "--json", home=home, ca_dir=pki.issuing, check=True)
        assert outcomes(again) == {str(layout.anchors): "unchanged"}
        assert snapshot() == files

        shown = trust("status", "--system", home=home, ca_dir=pki.root, check=True)
        assert "trusted      system" not in shown.stdout and "not trusted" not in shown.stdout
        assert f"trusted  system  Debian/Ubuntu system store: {layout.anchors}" in shown.stdout
        assert f"as {anchor_file.name}" in shown.stdout
        if shutil.which("keytool") and Path("/etc/ssl/certs/java/cacerts").exists():
            # Debian's hook (ca-certificates-java) copied it into Java's shared cacerts; status says so.
            java = trust("status", "--java", "--json", home=home, ca_dir=pki.root, check=True)
            shared = [s for s in json.loads(java.stdout)["stores"] if s["location"] == "/etc/ssl/certs/java/cacerts"]
            assert shared and shared[0]["elsewhere"] == [f"debian:{pki.anchor.file_stem}.pem"], java.stdout

        gone = trust("uninstall", "--system", "--json", home=home, ca_dir=pki.issuing, check=True)
        assert outcomes(gone) == {str(layout.anchors): "removed"}
        assert json.loads(gone.stdout)["stores"][0]["removed"] == [anchor_file.name]
        assert _system_clients(server) == {"curl": False, "python": False, "openssl": False}
        after = system_listing()
        assert after == before  # bundle, links, local anchors and Java's copy: as before install
        assert not anchor_file.exists()
        absent = trust("uninstall", "--system", "--json", home=home, ca_dir=pki.issuing, check=True)
        assert outcomes(absent) == {str(layout.anchors): "absent"}


def test_the_guard_restores_the_system_store_when_a_test_fails(tmp_path: Path):
    """What every system-store test relies on: changes made inside the guard (a new anchor, a changed
    link, a new folder, a changed mode) are undone when the block fails; modification times too."""
    from trust_helpers import snapshot

    if os.geteuid() != 0 or not Path("/usr/local/share/ca-certificates").is_dir():
        pytest.skip("the system store folders are root's (CI runs as root)")
    local = Path("/usr/local/share/ca-certificates")
    links = sorted(p for p in Path("/etc/ssl/certs").iterdir() if p.is_symlink() and p.name.endswith(".pem"))
    with system_store_lock():
        before = snapshot()
    with pytest.raises(RuntimeError, match="a test failing midway"):
        with system_store_guard():
            (local / "certkit-guard-test.crt").write_text("not a certificate\n")
            (local / "certkit-guard-test").mkdir()
            os.chmod(local, 0o700)
            if links:
                target = os.readlink(links[0])
                os.unlink(links[0])
                os.symlink(target + ".moved", links[0])
            raise RuntimeError("a test failing midway")
    assert snapshot() == before  # modification times included


@pytest.fixture(scope="session")
def another_user():
    """How to run certkit as a user other than root (nobody_runner), made once; None when it cannot be."""
    yield from runner_while_used()


def _readable_copy(ca_dir: Path, target: Path) -> Path:
    """``ca_dir`` copied where the user nobody can read its certificates (its keys stay root's, 0600)."""
    shutil.copytree(ca_dir, target)
    for place, _dirs, files in os.walk(target):
        os.chmod(place, 0o755)
        for name in files:
            os.chmod(os.path.join(place, name), 0o600 if "key" in name else 0o644)
    return target


def test_without_root_the_system_store_is_refused_with_the_exact_command(pki: PKI, tmp_path: Path, another_user):
    if another_user is None:
        pytest.skip("cannot run as a user other than root here (no setpriv, no user namespaces)")
    require("certutil")
    base = tmp_path
    ca_dir = pki.issuing
    if another_user.as_nobody:  # pytest's tmp_path is root's 0700 folder: the user nobody works in the runner's
        base = Path(tempfile.mkdtemp(dir=another_user.folder))
        base.chmod(0o755)
        ca_dir = _readable_copy(pki.issuing, base / "issuing")
    home = base / "home"
    home.mkdir()
    # A private JDK whose cacerts this user cannot write, and nothing else on PATH: the machine's own
    # Java must not be reachable from a test that installs into "every store it can write".
    real = Path(shutil.which("java") or "/nonexistent").resolve().parent.parent
    java_home = private_java_home(real, base, debian_link=False) if (real / "bin/keytool").exists() else None
    bin_dir = base / "bin"
    bin_dir.mkdir()
    (bin_dir / "certutil").symlink_to(shutil.which("certutil"))
    env = {"PATH": str(bin_dir)}
    if java_home:
        (java_home / "lib/security/cacerts").chmod(0o444)
        env["JAVA_HOME"] = str(java_home)
    (home / ".pki/nssdb").mkdir(parents=True)  # as Chromium makes it (no chromium on this PATH)
    subprocess.run(["certutil", "-N", "-d", f"sql:{home / '.pki/nssdb'}", "--empty-password"], check=True,
                   capture_output=True)
    if another_user.as_nobody:  # really another user: the CA key (root's, 0600, in a folder it can search) is not read
        key = CADirectory(ca_dir).key_path
        assert key.stat().st_mode & 0o777 == 0o600 and key.stat().st_uid == 0
        read = subprocess.run(another_user.argv("-c", f"open({str(key)!r}).read()"), capture_output=True, text=True,
                              env=another_user.env(certkit_env()), timeout=60, cwd="/")
        assert read.returncode == 1 and "PermissionError" in read.stderr, read
        for place, _dirs, files in os.walk(home):
            for name in [place, *(os.path.join(place, f) for f in files)]:
                os.chown(name, NOBODY, NOBODY)
    with system_store_lock():  # another worker's system-store test would change what is compared here
        _unprivileged_runs(pki, ca_dir, home, another_user, env, java_home)


def _unprivileged_runs(pki: PKI, ca_dir: Path, home: Path, runner, env: dict, java_home: Path | None) -> None:
    before = {p: p.read_bytes() for p in Path("/usr/local/share/ca-certificates").rglob("*") if p.is_file()}

    refused = trust("install", "--system", home=home, ca_dir=ca_dir, runner=runner, extra_env=env)
    assert refused.returncode == 1 and refused.stdout == ""
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), refused.stderr
    assert "needs root" in lines[0]
    argv = shlex.split(lines[0].split("run: ", 1)[1])  # the command ends the line: nothing to trim
    assert argv[0] == "sudo" and argv[-5:] == ["trust", "install", "--system", "--ca-dir", str(ca_dir)], argv

    # The default (every store this user can write): NSS is written, the others are skipped with reasons.
    proc = trust("install", "--json", home=home, ca_dir=ca_dir, runner=runner, extra_env=env, check=True)
    stores = {s["kind"]: s for s in json.loads(proc.stdout)["stores"]}
    assert stores["system"]["outcome"] == "skipped" and "sudo" in stores["system"]["reason"]
    assert stores["nss"]["outcome"] == "added"
    if java_home:
        assert stores["java"]["outcome"] == "skipped" and stores["java"]["code"] == "not-writable"
        assert f"JAVA_HOME={java_home}" in stores["java"]["reason"]
        explicit = trust("install", "--java", home=home, ca_dir=ca_dir, runner=runner, extra_env=env)
        assert explicit.returncode == 1 and "not writable" in explicit.stderr and "sudo" in explicit.stderr
    assert {p: p.read_bytes() for p in Path("/usr/local/share/ca-certificates").rglob("*") if p.is_file()} == before
    trust("uninstall", "--nss", home=home, ca_dir=ca_dir, runner=runner, extra_env=env, check=True)


# --- NSS: Chromium, Firefox, Thunderbird ---------------------------------------------------
def _profile(base: Path, name: str, folder: str, *, create_db: bool = True) -> Path:
    """A Firefox/Thunderbird profile listed in base/profiles.ini (with its NSS database, as the program makes)."""
    ini = base / "profiles.ini"
    base.mkdir(parents=True, exist_ok=True)
    count = ini.read_text().count("[Profile") if ini.exists() else 0
    with ini.open("a") as f:
        f.write(f"[Profile{count}]\nName={name}\nIsRelative=1\nPath={folder}\n\n")
    path = base / folder
    if create_db:
        path.mkdir(parents=True)
        subprocess.run(["certutil", "-N", "-d", f"sql:{path}", "--empty-password"], check=True, capture_output=True)
    return path


def test_nss_chromium_firefox_thunderbird(pki: PKI, server: int, tmp_path: Path):
    for tool in ("certutil", "vfychain", "chromium"):
        require(tool)
    home = tmp_path / "home"
    firefox = _profile(home / ".mozilla/firefox", "default-release", "abcd.default-release")
    _profile(home / ".mozilla/firefox", "gone", "gone.default", create_db=False)
    snap = _profile(home / "snap/firefox/common/.mozilla/firefox", "snap", "snap.default")
    thunderbird = _profile(home / ".var/app/org.mozilla.Thunderbird/.thunderbird", "mail", "mail.default")
    nssdb = home / ".pki" / "nssdb"
    profiles = [firefox, snap, thunderbird]
    chain = (pki.server / "cert.pem", pki.issuing / "ca.pem")
    url = f"https://localhost:{server}/"

    before = chromium(url, home, tmp_path / "chromium-1")
    assert "ERR_CERT_AUTHORITY_INVALID" in before.stderr and "verify=" not in before.stdout, before.stderr[-2000:]
    listings = {p: nss_listing(p) for p in profiles}
    assert all(nss_verifies(p, *chain).returncode != 0 for p in profiles)

    proc = trust("install", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True)
    found = outcomes(proc)
    assert found == {str(nssdb): "added", str(firefox): "added", str(snap): "added", str(thunderbird): "added",
                     str(home / ".mozilla/firefox/gone.default"): "skipped"}, proc.stdout
    skipped = [s for s in json.loads(proc.stdout)["stores"] if s["outcome"] == "skipped"]
    assert "folder is missing" in skipped[0]["reason"]
    for db in [nssdb, *profiles]:
        assert f"{pki.anchor.nickname}" in nss_listing(db) and "C,," in nss_listing(db)
        assert nss_verifies(db, *chain).returncode == 0, nss_verifies(db, *chain).stdout
    page = chromium(url, home, tmp_path / "chromium-2")
    assert "verify=NONE" in page.stdout, page.stderr[-3000:]  # nginx's answer, in the DOM

    installed = {db: nss_listing(db) for db in [nssdb, *profiles]}
    again = trust("install", "--nss", "--json", home=home, ca_dir=pki.root, check=True)
    assert set(outcomes(again).values()) == {"unchanged", "skipped"}
    assert {db: nss_listing(db) for db in [nssdb, *profiles]} == installed

    status = trust("status", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True)
    assert {s["location"]: s["current"] for s in json.loads(status.stdout)["stores"] if s["current"]} == {
        str(db): pki.anchor.nickname for db in [nssdb, *profiles]}

    gone = trust("uninstall", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True)
    assert set(outcomes(gone).values()) == {"removed", "skipped"}
    assert {p: nss_listing(p) for p in profiles} == listings  # as before install
    assert pki.anchor.name not in nss_listing(nssdb) and "C,," not in nss_listing(nssdb)
    assert all(nss_verifies(p, *chain).returncode != 0 for p in [nssdb, *profiles])
    after = chromium(url, home, tmp_path / "chromium-3")
    assert "ERR_CERT_AUTHORITY_INVALID" in after.stderr and "verify=" not in after.stdout, after.stderr[-2000:]


def test_nss_database_with_a_password_is_skipped_not_asked(pki: PKI, tmp_path: Path):
    require("certutil")
    home = tmp_path / "home"
    profile = _profile(home / ".mozilla/firefox", "locked", "locked.default", create_db=False)
    profile.mkdir(parents=True)
    password = tmp_path / "pw"
    password.write_text("primary password\n")
    subprocess.run(["certutil", "-N", "-d", f"sql:{profile}", "-f", str(password)], check=True, capture_output=True)
    (home / ".pki/nssdb").mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{home / '.pki/nssdb'}", "--empty-password"], check=True,
                   capture_output=True)
    listing = nss_listing(profile)
    proc = trust("install", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True)
    stores = {s["location"]: s for s in json.loads(proc.stdout)["stores"]}
    assert stores[str(profile)]["outcome"] == "skipped" and stores[str(profile)]["code"] == "password"
    assert "certutil -A" in stores[str(profile)]["reason"]
    assert stores[str(home / ".pki/nssdb")]["outcome"] == "added"
    assert nss_listing(profile) == listing
    # Added by hand as the advice says: uninstall takes it out, as deleting needs no password.
    subprocess.run(["certutil", "-A", "-d", f"sql:{profile}", "-n", pki.anchor.nickname, "-t", "C,,", "-f",
                    str(password)], input=pki.anchor.pem, check=True, capture_output=True)
    assert pki.anchor.nickname in nss_listing(profile)
    gone = trust("uninstall", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True)
    assert outcomes(gone)[str(profile)] == "removed"
    assert nss_listing(profile) == listing


@pytest.mark.parametrize("flags", ["C,,", ",,", "c,,"], ids=["trusted", "untrusted", "valid CA only"])
def test_nss_entry_added_by_hand_is_left_alone(pki: PKI, tmp_path: Path, flags: str):
    """The CA imported by hand under another nickname: NSS keeps one copy of a certificate, so certkit
    reports it, adds nothing, and never removes what it did not add. Trusted, install has nothing to
    do; not trusted, install refuses (adding would only change the trust of that entry) with the
    command that trusts it, and the database stays byte for byte what it was."""
    require("certutil")
    db = tmp_path / "home/.pki/nssdb"
    db.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True, capture_output=True)
    subprocess.run(["certutil", "-A", "-d", f"sql:{db}", "-n", "my dev root", "-t", flags], input=pki.anchor.pem,
                   check=True, capture_output=True)
    listing = nss_listing(db)
    proc = trust("install", "--nss", "--json", home=tmp_path / "home", ca_dir=pki.issuing)
    (store,) = json.loads(proc.stdout)["stores"]
    if flags == "C,,":
        assert proc.returncode == 0
        assert store["outcome"] == "unchanged" and store["elsewhere"] == ["my dev root"] and store["current"] is None
    else:
        assert proc.returncode == 1 and store["outcome"] == "failed"
        assert f"already in {db} as 'my dev root' (trust {flags}" in store["reason"]
        assert "certutil -M" in store["reason"]
    assert nss_listing(db) == listing
    gone = trust("uninstall", "--nss", "--json", home=tmp_path / "home", ca_dir=pki.issuing, check=True)
    assert outcomes(gone) == {str(db): "absent"} and nss_listing(db) == listing


def test_under_sudo_browsers_only_by_name_and_a_new_database_stays_the_users(pki: PKI, tmp_path: Path):
    """``sudo certkit trust ...`` without --nss leaves NSS alone (root's databases, or root-owned files in
    the user's home); with --nss, a database certkit creates belongs to the home's owner."""
    if os.geteuid() != 0:
        pytest.skip("needs root, as sudo gives")
    require("certutil")
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, 65534, 65534)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("certutil", "chromium"):
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    env = {"SUDO_USER": "alice", "PATH": str(bin_dir)}  # no java: the machine's JDK stays out of this
    status = trust("status", "--json", home=home, ca_dir=pki.issuing, extra_env=env, check=True)
    nss = [s for s in json.loads(status.stdout)["stores"] if s["kind"] == "nss"]
    assert nss and all(s["outcome"] == "skipped" and s["code"] == "sudo" for s in nss), nss
    assert "run 'certkit trust status --nss' as alice" in nss[0]["reason"]
    if not shutil.which("chromium"):
        return
    proc = trust("install", "--nss", "--json", home=home, ca_dir=pki.issuing, extra_env=env, check=True)
    assert outcomes(proc) == {str(home / ".pki/nssdb"): "added"}
    made = [home / ".pki", home / ".pki/nssdb", *(home / ".pki/nssdb").iterdir()]
    assert {(p.stat().st_uid, p.stat().st_gid) for p in made} == {(65534, 65534)}


@pytest.mark.parametrize("in_the_way", [".pki/nssdb", ".pki"])
def test_a_file_where_the_nss_database_goes_is_named(pki: PKI, tmp_path: Path, in_the_way: str):
    """~/.pki/nssdb (or ~/.pki) a regular file: install said "File exists (...)" or "Not a directory (...)"."""
    require("certutil")
    require("chromium")  # Chromium is what has certkit create ~/.pki/nssdb
    home = tmp_path / "home"
    (home / in_the_way).parent.mkdir(parents=True, exist_ok=True)
    (home / in_the_way).write_text("not a database\n")
    where = "there" if in_the_way == ".pki/nssdb" else f"in {home / '.pki/nssdb'}"
    for args in (("install", "--nss"), ("install", "--nss", "--json")):
        proc = trust(*args, home=home, ca_dir=pki.issuing)
        assert proc.returncode == 1, proc
        text = json.loads(proc.stdout)["stores"][0]["reason"] if "--json" in args else proc.stderr
        assert f"{home / in_the_way} is a file, not a folder: the NSS database cannot be created {where}; move the " \
               "file away and run again" in text, text
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert (home / in_the_way).read_text() == "not a database\n"
    (home / in_the_way).unlink()  # as the message says: then it works
    added = trust("install", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True)
    assert outcomes(added) == {str(home / ".pki/nssdb"): "added"}
    assert pki.anchor.nickname in nss_listing(home / ".pki/nssdb")


def test_a_new_nss_database_and_the_folders_above_it_are_not_open_to_others_under_umask_000(pki: PKI, tmp_path: Path):
    """~/.pki was made with the umask's mode (0777 under umask 000): anyone could have put a database of
    their own, trusting their CA, where Chromium reads it. Now 0755 as every folder certkit makes; nssdb 0700."""
    require("certutil")
    home = tmp_path / "home"
    home.mkdir()
    bin_dir = tmp_path / "bin"  # a Chromium on PATH is what has certkit create ~/.pki/nssdb
    bin_dir.mkdir()
    (bin_dir / "chromium").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "chromium").chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    proc = trust("install", "--nss", "--json", home=home, ca_dir=pki.issuing, extra_env=env, check=True,
                 runner=Runner(["sh", "-c", 'umask 000 && exec "$@"', "sh"], sys.executable))
    assert outcomes(proc) == {str(home / ".pki/nssdb"): "added"}
    assert (home / ".pki").stat().st_mode & 0o7777 == 0o755
    assert (home / ".pki/nssdb").stat().st_mode & 0o7777 == 0o700
    assert pki.anchor.nickname in nss_listing(home / ".pki/nssdb")


def test_missing_certutil_names_the_package(pki: PKI, tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = {"PATH": str(bin_dir)}
    proc = trust("install", "--nss", home=tmp_path, ca_dir=pki.issuing, extra_env=env)
    assert proc.returncode == 1 and "certutil is not installed" in proc.stderr and "libnss3-tools" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    status = trust("status", "--nss", "--java", "--json", home=tmp_path, ca_dir=pki.issuing, extra_env=env,
                   check=True)
    reasons = {s["kind"]: s["reason"] for s in json.loads(status.stdout)["stores"]}
    assert "libnss3-tools" in reasons["nss"] and "no Java found" in reasons["java"]


# --- Java ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def java_client(tmp_path_factory) -> Path:
    """TrustClient.class, compiled once."""
    for tool in ("javac", "java", "keytool"):
        require(tool)
    folder = tmp_path_factory.mktemp("java-client")
    (folder / "TrustClient.java").write_text(JAVA_CLIENT)
    subprocess.run(["javac", "-d", str(folder), str(folder / "TrustClient.java")], check=True, capture_output=True,
                   timeout=120)
    return folder


def _java_get(java_home: Path, classes: Path, url: str) -> subprocess.CompletedProcess:
    from trust_helpers import client_env

    return subprocess.run([str(java_home / "bin/java"), "-cp", str(classes), "TrustClient", url],
                          env=client_env(), capture_output=True, text=True, timeout=60)


def untrusted(java_output: str) -> bool:
    return "PKIX path building failed" in java_output or "does not chain with any of the trust anchors" in java_output


@pytest.fixture
def machine_store_quiet():
    """No other test changes the machine's stores meanwhile: this test copies and reads the machine's
    Java cacerts, which the system-store test's update-ca-certificates hook rewrites."""
    from trust_helpers import system_store_lock

    with system_store_lock():
        yield


def test_java_cacerts_with_keytool_and_a_java_client(pki: PKI, server: int, java_client: Path, tmp_path: Path,
                                                      machine_store_quiet):
    """A real JDK whose cacerts is the test's own, never the machine's: launchers and libjvm.so are
    copies (Java takes its home, hence lib/security/cacerts, from their real paths), everything else
    links to the machine's JDK, and cacerts is, as on Debian, a link to a private copy standing in for
    /etc/ssl/certs/java/cacerts (trust_helpers.private_java_home). JAVA_HOME and PATH both name it, so
    certkit finds that JDK only. The client is HttpsURLConnection with no trust option at all."""
    real_home = Path(os.environ["JAVA_HOME"]) if os.environ.get("JAVA_HOME") else \
        Path(shutil.which("java")).resolve().parent.parent
    java_home = private_java_home(real_home, tmp_path)
    link = java_home / "lib/security/cacerts"
    cacerts = link.resolve()
    assert link.is_symlink() and cacerts.parent.name == "etc-ssl-certs-java"
    machine_cacerts = (real_home / "lib/security/cacerts").resolve()
    url = f"https://localhost:{server}/"
    env = {"JAVA_HOME": str(java_home), "PATH": f"{java_home / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    home = tmp_path / "home"
    home.mkdir()

    before = _java_get(java_home, java_client, url)
    # Not trusted: "PKIX path building failed", or, while another test has a certkit root of the same
    # name in the machine's store that the private JDK copied, "does not chain with any of the trust anchors".
    assert before.returncode == 2 and untrusted(before.stdout), before.stdout + before.stderr
    assert f"java.home={java_home}" in before.stdout  # the private JDK, hence its own cacerts
    listing_before = keytool_listing(cacerts)

    proc = trust("install", "--java", "--json", home=home, ca_dir=pki.issuing, extra_env=env, check=True)
    (store,) = json.loads(proc.stdout)["stores"]
    assert store["outcome"] == "added" and store["location"] == str(cacerts)
    assert "is a link to" in store["notes"][0]
    assert link.is_symlink() and link.resolve() == cacerts  # the link stays; the file it names changed
    listing = keytool_listing(cacerts)
    assert listing.keys() - listing_before.keys() == {pki.anchor.file_stem}
    ok = _java_get(java_home, java_client, url)
    assert ok.returncode == 0 and "HTTP 200" in ok.stdout, ok.stdout + ok.stderr

    installed = cacerts.read_bytes()
    again = trust("install", "--java", "--json", home=home, ca_dir=pki.issuing, extra_env=env, check=True)
    assert outcomes(again) == {str(cacerts): "unchanged"} and cacerts.read_bytes() == installed

    gone = trust("uninstall", "--java", "--json", home=home, ca_dir=pki.issuing, extra_env=env, check=True)
    assert outcomes(gone) == {str(cacerts): "removed"}
    # The same entries as before install; keytool rewrites the whole file, and a JKS store's entry
    # order follows its hash table, so the bytes may be ordered differently.
    assert keytool_listing(cacerts) == listing_before
    failed = _java_get(java_home, java_client, url)
    assert failed.returncode == 2 and untrusted(failed.stdout)
    # The machine's own store never got certkit's alias (its bytes may change meanwhile: on Debian the
    # system-store test, in another xdist worker, has Debian's hook add debian:... there, and restores it).
    assert not [a for a in keytool_listing(machine_cacerts) if a.startswith("certkit-")]


def test_java_home_without_cacerts_is_skipped(pki: PKI, tmp_path: Path):
    env = {"JAVA_HOME": str(tmp_path / "no-jdk"), "PATH": "/nonexistent"}
    (tmp_path / "no-jdk").mkdir()  # a folder without cacerts (a JAVA_HOME that does not exist: test_audit24_trust)
    status = trust("status", "--java", "--json", home=tmp_path, ca_dir=pki.issuing, extra_env=env, check=True)
    (store,) = json.loads(status.stdout)["stores"]
    assert store["outcome"] == "skipped" and "has no lib/security/cacerts" in store["reason"]
    proc = trust("install", "--java", home=tmp_path, ca_dir=pki.issuing, extra_env=env)
    assert proc.returncode == 1 and "has no lib/security/cacerts" in proc.stderr and "Traceback" not in proc.stderr


# --- the CA directory ------------------------------------------------------------------------
def test_a_ca_dir_given_must_hold_a_ca(pki: PKI, tmp_path: Path):
    """status --ca-dir /nonexistent (or a folder without ca.pem, or $CERTKIT_CA_DIR naming one) said "No CA
    directory here", listed every certkit CA and exited 0; only the default CA directory may be missing."""
    require("certutil")
    home = tmp_path / "home"
    home.mkdir()
    xdg = {"XDG_DATA_HOME": str(home / "data")}  # the default CA directory: missing
    trust("install", "--nss", home=home, ca_dir=pki.issuing, check=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    for ca_dir, reason in ((tmp_path / "missing", "the folder does not exist"), (empty, "ca.pem is missing")):
        error = f"No CA in {ca_dir}: {reason}"
        for args in (("status", "--nss"), ("status", "--nss", "--json"), ("install", "--nss"), ("uninstall", "--nss")):
            assert_clean_error(trust(*args, home=home, ca_dir=ca_dir, extra_env=xdg), error)
        assert_clean_error(trust("status", "--nss", home=home, extra_env=dict(xdg, CERTKIT_CA_DIR=str(ca_dir))),
                           error)
    default = trust("status", "--nss", home=home, extra_env=xdg, check=True)
    assert "No CA directory here" in default.stdout and pki.anchor.name in default.stdout, default.stdout


# --- consent, older CAs, warnings ------------------------------------------------------------
def _ca(tmp_path: Path, name: str, *args: str) -> Path:
    run_certkit("init-ca", "--ca-dir", tmp_path / name, "--name", name, *args,
                env=certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE), check=True)
    return tmp_path / name


def test_unconstrained_ca_needs_consent(tmp_path: Path):
    require("certutil")
    ca = _ca(tmp_path, "Wide Open CA")
    home = tmp_path / "home"
    home.mkdir()
    nssdb = home / ".pki/nssdb"

    refused = trust("install", "--nss", home=home, ca_dir=ca)
    assert refused.returncode == 1 and refused.stdout == ""
    assert "no name constraints" in refused.stderr and "any DNS name and any IP address" in refused.stderr
    assert "--unconstrained" in refused.stderr and "certkit init-ca --permit-dns" in refused.stderr
    assert not nssdb.exists()  # nothing created, nothing changed
    as_json = trust("install", "--nss", "--json", home=home, ca_dir=ca)
    assert as_json.returncode == 1 and "--unconstrained" in json.loads(as_json.stdout)["error"]

    env = certkit_env(HOME=str(home))
    code, seen = run_on_terminal(["trust", "install", "--nss", "--ca-dir", str(ca)], [(b"[y/N]", b"n")], env, tmp_path)
    assert code == 1 and b"any DNS name and any IP address" in seen and b"not confirmed" in seen, seen
    assert nss_listing(nssdb) == ""
    code, seen = run_on_terminal(["trust", "install", "--nss", "--ca-dir", str(ca)], [(b"[y/N]", b"y")], env, tmp_path)
    assert code == 0 and b"added" in seen, seen
    anchor = Anchor.from_ca_dir(ca)
    assert anchor.nickname in nss_listing(nssdb)

    # Nothing to change: no question, even without a terminal or --unconstrained.
    again = trust("install", "--nss", "--json", home=home, ca_dir=ca, check=True)
    assert outcomes(again) == {str(nssdb): "unchanged"}
    trust("uninstall", "--nss", home=home, ca_dir=ca, check=True)
    forced = trust("install", "--nss", "--unconstrained", "--json", home=home, ca_dir=ca, check=True)
    assert outcomes(forced) == {str(nssdb): "added"}


@pytest.mark.parametrize("domain", ["com", "co.uk", "github.io"])
def test_a_ca_limited_to_a_public_suffix_needs_consent(tmp_path: Path, domain: str):
    """--permit-dns com limits the CA to everyone's .com websites: init-ca warns, trust install asks
    (refuses without a terminal) as for an unconstrained CA, and NSS would indeed accept a
    certificate for someone else's site from it. Special-use names (home.arpa, internal) and
    one's own domain need no consent."""
    require("certutil")
    home = tmp_path / "home"
    home.mkdir()
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "wide", "--name", "Wide", "--permit-dns", domain,
                       env=certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE), check=True)
    assert f"Warning: --permit-dns {domain} is a public suffix" in proc.stderr
    refused = trust("install", "--nss", home=home, ca_dir=tmp_path / "wide")
    assert_clean_error(refused, f"is limited to DNS names under {domain}, a public suffix")
    assert "--unconstrained" in refused.stderr and nss_listing(home / ".pki/nssdb") == ""
    for own in ("home.arpa", "example.internal", "lab.example.com"):
        ca = _ca(tmp_path, own.replace(".", "-"), "--permit-dns", own)
        trust("install", "--nss", home=home, ca_dir=ca, check=True)


def test_certkits_nss_entry_whose_trust_was_taken_away(pki: PKI, tmp_path: Path):
    """Firefox's Edit Trust (certutil -M -t ,,) leaves certkit's entry without trust: status says so
    (incomplete, not trusted) and install sets the trust again."""
    require("certutil")
    home = tmp_path / "home"
    home.mkdir()  # a $HOME that is not there is refused (round nine)
    db = home / ".pki/nssdb"
    trust("install", "--nss", home=home, ca_dir=pki.issuing, check=True)
    subprocess.run(["certutil", "-M", "-d", f"sql:{db}", "-n", pki.anchor.nickname, "-t", ",,"], check=True,
                   capture_output=True)
    status = trust("status", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True)
    (store,) = json.loads(status.stdout)["stores"]
    assert store["outcome"] == "incomplete" and "trust was taken away (flags ,,)" in store["pending"]
    again = trust("install", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True)
    assert outcomes(again) == {str(db): "added"}
    assert f"{pki.anchor.nickname}" in nss_listing(db) and outcomes(
        trust("status", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True)) == {str(db): "trusted"}
    line = next(row for row in nss_listing(db).splitlines() if row.startswith(pki.anchor.nickname))
    assert line.split()[-1] == "C,,"


def test_an_intermediates_unencrypted_key_is_named_as_the_intermediates(tmp_path: Path):
    """Installed from an intermediate's directory, the root is trusted and the key at hand is the
    intermediate's: the warning names that CA and its file, never as the root's key."""
    require("certutil")
    root = _ca(tmp_path, "Root CA", "--permit-dns", "lab.internal")  # encrypted
    run_certkit("init-ca", "--ca-dir", tmp_path / "int", "--parent-ca-dir", root, "--name", "Int CA",
                "--no-passphrase", env=certkit_env(CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE), check=True)
    home = tmp_path / "home"
    home.mkdir()
    trust("install", "--nss", home=home, ca_dir=tmp_path / "int", check=True)
    status = trust("status", "--nss", "--json", home=home, ca_dir=tmp_path / "int", check=True)
    report = json.loads(status.stdout)
    assert report["ca"]["common_name"] == "Root CA" and report["ca"]["key_of"] == "Int CA"
    (warning,) = [w for w in report["warnings"] if "not encrypted" in w]
    assert warning.startswith(f"the key of the intermediate CA \"Int CA\" ({(tmp_path / 'int').resolve()}/ca-key.pem), "
                              "below the trusted root \"Root CA\", is not encrypted")
    quiet = trust("status", "--nss", "--json", home=home, ca_dir=root, check=True)
    assert not [w for w in json.loads(quiet.stdout)["warnings"] if "not encrypted" in w]


def test_older_certkit_ca_and_warnings(tmp_path: Path):
    require("certutil")
    old = _ca(tmp_path, "Team CA", "--no-passphrase")  # unencrypted key, no constraints
    home = tmp_path / "home"
    home.mkdir()
    trust("install", "--nss", "--unconstrained", home=home, ca_dir=old, check=True)
    status = trust("status", "--nss", home=home, ca_dir=old, check=True)
    assert "Warning: the key of the trusted CA \"Team CA\"" in status.stderr and "not encrypted" in status.stderr

    # The CA is rotated: same name, a new key; the new one is constrained and expires soon.
    (tmp_path / "rotated").mkdir()
    new = _ca(tmp_path / "rotated", "Team CA", "--days", "10", "--permit-dns", "team.internal")
    new_anchor, old_anchor = Anchor.from_ca_dir(new), Anchor.from_ca_dir(old)
    proc = trust("install", "--nss", "--json", home=home, ca_dir=new, check=True)
    report = json.loads(proc.stdout)
    assert report["stores"][0]["outcome"] == "added"
    assert [o["name"] for o in report["stores"][0]["older"]] == [old_anchor.nickname]
    assert any("expires on" in w and "in 9 days" in w for w in report["warnings"]), report["warnings"]
    status = trust("status", "--nss", home=home, ca_dir=new, check=True)
    assert "another certkit CA also trusted" in status.stdout and old_anchor.name in status.stdout
    assert "Warning: another certkit CA is also trusted" in status.stderr and "--every-certkit-ca" in status.stderr

    # uninstall removes this CA only; --every-certkit-ca takes the rest, without a CA directory.
    trust("uninstall", "--nss", home=home, ca_dir=new, check=True)
    listing = nss_listing(home / ".pki/nssdb")
    assert old_anchor.nickname in listing and new_anchor.name not in listing
    everything = trust("uninstall", "--nss", "--every-certkit-ca", "--json", home=home,
                       ca_dir=tmp_path / "deleted-ca", check=True)
    assert json.loads(everything.stdout)["stores"][0]["removed"] == [old_anchor.nickname], everything.stdout
    assert json.loads(everything.stdout)["notes"] == [f"(no CA in {tmp_path / 'deleted-ca'}: removing every "
                                                      "certificate certkit named)"]
    assert "certkit-" not in nss_listing(home / ".pki/nssdb")


def test_another_certkit_ca_in_use_is_named_with_the_command_that_removes_it_alone(tmp_path: Path):
    """Two CAs in use (one per cluster): status called the other "older" and advised --every-certkit-ca,
    which removed both, the CA asked about too. Now: "another", and the certutil command for that one."""
    require("certutil")
    home = tmp_path / "home"
    db = home / ".pki/nssdb"
    db.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True, capture_output=True)
    dirs = []
    for cluster in ("one", "two"):
        (tmp_path / cluster).mkdir()
        dirs.append(_ca(tmp_path / cluster, "Cluster CA", "--permit-dns", f"{cluster}.home.arpa"))
        trust("install", "--nss", home=home, ca_dir=dirs[-1], check=True)
    first, second = map(Anchor.from_ca_dir, dirs)
    removal = f"certutil -D -d sql:{db} -n '{first.nickname}'"
    status = trust("status", "--nss", home=home, ca_dir=dirs[1], check=True)
    assert "older" not in status.stdout + status.stderr
    assert f"another certkit CA also trusted: {first.nickname} (CN=Cluster CA)" in status.stdout
    (warning,) = [w for w in status.stderr.splitlines() if "certkit CA is" in w]
    assert warning == (f"Warning: another certkit CA is also trusted: CN=Cluster CA ({first.nickname}) in nss: {db}. "
                       f"If it is no longer used, remove it alone with: {removal} (certkit trust uninstall "
                       f"--every-certkit-ca would remove it, but also this CA, \"Cluster CA\" ({second.name}))")
    report = json.loads(trust("status", "--nss", "--json", home=home, ca_dir=dirs[1], check=True).stdout)
    assert [o["remove_with"] for o in report["stores"][0]["older"]] == [removal]
    assert second.nickname in trust("status", "--nss", home=home, ca_dir=dirs[0], check=True).stderr  # and back
    # Without a CA directory, each certkit CA is named with its own removal.
    bare = trust("status", "--nss", home=home, check=True)  # the default CA directory, in HOME: none
    assert f"If it is no longer used, remove it alone with: {removal}; or every certkit CA at once" in bare.stderr

    subprocess.run(shlex.split(removal), check=True, capture_output=True)  # the advice, followed
    listing = nss_listing(db)
    assert first.nickname not in listing and second.nickname in listing
    after = trust("status", "--nss", "--json", home=home, ca_dir=dirs[1], check=True)
    assert outcomes(after) == {str(db): "trusted"} and json.loads(after.stdout)["stores"][0]["older"] == []
    assert not [w for w in json.loads(after.stdout)["warnings"] if "certkit CA" in w]


def test_expired_ca_is_not_installed_and_status_warns_when_one_is_trusted(tmp_path: Path):
    import datetime as dt

    from certkit import CA
    from certkit.store import CADirectory

    require("certutil")
    ca = CA.create("Old Lab CA", permitted_dns=["lab.internal"], days=1,
                   not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    CADirectory(tmp_path / "old").save_new(ca, PASSPHRASE.encode())
    home = tmp_path / "home"
    db = home / ".pki/nssdb"
    db.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True, capture_output=True)
    empty = nss_listing(db)
    refused = trust("install", "--nss", home=home, ca_dir=tmp_path / "old")
    assert refused.returncode == 1 and "expired on" in refused.stderr and nss_listing(db) == empty
    # Trusted while it was valid (as install would have named it): status says it has expired since.
    anchor = Anchor.from_ca_dir(tmp_path / "old")
    subprocess.run(["certutil", "-A", "-d", f"sql:{db}", "-n", anchor.nickname, "-t", "C,,"], input=anchor.pem,
                   check=True, capture_output=True)
    status = trust("status", "--nss", "--json", home=home, ca_dir=tmp_path / "old", check=True)
    report = json.loads(status.stdout)
    assert report["stores"][0]["outcome"] == "trusted"
    assert any("Old Lab CA" in w and "expired on" in w for w in report["warnings"]), report["warnings"]


# --- macOS and Windows: commands printed, nothing run ----------------------------------------
def test_macos_and_windows_get_the_commands_not_changes(pki: PKI, tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    root_pem = str(pki.root / "ca.pem")
    mac = trust("install", "--platform", "darwin", home=home, ca_dir=pki.root, check=True)
    assert "it ran nothing" in mac.stdout
    assert (f"sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {root_pem}"
            in mac.stdout)
    win = trust("install", "--platform", "win32", "--json", home=home, ca_dir=pki.root, check=True)
    data = json.loads(win.stdout)
    assert data["ran"] is False and data["commands"][0] == f'certutil -user -addstore Root "{root_pem}"'
    gone = trust("uninstall", "--platform", "win32", home=home, ca_dir=pki.root, check=True)
    assert f"certutil -user -delstore Root {pki.anchor.sha1}" in gone.stdout
    # An intermediate's directory has no file holding the root alone: the root is printed to be saved.
    mac_int = trust("install", "--platform", "darwin", "--json", home=home, ca_dir=pki.issuing, check=True)
    data = json.loads(mac_int.stdout)
    assert data["root_pem"] == pki.anchor.pem.decode() and data["root_pem_file"] == f"{pki.anchor.name}.pem"
    assert data["commands"][0].endswith(f"System.keychain {pki.anchor.name}.pem")
    # The consent applies there too.
    wide = _ca(tmp_path, "Wide CA")
    refused = trust("install", "--platform", "darwin", home=home, ca_dir=wide)
    assert refused.returncode == 1 and "--unconstrained" in refused.stderr
    assert list(home.iterdir()) == []  # nothing was written anywhere


# --- detection and naming ----------------------------------------------------------------------
@pytest.mark.parametrize("os_release, family", [
    ('ID=debian\nVERSION_ID="12"\n', "Debian/Ubuntu"),
    ('ID=ubuntu\nID_LIKE=debian\n', "Debian/Ubuntu"),
    ('ID=linuxmint\nID_LIKE="ubuntu debian"\n', "Debian/Ubuntu"),
    ('ID=fedora\n', "Fedora/RHEL"),
    ('ID="rocky"\nID_LIKE="rhel centos fedora"\n', "Fedora/RHEL"),
    ('ID=arch\n', "Arch Linux"),
    ('ID=manjaro\nID_LIKE=arch\n', "Arch Linux"),
    ('ID="opensuse-tumbleweed"\nID_LIKE="opensuse suse"\n', "openSUSE/SLES"),
    ('ID=sles\n', "openSUSE/SLES"),
])
def test_distribution_detection(tmp_path: Path, os_release: str, family: str):
    path = tmp_path / "os-release"
    path.write_text(os_release)
    from certkit.trust import LAYOUTS, UnsupportedSystem

    layout = next(v for v in LAYOUTS.values() if v.family == family)
    if shutil.which(layout.refresh_added[0], path=os.environ["PATH"] + ":/usr/sbin:/sbin"):
        assert detect_system_layout(path).family == family
    else:  # the family is known, but its tool is not on this machine: refused, naming it
        with pytest.raises(UnsupportedSystem, match=f"{family}-like, but {layout.refresh_added[0]} is not"):
            detect_system_layout(path)


def test_unknown_distribution_is_refused(tmp_path: Path):
    from certkit.trust import UnsupportedSystem, find_stores

    path = tmp_path / "os-release"
    path.write_text('PRETTY_NAME="Plan 9 from Bell Labs"\nID=plan9\n')
    assert read_os_release(path)["PRETTY_NAME"] == "Plan 9 from Bell Labs"
    with pytest.raises(UnsupportedSystem, match="does not know how to change the system trust store of Plan 9"):
        detect_system_layout(path)
    stores, skipped = find_stores(["system"], os_release=path)
    assert stores == [] and skipped[0].outcome == "skipped" and "Plan 9" in skipped[0].reason


def test_names_and_scope(pki: PKI, tmp_path: Path):
    anchor = pki.anchor
    assert anchor.name == f"certkit-{anchor.fingerprint[:16]}"
    assert anchor.file_stem == f"{anchor.name}-certkit-trust-test-root"
    assert anchor.nickname == f"{anchor.name} certkit trust test root"
    assert anchor.intermediate == "certkit trust test issuing" and anchor.limits_dns
    assert anchor.scope() == "DNS names under localhost; IP addresses in 127.0.0.1/32"
    ip_only = Anchor.from_ca_dir(_ca(tmp_path, "IP CA", "--permit-ip", "10.0.0.0/8"))
    # Limited to an IP range: certkit's constraints then permit no real DNS name (only the reserved
    # 'invalid'), so that CA cannot vouch for a website.
    assert ip_only.scope() == "no DNS names; IP addresses in 10.0.0.0/8" and ip_only.limits_dns
    assert describe_scope(None) == "any DNS name and any IP address (no name constraints)"


def test_name_constraints_bind_openssl_and_nss_even_for_the_roots_own_key(tmp_path: Path):
    """What docs/trust.md promises of a constrained root: a certificate for another name, signed with
    the root's key itself (forged here, since certkit refuses to issue it), fails OpenSSL's and NSS's
    verification; one inside the constraints passes."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from certkit import CA

    for tool in ("openssl", "certutil", "vfychain"):
        require(tool)
    ca = CA.create("Constrained", permitted_dns=["home.arpa"])
    (tmp_path / "root.pem").write_bytes(ca.cert_pem)
    inside = ca.issue_server(["nas.home.arpa"])
    (tmp_path / "inside.pem").write_bytes(inside.cert_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    forged = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bank.example")]))
              .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([x509.DNSName("bank.example")]), critical=False)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
              .sign(ca.key, hashes.SHA256()))
    (tmp_path / "forged.pem").write_bytes(forged.public_bytes(serialization.Encoding.PEM))

    def openssl_verify(leaf: str) -> subprocess.CompletedProcess:
        return subprocess.run(["openssl", "verify", "-purpose", "sslserver", "-CAfile", str(tmp_path / "root.pem"),
                               str(tmp_path / leaf)], capture_output=True, text=True, timeout=30)

    assert openssl_verify("inside.pem").returncode == 0
    refused = openssl_verify("forged.pem")
    assert refused.returncode != 0 and "permitted subtree violation" in refused.stdout + refused.stderr
    db = tmp_path / "nssdb"
    db.mkdir()
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True, capture_output=True)
    subprocess.run(["certutil", "-A", "-d", f"sql:{db}", "-n", "root", "-t", "C,,", "-i", str(tmp_path / "root.pem")],
                   check=True, capture_output=True)
    assert nss_verifies(db, tmp_path / "inside.pem").returncode == 0
    assert nss_verifies(db, tmp_path / "forged.pem").returncode != 0  # libpkix: refused (its reason is vaguer)
    # NSS's classic verifier names the reason: SEC_ERROR_CERT_NOT_IN_NAME_SPACE (-8080).
    nss = subprocess.run(["vfychain", "-d", f"sql:{db}", "-u", "1", "-a", str(tmp_path / "forged.pem")],
                         capture_output=True, text=True, timeout=30)
    assert nss.returncode != 0 and "-8080" in nss.stderr and "not permitted to issue" in nss.stderr, nss.stderr


def test_docs_page_runs(tmp_path: Path):
    """docs/trust.md, every command run, as root (the system store; CI runs as root), with HOME and a
    private JDK (JAVA_HOME and PATH) in the test's folder, and the system store guarded."""
    from docs_runner import run_page
    from trust_helpers import CA_VARIABLES

    if os.geteuid() != 0:
        pytest.skip("docs/trust.md installs into the system store: root only (CI runs as root)")
    for tool in ("certutil", "curl", "openssl", "update-ca-certificates", "java", "chromium"):
        require(tool)
    pytest.importorskip("truststore", reason="pip install -e '.[test]' installs it")
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    real = Path(shutil.which("java")).resolve().parent.parent
    java_home = private_java_home(real, tmp_path, debian_link=False)
    env = {k: v for k, v in certkit_env(HOME=str(home), CERTKIT_CA_PASSPHRASE=PASSPHRASE, JAVA_HOME=str(java_home),
                                        PATH=f"{java_home / 'bin'}{os.pathsep}{os.environ['PATH']}").items()
           if k not in CA_VARIABLES}
    with system_store_guard():
        run_page(REPO / "docs" / "trust.md", cwd=work, env=env, substitutions={"8443": str(free_port())})
