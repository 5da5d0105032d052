"""Audit round ten, unusual input (report badinput10), each as a class:

1. a name looked up (``list --name``, ``renew NAME``, ``renew --name``) is put in the form issuing stores it in:
   a U-label as its A-label, without a final dot or surrounding blanks; a bulk renewal by name renewed
   nothing, silently, for a name typed as it was typed when issued;
2. a subject value (a client's CN) is kept as typed, in whichever Unicode form (servers compare the bytes), and
   found by list in either form; verify of a name in another form than the CN's says so (regress13: an NFC
   rewrite made verify refuse the very name issued);
4. a default CA name from a login name holding a tab is made without it;
5. options that can have no effect are refused: ``crl --force`` without ``--out``, ``list --expiring`` with a
   status other than valid, ``renew --exec-timeout`` without a hook;
6. sign-csr's ``dropped`` line cuts a long value.
"""

from __future__ import annotations

import json
import unicodedata

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, run_certkit

NFC, NFD = "Jos\u00e9", "Jose\u0301"


@pytest.fixture
def env(tmp_path):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE, HOME=str(tmp_path))
    run_certkit("init-ca", "--name", "Inputs CA", env=env, check=True)
    return env


def _listed(env, *args) -> list[str]:
    return [row["serial"] for row in json.loads(run_certkit("list", "--json", *args, env=env,
                                                             check=True).stdout)["certificates"]]


# --- 1. names looked up as issuing stores them -----------------------------------------------------------------
@pytest.mark.parametrize(("issued", "typed"), [
    ("café.example", "café.example"), ("café.example", "CAFÉ.example"), ("café.example", "xn--caf-dma.example"),
    ("r.example.", "r.example."), ("r.example", "r.example."), ("r.example", " r.example "),
    ("bücher.café.example", "*.café.example"),
])
def test_a_name_is_found_as_it_was_typed_when_issued(env, tmp_path, issued, typed):
    made = json.loads(run_certkit("issue-server", issued, "--out", tmp_path / "b", "--json", env=env,
                                  check=True).stdout)
    assert _listed(env, "--name", typed) == [made["serial"]]
    bulk = json.loads(run_certkit("renew", "--expiring", "36500d", "--name", typed, "--json", env=env,
                                  check=True).stdout)
    assert bulk["renewed"] == 1, bulk
    if "*" not in typed:
        again = run_certkit("renew", typed, "--out", tmp_path / "c", env=env)  # the successor, by its name
        assert again.returncode == 0, again.stderr


def test_an_email_domain_is_found_in_its_unicode_form(env, tmp_path):
    made = json.loads(run_certkit("issue-client", "bob", "--email", "bob@exämple.com", "--out", tmp_path / "b",
                                  "--json", env=env, check=True).stdout)
    assert _listed(env, "--name", "bob@exämple.com") == [made["serial"]]


# --- 2. subject values in NFC -------------------------------------------------------------------------------------
@pytest.mark.parametrize("typed", [NFC, NFD, "\uf900\u212b"])  # composed, decomposed, singletons NFC would map
def test_a_client_name_is_kept_as_typed_and_found_in_either_form(env, tmp_path, typed):
    from cryptography import x509

    run_certkit("issue-client", typed, "--out", tmp_path / "c", env=env, check=True)
    cert = x509.load_pem_x509_certificate((tmp_path / "c" / "cert.pem").read_bytes())
    assert [attr.value for attr in cert.subject] == [typed]
    for name in {typed, unicodedata.normalize("NFC", typed), unicodedata.normalize("NFD", typed)}:
        assert len(_listed(env, "--name", name)) == 1, name
    verified = run_certkit("verify", tmp_path / "c", "--purpose", "client", "--name", typed, env=env)
    assert verified.returncode == 0, verified.stdout
    other = unicodedata.normalize("NFD" if unicodedata.is_normalized("NFC", typed) else "NFC", typed)
    if other != typed:  # a name in another form than the CN's: said so (a server mapping the CN compares bytes)
        verified = run_certkit("verify", tmp_path / "c", "--purpose", "client", "--name", other, env=env)
        assert verified.returncode == 1 and "its CN is the same text in another Unicode form" in verified.stdout


def test_a_csr_common_name_is_kept_as_the_requester_wrote_it(env, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NFD)])).sign(key, hashes.SHA256())
    (tmp_path / "n.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    run_certkit("sign-csr", tmp_path / "n.csr", "--client", "--out", tmp_path / "nc", env=env, check=True)
    cert = x509.load_pem_x509_certificate((tmp_path / "nc" / "cert.pem").read_bytes())
    assert cert.subject == csr.subject


def test_verify_says_a_cn_in_another_unicode_form(env, tmp_path):
    """A certificate made elsewhere (signed by this CA's key) whose CN is decomposed: servers compare bytes."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from certkit import CADirectory

    ca = CADirectory(tmp_path / "ca").load(PASSPHRASE)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NFD)]))
            .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca.key, hashes.SHA256()))
    path = tmp_path / "nfd.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    proc = run_certkit("verify", path, "--purpose", "client", "--name", NFC, "--ca-file", tmp_path / "ca" / "ca.pem",
                       env=env)
    assert proc.returncode == 1
    assert "another Unicode form (the CN in NFD, the name given in NFC)" in proc.stdout + proc.stderr, proc.stdout


# --- 4. the default CA name --------------------------------------------------------------------------------------
def test_a_default_ca_name_drops_what_a_common_name_cannot_hold(tmp_path):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), USER="ops\tadmin", LOGNAME="ops\tadmin",
                      HOME=str(tmp_path))
    proc = run_certkit("init-ca", "--no-passphrase", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "certkit CA opsadmin@" in json.loads(proc.stdout)["subject"]


# --- 5. options that can have no effect ------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "fragment"), [
    (("crl", "--force"), "--force replaces an existing --out file"),
    (("crl", "--force", "--out", "-"), "--force replaces an existing --out file"),
    (("list", "--status", "revoked", "--expiring", "30d"), "cannot go with --status revoked"),
    (("list", "--status", "expired", "--expiring", "30d"), "cannot go with --status expired"),
    (("renew", "--expiring", "30d", "--exec-timeout", "5"), "--exec-timeout limits a hook"),
])
def test_an_option_that_can_have_no_effect_is_refused(env, args, fragment):
    proc = run_certkit(*args, env=env)
    assert_clean_error(proc, fragment, code=2)


def test_renew_of_one_certificate_with_a_timeout_and_no_hook_is_refused(env, tmp_path):
    run_certkit("issue-server", "a.example", "--out", tmp_path / "a", env=env, check=True)
    proc = run_certkit("renew", tmp_path / "a", "--exec-timeout", "5", env=env)
    assert_clean_error(proc, "--exec-timeout limits a hook", code=2)
    assert _listed(env) and len(_listed(env)) == 1  # nothing renewed


# --- 6. sign-csr's dropped line -------------------------------------------------------------------------------------
def test_a_long_dropped_value_is_cut(env, tmp_path):
    import warnings

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bob"),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "A" * 20000, _validate=False)])
    csr = tmp_path / "big.csr"
    csr.write_bytes(x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
                    .public_bytes(serialization.Encoding.PEM))
    proc = run_certkit("sign-csr", csr, "--client", "--out", tmp_path / "o", env=env)
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.strip().startswith("dropped"))
    assert len(line) < 300 and "(20002 characters)" in line, line
