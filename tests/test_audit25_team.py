"""The twenty-fifth round's team findings (audit team, round twenty-five): a PostgreSQL inventory shared by hosts,
and a CA key in a PKCS#11 token.

1. A key URI whose token is there under its label but whose serial=, slot-id=, model= or manufacturer= no longer
   match it (a token initialized again from a backup has a new serial and slot; ``serial=`` is what certkit tells
   to add when two tokens share a label) was said to name "No token ... present (tokens present: 'ca')", followed by
   SoftHSM's hint to check $SOFTHSM2_CONF and its tokendir: the token was present, and the error said neither which
   attribute differed nor what the token has. It now says so, naming each attribute, in init-ca, issuing, crl and
   check alike.
2. A PIN that is not UTF-8 (a PIN file saved in Latin-1, $CERTKIT_PKCS11_PIN set from one) was said as "The PIN is
   not UTF-8 text; PKCS#11 PINs are.": neither where it came from (which file, which variable, standard input) nor
   which token. It is now refused as every PIN no token holds is, naming its source, before any token is opened.
3. A PIN in the key URI of an existing CA's certkit-ca.json (pin-value=, pin-source=: written by hand; init-ca refuses
   one) was shown: issuing with no PIN at hand said "The CA key is in a PKCS#11 token (pkcs11:...?pin-value=PIN) and
   no PIN was given", and the other commands said "A PKCS#11 URI for certkit holds no PIN" without saying which
   file holds it, or that a file copied to every host exposes it. Every command now refuses that certkit-ca.json,
   naming it, never the PIN, and says to change the PIN. So too a key URI there that names no key or has an
   attribute certkit does not know (whose value the no-PIN message showed): refused naming the file.
4. A token CA whose private key was deleted (pkcs11-tool --delete-object --type privkey), its public key and
   certificate objects still there, was told "No private key 'root' in token ...; check the URI's object= and id=":
   the URI was right. The error (issuing, crl, check) now says what the token holds under that name (a public key
   and a certificate; a secret key), that none of them can sign, and that the private key was deleted or never was
   in this token.
5. init-ca --key-uri 'pkcs11:...?module-path=A' --pkcs11-module B made the key with B and kept both in
   certkit-ca.json: a URI naming a module that never held the key (another PKCS#11 client honours module-path).
   init-ca now refuses the two when they name different files (the same file, written relative, is taken).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from test_team_hsm import _real_processes, env_for, init_token_ca  # noqa: F401 (an autouse fixture)

from conftest import assert_clean_error, certkit_env, run_certkit


# --- 1. a token present under its label, its other attributes changed ----------------------------------------------
def _token_serial(token) -> str:
    import re

    listed = token.tool("--list-token-slots", login=False).stdout
    found = re.findall(rf"token label\s*:\s*{re.escape(token.label)}\s*\n(?:.*\n)*?\s*serial num\s*:\s*(\S+)", listed)
    assert len(found) == 1, listed
    return found[0]


def test_a_token_whose_serial_or_slot_changed_is_said_present_with_what_differs(tmp_path, token):
    init_token_ca(tmp_path, token)
    serial = _token_serial(token)
    config = tmp_path / "ca" / "certkit-ca.json"
    stored = json.loads(config.read_text())
    # The token, restored from a backup, is the same label with a new serial: the URI keeps the old one.
    config.write_text(json.dumps(stored | {"key": stored["key"] + ";serial=0123456789abcdef"}))
    env = env_for(tmp_path, token)
    said = f"the token '{token.label}' is present, but its serial is {serial}, not the URI's serial=0123456789abcdef"
    for args in (["issue-server", "www.example.internal", "--out", str(tmp_path / "www")],
                 ["issue-client", "alice", "--out", str(tmp_path / "alice")],
                 ["crl", "--out", str(tmp_path / "crl.pem")],
                 ["issue-server", "api.example.internal", "--out", str(tmp_path / "api"), "--json"]):
        proc = run_certkit(*args, env=env)
        assert_clean_error(proc, said)
        out = json.loads(proc.stdout)["error"] if "--json" in args else proc.stderr
        assert "tokens present" not in out and "SOFTHSM2_CONF" not in out, out
        assert "fix those attributes" not in out and "certkit-ca.json" in out, out
    assert not any((tmp_path / name).exists() for name in ("www", "alice", "crl.pem", "api"))
    check = run_certkit("check", "--json", env=env)
    assert check.returncode == 1
    assert said in check.stdout, check.stdout

    # init-ca with a slot-id and a model that the token does not have: both named, nothing generated
    uri = f"{token.uri('second')};slot-id=1;model=Other%20HSM"
    proc = run_certkit("init-ca", "--name", "Second", "--key-uri", uri, "--pkcs11-module", token.module,
                       "--pin-file", token.pin_file, env=certkit_env(CERTKIT_CA_DIR=str(tmp_path / "second")))
    assert_clean_error(proc, f"the token '{token.label}' is present, but its model is SoftHSM v2, not the URI's "
                             "model=Other HSM, and its slot-id is ")
    assert ", not the URI's slot-id=1. " in proc.stderr
    assert "SOFTHSM2_CONF" not in proc.stderr and not (tmp_path / "second").exists()
    assert "second" not in token.tool("--list-objects").stdout

    # A label no token has is still said with the labels present (and SoftHSM's hint).
    proc = run_certkit("init-ca", "--name", "Third", "--key-uri", "pkcs11:token=no-such-token;object=x;serial=01",
                       "--pkcs11-module", token.module, "--pin-file", token.pin_file,
                       env=certkit_env(CERTKIT_CA_DIR=str(tmp_path / "third")))
    assert_clean_error(proc, "tokens present: ")
    assert "SOFTHSM2_CONF" in proc.stderr and "is present, but" not in proc.stderr


# --- 2. a PIN that is not UTF-8, said with its source ------------------------------------------------------------
def test_a_pin_that_is_not_utf8_names_where_it_came_from(tmp_path, token):
    init_token_ca(tmp_path, token)
    latin1 = tmp_path / "latin1.pin"
    latin1.write_bytes(token.pin.encode() + b"\xe9\n")  # "...é" saved in Latin-1
    latin1.chmod(0o600)
    env = env_for(tmp_path, token)
    tail = "holds a PIN that is not UTF-8 text"
    for args, source in ((["issue-server", "www.example.internal", "--out", str(tmp_path / "www"),
                           "--passphrase-file", str(latin1)], f"The file {latin1} {tail}"),
                         (["crl", "--out", str(tmp_path / "crl.pem"), "--passphrase-file", str(latin1)],
                          f"The file {latin1} {tail}"),
                         (["init-ca", "--name", "Other", "--key-uri", token.uri("other"), "--pkcs11-module",
                           token.module, "--pin-file", str(latin1), "--ca-dir", str(tmp_path / "other")],
                          f"The file {latin1} {tail}")):
        proc = run_certkit(*args, env=env)
        assert_clean_error(proc, source)
        assert "so it was not tried" in proc.stderr
    with latin1.open("rb") as stdin:
        proc = subprocess.run([sys.executable, "-m", "certkit", "issue-client", "alice", "--out",
                               str(tmp_path / "alice"), "--passphrase-file", "-"], stdin=stdin, capture_output=True,
                              text=True, env=env, timeout=120)
    assert_clean_error(proc, f"Standard input {tail}")
    proc = run_certkit("issue-client", "bob", "--out", str(tmp_path / "bob"),
                       env=env | {"CERTKIT_PKCS11_PIN": token.pin + "\udce9"})  # os.environ's Latin-1 byte
    assert_clean_error(proc, f"$CERTKIT_PKCS11_PIN {tail}")
    assert not any((tmp_path / name).exists() for name in ("www", "crl.pem", "other", "alice", "bob"))
    assert "other" not in token.tool("--list-objects").stdout
    # the token counted no wrong PIN: its flags say none since the last right one
    assert "user PIN count low" not in token.flags()


# --- 3. a PIN in certkit-ca.json's key URI: never shown, the file named --------------------------------------------
def test_a_pin_in_the_key_uri_of_certkit_ca_json_is_never_shown_and_the_file_is_named(tmp_path, token):
    init_token_ca(tmp_path, token)
    pin = "7391642058"
    config = tmp_path / "ca" / "certkit-ca.json"
    stored = json.loads(config.read_text())
    env = env_for(tmp_path, token)
    assert run_certkit("issue-server", "www.example.internal", "--out", str(tmp_path / "www"), env=env).returncode == 0
    no_pin = {name: value for name, value in env.items() if name != "CERTKIT_PKCS11_PIN"}
    commands = [(["issue-server", "api.example.internal", "--out", str(tmp_path / "api")], no_pin),
                (["issue-server", "api.example.internal", "--out", str(tmp_path / "api")], env),
                (["crl", "--out", str(tmp_path / "crl.pem")], no_pin), (["list"], env),
                (["revoke", str(tmp_path / "www")], env), (["renew", str(tmp_path / "www")], env),
                (["init-ca", "--name", "Sub", "--parent-ca-dir", str(tmp_path / "ca"), "--ca-dir",
                  str(tmp_path / "sub"), "--no-passphrase"], no_pin),
                (["issue-server", "api.example.internal", "--out", str(tmp_path / "api"), "--json"], no_pin)]
    for spelled in (f"?pin-value={pin}", f";PIN-Value={pin}", f"?pin-source=file:/run/{pin}"):
        config.write_text(json.dumps(stored | {"key": stored["key"] + spelled}))
        for args, environment in commands:
            proc = run_certkit(*args, env=environment)
            assert_clean_error(proc, f"The key URI in {config} holds a PIN (pin-value= or pin-source=)")
            assert pin not in proc.stdout + proc.stderr, (args, proc.stdout, proc.stderr)
            assert "change the token's user PIN" in proc.stdout + proc.stderr
        check = run_certkit("check", "--json", env=no_pin)
        assert check.returncode == 1 and pin not in check.stdout + check.stderr, check.stdout
        assert f"The key URI in {config} holds a PIN" in check.stdout
    # An attribute certkit does not know (a secret by another name, for all it knows), a URI naming no key:
    # refused naming the file, the unknown attribute's value never shown.
    for spelled, said in ((f";x-secret={pin}", "the attribute 'x-secret', which certkit does not understand"),
                          (f"?x-secret={pin}", "the query attribute 'x-secret'")):
        config.write_text(json.dumps(stored | {"key": stored["key"] + spelled}))
        for args, environment in commands:
            proc = run_certkit(*args, env=environment)
            assert_clean_error(proc, said)
            assert pin not in proc.stdout + proc.stderr, (args, proc.stdout, proc.stderr)
            assert f"Fix the key URI in {config}: " in proc.stdout + proc.stderr
    config.write_text(json.dumps(stored | {"key": f"pkcs11:token={token.label}"}))
    said = (f"Fix the key URI in {config}: the PKCS#11 URI 'pkcs11:token={token.label}' names no key; add "
            "object=LABEL (or id=).")
    assert_clean_error(run_certkit("list", env=env), said)
    assert not any((tmp_path / name).exists() for name in ("api", "crl.pem", "sub"))
    config.write_text(json.dumps(stored))  # the PIN taken out: the CA works again, its certificate still valid
    assert run_certkit("revoke", str(tmp_path / "www"), env=env).returncode == 0


# --- 4. the private key gone, its public key and certificate still there -------------------------------------------
def test_a_deleted_private_key_is_said_with_what_the_token_still_holds_under_its_name(tmp_path, token):
    init_token_ca(tmp_path, token)
    env = env_for(tmp_path, token)
    deleted = token.tool("--delete-object", "--type", "privkey", "--label", "root")
    assert deleted.returncode == 0, deleted.stderr
    listed = token.tool("--list-objects").stdout
    assert "Public Key Object" in listed and "Certificate Object" in listed and "Private Key Object" not in listed
    said = (f"No private key 'root' in token '{token.label}' (module {token.module}): the token holds a public key "
            "and a certificate under that name, and none of them can sign. The private key was deleted")
    for args in (["issue-server", "www.example.internal", "--out", str(tmp_path / "www")],
                 ["crl", "--out", str(tmp_path / "crl.pem")]):
        assert_clean_error(run_certkit(*args, env=env), said)
    check = run_certkit("check", env=env)
    assert check.returncode == 1 and said in check.stdout, check.stdout
    # a secret key under the name the CA's URI gives: said as such
    made = token.tool("--keygen", "--key-type", "AES:32", "--label", "aes-only")
    assert made.returncode == 0, made.stderr
    config = tmp_path / "ca" / "certkit-ca.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"key": token.uri("aes-only")}))
    assert_clean_error(run_certkit("crl", "--out", str(tmp_path / "crl.pem"), env=env),
                       "the token holds a secret key under that name, and it cannot sign")
    # a name under which the token holds nothing at all: the URI is what to check, as before
    config.write_text(json.dumps(json.loads(config.read_text()) | {"key": token.uri("nothing")}))
    assert_clean_error(run_certkit("crl", "--out", str(tmp_path / "crl.pem"), env=env),
                       "; check the URI's object= and id=")
    assert not any((tmp_path / name).exists() for name in ("www", "crl.pem"))


# --- 5. init-ca: the URI's module-path and --pkcs11-module must agree ------------------------------------------------
def test_init_ca_refuses_a_module_path_other_than_its_pkcs11_module(tmp_path, token):
    other = tmp_path / "other-module.so"
    other.write_bytes(b"not loaded")
    for module_path in (other, "/nonexistent/libpkcs11.so"):
        uri = f"{token.uri('root')}?module-path={module_path}"
        proc = run_certkit("init-ca", "--name", "M", "--key-uri", uri, "--pkcs11-module", token.module, "--pin-file",
                           token.pin_file, env=certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca")))
        assert_clean_error(proc, f"The key URI's module-path names {module_path}, and --pkcs11-module "
                                 f"{token.module}: they must be the same module; give one of them.")
        assert not (tmp_path / "ca").exists()
    assert "root" not in token.tool("--list-objects").stdout
    relative = os.path.relpath(token.module, tmp_path)
    uri = f"{token.uri('root')}?module-path={relative}"
    proc = run_certkit("init-ca", "--name", "M", "--key-uri", uri, "--pkcs11-module", token.module, "--pin-file",
                       token.pin_file, env=certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca")), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
