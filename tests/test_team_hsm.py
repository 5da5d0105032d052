"""The CA key in a real SoftHSM2 token (tests/team_hsm.py), through the command line: generated in
the token as sensitive and never extractable (or one already there), every certificate and CRL
signed by the token and proven by openssl, pkilint and real mutual-TLS handshakes, for each key
type; the key never leaves the token; PIN sources and refusals; intermediates across a key file
and the token in both directions; ``certkit check``; forked batch workers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certkit.store import CADirectory
from certkit.tlscheck import Endpoint, client_context, handshake, server_context
from certkit.vocabulary import serial_hex

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, pkilint_errors, run_certkit
from team_terminal import run_on_terminal

# Every type a token key can be (Ed25519 is refused, with its own words: test_pin_sources_and_refusals).
TOKEN_TYPES = ["ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096"]


@pytest.fixture(autouse=True)
def _real_processes(monkeypatch):
    """A PKCS#11 login and a libpq password prompt belong to a process: certkit runs as a real one here."""
    monkeypatch.setenv("CERTKIT_TEST_SUBPROCESS", "1")


def env_for(tmp_path: Path, token, name: str = "ca", **extra) -> dict[str, str]:
    return certkit_env(CERTKIT_CA_DIR=str(tmp_path / name), CERTKIT_PKCS11_PIN=token.pin, **extra)


def init_token_ca(tmp_path: Path, token, *args: str, name: str = "ca", obj: str = "root") -> dict:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / name))  # the PIN from --pin-file here
    proc = run_certkit("init-ca", "--name", f"HSM {name}", "--key-uri", token.uri(obj), "--pkcs11-module",
                       token.module, "--pin-file", token.pin_file, "--json", *args, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def crl_lint_errors(path: Path) -> str:
    """pkilint's RFC 5280 CRL linter: its ERROR-level findings (empty when clean)."""
    import shutil
    import subprocess

    exe = shutil.which("lint_crl")
    assert exe, "lint_crl is not installed (pip install pkilint)"
    proc = subprocess.run([exe, "lint", "-t", "CRL", "-p", "PKIX", "-s", "ERROR", str(path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.stdout.strip()


def verify(ca: Path, cert: Path, purpose: str, *extra) -> bool:
    return openssl("verify", "-x509_strict", "-purpose", purpose, "-CAfile", ca, *extra, cert).returncode == 0


@pytest.mark.parametrize("key_type", TOKEN_TYPES)
def test_token_ca_signs_what_peers_accept(tmp_path, token, key_type):
    data = init_token_ca(tmp_path, token, "--key-type", key_type)
    assert data["key_type"] == key_type and data["key_generated"] is True
    assert data["key_extractable"] is False and data["key_sensitive"] is True
    ca_pem = tmp_path / "ca" / "ca.pem"
    assert pkilint_errors(ca_pem) == ""
    env = env_for(tmp_path, token)
    run_certkit("issue-server", "web.internal", "127.0.0.1", cwd=tmp_path, env=env, check=True)
    run_certkit("issue-client", "alice", cwd=tmp_path, env=env, check=True)
    run_certkit("issue-client", "mallory", cwd=tmp_path, env=env, check=True)
    server, alice = tmp_path / "web.internal", tmp_path / "alice"
    # Signed by the token's key: openssl (purposes), pkilint (profiles and the chain).
    assert verify(ca_pem, server / "cert.pem", "sslserver") and not verify(ca_pem, server / "cert.pem", "sslclient")
    assert verify(ca_pem, alice / "cert.pem", "sslclient") and not verify(ca_pem, alice / "cert.pem", "sslserver")
    for leaf in (server, alice):
        assert pkilint_errors(leaf / "cert.pem") == ""
        assert pkilint_errors(ca_pem, leaf / "cert.pem") == ""
    expected = {"ecdsa-p256": "ecdsa-with-SHA256", "ecdsa-p384": "ecdsa-with-SHA384"}.get(key_type,
                                                                                        "sha256WithRSAEncryption")
    assert load(server / "cert.pem").signature_algorithm_oid._name == expected
    # A real mutual-TLS handshake: the client certificate accepted; the server's refused as a client.
    ok = handshake(server_context(Endpoint(server / "fullchain.pem", server / "privkey.pem"), ca_pem),
                   client_context(ca_pem, Endpoint(alice / "fullchain.pem", alice / "privkey.pem")),
                   server_hostname="web.internal")
    assert ok.accepted, ok.reason
    wrong = handshake(server_context(Endpoint(server / "fullchain.pem", server / "privkey.pem"), ca_pem),
                      client_context(ca_pem, Endpoint(server / "fullchain.pem", server / "privkey.pem")),
                      server_hostname="web.internal")
    assert not wrong.accepted and "unsuitable certificate purpose" in wrong.reason
    # Revocation: the CRL is signed by the token, and openssl then refuses the revoked client.
    run_certkit("revoke", tmp_path / "mallory", env=env, check=True)
    run_certkit("crl", "--out", tmp_path / "crl.pem", env=env, check=True)
    assert openssl("crl", "-in", tmp_path / "crl.pem", "-noout", "-verify", "-CAfile", ca_pem).returncode == 0
    assert crl_lint_errors(tmp_path / "crl.pem") == ""
    crl_check = ("-crl_check", "-CRLfile", tmp_path / "crl.pem")
    assert verify(ca_pem, alice / "cert.pem", "sslclient", *crl_check)
    assert not verify(ca_pem, tmp_path / "mallory" / "cert.pem", "sslclient", *crl_check)


def test_the_key_never_leaves_the_token(tmp_path, token):
    data = init_token_ca(tmp_path, token)
    # OpenSC's pkcs11-tool, an independent client, reads the key's attributes from the token.
    listed = token.tool("--list-objects", "--type", "privkey")
    assert listed.returncode == 0, listed.stderr
    assert "never extractable" in listed.stdout and "sensitive" in listed.stdout and "local" in listed.stdout
    assert "label:      root" in listed.stdout
    # Asked directly (python-pkcs11, not certkit's code), the token refuses the private value and
    # refuses to make the key extractable. In a process of its own: one that loaded SoftHSM earlier (this
    # test process, through in-process certkit runs) may not list a token made since.
    script = textwrap.dedent(f"""
        import json, pkcs11
        from pkcs11 import Attribute
        session = pkcs11.lib({token.module!r}).get_token(token_label={token.label!r}).open(
            rw=True, user_pin={token.pin!r})
        seen = {{}}
        try:
            private = session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, label="root")
            try:
                private[Attribute.VALUE]
                seen["value"] = "read"
            except pkcs11.AttributeSensitive:
                seen["value"] = "refused"
            seen["never_extractable"] = bool(private[Attribute.NEVER_EXTRACTABLE])
            seen["extractable"] = bool(private[Attribute.EXTRACTABLE])
            try:
                private[Attribute.EXTRACTABLE] = True
                seen["made_extractable"] = "allowed"
            except pkcs11.PKCS11Error:
                seen["made_extractable"] = "refused"
            seen["extractable_after"] = bool(private[Attribute.EXTRACTABLE])
        finally:
            session.close()
        print(json.dumps(seen))
    """)
    asked = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout) == {"value": "refused", "never_extractable": True, "extractable": False,
                                        "made_extractable": "refused", "extractable_after": False}
    assert data["key_uri"] == token.uri("root")
    # The CA directory holds the certificate, where to find the key, and the inventory: no key material.
    ca_dir = tmp_path / "ca"
    assert sorted(p.name for p in ca_dir.iterdir()) == ["ca.pem", "certkit-ca.json", "inventory.sqlite3"]
    assert json.loads((ca_dir / "certkit-ca.json").read_text()) == {
        "key": token.uri("root"), "pkcs11_module": token.module}
    for path in ca_dir.iterdir():
        body = path.read_bytes()
        assert b"PRIVATE KEY" not in body
        for loader in (serialization.load_pem_private_key, serialization.load_der_private_key):
            with pytest.raises((ValueError, TypeError)):
                loader(body, None)
    # Nor does issuing write one there (only the empty file whose byte ranges lock a bundle folder per writer).
    run_certkit("issue-server", "a.internal", cwd=tmp_path, env=env_for(tmp_path, token), check=True)
    assert sorted(p.name for p in ca_dir.iterdir()) == [".certkit-bundles.lock", "ca.pem", "certkit-ca.json",
                                                        "inventory.sqlite3"]
    assert (ca_dir / ".certkit-bundles.lock").stat().st_size == 0


def test_an_existing_key_in_the_token_is_used(tmp_path, token):
    made = token.tool("--keypairgen", "--key-type", "EC:secp384r1", "--label", "made-by-opensc", "--id", "0a",
                      "--usage-sign", "--sensitive")
    assert made.returncode == 0, made.stderr
    data = init_token_ca(tmp_path, token, obj="made-by-opensc")
    assert data["key_generated"] is False and data["key_type"] == "ecdsa-p384"
    # The CA certificate carries the public key pkcs11-tool lists in the token (EC_POINT, a DER
    # OCTET STRING around the X9.62 point).
    ca_key = load(tmp_path / "ca" / "ca.pem").public_key()
    point = ca_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    listed = token.tool("--list-objects", "--type", "pubkey", login=False).stdout
    block = next(b for b in listed.split("Public Key Object") if "label:      made-by-opensc" in b)
    ec_point = next(line.split()[1] for line in block.splitlines() if "EC_POINT:" in line)
    assert ec_point.endswith(point.hex()) and len(ec_point) == 2 * (len(point) + 2)
    # The key type of an existing key is the key's: asking for another is refused, nothing created.
    other = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "other"), CERTKIT_PKCS11_PIN=token.pin)
    assert_clean_error(run_certkit("init-ca", "--key-uri", token.uri("made-by-opensc"), "--pkcs11-module",
                                   token.module, "--key-type", "rsa-2048", env=other), "is an ecdsa-p384 key")
    assert not (tmp_path / "other").exists()
    # An extractable key is used, with a warning that it can leave the token.
    token.tool("--keypairgen", "--key-type", "EC:prime256v1", "--label", "loose", "--id", "0b", "--usage-sign",
               "--extractable")
    proc = run_certkit("init-ca", "--key-uri", token.uri("loose"), "--pkcs11-module", token.module,
                       "--ca-dir", tmp_path / "loose", env=other)
    assert proc.returncode == 0 and "it can leave the token" in proc.stderr


def test_rsa_pss_through_the_token(tmp_path, token):
    """PSS signatures (RFC 4055: SHA-256, MGF1-SHA-256, 32-byte salt) made by the token: a PSS CA, a
    leaf and a CRL, checked by openssl."""
    from certkit import pkcs11
    from certkit.ca import CA
    from certkit.inventory import Inventory

    key = pkcs11.generate_key(token.uri("pss"), token.module, token.pin.encode(), "rsa-2048")
    key.rsa_pss = True
    ca = CA.create("PSS root", key=key)
    assert ca.cert.signature_algorithm_oid == x509.oid.SignatureAlgorithmOID.RSASSA_PSS
    inventory = Inventory(tmp_path / "inventory.sqlite3")
    inventory.create()
    ca.inventory = inventory
    leaf = ca.issue_server(["pss.internal"])
    ca.revoke(leaf.serial_hex)
    crl = ca.crl()
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    (tmp_path / "leaf.pem").write_bytes(leaf.cert_pem)
    (tmp_path / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    text = openssl("x509", "-in", tmp_path / "leaf.pem", "-noout", "-text").stdout.decode()
    assert "rsassaPss" in text and "Salt Length: 0x20" in text
    assert verify(tmp_path / "ca.pem", tmp_path / "leaf.pem", "sslserver")
    assert openssl("crl", "-in", tmp_path / "crl.pem", "-noout", "-verify", "-CAfile", tmp_path / "ca.pem"
                   ).returncode == 0
    assert serial_hex(next(iter(crl)).serial_number) == leaf.serial_hex
    key.close()


def test_intermediates_across_a_key_file_and_the_token(tmp_path, token):
    """A file-key root over a token intermediate, and a token root over a file-key intermediate."""
    file_env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "file-root"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "File root", env=file_env, check=True)
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "token-issuing", "--name", "Token issuing",
                       "--parent-ca-dir", tmp_path / "file-root", "--key-uri", token.uri("issuing"),
                       "--pkcs11-module", token.module, "--pin-file", token.pin_file, "--json",
                       env=dict(file_env, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE))
    assert proc.returncode == 0, proc.stderr
    init_token_ca(tmp_path, token, name="token-root", obj="root")
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "file-issuing", "--name", "File issuing",
                       "--parent-ca-dir", tmp_path / "token-root", "--json",
                       env=certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE, CERTKIT_PKCS11_PIN=token.pin))
    assert proc.returncode == 0, proc.stderr
    for issuing, root in (("token-issuing", "file-root"), ("file-issuing", "token-root")):
        env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / issuing), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                          CERTKIT_PKCS11_PIN=token.pin)
        out = tmp_path / f"leaf-{issuing}"
        run_certkit("issue-server", "svc.internal", "--out", out, env=env, check=True)
        assert verify(tmp_path / root / "ca.pem", out / "cert.pem", "sslserver", "-untrusted", out / "chain.pem")
        assert pkilint_errors(tmp_path / issuing / "ca.pem", out / "cert.pem") == ""
        assert pkilint_errors(tmp_path / root / "ca.pem", tmp_path / issuing / "ca.pem") == ""
        # The root's CRL lists the intermediate's serial when revoked; the token or the file signs it.
        root_env = dict(env, CERTKIT_CA_DIR=str(tmp_path / root))
        run_certkit("revoke", serial_hex(load(tmp_path / issuing / "ca.pem").serial_number), env=root_env,
                    check=True)
        run_certkit("crl", "--out", tmp_path / f"{root}.crl", env=root_env, check=True)
        assert openssl("crl", "-in", tmp_path / f"{root}.crl", "-noout", "-verify", "-CAfile",
                       tmp_path / root / "ca.pem").returncode == 0


def test_pin_sources_and_refusals(tmp_path, token, softhsm):
    init_token_ca(tmp_path, token)
    base = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"))
    # Wrong PIN: said plainly, not retried (tokens lock after a few).
    proc = run_certkit("issue-server", "a.internal", cwd=tmp_path, env=dict(base, CERTKIT_PKCS11_PIN="0000"))
    assert_clean_error(proc, "refused the PIN")
    assert "0000" not in proc.stderr and not (tmp_path / "a.internal").exists()
    # No PIN and no terminal: the places it may come from are named.
    assert_clean_error(run_certkit("issue-server", "a.internal", cwd=tmp_path, env=base), "$CERTKIT_PKCS11_PIN")
    # --passphrase-file gives the token's PIN for issuing commands; it must be private.
    proc = run_certkit("issue-server", "a.internal", "--passphrase-file", token.pin_file, cwd=tmp_path, env=base)
    assert proc.returncode == 0, proc.stderr
    loose = tmp_path / "loose.pin"
    loose.write_text(token.pin)
    loose.chmod(0o644)
    assert_clean_error(run_certkit("init-ca", "--ca-dir", tmp_path / "x", "--key-uri", token.uri("x"),
                                   "--pkcs11-module", token.module, "--pin-file", loose, env=base), "other users")
    # A prompt on a terminal.
    code, shown = run_on_terminal([sys.executable, "-m", "certkit", "issue-client", "bob"], base,
                                  [("PIN of the token", token.pin)], cwd=tmp_path)
    assert code == 0, shown
    assert token.pin not in shown and (tmp_path / "bob" / "cert.pem").exists()
    # Refused before any PIN is asked for: a PIN in the URI, a token that is not there, a key type no
    # token signs with here, a passphrase for a key that has none.
    no_pin = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "y"))
    cases = [
        (["--key-uri", token.uri("y") + "?pin-value=1234", "--pkcs11-module", token.module], "holds no PIN", 1),
        (["--key-uri", "pkcs11:token=nowhere;object=y", "--pkcs11-module", token.module], "tokens present: '", 1),
        (["--key-uri", token.uri("y")], "--pkcs11-module", 1),
        (["--key-uri", "pkcs11:object=y", "--pkcs11-module", token.module], "names no token", 1),
        (["--key-uri", token.uri("y"), "--pkcs11-module", token.module, "--key-type", "ed25519"], "not ed25519", 2),
        (["--key-uri", token.uri("y"), "--pkcs11-module", token.module, "--no-passphrase"], "PIN", 2),
        (["--pin-file", token.pin_file], "go with --key-uri", 2),
    ]
    for args, fragment, code in cases:
        assert_clean_error(run_certkit("init-ca", *args, env=no_pin), fragment, code)
        assert not (tmp_path / "y").exists()


_STALE = """
import sys
from certkit.pkcs11 import session
from certkit.pkcs11.errors import TokenPinNotInitialized
from certkit.pkcs11.provision import generate_key
from certkit.pkcs11.uri import KeyURI
from team_hsm import Token

token = Token(*sys.argv[1:6])
uri = KeyURI.parse(token.uri("root"))
session.find_token(uri, token.module)  # the module reads the token now: no user PIN yet
token.init_pin()                       # another process sets it
try:  # a login on what the module read then is refused (what CI saw when four processes logged in at once)
    session.login(session.find_token(uri, token.module), token.pin.encode())
    print("the module saw the new PIN at once")
except TokenPinNotInitialized:
    pass
key = generate_key(uri, token.module, token.pin.encode(), "ecdsa-p256")
print(key.attributes()["never_extractable"], flush=True)
"""


def test_a_token_without_a_user_pin(tmp_path, softhsm):
    """A token with no user PIN: one clear line. And one whose PIN another process set after this
    process's module read the token (SoftHSM2 reads a token's PINs once, when it is initialized;
    when four processes log in at once, one can read the token file while another rewrites it):
    the module is initialized again and the login goes through."""
    import subprocess

    token = softhsm.new_token_without_user_pin()
    proc = run_certkit("init-ca", "--name", "No PIN", "--key-uri", token.uri("root"), "--pkcs11-module", token.module,
                       "--pin-file", token.pin_file, env=certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca")))
    assert_clean_error(proc, "has no user PIN set")
    assert not (tmp_path / "ca").exists()
    here = str(Path(__file__).parent)
    env = certkit_env(PYTHONPATH=here + ":" + certkit_env().get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", _STALE, token.label, token.pin, token.so_pin, str(token.pin_file),
                           token.module], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True"], proc.stdout


def test_check_covers_the_token(tmp_path, token, softhsm):
    init_token_ca(tmp_path, token)
    env = env_for(tmp_path, token)
    proc = run_certkit("check", "--json", env=env)
    assert proc.returncode == 0, proc.stdout
    findings = {f["check"]: f for f in json.loads(proc.stdout)["findings"]}
    assert findings["token"]["level"] == "ok" and token.label in findings["token"]["message"]
    assert findings["key"]["level"] == "ok" and "signs for ca.pem" in findings["key"]["message"]
    assert "non-extractable" in findings["key"]["message"]
    # Without the PIN: the token is seen, the key not checked.
    proc = run_certkit("check", "--json", env=certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca")))
    findings = {f["check"]: f for f in json.loads(proc.stdout)["findings"]}
    assert findings["token"]["level"] == "ok" and findings["key"]["level"] == "warning"
    # A URI naming another key of the same token: it does not sign for ca.pem.
    token.tool("--keypairgen", "--key-type", "EC:prime256v1", "--label", "stranger", "--id", "0c", "--usage-sign")
    config = tmp_path / "ca" / "certkit-ca.json"
    config.write_text(json.dumps({"key": token.uri("stranger"), "pkcs11_module": token.module}))
    proc = run_certkit("check", "--json", env=env)
    assert proc.returncode == 1 and "does not belong to the CA certificate" in proc.stdout
    assert_clean_error(run_certkit("issue-server", "z.internal", cwd=tmp_path, env=env), "does not belong")
    # The token gone.
    config.write_text(json.dumps({"key": token.uri("root"), "pkcs11_module": token.module}))
    import subprocess

    subprocess.run(["softhsm2-util", "--delete-token", "--token", token.label], check=True, capture_output=True)
    proc = run_certkit("check", "--json", env=env)
    findings = {f["check"]: f for f in json.loads(proc.stdout)["findings"]}
    assert proc.returncode == 1 and findings["token"]["level"] == "error"
    assert "No token matching" in findings["token"]["message"]


def test_team_ca_postgres_and_token_together(tmp_path, token, postgres_url):
    data = init_token_ca(tmp_path, token, "--inventory", postgres_url)
    assert data["inventory"] == postgres_url
    env = env_for(tmp_path, token)
    assert json.loads((tmp_path / "ca" / "certkit-ca.json").read_text()) == {
        "inventory": postgres_url, "key": token.uri("root"), "pkcs11_module": token.module}
    assert sorted(p.name for p in (tmp_path / "ca").iterdir()) == ["ca.pem", "certkit-ca.json"]
    # issue-batch with two forked workers: each logs in to the token on its own.
    (tmp_path / "fleet.csv").write_text("kind,names\n" + "".join(f"server,n{i}.internal\n" for i in range(8)))
    proc = run_certkit("issue-batch", "fleet.csv", "--out-dir", "out", "--jobs", "2", "--json", cwd=tmp_path,
                       env=env)
    assert proc.returncode == 0, proc.stderr
    ca_pem = tmp_path / "ca" / "ca.pem"
    for i in range(8):
        assert verify(ca_pem, tmp_path / "out" / f"n{i}.internal" / "cert.pem", "sslserver")
    assert CADirectory(tmp_path / "ca").inventory.count() == 8
    proc = run_certkit("check", "--json", env=env)
    assert proc.returncode == 0, proc.stdout
    checks = {f["check"]: f["level"] for f in json.loads(proc.stdout)["findings"]}
    assert checks["token"] == checks["key"] == checks["database"] == checks["inventory"] == "ok"


def test_key_uris_as_rfc_7512_writes_them():
    from certkit.pkcs11 import KeyURI, TokenError

    uri = KeyURI.parse("pkcs11:token=Team%20CA;object=root%3B2;id=%01%a2;type=private"
                       "?module-path=/usr/lib/softhsm/libsofthsm2.so")
    assert (uri.token, uri.object, uri.id, uri.module_path) == ("Team CA", "root;2", b"\x01\xa2",
                                                                 "/usr/lib/softhsm/libsofthsm2.so")
    assert KeyURI.parse("pkcs11:serial=0123;slot-id=7;id=%02").slot_id == 7
    for text, fragment in [
        ("file:///key.pem", "not a PKCS#11 URI"),
        ("pkcs11:token=a;object=b;colour=red", "does not understand"),
        ("pkcs11:token=a;token=b;object=c", "names token twice"),
        ("pkcs11:token=a;object=b;type=cert", "names a cert object"),
        ("pkcs11:token=a;object=b?pin-source=file:/p", "holds no PIN"),
        ("pkcs11:token=a;object=b?module=x", "does not understand"),
        ("pkcs11:token=a;slot-id=one;object=b", "not a number"),
        # an unset variable (object=$LABEL) made a key with no label, which every later init-ca reused
        ("pkcs11:token=ca;object=", "gives object an empty value"),
        ("pkcs11:token=ca;object=y;id=", "gives id an empty value"),
        ("pkcs11:token=;object=y", "gives token an empty value"),
        # a '%' that starts no escape was kept as a literal '%' (the refusal below could never fire)
        ("pkcs11:token=ca;object=bad%zz", "bad %-escape"),
        ("pkcs11:token=ca;object=a%2", "bad %-escape"),
    ]:
        with pytest.raises(TokenError, match=fragment):
            KeyURI.parse(text)


_HOST = """
import sys
from certkit.store import CADirectory
for i in range(8):
    ca = CADirectory(sys.argv[1]).load(sys.argv[2].encode())  # a command: log in, sign, go
    print(ca.issue_server([f"{sys.argv[3]}-{i}.internal"]).serial_hex, flush=True)
    ca.key.close()
"""


def test_four_processes_sign_through_one_token_at_once(tmp_path, token):
    """Four hosts' commands logging in and signing at the same moment (SoftHSM2 answers some of
    them CKR_GENERAL_ERROR, or CKR_USER_PIN_NOT_INITIALIZED, while another process rewrites the token's
    files: retried, the second by initializing the module again)."""
    import shutil
    import subprocess

    init_token_ca(tmp_path, token)
    env = certkit_env()
    procs = []
    for n in range(4):
        shutil.copytree(tmp_path / "ca", tmp_path / f"host{n}")
        procs.append(subprocess.Popen([sys.executable, "-c", _HOST, str(tmp_path / f"host{n}"), token.pin, f"h{n}"],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    serials = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        serials += out.split()
    assert len(set(serials)) == 32
