"""Round twenty-six, area serve: what probe, inspect, verify, list and serve tell the user, checked against real
peers (openssl s_server and s_client) on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from test_audit24_serve import _signed_by_ca
from test_probe import openssl_server

from conftest import PASSPHRASE, run_certkit

MUST_STAPLE = x509.TLSFeature([x509.TLSFeatureType.status_request])
NO_STAPLE = "the server staples no OCSP response to its handshake, and its certificate demands one"


# --- 1. probe named Must-Staple but never looked for the staple Firefox requires -----------------------------------
def _ocsp_response(ca_dir: Path, cert_file: Path, *, status=ocsp.OCSPCertStatus.GOOD, hours: float = 24,
                   serial_offset: int = 0, signer=None) -> bytes:
    """An OCSP response (DER) about the certificate in ``cert_file`` (its serial + ``serial_offset``), signed by
    the CA of ``ca_dir`` (or ``signer``), next update ``hours`` from now (negative: already past)."""
    ca_key = serialization.load_pem_private_key((ca_dir / "ca-key.pem").read_bytes(), PASSPHRASE.encode())
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    now = dt.datetime.now(dt.UTC)
    revoked = status == ocsp.OCSPCertStatus.REVOKED
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=_name_hash(ca), issuer_key_hash=_key_hash(ca), algorithm=hashes.SHA1(),
        serial_number=cert.serial_number + serial_offset, cert_status=status,
        this_update=now - dt.timedelta(hours=2) + dt.timedelta(hours=min(hours, 0)),
        next_update=now + dt.timedelta(hours=hours), revocation_time=now - dt.timedelta(hours=3) if revoked else None,
        revocation_reason=None)
    responder = ca if signer is None else _impostor(ca, signer)  # the CA's name, another key
    signed = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, responder).sign(signer or ca_key, hashes.SHA256())
    return signed.public_bytes(serialization.Encoding.DER)


def _impostor(ca: x509.Certificate, key) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(ca.subject).issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))


def _name_hash(ca: x509.Certificate) -> bytes:
    digest = hashes.Hash(hashes.SHA1())
    digest.update(ca.subject.public_bytes())
    return digest.finalize()


def _key_hash(ca: x509.Certificate) -> bytes:
    return x509.SubjectKeyIdentifier.from_public_key(ca.public_key()).digest


@pytest.fixture
def staple(ca_dir: Path, tmp_path: Path) -> Path:
    """A Must-Staple server certificate for localhost that the CA signed (cert.pem, privkey.pem)."""
    return _signed_by_ca(ca_dir, tmp_path / "staple", MUST_STAPLE)


def _probe(ca_dir: Path, port: int, *more) -> subprocess.CompletedProcess:
    return run_certkit("probe", f"https://localhost:{port}/", "--ca-dir", ca_dir, *more)


def _s_client_status(port: int) -> str:
    """What openssl s_client -status says the server stapled."""
    proc = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
                           "-status"], input="", capture_output=True, text=True, timeout=30)
    return proc.stdout


@pytest.mark.parametrize("tls", ["-tls1_3", "-tls1_2"])
def test_probe_says_a_must_staple_server_staples_nothing(ca_dir: Path, staple: Path, tls: str):
    with openssl_server("-cert", staple / "cert.pem", "-key", staple / "privkey.pem", tls) as port:
        assert "OCSP response: no response sent" in _s_client_status(port)
        said = _probe(ca_dir, port)
        data = json.loads(_probe(ca_dir, port, "--json").stdout)
    assert said.returncode == 1, said.stdout + said.stderr
    assert "valid TLS server certificate for localhost? NO, not for every client" in said.stdout
    assert "  OCSP staple none" in said.stdout
    assert NO_STAPLE in said.stdout and "MOZILLA_PKIX_ERROR_REQUIRED_TLS_FEATURE_MISSING" in said.stdout
    assert said.stderr.startswith("Error: ") and NO_STAPLE in said.stderr and "Traceback" not in said.stderr
    assert "CA_CERT_USED_AS_END_ENTITY" not in said.stdout  # another Firefox-only refusal's words, not this one's
    server = data["server_certificate"]
    assert server["ok"] is False and server["verified"] is True and server["ocsp_staple"] == "none"
    assert NO_STAPLE in server["ocsp_staple_problem"]


@pytest.mark.parametrize("tls", ["-tls1_3", "-tls1_2"])
def test_probe_takes_a_must_staple_server_that_staples_a_good_response(ca_dir: Path, staple: Path, tmp_path: Path,
                                                                      tls: str):
    (tmp_path / "good.der").write_bytes(_ocsp_response(ca_dir, staple / "cert.pem"))
    with openssl_server("-cert", staple / "cert.pem", "-key", staple / "privkey.pem", tls,
                        "-status_file", tmp_path / "good.der") as port:
        peer = _s_client_status(port)
        said = _probe(ca_dir, port)
    assert "OCSP Response Status: successful" in peer and "Cert Status: good" in peer, peer
    assert said.returncode == 0, said.stdout + said.stderr
    assert "valid TLS server certificate for localhost? yes" in said.stdout
    assert "  OCSP staple an OCSP response: good, produced " in said.stdout and NO_STAPLE not in said.stdout
    # the TLS feature line above it said no response could be stapled for a certificate a certkit CA signed
    assert "none can be stapled" not in said.stdout and "openssl ocsp; certkit probe shows what" in said.stdout


@pytest.mark.parametrize(("kind", "problem"), [
    ("revoked", "the certificate's status is revoked"),
    ("old", "it is out of date (it lasted until "),
    ("other", "it is about another certificate"),
    ("forged", "nor a responder it delegated to signed it")])
def test_probe_refuses_a_must_staple_server_with_a_bad_staple(ca_dir: Path, staple: Path, tmp_path: Path, kind,
                                                               problem):
    options = {"revoked": {"status": ocsp.OCSPCertStatus.REVOKED}, "old": {"hours": -30},
               "other": {"serial_offset": 1}, "forged": {"signer": ec.generate_private_key(ec.SECP256R1())}}[kind]
    (tmp_path / "bad.der").write_bytes(_ocsp_response(ca_dir, staple / "cert.pem", **options))
    with openssl_server("-cert", staple / "cert.pem", "-key", staple / "privkey.pem",
                        "-status_file", tmp_path / "bad.der") as port:
        assert "OCSP Response Status: successful" in _s_client_status(port)
        said = _probe(ca_dir, port)
    assert said.returncode == 1, said.stdout + said.stderr
    assert "for localhost? NO, not for every client" in said.stdout
    assert problem in said.stdout and "the OCSP response the server staples is no good" in said.stderr


def test_probe_says_nothing_of_staples_to_a_server_without_must_staple(ca_dir: Path, tmp_path: Path):
    plain = _signed_by_ca(ca_dir, tmp_path / "plain")
    with openssl_server("-cert", plain / "cert.pem", "-key", plain / "privkey.pem") as port:
        said = _probe(ca_dir, port)
        data = json.loads(_probe(ca_dir, port, "--json").stdout)["server_certificate"]
    assert said.returncode == 0 and "OCSP staple" not in said.stdout, said.stdout
    assert data["ok"] is True and data["ocsp_staple"] is None and data["ocsp_staple_problem"] is None


def test_probe_shows_a_staple_sent_for_a_certificate_without_must_staple(ca_dir: Path, tmp_path: Path):
    plain = _signed_by_ca(ca_dir, tmp_path / "plain")
    (tmp_path / "good.der").write_bytes(_ocsp_response(ca_dir, plain / "cert.pem"))
    with openssl_server("-cert", plain / "cert.pem", "-key", plain / "privkey.pem",
                        "-status_file", tmp_path / "good.der") as port:
        said = _probe(ca_dir, port)
    assert said.returncode == 0 and "  OCSP staple an OCSP response: good, produced " in said.stdout, said.stdout



@pytest.mark.parametrize("must_staple", [False, True])
def test_probe_refuses_a_server_that_staples_its_own_revocation(ca_dir: Path, tmp_path: Path, must_staple: bool):
    """Firefox believes a stapled "revoked" signed by the issuer, whether or not the certificate demands a staple;
    so does curl --cert-status. Before: the line said it, the verdict was yes, exit 0."""
    leaf = _signed_by_ca(ca_dir, tmp_path / "leaf", *([MUST_STAPLE] if must_staple else []))
    (tmp_path / "revoked.der").write_bytes(_ocsp_response(ca_dir, leaf / "cert.pem",
                                                          status=ocsp.OCSPCertStatus.REVOKED))
    with openssl_server("-cert", leaf / "cert.pem", "-key", leaf / "privkey.pem",
                        "-status_file", tmp_path / "revoked.der") as port:
        assert "Cert Status: revoked" in _s_client_status(port)
        said = _probe(ca_dir, port)
        if shutil.which("curl"):  # the real client that asks for a staple refuses; without asking it takes it
            curl = ["curl", "-s", "-o", "/dev/null", "--cacert", ca_dir / "ca.pem", "--resolve",
                    f"localhost:{port}:127.0.0.1", f"https://localhost:{port}/"]
            assert subprocess.run(curl, timeout=30).returncode == 0
            assert subprocess.run([*curl, "--cert-status"], timeout=30).returncode == 91  # SSL_INVALIDCERTSTATUS
    assert said.returncode == 1, said.stdout + said.stderr
    assert "for localhost? NO, not for every client" in said.stdout
    assert "  OCSP staple an OCSP response: revoked, produced " in said.stdout
    assert ("SEC_ERROR_REVOKED_CERTIFICATE" in said.stderr) != must_staple, said.stderr

# --- 2. a certificate not valid yet: inspect said "(not valid for another N days)", verify and probe "valid from" --
def _first(pattern: str, text: str) -> str:
    found = re.search(pattern, text, re.M)
    assert found, (pattern, text)
    return found.group(1)


@pytest.mark.parametrize(("start", "ahead"), [(5.5, "in 6 days"), (1.5, "in 36 hours"), (0.2, "in 5 hours")])
def test_a_certificate_not_valid_yet_reads_valid_from_everywhere(ca_dir: Path, ca_env: dict, tmp_path: Path,
                                                                  start: float, ahead: str):
    future = _signed_by_ca(ca_dir, tmp_path / "future", days=30, start=start)
    moment = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC)"
    inspected = run_certkit("inspect", future / "cert.pem", env=ca_env, check=True).stdout
    assert "not valid for another" not in inspected, inspected
    begins = _first(rf"^  valid from    {moment} \({ahead}\)$", inspected)
    assert re.search(r"^  expires       \S+ \S+ UTC$", inspected, re.M), inspected
    assert f"Usable for: nothing now (valid {ahead}); issued for" in inspected
    data = json.loads(run_certkit("inspect", future / "cert.pem", "--json", env=ca_env, check=True).stdout)
    assert data["items"][0]["validity"] == f"valid {ahead}" and data["items"][0]["status"] == "not yet valid"
    verified = run_certkit("verify", future / "cert.pem", "--purpose", "server", env=ca_env).stdout
    assert _first(rf"^  valid from {moment} \({ahead}\)$", verified) == begins
    with openssl_server("-cert", future / "cert.pem", "-key", future / "privkey.pem") as port:
        probed = _probe(ca_dir, port).stdout
    assert _first(rf"^      valid from {moment} \({ahead}\)$", probed) == begins
    assert "not valid for another" not in probed


def test_an_expired_certificate_reads_alike_everywhere(ca_dir: Path, ca_env: dict, tmp_path: Path):
    for folder, start, ago in (("old", -20, "10 days ago"), ("fresh", -10.2, "less than a day ago"),
                               ("day", -11.5, "1 day ago")):
        old = _signed_by_ca(ca_dir, tmp_path / folder, days=10, start=start)
        inspected = run_certkit("inspect", old / "cert.pem", env=ca_env, check=True).stdout
        ended = _first(rf"^  expired       (\S+ \S+ UTC) \({ago}\)$", inspected)
        assert f"Usable for: nothing now (expired {ago}); issued for" in inspected and "(0 days" not in inspected
        verified = run_certkit("verify", old / "cert.pem", "--purpose", "server", env=ca_env).stdout
        assert _first(rf"^  expired   (\S+ \S+ UTC) \({ago}\)$", verified) == ended


@pytest.mark.parametrize(("start", "days", "said", "verify_row"), [
    (5.5, 30, r"it is valid from (\S+ \S+ UTC) \(in 6 days\)\.", r"^  valid from (\S+ \S+ UTC) \(in 6 days\)$"),
    (-20, 10, r"it expired on (\S+ \S+ UTC) \(10 days ago\)\.", r"^  expired   (\S+ \S+ UTC) \(10 days ago\)$"),
    (-10.2, 10, r"it expired on (\S+ \S+ UTC) \(less than a day ago\)\.",
     r"^  expired   (\S+ \S+ UTC) \(less than a day ago\)$")])
def test_serve_refuses_a_certificate_out_of_its_dates_in_verify_s_words(ca_dir: Path, ca_env: dict, tmp_path: Path,
                                                                        start, days, said, verify_row):
    """Before: 'it is valid only from 2026-12-09' and 'it expired on 2026-11-24', the day alone."""
    from conftest import assert_clean_error

    leaf = _signed_by_ca(ca_dir, tmp_path / "leaf", days=days, start=start)
    proc = run_certkit("serve", "--port", "0", "--cert", leaf / "cert.pem", "--key", leaf / "privkey.pem",
                       env=ca_env)
    assert_clean_error(proc, "is not a certificate a TLS client takes from a server: it ")
    verified = run_certkit("verify", leaf / "cert.pem", "--purpose", "server", env=ca_env).stdout
    assert _first(said, proc.stderr) == _first(verify_row, verified)


def test_serve_s_banner_says_when_a_client_ca_becomes_valid(ca_dir: Path, ca_env: dict, tmp_path: Path):
    """Before: 'CN=Later Root is not valid until ...', where verify says 'not valid before' and inspect 'valid
    from ... (in N days)'."""
    from certkit import CA

    from serve_process import ServeProcess

    later = CA.create("Later Root", not_before=dt.datetime.now(dt.UTC) + dt.timedelta(days=3, hours=1))
    (tmp_path / "later.pem").write_bytes(later.cert_pem)
    server = _signed_by_ca(ca_dir, tmp_path / "srv")
    inspected = run_certkit("inspect", tmp_path / "later.pem", env=ca_env, check=True).stdout
    begins = _first(r"^  valid from    (\S+ \S+ UTC \(in 4 days\))$", inspected)
    args = ("--cert", server / "cert.pem", "--key", server / "privkey.pem", "--client-ca", tmp_path / "later.pem")
    with ServeProcess(*args, env=ca_env, cwd=tmp_path) as serve:
        assert serve.info["client_cas"][0]["status"] == "not yet valid"
    proc = subprocess.Popen([sys.executable, "-m", "certkit", "serve", "--port", "0", *map(str, args)], env=ca_env,
                            cwd=tmp_path,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        banner = [proc.stdout.readline() for _ in range(3)][2]
    finally:
        proc.terminate()
        proc.wait(30)
    assert f"; beware: CN=Later Root is valid from {begins}, so every client certificate" in banner, banner


# --- 3. a certificate expiring within a day had "0 days left" -----------------------------------------------------
@pytest.mark.parametrize(("days", "left"), [(0.95, "22 hours left"), (1.9, "45 hours left"),
                                            (0.02, "less than an hour left"), (30, "29 days left")])
def test_the_time_left_is_never_said_as_zero_days(ca_dir: Path, ca_env: dict, tmp_path: Path, days, left):
    """serve's own certificate lasts a day: inspect and probe said "(0 days left)" of it from its first minute."""
    leaf = _signed_by_ca(ca_dir, tmp_path / "leaf", days=days, start=-0.001)
    inspected = run_certkit("inspect", leaf / "cert.pem", env=ca_env, check=True).stdout
    assert re.search(rf"^  valid         \S+ \S+ to \S+ \S+ UTC \({left}\)$", inspected, re.M), inspected
    with openssl_server("-cert", leaf / "cert.pem", "-key", leaf / "privkey.pem") as port:
        probed = _probe(ca_dir, port).stdout
    assert re.search(rf"^      expires    \S+ \S+ UTC \({left}\)$", probed, re.M), probed
    assert "0 days left" not in inspected + probed


def test_probe_reads_a_staple_signed_with_rsa_pss(ca_env: dict, tmp_path: Path):
    """openssl ocsp -rsigopt rsa_padding_mode:pss signs a response cryptography names no hash for: probe ended in
    a traceback (UnsupportedAlgorithm); it checks the PSS signature now, and takes the good staple."""
    rsa_ca = tmp_path / "rsa-ca"
    env = {**ca_env, "CERTKIT_CA_DIR": str(rsa_ca)}
    run_certkit("init-ca", "--name", "RSA Root", "--key-type", "rsa-2048", env=env, check=True)
    leaf = _signed_by_ca(rsa_ca, tmp_path / "leaf", MUST_STAPLE)
    cert = x509.load_pem_x509_certificate((leaf / "cert.pem").read_bytes())
    (tmp_path / "index.txt").write_text(f"V\t{cert.not_valid_after_utc:%y%m%d%H%M%S}Z\t\t{cert.serial_number:X}\t"
                                        "unknown\t/CN=localhost\n")
    subprocess.run(["openssl", "ocsp", "-index", tmp_path / "index.txt", "-rsigner", rsa_ca / "ca.pem", "-rkey",
                    rsa_ca / "ca-key.pem", "-passin", "env:CERTKIT_CA_PASSPHRASE", "-CA", rsa_ca / "ca.pem",
                    "-issuer", rsa_ca / "ca.pem", "-cert", leaf / "cert.pem", "-respout", tmp_path / "pss.der",
                    "-rsigopt", "rsa_padding_mode:pss", "-ndays", "1"], env=env, check=True, capture_output=True)
    with openssl_server("-cert", leaf / "cert.pem", "-key", leaf / "privkey.pem",
                        "-status_file", tmp_path / "pss.der") as port:
        assert "OCSP Response Status: successful" in _s_client_status(port)
        said = _probe(rsa_ca, port)
    assert said.returncode == 0 and "Traceback" not in said.stderr, said.stdout + said.stderr
    assert "  OCSP staple an OCSP response: good, produced " in said.stdout


@pytest.mark.parametrize(("hours", "good"), [(-1, True), (-23, True), (-25, False), (24 * 30, True)])
def test_probe_gives_a_stapled_response_firefox_s_day_of_leeway(ca_dir: Path, staple: Path, tmp_path: Path, hours,
                                                                 good: bool):
    """mozilla::pkix takes a response until a day after its nextUpdate (SLOP): a nextUpdate an hour ago was called
    out of date, and the server refused, where Firefox takes it."""
    (tmp_path / "r.der").write_bytes(_ocsp_response(ca_dir, staple / "cert.pem", hours=hours))
    with openssl_server("-cert", staple / "cert.pem", "-key", staple / "privkey.pem",
                        "-status_file", tmp_path / "r.der") as port:
        said = _probe(ca_dir, port)
    assert (said.returncode == 0) == good, said.stdout + said.stderr
    assert ("it is out of date" in said.stdout) != good


@pytest.mark.parametrize(("kind", "refused"), [("other", True), ("forged", True), ("old", False)])
def test_probe_refuses_a_bad_staple_firefox_refuses_without_must_staple(ca_dir: Path, tmp_path: Path, kind,
                                                                         refused: bool):
    """NSSCertDBTrustDomain::CheckRevocation returns a stapled response's failure at once (another certificate's,
    a bad signature), but for an out-of-date one (then it asks the responder, or takes it): before, only a
    Must-Staple certificate's bad staple was a refusal."""
    plain = _signed_by_ca(ca_dir, tmp_path / "plain")
    options = {"other": {"serial_offset": 1}, "forged": {"signer": ec.generate_private_key(ec.SECP256R1())},
               "old": {"hours": -30}}[kind]
    (tmp_path / "bad.der").write_bytes(_ocsp_response(ca_dir, plain / "cert.pem", **options))
    with openssl_server("-cert", plain / "cert.pem", "-key", plain / "privkey.pem",
                        "-status_file", tmp_path / "bad.der") as port:
        said = _probe(ca_dir, port)
        if shutil.which("curl"):
            curl = ["curl", "-s", "-o", "/dev/null", "--cacert", ca_dir / "ca.pem", "--resolve",
                    f"localhost:{port}:127.0.0.1", f"https://localhost:{port}/", "--cert-status"]
            assert subprocess.run(curl, timeout=30).returncode == 91  # curl --cert-status refuses all three
    assert (said.returncode == 1) == refused, said.stdout + said.stderr
    assert ("Firefox refuses the server for it, Must-Staple or not" in said.stdout) == refused
    assert "  OCSP staple " in said.stdout
