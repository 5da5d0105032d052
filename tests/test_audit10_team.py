"""Audit team10 (a CA key in a PKCS#11 token), each finding as a class:

#1 a token key that may not sign (CKA_SIGN false: made so, or turned off later) gave a Python traceback in
   init-ca, issue-server, crl and sign-csr (python-pkcs11 gives such a key no sign()): now one line, which
   names the attribute, in every command that signs, and in check;
#2 a parent CA in a token was sent $CERTKIT_PKCS11_PIN, the new CA's own PIN for another token (a wrong PIN
   counts towards that token's lock), and $CERTKIT_PARENT_CA_PASSPHRASE, which --help names, was ignored;
#3 a CRL whose signature failed used up its number.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from conftest import assert_clean_error, certkit_env, run_certkit


@pytest.fixture(autouse=True)
def _real_processes(monkeypatch):
    """A PKCS#11 login belongs to a process: certkit runs as a real one here."""
    monkeypatch.setenv("CERTKIT_TEST_SUBPROCESS", "1")


def _python_pkcs11(token, body: str) -> None:
    script = textwrap.dedent(f"""
        import pkcs11
        from pkcs11 import Attribute, KeyType, ObjectClass
        from pkcs11.util.ec import encode_named_curve_parameters
        token = pkcs11.lib({token.module!r}).get_token(token_label={token.label!r})
        with token.open(rw=True, user_pin={token.pin!r}) as session:
    """) + textwrap.indent(textwrap.dedent(body), "    ")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def _crl_number(env) -> int | None:
    from cryptography import x509

    proc = run_certkit("crl", env=env)
    if proc.returncode:
        return None
    crl = x509.load_pem_x509_crl(proc.stdout.encode())
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_a_key_that_may_not_sign_is_said_in_one_line_everywhere(tmp_path, token):
    _python_pkcs11(token, """
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
        params.generate_keypair(store=True, label="nosign", id=b"\\x11",
                                private_template={Attribute.SIGN: False, Attribute.DERIVE: True})
    """)
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ns"), CERTKIT_PKCS11_PIN=token.pin)
    proc = run_certkit("init-ca", "--name", "No Sign", "--key-uri", token.uri("nosign"), "--pkcs11-module",
                       token.module, env=env)
    assert_clean_error(proc, "may not sign")
    assert "CKA_SIGN" in proc.stderr and not (tmp_path / "ns").exists()

    # A CA whose key loses CKA_SIGN later: every command that signs says it, and no CRL number is used up.
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_PKCS11_PIN=token.pin)
    run_certkit("init-ca", "--name", "Later", "--key-uri", token.uri("later"), "--pkcs11-module", token.module,
                env=env, check=True)
    first = _crl_number(env)
    assert first is not None
    _python_pkcs11(token, """
        session.get_key(object_class=ObjectClass.PRIVATE_KEY, label="later")[Attribute.SIGN] = False
    """)
    csr = tmp_path / "c.csr"
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", "/dev/null", "-subj", "/CN=csr.example", "-out", csr], check=True,
                   capture_output=True)
    manifest = tmp_path / "m.csv"
    manifest.write_text("kind,names\nserver,n1.example\n")
    for args in (["issue-server", "a.example", "--out", tmp_path / "a"], ["crl", "--out", tmp_path / "r.crl"],
                 ["crl"], ["crl"], ["sign-csr", csr, "--server", "--out", tmp_path / "s"],
                 ["issue-batch", manifest, "--out-dir", tmp_path / "b"]):
        proc = run_certkit(*args, env=env)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr and "AttributeError" not in proc.stderr, \
            (args, proc.stderr)
        assert "may not sign" in proc.stderr, (args, proc.stderr)
    check = run_certkit("check", env=env)
    assert "may not sign" in check.stdout and "AttributeError" not in check.stdout, check.stdout
    _python_pkcs11(token, """
        session.get_key(object_class=ObjectClass.PRIVATE_KEY, label="later")[Attribute.SIGN] = True
    """)
    assert _crl_number(env) == first + 1  # the failed tries gave their numbers back


def test_a_parent_in_another_token_is_never_sent_the_new_cas_pin(tmp_path, softhsm):
    parent_token, child_token = softhsm.new_token(), softhsm.new_token()
    assert parent_token.pin != child_token.pin or pytest.skip("both tokens got one PIN")
    root_env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "root"), CERTKIT_PKCS11_PIN=parent_token.pin)
    run_certkit("init-ca", "--name", "Token Root", "--key-uri", parent_token.uri("root"), "--pkcs11-module",
                parent_token.module, env=root_env, check=True)
    args = ("init-ca", "--ca-dir", tmp_path / "int", "--parent-ca-dir", tmp_path / "root", "--name", "Token Int",
            "--key-uri", child_token.uri("int"), "--pkcs11-module", child_token.module)
    # Only the new CA's PIN: not sent to the parent's token; the variable to set is named.
    proc = run_certkit(*args, env=certkit_env(CERTKIT_PKCS11_PIN=child_token.pin))
    assert_clean_error(proc, "$CERTKIT_PARENT_CA_PASSPHRASE")
    assert "refused the PIN" not in proc.stderr and not (tmp_path / "int").exists()
    # As --help and docs/init-ca.md say: the parent's PIN in $CERTKIT_PARENT_CA_PASSPHRASE.
    run_certkit(*args, env=certkit_env(CERTKIT_PKCS11_PIN=child_token.pin,
                                      CERTKIT_PARENT_CA_PASSPHRASE=parent_token.pin), check=True)
    # A key-file intermediate under the token root: the parent's PIN from the documented variable too.
    run_certkit("init-ca", "--ca-dir", tmp_path / "file-int", "--parent-ca-dir", tmp_path / "root", "--name",
                "File Int", "--no-passphrase",
                env=certkit_env(CERTKIT_PARENT_CA_PASSPHRASE=parent_token.pin), check=True)


# --- #4: a PIN no token holds is not tried ----------------------------------------------------------------------
@pytest.mark.parametrize(("content", "said"), [(b"{pin}\n\n", "several lines"), (b"{pin}\nsecond\n", "several lines"),
                                               (b" \n", "white space only")])
def test_a_pin_file_no_token_holds_is_not_tried(tmp_path, token, content, said):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_PKCS11_PIN=token.pin)
    run_certkit("init-ca", "--name", "PIN CA", "--key-uri", token.uri("root"), "--pkcs11-module", token.module,
                env=env, check=True)
    pin_file = tmp_path / "pin"
    pin_file.write_bytes(content.replace(b"{pin}", token.pin.encode()))
    pin_file.chmod(0o600)
    bare = {k: v for k, v in env.items() if k != "CERTKIT_PKCS11_PIN"}
    proc = run_certkit("crl", "--passphrase-file", pin_file, "--out", tmp_path / "c.crl", env=bare)
    assert_clean_error(proc, said)
    assert "was not tried" in proc.stderr and "refused the PIN" not in proc.stderr
    if said == "several lines":  # the same, from the environment
        proc = run_certkit("crl", "--out", tmp_path / "c.crl", env=dict(bare, CERTKIT_PKCS11_PIN=f"{token.pin}\n\n"))
        assert_clean_error(proc, "several lines")
    run_certkit("crl", "--out", tmp_path / "c.crl", env=env, check=True)  # the token still takes its PIN


# --- #5: a PostgreSQL database without certkit's tables ------------------------------------------------------------
def test_a_database_without_the_inventory_is_said_as_check_says_it(tmp_path, postgres_url, postgres_server):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE="a long pass phrase")
    run_certkit("init-ca", "--inventory", postgres_url, env=env, check=True)
    with postgres_server.connect(postgres_url.rsplit("/", 1)[1]) as db:
        db.execute("CREATE SCHEMA elsewhere")
    moved = dict(env, PGOPTIONS="-c search_path=elsewhere")
    for args in (("list",), ("issue-server", "pgo.example", "--out", tmp_path / "pgo")):
        proc = run_certkit(*args, env=moved)
        assert_clean_error(proc, "holds no certkit inventory (its tables are missing)")
        assert "$PGOPTIONS" in proc.stderr and "CA directory is incomplete" not in proc.stderr
