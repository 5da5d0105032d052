"""Audit 27, trust (2): what certkit says of the trust store a consumer actually reads, checked with real peers (a JSSE
client compiled with the JDK and run with a private JAVA_HOME, against a loopback Python ssl server), never the
machine's own stores.

1. ``-Djavax.net.ssl.trustStore=NONE`` in an options variable (JAVA_TOOL_OPTIONS, JDK_JAVA_OPTIONS, _JAVA_OPTIONS).
   certkit's note said those Java programs "read the trust store NONE" and to "add the CA there with keytool": there
   is no such file. Java reads no file for NONE (sun.security.ssl.TrustStoreManager): with a file store type it
   trusts no CA at all, every TLS connection failing ("the trustAnchors parameter must be non-empty"); NONE is meant
   for a PKCS#11 token (javax.net.ssl.trustStoreType=PKCS11). The note now says so.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from test_audit20_trust import _java_env, _real_java_home
from test_audit26_trust import python_server  # noqa: F401
from test_trust import java_client, pki, untrusted  # noqa: F401

from conftest import require, run_certkit
from trust_helpers import client_env, private_java_home, run_trust_client, trust_json


@pytest.mark.parametrize(("variable", "options"), [
    ("JAVA_TOOL_OPTIONS", "-Djavax.net.ssl.trustStore=NONE"),
    ("JDK_JAVA_OPTIONS", "-Xss1m -Djavax.net.ssl.trustStore=NONE"),
    ("_JAVA_OPTIONS", "'-Djavax.net.ssl.trustStore=NONE'"),
])
def test_a_trust_store_option_of_none_is_said_to_trust_no_ca(
        pki, python_server: int, java_client: Path, tmp_path: Path, variable: str,  # noqa: F811
        options: str) -> None:
    require("keytool")
    java_home = private_java_home(_real_java_home(), tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    env = {**_java_env(home, java_home), variable: options}
    added = run_certkit("trust", "install", "--java", "--ca-dir", pki.root, "--json", env=env)
    assert added.returncode == 0, added.stdout + added.stderr
    [store] = trust_json(added)["stores"]
    assert store["outcome"] == "added", store
    # the real peer: a Java program given NONE refuses even the CA certkit just added to its JDK's cacerts, any CA
    got = run_trust_client(java_home, java_client, python_server, **{variable: options})
    assert got.returncode and "trustAnchors parameter must be non-empty" in got.stdout + got.stderr, got.stdout
    assert "HTTP 200" in run_trust_client(java_home, java_client, python_server).stdout  # without the option: trusted
    notes = " ".join(store["notes"])
    assert "add the CA there with keytool" not in notes and "read the trust store NONE" not in notes, notes
    assert f"javax.net.ssl.trustStore=NONE ({variable})" in notes, notes
    assert "trust no CA at all" in notes and "trustAnchors parameter must be non-empty" in notes, notes
    assert "PKCS11" in notes, notes
    status = run_certkit("trust", "status", "--java", "--ca-dir", pki.root, "--json", env=env)
    assert "trust no CA at all" in " ".join(trust_json(status)["stores"][0]["notes"]), status.stdout


def test_a_trust_store_option_of_none_with_a_pkcs11_type_is_said_to_be_a_token(pki, tmp_path: Path) -> None:  # noqa: F811
    require("keytool")
    java_home = private_java_home(_real_java_home(), tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    options = "-Djavax.net.ssl.trustStore=NONE -Djavax.net.ssl.trustStoreType=pkcs11"
    env = {**_java_env(home, java_home), "JDK_JAVA_OPTIONS": options}
    [store] = trust_json(run_certkit("trust", "install", "--java", "--ca-dir", pki.root, "--json", env=env))["stores"]
    notes = " ".join(store["notes"])
    assert "trust the CAs of a PKCS#11 token, not this store" in notes and "add the CA to that token" in notes, notes
    assert "trust no CA at all" not in notes and "add the CA there with keytool" not in notes, notes


# --- 2: an NSS database converted from the old dbm format keeps its cert8.db ---------------------------------------
def _dbm_listing(folder: Path) -> str:
    """certutil's listing of the old-format files themselves (dbm:), not of cert9.db."""
    return subprocess.run(["certutil", "-L", "-d", f"dbm:{folder}"], capture_output=True, text=True, timeout=60,
                          check=True, stdin=subprocess.DEVNULL).stdout


@pytest.mark.parametrize("where", [".pki/nssdb", ".mozilla/firefox/a.default"])
def test_uninstall_takes_certkits_ca_out_of_the_old_cert8_db_too(pki, tmp_path: Path, where: str) -> None:  # noqa: F811
    """A database of the old dbm format holding certkit's CA (added by an older certkit, or by hand with its
    nickname): uninstall deleted it through sql:, which converts the database to cert9.db and deletes it there,
    leaving cert8.db holding it. NSS upgrades cert8.db again the day cert9.db goes (a profile mended by deleting a
    damaged cert9.db), and the CA is back, trusted: status said it was not there."""
    from test_audit17_trust import _legacy_db
    from test_trust import trust

    for tool in ("certutil", "vfychain"):
        require(tool)
    home = tmp_path / "home"
    folder = _legacy_db(home / where)
    if "firefox" in where:
        (folder.parent / "profiles.ini").write_text("[Profile0]\nName=a\nIsRelative=1\nPath=a.default\n")
    nick = pki.anchor.nickname
    subprocess.run(["certutil", "-A", "-d", f"dbm:{folder}", "-n", nick, "-t", "C,,"], input=pki.anchor.pem,
                   check=True, capture_output=True, timeout=60)
    assert nick in _dbm_listing(folder)
    status = json.loads(trust("status", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True).stdout)
    assert {s["location"]: s["outcome"] for s in status["stores"]}[str(folder)] == "trusted", status

    gone = trust("uninstall", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True)
    [store] = [s for s in json.loads(gone.stdout)["stores"] if s["location"] == str(folder)]
    assert store["outcome"] == "removed", gone.stdout
    assert any(n.startswith(f"took '{nick}' out of {folder / 'cert8.db'} too") for n in store["notes"]), store
    assert (folder / "cert9.db").is_file()
    assert nick not in _dbm_listing(folder), "certkit's CA left in cert8.db"
    # what NSS does without cert9.db: it upgrades cert8.db again; the CA must not come back
    for name in ("cert9.db", "key4.db", "pkcs11.txt"):
        (folder / name).unlink(missing_ok=True)
    listing = subprocess.run(["certutil", "-L", "-d", f"sql:{folder}"], capture_output=True, text=True, timeout=60,
                             check=True, stdin=subprocess.DEVNULL).stdout
    assert nick not in listing, listing


def test_certkits_ca_left_in_the_old_cert8_db_alone_is_named(pki, tmp_path: Path) -> None:  # noqa: F811
    """The CA taken out of cert9.db alone (by an uninstall before the fix above, or by hand with sql:), cert8.db still
    holding it: status and uninstall said nothing of it ("not trusted", "absent"); they now name it, with the
    command that takes it out, which does (NSS then converts cert8.db without it)."""
    import shlex

    from test_audit17_trust import _legacy_db
    from test_trust import trust

    require("certutil")
    home = tmp_path / "home"
    folder = _legacy_db(home / ".pki/nssdb")
    nick = pki.anchor.nickname
    for db, pem in ((f"dbm:{folder}", pki.anchor.pem), (f"sql:{folder}", None)):
        if pem is not None:
            subprocess.run(["certutil", "-A", "-d", db, "-n", nick, "-t", "C,,"], input=pem, check=True,
                           capture_output=True, timeout=60)
        else:  # converted, then taken out of cert9.db alone
            subprocess.run(["certutil", "-D", "-d", db, "-n", nick], check=True, capture_output=True, timeout=60)
    assert (folder / "cert9.db").is_file() and nick in _dbm_listing(folder)
    for action in ("status", "uninstall"):
        got = json.loads(trust(action, "--nss", "--json", home=home, ca_dir=pki.issuing, check=True).stdout)
        [store] = [s for s in got["stores"] if s["location"] == str(folder)]
        assert store["outcome"] in ("not trusted", "absent"), store
        [note] = [n for n in store["notes"] if f"'{nick}' is still in {folder / 'cert8.db'}" in n]
    subprocess.run(shlex.split(note.split("take it out: ", 1)[1]), check=True, capture_output=True, timeout=60)
    assert nick not in _dbm_listing(folder)


# --- 3: a relative trust store path ----------------------------------------------------------------------------
@pytest.mark.parametrize("variable", ["JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS"])
def test_a_relative_trust_store_option_is_said_to_depend_on_the_programs_folder(
        pki, python_server: int, java_client: Path, tmp_path: Path, variable: str) -> None:  # noqa: F811
    """-Djavax.net.ssl.trustStore=team.jks: certkit said those programs "read the trust store team.jks, not this one
    ...: what certkit changes here does not reach them; add the CA there with keytool". Java reads team.jks in the
    folder each program is started in (java.io.File), and one started where there is none falls back to cacerts,
    which certkit changed: it trusts the CA."""
    import shutil

    require("keytool")
    java_home = private_java_home(_real_java_home(), tmp_path)
    home, team, elsewhere = tmp_path / "home", tmp_path / "team", tmp_path / "elsewhere"
    for folder in (home, team, elsewhere):
        folder.mkdir()
    shutil.copyfile((java_home / "lib/security/cacerts").resolve(), team / "team.jks")  # without the CA
    options = "-Djavax.net.ssl.trustStore=team.jks"
    env = {**_java_env(home, java_home), variable: options}
    [store] = trust_json(run_certkit("trust", "install", "--java", "--ca-dir", pki.root, "--json", env=env))["stores"]
    assert store["outcome"] == "added", store
    notes = " ".join(store["notes"])
    assert "does not reach them" not in notes and "add the CA there with keytool" not in notes, notes
    assert f"team.jks ({variable}) (javax.net.ssl.trustStore), a relative path" in notes, notes
    assert "falls back to its JDK's cacerts" in notes and "so they read this store" in notes, notes

    def java_in(folder: Path) -> subprocess.CompletedProcess:
        return subprocess.run([str(java_home / "bin/java"), "-cp", str(java_client), "TrustClient",
                               f"https://localhost:{python_server}/"], env=client_env(**{variable: options}),
                              capture_output=True, text=True, timeout=120, cwd=folder)

    assert "HTTP 200" in java_in(elsewhere).stdout  # no team.jks there: cacerts, which holds the CA now
    got = java_in(team)
    assert untrusted(got.stdout), got.stdout + got.stderr  # team.jks there: the team's store, without it
