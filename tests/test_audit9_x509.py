"""Audit x5099 (what certkit's certificates and CSR reports contain), each finding as a class:

1. A CA limited to IP ranges (``--permit-ip`` / ``permitted_ips`` alone: a root, an intermediate that
   narrows to a range, one that inherits an IP-only parent's constraints; IPv4 and IPv6) lints clean
   with pkilint: its "no DNS name, email or URI" placeholder is the two-label ``invalid.invalid``, not
   the one-label ``invalid`` pkilint refuses five times. It still vouches for none of them: OpenSSL
   refuses a DNS, email and URI leaf forged with the CA's key, and certkit issues none, under the
   placeholder neither. A CA made before (one-label ``invalid``) keeps the exact five findings
   docs/library.md names, is still held to "none", and an intermediate inheriting from it lints clean.
2. Subject attributes and requested extensions are named, not shown as bare OIDs, wherever certkit
   writes them: sign-csr's "dropped" lines, ``inspect`` of a CSR and of a foreign certificate, and
   ``verify``. title, givenName, surname, initials, pseudonym, generationQualifier, postalCode,
   businessCategory, dnQualifier; smimeCapabilities and Microsoft's certificate template (v1 by name,
   1.3.6.1.4.1.311.20.2, and v2 by OID, 1.3.6.1.4.1.311.21.7), as a Windows certreq CSR carries them.

Real peers: pkilint (lint_pkix_cert), openssl (req, verify -x509_strict).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certkit import CA, constraints
from certkit.errors import NameNotPermitted

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, pkilint_errors, run_certkit

PLACEHOLDER = ("DNS:invalid.invalid, email:invalid.invalid, email:.invalid.invalid, URI:invalid.invalid, "
               "URI:.invalid.invalid")
OLD_FINDINGS = [
    ("permittedSubtrees.0.base.dNSName", 'pkix.invalid_domain_name_syntax (ERROR): Invalid domain name syntax: '
                                         '"invalid"'),
    ("permittedSubtrees.1.base.rfc822Name", 'pkix.invalid_email_address_syntax (ERROR): Invalid e-mail address '
                                            'syntax: "invalid"'),
    ("permittedSubtrees.2.base.rfc822Name", 'pkix.invalid_email_address_syntax (ERROR): Invalid e-mail address '
                                            'syntax: ".invalid"'),
    ("permittedSubtrees.3.base.uniformResourceIdentifier", 'pkix.invalid_uri_syntax (ERROR): Invalid URI syntax: '
                                                           '"invalid"'),
    ("permittedSubtrees.4.base.uniformResourceIdentifier", 'pkix.invalid_uri_syntax (ERROR): Invalid URI syntax: '
                                                           '".invalid"'),
]


def _env(folder: Path) -> dict[str, str]:
    return certkit_env(CERTKIT_CA_DIR=str(folder / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                       CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE, HOME=str(folder))


def _name_constraints(pem: Path) -> str:
    text = openssl("x509", "-in", pem, "-noout", "-ext", "nameConstraints").stdout.decode()
    return ", ".join(line.strip() for line in text.splitlines()[2:])


def _write(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


# --- 1. an IP-only CA lints clean and still vouches for no DNS name, email or URI ----------------------
@pytest.mark.parametrize("network, narrower", [("10.0.0.0/8", "10.2.0.0/16"), ("fd00::/8", "fd00:1::/32")])
def test_ip_only_cas_lint_clean_root_and_intermediates(tmp_path, network, narrower):
    env = _env(tmp_path)

    def init(folder: str, *args: str) -> Path:
        run_certkit("init-ca", "--ca-dir", tmp_path / folder, "--name", folder, *args, cwd=tmp_path, env=env,
                    check=True)
        return tmp_path / folder / "ca.pem"

    made = {"root": init("root", "--permit-ip", network)}
    made["inherits"] = init("inherits", "--parent-ca-dir", tmp_path / "root")
    made["narrows"] = init("narrows", "--parent-ca-dir", tmp_path / "root", "--permit-ip", narrower)
    init("mixed", "--permit-dns", "example.com", "--permit-ip", network)
    made["ip under mixed"] = init("sub", "--parent-ca-dir", tmp_path / "mixed", "--permit-ip", narrower)
    for what, pem in made.items():
        assert pkilint_errors(pem) == "", what
        assert _name_constraints(pem).startswith(f"{PLACEHOLDER}, IP:"), (what, _name_constraints(pem))
    assert pkilint_errors(made["root"], made["narrows"]) == ""


def _forged(ca: CA, san: x509.GeneralName, folder: Path) -> Path:
    """A leaf for ``san`` signed with the CA's own key, as a thief of the key would make it."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forged")]))
            .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.cert.public_key()), critical=False)
            .sign(ca.key, hashes.SHA256()))
    return _write(folder / "forged.pem", cert)


@pytest.mark.parametrize("san, purpose", [
    (x509.DNSName("www.example.com"), "sslserver"),
    (x509.DNSName("www.invalid.example"), "sslserver"),
    (x509.RFC822Name("alice@example.com"), "sslclient"),
    (x509.UniformResourceIdentifier("spiffe://example.org/alice"), "sslclient"),
], ids=["dns", "dns-invalid-label", "email", "uri"])
def test_the_lint_clean_ip_only_ca_still_refuses_every_name_to_openssl(tmp_path, san, purpose):
    ca = CA.create("IP only", permitted_ips=["10.0.0.0/8"])
    assert PLACEHOLDER.split(", ")[0] in _name_constraints(_write(tmp_path / "ca.pem", ca.cert))
    leaf = _forged(ca, san, tmp_path)
    proc = openssl("verify", "-x509_strict", "-purpose", purpose, "-CAfile", tmp_path / "ca.pem", leaf)
    assert proc.returncode != 0 and b"permitted subtree violation" in proc.stdout + proc.stderr, proc


def test_certkit_issues_no_name_under_the_new_placeholder(tmp_path):
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "IP only CA", "--permit-ip", "10.0.0.0/8", cwd=tmp_path, env=env, check=True)
    assert PLACEHOLDER in _name_constraints(tmp_path / "ca" / "ca.pem")
    why = "is outside the name constraints of CA 'IP only CA' (permitted: 10.0.0.0/8; no DNS names, emails or URIs)."
    for args, value in [(["issue-server", "invalid.invalid"], "invalid.invalid"),
                        (["issue-server", "www.invalid.invalid"], "www.invalid.invalid"),
                        (["issue-client", "Alice Smith", "--email", "a@invalid.invalid"], "a@invalid.invalid"),
                        (["issue-client", "Alice Smith", "--uri", "spiffe://x.invalid.invalid/a"],
                         "spiffe://x.invalid.invalid/a")]:
        proc = run_certkit(*args, "--out", tmp_path / "x", cwd=tmp_path, env=env)
        assert_clean_error(proc, f"Error: '{value}' {why}")
        assert not (tmp_path / "x").exists()
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "y", "--permit-dns", "INVALID.invalid.", env=env)
    assert_clean_error(proc, "Error: 'invalid.invalid' cannot be a permitted domain: it is reserved (RFC 6761)")


def test_a_ca_made_with_the_old_placeholder(tmp_path, monkeypatch):
    """The five findings docs/library.md names, exactly; still "none"; an heir of it lints clean."""
    with monkeypatch.context() as patched:  # how certkit before this fix made an IP-only CA
        patched.setattr(constraints, "NO_DNS", "invalid")
        old = CA.create("Old IP only", permitted_ips=["10.0.0.0/8"])
    pem = _write(tmp_path / "old.pem", old.cert)
    assert _name_constraints(pem).startswith("DNS:invalid, email:invalid, email:.invalid, URI:invalid, URI:.invalid")
    # pkilint exits with the number of findings, which conftest's pkilint_errors takes for a failure
    linted = subprocess.run([shutil.which("lint_pkix_cert") or "lint_pkix_cert", "lint", "-s", "ERROR", str(pem)],
                            capture_output=True, text=True, timeout=120)
    findings = linted.stdout.strip().splitlines()
    assert linted.returncode == len(OLD_FINDINGS) and not linted.stderr, linted
    assert [(a.split("nameConstraints.")[-1], b.strip()) for a, b in zip(findings[::2], findings[1::2], strict=True)] \
        == OLD_FINDINGS, findings
    page = (Path(__file__).parent.parent / "docs" / "library.md").read_text()
    assert all(f"`{finding.split()[0]}`" in page for _, finding in OLD_FINDINGS)
    for attempt in (lambda: old.issue_server(["h.invalid"]), lambda: old.issue_server(["invalid.invalid"]),
                    lambda: old.issue_client("Alice Smith", emails=["a@b.invalid"]),
                    lambda: old.issue_client("Alice Smith", uris=["spiffe://invalid/a"])):
        with pytest.raises(NameNotPermitted, match=r"\(permitted: 10\.0\.0\.0/8; no DNS names, emails or URIs\)"):
            attempt()
    heir = CA.create("Heir", parent=old)
    assert _name_constraints(_write(tmp_path / "heir.pem", heir.cert)) == f"{PLACEHOLDER}, IP:10.0.0.0/255.0.0.0"
    assert pkilint_errors(tmp_path / "heir.pem") == ""
    with pytest.raises(NameNotPermitted, match="no DNS names, emails or URIs"):
        heir.issue_server(["h.invalid.invalid"])
    assert str(heir.issue_server(["10.1.2.3"]).identities[0].value) == "10.1.2.3"
    # trust's words for it (install and status say what a CA may sign): no DNS names, old placeholder or new
    from certkit.trust.anchor import describe_scope

    for ca in (old, heir):
        nc = ca.cert.extensions.get_extension_for_class(x509.NameConstraints).value
        assert describe_scope(nc).startswith("no DNS names; "), describe_scope(nc)


# --- 2. subject attributes and requested extensions by name ------------------------------------------
SUBJECT = ("/CN=t.example.com/title=Dr/GN=Ann/SN=Lee/initials=AL/pseudonym=al/generationQualifier=III"
           "/postalCode=12345/businessCategory=x/dnQualifier=q1")
NAMED = ["title=Dr", "givenName=Ann", "surname=Lee", "initials=AL", "pseudonym=al", "generationQualifier=III",
         "postalCode=12345", "businessCategory=x", "dnQualifier=q1"]
EXTENSIONS = ["1.2.840.113549.1.9.15=DER:3000", "1.3.6.1.4.1.311.20.2=ASN1:BMPSTRING:WebServer",
              "1.3.6.1.4.1.311.21.7=DER:300b06032a0304020164020100"]


@pytest.fixture
def named_ca(tmp_path) -> dict[str, str]:
    env = _env(tmp_path)
    run_certkit("init-ca", "--name", "Mixed", "--permit-dns", "example.com", cwd=tmp_path, env=env, check=True)
    return env


def test_sign_csr_names_what_it_drops(tmp_path, named_ca):
    addext = [arg for ext in EXTENSIONS for arg in ("-addext", ext)]
    made = openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                   tmp_path / "t.key", "-subj", SUBJECT, *addext, "-out", tmp_path / "t.csr")
    assert made.returncode == 0, made.stderr
    proc = run_certkit("sign-csr", tmp_path / "t.csr", "--server", "--out", tmp_path / "t", cwd=tmp_path,
                       env=named_ca, check=True)
    dropped = [line.strip() for line in proc.stdout.splitlines() if line.strip().startswith("dropped")]
    assert dropped == ["dropped   smimeCapabilities (not in the certificate)",
                       "dropped   msCertificateTemplateName (not in the certificate)",
                       "dropped   msCertificateTemplate (not in the certificate)",
                       *(f"dropped   subject attribute {a}" for a in NAMED)], proc.stdout
    inspected = run_certkit("inspect", tmp_path / "t.csr", cwd=tmp_path, env=named_ca, check=True).stdout
    assert f"  subject       {','.join(reversed(NAMED))},CN=t.example.com\n" in inspected, inspected
    assert "2.5.4." not in proc.stdout + inspected


def test_inspect_and_verify_name_a_foreign_certificates_subject(tmp_path, named_ca):
    made = openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                   tmp_path / "f.key", "-subj", SUBJECT, "-days", "2", "-addext", "subjectAltName=DNS:t.example.com",
                   "-out", tmp_path / "f.pem")
    assert made.returncode == 0, made.stderr
    subject = f"{','.join(reversed(NAMED))},CN=t.example.com"
    inspected = run_certkit("inspect", tmp_path / "f.pem", cwd=tmp_path, env=named_ca, check=True).stdout
    assert f"  subject       {subject}\n" in inspected and f"  issuer        {subject}  (self-signed)" in inspected
    proc = run_certkit("verify", tmp_path / "f.pem", "--purpose", "server", "--json", cwd=tmp_path, env=named_ca)
    verdict = json.loads(proc.stdout)
    assert (verdict["valid"], verdict["subject"], verdict["issuer"]) == (False, subject, subject), proc.stdout
