"""The twentieth round's trust findings, each as a class, against real JDKs (keytool, a JSSE client whose trust store
is the JDK's default) and real TLS clients (curl), never the machine's own stores:

1. A JDK whose ``lib/security`` holds a ``jssecacerts``. Java programs not given javax.net.ssl.trustStore read that
   file instead of ``cacerts`` (Java's own rule; InstallCert and many guides make one). certkit knew only cacerts:
   ``install --java`` said "added" (and ``status`` "trusted") while the JSSE client refused the CA's servers, and
   ``uninstall`` said "removed" (``status`` "not trusted") while a jssecacerts holding the CA kept it trusted. The
   JDK's store is now the file Java reads; a cacerts no JDK reads any more is skipped by ``install`` and ``status``
   (``unread``, naming certkit's copies still in it), and ``uninstall`` takes certkit's copies out of it too. Of the
   same class: javax.net.ssl.trustStore in JAVA_TOOL_OPTIONS (JDK_JAVA_OPTIONS, _JAVA_OPTIONS) points the Java
   programs started with that environment at another store; each Java store now says so in a note.
2. What a trusted root outside its dates means. ``status`` said of an expired certkit root "nothing it signed is
   accepted any more" (of a root not valid yet: "until then clients reject everything it signs"), and install's
   refusal "trusting it would make nothing valid"; but Java (PKIX) takes a trust anchor without its dates: a JSSE
   client accepts a server certificate the expired root signed (curl refuses it). A user told the expired CA is
   harmless leaves it trusted, and its key still vouches for any name to Java. For a root in a store Java reads,
   the warnings now say that Java accepts it, with how to take it out.
3. The CA directory's intermediate in the system store by hand (its ca.pem copied into /usr/local/share/ca-certificates,
   as a guide for "add your CA" would have it). curl (which accepts a partial chain), GnuTLS, Go and Java (Debian's
   copy) then accept what it signs, without the root; ``status --system`` said "not trusted", though it reports such
   an entry in NSS and Java stores ("added by hand: the intermediate ... itself"). It now does in the system store
   too, naming the file that holds it (as it now names the file of a root added by hand).
4. The CA directory's name-constrained intermediate trusted by hand in a store Java reads. Java takes it as a trust
   anchor, and drops an anchor's name constraints: a JSSE client accepts a certificate its key signs for a name
   outside them. ``status`` said "what the intermediate ... signs stays inside its own constraints, which Java
   applies" (true only when the root is the anchor), and the warning about the intermediate's unencrypted key said
   it could sign only names inside them. Both now say Java ignores them there.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from test_audit19_trust import _private_system_store
from test_trust import _java_get, java_client, pki, server, untrusted  # noqa: F401

from certkit.trust import Anchor

from conftest import PASSPHRASE, certkit_env, free_port, require, run_certkit, wait_listening, wait_or_kill
from trust_helpers import client_env, keytool_listing, private_java_home


def _real_java_home() -> Path:
    return Path(os.environ["JAVA_HOME"]) if os.environ.get("JAVA_HOME") else \
        Path(shutil.which("java")).resolve().parent.parent


def _java_env(home: Path, java_home: Path) -> dict[str, str]:
    return certkit_env(HOME=str(home), JAVA_HOME=str(java_home),
                       PATH=f"{java_home / 'bin'}{os.pathsep}{os.environ['PATH']}")


def _json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.stdout.startswith("{"), proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def _keytool(java_home: Path, *args: str | Path) -> None:
    subprocess.run([str(java_home / "bin/keytool"), *map(str, args), "-storepass", "changeit", "-noprompt"],
                   check=True, capture_output=True, timeout=120)


# --- 1: a JDK whose lib/security holds a jssecacerts ---------------------------------------------------------------
def test_a_jdk_with_a_jssecacerts_is_changed_where_java_reads_its_trust(
        pki, server: int, java_client: Path, tmp_path: Path) -> None:  # noqa: F811
    require("keytool")
    java_home = private_java_home(_real_java_home(), tmp_path)
    security = java_home / "lib/security"
    cacerts, jsse = (security / "cacerts").resolve(), security / "jssecacerts"
    shutil.copyfile(cacerts, jsse)  # InstallCert's way: a copy of cacerts, with a company CA in it
    stem = Anchor.from_ca_dir(pki.root).file_stem
    home = tmp_path / "home"
    home.mkdir()
    env = _java_env(home, java_home)
    url = f"https://localhost:{server}/"

    added = run_certkit("trust", "install", "--java", "--ca-dir", pki.root, "--json", env=env)
    assert added.returncode == 0, added.stdout + added.stderr
    got = _java_get(java_home, java_client, url)
    assert "HTTP 200" in got.stdout, got.stdout + got.stderr  # "added" where Java reads it
    stores = {s["location"]: s for s in _json(added)["stores"]}
    assert stores[str(jsse)]["outcome"] == "added" and stores[str(jsse)]["current"] == stem, stores
    assert stores[str(cacerts)]["outcome"] == "skipped" and stores[str(cacerts)]["code"] == "unread", stores
    assert stem not in keytool_listing(cacerts, str(java_home / "bin/keytool"))

    # certkit's copy also in cacerts (where an earlier certkit put it): status names it, uninstall takes out both
    _keytool(java_home, "-importcert", "-alias", stem, "-file", pki.root / "ca.pem", "-keystore", cacerts)
    status = run_certkit("trust", "status", "--java", "--ca-dir", pki.root, "--json", env=env)
    stores = {s["location"]: s for s in _json(status)["stores"]}
    assert stores[str(jsse)]["outcome"] == "trusted", stores
    assert stores[str(cacerts)]["code"] == "unread" and stem in stores[str(cacerts)]["reason"], stores
    removed = run_certkit("trust", "uninstall", "--java", "--ca-dir", pki.root, "--json", env=env)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert {s["location"]: s["removed"] for s in _json(removed)["stores"]} == {str(jsse): [stem], str(cacerts): [stem]}
    assert untrusted(_java_get(java_home, java_client, url).stdout)
    assert stem not in keytool_listing(cacerts, str(java_home / "bin/keytool"))  # nothing comes back once jsse goes
    jsse.unlink()

    # the other way round: jssecacerts made from a cacerts that holds certkit's copy; uninstall takes it out there
    assert run_certkit("trust", "install", "--java", "--ca-dir", pki.root, env=env).returncode == 0
    shutil.copyfile(cacerts, jsse)
    removed = run_certkit("trust", "uninstall", "--java", "--ca-dir", pki.root, "--json", env=env)
    assert {s["location"]: s["outcome"] for s in _json(removed)["stores"]} == {str(jsse): "removed",
                                                                             str(cacerts): "removed"}, removed.stdout
    assert untrusted(_java_get(java_home, java_client, url).stdout)  # not trusted still, behind "removed"



def test_a_trust_store_named_in_java_options_is_said_to_take_the_place_of_the_jdks(
        pki, server: int, java_client: Path, tmp_path: Path) -> None:  # noqa: F811
    require("keytool")
    java_home = private_java_home(_real_java_home(), tmp_path)
    other = tmp_path / "team-truststore.jks"  # a team's own copy of the JDK's cacerts
    shutil.copyfile((java_home / "lib/security/cacerts").resolve(), other)
    home = tmp_path / "home"
    home.mkdir()
    options = f"-Xss1m -Djavax.net.ssl.trustStore={other}"
    added = run_certkit("trust", "install", "--java", "--ca-dir", pki.root, "--json",
                        env={**_java_env(home, java_home), "JAVA_TOOL_OPTIONS": options})
    [store] = _json(added)["stores"]
    assert store["outcome"] == "added", store
    # a Java program started with that environment reads the other store: not the CA certkit added
    got = subprocess.run([str(java_home / "bin/java"), "-cp", str(java_client), "TrustClient",
                          f"https://localhost:{server}/"], env=client_env(JAVA_TOOL_OPTIONS=options),
                         capture_output=True, text=True, timeout=60)
    assert untrusted(got.stdout), got.stdout + got.stderr
    assert any(f"read the trust store {other} (JAVA_TOOL_OPTIONS), not this one" in note for note in store["notes"]), \
        store["notes"]


# --- 2: a trusted root outside its dates -------------------------------------------------------------------------
def _root_and_server(folder: Path, not_before: dt.datetime, not_after: dt.datetime) -> None:
    """A CA directory whose root has these dates (cryptography-made: certkit makes no root outside its dates), and
    a localhost server certificate it signed, valid now."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    folder.mkdir(mode=0o700)
    key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, folder.name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    root = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
            .add_extension(ski, False).sign(key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(name).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
            .sign(key, hashes.SHA256()))
    (folder / "ca.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    (folder / "server.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def test_a_trusted_root_outside_its_dates_is_not_called_harmless_while_java_accepts_it(
        java_client: Path, tmp_path: Path) -> None:  # noqa: F811
    require("keytool")
    require("openssl")
    now = dt.datetime.now(dt.UTC)
    java_home = private_java_home(_real_java_home(), tmp_path)
    cacerts = (java_home / "lib/security/cacerts").resolve()
    home = tmp_path / "home"
    home.mkdir()
    env = _java_env(home, java_home)
    cases = {"expired-root": (now - dt.timedelta(days=400), now - dt.timedelta(days=1)),
             "future-root": (now + dt.timedelta(days=2), now + dt.timedelta(days=400))}
    for name, (not_before, not_after) in cases.items():
        ca = tmp_path / name
        _root_and_server(ca, not_before, not_after)
        # in Java's store as certkit put it there (while the root was valid, or a clock was set wrong)
        _keytool(java_home, "-importcert", "-alias", Anchor.from_ca_dir(ca).file_stem, "-file", ca / "ca.pem",
                 "-keystore", cacerts)
        port = free_port()
        served = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", ca / "server.pem",
                                   "-key", ca / "server.key", "-CAfile", ca / "ca.pem", "-www", "-quiet"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env=client_env())
        try:
            wait_listening(port, served, "openssl s_server")
            url = f"https://localhost:{port}/"
            got = _java_get(java_home, java_client, url)
            assert "HTTP 200" in got.stdout, got.stdout + got.stderr  # Java takes the root without its dates
            # curl refuses, with the root given it alone as its trust store (the machine's store is not touched)
            refused = subprocess.run(["curl", "-sS", "-o", "/dev/null", "--cacert", ca / "ca.pem", url],
                                     env=client_env(), capture_output=True, text=True, timeout=30)
            assert refused.returncode == 60, refused.stderr
        finally:
            served.terminate()
            wait_or_kill(served)
        status = run_certkit("trust", "status", "--java", "--ca-dir", ca, env=env)
        assert status.returncode == 0 and "trusted  java" in status.stdout, status.stdout + status.stderr
        said = " ".join(status.stderr.split())
        assert "nothing it signed is accepted any more" not in said, said
        assert "Java programs, which do not check the dates of a trusted root, accept" in said, said
        if name == "expired-root":
            assert "take it out (certkit trust uninstall)" in said, said
            refusal = run_certkit("trust", "install", "--java", "--ca-dir", ca, env=env)
            assert refusal.returncode == 1 and "would make nothing valid" not in refusal.stderr, refusal.stderr
            assert "Java programs, which do not check the dates of a trusted root" in refusal.stderr, refusal.stderr



# --- 3: the CA directory's intermediate in the system store by hand ----------------------------------------------
def test_an_intermediate_in_the_system_store_by_hand_is_reported_trusted(
        pki, server: int, tmp_path: Path) -> None:  # noqa: F811
    prefix = _private_system_store(tmp_path)  # a private copy of Debian's store, in a mount namespace of its own
    by_hand = Path("/usr/local/share/ca-certificates/our-issuing-ca.crt")
    no_hooks = tmp_path / "no-hooks"
    no_hooks.mkdir()
    added = subprocess.run([*prefix, "sh", "-c", f'cp "$1" {by_hand} && update-ca-certificates --hooksdir "$2"', "sh",
                            str(pki.issuing / "ca.pem"), str(no_hooks)], capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stdout + added.stderr
    got = subprocess.run([*prefix, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", f"https://localhost:{server}/"],
                         env=client_env(), capture_output=True, text=True, timeout=60)
    assert got.stdout == "200", got.stdout + got.stderr  # curl takes the intermediate as its anchor

    home = tmp_path / "home"
    home.mkdir()
    env = certkit_env(HOME=str(home))
    status = subprocess.run([*prefix, sys.executable, "-m", "certkit", "trust", "status", "--system", "--ca-dir",
                             str(pki.issuing), "--json"], env=env, capture_output=True, text=True, timeout=120)
    [store] = _json(status)["stores"]
    assert (store["outcome"], store["current"], store["intermediate_trusted_as"]) == \
        ("trusted", None, [str(by_hand)]), store
    removed = subprocess.run([*prefix, sys.executable, "-m", "certkit", "trust", "uninstall", "--system", "--ca-dir",
                              str(pki.issuing), "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert [s["outcome"] for s in _json(removed)["stores"]] == ["absent"], removed.stdout + removed.stderr
    left = subprocess.run([*prefix, "test", "-f", str(by_hand)], timeout=60)
    assert left.returncode == 0  # not certkit's entry: left alone


# --- 4: a constrained intermediate trusted by hand where Java reads it ---------------------------------------------
def _forged(ca: Path, folder: Path, name: str) -> Path:
    """A server certificate for ``name`` signed with the key of the CA in ``ca`` (outside its name constraints:
    certkit refuses to issue it), and its chain, in ``folder``; the chain file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    issuer = x509.load_pem_x509_certificate((ca / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((ca / "ca-key.pem").read_bytes(), None)  # made --no-passphrase
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer.subject).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256()))
    (folder / "forged.key").write_bytes(leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    chain = folder / "forged-chain.pem"
    chain.write_bytes(leaf.public_bytes(serialization.Encoding.PEM) + (ca / "ca.pem").read_bytes())
    return chain


def test_a_constrained_intermediate_trusted_by_hand_is_not_said_to_keep_its_constraints_for_java(
        pki, java_client: Path, tmp_path: Path) -> None:  # noqa: F811
    require("keytool")
    require("openssl")
    issuing = tmp_path / "constrained-issuing"
    run_certkit("init-ca", "--ca-dir", issuing, "--parent-ca-dir", pki.root, "--name", "Constrained Issuing",
                "--permit-dns", "localhost", "--no-passphrase",
                env=certkit_env(CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE), check=True)
    java_home = private_java_home(_real_java_home(), tmp_path)
    cacerts = (java_home / "lib/security/cacerts").resolve()
    _keytool(java_home, "-importcert", "-alias", "our-issuing", "-file", issuing / "ca.pem", "-keystore", cacerts)
    chain = _forged(issuing, tmp_path, "www.example.com")  # outside the intermediate's constraints (localhost)
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 www.example.com\n")
    port = free_port()
    served = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", chain, "-key",
                               tmp_path / "forged.key", "-www", "-quiet"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=client_env())
    try:
        wait_listening(port, served, "openssl s_server")
        got = subprocess.run([str(java_home / "bin/java"), f"-Djdk.net.hosts.file={hosts}", "-cp", str(java_client),
                              "TrustClient", f"https://www.example.com:{port}/"], env=client_env(),
                             capture_output=True, text=True, timeout=60)
        assert "HTTP 200" in got.stdout, got.stdout + got.stderr  # the intermediate's constraints ignored
    finally:
        served.terminate()
        wait_or_kill(served)
    home = tmp_path / "home"
    home.mkdir()
    status = run_certkit("trust", "status", "--java", "--ca-dir", issuing, "--json", env=_java_env(home, java_home))
    [store] = _json(status)["stores"]
    assert (store["outcome"], store["intermediate_trusted_as"]) == ("trusted", ["our-issuing"]), store
    notes = " ".join(store["notes"])
    assert "stays inside its own constraints, which Java applies" not in notes, notes
    assert 'take the intermediate "Constrained Issuing", trusted here by hand, as a trust anchor and ignore its ' \
           "name constraints" in notes, notes
    # and the warning about its unencrypted key says what that key may sign to Java: any name
    [key_warning] = [w for w in _json(status)["warnings"] if "is not encrypted" in w]
    assert "(and any name to Java programs, which take the intermediate, trusted by hand, as a trust anchor" \
        in key_warning, key_warning
