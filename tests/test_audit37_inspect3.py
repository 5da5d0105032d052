"""inspect, verify, probe and check, audit round thirty-seven: what these commands say against openssl's words.

inspect showed no certificatePolicies, policyConstraints, inhibitAnyPolicy, authorityInfoAccess (OCSP, caIssuers)
or cRLDistributionPoints, no extension it does not know, and nothing of a CSR's attributes (challengePassword,
unstructuredName) or of the extensions it requests beyond its names and EKU: each is now a line named as
``openssl x509 -text`` / ``openssl req -text`` name it, and a key of ``--json``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import run_certkit

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
