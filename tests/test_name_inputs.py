"""Names that cryptography, openssl or certkit's own commands would refuse later are refused first,
with one Error line naming the value (and the option), before any passphrase or signature.

- A subject attribute (a client's CN, a CA's --name, --org, --org-unit) is measured in UTF-8 bytes,
  as cryptography measures it: 22 x '日' is 22 characters but 66 bytes, once a traceback while signing.
  init-ca names the option of a bad subject value, and refuses it before asking for a passphrase.
- A URI follows RFC 3986 (and RFC 5280: a host that is a DNS name or an IP address) wherever one is
  taken: issue-client --uri, an issue-batch line's uri, a CSR's subjectAltName for sign-csr --client.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, run_certkit
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
    assert shown.returncode == 0 and shown.stdout.decode().strip() == f"subject=CN={cn},O={org},OU={unit}", shown


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
}
GOOD_URIS = ["spiffe://example.org/ns/prod/sa/billing", "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
             "https://[2001:db8::1]:8443/a?b=c#d", "https://user@h.example:443/p%20q", "ldap://10.0.0.1/cn=x,dc=y",
             "mailto:alice@example.com", "https://x.example/" + "a" * 2030]


@pytest.mark.parametrize("uri", list(BAD_URIS))
def test_bad_uri_is_refused_by_issue_client(tmp_path: Path, ca_dir: Path, ca_env: dict, uri: str) -> None:
    proc = run_certkit("issue-client", "bob", "--uri", "spiffe://example.org/bob", "--uri", uri, "--out", "bob",
                       cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, BAD_URIS[uri])
    assert uri[:30] in proc.stderr and "is not a valid URI" in proc.stderr
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
    assert "The CSR's subjectAltName is refused" in proc.stderr
    assert not (tmp_path / "signed").exists() and db_rows(ca_dir) == []


def test_good_uris_are_issued_as_given(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    args = [a for uri in GOOD_URIS for a in ("--uri", uri)]
    run_certkit("issue-client", "bob", *args, "--out", "bob", cwd=tmp_path, env=ca_env, check=True)
    cert = x509.load_pem_x509_certificate((tmp_path / "bob" / "cert.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == GOOD_URIS
    shown = openssl("x509", "-in", tmp_path / "bob" / "cert.pem", "-noout", "-ext", "subjectAltName")
    assert shown.returncode == 0 and all(f"URI:{uri}" in shown.stdout.decode() for uri in GOOD_URIS), shown
