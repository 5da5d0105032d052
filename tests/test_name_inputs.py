"""Names that cryptography, openssl or certkit's own commands would refuse later are refused first,
with one Error line naming the value (and the option), before any passphrase or signature.

- A subject attribute (a client's CN, a CA's --name, --org, --org-unit) is measured in UTF-8 bytes,
  as cryptography measures it: 22 x '日' is 22 characters but 66 bytes, once a traceback while signing.
  init-ca names the option of a bad subject value, and refuses it before asking for a passphrase.
- A URI follows RFC 3986 (and RFC 5280: a host that is a DNS name or an IP address) wherever one is
  taken: issue-client --uri, an issue-batch line's uri, a CSR's subjectAltName for sign-csr --client.
- A certificate carries at most 250 distinct names, however they come (issue-server, issue-peer,
  issue-client, issue-batch, sign-csr): 60,000 once made a 1.28 MB certificate that certkit's own
  inspect, verify, renew and revoke then refused as larger than 1 MiB.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certkit.names import MAX_IDENTITIES, MAX_URI, hide_user_info

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, pkilint_errors, run_certkit
from integrity_helpers import db_rows

# Values of at most 64 characters but more than 64 bytes in UTF-8 (2, 3 and 4 bytes a character).
TOO_LONG_IN_BYTES = {
    "CJK, 22 x 3 bytes": "日" * 22,
    "accents, 33 x 2 bytes": "é" * 33,
    "emoji, 17 x 4 bytes": "\U0001f512" * 17,
    "mixed, 64 characters": "Zoë " * 15 + "Zoë",
    "ASCII then one accent": "a" * 63 + "é",
}
# The longest a subject attribute may be: 64 bytes, whatever the characters.
LONGEST = {"CJK, 21 x 3 bytes + 1": "日" * 21 + "x", "accents, 32 x 2 bytes": "é" * 32, "ASCII, 64": "a" * 64,
           "emoji, 16 x 4 bytes": "\U0001f512" * 16}


def assert_nothing_issued(work: Path, ca_dir: Path) -> None:
    assert [p.name for p in work.iterdir() if p.name != "ca"] == []
    assert db_rows(ca_dir) == []


def common_name(path: Path) -> str:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def utf8_csr(folder: Path, cn: str) -> Path:
    """A CSR made by the openssl binary, whose CN is ``cn`` as UTF-8 (openssl counts characters)."""
    proc = openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-utf8",
                   "-keyout", folder / "csr.key", "-subj", f"/CN={cn}", "-out", folder / "req.csr")
    assert proc.returncode == 0, proc.stderr
    return folder / "req.csr"


# --- subject attributes in UTF-8 bytes ---------------------------------------------------------
@pytest.mark.parametrize("what", list(TOO_LONG_IN_BYTES))
def test_client_name_too_long_in_utf8_is_refused(tmp_path: Path, ca_dir: Path, ca_env: dict, what: str) -> None:
    name = TOO_LONG_IN_BYTES[what]
    assert len(name) <= 64 < len(name.encode())
    proc = run_certkit("issue-client", name, "--out", "alice", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, f"is {len(name.encode())} bytes in UTF-8")
    assert "a common name may hold at most 64 bytes" in proc.stderr
    assert name[:20] in proc.stderr  # the message names the value
    assert_nothing_issued(tmp_path, ca_dir)


@pytest.mark.parametrize("what", list(TOO_LONG_IN_BYTES))
def test_batch_client_name_too_long_in_utf8_is_refused(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                       what: str) -> None:
    name = TOO_LONG_IN_BYTES[what]
    (tmp_path / "m.csv").write_text(f"kind,names,out\nclient,alice,alice\nclient,{name},long\n", encoding="utf-8")
    proc = run_certkit("issue-batch", "m.csv", "--out-dir", "out", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, f"is {len(name.encode())} bytes in UTF-8")
    assert "line 3" in proc.stderr
    assert not (tmp_path / "out").exists() and db_rows(ca_dir) == []  # alice's line is not issued either


@pytest.mark.parametrize("what", list(TOO_LONG_IN_BYTES))
def test_csr_client_name_too_long_in_utf8_is_refused(tmp_path: Path, ca_dir: Path, ca_env: dict, what: str) -> None:
    name = TOO_LONG_IN_BYTES[what]
    csr = utf8_csr(tmp_path, name)
    proc = run_certkit("sign-csr", csr, "--client", "--out", "signed", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, f"is {len(name.encode())} bytes in UTF-8")
    assert "common name" in proc.stderr
    assert not (tmp_path / "signed").exists() and db_rows(ca_dir) == []


@pytest.mark.parametrize("what", list(LONGEST))
def test_longest_client_names_are_issued_and_read_back(tmp_path: Path, ca_dir: Path, ca_env: dict, what: str) -> None:
    name = LONGEST[what]
    assert len(name.encode()) == 64
    run_certkit("issue-client", name, "--out", "cli", cwd=tmp_path, env=ca_env, check=True)
    (tmp_path / "m.csv").write_text(f"kind,names,out\nclient,{name},batch\n", encoding="utf-8")
    run_certkit("issue-batch", "m.csv", "--out-dir", "out", cwd=tmp_path, env=ca_env, check=True)
    run_certkit("sign-csr", utf8_csr(tmp_path, name), "--client", "--out", "csr", cwd=tmp_path, env=ca_env,
                check=True)
    for cert in (tmp_path / "cli" / "cert.pem", tmp_path / "out" / "batch" / "cert.pem", tmp_path / "csr" / "cert.pem"):
        assert common_name(cert) == name
        shown = openssl("x509", "-in", cert, "-noout", "-subject", "-nameopt", "utf8,sep_comma_plus")
        assert shown.returncode == 0 and shown.stdout.decode().strip() == f"subject=CN={name}", shown


# --- init-ca: each subject value in the words of its option ------------------------------------
CA_OPTIONS = {"--name": "a common name", "--org": "an organization", "--org-unit": "an organizational unit"}
BAD_CA_VALUES = {
    "blank": (" ", "' ' is blank; {field} needs at least one visible character"),
    "empty": ("", "'' is blank; {field} needs at least one visible character"),
    "tab": ("\t", "is blank"),
    "65 characters": ("o" * 65, "is 65 characters long; {field} may hold at most 64"),
    "66 bytes": ("é" * 33, "is 66 bytes in UTF-8 (33 characters); {field} may hold at most 64 bytes"),
    "spaces around": (" Acme ", "' Acme ' starts or ends with whitespace"),
    "control character": ("Acme\x1b[2J", "contains control characters"),
}


@pytest.mark.parametrize("option", list(CA_OPTIONS))
@pytest.mark.parametrize("what", list(BAD_CA_VALUES))
def test_init_ca_names_the_option_of_a_bad_subject_value(tmp_path: Path, option: str, what: str) -> None:
    value, fragment = BAD_CA_VALUES[what]
    env = certkit_env()  # no passphrase anywhere: the value is refused before one would be asked for
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "ca", option, value, cwd=tmp_path, env=env)
    if not value.strip():  # every command refuses an empty value as a usage error (test_arguments)
        assert_clean_error(proc, f"{option} was given an empty value", code=2)
        assert not (tmp_path / "ca").exists()
        return
    assert_clean_error(proc, f"{option} ")
    assert proc.stderr.startswith(f"Error: {option} "), proc.stderr
    assert fragment.format(field=CA_OPTIONS[option]) in proc.stderr
    assert "client" not in proc.stderr and "passphrase" not in proc.stderr.lower()
    assert not (tmp_path / "ca").exists()


def test_init_ca_keeps_64_byte_subject_values(tmp_path: Path) -> None:
    env = certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    cn, org, unit = "日" * 21 + "x", "é" * 32, "\U0001f512" * 16
    run_certkit("init-ca", "--ca-dir", tmp_path / "ca", "--name", cn, "--org", org, "--org-unit", unit, env=env,
                check=True)
    shown = openssl("x509", "-in", tmp_path / "ca" / "ca.pem", "-noout", "-subject", "-nameopt", "utf8,sep_comma_plus")
    assert shown.returncode == 0 and shown.stdout.decode().strip() == f"subject=O={org},OU={unit},CN={cn}", shown


# --- URIs ----------------------------------------------------------------------------------------
BAD_URIS = {
    "http://[::1": "must enclose an IPv6 address",
    "http://x:99999/": "its port '99999' is not a number from 0 to 65535",
    "http://x:8o/": "its port '8o' is not a number",
    "http://[::1]x/": "only ':port' may follow",
    "http://[v1.x]/": "is not an IPv6 address",
    "http://[fe80::1%25eth0]/": "zone",
    "http://999.1.1.1/": "larger than 255",
    "http://a..b/": "empty label",
    "http://under_score.example/": "'_'",
    "file:///etc/passwd": "no host",
    "http://x/<script>": "'<' may not appear",
    'http://x/"q"': "'\"' may not appear",
    "http://x/a{b}": "'{' may not appear",
    "http://x/a|b": "'|' may not appear",
    "http://x/a\\b": "may not appear",
    "http://x/%zz": "'%' must start a percent-encoding",
    "http://x/a#b#c": "more than one '#'",
    "urn:a[1]": "may only enclose an IPv6 address",
    "//host/path": "needs a scheme",
    "1http://x/": "needs a scheme",
    "http:": "needs a scheme",
    "https://x.example/" + "a" * 2048: "the limit is 2048",
    # user information: OpenSSL's URI name constraints read the host of a@b@host otherwise than certkit
    "https://user@h.example:443/p%20q": "leave out its 'user@' part",
    "https://user@evil.org@a.example.com/": "leave out its 'user@' part",
    "spiffe://a@example.org/x": "leave out its 'user@' part",
}
GOOD_URIS = ["spiffe://example.org/ns/prod/sa/billing", "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
             "https://[2001:db8::1]:8443/a?b=c#d", "https://h.example:443/p%20q", "ldap://10.0.0.1/cn=x,dc=y",
             "mailto:alice@example.com", "https://x.example/" + "a" * 2030]


@pytest.mark.parametrize("uri", list(BAD_URIS))
def test_bad_uri_is_refused_by_issue_client(tmp_path: Path, ca_dir: Path, ca_env: dict, uri: str) -> None:
    proc = run_certkit("issue-client", "bob", "--uri", "spiffe://example.org/bob", "--uri", uri, "--out", "bob",
                       cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, BAD_URIS[uri])
    assert hide_user_info(uri)[:30] in proc.stderr and "is not a valid URI" in proc.stderr  # user information as '***'
    assert_nothing_issued(tmp_path, ca_dir)


@pytest.mark.parametrize("uri", list(BAD_URIS))
def test_bad_uri_is_refused_in_a_batch_line(tmp_path: Path, ca_dir: Path, ca_env: dict, uri: str) -> None:
    import json

    lines = [{"kind": "client", "names": "alice", "uri": "spiffe://example.org/alice"},
             {"kind": "client", "names": "bob", "uri": ["spiffe://example.org/bob", uri]}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    proc = run_certkit("issue-batch", "m.jsonl", "--out-dir", "out", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, BAD_URIS[uri])
    assert "line 2" in proc.stderr
    assert not (tmp_path / "out").exists() and db_rows(ca_dir) == []


# What openssl's -addext passes through as written (its config syntax takes '#' and '"' and '\\' itself).
@pytest.mark.parametrize("uri", [u for u in BAD_URIS if not any(ch in u for ch in '#"\\')])
def test_bad_uri_in_a_csr_is_refused(tmp_path: Path, ca_dir: Path, ca_env: dict, uri: str) -> None:
    proc = openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                   "-keyout", tmp_path / "k.pem", "-subj", "/CN=bob", "-addext", f"subjectAltName=URI:{uri}",
                   "-out", tmp_path / "req.csr")
    assert proc.returncode == 0, proc.stderr
    asked = openssl("req", "-in", tmp_path / "req.csr", "-noout", "-text").stdout.decode()
    assert f"URI:{uri}" in asked
    proc = run_certkit("sign-csr", "req.csr", "--client", "--out", "signed", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, BAD_URIS[uri])
    assert "The CSR's subjectAltName URI:" in proc.stderr and " is refused: " in proc.stderr  # the entry named
    assert not (tmp_path / "signed").exists() and db_rows(ca_dir) == []


def test_good_uris_are_issued_as_given(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    args = [a for uri in GOOD_URIS for a in ("--uri", uri)]
    run_certkit("issue-client", "bob", *args, "--out", "bob", cwd=tmp_path, env=ca_env, check=True)
    cert = x509.load_pem_x509_certificate((tmp_path / "bob" / "cert.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == GOOD_URIS
    shown = openssl("x509", "-in", tmp_path / "bob" / "cert.pem", "-noout", "-ext", "subjectAltName")
    assert shown.returncode == 0 and all(f"URI:{uri}" in shown.stdout.decode() for uri in GOOD_URIS), shown


# --- how many names ------------------------------------------------------------------------------
MAX = MAX_IDENTITIES  # 250


def hosts(count: int, start: int = 0) -> list[str]:
    return [f"h{i}.example.com" for i in range(start, start + count)]


def san_of(path: Path) -> list:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)


def names_csr(path: Path, cn: str, san: list[x509.GeneralName]) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .add_extension(x509.SubjectAlternativeName(san), critical=False).sign(key, hashes.SHA256()))
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return path


TOO_MANY = {
    "issue-server": lambda d: ["issue-server", *hosts(MAX + 1)],
    "issue-peer": lambda d: ["issue-peer", *hosts(MAX), "10.0.0.1"],
    "issue-server, 60,000": lambda d: ["issue-server", *hosts(60_000)],
    "issue-client": lambda d: ["issue-client", "bob@example.com", *(a for i in range(100) for a in (
        "--email", f"bob{i}@example.com")), *(a for i in range(100) for a in ("--uri", f"urn:bob:{i}")),
        *(a for h in hosts(MAX - 200) for a in ("--dns", h))],  # + the CN, an email address
    "issue-batch": lambda d: ["issue-batch", batch_manifest(d, " ".join(hosts(MAX + 1)))],
    "sign-csr": lambda d: ["sign-csr", "--server", names_csr(d / "r.csr", "h0.example.com", [
        x509.DNSName(h) for h in hosts(MAX + 1)])],
    "sign-csr, extra names": lambda d: ["sign-csr", "--server", names_csr(d / "r.csr", "h0.example.com", [
        x509.DNSName(h) for h in hosts(MAX)]), "extra.example.com"],
    "sign-csr --client": lambda d: ["sign-csr", "--client", names_csr(d / "r.csr", "bob", [
        x509.UniformResourceIdentifier(f"urn:bob:{i}") for i in range(MAX + 1)])],
}


def batch_manifest(folder: Path, names: str) -> str:
    (folder / "m.csv").write_text(f"kind,names,out\nserver,one.example.com,one\nserver,{names},many\n")
    return "m.csv"


@pytest.mark.parametrize("what", list(TOO_MANY))
def test_too_many_names_are_refused_before_signing(tmp_path: Path, ca_dir: Path, ca_env: dict, what: str) -> None:
    args = TOO_MANY[what](tmp_path)
    out = ["--out-dir", "out"] if what == "issue-batch" else ["--out", "out"]
    env = {k: v for k, v in ca_env.items() if k != "CERTKIT_CA_PASSPHRASE"}  # refused before it is needed
    proc = run_certkit(*args, *out, cwd=tmp_path, env=env)
    count = "60,000" if "60,000" in what else f"{MAX + 1}"
    assert_clean_error(proc, f"{count} names are too many for one certificate, which may carry at most {MAX}")
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "out").exists() and db_rows(ca_dir) == []


def test_the_most_names_are_issued_and_read_back(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    names = hosts(MAX) + hosts(50)  # duplicates count once
    run_certkit("issue-server", *names, "--out", "server", cwd=tmp_path, env=ca_env, check=True)
    assert [gn.value for gn in san_of(tmp_path / "server" / "cert.pem")] == hosts(MAX)
    csr = names_csr(tmp_path / "r.csr", "h0.example.com", [x509.DNSName(h) for h in hosts(MAX)])
    run_certkit("sign-csr", "--server", csr, "--out", "csr", cwd=tmp_path, env=ca_env, check=True)
    assert len(san_of(tmp_path / "csr" / "cert.pem")) == MAX


def test_the_largest_certificate_is_still_read_by_certkit(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    """As many URIs as allowed, each as long as allowed: what certkit issues, its own commands read (1 MiB)."""
    uris = [f"urn:x:{i:04}:" + "a" * (MAX_URI - 11) for i in range(MAX)]
    assert all(len(u) == MAX_URI == 2048 for u in uris)
    run_certkit("issue-client", "big", *(a for u in uris for a in ("--uri", u)), "--out", "big", cwd=tmp_path,
                env=ca_env, check=True)
    assert 512_000 < (tmp_path / "big" / "fullchain.pem").stat().st_size < 1 << 20
    assert [gn.value for gn in san_of(tmp_path / "big" / "cert.pem")] == uris
    assert openssl("x509", "-in", tmp_path / "big" / "cert.pem", "-noout", "-ext", "subjectAltName").returncode == 0
    run_certkit("inspect", "big/fullchain.pem", cwd=tmp_path, env=ca_env, check=True)
    run_certkit("verify", "big", "--purpose", "client", "--name", uris[-1], cwd=tmp_path, env=ca_env, check=True)


def test_the_library_and_the_defaults_measure_subject_values_alike(tmp_path, ca_dir):
    """CA.create, verify_path and init-ca's default name use the same rules as the command line."""
    from certkit.ca import CA
    from certkit.errors import InvalidName
    from certkit.verify import verify_path

    for kwargs, fragment in (({"organization": " "}, "an organization needs"),
                             ({"organizational_unit": "é" * 33}, "organizational unit may hold at most 64"),
                             ({"country": "XYZ"}, "not a country code")):
        with pytest.raises(InvalidName, match=fragment):
            CA.create("Library CA", **kwargs)
    run_certkit("issue-server", "web.example.com", "--out", "web", cwd=tmp_path,
                env=certkit_env(CERTKIT_CA_DIR=str(ca_dir), CERTKIT_CA_PASSPHRASE=PASSPHRASE), check=True)
    with pytest.raises(InvalidName) as caught:
        verify_path(tmp_path / "web" / "cert.pem", purpose="server", name="999.1.1.1", ca_dir=ca_dir)
    assert "damaged" not in str(caught.value) and "999" in str(caught.value)
    # A login name that is not ASCII: the default CA name is cut to 64 bytes, not 64 characters.
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca2"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      LOGNAME="日本語のとても長いユーザー名です", USER="日本語のとても長いユーザー名です")
    run_certkit("init-ca", env=env, check=True, subprocess=True)
    cert = x509.load_pem_x509_certificate((tmp_path / "ca2" / "ca.pem").read_bytes())
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn.startswith("certkit CA 日本語") and len(cn.encode()) <= 64


def test_init_ca_country_is_checked_before_the_passphrase(tmp_path):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"))  # no passphrase anywhere
    assert_clean_error(run_certkit("init-ca", "--country", "XYZ", env=env), "not a country code")
    assert not (tmp_path / "ca").exists()


@pytest.mark.parametrize("address", ["a(b)@example.com", "a<b>@example.com", "a..b@example.com", ".a@example.com",
                                     "a.@example.com", "a,b@example.com", "a;b@example.com", '"a b"@example.com',
                                     "a\\b@example.com", "a[b]@example.com"])
def test_email_addresses_outside_rfc5321_dot_atoms_are_refused(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                               address: str) -> None:
    """Characters X.509 checkers refuse in an rfc822Name (cryptography raised a traceback for some;
    pkilint flagged the rest as ERRORs): one Error line before anything is signed, from issue-client
    and from a CSR alike."""
    proc = run_certkit("issue-client", "mail user", "--email", address, "--out", tmp_path / "c", env=ca_env)
    assert_clean_error(proc, "is not a valid email address")
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("address", ["alice@example.com", "first.last+tag@example.com", "o'hara@example.com",
                                     "x_y-z=1@sub.example.com"])
def test_ordinary_email_addresses_are_issued_cleanly(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                     address: str) -> None:
    run_certkit("issue-client", "mail user", "--email", address, "--out", tmp_path / "c", env=ca_env, check=True)
    assert pkilint_errors(tmp_path / "c" / "cert.pem") == ""


def test_the_subject_cn_is_the_first_dns_name_as_the_docs_say(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    """docs/issue-server.md: the CN is the first DNS name, else the first address; a first name over 64
    bytes leaves the subject empty (and the SAN critical); the folder is named after the first name."""
    run_certkit("issue-server", "127.0.0.1", "first.example", cwd=tmp_path, env=ca_env, check=True)
    cert = x509.load_pem_x509_certificate((tmp_path / "127.0.0.1" / "cert.pem").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=first.example"
    run_certkit("issue-server", "10.0.0.7", "--out", "ip", cwd=tmp_path, env=ca_env, check=True)
    cert = x509.load_pem_x509_certificate((tmp_path / "ip" / "cert.pem").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=10.0.0.7"
    long_name = "a" * 63 + ".example.com"
    run_certkit("issue-server", long_name, "--out", "long", cwd=tmp_path, env=ca_env, check=True)
    cert = x509.load_pem_x509_certificate((tmp_path / "long" / "cert.pem").read_bytes())
    assert len(cert.subject) == 0
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    assert pkilint_errors(tmp_path / "long" / "cert.pem") == ""
