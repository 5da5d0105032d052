"""Audit x5098 #1-#5 and badinput8 #7: what ``verify`` and ``inspect`` say agrees with the real peers.

- x5098 #1: a leaf whose Netscape nsCertType lacks the purpose is NOT VALID (OpenSSL's purpose check and
  Python's ssl refuse it); inspect names the extension and its effect; the OID has a name (nsCertType), and
  a subject's emailAddress/serialNumber are shown by name, as OpenSSL shows them.
- x5098 #2: a CA in the path whose extendedKeyUsage lacks the purpose (anyExtendedKeyUsage alone included)
  makes the chain NOT VALID exactly when ``openssl verify -purpose`` refuses it; inspect of such a CA says so.
- x5098 #3: the Ed25519 note tells an Ed25519 leaf (cryptography's verifier accepts it) from an Ed25519 CA
  (it refuses the chain), as cryptography's PolicyBuilder decides.
- x5098 #4: an IPv4-mapped IPv6 address (which a client connecting to the IPv4 address does not match) is
  refused with the IPv4 address to give instead, by every command that parses names.
- x5098 #5: renew prints an empty subject as "(empty)", as issuing does.
- badinput8 #7: ``verify FOLDER`` is NOT VALID when the bundle's privkey.pem or cert.pem cannot be read (a
  server given the folder cannot start: Python's ssl cannot load it); ``inspect FOLDER`` names such files.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, run_certkit

SERVER, CLIENT, ANY = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH, \
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE
NS_CERT_TYPE = ObjectIdentifier("2.16.840.1.113730.1.1")
# The DER BIT STRING of nsCertType: bit 0 client (0x80), bit 1 server (0x40).
NS = {"client": b"\x03\x02\x07\x80", "server": b"\x03\x02\x06\x40", "client,server": b"\x03\x02\x06\xc0"}
HOST = "f.example.com"


def _ca(ca_dir: Path):
    cert = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    return cert, serialization.load_pem_private_key((ca_dir / "ca-key.pem").read_bytes(), PASSPHRASE.encode())


def _sign(issuer, issuer_key, *, cn: str, ca: bool, eku=None, ns: bytes | None = None, subject=None):
    """A certificate signed by ``issuer`` directly (what certkit never issues), and its new key."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    builder = (x509.CertificateBuilder()
               .subject_name(subject or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(issuer.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=ca,
                                            crl_sign=ca, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False))
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
    if ns is not None:
        builder = builder.add_extension(x509.UnrecognizedExtension(NS_CERT_TYPE, ns), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def _pem(*certs) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _write(tmp_path: Path, name: str, certs, key=None) -> Path:
    (tmp_path / f"{name}.pem").write_bytes(_pem(*certs))
    if key is not None:
        (tmp_path / f"{name}-key.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return tmp_path / f"{name}.pem"


def _verdict(ca_env: dict, cert: Path, purpose: str) -> dict:
    proc = run_certkit("verify", cert, "--purpose", purpose, "--name", HOST, "--json", env=ca_env)
    data = json.loads(proc.stdout)
    assert proc.returncode == (0 if data["valid"] else 1), (proc.stdout, proc.stderr)
    return data


def _openssl_ok(ca_dir: Path, cert: Path, purpose: str, untrusted: Path | None = None) -> bool:
    extra = ["-untrusted", untrusted] if untrusted else []
    proc = openssl("verify", "-purpose", f"ssl{purpose}", "-CAfile", ca_dir / "ca.pem", *extra, cert)
    assert proc.returncode == 0 or b"unsuitable certificate purpose" in proc.stdout + proc.stderr, proc
    return proc.returncode == 0


def _python_client_error(chain: Path, key: Path, ca_file: Path) -> str | None:
    """A Python ssl client (CERT_REQUIRED, HOST) against a loopback server presenting ``chain``: its error."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(chain, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            server_ctx.wrap_socket(conn, server_side=True).recv(1)
        except (ssl.SSLError, OSError):
            pass
        finally:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection(listener.getsockname(), timeout=10) as raw, \
                ssl.create_default_context(cafile=ca_file).wrap_socket(raw, server_hostname=HOST):
            return None
    except ssl.SSLCertVerificationError as exc:
        return str(exc)
    finally:
        thread.join(10)
        listener.close()


# --- x5098 #1: nsCertType ---------------------------------------------------------------------------
@pytest.mark.parametrize(("eku", "ns", "purpose"), [([SERVER], "client", "server"), ([CLIENT], "server", "client")])
def test_an_ns_cert_type_without_the_purpose_is_not_valid(tmp_path: Path, ca_dir: Path, ca_env: dict, eku, ns,
                                                          purpose) -> None:
    leaf, key = _sign(*_ca(ca_dir), cn=HOST, ca=False, eku=eku, ns=NS[ns])
    cert = _write(tmp_path, "leaf", [leaf], key)
    assert not _openssl_ok(ca_dir, cert, purpose)
    data = _verdict(ca_env, cert, purpose)
    assert not data["valid"]
    assert any(f"nsCertType: {ns}" in r and f"has no {purpose}" in r for r in data["reasons"]), data["reasons"]
    if purpose == "server":  # and Python's ssl, which certkit names, refuses it in a handshake
        assert "unsuitable certificate purpose" in _python_client_error(cert, tmp_path / "leaf-key.pem",
                                                                        ca_dir / "ca.pem")
    shown = run_certkit("inspect", cert, env=ca_env, check=True).stdout
    assert f"nsCertType    {ns} (Netscape certificate type)" in shown, shown
    assert f"rules out TLS {purpose} authentication" in shown, shown
    # Both types named: OpenSSL, Python's ssl and certkit take it for either purpose.
    leaf, key = _sign(*_ca(ca_dir), cn=HOST, ca=False, eku=eku, ns=NS["client,server"])
    cert = _write(tmp_path, "both", [leaf], key)
    assert _openssl_ok(ca_dir, cert, purpose) and _verdict(ca_env, cert, purpose)["valid"]
    if purpose == "server":
        assert _python_client_error(cert, tmp_path / "both-key.pem", ca_dir / "ca.pem") is None
    assert "rules out" not in run_certkit("inspect", cert, env=ca_env, check=True).stdout


def test_ns_cert_type_email_address_and_serial_number_have_names(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    from certkit.vocabulary import oid_name

    assert oid_name(NS_CERT_TYPE) == "nsCertType"
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x"),
                         x509.NameAttribute(NameOID.EMAIL_ADDRESS, "x@example.com"),
                         x509.NameAttribute(NameOID.SERIAL_NUMBER, "42")])
    leaf, _ = _sign(*_ca(ca_dir), cn="x", ca=False, eku=[CLIENT], subject=subject)
    cert = _write(tmp_path, "leaf", [leaf])
    theirs = openssl("x509", "-in", cert, "-noout", "-subject", "-nameopt", "RFC2253").stdout.decode()
    assert "emailAddress=x@example.com" in theirs and "serialNumber=42" in theirs, theirs
    data = json.loads(run_certkit("inspect", cert, "--json", env=ca_env, check=True).stdout)
    assert data["items"][0]["subject"] == "serialNumber=42,emailAddress=x@example.com,CN=x"


# --- x5098 #2: the extendedKeyUsage of every CA in the path -----------------------------------------
# (A CA without extendedKeyUsage, as certkit makes every CA, restricts nothing: test_intermediate.py.)
@pytest.mark.parametrize("ca_eku", [[SERVER], [CLIENT], [ANY], [SERVER, ANY]],
                         ids=["serverAuth", "clientAuth", "anyEKU", "serverAuth+anyEKU"])
def test_an_intermediates_eku_is_judged_as_openssl_judges_it(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                              ca_eku) -> None:
    inter, inter_key = _sign(*_ca(ca_dir), cn="Int", ca=True, eku=ca_eku)
    leaf, key = _sign(inter, inter_key, cn=HOST, ca=False, eku=[SERVER, CLIENT])
    chain = _write(tmp_path, "fullchain", [leaf, inter], key)
    _write(tmp_path, "leaf", [leaf])
    _write(tmp_path, "int", [inter])
    for purpose in ("server", "client"):
        theirs = _openssl_ok(ca_dir, tmp_path / "leaf.pem", purpose, untrusted=tmp_path / "int.pem")
        data = _verdict(ca_env, chain, purpose)
        assert data["valid"] == theirs, (purpose, data["reasons"])
        if not theirs:
            assert any("the issuing CA CN=Int has an extendedKeyUsage" in r for r in data["reasons"]), data
    if ca_eku == [ANY]:
        assert "unsuitable certificate purpose" in _python_client_error(chain, tmp_path / "fullchain-key.pem",
                                                                        ca_dir / "ca.pem")
        shown = run_certkit("inspect", tmp_path / "int.pem", env=ca_env, check=True).stdout
        assert "refuse the TLS server and client certificates it issues" in shown, shown
        assert "anyExtendedKeyUsage does not stand in for it" in shown, shown


# --- x5098 #3: Ed25519 -------------------------------------------------------------------------------
def _cryptography_accepts(leaf_pem: Path, root_pem: Path) -> bool:
    from cryptography.x509.verification import DNSName, PolicyBuilder, Store, VerificationError

    leaf = x509.load_pem_x509_certificate(leaf_pem.read_bytes())
    root = x509.load_pem_x509_certificate(root_pem.read_bytes())
    verifier = PolicyBuilder().store(Store([root])).time(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)) \
        .build_server_verifier(DNSName("ed.example.com"))
    try:
        verifier.verify(leaf, [])
        return True
    except VerificationError:
        return False


def test_the_ed25519_note_tells_a_leaf_from_a_ca(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    leaf = run_certkit("issue-server", "--key-type", "ed25519", "--out", tmp_path / "ed", "ed.example.com",
                       env=ca_env, check=True)
    assert _cryptography_accepts(tmp_path / "ed" / "cert.pem", ca_dir / "ca.pem")
    note = next(line for line in leaf.stdout.splitlines() if "Ed25519" in line)
    assert "cryptography's verifier accepts it" in note and "browsers" in note, note
    ed_env = {**ca_env, "CERTKIT_CA_DIR": str(tmp_path / "edca")}
    run_certkit("init-ca", "--name", "Ed root", "--key-type", "ed25519", env=ed_env, check=True)
    under = run_certkit("issue-server", "--out", tmp_path / "under", "ed.example.com", env=ed_env, check=True)
    assert not _cryptography_accepts(tmp_path / "under" / "cert.pem", tmp_path / "edca" / "ca.pem")
    note = next(line for line in under.stdout.splitlines() if "Ed25519" in line)
    assert "this CA (or a CA above it) has an Ed25519 key" in note
    assert "cryptography's) refuse every certificate under it" in note
    renew_page = (Path(__file__).parents[1] / "docs" / "renew.md").read_text()
    assert "WebPKI verifiers (Chrome, cryptography) accept only" not in renew_page


# --- x5098 #4: IPv4-mapped IPv6 addresses -------------------------------------------------------------
def _mapped_does_not_match(tmp_path: Path, ca_dir: Path) -> None:
    """Why it is refused: OpenSSL does not match a client's 192.0.2.1 against IP:::ffff:c000:201."""
    import ipaddress

    ca, ca_key = _ca(ca_dir)
    leaf, _ = _sign(ca, ca_key, cn="m", ca=False, eku=[SERVER])
    mapped = x509.CertificateBuilder(
        subject_name=leaf.subject, issuer_name=leaf.issuer, public_key=leaf.public_key(),
        serial_number=leaf.serial_number, not_valid_before=leaf.not_valid_before_utc,
        not_valid_after=leaf.not_valid_after_utc,
        extensions=[e for e in leaf.extensions if e.oid != x509.SubjectAlternativeName.oid]
        + [x509.Extension(x509.SubjectAlternativeName.oid, False, x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("::ffff:192.0.2.1"))]))]).sign(ca_key, hashes.SHA256())
    cert = _write(tmp_path, "mapped", [mapped])
    proc = openssl("verify", "-purpose", "sslserver", "-verify_ip", "192.0.2.1", "-CAfile", ca_dir / "ca.pem", cert)
    assert proc.returncode != 0 and b"IP address mismatch" in proc.stdout + proc.stderr, proc


@pytest.mark.parametrize("args", [
    ("issue-server", "::ffff:192.0.2.1"),
    ("issue-server", "0:0:0:0:0:ffff:c000:0201"),
    ("issue-peer", "node.example.com", "::FFFF:192.0.2.1"),
    ("verify", "--purpose", "server", "--name", "::ffff:192.0.2.1", "ca/ca.pem"),
], ids=["server", "server-hex", "peer", "verify-name"])
def test_every_command_refuses_a_mapped_address(tmp_path: Path, ca_dir: Path, ca_env: dict, args) -> None:
    proc = run_certkit(*args, cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, "written as IPv6 (IPv4-mapped)", code=proc.returncode or 1)
    assert "give the IPv4 address itself (192.0.2.1)" in proc.stderr, proc.stderr
    assert not list(tmp_path.glob("*.example.com")) and not (tmp_path / "192.0.2.1").exists()


def test_a_batch_line_and_a_csr_with_a_mapped_address_are_refused(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    import ipaddress

    (tmp_path / "m.csv").write_text("kind,names\nserver,::ffff:192.0.2.1\n")
    assert_clean_error(run_certkit("issue-batch", "m.csv", "--out-dir", "out", cwd=tmp_path, env=ca_env),
                       "line 2: '::ffff:192.0.2.1' is the IPv4 address 192.0.2.1 written as IPv6")
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                                                              "x.example")]))
           .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("::ffff:192.0.2.1"))]),
                          critical=False).sign(key, hashes.SHA256()))
    (tmp_path / "x.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    proc = run_certkit("sign-csr", "x.csr", "--server", "--out", "xs", cwd=tmp_path, env=ca_env)
    assert_clean_error(proc, "is the IPv4 address 192.0.2.1 written as IPv6 (IPv4-mapped)")
    _mapped_does_not_match(tmp_path, ca_dir)
    # The addresses no client connects to keep their own words.
    assert_clean_error(run_certkit("issue-server", "::ffff:0.0.0.0", cwd=tmp_path, env=ca_env),
                       "is the unspecified address")
    assert_clean_error(run_certkit("issue-server", "::ffff:224.0.0.1", cwd=tmp_path, env=ca_env),
                       "is a multicast address")


# --- x5098 #5: an empty subject -----------------------------------------------------------------------
def test_renew_says_an_empty_subject_is_empty(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    long_name = "a" * 63 + ".example.com"  # too long for a CN: the subject is empty, the SAN names it
    issued = run_certkit("issue-server", "--out", "long", long_name, cwd=tmp_path, env=ca_env, check=True)
    assert "  subject   (empty)" in issued.stdout.splitlines()
    renewed = run_certkit("renew", "long", cwd=tmp_path, env=ca_env, check=True)
    assert "  subject     (empty)" in renewed.stdout.splitlines(), renewed.stdout


# --- badinput8 #7: a bundle folder whose files cannot be read -----------------------------------------
def _damage(folder: Path, how: str) -> str:
    key, cert = folder / "privkey.pem", folder / "cert.pem"
    if how == "random key":
        key.write_bytes(os.urandom(4096))
    elif how == "empty key":
        key.write_bytes(b"")
    elif how == "key folder":
        key.unlink()
        key.mkdir()
    elif how == "key to urandom":
        key.unlink()
        key.symlink_to("/dev/urandom")
    elif how == "dangling cert":
        cert.unlink()
        cert.symlink_to("gone.pem")
    return "cert.pem" if "cert" in how else "privkey.pem"


@pytest.mark.parametrize("how", ["random key", "empty key", "key folder", "key to urandom", "dangling cert"])
def test_verify_of_a_folder_with_an_unreadable_file_is_not_valid(tmp_path: Path, ca_dir: Path, ca_env: dict,
                                                                 how: str) -> None:
    run_certkit("issue-server", "--out", "b", HOST, cwd=tmp_path, env=ca_env, check=True)
    name = _damage(tmp_path / "b", how)
    with pytest.raises((ssl.SSLError, OSError)):  # what a server given the folder meets: it cannot start
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(tmp_path / "b" / "cert.pem",
                                                                tmp_path / "b" / "privkey.pem")
    proc = run_certkit("verify", "b", "--purpose", "server", "--name", HOST, cwd=tmp_path, env=ca_env)
    assert proc.returncode == 1 and proc.stdout.startswith("b: NOT VALID"), (proc.stdout, proc.stderr)
    assert f"the folder's {name} " in proc.stdout and "cannot start" in proc.stdout, proc.stdout
    if how in ("key folder", "key to urandom", "dangling cert"):  # inspect reads around them: it names them
        shown = run_certkit("inspect", "b", cwd=tmp_path, env=ca_env, check=True).stdout
        assert f"{name}: not read: it is " in shown, shown


def test_verify_of_a_folder_names_a_ca_pem_it_cannot_read(tmp_path: Path, ca_dir: Path, ca_env: dict) -> None:
    run_certkit("issue-server", "--out", "b", HOST, cwd=tmp_path, env=ca_env, check=True)
    (tmp_path / "b" / "ca.pem").unlink()
    (tmp_path / "b" / "ca.pem").symlink_to("ca.pem")  # a loop
    with pytest.raises((ssl.SSLError, OSError)):
        ssl.create_default_context(cafile=tmp_path / "b" / "ca.pem")
    proc = run_certkit("verify", "b", "--purpose", "server", "--name", HOST, cwd=tmp_path, env=ca_env)
    assert "the folder's ca.pem, the CA its peers are told to trust, is a loop of symbolic links" in proc.stdout
    assert "ca.pem: not read: it is a loop of symbolic links" in run_certkit(
        "inspect", "b", cwd=tmp_path, env=ca_env, check=True).stdout


# --- the same classes, in sign-csr's words and init-ca's constraints ----------------------------------------------
def test_sign_csr_names_what_it_drops(ca_dir, ca_env, tmp_path):
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            str(tmp_path / "k.key"), "-subj", "/CN=c.example/emailAddress=a@b.example/serialNumber=123",
            "-addext", "nsCertType=client", "-addext", "subjectAltName=DNS:c.example", "-out", str(tmp_path / "r.csr"))
    proc = run_certkit("sign-csr", tmp_path / "r.csr", "--server", "--out", tmp_path / "o", env=ca_env, check=True)
    dropped = [line.split("dropped", 1)[1].strip() for line in proc.stdout.splitlines() if "dropped" in line]
    assert dropped == ["nsCertType (not in the certificate)", "subject attribute emailAddress=a@b.example",
                       "subject attribute serialNumber=123"], proc.stdout


@pytest.mark.parametrize("network", ["::ffff:10.0.0.0/104", "::ffff:0:0/96"])
def test_a_mapped_range_is_not_a_constraint(tmp_path, network):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    proc = run_certkit("init-ca", "--name", "Mapped", "--permit-ip", network, env=env)
    assert_clean_error(proc, "is IPv4 written as IPv6 (IPv4-mapped)")
    assert "permit the IPv4 range itself" in proc.stderr and not (tmp_path / "ca").exists()


def test_list_and_revoke_say_an_empty_subject_is_empty(ca_dir, ca_env, tmp_path):
    long_name = "a" * 63 + ".example.com"  # longer than a CN holds: the subject is empty, the name in the SAN
    run_certkit("issue-server", long_name, "--out", tmp_path / "long", env=ca_env, check=True)
    listed = run_certkit("list", env=ca_env, check=True).stdout
    assert "  (empty)  " + long_name in listed, listed
    revoked = run_certkit("revoke", tmp_path / "long", env=ca_env, check=True).stdout
    assert "  subject   (empty)\n" in revoked, revoked


def test_a_renewal_names_a_mapped_address_it_carries_over(ca_dir, ca_env, tmp_path):
    """regress10 #5: a certificate that names an IPv4-mapped address (made before certkit refused them, or by
    the library) is renewed with its names, and the renewal says what that address means to clients."""
    import dataclasses

    from certkit.issuing import FolderTarget, deliver, server_request
    from certkit.names import Identity
    from certkit.store import CADirectory

    ca = CADirectory(ca_dir).load(PASSPHRASE.encode())
    request = server_request(["mapped.example"])
    request = dataclasses.replace(request, identities=[*request.identities, Identity("ip", "::ffff:c000:209")])
    deliver(ca, request, FolderTarget(tmp_path / "m"))
    proc = run_certkit("renew", tmp_path / "m", env=ca_env, check=True)
    assert "it names ::ffff:c000:209, the IPv4 address 192.0.2.9 written as IPv6" in proc.stdout, proc.stdout


@pytest.mark.parametrize("before", [b"# web01 key\n", b"\xef\xbb\xbf"])
def test_a_key_openssl_reads_is_read(ca_dir, ca_env, tmp_path, before):
    """regress10 #3: text or a byte-order mark before the PEM key made verify call the folder NOT VALID (and
    inspect say the key both matched and was unreadable); OpenSSL and Python's ssl load such a key."""
    run_certkit("issue-server", "v.example", "--out", tmp_path / "v", env=ca_env, check=True)
    key = tmp_path / "v" / "privkey.pem"
    key.write_bytes(before + key.read_bytes())
    assert openssl("pkey", "-in", str(key), "-noout").returncode == 0
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(tmp_path / "v" / "fullchain.pem", key)
    proc = run_certkit("verify", tmp_path / "v", "--purpose", "server", "--name", "v.example", env=ca_env)
    assert proc.returncode == 0 and "VALID" in proc.stdout, proc.stdout + proc.stderr
    inspected = run_certkit("inspect", tmp_path / "v", env=ca_env, check=True).stdout
    assert "matches the certificate" in inspected and "not read" not in inspected, inspected
