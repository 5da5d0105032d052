"""The library API after audit library5 (findings 4 to 8) and badinput5 finding 2: renew takes the key it
is given or refuses, a bad choice is a CertkitError, wrong argument types are named before anything is
written, the type hints say what the methods take (and ship with py.typed), library errors give Python
advice while the command line keeps its own, and a certificate given as a private key is called one."""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import tempfile
import tomllib
import typing
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from certkit import CA, CertkitError
from certkit.ca import Host
from certkit.csr import CSRRequest
from certkit.errors import CannotRenew, InvalidArgument, InvalidName
from certkit.issued import IssuedCert
from certkit.key_encryption import is_encrypted, private_key_pem
from certkit.keys import load_private_key
from certkit.sslcontext import BundlePaths

from conftest import PASSPHRASE, REPO, assert_clean_error, certkit_env, run_certkit


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create("Audit5 Library CA")


@pytest.fixture
def env(tmp_path: Path, ca_template: Path) -> dict[str, str]:
    """The CLI with a CA directory and a home of this test's own."""
    shutil.copytree(ca_template, tmp_path / "ca")
    (tmp_path / "home").mkdir()
    return certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), HOME=str(tmp_path / "home"),
                       CERTKIT_CA_PASSPHRASE=PASSPHRASE)


def csr_for(*names: str, cn: str = "a.example") -> x509.CertificateSigningRequest:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
    return builder.sign(key, hashes.SHA256())


def der(cert_or_csr) -> bytes:
    return cert_or_csr.public_bytes(serialization.Encoding.DER)


# --- finding 4: renew's key= and key_type= ---------------------------------------------------------
def test_renew_refuses_key_type_without_rekey(ca: CA, env: dict[str, str], tmp_path: Path) -> None:
    old = ca.issue_server("a.example")
    with pytest.raises(CannotRenew, match=r"^key_type applies to a new key: pass rekey=True\.$"):
        ca.renew(old, key_type="rsa-2048")
    with pytest.raises(CannotRenew, match="rekey=True"):
        ca.renew(old.cert, key_type="ed25519")
    # The command line says it in its own words, and --rekey --key-type still makes a key of that type.
    run_certkit("issue-server", "r.example", "--out", tmp_path / "r", env=env, check=True)
    proc = run_certkit("renew", tmp_path / "r", "--key-type", "rsa-2048", env=env)
    assert_clean_error(proc, "--key-type applies to a new key: add --rekey.", code=2)
    key = (tmp_path / "r" / "privkey.pem").read_bytes()
    out = run_certkit("renew", tmp_path / "r", "--rekey", "--key-type", "ed25519", "--out", tmp_path / "s",
                      env=env, check=True)
    assert "new (ed25519)" in out.stdout
    new = x509.load_pem_x509_certificate((tmp_path / "s" / "cert.pem").read_bytes())
    assert isinstance(new.public_key(), ed25519.Ed25519PublicKey)
    assert (tmp_path / "r" / "privkey.pem").read_bytes() == key


def test_renew_with_rekey_uses_the_key_given(ca: CA) -> None:
    old = ca.issue_server("a.example")
    new_key = ec.generate_private_key(ec.SECP384R1())
    renewed = ca.renew(old, rekey=True, key=new_key)
    assert renewed.cert.public_key() == new_key.public_key()
    assert renewed.private_key is new_key
    assert renewed.private_key_pem == private_key_pem(new_key)
    # key_type still chooses the type of a generated key
    assert isinstance(ca.renew(old.cert, rekey=True, key_type="rsa-2048").private_key, rsa.RSAPrivateKey)


def test_renew_with_rekey_refuses_the_current_key_and_a_contradiction(ca: CA) -> None:
    old = ca.issue_server("a.example")
    with pytest.raises(CannotRenew, match="current key; rekey=True asks for a new one"):
        ca.renew(old.cert, rekey=True, key=old.private_key)
    with pytest.raises(CannotRenew, match="ecdsa-p384, but key_type asks for ed25519"):
        ca.renew(old, rekey=True, key=ec.generate_private_key(ec.SECP384R1()), key_type="ed25519")
    with pytest.raises(CertkitError, match="an rsa-1024 key, which certkit does not sign"):  # held to the key policy
        ca.renew(old, rekey=True, key=rsa.generate_private_key(65537, 1024))


# --- finding 5: a bad choice is a CertkitError ------------------------------------------------------
@pytest.mark.parametrize("call", ["kind", "kind-none", "client_certificates", "key_type", "check_request"])
def test_a_bad_choice_is_a_certkit_error(ca: CA, call: str) -> None:
    from certkit.issuing import Request

    server = ca.issue_server("localhost")
    calls = {
        "kind": lambda: ca.sign_csr(csr_for(), "bogus"),
        "kind-none": lambda: ca.sign_csr(csr_for(), None),
        "client_certificates": lambda: ca.server_context(server, client_certificates="require"),
        "key_type": lambda: ca.issue_server("localhost", key_type="dsa"),
        "check_request": lambda: ca.check_request(Request("bogus", (), "x")),
    }
    with pytest.raises(InvalidArgument) as raised:
        calls[call]()
    assert isinstance(raised.value, CertkitError) and isinstance(raised.value, ValueError)
    assert not isinstance(raised.value, InvalidName)  # which is for names, not key types


def test_client_certificates_of_another_type_is_a_type_error(ca: CA) -> None:
    with pytest.raises(TypeError, match="^client_certificates must be a str, one of required, optional, none, got"):
        ca.server_context(ca.issue_server("localhost"), client_certificates=["required"])


def test_unknown_key_type_is_not_a_bad_name(ca: CA, env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"^Unknown key type 'dsa'; choose one of: ecdsa-p256, ") as raised:
        ca.issue_client("alice", key_type="dsa")
    assert not isinstance(raised.value, InvalidName) and isinstance(raised.value, ValueError)
    # The command line's --key-type is a choice of click's: one usage error line.
    proc = run_certkit("issue-server", "k.example", "--key-type", "dsa", "--out", tmp_path / "k", env=env)
    assert_clean_error(proc, "'dsa' is not one of", code=2)
    assert not (tmp_path / "k").exists()


# --- finding 6: argument types named, nothing written first ------------------------------------------
@pytest.mark.parametrize("ctx", ["x", None, b"ctx"])
def test_configure_cert_names_ctx_before_writing(ca: CA, ctx, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the key would be written for OpenSSL
    server = ca.issue_server("localhost")
    with pytest.raises(TypeError, match=r"^ctx must be an ssl\.SSLContext, got "):
        server.configure_cert(ctx)
    assert list(tmp_path.iterdir()) == []
    server.configure_cert(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))  # a real one still works


@pytest.mark.parametrize(("folder", "extra", "named"), [
    (None, None, "folder must be a str or a Path, got None"),
    (b"w/i", None, "folder must be a str or a Path, got bytes b'w/i'"),
    ("w", ["a"], "extra must be a dict of file name (str) -> content (bytes), got list (not shown: it may be a "
                 "secret)"),
    ("w", {"note.txt": "text"}, "extra must be a dict"),
    ("w", {1: b"data"}, "extra must be a dict"),
])
def test_write_names_a_wrong_argument(ca: CA, tmp_path: Path, monkeypatch, folder, extra, named: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TypeError) as raised:
        ca.issue_server("localhost").write(folder, extra=extra)
    assert str(raised.value) == named or str(raised.value).startswith(named)
    assert list(tmp_path.iterdir()) == []


# --- finding 7: type hints, and py.typed ------------------------------------------------------------
def resolved(function) -> dict:
    """The annotations resolved, with the names each module imports for type checkers only."""
    names = {"x509": x509, "ssl": ssl, "CSRRequest": CSRRequest, "IssuedCert": IssuedCert, "Host": Host,
             "BundlePaths": BundlePaths, "AbstractContextManager": AbstractContextManager,
             "PrivateKey": rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey}
    return typing.get_type_hints(function, localns=names)


def members(hint) -> set:
    return set(typing.get_args(hint)) or {hint}


def test_type_hints_say_what_the_methods_take() -> None:
    assert members(resolved(CA.renew)["old"]) == {x509.Certificate, IssuedCert}
    assert {str, bytes, CSRRequest, x509.CertificateSigningRequest} <= members(resolved(CA.sign_csr)["request"])
    for method in (CA.issue_server, CA.issue_peer):
        taken = resolved(method)["names"]
        assert ipaddress.IPv4Address in members(taken) and ipaddress.IPv6Address in members(taken)
    assert rsa.RSAPrivateKey in members(resolved(IssuedCert)["private_key"])
    assert resolved(CA.server_context)["return"] is ssl.SSLContext
    assert resolved(CA.client_context)["return"] is ssl.SSLContext
    assert resolved(IssuedCert.configure_cert)["ctx"] is ssl.SSLContext
    assert typing.get_origin(resolved(IssuedCert.files)["return"]) is AbstractContextManager


def test_py_typed_ships_with_the_package() -> None:
    import importlib.resources

    assert importlib.resources.files("certkit").joinpath("py.typed").is_file()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["certkit"]


# --- finding 8: library advice in the library, the command line's on the command line ----------------
@pytest.mark.parametrize(("call", "library", "cli_args", "cli"), [
    (lambda ca: ca.issue_server("alice@example.com"), "ca.issue_client(NAME, emails=['alice@example.com'])",
     ["issue-server", "alice@example.com"], "'certkit issue-client NAME --email alice@example.com'."),
    (lambda ca: ca.issue_client("10.0.0.5"), "to certify an address, use ca.issue_server('10.0.0.5').",
     ["issue-client", "10.0.0.5"], "to certify an address, use certkit issue-server 10.0.0.5."),
    (lambda ca: ca.issue_client("spiffe://example.org/billing"), "pass uris=['spiffe://example.org/billing'].",
     ["issue-client", "spiffe://example.org/billing"], "add --uri spiffe://example.org/billing."),
])
def test_library_and_cli_each_give_their_own_advice(ca: CA, env, tmp_path: Path, call, library: str,
                                                    cli_args: list[str], cli: str) -> None:
    with pytest.raises(InvalidName) as raised:
        call(ca)
    assert library in str(raised.value) and "certkit " not in str(raised.value) and "--" not in str(raised.value)
    proc = run_certkit(*cli_args, cwd=tmp_path, env=env)
    assert_clean_error(proc, cli)
    assert "ca.issue" not in proc.stderr and "=[" not in proc.stderr


def test_sign_csr_extra_name_advice(ca: CA, env, tmp_path: Path) -> None:
    """A CSR's refusal wraps the name's: the advice inside it is still each one's own."""
    with pytest.raises(CertkitError, match=r"emails=\['alice@example.com'\]"):
        ca.sign_csr(csr_for("s.example"), "server", extra_names=["alice@example.com"])
    (tmp_path / "req.csr").write_bytes(der(csr_for("s.example")))
    proc = run_certkit("sign-csr", tmp_path / "req.csr", "alice@example.com", "--server", "--out", tmp_path / "o",
                       env=env)
    assert_clean_error(proc, "'certkit issue-client NAME --email alice@example.com'.")


def test_intermediate_namesake_advice(ca: CA, env, tmp_path: Path) -> None:
    with pytest.raises(InvalidName, match=r"give it a name of its own \(CA\.create\(another_name, parent=\.\.\.\)\)"):
        CA.create("Audit5 Library CA", parent=ca)
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "inter", "--parent-ca-dir", env["CERTKIT_CA_DIR"],
                       "--name", "certkit test root", env=dict(env, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE))
    assert_clean_error(proc, "give it a name of its own (--name).")


# --- badinput5 finding 2: a certificate or CSR where a key belongs ------------------------------------
def test_der_certificate_or_csr_is_not_an_encrypted_key(ca: CA) -> None:
    leaf = ca.issue_client("alice")
    for data, held in ((der(leaf.cert), "a certificate"), (der(csr_for()), "a certificate signing request"),
                       (leaf.cert_pem, "a certificate"),
                       (csr_for().public_bytes(serialization.Encoding.PEM), "a certificate signing request")):
        assert not is_encrypted(data)
        with pytest.raises(CertkitError) as raised:
            load_private_key(data, None, source="key k.der")
        assert str(raised.value) == f"The key k.der holds {held}, not a private key."
    # Encrypted PKCS#8 in DER is still told apart, however it was made; a plain key is not encrypted.
    key = ec.generate_private_key(ec.SECP256R1())
    pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.BestAvailableEncryption(b"pass phrase"))
    assert is_encrypted(pkcs8)
    assert load_private_key(pkcs8, b"pass phrase").public_key() == key.public_key()
    plain = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    assert not is_encrypted(plain)
    assert not is_encrypted(b"\x30\x05\x30\x03\x02\x01\x00")  # SEQUENCE { SEQUENCE { INTEGER } }: no key


def test_cli_export_p12_of_a_der_certificate_as_key(env, tmp_path: Path) -> None:
    run_certkit("issue-client", "alice", "--out", tmp_path / "alice", env=env, check=True)
    cert = x509.load_pem_x509_certificate((tmp_path / "alice" / "cert.pem").read_bytes())
    (tmp_path / "alice" / "privkey.pem").write_bytes(der(cert))
    proc = run_certkit("export-p12", tmp_path / "alice", env=dict(env, CERTKIT_P12_PASSWORD="pw123456789"))
    assert_clean_error(proc, f"The key {tmp_path / 'alice' / 'privkey.pem'} holds a certificate, not a private key.")
    assert "encrypted" not in proc.stderr
