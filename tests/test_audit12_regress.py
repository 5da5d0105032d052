"""The twelfth round's re-audit of round eleven (regress17), each as a class:

1. a bundle.p12 password file the rule of a new secret refuses (a NUL byte, several lines) is refused by
   ``--install-timer``, as each of its runs would refuse it; a timer installed before the rule renews every
   bundle without a bundle.p12, and fails only those holding one, saying why;
2. a root self-signed with SHA-1 is not "damaged" to ``certkit check`` (its key made the signature, as
   ``openssl verify`` and ``certkit verify`` say), and an intermediate signed with SHA-1 is a warning that
   names the digest OpenSSL refuses;
3. a CA directory whose name the file system took (up to 255 bytes) opens, for every command and the
   library; creating one keeps room for the temporary sibling folder;
4. a cert.pem the file system will not reach (a loop of links) is said in its own words by a single
   renewal, as bulk renewal says it, never "deleted by hand";
5. ``issued_pkcs12`` and ``check_password`` refuse a str that is no UTF-8 text as ``save_new`` does
   (InvalidArgument), not with Python's UnicodeEncodeError;
6. a manifest's ``days`` with a no-break space or U+2028 around the number is refused, as ``--days`` is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, run_certkit


def _secret(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def _env(tmp_path: Path, ca: str = "ca") -> dict[str, str]:
    return certkit_env(CERTKIT_CA_DIR=str(tmp_path / ca), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path))


def _serials(env: dict) -> dict[str, str]:
    listed = json.loads(run_certkit("list", "--json", env=env, check=True).stdout)["certificates"]
    return {row["names"][0].split(":", 1)[1]: row["serial"] for row in listed if row["status"] == "valid"}


@pytest.mark.parametrize("content,why", [(b"ab\0cd", "NUL byte"), (b"one\ntwo\n", "several lines")])
def test_a_p12_password_file_a_run_would_refuse_is_refused_at_install(tmp_path: Path, content, why) -> None:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Timer CA", env=env, check=True)
    units = tmp_path / "units"
    proc = run_certkit("renew", "--install-timer", "--unit-dir", units, "--passphrase-file",
                       _secret(tmp_path / "pass", PASSPHRASE.encode()), "--p12-password-file",
                       _secret(tmp_path / "p12pass", content), env=env)
    assert_clean_error(proc, why)
    assert not units.exists() or not any(units.iterdir())


@pytest.mark.parametrize("content", [b"ab\0cd", b"one\ntwo\n"])
def test_an_old_timers_refused_p12_password_fails_only_the_p12_bundles(tmp_path: Path, content) -> None:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Timer CA", env=env, check=True)
    run_certkit("issue-server", "plain.example", "--days", "10", "--out", tmp_path / "plain", env=env, check=True)
    run_certkit("issue-server", "p12.example", "--days", "10", "--p12", "--out", tmp_path / "p12",
                env=env | {"CERTKIT_P12_PASSWORD": "a good one"}, check=True)
    before = _serials(env)
    old_p12 = (tmp_path / "p12" / "bundle.p12").read_bytes()
    password_file = _secret(tmp_path / "p12pass", content)
    proc = run_certkit("renew", "--expiring", "30d", "--days", "90", "--p12-password-file", password_file, "--json",
                       env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    data = json.loads(proc.stdout)
    outcomes = {row["domains"][0]: row for row in data["certificates"]}
    assert data["renewed"] == 1 and data["failed"] == 1, data
    assert outcomes["plain.example"]["outcome"] == "renewed", outcomes
    failed = outcomes["p12.example"]
    assert failed["outcome"] == "failed" and "bundle.p12 cannot be written again" in failed["error"], failed
    assert "It is not renewed" in failed["error"], failed
    after = _serials(env)
    assert after["p12.example"] == before["p12.example"] and after["plain.example"] != before["plain.example"]
    assert (tmp_path / "p12" / "bundle.p12").read_bytes() == old_p12  # the failed bundle is as it was
    # openssl reads the renewed plain bundle's certificate, which the CA signed
    verified = openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", tmp_path / "ca" / "ca.pem",
                       tmp_path / "plain" / "cert.pem")
    assert verified.returncode == 0, verified.stderr
    # a single renewal, asked by a person, refuses the file before anything is done
    single = run_certkit("renew", "p12.example", "--p12-password-file", password_file, env=env)
    assert_clean_error(single, "p12pass")
    assert _serials(env)["p12.example"] == before["p12.example"]


def _sha1_root_ca(tmp_path: Path) -> tuple[Path, Path]:
    """A CA directory whose root openssl made, self-signed with SHA-1, saved through the library; its
    passphrase file."""
    from certkit.ca import CA
    from certkit.store import CADirectory

    key = tmp_path / "k.pem"
    assert openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key).returncode == 0
    made = openssl("req", "-x509", "-new", "-key", key, "-sha1", "-subj", "/CN=SHA1 Root", "-days", "400",
                   "-out", tmp_path / "ca.pem", "-addext", "basicConstraints=critical,CA:TRUE",
                   "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    assert made.returncode == 0, made.stderr
    cert = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA1)
    CADirectory(tmp_path / "cadir").save_new(
        CA(cert, serialization.load_pem_private_key(key.read_bytes(), None)), PASSPHRASE.encode())
    return tmp_path / "cadir", _secret(tmp_path / "pp", PASSPHRASE.encode())


def test_a_sha1_self_signed_root_is_no_damage_to_check(tmp_path: Path) -> None:
    cadir, passphrase = _sha1_root_ca(tmp_path)
    env = certkit_env(CERTKIT_CA_DIR=str(cadir), HOME=str(tmp_path))
    checked = run_certkit("check", "--passphrase-file", passphrase, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "damaged" not in checked.stdout + checked.stderr
    run_certkit("issue-server", "s.example", "--passphrase-file", passphrase, "--out", tmp_path / "s", env=env,
                check=True)
    # the peers agree: the root's own signature is no part of a chain's check
    assert openssl("verify", "-CAfile", cadir / "ca.pem", tmp_path / "s" / "cert.pem").returncode == 0
    assert run_certkit("verify", "--purpose", "server", tmp_path / "s" / "cert.pem", env=env).returncode == 0


def test_an_intermediate_signed_with_sha1_is_a_warning_of_check(tmp_path: Path) -> None:
    """An intermediate whose parent signed it with SHA-1 (made by hand, as an old PKI's): every chain it
    sends is refused by OpenSSL at its default level, and check says so; it is no damage."""
    from certkit.ca import CA
    from certkit.store import CADirectory

    root = CA.create("Sound Root")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = serialization.Encoding.PEM
    (tmp_path / "root.pem").write_bytes(root.cert.public_bytes(pem))
    _secret(tmp_path / "root-key.pem", root.key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                              serialization.NoEncryption()))
    _secret(tmp_path / "inter-key.pem", key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    (tmp_path / "ext.cnf").write_text("basicConstraints=critical,CA:TRUE,pathlen:0\n"
                                      "keyUsage=critical,digitalSignature,keyCertSign,cRLSign\n"
                                      "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    made = openssl("req", "-new", "-key", tmp_path / "inter-key.pem", "-subj", "/CN=SHA1 Inter", "-out",
                   tmp_path / "inter.csr")
    assert made.returncode == 0, made.stderr
    made = openssl("x509", "-req", "-sha1", "-in", tmp_path / "inter.csr", "-CA", tmp_path / "root.pem", "-CAkey",
                   tmp_path / "root-key.pem", "-set_serial", "0x51a1", "-days", "300", "-extfile",
                   tmp_path / "ext.cnf", "-out", tmp_path / "inter.pem")
    assert made.returncode == 0, made.stderr
    cert = x509.load_pem_x509_certificate((tmp_path / "inter.pem").read_bytes())
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA1)
    CADirectory(tmp_path / "inter").save_new(CA(cert, key, parents=[root.cert]), PASSPHRASE.encode())
    checked = run_certkit("check", "--passphrase-file", _secret(tmp_path / "pp", PASSPHRASE.encode()),
                          env=certkit_env(CERTKIT_CA_DIR=str(tmp_path / "inter"), HOME=str(tmp_path)))
    out = checked.stdout
    assert "damaged" not in out and "not signed by the key" not in out, out
    warning = next(line for line in out.splitlines() if line.startswith("WARNING") and " chain " in line)
    assert "SHA1" in warning and "SHA1 Inter" in warning, out
    # what the warning says, OpenSSL does: a chain through that intermediate fails at its default level
    refused = openssl("verify", "-auth_level", "1", "-CAfile", tmp_path / "root.pem", tmp_path / "inter.pem")
    assert refused.returncode != 0, refused.stdout


def test_a_ca_directory_the_file_system_took_opens(tmp_path: Path) -> None:
    from certkit.errors import UnsafeOutputPath
    from certkit.store import CADirectory

    long_name = "c" * 240
    env = _env(tmp_path, "short")
    run_certkit("init-ca", "--name", "Long Named", env=env, check=True)
    os.rename(tmp_path / "short", tmp_path / long_name)
    env = _env(tmp_path, long_name)
    listed = run_certkit("list", env=env)
    assert listed.returncode == 0 and "No certificates issued yet" in listed.stdout, listed.stdout + listed.stderr
    run_certkit("issue-server", "a.example", "--out", tmp_path / "a", env=env, check=True)
    assert CADirectory(tmp_path / long_name).load(PASSPHRASE.encode()).cert.subject.rfc4514_string() == \
        "CN=Long Named"
    # making one of that name needs a temporary sibling of a longer name: refused before anything is made
    made = run_certkit("init-ca", "--name", "Too Long", env=_env(tmp_path, "d" * 240))
    assert_clean_error(made, "room for a temporary name")
    assert not (tmp_path / ("d" * 240)).exists()
    # a name no file system takes is said, whatever is asked
    with pytest.raises(UnsafeOutputPath, match="at most 255 bytes"):
        CADirectory(tmp_path / ("e" * 256))


def test_a_cert_pem_behind_a_loop_of_links_is_said_in_a_single_renewal(tmp_path: Path) -> None:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Loop CA", env=env, check=True)
    run_certkit("issue-server", "a.example", "--days", "10", "--out", tmp_path / "a", env=env, check=True)
    serial = _serials(env)["a.example"]
    (tmp_path / "a" / "cert.pem").rename(tmp_path / "a" / "real.pem")
    (tmp_path / "a" / "cert.pem").symlink_to("cert.pem")  # ELOOP
    single = run_certkit("renew", serial, env=env)
    assert_clean_error(single, "Too many levels of symbolic links")
    assert "by hand" not in single.stderr
    bulk = run_certkit("renew", "--expiring", "30d", env=env)
    assert bulk.returncode == 1 and "Too many levels of symbolic links" in bulk.stdout and "by hand" not in bulk.stdout
    assert _serials(env) == {"a.example": serial}
    # a revocation needs no folder: it still revokes
    assert run_certkit("revoke", serial, env=env).returncode == 0


@pytest.mark.parametrize("password", ["\ud800x", "x\udfff", "\udc80"])
def test_a_p12_password_str_that_is_no_text_is_invalid_argument(password) -> None:
    from certkit.ca import CA
    from certkit.errors import InvalidArgument
    from certkit.pkcs12 import check_password, issued_pkcs12

    with pytest.raises(InvalidArgument, match="not UTF-8 text"):
        check_password(password)
    with pytest.raises(InvalidArgument, match="not UTF-8 text"):
        issued_pkcs12(CA.create("P12 Lib").issue_server(["a.example"]), password)
    assert check_password("café") == "café".encode()


@pytest.mark.parametrize("days", ["\u00a030", "30\u2028", "\u200330", "30\u3000"])
def test_a_manifest_days_with_a_blank_of_another_kind_is_refused(tmp_path: Path, days: str) -> None:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Days CA", env=env, check=True)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"kind": "server", "names": "d.example", "days": days}) + "\n"
                        + json.dumps({"kind": "server", "names": "e.example", "days": " 30\t"}) + "\n")
    proc = run_certkit("issue-batch", manifest, "--out-dir", tmp_path / "out", env=env)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "line 1" in proc.stderr and "digits 0 to 9" in proc.stderr and "line 2" not in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert _serials(env) == {}
