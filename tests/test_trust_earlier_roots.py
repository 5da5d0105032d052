"""The system store and a root made again from the CA's key, its earlier root put into the store by hand.

A CA's ca.pem made again with the same name and key (``init-ca --reuse-key``, or ``openssl x509 -signkey`` to extend
a root's dates) is the same CA to every client: what it signs chains to the earlier root too. With that earlier root
in the system store by other means than certkit (a file of the user's in the folder of local anchors, a bundle built
with it, or a file in OpenSSL's folder found by its subject hash), OpenSSL accepted what the CA signs, yet ``trust
status`` said "not trusted": the system store only compared certkit-named files. It now looks in what the store's
clients read for the CA's subject and key. Proven with ``openssl verify`` reading the same bundle or folder; a private
layout (its own folder, bundle and a refresh that does nothing), so the machine's store is never read or changed.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
from test_audit36_trust4 import _new_ca, _renewed_from_its_key, _store, _trust

from conftest import require, run_certkit
from trust_helpers import nss_listing, nss_verifies


def _openssl_accepts(leaf: Path, *where: str) -> bool:
    return subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", "sslserver", *where, str(leaf)],
                          capture_output=True, timeout=60).returncode == 0


@pytest.mark.parametrize("placed", ["anchors", "bundle", "hashed"])
def test_an_earlier_root_of_the_cas_key_added_by_hand_is_seen(tmp_path: Path, placed: str) -> None:
    from certkit.trust import Anchor, SystemLayout, SystemStore, status, warnings

    require("openssl")
    ca, anchors, hashed, bundle = tmp_path / "ca", tmp_path / "anchors", tmp_path / "certs", tmp_path / "bundle.pem"
    anchors.mkdir()
    hashed.mkdir()
    earlier = _new_ca(ca)
    _renewed_from_its_key(ca, tmp_path / "leaf")
    leaf = tmp_path / "leaf/cert.pem"
    other = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                            "-nodes", "-keyout", str(tmp_path / "o.key"), "-subj", "/CN=Dev CA", "-days", "9"],
                           capture_output=True, check=True, timeout=60).stdout  # the CA's name, another key
    bundle.write_bytes(other)
    (hashed / "other.pem").write_bytes(other)
    if placed == "anchors":  # cp ca.pem /usr/local/share/ca-certificates/devca-2026.crt; update-ca-certificates
        (anchors / "devca-2026.crt").write_bytes(earlier)
        bundle.write_bytes(other + earlier)
    elif placed == "bundle":  # a bundle built from elsewhere (another folder, a distribution's list)
        bundle.write_bytes(other + earlier)
    else:  # cp ca.pem /etc/ssl/certs/devca.pem; openssl rehash /etc/ssl/certs
        (hashed / "devca.pem").write_bytes(earlier)
    subprocess.run(["openssl", "rehash", str(hashed)], check=True, capture_output=True, timeout=60)
    store = SystemStore(SystemLayout("Private", anchors, ".crt", ("true",), ("true",), bundle, "coreutils",
                                     hashed=hashed), {"PATH": "/usr/bin:/bin"})
    anchor = Anchor.from_ca_dir(ca)

    # The real peer: OpenSSL accepts what the CA signs through the earlier root alone, from what the store holds.
    assert _openssl_accepts(leaf, "-CAfile", str(bundle)) == (placed != "hashed")
    assert _openssl_accepts(leaf, "-CApath", str(hashed), "-no-CAfile") == (placed == "hashed")
    (result,) = status(anchor, [store])
    said = result.to_dict()
    assert (said["outcome"], said["current"]) == ("trusted", None), said
    (name,) = said["same_key_trusted_as"]
    if placed == "anchors":
        assert name == "devca-2026.crt"
        assert shlex.join(["rm", "-f", str(anchors / "devca-2026.crt")]) in result.state.same_key[0].remove_with
    elif placed == "bundle":
        assert name == str(bundle)
    else:
        assert name.startswith(str(hashed / "devca.pem")) and "by its subject hash" in name
    (note,) = [n for n in said["notes"] if "another certificate of this CA (the same name and key)" in n]
    assert note.startswith(name)
    told = " ".join(warnings(anchor, [result]))
    # the unencrypted key's warning says how to take the CA out: that certificate too
    assert "or take the CA out: the other certificates of this CA (the same name and key): " in told, told
    assert (result.state.same_key[0].remove_with or "with the store's own tool") in told

    # Taken out (and the store rebuilt): OpenSSL no longer accepts, and status says so.
    (anchors / "devca-2026.crt").unlink(missing_ok=True)
    (hashed / "devca.pem").unlink(missing_ok=True)
    bundle.write_bytes(other)
    for link in hashed.glob("*.[0-9]"):
        link.unlink()
    subprocess.run(["openssl", "rehash", str(hashed)], check=True, capture_output=True, timeout=60)
    assert not _openssl_accepts(leaf, "-CAfile", str(bundle))
    assert not _openssl_accepts(leaf, "-CApath", str(hashed), "-no-CAfile")
    (result,) = status(anchor, [store])
    assert (result.to_dict()["outcome"], result.to_dict()["same_key_trusted_as"]) == ("not trusted", [])


def test_nss_refuses_a_root_made_again_with_the_earlier_ones_serial_and_says_what_to_do(tmp_path: Path) -> None:
    """``openssl x509 -signkey`` without ``-set_serial`` keeps the serial: NSS keeps one certificate per issuer and
    serial, so certutil -A failed with SEC_ERROR_REUSED_ISSUER_AND_SERIAL, which install passed on with no advice, and
    status called the earlier root "another certkit CA". Now install names the entry and the command; after it,
    install adds the new root and NSS's own path building (vfychain) accepts what the CA signs."""
    require("certutil")
    require("vfychain")
    home, ca, db = tmp_path / "home", tmp_path / "ca", tmp_path / "home/.pki/nssdb"
    db.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True, timeout=60)
    _new_ca(ca)
    assert _trust(home, ca, "install").returncode == 0
    (old_nick,) = [line.rsplit(None, 1)[0].strip() for line in nss_listing(db).splitlines() if "certkit-" in line]
    subprocess.run(["openssl", "x509", "-in", str(ca / "ca.pem"), "-signkey", str(ca / "ca-key.pem"), "-days", "4000",
                    "-out", str(ca / "ca.pem.new")], check=True, capture_output=True, timeout=60)
    (ca / "ca.pem.new").replace(ca / "ca.pem")
    status = _trust(home, ca, "status")
    assert f"an earlier certificate of this CA also trusted: {old_nick} (CN=Dev CA)" in status.stdout, status.stdout
    assert "another certkit CA" not in status.stdout

    refused = _trust(home, ca, "install", "--json")
    assert refused.returncode == 1
    store = _store(refused)
    assert store["outcome"] == "failed"
    assert "SEC_ERROR" not in store["reason"] and "one certificate per issuer and serial number" in store["reason"]
    assert f"holds '{old_nick}', an earlier certificate of this CA (the same name and key" in store["reason"]
    command = store["reason"].split("Take that entry out (", 1)[1].split(") and run again", 1)[0]
    assert command == shlex.join(["certutil", "-D", "-d", f"sql:{db}", "-n", old_nick])
    assert [line for line in nss_listing(db).splitlines() if "certkit-" in line] == [
        line for line in nss_listing(db).splitlines() if old_nick in line]  # nothing changed
    subprocess.run(shlex.split(command), check=True, capture_output=True, timeout=60)
    assert _store(_trust(home, ca, "install", "--json"))["outcome"] == "added"
    run_certkit("issue-server", "localhost", "--ca-dir", ca, "--out", tmp_path / "leaf", check=True)
    assert nss_verifies(db, tmp_path / "leaf/cert.pem").returncode == 0
