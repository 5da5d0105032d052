"""certkit inspect and certkit verify on good and bad inputs; verify's verdicts cross-checked
against the openssl binary on the same files."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certkit.ca import CA
from certkit.store import CADirectory
from certkit.vocabulary import serial_hex

from conftest import PASSPHRASE, REPO, assert_clean_error, certkit_env, openssl, run_certkit
from docs_runner import run_page

NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """Root (backdated, so it can have issued an expired leaf), another root, an intermediate,
    and bundles for every case, written as certkit writes them."""
    d = tmp_path_factory.mktemp("pki")
    root = CA.create("Test Root", not_before=NOW - dt.timedelta(days=40))
    other = CA.create("Other Root")
    inter = CA.create("Test Issuing", parent=root)
    CADirectory(d / "root-ca").save_new(root, PASSPHRASE.encode())
    CADirectory(d / "inter-ca").save_new(inter, None)
    (d / "root.pem").write_bytes(root.cert_pem)
    (d / "other.pem").write_bytes(other.cert_pem)
    root.issue_server(["localhost", "127.0.0.1", "*.dev.example.com"]).write(d / "server")
    root.issue_client("alice", emails=["alice@example.com"]).write(d / "client")
    root.issue_client("bob", not_before=NOW - dt.timedelta(days=30), days=10).write(d / "expired")
    other.issue_client("eve").write(d / "other-client")
    other.issue_server(["localhost"]).write(d / "other-server")
    root.issue_server(["bücher.example"]).write(d / "idn")
    root.issue_server(["*.example.net"]).write(d / "wildcard")
    inter.issue_server(["api.example.internal"]).write(d / "inter-server")
    inter.issue_client("carol").write(d / "inter-client")
    return d


def _ok(proc) -> None:
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr


# --- inspect ------------------------------------------------------------------------
def _inspect(*args):
    return run_certkit("inspect", *args, env=certkit_env())


def test_inspect_server_certificate(pki):
    proc = _inspect(pki / "server" / "cert.pem")
    _ok(proc)
    out = proc.stdout
    cert = x509.load_pem_x509_certificate((pki / "server" / "cert.pem").read_bytes())
    assert "subject       CN=localhost" in out and "issuer        CN=Test Root" in out
    assert f"serial        {serial_hex(cert.serial_number)}" in out
    assert re.search(r"\((199|200) days left\)", out)
    assert "key type      ecdsa-p256" in out
    assert "DNS:localhost, IP:127.0.0.1, DNS:*.dev.example.com" in out
    assert "key usage     digitalSignature\n" in out and "EKU           serverAuth\n" in out
    assert "basic constr. CA:FALSE, critical" in out
    assert "Usable for: TLS server authentication (localhost, 127.0.0.1, *.dev.example.com)" in out
    # Fingerprints as openssl computes them.
    for algo, label in (("-sha256", "SHA-256"), ("-sha1", "SHA-1")):
        fp = openssl("x509", "-in", pki / "server" / "cert.pem", "-noout", "-fingerprint", algo)
        assert f"{label:<14}{fp.stdout.decode().strip().split('=', 1)[1]}" in out


def test_inspect_client_ca_and_expired(pki):
    out = _inspect(pki / "client" / "cert.pem").stdout
    assert "EKU           clientAuth" in out
    assert "Usable for: TLS client authentication (CN=alice; alice@example.com)" in out
    out = _inspect(pki / "root.pem").stdout
    assert "(self-signed)" in out and "CA:TRUE, pathlen 1, critical" in out
    assert "key usage     keyCertSign, cRLSign" in out
    assert "Usable for: issuing certificates (CA)" in out
    out = _inspect(pki / "expired" / "cert.pem").stdout
    assert "(expired 20 days ago)" in out
    assert "Usable for: nothing now (expired 20 days ago); issued for TLS client authentication (CN=bob)" in out


def test_inspect_idn_and_name_constraints(pki, tmp_path):
    out = _inspect(pki / "idn" / "cert.pem").stdout
    assert "DNS:xn--bcher-kva.example (bücher.example)" in out
    constrained = CA.create("Constrained", permitted_dns=["example.com"])
    (tmp_path / "c.pem").write_bytes(constrained.cert_pem)
    out = _inspect(tmp_path / "c.pem").stdout
    # DNS constraints constrain email addresses and URIs to the same domain (RFC 5280 spells both forms)
    assert ("name constr.  permitted: DNS:example.com, email:example.com, email:.example.com, URI:example.com, "
            "URI:.example.com; excluded: IP:0.0.0.0/0, IP:::/0") in out


def test_inspect_der_and_json(pki, tmp_path):
    der = tmp_path / "server.der"
    cert = x509.load_pem_x509_certificate((pki / "server" / "cert.pem").read_bytes())
    der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    proc = _inspect(der, "--json")
    _ok(proc)
    data = json.loads(proc.stdout)
    item = data["items"][0]
    assert item["type"] == "certificate" and item["extended_key_usage"] == ["serverAuth"]
    assert item["subject_alt_names"][:2] == [{"type": "DNS", "value": "localhost"},
                                             {"type": "IP", "value": "127.0.0.1"}]
    assert item["basic_constraints"] == {"ca": False, "path_length": None, "critical": True}
    assert item["fingerprint_sha256"] == cert.fingerprint(hashes.SHA256()).hex()  # as list --json gives it
    assert item["status"] == "valid" and 198 <= item["days_left"] <= 200
    # one vocabulary across --json: a moment as the inventory (list --json) writes it, with a Z
    assert item["not_after"] == cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert item["not_before"] == cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert data["private_keys"] == []


def test_inspect_bundle_folder_says_key_matches_and_never_shows_it(pki):
    proc = _inspect(pki / "inter-server")
    _ok(proc)
    out = proc.stdout
    # cert.pem, the intermediate (fullchain.pem/chain.pem), the root: each once.
    assert out.count("Certificate (") == 3
    assert "Usable for: TLS server authentication (api.example.internal)" in out
    assert "Usable for: issuing certificates (CA) (path length 0: end-entity certificates only)" in out
    assert "privkey.pem: private key (ecdsa-p256) matches the certificate CN=api.example.internal" in out
    key_pem = (pki / "inter-server" / "privkey.pem").read_text()
    body = "".join(key_pem.splitlines()[1:-1])
    assert "PRIVATE KEY" not in out and body[:40] not in out and body[-40:] not in out
    data = json.loads(_inspect(pki / "inter-server", "--json").stdout)
    assert data["private_keys"][0]["matches"] == "CN=api.example.internal"
    assert body[:40] not in json.dumps(data)


def test_inspect_pem_with_foreign_key(pki, tmp_path):
    mixed = tmp_path / "mixed.pem"
    mixed.write_bytes((pki / "client" / "cert.pem").read_bytes() + (pki / "server" / "privkey.pem").read_bytes())
    out = _inspect(mixed).stdout
    assert "mixed.pem: private key (ecdsa-p256) matches NONE of the certificates here" in out


def test_inspect_csr(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device-9")]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("device-9.example")]), critical=False)
           .sign(key, hashes.SHA256()))
    path = tmp_path / "device.csr"
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    proc = _inspect(path)
    _ok(proc)
    assert "Certificate signing request (device.csr)" in proc.stdout
    assert "signature     valid" in proc.stdout and "names asked   DNS:device-9.example" in proc.stdout
    assert "the CA that signs it decides the purpose" in proc.stdout


def _bad_files(pki: Path, tmp: Path) -> list[tuple[Path, str]]:
    (tmp / "garbage.pem").write_bytes(b"\x00\x01 this is not a certificate \xff" * 10)
    (tmp / "empty.pem").write_bytes(b"")
    (tmp / "blank.pem").write_bytes(b"\n  \n")
    (tmp / "cut.pem").write_bytes((pki / "server" / "cert.pem").read_bytes()[:300])
    der = x509.load_pem_x509_certificate((pki / "server" / "cert.pem").read_bytes()).public_bytes(
        serialization.Encoding.DER)
    (tmp / "cut.der").write_bytes(der[:200])
    lines = (pki / "server" / "cert.pem").read_text().splitlines()  # a whole PEM block around cut DER
    (tmp / "short.pem").write_text("\n".join(lines[:4] + lines[-1:]) + "\n")
    text = (pki / "server" / "cert.pem").read_text().splitlines()
    text[3] = "!!!!" + text[3][4:]
    (tmp / "bad-base64.pem").write_text("\n".join(text) + "\n")
    (tmp / "no-certs").mkdir()
    (tmp / "no-certs" / "README").write_text("nothing")
    (tmp / "key-only.pem").write_bytes((pki / "server" / "privkey.pem").read_bytes())
    return [
        (tmp / "garbage.pem", "garbage.pem is neither a PEM file nor a DER certificate, CSR or CRL"),
        (tmp / "empty.pem", "empty.pem is empty"),
        (tmp / "blank.pem", "blank.pem is empty"),
        (tmp / "cut.pem", "cut.pem holds a PEM block without its END line: the file is truncated"),
        (tmp / "cut.der", "cut.der is neither a PEM file nor a DER certificate, CSR or CRL"),
        (tmp / "short.pem", "short.pem holds a damaged certificate: it is not valid DER: the data ends too soon "
                            "(truncated)."),
        (tmp / "bad-base64.pem", "bad-base64.pem holds a certificate whose base64 text is damaged"),
        (tmp / "no-certs", "no-certs holds no certificate or CSR"),
        (tmp / "key-only.pem", "key-only.pem holds a private key but no certificate"),
        (tmp / "missing.pem", "missing.pem does not exist"),
    ]


def test_inspect_bad_input(pki, tmp_path):
    bad = _bad_files(pki, tmp_path)
    for path, message in bad:
        assert_clean_error(_inspect(path), message)
    for path, message in bad[:2]:  # --json changes nothing about errors: one line on stderr
        assert_clean_error(_inspect(path, "--json"), message)


# --- verify: verdicts and messages ---------------------------------------------------
# (certificate, purpose, name, trust, valid, plain-words fragment, openssl agrees?)
# trust: a file under pki used as --ca-file.
CASES = [
    ("server/cert.pem", "server", "localhost", "root.pem", True, None),
    ("server/cert.pem", "server", None, "root.pem", True, None),
    ("server/cert.pem", "server", "127.0.0.1", "root.pem", True, None),
    ("server/cert.pem", "server", "a.dev.example.com", "root.pem", True, None),
    ("wildcard/cert.pem", "server", None, "root.pem", True, None),
    ("wildcard/cert.pem", "server", "www.example.net", "root.pem", True, None),
    ("wildcard/cert.pem", "server", "example.net", "root.pem", False, "not valid for name example.net"),
    ("server/cert.pem", "server", "www.example.com", "root.pem", False,
     "not valid for name www.example.com: it names localhost, 127.0.0.1, *.dev.example.com"),
    ("server/cert.pem", "server", "a.b.dev.example.com", "root.pem", False, "not valid for name a.b.dev"),
    ("server/cert.pem", "server", "127.0.0.2", "root.pem", False, "not valid for name 127.0.0.2"),
    ("server/cert.pem", "client", None, "root.pem", False, "this is a server certificate: it has no clientAuth usage"),
    ("client/cert.pem", "client", None, "root.pem", True, None),
    ("client/cert.pem", "server", None, "root.pem", False, "this is a client certificate: it has no serverAuth usage"),
    ("client/cert.pem", "client", None, "other.pem", False,
     "not issued by this CA: it was issued by CN=Test Root, and the trusted CA is CN=Other Root"),
    ("other-server/cert.pem", "server", "localhost", "root.pem", False, "not issued by this CA"),
    ("expired/cert.pem", "client", None, "root.pem", False, "expired on "),
    ("root.pem", "server", None, "root.pem", False, "this is a CA certificate"),
    ("idn/cert.pem", "server", "xn--bcher-kva.example", "root.pem", True, None),
    ("inter-server/fullchain.pem", "server", "api.example.internal", "root.pem", True, None),
    ("inter-server/cert.pem", "server", "api.example.internal", "root.pem", False,
     "pass its certificate with --untrusted"),
    ("inter-client/fullchain.pem", "client", None, "root.pem", True, None),
    ("inter-client/fullchain.pem", "server", None, "root.pem", False, "it has no serverAuth usage"),
]


def _case_id(case) -> str:
    cert, purpose, name, trust, valid, _ = case
    return f"{cert}-{purpose}-{name}-{trust}-{'valid' if valid else 'invalid'}"


def _openssl_verdict(pki: Path, cert: str, purpose: str, name: str | None, trust: str) -> bool:
    """openssl verify -x509_strict on the same files: the leaf, the rest of its file as
    -untrusted, the CA file as -CAfile."""
    certs = x509.load_pem_x509_certificates((pki / cert).read_bytes())
    leaf = pki / "leaf.pem"
    leaf.write_bytes(certs[0].public_bytes(serialization.Encoding.PEM))
    args = ["verify", "-x509_strict", "-purpose", f"ssl{purpose}", "-CAfile", pki / trust]
    if len(certs) > 1:
        chain = pki / "untrusted.pem"
        chain.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs[1:]))
        args += ["-untrusted", chain]
    if name is not None:
        args += ["-verify_ip" if re.fullmatch(r"[\d.]+|.*:.*", name) else "-verify_hostname", name]
    proc = openssl(*args, leaf)
    return proc.returncode == 0


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_verify_cases_and_openssl_agrees(pki, case):
    cert, purpose, name, trust, valid, fragment = case
    args = ["verify", pki / cert, "--purpose", purpose, "--ca-file", pki / trust, "--json"]
    if name:
        args += ["--name", name]
    proc = run_certkit(*args, env=certkit_env())
    assert "Traceback" not in proc.stderr
    data = json.loads(proc.stdout)
    assert data["valid"] is valid, data
    if valid:
        assert proc.returncode == 0 and proc.stderr == ""
        assert data["reasons"] == [] and data["verifier_error"] is None
        assert data["chain"][-1] == "CN=Test Root"
    else:
        assert proc.returncode == 1
        assert any(fragment in r for r in data["reasons"]), data["reasons"]
        assert proc.stderr.startswith("Error: ") and fragment in proc.stderr
        assert proc.stderr.count("\n") == 1
    assert _openssl_verdict(pki, cert, purpose, name, trust) is valid, "openssl disagrees"


def test_verify_human_output(pki):
    proc = run_certkit("verify", pki / "server" / "cert.pem", "--purpose", "client", "--ca-file",
                       pki / "root.pem", env=certkit_env())
    assert proc.returncode == 1
    assert "NOT VALID as a TLS client certificate" in proc.stdout
    assert "reason    this is a server certificate: it has no clientAuth usage" in proc.stdout
    assert "verifier  validation failed: required EKU not found" in proc.stdout  # the raw text too
    proc = run_certkit("verify", pki / "client" / "cert.pem", "--purpose", "client", "--name",
                       "alice@example.com", "--ca-file", pki / "root.pem", env=certkit_env())
    _ok(proc)
    assert "VALID as a TLS client certificate" in proc.stdout
    assert "name      alice@example.com: matches" in proc.stdout
    assert "chain     CN=alice -> CN=Test Root" in proc.stdout


def test_verify_expired_names_the_date(pki):
    expired = x509.load_pem_x509_certificate((pki / "expired" / "cert.pem").read_bytes())
    proc = run_certkit("verify", pki / "expired" / "cert.pem", "--purpose", "client", "--ca-file",
                       pki / "root.pem", env=certkit_env())
    assert_verify_invalid(proc, f"expired on {expired.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC (20 days ago)")


def test_verify_client_name(pki):
    for name, valid in (("alice", True), ("alice@EXAMPLE.com", True), ("bob", False)):
        proc = run_certkit("verify", pki / "client" / "cert.pem", "--purpose", "client", "--name", name,
                           "--ca-file", pki / "root.pem", env=certkit_env())
        if valid:
            _ok(proc)
        else:
            assert_verify_invalid(proc, "not valid for name bob: it names CN=alice and alice@example.com")


def test_verify_with_ca_dir_and_untrusted(pki):
    env = certkit_env(CERTKIT_CA_DIR=str(pki / "root-ca"))  # no passphrase needed to verify
    _ok(run_certkit("verify", pki / "server" / "cert.pem", "--purpose", "server", "--name", "localhost", env=env))
    _ok(run_certkit("verify", pki / "inter-server" / "cert.pem", "--purpose", "server", "--untrusted",
                    pki / "inter-server" / "chain.pem", env=env))
    _ok(run_certkit("verify", pki / "inter-server", "--purpose", "server", env=env))  # a bundle folder
    # An intermediate CA's directory: its root is the anchor, its own certificate the intermediate.
    proc = run_certkit("verify", pki / "inter-server" / "cert.pem", "--purpose", "server",
                       "--ca-dir", pki / "inter-ca", env=certkit_env())
    _ok(proc)
    assert "CN=api.example.internal -> CN=Test Issuing -> CN=Test Root" in proc.stdout
    assert_verify_invalid(
        run_certkit("verify", pki / "other-client" / "cert.pem", "--purpose", "client", env=env),
        "not issued by this CA: it was issued by CN=Other Root, and the trusted CA is CN=Test Root")


def assert_verify_invalid(proc, fragment: str) -> None:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("Error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert fragment in proc.stderr, proc.stderr
    assert f"reason    {fragment}" in proc.stdout or fragment in proc.stdout


def test_verify_bad_input(pki, tmp_path):
    for path, message in _bad_files(pki, tmp_path):
        proc = run_certkit("verify", path, "--purpose", "server", "--ca-file", pki / "root.pem",
                           env=certkit_env())
        assert_clean_error(proc, message)
    assert_clean_error(run_certkit("verify", pki / "server" / "cert.pem", "--purpose", "server",
                                   "--ca-dir", tmp_path / "no-such-ca", env=certkit_env()),
                       "the folder does not exist")
    assert_clean_error(run_certkit("verify", pki / "server" / "cert.pem", "--purpose", "server",
                                   "--ca-file", tmp_path / "empty.pem", env=certkit_env()), "empty.pem is empty")
    proc = run_certkit("verify", pki / "server" / "cert.pem", "--purpose", "both", env=certkit_env())
    assert proc.returncode == 2 and "'both' is not one of 'server', 'client', 'peer'" in proc.stderr
    proc = run_certkit("verify", pki / "server" / "cert.pem", env=certkit_env())
    assert proc.returncode == 2 and "Missing option '--purpose'" in proc.stderr


def test_verify_nothing_written(pki, tmp_path):
    before = sorted(p.name for p in tmp_path.iterdir())
    run_certkit("verify", pki / "server" / "cert.pem", "--purpose", "client", "--ca-file", pki / "root.pem",
                cwd=tmp_path, env=certkit_env())
    run_certkit("inspect", pki / "server", cwd=tmp_path, env=certkit_env())
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# --- docs -----------------------------------------------------------------------------
@pytest.mark.parametrize("page", ["inspect.md", "verify.md"])
def test_docs_page_runs(page, tmp_path, ca_env):
    work = tmp_path / "work"
    work.mkdir()
    ca_env["CERTKIT_CA_DIR"] = str(work / "ca")
    run_page(REPO / "docs" / page, cwd=work, env=ca_env)


def test_inspect_ca_directory_leaves_encrypted_key_alone(pki):
    proc = _inspect(pki / "root-ca")
    _ok(proc)
    assert "Usable for: issuing certificates (CA)" in proc.stdout
    assert "ca-key.pem: encrypted private key (not decrypted, so not compared)" in proc.stdout
    assert "ENCRYPTED PRIVATE KEY" not in proc.stdout


def test_verify_idn_name_as_typed(pki):
    proc = run_certkit("verify", pki / "idn" / "cert.pem", "--purpose", "server", "--name", "bücher.example",
                       "--ca-file", pki / "root.pem", env=certkit_env())
    _ok(proc)
    assert "name      bücher.example: matches" in proc.stdout
    assert_clean_error(run_certkit("verify", pki / "idn" / "cert.pem", "--purpose", "server", "--name",
                                   "bad name!", "--ca-file", pki / "root.pem", env=certkit_env()), "bad name!")


BAD_SERVER_NAMES = {"": "is blank", " ": "is blank", "999.1.1.1": "larger than 255", "01.1.1.1": "leading zero",
                    "1.2.3": "3 parts", "fe80::1%eth0": "zone", "::g": "not a valid IPv6", "a..b": "empty label",
                    "https://localhost/": "is a URL", "localhost:443": "has a port",
                    "bad name!": "not a valid DNS name", "*.com": "top-level", "alice@example.com": "email address",
                    "ex\x1bample": "control characters"}
BAD_CLIENT_NAMES = {"": "is blank", " ": "is blank", "\t": "is blank", "ali\x1b[2Jce": "control characters"}


@pytest.mark.parametrize(("purpose", "name"), [("server", n) for n in BAD_SERVER_NAMES] +
                         [("client", n) for n in BAD_CLIENT_NAMES])
@pytest.mark.parametrize("cert", ["server", "client", "missing"])
def test_verify_refuses_a_bad_name_as_the_option_it_is(pki, purpose: str, name: str, cert: str) -> None:
    """A bad --name is the argument's fault, not the certificate's (once 'holds a damaged certificate'):
    refused before any certificate is read, so even a missing file is not reached."""
    proc = run_certkit("verify", pki / cert / "cert.pem", "--purpose", purpose, "--name", name,
                       "--ca-file", pki / "root.pem", env=certkit_env())
    if not name.strip():  # every command refuses an empty value as a usage error (test_arguments)
        assert_clean_error(proc, "--name was given an empty value", code=2)
        return
    fragment = (BAD_SERVER_NAMES if purpose == "server" else BAD_CLIENT_NAMES)[name]
    assert_clean_error(proc, fragment)
    assert proc.stderr.startswith("Error: --name") and proc.stderr.count("\n") == 1, proc.stderr
    assert "damaged" not in proc.stderr and "does not exist" not in proc.stderr and "\x1b" not in proc.stderr
    if name.strip() and name.isprintable():
        assert name in proc.stderr  # the message names the value


def test_verify_client_name_may_be_any_name_a_certificate_holds(pki) -> None:
    """A client's --name is matched as written, not parsed as a host: an address-like CN is no error."""
    proc = run_certkit("verify", pki / "client" / "cert.pem", "--purpose", "client", "--name", "999.1.1.1",
                       "--ca-file", pki / "root.pem", env=certkit_env())
    assert_verify_invalid(proc, "not valid for name 999.1.1.1: it names CN=alice")


# --- verify: the inventory, bundle folders, clients without subjectAltName -------------
def _cli_two_tier(folder: Path) -> dict[str, str]:
    """A root CA directory and an intermediate under it, made as a user makes them."""
    env = certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    secret = folder / "pp"
    secret.write_text(PASSPHRASE + "\n")
    secret.chmod(0o600)
    run_certkit("init-ca", "--ca-dir", folder / "ca", "--name", "Root CA", env=env, check=True)
    run_certkit("init-ca", "--ca-dir", folder / "issuing", "--parent-ca-dir", folder / "ca",
                "--parent-passphrase-file", secret, "--name", "Issuing CA 1", env=env, check=True)
    return env


def test_verify_refuses_a_leaf_under_an_intermediate_its_root_revoked(tmp_path):
    """The root's inventory records the intermediate as revoked: every leaf under it is refused, as
    openssl refuses it with the root's CRL, however the chain is given."""
    env = _cli_two_tier(tmp_path)
    for host in ("before", "other"):
        run_certkit("issue-server", f"{host}.example.internal", "--ca-dir", tmp_path / "issuing", "--out",
                    tmp_path / host, env=env, check=True)
    run_certkit("revoke", "--ca-dir", tmp_path / "ca", tmp_path / "issuing" / "ca.pem", "--reason", "cACompromise",
                env=env, check=True)
    # The revoked intermediate issues nothing more (round 26): what it signed before is checked below.
    late = run_certkit("issue-server", "after.example.internal", "--ca-dir", tmp_path / "issuing", "--out",
                       tmp_path / "after", env=env)
    assert_clean_error(late, "The CA 'Issuing CA 1' was revoked by its parent 'Root CA'")
    assert not (tmp_path / "after").exists()
    run_certkit("crl", "--ca-dir", tmp_path / "ca", "--out", tmp_path / "root-crl.pem", env=env, check=True)
    run_certkit("crl", "--ca-dir", tmp_path / "issuing", "--out", tmp_path / "issuing-crl.pem", env=env, check=True)
    (tmp_path / "crls.pem").write_bytes((tmp_path / "root-crl.pem").read_bytes()
                                        + (tmp_path / "issuing-crl.pem").read_bytes())
    for host in ("other", "before"):
        bundle = tmp_path / host
        name = f"{host}.example.internal"
        refused = openssl("verify", "-x509_strict", "-crl_check_all", "-CRLfile", tmp_path / "crls.pem", "-CAfile",
                          tmp_path / "ca" / "ca.pem", "-untrusted", bundle / "chain.pem", bundle / "cert.pem")
        assert refused.returncode != 0 and b"revoked" in refused.stdout + refused.stderr, refused
        for given in ([bundle], [bundle / "fullchain.pem"], [bundle / "cert.pem", "--untrusted", bundle / "chain.pem"]):
            proc = run_certkit("verify", *given, "--purpose", "server", "--name", name, "--ca-dir", tmp_path / "ca",
                               env=env)
            assert_verify_invalid(proc, "the issuing CA CN=Issuing CA 1 was revoked on ")
            assert "(reason: cACompromise), as this CA's inventory records" in proc.stdout
            assert "VALID as" not in proc.stdout.replace("NOT VALID", "")
    # The intermediate's own inventory still speaks for its leaves.
    run_certkit("revoke", "--ca-dir", tmp_path / "issuing", tmp_path / "before", "--reason", "keyCompromise",
                env=env, check=True)
    proc = run_certkit("verify", tmp_path / "before", "--purpose", "server", "--ca-dir", tmp_path / "issuing",
                       env=env)
    assert_verify_invalid(proc, "(reason: keyCompromise), as this CA's inventory records")
    # ... and, since round 26, its parent's too (the folder init-ca --parent-ca-dir recorded): revoked there.
    assert_verify_invalid(run_certkit("verify", tmp_path / "other", "--purpose", "server", "--ca-dir",
                                      tmp_path / "issuing", env=env),
                          "(reason: cACompromise), as the inventory of its parent CA CN=Root CA")


def _bundle(folder: Path, leaf, *, fullchain: list | None, chain: list | None, ca: list) -> Path:
    """A bundle folder as written by hand: cert.pem, and fullchain.pem, chain.pem and ca.pem as given."""
    pem = lambda certs: b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)  # noqa: E731
    folder.mkdir()
    (folder / "cert.pem").write_bytes(pem([leaf]))
    if fullchain is not None:
        (folder / "fullchain.pem").write_bytes(pem([leaf, *fullchain]))
    if chain is not None:
        (folder / "chain.pem").write_bytes(pem(chain))
    (folder / "ca.pem").write_bytes(pem(ca))
    return folder


def test_verify_of_a_bundle_folder_judges_what_its_server_sends(tmp_path):
    """fullchain.pem (else cert.pem and chain.pem) is what a server sends; ca.pem is what its peers trust,
    never a link of the chain. openssl, given the same files, agrees."""
    root = CA.create("Bundle Root")
    inter = CA.create("Bundle Issuing", parent=root)
    (tmp_path / "root.pem").write_bytes(root.cert_pem)
    leaf = inter.issue_server(["qq.example"]).cert
    cases = {  # folder: (fullchain, chain, ca, valid)
        "leaf-alone": ([], None, [inter.cert], False),  # an intermediate lost its parents.pem
        "no-fullchain": (None, None, [inter.cert], False),
        "chain-no-fullchain": (None, [inter.cert], [root.cert], True),
        "good": ([inter.cert], [inter.cert], [root.cert], True),
        "good-but-ca-is-intermediate": ([inter.cert], [inter.cert], [inter.cert], True),
    }
    for folder, (fullchain, chain, ca, valid) in cases.items():
        bundle = _bundle(tmp_path / folder, leaf, fullchain=fullchain, chain=chain, ca=ca)
        sent = ["-untrusted", bundle / "fullchain.pem", bundle / "fullchain.pem"] if fullchain is not None else \
            ["-untrusted", bundle / "chain.pem", bundle / "cert.pem"] if chain is not None else [bundle / "cert.pem"]
        theirs = openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", tmp_path / "root.pem", *sent)
        assert (theirs.returncode == 0) is valid, (folder, theirs)
        proc = run_certkit("verify", bundle, "--purpose", "server", "--ca-file", tmp_path / "root.pem",
                           env=certkit_env())
        if valid:
            _ok(proc)
            assert "chain     CN=qq.example -> CN=Bundle Issuing -> CN=Bundle Root" in proc.stdout
        else:
            assert_verify_invalid(proc, "not issued by this CA: it was issued by CN=Bundle Issuing")
            assert "does not carry CN=Bundle Issuing's certificate" in proc.stdout
        note = "the folder's ca.pem holds CN=Bundle Issuing, which is not a self-signed root CA"
        assert (note in proc.stdout) is (ca == [inter.cert]), (folder, proc.stdout)
    data = json.loads(run_certkit("verify", tmp_path / "leaf-alone", "--purpose", "server", "--ca-file",
                                  tmp_path / "root.pem", "--json", env=certkit_env()).stdout)
    assert data["valid"] is False and data["notes"] and "not a self-signed root CA" in data["notes"][0]
    only_ca = tmp_path / "only-ca"
    only_ca.mkdir()
    (only_ca / "ca.pem").write_bytes(root.cert_pem)
    assert_clean_error(run_certkit("verify", only_ca, "--purpose", "server", "--ca-file", tmp_path / "root.pem",
                                   env=certkit_env()), "holds only ca.pem, the CA certificate a peer trusts")


def _signed_by(ca: CA, subject: list, *, eku=None, san=None, san_critical: bool = False,
               ku: x509.KeyUsage | None = None) -> x509.Certificate:
    """A leaf signed by ``ca`` as another tool might make it (certkit itself always writes a SAN)."""
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn) for cn in subject]))
               .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - dt.timedelta(minutes=5)).not_valid_after(NOW + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(ku or x509.KeyUsage(True, *[False] * 8), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.cert.public_key()), critical=False)
               .add_extension(x509.ExtendedKeyUsage([getattr(ExtendedKeyUsageOID, u) for u in eku or
                                                     ["CLIENT_AUTH"]]), critical=False))
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=san_critical)
    return builder.sign(ca.key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_verify_accepts_a_client_certificate_without_subject_alt_name(tmp_path):
    """A CN-only client certificate (what OpenSSL, nginx and PostgreSQL take) is valid, by its CN; one that
    names nobody at all is not, nor is a server certificate without a subjectAltName."""
    root = CA.create("CN-only Root")
    ca_file = _write(tmp_path / "root.pem", root.cert)
    cases = [  # (file, certificate, purpose, name, valid, fragment)
        ("cn-only.pem", _signed_by(root, ["device-7"]), "client", "device-7", True, None),
        ("cn-only-any.pem", _signed_by(root, ["device-8"]), "client", None, True, None),
        ("cn-only-wrong.pem", _signed_by(root, ["device-9"]), "client", "device-1", False,
         "not valid for name device-1: it names CN=device-9"),
        ("cn-only-server.pem", _signed_by(root, ["web.example"], eku=["SERVER_AUTH"]), "client", None, False,
         "it has no clientAuth usage"),
        ("nobody.pem", _signed_by(root, []), "client", None, False,
         "it names nobody: its subject is empty and it has no subjectAltName"),
    ]
    for file, cert, purpose, name, valid, fragment in cases:
        path = _write(tmp_path / file, cert)
        args = ["--name", name] if name else []
        proc = run_certkit("verify", path, "--purpose", purpose, *args, "--ca-file", ca_file, env=certkit_env())
        if valid:
            _ok(proc)
            assert f"chain     CN={cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value} -> " \
                   "CN=CN-only Root" in proc.stdout
            theirs = openssl("verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", ca_file, path)
            assert theirs.returncode == 0, theirs
        else:
            assert_verify_invalid(proc, fragment)
        assert "2.5.29.17" not in proc.stdout + proc.stderr
    server = _write(tmp_path / "server-no-san.pem", _signed_by(root, ["web.example"], eku=["SERVER_AUTH"]))
    assert run_certkit("verify", server, "--purpose", "server", "--ca-file", ca_file,
                       env=certkit_env()).returncode == 1


def test_inspect_agrees_with_verify_on_any_extended_key_usage(tmp_path):
    """anyExtendedKeyUsage does not stand in for serverAuth or clientAuth: inspect says so, verify and
    openssl refuse such a certificate for either purpose."""
    root = CA.create("Any EKU Root")
    ca_file = _write(tmp_path / "root.pem", root.cert)
    only = _write(tmp_path / "any.pem", _signed_by(root, ["any.example"], eku=["ANY_EXTENDED_KEY_USAGE"],
                                                    san=[x509.DNSName("any.example")]))
    out = _inspect(only).stdout
    assert "EKU           anyExtendedKeyUsage\n" in out
    assert ("Usable for: nothing TLS can use: its extendedKeyUsage holds only anyExtendedKeyUsage (which OpenSSL "
            "and certkit verify do not take for TLS server or client authentication)") in out
    assert "no extendedKeyUsage restricts it" not in out
    for purpose in ("server", "client"):
        assert openssl("verify", "-x509_strict", "-purpose", f"ssl{purpose}", "-CAfile", ca_file,
                       only).returncode != 0
        assert_verify_invalid(run_certkit("verify", only, "--purpose", purpose, "--ca-file", ca_file,
                                          env=certkit_env()), "its extendedKeyUsage (anyExtendedKeyUsage) has no")
    both = _write(tmp_path / "both.pem", _signed_by(root, ["both.example"], san=[x509.DNSName("both.example")],
                                                     eku=["SERVER_AUTH", "ANY_EXTENDED_KEY_USAGE"]))
    out = _inspect(both).stdout
    assert "Usable for: TLS server authentication (both.example) and anyExtendedKeyUsage (which OpenSSL" in out
    _ok(run_certkit("verify", both, "--purpose", "server", "--ca-file", ca_file, env=certkit_env()))
    assert openssl("verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", ca_file, both).returncode != 0
    assert run_certkit("verify", both, "--purpose", "client", "--ca-file", ca_file, env=certkit_env()).returncode == 1
    # A certificate without any extendedKeyUsage is not restricted, for openssl too.
    free = _write(tmp_path / "free.pem", root.issue_server(["free.example"]).cert)
    assert "Usable for: TLS server authentication (free.example)" in _inspect(free).stdout


def test_verify_client_names_in_the_case_servers_map_them(pki, tmp_path):
    """A client's CN, an e-mail's mailbox and a URI's path are compared exactly (PostgreSQL maps the
    CN to a role name case-sensitively; RFC 5280 7.5 for mailboxes; a SPIFFE ID is an exact string);
    an e-mail's domain, a URI's scheme and host, and DNS names in any case."""
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", env=env, check=True)
    run_certkit("issue-client", "svc", "--uri", "spiffe://example.com/ns/prod/sa/Admin", "--email",
                "Ops@example.com", "--dns", "svc.example.com", cwd=tmp_path, env=env, check=True)
    cases = {"svc": True, "SVC": False, "CN=SVC": False, "spiffe://example.com/ns/prod/sa/Admin": True,
             "SPIFFE://Example.COM/ns/prod/sa/Admin": True, "spiffe://example.com/ns/prod/sa/admin": False,
             "Ops@EXAMPLE.com": True, "ops@example.com": False, "SVC.example.COM": True}
    for name, valid in cases.items():
        proc = run_certkit("verify", tmp_path / "svc" / "cert.pem", "--purpose", "client", "--name", name,
                           "--ca-dir", tmp_path / "ca", env=env)
        if valid:
            _ok(proc)
            assert f"name      {name}: matches" in proc.stdout
        else:
            assert_verify_invalid(proc, f"not valid for name {name}: it names CN=svc")


def test_verify_client_name_as_shown(pki):
    """--name takes a client's CN as its value (alice) or as verify shows it (CN=alice); a distinguished
    name is said to be one."""
    for name in ("alice", "CN=alice", "cn=alice"):
        proc = run_certkit("verify", pki / "client" / "cert.pem", "--purpose", "client", "--name", name,
                           "--ca-file", pki / "root.pem", env=certkit_env())
        _ok(proc)
        assert f"name      {name}: matches" in proc.stdout
    for name in ("CN=alice,O=Lab", "/CN=alice", "CN=bob"):
        proc = run_certkit("verify", pki / "client" / "cert.pem", "--purpose", "client", "--name", name,
                           "--ca-file", pki / "root.pem", env=certkit_env())
        assert_verify_invalid(proc, f"not valid for name {name}: it names CN=alice and alice@example.com (--name "
                                    "takes a name's value, such as the CN alice, not a distinguished name)")


def _ku(**bits) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(*[bits.get(n, False) for n in names])


@pytest.mark.parametrize(("ku", "eku", "said", "server_ok", "client_ok"), [
    # keyCertSign alone: no bit a handshake uses (with digitalSignature beside it, a beware: test_audit12_x509)
    (_ku(key_cert_sign=True), ["SERVER_AUTH"], "nothing TLS can use: its keyUsage (keyCertSign) has none of", False,
     False),
    (_ku(crl_sign=True), ["SERVER_AUTH", "CLIENT_AUTH"], "nothing TLS can use: its keyUsage (cRLSign) has none of",
     False, False),
    # keyEncipherment alone: OpenSSL takes it for a server; GnuTLS and Java do not (test_audit14_x509peers)
    (_ku(key_encipherment=True), ["SERVER_AUTH", "CLIENT_AUTH"], "TLS server authentication (ku.example); beware: its "
     "keyUsage (keyEncipherment) has no digitalSignature: GnuTLS", True, False),
], ids=["keyCertSign", "cRLSign", "keyEncipherment"])
def test_inspect_agrees_with_openssl_on_key_usage(tmp_path, ku, eku, said, server_ok, client_ok):
    """An end-entity certificate's keyUsage limits what TLS takes it for (another tool's making: certkit
    never writes these): inspect says what openssl verify -purpose decides."""
    root = CA.create("KU Root")
    ca_file = _write(tmp_path / "root.pem", root.cert)
    cert = _write(tmp_path / "ku.pem", _signed_by(root, ["ku.example"], eku=eku, ku=ku,
                                                   san=[x509.DNSName("ku.example")]))
    assert f"Usable for: {said}" in _inspect(cert).stdout + "\n"
    for purpose, ok in (("sslserver", server_ok), ("sslclient", client_ok)):
        theirs = openssl("verify", "-x509_strict", "-purpose", purpose, "-CAfile", ca_file, cert)
        assert (theirs.returncode == 0) == ok, (purpose, theirs)


# --- a certkit JSON-lines file (--format jsonl) ------------------------------------------
def _jsonl(tmp_path: Path, env: dict, *issue: list[str]) -> Path:
    """The lines ``issue-* ... --format jsonl --out -`` prints for each command of ``issue``, in one file."""
    lines = [run_certkit(*args, "--format", "jsonl", "--out", "-", env=env, check=True).stdout for args in issue]
    path = tmp_path / "f.jsonl"
    path.write_text("".join(lines))
    return path


def test_inspect_and_verify_read_a_jsonl_file(tmp_path, ca_dir, ca_env):
    """Its PEMs are JSON strings (``\\n`` escaped): each line's cert, chain and ca are read, never
    called damaged (they were: 'holds a certificate whose base64 text is damaged')."""
    path = tmp_path / "f.jsonl"
    run_certkit("issue-server", "web.example.com", "--format", "jsonl", "--out", path, env=ca_env, check=True)
    record = json.loads(path.read_text())
    proc = _inspect(path)
    _ok(proc)
    assert "damaged" not in proc.stdout + proc.stderr
    assert "Certificate (f.jsonl: cert [1 of 2])" in proc.stdout
    assert "Usable for: TLS server authentication (web.example.com)" in proc.stdout
    assert "Certificate (f.jsonl: ca [2 of 2])" in proc.stdout and "issuer        CN=certkit test root" in proc.stdout
    assert "f.jsonl: key: private key (ecdsa-p256) matches the certificate CN=web.example.com" in proc.stdout
    assert record["key"].splitlines()[1] not in proc.stdout
    data = json.loads(_inspect(path, "--json").stdout)
    assert data["items"][0]["fingerprint_sha256"] == record["fingerprint_sha256"]
    proc = run_certkit("verify", path, "--purpose", "server", "--name", "web.example.com", env=ca_env)
    _ok(proc)
    assert "VALID as a TLS server certificate" in proc.stdout and "chain     CN=web.example.com -> CN=certkit " \
                                                                  "test root" in proc.stdout
    assert_verify_invalid(run_certkit("verify", path, "--purpose", "client", env=ca_env),
                          "this is a server certificate: it has no clientAuth usage")


def test_verify_of_a_jsonl_file_judges_its_first_line_with_its_chain(tmp_path):
    """Under an intermediate: the first line's cert and chain are what its server sends (the ca is what a
    peer trusts); the other lines are not links of that chain, and the verdict says it judged the first."""
    env = _cli_two_tier(tmp_path)
    issuing = ["--ca-dir", str(tmp_path / "issuing")]
    path = _jsonl(tmp_path, env, ["issue-server", "api.example.internal", *issuing],
                  ["issue-client", "carol", *issuing])
    proc = _inspect(path)
    _ok(proc)
    assert [line for line in proc.stdout.splitlines() if line.startswith("Certificate (")] == [
        "Certificate (f.jsonl line 1: cert [1 of 4])", "Certificate (f.jsonl line 1: chain [2 of 4])",
        "Certificate (f.jsonl line 1: ca [3 of 4])", "Certificate (f.jsonl line 2: cert [4 of 4])"]
    proc = run_certkit("verify", path, "--purpose", "server", "--ca-file", tmp_path / "ca" / "ca.pem", env=env)
    _ok(proc)
    assert "chain     CN=api.example.internal -> CN=Issuing CA 1 -> CN=Root CA" in proc.stdout
    assert ("f.jsonl holds 2 certificates, one per line: this is the verdict on the first, line 1 "
            "(api.example.internal)") in proc.stdout
    one = tmp_path / "one.json"  # one object alone, as jq prints it: over several lines
    one.write_text(json.dumps(json.loads(path.read_text().splitlines()[1]), indent=2))
    proc = run_certkit("verify", "-", "--purpose", "client", "--ca-file", tmp_path / "ca" / "ca.pem", env=env,
                       input=one.read_text())
    _ok(proc)
    assert "VALID as a TLS client certificate" in proc.stdout and "CN=carol -> CN=Issuing CA 1" in proc.stdout


def test_inspect_of_a_damaged_jsonl_file_says_where(pki, tmp_path):
    good = json.dumps({"name": "x", "cert": (pki / "server" / "cert.pem").read_text()})
    cases = [
        (good[:120], "f.jsonl starts like JSON (a certkit JSON-lines file?), but its first line is not a JSON "
                     "object: the file is cut off or damaged"),
        (good + "\n" + good[:120], "line 2 of f.jsonl is not a JSON object: the JSON-lines file is cut off"),
        (good + "\n" + good.replace("MII", "M!I", 1), 'the "cert" of line 2 of f.jsonl holds a certificate whose'),
        ('{"name": "x"}', 'f.jsonl is JSON, but not a certkit JSON-lines record: it has no "cert" field'),
        (good.replace("MII", "M!I", 1), 'the "cert" of f.jsonl holds a certificate whose base64 text is damaged'),
        (json.dumps({"cert": "not a PEM"}), 'the "cert" of f.jsonl is not PEM text'),
    ]
    for text, message in cases:
        (tmp_path / "f.jsonl").write_text(text + "\n")
        assert_clean_error(run_certkit("inspect", "f.jsonl", cwd=tmp_path, env=certkit_env()), message)
