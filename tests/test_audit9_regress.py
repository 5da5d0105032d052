"""Audit round nine, gaps in round eight's fixes (report regress11), each as a class:

1. no output file goes over a private key, whichever CA recorded it: ``crl --out --force`` refuses a file
   holding one (a bundle's privkey.pem, a jsonl output, a user's own PEM or DER key), and the jsonl, k8s and
   tar outputs refuse a file of any bundle folder (another CA's too), even with --force;
2. "another CA's certificate was replaced" is said by the CA's key, not its name: every CA made without
   --name on one host has the same name (``certkit CA user@host``);
3. a file holding one certificate twice (``cat cert.pem fullchain.pem``) is one certificate to revoke/renew;
4. a current folder whose path is not UTF-8 stops only the commands that record paths made from it;
6. the library's ``CA.renew`` names an IPv4-mapped address it carries over, as the command does;
7. a wrong passphrase read from a file with a byte-order mark says so in ``check`` and ``init-ca --parent-*``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PASSPHRASE, REPO, assert_clean_error, certkit_env, run_certkit


@pytest.fixture
def two_cas(tmp_path):
    """Two CAs of one name (as init-ca without --name makes them), and a third of another."""
    env = certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    for folder, name in (("a", "Same Name CA"), ("b", "Same Name CA"), ("c", "Other CA")):
        run_certkit("init-ca", "--name", name, "--ca-dir", tmp_path / folder, env=env, check=True)
    return tmp_path, env


def _issue(env, ca: Path, *args) -> dict:
    return json.loads(run_certkit("issue-server", *args, "--ca-dir", ca, "--json", env=env, check=True).stdout)


# --- 1. no output over a private key --------------------------------------------------------------------------
def test_crl_force_never_goes_over_a_private_key_of_any_ca(two_cas):
    tmp, env = two_cas
    a, c = tmp / "a", tmp / "c"
    _issue(env, a, "d.example", "--out", tmp / "ddir")
    _issue(env, a, "j.example", "--format", "jsonl", "--out", tmp / "keys.jsonl")
    _issue(env, a, "k.example", "--format", "k8s", "--out", tmp / "secret.yaml")
    _issue(env, a, "t.example", "--format", "tar", "--out", tmp / "bundle.tar")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    (tmp / "mine.der").write_bytes(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    (tmp / "enc.der").write_bytes(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                    serialization.BestAvailableEncryption(b"pass phrase")))
    (tmp / "notes.txt").write_text("a header\n" + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()).decode())
    for password in ("pass phrase", ""):  # a PKCS#12 file of any name holds its key, encrypted or not
        subprocess.run(["openssl", "pkcs12", "-export", "-in", str(tmp / "ddir" / "cert.pem"), "-inkey",
                        str(tmp / "ddir" / "privkey.pem"), "-out", str(tmp / f"p{len(password)}.pfx"), "-passout",
                        f"pass:{password}"], check=True, capture_output=True)
    for target in ("ddir/privkey.pem", "keys.jsonl", "secret.yaml", "bundle.tar", "mine.der", "enc.der", "notes.txt",
                   "p11.pfx", "p0.pfx"):
        before = (tmp / target).read_bytes()
        proc = run_certkit("crl", "--out", tmp / target, "--force", "--ca-dir", c, env=env)
        assert_clean_error(proc, "private key" if target != "ddir/privkey.pem" else "bundle folder")
        assert (tmp / target).read_bytes() == before, target
    # A file that holds no key is replaced with --force, as before; and the CRL number was not used up.
    (tmp / "old.txt").write_text("not a crl\n")
    proc = run_certkit("crl", "--out", tmp / "old.txt", "--force", "--ca-dir", c, "--json", env=env)
    assert proc.returncode == 0 and json.loads(proc.stdout)["crl_number"] == 1, proc.stderr
    assert b"BEGIN X509 CRL" in (tmp / "old.txt").read_bytes()


@pytest.mark.parametrize("fmt", ["jsonl", "k8s", "tar"])
@pytest.mark.parametrize("name", ["privkey.pem", "cert.pem", "fullchain.pem"])
def test_an_output_file_never_goes_over_another_cas_bundle_file(two_cas, fmt, name):
    tmp, env = two_cas
    _issue(env, tmp / "a", "e.example", "--out", tmp / "edir")
    before = (tmp / "edir" / name).read_bytes()
    proc = run_certkit("issue-server", "zz.example", "--format", fmt, "--out", tmp / "edir" / name, "--force",
                       "--ca-dir", tmp / "c", env=env)
    assert_clean_error(proc, f"is the {name} of a bundle folder")
    assert (tmp / "edir" / name).read_bytes() == before
    listed = run_certkit("list", "--ca-dir", tmp / "c", "--json", env=env, check=True).stdout
    assert "zz.example" not in listed  # refused before anything was signed


# --- 2. another CA is told by its key ------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["folder", "jsonl"])
def test_a_namesake_cas_certificate_replaced_is_said(two_cas, fmt):
    tmp, env = two_cas
    out = tmp / ("app" if fmt == "folder" else "app.jsonl")
    first = _issue(env, tmp / "a", "app.example", "--format", fmt, "--out", out)
    second = _issue(env, tmp / "b", "app.example", "--format", fmt, "--out", out, "--force")
    said = json.dumps(second)
    assert f"certificate {first['serial']} of another CA (CN=Same Name CA)" in said, said
    # Replacing its own certificate is not "another CA's".
    third = _issue(env, tmp / "b", "app.example", "--format", fmt, "--out", out, "--force")
    assert "of another CA" not in json.dumps(third), third


# --- 3. one certificate twice is one certificate ---------------------------------------------------------------
def test_a_file_holding_one_certificate_twice_is_revoked_and_renewed(ca_dir, ca_env, tmp_path):
    issued = _issue(ca_env, ca_dir, "twice.example", "--out", tmp_path / "a")
    twice = tmp_path / "leaf-then-fullchain.pem"
    twice.write_bytes((tmp_path / "a" / "cert.pem").read_bytes() + (tmp_path / "a" / "fullchain.pem").read_bytes())
    proc = run_certkit("renew", twice, "--out", tmp_path / "a2", env=ca_env)
    assert proc.returncode == 0, proc.stderr
    proc = run_certkit("revoke", twice, env=ca_env)
    assert proc.returncode == 0 and issued["serial"] in proc.stdout, (proc.stdout, proc.stderr)
    # Two different leaves in one file are still refused.
    other = _issue(ca_env, ca_dir, "other.example", "--out", tmp_path / "b")
    both = tmp_path / "both.pem"
    both.write_bytes((tmp_path / "a2" / "cert.pem").read_bytes() + (tmp_path / "b" / "cert.pem").read_bytes())
    assert_clean_error(run_certkit("revoke", both, env=ca_env), "2 end-entity certificates")
    assert other["serial"] not in run_certkit("list", "--status", "revoked", env=ca_env, check=True).stdout


# --- 4. a current folder that is not UTF-8 -----------------------------------------------------------------
def test_a_non_utf8_current_folder_stops_only_what_records_paths(ca_dir, ca_env, tmp_path):
    _issue(ca_env, ca_dir, "cwd.example", "--out", tmp_path / "leaf")
    odd = os.path.join(os.fsencode(tmp_path), b"par\xff")
    os.mkdir(odd)
    env = dict(ca_env, HOME=str(tmp_path), PYTHONPATH=str(REPO))

    def run(*args):
        return subprocess.run([sys.executable, "-m", "certkit", *map(str, args)], cwd=odd, env=env,
                              capture_output=True, text=True, timeout=120)

    for args in (("list",), ("list", "--help"), ("issue-server", "--help"), ("inspect", tmp_path / "leaf"),
                 ("verify", tmp_path / "leaf", "--purpose", "server"), ("check",), ("trust", "status")):
        proc = run(*args)
        assert "not UTF-8" not in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert proc.returncode == 0 or args == ("trust", "status"), (args, proc.returncode, proc.stderr)
    proc = run("issue-server", "rel.example", "--out", "rel")
    assert_clean_error(proc, "the current folder's path is")
    assert os.listdir(odd) == []


# --- 6. the library's renew names an IPv4-mapped address --------------------------------------------------------
def test_library_renew_names_an_ipv4_mapped_address_it_carries_over():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from certkit import CA

    ca = CA.create("Mapped Test CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    mapped = ipaddress.IPv6Address("::ffff:192.0.2.9")
    old = (x509.CertificateBuilder()  # as certkit issued it before it refused such addresses
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mapped.example")]))
           .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
           .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
           .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
           .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("mapped.example"), x509.IPAddress(mapped)]),
                          critical=False)
           .sign(ca.key, hashes.SHA256()))
    renewed = ca.renew(old, key=key)
    assert any("::ffff:c000:209, the IPv4 address 192.0.2.9 written as IPv6" in n for n in renewed.notes), \
        renewed.notes
    assert mapped in renewed.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
        .get_values_for_type(x509.IPAddress)  # kept, as certified: said, not dropped
    plain = ca.renew(ca.issue_server(["plain.example"]))
    assert not [n for n in plain.notes if "IPv4-mapped" in n or "written as IPv6" in n], plain.notes


# --- 7. the byte-order-mark hint in check and init-ca --parent-passphrase-file ----------------------------------
def test_a_wrong_passphrase_from_a_file_with_a_mark_says_so_everywhere(ca_dir, ca_env, tmp_path):
    bom = tmp_path / "bom"
    bom.write_bytes(b"\xef\xbb\xbf" + PASSPHRASE.encode() + b"\n")
    bom.chmod(0o600)
    env = {k: v for k, v in ca_env.items() if k != "CERTKIT_CA_PASSPHRASE"}
    proc = run_certkit("check", "--passphrase-file", bom, env=env)
    assert proc.returncode != 0 and "starts with a byte-order mark" in proc.stdout, proc.stdout
    (tmp_path / "new.pass").write_text("another pass phrase\n")
    (tmp_path / "new.pass").chmod(0o600)
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "inter", "--parent-ca-dir", ca_dir, "--name", "I2",
                       "--parent-passphrase-file", bom, "--passphrase-file", tmp_path / "new.pass", env=env)
    assert_clean_error(proc, "starts with a byte-order mark")
    assert not (tmp_path / "inter").exists()
