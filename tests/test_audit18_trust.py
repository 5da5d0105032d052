"""The eighteenth round's trust findings, each as a class, against real JDKs (keytool, a JSSE client whose trust
store is the JDK's default cacerts) and real NSS databases (certutil, vfychain), never the machine's own stores:

1. A JDK's ``cacerts`` that is a PKCS#12 keystore whose certificates are encrypted with its password (what
   ``keytool -importkeystore -deststoretype pkcs12`` makes, as keytool itself advises for a JKS one). Read without
   its password, keytool lists none of its entries, and Java programs not given the password (as
   javax.net.ssl.trustStorePassword) read none either. Once that password was no longer ``changeit``, ``status``
   said "not trusted" of a CA that is in it (trusted by every program given the password), and ``uninstall`` said
   "absent" and exited 0, leaving it trusted. Now such a store is skipped with code ``password`` and the keytool
   command that does it (which asks for the password). With the default password, ``install`` and ``status`` now
   say that Java programs read its certificates only when given that password.
2. A store that is a link to nothing: ``~/.pki/nssdb`` (or ``~/.pki``) a link to a folder that does not exist (a
   dotfiles folder not there yet), or a JDK's ``lib/security/cacerts`` a link to a file that does not exist
   (Debian's JDKs link theirs to /etc/ssl/certs/java/cacerts, which ca-certificates-java makes). ``install --nss``
   failed on certutil's "SEC_ERROR_BAD_DATABASE: bad database ... nothing was left in ~/.pki/nssdb"; the Java
   store was skipped as having "no lib/security/cacerts". Both now name the link and where it leads, and what to
   do; Chromium cannot create such a database either, and Java programs of such a JDK trust nothing.
3. Another certkit CA that is in a store but not trusted there: an NSS entry whose trust was taken away (``,,``,
   Firefox's Edit Trust, ``certutil -M``), or a system-store file not in the bundle clients read. ``status``
   said "certkit CA trusted" of it, and warned "a certkit CA is trusted ... If it is no longer used, remove it",
   while NSS's own verifier (vfychain) refuses what it signs. It is now "there but not trusted", with why
   (``not_trusted`` in --json), and no warning calls it trusted; ``--every-certkit-ca`` still removes it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from test_trust import java_client, machine_store_quiet, pki, server, trust, untrusted  # noqa: F401

from certkit.trust.java import encrypted_parts

from conftest import certkit_env, require, require_chromium, run_certkit
from trust_helpers import chromium, client_env, nss_listing, nss_verifies, private_java_home


# --- 1: a PKCS#12 cacerts whose certificates are encrypted with its password -------------------------------------
def _real_java_home() -> Path:
    return Path(os.environ["JAVA_HOME"]) if os.environ.get("JAVA_HOME") else \
        Path(shutil.which("java")).resolve().parent.parent


def _java(java_home: Path, classes: Path, url: str, *options: str) -> subprocess.CompletedProcess:
    """The JSSE client, its trust store the JDK's default cacerts (``options``: e.g. its password)."""
    return subprocess.run([str(java_home / "bin/java"), *options, "-cp", str(classes), "TrustClient", url],
                          env=client_env(), capture_output=True, text=True, timeout=120)


def _encrypted_pkcs12_cacerts(java_home: Path, work: Path) -> Path:
    """The private JDK's cacerts made a PKCS#12 keystore by keytool -importkeystore (password changeit), as keytool
    advises for a JKS keystore: its certificates are encrypted with the password."""
    cacerts = (java_home / "lib/security/cacerts").resolve()
    converted = work / "cacerts.p12"
    subprocess.run([str(java_home / "bin/keytool"), "-importkeystore", "-noprompt", "-srckeystore", cacerts,
                    "-srcstorepass", "changeit", "-destkeystore", converted, "-deststoretype", "PKCS12",
                    "-deststorepass", "changeit"], check=True, capture_output=True, timeout=120)
    shutil.copyfile(converted, cacerts)
    return cacerts


def test_a_pkcs12_cacerts_whose_certificates_are_encrypted_is_never_called_empty(
        pki, server: int, java_client: Path, tmp_path: Path, machine_store_quiet) -> None:  # noqa: F811
    java_home = private_java_home(_real_java_home(), tmp_path)
    cacerts = _encrypted_pkcs12_cacerts(java_home, tmp_path)
    assert encrypted_parts(cacerts.read_bytes()) >= 1
    keytool = str(java_home / "bin/keytool")
    env = {"JAVA_HOME": str(java_home), "PATH": f"{java_home / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    home = tmp_path / "home"
    home.mkdir()
    url = f"https://localhost:{server}/"

    # Default password: certkit adds the CA, and says who reads it: Java programs given the password, no other.
    added = trust("install", "--java", "--json", home=home, ca_dir=pki.issuing, extra_env=env, check=True)
    (store,) = json.loads(added.stdout)["stores"]
    assert store["outcome"] == "added", store
    assert any("read them only when given that password (-Djavax.net.ssl.trustStorePassword=changeit)" in note
               for note in store["notes"]), store
    with_password = _java(java_home, java_client, url, "-Djavax.net.ssl.trustStorePassword=changeit")
    assert "HTTP 200" in with_password.stdout, with_password.stdout + with_password.stderr
    without = _java(java_home, java_client, url)
    assert "the trustAnchors parameter must be non-empty" in without.stdout, without.stdout + without.stderr

    # The store hardened (keytool -storepasswd): what it holds cannot be read without the new password.
    subprocess.run([keytool, "-storepasswd", "-keystore", cacerts, "-storepass", "changeit", "-new", "hardened"],
                   check=True, capture_output=True, timeout=120)
    listed = subprocess.run([keytool, "-list", "-keystore", cacerts, "-storepass", "hardened"], capture_output=True,
                            text=True, timeout=120, check=True).stdout
    assert pki.anchor.file_stem in listed
    hardened = _java(java_home, java_client, url, "-Djavax.net.ssl.trustStorePassword=hardened")
    assert "HTTP 200" in hardened.stdout, hardened.stdout + hardened.stderr  # still trusted, by those given it
    before = cacerts.read_bytes()

    status = trust("status", "--java", "--json", home=home, ca_dir=pki.issuing, extra_env=env, check=True)
    (store,) = json.loads(status.stdout)["stores"]
    assert (store["outcome"], store["code"]) == ("skipped", "password"), store  # was "not trusted"
    assert "certkit cannot tell what it holds" in store["reason"], store
    check = shlex.split(store["reason"].split("check it yourself: ", 1)[1])
    assert check == [keytool, "-list", "-alias", pki.anchor.file_stem, "-keystore", str(cacerts)]
    shown = subprocess.run([keytool, *check[1:]], input="hardened\n", text=True, capture_output=True, timeout=120)
    assert shown.returncode == 0 and "trustedCertEntry" in shown.stdout, shown.stdout + shown.stderr

    # uninstall named the store: refused, with the command (was "absent", exit 0, the CA left trusted).
    refused = trust("uninstall", "--java", home=home, ca_dir=pki.issuing, extra_env=env)
    assert refused.returncode == 1 and cacerts.read_bytes() == before, refused.stdout + refused.stderr
    (line,) = refused.stderr.splitlines()
    assert line.startswith("Error: Cannot uninstall the CA from the java store: ") and "absent" not in line, line
    command = shlex.split(line.split("take certkit's copy out yourself: ", 1)[1])
    assert command == [keytool, "-delete", "-alias", pki.anchor.file_stem, "-keystore", str(cacerts)]
    every = trust("uninstall", "--java", "--every-certkit-ca", home=home, extra_env=env)
    assert every.returncode == 1 and cacerts.read_bytes() == before, every.stdout + every.stderr
    assert "keytool -delete -alias ALIAS -keystore" in every.stderr and "certkit-" in every.stderr, every.stderr
    installed = trust("install", "--java", home=home, ca_dir=pki.issuing, extra_env=env)
    assert installed.returncode == 1 and cacerts.read_bytes() == before, installed.stdout + installed.stderr
    assert f"add the CA yourself: {keytool} -importcert" in installed.stderr, installed.stderr

    # The advice, followed (keytool asks for the password): the CA is out for the programs given the password.
    subprocess.run([keytool, *command[1:]], input="hardened\n", text=True, check=True, capture_output=True,
                   timeout=120)
    gone = _java(java_home, java_client, url, "-Djavax.net.ssl.trustStorePassword=hardened")
    assert gone.returncode == 2 and untrusted(gone.stdout), gone.stdout + gone.stderr
    still = trust("status", "--java", "--json", home=home, ca_dir=pki.issuing, extra_env=env, check=True)
    assert json.loads(still.stdout)["stores"][0]["code"] == "password"  # still cannot tell: never "not trusted"


def test_encrypted_parts_tells_the_keystores_apart(java_client: Path, tmp_path: Path,  # noqa: F811
                                                   machine_store_quiet) -> None:  # noqa: F811
    """keytool's own keystores: JKS and a password-less PKCS#12 (JDK 18's cacerts) hold nothing encrypted."""
    java_home = private_java_home(_real_java_home(), tmp_path)
    keytool = str(java_home / "bin/keytool")
    cacerts = (java_home / "lib/security/cacerts").resolve()
    plain = tmp_path / "plain.p12"
    subprocess.run([keytool, "-J-Dkeystore.pkcs12.certProtectionAlgorithm=NONE",
                    "-J-Dkeystore.pkcs12.macAlgorithm=NONE", "-importkeystore", "-noprompt", "-srckeystore", cacerts,
                    "-srcstorepass", "changeit", "-destkeystore", plain, "-deststoretype", "PKCS12",
                    "-deststorepass", "changeit"], check=True, capture_output=True, timeout=120)
    assert encrypted_parts(plain.read_bytes()) == 0
    assert encrypted_parts(cacerts.read_bytes()) == 0  # the JDK's own: JKS (Debian) or password-less PKCS#12
    assert encrypted_parts(_encrypted_pkcs12_cacerts(java_home, tmp_path).read_bytes()) >= 1
    assert encrypted_parts(b"\xfe\xed\xfe\xed") == 0 and encrypted_parts(b"") == 0


# --- 2: a store that is a link to nothing ------------------------------------------------------------------------
def test_an_nss_database_behind_a_link_to_nothing_is_named_with_the_link(pki, server: int,  # noqa: F811
                                                                        tmp_path: Path) -> None:
    require("certutil")
    require_chromium()
    home = tmp_path / "home"
    (home / ".pki").mkdir(parents=True)
    target = home / "dotfiles" / "nssdb"
    (home / ".pki/nssdb").symlink_to(target)
    for args in (("install", "--nss"), ("install", "--nss", "--json")):
        proc = trust(*args, home=home, ca_dir=pki.issuing)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        text = json.loads(proc.stdout)["error"] if "--json" in args else proc.stderr
        assert f"{home / '.pki/nssdb'} is a link to {target}, which does not exist: the NSS database cannot be " \
               "created there (nor can a browser create it); create that folder, or remove the link, and run again" \
               in text, text
        assert "bad database" not in text, text
        assert len(proc.stderr.strip().splitlines()) == ("--json" not in args), proc.stderr
    assert not os.path.lexists(target)  # nothing made behind the link

    url = f"https://localhost:{server}/"
    refused = chromium(url, home, tmp_path / "chromium-1")
    assert "ERR_CERT_AUTHORITY_INVALID" in refused.stderr, refused.stderr[-2000:]
    assert not os.path.lexists(target)  # Chromium made nothing there either

    target.mkdir(parents=True)  # as the message says
    added = trust("install", "--nss", "--json", home=home, ca_dir=pki.issuing, check=True)
    assert [s["outcome"] for s in json.loads(added.stdout)["stores"]] == ["added"]
    assert pki.anchor.nickname in nss_listing(target) and (home / ".pki/nssdb").is_symlink()
    page = chromium(url, home, tmp_path / "chromium-2")
    assert "verify=NONE" in page.stdout, page.stderr[-3000:]

    # ~/.pki itself a link to nothing: named as well, the database's own path with it.
    other = tmp_path / "home2"
    other.mkdir()
    (other / ".pki").symlink_to(other / "dots")
    proc = trust("install", "--nss", home=other, ca_dir=pki.issuing)
    assert proc.returncode == 1 and f"{other / '.pki'} is a link to {other / 'dots'}, which does not exist: the " \
        f"NSS database cannot be created in {other / '.pki/nssdb'}" in proc.stderr, proc.stderr


def test_a_jdk_whose_cacerts_is_a_link_to_nothing_is_named_with_the_link(
        pki, server: int, java_client: Path, tmp_path: Path, machine_store_quiet) -> None:  # noqa: F811
    java_home = private_java_home(_real_java_home(), tmp_path)
    link = java_home / "lib/security/cacerts"
    target = link.resolve()
    kept = target.read_bytes()
    target.unlink()  # as on a Debian JDK whose ca-certificates-java never made /etc/ssl/certs/java/cacerts
    env = {"JAVA_HOME": str(java_home), "PATH": f"{java_home / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    home = tmp_path / "home"
    home.mkdir()
    url = f"https://localhost:{server}/"
    nothing = _java(java_home, java_client, url)
    assert "the trustAnchors parameter must be non-empty" in nothing.stdout, nothing.stdout + nothing.stderr

    said = f"{link} is a link to {target}, which does not exist: the Java programs of this JDK have no trust store"
    status = trust("status", "--java", "--json", home=home, ca_dir=pki.issuing, extra_env=env, check=True)
    reasons = {s["reason"] for s in json.loads(status.stdout)["stores"]}
    assert all(said in reason for reason in reasons), reasons  # was "... has no lib/security/cacerts"
    refused = trust("install", "--java", home=home, ca_dir=pki.issuing, extra_env=env)
    assert refused.returncode == 1 and said in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not target.exists(), refused.stderr

    target.write_bytes(kept)  # restored, as the message says
    trust("install", "--java", home=home, ca_dir=pki.issuing, extra_env=env, check=True)
    ok = _java(java_home, java_client, url)
    assert "HTTP 200" in ok.stdout, ok.stdout + ok.stderr


# --- 3: another certkit CA there, but not trusted ----------------------------------------------------------------
def _ca_and_leaf(work: Path, name: str) -> tuple[Path, Path]:
    """A CA directory limited to home.arpa (no passphrase) and a server certificate for x.home.arpa from it."""
    env = certkit_env(HOME=str(work))
    ca = work / name
    run_certkit("init-ca", "--ca-dir", ca, "--name", name, "--permit-dns", "home.arpa", "--no-passphrase", env=env,
                check=True)
    (work / f"{name}-leaf").mkdir()
    run_certkit("issue-server", "--ca-dir", ca, "x.home.arpa", cwd=work / f"{name}-leaf", env=env, check=True)
    return ca, work / f"{name}-leaf" / "x.home.arpa" / "cert.pem"


def test_another_certkit_ca_whose_nss_trust_was_taken_away_is_not_called_trusted(tmp_path: Path) -> None:
    require("certutil")
    require("vfychain")
    home = tmp_path / "home"
    (home / ".pki/nssdb").mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{home / '.pki/nssdb'}", "--empty-password"], check=True,
                   capture_output=True, timeout=60)
    current, current_leaf = _ca_and_leaf(tmp_path, "Current CA")
    old, old_leaf = _ca_and_leaf(tmp_path, "Old CA")
    for ca in (current, old):
        trust("install", "--nss", home=home, ca_dir=ca, check=True)
    db = home / ".pki/nssdb"
    old_nick = next(line.rsplit(None, 1)[0] for line in nss_listing(db).splitlines() if "Old CA" in line)
    subprocess.run(["certutil", "-M", "-d", f"sql:{db}", "-n", old_nick, "-t", ",,"], check=True, capture_output=True,
                   timeout=60)  # distrusted, as Firefox's Edit Trust does
    refused = nss_verifies(db, old_leaf)
    assert refused.returncode != 0 and "Chain is good" not in refused.stdout + refused.stderr, refused.stderr
    good = nss_verifies(db, current_leaf)
    assert good.returncode == 0 and "Chain is good" in good.stdout + good.stderr, good.stderr

    for ca_dir, what in ((None, "certkit CA"), (current, "another certkit CA")):
        proc = trust("status", "--nss", home=home, ca_dir=ca_dir, check=True)
        assert f"{what} there but not trusted: {old_nick} (CN=Old CA); flags ,,: browsers do not take it as a " \
               "website's issuer" in proc.stdout, proc.stdout
        assert f"{what} trusted: {old_nick}" not in proc.stdout and f"{what} also trusted: {old_nick}" not in \
            proc.stdout, proc.stdout
        assert "CN=Old CA" not in proc.stderr, proc.stderr  # no warning calls it trusted, nor asks to remove it
        as_json = trust("status", "--nss", "--json", home=home, ca_dir=ca_dir, check=True)
        older = {e["name"]: e["not_trusted"] for e in json.loads(as_json.stdout)["stores"][0]["older"]}
        assert "flags ,," in older.pop(old_nick) and set(older.values()) <= {None}, older
        assert all("CN=Old CA" not in w for w in json.loads(as_json.stdout)["warnings"])
    assert "CN=Current CA" in trust("status", "--nss", home=home, check=True).stderr  # the trusted one is warned of

    current_nick = next(line.rsplit(None, 1)[0] for line in nss_listing(db).splitlines() if "Current CA" in line)
    gone = trust("uninstall", "--nss", "--every-certkit-ca", "--json", home=home, check=True)
    assert sorted(json.loads(gone.stdout)["stores"][0]["removed"]) == sorted([old_nick, current_nick])
    assert "certkit-" not in nss_listing(db)  # both went, the distrusted one too


def test_a_certkit_anchor_file_not_in_its_bundle_is_not_called_trusted(tmp_path: Path) -> None:
    """A private layout (its folder, its bundle; a refresh that does nothing): the machine's store is never read."""
    from certkit.trust import Anchor, SystemLayout, SystemStore, status, warnings

    require("openssl")
    current, _current_leaf = _ca_and_leaf(tmp_path, "Current CA")
    old, old_leaf = _ca_and_leaf(tmp_path, "Old CA")
    anchors, bundle = tmp_path / "anchors", tmp_path / "bundle.pem"
    anchors.mkdir()
    for ca in (current, old):
        anchor = Anchor.from_ca_dir(ca)
        (anchors / f"{anchor.file_stem}.crt").write_bytes(anchor.pem)
    bundle.write_bytes(Anchor.from_ca_dir(current).pem)  # the refresh has not run since Old CA's file came
    verify = subprocess.run(["openssl", "verify", "-CAfile", bundle, old_leaf], capture_output=True, text=True,
                            timeout=60)
    assert verify.returncode != 0, verify.stdout  # what OpenSSL clients read does not trust it
    store = SystemStore(SystemLayout("Private", anchors, ".crt", ("true",), ("true",), bundle, "coreutils"),
                        {"PATH": "/usr/bin:/bin"})
    for anchor in (None, Anchor.from_ca_dir(current)):
        (result,) = status(anchor, [store])
        said = {e.subject: e.not_trusted for e in result.state.older}
        assert said.pop("CN=Old CA") == f"not in {bundle}: run true" and set(said.values()) <= {None}, said
        assert not [w for w in warnings(anchor, [result]) if "CN=Old CA" in w]
