"""certkit sign-csr: CSRs from the openssl binary and from cryptography, signed with the CA's
profile only, checked by openssl, pkilint and a real handshake; bad CSRs refused with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certkit.store import CADirectory
from certkit.tlscheck import Endpoint, client_context, handshake, server_context

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, pkilint_errors, run_certkit

pytestmark = pytest.mark.both_inventories  # every test with a ca_dir runs on PostgreSQL too (team_fixtures)

OPENSSL_KEYS = {"rsa": ["-newkey", "rsa:2048"], "ec": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
                "ed25519": ["-newkey", "ed25519"]}


def openssl_csr(folder: Path, key: str, subj: str, *addext: str, der: bool = False) -> tuple[Path, Path]:
    csr, keyfile = folder / f"{key}.csr", folder / f"{key}.key"
    args = ["req", "-new", *OPENSSL_KEYS[key], "-nodes", "-keyout", keyfile, "-subj", subj, "-out", csr]
    for ext in addext:
        args += ["-addext", ext]
    if der:
        args += ["-outform", "DER"]
    proc = openssl(*args)
    assert proc.returncode == 0, proc.stderr
    return csr, keyfile


def crypto_csr(path: Path, cn: str | None, san: list[x509.GeneralName] = (), *, der: bool = False,
               extensions=()) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    csr = builder.sign(key, hashes.SHA256())
    path.write_bytes(csr.public_bytes(serialization.Encoding.DER if der else serialization.Encoding.PEM))
    return key


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def spki(obj) -> bytes:
    return obj.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.mark.parametrize("key", ["rsa", "ec", "ed25519"])
def test_openssl_csr_signed_as_server(tmp_path, ca_env, ca_dir, key):
    csr, keyfile = openssl_csr(tmp_path, key, "/CN=web.internal", "subjectAltName=DNS:web.internal,IP:127.0.0.1")
    proc = run_certkit("sign-csr", csr, "--server", "--out", "web", "--json", cwd=tmp_path, env=ca_env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    folder = tmp_path / "web"
    assert sorted(p.name for p in folder.iterdir()) == ["ca.pem", "cert.pem", "fullchain.pem"]  # no key
    cert = load(folder / "cert.pem")
    assert spki(cert) == spki(x509.load_pem_x509_csr(csr.read_bytes()))
    assert out["names"] == ["DNS:web.internal", "IP:127.0.0.1"]
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH])
    ok = openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", folder / "ca.pem", folder / "cert.pem")
    assert ok.returncode == 0, ok.stderr
    wrong = openssl("verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", folder / "ca.pem",
                    folder / "cert.pem")
    assert wrong.returncode != 0
    assert pkilint_errors(folder / "cert.pem") == ""
    # The requester's own key (never seen by certkit) serves with the certificate.
    result = handshake(server_context(Endpoint(folder / "fullchain.pem", keyfile), None, require_client_cert=False),
                       client_context(folder / "ca.pem"), server_hostname="web.internal")
    assert result.accepted, result.reason
    assert CADirectory(ca_dir).inventory.get(out["serial"])["kind"] == "server"


@pytest.mark.parametrize("fmt", ["folder", "jsonl", "tar"])
def test_csr_signed_as_peer(tmp_path, ca_env, ca_dir, fmt):
    """--peer: both EKUs, the names of a server (CN, DNS and IP SANs, extra names), in every format."""
    csr, keyfile = openssl_csr(tmp_path, "ec", "/CN=node1.cluster.internal",
                               "subjectAltName=DNS:node1.cluster.internal,IP:10.0.0.11,email:ops@example.com")
    out = {"folder": "node1", "jsonl": "node1.jsonl", "tar": "node1.tar"}[fmt]
    proc = run_certkit("sign-csr", csr, "--peer", "127.0.0.1", "--format", fmt, "--out", out, "--json",
                       cwd=tmp_path, env=ca_env)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["kind"] == "peer" and summary["names"] == [
        "DNS:node1.cluster.internal", "IP:10.0.0.11", "IP:127.0.0.1"]
    assert any("email:ops@example.com" in d and "peer certificate" in d for d in summary["dropped"])
    if fmt == "jsonl":
        line = json.loads((tmp_path / out).read_text())
        (tmp_path / "cert.pem").write_text(line["cert"])
        (tmp_path / "ca.pem").write_text(line["ca"])
        folder = tmp_path
    elif fmt == "tar":
        import tarfile

        with tarfile.open(tmp_path / out) as archive:
            assert "privkey.pem" not in {Path(m.name).name for m in archive.getmembers()}
            archive.extractall(tmp_path / "x", filter="data")
        [folder] = (tmp_path / "x").iterdir()
    else:
        folder = tmp_path / out
    cert = load(folder / "cert.pem")
    assert spki(cert) == spki(x509.load_pem_x509_csr(csr.read_bytes()))
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    for purpose in ("sslserver", "sslclient"):
        ok = openssl("verify", "-x509_strict", "-purpose", purpose, "-CAfile", folder / "ca.pem", folder / "cert.pem")
        assert ok.returncode == 0, ok.stderr
    assert pkilint_errors(folder / "cert.pem") == ""
    assert CADirectory(ca_dir).inventory.get(summary["serial"])["kind"] == "peer"


def test_requested_extensions_are_not_copied(tmp_path, ca_env, ca_dir):
    csr, _ = openssl_csr(tmp_path, "ec", "/CN=web.internal/O=Acme Corp",
                         "subjectAltName=DNS:web.internal,email:ops@example.com",
                         "basicConstraints=critical,CA:TRUE,pathlen:3",
                         "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
                         "extendedKeyUsage=serverAuth,clientAuth,codeSigning",
                         "nameConstraints=critical,permitted;DNS:example.com")
    proc = run_certkit("sign-csr", csr, "--server", "extra.internal", "--json", cwd=tmp_path, env=ca_env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    cert = load(tmp_path / "web.internal" / "cert.pem")
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert not ku.key_cert_sign and not ku.crl_sign and ku.digital_signature
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.NameConstraints)
    assert cert.subject.rfc4514_string() == "CN=web.internal"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["web.internal", "extra.internal"]
    assert san.get_values_for_type(x509.RFC822Name) == []
    dropped = "\n".join(out["dropped"])
    for fragment in ("basicConstraints CA:TRUE, pathlen:3", "codeSigning", "nameConstraints permitted example.com",
                     "keyCertSign", "O=Acme Corp", "email:ops@example.com"):
        assert fragment in dropped, dropped
    assert out["granted"] == []
    assert out["requested"]["subject"] == "O=Acme Corp,CN=web.internal"
    assert out["requested"]["names"] == ["DNS:web.internal", "email:ops@example.com"]
    assert "basicConstraints CA:TRUE, pathlen:3" in out["requested"]["extensions"]
    human = run_certkit("sign-csr", csr, "--server", "--out", "again", cwd=tmp_path, env=ca_env)
    assert "dropped   basicConstraints CA:TRUE" in human.stdout
    assert pkilint_errors(tmp_path / "web.internal" / "cert.pem") == ""


def test_cryptography_client_csr_der(tmp_path, ca_env, ca_dir):
    csr = tmp_path / "alice.der"
    crypto_csr(csr, "alice", [x509.RFC822Name("alice@example.com"),
                              x509.UniformResourceIdentifier("spiffe://example.org/alice"),
                              x509.IPAddress(__import__("ipaddress").ip_address("10.0.0.1"))],
               der=True, extensions=[(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)])
    proc = run_certkit("sign-csr", csr, "--client", "--json", cwd=tmp_path, env=ca_env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["granted"] == ["extendedKeyUsage clientAuth"]
    assert any("IP" in d or "10.0.0.1" in d for d in out["dropped"]), out["dropped"]
    cert = load(tmp_path / "alice" / "cert.pem")
    assert cert.subject.rfc4514_string() == "CN=alice"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["alice@example.com"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://example.org/alice"]
    ok = openssl("verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", tmp_path / "alice" / "ca.pem",
                 tmp_path / "alice" / "cert.pem")
    assert ok.returncode == 0, ok.stderr
    assert openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", tmp_path / "alice" / "ca.pem",
                   tmp_path / "alice" / "cert.pem").returncode != 0


def test_unusual_san_entries_dropped_in_words(tmp_path, ca_env, ca_dir):
    """A directoryName, registeredID or otherName in the SAN is named as OpenSSL names it, not as a Python repr."""
    csr = tmp_path / "odd.csr"
    upn = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
    crypto_csr(csr, "odd.internal", [
        x509.DNSName("odd.internal"),
        x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])),
        x509.RegisteredID(x509.ObjectIdentifier("1.2.3")),
        x509.OtherName(upn, b"\x0c\x03a@b"),
        x509.OtherName(x509.ObjectIdentifier("1.2.3.4"), b"\x02\x01\x05"),  # an INTEGER: shown as its DER
    ])
    words = ["DirName:CN=x", "Registered ID:1.2.3", "othername:UPN:a@b", "othername:1.2.3.4:#020105"]
    proc = run_certkit("sign-csr", csr, "--server", cwd=tmp_path, env=ca_env)
    assert proc.returncode == 0, proc.stderr
    dropped = [line for line in proc.stdout.splitlines() if line.startswith("  dropped")]
    assert dropped == [f"  dropped   subjectAltName {w} (a server certificate names DNS names and IP addresses only)"
                       for w in words]
    # inspect names them the same way (it printed Python reprs: OtherName:b'...', RegisteredID:<ObjectIdentifier>)
    shown = run_certkit("inspect", csr, "--json", env=ca_env, check=True)
    [item] = json.loads(shown.stdout)["items"]
    assert [f"{e['type']}:{e['value']}" for e in item["subject_alt_names"]] == ["DNS:odd.internal", *words]
    text = run_certkit("inspect", csr, env=ca_env, check=True).stdout
    assert f"names asked   {', '.join(['DNS:odd.internal', *words])}" in text
    # and the usual kinds a certificate cannot hold are written as everywhere: IP, URI, email (not ip:, uri:)
    crypto_csr(csr, "mixed", [x509.RFC822Name("m@example.com"), x509.UniformResourceIdentifier("spiffe://e/m"),
                              x509.IPAddress(__import__("ipaddress").ip_address("10.1.1.1"))])
    proc = run_certkit("sign-csr", csr, "--client", "--out", "mixed", cwd=tmp_path, env=ca_env, check=True)
    assert "  dropped   subjectAltName IP:10.1.1.1 (a client certificate" in proc.stdout
    proc = run_certkit("sign-csr", csr, "--server", "--out", "mixed-s", cwd=tmp_path, env=ca_env)
    assert [line.split(" (")[0] for line in proc.stdout.splitlines() if line.startswith("  dropped")] == [
        "  dropped   subjectAltName email:m@example.com", "  dropped   subjectAltName URI:spiffe://e/m"], proc.stdout
    crypto_csr(csr, "odd", [x509.RFC822Name("odd@example.com"), *[
        x509.DirectoryName(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])),
        x509.OtherName(upn, b"\x0c\x03a@b")]])
    proc = run_certkit("sign-csr", csr, "--client", "--json", cwd=tmp_path, env=ca_env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["dropped"] == [
        f"subjectAltName {w} (a client certificate names emails, URIs and DNS names only)"
        for w in ("DirName:CN=x", "othername:UPN:a@b")]
    assert not any(repr_ in proc.stdout for repr_ in ("<Name", "ObjectIdentifier", "b'"))


def test_criticality_is_part_of_what_was_requested(tmp_path, ca_env, ca_dir):
    """A request for a critical extendedKeyUsage is not granted "as requested" by a non-critical one."""
    csr, _ = openssl_csr(tmp_path, "ec", "/CN=crit", "extendedKeyUsage=critical,clientAuth")
    proc = run_certkit("sign-csr", csr, "--client", "--out", "crit", cwd=tmp_path, env=ca_env)
    assert proc.returncode == 0, proc.stderr
    assert "granted" not in proc.stdout
    assert "  dropped   extendedKeyUsage clientAuth, critical (the certificate has it, not critical)" in proc.stdout
    eku = load(tmp_path / "crit" / "cert.pem").extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert not eku.critical and list(eku.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    # And the other way: the profile's keyUsage is critical, the request asked for it not to be.
    csr, _ = openssl_csr(tmp_path, "ec", "/CN=ku.internal", "keyUsage=digitalSignature",
                         "basicConstraints=critical,CA:FALSE")
    proc = run_certkit("sign-csr", csr, "--server", "--json", cwd=tmp_path, env=ca_env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["granted"] == ["basicConstraints CA:FALSE"]
    assert out["dropped"] == ["keyUsage digitalSignature, not critical (the certificate has it, critical)"]


def test_format_k8s_is_not_offered(tmp_path, ca_env, ca_dir):
    """A Secret needs the private key, which the requester of a CSR keeps: click refuses the choice itself,
    before --json's need for --out, naming the formats there are."""
    csr = tmp_path / "web.csr"
    crypto_csr(csr, "web.internal")
    for extra in ([], ["--json"], ["--out", "web.yaml"], ["--out", "web.yaml", "--json"]):
        proc = run_certkit("sign-csr", csr, "--server", "--format", "k8s", *extra, cwd=tmp_path, env=ca_env)
        assert_clean_error(proc, "Invalid value for '--format': 'k8s' is not one of 'folder', 'jsonl', 'tar'.",
                           code=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca", "web.csr"]
    assert CADirectory(ca_dir).inventory.count() == 0
    usage = run_certkit("sign-csr", "--help", env=ca_env).stdout
    assert "--format [folder|jsonl|tar]" in usage and "k8s" not in usage


def _tamper(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1
    return data.replace(old, new)


def _flip_last(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x01])


BAD = {
    "garbage": (lambda p: p.write_bytes(b"this is not a CSR\n"), "is not a certificate signing request in PEM or DER"),
    "truncated-der": ("truncate", "is not a certificate signing request in PEM or DER form (it may be truncated"),
    "truncated-pem": ("truncate-pem", "holds a damaged certificate signing request: it is not valid DER: the data "
                                      "ends too soon"),
    "certificate": (None, "it is PEM '-----BEGIN CERTIFICATE-----'"),
    "tampered-signature": ("sig", "does not verify"),
    "tampered-subject": ("subject", "does not verify"),
    "wildcard-tld": ("*.com", "subjectAltName DNS:*.com is refused: '*.com' is not allowed"),
    "wildcard-public-suffix-cn": ("cn*.co.uk", "common name is refused: '*.co.uk' is not allowed: 'co.uk' is a public"),
    "bad-ip-zone": ("zone", "zone"),
    "no-names": ("nonames", "names no host"),
    "weak-rsa": ("rsa1024", "rsa-1024"),
    "extra-name": ("extra *.com", "The name '*.com' given after the CSR is refused: '*.com' is not allowed"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_csr_refused_nothing_written(tmp_path, ca_env, ca_dir, case):
    action, message = BAD[case]
    csr = tmp_path / "req.csr"
    if callable(action):
        action(csr)
    elif action is None:
        csr.write_bytes((ca_dir / "ca.pem").read_bytes())
    elif action in ("sig", "subject"):
        der, _ = openssl_csr(tmp_path, "ec", "/CN=victim.internal", der=True)
        data = der.read_bytes()
        csr.write_bytes(_flip_last(data) if action == "sig" else _tamper(data, b"victim", b"attack"))
    elif action in ("truncate", "truncate-pem"):
        der, _ = openssl_csr(tmp_path, "ec", "/CN=short.internal", der=True)
        data = der.read_bytes()[:120]
        if action == "truncate-pem":
            import base64

            data = b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(data) + \
                b"-----END CERTIFICATE REQUEST-----\n"
        csr.write_bytes(data)
    elif action == "extra *.com":
        crypto_csr(csr, "www.example.com")
    elif action == "*.com":
        crypto_csr(csr, "www.example.com", [x509.DNSName("www.example.com"), x509.DNSName("*.com")])
    elif action == "cn*.co.uk":
        crypto_csr(csr, "*.co.uk")
    elif action == "zone":
        openssl_csr(tmp_path, "ec", "/CN=host.internal")[0].rename(csr)
    elif action == "nonames":
        crypto_csr(csr, None)
    elif action == "rsa1024":
        proc = openssl("req", "-new", "-newkey", "rsa:1024", "-nodes", "-keyout", tmp_path / "k", "-subj",
                       "/CN=old.internal", "-out", csr)
        assert proc.returncode == 0, proc.stderr
    extra = {"zone": ["fe80::1%eth0"], "extra *.com": ["*.com"]}.get(action, [])
    before = CADirectory(ca_dir).inventory.count()
    proc = run_certkit("sign-csr", csr, "--server", *extra, "--out", "out", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, message)
    assert "ParseError" not in proc.stderr and "asn1" not in proc.stderr  # the parser's internals are not words
    assert not (tmp_path / "out").exists()
    assert CADirectory(ca_dir).inventory.count() == before


def test_usage_errors_and_constraints(tmp_path, ca_env, ca_dir):
    csr = tmp_path / "a.csr"
    crypto_csr(csr, "a.internal")
    no_kind = run_certkit("sign-csr", csr, cwd=tmp_path, env=ca_env)
    assert_clean_error(no_kind, "--server, --client or --peer", code=2)
    for two in (["--server", "--client"], ["--client", "--server"], ["--peer", "--client", "--peer"]):
        both = run_certkit("sign-csr", csr, *two, cwd=tmp_path, env=ca_env)  # not "the last one wins"
        assert_clean_error(both, f"not {two[0]} and {two[1]}", code=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csr", "ca"]
    missing = run_certkit("sign-csr", tmp_path / "nope.csr", "--server", cwd=tmp_path, env=ca_env)
    assert_clean_error(missing, "nope.csr does not exist.")
    client_extra = run_certkit("sign-csr", csr, "--client", "b.internal", cwd=tmp_path, env=ca_env)
    assert_clean_error(client_extra, "extra names are for server certificates")
    no_cn = tmp_path / "nocn.csr"
    crypto_csr(no_cn, None, [x509.RFC822Name("x@example.com")])
    assert_clean_error(run_certkit("sign-csr", no_cn, "--client", cwd=tmp_path, env=ca_env), "no common name")
    # A CA limited to example.com refuses a CSR for another domain, naming it.
    env = dict(ca_env, CERTKIT_CA_DIR=str(tmp_path / "nc"))
    run_certkit("init-ca", "--permit-dns", "example.com", env=env, check=True)
    outside = run_certkit("sign-csr", csr, "--server", "--out", "o", cwd=tmp_path, env=env)
    assert_clean_error(outside, "'a.internal' is outside the name constraints")
    assert not (tmp_path / "o").exists()
    assert CADirectory(tmp_path / "nc").inventory.count() == 0
    # An existing output folder is not overwritten without --force.
    run_certkit("sign-csr", csr, "--server", "--out", "x", cwd=tmp_path, env=ca_env, check=True)
    before = (tmp_path / "x" / "cert.pem").read_bytes()
    again = run_certkit("sign-csr", csr, "--server", "--out", "x", cwd=tmp_path, env=ca_env)
    assert_clean_error(again, "--force")
    assert (tmp_path / "x" / "cert.pem").read_bytes() == before
    assert run_certkit("sign-csr", csr, "--server", "--out", "x", "--force", cwd=tmp_path, env=ca_env).returncode == 0


def test_library_sign_csr():
    from certkit import CA

    ca = CA.create("lib CA")
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "svc.internal")]))
           .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
           .sign(key, hashes.SHA256()))
    issued = ca.sign_csr(csr.public_bytes(serialization.Encoding.PEM), "server")
    assert issued.private_key is None and "privkey.pem" not in issued.bundle_files()
    assert issued.granted == ["basicConstraints CA:FALSE"] and issued.dropped == []
    assert spki(issued.cert) == spki(key)


def test_client_cn_under_constraints_advises_a_new_csr(tmp_path, ca_env):
    """sign-csr has no --dns: under name constraints, the fix for a host-like CN is a new request."""
    env = dict(ca_env, CERTKIT_CA_DIR=str(tmp_path / "nc"))
    run_certkit("init-ca", "--name", "NC", "--permit-dns", "example.internal", env=env, check=True)
    csr, _ = openssl_csr(tmp_path, "ec", "/CN=alice.other.com")
    proc = run_certkit("sign-csr", csr, "--client", "--out", "o", cwd=tmp_path, env=env)
    assert_clean_error(proc, "ask for a new CSR with a subjectAltName DNS entry inside them "
                             "(DNS:alice.example.internal), or with a common name that is not a host name")
    assert "--dns" not in proc.stderr and not (tmp_path / "o").exists()
    proc = run_certkit("issue-client", "alice.other.com", "--out", "o", cwd=tmp_path, env=env)
    assert_clean_error(proc, "(--dns alice.example.internal)")  # issue-client has the option


def test_the_root_does_not_sign_a_csr_made_with_its_intermediates_key(tmp_path):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "root"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Root", env=env, check=True)
    run_certkit("init-ca", "--ca-dir", tmp_path / "inter", "--parent-ca-dir", tmp_path / "root", "--name", "Inter",
                env=env, check=True)
    proc = openssl("req", "-new", "-key", tmp_path / "inter" / "ca-key.pem", "-passin", f"pass:{PASSPHRASE}",
                   "-subj", "/CN=www.example.com", "-out", tmp_path / "w.csr")
    assert proc.returncode == 0, proc.stderr
    proc = run_certkit("sign-csr", tmp_path / "w.csr", "--server", "--out", tmp_path / "w", env=env)
    assert_clean_error(proc, "the key of the intermediate CA 'CN=Inter' this CA issued")
    assert not (tmp_path / "w").exists()
