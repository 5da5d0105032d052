"""Intermediate CAs (init-ca --parent-ca-dir): pathlen 0, name constraints inherited or narrowed,
lifetime inside the parent's, clear errors for a missing/expired/broken parent; leaves under an
intermediate verified by openssl, cryptography, Python ssl and nginx with only the root trusted."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509 import DNSName
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from certkit.store import CADirectory
from certkit.tlscheck import Endpoint, client_context, handshake, server_context
from certkit.vocabulary import serial_hex

from conftest import PASSPHRASE, assert_clean_error, certkit_env, openssl, pkilint_errors, run_certkit
from nginx_helper import https_get, nginx


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def init_intermediate(tmp_path: Path, env: dict, *args: str, name: str = "inter"):
    return run_certkit("init-ca", "--ca-dir", tmp_path / name, "--parent-ca-dir", tmp_path / "ca",
                       "--name", "Issuing CA 1", "--json", *args, cwd=tmp_path,
                       env=dict(env, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE))


@pytest.fixture
def two_tier(tmp_path, ca_env, ca_dir):
    proc = init_intermediate(tmp_path, ca_env)
    assert proc.returncode == 0, proc.stderr
    env = dict(ca_env, CERTKIT_CA_DIR=str(tmp_path / "inter"))
    run_certkit("issue-server", "localhost", "127.0.0.1", "--out", "srv", cwd=tmp_path, env=env, check=True)
    run_certkit("issue-client", "alice", "--out", "alice", cwd=tmp_path, env=env, check=True)
    return tmp_path, env


def test_intermediate_certificate(two_tier):
    tmp_path, _env = two_tier
    root, inter = load(tmp_path / "ca" / "ca.pem"), load(tmp_path / "inter" / "ca.pem")
    bc = inter.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = inter.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    aki = inter.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki == root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert inter.not_valid_after_utc <= root.not_valid_after_utc
    inter.verify_directly_issued_by(root)
    # The root's inventory records the intermediate it signed.
    row = CADirectory(tmp_path / "ca").inventory.get(serial_hex(inter.serial_number))
    assert row["kind"] == "ca"
    assert (tmp_path / "inter" / "parents.pem").read_bytes() == (tmp_path / "ca" / "ca.pem").read_bytes()
    assert pkilint_errors(tmp_path / "inter" / "ca.pem") == ""
    assert pkilint_errors(tmp_path / "ca" / "ca.pem", tmp_path / "inter" / "ca.pem") == ""


def test_leaves_verify_with_only_the_root_trusted(two_tier):
    tmp_path, _env = two_tier
    root_pem, inter = tmp_path / "ca" / "ca.pem", load(tmp_path / "inter" / "ca.pem")
    for name, purpose in (("srv", "sslserver"), ("alice", "sslclient")):
        folder = tmp_path / name
        assert sorted(p.name for p in folder.iterdir()) == ["ca.pem", "cert.pem", "chain.pem", "fullchain.pem",
                                                             "privkey.pem"]
        assert (folder / "ca.pem").read_bytes() == root_pem.read_bytes()
        assert (folder / "chain.pem").read_bytes() == (tmp_path / "inter" / "ca.pem").read_bytes()
        assert (folder / "fullchain.pem").read_bytes() == (folder / "cert.pem").read_bytes() + (
            folder / "chain.pem").read_bytes()
        ok = openssl("verify", "-x509_strict", "-purpose", purpose, "-CAfile", root_pem,
                     "-untrusted", folder / "chain.pem", folder / "cert.pem")
        assert ok.returncode == 0, ok.stderr
        assert openssl("verify", "-x509_strict", "-purpose", purpose, "-CAfile", root_pem,
                       folder / "cert.pem").returncode != 0  # the intermediate is needed
        assert pkilint_errors(tmp_path / "inter" / "ca.pem", folder / "cert.pem") == ""
    store = Store([load(root_pem)])
    server_verifier = PolicyBuilder().store(store).build_server_verifier(DNSName("localhost"))
    server_verifier.verify(load(tmp_path / "srv" / "cert.pem"), [inter])
    with pytest.raises(VerificationError):
        server_verifier.verify(load(tmp_path / "srv" / "cert.pem"), [])
    PolicyBuilder().store(store).build_client_verifier().verify(load(tmp_path / "alice" / "cert.pem"), [inter])
    # Python ssl, both directions, trusting only the root.
    result = handshake(
        server_context(Endpoint(tmp_path / "srv" / "fullchain.pem", tmp_path / "srv" / "privkey.pem"), root_pem),
        client_context(root_pem, Endpoint(tmp_path / "alice" / "fullchain.pem", tmp_path / "alice" / "privkey.pem")))
    assert result.accepted, result.reason
    assert "alice" in result.peer_subject


def test_nginx_with_intermediate_leaves(two_tier):
    tmp_path, _env = two_tier
    root_pem = tmp_path / "ca" / "ca.pem"
    tls = f"""
        ssl_certificate {tmp_path / 'srv' / 'fullchain.pem'};
        ssl_certificate_key {tmp_path / 'srv' / 'privkey.pem'};
        ssl_client_certificate {root_pem};
        ssl_verify_client on;
        ssl_verify_depth 2;
    """
    with nginx(tmp_path, tls) as (port, _log):
        status, body = https_get(port, root_pem, (tmp_path / "alice" / "fullchain.pem",
                                                  tmp_path / "alice" / "privkey.pem"))
        assert status == 200 and "verify=SUCCESS" in body and "CN=alice" in body
        # Without the intermediate in what the client sends, nginx cannot build the chain.
        status, body = https_get(port, root_pem, (tmp_path / "alice" / "cert.pem",
                                                  tmp_path / "alice" / "privkey.pem"))
        assert status == 400


def test_name_constraints_inherited_narrowed_never_widened(tmp_path):
    from conftest import certkit_env

    env = certkit_env(CERTKIT_CA_PASSPHRASE=PASSPHRASE, CERTKIT_CA_DIR=str(tmp_path / "ca"))
    run_certkit("init-ca", "--permit-dns", "example.com", "--permit-ip", "10.0.0.0/8", env=env, check=True)
    root_nc = load(tmp_path / "ca" / "ca.pem").extensions.get_extension_for_class(x509.NameConstraints).value

    assert init_intermediate(tmp_path, env, name="inherit").returncode == 0
    inherited = load(tmp_path / "inherit" / "ca.pem").extensions.get_extension_for_class(x509.NameConstraints)
    assert inherited.critical and inherited.value == root_nc

    proc = init_intermediate(tmp_path, env, "--permit-dns", "internal.example.com", name="narrow")
    assert proc.returncode == 0, proc.stderr
    nc = load(tmp_path / "narrow" / "ca.pem").extensions.get_extension_for_class(x509.NameConstraints).value
    # Narrowed DNS, and (as --permit-dns alone means for a root, audit twotier5 #1) no IP address: the
    # parent's 10.0.0.0/8 is not inherited once a kind is given; emails and URIs follow the DNS domain.
    assert [g.value for g in nc.permitted_subtrees] == [
        "internal.example.com", "internal.example.com", ".internal.example.com", "internal.example.com",
        ".internal.example.com"]
    assert [g.value for g in nc.excluded_subtrees] == [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
    narrow_env = dict(env, CERTKIT_CA_DIR=str(tmp_path / "narrow"))
    assert run_certkit("issue-server", "a.internal.example.com", "--out", "ok", cwd=tmp_path,
                       env=narrow_env).returncode == 0
    assert_clean_error(run_certkit("issue-server", "www.example.com", "--out", "no", cwd=tmp_path, env=narrow_env),
                       "outside the name constraints")

    before = CADirectory(tmp_path / "ca").inventory.count()
    for args, fragment in ((["--permit-dns", "example.org"], "'example.org' is outside"),
                           (["--permit-ip", "10.0.0.0/7"], "'10.0.0.0/7' is outside"),
                           (["--permit-ip", "192.168.0.0/16"], "'192.168.0.0/16' is outside")):
        proc = init_intermediate(tmp_path, env, *args, name="wide")
        assert_clean_error(proc, fragment)
        assert "wider than its parent" in (proc.stdout if "--json" in proc.args else proc.stderr)
        assert not (tmp_path / "wide").exists()
    assert CADirectory(tmp_path / "ca").inventory.count() == before


def _expired_root(path: Path) -> None:
    from certkit.ca import CA, _random_serial
    from certkit.keys import generate_key
    from certkit.profiles import PROFILES, build_certificate, leaf_subject

    key = generate_key()
    now = dt.datetime.now(dt.UTC)
    cert = build_certificate(PROFILES["root-ca"], subject=leaf_subject("Expired root"), public_key=key.public_key(),
                             issuer_name=leaf_subject("Expired root"), issuer_key=key, issuer_ski=None,
                             serial=_random_serial(), not_before=now - dt.timedelta(days=30),
                             not_after=now - dt.timedelta(days=1))
    CADirectory(path).save_new(CA(cert, key), PASSPHRASE.encode())


def test_bad_parents_refused_nothing_written(tmp_path, ca_env, ca_dir):
    cases = []
    cases.append(("missing", tmp_path / "nowhere", "parent CA in"))
    _expired_root(tmp_path / "expired")
    cases.append(("expired", tmp_path / "expired", "expired on"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "ca.pem").write_text("garbage\n")
    cases.append(("broken", broken, "cannot be read"))
    for label, parent, fragment in cases:
        proc = run_certkit("init-ca", "--ca-dir", tmp_path / f"child-{label}", "--parent-ca-dir", parent,
                           env=dict(ca_env, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE))
        assert_clean_error(proc, fragment)
        assert not (tmp_path / f"child-{label}").exists(), label
    wrong = run_certkit("init-ca", "--ca-dir", tmp_path / "child-pw", "--parent-ca-dir", ca_dir,
                        env=dict(ca_env, CERTKIT_PARENT_CA_PASSPHRASE="wrong"))
    assert_clean_error(wrong, "passphrase does not decrypt")
    assert not (tmp_path / "child-pw").exists()
    too_long = init_intermediate(tmp_path, ca_env, "--days", "4000", name="long")
    assert_clean_error(too_long, "would end after parent CA 'certkit test root' expires")
    assert "can live at most" in too_long.stdout
    assert not (tmp_path / "long").exists()
    assert CADirectory(ca_dir).inventory.count() == 0
    # pathlen 0: an intermediate cannot sign another CA.
    assert init_intermediate(tmp_path, ca_env).returncode == 0
    grandchild = run_certkit("init-ca", "--ca-dir", tmp_path / "grand", "--parent-ca-dir", tmp_path / "inter",
                             env=dict(ca_env, CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE))
    assert_clean_error(grandchild, "path length 0")
    assert not (tmp_path / "grand").exists()


def test_a_chain_that_goes_on_after_its_root_is_refused(tmp_path, ca_env, ca_dir):
    """parents.pem holding the root twice: check names it, and nothing is issued (every chain.pem
    would carry the root)."""
    assert init_intermediate(tmp_path, ca_env).returncode == 0
    inter = tmp_path / "inter"
    (inter / "parents.pem").write_bytes((ca_dir / "ca.pem").read_bytes() * 2)
    env = dict(ca_env, CERTKIT_CA_DIR=str(inter))
    proc = run_certkit("check", "--json", env=env)
    assert proc.returncode == 1
    chain = [f for f in json.loads(proc.stdout)["findings"] if f["check"] == "chain"]
    assert chain[0]["level"] == "error"
    assert "is a root, yet parents.pem goes on after it (1 more)" in chain[0]["message"]
    refused = run_certkit("issue-server", "q.example.com", "--out", tmp_path / "qq", env=env)
    assert_clean_error(refused, "goes on after the root CN=certkit test root")
    assert not (tmp_path / "qq").exists()


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_an_intermediate_without_its_chain_issues_nothing(tmp_path, ca_env, ca_dir, damage):
    """Without parents.pem, every bundle would carry a chain no client can follow (ca.pem the
    intermediate, fullchain.pem the leaf alone): refused before anything is signed, naming the file."""
    assert init_intermediate(tmp_path, ca_env).returncode == 0
    inter = tmp_path / "inter"
    parents = inter / "parents.pem"
    if damage == "missing":
        parents.unlink()
        fragment = "is an intermediate CA (issued by CN=certkit test root), but parents.pem is missing"
    else:
        parents.write_bytes(parents.read_bytes()[:100])
        fragment = "parents.pem cannot be read: it is not a complete PEM certificate"
    env = dict(ca_env, CERTKIT_CA_DIR=str(inter))
    for args in (["issue-server", "q.example.com", "--out", tmp_path / "qq"], ["crl"], ["list"]):
        assert_clean_error(run_certkit(*args, env=env), fragment)
    assert not (tmp_path / "qq").exists()
    assert [r for r in CADirectory(inter).inventory.rows() if r["kind"] != "ca"] == []


def _ski(cert) -> bytes:
    from cryptography import x509

    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def test_a_chain_that_stops_short_of_a_root_is_refused(tmp_path):
    """parents.pem holding the issuer but not the root above it: the chain is incomplete."""
    from certkit.ca import CA
    from certkit.errors import CABroken
    from certkit.keys import generate_key
    from certkit.profiles import PROFILES, build_certificate, leaf_subject
    from certkit.store import _check_chain

    root = CA.create("Root")
    middle = CA.create("Middle", parent=root)
    bottom_key = generate_key()
    now = dt.datetime.now(dt.UTC)
    bottom = build_certificate(PROFILES["intermediate-ca"], subject=leaf_subject("Bottom"),
                               public_key=bottom_key.public_key(), issuer_name=middle.cert.subject,
                               issuer_key=middle.key, issuer_ski=_ski(middle.cert), serial=7, not_before=now,
                               not_after=now + dt.timedelta(days=30), path_length=0)
    _check_chain(tmp_path, bottom, [middle.cert, root.cert])  # complete: fine
    with pytest.raises(CABroken, match="ends with CN=Middle, which is not a root"):
        _check_chain(tmp_path, bottom, [middle.cert])


def test_intermediate_json(tmp_path, ca_env, ca_dir):
    out = json.loads(init_intermediate(tmp_path, ca_env).stdout)
    assert out["kind"] == "intermediate" and out["subject"] == "CN=Issuing CA 1"


def test_the_default_lifetime_is_cut_at_the_parents_end(tmp_path: Path) -> None:
    """With no --days, an intermediate under a root ending sooner than the default 1825 days ends
    with the root, and a warning says so (as a leaf's default is capped); --days asked is refused."""
    env = certkit_env(CERTKIT_CA_DIR=str(tmp_path / "root"), CERTKIT_CA_PASSPHRASE=PASSPHRASE,
                      CERTKIT_PARENT_CA_PASSPHRASE=PASSPHRASE)
    run_certkit("init-ca", "--name", "Short root", "--days", "400", env=env, check=True)
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "inter", "--parent-ca-dir", tmp_path / "root", "--name",
                       "Capped", env=env)
    assert proc.returncode == 0 and "Warning: the intermediate CA ends on" in proc.stderr, proc.stderr
    root = x509.load_pem_x509_certificate((tmp_path / "root" / "ca.pem").read_bytes())
    inter = x509.load_pem_x509_certificate((tmp_path / "inter" / "ca.pem").read_bytes())
    assert inter.not_valid_after_utc == root.not_valid_after_utc
    proc = run_certkit("init-ca", "--ca-dir", tmp_path / "inter2", "--parent-ca-dir", tmp_path / "root", "--days",
                       "1825", env=env)
    assert_clean_error(proc, "would end after parent CA 'Short root'")
