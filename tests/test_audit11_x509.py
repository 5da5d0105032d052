"""The eleventh round's X.509 findings (audits regress14 and docs11), each as a class:

1. a signature cryptography's X.509 API will not check (SHA-1, MD5; a key on a curve it lacks) is no
   verdict that the issuer did not make it: a root self-signed with SHA-1 is a root (verify VALID, as
   ``openssl verify`` says; inspect ``self_signed``), and a root whose key cryptography cannot load is
   known by its key identifiers, as OpenSSL knows one; a certificate inspected alone has its own digest
   judged unless it signed itself (a SHA-1 leaf is usable with nothing OpenSSL-based);
2. the chains cryptography's web-PKI verifier forbids but OpenSSL accepts (an RSA-PSS or a DSA CA) are
   judged by certkit's own checks, with the ``note`` line, as Ed25519's are;
3. what a CRL may not go over is a private key, known by its shape and not by a look-alike: an RFC 3161
   timestamp request and explicit EC parameters are written over with --force; an SSH.com key and a
   JSON Web Key holding ``d`` are refused even with it;
4. ``list --name '*.'`` names no certificate (the final dot is a host name's, not a glob's).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, run_certkit

LEAF_EXT = ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            "subjectAltName=DNS:f.example.com\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")


def _ok(proc) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _root(tmp: Path, name: str, key_args: list[str], sign_args: list[str] = ()) -> tuple[Path, Path]:
    key, cert = tmp / f"{name}.key", tmp / f"{name}.pem"
    _ok(openssl("req", "-x509", *key_args, *sign_args, "-nodes", "-keyout", key, "-subj", f"/CN={name}", "-days",
                "365", "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
                "keyUsage=critical,keyCertSign,cRLSign", "-out", cert))
    return key, cert


def _leaf(tmp: Path, ca_key: Path, ca_cert: Path, name: str, sign_args: list[str] = ()) -> Path:
    (tmp / "leaf.ext").write_text(LEAF_EXT)
    _ok(openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                tmp / f"{name}.key", "-subj", "/CN=f.example.com", "-out", tmp / f"{name}.csr"))
    _ok(openssl("x509", "-req", "-in", tmp / f"{name}.csr", "-CA", ca_cert, "-CAkey", ca_key, *sign_args,
                "-days", "30", "-extfile", tmp / "leaf.ext", "-out", tmp / f"{name}.pem"))
    return tmp / f"{name}.pem"


def _verify(leaf: Path, root: Path, tmp: Path):
    env = certkit_env(CERTKIT_CA_DIR=str(tmp / "none"))
    return run_certkit("verify", leaf, "--purpose", "server", "--name", "f.example.com", "--ca-file", root, env=env)


# --- 1. a signature the X.509 API will not check is no "not signed" ---------------------------------------------
def test_a_root_self_signed_with_sha1_is_a_root(tmp_path: Path) -> None:
    key, root = _root(tmp_path, "OldRoot", ["-newkey", "rsa:2048"], ["-sha1"])
    leaf = _leaf(tmp_path, key, root, "leaf", ["-sha256"])
    assert openssl("verify", "-auth_level", "2", "-x509_strict", "-purpose", "sslserver", "-CAfile", root,
                   leaf).returncode == 0  # a trust anchor's own signature is nobody's concern
    proc = _verify(leaf, root, tmp_path)
    assert proc.returncode == 0 and "VALID" in proc.stdout and "NOT VALID" not in proc.stdout, proc.stdout + proc.stderr
    shown = json.loads(run_certkit("inspect", root, "--json", env=certkit_env()).stdout)["items"][0]
    assert shown["self_signed"] is True


def test_a_leaf_signed_with_sha1_is_usable_with_nothing_openssl_based(tmp_path: Path) -> None:
    key, root = _root(tmp_path, "Root", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
    leaf = _leaf(tmp_path, key, root, "sha1leaf", ["-sha1"])
    assert openssl("verify", "-auth_level", "2", "-CAfile", root, leaf).returncode != 0  # OpenSSL refuses it (level 2)
    text = run_certkit("inspect", leaf, env=certkit_env()).stdout
    assert "Usable for: nothing with OpenSSL-based peers: it is signed with SHA1" in text, text
    # a self-signed certificate's own digest stays unflagged
    _key, old_root = _root(tmp_path, "OldRoot", ["-newkey", "rsa:2048"], ["-sha1"])
    assert "nothing with OpenSSL" not in run_certkit("inspect", old_root, env=certkit_env()).stdout


def test_a_root_on_a_curve_cryptography_lacks_is_known_by_its_key_identifiers(tmp_path: Path) -> None:
    _key, root = _root(tmp_path, "K283 Root", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:sect283k1"])
    shown = json.loads(run_certkit("inspect", root, "--json", env=certkit_env()).stdout)["items"][0]
    assert shown["self_signed"] is True
    assert "(self-signed)" in run_certkit("inspect", root, env=certkit_env()).stdout


# --- 2. RSA-PSS and DSA CAs: certkit's own checks judge, as OpenSSL does ------------------------------------------
@pytest.mark.parametrize("kind", ["rsa-pss", "dsa"])
def test_a_chain_under_an_rsa_pss_or_dsa_ca_is_judged_as_openssl_does(tmp_path: Path, kind: str) -> None:
    if kind == "dsa":
        _ok(openssl("dsaparam", "-out", tmp_path / "dsap.pem", "2048"))
        key_args, sign_args = ["-newkey", f"dsa:{tmp_path / 'dsap.pem'}"], []
    else:
        key_args, sign_args = ["-newkey", "rsa-pss", "-pkeyopt", "rsa_keygen_bits:2048"], ["-sigopt",
                                                                                         "rsa_padding_mode:pss"]
    key, root = _root(tmp_path, f"{kind} Root", key_args, sign_args)
    leaf = _leaf(tmp_path, key, root, "leaf", sign_args)
    assert openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", root, leaf).returncode == 0
    proc = _verify(leaf, root, tmp_path)
    assert proc.returncode == 0 and "NOT VALID" not in proc.stdout, proc.stdout + proc.stderr
    assert "note" in proc.stdout and kind.upper().replace("RSA-PSS", "RSA-PSS") in proc.stdout.upper()
    # and a wrong name still fails on certkit's own checks
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "none"))
    wrong = run_certkit("verify", leaf, "--purpose", "server", "--name", "g.example.com", "--ca-file", root, env=env)
    assert wrong.returncode == 1 and "NOT VALID" in wrong.stdout


# --- 3. what a CRL may not go over ---------------------------------------------------------------------------------
@pytest.fixture
def crl_env(tmp_path: Path) -> dict[str, str]:
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "ca"), CERTKIT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "CRL CA", env=env, check=True)
    return env


def test_look_alikes_of_a_der_key_are_written_over_with_force(tmp_path: Path, crl_env: dict) -> None:
    _ok(openssl("ecparam", "-name", "prime256v1", "-param_enc", "explicit", "-outform", "DER", "-out",
                tmp_path / "explicit.der"))
    (tmp_path / "data").write_bytes(b"to be stamped")
    _ok(openssl("ts", "-query", "-data", tmp_path / "data", "-sha256", "-cert", "-out", tmp_path / "req.tsq"))
    for target in (tmp_path / "explicit.der", tmp_path / "req.tsq"):
        run_certkit("crl", "--out", target, "--force", "--der", env=crl_env, check=True)
        assert openssl("crl", "-inform", "DER", "-in", target, "-noout").returncode == 0


def _private_jwk() -> str:
    from cryptography.hazmat.primitives.asymmetric import rsa

    numbers = rsa.generate_private_key(65537, 2048).private_numbers()

    def b64(n: int) -> str:
        import base64

        return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).decode().rstrip("=")

    return json.dumps({"kty": "RSA", "n": b64(numbers.public_numbers.n), "e": b64(numbers.public_numbers.e),
                       "d": b64(numbers.d), "p": b64(numbers.p), "q": b64(numbers.q)})


@pytest.mark.parametrize("what", ["ssh.com", "jwk"])
def test_other_private_key_forms_are_refused_even_with_force(tmp_path: Path, crl_env: dict, what: str) -> None:
    target = tmp_path / "account-key"
    content = ("---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----\nComment: \"rsa-key\"\nP2/56wAAA+8AAAA3aWYtbW9kbntzaWdu\n"
               "---- END SSH2 ENCRYPTED PRIVATE KEY ----\n") if what == "ssh.com" else _private_jwk()
    target.write_text(content)
    proc = run_certkit("crl", "--out", target, "--force", env=crl_env)
    assert_clean_error(proc, "private key")
    assert target.read_text() == content
    # a JWK without its private half is written over
    public = tmp_path / "public.jwk"
    public.write_text(json.dumps({k: v for k, v in json.loads(_private_jwk()).items() if k in ("kty", "n", "e")}))
    run_certkit("crl", "--out", public, "--force", env=crl_env, check=True)


# --- 4. a final dot after a glob character ---------------------------------------------------------------------
def test_a_pattern_ending_in_a_glob_and_a_dot_names_no_certificate(tmp_path: Path, crl_env: dict) -> None:
    run_certkit("issue-server", "a.example.com", "--out", tmp_path / "a", env=crl_env, check=True)
    assert "a.example.com" in run_certkit("list", "--name", "a.example.com.", env=crl_env).stdout
    for pattern in ("*.", "a?."):
        proc = run_certkit("list", "--name", pattern, env=crl_env)
        assert "a.example.com" not in proc.stdout and "No certificates match" in proc.stdout + proc.stderr


def test_a_signature_no_one_here_can_check_is_said_as_such(tmp_path: Path) -> None:
    key, root = _root(tmp_path, "K283 Root", ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:sect283k1"])
    leaf = _leaf(tmp_path, key, root, "leaf")
    assert openssl("verify", "-CAfile", root, leaf).returncode == 0
    proc = _verify(leaf, root, tmp_path)
    assert proc.returncode == 1 and "certkit cannot check its signature by CN=K283 Root" in proc.stdout, proc.stdout
    assert "not issued by this CA" not in proc.stdout
