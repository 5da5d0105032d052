"""certkit revoke and certkit crl: reasons, clear refusals, CRL numbers, PEM and DER, proven by
openssl (crl -verify, verify -crl_check) and by nginx's ssl_crl in real handshakes."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from certkit.store import CADirectory
from certkit.vocabulary import serial_hex

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, run_certkit
from nginx_helper import https_get, nginx

pytestmark = pytest.mark.both_inventories  # every test with a ca_dir runs on PostgreSQL too (team_fixtures)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def serial_of(folder: Path) -> str:
    return serial_hex(load(folder / "cert.pem").serial_number)


@pytest.fixture
def fleet(tmp_path, ca_env, ca_dir):
    run_certkit("issue-server", "localhost", "127.0.0.1", cwd=tmp_path, env=ca_env, check=True)
    for name in ("good", "lost"):
        run_certkit("issue-client", name, cwd=tmp_path, env=ca_env, check=True)
    return tmp_path


def test_revoke_and_crl(fleet, ca_env, ca_dir):
    lost = serial_of(fleet / "lost")
    proc = run_certkit("revoke", fleet / "lost", "--reason", "key-compromise", "--json", env=ca_env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["serial"] == lost and out["revocation_reason"] == "keyCompromise"
    assert CADirectory(ca_dir).inventory.get(lost)["status"] == "revoked"

    crl_pem = fleet / "crl.pem"
    proc = run_certkit("crl", "--out", crl_pem, "--days", "7", "--json", env=ca_env)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["crl_number"] == 1 and info["revoked"] == 1
    crl = x509.load_pem_x509_crl(crl_pem.read_bytes())
    ca_cert = load(ca_dir / "ca.pem")
    assert crl.is_signature_valid(ca_cert.public_key())
    assert crl.issuer == ca_cert.subject
    assert crl.next_update_utc - crl.last_update_utc == dt.timedelta(days=7)
    assert crl.last_update_utc <= dt.datetime.now(dt.UTC)
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki == ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    entry = crl.get_revoked_certificate_by_serial_number(int(lost, 16))
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    # revoked a moment ago, after the backdated thisUpdate: the CRL lists nothing dated after it was issued
    assert entry.revocation_date_utc <= crl.last_update_utc
    assert crl.get_revoked_certificate_by_serial_number(int(serial_of(fleet / "good"), 16)) is None

    lint = subprocess.run(["lint_crl", "lint", "-t", "CRL", "-p", "PKIX", "-s", "WARNING", str(crl_pem)],
                          capture_output=True, text=True, timeout=120)
    assert lint.returncode == 0 and lint.stdout.strip() == "", lint.stdout + lint.stderr
    verified = openssl("crl", "-in", crl_pem, "-noout", "-verify", "-CAfile", ca_dir / "ca.pem")
    assert verified.returncode == 0 and b"verify OK" in verified.stderr + verified.stdout
    for name, expect_ok in (("good", True), ("lost", False), ("localhost", True)):
        purpose = "sslserver" if name == "localhost" else "sslclient"
        proc = openssl("verify", "-x509_strict", "-purpose", purpose, "-crl_check", "-CAfile", ca_dir / "ca.pem",
                       "-CRLfile", crl_pem, fleet / name / "cert.pem")
        assert (proc.returncode == 0) == expect_ok, (name, proc.stdout, proc.stderr)
        if not expect_ok:
            assert b"certificate revoked" in proc.stdout + proc.stderr

    # DER, and the CRL number goes up; the old CRL file is replaced without --force.
    crl_der = fleet / "crl.der"
    assert run_certkit("crl", "--der", "--out", crl_der, env=ca_env).returncode == 0
    der = x509.load_der_x509_crl(crl_der.read_bytes())
    assert der.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2
    assert openssl("crl", "-inform", "DER", "-in", crl_der, "-noout", "-verify", "-CAfile",
                   ca_dir / "ca.pem").returncode == 0
    proc = run_certkit("crl", "--out", crl_pem, env=ca_env)
    assert proc.returncode == 0, proc.stderr
    assert "CRL number 3" in proc.stdout
    # Without --out: PEM on stdout.
    stdout = run_certkit("crl", env=ca_env)
    assert stdout.returncode == 0
    piped = x509.load_pem_x509_crl(stdout.stdout.encode())
    assert piped.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 4


@pytest.mark.parametrize("which", ["newest", "oldest"])
def test_key_compromise_revokes_every_certificate_with_the_key(fleet, ca_env, ca_dir, tmp_path, which):
    """A renewal keeps the key, so after keyCompromise of either one the other must not stay valid
    (it did: 'valid (renewed)', off the CRL, and openssl said OK). A renewal with a new key, and
    other reasons, touch nothing else."""
    copies = {}
    for step in ("first", "kept", "rekeyed"):
        if step != "first":
            run_certkit("renew", fleet / "localhost", *(["--rekey"] if step == "rekeyed" else []), env=ca_env,
                        check=True)
        copies[step] = tmp_path / f"{step}.pem"
        copies[step].write_bytes((fleet / "localhost" / "cert.pem").read_bytes())
    run_certkit("revoke", fleet / "good", "--reason", "superseded", env=ca_env, check=True)
    target = copies["kept"] if which == "newest" else copies["first"]
    proc = run_certkit("revoke", target, "--reason", "key-compromise", "--json", env=ca_env)
    assert proc.returncode == 0, proc.stderr
    other = copies["first"] if which == "newest" else copies["kept"]
    assert json.loads(proc.stdout)["also_revoked"] == [serial_hex(load(other).serial_number)]
    inventory = CADirectory(ca_dir).inventory
    for step, status in (("first", "revoked"), ("kept", "revoked"), ("rekeyed", "valid")):
        row = inventory.get(serial_hex(load(copies[step]).serial_number))
        assert row["status"] == status, (step, row)
    assert inventory.get(serial_of(fleet / "lost"))["status"] == "valid"  # superseded revoked nothing more
    crl = run_certkit("crl", "--out", tmp_path / "crl.pem", env=ca_env)
    assert crl.returncode == 0, crl.stderr
    for step, accepted in (("first", False), ("kept", False), ("rekeyed", True)):
        proc = openssl("verify", "-crl_check", "-CAfile", ca_dir / "ca.pem", "-CRLfile", tmp_path / "crl.pem",
                       copies[step])
        assert (proc.returncode == 0) == accepted, (step, proc.stdout, proc.stderr)
    human = run_certkit("revoke", fleet / "lost", "--reason", "keyCompromise", env=ca_env)
    assert "also" not in human.stdout and "refuse it:" in human.stdout


def test_revoke_refusals(fleet, ca_env, ca_dir, tmp_path):
    inventory = CADirectory(ca_dir).inventory
    good = serial_of(fleet / "good")
    assert run_certkit("revoke", good, env=ca_env).returncode == 0
    twice = run_certkit("revoke", good, "--reason", "superseded", env=ca_env)
    assert_clean_error(twice, f"The certificate {good} was already revoked")
    assert inventory.get(good)["revocation_reason"] == "unspecified"
    unknown = run_certkit("revoke", "DEADBEEF00112233", env=ca_env)
    assert_clean_error(unknown, "No certificate of this CA matches 'DEADBEEF00112233'")
    by_name = run_certkit("revoke", "localhost", env=ca_env)  # names are not accepted: too easy to mistype
    assert_clean_error(by_name, "a bundle folder or a serial")
    reason = run_certkit("revoke", fleet / "lost", "--reason", "certificateHold", env=ca_env)
    assert_clean_error(reason, "not a revocation reason", code=2)
    assert "keyCompromise" in reason.stderr
    other = dict(ca_env, CERTKIT_CA_DIR=str(tmp_path / "other"))
    run_certkit("init-ca", env=other, check=True)
    run_certkit("issue-client", "mallory", cwd=fleet, env=other, check=True)
    foreign = run_certkit("revoke", fleet / "mallory", env=ca_env)
    assert_clean_error(foreign, "was not issued by this CA")
    no_ca = run_certkit("revoke", good, env=dict(ca_env, CERTKIT_CA_DIR=str(tmp_path / "none")))
    assert_clean_error(no_ca, "No CA in")
    assert [r["serial"] for r in inventory.query(status="revoked")] == [good]
    # crl refuses to overwrite a file that is not a CRL of this CA, and takes no CRL number.
    victim = fleet / "notes.txt"
    victim.write_text("precious\n")
    refused = run_certkit("crl", "--out", victim, env=ca_env)
    assert_clean_error(refused, "not a CRL of this CA")
    assert victim.read_text() == "precious\n"
    run_certkit("crl", "--out", fleet / "other-crl.pem", env=other, check=True)
    assert_clean_error(run_certkit("crl", "--out", fleet / "other-crl.pem", env=ca_env), "not a CRL of this CA")
    assert run_certkit("crl", "--out", victim, "--force", env=ca_env).returncode == 0
    crl = x509.load_pem_x509_crl(victim.read_bytes())
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
    wrong_pw = run_certkit("crl", "--out", fleet / "x.pem", env=dict(ca_env, CERTKIT_CA_PASSPHRASE="nope"))
    assert_clean_error(wrong_pw, "passphrase does not decrypt")
    assert not (fleet / "x.pem").exists()


def test_revoke_says_what_it_was_given(fleet, ca_env, ca_dir, tmp_path):
    """A certificate revoke cannot find is named for what it is: this CA's own certificate, one signed
    by this CA but unrecorded, a CA directory, or another CA's; never 'not issued by this CA' when it was."""
    from certkit.ca import CA

    inventory = CADirectory(ca_dir).inventory
    count = inventory.count()
    own = run_certkit("revoke", ca_dir / "ca.pem", env=ca_env)
    assert_clean_error(own, "is this CA's own certificate, not one it issued: a root CA is not revoked, it is "
                            "removed from trust stores (certkit trust uninstall)")
    # Signed with this CA's key, but not in its inventory (as after restoring an older inventory).
    ca = CADirectory(ca_dir).load(PASSPHRASE.encode())
    unrecorded = tmp_path / "unrecorded.pem"
    unrecorded.write_bytes(CA(ca.cert, ca.key).issue_client("ghost").cert_pem)
    proc = run_certkit("revoke", unrecorded, env=ca_env)
    assert_clean_error(proc, "is signed by this CA, but this CA's inventory has no record of it")
    assert "not issued by this CA" not in proc.stderr
    # An intermediate's CA directory, and its certificate given to the intermediate itself.
    secret = tmp_path / "pp"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    run_certkit("init-ca", "--ca-dir", tmp_path / "i6", "--parent-ca-dir", ca_dir, "--parent-passphrase-file", secret,
                "--name", "Issuing 6", env=ca_env, check=True)
    folder = run_certkit("revoke", tmp_path / "i6", env=ca_env)
    assert_clean_error(folder, "is a CA directory, not a certificate bundle; give a bundle folder or a serial of a "
                               "certificate this CA issued. This CA issued that CA's certificate: to revoke it, give "
                               f"its certificate, {tmp_path / 'i6' / 'ca.pem'} (or its serial, ")  # its own parent
    assert "or a name" not in folder.stderr
    itself = run_certkit("revoke", "--ca-dir", tmp_path / "i6", tmp_path / "i6" / "ca.pem", env=ca_env)
    assert_clean_error(itself, "is this CA's own certificate, not one it issued: an intermediate CA is revoked by "
                               "the CA above it (certkit test root)")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_clean_error(run_certkit("revoke", empty, env=ca_env), "holds no cert.pem; give a bundle folder or a serial.")
    other = dict(ca_env, CERTKIT_CA_DIR=str(tmp_path / "other"))
    run_certkit("init-ca", "--name", "Other Root", env=other, check=True)
    run_certkit("issue-client", "mallory", cwd=tmp_path, env=other, check=True)
    assert_clean_error(run_certkit("revoke", tmp_path / "mallory", env=ca_env),
                       "was not issued by this CA: its issuer is Other Root.")
    # The CA's own certificate is what the intermediate's parent revokes, as before.
    run_certkit("revoke", tmp_path / "i6" / "ca.pem", "--reason", "cACompromise", env=ca_env, check=True)
    assert inventory.count() == count + 1 and [r["kind"] for r in inventory.query(status="revoked")] == ["ca"]


def test_ed25519_and_rsa_ca_crls(tmp_path, ca_env):
    for key_type in ("ed25519", "rsa-2048"):
        env = dict(ca_env, CERTKIT_CA_DIR=str(tmp_path / key_type))
        run_certkit("init-ca", "--key-type", key_type, env=env, check=True)
        run_certkit("issue-client", f"c-{key_type}", cwd=tmp_path, env=env, check=True)
        run_certkit("revoke", tmp_path / f"c-{key_type}", "--reason", "cessationOfOperation", env=env, check=True)
        run_certkit("crl", "--out", tmp_path / f"{key_type}.crl", env=env, check=True)
        proc = openssl("crl", "-in", tmp_path / f"{key_type}.crl", "-noout", "-verify", "-CAfile",
                       tmp_path / key_type / "ca.pem")
        assert proc.returncode == 0, proc.stderr
        proc = openssl("verify", "-crl_check", "-CAfile", tmp_path / key_type / "ca.pem", "-CRLfile",
                       tmp_path / f"{key_type}.crl", tmp_path / f"c-{key_type}" / "cert.pem")
        assert proc.returncode != 0 and b"certificate revoked" in proc.stdout + proc.stderr


def test_nginx_refuses_revoked_client(fleet, ca_env, ca_dir):
    run_certkit("revoke", fleet / "lost", "--reason", "keyCompromise", env=ca_env, check=True)
    run_certkit("crl", "--out", fleet / "crl.pem", env=ca_env, check=True)
    tls = f"""
        ssl_certificate {fleet / 'localhost' / 'fullchain.pem'};
        ssl_certificate_key {fleet / 'localhost' / 'privkey.pem'};
        ssl_client_certificate {ca_dir / 'ca.pem'};
        ssl_verify_client on;
        ssl_crl {fleet / 'crl.pem'};
    """
    with nginx(fleet, tls) as (port, error_log):
        status, body = https_get(port, ca_dir / "ca.pem", (fleet / "good" / "fullchain.pem",
                                                           fleet / "good" / "privkey.pem"))
        assert status == 200 and "verify=SUCCESS" in body and "CN=good" in body
        status, body = https_get(port, ca_dir / "ca.pem", (fleet / "lost" / "fullchain.pem",
                                                           fleet / "lost" / "privkey.pem"))
        assert status == 400 and "SSL certificate error" in body
        assert "certificate revoked" in error_log.read_text()


def test_nginx_two_tier_crls(tmp_path, ca_env, ca_dir):
    """With ssl_crl nginx checks every CA in the chain, so it needs the root's CRL and the intermediate's."""
    parent_env = dict(ca_env, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--ca-dir", tmp_path / "inter", "--parent-ca-dir", ca_dir, "--name", "Issuing",
                env=parent_env, check=True)
    env = dict(ca_env, CERTKIT_CA_DIR=str(tmp_path / "inter"))
    run_certkit("issue-server", "localhost", cwd=tmp_path, env=env, check=True)
    for name in ("good", "lost"):
        run_certkit("issue-client", name, cwd=tmp_path, env=env, check=True)
    said = run_certkit("revoke", tmp_path / "lost", "--reason", "keyCompromise", env=env, check=True)
    assert said.stdout.splitlines()[-1] == "Publish a new CRL so servers refuse it: certkit crl --out crl.pem"
    # The intermediate revoked by the root while $CERTKIT_CA_DIR names the intermediate (docs/two-tier-pki.md):
    # the CRL to publish is the root's, so the hint names it.
    spare = tmp_path / "spare"
    run_certkit("init-ca", "--ca-dir", spare, "--parent-ca-dir", ca_dir, "--name", "Spare", env=parent_env, check=True)
    said = run_certkit("revoke", "--ca-dir", ca_dir, spare / "ca.pem", "--reason", "cACompromise", env=env, check=True)
    assert said.stdout.splitlines()[-1] == \
        f"Publish a new CRL so servers and clients refuse it: certkit crl --ca-dir {ca_dir} --out crl.pem"
    run_certkit("crl", "--out", tmp_path / "inter.crl", env=env, check=True)
    run_certkit("crl", "--out", tmp_path / "root.crl", env=ca_env, check=True)
    (tmp_path / "crls.pem").write_bytes((tmp_path / "root.crl").read_bytes() + (tmp_path / "inter.crl").read_bytes())
    proc = openssl("verify", "-crl_check_all", "-CAfile", ca_dir / "ca.pem", "-untrusted", tmp_path / "good" /
                   "chain.pem", "-CRLfile", tmp_path / "crls.pem", tmp_path / "good" / "cert.pem")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tls = _two_tier_pki_md_nginx({"/etc/nginx/tls/api.example.internal/": f"{tmp_path / 'localhost'}/",
                                  "/etc/nginx/tls/root-ca.pem": str(ca_dir / "ca.pem"),
                                  "/etc/nginx/tls/crls.pem": str(tmp_path / "crls.pem")})
    with nginx(tmp_path, tls) as (port, error_log):
        good = https_get(port, ca_dir / "ca.pem", (tmp_path / "good" / "fullchain.pem", tmp_path / "good" /
                                                   "privkey.pem"))
        assert good[0] == 200 and "verify=SUCCESS" in good[1]
        lost = https_get(port, ca_dir / "ca.pem", (tmp_path / "lost" / "fullchain.pem", tmp_path / "lost" /
                                                   "privkey.pem"))
        assert lost[0] == 400
        assert "certificate revoked" in error_log.read_text()


def _two_tier_pki_md_nginx(paths: dict[str, str]) -> str:
    """The ssl_ directives of docs/two-tier-pki.md's nginx server, its paths replaced by ``paths``."""
    import re

    from conftest import REPO

    [block] = re.findall(r"^```nginx\n(.*?)^```", (REPO / "docs" / "two-tier-pki.md").read_text(), re.S | re.M)
    directives = [line.split("#")[0].strip() for line in block.splitlines() if line.strip().startswith("ssl_")]
    assert len(directives) == 6, block
    text = "\n".join(directives)
    for old, new in paths.items():
        text = text.replace(old, new)
    assert "/etc/" not in text, text
    return text


def _saved_ca(path, *, days_ago: int, days: int) -> dict:
    """A CA made ``days_ago`` days ago to live ``days`` days, and the environment to use it."""
    from certkit.ca import CA

    ca = CA.create("certkit short-lived CA", not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago),
                   days=days)
    CADirectory(path).save_new(ca, PASSPHRASE.encode())
    return certkit_env(CERTKIT_CA_DIR=str(path), CERTKIT_CA_PASSPHRASE=PASSPHRASE)


def test_expired_ca_signs_no_crl(tmp_path):
    env = _saved_ca(tmp_path / "ca", days_ago=10, days=5)
    for args in (("--out", tmp_path / "crl.pem"), ()):
        proc = run_certkit("crl", *args, env=env)
        assert_clean_error(proc, "expired on")
        assert proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "crl.pem").exists()


def test_crl_next_update_is_capped_at_the_ca_expiry(tmp_path):
    env = _saved_ca(tmp_path / "ca", days_ago=1, days=11)
    ca_cert = load(tmp_path / "ca" / "ca.pem")
    proc = run_certkit("crl", "--out", tmp_path / "crl.pem", "--days", "30", "--json", env=env, check=True)
    crl = x509.load_pem_x509_crl((tmp_path / "crl.pem").read_bytes())
    assert crl.next_update_utc == ca_cert.not_valid_after_utc
    assert json.loads(proc.stdout)["next_update"] == ca_cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    (warning,) = proc.stderr.strip().splitlines()
    assert warning.startswith("Warning: nextUpdate is ") and "expires" in warning
    text = openssl("crl", "-in", tmp_path / "crl.pem", "-noout", "-nextupdate").stdout.decode()
    assert ca_cert.not_valid_after_utc.strftime("%b %e %H:%M:%S %Y") in text
    proc = run_certkit("crl", "--out", tmp_path / "crl.pem", "--days", "7", env=env, check=True)
    assert "Warning" not in proc.stderr
    crl = x509.load_pem_x509_crl((tmp_path / "crl.pem").read_bytes())
    assert crl.next_update_utc - crl.last_update_utc == dt.timedelta(days=7)


@pytest.mark.parametrize("kind", ["issue-server", "issue-client"])
def test_ca_compromise_is_for_ca_certificates_only(tmp_path: Path, ca_dir: Path, ca_env: dict, kind: str) -> None:
    """cACompromise on a leaf says something false (its CA's key leaked) and is refused by the
    CA/Browser Forum's CRL profile: refused, nothing revoked; keyCompromise is what a leaf gets."""
    run_certkit(kind, "leaf.example", "--out", tmp_path / "leaf", env=ca_env, check=True)
    proc = run_certkit("revoke", tmp_path / "leaf", "--reason", "cACompromise", env=ca_env)
    assert_clean_error(proc, "revokes a CA certificate")
    listed = json.loads(run_certkit("list", "--json", env=ca_env, check=True).stdout)["certificates"]
    assert [c["status"] for c in listed] == ["valid"]
    run_certkit("revoke", tmp_path / "leaf", "--reason", "keyCompromise", env=ca_env, check=True)


def test_serial_prefixes_as_typed(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    """A prefix of 8 or more digits names the certificate, an odd number of digits included (it was
    padded to whole octets, and matched nothing); a shorter one that matches says it is too short."""
    run_certkit("issue-server", "p.example", "--out", tmp_path / "p", env=ca_env, check=True)
    serial = json.loads(run_certkit("list", "--json", env=ca_env, check=True).stdout)["certificates"][0]["serial"]
    proc = run_certkit("revoke", serial[:7], env=ca_env)
    assert_clean_error(proc, "too short a serial prefix: give at least 8 hex digits")
    proc = run_certkit("revoke", serial[:9].lower(), "--json", env=ca_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["serial"] == serial


def test_out_dash_is_standard_output_and_a_trailing_slash_a_folder(fleet, ca_env, ca_dir):
    """'-' means standard output to every --out that writes one file: crl wrote a file named '-' (and said it
    wrote the CRL "to -"); a path ending with a slash names a folder, which a CRL is not (crl wrote a file
    'd'); and renew --out - made a folder named '-' holding a copy of the private key."""
    proc = run_certkit("crl", "--out", "-", cwd=fleet, env=ca_env)
    assert proc.returncode == 0, proc.stderr
    crl = x509.load_pem_x509_crl(proc.stdout.encode())
    assert crl.is_signature_valid(load(ca_dir / "ca.pem").public_key())
    assert not (fleet / "-").exists()
    proc = run_certkit("crl", "--out", "d/", cwd=fleet, env=ca_env)
    assert_clean_error(proc, "--out 'd/' ends with a slash, so it names a folder; a CRL is one file", code=2)
    assert not (fleet / "d").exists()
    proc = run_certkit("renew", "good", "--out", "-", cwd=fleet, env=ca_env)
    assert_clean_error(proc, "--out - means standard output, where a bundle folder cannot go", code=2)
    assert not (fleet / "-").exists()
