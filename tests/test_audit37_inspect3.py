"""inspect, verify, probe and check, audit round thirty-seven: what these commands say against openssl's words.

inspect showed no certificatePolicies, policyConstraints, inhibitAnyPolicy, authorityInfoAccess (OCSP, caIssuers)
or cRLDistributionPoints, no extension it does not know, and nothing of a CSR's attributes (challengePassword,
unstructuredName) or of the extensions it requests beyond its names and EKU: each is now a line named as
``openssl x509 -text`` / ``openssl req -text`` name it, and a key of ``--json``.

A PKCS#12 truststore (no key: keytool -importcert -storetype PKCS12, openssl pkcs12 -export -nokeys) was "certificates
and a key, encrypted", with "give the PEM file beside it (cert.pem, fullchain.pem)"; a JKS or a .p12 given as probe
--key or serve --key was named with no way to take the key out.

check, with a leaf copied over ca.pem, said "OK validity valid until <the leaf's date>"; and it found nothing of an
inventory row deleted by hand (a bundle folder this CA signed whose serial no row holds, a renewal of a serial no
row holds).

verify (and probe, which judges a server's chain with it) gave cryptography's own words as the reason of a chain
OpenSSL refuses for a CA's rule: "the verifier refused it: ... path length constraint violated", "... keyUsage.
keyCertSign must be asserted in a CA certificate", "one of its names is outside a CA's name constraints": now which
CA, what it allows and OpenSSL's reason ("path length constraint exceeded", "invalid CA certificate"), or the name.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import assert_clean_error, new_ca, require, run_certkit, serve_refused_at_start

EXTFILE = """basicConstraints=CA:FALSE
subjectAltName=DNS:a.example
certificatePolicies=2.23.140.1.2.1,@pol
authorityInfoAccess=OCSP;URI:http://ocsp.example/,caIssuers;URI:http://ca.example/ca.der
crlDistributionPoints=URI:http://crl.example/ca.crl
1.2.3.4.5=critical,ASN1:UTF8String:hello
1.2.3.4.6=ASN1:UTF8String:x
[pol]
policyIdentifier=1.3.6.1.4.1.99999.1
CPS.1=http://cps.example/
userNotice.1=@notice
[notice]
explicitText="Hello notice"
"""
REQ_CONFIG = """[req]
distinguished_name=dn
attributes=attrs
req_extensions=rext
prompt=no
[dn]
CN=dev1
[attrs]
challengePassword=s3cretpw
unstructuredName=Acme Unit 7
[rext]
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:dev1.example
certificatePolicies=2.23.140.1.2.1
1.2.3.4.7=critical,ASN1:NULL
"""


def _ossl(*args, cwd: Path) -> str:
    return subprocess.run(["openssl", *map(str, args)], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """ca.pem (a root with policyConstraints and inhibitAnyPolicy), leaf.pem (openssl x509 -req -extfile with
    policies, AIA, CRLDP and two private extensions, one critical), r.csr (openssl req with attributes)."""
    top = tmp_path_factory.mktemp("audit37-inspect3")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _ossl("req", "-x509", *ec, "-keyout", "ca.key", "-subj", "/CN=TCA", "-days", "30", "-out", "ca.pem",
          "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
          "-addext", "policyConstraints=requireExplicitPolicy:0,inhibitPolicyMapping:1",
          "-addext", "inhibitAnyPolicy=2", cwd=top)
    (top / "ext.cnf").write_text(EXTFILE)
    _ossl("req", "-new", *ec, "-keyout", "leaf.key", "-subj", "/CN=a.example", "-out", "leaf.csr", cwd=top)
    _ossl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-extfile", "ext.cnf",
          "-days", "10", "-out", "leaf.pem", cwd=top)
    (top / "req.cnf").write_text(REQ_CONFIG)
    _ossl("req", "-new", *ec, "-keyout", "r.key", "-config", "req.cnf", "-out", "r.csr", cwd=top)
    return top


def _item(path: Path) -> dict:
    return json.loads(run_certkit("inspect", path, "--json", check=True).stdout)["items"][0]


def test_inspect_shows_policies_aia_crldp_and_unknown_extensions_as_openssl_x509_text(made):
    ossl = _ossl("x509", "-in", "leaf.pem", "-noout", "-text", cwd=made)
    text = run_certkit("inspect", made / "leaf.pem", check=True).stdout
    for said in ("Policy: 2.23.140.1.2.1", "Policy: 1.3.6.1.4.1.99999.1", "CPS: http://cps.example/",
                 "Explicit Text: Hello notice", "OCSP - URI:http://ocsp.example/",
                 "CA Issuers - URI:http://ca.example/ca.der", "URI:http://crl.example/ca.crl", "1.2.3.4.5: critical"):
        assert said in ossl, ossl  # openssl's own words, which certkit's line repeats
    assert "  policies      Policy: 2.23.140.1.2.1; Policy: 1.3.6.1.4.1.99999.1 (CPS: http://cps.example/, " \
           "User Notice: Explicit Text: Hello notice)" in text, text
    assert "  AIA           OCSP - URI:http://ocsp.example/, CA Issuers - URI:http://ca.example/ca.der" in text, text
    assert "  CRL dist.     URI:http://crl.example/ca.crl" in text, text
    assert "  extension     1.2.3.4.5, critical (unknown to certkit; value 0c0568656c6c6f)" in text, text
    assert "  extension     1.2.3.4.6 (unknown to certkit; value 0c0178)" in text, text
    item = _item(made / "leaf.pem")
    assert [p["policy"] for p in item["certificate_policies"]["policies"]] == ["2.23.140.1.2.1",
                                                                              "1.3.6.1.4.1.99999.1"], item
    assert item["authority_info_access"] == {"ocsp": ["URI:http://ocsp.example/"],
                                             "ca_issuers": ["URI:http://ca.example/ca.der"], "critical": False}
    assert item["crl_distribution_points"] == {"points": ["URI:http://crl.example/ca.crl"], "critical": False}
    assert item["unknown_extensions"] == [{"oid": "1.2.3.4.5", "critical": True, "value_hex": "0c0568656c6c6f"},
                                          {"oid": "1.2.3.4.6", "critical": False, "value_hex": "0c0178"}]
    assert item["policy_constraints"] is None and item["inhibit_any_policy"] is None


def test_inspect_shows_policy_constraints_and_inhibit_any_policy_of_a_ca(made):
    ossl = _ossl("x509", "-in", "ca.pem", "-noout", "-text", cwd=made)
    assert "Require Explicit Policy:0, Inhibit Policy Mapping:1" in ossl, ossl
    text = run_certkit("inspect", made / "ca.pem", check=True).stdout
    assert "  policy constr Require Explicit Policy:0, Inhibit Policy Mapping:1 (X509v3 Policy Constraints)" \
        in text, text
    assert "  inhibit any   2 (X509v3 Inhibit Any Policy)" in text, text
    item = _item(made / "ca.pem")
    assert item["policy_constraints"] == {"require_explicit_policy": 0, "inhibit_policy_mapping": 1,
                                          "critical": False}, item
    assert item["inhibit_any_policy"] == {"skip_certs": 2, "critical": False}, item
    assert item["certificate_policies"] is None and item["unknown_extensions"] == [], item


def test_inspect_names_every_other_extension_once_as_openssl_does(made):
    """nsCertType was shown on its line and again as 'unknown to certkit'; policyMappings and nsComment, which
    OpenSSL names, were 'unknown'; issuerAltName (cryptography reads it) was not shown at all."""
    (made / "odd.cnf").write_text("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n"
                                  "nsCertType=sslCA\nnsComment=\"hello\"\npolicyMappings=critical,1.2.3.4:1.2.3.5\n"
                                  "issuerAltName=email:ca@example.com\n")
    _ossl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "odd.key",
          "-subj", "/CN=odd", "-out", "odd.csr", cwd=made)
    _ossl("x509", "-req", "-in", "odd.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-extfile", "odd.cnf", "-days", "10",
          "-out", "odd.pem", cwd=made)
    ossl = _ossl("x509", "-in", "odd.pem", "-noout", "-text", cwd=made)
    for name in ("Netscape Comment", "X509v3 Policy Mappings: critical", "X509v3 Issuer Alternative Name"):
        assert name in ossl, ossl
    text = run_certkit("inspect", made / "odd.pem", check=True).stdout
    assert "unknown to certkit" not in text and "2.16.840.1.113730.1.1 " not in text, text
    for line in ("  nsCertType    sslCA (Netscape certificate type)",
                 "  extension     Netscape Comment (2.16.840.1.113730.1.13)\n",
                 "  extension     X509v3 Policy Mappings (2.5.29.33), critical\n",
                 "  extension     X509v3 Issuer Alternative Name (2.5.29.18)\n"):
        assert line in text, text
    item = _item(made / "odd.pem")
    assert item["unknown_extensions"] == [], item
    assert {e["oid"]: e["critical"] for e in item["other_extensions"]} == {
        "2.16.840.1.113730.1.13": False, "2.5.29.33": True, "2.5.29.18": False}, item


def test_inspect_of_a_csr_shows_its_attributes_and_requested_extensions_as_openssl_req_text(made):
    ossl = _ossl("req", "-in", "r.csr", "-noout", "-text", cwd=made)
    assert "unstructuredName" in ossl and "Requested Extensions" in ossl, ossl
    text = run_certkit("inspect", made / "r.csr", check=True).stdout
    assert "  attribute     unstructuredName: Acme Unit 7" in text, text
    assert "  attribute     challengePassword: (set; not shown here" in text, text
    assert "s3cretpw" not in text  # a secret: named, never printed
    for line in ("X509v3 Basic Constraints: critical: CA:FALSE", "X509v3 Key Usage: critical: digitalSignature",
                 "X509v3 Extended Key Usage: serverAuth", "X509v3 Subject Alternative Name: DNS:dev1.example",
                 "X509v3 Certificate Policies: Policy: 2.23.140.1.2.1",
                 "1.2.3.4.7: critical: unknown to certkit; value 0500"):
        assert f"  requested     {line}\n" in text, text
    data = run_certkit("inspect", made / "r.csr", "--json", check=True).stdout
    assert "s3cretpw" not in data
    item = json.loads(data)["items"][0]
    assert item["attributes"] == [
        {"name": "challengePassword", "oid": "1.2.840.113549.1.9.7", "value": None},
        {"name": "unstructuredName", "oid": "1.2.840.113549.1.9.2", "value": "Acme Unit 7"}], item
    assert [(e["name"], e["critical"]) for e in item["requested_extensions"]][:2] == [
        ("X509v3 Basic Constraints", True), ("X509v3 Key Usage", True)], item


# --- PKCS#12 truststores and Java keystores where a CA file or a key is read ------------------------------------------
def _keytool(*args, home: Path) -> None:
    subprocess.run(["keytool", *map(str, args)], check=True, capture_output=True, timeout=180,
                   env={"HOME": str(home), "PATH": "/usr/bin:/bin"})  # a private HOME: nothing of the user's


@pytest.fixture(scope="module")
def stores(made) -> Path:
    """trust-keytool.p12, trust-openssl.p12 (ca.pem alone, no key), key.jks and key.p12 (keytool -genkeypair)."""
    require("keytool")
    (home := made / "java-home").mkdir(exist_ok=True)
    _ossl("pkcs12", "-export", "-nokeys", "-in", "ca.pem", "-out", "trust-openssl.p12", "-passout", "pass:changeit",
          cwd=made)
    _keytool("-importcert", "-noprompt", "-storetype", "PKCS12", "-keystore", made / "trust-keytool.p12",
             "-storepass", "changeit", "-alias", "tca", "-file", made / "ca.pem", home=home)
    for store, kind in (("key.jks", "JKS"), ("key.p12", "PKCS12")):
        _keytool("-genkeypair", "-keyalg", "EC", "-groupname", "secp256r1", "-dname", "CN=k", "-alias", "k",
                 "-storetype", kind, "-keystore", made / store, "-storepass", "changeit", "-keypass", "changeit",
                 home=home)
    return made


@pytest.mark.parametrize("store", ["trust-keytool.p12", "trust-openssl.p12"])
@pytest.mark.parametrize("reader", ["inspect", "verify --ca-file", "verify --untrusted", "probe --ca-file"])
def test_a_pkcs12_truststore_is_named_as_one_with_the_openssl_command_that_writes_its_pem(stores, store, reader):
    path, leaf = stores / store, stores / "leaf.pem"
    args = {"inspect": ["inspect", path],
            "verify --ca-file": ["verify", leaf, "--purpose", "server", "--ca-file", path],
            "verify --untrusted": ["verify", leaf, "--purpose", "server", "--untrusted", path,
                                   "--ca-file", stores / "ca.pem"],
            "probe --ca-file": ["probe", "https://127.0.0.1:1/", "--ca-file", path]}[reader]
    proc = run_certkit(*args)
    assert_clean_error(proc, f"{path} is a PKCS#12 truststore (a .p12 or .pfx file of certificates and no private "
                             f"key, as keytool -importcert and openssl pkcs12 -export -nokeys write it), not a "
                             f"certificate, CSR or CRL; take its certificates out with 'openssl pkcs12 -in {path} "
                             f"-nokeys -out ca.pem'")
    assert "and a key" not in proc.stderr and "cert.pem, fullchain.pem" not in proc.stderr
    if reader == "verify --ca-file":  # the command, followed, gives the file openssl verify and certkit agree on
        out = stores / f"{store}.ca.pem"
        _ossl("pkcs12", "-in", path, "-nokeys", "-out", out, "-passin", "pass:changeit", cwd=stores)
        ossl = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", out, leaf], capture_output=True,
                              text=True)
        verdict = run_certkit("verify", leaf, "--purpose", "server", "--ca-file", out)
        assert ossl.returncode != 0 and verdict.returncode == 1, (ossl.stdout, ossl.stderr, verdict.stdout)
        assert "unhandled critical extension" in ossl.stderr + ossl.stdout  # leaf.pem's 1.2.3.4.5, both refuse it
        assert "1.2.3.4.5" in verdict.stdout, verdict.stdout


def test_a_pkcs12_with_a_key_is_still_a_bundle_of_certificates_and_a_key(stores):
    _ossl("pkcs12", "-export", "-in", "leaf.pem", "-inkey", "leaf.key", "-out", "withkey.p12", "-passout",
          "pass:changeit", cwd=stores)
    for store in ("withkey.p12", "key.p12"):
        assert_clean_error(run_certkit("inspect", stores / store),
                           "is a PKCS#12 bundle (a .p12 or .pfx file: certificates and a key, encrypted)")


@pytest.mark.parametrize("store", ["key.jks", "key.p12", "trust-keytool.p12"])
@pytest.mark.parametrize("reader", ["probe", "serve"])
def test_a_keystore_given_as_the_key_says_how_to_take_the_key_out(stores, store, reader, tmp_path):
    """probe --key and serve --key: a JKS gets keytool -importkeystore then openssl pkcs12; followed, the key works."""
    path = stores / store
    if reader == "probe":
        err = run_certkit("probe", "https://127.0.0.1:1/", "--ca-file", stores / "ca.pem", "--cert",
                          stores / "leaf.pem", "--key", path)
        assert err.returncode == 1 and "Traceback" not in err.stderr, err.stderr
        err = err.stderr
    else:
        (tmp_path / "cert.pem").write_bytes((stores / "leaf.pem").read_bytes())
        (tmp_path / "privkey.pem").write_bytes(path.read_bytes())
        err = serve_refused_at_start(tmp_path, new_ca(tmp_path, "Serve CA"), f"{store} as its key")
        path = tmp_path / "privkey.pem"
    said = {"key.jks": f"is a Java keystore (JKS or JCEKS, which certkit does not read), not a private key; take the "
                       f"key out with 'keytool -importkeystore -srckeystore {path} -destkeystore key.p12 "
                       f"-deststoretype PKCS12', then 'openssl pkcs12 -in key.p12 -nocerts -noenc -out privkey.pem'",
            "key.p12": f"take the key out with 'openssl pkcs12 -in {path} -nocerts -noenc -out privkey.pem'",
            "trust-keytool.p12": "is a PKCS#12 truststore (a .p12 or .pfx file of certificates and no private key, "
                                 "as keytool -importcert and openssl pkcs12 -export -nokeys write it), not a private "
                                 "key; it holds no key: give the PEM private key (privkey.pem)."}[store]
    assert err.startswith("Error: ") and said in err and err.count("\n") == 1, err
    if store == "key.jks" and reader == "probe":  # the two commands, followed, give a key openssl reads
        home = stores / "java-home"
        subprocess.run(["keytool", "-importkeystore", "-srckeystore", path, "-destkeystore", tmp_path / "key.p12",
                        "-deststoretype", "PKCS12", "-srcstorepass", "changeit", "-deststorepass", "changeit"],
                       check=True, capture_output=True, timeout=180, env={"HOME": str(home), "PATH": "/usr/bin:/bin"})
        _ossl("pkcs12", "-in", "key.p12", "-nocerts", "-noenc", "-out", "privkey.pem", "-passin", "pass:changeit",
              cwd=tmp_path)
        assert "PRIVATE KEY" in _ossl("pkey", "-in", "privkey.pem", cwd=tmp_path)


# --- check: a leaf in ca.pem, rows deleted by hand -------------------------------------------------------------------
def _check(env: dict) -> tuple[int, list[tuple[str, str, str]]]:
    proc = run_certkit("check", "--json", env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, [(f["check"], f["level"], f["message"]) for f in json.loads(proc.stdout)["findings"]]


@pytest.fixture
def lab(tmp_path) -> tuple[Path, dict]:
    """A CA in tmp_path/ca with localhost/ (renewed once, in place) and alice/ and bob/ beside it."""
    env = new_ca(tmp_path, "Check CA")
    for args in (("issue-server", "localhost"), ("issue-client", "alice"), ("issue-client", "bob"),
                 ("renew", "localhost")):
        run_certkit(*args, cwd=tmp_path, env=env, check=True)
    return tmp_path, env


def _serial(pem: Path) -> str:
    return subprocess.run(["openssl", "x509", "-in", pem, "-noout", "-serial"], capture_output=True, text=True,
                          check=True).stdout.strip().split("=")[1]


def _delete(top: Path, where: str, *args) -> None:
    import sqlite3

    with sqlite3.connect(top / "ca" / "inventory.sqlite3") as conn:
        assert conn.execute(f"DELETE FROM certificates WHERE {where}", args).rowcount == 1
    conn.close()


def test_check_says_of_each_bundle_whose_row_was_deleted_what_it_means_and_what_to_do(lab):
    top, env = lab
    assert _check(env)[0] == 0
    alice, bob = _serial(top / "alice" / "cert.pem"), _serial(top / "bob" / "cert.pem")
    _delete(top, "serial = ?", alice)
    _delete(top, "serial = ?", bob)
    code, found = _check(env)
    assert code == 1, found
    said = {m.split(" holds serial ")[0]: m for c, level, m in found if c == "inventory-row" and level == "error"}
    for name, serial in (("alice", alice), ("bob", bob)):
        message = said[str(top / name / "cert.pem")]
        assert f"holds serial {serial} (CN={name}), signed by this CA, which the inventory does not record" in message
        assert "revoke refuses it and no CRL can list it, and it stays valid until" in message, message
        assert "Restore the inventory from a backup made after" in message, message
    assert not [f for f in found if f[0] == "inventory" and f[1] == "ok"], found  # not "every row ... true"
    revoke = run_certkit("revoke", top / "alice", cwd=top, env=env)  # what the finding says revoke does
    assert revoke.returncode != 0 and "has no record of it" in revoke.stderr, revoke.stderr
    crl = top / "crl.pem"
    run_certkit("crl", "--out", crl, env=env, check=True)
    ossl = subprocess.run(["openssl", "verify", "-x509_strict", "-crl_check", "-CAfile", top / "ca" / "ca.pem",
                           "-CRLfile", crl, top / "alice" / "cert.pem"], capture_output=True, text=True)
    assert ossl.returncode == 0, ossl.stdout + ossl.stderr  # "stays valid": OpenSSL, with the CRL, accepts it


def test_check_finds_a_bundle_beside_the_ca_directory_when_every_row_is_gone(lab):
    top, env = lab
    import sqlite3

    with sqlite3.connect(top / "ca" / "inventory.sqlite3") as conn:
        conn.execute("DELETE FROM certificates")
    conn.close()
    code, found = _check(env)
    said = sorted(m.split(" holds serial ")[0] for c, _, m in found if c == "inventory-row")
    assert code == 1 and said == [str(top / name / "cert.pem") for name in ("alice", "bob", "localhost")], found


def test_check_says_a_renewal_of_a_deleted_row(lab):
    top, env = lab
    _delete(top, "serial = (SELECT renewed_from FROM certificates WHERE renewed_from IS NOT NULL)")
    code, found = _check(env)
    (message,) = [m for c, level, m in found if c == "inventory-row"]
    assert code == 1 and " renews serial " in message, found
    assert "which the inventory does not record: that row was deleted outside certkit" in message, message
    assert message.endswith("Restore the inventory from a backup made before the change, then run certkit check "
                            "again."), message


def test_check_judges_no_validity_by_a_leaf_copied_over_ca_pem(lab):
    top, env = lab
    (top / "ca" / "ca.pem").write_bytes((top / "alice" / "cert.pem").read_bytes())
    code, found = _check(env)
    assert code == 1
    assert [c for c, level, _ in found if c == "certificate" and level == "error"] == ["certificate"], found
    leaf_end = subprocess.run(["openssl", "x509", "-in", top / "alice" / "cert.pem", "-noout", "-enddate"],
                              capture_output=True, text=True, check=True).stdout
    assert not [f for f in found if f[0] == "validity"], (found, leaf_end)  # was: OK valid until the leaf's date
    # the key is the CA's: not "does not belong to ca.pem; restore the matching pair", only ca.pem is to put back
    assert ("key", "ok", "decrypts (not compared with ca.pem, which holds no CA certificate)") in found, found


# --- verify: a CA's rule broken, in openssl verify -x509_strict's reason ---------------------------------------------
CA_EXT = ("basicConstraints=critical,CA:TRUE{pathlen}\nkeyUsage=critical,{usage}\nsubjectKeyIdentifier=hash\n"
          "authorityKeyIdentifier=keyid\n")
LEAF_EXT = ("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            "subjectAltName=DNS:localhost\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")


@pytest.fixture(scope="module")
def rules(made) -> Path:
    """Under made's TCA (ca.pem): p0 (pathlen:0) over sub over leaf_pl; noku (keyUsage digitalSignature only)
    over leaf_noku; nc (permitted DNS:example.com) over leaf_nc; good over leaf_sha1 (signed with SHA-1) and
    leaf_rsa (RSA 1024); sha1int (signed with SHA-1) and rsaint (RSA 1024), each over a leaf; leaves name localhost."""
    top = made / "rules"
    top.mkdir()
    (top / "ca.pem").write_bytes((made / "ca.pem").read_bytes())
    (top / "ca.key").write_bytes((made / "ca.key").read_bytes())
    ca_ext = CA_EXT.format(pathlen="", usage="keyCertSign,cRLSign")
    for name, ext, issuer in (("p0", CA_EXT.format(pathlen=",pathlen:0", usage="keyCertSign,cRLSign"), "ca"),
                              ("sub", ca_ext, "p0"), ("leaf_pl", LEAF_EXT, "sub"),
                              ("noku", CA_EXT.format(pathlen="", usage="digitalSignature"), "ca"),
                              ("leaf_noku", LEAF_EXT, "noku"),
                              ("nc", ca_ext + "nameConstraints=critical,permitted;DNS:example.com\n", "ca"),
                              ("leaf_nc", LEAF_EXT, "nc"), ("good", ca_ext, "ca"), ("leaf_sha1", LEAF_EXT, "good/sha1"),
                              ("leaf_rsa", LEAF_EXT, "good/rsa"), ("sha1int", ca_ext, "ca/sha1"),
                              ("leaf_sha1int", LEAF_EXT, "sha1int"), ("rsaint", ca_ext, "ca/rsa"),
                              ("leaf_rsaint", LEAF_EXT, "rsaint")):
        issuer, _, odd = issuer.partition("/")  # sha1: signed with SHA-1; rsa: an RSA key of 1024 bits
        key = ["rsa:1024"] if odd == "rsa" else ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        _ossl("req", "-new", "-newkey", *key, "-nodes", "-keyout", f"{name}.key", "-subj", f"/CN={name}", "-out",
              f"{name}.csr", cwd=top)
        (top / f"{name}.ext").write_text(ext)
        _ossl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.pem", "-CAkey", f"{issuer}.key", "-extfile",
              f"{name}.ext", "-days", "30", "-out", f"{name}.pem", *(["-sha1"] if odd == "sha1" else []), cwd=top)
    (top / "pl-chain.pem").write_text((top / "sub.pem").read_text() + (top / "p0.pem").read_text())
    return top


@pytest.mark.parametrize(("leaf", "chain", "openssl_says", "reason"), [
    ("leaf_pl", "pl-chain.pem", "path length constraint exceeded",
     'the issuing CA CN=p0 allows 0 intermediate CAs below it, not 1: OpenSSL refuses the chain ("path length '
     'constraint exceeded")'),
    ("leaf_noku", "noku.pem", "invalid CA certificate",
     'its issuer CN=noku may not sign certificates (no keyCertSign in its keyUsage): OpenSSL refuses the chain '
     '("invalid CA certificate")'),
    ("leaf_nc", "nc.pem", "permitted subtree violation", "localhost is outside the name constraints of CN=nc"),
])
def test_verify_names_the_ca_and_rule_openssl_refuses_the_chain_for(rules, leaf, chain, openssl_says, reason):
    ossl = subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", rules / "ca.pem",
                           "-untrusted", rules / chain, rules / f"{leaf}.pem"], capture_output=True, text=True)
    assert ossl.returncode != 0 and openssl_says in ossl.stdout + ossl.stderr, ossl.stdout + ossl.stderr
    proc = run_certkit("verify", rules / f"{leaf}.pem", "--purpose", "server", "--ca-file", rules / "ca.pem",
                       "--untrusted", rules / chain, "--json")
    verdict = json.loads(proc.stdout)
    assert proc.returncode == 1 and verdict["valid"] is False, verdict
    assert verdict["reasons"] == [reason], verdict
    text = run_certkit("verify", rules / f"{leaf}.pem", "--purpose", "server", "--ca-file", rules / "ca.pem",
                       "--untrusted", rules / chain)
    assert text.returncode == 1 and text.stderr.count("\n") == 1 and reason in text.stderr, text.stderr
    assert f"  reason    {reason}" in text.stdout, text.stdout


@pytest.mark.parametrize(("leaf", "chain", "level", "reason"), [
    ("leaf_sha1", "good.pem", 1, "it is signed with SHA1"),
    ("leaf_sha1int", "sha1int.pem", 1, "the CA CN=sha1int is signed with SHA1"),
    ("leaf_rsa", "good.pem", 2, "its RSA key has 1024 bits"),
    ("leaf_rsaint", "rsaint.pem", 2, "the CA CN=rsaint's RSA key has 1024 bits"),
])
def test_a_weak_chain_says_openssl_verify_refuses_it_only_at_an_auth_level(rules, leaf, chain, level, reason):
    """openssl verify, without -auth_level, says OK of a SHA-1 signature or an RSA 1024 key, which TLS (Python's
    ssl, nginx) refuses: certkit's NOT VALID said OpenSSL refuses it, and now also how openssl verify says so."""
    args = ["-x509_strict", "-purpose", "sslserver", "-CAfile", rules / "ca.pem", "-untrusted", rules / chain,
            rules / f"{leaf}.pem"]
    plain = subprocess.run(["openssl", "verify", *args], capture_output=True, text=True)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    strict = subprocess.run(["openssl", "verify", "-auth_level", str(level), *args], capture_output=True, text=True)
    assert strict.returncode != 0 and "too weak" in strict.stdout + strict.stderr, strict.stdout + strict.stderr
    proc = run_certkit("verify", rules / f"{leaf}.pem", "--purpose", "server", "--ca-file", rules / "ca.pem",
                       "--untrusted", rules / chain, "--json")
    (said,) = json.loads(proc.stdout)["reasons"]
    assert proc.returncode == 1 and said.startswith(reason), said
    assert said.endswith(f'too weak"; openssl verify says so only when given -auth_level {level})'), said


@pytest.mark.parametrize(("leaf", "chain", "openssl_says", "prefix"), [
    ("leaf_pl", "pl-chain.pem", "path length constraint exceeded", "the issuing CA CN=p0 allows 0 intermediate"),
    ("leaf_noku", "noku.pem", "invalid CA certificate", "its issuer CN=noku may not sign certificates"),
])
def test_probe_of_a_server_sending_that_chain_gives_the_reason_a_python_ssl_client_fails_with(rules, leaf, chain,
                                                                                               openssl_says, prefix):
    import socket
    import ssl

    from test_probe import openssl_server

    with openssl_server("-cert", rules / f"{leaf}.pem", "-key", rules / f"{leaf}.key", "-cert_chain",
                        rules / chain) as port:
        context = ssl.create_default_context(cafile=str(rules / "ca.pem"))
        context.check_hostname = False
        with pytest.raises(ssl.SSLCertVerificationError, match=openssl_says):
            with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
                context.wrap_socket(raw, server_hostname="localhost").close()
        proc = run_certkit("probe", f"https://localhost:{port}/", "--ca-file", rules / "ca.pem")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"against the CA in {rules / 'ca.pem'}: {openssl_says}" in proc.stdout, proc.stdout  # the handshake's
    said = f'OpenSSL refuses the chain ("{openssl_says}")'  # certkit's reason names the CA and rule, and agrees
    assert f"  reason      {prefix}" in proc.stdout and said in proc.stdout, proc.stdout


def _tlv(tag: int, body: bytes) -> bytes:
    size = len(body)
    length = bytes([size]) if size < 128 else bytes([0x80 | ((size.bit_length() + 7) // 8)]) + size.to_bytes(
        (size.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + body


def test_inspect_reads_a_csr_with_a_multi_valued_attribute_as_openssl_req_does(tmp_path):
    """cryptography refuses csr.attributes of a CSR whose unstructuredName holds two values ('Only single-valued
    attributes are supported'); openssl req -text shows both: so does inspect, and says no damage."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509 import Name, NameAttribute
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    two = _tlv(0x31, _tlv(0x0C, b"one") + _tlv(0x0C, b"two"))  # unstructuredName: a SET of two values
    attribute = _tlv(0x30, bytes.fromhex("06092a864886f70d010902") + two)
    tbs = _tlv(0x30, bytes.fromhex("020100") + Name([NameAttribute(NameOID.COMMON_NAME, "multi")]).public_bytes()
               + spki + _tlv(0xA0, attribute))
    signature = _tlv(0x03, b"\x00" + key.sign(tbs, ec.ECDSA(hashes.SHA256())))
    ecdsa_sha256 = _tlv(0x30, bytes.fromhex("06082a8648ce3d040302"))
    (tmp_path / "multi.csr").write_bytes(_tlv(0x30, tbs + ecdsa_sha256 + signature))
    ossl = _ossl("req", "-in", "multi.csr", "-inform", "DER", "-noout", "-text", "-verify", cwd=tmp_path)
    assert "unstructuredName         :one" in ossl and ":two" in ossl, ossl
    text = run_certkit("inspect", tmp_path / "multi.csr", check=True).stdout
    assert "  signature     valid\n" in text and "  attribute     unstructuredName: one, two\n" in text, text


@pytest.mark.parametrize(("store", "kind"), [("trust-keytool.p12", "a PKCS#12 truststore"),
                                             ("key.jks", "a Java keystore (JKS or JCEKS"),
                                             ("key.p12", "a PKCS#12 bundle")])
@pytest.mark.parametrize("where", ["ca.pem", "parents.pem"])
def test_check_and_list_name_a_keystore_copied_over_ca_pem(stores, lab, store, kind, where):
    """It was 'damaged: it holds no PEM data (no -----BEGIN line). Restore it from a backup.' (list: 'not a
    complete PEM certificate (damaged or cut short?)'), as if the file were cut."""
    top, env = lab
    (top / "ca" / where).write_bytes((stores / store).read_bytes())
    code, found = _check(env)
    check = "certificate" if where == "ca.pem" else "parents"
    (message,) = [m for c, level, m in found if c == check and level == "error"]
    assert code == 1 and f"cannot be read: it is {kind}" in message, message
    assert "not a PEM certificate; put the CA's certificate back" in message and "damaged" not in message, message
    if where == "ca.pem":
        listed = run_certkit("list", env=env)
        assert_clean_error(listed, f"it is {kind}")


def test_inspect_of_a_keytool_csr_shows_its_requested_key_identifier_as_openssl_does(stores, tmp_path):
    """keytool -certreq asks for a subjectKeyIdentifier; its line said '(see openssl req -text)'."""
    csr = tmp_path / "k.csr"
    _keytool("-certreq", "-alias", "k", "-keystore", stores / "key.jks", "-storepass", "changeit", "-file", csr,
             "-ext", "san=dns:k.example", home=stores / "java-home")
    ossl = _ossl("req", "-in", csr, "-noout", "-text", cwd=tmp_path)
    ski = ossl.split("X509v3 Subject Key Identifier:", 1)[1].split()[0]
    text = run_certkit("inspect", csr, check=True).stdout
    assert f"  requested     X509v3 Subject Key Identifier: {ski}\n" in text, (text, ossl)
    assert "  requested     X509v3 Subject Alternative Name: DNS:k.example\n" in text, text
