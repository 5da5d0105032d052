"""Audit 36, trust: what a store trusts of a CA whose root was made again from its key.

A root certificate made again with the same name and key (``init-ca --reuse-key`` with a token's key, or ``openssl
x509 -signkey`` to extend a root's dates) is the same CA to every client: a certificate its key signs chains to the
earlier root as well, which has the same subject and key. With the earlier root still trusted (certkit's copy of it,
from an install before the renewal), ``trust status`` called the CA "not trusted", and ``trust uninstall`` said
"removed" with no word that clients go on trusting the CA through it; the key warning was left out. Proven with NSS's
own path building (vfychain) and OpenSSL: the store now says ``trusted`` through that certificate, names it
(``same_key_trusted_as``) with the command that takes it out, and after that command the CA is not trusted.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest
from test_audit20_trust import _java_env, _real_java_home
from test_probe import openssl_server
from test_trust import java_client, untrusted  # noqa: F401

from conftest import certkit_env, require, run_certkit
from trust_helpers import keytool_listing, nss_listing, nss_verifies, private_java_home, run_trust_client


def _trust(home: Path, ca: Path, *args: str, store: str = "--nss", env=None) -> subprocess.CompletedProcess:
    proc = run_certkit("trust", *args, store, "--ca-dir", str(ca), env=env or certkit_env(HOME=str(home)))
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _new_ca(ca: Path) -> bytes:
    run_certkit("init-ca", "--ca-dir", ca, "--name", "Dev CA", "--permit-dns", "localhost", "--permit-ip",
                "127.0.0.1/32", "--no-passphrase", check=True)
    return (ca / "ca.pem").read_bytes()


def _renewed_from_its_key(ca: Path, leaf: Path) -> None:
    """ca.pem made again from the CA's own key (same subject and extensions, new serial and dates), and a server
    certificate for localhost issued with it into ``leaf``."""
    subprocess.run(["openssl", "x509", "-in", str(ca / "ca.pem"), "-signkey", str(ca / "ca-key.pem"), "-days", "4000",
                    "-set_serial", "0x5a5a5a5a5a5a5a5a", "-out", str(ca / "ca.pem.new")], check=True,
                   capture_output=True, timeout=60)
    (ca / "ca.pem.new").replace(ca / "ca.pem")
    run_certkit("issue-server", "localhost", "127.0.0.1", "--ca-dir", ca, "--out", leaf, check=True)


def _taken_out_by(note: str, tool: str) -> None:
    """The command the note names (after "take it out too to stop that: "), run."""
    command = shlex.split(note.split("take it out too to stop that: ", 1)[1])
    assert Path(command[0]).name == tool, command
    subprocess.run(command, check=True, capture_output=True, timeout=120)


def _server(leaf: Path):
    """openssl s_server -www of ``leaf``'s certificate and chain on a free loopback port."""
    return openssl_server("-cert", leaf / "cert.pem", "-cert_chain", leaf / "fullchain.pem", "-key",
                          leaf / "privkey.pem")


def _store(proc: subprocess.CompletedProcess) -> dict:
    assert proc.stdout.startswith("{"), proc.stdout + proc.stderr
    (store,) = json.loads(proc.stdout)["stores"]
    return store


def test_a_root_made_again_from_its_key_is_trusted_through_the_earlier_one(tmp_path: Path) -> None:
    require("certutil")
    require("vfychain")
    home, ca, db = tmp_path / "home", tmp_path / "ca", tmp_path / "home/.pki/nssdb"
    db.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True, timeout=60)
    earlier = _new_ca(ca)
    assert _trust(home, ca, "install").returncode == 0
    old_nick = next(line.rsplit(None, 1)[0].strip() for line in nss_listing(db).splitlines() if "certkit-" in line)
    _renewed_from_its_key(ca, tmp_path / "leaf")
    assert (ca / "ca.pem").read_bytes() != earlier
    leaf = tmp_path / "leaf/cert.pem"
    # The real peers: NSS and OpenSSL accept what the CA signs through the earlier root alone.
    assert nss_verifies(db, leaf).returncode == 0
    (tmp_path / "earlier.pem").write_bytes(earlier)
    assert subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "earlier.pem"), str(leaf)],
                          capture_output=True, timeout=60).returncode == 0

    status = _trust(home, ca, "status", "--json")
    assert status.returncode == 0
    store = _store(status)
    assert (store["outcome"], store["current"], store["same_key_trusted_as"]) == ("trusted", None, [old_nick])
    text = _trust(home, ca, "status")
    assert text.stdout.split("\n")[2].startswith("trusted  nss"), text.stdout
    assert f"{old_nick} is another certificate of this CA (the same name and key)" in text.stdout
    assert "is not encrypted" in text.stderr  # its key is trusted: the warning is given
    # the earlier root is this CA, not "another certkit CA" that may be in use elsewhere
    assert f"an earlier certificate of this CA (the same name and key), {old_nick}, is also trusted" in text.stderr
    assert "another certkit CA is also trusted" not in text.stderr

    # install adds the new root (the earlier one may expire first); uninstall takes it out and says the CA stays
    assert _store(_trust(home, ca, "install", "--json"))["outcome"] == "added"
    removed = _trust(home, ca, "uninstall", "--json")
    store = _store(removed)
    assert (store["outcome"], store["same_key_trusted_as"]) == ("removed", [old_nick])
    (note,) = [n for n in store["notes"] if "another certificate of this CA" in n]
    assert nss_verifies(db, leaf).returncode == 0
    _taken_out_by(note, "certutil")
    assert nss_verifies(db, leaf).returncode != 0
    store = _store(_trust(home, ca, "status", "--json"))
    assert (store["outcome"], store["same_key_trusted_as"]) == ("not trusted", [])


@pytest.mark.parametrize("added_by", ["certkit", "hand"])
def test_a_java_store_trusts_a_root_made_again_from_its_key_through_the_earlier_one(
        tmp_path: Path, java_client: Path, added_by: str) -> None:  # noqa: F811
    home, ca = tmp_path / "home", tmp_path / "ca"
    home.mkdir()
    java_home = private_java_home(_real_java_home(), tmp_path)
    env = _java_env(home, java_home)
    keytool, cacerts = str(java_home / "bin/keytool"), (java_home / "lib/security/cacerts").resolve()
    _new_ca(ca)
    if added_by == "certkit":
        assert _trust(home, ca, "install", store="--java", env=env).returncode == 0
        (old_alias,) = [a for a in keytool_listing(cacerts, keytool) if a.startswith("certkit-")]
    else:  # imported by hand before the renewal, under a name of the user's
        old_alias = "devca-2026"
        subprocess.run([keytool, "-importcert", "-noprompt", "-alias", old_alias, "-file", str(ca / "ca.pem"),
                        "-keystore", str(cacerts), "-storepass", "changeit"], check=True, capture_output=True,
                       timeout=120)
    _renewed_from_its_key(ca, tmp_path / "leaf")
    with _server(tmp_path / "leaf") as port:
        assert "HTTP 200" in run_trust_client(java_home, java_client, port).stdout  # JSSE: through the earlier root
        status = _trust(home, ca, "status", "--json", store="--java", env=env)
        assert "Warning: Parsed" not in status.stderr  # the JDK's own CAs are read quietly (a negative serial)
        store = _store(status)
        assert (store["outcome"], store["current"], store["same_key_trusted_as"]) == ("trusted", None, [old_alias])
        store = _store(_trust(home, ca, "install", "--json", store="--java", env=env))
        assert (store["outcome"], store["same_key_trusted_as"]) == ("added", [old_alias])
        store = _store(_trust(home, ca, "uninstall", "--json", store="--java", env=env))
        assert (store["outcome"], store["same_key_trusted_as"]) == ("removed", [old_alias])
        assert "HTTP 200" in run_trust_client(java_home, java_client, port).stdout
        (note,) = [n for n in store["notes"] if "another certificate of this CA" in n]
        if added_by == "certkit":
            _taken_out_by(note, "keytool")
        else:
            assert "with the store's own tool, to stop that (certkit did not add it)" in note
            subprocess.run([keytool, "-delete", "-alias", old_alias, "-keystore", str(cacerts), "-storepass",
                            "changeit"], check=True, capture_output=True, timeout=120)
        assert untrusted(run_trust_client(java_home, java_client, port).stdout)
        store = _store(_trust(home, ca, "status", "--json", store="--java", env=env))
        assert (store["outcome"], store["same_key_trusted_as"]) == ("not trusted", [])
