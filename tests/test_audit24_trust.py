"""Audit 24, trust: what `certkit trust` says of the environment that decides which store a program reads.

- SSL_CERT_FILE / SSL_CERT_DIR (OpenSSL's default paths: Python, openssl; curl) and CURL_CA_BUNDLE (curl) point a
  program at another file or folder of CAs than the system store: install and status say so, naming the variable,
  its value and what the program still reads; checked against Python's ssl and curl themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_audit19_trust import _private_system_store, system_store_json
from test_audit20_trust import _real_java_home
from test_trust import java_client, pki, server, untrusted  # noqa: F401

from conftest import certkit_env, run_certkit
from trust_helpers import CA_VARIABLES, PYTHON_CLIENT, client_env, private_java_home


def _accepts(prefix: list[str], port: int, env: dict[str, str]) -> dict[str, bool]:
    """Whether Python's ssl (its default context) and curl accept the test server, run with ``env``."""
    ran = {name: subprocess.run([*prefix, *argv], env=client_env(**env), stdin=subprocess.DEVNULL, capture_output=True,
                                timeout=60) for name, argv in (
        ("python", [sys.executable, "-c", PYTHON_CLIENT, str(port)]),
        ("curl", ["curl", "-sS", "-o", "/dev/null", f"https://localhost:{port}/"]))}
    return {name: proc.returncode == 0 for name, proc in ran.items()}


@pytest.mark.parametrize("names", [("SSL_CERT_FILE",), ("SSL_CERT_DIR",), ("SSL_CERT_FILE", "SSL_CERT_DIR"),
                                   ("CURL_CA_BUNDLE",)])
def test_a_variable_that_points_clients_past_the_system_store_is_named(pki, server: int, tmp_path: Path,  # noqa: F811
                                                                      names: tuple[str, ...]) -> None:
    prefix = _private_system_store(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "my ca's" / "certs").mkdir(parents=True)  # a folder of no CA
    (tmp_path / "my ca's" / "bundle.pem").write_bytes(b"")  # a file of no CA
    given = {n: str(tmp_path / "my ca's" / ("certs" if n == "SSL_CERT_DIR" else "bundle.pem")) for n in names}
    env = {k: v for k, v in certkit_env(HOME=str(home)).items() if k not in CA_VARIABLES} | given
    try:
        for action in ("install", "status"):
            notes = [n for n in system_store_json(prefix, env, pki.issuing, action)["notes"]
                     if "in this environment" in n]
            openssl = [n for n in notes if "OpenSSL's default CA paths" in n]
            curl = [n for n in notes if ": curl commands " in n]
            assert all(f"{n}={given[n]}" in " ".join(notes) for n in names), notes
            assert len(openssl) == ("CURL_CA_BUNDLE" not in names) and len(curl) == 1, notes
            clients = _accepts(prefix, server, given)
            # What the notes say is so.
            nowhere = [n for n in openssl if "do not read this store at all" in n]
            assert clients["python"] == (not nowhere), (clients, notes)
            assert clients["curl"] == ("still read" in curl[0]), (clients, notes)
        assert not [n for n in system_store_json(prefix, {k: v for k, v in env.items() if k not in names},
                                                 pki.issuing, "status")["notes"] if "in this environment" in n]
    finally:
        system_store_json(prefix, env, pki.issuing, "uninstall")


def test_a_variable_naming_the_stores_own_file_or_folder_by_another_path_is_not_noted(pki, tmp_path: Path  # noqa: F811
                                                                                     ) -> None:
    prefix = _private_system_store(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    own = {"SSL_CERT_FILE": "/usr/lib/ssl/cert.pem", "SSL_CERT_DIR": f"/nowhere{os.pathsep}/usr/lib/ssl/certs",
           "CURL_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"}  # Debian's links to the bundle and its folder
    env = {k: v for k, v in certkit_env(HOME=str(home)).items() if k not in CA_VARIABLES} | own
    assert not [n for n in system_store_json(prefix, env, pki.issuing, "status")["notes"] if "in this environment" in n]


# --- Java: a JAVA_HOME or a javax.net.ssl.trustStore naming nothing -----------------------------------------------
def _java_only_env(home: Path, java_home: Path, **extra: str) -> dict[str, str]:
    """certkit's environment with this private JDK alone on PATH (no other java or keytool) and no CA variable."""
    env = {k: v for k, v in certkit_env(HOME=str(home)).items() if k not in CA_VARIABLES and k != "JAVA_HOME"}
    return env | {"PATH": str(java_home / "bin")} | extra


def _java_json(env: dict[str, str], ca_dir: Path, action: str) -> dict:
    proc = run_certkit("trust", action, "--java", "--json", "--ca-dir", str(ca_dir), env=env)
    assert proc.stdout.startswith("{") and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def _java_trusts(java_home: Path, classes: Path, port: int, **extra: str) -> bool:
    """Whether a Java program of this JDK, started with ``extra`` in its environment, accepts the test server."""
    got = subprocess.run([str(java_home / "bin/java"), "-cp", str(classes), "TrustClient", f"https://localhost:{port}/"],
                         env=client_env(**extra), capture_output=True, text=True, timeout=60)
    assert untrusted(got.stdout) or "200" in got.stdout, got.stdout + got.stderr
    return not untrusted(got.stdout)


@pytest.mark.parametrize("variable", ["JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS"])
def test_a_java_trust_store_option_naming_a_missing_file_is_said_to_fall_back_to_the_jdks(
        pki, server: int, java_client: Path, tmp_path: Path, variable: str) -> None:  # noqa: F811
    java_home = private_java_home(_real_java_home(), tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    missing = tmp_path / "team truststore.jks"  # named in a profile, never made (or since deleted)
    options = {variable: f"-Xss1m -Djavax.net.ssl.trustStore='{missing}'"}
    try:
        [store] = _java_json(_java_only_env(home, java_home, **options), pki.root, "install")["stores"]
        assert store["outcome"] == "added", store
        # Java falls back to the JDK's cacerts when the store it is told of is not there: it trusts the CA added.
        assert _java_trusts(java_home, java_client, server, **options)
        for action in ("install", "status"):
            [store] = _java_json(_java_only_env(home, java_home, **options), pki.root, action)["stores"]
            notes = " ".join(store["notes"])
            assert f"{missing}" in notes and "does not exist" in notes and "not this one" not in notes, store
            assert f"read this store ({store['location']})" in notes, store
    finally:
        _java_json(_java_only_env(home, java_home), pki.root, "uninstall")


def test_a_java_trust_store_option_is_taken_as_the_jvm_takes_it(pki, tmp_path: Path) -> None:  # noqa: F811
    """The store named is this JDK's own (by its link): no note; named twice, the last one applied wins."""
    java_home = private_java_home(_real_java_home(), tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    own = java_home / "lib/security/cacerts"  # a link to the keystore certkit changes
    other = tmp_path / "team.jks"
    other.write_bytes(own.read_bytes())
    missing = tmp_path / "gone.jks"

    def notes(**options: str) -> str:
        [store] = _java_json(_java_only_env(home, java_home, **options), pki.root, "status")["stores"]
        return " ".join(store["notes"])

    option = "-Djavax.net.ssl.trustStore="
    assert "javax.net.ssl.trustStore" not in notes(JAVA_TOOL_OPTIONS=f"{option}{own}")
    said = notes(JAVA_TOOL_OPTIONS=f"{option}{missing}", _JAVA_OPTIONS=f"{option}{other}")
    assert "not this one" in said and "does not exist" not in said, said
    said = notes(JAVA_TOOL_OPTIONS=f"{option}{other}", JDK_JAVA_OPTIONS=f"{option}{missing}")
    assert "does not exist" in said and "read this store" in said, said


def test_a_java_home_that_does_not_exist_is_named_with_the_jdk_used_instead(
        pki, server: int, java_client: Path, tmp_path: Path) -> None:  # noqa: F811
    java_home = private_java_home(_real_java_home(), tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    gone = tmp_path / "jdk-21 (removed)"
    env = _java_only_env(home, java_home, JAVA_HOME=str(gone))
    try:
        for action in ("status", "install"):
            stores = _java_json(env, pki.root, action)["stores"]
            [skipped] = [s for s in stores if s["location"] == str(gone)]
            assert skipped["outcome"] == "skipped" and "does not exist" in skipped["reason"], skipped
            assert "JAVA_HOME" in skipped["reason"] and str(java_home) in skipped["reason"], skipped
        assert _java_trusts(java_home, java_client, server)  # the java on PATH: the one certkit changed
    finally:
        _java_json(_java_only_env(home, java_home), pki.root, "uninstall")


# --- profiles.ini read as Firefox's nsINIParser reads it ----------------------------------------------------------
# Keys are case-sensitive and end at the first '=' (no ':'); a key's or value's spaces are its own; a comment is a line
# whose first character is '#' or ';'; a header followed by anything but spaces ("[Profile1] x") opens no section.
_FIREFOX_IGNORES = {
    "lowercase keys": "[Profile1]\r\nname=lower\r\nisrelative=1\r\npath=lower.profile\r\n",
    "a colon for =": "[Profile1]\nName: colon\nIsRelative: 1\nPath: colon.profile\n",
    "spaces around =": "[Profile1]\nName = spaced\nIsRelative = 1\nPath = spaced.profile\n",
    "text after the header": "[Profile1] ; old\nName=after\nIsRelative=1\nPath=after.profile\n",
}


@pytest.mark.parametrize("case", sorted(_FIREFOX_IGNORES))
def test_profiles_ini_settings_firefox_does_not_read_are_not_taken_as_profiles(tmp_path: Path, case: str) -> None:
    from certkit.trust.nss_places import read_profiles

    (tmp_path / "profiles.ini").write_bytes((
        "# written by hand\r\n[Profile0]\r\nName=main\r\nIsRelative=1\r\nPath=Profiles/a b.default\r\n\r\n"
        + _FIREFOX_IGNORES[case] + "\n[Profile2]\nName=absolute\nIsRelative=0\nPath=/srv/ff/c.profile\n").encode())
    found, problem, _ignored = read_profiles(tmp_path)
    # Firefox reads [Profile0], then stops at [Profile1]: it has no IsRelative= (a key of another case or shape, or a
    # section it never opened); [Profile2] after it is never read.
    assert found == [("main", tmp_path / "Profiles/a b.default")], (found, problem)


def test_profiles_ini_read_as_firefox_reads_it(tmp_path: Path) -> None:
    from certkit.trust.nss_places import read_profiles

    (tmp_path / "profiles.ini").write_bytes(
        b"[General]\r\nStartWithLastProfile=1\r\n\r\n[Profile0]\r\nName=a\r\nIsRelative=1\r\nPath=old\r\n"
        b"Path=Profiles/x.default-release\r\n;Path=commented\r\n\r\n[Profile1]\r\nName=b=c\r\nIsRelative=0\r\n"
        b"Path=/srv/profiles/with space\r\n[Install4F96D1932A9F858E]\r\nDefault=Profiles/x.default-release\r\n")
    found, problem, ignored = read_profiles(tmp_path)
    assert found == [("a", tmp_path / "Profiles/x.default-release"), ("b=c", Path("/srv/profiles/with space"))]
    assert problem is None and ignored == []


def test_a_profile_firefox_does_not_read_gets_no_ca(pki, tmp_path: Path) -> None:  # noqa: F811
    import shutil

    from conftest import require

    require("certutil")
    home = tmp_path / "home"
    firefox = home / ".mozilla/firefox"
    for folder in ("a.default", "lower.profile"):
        (firefox / folder).mkdir(parents=True)
        subprocess.run(["certutil", "-N", "-d", f"sql:{firefox / folder}", "--empty-password"], check=True,
                       capture_output=True, timeout=60)
    (firefox / "profiles.ini").write_text("[Profile0]\nName=main\nIsRelative=1\nPath=a.default\n\n"
                                          "[Profile1]\nname=lower\nisrelative=1\npath=lower.profile\n")
    env = certkit_env(HOME=str(home), PATH=str(Path(shutil.which("certutil")).parent))
    proc = run_certkit("trust", "install", "--nss", "--json", "--ca-dir", str(pki.issuing), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    locations = {s["location"]: s["outcome"] for s in json.loads(proc.stdout)["stores"]}
    assert locations.get(str(firefox / "a.default")) == "added", locations
    assert str(firefox / "lower.profile") not in locations, locations
    listing = subprocess.run(["certutil", "-L", "-d", f"sql:{firefox / 'lower.profile'}"], capture_output=True,
                             text=True, timeout=60, check=True).stdout
    assert "certkit-" not in listing
    run_certkit("trust", "uninstall", "--nss", "--ca-dir", str(pki.issuing), env=env)


def test_firefox_profiles_in_the_legacy_and_the_xdg_folder_are_both_found(pki, tmp_path: Path) -> None:  # noqa: F811
    """Firefox 147 keeps a new installation's profiles in ~/.config/mozilla/firefox, an older one's stay in
    ~/.mozilla/firefox: with both there, both are changed and reported, each by its own path."""
    import shutil

    from conftest import require

    require("certutil")
    home = tmp_path / "home"
    folders = [home / ".mozilla/firefox/a.default", home / ".config/mozilla/firefox/b.default-release"]
    for folder in folders:
        folder.mkdir(parents=True)
        (folder.parent / "profiles.ini").write_text(f"[Profile0]\nName=default\nIsRelative=1\nPath={folder.name}\n")
        subprocess.run(["certutil", "-N", "-d", f"sql:{folder}", "--empty-password"], check=True, capture_output=True,
                       timeout=60)
    env = {k: v for k, v in certkit_env(HOME=str(home)).items() if k != "XDG_CONFIG_HOME"}
    env["PATH"] = str(Path(shutil.which("certutil")).parent)
    try:
        for action, outcome in (("install", "added"), ("status", "trusted")):
            proc = run_certkit("trust", action, "--nss", "--json", "--ca-dir", str(pki.issuing), env=env)
            found = {s["location"]: s["outcome"] for s in json.loads(proc.stdout)["stores"]}
            assert all(found.get(str(f)) == outcome for f in folders), found
    finally:
        run_certkit("trust", "uninstall", "--nss", "--ca-dir", str(pki.issuing), env=env)
